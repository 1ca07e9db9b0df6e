//! Blocks on this node's disk.
//!
//! A block is a file named by the hex BLAKE2b-256 hash of its content,
//! under `data_dir/blocks/<2 hex>/<2 hex>/`, so no directory grows past a few
//! thousand entries. Writes go to a temporary file in the same directory,
//! are fsynced, then renamed into place: a crash leaves either the whole
//! block or nothing. Reads check the hash; a file whose content does not
//! match is moved aside (`.corrupted`) and reported as missing, so a bad
//! block is never served and the resync worker fetches a good copy.
//!
//! With compression on (`[blocks] compression_level`), a block that zstd
//! makes smaller is stored as `<hash>.zst`; the hash is always that of the
//! uncompressed content, checked after decompression. Blocks written with
//! another setting stay readable: a read looks for both names.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use hangar_common::hash::Hash;

/// A problem with the local block store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot write block {hash:?} in {dir}: {source}")]
    Write {
        hash: Hash,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read block {hash:?}: {source}")]
    Read { hash: Hash, source: std::io::Error },
    #[error("block {0:?} was corrupted on disk (content does not match its hash); moved aside")]
    Corrupted(Hash),
    #[error("data given for block {0:?} does not match its hash")]
    HashMismatch(Hash),
}

/// Largest block a compressed file may expand to.
const MAX_BLOCK: usize = 64 << 20;

pub struct BlockStore {
    root: PathBuf,
    /// zstd level, or None to store blocks as they are.
    compression: Option<i32>,
}

impl BlockStore {
    /// The directory holding the blocks.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    pub fn new(data_dir: &Path, compression: Option<i32>) -> BlockStore {
        BlockStore {
            root: data_dir.join("blocks"),
            compression,
        }
    }

    /// Path of the uncompressed form of a block.
    pub fn path(&self, hash: &Hash) -> PathBuf {
        let hex = hash.to_string();
        self.root.join(&hex[0..2]).join(&hex[2..4]).join(hex)
    }

    fn zst_path(&self, hash: &Hash) -> PathBuf {
        self.path(hash).with_extension("zst")
    }

    /// The file holding a block, whichever form it has.
    pub fn file_of(&self, hash: &Hash) -> Option<PathBuf> {
        [self.path(hash), self.zst_path(hash)]
            .into_iter()
            .find(|p| p.is_file())
    }

    pub fn has(&self, hash: &Hash) -> bool {
        self.file_of(hash).is_some()
    }

    /// Store a block, checking that `data` hashes to `hash`.
    pub fn write(&self, hash: &Hash, data: &[u8]) -> Result<(), StoreError> {
        if Hash::of(data) != *hash {
            return Err(StoreError::HashMismatch(*hash));
        }
        if let Some(existing) = self.file_of(hash) {
            // Deduplicated: the upload writing it again will reference it
            // soon. Refresh its age so an unreferenced-block deletion due
            // meanwhile waits another grace delay.
            if let Ok(f) = std::fs::File::options().append(true).open(&existing) {
                let _ = f.set_modified(std::time::SystemTime::now());
            }
            return Ok(());
        }
        let compressed = self
            .compression
            .and_then(|level| zstd::bulk::compress(data, level).ok())
            .filter(|c| c.len() < data.len());
        let (path, data) = match &compressed {
            Some(c) => (self.zst_path(hash), &c[..]),
            None => (self.path(hash), data),
        };
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.root.clone());
        let err = |source| StoreError::Write {
            hash: *hash,
            dir: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(err)?;
        let tmp = dir.join(format!(".{}.tmp{}", hash, rand::random::<u32>()));
        let res = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            if let Ok(d) = std::fs::File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res.map_err(err)
    }

    /// Read a block; `Ok(None)` if this node does not have it (or had a
    /// corrupted copy, now moved aside).
    pub fn read(&self, hash: &Hash) -> Result<Option<Bytes>, StoreError> {
        let Some(path) = self.file_of(hash) else {
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
        let data = if path.extension().is_some_and(|e| e == "zst") {
            match zstd::bulk::decompress(&data, MAX_BLOCK) {
                Ok(d) => d,
                Err(_) => {
                    self.quarantine(hash);
                    return Err(StoreError::Corrupted(*hash));
                }
            }
        } else {
            data
        };
        if Hash::of(&data) != *hash {
            self.quarantine(hash);
            return Err(StoreError::Corrupted(*hash));
        }
        Ok(Some(Bytes::from(data)))
    }

    /// Check a block's content; moves a bad copy aside. Returns whether
    /// a good copy is present.
    pub fn verify(&self, hash: &Hash) -> Result<bool, StoreError> {
        match self.read(hash) {
            Ok(Some(_)) => Ok(true),
            Ok(None) | Err(StoreError::Corrupted(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn quarantine(&self, hash: &Hash) {
        if let Some(path) = self.file_of(hash) {
            let _ = std::fs::rename(&path, self.path(hash).with_extension("corrupted"));
        }
        tracing::warn!(
            "block {hash} failed its hash check and was moved aside; it will be fetched again"
        );
    }

    pub fn delete(&self, hash: &Hash) -> std::io::Result<()> {
        for p in [self.path(hash), self.zst_path(hash)] {
            match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Every block file present, for counting and scrubbing (walks the
    /// directories; not for hot paths).
    pub fn list(&self) -> Vec<Hash> {
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
                    let name = f.file_name();
                    let Some(name) = name.to_str() else { continue };
                    let name = name.strip_suffix(".zst").unwrap_or(name);
                    if name.len() == 64
                        && let Ok(bytes) = hex::decode(name)
                        && let Ok(arr) = <[u8; 32]>::try_from(bytes.as_slice())
                    {
                        out.push(Hash(arr));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_and_corruption_is_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlockStore::new(dir.path(), None);
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
    fn compressed_blocks_round_trip_and_corruption_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlockStore::new(dir.path(), Some(3));
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
        let plain = BlockStore::new(dir.path(), None);
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
