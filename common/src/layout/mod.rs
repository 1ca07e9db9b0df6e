//! The ring: how the 256 partitions of the key space are assigned to nodes.
//!
//! [`assign`] holds the pure, deterministic assignment algorithm; this file
//! the types every other part uses. Nothing here does I/O or knows about
//! versions being applied or gossiped: that is the agent's `layout` module.

pub mod assign;
pub mod cluster;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// Number of partitions of the key space (first byte of the key's hash).
pub const PARTITIONS: usize = 256;

/// Largest replication factor Hangar accepts.
pub const MAX_REPLICATION_FACTOR: usize = 7;

/// What a node is for in the layout: where it lives and how much it stores.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeRole {
    /// The site or house the node is in; replicas are spread over zones.
    pub zone: String,
    /// Bytes the node offers for data; `None` makes it a gateway that
    /// serves requests but stores no partition.
    pub capacity: Option<u64>,
}

impl NodeRole {
    pub fn is_gateway(&self) -> bool {
        self.capacity.is_none()
    }
}

/// The replica sets of all partitions: `partitions[p]` holds the
/// `replication_factor` distinct nodes of partition `p`, sorted by node id.
pub type Assignment = Vec<Vec<NodeId>>;

/// The outcome of computing an assignment, with everything an operator needs
/// to judge it before applying.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssignmentReport {
    pub assignment: Assignment,
    /// Bytes of data the cluster can hold with this assignment: the node that
    /// fills first (capacity / share of partitions) bounds it.
    pub usable_capacity: u64,
    /// Per storage node: how many partition replicas it holds.
    pub partitions_per_node: BTreeMap<NodeId, usize>,
    /// The smallest number of distinct zones any partition spans.
    pub min_zone_spread: usize,
    /// Partition replicas that land on a node that did not hold them in the
    /// previous assignment (0 without a previous one... counted against an
    /// empty ring, i.e. all of them, when there is none).
    pub moves: usize,
    /// Per node: replicas it receives and replicas it gives up.
    pub moves_per_node: BTreeMap<NodeId, NodeMoves>,
    /// Plain-language explanations of outcomes an operator may find
    /// surprising (a node receiving nothing, a zone capped, ...).
    pub notes: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMoves {
    pub incoming: usize,
    pub outgoing: usize,
}

/// Why no assignment can be computed; each message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum LayoutError {
    #[error(
        "replication factor {rf} needs at least {rf} storage nodes, the layout has {storage}: \
         assign a zone and a capacity to {missing} more node(s), or lower replication_factor"
    )]
    NotEnoughNodes {
        rf: usize,
        storage: usize,
        missing: usize,
    },
    #[error("node {node} has zero capacity: give it a capacity, or make it a gateway (--gateway)")]
    ZeroCapacity { node: String },
    #[error("replication factor must be between 1 and {max}, got {rf}")]
    BadReplicationFactor { rf: usize, max: usize },
}
