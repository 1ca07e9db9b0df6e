//! Garage clusters on this machine, for side-by-side benchmarks (never
//! for tests: CI does not have Garage). Point `HANGAR_BENCH_GARAGE` at a
//! `garage` binary (built with `cargo install garage --version 2.5.0
//! --no-default-features --features bundled-libs,lmdb --root <dir>`).
//!
//! Each node gets its own temporary directory, loopback ports, LMDB
//! metadata and the S3 region `hangar`, so the benches' SigV4 client signs
//! for both systems alike.
//!
//! Garage's defaults do not fsync (`metadata_fsync = false`, `data_fsync =
//! false`), where Hangar syncs every acknowledged write.
//! `HANGAR_BENCH_GARAGE_FSYNC=1` turns both on, for a comparison at equal
//! durability.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{S3Key, free_port, wait_for};

/// One Garage daemon.
pub struct GarageNode {
    child: Child,
    pub config: PathBuf,
    pub s3_port: u16,
    /// `<id>@<address>`, as `garage node connect` takes it.
    pub peer: String,
    _dir: tempfile::TempDir,
}

impl Drop for GarageNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A formed Garage cluster: every node in its own zone, layout applied.
pub struct GarageCluster {
    bin: PathBuf,
    pub nodes: Vec<GarageNode>,
}

impl GarageCluster {
    /// Start `n` nodes with replication factor `rf`, connect them, give
    /// each a zone and 100 GB, apply the layout and wait until a bucket can
    /// be created.
    pub fn start(bin: &Path, n: usize, rf: usize) -> GarageCluster {
        // 32 random bytes in hex: Garage's secret has Hangar's format.
        let secret = hangar_common::transport::RpcSecret::generate().to_hex();
        let fsync = if durable() {
            "metadata_fsync = true\ndata_fsync = true\n"
        } else {
            ""
        };
        let mut nodes = Vec::new();
        for _ in 0..n {
            let dir = tempfile::tempdir().expect("tempdir");
            let (rpc, s3, admin) = (free_port(), free_port(), free_port());
            let config = dir.path().join("garage.toml");
            std::fs::write(
                &config,
                format!(
                    "metadata_dir = {meta:?}\ndata_dir = {data:?}\ndb_engine = \"lmdb\"\n\
                     {fsync}replication_factor = {rf}\n\
                     rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\n\
                     rpc_secret = \"{secret}\"\n\
                     [s3_api]\ns3_region = \"hangar\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
                     root_domain = \".s3.garage.localhost\"\n\
                     [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
                    meta = dir.path().join("meta"),
                    data = dir.path().join("data"),
                ),
            )
            .expect("write garage config");
            let log = std::fs::File::create(dir.path().join("garage.log")).expect("log file");
            let child = Command::new(bin)
                .args(["-c"])
                .arg(&config)
                .arg("server")
                .env("RUST_LOG", "garage=warn")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start garage");
            let mut node = GarageNode {
                child,
                config,
                s3_port: s3,
                peer: String::new(),
                _dir: dir,
            };
            let id = wait_for("garage to answer", Duration::from_secs(30), || {
                let out = cli_on(bin, &node.config, &["node", "id", "-q"]).ok()?;
                Some(out.trim().to_string())
            });
            node.peer = id;
            nodes.push(node);
        }
        let c = GarageCluster {
            bin: bin.to_path_buf(),
            nodes,
        };
        for other in &c.nodes[1..] {
            c.cli(&["node", "connect", &other.peer]);
        }
        for (i, node) in c.nodes.iter().enumerate() {
            let id = node.peer.split('@').next().unwrap_or_default().to_string();
            let zone = format!("dc{}", i + 1);
            wait_for("garage to see every node", Duration::from_secs(30), || {
                cli_on(
                    &c.bin,
                    &c.nodes[0].config,
                    &["layout", "assign", "-z", &zone, "-c", "100G", &id],
                )
                .ok()
            });
        }
        c.cli(&["layout", "apply", "--version", "1"]);
        wait_for("garage to take buckets", Duration::from_secs(60), || {
            cli_on(&c.bin, &c.nodes[0].config, &["bucket", "create", "bench"]).ok()
        });
        c
    }

    /// Run the CLI against the first node; panics with its output on
    /// failure.
    pub fn cli(&self, args: &[&str]) -> String {
        cli_on(&self.bin, &self.nodes[0].config, args)
            .unwrap_or_else(|e| panic!("garage {args:?}: {e}"))
    }

    /// A key allowed to read and write the bucket `bench`.
    pub fn bench_key(&self) -> S3Key {
        let out = self.cli(&["key", "create", "bench"]);
        let field = |name: &str| {
            out.lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    (k.trim() == name).then(|| v.trim().to_string())
                })
                .unwrap_or_else(|| panic!("no {name:?} in `garage key create`: {out}"))
        };
        let key = S3Key {
            id: field("Key ID"),
            secret: field("Secret key"),
        };
        self.cli(&[
            "bucket", "allow", "--read", "--write", "--owner", "bench", "--key", "bench",
        ]);
        key
    }

    pub fn s3_port(&self) -> u16 {
        self.nodes[0].s3_port
    }

    pub fn pid(&self) -> u32 {
        self.nodes[0].child.id()
    }

    /// The first node's metadata directory.
    pub fn meta_dir(&self) -> PathBuf {
        self.nodes[0]._dir.path().join("meta")
    }
}

/// Whether Garage runs with fsync on (`HANGAR_BENCH_GARAGE_FSYNC=1`).
pub fn durable() -> bool {
    std::env::var("HANGAR_BENCH_GARAGE_FSYNC").is_ok_and(|v| v == "1")
}

fn cli_on(bin: &Path, config: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(bin)
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
