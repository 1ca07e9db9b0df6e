//! Bucket-level S3 operations: ListBuckets, CreateBucket, DeleteBucket,
//! HeadBucket, GetBucketLocation.

use http::{Response, StatusCode};

use super::error::S3Error;
use super::server::{Body, S3Request, S3Server, empty, xml_response};
use super::xml::{Xml, iso8601};

impl S3Server {
    pub(crate) async fn list_buckets(&self, r: &S3Request) -> Result<Response<Body>, S3Error> {
        let mut buckets = Vec::new();
        for (id, perm) in r.api_key.buckets.iter() {
            if !(perm.read || perm.write || perm.owner) {
                continue;
            }
            // Cached (and refreshed in the background): no round trip.
            if let Some(b) = self.model.bucket_by_id(id).await? {
                buckets.push(b);
            }
        }
        buckets.sort_by(|a, b| a.name.cmp(&b.name));
        // Pages: `prefix`, `max-buckets` (1 to 10,000) and a continuation
        // token (the last name of the page before, in hex).
        let prefix = r.query.get("prefix").cloned().unwrap_or_default();
        let max: usize = match r.query.get("max-buckets") {
            None => 10_000,
            Some(m) => m
                .parse()
                .ok()
                .filter(|m| (1..=10_000).contains(m))
                .ok_or_else(|| {
                    S3Error::new(
                        "InvalidArgument",
                        StatusCode::BAD_REQUEST,
                        "max-buckets must be a number from 1 to 10000",
                    )
                })?,
        };
        let after = match r.query.get("continuation-token") {
            None => None,
            Some(t) => Some(
                hex::decode(t)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        S3Error::new(
                            "InvalidArgument",
                            StatusCode::BAD_REQUEST,
                            "The continuation token provided is incorrect",
                        )
                    })?,
            ),
        };
        let matching: Vec<&crate::model::tables::Bucket> = buckets
            .iter()
            .filter(|b| b.name.starts_with(&prefix))
            .filter(|b| after.as_ref().is_none_or(|a| b.name > *a))
            .collect();
        let page = &matching[..matching.len().min(max)];
        let mut x = Xml::new("ListAllMyBucketsResult");
        x.open("Owner")
            .elem("ID", &r.api_key.id)
            .elem("DisplayName", &r.api_key.name.value)
            .close("Owner");
        x.open("Buckets");
        for b in page {
            x.open("Bucket")
                .elem("Name", &b.name)
                .elem("CreationDate", &iso8601(b.created_ms))
                .elem("BucketRegion", &self.cfg.region)
                .close("Bucket");
        }
        x.close("Buckets");
        if matching.len() > page.len()
            && let Some(last) = page.last()
        {
            x.elem("ContinuationToken", &hex::encode(&last.name));
        }
        if r.query.contains_key("prefix") {
            x.elem("Prefix", &prefix);
        }
        Ok(xml_response(
            StatusCode::OK,
            x.finish("ListAllMyBucketsResult"),
        ))
    }

    pub(crate) async fn create_bucket(&self, r: &S3Request) -> Result<Response<Body>, S3Error> {
        let name = r.bucket.as_deref().unwrap_or_default();
        if let Some(existing) = self.model.bucket_by_name(name).await? {
            if r.permission(&existing).owner {
                return Err(S3Error::new(
                    "BucketAlreadyOwnedByYou",
                    StatusCode::CONFLICT,
                    format!("You already own the bucket {name:?}."),
                ));
            }
            return Err(S3Error::new(
                "BucketAlreadyExists",
                StatusCode::CONFLICT,
                format!("The bucket name {name:?} is already taken."),
            ));
        }
        let lock = r
            .header("x-amz-bucket-object-lock-enabled")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if lock
            && !self
                .model
                .net
                .peers_below(crate::model::VERSIONING_PROTOCOL)
                .is_empty()
        {
            return Err(S3Error::new(
                "InvalidBucketState",
                StatusCode::CONFLICT,
                "some nodes run a version of Hangar without versioning: upgrade every node first",
            ));
        }
        let acl = super::access::acl_from_headers(r.req.headers())?.unwrap_or_default();
        let created = self
            .model
            .create_bucket(name, Some(&r.api_key.id), lock)
            .await?;
        if !acl.is_empty() {
            self.acl_of_write(r, &created)?;
            self.update_bucket(name, |b, now, me| b.acl.update(now, me, acl))
                .await?;
        }
        let mut resp = Response::new(empty());
        if let Ok(v) = http::HeaderValue::from_str(&format!("/{name}")) {
            resp.headers_mut().insert(http::header::LOCATION, v);
        }
        Ok(resp)
    }

    pub(crate) async fn delete_bucket(&self, r: &S3Request) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(r).await?;
        if !r.permission(&bucket).owner {
            return Err(S3Error::access_denied(
                "deleting a bucket needs the owner permission",
            ));
        }
        self.model.delete_bucket(&bucket.name).await?;
        let mut resp = Response::new(empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        Ok(resp)
    }

    pub(crate) async fn head_bucket(&self, r: &S3Request) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(r).await?;
        let p = r.permission(&bucket);
        if !(p.read || p.write || p.owner) {
            return Err(S3Error::access_denied(
                "this key has no permission on this bucket",
            ));
        }
        let mut resp = Response::new(empty());
        if let Ok(v) = http::HeaderValue::from_str(&self.cfg.region) {
            resp.headers_mut().insert("x-amz-bucket-region", v);
        }
        Ok(resp)
    }

    pub(crate) async fn bucket_location(&self, r: &S3Request) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(r).await?;
        let p = r.permission(&bucket);
        if !(p.read || p.write || p.owner) {
            return Err(S3Error::access_denied(
                "this key has no permission on this bucket",
            ));
        }
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LocationConstraint xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">{}</LocationConstraint>",
            super::xml::escape(&self.cfg.region)
        );
        Ok(xml_response(StatusCode::OK, xml))
    }
}
