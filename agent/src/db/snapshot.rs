//! Metadata snapshots: a consistent copy of the store and of the node's
//! files, for backups and restores.

use std::path::{Path, PathBuf};

/// Why a snapshot could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("copying the metadata store: {0}")]
    Store(#[from] super::DbError),
    #[error("the snapshot task failed: {0}")]
    Task(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write a snapshot of the metadata store and the node's files (key,
/// layout, peers) to `<metadata_dir>/snapshots/<UTC date-time>`, then keep
/// only the `keep` newest. Written under a temporary name and renamed, so
/// a snapshot directory is always complete.
pub(crate) fn snapshot(
    metadata_dir: &Path,
    db: &super::Db,
    keep: usize,
) -> Result<(PathBuf, super::SnapshotStats), SnapshotError> {
    let root = metadata_dir.join("snapshots");
    std::fs::create_dir_all(&root).map_err(io(&root))?;
    let secs = hangar_common::clock::wall_ms() / 1000;
    let name = hangar_common::date::iso8601(secs * 1000).replace([':', '.'], "-");
    let tmp = root.join(format!(".{name}.partial"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let stats = db.snapshot(&tmp.join("db"))?;
    for e in std::fs::read_dir(metadata_dir)
        .map_err(io(metadata_dir))?
        .flatten()
    {
        let p = e.path();
        if p.is_file() {
            std::fs::copy(&p, tmp.join(e.file_name())).map_err(io(&p))?;
        }
    }
    let dir = root.join(&name);
    std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
    let mut all: Vec<PathBuf> = std::fs::read_dir(&root)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.is_dir()
                        && !p
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect()
        })
        .unwrap_or_default();
    all.sort();
    while all.len() > keep.max(1) {
        let old = all.remove(0);
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok((dir, stats))
}
