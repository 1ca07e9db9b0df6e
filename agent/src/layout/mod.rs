//! This node's copy of the cluster layout: persisted, changed by operators
//! (stage, apply, revert), and kept in sync with every other node.
//!
//! Sync is by gossip on top of pings: each ping carries the sender's layout
//! version and digest; a node that sees a different digest pulls the peer's
//! layout, merges it (a CRDT merge, see `ClusterLayout`), and pushes its own
//! back if the peer lacked something. Local changes are also pushed to every
//! peer that is up at once. A node that was down catches up at its first
//! ping after coming back, whichever side pings first.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use hangar_common::NodeId;
use hangar_common::clock::timestamp_ms;
use hangar_common::crdt::Crdt;
use hangar_common::layout::AssignmentReport;
use hangar_common::layout::cluster::{ApplyError, ClusterLayout, StagedRole};
use hangar_common::rpc::{PeerClient, PingRequest, PingResponse};
use tracing::{debug, info, warn};

use crate::fs::write_atomic;
use crate::net::Net;
use crate::net::call::infallible;

/// Why the persisted layout cannot be loaded, phrased for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LayoutLoadError(String);

const LAYOUT_FILE: &str = "cluster_layout.msgpack";
const GOSSIP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub struct LayoutManager {
    id: NodeId,
    net: Arc<Net>,
    path: PathBuf,
    /// Copy-on-write: readers take a cheap snapshot of the whole layout.
    layout: RwLock<Arc<ClusterLayout>>,
    /// The version this node writes with, and since when.
    adopted: std::sync::Mutex<(u64, std::time::Instant)>,
}

impl LayoutManager {
    /// Load the persisted layout, or start from an empty one.
    pub fn open(
        net: Arc<Net>,
        metadata_dir: &std::path::Path,
        replication_factor: usize,
    ) -> Result<Arc<Self>, LayoutLoadError> {
        let path = metadata_dir.join(LAYOUT_FILE);
        let layout = match std::fs::read(&path) {
            Ok(bytes) => {
                let l: ClusterLayout = rmp_serde::from_slice(&bytes).map_err(|e| {
                    LayoutLoadError(format!(
                        "cannot decode the layout in {}: {e}; move it away and the node will fetch the layout from its peers",
                        path.display()
                    ))
                })?;
                if l.replication_factor != replication_factor {
                    return Err(LayoutLoadError(format!(
                        "replication_factor is {replication_factor} in the config but the cluster uses {}: every node of a cluster must use the same value",
                        l.replication_factor
                    )));
                }
                l
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                ClusterLayout::new(replication_factor)
            }
            Err(e) => {
                return Err(LayoutLoadError(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        Ok(Arc::new(LayoutManager {
            id: net.id,
            net,
            path,
            adopted: std::sync::Mutex::new((layout.version, std::time::Instant::now())),
            layout: RwLock::new(Arc::new(layout)),
        }))
    }

    pub fn current(&self) -> ClusterLayout {
        (*self.snapshot()).clone()
    }

    /// The current layout, without copying it.
    pub(crate) fn snapshot(&self) -> Arc<ClusterLayout> {
        self.layout
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn save(&self, l: &ClusterLayout) {
        match rmp_serde::to_vec(l) {
            Ok(bytes) => {
                if let Err(e) = write_atomic(&self.path, &bytes) {
                    warn!("cannot persist layout: {e}");
                }
            }
            Err(e) => warn!("cannot encode layout: {e}"),
        }
    }

    /// Change the layout with `f`; persist and push it if it changed.
    fn update<T>(self: &Arc<Self>, f: impl FnOnce(&mut ClusterLayout) -> T) -> T {
        let (out, changed, snapshot) = {
            let mut guard = self.layout.write().unwrap_or_else(|p| p.into_inner());
            let mut l = (**guard).clone();
            let before = l.digest();
            let out = f(&mut l);
            if l.prune() {
                info!(
                    "layout version {}: data transition complete, older versions retired",
                    l.version
                );
            }
            let changed = l.digest() != before;
            if changed {
                self.save(&l);
                let mut adopted = self.adopted.lock().unwrap_or_else(|p| p.into_inner());
                if adopted.0 != l.version {
                    *adopted = (l.version, std::time::Instant::now());
                }
                drop(adopted);
                *guard = Arc::new(l.clone());
            }
            (out, changed, l)
        };
        if changed {
            self.push_to_all(snapshot);
        }
        out
    }

    fn push_to_all(&self, l: ClusterLayout) {
        for (id, client) in self.net.up_clients() {
            let l = l.clone();
            let net = self.net.clone();
            tokio::spawn(async move {
                let pushed = net
                    .call_on(
                        client,
                        id,
                        "push_layout",
                        GOSSIP_TIMEOUT,
                        |c, ctx| async move { infallible(c.push_layout(ctx, l).await) },
                    )
                    .await;
                if let Err(e) = pushed {
                    debug!("cannot push the layout: {e}");
                }
            });
        }
    }

    /// Merge a layout received from a peer.
    pub(crate) fn merge_from(self: &Arc<Self>, other: &ClusterLayout, from: NodeId) {
        if other.replication_factor != self.snapshot().replication_factor {
            warn!(
                "ignoring layout from {}: it uses replication factor {}, this node {}",
                from.short(),
                other.replication_factor,
                self.snapshot().replication_factor
            );
            return;
        }
        let before = self.current().version;
        self.update(|l| l.merge(other));
        let after = self.current().version;
        if after > before {
            info!("layout version {after} received from {}", from.short());
        }
    }

    /// How long this node has been writing with `version` (None if it
    /// writes with another one).
    pub(crate) fn adopted_for(&self, version: u64) -> Option<std::time::Duration> {
        let adopted = self.adopted.lock().unwrap_or_else(|p| p.into_inner());
        (adopted.0 == version).then(|| adopted.1.elapsed())
    }

    /// Record this node's transition progress (see `ClusterLayout::ack`
    /// and `ClusterLayout::sync`).
    pub(crate) fn set_ack(self: &Arc<Self>, version: u64) {
        let me = self.id;
        self.update(|l| l.set_ack(me, version));
    }

    /// Record `nodes` as having confirmed `version` (they are down: see
    /// `Admin::layout_skip_dead`).
    pub(crate) fn skip_acks(self: &Arc<Self>, nodes: &[NodeId], version: u64) {
        self.update(|l| {
            for n in nodes {
                l.set_ack(*n, version);
            }
        });
    }

    pub(crate) fn set_sync(self: &Arc<Self>, version: u64) {
        let me = self.id;
        self.update(|l| l.set_sync(me, version));
    }

    pub fn stage(self: &Arc<Self>, changes: Vec<(NodeId, StagedRole)>) {
        // Staged changes are last-writer-wins registers: the hybrid clock
        // (and `Lww::update`'s "above what it replaces") keeps an
        // operator's later change ahead of an earlier one made on a node
        // whose clock is ahead.
        let now = timestamp_ms();
        let me = self.id;
        self.update(|l| {
            for (node, change) in changes {
                l.stage(node, change, now, me);
            }
        });
    }

    pub(crate) fn revert(self: &Arc<Self>) {
        let now = timestamp_ms();
        let me = self.id;
        self.update(|l| l.revert(now, me));
    }

    pub fn apply(self: &Arc<Self>, version: u64) -> Result<AssignmentReport, ApplyError> {
        let res = self.update(|l| {
            let (next, report) = l.apply(version)?;
            *l = next;
            Ok(report)
        });
        if res.is_ok() {
            info!("layout version {version} applied");
        }
        res
    }
}

impl crate::net::Gossip for LayoutManager {
    fn ping_request(&self) -> PingRequest {
        let l = self.layout.read().unwrap_or_else(|p| p.into_inner());
        PingRequest {
            from_addr: self.net.public_addr().to_string(),
            layout_version: l.version,
            layout_digest: l.digest(),
            clock: None,
        }
    }

    fn ping_response(&self) -> PingResponse {
        let l = self.layout.read().unwrap_or_else(|p| p.into_inner());
        PingResponse {
            layout_version: l.version,
            layout_digest: l.digest(),
            known_peers: self.net.known_peers(),
            disk: None,
            data_dirs: Vec::new(),
            clock: None,
            down_since: Vec::new(),
        }
    }

    fn on_pong(self: Arc<Self>, peer: NodeId, client: PeerClient, resp: PingResponse) {
        if resp.layout_digest == self.snapshot().digest() {
            return;
        }
        let me = self;
        tokio::spawn(async move {
            let pulled = me
                .net
                .call_on(
                    client.clone(),
                    peer,
                    "pull_layout",
                    GOSSIP_TIMEOUT,
                    |c, ctx| async move { infallible(c.pull_layout(ctx).await) },
                )
                .await;
            match pulled {
                Ok(theirs) => {
                    me.merge_from(&theirs, peer);
                    let mine = me.current();
                    if mine.digest() != theirs.digest() {
                        let pushed = me
                            .net
                            .call_on(
                                client,
                                peer,
                                "push_layout",
                                GOSSIP_TIMEOUT,
                                |c, ctx| async move { infallible(c.push_layout(ctx, mine).await) },
                            )
                            .await;
                        if let Err(e) = pushed {
                            debug!("cannot push the layout: {e}");
                        }
                    }
                }
                Err(e) => warn!("cannot pull the layout: {e}"),
            }
        });
    }
}
