//! The content-addressed block store, replicated.
//!
//! Object data is cut into blocks named by their BLAKE2b-256 hash. A block
//! lives on the nodes of partition `partition_of(hash)` (the same partition
//! as its entries in the block reference table, so the nodes that store a
//! block also know who references it). Writes wait for a write quorum of
//! every live layout version; reads ask the replica with the lowest
//! observed latency first and, if it is slow or fails, hedge to the next one
//! after a delay derived from its round-trip time, so a dead or stalled node
//! costs a GET well under a second, not a long RPC timeout. A block whose
//! bytes do not match its hash is never returned.
//!
//! A one-block object's block is the exception: it lives beside the
//! object's item, on the nodes of the object's partition, written with the
//! item in one round trip (`Table::insert_latest_with`), and is referenced
//! by the item itself (the object table's hook counts it in `block_rc` and
//! in `block_attached`, which keeps it on those nodes whatever its hash's
//! partition).
//!
//! Each node keeps, in its metadata store, a reference count per block
//! (`block_rc`, maintained by the block reference table's hook in the same
//! transaction as the reference) and a time-ordered work queue
//! (`block_resync`). The resync worker (`resync.rs`) uses them to fetch
//! blocks this node should have and lacks, delete blocks nobody references
//! any more, and hand blocks over to their new nodes after a layout change.

mod group_sync;
pub mod resync;
pub mod scrub;
pub mod store;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hangar_common::NodeId;
use hangar_common::crdt::now_msec;
use hangar_common::hash::{Hash, partition_of};
use hangar_common::layout::cluster::write_quorum;
use hangar_common::rpc::RpcError;
use tokio::sync::mpsc;

use self::store::{BlockStore, Cache, StoreError};
use crate::db::{Db, DbResult, TreeId, Tx, TxResult};
use crate::layout::LayoutManager;
use crate::net::{CallError, CallErrors, Channel, Net};

/// Why a replicated block operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("no layout has been applied yet: assign node roles and apply a layout first")]
    NoLayout,
    #[error("block {hash:?}: only {ok} of the {needed} replicas needed stored it ({errors})")]
    Quorum {
        hash: Hash,
        ok: usize,
        needed: usize,
        errors: CallErrors,
    },
    /// Too few of the block's replicas are connected: it was not
    /// written anywhere (see [`crate::table::TableError::Away`]).
    #[error(
        "block {hash:?}: only {connected} of the {needed} replicas needed are connected \
         (not connected: {away}): refused before sending anything; try again once they are back"
    )]
    Away {
        hash: Hash,
        connected: usize,
        needed: usize,
        away: String,
    },
    #[error("block {hash:?} could not be read from any replica ({errors})")]
    Unavailable { hash: Hash, errors: CallErrors },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A handover to a new holder failed (resync).
    #[error(transparent)]
    Peer(#[from] CallError),
    #[error("cannot delete block {hash:?}: {source}")]
    Delete { hash: Hash, source: std::io::Error },
    #[error("block queue: {0}")]
    Queue(#[from] crate::db::DbError),
}

/// Settings of the block layer.
#[derive(Clone, Debug)]
pub struct BlockConfig {
    /// Time a replica has to store a block.
    pub op_timeout: Duration,
    /// How long a block nobody references is kept before deletion (uploads
    /// in progress write blocks before their references).
    pub unreferenced_grace: Duration,
    /// How long a missing block that just gained a reference is given to
    /// arrive before the resync worker fetches it: a PUT writes an
    /// object's block list and references while its last blocks are still
    /// on their way to the replicas, and fetching those would only copy
    /// them twice (across sites, too). A node that missed a write while it
    /// was away fetches the block this much later.
    pub arrival_delay: Duration,
    /// zstd level for block files, None for no compression.
    pub compression_level: Option<i32>,
    /// Pause switches of the background workers.
    pub workers: Arc<crate::worker::Workers>,
}

/// Counters shown by `hangar status` and the console.
pub type BlockStats = hangar_common::rpc::BlockWorkerStats;

pub struct BlockManager {
    pub store: BlockStore,
    pub net: Arc<Net>,
    pub layout: Arc<LayoutManager>,
    pub db: Db,
    pub rc: TreeId,
    /// Per block and object partition (`hash ++ partition`): how many
    /// object versions this node holds keep it here beside their items
    /// (see [`RcTrees::attach`]); an entry at zero remembers, until the
    /// file goes, that the block was kept for them and where they are.
    pub attached: TreeId,
    pub resync_queue: TreeId,
    pub cfg: BlockConfig,
    pub stats: Mutex<BlockStats>,
    /// Persisted scrub position and last completion.
    pub scrub_state: TreeId,
    pub scrub_now: tokio::sync::Notify,
}

/// Partition a block lives in (unless attached to its object's item).
fn block_partition(hash: &Hash) -> usize {
    partition_of(hash.as_bytes())
}

fn be(v: Option<Vec<u8>>) -> u64 {
    v.and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// Queue key: due time then hash, so the queue reads in due order.
fn queue_key(due_ms: u64, hash: &Hash) -> Vec<u8> {
    let mut k = due_ms.to_be_bytes().to_vec();
    k.extend_from_slice(hash.as_bytes());
    k
}

/// Key of a block's entry in `block_attached` for one object partition.
fn attached_key(hash: &Hash, partition: u8) -> Vec<u8> {
    let mut k = hash.as_bytes().to_vec();
    k.push(partition);
    k
}

/// Tree ids the block reference table's hook needs.
#[derive(Clone, Copy)]
pub struct RcTrees {
    pub rc: TreeId,
    pub attached: TreeId,
    pub queue: TreeId,
    pub grace_ms: u64,
    pub arrival_ms: u64,
}

impl RcTrees {
    /// Change a block's reference count by `delta` inside `tx`, and queue
    /// the block for a resync check: after the arrival delay if it gained a
    /// reference, after the grace delay if it lost its last one.
    pub(crate) fn add(&self, tx: &mut dyn Tx, hash: &Hash, delta: i64) -> TxResult<()> {
        let cur = be(tx.get(self.rc, hash.as_bytes())?);
        let next = (cur as i64 + delta).max(0) as u64;
        if next == 0 {
            tx.remove(self.rc, hash.as_bytes())?;
        } else {
            tx.insert(self.rc, hash.as_bytes(), &next.to_be_bytes())?;
        }
        let due = if next > 0 {
            now_msec() + self.arrival_ms
        } else {
            now_msec() + self.grace_ms
        };
        tx.insert(self.queue, &queue_key(due, hash), &[])
    }

    /// An object version this node holds in `partition` keeps `hash`
    /// beside its item (`delta` 1) or no longer does (-1): a reference,
    /// and the reason to keep the block here rather than on its hash's
    /// partition.
    pub(crate) fn attach(
        &self,
        tx: &mut dyn Tx,
        hash: &Hash,
        partition: u8,
        delta: i64,
    ) -> TxResult<()> {
        let key = attached_key(hash, partition);
        let cur = be(tx.get(self.attached, &key)?);
        let next = (cur as i64 + delta).max(0) as u64;
        tx.insert(self.attached, &key, &next.to_be_bytes())?;
        self.add(tx, hash, delta)
    }

    /// The trees [`RcTrees::add`] and [`RcTrees::attach`] touch.
    pub(crate) fn trees(&self) -> [TreeId; 3] {
        [self.rc, self.attached, self.queue]
    }
}

impl BlockManager {
    pub fn open(
        data_dirs: &hangar_common::config::DataDirs,
        db: Db,
        net: Arc<Net>,
        layout: Arc<LayoutManager>,
        cfg: BlockConfig,
    ) -> DbResult<Arc<BlockManager>> {
        Ok(Arc::new(BlockManager {
            store: BlockStore::new(data_dirs, cfg.compression_level),
            rc: db.open_tree("block_rc")?,
            attached: db.open_tree("block_attached")?,
            resync_queue: db.open_tree("block_resync")?,
            scrub_state: db.open_tree("block_scrub")?,
            scrub_now: tokio::sync::Notify::new(),
            db,
            net,
            layout,
            cfg,
            stats: Mutex::new(BlockStats::default()),
        }))
    }

    pub fn rc_trees(&self) -> RcTrees {
        RcTrees {
            rc: self.rc,
            attached: self.attached,
            queue: self.resync_queue,
            grace_ms: self.cfg.unreferenced_grace.as_millis() as u64,
            arrival_ms: self.cfg.arrival_delay.as_millis() as u64,
        }
    }

    fn refcount(&self, hash: &Hash) -> u64 {
        be(self.db.get(self.rc, hash.as_bytes()).ok().flatten())
    }

    /// Per object partition, how many object versions keep `hash` here
    /// beside their items (empty if none ever did, or no longer since its
    /// file went).
    fn attached_counts(&self, hash: &Hash) -> Vec<(u8, u64)> {
        let start = hash.as_bytes().to_vec();
        let mut end = start.clone();
        end.push(u8::MAX);
        end.push(u8::MAX);
        use std::ops::Bound;
        self.db
            .range(
                self.attached,
                Bound::Included(&start[..]),
                Bound::Excluded(&end[..]),
                false,
                256,
            )
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| Some((*k.get(32)?, be(Some(v)))))
            .collect()
    }

    /// Drop the note that `hash` was kept beside the items of
    /// `partition` (all partitions: None), unless an item took it again
    /// meanwhile.
    fn forget_attached(&self, hash: &Hash, partition: Option<u8>) -> Result<(), BlockError> {
        let tree = self.attached;
        let parts: Vec<u8> = match partition {
            Some(p) => vec![p],
            None => self
                .attached_counts(hash)
                .into_iter()
                .map(|e| e.0)
                .collect(),
        };
        self.db.transaction(&[tree], &mut |tx| {
            for p in &parts {
                let key = attached_key(hash, *p);
                let cur = tx.get(tree, &key)?;
                if cur.is_some() && be(cur) == 0 {
                    tx.remove(tree, &key)?;
                }
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Queue a resync check of `hash` at `due_ms`.
    pub(crate) fn enqueue(&self, hash: &Hash, due_ms: u64) {
        self.enqueue_attempt(hash, due_ms, 0)
    }

    /// Queue a check that already failed `attempts` times (kept in the
    /// entry, for backoff).
    fn enqueue_attempt(&self, hash: &Hash, due_ms: u64, attempts: u32) {
        if let Err(e) = self.db.insert(
            self.resync_queue,
            &queue_key(due_ms, hash),
            &attempts.to_be_bytes(),
        ) {
            tracing::warn!("cannot queue block {hash} for resync: {e}");
        }
    }

    /// Store a block received from a peer or a local upload (hashed by
    /// this node or by the sending peer: see [`BlockStore::write_hashed`]).
    pub(crate) fn write_local(
        &self,
        hash: &Hash,
        data: &[u8],
        cache: Cache,
    ) -> Result<(), StoreError> {
        let fresh = !self.store.has(hash);
        self.store.write_hashed(hash, data, cache)?;
        if fresh && self.refcount(hash) == 0 {
            // Uploads write blocks before their references: check back
            // after the grace delay, and delete it if still unreferenced.
            self.enqueue(
                hash,
                now_msec() + self.cfg.unreferenced_grace.as_millis() as u64,
            );
        }
        Ok(())
    }

    async fn put_to(&self, node: NodeId, hash: Hash, data: Bytes) -> Result<(), CallError> {
        if node == self.net.id {
            return crate::worker::blocking(|| self.write_local(&hash, &data, Cache::Keep))
                .map_err(|e| CallError::Refused {
                    node,
                    error: RpcError::Block(e.to_string()),
                });
        }
        self.net
            .call(
                node,
                Channel::Bulk,
                "block_put",
                self.cfg.op_timeout,
                |c, ctx| async move { c.block_put(ctx, hash, data).await },
            )
            .await
    }

    /// Store a block on its replicas: returns once every live layout
    /// version has a write quorum of copies; the rest continue.
    pub(crate) async fn put(self: &Arc<Self>, hash: Hash, data: Bytes) -> Result<(), BlockError> {
        self.put_in(block_partition(&hash), hash, data).await
    }

    /// [`BlockManager::put`] on the nodes of partition `p` (an object's,
    /// for a block kept beside its item).
    pub(crate) async fn put_in(
        self: &Arc<Self>,
        p: usize,
        hash: Hash,
        data: Bytes,
    ) -> Result<(), BlockError> {
        let layout = self.layout.snapshot();
        let sets: Vec<Vec<NodeId>> = layout
            .write_sets(p)
            .into_iter()
            .map(|s| s.to_vec())
            .collect();
        if sets.iter().any(|s| s.is_empty()) {
            return Err(BlockError::NoLayout);
        }
        let needed = write_quorum(layout.replication_factor);
        let mut nodes: Vec<NodeId> = sets.iter().flatten().copied().collect();
        nodes.sort();
        nodes.dedup();
        // Known to fall short: write nothing (a copy on the one node up
        // would only take room until the sweep of unreferenced blocks).
        if let Some(s) = crate::net::shortfall(&sets, needed, |n| self.net.connected(n)) {
            return Err(BlockError::Away {
                hash,
                connected: s.connected,
                needed: s.needed,
                away: s.away,
            });
        }
        let (tx, mut rx) = mpsc::channel(nodes.len());
        for node in nodes {
            let me = self.clone();
            let tx = tx.clone();
            let data = data.clone();
            tokio::spawn(async move {
                let r = me.put_to(node, hash, data).await;
                let _ = tx.send((node, r)).await;
            });
        }
        drop(tx);
        let mut ok: Vec<NodeId> = Vec::new();
        let mut errors = Vec::new();
        let satisfied = |ok: &[NodeId]| {
            sets.iter()
                .all(|s| s.iter().filter(|n| ok.contains(n)).count() >= needed.min(s.len()))
        };
        while !satisfied(&ok) {
            match rx.recv().await {
                Some((n, Ok(()))) => ok.push(n),
                Some((_, Err(e))) => errors.push(e),
                None => break,
            }
        }
        if satisfied(&ok) {
            Ok(())
        } else {
            Err(BlockError::Quorum {
                hash,
                ok: ok.len(),
                needed,
                errors: CallErrors(errors),
            })
        }
    }

    async fn get_from(&self, node: NodeId, hash: Hash) -> Result<Bytes, CallError> {
        let missing = || CallError::Refused {
            node,
            error: RpcError::Block("does not have the block".into()),
        };
        if node == self.net.id {
            return match crate::worker::blocking(|| self.store.read(&hash)) {
                Ok(Some(b)) => Ok(b),
                Ok(None) => Err(missing()),
                Err(e) => Err(CallError::Refused {
                    node,
                    error: RpcError::Block(e.to_string()),
                }),
            };
        }
        let data = self
            .net
            .call(
                node,
                Channel::Bulk,
                "block_get",
                self.cfg.op_timeout * 3,
                |c, ctx| async move { c.block_get(ctx, hash).await },
            )
            .await?
            .ok_or_else(missing)?;
        // Never trust a peer's bytes blindly.
        if Hash::of(&data) != hash {
            return Err(CallError::Protocol {
                node,
                reason: "sent a corrupted copy of a block".into(),
            });
        }
        Ok(data)
    }

    /// Nodes of partition `p` to read a block from, best first: this
    /// node, then peers by observed round-trip time; nodes of older live
    /// versions last.
    fn read_order(&self, p: usize) -> Vec<NodeId> {
        let layout = self.layout.snapshot();
        let mut nodes = layout.all_nodes_of(p);
        let me = self.net.id;
        nodes.sort_by_key(|n| {
            let local = *n != me;
            let down = !self.net.is_up(n);
            let rtt = self.net.rtt(n).unwrap_or(Duration::from_secs(1));
            (local, down, rtt)
        });
        nodes
    }

    /// Read a block, hedging across replicas: if the current attempt has
    /// not answered within a delay derived from that node's round-trip time,
    /// the next replica is asked too, and the first good answer wins.
    pub(crate) async fn get(self: &Arc<Self>, hash: Hash) -> Result<Bytes, BlockError> {
        self.get_in(block_partition(&hash), hash).await
    }

    /// A block kept beside its object's item, read from the nodes of the
    /// object's partition `p`; failing that (a layout change under way),
    /// from any node that has it.
    pub(crate) async fn get_attached(
        self: &Arc<Self>,
        p: usize,
        hash: Hash,
    ) -> Result<Bytes, BlockError> {
        match self.get_in(p, hash).await {
            Ok(b) => Ok(b),
            Err(e) => self.get_anywhere(hash).await.ok_or(e),
        }
    }

    /// [`BlockManager::get`] from the nodes of partition `p`.
    async fn get_in(self: &Arc<Self>, p: usize, hash: Hash) -> Result<Bytes, BlockError> {
        let order = self.read_order(p);
        if order.is_empty() {
            return Err(BlockError::NoLayout);
        }
        let (tx, mut rx) = mpsc::channel(order.len());
        let mut errors = Vec::new();
        let mut launched = 0;
        let mut finished = 0;
        for node in order.iter().copied() {
            let me = self.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let r = me.get_from(node, hash).await;
                let _ = tx.send(r).await;
            });
            launched += 1;
            // Time to wait before asking the next replica as well.
            let rtt = self.net.rtt(&node).unwrap_or(Duration::from_millis(100));
            let hedge = (rtt * 8 + Duration::from_millis(300)).min(Duration::from_secs(3));
            let deadline = tokio::time::sleep(hedge);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    r = rx.recv() => match r {
                        Some(Ok(b)) => return Ok(b),
                        Some(Err(e)) => {
                            errors.push(e);
                            finished += 1;
                            if finished == launched {
                                break; // all asked so far failed: next one now
                            }
                        }
                        None => break,
                    },
                    _ = &mut deadline => break,
                }
            }
        }
        drop(tx);
        while finished < launched {
            match rx.recv().await {
                Some(Ok(b)) => return Ok(b),
                Some(Err(e)) => {
                    errors.push(e);
                    finished += 1;
                }
                None => break,
            }
        }
        Err(BlockError::Unavailable {
            hash,
            errors: CallErrors(errors),
        })
    }

    /// Ask every node that is up for a block, one after the other: the
    /// last resort of a resync when the listed replicas lack it.
    async fn get_anywhere(&self, hash: Hash) -> Option<Bytes> {
        let me = self.net.id;
        for (id, info) in self.net.peers() {
            if id == me || !info.up {
                continue;
            }
            if let Ok(b) = self.get_from(id, hash).await {
                return Some(b);
            }
        }
        None
    }

    pub(crate) fn stats(&self) -> BlockStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
