//! Starting a node: directories, identity, secret, and the pieces wired
//! together. Everything that can be wrong with the configuration or the
//! machine is checked here, before anything is served, and reported as one
//! line naming the problem.

use hangar_common::config::Config;
use hangar_common::transport::{Keypair, RpcSecret};
use std::path::{Path, PathBuf};

use crate::fs::{MARKER, data_dir_id, marker_text, write_atomic};

/// File in the metadata directory holding the node's keypair.
pub const NODE_KEY_FILE: &str = "node_key";

/// A startup problem, phrased for the operator.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create {what} {path}: {source}")]
    CreateDir {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "data directory {path} was used before but its marker file {MARKER} is gone: is its disk mounted? \
         (To start over with a new, empty directory there on purpose, create that file: touch {path}/{MARKER})"
    )]
    DataDirMissing { path: PathBuf },
    #[error("cannot read {what} {path}: {source}")]
    Unreadable {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path} is not writable: {source}")]
    NotWritable {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read node key {path}: {source}")]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "node key {path} is corrupted; restore it from a backup (or remove it to give this node a new identity)"
    )]
    BadKey { path: PathBuf },
    #[error(transparent)]
    Write(#[from] crate::fs::WriteError),
    #[error("generated rpc secret {path} is unreadable or corrupted: {reason}")]
    BadGeneratedSecret { path: PathBuf, reason: String },
    #[error(transparent)]
    Config(#[from] hangar_common::config::ConfigError),
    #[error("cannot listen on {addr} (rpc_bind_addr): {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutLoadError),
}

/// The node's long-lived state: who it is and how to reach the cluster.
pub struct Identity {
    pub keypair: Keypair,
    pub secret: RpcSecret,
    /// True when the secret was generated because none was configured.
    pub generated_secret: bool,
}

/// Make sure a directory exists and we can write in it.
fn ensure_dir(what: &'static str, path: &Path) -> Result<(), StartError> {
    std::fs::create_dir_all(path).map_err(|source| StartError::CreateDir {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let probe = path.join(".hangar-write-test");
    std::fs::write(&probe, b"ok").map_err(|source| StartError::NotWritable {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

/// Load the node keypair, creating it on first start.
fn load_or_create_key(metadata_dir: &Path) -> Result<Keypair, StartError> {
    let path = metadata_dir.join(NODE_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Keypair::from_file_contents(&text).ok_or(StartError::BadKey { path }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let kp = Keypair::generate();
            write_atomic(&path, kp.to_file_contents().as_bytes())?;
            #[cfg(unix)]
            restrict_permissions(&path);
            Ok(kp)
        }
        Err(source) => Err(StartError::ReadKey { path, source }),
    }
}

/// The configured secret, or the one generated in the metadata directory
/// (created on first start).
fn load_or_create_secret(config: &Config) -> Result<(RpcSecret, bool), StartError> {
    if let Some(s) = config.configured_secret()? {
        return Ok((s, false));
    }
    let path = config.generated_secret_path();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            text.parse()
                .map(|s| (s, true))
                .map_err(|e: hangar_common::transport::SecretError| {
                    StartError::BadGeneratedSecret {
                        path,
                        reason: e.to_string(),
                    }
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let s = RpcSecret::generate();
            write_atomic(&path, format!("{}\n", s.to_hex()).as_bytes())?;
            #[cfg(unix)]
            restrict_permissions(&path);
            Ok((s, true))
        }
        Err(e) => Err(StartError::BadGeneratedSecret {
            path,
            reason: e.to_string(),
        }),
    }
}

/// Prepare directories and identity: everything `run` and `node-id` need.
pub fn prepare(config: &Config) -> Result<Identity, StartError> {
    ensure_dir("metadata_dir", &config.metadata_dir)?;
    check_data_dir_markers(config, false)?;
    for dir in &config.data_dir.0 {
        if dir.read_only {
            // Possibly on a read-only mount: it only has to be readable.
            std::fs::read_dir(&dir.path).map_err(|source| StartError::Unreadable {
                what: "data_dir (read_only)",
                path: dir.path.clone(),
                source,
            })?;
        } else {
            ensure_dir("data_dir", &dir.path)?;
        }
    }
    check_data_dir_markers(config, true)?;
    let keypair = load_or_create_key(&config.metadata_dir)?;
    let (secret, generated_secret) = load_or_create_secret(config)?;
    Ok(Identity {
        keypair,
        secret,
        generated_secret,
    })
}

/// File in the metadata directory listing the data directories that got a
/// marker.
const SEEN_FILE: &str = "data_dirs_seen";

/// Refuse to start on a data directory that was used before and lost its
/// marker: most likely its disk is not mounted, and writing into the empty
/// mount point would fill the system disk and make the node fetch every
/// block again. With `mark`, a new directory gets its marker and is
/// remembered (called again once the directories exist); without, nothing
/// is written (called first, so nothing is created in an empty mount point).
fn check_data_dir_markers(config: &Config, mark: bool) -> Result<(), StartError> {
    let seen_path = config.metadata_dir.join(SEEN_FILE);
    let mut seen: Vec<String> = std::fs::read_to_string(&seen_path)
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default();
    let before = seen.len();
    for dir in &config.data_dir.0 {
        let marker = dir.path.join(MARKER);
        let name = dir.path.display().to_string();
        if marker.is_file() {
            let has_id = std::fs::read_to_string(&marker).is_ok_and(|t| t.contains("\nid: "));
            if mark && !dir.read_only && !has_id {
                // A marker from before ids, or made by hand: given the id
                // the directory is placed by now.
                write_atomic(&marker, marker_text(data_dir_id(&dir.path)).as_bytes())?;
            }
            if !seen.contains(&name) {
                seen.push(name);
            }
            continue;
        }
        if seen.contains(&name) {
            return Err(StartError::DataDirMissing {
                path: dir.path.clone(),
            });
        }
        if dir.read_only || !mark {
            continue; // nothing to write there, and nothing to guard
        }
        std::fs::write(&marker, marker_text(data_dir_id(&dir.path))).map_err(|source| {
            StartError::NotWritable {
                what: "data_dir",
                path: dir.path.clone(),
                source,
            }
        })?;
        seen.push(name);
    }
    if seen.len() != before {
        write_atomic(&seen_path, (seen.join("\n") + "\n").as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_that_lost_its_marker_stops_the_start() {
        let root = tempfile::tempdir().unwrap();
        let mut config = Config::defaults();
        config.metadata_dir = root.path().join("meta");
        let disk = root.path().join("disk");
        config.data_dir = hangar_common::config::DataDirs::one(disk.clone());
        prepare(&config).expect("a first start marks the directory");
        assert!(disk.join(MARKER).is_file());
        prepare(&config).expect("and starts again");
        // The disk is not mounted: the mount point is an empty directory.
        std::fs::remove_dir_all(&disk).unwrap();
        std::fs::create_dir(&disk).unwrap();
        let e = prepare(&config).err().expect("refused").to_string();
        assert!(e.contains("is its disk mounted?"), "{e}");
        assert!(
            e.contains(&format!("touch {}/{MARKER}", disk.display())),
            "{e}"
        );
        // Not even the directory: nothing is created in the mount point.
        std::fs::remove_dir_all(&disk).unwrap();
        assert!(prepare(&config).is_err());
        assert!(!disk.exists(), "nothing written where the disk should be");
        std::fs::create_dir(&disk).unwrap();
        // The operator says it is a new disk on purpose.
        std::fs::write(disk.join(MARKER), b"").unwrap();
        prepare(&config).expect("starts with the new directory");
        // A read-only directory that is not there: said, not created.
        let gone = root.path().join("gone");
        config.data_dir.0.push(hangar_common::config::DataDir {
            path: gone.clone(),
            capacity: None,
            read_only: true,
        });
        let e = prepare(&config).err().expect("refused").to_string();
        assert!(e.contains("cannot read data_dir (read_only)"), "{e}");
        assert!(!gone.exists());
    }

    #[test]
    fn a_data_directory_mounted_elsewhere_keeps_its_blocks_in_place() {
        use crate::block::store::BlockStore;
        let root = tempfile::tempdir().unwrap();
        let mut config = Config::defaults();
        config.metadata_dir = root.path().join("meta");
        let dir = |p: &Path| hangar_common::config::DataDir {
            path: p.to_path_buf(),
            capacity: Some(1 << 30),
            read_only: false,
        };
        let (a, b, c) = (
            root.path().join("a"),
            root.path().join("b"),
            root.path().join("c"),
        );
        config.data_dir = hangar_common::config::DataDirs(vec![dir(&a), dir(&b)]);
        prepare(&config).unwrap();
        let blocks: Vec<(hangar_common::hash::Hash, Vec<u8>)> = (0..200u32)
            .map(|i| {
                let d = format!("block {i}").into_bytes();
                (hangar_common::hash::Hash::of(&d), d)
            })
            .collect();
        let open = |dirs: &hangar_common::config::DataDirs| {
            let s = BlockStore::new(dirs, None);
            while !s.status().iter().all(|d| d.counted) {
                std::thread::yield_now();
            }
            s
        };
        let s = open(&config.data_dir);
        for (h, d) in &blocks {
            s.write(h, d).unwrap();
        }
        drop(s);
        // The second disk is mounted at another path.
        std::fs::rename(&b, &c).unwrap();
        config.data_dir = hangar_common::config::DataDirs(vec![dir(&a), dir(&c)]);
        prepare(&config).unwrap();
        let s = open(&config.data_dir);
        for (h, d) in &blocks {
            assert_eq!(s.read(h).unwrap().as_deref(), Some(d.as_slice()));
            assert!(!s.relocate(h).unwrap(), "nothing to move");
        }
        drop(s);
        // Placed by path, as before ids, about half of them would move.
        std::fs::write(c.join(MARKER), b"").unwrap();
        let s = open(&config.data_dir);
        let moved = blocks
            .iter()
            .filter(|(h, _)| s.relocate(h).unwrap())
            .count();
        assert!(moved > 20, "{moved} of 200 blocks moved");
    }
}
