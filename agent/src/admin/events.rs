//! The event log: what this node saw happen to the cluster (nodes down and
//! up, quorum lost and regained, layouts applied, data moves, repairs,
//! corrupted blocks, full disks, snapshots, wrong clocks), kept in its
//! metadata store so that an operator who opens the console the morning
//! after sees the night (`hangar events`, the console's Events view).
//!
//! Events are found in one place, by comparing this node's status every
//! second ([`hangar_common::events::changes`]), rather than by hooks in
//! every layer; what the admin service does (repairs) is recorded where it
//! is done. Every node keeps its own log: any node that stayed up has the
//! failures of the others. The log is bounded in entries and age.

use std::ops::Bound;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use hangar_common::crdt::now_msec;
use hangar_common::events::ClusterEvent;
use tracing::{info, warn};

use crate::db::{Db, DbResult, TreeId};

/// Entries kept at most.
pub const MAX_ENTRIES: usize = 10_000;
/// How long an entry is kept.
pub const MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// A node's event log, in its metadata store (tree `events`; keys are a
/// big-endian sequence number then the time, so they sort in the order
/// events were recorded even if the clock is set back).
pub struct EventLog {
    db: Db,
    tree: TreeId,
    /// Entries stored, and the last sequence number used.
    state: Mutex<(usize, u64)>,
}

impl EventLog {
    pub fn open(db: &Db) -> DbResult<EventLog> {
        let tree = db.open_tree("events")?;
        // Counted once at start (bounded by MAX_ENTRIES), then kept.
        let count = db.len(tree)?;
        let last = db
            .range(tree, Bound::Unbounded, Bound::Unbounded, true, 1)?
            .first()
            .and_then(|(k, _)| k.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()))
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        Ok(EventLog {
            db: db.clone(),
            tree,
            state: Mutex::new((count, last)),
        })
    }

    /// Record an event now (and in the agent's log).
    pub(crate) fn record(&self, warn_: bool, text: impl Into<String>) {
        let event = ClusterEvent {
            at_ms: now_msec(),
            warn: warn_,
            text: text.into(),
        };
        if event.warn {
            warn!("event: {}", event.text);
        } else {
            info!("event: {}", event.text);
        }
        if let Err(e) = self.store(&event) {
            warn!("cannot store an event: {e}");
        }
    }

    fn store(&self, event: &ClusterEvent) -> Result<(), String> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.1 += 1;
        let mut key = st.1.to_be_bytes().to_vec();
        key.extend_from_slice(&event.at_ms.to_be_bytes());
        let value = rmp_serde::to_vec_named(event).map_err(|e| e.to_string())?;
        self.db
            .insert(self.tree, &key, &value)
            .map_err(|e| e.to_string())?;
        st.0 += 1;
        // Drop the oldest: beyond the count, or older than the age limit.
        let too_old = event.at_ms.saturating_sub(MAX_AGE.as_millis() as u64);
        let oldest = self
            .db
            .range(self.tree, Bound::Unbounded, Bound::Unbounded, false, 64)
            .map_err(|e| e.to_string())?;
        for (k, _) in oldest {
            let at = k
                .get(8..16)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if st.0 <= MAX_ENTRIES && at >= too_old {
                break;
            }
            self.db.remove(self.tree, &k).map_err(|e| e.to_string())?;
            st.0 = st.0.saturating_sub(1);
        }
        Ok(())
    }

    /// The newest `limit` events, newest first.
    pub(crate) fn recent(&self, limit: usize) -> Vec<ClusterEvent> {
        match self.db.range(
            self.tree,
            Bound::Unbounded,
            Bound::Unbounded,
            true,
            limit.min(MAX_ENTRIES),
        ) {
            Ok(entries) => entries
                .into_iter()
                .filter_map(|(_, v)| rmp_serde::from_slice(&v).ok())
                .collect(),
            Err(e) => {
                warn!("cannot read the event log: {e}");
                Vec::new()
            }
        }
    }
}

/// Compare this node's status every second, and whenever a peer goes down
/// or comes back, and log what changed.
pub async fn watch(services: Arc<super::Services>) {
    services.events.record(
        false,
        format!(
            "agent {} started on node {}",
            env!("CARGO_PKG_VERSION"),
            services.net.id.short()
        ),
    );
    // The baseline is taken at once (a failure right after start must not
    // be missed); the peers this agent finds in its first seconds are not
    // "joining", it is only meeting them again.
    let started = std::time::Instant::now();
    let mut last = services.status_with(false);
    let mut moved = services.net.transitions.subscribe();
    loop {
        // Every second, and at once when a peer goes down or comes back.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = moved.changed() => {}
        }
        let now = services.status_with(false);
        for (warn_, text) in hangar_common::events::changes(&last, &now) {
            if started.elapsed() < Duration::from_secs(10) && text.ends_with(" joined") {
                continue;
            }
            services.events.record(warn_, text);
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_the_newest_and_survives_a_restart() {
        let db: Db = Arc::new(crate::db::mem::MemEngine::default());
        let log = EventLog::open(&db).expect("open");
        for i in 0..(MAX_ENTRIES + 10) {
            log.record(i % 2 == 0, format!("event {i}"));
        }
        let recent = log.recent(3);
        assert_eq!(recent.len(), 3);
        assert_eq!(recent[0].text, format!("event {}", MAX_ENTRIES + 9));
        assert_eq!(recent[2].text, format!("event {}", MAX_ENTRIES + 7));
        assert_eq!(db.len(log.tree).expect("len"), MAX_ENTRIES);
        // Opened again (a restart): the same entries, the count goes on.
        let again = EventLog::open(&db).expect("open again");
        assert_eq!(
            again.recent(1)[0].text,
            format!("event {}", MAX_ENTRIES + 9)
        );
        again.record(false, "after restart");
        assert_eq!(db.len(again.tree).expect("len"), MAX_ENTRIES);
        assert_eq!(again.recent(1)[0].text, "after restart");
    }
}
