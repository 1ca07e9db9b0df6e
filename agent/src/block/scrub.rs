//! The scrub worker: read every local block, check it against its hash,
//! and have the resync worker fetch a good copy of any that fails. A good
//! block that is not in the data directory it belongs in (see
//! `store.rs`) is moved there on the way.
//!
//! A pass also starts right away when the data directories changed since
//! the last one (a disk added, a capacity changed, one made read-only), so
//! blocks spread over the new set without the operator asking.
//!
//! Runs every `scrub_interval` and on demand (`hangar repair scrub`),
//! pausing between blocks so it never starves requests of disk bandwidth.
//! Its position is persisted, so a restart resumes where it stopped.

use std::sync::Arc;
use std::time::Duration;

use hangar_common::crdt::now_msec;
use hangar_common::hash::Hash;
use tracing::{info, warn};

use super::BlockManager;

const CURSOR: &[u8] = b"cursor";
const LAST_DONE: &[u8] = b"last_done_ms";
/// The data directories the last pass ran with.
const DIRS: &[u8] = b"data_dirs";

impl BlockManager {
    /// Ask for a scrub pass now.
    pub(crate) fn start_scrub(&self) {
        self.scrub_now.notify_one();
    }

    pub async fn scrub_loop(self: Arc<Self>, interval: Duration, pause: Duration) {
        let dirs = self.store.fingerprint();
        let known = self.db.get(self.scrub_state, DIRS).ok().flatten();
        let mut dirs_changed = known.is_some_and(|k| k != dirs.as_bytes());
        if let Err(e) = self.db.insert(self.scrub_state, DIRS, dirs.as_bytes()) {
            warn!("scrub: cannot record the data directories: {e}");
        }
        loop {
            let last = self
                .db
                .get(self.scrub_state, LAST_DONE)
                .ok()
                .flatten()
                .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            let resuming = self
                .db
                .get(self.scrub_state, CURSOR)
                .ok()
                .flatten()
                .is_some();
            let due_in = Duration::from_millis(
                (last + interval.as_millis() as u64).saturating_sub(now_msec()),
            );
            if dirs_changed {
                info!("scrub: the data directories changed; spreading blocks over them now");
                dirs_changed = false;
            } else if !resuming {
                tokio::select! {
                    _ = tokio::time::sleep(due_in) => {}
                    _ = self.scrub_now.notified() => {}
                }
            }
            self.scrub_pass(pause).await;
        }
    }

    async fn scrub_pass(self: &Arc<Self>, pause: Duration) {
        let me = self.clone();
        let mut all = tokio::task::spawn_blocking(move || me.store.list())
            .await
            .unwrap_or_default();
        all.sort();
        let cursor = self
            .db
            .get(self.scrub_state, CURSOR)
            .ok()
            .flatten()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .map(Hash);
        let todo: Vec<Hash> = all
            .into_iter()
            .filter(|h| cursor.is_none_or(|c| *h > c))
            .collect();
        {
            let mut st = self.stats.lock().unwrap_or_else(|p| p.into_inner());
            st.scrub_running = true;
            st.scrub_checked = 0;
            st.scrub_total = todo.len() as u64;
        }
        info!("scrub: checking {} block(s)", todo.len());
        let mut bad = 0;
        for (i, hash) in todo.iter().enumerate() {
            self.cfg.workers.gate(crate::worker::SCRUB).await;
            let me = self.clone();
            let h = *hash;
            let ok = tokio::task::spawn_blocking(move || me.store.verify(&h)).await;
            match ok {
                Ok(Ok(true)) => self.relocate(*hash).await,
                Ok(Ok(false)) => {
                    bad += 1;
                    self.stats
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .scrub_corrupted += 1;
                    // The bad copy was moved aside; resync fetches a good one.
                    self.enqueue(hash, now_msec());
                }
                Ok(Err(e)) => warn!("scrub: {e}"),
                Err(e) => warn!("scrub: check task failed: {e}"),
            }
            self.stats
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .scrub_checked += 1;
            if i % 64 == 63 {
                let _ = self.db.insert(self.scrub_state, CURSOR, hash.as_bytes());
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        let _ = self.db.remove(self.scrub_state, CURSOR);
        let _ = self
            .db
            .insert(self.scrub_state, LAST_DONE, &now_msec().to_be_bytes());
        self.stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .scrub_running = false;
        let moved = self.stats().scrub_moved;
        info!(
            "scrub: done, {} block(s) checked, {bad} corrupted (being refetched), {moved} moved to their data directory so far",
            todo.len()
        );
    }

    /// Move a block to the data directory it belongs in, if elsewhere.
    async fn relocate(self: &Arc<Self>, hash: Hash) {
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.store.relocate(&hash)).await {
            Ok(Ok(true)) => {
                self.stats
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .scrub_moved += 1;
                if self.refcount(&hash) == 0 {
                    // Deleted meanwhile, maybe: check it again later.
                    self.enqueue(
                        &hash,
                        now_msec() + self.cfg.unreferenced_grace.as_millis() as u64,
                    );
                }
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => warn!("scrub: cannot move block {hash}: {e}"),
            Err(e) => warn!("scrub: move task failed: {e}"),
        }
    }
}
