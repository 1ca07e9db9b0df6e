//! Public access (issue 19) with boto3 and plain unsigned HTTP against a
//! real agent: ACLs, bucket policies, Block Public Access, anonymous
//! requests. Scenarios in `tests/s3/access.py`.

use super::compat::one_node_with_bucket;

/// The scenario's environment: a second key with no permission of its
/// own on bucket `test`, and the main key's name.
fn run(scenario: &str) {
    let (c, key) = one_node_with_bucket();
    let a = &c.agents[0];
    let other = a.create_key("stranger");
    let env = [
        ("HANGAR_OTHER_KEY_ID", other.id.as_str()),
        ("HANGAR_OTHER_KEY_SECRET", other.secret.as_str()),
        ("HANGAR_KEY_NAME", "tester"),
    ];
    let out = a.script_ok("access.py", &key, "test", &env, &[scenario]);
    eprint!("{out}");
    if scenario == "acl" {
        // What an operator sees: the bucket made public-read, and why.
        let b = a.hangar_json(&["bucket", "info", "born-public"]);
        assert_eq!(b["public"][0], "ACL: everyone may READ", "{b}");
        let b = a.hangar_json(&["bucket", "info", "test"]);
        assert_eq!(b["public"], serde_json::json!([]), "{b}");
    }
}

#[test]
fn acls_grant_and_refuse_anonymous_and_other_keys_and_block_public_access_overrides_them() {
    run("acl");
}

#[test]
fn bucket_policies_allow_by_prefix_address_and_key_and_an_explicit_deny_wins() {
    run("policy");
}

#[test]
fn browser_form_posts_are_signed_checked_against_their_policy_and_refused_forms_store_nothing() {
    run("post");
}

#[test]
fn the_minio_sdk_uploads_with_a_presigned_post_policy() {
    run("minio");
}

#[test]
fn s3cmd_syncs_a_tree_and_makes_a_file_public_with_setacl() {
    run("s3cmd");
}
