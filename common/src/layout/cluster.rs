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
    /// Older versions still live while data moves to the current one,
    /// oldest first. Writes go to a quorum of every live version; reads to
    /// the oldest, whose replica sets are known to be complete.
    #[serde(default)]
    pub history: Vec<HistoricVersion>,
    /// Versions below this are finished with everywhere (grows only).
    #[serde(default)]
    pub min_live: u64,
    /// Per node: the newest version it writes with and for which its older
    /// writes have all completed (grows only).
    #[serde(default)]
    pub ack: BTreeMap<NodeId, u64>,
    /// Per node: the newest version for which it has pushed all its data to
    /// every node that holds it in that version (grows only).
    #[serde(default)]
    pub sync: BTreeMap<NodeId, u64>,
}

/// An older layout version, kept while a transition is in progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoricVersion {
    pub version: u64,
    pub roles: BTreeMap<NodeId, NodeRole>,
    pub assignment: Assignment,
}

impl HistoricVersion {
    fn digest(&self) -> u64 {
        fnv(&rmp_serde::to_vec(self).unwrap_or_default())
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn max_merge(a: &mut BTreeMap<NodeId, u64>, b: &BTreeMap<NodeId, u64>) {
    for (k, v) in b {
        let e = a.entry(*k).or_insert(0);
        *e = (*e).max(*v);
    }
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
            history: Vec::new(),
            min_live: 0,
            ack: BTreeMap::new(),
            sync: BTreeMap::new(),
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
        let mut history = self.history.clone();
        if self.version > 0 {
            history.push(HistoricVersion {
                version: self.version,
                roles: self.roles.clone(),
                assignment: self.assignment.clone(),
            });
        }
        let next = ClusterLayout {
            format: LAYOUT_FORMAT,
            version,
            replication_factor: self.replication_factor,
            roles: self.staged_roles(),
            assignment: report.assignment.clone(),
            staged_on: version,
            staged: LwwMap::default(),
            history,
            min_live: if self.version == 0 {
                version
            } else {
                self.min_live
            },
            ack: self.ack.clone(),
            sync: self.sync.clone(),
        };
        Ok((next, report))
    }

    /// A digest of the whole layout, gossiped in pings: two nodes with the
    /// same digest need not exchange layouts.
    pub fn digest(&self) -> u64 {
        // FNV-1a over the canonical MessagePack encoding: stable across
        // processes and builds, unlike std's hasher.
        fnv(&rmp_serde::to_vec(self).unwrap_or_default())
    }

    fn applied_key(&self) -> (u64, u64) {
        let applied = (
            self.version,
            &self.roles,
            &self.assignment,
            self.replication_factor,
        );
        (
            self.version,
            fnv(&rmp_serde::to_vec(&applied).unwrap_or_default()),
        )
    }

    /// Nodes the layout knows about (applied or staged).
    pub fn known_nodes(&self) -> BTreeSet<NodeId> {
        self.roles
            .keys()
            .chain(self.staged.entries.keys())
            .copied()
            .collect()
    }

    /// Replica set of partition `p` in the current version, empty before
    /// the first layout.
    pub fn nodes_of(&self, p: usize) -> &[NodeId] {
        self.assignment.get(p).map(|v| &v[..]).unwrap_or(&[])
    }

    /// Versions still live, oldest first (the current one last).
    pub fn live_versions(&self) -> Vec<u64> {
        self.history
            .iter()
            .map(|h| h.version)
            .chain(std::iter::once(self.version))
            .collect()
    }

    /// Whether data is still moving from older versions to the current one.
    pub fn in_transition(&self) -> bool {
        !self.history.is_empty()
    }

    /// Replica sets of partition `p` in every live version, oldest first:
    /// a write must reach a quorum of each.
    pub fn write_sets(&self, p: usize) -> Vec<&[NodeId]> {
        let mut sets: Vec<&[NodeId]> = self
            .history
            .iter()
            .map(|h| h.assignment.get(p).map(|v| &v[..]).unwrap_or(&[]))
            .collect();
        sets.push(self.nodes_of(p));
        sets
    }

    /// Replica set reads use: the oldest live version's, complete by
    /// construction (every write since it was current reached a quorum of
    /// it).
    pub fn read_set(&self, p: usize) -> &[NodeId] {
        match self.history.first() {
            Some(h) => h.assignment.get(p).map(|v| &v[..]).unwrap_or(&[]),
            None => self.nodes_of(p),
        }
    }

    /// Every node holding partition `p` in some live version.
    pub fn all_nodes_of(&self, p: usize) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self.write_sets(p).into_iter().flatten().copied().collect();
        v.sort();
        v.dedup();
        v
    }

    /// Every node of every live version (storage or gateway).
    pub fn all_live_nodes(&self) -> BTreeSet<NodeId> {
        self.history
            .iter()
            .flat_map(|h| h.roles.keys())
            .chain(self.roles.keys())
            .copied()
            .collect()
    }

    /// Record that `node` writes with version `v` (and no older write of
    /// its is in flight).
    pub fn set_ack(&mut self, node: NodeId, v: u64) {
        let e = self.ack.entry(node).or_insert(0);
        *e = (*e).max(v);
    }

    /// Record that `node` has pushed its data for version `v`.
    pub fn set_sync(&mut self, node: NodeId, v: u64) {
        let e = self.sync.entry(node).or_insert(0);
        *e = (*e).max(v);
    }

    /// End the transition if it can be: for every partition and every older
    /// live version, a read quorum of that version's replicas have pushed
    /// their data to the current replicas. Every acknowledged write reached
    /// a write quorum of each live version, and a read quorum overlaps every
    /// write quorum, so the current replicas then hold every acknowledged
    /// write. Returns whether older versions were dropped.
    pub fn prune(&mut self) -> bool {
        if self.history.is_empty() {
            return false;
        }
        let r = read_quorum(self.replication_factor);
        let synced = |n: &NodeId| self.sync.get(n).is_some_and(|v| *v >= self.version);
        for h in &self.history {
            for set in &h.assignment {
                let done = set.iter().filter(|n| synced(n)).count();
                if done < r.min(set.len()) {
                    return false;
                }
            }
        }
        self.min_live = self.version;
        self.history.clear();
        true
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

/// What losing some nodes would do to the ring (the console's what-if).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhatIf {
    /// Partitions with at least one replica on a lost node.
    pub lose_redundancy: usize,
    /// Partitions left with fewer replicas than a write quorum: writes to
    /// them fail.
    pub lose_write_quorum: usize,
    /// Partitions left with fewer replicas than a read quorum: reads fail.
    pub lose_read_quorum: usize,
    /// Partitions whose every replica is lost: their data is unreachable.
    pub lose_all: usize,
}

impl WhatIf {
    /// Whether every partition would still take reads and writes.
    pub fn keeps_serving(&self) -> bool {
        self.lose_write_quorum == 0 && self.lose_read_quorum == 0
    }
}

impl ClusterLayout {
    /// Bytes the applied layout can hold: the storage node that fills
    /// first (capacity / its share of the partitions) bounds it.
    pub fn usable_capacity(&self) -> u64 {
        let mut held: BTreeMap<NodeId, u64> = BTreeMap::new();
        for p in 0..self.assignment.len().min(PARTITIONS) {
            for n in self.nodes_of(p) {
                *held.entry(*n).or_default() += 1;
            }
        }
        held.iter()
            .filter_map(|(n, parts)| {
                let cap = self.roles.get(n)?.capacity?;
                Some((cap as u128 * PARTITIONS as u128 / (*parts).max(1) as u128) as u64)
            })
            .min()
            .unwrap_or(0)
    }

    /// What the ring would look like with `lost` nodes down (in addition to
    /// nothing else): counted on the current version's replica sets.
    pub fn what_if(&self, lost: &BTreeSet<NodeId>) -> WhatIf {
        let mut w = WhatIf::default();
        let (wq, rq) = (
            write_quorum(self.replication_factor),
            read_quorum(self.replication_factor),
        );
        for p in 0..self.assignment.len().min(PARTITIONS) {
            let nodes = self.nodes_of(p);
            let left = nodes.iter().filter(|n| !lost.contains(n)).count();
            if left < nodes.len() {
                w.lose_redundancy += 1;
            }
            if left < wq {
                w.lose_write_quorum += 1;
            }
            if left < rq {
                w.lose_read_quorum += 1;
            }
            if left == 0 && !nodes.is_empty() {
                w.lose_all += 1;
            }
        }
        w
    }
}

/// Acknowledgements a write needs: a majority of the replicas.
pub fn write_quorum(rf: usize) -> usize {
    rf / 2 + 1
}

/// Answers a read needs: enough to overlap every write quorum
/// (RF 3: 2, RF 2: 1, RF 1: 1).
pub fn read_quorum(rf: usize) -> usize {
    rf + 1 - write_quorum(rf)
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
            "unavailable: some data cannot be read or written"
        } else if self.degraded > 0 {
            "degraded: some data has fewer copies than it should, all still works"
        } else {
            "healthy: all data has all its copies"
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
        // Transition state: history is a union by version (the entry with
        // the larger digest wins a conflict), trackers grow only.
        let mut history: BTreeMap<u64, HistoricVersion> = BTreeMap::new();
        for h in self.history.iter().chain(other.history.iter()) {
            match history.get(&h.version) {
                Some(cur) if cur.digest() >= h.digest() => {}
                _ => {
                    history.insert(h.version, h.clone());
                }
            }
        }
        let mut ack = self.ack.clone();
        max_merge(&mut ack, &other.ack);
        let mut sync = self.sync.clone();
        max_merge(&mut sync, &other.sync);
        let min_live = self.min_live.max(other.min_live);
        // Applied part: a total order on (version, digest).
        if other.applied_key() > self.applied_key() {
            *self = other.clone();
        }
        (self.staged_on, self.staged) = staged;
        self.ack = ack;
        self.sync = sync;
        self.min_live = min_live;
        let current = self.version;
        self.history = history
            .into_values()
            .filter(|h| h.version >= min_live && h.version < current)
            .collect();
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
    fn what_if_counts_partitions_by_what_they_would_lose() {
        let (l, _) = three_nodes().apply(1).unwrap();
        let set = |ids: &[u8]| ids.iter().map(|b| id(*b)).collect::<BTreeSet<_>>();
        assert_eq!(l.what_if(&set(&[])), WhatIf::default());
        // RF 3 on 3 nodes: every partition is on every node.
        let one = l.what_if(&set(&[0]));
        assert_eq!(one.lose_redundancy, PARTITIONS);
        assert!(one.keeps_serving(), "{one:?}");
        let two = l.what_if(&set(&[0, 1]));
        assert_eq!(two.lose_write_quorum, PARTITIONS);
        assert_eq!(
            two.lose_read_quorum, PARTITIONS,
            "RF 3 reads need 2 replicas"
        );
        assert!(!two.keeps_serving());
        assert_eq!(l.what_if(&set(&[0, 1, 2])).lose_all, PARTITIONS);
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
    fn a_transition_writes_to_both_versions_and_reads_the_old_one_until_synced() {
        let (v1, _) = three_nodes().apply(1).unwrap();
        assert!(!v1.in_transition());
        let mut l = v1.clone();
        l.stage(id(3), role("dc4", 100), 5, id(0));
        l.stage(id(0), StagedRole::Remove, 5, id(0));
        let (mut v2, _) = l.apply(2).unwrap();
        assert_eq!(v2.live_versions(), vec![1, 2]);
        for p in 0..PARTITIONS {
            assert_eq!(v2.write_sets(p).len(), 2);
            assert_eq!(
                v2.read_set(p),
                v1.nodes_of(p),
                "reads stay on the complete set"
            );
            assert!(v2.read_set(p).contains(&id(0)));
            assert!(!v2.nodes_of(p).contains(&id(0)));
        }
        // One old replica per partition having pushed is not enough (R = 2).
        v2.set_sync(id(1), 2);
        assert!(!v2.prune());
        v2.set_sync(id(2), 2);
        assert!(
            v2.prune(),
            "two of three old replicas of every partition pushed"
        );
        assert_eq!(v2.live_versions(), vec![2]);
        for p in 0..PARTITIONS {
            assert_eq!(v2.read_set(p), v2.nodes_of(p));
        }
        // A peer still in transition learns that it is over.
        let mut stale = l.apply(2).unwrap().0;
        stale.merge(&v2);
        assert!(!stale.in_transition());
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
                if applied >= 2 && stages.len() % 2 == 0 {
                    l.set_sync(id(1), applied);
                    l.set_sync(id(2), applied);
                    l.set_ack(id(0), applied);
                    l.prune();
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
