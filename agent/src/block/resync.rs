//! The resync worker: make this node's block files match what it should
//! hold.
//!
//! It takes due entries from the persistent `block_resync` queue (filled by
//! reference-count changes, fresh unreferenced writes, layout changes and
//! scrubs) and for each block decides:
//!
//! - referenced, this node holds its partition, file missing: fetch it from
//!   another replica;
//! - this node no longer holds its partition (layout change): give it to
//!   the nodes that do (each must confirm), then delete the local copy;
//! - nobody references it and the grace delay has passed: delete it.
//!
//! A block kept beside object items (`block_attached`) is held by this
//! node while they are, whatever its hash's partition. Once they are gone
//! it is deleted like an unreferenced block, never handed to its hash's
//! nodes (they have no use for it); but if they went because their
//! partition moved to other nodes, it is first given to those (each must
//! confirm), as any block is after a layout change.
//!
//! Failures are re-queued with a delay (backoff), so a missing replica is
//! retried without spinning. Progress is counted in `BlockStats` and logged.

use std::sync::Arc;
use std::time::Duration;

use hangar_common::crdt::now_msec;
use hangar_common::hash::Hash;
use tracing::{debug, info, warn};

use super::{BlockError, BlockManager, block_partition};

/// Entries handled per batch.
const BATCH: usize = 64;
/// Delay before checking again a block that must wait (a data move in
/// progress).
const RETRY: Duration = Duration::from_secs(5);
/// Longest delay between two attempts on a failing block.
const MAX_RETRY: Duration = Duration::from_secs(600);

/// Exponential backoff: 5 s, 10 s, 20 s... up to 10 minutes, so a block
/// that no replica can give right now is retried without spinning.
fn retry_delay(attempts: u32) -> Duration {
    RETRY
        .saturating_mul(1u32 << attempts.min(16))
        .min(MAX_RETRY)
}

/// The pause after counting the resync queue, given how long counting took.
fn count_pause(took: Duration) -> Duration {
    took.saturating_mul(50).max(Duration::from_secs(5))
}

impl BlockManager {
    /// Count the resync queue every few seconds, for progress figures.
    /// Counting walks the queue, so the pause after a count is at least 50
    /// times what it took: a queue of millions of blocks (a big layout
    /// change) costs at most 2 % of a core, counted less often.
    pub async fn count_queue_loop(self: Arc<Self>) {
        loop {
            let me = self.clone();
            let start = std::time::Instant::now();
            if let Ok(Ok(n)) = tokio::task::spawn_blocking(move || me.db.len(me.resync_queue)).await
            {
                self.stats
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .resync_queue = n as u64;
            }
            tokio::time::sleep(count_pause(start.elapsed())).await;
        }
    }

    pub async fn resync_loop(self: Arc<Self>) {
        let state =
            |l: &hangar_common::layout::cluster::ClusterLayout| (l.version, l.live_versions());
        let mut last = state(&self.layout.snapshot());
        loop {
            // A new layout version, or the end of a data move: every local
            // block may have to move (hand-over waits for the end of the
            // move, when older versions are retired).
            let l = self.layout.snapshot();
            let v = l.version;
            if state(&l) != last {
                last = state(&l);
                let me = self.clone();
                let n = tokio::task::spawn_blocking(move || {
                    let all = me.store.list();
                    let now = now_msec();
                    for h in &all {
                        me.enqueue(h, now);
                    }
                    all.len()
                })
                .await
                .unwrap_or(0);
                info!("layout version {v}: {n} local block(s) queued for a placement check");
            }
            self.cfg.workers.gate(crate::worker::RESYNC).await;
            match self.resync_batch().await {
                Ok(0) => tokio::time::sleep(Duration::from_millis(500)).await,
                Ok(_) => {}
                Err(e) => {
                    warn!("block resync: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Handle due queue entries; returns how many.
    async fn resync_batch(self: &Arc<Self>) -> Result<usize, BlockError> {
        use std::ops::Bound;
        let now = now_msec();
        let end = now.saturating_add(1).to_be_bytes();
        let due = self.db.range(
            self.resync_queue,
            Bound::Unbounded,
            Bound::Excluded(&end[..]),
            false,
            BATCH,
        )?;
        if !due.is_empty() {
            debug!("block resync: {} due entries", due.len());
        }
        for (key, value) in &due {
            // How many times this block failed already (the entry's value).
            let attempts = value
                .get(..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes)
                .unwrap_or(0);
            let Some(hash) = key
                .get(8..40)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .map(Hash)
            else {
                let _ = self.db.remove(self.resync_queue, key);
                continue;
            };
            if let Err(e) = self.resync_one(hash).await {
                let delay = retry_delay(attempts);
                debug!(
                    "block {hash}: resync failed ({} time(s)), retrying in {delay:?}: {e}",
                    attempts + 1
                );
                self.stats.lock().unwrap_or_else(|p| p.into_inner()).errors += 1;
                self.enqueue_attempt(&hash, now_msec() + delay.as_millis() as u64, attempts + 1);
            }
            self.db.remove(self.resync_queue, key)?;
        }
        Ok(due.len())
    }

    async fn resync_one(self: &Arc<Self>, hash: Hash) -> Result<(), BlockError> {
        let layout = self.layout.snapshot();
        if layout.version == 0 {
            return Ok(());
        }
        let p = block_partition(&hash);
        let me = self.net.id;
        let home = layout.all_nodes_of(p).contains(&me);
        let attached = self.attached_counts(&hash);
        let beside_items = attached.iter().any(|(_, n)| *n > 0);
        let holds = home || beside_items;
        let referenced = self.refcount(&hash) > 0;
        let present = self.store.has(&hash);
        debug!(
            "block {hash}: holds {holds} (attached {attached:?}), referenced {referenced}, present {present}"
        );
        match (holds, referenced, present) {
            (true, true, false) => {
                // The replicas first; then every node that is up, since
                // after a layout change the copy may still sit on a former
                // owner that is no longer listed for this partition (and a
                // block kept beside items is on their nodes, not its own).
                let data = if home {
                    match self.get(hash).await {
                        Ok(d) => d,
                        Err(e) => self.get_anywhere(hash).await.ok_or(e)?,
                    }
                } else {
                    self.get_anywhere(hash)
                        .await
                        .ok_or(BlockError::Unavailable {
                            hash,
                            errors: crate::net::CallErrors(Vec::new()),
                        })?
                };
                self.store.write(&hash, &data)?;
                self.stats.lock().unwrap_or_else(|p| p.into_inner()).fetched += 1;
                debug!("block {hash}: fetched from a replica");
            }
            (_, false, true) if !attached.is_empty() => {
                // Kept for items that are gone. Those of a partition this
                // node no longer holds moved: their new holders get the
                // block (they fetch it too, but this copy may be the last).
                for (part, _) in &attached {
                    let holders = layout.nodes_of(*part as usize);
                    if holders.contains(&me) {
                        continue;
                    }
                    if layout.in_transition() {
                        self.enqueue(&hash, now_msec() + RETRY.as_millis() as u64);
                        return Ok(());
                    }
                    let Ok(Some(data)) = self.store.read(&hash) else {
                        return Ok(());
                    };
                    for node in holders {
                        self.put_to(*node, hash, data.clone()).await?;
                    }
                    self.forget_attached(&hash, Some(*part))?;
                    self.stats
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .handed_over += 1;
                }
                self.delete_unreferenced(hash)?
            }
            (false, _, true) if layout.in_transition() => {
                // Hand over once the move is settled; check back later.
                self.enqueue(&hash, now_msec() + RETRY.as_millis() as u64);
            }
            (false, _, true) => {
                // Hand over: every current holder must confirm a copy.
                let data = match self.store.read(&hash) {
                    Ok(Some(d)) => d,
                    _ => return Ok(()),
                };
                for node in layout.nodes_of(p) {
                    self.put_to(*node, hash, data.clone()).await?;
                }
                self.store
                    .delete(&hash)
                    .map_err(|source| BlockError::Delete { hash, source })?;
                self.stats
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .handed_over += 1;
            }
            (true, false, true) => self.delete_unreferenced(hash)?,
            _ => {}
        }
        Ok(())
    }

    /// Delete a block nobody references once its grace delay is over. The
    /// queue entry for that was set when it lost its references or was
    /// written; an early entry (a fetch check) lands here too, so look at
    /// the file's age.
    fn delete_unreferenced(&self, hash: Hash) -> Result<(), BlockError> {
        let old_enough = self
            .store
            .file_of(&hash)
            .and_then(|p| std::fs::metadata(p).ok())
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= self.cfg.unreferenced_grace);
        if old_enough {
            self.store
                .delete(&hash)
                .map_err(|source| BlockError::Delete { hash, source })?;
            self.forget_attached(&hash, None)?;
            self.stats.lock().unwrap_or_else(|p| p.into_inner()).deleted += 1;
        } else {
            self.enqueue(
                &hash,
                now_msec() + self.cfg.unreferenced_grace.as_millis() as u64,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_ten_minutes() {
        assert_eq!(retry_delay(0), Duration::from_secs(5));
        assert_eq!(retry_delay(1), Duration::from_secs(10));
        assert_eq!(retry_delay(3), Duration::from_secs(40));
        assert_eq!(retry_delay(7), MAX_RETRY);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY);
    }

    #[test]
    fn counting_the_queue_takes_at_most_a_fiftieth_of_the_time() {
        assert_eq!(
            count_pause(Duration::from_millis(2)),
            Duration::from_secs(5)
        );
        assert_eq!(count_pause(Duration::from_secs(1)), Duration::from_secs(50));
        assert_eq!(count_pause(Duration::MAX), Duration::MAX);
    }
}
