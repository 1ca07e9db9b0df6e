//! Time: the node's wall clock, and the hybrid logical clock that orders
//! writes.
//!
//! Hangar's users run nodes on old machines at home, where a clock minutes
//! off (dead RTC battery, no NTP) is the normal case. Wall-clock time alone
//! would order a client's second write, taken by a node whose clock is
//! behind, before its first one, and the second write would be lost. So
//! every timestamp that orders writes (object versions, delete markers,
//! bucket and key settings, layout changes) comes from a **hybrid logical
//! clock** ([`Hlc`]): it reads the wall clock, never goes backwards, and
//! never falls below a timestamp the node has seen ([`Hlc::observe`]: pings,
//! table items stored or read, answers to writes). That alone does not
//! order a write after one acknowledged by another node a moment ago (the
//! node may not have heard of it yet); the table layer closes that gap per
//! item: a write of an item that replaces a newer one is redone above it
//! (`Table::insert_latest` in the agent).
//!
//! What stays on the wall clock ([`wall_ms`]): what is about real time and
//! the client's clock (SigV4 skew, presigned URL expiry), local timers
//! (tombstone delays, retries), and what an operator reads (last seen).
//!
//! Tests shift a node's clock with the environment variable
//! [`OFFSET_ENV`] (signed milliseconds), read once at start: every reading
//! of the wall clock in the process moves with it, as a wrong system clock
//! would.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Environment variable that shifts this process's wall clock by signed
/// milliseconds (tests only: it simulates a machine with a wrong clock).
pub const OFFSET_ENV: &str = "HANGAR_TEST_CLOCK_OFFSET_MS";

/// How far ahead of this node's wall clock a timestamp may be and still
/// move its hybrid clock. Beyond that it is a corrupted item or a node
/// whose clock is wildly wrong: following it would pin every later write
/// of the cluster to that date. Writes still order themselves after such
/// an item (they take a timestamp above what they replace), they just do
/// not drag the clock along.
pub const MAX_FORWARD_US: u64 = 7 * 24 * 3600 * 1_000_000;

/// The test offset, in microseconds.
fn offset_us() -> i64 {
    static OFFSET: OnceLock<i64> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        let Ok(v) = std::env::var(OFFSET_ENV) else {
            return 0;
        };
        match v.trim().parse::<i64>() {
            Ok(ms) => ms.saturating_mul(1000),
            Err(e) => {
                // A test that meant to skew this clock must not pass
                // silently on time: say why the offset is ignored.
                eprintln!("{OFFSET_ENV}={v:?} ignored: not a signed number of milliseconds ({e})");
                0
            }
        }
    })
}

/// Microseconds since the Unix epoch on this node's wall clock (shifted by
/// [`OFFSET_ENV`] in tests).
pub fn wall_us() -> u64 {
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    real.saturating_add_signed(offset_us())
}

/// Milliseconds since the Unix epoch on this node's wall clock.
pub fn wall_ms() -> u64 {
    wall_us() / 1000
}

/// This node's wall clock as a `SystemTime` (for code that formats dates
/// or compares with a client's clock).
pub fn wall_time() -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_micros(wall_us())
}

/// A hybrid logical clock, in microseconds since the Unix epoch.
///
/// Properties (checked by the tests below):
/// - **monotonic**: every [`Hlc::now`] is greater than every earlier one;
/// - **never below what was seen**: after `observe(t)`, `now() > t` (for
///   any `t` less than [`MAX_FORWARD_US`] ahead of the wall clock);
/// - **bounded drift**: `now()` is at most the greatest of the wall clock
///   and the timestamps observed, plus one microsecond per call made within
///   the same microsecond: it runs ahead of real time only as far as the
///   most advanced clock it heard of.
pub struct Hlc {
    last: AtomicU64,
    physical: fn() -> u64,
    /// Added to every reading of `physical`: a machine whose clock is off
    /// (the simulation of the table layer gives each node its own).
    offset_us: i64,
}

impl Hlc {
    /// A clock reading `physical` (microseconds) for real time.
    pub const fn new(physical: fn() -> u64) -> Hlc {
        Hlc::skewed(physical, 0)
    }

    /// A clock reading `physical` shifted by `offset_us` (signed
    /// microseconds): one node of a simulated cluster whose clocks
    /// disagree.
    pub const fn skewed(physical: fn() -> u64, offset_us: i64) -> Hlc {
        Hlc {
            last: AtomicU64::new(0),
            physical,
            offset_us,
        }
    }

    fn physical(&self) -> u64 {
        (self.physical)().saturating_add_signed(self.offset_us)
    }

    /// A new timestamp, greater than every one this clock gave or saw.
    pub fn now(&self) -> u64 {
        let phys = self.physical();
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = phys.max(last.saturating_add(1));
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// A new timestamp greater than `t` as well (for a write that replaces
    /// an item written at `t`, whatever `t`).
    pub fn now_after(&self, t: u64) -> u64 {
        self.observe(t);
        self.now().max(t.saturating_add(1))
    }

    /// Take a timestamp seen elsewhere into account: later readings are
    /// above it. Returns false (and changes nothing) for a timestamp more
    /// than [`MAX_FORWARD_US`] ahead of the wall clock.
    pub fn observe(&self, t: u64) -> bool {
        // The common case (every item a node decodes comes here): nothing
        // newer than what the clock already holds, no need to read time.
        if t <= self.last.load(Ordering::Relaxed) {
            return true;
        }
        if t > self.physical().saturating_add(MAX_FORWARD_US) {
            return false;
        }
        self.last.fetch_max(t, Ordering::AcqRel);
        true
    }

    /// The latest timestamp given or seen, without making a new one.
    pub fn peek(&self) -> u64 {
        self.last.load(Ordering::Relaxed).max(self.physical())
    }
}

/// The process's hybrid clock.
pub fn hlc() -> &'static Hlc {
    static CLOCK: Hlc = Hlc::new(wall_us);
    &CLOCK
}

/// A timestamp for a new write, in microseconds (see [`Hlc::now`]).
pub fn timestamp_us() -> u64 {
    hlc().now()
}

/// A timestamp for a new write, in milliseconds, for the registers that
/// count in milliseconds (bucket and key settings, layout changes): never
/// below what the node has seen, rounded up so it is not below the
/// microsecond reading either.
pub fn timestamp_ms() -> u64 {
    timestamp_us().div_ceil(1000)
}

/// Take a millisecond timestamp seen elsewhere into account.
pub fn observe_ms(t: u64) {
    hlc().observe(t.saturating_mul(1000));
}

/// A clock offset, for people: "5 min 3 s behind", "1.2 s ahead".
pub fn describe_offset(offset_ms: i64) -> String {
    let side = if offset_ms < 0 { "behind" } else { "ahead" };
    let ms = offset_ms.unsigned_abs();
    let text = if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        // Rounded: a measured offset is off by a few milliseconds.
        let s = (ms + 500) / 1000;
        if s.is_multiple_of(60) {
            format!("{} min", s / 60)
        } else {
            format!("{} min {} s", s / 60, s % 60)
        }
    } else {
        let m = (ms + 30_000) / 60_000;
        if m.is_multiple_of(60) {
            format!("{} h", m / 60)
        } else {
            format!("{} h {} min", m / 60, m % 60)
        }
    };
    format!("{text} {side}")
}

/// An offset against a reference, for people: "5 min behind the
/// cluster's", "2.0 s ahead of this node's".
pub fn compare_offset(offset_ms: i64, reference: &str) -> String {
    if offset_ms < 0 {
        format!("{} {reference}", describe_offset(offset_ms))
    } else {
        format!("{} of {reference}", describe_offset(offset_ms))
    }
}

/// Clock offsets above this are worth an operator's attention: writes stay
/// ordered whatever the offset, but Last-Modified dates, lifecycle ages and
/// the 15-minute SigV4 window follow the clocks.
pub const SKEW_WARN_MS: i64 = 1000;

/// What an operator should read about a node's clock offset from the
/// cluster's (see [`relative_to_median`]), if it is above
/// [`SKEW_WARN_MS`].
pub fn skew_warning(node: &str, offset_ms: i64) -> Option<String> {
    (offset_ms.abs() > SKEW_WARN_MS).then(|| {
        format!(
            "node {node}'s clock is {}: set up NTP on it (timedatectl set-ntp true). Writes stay ordered, but Last-Modified dates, lifecycle ages and request signatures follow its clock.",
            compare_offset(offset_ms, "the cluster's"),
        )
    })
}

/// Offsets of each node's clock from the cluster's median clock, given
/// each node's offset from one observer (the observer itself at 0): the
/// median is what most nodes agree on, so a node whose clock is wrong is
/// named whichever node observes.
pub fn relative_to_median(offsets: &[i64]) -> Vec<i64> {
    if offsets.is_empty() {
        return Vec::new();
    }
    let mut sorted = offsets.to_vec();
    sorted.sort_unstable();
    let median = sorted[(sorted.len() - 1) / 2];
    offsets.iter().map(|o| o - median).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::AtomicU64;

    // A settable physical clock per test (tests run in parallel: one static
    // each).
    macro_rules! fake_clock {
        ($name:ident) => {
            static $name: AtomicU64 = AtomicU64::new(1_000_000_000);
        };
    }

    fake_clock!(STILL);
    fn still() -> u64 {
        STILL.load(Ordering::Relaxed)
    }

    #[test]
    fn readings_increase_even_when_the_wall_clock_stands_still() {
        let c = Hlc::new(still);
        let a = c.now();
        let b = c.now();
        assert!(b > a);
        assert_eq!(a, 1_000_000_000);
    }

    fake_clock!(BACK);
    fn back() -> u64 {
        BACK.load(Ordering::Relaxed)
    }

    #[test]
    fn a_wall_clock_set_back_does_not_move_the_clock_back() {
        let c = Hlc::new(back);
        let a = c.now();
        BACK.store(1_000_000_000 - 300_000_000, Ordering::Relaxed);
        assert!(c.now() > a);
    }

    fake_clock!(SEEN);
    fn seen() -> u64 {
        SEEN.load(Ordering::Relaxed)
    }

    #[test]
    fn a_clock_behind_gives_timestamps_above_what_it_saw() {
        // Another node, 5 minutes ahead, wrote at t.
        let c = Hlc::new(seen);
        let t = seen() + 300_000_000;
        assert!(c.observe(t));
        assert!(c.now() > t);
        // A timestamp years ahead (a corrupted item) does not pin the clock.
        let absurd = seen() + 10 * 365 * 24 * 3600 * 1_000_000;
        assert!(!c.observe(absurd));
        assert!(c.now() < absurd);
        // But a write replacing it still goes above it.
        assert!(c.now_after(absurd) > absurd);
    }

    #[test]
    fn offsets_are_described_for_people() {
        assert_eq!(describe_offset(-300_000), "5 min behind");
        assert_eq!(describe_offset(-299_996), "5 min behind");
        assert_eq!(
            compare_offset(-299_996, "this node's"),
            "5 min behind this node's"
        );
        assert_eq!(
            compare_offset(2_000, "this node's"),
            "2.0 s ahead of this node's"
        );
        assert_eq!(describe_offset(303_000), "5 min 3 s ahead");
        assert_eq!(describe_offset(1_200), "1.2 s ahead");
        assert_eq!(describe_offset(-40), "40 ms behind");
        assert_eq!(describe_offset(7_200_000), "2 h ahead");
    }

    #[test]
    fn only_offsets_that_matter_are_warned_about() {
        assert_eq!(skew_warning("n1", 800), None);
        let w = skew_warning("n2", -300_000).expect("warned");
        assert!(
            w.starts_with("node n2's clock is 5 min behind the cluster's: set up NTP"),
            "{w}"
        );
        let w = skew_warning("n3", 2_000).expect("warned");
        assert!(w.contains("2.0 s ahead of the cluster's"), "{w}");
    }

    #[test]
    fn the_wrong_clock_is_named_whichever_node_observes() {
        // Seen from a correct node: B 5 min behind, C 5 min ahead.
        assert_eq!(
            relative_to_median(&[0, -300_000, 300_000]),
            vec![0, -300_000, 300_000]
        );
        // Seen from B, the same cluster.
        assert_eq!(
            relative_to_median(&[300_000, 0, 600_000]),
            vec![0, -300_000, 300_000]
        );
        // Two nodes: the lower is the reference (no majority to tell).
        assert_eq!(relative_to_median(&[0, 2_000]), vec![0, 2_000]);
    }

    fake_clock!(PROP);
    fn prop() -> u64 {
        PROP.load(Ordering::Relaxed)
    }

    #[derive(Clone, Debug)]
    enum Step {
        /// The wall clock moves by this many µs (either way).
        Wall(i64),
        /// A timestamp this far from the wall clock is observed.
        Observe(i64),
        Now,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (-5_000_000i64..5_000_000).prop_map(Step::Wall),
            (-600_000_000i64..600_000_000).prop_map(Step::Observe),
            Just(Step::Now),
        ]
    }

    proptest! {
        #[test]
        fn monotonic_above_everything_seen_and_bounded(steps in proptest::collection::vec(step(), 1..60)) {
            PROP.store(1_000_000_000_000, Ordering::Relaxed);
            let c = Hlc::new(prop);
            let mut last_given = 0u64;
            let mut max_seen = 0u64;
            for s in steps {
                match s {
                    Step::Wall(d) => {
                        PROP.store(prop().saturating_add_signed(d), Ordering::Relaxed);
                    }
                    Step::Observe(d) => {
                        let t = prop().saturating_add_signed(d);
                        prop_assert!(c.observe(t));
                        max_seen = max_seen.max(t);
                    }
                    Step::Now => {
                        let t = c.now();
                        // Monotonic.
                        prop_assert!(t > last_given);
                        // Never below a received timestamp.
                        prop_assert!(t > max_seen);
                        // Bounded drift: no further ahead than the most
                        // advanced of the wall clock, what was seen and
                        // what was given, by one µs.
                        prop_assert!(t <= max_seen.max(prop()).max(last_given) + 1);
                        last_given = t;
                    }
                }
            }
        }
    }
}
