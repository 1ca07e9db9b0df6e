//! GetObjectAttributes (`GET /bucket/key?attributes`): an object
//! version's ETag, checksum, parts, storage class and size, as the
//! `x-amz-object-attributes` header asks, without its body.

use http::{HeaderValue, Response, StatusCode};

use super::error::S3Error;
use super::server::{Body, S3Request, S3Server, xml_response};
use super::xml::{Xml, http_date};
use crate::model::tables::PartInfo;

/// The attributes S3 knows.
const ATTRIBUTES: [&str; 5] = [
    "ETag",
    "Checksum",
    "ObjectParts",
    "StorageClass",
    "ObjectSize",
];

fn invalid_argument(msg: impl Into<String>) -> S3Error {
    S3Error::new("InvalidArgument", StatusCode::BAD_REQUEST, msg)
}

/// The attributes asked for (each S3 name once), refused if none or
/// unknown.
fn asked(r: &S3Request) -> Result<Vec<&'static str>, S3Error> {
    let mut out = Vec::new();
    for h in r.req.headers().get_all("x-amz-object-attributes") {
        let h = h
            .to_str()
            .map_err(|_| invalid_argument("x-amz-object-attributes is not ASCII"))?;
        for name in h.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let known = ATTRIBUTES
                .into_iter()
                .find(|a| a.eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    invalid_argument(format!("Invalid attribute name specified: {name}"))
                })?;
            if !out.contains(&known) {
                out.push(known);
            }
        }
    }
    if out.is_empty() {
        return Err(invalid_argument(
            "The x-amz-object-attributes header specifying the attributes to be retrieved is either missing or empty",
        ));
    }
    Ok(out)
}

/// A number header, if given (an `InvalidArgument` if not a number).
fn number(r: &S3Request, name: &str) -> Result<Option<u32>, S3Error> {
    r.header(name)
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| invalid_argument(format!("{name} must be a number")))
        })
        .transpose()
}

impl S3Server {
    /// GetObjectAttributes of the current version or of `versionId`.
    pub(crate) async fn get_object_attributes(
        &self,
        r: &S3Request,
    ) -> Result<Response<Body>, S3Error> {
        let attributes = asked(r)?;
        let max_parts = number(r, "x-amz-max-parts")?.unwrap_or(1000).min(1000) as usize;
        let marker = number(r, "x-amz-part-number-marker")?.unwrap_or(0);
        let (bucket, v) = self.load_object(r).await?;
        let meta = v.data.meta().ok_or_else(S3Error::no_such_key)?;

        let mut x = Xml::new("GetObjectAttributesResponse");
        for a in attributes {
            match a {
                "ETag" => {
                    x.elem("ETag", &meta.etag);
                }
                "Checksum" => {
                    if let Some(c) = &meta.checksum {
                        x.open("Checksum")
                            .elem(&c.algorithm.element(), &c.shown())
                            .elem("ChecksumType", c.kind())
                            .close("Checksum");
                    }
                }
                "ObjectParts" => {
                    // Only a multipart object has parts to show.
                    if !meta.parts.is_empty() {
                        let after: Vec<&PartInfo> =
                            meta.parts.iter().filter(|p| p.number > marker).collect();
                        let page = &after[..after.len().min(max_parts)];
                        let truncated = after.len() > page.len();
                        x.open("ObjectParts")
                            .elem("PartsCount", &meta.parts.len().to_string())
                            .elem("PartNumberMarker", &marker.to_string())
                            .elem(
                                "NextPartNumberMarker",
                                &page.last().map_or(marker, |p| p.number).to_string(),
                            )
                            .elem("MaxParts", &max_parts.to_string())
                            .elem("IsTruncated", if truncated { "true" } else { "false" });
                        for p in page {
                            x.open("Part")
                                .elem("PartNumber", &p.number.to_string())
                                .elem("Size", &p.size.to_string());
                            if let Some(c) = &p.checksum {
                                x.elem(&c.algorithm.element(), &c.shown());
                            }
                            x.close("Part");
                        }
                        x.close("ObjectParts");
                    }
                }
                "StorageClass" => {
                    x.elem("StorageClass", "STANDARD");
                }
                _ => {
                    x.elem("ObjectSize", &meta.size.to_string());
                }
            }
        }
        let mut resp = xml_response(StatusCode::OK, x.finish("GetObjectAttributesResponse"));
        if let Ok(d) = HeaderValue::from_str(&http_date(v.timestamp)) {
            resp.headers_mut().insert(http::header::LAST_MODIFIED, d);
        }
        super::versioning::add_version_header(resp.headers_mut(), &bucket, &v);
        Ok(resp)
    }
}
