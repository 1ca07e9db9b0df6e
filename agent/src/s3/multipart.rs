//! Multipart uploads: Create, UploadPart, UploadPartCopy, Complete, Abort,
//! ListParts, ListMultipartUploads.
//!
//! Each part upload stores its blocks under a block list of its own and is
//! recorded in the upload's item (`upload` table). Complete writes the
//! object's block list from the chosen parts' lists (same blocks, shifted
//! offsets: no data moves), then ends the upload, whose hook queues every
//! part's block list for deletion.

use std::collections::BTreeSet;

use hangar_common::clock::timestamp_ms;
use hangar_common::crdt::Flag;
use hangar_common::hash::Hash;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use md5::Digest;
use serde::Deserialize;

use super::checksum;
use super::conditional::Preconditions;
use super::error::S3Error;
use super::object::{BodySink, Received};
use super::server::{Body, S3Request, S3Server, empty, xml_response};
use super::xml::{Xml, iso8601};
use crate::model::tables::*;

/// Smallest part but the last, as S3.
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// Highest part number, as S3.
pub const MAX_PART_NUMBER: u32 = 10_000;

#[derive(Deserialize)]
struct CompleteRequest {
    #[serde(rename = "Part", default)]
    parts: Vec<CompletePart>,
}

#[derive(Deserialize)]
struct CompletePart {
    #[serde(rename = "PartNumber")]
    number: u32,
    #[serde(rename = "ETag")]
    etag: String,
    #[serde(rename = "ChecksumCRC32")]
    crc32: Option<String>,
    #[serde(rename = "ChecksumCRC32C")]
    crc32c: Option<String>,
    #[serde(rename = "ChecksumCRC64NVME")]
    crc64nvme: Option<String>,
    #[serde(rename = "ChecksumSHA1")]
    sha1: Option<String>,
    #[serde(rename = "ChecksumSHA256")]
    sha256: Option<String>,
}

impl CompletePart {
    /// The checksum the client lists for the part, if any.
    fn checksum(&self) -> Option<(ChecksumAlgorithm, &str)> {
        use ChecksumAlgorithm as A;
        [
            (A::Crc32, &self.crc32),
            (A::Crc32c, &self.crc32c),
            (A::Crc64Nvme, &self.crc64nvme),
            (A::Sha1, &self.sha1),
            (A::Sha256, &self.sha256),
        ]
        .into_iter()
        .find_map(|(a, v)| Some((a, v.as_deref()?)))
    }
}

/// One part a CompleteMultipartUpload lists: its number, ETag and
/// checksum (algorithm, base64), if given.
pub(crate) type ListedPart = (u32, String, Option<(ChecksumAlgorithm, String)>);

/// Parse a CompleteMultipartUpload body: the parts, in order.
pub(crate) fn parse_complete(body: &[u8]) -> Result<Vec<ListedPart>, S3Error> {
    let text = std::str::from_utf8(body)
        .map_err(|_| S3Error::new("MalformedXML", StatusCode::BAD_REQUEST, "not UTF-8"))?;
    let req: CompleteRequest = quick_xml::de::from_str(text).map_err(|e| {
        S3Error::new(
            "MalformedXML",
            StatusCode::BAD_REQUEST,
            format!("invalid CompleteMultipartUpload document: {e}"),
        )
    })?;
    Ok(req
        .parts
        .into_iter()
        .map(|p| {
            let sum = p.checksum().map(|(a, v)| (a, v.to_string()));
            (p.number, p.etag, sum)
        })
        .collect())
}

/// CompleteMultipartUpload's answer.
fn complete_result(
    bucket: &Bucket,
    key: &str,
    etag: &str,
    sum: Option<&StoredChecksum>,
    version: &ObjectVersion,
) -> Response<Body> {
    let mut x = Xml::new("CompleteMultipartUploadResult");
    x.elem("Location", &format!("/{}/{key}", bucket.name))
        .elem("Bucket", &bucket.name)
        .elem("Key", key)
        .elem("ETag", &format!("\"{etag}\""));
    if let Some(c) = sum {
        x.elem(&c.algorithm.element(), &c.shown())
            .elem("ChecksumType", c.kind());
    }
    let mut resp = xml_response(StatusCode::OK, x.finish("CompleteMultipartUploadResult"));
    super::versioning::add_version_header(resp.headers_mut(), bucket, version);
    resp
}

/// How S3 names a multipart checksum's type.
fn checksum_type(full: bool) -> &'static str {
    if full { "FULL_OBJECT" } else { "COMPOSITE" }
}

fn no_such_upload() -> S3Error {
    S3Error::new(
        "NoSuchUpload",
        StatusCode::NOT_FOUND,
        "The specified multipart upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
    )
}

fn invalid_part(msg: impl Into<String>) -> S3Error {
    S3Error::new("InvalidPart", StatusCode::BAD_REQUEST, msg)
}

fn parse_upload_id(s: &str) -> Result<VersionId, S3Error> {
    hex::decode(s)
        .ok()
        .and_then(|b| VersionId::try_from(b.as_slice()).ok())
        .ok_or_else(no_such_upload)
}

/// The multipart ETag: MD5 of the parts' binary MD5s, then `-N`.
fn multipart_etag(part_etags: &[&str]) -> String {
    let mut h = md5::Md5::new();
    for e in part_etags {
        if let Ok(b) = hex::decode(e) {
            h.update(&b);
        }
    }
    format!("{}-{}", hex::encode(h.finalize()), part_etags.len())
}

/// Writes a version's block list chunk by chunk, with its references.
struct BlockListWriter<'a> {
    server: &'a S3Server,
    uuid: VersionId,
    index: u32,
    offset: u64,
    pending: Vec<BlockEntry>,
}

impl BlockListWriter<'_> {
    async fn push(&mut self, hash: Hash, size: u32) -> Result<(), S3Error> {
        self.pending.push(BlockEntry {
            offset: self.offset,
            hash,
            size,
        });
        self.offset += size as u64;
        if self.pending.len() == CHUNK_BLOCKS {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), S3Error> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let blocks = std::mem::take(&mut self.pending);
        let seen: BTreeSet<Hash> = blocks.iter().map(|b| b.hash).collect();
        for block in seen {
            let r = BlockRef {
                block,
                version: self.uuid,
                deleted: Flag(false),
            };
            self.server.model.refs.insert(&r).await?;
        }
        let chunk = VersionChunk {
            uuid: self.uuid,
            index: self.index.to_be_bytes(),
            blocks,
            deleted: Flag(false),
        };
        self.server.model.versions.insert(&chunk).await?;
        self.index += 1;
        Ok(())
    }
}

impl S3Server {
    fn writable(&self, r: &S3Request, bucket: &Bucket) -> Result<(), S3Error> {
        if r.permission(bucket).write {
            Ok(())
        } else {
            Err(S3Error::access_denied(
                "this key may not write to this bucket",
            ))
        }
    }

    /// The live upload named by the request's key and `uploadId`.
    async fn upload(&self, r: &S3Request, bucket: &Bucket) -> Result<Upload, S3Error> {
        self.upload_any(r, bucket)
            .await?
            .filter(|u| !u.ended.0)
            .ok_or_else(no_such_upload)
    }

    /// The upload named by the request's key and `uploadId`, ended or not
    /// (while its tombstone is kept).
    async fn upload_any(&self, r: &S3Request, bucket: &Bucket) -> Result<Option<Upload>, S3Error> {
        let id = parse_upload_id(r.query.get("uploadId").map(String::as_str).unwrap_or(""))?;
        let key = r.key.clone().unwrap_or_default();
        Ok(self
            .model
            .uploads
            .get(bucket.id.as_bytes(), &upload_sk(&key, &id))
            .await?)
    }

    /// A CompleteMultipartUpload retried after it succeeded (its answer
    /// lost, say): S3 answers as the first time, if the parts are the
    /// same and the object it made is still there; else NoSuchUpload.
    async fn completed_before(
        &self,
        bucket: &Bucket,
        upload: &Upload,
        parts: &[ListedPart],
    ) -> Result<Response<Body>, S3Error> {
        let etags: Vec<&str> = parts
            .iter()
            .map(|(_, e, _)| e.trim().trim_matches('"'))
            .collect();
        let etag = multipart_etag(&etags);
        let pk = object_pk(&bucket.id, bucket.shards, &upload.key);
        let obj = self.model.objects.get(&pk, upload.key.as_bytes()).await?;
        let made = obj
            .as_ref()
            .and_then(|o| {
                o.versions().find(|v| {
                    v.data
                        .meta()
                        .is_some_and(|m| m.upload == Some(upload.id) && m.etag == etag)
                })
            })
            .ok_or_else(no_such_upload)?;
        let sum = made.data.meta().and_then(|m| m.checksum.clone());
        Ok(complete_result(
            bucket,
            &upload.key,
            &etag,
            sum.as_ref(),
            made,
        ))
    }

    pub(crate) async fn create_multipart_upload(
        &self,
        r: &S3Request,
    ) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(r).await?;
        self.writable(r, &bucket)?;
        let key = r.key.clone().unwrap_or_default();
        super::object::check_key(&key)?;
        let id = new_version_id();
        let tags = super::tagging::tags_from_headers(r)?;
        if !tags.is_empty() {
            self.model
                .require_protocol(crate::model::ATTRIBUTES_PROTOCOL, "object tags")?;
        }
        let upload = Upload {
            bucket: bucket.id,
            sk: upload_sk(&key, &id),
            key: key.clone(),
            id,
            created_ms: timestamp_ms(),
            content_type: r.header("content-type").map(str::to_string),
            user_meta: r.user_meta(),
            headers: r.stored_headers(),
            parts: BTreeSet::new(),
            ended: Flag(false),
            lock: super::object_lock::lock_from_headers(r, &bucket, self.model.net.id)?,
            tags,
            checksum: checksum::multipart_request(r.req.headers())?,
            acl: self.acl_of_write(r, &bucket)?,
        };
        self.model.uploads.insert(&upload).await?;
        let mut x = Xml::new("InitiateMultipartUploadResult");
        x.elem("Bucket", &bucket.name)
            .elem("Key", &key)
            .elem("UploadId", &hex::encode(id));
        let mut resp = xml_response(StatusCode::OK, x.finish("InitiateMultipartUploadResult"));
        if let Some((algorithm, full)) = upload.checksum {
            let h = resp.headers_mut();
            h.insert(
                "x-amz-checksum-algorithm",
                HeaderValue::from_static(algorithm.s3_name()),
            );
            h.insert(
                "x-amz-checksum-type",
                HeaderValue::from_static(checksum_type(full)),
            );
        }
        Ok(resp)
    }

    pub(crate) async fn upload_part(&self, r: S3Request) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(&r).await?;
        self.writable(&r, &bucket)?;
        let number: u32 = r
            .query
            .get("partNumber")
            .and_then(|n| n.parse().ok())
            .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
            .ok_or_else(|| {
                S3Error::new(
                    "InvalidArgument",
                    StatusCode::BAD_REQUEST,
                    format!("Part number must be an integer between 1 and {MAX_PART_NUMBER}"),
                )
            })?;
        let mut upload = self.upload(&r, &bucket).await?;
        let copy = r.req.headers().contains_key("x-amz-copy-source");
        let version = new_version_id();
        let (received, source_version) = if copy {
            self.part_from_copy(&r, version).await?
        } else {
            let want = upload.checksum.map(|(a, _)| a);
            let received = self.receive(r, false, want).await?;
            self.commit_blocks(version, &received.blocks).await?;
            (received, None)
        };
        let etag = hex::encode(received.md5);
        // Above any upload of the same part this node read (from a quorum):
        // the part uploaded last is the one completion takes, whatever the
        // clocks.
        let timestamp = upload
            .parts
            .iter()
            .filter(|p| p.number == number)
            .map(|p| p.timestamp + 1)
            .fold(timestamp_ms(), u64::max);
        upload.parts.insert(Part {
            number,
            timestamp,
            version,
            size: received.size,
            etag: etag.clone(),
            checksum: received.checksum.clone(),
        });
        self.model.uploads.insert(&upload).await?;
        if copy {
            let mut x = Xml::new("CopyPartResult");
            x.elem("ETag", &format!("\"{etag}\""))
                .elem("LastModified", &iso8601(timestamp));
            let mut resp = xml_response(StatusCode::OK, x.finish("CopyPartResult"));
            if let Some(id) = source_version
                && let Ok(v) = HeaderValue::from_str(&id)
            {
                resp.headers_mut().insert("x-amz-copy-source-version-id", v);
            }
            return Ok(resp);
        }
        let mut resp = Response::new(empty());
        if let Ok(v) = HeaderValue::from_str(&format!("\"{etag}\"")) {
            resp.headers_mut().insert(http::header::ETAG, v);
        }
        if let Some(c) = &received.checksum {
            checksum::add_checksum_headers(resp.headers_mut(), c, false);
        }
        Ok(resp)
    }

    /// UploadPartCopy: the part is (a range of) another object. A whole
    /// object's blocks are shared; a range is read and stored anew.
    /// Also returns the source's version id (for the response), if any.
    async fn part_from_copy(
        &self,
        r: &S3Request,
        version: VersionId,
    ) -> Result<(Received, Option<String>), S3Error> {
        let src = self.copy_source(r).await?;
        let source_version = src.version_id.clone();
        let meta = src
            .version
            .data
            .meta()
            .cloned()
            .ok_or_else(S3Error::no_such_key)?;
        let range = match r.header("x-amz-copy-source-range") {
            None => None,
            Some(h) => {
                let bad = || {
                    S3Error::new(
                        "InvalidArgument",
                        StatusCode::BAD_REQUEST,
                        format!(
                            "x-amz-copy-source-range must be bytes=first-last within the source, not {h:?}"
                        ),
                    )
                };
                let (a, b) = h
                    .trim()
                    .strip_prefix("bytes=")
                    .and_then(|s| s.split_once('-'))
                    .ok_or_else(bad)?;
                let a: u64 = a.trim().parse().map_err(|_| bad())?;
                let b: u64 = b.trim().parse().map_err(|_| bad())?;
                if a > b {
                    return Err(bad());
                }
                if b >= meta.size {
                    return Err(S3Error::new(
                        "InvalidRange",
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        format!(
                            "The requested range {h:?} is not satisfiable: the source is {} bytes",
                            meta.size
                        ),
                    ));
                }
                Some((a, b + 1))
            }
        };
        if let (None, ObjectData::Blocks { .. }) = (range, &src.version.data) {
            self.copy_block_list(src.version.uuid, version).await?;
            let md5 = hex::decode(&meta.etag)
                .ok()
                .and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok());
            if let Some(md5) = md5 {
                return Ok((
                    Received {
                        size: meta.size,
                        md5,
                        blocks: Vec::new(),
                        inline: None,
                        attached: None,
                        checksum: None,
                    },
                    source_version,
                ));
            }
            // A multipart source has no plain MD5: fall through and read
            // it to compute the part's own.
        }
        let (start, end) = range.unwrap_or((0, meta.size));
        let mut body = self
            .object_body(&src.version, src.partition, start, end)
            .await?;
        let mut sink = BodySink::new(self.cfg.block_size);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| S3Error::internal(format!("reading the source: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            sink.push(self, &data).await?;
        }
        let (received, pending) = sink.finish(self, false, None).await?;
        pending.wait().await?;
        // A whole-object copy already shared the block list above.
        if range.is_some() || !matches!(src.version.data, ObjectData::Blocks { .. }) {
            self.commit_blocks(version, &received.blocks).await?;
        }
        Ok((received, source_version))
    }

    pub(crate) async fn complete_multipart_upload(
        &self,
        r: S3Request,
    ) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(&r).await?;
        self.writable(&r, &bucket)?;
        let Some(mut upload) = self.upload_any(&r, &bucket).await? else {
            return Err(no_such_upload());
        };
        if upload.ended.0 {
            let body = self.small_body(r).await?;
            let parts = parse_complete(&body)?;
            return self.completed_before(&bucket, &upload, &parts).await;
        }
        // `If-None-Match: *` / `If-Match`: the object is made only if the
        // condition holds when it is written (the upload stays otherwise).
        let pre = Preconditions::from_headers(r.req.headers(), "");
        self.precheck(&pre, &bucket, &upload.key).await?;
        // A checksum of the whole object given for verification.
        let complete_sum = upload
            .checksum
            .and_then(|(a, _)| r.header(a.header()).map(str::to_string));
        let body = self.small_body(r).await?;
        let parts = parse_complete(&body)?;
        if parts.is_empty() {
            return Err(S3Error::new(
                "MalformedXML",
                StatusCode::BAD_REQUEST,
                "CompleteMultipartUpload must list at least one part",
            ));
        }
        if parts.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(S3Error::new(
                "InvalidPartOrder",
                StatusCode::BAD_REQUEST,
                "The list of parts was not in ascending order. Parts must be ordered by part number.",
            ));
        }
        let current = upload.current_parts();
        let mut chosen: Vec<Part> = Vec::with_capacity(parts.len());
        for (number, etag, listed_sum) in &parts {
            let etag = etag.trim().trim_matches('"');
            let part = current
                .iter()
                .find(|p| p.number == *number)
                .filter(|p| p.etag == etag)
                .ok_or_else(|| {
                    invalid_part(format!(
                        "part {} with ETag {etag:?} was not uploaded (or was replaced)",
                        *number
                    ))
                })?;
            if let Some((algorithm, value)) = listed_sum {
                let matches = part.checksum.as_ref().is_some_and(|c| {
                    c.algorithm == *algorithm
                        && checksum::decode(*algorithm, value).ok() == Some(c.value.clone())
                });
                if !matches {
                    return Err(invalid_part(format!(
                        "the {} checksum listed for part {number} is not the part's",
                        algorithm.s3_name()
                    )));
                }
            }
            chosen.push((*part).clone());
        }
        if let Some(small) = chosen
            .iter()
            .take(chosen.len() - 1)
            .find(|p| p.size < MIN_PART_SIZE)
        {
            return Err(S3Error::new(
                "EntityTooSmall",
                StatusCode::BAD_REQUEST,
                format!(
                    "part {} is {} bytes: every part but the last must be at least {MIN_PART_SIZE} bytes",
                    small.number, small.size
                ),
            ));
        }

        let total: u64 = chosen.iter().map(|p| p.size).sum();
        self.enforce_quotas(&bucket, &upload.key, total).await?;

        // The object's block list: the parts' lists, end to end.
        let uuid = new_version_id();
        let mut w = BlockListWriter {
            server: self,
            uuid,
            index: 0,
            offset: 0,
            pending: Vec::new(),
        };
        for p in &chosen {
            let mut after: Option<Vec<u8>> = None;
            let mut seen = 0u64;
            loop {
                let chunks = self
                    .model
                    .versions
                    .get_range(&p.version, &[], after.as_deref(), 16)
                    .await?;
                let n = chunks.len();
                for c in chunks {
                    after = Some(c.index.to_vec());
                    for b in c.blocks {
                        seen += b.size as u64;
                        w.push(b.hash, b.size).await?;
                    }
                }
                if n < 16 {
                    break;
                }
            }
            if seen != p.size {
                return Err(S3Error::unavailable(format!(
                    "the block list of part {} is not readable yet; retry",
                    p.number
                )));
            }
        }
        w.flush().await?;
        let size = w.offset;
        let etags: Vec<&str> = chosen.iter().map(|p| p.etag.as_str()).collect();
        let etag = multipart_etag(&etags);
        let part_infos: Vec<PartInfo> = chosen
            .iter()
            .map(|p| PartInfo {
                number: p.number,
                size: p.size,
                checksum: p.checksum.clone(),
            })
            .collect();
        let object_sum = upload
            .checksum
            .and_then(|(a, full)| checksum::of_parts(a, full, &part_infos));
        if let (Some(c), Some(given)) = (&object_sum, complete_sum.as_deref())
            && given.trim() != c.shown()
        {
            return Err(checksum::bad_digest(c.algorithm));
        }
        let mut object = Object::new(
            object_pk(&bucket.id, bucket.shards, &upload.key),
            upload.key.clone(),
            ObjectVersion::in_bucket(
                uuid,
                ObjectData::Blocks {
                    meta: ObjectMeta {
                        size,
                        etag: etag.clone(),
                        content_type: upload.content_type.clone(),
                        user_meta: upload.user_meta.clone(),
                        headers: upload.headers.clone(),
                        checksum: object_sum.clone(),
                        parts: part_infos,
                        upload: Some(upload.id),
                    },
                },
                &bucket,
            ),
        );
        object.version.lock =
            super::object_lock::with_default(upload.lock.clone(), &bucket, self.model.net.id);
        object.version.tags = super::tagging::register(upload.tags.clone(), self.model.net.id);
        object.version.acl = super::access::register(upload.acl.clone(), self.model.net.id);
        self.commit_checked(&mut object, &pre, None, None).await?;
        upload.ended.raise();
        self.model.uploads.insert(&upload).await?;
        Ok(complete_result(
            &bucket,
            &upload.key,
            &etag,
            object_sum.as_ref(),
            &object.version,
        ))
    }

    pub(crate) async fn abort_multipart_upload(
        &self,
        r: &S3Request,
    ) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(r).await?;
        self.writable(r, &bucket)?;
        let mut upload = self.upload(r, &bucket).await?;
        upload.ended.raise();
        self.model.uploads.insert(&upload).await?;
        let mut resp = Response::new(empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        Ok(resp)
    }

    pub(crate) async fn list_parts(&self, r: &S3Request) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(r).await?;
        if !r.permission(&bucket).read {
            return Err(S3Error::access_denied("this key may not read this bucket"));
        }
        let upload = self.upload(r, &bucket).await?;
        let marker: u32 = r
            .query
            .get("part-number-marker")
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        let max: usize = r
            .query
            .get("max-parts")
            .and_then(|m| m.parse().ok())
            .unwrap_or(1000)
            .min(1000);
        let parts: Vec<&Part> = upload
            .current_parts()
            .into_iter()
            .filter(|p| p.number > marker)
            .collect();
        let truncated = parts.len() > max;
        let page = &parts[..parts.len().min(max)];
        let mut x = Xml::new("ListPartsResult");
        x.elem("Bucket", &bucket.name)
            .elem("Key", &upload.key)
            .elem("UploadId", &hex::encode(upload.id))
            .elem("PartNumberMarker", &marker.to_string())
            .elem(
                "NextPartNumberMarker",
                &page.last().map(|p| p.number).unwrap_or(marker).to_string(),
            )
            .elem("MaxParts", &max.to_string())
            .elem("IsTruncated", if truncated { "true" } else { "false" })
            .elem("StorageClass", "STANDARD");
        if let Some((algorithm, full)) = upload.checksum {
            x.elem("ChecksumAlgorithm", algorithm.s3_name())
                .elem("ChecksumType", checksum_type(full));
        }
        for p in page {
            x.open("Part")
                .elem("PartNumber", &p.number.to_string())
                .elem("LastModified", &iso8601(p.timestamp))
                .elem("ETag", &format!("\"{}\"", p.etag))
                .elem("Size", &p.size.to_string());
            if let Some(c) = &p.checksum {
                x.elem(&c.algorithm.element(), &c.shown());
            }
            x.close("Part");
        }
        Ok(xml_response(StatusCode::OK, x.finish("ListPartsResult")))
    }

    pub(crate) async fn list_multipart_uploads(
        &self,
        r: &S3Request,
    ) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(r).await?;
        if !r.permission(&bucket).read {
            return Err(S3Error::access_denied("this key may not read this bucket"));
        }
        let prefix = r.query.get("prefix").cloned().unwrap_or_default();
        let max: usize = r
            .query
            .get("max-uploads")
            .and_then(|m| m.parse().ok())
            .unwrap_or(1000)
            .clamp(1, 1000);
        let key_marker = r.query.get("key-marker").cloned().unwrap_or_default();
        let id_marker = r.query.get("upload-id-marker").cloned().unwrap_or_default();
        // Resume after (key, upload id) or after every upload of the key.
        let mut after: Option<Vec<u8>> =
            (!key_marker.is_empty()).then(|| match parse_upload_id(&id_marker) {
                Ok(id) => upload_sk(&key_marker, &id),
                Err(_) => {
                    let mut sk = key_marker.as_bytes().to_vec();
                    sk.push(1);
                    sk
                }
            });
        let mut uploads = Vec::new();
        let mut truncated = false;
        'pages: loop {
            let page = self
                .model
                .uploads
                .get_range(
                    bucket.id.as_bytes(),
                    prefix.as_bytes(),
                    after.as_deref(),
                    1000,
                )
                .await?;
            let n = page.len();
            for u in page {
                after = Some(u.sk.clone());
                if u.ended.0 {
                    continue;
                }
                if uploads.len() == max {
                    truncated = true;
                    break 'pages;
                }
                uploads.push(u);
            }
            if n < 1000 {
                break;
            }
        }
        let mut x = Xml::new("ListMultipartUploadsResult");
        x.elem("Bucket", &bucket.name)
            .elem("KeyMarker", &key_marker)
            .elem("UploadIdMarker", &id_marker)
            .elem("Prefix", &prefix)
            .elem("MaxUploads", &max.to_string())
            .elem("IsTruncated", if truncated { "true" } else { "false" });
        if let (true, Some(last)) = (truncated, uploads.last()) {
            x.elem("NextKeyMarker", &last.key)
                .elem("NextUploadIdMarker", &hex::encode(last.id));
        }
        for u in &uploads {
            x.open("Upload")
                .elem("Key", &u.key)
                .elem("UploadId", &hex::encode(u.id))
                .elem("Initiated", &iso8601(u.created_ms))
                .elem("StorageClass", "STANDARD")
                .close("Upload");
        }
        Ok(xml_response(
            StatusCode::OK,
            x.finish("ListMultipartUploadsResult"),
        ))
    }
}
