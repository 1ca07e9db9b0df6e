//! S3 compatibility with real clients (scenarios in `tests/s3/compat.py`
//! for boto3, and the aws CLI and s3cmd driven from there too).

use hangar_tests::*;

/// A one-node cluster with a bucket `test` that a fresh key may use.
/// Unreferenced blocks are deleted one second after their last reference;
/// lifecycle rules are applied every second, with 2-second "days".
pub(crate) fn one_node_with_bucket() -> (Cluster, S3Key) {
    let c = Cluster::start_formed(
        1,
        &AgentOpts {
            replication_factor: 1,
            extra: "[blocks]\nunreferenced_grace_secs = 1\n".into(),
            s3_extra: "lifecycle_interval_secs = 1\nlifecycle_day_secs = 2".into(),
            web_extra: "root_domain = \".web.hangar.test\"".into(),
            ..AgentOpts::default()
        },
    );
    let a = &c.agents[0];
    let key = a.create_key("tester");
    a.hangar_json(&["bucket", "create", "test"]);
    a.hangar_json(&[
        "bucket", "allow", "test", "--key", "tester", "--read", "--write", "--owner",
    ]);
    (c, key)
}

/// The block hashes a scenario printed after `label`.
pub(crate) fn printed(out: &str, label: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.strip_prefix(label)?.strip_prefix(' '))
        .map(str::to_string)
        .collect()
}

#[test]
fn multipart_uploads_with_boto3() {
    let (c, key) = one_node_with_bucket();
    let a = &c.agents[0];
    let out = a.script_ok("compat.py", &key, "test", &[], &["multipart"]);
    eprint!("{out}");
    let (gone, kept) = (printed(&out, "gone"), printed(&out, "kept"));
    assert_eq!((gone.len(), kept.len()), (3, 2), "{out}");
    // Parts of aborted uploads and replaced parts are deleted from disk;
    // the blocks of completed objects stay (they are shared, not copied).
    wait_for("blocks of ended uploads to be deleted", DEADLINE, || {
        let files = a.block_files();
        gone.iter().all(|h| !files.contains(h)).then_some(())
    });
    let files = a.block_files();
    for h in &kept {
        assert!(files.contains(h), "block {h} of a live object was deleted");
    }
}

#[test]
fn the_aws_cli_copies_a_100_mib_file_and_syncs_a_tree_both_ways() {
    let (c, key) = one_node_with_bucket();
    let out = c.agents[0].script_ok("compat.py", &key, "test", &[], &["aws_cli"]);
    eprint!("{out}");
}

/// Signature Version 2: boto3's and aws CLI v1's default presigned URLs,
/// header-signed requests, and its refusals.
#[test]
fn signature_version_2_presigned_urls_and_headers_work_and_bad_ones_are_refused() {
    hangar_tests::tools::require_tool("curl", "curl");
    let (c, key) = one_node_with_bucket();
    let out = c.agents[0].script_ok("compat.py", &key, "test", &[], &["sigv2"]);
    eprint!("{out}");
}

#[test]
fn rclone_copies_checks_and_syncs() {
    let (c, key) = one_node_with_bucket();
    let out = c.agents[0].script_ok("compat.py", &key, "test", &[], &["rclone"]);
    eprint!("{out}");
}

#[test]
fn conditional_requests_checksums_regions_listings_unsupported_operations_and_hostile_input() {
    let (c, key) = one_node_with_bucket();
    for scenario in [
        "conditional",
        "checksums",
        "regions",
        "listing_options",
        "hostile",
    ] {
        let out = c.agents[0].script_ok("compat.py", &key, "test", &[], &[scenario]);
        eprint!("{out}");
    }
}

#[test]
fn a_static_website_uploaded_with_boto3_is_served_over_http() {
    let (c, key) = one_node_with_bucket();
    let out = c.agents[0].script_ok("compat.py", &key, "test", &[], &["website"]);
    eprint!("{out}");
}

#[test]
fn lifecycle_rules_expire_objects_and_abort_stale_uploads() {
    let (c, key) = one_node_with_bucket();
    let a = &c.agents[0];
    eprint!(
        "{}",
        a.script_ok("compat.py", &key, "test", &[], &["lifecycle"])
    );
    // The worker's counts, as an operator sees them.
    let workers = a.hangar_json(&["worker", "list"]);
    let lc = workers
        .as_array()
        .and_then(|w| w.iter().find(|w| w["name"] == "lifecycle"))
        .unwrap_or_else(|| panic!("no lifecycle worker in {workers}"));
    let progress = lc["progress"].as_str().unwrap_or_default();
    assert!(
        progress.contains("3 objects expired") && progress.contains("1 multipart uploads aborted"),
        "{progress}"
    );
}

#[test]
fn bucket_quotas_set_from_the_cli_refuse_writes_past_them() {
    let (c, key) = one_node_with_bucket();
    let a = &c.agents[0];
    let info = a.hangar_json(&[
        "bucket",
        "quota",
        "test",
        "--max-objects",
        "3",
        "--max-size",
        "100K",
    ]);
    assert_eq!(info["quota_max_objects"], 3, "{info}");
    assert_eq!(info["quota_max_size"], 100_000, "{info}");
    let put = |k: &str, size: &str, expect: &str| {
        eprint!(
            "{}",
            a.script_ok("compat.py", &key, "test", &[], &["put", k, size, expect])
        );
    };
    let usage_is = |objects: u64, bytes: u64| {
        wait_for(
            &format!("bucket usage {objects} objects, {bytes} B"),
            DEADLINE,
            || {
                let b = a.hangar_json(&["bucket", "info", "test"]);
                (b["objects"] == objects && b["bytes"] == bytes).then_some(())
            },
        )
    };
    put("q/1", "1000", "ok");
    put("q/2", "1000", "ok");
    put("q/3", "1000", "ok");
    usage_is(3, 3000);
    put("q/4", "1000", "QuotaExceeded");
    // Replacing an object adds no object; only the size counts.
    put("q/1", "2000", "ok");
    put("q/2", "200000", "QuotaExceeded");
    usage_is(3, 4000);
    eprint!(
        "{}",
        a.script_ok("compat.py", &key, "test", &[], &["delete", "q/3"])
    );
    usage_is(2, 3000);
    put("q/4", "1000", "ok");
    let info = a.hangar_json(&["bucket", "quota", "test", "--clear"]);
    assert!(info["quota_max_objects"].is_null(), "{info}");
    put("q/5", "200000", "ok");
}

#[test]
fn streaming_uploads_presigned_expiry_clock_skew_and_virtual_hosts() {
    let c = Cluster::start_formed(
        1,
        &AgentOpts {
            replication_factor: 1,
            s3_extra: "root_domain = \".s3.hangar.test\"".into(),
            ..AgentOpts::default()
        },
    );
    let a = &c.agents[0];
    let key = a.bucket_with_key("test", "tester");
    eprint!(
        "{}",
        a.script_ok("compat.py", &key, "test", &[], &["streaming"])
    );
}
