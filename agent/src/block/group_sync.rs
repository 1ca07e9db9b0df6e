//! Group sync: one `syncfs` makes the block files of every writer waiting
//! at that moment durable, where each used to fsync its file and its
//! directory (two journal commits per block per node).
//!
//! A writer writes its temporary file, renames it into place, then calls
//! [`GroupSync::sync`]: it takes a ticket; if no sync is running it runs
//! one (which covers every ticket taken so far), otherwise it waits for
//! the running one and, if that one started before its ticket, for the
//! next. A block is acknowledged only after a sync that started after its
//! rename returned without error, so durability at acknowledgement is what
//! it was. A crash before the sync can leave a torn file under its final
//! name: reads and the scrub check every block's hash and move a bad copy
//! aside, and the block was not acknowledged, so its writer retries or
//! another replica holds it.
//!
//! `syncfs` writes everything dirty on the file system, not only our
//! files; a data directory normally has its disk to itself. Its error
//! report (Linux 5.8 on) covers write-back errors since the last call on
//! the same descriptor, of any file: a failure fails every writer of that
//! round, which is the safe side.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Condvar, Mutex};

/// Failed rounds remembered.
const FAILURES_KEPT: usize = 64;

#[derive(Default)]
struct State {
    /// Tickets handed out.
    taken: u64,
    /// Every ticket up to this one is durable.
    done: u64,
    /// A sync is running.
    running: bool,
    /// Failed rounds: (first ticket, last ticket, the error), so every
    /// writer a failed round covered learns of it, however late it wakes.
    /// Failures are rare (the directory is then skipped for a while): the
    /// last [`FAILURES_KEPT`] are kept.
    failed: std::collections::VecDeque<(u64, u64, std::io::ErrorKind, String)>,
    /// Rounds run (for the tests and the bench).
    rounds: u64,
}

/// What one round does: `syncfs`, or a stand-in in the tests.
type Round = Box<dyn Fn() -> std::io::Result<()> + Send + Sync>;

/// One per data directory (file system).
pub(crate) struct GroupSync {
    round: Round,
    state: Mutex<State>,
    wake: Condvar,
}

impl GroupSync {
    /// Open `dir` (any directory on the file system) for syncing.
    pub(crate) fn open(dir: &Path) -> std::io::Result<GroupSync> {
        let fd = File::open(dir)?;
        Ok(GroupSync::with_round(Box::new(move || {
            // SAFETY: `syncfs` takes a file descriptor, which `fd` keeps
            // open for the call; it touches no memory of ours.
            if unsafe { libc::syncfs(fd.as_raw_fd()) } == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        })))
    }

    /// With a stand-in for `syncfs` (tests).
    pub(crate) fn with_round(round: Round) -> GroupSync {
        GroupSync {
            round,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        }
    }

    /// Return once everything written on this file system before the
    /// call is on disk.
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.taken += 1;
        let ticket = st.taken;
        loop {
            if let Some((_, _, kind, msg)) = st
                .failed
                .iter()
                .find(|(from, to, _, _)| (*from..=*to).contains(&ticket))
            {
                return Err(std::io::Error::new(*kind, msg.clone()));
            }
            if st.done >= ticket {
                return Ok(());
            }
            if st.running {
                st = self.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            st.running = true;
            let (from, to) = (st.done + 1, st.taken);
            drop(st);
            let err = (self.round)().err();
            st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.running = false;
            st.rounds += 1;
            st.done = st.done.max(to);
            if let Some(e) = err {
                if st.failed.len() == FAILURES_KEPT {
                    st.failed.pop_front();
                }
                st.failed.push_back((from, to, e.kind(), e.to_string()));
            }
            self.wake.notify_all();
        }
    }

    /// Sync rounds run so far.
    #[cfg(test)]
    pub(crate) fn rounds(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).rounds
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    fn wait_until(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::yield_now();
        }
    }

    /// The rule everything rests on: a writer returns only after a round
    /// that began after its call. Here a round "makes durable" what was
    /// written when it began; the second writer calls while the first
    /// round runs, so that round cannot cover it.
    #[test]
    fn a_round_under_way_does_not_cover_a_later_writer() {
        let written = Arc::new(AtomicU64::new(0));
        let durable = Arc::new(AtomicU64::new(0));
        let started = Arc::new(AtomicU64::new(0));
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let g = {
            let (written, durable, started, gate) = (
                written.clone(),
                durable.clone(),
                started.clone(),
                gate.clone(),
            );
            Arc::new(GroupSync::with_round(Box::new(move || {
                let seen = written.load(Ordering::SeqCst);
                started.fetch_add(1, Ordering::SeqCst);
                let (open, cv) = &*gate;
                let mut o = open.lock().expect("gate");
                while !*o {
                    o = cv.wait(o).expect("gate");
                }
                durable.fetch_max(seen, Ordering::SeqCst);
                Ok(())
            })))
        };
        written.store(1, Ordering::SeqCst);
        let first = {
            let g = g.clone();
            std::thread::spawn(move || g.sync())
        };
        wait_until("the first round", || started.load(Ordering::SeqCst) == 1);
        written.store(2, Ordering::SeqCst);
        let second = {
            let g = g.clone();
            std::thread::spawn(move || g.sync())
        };
        // The second writer has its ticket once it waits (or runs).
        wait_until("the second writer's ticket", || {
            g.state.lock().expect("state").taken == 2
        });
        *gate.0.lock().expect("gate") = true;
        gate.1.notify_all();
        first.join().expect("first").expect("first sync");
        second.join().expect("second").expect("second sync");
        assert_eq!(
            durable.load(Ordering::SeqCst),
            2,
            "the second writer returned before its write was synced"
        );
        assert_eq!(g.rounds(), 2);
    }

    /// Concurrent writers share rounds: 8 writers waiting while one round
    /// runs are all covered by the next one.
    #[test]
    fn writers_waiting_together_share_one_round() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let g = {
            let gate = gate.clone();
            Arc::new(GroupSync::with_round(Box::new(move || {
                let (open, cv) = &*gate;
                let mut o = open.lock().expect("gate");
                while !*o {
                    o = cv.wait(o).expect("gate");
                }
                Ok(())
            })))
        };
        let writers: Vec<_> = (0..9)
            .map(|_| {
                let g = g.clone();
                std::thread::spawn(move || g.sync())
            })
            .collect();
        wait_until("every ticket", || g.state.lock().expect("state").taken == 9);
        *gate.0.lock().expect("gate") = true;
        gate.1.notify_all();
        for w in writers {
            w.join().expect("writer").expect("sync");
        }
        assert_eq!(g.rounds(), 2, "one round under way, one for the 8 waiting");
    }

    /// A failed round fails every writer it covered, however late they
    /// wake, and only them.
    #[test]
    fn a_failed_round_fails_its_writers_only() {
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let g = {
            let fail = fail.clone();
            GroupSync::with_round(Box::new(move || {
                if fail.load(Ordering::SeqCst) {
                    Err(std::io::Error::other("write-back error"))
                } else {
                    Ok(())
                }
            }))
        };
        let e = g.sync().expect_err("the round failed");
        assert!(e.to_string().contains("write-back error"), "{e}");
        fail.store(false, Ordering::SeqCst);
        g.sync().expect("a later round succeeds");
    }

    #[test]
    fn syncs_a_real_file_system() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let g = GroupSync::open(dir.path()).expect("open");
        std::fs::write(dir.path().join("f"), [7u8; 4096]).expect("write");
        g.sync().expect("syncfs");
    }
}
