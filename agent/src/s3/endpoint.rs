//! The S3 operation a request asks for, worked out once from its method,
//! bucket, key, query and headers: the router dispatches on it, metrics
//! count by its name, and a test checks the README's table of operations
//! names every one.

use std::collections::BTreeMap;

use http::{HeaderMap, Method};

/// An S3 operation (named as AWS names it), or what is not served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    ListBuckets,
    CreateBucket,
    DeleteBucket,
    HeadBucket,
    GetBucketLocation,
    GetBucketVersioning,
    PutBucketVersioning,
    ListObjectVersions,
    GetObjectLockConfiguration,
    PutObjectLockConfiguration,
    GetObjectRetention,
    PutObjectRetention,
    GetObjectLegalHold,
    PutObjectLegalHold,
    GetBucketAcl,
    ListObjects,
    ListObjectsV2,
    DeleteObjects,
    ListMultipartUploads,
    GetBucketWebsite,
    PutBucketWebsite,
    DeleteBucketWebsite,
    GetBucketCors,
    PutBucketCors,
    DeleteBucketCors,
    GetBucketLifecycleConfiguration,
    PutBucketLifecycleConfiguration,
    DeleteBucketLifecycleConfiguration,
    CreateMultipartUpload,
    UploadPart,
    UploadPartCopy,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
    CopyObject,
    PutObject,
    GetObject,
    HeadObject,
    DeleteObject,
    GetObjectAcl,
    GetBucketTagging,
    PutBucketTagging,
    DeleteBucketTagging,
    GetObjectTagging,
    PutObjectTagging,
    DeleteObjectTagging,
    GetObjectAttributes,
    PutBucketAcl,
    PutObjectAcl,
    GetBucketPolicy,
    PutBucketPolicy,
    DeleteBucketPolicy,
    GetBucketPolicyStatus,
    GetPublicAccessBlock,
    PutPublicAccessBlock,
    DeletePublicAccessBlock,
    /// A browser form upload (POST of multipart/form-data to a bucket).
    PostObject,
    /// A CORS preflight (`OPTIONS`).
    Preflight,
    /// Not served (501): of the service, a bucket or an object.
    Unsupported(Level),
}

/// What an unsupported request was addressed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Service,
    Bucket,
    Object,
}

/// Query flags that select a bucket sub-resource (CORS, website...).
const BUCKET_SUBRESOURCES: &[&str] = &[
    "acl",
    "cors",
    "website",
    "lifecycle",
    "policy",
    "policyStatus",
    "versioning",
    "versions",
    "tagging",
    "uploads",
    "delete",
    "encryption",
    "logging",
    "notification",
    "replication",
    "object-lock",
    "accelerate",
    "requestPayment",
    "ownershipControls",
    "publicAccessBlock",
    "analytics",
    "metrics",
    "inventory",
    "intelligent-tiering",
];

/// Query flags that select an object sub-resource (ACL, tagging...).
const OBJECT_SUBRESOURCES: &[&str] = &[
    "acl",
    "tagging",
    "retention",
    "legal-hold",
    "torrent",
    "attributes",
    "restore",
];

/// A `multipart/form-data` body (an HTML form's upload).
fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
}

/// The first of `flags` the query has.
fn subresource<'a>(flags: &[&'a str], q: &BTreeMap<String, String>) -> Option<&'a str> {
    flags.iter().find(|f| q.contains_key(**f)).copied()
}

/// The bucket sub-resource a query selects, if any.
pub(crate) fn bucket_subresource(q: &BTreeMap<String, String>) -> Option<&'static str> {
    subresource(BUCKET_SUBRESOURCES, q)
}

impl Endpoint {
    /// The operation of a request. `query`: its parameters, without the
    /// `X-Amz-*` ones of a presigned URL (authentication, not the request).
    pub(crate) fn of(
        method: &Method,
        bucket: bool,
        key: bool,
        query: &BTreeMap<String, String>,
        headers: &HeaderMap,
    ) -> Endpoint {
        use Endpoint as E;
        let has = |flag: &str| query.contains_key(flag);
        let by_method = |get, put, delete| match *method {
            Method::GET => get,
            Method::PUT => put,
            Method::DELETE => delete,
            _ => E::Unsupported(Level::Bucket),
        };
        if *method == Method::OPTIONS {
            return E::Preflight;
        }
        if !bucket {
            return match *method {
                Method::GET => E::ListBuckets,
                _ => E::Unsupported(Level::Service),
            };
        }
        if !key {
            return match *method {
                Method::PUT if query.is_empty() => E::CreateBucket,
                Method::DELETE if query.is_empty() => E::DeleteBucket,
                Method::HEAD => E::HeadBucket,
                Method::GET if has("location") => E::GetBucketLocation,
                Method::GET if has("versioning") => E::GetBucketVersioning,
                Method::PUT if has("versioning") => E::PutBucketVersioning,
                Method::GET if has("versions") => E::ListObjectVersions,
                Method::GET if has("object-lock") => E::GetObjectLockConfiguration,
                Method::PUT if has("object-lock") => E::PutObjectLockConfiguration,
                Method::GET if has("acl") => E::GetBucketAcl,
                Method::PUT if has("acl") => E::PutBucketAcl,
                Method::GET if has("policyStatus") => E::GetBucketPolicyStatus,
                _ if has("policy") => by_method(
                    E::GetBucketPolicy,
                    E::PutBucketPolicy,
                    E::DeleteBucketPolicy,
                ),
                _ if has("publicAccessBlock") => by_method(
                    E::GetPublicAccessBlock,
                    E::PutPublicAccessBlock,
                    E::DeletePublicAccessBlock,
                ),
                Method::GET if query.get("list-type").map(String::as_str) == Some("2") => {
                    E::ListObjectsV2
                }
                Method::GET if bucket_subresource(query).is_none() => E::ListObjects,
                Method::POST if has("delete") => E::DeleteObjects,
                Method::POST if bucket_subresource(query).is_none() && is_form(headers) => {
                    E::PostObject
                }
                Method::GET if has("uploads") => E::ListMultipartUploads,
                _ if has("website") => by_method(
                    E::GetBucketWebsite,
                    E::PutBucketWebsite,
                    E::DeleteBucketWebsite,
                ),
                _ if has("cors") => {
                    by_method(E::GetBucketCors, E::PutBucketCors, E::DeleteBucketCors)
                }
                _ if has("lifecycle") => by_method(
                    E::GetBucketLifecycleConfiguration,
                    E::PutBucketLifecycleConfiguration,
                    E::DeleteBucketLifecycleConfiguration,
                ),
                _ if has("tagging") => by_method(
                    E::GetBucketTagging,
                    E::PutBucketTagging,
                    E::DeleteBucketTagging,
                ),
                _ => E::Unsupported(Level::Bucket),
            };
        }
        let copy = headers.contains_key("x-amz-copy-source");
        let plain = subresource(OBJECT_SUBRESOURCES, query).is_none();
        match *method {
            Method::GET if has("acl") => E::GetObjectAcl,
            Method::PUT if has("acl") => E::PutObjectAcl,
            Method::GET if has("tagging") => E::GetObjectTagging,
            Method::PUT if has("tagging") => E::PutObjectTagging,
            Method::DELETE if has("tagging") => E::DeleteObjectTagging,
            Method::GET if has("attributes") => E::GetObjectAttributes,
            Method::GET if has("retention") => E::GetObjectRetention,
            Method::PUT if has("retention") => E::PutObjectRetention,
            Method::GET if has("legal-hold") => E::GetObjectLegalHold,
            Method::PUT if has("legal-hold") => E::PutObjectLegalHold,
            Method::POST if has("uploads") => E::CreateMultipartUpload,
            Method::PUT if has("uploadId") && has("partNumber") && copy => E::UploadPartCopy,
            Method::PUT if has("uploadId") && has("partNumber") => E::UploadPart,
            Method::POST if has("uploadId") => E::CompleteMultipartUpload,
            Method::DELETE if has("uploadId") => E::AbortMultipartUpload,
            Method::GET if has("uploadId") => E::ListParts,
            Method::PUT if copy => E::CopyObject,
            Method::PUT if query.is_empty() || has("x-id") => E::PutObject,
            Method::GET if plain => E::GetObject,
            Method::HEAD => E::HeadObject,
            Method::DELETE if plain => E::DeleteObject,
            _ => E::Unsupported(Level::Object),
        }
    }

    /// The operation's name, as AWS names it (the `op` label of metrics).
    pub(crate) fn name(self) -> &'static str {
        use Endpoint as E;
        match self {
            E::ListBuckets => "ListBuckets",
            E::CreateBucket => "CreateBucket",
            E::DeleteBucket => "DeleteBucket",
            E::HeadBucket => "HeadBucket",
            E::GetBucketLocation => "GetBucketLocation",
            E::GetBucketVersioning => "GetBucketVersioning",
            E::PutBucketVersioning => "PutBucketVersioning",
            E::ListObjectVersions => "ListObjectVersions",
            E::GetObjectLockConfiguration => "GetObjectLockConfiguration",
            E::PutObjectLockConfiguration => "PutObjectLockConfiguration",
            E::GetObjectRetention => "GetObjectRetention",
            E::PutObjectRetention => "PutObjectRetention",
            E::GetObjectLegalHold => "GetObjectLegalHold",
            E::PutObjectLegalHold => "PutObjectLegalHold",
            E::GetBucketAcl => "GetBucketAcl",
            E::ListObjects => "ListObjects",
            E::ListObjectsV2 => "ListObjectsV2",
            E::DeleteObjects => "DeleteObjects",
            E::ListMultipartUploads => "ListMultipartUploads",
            E::GetBucketWebsite => "GetBucketWebsite",
            E::PutBucketWebsite => "PutBucketWebsite",
            E::DeleteBucketWebsite => "DeleteBucketWebsite",
            E::GetBucketCors => "GetBucketCors",
            E::PutBucketCors => "PutBucketCors",
            E::DeleteBucketCors => "DeleteBucketCors",
            E::GetBucketLifecycleConfiguration => "GetBucketLifecycleConfiguration",
            E::PutBucketLifecycleConfiguration => "PutBucketLifecycleConfiguration",
            E::DeleteBucketLifecycleConfiguration => "DeleteBucketLifecycleConfiguration",
            E::CreateMultipartUpload => "CreateMultipartUpload",
            E::UploadPart => "UploadPart",
            E::UploadPartCopy => "UploadPartCopy",
            E::CompleteMultipartUpload => "CompleteMultipartUpload",
            E::AbortMultipartUpload => "AbortMultipartUpload",
            E::ListParts => "ListParts",
            E::CopyObject => "CopyObject",
            E::PutObject => "PutObject",
            E::GetObject => "GetObject",
            E::HeadObject => "HeadObject",
            E::DeleteObject => "DeleteObject",
            E::GetObjectAcl => "GetObjectAcl",
            E::GetBucketTagging => "GetBucketTagging",
            E::PutBucketTagging => "PutBucketTagging",
            E::DeleteBucketTagging => "DeleteBucketTagging",
            E::GetObjectTagging => "GetObjectTagging",
            E::PutObjectTagging => "PutObjectTagging",
            E::DeleteObjectTagging => "DeleteObjectTagging",
            E::GetObjectAttributes => "GetObjectAttributes",
            E::PutBucketAcl => "PutBucketAcl",
            E::PutObjectAcl => "PutObjectAcl",
            E::GetBucketPolicy => "GetBucketPolicy",
            E::PutBucketPolicy => "PutBucketPolicy",
            E::DeleteBucketPolicy => "DeleteBucketPolicy",
            E::GetBucketPolicyStatus => "GetBucketPolicyStatus",
            E::GetPublicAccessBlock => "GetPublicAccessBlock",
            E::PutPublicAccessBlock => "PutPublicAccessBlock",
            E::DeletePublicAccessBlock => "DeletePublicAccessBlock",
            E::PostObject => "PostObject",
            E::Preflight => "Preflight",
            E::Unsupported(_) => "Unsupported",
        }
    }

    /// Every operation served, for the README check.
    pub const SERVED: &'static [Endpoint] = {
        use Endpoint as E;
        &[
            E::ListBuckets,
            E::CreateBucket,
            E::DeleteBucket,
            E::HeadBucket,
            E::GetBucketLocation,
            E::GetBucketVersioning,
            E::PutBucketVersioning,
            E::ListObjectVersions,
            E::GetObjectLockConfiguration,
            E::PutObjectLockConfiguration,
            E::GetObjectRetention,
            E::PutObjectRetention,
            E::GetObjectLegalHold,
            E::PutObjectLegalHold,
            E::GetBucketAcl,
            E::ListObjects,
            E::ListObjectsV2,
            E::DeleteObjects,
            E::ListMultipartUploads,
            E::GetBucketWebsite,
            E::PutBucketWebsite,
            E::DeleteBucketWebsite,
            E::GetBucketCors,
            E::PutBucketCors,
            E::DeleteBucketCors,
            E::GetBucketLifecycleConfiguration,
            E::PutBucketLifecycleConfiguration,
            E::DeleteBucketLifecycleConfiguration,
            E::CreateMultipartUpload,
            E::UploadPart,
            E::UploadPartCopy,
            E::CompleteMultipartUpload,
            E::AbortMultipartUpload,
            E::ListParts,
            E::CopyObject,
            E::PutObject,
            E::GetObject,
            E::HeadObject,
            E::DeleteObject,
            E::GetObjectAcl,
            E::GetBucketTagging,
            E::PutBucketTagging,
            E::DeleteBucketTagging,
            E::GetObjectTagging,
            E::PutObjectTagging,
            E::DeleteObjectTagging,
            E::GetObjectAttributes,
            E::PutBucketAcl,
            E::PutObjectAcl,
            E::GetBucketPolicy,
            E::PutBucketPolicy,
            E::DeleteBucketPolicy,
            E::GetBucketPolicyStatus,
            E::GetPublicAccessBlock,
            E::PutPublicAccessBlock,
            E::DeletePublicAccessBlock,
            E::PostObject,
        ]
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(m: Method, bucket: bool, key: bool, q: &str, copy: bool) -> &'static str {
        let query = super::super::server::url_pairs(q).into_iter().collect();
        let mut h = HeaderMap::new();
        if copy {
            h.insert(
                "x-amz-copy-source",
                http::HeaderValue::from_static("/b/src"),
            );
        }
        Endpoint::of(&m, bucket, key, &query, &h).name()
    }

    #[test]
    fn requests_are_named_by_their_s3_operation() {
        assert_eq!(of(Method::GET, false, false, "", false), "ListBuckets");
        assert_eq!(of(Method::PUT, true, true, "", false), "PutObject");
        assert_eq!(of(Method::PUT, true, true, "", true), "CopyObject");
        assert_eq!(
            of(Method::PUT, true, true, "partNumber=2&uploadId=ab", false),
            "UploadPart"
        );
        assert_eq!(
            of(Method::PUT, true, true, "partNumber=2&uploadId=ab", true),
            "UploadPartCopy"
        );
        assert_eq!(
            of(Method::POST, true, true, "uploads", false),
            "CreateMultipartUpload"
        );
        assert_eq!(
            of(Method::POST, true, true, "uploadId=ab", false),
            "CompleteMultipartUpload"
        );
        assert_eq!(
            of(Method::DELETE, true, true, "uploadId=ab", false),
            "AbortMultipartUpload"
        );
        assert_eq!(
            of(Method::GET, true, false, "list-type=2&prefix=a", false),
            "ListObjectsV2"
        );
        // Listings named by what they are, whatever parameters they carry
        // (metrics once called these "BucketOther").
        assert_eq!(
            of(Method::GET, true, false, "prefix=a", false),
            "ListObjects"
        );
        assert_eq!(
            of(Method::GET, true, false, "delimiter=%2F", false),
            "ListObjects"
        );
        assert_eq!(
            of(Method::GET, true, false, "max-keys=5", false),
            "ListObjects"
        );
        // A value that merely starts like a flag is not that flag.
        assert_eq!(
            of(Method::GET, true, true, "uploadIdx=1", false),
            "GetObject"
        );
        assert_eq!(
            of(Method::POST, true, false, "delete", false),
            "DeleteObjects"
        );
        assert_eq!(of(Method::PUT, true, false, "cors", false), "PutBucketCors");
        assert_eq!(
            of(Method::DELETE, true, false, "lifecycle", false),
            "DeleteBucketLifecycleConfiguration"
        );
        assert_eq!(
            of(Method::GET, true, true, "tagging", false),
            "GetObjectTagging"
        );
        assert_eq!(
            of(Method::DELETE, true, false, "tagging", false),
            "DeleteBucketTagging"
        );
        assert_eq!(of(Method::GET, true, true, "torrent", false), "Unsupported");
        assert_eq!(
            of(Method::GET, true, false, "policy", false),
            "GetBucketPolicy"
        );
        assert_eq!(
            of(Method::GET, true, false, "policyStatus", false),
            "GetBucketPolicyStatus"
        );
        assert_eq!(
            of(Method::GET, true, false, "logging", false),
            "Unsupported"
        );
        assert_eq!(of(Method::OPTIONS, true, true, "", false), "Preflight");
    }

    #[test]
    fn the_readme_names_every_operation_served() {
        let readme = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
        )
        .expect("README.md");
        // The rows of the table of operations that say what is served,
        // with "Put/Get/DeleteX" spelled out.
        let mut named = Vec::new();
        for row in readme.lines().filter(|l| {
            l.starts_with("| ") && (l.contains("| supported |") || l.contains("| partial |"))
        }) {
            let first = row.split('|').nth(1).unwrap_or_default();
            for name in first.split(',').map(str::trim) {
                let name = name.split_whitespace().next().unwrap_or_default();
                match name.strip_prefix("Put/Get/Delete") {
                    Some(rest) => {
                        for verb in ["Put", "Get", "Delete"] {
                            named.push(format!("{verb}{rest}"));
                        }
                    }
                    None => named.push(name.to_string()),
                }
            }
        }
        let missing: Vec<&str> = Endpoint::SERVED
            .iter()
            .map(|e| e.name())
            .filter(|n| !named.iter().any(|m| m == n))
            .collect();
        assert!(
            missing.is_empty(),
            "operations served but not in README's table: {missing:?}"
        );
    }
}
