//! Replicated CRDT tables: every piece of metadata lives in one.
//!
//! A table holds items of one type ([`TableSchema::Item`]); an item has a
//! partition key, whose hash picks one of the 256 partitions, and a sort
//! key; the layout picks the partition's nodes. Items are CRDTs: replicas
//! merge whatever they receive, in any order, and converge.
//!
//! - **Writes** ([`Table::insert`]) go to every node of the partition and
//!   return after `W` acknowledgements; the others keep receiving in the
//!   background.
//! - **Reads** ([`Table::get`], [`Table::get_range`]) ask every node, return
//!   after `R` answers merged, and push the merged item back to any answering
//!   replica that was stale (read repair).
//! - With `R + W > RF`, a read after an acknowledged write sees it. RF 3:
//!   R = W = 2; RF 2: W = 2, R = 1; RF 1: 1 and 1.
//! - **Anti-entropy** (`sync.rs`) compares per-partition Merkle trees
//!   (`merkle.rs`) with the other replicas periodically and whenever a peer
//!   comes up, and pushes only the differing items.
//! - **Tombstones** are collected (`gc.rs`) only once every replica of the
//!   partition holds them.
//!
//! Local storage of one replica is `data.rs`, on the `db` engine boundary.
//! This module knows the layout and the network; it does not know what the
//! items mean.

pub mod data;
pub mod gc;
pub mod kv;
pub mod merkle;
pub mod paxos;
#[cfg(test)]
mod sim;
pub mod sync;
pub mod transition;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hangar_common::NodeId;
use hangar_common::crdt::Crdt;
use hangar_common::hash::Hash;
use hangar_common::layout::PARTITIONS;
use hangar_common::rpc::{RpcError, TableOp, TableRequest, TableResponse, TableStats};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use self::data::{DataError, TableData, storage_key};
use crate::layout::LayoutManager;
use crate::net::{CallError, CallErrors, Channel, Net};

/// An item of a replicated table.
pub trait TableItem:
    Crdt + Clone + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static
{
    fn partition_key(&self) -> &[u8];
    fn sort_key(&self) -> &[u8];
    /// Whether this item is a deletion marker, to be garbage-collected once
    /// every replica holds it.
    fn is_tombstone(&self) -> bool;
    /// For items that hold one current value which a later write replaces
    /// whole (an object's version, a bucket name's target): when that
    /// value was written, in microseconds of the hybrid clock. Such items
    /// can be written with [`Table::insert_latest`]; every one decoded
    /// moves this node's hybrid clock forward.
    fn write_time(&self) -> Option<u64> {
        None
    }
    /// Give the current value a new write time (see
    /// [`Table::insert_latest`]).
    fn set_write_time(&mut self, _t: u64) {}
    /// For a value written by [`Table::cas`]: the [`digest`] of the item
    /// its change saw and replaced. An ordered write that finds its own
    /// value replaced this way knows it took effect before that write
    /// (see [`Table::insert_latest`]). Items that are never written by
    /// both keep None.
    fn replaced(&self) -> Option<u64> {
        None
    }
    fn set_replaced(&mut self, _digest: Option<u64>) {}
    /// Whether two states of the item hold the same current value (what an
    /// ordered write makes current): equality, unless the item also keeps
    /// values beside its current one (an object's older versions).
    fn same_current(&self, other: &Self) -> bool {
        self == other
    }
}

/// Whether an answer to an ordered write says it was applied (nothing
/// held that differs from it), without decoding anything.
fn landed_plainly(resp: &TableResponse) -> bool {
    !matches!(resp, TableResponse::Items(held) if !held.is_empty())
}

/// A short fingerprint of an encoded item (see [`TableItem::replaced`]).
pub(crate) fn digest(encoded: &[u8]) -> u64 {
    let h = Hash::of(encoded);
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.0[..8]);
    u64::from_le_bytes(first)
}

/// How many times [`Table::insert_latest`] times a write again above
/// newer values before it gives up (its outcome is then not known). The
/// second round is the one that matters (it is above every write
/// acknowledged before the first started); more are needed only while
/// concurrent writers keep landing above it.
const LATEST_RETIMES: usize = 6;

/// How long [`Table::insert_latest`] waits in all for consensus rounds on
/// its item to finish (longer than a promise's lease, so that a round
/// whose proposer vanished does not make the write fail).
const LATEST_PROMISE_WAIT: Duration = Duration::from_secs(3);

/// What became of a write made with [`Table::insert_latest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Latest {
    /// Its value is the current one on a write quorum.
    Written,
    /// A conditional write replaced it (having read it): the write
    /// happened, and was overwritten at once.
    Superseded,
}

/// What one replica did with a round of [`Table::insert_latest`].
enum Landed {
    /// Applied: the write's value is what the replica holds.
    Applied,
    /// Not applied: a consensus round promised a ballot this write is
    /// timed below; the answer is the write timed above the promise.
    Promised(u64),
    /// Not applied: the replica holds a value timed at or above it.
    Newer(u64),
    /// The replica holds a conditional write's value that replaced one
    /// of this write's rounds.
    Replaced,
}

/// A table: its name (used on the wire and in storage), item type, and
/// what else changes on this node when an item does.
pub trait TableSchema: Send + Sync + 'static {
    const NAME: &'static str;
    type Item: TableItem;

    /// Called inside the storage transaction that changes an item on this
    /// replica (`new` is None when the item is removed locally), so
    /// derived local state (a refcount, a work queue) never disagrees with
    /// the items after a crash. Must only use `tx`, and in it only the
    /// trees [`TableSchema::hook_trees`] names.
    fn updated(
        &self,
        _tx: &mut dyn crate::db::Tx,
        _old: Option<&Self::Item>,
        _new: Option<&Self::Item>,
    ) -> crate::db::TxResult<()> {
        Ok(())
    }

    /// The trees [`TableSchema::updated`] writes or reads.
    fn hook_trees(&self) -> Vec<crate::db::TreeId> {
        Vec::new()
    }

    /// Store a block that a write carries beside its items
    /// ([`Table::insert_latest_with`]), before they are applied: durably,
    /// since the items may refer to it. `local`: the write was made
    /// through this node (its copy may stay in the page cache). Only the
    /// object table takes blocks.
    fn attach(&self, _hash: &Hash, _block: &[u8], _local: bool) -> Result<(), String> {
        Err(format!("the {} table takes no blocks", Self::NAME))
    }
}

/// A block written with an item ([`Table::insert_latest_with`]).
#[derive(Clone, Debug)]
pub struct Attachment {
    pub hash: Hash,
    pub block: bytes::Bytes,
}

/// Encoded items by storage key.
type RawItems = BTreeMap<Vec<u8>, Vec<u8>>;

/// Queued items the Merkle updater folds in per round.
const MERKLE_BATCH: usize = 256;

/// Timings of the table workers.
#[derive(Clone, Debug)]
pub struct TableConfig {
    /// Time allowed for a quorum to answer.
    pub op_timeout: Duration,
    /// How often every partition is compared with the other replicas.
    pub sync_interval: Duration,
    /// How long a tombstone waits before collection is attempted, so that
    /// writes in flight when it was made have landed.
    pub gc_delay: Duration,
    /// Pause switches of the background workers.
    pub workers: Arc<crate::worker::Workers>,
}

/// Why a replicated operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("no layout has been applied yet: assign node roles and apply a layout first")]
    NoLayout,
    #[error(
        "table {table}: quorum not reached for partition {partition}: {ok} of the {needed} needed \
         replicas answered ({errors})"
    )]
    Quorum {
        table: &'static str,
        partition: usize,
        ok: usize,
        needed: usize,
        errors: CallErrors,
    },
    /// Too few of the replicas are connected for the quorum: this round
    /// was sent to no one. For a request refused at its first round,
    /// nothing of it takes effect later (unlike a [`TableError::Quorum`]
    /// failure, where the replicas that answered keep what they were sent
    /// and anti-entropy spreads it). A later round (a re-timed write, a
    /// consensus phase) refused so after an earlier one reached replicas
    /// leaves that earlier round's outcome unknown, like any failure in
    /// the middle of a request; the message therefore says only what
    /// this round did.
    #[error(
        "table {table}: only {connected} of the {needed} replicas needed for partition {partition} \
         are connected (not connected: {away}): refused before sending anything; try again once they are back"
    )]
    Away {
        table: &'static str,
        partition: usize,
        connected: usize,
        needed: usize,
        away: String,
    },
    #[error(transparent)]
    Data(#[from] DataError),

    #[error(
        "table {table}: {attempts} rounds of consensus were each overtaken by another writer of the same item: try again"
    )]
    Contended { table: &'static str, attempts: u32 },
    #[error(
        "table {table}: a round of consensus was refused after an earlier one may have left this write accepted by a minority: whether it takes effect is not known; read the item to see"
    )]
    Undecided { table: &'static str },
    #[error(
        "table {table}: concurrent writes of this item kept landing above this one: whether it takes effect is not known; try again"
    )]
    Unordered { table: &'static str },
    /// A later round of a write failed (a replica went away, a quorum was
    /// not reached) after an earlier round had reached replicas: that
    /// round may have been applied, or accepted by consensus, and may take
    /// effect.
    #[error(
        "table {table}: {cause}; an earlier round of this write had reached replicas, so whether it takes effect is not known: read the item to see"
    )]
    Interrupted {
        table: &'static str,
        cause: Box<TableError>,
    },
}

impl TableError {
    /// This failure, as the failure of a write whose earlier round was
    /// sent (`sent`): its outcome is then not known, whatever this round
    /// says of itself ([`TableError::Away`] says it sent nothing).
    pub(crate) fn after_sent(self, sent: bool, table: &'static str) -> TableError {
        match self {
            e @ (TableError::Interrupted { .. } | TableError::Undecided { .. }) => e,
            e if sent => TableError::Interrupted {
                table,
                cause: Box::new(e),
            },
            e => e,
        }
    }
}

impl From<crate::db::DbError> for TableError {
    fn from(e: crate::db::DbError) -> Self {
        TableError::Data(DataError::Db(e))
    }
}

pub use hangar_common::layout::cluster::{read_quorum, write_quorum};

/// Bookkeeping of anti-entropy, for status displays.
#[derive(Default)]
pub struct SyncState {
    /// Per partition: when a sync with every other replica last completed.
    pub last_full_sync_ms: BTreeMap<usize, u64>,
    pub items_pushed: u64,
    /// Tombstone collections put off because a replica was unreachable.
    pub gc_blocked: u64,
    pub gc_collected: u64,
}

/// What [`TableNet::call_table`] returns: the answer of one replica.
pub type TableCall<'a> =
    std::pin::Pin<Box<dyn Future<Output = Result<TableResponse, CallError>> + Send + 'a>>;

/// What a table needs of the network: which node this is, which peers
/// are up and what protocol they speak, and a way to run an operation on a
/// peer's replica. [`Net`] in the agent; an in-process network with
/// injected loss, delays and partitions in the table simulation
/// (`sim.rs`).
pub trait TableNet: Send + Sync + 'static {
    fn id(&self) -> NodeId;
    fn is_up(&self, node: &NodeId) -> bool;
    /// Whether a call to `node` would be sent now (this node, or a peer
    /// with an open connection). An operation whose quorum cannot be had
    /// among these is refused before anything is sent, so a write refused
    /// because replicas are known to be away never takes effect later
    /// (see [`TableError::Away`]). The simulation keeps the default, so
    /// that its network decides every call.
    fn connected(&self, node: &NodeId) -> bool {
        let _ = node;
        true
    }
    /// The protocol version a peer announced, if it is known.
    fn protocol(&self, node: &NodeId) -> Option<u32>;
    /// Announces every peer that (re)connects.
    fn subscribe_up(&self) -> tokio::sync::broadcast::Receiver<NodeId>;
    /// Run `req` on `node`'s replica, waiting at most `timeout`.
    fn call_table(&self, node: NodeId, req: TableRequest, timeout: Duration) -> TableCall<'_>;
    /// A random number below `max` (at least 1), for the pauses of
    /// retries; the simulation draws it from its seed, so a schedule
    /// replays.
    fn random_below(&self, max: u64) -> u64 {
        rand::random::<u64>() % max.max(1)
    }
}

impl TableNet for Net {
    fn id(&self) -> NodeId {
        self.id
    }
    fn is_up(&self, node: &NodeId) -> bool {
        Net::is_up(self, node)
    }
    fn connected(&self, node: &NodeId) -> bool {
        Net::connected(self, node)
    }
    fn protocol(&self, node: &NodeId) -> Option<u32> {
        self.peer_protocol(node)
    }
    fn subscribe_up(&self) -> tokio::sync::broadcast::Receiver<NodeId> {
        Net::subscribe_up(self)
    }
    fn call_table(&self, node: NodeId, req: TableRequest, timeout: Duration) -> TableCall<'_> {
        // A write carrying a block takes the bulk connection, as block
        // transfers do: on a slow uplink a megabyte ahead of them would
        // hold up pings and metadata requests on the peer connection.
        let channel = match req.op {
            TableOp::UpdateReturnWithBlock { .. } => Channel::Bulk,
            _ => Channel::Peer,
        };
        Box::pin(
            self.call(node, channel, "table", timeout, |c, ctx| async move {
                c.table(ctx, req).await
            }),
        )
    }
}

pub struct Table<S: TableSchema> {
    pub data: Arc<TableData<S>>,
    pub net: Arc<dyn TableNet>,
    pub layout: Arc<LayoutManager>,
    pub cfg: TableConfig,
    pub sync_state: Mutex<SyncState>,
    /// Requests sent to other replicas, by operation ([`OP_NAMES`]).
    sent: [std::sync::atomic::AtomicU64; OP_NAMES.len()],
    /// Bugs planted by a test ([`Bug`] bits).
    #[cfg(test)]
    planted: std::sync::atomic::AtomicU8,
}

/// Bugs a test can plant in a table, to show that it catches them (the
/// table simulation, `sim.rs`). Never planted outside tests.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum Bug {
    /// Reads wait for one answer instead of a read quorum.
    ReadFromOne = 1,
    /// Anti-entropy finds differences but pushes nothing.
    SyncPushesNothing = 2,
    /// Tombstone collection deletes without first making sure every
    /// replica holds the tombstone.
    GcWithoutHandover = 4,
    /// An ordered write that finds a newer value takes itself for
    /// overwritten at once, without a second round.
    OneRound = 8,
    /// Ordered writes are applied even when timed below a consensus
    /// round's promise.
    PromisesIgnored = 16,
    /// An ordered write told that a conditional write replaced it goes on
    /// as if it had met a newer value.
    ReplacedUnheeded = 32,
}

/// What the Peer service and the transition worker need of a table,
/// whatever its item type.
pub trait TableEndpoint: Send + Sync + 'static {
    fn handle(&self, op: TableOp) -> Result<TableResponse, RpcError>;
    fn stats(&self) -> TableStats;
    /// Run a full anti-entropy round; true if it reached every current
    /// replica of every partition this node holds.
    fn full_sync(self: Arc<Self>) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>>;
    /// Delete local items of partitions this node holds in no live layout
    /// version. Returns how many were deleted.
    fn drop_unheld(&self) -> usize;
    /// What this table's writes have cost on this node so far.
    fn costs(&self) -> TableCosts;
}

/// Counters of a table's work on one node, for metrics and for the tests
/// that bound what a PUT costs.
#[derive(Clone, Debug, Default)]
pub struct TableCosts {
    /// Storage transactions: item writes (several items may share one) and
    /// Merkle folds.
    pub transactions: u64,
    /// Requests sent to other replicas, by operation.
    pub sent: Vec<(&'static str, u64)>,
}

/// Operation names, for [`TableCosts::sent`], in [`op_index`] order.
const OP_NAMES: [&str; 11] = [
    "update",
    "update_return",
    "update_return_with_block",
    "get",
    "range",
    "merkle_roots",
    "merkle_node",
    "delete_if_equal",
    "prepare",
    "accept",
    "merkle_children",
];

/// Where an operation is counted in [`OP_NAMES`].
fn op_index(op: &TableOp) -> usize {
    match op {
        TableOp::Update(_) => 0,
        TableOp::UpdateReturn(_) => 1,
        TableOp::UpdateReturnWithBlock { .. } => 2,
        TableOp::Get(_) => 3,
        TableOp::Range { .. } => 4,
        TableOp::MerkleRoots => 5,
        TableOp::MerkleNode(_) => 6,
        TableOp::DeleteIfEqual(_) => 7,
        TableOp::Prepare { .. } => 8,
        TableOp::Accept { .. } => 9,
        TableOp::MerkleChildren(_) => 10,
    }
}

impl<S: TableSchema> Table<S> {
    pub fn new(
        data: TableData<S>,
        net: Arc<dyn TableNet>,
        layout: Arc<LayoutManager>,
        cfg: TableConfig,
    ) -> Arc<Self> {
        Arc::new(Table {
            data: Arc::new(data),
            net,
            layout,
            cfg,
            sync_state: Mutex::new(SyncState::default()),
            sent: Default::default(),
            #[cfg(test)]
            planted: Default::default(),
        })
    }

    /// Start the background workers: Merkle updater, anti-entropy, GC.
    pub fn spawn_workers(self: &Arc<Self>) {
        tokio::spawn(self.clone().merkle_loop());
        tokio::spawn(self.clone().sync_loop());
        tokio::spawn(self.clone().gc_loop());
    }

    async fn merkle_loop(self: Arc<Self>) {
        loop {
            let data = self.data.clone();
            let done = tokio::task::spawn_blocking(move || data.update_merkle(MERKLE_BATCH)).await;
            match done {
                // A full batch: more is waiting.
                Ok(Ok(n)) if n >= MERKLE_BATCH => continue,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("{}: Merkle update failed: {e}", S::NAME),
                Err(e) => tracing::warn!("{}: Merkle updater panicked: {e}", S::NAME),
            }
            // The queue is drained: sleep until an item is queued (a minute
            // at most, in case of an error above), then let writes gather
            // for a tenth of a second. Under a steady load each round
            // folds a tenth of a second's writes in a few transactions,
            // not one transaction per write; polling instead kept the
            // blocking pool busy enough that its idle threads never
            // retired.
            let _ =
                tokio::time::timeout(Duration::from_secs(60), self.data.merkle_queued.notified())
                    .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The replica sets a write of `partition` must reach a quorum of:
    /// one per live layout version (two or more during a transition).
    fn write_sets(&self, partition: usize) -> Result<Vec<Vec<NodeId>>, TableError> {
        let layout = self.layout.snapshot();
        let sets: Vec<Vec<NodeId>> = layout
            .write_sets(partition)
            .into_iter()
            .map(|s| s.to_vec())
            .collect();
        if sets.iter().any(|s| s.is_empty()) {
            return Err(TableError::NoLayout);
        }
        Ok(sets)
    }

    /// The replica set reads of `partition` use.
    fn read_set(&self, partition: usize) -> Result<Vec<NodeId>, TableError> {
        let layout = self.layout.snapshot();
        let set = layout.read_set(partition).to_vec();
        if set.is_empty() {
            return Err(TableError::NoLayout);
        }
        Ok(set)
    }

    /// How many replicas a read waits for.
    fn read_quorum(&self) -> usize {
        if self.has_bug(Bug::ReadFromOne) {
            return 1;
        }
        read_quorum(self.replication_factor())
    }

    /// Whether a test planted `bug` in this table (never outside tests).
    pub(crate) fn has_bug(&self, bug: Bug) -> bool {
        #[cfg(test)]
        let planted = self.planted.load(std::sync::atomic::Ordering::Relaxed);
        #[cfg(not(test))]
        let planted = 0;
        planted & bug as u8 != 0
    }

    /// Plant `bug` in this table.
    #[cfg(test)]
    pub(crate) fn plant(&self, bug: Bug) {
        self.planted
            .fetch_or(bug as u8, std::sync::atomic::Ordering::Relaxed);
    }

    fn replication_factor(&self) -> usize {
        self.layout.snapshot().replication_factor
    }

    /// Run `op` on one node's replica (this one directly, others by RPC).
    async fn call(&self, node: NodeId, op: TableOp) -> Result<TableResponse, CallError> {
        if node == self.net.id() {
            // A quick read runs in place. Other storage work may block (a
            // sync of the disk, a long scan): let the runtime move other
            // tasks away first. Handing them over costs more than a cached
            // read, and the refreshes of keys and buckets in use (a few
            // reads a second) kept waking the blocking pool's idle threads
            // in turn, so none retired after a load.
            let done = if op.is_quick_read() {
                self.handle_op(op, true)
            } else {
                crate::worker::blocking(|| self.handle_op(op, true))
            };
            return done.map_err(|error| CallError::Refused { node, error });
        }
        let known = self.net.protocol(&node);
        let protocol = known.unwrap_or(0);
        // Not yet connected (just started): send it, a peer of an older
        // version refuses what it cannot decode.
        if matches!(op, TableOp::UpdateReturnWithBlock { .. }) && known.is_some_and(|p| p < 10) {
            return Err(CallError::Protocol {
                node,
                reason: "runs an older version that cannot store a block with an item".into(),
            });
        }
        // Consensus needs every acceptor to speak protocol 5.
        if matches!(op, TableOp::Prepare { .. } | TableOp::Accept { .. }) && protocol < 5 {
            return Err(CallError::Protocol {
                node,
                reason: "runs an older version without per-item consensus".into(),
            });
        }
        // Merkle sums of protocol 7 have no bucket level and list items by
        // group: an older node's trees cannot be compared with them.
        if matches!(op, TableOp::MerkleRoots | TableOp::MerkleChildren(_)) && protocol < 7 {
            return Err(CallError::Protocol {
                node,
                reason: "runs an older version whose Merkle trees differ (anti-entropy resumes once it is upgraded)".into(),
            });
        }
        // A node of an older version does not know `UpdateReturn`: it gets
        // a plain update, and its answer tells nothing of what it held.
        let (op, downgraded) = match op {
            TableOp::UpdateReturn(items) if protocol < 5 => (TableOp::Update(items), true),
            op => (op, false),
        };
        self.sent[op_index(&op)].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let req = TableRequest {
            table: S::NAME.to_string(),
            op,
        };
        match self.net.call_table(node, req, self.cfg.op_timeout).await {
            Ok(_) if downgraded => Ok(TableResponse::Items(Vec::new())),
            r => r,
        }
    }

    /// Send `op` to every node of every set; return once each set has
    /// `needed` successes (capped at its size; the other calls go on in the
    /// background), or fail naming how many answered.
    async fn quorum(
        self: &Arc<Self>,
        partition: usize,
        sets: &[Vec<NodeId>],
        op: TableOp,
        needed: usize,
    ) -> Result<Vec<(NodeId, TableResponse)>, TableError> {
        self.quorum_then(partition, sets, op, needed, |_| false)
            .await
    }

    /// [`Table::quorum`], and once the quorum is there, if `more` says so
    /// of its answers, the other replicas' answers too, for as long again
    /// as the quorum took (at least 20 ms, within the operation's time).
    async fn quorum_then(
        self: &Arc<Self>,
        partition: usize,
        sets: &[Vec<NodeId>],
        op: TableOp,
        needed: usize,
        more: impl Fn(&[(NodeId, TableResponse)]) -> bool,
    ) -> Result<Vec<(NodeId, TableResponse)>, TableError> {
        let mut nodes: Vec<NodeId> = sets.iter().flatten().copied().collect();
        nodes.sort();
        nodes.dedup();
        self.enough_connected(partition, sets, needed)?;
        let (tx, mut rx) = mpsc::channel(nodes.len().max(1));
        for &node in &nodes {
            let me = self.clone();
            let op = op.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let res = me.call(node, op).await;
                let _ = tx.send((node, res)).await;
            });
        }
        drop(tx);
        let mut ok: Vec<(NodeId, TableResponse)> = Vec::new();
        let mut errors: Vec<CallError> = Vec::new();
        let deadline = tokio::time::sleep(self.cfg.op_timeout);
        tokio::pin!(deadline);
        let satisfied = |ok: &[(NodeId, TableResponse)]| {
            sets.iter().all(|set| {
                ok.iter().filter(|(n, _)| set.contains(n)).count() >= needed.min(set.len())
            })
        };
        let started = tokio::time::Instant::now();
        let mut grace: Option<tokio::time::Instant> = None;
        loop {
            if satisfied(&ok) {
                if grace.is_none() && more(&ok) {
                    let took = started.elapsed();
                    grace = Some(
                        tokio::time::Instant::now() + (took * 2).max(Duration::from_millis(20)),
                    );
                }
                let waiting = grace.is_some_and(|g| tokio::time::Instant::now() < g)
                    && ok.len() + errors.len() < nodes.len();
                if !waiting {
                    break;
                }
            }
            let until = grace.unwrap_or_else(|| deadline.deadline());
            tokio::select! {
                r = rx.recv() => match r {
                    Some((n, Ok(resp))) => ok.push((n, resp)),
                    Some((_, Err(e))) => errors.push(e),
                    None => break,
                },
                _ = tokio::time::sleep_until(until), if grace.is_some() => continue,
                _ = &mut deadline => {
                    // Those that have not answered yet: timed out.
                    for &node in &nodes {
                        if !ok.iter().any(|(n, _)| *n == node)
                            && !errors.iter().any(|e| e.node() == node)
                        {
                            errors.push(CallError::Timeout {
                                node,
                                after: self.cfg.op_timeout,
                            });
                        }
                    }
                    break;
                }
            }
        }
        if satisfied(&ok) {
            return Ok(ok);
        }
        // Report the first set that fell short.
        let (got, need) = sets
            .iter()
            .map(|set| {
                (
                    ok.iter().filter(|(n, _)| set.contains(n)).count(),
                    needed.min(set.len()),
                )
            })
            .find(|(got, need)| got < need)
            .unwrap_or((ok.len(), needed));
        Err(TableError::Quorum {
            table: S::NAME,
            partition,
            ok: got,
            needed: need,
            errors: CallErrors(errors),
        })
    }

    /// Refuse an operation at once, sending nothing, if some set has
    /// fewer connected replicas than `needed`: the calls to the others
    /// would fail at once anyway, and the ones that would succeed would
    /// leave a refused write behind, to come back when the nodes return
    /// (a client retrying a refused PUT for days would find a version per
    /// attempt in a versioned bucket).
    fn enough_connected(
        &self,
        partition: usize,
        sets: &[Vec<NodeId>],
        needed: usize,
    ) -> Result<(), TableError> {
        match crate::net::shortfall(sets, needed, |n| self.net.connected(n)) {
            None => Ok(()),
            Some(s) => Err(TableError::Away {
                table: S::NAME,
                partition,
                connected: s.connected,
                needed: s.needed,
                away: s.away,
            }),
        }
    }

    /// Write an item to a write quorum of its partition's replicas.
    pub(crate) async fn insert(self: &Arc<Self>, item: &S::Item) -> Result<(), TableError> {
        let key = storage_key(item.partition_key(), item.sort_key());
        let partition = key[0] as usize;
        let sets = self.write_sets(partition)?;
        let bytes = self.data.encode(item)?;
        let w = write_quorum(self.replication_factor());
        self.quorum(partition, &sets, TableOp::Update(vec![bytes]), w)
            .await?;
        Ok(())
    }

    /// Write an item whose current value replaces what its replicas hold
    /// (see [`TableItem::write_time`]), ordered after every write
    /// acknowledged before this one started, whatever the nodes' clocks.
    ///
    /// Like [`Table::insert`], one round trip to a write quorum, but each
    /// replica answers what it holds after the merge ([`Landed`]). When a
    /// write quorum applied it, it is written. Otherwise, in order:
    /// - a replica holds a conditional write's value that names one of
    ///   this write's rounds as what it replaced ([`TableItem::replaced`]):
    ///   that round took effect and was replaced; done
    ///   ([`Latest::Superseded`]);
    /// - a replica refused it for a consensus round's promise, and another
    ///   applied it (now or when this round was sent before): that round
    ///   may have read it there. Writing it above
    ///   the round could make it take effect twice (the round's value
    ///   replacing it in between), so it waits for the round to finish
    ///   and sends the same round again, which then shows the round's
    ///   value (and whether it replaced this one), or is applied;
    /// - else (replicas held newer values, or every replica refused it for
    ///   a promise: no one can have read it) the item is timed above them
    ///   and written again. Why that is enough: the write quorum that
    ///   acknowledged any earlier write and the one that answers here
    ///   share a node (`W + W > RF`), so the first round sees every such
    ///   write, and the second is timed above them all. The second round
    ///   is needed only when clocks disagree or writes race.
    ///
    /// When an answer is not "applied", the other replicas' answers are
    /// awaited too, briefly. A write that keeps meeting newer values
    /// ([`LATEST_RETIMES`]) or promises ([`LATEST_PROMISE_WAIT`]) fails
    /// with [`TableError::Unordered`]: its outcome is not known.
    pub(crate) async fn insert_latest(
        self: &Arc<Self>,
        item: &mut S::Item,
    ) -> Result<Latest, TableError> {
        self.insert_latest_with(item, None).await
    }

    /// [`Table::insert_latest`], with a block each replica stores before
    /// it applies the item ([`TableSchema::attach`]): where the item is
    /// applied, the block is on disk, so the item and its data are durable
    /// on a write quorum after one round trip. Every round carries it (a
    /// second round is rare: clocks that disagree, racing writes).
    pub(crate) async fn insert_latest_with(
        self: &Arc<Self>,
        item: &mut S::Item,
        attachment: Option<&Attachment>,
    ) -> Result<Latest, TableError> {
        let key = storage_key(item.partition_key(), item.sort_key());
        let partition = key[0] as usize;
        let sets = self.write_sets(partition)?;
        let replicas = {
            let mut all: Vec<NodeId> = sets.iter().flatten().copied().collect();
            all.sort();
            all.dedup();
            all.len()
        };
        let w = write_quorum(self.replication_factor());
        // Digests of the rounds written so far (a conditional write names
        // what it replaced by digest).
        let mut rounds: Vec<u64> = Vec::new();
        let mut retimes = 0;
        let mut waited = Duration::ZERO;
        let mut pauses: u32 = 0;
        // Whether some replica applied the round now being written (in
        // any of its sendings): then someone may have read it.
        let mut exposed = false;
        // Whether a round reached replicas: a later round's failure then
        // leaves the write's outcome unknown.
        let mut sent = false;
        loop {
            let bytes = self.data.encode(item)?;
            let this = digest(&bytes);
            if rounds.last() != Some(&this) {
                rounds.push(this);
            }
            let mine = item.write_time().unwrap_or(0);
            let not_applied =
                |a: &[(NodeId, TableResponse)]| a.iter().any(|(_, r)| !landed_plainly(r));
            let answers = self
                .quorum_then(
                    partition,
                    &sets,
                    match attachment {
                        None => TableOp::UpdateReturn(vec![bytes]),
                        Some(a) => TableOp::UpdateReturnWithBlock {
                            hash: a.hash,
                            block: a.block.clone(),
                            items: vec![bytes],
                        },
                    },
                    w,
                    not_applied,
                )
                .await
                .map_err(|e| e.after_sent(sent, S::NAME))?;
            sent = true;
            let mut landed = Vec::with_capacity(answers.len());
            for (node, resp) in &answers {
                landed.push((*node, self.landed(item, mine, &rounds, resp)?));
            }
            let applied_in = |set: &Vec<NodeId>| {
                landed
                    .iter()
                    .filter(|(n, l)| set.contains(n) && matches!(l, Landed::Applied))
                    .count()
            };
            if sets.iter().all(|set| applied_in(set) >= w.min(set.len())) {
                return Ok(Latest::Written);
            }
            if landed.iter().any(|(_, l)| matches!(l, Landed::Replaced)) {
                return Ok(Latest::Superseded);
            }
            let (mut promised, mut newer) = (None::<u64>, None::<u64>);
            for (_, l) in &landed {
                match l {
                    Landed::Applied => exposed = true,
                    Landed::Promised(t) => promised = promised.max(Some(*t)),
                    Landed::Newer(t) => newer = newer.max(Some(*t)),
                    Landed::Replaced => {}
                }
            }
            if promised.is_some() && (exposed || landed.len() < replicas) {
                // A conditional write may have read this round where it was
                // applied (or where no answer came from): wait for it.
                pauses += 1;
                let pause =
                    Duration::from_millis(2 + self.net.random_below(10 * u64::from(pauses.min(8))));
                waited += pause;
                if waited > LATEST_PROMISE_WAIT {
                    tracing::info!(
                        "{}: consensus rounds on this item did not finish in {LATEST_PROMISE_WAIT:?}: the outcome of an ordered write is not known",
                        S::NAME
                    );
                    return Err(TableError::Unordered { table: S::NAME });
                }
                tokio::time::sleep(pause).await;
                continue;
            }
            let above = promised.max(newer).unwrap_or(mine);
            retimes += 1;
            if self.has_bug(Bug::OneRound) {
                return Ok(Latest::Superseded);
            }
            if retimes > LATEST_RETIMES {
                tracing::info!(
                    "{}: after {LATEST_RETIMES} rounds replicas still held values written after this write's time: its outcome is not known",
                    S::NAME
                );
                return Err(TableError::Unordered { table: S::NAME });
            }
            tracing::debug!(
                "{}: a replica held a value written {} µs after this write's time: writing again above it",
                S::NAME,
                above.saturating_sub(mine)
            );
            item.set_write_time(self.data.clock.now_after(above));
            exposed = false;
        }
    }

    /// What one replica's answer to a round of [`Table::insert_latest`]
    /// says (`mine`: the round's time; `rounds`: digests of every round
    /// written so far).
    fn landed(
        &self,
        item: &S::Item,
        mine: u64,
        rounds: &[u64],
        resp: &TableResponse,
    ) -> Result<Landed, TableError> {
        // A replica of an older version (a plain update) answers nothing:
        // applied, as far as anyone can tell.
        let TableResponse::Items(held) = resp else {
            return Ok(Landed::Applied);
        };
        let Some(held) = held.first() else {
            return Ok(Landed::Applied);
        };
        let held = self.data.decode(held)?;
        let t = held.write_time().unwrap_or(0);
        // Refused for a promise: the answer is this very item, timed
        // above the promise (`TableData::ordered_check`).
        let mut same = held.clone();
        same.set_write_time(mine);
        if same.same_current(item) && t > mine {
            return Ok(Landed::Promised(t));
        }
        if held.replaced().is_some_and(|d| rounds.contains(&d))
            && !self.has_bug(Bug::ReplacedUnheeded)
        {
            return Ok(Landed::Replaced);
        }
        if !held.same_current(item) && t >= mine {
            return Ok(Landed::Newer(t));
        }
        Ok(Landed::Applied)
    }

    /// Read one item from a read quorum, repairing stale replicas.
    pub(crate) async fn get(
        self: &Arc<Self>,
        partition_key: &[u8],
        sort_key: &[u8],
    ) -> Result<Option<S::Item>, TableError> {
        let key = storage_key(partition_key, sort_key);
        let partition = key[0] as usize;
        let set = self.read_set(partition)?;
        let r = self.read_quorum();
        let answers = self.quorum(partition, &[set], TableOp::Get(key), r).await?;
        let mut merged: Option<S::Item> = None;
        let mut seen = Vec::new();
        for (node, resp) in answers {
            let bytes = match resp {
                TableResponse::Item(b) => b,
                _ => None,
            };
            if let Some(b) = &bytes {
                let item = self.data.decode(b)?;
                match &mut merged {
                    Some(m) => m.merge(&item),
                    None => merged = Some(item),
                }
            }
            seen.push((node, bytes));
        }
        if let Some(m) = &merged {
            let enc = self.data.encode(m)?;
            let stale: Vec<NodeId> = seen
                .into_iter()
                .filter(|(_, b)| b.as_deref() != Some(enc.as_slice()))
                .map(|(n, _)| n)
                .collect();
            if !stale.is_empty() {
                self.repair(stale.into_iter(), vec![enc]);
            }
        }
        Ok(merged)
    }

    /// Read up to `limit` items of one partition key with sort keys
    /// starting with `sort_prefix` and greater than `after`, in sort-key
    /// order, from a read quorum, repairing stale
    /// replicas.
    pub(crate) async fn get_range(
        self: &Arc<Self>,
        partition_key: &[u8],
        sort_prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<S::Item>, TableError> {
        let mut prefix = Hash::of(partition_key).0.to_vec();
        prefix.extend_from_slice(sort_prefix);
        self.range_quorum(prefix, after.map(|a| storage_key(partition_key, a)), limit)
            .await
    }

    /// Every item of the table, up to `limit_per_partition` per partition,
    /// each partition read from a read quorum: for administrative listings
    /// (buckets, keys), not for hot paths.
    pub(crate) async fn scan(
        self: &Arc<Self>,
        limit_per_partition: usize,
    ) -> Result<Vec<S::Item>, TableError> {
        let tasks: Vec<_> = (0..PARTITIONS)
            .map(|p| {
                let me = self.clone();
                tokio::spawn(async move {
                    me.range_quorum(vec![p as u8], None, limit_per_partition)
                        .await
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            let items = t.await.map_err(|e| {
                TableError::Data(DataError::Decode {
                    table: S::NAME,
                    reason: e.to_string(),
                })
            })??;
            out.extend(items);
        }
        Ok(out)
    }

    /// Items whose storage keys start with `prefix` and follow `after`,
    /// from a read quorum of the prefix's partition, merged and repaired.
    async fn range_quorum(
        self: &Arc<Self>,
        prefix: Vec<u8>,
        after: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<S::Item>, TableError> {
        let partition = prefix[0] as usize;
        let set = self.read_set(partition)?;
        let r = self.read_quorum();
        let op = TableOp::Range {
            prefix,
            after,
            limit,
        };
        let answers = self.quorum(partition, &[set], op, r).await?;
        let mut merged: BTreeMap<Vec<u8>, S::Item> = BTreeMap::new();
        // What each answering node returned, by storage key.
        let mut per_node: Vec<(NodeId, RawItems)> = Vec::new();
        for (node, resp) in answers {
            let mut mine = BTreeMap::new();
            if let TableResponse::Items(items) = resp {
                for b in items {
                    let item = self.data.decode(&b)?;
                    let k = storage_key(item.partition_key(), item.sort_key());
                    match merged.get_mut(&k) {
                        Some(m) => m.merge(&item),
                        None => {
                            merged.insert(k.clone(), item);
                        }
                    }
                    mine.insert(k, b);
                }
            }
            per_node.push((node, mine));
        }
        let out: Vec<(Vec<u8>, S::Item)> = merged.into_iter().take(limit).collect();
        for (k, item) in &out {
            let enc = self.data.encode(item)?;
            let stale = per_node
                .iter()
                .filter(|(_, m)| m.get(k).map(|b| b.as_slice()) != Some(enc.as_slice()))
                .map(|(n, _)| *n)
                .collect::<Vec<_>>();
            if !stale.is_empty() {
                self.repair(stale.into_iter(), vec![enc]);
            }
        }
        Ok(out.into_iter().map(|(_, i)| i).collect())
    }

    /// Push items to nodes in the background (read repair).
    fn repair(self: &Arc<Self>, nodes: impl Iterator<Item = NodeId>, items: Vec<Vec<u8>>) {
        for node in nodes {
            let me = self.clone();
            let items = items.clone();
            tokio::spawn(async move {
                if let Err(e) = me.call(node, TableOp::Update(items)).await {
                    tracing::debug!("{}: read repair to {} failed: {e}", S::NAME, node.short());
                }
            });
        }
    }

    /// Partitions this node holds in some live layout version.
    fn held_partitions(&self) -> Vec<usize> {
        let layout = self.layout.snapshot();
        (0..PARTITIONS)
            .filter(|p| layout.all_nodes_of(*p).contains(&self.net.id()))
            .collect()
    }
}

fn internal(e: impl std::fmt::Display) -> RpcError {
    RpcError::Table(e.to_string())
}

impl<S: TableSchema> Table<S> {
    /// Run an operation on this replica; `local`: for a request made
    /// through this node.
    fn handle_op(&self, op: TableOp, local: bool) -> Result<TableResponse, RpcError> {
        match op {
            TableOp::Update(items) => {
                // One item joins the group commit; several (anti-entropy,
                // a transition's copy) are one transaction already.
                if let [b] = items.as_slice() {
                    self.data.update_raw(b).map_err(internal)?;
                } else {
                    let items = items
                        .iter()
                        .map(|b| self.data.decode(b))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(internal)?;
                    let items: Vec<&S::Item> = items.iter().collect();
                    self.data.update_batch(&items).map_err(internal)?;
                }
                Ok(TableResponse::Ok)
            }
            TableOp::Prepare { key, ballot } => {
                self.data.paxos_prepare(&key, ballot).map_err(internal)
            }
            TableOp::Accept { key, ballot, value } => self
                .data
                .paxos_accept(&key, ballot, value)
                .map_err(internal),
            TableOp::UpdateReturnWithBlock { hash, block, items } => {
                // The block first: where the item is applied, its data is.
                self.data
                    .schema
                    .attach(&hash, &block, local)
                    .map_err(RpcError::Table)?;
                self.handle_op(TableOp::UpdateReturn(items), local)
            }
            TableOp::UpdateReturn(items) => {
                // Only what differs from the incoming item travels back: a
                // write that won (the common case) costs no more bytes
                // than a plain update.
                let mut held = Vec::new();
                for b in items {
                    let item = self.data.decode(&b).map_err(internal)?;
                    let key = storage_key(item.partition_key(), item.sort_key());
                    // A consensus round on this item promised a ballot this
                    // write is timed below, or chose a value that replaced
                    // this very write: not applied; the writer is told
                    // (see `TableData::ordered_check`).
                    let _guard = self.data.item_lock(&key);
                    let above = if self.has_bug(Bug::PromisesIgnored) {
                        None
                    } else {
                        self.data.ordered_check(&key, &item, &b).map_err(internal)?
                    };
                    if let Some(above) = above {
                        held.push(self.data.encode(&above).map_err(internal)?);
                        continue;
                    }
                    // Changed: the merge result is what is held now (the
                    // incoming item when it won, the common case). Not
                    // changed: read what is held.
                    let now = match self.data.update(&item).map_err(internal)? {
                        Some(merged) => Some(merged),
                        None => self.data.get_raw(&key).map_err(internal)?,
                    };
                    // What is held differs from the write, but its current
                    // value may still be the write's (an object's older
                    // versions beside it): then nothing travels back.
                    if let Some(now) = now
                        && now != b
                        && self
                            .data
                            .decode(&now)
                            .map_or(true, |n| !n.same_current(&item))
                    {
                        held.push(now);
                    }
                }
                Ok(TableResponse::Items(held))
            }
            TableOp::Get(key) => Ok(TableResponse::Item(
                self.data.get_raw(&key).map_err(internal)?,
            )),
            TableOp::Range {
                prefix,
                after,
                limit,
            } => {
                let limit = limit.min(10_000);
                let items = self
                    .data
                    .range_raw(&prefix, after.as_deref(), limit)
                    .map_err(internal)?;
                Ok(TableResponse::Items(
                    items.into_iter().map(|(_, v)| v).collect(),
                ))
            }
            TableOp::MerkleRoots => {
                let roots = (0..PARTITIONS)
                    .map(|p| self.data.merkle.root(&self.data.db, p as u8))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(internal)?;
                Ok(TableResponse::Roots(roots))
            }
            TableOp::MerkleChildren(path) => {
                // Listing items reads the whole partition.
                let node = crate::worker::blocking(|| self.data.merkle.children(&self.data.db, &path))
                    .map_err(internal)?;
                Ok(TableResponse::Node(node.encode()))
            }
            TableOp::MerkleNode(_) => Err(RpcError::BadRequest(
                "this node keeps hash-sum Merkle trees (protocol 7): it syncs with nodes of version 7 or later".into(),
            )),
            TableOp::DeleteIfEqual(entries) => {
                for (k, h) in entries {
                    self.data.delete_if_equal(&k, &h).map_err(internal)?;
                }
                Ok(TableResponse::Ok)
            }
        }
    }
}

impl<S: TableSchema> TableEndpoint for Table<S> {
    fn handle(&self, op: TableOp) -> Result<TableResponse, RpcError> {
        self.handle_op(op, false)
    }

    fn full_sync(self: Arc<Self>) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>> {
        Box::pin(async move { self.sync_round(None).await })
    }

    fn costs(&self) -> TableCosts {
        let sent = OP_NAMES
            .iter()
            .zip(&self.sent)
            .map(|(op, n)| (*op, n.load(std::sync::atomic::Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        TableCosts {
            transactions: self.data.transactions(),
            sent,
        }
    }

    fn drop_unheld(&self) -> usize {
        let layout = self.layout.snapshot();
        // Never before a first layout, nor during a transition.
        if layout.version == 0 || layout.in_transition() {
            return 0;
        }
        let mut dropped = 0;
        for p in 0..PARTITIONS {
            if layout.all_nodes_of(p).contains(&self.net.id()) {
                continue;
            }
            loop {
                match self.data.drop_partition(p as u8, 256) {
                    Ok(0) => break,
                    Ok(n) => dropped += n,
                    Err(e) => {
                        tracing::warn!("{}: cannot drop partition {p}: {e}", S::NAME);
                        break;
                    }
                }
            }
        }
        dropped
    }

    fn stats(&self) -> TableStats {
        let held = self.held_partitions();
        let st = self.sync_state.lock().unwrap_or_else(|p| p.into_inner());
        let synced: Vec<u64> = held
            .iter()
            .filter_map(|p| st.last_full_sync_ms.get(p).copied())
            .collect();
        let merkle_digest = {
            let mut all = Vec::with_capacity(PARTITIONS * 32);
            for p in 0..PARTITIONS {
                if let Ok(root) = self.data.merkle.root(&self.data.db, p as u8) {
                    all.extend_from_slice(root.as_bytes());
                }
            }
            Hash::of(&all).to_string()
        };
        TableStats {
            table: S::NAME.to_string(),
            merkle_digest,
            items: self.data.item_count(),
            merkle_queue: self.data.merkle_queue(),
            gc_queue: self.data.gc_queue(),
            partitions_synced: synced.len(),
            partitions_held: held.len(),
            oldest_sync_ms: if synced.len() == held.len() {
                synced.iter().min().copied()
            } else {
                None
            },
            items_pushed: st.items_pushed,
            gc_blocked: st.gc_blocked,
            gc_collected: st.gc_collected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorums_overlap_for_every_replication_factor() {
        assert_eq!((read_quorum(1), write_quorum(1)), (1, 1));
        assert_eq!((read_quorum(2), write_quorum(2)), (1, 2));
        assert_eq!((read_quorum(3), write_quorum(3)), (2, 2));
        for rf in 1..=7 {
            assert!(read_quorum(rf) + write_quorum(rf) > rf, "rf {rf}");
        }
    }
}
