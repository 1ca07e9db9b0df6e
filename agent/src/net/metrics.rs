//! What this node measures of its calls to peers (counted where they are
//! made, written out by the metrics endpoint: `admin/http.rs`), and the
//! latency buckets every layer's histograms use. Families, encoding and
//! escaping are `prometheus-client`'s.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// A latency histogram with the buckets every layer uses.
pub(crate) fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// A family of latency histograms, one per label set.
pub(crate) type Latencies<L> = Family<L, Histogram, fn() -> Histogram>;

/// One peer and one method.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Call {
    peer: String,
    method: &'static str,
}

/// A failed call, by kind (`CallError::kind`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Failure {
    peer: String,
    method: &'static str,
    kind: &'static str,
}

/// RPC calls this node made to its peers, by peer and method.
pub struct RpcMetrics {
    requests: Family<Call, Counter>,
    errors: Family<Failure, Counter>,
    duration: Latencies<Call>,
}

impl Default for RpcMetrics {
    fn default() -> Self {
        RpcMetrics {
            requests: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl RpcMetrics {
    /// Count one call; `failed`: how it failed (`CallError::kind`), if it
    /// did not get an answer that was not an error.
    pub(crate) fn record(
        &self,
        peer: hangar_common::NodeId,
        method: &'static str,
        took: Duration,
        failed: Option<&'static str>,
    ) {
        let call = Call {
            peer: peer.short(),
            method,
        };
        self.requests.get_or_create(&call).inc();
        self.duration
            .get_or_create(&call)
            .observe(took.as_secs_f64());
        if let Some(kind) = failed {
            self.errors
                .get_or_create(&Failure {
                    peer: call.peer,
                    method,
                    kind,
                })
                .inc();
        }
    }

    /// Add its families to `reg` (they stay shared: the registry is made
    /// anew at each scrape).
    pub(crate) fn register(&self, reg: &mut Registry) {
        reg.register(
            "hangar_rpc_requests",
            "RPC calls made to a peer, by method",
            self.requests.clone(),
        );
        reg.register(
            "hangar_rpc_errors",
            "RPC calls to a peer that failed, by kind: unreachable (not connected; connect: attempts that failed), timeout, connection (broke during the call), refused (the peer answered an error), protocol (unusable answer)",
            self.errors.clone(),
        );
        reg.register(
            "hangar_rpc_duration_seconds",
            "Time RPC calls to a peer took",
            self.duration.clone(),
        );
    }
}
