//! Object operations: PutObject (streaming, block by block), GetObject and
//! HeadObject (streaming, with ranges), DeleteObject.
//!
//! Memory per request is bounded by a few blocks whatever the object's
//! size: a PUT keeps at most [`PUT_INFLIGHT`] blocks in flight to their
//! replicas while it reads the next; a GET sends one block while it fetches
//! the next.

use std::collections::VecDeque;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use hangar_common::hash::Hash;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use md5::Digest;
use tokio::task::JoinHandle;

use super::checksum;
use super::chunked::ChunkedDecoder;
use super::conditional::{Outcome, Preconditions, precondition_failed};
use super::error::S3Error;
use super::object_lock;
use super::server::{Body, S3Request, S3Server, empty};
use super::sigv4::PayloadMode;
use super::tagging;
use super::versioning::{self, add_version_header};
use super::xml::http_date;
use crate::model::tables::*;
use crate::table::Attachment;
use crate::table::paxos::Promises;

/// A block being hashed and sent to its replicas: its hash is known
/// first, then whether its replicas have it.
pub struct Inflight {
    index: usize,
    hash: tokio::sync::oneshot::Receiver<Hash>,
    put: JoinHandle<Result<(usize, Hash), S3Error>>,
}

/// Blocks up to this size are hashed on the request's task.
const INLINE_HASH_MAX: usize = 64 * 1024;

/// A block's BLAKE2b hash: on this task for a small block (it hashes in
/// microseconds: handing it to another thread would cost more), on a
/// blocking thread for a big one.
async fn hash_block(block: &Bytes) -> Result<Hash, S3Error> {
    if block.len() <= INLINE_HASH_MAX {
        return Ok(Hash::of(block));
    }
    let hashed = block.clone();
    tokio::task::spawn_blocking(move || Hash::of(&hashed))
        .await
        .map_err(|e| S3Error::internal(format!("hashing task failed: {e}")))
}

/// Wait for an in-flight block to be stored and record its hash in the
/// block list.
pub(crate) async fn settle(h: Inflight, blocks: &mut [BlockEntry]) -> Result<(), S3Error> {
    let (index, hash) = h
        .put
        .await
        .map_err(|e| S3Error::internal(format!("block upload task failed: {e}")))??;
    if let Some(b) = blocks.get_mut(index) {
        b.hash = hash;
    }
    Ok(())
}

/// Blocks of a received body whose hashes are known but which may still
/// be on their way to their replicas.
#[derive(Default)]
pub struct PendingPuts(Vec<Inflight>);

impl PendingPuts {
    /// Wait until every block is stored.
    pub(crate) async fn wait(self) -> Result<(), S3Error> {
        let mut first_err = None;
        for h in self.0 {
            let r = h
                .put
                .await
                .map_err(|e| S3Error::internal(format!("block upload task failed: {e}")))
                .and_then(|r| r);
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// A request body, received and stored.
pub struct Received {
    pub size: u64,
    pub md5: [u8; 16],
    /// The stored blocks (empty when inline).
    pub blocks: Vec<BlockEntry>,
    /// The whole body, when small enough to live in the object table.
    pub inline: Option<Vec<u8>>,
    /// The whole body as one block, hashed, not stored yet: it travels
    /// with the object's item ([`ObjectData::Attached`]).
    pub attached: Option<Attachment>,
    /// The checksum to keep (see [`checksum`]).
    pub checksum: Option<StoredChecksum>,
}

/// Blocks of one PUT on their way to replicas at once.
const PUT_INFLIGHT: usize = 4;

/// S3 keys are at most 1024 bytes; a NUL could not be listed (XML 1.0
/// cannot carry it), so it is refused.
/// Whether a write's preconditions hold on the object's current state.
fn holds(pre: &Preconditions, cur: Option<&Object>) -> bool {
    let live = cur
        .and_then(Object::live)
        .and_then(|v| Some((v.data.meta()?.etag.as_str(), v.timestamp)));
    pre.evaluate(live, false) == Outcome::Proceed
}

pub(crate) fn check_key(key: &str) -> Result<(), S3Error> {
    if key.len() > 1024 {
        return Err(S3Error::new(
            "KeyTooLongError",
            StatusCode::BAD_REQUEST,
            "Your key is too long (1024 bytes at most).",
        ));
    }
    if key.contains('\0') {
        return Err(S3Error::new(
            "InvalidArgument",
            StatusCode::BAD_REQUEST,
            "Object keys cannot contain a NUL character.",
        ));
    }
    Ok(())
}

/// A `Content-MD5` header's digest; a value that is not base64 of 16
/// bytes is `InvalidDigest` (a mismatch, found later, is `BadDigest`).
pub(crate) fn content_md5(value: Option<&str>) -> Result<Option<[u8; 16]>, S3Error> {
    let Some(v) = value else {
        return Ok(None);
    };
    base64::engine::general_purpose::STANDARD
        .decode(v.trim())
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok())
        .map(Some)
        .ok_or_else(|| {
            S3Error::new(
                "InvalidDigest",
                StatusCode::BAD_REQUEST,
                "The Content-MD5 you specified was invalid.",
            )
        })
}

fn bad_digest(what: &str) -> S3Error {
    S3Error::new(
        "BadDigest",
        StatusCode::BAD_REQUEST,
        format!("The {what} you specified did not match what we received."),
    )
}

/// The MD5 of a body, computed a block at a time on the blocking pool, in
/// order: the request's task only copies bytes, and MD5 (the slowest pass
/// over an upload here) runs beside the BLAKE2b passes and the writes of
/// the same blocks instead of before them. At most [`MD5_AHEAD`] blocks
/// wait for it, so a body read faster than it hashes waits.
#[derive(Default)]
struct Md5Chain {
    /// The newest link: the state after every block fed so far.
    last: Option<JoinHandle<Result<md5::Md5, String>>>,
    /// A signal per link not finished yet, oldest first.
    running: VecDeque<tokio::sync::oneshot::Receiver<()>>,
}

/// Blocks fed to an [`Md5Chain`] and not hashed yet, at most.
const MD5_AHEAD: usize = 2;

impl Md5Chain {
    /// Hash `data` after everything fed before it.
    async fn feed(&mut self, data: Bytes) {
        while self.running.len() >= MD5_AHEAD {
            if let Some(done) = self.running.pop_front() {
                // An error ends the chain early: `finish` reports it.
                let _ = done.await;
            }
        }
        let prev = self.last.take();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        self.last = Some(tokio::spawn(async move {
            let mut state = match prev {
                Some(p) => p.await.map_err(|e| e.to_string())??,
                None => md5::Md5::new(),
            };
            let state = tokio::task::spawn_blocking(move || {
                state.update(&data);
                state
            })
            .await
            .map_err(|e| e.to_string())?;
            let _ = done_tx.send(());
            Ok(state)
        }));
        self.running.push_back(done_rx);
    }

    /// The digest of everything fed, then of `tail` (hashed here: keep it
    /// small, or feed it first).
    async fn finish(self, tail: &[u8]) -> Result<[u8; 16], S3Error> {
        let mut state = match self.last {
            Some(last) => last
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
                .map_err(|e| S3Error::internal(format!("MD5 task failed: {e}")))?,
            None => md5::Md5::new(),
        };
        state.update(tail);
        Ok(state.finalize().into())
    }
}

/// What a body becomes as it arrives: its MD5 and size, and its blocks,
/// each shipped to its replicas once full (at most [`PUT_INFLIGHT`] in
/// flight). Fed by a PUT's body, a part's, a form upload's file field, or
/// a part copy's source.
pub(crate) struct BodySink {
    md5: Md5Chain,
    pub size: u64,
    block_size: usize,
    buf: BytesMut,
    blocks: Vec<BlockEntry>,
    inflight: VecDeque<Inflight>,
}

impl BodySink {
    pub(crate) fn new(block_size: usize) -> BodySink {
        BodySink {
            md5: Md5Chain::default(),
            size: 0,
            block_size,
            buf: BytesMut::with_capacity(block_size.min(1 << 20)),
            blocks: Vec::new(),
            inflight: VecDeque::new(),
        }
    }

    /// Take `data`: copied once, into the block being filled. Each block
    /// has a buffer of its own, allocated at its size (filling one buffer
    /// past the block and splitting it off made the rest grow by doubling,
    /// copying what it held, to twice a block).
    pub(crate) async fn push(&mut self, server: &S3Server, mut data: &[u8]) -> Result<(), S3Error> {
        self.size += data.len() as u64;
        while !data.is_empty() {
            // A full block waits for the next byte: a body of one block
            // is kept, to travel with its object's item.
            if self.buf.len() >= self.block_size {
                let next = BytesMut::with_capacity(self.block_size);
                let block = std::mem::replace(&mut self.buf, next).freeze();
                self.md5.feed(block.clone()).await;
                server
                    .ship(block, &mut self.blocks, &mut self.inflight)
                    .await?;
            }
            let take = (self.block_size - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(())
    }

    /// The body received: inline if it fits `inline_max` (when
    /// `allow_inline`), kept whole as one block to travel with its item
    /// if it fits a block (when `allow_inline` and every node can store a
    /// block with an item), else its last block shipped and every block's
    /// hash known, their stores maybe still pending.
    pub(crate) async fn finish(
        mut self,
        server: &S3Server,
        allow_inline: bool,
        checksum: Option<StoredChecksum>,
    ) -> Result<(Received, PendingPuts), S3Error> {
        let size = self.size;
        if allow_inline && self.blocks.is_empty() && self.buf.len() <= server.cfg.inline_max {
            let md5 = self.md5.finish(&self.buf).await?;
            return Ok((
                Received {
                    size,
                    md5,
                    blocks: self.blocks,
                    inline: Some(self.buf.to_vec()),
                    attached: None,
                    checksum,
                },
                PendingPuts::default(),
            ));
        }
        if allow_inline
            && self.blocks.is_empty()
            && self.buf.len() <= self.block_size
            && server.model.attach_blocks()
        {
            let block = self.buf.split().freeze();
            // Both passes over the block at once, on two threads.
            let md5 = async {
                if block.len() > INLINE_HASH_MAX {
                    self.md5.feed(block.clone()).await;
                    self.md5.finish(&[]).await
                } else {
                    self.md5.finish(&block).await
                }
            };
            let (md5, hash) = tokio::join!(md5, hash_block(&block));
            return Ok((
                Received {
                    size,
                    md5: md5?,
                    blocks: Vec::new(),
                    inline: None,
                    attached: Some(Attachment { hash: hash?, block }),
                    checksum,
                },
                PendingPuts::default(),
            ));
        }
        if !self.buf.is_empty() {
            let block = self.buf.split().freeze();
            self.md5.feed(block.clone()).await;
            server
                .ship(block, &mut self.blocks, &mut self.inflight)
                .await?;
        }
        let md5 = self.md5.finish(&[]).await?;
        let mut blocks = self.blocks;
        let mut pending = Vec::with_capacity(self.inflight.len());
        for mut h in self.inflight {
            match (&mut h.hash).await {
                Ok(hash) => {
                    if let Some(b) = blocks.get_mut(h.index) {
                        b.hash = hash;
                    }
                    pending.push(h);
                }
                // The task ended before hashing: its outcome says why.
                Err(_) => settle(h, &mut blocks).await?,
            }
        }
        Ok((
            Received {
                size,
                md5,
                blocks,
                inline: None,
                attached: None,
                checksum,
            },
            PendingPuts(pending),
        ))
    }
}

impl S3Server {
    fn check_write(&self, r: &S3Request, bucket: &Bucket) -> Result<(), S3Error> {
        if r.permission(bucket).write {
            Ok(())
        } else {
            Err(S3Error::access_denied(
                "this key may not write to this bucket",
            ))
        }
    }

    pub(crate) async fn put_object(&self, r: S3Request) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(&r).await?;
        self.check_write(&r, &bucket)?;
        let key = r.key.clone().unwrap_or_default();
        check_key(&key)?;
        let content_type = r.header("content-type").map(str::to_string);
        let user_meta = r.user_meta();
        let headers = r.stored_headers();
        let pre = Preconditions::from_headers(r.req.headers(), "");
        let me = self.model.net.id;
        let lock = object_lock::with_default(
            object_lock::lock_from_headers(&r, &bucket, me)?,
            &bucket,
            me,
        );
        let acl = self.acl_of_write(&r, &bucket)?;
        let tags = tagging::tags_from_headers(&r)?;
        if !tags.is_empty() {
            self.model
                .require_protocol(crate::model::ATTRIBUTES_PROTOCOL, "object tags")?;
        }
        let pk = object_pk(&bucket.id, bucket.shards, &key);
        // Quotas: checked before reading the body when its size is known.
        let declared: Option<u64> = if r.verified.payload.is_chunked() {
            r.header("x-amz-decoded-content-length")
        } else {
            r.header("content-length")
        }
        .and_then(|v| v.trim().parse().ok());
        if let Some(size) = declared {
            self.enforce_quotas(&bucket, &key, size).await?;
        }
        let (body, stored, first) = if pre.is_empty() {
            let (body, stored) = self.receive_hashed(r, true, None).await?;
            (body, stored, None)
        } else {
            // A conditional write gathers its consensus round's promises
            // while the body arrives (one round trip less); a condition
            // that fails on them fails before the rest of the body is read.
            let prepare = self.model.objects.cas_prepare(&pk, key.as_bytes());
            let receive = self.receive_hashed(r, true, None);
            tokio::pin!(prepare, receive);
            let mut received = None;
            let promises = tokio::select! {
                p = &mut prepare => p,
                got = &mut receive => {
                    received = Some(got);
                    (&mut prepare).await
                }
            }?;
            if let Some(state) = promises.settled_state()
                && !holds(&pre, state)
            {
                return Err(pre.refusal(state.and_then(Object::live).is_some()));
            }
            let (body, stored) = match received {
                Some(got) => got?,
                None => receive.await?,
            };
            (body, stored, Some(promises))
        };
        if declared.is_none() {
            self.enforce_quotas(&bucket, &key, body.size).await?;
        }
        let etag = hex::encode(body.md5);
        let put_checksum = body.checksum.clone();
        let meta = ObjectMeta {
            size: body.size,
            etag: etag.clone(),
            content_type,
            user_meta,
            headers,
            checksum: body.checksum.clone(),
            parts: Vec::new(),
            upload: None,
        };
        let uuid = new_version_id();
        let (data, attached) = self.version_data(uuid, meta, body, stored).await?;
        let mut version = ObjectVersion::in_bucket(uuid, data, &bucket);
        version.lock = lock;
        version.tags = tagging::register(tags, me);
        version.acl = super::access::register(acl, me);
        let mut object = Object::new(pk, key, version);
        self.commit_checked(&mut object, &pre, first, attached.as_ref())
            .await?;
        let mut resp = Response::new(empty());
        if let Ok(v) = HeaderValue::from_str(&format!("\"{etag}\"")) {
            resp.headers_mut().insert(http::header::ETAG, v);
        }
        add_version_header(resp.headers_mut(), &bucket, &object.version);
        if let Some(c) = &put_checksum {
            checksum::add_checksum_headers(resp.headers_mut(), c, true);
        }
        Ok(resp)
    }

    /// A received body as a version's data: inline; one block, to be
    /// written with the object (returned beside the data); or its block
    /// list and references written while the last blocks travel to their
    /// replicas; the object, which makes the version visible, is written
    /// by the caller once they are durable.
    pub(crate) async fn version_data(
        &self,
        uuid: VersionId,
        meta: ObjectMeta,
        body: Received,
        stored: PendingPuts,
    ) -> Result<(ObjectData, Option<Attachment>), S3Error> {
        if let Some(bytes) = body.inline {
            return Ok((ObjectData::Inline { meta, bytes }, None));
        }
        if let Some(a) = body.attached {
            let data = ObjectData::Attached { meta, hash: a.hash };
            return Ok((data, Some(a)));
        }
        let (committed, stored) =
            tokio::join!(self.commit_blocks(uuid, &body.blocks), stored.wait());
        if let Err(e) = stored {
            if committed.is_ok() {
                // Nothing will refer to this version: release its blocks
                // now rather than leave them referenced.
                let hashes: Vec<Hash> = body.blocks.iter().map(|b| b.hash).collect();
                self.model.release_version(uuid, &hashes).await;
            }
            return Err(e);
        }
        committed?;
        Ok((ObjectData::Blocks { meta }, None))
    }

    /// Read a request body, verifying what the client promised about it
    /// (payload hash, chunk signatures, Content-MD5, checksums), cut it
    /// into blocks and store them. A body that fits `inline_max` (when
    /// `allow_inline`) is returned in memory instead.
    pub(crate) async fn receive(
        &self,
        r: S3Request,
        allow_inline: bool,
        want: Option<ChecksumAlgorithm>,
    ) -> Result<Received, S3Error> {
        let (received, pending) = self.receive_hashed(r, allow_inline, want).await?;
        pending.wait().await?;
        Ok(received)
    }

    /// [`S3Server::receive`], returning as soon as every block's hash is
    /// known, with the blocks' stores still pending.
    async fn receive_hashed(
        &self,
        r: S3Request,
        allow_inline: bool,
        want: Option<ChecksumAlgorithm>,
    ) -> Result<(Received, PendingPuts), S3Error> {
        // A malformed one is refused once the body is read, as a mismatch
        // is: answering before would leave the client sending into a
        // closed connection, and it would see no error document.
        let content_md5 = content_md5(r.header("content-md5"));
        let decoded_length: Option<u64> = r
            .header("x-amz-decoded-content-length")
            .and_then(|v| v.trim().parse().ok());
        // A checksum given up front, announced for the trailer, or (a
        // part of an upload created with an algorithm) to compute.
        let requested = checksum::requested(r.req.headers())?;
        if let (Some(want), Some(req)) = (want, &requested)
            && req.algorithm != want
        {
            return Err(S3Error::invalid_request(format!(
                "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
                want.s3_name().to_ascii_lowercase(),
                req.algorithm.s3_name().to_ascii_lowercase()
            )));
        }
        let mut checksum = requested
            .as_ref()
            .map(|q| q.algorithm)
            .or(want)
            .map(|a| a.hasher());

        let payload = r.verified.payload;
        let mut decoder = if payload.is_chunked() {
            Some(ChunkedDecoder::new(payload, r.verified.signing.clone()).map_err(chunked_error)?)
        } else {
            None
        };
        let mut sha256 = matches!(payload, PayloadMode::Sha256(_)).then(sha2::Sha256::new);
        let mut sink = BodySink::new(self.cfg.block_size);
        let mut body = r.req.into_body();

        // Read, decode, hash, cut into blocks, ship.
        let mut pending: Vec<Bytes> = Vec::new();
        loop {
            let frame = match body.frame().await {
                Some(Ok(f)) => f,
                Some(Err(e)) => {
                    return Err(S3Error::invalid_request(format!(
                        "error reading the request body: {e}"
                    )));
                }
                None => break,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            match &mut decoder {
                Some(d) => pending.extend(d.feed(data).map_err(chunked_error)?),
                None => pending.push(data),
            }
            for data in pending.drain(..) {
                if let Some(h) = &mut sha256 {
                    h.update(&data);
                }
                if let Some(c) = &mut checksum {
                    c.update(&data);
                }
                sink.push(self, &data).await?;
            }
        }
        let size = sink.size;
        let trailers = match &mut decoder {
            Some(d) => Some(d.finish().map_err(chunked_error)?),
            None => None,
        };
        if decoder.is_some()
            && let Some(announced) = decoded_length.filter(|n| *n != size)
        {
            return Err(S3Error::new(
                "IncompleteBody",
                StatusCode::BAD_REQUEST,
                format!(
                    "x-amz-decoded-content-length announced {announced} bytes but the body held {size}"
                ),
            ));
        }

        // Verify what the client promised.
        if let (PayloadMode::Sha256(expected), Some(h)) = (&payload, sha256)
            && h.finalize().as_slice() != expected.as_slice()
        {
            return Err(S3Error::new(
                "XAmzContentSHA256Mismatch",
                StatusCode::BAD_REQUEST,
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            ));
        }
        let content_md5 = content_md5?;
        let checksum = match checksum {
            None => None,
            Some(c) => {
                let algorithm = c.algorithm();
                let got = c.finish();
                let expected = match &requested {
                    Some(q) if q.trailer => {
                        let given = trailers.as_ref().and_then(|t| {
                            t.checksums
                                .iter()
                                .find(|(n, _)| n.eq_ignore_ascii_case(algorithm.header()))
                                .map(|(_, v)| v.clone())
                        });
                        match given {
                            Some(v) => Some(checksum::decode(algorithm, &v)?),
                            None => None,
                        }
                    }
                    Some(q) => q.expected.clone(),
                    None => None,
                };
                if expected.as_ref().is_some_and(|e| *e != got.value) {
                    return Err(checksum::bad_digest(algorithm));
                }
                // Kept when the client gave a value, or for a part of an
                // upload with an algorithm (computed here).
                (expected.is_some() || want.is_some()).then_some(got)
            }
        };
        let (received, pending) = sink.finish(self, allow_inline, checksum).await?;
        // Checked once the MD5 is known; blocks already stored for a
        // refused body are left to the unreferenced-block sweep.
        if content_md5.is_some_and(|expected| expected != received.md5) {
            return Err(bad_digest("Content-MD5"));
        }
        Ok((received, pending))
    }

    /// Send one block to its replicas in the background, keeping at most
    /// [`PUT_INFLIGHT`] in flight.
    pub(crate) async fn ship(
        &self,
        block: Bytes,
        blocks: &mut Vec<BlockEntry>,
        inflight: &mut VecDeque<Inflight>,
    ) -> Result<(), S3Error> {
        if inflight.len() >= PUT_INFLIGHT
            && let Some(h) = inflight.pop_front()
        {
            settle(h, blocks).await?;
        }
        let offset = blocks.last().map(|b| b.offset + b.size as u64).unwrap_or(0);
        let index = blocks.len();
        // The BLAKE2b hash is computed in the block's own task, on another
        // core than the request's MD5: the entry gets it when settled.
        blocks.push(BlockEntry {
            offset,
            hash: Hash::default(),
            size: block.len() as u32,
        });
        // Wait for room in the agent-wide budget; the permit travels with
        // the block and is released once its replicas have it.
        let permit = self
            .put_budget
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| S3Error::internal("upload budget closed"))?;
        let mgr = self.model.blocks.clone();
        let (hash_tx, hash_rx) = tokio::sync::oneshot::channel();
        let put = tokio::spawn(async move {
            let hash = hash_block(&block).await?;
            let _ = hash_tx.send(hash);
            let r = mgr.put(hash, block).await.map_err(S3Error::from);
            drop(permit);
            r.map(|()| (index, hash))
        });
        inflight.push_back(Inflight {
            index,
            hash: hash_rx,
            put,
        });
        Ok(())
    }

    /// Record a version's block list and its block references.
    pub(crate) async fn commit_blocks(
        &self,
        uuid: VersionId,
        blocks: &[BlockEntry],
    ) -> Result<(), S3Error> {
        let mut tasks = Vec::new();
        for (i, chunk) in blocks.chunks(CHUNK_BLOCKS).enumerate() {
            let item = VersionChunk {
                uuid,
                index: (i as u32).to_be_bytes(),
                blocks: chunk.to_vec(),
                deleted: Default::default(),
            };
            let t = self.model.versions.clone();
            tasks.push(tokio::spawn(async move {
                t.insert(&item).await.map_err(S3Error::from)
            }));
        }
        let mut seen = std::collections::BTreeSet::new();
        for b in blocks {
            if !seen.insert(b.hash) {
                continue;
            }
            let item = BlockRef {
                block: b.hash,
                version: uuid,
                deleted: Default::default(),
            };
            let t = self.model.refs.clone();
            tasks.push(tokio::spawn(async move {
                t.insert(&item).await.map_err(S3Error::from)
            }));
            if tasks.len() >= 64 {
                for t in tasks.drain(..) {
                    t.await.map_err(|e| S3Error::internal(e.to_string()))??;
                }
            }
        }
        for t in tasks {
            t.await.map_err(|e| S3Error::internal(e.to_string()))??;
        }
        Ok(())
    }

    /// The version of an object a GET or HEAD names (`versionId`, else
    /// the current one).
    pub(crate) async fn load_object(
        &self,
        r: &S3Request,
    ) -> Result<(Bucket, ObjectVersion), S3Error> {
        let bucket = self.bucket(r).await?;
        let allowed = r.permission(&bucket).read;
        let key = r.key.clone().unwrap_or_default();
        let (_, v) = self
            .version_for(r, &bucket, &key, allowed, AclPermission::Read)
            .await?;
        Ok((bucket, v))
    }

    /// Refuse to write `size` bytes at `key` if the bucket's quotas forbid.
    pub(crate) async fn enforce_quotas(
        &self,
        bucket: &Bucket,
        key: &str,
        size: u64,
    ) -> Result<(), S3Error> {
        let q = bucket.quotas.value;
        if q.max_size.is_none() && q.max_objects.is_none() {
            return Ok(());
        }
        // With versioning enabled a write adds a version and replaces
        // nothing (suspended: it replaces the null version, which the
        // current one usually is).
        let old = if bucket.versioning.value == Versioning::Enabled {
            None
        } else {
            self.current_meta(bucket, key).await?.map(|(m, _)| m.size)
        };
        let added = size as i64 - old.unwrap_or(0) as i64;
        Ok(self
            .model
            .check_quotas(bucket, old.is_none(), added)
            .await?)
    }

    /// The metadata and timestamp of an object's live version, if any.
    /// A write's preconditions (`If-None-Match: *`, `If-Match: etag`...),
    /// checked against what a quorum holds now, so a request bound to fail
    /// fails before its data is copied or assembled. Only a first look: the
    /// check that counts is made again, atomically, when the object is
    /// written ([`S3Server::commit_checked`]).
    pub(crate) async fn precheck(
        &self,
        pre: &Preconditions,
        bucket: &Bucket,
        key: &str,
    ) -> Result<(), S3Error> {
        if pre.is_empty() {
            return Ok(());
        }
        let current = self.current_meta(bucket, key).await?;
        let cur = current.as_ref().map(|(m, ts)| (m.etag.as_str(), *ts));
        if pre.evaluate(cur, false) != Outcome::Proceed {
            return Err(pre.refusal(cur.is_some()));
        }
        Ok(())
    }

    /// Write a new version of an object (PUT, Copy, CompleteMultipartUpload).
    /// Without preconditions, an ordinary ordered write. With them, the
    /// condition and the write are one step, by consensus among the key's
    /// replicas ([`crate::table::Table::cas`]): of racing writers exactly
    /// one whose condition holds wins, the others get 412, and the version
    /// a winner replaced is the one its condition named. A refused version's
    /// blocks are released. `object`'s time becomes the version's.
    /// `attached`: the block of an [`ObjectData::Attached`] version, sent
    /// with the item (a conditional write stores it on the item's
    /// replicas first: consensus rounds carry no blocks).
    pub(crate) async fn commit_checked(
        &self,
        object: &mut Object,
        pre: &Preconditions,
        first: Option<Promises<Object>>,
        attached: Option<&Attachment>,
    ) -> Result<(), S3Error> {
        if pre.is_empty() {
            self.model.commit_object_with(object, attached).await?;
            return Ok(());
        }
        if let Some(a) = attached {
            let p = crate::table::data::partition_of_key(&object.pk);
            self.model.blocks.put_in(p, a.hash, a.block.clone()).await?;
        }
        let uuid = object.version.uuid;
        let decided = self
            .model
            .objects
            .cas(
                &object.pk,
                object.key.as_bytes(),
                first,
                // Ours is in the item (with versioning, a newer version may
                // be current above it).
                |o| o.versions().any(|v| v.uuid == uuid),
                |cur| {
                    if holds(pre, cur) {
                        Ok(object.clone())
                    } else {
                        Err(cur.and_then(Object::live).is_some())
                    }
                },
            )
            .await;
        let refused = match decided {
            Ok(Ok(written)) => {
                *object = written;
                return Ok(());
            }
            Ok(Err(exists)) => pre.refusal(exists),
            Err(e) => e.into(),
        };
        if matches!(object.version.data, ObjectData::Blocks { .. }) {
            // Nothing refers to this version: its blocks go.
            self.model.forget_version(uuid);
        }
        Err(refused)
    }

    async fn current_meta(
        &self,
        bucket: &Bucket,
        key: &str,
    ) -> Result<Option<(ObjectMeta, u64)>, S3Error> {
        let pk = object_pk(&bucket.id, bucket.shards, key);
        let obj = self.model.objects.get(&pk, key.as_bytes()).await?;
        Ok(obj.as_ref().and_then(Object::live).and_then(|v| {
            let meta = v.data.meta()?;
            Some((meta.clone(), v.timestamp))
        }))
    }

    pub(crate) async fn get_object(
        &self,
        r: &S3Request,
        head: bool,
    ) -> Result<Response<Body>, S3Error> {
        let (bucket, v) = self.load_object(r).await?;
        let key = r.key.as_deref().unwrap_or_default();
        let partition =
            crate::table::data::partition_of_key(&object_pk(&bucket.id, bucket.shards, key));
        let mut resp = self
            .object_response(r.req.headers(), &r.query, &v, partition, head)
            .await?;
        add_version_header(resp.headers_mut(), &bucket, &v);
        object_lock::add_lock_headers(resp.headers_mut(), &v.lock);
        tagging::add_tag_count_header(resp.headers_mut(), &v);
        Ok(resp)
    }

    /// The answer to a GET or HEAD of an object: preconditions, range,
    /// headers (with `response-*` overrides from the query), body
    /// (`partition`: the object's).
    pub(crate) async fn object_response(
        &self,
        headers: &http::HeaderMap,
        query: &std::collections::BTreeMap<String, String>,
        v: &ObjectVersion,
        partition: usize,
        head: bool,
    ) -> Result<Response<Body>, S3Error> {
        let meta = v.data.meta().ok_or_else(S3Error::no_such_key)?;
        let put = |h: &mut http::HeaderMap, k: &str, v: &str| {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                h.insert(k, v);
            }
        };
        match Preconditions::from_headers(headers, "")
            .evaluate(Some((&meta.etag, v.timestamp)), true)
        {
            Outcome::Proceed => {}
            Outcome::Failed => return Err(precondition_failed()),
            Outcome::NotModified => {
                let mut resp = Response::new(empty());
                *resp.status_mut() = StatusCode::NOT_MODIFIED;
                let h = resp.headers_mut();
                put(h, "etag", &format!("\"{}\"", meta.etag));
                put(h, "last-modified", &http_date(v.timestamp));
                return Ok(resp);
            }
        }
        let range_header = headers.get("range").and_then(|v| v.to_str().ok());
        let part = match query.get("partNumber") {
            Some(_) if range_header.is_some() => {
                return Err(S3Error::invalid_request(
                    "Cannot specify both Range header and partNumber query parameter",
                ));
            }
            Some(n) => Some(part_range(meta, n)?),
            None => None,
        };
        let range = match (range_header, &part) {
            (Some(h), _) => parse_range(h, meta.size)?,
            (None, Some(p)) => p.range,
            (None, None) => None,
        };
        let (start, end) = range.unwrap_or((0, meta.size));
        let mut resp = if head {
            Response::new(empty())
        } else {
            Response::new(self.object_body(v, partition, start, end).await?)
        };
        let h = resp.headers_mut();
        put(h, "content-length", &(end - start).to_string());
        put(h, "etag", &format!("\"{}\"", meta.etag));
        put(h, "last-modified", &http_date(v.timestamp));
        put(h, "accept-ranges", "bytes");
        put(
            h,
            "content-type",
            meta.content_type
                .as_deref()
                .unwrap_or("application/octet-stream"),
        );
        for (k, v) in &meta.headers {
            put(h, k, v);
        }
        // Response header overrides (`?response-content-type=...`).
        for (param, header) in [
            ("response-content-type", "content-type"),
            ("response-content-language", "content-language"),
            ("response-expires", "expires"),
            ("response-cache-control", "cache-control"),
            ("response-content-disposition", "content-disposition"),
            ("response-content-encoding", "content-encoding"),
        ] {
            if let Some(v) = query.get(param) {
                put(h, header, v);
            }
        }
        for (k, v) in &meta.user_meta {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(format!("x-amz-meta-{k}").as_bytes()),
                HeaderValue::from_str(v),
            ) {
                h.insert(name, value);
            }
        }
        if let Some(p) = &part
            && p.count > 0
        {
            put(h, "x-amz-mp-parts-count", &p.count.to_string());
        }
        let checksum_mode = headers
            .get("x-amz-checksum-mode")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|m| m.eq_ignore_ascii_case("ENABLED"));
        if checksum_mode {
            // The whole object's checksum, or the part's; none for a range.
            match (&part, range) {
                (Some(p), _) if p.count > 0 => {
                    if let Some(c) = &p.checksum {
                        checksum::add_checksum_headers(h, c, false);
                    }
                }
                (_, None) | (Some(_), _) => {
                    if let Some(c) = &meta.checksum {
                        checksum::add_checksum_headers(h, c, true);
                    }
                }
                (None, Some(_)) => {}
            }
        }
        if range.is_some() {
            put(
                h,
                "content-range",
                &format!("bytes {}-{}/{}", start, end.saturating_sub(1), meta.size),
            );
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        }
        Ok(resp)
    }

    /// The bytes `start..end` of an object, streamed block by block.
    /// `partition`: the object's (where an attached block is).
    pub(crate) async fn object_body(
        &self,
        v: &ObjectVersion,
        partition: usize,
        start: u64,
        end: u64,
    ) -> Result<Body, S3Error> {
        match &v.data {
            ObjectData::Inline { bytes, .. } => {
                let s = (start as usize).min(bytes.len());
                let e = (end as usize).min(bytes.len());
                Ok(super::server::full(Bytes::copy_from_slice(&bytes[s..e])))
            }
            ObjectData::Attached { hash, .. } => {
                let block = self.model.blocks.get_attached(partition, *hash).await?;
                let s = (start as usize).min(block.len());
                let e = (end as usize).min(block.len());
                Ok(super::server::full(block.slice(s..e)))
            }
            ObjectData::Blocks { meta } => {
                let uuid = v.uuid;
                let model = self.model.clone();
                let (tx, rx) = tokio::sync::mpsc::channel::<
                    Result<http_body::Frame<Bytes>, std::io::Error>,
                >(2);
                let size = meta.size;
                tokio::spawn(async move {
                    if let Err(e) = stream_blocks(&model, uuid, size, start, end, &tx).await {
                        tracing::warn!(
                            "GET of version {} failed mid-stream: {e}",
                            hex::encode(uuid)
                        );
                        let _ = tx.send(Err(std::io::Error::other(e))).await;
                    }
                });
                let stream = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|x| (x, rx))
                });
                Ok(http_body_util::StreamBody::new(stream).boxed())
            }
            ObjectData::Removed | ObjectData::DeleteMarker => Err(S3Error::no_such_key()),
        }
    }

    /// DeleteObject: see [`S3Server::delete_one`].
    pub(crate) async fn delete_object(&self, r: &S3Request) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(r).await?;
        self.check_write(r, &bucket)?;
        let key = r.key.clone().unwrap_or_default();
        let wanted = versioning::wanted(&r.query)?;
        let bypass = object_lock::bypass(r, &bucket);
        let done = self.delete_one(&bucket, &key, wanted, bypass).await?;
        let mut resp = Response::new(empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let h = resp.headers_mut();
        if done.marker {
            h.insert("x-amz-delete-marker", HeaderValue::from_static("true"));
        }
        if let Some(id) = done.version_id
            && let Ok(v) = HeaderValue::from_str(&id)
        {
            h.insert("x-amz-version-id", v);
        }
        Ok(resp)
    }

    /// Delete a key as S3 does. Without a version id: in a bucket without
    /// versioning the object goes; with versioning enabled a delete marker
    /// becomes its latest version (suspended: the `null` version is
    /// replaced by one). With a version id, that version (or marker) goes
    /// for good (unless object lock forbids: `bypass` bypasses GOVERNANCE
    /// retention); deleting one that does not exist succeeds.
    pub(crate) async fn delete_one(
        &self,
        bucket: &Bucket,
        key: &str,
        wanted: versioning::Wanted,
        bypass: bool,
    ) -> Result<Deleted, S3Error> {
        let pk = object_pk(&bucket.id, bucket.shards, key);
        let Some(slot) = wanted else {
            let unversioned = bucket.versioning.value == Versioning::Unversioned;
            let data = if unversioned {
                ObjectData::Removed
            } else {
                ObjectData::DeleteMarker
            };
            let mut object = Object::new(
                pk,
                key.to_string(),
                ObjectVersion::in_bucket(new_version_id(), data, bucket),
            );
            self.model.commit_object(&mut object).await?;
            return Ok(Deleted {
                marker: !unversioned,
                version_id: versioning::version_header(bucket, &object.version),
            });
        };
        let id = match slot {
            Some(u) => hex::encode(u),
            None => "null".to_string(),
        };
        let current = self.model.objects.get(&pk, key.as_bytes()).await?;
        let Some(v) = current.as_ref().and_then(|o| o.find(slot)) else {
            return Ok(Deleted {
                marker: false,
                version_id: Some(id),
            });
        };
        let marker = v.data == ObjectData::DeleteMarker;
        if let Some(why) = v
            .lock
            .refuses_delete(hangar_common::clock::wall_ms(), bypass)
        {
            return Err(S3Error::access_denied(why));
        }
        let gone = Object::new(pk, key.to_string(), v.removed());
        self.model.objects.insert(&gone).await?;
        Ok(Deleted {
            marker,
            version_id: Some(id),
        })
    }
}

/// What a delete did (for its response headers).
pub(crate) struct Deleted {
    /// A delete marker was made, or the version deleted was one.
    pub marker: bool,
    /// The version made or deleted, as S3 names it.
    pub version_id: Option<String>,
}

type FrameTx = tokio::sync::mpsc::Sender<Result<http_body::Frame<Bytes>, std::io::Error>>;

/// Fetch the blocks covering `start..end` in order, one ahead, and send
/// the requested bytes.
async fn stream_blocks(
    model: &std::sync::Arc<crate::model::Model>,
    uuid: VersionId,
    size: u64,
    start: u64,
    end: u64,
    tx: &FrameTx,
) -> Result<(), String> {
    let mut after: Option<Vec<u8>> = None;
    let mut next: Option<(BlockEntry, JoinHandle<Result<Bytes, String>>)> = None;
    let fetch = |b: BlockEntry| {
        let blocks = model.blocks.clone();
        tokio::spawn(async move { blocks.get(b.hash).await.map_err(|e| e.to_string()) })
    };
    loop {
        let chunks = model
            .version_page(&uuid, after.as_deref(), 16, size)
            .await
            .map_err(|e| e.to_string())?;
        let last_page = chunks.len() < 16;
        for c in &chunks {
            after = Some(c.index.to_vec());
            for b in &c.blocks {
                let b_end = b.offset + b.size as u64;
                if b_end <= start || b.offset >= end {
                    continue;
                }
                let prev = next.replace((*b, fetch(*b)));
                if let Some((pb, h)) = prev {
                    send_block(pb, h, start, end, tx).await?;
                }
            }
        }
        if last_page {
            break;
        }
    }
    if let Some((pb, h)) = next {
        send_block(pb, h, start, end, tx).await?;
    }
    Ok(())
}

async fn send_block(
    b: BlockEntry,
    h: JoinHandle<Result<Bytes, String>>,
    start: u64,
    end: u64,
    tx: &FrameTx,
) -> Result<(), String> {
    let data = h.await.map_err(|e| e.to_string())??;
    let s = start.saturating_sub(b.offset) as usize;
    let e = ((end - b.offset) as usize).min(data.len());
    if s < e {
        tx.send(Ok(http_body::Frame::data(data.slice(s..e))))
            .await
            .map_err(|_| "client went away".to_string())?;
    }
    Ok(())
}

/// Parse a `Range: bytes=...` header against an object size. `None` means
/// the header is to be ignored (as S3 does with unparseable ranges);
/// ranges past the end are an error (416).
/// What a `partNumber` read returns.
struct PartRead {
    /// The part's bytes (None: the whole object, of one part).
    range: Option<(u64, u64)>,
    /// The object's parts (0: not a multipart object).
    count: usize,
    checksum: Option<StoredChecksum>,
}

/// The bytes of part `n` (1-based, as uploaded) of an object: a
/// multipart object's part, or the whole of any other object as its one
/// part.
fn part_range(meta: &ObjectMeta, n: &str) -> Result<PartRead, S3Error> {
    let n: u32 = n
        .trim()
        .parse()
        .ok()
        .filter(|n| (1..=super::multipart::MAX_PART_NUMBER).contains(n))
        .ok_or_else(|| {
            S3Error::new(
                "InvalidArgument",
                StatusCode::BAD_REQUEST,
                "Part number must be an integer between 1 and 10000, inclusive",
            )
        })?;
    let not_satisfiable = || {
        S3Error::new(
            "InvalidPartNumber",
            StatusCode::RANGE_NOT_SATISFIABLE,
            "The requested partnumber is not satisfiable",
        )
    };
    if meta.parts.is_empty() {
        if meta.etag.contains('-') {
            // Completed before part sizes were kept (protocol 8 or older).
            return Err(S3Error::invalid_request(
                "this object's part sizes were not recorded (it was completed by an older Hangar): read it with a Range instead",
            ));
        }
        return if n == 1 {
            Ok(PartRead {
                range: None,
                count: 0,
                checksum: None,
            })
        } else {
            Err(not_satisfiable())
        };
    }
    let mut start = 0u64;
    for p in &meta.parts {
        if p.number == n {
            return Ok(PartRead {
                range: Some((start, start + p.size)),
                count: meta.parts.len(),
                checksum: p.checksum.clone(),
            });
        }
        start += p.size;
    }
    Err(not_satisfiable())
}

fn parse_range(h: &str, size: u64) -> Result<Option<(u64, u64)>, S3Error> {
    let invalid = || {
        S3Error::new(
            "InvalidRange",
            StatusCode::RANGE_NOT_SATISFIABLE,
            "The requested range is not satisfiable",
        )
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // multiple ranges: serve the whole object, as S3
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.is_empty(), b.is_empty()) {
        (true, false) => {
            let n: u64 = b.parse().map_err(|_| invalid())?;
            if n == 0 {
                return Err(invalid());
            }
            (size.saturating_sub(n), size)
        }
        (false, true) => {
            let s: u64 = a.parse().map_err(|_| invalid())?;
            (s, size)
        }
        (false, false) => {
            let s: u64 = a.parse().map_err(|_| invalid())?;
            let e: u64 = b.parse().map_err(|_| invalid())?;
            if e < s {
                return Ok(None);
            }
            (s, (e + 1).min(size))
        }
        (true, true) => return Ok(None),
    };
    if range.0 >= size {
        return Err(invalid());
    }
    Ok(Some(range))
}

fn chunked_error(e: super::chunked::ChunkedError) -> S3Error {
    let code = e.s3_code();
    let status = if code == "SignatureDoesNotMatch" {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::BAD_REQUEST
    };
    S3Error::new(code, status, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chain's digest is the body's whatever the cut: blocks of any
    /// size, more of them than may wait, a tail, or nothing at all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_md5_chain_digests_its_blocks_in_order() {
        let body: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
            .collect();
        let whole: [u8; 16] = md5::Md5::digest(&body).into();
        for cut in [4096usize, 65_537, 100_000, 300_000] {
            for tail in [0usize, 1, 999] {
                let (blocks, rest) = body.split_at(body.len() - tail);
                let mut chain = Md5Chain::default();
                for b in blocks.chunks(cut) {
                    chain.feed(Bytes::copy_from_slice(b)).await;
                    assert!(
                        chain.running.len() <= MD5_AHEAD,
                        "at most {MD5_AHEAD} blocks wait"
                    );
                }
                let got = chain.finish(rest).await.expect("digest");
                assert_eq!(got, whole, "blocks of {cut} bytes, a tail of {tail}");
            }
        }
        let empty: [u8; 16] = md5::Md5::digest(b"").into();
        assert_eq!(
            Md5Chain::default().finish(&[]).await.expect("digest"),
            empty
        );
    }

    #[test]
    fn ranges_parse_like_s3() {
        assert_eq!(parse_range("bytes=0-9", 100).unwrap(), Some((0, 10)));
        assert_eq!(parse_range("bytes=90-", 100).unwrap(), Some((90, 100)));
        assert_eq!(parse_range("bytes=-10", 100).unwrap(), Some((90, 100)));
        assert_eq!(parse_range("bytes=-500", 100).unwrap(), Some((0, 100)));
        assert_eq!(parse_range("bytes=50-500", 100).unwrap(), Some((50, 100)));
        assert!(parse_range("bytes=100-", 100).is_err());
        assert!(parse_range("bytes=abc-", 100).is_err());
        assert_eq!(parse_range("lines=1-2", 100).unwrap(), None);
    }
}
