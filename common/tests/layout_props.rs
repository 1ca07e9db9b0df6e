//! Property tests of the partition assignment (`layout::assign::compute`)
//! on random clusters: 1-30 storage nodes, sometimes a few gateways, 1-8
//! zones, capacities spanning 100x, replication factor 1-3.
//!
//! The expectations are derived here from first principles (zone bounds,
//! capacity-proportional shares), not taken from the implementation, so a
//! wrong algorithm fails them.

use std::collections::{BTreeMap, BTreeSet};

use hangar_common::NodeId;
use hangar_common::layout::assign::compute;
use hangar_common::layout::{AssignmentReport, LayoutError, NodeRole, PARTITIONS};
use proptest::prelude::*;

const P: usize = PARTITIONS;
const GB: u64 = 1_000_000_000;

type Roles = BTreeMap<NodeId, NodeRole>;

/// A random cluster plus the ingredients of one change to it.
#[derive(Clone, Debug)]
struct Case {
    roles: Roles,
    rf: usize,
    /// An id not in `roles`, for a node to add.
    spare: NodeId,
    /// Zone index and capacity for the added node; the index may name a
    /// zone nobody is in yet.
    added: (usize, u64),
    /// Picks the storage node to remove.
    victim: prop::sample::Index,
    /// Remove the victim outright, or turn it into a gateway.
    victim_becomes_gateway: bool,
}

fn zone_name(z: usize) -> String {
    format!("z{z}")
}

/// 100 GB .. 10 TB, log-uniform, with equal capacities often enough to
/// exercise ties.
fn capacity() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => (0.0f64..=1.0).prop_map(|x| (100.0 * GB as f64 * 100f64.powf(x)) as u64),
        1 => Just(1000 * GB),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..=30, 1usize..=8, 0usize..=3, 1usize..=3)
        .prop_flat_map(|(storage, zones, gateways, rf)| {
            (
                prop::collection::btree_set(
                    prop::array::uniform32(any::<u8>()),
                    storage + gateways + 1,
                ),
                prop::collection::vec((0..zones, capacity()), storage),
                prop::collection::vec(0..zones, gateways),
                Just(rf),
                (0..=zones, capacity()),
                any::<prop::sample::Index>(),
                any::<bool>(),
            )
        })
        .prop_map(
            |(ids, storage, gateways, rf, added, victim, victim_becomes_gateway)| {
                let mut ids = ids.into_iter().map(NodeId);
                let mut roles = Roles::new();
                for (zone, capacity) in storage {
                    let id = ids.next().expect("one id per node");
                    roles.insert(
                        id,
                        NodeRole {
                            zone: zone_name(zone),
                            capacity: Some(capacity),
                        },
                    );
                }
                for zone in gateways {
                    let id = ids.next().expect("one id per node");
                    roles.insert(
                        id,
                        NodeRole {
                            zone: zone_name(zone),
                            capacity: None,
                        },
                    );
                }
                Case {
                    roles,
                    rf,
                    spare: ids.next().expect("one spare id"),
                    added,
                    victim,
                    victim_becomes_gateway,
                }
            },
        )
}

fn storage(roles: &Roles) -> Vec<(NodeId, &str, u64)> {
    roles
        .iter()
        .filter_map(|(id, r)| r.capacity.map(|c| (*id, r.zone.as_str(), c)))
        .collect()
}

/// Zone name -> number of storage nodes in it.
fn zone_sizes(roles: &Roles) -> BTreeMap<&str, usize> {
    let mut sizes = BTreeMap::new();
    for (_, zone, _) in storage(roles) {
        *sizes.entry(zone).or_insert(0) += 1;
    }
    sizes
}

/// `[lo, hi]` on a zone's replica total for every partition to span
/// `min(rf, Z)` zones: with at least `rf` zones a zone holds each partition
/// at most once; with fewer, at least once and at most as often as its
/// nodes and the other zones' one replica each allow.
fn zone_bounds(rf: usize, zones: usize, members: usize) -> (usize, usize) {
    if zones >= rf {
        (0, P)
    } else {
        (P, members.min(rf - zones + 1) * P)
    }
}

/// The capacity-proportional shares `rf * P * c_i / sum(c)`, if no
/// constraint binds them (no node above `P`, every zone within its bounds),
/// so that they are what priority 2 asks for exactly.
fn free_shares(roles: &Roles, rf: usize) -> Option<BTreeMap<NodeId, f64>> {
    let nodes = storage(roles);
    let total: f64 = nodes.iter().map(|&(_, _, c)| c as f64).sum();
    let shares: BTreeMap<NodeId, f64> = nodes
        .iter()
        .map(|&(id, _, c)| (id, (rf * P) as f64 * c as f64 / total))
        .collect();
    if shares.values().any(|&s| s > P as f64) {
        return None;
    }
    let sizes = zone_sizes(roles);
    for (zone, &members) in &sizes {
        let (lo, hi) = zone_bounds(rf, sizes.len(), members);
        let share: f64 = nodes
            .iter()
            .filter(|(_, z, _)| z == zone)
            .map(|(id, _, _)| shares[id])
            .sum();
        if share < lo as f64 || share > hi as f64 {
            return None;
        }
    }
    Some(shares)
}

/// Properties 1 and 2, plus the report agreeing with its assignment.
fn assert_valid(roles: &Roles, rf: usize, report: &AssignmentReport) -> Result<(), TestCaseError> {
    let nodes = storage(roles);
    let zones = zone_sizes(roles).len();
    prop_assert_eq!(report.assignment.len(), P);
    let mut counts: BTreeMap<NodeId, usize> = nodes.iter().map(|&(id, _, _)| (id, 0)).collect();
    let mut min_spread = usize::MAX;
    for (p, replicas) in report.assignment.iter().enumerate() {
        // 1. rf distinct storage nodes, sorted by id.
        prop_assert_eq!(replicas.len(), rf, "partition {}", p);
        prop_assert!(replicas.windows(2).all(|w| w[0] < w[1]), "partition {}", p);
        let mut spanned = BTreeSet::new();
        for id in replicas {
            let role = roles.get(id);
            prop_assert!(
                role.is_some_and(|r| !r.is_gateway()),
                "partition {} on non-storage node {:?}",
                p,
                id
            );
            spanned.insert(role.map(|r| r.zone.as_str()));
            *counts.entry(*id).or_default() += 1;
        }
        // 2. as many zones as possible.
        prop_assert_eq!(spanned.len(), rf.min(zones), "partition {}", p);
        min_spread = min_spread.min(spanned.len());
    }
    prop_assert_eq!(&report.partitions_per_node, &counts);
    prop_assert_eq!(report.min_zone_spread, min_spread);
    let usable = nodes
        .iter()
        .filter(|(id, _, _)| counts[id] > 0)
        .map(|&(id, _, c)| u128::from(c) * P as u128 / counts[&id] as u128)
        .min()
        .expect("rf >= 1 puts data somewhere");
    prop_assert_eq!(u128::from(report.usable_capacity), usable);
    let incoming: usize = report.moves_per_node.values().map(|m| m.incoming).sum();
    prop_assert_eq!(incoming, report.moves);
    Ok(())
}

/// Property 3: within one of the proportional share when nothing binds.
fn assert_proportional(
    roles: &Roles,
    rf: usize,
    report: &AssignmentReport,
) -> Result<(), TestCaseError> {
    if let Some(shares) = free_shares(roles, rf) {
        for (id, share) in shares {
            let n = report.partitions_per_node[&id] as f64;
            prop_assert!(
                (n - share).abs() <= 1.0 + 1e-6,
                "node {:?} has {} partitions, its share is {}",
                id,
                n,
                share
            );
        }
    }
    Ok(())
}

/// Replicas that must land on some node given the new counts: every node
/// gaining replicas receives at least its gain.
fn least_moves(before: &AssignmentReport, after: &AssignmentReport) -> usize {
    after
        .partitions_per_node
        .iter()
        .map(|(id, &n)| n.saturating_sub(before.partitions_per_node.get(id).copied().unwrap_or(0)))
        .sum()
}

/// Replicas that must change zone: the sum over zones of how much each
/// zone's total grows. A zone gaining a replica of partition `p` makes
/// another zone give up its replica of `p`, and that replica need not be
/// one of those its nodes' new counts shed, which costs a swap inside that
/// zone: so each can cost one move beyond `least_moves`.
fn zone_gains(before: (&Roles, &AssignmentReport), after: (&Roles, &AssignmentReport)) -> usize {
    let totals = |(roles, report): (&Roles, &AssignmentReport)| {
        let mut totals: BTreeMap<String, usize> = BTreeMap::new();
        for (id, &n) in &report.partitions_per_node {
            *totals.entry(roles[id].zone.clone()).or_default() += n;
        }
        totals
    };
    let (old, new) = (totals(before), totals(after));
    new.iter()
        .map(|(zone, &t)| t.saturating_sub(old.get(zone).copied().unwrap_or(0)))
        .sum()
}

fn pairs(report: &AssignmentReport) -> BTreeSet<(usize, NodeId)> {
    report
        .assignment
        .iter()
        .enumerate()
        .flat_map(|(p, nodes)| nodes.iter().map(move |&id| (p, id)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Properties 1-4 on a first layout, and the error when there are too
    /// few storage nodes.
    #[test]
    fn layouts_are_valid_proportional_and_stable(case in case()) {
        let Case { roles, rf, .. } = case;
        let storage = storage(&roles).len();
        let report = compute(&roles, rf, None);
        if storage < rf {
            prop_assert_eq!(
                report,
                Err(LayoutError::NotEnoughNodes { rf, storage, missing: rf - storage })
            );
            return Ok(());
        }
        let report = report.expect("enough storage nodes");
        assert_valid(&roles, rf, &report)?;
        assert_proportional(&roles, rf, &report)?;
        prop_assert_eq!(report.moves, rf * P);

        // 4. Determinism, and recomputing over its own output moves nothing.
        let again = compute(&roles, rf, None).expect("same input");
        prop_assert_eq!(&again, &report);
        let stable = compute(&roles, rf, Some(&report.assignment)).expect("same input");
        prop_assert_eq!(stable.moves, 0);
        prop_assert_eq!(&stable.assignment, &report.assignment);
        prop_assert_eq!(&stable.partitions_per_node, &report.partitions_per_node);
    }

    /// 5. Adding a storage node moves few replicas, and the new node gets
    /// its share.
    ///
    /// The issue asks for at most 1.5 times `least_moves`. That is not
    /// always possible: in a case proptest found (rf 3, four zones, 21
    /// nodes), the new node's share is one partition, so one node of another
    /// zone must shed one; every partition that node holds already has a
    /// replica in the new node's zone, so a partition must swap inside the
    /// donor zone first: 2 moves, `least_moves` 1. Each replica that must
    /// change zone (see `zone_gains`) can cost such a swap, so the test
    /// accepts either bound.
    #[test]
    fn adding_a_node_moves_little(case in case()) {
        let Case { roles, rf, spare, added: (zone, capacity), .. } = case;
        prop_assume!(storage(&roles).len() >= rf);
        let before = compute(&roles, rf, None).expect("enough storage nodes");
        let mut grown = roles.clone();
        grown.insert(spare, NodeRole { zone: zone_name(zone), capacity: Some(capacity) });
        let after = compute(&grown, rf, Some(&before.assignment)).expect("more nodes");
        assert_valid(&grown, rf, &after)?;
        assert_proportional(&grown, rf, &after)?;
        prop_assert_eq!(after.moves_per_node[&spare].incoming, after.partitions_per_node[&spare]);
        let least = least_moves(&before, &after);
        let rezoned = zone_gains((&roles, &before), (&grown, &after));
        prop_assert!(after.moves >= least);
        prop_assert!(
            2 * after.moves <= 3 * least || after.moves <= least + rezoned,
            "{} moves where {} are forced and {} replicas change zone",
            after.moves,
            least,
            rezoned
        );
    }

    /// 6. Removing a storage node (or making it a gateway) moves its
    /// replicas, and only what the new counts force besides.
    ///
    /// The condition for "moves == the removed node's replicas"
    /// (its zone keeps nodes, zone bounds unchanged) is not enough: in a
    /// case proptest found (rf 2, zones of 12, 2 and 7 nodes), the third
    /// zone's total reaches 256 after the removal, so it must now hold every
    /// partition; the 5 it lacked each drop a replica elsewhere, and the
    /// layout moves 20 replicas where the removed node held 15. What holds:
    /// * with rf 1, or when every zone holds each partition at most once
    ///   and no zone's total changes, exactly `least_moves` (each gainer
    ///   takes replicas shed in its own zone, which it cannot hold yet), so
    ///   every node whose count did not drop keeps all it held;
    /// * when every zone holds each partition at most once, at most one
    ///   extra move per replica that changes zone (as in property 5);
    /// * with fewer zones than rf, a zone holds several replicas of some
    ///   partitions and a freed replica may have no taker that lacks it
    ///   without swaps; over 4000 random removals never needed more than
    ///   twice `least_moves`, which is asserted as a regression bound.
    #[test]
    fn removing_a_node_moves_its_replicas(case in case()) {
        let Case { roles, rf, victim, victim_becomes_gateway, .. } = case;
        let nodes = storage(&roles);
        let count = nodes.len();
        prop_assume!(count >= rf);
        let before = compute(&roles, rf, None).expect("enough storage nodes");
        let (gone, gone_zone, _) = nodes[victim.index(count)];
        let mut shrunk = roles.clone();
        if victim_becomes_gateway {
            shrunk.insert(gone, NodeRole { zone: gone_zone.to_string(), capacity: None });
        } else {
            shrunk.remove(&gone);
        }
        let after = compute(&shrunk, rf, Some(&before.assignment));
        if count == rf {
            prop_assert!(
                matches!(after, Err(LayoutError::NotEnoughNodes { missing: 1, .. })),
                "{:?}",
                after
            );
            return Ok(());
        }
        let after = after.expect("enough storage nodes remain");
        assert_valid(&shrunk, rf, &after)?;
        assert_proportional(&shrunk, rf, &after)?;
        let held = before.partitions_per_node[&gone];
        let outgoing = after.moves_per_node.get(&gone).map_or(0, |m| m.outgoing);
        prop_assert_eq!(outgoing, held);
        let least = least_moves(&before, &after);
        prop_assert!(after.moves >= least && least >= held);

        let zones = zone_sizes(&shrunk).len();
        let once_per_zone = zones >= rf && zones == zone_sizes(&roles).len();
        let rezoned = zone_gains((&roles, &before), (&shrunk, &after));
        if rf == 1 || (once_per_zone && rezoned == 0) {
            prop_assert_eq!(after.moves, least);
            let kept = pairs(&after);
            let mut dropped = false;
            for (p, id) in pairs(&before) {
                if id == gone {
                    continue;
                }
                if after.partitions_per_node[&id] >= before.partitions_per_node[&id] {
                    prop_assert!(kept.contains(&(p, id)), "node {:?} lost partition {}", id, p);
                } else {
                    dropped = true;
                }
            }
            if !dropped {
                prop_assert_eq!(after.moves, held);
            }
        } else if once_per_zone {
            prop_assert!(
                after.moves <= least + rezoned,
                "{} moves where {} are forced and {} replicas change zone",
                after.moves,
                least,
                rezoned
            );
        } else {
            prop_assert!(after.moves <= 2 * least, "{} moves where {} are forced", after.moves, least);
        }
    }

    /// Too few storage nodes for the replication factor is an error that
    /// says how many are missing; gateways do not count.
    #[test]
    fn too_few_storage_nodes_is_an_error(
        storage_nodes in 0usize..3,
        gateways in 0usize..4,
        extra in 1usize..=3,
    ) {
        let mut roles = Roles::new();
        for k in 0..storage_nodes + gateways {
            let capacity = (k < storage_nodes).then_some(1000 * GB);
            roles.insert(NodeId([k as u8; 32]), NodeRole { zone: zone_name(k % 2), capacity });
        }
        let rf = storage_nodes + extra;
        prop_assert_eq!(
            compute(&roles, rf, None),
            Err(LayoutError::NotEnoughNodes { rf, storage: storage_nodes, missing: extra })
        );
    }
}
