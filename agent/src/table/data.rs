//! One table's local replica: items, the Merkle work queue, the tombstone
//! queue and counters, all changed together in one storage transaction so
//! they never disagree after a crash.
//!
//! Trees, for a table called `t`:
//! - `t:items`: storage key -> item (MessagePack, named fields);
//! - `t:merkle_todo`: storage key -> [`Pending`]: the hash of the item's
//!   encoding the Merkle sums hold and the hash of its encoding now (none
//!   when removed), consumed by the Merkle updater;
//! - `t:gc_todo`: storage key -> [`GcTodo`] for tombstones;
//! - `t:counters`: counter name -> u64 (big endian). sled's `len()` walks a
//!   tree, so counts are kept here instead.
//!
//! The storage key of an item is `hash(partition key) ++ sort key`: its
//! first byte is the partition, and all items of one partition key are
//! contiguous, ordered by sort key.

use std::sync::Arc;

use hangar_common::crdt::{Crdt, now_msec};
use hangar_common::hash::Hash;
use serde::{Deserialize, Serialize};

use super::merkle::{MerkleTree, Pending};
use super::{TableItem, TableSchema};
use crate::db::{Db, DbError, DbResult, TreeId, Tx, TxResult};

const C_ITEMS: &[u8] = b"items";
const C_MERKLE: &[u8] = b"merkle_todo";
const C_GC: &[u8] = b"gc_todo";
/// Which Merkle trees the store holds: absent for the radix trees of
/// protocol 5 and before, 2 for the hash-sum trees with bucket sums and
/// leaves of protocol 6, [`MERKLE_FORMAT`] for partition and group sums.
const C_MERKLE_FORMAT: &[u8] = b"merkle_format";
const MERKLE_FORMAT: u64 = 3;
/// Entries per transaction when a store's Merkle trees are rebuilt.
const REBUILD_BATCH: usize = 10_000;

/// Queued items folded into the Merkle trees per storage transaction.
const MERKLE_TX_ITEMS: usize = 16;

/// A tombstone waiting for collection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcTodo {
    /// Hash of the tombstone's encoding when it was queued.
    pub value_hash: Hash,
    /// When it was queued (Unix ms): collection waits a grace delay.
    pub since_ms: u64,
}

/// Why a table operation failed locally.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("table {table}: cannot decode an item: {reason}")]
    Decode { table: &'static str, reason: String },
    #[error("table {table}: cannot encode an item: {reason}")]
    Encode { table: &'static str, reason: String },
}

pub struct TableData<S: TableSchema> {
    pub db: Db,
    pub items: TreeId,
    pub merkle_todo: TreeId,
    pub gc_todo: TreeId,
    counters: TreeId,
    /// Paxos acceptor state per item (see `paxos.rs`).
    pub paxos: TreeId,
    /// Make an acceptor's read-check-write of its state, and an ordered
    /// write's check of the promises against it, atomic per item (striped
    /// by key: see [`TableData::item_lock`]).
    paxos_locks: Vec<std::sync::Mutex<()>>,
    /// When this node last promised or accepted a ballot per item, for
    /// the lease of its promises (see `paxos.rs`).
    pub(crate) promise_times:
        std::sync::Mutex<std::collections::HashMap<Vec<u8>, tokio::time::Instant>>,
    pub merkle: MerkleTree,
    pub schema: Arc<S>,
    /// The clock of the table's bookkeeping (when a tombstone was queued
    /// for collection, when a sync ran), in ms since the epoch: the wall
    /// clock; the simulation's paused clock in `sim.rs`.
    pub(crate) now_ms: fn() -> u64,
    /// The hybrid clock that times this node's writes and observes every
    /// timestamp decoded: the process's ([`hangar_common::clock::hlc`]);
    /// one per simulated node in `sim.rs`, each with its own offset.
    pub(crate) clock: &'static hangar_common::clock::Hlc,
    /// Told whenever an item joins the Merkle queue, so the updater sleeps
    /// while there is nothing to do (an idle agent wakes no thread).
    pub merkle_queued: tokio::sync::Notify,
    /// The trees an item write touches (its own four and the schema's).
    write_trees: Vec<TreeId>,
    /// Items waiting for the next group commit, each with the slot its
    /// writer reads the outcome from (see [`TableData::update`]).
    queued: std::sync::Mutex<Vec<(S::Item, Slot)>>,
    /// Held by the writer committing the queue.
    committer: std::sync::Mutex<()>,
    /// Transactions committed: item writes and Merkle folds.
    transactions: std::sync::atomic::AtomicU64,
}

/// Where a queued write's outcome is left for its writer.
type Slot = Arc<std::sync::Mutex<Option<Result<Option<Vec<u8>>, DataError>>>>;

/// Counter changes of one transaction.
#[derive(Default)]
struct Counts {
    items: i64,
    merkle: i64,
    gc: i64,
}

/// A lock whose holder cannot leave its data half-changed: a panic while
/// holding it poisons nothing that matters.
fn locked<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How many locks the items' consensus state is striped over.
const PAXOS_LOCK_STRIPES: usize = 64;

/// The storage key of an item.
/// The partition of every item with this partition key (the first byte
/// of its [`storage_key`]).
pub(crate) fn partition_of_key(partition_key: &[u8]) -> usize {
    Hash::of(partition_key).0[0] as usize
}

pub(crate) fn storage_key(partition_key: &[u8], sort_key: &[u8]) -> Vec<u8> {
    let mut k = Hash::of(partition_key).0.to_vec();
    k.extend_from_slice(sort_key);
    k
}

fn add_counter(tx: &mut dyn Tx, tree: TreeId, name: &[u8], delta: i64) -> TxResult<()> {
    let cur = read_u64(tx.get(tree, name)?);
    let next = (cur as i64).saturating_add(delta).max(0) as u64;
    tx.insert(tree, name, &next.to_be_bytes())
}

fn read_u64(v: Option<Vec<u8>>) -> u64 {
    v.and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

impl<S: TableSchema> TableData<S> {
    pub fn open(db: Db, schema: Arc<S>) -> DbResult<Self> {
        let name = S::NAME;
        let items = db.open_tree(&format!("{name}:items"))?;
        let merkle_todo = db.open_tree(&format!("{name}:merkle_todo"))?;
        let gc_todo = db.open_tree(&format!("{name}:gc_todo"))?;
        let counters = db.open_tree(&format!("{name}:counters"))?;
        let mut write_trees = vec![items, merkle_todo, gc_todo, counters];
        write_trees.extend(schema.hook_trees());
        TableData {
            items,
            merkle_todo,
            gc_todo,
            counters,
            write_trees,
            queued: Default::default(),
            committer: Default::default(),
            transactions: Default::default(),
            paxos: db.open_tree(&format!("{name}:paxos"))?,
            paxos_locks: (0..PAXOS_LOCK_STRIPES)
                .map(|_| std::sync::Mutex::new(()))
                .collect(),
            promise_times: Default::default(),
            merkle: MerkleTree::open(&db, name, items)?,
            db,
            schema,
            now_ms: now_msec,
            clock: hangar_common::clock::hlc(),
            merkle_queued: tokio::sync::Notify::new(),
        }
        .upgraded()
    }

    /// A store written by an older version holds other Merkle trees:
    /// radix trees (`t:merkle`, protocol 5 and before) or sums with
    /// per-bucket sums and leaves (`t:merkle_leaves`, protocol 6), and a
    /// queue whose entries hold only the new value hash. Drop them, clear
    /// the sums, and queue every item as folded nowhere; the Merkle updater
    /// rebuilds the sums in the background (the queue's length, in
    /// `hangar status --json` and the metrics, is the progress).
    /// Anti-entropy with this node compares sums that are still filling
    /// until then, which costs pushes, never data. Idempotent: a crash
    /// halfway redoes it at the next start.
    fn upgraded(self) -> DbResult<Self> {
        if self.counter(C_MERKLE_FORMAT) >= MERKLE_FORMAT {
            return Ok(self);
        }
        let mut dropped = 0u64;
        for old in [
            self.db.open_tree(&format!("{}:merkle", S::NAME))?,
            self.db.open_tree(&format!("{}:merkle_leaves", S::NAME))?,
            self.merkle.sums,
            self.merkle_todo,
        ] {
            dropped += self.clear_tree(old)?;
        }
        self.db.transaction(&[self.counters], &mut |tx| {
            tx.insert(self.counters, C_MERKLE, &0u64.to_be_bytes())
        })?;
        use std::ops::Bound;
        let mut queued = 0u64;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let start = match &after {
                Some(a) => Bound::Excluded(a.as_slice()),
                None => Bound::Unbounded,
            };
            let batch = self
                .db
                .range(self.items, start, Bound::Unbounded, false, REBUILD_BATCH)?;
            let Some((last, _)) = batch.last() else { break };
            after = Some(last.clone());
            self.db
                .transaction(&[self.merkle_todo, self.counters], &mut |tx| {
                    for (k, v) in &batch {
                        let pending = Pending {
                            folded: None,
                            now: Some(Hash::of(v)),
                        };
                        tx.insert(self.merkle_todo, k, &pending.encode())?;
                    }
                    add_counter(tx, self.counters, C_MERKLE, batch.len() as i64)
                })?;
            queued += batch.len() as u64;
            if queued.is_multiple_of(100 * REBUILD_BATCH as u64) {
                tracing::info!(
                    "{}: upgrading the Merkle sums: {queued} of {} items queued",
                    S::NAME,
                    self.item_count()
                );
            }
        }
        self.db.transaction(&[self.counters], &mut |tx| {
            tx.insert(self.counters, C_MERKLE_FORMAT, &MERKLE_FORMAT.to_be_bytes())
        })?;
        if queued + dropped > 0 {
            tracing::info!(
                "{}: Merkle sums upgraded: {dropped} old entries dropped, \
                 {queued} items queued for the Merkle updater",
                S::NAME
            );
        }
        Ok(self)
    }

    /// Remove every entry of `tree`, in transactions of [`REBUILD_BATCH`].
    /// Returns how many there were.
    fn clear_tree(&self, tree: TreeId) -> DbResult<u64> {
        use std::ops::Bound;
        let mut dropped = 0u64;
        loop {
            let batch = self.db.range(
                tree,
                Bound::Unbounded,
                Bound::Unbounded,
                false,
                REBUILD_BATCH,
            )?;
            if batch.is_empty() {
                return Ok(dropped);
            }
            self.db.transaction(&[tree], &mut |tx| {
                batch.iter().try_for_each(|(k, _)| tx.remove(tree, k))
            })?;
            dropped += batch.len() as u64;
        }
    }

    /// The lock of the stripe `key` falls in: held while an acceptor reads,
    /// checks and writes its state for the item, and while an ordered write
    /// checks that state and applies itself (see `paxos.rs`).
    pub(crate) fn item_lock(&self, key: &[u8]) -> std::sync::MutexGuard<'_, ()> {
        // Storage keys start with a hash of the partition key; the sort key
        // (an object's name) follows.
        let h = key
            .iter()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(*b)));
        self.paxos_locks[(h as usize) % PAXOS_LOCK_STRIPES]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Decode an item; a timestamped one moves the hybrid clock forward
    /// (every timestamp a node sees does: see [`hangar_common::clock`]).
    pub(crate) fn decode(&self, bytes: &[u8]) -> Result<S::Item, DataError> {
        use super::TableItem;
        let item: S::Item = rmp_serde::from_slice(bytes).map_err(|e| DataError::Decode {
            table: S::NAME,
            reason: e.to_string(),
        })?;
        if let Some(t) = item.write_time() {
            self.clock.observe(t);
        }
        Ok(item)
    }

    pub(crate) fn encode(&self, item: &S::Item) -> Result<Vec<u8>, DataError> {
        rmp_serde::to_vec_named(item).map_err(|e| DataError::Encode {
            table: S::NAME,
            reason: e.to_string(),
        })
    }

    fn counter(&self, name: &[u8]) -> u64 {
        read_u64(self.db.get(self.counters, name).ok().flatten())
    }

    pub(crate) fn item_count(&self) -> u64 {
        self.counter(C_ITEMS)
    }
    pub(crate) fn merkle_queue(&self) -> u64 {
        self.counter(C_MERKLE)
    }
    pub(crate) fn gc_queue(&self) -> u64 {
        self.counter(C_GC)
    }

    pub(crate) fn get_raw(&self, key: &[u8]) -> DbResult<Option<Vec<u8>>> {
        self.db.get(self.items, key)
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<S::Item>, DataError> {
        match self.get_raw(key)? {
            Some(b) => Ok(Some(self.decode(&b)?)),
            None => Ok(None),
        }
    }

    /// Items under `prefix` after `after`, at most `limit`, raw.
    pub(crate) fn range_raw(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> DbResult<Vec<(Vec<u8>, Vec<u8>)>> {
        use std::ops::Bound;
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        let end_key = crate::db::prefix_end(prefix);
        let end = match &end_key {
            Some(e) => Bound::Excluded(e.as_slice()),
            None => Bound::Unbounded,
        };
        self.db.range(self.items, start, end, false, limit)
    }

    fn counted(&self) {
        self.transactions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Transactions this table committed: item writes and Merkle folds.
    pub(crate) fn transactions(&self) -> u64 {
        self.transactions.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Merge an encoded item into the local replica. Returns the merged
    /// encoding when it changed what was stored.
    pub(crate) fn update_raw(&self, bytes: &[u8]) -> Result<Option<Vec<u8>>, DataError> {
        let item = self.decode(bytes)?;
        self.update(&item)
    }

    /// Merge an item into the local replica. Returns the merged encoding
    /// when it changed what was stored.
    ///
    /// Group commit: writers that arrive while a transaction is being
    /// committed queue their items, and the next of them to get the
    /// commit lock writes every queued item in one transaction (see
    /// [`TableData::update_batch`]) and hands each writer its result. A
    /// lone writer pays one transaction as before; sixteen concurrent
    /// ones pay a few. sled runs one transaction at a time anyway, and
    /// each costs an overlay of its trees, a commit and a write of the
    /// log buffer by one of its I/O threads: batching is where a busy
    /// node's write time goes down.
    pub(crate) fn update(&self, item: &S::Item) -> Result<Option<Vec<u8>>, DataError> {
        let slot: Slot = Arc::default();
        locked(&self.queued).push((item.clone(), slot.clone()));
        let _committer = locked(&self.committer);
        if let Some(done) = locked(&slot).take() {
            return done; // a writer before us committed it
        }
        let batch = std::mem::take(&mut *locked(&self.queued));
        let items: Vec<&S::Item> = batch.iter().map(|(item, _)| item).collect();
        match self.update_batch(&items) {
            Ok(results) => {
                for ((_, slot), r) in batch.iter().zip(results) {
                    *locked(slot) = Some(Ok(r));
                }
            }
            // One item's failure must not fail the others: each alone.
            Err(e) if batch.len() == 1 => *locked(&batch[0].1) = Some(Err(e)),
            Err(_) => {
                for (item, slot) in &batch {
                    let r = self.update_batch(&[item]).map(|mut r| r.pop().flatten());
                    *locked(slot) = Some(r);
                }
            }
        }
        locked(&slot).take().unwrap_or_else(|| {
            Err(DataError::Db(DbError::Aborted(
                "a queued write was not committed".into(),
            )))
        })
    }

    /// Merge items into the local replica in one transaction (each item,
    /// the Merkle queue, the tombstone queue, the counters, the schema's
    /// derived state). Returns, per item, the merged encoding when it
    /// changed what was stored. Several items with one key merge in turn.
    pub(crate) fn update_batch(
        &self,
        items: &[&S::Item],
    ) -> Result<Vec<Option<Vec<u8>>>, DataError> {
        use super::TableItem;
        let keys: Vec<Vec<u8>> = items
            .iter()
            .map(|i| storage_key(i.partition_key(), i.sort_key()))
            .collect();
        let mut encode_err = None;
        let mut changed: Vec<Option<Vec<u8>>> = Vec::new();
        let mut counts = Counts::default();
        self.db
            .transaction(&self.write_trees, &mut |tx| {
                changed.clear();
                counts = Counts::default();
                for (item, key) in items.iter().zip(&keys) {
                    let old = tx.get(self.items, key)?;
                    // A corrupt local copy is replaced by the incoming one;
                    // anti-entropy heals the rest.
                    let old_item = old.as_ref().and_then(|b| self.decode(b).ok());
                    let merged = match &old_item {
                        Some(o) => {
                            let mut m = o.clone();
                            m.merge(item);
                            m
                        }
                        None => (*item).clone(),
                    };
                    let bytes = match self.encode(&merged) {
                        Ok(b) => b,
                        Err(e) => {
                            encode_err = Some(e.to_string());
                            return Err(DbError::Aborted("encode".into()));
                        }
                    };
                    if old.as_deref() == Some(bytes.as_slice()) {
                        changed.push(None);
                        continue;
                    }
                    tx.insert(self.items, key, &bytes)?;
                    self.schema.updated(tx, old_item.as_ref(), Some(&merged))?;
                    counts.items += i64::from(old.is_none());
                    let vh = Hash::of(&bytes);
                    let folded = match tx.get(self.merkle_todo, key)? {
                        Some(p) => self.folded_of(key, &p),
                        None => {
                            counts.merkle += 1;
                            old.as_deref().map(Hash::of)
                        }
                    };
                    let pending = Pending {
                        folded,
                        now: Some(vh),
                    };
                    tx.insert(self.merkle_todo, key, &pending.encode())?;
                    if merged.is_tombstone() {
                        if tx.get(self.gc_todo, key)?.is_none() {
                            counts.gc += 1;
                        }
                        let todo = GcTodo {
                            value_hash: vh,
                            since_ms: (self.now_ms)(),
                        };
                        let enc = rmp_serde::to_vec(&todo)
                            .map_err(|e| DbError::Aborted(e.to_string()))?;
                        tx.insert(self.gc_todo, key, &enc)?;
                    }
                    changed.push(Some(bytes));
                }
                // Each counter once per transaction, however many items.
                for (name, delta) in [
                    (C_ITEMS, counts.items),
                    (C_MERKLE, counts.merkle),
                    (C_GC, counts.gc),
                ] {
                    if delta != 0 {
                        add_counter(tx, self.counters, name, delta)?;
                    }
                }
                Ok(())
            })
            .map_err(|e| match encode_err.take() {
                Some(reason) => DataError::Encode {
                    table: S::NAME,
                    reason,
                },
                None => DataError::Db(e),
            })?;
        self.counted();
        if changed.iter().any(Option::is_some) {
            self.merkle_queued.notify_one();
        }
        Ok(changed)
    }

    /// Remove every item of partition `p` from this replica (this node no
    /// longer holds the partition, and its new owners have the data), at
    /// most `limit` per call. Returns how many were removed.
    pub(crate) fn drop_partition(&self, p: u8, limit: usize) -> DbResult<usize> {
        let keys: Vec<Vec<u8>> = self
            .range_raw(&[p], None, limit)?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        for k in &keys {
            self.remove_local(k, None)?;
        }
        Ok(keys.len())
    }

    /// Remove an item if its stored encoding still hashes to `expected`.
    /// Returns whether it was removed.
    pub(crate) fn delete_if_equal(&self, key: &[u8], expected: &Hash) -> DbResult<bool> {
        self.remove_local(key, Some(expected))
    }

    /// Remove an item (if `expected` is given, only if its encoding still
    /// hashes to it), keeping the queues and counters right.
    fn remove_local(&self, key: &[u8], expected: Option<&Hash>) -> DbResult<bool> {
        // With the item's consensus state: what a round accepted before
        // this item's time goes with it (see below).
        let _guard = self.item_lock(key);
        let mut removed = false;
        let mut removed_time = None;
        self.db.transaction(&self.write_trees, &mut |tx| {
            removed = false;
            let Some(cur) = tx.get(self.items, key)? else {
                return Ok(());
            };
            if expected.is_some_and(|h| Hash::of(&cur) != *h) {
                return Ok(());
            }
            tx.remove(self.items, key)?;
            if let Ok(old) = self.decode(&cur) {
                self.schema.updated(tx, Some(&old), None)?;
                removed_time = old.write_time();
            }
            add_counter(tx, self.counters, C_ITEMS, -1)?;
            let folded = match tx.get(self.merkle_todo, key)? {
                Some(p) => self.folded_of(key, &p),
                None => {
                    add_counter(tx, self.counters, C_MERKLE, 1)?;
                    Some(Hash::of(&cur))
                }
            };
            let pending = Pending { folded, now: None };
            tx.insert(self.merkle_todo, key, &pending.encode())?;
            if tx.get(self.gc_todo, key)?.is_some() {
                tx.remove(self.gc_todo, key)?;
                add_counter(tx, self.counters, C_GC, -1)?;
            }
            removed = true;
            Ok(())
        })?;
        if removed {
            self.merkle_queued.notify_one();
            // A value a consensus round accepted here, timed at or below
            // the item removed (a tombstone every replica held), lost to
            // it; were it kept, the next round would find it and write it
            // again, above nothing any more: a deleted value back.
            if let Some(t) = removed_time
                && let Err(e) = self.forget_accepted_below(key, t)
            {
                tracing::warn!("{}: consensus state of a removed item: {e}", S::NAME);
            }
        }
        Ok(removed)
    }

    /// Drop a tombstone-queue entry if it is still the one we saw.
    pub(crate) fn gc_todo_done(&self, key: &[u8], seen: &[u8]) -> DbResult<()> {
        self.db
            .transaction(&[self.gc_todo, self.counters], &mut |tx| {
                if tx.get(self.gc_todo, key)?.as_deref() == Some(seen) {
                    tx.remove(self.gc_todo, key)?;
                    add_counter(tx, self.counters, C_GC, -1)?;
                }
                Ok(())
            })
    }

    /// What the Merkle sums hold for `key`, from its queue entry. A
    /// damaged entry is taken as holding nothing, with a warning: a wrong
    /// sum costs anti-entropy a listing of the group at each round, while
    /// refusing the item's writes would cost the user the item.
    fn folded_of(&self, key: &[u8], entry: &[u8]) -> Option<Hash> {
        match Pending::decode(key, entry) {
            Ok(p) => p.folded,
            Err(e) => {
                tracing::warn!("{}: {e}", S::NAME);
                None
            }
        }
    }

    /// Fold up to `limit` queued changes into the Merkle sums. Returns how
    /// many were processed.
    pub(crate) fn update_merkle(&self, limit: usize) -> DbResult<usize> {
        use std::ops::Bound;
        let batch = self.db.range(
            self.merkle_todo,
            Bound::Unbounded,
            Bound::Unbounded,
            false,
            limit,
        )?;
        // One transaction per chunk of items: a storage transaction costs
        // far more than the two sum updates of one item, but a long one
        // holds up the table's writers.
        let trees = [self.merkle.sums, self.merkle_todo, self.counters];
        for chunk in batch.chunks(MERKLE_TX_ITEMS) {
            self.db.transaction(&trees, &mut |tx| {
                // Each entry as it is now, in this transaction: a write
                // since the listing changed it, or another updater (the
                // loop's, or anti-entropy's before a round) folded it
                // already; folding the listed copy would count it twice.
                let mut changes = Vec::with_capacity(chunk.len());
                for (key, _) in chunk {
                    let Some(entry) = tx.get(self.merkle_todo, key)? else {
                        continue;
                    };
                    let pending = Pending::decode(key, &entry).unwrap_or_else(|e| {
                        // Dropped: what the sums hold for it is unknown.
                        tracing::warn!("{}: {e}", S::NAME);
                        Pending::default()
                    });
                    tx.remove(self.merkle_todo, key)?;
                    changes.push((key.as_slice(), pending));
                }
                self.merkle.update_items(tx, &changes)?;
                if !changes.is_empty() {
                    add_counter(tx, self.counters, C_MERKLE, -(changes.len() as i64))?;
                }
                Ok(())
            })?;
            self.counted();
        }
        Ok(batch.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::kv::{KvItem, KvTable};

    fn data() -> TableData<KvTable> {
        TableData::open(
            Arc::new(crate::db::mem::MemEngine::default()),
            Arc::new(KvTable),
        )
        .unwrap()
    }

    #[test]
    fn updates_merge_and_keep_counters() {
        let d = data();
        let n = hangar_common::NodeId([1; 32]);
        let a = KvItem::new("k", Some("v1".into()), 1, n);
        let b = KvItem::new("k", Some("v2".into()), 2, n);
        assert!(d.update(&b).unwrap().is_some());
        assert!(
            d.update(&a).unwrap().is_none(),
            "an older write changes nothing"
        );
        assert_eq!(
            d.get(&storage_key(b"k", b"")).unwrap().unwrap().value(),
            Some("v2")
        );
        assert_eq!(d.item_count(), 1);
        assert_eq!(d.merkle_queue(), 1);
        d.update_merkle(100).unwrap();
        assert_eq!(d.merkle_queue(), 0);
        let del = KvItem::new("k", None, 3, n);
        d.update(&del).unwrap();
        assert_eq!(d.gc_queue(), 1);
        let key = storage_key(b"k", b"");
        let h = Hash::of(&d.get_raw(&key).unwrap().unwrap());
        assert!(!d.delete_if_equal(&key, &Hash::of(b"other")).unwrap());
        assert!(d.delete_if_equal(&key, &h).unwrap());
        assert_eq!((d.item_count(), d.gc_queue()), (0, 0));
    }

    /// Every partition's Merkle root, read from the store.
    fn roots(d: &TableData<KvTable>) -> Vec<Hash> {
        (0..=255u8)
            .map(|p| d.merkle.root(&d.db, p).unwrap())
            .collect()
    }

    #[test]
    fn batched_merkle_updates_build_the_same_trees_as_one_by_one() {
        let n = hangar_common::NodeId([1; 32]);
        // Enough items for several items per partition in one batch, so
        // nodes are shared within a batch; then changes and removals.
        let rounds: [Vec<KvItem>; 2] = [
            (0..2000)
                .map(|i| KvItem::new(&format!("k{i}"), Some(format!("v{i}")), 1, n))
                .collect(),
            (0..2000)
                .step_by(3)
                .map(|i| {
                    let v = (i % 2 == 0).then(|| format!("w{i}"));
                    KvItem::new(&format!("k{i}"), v, 2, n)
                })
                .collect(),
        ];
        // The batched side on sled and on redb (a transaction reads its
        // own writes there too), the reference in memory.
        let (dir, redb_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let engines: [crate::db::Db; 2] = [
            Arc::new(crate::db::sled_engine::SledEngine::open(dir.path(), 16 << 20).unwrap()),
            Arc::new(crate::db::redb_engine::RedbEngine::open(redb_dir.path(), 16 << 20).unwrap()),
        ];
        for db in engines {
            let batched = TableData::open(db, Arc::new(KvTable)).unwrap();
            let single = data();
            for items in &rounds {
                for it in items {
                    batched.update(it).unwrap();
                    single.update(it).unwrap();
                    single.update_merkle(1).unwrap();
                }
                while batched.update_merkle(256).unwrap() > 0 {}
                assert_eq!(batched.merkle_queue(), 0);
                assert_eq!(single.merkle_queue(), 0);
                let (rb, rs) = (roots(&batched), roots(&single));
                assert!(
                    rb.iter().any(|r| *r != Hash::default()),
                    "the trees are not empty"
                );
                assert_eq!(rb, rs, "same items, same Merkle trees");
            }
        }
    }

    /// A store of an older version opens with its old trees dropped,
    /// its sums cleared and every item queued; the updater then builds the
    /// same sums as a store that always had them. Both old formats: radix
    /// trees (`t:merkle`, no format mark) and protocol 6's bucket sums and
    /// leaves, with its queue entries of one bare hash.
    #[test]
    fn stores_of_older_merkle_formats_are_upgraded() {
        use std::ops::Bound;
        let n = hangar_common::NodeId([1; 32]);
        for format in [None, Some(2u64)] {
            let db: crate::db::Db = Arc::new(crate::db::mem::MemEngine::default());
            let d = TableData::open(db.clone(), Arc::new(KvTable)).unwrap();
            for i in 0..500 {
                d.update(&KvItem::new(&format!("k{i}"), Some("v".into()), 1, n))
                    .unwrap();
            }
            while d.update_merkle(256).unwrap() > 0 {}
            let want = roots(&d);
            // Make it look like the old version's store: its trees, sums
            // of another shape, a queue entry of the old form.
            let radix = db.open_tree("debug_kv:merkle").unwrap();
            let leaves = db.open_tree("debug_kv:merkle_leaves").unwrap();
            let sums = d.merkle.sums;
            let key = storage_key(b"k7", b"");
            db.transaction(
                &[radix, leaves, sums, d.merkle_todo, d.counters],
                &mut |tx| {
                    tx.insert(radix, &[7], b"radix node")?;
                    tx.insert(leaves, &[7; 33], &[1; 40])?;
                    tx.insert(sums, &[2, 7, 7, 7], &[1; 32])?;
                    tx.insert(sums, &[0, 7], &[9; 32])?;
                    tx.insert(d.merkle_todo, &key, &[3; 32])?;
                    add_counter(tx, d.counters, C_MERKLE, 1)?;
                    match format {
                        Some(f) => tx.insert(d.counters, C_MERKLE_FORMAT, &f.to_be_bytes()),
                        None => tx.remove(d.counters, C_MERKLE_FORMAT),
                    }
                },
            )
            .unwrap();
            drop(d);
            let d = TableData::open(db.clone(), Arc::new(KvTable)).unwrap();
            assert_eq!(d.merkle_queue(), 500, "every item queued, once");
            assert_eq!(db.len(radix).unwrap(), 0, "the radix trees are gone");
            assert_eq!(db.len(leaves).unwrap(), 0, "the leaves are gone");
            while d.update_merkle(256).unwrap() > 0 {}
            assert_eq!(d.merkle_queue(), 0);
            assert_eq!(roots(&d), want, "from {format:?}");
            let all = db.range(sums, Bound::Unbounded, Bound::Unbounded, false, usize::MAX);
            assert!(all.unwrap().iter().all(|(k, _)| k[0] < 2), "no bucket sums");
            // Marked: the next start queues nothing.
            drop(d);
            let d = TableData::open(db, Arc::new(KvTable)).unwrap();
            assert_eq!(d.merkle_queue(), 0);
        }
    }

    /// A damaged Merkle queue entry never costs the user the item: the
    /// next write of that key succeeds, the updater drops the entry with a
    /// warning instead of stalling, and the queue empties.
    #[test]
    fn a_damaged_merkle_queue_entry_does_not_block_writes_nor_the_updater() {
        let n = hangar_common::NodeId([1; 32]);
        let d = data();
        for i in 0..3 {
            d.update(&KvItem::new(&format!("k{i}"), Some("v".into()), 1, n))
                .unwrap();
        }
        let key = storage_key(b"k1", b"");
        d.db.insert(d.merkle_todo, &key, b"\x07garbage").unwrap();
        let later = KvItem::new("k1", Some("w".into()), 2, n);
        assert!(d.update(&later).unwrap().is_some(), "the write lands");
        assert_eq!(
            d.get(&key).unwrap().unwrap().value(),
            Some("w"),
            "and is read back"
        );
        d.db.insert(d.merkle_todo, &key, b"\x07garbage").unwrap();
        while d.update_merkle(256).unwrap() > 0 {}
        assert_eq!(d.merkle_queue(), 0, "the updater went past it");
        assert_eq!(d.db.len(d.merkle_todo).unwrap(), 0);
    }

    /// A store on each engine (in memory, sled, redb), and the
    /// directories to keep while they are used.
    fn every_engine() -> (Vec<crate::db::Db>, [tempfile::TempDir; 2]) {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let engines: Vec<crate::db::Db> = vec![
            Arc::new(crate::db::mem::MemEngine::default()),
            Arc::new(crate::db::sled_engine::SledEngine::open(dirs[0].path(), 8 << 20).unwrap()),
            Arc::new(crate::db::redb_engine::RedbEngine::open(dirs[1].path(), 8 << 20).unwrap()),
        ];
        (engines, dirs)
    }

    /// The Merkle roots of a fresh store given only `d`'s items.
    fn fresh_roots(d: &TableData<KvTable>) -> Vec<Hash> {
        let fresh = data();
        for (_, v) in d.range_raw(&[], None, usize::MAX).unwrap() {
            fresh.update(&d.decode(&v).unwrap()).unwrap();
        }
        while fresh.update_merkle(256).unwrap() > 0 {}
        roots(&fresh)
    }

    /// Writers and two Merkle updaters racing on a few keys (each write,
    /// and the other updater's fold, may land between an updater's reading
    /// of the queue and its commit) leave the sums equal to those of a
    /// store given only the final items: what the sums hold for an item is
    /// never lost nor counted twice. On every engine.
    #[test]
    fn writes_racing_the_merkle_updater_leave_the_right_sums() {
        let n = hangar_common::NodeId([1; 32]);
        let (engines, _dirs) = every_engine();
        for db in engines {
            let d = Arc::new(TableData::open(db.clone(), Arc::new(KvTable)).unwrap());
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            // Two updaters, as in the agent (the updater's loop, and
            // anti-entropy bringing the sums up to date before a round).
            let folders: Vec<_> = [7, 3]
                .into_iter()
                .map(|batch| {
                    let (d, done) = (d.clone(), done.clone());
                    std::thread::spawn(move || {
                        while !done.load(std::sync::atomic::Ordering::Acquire) {
                            d.update_merkle(batch).unwrap();
                        }
                    })
                })
                .collect();
            let writers: Vec<_> = (0..2u64)
                .map(|w| {
                    let d = d.clone();
                    std::thread::spawn(move || {
                        for i in 0..600u64 {
                            let k = format!("k{}", (i * 7 + w) % 20);
                            // Removals too: a tombstone every fifth write.
                            let v = (i % 5 != 0).then(|| format!("v{w}-{i}"));
                            d.update(&KvItem::new(&k, v, 1 + i * 2 + w, n)).unwrap();
                        }
                    })
                })
                .collect();
            writers.into_iter().for_each(|w| w.join().unwrap());
            done.store(true, std::sync::atomic::Ordering::Release);
            folders.into_iter().for_each(|f| f.join().unwrap());
            while d.update_merkle(256).unwrap() > 0 {}
            assert_eq!(d.merkle_queue(), 0, "{}", db.name());
            assert_eq!(roots(&d), fresh_roots(&d), "{}", db.name());
            // Some of the items were removed outright, too.
            for i in 0..5 {
                let k = storage_key(format!("k{i}").as_bytes(), b"");
                let h = Hash::of(&d.get_raw(&k).unwrap().unwrap());
                assert!(d.delete_if_equal(&k, &h).unwrap());
            }
            while d.update_merkle(256).unwrap() > 0 {}
            assert_eq!(roots(&d), fresh_roots(&d), "{} after removals", db.name());
        }
    }

    /// Writers that arrive while a transaction commits are committed
    /// together by the next of them, each told its own outcome: here every
    /// writer queues behind a held commit lock, then one transaction
    /// writes them all, on every engine.
    #[test]
    fn writers_queued_behind_a_commit_share_one_transaction() {
        let (engines, _dirs) = every_engine();
        let n = hangar_common::NodeId([1; 32]);
        for db in engines {
            let d = Arc::new(TableData::open(db.clone(), Arc::new(KvTable)).unwrap());
            // One key already holds a newer value: that writer is told
            // nothing changed, the others get their encoding back.
            d.update(&KvItem::new("k0", Some("newer".into()), 99, n))
                .unwrap();
            let before = db.transactions();
            let held = locked(&d.committer);
            let writers: Vec<_> = (0..8)
                .map(|i| {
                    let d = d.clone();
                    std::thread::spawn(move || {
                        d.update(&KvItem::new(&format!("k{i}"), Some("v".into()), 1, n))
                    })
                })
                .collect();
            while locked(&d.queued).len() < 8 {
                std::thread::yield_now();
            }
            drop(held);
            let outcomes: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
            assert_eq!(db.transactions(), before + 1, "{}: one commit", db.name());
            assert!(
                outcomes[0].as_ref().unwrap().is_none(),
                "k0 kept its newer value"
            );
            assert!(outcomes[1..].iter().all(|o| o.as_ref().unwrap().is_some()));
            assert_eq!((d.item_count(), d.merkle_queue()), (8, 8), "{}", db.name());
            assert_eq!(
                d.get(&storage_key(b"k0", b"")).unwrap().unwrap().value(),
                Some("newer")
            );
        }
    }
}
