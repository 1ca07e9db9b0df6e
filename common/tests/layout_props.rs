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

fn pairs(report: &AssignmentReport) -> BTreeSet<(usize, NodeId)> {
    report
        .assignment
        .iter()
        .enumerate()
        .flat_map(|(p, nodes)| nodes.iter().map(move |&id| (p, id)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

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

    /// 5. Adding a storage node moves at most 1.5 times the replicas its
    /// new counts force to move, and the new node gets its share.
    #[test]
    fn adding_a_node_moves_little(case in case()) {
        let Case { mut roles, rf, spare, added: (zone, capacity), .. } = case;
        prop_assume!(storage(&roles).len() >= rf);
        let before = compute(&roles, rf, None).expect("enough storage nodes");
        roles.insert(spare, NodeRole { zone: zone_name(zone), capacity: Some(capacity) });
        let after = compute(&roles, rf, Some(&before.assignment)).expect("more nodes");
        assert_valid(&roles, rf, &after)?;
        assert_proportional(&roles, rf, &after)?;
        let least = least_moves(&before, &after);
        prop_assert!(after.moves >= least);
        prop_assert!(
            2 * after.moves <= 3 * least,
            "{} moves where {} are forced",
            after.moves,
            least
        );
        prop_assert_eq!(after.moves_per_node[&spare].incoming, after.partitions_per_node[&spare]);
    }

    /// 6. Removing a storage node (or making it a gateway) moves its
    /// replicas, and only what the new counts force besides.
    #[test]
    fn removing_a_node_moves_its_replicas(case in case()) {
        let Case { mut roles, rf, victim, victim_becomes_gateway, .. } = case;
        let nodes = storage(&roles);
        let count = nodes.len();
        prop_assume!(count >= rf);
        let before = compute(&roles, rf, None).expect("enough storage nodes");
        let (gone, gone_zone, _) = nodes[victim.index(count)];
        let gone_zone = gone_zone.to_string();
        let old_sizes: BTreeMap<String, usize> =
            zone_sizes(&roles).into_iter().map(|(z, n)| (z.to_string(), n)).collect();
        if victim_becomes_gateway {
            roles.insert(gone, NodeRole { zone: gone_zone.clone(), capacity: None });
        } else {
            roles.remove(&gone);
        }
        let after = compute(&roles, rf, Some(&before.assignment));
        if count == rf {
            prop_assert!(
                matches!(after, Err(LayoutError::NotEnoughNodes { missing: 1, .. })),
                "{:?}",
                after
            );
            return Ok(());
        }
        let after = after.expect("enough storage nodes remain");
        assert_valid(&roles, rf, &after)?;
        assert_proportional(&roles, rf, &after)?;
        let held = before.partitions_per_node[&gone];
        prop_assert_eq!(after.moves_per_node[&gone].outgoing, held);
        prop_assert!(after.moves >= least_moves(&before, &after));

        let new_sizes = zone_sizes(&roles);
        let zones_same = new_sizes.len() == old_sizes.len();
        let bounds_same = zones_same
            && new_sizes.get(gone_zone.as_str()).is_some_and(|&members| {
                zone_bounds(rf, new_sizes.len(), members)
                    == zone_bounds(rf, old_sizes.len(), old_sizes[&gone_zone])
            });
        if bounds_same {
            let kept = pairs(&after);
            for (p, id) in pairs(&before) {
                if id != gone && after.partitions_per_node[&id] >= before.partitions_per_node[&id] {
                    prop_assert!(kept.contains(&(p, id)), "node {:?} lost partition {}", id, p);
                }
            }
            prop_assert_eq!(after.moves, least_moves(&before, &after));
        }
    }
}

#[test]
#[ignore]
fn stats() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strat = case();
    let n: usize = std::env::var("N").ok().and_then(|s| s.parse().ok()).unwrap_or(500);
    let zt = |roles: &Roles, r: &AssignmentReport| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for (id, role) in roles { if role.capacity.is_some() { *m.entry(role.zone.clone()).or_default() += r.partitions_per_node[id]; } }
        m
    };
    let gain = |a: &BTreeMap<String, usize>, b: &BTreeMap<String, usize>| -> usize {
        b.iter().map(|(z, &t)| t.saturating_sub(a.get(z).copied().unwrap_or(0))).sum()
    };
    let (mut h_add, mut h_rm, mut r15_add, mut r15_rm, mut cnt_add, mut cnt_rm) = (0, 0, 0, 0, 0, 0);
    let mut worst_slack_add = 0i64; let mut worst_slack_rm = 0i64;
    let mut t_max = std::time::Duration::ZERO; let mut t_sum = std::time::Duration::ZERO; let mut t_n = 0u32;
    for _ in 0..n {
        let c = strat.new_tree(&mut runner).unwrap().current();
        let nodes = storage(&c.roles);
        if nodes.len() < c.rf { continue; }
        let before = compute(&c.roles, c.rf, None).unwrap();
        let zb = zt(&c.roles, &before);
        let mut roles = c.roles.clone();
        roles.insert(c.spare, NodeRole { zone: zone_name(c.added.0), capacity: Some(c.added.1) });
        let t0 = std::time::Instant::now();
        let after = compute(&roles, c.rf, Some(&before.assignment)).unwrap();
        let dt = t0.elapsed();
        if nodes.len() >= 29 { t_max = t_max.max(dt); t_sum += dt; t_n += 1; }
        let least = least_moves(&before, &after);
        let d = gain(&zb, &zt(&roles, &after));
        cnt_add += 1;
        if after.moves > least + d { h_add += 1; }
        if 2 * after.moves > 3 * least { r15_add += 1; }
        worst_slack_add = worst_slack_add.max(after.moves as i64 - least as i64 - d as i64);
        if nodes.len() > c.rf {
            let (gone, _, _) = nodes[c.victim.index(nodes.len())];
            let mut roles = c.roles.clone();
            roles.remove(&gone);
            let after = compute(&roles, c.rf, Some(&before.assignment)).unwrap();
            let least = least_moves(&before, &after);
            let d = gain(&zb, &zt(&roles, &after));
            cnt_rm += 1;
            if after.moves > least + d { h_rm += 1; eprintln!("RM H fail rf {} moves {} least {} d {}", c.rf, after.moves, least, d); }
            if 2 * after.moves > 3 * least { r15_rm += 1; }
            worst_slack_rm = worst_slack_rm.max(after.moves as i64 - least as i64 - d as i64);
        }
    }
    eprintln!("add: n {cnt_add} H-viol {h_add} 1.5-viol {r15_add} worst moves-least-D {worst_slack_add}");
    eprintln!("rm: n {cnt_rm} H-viol {h_rm} 1.5-viol {r15_rm} worst moves-least-D {worst_slack_rm}");
    eprintln!("30-node add compute: max {t_max:?} mean {:?}", t_sum / t_n.max(1));
}
