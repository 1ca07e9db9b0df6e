//! What the S3 endpoint measures: requests by operation and status with
//! their latency, bytes in and out (written out by the metrics endpoint:
//! `admin/http.rs`).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::net::metrics::{Latencies, latency_histogram};

/// One operation and the status it was answered with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Answered {
    op: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Op {
    op: &'static str,
}

/// What the S3 endpoint has served since start.
pub struct S3Metrics {
    requests: Family<Answered, Counter>,
    duration: Latencies<Op>,
    bytes_in: Counter,
    bytes_out: Counter,
}

impl Default for S3Metrics {
    fn default() -> Self {
        S3Metrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
        }
    }
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
        self.bytes_in.inc_by(bytes_in);
        self.bytes_out.inc_by(bytes_out);
        self.requests.get_or_create(&Answered { op, status }).inc();
        self.duration
            .get_or_create(&Op { op })
            .observe(took.as_secs_f64());
    }

    /// Add its families to `reg`.
    pub(crate) fn register(&self, reg: &mut Registry) {
        reg.register(
            "hangar_s3_requests",
            "S3 requests served, by operation and status",
            self.requests.clone(),
        );
        reg.register(
            "hangar_s3_request_duration_seconds",
            "Time to answer S3 requests (to the response head)",
            self.duration.clone(),
        );
        reg.register(
            "hangar_s3_bytes_in",
            "Request body bytes received by the S3 endpoint",
            self.bytes_in.clone(),
        );
        reg.register(
            "hangar_s3_bytes_out",
            "Response body bytes sent by the S3 endpoint",
            self.bytes_out.clone(),
        );
    }
}
