//! Latency across sites: 3 nodes in 3 zones (RF 3) whose links all have a
//! given round trip (50 ms by default, `HANGAR_BENCH_RTT_MS`), through the
//! fault proxies of the harness; the client sits beside node 1 (plain
//! loopback to its S3 port). One request at a time, it measures the median
//! time of PUT, GET, HEAD, DELETE and LIST of a 1 KiB object (PUT and GET
//! of a 4 KiB one, above the inline limit) and the time
//! to the first byte of a 64 MiB GET, and prints each as a multiple of the
//! round trip. Then a slow node: node 3 behind a 1 MB/s link with 200 ms
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
use client::{Conn, MIB, incompressible, throughput};

const REPS: usize = 25;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median latency of each operation, one request at a time.
async fn ops(port: u16, key: &S3Key, tag: &str) -> Vec<(&'static str, Duration)> {
    let mut c = Conn::open(port, key).await;
    let body = vec![7u8; 1024];
    let (mut put, mut get, mut head, mut del, mut list) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // 4 KiB is above the inline limit: a block, its list and references,
    // then the object.
    let (mut put4, mut get4) = (Vec::new(), Vec::new());
    // Conditional PUTs (by consensus): create if absent, then replace
    // that version.
    let (mut create, mut swap) = (Vec::new(), Vec::new());
    let body4 = vec![9u8; 4096];
    for i in 0..REPS {
        let path = format!("/bench/{tag}/big-{i}");
        let t = std::time::Instant::now();
        assert_eq!(c.put(&path, &body4).await, 200);
        put4.push(t.elapsed());
        let t = std::time::Instant::now();
        assert_eq!(c.call("GET", &path).await.0, 200);
        get4.push(t.elapsed());
        assert_eq!(c.call("DELETE", &path).await.0, 204);
    }
    for i in 0..REPS {
        let path = format!("/bench/{tag}/obj-{i}");
        let t = std::time::Instant::now();
        assert_eq!(c.put(&path, &body).await, 200);
        put.push(t.elapsed());
        let t = std::time::Instant::now();
        assert_eq!(c.call("GET", &path).await.0, 200);
        get.push(t.elapsed());
        let t = std::time::Instant::now();
        assert_eq!(c.call("HEAD", &path).await.0, 200);
        head.push(t.elapsed());
        let t = std::time::Instant::now();
        let q = format!("/bench?list-type=2&prefix={tag}%2F");
        assert_eq!(c.call("GET", &q).await.0, 200);
        list.push(t.elapsed());
        let t = std::time::Instant::now();
        assert_eq!(c.call("DELETE", &path).await.0, 204);
        del.push(t.elapsed());
    }
    let etag = format!("\"{}\"", hex::encode(md5::Md5::digest(&body)));
    for i in 0..REPS {
        let path = format!("/bench/{tag}/lock-{i}");
        let t = std::time::Instant::now();
        let st = c.put_with(&path, &body, &[("if-none-match", "*")]).await;
        assert_eq!(st, 200);
        create.push(t.elapsed());
        let t = std::time::Instant::now();
        let st = c.put_with(&path, &body, &[("if-match", &etag)]).await;
        assert_eq!(st, 200);
        swap.push(t.elapsed());
        assert_eq!(c.call("DELETE", &path).await.0, 204);
    }
    vec![
        ("PUT 1 KiB", median(put)),
        ("GET 1 KiB", median(get)),
        ("HEAD", median(head)),
        ("DELETE", median(del)),
        ("LIST", median(list)),
        ("PUT 4 KiB", median(put4)),
        ("GET 4 KiB", median(get4)),
        ("PUT If-None-Match 1 KiB", median(create)),
        ("PUT If-Match 1 KiB", median(swap)),
    ]
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
    (put, median(ttfb))
}

/// Print the median of each small operation and the 64 MiB figures, as
/// times and multiples of the round trip.
async fn report(port: u16, key: &S3Key, tag: &str, rtt: Duration) {
    let line = |op: &str, d: Duration| {
        println!(
            "{op:<22} {:>7.1} ms {:>8.2}",
            d.as_secs_f64() * 1000.0,
            d.as_secs_f64() / rtt.as_secs_f64()
        )
    };
    for (op, d) in ops(port, key, tag).await {
        line(op, d);
    }
    let (put, ttfb) = big_ttfb(port, key).await;
    line("GET 64 MiB first byte", ttfb);
    println!(
        "{:<22} {:>7.1} ms ({:.0} MB/s)",
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
    rt.block_on(ops(port, &key, "warm"));
    println!(
        "3 nodes in 3 zones, RF 3, {rtt_ms} ms round trip between zones, client beside node 1"
    );
    println!("{:<22} {:>10} {:>8}", "operation", "median", "x RTT");
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
        let (put, get, reqs, ttfb) = rt.block_on(throughput(port, &key, size, count, clients));
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
