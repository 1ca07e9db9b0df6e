//! What this node measures of its calls to peers (counted where they are
//! made, written out by the metrics endpoint: `admin/http.rs`), and the
//! latency histogram every layer's metrics use.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the request latency histogram buckets.
const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// A latency histogram: cumulative counts per bucket, count, sum.
#[derive(Default)]
pub struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    pub(crate) fn observe(&mut self, took: Duration) {
        let secs = took.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.buckets[i] += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    /// The `_bucket`, `_sum` and `_count` samples of `name{labels}`.
    pub(crate) fn write(&self, out: &mut String, name: &str, labels: &str) {
        for (i, le) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{le}\"}} {}",
                self.buckets[i]
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"+Inf\"}} {}\n{name}_sum{{{labels}}} {}\n{name}_count{{{labels}}} {}",
            self.count, self.sum, self.count
        );
    }
}

/// Calls this node made to one peer with one method.
#[derive(Default)]
struct CallStats {
    /// Failed calls by kind (`CallError::kind`).
    errors: BTreeMap<&'static str, u64>,
    latency: Histogram,
}

/// RPC calls this node made to its peers, by peer and method.
#[derive(Default)]
pub struct RpcMetrics {
    calls: Mutex<BTreeMap<(hangar_common::NodeId, &'static str), CallStats>>,
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
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let c = calls.entry((peer, method)).or_default();
        c.latency.observe(took);
        if let Some(kind) = failed {
            *c.errors.entry(kind).or_default() += 1;
        }
    }

    /// Its families, in the Prometheus text format.
    pub(crate) fn write(&self, out: &mut String) {
        let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        out.push_str("# HELP hangar_rpc_requests_total RPC calls made to a peer, by method.\n# TYPE hangar_rpc_requests_total counter\n");
        for ((peer, method), c) in calls.iter() {
            let _ = writeln!(
                out,
                "hangar_rpc_requests_total{{peer=\"{}\",method=\"{method}\"}} {}",
                peer.short(),
                c.latency.count
            );
        }
        out.push_str("# HELP hangar_rpc_errors_total RPC calls to a peer that failed, by kind: unreachable (not connected; connect: attempts that failed), timeout, connection (broke during the call), refused (the peer answered an error), protocol (unusable answer).\n# TYPE hangar_rpc_errors_total counter\n");
        for ((peer, method), c) in calls.iter() {
            for (kind, n) in &c.errors {
                let _ = writeln!(
                    out,
                    "hangar_rpc_errors_total{{peer=\"{}\",method=\"{method}\",kind=\"{kind}\"}} {n}",
                    peer.short(),
                );
            }
        }
        out.push_str("# HELP hangar_rpc_duration_seconds Time RPC calls to a peer took.\n# TYPE hangar_rpc_duration_seconds histogram\n");
        for ((peer, method), c) in calls.iter() {
            c.latency.write(
                out,
                "hangar_rpc_duration_seconds",
                &format!("peer=\"{}\",method=\"{method}\"", peer.short()),
            );
        }
    }
}
