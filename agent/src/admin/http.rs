//! Metrics and health on `[admin] metrics_bind_addr`.
//!
//! `GET /metrics`: the Prometheus text format, by `prometheus-client`
//! (families, escaping, encoding). The counters that live in their layer
//! (S3 requests by operation and status with a latency histogram, bytes in
//! and out; RPC calls to each peer by method, errors by kind, latency) are
//! registered as they are; what is read at scrape time (peers up and their
//! round trip, clock offsets, table items and queues, block worker
//! progress, layout, snapshot, disk and data directories, health) goes
//! into the same registry, made anew at each scrape. `GET /health`: 200 when every partition has a read
//! and a write quorum among the nodes this node sees up, 503 otherwise,
//! with a line saying why.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use tokio::net::TcpListener;

use hangar_common::rpc::DataDirStatus;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Services;
use crate::s3::server::{Body, serve_http};

/// Whether every partition has a read and a write quorum among the nodes
/// this node sees up; if not, why.
fn health(s: &Services) -> Result<String, String> {
    let layout = s.layout.current();
    if layout.assignment.is_empty() {
        return Err("no layout has been applied yet".into());
    }
    let (mut no_write, mut no_read) = (0, 0);
    let rf = layout.replication_factor;
    let (wq, rq) = (
        hangar_common::layout::cluster::write_quorum(rf),
        hangar_common::layout::cluster::read_quorum(rf),
    );
    for p in 0..hangar_common::layout::PARTITIONS {
        let read_ok = layout.read_set(p).iter().filter(|n| s.net.is_up(n)).count() >= rq;
        let write_ok = layout
            .write_sets(p)
            .iter()
            .all(|set| set.iter().filter(|n| s.net.is_up(n)).count() >= wq);
        no_read += usize::from(!read_ok);
        no_write += usize::from(!write_ok);
    }
    if no_read == 0 && no_write == 0 {
        return Ok("ok: every partition has a read and a write quorum\n".into());
    }
    let down: Vec<String> = layout
        .all_live_nodes()
        .iter()
        .filter(|n| !s.net.is_up(n))
        .map(|n| n.short())
        .collect();
    Err(format!(
        "unavailable: {no_write} partitions without a write quorum, {no_read} without a read quorum; nodes down: {}\n",
        down.join(", ")
    ))
}

/// A label set of one label.
type Label = [(&'static str, String); 1];

/// Values read at scrape time, registered into one registry.
struct Scrape(Registry);

impl Scrape {
    fn gauge(&mut self, name: &str, help: &str, v: i64) {
        let g = Gauge::<i64>::default();
        g.set(v);
        self.0.register(name, help, g);
    }

    fn gauge_f64(&mut self, name: &str, help: &str, v: f64) {
        let g = Gauge::<f64, AtomicU64>::default();
        g.set(v);
        self.0.register(name, help, g);
    }

    fn counter(&mut self, name: &str, help: &str, v: u64) {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        self.0.register(name, help, c);
    }

    /// One gauge per value of `label`.
    fn gauges(
        &mut self,
        name: &str,
        help: &str,
        label: &'static str,
        values: impl IntoIterator<Item = (String, i64)>,
    ) {
        let f = Family::<Label, Gauge<i64>>::default();
        for (l, v) in values {
            f.get_or_create(&[(label, l)]).set(v);
        }
        self.0.register(name, help, f);
    }

    fn gauges_f64(
        &mut self,
        name: &str,
        help: &str,
        label: &'static str,
        values: impl IntoIterator<Item = (String, f64)>,
    ) {
        let f = Family::<Label, Gauge<f64, AtomicU64>>::default();
        for (l, v) in values {
            f.get_or_create(&[(label, l)]).set(v);
        }
        self.0.register(name, help, f);
    }
}

fn metrics_text(s: &Services) -> String {
    let mut reg = Registry::default();
    s.s3_metrics.register(&mut reg);
    s.net.rpc_metrics.register(&mut reg);
    let mut m = Scrape(reg);
    let peers = s.net.peers();
    m.gauges(
        "hangar_peer_up",
        "Whether a peer answers pings (1) or not (0)",
        "peer",
        peers.iter().map(|(id, p)| (id.short(), i64::from(p.up))),
    );
    m.gauges_f64(
        "hangar_peer_rtt_seconds",
        "Smoothed ping round trip to a peer",
        "peer",
        peers
            .iter()
            .filter_map(|(id, p)| Some((id.short(), p.rtt_ms? / 1000.0))),
    );
    m.gauges_f64(
        "hangar_node_clock_offset_seconds",
        "How far a node's wall clock is from the cluster's median clock (positive: ahead), measured by pings; above 1 s, set up NTP on it",
        "node",
        s.status_nodes()
            .into_iter()
            .filter_map(|n| Some((n.id.short(), n.clock_offset_ms? as f64 / 1000.0))),
    );
    let tables: Vec<_> = s.tables.values().map(|t| t.stats()).collect();
    let per_table = |get: fn(&hangar_common::rpc::TableStats) -> u64| {
        tables
            .iter()
            .map(|t| (t.table.clone(), get(t) as i64))
            .collect::<Vec<_>>()
    };
    m.gauges(
        "hangar_table_items",
        "Items of a table on this node, tombstones included",
        "table",
        per_table(|t| t.items),
    );
    m.gauges(
        "hangar_table_merkle_queue",
        "Item changes not yet in the Merkle trees",
        "table",
        per_table(|t| t.merkle_queue),
    );
    m.gauges(
        "hangar_table_gc_queue",
        "Tombstones waiting to be collected",
        "table",
        per_table(|t| t.gc_queue),
    );
    m.counter(
        "hangar_db_transactions",
        "Storage transactions committed by the metadata engine since the agent started",
        s.model.db.transactions(),
    );
    let costs: Vec<_> = s.tables.iter().map(|(n, t)| (*n, t.costs())).collect();
    let tx = Family::<Label, Counter<u64>>::default();
    let sent = Family::<[(&'static str, String); 2], Counter<u64>>::default();
    for (table, c) in &costs {
        tx.get_or_create(&[("table", table.to_string())])
            .inc_by(c.transactions);
        for (op, n) in &c.sent {
            sent.get_or_create(&[("table", table.to_string()), ("op", op.to_string())])
                .inc_by(*n);
        }
    }
    m.0.register(
        "hangar_table_transactions",
        "Storage transactions of a table on this node: item writes (concurrent writes share one) and Merkle folds",
        tx,
    );
    m.0.register(
        "hangar_table_requests_sent",
        "Requests of a table this node sent to other replicas, by operation",
        sent,
    );
    let b = s.model.blocks.stats();
    m.counter(
        "hangar_blocks_fetched",
        "Blocks the resync fetched from other nodes",
        b.fetched,
    );
    m.counter(
        "hangar_blocks_deleted",
        "Unreferenced blocks the resync deleted",
        b.deleted,
    );
    m.counter(
        "hangar_blocks_handed_over",
        "Blocks handed over to their new holders after a layout change",
        b.handed_over,
    );
    m.counter(
        "hangar_resync_errors",
        "Resync attempts that failed",
        b.errors,
    );
    m.gauge(
        "hangar_scrub_checked",
        "Blocks checked by the current or last scrub pass",
        b.scrub_checked as i64,
    );
    m.gauge(
        "hangar_scrub_total",
        "Blocks the current or last scrub pass checks",
        b.scrub_total as i64,
    );
    m.counter(
        "hangar_scrub_corrupted",
        "Corrupted blocks the scrub found (set aside and fetched again)",
        b.scrub_corrupted,
    );
    m.gauge(
        "hangar_resync_queue",
        "Blocks waiting in the resync queue (due now or later)",
        b.resync_queue as i64,
    );
    m.counter(
        "hangar_scrub_moved",
        "Blocks the scrub moved to the data directory they belong in",
        b.scrub_moved,
    );
    let layout = s.layout.current();
    m.gauge(
        "hangar_layout_version",
        "Applied layout version",
        layout.version as i64,
    );
    m.gauge(
        "hangar_layout_live_versions",
        "Layout versions still live (above 1: data is moving)",
        layout.live_versions().len() as i64,
    );
    let last = *s.last_snapshot.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(l) = last {
        m.gauge_f64(
            "hangar_snapshot_last_time_seconds",
            "When this agent last wrote a metadata snapshot (Unix time)",
            l.at_ms as f64 / 1000.0,
        );
        m.gauge_f64(
            "hangar_snapshot_last_duration_seconds",
            "How long it took",
            l.took.as_secs_f64(),
        );
        m.gauge_f64(
            "hangar_snapshot_last_writes_paused_seconds",
            "How long writes on this node waited for it",
            l.stats.writes_paused.as_secs_f64(),
        );
        m.gauge(
            "hangar_snapshot_last_entries",
            "Metadata entries it holds",
            l.stats.entries as i64,
        );
    }
    if let Some(d) = s.model.blocks.store.disk() {
        m.gauge(
            "hangar_data_disk_bytes",
            "Space for blocks: the data directories' capacities (or file system sizes)",
            d.total as i64,
        );
        m.gauge(
            "hangar_data_disk_free_bytes",
            "Room left there for blocks",
            d.free as i64,
        );
    }
    let dirs = s.model.blocks.store.status();
    let per_dir = |get: &dyn Fn(&DataDirStatus) -> u64| {
        dirs.iter()
            .map(|d| (d.path.clone(), get(d) as i64))
            .collect::<Vec<_>>()
    };
    m.gauges(
        "hangar_data_dir_blocks",
        "Block files in a data directory",
        "dir",
        per_dir(&|d| d.blocks),
    );
    m.gauges(
        "hangar_data_dir_bytes",
        "Bytes of blocks in a data directory",
        "dir",
        per_dir(&|d| d.bytes),
    );
    m.gauges(
        "hangar_data_dir_capacity_bytes",
        "A data directory's capacity (its file system's size if none is configured)",
        "dir",
        per_dir(&|d| d.capacity.unwrap_or(d.fs_total)),
    );
    m.gauges(
        "hangar_data_dir_fs_free_bytes",
        "Free space on a data directory's file system",
        "dir",
        per_dir(&|d| d.fs_free),
    );
    m.gauges(
        "hangar_data_dir_full",
        "Whether a data directory takes no new blocks (1: full or failing) or does (0)",
        "dir",
        per_dir(&|d| u64::from(d.full.is_some())),
    );
    m.gauges(
        "hangar_lookup_waits",
        "Lookups of access keys and buckets that waited for the replicas (not served from the cache), since start",
        "cache",
        [
            ("keys".to_string(), s.model.key_cache.waits() as i64),
            ("buckets".to_string(), s.model.bucket_cache.waits() as i64),
        ],
    );
    m.gauge(
        "hangar_healthy",
        "Whether every partition has a read and write quorum (1) or not (0)",
        i64::from(health(s).is_ok()),
    );
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &m.0) {
        tracing::warn!("cannot encode the metrics: {e}");
    }
    out
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(
        http_body_util::Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

/// Serve `/metrics` and `/health`.
pub async fn serve(listener: TcpListener, s: Arc<Services>) {
    serve_http(listener, "metrics", move |req, _| {
        let s = s.clone();
        async move {
            match req.uri().path() {
                "/metrics" => text(
                    StatusCode::OK,
                    metrics_text(&s),
                    "text/plain; version=0.0.4",
                ),
                "/health" => match health(&s) {
                    Ok(t) => text(StatusCode::OK, t, "text/plain"),
                    Err(t) => text(StatusCode::SERVICE_UNAVAILABLE, t, "text/plain"),
                },
                _ => text(
                    StatusCode::NOT_FOUND,
                    "GET /metrics or /health\n".into(),
                    "text/plain",
                ),
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(reg: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, reg).expect("encode");
        out
    }

    #[test]
    fn families_keep_their_names_labels_and_escaping() {
        let mut reg = Registry::default();
        let s3 = crate::s3::metrics::S3Metrics::default();
        s3.record("PutObject", 200, std::time::Duration::from_millis(3), 10, 0);
        s3.register(&mut reg);
        let rpc = crate::net::metrics::RpcMetrics::default();
        let peer = hangar_common::NodeId([9; 32]);
        rpc.record(
            peer,
            "ping",
            std::time::Duration::from_millis(2),
            Some("timeout"),
        );
        rpc.register(&mut reg);
        let mut m = Scrape(reg);
        m.gauges(
            "hangar_data_dir_full",
            "full",
            "dir",
            [("/srv/a \"b\"\\c".to_string(), 1)],
        );
        m.gauge_f64("hangar_snapshot_last_duration_seconds", "took", 0.5);
        let out = encoded(&m.0);
        let p = peer.short();
        for line in [
            "hangar_s3_requests_total{op=\"PutObject\",status=\"200\"} 1",
            "hangar_s3_bytes_in_total 10",
            "hangar_s3_request_duration_seconds_count{op=\"PutObject\"} 1",
            "hangar_s3_request_duration_seconds_bucket{op=\"PutObject\",le=\"0.005\"} 1",
            &format!("hangar_rpc_requests_total{{peer=\"{p}\",method=\"ping\"}} 1"),
            &format!("hangar_rpc_errors_total{{peer=\"{p}\",method=\"ping\",kind=\"timeout\"}} 1"),
            "hangar_data_dir_full{dir=\"/srv/a \\\"b\\\"\\\\c\"} 1",
            "hangar_snapshot_last_duration_seconds 0.5",
            "# TYPE hangar_rpc_duration_seconds histogram",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "no line {line:?} in:\n{out}"
            );
        }
    }
}
