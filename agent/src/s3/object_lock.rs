//! S3 object lock: a bucket's lock configuration and default retention
//! (`?object-lock`), a version's retention (`?retention`) and legal hold
//! (`?legal-hold`), the `x-amz-object-lock-*` headers of writes and
//! reads, and the refusals of deletes. What merging does with a version's
//! lock is the model's (`model::tables::VersionLock`).
//!
//! Dates are checked against this node's wall clock: a node whose clock
//! runs behind keeps a version locked that long after its date, one ahead
//! frees it that much early (the README says so).

use hangar_common::NodeId;
use hangar_common::clock::{timestamp_ms, wall_ms};
use hangar_common::crdt::Lww;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use serde::Deserialize;

use super::bucket_config::{malformed, parse};
use super::error::S3Error;
use super::server::{Body, S3Request, S3Server, empty, xml_response};
use super::xml::Xml;
use crate::model::tables::*;

fn invalid(msg: impl Into<String>) -> S3Error {
    S3Error::new("InvalidArgument", StatusCode::BAD_REQUEST, msg)
}

fn no_lock_configuration() -> S3Error {
    S3Error::invalid_request("Bucket is missing Object Lock Configuration")
}

/// Parse a retain-until date (ISO 8601, as S3 writes them).
fn parse_date(s: &str) -> Result<u64, S3Error> {
    hangar_common::date::parse_iso8601(s.trim())
        .ok_or_else(|| invalid(format!("invalid retain-until date {s:?}")))
}

/// The lock a write's `x-amz-object-lock-*` headers ask for (retention
/// mode and date together, legal hold), refused on a bucket without
/// object lock.
pub(crate) fn lock_from_headers(
    r: &S3Request,
    bucket: &Bucket,
    me: NodeId,
) -> Result<VersionLock, S3Error> {
    let mode = r.header("x-amz-object-lock-mode");
    let until = r.header("x-amz-object-lock-retain-until-date");
    let hold = r.header("x-amz-object-lock-legal-hold");
    if mode.is_none() && until.is_none() && hold.is_none() {
        return Ok(VersionLock::default());
    }
    if !bucket.object_lock.0 {
        return Err(no_lock_configuration());
    }
    let mut lock = VersionLock::default();
    match (mode, until) {
        (None, None) => {}
        (Some(m), Some(u)) => {
            let mode =
                LockMode::parse(m).ok_or_else(|| invalid(format!("unknown lock mode {m:?}")))?;
            let until = parse_date(u)?;
            if until <= wall_ms() {
                return Err(invalid("The retain until date must be in the future!"));
            }
            set_retention(&mut lock, mode, Some(until), me);
        }
        _ => {
            return Err(invalid(
                "x-amz-object-lock-mode and x-amz-object-lock-retain-until-date must both be supplied",
            ));
        }
    }
    if let Some(h) = hold {
        let on = match h {
            "ON" => true,
            "OFF" => false,
            _ => return Err(invalid(format!("legal hold must be ON or OFF, not {h:?}"))),
        };
        lock.legal_hold = Some(Lww::new(timestamp_ms(), me, on));
    }
    Ok(lock)
}

/// `lock`, with the bucket's default retention when it names none.
pub(crate) fn with_default(mut lock: VersionLock, bucket: &Bucket, me: NodeId) -> VersionLock {
    if lock.retention().is_none()
        && bucket.object_lock.0
        && let Some(d) = bucket.lock_default.value
    {
        set_retention(&mut lock, d.mode, Some(d.until(wall_ms())), me);
    }
    lock
}

/// Set a retention (None: remove a GOVERNANCE one).
fn set_retention(lock: &mut VersionLock, mode: LockMode, until: Option<u64>, me: NodeId) {
    match (mode, until) {
        (LockMode::Compliance, Some(t)) => {
            lock.compliance_until = lock.compliance_until.max(Some(t));
        }
        (_, until) => match &mut lock.governance {
            Some(g) => g.update(timestamp_ms(), me, until),
            None => lock.governance = Some(Lww::new(timestamp_ms(), me, until)),
        },
    }
}

/// Add the `x-amz-object-lock-*` headers of a version to a GET or HEAD.
pub(crate) fn add_lock_headers(h: &mut HeaderMap, lock: &VersionLock) {
    let mut put = |k: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    if let Some((mode, until)) = lock.retention() {
        put("x-amz-object-lock-mode", mode.s3_name());
        put(
            "x-amz-object-lock-retain-until-date",
            &hangar_common::date::iso8601(until),
        );
    }
    if let Some(hold) = &lock.legal_hold {
        put(
            "x-amz-object-lock-legal-hold",
            if hold.value { "ON" } else { "OFF" },
        );
    }
}

/// Whether a request asks to bypass GOVERNANCE retention and may (the
/// owner permission).
pub(crate) fn bypass(r: &S3Request, bucket: &Bucket) -> bool {
    r.header("x-amz-bypass-governance-retention")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        && r.permission(bucket).owner
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LockConfigXml {
    #[serde(rename = "ObjectLockEnabled")]
    enabled: Option<String>,
    #[serde(rename = "Rule")]
    rule: Option<LockRuleXml>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LockRuleXml {
    #[serde(rename = "DefaultRetention")]
    default: Option<DefaultRetentionXml>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DefaultRetentionXml {
    #[serde(rename = "Mode")]
    mode: Option<String>,
    #[serde(rename = "Days")]
    days: Option<u32>,
    #[serde(rename = "Years")]
    years: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RetentionXml {
    #[serde(rename = "Mode")]
    mode: Option<String>,
    #[serde(rename = "RetainUntilDate")]
    until: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LegalHoldXml {
    #[serde(rename = "Status")]
    status: Option<String>,
}

/// Parse an ObjectLockConfiguration document: the default retention.
pub(crate) fn parse_lock_configuration(body: &[u8]) -> Result<Option<DefaultRetention>, S3Error> {
    let c: LockConfigXml = parse(body, "ObjectLockConfiguration")?;
    if c.enabled.as_deref() != Some("Enabled") {
        return Err(malformed("ObjectLockEnabled must be Enabled"));
    }
    let Some(d) = c.rule.and_then(|r| r.default) else {
        return Ok(None);
    };
    let mode = d
        .mode
        .as_deref()
        .and_then(LockMode::parse)
        .ok_or_else(|| malformed("DefaultRetention needs a Mode: GOVERNANCE or COMPLIANCE"))?;
    match (d.days, d.years) {
        (Some(n), None) | (None, Some(n)) if n > 0 => Ok(Some(DefaultRetention {
            mode,
            days: d.days,
            years: d.years,
        })),
        _ => Err(malformed(
            "DefaultRetention needs Days or Years (one of them, above 0)",
        )),
    }
}

impl S3Server {
    /// GetObjectLockConfiguration.
    pub(crate) async fn get_object_lock_configuration(
        &self,
        r: &S3Request,
    ) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(r).await?;
        self.check_read(r, &bucket)?;
        if !bucket.object_lock.0 {
            return Err(S3Error::new(
                "ObjectLockConfigurationNotFoundError",
                StatusCode::NOT_FOUND,
                "Object Lock configuration does not exist for this bucket",
            ));
        }
        let mut x = Xml::new("ObjectLockConfiguration");
        x.elem("ObjectLockEnabled", "Enabled");
        if let Some(d) = bucket.lock_default.value {
            x.open("Rule")
                .open("DefaultRetention")
                .elem("Mode", d.mode.s3_name());
            if let Some(n) = d.days {
                x.elem("Days", &n.to_string());
            }
            if let Some(n) = d.years {
                x.elem("Years", &n.to_string());
            }
            x.close("DefaultRetention").close("Rule");
        }
        Ok(xml_response(
            StatusCode::OK,
            x.finish("ObjectLockConfiguration"),
        ))
    }

    /// PutObjectLockConfiguration: object lock on (a bucket with
    /// versioning enabled) and its default retention. Owner permission.
    pub(crate) async fn put_object_lock_configuration(
        &self,
        r: S3Request,
    ) -> Result<Response<Body>, S3Error> {
        let bucket = self.bucket(&r).await?;
        if !r.permission(&bucket).owner {
            return Err(S3Error::access_denied(
                "only a key with the owner permission may change a bucket's object lock",
            ));
        }
        let body = self.small_body(r).await?;
        let default = parse_lock_configuration(&body)?;
        self.model.set_object_lock(&bucket.name, default).await?;
        Ok(Response::new(empty()))
    }

    /// The version a retention or legal hold request is about, with its
    /// bucket and object.
    async fn locked_version(
        &self,
        r: &S3Request,
        write: bool,
    ) -> Result<(Bucket, Object, ObjectVersion), S3Error> {
        let bucket = self.bucket(r).await?;
        let p = r.permission(&bucket);
        if !(if write { p.write } else { p.read }) {
            return Err(S3Error::access_denied(
                "this key may not do this on this bucket",
            ));
        }
        if !bucket.object_lock.0 {
            return Err(no_lock_configuration());
        }
        let wanted = super::versioning::wanted(&r.query)?;
        let key = r.key.clone().unwrap_or_default();
        let pk = object_pk(&bucket.id, bucket.shards, &key);
        let obj = self.model.objects.get(&pk, key.as_bytes()).await?;
        let v = super::versioning::pick(obj.as_ref(), wanted)?.clone();
        let obj = obj.ok_or_else(S3Error::no_such_key)?;
        Ok((bucket, obj, v))
    }

    /// Write a version's new lock (merged into what replicas hold).
    async fn save_lock(
        &self,
        obj: &Object,
        mut v: ObjectVersion,
        lock: VersionLock,
    ) -> Result<(), S3Error> {
        v.lock = lock;
        self.model
            .objects
            .insert(&Object::new(obj.pk.clone(), obj.key.clone(), v))
            .await?;
        Ok(())
    }

    /// GetObjectRetention.
    pub(crate) async fn get_object_retention(
        &self,
        r: &S3Request,
    ) -> Result<Response<Body>, S3Error> {
        let (_, _, v) = self.locked_version(r, false).await?;
        let Some((mode, until)) = v.lock.retention() else {
            return Err(S3Error::new(
                "NoSuchObjectLockConfiguration",
                StatusCode::NOT_FOUND,
                "The specified object does not have a ObjectLock configuration",
            ));
        };
        let mut x = Xml::new("Retention");
        x.elem("Mode", mode.s3_name())
            .elem("RetainUntilDate", &hangar_common::date::iso8601(until));
        Ok(xml_response(StatusCode::OK, x.finish("Retention")))
    }

    /// PutObjectRetention: set, extend, or (GOVERNANCE, with the bypass
    /// header and the owner permission) shorten or remove a version's
    /// retention. A COMPLIANCE date in force is only ever extended.
    pub(crate) async fn put_object_retention(
        &self,
        r: S3Request,
    ) -> Result<Response<Body>, S3Error> {
        let (bucket, obj, v) = self.locked_version(&r, true).await?;
        let bypass = bypass(&r, &bucket);
        let body = self.small_body(r).await?;
        let doc: RetentionXml = parse(&body, "Retention")?;
        let wanted = match (doc.mode.as_deref(), doc.until.as_deref()) {
            (None, None) => None,
            (Some(m), Some(u)) => Some((
                LockMode::parse(m).ok_or_else(|| malformed(format!("unknown mode {m:?}")))?,
                parse_date(u)?,
            )),
            _ => return Err(malformed("a Retention needs both Mode and RetainUntilDate")),
        };
        let now = wall_ms();
        if let Some((_, until)) = wanted
            && until <= now
        {
            return Err(invalid("The retain until date must be in the future!"));
        }
        if let Some(c) = v.lock.compliance_until.filter(|c| *c > now) {
            match wanted {
                Some((LockMode::Compliance, until)) if until >= c => {}
                _ => {
                    return Err(S3Error::access_denied(format!(
                        "the object version is locked in COMPLIANCE mode until {}: its retention can only be extended",
                        hangar_common::date::iso8601(c)
                    )));
                }
            }
        }
        if let Some((LockMode::Governance, g)) = v.lock.retention().filter(|(_, g)| *g > now) {
            let stricter = matches!(wanted, Some((LockMode::Governance, until)) if until >= g);
            if !stricter && !bypass {
                return Err(S3Error::access_denied(
                    "the object version is locked in GOVERNANCE mode: shortening, removing or changing its retention needs x-amz-bypass-governance-retention and the owner permission",
                ));
            }
        }
        let mut lock = v.lock.clone();
        let me = self.model.net.id;
        match wanted {
            Some((mode, until)) => set_retention(&mut lock, mode, Some(until), me),
            None => set_retention(&mut lock, LockMode::Governance, None, me),
        }
        self.save_lock(&obj, v, lock).await?;
        Ok(Response::new(empty()))
    }

    /// GetObjectLegalHold.
    pub(crate) async fn get_object_legal_hold(
        &self,
        r: &S3Request,
    ) -> Result<Response<Body>, S3Error> {
        let (_, _, v) = self.locked_version(r, false).await?;
        let Some(hold) = &v.lock.legal_hold else {
            return Err(S3Error::new(
                "NoSuchObjectLockConfiguration",
                StatusCode::NOT_FOUND,
                "The specified object does not have a ObjectLock configuration",
            ));
        };
        let mut x = Xml::new("LegalHold");
        x.elem("Status", if hold.value { "ON" } else { "OFF" });
        Ok(xml_response(StatusCode::OK, x.finish("LegalHold")))
    }

    /// PutObjectLegalHold: ON or OFF (write permission).
    pub(crate) async fn put_object_legal_hold(
        &self,
        r: S3Request,
    ) -> Result<Response<Body>, S3Error> {
        let (_, obj, v) = self.locked_version(&r, true).await?;
        let body = self.small_body(r).await?;
        let doc: LegalHoldXml = parse(&body, "LegalHold")?;
        let on = match doc.status.as_deref() {
            Some("ON") => true,
            Some("OFF") => false,
            _ => return Err(malformed("LegalHold Status must be ON or OFF")),
        };
        let mut lock = v.lock.clone();
        let me = self.model.net.id;
        match &mut lock.legal_hold {
            Some(h) => h.update(timestamp_ms(), me, on),
            None => lock.legal_hold = Some(Lww::new(timestamp_ms(), me, on)),
        }
        self.save_lock(&obj, v, lock).await?;
        Ok(Response::new(empty()))
    }
}
