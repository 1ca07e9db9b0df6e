//! Signing requests with AWS Signature Version 4, for the project's own
//! small S3 clients (the console's demo, the benchmarks): an unsigned
//! payload, and the headers `host`, `x-amz-content-sha256` and
//! `x-amz-date` signed. The agent's verifier is `agent/src/s3/sigv4.rs`.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    // HMAC takes keys of any length (long ones are hashed): this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// The headers that sign a request for `path` (with its query, already in
/// canonical form: sorted and encoded) at `unix_secs`, with the key
/// `key_id` / `secret` in `region`: `host`, `x-amz-content-sha256`,
/// `x-amz-date` and `authorization`.
pub fn sign(
    key_id: &str,
    secret: &str,
    region: &str,
    method: &str,
    host: &str,
    path: &str,
    unix_secs: u64,
) -> Vec<(String, String)> {
    let datetime = crate::date::amz_date(unix_secs);
    let date = &datetime[..8];
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let canonical = format!(
        "{method}\n{path}\n{query}\nhost:{host}\nx-amz-content-sha256:UNSIGNED-PAYLOAD\nx-amz-date:{datetime}\n\nhost;x-amz-content-sha256;x-amz-date\nUNSIGNED-PAYLOAD"
    );
    let scope = format!("{date}/{region}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{datetime}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut k = hmac(format!("AWS4{secret}").as_bytes(), date);
    for part in [region, "s3", "aws4_request"] {
        k = hmac(&k, part);
    }
    let sig = hex::encode(hmac(&k, &to_sign));
    vec![
        ("host".into(), host.into()),
        ("x-amz-content-sha256".into(), "UNSIGNED-PAYLOAD".into()),
        ("x-amz-date".into(), datetime.clone()),
        (
            "authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={sig}"
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_the_aws_example() {
        // AWS's documented key, date and scope, with an unsigned payload.
        // That the agent accepts these signatures is shown end to end (the
        // demo and every bench sign with this).
        let at = |path: &str| {
            sign(
                "AKIAIOSFODNN7EXAMPLE",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "us-east-1",
                "GET",
                "examplebucket.s3.amazonaws.com",
                path,
                1_369_353_600, // 2013-05-24T00:00:00Z
            )
        };
        let h = at("/test.txt");
        assert_eq!(h[2].1, "20130524T000000Z");
        assert!(h[3].1.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="
        ));
        // Deterministic, and bound to the path.
        assert_eq!(h, at("/test.txt"));
        assert_ne!(at("/other")[3].1, h[3].1);
    }
}
