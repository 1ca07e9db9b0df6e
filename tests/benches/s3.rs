//! S3 throughput, latency and memory on real agents over loopback.
//!
//! `cargo bench -p hangar-tests --bench s3` prints, for this machine:
//! - the raw limits: BLAKE2b and MD5 hashing speed (one core each) and
//!   sequential write + fsync speed of the temporary directory's disk;
//! - PUT and GET throughput (MB/s) of 1 MiB and 64 MiB objects and
//!   requests/s of 4 KiB objects, with 16 concurrent clients, on 1 node
//!   (RF 1) and on 3 nodes (RF 3);
//! - the agent's resident memory idle, and its peak while a 1 GiB object
//!   is uploaded and downloaded (`HANGAR_BENCH_BIG_MIB` changes the size);
//! - its resident memory and threads idle, under the load, and idle
//!   again after it;
//! - with `HANGAR_BENCH_GARAGE=<path to a garage binary>`, the same cases
//!   on a Garage cluster of the same size started beside it, in rounds
//!   that alternate which system goes first (`HANGAR_BENCH_ROUNDS`, 3),
//!   and the ratios (Hangar / Garage) of each row's medians (with each
//!   round's ratio) and of the peak RSS
//!   (`HANGAR_BENCH_GARAGE_FSYNC=1`: Garage with fsync on, as durable as
//!   Hangar; its defaults do not fsync).
//!
//! - the time to list a bucket of 100 folders of 50 objects: the folders
//!   (with a delimiter), one folder, the first 1,000 keys.
//!
//! Each PUT and each GET phase of a case lasts at least 5 s
//! (`HANGAR_BENCH_SECS`) and makes at least its count of requests; the
//! GETs cycle over the objects the PUTs wrote.
//!
//! `HANGAR_BENCH_NODES=1` runs only one cluster size and
//! `HANGAR_BENCH_ONLY=4096x16` only one case (object size x clients;
//! `list` for the listings); `HANGAR_BENCH_SCALE=10` runs ten times as
//! many requests per case (long enough to profile).
//!
//! The client is a minimal HTTP/1.1 client signing with SigV4
//! (`UNSIGNED-PAYLOAD`, hmac/sha2), so the client costs little next to
//! the server. It measures; it asserts nothing.

use std::time::Instant;

use md5::Digest as _;
use tokio::io::AsyncWriteExt;

use hangar_tests::{Agent, AgentOpts, Cluster, S3Key};

#[path = "client/mod.rs"]
mod client;
use client::{Conn, MIB, dir_bytes, incompressible, median, rss_kib, stamp, throughput};

/// Wait until the agent is idle again: its thread count unchanged and its
/// resident memory within 2 MiB for 12 s (idle threads of the blocking pool leave after
/// 5 s, freed memory goes back every 10 s), 60 s at most. Returns how
/// long it took.
fn settle(pid: u32) -> std::time::Duration {
    let start = Instant::now();
    let figures = || (rss_kib(pid, "Threads:"), rss_kib(pid, "VmRSS:") / 1024);
    let mut last = (figures(), Instant::now());
    while start.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let now = figures();
        // Threads exactly, memory within 2 MiB.
        if now.0 != last.0.0 || now.1.abs_diff(last.0.1) > 2 {
            last = (now, Instant::now());
        } else if last.1.elapsed() >= std::time::Duration::from_secs(12) {
            break;
        }
    }
    start.elapsed()
}

fn raw_limits() {
    let data = vec![0x5au8; 256 * MIB];
    let t = Instant::now();
    let h = hangar_common::hash::Hash::of(&data);
    let blake = data.len() as f64 / t.elapsed().as_secs_f64() / 1e6;
    let t = Instant::now();
    let m = md5::Md5::digest(&data);
    let md5s = data.len() as f64 / t.elapsed().as_secs_f64() / 1e6;
    std::hint::black_box((h, m));
    let dir = tempfile::tempdir().expect("tempdir");
    let t = Instant::now();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(dir.path().join("w")).expect("create");
        for c in data.chunks(MIB) {
            f.write_all(c).expect("write");
        }
        f.sync_all().expect("fsync");
    }
    let disk = data.len() as f64 / t.elapsed().as_secs_f64() / 1e6;
    println!(
        "raw limits: BLAKE2b {blake:.0} MB/s, MD5 {md5s:.0} MB/s (one core each), sequential write+fsync {disk:.0} MB/s"
    );
}

fn setup(a: &Agent) -> S3Key {
    let key = a.create_key("bench");
    a.hangar_json(&["bucket", "create", "bench"]);
    a.hangar_json(&[
        "bucket", "allow", "bench", "--key", "bench", "--read", "--write",
    ]);
    key
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    raw_limits();
    let big_mib: usize = std::env::var("HANGAR_BENCH_BIG_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    println!(
        "{:<26} {:>12} {:>12} {:>10} {:>12}",
        "cluster / objects", "PUT MB/s", "GET MB/s", "PUT req/s", "GET TTFB p50"
    );
    let only: Option<usize> = std::env::var("HANGAR_BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok());
    for (nodes, rf) in [(1usize, 1usize), (3, 3)] {
        if only.is_some_and(|n| n != nodes) {
            continue;
        }
        let c = Cluster::start_formed(
            nodes,
            &AgentOpts {
                replication_factor: rf,
                // `HANGAR_BENCH_DB_CACHE` (bytes): the metadata engine's
                // cache, to see how much of the memory after load it is.
                extra: std::env::var("HANGAR_BENCH_DB_CACHE")
                    .map(|b| format!("[tables]\ndb_cache_bytes = {b}\n"))
                    .unwrap_or_default(),
                ..AgentOpts::default()
            },
        );
        let a = &c.agents[0];
        let key = setup(a);
        let pid = a.pid().expect("agent pid");
        settle(pid);
        let idle = rss_kib(pid, "VmRSS:");
        // Most of an idle agent's RSS is its own code, mapped from the
        // binary (shared, and dropped first under memory pressure); the
        // anonymous part is what it allocated.
        let idle_anon = rss_kib(pid, "RssAnon:");
        let idle_threads = rss_kib(pid, "Threads:");
        // `HANGAR_BENCH_ONLY=4096x16` runs one case (object size x
        // clients), without the big object nor the rebalance: for profiling.
        let only_case = std::env::var("HANGAR_BENCH_ONLY").ok();
        if nodes == 1 && only_case.is_none() {
            // Memory stays bounded whatever the object size: measured on
            // a fresh agent, before the concurrent load below (the C
            // allocator keeps freed memory, so a peak measured after it
            // would say more about the load than about one big object).
            rt.block_on(async {
                let mut conn = Conn::open(a.s3_port, &key).await;
                let start = Instant::now();
                conn.send_head("PUT", "/bench/big", big_mib * MIB).await;
                let chunk = incompressible(MIB, 3);
                for i in 0..big_mib {
                    let mut c = chunk.clone();
                    stamp(&mut c, i as u64);
                    conn.stream.get_mut().write_all(&c).await.expect("send body");
                }
                let (st, _, _) = conn.response(start).await;
                assert_eq!(st, 200, "PUT of the big object");
                let put = start.elapsed();
                let (st, n, _) = conn.get("/bench/big").await;
                assert_eq!((st, n), (200, big_mib * MIB), "GET of the big object");
                println!(
                    "1 node: {big_mib} MiB object PUT in {:.1} s, PUT+GET in {:.1} s; agent peak RSS {} MiB",
                    put.as_secs_f64(),
                    start.elapsed().as_secs_f64(),
                    rss_kib(pid, "VmHWM:") / 1024
                );
            });
        }
        let label = format!("{nodes}n RF{rf}");
        // The same cases on Garage, same machine, same client, in rounds
        // that alternate which system goes first (H G, G H, H G...).
        let garage = std::env::var("HANGAR_BENCH_GARAGE").ok().map(|bin| {
            let g = hangar_tests::garage::GarageCluster::start(bin.as_ref(), nodes, rf);
            let gkey = g.bench_key();
            let gpid = g.pid();
            settle(gpid);
            let idle = (
                rss_kib(gpid, "VmRSS:"),
                rss_kib(gpid, "RssAnon:"),
                rss_kib(gpid, "Threads:"),
            );
            (g, gkey, gpid, idle)
        });
        let glabel = format!(
            "Garage {nodes}n RF{rf}{}",
            if hangar_tests::garage::durable() {
                ", fsync"
            } else {
                ""
            }
        );
        let rounds = if garage.is_some() { rounds() } else { 1 };
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let mut turns = [true, false];
            if round % 2 == 1 {
                turns.reverse();
            }
            for hangar in turns {
                if hangar {
                    ours.push(rt.block_on(cases(
                        a.s3_port,
                        &key,
                        &label,
                        round,
                        only_case.as_deref(),
                    )));
                } else if let Some((g, gkey, _, _)) = &garage {
                    theirs.push(rt.block_on(cases(
                        g.s3_port(),
                        gkey,
                        &glabel,
                        round,
                        only_case.as_deref(),
                    )));
                }
            }
        }
        if only_case.is_none() || only_case.as_deref() == Some("list") {
            rt.block_on(listing(a.s3_port, &key, &label));
        }
        if only_case.is_none() || only_case.as_deref() == Some("versions") {
            rt.block_on(version_listing(a.s3_port, &key, &label));
            // The same bucket with versioning on: every write below adds a
            // version (to keys written above).
            a.hangar_json(&["bucket", "versioning", "bench", "enable"]);
            for (size, count) in [(4096usize, 4000usize), (MIB, 400)] {
                let (put, get, reqs, ttfb) = rt.block_on(throughput(
                    a.s3_port,
                    &key,
                    "",
                    size,
                    count * scale(),
                    16,
                    phase(),
                ));
                println!(
                    "{:<26} {:>12.1} {:>12.1} {:>10.0} {:>10.1} ms",
                    format!("{label} versioned {size} B x16"),
                    put,
                    get,
                    reqs,
                    ttfb.as_secs_f64() * 1000.0
                );
            }
        }
        let our_peak = memory("agent", nodes, pid, idle, idle_anon, idle_threads);
        if let Some((_g, _, gpid, (gidle, gidle_anon, gthreads))) = &garage {
            let their_peak = memory("Garage", nodes, *gpid, *gidle, *gidle_anon, *gthreads);
            for (i, (case, _)) in ours[0].iter().enumerate() {
                let of = |runs: &[Vec<(String, (f64, f64))>], put: bool| -> Vec<f64> {
                    runs.iter()
                        .map(|r| if put { r[i].1.0 } else { r[i].1.1 })
                        .collect()
                };
                let ratio = |put: bool| {
                    let (o, t) = (of(&ours, put), of(&theirs, put));
                    let each: Vec<String> = o
                        .iter()
                        .zip(&t)
                        .map(|(o, t)| format!("{:.2}", o / t))
                        .collect();
                    let (o, t) = (median(&o).unwrap_or(0.0), median(&t).unwrap_or(0.0));
                    format!("{:.2}x ({})", o / t, each.join(", "))
                };
                println!(
                    "{nodes}n {case}: Hangar / Garage, median of {rounds} (each round): PUT {}, GET {}",
                    ratio(true),
                    ratio(false)
                );
            }
            println!(
                "{nodes}n peak RSS under load: Hangar {} MiB, Garage {} MiB ({:.2}x)",
                our_peak / 1024,
                their_peak / 1024,
                our_peak as f64 / their_peak.max(1) as f64
            );
        }
        if nodes == 3 && only_case.is_none() {
            rebalance(c);
        }
    }
}

/// `HANGAR_BENCH_SCALE=N` runs N times as many requests per case (a load
/// long enough to profile).
fn scale() -> usize {
    std::env::var("HANGAR_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Rounds of the side-by-side cases: `HANGAR_BENCH_ROUNDS`, 3 unless
/// set; each system's median per case is compared.
fn rounds() -> usize {
    std::env::var("HANGAR_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1)
}

/// How long each PUT or GET phase of a case lasts at least:
/// `HANGAR_BENCH_SECS` seconds, 5 unless set (a phase of well under a
/// second, which the biggest cases took on a count alone, swung by a
/// fifth from run to run).
fn phase() -> std::time::Duration {
    std::time::Duration::from_secs_f64(
        std::env::var("HANGAR_BENCH_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5.0),
    )
}

/// The throughput cases (object size x clients; `only`: one of them) of
/// round `round` (objects of its own),
/// each printed as a row; returns (case, (PUT MB/s, GET MB/s)) per case.
async fn cases(
    port: u16,
    key: &S3Key,
    label: &str,
    round: usize,
    only: Option<&str>,
) -> Vec<(String, (f64, f64))> {
    let mut out = Vec::new();
    for (size, count, clients) in [
        (4096usize, 4000usize, 16usize),
        (MIB, 400, 16),
        (64 * MIB, 8, 16),
        (4096, 1000, 1),
        (MIB, 100, 1),
        (64 * MIB, 4, 1),
    ] {
        let case = format!("{size} B x{clients}");
        if only.is_some_and(|c| c != format!("{size}x{clients}")) {
            continue;
        }
        let (put, get, reqs, ttfb) = throughput(
            port,
            key,
            &if round == 0 {
                String::new()
            } else {
                format!("r{round}-")
            },
            size,
            count * scale(),
            clients,
            phase(),
        )
        .await;
        println!(
            "{:<26} {:>12.1} {:>12.1} {:>10.0} {:>10.1} ms",
            format!("{label} {case}"),
            put,
            get,
            reqs,
            ttfb.as_secs_f64() * 1000.0
        );
        out.push((case, (put, get)));
    }
    out
}

/// Print a process's memory and threads idle (given), at the end of the
/// load and idle again after it; returns its peak RSS (KiB).
fn memory(who: &str, nodes: usize, pid: u32, idle: u64, idle_anon: u64, idle_threads: u64) -> u64 {
    let loaded = rss_kib(pid, "VmHWM:");
    let loaded_threads = rss_kib(pid, "Threads:");
    let settled = settle(pid);
    println!(
        "{nodes} node(s): {who} idle: RSS {} MiB ({} MiB anonymous), {idle_threads} threads; \
         under the load above: peak RSS {} MiB, {loaded_threads} threads at its end; \
         idle again after {:.0} s: RSS {} MiB ({} MiB anonymous), {} threads",
        idle / 1024,
        idle_anon / 1024,
        loaded / 1024,
        settled.as_secs_f64(),
        rss_kib(pid, "VmRSS:") / 1024,
        rss_kib(pid, "RssAnon:") / 1024,
        rss_kib(pid, "Threads:")
    );
    loaded
}

/// Listing a bucket of 100 folders of 50 small objects each: the folders
/// (delimiter `/`), one folder, and the first page of 1,000 of all keys;
/// median of 9 requests each.
async fn listing(port: u16, key: &S3Key, label: &str) {
    let (folders, per_folder) = (100usize, 50usize);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (key, next) = (key.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(port, &key).await;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= folders * per_folder {
                    break;
                }
                let path = format!("/bench/tree/d{:03}/f{:03}", i / per_folder, i % per_folder);
                assert_eq!(c.put(&path, b"small").await, 200, "PUT {path}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("PUT task");
    }
    let mut c = Conn::open(port, key).await;
    for (what, query, min_len) in [
        (
            "100 folders (delimiter)",
            "delimiter=%2F&list-type=2&prefix=tree%2F",
            100 * 40,
        ),
        (
            "one folder (50 keys)",
            "list-type=2&prefix=tree%2Fd042%2F",
            50 * 60,
        ),
        ("first 1,000 keys", "list-type=2&prefix=tree%2F", 1000 * 60),
    ] {
        let mut times = Vec::new();
        for _ in 0..9 {
            let start = Instant::now();
            let (st, len, _) = c.get(&format!("/bench?{query}")).await;
            assert!(
                st == 200 && len >= min_len,
                "LIST {what}: {st}, {len} bytes"
            );
            times.push(start.elapsed());
        }
        times.sort();
        println!(
            "{label} LIST {what}: {:.1} ms",
            times[times.len() / 2].as_secs_f64() * 1000.0
        );
    }
}

/// ListObjectVersions against ListObjectsV2 over 10,000 keys of one
/// version each: every page of 1,000 walked, median of 5 walks each.
async fn version_listing(port: u16, key: &S3Key, label: &str) {
    let keys = 10_000usize;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (key, next) = (key.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(port, &key).await;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= keys {
                    break;
                }
                let path = format!("/bench/lv/k{i:05}");
                assert_eq!(c.put(&path, b"small").await, 200, "PUT {path}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("PUT task");
    }
    let mut c = Conn::open(port, key).await;
    let tag = |body: &str, name: &str| -> Option<String> {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&format!("</{name}>"))? + start;
        Some(body[start..end].to_string())
    };
    // (Keys, tokens and version ids here need no escaping but `/`; the
    // query is signed as written, so it is in canonical order.)
    let enc = |s: &str| s.replace('/', "%2F");
    let mut medians = Vec::new();
    for what in ["ListObjectsV2", "ListObjectVersions"] {
        let mut times = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            let (mut seen, mut marker) = (0usize, None::<(String, Option<String>)>);
            loop {
                let query = match (what, &marker) {
                    ("ListObjectsV2", None) => "list-type=2&prefix=lv%2F".to_string(),
                    ("ListObjectsV2", Some((t, _))) => {
                        format!("continuation-token={}&list-type=2&prefix=lv%2F", enc(t))
                    }
                    (_, None) => "prefix=lv%2F&versions=".to_string(),
                    (_, Some((k, v))) => format!(
                        "key-marker={}&prefix=lv%2F{}&versions=",
                        enc(k),
                        v.as_ref()
                            .map(|v| format!("&version-id-marker={}", enc(v)))
                            .unwrap_or_default()
                    ),
                };
                let (st, body) = c.get_text(&format!("/bench?{query}")).await;
                assert_eq!(st, 200, "{what}: {body}");
                seen += body.matches("<Key>").count();
                if tag(&body, "IsTruncated").as_deref() != Some("true") {
                    break;
                }
                marker = Some(match what {
                    "ListObjectsV2" => (tag(&body, "NextContinuationToken").expect("token"), None),
                    _ => (
                        tag(&body, "NextKeyMarker").expect("key marker"),
                        tag(&body, "NextVersionIdMarker"),
                    ),
                });
            }
            assert_eq!(seen, keys, "{what} walked every key");
            times.push(start.elapsed());
        }
        times.sort();
        let median = times[times.len() / 2];
        medians.push(median);
        println!(
            "{label} {what}, {keys} keys in pages of 1,000: {:.1} ms",
            median.as_secs_f64() * 1000.0
        );
    }
    println!(
        "{label} ListObjectVersions / ListObjectsV2 time: {:.2}x",
        medians[1].as_secs_f64() / medians[0].as_secs_f64()
    );
}

/// Add a fourth node to a loaded 3-node cluster and time until it holds
/// its share of the blocks and the layout transition is over.
fn rebalance(mut c: Cluster) {
    let stored: u64 = c.agents[0].block_files().len() as u64;
    let bytes = dir_bytes(&c.agents[0].dir.path().join("data"));
    let mut fourth = Agent::new(&c.secret, &AgentOpts::default());
    fourth.start();
    let a = &c.agents[0];
    a.hangar_json(&["node", "connect", &fourth.peer_addr()]);
    a.assign_role(&fourth.id, "dc2", "100G");
    let start = Instant::now();
    a.hangar_json(&["layout", "apply", "--version", "2"]);
    // Done when the layout transition is over everywhere and the new node
    // holds its share of the blocks: as many as its share of partitions
    // (blocks spread evenly over partitions), give or take 5 %.
    hangar_tests::wait_for(
        "the rebalance to finish",
        std::time::Duration::from_secs(1800),
        || {
            let st = fourth.status()?;
            let parts = hangar_tests::node_in(&st, &fourth.id)?["partitions"].as_u64()?;
            let held = fourth.block_files().len() as u64;
            let done = c.agents.iter().chain(std::iter::once(&fourth)).all(|x| {
                x.status()
                    .is_some_and(|st| st["live_versions"].as_array().map(Vec::len) == Some(1))
            });
            (done && held * 256 * 100 >= stored * parts * 95).then_some(())
        },
    );
    println!(
        "rebalance after adding a 4th node (zone dc2) to 3 nodes holding {} MiB ({} blocks) each: {:.1} s",
        bytes >> 20,
        stored,
        start.elapsed().as_secs_f64()
    );
    c.agents.push(fourth);
}
