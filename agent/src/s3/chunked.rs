//! Incremental decoding of `aws-chunked` request bodies.
//!
//! SDKs stream uploads of unknown length (and, lately, every upload with a
//! checksum) in this framing, announced by `x-amz-content-sha256`:
//!
//! ```text
//! STREAMING-AWS4-HMAC-SHA256-PAYLOAD (each chunk signed):
//!   <hex size>;chunk-signature=<64 hex>\r\n<data>\r\n ... 0;chunk-signature=<sig>\r\n\r\n
//! STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER (same, then signed trailers):
//!   ... 0;chunk-signature=<sig>\r\nx-amz-checksum-crc32:<b64>\r\nx-amz-trailer-signature:<sig>\r\n\r\n
//! STREAMING-UNSIGNED-PAYLOAD-TRAILER (no signatures):
//!   <hex size>\r\n<data>\r\n ... 0\r\nx-amz-checksum-crc32:<b64>\r\n\r\n
//! ```
//!
//! The decoder is a push parser (bytes in, payload out) so it works with any
//! body stream and can be tested by splitting input anywhere. Memory stays
//! bounded: at most one header/trailer line is buffered, and payload is
//! passed on as it arrives — except in signed modes, where a chunk's data is
//! held (as the `Bytes` it arrived in, not copied) until its signature has
//! been checked, so nothing unauthenticated is ever handed on. That is why
//! chunks are capped at [`MAX_CHUNK_SIZE`].
//!
//! The trailing checksums are returned, not checked: the caller computes the
//! checksum over the decoded data and compares.
//!
//! Reference: <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html>
//! and <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming-trailers.html>.

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};

use crate::s3::sigv4::{self, ChunkSigningContext, EMPTY_SHA256_HEX, PayloadMode};

/// Largest chunk accepted. SDKs use 64 KiB to a few MiB; the cap bounds what
/// a signed chunk holds in memory until its signature is checked.
pub const MAX_CHUNK_SIZE: u64 = 16 * 1024 * 1024;

/// Longest chunk header or trailer line, CRLF included. A signed chunk header
/// is under 100 bytes and a checksum trailer under 100; the slack allows
/// chunk extensions and whitespace.
pub const MAX_LINE_LEN: usize = 4096;

/// Most trailing headers accepted (SDKs send one checksum).
pub const MAX_TRAILERS: usize = 16;

const TRAILER_SIGNATURE: &str = "x-amz-trailer-signature";

/// Why an aws-chunked body was refused. [`ChunkedError::s3_code`] gives the
/// S3 error code to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    /// The payload mode is not an aws-chunked one, or a signed mode came
    /// without its signing context (a caller bug as much as a client one).
    #[error("{0}")]
    InvalidMode(String),
    /// A chunk header line is not `<hex size>[;chunk-signature=<sig>]`.
    #[error("malformed aws-chunked chunk header {line:?}: {reason}")]
    MalformedChunkHeader { line: String, reason: &'static str },
    /// A chunk header or trailer line exceeds [`MAX_LINE_LEN`].
    #[error("aws-chunked line longer than {MAX_LINE_LEN} bytes")]
    LineTooLong,
    /// A line was not terminated by CRLF, or chunk data was not followed by it.
    #[error("malformed aws-chunked body: {0}")]
    MissingCrlf(&'static str),
    /// A chunk larger than [`MAX_CHUNK_SIZE`].
    #[error("aws-chunked chunk of {size} bytes is larger than the {MAX_CHUNK_SIZE} byte maximum")]
    ChunkTooLarge { size: u64 },
    /// A trailing header is malformed, unexpected or repeated.
    #[error("malformed aws-chunked trailer: {0}")]
    MalformedTrailer(String),
    /// A chunk or trailer signature does not match.
    #[error(
        "the aws-chunked {0} signature we calculated does not match the signature you provided"
    )]
    SignatureDoesNotMatch(&'static str),
    /// The body ended before the final chunk and trailers.
    #[error("the request body ended before {0}")]
    Truncated(&'static str),
    /// Bytes after the end of the aws-chunked body.
    #[error("unexpected data after the end of the aws-chunked body")]
    TrailingData,
    /// An earlier error already ended decoding.
    #[error("the aws-chunked body was already rejected")]
    AlreadyFailed,
}

impl ChunkedError {
    /// The S3 error code (`<Code>` of the XML error) for this failure.
    pub(crate) fn s3_code(&self) -> &'static str {
        match self {
            ChunkedError::SignatureDoesNotMatch(_) => "SignatureDoesNotMatch",
            ChunkedError::Truncated(_) => "IncompleteBody",
            ChunkedError::InvalidMode(_)
            | ChunkedError::MalformedTrailer(_)
            | ChunkedError::MalformedChunkHeader { .. }
            | ChunkedError::LineTooLong
            | ChunkedError::MissingCrlf(_)
            | ChunkedError::ChunkTooLarge { .. }
            | ChunkedError::TrailingData
            | ChunkedError::AlreadyFailed => "InvalidRequest",
        }
    }
}

/// Trailing headers sent after the final chunk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trailers {
    /// `(lowercase name, trimmed value)` in the order sent, the trailer
    /// signature excluded. In practice the `x-amz-checksum-*` header named by
    /// the request's `x-amz-trailer`.
    pub checksums: Vec<(String, String)>,
}

/// Signature chaining state for signed modes.
struct Signer {
    ctx: ChunkSigningContext,
    /// The signature the next one chains from (lowercase hex).
    previous: String,
}

impl Signer {
    /// Checks `signature` over a chunk whose data hashed to `data_sha256`, and
    /// makes it the link for the next one.
    fn verify_chunk(&mut self, data_sha256: &[u8], signature: String) -> Result<(), ChunkedError> {
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{EMPTY_SHA256_HEX}\n{}",
            self.ctx.datetime,
            self.ctx.scope,
            self.previous,
            hex::encode(data_sha256)
        );
        self.check(&string_to_sign, signature, "chunk")
    }

    /// Checks the trailer signature over the canonical trailer text
    /// (`name:value\n` per trailer).
    fn verify_trailer(&mut self, canonical: &str, signature: String) -> Result<(), ChunkedError> {
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{}\n{}",
            self.ctx.datetime,
            self.ctx.scope,
            self.previous,
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        self.check(&string_to_sign, signature, "trailer")
    }

    fn check(
        &mut self,
        string_to_sign: &str,
        signature: String,
        what: &'static str,
    ) -> Result<(), ChunkedError> {
        if sigv4::verify_signature(&self.ctx.signing_key, string_to_sign.as_bytes(), &signature) {
            self.previous = signature;
            Ok(())
        } else {
            Err(ChunkedError::SignatureDoesNotMatch(what))
        }
    }
}

/// A signed chunk whose data is held until its signature is checked.
struct PendingChunk {
    signature: String,
    hasher: Sha256,
    held: Vec<Bytes>,
}

enum State {
    /// Reading `<hex size>[;ext]\r\n` into `line`.
    ChunkHeader,
    /// Inside chunk data.
    Data {
        remaining: u64,
        pending: Option<PendingChunk>,
    },
    /// After chunk data: expecting `\r` (`seen_cr` false) then `\n`.
    DataEnd {
        seen_cr: bool,
    },
    /// After the final chunk: reading trailer lines into `line` until an
    /// empty one (for modes without trailers, only that empty line).
    Trailer,
    Done,
    Failed,
}

/// Decodes one aws-chunked body: [`feed`](Self::feed) the raw body as it
/// arrives, then call [`finish`](Self::finish) at its end.
pub struct ChunkedDecoder {
    state: State,
    /// Partial header/trailer line (bounded by [`MAX_LINE_LEN`]).
    line: BytesMut,
    signer: Option<Signer>,
    trailers_allowed: bool,
    trailers: Vec<(String, String)>,
    trailer_signature: Option<String>,
}

impl ChunkedDecoder {
    /// A decoder for a body in `mode`, which must be one of the STREAMING-*
    /// modes. Signed modes need the context [`sigv4::verify`] returned.
    pub(crate) fn new(
        mode: PayloadMode,
        signing: Option<ChunkSigningContext>,
    ) -> Result<Self, ChunkedError> {
        if !mode.is_chunked() {
            return Err(ChunkedError::InvalidMode(format!(
                "Content-Encoding aws-chunked requires x-amz-content-sha256 to be a STREAMING-* \
                 value, not {mode:?}"
            )));
        }
        let signer = match (mode.has_chunk_signatures(), signing) {
            (true, Some(ctx)) => Some(Signer {
                previous: ctx.seed_signature.to_ascii_lowercase(),
                ctx,
            }),
            (true, None) => {
                return Err(ChunkedError::InvalidMode(format!(
                    "{mode:?} needs the request's signing context to verify chunk signatures"
                )));
            }
            (false, _) => None,
        };
        Ok(ChunkedDecoder {
            state: State::ChunkHeader,
            line: BytesMut::new(),
            signer,
            trailers_allowed: mode.has_trailer(),
            trailers: Vec::new(),
            trailer_signature: None,
        })
    }

    /// Feeds raw body bytes as they arrive; returns the payload bytes now
    /// ready to use (slices of `input`, or of earlier input held for a chunk
    /// signature). After an error every call fails.
    pub(crate) fn feed(&mut self, input: Bytes) -> Result<Vec<Bytes>, ChunkedError> {
        if matches!(self.state, State::Failed) {
            return Err(ChunkedError::AlreadyFailed);
        }
        let mut out = Vec::new();
        match self.feed_inner(input, &mut out) {
            Ok(()) => Ok(out),
            Err(err) => {
                self.state = State::Failed;
                self.line.clear();
                Err(err)
            }
        }
    }

    /// Call at the end of the body: fails unless the final chunk (and, in
    /// trailer modes, the trailer section) was complete. Returns the
    /// trailers, which the caller checks against the data.
    pub(crate) fn finish(&mut self) -> Result<Trailers, ChunkedError> {
        let missing = match &self.state {
            State::Done => {
                return Ok(Trailers {
                    checksums: self.trailers.clone(),
                });
            }
            State::Failed => return Err(ChunkedError::AlreadyFailed),
            State::ChunkHeader => "the final zero-length chunk",
            State::Data { .. } => "the end of a chunk's data",
            State::DataEnd { .. } => "the CRLF after a chunk's data",
            State::Trailer if self.trailers_allowed => "the end of the trailing headers",
            State::Trailer => "the CRLF ending the final chunk",
        };
        self.state = State::Failed;
        Err(ChunkedError::Truncated(missing))
    }

    fn feed_inner(&mut self, mut input: Bytes, out: &mut Vec<Bytes>) -> Result<(), ChunkedError> {
        while !input.is_empty() {
            match &mut self.state {
                State::ChunkHeader => {
                    if let Some(line) = self.take_line(&mut input)? {
                        self.start_chunk(&line)?;
                    }
                }
                State::Data { remaining, pending } => {
                    let n = usize::try_from(*remaining).map_or(input.len(), |r| r.min(input.len()));
                    let piece = input.split_to(n);
                    *remaining -= n as u64;
                    match pending {
                        Some(chunk) => {
                            chunk.hasher.update(&piece);
                            chunk.held.push(piece);
                        }
                        None => out.push(piece),
                    }
                    if *remaining == 0 {
                        if let Some(chunk) = pending.take() {
                            let digest = chunk.hasher.finalize();
                            self.signer_mut()?.verify_chunk(&digest, chunk.signature)?;
                            out.extend(chunk.held);
                        }
                        self.state = State::DataEnd { seen_cr: false };
                    }
                }
                State::DataEnd { seen_cr } => {
                    let expected = if *seen_cr { b'\n' } else { b'\r' };
                    if input[0] != expected {
                        return Err(ChunkedError::MissingCrlf(
                            "chunk data is not followed by CRLF (chunk size wrong?)",
                        ));
                    }
                    let _ = input.split_to(1);
                    if *seen_cr {
                        self.state = State::ChunkHeader;
                    } else {
                        *seen_cr = true;
                    }
                }
                State::Trailer => {
                    if let Some(line) = self.take_line(&mut input)? {
                        self.trailer_line(&line)?;
                    }
                }
                State::Done => return Err(ChunkedError::TrailingData),
                State::Failed => return Err(ChunkedError::AlreadyFailed),
            }
        }
        Ok(())
    }

    fn signer_mut(&mut self) -> Result<&mut Signer, ChunkedError> {
        // `new` guarantees a signer whenever chunks carry signatures.
        self.signer.as_mut().ok_or_else(|| {
            ChunkedError::InvalidMode("chunk signature to check without a signing context".into())
        })
    }

    /// Moves bytes from `input` into the line buffer up to and including
    /// `\n`; returns the completed line without its CRLF.
    fn take_line(&mut self, input: &mut Bytes) -> Result<Option<Bytes>, ChunkedError> {
        let (take, complete) = match input.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (input.len(), false),
        };
        if self.line.len() + take > MAX_LINE_LEN {
            return Err(ChunkedError::LineTooLong);
        }
        self.line.extend_from_slice(&input.split_to(take));
        if !complete {
            return Ok(None);
        }
        let mut line = self.line.split().freeze();
        if !line.ends_with(b"\r\n") {
            return Err(ChunkedError::MissingCrlf(
                "a line ends with LF instead of CRLF",
            ));
        }
        line.truncate(line.len() - 2);
        Ok(Some(line))
    }

    /// Parses a chunk header and moves to its data (or to the trailers after
    /// the final, zero-length chunk).
    fn start_chunk(&mut self, line: &[u8]) -> Result<(), ChunkedError> {
        let malformed = |reason: &'static str| ChunkedError::MalformedChunkHeader {
            line: String::from_utf8_lossy(line).into_owned(),
            reason,
        };
        let (size_hex, extensions) = match line.iter().position(|&b| b == b';') {
            Some(i) => (&line[..i], Some(&line[i + 1..])),
            None => (line, None),
        };
        // from_str_radix would accept a leading '+': check digits ourselves.
        if size_hex.is_empty() || !size_hex.iter().all(u8::is_ascii_hexdigit) {
            return Err(malformed("the size is not hexadecimal"));
        }
        let significant = size_hex.iter().skip_while(|&&b| b == b'0');
        if significant.clone().count() > 16 {
            return Err(malformed("the size does not fit in 64 bits"));
        }
        let size = significant.fold(0u64, |acc, &b| (acc << 4) | u64::from(hex_value(b)));
        if size > MAX_CHUNK_SIZE {
            return Err(ChunkedError::ChunkTooLarge { size });
        }

        let pending = match &self.signer {
            Some(_) => {
                let ext = extensions.ok_or_else(|| malformed("the chunk-signature is missing"))?;
                let signature = ext
                    .strip_prefix(b"chunk-signature=")
                    .ok_or_else(|| malformed("expected chunk-signature=<signature>"))?;
                if signature.len() != 64 || !signature.iter().all(u8::is_ascii_hexdigit) {
                    return Err(malformed("the chunk-signature is not 64 hex digits"));
                }
                Some(PendingChunk {
                    signature: String::from_utf8_lossy(signature).to_ascii_lowercase(),
                    hasher: Sha256::new(),
                    held: Vec::new(),
                })
            }
            // Unsigned framing is plain HTTP chunking: extensions are ignored.
            None => None,
        };

        if size == 0 {
            if let Some(chunk) = pending {
                let digest = chunk.hasher.finalize();
                self.signer_mut()?.verify_chunk(&digest, chunk.signature)?;
            }
            self.state = State::Trailer;
        } else {
            self.state = State::Data {
                remaining: size,
                pending,
            };
        }
        Ok(())
    }

    /// Handles one line after the final chunk; the empty line ends the body.
    fn trailer_line(&mut self, line: &[u8]) -> Result<(), ChunkedError> {
        if line.is_empty() {
            return self.end_trailers();
        }
        let bad = |msg: String| ChunkedError::MalformedTrailer(msg);
        if !self.trailers_allowed {
            return Err(bad(
                "trailing headers are only allowed with a *-TRAILER x-amz-content-sha256".into(),
            ));
        }
        let text = std::str::from_utf8(line).map_err(|_| bad("it is not valid UTF-8".into()))?;
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| bad(format!("expected name:value, found {text:?}")))?;
        // AWS accepts whitespace around the colon.
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim().to_string();
        if name.is_empty() {
            return Err(bad(format!("empty trailer name in {text:?}")));
        }
        if self.trailer_signature.is_some() {
            return Err(bad(format!(
                "{name} comes after x-amz-trailer-signature, which must be last"
            )));
        }
        if name == TRAILER_SIGNATURE {
            if self.signer.is_none() {
                return Err(bad(
                    "x-amz-trailer-signature in an unsigned (STREAMING-UNSIGNED-PAYLOAD-TRAILER) \
                     body"
                        .into(),
                ));
            }
            if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad("x-amz-trailer-signature is not 64 hex digits".into()));
            }
            self.trailer_signature = Some(value.to_ascii_lowercase());
            return Ok(());
        }
        if self.trailers.iter().any(|(n, _)| *n == name) {
            return Err(bad(format!("{name} is given twice")));
        }
        if self.trailers.len() >= MAX_TRAILERS {
            return Err(bad(format!("more than {MAX_TRAILERS} trailing headers")));
        }
        self.trailers.push((name, value));
        Ok(())
    }

    fn end_trailers(&mut self) -> Result<(), ChunkedError> {
        if self.trailers_allowed && self.signer.is_some() {
            let signature = self.trailer_signature.take().ok_or_else(|| {
                ChunkedError::MalformedTrailer(
                    "x-amz-trailer-signature is missing from a signed trailer".into(),
                )
            })?;
            let canonical: String = self
                .trailers
                .iter()
                .map(|(name, value)| format!("{name}:{value}\n"))
                .collect();
            self.signer_mut()?.verify_trailer(&canonical, signature)?;
        }
        self.state = State::Done;
        Ok(())
    }
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use hmac::{Hmac, Mac};

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const DATETIME: &str = "20130524T000000Z";
    const SCOPE: &str = "20130524/us-east-1/s3/aws4_request";
    const SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";

    fn context(seed: &str) -> ChunkSigningContext {
        ChunkSigningContext {
            signing_key: sigv4::signing_key(SECRET, "20130524", "us-east-1", "s3"),
            datetime: DATETIME.into(),
            scope: SCOPE.into(),
            seed_signature: seed.into(),
        }
    }

    /// Straightforward HMAC-SHA256 for building test bodies.
    fn hmac_hex(data: &str) -> String {
        let key = sigv4::signing_key(SECRET, "20130524", "us-east-1", "s3");
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("hmac");
        mac.update(data.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    fn chunk_sig(previous: &str, data: &[u8]) -> String {
        hmac_hex(&format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{DATETIME}\n{SCOPE}\n{previous}\n{EMPTY_SHA256_HEX}\n{}",
            hex::encode(Sha256::digest(data))
        ))
    }

    /// Encodes a signed body; returns it with the chunk signatures used.
    fn signed_body(
        data: &[u8],
        chunk: usize,
        trailers: Option<&[(&str, &str)]>,
    ) -> (Vec<u8>, Vec<String>) {
        let mut out = Vec::new();
        let mut sigs = Vec::new();
        let mut previous = SEED.to_string();
        for piece in data.chunks(chunk).chain(std::iter::once(&[][..])) {
            let sig = chunk_sig(&previous, piece);
            out.extend_from_slice(
                format!("{:x};chunk-signature={sig}\r\n", piece.len()).as_bytes(),
            );
            out.extend_from_slice(piece);
            if !piece.is_empty() {
                out.extend_from_slice(b"\r\n");
            }
            sigs.push(sig.clone());
            previous = sig;
        }
        if let Some(trailers) = trailers {
            let mut canonical = String::new();
            for (name, value) in trailers {
                out.extend_from_slice(format!("{name}:{value}\r\n").as_bytes());
                canonical.push_str(&format!("{name}:{value}\n"));
            }
            let sig = hmac_hex(&format!(
                "AWS4-HMAC-SHA256-TRAILER\n{DATETIME}\n{SCOPE}\n{previous}\n{}",
                hex::encode(Sha256::digest(canonical.as_bytes()))
            ));
            out.extend_from_slice(format!("x-amz-trailer-signature:{sig}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        (out, sigs)
    }

    fn unsigned_body(data: &[u8], chunk: usize, trailers: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in data.chunks(chunk) {
            out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n");
        for (name, value) in trailers {
            out.extend_from_slice(format!("{name}:{value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    fn trailer<'a>(trailers: &'a Trailers, name: &str) -> Option<&'a str> {
        trailers
            .checksums
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn crc32_b64(data: &[u8]) -> String {
        BASE64.encode(crc32fast::hash(data).to_be_bytes())
    }

    fn decoder(mode: PayloadMode) -> ChunkedDecoder {
        let signing = mode.has_chunk_signatures().then(|| context(SEED));
        ChunkedDecoder::new(mode, signing).expect("valid mode")
    }

    /// Feeds `body` in pieces of `step` bytes; returns the data and trailers.
    fn decode(
        mode: PayloadMode,
        body: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, Trailers), ChunkedError> {
        let mut dec = decoder(mode);
        let mut data = Vec::new();
        for piece in body.chunks(step.max(1)) {
            for out in dec.feed(Bytes::copy_from_slice(piece))? {
                data.extend_from_slice(&out);
            }
        }
        Ok((data, dec.finish()?))
    }

    #[test]
    fn aws_example_multiple_chunks() {
        let data = vec![b'a'; 66_560];
        let (body, sigs) = signed_body(&data, 65_536, None);
        assert_eq!(
            sigs,
            [
                "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
                "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
                "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
            ]
        );
        assert_eq!(body.len(), 66_824, "the example's Content-Length");
        let (decoded, trailers) =
            decode(PayloadMode::StreamingSigned, &body, body.len()).expect("decodes");
        assert_eq!(decoded, data);
        assert_eq!(trailers, Trailers::default());
    }

    #[test]
    fn byte_at_a_time_matches_whole() {
        let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
        let crc = crc32_b64(&data);
        let trailer = [("x-amz-checksum-crc32", crc.as_str())];
        let cases = [
            (
                PayloadMode::StreamingSigned,
                signed_body(&data, 1000, None).0,
            ),
            (
                PayloadMode::StreamingSignedTrailer,
                signed_body(&data, 1024, Some(&trailer)).0,
            ),
            (
                PayloadMode::StreamingUnsignedTrailer,
                unsigned_body(&data, 999, &trailer),
            ),
        ];
        for (mode, body) in cases {
            let whole = decode(mode, &body, body.len()).expect("decodes whole");
            assert_eq!(whole.0, data, "{mode:?}");
            for step in [1, 2, 3, 7, 64, 1001] {
                assert_eq!(
                    decode(mode, &body, step),
                    Ok(whole.clone()),
                    "{mode:?} step {step}"
                );
            }
            // Every split point of a two-piece feed.
            for split in 0..=body.len() {
                let mut dec = decoder(mode);
                let mut got = Vec::new();
                for piece in [&body[..split], &body[split..]] {
                    for out in dec.feed(Bytes::copy_from_slice(piece)).expect("feeds") {
                        got.extend_from_slice(&out);
                    }
                }
                assert_eq!(got, data, "{mode:?} split at {split}");
                assert_eq!(dec.finish().expect("finishes"), whole.1);
            }
        }
    }

    #[test]
    fn unsigned_data_is_passed_through_as_it_arrives() {
        let body = unsigned_body(b"hello world", 64, &[]);
        let mut dec = decoder(PayloadMode::StreamingUnsignedTrailer);
        let out = dec.feed(Bytes::copy_from_slice(&body[..8])).expect("feeds");
        assert_eq!(out.concat(), b"hello");
    }

    #[test]
    fn signed_data_is_held_until_verified() {
        let (body, _) = signed_body(b"hello world", 64, None);
        let header_len = body.iter().position(|&b| b == b'\n').expect("header") + 1;
        let mut dec = decoder(PayloadMode::StreamingSigned);
        let out = dec
            .feed(Bytes::copy_from_slice(&body[..header_len + 10]))
            .expect("feeds");
        assert!(out.is_empty());
        let out = dec
            .feed(Bytes::copy_from_slice(&body[header_len + 10..]))
            .expect("feeds");
        assert_eq!(out.concat(), b"hello world");
        dec.finish().expect("complete");
    }

    #[test]
    fn unsigned_trailer_with_crc32() {
        let data = b"The quick brown fox jumps over the lazy dog".repeat(100);
        let crc = crc32_b64(&data);
        let body = unsigned_body(&data, 1024, &[("x-amz-checksum-crc32", &crc)]);
        let (decoded, trailers) =
            decode(PayloadMode::StreamingUnsignedTrailer, &body, 100).expect("decodes");
        assert_eq!(decoded, data);
        assert_eq!(
            trailer(&trailers, "x-amz-checksum-crc32"),
            Some(crc.as_str())
        );
        assert_eq!(crc32_b64(&decoded), crc);

        // Whitespace around the colon and mixed-case names are tolerated.
        let body = unsigned_body(b"abc", 10, &[("X-Amz-Checksum-CRC32 ", " NSRBwg==")]);
        let (_, trailers) =
            decode(PayloadMode::StreamingUnsignedTrailer, &body, 1).expect("decodes");
        assert_eq!(trailer(&trailers, "x-amz-checksum-crc32"), Some("NSRBwg=="));
        assert_eq!(crc32_b64(b"abc"), "NSRBwg==");
    }

    #[test]
    fn empty_bodies() {
        let (decoded, _) = decode(
            PayloadMode::StreamingSigned,
            &signed_body(b"", 10, None).0,
            1,
        )
        .expect("empty");
        assert!(decoded.is_empty());
        let body = unsigned_body(b"", 10, &[("x-amz-checksum-crc32", "AAAAAA==")]);
        let (decoded, trailers) =
            decode(PayloadMode::StreamingUnsignedTrailer, &body, 3).expect("empty");
        assert!(decoded.is_empty());
        assert_eq!(trailers.checksums.len(), 1);
    }

    #[test]
    fn signed_trailer() {
        let data = b"0123456789".repeat(50);
        let crc = crc32_b64(&data);
        let (body, _) = signed_body(&data, 128, Some(&[("x-amz-checksum-crc32", &crc)]));
        let (decoded, trailers) =
            decode(PayloadMode::StreamingSignedTrailer, &body, 5).expect("decodes");
        assert_eq!(decoded, data);
        assert_eq!(
            trailers.checksums,
            vec![("x-amz-checksum-crc32".to_string(), crc.clone())]
        );

        // A changed checksum breaks the trailer signature.
        let text = String::from_utf8_lossy(&body).into_owned();
        let tampered = text.replace(&crc, "AAAAAA==");
        assert_eq!(
            decode(PayloadMode::StreamingSignedTrailer, tampered.as_bytes(), 7),
            Err(ChunkedError::SignatureDoesNotMatch("trailer"))
        );
        // Dropping the trailer signature is refused.
        let without = text
            .lines()
            .filter(|l| !l.starts_with("x-amz-trailer-signature"))
            .collect::<Vec<_>>()
            .join("\n");
        let without = without.replace('\n', "\r\n") + "\r\n";
        assert!(matches!(
            decode(PayloadMode::StreamingSignedTrailer, without.as_bytes(), 7),
            Err(ChunkedError::MalformedTrailer(_))
        ));
    }

    #[test]
    fn tampered_chunks_are_refused() {
        let data = b"x".repeat(300);
        let (body, _) = signed_body(&data, 100, None);
        // Flip one data byte anywhere.
        let first_data = body.iter().position(|&b| b == b'\n').expect("header") + 1;
        for at in [first_data, first_data + 99] {
            let mut bad = body.clone();
            bad[at] = b'y';
            let mut dec = decoder(PayloadMode::StreamingSigned);
            let err = dec.feed(Bytes::from(bad)).expect_err("tampered");
            assert_eq!(err, ChunkedError::SignatureDoesNotMatch("chunk"));
            assert_eq!(err.s3_code(), "SignatureDoesNotMatch");
            assert_eq!(
                dec.feed(Bytes::from_static(b"x")),
                Err(ChunkedError::AlreadyFailed)
            );
            assert_eq!(dec.finish(), Err(ChunkedError::AlreadyFailed));
        }
        // Reordered or dropped chunks break the chain.
        let (a, _) = signed_body(b"first-chunk-data", 16, None);
        let mut dec =
            ChunkedDecoder::new(PayloadMode::StreamingSigned, Some(context(&"0".repeat(64))))
                .expect("decoder");
        assert_eq!(
            dec.feed(Bytes::from(a)),
            Err(ChunkedError::SignatureDoesNotMatch("chunk"))
        );
        // A wrong key.
        let (body, _) = signed_body(b"data", 16, None);
        let mut ctx = context(SEED);
        ctx.signing_key = sigv4::signing_key("other", "20130524", "us-east-1", "s3");
        let mut dec =
            ChunkedDecoder::new(PayloadMode::StreamingSigned, Some(ctx)).expect("decoder");
        assert!(dec.feed(Bytes::from(body)).is_err());
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let sig = "0".repeat(64);
        let signed_cases: Vec<(Vec<u8>, &str)> = vec![
            (b"zz;chunk-signature=00\r\n".to_vec(), "bad hex"),
            (b";chunk-signature=00\r\n".to_vec(), "empty size"),
            (b"+5;chunk-signature=00\r\n".to_vec(), "plus sign"),
            (b" 5;chunk-signature=00\r\n".to_vec(), "leading space"),
            (b"5\r\n".to_vec(), "missing signature"),
            (b"5;chunk-signature=abc\r\n".to_vec(), "short signature"),
            (
                format!("5;chunk-sig={sig}\r\n").into_bytes(),
                "wrong extension",
            ),
            (format!("5;chunk-signature={sig}\n").into_bytes(), "bare LF"),
            (
                format!("1000001;chunk-signature={sig}\r\n").into_bytes(),
                "over 16 MiB",
            ),
            (
                format!("ffffffffffffffffffff;chunk-signature={sig}\r\n").into_bytes(),
                "overflow",
            ),
            (
                format!("ffffffffffffffff;chunk-signature={sig}\r\n").into_bytes(),
                "u64::MAX",
            ),
            (vec![b'1'; MAX_LINE_LEN + 1], "endless line"),
        ];
        for (body, what) in signed_cases {
            let mut dec = decoder(PayloadMode::StreamingSigned);
            assert!(dec.feed(Bytes::from(body)).is_err(), "{what}");
        }
        assert!(matches!(
            decoder(PayloadMode::StreamingUnsignedTrailer).feed(Bytes::from_static(b"1000001\r\n")),
            Err(ChunkedError::ChunkTooLarge { size: 0x100_0001 })
        ));
        // Exactly 16 MiB is allowed (header accepted).
        decoder(PayloadMode::StreamingUnsignedTrailer)
            .feed(Bytes::from_static(b"0001000000\r\n"))
            .expect("16 MiB chunk header is fine");

        let unsigned_cases: Vec<(&[u8], &str)> = vec![
            (b"3\r\nabcd\r\n", "data longer than size"),
            (b"3\r\nab\r\n\r\n", "data shorter than size"),
            (b"3\r\nabc\n", "missing CR"),
            (b"0\r\nno-colon\r\n\r\n", "trailer without colon"),
            (b"0\r\n:v\r\n\r\n", "empty trailer name"),
            (b"0\r\na:1\r\na:2\r\n\r\n", "duplicate trailer"),
            (
                b"0\r\nx-amz-trailer-signature:00\r\n\r\n",
                "signature in unsigned mode",
            ),
            (b"0\r\n\r\nextra", "data after the end"),
        ];
        for (body, what) in unsigned_cases {
            assert!(
                decode(PayloadMode::StreamingUnsignedTrailer, body, 1).is_err(),
                "{what}"
            );
            assert!(
                decode(PayloadMode::StreamingUnsignedTrailer, body, body.len()).is_err(),
                "{what}"
            );
        }
        // Trailers in a mode without them.
        let mut body = signed_body(b"abc", 10, None).0;
        body.truncate(body.len() - 2);
        body.extend_from_slice(b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n");
        assert!(matches!(
            decode(PayloadMode::StreamingSigned, &body, 3),
            Err(ChunkedError::MalformedTrailer(_))
        ));
        // Too many trailers.
        let many: Vec<(String, String)> = (0..=MAX_TRAILERS)
            .map(|i| (format!("x-{i}"), "v".into()))
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert!(
            decode(
                PayloadMode::StreamingUnsignedTrailer,
                &unsigned_body(b"a", 1, &many),
                9
            )
            .is_err()
        );
    }

    #[test]
    fn truncated_bodies_are_errors() {
        let data = b"truncate me".repeat(20);
        let crc = crc32_b64(&data);
        let trailer = [("x-amz-checksum-crc32", crc.as_str())];
        let cases = [
            (PayloadMode::StreamingSigned, signed_body(&data, 64, None).0),
            (
                PayloadMode::StreamingSignedTrailer,
                signed_body(&data, 64, Some(&trailer)).0,
            ),
            (
                PayloadMode::StreamingUnsignedTrailer,
                unsigned_body(&data, 64, &trailer),
            ),
        ];
        for (mode, body) in cases {
            for cut in 0..body.len() {
                let mut dec = decoder(mode);
                dec.feed(Bytes::copy_from_slice(&body[..cut]))
                    .expect("prefix is fine");
                let err = dec.finish().expect_err("truncated");
                assert!(
                    matches!(err, ChunkedError::Truncated(_)),
                    "{mode:?} cut {cut}: {err}"
                );
                assert_eq!(err.s3_code(), "IncompleteBody");
            }
        }
    }

    #[test]
    fn invalid_modes() {
        assert!(ChunkedDecoder::new(PayloadMode::Unsigned, None).is_err());
        assert!(ChunkedDecoder::new(PayloadMode::Sha256([0; 32]), None).is_err());
        assert!(ChunkedDecoder::new(PayloadMode::StreamingSigned, None).is_err());
        assert!(ChunkedDecoder::new(PayloadMode::StreamingSignedTrailer, None).is_err());
        assert!(ChunkedDecoder::new(PayloadMode::StreamingUnsignedTrailer, None).is_ok());
    }

    #[test]
    fn arbitrary_input_never_panics() {
        // A cheap deterministic fuzz: mutations of valid bodies.
        let (signed, _) = signed_body(
            b"some data here",
            5,
            Some(&[("x-amz-checksum-crc32", "AAAAAA==")]),
        );
        let unsigned = unsigned_body(
            b"some data here",
            5,
            &[("x-amz-checksum-crc32", "AAAAAA==")],
        );
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (mode, body) in [
            (PayloadMode::StreamingSignedTrailer, signed),
            (PayloadMode::StreamingUnsignedTrailer, unsigned),
        ] {
            for _ in 0..2000 {
                let mut b = body.clone();
                for _ in 0..(next() % 4 + 1) {
                    let at = (next() as usize) % b.len();
                    match next() % 3 {
                        0 => b[at] = next() as u8,
                        1 => {
                            b.remove(at);
                        }
                        _ => b.insert(at, next() as u8),
                    }
                }
                let step = (next() % 9 + 1) as usize;
                let _ = decode(mode, &b, step);
            }
        }
    }
}
