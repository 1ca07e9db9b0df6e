//! Per-item consensus: a compare-and-set that exactly one of several racing
//! writers wins, for the few writes that need one winner (today: a bucket
//! name, so two `CreateBucket` of one name never both succeed).
//!
//! The protocol is CASPaxos: single-decree Paxos run afresh for each
//! change of an item, among the replicas of its partition (every live
//! layout version's replica set, a majority of each, as writes do). A
//! proposer picks a ballot, gets promises from a majority (each acceptor
//! answers the value it accepted with the highest ballot and the item it
//! holds), merges them into the item's state, applies the change (or
//! refuses it), gets the new value accepted by a majority, and only then
//! writes it to the table like any write. Safety is Paxos's: two
//! majorities share an acceptor, an acceptor never accepts below a ballot
//! it promised, and a proposer re-proposes the highest accepted value it
//! sees, so a value chosen once is what every later round starts from.
//! Acceptor state (promised ballot, accepted value) is written to the
//! metadata store, in the tree `<table>:paxos`, before the answer leaves:
//! a restarted acceptor keeps its promises.
//!
//! Cost: two round trips to a majority, plus the ordinary write of the
//! chosen value (a third: the value must be readable when the caller
//! answers). Racing proposers retry with higher ballots after a random
//! pause. Ordinary writes do not use this path and are not
//! slowed by it; an ordinary write racing a change made here is ordered by
//! the item's CRDT merge, as any two concurrent writes are.

use std::sync::Arc;
use std::time::Duration;

use hangar_common::crdt::Crdt;
use hangar_common::rpc::{Ballot, TableOp, TableResponse};
use serde::{Deserialize, Serialize};

use super::data::{DataError, TableData, storage_key};
use super::{Table, TableError, TableItem, TableSchema, write_quorum};

/// Rounds a proposer tries before giving up (the caller answers 503).
const MAX_ATTEMPTS: u32 = 12;

/// How long an acceptor's promise holds ordered writes back (see
/// [`TableData::ordered_check`]); an `Accept` of that ballot after it is
/// refused too, so a round slower than this starts again and reads what
/// was written meanwhile. Measured on this node's monotonic clock, in
/// memory: after a restart no promise holds anything back, and no
/// `Accept` of a ballot promised before it is taken.
pub(crate) const PROMISE_LEASE: Duration = Duration::from_secs(2);

/// What an acceptor keeps for one item.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct AcceptorState {
    promised: Option<Ballot>,
    accepted: Option<(Ballot, Vec<u8>)>,
    /// Digests of the items the last values accepted here replaced
    /// ([`crate::table::TableItem::replaced`]), newest last: an ordered
    /// write that one of them replaced is told so even after later writes
    /// replaced that value in turn (see [`TableData::ordered_check`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    replaced: Vec<u64>,
}

/// How many digests of replaced items an acceptor keeps per item.
const REPLACED_KEPT: usize = 8;

impl AcceptorState {
    fn promised(&self) -> Ballot {
        self.promised.unwrap_or(Ballot::ZERO)
    }
}

impl<S: TableSchema> TableData<S> {
    fn acceptor(&self, key: &[u8]) -> Result<AcceptorState, DataError> {
        match self.db.get(self.paxos, key)? {
            Some(b) => rmp_serde::from_slice(&b).map_err(|e| DataError::Decode {
                table: S::NAME,
                reason: format!("paxos state: {e}"),
            }),
            None => Ok(AcceptorState::default()),
        }
    }

    fn save_acceptor(&self, key: &[u8], st: &AcceptorState) -> Result<(), DataError> {
        let b = rmp_serde::to_vec_named(st).map_err(|e| DataError::Encode {
            table: S::NAME,
            reason: format!("paxos state: {e}"),
        })?;
        self.db.insert(self.paxos, key, &b)?;
        // Durable before the promise or acceptance is answered.
        self.db.flush()?;
        Ok(())
    }

    /// Phase 1 on this replica.
    pub(crate) fn paxos_prepare(
        &self,
        key: &[u8],
        ballot: Ballot,
    ) -> Result<TableResponse, DataError> {
        let _guard = self.item_lock(key);
        let mut st = self.acceptor(key)?;
        if ballot <= st.promised() {
            return Ok(TableResponse::Promise {
                ok: false,
                promised: st.promised(),
                accepted: None,
                current: None,
            });
        }
        st.promised = Some(ballot);
        self.save_acceptor(key, &st)?;
        self.promise_made(key);
        Ok(TableResponse::Promise {
            ok: true,
            promised: ballot,
            accepted: st.accepted,
            current: self.get_raw(key)?,
        })
    }

    /// Phase 2 on this replica.
    pub(crate) fn paxos_accept(
        &self,
        key: &[u8],
        ballot: Ballot,
        value: Vec<u8>,
    ) -> Result<TableResponse, DataError> {
        let _guard = self.item_lock(key);
        let mut st = self.acceptor(key)?;
        // Below the promise; or the promise of this very ballot is older
        // than its lease, and ordered writes below it may have been
        // applied since the round read the item.
        if ballot < st.promised() || (ballot == st.promised() && !self.promise_holds(key)) {
            return Ok(TableResponse::Accepted {
                ok: false,
                promised: st.promised(),
            });
        }
        if let Some(d) = self.decode(&value)?.replaced()
            && !st.replaced.contains(&d)
        {
            st.replaced.push(d);
            if st.replaced.len() > REPLACED_KEPT {
                st.replaced.remove(0);
            }
        }
        st.promised = Some(ballot);
        st.accepted = Some((ballot, value));
        self.save_acceptor(key, &st)?;
        self.promise_made(key);
        Ok(TableResponse::Accepted {
            ok: true,
            promised: ballot,
        })
    }

    /// An ordered write ([`Table::insert_latest`]) arriving at this
    /// replica, checked against the item's promises; the caller holds
    /// [`TableData::item_lock`] and applies `item` only if this returns
    /// None. A proposer that was promised ballot `b` times its value at
    /// `b.round` (see [`Table::cas`]); an ordered write timed at or below
    /// that could land between the value a consensus round read and the
    /// one it chooses, and be silently replaced by it. Such a write is not
    /// applied: the answer is the item timed just above the promise, so
    /// the writer times its write above it and writes again (after the
    /// round's value, never hidden by it).
    ///
    /// A promise holds writes back only for [`PROMISE_LEASE`] (the round's
    /// `Accept` is refused here from then on). Not "until the item is
    /// timed above the promise": a later write landing here does not end
    /// the round, which may still choose a value that replaces this write
    /// where another replica applied it (the simulation found that).
    ///
    /// And a write (`encoded`: as it came) that a value accepted here
    /// replaced is not applied again: the answer is the write itself,
    /// marked as replaced ([`crate::table::TableItem::replaced`]), so its
    /// writer stops.
    pub(crate) fn ordered_check(
        &self,
        key: &[u8],
        item: &S::Item,
        encoded: &[u8],
    ) -> Result<Option<S::Item>, DataError> {
        let Some(t) = item.write_time() else {
            return Ok(None);
        };
        let st = self.acceptor(key)?;
        if !st.replaced.is_empty() {
            let d = super::digest(encoded);
            if st.replaced.contains(&d) {
                let mut marked = item.clone();
                marked.set_replaced(Some(d));
                return Ok(Some(marked));
            }
        }
        let Some(promised) = st.promised else {
            return Ok(None);
        };
        if !self.promise_holds(key) {
            return Ok(None);
        }

        // The value's time as the proposer gives it (items whose clock is
        // coarser than a microsecond round it up).
        let mut probe = item.clone();
        probe.set_write_time(promised.round);
        let bound = probe.write_time().unwrap_or(promised.round);
        if t > bound {
            return Ok(None);
        }
        probe.set_write_time(bound.saturating_add(1));
        Ok(Some(probe))
    }
}

impl<S: TableSchema> TableData<S> {
    /// Forget the value accepted for `key` if it is timed at or below `t`
    /// (the caller holds [`TableData::item_lock`]).
    pub(crate) fn forget_accepted_below(&self, key: &[u8], t: u64) -> Result<(), DataError> {
        let mut st = self.acceptor(key)?;
        let Some((_, v)) = &st.accepted else {
            return Ok(());
        };
        if self.decode(v)?.write_time().is_some_and(|a| a <= t) {
            st.accepted = None;
            self.save_acceptor(key, &st)?;
        }
        Ok(())
    }

    /// Note that this node promised (or accepted) a ballot for `key` now.
    fn promise_made(&self, key: &[u8]) {
        let now = tokio::time::Instant::now();
        let mut times = self.promise_times.lock().unwrap_or_else(|p| p.into_inner());
        if times.len() >= 4096 {
            times.retain(|_, at| now.duration_since(*at) < PROMISE_LEASE);
        }
        times.insert(key.to_vec(), now);
    }

    /// Whether this node's promise for `key` is within its lease.
    fn promise_holds(&self, key: &[u8]) -> bool {
        let times = self.promise_times.lock().unwrap_or_else(|p| p.into_inner());
        times
            .get(key)
            .is_some_and(|at| at.elapsed() < PROMISE_LEASE)
    }
}

/// What phase 1 of a round gathered from a majority (see [`Table::cas`]).
pub struct Promises<T> {
    ballot: Ballot,
    /// The item's state: what the promising replicas hold, merged.
    state: Option<T>,
    /// The value accepted with the highest ballot among them, if any.
    recovered: Option<T>,
    /// Above zero: a replica had promised this higher ballot.
    refused: Ballot,
}

impl<T> Promises<T> {
    /// The state a change would see, if this round can go on to phase 2
    /// as it is (no replica refused, no earlier round's value to finish):
    /// a condition that fails on it fails for good.
    pub(crate) fn settled_state(&self) -> Option<Option<&T>> {
        (self.refused == Ballot::ZERO && self.recovered.is_none()).then_some(self.state.as_ref())
    }
}

impl<S: TableSchema> Table<S> {
    /// Phase 1 of a round for the item at (`partition_key`, `sort_key`),
    /// to pass to [`Table::cas`]: lets a caller gather promises while it
    /// does something else (a PUT receives its body), and refuse early.
    pub(crate) async fn cas_prepare(
        self: &Arc<Self>,
        partition_key: &[u8],
        sort_key: &[u8],
    ) -> Result<Promises<S::Item>, TableError> {
        let key = storage_key(partition_key, sort_key);
        self.promise(&key, self.data.clock.now()).await
    }

    /// Phase 1 at `round`.
    async fn promise(
        self: &Arc<Self>,
        key: &[u8],
        round: u64,
    ) -> Result<Promises<S::Item>, TableError> {
        let partition = key[0] as usize;
        let sets = self.write_sets(partition)?;
        let majority = write_quorum(self.layout.snapshot().replication_factor);
        let ballot = Ballot {
            round,
            node: self.net.id(),
        };
        let answers = self
            .quorum(
                partition,
                &sets,
                TableOp::Prepare {
                    key: key.to_vec(),
                    ballot,
                },
                majority,
            )
            .await?;
        let mut p = Promises {
            ballot,
            state: None,
            recovered: None,
            refused: Ballot::ZERO,
        };
        let mut highest: Option<(Ballot, Vec<u8>)> = None;
        for (_, resp) in answers {
            let TableResponse::Promise {
                ok,
                promised,
                accepted,
                current,
            } = resp
            else {
                continue;
            };
            if !ok {
                p.refused = p.refused.max(promised);
                continue;
            }
            if let Some(b) = current {
                merge_into(&mut p.state, self.data.decode(&b)?);
            }
            if let Some((b, v)) = accepted
                && highest.as_ref().is_none_or(|(h, _)| b > *h)
            {
                highest = Some((b, v));
            }
        }
        if let Some((_, v)) = highest {
            p.recovered = Some(self.data.decode(&v)?);
        }
        Ok(p)
    }

    /// Change the item at (`partition_key`, `sort_key`) by consensus:
    /// `change` sees the item's current state (None: absent) and returns
    /// the new item, or refuses with its reason. `first`: the promises of
    /// a first round, if the caller gathered them ([`Table::cas_prepare`]). `mine` recognises the
    /// caller's own new item, which a round a racing proposer interrupted
    /// may have left accepted (and perhaps chosen): it is then proposed
    /// again as it is. Returns the new item as written, or the refusal;
    /// fails (the caller answers "try again") when no majority answers or
    /// racing proposers keep winning.
    ///
    /// The new item is timed at its ballot's round, above everything the
    /// promises showed. Ordered writes ([`Table::insert_latest`]) timed at
    /// or below a promise are not applied by that acceptor but timed above
    /// it (see [`TableData::ordered_check`]), so none can land between the
    /// state a round read and the value it chooses: a value chosen here
    /// replaces exactly what its change saw.
    pub(crate) async fn cas<E>(
        self: &Arc<Self>,
        partition_key: &[u8],
        sort_key: &[u8],
        mut first: Option<Promises<S::Item>>,
        mine: impl Fn(&S::Item) -> bool,
        mut change: impl FnMut(Option<&S::Item>) -> Result<S::Item, E>,
    ) -> Result<Result<S::Item, E>, TableError> {
        let key = storage_key(partition_key, sort_key);
        let partition = key[0] as usize;
        let sets = self.write_sets(partition)?;
        // A majority of each replica set (what a write quorum is).
        let majority = write_quorum(self.layout.snapshot().replication_factor);
        let clock = self.data.clock;
        let mut round = clock.now();
        // Whether our own value went out to be accepted in some round.
        let mut proposed = false;
        for attempt in 1..=MAX_ATTEMPTS {
            // Phase 1 (the caller's, made while its body arrived, first).
            let p = match first.take() {
                Some(p) => p,
                None => self
                    .promise(&key, round)
                    .await
                    .map_err(|e| e.after_sent(proposed, S::NAME))?,
            };
            round = p.ballot.round;
            let ballot = p.ballot;
            let mut state = p.state;
            if p.refused > Ballot::ZERO {
                round = clock.now_after(round.max(p.refused.round));
                backoff(&*self.net, attempt).await;
                continue;
            }
            let recovered = p.recovered;
            // Whether this round refuses after ours went out (see below).
            let mut undecided = false;
            let outcome;
            let value = match recovered {
                // Ours, perhaps chosen already: proposed again unchanged.
                Some(r) if mine(&r) => {
                    outcome = Ok(r.clone());
                    r
                }
                recovered => {
                    let recovered_some = recovered.is_some();
                    if let Some(r) = recovered {
                        merge_into(&mut state, r);
                    }
                    let seen = state.as_ref().and_then(|s| s.write_time()).unwrap_or(0);
                    match state {
                        // Ours, chosen in an earlier round and written
                        // already (by us or by a proposer that recovered
                        // it): done, once it is chosen in this ballot too.
                        Some(s) if mine(&s) => {
                            outcome = Ok(s.clone());
                            s
                        }
                        state => match change(state.as_ref()) {
                            Ok(mut new) => {
                                new.set_write_time(round);
                                // What it replaces: an ordered write that
                                // finds its own value named here knows it
                                // took effect (see `insert_latest`).
                                let replaced = match &state {
                                    Some(s) => Some(super::digest(&self.data.encode(s)?)),
                                    None => None,
                                };
                                new.set_replaced(replaced);
                                // Timed at the round, which must be above
                                // what it replaces: a value written through
                                // a node whose clock is ahead needs a higher
                                // ballot (one more round, without a pause).
                                if new.write_time().unwrap_or(u64::MAX) <= seen {
                                    round = clock.now_after(seen);
                                    continue;
                                }
                                outcome = Ok(new.clone());
                                new
                            }
                            // A refusal answers from the state seen. If that
                            // came from a value only accepted so far, it is
                            // first accepted in this ballot, so the refusal
                            // rests on a chosen value. If a round of ours
                            // sent our own value out, it may have been
                            // chosen and then replaced (the state would not
                            // show it): the state is chosen in this ballot,
                            // above anything ours, and the answer is "not
                            // known" rather than a refusal.
                            Err(e) => match (recovered_some, proposed, state) {
                                (false, false, _) => return Ok(Err(e)),
                                (_, _, Some(s)) => {
                                    undecided = proposed;
                                    outcome = Err(e);
                                    s
                                }
                                (_, _, None) => {
                                    return Err(TableError::Undecided { table: S::NAME });
                                }
                            },
                        },
                    }
                }
            };
            // Phase 2.
            proposed |= outcome.as_ref().is_ok_and(&mine);
            let encoded = self.data.encode(&value)?;
            let answers = self
                .quorum(
                    partition,
                    &sets,
                    TableOp::Accept {
                        key: key.clone(),
                        ballot,
                        value: encoded,
                    },
                    majority,
                )
                .await
                .map_err(|e| e.after_sent(proposed, S::NAME))?;
            let mut nacked = Ballot::ZERO;
            for (_, resp) in answers {
                if let TableResponse::Accepted {
                    ok: false,
                    promised,
                } = resp
                {
                    nacked = nacked.max(promised);
                }
            }
            if nacked > Ballot::ZERO {
                round = clock.now_after(round.max(nacked.round));
                backoff(&*self.net, attempt).await;
                continue;
            }
            // Chosen: now an ordinary write makes it readable.
            self.insert(&value)
                .await
                .map_err(|e| e.after_sent(proposed, S::NAME))?;
            if undecided {
                return Err(TableError::Undecided { table: S::NAME });
            }
            if attempt > 1 {
                tracing::debug!("{}: consensus reached after {attempt} rounds", S::NAME);
            }
            return Ok(outcome);
        }
        Err(TableError::Contended {
            table: S::NAME,
            attempts: MAX_ATTEMPTS,
        })
    }
}

fn merge_into<T: Crdt>(state: &mut Option<T>, item: T) {
    match state {
        Some(s) => s.merge(&item),
        None => *state = Some(item),
    }
}

/// A random pause growing with the attempt, so duelling proposers stop
/// duelling.
async fn backoff(net: &dyn super::TableNet, attempt: u32) {
    let max = 10 * u64::from(attempt.min(8));
    let ms = net.random_below(max) + 2;
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::TableItem;
    use crate::table::kv::{KvItem, KvTable};
    use hangar_common::NodeId;

    fn ballot(round: u64, node: u8) -> Ballot {
        Ballot {
            round,
            node: NodeId([node; 32]),
        }
    }

    /// Open the store in `dir`, as a restarted agent does: sled's flusher
    /// thread of the previous handle may still hold the directory's lock
    /// for a moment after it is dropped (a new process starts only once
    /// the old one has exited), so opening is retried until a deadline.
    fn open(dir: &std::path::Path) -> TableData<KvTable> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let engine = loop {
            match crate::db::sled_engine::SledEngine::open(dir, 8 << 20) {
                Ok(e) => break e,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("sled: {e}"),
            }
        };
        let db: crate::db::Db = Arc::new(engine);
        TableData::open(db, Arc::new(KvTable)).expect("table")
    }

    fn kv(v: &str, t: u64) -> KvItem {
        KvItem::new("k", Some(v.into()), t, NodeId([2; 32]))
    }

    #[tokio::test(start_paused = true)]
    async fn a_promise_holds_ordered_writes_back_for_its_lease_only() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let d = open(dir.path());
        let key = storage_key(b"k", b"");
        assert!(matches!(
            d.paxos_prepare(&key, ballot(5, 1)).expect("prepare"),
            TableResponse::Promise { ok: true, .. }
        ));
        // Timed at or below the promised round: held back, and told to
        // go above it; above it: applied.
        let below = kv("w", 5);
        let enc = d.encode(&below).expect("encode");
        let probe = d.ordered_check(&key, &below, &enc).expect("check");
        assert_eq!(probe.and_then(|p| p.write_time()), Some(6));
        let above = kv("w", 6);
        let enc_above = d.encode(&above).expect("encode");
        assert!(
            d.ordered_check(&key, &above, &enc_above)
                .expect("check")
                .is_none()
        );
        // After the lease the write passes, and the round's Accept of that
        // ballot is refused (it must start again and read what was
        // written).
        tokio::time::advance(PROMISE_LEASE + Duration::from_millis(1)).await;
        assert!(
            d.ordered_check(&key, &below, &enc)
                .expect("check")
                .is_none()
        );
        let value = d.encode(&kv("cas", 5)).expect("encode");
        assert!(matches!(
            d.paxos_accept(&key, ballot(5, 1), value.clone())
                .expect("accept"),
            TableResponse::Accepted { ok: false, .. }
        ));
        // A new round gets both through.
        assert!(matches!(
            d.paxos_prepare(&key, ballot(7, 1)).expect("prepare"),
            TableResponse::Promise { ok: true, .. }
        ));
        assert!(matches!(
            d.paxos_accept(&key, ballot(7, 1), value).expect("accept"),
            TableResponse::Accepted { ok: true, .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_a_chosen_value_replaced_is_told_so_and_not_applied_again() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let d = open(dir.path());
        let key = storage_key(b"k", b"");
        let write = kv("w", 3);
        let enc = d.encode(&write).expect("encode");
        // A round read that write and chose a value replacing it.
        let mut chosen = kv("cas", 10);
        chosen.set_replaced(Some(super::super::digest(&enc)));
        d.paxos_prepare(&key, ballot(10, 1)).expect("prepare");
        d.paxos_accept(&key, ballot(10, 1), d.encode(&chosen).expect("encode"))
            .expect("accept");
        // Long after (the lease is over), the same write comes again: it
        // is told it was replaced; another write is not.
        tokio::time::advance(PROMISE_LEASE * 2).await;
        let told = d.ordered_check(&key, &write, &enc).expect("check");
        assert_eq!(
            told.and_then(|t| t.replaced()),
            Some(super::super::digest(&enc))
        );
        let other = kv("x", 3);
        let enc_other = d.encode(&other).expect("encode");
        assert!(
            d.ordered_check(&key, &other, &enc_other)
                .expect("check")
                .is_none()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_value_accepted_before_a_collected_tombstone_is_forgotten_with_it() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let d = open(dir.path());
        let key = storage_key(b"k", b"");
        d.paxos_prepare(&key, ballot(5, 1)).expect("prepare");
        d.paxos_accept(&key, ballot(5, 1), d.encode(&kv("old", 5)).expect("encode"))
            .expect("accept");
        // Deleted later; the tombstone collected from every replica.
        let tombstone = KvItem::new("k", None, 9, NodeId([2; 32]));
        d.update(&tombstone).expect("update");
        let held = d.get_raw(&key).expect("read").expect("the tombstone");
        assert!(
            d.delete_if_equal(&key, &hangar_common::hash::Hash::of(&held))
                .expect("collect")
        );
        // The next round must not find the old value to write back.
        match d.paxos_prepare(&key, ballot(7, 1)).expect("prepare") {
            TableResponse::Promise {
                ok: true,
                accepted,
                current,
                ..
            } => {
                assert_eq!(accepted, None);
                assert_eq!(current, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_restarted_acceptor_keeps_its_promises_and_what_it_accepted() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let key = storage_key(b"lock", b"");
        let value = |v: &str| {
            rmp_serde::to_vec_named(&KvItem::new("lock", Some(v.into()), 1, NodeId([9; 32])))
                .expect("encode")
        };
        {
            let d = open(dir.path());
            assert!(matches!(
                d.paxos_prepare(&key, ballot(5, 1)).expect("prepare"),
                TableResponse::Promise { ok: true, .. }
            ));
            assert!(matches!(
                d.paxos_accept(&key, ballot(5, 1), value("a"))
                    .expect("accept"),
                TableResponse::Accepted { ok: true, .. }
            ));
            assert!(matches!(
                d.paxos_prepare(&key, ballot(7, 2)).expect("prepare"),
                TableResponse::Promise { ok: true, .. }
            ));
        } // the process stops: the store is closed
        let d = open(dir.path());
        // Below the promise: refused, in both phases, even a ballot above
        // the one accepted.
        match d.paxos_prepare(&key, ballot(6, 3)).expect("prepare") {
            TableResponse::Promise { ok, promised, .. } => {
                assert!(!ok);
                assert_eq!(promised, ballot(7, 2));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            d.paxos_accept(&key, ballot(6, 3), value("b"))
                .expect("accept"),
            TableResponse::Accepted { ok: false, .. }
        ));
        // Above it: promised, and told what was accepted before.
        match d.paxos_prepare(&key, ballot(8, 3)).expect("prepare") {
            TableResponse::Promise { ok, accepted, .. } => {
                assert!(ok);
                assert_eq!(accepted, Some((ballot(5, 1), value("a"))));
            }
            other => panic!("{other:?}"),
        }
        // The same ballot twice is not promised twice (two proposers
        // never share one: the node id is in it).
        assert!(matches!(
            d.paxos_prepare(&key, ballot(8, 3)).expect("prepare"),
            TableResponse::Promise { ok: false, .. }
        ));
    }
}
