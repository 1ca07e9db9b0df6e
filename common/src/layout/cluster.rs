//! The cluster layout every node holds: the applied version (roles and the
//! partition assignment) plus the changes operators have staged on top.
//!
//! Replication of this object is by gossip: any two nodes merge their
//! copies with [`ClusterLayout::merge`], a CRDT merge:
//!
//! * the applied part is a total order: the higher version wins; two
//!   different layouts applied concurrently with the same version (two
//!   operators pressing "apply" at once on two nodes) are ordered by their
//!   digest, so every node settles on the same one;
//! * staged changes are an LWW map tied to the version they were staged on:
//!   when the version moves on, staging made against an older version is
//!   dropped (it was applied, or it was made against a layout that no longer
//!   exists), and staging on the same version merges key by key. Reverting
//!   writes "unchanged" registers rather than deleting, so a revert is not
//!   undone by gossip from a node that has not heard of it yet.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Assignment, AssignmentReport, LayoutError, NodeRole, PARTITIONS, assign};
use crate::NodeId;
use crate::crdt::{Crdt, LwwMap};

/// A staged change to one node's role.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StagedRole {
    /// Nothing staged (a reverted change).
    Unchanged,
    /// Give the node this zone and capacity (or make it a gateway).
    Set(NodeRole),
    /// Take the node out of the layout.
    Remove,
}

/// Format version of [`ClusterLayout`] as persisted and gossiped.
pub const LAYOUT_FORMAT: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterLayout {
    pub format: u32,
    /// 0 until a first layout is applied.
    pub version: u64,
    pub replication_factor: usize,
    /// Roles of the nodes in the applied layout.
    pub roles: BTreeMap<NodeId, NodeRole>,
    /// Replica sets of the applied layout; empty at version 0.
    pub assignment: Assignment,
    /// Version the staged changes apply to (always `version`, once merged).
    pub staged_on: u64,
    pub staged: LwwMap<NodeId, StagedRole>,
}

/// Why a layout operation is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ApplyError {
    #[error(
        "layout version {given} is not the next one: the current version is {current}, so apply --version {next} \
         (someone may have applied a layout meanwhile: check `hangar layout show`)",
        next = current + 1
    )]
    StaleVersion { current: u64, given: u64 },
    #[error(
        "nothing is staged: stage changes with `hangar layout assign` or `layout remove` first"
    )]
    NothingStaged,
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

impl ClusterLayout {
    pub fn new(replication_factor: usize) -> Self {
        ClusterLayout {
            format: LAYOUT_FORMAT,
            version: 0,
            replication_factor,
            roles: BTreeMap::new(),
            assignment: Vec::new(),
            staged_on: 0,
            staged: LwwMap::default(),
        }
    }

    /// Staged changes that still mean something (not reverted).
    pub fn effective_staged(&self) -> BTreeMap<NodeId, StagedRole> {
        self.staged
            .iter()
            .filter(|(_, v)| **v != StagedRole::Unchanged)
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }

    pub fn stage(&mut self, node: NodeId, change: StagedRole, now: u64, writer: NodeId) {
        self.staged.set(node, now, writer, change);
    }

    /// Revert every staged change.
    pub fn revert(&mut self, now: u64, writer: NodeId) {
        let keys: Vec<NodeId> = self.effective_staged().into_keys().collect();
        for k in keys {
            self.staged.set(k, now, writer, StagedRole::Unchanged);
        }
    }

    /// Roles as they would be after applying the staged changes.
    pub fn staged_roles(&self) -> BTreeMap<NodeId, NodeRole> {
        let mut roles = self.roles.clone();
        for (node, change) in self.effective_staged() {
            match change {
                StagedRole::Set(role) => {
                    roles.insert(node, role);
                }
                StagedRole::Remove => {
                    roles.remove(&node);
                }
                StagedRole::Unchanged => {}
            }
        }
        roles
    }

    /// What applying the staged changes would give, against the current
    /// assignment.
    pub fn preview(&self) -> Result<AssignmentReport, LayoutError> {
        let previous = (!self.assignment.is_empty()).then_some(&self.assignment);
        assign::compute(&self.staged_roles(), self.replication_factor, previous)
    }

    /// Apply the staged changes as version `version`, which must be the
    /// next one.
    pub fn apply(&self, version: u64) -> Result<(ClusterLayout, AssignmentReport), ApplyError> {
        if version != self.version + 1 {
            return Err(ApplyError::StaleVersion {
                current: self.version,
                given: version,
            });
        }
        if self.effective_staged().is_empty() {
            return Err(ApplyError::NothingStaged);
        }
        let report = self.preview()?;
        let next = ClusterLayout {
            format: LAYOUT_FORMAT,
            version,
            replication_factor: self.replication_factor,
            roles: self.staged_roles(),
            assignment: report.assignment.clone(),
            staged_on: version,
            staged: LwwMap::default(),
        };
        Ok((next, report))
    }

    /// A digest of the whole layout, gossiped in pings: two nodes with the
    /// same digest need not exchange layouts.
    pub fn digest(&self) -> u64 {
        // FNV-1a over the canonical MessagePack encoding: stable across
        // processes and builds, unlike std's hasher.
        let bytes = rmp_serde::to_vec(self).unwrap_or_default();
        bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    fn applied_key(&self) -> (u64, u64) {
        let applied = (
            self.version,
            &self.roles,
            &self.assignment,
            self.replication_factor,
        );
        let bytes = rmp_serde::to_vec(&applied).unwrap_or_default();
        let d = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3)
        });
        (self.version, d)
    }

    /// Nodes the layout knows about (applied or staged).
    pub fn known_nodes(&self) -> BTreeSet<NodeId> {
        self.roles
            .keys()
            .chain(self.staged.entries.keys())
            .copied()
            .collect()
    }

    /// Replica set of partition `p`, empty before the first layout.
    pub fn nodes_of(&self, p: usize) -> &[NodeId] {
        self.assignment.get(p).map(|v| &v[..]).unwrap_or(&[])
    }

    /// Health of the ring given which nodes are up.
    pub fn health(&self, is_up: impl Fn(&NodeId) -> bool) -> RingHealth {
        let mut h = RingHealth::default();
        if self.assignment.is_empty() {
            return h;
        }
        let quorum = write_quorum(self.replication_factor);
        for p in 0..PARTITIONS {
            let nodes = self.nodes_of(p);
            let up = nodes.iter().filter(|n| is_up(n)).count();
            if up == nodes.len() {
                h.healthy += 1;
            } else if up >= quorum {
                h.degraded += 1;
            } else {
                h.unavailable += 1;
            }
        }
        h
    }
}

/// Acknowledgements a write needs: a majority of the replicas.
pub fn write_quorum(rf: usize) -> usize {
    rf / 2 + 1
}

/// Counts of partitions by redundancy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingHealth {
    /// Every replica up.
    pub healthy: usize,
    /// A quorum up, not every replica.
    pub degraded: usize,
    /// Fewer than a quorum up.
    pub unavailable: usize,
}

impl RingHealth {
    pub fn summary(&self) -> &'static str {
        if self.healthy + self.degraded + self.unavailable == 0 {
            "no layout applied yet"
        } else if self.unavailable > 0 {
            "unavailable: some partitions have lost their quorum"
        } else if self.degraded > 0 {
            "degraded: some partitions lack full redundancy"
        } else {
            "healthy: every partition has full redundancy"
        }
    }
}

impl Crdt for ClusterLayout {
    fn merge(&mut self, other: &Self) {
        // Staging: the one made on the newer version wins; same version merges.
        let staged = match self.staged_on.cmp(&other.staged_on) {
            std::cmp::Ordering::Less => (other.staged_on, other.staged.clone()),
            std::cmp::Ordering::Greater => (self.staged_on, self.staged.clone()),
            std::cmp::Ordering::Equal => {
                let mut s = self.staged.clone();
                s.merge(&other.staged);
                (self.staged_on, s)
            }
        };
        // Applied part: a total order on (version, digest).
        if other.applied_key() > self.applied_key() {
            *self = other.clone();
        }
        (self.staged_on, self.staged) = staged;
        // Staging made against a version older than the applied one is stale.
        if self.staged_on < self.version {
            self.staged = LwwMap::default();
            self.staged_on = self.version;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(b: u8) -> NodeId {
        NodeId([b; 32])
    }

    fn role(zone: &str, gb: u64) -> StagedRole {
        StagedRole::Set(NodeRole {
            zone: zone.into(),
            capacity: Some(gb << 30),
        })
    }

    fn three_nodes() -> ClusterLayout {
        let mut l = ClusterLayout::new(3);
        for (i, z) in ["dc1", "dc2", "dc3"].iter().enumerate() {
            l.stage(id(i as u8), role(z, 100), 1, id(0));
        }
        l
    }

    #[test]
    fn apply_needs_the_next_version_and_clears_staging() {
        let l = three_nodes();
        assert_eq!(
            l.apply(2).unwrap_err(),
            ApplyError::StaleVersion {
                current: 0,
                given: 2
            }
        );
        let (v1, report) = l.apply(1).unwrap();
        assert_eq!(v1.version, 1);
        assert!(v1.effective_staged().is_empty());
        assert_eq!(report.assignment.len(), PARTITIONS);
        assert_eq!(v1.apply(2).unwrap_err(), ApplyError::NothingStaged);
    }

    #[test]
    fn staging_on_two_nodes_merges_instead_of_clobbering() {
        let (base, _) = three_nodes().apply(1).unwrap();
        let mut a = base.clone();
        let mut b = base.clone();
        a.stage(id(9), role("dc1", 50), 10, id(0));
        b.stage(id(8), role("dc2", 50), 11, id(1));
        a.merge(&b);
        b.merge(&a);
        assert_eq!(a, b);
        assert_eq!(a.effective_staged().len(), 2);
    }

    #[test]
    fn a_revert_survives_gossip_from_a_node_that_missed_it() {
        let (base, _) = three_nodes().apply(1).unwrap();
        let mut a = base.clone();
        a.stage(id(9), role("dc1", 50), 10, id(0));
        let stale = a.clone();
        a.revert(11, id(0));
        a.merge(&stale);
        assert!(a.effective_staged().is_empty());
    }

    #[test]
    fn a_newer_applied_version_replaces_older_staging() {
        let l = three_nodes();
        let (v1, _) = l.apply(1).unwrap();
        let mut old = l.clone();
        old.merge(&v1);
        assert_eq!(old.version, 1);
        assert!(
            old.effective_staged().is_empty(),
            "staging applied in v1 must not come back"
        );
        let mut newer = v1.clone();
        newer.merge(&l);
        assert_eq!(newer, v1);
    }

    #[test]
    fn health_counts_partitions_by_live_replicas() {
        let (v1, _) = three_nodes().apply(1).unwrap();
        assert_eq!(v1.health(|_| true).healthy, PARTITIONS);
        let h = v1.health(|n| *n != id(0));
        assert_eq!((h.healthy, h.degraded, h.unavailable), (0, PARTITIONS, 0));
        let h = v1.health(|n| *n == id(2));
        assert_eq!(h.unavailable, PARTITIONS);
    }

    fn layout_strategy() -> impl Strategy<Value = ClusterLayout> {
        // Small set of states reachable by staging/applying on a common base.
        let base = three_nodes();
        (
            0u64..3,
            proptest::collection::vec((0u8..4, 0u64..4, 0u8..3, 0u8..3), 0..4),
        )
            .prop_map(move |(applied, stages)| {
                let mut l = base.clone();
                for v in 1..=applied {
                    if l.effective_staged().is_empty() {
                        l.stage(id(3), role("dc1", 10 * v), v, id(0));
                    }
                    l = l.apply(v).expect("valid layout").0;
                }
                for (n, ts, w, kind) in stages {
                    let change = match kind {
                        0 => StagedRole::Remove,
                        1 => StagedRole::Unchanged,
                        _ => role("dc2", 10),
                    };
                    l.stage(id(10 + n), change, ts, id(w));
                }
                l
            })
    }

    fn merged(a: &ClusterLayout, b: &ClusterLayout) -> ClusterLayout {
        let mut x = a.clone();
        x.merge(b);
        x
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn layout_merge_is_a_crdt(a in layout_strategy(), b in layout_strategy(), c in layout_strategy()) {
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
            prop_assert_eq!(merged(&a, &a), a);
        }
    }
}
