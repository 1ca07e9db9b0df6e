//! Bucket sub-resources kept in the bucket item: `?website`, `?cors`,
//! `?lifecycle` (Put, Get, Delete). The XML documents are parsed into the
//! model's compact types (`model::tables`), validated, and written back in
//! S3's shapes on Get.

use hangar_common::clock::timestamp_ms;
use http::{Response, StatusCode};
use serde::Deserialize;

use super::error::S3Error;
use super::server::{Body, S3Request, S3Server, empty, xml_response};
use super::xml::Xml;
use crate::model::tables::*;

pub(crate) fn malformed(msg: impl Into<String>) -> S3Error {
    S3Error::new("MalformedXML", StatusCode::BAD_REQUEST, msg)
}

fn invalid(msg: impl Into<String>) -> S3Error {
    S3Error::new("InvalidArgument", StatusCode::BAD_REQUEST, msg)
}

// ---------------------------------------------------------------- wire forms

#[derive(Deserialize, Default)]
#[serde(default)]
struct WebsiteXml {
    #[serde(rename = "IndexDocument")]
    index: Option<SuffixXml>,
    #[serde(rename = "ErrorDocument")]
    error: Option<KeyXml>,
    #[serde(rename = "RedirectAllRequestsTo")]
    redirect_all: Option<RedirectAllXml>,
    #[serde(rename = "RoutingRules")]
    rules: Option<RoutingRulesXml>,
}

#[derive(Deserialize)]
struct SuffixXml {
    #[serde(rename = "Suffix")]
    suffix: String,
}

#[derive(Deserialize)]
struct KeyXml {
    #[serde(rename = "Key")]
    key: String,
}

#[derive(Deserialize)]
struct RedirectAllXml {
    #[serde(rename = "HostName")]
    host: String,
    #[serde(rename = "Protocol")]
    protocol: Option<String>,
}

#[derive(Deserialize, Default)]
struct RoutingRulesXml {
    #[serde(rename = "RoutingRule", default)]
    rules: Vec<RoutingRuleXml>,
}

#[derive(Deserialize)]
struct RoutingRuleXml {
    #[serde(rename = "Condition")]
    condition: Option<ConditionXml>,
    #[serde(rename = "Redirect")]
    redirect: RedirectXml,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ConditionXml {
    #[serde(rename = "KeyPrefixEquals")]
    prefix: Option<String>,
    #[serde(rename = "HttpErrorCodeReturnedEquals")]
    error: Option<u16>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RedirectXml {
    #[serde(rename = "HostName")]
    host: Option<String>,
    #[serde(rename = "Protocol")]
    protocol: Option<String>,
    #[serde(rename = "ReplaceKeyPrefixWith")]
    replace_prefix: Option<String>,
    #[serde(rename = "ReplaceKeyWith")]
    replace_key: Option<String>,
    #[serde(rename = "HttpRedirectCode")]
    code: Option<u16>,
}

#[derive(Deserialize, Default)]
struct CorsXml {
    #[serde(rename = "CORSRule", default)]
    rules: Vec<CorsRuleXml>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CorsRuleXml {
    #[serde(rename = "ID")]
    id: Option<String>,
    #[serde(rename = "AllowedOrigin")]
    origins: Vec<String>,
    #[serde(rename = "AllowedMethod")]
    methods: Vec<String>,
    #[serde(rename = "AllowedHeader")]
    headers: Vec<String>,
    #[serde(rename = "ExposeHeader")]
    expose: Vec<String>,
    #[serde(rename = "MaxAgeSeconds")]
    max_age: Option<u64>,
}

#[derive(Deserialize, Default)]
struct LifecycleXml {
    #[serde(rename = "Rule", default)]
    rules: Vec<LifecycleRuleXml>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LifecycleRuleXml {
    #[serde(rename = "ID")]
    id: Option<String>,
    #[serde(rename = "Status")]
    status: String,
    #[serde(rename = "Prefix")]
    prefix: Option<String>,
    #[serde(rename = "Filter")]
    filter: Option<FilterXml>,
    #[serde(rename = "Expiration")]
    expiration: Option<ExpirationXml>,
    #[serde(rename = "AbortIncompleteMultipartUpload")]
    abort: Option<AbortXml>,
    #[serde(rename = "NoncurrentVersionExpiration")]
    noncurrent: Option<NoncurrentXml>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NoncurrentXml {
    #[serde(rename = "NoncurrentDays")]
    days: Option<u32>,
    #[serde(rename = "NewerNoncurrentVersions")]
    newer: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct FilterXml {
    #[serde(rename = "Prefix")]
    prefix: Option<String>,
    #[serde(rename = "And")]
    and: Option<AndXml>,
    #[serde(rename = "Tag")]
    tag: Option<serde::de::IgnoredAny>,
    #[serde(rename = "ObjectSizeGreaterThan")]
    size_gt: Option<u64>,
    #[serde(rename = "ObjectSizeLessThan")]
    size_lt: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AndXml {
    #[serde(rename = "Prefix")]
    prefix: Option<String>,
    #[serde(rename = "Tag")]
    tag: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ExpirationXml {
    #[serde(rename = "Days")]
    days: Option<u32>,
    #[serde(rename = "Date")]
    date: Option<String>,
    #[serde(rename = "ExpiredObjectDeleteMarker")]
    delete_marker: Option<bool>,
}

#[derive(Deserialize)]
struct AbortXml {
    #[serde(rename = "DaysAfterInitiation")]
    days: u32,
}

pub(crate) fn parse<T: for<'de> Deserialize<'de>>(body: &[u8], what: &str) -> Result<T, S3Error> {
    let text = std::str::from_utf8(body).map_err(|_| malformed("the body is not UTF-8"))?;
    quick_xml::de::from_str(text).map_err(|e| malformed(format!("invalid {what} document: {e}")))
}

/// Parse and validate a WebsiteConfiguration document.
pub(crate) fn parse_website(body: &[u8]) -> Result<WebsiteConfig, S3Error> {
    let w: WebsiteXml = parse(body, "WebsiteConfiguration")?;
    let redirect_all = w.redirect_all.map(|r| (r.host, r.protocol));
    if redirect_all.is_none() && w.index.is_none() {
        return Err(invalid(
            "a website configuration needs an IndexDocument or RedirectAllRequestsTo",
        ));
    }
    let index_suffix = match w.index {
        Some(i) if i.suffix.is_empty() || i.suffix.contains('/') => {
            return Err(invalid(
                "the IndexDocument Suffix must be a non-empty name without '/'",
            ));
        }
        Some(i) => Some(i.suffix),
        None => None,
    };
    let mut routing_rules = Vec::new();
    for r in w.rules.map(|r| r.rules).unwrap_or_default() {
        let c = r.condition.unwrap_or_default();
        let d = r.redirect;
        if d.replace_key.is_some() && d.replace_prefix.is_some() {
            return Err(invalid(
                "a redirect has ReplaceKeyWith or ReplaceKeyPrefixWith, not both",
            ));
        }
        if let Some(code) = d.code
            && !(300..400).contains(&code)
        {
            return Err(invalid(format!("HttpRedirectCode {code} is not a 3xx")));
        }
        routing_rules.push(RoutingRule {
            if_prefix: c.prefix,
            if_error: c.error,
            protocol: d.protocol,
            host: d.host,
            replace_prefix: d.replace_prefix,
            replace_key: d.replace_key,
            code: d.code,
        });
    }
    Ok(WebsiteConfig {
        index_suffix,
        error_key: w.error.map(|e| e.key),
        redirect_all,
        routing_rules,
    })
}

fn website_xml(w: &WebsiteConfig) -> String {
    let mut x = Xml::new("WebsiteConfiguration");
    if let Some((host, protocol)) = &w.redirect_all {
        x.open("RedirectAllRequestsTo").elem("HostName", host);
        if let Some(p) = protocol {
            x.elem("Protocol", p);
        }
        x.close("RedirectAllRequestsTo");
    }
    if let Some(s) = &w.index_suffix {
        x.open("IndexDocument")
            .elem("Suffix", s)
            .close("IndexDocument");
    }
    if let Some(k) = &w.error_key {
        x.open("ErrorDocument")
            .elem("Key", k)
            .close("ErrorDocument");
    }
    if !w.routing_rules.is_empty() {
        x.open("RoutingRules");
        for r in &w.routing_rules {
            x.open("RoutingRule");
            if r.if_prefix.is_some() || r.if_error.is_some() {
                x.open("Condition");
                if let Some(p) = &r.if_prefix {
                    x.elem("KeyPrefixEquals", p);
                }
                if let Some(e) = r.if_error {
                    x.elem("HttpErrorCodeReturnedEquals", &e.to_string());
                }
                x.close("Condition");
            }
            x.open("Redirect");
            let fields = [
                ("HostName", r.host.clone()),
                ("Protocol", r.protocol.clone()),
                ("ReplaceKeyPrefixWith", r.replace_prefix.clone()),
                ("ReplaceKeyWith", r.replace_key.clone()),
                ("HttpRedirectCode", r.code.map(|c| c.to_string())),
            ];
            for (name, v) in fields {
                if let Some(v) = v {
                    x.elem(name, &v);
                }
            }
            x.close("Redirect").close("RoutingRule");
        }
        x.close("RoutingRules");
    }
    x.finish("WebsiteConfiguration")
}

const CORS_METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE", "HEAD"];

pub(crate) fn parse_cors(body: &[u8]) -> Result<Vec<CorsRule>, S3Error> {
    let c: CorsXml = parse(body, "CORSConfiguration")?;
    if c.rules.is_empty() || c.rules.len() > 100 {
        return Err(malformed("a CORS configuration has 1 to 100 rules"));
    }
    c.rules
        .into_iter()
        .map(|r| {
            if r.origins.is_empty() || r.methods.is_empty() {
                return Err(malformed(
                    "each CORSRule needs an AllowedOrigin and an AllowedMethod",
                ));
            }
            if let Some(m) = r
                .methods
                .iter()
                .find(|m| !CORS_METHODS.contains(&m.as_str()))
            {
                return Err(invalid(format!(
                    "unsupported CORS method {m:?}: use GET, PUT, POST, DELETE or HEAD"
                )));
            }
            Ok(CorsRule {
                id: r.id,
                origins: r.origins,
                methods: r.methods,
                headers: r.headers,
                expose: r.expose,
                max_age: r.max_age,
            })
        })
        .collect()
}

fn cors_xml(rules: &[CorsRule]) -> String {
    let mut x = Xml::new("CORSConfiguration");
    for r in rules {
        x.open("CORSRule");
        if let Some(id) = &r.id {
            x.elem("ID", id);
        }
        for (name, list) in [
            ("AllowedOrigin", &r.origins),
            ("AllowedMethod", &r.methods),
            ("AllowedHeader", &r.headers),
            ("ExposeHeader", &r.expose),
        ] {
            for v in list {
                x.elem(name, v);
            }
        }
        if let Some(a) = r.max_age {
            x.elem("MaxAgeSeconds", &a.to_string());
        }
        x.close("CORSRule");
    }
    x.finish("CORSConfiguration")
}

pub(crate) fn parse_lifecycle(body: &[u8]) -> Result<Vec<LifecycleRule>, S3Error> {
    let l: LifecycleXml = parse(body, "LifecycleConfiguration")?;
    if l.rules.is_empty() || l.rules.len() > 1000 {
        return Err(malformed("a lifecycle configuration has 1 to 1000 rules"));
    }
    l.rules
        .into_iter()
        .map(|r| {
            let enabled = match r.status.as_str() {
                "Enabled" => true,
                "Disabled" => false,
                s => {
                    return Err(malformed(format!(
                        "Status must be Enabled or Disabled, not {s:?}"
                    )));
                }
            };
            let mut prefix = r.prefix.unwrap_or_default();
            if let Some(f) = r.filter {
                if f.tag.is_some()
                    || f.size_gt.is_some()
                    || f.size_lt.is_some()
                    || f.and.as_ref().is_some_and(|a| a.tag.is_some())
                {
                    return Err(S3Error::not_implemented(
                        "lifecycle filters on tags or object sizes",
                    ));
                }
                if let Some(p) = f.prefix.or(f.and.and_then(|a| a.prefix)) {
                    prefix = p;
                }
            }
            let exp = r.expiration.unwrap_or_default();
            let expired_marker = exp.delete_marker == Some(true);
            if expired_marker && (exp.days.is_some() || exp.date.is_some()) {
                return Err(malformed(
                    "ExpiredObjectDeleteMarker cannot be given with Days or Date",
                ));
            }
            let expire_date_ms = match exp.date {
                None => None,
                Some(d) => Some(hangar_common::date::parse_iso8601(d.trim()).ok_or_else(|| {
                    malformed(format!(
                        "Expiration Date must be like 2026-01-01T00:00:00Z, not {d:?}"
                    ))
                })?),
            };
            if exp.days == Some(0) {
                return Err(invalid("Expiration Days must be at least 1"));
            }
            let abort_mpu_days = r.abort.map(|a| a.days);
            let (noncurrent_days, newer_noncurrent) = match r.noncurrent {
                None => (None, None),
                Some(n) => match n.days {
                    Some(d) if d >= 1 => (Some(d), n.newer),
                    _ => {
                        return Err(invalid(
                            "NoncurrentVersionExpiration needs NoncurrentDays of at least 1",
                        ));
                    }
                },
            };
            if exp.days.is_none()
                && expire_date_ms.is_none()
                && abort_mpu_days.is_none()
                && noncurrent_days.is_none()
                && !expired_marker
            {
                return Err(S3Error::not_implemented(
                    "lifecycle actions other than Expiration, NoncurrentVersionExpiration and AbortIncompleteMultipartUpload",
                ));
            }
            Ok(LifecycleRule {
                id: r.id,
                enabled,
                prefix,
                expire_days: exp.days,
                expire_date_ms,
                abort_mpu_days,
                noncurrent_days,
                newer_noncurrent,
                expired_marker,
            })
        })
        .collect()
}

fn lifecycle_xml(rules: &[LifecycleRule]) -> String {
    let mut x = Xml::new("LifecycleConfiguration");
    for r in rules {
        x.open("Rule");
        if let Some(id) = &r.id {
            x.elem("ID", id);
        }
        x.open("Filter")
            .elem("Prefix", &r.prefix)
            .close("Filter")
            .elem("Status", if r.enabled { "Enabled" } else { "Disabled" });
        if r.expire_days.is_some() || r.expire_date_ms.is_some() || r.expired_marker {
            x.open("Expiration");
            if let Some(d) = r.expire_days {
                x.elem("Days", &d.to_string());
            }
            if let Some(ms) = r.expire_date_ms {
                x.elem("Date", &super::xml::iso8601(ms));
            }
            if r.expired_marker {
                x.elem("ExpiredObjectDeleteMarker", "true");
            }
            x.close("Expiration");
        }
        if let Some(d) = r.noncurrent_days {
            x.open("NoncurrentVersionExpiration")
                .elem("NoncurrentDays", &d.to_string());
            if let Some(n) = r.newer_noncurrent {
                x.elem("NewerNoncurrentVersions", &n.to_string());
            }
            x.close("NoncurrentVersionExpiration");
        }
        if let Some(d) = r.abort_mpu_days {
            x.open("AbortIncompleteMultipartUpload")
                .elem("DaysAfterInitiation", &d.to_string())
                .close("AbortIncompleteMultipartUpload");
        }
        x.close("Rule");
    }
    x.finish("LifecycleConfiguration")
}

/// Which sub-resource a request is about.
#[derive(Clone, Copy)]
pub enum SubResource {
    Website,
    Cors,
    Lifecycle,
    Tagging,
}

impl S3Server {
    /// Put, Get or Delete a bucket's website, CORS or lifecycle
    /// configuration. Changing one needs the owner permission; reading it,
    /// any permission on the bucket.
    pub(crate) async fn bucket_config(
        &self,
        r: S3Request,
        which: SubResource,
    ) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(&r).await?;
        let perm = r.permission(&bucket);
        let method = r.req.method().clone();
        if method == http::Method::GET {
            if !(perm.read || perm.write || perm.owner) {
                return Err(S3Error::access_denied(
                    "this key has no access to this bucket",
                ));
            }
            let none = |code: &'static str, what: &str| {
                S3Error::new(
                    code,
                    StatusCode::NOT_FOUND,
                    format!("The bucket has no {what}."),
                )
            };
            let xml = match which {
                SubResource::Website => bucket
                    .website
                    .value
                    .as_ref()
                    .map(website_xml)
                    .ok_or_else(|| none("NoSuchWebsiteConfiguration", "website configuration"))?,
                SubResource::Cors => bucket
                    .cors
                    .value
                    .as_deref()
                    .map(cors_xml)
                    .ok_or_else(|| none("NoSuchCORSConfiguration", "CORS configuration"))?,
                SubResource::Lifecycle => bucket
                    .lifecycle
                    .value
                    .as_deref()
                    .map(lifecycle_xml)
                    .ok_or_else(|| {
                        none("NoSuchLifecycleConfiguration", "lifecycle configuration")
                    })?,
                SubResource::Tagging => bucket
                    .tags
                    .value
                    .as_deref()
                    .map(super::tagging::tagging_xml)
                    .ok_or_else(|| none("NoSuchTagSet", "tag set"))?,
            };
            return Ok(xml_response(StatusCode::OK, xml));
        }
        if !perm.owner {
            return Err(S3Error::access_denied(
                "only a key with the owner permission may change a bucket's configuration",
            ));
        }
        // A change is a read-modify-write of the bucket's registers: read
        // them from the replicas (not the lookup cache), so the new value
        // is timed above the one it replaces.
        let mut bucket = self.model.require_bucket_fresh(&bucket.name).await?;
        let now = timestamp_ms();
        let me = self.model.net.id;
        let status = if method == http::Method::PUT {
            let body = self.small_body(r).await?;
            match which {
                SubResource::Website => bucket.website.update(now, me, Some(parse_website(&body)?)),
                SubResource::Cors => bucket.cors.update(now, me, Some(parse_cors(&body)?)),
                SubResource::Lifecycle => {
                    bucket
                        .lifecycle
                        .update(now, me, Some(parse_lifecycle(&body)?))
                }
                SubResource::Tagging => {
                    let tags =
                        super::tagging::parse_tagging(&body, super::tagging::MAX_BUCKET_TAGS)?;
                    self.model
                        .require_protocol(crate::model::ATTRIBUTES_PROTOCOL, "bucket tags")?;
                    bucket.tags.update(now, me, Some(tags))
                }
            }
            StatusCode::OK
        } else if method == http::Method::DELETE {
            match which {
                SubResource::Website => bucket.website.update(now, me, None),
                SubResource::Cors => bucket.cors.update(now, me, None),
                SubResource::Lifecycle => bucket.lifecycle.update(now, me, None),
                SubResource::Tagging => bucket.tags.update(now, me, None),
            }
            StatusCode::NO_CONTENT
        } else {
            return Err(S3Error::not_implemented(&format!(
                "{method} on this bucket sub-resource"
            )));
        };
        self.model.save_bucket(&bucket).await?;
        let mut resp = Response::new(empty());
        *resp.status_mut() = status;
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn website_documents_round_trip() {
        let doc = br#"<WebsiteConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
            <IndexDocument><Suffix>index.html</Suffix></IndexDocument>
            <ErrorDocument><Key>404.html</Key></ErrorDocument>
            <RoutingRules><RoutingRule>
              <Condition><KeyPrefixEquals>old/</KeyPrefixEquals></Condition>
              <Redirect><ReplaceKeyPrefixWith>new/</ReplaceKeyPrefixWith><HttpRedirectCode>302</HttpRedirectCode></Redirect>
            </RoutingRule></RoutingRules>
          </WebsiteConfiguration>"#;
        let w = parse_website(doc).unwrap();
        assert_eq!(w.index_suffix.as_deref(), Some("index.html"));
        assert_eq!(w.error_key.as_deref(), Some("404.html"));
        assert_eq!(w.routing_rules[0].replace_prefix.as_deref(), Some("new/"));
        assert_eq!(parse_website(website_xml(&w).as_bytes()).unwrap(), w);
        assert!(parse_website(b"<WebsiteConfiguration></WebsiteConfiguration>").is_err());
        assert!(parse_website(b"not xml").is_err());
    }

    #[test]
    fn cors_and_lifecycle_documents_round_trip() {
        let cors = br#"<CORSConfiguration><CORSRule><AllowedOrigin>https://a.example</AllowedOrigin>
            <AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod>
            <AllowedHeader>*</AllowedHeader><MaxAgeSeconds>60</MaxAgeSeconds></CORSRule></CORSConfiguration>"#;
        let c = parse_cors(cors).unwrap();
        assert_eq!(c[0].methods, ["GET", "PUT"]);
        assert_eq!(parse_cors(cors_xml(&c).as_bytes()).unwrap(), c);
        assert!(parse_cors(b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>PATCH</AllowedMethod></CORSRule></CORSConfiguration>").is_err());

        let lc = br#"<LifecycleConfiguration><Rule><ID>logs</ID><Filter><Prefix>logs/</Prefix></Filter>
            <Status>Enabled</Status><Expiration><Days>3</Days></Expiration>
            <AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation></AbortIncompleteMultipartUpload>
            </Rule><Rule><Prefix>tmp/</Prefix><Status>Disabled</Status><Expiration><Date>2026-01-01T00:00:00Z</Date></Expiration></Rule>
            </LifecycleConfiguration>"#;
        let l = parse_lifecycle(lc).unwrap();
        assert_eq!(l[0].prefix, "logs/");
        assert_eq!(l[0].expire_days, Some(3));
        assert_eq!(l[0].abort_mpu_days, Some(1));
        assert_eq!(l[1].prefix, "tmp/");
        assert!(!l[1].enabled);
        assert_eq!(l[1].expire_date_ms, Some(1_767_225_600_000));
        assert_eq!(parse_lifecycle(lifecycle_xml(&l).as_bytes()).unwrap(), l);

        let versions = br#"<LifecycleConfiguration><Rule><Filter><Prefix>v/</Prefix></Filter>
            <Status>Enabled</Status><Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>
            <NoncurrentVersionExpiration><NoncurrentDays>30</NoncurrentDays><NewerNoncurrentVersions>2</NewerNoncurrentVersions></NoncurrentVersionExpiration>
            </Rule></LifecycleConfiguration>"#;
        let l = parse_lifecycle(versions).unwrap();
        assert_eq!(
            (l[0].noncurrent_days, l[0].newer_noncurrent),
            (Some(30), Some(2))
        );
        assert!(l[0].expired_marker);
        assert_eq!(parse_lifecycle(lifecycle_xml(&l).as_bytes()).unwrap(), l);
        // Days and ExpiredObjectDeleteMarker exclude each other, as in S3.
        assert!(parse_lifecycle(br#"<LifecycleConfiguration><Rule><Status>Enabled</Status><Expiration><Days>1</Days><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration></Rule></LifecycleConfiguration>"#).is_err());
        assert!(parse_lifecycle(br#"<LifecycleConfiguration><Rule><Status>Enabled</Status><NoncurrentVersionExpiration><NoncurrentDays>0</NoncurrentDays></NoncurrentVersionExpiration></Rule></LifecycleConfiguration>"#).is_err());
    }
}
