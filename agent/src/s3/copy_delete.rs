//! CopyObject (without re-uploading data) and DeleteObjects (batch).

use bytes::{Bytes, BytesMut};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use md5::Digest;
use serde::Deserialize;

use super::conditional::{Outcome, Preconditions, precondition_failed};
use super::error::S3Error;
use super::server::{Body, S3Request, S3Server, xml_response};
use super::sigv4::PayloadMode;
use super::xml::{Xml, iso8601};
use crate::model::tables::*;

/// The source of a copy: the version, and its id for the response's
/// `x-amz-copy-source-version-id` (none without versioning).
pub(crate) struct CopySource {
    pub version: ObjectVersion,
    pub version_id: Option<String>,
    /// The source's partition (where an attached block is).
    pub partition: usize,
}

/// Largest XML request body accepted (DeleteObjects of 1,000 long keys).
const MAX_XML_BODY: usize = 2 << 20;

#[derive(Deserialize)]
struct DeleteRequest {
    #[serde(rename = "Quiet", default)]
    quiet: bool,
    #[serde(rename = "Object", default)]
    objects: Vec<DeleteEntry>,
}

#[derive(Deserialize)]
struct DeleteEntry {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "VersionId")]
    version_id: Option<String>,
}

fn malformed(msg: impl Into<String>) -> S3Error {
    S3Error::new("MalformedXML", StatusCode::BAD_REQUEST, msg)
}

/// The objects a DeleteObjects names: (key, version id).
pub(crate) type ToDelete = Vec<(String, Option<String>)>;

/// Parse a DeleteObjects request body: quiet, and the objects.
pub(crate) fn parse_delete(body: &[u8]) -> Result<(bool, ToDelete), S3Error> {
    let text = std::str::from_utf8(body).map_err(|_| malformed("the request body is not UTF-8"))?;
    let req: DeleteRequest = quick_xml::de::from_str(text)
        .map_err(|e| malformed(format!("invalid Delete document: {e}")))?;
    if req.objects.len() > 1000 {
        return Err(malformed("at most 1000 objects per DeleteObjects request"));
    }
    Ok((
        req.quiet,
        req.objects
            .into_iter()
            .map(|o| (o.key, o.version_id))
            .collect(),
    ))
}

impl S3Server {
    /// Read a small request body whole, checking what the client promised
    /// about it (payload hash, Content-MD5).
    pub(crate) async fn small_body(&self, r: S3Request) -> Result<Bytes, S3Error> {
        let payload = r.verified.payload;
        // Checked once the body is read (see `receive_hashed`).
        let content_md5 = super::object::content_md5(r.header("content-md5"));
        let mut decoder = if payload.is_chunked() {
            Some(
                super::chunked::ChunkedDecoder::new(payload, r.verified.signing.clone())
                    .map_err(|e| S3Error::invalid_request(e.to_string()))?,
            )
        } else {
            None
        };
        let mut body = r.req.into_body();
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame
                .map_err(|e| S3Error::invalid_request(format!("error reading the body: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let pieces = match &mut decoder {
                Some(d) => d
                    .feed(data)
                    .map_err(|e| S3Error::invalid_request(e.to_string()))?,
                None => vec![data],
            };
            for p in pieces {
                if buf.len() + p.len() > MAX_XML_BODY {
                    return Err(S3Error::new(
                        "MaxMessageLengthExceeded",
                        StatusCode::BAD_REQUEST,
                        "Your request was too big.",
                    ));
                }
                buf.extend_from_slice(&p);
            }
        }
        if let Some(d) = &mut decoder {
            d.finish()
                .map_err(|e| S3Error::invalid_request(e.to_string()))?;
        }
        if let PayloadMode::Sha256(expected) = payload
            && sha2::Sha256::digest(&buf).as_slice() != expected.as_slice()
        {
            return Err(S3Error::new(
                "XAmzContentSHA256Mismatch",
                StatusCode::BAD_REQUEST,
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            ));
        }
        if content_md5?.is_some_and(|expected| expected != <[u8; 16]>::from(md5::Md5::digest(&buf)))
        {
            return Err(S3Error::new(
                "BadDigest",
                StatusCode::BAD_REQUEST,
                "The Content-MD5 you specified did not match what we received.",
            ));
        }
        Ok(buf.freeze())
    }

    pub(crate) async fn delete_objects(&self, r: S3Request) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(&r).await?;
        let bypass = super::object_lock::bypass(&r, &bucket);
        // Each key is checked on its own (a policy may allow or deny
        // deleting some keys of the bucket and not others), with what the
        // request was once its body is read.
        let (anonymous, api_key, remote, query, headers) = (
            r.anonymous,
            r.api_key.clone(),
            r.remote,
            r.query.clone(),
            r.req.headers().clone(),
        );
        let body = self.small_body(r).await?;
        let (quiet, keys) = parse_delete(&body)?;
        let who = super::access::Requester {
            anonymous,
            key: &api_key,
            remote,
            query: &query,
            headers: &headers,
        };
        let allowed: Vec<bool> = keys
            .iter()
            .map(|(k, version)| {
                let action = match version {
                    Some(_) => "s3:DeleteObjectVersion",
                    None => "s3:DeleteObject",
                };
                who.permission_for(&bucket, action, Some(k)).write
            })
            .collect();
        // A requester with no access to the bucket at all is refused
        // whole; one refused some keys (by the policy) learns which.
        let own = if anonymous {
            Permission::default()
        } else {
            api_key.permission(&bucket.id)
        };
        if !(allowed.iter().any(|a| *a) || own.read || own.write || own.owner) {
            return Err(S3Error::access_denied(
                "this request may not delete these objects",
            ));
        }
        let mut x = Xml::new("DeleteResult");
        for ((key, version_id), may) in keys.iter().zip(allowed) {
            let wanted = match version_id {
                _ if !may => Err(S3Error::access_denied(
                    "this request may not delete this object",
                )),
                None => Ok(None),
                Some(id) => parse_version_id(id)
                    .map(Some)
                    .ok_or_else(super::versioning::invalid_version_id),
            };
            let done = match wanted {
                Ok(w) => self.delete_one(&bucket, key, w, bypass).await,
                Err(e) => Err(e),
            };
            match done {
                Ok(done) => {
                    if !quiet {
                        x.open("Deleted").elem("Key", key);
                        if let Some(id) = version_id {
                            x.elem("VersionId", id);
                        }
                        if done.marker {
                            x.elem("DeleteMarker", "true");
                            if version_id.is_none()
                                && let Some(id) = &done.version_id
                            {
                                x.elem("DeleteMarkerVersionId", id);
                            }
                        }
                        x.close("Deleted");
                    }
                }
                Err(e) => {
                    x.open("Error").elem("Key", key);
                    if let Some(id) = version_id {
                        x.elem("VersionId", id);
                    }
                    x.elem("Code", e.code)
                        .elem("Message", &e.message)
                        .close("Error");
                }
            }
        }
        Ok(xml_response(StatusCode::OK, x.finish("DeleteResult")))
    }

    pub(crate) async fn copy_object(&self, r: S3Request) -> Result<Response<Body>, S3Error> {
        let dest = self.bucket(&r).await?;
        if !r.permission(&dest).write {
            return Err(S3Error::access_denied(
                "this key may not write to the destination bucket",
            ));
        }
        let src = self.copy_source(&r).await?;
        let replace = r.header("x-amz-metadata-directive") == Some("REPLACE");
        let new_meta = |meta: &ObjectMeta| -> ObjectMeta {
            if !replace {
                return meta.clone();
            }
            ObjectMeta {
                size: meta.size,
                etag: meta.etag.clone(),
                content_type: r.header("content-type").map(str::to_string),
                user_meta: r.user_meta(),
                headers: r.stored_headers(),
                checksum: meta.checksum.clone(),
                parts: meta.parts.clone(),
                upload: meta.upload,
            }
        };
        let key = r.key.clone().unwrap_or_default();
        super::object::check_key(&key)?;
        // The destination's own conditions (`If-None-Match: *`...); the
        // source's are the `x-amz-copy-source-if-*` ones.
        let pre = Preconditions::from_headers(r.req.headers(), "");
        let me = self.model.net.id;
        let lock = super::object_lock::with_default(
            super::object_lock::lock_from_headers(&r, &dest, me)?,
            &dest,
            me,
        );
        let tags = match r.header("x-amz-tagging-directive") {
            None | Some("COPY") => src.version.tag_set().to_vec(),
            Some("REPLACE") => super::tagging::tags_from_headers(&r)?,
            Some(other) => {
                return Err(S3Error::new(
                    "InvalidArgument",
                    http::StatusCode::BAD_REQUEST,
                    format!("Unknown tagging directive {other:?}: COPY or REPLACE"),
                ));
            }
        };
        if !tags.is_empty() {
            self.model
                .require_protocol(crate::model::ATTRIBUTES_PROTOCOL, "object tags")?;
        }
        let acl = self.acl_of_write(&r, &dest)?;
        self.precheck(&pre, &dest, &key).await?;
        if let Some(meta) = src.version.data.meta() {
            self.enforce_quotas(&dest, &key, meta.size).await?;
        }
        let uuid = new_version_id();
        let mut attached = None;
        let (data, etag) = match &src.version.data {
            ObjectData::Removed | ObjectData::DeleteMarker => return Err(S3Error::no_such_key()),
            ObjectData::Inline { meta, bytes } => (
                ObjectData::Inline {
                    meta: new_meta(meta),
                    bytes: bytes.clone(),
                },
                meta.etag.clone(),
            ),
            ObjectData::Attached { meta, hash } => {
                // The block goes with the copy's item, to its partition.
                let block = self.model.blocks.get_attached(src.partition, *hash).await?;
                attached = Some(crate::table::Attachment { hash: *hash, block });
                (
                    ObjectData::Attached {
                        meta: new_meta(meta),
                        hash: *hash,
                    },
                    meta.etag.clone(),
                )
            }
            ObjectData::Blocks { meta } => {
                self.copy_block_list(src.version.uuid, uuid).await?;
                (
                    ObjectData::Blocks {
                        meta: new_meta(meta),
                    },
                    meta.etag.clone(),
                )
            }
        };
        let mut version = ObjectVersion::in_bucket(uuid, data, &dest);
        version.lock = lock;
        version.tags = super::tagging::register(tags, me);
        version.acl = super::access::register(acl, me);
        let mut object = Object::new(object_pk(&dest.id, dest.shards, &key), key, version);
        self.commit_checked(&mut object, &pre, None, attached.as_ref())
            .await?;
        let now = object.version.timestamp;
        let mut x = Xml::new("CopyObjectResult");
        x.elem("ETag", &format!("\"{etag}\""))
            .elem("LastModified", &iso8601(now));
        let mut resp = xml_response(StatusCode::OK, x.finish("CopyObjectResult"));
        super::versioning::add_version_header(resp.headers_mut(), &dest, &object.version);
        if let Some(id) = &src.version_id
            && let Ok(v) = http::HeaderValue::from_str(id)
        {
            resp.headers_mut().insert("x-amz-copy-source-version-id", v);
        }
        Ok(resp)
    }

    /// The object version named by `x-amz-copy-source` (`bucket/key`, URL
    /// encoded, with `?versionId=` or not), which the request's key must be
    /// allowed to read.
    pub(crate) async fn copy_source(&self, r: &S3Request) -> Result<CopySource, S3Error> {
        let header = r.header("x-amz-copy-source").unwrap_or_default();
        let (source, query) = header.split_once('?').unwrap_or((header, ""));
        let source = percent_encoding::percent_decode_str(source)
            .decode_utf8()
            .map_err(|_| S3Error::invalid_request("x-amz-copy-source is not valid UTF-8"))?;
        let (src_bucket, src_key) = source
            .trim_start_matches('/')
            .split_once('/')
            .filter(|(b, k)| !b.is_empty() && !k.is_empty())
            .ok_or_else(|| S3Error::invalid_request("x-amz-copy-source must be bucket/key"))?;
        let query: std::collections::BTreeMap<String, String> =
            super::server::url_pairs(query).into_iter().collect();
        let wanted = super::versioning::wanted(&query)?;
        let src_b = self.model.require_bucket(src_bucket).await?;
        let read_action = match wanted {
            Some(_) => "s3:GetObjectVersion",
            None => "s3:GetObject",
        };
        let allowed = r.permission_for(&src_b, read_action, Some(src_key)).read;
        let src_pk = object_pk(&src_b.id, src_b.shards, src_key);
        let src = self.model.objects.get(&src_pk, src_key.as_bytes()).await?;
        let picked = super::versioning::pick(src.as_ref(), wanted);
        let readable = allowed
            || (!r.policy_denies(&src_b, read_action, Some(src_key))
                && picked.as_ref().is_ok_and(|v| {
                    super::access::object_acl_allows(r, &src_b, v, AclPermission::Read)
                }));
        if !readable {
            return Err(S3Error::access_denied(
                "this request may not read the copy source",
            ));
        }
        let version = match picked {
            Ok(v) => v.clone(),
            // S3's answer when the source names a delete marker by id.
            Err(e) if e.code == "MethodNotAllowed" => {
                return Err(S3Error::invalid_request(
                    "The source of a copy request may not specifically refer to a delete marker by version id.",
                ));
            }
            Err(e) => return Err(e),
        };
        let Some(meta) = version.data.meta() else {
            return Err(S3Error::no_such_key());
        };
        // `x-amz-copy-source-if-*`: any unmet condition is a 412.
        let pre = Preconditions::from_headers(r.req.headers(), "x-amz-copy-source-");
        if pre.evaluate(Some((&meta.etag, version.timestamp)), true) != Outcome::Proceed {
            return Err(precondition_failed());
        }
        let version_id = super::versioning::version_header(&src_b, &version);
        Ok(CopySource {
            version,
            version_id,
            partition: crate::table::data::partition_of_key(&src_pk),
        })
    }

    /// Give a version a copy of another's block list, referencing every
    /// block again: no data moves.
    pub(crate) async fn copy_block_list(
        &self,
        from: VersionId,
        to: VersionId,
    ) -> Result<(), S3Error> {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let chunks = self
                .model
                .versions
                .get_range(&from, &[], after.as_deref(), 16)
                .await?;
            let n = chunks.len();
            for c in chunks {
                after = Some(c.index.to_vec());
                let copy = VersionChunk {
                    uuid: to,
                    index: c.index,
                    blocks: c.blocks.clone(),
                    deleted: Default::default(),
                };
                self.model.versions.insert(&copy).await?;
                let mut seen = std::collections::BTreeSet::new();
                for b in &c.blocks {
                    if seen.insert(b.hash) {
                        let r = BlockRef {
                            block: b.hash,
                            version: to,
                            deleted: Default::default(),
                        };
                        self.model.refs.insert(&r).await?;
                    }
                }
            }
            if n < 16 {
                break;
            }
        }
        Ok(())
    }
}
