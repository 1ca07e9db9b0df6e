//! Faults: a recorded workload runs against a 3-node cluster whose clocks
//! disagree while a nemesis kills, partitions and pauses nodes and sets a
//! clock back; once healed, a checker
//! (`tests/s3/history.py`) verifies that no acknowledged write was lost, no
//! read saw an impossible value, listings agree, and the replicas converged.

use std::path::Path;
use std::time::Duration;

use hangar_tests::faults::FaultyCluster;
use hangar_tests::*;

/// Lines in the history so far.
fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Wait until the workload has recorded `more` operations beyond now.
fn ops_pass(path: &Path, more: usize) {
    let target = lines(path) + more;
    wait_for(
        &format!("{more} more operations in the history"),
        Duration::from_secs(60),
        || (lines(path) >= target).then_some(()),
    );
}

/// Minutes, in milliseconds.
const MIN: i64 = 60 * 1000;

#[test]
#[ignore = "full tier: kills, partitions and pauses, about 25 s"]
fn no_acknowledged_write_is_lost_through_kills_partitions_pauses_and_skewed_clocks() {
    // The clocks disagree from the start (node 2 five minutes behind, node
    // 3 five minutes ahead), and node 3 comes back from its kill with its
    // clock set back by a quarter of an hour.
    let mut fc = FaultyCluster::start_formed(
        3,
        &AgentOpts {
            clock_offsets_ms: vec![0, -5 * MIN, 5 * MIN],
            ..AgentOpts::default()
        },
    );
    let c = &mut fc.cluster;
    let key = c.agents[0].bucket_with_key("test", "tester");
    let endpoints: Vec<String> = c.agents.iter().map(|a| a.s3_endpoint()).collect();
    let tmp = tempfile::tempdir().expect("temporary directory");
    let history = tmp.path().join("history.jsonl");
    let stop = tmp.path().join("stop");
    let mut workload = c.agents[0]
        .script_command(
            "history.py",
            &key,
            "test",
            &[
                "run",
                "--endpoints",
                &endpoints.join(","),
                "--clients",
                "6",
                "--keys",
                "200",
                "--seconds",
                "300",
                "--out",
                &history.display().to_string(),
                "--until-file",
                &stop.display().to_string(),
            ],
        )
        .spawn()
        .expect("start the workload");

    // The nemesis, paced by the workload's progress.
    let mut faults = 0;
    ops_pass(&history, 200);
    c.agents[2].kill();
    faults += 1;
    ops_pass(&history, 300);
    c.agents[2].clock_offset_ms = -10 * MIN;
    c.agents[2].start();
    ops_pass(&history, 300);
    fc.net.partition(1, 3);
    faults += 1;
    // The partition is real: the others see node 2 down, and it them.
    let (id0, id1) = (
        fc.cluster.agents[0].id.clone(),
        fc.cluster.agents[1].id.clone(),
    );
    wait_for("node 1 to see node 2 cut off", DEADLINE, || {
        fc.cluster.agents[0]
            .status()
            .is_some_and(|st| sees_down(&st, &id1))
            .then_some(())
    });
    wait_for("node 2 to see node 1 cut off", DEADLINE, || {
        fc.cluster.agents[1]
            .status()
            .is_some_and(|st| sees_down(&st, &id0))
            .then_some(())
    });
    ops_pass(&history, 300);
    fc.net.heal();
    ops_pass(&history, 300);
    let c = &mut fc.cluster;
    c.agents[0].pause();
    faults += 1;
    ops_pass(&history, 200);
    c.agents[0].resume();
    ops_pass(&history, 300);
    std::fs::write(&stop, b"").expect("stop the workload");
    let status = workload.wait().expect("workload");
    assert!(status.success(), "the workload failed");

    // Healed: every node up and the replicas identical.
    let ids: Vec<String> = c.agents.iter().map(|a| a.id.clone()).collect();
    wait_for("every node to see every other up", DEADLINE, || {
        c.agents
            .iter()
            .all(|a| {
                a.status()
                    .is_some_and(|st| ids.iter().all(|id| sees_up(&st, id)))
            })
            .then_some(())
    });
    wait_for_same_metadata(&c.agents, Duration::from_secs(90));
    wait_for(
        "the replicas' blocks to converge (same block sets)",
        Duration::from_secs(90),
        || {
            let b: Vec<_> = c.agents.iter().map(|a| a.block_files()).collect();
            b.iter().all(|x| *x == b[0]).then_some(())
        },
    );

    let faults = faults.to_string();
    let check = [
        "check",
        "--endpoint",
        &endpoints[1],
        "--history",
        &history.display().to_string(),
        "--faults",
        &faults,
    ];
    let report = c.agents[1].script_ok("history.py", &key, "test", &[], &check);
    eprintln!("{report}");
    let json: serde_json::Value =
        serde_json::from_str(&report).expect("the checker prints a JSON report");
    assert!(json["acknowledged"].as_u64().unwrap_or(0) > 500, "{report}");
    assert_eq!(json["anomalies"], serde_json::json!([]), "{report}");

    // The checker is not blind: a lost write planted in the final state of
    // this very run is reported, and so are the anomalies of its self-test.
    let mut planted = check.to_vec();
    planted.push("--plant-lost-write");
    let out = c.agents[1].script("history.py", &key, "test", &[], &planted);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("lost write"),
        "{text}"
    );
    eprint!(
        "{}",
        c.agents[1].script_ok("history.py", &key, "test", &[], &["selftest"])
    );
}

#[test]
#[ignore = "full tier: mounts a tmpfs, which needs root"]
fn a_full_disk_refuses_writes_clearly_keeps_serving_reads_and_recovers() {
    let disk = SmallDisk::mount("6m");
    let data = disk.path().join("data");
    let c = Cluster::start_formed(
        1,
        &AgentOpts {
            replication_factor: 1,
            data_dir: Some(data.clone()),
            extra: "[blocks]\nunreferenced_grace_secs = 1\narrival_delay_secs = 1\ncompression_level = 0\n"
                .into(),
            ..AgentOpts::default()
        },
    );
    let a = &c.agents[0];
    let key = a.bucket_with_key("test", "tester");
    eprint!(
        "{}",
        a.script_ok("compat.py", &key, "test", &[], &["fill_disk"])
    );
    // No temporary file left behind by the failed writes.
    let mut stray = Vec::new();
    let mut stack = vec![data];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().contains(".tmp"))
            {
                stray.push(p);
            }
        }
    }
    assert!(stray.is_empty(), "temporary files left: {stray:?}");
    assert!(a.status().is_some(), "the agent still answers");
    // A refused PUT leaves nothing referenced: once every object is
    // deleted, every block goes and the resync worker has nothing left to
    // do (a block list kept for a refused block would make it fetch that
    // block forever, an error each time). The queue length is counted
    // every 5 s: only a count taken after the last checks (due 1 s after
    // the deletes) says anything, hence the 8 s.
    a.script_ok("compat.py", &key, "test", &[], &["delete_all", "fill/"]);
    let deleted = std::time::Instant::now();
    wait_for(
        "every block gone and the resync queue empty",
        std::time::Duration::from_secs(60),
        || {
            let st = a.status()?;
            let queued = st["blocks"]["resync_queue"].as_u64()?;
            (deleted.elapsed() > std::time::Duration::from_secs(8)
                && queued == 0
                && a.block_files().is_empty())
            .then_some(())
        },
    );
    let st = a.status().expect("status");
    assert_eq!(st["blocks"]["errors"], 0, "{}", st["blocks"]);
    drop(c);
}

#[test]
fn one_block_puts_over_a_slow_link_do_not_hold_up_pings_nor_metadata() {
    // Node 1 reaches node 3 at 256 KB/s. Each 1 MiB object node 1 stores
    // goes to node 3 with its item (the write quorum is nodes 1 and 2):
    // megabytes queue on that link. They must queue on the bulk
    // connection, not ahead of pings and metadata requests: no ping from
    // node 1 to node 3 misses its 2 s, and node 3 stays up all along.
    let fc = FaultyCluster::start_formed(3, &AgentOpts::default());
    let c = &fc.cluster;
    let key = c.agents[0].bucket_with_key("test", "tester");
    let node3 = c.agents[2].id.clone();
    let ping_errors = || -> f64 {
        let (_, m) = super::ops::scrape(&c.agents[0], "/metrics").expect("metrics");
        let prefix = format!(
            "hangar_rpc_errors_total{{peer=\"{}\",method=\"ping\"",
            &node3[..16]
        );
        m.lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let before = ping_errors();
    fc.net.shape(
        0,
        2,
        hangar_tests::faults::Shape {
            rate: Some(256 * 1024),
            ..Default::default()
        },
    );
    let mut writer = c.agents[0]
        .script_command(
            "compat.py",
            &key,
            "test",
            &["put_many", "slow/", "8", "1048576"],
        )
        .spawn()
        .expect("start the writer");
    let started = std::time::Instant::now();
    // During the writes and the 6 s after (the queued megabytes take 32 s
    // at that rate, or until their time runs out).
    let mut done = None;
    while done.is_none_or(|d: std::time::Instant| d.elapsed() < Duration::from_secs(6)) {
        let st = c.agents[0].status().expect("node 1 answers");
        assert!(
            sees_up(&st, &node3),
            "node 1 took node 3 for down {:?} into the writes",
            started.elapsed()
        );
        if done.is_none() && writer.try_wait().expect("writer").is_some() {
            done = Some(std::time::Instant::now());
        }
        assert!(started.elapsed() < DEADLINE, "the writes did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(writer.wait().expect("writer").success(), "a PUT failed");
    assert_eq!(
        ping_errors() - before,
        0.0,
        "pings from node 1 to node 3 missed while megabytes were on their way"
    );
    c.agents[0].get_many(&key, "test", "slow/", 8, 1 << 20);
}
