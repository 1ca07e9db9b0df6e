//! Transport and membership: the RPC listener, one outgoing connection per
//! peer, pings, failure detection and reconnection.
//!
//! Every node keeps an outgoing [`PeerClient`] to every other node it knows
//! (so a pair of nodes has two connections, one per direction: simple, and
//! neither side depends on the other to call it). A task per peer connects,
//! pings every `ping_interval_ms`, records round-trip times, and marks the
//! peer down after `ping_failures_before_down` consecutive failures; while a
//! peer is unreachable it retries with exponential backoff, cut short when
//! the peer shows signs of life (it pings us, or an operator asks to connect).
//!
//! Nodes are learnt from `bootstrap_peers`, `hangar node connect`, incoming
//! pings (which carry the caller's public address) and ping responses (which
//! list every peer the callee knows), so a node connected to any member soon
//! knows them all: a full mesh. The peer list is persisted so a restarted node
//! reconnects by itself.
//!
//! What the upper layers want to piggyback on pings (the layout digest) goes
//! through the [`Gossip`] hook: this module knows nothing of layouts.

pub mod call;
pub mod metrics;

pub use call::{CallError, CallErrors, Channel, Shortfall, shortfall};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hangar_common::NodeId;
use hangar_common::clock;
use hangar_common::crdt::now_msec;
use hangar_common::ids::PeerAddr;
use hangar_common::rpc::{self, ClockReading, ConnectError, PeerClient, PingRequest, PingResponse};
use hangar_common::transport::{self, ChannelKind, Hello, Keypair, RpcSecret, SecureChannel};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

/// File in the metadata directory listing known peers.
const PEERS_FILE: &str = "peers.json";
/// Longest wait between reconnection attempts to a down peer.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a TCP connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What upper layers add to pings and do with the answers.
pub trait Gossip: Send + Sync + 'static {
    fn ping_request(&self) -> PingRequest;
    fn ping_response(&self) -> PingResponse;
    /// Called after each successful ping with the peer's answer.
    fn on_pong(self: Arc<Self>, peer: NodeId, client: PeerClient, resp: PingResponse);
}

/// Where accepted connections go, by what they asked for.
pub trait Dispatch: Send + Sync + 'static {
    fn serve(&self, channel: SecureChannel);
}

/// What is known about one peer.
#[derive(Clone, Debug, Default)]
pub struct PeerInfo {
    pub addr: Option<String>,
    pub up: bool,
    pub down_since_ms: Option<u64>,
    pub last_seen_ms: Option<u64>,
    pub rtt_ms: Option<f64>,
    pub agent_version: Option<String>,
    pub layout_version: Option<u64>,
    pub disk: Option<hangar_common::rpc::DiskUsage>,
    /// Its data directories, as its last ping answer said.
    pub data_dirs: Vec<hangar_common::rpc::DataDirStatus>,
    /// How far its wall clock is ahead of this node's (negative: behind),
    /// in milliseconds, from the last ping it answered.
    pub clock_offset_ms: Option<i64>,
    /// The protocol version agreed with it on the last connection.
    pub protocol: Option<u32>,
    failures: u32,
    /// The offset last written to the log, so it is logged when it
    /// changes, not at every ping.
    logged_offset_ms: Option<i64>,
}

struct PeerSlot {
    info: PeerInfo,
    client: Option<PeerClient>,
    wake: Arc<Notify>,
}

pub struct NetConfig {
    pub public_addr: String,
    pub ping_interval: Duration,
    pub failures_before_down: u32,
    pub metadata_dir: PathBuf,
    /// Local address outgoing connections leave from.
    pub bind_outgoing: Option<std::net::IpAddr>,
}

pub struct Net {
    pub id: NodeId,
    keypair: Keypair,
    secret: RpcSecret,
    cfg: NetConfig,
    peers: Mutex<BTreeMap<NodeId, PeerSlot>>,
    gossip: Mutex<Option<Arc<dyn Gossip>>>,
    /// Rate limit for "refused connection" log lines, per remote IP.
    refused_log: Mutex<BTreeMap<std::net::IpAddr, Instant>>,
    /// Bulk connections (block transfers), opened on demand, kept apart
    /// so that big transfers never delay pings and metadata calls.
    bulk: Mutex<BTreeMap<NodeId, PeerClient>>,
    /// Announces every new connection to a peer (first contact, or a
    /// reconnection after the link or the peer went away): such a peer may
    /// have missed writes, so anti-entropy checks it at once.
    up_events: tokio::sync::broadcast::Sender<NodeId>,
    /// Counts every peer going down or coming back up: the event watcher
    /// (`admin/events.rs`) looks at the status as soon as it moves, so a
    /// node down for less than its one-second round is not missed.
    pub transitions: tokio::sync::watch::Sender<u64>,
    /// Calls made to peers, for `/metrics`.
    pub rpc_metrics: metrics::RpcMetrics,
}

impl Net {
    pub fn new(keypair: Keypair, secret: RpcSecret, cfg: NetConfig) -> Arc<Net> {
        let net = Arc::new(Net {
            id: keypair.public,
            keypair,
            secret,
            cfg,
            peers: Mutex::new(BTreeMap::new()),
            rpc_metrics: Default::default(),
            gossip: Mutex::new(None),
            refused_log: Mutex::new(BTreeMap::new()),
            up_events: tokio::sync::broadcast::channel(64).0,
            transitions: tokio::sync::watch::channel(0).0,
            bulk: Mutex::new(BTreeMap::new()),
        });
        for p in net.load_peers() {
            net.learn(p.id, Some(p.addr));
        }
        net
    }

    pub fn set_gossip(&self, g: Arc<dyn Gossip>) {
        *lock(&self.gossip) = Some(g);
    }

    pub(crate) fn public_addr(&self) -> &str {
        &self.cfg.public_addr
    }

    fn hello(&self, kind: ChannelKind) -> Hello {
        Hello::new(kind, Some(self.cfg.public_addr.clone()))
    }

    /// Accept connections until the listener fails; each one is handshaken
    /// on its own task so a slow or hostile client delays no one.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, dispatch: Arc<dyn Dispatch>) {
        loop {
            let (stream, remote_addr) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let net = self.clone();
            let dispatch = dispatch.clone();
            tokio::spawn(async move {
                let hello = net.hello(ChannelKind::Peer);
                match transport::respond(stream, &net.keypair, &net.secret, hello, |_, _| Ok(()))
                    .await
                {
                    Ok(ch) => {
                        debug!(
                            "{:?} connection from {} ({})",
                            ch.remote_hello.kind,
                            ch.remote.short(),
                            remote_addr
                        );
                        if ch.remote_hello.kind != ChannelKind::Admin {
                            net.learn(ch.remote, ch.remote_hello.public_addr.clone());
                        }
                        dispatch.serve(ch);
                    }
                    Err(e) => net.log_refused(remote_addr, &e),
                }
            });
        }
    }

    fn log_refused(&self, from: std::net::SocketAddr, e: &transport::HandshakeError) {
        let mut log = lock(&self.refused_log);
        let now = Instant::now();
        let recent = log
            .get(&from.ip())
            .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(60));
        if !recent {
            warn!(
                "refused connection from {from}: {e} (further refusals from this address are not logged for a minute)"
            );
            log.insert(from.ip(), now);
        }
    }

    /// Add a peer (or update its address) and start looking after it.
    pub fn learn(self: &Arc<Self>, id: NodeId, addr: Option<String>) {
        if id == self.id {
            return;
        }
        let mut peers = lock(&self.peers);
        match peers.get_mut(&id) {
            Some(slot) => {
                let changed = addr.is_some() && slot.info.addr != addr;
                if changed {
                    slot.info.addr = addr;
                }
                if !slot.info.up {
                    slot.wake.notify_one();
                }
                drop(peers);
                if changed {
                    self.save_peers();
                }
            }
            None => {
                info!(
                    "new peer {} at {}",
                    id.short(),
                    addr.as_deref().unwrap_or("unknown address")
                );
                let wake = Arc::new(Notify::new());
                peers.insert(
                    id,
                    PeerSlot {
                        info: PeerInfo {
                            addr,
                            ..PeerInfo::default()
                        },
                        client: None,
                        wake: wake.clone(),
                    },
                );
                drop(peers);
                self.save_peers();
                let net = self.clone();
                tokio::spawn(async move { net.peer_loop(id, wake).await });
            }
        }
    }

    /// Connect to a node now (for `hangar node connect`), checking its id.
    pub(crate) async fn connect_now(self: &Arc<Self>, peer: &PeerAddr) -> Result<(), ConnectError> {
        let client = self.open(&peer.addr, peer.id).await?;
        self.learn(peer.id, Some(peer.addr.clone()));
        if let Some(slot) = lock(&self.peers).get_mut(&peer.id) {
            // `open` could not record them: the peer was not known yet.
            slot.info.agent_version = Some(client.1.agent_version);
            slot.info.protocol = Some(client.1.protocol);
            slot.client = Some(client.0);
            slot.wake.notify_one();
        }
        let _ = self.up_events.send(peer.id);
        Ok(())
    }

    /// [`Net::open`], counted in the RPC metrics as a `connect` call.
    async fn open_counted(&self, addr: &str, id: NodeId) -> Result<PeerClient, ConnectError> {
        let start = Instant::now();
        let r = self.open(addr, id).await.map(|(c, _)| c);
        self.rpc_metrics.record(
            id,
            "connect",
            start.elapsed(),
            r.is_err().then_some("unreachable"),
        );
        r
    }

    /// Connect to a peer; returns the client and what the handshake told
    /// of the peer (also recorded, if the peer is known).
    async fn open(&self, addr: &str, id: NodeId) -> Result<(PeerClient, Handshake), ConnectError> {
        let ch = rpc::connect_from(
            addr,
            self.cfg.bind_outgoing,
            &self.keypair,
            &self.secret,
            Some(id),
            self.hello(ChannelKind::Peer),
            CONNECT_TIMEOUT,
        )
        .await?;
        let handshake = Handshake {
            agent_version: ch.remote_hello.agent_version.clone(),
            protocol: ch.protocol,
        };
        if let Some(slot) = lock(&self.peers).get_mut(&id) {
            slot.info.agent_version = Some(handshake.agent_version.clone());
            slot.info.protocol = Some(handshake.protocol);
        }
        let client =
            PeerClient::new(tarpc::client::Config::default(), rpc::rpc_transport(ch)).spawn();
        Ok((client, handshake))
    }

    /// Peers last connected with a protocol version below `protocol`.
    pub(crate) fn peers_below(&self, protocol: u32) -> Vec<NodeId> {
        lock(&self.peers)
            .iter()
            .filter(|(_, s)| s.info.protocol.is_some_and(|p| p < protocol))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The protocol version agreed with a peer, if connected once.
    pub(crate) fn peer_protocol(&self, id: &NodeId) -> Option<u32> {
        lock(&self.peers).get(id).and_then(|s| s.info.protocol)
    }

    /// Look after one peer for the life of the process.
    async fn peer_loop(self: Arc<Self>, id: NodeId, wake: Arc<Notify>) {
        let interval = self.cfg.ping_interval;
        let mut backoff = interval;
        loop {
            let (addr, client) = match lock(&self.peers).get(&id) {
                Some(slot) => (slot.info.addr.clone(), slot.client.clone()),
                None => return,
            };
            let client = match (client, addr) {
                (Some(c), _) => c,
                (None, None) => {
                    wake.notified().await;
                    continue;
                }
                (None, Some(addr)) => match self.open_counted(&addr, id).await {
                    Ok(c) => {
                        backoff = interval;
                        if let Some(slot) = lock(&self.peers).get_mut(&id) {
                            slot.client = Some(c.clone());
                        }
                        let _ = self.up_events.send(id);
                        c
                    }
                    Err(e) => {
                        self.record_failure(id, &e.to_string());
                        let _ = tokio::time::timeout(backoff, wake.notified()).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                },
            };

            let mut req = match lock(&self.gossip).as_ref() {
                Some(g) => g.ping_request(),
                None => PingRequest {
                    from_addr: self.cfg.public_addr.clone(),
                    layout_version: 0,
                    layout_digest: 0,
                    clock: None,
                },
            };
            let sent_us = clock::wall_us();
            req.clock = Some(ClockReading::now());
            // A ping may take up to two intervals (at least 2 s) before it
            // counts as missed: household uplinks have latency spikes.
            let timeout = (interval * 2).max(Duration::from_secs(2));
            let start = Instant::now();
            let res = self
                .call_on(client.clone(), id, "ping", timeout, |c, ctx| async move {
                    call::infallible(c.ping(ctx, req).await)
                })
                .await;
            match res {
                Ok(resp) => {
                    let rtt = start.elapsed().as_secs_f64() * 1000.0;
                    self.record_success(id, rtt, resp.layout_version);
                    if let Some(c) = resp.clock {
                        clock::hlc().observe(c.hlc_us);
                        self.record_clock(id, sent_us, clock::wall_us(), c.wall_us);
                    }
                    self.learn_down_since(id, &resp.down_since);
                    if let Some(slot) = lock(&self.peers).get_mut(&id) {
                        slot.info.disk = resp.disk;
                        slot.info.data_dirs = resp.data_dirs.clone();
                    }
                    let gossip = lock(&self.gossip).clone();
                    if let Some(g) = gossip {
                        for p in &resp.known_peers {
                            self.learn(p.id, Some(p.addr.clone()));
                        }
                        g.on_pong(id, client, resp);
                    }
                }
                Err(e) => {
                    // The connection is broken or stuck (peer gone, reset,
                    // frozen): drop it so the next round reconnects.
                    if let Some(slot) = lock(&self.peers).get_mut(&id) {
                        slot.client = None;
                    }
                    self.record_failure(id, &e.to_string());
                }
            }
            tokio::time::sleep(interval.saturating_sub(start.elapsed())).await;
        }
    }

    fn record_success(&self, id: NodeId, rtt_ms: f64, layout_version: u64) {
        if let Some(slot) = lock(&self.peers).get_mut(&id) {
            let i = &mut slot.info;
            if !i.up {
                info!("peer {} is up", id.short());
                self.transitions.send_modify(|n| *n += 1);
            }
            i.up = true;
            i.failures = 0;
            i.down_since_ms = None;
            i.last_seen_ms = Some(now_msec());
            // Smoothed RTT, as TCP does: one sample moves it by an eighth.
            i.rtt_ms = Some(match i.rtt_ms {
                Some(prev) => prev * 0.875 + rtt_ms * 0.125,
                None => rtt_ms,
            });
            i.layout_version = Some(layout_version);
        }
    }

    /// Record a peer's clock offset from one ping: sent at `sent_us`,
    /// answered at `received_us` (this node's wall clock), the peer's wall
    /// clock reading `theirs_us` in between. The error is at most half the
    /// round trip, milliseconds on a home uplink: far below what matters.
    fn record_clock(&self, id: NodeId, sent_us: u64, received_us: u64, theirs_us: u64) {
        let midpoint = (sent_us / 2 + received_us / 2) as i64;
        let offset_ms = (theirs_us as i64 - midpoint) / 1000;
        let mut peers = lock(&self.peers);
        let Some(slot) = peers.get_mut(&id) else {
            return;
        };
        let i = &mut slot.info;
        i.clock_offset_ms = Some(offset_ms);
        // Log when the offset first matters, when it changes by more than
        // the threshold, and when it is back within it.
        let warn_ms = clock::SKEW_WARN_MS;
        let changed = match i.logged_offset_ms {
            None => offset_ms.abs() > warn_ms,
            Some(last) => (offset_ms - last).abs() > warn_ms.max(last.abs() / 10),
        };
        if !changed {
            return;
        }
        if offset_ms.abs() > warn_ms {
            warn!(
                "peer {}'s clock is {}: set up NTP on the wrong one (timedatectl set-ntp true); writes stay ordered, but dates and lifecycle ages follow the clocks",
                id.short(),
                clock::compare_offset(offset_ms, "this node's")
            );
            i.logged_offset_ms = Some(offset_ms);
        } else {
            info!(
                "peer {}'s clock now agrees with this node's ({})",
                id.short(),
                clock::describe_offset(offset_ms)
            );
            i.logged_offset_ms = None;
        }
    }

    /// Nodes this node sees down, with when it first saw them down.
    pub(crate) fn down_since(&self) -> Vec<(NodeId, u64)> {
        lock(&self.peers)
            .iter()
            .filter(|(_, s)| !s.info.up)
            .filter_map(|(id, s)| s.info.down_since_ms.map(|t| (*id, t)))
            .collect()
    }

    /// Take another node's sightings of nodes down: a node this one also
    /// cannot reach is down since the earliest sighting (moved to this
    /// node's clock by the reporter's measured offset), so a node that
    /// restarted does not say "down since a minute" about one down for a
    /// day. A node this one reaches is up, whatever others say.
    fn learn_down_since(&self, reporter: NodeId, seen: &[(NodeId, u64)]) {
        let mut peers = lock(&self.peers);
        let offset = peers
            .get(&reporter)
            .and_then(|s| s.info.clock_offset_ms)
            .unwrap_or(0);
        for (id, t) in seen {
            let Some(slot) = peers.get_mut(id) else {
                continue;
            };
            let i = &mut slot.info;
            let t = t.saturating_add_signed(-offset);
            if !i.up && i.failures > 0 && i.down_since_ms.is_none_or(|d| t < d) {
                i.down_since_ms = Some(t);
            }
        }
    }

    fn record_failure(&self, id: NodeId, why: &str) {
        if let Some(slot) = lock(&self.peers).get_mut(&id) {
            let i = &mut slot.info;
            i.failures = i.failures.saturating_add(1);
            if i.failures >= self.cfg.failures_before_down && (i.up || i.down_since_ms.is_none()) {
                warn!(
                    "peer {} is down after {} missed pings: {why}",
                    id.short(),
                    i.failures
                );
                i.up = false;
                i.down_since_ms = Some(now_msec());
                self.transitions.send_modify(|n| *n += 1);
            } else {
                debug!(
                    "ping to {} failed ({} in a row): {why}",
                    id.short(),
                    i.failures
                );
            }
        }
    }

    /// A snapshot of every peer's state.
    pub(crate) fn peers(&self) -> BTreeMap<NodeId, PeerInfo> {
        lock(&self.peers)
            .iter()
            .map(|(k, v)| (*k, v.info.clone()))
            .collect()
    }

    /// Be told of every new connection to a peer from now on.
    pub(crate) fn subscribe_up(&self) -> tokio::sync::broadcast::Receiver<NodeId> {
        self.up_events.subscribe()
    }

    /// The bulk-transfer client of a peer, connecting if needed (the
    /// connection attempt counted as a `connect_bulk` call).
    async fn bulk_client(&self, id: &NodeId) -> Result<PeerClient, CallError> {
        if let Some(c) = lock(&self.bulk).get(id) {
            return Ok(c.clone());
        }
        let addr = lock(&self.peers)
            .get(id)
            .and_then(|s| s.info.addr.clone())
            .ok_or_else(|| CallError::Unreachable {
                node: *id,
                reason: "no address known".into(),
            })?;
        let start = Instant::now();
        let ch = rpc::connect_from(
            &addr,
            self.cfg.bind_outgoing,
            &self.keypair,
            &self.secret,
            Some(*id),
            self.hello(ChannelKind::Bulk),
            CONNECT_TIMEOUT,
        )
        .await
        .map_err(|e| CallError::Unreachable {
            node: *id,
            reason: e.to_string(),
        });
        self.rpc_metrics.record(
            *id,
            "connect_bulk",
            start.elapsed(),
            ch.as_ref().err().map(CallError::kind),
        );
        let client =
            PeerClient::new(tarpc::client::Config::default(), rpc::rpc_transport(ch?)).spawn();
        lock(&self.bulk).insert(*id, client.clone());
        Ok(client)
    }

    /// Forget a bulk connection that failed, so the next call reconnects.
    fn drop_bulk(&self, id: &NodeId) {
        lock(&self.bulk).remove(id);
    }

    /// Smoothed round-trip time to a peer, if known.
    pub(crate) fn rtt(&self, id: &NodeId) -> Option<Duration> {
        lock(&self.peers)
            .get(id)
            .and_then(|s| s.info.rtt_ms)
            .map(|ms| Duration::from_secs_f64(ms / 1000.0))
    }

    /// The RPC client of a peer, if connected.
    fn client(&self, id: &NodeId) -> Option<PeerClient> {
        lock(&self.peers).get(id).and_then(|s| s.client.clone())
    }

    /// Whether a call to `id` on the peer connection would be sent now:
    /// this node, or a peer with an open connection (dropped at the first
    /// failed ping, opened again by the peer's loop).
    pub(crate) fn connected(&self, id: &NodeId) -> bool {
        *id == self.id
            || lock(&self.peers)
                .get(id)
                .is_some_and(|s| s.client.is_some())
    }

    pub(crate) fn is_up(&self, id: &NodeId) -> bool {
        *id == self.id || lock(&self.peers).get(id).is_some_and(|s| s.info.up)
    }

    /// Clients of peers currently up.
    pub(crate) fn up_clients(&self) -> Vec<(NodeId, PeerClient)> {
        lock(&self.peers)
            .iter()
            .filter(|(_, s)| s.info.up)
            .filter_map(|(id, s)| s.client.clone().map(|c| (*id, c)))
            .collect()
    }

    /// Every known peer with an address, for ping responses.
    pub(crate) fn known_peers(&self) -> Vec<PeerAddr> {
        let mut v: Vec<PeerAddr> = lock(&self.peers)
            .iter()
            .filter_map(|(id, s)| s.info.addr.clone().map(|addr| PeerAddr { id: *id, addr }))
            .collect();
        v.push(PeerAddr {
            id: self.id,
            addr: self.cfg.public_addr.clone(),
        });
        v
    }

    fn peers_path(&self) -> PathBuf {
        self.cfg.metadata_dir.join(PEERS_FILE)
    }

    fn load_peers(&self) -> Vec<PeerAddr> {
        match std::fs::read(self.peers_path()) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                warn!(
                    "ignoring unreadable peer list {}: {e}",
                    self.peers_path().display()
                );
                Vec::new()
            }),
            Err(_) => Vec::new(),
        }
    }

    fn save_peers(&self) {
        let list: Vec<PeerAddr> = lock(&self.peers)
            .iter()
            .filter_map(|(id, s)| s.info.addr.clone().map(|addr| PeerAddr { id: *id, addr }))
            .collect();
        match serde_json::to_vec_pretty(&list) {
            Ok(bytes) => {
                if let Err(e) = crate::fs::write_atomic(&self.peers_path(), &bytes) {
                    warn!("cannot save peer list: {e}");
                }
            }
            Err(e) => warn!("cannot encode peer list: {e}"),
        }
    }
}

/// What a handshake told of a peer.
struct Handshake {
    agent_version: String,
    protocol: u32,
}

/// Lock a mutex, recovering the data if a panicking thread poisoned it:
/// the state guarded here stays consistent between statements.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
