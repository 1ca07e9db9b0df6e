//! Listing objects: ListObjectsV2 and ListObjects (v1), with prefix,
//! delimiter, pagination and URL encoding of keys.

use base64::Engine;
use http::{Response, StatusCode};

use super::error::S3Error;
use super::server::{Body, S3Request, S3Server, xml_response};
use super::xml::{Xml, iso8601};
use crate::model::tables::{Bucket, Object};

/// What one listing page holds.
struct Page {
    contents: Vec<Object>,
    prefixes: Vec<String>,
    truncated: bool,
    /// Exclusive start of the next page.
    next: Option<Vec<u8>>,
}

/// Percent-encode like S3's `encoding-type=url` (keeps `/`).
pub(crate) fn url_encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

impl S3Server {
    async fn list_page(
        &self,
        bucket: &Bucket,
        prefix: &str,
        delimiter: Option<&str>,
        start: Option<Vec<u8>>,
        max_keys: usize,
    ) -> Result<Page, S3Error> {
        let mut page = Page {
            contents: Vec::new(),
            prefixes: Vec::new(),
            truncated: false,
            next: None,
        };
        if max_keys == 0 {
            // S3: nothing, and not truncated.
            return Ok(page);
        }
        let mut lister = self
            .model
            .lister(bucket, prefix, start.as_deref(), max_keys + 1);
        let mut count = 0;
        while let Some(obj) = lister.next().await? {
            if count == max_keys {
                page.truncated = true;
                break;
            }
            let rest = &obj.key[prefix.len().min(obj.key.len())..];
            if let Some(d) = delimiter.filter(|d| !d.is_empty())
                && let Some(pos) = rest.find(d)
            {
                let cp = obj.key[..prefix.len() + pos + d.len()].to_string();
                // Skip everything under this common prefix without reading
                // it: no valid UTF-8 key has a 0xFF byte, so cp ++ 0xFF is
                // past them all.
                let mut skip = cp.as_bytes().to_vec();
                skip.push(0xFF);
                lister.skip_past(&skip);
                page.next = Some(skip);
                page.prefixes.push(cp);
            } else {
                page.next = Some(obj.key.as_bytes().to_vec());
                page.contents.push(obj);
            }
            count += 1;
        }
        if !page.truncated {
            page.next = None;
        }
        Ok(page)
    }

    pub(crate) fn check_read(&self, r: &S3Request, bucket: &Bucket) -> Result<(), S3Error> {
        if r.permission(bucket).read {
            Ok(())
        } else {
            Err(S3Error::access_denied("this key may not read this bucket"))
        }
    }

    pub(crate) async fn list_objects_v2(&self, r: &S3Request) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(r).await?;
        self.check_read(r, &bucket)?;
        let q = &r.query;
        let prefix = q.get("prefix").cloned().unwrap_or_default();
        let delimiter = q.get("delimiter").cloned();
        let max_keys = parse_max_keys(q.get("max-keys"))?;
        let url = q.get("encoding-type").map(String::as_str) == Some("url");
        let start = match (q.get("continuation-token"), q.get("start-after")) {
            (Some(t), _) => Some(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(t)
                    .map_err(|_| {
                        S3Error::new(
                            "InvalidArgument",
                            StatusCode::BAD_REQUEST,
                            "invalid continuation token",
                        )
                    })?,
            ),
            (None, Some(s)) => Some(s.as_bytes().to_vec()),
            (None, None) => None,
        };
        let page = self
            .list_page(&bucket, &prefix, delimiter.as_deref(), start, max_keys)
            .await?;
        let enc = |s: &str| if url { url_encode(s) } else { s.to_string() };
        let mut x = Xml::new("ListBucketResult");
        x.elem("Name", &bucket.name)
            .elem("Prefix", &enc(&prefix))
            .elem("MaxKeys", &max_keys.to_string())
            .elem(
                "KeyCount",
                &(page.contents.len() + page.prefixes.len()).to_string(),
            )
            .elem("IsTruncated", if page.truncated { "true" } else { "false" });
        if let Some(d) = &delimiter {
            x.elem("Delimiter", &enc(d));
        }
        if url {
            x.elem("EncodingType", "url");
        }
        if let Some(t) = q.get("continuation-token") {
            x.elem("ContinuationToken", t);
        }
        if let Some(s) = q.get("start-after") {
            x.elem("StartAfter", &enc(s));
        }
        if let Some(next) = &page.next {
            x.elem(
                "NextContinuationToken",
                &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(next),
            );
        }
        self.write_entries(
            &mut x,
            &page,
            &enc,
            q.get("fetch-owner").is_some_and(|v| v == "true"),
            r,
        );
        Ok(xml_response(StatusCode::OK, x.finish("ListBucketResult")))
    }

    pub(crate) async fn list_objects_v1(&self, r: &S3Request) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(r).await?;
        self.check_read(r, &bucket)?;
        let q = &r.query;
        let prefix = q.get("prefix").cloned().unwrap_or_default();
        let delimiter = q.get("delimiter").cloned();
        let max_keys = parse_max_keys(q.get("max-keys"))?;
        let url = q.get("encoding-type").map(String::as_str) == Some("url");
        let marker = q.get("marker").cloned().unwrap_or_default();
        let start = (!marker.is_empty()).then(|| marker.as_bytes().to_vec());
        let page = self
            .list_page(&bucket, &prefix, delimiter.as_deref(), start, max_keys)
            .await?;
        let enc = |s: &str| if url { url_encode(s) } else { s.to_string() };
        let mut x = Xml::new("ListBucketResult");
        x.elem("Name", &bucket.name)
            .elem("Prefix", &enc(&prefix))
            .elem("Marker", &enc(&marker))
            .elem("MaxKeys", &max_keys.to_string())
            .elem("IsTruncated", if page.truncated { "true" } else { "false" });
        if let Some(d) = &delimiter {
            x.elem("Delimiter", &enc(d));
        }
        if url {
            x.elem("EncodingType", "url");
        }
        if page.truncated {
            // The last key or common prefix returned.
            let last = page
                .contents
                .last()
                .map(|o| o.key.clone())
                .into_iter()
                .chain(page.prefixes.last().cloned())
                .max()
                .unwrap_or_default();
            x.elem("NextMarker", &enc(&last));
        }
        self.write_entries(&mut x, &page, &enc, true, r);
        Ok(xml_response(StatusCode::OK, x.finish("ListBucketResult")))
    }

    fn write_entries(
        &self,
        x: &mut Xml,
        page: &Page,
        enc: &dyn Fn(&str) -> String,
        owner: bool,
        r: &S3Request,
    ) {
        for o in &page.contents {
            let Some(meta) = o.version.data.meta() else {
                continue;
            };
            let (size, etag) = (meta.size, &meta.etag);
            x.open("Contents")
                .elem("Key", &enc(&o.key))
                .elem("LastModified", &iso8601(o.version.timestamp))
                .elem("ETag", &format!("\"{etag}\""))
                .elem("Size", &size.to_string())
                .elem("StorageClass", "STANDARD");
            if owner {
                x.open("Owner")
                    .elem("ID", &r.api_key.id)
                    .elem("DisplayName", &r.api_key.name.value)
                    .close("Owner");
            }
            x.close("Contents");
        }
        for p in &page.prefixes {
            x.open("CommonPrefixes")
                .elem("Prefix", &enc(p))
                .close("CommonPrefixes");
        }
    }
}

pub(crate) fn parse_max_keys(v: Option<&String>) -> Result<usize, S3Error> {
    match v {
        None => Ok(1000),
        Some(s) => s.parse::<usize>().map(|n| n.min(1000)).map_err(|_| {
            S3Error::new(
                "InvalidArgument",
                StatusCode::BAD_REQUEST,
                "max-keys must be a number",
            )
        }),
    }
}
