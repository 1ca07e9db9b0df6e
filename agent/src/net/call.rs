//! Calls to peers, made one way by every layer: a time limit, the call
//! counted in the RPC metrics by method and by how it failed, and a typed
//! error, so quorum and hedging code can tell a peer that is away from one
//! that answered "no".

use std::future::Future;
use std::time::{Duration, Instant};

use hangar_common::NodeId;
use hangar_common::rpc::{self, PeerClient, RpcError};

use super::Net;

/// Why a call to a peer gave no answer, or gave a refusal.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CallError {
    /// No connection to the peer: it is down, was never reached, or no
    /// address of it is known. Nothing was sent.
    #[error("node {} is not connected{}", .node.short(), reason_suffix(.reason))]
    Unreachable { node: NodeId, reason: String },
    /// The peer did not answer within the time allowed; the request may or
    /// may not have been carried out.
    #[error("node {} did not answer within {:?}", .node.short(), .after)]
    Timeout { node: NodeId, after: Duration },
    /// The connection broke during the call; the request may or may not
    /// have been carried out.
    #[error("node {}: connection lost: {reason}", .node.short())]
    Connection { node: NodeId, reason: String },
    /// The replica (a peer, or this node's own) answered with an error.
    #[error("node {}: {error}", .node.short())]
    Refused { node: NodeId, error: RpcError },
    /// The peer's answer cannot be used: it speaks too old a protocol for
    /// this call, or sent bytes that do not match what was asked for.
    #[error("node {}: {reason}", .node.short())]
    Protocol { node: NodeId, reason: String },
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason})")
    }
}

impl CallError {
    /// The label of this kind of failure in `hangar_rpc_errors_total`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            CallError::Unreachable { .. } => "unreachable",
            CallError::Timeout { .. } => "timeout",
            CallError::Connection { .. } => "connection",
            CallError::Refused { .. } => "refused",
            CallError::Protocol { .. } => "protocol",
        }
    }

    /// The node the call was made to.
    pub(crate) fn node(&self) -> NodeId {
        match self {
            CallError::Unreachable { node, .. }
            | CallError::Timeout { node, .. }
            | CallError::Connection { node, .. }
            | CallError::Refused { node, .. }
            | CallError::Protocol { node, .. } => *node,
        }
    }
}

/// A list of call failures, shown joined by `; ` in error messages.
#[derive(Clone, Debug, Default)]
pub struct CallErrors(pub Vec<CallError>);

impl std::fmt::Display for CallErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Why replica sets cannot make their quorum among the connected nodes:
/// the first set that falls short, and every node not connected.
#[derive(Debug)]
pub struct Shortfall {
    /// Connected replicas of the first set that falls short.
    pub connected: usize,
    /// What that set needs.
    pub needed: usize,
    /// Short ids of the nodes not connected, joined by `, `.
    pub away: String,
}

/// `None` if every set of `sets` has `needed` (capped at its size) nodes
/// that `connected` says a call would reach; else why not. Replicated
/// writes check this before sending anything, so that a write refused
/// because replicas are known to be away leaves nothing behind.
pub fn shortfall(
    sets: &[Vec<NodeId>],
    needed: usize,
    connected: impl Fn(&NodeId) -> bool,
) -> Option<Shortfall> {
    let mut away: Vec<NodeId> = sets
        .iter()
        .flatten()
        .filter(|n| !connected(n))
        .copied()
        .collect();
    if away.is_empty() {
        return None;
    }
    away.sort();
    away.dedup();
    let (connected, needed) = sets
        .iter()
        .map(|set| {
            let up = set.iter().filter(|n| !away.contains(n)).count();
            (up, needed.min(set.len()))
        })
        .find(|(up, need)| up < need)?;
    Some(Shortfall {
        connected,
        needed,
        away: away
            .iter()
            .map(NodeId::short)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Which of a peer's connections a call uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// The one kept open and pinged: metadata and control.
    Peer,
    /// The bulk connection, opened on demand: block transfers, so that big
    /// ones never hold up pings and metadata.
    Bulk,
}

/// What a tarpc call returns when the method itself answers a `Result`.
pub type Answer<T> = Result<Result<T, RpcError>, tarpc::client::RpcError>;

/// For methods that cannot fail on the callee's side (`ping`,
/// `pull_layout`, `push_layout`): their answer in the shape
/// [`Net::call_on`] takes.
pub(crate) fn infallible<T>(r: Result<T, tarpc::client::RpcError>) -> Answer<T> {
    r.map(Ok)
}

impl Net {
    /// Call `peer` on `channel`: `f` gets the client and a context whose
    /// deadline is `timeout`. A broken bulk connection is forgotten, so the
    /// next call reconnects.
    pub(crate) async fn call<T, Fut>(
        &self,
        peer: NodeId,
        channel: Channel,
        method: &'static str,
        timeout: Duration,
        f: impl FnOnce(PeerClient, tarpc::context::Context) -> Fut,
    ) -> Result<T, CallError>
    where
        Fut: Future<Output = Answer<T>>,
    {
        let client = match channel {
            Channel::Peer => self.client(&peer).ok_or(CallError::Unreachable {
                node: peer,
                reason: String::new(),
            })?,
            Channel::Bulk => self.bulk_client(&peer).await?,
        };
        let r = self.call_on(client, peer, method, timeout, f).await;
        if channel == Channel::Bulk && matches!(r, Err(CallError::Connection { .. })) {
            self.drop_bulk(&peer);
        }
        r
    }

    /// Call `peer` through a client already in hand (the ping loop's, the
    /// gossip's).
    pub(crate) async fn call_on<T, Fut>(
        &self,
        client: PeerClient,
        peer: NodeId,
        method: &'static str,
        timeout: Duration,
        f: impl FnOnce(PeerClient, tarpc::context::Context) -> Fut,
    ) -> Result<T, CallError>
    where
        Fut: Future<Output = Answer<T>>,
    {
        let start = Instant::now();
        let res =
            tokio::time::timeout(timeout, f(client, rpc::context_with_timeout(timeout))).await;
        let r = match res {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(error))) => Err(CallError::Refused { node: peer, error }),
            Ok(Err(tarpc::client::RpcError::DeadlineExceeded)) | Err(_) => {
                Err(CallError::Timeout {
                    node: peer,
                    after: timeout,
                })
            }
            Ok(Err(e)) => Err(CallError::Connection {
                node: peer,
                reason: e.to_string(),
            }),
        };
        self.rpc_metrics.record(
            peer,
            method,
            start.elapsed(),
            r.as_ref().err().map(CallError::kind),
        );
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shortfall_is_found_in_the_first_set_that_cannot_make_its_quorum() {
        let n = |i: u8| NodeId([i; 32]);
        let sets = vec![vec![n(1), n(2), n(3)], vec![n(2), n(3), n(4)]];
        assert!(shortfall(&sets, 2, |_| true).is_none());
        // One away: every set still has two.
        assert!(shortfall(&sets, 2, |x| *x != n(3)).is_none());
        // Two away: the second set has only node 4.
        let s = shortfall(&sets, 2, |x| *x == n(1) || *x == n(4)).expect("short");
        assert_eq!((s.connected, s.needed), (1, 2));
        assert_eq!(s.away, format!("{}, {}", n(2).short(), n(3).short()));
        // A set smaller than the quorum needs all of its nodes only.
        assert!(shortfall(&[vec![n(1)]], 2, |x| *x == n(1)).is_none());
        assert!(shortfall(&[vec![n(1)]], 2, |_| false).is_some());
    }

    #[test]
    fn kinds_and_messages_name_the_node() {
        let node = NodeId([7; 32]);
        let cases = [
            (
                CallError::Unreachable {
                    node,
                    reason: String::new(),
                },
                "unreachable",
            ),
            (
                CallError::Timeout {
                    node,
                    after: Duration::from_secs(2),
                },
                "timeout",
            ),
            (
                CallError::Connection {
                    node,
                    reason: "reset".into(),
                },
                "connection",
            ),
            (
                CallError::Refused {
                    node,
                    error: RpcError::Table("bad".into()),
                },
                "refused",
            ),
            (
                CallError::Protocol {
                    node,
                    reason: "old".into(),
                },
                "protocol",
            ),
        ];
        for (e, kind) in cases {
            assert_eq!(e.kind(), kind);
            assert_eq!(e.node(), node);
            assert!(e.to_string().contains(&node.short()), "{e}");
        }
        let all = CallErrors(vec![
            CallError::Unreachable {
                node,
                reason: "no address".into(),
            },
            CallError::Timeout {
                node,
                after: Duration::from_secs(1),
            },
        ]);
        let shown = all.to_string();
        assert!(shown.contains("(no address); node"), "{shown}");
    }
}
