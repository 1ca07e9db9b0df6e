//! The storage-engine boundary: a small, synchronous, ordered key-value
//! interface that the tables use, with sled as the default embedded engine,
//! redb as the other (`[tables] engine`), and an in-memory engine for unit
//! tests.
//!
//! Tables never see an engine's types. An engine holds named trees (opened
//! once, then addressed by [`TreeId`]), each an ordered map of byte strings,
//! with point reads and writes, bounded range scans, and atomic transactions
//! over several trees. Range scans return at most `limit` entries and the
//! caller pages: no iterator borrows the engine, so an engine is free to
//! implement scans however suits it. Transactions must not iterate (sled's
//! cannot), only get, insert and remove; the closure may be run more than
//! once if the engine retries on conflict.
//!
//! `conformance` runs one suite against every engine.

#[cfg(test)]
pub mod mem;
pub mod redb_engine;
pub mod sled_engine;
pub mod snapshot;

use std::ops::Bound;
use std::sync::Arc;

/// A tree opened on an engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TreeId(pub usize);

/// A storage failure, with the engine's explanation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    #[error("metadata storage error: {0}")]
    Engine(String),
    #[error("metadata transaction aborted: {0}")]
    Aborted(String),
    #[error("unknown tree {0:?}")]
    NoTree(TreeId),
    /// A transaction touched a tree it did not name up front (a bug).
    #[error("tree {0:?} used by a transaction that did not declare it")]
    Undeclared(TreeId),
}

pub type DbResult<T> = Result<T, DbError>;

/// Why a transaction closure stops: it either aborts on purpose (rolled
/// back, error returned) or hits a storage error.
pub type TxResult<T> = Result<T, DbError>;

/// Operations allowed inside a transaction.
pub trait Tx {
    fn get(&mut self, tree: TreeId, key: &[u8]) -> TxResult<Option<Vec<u8>>>;
    fn insert(&mut self, tree: TreeId, key: &[u8], value: &[u8]) -> TxResult<()>;
    fn remove(&mut self, tree: TreeId, key: &[u8]) -> TxResult<()>;
}

/// An embedded ordered key-value engine.
// Point writes are part of the interface every engine offers; today's
// tables write through transactions only.
#[allow(dead_code)]
pub trait Engine: Send + Sync + 'static {
    /// Open (creating if needed) the tree called `name`.
    fn open_tree(&self, name: &str) -> DbResult<TreeId>;
    fn get(&self, tree: TreeId, key: &[u8]) -> DbResult<Option<Vec<u8>>>;
    fn insert(&self, tree: TreeId, key: &[u8], value: &[u8]) -> DbResult<()>;
    fn remove(&self, tree: TreeId, key: &[u8]) -> DbResult<()>;
    /// Up to `limit` entries with keys in `(start, end)`, in key order (or
    /// reverse order).
    fn range(
        &self,
        tree: TreeId,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> DbResult<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Number of entries in a tree. Walks it with sled (no allocation per
    /// entry, but O(n)): for occasional progress figures, not hot paths.
    fn len(&self, tree: TreeId) -> DbResult<usize>;
    /// Run `f` atomically: all its writes happen, or none. `trees` are
    /// the trees `f` may touch (others fail with [`DbError::Undeclared`]):
    /// sled builds a transaction's overlay, and checks and commits it, for
    /// every tree it names, so naming the few a write needs (rather than
    /// the agent's fifty) is most of a small transaction's cost.
    fn transaction(
        &self,
        trees: &[TreeId],
        f: &mut dyn FnMut(&mut dyn Tx) -> TxResult<()>,
    ) -> DbResult<()>;
    /// Transactions committed since the engine opened (a figure for
    /// metrics and for the tests that bound a PUT's cost).
    fn transactions(&self) -> u64;
    /// Make every acknowledged write durable.
    fn flush(&self) -> DbResult<()>;
    /// Copy every tree into a new store at `dir` (which must not exist)
    /// while the agent runs. The copy is one consistent state of all
    /// trees: writes wait while it is read (reads go on), since derived
    /// data (Merkle trees and their queue, counters, block reference
    /// counts) must agree with the items in a restored store, or it would
    /// never converge.
    fn snapshot(&self, dir: &std::path::Path) -> DbResult<SnapshotStats>;
    /// Name of the engine, for status output.
    fn name(&self) -> &'static str;
}

/// What a snapshot copied, and how long writes waited for it.
#[derive(Clone, Copy, Debug, Default)]
pub struct SnapshotStats {
    pub entries: u64,
    pub writes_paused: std::time::Duration,
}

/// A shared handle on an engine.
pub type Db = Arc<dyn Engine>;

/// Open the metadata store in `dir` with the configured engine. A store
/// written by the other engine is refused, naming both: opening it with
/// the wrong one would start an empty store beside the node's metadata.
pub fn open(
    engine: hangar_common::config::MetadataEngine,
    dir: &std::path::Path,
    cache_bytes: u64,
) -> DbResult<Db> {
    use hangar_common::config::MetadataEngine;
    let has_redb = dir.join(redb_engine::FILE).exists();
    // sled keeps its settings in `conf` beside its log `db`.
    let has_sled = dir.join("conf").exists();
    let refuse = |found: &str, configured: &str| {
        Err(DbError::Engine(format!(
            "{} holds a {found} store but [tables] engine is \"{configured}\"; set engine = \"{found}\" (switching engines needs a new metadata_dir, refilled from the other replicas)",
            dir.display()
        )))
    };
    match engine {
        MetadataEngine::Sled if has_redb => refuse("redb", "sled"),
        MetadataEngine::Redb if has_sled => refuse("sled", "redb"),
        MetadataEngine::Sled => Ok(Arc::new(sled_engine::SledEngine::open(dir, cache_bytes)?)),
        MetadataEngine::Redb => Ok(Arc::new(redb_engine::RedbEngine::open(dir, cache_bytes)?)),
    }
}

/// The first `limit` entries of a range, from its start or (`reverse`)
/// from its end: what both disk engines do with their iterators.
pub(crate) fn take_range<I>(
    range: I,
    reverse: bool,
    limit: usize,
) -> DbResult<Vec<(Vec<u8>, Vec<u8>)>>
where
    I: DoubleEndedIterator<Item = DbResult<(Vec<u8>, Vec<u8>)>>,
{
    let take = |it: &mut dyn Iterator<Item = DbResult<(Vec<u8>, Vec<u8>)>>| {
        it.take(limit).collect::<DbResult<Vec<_>>>()
    };
    if reverse {
        take(&mut range.rev())
    } else {
        take(&mut { range })
    }
}

/// Bounds that select every key starting with `prefix`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod conformance {
    //! One suite, every engine.
    use super::*;

    fn engines() -> Vec<(Db, Option<tempfile::TempDir>)> {
        let dir = tempfile::tempdir().expect("tempdir");
        let sled = sled_engine::SledEngine::open(dir.path(), 16 << 20).expect("open sled");
        let redb_dir = tempfile::tempdir().expect("tempdir");
        let redb = redb_engine::RedbEngine::open(redb_dir.path(), 16 << 20).expect("open redb");
        vec![
            (Arc::new(mem::MemEngine::default()), None),
            (Arc::new(sled), Some(dir)),
            (Arc::new(redb), Some(redb_dir)),
        ]
    }

    #[test]
    fn point_operations_read_back_what_was_written() {
        for (db, _dir) in engines() {
            let t = db.open_tree("t").unwrap();
            let u = db.open_tree("u").unwrap();
            assert_eq!(
                db.open_tree("t").unwrap(),
                t,
                "{}: reopening gives the same tree",
                db.name()
            );
            db.insert(t, b"k", b"v1").unwrap();
            db.insert(t, b"k", b"v2").unwrap();
            assert_eq!(
                db.get(t, b"k").unwrap(),
                Some(b"v2".to_vec()),
                "{}",
                db.name()
            );
            assert_eq!(
                db.get(u, b"k").unwrap(),
                None,
                "{}: trees are separate",
                db.name()
            );
            db.remove(t, b"k").unwrap();
            assert_eq!(db.get(t, b"k").unwrap(), None, "{}", db.name());
            db.remove(t, b"absent").unwrap();
        }
    }

    #[test]
    fn ranges_respect_bounds_order_and_limit() {
        for (db, _dir) in engines() {
            let t = db.open_tree("t").unwrap();
            for k in [b"a", b"b", b"c", b"d"] {
                db.insert(t, k, k).unwrap();
            }
            let keys =
                |v: Vec<(Vec<u8>, Vec<u8>)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
            let all = db
                .range(t, Bound::Unbounded, Bound::Unbounded, false, 10)
                .unwrap();
            assert_eq!(
                keys(all),
                vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]
            );
            let mid = db
                .range(t, Bound::Excluded(b"a"), Bound::Included(b"c"), false, 10)
                .unwrap();
            assert_eq!(
                keys(mid),
                vec![b"b".to_vec(), b"c".to_vec()],
                "{}",
                db.name()
            );
            let rev = db
                .range(t, Bound::Unbounded, Bound::Excluded(b"d"), true, 2)
                .unwrap();
            assert_eq!(
                keys(rev),
                vec![b"c".to_vec(), b"b".to_vec()],
                "{}",
                db.name()
            );
        }
    }

    #[test]
    fn transactions_are_atomic_across_trees() {
        for (db, _dir) in engines() {
            let t = db.open_tree("t").unwrap();
            let u = db.open_tree("u").unwrap();
            let before = db.transactions();
            db.transaction(&[t, u], &mut |tx| {
                tx.insert(t, b"x", b"1")?;
                tx.insert(u, b"y", b"2")?;
                assert_eq!(
                    tx.get(t, b"x")?,
                    Some(b"1".to_vec()),
                    "reads see the transaction's writes"
                );
                Ok(())
            })
            .unwrap();
            assert_eq!(db.get(u, b"y").unwrap(), Some(b"2".to_vec()));
            assert_eq!(db.transactions(), before + 1, "{}", db.name());
            let res = db.transaction(&[t, u], &mut |tx| {
                tx.insert(t, b"z", b"3")?;
                tx.remove(u, b"y")?;
                Err(DbError::Aborted("on purpose".into()))
            });
            assert!(matches!(res, Err(DbError::Aborted(_))), "{}", db.name());
            assert_eq!(
                db.get(t, b"z").unwrap(),
                None,
                "{}: aborted writes vanish",
                db.name()
            );
            assert_eq!(
                db.get(u, b"y").unwrap(),
                Some(b"2".to_vec()),
                "{}",
                db.name()
            );
            assert_eq!(db.transactions(), before + 1, "{}: aborts", db.name());
        }
    }

    /// A transaction touches only the trees it names: anything else is a
    /// bug, refused whole (nothing written) on every engine.
    #[test]
    fn transactions_refuse_undeclared_trees() {
        for (db, _dir) in engines() {
            let t = db.open_tree("t").unwrap();
            let u = db.open_tree("u").unwrap();
            for op in 0..3 {
                let res = db.transaction(&[t], &mut |tx| {
                    tx.insert(t, b"a", b"1")?;
                    match op {
                        0 => tx.insert(u, b"a", b"1"),
                        1 => tx.get(u, b"a").map(|_| ()),
                        _ => tx.remove(u, b"a"),
                    }
                });
                assert!(
                    matches!(res, Err(DbError::Undeclared(x)) if x == u),
                    "{}: {res:?}",
                    db.name()
                );
                assert_eq!(db.get(t, b"a").unwrap(), None, "{}", db.name());
            }
        }
    }

    #[test]
    fn sled_data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled_engine::SledEngine::open(dir.path(), 16 << 20).unwrap();
            let t = db.open_tree("t").unwrap();
            db.insert(t, b"k", b"v").unwrap();
            db.flush().unwrap();
        }
        let db = sled_engine::SledEngine::open(dir.path(), 16 << 20).unwrap();
        let t = db.open_tree("t").unwrap();
        assert_eq!(db.get(t, b"k").unwrap(), Some(b"v".to_vec()));
    }

    /// A snapshot taken while transactions keep two trees in step (an
    /// item tree and its counter, as the tables do) holds them in step too.
    #[test]
    fn a_sled_snapshot_under_writes_is_one_consistent_state() {
        let dir = tempfile::tempdir().unwrap();
        let db: Db =
            Arc::new(sled_engine::SledEngine::open(&dir.path().join("db"), 16 << 20).unwrap());
        snapshot_under_writes(&db, dir.path(), |p| {
            Arc::new(sled_engine::SledEngine::open(p, 16 << 20).unwrap())
        });
    }

    /// Snapshot `db` three times while a writer keeps an item tree and its
    /// counter in step; reopen each copy with `reopen` and check both agree.
    fn snapshot_under_writes(
        db: &Db,
        dir: &std::path::Path,
        reopen: impl Fn(&std::path::Path) -> Db,
    ) {
        let (items, count) = (
            db.open_tree("items").unwrap(),
            db.open_tree("count").unwrap(),
        );
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (db, stop) = (db.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    db.transaction(&[items, count], &mut |tx| {
                        tx.insert(items, &i.to_be_bytes(), &[0; 64])?;
                        tx.insert(count, b"n", &(i + 1).to_be_bytes())
                    })
                    .unwrap();
                    i += 1;
                }
                i
            })
        };
        // Let it write a while, then snapshot three times as it goes on.
        while db
            .get(count, b"n")
            .unwrap()
            .is_none_or(|n| n < 2000u64.to_be_bytes().to_vec())
        {
            std::thread::yield_now();
        }
        for k in 0..3 {
            let copy = dir.join(format!("copy{k}"));
            let stats = db.snapshot(&copy).unwrap();
            assert!(
                !copy.with_extension("dump").exists(),
                "the dump is removed once loaded"
            );
            let snap = reopen(&copy);
            let (si, sc) = (
                snap.open_tree("items").unwrap(),
                snap.open_tree("count").unwrap(),
            );
            let n = snap
                .get(sc, b"n")
                .unwrap()
                .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                .map(u64::from_be_bytes)
                .unwrap();
            let held = snap
                .range(si, Bound::Unbounded, Bound::Unbounded, false, usize::MAX)
                .unwrap()
                .len() as u64;
            assert_eq!(
                held,
                n,
                "{} snapshot {k}: items and their counter agree",
                db.name()
            );
            // Every entry of every tree: the items, the counter, nothing else.
            assert_eq!(
                stats.entries,
                n + 1,
                "{} snapshot {k}: entries copied",
                db.name()
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(writer.join().unwrap() > 2000);
    }

    #[test]
    fn redb_data_survives_reopening_and_flushes_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = redb_engine::RedbEngine::open(dir.path(), 16 << 20).unwrap();
            let t = db.open_tree("t").unwrap();
            db.insert(t, b"k", b"v").unwrap();
            // No explicit flush: dropping the engine flushes, as the
            // flusher thread does every half second.
        }
        let db = redb_engine::RedbEngine::open(dir.path(), 16 << 20).unwrap();
        let t = db.open_tree("t").unwrap();
        assert_eq!(db.get(t, b"k").unwrap(), Some(b"v".to_vec()));
    }

    /// A store is opened by the engine that wrote it, or refused.
    #[test]
    fn a_store_of_the_other_engine_is_refused() {
        use hangar_common::config::MetadataEngine;
        for (wrote, other) in [
            (MetadataEngine::Sled, MetadataEngine::Redb),
            (MetadataEngine::Redb, MetadataEngine::Sled),
        ] {
            let dir = tempfile::tempdir().unwrap();
            {
                let db = open(wrote, dir.path(), 8 << 20).unwrap();
                let t = db.open_tree("t").unwrap();
                db.insert(t, b"k", b"v").unwrap();
                db.flush().unwrap();
            }
            let e = match open(other, dir.path(), 8 << 20) {
                Ok(db) => panic!("{wrote:?} store opened as {}", db.name()),
                Err(e) => e.to_string(),
            };
            assert!(e.contains("engine"), "{e}");
            let db = open(wrote, dir.path(), 8 << 20).unwrap();
            let t = db.open_tree("t").unwrap();
            assert_eq!(db.get(t, b"k").unwrap(), Some(b"v".to_vec()));
        }
    }

    /// Snapshots of both engines: taken under writes, each holds one
    /// consistent state (items and their counter agree).
    #[test]
    fn a_redb_snapshot_under_writes_is_one_consistent_state() {
        let dir = tempfile::tempdir().unwrap();
        let db: Db =
            Arc::new(redb_engine::RedbEngine::open(&dir.path().join("db"), 16 << 20).unwrap());
        snapshot_under_writes(&db, dir.path(), |p| {
            Arc::new(redb_engine::RedbEngine::open(p, 16 << 20).unwrap())
        });
    }

    #[test]
    fn prefix_end_bounds_a_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff]), None);
    }
}
