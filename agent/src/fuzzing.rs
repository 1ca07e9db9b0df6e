//! Entry points for fuzzing the parsers that read untrusted input: one
//! function per target, taking raw bytes, which must never panic whatever
//! they get. The cargo-fuzz targets (`fuzz/`) and the bounded property
//! tests run in CI (`agent/tests/fuzz_props.rs`) both call these.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

use crate::s3::{bucket_config, chunked, copy_delete, multipart, sigv2, sigv4};

/// A fixed "now" for signature checks (2026-11-25).
const NOW: u64 = 1_795_600_000;

/// An HTTP request head as text: `METHOD URI` then `name: value` lines.
fn request(data: &[u8]) -> Option<(Method, Uri, HeaderMap)> {
    let text = std::str::from_utf8(data).ok()?;
    let mut lines = text.split('\n');
    let first = lines.next()?;
    let (method, uri) = first.split_once(' ')?;
    let method = Method::from_bytes(method.as_bytes()).ok()?;
    let uri: Uri = uri.trim().parse().ok()?;
    let mut headers = HeaderMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':')
            && let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.trim().as_bytes()),
                HeaderValue::from_str(v.trim()),
            )
        {
            headers.append(k, v);
        }
    }
    Some((method, uri, headers))
}

/// SigV4 and SigV2: authorization parsing (header and presigned),
/// canonicalisation and verification, payload mode parsing; checksum
/// headers.
pub fn sigv4(data: &[u8]) {
    let Some((method, uri, headers)) = request(data) else {
        return;
    };
    if let Some(v) = headers.get("x-amz-content-sha256") {
        let _ = sigv4::PayloadMode::parse(v.as_bytes());
    }
    if let Ok(auth) = sigv4::parse_auth(&uri, &headers) {
        let _ = sigv4::verify(&method, &uri, &headers, &auth, "secret", NOW);
    }
    // Signature Version 2, path-style and virtual-hosted.
    if let Some(Ok(auth)) = sigv2::parse(&uri, &headers) {
        for vhost in [None, Some("bucket")] {
            let _ = sigv2::verify(&method, &uri, &headers, &auth, "secret", vhost, NOW);
        }
    }
    if let Ok(t) = std::str::from_utf8(data) {
        let _ = sigv4::parse_amz_date(t);
    }
    // The checksum headers of a write.
    let _ = crate::s3::checksum::requested(&headers);
    let _ = crate::s3::checksum::multipart_request(&headers);
}

/// The XML request bodies: website, CORS, lifecycle, CompleteMultipartUpload,
/// DeleteObjects, tagging, ACLs, Block Public Access; and (as text) the
/// `x-amz-tagging` header, bucket policies and POST policies.
pub fn xml(data: &[u8]) {
    let _ = crate::s3::tagging::parse_tagging(data, crate::s3::tagging::MAX_OBJECT_TAGS);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::s3::tagging::parse_tagging_header(text);
        // Bucket policies and POST policies are JSON.
        let _ = crate::s3::policy::Policy::parse(text, "b");
    }
    let _ = crate::s3::post::PostPolicy::parse(data);
    let _ = crate::s3::access::parse_acl(data, Some("owner"));
    let _ = crate::s3::access::parse_public_access_block(data);
    let _ = bucket_config::parse_website(data);
    let _ = bucket_config::parse_cors(data);
    let _ = bucket_config::parse_lifecycle(data);
    let _ = multipart::parse_complete(data);
    let _ = copy_delete::parse_delete(data);
}

/// The aws-chunked body decoder, signed and unsigned, fed in two pieces
/// (the first byte chooses the mode and where to split).
pub fn chunked(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let (mode, signing) = if first & 1 == 0 {
        (
            sigv4::PayloadMode::parse(b"STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
            None,
        )
    } else {
        (
            sigv4::PayloadMode::parse(b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
            Some(sigv4::ChunkSigningContext {
                signing_key: [7; 32],
                datetime: "20261125T000000Z".into(),
                scope: "20261125/us-east-1/s3/aws4_request".into(),
                seed_signature: "0".repeat(64),
            }),
        )
    };
    let Ok(mode) = mode else { return };
    let Ok(mut d) = chunked::ChunkedDecoder::new(mode, signing) else {
        return;
    };
    let cut = (first as usize >> 1).min(rest.len());
    let bytes = Bytes::copy_from_slice(rest);
    for piece in [bytes.slice(..cut), bytes.slice(cut..)] {
        if d.feed(piece).is_err() {
            return;
        }
    }
    let _ = d.finish();
}

/// The RPC frame decoder: authenticated messages of arbitrary content
/// (each input byte run `[len][bytes]` becomes one Noise message), then the
/// frames as MessagePack RPC payloads.
pub fn frames(data: &[u8]) {
    use tokio_util::codec::Decoder;
    let Ok((mut tx, mut rx)) = hangar_common::transport::codec_pair() else {
        return;
    };
    let mut wire = bytes::BytesMut::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = (len as usize).min(tail.len());
        if tx.seal_raw(&tail[..n], &mut wire).is_err() {
            return;
        }
        rest = &tail[n..];
    }
    while let Ok(Some(frame)) = rx.decode(&mut wire) {
        let _ = rmp_serde::from_slice::<hangar_common::rpc::TableOp>(&frame);
        let _ = rmp_serde::from_slice::<hangar_common::rpc::PingRequest>(&frame);
    }
    let _ = rmp_serde::from_slice::<hangar_common::rpc::TableOp>(data);
}

/// The configuration loader.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = hangar_common::config::Config::parse(text, "fuzz");
    }
}
