//! AWS Signature Version 2 (HMAC-SHA1), still the default of aws CLI v1's
//! `presign` and of boto3's `generate_presigned_url`: the `Authorization:
//! AWS KEY:SIGNATURE` header and presigned URLs (`AWSAccessKeyId`,
//! `Signature`, `Expires`). The body is not covered (only its
//! `Content-MD5`, when sent, which the PUT path checks).
//!
//! String to sign, as AWS documents it: the method, `Content-MD5`,
//! `Content-Type`, the date (the `Date` header, empty when `x-amz-date` is
//! sent, or `Expires` for a presigned URL), the `x-amz-*` headers
//! (lowercase, sorted, one per line), then the resource: `/bucket` for a
//! virtual-hosted request, the path as sent, and the sub-resources of the
//! query (sorted, values decoded).

use base64::Engine;
use hmac::{Hmac, Mac};
use http::{HeaderMap, Method, Uri};

use super::sigv4::{AuthError, MAX_CLOCK_SKEW_SECS};

type HmacSha1 = Hmac<sha1::Sha1>;

/// Query parameters that are part of the signed resource (the list the
/// AWS SDKs sign).
const SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "defaultObjectAcl",
    "delete",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// A Signature Version 2 request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Auth {
    pub access_key: String,
    signature: Vec<u8>,
    /// Presigned: valid until this Unix time.
    expires: Option<u64>,
}

/// The request's SigV2 credentials, if it is signed that way (None: it is
/// not; an error: it is, badly).
pub(crate) fn parse(uri: &Uri, headers: &HeaderMap) -> Option<Result<V2Auth, AuthError>> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let rest = value.strip_prefix("AWS ")?;
        let malformed = || {
            AuthError::AuthorizationHeaderMalformed(
                "expected Authorization: AWS ACCESS_KEY:SIGNATURE".into(),
            )
        };
        return Some((|| {
            let (key, sig) = rest.trim().rsplit_once(':').ok_or_else(malformed)?;
            let signature = base64::engine::general_purpose::STANDARD
                .decode(sig)
                .map_err(|_| malformed())?;
            Ok(V2Auth {
                access_key: key.to_string(),
                signature,
                expires: None,
            })
        })());
    }
    let query = super::server::url_pairs(uri.query().unwrap_or(""));
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let access_key = get("AWSAccessKeyId")?;
    let bad = |msg: &str| AuthError::AuthorizationQueryParametersError(msg.to_string());
    Some((|| {
        let signature = base64::engine::general_purpose::STANDARD
            .decode(get("Signature").ok_or_else(|| bad("missing Signature"))?)
            .map_err(|_| bad("Signature is not base64"))?;
        let expires = get("Expires")
            .ok_or_else(|| bad("missing Expires"))?
            .parse()
            .map_err(|_| bad("Expires must be Unix seconds"))?;
        Ok(V2Auth {
            access_key: access_key.to_string(),
            signature,
            expires: Some(expires),
        })
    })())
}

/// Check a SigV2 request against the key's secret, at `now_unix` (wall
/// clock). `vhost_bucket`: the bucket when it was named by the Host.
pub(crate) fn verify(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    auth: &V2Auth,
    secret: &str,
    vhost_bucket: Option<&str>,
    now_unix: u64,
) -> Result<(), AuthError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let date_line = match auth.expires {
        Some(expires) => {
            if now_unix > expires {
                return Err(AuthError::Expired {
                    expired_at_unix: expires,
                });
            }
            expires.to_string()
        }
        None => {
            let (text, line) = if headers.contains_key("x-amz-date") {
                (header("x-amz-date"), String::new())
            } else {
                let d = header("date");
                (d.clone(), d)
            };
            let when = parse_date(&text).ok_or(AuthError::MissingDate)?;
            if when.abs_diff(now_unix) > MAX_CLOCK_SKEW_SECS {
                return Err(AuthError::RequestTimeTooSkewed {
                    request_time: text,
                    server_time_unix: now_unix,
                });
            }
            line
        }
    };
    let mut to_sign = format!(
        "{}\n{}\n{}\n{}\n",
        method.as_str(),
        header("content-md5"),
        header("content-type"),
        date_line
    );
    // x-amz-* headers, lowercase and sorted, values of one name joined.
    let mut amz: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (name, value) in headers {
        let name = name.as_str().to_ascii_lowercase();
        if name.starts_with("x-amz-") {
            let value = String::from_utf8_lossy(value.as_bytes());
            amz.entry(name)
                .or_default()
                .push(value.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    for (name, values) in &amz {
        to_sign.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let mut resource = String::new();
    if let Some(b) = vhost_bucket {
        resource.push('/');
        resource.push_str(b);
    }
    resource.push_str(uri.path());
    let mut sub: Vec<(String, String)> = super::server::url_pairs(uri.query().unwrap_or(""))
        .into_iter()
        .filter(|(k, _)| SUBRESOURCES.contains(&k.as_str()))
        .collect();
    sub.sort();
    // A flag without `=` (`?acl`) is signed bare, as is one with an empty
    // value: the SDKs send flags bare.
    let raw = uri.query().unwrap_or("");
    let mut subresources = String::new();
    for (i, (k, v)) in sub.iter().enumerate() {
        subresources.push(if i == 0 { '?' } else { '&' });
        subresources.push_str(k);
        let bare = v.is_empty() && raw.split('&').any(|p| p == k);
        if !bare {
            subresources.push('=');
            subresources.push_str(v);
        }
    }
    // A path-style request to a bucket (`/bucket`) is signed by the SDKs
    // as `/bucket/`, as AWS canonicalizes it: both are accepted.
    let bucket_only = vhost_bucket.is_none() && uri.path().matches('/').count() == 1;
    let mut candidates = vec![resource.clone()];
    if bucket_only && uri.path().len() > 1 {
        candidates.push(format!("{resource}/"));
    }
    for resource in candidates {
        let mut mac = <HmacSha1 as Mac>::new_from_slice(secret.as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(to_sign.as_bytes());
        mac.update(resource.as_bytes());
        mac.update(subresources.as_bytes());
        if mac.verify_slice(&auth.signature).is_ok() {
            return Ok(());
        }
    }
    Err(AuthError::SignatureDoesNotMatch)
}

/// Whether `signature_b64` is SigV2's signature of a POST policy
/// (base64 of HMAC-SHA1 of the base64 policy under the secret).
pub(crate) fn verify_policy(secret: &str, policy_b64: &str, signature_b64: &str) -> bool {
    use base64::Engine;
    let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(signature_b64.trim()) else {
        return false;
    };
    let mut mac = <HmacSha1 as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(policy_b64.as_bytes());
    mac.verify_slice(&sig).is_ok()
}

/// A request date: RFC 1123 (`GMT` or `+0000`, as SDKs write it) or
/// `YYYYMMDDTHHMMSSZ`; Unix seconds.
fn parse_date(text: &str) -> Option<u64> {
    let gmt = match text.strip_suffix(" +0000") {
        Some(t) => format!("{t} GMT"),
        None => text.to_string(),
    };
    httpdate::parse_http_date(&gmt)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .or_else(|| super::sigv4::parse_amz_date(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    /// AWS's documented examples (Signature Version 2, "Authenticating
    /// Requests"), key `AKIAIOSFODNN7EXAMPLE`.
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    #[test]
    fn aws_example_object_get_virtual_hosted() {
        // GET /photos/puppy.jpg on johnsmith.s3.amazonaws.com.
        let h = headers(&[
            ("host", "johnsmith.s3.amazonaws.com"),
            ("date", "Tue, 27 Mar 2007 19:36:42 +0000"),
            (
                "authorization",
                "AWS AKIAIOSFODNN7EXAMPLE:bWq2s1WEIj+Ydj0vQ697zp+IXMU=",
            ),
        ]);
        let uri: Uri = "/photos/puppy.jpg".parse().unwrap();
        let auth = parse(&uri, &h).unwrap().unwrap();
        assert_eq!(auth.access_key, "AKIAIOSFODNN7EXAMPLE");
        // 2007-03-27T19:36:42Z
        let now = 1_175_024_202;
        assert_eq!(
            verify(
                &Method::GET,
                &uri,
                &h,
                &auth,
                SECRET,
                Some("johnsmith"),
                now
            ),
            Ok(())
        );
        // Wrong secret, other path, or too late: refused.
        assert_eq!(
            verify(&Method::GET, &uri, &h, &auth, "x", Some("johnsmith"), now),
            Err(AuthError::SignatureDoesNotMatch)
        );
        let other: Uri = "/photos/kitten.jpg".parse().unwrap();
        assert!(
            verify(
                &Method::GET,
                &other,
                &h,
                &auth,
                SECRET,
                Some("johnsmith"),
                now
            )
            .is_err()
        );
        assert!(matches!(
            verify(
                &Method::GET,
                &uri,
                &h,
                &auth,
                SECRET,
                Some("johnsmith"),
                now + 3600
            ),
            Err(AuthError::RequestTimeTooSkewed { .. })
        ));
    }

    #[test]
    fn aws_example_list_with_acl_subresource_and_a_presigned_url() {
        // GET /?acl on johnsmith: the sub-resource is signed.
        let h = headers(&[
            ("date", "Tue, 27 Mar 2007 19:44:46 +0000"),
            (
                "authorization",
                "AWS AKIAIOSFODNN7EXAMPLE:c2WLPFtWHVgbEmeEG93a4cG37dM=",
            ),
        ]);
        let uri: Uri = "/?acl".parse().unwrap();
        let auth = parse(&uri, &h).unwrap().unwrap();
        assert_eq!(
            verify(
                &Method::GET,
                &uri,
                &h,
                &auth,
                SECRET,
                Some("johnsmith"),
                1_175_024_686
            ),
            Ok(())
        );
        // Query string authentication: GET /photos/puppy.jpg, path-style
        // form of the same resource, valid until Expires.
        let uri: Uri = "/johnsmith/photos/puppy.jpg?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1175139620&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D"
            .parse()
            .unwrap();
        let h = HeaderMap::new();
        let auth = parse(&uri, &h).unwrap().unwrap();
        assert_eq!(
            verify(&Method::GET, &uri, &h, &auth, SECRET, None, 1_175_139_000),
            Ok(())
        );
        assert!(matches!(
            verify(&Method::GET, &uri, &h, &auth, SECRET, None, 1_175_139_621),
            Err(AuthError::Expired { .. })
        ));
    }

    #[test]
    fn unsigned_and_v4_requests_are_not_v2() {
        let uri: Uri = "/b/k".parse().unwrap();
        assert!(parse(&uri, &HeaderMap::new()).is_none());
        let h = headers(&[("authorization", "AWS4-HMAC-SHA256 Credential=x")]);
        assert!(parse(&uri, &h).is_none());
        let bad = headers(&[("authorization", "AWS nocolon")]);
        assert!(parse(&uri, &bad).unwrap().is_err());
    }
}
