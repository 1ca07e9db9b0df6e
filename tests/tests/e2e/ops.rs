//! Running Hangar as a service: `/metrics` and `/health`.

use std::io::{Read, Write};

use hangar_tests::*;

/// `GET path` on an agent's metrics port: (status, body).
pub fn scrape(a: &Agent, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", a.metrics_port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// The value of one sample (`name{labels}`), 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .filter_map(|v| v.trim().parse().ok())
        .next()
        .unwrap_or(0.0)
}

/// The sum of every sample whose series starts with `prefix` (any value
/// of the labels after it).
fn sum_samples(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ')?.1.trim().parse::<f64>().ok())
        .sum()
}

#[test]
fn metrics_count_requests_and_bytes_and_health_follows_the_quorums() {
    let mut c = Cluster::start_formed(3, &AgentOpts::default());
    let key = c.agents[0].bucket_with_key("test", "tester");
    let a = &c.agents[0];
    let (st, before) = scrape(a, "/metrics").expect("scrape /metrics");
    assert_eq!(st, 200);
    a.script_ok("compat.py", &key, "test", &[], &["metrics_load"]);
    let (_, after) = scrape(a, "/metrics").expect("scrape /metrics");
    let delta = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(
        delta("hangar_s3_requests_total{op=\"PutObject\",status=\"200\"}"),
        10.0,
        "{after}"
    );
    assert_eq!(
        delta("hangar_s3_requests_total{op=\"GetObject\",status=\"200\"}"),
        20.0
    );
    assert_eq!(delta("hangar_s3_bytes_in_total"), 100_000.0);
    assert_eq!(delta("hangar_s3_bytes_out_total"), 200_000.0);
    assert_eq!(
        delta("hangar_s3_request_duration_seconds_count{op=\"GetObject\"}"),
        20.0
    );
    assert!(after.contains("hangar_peer_up{peer="), "{after}");
    assert!(
        after.contains("hangar_table_items{table=\"object\"}"),
        "{after}"
    );
    assert_eq!(sample(&after, "hangar_healthy"), 1.0);
    // The blocks of deleted objects wait in the resync queue for their
    // deletion after the grace delay (10 minutes here): the queue length
    // (counted every 5 s) shows them.
    a.script_ok("compat.py", &key, "test", &[], &["metrics_delete"]);
    wait_for(
        "the resync queue to count the released blocks",
        DEADLINE,
        || {
            let (_, m) = scrape(a, "/metrics")?;
            (sample(&m, "hangar_resync_queue") >= 10.0).then_some(())
        },
    );
    // RPC calls by peer: each PUT's object went to both other nodes once,
    // its block with it (objects of one block: no `block_put`).
    assert_eq!(
        delta("hangar_table_requests_sent_total{table=\"object\",op=\"update_return_with_block\"}"),
        20.0,
        "{after}"
    );
    for peer in [&c.agents[1], &c.agents[2]] {
        let p = &peer.id[..16];
        let rpc = |name: &str, method: &str| format!("{name}{{peer=\"{p}\",method=\"{method}\"}}");
        assert_eq!(
            delta(&rpc("hangar_rpc_requests_total", "block_put")),
            0.0,
            "{after}"
        );
        assert!(delta(&rpc("hangar_rpc_requests_total", "table")) >= 10.0);
        assert_eq!(
            sample(&after, &rpc("hangar_rpc_duration_seconds_count", "table")),
            sample(&after, &rpc("hangar_rpc_requests_total", "table"))
        );
        assert!(sample(&after, &rpc("hangar_rpc_requests_total", "ping")) > 0.0);
    }

    let (st, body) = scrape(a, "/health").expect("health");
    assert_eq!((st, body.starts_with("ok")), (200, true), "{body}");
    // Two of three nodes down: no partition has a quorum.
    c.agents[1].kill();
    c.agents[2].kill();
    let body = wait_for("/health to say unavailable", DEADLINE, || {
        let (st, body) = scrape(&c.agents[0], "/health")?;
        (st == 503).then_some(body)
    });
    assert!(body.contains("without a write quorum"), "{body}");
    // Calls to the dead nodes fail, and /metrics counts it per peer and
    // per kind of failure.
    let dead = &c.agents[1].id[..16];
    let m = wait_for("RPC errors to a dead peer to be counted", DEADLINE, || {
        let (_, m) = scrape(&c.agents[0], "/metrics")?;
        let errors: f64 = ["ping", "connect"]
            .iter()
            .map(|method| {
                sum_samples(
                    &m,
                    &format!(
                        "hangar_rpc_errors_total{{peer=\"{dead}\",method=\"{method}\",kind=\""
                    ),
                )
            })
            .sum();
        (errors > 0.0).then_some(m)
    });
    let kinds = [
        "unreachable",
        "timeout",
        "connection",
        "refused",
        "protocol",
    ];
    for line in m
        .lines()
        .filter(|l| l.starts_with("hangar_rpc_errors_total{"))
    {
        assert!(
            kinds
                .iter()
                .any(|k| line.contains(&format!("kind=\"{k}\"}}"))),
            "an error of no known kind: {line}"
        );
    }
    c.agents[1].start();
    c.agents[2].start();
    wait_for("/health to recover", DEADLINE, || {
        let (st, _) = scrape(&c.agents[0], "/health")?;
        (st == 200).then_some(())
    });
}

/// `systemd-analyze verify` on a copy of the unit whose ExecStart points at
/// `agent`: (success, what it printed).
fn verify_unit(unit: &str, agent: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("hangar-agent.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/hangar-agent", agent)).expect("write unit");
    tools::require_tool("systemd-analyze", "systemd");
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && text.trim().is_empty(), text)
}

#[test]
fn the_systemd_unit_verifies_cleanly() {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/hangar-agent.service"),
    )
    .expect("assets/hangar-agent.service");
    let agent = agent_bin().display().to_string();
    let (ok, text) = verify_unit(&unit, &agent);
    assert!(ok, "systemd-analyze verify: {text}");
    // The check is not blind: a bad value is reported.
    let (ok, text) = verify_unit(
        &unit.replace("Restart=on-failure", "Restart=sometimes"),
        &agent,
    );
    assert!(!ok, "a bad Restart= went unnoticed: {text}");
    for must in [
        "User=hangar",
        "Restart=on-failure",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.contains(must), "the unit lacks {must}");
    }
}

/// Copy a directory tree.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create directory");
    for e in std::fs::read_dir(from).expect("read directory").flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).expect("copy file");
        }
    }
}

#[test]
fn a_snapshot_taken_under_load_restores_a_wiped_node() {
    let mut c = Cluster::start_formed(3, &AgentOpts::default());
    let key = c.agents[0].bucket_with_key("test", "tester");
    // Writes go on (through node 1) while node 3 takes its snapshot.
    let mut load = c.agents[0]
        .boto3_command(&key, "test", &["write", "snap", "300"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the write load");
    wait_for("some objects to be written", DEADLINE, || {
        let b = c.agents[0].hangar_json(&["bucket", "info", "test"]);
        (b["objects"].as_u64()? >= 20).then_some(())
    });
    let snap = c.agents[2].hangar_json(&["snapshot"]);
    let snap_dir = std::path::PathBuf::from(snap["snapshot"].as_str().expect("snapshot path"));
    assert!(snap_dir.join("db").is_dir(), "{snap}");
    // Operators see when the last snapshot was taken and what it cost; the
    // temporary dump it was made through is gone.
    let (_, m) = scrape(&c.agents[2], "/metrics").expect("scrape /metrics");
    assert!(sample(&m, "hangar_snapshot_last_entries") > 20.0, "{m}");
    let at = sample(&m, "hangar_snapshot_last_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!((now - at).abs() < 120.0, "snapshot time {at}, now {now}");
    let paused = sample(&m, "hangar_snapshot_last_writes_paused_seconds");
    let took = sample(&m, "hangar_snapshot_last_duration_seconds");
    assert!(
        paused > 0.0 && paused <= took,
        "paused {paused} s of {took} s"
    );
    let leftovers: Vec<_> = std::fs::read_dir(snap_dir.parent().expect("snapshots folder"))
        .expect("list snapshots")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('.') || n.ends_with(".dump"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    assert!(!snap_dir.join("db.dump").exists(), "the dump is removed");
    // And so does `hangar status`.
    let st = c.agents[2].status().expect("status");
    assert_eq!(
        st["last_snapshot"]["entries"].as_f64(),
        Some(sample(&m, "hangar_snapshot_last_entries")),
        "{st}"
    );
    let text = String::from_utf8_lossy(&c.agents[2].hangar(&["status"]).stdout).to_string();
    assert!(text.contains("Metadata snapshot: last "), "{text}");
    let other = String::from_utf8_lossy(&c.agents[1].hangar(&["status"]).stdout).to_string();
    assert!(
        other.contains("Metadata snapshot: none since this agent started"),
        "{other}"
    );
    assert!(
        load.wait().expect("write load").success(),
        "the write load failed"
    );

    // Node 3 loses its metadata; the snapshot is all it gets back.
    let kept = tempfile::tempdir().expect("temporary directory");
    copy_tree(&snap_dir, kept.path());
    c.agents[2].kill();
    let meta = c.agents[2].dir.path().join("meta");
    std::fs::remove_dir_all(&meta).expect("wipe the metadata");
    copy_tree(kept.path(), &meta);
    c.agents[2].start();
    let st = c.agents[2].status().expect("status");
    assert_eq!(
        st["node"].as_str().map(|s| s.to_string()),
        Some(c.agents[2].id.clone()),
        "the restored node kept its identity"
    );
    // Anti-entropy brings what was written after the snapshot: node 3's
    // object table ends up the same as node 1's.
    let object_digest = |a: &Agent| -> Option<String> {
        let st = a.status()?;
        st["tables"]
            .as_array()?
            .iter()
            .find(|t| t["table"] == "object" && t["merkle_queue"] == 0)
            .and_then(|t| t["merkle_digest"].as_str().map(str::to_string))
    };
    // Reconnecting starts an anti-entropy round; `repair tables` (as the
    // README's recovery steps say) starts more, should the first have run
    // before the restored node was ready.
    let mut last_repair = std::time::Instant::now();
    wait_for(
        "the restored node to converge",
        std::time::Duration::from_secs(90),
        || {
            let (a, b) = (object_digest(&c.agents[0])?, object_digest(&c.agents[2])?);
            if a != b && last_repair.elapsed() > std::time::Duration::from_secs(5) {
                c.agents[0].hangar(&["repair", "tables"]);
                c.agents[2].hangar(&["repair", "tables"]);
                last_repair = std::time::Instant::now();
            }
            (a == b).then_some(())
        },
    );
    // Every object, read through the restored node.
    c.agents[2].boto3_ok(&key, "test", &[], &["read", "snap", "300"]);
}

/// A regression guard on the cost of the most common write: one PUT of a
/// 4 KiB object through node 1 of three (RF 3). Counted from the agents'
/// own metrics once the cluster is quiet again, so it cannot flake: the
/// requests node 1 sends (one block to each other replica, one write per
/// table item to each) and the storage transactions each node commits per
/// table (one item write, one Merkle fold). A change that adds a round
/// trip or a transaction to this path fails here; one that removes some
/// lowers the figures below.
#[test]
fn a_small_put_on_three_nodes_costs_no_more_requests_nor_transactions() {
    let c = Cluster::start_formed(3, &AgentOpts::default());
    let key = c.agents[0].bucket_with_key("test", "tester");
    let a = &c.agents[0];
    // Warm up: connections, the key and bucket lookups cached.
    a.put_many(&key, "test", "warm", 1, 4096);
    let tables = ["version", "block_ref", "object"];
    // Every node's metrics once each holds `n` objects (and `blocks`
    // block files) and has folded every change into its Merkle trees.
    let quiet = |n: f64, blocks: usize| -> Vec<String> {
        wait_for(
            "every node to hold the objects and drain its Merkle queues",
            DEADLINE,
            || {
                let ms = c
                    .agents
                    .iter()
                    .map(|a| scrape(a, "/metrics").map(|(_, m)| m))
                    .collect::<Option<Vec<_>>>()?;
                (c.agents.iter().all(|a| a.block_files().len() == blocks)
                    && ms.iter().all(|m| {
                        sum_samples(m, "hangar_table_merkle_queue") == 0.0
                            && sample(m, "hangar_table_items{table=\"object\"}") == n
                    }))
                .then_some(ms)
            },
        )
    };
    let before = quiet(1.0, 1);
    a.put_many(&key, "test", "one", 1, 4096);
    let after = quiet(2.0, 2);
    let delta =
        |node: usize, series: &str| sample(&after[node], series) - sample(&before[node], series);

    // Requests node 1 sent: the object's item to each other replica, the
    // block with it (one round trip); no block list, no block reference,
    // no separate block request.
    for peer in [&c.agents[1], &c.agents[2]] {
        let series = format!(
            "hangar_rpc_requests_total{{peer=\"{}\",method=\"block_put\"}}",
            &peer.id[..16]
        );
        assert_eq!(delta(0, &series), 0.0, "{series}");
    }
    for (table, op, n) in [
        ("version", "update", 0.0),
        ("block_ref", "update", 0.0),
        ("object", "update_return_with_block", 2.0),
    ] {
        let series = format!("hangar_table_requests_sent_total{{table=\"{table}\",op=\"{op}\"}}");
        assert_eq!(delta(0, &series), n, "{series}");
        let all = sum_samples(
            &after[0],
            &format!("hangar_table_requests_sent_total{{table=\"{table}\""),
        ) - sum_samples(
            &before[0],
            &format!("hangar_table_requests_sent_total{{table=\"{table}\""),
        );
        assert_eq!(all, n, "{table}: no other request than the write");
    }
    // Storage transactions on every node: the object item's write and
    // the Merkle fold that takes it in; none for the other tables.
    for node in 0..3 {
        for table in tables {
            let series = format!("hangar_table_transactions_total{{table=\"{table}\"}}");
            let n = delta(node, &series);
            let most = if table == "object" { 2.0 } else { 0.0 };
            assert!(
                n <= most && (table != "object" || n >= 1.0),
                "node {}: {n} transactions for one {table} item (at most {most})",
                node + 1
            );
        }
    }
}

/// A field of `/proc/<pid>/status` (`Threads:`; `RssAnon:` in KiB).
fn proc_status(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The agent's threads and anonymous memory (KiB) once its thread count
/// has held still for 6 s.
fn steady(pid: u32) -> (u64, u64) {
    let mut since: Option<(u64, std::time::Instant)> = None;
    wait_for(
        "the agent's thread count to hold still",
        DEADLINE * 2,
        || {
            let threads = proc_status(pid, "Threads:")?;
            match since {
                Some((t, at)) if t == threads => (at.elapsed()
                    >= std::time::Duration::from_secs(6))
                .then(|| (threads, proc_status(pid, "RssAnon:").unwrap_or(0))),
                _ => {
                    since = Some((threads, std::time::Instant::now()));
                    None
                }
            }
        },
    )
}

/// After a burst of 16 clients uploading and reading 4 MiB objects, the
/// agent gives back the threads the burst took (the blocking pool's
/// grow under it) and the memory its requests held, within seconds, not
/// after the keys and buckets it served stop being refreshed (10 min).
#[test]
#[ignore = "full tier: waits for the agent to settle before and after a burst, about 30 s"]
fn after_a_burst_of_uploads_an_agent_gives_back_its_threads_and_memory() {
    let c = Cluster::single_node();
    let a = &c.agents[0];
    let key = a.bucket_with_key("test", "tester");
    let pid = a.pid().expect("agent pid");
    // Idle before any S3 request: from the first one on, the key and
    // bucket it used are refreshed in the background (a few reads a
    // second), which kept the blocking pool's threads from retiring.
    let (idle_threads, idle_anon) = steady(pid);
    a.script_ok(
        "compat.py",
        &key,
        "test",
        &[],
        &["burst", "burst/", "96", &(4 << 20).to_string(), "16"],
    );
    let loaded = proc_status(pid, "Threads:").unwrap_or(0);
    assert!(
        loaded > idle_threads + 6,
        "the burst should have grown the agent's threads: {idle_threads} idle, {loaded} after"
    );
    // Idle threads of the blocking pool leave after 5 s unused; freed
    // memory goes back to the system every 10 s.
    let (threads, anon) = wait_for(
        &format!(
            "the agent to give back the threads and memory of the burst: at most {} threads \
             and {} MiB anonymous ({idle_threads} threads, {} MiB idle; {loaded} threads after)",
            idle_threads + 6,
            idle_anon / 1024 + 32,
            idle_anon / 1024
        ),
        DEADLINE,
        || {
            let now = (proc_status(pid, "Threads:")?, proc_status(pid, "RssAnon:")?);
            (now.0 <= idle_threads + 6 && now.1 <= idle_anon + 32 * 1024).then_some(now)
        },
    );
    eprintln!(
        "idle: {idle_threads} threads, {} MiB anonymous; after the burst: {loaded} threads; \
         back to {threads} threads, {} MiB",
        idle_anon / 1024,
        anon / 1024
    );
}
