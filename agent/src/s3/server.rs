//! The S3 HTTP server: accept, authenticate, route, answer.
//!
//! S3 routes on the method, on whether there is a bucket and a key, and on
//! query flags (`?location`, `?list-type=2`, `?uploads`...), not on path
//! shapes, so routing is one `match` rather than a path router. The bucket
//! comes from the Host header when it ends with `root_domain`
//! (virtual-host style), otherwise from the first path segment.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use super::bucket_config::SubResource;
use super::endpoint::{Endpoint, Level, bucket_subresource};
use super::error::S3Error;
use super::sigv4::{self, AuthKind, Verified};
use crate::model::Model;
use crate::model::tables::{Bucket, Key};
use hangar_common::crdt::Flag;

pub type Body = BoxBody<Bytes, std::io::Error>;

/// Settings of the S3 endpoint.
#[derive(Clone, Debug)]
pub struct S3Config {
    pub region: String,
    pub root_domain: Option<String>,
    pub block_size: usize,
    pub inline_max: usize,
}

/// Bytes of object data all PUTs together may have in flight to replicas:
/// the agent's memory stays bounded however many clients upload at once.
pub const PUT_BUDGET_BYTES: usize = 32 << 20;

pub struct S3Server {
    pub model: Arc<Model>,
    pub cfg: S3Config,
    /// Permits for blocks in flight, shared by every PUT.
    pub put_budget: Arc<tokio::sync::Semaphore>,
    /// What this endpoint has served (shown by `/metrics`).
    pub metrics: Arc<super::metrics::S3Metrics>,
}

impl S3Server {
    pub fn new(
        model: Arc<Model>,
        cfg: S3Config,
        metrics: Arc<super::metrics::S3Metrics>,
    ) -> S3Server {
        let permits = (PUT_BUDGET_BYTES / cfg.block_size.max(1)).max(4);
        S3Server {
            model,
            cfg,
            put_budget: Arc::new(tokio::sync::Semaphore::new(permits)),
            metrics,
        }
    }
}

/// A full (non-streaming) body.
pub(crate) fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

pub(crate) fn empty() -> Body {
    full(Bytes::new())
}

pub(crate) fn xml_response(status: StatusCode, xml: String) -> Response<Body> {
    let mut r = Response::new(full(xml));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    r
}

/// What a request is about, once parsed and authenticated.
pub struct S3Request {
    pub req: Request<Incoming>,
    pub bucket: Option<String>,
    pub key: Option<String>,
    pub query: BTreeMap<String, String>,
    /// The signing key (an empty one for an anonymous request).
    pub api_key: Key,
    pub verified: Verified,
    /// What the request asks for.
    pub endpoint: Endpoint,
    /// Not signed: only what ACLs and policies grant everyone applies.
    pub anonymous: bool,
    /// The client's address (`aws:SourceIp`).
    pub remote: SocketAddr,
}

impl S3Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.req.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// The standard headers an object keeps from its upload.
    pub(crate) fn stored_headers(&self) -> Vec<(String, String)> {
        const KEPT: &[&str] = &[
            "cache-control",
            "content-disposition",
            "content-encoding",
            "content-language",
            "expires",
        ];
        KEPT.iter()
            .filter_map(|name| {
                let v = self.header(name)?;
                // `aws-chunked` is how this request was sent, not what the
                // object is.
                let v = if *name == "content-encoding" {
                    let rest: Vec<&str> = v
                        .split(',')
                        .map(str::trim)
                        .filter(|e| !e.is_empty() && *e != "aws-chunked")
                        .collect();
                    if rest.is_empty() {
                        return None;
                    }
                    rest.join(", ")
                } else {
                    v.to_string()
                };
                Some((name.to_string(), v))
            })
            .collect()
    }

    /// The `x-amz-meta-*` headers, names without the prefix.
    pub(crate) fn user_meta(&self) -> Vec<(String, String)> {
        self.req
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                let name = k.as_str().strip_prefix("x-amz-meta-")?;
                Some((name.to_string(), v.to_str().ok()?.to_string()))
            })
            .collect()
    }
}

/// Accept HTTP/1.1 connections forever and answer each request with
/// `handle` (`name` is for logs).
pub(crate) async fn serve_http<F, Fut>(listener: TcpListener, name: &'static str, handle: F)
where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!("{name} accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        // Responses are written as headers then body: without this,
        // Nagle's algorithm holds the body until the client's delayed ACK
        // (40 ms) of the headers.
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let handle = handle.clone();
                async move { Ok::<_, Infallible>(handle(req, remote).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                debug!("{name} connection from {remote} ended: {e}");
            }
        });
    }
}

impl S3Server {
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        serve_http(listener, "S3", move |req, remote| {
            let me = self.clone();
            async move { me.handle(req, remote).await }
        })
        .await
    }

    async fn handle(&self, req: Request<Incoming>, remote: SocketAddr) -> Response<Body> {
        let request_id = hex::encode(rand::random::<[u8; 8]>());
        let resource = req.uri().path().to_string();
        let method = req.method().clone();
        // Browsers: preflights carry no credentials; actual requests get
        // the headers the bucket's CORS rules grant.
        let origin = req
            .headers()
            .get("origin")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bucket_name = match (&origin, &method) {
            (Some(_), _) | (None, &Method::OPTIONS) => self.locate(&req).ok().and_then(|(b, _)| b),
            _ => None,
        };
        let started = std::time::Instant::now();
        let located = self.locate(&req);
        let query = request_query(&req);
        let endpoint = match &located {
            Ok((b, k)) => Endpoint::of(&method, b.is_some(), k.is_some(), &query, req.headers()),
            Err(_) => Endpoint::Unsupported(Level::Service),
        };
        let header_u64 = |h: &http::HeaderMap, name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let bytes_in = header_u64(req.headers(), "x-amz-decoded-content-length")
            .or_else(|| header_u64(req.headers(), "content-length"))
            .unwrap_or(0);
        let result = match located {
            _ if endpoint == Endpoint::Preflight => {
                self.options(bucket_name.as_deref(), req.headers()).await
            }
            Ok((bucket, key)) => {
                self.dispatch(req, endpoint, bucket, key, query, remote)
                    .await
            }
            Err(e) => Err(e),
        };
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                if e.status.is_server_error() {
                    warn!(
                        "S3 {method} {resource} from {remote}: {} {}",
                        e.code, e.message
                    );
                } else {
                    debug!(
                        "S3 {method} {resource} from {remote}: {} {}",
                        e.code, e.message
                    );
                }
                let body = if method == Method::HEAD {
                    String::new()
                } else {
                    e.to_xml(&resource, &request_id)
                };
                let mut resp = xml_response(e.status, body);
                for (name, value) in &e.headers {
                    if let Ok(v) = HeaderValue::from_str(value) {
                        resp.headers_mut().insert(*name, v);
                    }
                }
                resp
            }
        };
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-amz-request-id", v);
        }
        let bytes_out = if method == Method::HEAD {
            0
        } else {
            header_u64(resp.headers(), "content-length").unwrap_or(0)
        };
        self.metrics.record(
            endpoint.name(),
            resp.status().as_u16(),
            started.elapsed(),
            bytes_in,
            bytes_out,
        );
        if let (Some(origin), Some(name), false) =
            (&origin, &bucket_name, method == Method::OPTIONS)
        {
            self.add_cors(name, origin, &method, resp.headers_mut())
                .await;
        }
        resp
    }

    /// A CORS preflight for a bucket.
    async fn options(
        &self,
        bucket: Option<&str>,
        headers: &http::HeaderMap,
    ) -> Result<Response<Body>, S3Error> {
        let name = bucket
            .ok_or_else(|| S3Error::invalid_request("OPTIONS (a CORS preflight) needs a bucket"))?;
        let bucket = self.model.require_bucket(name).await?;
        super::cors::preflight(bucket.cors.value.as_deref(), headers)
    }

    /// Add the CORS headers a bucket's rules grant to a response.
    async fn add_cors(&self, bucket: &str, origin: &str, method: &Method, h: &mut http::HeaderMap) {
        if let Ok(Some(b)) = self.model.bucket_by_name(bucket).await
            && let Some(rules) = &b.cors.value
            && let Some(rule) = super::cors::find_rule(rules, origin, method.as_str(), &[])
        {
            super::cors::add_headers(rule, origin, h);
        }
    }

    /// Bucket and key of a request.
    fn locate(&self, req: &Request<Incoming>) -> Result<(Option<String>, Option<String>), S3Error> {
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
        let path = req.uri().path();
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| S3Error::invalid_request("the object key is not valid UTF-8"))
        };
        if let Some(root) = &self.cfg.root_domain
            && let Some(bucket) = host.strip_suffix(root.as_str())
            && !bucket.is_empty()
        {
            let key = path.strip_prefix('/').unwrap_or(path);
            let key = (!key.is_empty()).then(|| decode(key)).transpose()?;
            return Ok((Some(bucket.trim_end_matches('.').to_string()), key));
        }
        let path = path.strip_prefix('/').unwrap_or(path);
        if path.is_empty() {
            return Ok((None, None));
        }
        match path.split_once('/') {
            None => Ok((Some(decode(path)?), None)),
            Some((b, "")) => Ok((Some(decode(b)?), None)),
            Some((b, k)) => Ok((Some(decode(b)?), Some(decode(k)?))),
        }
    }

    /// The request's key and what its signature covers; `true`: not
    /// signed at all (anonymous).
    async fn authenticate(
        &self,
        req: &Request<Incoming>,
    ) -> Result<(Key, Verified, bool), S3Error> {
        if let Some(v2) = super::sigv2::parse(req.uri(), req.headers()) {
            let (key, verified) = self.authenticate_v2(req, v2.map_err(auth_error)?).await?;
            return Ok((key, verified, false));
        }
        let auth = sigv4::parse_auth(req.uri(), req.headers()).map_err(auth_error)?;
        let access_key = match &auth {
            AuthKind::Anonymous => {
                let nobody = Key {
                    id: String::new(),
                    secret: String::new(),
                    name: Default::default(),
                    buckets: Default::default(),
                    deleted: Flag(true),
                };
                let verified = Verified {
                    access_key: String::new(),
                    region: self.cfg.region.clone(),
                    payload: sigv4::PayloadMode::Unsigned,
                    signing: None,
                };
                return Ok((nobody, verified, true));
            }
            AuthKind::Header(h) => h.credential.access_key.clone(),
            AuthKind::Query { auth, .. } => auth.credential.access_key.clone(),
        };
        let key = self.access_key(&access_key).await?;
        // The client's clock against this node's wall clock: the 15-minute
        // window is about real time, not the hybrid clock.
        let now = hangar_common::clock::wall_ms() / 1000;
        let verified = sigv4::verify(
            req.method(),
            req.uri(),
            req.headers(),
            &auth,
            &key.secret,
            now,
        )
        .map_err(auth_error)?;
        Ok((key, verified, false))
    }

    /// The live access key a request names.
    pub(crate) async fn access_key(&self, id: &str) -> Result<Key, S3Error> {
        self.model.get_key(id).await?.ok_or_else(|| {
            S3Error::new(
                "InvalidAccessKeyId",
                StatusCode::FORBIDDEN,
                "The AWS access key Id you provided does not exist in our records.",
            )
        })
    }

    /// Signature Version 2 (see `sigv2.rs`): the body is not signed.
    async fn authenticate_v2(
        &self,
        req: &Request<Incoming>,
        auth: super::sigv2::V2Auth,
    ) -> Result<(Key, Verified), S3Error> {
        let key = self.access_key(&auth.access_key).await?;
        let now = hangar_common::clock::wall_ms() / 1000;
        let vhost = self.vhost_bucket(req);
        super::sigv2::verify(
            req.method(),
            req.uri(),
            req.headers(),
            &auth,
            &key.secret,
            vhost.as_deref(),
            now,
        )
        .map_err(auth_error)?;
        let verified = Verified {
            access_key: auth.access_key,
            region: self.cfg.region.clone(),
            payload: sigv4::PayloadMode::Unsigned,
            signing: None,
        };
        Ok((key, verified))
    }

    /// The bucket a request names by its Host (virtual-hosted style).
    fn vhost_bucket(&self, req: &Request<Incoming>) -> Option<String> {
        let host = req.headers().get(http::header::HOST)?.to_str().ok()?;
        let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
        let root = self.cfg.root_domain.as_deref()?;
        let bucket = host.strip_suffix(root)?.trim_end_matches('.');
        (!bucket.is_empty()).then(|| bucket.to_string())
    }

    async fn dispatch(
        &self,
        req: Request<Incoming>,
        endpoint: Endpoint,
        bucket: Option<String>,
        key: Option<String>,
        query: BTreeMap<String, String>,
        remote: SocketAddr,
    ) -> Result<Response<Body>, S3Error> {
        let (api_key, verified, anonymous) = self.authenticate(&req).await?;
        if anonymous && (bucket.is_none() || endpoint == Endpoint::CreateBucket) {
            return Err(S3Error::access_denied(
                "anonymous requests may not list or create buckets: sign requests with an access key",
            ));
        }
        // Only an authenticated client learns what is not served.
        if let Endpoint::Unsupported(level) = endpoint {
            return Err(S3Error::not_implemented(&match level {
                Level::Service => "this service-level operation".to_string(),
                Level::Bucket => format!(
                    "bucket operation ?{}",
                    bucket_subresource(&query).unwrap_or("(unknown)")
                ),
                Level::Object => format!("{} on an object with these parameters", req.method()),
            }));
        }
        let r = S3Request {
            req,
            bucket,
            key,
            query,
            api_key,
            verified,
            endpoint,
            anonymous,
            remote,
        };
        use Endpoint as E;
        match endpoint {
            E::ListBuckets => self.list_buckets(&r).await,
            E::CreateBucket => self.create_bucket(&r).await,
            E::DeleteBucket => self.delete_bucket(&r).await,
            E::HeadBucket => self.head_bucket(&r).await,
            E::GetBucketLocation => self.bucket_location(&r).await,
            E::GetBucketVersioning => self.get_bucket_versioning(&r).await,
            E::PutBucketVersioning => self.put_bucket_versioning(r).await,
            E::ListObjectVersions => self.list_object_versions(&r).await,
            E::GetObjectLockConfiguration => self.get_object_lock_configuration(&r).await,
            E::PutObjectLockConfiguration => self.put_object_lock_configuration(r).await,
            E::GetObjectRetention => self.get_object_retention(&r).await,
            E::PutObjectRetention => self.put_object_retention(r).await,
            E::GetObjectLegalHold => self.get_object_legal_hold(&r).await,
            E::PutObjectLegalHold => self.put_object_legal_hold(r).await,
            E::GetBucketAcl | E::GetObjectAcl => self.get_acl(&r).await,
            E::PutBucketAcl | E::PutObjectAcl => self.put_acl(r).await,
            E::GetBucketPolicy | E::PutBucketPolicy | E::DeleteBucketPolicy => {
                self.bucket_policy(r).await
            }
            E::GetBucketPolicyStatus => self.bucket_policy_status(&r).await,
            E::GetPublicAccessBlock | E::PutPublicAccessBlock | E::DeletePublicAccessBlock => {
                self.public_access_block(r).await
            }
            E::ListObjectsV2 => self.list_objects_v2(&r).await,
            E::ListObjects => self.list_objects_v1(&r).await,
            E::DeleteObjects => self.delete_objects(r).await,
            E::ListMultipartUploads => self.list_multipart_uploads(&r).await,
            E::GetBucketWebsite | E::PutBucketWebsite | E::DeleteBucketWebsite => {
                self.bucket_config(r, SubResource::Website).await
            }
            E::GetBucketCors | E::PutBucketCors | E::DeleteBucketCors => {
                self.bucket_config(r, SubResource::Cors).await
            }
            E::GetBucketLifecycleConfiguration
            | E::PutBucketLifecycleConfiguration
            | E::DeleteBucketLifecycleConfiguration => {
                self.bucket_config(r, SubResource::Lifecycle).await
            }
            E::GetBucketTagging | E::PutBucketTagging | E::DeleteBucketTagging => {
                self.bucket_config(r, SubResource::Tagging).await
            }
            E::GetObjectTagging | E::PutObjectTagging | E::DeleteObjectTagging => {
                self.object_tagging(r).await
            }
            E::GetObjectAttributes => self.get_object_attributes(&r).await,
            E::CreateMultipartUpload => self.create_multipart_upload(&r).await,
            E::UploadPart | E::UploadPartCopy => self.upload_part(r).await,
            E::CompleteMultipartUpload => self.complete_multipart_upload(r).await,
            E::AbortMultipartUpload => self.abort_multipart_upload(&r).await,
            E::ListParts => self.list_parts(&r).await,
            E::CopyObject => self.copy_object(r).await,
            E::PutObject => self.put_object(r).await,
            E::PostObject => self.post_object(r).await,
            E::GetObject => self.get_object(&r, false).await,
            E::HeadObject => self.get_object(&r, true).await,
            E::DeleteObject => self.delete_object(&r).await,
            E::Preflight | E::Unsupported(_) => Err(S3Error::not_implemented("this operation")),
        }
    }

    /// The bucket of a request, which must exist (and belong to the
    /// owner `x-amz-expected-bucket-owner` names, if given).
    pub(crate) async fn bucket(&self, r: &S3Request) -> Result<Bucket, S3Error> {
        let name = r.bucket.as_deref().unwrap_or_default();
        let bucket = self.model.require_bucket(name).await?;
        if let Some(expected) = r.header("x-amz-expected-bucket-owner")
            && Some(expected.trim()) != bucket.owner.as_deref()
        {
            return Err(S3Error::access_denied(
                "the bucket is not owned by the account x-amz-expected-bucket-owner names",
            ));
        }
        Ok(bucket)
    }
}

/// A request's query parameters, without the `X-Amz-*` ones of a
/// presigned URL, nor SigV2's `AWSAccessKeyId`, `Signature` and `Expires`
/// (authentication, not part of what the request asks for).
fn request_query(req: &Request<Incoming>) -> BTreeMap<String, String> {
    req.uri()
        .query()
        .map(|q| {
            url_pairs(q)
                .into_iter()
                .filter(|(k, _)| {
                    !k.to_ascii_lowercase().starts_with("x-amz-")
                        && !matches!(k.as_str(), "AWSAccessKeyId" | "Signature" | "Expires")
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Decode `a=b&c&d=e` into pairs (values percent-decoded; `+` is a space
/// only in forms, not in S3 queries).
pub fn url_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

fn auth_error(e: sigv4::AuthError) -> S3Error {
    S3Error::new(e.s3_code(), e.status(), e.to_string())
}
