//! Objects of one block: the block travels with the object's item, in one
//! round trip, and lives on the item's replicas. These tests try to lose
//! it: a replica away during the write, the writer gone after, the object
//! replaced and deleted while a node is down.

use std::collections::BTreeSet;

use hangar_tests::*;

const MIB: usize = 1 << 20;

#[test]
fn one_block_objects_read_copy_and_race_like_any_other_on_three_nodes() {
    let c = Cluster::start_formed(3, &AgentOpts::default());
    let a = &c.agents[1];
    let key = a.bucket_with_key("test", "tester");
    eprint!(
        "{}",
        a.script_ok("compat.py", &key, "test", &[], &["one_block"])
    );
}

/// What `agents` hold on disk, once they all hold the same blocks, and
/// `n` of them.
fn same_blocks(agents: &[&Agent], n: usize, what: &str) -> BTreeSet<String> {
    wait_for(what, DEADLINE, || {
        let sets: Vec<BTreeSet<String>> = agents.iter().map(|a| a.block_files()).collect();
        (sets.iter().all(|s| *s == sets[0]) && sets[0].len() == n).then(|| sets[0].clone())
    })
}

#[test]
fn a_one_block_object_reaches_the_node_that_was_away_outlives_its_writer_and_goes_when_replaced() {
    let opts = AgentOpts {
        extra: "[blocks]\nunreferenced_grace_secs = 1\narrival_delay_secs = 1\n".into(),
        ..AgentOpts::default()
    };
    let mut c = Cluster::start_formed(3, &opts);
    let key = c.agents[0].bucket_with_key("test", "tester");
    c.agents[2].kill();
    // Written while node 3 is away: one-block objects (the largest, exactly
    // one block), two-block ones (the block list path) and small ones.
    let a = &c.agents[0];
    a.put_many(&key, "test", "x/", 3, MIB);
    a.put_many(&key, "test", "y/", 2, MIB + 1);
    a.put_many(&key, "test", "z/", 2, 5000);
    let written = same_blocks(
        &[&c.agents[0], &c.agents[1]],
        3 + 2 * 2 + 2,
        "nodes 1 and 2 to hold every block",
    );
    assert!(c.agents[2].block_files().is_empty());

    // Node 3 comes back: anti-entropy brings it the items, and it fetches
    // the blocks they keep beside them.
    c.agents[2].start();
    let all: Vec<&Agent> = c.agents.iter().collect();
    assert_eq!(
        same_blocks(&all, written.len(), "node 3 to fetch every block"),
        written
    );

    // The writer goes: nodes 2 and 3 serve everything.
    c.agents[0].kill();
    let b = &c.agents[1];
    b.get_many(&key, "test", "x/", 3, MIB);
    b.get_many(&key, "test", "y/", 2, MIB + 1);
    b.get_many(&key, "test", "z/", 2, 5000);

    // One replaced by a small object, one deleted: their blocks go from
    // the nodes that are up (after the grace delay), and nothing is handed
    // to anyone.
    b.script_ok(
        "compat.py",
        &key,
        "test",
        &[],
        &["put", "x/0000", "5000", "ok"],
    );
    b.script_ok("compat.py", &key, "test", &[], &["delete", "x/0001"]);
    let after = same_blocks(
        &[&c.agents[1], &c.agents[2]],
        written.len() - 2 + 1,
        "the replaced and deleted objects' blocks to go from nodes 2 and 3",
    );
    assert_eq!(written.difference(&after).count(), 2, "two blocks went");
    assert_eq!(after.difference(&written).count(), 1, "one came");
    b.get_many(&key, "test", "x/", 1, 5000);
    b.get_many(&key, "test", "y/", 2, MIB + 1);

    // The writer comes back: it learns of both and drops the same blocks.
    c.agents[0].start();
    let all: Vec<&Agent> = c.agents.iter().collect();
    assert_eq!(same_blocks(&all, after.len(), "node 1 to catch up"), after);
}
