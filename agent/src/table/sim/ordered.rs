//! The simulation's second workload: what the object table does with a
//! key. Clients through nodes whose clocks disagree (by milliseconds, by
//! minutes) make ordered writes ([`Table::insert_latest`]: a PUT, a
//! DELETE), compare-and-set writes ([`Table::cas`]: a PUT with
//! `If-Match` the value the client last read, a PUT with
//! `If-None-Match: *` of a lock key), half of them with their promises
//! gathered early as a PUT does while its body arrives, and reads, under
//! the same faults as the first workload. Then the faults heal and every
//! key is read once more.
//!
//! The history is checked as `tests/s3/history.py` checks a real
//! cluster's (the rules are the same, see [`check`]): every read returns
//! a value some linearization allows, a compare-and-set told it won
//! replaced the value it named and no two replaced the same one, a
//! refused one wrote nothing, and no acknowledged write is lost.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Schedule, SimCluster, lock, replay_seed, schedules, seeds};
use crate::table::Bug;
use crate::table::kv::KvItem;

/// Keys that plain writes, deletions and swaps share.
const VALUE_KEYS: [&str; 2] = ["a", "b"];
/// Keys only created (`If-None-Match: *`), never otherwise written.
const LOCK_KEYS: [&str; 2] = ["l0", "l1"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Put,
    Delete,
    Get,
    /// Write if the key holds the value the client last read of it.
    Swap,
    /// Write if the key is absent.
    Create,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Ok,
    /// A compare-and-set that found its condition false: wrote nothing.
    Refused,
    /// An error: the write may or may not have happened.
    Failed,
}

/// One operation of a client, as it saw it.
#[derive(Clone, Debug)]
struct Op {
    client: usize,
    kind: Kind,
    key: &'static str,
    /// Through which node.
    via: usize,
    /// What a write writes (None: a deletion).
    value: Option<String>,
    /// What a swap or create needed the key to hold (None: absent).
    expects: Option<String>,
    /// Whether a swap or create gathered its promises first.
    early: bool,
    /// What a read returned (None: absent).
    result: Option<String>,
    start: i64,
    end: i64,
    status: Status,
}

/// The value a key holds (a deletion holds none).
fn value_of(item: Option<&KvItem>) -> Option<String> {
    item.and_then(|i| i.value().map(str::to_string))
}

/// Run the ordered workload of `s`; its history, and what each key holds
/// once healed.
async fn run(s: &Schedule) -> (Vec<Op>, BTreeMap<&'static str, Option<String>>) {
    // Each node's clock: right, a few milliseconds off, or minutes off.
    let mut rng = StdRng::seed_from_u64(s.seed ^ 0xc10c);
    let offsets: Vec<i64> = (0..s.nodes)
        .map(|_| [0, 3_000, -3_000, 90_000_000, -90_000_000][rng.gen_range(0..5)])
        .collect();
    let cluster = SimCluster::start(s, Some(&offsets));
    let history = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicU64::new(0));
    let clients = s.clients + 2;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (world, ids, history, done) = (
            cluster.world.clone(),
            cluster.ids.clone(),
            history.clone(),
            done.clone(),
        );
        let ops = s.ops;
        tasks.push(tokio::spawn(async move {
            let mut last_read: BTreeMap<&'static str, String> = BTreeMap::new();
            for seq in 0..ops {
                let via = world.below(ids.len() as u64) as usize;
                let coord = ids[via];
                if world.is_down(&coord) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                let table = world.table(&coord).expect("a table per node");
                let mut kind = match world.below(100) {
                    0..35 => Kind::Put,
                    35..43 => Kind::Delete,
                    43..70 => Kind::Get,
                    70..92 => Kind::Swap,
                    _ => Kind::Create,
                };
                let key = if kind == Kind::Create {
                    LOCK_KEYS[world.below(LOCK_KEYS.len() as u64) as usize]
                } else {
                    VALUE_KEYS[world.below(VALUE_KEYS.len() as u64) as usize]
                };
                if kind == Kind::Swap && !last_read.contains_key(key) {
                    kind = Kind::Get;
                }
                let written = format!("c{c}-{seq}");
                let mut op = Op {
                    client: c,
                    kind,
                    key,
                    via,
                    value: (kind != Kind::Delete && kind != Kind::Get).then(|| written.clone()),
                    expects: None,
                    early: false,
                    result: None,
                    start: world.tick() as i64,
                    end: 0,
                    status: Status::Failed,
                };
                if super::trace_on() {
                    eprintln!(
                        "[{}] c{c} via n{via}: {kind:?} {key} {:?} expects {:?}",
                        op.start,
                        op.value,
                        last_read.get(key)
                    );
                }
                match kind {
                    Kind::Put | Kind::Delete => {
                        let now = table.data.clock.now();
                        let mut item = KvItem::new(key, op.value.clone(), now, coord);
                        if table.insert_latest(&mut item).await.is_ok() {
                            op.status = Status::Ok;
                        }
                    }
                    Kind::Get => {
                        if let Ok(item) = table.get(key.as_bytes(), &[]).await {
                            op.result = value_of(item.as_ref());
                            match &op.result {
                                Some(v) => last_read.insert(key, v.clone()),
                                None => last_read.remove(key),
                            };
                            op.status = Status::Ok;
                        }
                    }
                    Kind::Swap | Kind::Create => {
                        op.expects = last_read.remove(key);
                        let expects = op.expects.clone();
                        let holds = |cur: Option<&KvItem>| value_of(cur) == expects;
                        // Half of them as a PUT does: promises first, the
                        // body meanwhile, and a refusal as early as the
                        // promises allow.
                        op.early = world.roll(0.5);
                        let mut first = None;
                        let mut refused_early = false;
                        if op.early {
                            match table.cas_prepare(key.as_bytes(), &[]).await {
                                Ok(p) => {
                                    // Now and then a body slower than a
                                    // promise's lease: the round's Accept
                                    // is refused and it starts again.
                                    let body = if world.roll(0.1) {
                                        2_000 + world.below(1_000)
                                    } else {
                                        world.below(80)
                                    };
                                    tokio::time::sleep(Duration::from_millis(body)).await;
                                    refused_early =
                                        p.settled_state().is_some_and(|state| !holds(state));
                                    first = Some(p);
                                }
                                Err(_) => refused_early = true,
                            }
                        }
                        if refused_early {
                            if first.is_some() {
                                op.status = Status::Refused;
                            }
                        } else {
                            let new = KvItem::new(key, Some(written.clone()), 0, coord);
                            let decided = table
                                .cas(
                                    key.as_bytes(),
                                    &[],
                                    first,
                                    |i| i.value() == Some(written.as_str()),
                                    |cur| if holds(cur) { Ok(new.clone()) } else { Err(()) },
                                )
                                .await;
                            op.status = match decided {
                                Ok(Ok(_)) => Status::Ok,
                                Ok(Err(())) => Status::Refused,
                                Err(_) => Status::Failed,
                            };
                        }
                    }
                }
                op.end = world.tick() as i64;
                if super::trace_on() {
                    eprintln!(
                        "[{}] c{c}: {kind:?} {key} {:?} -> {:?} {:?}",
                        op.end, op.value, op.status, op.result
                    );
                }
                lock(&history).push(op);
                tokio::time::sleep(Duration::from_millis(world.below(60))).await;
            }
            done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    let nemesis = cluster.nemesis(s.max_down, done.clone(), clients as u64);
    for t in tasks {
        t.await.expect("a client task");
    }
    nemesis.await.expect("the nemesis task");
    cluster.heal().await;
    let mut last = BTreeMap::new();
    let reader = cluster.table(&cluster.ids[0]);
    for key in VALUE_KEYS.iter().chain(&LOCK_KEYS) {
        let item = reader
            .get(key.as_bytes(), &[])
            .await
            .expect("a read once healed");
        last.insert(*key, value_of(item.as_ref()));
    }
    let ops = lock(&history).clone();
    (ops, last)
}

/// Before every operation, and after every one (as times).
const NEVER_BEFORE: i64 = i64::MIN;
const AFTER_ALL: i64 = i64::MAX;

/// A write of a key, for [`check`].
struct Write {
    start: i64,
    end: i64,
    value: Option<String>,
    acked: bool,
    /// From when a write acknowledged later supersedes it: its end; for a
    /// compare-and-set that won, the end of the write it replaced if
    /// earlier (a write that began after that cannot come between the
    /// two, so comes after both); for a write that failed, never (its
    /// outcome is unknown: a copy left on one replica may be taken up
    /// later, as if the write were still going on).
    since: i64,
}

/// The anomalies of a history, given what each key holds after healing.
///
/// The rules, per key (a deletion writes "absent"; before any write the
/// key is absent): a value can be read by a read R if it was written by an
/// operation that started before R ended, and no write acknowledged before
/// R started began after that write had ended ([`Write::since`]); the
/// final value must be one a read after everything may return; a
/// compare-and-set told it won needed a value it may have read, and no
/// two replaced the same value; a refused one wrote nothing. A failed
/// write may or may not have happened: its value is possible, never
/// required.
fn check(ops: &[Op], last: &BTreeMap<&'static str, Option<String>>) -> Vec<String> {
    let writes_value = |o: &Op| o.kind != Kind::Get && o.status != Status::Refused;
    // When each acknowledged write ended (a failed one may take effect
    // later than its end).
    let mut ended: BTreeMap<(&str, Option<&str>), i64> = BTreeMap::new();
    for o in ops
        .iter()
        .filter(|o| writes_value(o) && o.status == Status::Ok)
    {
        ended.insert((o.key, o.value.as_deref()), o.end);
    }
    let mut writes: BTreeMap<&str, Vec<Write>> = BTreeMap::new();
    for o in ops.iter().filter(|o| writes_value(o)) {
        let mut since = if o.status == Status::Failed {
            AFTER_ALL
        } else {
            o.end
        };
        if matches!(o.kind, Kind::Swap | Kind::Create) && o.status == Status::Ok {
            since = since.min(match &o.expects {
                None => NEVER_BEFORE,
                Some(v) => ended
                    .get(&(o.key, Some(v.as_str())))
                    .copied()
                    .unwrap_or(since),
            });
        }
        writes.entry(o.key).or_default().push(Write {
            start: o.start,
            end: o.end,
            value: o.value.clone(),
            acked: o.status == Status::Ok,
            since,
        });
    }
    let possible = |key: &str, value: &Option<String>, r_start: i64, r_end: i64| {
        let ws = writes.get(key).map(Vec::as_slice).unwrap_or_default();
        let mut sources: Vec<i64> = ws
            .iter()
            .filter(|w| w.value == *value && w.start < r_end)
            .map(|w| w.since)
            .collect();
        if value.is_none() {
            sources.push(NEVER_BEFORE);
        }
        sources.into_iter().any(|since| {
            !ws.iter().any(|w| {
                w.acked
                    && w.start > since
                    && w.end < r_start
                    && (w.value != *value || w.value.is_none())
            })
        })
    };
    let mut anomalies = Vec::new();
    for o in ops {
        if o.kind == Kind::Get
            && o.status == Status::Ok
            && !possible(o.key, &o.result, o.start, o.end)
        {
            anomalies.push(format!("impossible read: {o:?}"));
        }
    }
    let mut replaced: BTreeMap<(&str, Option<&str>), &Op> = BTreeMap::new();
    for o in ops {
        if matches!(o.kind, Kind::Swap | Kind::Create) && o.status == Status::Ok {
            if !possible(o.key, &o.expects, o.start, o.end) {
                anomalies.push(format!("condition did not hold: {o:?}"));
            }
            if let Some(other) = replaced.insert((o.key, o.expects.as_deref()), o) {
                anomalies.push(format!("two conditional writers won: {other:?} and {o:?}"));
            }
        }
    }
    for (key, value) in last {
        if !possible(key, value, AFTER_ALL, AFTER_ALL) {
            anomalies.push(format!("lost write: {key:?} holds {value:?} once healed"));
        }
    }
    anomalies
}

/// Run the ordered workload of `seed` on a fresh paused-clock runtime.
fn simulate(seed: u64, bugs: &[Bug]) -> Result<(), String> {
    let schedule = Schedule::from_seed(seed, bugs);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    let (ops, last) = rt.block_on(run(&schedule));
    let anomalies = check(&ops, &last);
    if anomalies.is_empty() {
        return Ok(());
    }
    let mut report = format!(
        "seed {seed} ({} nodes, {} clients x {} operations, up to {} down): {} anomalies",
        schedule.nodes,
        schedule.clients + 2,
        schedule.ops,
        schedule.max_down,
        anomalies.len()
    );
    for a in anomalies.iter().take(5) {
        report.push_str("\n  ");
        report.push_str(a);
    }
    if replay_seed().is_some() {
        // Replaying one seed: the whole history, in order of start.
        let mut ops = ops;
        ops.sort_by_key(|o| o.start);
        report.push_str("\nhistory:");
        for o in &ops {
            report.push_str(&format!(
                "\n  {:>4}..{:<4} c{} via {} {:?} {} {:?} expects={:?} early={} -> {:?} read={:?}",
                o.start,
                o.end,
                o.client,
                o.via,
                o.kind,
                o.key,
                o.value,
                o.expects,
                o.early,
                o.status,
                o.result
            ));
        }
        report.push_str(&format!("\nonce healed: {last:?}"));
    }
    Err(report)
}

#[test]
fn ordered_writes_and_compare_and_set_stay_linearizable_whatever_the_clocks() {
    if let Some(seed) = replay_seed() {
        simulate(seed, &[]).unwrap_or_else(|e| panic!("{e}"));
        return;
    }
    let failed: Vec<String> = seeds(1000)
        .filter_map(|seed| simulate(seed, &[]).err())
        .collect();
    assert!(
        failed.is_empty(),
        "{} schedules failed; the first:\n{}",
        failed.len(),
        failed
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The checker is worth something only if it catches broken ordering: a
/// write that stops at its first round (lost behind a clock that runs
/// ahead), ordered writes that ignore the promises of a consensus round,
/// or that go on after a conditional write replaced them.
#[test]
fn planted_ordering_bugs_are_caught() {
    for bug in [Bug::OneRound, Bug::PromisesIgnored, Bug::ReplacedUnheeded] {
        let caught = (0..schedules(1000)).find_map(|seed| simulate(seed, &[bug]).err());
        assert!(caught.is_some(), "no schedule caught the planted {bug:?}");
    }
}
