//! The redb engine (redb 5): a copy-on-write B-tree in one file, chosen
//! with `[tables] engine = "redb"`; the only file that names redb.
//!
//! How it maps onto [`Engine`]: a tree is a redb table of byte strings; a
//! transaction is one redb write transaction (redb has one writer at a
//! time, so there are no conflicts and no retries) over the tables it
//! names. Commits are not fsynced ([`redb::Durability::None`]); a flusher
//! thread makes them durable every [`FLUSH_EVERY`] with an fsynced commit,
//! which is what sled's `flush_every_ms(500)` does for the sled engine: an
//! acknowledged metadata write is on disk within half a second. A crash
//! loses at most that half second, and redb reopens at its last durable
//! commit, whole. Reads are MVCC snapshots, so a snapshot copies one
//! consistent state without pausing writes.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use redb::{
    Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    TableHandle,
};

use super::{DbError, DbResult, Engine, SnapshotStats, TreeId, Tx, TxResult};

/// How often non-durable commits are made durable.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// The database file inside the engine's directory.
pub const FILE: &str = "hangar.redb";

type Def<'a> = TableDefinition<'a, &'static [u8], &'static [u8]>;

fn err(e: impl std::fmt::Display) -> DbError {
    DbError::Engine(e.to_string())
}

struct Shared {
    db: redb::Database,
    /// Non-durable commits so far (a sequence number).
    committed: AtomicU64,
    /// The sequence number up to which commits are durable. Held while
    /// a durable commit runs, so a flush that finds its writes covered by
    /// another's commit waits for that commit to finish.
    durable: Mutex<u64>,
    /// Set when the engine is dropped: the flusher makes a last flush and
    /// ends.
    closing: Mutex<bool>,
    wake: Condvar,
}

impl Shared {
    /// Make every commit made before this call durable.
    fn flush(&self) -> DbResult<()> {
        let target = self.committed.load(Ordering::Acquire);
        let mut durable = self.durable.lock().unwrap_or_else(|p| p.into_inner());
        if *durable >= target {
            return Ok(());
        }
        // Read before the commit begins: commits that land after it may
        // or may not be in it, and count as not durable yet.
        let covered = self.committed.load(Ordering::Acquire);
        let mut tx = self.db.begin_write().map_err(err)?;
        tx.set_durability(Durability::Immediate).map_err(err)?;
        tx.commit().map_err(err)?;
        *durable = covered;
        Ok(())
    }
}

pub struct RedbEngine {
    shared: Arc<Shared>,
    /// Names of the opened trees, by [`TreeId`].
    names: RwLock<Vec<String>>,
    transactions: AtomicU64,
    flusher: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
}

impl RedbEngine {
    /// Open (or create) the database in directory `dir` with a page cache
    /// of `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: u64) -> DbResult<RedbEngine> {
        std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        let path = dir.join(FILE);
        let db = redb::Builder::new()
            .set_cache_size(usize::try_from(cache_bytes).unwrap_or(usize::MAX))
            .create(&path)
            .map_err(|e| err(format!("{}: {e}", path.display())))?;
        let shared = Arc::new(Shared {
            db,
            committed: AtomicU64::new(0),
            durable: Mutex::new(0),
            closing: Mutex::new(false),
            wake: Condvar::new(),
        });
        let flusher = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("redb flusher".into())
                .spawn(move || flush_loop(&shared))
                .map_err(|e| err(format!("starting the redb flusher: {e}")))?
        };
        Ok(RedbEngine {
            shared,
            names: RwLock::new(Vec::new()),
            transactions: AtomicU64::new(0),
            flusher: Some(flusher),
            path,
        })
    }

    fn name_of(&self, t: TreeId) -> DbResult<String> {
        let names = self.names.read().unwrap_or_else(|p| p.into_inner());
        names.get(t.0).cloned().ok_or(DbError::NoTree(t))
    }

    /// One write transaction, not fsynced (the flusher makes it durable).
    fn write(&self, f: impl FnOnce(&redb::WriteTransaction) -> DbResult<()>) -> DbResult<()> {
        let mut tx = self.shared.db.begin_write().map_err(err)?;
        tx.set_durability(Durability::None).map_err(err)?;
        match f(&tx) {
            Ok(()) => {
                tx.commit().map_err(err)?;
                self.shared.committed.fetch_add(1, Ordering::AcqRel);
                Ok(())
            }
            Err(e) => {
                let _ = tx.abort();
                Err(e)
            }
        }
    }

    /// Run `f` on tree `t` in a read snapshot; a table never written reads
    /// as empty.
    fn read<T>(
        &self,
        t: TreeId,
        empty: T,
        f: impl FnOnce(&redb::ReadOnlyTable<&'static [u8], &'static [u8]>) -> DbResult<T>,
    ) -> DbResult<T> {
        let name = self.name_of(t)?;
        let tx = self.shared.db.begin_read().map_err(err)?;
        match tx.open_table(Def::new(&name)) {
            Ok(table) => f(&table),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(empty),
            Err(e) => Err(err(e)),
        }
    }

    /// Copy every table, as of one read snapshot, into a new database in
    /// `dir` (which must not exist). Writes go on meanwhile.
    fn copy_to(&self, dir: &Path) -> DbResult<SnapshotStats> {
        if dir.exists() {
            return Err(err(format!("{} exists already", dir.display())));
        }
        std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        let out = redb::Database::create(dir.join(FILE)).map_err(err)?;
        let src = self.shared.db.begin_read().map_err(err)?;
        let mut entries = 0u64;
        for handle in src.list_tables().map_err(err)? {
            let name = handle.name().to_string();
            let table = src.open_table(Def::new(&name)).map_err(err)?;
            let mut iter = table.iter().map_err(err)?.peekable();
            // Batches of 10,000 entries: one transaction per batch keeps
            // the copy's memory bounded.
            loop {
                let dst = out.begin_write().map_err(err)?;
                {
                    let mut t = dst.open_table(Def::new(&name)).map_err(err)?;
                    for _ in 0..10_000 {
                        let Some(kv) = iter.next() else { break };
                        let (k, v) = kv.map_err(err)?;
                        t.insert(k.value(), v.value()).map_err(err)?;
                        entries += 1;
                    }
                }
                dst.commit().map_err(err)?;
                if iter.peek().is_none() {
                    break;
                }
            }
        }
        Ok(SnapshotStats {
            entries,
            writes_paused: Duration::ZERO,
        })
    }
}

fn flush_loop(shared: &Shared) {
    let mut closing = shared.closing.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let (guard, _) = shared
            .wake
            .wait_timeout(closing, FLUSH_EVERY)
            .unwrap_or_else(|p| p.into_inner());
        closing = guard;
        let last = *closing;
        drop(closing);
        if let Err(e) = shared.flush() {
            tracing::warn!("flushing the metadata store (redb): {e}");
        }
        if last {
            return;
        }
        closing = shared.closing.lock().unwrap_or_else(|p| p.into_inner());
    }
}

impl Drop for RedbEngine {
    fn drop(&mut self) {
        *self
            .shared
            .closing
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
    }
}

impl Engine for RedbEngine {
    fn open_tree(&self, name: &str) -> DbResult<TreeId> {
        let mut names = self.names.write().unwrap_or_else(|p| p.into_inner());
        if let Some(pos) = names.iter().position(|n| n == name) {
            return Ok(TreeId(pos));
        }
        // Created now, so that reads find it.
        self.write(|tx| tx.open_table(Def::new(name)).map(drop).map_err(err))?;
        names.push(name.to_string());
        Ok(TreeId(names.len() - 1))
    }

    fn get(&self, t: TreeId, key: &[u8]) -> DbResult<Option<Vec<u8>>> {
        self.read(t, None, |table| {
            Ok(table.get(key).map_err(err)?.map(|v| v.value().to_vec()))
        })
    }

    fn insert(&self, t: TreeId, key: &[u8], value: &[u8]) -> DbResult<()> {
        let name = self.name_of(t)?;
        self.write(|tx| {
            let mut table = tx.open_table(Def::new(&name)).map_err(err)?;
            table.insert(key, value).map(drop).map_err(err)
        })
    }

    fn remove(&self, t: TreeId, key: &[u8]) -> DbResult<()> {
        let name = self.name_of(t)?;
        self.write(|tx| {
            let mut table = tx.open_table(Def::new(&name)).map_err(err)?;
            table.remove(key).map(drop).map_err(err)
        })
    }

    fn range(
        &self,
        t: TreeId,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> DbResult<Vec<(Vec<u8>, Vec<u8>)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // redb panics on a range whose start lies after its end; such a
        // range is empty.
        let inverted = match (start, end) {
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
            | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
            _ => false,
        };
        if inverted {
            return Ok(Vec::new());
        }
        self.read(t, Vec::new(), |table| {
            let range = table.range((start, end)).map_err(err)?;
            let entries = range.map(|kv| {
                let (k, v) = kv.map_err(err)?;
                Ok((k.value().to_vec(), v.value().to_vec()))
            });
            super::take_range(entries, reverse, limit)
        })
    }

    fn len(&self, t: TreeId) -> DbResult<usize> {
        self.read(t, 0, |table| {
            Ok(usize::try_from(table.len().map_err(err)?).unwrap_or(usize::MAX))
        })
    }

    fn transaction(
        &self,
        declared: &[TreeId],
        f: &mut dyn FnMut(&mut dyn Tx) -> TxResult<()>,
    ) -> DbResult<()> {
        // redb refuses to open a table twice in one transaction.
        let mut unique: Vec<TreeId> = Vec::with_capacity(declared.len());
        for t in declared {
            if !unique.contains(t) {
                unique.push(*t);
            }
        }
        let names = unique
            .iter()
            .map(|t| self.name_of(*t))
            .collect::<DbResult<Vec<_>>>()?;
        self.write(|tx| {
            let mut tables = Vec::with_capacity(names.len());
            for name in &names {
                tables.push(tx.open_table(Def::new(name)).map_err(err)?);
            }
            f(&mut RedbTx {
                declared: &unique,
                tables,
            })
        })?;
        self.transactions.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }

    fn flush(&self) -> DbResult<()> {
        self.shared.flush()
    }

    fn snapshot(&self, dir: &Path) -> DbResult<SnapshotStats> {
        self.copy_to(dir)
            .map_err(|e| err(format!("snapshot of {}: {e}", self.path.display())))
    }

    fn name(&self) -> &'static str {
        "redb"
    }
}

struct RedbTx<'a, 't> {
    declared: &'a [TreeId],
    tables: Vec<redb::Table<'t, &'static [u8], &'static [u8]>>,
}

impl<'t> RedbTx<'_, 't> {
    fn table(&mut self, t: TreeId) -> TxResult<&mut redb::Table<'t, &'static [u8], &'static [u8]>> {
        let i = self
            .declared
            .iter()
            .position(|d| *d == t)
            .ok_or(DbError::Undeclared(t))?;
        self.tables.get_mut(i).ok_or(DbError::Undeclared(t))
    }
}

impl Tx for RedbTx<'_, '_> {
    fn get(&mut self, t: TreeId, key: &[u8]) -> TxResult<Option<Vec<u8>>> {
        Ok(self
            .table(t)?
            .get(key)
            .map_err(err)?
            .map(|v| v.value().to_vec()))
    }

    fn insert(&mut self, t: TreeId, key: &[u8], value: &[u8]) -> TxResult<()> {
        self.table(t)?.insert(key, value).map(drop).map_err(err)
    }

    fn remove(&mut self, t: TreeId, key: &[u8]) -> TxResult<()> {
        self.table(t)?.remove(key).map(drop).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flush returns only once every commit made before it is covered
    /// by a durable commit that has finished, also when another thread's
    /// flush is the one committing (a consensus promise must be on disk
    /// before it is answered).
    #[test]
    fn a_flush_waits_for_the_durable_commit_that_covers_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(RedbEngine::open(dir.path(), 8 << 20).unwrap());
        let t = db.open_tree("t").unwrap();
        let threads: Vec<_> = (0..4u8)
            .map(|i| {
                let db = db.clone();
                std::thread::spawn(move || {
                    for j in 0..50u8 {
                        db.insert(t, &[i, j], b"v").unwrap();
                        let mine = db.shared.committed.load(Ordering::Acquire);
                        db.flush().unwrap();
                        let durable = *db.shared.durable.lock().unwrap();
                        assert!(durable >= mine, "flush returned at {durable} before {mine}");
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
    }
}
