//! The sled engine (sled 0.34, pinned): the only file that names sled.
//!
//! sled's weak spots shape this adapter: its default page cache is 1 GiB,
//! far too much for a Raspberry Pi, so the cache size is always explicit;
//! its `len()` walks the tree, so callers keep counters instead; its
//! transactions cannot iterate, which the [`Tx`] trait does not offer.

use std::ops::Bound;
use std::path::Path;
use std::sync::RwLock;

use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};

use super::{DbError, DbResult, Engine, SnapshotStats, TreeId, Tx, TxResult};

pub struct SledEngine {
    db: sled::Db,
    trees: RwLock<Vec<(String, sled::Tree)>>,
    /// Writes hold it shared, a snapshot exclusively: sled cannot read all
    /// trees at one instant, so writes wait while a snapshot copies them,
    /// and the copy is one consistent state (derived data, such as Merkle
    /// trees, queues, counters and block reference counts, agrees with the
    /// items it derives from).
    writes: RwLock<()>,
    /// Transactions committed.
    transactions: std::sync::atomic::AtomicU64,
}

fn err(e: sled::Error) -> DbError {
    DbError::Engine(e.to_string())
}

impl SledEngine {
    /// Open (or create) the database in `dir` with a page cache of
    /// `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: u64) -> DbResult<SledEngine> {
        // A store closed a moment ago in this process keeps its file lock
        // until sled's flusher thread has finished: wait for it, briefly.
        // (Another process holding it still fails, after that wait.)
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let db = loop {
            let opened = sled::Config::new()
                .path(dir)
                .cache_capacity(cache_bytes)
                .flush_every_ms(Some(500))
                .open();
            match opened {
                // (sled says so only in the error's text.)
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other.map_err(err)?,
            }
        };
        Ok(SledEngine {
            db,
            trees: RwLock::new(Vec::new()),
            writes: RwLock::new(()),
            transactions: Default::default(),
        })
    }

    /// Snapshot in two phases, so writes wait only for the cheap one:
    /// with writes held, every tree is read and appended to a flat file
    /// beside `dir` (sequential writes, no index to maintain); then, with
    /// writes going on, that file is loaded into a new sled store at `dir`
    /// and removed. The file needs about as much room as the data.
    fn copy_to(&self, dir: &Path) -> DbResult<SnapshotStats> {
        let dump_path = dir.with_extension("dump");
        let io = |what: &str, e: std::io::Error| {
            DbError::Engine(format!("{what} {}: {e}", dump_path.display()))
        };
        let file = std::fs::File::create(&dump_path).map_err(|e| io("creating", e))?;
        let mut dump = std::io::BufWriter::with_capacity(1 << 20, file);
        let paused = std::time::Instant::now();
        let mut entries = 0;
        {
            let _no_writes = self.writes.write().unwrap_or_else(|p| p.into_inner());
            for name in self.db.tree_names() {
                let src = self.db.open_tree(&name).map_err(err)?;
                write_record(&mut dump, DUMP_TREE, &name, &[]).map_err(|e| io("writing", e))?;
                for kv in src.iter() {
                    let (k, v) = kv.map_err(err)?;
                    write_record(&mut dump, DUMP_ENTRY, &k, &v).map_err(|e| io("writing", e))?;
                    entries += 1;
                }
            }
        }
        let writes_paused = paused.elapsed();
        dump.into_inner()
            .map_err(|e| io("writing", e.into_error()))?;
        let loaded = load_dump(&dump_path, dir);
        let _ = std::fs::remove_file(&dump_path);
        if loaded? != entries {
            return Err(DbError::Engine(format!(
                "snapshot at {}: {entries} entries dumped but a different number loaded",
                dir.display()
            )));
        }
        Ok(SnapshotStats {
            entries,
            writes_paused,
        })
    }

    fn tree(&self, t: TreeId) -> DbResult<sled::Tree> {
        let trees = self.trees.read().unwrap_or_else(|p| p.into_inner());
        trees
            .get(t.0)
            .map(|(_, tr)| tr.clone())
            .ok_or(DbError::NoTree(t))
    }
}

/// Record kinds of a snapshot dump: a tree starts (its name as the key),
/// or an entry of the current tree.
const DUMP_TREE: u8 = 0;
const DUMP_ENTRY: u8 = 1;

/// `kind`, then key and value, each preceded by its length (u32, little
/// endian).
fn write_record(
    w: &mut impl std::io::Write,
    kind: u8,
    key: impl AsRef<[u8]>,
    value: &[u8],
) -> std::io::Result<()> {
    let key = key.as_ref();
    let len = |n: usize| {
        u32::try_from(n)
            .map(u32::to_le_bytes)
            .map_err(|_| std::io::Error::other("record longer than 4 GiB"))
    };
    w.write_all(&[kind])?;
    w.write_all(&len(key.len())?)?;
    w.write_all(key)?;
    w.write_all(&len(value.len())?)?;
    w.write_all(value)
}

/// Load a dump written by [`SledEngine::copy_to`] into a new store at
/// `dir`; returns the entries loaded.
fn load_dump(dump: &Path, dir: &Path) -> DbResult<u64> {
    use std::io::Read;
    let bad = |e: std::io::Error| DbError::Engine(format!("reading {}: {e}", dump.display()));
    let file = std::fs::File::open(dump).map_err(bad)?;
    let mut r = std::io::BufReader::with_capacity(1 << 20, file);
    let out = sled::Config::new()
        .path(dir)
        .create_new(true)
        .open()
        .map_err(err)?;
    let read_bytes = |r: &mut std::io::BufReader<std::fs::File>| -> std::io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        r.read_exact(&mut len)?;
        let mut b = vec![0u8; u32::from_le_bytes(len) as usize];
        r.read_exact(&mut b)?;
        Ok(b)
    };
    let mut tree: Option<sled::Tree> = None;
    let mut batch = sled::Batch::default();
    let mut in_batch = 0;
    let mut loaded = 0;
    loop {
        let mut kind = [0u8; 1];
        match r.read_exact(&mut kind) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(bad(e)),
        }
        let key = read_bytes(&mut r).map_err(bad)?;
        let value = read_bytes(&mut r).map_err(bad)?;
        match (kind[0], &tree) {
            (DUMP_TREE, _) => {
                if let Some(t) = &tree {
                    t.apply_batch(std::mem::take(&mut batch)).map_err(err)?;
                    in_batch = 0;
                }
                tree = Some(out.open_tree(&key).map_err(err)?);
            }
            (DUMP_ENTRY, Some(t)) => {
                batch.insert(key, value);
                in_batch += 1;
                loaded += 1;
                if in_batch == 10_000 {
                    t.apply_batch(std::mem::take(&mut batch)).map_err(err)?;
                    in_batch = 0;
                }
            }
            _ => {
                return Err(DbError::Engine(format!(
                    "{}: malformed snapshot dump",
                    dump.display()
                )));
            }
        }
    }
    if let Some(t) = &tree {
        t.apply_batch(batch).map_err(err)?;
    }
    out.flush().map_err(err)?;
    Ok(loaded)
}

impl Engine for SledEngine {
    fn open_tree(&self, name: &str) -> DbResult<TreeId> {
        let mut trees = self.trees.write().unwrap_or_else(|p| p.into_inner());
        if let Some(pos) = trees.iter().position(|(n, _)| n == name) {
            return Ok(TreeId(pos));
        }
        let tree = self.db.open_tree(name).map_err(err)?;
        trees.push((name.to_string(), tree));
        Ok(TreeId(trees.len() - 1))
    }

    fn get(&self, t: TreeId, key: &[u8]) -> DbResult<Option<Vec<u8>>> {
        Ok(self.tree(t)?.get(key).map_err(err)?.map(|v| v.to_vec()))
    }

    fn insert(&self, t: TreeId, key: &[u8], value: &[u8]) -> DbResult<()> {
        let _writing = self.writes.read().unwrap_or_else(|p| p.into_inner());
        self.tree(t)?.insert(key, value).map_err(err)?;
        Ok(())
    }

    fn remove(&self, t: TreeId, key: &[u8]) -> DbResult<()> {
        let _writing = self.writes.read().unwrap_or_else(|p| p.into_inner());
        self.tree(t)?.remove(key).map_err(err)?;
        Ok(())
    }

    fn range(
        &self,
        t: TreeId,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> DbResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let tree = self.tree(t)?;
        let own = |b: Bound<&[u8]>| match b {
            Bound::Included(k) => Bound::Included(k.to_vec()),
            Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let entries = tree.range::<Vec<u8>, _>((own(start), own(end))).map(|kv| {
            let (k, v) = kv.map_err(err)?;
            Ok((k.to_vec(), v.to_vec()))
        });
        super::take_range(entries, reverse, limit)
    }

    fn len(&self, t: TreeId) -> DbResult<usize> {
        Ok(self.tree(t)?.len())
    }

    fn transaction(
        &self,
        declared: &[TreeId],
        f: &mut dyn FnMut(&mut dyn Tx) -> TxResult<()>,
    ) -> DbResult<()> {
        use sled::Transactional;
        let _writing = self.writes.read().unwrap_or_else(|p| p.into_inner());
        let trees: Vec<sled::Tree> = {
            let all = self.trees.read().unwrap_or_else(|p| p.into_inner());
            declared
                .iter()
                .map(|t| {
                    all.get(t.0)
                        .map(|(_, tr)| tr.clone())
                        .ok_or(DbError::NoTree(*t))
                })
                .collect::<DbResult<_>>()?
        };
        // sled wants an `Fn` (it may retry); the closure runs on this thread
        // only, one attempt at a time, so a RefCell is enough.
        let f = std::cell::RefCell::new(f);
        let res = trees[..].transaction(|views: &Vec<TransactionalTree>| {
            let mut tx = SledTx {
                declared,
                views,
                conflict: None,
            };
            let outcome = (f.borrow_mut())(&mut tx);
            match outcome {
                Ok(()) => Ok(()),
                Err(e) => match tx.conflict.take() {
                    // Let sled retry, or report its storage error.
                    Some(u) => Err(ConflictableTransactionError::from(u)),
                    None => Err(ConflictableTransactionError::Abort(e)),
                },
            }
        });
        match res {
            Ok(()) => {
                self.transactions
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(err(e)),
        }
    }

    fn snapshot(&self, dir: &Path) -> DbResult<SnapshotStats> {
        self.copy_to(dir)
    }

    fn transactions(&self) -> u64 {
        self.transactions.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn flush(&self) -> DbResult<()> {
        self.db.flush().map_err(err)?;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "sled"
    }
}

struct SledTx<'a> {
    /// The trees named by the caller, in the order of `views`.
    declared: &'a [TreeId],
    views: &'a Vec<TransactionalTree>,
    /// A conflict or storage error sled reported, to hand back to sled.
    conflict: Option<UnabortableTransactionError>,
}

impl SledTx<'_> {
    fn view(&self, t: TreeId) -> TxResult<&TransactionalTree> {
        self.declared
            .iter()
            .position(|d| *d == t)
            .and_then(|i| self.views.get(i))
            .ok_or(DbError::Undeclared(t))
    }

    fn fail(&mut self, e: UnabortableTransactionError) -> DbError {
        let msg = e.to_string();
        self.conflict = Some(e);
        DbError::Engine(msg)
    }
}

impl Tx for SledTx<'_> {
    fn get(&mut self, t: TreeId, key: &[u8]) -> TxResult<Option<Vec<u8>>> {
        match self.view(t)?.get(key) {
            Ok(v) => Ok(v.map(|v| v.to_vec())),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn insert(&mut self, t: TreeId, key: &[u8], value: &[u8]) -> TxResult<()> {
        match self.view(t)?.insert(key, value) {
            Ok(_) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn remove(&mut self, t: TreeId, key: &[u8]) -> TxResult<()> {
        match self.view(t)?.remove(key) {
            Ok(_) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }
}
