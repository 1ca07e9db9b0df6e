//! Pausing and resuming background workers, for operators.
//!
//! Each long-running worker (block resync, scrub, version cleanup, table
//! anti-entropy) registers a name here and calls [`Workers::gate`] between
//! units of work; `hangar worker pause NAME` makes that call wait until
//! `hangar worker resume NAME`. Pausing never interrupts a unit of work in
//! the middle, so nothing is left half done.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::watch;

/// Worker names, as the CLI shows them.
pub const RESYNC: &str = "block-resync";
pub const SCRUB: &str = "block-scrub";
pub const VERSION_GC: &str = "version-cleanup";
pub const TABLE_SYNC: &str = "table-sync";
pub const LIFECYCLE: &str = "lifecycle";
pub const ALL: &[&str] = &[RESYNC, SCRUB, VERSION_GC, TABLE_SYNC, LIFECYCLE];

#[derive(Debug)]
pub struct Workers {
    paused: Mutex<BTreeMap<&'static str, watch::Sender<bool>>>,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            paused: Mutex::new(ALL.iter().map(|n| (*n, watch::channel(false).0)).collect()),
        }
    }
}

impl Workers {
    fn sender(&self, name: &str) -> Option<watch::Sender<bool>> {
        self.paused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Wait while worker `name` is paused.
    pub(crate) async fn gate(&self, name: &str) {
        let Some(tx) = self.sender(name) else { return };
        let mut rx = tx.subscribe();
        let _ = rx.wait_for(|paused| !paused).await;
    }

    /// Pause or resume a worker; false if there is no such worker.
    pub(crate) fn set_paused(&self, name: &str, paused: bool) -> bool {
        match self.sender(name) {
            Some(tx) => {
                tx.send_replace(paused);
                true
            }
            None => false,
        }
    }

    pub(crate) fn is_paused(&self, name: &str) -> bool {
        self.sender(name).is_some_and(|tx| *tx.borrow())
    }
}

/// Run storage work that blocks (a sled transaction, a file read) from
/// async code: on the multi-threaded runtime the worker thread hands its
/// other tasks over first (`block_in_place`); on a current-thread runtime
/// (the deterministic table simulation) it runs in place.
pub(crate) fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_paused_worker_waits_until_resumed() {
        let w = Arc::new(Workers::default());
        assert!(w.set_paused(SCRUB, true));
        assert!(!w.set_paused("no-such-worker", true));
        let w2 = w.clone();
        let waiter = tokio::spawn(async move { w2.gate(SCRUB).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "a paused worker must wait");
        w.gate(RESYNC).await; // others are not affected
        w.set_paused(SCRUB, false);
        waiter.await.expect("resumed worker goes on");
    }
}
