//! S3 versioning (issue 18) with boto3 against real agents: scenarios in
//! `tests/s3/versioning.py`.

use std::time::Duration;

use hangar_tests::faults::FaultyCluster;
use hangar_tests::*;

use super::compat::{one_node_with_bucket, printed};

#[test]
fn versions_markers_deletes_by_id_copies_and_suspension_with_boto3() {
    let (c, key) = one_node_with_bucket();
    let a = &c.agents[0];
    let out = a.script_ok("versioning.py", &key, "test", &[], &["versions"]);
    eprint!("{out}");
    let (gone, kept) = (printed(&out, "gone"), printed(&out, "kept"));
    assert_eq!((gone.len(), kept.len()), (2, 1), "{out}");
    // A version deleted by id frees its blocks (once the part copied from
    // it is gone too: here it still holds the first block); the latest
    // version's stay.
    wait_for(
        "the second block of a deleted version to go",
        DEADLINE,
        || (!a.block_files().contains(&gone[1])).then_some(()),
    );
    assert!(a.block_files().contains(&kept[0]), "{out}");
    assert!(
        a.block_files().contains(&gone[0]),
        "a block shared with a multipart upload's copied part stays"
    );
    // What an operator sees: the state, and the versions kept beside the
    // current ones (the scenario leaves three: copy's and s's under
    // delete markers, and cond's first below a marker and a new version).
    wait_for("usage to count the versions kept", DEADLINE, || {
        let b = a.hangar_json(&["bucket", "info", "test"]);
        (b["versioning"] == "Enabled" && b["noncurrent_objects"] == 3).then_some(b)
    });
    let b = a.hangar_json(&["bucket", "versioning", "test", "suspend"]);
    assert_eq!(b["versioning"], "Suspended", "{b}");
}

#[test]
fn object_versions_list_in_pages_with_markers_and_delimiters() {
    let (c, key) = one_node_with_bucket();
    let out = c.agents[0].script_ok("versioning.py", &key, "test", &[], &["listing"]);
    eprint!("{out}");
}

#[test]
fn lifecycle_rules_expire_noncurrent_versions_and_lone_delete_markers() {
    let (c, key) = one_node_with_bucket();
    let out = c.agents[0].script_ok("versioning.py", &key, "test", &[], &["lifecycle"]);
    eprint!("{out}");
}

/// Object lock with boto3. A second key may read and write bucket
/// `lockable` without the owner permission (it cannot bypass GOVERNANCE).
#[test]
fn object_lock_refuses_deletes_as_s3_does_and_lifecycle_leaves_locked_versions() {
    let (c, key) = one_node_with_bucket();
    let a = &c.agents[0];
    let other = a.create_key("writer");
    a.hangar_json(&["bucket", "create", "lockable"]);
    a.hangar_json(&[
        "bucket", "allow", "lockable", "--key", "tester", "--read", "--write", "--owner",
    ]);
    a.hangar_json(&[
        "bucket", "allow", "lockable", "--key", "writer", "--read", "--write",
    ]);
    let env = [
        ("HANGAR_OTHER_KEY_ID", other.id.as_str()),
        ("HANGAR_OTHER_KEY_SECRET", other.secret.as_str()),
    ];
    let out = a.script_ok("versioning.py", &key, "test", &env, &["lock"]);
    eprint!("{out}");
}

/// restic against a versioned, object-locked bucket: backup, check, prune,
/// restore, then recovery of what the prune deleted with the aws CLI.
#[test]
#[ignore = "full tier: installs restic, a real backup tool (about 30 s)"]
fn restic_backs_up_into_a_locked_bucket_and_a_pruned_snapshot_is_recovered() {
    hangar_tests::tools::require_tool("restic", "restic");
    let (c, key) = one_node_with_bucket();
    let out = c.agents[0].script_ok("versioning.py", &key, "test", &[], &["restic"]);
    eprint!("{out}");
}

/// Two writers of one key through two nodes whose clocks are 5 minutes
/// apart both get versions, listed in one order through every node; a node
/// cut off while versions are added, marked and deleted by id comes back
/// to exactly the same items (same Merkle roots) and lists the same.
#[test]
#[ignore = "full tier: a 3-node cluster through fault proxies (about 30 s)"]
fn racing_versions_are_kept_in_one_order_and_a_node_that_was_away_converges() {
    const MIN: i64 = 60_000;
    let fc = FaultyCluster::start_formed(
        3,
        &AgentOpts {
            clock_offsets_ms: vec![0, -5 * MIN, 5 * MIN],
            ..AgentOpts::default()
        },
    );
    let c = &fc.cluster;
    let key = c.agents[0].bucket_with_key("test", "tester");
    let endpoints: Vec<String> = c.agents.iter().map(|a| a.s3_endpoint()).collect();
    let all = endpoints.join(",");
    let two = endpoints[..2].join(",");
    let a = &c.agents[0];
    let b = a.hangar_json(&["bucket", "versioning", "test", "enable"]);
    assert_eq!(b["versioning"], "Enabled", "{b}");
    eprint!(
        "{}",
        a.script_ok("versioning.py", &key, "test", &[], &["race", &two, "20"])
    );
    eprint!(
        "{}",
        a.script_ok("versioning.py", &key, "test", &[], &["same", &all])
    );
    // Node 3 away while the versions change.
    fc.net.partition(2, 3);
    let id2 = c.agents[2].id.clone();
    wait_for("node 1 to see node 3 cut off", DEADLINE, || {
        a.status()
            .is_some_and(|st| sees_down(&st, &id2))
            .then_some(())
    });
    eprint!(
        "{}",
        a.script_ok("versioning.py", &key, "test", &[], &["away", &endpoints[0]])
    );
    fc.net.heal();
    wait_for_same_metadata(&c.agents, Duration::from_secs(90));
    eprint!(
        "{}",
        a.script_ok("versioning.py", &key, "test", &[], &["same", &all])
    );
}

/// Lines written to a progress file so far.
fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// 2 writers x 200 versions of one key through 2 nodes: every node lists
/// the same 400 versions in the same order; then again while the third
/// node is killed and restarted in the middle, which comes back to the
/// same items.
#[test]
#[ignore = "full tier: 800 versioned writes on a 3-node cluster, a kill and a restart (about 40 s)"]
fn two_writers_of_one_key_keep_every_version_in_one_order_through_a_restart() {
    let mut c = Cluster::start_formed(3, &AgentOpts::default());
    let key = c.agents[0].bucket_with_key("test", "tester");
    c.agents[0].hangar_json(&["bucket", "versioning", "test", "enable"]);
    let endpoints: Vec<String> = c.agents.iter().map(|a| a.s3_endpoint()).collect();
    let all = endpoints.join(",");
    let tmp = tempfile::tempdir().expect("temporary directory");
    for (round, kill) in [("hot/1", false), ("hot/2", true)] {
        let progress = tmp.path().join(round.replace('/', "-"));
        let progress_arg = progress.display().to_string();
        let mut writers = c.agents[0]
            .script_command(
                "versioning.py",
                &key,
                "test",
                &["hot", &all, "200", round, &progress_arg],
            )
            .spawn()
            .expect("start the writers");
        if kill {
            let at = |n: usize| {
                wait_for(&format!("{n} writes"), Duration::from_secs(120), || {
                    (lines(&progress) >= n).then_some(())
                })
            };
            at(100);
            c.agents[2].kill();
            at(250);
            c.agents[2].start();
        }
        let status = writers.wait().expect("writers");
        assert!(status.success(), "round {round}: the writers failed");
        wait_for_same_metadata(&c.agents, Duration::from_secs(90));
        eprint!(
            "{}",
            c.agents[0].script_ok("versioning.py", &key, "test", &[], &["same", &all, round])
        );
    }
}

/// Versioned writes, tags and a multi-block object on 3 nodes, then two
/// nodes killed: every write and read is refused with a clear 503 (no
/// hang, no half-done version); once they are back, everything that was
/// acknowledged reads back as it was, through every node.
#[test]
#[ignore = "full tier: a 3-node cluster losing two nodes and getting them back (about 20 s)"]
fn versioned_writes_and_tags_with_two_nodes_down_are_refused_and_nothing_acknowledged_is_lost() {
    let mut c = Cluster::start_formed(3, &AgentOpts::default());
    let key = c.agents[0].bucket_with_key("test", "tester");
    c.agents[0].hangar_json(&["bucket", "versioning", "test", "enable"]);
    let tmp = tempfile::tempdir().expect("temporary directory");
    let state = tmp.path().join("state.json").display().to_string();
    let phase = |c: &Cluster, p: &str| {
        let out = c.agents[0].script_ok("versioning.py", &key, "test", &[], &["quorum", p, &state]);
        eprint!("{out}");
        out
    };
    phase(&c, "before");
    c.agents[1].kill();
    c.agents[2].kill();
    // Known to be down (the next ping fails): from then on a refused
    // write sends nothing. (Before that it would go to the one node up,
    // be refused for want of a quorum, and come back with the others.)
    let away = [c.agents[1].id.clone(), c.agents[2].id.clone()];
    wait_for("node 1 to see the other two down", DEADLINE, || {
        let st = c.agents[0].status()?;
        away.iter().all(|id| sees_down(&st, id)).then_some(())
    });
    phase(&c, "down");
    c.agents[1].start();
    c.agents[2].start();
    wait_for_same_metadata(&c.agents, Duration::from_secs(90));
    phase(&c, "after");
}
