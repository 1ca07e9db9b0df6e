//! Several data directories on one node: blocks spread by capacity, and a
//! directory that fills up (its configured capacity, or its real file
//! system) stops receiving blocks while uploads go on succeeding.

use std::path::Path;

use hangar_tests::*;

/// Block files under a data directory.
fn blocks_in(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.join("blocks")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                stack.push(p);
            } else if name.trim_end_matches(".zst").len() == 64 {
                n += 1;
            }
        }
    }
    n
}

/// This node's data directories as `hangar status --json` reports them.
fn dirs_status(a: &Agent) -> Vec<serde_json::Value> {
    let st = a.status().expect("status");
    st["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["is_self"] == true))
        .and_then(|n| n["data_dirs"].as_array().cloned())
        .expect("data_dirs in status")
}

fn dir_toml(dirs: &[(&Path, Option<&str>)]) -> String {
    let items: Vec<String> = dirs
        .iter()
        .map(|(p, cap)| match cap {
            Some(c) => format!("{{ path = {p:?}, capacity = {c:?} }}"),
            None => format!("{{ path = {p:?} }}"),
        })
        .collect();
    format!("[{}]", items.join(", "))
}

const OPTS: &str = "[blocks]\ncompression_level = 0\n";

#[test]
fn blocks_spread_by_capacity_and_a_read_only_directory_drains() {
    // Relative to the agent's directory: the same paths, so the same
    // placement, in every run.
    let (small_rel, big_rel) = (Path::new("small"), Path::new("big"));
    let mut opts = AgentOpts {
        replication_factor: 1,
        extra: OPTS.into(),
        data_dir_toml: Some(dir_toml(&[(small_rel, Some("1G")), (big_rel, Some("3G"))])),
        ..AgentOpts::default()
    };
    let mut c = Cluster::start_formed(1, &opts);
    let key = c.agents[0].bucket_with_key("test", "tester");
    let (small, big) = (
        c.agents[0].dir.path().join(small_rel),
        c.agents[0].dir.path().join(big_rel),
    );

    // 200 objects of one block each, 1 GB against 3 GB: a quarter land in
    // the small directory (the content is fixed, so the split is too; 50
    // expected, a standard deviation of 6).
    let a = &c.agents[0];
    a.put_many(&key, "test", "p1/", 200, 20000);
    let (n_small, n_big) = (blocks_in(&small), blocks_in(&big));
    assert_eq!(n_small + n_big, 200);
    assert!(
        (30..=70).contains(&n_small),
        "1 GB of 4 GB received {n_small} of 200 blocks"
    );
    // Status counts what is on disk, and says both take blocks.
    let st = dirs_status(a);
    assert_eq!(st.len(), 2);
    assert_eq!(st[0]["blocks"], n_small as u64, "{st:?}");
    assert_eq!(st[1]["blocks"], n_big as u64, "{st:?}");
    assert_eq!(st[0]["bytes"], 20000 * n_small as u64);
    assert!(st.iter().all(|d| d["full"].is_null()), "{st:?}");

    // Make the small one read-only (a disk to be replaced): at restart the
    // scrub moves its blocks to the other, and everything stays readable.
    opts.data_dir_toml = Some(format!(
        "[{{ path = {small_rel:?}, capacity = \"1G\", read_only = true }}, {{ path = {big_rel:?}, capacity = \"3G\" }}]"
    ));
    c.agents[0].terminate();
    c.agents[0].write_config(&opts);
    c.agents[0].start();
    let a = &c.agents[0];
    wait_for("the read-only directory to drain", DEADLINE, || {
        (blocks_in(&small) == 0).then_some(())
    });
    assert_eq!(blocks_in(&big), 200);
    let st = dirs_status(a);
    assert_eq!(
        (st[0]["blocks"].as_u64(), st[0]["read_only"].as_bool()),
        (Some(0), Some(true))
    );
    assert_eq!(st[1]["blocks"], 200);
    let text = String::from_utf8_lossy(&a.hangar(&["status"]).stdout).to_string();
    assert!(text.contains("read-only (draining)"), "{text}");
    assert!(
        text.contains(&format!(
            "Blocks moved to the data directory they belong in: {n_small}"
        )),
        "{text}"
    );
    a.put_many(&key, "test", "p2/", 20, 20000);
    assert_eq!(
        blocks_in(&small),
        0,
        "a read-only directory takes no new block"
    );
    a.get_many(&key, "test", "p1/", 200, 20000);
}

#[test]
fn directories_fill_to_their_capacity_without_failing_puts() {
    // Room for exactly 15 + 45 blocks of 20,000 bytes. Blocks prefer one
    // directory or the other in proportion, but not exactly 15 to 45 (with
    // these paths and contents, more than 45 prefer the big one): it fills
    // up first and refuses blocks, which go to the small one, and every PUT
    // succeeds until the node is full.
    let (small_rel, big_rel) = (Path::new("small"), Path::new("big"));
    let c = Cluster::start_formed(
        1,
        &AgentOpts {
            replication_factor: 1,
            extra: OPTS.into(),
            data_dir_toml: Some(dir_toml(&[
                (small_rel, Some("300KB")),
                (big_rel, Some("900KB")),
            ])),
            ..AgentOpts::default()
        },
    );
    let a = &c.agents[0];
    let (small, big) = (a.dir.path().join(small_rel), a.dir.path().join(big_rel));
    let key = a.bucket_with_key("test", "tester");
    a.put_many(&key, "test", "p/", 60, 20000);
    assert_eq!(
        (blocks_in(&small), blocks_in(&big)),
        (15, 45),
        "each filled to its capacity"
    );
    let logs = a.logs();
    assert!(
        logs.contains("data directory big takes no new blocks: capacity reached"),
        "the big directory filled first and refused blocks: {logs}"
    );
    // Both full now: the operator sees why, and the next PUT is refused
    // clearly, with nothing half-written.
    let st = dirs_status(a);
    for d in &st {
        assert!(
            d["full"]
                .as_str()
                .is_some_and(|w| w.contains("capacity reached")),
            "{st:?}"
        );
    }
    let text = String::from_utf8_lossy(&a.hangar(&["status"]).stdout).to_string();
    assert!(text.contains("FULL: capacity reached"), "{text}");
    let metrics = super::ops::scrape(a, "/metrics")
        .expect("scrape /metrics")
        .1;
    assert!(
        metrics.contains("hangar_data_dir_full{dir=\"small\"} 1"),
        "{metrics}"
    );
    a.script_ok(
        "compat.py",
        &key,
        "test",
        &[],
        &["put", "one-more", "20000", "ServiceUnavailable"],
    );
    assert_eq!(blocks_in(&small) + blocks_in(&big), 60);
    a.get_many(&key, "test", "p/", 60, 20000);
}

#[test]
#[ignore = "full tier: mounts a tmpfs, which needs root"]
fn a_data_disk_that_fills_up_stops_receiving_blocks_and_puts_go_on() {
    // A 4 MiB disk that something else already uses 3 MB of, next to a
    // directory of 4 MB: by size they would share the blocks equally, but
    // the small disk fills up first.
    let disk = SmallDisk::mount("4m");
    std::fs::write(disk.path().join("someone-else.bin"), vec![7u8; 3_000_000]).expect("fill");
    let root = tempfile::tempdir().expect("tempdir");
    let (tiny, other) = (disk.path().join("hangar"), root.path().join("other"));
    let c = Cluster::start_formed(
        1,
        &AgentOpts {
            replication_factor: 1,
            extra: OPTS.into(),
            data_dir_toml: Some(dir_toml(&[(&tiny, None), (&other, Some("4MB"))])),
            ..AgentOpts::default()
        },
    );
    let a = &c.agents[0];
    let key = a.bucket_with_key("test", "tester");
    a.put_many(&key, "test", "p/", 100, 40000);
    let (n_tiny, n_other) = (blocks_in(&tiny), blocks_in(&other));
    assert_eq!(n_tiny + n_other, 100);
    assert!(
        (10..40).contains(&n_tiny),
        "the small disk took blocks until it was nearly full: {n_tiny}"
    );
    let st = dirs_status(a);
    let why = st[0]["full"].as_str().unwrap_or_default();
    assert!(why.contains("nearly full"), "{st:?}");
    assert!(st[1]["full"].is_null(), "{st:?}");
    a.get_many(&key, "test", "p/", 100, 40000);
    drop(c);
}
