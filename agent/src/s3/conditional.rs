//! Conditional requests (RFC 9110 section 13, as S3 applies them):
//! `If-Match`, `If-None-Match`, `If-Modified-Since`, `If-Unmodified-Since`
//! on GET and HEAD, the same on PUT, and their `x-amz-copy-source-if-*`
//! forms on the source of a copy.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, StatusCode};

use super::error::S3Error;

/// What the preconditions say about a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Proceed,
    /// GET/HEAD: answer 304 with no body.
    NotModified,
    /// Answer 412.
    Failed,
}

/// The preconditions of a request.
#[derive(Debug, Default)]
pub struct Preconditions {
    if_match: Option<String>,
    if_none_match: Option<String>,
    if_modified_since: Option<SystemTime>,
    if_unmodified_since: Option<SystemTime>,
}

impl Preconditions {
    /// Read them from `{prefix}if-match`... (`prefix` is empty, or
    /// `x-amz-copy-source-` for a copy's source). Unparseable dates are
    /// ignored, as HTTP requires.
    pub(crate) fn from_headers(h: &HeaderMap, prefix: &str) -> Preconditions {
        let get = |name: &str| {
            h.get(format!("{prefix}{name}"))
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let date = |name: &str| get(name).and_then(|v| httpdate::parse_http_date(&v).ok());
        Preconditions {
            if_match: get("if-match"),
            if_none_match: get("if-none-match"),
            if_modified_since: date("if-modified-since"),
            if_unmodified_since: date("if-unmodified-since"),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.if_match.is_none()
            && self.if_none_match.is_none()
            && self.if_modified_since.is_none()
            && self.if_unmodified_since.is_none()
    }

    /// Evaluate against the current object (`None`: there is none).
    /// `read` is true for GET and HEAD (304 possible), false for writes.
    pub(crate) fn evaluate(&self, current: Option<(&str, u64)>, read: bool) -> Outcome {
        // HTTP dates have whole seconds.
        let modified = current.map(|(_, ms)| UNIX_EPOCH + Duration::from_secs(ms / 1000));
        let etag = current.map(|(e, _)| e);
        if let Some(m) = &self.if_match {
            if !etag.is_some_and(|e| matches(m, e)) {
                return Outcome::Failed;
            }
        } else if let (Some(since), Some(modified)) = (self.if_unmodified_since, modified)
            && modified > since
        {
            return Outcome::Failed;
        }
        let not_modified = if read {
            Outcome::NotModified
        } else {
            Outcome::Failed
        };
        if let Some(m) = &self.if_none_match {
            if etag.is_some_and(|e| matches(m, e)) {
                return not_modified;
            }
        } else if let (Some(since), Some(modified)) = (self.if_modified_since, modified)
            && modified <= since
            && read
        {
            return Outcome::NotModified;
        }
        Outcome::Proceed
    }
}

/// Whether an `If-Match` / `If-None-Match` list names `etag` (or is `*`).
fn matches(list: &str, etag: &str) -> bool {
    list.split(',').any(|t| {
        let t = t.trim();
        let t = t.strip_prefix("W/").unwrap_or(t);
        t == "*" || t.trim_matches('"') == etag
    })
}

impl Preconditions {
    /// The refusal of a write whose conditions do not hold: `If-Match`
    /// naming an object that is not there (or is a delete marker) is
    /// S3's 404 `NoSuchKey`, anything else 412.
    pub(crate) fn refusal(&self, exists: bool) -> S3Error {
        if self.if_match.is_some() && !exists {
            S3Error::no_such_key()
        } else {
            precondition_failed()
        }
    }
}

pub(crate) fn precondition_failed() -> S3Error {
    S3Error::new(
        "PreconditionFailed",
        StatusCode::PRECONDITION_FAILED,
        "At least one of the pre-conditions you specified did not hold",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pre(pairs: &[(&'static str, &str)]) -> Preconditions {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        Preconditions::from_headers(&h, "")
    }

    const T: u64 = 1_700_000_000_500; // ms
    const BEFORE: &str = "Tue, 14 Nov 2023 22:00:00 GMT"; // < T
    const AT: &str = "Tue, 14 Nov 2023 22:13:20 GMT"; // T's second
    const AFTER: &str = "Wed, 15 Nov 2023 00:00:00 GMT";

    #[test]
    fn etag_conditions() {
        let cur = Some(("abc", T));
        assert_eq!(
            pre(&[("if-match", "\"abc\"")]).evaluate(cur, true),
            Outcome::Proceed
        );
        assert_eq!(
            pre(&[("if-match", "\"x\", \"abc\"")]).evaluate(cur, true),
            Outcome::Proceed
        );
        assert_eq!(
            pre(&[("if-match", "\"x\"")]).evaluate(cur, true),
            Outcome::Failed
        );
        assert_eq!(
            pre(&[("if-match", "*")]).evaluate(None, false),
            Outcome::Failed
        );
        assert_eq!(
            pre(&[("if-none-match", "\"abc\"")]).evaluate(cur, true),
            Outcome::NotModified
        );
        assert_eq!(
            pre(&[("if-none-match", "\"abc\"")]).evaluate(cur, false),
            Outcome::Failed
        );
        assert_eq!(
            pre(&[("if-none-match", "*")]).evaluate(None, false),
            Outcome::Proceed
        );
        assert_eq!(
            pre(&[("if-none-match", "\"x\"")]).evaluate(cur, true),
            Outcome::Proceed
        );
    }

    #[test]
    fn date_conditions_and_their_precedence() {
        let cur = Some(("abc", T));
        assert_eq!(
            pre(&[("if-modified-since", BEFORE)]).evaluate(cur, true),
            Outcome::Proceed
        );
        assert_eq!(
            pre(&[("if-modified-since", AT)]).evaluate(cur, true),
            Outcome::NotModified
        );
        assert_eq!(
            pre(&[("if-modified-since", AFTER)]).evaluate(cur, true),
            Outcome::NotModified
        );
        assert_eq!(
            pre(&[("if-unmodified-since", BEFORE)]).evaluate(cur, true),
            Outcome::Failed
        );
        assert_eq!(
            pre(&[("if-unmodified-since", AT)]).evaluate(cur, true),
            Outcome::Proceed
        );
        // An ETag condition overrides the date one of its pair.
        assert_eq!(
            pre(&[("if-match", "\"abc\""), ("if-unmodified-since", BEFORE)]).evaluate(cur, true),
            Outcome::Proceed
        );
        assert_eq!(
            pre(&[("if-none-match", "\"x\""), ("if-modified-since", AFTER)]).evaluate(cur, true),
            Outcome::Proceed
        );
        assert_eq!(
            pre(&[("if-modified-since", "garbage")]).evaluate(cur, true),
            Outcome::Proceed
        );
    }
}
