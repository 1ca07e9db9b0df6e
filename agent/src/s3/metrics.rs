//! What the S3 endpoint measures: requests by operation and status with
//! their latency, bytes in and out (written out by the metrics endpoint:
//! `admin/http.rs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use crate::net::metrics::Histogram;

#[derive(Default)]
struct OpStats {
    /// Requests by status code.
    by_status: BTreeMap<u16, u64>,
    latency: Histogram,
}

/// What the S3 endpoint has served since start.
#[derive(Default)]
pub struct S3Metrics {
    ops: Mutex<BTreeMap<&'static str, OpStats>>,
    bytes_in: std::sync::atomic::AtomicU64,
    bytes_out: std::sync::atomic::AtomicU64,
}

impl S3Metrics {
    /// Count one request.
    pub fn record(
        &self,
        op: &'static str,
        status: u16,
        took: Duration,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        self.bytes_in.fetch_add(bytes_in, Relaxed);
        self.bytes_out.fetch_add(bytes_out, Relaxed);
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        let s = ops.entry(op).or_default();
        *s.by_status.entry(status).or_default() += 1;
        s.latency.observe(took);
    }

    /// Its families, in the Prometheus text format.
    pub fn write(&self, out: &mut String) {
        use std::sync::atomic::Ordering::Relaxed;
        let ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        out.push_str("# HELP hangar_s3_requests_total S3 requests served, by operation and status.\n# TYPE hangar_s3_requests_total counter\n");
        for (op, s) in ops.iter() {
            for (status, n) in &s.by_status {
                let _ = writeln!(
                    out,
                    "hangar_s3_requests_total{{op=\"{op}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP hangar_s3_request_duration_seconds Time to answer S3 requests (to the response head).\n# TYPE hangar_s3_request_duration_seconds histogram\n");
        for (op, s) in ops.iter() {
            s.latency.write(
                out,
                "hangar_s3_request_duration_seconds",
                &format!("op=\"{op}\""),
            );
        }
        let _ = writeln!(
            out,
            "# HELP hangar_s3_bytes_in_total Request body bytes received by the S3 endpoint.\n# TYPE hangar_s3_bytes_in_total counter\nhangar_s3_bytes_in_total {}\n# HELP hangar_s3_bytes_out_total Response body bytes sent by the S3 endpoint.\n# TYPE hangar_s3_bytes_out_total counter\nhangar_s3_bytes_out_total {}",
            self.bytes_in.load(Relaxed),
            self.bytes_out.load(Relaxed)
        );
    }
}

/// The S3 operation a request is, for metrics (from its shape, before it
/// is served).
pub fn s3_op(
    method: &http::Method,
    has_bucket: bool,
    has_key: bool,
    query: Option<&str>,
) -> &'static str {
    let q = query.unwrap_or("");
    let has = |flag: &str| q.split('&').any(|p| p.split('=').next() == Some(flag));
    use http::Method as M;
    match (method, has_bucket, has_key) {
        (&M::GET, false, _) => "ListBuckets",
        (&M::OPTIONS, _, _) => "Preflight",
        (m, true, false) => match *m {
            M::PUT if q.is_empty() => "CreateBucket",
            M::DELETE if q.is_empty() => "DeleteBucket",
            M::HEAD => "HeadBucket",
            M::POST if has("delete") => "DeleteObjects",
            M::GET if has("uploads") => "ListMultipartUploads",
            M::GET if has("list-type") => "ListObjectsV2",
            M::GET if q.is_empty() || has("prefix") || has("marker") => "ListObjects",
            _ => "BucketOther",
        },
        (m, true, true) => match *m {
            M::PUT if has("partNumber") => "UploadPart",
            M::POST if has("uploads") => "CreateMultipartUpload",
            M::POST if has("uploadId") => "CompleteMultipartUpload",
            M::PUT => "PutObject",
            M::GET if has("uploadId") => "ListParts",
            M::GET => "GetObject",
            M::HEAD => "HeadObject",
            M::DELETE if has("uploadId") => "AbortMultipartUpload",
            M::DELETE => "DeleteObject",
            _ => "ObjectOther",
        },
        _ => "Other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn requests_are_named_by_their_s3_operation() {
        let op = |m: Method, b: bool, k: bool, q: &str| s3_op(&m, b, k, Some(q));
        assert_eq!(op(Method::GET, false, false, ""), "ListBuckets");
        assert_eq!(op(Method::PUT, true, true, ""), "PutObject");
        assert_eq!(
            op(Method::PUT, true, true, "partNumber=2&uploadId=ab"),
            "UploadPart"
        );
        assert_eq!(
            op(Method::POST, true, true, "uploads"),
            "CreateMultipartUpload"
        );
        assert_eq!(
            op(Method::POST, true, true, "uploadId=ab"),
            "CompleteMultipartUpload"
        );
        assert_eq!(
            op(Method::DELETE, true, true, "uploadId=ab"),
            "AbortMultipartUpload"
        );
        assert_eq!(
            op(Method::GET, true, false, "list-type=2&prefix=a"),
            "ListObjectsV2"
        );
        assert_eq!(op(Method::GET, true, false, "prefix=a"), "ListObjects");
        // A value that merely starts like a flag is not that flag.
        assert_eq!(op(Method::GET, true, true, "uploadIdx=1"), "GetObject");
        assert_eq!(op(Method::POST, true, false, "delete"), "DeleteObjects");
    }
}
