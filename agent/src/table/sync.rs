//! Anti-entropy: make every replica of a partition hold every item.
//!
//! Each node, for each partition it holds and each other replica of it:
//! fetches the other's 256 partition sums (see `merkle.rs`) in one call;
//! for a partition whose sums differ, fetches its 256 group sums, then the
//! items (key, value hash) of the groups whose sums differ, up to 32
//! groups per call, and pushes the local items the other side lacks or
//! holds in another version. Each side pushes what it has, so after both
//! have run (or after one has run twice, as items pushed to it come back
//! in its own sums), the replicas are equal. A differing partition costs
//! one request for its groups and one per 32 differing groups.
//!
//! Runs every `sync_interval`, and right away when a peer comes up (it may
//! have missed writes while it was away).

use std::collections::BTreeSet;
use std::sync::Arc;

use hangar_common::NodeId;
use hangar_common::hash::Hash;
use hangar_common::rpc::{TableOp, TableResponse};
use tracing::{debug, info};

use super::merkle::MerkleNode;
use super::{Bug, Table, TableSchema};
use crate::net::CallError;

/// Items pushed per call.
const PUSH_BATCH: usize = 64;

/// Groups whose items are listed per call: one listing reads the whole
/// partition on each side, so a partition that differs everywhere (a node
/// back after a long absence) costs 8 passes, each answer about 1/8 of
/// the partition's keys.
const GROUPS_PER_LISTING: usize = 32;

impl<S: TableSchema> Table<S> {
    pub(super) async fn sync_loop(self: Arc<Self>) {
        let mut up = self.net.subscribe_up();
        let mut tick = tokio::time::interval(self.cfg.sync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let only: Option<NodeId> = tokio::select! {
                _ = tick.tick() => None,
                // A missed event (lagged channel) means: sync with everyone.
                r = up.recv() => r.ok(),
            };
            self.cfg.workers.gate(crate::worker::TABLE_SYNC).await;
            self.sync_round(only).await;
        }
    }

    /// Compare every held partition with its other replicas (or only with
    /// `only`) and push differences. Returns whether a full round (not
    /// `only`) reached every current replica of every held partition.
    pub(crate) async fn sync_round(&self, only: Option<NodeId>) -> bool {
        let layout = self.layout.snapshot();
        if layout.assignment.is_empty() {
            return false;
        }
        // Bring the local Merkle trees up to date first: a change not yet
        // in them would not be compared (bounded, in case of a flood).
        for _ in 0..256 {
            match crate::worker::blocking(|| self.data.update_merkle(256)) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
        let me = self.net.id();
        let held = self.held_partitions();
        let peers: BTreeSet<NodeId> = held
            .iter()
            .flat_map(|p| layout.all_nodes_of(*p))
            .filter(|n| *n != me && only.is_none_or(|o| o == *n))
            .collect();
        let mut failed: BTreeSet<(usize, NodeId)> = BTreeSet::new();
        let mut pushed_total = 0;
        for peer in &peers {
            let remote_roots = match self.call(*peer, TableOp::MerkleRoots).await {
                Ok(TableResponse::Roots(r)) if r.len() == hangar_common::layout::PARTITIONS => r,
                Ok(_) => {
                    debug!(
                        "{}: unexpected answer to MerkleRoots from {}",
                        S::NAME,
                        peer.short()
                    );
                    held.iter().for_each(|p| {
                        failed.insert((*p, *peer));
                    });
                    continue;
                }
                Err(e) => {
                    debug!("{}: cannot sync with {}: {e}", S::NAME, peer.short());
                    held.iter().for_each(|p| {
                        failed.insert((*p, *peer));
                    });
                    continue;
                }
            };
            for &p in &held {
                if !layout.all_nodes_of(p).contains(peer) {
                    continue;
                }
                let local_root = self
                    .data
                    .merkle
                    .root(&self.data.db, p as u8)
                    .unwrap_or_default();
                if local_root == remote_roots[p] {
                    continue;
                }
                match self.sync_partition(p, *peer).await {
                    Ok(n) => pushed_total += n,
                    Err(e) => {
                        debug!(
                            "{}: sync of partition {p} with {} failed: {e}",
                            S::NAME,
                            peer.short()
                        );
                        failed.insert((p, *peer));
                    }
                }
            }
        }
        let now = (self.data.now_ms)();
        let mut st = self.sync_state.lock().unwrap_or_else(|p| p.into_inner());
        st.items_pushed += pushed_total as u64;
        // Complete, for a transition: every held partition reached a write
        // quorum of its replicas in the current version (this node counts
        // if it is one). Enough: ending the transition needs a read quorum
        // of each old replica set to have synced, one of which holds any
        // acknowledged write (read and write quorums overlap), and it put
        // that write on a write quorum of the new set, where every read
        // quorum finds it, just as after a normal write. A replica that is
        // down thus does not hold the move; anti-entropy completes it later.
        let wq = hangar_common::layout::cluster::write_quorum(layout.replication_factor);
        let mut complete = only.is_none();
        if only.is_none() {
            for &p in &held {
                let all_ok = layout
                    .all_nodes_of(p)
                    .iter()
                    .filter(|n| **n != me)
                    .all(|n| !failed.contains(&(p, *n)));
                if all_ok {
                    st.last_full_sync_ms.insert(p, now);
                }
                let set = layout.nodes_of(p);
                let reached = set
                    .iter()
                    .filter(|n| **n == me || !failed.contains(&(p, **n)))
                    .count();
                complete &= reached >= wq.min(set.len());
            }
        }
        drop(st);
        if pushed_total > 0 {
            info!(
                "{}: anti-entropy pushed {pushed_total} item(s) to other replicas",
                S::NAME
            );
        }
        complete
    }

    /// Compare one partition's group sums with `peer`'s, list the items of
    /// the groups that differ on both sides, and push what differs.
    /// Returns the number of items pushed.
    async fn sync_partition(&self, partition: usize, peer: NodeId) -> Result<usize, CallError> {
        let p = partition as u8;
        let unusable = |reason: String| CallError::Protocol { node: peer, reason };
        let (MerkleNode::Sums(mine), MerkleNode::Sums(theirs)) = (
            self.local_children(peer, vec![p])?,
            self.remote_children(peer, vec![p]).await?,
        ) else {
            return Err(unusable(format!(
                "sent leaves for partition {p}'s group sums"
            )));
        };
        // Both sorted by group. Groups only the peer has hold nothing to
        // push from here (the peer's own sync pushes them).
        let differing: Vec<u8> = mine
            .into_iter()
            .filter(|(g, sum)| {
                theirs
                    .binary_search_by_key(g, |(b, _)| *b)
                    .map_or(true, |i| theirs[i].1 != *sum)
            })
            .map(|(g, _)| g)
            .collect();
        let mut pushed = 0;
        for groups in differing.chunks(GROUPS_PER_LISTING) {
            let path: Vec<u8> = std::iter::once(p).chain(groups.iter().copied()).collect();
            let (MerkleNode::Leaves(mine), MerkleNode::Leaves(theirs)) = (
                self.local_children(peer, path.clone())?,
                self.remote_children(peer, path).await?,
            ) else {
                return Err(unusable(format!(
                    "sent sums for the items of partition {p}'s groups"
                )));
            };
            let theirs: std::collections::HashSet<(Vec<u8>, Hash)> = theirs.into_iter().collect();
            let to_push: Vec<Vec<u8>> = mine
                .into_iter()
                .filter(|leaf| !theirs.contains(leaf))
                .map(|(key, _)| key)
                .collect();
            for keys in to_push.chunks(PUSH_BATCH) {
                pushed += self.push(peer, keys.to_vec()).await?;
            }
        }
        Ok(pushed)
    }

    fn local_children(&self, peer: NodeId, path: Vec<u8>) -> Result<MerkleNode, CallError> {
        let data = &self.data;
        crate::worker::blocking(|| data.merkle.children(&data.db, &path))
            .map_err(|e| local_error(peer, e))
    }

    async fn remote_children(&self, peer: NodeId, path: Vec<u8>) -> Result<MerkleNode, CallError> {
        let unusable = |reason: String| CallError::Protocol { node: peer, reason };
        match self.call(peer, TableOp::MerkleChildren(path)).await? {
            TableResponse::Node(b) => MerkleNode::decode(&b)
                .map_err(|e| unusable(format!("sent an undecodable Merkle node: {e}"))),
            _ => Err(unusable("unexpected answer to MerkleChildren".into())),
        }
    }

    async fn push(&self, peer: NodeId, keys: Vec<Vec<u8>>) -> Result<usize, CallError> {
        let mut items = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(b) = self.data.get_raw(&k).map_err(|e| local_error(peer, e))? {
                items.push(b);
            }
        }
        if self.has_bug(Bug::SyncPushesNothing) {
            items.clear();
        }
        let n = items.len();
        if n > 0 {
            self.call(peer, TableOp::Update(items)).await?;
        }
        Ok(n)
    }
}

/// This node's own storage failed while syncing with `peer`: reported as
/// a failed sync with that peer, naming the cause.
fn local_error(peer: NodeId, e: impl std::fmt::Display) -> CallError {
    CallError::Protocol {
        node: peer,
        reason: format!("this node's replica could not be read: {e}"),
    }
}
