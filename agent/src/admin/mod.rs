//! The services this node answers: `Admin` for consoles and `Peer` for
//! other nodes, and the dispatcher that hands each accepted channel to the
//! right one.

pub mod events;
pub mod http;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use hangar_common::NodeId;
use hangar_common::crdt::now_msec;
use hangar_common::hash::Hash;
use hangar_common::ids::PeerAddr;
use hangar_common::layout::AssignmentReport;
use hangar_common::layout::cluster::{ClusterLayout, StagedRole};
use hangar_common::rpc::{
    self, Admin, BucketInfo, ClusterStatus, KeyGrant, KeyInfo, LayoutView, LocalValue, NodeStatus,
    Peer, PermissionChange, PingRequest, PingResponse, Repair, RpcError, TableRequest,
    TableResponse, WorkerInfo,
};
use hangar_common::transport::{ChannelKind, SecureChannel};
use tarpc::context::Context;
use tarpc::server::{BaseChannel, Channel};

use crate::layout::LayoutManager;
use crate::model::Model;
use crate::model::tables::{Bucket, Key};
use crate::net::{Dispatch, Gossip, Net};
use crate::table::data::storage_key;
use crate::table::kv::{KvItem, KvTable};
use crate::table::{Table, TableEndpoint};

/// The pieces the services need.
#[derive(Clone)]
pub struct Services {
    pub net: Arc<Net>,
    pub layout: Arc<LayoutManager>,
    /// Every replicated table, by name, for the Peer service.
    pub tables: Arc<BTreeMap<&'static str, Arc<dyn TableEndpoint>>>,
    pub kv: Arc<Table<KvTable>>,
    pub model: Arc<Model>,
    /// Where the metadata lives, in which engine, and how many snapshots
    /// to keep.
    pub metadata_dir: std::path::PathBuf,
    pub metadata_engine: &'static str,
    pub snapshot_keep: usize,
    /// The last snapshot this agent wrote, for `/metrics`.
    pub last_snapshot: Arc<std::sync::Mutex<Option<LastSnapshot>>>,
    /// Where clients reach this node, for `status`.
    pub endpoints: hangar_common::rpc::Endpoints,
    /// What this node saw happen.
    pub events: Arc<events::EventLog>,
    /// What the S3 endpoint has served, for `/metrics`.
    pub s3_metrics: Arc<crate::s3::metrics::S3Metrics>,
}

/// When the last metadata snapshot was written and what it cost.
#[derive(Clone, Copy, Debug)]
pub struct LastSnapshot {
    /// Unix time (ms) it was finished.
    pub at_ms: u64,
    pub stats: crate::db::SnapshotStats,
    /// Wall time of the whole snapshot, writes waiting only for part of it.
    pub took: std::time::Duration,
}

impl Services {
    /// Write a metadata snapshot (on the blocking pool: it copies the
    /// store), log it and remember it for `/metrics`.
    pub async fn snapshot(&self) -> Result<std::path::PathBuf, crate::db::snapshot::SnapshotError> {
        let (dir, db, keep) = (
            self.metadata_dir.clone(),
            self.model.db.clone(),
            self.snapshot_keep,
        );
        let start = std::time::Instant::now();
        let (dir, stats) =
            tokio::task::spawn_blocking(move || crate::db::snapshot::snapshot(&dir, &db, keep))
                .await
                .map_err(|e| crate::db::snapshot::SnapshotError::Task(e.to_string()))??;
        let took = start.elapsed();
        tracing::info!(
            "metadata snapshot written to {} ({} entries in {:.1} s; writes waited {:.2} s)",
            dir.display(),
            stats.entries,
            took.as_secs_f64(),
            stats.writes_paused.as_secs_f64()
        );
        *self.last_snapshot.lock().unwrap_or_else(|p| p.into_inner()) = Some(LastSnapshot {
            at_ms: hangar_common::crdt::now_msec(),
            stats,
            took,
        });
        Ok(dir)
    }
}

async fn spawn(fut: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(fut);
}

impl Dispatch for Services {
    fn serve(&self, ch: SecureChannel) {
        match ch.remote_hello.kind {
            ChannelKind::Admin => {
                let server = AdminServer { s: self.clone() };
                let transport = rpc::rpc_transport(ch);
                tokio::spawn(
                    BaseChannel::with_defaults(transport)
                        .execute(server.serve())
                        .for_each(spawn),
                );
            }
            ChannelKind::Peer | ChannelKind::Bulk => {
                let server = PeerServer {
                    s: self.clone(),
                    remote: ch.remote,
                };
                let transport = rpc::rpc_transport(ch);
                tokio::spawn(
                    BaseChannel::with_defaults(transport)
                        .execute(server.serve())
                        .for_each(spawn),
                );
            }
        }
    }
}

#[derive(Clone)]
struct PeerServer {
    s: Services,
    remote: NodeId,
}

impl Peer for PeerServer {
    async fn ping(self, _: Context, req: PingRequest) -> PingResponse {
        // A ping is a sign of life: make sure we know how to reach the
        // caller, and cut short our backoff if we thought it down.
        self.s.net.learn(self.remote, Some(req.from_addr.clone()));
        if let Some(c) = req.clock {
            hangar_common::clock::hlc().observe(c.hlc_us);
        }
        let mut resp = self.s.layout.ping_response();
        resp.disk = self.s.disk();
        resp.data_dirs = self.s.model.blocks.store.status();
        resp.clock = Some(hangar_common::rpc::ClockReading::now());
        resp.down_since = self.s.net.down_since();
        resp
    }

    async fn pull_layout(self, _: Context) -> ClusterLayout {
        self.s.layout.current()
    }

    async fn push_layout(self, _: Context, layout: ClusterLayout) {
        self.s.layout.merge_from(&layout, self.remote);
    }

    async fn table(self, _: Context, req: TableRequest) -> Result<TableResponse, RpcError> {
        let table = self
            .s
            .tables
            .get(req.table.as_str())
            .ok_or_else(|| {
                RpcError::BadRequest(format!("no table named {:?} on this node", req.table))
            })?
            .clone();
        // Storage calls may block (a sync of the disk, a long scan): keep
        // them off the async workers, except quick reads (see
        // `TableOp::is_quick_read`).
        if req.op.is_quick_read() {
            return table.handle(req.op);
        }
        tokio::task::spawn_blocking(move || table.handle(req.op))
            .await
            .map_err(|e| RpcError::Table(format!("table operation panicked: {e}")))?
    }

    async fn block_put(self, _: Context, hash: Hash, data: bytes::Bytes) -> Result<(), RpcError> {
        let blocks = self.s.model.blocks.clone();
        tokio::task::spawn_blocking(move || {
            blocks.write_local(&hash, &data, crate::block::store::Cache::Bypass)
        })
        .await
        .map_err(|e| RpcError::Block(format!("block write panicked: {e}")))?
        .map_err(|e| RpcError::Block(e.to_string()))
    }

    async fn block_get(self, _: Context, hash: Hash) -> Result<Option<bytes::Bytes>, RpcError> {
        let blocks = self.s.model.blocks.clone();
        tokio::task::spawn_blocking(move || blocks.store.read(&hash))
            .await
            .map_err(|e| RpcError::Block(format!("block read panicked: {e}")))?
            .or_else(|e| match e {
                // A corrupted copy was moved aside: for the caller, absent.
                crate::block::store::StoreError::Corrupted(_) => Ok(None),
                e => Err(RpcError::Block(e.to_string())),
            })
    }
}

/// Turn each node's clock offset from this node into its offset from the
/// cluster's median clock, so the node whose clock is wrong is named
/// whichever node answers `status`.
fn clock_offsets_from_median(mut nodes: Vec<NodeStatus>) -> Vec<NodeStatus> {
    let measured: Vec<i64> = nodes.iter().filter_map(|n| n.clock_offset_ms).collect();
    let mut relative = hangar_common::clock::relative_to_median(&measured).into_iter();
    for n in &mut nodes {
        if n.clock_offset_ms.is_some() {
            n.clock_offset_ms = relative.next();
        }
    }
    nodes
}

#[derive(Clone)]
struct AdminServer {
    s: Services,
}

impl Services {
    /// Every node known here, as `status` shows it.
    fn status_nodes(&self) -> Vec<NodeStatus> {
        let layout = self.layout.current();
        let staged = layout.effective_staged();
        let peers = self.net.peers();
        let mut ids: Vec<NodeId> = layout
            .known_nodes()
            .into_iter()
            .chain(peers.keys().copied())
            .chain(std::iter::once(self.net.id))
            .collect();
        ids.sort();
        ids.dedup();
        let nodes = ids
            .into_iter()
            .map(|id| {
                let base = NodeStatus {
                    id,
                    addr: None,
                    is_self: id == self.net.id,
                    up: false,
                    down_since_ms: None,
                    last_seen_ms: None,
                    rtt_ms: None,
                    agent_version: None,
                    role: layout.roles.get(&id).cloned(),
                    staged: staged.get(&id).cloned(),
                    layout_version: None,
                    disk: None,
                    data_dirs: Vec::new(),
                    clock_offset_ms: None,
                    partitions: (0..hangar_common::layout::PARTITIONS)
                        .filter(|p| layout.nodes_of(*p).contains(&id))
                        .count(),
                };
                if id == self.net.id {
                    NodeStatus {
                        addr: Some(self.net.public_addr().to_string()),
                        up: true,
                        last_seen_ms: Some(hangar_common::crdt::now_msec()),
                        rtt_ms: Some(0.0),
                        agent_version: Some(env!("CARGO_PKG_VERSION").to_string()),
                        layout_version: Some(layout.version),
                        disk: self.disk(),
                        data_dirs: self.model.blocks.store.status(),
                        clock_offset_ms: Some(0),
                        ..base
                    }
                } else if let Some(p) = peers.get(&id) {
                    NodeStatus {
                        addr: p.addr.clone(),
                        up: p.up,
                        down_since_ms: p.down_since_ms,
                        last_seen_ms: p.last_seen_ms,
                        rtt_ms: p.rtt_ms,
                        agent_version: p.agent_version.clone(),
                        layout_version: p.layout_version,
                        disk: p.disk,
                        data_dirs: p.data_dirs.clone(),
                        clock_offset_ms: p.clock_offset_ms,
                        ..base
                    }
                } else {
                    base
                }
            })
            .collect();
        clock_offsets_from_median(nodes)
    }

    fn status(&self) -> ClusterStatus {
        self.status_with(true)
    }

    /// `status`, with or without the tables' figures (which read every
    /// partition's Merkle root: the event watcher, every second, does not
    /// need them).
    fn status_with(&self, tables: bool) -> ClusterStatus {
        let layout = self.layout.current();
        let nodes = self.status_nodes();
        ClusterStatus {
            node: self.net.id,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            layout_version: layout.version,
            replication_factor: layout.replication_factor,
            health: layout.health(|n| self.net.is_up(n)),
            nodes,
            tables: if tables {
                self.tables.values().map(|t| t.stats()).collect()
            } else {
                Vec::new()
            },
            live_versions: layout.live_versions(),
            nodes_synced: layout
                .all_live_nodes()
                .iter()
                .filter(|n| layout.sync.get(n).is_some_and(|v| *v >= layout.version))
                .count(),
            nodes_in_transition: layout.all_live_nodes().len(),
            blocks: self.model.blocks.stats(),
            last_snapshot: self
                .last_snapshot
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .map(|l| hangar_common::rpc::SnapshotInfo {
                    at_ms: l.at_ms,
                    entries: l.stats.entries,
                    duration_ms: l.took.as_millis() as u64,
                    writes_paused_ms: l.stats.writes_paused.as_millis() as u64,
                }),
            endpoints: Some(self.endpoints.clone()),
            metadata_engine: Some(self.metadata_engine.to_string()),
        }
    }

    fn layout_view(&self) -> LayoutView {
        let layout = self.layout.current();
        let preview = (!layout.effective_staged().is_empty()).then(|| layout.preview());
        LayoutView { layout, preview }
    }
}

fn model_err(e: crate::model::ModelError) -> RpcError {
    RpcError::BadRequest(e.to_string())
}

fn table_err(e: crate::table::TableError) -> RpcError {
    RpcError::Table(e.to_string())
}

impl Services {
    /// Space for blocks on this node.
    fn disk(&self) -> Option<hangar_common::rpc::DiskUsage> {
        self.model.blocks.store.disk()
    }

    fn workers(&self) -> Vec<WorkerInfo> {
        let b = self.model.blocks.stats();
        let tables: Vec<hangar_common::rpc::TableStats> =
            self.tables.values().map(|t| t.stats()).collect();
        let synced: usize = tables.iter().map(|t| t.partitions_synced).sum();
        let held: usize = tables.iter().map(|t| t.partitions_held).sum();
        let pushed: u64 = tables.iter().map(|t| t.items_pushed).sum();
        let w = &self.model.workers;
        let info = |name: &str, progress: String| WorkerInfo {
            name: name.to_string(),
            paused: w.is_paused(name),
            progress,
        };
        vec![
            info(
                crate::worker::RESYNC,
                format!(
                    "{} queued, {} fetched, {} deleted, {} handed over, {} errors retried",
                    b.resync_queue, b.fetched, b.deleted, b.handed_over, b.errors
                ),
            ),
            info(
                crate::worker::SCRUB,
                format!(
                    "{}{} of {} blocks checked, {} corrupted found{}",
                    if b.scrub_running {
                        "running: "
                    } else {
                        "idle: last pass "
                    },
                    b.scrub_checked,
                    b.scrub_total,
                    b.scrub_corrupted,
                    if b.scrub_moved > 0 {
                        format!(", {} moved between data directories", b.scrub_moved)
                    } else {
                        String::new()
                    }
                ),
            ),
            info(crate::worker::LIFECYCLE, {
                let l = &self.model.lifecycle;
                let ord = std::sync::atomic::Ordering::Relaxed;
                format!(
                    "{} passes, {} objects expired, {} multipart uploads aborted",
                    l.passes.load(ord),
                    l.expired.load(ord),
                    l.aborted.load(ord)
                )
            }),
            info(
                crate::worker::VERSION_GC,
                "removes the blocks of replaced and deleted objects".into(),
            ),
            info(
                crate::worker::TABLE_SYNC,
                format!("{synced} of {held} table partitions fully synced, {pushed} items pushed"),
            ),
        ]
    }

    async fn live_keys(&self) -> Result<Vec<Key>, RpcError> {
        let mut keys = self.model.keys.scan(100_000).await.map_err(table_err)?;
        keys.retain(|k| !k.deleted.0);
        keys.sort_by(|a, b| (&a.name.value, &a.id).cmp(&(&b.name.value, &b.id)));
        Ok(keys)
    }

    /// A key by id, or by a name that only one key has.
    async fn find_key(&self, key: &str) -> Result<Key, RpcError> {
        if let Some(k) = self.model.get_key(key).await.map_err(model_err)? {
            return Ok(k);
        }
        let matches: Vec<Key> = self
            .live_keys()
            .await?
            .into_iter()
            .filter(|k| k.name.value == key)
            .collect();
        match matches.len() {
            1 => Ok(matches.into_iter().next().expect("one match")),
            0 => Err(RpcError::BadRequest(format!(
                "no access key with id or name {key:?} (see `hangar key list`)"
            ))),
            n => Err(RpcError::BadRequest(format!(
                "{n} keys are named {key:?}: give the access key id instead"
            ))),
        }
    }

    async fn bucket_info(&self, b: &Bucket) -> Result<BucketInfo, RpcError> {
        let keys = self.live_keys().await?;
        self.bucket_info_with(b, &keys).await
    }

    async fn bucket_info_with(&self, b: &Bucket, keys: &[Key]) -> Result<BucketInfo, RpcError> {
        let usage = self.model.bucket_usage(b).await.map_err(model_err)?;
        Ok(BucketInfo {
            name: b.name.clone(),
            id: b.id.to_string(),
            created_ms: b.created_ms,
            keys: keys.iter().filter_map(|k| grant(k, b)).collect(),
            objects: usage.objects,
            bytes: usage.bytes,
            quota_max_size: b.quotas.value.max_size,
            quota_max_objects: b.quotas.value.max_objects,
            website: b.website.value.is_some(),
            versioning: b.versioning.value.s3_status().map(str::to_string),
            noncurrent_objects: usage.noncurrent_objects,
            noncurrent_bytes: usage.noncurrent_bytes,
            public: {
                let mut why = crate::s3::access::public_reasons(b);
                if b.website.value.is_some() {
                    why.push("website: served to anyone".to_string());
                }
                why
            },
        })
    }

    /// One key by id or name, with its permissions (and its secret when
    /// asked for).
    async fn key_info_of(&self, key: &str, with_secret: bool) -> Result<KeyInfo, RpcError> {
        let k = self.find_key(key).await?;
        let buckets = self.model.buckets.scan(100_000).await.map_err(table_err)?;
        let mut info = self.key_info(&k, &buckets);
        if with_secret {
            info.secret_access_key = Some(k.secret.clone());
        }
        Ok(info)
    }

    fn key_info(&self, k: &Key, buckets: &[Bucket]) -> KeyInfo {
        KeyInfo {
            access_key_id: k.id.clone(),
            name: k.name.value.clone(),
            secret_access_key: None,
            buckets: buckets
                .iter()
                .filter(|b| !b.deleted.0)
                .filter_map(|b| grant(k, b))
                .collect(),
        }
    }
}

/// What key `k` may do on bucket `b`, if anything.
fn grant(k: &Key, b: &Bucket) -> Option<KeyGrant> {
    let p = k.permission(&b.id);
    (p.read || p.write || p.owner).then(|| KeyGrant {
        key_id: k.id.clone(),
        key_name: k.name.value.clone(),
        bucket: b.name.clone(),
        read: p.read,
        write: p.write,
        owner: p.owner,
    })
}

impl Admin for AdminServer {
    async fn status(self, _: Context) -> ClusterStatus {
        self.s.status()
    }

    async fn connect_node(self, _: Context, peer: PeerAddr) -> Result<(), RpcError> {
        if peer.id == self.s.net.id {
            return Err(RpcError::BadRequest(format!(
                "{} is the node you are connected to; give the id@address of another node",
                peer.id.short()
            )));
        }
        self.s
            .net
            .connect_now(&peer)
            .await
            .map_err(|e| RpcError::Unreachable {
                node: peer.id.short(),
                reason: e.to_string(),
            })
    }

    async fn layout(self, _: Context) -> LayoutView {
        self.s.layout_view()
    }

    async fn layout_stage(
        self,
        _: Context,
        changes: Vec<(NodeId, StagedRole)>,
    ) -> Result<LayoutView, RpcError> {
        for (_, change) in &changes {
            if let StagedRole::Set(role) = change
                && role.zone.trim().is_empty()
            {
                return Err(RpcError::BadRequest("a zone name cannot be empty".into()));
            }
        }
        self.s.layout.stage(changes);
        Ok(self.s.layout_view())
    }

    async fn layout_apply(self, _: Context, version: u64) -> Result<AssignmentReport, RpcError> {
        Ok(self.s.layout.apply(version)?)
    }

    async fn layout_skip_dead(self, _: Context, version: u64) -> Result<Vec<NodeId>, RpcError> {
        let l = self.s.layout.current();
        if l.version != version {
            return Err(RpcError::BadRequest(format!(
                "the layout is at version {}, not {version}: check `hangar layout show`",
                l.version
            )));
        }
        if !l.in_transition() {
            return Err(RpcError::BadRequest(format!(
                "layout version {version} is not being moved to any more: nothing to skip"
            )));
        }
        let dead: Vec<NodeId> = l
            .all_live_nodes()
            .into_iter()
            .filter(|n| !self.s.net.is_up(n) && l.ack.get(n).copied().unwrap_or(0) < version)
            .collect();
        if !dead.is_empty() {
            tracing::warn!(
                "layout version {version}: counting down node(s) {} as having confirmed it, at an operator's request",
                dead.iter()
                    .map(|n| n.short())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            self.s.layout.skip_acks(&dead, version);
        }
        Ok(dead)
    }

    async fn layout_revert(self, _: Context) -> Result<LayoutView, RpcError> {
        self.s.layout.revert();
        Ok(self.s.layout_view())
    }

    async fn worker_list(self, _: Context) -> Vec<WorkerInfo> {
        self.s.workers()
    }

    async fn worker_pause(
        self,
        _: Context,
        name: String,
        paused: bool,
    ) -> Result<WorkerInfo, RpcError> {
        if !self.s.model.workers.set_paused(&name, paused) {
            return Err(RpcError::BadRequest(format!(
                "no worker named {name:?}; workers are: {}",
                crate::worker::ALL.join(", ")
            )));
        }
        self.s
            .workers()
            .into_iter()
            .find(|w| w.name == name)
            .ok_or_else(|| RpcError::BadRequest(format!("no worker named {name:?}")))
    }

    async fn snapshot(self, _: Context) -> Result<String, RpcError> {
        let dir = self
            .s
            .snapshot()
            .await
            .map_err(|e| RpcError::BadRequest(e.to_string()))?;
        Ok(dir.display().to_string())
    }

    async fn events(self, _: Context, limit: u32) -> Vec<hangar_common::events::ClusterEvent> {
        self.s.events.recent(limit as usize)
    }

    async fn repair(self, _: Context, what: Repair) -> Result<String, RpcError> {
        self.s.events.record(
            false,
            format!(
                "repair started on node {}: {}",
                self.s.net.id.short(),
                match what {
                    Repair::Scrub => "scrub (every local block checked against its hash)",
                    Repair::Blocks => "blocks (every local block's place re-checked)",
                    Repair::Tables => "tables (metadata compared with the other replicas)",
                }
            ),
        );
        match what {
            Repair::Scrub => {
                self.s.model.blocks.start_scrub();
                Ok(
                    "scrub started: every local block is being checked (see `hangar status`)"
                        .into(),
                )
            }
            Repair::Blocks => {
                let blocks = self.s.model.blocks.clone();
                let n = tokio::task::spawn_blocking(move || {
                    let all = blocks.store.list();
                    let now = now_msec();
                    for h in &all {
                        blocks.enqueue(h, now);
                    }
                    all.len()
                })
                .await
                .map_err(|e| RpcError::Block(e.to_string()))?;
                Ok(format!("{n} local block(s) queued for a resync check"))
            }
            Repair::Tables => {
                let tables: Vec<_> = self.s.tables.values().cloned().collect();
                tokio::spawn(async move {
                    for t in tables {
                        t.full_sync().await;
                    }
                });
                Ok("anti-entropy started on every table".into())
            }
        }
    }

    async fn bucket_create(self, _: Context, name: String) -> Result<BucketInfo, RpcError> {
        let b = self
            .s
            .model
            .create_bucket(&name, None, false)
            .await
            .map_err(model_err)?;
        self.s.bucket_info(&b).await
    }

    async fn bucket_delete(self, _: Context, name: String) -> Result<(), RpcError> {
        self.s.model.delete_bucket(&name).await.map_err(model_err)
    }

    async fn bucket_list(self, _: Context) -> Result<Vec<BucketInfo>, RpcError> {
        let mut buckets = self
            .s
            .model
            .buckets
            .scan(100_000)
            .await
            .map_err(table_err)?;
        buckets.retain(|b| !b.deleted.0);
        buckets.sort_by(|a, b| a.name.cmp(&b.name));
        let keys = self.s.live_keys().await?;
        let mut out = Vec::with_capacity(buckets.len());
        for b in &buckets {
            out.push(self.s.bucket_info_with(b, &keys).await?);
        }
        Ok(out)
    }

    async fn bucket_set_quotas(
        self,
        _: Context,
        name: String,
        max_size: Option<u64>,
        max_objects: Option<u64>,
    ) -> Result<BucketInfo, RpcError> {
        let mut b = self
            .s
            .model
            .require_bucket_fresh(&name)
            .await
            .map_err(model_err)?;
        b.quotas.update(
            hangar_common::clock::timestamp_ms(),
            self.s.net.id,
            crate::model::tables::Quotas {
                max_size,
                max_objects,
            },
        );
        self.s.model.save_bucket(&b).await.map_err(model_err)?;
        self.s.bucket_info(&b).await
    }

    async fn bucket_set_versioning(
        self,
        _: Context,
        name: String,
        enabled: bool,
    ) -> Result<BucketInfo, RpcError> {
        use crate::model::tables::Versioning;
        let state = if enabled {
            Versioning::Enabled
        } else {
            Versioning::Suspended
        };
        let b = self
            .s
            .model
            .set_versioning(&name, state)
            .await
            .map_err(model_err)?;
        self.s.bucket_info(&b).await
    }

    async fn bucket_info(self, _: Context, name: String) -> Result<BucketInfo, RpcError> {
        let b = self
            .s
            .model
            .require_bucket(&name)
            .await
            .map_err(model_err)?;
        self.s.bucket_info(&b).await
    }

    async fn bucket_allow(
        self,
        _: Context,
        name: String,
        key: String,
        perm: PermissionChange,
        allow: bool,
    ) -> Result<BucketInfo, RpcError> {
        let b = self
            .s
            .model
            .require_bucket(&name)
            .await
            .map_err(model_err)?;
        let k = self.s.find_key(&key).await?;
        let mut p = k.permission(&b.id);
        if perm.read {
            p.read = allow;
        }
        if perm.write {
            p.write = allow;
        }
        if perm.owner {
            p.owner = allow;
        }
        self.s
            .model
            .set_permission(&k.id, &b, p)
            .await
            .map_err(model_err)?;
        // A bucket the operator made has no S3 owner: the first key given
        // the owner permission becomes it (what ACLs show as the owner).
        let mut b = b;
        if allow && perm.owner && b.owner.is_none() {
            let mut fresh = self
                .s
                .model
                .require_bucket_fresh(&name)
                .await
                .map_err(model_err)?;
            if fresh.owner.is_none() {
                fresh.owner = Some(k.id.clone());
                self.s.model.save_bucket(&fresh).await.map_err(model_err)?;
            }
            b = fresh;
        }
        self.s.bucket_info(&b).await
    }

    async fn key_create(self, _: Context, name: String) -> Result<KeyInfo, RpcError> {
        let k = self.s.model.create_key(&name).await.map_err(model_err)?;
        let mut info = self.s.key_info(&k, &[]);
        info.secret_access_key = Some(k.secret.clone());
        Ok(info)
    }

    async fn key_list(self, _: Context) -> Result<Vec<KeyInfo>, RpcError> {
        let keys = self.s.live_keys().await?;
        let buckets = self
            .s
            .model
            .buckets
            .scan(100_000)
            .await
            .map_err(table_err)?;
        Ok(keys.iter().map(|k| self.s.key_info(k, &buckets)).collect())
    }

    async fn key_info(self, _: Context, key: String) -> Result<KeyInfo, RpcError> {
        self.s.key_info_of(&key, false).await
    }

    async fn key_secret(self, _: Context, key: String) -> Result<KeyInfo, RpcError> {
        self.s.key_info_of(&key, true).await
    }

    async fn key_delete(self, _: Context, key: String) -> Result<(), RpcError> {
        let k = self.s.find_key(&key).await?;
        self.s.model.delete_key(&k.id).await.map_err(model_err)
    }

    async fn debug_kv_put(
        self,
        _: Context,
        key: String,
        value: Option<String>,
    ) -> Result<(), RpcError> {
        let mut item = KvItem::new(
            &key,
            value,
            hangar_common::clock::timestamp_us(),
            self.s.net.id,
        );
        self.s
            .kv
            .insert_latest(&mut item)
            .await
            .map(|_| ())
            .map_err(|e| RpcError::Table(e.to_string()))
    }

    async fn debug_kv_get(self, _: Context, key: String) -> Result<Option<String>, RpcError> {
        let item = self
            .s
            .kv
            .get(key.as_bytes(), &[])
            .await
            .map_err(|e| RpcError::Table(e.to_string()))?;
        Ok(item.and_then(|i| i.value().map(str::to_string)))
    }

    async fn debug_kv_local(
        self,
        _: Context,
        keys: Vec<String>,
    ) -> Result<Vec<LocalValue>, RpcError> {
        keys.iter()
            .map(|k| {
                let item = self
                    .s
                    .kv
                    .data
                    .get(&storage_key(k.as_bytes(), &[]))
                    .map_err(|e| RpcError::Table(e.to_string()))?;
                Ok(match item {
                    None => LocalValue::Absent,
                    Some(i) => match i.value() {
                        None => LocalValue::Tombstone,
                        Some(v) => LocalValue::Value(v.to_string()),
                    },
                })
            })
            .collect()
    }
}
