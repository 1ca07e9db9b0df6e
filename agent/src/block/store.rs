//! Blocks on this node's disks.
//!
//! A block is a file named by the hex BLAKE2b-256 hash of its content,
//! under `<data dir>/blocks/<2 hex>/<2 hex>/`, so no directory grows past a
//! few thousand entries. Writes go to a temporary file in the same
//! directory, are fsynced, then renamed into place: a crash leaves either
//! the whole block or nothing. Reads check the hash; a file whose content
//! does not match is moved aside (`.corrupted`) and reported as missing, so
//! a bad block is never served and the resync worker fetches a good copy.
//!
//! Blocks this node stores for others (from 128 KiB) are written with
//! direct I/O, its own uploads' blocks through the page cache: see
//! [`Cache`].
//!
//! With compression on (`[blocks] compression_level`), a block that zstd
//! makes smaller is stored as `<hash>.zst`; the hash is always that of the
//! uncompressed content, checked after decompression. Blocks written with
//! another setting stay readable: a read looks for both names.
//!
//! # Several data directories
//!
//! A node may have several data directories (one per disk), each with a
//! capacity. Each block has an order of preference over the writable
//! directories, by weighted rendezvous hashing: directory `d` scores
//! `capacity(d) / -ln(u(block, d))` with `u` uniform in (0, 1), and the
//! highest score wins, which sends each directory a share of blocks
//! exactly proportional to its capacity, and moves only the blocks that
//! must move when a directory is added or removed. A write goes to the
//! first directory in that order that has room: one that reached its
//! capacity, whose file system is nearly full (less than
//! [`min_free`] left), or where a write just failed, is skipped, so a full
//! disk stops receiving blocks without failing uploads. Reads look in the
//! preferred directory first, then in the others. The scrub moves blocks
//! that are not where they belong (after a directory was added, made
//! read-only, or had room again) with [`BlockStore::relocate`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::group_sync::GroupSync;
use bytes::Bytes;
use hangar_common::config::DataDirs;
use hangar_common::hash::Hash;
use hangar_common::rpc::{DataDirStatus, DiskUsage};
use hangar_common::size::format_bytes;

/// A problem with the local block store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot write block {hash:?} in {dir}: {source}")]
    Write {
        hash: Hash,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("No space left for block {hash:?} in any data directory: {reasons}")]
    Full { hash: Hash, reasons: String },
    #[error("cannot read block {hash:?}: {source}")]
    Read { hash: Hash, source: std::io::Error },
    #[error("block {0:?} was corrupted on disk (content does not match its hash); moved aside")]
    Corrupted(Hash),
    #[error("data given for block {0:?} does not match its hash")]
    HashMismatch(Hash),
}

/// Largest block a compressed file may expand to.
const MAX_BLOCK: usize = 64 << 20;

/// After a failed write, a directory receives no block for this long.
const FAILED_WRITE_PAUSE: Duration = Duration::from_secs(30);

/// Space a data directory's file system keeps free: 1 GB, or 2 % of it if
/// that is less, so the system and a metadata directory on the same disk
/// never starve because blocks took the last bytes.
fn min_free(fs_total: u64) -> u64 {
    (fs_total / 50).min(1_000_000_000)
}

/// One data directory.
struct Dir {
    /// As configured.
    path: PathBuf,
    /// `path/blocks`.
    root: PathBuf,
    capacity: Option<u64>,
    read_only: bool,
    /// Rendezvous salt: the directory's id (kept in its marker, so neither
    /// reordering the list nor mounting the disk elsewhere moves blocks).
    salt: u64,
    /// Share of blocks: the capacity, or the file system's size.
    weight: f64,
    /// Bytes and number of block files here (counted at start, then kept
    /// up to date by writes and deletions).
    bytes: AtomicU64,
    blocks: AtomicU64,
    counted: AtomicBool,
    /// A failed write: until when the directory is skipped, and why.
    failed: Mutex<Option<(Instant, String)>>,
    /// Size of the last block it had no room for, 0 once it took one
    /// again: it counts as full while that size still does not fit, and
    /// changes are logged.
    refused: AtomicU64,
    /// Its file system refused direct I/O once: write through the page
    /// cache from then on.
    no_direct: AtomicBool,
    /// Shared `syncfs` rounds for the block files written here, opened at
    /// the first write (`None`: the directory could not be opened for it,
    /// each file and its directory are fsynced).
    group: std::sync::OnceLock<Option<GroupSync>>,
}

impl Dir {
    /// The group sync of this directory's file system, once `root` exists.
    fn group(&self) -> Option<&GroupSync> {
        self.group
            .get_or_init(|| match GroupSync::open(&self.root) {
                Ok(g) => Some(g),
                Err(e) => {
                    tracing::warn!(
                        "{}: cannot open for syncing ({e}); each block file is fsynced on its own",
                        self.root.display()
                    );
                    None
                }
            })
            .as_ref()
    }

    fn path_of(&self, hash: &Hash) -> PathBuf {
        let hex = hash.to_string();
        self.root.join(&hex[0..2]).join(&hex[2..4]).join(hex)
    }

    fn files_of(&self, hash: &Hash) -> [PathBuf; 2] {
        let p = self.path_of(hash);
        let z = p.with_extension("zst");
        [p, z]
    }

    fn file_of(&self, hash: &Hash) -> Option<PathBuf> {
        self.files_of(hash).into_iter().find(|p| p.is_file())
    }

    /// Why this directory cannot take `len` more bytes, if it cannot.
    fn no_room(&self, len: u64) -> Option<String> {
        if self.read_only {
            return Some("read-only".into());
        }
        if let Some((until, why)) = &*self.failed.lock().unwrap_or_else(|p| p.into_inner())
            && Instant::now() < *until
        {
            return Some(why.clone());
        }
        let bytes = self.bytes.load(Ordering::Relaxed);
        if let Some(cap) = self.capacity
            && bytes + len > cap
        {
            return Some(format!(
                "capacity reached ({} of {})",
                format_bytes(bytes),
                format_bytes(cap)
            ));
        }
        let fs = crate::fs::fs_stat(&self.path)?;
        let keep = min_free(fs.total);
        if fs.free < len + keep {
            return Some(format!(
                "file system nearly full ({} free, {} kept free)",
                format_bytes(fs.free),
                format_bytes(keep)
            ));
        }
        None
    }

    /// Note that the directory refused a block of `len` bytes (`None`:
    /// took one); log when that changes.
    fn note_refused(&self, refused: Option<(u64, &str)>) {
        let len = refused.map(|(l, _)| l.max(1)).unwrap_or(0);
        let before = self.refused.swap(len, Ordering::Relaxed);
        match refused {
            Some((_, why)) if before == 0 => tracing::warn!(
                "data directory {} takes no new blocks: {why}; they go to the other directories",
                self.path.display()
            ),
            None if before != 0 => tracing::info!(
                "data directory {} takes new blocks again",
                self.path.display()
            ),
            _ => {}
        }
    }

    /// Why it is full, if it is: it has no room left at all, or not for
    /// the last block it refused.
    fn full(&self) -> Option<String> {
        if self.read_only {
            return None;
        }
        self.no_room(self.refused.load(Ordering::Relaxed).max(1))
    }

    /// Count `len` more bytes here if that stays within the capacity, so
    /// two writes at once cannot both take the last room.
    fn reserve(&self, len: u64) -> bool {
        self.bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (self.capacity.is_none_or(|c| b + len <= c)).then_some(b + len)
            })
            .is_ok()
    }

    /// Uncount `len` bytes (a [`Dir::reserve`] whose write failed, or part
    /// of a removal).
    fn unreserve(&self, len: u64) {
        let _ = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(len))
            });
    }

    /// A block file of `len` bytes left this directory.
    fn removed(&self, len: u64) {
        self.unreserve(len);
        let _ = self
            .blocks
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(1))
            });
    }

    /// Remove a block file here, if present; its size is uncounted.
    fn remove(&self, hash: &Hash) -> std::io::Result<()> {
        for p in self.files_of(hash) {
            let len = std::fs::metadata(&p).map(|m| m.len());
            match std::fs::remove_file(&p) {
                Ok(()) => self.removed(len.unwrap_or(0)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Every block file here, with its size.
    fn walk(&self) -> Vec<(Hash, u64)> {
        let mut out = Vec::new();
        let Ok(l1) = std::fs::read_dir(&self.root) else {
            return out;
        };
        for a in l1.flatten() {
            let Ok(l2) = std::fs::read_dir(a.path()) else {
                continue;
            };
            for b in l2.flatten() {
                let Ok(l3) = std::fs::read_dir(b.path()) else {
                    continue;
                };
                for f in l3.flatten() {
                    if let Some(hash) = block_name(&f.file_name()) {
                        out.push((hash, f.metadata().map(|m| m.len()).unwrap_or(0)));
                    }
                }
            }
        }
        out
    }
}

/// The hash a block file's name stands for (`<hex>` or `<hex>.zst`).
fn block_name(name: &std::ffi::OsStr) -> Option<Hash> {
    let name = name.to_str()?;
    let name = name.strip_suffix(".zst").unwrap_or(name);
    if name.len() != 64 {
        return None;
    }
    let bytes = hex::decode(name).ok()?;
    <[u8; 32]>::try_from(bytes.as_slice()).ok().map(Hash)
}

/// A 64-bit mix (splitmix64's finaliser): turns a block's hash and a
/// directory's salt into an independent uniform number.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

pub struct BlockStore {
    dirs: Vec<Arc<Dir>>,
    /// zstd level, or None to store blocks as they are.
    compression: Option<i32>,
}

impl BlockStore {
    /// A store over `dirs`. Counting what each directory already holds
    /// happens in the background (`counted` in the status says when done).
    pub(crate) fn new(dirs: &DataDirs, compression: Option<i32>) -> BlockStore {
        let dirs: Vec<Arc<Dir>> = dirs
            .0
            .iter()
            .map(|d| {
                let salt = crate::fs::data_dir_id(&d.path);
                let weight = d
                    .capacity
                    .or_else(|| crate::fs::fs_stat(&d.path).map(|s| s.total))
                    .unwrap_or(1)
                    .max(1) as f64;
                Arc::new(Dir {
                    root: d.path.join("blocks"),
                    path: d.path.clone(),
                    capacity: d.capacity,
                    read_only: d.read_only,
                    salt,
                    weight,
                    bytes: AtomicU64::new(0),
                    blocks: AtomicU64::new(0),
                    counted: AtomicBool::new(false),
                    failed: Mutex::new(None),
                    refused: AtomicU64::new(0),
                    no_direct: AtomicBool::new(false),
                    group: std::sync::OnceLock::new(),
                })
            })
            .collect();
        for d in &dirs {
            let d = d.clone();
            let count = move || {
                let found = d.walk();
                let bytes = found.iter().map(|(_, l)| l).sum();
                // Writes during the walk were counted as they happened; one
                // the walk also saw is counted twice, until the next start.
                d.bytes.fetch_add(bytes, Ordering::Relaxed);
                d.blocks.fetch_add(found.len() as u64, Ordering::Relaxed);
                d.counted.store(true, Ordering::Relaxed);
            };
            if std::thread::Builder::new()
                .name("count-blocks".into())
                .spawn(count)
                .is_err()
            {
                tracing::warn!("cannot start counting the blocks in a data directory");
            }
        }
        BlockStore { dirs, compression }
    }

    /// A store over one directory.
    #[cfg(test)]
    fn single(dir: &Path, compression: Option<i32>) -> BlockStore {
        BlockStore::new(&DataDirs::one(dir.to_path_buf()), compression)
    }

    /// The data directories as configured, in one line: a scrub pass
    /// starts when this changes.
    pub(crate) fn fingerprint(&self) -> String {
        let mut parts: Vec<String> = self
            .dirs
            .iter()
            .map(|d| format!("{}:{:?}:{}", d.path.display(), d.capacity, d.read_only))
            .collect();
        parts.sort();
        parts.join(";")
    }

    /// Writable directories for `hash`, most preferred first.
    fn write_order(&self, hash: &Hash) -> Vec<&Arc<Dir>> {
        let h = u64::from_le_bytes(hash.as_bytes()[..8].try_into().unwrap_or([0; 8]));
        let mut scored: Vec<(f64, &Arc<Dir>)> = self
            .dirs
            .iter()
            .filter(|d| !d.read_only)
            .map(|d| {
                // Uniform in (0, 1), never 0 or 1.
                let u = ((mix(h ^ d.salt) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                (d.weight / -u.ln(), d)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.into_iter().map(|(_, d)| d).collect()
    }

    /// Every directory, in the order to look for `hash`: the writable ones
    /// by preference, then the read-only ones.
    fn read_order(&self, hash: &Hash) -> Vec<&Arc<Dir>> {
        let mut order = self.write_order(hash);
        order.extend(self.dirs.iter().filter(|d| d.read_only));
        order
    }

    /// Where a block's uncompressed form would be written now.
    #[cfg(test)]
    fn path(&self, hash: &Hash) -> PathBuf {
        let order = self.write_order(hash);
        order
            .iter()
            .find(|d| d.no_room(0).is_none())
            .or(order.first())
            .map(|d| d.path_of(hash))
            .unwrap_or_else(|| self.dirs[0].path_of(hash))
    }

    /// The file holding a block, whichever directory and form it has.
    pub(crate) fn file_of(&self, hash: &Hash) -> Option<PathBuf> {
        self.read_order(hash)
            .into_iter()
            .find_map(|d| d.file_of(hash))
    }

    fn dir_holding(&self, hash: &Hash) -> Option<(&Arc<Dir>, PathBuf)> {
        self.read_order(hash)
            .into_iter()
            .find_map(|d| d.file_of(hash).map(|f| (d, f)))
    }

    pub(crate) fn has(&self, hash: &Hash) -> bool {
        self.file_of(hash).is_some()
    }

    /// Store a block, checking that `data` hashes to `hash`.
    pub(crate) fn write(&self, hash: &Hash, data: &[u8]) -> Result<(), StoreError> {
        if Hash::of(data) != *hash {
            return Err(StoreError::HashMismatch(*hash));
        }
        self.write_hashed(hash, data, Cache::Bypass)
    }

    /// Store a block whose hash is known to be that of `data`: this node
    /// just computed it, or the block came from a peer over the
    /// authenticated transport, and that peer computed the hash or checked
    /// it when it read the block. Hashing it again would cost a full pass
    /// over every block on every replica (a sixth of the CPU of a
    /// replicated upload); reads and the scrub check every block anyway.
    pub(crate) fn write_hashed(
        &self,
        hash: &Hash,
        data: &[u8],
        cache: Cache,
    ) -> Result<(), StoreError> {
        debug_assert!(Hash::of(data) == *hash, "block {hash:?} mislabelled");
        if let Some((d, existing)) = self.dir_holding(hash) {
            // Deduplicated: the upload writing it again will reference it
            // soon. Refresh its age so an unreferenced-block deletion due
            // meanwhile waits another grace delay.
            if let Ok(f) = std::fs::File::options().append(true).open(&existing) {
                let _ = f.set_modified(std::time::SystemTime::now());
            }
            // It may be another writer's, in place but not yet on disk.
            if let Some(g) = d.group() {
                g.sync().map_err(|source| StoreError::Write {
                    hash: *hash,
                    dir: d.path.clone(),
                    source,
                })?;
            }
            return Ok(());
        }
        let compressed = self
            .compression
            .and_then(|level| zstd::bulk::compress(data, level).ok())
            .filter(|c| c.len() < data.len());
        let (name, data) = match &compressed {
            Some(c) => (format!("{hash}.zst"), &c[..]),
            None => (hash.to_string(), data),
        };
        self.write_file(hash, &name, data, cache)
    }

    /// Write a block file named `name` into the first directory with room.
    fn write_file(
        &self,
        hash: &Hash,
        name: &str,
        data: &[u8],
        cache: Cache,
    ) -> Result<(), StoreError> {
        let mut reasons = Vec::new();
        let mut failure = None;
        for d in self.write_order(hash) {
            if let Some(why) = d.no_room(data.len() as u64) {
                d.note_refused(Some((data.len() as u64, &why)));
                reasons.push(format!("{}: {why}", d.path.display()));
                continue;
            }
            if !d.reserve(data.len() as u64) {
                // Another write took the last room meanwhile.
                reasons.push(format!("{}: capacity reached", d.path.display()));
                continue;
            }
            let dir = d
                .path_of(hash)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| d.root.clone());
            let direct = cache == Cache::Bypass && !d.no_direct.load(Ordering::Relaxed);
            match write_atomic(&dir, &dir.join(name), hash, data, direct, d) {
                Ok(()) => {
                    d.blocks.fetch_add(1, Ordering::Relaxed);
                    d.note_refused(None);
                    return Ok(());
                }
                Err(source) => {
                    d.unreserve(data.len() as u64);
                    let why = source.to_string();
                    d.note_refused(Some((data.len() as u64, &why)));
                    *d.failed.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((Instant::now() + FAILED_WRITE_PAUSE, why.clone()));
                    reasons.push(format!("{}: {why}", d.path.display()));
                    if !is_out_of_space(&source) && failure.is_none() {
                        failure = Some((dir, source));
                    }
                }
            }
        }
        match failure {
            Some((dir, source)) => Err(StoreError::Write {
                hash: *hash,
                dir,
                source,
            }),
            None => Err(StoreError::Full {
                hash: *hash,
                reasons: reasons.join("; "),
            }),
        }
    }

    /// Read a block; `Ok(None)` if this node does not have it (or had a
    /// corrupted copy, now moved aside).
    pub(crate) fn read(&self, hash: &Hash) -> Result<Option<Bytes>, StoreError> {
        let Some((dir, path)) = self.dir_holding(hash) else {
            return Ok(None);
        };
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::Read {
                    hash: *hash,
                    source,
                });
            }
        };
        let stored_len = data.len() as u64;
        let data = if path.extension().is_some_and(|e| e == "zst") {
            match zstd::bulk::decompress(&data, MAX_BLOCK) {
                Ok(d) => d,
                Err(_) => {
                    quarantine(dir, &path, hash, stored_len);
                    return Err(StoreError::Corrupted(*hash));
                }
            }
        } else {
            data
        };
        if Hash::of(&data) != *hash {
            quarantine(dir, &path, hash, stored_len);
            return Err(StoreError::Corrupted(*hash));
        }
        Ok(Some(Bytes::from(data)))
    }

    /// Check a block's content; moves a bad copy aside. Returns whether
    /// a good copy is present.
    pub(crate) fn verify(&self, hash: &Hash) -> Result<bool, StoreError> {
        match self.read(hash) {
            Ok(Some(_)) => Ok(true),
            Ok(None) | Err(StoreError::Corrupted(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Move a block to the directory it belongs in now, if that is not
    /// where it is: a read-only directory's blocks leave it, and a block
    /// written to another directory because its own was full goes back once
    /// there is room. Returns whether it moved. The file is copied as it is
    /// (compressed or not) and removed from its old place only once the
    /// copy is durable, so a crash leaves at worst two copies.
    pub(crate) fn relocate(&self, hash: &Hash) -> Result<bool, StoreError> {
        let Some((from, path)) = self.dir_holding(hash) else {
            return Ok(false);
        };
        let order = self.write_order(hash);
        let here = order.iter().position(|d| Arc::ptr_eq(d, from));
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let Some(to) = order.iter().position(|d| d.no_room(len).is_none()) else {
            return Ok(false);
        };
        if here.is_some_and(|h| h <= to) {
            return Ok(false);
        }
        let data = std::fs::read(&path).map_err(|source| StoreError::Read {
            hash: *hash,
            source,
        })?;
        let target = &order[to];
        if !target.reserve(data.len() as u64) {
            return Ok(false);
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = target
            .path_of(hash)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| target.root.clone());
        let direct = !target.no_direct.load(Ordering::Relaxed);
        if let Err(source) = write_atomic(&dir, &dir.join(&name), hash, &data, direct, target) {
            target.unreserve(data.len() as u64);
            return Err(StoreError::Write {
                hash: *hash,
                dir,
                source,
            });
        }
        target.blocks.fetch_add(1, Ordering::Relaxed);
        from.remove(hash).map_err(|source| StoreError::Write {
            hash: *hash,
            dir: from.root.clone(),
            source,
        })?;
        Ok(true)
    }

    pub(crate) fn delete(&self, hash: &Hash) -> std::io::Result<()> {
        for d in &self.dirs {
            d.remove(hash)?;
        }
        Ok(())
    }

    /// Every block present, for counting and scrubbing (walks the
    /// directories; not for hot paths).
    pub(crate) fn list(&self) -> Vec<Hash> {
        let mut out: Vec<Hash> = self
            .dirs
            .iter()
            .flat_map(|d| d.walk().into_iter().map(|(h, _)| h))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// What each data directory holds and whether it takes new blocks.
    pub(crate) fn status(&self) -> Vec<DataDirStatus> {
        self.dirs
            .iter()
            .map(|d| {
                let fs = crate::fs::fs_stat(&d.path);
                DataDirStatus {
                    path: d.path.display().to_string(),
                    capacity: d.capacity,
                    read_only: d.read_only,
                    blocks: d.blocks.load(Ordering::Relaxed),
                    bytes: d.bytes.load(Ordering::Relaxed),
                    counted: d.counted.load(Ordering::Relaxed),
                    fs_total: fs.map(|f| f.total).unwrap_or(0),
                    fs_free: fs.map(|f| f.free).unwrap_or(0),
                    full: d.full(),
                }
            })
            .collect()
    }

    /// Space for blocks on this node: the size of the writable data
    /// directories (their capacities, or their file systems' sizes) and the
    /// room left in them, each file system counted once.
    pub fn disk(&self) -> Option<DiskUsage> {
        // Per file system: (size, room) of its directories, and whether an
        // uncapped directory makes the whole file system available.
        let mut by_fs: Vec<(u64, crate::fs::FsStat, u64, u64, bool)> = Vec::new();
        for d in self.dirs.iter().filter(|d| !d.read_only) {
            let fs = crate::fs::fs_stat(&d.path)?;
            let bytes = d.bytes.load(Ordering::Relaxed);
            let (size, room) = match d.capacity {
                Some(c) => (c, c.saturating_sub(bytes)),
                None => (fs.total, fs.free),
            };
            match by_fs.iter_mut().find(|e| e.0 == fs.id) {
                Some(e) => {
                    e.2 += size;
                    e.3 += room;
                    e.4 |= d.capacity.is_none();
                }
                None => by_fs.push((fs.id, fs, size, room, d.capacity.is_none())),
            }
        }
        let mut out = DiskUsage { total: 0, free: 0 };
        for (_, fs, size, room, uncapped) in by_fs {
            let avail = fs.free.saturating_sub(min_free(fs.total));
            let (size, room) = if uncapped {
                (fs.total, avail)
            } else {
                (size.min(fs.total), room.min(avail))
            };
            out.total += size;
            out.free += room;
        }
        Some(out)
    }
}

/// Whether a write failed for want of space (or quota).
fn is_out_of_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || e.kind() == std::io::ErrorKind::StorageFull
}

/// Whether a block written now should stay in the page cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cache {
    /// Written through the page cache: the node that received an upload
    /// keeps its own copy there, since an object is often read back soon
    /// after its upload and that node serves the read.
    Keep,
    /// Written with direct I/O if large (see [`write_atomic`]): copies
    /// for other nodes, fetched or moved blocks.
    Bypass,
}

/// Blocks from this size on may be written with direct I/O.
const DIRECT_MIN: usize = 128 << 10;

/// Alignment (address and length) direct I/O asks for: the largest
/// logical block size of common disks.
const DIRECT_ALIGN: usize = 4096;

/// Write `data` to `path` in `dir` (a directory of data directory `d`)
/// durably: temporary file, rename, then a group sync of the file system
/// shared with the writers of the moment ([`GroupSync`]); where the
/// directory could not be opened for that, fsync of the file before the
/// rename and of the directory after. Nothing is left behind on a
/// failure.
///
/// With `direct`, a large block is written with direct I/O (`O_DIRECT`)
/// where the file system takes it: the disk reads it from our buffer, so
/// the kernel neither copies it into the page cache nor keeps a megabyte
/// of data nobody reads soon there; under concurrent uploads that copy was
/// the biggest single cost of a replicated write (doc/benchmarks.md). A
/// file system that refuses direct I/O (some network and FUSE file
/// systems) gets buffered writes, remembered in `d.no_direct`.
fn write_atomic(
    dir: &Path,
    path: &Path,
    hash: &Hash,
    data: &[u8],
    direct: bool,
    d: &Dir,
) -> std::io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir)?,
        r => r?,
    }
    let group = d.group();
    let each = group.is_none();
    let tmp = dir.join(format!(".{}.tmp{}", hash, rand::random::<u32>()));
    let res = (|| {
        let written = direct
            && data.len() >= DIRECT_MIN
            && match write_direct(&tmp, data, each) {
                Ok(()) => true,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    tracing::info!(
                        "{}: the file system refuses direct I/O; block files are written through the page cache",
                        dir.display()
                    );
                    d.no_direct.store(true, Ordering::Relaxed);
                    false
                }
                Err(e) => return Err(e),
            };
        if !written {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(data)?;
            if each {
                f.sync_all()?;
            }
        }
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return res;
    }
    match group {
        // The file is in place: readers may use it at once (its content
        // is whole in memory); it is acknowledged once on disk. A failed
        // round (a write-back error: its data may never reach the disk)
        // takes it away again, as a failed fsync before the rename left
        // nothing: a missing block is fetched again by the resync, where
        // a bad one would wait for a read or the scrub to be found.
        Some(g) => g.sync().inspect_err(|_| {
            let _ = std::fs::remove_file(path);
        }),
        None => {
            if let Ok(f) = std::fs::File::open(dir) {
                let _ = f.sync_all();
            }
            Ok(())
        }
    }
}

/// Write `data` to a new file `path` with direct I/O (and fsync it if
/// `fsync`): copied into an aligned buffer, written padded to the
/// alignment, then cut to its length.
fn write_direct(path: &Path, data: &[u8], fsync: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut buf = AlignedBuf::zeroed(data.len().div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN)?;
    buf.as_mut()[..data.len()].copy_from_slice(data);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)?;
    let res = (|| {
        f.write_all(buf.as_mut())?;
        f.set_len(data.len() as u64)?;
        if fsync { f.sync_all() } else { Ok(()) }
    })();
    if res.is_err() {
        drop(f);
        let _ = std::fs::remove_file(path);
    }
    res
}

/// A zeroed heap buffer aligned for direct I/O.
struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

impl AlignedBuf {
    fn zeroed(len: usize) -> std::io::Result<AlignedBuf> {
        let layout = std::alloc::Layout::from_size_align(len.max(DIRECT_ALIGN), DIRECT_ALIGN)
            .map_err(|e| std::io::Error::other(format!("direct I/O buffer: {e}")))?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = std::ptr::NonNull::new(ptr)
            .ok_or_else(|| std::io::Error::other("out of memory for a direct I/O buffer"))?;
        Ok(AlignedBuf { ptr, layout })
    }

    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` points to `layout.size()` initialised (zeroed)
        // bytes that this buffer owns.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// Move a bad block file aside, out of the counts.
fn quarantine(dir: &Dir, path: &Path, hash: &Hash, len: u64) {
    if std::fs::rename(path, dir.path_of(hash).with_extension("corrupted")).is_ok() {
        dir.removed(len);
    }
    tracing::warn!(
        "block {hash} failed its hash check and was moved aside; it will be fetched again"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangar_common::config::DataDir;

    fn dirs(spec: &[(&Path, Option<u64>, bool)]) -> DataDirs {
        DataDirs(
            spec.iter()
                .map(|(p, capacity, read_only)| DataDir {
                    path: p.to_path_buf(),
                    capacity: *capacity,
                    read_only: *read_only,
                })
                .collect(),
        )
    }

    /// A store whose start-up count is finished.
    fn open(spec: &[(&Path, Option<u64>, bool)]) -> BlockStore {
        let s = BlockStore::new(&dirs(spec), None);
        while !s.status().iter().all(|d| d.counted) {
            std::thread::sleep(Duration::from_millis(5));
        }
        s
    }

    /// A write returns only after a sync round that began after it
    /// (`group_sync.rs` tests the rounds); a deduplicated write too, since
    /// the file it found may be another writer's, not yet on disk.
    #[test]
    fn writes_and_deduplicated_writes_wait_for_a_sync_round() {
        let tmp = tempfile::tempdir().expect("temporary directory");
        let s = open(&[(tmp.path(), None, false)]);
        let (h, data) = block(1, 4096);
        s.write_hashed(&h, &data, Cache::Keep).expect("write");
        let rounds = || s.dirs[0].group().expect("group sync").rounds();
        assert_eq!(rounds(), 1, "the write was not synced");
        s.write_hashed(&h, &data, Cache::Keep)
            .expect("deduplicated write");
        assert_eq!(rounds(), 2, "the deduplicated write was not synced");
    }

    /// A failed round (a write-back error) fails the write and leaves no
    /// block file whose data may not be on disk.
    #[test]
    fn a_failed_sync_round_fails_the_write_and_leaves_no_file() {
        let tmp = tempfile::tempdir().expect("temporary directory");
        let s = open(&[(tmp.path(), None, false)]);
        let failing =
            GroupSync::with_round(Box::new(|| Err(std::io::Error::other("EIO on write-back"))));
        assert!(
            s.dirs[0].group.set(Some(failing)).is_ok(),
            "group sync opened already"
        );
        let (h, data) = block(2, 4096);
        let e = s
            .write_hashed(&h, &data, Cache::Keep)
            .expect_err("the sync failed");
        assert!(e.to_string().contains("EIO on write-back"), "{e}");
        assert!(!s.has(&h), "a block whose sync failed was left in place");
        assert_eq!(s.read(&h).expect("read"), None);
    }

    fn block(i: u32, len: usize) -> (Hash, Vec<u8>) {
        let data: Vec<u8> = (0..len as u32)
            .map(|j| (i.wrapping_mul(31).wrapping_add(j)).to_le_bytes()[0] ^ (i >> 8) as u8)
            .chain(i.to_le_bytes())
            .collect();
        (Hash::of(&data), data)
    }

    #[test]
    fn blocks_spread_over_data_directories_in_proportion_to_capacity() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        let s = open(&[(&a, Some(1 << 30), false), (&b, Some(3 << 30), false)]);
        for i in 0..2000 {
            let (h, d) = block(i, 100);
            s.write(&h, &d).unwrap();
        }
        let st = s.status();
        assert_eq!(st[0].blocks + st[1].blocks, 2000);
        // A quarter expected: 500, standard deviation 19.
        assert!(
            (420..=580).contains(&st[0].blocks),
            "1 GiB of 4 GiB got {} of 2000 blocks",
            st[0].blocks
        );
        assert_eq!(st[0].bytes, st[0].blocks * 104);
        // Every block reads back, and a fresh store counts the same.
        for i in 0..2000 {
            let (h, d) = block(i, 100);
            assert_eq!(s.read(&h).unwrap().as_deref(), Some(&d[..]));
        }
        let again = open(&[(&a, Some(1 << 30), false), (&b, Some(3 << 30), false)]);
        let counts =
            |st: Vec<DataDirStatus>| st.iter().map(|d| (d.blocks, d.bytes)).collect::<Vec<_>>();
        assert_eq!(counts(again.status()), counts(st));
        // Listing the directories in the other order moves nothing.
        let swapped = open(&[(&b, Some(3 << 30), false), (&a, Some(1 << 30), false)]);
        for i in 0..200 {
            let (h, _) = block(i, 100);
            assert!(!swapped.relocate(&h).unwrap());
        }
    }

    #[test]
    fn a_full_directory_takes_no_more_blocks_and_the_others_do() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        // Equal shares, but `a` holds at most 10 KB.
        let s = open(&[(&a, Some(10_000), false), (&b, Some(10_000), false)]);
        let mut written = Vec::new();
        let err = loop {
            let (h, d) = block(written.len() as u32, 996);
            match s.write(&h, &d) {
                Ok(()) => written.push((h, d)),
                Err(e) => break e,
            }
        };
        // Both filled to their capacity (10 blocks of 1000 bytes each),
        // then a clear refusal naming why for each directory.
        assert_eq!(written.len(), 20, "{err}");
        let msg = err.to_string();
        assert!(msg.starts_with("No space left"), "{msg}");
        assert!(msg.contains("capacity reached"), "{msg}");
        let st = s.status();
        for d in &st {
            assert_eq!((d.blocks, d.bytes), (10, 10_000));
            assert!(
                d.full.as_deref().is_some_and(|f| f.contains("capacity")),
                "{d:?}"
            );
        }
        for (h, d) in &written {
            assert_eq!(s.read(h).unwrap().as_deref(), Some(&d[..]));
        }
        // Deleting makes room again, for any block (the other directory
        // being full).
        s.delete(&written[0].0).unwrap();
        assert_eq!(s.status().iter().map(|d| d.blocks).sum::<u64>(), 19);
        let (h, d) = block(1000, 996);
        s.write(&h, &d).unwrap();
        assert!(s.status().iter().all(|x| x.blocks == 10));
    }

    #[test]
    fn a_directory_where_writes_fail_is_skipped_and_reported() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        // `a/blocks` is a file: every write there fails (ENOTDIR), even
        // as root, as on a disk gone bad.
        std::fs::write(a.join("blocks"), b"not a directory").unwrap();
        let s = open(&[(&a, None, false), (&b, None, false)]);
        for i in 0..40 {
            let (h, d) = block(i, 300);
            s.write(&h, &d).expect("the other directory takes it");
            assert_eq!(s.read(&h).unwrap().as_deref(), Some(&d[..]));
        }
        let st = s.status();
        assert_eq!(
            (st[0].blocks, st[0].bytes),
            (0, 0),
            "nothing counted where nothing was written"
        );
        assert_eq!(st[1].blocks, 40);
        assert!(
            st[0]
                .full
                .as_deref()
                .is_some_and(|w| w.contains("Not a directory")),
            "{st:?}"
        );
        // With no directory left, the block is refused, saying why.
        let only = open(&[(&a, None, false)]);
        let (h, d) = block(99, 300);
        let e = only.write(&h, &d).unwrap_err().to_string();
        assert!(e.contains("Not a directory"), "{e}");
    }

    #[test]
    fn a_read_only_directory_is_read_and_drained() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        let one = open(&[(&a, None, false)]);
        for i in 0..50 {
            let (h, d) = block(i, 500);
            one.write(&h, &d).unwrap();
        }
        let s = open(&[(&a, None, true), (&b, None, false)]);
        assert_eq!(s.status()[0].blocks, 50);
        let (h, d) = block(99, 500);
        s.write(&h, &d).unwrap();
        assert_eq!(
            s.status()[1].blocks,
            1,
            "new blocks avoid the read-only one"
        );
        for i in 0..50 {
            let (h, d) = block(i, 500);
            assert_eq!(s.read(&h).unwrap().as_deref(), Some(&d[..]));
            assert!(s.relocate(&h).unwrap());
            assert!(!s.relocate(&h).unwrap(), "moved once");
            assert_eq!(s.read(&h).unwrap().as_deref(), Some(&d[..]));
        }
        let st = s.status();
        assert_eq!((st[0].blocks, st[0].bytes), (0, 0));
        assert_eq!((st[1].blocks, st[1].bytes), (51, 51 * 504));
        assert_eq!(s.list().len(), 51);
        assert!(BlockStore::single(&a, None).list().is_empty());
    }

    #[test]
    fn blocks_round_trip_and_corruption_is_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlockStore::single(dir.path(), None);
        let data = b"hello block";
        let h = Hash::of(data);
        assert!(matches!(
            s.write(&Hash::of(b"x"), data),
            Err(StoreError::HashMismatch(_))
        ));
        s.write(&h, data).unwrap();
        assert_eq!(s.read(&h).unwrap().as_deref(), Some(&data[..]));
        assert_eq!(s.list(), vec![h]);
        // Flip one byte on disk.
        let p = s.path(&h);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&p, bytes).unwrap();
        assert!(matches!(s.read(&h), Err(StoreError::Corrupted(_))));
        assert_eq!(s.read(&h).unwrap(), None, "moved aside, now missing");
    }

    #[test]
    fn large_blocks_written_directly_keep_their_exact_length() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlockStore::single(dir.path(), None);
        // Not a multiple of the direct I/O alignment: padded, then cut.
        for len in [DIRECT_MIN, DIRECT_MIN + 1, (1 << 20) - 7, 1 << 20] {
            let data: Vec<u8> = (0..len as u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
                .collect();
            let h = Hash::of(&data);
            s.write_hashed(&h, &data, Cache::Bypass).unwrap();
            let file = s.file_of(&h).unwrap();
            assert_eq!(std::fs::metadata(&file).unwrap().len(), len as u64);
            assert_eq!(s.read(&h).unwrap().as_deref(), Some(&data[..]));
        }
        let leftovers: Vec<_> = walkdir(dir.path())
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(".tmp"))
            })
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }

    fn walkdir(p: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(p).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(walkdir(&path));
            } else {
                out.push(path);
            }
        }
        out
    }

    #[test]
    fn compressed_blocks_round_trip_and_corruption_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlockStore::single(dir.path(), Some(3));
        let data = vec![b'a'; 100_000];
        let h = Hash::of(&data);
        s.write(&h, &data).unwrap();
        let file = s.file_of(&h).unwrap();
        assert!(
            file.extension().is_some_and(|e| e == "zst"),
            "compressible data is compressed"
        );
        assert!(std::fs::metadata(&file).unwrap().len() < 1000);
        assert!(s.read(&h).unwrap().as_deref() == Some(&data[..]));
        assert_eq!(s.list(), vec![h]);
        // Incompressible data stays as it is.
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let hn = Hash::of(&noise);
        s.write(&hn, &noise).unwrap();
        // A store without compression still reads compressed blocks.
        let plain = BlockStore::single(dir.path(), None);
        assert!(plain.read(&h).unwrap().as_deref() == Some(&data[..]));
        // Damage the compressed file.
        let mut bytes = std::fs::read(&file).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&file, bytes).unwrap();
        assert!(matches!(s.read(&h), Err(StoreError::Corrupted(_))));
        assert!(!s.has(&h));
    }
}
