//! File-system helpers every layer uses: atomic file writes, the size
//! and free space of a file system, and the marker that identifies a data
//! directory.

use std::path::{Path, PathBuf};

/// A file that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct WriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Write a file atomically: temporary file, fsync, rename.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), WriteError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            // Persist the rename itself.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    res.map_err(|source| WriteError {
        path: path.to_path_buf(),
        source,
    })
}

/// File marking a directory as one of this node's data directories.
pub const MARKER: &str = ".hangar-data-dir";
/// What a data directory's marker says: a line for people and the
/// directory's placement id.
pub(crate) fn marker_text(id: u64) -> String {
    format!("This directory holds blocks of a Hangar node.\nid: {id:016x}\n")
}

/// A data directory's placement id: the one its marker holds, else one
/// derived from its path (what a directory without an id in its marker
/// was placed by, so giving it one moves nothing). Being stored, the id
/// stays when the disk is mounted somewhere else: its blocks stay where
/// placement looks for them.
pub(crate) fn data_dir_id(path: &Path) -> u64 {
    std::fs::read_to_string(path.join(MARKER))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("id: "))
                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        })
        .unwrap_or_else(|| {
            let h = hangar_common::hash::Hash::of(path.as_os_str().as_encoded_bytes());
            h.as_bytes()[..8]
                .try_into()
                .map(u64::from_le_bytes)
                .unwrap_or(0)
        })
}

/// A file system's size, space free for unprivileged users, and id (to
/// tell whether two directories share one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsStat {
    pub total: u64,
    pub free: u64,
    pub id: u64,
}

/// [`FsStat`] of the file system holding `path`.
pub(crate) fn fs_stat(path: &Path) -> Option<FsStat> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` points to writable
    // memory of the right type; statvfs fills it on success.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it initialised the struct.
    let st = unsafe { st.assume_init() };
    // The field types vary by platform (32-bit on some ARM boards).
    #[allow(clippy::unnecessary_cast)]
    Some(FsStat {
        total: st.f_blocks as u64 * st.f_frsize as u64,
        free: st.f_bavail as u64 * st.f_frsize as u64,
        id: st.f_fsid as u64,
    })
}
