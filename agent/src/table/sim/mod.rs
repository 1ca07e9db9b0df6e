//! A deterministic simulation of the table layer: three to five replicas
//! of the `debug_kv` table in one process, each on the memory engine,
//! talking through an in-process network that delays, loses and cuts
//! messages and stops whole nodes as a seeded generator decides, on
//! tokio's paused clock. Clients write, delete and read a few hot keys
//! while anti-entropy and tombstone collection run; then the faults heal.
//!
//! Checked on every schedule:
//! - **read-your-writes at quorum**: a read that succeeds returns a value
//!   at least as new as every write acknowledged before it began (or
//!   nothing, when that write was a deletion since collected);
//! - **convergence**: once healed and after anti-entropy, every replica
//!   holds the same bytes for every key, at least as new as every
//!   acknowledged write; and still the same after tombstone collection.
//!
//! Seed in, failure out: a failing schedule names its seed, and
//! `HANGAR_SIM_SEED=<seed>` replays just that one (`HANGAR_SIM_SCHEDULES`
//! runs more than the default). Planted bugs (reads waiting for one
//! answer, anti-entropy pushing nothing, tombstones collected too early)
//! must each be caught.

mod ordered;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hangar_common::NodeId;
use hangar_common::layout::NodeRole;
use hangar_common::layout::cluster::{ClusterLayout, StagedRole};
use hangar_common::rpc::{TableOp, TableRequest};
use hangar_common::transport::{Keypair, RpcSecret};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::data::{TableData, storage_key};
use super::kv::{KvItem, KvTable};
use super::{Bug, Table, TableCall, TableConfig, TableEndpoint, TableError, TableNet};
use crate::db::mem::MemEngine;
use crate::layout::LayoutManager;
use crate::net::{CallError, Net, NetConfig};

/// Time a replica has to answer, in simulated time.
const OP_TIMEOUT: Duration = Duration::from_secs(1);
/// Keys the clients share: few, so that they collide.
const KEYS: [&str; 4] = ["a", "b", "c", "d"];

/// Everything the simulated nodes share: the network's state and the
/// generator that decides every fault.
struct World {
    rng: Mutex<StdRng>,
    tables: Mutex<BTreeMap<NodeId, Arc<Table<KvTable>>>>,
    /// Nodes stopped (their disk kept): they neither send nor receive.
    down: Mutex<BTreeSet<NodeId>>,
    /// Links cut both ways, as (lower id, higher id).
    cut: Mutex<BTreeSet<(NodeId, NodeId)>>,
    /// Chance that one message (a request or its answer) is lost.
    loss: Mutex<f64>,
    /// Upper bound of one message's delay, in milliseconds.
    max_delay_ms: u64,
    /// Write timestamps, unique and increasing in the order writes start.
    next_ts: AtomicU64,
    /// Orders the history's events.
    seq: AtomicU64,
    up: tokio::sync::broadcast::Sender<NodeId>,
    /// Nodes that announce protocol 5 (a version before the hash-sum
    /// Merkle trees), as during a rolling upgrade.
    old: Mutex<BTreeSet<NodeId>>,
    /// Nodes every other node sees as not connected (directed tests only:
    /// the random schedules leave it empty, so their network decides
    /// every call).
    away: Mutex<BTreeSet<NodeId>>,
    /// Directed tests: once a request this recognises is answered, these
    /// nodes join `away` (a node going away in the middle of a write).
    away_after: Mutex<Option<AwayAfter>>,
}

/// When nodes go away (see [`World::away_after`]).
type AwayAfter = (fn(&TableOp) -> bool, BTreeSet<NodeId>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn link(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    if a < b { (a, b) } else { (b, a) }
}

impl World {
    fn roll(&self, p: f64) -> bool {
        lock(&self.rng).gen_bool(p.clamp(0.0, 1.0))
    }

    fn below(&self, n: u64) -> u64 {
        lock(&self.rng).gen_range(0..n.max(1))
    }

    fn delay(&self) -> Duration {
        Duration::from_millis(self.below(self.max_delay_ms + 1))
    }

    fn is_down(&self, n: &NodeId) -> bool {
        lock(&self.down).contains(n)
    }

    /// Whether a message from `a` reaches `b` now (before loss).
    fn open(&self, a: NodeId, b: NodeId) -> bool {
        !self.is_down(&a) && !self.is_down(&b) && !lock(&self.cut).contains(&link(a, b))
    }

    fn lost(&self) -> bool {
        let p = *lock(&self.loss);
        self.roll(p)
    }

    fn tick(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst)
    }

    fn table(&self, n: &NodeId) -> Option<Arc<Table<KvTable>>> {
        lock(&self.tables).get(n).cloned()
    }
}

/// One node's view of the simulated network.
struct SimNet {
    me: NodeId,
    world: Arc<World>,
}

impl TableNet for SimNet {
    fn id(&self) -> NodeId {
        self.me
    }

    fn is_up(&self, node: &NodeId) -> bool {
        *node == self.me || self.world.open(self.me, *node)
    }

    fn connected(&self, node: &NodeId) -> bool {
        *node == self.me || !lock(&self.world.away).contains(node)
    }

    fn protocol(&self, node: &NodeId) -> Option<u32> {
        if lock(&self.world.old).contains(node) {
            return Some(6);
        }
        Some(hangar_common::transport::PROTOCOL)
    }

    fn subscribe_up(&self) -> tokio::sync::broadcast::Receiver<NodeId> {
        self.world.up.subscribe()
    }

    fn random_below(&self, max: u64) -> u64 {
        self.world.below(max)
    }

    fn call_table(&self, node: NodeId, req: TableRequest, timeout: Duration) -> TableCall<'_> {
        let world = self.world.clone();
        let me = self.me;
        Box::pin(async move {
            // A stopped node sends nothing; a peer known to be down is
            // refused at once half of the time (the other half, it is not
            // detected yet and the call times out).
            if world.is_down(&me) || (world.is_down(&node) && world.roll(0.5)) {
                return Err(CallError::Unreachable {
                    node,
                    reason: "down".into(),
                });
            }
            let trip = async {
                tokio::time::sleep(world.delay()).await;
                if !world.open(me, node) || world.lost() {
                    return std::future::pending().await;
                }
                let Some(table) = world.table(&node) else {
                    return std::future::pending().await;
                };
                let traced = trace_on().then(|| describe_op(&table, &req.op));
                let trigger = lock(&world.away_after)
                    .as_ref()
                    .is_some_and(|(when, _)| when(&req.op));
                let answer = table.handle(req.op);
                if trigger && let Some((_, nodes)) = lock(&world.away_after).take() {
                    lock(&world.away).extend(nodes);
                }
                if let Some(op) = traced {
                    eprintln!(
                        "[{}] n{} -> n{}: {op} => {}",
                        world.seq.load(Ordering::SeqCst),
                        me.0[0] - 1,
                        node.0[0] - 1,
                        describe_answer(&table, &answer)
                    );
                }
                tokio::time::sleep(world.delay()).await;
                if !world.open(me, node) || world.lost() {
                    // Carried out, but the answer never comes back.
                    return std::future::pending().await;
                }
                answer
            };
            match tokio::time::timeout(timeout, trip).await {
                Ok(Ok(resp)) => Ok(resp),
                Ok(Err(error)) => Err(CallError::Refused { node, error }),
                Err(_) => Err(CallError::Timeout {
                    node,
                    after: timeout,
                }),
            }
        })
    }
}

/// Whether `HANGAR_SIM_TRACE` asks for every message delivered to be
/// printed (with `HANGAR_SIM_SEED`, to see how one schedule went wrong).
fn trace_on() -> bool {
    std::env::var_os("HANGAR_SIM_TRACE").is_some()
}

/// An item as the trace shows it: value @ time (ms.µs since the
/// simulation's epoch).
fn describe_item(_table: &Table<KvTable>, bytes: &[u8]) -> String {
    // Not `TableData::decode`: that moves the node's clock, and the trace
    // must not change the schedule.
    match rmp_serde::from_slice::<KvItem>(bytes) {
        Ok(i) => format!(
            "{}={:?}@{}",
            i.key,
            i.value(),
            describe_time(i.value.timestamp)
        ),
        Err(e) => format!("<{e}>"),
    }
}

fn describe_time(t: u64) -> String {
    let rel = t as i64 - 1_700_000_000_000_000;
    format!("{}.{:03}", rel / 1000, (rel % 1000).abs())
}

fn describe_ballot(b: &hangar_common::rpc::Ballot) -> String {
    format!(
        "{}/n{}",
        describe_time(b.round),
        b.node.0[0].wrapping_sub(1)
    )
}

fn describe_op(table: &Table<KvTable>, op: &hangar_common::rpc::TableOp) -> String {
    use hangar_common::rpc::TableOp;
    let items = |v: &[Vec<u8>]| {
        v.iter()
            .map(|b| describe_item(table, b))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match op {
        TableOp::Update(v) => format!("update [{}]", items(v)),
        TableOp::UpdateReturn(v) => format!("ordered [{}]", items(v)),
        TableOp::UpdateReturnWithBlock { items: v, .. } => {
            format!("ordered with a block [{}]", items(v))
        }
        TableOp::Get(_) => "get".into(),
        TableOp::Prepare { ballot, .. } => format!("prepare {}", describe_ballot(ballot)),
        TableOp::Accept { ballot, value, .. } => format!(
            "accept {} {}",
            describe_ballot(ballot),
            describe_item(table, value)
        ),
        other => format!("{other:?}").chars().take(40).collect(),
    }
}

fn describe_answer(
    table: &Table<KvTable>,
    answer: &Result<hangar_common::rpc::TableResponse, hangar_common::rpc::RpcError>,
) -> String {
    use hangar_common::rpc::TableResponse;
    match answer {
        Ok(TableResponse::Item(Some(b))) => describe_item(table, b),
        Ok(TableResponse::Items(v)) => format!(
            "[{}]",
            v.iter()
                .map(|b| describe_item(table, b))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Ok(TableResponse::Promise {
            ok,
            promised,
            accepted,
            current,
        }) => format!(
            "promise ok={ok} {} accepted={:?} current={:?}",
            describe_ballot(promised),
            accepted.as_ref().map(|(b, v)| format!(
                "{} {}",
                describe_ballot(b),
                describe_item(table, v)
            )),
            current.as_ref().map(|b| describe_item(table, b))
        ),
        Ok(TableResponse::Accepted { ok, promised }) => {
            format!("accepted ok={ok} {}", describe_ballot(promised))
        }
        Ok(other) => format!("{other:?}").chars().take(40).collect(),
        Err(e) => format!("error {e}"),
    }
}

/// What a client saw.
#[derive(Clone, Debug)]
enum Outcome {
    /// A write or deletion, acknowledged or not.
    Wrote { ts: u64, deletion: bool, ok: bool },
    /// A read that succeeded: the timestamp and kind of what it returned.
    Read(Option<(u64, bool)>),
    /// A read that failed.
    ReadFailed,
}

#[derive(Clone, Debug)]
struct Event {
    key: &'static str,
    start: u64,
    end: u64,
    outcome: Outcome,
}

/// One replica's item: its bytes, and the timestamp and value they hold.
type Held = Option<(Vec<u8>, u64, Option<String>)>;

/// What a finished schedule did, for its report.
struct Report {
    events: Vec<Event>,
    /// Every replica's item per key, after healing and anti-entropy.
    converged: BTreeMap<&'static str, Vec<Held>>,
    /// The same after tombstone collection.
    collected: BTreeMap<&'static str, Vec<Held>>,
}

/// Settings of one schedule, all drawn from its seed.
struct Schedule {
    seed: u64,
    nodes: usize,
    clients: usize,
    ops: usize,
    max_down: usize,
    bugs: Vec<Bug>,
}

impl Schedule {
    fn from_seed(seed: u64, bugs: &[Bug]) -> Schedule {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        Schedule {
            seed,
            nodes: rng.gen_range(3..=5),
            clients: rng.gen_range(2..=4),
            ops: rng.gen_range(15..=40),
            max_down: rng.gen_range(1..=2),
            bugs: bugs.to_vec(),
        }
    }
}

/// Milliseconds of the runtime's (paused) clock, from an arbitrary
/// start: what the simulated tables take for the time of day.
fn paused_now_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(std::time::Instant::now);
    let now = tokio::time::Instant::now().into_std();
    1_000_000 + now.saturating_duration_since(start).as_millis() as u64
}

fn node_id(i: usize) -> NodeId {
    NodeId([i as u8 + 1; 32])
}

/// Run one schedule to the end; its history and final states.
/// A simulated cluster: its network, its layout and a table on every node.
struct SimCluster {
    world: Arc<World>,
    ids: Vec<NodeId>,
    layout: Arc<LayoutManager>,
    cfg: TableConfig,
    _dir: tempfile::TempDir,
}

/// Microseconds of the runtime's (paused) clock on a date of today's
/// order, so that a clock set minutes back stays far above zero.
fn paused_now_us() -> u64 {
    1_700_000_000_000_000 + (paused_now_ms() - 1_000_000) * 1000
}

impl SimCluster {
    /// The nodes of `s`, each with its table. With `clock_offsets_us`,
    /// node `i` times its writes by its own hybrid clock, that far off
    /// the (paused) real time; without, they share the process's.
    fn start(s: &Schedule, clock_offsets_us: Option<&[i64]>) -> SimCluster {
        let ids: Vec<NodeId> = (0..s.nodes).map(node_id).collect();
        let world = Arc::new(World {
            rng: Mutex::new(StdRng::seed_from_u64(s.seed)),
            tables: Mutex::new(BTreeMap::new()),
            down: Mutex::new(BTreeSet::new()),
            cut: Mutex::new(BTreeSet::new()),
            loss: Mutex::new(0.02),
            max_delay_ms: 30,
            next_ts: AtomicU64::new(1),
            seq: AtomicU64::new(0),
            up: tokio::sync::broadcast::channel(16).0,
            old: Mutex::new(BTreeSet::new()),
            away: Mutex::new(BTreeSet::new()),
            away_after: Mutex::new(None),
        });
        // One layout manager for all: it only hands out the layout (its
        // own network is never started).
        let dir = tempfile::tempdir().expect("temporary directory");
        let net = Net::new(
            Keypair::generate(),
            RpcSecret::generate(),
            NetConfig {
                public_addr: "127.0.0.1:1".into(),
                ping_interval: Duration::from_secs(1),
                failures_before_down: 3,
                metadata_dir: dir.path().to_path_buf(),
                bind_outgoing: None,
            },
        );
        let layout = LayoutManager::open(net, dir.path(), 3).expect("layout manager");
        let mut l = ClusterLayout::new(3);
        for (i, id) in ids.iter().enumerate() {
            let role = NodeRole {
                zone: format!("zone{i}"),
                capacity: Some(1 << 30),
            };
            l.stage(*id, StagedRole::Set(role), 1, ids[0]);
        }
        let (l, _) = l.apply(1).expect("a layout of the simulated nodes");
        layout.merge_from(&l, ids[0]);
        let cfg = TableConfig {
            op_timeout: OP_TIMEOUT,
            sync_interval: Duration::from_secs(3600),
            gc_delay: Duration::from_secs(2),
            workers: Default::default(),
        };
        for (i, id) in ids.iter().enumerate() {
            let mut data = TableData::open(Arc::new(MemEngine::default()), Arc::new(KvTable))
                .expect("memory table");
            data.now_ms = paused_now_ms;
            if let Some(offsets) = clock_offsets_us {
                // A few bytes per node and schedule, for the test's life.
                data.clock = Box::leak(Box::new(hangar_common::clock::Hlc::skewed(
                    paused_now_us,
                    offsets[i],
                )));
            }
            let net = Arc::new(SimNet {
                me: *id,
                world: world.clone(),
            });
            let t = Table::new(data, net, layout.clone(), cfg.clone());
            for bug in &s.bugs {
                t.plant(*bug);
            }
            lock(&world.tables).insert(*id, t);
        }
        SimCluster {
            world,
            ids,
            layout,
            cfg,
            _dir: dir,
        }
    }

    fn table(&self, n: &NodeId) -> Arc<Table<KvTable>> {
        self.world.table(n).expect("a table per node")
    }

    /// Stop and restart nodes, cut and mend links, lose messages, and run
    /// one node's anti-entropy and tombstone collection now and then,
    /// until `done` counts `clients`.
    fn nemesis(
        &self,
        max_down: usize,
        done: Arc<AtomicU64>,
        clients: u64,
    ) -> tokio::task::JoinHandle<()> {
        let (world, ids) = (self.world.clone(), self.ids.clone());
        tokio::spawn(async move {
            while done.load(Ordering::SeqCst) < clients {
                tokio::time::sleep(Duration::from_millis(100 + world.below(400))).await;
                let n = ids[world.below(ids.len() as u64) as usize];
                match world.below(6) {
                    0 if lock(&world.down).len() < max_down => {
                        lock(&world.down).insert(n);
                    }
                    1 => {
                        lock(&world.down).remove(&n);
                    }
                    2 => {
                        let m = ids[world.below(ids.len() as u64) as usize];
                        if m != n {
                            lock(&world.cut).insert(link(n, m));
                        }
                    }
                    3 => lock(&world.cut).clear(),
                    4 => *lock(&world.loss) = world.below(15) as f64 / 100.0,
                    _ => {
                        // Background work of one node that is running.
                        if !world.is_down(&n) {
                            let t = world.table(&n).expect("a table per node");
                            t.sync_round(None).await;
                            let _ = t.gc_round().await;
                        }
                    }
                }
            }
        })
    }

    /// Every node up, every link whole, no loss; then anti-entropy from
    /// every node, twice (a node may learn from a later one). Returns the
    /// tables.
    async fn heal(&self) -> Vec<Arc<Table<KvTable>>> {
        lock(&self.world.down).clear();
        lock(&self.world.cut).clear();
        *lock(&self.world.loss) = 0.0;
        let tables: Vec<Arc<Table<KvTable>>> = lock(&self.world.tables).values().cloned().collect();
        for _ in 0..2 {
            for t in &tables {
                t.sync_round(None).await;
            }
        }
        tables
    }
}

/// Run one schedule to the end; its history and final states.
async fn run(s: &Schedule) -> Report {
    let cluster = SimCluster::start(s, None);
    let (world, ids, layout, cfg) = (&cluster.world, &cluster.ids, &cluster.layout, &cluster.cfg);

    let history = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..s.clients {
        let (world, ids, history, done) =
            (world.clone(), ids.clone(), history.clone(), done.clone());
        let ops = s.ops;
        clients.push(tokio::spawn(async move {
            for _ in 0..ops {
                let coord = ids[world.below(ids.len() as u64) as usize];
                if world.is_down(&coord) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                let table = world.table(&coord).expect("a table per node");
                let key = KEYS[world.below(KEYS.len() as u64) as usize];
                let start = world.tick();
                let outcome = if world.roll(0.5) {
                    let ts = world.next_ts.fetch_add(1, Ordering::SeqCst);
                    let deletion = world.roll(0.25);
                    let value = (!deletion).then(|| format!("v{ts}"));
                    let ok = table
                        .insert(&KvItem::new(key, value, ts, coord))
                        .await
                        .is_ok();
                    Outcome::Wrote { ts, deletion, ok }
                } else {
                    match table.get(key.as_bytes(), &[]).await {
                        Ok(item) => Outcome::Read(
                            item.map(|i| (i.value.timestamp, i.value.value.is_none())),
                        ),
                        Err(_) => Outcome::ReadFailed,
                    }
                };
                let end = world.tick();
                lock(&history).push(Event {
                    key,
                    start,
                    end,
                    outcome,
                });
                tokio::time::sleep(Duration::from_millis(world.below(60))).await;
            }
            done.fetch_add(1, Ordering::SeqCst);
        }));
    }

    // The faults, and the background work of the nodes, until the clients
    // are done.
    let nemesis = cluster.nemesis(s.max_down, done.clone(), s.clients as u64);
    for c in clients {
        c.await.expect("a client task");
    }
    nemesis.await.expect("the nemesis task");

    // Tombstones old enough are collected while the faults last: a replica
    // that is away or missed one must hold the collection back.
    tokio::time::sleep(cfg.gc_delay * 2).await;
    for id in ids {
        if !world.is_down(id) {
            let t = world.table(id).expect("a table per node");
            let _ = t.gc_round().await;
        }
    }

    let tables = cluster.heal().await;
    let states = |tables: &[Arc<Table<KvTable>>]| {
        KEYS.iter()
            .map(|k| {
                let key = storage_key(k.as_bytes(), &[]);
                let holders = layout.snapshot().nodes_of(key[0] as usize).to_vec();
                let held: Vec<Held> = tables
                    .iter()
                    .filter(|t| holders.contains(&t.net.id()))
                    .map(|t| {
                        let raw = t.data.get_raw(&key).expect("memory engine read")?;
                        let item = t.data.decode(&raw).expect("a decodable item");
                        Some((raw, item.value.timestamp, item.value.value))
                    })
                    .collect();
                (*k, held)
            })
            .collect::<BTreeMap<_, _>>()
    };
    let converged = states(&tables);
    // Tombstones wait `gc_delay`, then go once every replica holds them.
    tokio::time::sleep(cfg.gc_delay * 2).await;
    for t in &tables {
        t.gc_round().await.expect("tombstone collection");
    }
    let collected = states(&tables);
    let events = lock(&history).clone();
    Report {
        events,
        converged,
        collected,
    }
}

/// What is wrong with a schedule's outcome, if anything.
fn check(report: &Report) -> Result<(), String> {
    let acked = |key: &str, before: u64| {
        report
            .events
            .iter()
            .filter(|e| e.key == key && e.end < before)
            .filter_map(|e| match e.outcome {
                Outcome::Wrote {
                    ts,
                    deletion,
                    ok: true,
                } => Some((ts, deletion)),
                _ => None,
            })
            .max()
    };
    // A deletion at or above `ts` that started before `before` (acknowledged
    // or not: a failed write may still have landed): once collected, it
    // explains finding nothing.
    let deleted_since = |key: &str, ts: u64, before: u64| {
        report.events.iter().any(|e| {
            e.key == key
                && e.start < before
                && matches!(e.outcome, Outcome::Wrote { ts: t, deletion: true, .. } if t >= ts)
        })
    };
    for e in &report.events {
        let Outcome::Read(got) = e.outcome else {
            continue;
        };
        let Some((want, deletion)) = acked(e.key, e.start) else {
            continue;
        };
        match got {
            Some((ts, _)) if ts >= want => {}
            None if deleted_since(e.key, want, e.end) => {}
            _ => {
                return Err(format!(
                    "read of {:?} (events {}..{}) returned {got:?}, but the write at timestamp \
                     {want} (deletion: {deletion}) was acknowledged before it began",
                    e.key, e.start, e.end
                ));
            }
        }
    }
    for (name, states) in [
        ("after anti-entropy", &report.converged),
        ("after tombstone collection", &report.collected),
    ] {
        for (key, held) in states {
            let bytes = |h: &Held| h.as_ref().map(|(b, _, _)| b.clone());
            if held.iter().any(|h| bytes(h) != bytes(&held[0])) {
                let shown: Vec<_> = held
                    .iter()
                    .map(|h| h.as_ref().map(|(_, ts, v)| (*ts, v.clone())))
                    .collect();
                return Err(format!("replicas of {key:?} differ {name}: {shown:?}"));
            }
            let Some((want, _)) = acked(key, u64::MAX) else {
                continue;
            };
            match &held[0] {
                Some((_, ts, _)) if *ts >= want => {}
                None if deleted_since(key, want, u64::MAX) => {}
                other => {
                    return Err(format!(
                        "{key:?} {name} holds {:?}, older than the write at timestamp {want} \
                         acknowledged",
                        other.as_ref().map(|(_, ts, _)| *ts)
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Run the schedule of `seed` on a fresh paused-clock runtime.
fn simulate(seed: u64, bugs: &[Bug]) -> Result<(), String> {
    let schedule = Schedule::from_seed(seed, bugs);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    let report = rt.block_on(run(&schedule));
    check(&report).map_err(|e| {
        format!(
            "seed {seed} ({} nodes, {} clients x {} operations, up to {} down): {e}",
            schedule.nodes, schedule.clients, schedule.ops, schedule.max_down
        )
    })
}

/// A number from the environment, if set and a number.
fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// How many schedules to run: `HANGAR_SIM_SCHEDULES`, or `default`.
fn schedules(default: u64) -> u64 {
    env_u64("HANGAR_SIM_SCHEDULES").unwrap_or(default)
}

/// The seeds a test runs: `schedules(default)` of them from
/// `HANGAR_SIM_FIRST_SEED` (to try schedules no run has tried), or 0.
fn seeds(default: u64) -> std::ops::Range<u64> {
    let first = env_u64("HANGAR_SIM_FIRST_SEED").unwrap_or(0);
    first..first + schedules(default)
}

/// The one seed `HANGAR_SIM_SEED` asks to replay, if any.
fn replay_seed() -> Option<u64> {
    env_u64("HANGAR_SIM_SEED")
}

#[test]
fn random_schedules_keep_read_your_writes_and_converge() {
    if let Some(seed) = replay_seed() {
        simulate(seed, &[]).unwrap_or_else(|e| panic!("{e}"));
        return;
    }
    for seed in seeds(200) {
        simulate(seed, &[]).unwrap_or_else(|e| panic!("{e}\nreplay: HANGAR_SIM_SEED={seed}"));
    }
}

/// The simulation is worth something only if it catches broken tables:
/// reads from one replica instead of a quorum, anti-entropy that pushes
/// nothing, tombstones collected before every replica holds them.
#[test]
fn planted_bugs_are_caught() {
    for bug in [
        Bug::ReadFromOne,
        Bug::SyncPushesNothing,
        Bug::GcWithoutHandover,
    ] {
        let caught = (0..schedules(200)).find_map(|seed| simulate(seed, &[bug]).err());
        assert!(caught.is_some(), "no schedule caught the planted {bug:?}");
    }
}

/// The same seed gives the same history: a failure can be replayed.
#[test]
fn a_seed_replays_the_same_schedule() {
    let run_once = |seed| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime");
        let r = rt.block_on(run(&Schedule::from_seed(seed, &[])));
        format!("{:?} {:?}", r.events, r.collected)
    };
    for seed in [3, 17] {
        assert_eq!(run_once(seed), run_once(seed), "seed {seed}");
    }
}

/// Run `test` on a simulation of 3 nodes, no message lost, on a paused
/// clock.
fn three_nodes<F: std::future::Future<Output = ()>>(test: impl FnOnce(SimCluster) -> F) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    rt.block_on(async {
        let mut s = Schedule::from_seed(1, &[]);
        s.nodes = 3;
        let c = SimCluster::start(&s, None);
        *lock(&c.world.loss) = 0.0;
        test(c).await
    });
}

/// During a rolling upgrade from protocol 6, anti-entropy skips the nodes
/// of 6 (their Merkle trees have another shape) and still repairs the
/// others; once the old node is upgraded it is repaired too.
#[test]
fn anti_entropy_skips_a_node_of_protocol_6_and_repairs_it_once_upgraded() {
    three_nodes(|c| async move {
        let (a, b, old) = (c.ids[0], c.ids[1], c.ids[2]);
        lock(&c.world.old).insert(old);
        // An item that only node a holds (written while the others were
        // away).
        let item = KvItem::new("k", Some("v".into()), 1, a);
        c.table(&a).data.update(&item).expect("local write");
        let key = storage_key(b"k", b"");
        let holds = |n: &NodeId| c.table(n).data.get(&key).expect("read").is_some();
        c.table(&a).sync_round(None).await;
        assert!(holds(&b), "a node of the same protocol is repaired");
        assert!(!holds(&old), "a node of protocol 6 is not synced with");
        lock(&c.world.old).clear();
        c.table(&a).sync_round(None).await;
        assert!(holds(&old), "once upgraded, it is repaired");
    });
}

/// Two replicas go away in the middle of a write, after its first round
/// reached them: the next round is refused before it sends anything, and
/// the write fails saying its outcome is not known (the first round may
/// have been applied, or accepted), not that it was refused before
/// sending anything.
#[test]
fn a_round_refused_after_an_earlier_one_reached_replicas_leaves_the_outcome_unknown() {
    three_nodes(|c| async move {
        let (a, b, d) = (c.ids[0], c.ids[1], c.ids[2]);
        let unknown = |e: &TableError, what: &str| {
            assert!(
                matches!(e, TableError::Interrupted { cause, .. }
                    if matches!(**cause, TableError::Away { .. })),
                "{what}: {e}"
            );
            assert!(
                e.to_string()
                    .contains("whether it takes effect is not known"),
                "{e}"
            );
        };

        // An ordered write timed below what the replicas hold: its first
        // round meets the newer value, and the second (timed above it)
        // finds the two other replicas gone.
        let now = c.table(&b).data.clock.now();
        let mut newer = KvItem::new("k", Some("newer".into()), now, b);
        c.table(&b)
            .insert_latest(&mut newer)
            .await
            .expect("a first write");
        *lock(&c.world.away_after) = Some((
            |op| matches!(op, TableOp::UpdateReturn(_)),
            BTreeSet::from([b, d]),
        ));
        let mut late = KvItem::new("k", Some("late".into()), 1, a);
        let e = c
            .table(&a)
            .insert_latest(&mut late)
            .await
            .expect_err("a write cut short");
        unknown(&e, "an ordered write's second round");

        // A first round refused so is refused plainly: nothing was sent.
        let mut more = KvItem::new("k", Some("more".into()), c.table(&a).data.clock.now(), a);
        let e = c
            .table(&a)
            .insert_latest(&mut more)
            .await
            .expect_err("refused");
        assert!(matches!(e, TableError::Away { .. }), "a first round: {e}");

        // A consensus write chosen by a majority, whose final write (what
        // makes it readable) finds the others gone.
        lock(&c.world.away).clear();
        *lock(&c.world.away_after) = Some((
            |op| matches!(op, TableOp::Accept { .. }),
            BTreeSet::from([b, d]),
        ));
        let new = KvItem::new("lock", Some("mine".into()), 0, a);
        let e = c
            .table(&a)
            .cas(
                b"lock",
                &[],
                None,
                |i| i.value() == Some("mine"),
                |_| Ok::<_, ()>(new.clone()),
            )
            .await
            .expect_err("a consensus write cut short");
        unknown(&e, "a consensus write's final write");
    });
}
