//! The fuzz targets (`hangar_agent::fuzzing`) as bounded property tests,
//! run with the normal tests: random bytes, and inputs built to look like
//! the real thing so the parsers get past their first checks. None may
//! panic. `fuzz/` runs the same targets under libFuzzer without bounds.

use hangar_agent::fuzzing;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 400,
        ..ProptestConfig::default()
    }
}

/// A request head that looks signed.
fn request_head() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec!["GET", "PUT", "POST", "HEAD", "DELETE"]),
        "[a-z0-9/%.~_-]{0,40}",
        prop::collection::vec(
            (
                prop::sample::select(vec![
                    "X-Amz-Algorithm=AWS4-HMAC-SHA256",
                    "X-Amz-Credential=AK%2F20261125%2Fus-east-1%2Fs3%2Faws4_request",
                    "X-Amz-Date=20261125T000000Z",
                    "X-Amz-Expires=600",
                    "X-Amz-SignedHeaders=host",
                    "X-Amz-Signature=00",
                    "list-type=2",
                    "uploads",
                    "partNumber=1&uploadId=00",
                    "AWSAccessKeyId=AK",
                    "Signature=AAAA",
                    "Expires=1795000000",
                    "acl",
                    "versionId=null",
                ]),
                "[A-Za-z0-9%=&]{0,8}",
            ),
            0..6,
        ),
        prop::collection::vec(
            (
                prop::sample::select(vec![
                    "authorization",
                    "x-amz-date",
                    "x-amz-content-sha256",
                    "host",
                    "content-md5",
                    "x-amz-decoded-content-length",
                    "date",
                    "x-amz-meta-a",
                    "x-amz-checksum-crc32",
                    "x-amz-checksum-sha256",
                    "x-amz-trailer",
                    "x-amz-checksum-algorithm",
                    "x-amz-checksum-type",
                    "x-amz-sdk-checksum-algorithm",
                ]),
                prop::sample::select(vec![
                    "AWS4-HMAC-SHA256 Credential=AK/20261125/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc",
                    "AWS4-HMAC-SHA256 Credential=/, SignedHeaders=, Signature=",
                    "20261125T000000Z",
                    "UNSIGNED-PAYLOAD",
                    "CRC64NVME",
                    "FULL_OBJECT",
                    "x-amz-checksum-crc32c",
                    "NSRBwg==",
                    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                    "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                    "localhost:3900",
                    "AWS AK:AAAA",
                    "AWS :",
                    "Wed, 25 Nov 2026 00:00:00 +0000",
                    "",
                ]),
            ),
            0..6,
        ),
    )
        .prop_map(|(m, path, query, headers)| {
            let q: Vec<String> = query.into_iter().map(|(a, b)| format!("{a}{b}")).collect();
            let mut s = format!("{m} /{path}?{}\n", q.join("&"));
            for (k, v) in headers {
                s.push_str(&format!("{k}: {v}\n"));
            }
            s.into_bytes()
        })
}

/// Something like an S3 XML body.
fn xml_body() -> impl Strategy<Value = Vec<u8>> {
    let tags = prop::sample::select(vec![
        "WebsiteConfiguration",
        "IndexDocument",
        "Suffix",
        "ErrorDocument",
        "Key",
        "RoutingRules",
        "RoutingRule",
        "Condition",
        "Redirect",
        "HttpRedirectCode",
        "CORSConfiguration",
        "CORSRule",
        "AllowedOrigin",
        "AllowedMethod",
        "MaxAgeSeconds",
        "LifecycleConfiguration",
        "Rule",
        "Filter",
        "Prefix",
        "Status",
        "Expiration",
        "Days",
        "Date",
        "CompleteMultipartUpload",
        "Part",
        "PartNumber",
        "ETag",
        "Delete",
        "Object",
        "Quiet",
        "ChecksumCRC32",
        "ChecksumSHA256",
        "Tagging",
        "TagSet",
        "Tag",
        "Value",
        "AccessControlPolicy",
        "AccessControlList",
        "Grant",
        "Grantee",
        "ID",
        "URI",
        "Permission",
        "PublicAccessBlockConfiguration",
        "BlockPublicAcls",
    ]);
    prop::collection::vec((tags, "[a-zA-Z0-9 <>&;/\"-]{0,12}", any::<bool>()), 0..24).prop_map(
        |items| {
            let mut s = String::new();
            let mut open = Vec::new();
            for (tag, text, close) in items {
                if close && let Some(t) = open.pop() {
                    s.push_str(&format!("</{t}>"));
                } else {
                    s.push_str(&format!("<{tag}>{text}"));
                    open.push(tag);
                }
            }
            while let Some(t) = open.pop() {
                s.push_str(&format!("</{t}>"));
            }
            s.into_bytes()
        },
    )
}

/// Something like an aws-chunked body.
fn chunked_body() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u8>(),
        prop::collection::vec(
            (0usize..40, any::<bool>(), "[0-9a-f]{0,64}", "[ -~]{0,40}"),
            0..5,
        ),
    )
        .prop_map(|(first, chunks)| {
            let mut v = vec![first];
            for (n, signed, sig, data) in chunks {
                let data: String = data.chars().take(n).collect();
                if signed {
                    v.extend(format!("{:x};chunk-signature={sig}\r\n", data.len()).bytes());
                } else {
                    v.extend(format!("{:x}\r\n", data.len()).bytes());
                }
                v.extend(data.bytes());
                v.extend(b"\r\n");
            }
            v.extend(b"0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n");
            v
        })
}

/// Something like a bucket policy or a POST policy (JSON tokens).
fn json_body() -> impl Strategy<Value = String> {
    let tokens = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"Version\"",
        "\"2012-10-17\"",
        "\"Statement\"",
        "\"Effect\"",
        "\"Allow\"",
        "\"Deny\"",
        "\"Principal\"",
        "\"NotPrincipal\"",
        "\"*\"",
        "\"AWS\"",
        "\"Action\"",
        "\"s3:Get*\"",
        "\"Resource\"",
        "\"arn:aws:s3:::b/*\"",
        "\"Condition\"",
        "\"IpAddress\"",
        "\"aws:SourceIp\"",
        "\"10.0.0.0/8\"",
        "\"StringLikeIfExists\"",
        "\"expiration\"",
        "\"2026-12-31T00:00:00Z\"",
        "\"conditions\"",
        "\"content-length-range\"",
        "\"starts-with\"",
        "\"$key\"",
        "1",
        "-1",
        "true",
        "null",
    ]);
    prop::collection::vec(tokens, 0..40).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn policies_never_panic_on_json_looking_input(data in json_body()) {
        fuzzing::xml(data.as_bytes());
    }

    #[test]
    fn sigv4_never_panics(data in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzzing::sigv4(&data);
    }

    #[test]
    fn sigv4_never_panics_on_signed_looking_requests(data in request_head()) {
        fuzzing::sigv4(&data);
    }

    #[test]
    fn xml_bodies_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzzing::xml(&data);
    }

    #[test]
    fn xml_bodies_never_panic_on_xml_looking_input(data in xml_body()) {
        fuzzing::xml(&data);
    }

    #[test]
    fn chunked_decoder_never_panics(data in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzzing::chunked(&data);
    }

    #[test]
    fn chunked_decoder_never_panics_on_chunk_looking_input(data in chunked_body()) {
        fuzzing::chunked(&data);
    }

    #[test]
    fn rpc_frames_never_panic(data in prop::collection::vec(any::<u8>(), 0..1024)) {
        fuzzing::frames(&data);
    }

    #[test]
    fn config_loader_never_panics(data in "[a-z_\\[\\]=\" 0-9.:\n]{0,300}") {
        fuzzing::config(data.as_bytes());
    }
}
