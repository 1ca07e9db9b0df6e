//! Many small objects in one bucket on one node: does a write cost the
//! same with a million objects as with none, and what does each object
//! cost in metadata?
//!
//! `cargo bench -p hangar-tests --bench small` PUTs 1 KiB objects (stored
//! inline, in the metadata) with 16 clients into one bucket until it
//! holds `HANGAR_BENCH_OBJECTS` (1,000,000 by default), and prints per
//! step of a tenth: PUT/s during the step, the time to list the first
//! 1,000 keys and the 100 "folders" (with a delimiter), metadata bytes on
//! disk per object and the agent's RSS. At the end: PUT/s of the last step
//! against the first. With `HANGAR_BENCH_GARAGE=<garage binary>`, the same
//! on a one-node Garage right after. It measures; it asserts nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use hangar_tests::{AgentOpts, Cluster, S3Key};

#[path = "client/mod.rs"]
mod client;
use client::{Conn, dir_bytes, incompressible, rss_kib, stamp};

const CLIENTS: usize = 16;
const FOLDERS: usize = 100;

/// PUT objects `from..to` (named into 100 folders) with 16 clients:
/// requests per second.
async fn put_range(port: u16, key: &S3Key, from: usize, to: usize) -> f64 {
    let next = Arc::new(AtomicUsize::new(from));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (key, next) = (key.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(port, &key).await;
            let mut body = incompressible(1024, 1);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= to {
                    break;
                }
                stamp(&mut body, i as u64);
                let path = format!("/bench/d{:03}/o{i:09}", i % FOLDERS);
                assert_eq!(c.put(&path, &body).await, 200, "PUT {path}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("PUT task");
    }
    (to - from) as f64 / start.elapsed().as_secs_f64()
}

/// Median time (ms) of 5 listings of `query`.
async fn list_ms(port: u16, key: &S3Key, query: &str) -> f64 {
    let mut c = Conn::open(port, key).await;
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let (st, len, _) = c.get(&format!("/bench?{query}")).await;
        assert!(st == 200 && len > 0, "LIST {query}: {st}");
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Fill the bucket in ten steps, printing each; returns (first, last)
/// step's PUT/s and the metadata bytes per object at the end.
async fn fill(
    who: &str,
    port: u16,
    key: &S3Key,
    pid: u32,
    meta: &std::path::Path,
    total: usize,
) -> (f64, f64, f64) {
    let step = (total / 10).max(1);
    let (mut first, mut last, mut per_object) = (0.0, 0.0, 0.0);
    for s in 0..10 {
        let (from, to) = (s * step, (s + 1) * step);
        let rate = put_range(port, key, from, to).await;
        let first_keys = list_ms(port, key, "list-type=2&max-keys=1000").await;
        let folders = list_ms(port, key, "delimiter=%2F&list-type=2").await;
        per_object = dir_bytes(meta) as f64 / to as f64;
        println!(
            "{who}: {to:>9} objects: {rate:>7.0} PUT/s; LIST first 1,000 {first_keys:>7.1} ms, \
             100 folders {folders:>7.1} ms; metadata {per_object:>6.0} B/object; RSS {} MiB",
            rss_kib(pid, "VmRSS:") / 1024
        );
        if s == 0 {
            first = rate;
        }
        last = rate;
    }
    println!(
        "{who}: PUT/s of the last tenth / the first: {:.2}",
        last / first
    );
    (first, last, per_object)
}

fn main() {
    let total: usize = std::env::var("HANGAR_BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ours = {
        let c = Cluster::start_formed(
            1,
            &AgentOpts {
                replication_factor: 1,
                // `HANGAR_BENCH_DB_CACHE` (bytes): the metadata engine's
                // page cache, to see what the default costs at size.
                extra: std::env::var("HANGAR_BENCH_DB_CACHE")
                    .map(|b| format!("[tables]\ndb_cache_bytes = {b}\n"))
                    .unwrap_or_default(),
                ..AgentOpts::default()
            },
        );
        let a = &c.agents[0];
        let key = a.create_key("bench");
        a.hangar_json(&["bucket", "create", "bench"]);
        a.hangar_json(&[
            "bucket", "allow", "bench", "--key", "bench", "--read", "--write",
        ]);
        let pid = a.pid().expect("agent pid");
        let meta = a.dir.path().join("meta");
        rt.block_on(fill("Hangar", a.s3_port, &key, pid, &meta, total))
    };
    if let Ok(bin) = std::env::var("HANGAR_BENCH_GARAGE") {
        let g = hangar_tests::garage::GarageCluster::start(bin.as_ref(), 1, 1);
        let key = g.bench_key();
        let label = if hangar_tests::garage::durable() {
            "Garage (fsync)"
        } else {
            "Garage"
        };
        let theirs = rt.block_on(fill(
            label,
            g.s3_port(),
            &key,
            g.pid(),
            &g.meta_dir(),
            total,
        ));
        println!(
            "Hangar / Garage: PUT/s first tenth {:.2}x, last tenth {:.2}x; metadata per object {:.2}x",
            ours.0 / theirs.0,
            ours.1 / theirs.1,
            ours.2 / theirs.2
        );
    }
}
