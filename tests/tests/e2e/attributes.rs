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
