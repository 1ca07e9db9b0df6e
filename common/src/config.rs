//! The configuration file, shared by the agent and the console so that both
//! find the cluster the same way.
//!
//! Where it comes from, first match wins: `--config FILE`, the
//! `HANGAR_CONFIG` environment variable, the user's config directory
//! (`~/.config/hangar/hangar.toml`), `/etc/hangar/hangar.toml`. With none,
//! [`Config::defaults`] describes a single-node cluster in the user's data
//! directory. Every key is documented in `assets/hangar.toml`; unknown keys
//! are refused, so a typo is an error rather than a silently ignored setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ids::PeerAddr;
use crate::layout::MAX_REPLICATION_FACTOR;
use crate::transport::RpcSecret;

pub const CONFIG_ENV: &str = "HANGAR_CONFIG";
pub const SYSTEM_CONFIG: &str = "/etc/hangar/hangar.toml";
/// File in the metadata directory holding a secret the agent generated
/// because none was configured.
pub const GENERATED_SECRET_FILE: &str = "rpc_secret";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_metadata_dir")]
    pub metadata_dir: PathBuf,
    /// Where blocks are kept: one directory, or several with capacities.
    #[serde(default = "default_data_dir")]
    pub data_dir: DataDirs,
    #[serde(default = "default_rf")]
    pub replication_factor: usize,
    #[serde(default = "default_rpc_bind_addr")]
    pub rpc_bind_addr: String,
    #[serde(default)]
    pub rpc_public_addr: Option<String>,
    /// Open connections to other nodes from the address of
    /// `rpc_bind_addr` (for hosts with several addresses).
    #[serde(default)]
    pub rpc_bind_outgoing: bool,
    #[serde(default)]
    pub rpc_secret: Option<String>,
    #[serde(default)]
    pub rpc_secret_file: Option<PathBuf>,
    #[serde(default)]
    pub bootstrap_peers: Vec<String>,
    /// How often each node pings every other.
    #[serde(default = "default_ping_interval_ms")]
    pub ping_interval_ms: u64,
    /// Consecutive missed pings after which a peer is marked down.
    #[serde(default = "default_ping_failures")]
    pub ping_failures_before_down: u32,
    #[serde(default)]
    pub tables: TablesConfig,
    #[serde(default)]
    pub blocks: BlocksConfig,
    #[serde(default)]
    pub s3_api: S3ApiConfig,
    #[serde(default)]
    pub s3_web: S3WebConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub snapshots: SnapshotConfig,
}

/// The directories holding a node's blocks: `data_dir = "/path"` for one,
/// or a list of `{ path = "/mnt/disk1/hangar", capacity = "2T" }` tables,
/// typically one per disk (`read_only = true` drains a directory: its
/// blocks stay readable and move to the others).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDirs(pub Vec<DataDir>);

/// One data directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataDir {
    pub path: PathBuf,
    /// Most bytes of blocks to keep here (`"2T"`, `"500GB"`, or a number of
    /// bytes); without it, the size of its file system. Blocks are spread
    /// over the directories in proportion to these capacities.
    #[serde(
        default,
        deserialize_with = "de_capacity",
        skip_serializing_if = "Option::is_none"
    )]
    pub capacity: Option<u64>,
    /// Keep serving the blocks here but write no new ones.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

impl DataDirs {
    pub fn one(path: PathBuf) -> DataDirs {
        DataDirs(vec![DataDir {
            path,
            capacity: None,
            read_only: false,
        }])
    }
}

impl Serialize for DataDirs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] if one.capacity.is_none() && !one.read_only => one.path.serialize(s),
            many => many.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for DataDirs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = DataDirs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a path, or a list of { path = \"...\", capacity = \"2T\" }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DataDirs, E> {
                Ok(DataDirs::one(PathBuf::from(v)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<DataDirs, A::Error> {
                Vec::<DataDir>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(DataDirs)
            }
        }
        d.deserialize_any(V)
    }
}

/// A capacity written as a size (`"2T"`) or a number of bytes.
fn de_capacity<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Cap {
        Bytes(u64),
        Text(String),
    }
    match Cap::deserialize(d)? {
        Cap::Bytes(b) => Ok(Some(b)),
        Cap::Text(t) => crate::size::parse_size(&t)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// Copies of the metadata store taken while the agent runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Hours between automatic snapshots; 0 turns them off.
    #[serde(default = "default_snapshot_interval")]
    pub interval_hours: u64,
    /// Snapshots kept (the oldest go first).
    #[serde(default = "default_snapshot_keep")]
    pub keep: usize,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            interval_hours: default_snapshot_interval(),
            keep: default_snapshot_keep(),
        }
    }
}

fn default_snapshot_interval() -> u64 {
    24
}
fn default_snapshot_keep() -> usize {
    3
}

/// Object data: how it is cut and kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlocksConfig {
    /// Objects are cut into blocks of this many bytes.
    #[serde(default = "default_block_size")]
    pub block_size: usize,
    /// Objects up to this size live in the metadata, without blocks.
    #[serde(default = "default_inline_max")]
    pub inline_max_bytes: usize,
    /// A block nobody references is deleted after this delay (uploads in
    /// progress write their blocks before referencing them).
    #[serde(default = "default_unreferenced_grace")]
    pub unreferenced_grace_secs: u64,
    /// A missing block that just gained a reference is given this long to
    /// arrive (a PUT writes its block list while its last blocks travel)
    /// before the resync worker fetches it from another replica.
    #[serde(default = "default_arrival_delay")]
    pub arrival_delay_secs: u64,
    /// Every block is read back and checked this often.
    #[serde(default = "default_scrub_interval")]
    pub scrub_interval_days: u64,
    /// Pause between two blocks checked by the scrub, to leave the disk to
    /// requests.
    #[serde(default = "default_scrub_pause")]
    pub scrub_pause_ms: u64,
    /// zstd level for block files (1 to 19), 0 to store blocks as they are.
    #[serde(default)]
    pub compression_level: i32,
}

impl Default for BlocksConfig {
    fn default() -> Self {
        BlocksConfig {
            block_size: default_block_size(),
            inline_max_bytes: default_inline_max(),
            unreferenced_grace_secs: default_unreferenced_grace(),
            arrival_delay_secs: default_arrival_delay(),
            scrub_interval_days: default_scrub_interval(),
            scrub_pause_ms: default_scrub_pause(),
            compression_level: 0,
        }
    }
}

fn default_block_size() -> usize {
    1 << 20
}
fn default_inline_max() -> usize {
    3072
}
fn default_unreferenced_grace() -> u64 {
    600
}
fn default_arrival_delay() -> u64 {
    10
}
fn default_scrub_interval() -> u64 {
    30
}
fn default_scrub_pause() -> u64 {
    10
}

/// Metadata tables: storage and background work.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TablesConfig {
    /// The embedded engine of the metadata store. Chosen when the node is
    /// set up: an agent refuses to open a store written by the other one.
    #[serde(default)]
    pub engine: MetadataEngine,
    /// Page cache of the metadata store, in bytes.
    #[serde(default = "default_db_cache")]
    pub db_cache_bytes: u64,
    /// Time a quorum has to answer a table read or write.
    #[serde(default = "default_op_timeout")]
    pub op_timeout_ms: u64,
    /// How often every partition is compared with its other replicas
    /// (anti-entropy); also done whenever a peer comes back.
    #[serde(default = "default_sync_interval")]
    pub sync_interval_ms: u64,
    /// How long a deletion marker (tombstone) waits before it may be
    /// collected, once every replica holds it.
    #[serde(default = "default_gc_delay")]
    pub gc_delay_ms: u64,
}

impl Default for TablesConfig {
    fn default() -> Self {
        TablesConfig {
            engine: MetadataEngine::default(),
            db_cache_bytes: default_db_cache(),
            op_timeout_ms: default_op_timeout(),
            sync_interval_ms: default_sync_interval(),
            gc_delay_ms: default_gc_delay(),
        }
    }
}

/// The embedded key-value engine under the metadata tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetadataEngine {
    /// sled 0.34: log-structured, the default.
    #[default]
    Sled,
    /// redb: a copy-on-write B-tree in one file.
    Redb,
}

fn default_db_cache() -> u64 {
    32 << 20
}
fn default_op_timeout() -> u64 {
    10_000
}
fn default_sync_interval() -> u64 {
    600_000
}
fn default_gc_delay() -> u64 {
    86_400_000
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3ApiConfig {
    #[serde(default = "default_s3_bind")]
    pub api_bind_addr: String,
    #[serde(default = "default_region")]
    pub s3_region: String,
    #[serde(default)]
    pub root_domain: Option<String>,
    /// Seconds between two passes of the lifecycle worker.
    #[serde(default = "default_lifecycle_interval")]
    pub lifecycle_interval_secs: u64,
    /// Length of a lifecycle rule's "day" in seconds: 86400. Only tests
    /// have a reason to shorten it.
    #[serde(default = "default_lifecycle_day")]
    pub lifecycle_day_secs: u64,
}

impl Default for S3ApiConfig {
    fn default() -> Self {
        S3ApiConfig {
            api_bind_addr: default_s3_bind(),
            s3_region: default_region(),
            root_domain: None,
            lifecycle_interval_secs: default_lifecycle_interval(),
            lifecycle_day_secs: default_lifecycle_day(),
        }
    }
}

fn default_lifecycle_interval() -> u64 {
    3600
}
fn default_lifecycle_day() -> u64 {
    86_400
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3WebConfig {
    #[serde(default = "default_web_bind")]
    pub bind_addr: String,
    #[serde(default)]
    pub root_domain: Option<String>,
}

impl Default for S3WebConfig {
    fn default() -> Self {
        S3WebConfig {
            bind_addr: default_web_bind(),
            root_domain: None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default)]
    pub metrics_bind_addr: Option<String>,
}

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "hangar")
}

fn user_data_dir() -> PathBuf {
    project_dirs()
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from("hangar-data"))
}

fn default_metadata_dir() -> PathBuf {
    user_data_dir().join("meta")
}
fn default_data_dir() -> DataDirs {
    DataDirs::one(user_data_dir().join("data"))
}
fn default_rf() -> usize {
    3
}
fn default_rpc_bind_addr() -> String {
    "[::]:3901".into()
}
fn default_ping_interval_ms() -> u64 {
    1000
}
fn default_ping_failures() -> u32 {
    3
}
fn default_s3_bind() -> String {
    "[::]:3900".into()
}
fn default_web_bind() -> String {
    "[::]:3902".into()
}
fn default_region() -> String {
    "hangar".into()
}

/// Where the configuration was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    /// No file anywhere: built-in single-node defaults.
    Defaults,
}

impl std::fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigSource::File(p) => write!(f, "{}", p.display()),
            ConfigSource::Defaults => f.write_str("built-in defaults (no config file)"),
        }
    }
}

/// A configuration problem, phrased for the operator, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("cannot read rpc_secret_file {path}: {source}")]
    SecretFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Config {
    /// Single-node defaults in the user's data directory.
    pub fn defaults() -> Config {
        Config {
            metadata_dir: default_metadata_dir(),
            data_dir: default_data_dir(),
            replication_factor: 1,
            rpc_bind_addr: default_rpc_bind_addr(),
            rpc_public_addr: None,
            rpc_bind_outgoing: false,
            rpc_secret: None,
            rpc_secret_file: None,
            bootstrap_peers: Vec::new(),
            ping_interval_ms: default_ping_interval_ms(),
            ping_failures_before_down: default_ping_failures(),
            tables: TablesConfig::default(),
            blocks: BlocksConfig::default(),
            s3_api: S3ApiConfig::default(),
            s3_web: S3WebConfig::default(),
            admin: AdminConfig::default(),
            snapshots: SnapshotConfig::default(),
        }
    }

    /// Find and load the configuration (see the module docs for the order).
    pub fn load(flag: Option<&Path>) -> Result<(Config, ConfigSource), ConfigError> {
        let path = match flag {
            Some(p) => Some(p.to_path_buf()),
            None => match std::env::var_os(CONFIG_ENV) {
                Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
                _ => Self::standard_location(),
            },
        };
        match path {
            None => Ok((Config::defaults(), ConfigSource::Defaults)),
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                let config = Config::parse(&text, &path.display().to_string())?;
                Ok((config, ConfigSource::File(path)))
            }
        }
    }

    /// The first standard location that has a file.
    pub fn standard_location() -> Option<PathBuf> {
        let user = project_dirs().map(|d| d.config_dir().join("hangar.toml"));
        user.into_iter()
            .chain(std::iter::once(PathBuf::from(SYSTEM_CONFIG)))
            .find(|p| p.is_file())
    }

    /// Parse and validate TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.message().to_string()
                + &e.span()
                    .map(|s| {
                        let line_no = text[..s.start].matches('\n').count() + 1;
                        let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
                        format!(" (line {line_no}: `{line}`)")
                    })
                    .unwrap_or_default(),
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: origin.to_string(),
            message,
        };
        if !(1..=MAX_REPLICATION_FACTOR).contains(&self.replication_factor) {
            return Err(invalid(format!(
                "replication_factor must be between 1 and {MAX_REPLICATION_FACTOR}, got {}",
                self.replication_factor
            )));
        }
        self.rpc_bind_addr.parse::<SocketAddr>().map_err(|e| {
            invalid(format!(
                "rpc_bind_addr {:?} is not an address:port: {e}",
                self.rpc_bind_addr
            ))
        })?;
        if let Some(public) = &self.rpc_public_addr
            && public
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
        {
            return Err(invalid(format!(
                "rpc_public_addr {public:?} must be host:port"
            )));
        }
        if self.rpc_secret.is_some() && self.rpc_secret_file.is_some() {
            return Err(invalid(
                "set rpc_secret or rpc_secret_file, not both".into(),
            ));
        }
        if let Some(s) = &self.rpc_secret {
            s.parse::<RpcSecret>().map_err(|e| invalid(e.to_string()))?;
        }
        for p in &self.bootstrap_peers {
            p.parse::<PeerAddr>()
                .map_err(|e| invalid(format!("bootstrap_peers: {e}")))?;
        }
        if self.ping_interval_ms < 50 {
            return Err(invalid("ping_interval_ms must be at least 50".into()));
        }
        if self.tables.op_timeout_ms < 100 || self.tables.sync_interval_ms < 100 {
            return Err(invalid(
                "[tables] op_timeout_ms and sync_interval_ms must be at least 100".into(),
            ));
        }
        if self.tables.db_cache_bytes < (1 << 20) {
            return Err(invalid(
                "[tables] db_cache_bytes must be at least 1 MiB (1048576)".into(),
            ));
        }
        if !(4096..=(16 << 20)).contains(&self.blocks.block_size) {
            return Err(invalid(
                "[blocks] block_size must be between 4096 and 16777216".into(),
            ));
        }
        if !(0..=19).contains(&self.blocks.compression_level) {
            return Err(invalid(
                "[blocks] compression_level must be 0 (off) to 19".into(),
            ));
        }
        if self.blocks.inline_max_bytes > 65536 {
            return Err(invalid(
                "[blocks] inline_max_bytes must be at most 65536".into(),
            ));
        }
        if self.data_dir.0.is_empty() {
            return Err(invalid("data_dir must name at least one directory".into()));
        }
        for (i, a) in self.data_dir.0.iter().enumerate() {
            if self.data_dir.0[..i].iter().any(|b| b.path == a.path) {
                return Err(invalid(format!(
                    "data_dir lists {} twice",
                    a.path.display()
                )));
            }
            if a.capacity == Some(0) {
                return Err(invalid(format!(
                    "data_dir {}: capacity must be more than 0 (use read_only = true to stop writing there)",
                    a.path.display()
                )));
            }
        }
        if self.data_dir.0.iter().all(|d| d.read_only) {
            return Err(invalid(
                "data_dir: at least one directory must not be read_only".into(),
            ));
        }
        if self.ping_failures_before_down == 0 {
            return Err(invalid(
                "ping_failures_before_down must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The configured secret, if any (`rpc_secret`, else `rpc_secret_file`).
    pub fn configured_secret(&self) -> Result<Option<RpcSecret>, ConfigError> {
        if let Some(s) = &self.rpc_secret {
            return s
                .parse()
                .map(Some)
                .map_err(|e: crate::transport::SecretError| ConfigError::Invalid {
                    path: "rpc_secret".into(),
                    message: e.to_string(),
                });
        }
        if let Some(path) = &self.rpc_secret_file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
                path: path.clone(),
                source,
            })?;
            return text
                .parse()
                .map(Some)
                .map_err(|e: crate::transport::SecretError| ConfigError::Invalid {
                    path: path.display().to_string(),
                    message: e.to_string(),
                });
        }
        Ok(None)
    }

    /// Path of the secret the agent generates when none is configured.
    pub fn generated_secret_path(&self) -> PathBuf {
        self.metadata_dir.join(GENERATED_SECRET_FILE)
    }

    /// How other nodes and consoles reach this node: `rpc_public_addr`, or
    /// the bind address with an unspecified IP replaced by loopback (right
    /// for a single node; a multi-node cluster should set rpc_public_addr).
    pub fn public_addr(&self) -> String {
        if let Some(p) = &self.rpc_public_addr {
            return p.clone();
        }
        match self.rpc_bind_addr.parse::<SocketAddr>() {
            Ok(a) if a.ip().is_unspecified() => format!("127.0.0.1:{}", a.port()),
            Ok(a) => a.to_string(),
            Err(_) => self.rpc_bind_addr.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_template_parses() {
        let text = include_str!("../../assets/hangar.toml");
        let c = Config::parse(text, "assets/hangar.toml").unwrap();
        assert_eq!(c.replication_factor, 3);
        assert_eq!(c.rpc_bind_addr, "[::]:3901");
    }

    #[test]
    fn the_raspberry_pi_guide_config_parses() {
        let guide = include_str!("../../doc/raspberry-pi.md");
        let toml = guide
            .split("```toml\n")
            .nth(1)
            .and_then(|t| t.split("```").next())
            .expect("a toml block in the guide");
        let c = Config::parse(toml, "doc/raspberry-pi.md").unwrap();
        assert_eq!(c.data_dir.0[0].capacity, Some(900_000_000_000));
        assert_eq!(c.tables.db_cache_bytes, 16 << 20);
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let e = Config::parse("replication_facter = 3\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("replication_facter"), "{e}");
        assert!(e.contains("x.toml"), "{e}");
    }

    #[test]
    fn a_short_secret_is_refused() {
        let e = Config::parse("rpc_secret = \"abcd\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("64 hex digits"), "{e}");
    }

    #[test]
    fn data_dir_is_a_path_or_a_list_with_capacities() {
        let c = Config::parse("data_dir = \"/d\"\n", "x").unwrap();
        assert_eq!(c.data_dir, DataDirs::one("/d".into()));
        let c = Config::parse(
            "data_dir = [\n  { path = \"/a\", capacity = \"2T\" },\n  { path = \"/b\", capacity = 1000, read_only = true },\n  { path = \"/c\" },\n]\n",
            "x",
        )
        .unwrap();
        let caps: Vec<_> = c
            .data_dir
            .0
            .iter()
            .map(|d| (d.capacity, d.read_only))
            .collect();
        assert_eq!(
            caps,
            [
                (Some(2_000_000_000_000), false),
                (Some(1000), true),
                (None, false)
            ]
        );
        // Round trip through TOML.
        let text = toml::to_string(&c).unwrap();
        assert_eq!(Config::parse(&text, "x").unwrap().data_dir, c.data_dir);
        for (bad, says) in [
            (
                "data_dir = [{ path = \"/a\", capacity = \"lots\" }]",
                "not a size",
            ),
            ("data_dir = [{ path = \"/a\", size = \"1G\" }]", "size"),
            ("data_dir = [{ path = \"/a\" }, { path = \"/a\" }]", "twice"),
            (
                "data_dir = [{ path = \"/a\", read_only = true }]",
                "read_only",
            ),
            ("data_dir = []", "at least one"),
            (
                "data_dir = [{ path = \"/a\", capacity = 0 }]",
                "more than 0",
            ),
        ] {
            let e = Config::parse(bad, "x").unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_addresses_and_peers_are_refused() {
        assert!(Config::parse("rpc_bind_addr = \"nowhere\"\n", "x").is_err());
        assert!(Config::parse("bootstrap_peers = [\"abc@host:1\"]\n", "x").is_err());
        assert!(Config::parse("replication_factor = 0\n", "x").is_err());
    }

    #[test]
    fn public_addr_falls_back_to_loopback_for_wildcard_binds() {
        let c = Config::parse("rpc_bind_addr = \"0.0.0.0:4000\"\n", "x").unwrap();
        assert_eq!(c.public_addr(), "127.0.0.1:4000");
    }
}
