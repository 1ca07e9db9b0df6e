//! Writes that need exactly one winner go through per-item consensus
//! (`agent/src/table/paxos.rs`): racing creators of one bucket name, and
//! racing conditional PUTs (If-None-Match: *, If-Match), through every
//! node: one of them wins.

use hangar_tests::*;

/// Run a racing scenario of `client.py` against a fresh 3-node cluster,
/// its clients spread over the three nodes.
fn race(scenario: &str, rounds: &str, clients: &str) -> Cluster {
    let c = Cluster::start_formed(3, &AgentOpts::default());
    let a = &c.agents[0];
    let key = a.bucket_with_key("test", "tester");
    let eps: Vec<String> = c.agents.iter().map(|a| a.s3_endpoint()).collect();
    let eps = eps.join(",");
    let out = a.boto3_ok(
        &key,
        "test",
        &[("HANGAR_S3_ENDPOINTS", eps.as_str())],
        &[scenario, rounds, clients],
    );
    eprint!("{out}");
    c
}

#[test]
#[ignore = "full tier: about a minute"]
fn racing_creators_of_one_bucket_name_through_three_nodes_have_one_winner() {
    let c = race("bucket_race", "25", "8");
    let a = &c.agents[0];
    // The losers' bucket items are marked deleted: one live bucket per
    // name in the listing.
    let list = a.hangar_json(&["bucket", "list"]);
    let names: Vec<&str> = list
        .as_array()
        .map(|l| l.iter().filter_map(|b| b["name"].as_str()).collect())
        .unwrap_or_default();
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(names.len(), unique.len(), "{list}");
    assert_eq!(names.len(), 26, "{list}");
}

#[test]
#[ignore = "full tier: 200 rounds of 8 racing writers take minutes"]
fn racing_conditional_puts_through_three_nodes_have_one_winner_each_round() {
    race("conditional_race", "200", "8");
}

/// Rounds of the scenario recorded in `path` so far.
fn rounds_done(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Wait until the scenario has done `more` rounds beyond now.
fn rounds_pass(path: &std::path::Path, more: usize) {
    let target = rounds_done(path) + more;
    wait_for(
        &format!("{more} more rounds of racing writers"),
        std::time::Duration::from_secs(180),
        || (rounds_done(path) >= target).then_some(()),
    );
}

#[test]
#[ignore = "full tier: kills and partitions under racing writers take minutes"]
fn racing_conditional_puts_never_have_two_winners_while_a_node_is_killed_or_cut_off() {
    // Short operation timeouts: a round with a cut-off node waits for them.
    let mut fc = hangar_tests::faults::FaultyCluster::start_formed(
        3,
        &AgentOpts {
            extra: "[tables]\nop_timeout_ms = 2000\n".into(),
            ..AgentOpts::default()
        },
    );
    let c = &mut fc.cluster;
    let key = c.agents[0].bucket_with_key("test", "tester");
    let eps: Vec<String> = c.agents.iter().map(|a| a.s3_endpoint()).collect();
    let tmp = tempfile::tempdir().expect("temporary directory");
    let progress = tmp.path().join("rounds");
    let mut scenario = c.agents[0]
        .script_command("client.py", &key, "test", &["conditional_race", "90", "8"])
        .env("HANGAR_S3_ENDPOINTS", eps.join(","))
        .env("HANGAR_FAULTS", "1")
        .env("HANGAR_PROGRESS", &progress)
        .spawn()
        .expect("start the racing writers");

    // The nemesis, paced by the rounds: node 3 killed, then restarted...
    rounds_pass(&progress, 8);
    c.agents[2].kill();
    rounds_pass(&progress, 15);
    c.agents[2].start();
    rounds_pass(&progress, 10);
    // ...node 2 cut off from the others (its clients still reach it)...
    fc.net.partition(1, 3);
    rounds_pass(&progress, 8);
    fc.net.heal();
    // ...and the rest of the rounds with every node back.
    let status = scenario.wait().expect("racing writers");
    assert!(
        status.success(),
        "two writers won one round, or a refused write took effect (see the scenario's output)"
    );
    assert!(rounds_done(&progress) >= 90);
}

#[test]
#[ignore = "full tier: a recorded history checked, about 20 s"]
fn conditional_and_plain_writers_of_a_few_hot_keys_never_lose_an_update() {
    // Eight clients over three nodes whose clocks disagree, on four keys:
    // plain PUTs and DELETEs race swaps (If-Match the value last read) and
    // creates (If-None-Match). The checker finds any swap told 200 that
    // replaced another value than the one it read, any two swaps of one
    // value, and any value read whose writer was told 412.
    let c = Cluster::start_formed(
        3,
        &AgentOpts {
            clock_offsets_ms: vec![0, -90_000, 90_000],
            ..AgentOpts::default()
        },
    );
    let a = &c.agents[0];
    let key = a.bucket_with_key("test", "tester");
    let eps: Vec<String> = c.agents.iter().map(|a| a.s3_endpoint()).collect();
    let tmp = tempfile::tempdir().expect("temporary directory");
    let history = tmp.path().join("history.jsonl");
    let history = history.display().to_string();
    let eps = eps.join(",");
    let run = [
        "run",
        "--endpoints",
        &eps,
        "--clients",
        "8",
        "--keys",
        "3",
        "--seconds",
        "15",
        "--swaps",
        "60",
        "--out",
        &history,
    ];
    let out = a.script_ok("history.py", &key, "test", &[], &run);
    eprint!("{out}");
    let out = a.script_ok(
        "history.py",
        &key,
        "test",
        &[],
        &[
            "check",
            "--endpoint",
            &a.s3_endpoint(),
            "--history",
            &history,
        ],
    );
    eprint!("{out}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("the checker's report");
    // The run raced: swaps both won and lost.
    assert!(
        report["conditional writes acknowledged"].as_u64() > Some(20),
        "{out}"
    );
    assert!(
        report["conditional writes refused"].as_u64() > Some(20),
        "{out}"
    );
}

#[test]
fn object_store_clients_share_lock_files_and_a_compare_and_swap_counter() {
    // The object_store crate (through its Python binding) as lock files,
    // Delta Lake and Iceberg commits use it, through every node.
    let c = Cluster::start_formed(3, &AgentOpts::default());
    let a = &c.agents[0];
    let key = a.bucket_with_key("test", "tester");
    let eps: Vec<String> = c.agents.iter().map(|a| a.s3_endpoint()).collect();
    let eps = eps.join(",");
    let env = [("HANGAR_S3_ENDPOINTS", eps.as_str())];
    let out = a.script_ok(
        "obstore_locks.py",
        &key,
        "test",
        &env,
        &["locks", "30", "8"],
    );
    eprint!("{out}");
    let out = a.script_ok(
        "obstore_locks.py",
        &key,
        "test",
        &env,
        &["counter", "6", "12"],
    );
    eprint!("{out}");
}

#[test]
fn racing_conditional_copies_and_multipart_completions_have_one_winner_each_round() {
    race("conditional_copy_complete", "8", "6");
}
