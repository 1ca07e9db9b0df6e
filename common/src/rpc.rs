//! The tarpc services and every type that crosses the wire.
//!
//! Two services share one port: [`Peer`] (node to node) and [`Admin`]
//! (console to node). Which one a connection talks to is decided by the
//! [`ChannelKind`] in its handshake. Messages are MessagePack (rmp-serde)
//! with structs written as maps of field names ([`NamedMessagePack`]), so a
//! node ignores the fields it does not know and defaults the ones it lacks:
//! nodes of two neighbouring versions understand each other's messages.
//!
//! These types are the protocol: changing one changes what old nodes can
//! read. Add fields with `#[serde(default)]`, never rename or remove, and bump
//! [`crate::transport::PROTOCOL`] on any change (tarpc closes the
//! connection on a method it does not know, so callers check the agreed
//! version first). Version 2 wrote structs as arrays; version 3 reads those
//! (the fields added since default) and version 2 reads version 3's maps.
//! Version 4 added `Admin::layout_skip_dead` (the Peer service is as in 3).
//! Version 6 replaced anti-entropy's radix Merkle trees by hash-sum trees
//! (`TableOp::MerkleChildren`); version 7 dropped their per-bucket sums and
//! leaves (items are listed by group): a node syncs only with nodes of its
//! own Merkle version; everything else works across 5, 6 and 7.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use crate::NodeId;
use crate::hash::Hash;
use crate::ids::PeerAddr;
use crate::layout::cluster::{ApplyError, ClusterLayout, RingHealth, StagedRole};
use crate::layout::{AssignmentReport, LayoutError, NodeRole};
use crate::transport::{
    self, ChannelKind, HandshakeError, Hello, Keypair, RpcSecret, SecureChannel,
};

/// Node-to-node service.
#[tarpc::service]
pub trait Peer {
    /// Liveness probe; carries the caller's view so gossip rides on pings.
    async fn ping(req: PingRequest) -> PingResponse;
    /// The callee's whole layout (asked for when digests differ).
    async fn pull_layout() -> ClusterLayout;
    /// Offer a layout; the callee merges it into its own.
    async fn push_layout(layout: ClusterLayout);
    /// An operation on one of the callee's local table replicas.
    async fn table(req: TableRequest) -> Result<TableResponse, RpcError>;
    /// Store a block (sent on the bulk connection).
    async fn block_put(hash: Hash, data: bytes::Bytes) -> Result<(), RpcError>;
    /// A block's bytes, if the callee has it (sent on the bulk connection).
    async fn block_get(hash: Hash) -> Result<Option<bytes::Bytes>, RpcError>;
}

/// An operation on a node's local replica of a table. Items travel as
/// their MessagePack encoding: this layer does not know item types.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRequest {
    pub table: String,
    pub op: TableOp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TableOp {
    /// Merge these items into the local replica.
    Update(Vec<Vec<u8>>),
    /// One item by its storage key (partition key hash + sort key).
    Get(Vec<u8>),
    /// Items whose storage key starts with `prefix` and is greater than
    /// `after` (when given), in order, at most `limit`.
    Range {
        prefix: Vec<u8>,
        after: Option<Vec<u8>>,
        limit: usize,
    },
    /// The root of each of the 256 partitions' Merkle trees (since
    /// protocol 6 the partitions' hash sums: not comparable with the radix
    /// trees' roots of earlier versions).
    MerkleRoots,
    /// One node of a protocol 5 radix Merkle tree, by its key. Refused
    /// since protocol 6.
    MerkleNode(Vec<u8>),
    /// Delete each item whose encoding still hashes to the given value
    /// (garbage collection of tombstones every replica holds).
    DeleteIfEqual(Vec<(Vec<u8>, Hash)>),
    /// Merge these items into the local replica, like `Update`, and answer
    /// what the replica holds afterwards for each item where that is not
    /// the item sent (`TableResponse::Items`), so a writer learns that a
    /// newer value was already there. Since protocol 5.
    UpdateReturn(Vec<Vec<u8>>),
    /// Paxos phase 1 for the item at `key` (storage key): promise to accept
    /// nothing below `ballot`, and answer what was accepted and what the
    /// replica holds. Since protocol 5.
    Prepare { key: Vec<u8>, ballot: Ballot },
    /// Paxos phase 2: accept `value` (an encoded item) for `key` unless a
    /// higher ballot was promised. Since protocol 5.
    Accept {
        key: Vec<u8>,
        ballot: Ballot,
        value: Vec<u8>,
    },
    /// Anti-entropy's view of a partition: `[partition]` asks for its
    /// group sums, `[partition, group, ...]` for the (key, value hash) of
    /// its items in those groups; answered as an encoded node in
    /// `TableResponse::Node`. Since protocol 6; protocol 7 dropped the
    /// bucket level of 6, whose nodes answer these paths otherwise.
    MerkleChildren(Vec<u8>),
    /// `UpdateReturn`, after storing a block on this node: a small
    /// object's data travels with its item, and a replica applies the
    /// item only once the block is on its disk (the block is kept there,
    /// beside the item, while the item refers to it). Since protocol 10.
    UpdateReturnWithBlock {
        hash: Hash,
        block: bytes::Bytes,
        items: Vec<Vec<u8>>,
    },
}

impl TableOp {
    /// A read of one item or of the partitions' roots: a few lookups,
    /// answered from the engine's cache or the page cache, quick enough to
    /// run on an async worker. Writes (which may wait for a sync of the
    /// disk) and scans (listings, anti-entropy's groups) are run off them.
    pub fn is_quick_read(&self) -> bool {
        matches!(self, TableOp::Get(_) | TableOp::MerkleRoots)
    }
}

/// A Paxos ballot: a round number, the proposer's node id breaking ties.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Ballot {
    pub round: u64,
    pub node: NodeId,
}

impl Ballot {
    /// Below every ballot a proposer makes.
    pub const ZERO: Ballot = Ballot {
        round: 0,
        node: NodeId([0; crate::ids::NODE_ID_LEN]),
    };
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TableResponse {
    Ok,
    Item(Option<Vec<u8>>),
    Items(Vec<Vec<u8>>),
    Roots(Vec<Hash>),
    /// An encoded Merkle node (empty for no node).
    Node(Vec<u8>),
    /// Answer to `Prepare`: whether the ballot was promised (else the
    /// higher one promised), the value accepted with the highest ballot,
    /// and the replica's item.
    Promise {
        ok: bool,
        promised: Ballot,
        accepted: Option<(Ballot, Vec<u8>)>,
        current: Option<Vec<u8>>,
    },
    /// Answer to `Accept`: accepted, or the higher ballot promised.
    Accepted {
        ok: bool,
        promised: Ballot,
    },
}

/// Which permissions a `bucket allow|deny` names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionChange {
    pub read: bool,
    pub write: bool,
    pub owner: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketInfo {
    pub name: String,
    /// Hex id.
    pub id: String,
    pub created_ms: u64,
    /// Keys with some permission: (key id, key name, read, write, owner).
    pub keys: Vec<KeyGrant>,
    /// Live objects and their bytes (a few seconds behind writes).
    #[serde(default)]
    pub objects: u64,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub quota_max_size: Option<u64>,
    #[serde(default)]
    pub quota_max_objects: Option<u64>,
    /// Served as a static website.
    #[serde(default)]
    pub website: bool,
    /// S3 versioning: None (never enabled), "Enabled" or "Suspended".
    #[serde(default)]
    pub versioning: Option<String>,
    /// Of `objects` and `bytes`: the versions kept that are not current.
    #[serde(default)]
    pub noncurrent_objects: u64,
    #[serde(default)]
    pub noncurrent_bytes: u64,
    /// Why anyone without a key can reach the bucket, if they can: its
    /// ACL, its policy, its website (empty: private).
    #[serde(default)]
    pub public: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGrant {
    pub key_id: String,
    pub key_name: String,
    pub bucket: String,
    pub read: bool,
    pub write: bool,
    pub owner: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub access_key_id: String,
    pub name: String,
    /// Only in the answer to `key_create`.
    pub secret_access_key: Option<String>,
    pub buckets: Vec<KeyGrant>,
}

/// What one replica holds for a key. (An explicit enum: MessagePack and
/// JSON cannot tell `None` from `Some(None)`.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LocalValue {
    Absent,
    Tombstone,
    Value(String),
}

/// Counters of one table on one node, for status displays.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStats {
    pub table: String,
    /// A digest of the roots of this node's 256 Merkle trees: two nodes
    /// holding the same partitions with the same contents show the same.
    #[serde(default)]
    pub merkle_digest: String,
    /// Items stored on this node, tombstones included.
    pub items: u64,
    /// Item changes not yet reflected in the Merkle trees.
    pub merkle_queue: u64,
    /// Tombstones waiting to be collected.
    pub gc_queue: u64,
    /// Partitions this node holds for which a full sync with every other
    /// replica has completed, and how many it holds.
    pub partitions_synced: usize,
    pub partitions_held: usize,
    /// Unix milliseconds of the oldest "last full sync" among held
    /// partitions (None if some partition was never synced).
    pub oldest_sync_ms: Option<u64>,
    /// Items pushed to other replicas by anti-entropy since start.
    pub items_pushed: u64,
    /// Tombstone collections put off because a replica was unreachable,
    /// and tombstones collected, since start.
    pub gc_blocked: u64,
    pub gc_collected: u64,
}

/// Console-to-node service.
#[tarpc::service]
pub trait Admin {
    /// The cluster as this node sees it.
    async fn status() -> ClusterStatus;
    /// Connect this node to another one (which then joins the mesh).
    async fn connect_node(peer: PeerAddr) -> Result<(), RpcError>;
    /// Current layout, staged changes and the preview of applying them.
    async fn layout() -> LayoutView;
    /// Stage role changes; returns the new view.
    async fn layout_stage(changes: Vec<(NodeId, StagedRole)>) -> Result<LayoutView, RpcError>;
    /// Apply the staged changes as `version` (must be current + 1).
    async fn layout_apply(version: u64) -> Result<AssignmentReport, RpcError>;
    /// Drop every staged change.
    async fn layout_revert() -> Result<LayoutView, RpcError>;
    /// The answering node's background workers.
    async fn worker_list() -> Vec<WorkerInfo>;
    /// Pause (or resume) one of the answering node's workers.
    async fn worker_pause(name: String, paused: bool) -> Result<WorkerInfo, RpcError>;
    /// Start a repair on the answering node.
    async fn repair(what: Repair) -> Result<String, RpcError>;
    /// Write a snapshot of the answering node's metadata now; returns its
    /// directory.
    async fn snapshot() -> Result<String, RpcError>;
    /// Create a bucket.
    async fn bucket_create(name: String) -> Result<BucketInfo, RpcError>;
    /// Delete an empty bucket.
    async fn bucket_delete(name: String) -> Result<(), RpcError>;
    /// Every bucket.
    async fn bucket_list() -> Result<Vec<BucketInfo>, RpcError>;
    /// One bucket, with the keys that may use it.
    async fn bucket_info(name: String) -> Result<BucketInfo, RpcError>;
    /// Set a bucket's quotas (`None`: unlimited).
    async fn bucket_set_quotas(
        name: String,
        max_size: Option<u64>,
        max_objects: Option<u64>,
    ) -> Result<BucketInfo, RpcError>;
    /// Enable (true) or suspend (false) a bucket's S3 versioning.
    async fn bucket_set_versioning(name: String, enabled: bool) -> Result<BucketInfo, RpcError>;
    /// Grant (`allow`) or revoke permissions of a key on a bucket; the
    /// permissions not named are left as they are.
    async fn bucket_allow(
        name: String,
        key: String,
        perm: PermissionChange,
        allow: bool,
    ) -> Result<BucketInfo, RpcError>;
    /// Create an access key; the answer holds its secret, shown once.
    async fn key_create(name: String) -> Result<KeyInfo, RpcError>;
    /// Every access key (secrets left out).
    async fn key_list() -> Result<Vec<KeyInfo>, RpcError>;
    /// One key by id or unique name (secret left out).
    async fn key_info(key: String) -> Result<KeyInfo, RpcError>;
    async fn key_delete(key: String) -> Result<(), RpcError>;
    /// Diagnostics table `debug_kv`: quorum write (`None` deletes).
    async fn debug_kv_put(key: String, value: Option<String>) -> Result<(), RpcError>;
    /// Diagnostics table `debug_kv`: quorum read.
    async fn debug_kv_get(key: String) -> Result<Option<String>, RpcError>;
    /// Diagnostics table `debug_kv`: what this node's local replica holds
    /// for each key.
    async fn debug_kv_local(keys: Vec<String>) -> Result<Vec<LocalValue>, RpcError>;
    /// Layout `version` is being moved to, and some nodes that are down
    /// have not confirmed it: count them as having confirmed, so the move
    /// completes without them. Returns them (empty: nothing to skip).
    /// Since protocol 4.
    async fn layout_skip_dead(version: u64) -> Result<Vec<NodeId>, RpcError>;
    /// One key by id or unique name, with its secret: a lost secret is not
    /// a dead key (anyone with the cluster secret may read it anyway).
    /// Since protocol 5.
    async fn key_secret(key: String) -> Result<KeyInfo, RpcError>;
    /// The newest `limit` entries of the answering node's event log,
    /// newest first. Since protocol 5.
    async fn events(limit: u32) -> Vec<crate::events::ClusterEvent>;
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingRequest {
    /// How the caller is reached, so the callee can connect back.
    pub from_addr: String,
    pub layout_version: u64,
    pub layout_digest: u64,
    /// The caller's clocks when it sent the ping. Since protocol 5.
    #[serde(default)]
    pub clock: Option<ClockReading>,
}

/// A node's clocks at one moment, carried by pings: the hybrid clock moves
/// every node that hears it forward, and the wall clock lets the caller
/// measure the other's offset (see [`crate::clock`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockReading {
    /// Wall clock, microseconds since the Unix epoch.
    pub wall_us: u64,
    /// Hybrid clock, microseconds.
    pub hlc_us: u64,
}

impl ClockReading {
    /// This process's clocks now.
    pub fn now() -> ClockReading {
        ClockReading {
            wall_us: crate::clock::wall_us(),
            hlc_us: crate::clock::hlc().peek(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingResponse {
    pub layout_version: u64,
    pub layout_digest: u64,
    /// Every peer the callee knows, so the caller can complete the mesh.
    pub known_peers: Vec<PeerAddr>,
    /// The callee's data disk.
    #[serde(default)]
    pub disk: Option<DiskUsage>,
    /// The callee's data directories.
    #[serde(default)]
    pub data_dirs: Vec<DataDirStatus>,
    /// The callee's clocks when it answered. Since protocol 5.
    #[serde(default)]
    pub clock: Option<ClockReading>,
    /// The nodes the callee sees down, with when it first saw them down
    /// (its wall clock, Unix ms): "down since" is the cluster's first
    /// sighting, not the time the asking node itself started. Since
    /// protocol 5.
    #[serde(default)]
    pub down_since: Vec<(NodeId, u64)>,
}

/// One data directory of a node: what it holds and whether it takes new
/// blocks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataDirStatus {
    pub path: String,
    /// Configured capacity (None: its file system's size).
    pub capacity: Option<u64>,
    /// Serves its blocks but takes no new ones (being drained).
    pub read_only: bool,
    /// Block files and their bytes on disk.
    pub blocks: u64,
    pub bytes: u64,
    /// Whether counting what was there at start is finished.
    pub counted: bool,
    /// Its file system's size and free space.
    pub fs_total: u64,
    pub fs_free: u64,
    /// Why it takes no new blocks now (capacity reached, file system
    /// nearly full, a failed write), if so.
    pub full: Option<String>,
}

/// Space for blocks on a node: the size of its writable data directories
/// and the room left in them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskUsage {
    pub total: u64,
    pub free: u64,
}

/// One node as seen from the node that answers `status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: NodeId,
    pub addr: Option<String>,
    pub is_self: bool,
    pub up: bool,
    /// Unix milliseconds when it was marked down.
    pub down_since_ms: Option<u64>,
    /// Unix milliseconds of the last successful ping.
    pub last_seen_ms: Option<u64>,
    /// Smoothed ping round-trip time.
    pub rtt_ms: Option<f64>,
    pub agent_version: Option<String>,
    /// Its role in the applied layout.
    pub role: Option<NodeRole>,
    /// A change staged for it.
    pub staged: Option<StagedRole>,
    /// Its data disk, as its last ping answer said.
    #[serde(default)]
    pub disk: Option<DiskUsage>,
    /// The layout version it last reported.
    pub layout_version: Option<u64>,
    /// Partition replicas it holds in the applied layout.
    pub partitions: usize,
    /// Its data directories, as its last ping answer said.
    #[serde(default)]
    pub data_dirs: Vec<DataDirStatus>,
    /// How far its wall clock is from the cluster's median clock
    /// (milliseconds, positive: ahead), measured by pings; None until
    /// measured. See [`crate::clock::SKEW_WARN_MS`].
    #[serde(default)]
    pub clock_offset_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The node that answered.
    pub node: NodeId,
    pub agent_version: String,
    pub layout_version: u64,
    pub replication_factor: usize,
    pub health: RingHealth,
    pub nodes: Vec<NodeStatus>,
    /// The answering node's metadata tables.
    #[serde(default)]
    pub tables: Vec<TableStats>,
    /// Layout versions still live, oldest first: more than one while data
    /// moves after a layout change.
    #[serde(default)]
    pub live_versions: Vec<u64>,
    /// Of the nodes of the live versions, how many have pushed their data
    /// for the current version.
    #[serde(default)]
    pub nodes_synced: usize,
    #[serde(default)]
    pub nodes_in_transition: usize,
    /// The answering node's block resync worker.
    #[serde(default)]
    pub blocks: BlockWorkerStats,
    /// The last metadata snapshot the answering node wrote since it
    /// started.
    #[serde(default)]
    pub last_snapshot: Option<SnapshotInfo>,
    /// Where S3 clients and browsers reach the answering node.
    #[serde(default)]
    pub endpoints: Option<Endpoints>,
    /// The answering node's metadata engine (`[tables] engine`).
    #[serde(default)]
    pub metadata_engine: Option<String>,
}

/// A node's client-facing addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    /// S3 API URL (`http://host:3900`).
    pub s3: String,
    /// Static websites URL.
    pub web: String,
    /// The region name S3 clients should sign for.
    pub region: String,
}

/// A metadata snapshot a node wrote, and what it cost.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Unix milliseconds when it was finished.
    pub at_ms: u64,
    /// Metadata entries copied.
    pub entries: u64,
    /// Wall time of the whole snapshot.
    pub duration_ms: u64,
    /// How long writes on that node waited for it.
    pub writes_paused_ms: u64,
}

/// Work done by a node's block resync worker since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockWorkerStats {
    /// Blocks fetched from other replicas (missing or corrupted here).
    pub fetched: u64,
    /// Unreferenced blocks deleted.
    pub deleted: u64,
    /// Blocks given to their new nodes after a layout change.
    pub handed_over: u64,
    /// Attempts that failed and were queued again.
    pub errors: u64,
    /// Scrub: whether a pass runs, its progress, corrupted blocks found.
    #[serde(default)]
    pub scrub_running: bool,
    #[serde(default)]
    pub scrub_checked: u64,
    #[serde(default)]
    pub scrub_total: u64,
    #[serde(default)]
    pub scrub_corrupted: u64,
    /// Scrub: blocks moved to the data directory they belong in.
    #[serde(default)]
    pub scrub_moved: u64,
    /// Blocks waiting in the resync queue (counted every few seconds),
    /// including those whose check is due later (deletions after the
    /// grace delay, retries after a failure).
    #[serde(default)]
    pub resync_queue: u64,
}

/// A background worker, as `hangar worker list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub name: String,
    pub paused: bool,
    /// What it has done, in words.
    pub progress: String,
}

/// Repairs an operator can start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Repair {
    /// Check every local block against its hash now; refetch bad ones.
    Scrub,
    /// Compare every table partition with the other replicas now.
    Tables,
    /// Re-check every local block's placement and references now.
    Blocks,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayoutView {
    pub layout: ClusterLayout,
    /// What applying the staged changes would give; `None` when nothing is
    /// staged.
    pub preview: Option<Result<AssignmentReport, LayoutError>>,
}

/// An error an RPC reports to its caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum RpcError {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("cannot reach node {node}: {reason}")]
    Unreachable { node: String, reason: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("internal error on node {node}: {message}")]
    Internal { node: String, message: String },
    #[error("{0}")]
    Table(String),
    #[error("{0}")]
    Block(String),
}

/// A tarpc transport over a secure channel.
pub type RpcTransport<In, Out> = tokio_serde::Framed<
    tokio_util::codec::Framed<TcpStream, transport::NoiseCodec>,
    In,
    Out,
    NamedMessagePack<In, Out>,
>;

pub fn rpc_transport<In, Out>(ch: SecureChannel) -> RpcTransport<In, Out> {
    tokio_serde::Framed::new(ch.framed, NamedMessagePack(std::marker::PhantomData))
}

/// MessagePack with structs as maps of field names (tokio-serde's own
/// codec writes them as arrays, which a node of another version cannot
/// read as soon as a field was added). Reads both forms.
pub struct NamedMessagePack<In, Out>(std::marker::PhantomData<fn(Out) -> In>);

impl<In: for<'de> Deserialize<'de>, Out> tokio_serde::Deserializer<In>
    for NamedMessagePack<In, Out>
{
    type Error = std::io::Error;

    fn deserialize(
        self: std::pin::Pin<&mut Self>,
        src: &bytes::BytesMut,
    ) -> Result<In, Self::Error> {
        rmp_serde::from_slice(src)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

impl<In, Out: Serialize> tokio_serde::Serializer<Out> for NamedMessagePack<In, Out> {
    type Error = std::io::Error;

    fn serialize(self: std::pin::Pin<&mut Self>, item: &Out) -> Result<bytes::Bytes, Self::Error> {
        rmp_serde::to_vec_named(item)
            .map(Into::into)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

/// Why connecting to a node failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot resolve {addr}: {source}")]
    Resolve {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot connect to {addr}: {source}")]
    Tcp {
        addr: String,
        source: std::io::Error,
    },
    #[error("connection to {addr} timed out")]
    Timeout { addr: String },
    #[error("{addr}: {source}")]
    Handshake {
        addr: String,
        source: HandshakeError,
    },
}

/// Open a TCP connection (trying every resolved address) and run the
/// handshake as initiator.
pub async fn connect(
    addr: &str,
    keypair: &Keypair,
    secret: &RpcSecret,
    expected: Option<NodeId>,
    hello: Hello,
    timeout: Duration,
) -> Result<SecureChannel, ConnectError> {
    connect_from(addr, None, keypair, secret, expected, hello, timeout).await
}

/// [`connect`], the connection leaving from `local` when given.
pub async fn connect_from(
    addr: &str,
    local: Option<std::net::IpAddr>,
    keypair: &Keypair,
    secret: &RpcSecret,
    expected: Option<NodeId>,
    hello: Hello,
    timeout: Duration,
) -> Result<SecureChannel, ConnectError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|source| ConnectError::Resolve {
            addr: addr.to_string(),
            source,
        })?
        .collect();
    let mut last = None;
    for a in addrs {
        let dial = async {
            match local {
                None => TcpStream::connect(a).await,
                Some(ip) => {
                    let sock = if a.is_ipv4() {
                        tokio::net::TcpSocket::new_v4()?
                    } else {
                        tokio::net::TcpSocket::new_v6()?
                    };
                    sock.bind(SocketAddr::new(ip, 0))?;
                    sock.connect(a).await
                }
            }
        };
        match tokio::time::timeout(timeout, dial).await {
            Ok(Ok(stream)) => {
                return transport::initiate(stream, keypair, secret, expected, hello)
                    .await
                    .map_err(|source| ConnectError::Handshake {
                        addr: addr.to_string(),
                        source,
                    });
            }
            Ok(Err(source)) => {
                last = Some(ConnectError::Tcp {
                    addr: addr.to_string(),
                    source,
                })
            }
            Err(_) => {
                last = Some(ConnectError::Timeout {
                    addr: addr.to_string(),
                })
            }
        }
    }
    Err(last.unwrap_or_else(|| ConnectError::Resolve {
        addr: addr.to_string(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address found"),
    }))
}

/// Connect a console to a node's Admin service.
pub async fn connect_admin(
    addr: &str,
    expected: Option<NodeId>,
    secret: &RpcSecret,
    timeout: Duration,
) -> Result<(AdminClient, NodeId), ConnectError> {
    // A console is not a node: it uses a fresh key each time.
    let keypair = Keypair::generate();
    let ch = connect(
        addr,
        &keypair,
        secret,
        expected,
        Hello::new(ChannelKind::Admin, None),
        timeout,
    )
    .await?;
    let remote = ch.remote;
    let client = AdminClient::new(tarpc::client::Config::default(), rpc_transport(ch)).spawn();
    Ok((client, remote))
}

/// A tarpc context whose deadline is `timeout` from now.
pub fn context_with_timeout(timeout: Duration) -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = std::time::Instant::now() + timeout;
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages as the previous protocol version wrote them (MessagePack
    /// arrays, as tarpc's codec sends them, without the fields added
    /// since) still decode, the new fields defaulted.
    #[test]
    fn messages_of_the_previous_version_still_decode() {
        #[derive(Serialize)]
        struct PingResponseV1 {
            layout_version: u64,
            layout_digest: u64,
            known_peers: Vec<PeerAddr>,
        }
        let old = PingResponseV1 {
            layout_version: 3,
            layout_digest: 9,
            known_peers: Vec::new(),
        };
        for bytes in [
            rmp_serde::to_vec(&old).expect("encode"),
            rmp_serde::to_vec_named(&old).expect("encode"),
        ] {
            let new: PingResponse = rmp_serde::from_slice(&bytes).expect("decode");
            assert_eq!((new.layout_version, new.disk), (3, None));
        }
        #[derive(Serialize)]
        struct BucketInfoV1 {
            name: String,
            id: String,
            created_ms: u64,
            keys: Vec<KeyGrant>,
        }
        let old = BucketInfoV1 {
            name: "b".into(),
            id: "00".into(),
            created_ms: 1,
            keys: Vec::new(),
        };
        let new: BucketInfo =
            rmp_serde::from_slice(&rmp_serde::to_vec(&old).expect("encode")).expect("decode");
        assert_eq!(
            (new.objects, new.quota_max_size, new.website),
            (0, None, false)
        );
    }

    /// A node of the previous version reads this version's messages, the
    /// tarpc envelope included: the fields it does not know are skipped.
    #[test]
    fn the_previous_version_reads_this_versions_messages() {
        use tokio_serde::Serializer as _;
        #[derive(Deserialize)]
        struct PingResponseV2 {
            layout_version: u64,
            layout_digest: u64,
            known_peers: Vec<PeerAddr>,
            #[serde(default)]
            disk: Option<DiskUsage>,
        }
        let new = PingResponse {
            layout_version: 4,
            layout_digest: 7,
            known_peers: Vec::new(),
            disk: Some(DiskUsage { total: 10, free: 5 }),
            data_dirs: vec![DataDirStatus {
                path: "/d".into(),
                capacity: Some(1),
                read_only: false,
                blocks: 2,
                bytes: 3,
                counted: true,
                fs_total: 4,
                fs_free: 5,
                full: Some("capacity reached".into()),
            }],
            clock: Some(ClockReading {
                wall_us: 1,
                hlc_us: 2,
            }),
            down_since: Vec::new(),
        };
        let envelope = tarpc::Response {
            request_id: 9,
            message: Ok(new.clone()),
        };
        let mut codec: NamedMessagePack<(), tarpc::Response<PingResponse>> =
            NamedMessagePack(std::marker::PhantomData);
        let bytes = std::pin::Pin::new(&mut codec)
            .serialize(&envelope)
            .expect("encode");
        // What the previous version's codec does with it.
        let old: tarpc::Response<PingResponseV2> =
            rmp_serde::from_read(std::io::Cursor::new(&bytes[..])).expect("decode");
        let old = old.message.expect("a response");
        assert_eq!(
            (
                old.layout_version,
                old.layout_digest,
                old.known_peers.len(),
                old.disk
            ),
            (4, 7, 0, new.disk)
        );
        // And this version reads what it wrote.
        let back: tarpc::Response<PingResponse> = rmp_serde::from_slice(&bytes).expect("decode");
        assert_eq!(back.message.expect("a response"), new);
    }
}
