//! POST Object: browser (HTML form) uploads. A `multipart/form-data` POST
//! to a bucket carries the object's key and settings as form fields, then
//! the file, last. A form signed by a key carries a policy document
//! (base64 JSON: an expiration and conditions every field must meet) and
//! its signature (SigV4: `x-amz-algorithm`, `x-amz-credential`,
//! `x-amz-date`, `x-amz-signature`; or SigV2: `AWSAccessKeyId`,
//! `signature`); an unsigned form is anonymous, allowed where the bucket's
//! ACL or policy lets anyone write.
//!
//! The file streams into blocks like a PUT's body; a form that breaks a
//! rule gets S3's error and stores nothing (blocks already sent are never
//! referenced and go with the next collection).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

use super::error::S3Error;
use super::object::{BodySink, check_key};
use super::server::{Body, S3Request, S3Server, empty, xml_response};
use super::xml::Xml;
use crate::model::tables::*;

/// Largest field other than the file (a policy, a long key...).
const MAX_FIELD: usize = 20 * 1024;
/// Largest total of the fields other than the file.
const MAX_FIELDS: usize = 64 * 1024;

fn malformed(msg: impl std::fmt::Display) -> S3Error {
    S3Error::new(
        "MalformedPOSTRequest",
        StatusCode::BAD_REQUEST,
        format!("The body of your POST request is not well-formed multipart/form-data: {msg}"),
    )
}

fn invalid_argument(msg: impl Into<String>) -> S3Error {
    S3Error::new("InvalidArgument", StatusCode::BAD_REQUEST, msg)
}

fn policy_failed(msg: impl std::fmt::Display) -> S3Error {
    S3Error::access_denied(format!("Invalid according to Policy: {msg}"))
}

/// The form's fields other than the file: names lowercase (S3 reads them
/// without regard to case), in order.
pub(crate) struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A POST policy: when it expires, and its conditions.
#[derive(Debug)]
pub(crate) struct PostPolicy {
    expiration_ms: u64,
    conditions: Vec<Condition>,
}

#[derive(Debug, PartialEq)]
enum Condition {
    /// `{"field": "value"}` or `["eq", "$field", "value"]`.
    Eq(String, String),
    /// `["starts-with", "$field", "prefix"]`.
    StartsWith(String, String),
    /// `["content-length-range", min, max]`.
    Length(u64, u64),
}

impl PostPolicy {
    /// Parse a policy document (the decoded JSON).
    pub(crate) fn parse(json: &[u8]) -> Result<PostPolicy, String> {
        let doc: Value = serde_json::from_slice(json).map_err(|e| format!("not JSON: {e}"))?;
        let expiration = doc
            .get("expiration")
            .and_then(Value::as_str)
            .ok_or("the policy has no expiration")?;
        let expiration_ms = hangar_common::date::parse_iso8601(expiration)
            .ok_or_else(|| format!("invalid expiration {expiration:?}"))?;
        let list = doc
            .get("conditions")
            .and_then(Value::as_array)
            .ok_or("the policy has no conditions list")?;
        let field = |v: &Value| -> Result<String, String> {
            let s = v.as_str().ok_or("a condition's field is not a string")?;
            Ok(s.strip_prefix('$').unwrap_or(s).to_ascii_lowercase())
        };
        let text = |v: &Value| -> Result<String, String> {
            match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err("a condition's value is not a string".into()),
            }
        };
        let mut conditions = Vec::new();
        for c in list {
            let cond = match c {
                Value::Object(m) if m.len() == 1 => {
                    let (k, v) = m.iter().next().ok_or("an empty condition")?;
                    Condition::Eq(k.to_ascii_lowercase(), text(v)?)
                }
                Value::Array(a) if a.len() == 3 => {
                    let op = a[0].as_str().unwrap_or_default().to_ascii_lowercase();
                    match op.as_str() {
                        "eq" => Condition::Eq(field(&a[1])?, text(&a[2])?),
                        "starts-with" => Condition::StartsWith(field(&a[1])?, text(&a[2])?),
                        "content-length-range" => {
                            let n = |v: &Value| {
                                v.as_u64()
                                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                                    .ok_or("content-length-range bounds are numbers")
                            };
                            Condition::Length(n(&a[1])?, n(&a[2])?)
                        }
                        other => return Err(format!("unknown condition {other:?}")),
                    }
                }
                other => return Err(format!("invalid condition {other}")),
            };
            conditions.push(cond);
        }
        Ok(PostPolicy {
            expiration_ms,
            conditions,
        })
    }

    /// Check the form's fields (the bucket is `bucket`, whether or not a
    /// field names it) at `now_ms`; the size range, if any, is returned
    /// to check as the file arrives.
    pub(crate) fn check(
        &self,
        form: &Form,
        bucket: &str,
        now_ms: u64,
    ) -> Result<Option<(u64, u64)>, S3Error> {
        if now_ms > self.expiration_ms {
            return Err(policy_failed("Policy expired."));
        }
        let value = |name: &str| -> Option<&str> {
            if name == "bucket" {
                return Some(bucket);
            }
            form.get(name)
        };
        let mut range = None;
        for c in &self.conditions {
            let ok = match c {
                Condition::Eq(name, want) => value(name) == Some(want.as_str()),
                // An empty prefix: any value, the field must be there.
                Condition::StartsWith(name, prefix) => {
                    // Content-Type may list several values: each must match.
                    value(name).is_some_and(|v| {
                        if name == "content-type" {
                            v.split(',').all(|t| t.trim().starts_with(prefix.as_str()))
                        } else {
                            v.starts_with(prefix.as_str())
                        }
                    })
                }
                Condition::Length(min, max) => {
                    range = Some((*min, *max));
                    true
                }
            };
            if !ok {
                return Err(policy_failed(format!("Policy Condition failed: {c:?}")));
            }
        }
        // Every field must be named by a condition.
        let covered = |name: &str| {
            self.conditions.iter().any(|c| match c {
                Condition::Eq(n, _) | Condition::StartsWith(n, _) => n == name,
                Condition::Length(..) => false,
            })
        };
        let extra: Vec<&str> = form
            .fields
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| {
                !matches!(
                    *n,
                    "policy" | "x-amz-signature" | "signature" | "awsaccesskeyid" | "file"
                ) && !n.starts_with("x-ignore-")
                    && !covered(n)
            })
            .collect();
        if !extra.is_empty() {
            return Err(policy_failed(format!(
                "Extra input fields: {}",
                extra.join(", ")
            )));
        }
        Ok(range)
    }
}

impl S3Server {
    /// Who signed a form (None: unsigned), after checking its signature
    /// and policy; the size range its policy sets.
    async fn form_signer(
        &self,
        form: &Form,
        bucket: &Bucket,
    ) -> Result<(Option<Key>, Option<(u64, u64)>), S3Error> {
        let Some(policy_b64) = form.get("policy") else {
            if form.get("x-amz-signature").is_some() || form.get("awsaccesskeyid").is_some() {
                return Err(invalid_argument(
                    "Bucket POST must contain a field named 'policy' when signed",
                ));
            }
            return Ok((None, None));
        };
        let now_s = hangar_common::clock::wall_ms() / 1000;
        let key = match (form.get("x-amz-credential"), form.get("awsaccesskeyid")) {
            (Some(credential), _) => {
                if form.get("x-amz-algorithm") != Some("AWS4-HMAC-SHA256") {
                    return Err(invalid_argument("x-amz-algorithm must be AWS4-HMAC-SHA256"));
                }
                let parts: Vec<&str> = credential.split('/').collect();
                let [id, date, region, service, "aws4_request"] = parts[..] else {
                    return Err(invalid_argument(format!(
                        "invalid x-amz-credential {credential:?}"
                    )));
                };
                let key = self.access_key(id).await?;
                let signature = form.get("x-amz-signature").unwrap_or_default();
                let signing = super::sigv4::signing_key(&key.secret, date, region, service);
                if !super::sigv4::verify_signature(&signing, policy_b64.as_bytes(), signature) {
                    return Err(signature_mismatch());
                }
                // The signing date must be the credential's day.
                let amz_date = form.get("x-amz-date").unwrap_or_default();
                if super::sigv4::parse_amz_date(amz_date).is_none() || !amz_date.starts_with(date) {
                    return Err(invalid_argument(format!(
                        "x-amz-date {amz_date:?} does not match the credential's date"
                    )));
                }
                key
            }
            (None, Some(id)) => {
                let key = self.access_key(id).await?;
                let signature = form.get("signature").unwrap_or_default();
                if !super::sigv2::verify_policy(&key.secret, policy_b64, signature) {
                    return Err(signature_mismatch());
                }
                key
            }
            (None, None) => {
                return Err(invalid_argument(
                    "a form with a policy must be signed (x-amz-credential or AWSAccessKeyId)",
                ));
            }
        };
        use base64::Engine;
        let json = base64::engine::general_purpose::STANDARD
            .decode(policy_b64.trim())
            .map_err(|_| invalid_policy("the policy is not base64"))?;
        let policy = PostPolicy::parse(&json).map_err(invalid_policy)?;
        let range = policy.check(form, &bucket.name, now_s * 1000)?;
        Ok((Some(key), range))
    }

    /// POST Object.
    pub(crate) async fn post_object(&self, r: S3Request) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(&r).await?;
        let boundary = multer::parse_boundary(r.header("content-type").unwrap_or_default())
            .map_err(malformed)?;
        let (remote, query, headers, nobody) = (
            r.remote,
            r.query.clone(),
            r.req.headers().clone(),
            r.api_key.clone(),
        );
        let stream = r.req.into_body().into_data_stream();
        let mut parts = multer::Multipart::new(stream, boundary);

        // The fields, up to the file.
        let mut fields: Vec<(String, String)> = Vec::new();
        let mut total = 0usize;
        let mut file = loop {
            let Some(mut field) = parts.next_field().await.map_err(malformed)? else {
                return Err(invalid_argument(
                    "POST requires exactly one file upload per request.",
                ));
            };
            let name = field.name().unwrap_or_default().to_ascii_lowercase();
            if name == "file" {
                break field;
            }
            let mut value = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(malformed)? {
                value.extend_from_slice(&chunk);
                total += chunk.len();
                if value.len() > MAX_FIELD || total > MAX_FIELDS {
                    return Err(S3Error::new(
                        "MaxPostPreDataLengthExceeded",
                        StatusCode::BAD_REQUEST,
                        "Your POST request fields preceding the upload file were too large.",
                    ));
                }
            }
            let value = String::from_utf8(value)
                .map_err(|_| malformed(format!("field {name:?} is not UTF-8")))?;
            fields.push((name, value));
        };
        let form = Form { fields };
        let filename = file.file_name().unwrap_or_default().to_string();
        let file_type = file.content_type().map(|m| m.to_string());

        let key = form
            .get("key")
            .ok_or_else(|| invalid_argument("Bucket POST must contain a field named 'key'."))?
            .replace("${filename}", &filename);
        check_key(&key)?;
        let (signer, range) = self.form_signer(&form, &bucket).await?;
        let who = super::access::Requester {
            anonymous: signer.is_none(),
            key: signer.as_ref().unwrap_or(&nobody),
            remote,
            query: &query,
            headers: &headers,
        };
        if !who
            .permission_for(&bucket, "s3:PutObject", Some(&key))
            .write
        {
            return Err(S3Error::access_denied(
                "this form may not upload to this bucket",
            ));
        }
        let acl = match form.get("acl") {
            Some(a) => super::access::canned(a)?,
            None => Acl::new(),
        };
        super::access::check_public_acl(&bucket, &acl)?;
        let tags = match form.get("tagging") {
            Some(doc) => {
                super::tagging::parse_tagging(doc.as_bytes(), super::tagging::MAX_OBJECT_TAGS)?
            }
            None => Tags::new(),
        };
        if !acl.is_empty() || !tags.is_empty() {
            self.model
                .require_protocol(crate::model::ATTRIBUTES_PROTOCOL, "ACLs and tags")?;
        }
        let (min, max) = range.unwrap_or((0, u64::MAX));

        // The file, block by block.
        let mut sink = BodySink::new(self.cfg.block_size);
        while let Some(chunk) = file.chunk().await.map_err(malformed)? {
            if sink.size + chunk.len() as u64 > max {
                return Err(S3Error::new(
                    "EntityTooLarge",
                    StatusCode::BAD_REQUEST,
                    format!("Your proposed upload exceeds the maximum allowed size ({max} bytes)"),
                ));
            }
            sink.push(self, &chunk).await?;
        }
        if sink.size < min {
            return Err(S3Error::new(
                "EntityTooSmall",
                StatusCode::BAD_REQUEST,
                format!(
                    "Your proposed upload is smaller than the minimum allowed size ({min} bytes)"
                ),
            ));
        }
        let (body, stored) = sink.finish(self, true, None).await?;
        self.enforce_quotas(&bucket, &key, body.size).await?;

        let etag = hex::encode(body.md5);
        let kept = |name: &str| form.get(name).map(|v| (name.to_string(), v.to_string()));
        let meta = ObjectMeta {
            size: body.size,
            etag: etag.clone(),
            content_type: form.get("content-type").map(str::to_string).or(file_type),
            user_meta: form
                .fields
                .iter()
                .filter_map(|(n, v)| Some((n.strip_prefix("x-amz-meta-")?.to_string(), v.clone())))
                .collect(),
            headers: [
                "cache-control",
                "content-disposition",
                "content-encoding",
                "expires",
            ]
            .iter()
            .filter_map(|n| kept(n))
            .collect(),
            checksum: None,
            parts: Vec::new(),
            upload: None,
        };
        let uuid = new_version_id();
        let (data, attached) = self.version_data(uuid, meta, body, stored).await?;
        let me = self.model.net.id;
        let mut version = ObjectVersion::in_bucket(uuid, data, &bucket);
        version.lock = super::object_lock::with_default(VersionLock::default(), &bucket, me);
        version.tags = super::tagging::register(tags, me);
        version.acl = super::access::register(acl, me);
        let mut object = Object::new(
            object_pk(&bucket.id, bucket.shards, &key),
            key.clone(),
            version,
        );
        self.model
            .commit_object_with(&mut object, attached.as_ref())
            .await?;
        // What the form asked to get back.
        let mut resp = form_answer(&form, &bucket.name, &key, &etag)?;
        super::versioning::add_version_header(resp.headers_mut(), &bucket, &object.version);
        if let Ok(v) = HeaderValue::from_str(&format!("\"{etag}\"")) {
            resp.headers_mut().insert(http::header::ETAG, v);
        }
        Ok(resp)
    }
}

/// The answer a form asks for: a redirect (`success_action_redirect`),
/// 201 with an XML PostResponse, 200, or (by default) 204.
fn form_answer(
    form: &Form,
    bucket: &str,
    key: &str,
    etag: &str,
) -> Result<Response<Body>, S3Error> {
    let redirect = form
        .get("success_action_redirect")
        .or(form.get("redirect"))
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"));
    if let Some(url) = redirect {
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, super::sigv4::AWS_URI_ENCODE).to_string()
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let location = format!(
            "{url}{sep}bucket={}&key={}&etag={}",
            enc(bucket),
            enc(key),
            enc(&format!("\"{etag}\""))
        );
        let mut resp = Response::new(empty());
        *resp.status_mut() = StatusCode::SEE_OTHER;
        if let Ok(v) = HeaderValue::from_str(&location) {
            resp.headers_mut().insert(http::header::LOCATION, v);
        }
        return Ok(resp);
    }
    let location = format!("/{bucket}/{key}");
    let mut resp = match form.get("success_action_status") {
        Some("201") => {
            let mut x = Xml::new("PostResponse");
            x.elem("Location", &location)
                .elem("Bucket", bucket)
                .elem("Key", key)
                .elem("ETag", &format!("\"{etag}\""));
            xml_response(StatusCode::CREATED, x.finish("PostResponse"))
        }
        Some("200") => Response::new(empty()),
        _ => {
            let mut r = Response::new(super::server::full(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
    };
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(http::header::LOCATION, v);
    }
    Ok(resp)
}

fn signature_mismatch() -> S3Error {
    S3Error::new(
        "SignatureDoesNotMatch",
        StatusCode::FORBIDDEN,
        "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
    )
}

fn invalid_policy(msg: impl std::fmt::Display) -> S3Error {
    S3Error::new(
        "InvalidPolicyDocument",
        StatusCode::BAD_REQUEST,
        format!("Invalid Policy: {msg}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(fields: &[(&str, &str)]) -> Form {
        Form {
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect(),
        }
    }

    const POLICY: &str = r#"{"expiration": "2026-12-31T12:00:00.000Z",
        "conditions": [{"bucket": "uploads"}, ["starts-with", "$key", "user/"],
        {"acl": "public-read"}, ["content-length-range", 10, 1000],
        ["starts-with", "$Content-Type", "image/"], ["eq", "$x-amz-meta-tag", "v"]]}"#;
    const NOW: u64 = 1_796_000_000_000;

    #[test]
    fn policies_check_every_field() {
        let p = PostPolicy::parse(POLICY.as_bytes()).unwrap();
        let good = [
            ("key", "user/a.png"),
            ("acl", "public-read"),
            ("Content-Type", "image/png"),
            ("x-amz-meta-tag", "v"),
            ("policy", "..."),
            ("x-amz-signature", "..."),
            ("x-ignore-me", "1"),
        ];
        assert_eq!(
            p.check(&form(&good), "uploads", NOW).unwrap(),
            Some((10, 1000))
        );
        // A condition that fails, another bucket, an extra field, expiry.
        let mut bad = good.to_vec();
        bad[0] = ("key", "admin/a.png");
        assert_eq!(
            p.check(&form(&bad), "uploads", NOW).unwrap_err().code,
            "AccessDenied"
        );
        assert!(p.check(&form(&good), "other", NOW).is_err());
        let mut extra = good.to_vec();
        extra.push(("x-amz-meta-other", "x"));
        let e = p.check(&form(&extra), "uploads", NOW).unwrap_err();
        assert!(
            e.message.contains("Extra input fields: x-amz-meta-other"),
            "{}",
            e.message
        );
        assert!(
            p.check(&form(&good), "uploads", 1_800_000_000_000)
                .unwrap_err()
                .message
                .contains("expired")
        );
        let mut missing = good.to_vec();
        missing.retain(|(k, _)| *k != "acl");
        assert!(p.check(&form(&missing), "uploads", NOW).is_err());
    }

    #[test]
    fn malformed_policies_are_refused() {
        for bad in [
            "not json",
            r#"{"conditions": []}"#,
            r#"{"expiration": "tomorrow", "conditions": []}"#,
            r#"{"expiration": "2026-12-31T12:00:00.000Z"}"#,
            r#"{"expiration": "2026-12-31T12:00:00.000Z", "conditions": [["between", "$key", "a"]]}"#,
            r#"{"expiration": "2026-12-31T12:00:00.000Z", "conditions": [["content-length-range", "a", 1]]}"#,
            r#"{"expiration": "2026-12-31T12:00:00.000Z", "conditions": ["key"]}"#,
        ] {
            assert!(
                PostPolicy::parse(bad.as_bytes()).is_err(),
                "accepted: {bad}"
            );
        }
    }
}
