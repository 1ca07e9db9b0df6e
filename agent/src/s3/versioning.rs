//! S3 versioning: a bucket's state (`Put/GetBucketVersioning`), the
//! version a request names (`versionId`), the headers that tell a client
//! which version it got, and `ListObjectVersions`. How versions are kept
//! and merged is the model's (`model::tables::Object`).

use std::collections::BTreeMap;

use http::{Response, StatusCode};
use serde::Deserialize;

use super::bucket_config::{malformed, parse};
use super::error::S3Error;
use super::server::{Body, S3Request, S3Server, empty, xml_response};
use super::xml::{Xml, http_date, iso8601};
use crate::model::tables::{
    Bucket, Object, ObjectData, ObjectVersion, VersionId, Versioning, parse_version_id,
};

/// Which version a request names: None when it names none (the current
/// one), else the slot (`Some(None)`: the `null` version).
pub(crate) type Wanted = Option<Option<VersionId>>;

/// The `versionId` query parameter of a request.
pub(crate) fn wanted(query: &BTreeMap<String, String>) -> Result<Wanted, S3Error> {
    match query.get("versionId") {
        None => Ok(None),
        Some(id) => parse_version_id(id)
            .map(Some)
            .ok_or_else(invalid_version_id),
    }
}

pub(crate) fn invalid_version_id() -> S3Error {
    S3Error::new(
        "InvalidArgument",
        StatusCode::BAD_REQUEST,
        "Invalid version id specified",
    )
}

/// The version of `obj` a read names, or the error S3 answers: a key whose
/// latest version is a delete marker is missing (404, with the marker's
/// headers); a delete marker named by id is not an object (405).
pub(crate) fn pick(obj: Option<&Object>, wanted: Wanted) -> Result<&ObjectVersion, S3Error> {
    match wanted {
        None => {
            let v = obj
                .map(|o| &o.version)
                .filter(|v| !v.is_removed())
                .ok_or_else(S3Error::no_such_key)?;
            if v.data == ObjectData::DeleteMarker {
                return Err(S3Error::no_such_key()
                    .with_header("x-amz-delete-marker", "true")
                    .with_header("x-amz-version-id", v.s3_id()));
            }
            Ok(v)
        }
        Some(slot) => {
            let v = obj.and_then(|o| o.find(slot)).ok_or_else(|| {
                S3Error::new(
                    "NoSuchVersion",
                    StatusCode::NOT_FOUND,
                    "The specified version does not exist.",
                )
            })?;
            if v.data == ObjectData::DeleteMarker {
                return Err(S3Error::new(
                    "MethodNotAllowed",
                    StatusCode::METHOD_NOT_ALLOWED,
                    "The specified method is not allowed against this resource.",
                )
                .with_header("x-amz-delete-marker", "true")
                .with_header("x-amz-version-id", v.s3_id())
                .with_header("last-modified", http_date(v.timestamp)));
            }
            Ok(v)
        }
    }
}

/// The `x-amz-version-id` a response about `v` carries: none in a bucket
/// that never had versioning.
pub(crate) fn version_header(bucket: &Bucket, v: &ObjectVersion) -> Option<String> {
    (bucket.versioning.value != Versioning::Unversioned || v.versioned).then(|| v.s3_id())
}

/// Add `x-amz-version-id` to a response when the bucket has versioning.
pub(crate) fn add_version_header(h: &mut http::HeaderMap, bucket: &Bucket, v: &ObjectVersion) {
    if let Some(id) = version_header(bucket, v)
        && let Ok(v) = http::HeaderValue::from_str(&id)
    {
        h.insert("x-amz-version-id", v);
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct VersioningXml {
    #[serde(rename = "Status")]
    status: Option<String>,
    #[serde(rename = "MfaDelete")]
    mfa_delete: Option<String>,
}

impl S3Server {
    /// GetBucketVersioning: the bucket's state (nothing if never enabled).
    pub(crate) async fn get_bucket_versioning(
        &self,
        r: &S3Request,
    ) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(r).await?;
        let p = r.permission(&bucket);
        if !(p.read || p.write || p.owner) {
            return Err(S3Error::access_denied(
                "this key has no permission on this bucket",
            ));
        }
        let mut x = Xml::new("VersioningConfiguration");
        if let Some(s) = bucket.versioning.value.s3_status() {
            x.elem("Status", s);
        }
        Ok(xml_response(
            StatusCode::OK,
            x.finish("VersioningConfiguration"),
        ))
    }

    /// PutBucketVersioning: Enabled or Suspended (a bucket never goes back
    /// to unversioned). Needs the owner permission.
    pub(crate) async fn put_bucket_versioning(
        &self,
        r: S3Request,
    ) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(&r).await?;
        if !r.permission(&bucket).owner {
            return Err(S3Error::access_denied(
                "only a key with the owner permission may change a bucket's versioning",
            ));
        }
        let body = self.small_body(r).await?;
        let doc: VersioningXml = parse(&body, "VersioningConfiguration")?;
        if doc.mfa_delete.as_deref() == Some("Enabled") {
            return Err(S3Error::not_implemented("MFA delete"));
        }
        let state = match doc.status.as_deref() {
            Some("Enabled") => Versioning::Enabled,
            Some("Suspended") => Versioning::Suspended,
            Some(s) => {
                return Err(malformed(format!(
                    "Status must be Enabled or Suspended, not {s:?}"
                )));
            }
            None => return Err(malformed("a VersioningConfiguration needs a Status")),
        };
        self.model.set_versioning(&bucket.name, state).await?;
        Ok(Response::new(empty()))
    }

    /// ListObjectVersions: every version and delete marker, keys in order,
    /// newest first within a key; prefix, delimiter, `key-marker` /
    /// `version-id-marker`, `max-keys`, `encoding-type`.
    pub(crate) async fn list_object_versions(
        &self,
        r: &S3Request,
    ) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(r).await?;
        self.check_read(r, &bucket)?;
        let q = &r.query;
        let prefix = q.get("prefix").cloned().unwrap_or_default();
        let delimiter = q.get("delimiter").cloned().filter(|d| !d.is_empty());
        let max_keys = super::list::parse_max_keys(q.get("max-keys"))?;
        let url = q.get("encoding-type").map(String::as_str) == Some("url");
        let key_marker = q.get("key-marker").cloned().unwrap_or_default();
        let id_marker = q.get("version-id-marker").cloned().unwrap_or_default();
        if !id_marker.is_empty() && key_marker.is_empty() {
            return Err(S3Error::new(
                "InvalidArgument",
                StatusCode::BAD_REQUEST,
                "A version-id marker cannot be specified without a key marker.",
            ));
        }
        // With a version id marker, the listing goes on inside that key:
        // start at the key itself, skipping its versions up to the marker.
        let resume_in_key = if id_marker.is_empty() {
            None
        } else {
            Some(parse_version_id(&id_marker).ok_or_else(invalid_version_id)?)
        };
        let start = (!key_marker.is_empty()).then(|| {
            let mut k = key_marker.as_bytes().to_vec();
            if resume_in_key.is_some() {
                // Just before the key: the greatest string below it.
                match k.last_mut() {
                    Some(0) | None => {
                        k.pop();
                    }
                    Some(b) => {
                        *b -= 1;
                        k.push(0xFF);
                    }
                }
            }
            k
        });
        let mut lister = self
            .model
            .lister(&bucket, &prefix, start.as_deref(), max_keys + 1);
        let enc = |s: &str| {
            if url {
                super::list::url_encode(s)
            } else {
                s.to_string()
            }
        };
        let mut entries = Xml::default();
        let mut prefixes: Vec<String> = Vec::new();
        let mut count = 0usize;
        let mut next: Option<(String, Option<String>)> = None;
        let mut truncated = false;
        'keys: while let Some(obj) = lister.next_any().await? {
            if max_keys == 0 {
                // S3: nothing, and not truncated.
                break;
            }
            if start.is_some() && resume_in_key.is_none() && obj.key <= key_marker {
                continue;
            }
            let rest = &obj.key[prefix.len().min(obj.key.len())..];
            if let Some(d) = delimiter.as_ref().filter(|d| !d.is_empty())
                && let Some(pos) = rest.find(d.as_str())
            {
                let cp = obj.key[..prefix.len() + pos + d.len()].to_string();
                if prefixes.last() == Some(&cp) || cp.as_str() <= key_marker.as_str() {
                    continue;
                }
                if count == max_keys {
                    truncated = true;
                    break;
                }
                let mut skip = cp.as_bytes().to_vec();
                skip.push(0xFF);
                lister.skip_past(&skip);
                next = Some((cp.clone(), None));
                prefixes.push(cp);
                count += 1;
                continue;
            }
            let mut versions: Vec<&ObjectVersion> = obj.versions().collect();
            if obj.key == key_marker
                && let Some(slot) = resume_in_key
            {
                match versions.iter().position(|v| v.slot() == slot) {
                    Some(i) => {
                        versions.drain(..=i);
                    }
                    // The marker's version is gone: resume after the key.
                    None => continue 'keys,
                }
            } else if obj.key.as_str() < key_marker.as_str()
                || (obj.key == key_marker && resume_in_key.is_none())
            {
                continue;
            }
            for v in versions {
                if count == max_keys {
                    truncated = true;
                    break 'keys;
                }
                let latest = std::ptr::eq(v, &obj.version);
                write_version(&mut entries, &enc(&obj.key), v, latest, r);
                next = Some((obj.key.clone(), Some(v.s3_id())));
                count += 1;
            }
        }
        let mut x = Xml::new("ListVersionsResult");
        x.elem("Name", &bucket.name)
            .elem("Prefix", &enc(&prefix))
            .elem("KeyMarker", &enc(&key_marker))
            .elem("VersionIdMarker", &id_marker)
            .elem("MaxKeys", &max_keys.to_string())
            .elem("IsTruncated", if truncated { "true" } else { "false" });
        if let Some(d) = &delimiter {
            x.elem("Delimiter", &enc(d));
        }
        if url {
            x.elem("EncodingType", "url");
        }
        if truncated && let Some((k, id)) = &next {
            x.elem("NextKeyMarker", &enc(k));
            if let Some(id) = id {
                x.elem("NextVersionIdMarker", id);
            }
        }
        x.buf.push_str(&entries.buf);
        for p in &prefixes {
            x.open("CommonPrefixes")
                .elem("Prefix", &enc(p))
                .close("CommonPrefixes");
        }
        Ok(xml_response(StatusCode::OK, x.finish("ListVersionsResult")))
    }
}

/// One `<Version>` or `<DeleteMarker>` of a listing.
fn write_version(x: &mut Xml, key: &str, v: &ObjectVersion, latest: bool, r: &S3Request) {
    let tag = match v.data.meta() {
        Some(_) => "Version",
        None => "DeleteMarker",
    };
    x.open(tag)
        .elem("Key", key)
        .elem("VersionId", &v.s3_id())
        .elem("IsLatest", if latest { "true" } else { "false" })
        .elem("LastModified", &iso8601(v.timestamp));
    if let Some(meta) = v.data.meta() {
        x.elem("ETag", &format!("\"{}\"", meta.etag))
            .elem("Size", &meta.size.to_string())
            .elem("StorageClass", "STANDARD");
    }
    x.open("Owner")
        .elem("ID", &r.api_key.id)
        .elem("DisplayName", &r.api_key.name.value)
        .close("Owner");
    x.close(tag);
}
