//! Who may do what: a request's effective permission on a bucket, from
//! Hangar's per-key permissions (`hangar bucket allow`), the bucket's ACL,
//! its policy and its Block Public Access settings; and the S3 ACL
//! operations (canned ACLs, `x-amz-grant-*` headers, the
//! AccessControlPolicy document).
//!
//! The order is AWS's: an explicit Deny in the bucket policy refuses,
//! whatever else allows; otherwise a key's own permission, a policy Allow
//! or an ACL grant allows. ACL grants to everyone or to every
//! authenticated key are ignored with `IgnorePublicAcls`, policy
//! statements that allow everyone with `RestrictPublicBuckets`.
//!
//! Handlers keep asking `r.permission(&bucket)` for the read, write or
//! owner permission they need; what the ACL and the policy allow is
//! folded into the flag the request's S3 action needs (`action_class`),
//! for that action only.

use hangar_common::clock::timestamp_ms;
use hangar_common::crdt::Lww;
use http::{HeaderMap, Response, StatusCode};
use serde::Deserialize;

use super::endpoint::Endpoint;
use super::error::S3Error;
use super::policy::{Policy, Verdict};
use super::server::{Body, S3Request, S3Server, empty, xml_response};
use super::xml::Xml;
use crate::model::tables::*;

const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
const AUTHENTICATED_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";

/// The IAM action name of an operation (what policies name).
pub(crate) fn action(e: Endpoint) -> &'static str {
    use Endpoint as E;
    match e {
        E::ListBuckets => "s3:ListAllMyBuckets",
        E::CreateBucket => "s3:CreateBucket",
        E::DeleteBucket => "s3:DeleteBucket",
        E::HeadBucket | E::ListObjects | E::ListObjectsV2 => "s3:ListBucket",
        E::GetBucketLocation => "s3:GetBucketLocation",
        E::GetBucketVersioning => "s3:GetBucketVersioning",
        E::PutBucketVersioning => "s3:PutBucketVersioning",
        E::ListObjectVersions => "s3:ListBucketVersions",
        E::GetObjectLockConfiguration => "s3:GetBucketObjectLockConfiguration",
        E::PutObjectLockConfiguration => "s3:PutBucketObjectLockConfiguration",
        E::GetObjectRetention => "s3:GetObjectRetention",
        E::PutObjectRetention => "s3:PutObjectRetention",
        E::GetObjectLegalHold => "s3:GetObjectLegalHold",
        E::PutObjectLegalHold => "s3:PutObjectLegalHold",
        E::GetBucketAcl => "s3:GetBucketAcl",
        E::PutBucketAcl => "s3:PutBucketAcl",
        E::DeleteObjects | E::DeleteObject => "s3:DeleteObject",
        E::ListMultipartUploads => "s3:ListBucketMultipartUploads",
        E::GetBucketWebsite => "s3:GetBucketWebsite",
        E::PutBucketWebsite => "s3:PutBucketWebsite",
        E::DeleteBucketWebsite => "s3:DeleteBucketWebsite",
        E::GetBucketCors => "s3:GetBucketCORS",
        E::PutBucketCors | E::DeleteBucketCors => "s3:PutBucketCORS",
        E::GetBucketLifecycleConfiguration => "s3:GetLifecycleConfiguration",
        E::PutBucketLifecycleConfiguration | E::DeleteBucketLifecycleConfiguration => {
            "s3:PutLifecycleConfiguration"
        }
        E::CreateMultipartUpload
        | E::UploadPart
        | E::UploadPartCopy
        | E::CompleteMultipartUpload
        | E::CopyObject
        | E::PutObject
        | E::PostObject => "s3:PutObject",
        E::AbortMultipartUpload => "s3:AbortMultipartUpload",
        E::ListParts => "s3:ListMultipartUploadParts",
        E::GetObject | E::HeadObject => "s3:GetObject",
        E::GetObjectAcl => "s3:GetObjectAcl",
        E::PutObjectAcl => "s3:PutObjectAcl",
        E::GetBucketTagging => "s3:GetBucketTagging",
        E::PutBucketTagging | E::DeleteBucketTagging => "s3:PutBucketTagging",
        E::GetObjectTagging => "s3:GetObjectTagging",
        E::PutObjectTagging => "s3:PutObjectTagging",
        E::DeleteObjectTagging => "s3:DeleteObjectTagging",
        E::GetObjectAttributes => "s3:GetObjectAttributes",
        E::GetBucketPolicy => "s3:GetBucketPolicy",
        E::PutBucketPolicy => "s3:PutBucketPolicy",
        E::DeleteBucketPolicy => "s3:DeleteBucketPolicy",
        E::GetBucketPolicyStatus => "s3:GetBucketPolicyStatus",
        E::GetPublicAccessBlock => "s3:GetBucketPublicAccessBlock",
        E::PutPublicAccessBlock | E::DeletePublicAccessBlock => "s3:PutBucketPublicAccessBlock",
        E::Preflight | E::Unsupported(_) => "s3:Unsupported",
    }
}

/// The action of a request that names a version (`versionId`): S3 has
/// its own names for those, so a policy can allow or deny reaching older
/// versions apart from the current one.
pub(crate) fn versioned_action(action: &'static str) -> &'static str {
    match action {
        "s3:GetObject" => "s3:GetObjectVersion",
        "s3:DeleteObject" => "s3:DeleteObjectVersion",
        "s3:GetObjectAcl" => "s3:GetObjectVersionAcl",
        "s3:PutObjectAcl" => "s3:PutObjectVersionAcl",
        "s3:GetObjectTagging" => "s3:GetObjectVersionTagging",
        "s3:PutObjectTagging" => "s3:PutObjectVersionTagging",
        "s3:DeleteObjectTagging" => "s3:DeleteObjectVersionTagging",
        other => other,
    }
}

/// Which of Hangar's permissions an action needs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Class {
    Read,
    Write,
    Owner,
}

pub(crate) fn action_class(action: &str) -> Class {
    match action {
        a if a.starts_with("s3:Get") || a.starts_with("s3:List") => Class::Read,
        "s3:PutObject"
        | "s3:DeleteObject"
        | "s3:DeleteObjectVersion"
        | "s3:AbortMultipartUpload"
        | "s3:PutObjectTagging"
        | "s3:PutObjectVersionTagging"
        | "s3:DeleteObjectTagging"
        | "s3:DeleteObjectVersionTagging"
        | "s3:PutObjectRetention"
        | "s3:PutObjectLegalHold"
        | "s3:PutObjectAcl"
        | "s3:PutObjectVersionAcl" => Class::Write,
        _ => Class::Owner,
    }
}

/// What a bucket ACL grant must give for an action (object reads are the
/// object ACL's, see [`object_acl_allows`]).
fn bucket_acl_need(action: &str) -> Option<AclPermission> {
    match action {
        "s3:ListBucket" | "s3:ListBucketVersions" | "s3:ListBucketMultipartUploads" => {
            Some(AclPermission::Read)
        }
        "s3:PutObject"
        | "s3:DeleteObject"
        | "s3:DeleteObjectVersion"
        | "s3:AbortMultipartUpload" => Some(AclPermission::Write),
        "s3:GetBucketAcl" => Some(AclPermission::ReadAcp),
        "s3:PutBucketAcl" => Some(AclPermission::WriteAcp),
        _ => None,
    }
}

/// Who is asking.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Principal<'a> {
    Anonymous,
    Key(&'a str),
}

fn is_public(g: &Grant) -> bool {
    matches!(g.grantee, Grantee::AllUsers | Grantee::AuthenticatedUsers)
}

/// Whether `acl` grants `need` to `who`.
pub(crate) fn acl_allows(
    acl: &Acl,
    who: Principal,
    need: AclPermission,
    ignore_public: bool,
) -> bool {
    acl.iter().any(|g| {
        let applies = match (&g.grantee, who) {
            (Grantee::AllUsers, _) => !ignore_public,
            (Grantee::AuthenticatedUsers, Principal::Key(_)) => !ignore_public,
            (Grantee::Key(id), Principal::Key(k)) => id == k,
            _ => false,
        };
        applies && (g.permission == need || g.permission == AclPermission::FullControl)
    })
}

/// The parsed policy of a bucket (a stored one always parses; one that
/// no longer would is ignored, with a warning).
pub(crate) fn bucket_policy(bucket: &Bucket) -> Option<Policy> {
    let text = bucket.policy.value.as_deref()?;
    match Policy::parse(text, &bucket.name) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!("bucket {:?}: stored policy ignored: {e}", bucket.name);
            None
        }
    }
}

/// Who asks, as access decisions need it (borrowed from a request, or
/// from copies kept once its body is read).
pub(crate) struct Requester<'a> {
    pub anonymous: bool,
    pub key: &'a Key,
    pub remote: std::net::SocketAddr,
    pub query: &'a std::collections::BTreeMap<String, String>,
    pub headers: &'a HeaderMap,
}

impl S3Request {
    pub(crate) fn requester(&self) -> Requester<'_> {
        Requester {
            anonymous: self.anonymous,
            key: &self.api_key,
            remote: self.remote,
            query: &self.query,
            headers: self.req.headers(),
        }
    }

    pub(crate) fn principal(&self) -> Principal<'_> {
        self.requester().principal()
    }

    /// The request's S3 action.
    pub(crate) fn action(&self) -> &'static str {
        let plain = action(self.endpoint);
        if self.query.contains_key("versionId") {
            versioned_action(plain)
        } else {
            plain
        }
    }

    /// The request's effective permission on `bucket`, for its own action
    /// on its own object (if any).
    pub(crate) fn permission(&self, bucket: &Bucket) -> Permission {
        let key = if bucket.name.as_str() == self.bucket.as_deref().unwrap_or_default() {
            self.key.as_deref()
        } else {
            None
        };
        self.permission_for(bucket, self.action(), key)
    }

    pub(crate) fn permission_for(
        &self,
        bucket: &Bucket,
        action: &str,
        object: Option<&str>,
    ) -> Permission {
        self.requester().permission_for(bucket, action, object)
    }

    pub(crate) fn policy_denies(
        &self,
        bucket: &Bucket,
        action: &str,
        object: Option<&str>,
    ) -> bool {
        self.requester().policy_denies(bucket, action, object)
    }
}

impl<'a> Requester<'a> {
    pub(crate) fn principal(&self) -> Principal<'a> {
        if self.anonymous {
            Principal::Anonymous
        } else {
            Principal::Key(&self.key.id)
        }
    }

    /// The effective permission for `action` on `bucket` (and `object`).
    pub(crate) fn permission_for(
        &self,
        bucket: &Bucket,
        action: &str,
        object: Option<&str>,
    ) -> Permission {
        let mut p = if self.anonymous {
            Permission::default()
        } else {
            self.key.permission(&bucket.id)
        };
        if bucket.policy.value.is_none() && bucket.acl.value.is_empty() {
            return p;
        }
        let block = bucket.public_access_block.value.unwrap_or_default();
        let mut granted = false;
        if let Some(policy) = bucket_policy(bucket) {
            match self
                .policy_request(bucket, action, object)
                .evaluate(&policy, block.restrict_public_buckets)
            {
                Verdict::Deny => return Permission::default(),
                Verdict::Allow => granted = true,
                Verdict::Silent => {}
            }
        }
        if let Some(need) = bucket_acl_need(action)
            && acl_allows(
                &bucket.acl.value,
                self.principal(),
                need,
                block.ignore_public_acls,
            )
        {
            granted = true;
        }
        if granted {
            match action_class(action) {
                Class::Read => p.read = true,
                Class::Write => p.write = true,
                Class::Owner => p.owner = true,
            }
        }
        p
    }

    /// Whether the bucket policy explicitly denies `action` on `object`.
    pub(crate) fn policy_denies(
        &self,
        bucket: &Bucket,
        action: &str,
        object: Option<&str>,
    ) -> bool {
        bucket_policy(bucket).is_some_and(|p| {
            self.policy_request(bucket, action, object)
                .evaluate(&p, false)
                == Verdict::Deny
        })
    }

    /// The request as a policy sees it.
    fn policy_request<'b>(
        &'b self,
        bucket: &Bucket,
        action: &'b str,
        object: Option<&str>,
    ) -> OwnedPolicyRequest<'b> {
        let resource = match object {
            Some(k) => format!("arn:aws:s3:::{}/{k}", bucket.name),
            None => format!("arn:aws:s3:::{}", bucket.name),
        };
        let mut values: Vec<(&'static str, String)> = vec![
            ("aws:sourceip", self.remote.ip().to_string()),
            // Hangar serves plain HTTP (TLS, if any, ends at a proxy in
            // front, which Hangar cannot vouch for).
            ("aws:securetransport", "false".to_string()),
        ];
        for (name, header) in [
            ("aws:referer", "referer"),
            ("aws:useragent", "user-agent"),
            ("s3:x-amz-acl", "x-amz-acl"),
        ] {
            if let Some(v) = self.headers.get(header).and_then(|v| v.to_str().ok()) {
                values.push((name, v.to_string()));
            }
        }
        for (name, param) in [
            ("s3:prefix", "prefix"),
            ("s3:delimiter", "delimiter"),
            ("s3:max-keys", "max-keys"),
            ("s3:versionid", "versionId"),
        ] {
            if let Some(v) = self.query.get(param) {
                values.push((name, v.clone()));
            }
        }
        if !self.anonymous {
            values.push(("aws:username", self.key.name.value.clone()));
        }
        OwnedPolicyRequest {
            key_id: (!self.anonymous).then_some(self.key.id.as_str()),
            action,
            resource,
            values,
        }
    }
}

/// A [`super::policy::Request`] with its strings owned.
struct OwnedPolicyRequest<'a> {
    key_id: Option<&'a str>,
    action: &'a str,
    resource: String,
    values: Vec<(&'static str, String)>,
}

impl OwnedPolicyRequest<'_> {
    fn evaluate(&self, policy: &Policy, ignore_public: bool) -> Verdict {
        policy.evaluate(
            &super::policy::Request {
                key_id: self.key_id,
                action: self.action,
                resource: &self.resource,
                values: &self.values,
            },
            ignore_public,
        )
    }
}

/// Whether an object version's ACL grants `need` to the request's
/// principal (the bucket's Block Public Access settings applied).
pub(crate) fn object_acl_allows(
    r: &S3Request,
    bucket: &Bucket,
    v: &ObjectVersion,
    need: AclPermission,
) -> bool {
    let block = bucket.public_access_block.value.unwrap_or_default();
    v.acl
        .as_ref()
        .is_some_and(|a| acl_allows(&a.value, r.principal(), need, block.ignore_public_acls))
}

// ------------------------------------------------------------ ACL input

fn invalid_argument(msg: impl Into<String>) -> S3Error {
    S3Error::new("InvalidArgument", StatusCode::BAD_REQUEST, msg)
}

/// The grants of a canned ACL (`x-amz-acl`), beyond the owner's.
pub(crate) fn canned(name: &str) -> Result<Acl, S3Error> {
    let g = |grantee, permission| Grant {
        grantee,
        permission,
    };
    Ok(match name.trim() {
        // The bucket owner has full control anyway; log delivery and EC2
        // bundles are not things Hangar has.
        "private"
        | "bucket-owner-read"
        | "bucket-owner-full-control"
        | "log-delivery-write"
        | "aws-exec-read" => Vec::new(),
        "public-read" => vec![g(Grantee::AllUsers, AclPermission::Read)],
        "public-read-write" => vec![
            g(Grantee::AllUsers, AclPermission::Read),
            g(Grantee::AllUsers, AclPermission::Write),
        ],
        "authenticated-read" => vec![g(Grantee::AuthenticatedUsers, AclPermission::Read)],
        other => return Err(invalid_argument(format!("unknown canned ACL {other:?}"))),
    })
}

fn grantee_of_uri(uri: &str) -> Result<Grantee, S3Error> {
    match uri.trim() {
        ALL_USERS => Ok(Grantee::AllUsers),
        AUTHENTICATED_USERS => Ok(Grantee::AuthenticatedUsers),
        other => Err(invalid_argument(format!(
            "unsupported grantee group {other:?}: AllUsers or AuthenticatedUsers"
        ))),
    }
}

/// The grants of `x-amz-grant-*` headers (`id="KEY", uri="..."`).
fn grant_headers(h: &HeaderMap) -> Result<Option<Acl>, S3Error> {
    let mut acl = Vec::new();
    let mut any = false;
    for (header, permission) in [
        ("x-amz-grant-read", AclPermission::Read),
        ("x-amz-grant-write", AclPermission::Write),
        ("x-amz-grant-read-acp", AclPermission::ReadAcp),
        ("x-amz-grant-write-acp", AclPermission::WriteAcp),
        ("x-amz-grant-full-control", AclPermission::FullControl),
    ] {
        for v in h.get_all(header) {
            any = true;
            let v = v
                .to_str()
                .map_err(|_| invalid_argument(format!("{header} is not ASCII")))?;
            for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (kind, value) = item.split_once('=').ok_or_else(|| {
                    invalid_argument(format!("{header}: {item:?} is not type=value"))
                })?;
                let value = value.trim().trim_matches('"');
                let grantee = match kind.trim().to_ascii_lowercase().as_str() {
                    "id" => Grantee::Key(value.to_string()),
                    "uri" => grantee_of_uri(value)?,
                    "emailaddress" => {
                        return Err(S3Error::new(
                            "UnresolvableGrantByEmailAddress",
                            StatusCode::BAD_REQUEST,
                            "Hangar's grantees are access key ids or groups, not email addresses",
                        ));
                    }
                    other => {
                        return Err(invalid_argument(format!(
                            "{header}: unknown grantee type {other:?}"
                        )));
                    }
                };
                acl.push(Grant {
                    grantee,
                    permission,
                });
            }
        }
    }
    Ok(any.then_some(acl))
}

/// The ACL a write's headers ask for: `x-amz-acl` or `x-amz-grant-*`
/// (not both), None if neither.
pub(crate) fn acl_from_headers(h: &HeaderMap) -> Result<Option<Acl>, S3Error> {
    let canned_acl = h.get("x-amz-acl").map(|v| v.to_str().unwrap_or("?"));
    let grants = grant_headers(h)?;
    match (canned_acl, grants) {
        (Some(_), Some(_)) => Err(invalid_argument(
            "Specifying both Canned ACLs and Header Grants is not allowed",
        )),
        (Some(c), None) => canned(c).map(Some),
        (None, g) => Ok(g),
    }
}

/// Refuse an ACL that Block Public Access blocks.
pub(crate) fn check_public_acl(bucket: &Bucket, acl: &Acl) -> Result<(), S3Error> {
    let block = bucket.public_access_block.value.unwrap_or_default();
    if block.block_public_acls && acl.iter().any(is_public) {
        return Err(S3Error::access_denied(
            "this bucket's Block Public Access settings refuse public ACLs (BlockPublicAcls)",
        ));
    }
    Ok(())
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PolicyXml {
    #[serde(rename = "AccessControlList")]
    list: ListXml,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ListXml {
    #[serde(rename = "Grant")]
    grants: Vec<GrantXml>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GrantXml {
    #[serde(rename = "Grantee")]
    grantee: GranteeXml,
    #[serde(rename = "Permission")]
    permission: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GranteeXml {
    #[serde(rename = "ID")]
    id: Option<String>,
    #[serde(rename = "URI")]
    uri: Option<String>,
    #[serde(rename = "EmailAddress")]
    email: Option<String>,
}

/// The grants of an AccessControlPolicy document, without those to the
/// owner (whose full control is implicit).
pub(crate) fn parse_acl(body: &[u8], owner: Option<&str>) -> Result<Acl, S3Error> {
    let doc: PolicyXml = super::bucket_config::parse(body, "AccessControlPolicy")?;
    let mut acl = Vec::new();
    for g in doc.list.grants {
        let permission = match g.permission.trim() {
            "READ" => AclPermission::Read,
            "WRITE" => AclPermission::Write,
            "READ_ACP" => AclPermission::ReadAcp,
            "WRITE_ACP" => AclPermission::WriteAcp,
            "FULL_CONTROL" => AclPermission::FullControl,
            other => {
                return Err(S3Error::new(
                    "MalformedACLError",
                    StatusCode::BAD_REQUEST,
                    format!("unknown permission {other:?}"),
                ));
            }
        };
        let grantee = match (g.grantee.id, g.grantee.uri, g.grantee.email) {
            (Some(id), None, None) => Grantee::Key(id.trim().to_string()),
            (None, Some(uri), None) => grantee_of_uri(&uri)?,
            (None, None, Some(_)) => {
                return Err(S3Error::new(
                    "UnresolvableGrantByEmailAddress",
                    StatusCode::BAD_REQUEST,
                    "Hangar's grantees are access key ids or groups, not email addresses",
                ));
            }
            _ => {
                return Err(S3Error::new(
                    "MalformedACLError",
                    StatusCode::BAD_REQUEST,
                    "each Grantee needs one ID or URI",
                ));
            }
        };
        if matches!((&grantee, owner), (Grantee::Key(id), Some(o)) if id == o)
            && permission == AclPermission::FullControl
        {
            continue;
        }
        let grant = Grant {
            grantee,
            permission,
        };
        if !acl.contains(&grant) {
            acl.push(grant);
        }
    }
    Ok(acl)
}

fn permission_name(p: AclPermission) -> &'static str {
    match p {
        AclPermission::Read => "READ",
        AclPermission::Write => "WRITE",
        AclPermission::ReadAcp => "READ_ACP",
        AclPermission::WriteAcp => "WRITE_ACP",
        AclPermission::FullControl => "FULL_CONTROL",
    }
}

/// An AccessControlPolicy document: the owner (id and display name), its
/// full control, then the grants.
pub(crate) fn acl_xml(owner: (&str, &str), acl: &Acl, names: &dyn Fn(&str) -> String) -> String {
    let mut x = Xml::new("AccessControlPolicy");
    x.open("Owner")
        .elem("ID", owner.0)
        .elem("DisplayName", owner.1)
        .close("Owner")
        .open("AccessControlList");
    let owner_grant = Grant {
        grantee: Grantee::Key(owner.0.to_string()),
        permission: AclPermission::FullControl,
    };
    for g in std::iter::once(&owner_grant).chain(acl) {
        x.open("Grant");
        match &g.grantee {
            Grantee::Key(id) => {
                x.buf.push_str(
                    "<Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"CanonicalUser\">",
                );
                let name = if id == owner.0 {
                    owner.1.to_string()
                } else {
                    names(id)
                };
                x.elem("ID", id).elem("DisplayName", &name);
            }
            Grantee::AllUsers | Grantee::AuthenticatedUsers => {
                x.buf.push_str(
                    "<Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"Group\">",
                );
                let uri = if g.grantee == Grantee::AllUsers {
                    ALL_USERS
                } else {
                    AUTHENTICATED_USERS
                };
                x.elem("URI", uri);
            }
        }
        x.close("Grantee")
            .elem("Permission", permission_name(g.permission))
            .close("Grant");
    }
    x.close("AccessControlList");
    x.finish("AccessControlPolicy")
}

/// Why a bucket is public, if it is (for operators): its ACL, its policy.
pub(crate) fn public_reasons(bucket: &Bucket) -> Vec<String> {
    let block = bucket.public_access_block.value.unwrap_or_default();
    let mut why = Vec::new();
    if !block.ignore_public_acls {
        for g in bucket.acl.value.iter().filter(|g| is_public(g)) {
            let who = if g.grantee == Grantee::AllUsers {
                "everyone"
            } else {
                "any key"
            };
            why.push(format!("ACL: {who} may {}", permission_name(g.permission)));
        }
    }
    if !block.restrict_public_buckets && bucket_policy(bucket).is_some_and(|p| p.is_public()) {
        why.push("policy: allows everyone".to_string());
    }
    why
}

// ------------------------------------------------------------ handlers

fn owner_only(what: &str) -> S3Error {
    S3Error::access_denied(format!(
        "only a key with the owner permission may change a bucket's {what}"
    ))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PublicAccessBlockXml {
    #[serde(rename = "BlockPublicAcls")]
    block_public_acls: Option<bool>,
    #[serde(rename = "IgnorePublicAcls")]
    ignore_public_acls: Option<bool>,
    #[serde(rename = "BlockPublicPolicy")]
    block_public_policy: Option<bool>,
    #[serde(rename = "RestrictPublicBuckets")]
    restrict_public_buckets: Option<bool>,
}

/// Parse a PublicAccessBlockConfiguration document (absent settings: off).
pub(crate) fn parse_public_access_block(body: &[u8]) -> Result<PublicAccessBlock, S3Error> {
    let d: PublicAccessBlockXml =
        super::bucket_config::parse(body, "PublicAccessBlockConfiguration")?;
    Ok(PublicAccessBlock {
        block_public_acls: d.block_public_acls.unwrap_or(false),
        ignore_public_acls: d.ignore_public_acls.unwrap_or(false),
        block_public_policy: d.block_public_policy.unwrap_or(false),
        restrict_public_buckets: d.restrict_public_buckets.unwrap_or(false),
    })
}

/// What a request about a bucket setting needs: to read it, the read or
/// owner permission (or what the policy grants for the action); to
/// change it, the owner permission.
fn check_setting(r: &S3Request, p: Permission, what: &str) -> Result<(), S3Error> {
    let reading = *r.req.method() == http::Method::GET;
    if p.owner || (reading && p.read) {
        Ok(())
    } else if reading {
        Err(S3Error::access_denied(format!(
            "this key may not read this bucket's {what}"
        )))
    } else {
        Err(owner_only(what))
    }
}

fn no_content() -> Response<Body> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

impl S3Server {
    /// The ACL a write (PutObject, CopyObject, CreateMultipartUpload,
    /// CreateBucket) asks for with its headers (empty: none), checked.
    pub(crate) fn acl_of_write(&self, r: &S3Request, bucket: &Bucket) -> Result<Acl, S3Error> {
        let acl = acl_from_headers(r.req.headers())?.unwrap_or_default();
        check_public_acl(bucket, &acl)?;
        if !acl.is_empty() {
            self.model
                .require_protocol(crate::model::ATTRIBUTES_PROTOCOL, "ACLs")?;
        }
        Ok(acl)
    }

    /// Change a bucket's registers: read from the replicas (not the
    /// lookup cache), so the new value is timed above the one it
    /// replaces, then saved.
    pub(crate) async fn update_bucket(
        &self,
        name: &str,
        change: impl FnOnce(&mut Bucket, u64, hangar_common::NodeId),
    ) -> Result<(), S3Error> {
        let mut bucket = self.model.require_bucket_fresh(name).await?;
        change(&mut bucket, timestamp_ms(), self.model.net.id);
        self.model.save_bucket(&bucket).await?;
        Ok(())
    }

    /// The owner of a bucket as ACLs show it: its creating key's id and
    /// name (for a bucket made before owners were kept, or by the
    /// operator: "hangar").
    async fn owner_of(&self, bucket: &Bucket) -> (String, String) {
        match &bucket.owner {
            Some(id) => (id.clone(), self.key_name(id).await),
            None => ("hangar".to_string(), "hangar".to_string()),
        }
    }

    async fn key_name(&self, id: &str) -> String {
        match self.model.get_key(id).await {
            Ok(Some(k)) => k.name.value,
            _ => id.to_string(),
        }
    }

    /// The version of `key` a request names (`versionId`, else the
    /// current one), if the request may see it: `allowed` (by its key's
    /// permission or the policy), else by the version's ACL granting
    /// `need`, unless the policy denies. Without either: AccessDenied,
    /// whether the object exists or not (as S3 answers a requester that
    /// may not list the bucket).
    pub(crate) async fn version_for(
        &self,
        r: &S3Request,
        bucket: &Bucket,
        key: &str,
        allowed: bool,
        need: AclPermission,
    ) -> Result<(Object, ObjectVersion), S3Error> {
        let wanted = super::versioning::wanted(&r.query)?;
        let pk = object_pk(&bucket.id, bucket.shards, key);
        let obj = self.model.objects.get(&pk, key.as_bytes()).await?;
        let picked = super::versioning::pick(obj.as_ref(), wanted);
        let may = allowed
            || (!r.policy_denies(bucket, r.action(), Some(key))
                && picked
                    .as_ref()
                    .is_ok_and(|v| object_acl_allows(r, bucket, v, need)));
        if !may {
            // A requester who may list the bucket learns the key is
            // missing; others may not tell missing from forbidden.
            if let Err(e) = picked
                && r.permission_for(bucket, "s3:ListBucket", None).read
            {
                return Err(e);
            }
            return Err(S3Error::access_denied(
                "this request may not do this on this object",
            ));
        }
        let v = picked?.clone();
        let obj = obj.ok_or_else(S3Error::no_such_key)?;
        Ok((obj, v))
    }

    /// GetBucketAcl / GetObjectAcl: the owner's full control and the
    /// grants in force.
    pub(crate) async fn get_acl(&self, r: &S3Request) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(r).await?;
        let p = r.permission(&bucket);
        let (acl, version) = match &r.key {
            Some(key) => {
                let (_, v) = self
                    .version_for(r, &bucket, key, p.read || p.owner, AclPermission::ReadAcp)
                    .await?;
                (
                    v.acl.as_ref().map(|a| a.value.clone()).unwrap_or_default(),
                    Some(v),
                )
            }
            None => {
                if !(p.read || p.write || p.owner) {
                    return Err(S3Error::access_denied(
                        "this key may not read this bucket's ACL",
                    ));
                }
                (bucket.acl.value.clone(), None)
            }
        };
        let owner = self.owner_of(&bucket).await;
        let mut names = std::collections::BTreeMap::new();
        for g in &acl {
            if let Grantee::Key(id) = &g.grantee {
                names.insert(id.clone(), self.key_name(id).await);
            }
        }
        let doc = acl_xml((&owner.0, &owner.1), &acl, &|id| {
            names.get(id).cloned().unwrap_or_else(|| id.to_string())
        });
        let mut resp = xml_response(StatusCode::OK, doc);
        if let Some(v) = &version {
            super::versioning::add_version_header(resp.headers_mut(), &bucket, v);
        }
        Ok(resp)
    }

    /// PutBucketAcl / PutObjectAcl: a canned ACL, grant headers, or an
    /// AccessControlPolicy document.
    pub(crate) async fn put_acl(&self, r: S3Request) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(&r).await?;
        let p = r.permission(&bucket);
        let from_headers = acl_from_headers(r.req.headers())?;
        let object = match r.key.clone() {
            Some(key) => Some(
                self.version_for(
                    &r,
                    &bucket,
                    &key,
                    p.write || p.owner,
                    AclPermission::WriteAcp,
                )
                .await?,
            ),
            None if p.owner => None,
            None => return Err(owner_only("ACL")),
        };
        let owner = bucket.owner.clone();
        let acl = match from_headers {
            Some(acl) => acl,
            None => {
                let body = self.small_body(r).await?;
                if body.is_empty() {
                    return Err(S3Error::new(
                        "MissingSecurityHeader",
                        StatusCode::BAD_REQUEST,
                        "an ACL needs x-amz-acl, x-amz-grant-* headers or an AccessControlPolicy body",
                    ));
                }
                parse_acl(&body, owner.as_deref())?
            }
        };
        check_public_acl(&bucket, &acl)?;
        self.model
            .require_protocol(crate::model::ATTRIBUTES_PROTOCOL, "ACLs")?;
        match object {
            None => {
                self.update_bucket(&bucket.name, |b, now, me| b.acl.update(now, me, acl))
                    .await?;
                Ok(Response::new(empty()))
            }
            Some((obj, v)) => {
                let mut nv = v.clone();
                let (now, me) = (timestamp_ms(), self.model.net.id);
                match &mut nv.acl {
                    Some(a) => a.update(now, me, acl),
                    None => nv.acl = Some(Lww::new(now, me, acl)),
                }
                self.model
                    .objects
                    .insert(&Object::new(obj.pk.clone(), obj.key.clone(), nv))
                    .await?;
                let mut resp = Response::new(empty());
                super::versioning::add_version_header(resp.headers_mut(), &bucket, &v);
                Ok(resp)
            }
        }
    }

    /// Get, Put or Delete a bucket's policy.
    pub(crate) async fn bucket_policy(&self, r: S3Request) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(&r).await?;
        check_setting(&r, r.permission(&bucket), "policy")?;
        match *r.req.method() {
            http::Method::GET => {
                let text = bucket.policy.value.clone().ok_or_else(no_policy)?;
                let mut resp = Response::new(super::server::full(bytes::Bytes::from(text)));
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                Ok(resp)
            }
            http::Method::PUT => {
                let body = self.small_body(r).await?;
                let text = String::from_utf8(body.to_vec())
                    .map_err(|_| malformed_policy("the policy is not UTF-8".into()))?;
                let policy = Policy::parse(&text, &bucket.name).map_err(malformed_policy)?;
                let block = bucket.public_access_block.value.unwrap_or_default();
                if block.block_public_policy && policy.is_public() {
                    return Err(S3Error::access_denied(
                        "this bucket's Block Public Access settings refuse public policies (BlockPublicPolicy)",
                    ));
                }
                self.model
                    .require_protocol(crate::model::ATTRIBUTES_PROTOCOL, "bucket policies")?;
                self.update_bucket(&bucket.name, |b, now, me| {
                    b.policy.update(now, me, Some(text))
                })
                .await?;
                Ok(no_content())
            }
            _ => {
                self.update_bucket(&bucket.name, |b, now, me| b.policy.update(now, me, None))
                    .await?;
                Ok(no_content())
            }
        }
    }

    /// GetBucketPolicyStatus: whether the policy makes the bucket public.
    pub(crate) async fn bucket_policy_status(
        &self,
        r: &S3Request,
    ) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(r).await?;
        let p = r.permission(&bucket);
        check_setting(r, p, "policy")?;
        bucket.policy.value.as_ref().ok_or_else(no_policy)?;
        let public = bucket_policy(&bucket).is_some_and(|p| p.is_public());
        let mut x = Xml::new("PolicyStatus");
        x.elem("IsPublic", if public { "true" } else { "false" });
        Ok(xml_response(StatusCode::OK, x.finish("PolicyStatus")))
    }

    /// Get, Put or Delete a bucket's Block Public Access settings.
    pub(crate) async fn public_access_block(
        &self,
        r: S3Request,
    ) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(&r).await?;
        check_setting(&r, r.permission(&bucket), "Block Public Access settings")?;
        match *r.req.method() {
            http::Method::GET => {
                let b = bucket.public_access_block.value.ok_or_else(|| {
                    S3Error::new(
                        "NoSuchPublicAccessBlockConfiguration",
                        StatusCode::NOT_FOUND,
                        "The public access block configuration was not found",
                    )
                })?;
                let flag = |v: bool| if v { "true" } else { "false" };
                let mut x = Xml::new("PublicAccessBlockConfiguration");
                x.elem("BlockPublicAcls", flag(b.block_public_acls))
                    .elem("IgnorePublicAcls", flag(b.ignore_public_acls))
                    .elem("BlockPublicPolicy", flag(b.block_public_policy))
                    .elem("RestrictPublicBuckets", flag(b.restrict_public_buckets));
                Ok(xml_response(
                    StatusCode::OK,
                    x.finish("PublicAccessBlockConfiguration"),
                ))
            }
            http::Method::PUT => {
                let body = self.small_body(r).await?;
                let block = parse_public_access_block(&body)?;
                self.model
                    .require_protocol(crate::model::ATTRIBUTES_PROTOCOL, "Block Public Access")?;
                self.update_bucket(&bucket.name, |b, now, me| {
                    b.public_access_block.update(now, me, Some(block))
                })
                .await?;
                Ok(Response::new(empty()))
            }
            _ => {
                self.update_bucket(&bucket.name, |b, now, me| {
                    b.public_access_block.update(now, me, None)
                })
                .await?;
                Ok(no_content())
            }
        }
    }
}

fn no_policy() -> S3Error {
    S3Error::new(
        "NoSuchBucketPolicy",
        StatusCode::NOT_FOUND,
        "The bucket policy does not exist",
    )
}

fn malformed_policy(msg: String) -> S3Error {
    S3Error::new("MalformedPolicy", StatusCode::BAD_REQUEST, msg)
}

/// A new version's ACL register (None when it grants nothing).
pub(crate) fn register(acl: Acl, me: hangar_common::NodeId) -> Option<Lww<Acl>> {
    (!acl.is_empty()).then(|| Lww::new(timestamp_ms(), me, acl))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn requests_naming_a_version_have_s3s_version_actions() {
        assert_eq!(versioned_action("s3:GetObject"), "s3:GetObjectVersion");
        assert_eq!(
            versioned_action("s3:DeleteObject"),
            "s3:DeleteObjectVersion"
        );
        assert_eq!(versioned_action("s3:ListBucket"), "s3:ListBucket");
        // Each keeps the permission class of its unversioned form.
        for a in [
            "s3:GetObject",
            "s3:DeleteObject",
            "s3:GetObjectAcl",
            "s3:PutObjectAcl",
            "s3:GetObjectTagging",
            "s3:PutObjectTagging",
            "s3:DeleteObjectTagging",
        ] {
            assert_eq!(action_class(a), action_class(versioned_action(a)), "{a}");
        }
        assert_eq!(
            bucket_acl_need("s3:DeleteObjectVersion"),
            bucket_acl_need("s3:DeleteObject")
        );
    }

    #[test]
    fn canned_acls_and_grant_headers() {
        assert_eq!(canned("private").unwrap(), Acl::new());
        assert_eq!(
            canned("public-read-write").unwrap().len(),
            2,
            "READ and WRITE to everyone"
        );
        assert!(canned("public").is_err());
        let mut h = HeaderMap::new();
        h.insert(
            "x-amz-grant-read",
            HeaderValue::from_static(
                "uri=\"http://acs.amazonaws.com/groups/global/AllUsers\", id=\"GKa\"",
            ),
        );
        h.insert(
            "x-amz-grant-full-control",
            HeaderValue::from_static("id=GKb"),
        );
        let acl = acl_from_headers(&h).unwrap().unwrap();
        assert_eq!(acl.len(), 3);
        assert!(acl_allows(
            &acl,
            Principal::Anonymous,
            AclPermission::Read,
            false
        ));
        assert!(!acl_allows(
            &acl,
            Principal::Anonymous,
            AclPermission::Read,
            true
        ));
        assert!(acl_allows(
            &acl,
            Principal::Key("GKb"),
            AclPermission::WriteAcp,
            false
        ));
        assert!(!acl_allows(
            &acl,
            Principal::Key("GKa"),
            AclPermission::Write,
            false
        ));
        h.insert("x-amz-acl", HeaderValue::from_static("private"));
        assert!(acl_from_headers(&h).is_err(), "canned and grants together");
        let mut h = HeaderMap::new();
        h.insert(
            "x-amz-grant-read",
            HeaderValue::from_static("emailAddress=\"a@b.c\""),
        );
        assert_eq!(
            acl_from_headers(&h).unwrap_err().code,
            "UnresolvableGrantByEmailAddress"
        );
    }

    #[test]
    fn acl_documents_round_trip() {
        let acl = vec![
            Grant {
                grantee: Grantee::AllUsers,
                permission: AclPermission::Read,
            },
            Grant {
                grantee: Grantee::Key("GKother".into()),
                permission: AclPermission::Write,
            },
        ];
        let doc = acl_xml(("GKowner", "alice"), &acl, &|id| format!("name of {id}"));
        assert!(doc.contains("<DisplayName>alice</DisplayName>"));
        assert!(doc.contains("<DisplayName>name of GKother</DisplayName>"));
        // The owner's own full control is implicit, not stored.
        assert_eq!(parse_acl(doc.as_bytes(), Some("GKowner")).unwrap(), acl);
        let bad = br#"<AccessControlPolicy><AccessControlList><Grant><Grantee><ID>x</ID></Grantee>
            <Permission>EVERYTHING</Permission></Grant></AccessControlList></AccessControlPolicy>"#;
        assert_eq!(parse_acl(bad, None).unwrap_err().code, "MalformedACLError");
    }
}
