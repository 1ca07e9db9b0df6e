//! Latency across sites: 3 nodes in 3 zones (RF 3) whose links all have a
//! given round trip (50 ms by default, `HANGAR_BENCH_RTT_MS`), through the
//! fault proxies of the harness; the client sits beside node 1 (plain
//! loopback to its S3 port). One request at a time, it measures p50, p90,
//! p99 and max of PUT, GET, HEAD, DELETE and LIST of a 1 KiB object,
//! ListBuckets, PUT and GET of 4 KiB (above the inline limit) and of 1 MiB,
//! conditional PUTs, and the time to the first byte of a 64 MiB GET, and
//! prints each as a multiple of the round trip. Then a slow node: node 3 behind a 1 MB/s link with 200 ms
//! of extra delay, to show reads and writes keep the speed of the quorum.
//!
//! `cargo bench -p hangar-tests --bench latency`. It measures; it asserts
//! nothing.

use std::time::Duration;

use md5::Digest;

use hangar_tests::faults::{FaultyCluster, Shape};
use hangar_tests::{AgentOpts, S3Key};

#[path = "client/mod.rs"]
mod client;
use client::{Conn, MIB, incompressible, median, throughput};

/// Requests of each kind (`HANGAR_BENCH_REPS`, 200 by default): over more
/// than 10 s in all, so the 1-second refreshes and 2-second expiries of
/// the nodes' key and bucket caches fall inside the sample.
fn reps() -> usize {
    std::env::var("HANGAR_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// The p50, p90, p99 and max of a sample.
fn percentiles(mut v: Vec<Duration>) -> [Duration; 4] {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    [at(0.5), at(0.9), at(0.99), v[v.len() - 1]]
}

/// Time one request.
async fn timed<T>(samples: &mut Vec<Duration>, f: impl std::future::Future<Output = T>) -> T {
    let t = std::time::Instant::now();
    let out = f.await;
    samples.push(t.elapsed());
    out
}

/// The latency of each operation, one request at a time, interleaved.
async fn ops(port: u16, key: &S3Key, tag: &str, reps: usize) -> Vec<(&'static str, Vec<Duration>)> {
    let mut c = Conn::open(port, key).await;
    let body = vec![7u8; 1024];
    let body4 = vec![9u8; 4096];
    let body1m = incompressible(MIB, 3);
    let etag = format!("\"{}\"", hex::encode(md5::Md5::digest(&body)));
    const NAMES: [&str; 12] = [
        "PUT 1 KiB",
        "GET 1 KiB",
        "HEAD",
        "DELETE",
        "LIST",
        "ListBuckets",
        "PUT 4 KiB",
        "GET 4 KiB",
        "PUT 1 MiB",
        "GET 1 MiB",
        "PUT If-None-Match 1 KiB",
        "PUT If-Match 1 KiB",
    ];
    let mut s: Vec<Vec<Duration>> = vec![Vec::with_capacity(reps); NAMES.len()];
    for i in 0..reps {
        let path = format!("/bench/{tag}/obj-{i}");
        assert_eq!(timed(&mut s[0], c.put(&path, &body)).await, 200);
        assert_eq!(timed(&mut s[1], c.call("GET", &path)).await.0, 200);
        assert_eq!(timed(&mut s[2], c.call("HEAD", &path)).await.0, 200);
        let q = format!("/bench?list-type=2&prefix={tag}%2F");
        assert_eq!(timed(&mut s[4], c.call("GET", &q)).await.0, 200);
        assert_eq!(timed(&mut s[3], c.call("DELETE", &path)).await.0, 204);
        assert_eq!(timed(&mut s[5], c.call("GET", "/")).await.0, 200);
        // 4 KiB is above the inline limit: a block, then the object.
        let path = format!("/bench/{tag}/big-{i}");
        assert_eq!(timed(&mut s[6], c.put(&path, &body4)).await, 200);
        assert_eq!(timed(&mut s[7], c.call("GET", &path)).await.0, 200);
        assert_eq!(c.call("DELETE", &path).await.0, 204);
        let path = format!("/bench/{tag}/mib-{i}");
        assert_eq!(timed(&mut s[8], c.put(&path, &body1m)).await, 200);
        assert_eq!(timed(&mut s[9], c.call("GET", &path)).await.0, 200);
        assert_eq!(c.call("DELETE", &path).await.0, 204);
        // Conditional PUTs (by consensus): create if absent, then replace
        // that version.
        let path = format!("/bench/{tag}/lock-{i}");
        let st = timed(
            &mut s[10],
            c.put_with(&path, &body, &[("if-none-match", "*")]),
        )
        .await;
        assert_eq!(st, 200);
        let st = timed(&mut s[11], c.put_with(&path, &body, &[("if-match", &etag)])).await;
        assert_eq!(st, 200);
        assert_eq!(c.call("DELETE", &path).await.0, 204);
    }
    NAMES.into_iter().zip(s).collect()
}

async fn big_ttfb(port: u16, key: &S3Key) -> (Duration, Duration) {
    let mut c = Conn::open(port, key).await;
    let mut data = incompressible(64 * MIB, 2);
    client::stamp(&mut data, 0);
    let t = std::time::Instant::now();
    assert_eq!(c.put("/bench/big", &data).await, 200);
    let put = t.elapsed();
    let mut ttfb = Vec::new();
    for _ in 0..5 {
        let (st, len, first) = c.get("/bench/big").await;
        assert_eq!((st, len), (200, 64 * MIB));
        ttfb.push(first);
    }
    (put, median(&ttfb).unwrap_or_default())
}

/// Print the percentiles of each small operation and the 64 MiB
/// figures, as times and multiples of the round trip.
async fn report(port: u16, key: &S3Key, tag: &str, rtt: Duration) {
    let x = |d: Duration| d.as_secs_f64() / rtt.as_secs_f64();
    let reps = reps();
    let started = std::time::Instant::now();
    println!(
        "{:<24} {:>8} {:>7} {:>7} {:>7} {:>7}   (x RTT; {reps} of each)",
        "operation", "p50 ms", "p50", "p90", "p99", "max"
    );
    for (op, v) in ops(port, key, tag, reps).await {
        let [p50, p90, p99, max] = percentiles(v);
        println!(
            "{op:<24} {:>8.1} {:>7.2} {:>7.2} {:>7.2} {:>7.2}",
            p50.as_secs_f64() * 1000.0,
            x(p50),
            x(p90),
            x(p99),
            x(max)
        );
    }
    println!("(sampled over {:.0} s)", started.elapsed().as_secs_f64());
    let (put, ttfb) = big_ttfb(port, key).await;
    println!(
        "{:<24} {:>8.1} {:>7.2}",
        "GET 64 MiB first byte",
        ttfb.as_secs_f64() * 1000.0,
        x(ttfb)
    );
    println!(
        "{:<24} {:>8.1} ms ({:.0} MB/s)",
        "PUT 64 MiB",
        put.as_secs_f64() * 1000.0,
        64.0 * MIB as f64 / 1e6 / put.as_secs_f64()
    );
}

fn main() {
    let rtt_ms: u64 = std::env::var("HANGAR_BENCH_RTT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let rtt = Duration::from_millis(rtt_ms);
    let fc = FaultyCluster::start_formed(3, &AgentOpts::default());
    let a = &fc.cluster.agents[0];
    let key = a.create_key("bench");
    a.hangar_json(&["bucket", "create", "bench"]);
    a.hangar_json(&[
        "bucket", "allow", "bench", "--key", "bench", "--read", "--write",
    ]);
    let port = a.s3_port;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let shape = Shape {
        delay: rtt / 2,
        ..Shape::default()
    };
    for (x, y) in [(0, 1), (0, 2), (1, 2)] {
        fc.net.shape_both(x, y, shape);
    }
    // Warm the connections and caches.
    rt.block_on(ops(port, &key, "warm", 3));
    println!(
        "3 nodes in 3 zones, RF 3, {rtt_ms} ms round trip between zones, client beside node 1"
    );
    rt.block_on(report(port, &key, "lat", rtt));

    println!(
        "\n{:<24} {:>10} {:>10} {:>10} {:>12}",
        "throughput at this RTT", "PUT MB/s", "GET MB/s", "PUT req/s", "GET TTFB p50"
    );
    for (size, count, clients) in [
        (4096usize, 400usize, 16usize),
        (MIB, 64, 16),
        (64 * MIB, 4, 16),
        (4096, 40, 1),
        (MIB, 16, 1),
        (64 * MIB, 2, 1),
    ] {
        let (put, get, reqs, ttfb) = rt.block_on(throughput(
            port,
            &key,
            "",
            size,
            count,
            clients,
            std::time::Duration::ZERO,
        ));
        println!(
            "{:<24} {:>10.1} {:>10.1} {:>10.0} {:>9.1} ms",
            format!("{size} B x{clients}"),
            put,
            get,
            reqs,
            ttfb.as_secs_f64() * 1000.0
        );
    }

    // A slow node: node 3 behind a 1 MB/s link with 200 ms more delay.
    let slow = Shape {
        delay: rtt / 2 + Duration::from_millis(100),
        rate: Some(1_000_000),
        ..Shape::default()
    };
    fc.net.shape_both(0, 2, slow);
    fc.net.shape_both(1, 2, slow);
    println!("\nnode 3 behind a 1 MB/s link with 200 ms more round trip");
    rt.block_on(report(port, &key, "slow", rtt));
}
