//! Garbage collection of tombstones.
//!
//! A deleted item stays as a tombstone so that a replica that missed the
//! deletion cannot bring the item back through anti-entropy. A tombstone can
//! go once every replica of its partition holds it: then no replica has an
//! older version to resurrect it with. So, after a grace delay (writes in
//! flight when it was made have landed), the collector:
//!
//! 1. pushes the tombstone to *every* replica, and stops unless all
//!    acknowledge (a node that is down blocks collection, by design);
//! 2. asks every replica to delete the item if it is still exactly that
//!    tombstone (a newer write in the meantime is kept).
//!
//! Every replica queues its tombstones and may run this; doing it twice is
//! harmless.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hangar_common::hash::Hash;
use hangar_common::rpc::TableOp;
use tracing::{debug, info, warn};

use super::data::GcTodo;
use super::{Bug, Table, TableError, TableSchema};
use hangar_common::NodeId;

/// A tombstone ready for collection: storage key, raw queue entry,
/// tombstone encoding, hash of that encoding.
type Candidate = (Vec<u8>, Vec<u8>, Vec<u8>, Hash);

/// Tombstones examined per round.
const GC_BATCH: usize = 1000;

impl<S: TableSchema> Table<S> {
    pub(super) async fn gc_loop(self: Arc<Self>) {
        // Check often enough to collect soon after the delay, never more
        // than every second nor less than every minute.
        let period = (self.cfg.gc_delay / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            tokio::time::sleep(period).await;
            match self.gc_round().await {
                Ok(0) => {}
                Ok(n) => info!("{}: collected {n} tombstone(s)", S::NAME),
                Err(e) => warn!("{}: tombstone collection failed: {e}", S::NAME),
            }
        }
    }

    /// One pass over the queue; returns how many tombstones were collected.
    pub async fn gc_round(&self) -> Result<usize, TableError> {
        use std::ops::Bound;
        let entries = self.data.db.range(
            self.data.gc_todo,
            Bound::Unbounded,
            Bound::Unbounded,
            false,
            GC_BATCH,
        )?;
        let now = (self.data.now_ms)();
        let delay = self.cfg.gc_delay.as_millis() as u64;
        let layout = self.layout.snapshot();
        let mut by_partition: BTreeMap<usize, Vec<Candidate>> = BTreeMap::new();
        for (key, raw) in entries {
            let Ok(todo) = rmp_serde::from_slice::<GcTodo>(&raw) else {
                // Unreadable entry: drop it rather than block the queue.
                self.data.gc_todo_done(&key, &raw)?;
                continue;
            };
            if now.saturating_sub(todo.since_ms) < delay {
                continue;
            }
            let current = self.data.get_raw(&key)?;
            match current {
                Some(bytes) if Hash::of(&bytes) == todo.value_hash => {
                    let p = key.first().copied().unwrap_or(0) as usize;
                    by_partition
                        .entry(p)
                        .or_default()
                        .push((key, raw, bytes, todo.value_hash));
                }
                // Overwritten or already gone: nothing to collect here.
                _ => self.data.gc_todo_done(&key, &raw)?,
            }
        }
        let mut collected = 0;
        for (p, batch) in by_partition {
            let nodes = layout.all_nodes_of(p);
            if nodes.is_empty() {
                continue;
            }
            if let Some(down) = nodes.iter().find(|n| !self.net.is_up(n)) {
                debug!(
                    "{}: partition {p}: tombstone collection waits for node {}",
                    S::NAME,
                    down.short()
                );
                self.sync_state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .gc_blocked += batch.len() as u64;
                continue;
            }
            let items: Vec<Vec<u8>> = batch.iter().map(|(_, _, b, _)| b.clone()).collect();
            let mut all_hold = true;
            let nodes_to_give: &[NodeId] = if self.has_bug(Bug::GcWithoutHandover) {
                &[]
            } else {
                &nodes
            };
            for n in nodes_to_give {
                if let Err(e) = self.call(*n, TableOp::Update(items.clone())).await {
                    debug!(
                        "{}: partition {p}: cannot give tombstones to {}: {e}",
                        S::NAME,
                        n.short()
                    );
                    all_hold = false;
                    break;
                }
            }
            if !all_hold {
                continue;
            }
            let entries: Vec<(Vec<u8>, Hash)> =
                batch.iter().map(|(k, _, _, h)| (k.clone(), *h)).collect();
            for n in &nodes {
                if let Err(e) = self.call(*n, TableOp::DeleteIfEqual(entries.clone())).await {
                    debug!(
                        "{}: partition {p}: delete on {} failed: {e}",
                        S::NAME,
                        n.short()
                    );
                }
            }
            for (k, raw, _, _) in &batch {
                self.data.gc_todo_done(k, raw)?;
            }
            collected += batch.len();
        }
        self.sync_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .gc_collected += collected as u64;
        Ok(collected)
    }
}
