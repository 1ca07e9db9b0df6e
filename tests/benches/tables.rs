//! Replicated table throughput and latency on real agents over loopback.
//!
//! `cargo bench -p hangar-tests --bench tables` starts a 1-node (RF 1) and a
//! 3-node (RF 3) cluster, writes `HANGAR_BENCH_ITEMS` (default 100000) small
//! items into the `debug_kv` table through the Admin RPC of one node, with
//! `HANGAR_BENCH_CONCURRENCY` (default 32) requests in flight, then reads
//! them all back, and prints operations per second with p50 / p99 latency.
//! It measures; it asserts nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hangar_common::rpc::AdminClient;
use hangar_tests::{AgentOpts, Cluster, ctx};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Figures {
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
}

async fn run(clients: &[AdminClient], items: usize, concurrency: usize, write: bool) -> Figures {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let client = clients[w % clients.len()].clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= items {
                    break;
                }
                let key = format!("bench-{i:08}");
                let t = Instant::now();
                let ok = if write {
                    matches!(
                        client
                            .debug_kv_put(ctx(), key, Some(format!("value-{i}")))
                            .await,
                        Ok(Ok(()))
                    )
                } else {
                    matches!(client.debug_kv_get(ctx(), key).await, Ok(Ok(Some(_))))
                };
                lat.push(t.elapsed());
                if !ok {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::with_capacity(items);
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("bench task");
        lat.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed();
    lat.sort();
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Figures {
        ops_per_sec: items as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
        errors,
    }
}

fn main() {
    let items = env_usize("HANGAR_BENCH_ITEMS", 100_000);
    let concurrency = env_usize("HANGAR_BENCH_CONCURRENCY", 32);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "debug_kv table: {items} items, {concurrency} requests in flight, Admin RPC to one node, loopback"
    );
    println!(
        "{:<22} {:>12} {:>10} {:>10} {:>8}",
        "cluster / operation", "ops/s", "p50 ms", "p99 ms", "errors"
    );
    for (nodes, rf) in [(1usize, 1usize), (3, 3)] {
        let opts = AgentOpts {
            replication_factor: rf,
            ..AgentOpts::default()
        };
        let c = Cluster::start_formed(nodes, &opts);
        rt.block_on(async {
            let mut clients = Vec::new();
            for _ in 0..4 {
                clients.push(c.agents[0].admin().await);
            }
            for (name, write) in [("insert", true), ("get", false)] {
                let f = run(&clients, items, concurrency, write).await;
                println!(
                    "{:<22} {:>12.0} {:>10.2} {:>10.2} {:>8}",
                    format!("{nodes} node(s), RF {rf}: {name}"),
                    f.ops_per_sec,
                    f.p50.as_secs_f64() * 1000.0,
                    f.p99.as_secs_f64() * 1000.0,
                    f.errors
                );
            }
        });
        // A metadata snapshot: writes on that node wait while it is read
        // (the agent reports how long in /metrics).
        let start = std::time::Instant::now();
        c.agents[0].hangar_json(&["snapshot"]);
        let took = start.elapsed();
        let paused = metric(
            c.agents[0].metrics_port,
            "hangar_snapshot_last_writes_paused_seconds",
        );
        println!(
            "{:<22} {:>12.2} s to copy the metadata store, writes waited {:.2} s of it",
            format!("{nodes} node(s), RF {rf}: snapshot"),
            took.as_secs_f64(),
            paused.unwrap_or(f64::NAN)
        );
    }
}

/// One sample of an agent's `/metrics`.
fn metric(port: u16, name: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
