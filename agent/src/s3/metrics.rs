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
    pub(crate) fn record(
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
    pub(crate) fn write(&self, out: &mut String) {
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
