//! S3 tagging: an object version's tags (`?tagging` on an object, the
//! `x-amz-tagging` header of writes, `x-amz-tagging-count` on reads) and a
//! bucket's (`?tagging` on a bucket, in `bucket_config.rs`).
//!
//! A version's tags are a register of the version (last writer wins, see
//! `model::tables::ObjectVersion::tags`): changing them neither makes a
//! new version nor touches the data.

use hangar_common::clock::timestamp_ms;
use hangar_common::crdt::Lww;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use serde::Deserialize;

use super::bucket_config::parse;
use super::error::S3Error;
use super::server::{Body, S3Request, S3Server, empty, xml_response};
use super::xml::Xml;
use crate::model::tables::*;

/// Most tags an object version may have.
pub(crate) const MAX_OBJECT_TAGS: usize = 10;
/// Most tags a bucket may have.
pub(crate) const MAX_BUCKET_TAGS: usize = 50;

fn invalid_tag(msg: impl Into<String>) -> S3Error {
    S3Error::new("InvalidTag", StatusCode::BAD_REQUEST, msg)
}

/// Check a tag set as S3 does: at most `max` tags, keys of 1 to 128
/// characters and values of at most 256, keys unique, none in the `aws:`
/// namespace.
pub(crate) fn check_tags(tags: &[(String, String)], max: usize) -> Result<(), S3Error> {
    if tags.len() > max {
        return Err(S3Error::new(
            "BadRequest",
            StatusCode::BAD_REQUEST,
            format!("Object tags cannot be greater than {max}"),
        ));
    }
    for (i, (k, v)) in tags.iter().enumerate() {
        let klen = k.chars().count();
        if klen == 0 || klen > 128 {
            return Err(invalid_tag(format!(
                "The TagKey you have provided is invalid: {k:?} (1 to 128 characters)"
            )));
        }
        if v.chars().count() > 256 {
            return Err(invalid_tag(format!(
                "The TagValue you have provided is invalid: the value of {k:?} is over 256 characters"
            )));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(invalid_tag(format!(
                "Your TagKey cannot be prefixed with aws: ({k:?})"
            )));
        }
        if tags[..i].iter().any(|(other, _)| other == k) {
            return Err(invalid_tag(format!(
                "Cannot provide multiple Tags with the same key: {k:?}"
            )));
        }
    }
    Ok(())
}

/// The tags of an `x-amz-tagging` header (`k1=v1&k2=v2`, URL-encoded as a
/// query string), checked.
pub(crate) fn parse_tagging_header(value: &str) -> Result<Tags, S3Error> {
    let tags: Tags = value
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| invalid_tag("x-amz-tagging is not valid UTF-8 once decoded"))
            };
            Ok((dec(k)?, dec(v)?))
        })
        .collect::<Result<_, S3Error>>()?;
    check_tags(&tags, MAX_OBJECT_TAGS)?;
    Ok(tags)
}

/// The tags a write's `x-amz-tagging` header gives (empty: none).
pub(crate) fn tags_from_headers(r: &S3Request) -> Result<Tags, S3Error> {
    match r.req.headers().get("x-amz-tagging") {
        None => Ok(Tags::new()),
        Some(v) => parse_tagging_header(
            v.to_str()
                .map_err(|_| invalid_tag("x-amz-tagging is not ASCII"))?,
        ),
    }
}

/// A new version's tag register (None when it has none).
pub(crate) fn register(tags: Tags, me: hangar_common::NodeId) -> Option<Lww<Tags>> {
    (!tags.is_empty()).then(|| Lww::new(timestamp_ms(), me, tags))
}

/// `x-amz-tagging-count` on a GET or HEAD of a version with tags.
pub(crate) fn add_tag_count_header(h: &mut HeaderMap, v: &ObjectVersion) {
    let n = v.tag_set().len();
    if n > 0 {
        h.insert("x-amz-tagging-count", HeaderValue::from(n));
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TaggingXml {
    #[serde(rename = "TagSet")]
    tag_set: TagSetXml,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TagSetXml {
    #[serde(rename = "Tag")]
    tags: Vec<TagXml>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TagXml {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Value")]
    value: String,
}

/// Parse a `Tagging` document, checked against `max` tags.
pub(crate) fn parse_tagging(body: &[u8], max: usize) -> Result<Tags, S3Error> {
    let doc: TaggingXml = parse(body, "Tagging")?;
    let tags: Tags = doc
        .tag_set
        .tags
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect();
    check_tags(&tags, max)?;
    Ok(tags)
}

/// A `Tagging` document.
pub(crate) fn tagging_xml(tags: &[(String, String)]) -> String {
    let mut x = Xml::new("Tagging");
    x.open("TagSet");
    for (k, v) in tags {
        x.open("Tag").elem("Key", k).elem("Value", v).close("Tag");
    }
    x.close("TagSet");
    x.finish("Tagging")
}

impl S3Server {
    /// GetObjectTagging, PutObjectTagging and DeleteObjectTagging of the
    /// current version or of `versionId`. Reading needs the read
    /// permission, changing the write one.
    pub(crate) async fn object_tagging(&self, r: S3Request) -> Result<Response<Body>, S3Error> {
        let method = r.req.method().clone();
        let write = method != http::Method::GET;
        let bucket = self.bucket(&r).await?;
        let p = r.permission(&bucket);
        if !(if write { p.write } else { p.read }) {
            return Err(S3Error::access_denied(
                "this key may not do this on this bucket",
            ));
        }
        let wanted = super::versioning::wanted(&r.query)?;
        let key = r.key.clone().unwrap_or_default();
        let pk = object_pk(&bucket.id, bucket.shards, &key);
        let obj = self.model.objects.get(&pk, key.as_bytes()).await?;
        let v = super::versioning::pick(obj.as_ref(), wanted)?.clone();
        if v.data.meta().is_none() {
            // A delete marker has no tags.
            return Err(S3Error::new(
                "MethodNotAllowed",
                StatusCode::METHOD_NOT_ALLOWED,
                "The specified method is not allowed against this resource.",
            ));
        }
        let obj = obj.ok_or_else(S3Error::no_such_key)?;
        let mut resp = if method == http::Method::GET {
            xml_response(StatusCode::OK, tagging_xml(v.tag_set()))
        } else {
            let tags = if method == http::Method::PUT {
                let body = self.small_body(r).await?;
                parse_tagging(&body, MAX_OBJECT_TAGS)?
            } else {
                Tags::new()
            };
            self.model
                .require_protocol(crate::model::ATTRIBUTES_PROTOCOL, "object tags")?;
            let mut nv = v.clone();
            let me = self.model.net.id;
            match &mut nv.tags {
                Some(t) => t.update(timestamp_ms(), me, tags),
                None => nv.tags = Some(Lww::new(timestamp_ms(), me, tags)),
            }
            self.model
                .objects
                .insert(&Object::new(obj.pk.clone(), obj.key.clone(), nv))
                .await?;
            let mut resp = Response::new(empty());
            if method == http::Method::DELETE {
                *resp.status_mut() = StatusCode::NO_CONTENT;
            }
            resp
        };
        super::versioning::add_version_header(resp.headers_mut(), &bucket, &v);
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagging_headers_parse_like_s3() {
        assert_eq!(
            parse_tagging_header("a=1&b%20c=d+e&empty=").unwrap(),
            vec![
                ("a".to_string(), "1".to_string()),
                ("b c".to_string(), "d e".to_string()),
                ("empty".to_string(), String::new()),
            ]
        );
        assert_eq!(parse_tagging_header("").unwrap(), Tags::new());
        let eleven: Vec<String> = (0..11).map(|i| format!("k{i}=v")).collect();
        assert_eq!(
            parse_tagging_header(&eleven.join("&")).unwrap_err().code,
            "BadRequest"
        );
        for bad in ["a=1&a=2", "aws%3Ax=1", "=v", "%FF=1"] {
            assert_eq!(
                parse_tagging_header(bad).unwrap_err().code,
                "InvalidTag",
                "{bad}"
            );
        }
        let long_key = format!("{}=v", "k".repeat(129));
        assert_eq!(
            parse_tagging_header(&long_key).unwrap_err().code,
            "InvalidTag"
        );
        let long_value = format!("k={}", "é".repeat(257));
        assert_eq!(
            parse_tagging_header(&long_value).unwrap_err().code,
            "InvalidTag"
        );
        // 256 characters of two bytes each are fine.
        assert!(parse_tagging_header(&format!("k={}", "é".repeat(256))).is_ok());
    }

    #[test]
    fn tagging_documents_round_trip() {
        let tags = vec![
            ("project".to_string(), "a&b <c>".to_string()),
            ("empty".to_string(), String::new()),
        ];
        let doc = tagging_xml(&tags);
        assert_eq!(parse_tagging(doc.as_bytes(), 10).unwrap(), tags);
        let none = tagging_xml(&[]);
        assert_eq!(parse_tagging(none.as_bytes(), 10).unwrap(), Tags::new());
        assert_eq!(
            parse_tagging(b"<Tagging><TagSet><Tag><Key>x</Key>", 10)
                .unwrap_err()
                .code,
            "MalformedXML"
        );
    }
}
