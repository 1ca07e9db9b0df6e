//! Static websites (`[s3_web]`): buckets with a website configuration are
//! served read-only and without credentials, the bucket chosen by the Host
//! header (`<bucket><root_domain>`, or the whole host name as the bucket
//! name). Index documents for `/` and `dir/`, the error document with
//! status 404, routing-rule redirects, Range and conditional GETs, CORS.
//!
//! Giving a bucket a website configuration makes its objects public on
//! this endpoint: that is the switch, as in Garage; the S3 API itself
//! stays authenticated.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tracing::warn;

use super::error::S3Error;
use super::server::{Body, S3Server, full};
use crate::model::tables::*;

pub struct WebServer {
    pub s3: Arc<S3Server>,
    /// Host names ending with this are `<bucket><root_domain>`.
    pub root_domain: Option<String>,
}

fn page(status: StatusCode, title: &str, text: &str) -> Response<Body> {
    let html = format!(
        "<!DOCTYPE html>\n<html><head><title>{status} {title}</title></head><body><h1>{status} {title}</h1><p>{}</p></body></html>\n",
        super::xml::escape(text)
    );
    let mut r = Response::new(full(html));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

fn redirect(code: u16, location: &str) -> Response<Body> {
    let mut r = Response::new(super::server::empty());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::MOVED_PERMANENTLY);
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    r
}

/// Where a routing rule sends `key`.
fn rule_location(rule: &RoutingRule, key: &str, host: &str) -> String {
    let new_key = match (&rule.replace_key, &rule.replace_prefix) {
        (Some(k), _) => k.clone(),
        (None, Some(p)) => {
            let rest = key
                .strip_prefix(rule.if_prefix.as_deref().unwrap_or(""))
                .unwrap_or(key);
            format!("{p}{rest}")
        }
        (None, None) => key.to_string(),
    };
    if rule.host.is_none() && rule.protocol.is_none() {
        return format!("/{new_key}");
    }
    let host = rule.host.as_deref().unwrap_or(host);
    let proto = rule.protocol.as_deref().unwrap_or("http");
    format!("{proto}://{host}/{new_key}")
}

impl WebServer {
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        super::server::serve_http(listener, "website", move |req, _| {
            let me = self.clone();
            async move { me.handle(req).await }
        })
        .await
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        match self.serve_request(&req).await {
            Ok(r) => r,
            Err(e) => {
                if e.status.is_server_error() {
                    warn!("website {} {path}: {} {}", req.method(), e.code, e.message);
                }
                page(e.status, e.code, &e.message)
            }
        }
    }

    /// The bucket a Host header names.
    fn bucket_name(&self, host: &str) -> String {
        let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
        if let Some(root) = &self.root_domain
            && let Some(b) = host.strip_suffix(root.as_str())
            && !b.is_empty()
        {
            return b.trim_end_matches('.').to_string();
        }
        host.to_string()
    }

    async fn serve_request(&self, req: &Request<Incoming>) -> Result<Response<Body>, S3Error> {
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string();
        let name = self.bucket_name(&host);
        let model = &self.s3.model;
        let no_site = || {
            S3Error::new(
                "NoSuchWebsiteConfiguration",
                StatusCode::NOT_FOUND,
                format!("No website is served for {host:?}."),
            )
        };
        let bucket = model.bucket_by_name(&name).await?.ok_or_else(no_site)?;
        let site = bucket.website.value.clone().ok_or_else(no_site)?;
        let method = req.method().clone();
        let origin = req
            .headers()
            .get("origin")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if method == Method::OPTIONS {
            return super::cors::preflight(bucket.cors.value.as_deref(), req.headers());
        }
        if method != Method::GET && method != Method::HEAD {
            return Err(S3Error::new(
                "MethodNotAllowed",
                StatusCode::METHOD_NOT_ALLOWED,
                "A website is read with GET or HEAD.",
            ));
        }
        let mut resp = self.serve_site(req, &bucket, &site, &host).await?;
        if let (Some(origin), Some(rules)) = (origin, &bucket.cors.value)
            && let Some(rule) = super::cors::find_rule(rules, &origin, method.as_str(), &[])
        {
            super::cors::add_headers(rule, &origin, resp.headers_mut());
        }
        Ok(resp)
    }

    async fn serve_site(
        &self,
        req: &Request<Incoming>,
        bucket: &Bucket,
        site: &WebsiteConfig,
        host: &str,
    ) -> Result<Response<Body>, S3Error> {
        let head = req.method() == Method::HEAD;
        if let Some((to_host, proto)) = &site.redirect_all {
            let proto = proto.as_deref().unwrap_or("http");
            let pq = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            return Ok(redirect(301, &format!("{proto}://{to_host}{pq}")));
        }
        let path = percent_encoding::percent_decode_str(req.uri().path())
            .decode_utf8()
            .map_err(|_| S3Error::invalid_request("the path is not valid UTF-8"))?;
        let mut key = path.trim_start_matches('/').to_string();
        let is_dir = key.is_empty() || key.ends_with('/');
        if is_dir && let Some(index) = &site.index_suffix {
            key.push_str(index);
        }
        // Rules on the key alone apply before any lookup.
        if let Some(rule) = site.routing_rules.iter().find(|r| {
            r.if_error.is_none() && r.if_prefix.as_deref().is_some_and(|p| key.starts_with(p))
        }) {
            return Ok(redirect(
                rule.code.unwrap_or(301),
                &rule_location(rule, &key, host),
            ));
        }
        let no_query = BTreeMap::new();
        if let Some((v, _)) = self.object(bucket, &key).await? {
            let partition = partition_of(bucket, &key);
            return self
                .s3
                .object_response(req.headers(), &no_query, &v, partition, head)
                .await;
        }
        // `dir` without its slash, when `dir/index.html` exists.
        if !is_dir
            && let Some(index) = &site.index_suffix
            && self
                .object(bucket, &format!("{key}/{index}"))
                .await?
                .is_some()
        {
            return Ok(redirect(302, &format!("/{key}/")));
        }
        if let Some(rule) = site.routing_rules.iter().find(|r| {
            r.if_error == Some(404) && r.if_prefix.as_deref().is_none_or(|p| key.starts_with(p))
        }) {
            return Ok(redirect(
                rule.code.unwrap_or(301),
                &rule_location(rule, &key, host),
            ));
        }
        if let Some(error_key) = &site.error_key
            && let Some((obj, meta)) = self.object(bucket, error_key).await?
        {
            let body = if head {
                super::server::empty()
            } else {
                self.s3
                    .object_body(&obj, partition_of(bucket, error_key), 0, meta.size)
                    .await?
            };
            let mut r = Response::new(body);
            *r.status_mut() = StatusCode::NOT_FOUND;
            let h = r.headers_mut();
            if let Ok(v) = HeaderValue::from_str(
                meta.content_type
                    .as_deref()
                    .unwrap_or("text/html; charset=utf-8"),
            ) {
                h.insert(http::header::CONTENT_TYPE, v);
            }
            h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(meta.size));
            return Ok(r);
        }
        Ok(page(
            StatusCode::NOT_FOUND,
            "Not Found",
            &format!("{} was not found.", path),
        ))
    }

    async fn object(
        &self,
        bucket: &Bucket,
        key: &str,
    ) -> Result<Option<(ObjectVersion, ObjectMeta)>, S3Error> {
        let pk = object_pk(&bucket.id, bucket.shards, key);
        let obj = self.s3.model.objects.get(&pk, key.as_bytes()).await?;
        Ok(obj.as_ref().and_then(Object::live).and_then(|v| {
            let meta = v.data.meta()?.clone();
            Some((v.clone(), meta))
        }))
    }
}

/// The partition of a key's object item.
fn partition_of(bucket: &Bucket, key: &str) -> usize {
    crate::table::data::partition_of_key(&object_pk(&bucket.id, bucket.shards, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_rules_rewrite_keys() {
        let rule = RoutingRule {
            if_prefix: Some("docs/".into()),
            replace_prefix: Some("documents/".into()),
            ..Default::default()
        };
        assert_eq!(
            rule_location(&rule, "docs/a.html", "h"),
            "/documents/a.html"
        );
        let rule = RoutingRule {
            replace_key: Some("gone.html".into()),
            host: Some("example.org".into()),
            protocol: Some("https".into()),
            ..Default::default()
        };
        assert_eq!(
            rule_location(&rule, "x", "h"),
            "https://example.org/gone.html"
        );
    }
}
