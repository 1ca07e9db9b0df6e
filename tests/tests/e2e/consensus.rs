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
fn racing_conditional_puts_through_three_nodes_have_one_winner_each_round() {
    race("conditional_race", "20", "8");
}
