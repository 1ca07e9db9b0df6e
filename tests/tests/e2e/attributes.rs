//! Tagging, checksums, partNumber reads and GetObjectAttributes (issue 19)
//! with boto3 against a real agent: scenarios in `tests/s3/attributes.py`.

use super::compat::one_node_with_bucket;

#[test]
fn object_and_bucket_tags_through_puts_copies_multipart_and_versions() {
    let (c, key) = one_node_with_bucket();
    let out = c.agents[0].script_ok("attributes.py", &key, "test", &[], &["tagging"]);
    eprint!("{out}");
}

#[test]
fn checksums_of_every_algorithm_are_kept_and_multipart_ones_composed() {
    let (c, key) = one_node_with_bucket();
    let out = c.agents[0].script_ok("attributes.py", &key, "test", &[], &["checksums"]);
    eprint!("{out}");
}

#[test]
fn parts_are_read_by_number_and_listed_by_get_object_attributes() {
    let (c, key) = one_node_with_bucket();
    let out = c.agents[0].script_ok("attributes.py", &key, "test", &[], &["parts"]);
    eprint!("{out}");
}

/// Bucket conflicts, ListBuckets pages, the configured region, empty
/// listings, presigned expiry bounds, copy ranges.
#[test]
fn small_behaviours_answer_as_s3_does() {
    use hangar_tests::{AgentOpts, Cluster};
    let c = Cluster::start_formed(
        1,
        &AgentOpts {
            replication_factor: 1,
            s3_extra: "s3_region = \"home-1\"".into(),
            ..AgentOpts::default()
        },
    );
    let a = &c.agents[0];
    let key = a.create_key("tester");
    let other = a.create_key("stranger");
    a.hangar_json(&["bucket", "create", "test"]);
    a.hangar_json(&[
        "bucket", "allow", "test", "--key", "tester", "--read", "--write", "--owner",
    ]);
    let env = [
        ("HANGAR_OTHER_KEY_ID", other.id.as_str()),
        ("HANGAR_OTHER_KEY_SECRET", other.secret.as_str()),
        ("HANGAR_REGION", "home-1"),
    ];
    let out = a.script_ok("attributes.py", &key, "test", &env, &["behaviours"]);
    eprint!("{out}");
}
