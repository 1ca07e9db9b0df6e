//! Metrics and health on `[admin] metrics_bind_addr`.
//!
//! `GET /metrics`: Prometheus text format, written by hand (a few counter
//! families and one histogram need no library): S3 requests by operation
//! and status with a latency histogram, bytes in and out, RPC calls to
//! each peer by method with errors and a latency histogram, peers up and
//! their round trip, table items and queues, block worker progress, disk
//! size and free space, each data directory. `GET /health`: 200 when every partition has a read
//! and a write quorum among the nodes this node sees up, 503 otherwise,
//! with a line saying why.

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use tokio::net::TcpListener;

use hangar_common::rpc::DataDirStatus;

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

fn metrics_text(s: &Services) -> String {
    let mut out = String::new();
    s.s3_metrics.write(&mut out);
    s.net.rpc_metrics.write(&mut out);
    let peers = s.net.peers();
    out.push_str("# HELP hangar_peer_up Whether a peer answers pings (1) or not (0).\n# TYPE hangar_peer_up gauge\n");
    for (id, p) in &peers {
        let _ = writeln!(
            out,
            "hangar_peer_up{{peer=\"{}\"}} {}",
            id.short(),
            u8::from(p.up)
        );
    }
    out.push_str("# HELP hangar_peer_rtt_seconds Smoothed ping round trip to a peer.\n# TYPE hangar_peer_rtt_seconds gauge\n");
    for (id, p) in &peers {
        if let Some(rtt) = p.rtt_ms {
            let _ = writeln!(
                out,
                "hangar_peer_rtt_seconds{{peer=\"{}\"}} {}",
                id.short(),
                rtt / 1000.0
            );
        }
    }
    out.push_str("# HELP hangar_node_clock_offset_seconds How far a node's wall clock is from the cluster's median clock (positive: ahead), measured by pings; above 1 s, set up NTP on it.\n# TYPE hangar_node_clock_offset_seconds gauge\n");
    for n in s.status_nodes() {
        if let Some(off) = n.clock_offset_ms {
            let _ = writeln!(
                out,
                "hangar_node_clock_offset_seconds{{node=\"{}\"}} {}",
                n.id.short(),
                off as f64 / 1000.0
            );
        }
    }
    let tables: Vec<_> = s.tables.values().map(|t| t.stats()).collect();
    for (name, help, get) in [
        (
            "hangar_table_items",
            "Items of a table on this node, tombstones included.",
            (|t: &hangar_common::rpc::TableStats| t.items)
                as fn(&hangar_common::rpc::TableStats) -> u64,
        ),
        (
            "hangar_table_merkle_queue",
            "Item changes not yet in the Merkle trees.",
            |t| t.merkle_queue,
        ),
        (
            "hangar_table_gc_queue",
            "Tombstones waiting to be collected.",
            |t| t.gc_queue,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for t in &tables {
            let _ = writeln!(out, "{name}{{table=\"{}\"}} {}", t.table, get(t));
        }
    }
    let b = s.model.blocks.stats();
    let _ = writeln!(
        out,
        "# TYPE hangar_blocks_fetched_total counter\nhangar_blocks_fetched_total {}\n# TYPE hangar_blocks_deleted_total counter\nhangar_blocks_deleted_total {}\n# TYPE hangar_blocks_handed_over_total counter\nhangar_blocks_handed_over_total {}\n# TYPE hangar_resync_errors_total counter\nhangar_resync_errors_total {}\n# TYPE hangar_scrub_checked gauge\nhangar_scrub_checked {}\n# TYPE hangar_scrub_total gauge\nhangar_scrub_total {}\n# TYPE hangar_scrub_corrupted_total counter\nhangar_scrub_corrupted_total {}\n# HELP hangar_resync_queue Blocks waiting in the resync queue (due now or later).\n# TYPE hangar_resync_queue gauge\nhangar_resync_queue {}\n# HELP hangar_scrub_moved_total Blocks the scrub moved to the data directory they belong in.\n# TYPE hangar_scrub_moved_total counter\nhangar_scrub_moved_total {}",
        b.fetched,
        b.deleted,
        b.handed_over,
        b.errors,
        b.scrub_checked,
        b.scrub_total,
        b.scrub_corrupted,
        b.resync_queue,
        b.scrub_moved
    );
    let layout = s.layout.current();
    let _ = writeln!(
        out,
        "# HELP hangar_layout_version Applied layout version.\n# TYPE hangar_layout_version gauge\nhangar_layout_version {}\n# HELP hangar_layout_live_versions Layout versions still live (above 1: data is moving).\n# TYPE hangar_layout_live_versions gauge\nhangar_layout_live_versions {}",
        layout.version,
        layout.live_versions().len()
    );
    let last = *s.last_snapshot.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(l) = last {
        let _ = writeln!(
            out,
            "# HELP hangar_snapshot_last_time_seconds When this agent last wrote a metadata snapshot (Unix time).\n# TYPE hangar_snapshot_last_time_seconds gauge\nhangar_snapshot_last_time_seconds {}\n# HELP hangar_snapshot_last_duration_seconds How long it took.\n# TYPE hangar_snapshot_last_duration_seconds gauge\nhangar_snapshot_last_duration_seconds {}\n# HELP hangar_snapshot_last_writes_paused_seconds How long writes on this node waited for it.\n# TYPE hangar_snapshot_last_writes_paused_seconds gauge\nhangar_snapshot_last_writes_paused_seconds {}\n# HELP hangar_snapshot_last_entries Metadata entries it holds.\n# TYPE hangar_snapshot_last_entries gauge\nhangar_snapshot_last_entries {}",
            l.at_ms as f64 / 1000.0,
            l.took.as_secs_f64(),
            l.stats.writes_paused.as_secs_f64(),
            l.stats.entries
        );
    }
    if let Some(d) = s.model.blocks.store.disk() {
        let _ = writeln!(
            out,
            "# HELP hangar_data_disk_bytes Space for blocks: the data directories' capacities (or file system sizes).\n# TYPE hangar_data_disk_bytes gauge\nhangar_data_disk_bytes {}\n# HELP hangar_data_disk_free_bytes Room left there for blocks.\n# TYPE hangar_data_disk_free_bytes gauge\nhangar_data_disk_free_bytes {}",
            d.total, d.free
        );
    }
    let dirs = s.model.blocks.store.status();
    for (name, help, value) in [
        (
            "hangar_data_dir_blocks",
            "Block files in a data directory.",
            &(|d: &DataDirStatus| d.blocks) as &dyn Fn(&DataDirStatus) -> u64,
        ),
        (
            "hangar_data_dir_bytes",
            "Bytes of blocks in a data directory.",
            &|d| d.bytes,
        ),
        (
            "hangar_data_dir_capacity_bytes",
            "A data directory's capacity (its file system's size if none is configured).",
            &|d| d.capacity.unwrap_or(d.fs_total),
        ),
        (
            "hangar_data_dir_fs_free_bytes",
            "Free space on a data directory's file system.",
            &|d| d.fs_free,
        ),
        (
            "hangar_data_dir_full",
            "Whether a data directory takes no new blocks (1: full or failing) or does (0).",
            &|d| u64::from(d.full.is_some()),
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for d in &dirs {
            let _ = writeln!(out, "{name}{{dir=\"{}\"}} {}", label(&d.path), value(d));
        }
    }
    let healthy = health(s).is_ok();
    let _ = writeln!(
        out,
        "# HELP hangar_healthy Whether every partition has a read and write quorum (1) or not (0).\n# TYPE hangar_healthy gauge\nhangar_healthy {}",
        u8::from(healthy)
    );
    out
}

/// A label value with `\\`, `"` and newlines escaped, as the text format
/// requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
