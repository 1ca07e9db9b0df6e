//! Partition assignment: which storage nodes hold each of the [`PARTITIONS`]
//! partitions.
//!
//! The operator's priorities, in this order, are
//! 1. spread every partition over as many distinct zones as possible,
//!    `min(rf, Z)` with `Z` the number of zones that have storage nodes, so
//!    that losing a whole site loses as few replicas of anything as possible;
//! 2. give each storage node a number of partition replicas proportional to
//!    its capacity, as far as 1. allows: the node that fills first bounds what
//!    the whole cluster can hold, so this maximises usable capacity;
//! 3. move as few partition replicas as possible away from the previous
//!    assignment, since every move is data copied over the network.
//!
//! [`compute`] works in two steps.
//!
//! **Shares: how many replicas each node should get.** With `P` partitions,
//! let `n_i` be node `i`'s count and `t_z` the sum over zone `z`. A node
//! holds a partition at most once, so `0 <= n_i <= P`. If `Z >= rf`, every
//! partition spans `rf` zones iff every `t_z <= P`; if `Z < rf`, every
//! partition spans all `Z` zones iff `P <= t_z <= min(nodes in z, rf - Z + 1)
//! * P`. These bounds are also sufficient: write the nodes' tokens grouped
//! by zone, node `i` repeated `n_i` times, and deal token `k` to partition
//! `k mod P` (see [`deal`]). So priority 1 becomes bounds on zone totals,
//! and priority 2 a water-filling problem under those bounds: find the level
//! `lambda` at which every node gets `min(lambda * capacity, P)`, each
//! zone's total clamped to its bounds (a clamped zone shares its total among
//! its nodes by the same rule), and everything sums to `rf * P`.
//!
//! **Rounding.** Every node gets the floor or the ceiling of its share.
//! Which nodes round up matters for usable capacity: a partition more than
//! its share fills a node sooner, the more so the smaller the node. Nodes
//! may round up in order of the load that gives them, as far as needed to
//! reach `rf * P` within the zone bounds, and so may every node that the
//! ceiling leaves no fuller than the fullest node already is. Among those,
//! the placement below chooses, so rounding is sticky: a node whose previous
//! count is its ceiling keeps it at no move, where fixed rounding would make
//! many nodes flip by one whenever a node joins, each flip a replica moved
//! for nothing.
//!
//! **Placement: which partitions each node gets.** A min-cost max-flow:
//! source -> partition `p` (capacity `rf`) -> (`p`, zone `z`) -> node `i` of
//! zone `z` (capacity 1; no cost if `i` held `p` before, else the cost of a
//! move) -> sink. Each (`p`, `z`) vertex is fed by two parallel edges: one
//! of capacity 1 and cost `-BIG`, one of capacity `rf - 1` and cost 0. Each
//! node reaches the sink by an edge of its floor's capacity at cost `-BIG`
//! and, if it may round up, one of capacity 1 costing its rank in the
//! rounding order. `BIG` exceeds all other costs together, so the minimum
//! first maximises the distinct (partition, zone) pairs (zone spread) and
//! fills every floor, then minimises moves, then rounds up by rank; the
//! dealing argument guarantees the flow `rf * P`, full spread and full
//! floors are reachable together.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

use super::{
    Assignment, AssignmentReport, LayoutError, MAX_REPLICATION_FACTOR, NodeMoves, NodeRole,
    PARTITIONS,
};
use crate::NodeId;

/// Short alias: the formulas in this file read better with `P`.
const P: usize = PARTITIONS;

/// Computes the assignment of every partition to `replication_factor`
/// storage nodes, with a report on it.
///
/// Deterministic: the same inputs always give the same output. `previous`
/// is the assignment in force, used only to move as little as possible; it
/// may mention nodes that were removed or became gateways, and is `None`
/// for the first layout.
pub fn compute(
    roles: &BTreeMap<NodeId, NodeRole>,
    replication_factor: usize,
    previous: Option<&Assignment>,
) -> Result<AssignmentReport, LayoutError> {
    let rf = replication_factor;
    if !(1..=MAX_REPLICATION_FACTOR).contains(&rf) {
        return Err(LayoutError::BadReplicationFactor {
            rf,
            max: MAX_REPLICATION_FACTOR,
        });
    }
    let cluster = Cluster::new(roles)?;
    if cluster.len() < rf {
        return Err(LayoutError::NotEnoughNodes {
            rf,
            storage: cluster.len(),
            missing: rf - cluster.len(),
        });
    }
    let prev = Previous::new(previous, &cluster);
    let targets = Targets::compute(&cluster, rf);
    let placed = place(&cluster, rf, &targets, &prev);
    debug_assert!(
        check(&cluster, rf, &targets, &placed),
        "placement breaks its targets or the zone spread"
    );
    Ok(report(&cluster, rf, &targets, &placed, previous))
}

/// The storage nodes, indexed `0..len()` in ascending id order, and their
/// zones, indexed in ascending name order. Indices (rather than ids and
/// names) keep the flow graph small and every iteration order deterministic.
struct Cluster<'a> {
    ids: Vec<NodeId>,
    capacity: Vec<u64>,
    zone_of: Vec<usize>,
    zones: Vec<&'a str>,
    /// Per zone, its nodes in ascending id order.
    members: Vec<Vec<usize>>,
    index: BTreeMap<NodeId, usize>,
}

impl<'a> Cluster<'a> {
    fn new(roles: &'a BTreeMap<NodeId, NodeRole>) -> Result<Self, LayoutError> {
        let zone_names: BTreeSet<&str> = roles
            .values()
            .filter(|r| !r.is_gateway())
            .map(|r| r.zone.as_str())
            .collect();
        let zones: Vec<&str> = zone_names.into_iter().collect();
        let mut cluster = Cluster {
            ids: Vec::new(),
            capacity: Vec::new(),
            zone_of: Vec::new(),
            members: vec![Vec::new(); zones.len()],
            zones,
            index: BTreeMap::new(),
        };
        for (id, role) in roles {
            let Some(capacity) = role.capacity else {
                continue;
            };
            if capacity == 0 {
                return Err(LayoutError::ZeroCapacity { node: id.short() });
            }
            let zone = cluster
                .zones
                .binary_search(&role.zone.as_str())
                .expect("zones were collected from these very roles");
            let i = cluster.ids.len();
            cluster.ids.push(*id);
            cluster.capacity.push(capacity);
            cluster.zone_of.push(zone);
            cluster.members[zone].push(i);
            cluster.index.insert(*id, i);
        }
        Ok(cluster)
    }

    fn len(&self) -> usize {
        self.ids.len()
    }
}

/// What the previous assignment says about the current storage nodes; pairs
/// naming other nodes (removed, now gateways) cannot be kept, so only the
/// report looks at them.
struct Previous {
    /// `held[i][p]`: node `i` held partition `p`.
    held: Vec<Vec<bool>>,
}

impl Previous {
    fn new(previous: Option<&Assignment>, cluster: &Cluster) -> Self {
        let mut held = vec![vec![false; P]; cluster.len()];
        // A malformed previous assignment (too many partitions, a node twice
        // in one partition) only costs optimality, never correctness: extra
        // partitions are ignored and duplicates merged.
        for (p, nodes) in previous.into_iter().flatten().take(P).enumerate() {
            for id in nodes {
                if let Some(&i) = cluster.index.get(id) {
                    held[i][p] = true;
                }
            }
        }
        Previous { held }
    }
}

/// The bounds `[lo, hi]` on the number of replicas zone `z` holds, over all
/// partitions, for every partition to span as many zones as possible (see
/// the module documentation).
fn zone_bounds(rf: usize, zones: usize, members: usize) -> (usize, usize) {
    if zones >= rf {
        (0, P)
    } else {
        (P, members.min(rf - zones + 1) * P)
    }
}

/// How a zone's total relates to its capacity-proportional share; notes
/// explain the clamped cases to the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Clamp {
    /// Proportional to capacity.
    Free,
    /// Raised to hold a replica of every partition although its capacity
    /// alone would give it fewer (fewer zones than replicas).
    Raised,
    /// Lowered to the most replicas per partition zone spreading allows.
    Lowered,
}

/// What every node may get: the real-valued share priority 2 asks for,
/// and the integers around it the placement may choose from.
struct Targets {
    share: Vec<f64>,
    /// Floor and ceiling of the share (equal when it is an integer).
    lo: Vec<usize>,
    hi: Vec<usize>,
    /// Whether the node may be rounded up without lowering usable capacity
    /// below the best any rounding reaches.
    up: Vec<bool>,
    /// Among nodes that may round up, which round up first when moves do
    /// not decide: 0 is the node that one more partition fills least.
    rank: Vec<usize>,
    /// One valid choice of counts within the ranges (the placement's
    /// feasibility witness and fallback).
    witness: Vec<usize>,
    zone_bounds: Vec<(usize, usize)>,
    zone_clamp: Vec<Clamp>,
    /// The node's proportional share exceeded `P` and was cut to it.
    capped: Vec<bool>,
}

/// Tolerance for deciding that a bound really binds or that a share is an
/// integer, so that floating-point noise neither produces notes about
/// constraints that merely touch nor rounds a whole share.
const BINDS: f64 = 1e-6;

impl Targets {
    fn compute(cluster: &Cluster, rf: usize) -> Self {
        let pf = P as f64;
        let n = cluster.len();
        let capacity: Vec<f64> = cluster.capacity.iter().map(|&c| c as f64).collect();
        let bounds: Vec<(usize, usize)> = cluster
            .members
            .iter()
            .map(|m| zone_bounds(rf, cluster.zones.len(), m.len()))
            .collect();
        let fill = |zone: usize, lambda: f64| -> f64 {
            cluster.members[zone]
                .iter()
                .map(|&i| (lambda * capacity[i]).min(pf))
                .sum()
        };
        let clamped_total = |lambda: f64| -> f64 {
            (0..cluster.zones.len())
                .map(|z| {
                    let (lo, hi) = bounds[z];
                    fill(z, lambda).clamp(lo as f64, hi as f64)
                })
                .sum()
        };

        // Bisection for the water level: the clamped total grows with lambda,
        // is at most `rf * P` at 0 (the lower bounds sum to at most that) and
        // at least `rf * P` once every node is full (see `zone_bounds`).
        let goal = (rf * P) as f64;
        let min_capacity = capacity.iter().copied().fold(f64::INFINITY, f64::min);
        let (mut lo, mut hi) = (0.0_f64, pf / min_capacity);
        for _ in 0..2000 {
            let mid = 0.5 * (lo + hi);
            if mid <= lo || mid >= hi {
                break;
            }
            if clamped_total(mid) < goal {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let lambda = hi;

        let mut share = vec![0.0; n];
        let mut capped = vec![false; n];
        let mut zone_clamp = vec![Clamp::Free; cluster.zones.len()];
        for (z, members) in cluster.members.iter().enumerate() {
            let (zlo, zhi) = bounds[z];
            let free = fill(z, lambda);
            let forced = if free < zlo as f64 - BINDS {
                zone_clamp[z] = Clamp::Raised;
                zlo
            } else if free > zhi as f64 + BINDS {
                zone_clamp[z] = Clamp::Lowered;
                zhi
            } else {
                for &i in members {
                    share[i] = (lambda * capacity[i]).min(pf);
                    capped[i] = lambda * capacity[i] > pf + BINDS;
                }
                continue;
            };
            let caps: Vec<f64> = members.iter().map(|&i| capacity[i]).collect();
            let (shares, over) = water_fill(&caps, forced as f64);
            for (k, &i) in members.iter().enumerate() {
                share[i] = shares[k];
                capped[i] = over[k];
            }
        }

        // Every node gets the floor or the ceiling of its share.
        let (mut lo, mut hi) = (vec![0; n], vec![0; n]);
        for i in 0..n {
            let s = share[i];
            let (a, b) = if (s - s.round()).abs() < BINDS {
                (s.round(), s.round())
            } else {
                (s.floor(), s.ceil())
            };
            // Saturating float-to-int casts: negative noise becomes 0.
            lo[i] = (a as usize).min(P);
            hi[i] = (b as usize).min(P);
        }

        // Which nodes round up decides usable capacity: one more partition
        // on a node fills it to `hi / capacity`, and the fullest node bounds
        // the cluster. So allow rounding up in order of that load, as far as
        // needed for the counts to reach `rf * P` within the zone bounds, and
        // also every node that rounding up leaves no fuller than the fullest
        // node already is. Among the allowed, the placement picks those that
        // move least (this is what keeps counts sticky across layouts).
        let load = |k: usize, i: usize| k as f64 / capacity[i];
        let mut candidates: Vec<usize> = (0..n).filter(|&i| hi[i] > lo[i]).collect();
        candidates.sort_by(|&a, &b| load(hi[a], a).total_cmp(&load(hi[b], b)).then(a.cmp(&b)));
        let mut up = vec![false; n];
        let mut needed = 0;
        while zone_ranges(cluster, rf, &bounds, &lo, &hi, &up).is_none()
            && needed < candidates.len()
        {
            up[candidates[needed]] = true;
            needed += 1;
        }
        let fullest = (0..n)
            .map(|i| load(lo[i], i))
            .chain(candidates[..needed].iter().map(|&i| load(hi[i], i)))
            .fold(0.0, f64::max);
        for &i in &candidates {
            if load(hi[i], i) <= fullest * (1.0 + 1e-12) {
                up[i] = true;
            }
        }
        let mut rank = vec![0; n];
        for (r, &i) in candidates.iter().enumerate() {
            rank[i] = r;
        }

        // A witness: zone totals from their lowest, raised zone by zone;
        // within each zone, the allowed nodes round up in rank order.
        let ranges = zone_ranges(cluster, rf, &bounds, &lo, &hi, &up);
        debug_assert!(ranges.is_some(), "no rounding fits the zone bounds");
        let ranges = ranges.unwrap_or_else(|| vec![(0, 0); cluster.zones.len()]);
        let mut spare = rf * P - ranges.iter().map(|r| r.0).sum::<usize>().min(rf * P);
        let mut witness = lo.clone();
        for (z, members) in cluster.members.iter().enumerate() {
            let (min, max) = ranges[z];
            let extra = (max - min).min(spare);
            spare -= extra;
            let mut ups = (min + extra).saturating_sub(members.iter().map(|&i| lo[i]).sum());
            for &i in candidates
                .iter()
                .filter(|&&i| cluster.zone_of[i] == z && up[i])
            {
                if ups > 0 {
                    witness[i] += 1;
                    ups -= 1;
                }
            }
        }

        Targets {
            share,
            lo,
            hi,
            up,
            rank,
            witness,
            zone_bounds: bounds,
            zone_clamp,
            capped,
        }
    }
}

/// The range of totals each zone can reach with its nodes at their floors
/// plus those allowed (`up`) at their ceilings, within the zone bounds; or
/// `None` if some zone cannot or the totals cannot sum to `rf * P`.
fn zone_ranges(
    cluster: &Cluster,
    rf: usize,
    bounds: &[(usize, usize)],
    lo: &[usize],
    hi: &[usize],
    up: &[bool],
) -> Option<Vec<(usize, usize)>> {
    let ranges: Vec<(usize, usize)> = cluster
        .members
        .iter()
        .zip(bounds)
        .map(|(members, &(zlo, zhi))| {
            let floor: usize = members.iter().map(|&i| lo[i]).sum();
            let ceil: usize = members
                .iter()
                .map(|&i| if up[i] { hi[i] } else { lo[i] })
                .sum();
            (floor.max(zlo), ceil.min(zhi))
        })
        .collect();
    let min: usize = ranges.iter().map(|r| r.0).sum();
    let max: usize = ranges.iter().map(|r| r.1).sum();
    let fits = ranges.iter().all(|r| r.0 <= r.1) && min <= rf * P && rf * P <= max;
    fits.then_some(ranges)
}

/// Shares `total` among nodes with capacities `caps` proportionally, no node
/// above `P` (the caller guarantees `total <= caps.len() * P`). Returns the
/// shares and, per node, whether its proportional share exceeded `P`.
fn water_fill(caps: &[f64], total: f64) -> (Vec<f64>, Vec<bool>) {
    let pf = P as f64;
    let mut capped = vec![false; caps.len()];
    let mut over = vec![false; caps.len()];
    // Capping a node raises everyone else's share, so a node that is over
    // `P` now stays over it: capping never has to be undone.
    loop {
        let n_capped = capped.iter().filter(|&&c| c).count();
        let rest = total - pf * n_capped as f64;
        let free: f64 = (0..caps.len())
            .filter(|&k| !capped[k])
            .map(|k| caps[k])
            .sum();
        if free <= 0.0 {
            break;
        }
        let mut changed = false;
        for k in 0..caps.len() {
            let demand = rest * caps[k] / free;
            if !capped[k] && demand > pf {
                capped[k] = true;
                over[k] = demand > pf + BINDS;
                changed = true;
            }
        }
        if !changed {
            let shares = (0..caps.len())
                .map(|k| if capped[k] { pf } else { rest * caps[k] / free })
                .collect();
            return (shares, over);
        }
    }
    (vec![pf; caps.len()], over)
}

/// Places the replicas: for every partition `rf` distinct nodes, spread over
/// as many zones as possible, each node getting the floor of its share or,
/// where allowed, its ceiling, moving as few replicas as possible and then
/// rounding up the nodes ranked first.
fn place(cluster: &Cluster, rf: usize, targets: &Targets, prev: &Previous) -> Vec<Vec<usize>> {
    let nz = cluster.zones.len();
    let source = 0;
    let part = |p: usize| 1 + p;
    let pair = |p: usize, z: usize| 1 + P + p * nz + z;
    let node = |i: usize| 1 + P + P * nz + i;
    let sink = 1 + P + P * nz + cluster.len();
    // Costs in three tiers. Rank costs sum to less than `n * n` (at most `n`
    // nodes round up, each ranked below `n`), so one move outweighs any
    // choice of which nodes round up. `-big` rewards each distinct
    // (partition, zone) pair and each replica up to a node's floor; `big`
    // exceeds every move and rank cost together, and the witness reaches
    // the most pairs and all floors at once, so the optimum does too.
    let n = cluster.len() as i64;
    let move_cost = n * n + 1;
    let big = move_cost * (rf * P + 1) as i64;

    // Vertex indices grow along every edge (source, partitions, pairs,
    // nodes, sink): `Graph::min_cost_flow` relies on it.
    let mut g = Graph::new(sink + 1);
    let mut placements = Vec::with_capacity(P * cluster.len());
    for p in 0..P {
        g.add_edge(source, part(p), rf as i64, 0);
    }
    for p in 0..P {
        for (z, members) in cluster.members.iter().enumerate() {
            g.add_edge(part(p), pair(p, z), 1, -big);
            if rf > 1 {
                g.add_edge(part(p), pair(p, z), rf as i64 - 1, 0);
            }
            for &i in members {
                let cost = if prev.held[i][p] { 0 } else { move_cost };
                let e = g.add_edge(pair(p, z), node(i), 1, cost);
                placements.push((p, i, e));
            }
        }
    }
    for i in 0..cluster.len() {
        g.add_edge(node(i), sink, targets.lo[i] as i64, -big);
        if targets.up[i] {
            g.add_edge(node(i), sink, 1, targets.rank[i] as i64);
        }
    }

    let want = (rf * P) as i64;
    if g.min_cost_flow(source, sink, want) != want {
        // The witness proves a flow of `rf * P` with full spread exists, so
        // this does not happen; should it, dealing the witness still gives a
        // valid layout, only without regard for previous placements.
        debug_assert!(false, "min-cost flow fell short of rf * P");
        return deal(cluster, &targets.witness);
    }
    let mut out: Vec<Vec<usize>> = (0..P).map(|_| Vec::with_capacity(rf)).collect();
    for (p, i, e) in placements {
        if g.cap[e] == 0 {
            out[p].push(i);
        }
    }
    for nodes in &mut out {
        nodes.sort_unstable();
    }
    out
}

/// The constructive proof that counts within the zone bounds are feasible:
/// tokens grouped by zone, node `i` repeated `counts[i]` times, token `k`
/// to partition `k mod P`. A node's tokens are consecutive and at most `P`,
/// so they land on distinct partitions; so do a zone's when its total is at
/// most `P`, and a zone with at least `P` tokens reaches every partition.
fn deal(cluster: &Cluster, counts: &[usize]) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); P];
    let mut k = 0;
    for members in &cluster.members {
        for &i in members {
            for _ in 0..counts[i] {
                out[k % P].push(i);
                k += 1;
            }
        }
    }
    for nodes in &mut out {
        nodes.sort_unstable();
    }
    out
}

/// Whether `placed` gives every partition `rf` distinct nodes spanning
/// `min(rf, Z)` zones and every node the floor of its share or an allowed
/// ceiling.
fn check(cluster: &Cluster, rf: usize, targets: &Targets, placed: &[Vec<usize>]) -> bool {
    let spread = rf.min(cluster.zones.len());
    let mut got = vec![0; cluster.len()];
    for nodes in placed {
        let distinct: BTreeSet<usize> = nodes.iter().copied().collect();
        let zones: BTreeSet<usize> = nodes.iter().map(|&i| cluster.zone_of[i]).collect();
        if nodes.len() != rf || distinct.len() != rf || zones.len() != spread {
            return false;
        }
        for &i in nodes {
            got[i] += 1;
        }
    }
    let counts_ok = (0..cluster.len())
        .all(|i| got[i] == targets.lo[i] || (targets.up[i] && got[i] == targets.hi[i]));
    placed.len() == P && counts_ok
}

/// A flow network in arrays; edge `e ^ 1` is the reverse of edge `e`.
struct Graph {
    to: Vec<usize>,
    cap: Vec<i64>,
    cost: Vec<i64>,
    adj: Vec<Vec<usize>>,
}

/// Stands for an unreachable distance; far from overflow when added to.
const INF: i64 = i64::MAX / 4;

impl Graph {
    fn new(vertices: usize) -> Self {
        Graph {
            to: Vec::new(),
            cap: Vec::new(),
            cost: Vec::new(),
            adj: vec![Vec::new(); vertices],
        }
    }

    /// Adds `u -> v` and its reverse; returns the forward edge's index.
    fn add_edge(&mut self, u: usize, v: usize, cap: i64, cost: i64) -> usize {
        let e = self.to.len();
        self.to.extend([v, u]);
        self.cap.extend([cap, 0]);
        self.cost.extend([cost, -cost]);
        self.adj[u].push(e);
        self.adj[v].push(e + 1);
        e
    }

    /// Pushes up to `want` units from `s` to `t` at minimum cost and returns
    /// the amount pushed.
    ///
    /// Primal-dual: Dijkstra on reduced costs finds the shortest distance,
    /// then Dinic's blocking flows push everything along paths of that
    /// distance (zero reduced cost) before the next Dijkstra. Costs take few
    /// distinct values, so there are few Dijkstra rounds. Initial potentials
    /// are the shortest distances in the initial graph, which is acyclic
    /// with vertex indices in topological order, so one pass computes them
    /// despite the negative costs.
    fn min_cost_flow(&mut self, s: usize, t: usize, want: i64) -> i64 {
        let n = self.adj.len();
        let mut h = vec![INF; n];
        h[s] = 0;
        for u in 0..n {
            if h[u] == INF {
                continue;
            }
            for &e in &self.adj[u] {
                if self.cap[e] > 0 {
                    let v = self.to[e];
                    h[v] = h[v].min(h[u] + self.cost[e]);
                }
            }
        }

        let mut flow = 0;
        let mut dist = vec![INF; n];
        let mut level = vec![usize::MAX; n];
        let mut next = vec![0; n];
        let mut heap = BinaryHeap::new();
        let mut queue = VecDeque::new();
        while flow < want {
            // Vertices unreachable now stay so: every residual edge into
            // them from the reachable part is saturated, and augmenting only
            // adds edges between reachable vertices. Their stale potentials
            // are therefore never read.
            dist.fill(INF);
            dist[s] = 0;
            heap.push(Reverse((0, s)));
            while let Some(Reverse((d, u))) = heap.pop() {
                if d > dist[u] {
                    continue;
                }
                for &e in &self.adj[u] {
                    let v = self.to[e];
                    if self.cap[e] <= 0 || h[v] == INF {
                        continue;
                    }
                    let reduced = self.cost[e] + h[u] - h[v];
                    debug_assert!(reduced >= 0, "potentials lost feasibility");
                    if d + reduced < dist[v] {
                        dist[v] = d + reduced;
                        heap.push(Reverse((dist[v], v)));
                    }
                }
            }
            if dist[t] == INF {
                break;
            }
            for (hv, &dv) in h.iter_mut().zip(&dist) {
                if dv < INF {
                    *hv += dv;
                }
            }
            // Blocking flows on the admissible (zero reduced cost) edges.
            loop {
                level.fill(usize::MAX);
                level[s] = 0;
                queue.push_back(s);
                while let Some(u) = queue.pop_front() {
                    for &e in &self.adj[u] {
                        let v = self.to[e];
                        if level[v] == usize::MAX && self.admissible(e, u, &h) {
                            level[v] = level[u] + 1;
                            queue.push_back(v);
                        }
                    }
                }
                if level[t] == usize::MAX {
                    break;
                }
                next.fill(0);
                loop {
                    let pushed = self.augment(s, t, want - flow, &h, &mut level, &mut next);
                    if pushed == 0 {
                        break;
                    }
                    flow += pushed;
                    if flow == want {
                        return flow;
                    }
                }
            }
        }
        flow
    }

    fn admissible(&self, e: usize, u: usize, h: &[i64]) -> bool {
        let v = self.to[e];
        self.cap[e] > 0 && h[v] != INF && self.cost[e] + h[u] - h[v] == 0
    }

    /// Finds one path of the level graph from `s` to `t` (depth-first, with
    /// current-edge pointers `next` and dead ends removed from `level`) and
    /// pushes as much as it carries, at most `limit`. Returns the amount.
    fn augment(
        &mut self,
        s: usize,
        t: usize,
        limit: i64,
        h: &[i64],
        level: &mut [usize],
        next: &mut [usize],
    ) -> i64 {
        let mut path: Vec<usize> = Vec::new();
        let mut u = s;
        loop {
            if u == t {
                let pushed = path.iter().map(|&e| self.cap[e]).fold(limit, i64::min);
                for &e in &path {
                    self.cap[e] -= pushed;
                    self.cap[e ^ 1] += pushed;
                }
                return pushed;
            }
            let mut advanced = false;
            while next[u] < self.adj[u].len() {
                let e = self.adj[u][next[u]];
                let v = self.to[e];
                if level[v] != usize::MAX && level[v] == level[u] + 1 && self.admissible(e, u, h) {
                    path.push(e);
                    u = v;
                    advanced = true;
                    break;
                }
                next[u] += 1;
            }
            if !advanced {
                if u == s {
                    return 0;
                }
                level[u] = usize::MAX;
                let e = path
                    .pop()
                    .expect("a vertex other than s was entered by an edge");
                u = self.to[e ^ 1];
                next[u] += 1;
            }
        }
    }
}

/// Builds the report: the assignment in node ids, counts, usable capacity,
/// moves against `previous`, and notes on surprising outcomes.
fn report(
    cluster: &Cluster,
    rf: usize,
    targets: &Targets,
    placed: &[Vec<usize>],
    previous: Option<&Assignment>,
) -> AssignmentReport {
    let assignment: Assignment = placed
        .iter()
        .map(|nodes| nodes.iter().map(|&i| cluster.ids[i]).collect())
        .collect();

    let mut counts = vec![0usize; cluster.len()];
    for nodes in placed {
        for &i in nodes {
            counts[i] += 1;
        }
    }
    let partitions_per_node: BTreeMap<NodeId, usize> = cluster
        .ids
        .iter()
        .copied()
        .zip(counts.iter().copied())
        .collect();

    // The node that fills first, and how much data the cluster holds then.
    let limit = (0..cluster.len())
        .filter(|&i| counts[i] > 0)
        .map(|i| {
            let bytes = u128::from(cluster.capacity[i]) * P as u128 / counts[i] as u128;
            (bytes, i)
        })
        .min();
    let usable_capacity = limit.map_or(0, |(bytes, _)| u64::try_from(bytes).unwrap_or(u64::MAX));

    let min_zone_spread = placed
        .iter()
        .map(|nodes| {
            nodes
                .iter()
                .map(|&i| cluster.zone_of[i])
                .collect::<BTreeSet<_>>()
                .len()
        })
        .min()
        .unwrap_or(0);

    let old: BTreeSet<(usize, NodeId)> = previous
        .into_iter()
        .flatten()
        .take(P)
        .enumerate()
        .flat_map(|(p, nodes)| nodes.iter().map(move |&id| (p, id)))
        .collect();
    let new: BTreeSet<(usize, NodeId)> = assignment
        .iter()
        .enumerate()
        .flat_map(|(p, nodes)| nodes.iter().map(move |&id| (p, id)))
        .collect();
    let mut moves_per_node: BTreeMap<NodeId, NodeMoves> = cluster
        .ids
        .iter()
        .chain(old.iter().map(|(_, id)| id))
        .map(|&id| (id, NodeMoves::default()))
        .collect();
    let mut moves = 0;
    for (_, id) in new.difference(&old) {
        moves += 1;
        moves_per_node.entry(*id).or_default().incoming += 1;
    }
    for (_, id) in old.difference(&new) {
        moves_per_node.entry(*id).or_default().outgoing += 1;
    }

    AssignmentReport {
        assignment,
        usable_capacity,
        partitions_per_node,
        min_zone_spread,
        moves,
        moves_per_node,
        notes: notes(cluster, rf, targets, &counts, limit.map(|(_, i)| i)),
    }
}

/// "one replica" / "3 replicas".
fn replicas(k: usize) -> String {
    if k == 1 {
        "one replica".to_string()
    } else {
        format!("{k} replicas")
    }
}

/// Plain-English explanations of outcomes that follow from the priorities
/// but may surprise an operator looking at capacities alone.
fn notes(
    cluster: &Cluster,
    rf: usize,
    targets: &Targets,
    counts: &[usize],
    limiting: Option<usize>,
) -> Vec<String> {
    let mut notes = Vec::new();
    let nz = cluster.zones.len();
    if nz < rf {
        notes.push(format!(
            "only {nz} zone(s) have storage nodes, fewer than the replication factor {rf}: \
             every partition is spread over all {nz} zone(s) and some zones hold more than \
             one replica of it; add zones to spread replicas further"
        ));
    }
    for (z, &zone) in cluster.zones.iter().enumerate() {
        let (lo, hi) = targets.zone_bounds[z];
        match targets.zone_clamp[z] {
            Clamp::Free => {}
            Clamp::Raised => {
                let mut note = format!(
                    "zone {zone} holds {} of every partition although its capacity is small, \
                     because replicas are spread over as many zones as possible",
                    replicas(lo / P)
                );
                if let Some(i) = limiting.filter(|&i| cluster.zone_of[i] == z) {
                    note.push_str(&format!(
                        "; usable capacity is limited by node {} in it: raise its capacity \
                         or add nodes to zone {zone}",
                        cluster.ids[i].short()
                    ));
                }
                notes.push(note);
            }
            Clamp::Lowered => notes.push(format!(
                "zone {zone} holds {} of every partition, the most zone spreading allows, \
                 so its nodes get fewer partitions than their capacity alone would give them; \
                 add nodes in other zones to use its spare capacity",
                replicas(hi / P)
            )),
        }
    }
    for (i, &count) in counts.iter().enumerate() {
        let id = cluster.ids[i].short();
        let z = cluster.zone_of[i];
        let zone = cluster.zones[z];
        if count == 0 {
            let share = targets.share[i];
            notes.push(if targets.zone_clamp[z] == Clamp::Lowered {
                format!(
                    "node {id} in zone {zone} gets no partitions: zone {zone} already holds {} \
                     of every partition (the most zone spreading allows), and this node's \
                     capacity-proportional part of those is only {share:.2} partition \
                     replicas, rounded down to 0; add a node in a new zone or raise capacities \
                     elsewhere to use it",
                    replicas(targets.zone_bounds[z].1 / P)
                )
            } else if !targets.up[i] {
                format!(
                    "node {id} in zone {zone} gets no partitions: its capacity is so small next \
                     to the other nodes' that its proportional share is only {share:.2} \
                     partition replicas, and a whole partition would fill it sooner than any \
                     other node, lowering usable capacity; raise its capacity to use it"
                )
            } else {
                format!(
                    "node {id} in zone {zone} gets no partitions: its proportional share is only \
                     {share:.2} partition replicas, and partitions are handed out whole; \
                     raise its capacity to use it"
                )
            });
        } else if targets.capped[i] && count == P {
            notes.push(format!(
                "node {id} in zone {zone} holds all {P} partitions, the most a node can hold \
                 (a node holds each partition once), so part of its capacity stays unused"
            ));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: u64 = 1_000_000_000;
    const TB: u64 = 1000 * GB;

    fn id(n: u8) -> NodeId {
        NodeId([n; 32])
    }

    fn roles(nodes: &[(u8, &str, Option<u64>)]) -> BTreeMap<NodeId, NodeRole> {
        nodes
            .iter()
            .map(|&(n, zone, capacity)| {
                (
                    id(n),
                    NodeRole {
                        zone: zone.to_string(),
                        capacity,
                    },
                )
            })
            .collect()
    }

    fn spread_ok(report: &AssignmentReport, roles: &BTreeMap<NodeId, NodeRole>, spread: usize) {
        for nodes in &report.assignment {
            let zones: BTreeSet<&str> = nodes.iter().map(|n| roles[n].zone.as_str()).collect();
            assert_eq!(zones.len(), spread, "partition {nodes:?}");
        }
        assert_eq!(report.min_zone_spread, spread);
    }

    #[test]
    fn three_nodes_in_three_zones_hold_every_partition() {
        let r = roles(&[
            (1, "dc1", Some(TB)),
            (2, "dc2", Some(2 * TB)),
            (3, "dc3", Some(3 * TB)),
        ]);
        let report = compute(&r, 3, None).expect("valid layout");
        for nodes in &report.assignment {
            assert_eq!(nodes, &vec![id(1), id(2), id(3)]);
        }
        assert!(report.partitions_per_node.values().all(|&n| n == P));
        assert_eq!(report.usable_capacity, TB);
        assert_eq!(report.moves, 3 * P);
        assert_eq!(report.moves_per_node[&id(2)].incoming, P);
        spread_ok(&report, &r, 3);
    }

    #[test]
    fn small_node_added_to_a_saturated_zone_gets_nothing_and_a_note_says_why() {
        let mut r = roles(&[
            (1, "dc1", Some(TB)),
            (2, "dc2", Some(TB)),
            (3, "dc3", Some(TB)),
        ]);
        let before = compute(&r, 3, None).expect("valid layout");
        r.extend(roles(&[(4, "dc1", Some(GB))]));
        let after = compute(&r, 3, Some(&before.assignment)).expect("valid layout");
        assert_eq!(after.partitions_per_node[&id(4)], 0);
        assert_eq!(after.moves, 0);
        assert_eq!(after.assignment, before.assignment);
        let note = after
            .notes
            .iter()
            .find(|n| n.contains(&id(4).short()))
            .expect("a note on the idle node");
        assert!(
            note.contains("gets no partitions")
                && note.contains("zone dc1 already holds one replica of every partition"),
            "{note}"
        );
    }

    #[test]
    fn a_tiny_node_gets_nothing_rather_than_lower_usable_capacity() {
        let r = roles(&[
            (1, "a", Some(10 * TB)),
            (2, "b", Some(10 * TB)),
            (3, "c", Some(10 * GB)),
        ]);
        let report = compute(&r, 1, None).expect("valid layout");
        assert_eq!(report.partitions_per_node[&id(3)], 0);
        assert_eq!(report.usable_capacity, 20 * TB);
        let note = report
            .notes
            .iter()
            .find(|n| n.contains(&id(3).short()))
            .expect("a note on the idle node");
        assert!(note.contains("its capacity is so small"), "{note}");
    }

    /// Priority 2 shares a saturated zone's replicas among its nodes by
    /// capacity, even though that cannot raise usable capacity (the other
    /// zones bound it): it halves the load of the zone's old node.
    #[test]
    fn equal_node_added_to_a_saturated_zone_splits_that_zone_only() {
        let mut r = roles(&[
            (1, "dc1", Some(TB)),
            (2, "dc2", Some(TB)),
            (3, "dc3", Some(TB)),
        ]);
        let before = compute(&r, 3, None).expect("valid layout");
        r.extend(roles(&[(4, "dc1", Some(TB))]));
        let after = compute(&r, 3, Some(&before.assignment)).expect("valid layout");
        assert_eq!(after.partitions_per_node[&id(1)], P / 2);
        assert_eq!(after.partitions_per_node[&id(4)], P / 2);
        assert_eq!(after.moves, P / 2);
        assert_eq!(after.moves_per_node[&id(1)].outgoing, P / 2);
        assert_eq!(after.usable_capacity, TB);
        spread_ok(&after, &r, 3);
        assert!(
            after
                .notes
                .iter()
                .any(|n| n.starts_with("zone dc1 holds one replica of every partition")),
            "{:?}",
            after.notes
        );
    }

    #[test]
    fn two_zones_with_rf_3_spread_every_partition_over_both() {
        let r = roles(&[
            (1, "dc1", Some(TB)),
            (2, "dc1", Some(2 * TB)),
            (3, "dc2", Some(TB)),
            (4, "dc2", Some(TB)),
            (5, "dc2", Some(4 * TB)),
            (6, "dc1", None),
        ]);
        let report = compute(&r, 3, None).expect("valid layout");
        spread_ok(&report, &r, 2);
        assert!(!report.partitions_per_node.contains_key(&id(6)));
        assert_eq!(report.partitions_per_node.values().sum::<usize>(), 3 * P);
        assert!(report.notes.iter().any(|n| n.starts_with("only 2 zone(s)")));
    }

    #[test]
    fn a_small_zone_still_holds_every_partition_and_bounds_usable_capacity() {
        let r = roles(&[
            (1, "big", Some(10 * TB)),
            (2, "big", Some(10 * TB)),
            (3, "small", Some(100 * GB)),
        ]);
        let report = compute(&r, 3, None).expect("valid layout");
        assert_eq!(report.partitions_per_node[&id(3)], P);
        assert_eq!(report.usable_capacity, 100 * GB);
        spread_ok(&report, &r, 2);
        let note = format!(
            "zone small holds one replica of every partition although its capacity is small, \
             because replicas are spread over as many zones as possible; usable capacity is \
             limited by node {}",
            id(3).short()
        );
        assert!(
            report.notes.iter().any(|n| n.starts_with(&note)),
            "{:?}",
            report.notes
        );
    }

    #[test]
    fn a_huge_node_is_capped_at_every_partition_once() {
        let r = roles(&[
            (1, "dc1", Some(10 * TB)),
            (2, "dc2", Some(TB)),
            (3, "dc3", Some(TB)),
        ]);
        let report = compute(&r, 2, None).expect("valid layout");
        assert_eq!(report.partitions_per_node[&id(1)], P);
        assert_eq!(report.partitions_per_node[&id(2)], P / 2);
        assert_eq!(report.partitions_per_node[&id(3)], P / 2);
        assert_eq!(report.usable_capacity, 2 * TB);
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.contains(&id(1).short()) && n.contains("holds all 256 partitions")),
            "{:?}",
            report.notes
        );
    }

    #[test]
    fn recomputing_moves_nothing_and_removed_nodes_count_as_outgoing() {
        let mut r = roles(&[
            (1, "a", Some(TB)),
            (2, "a", Some(3 * TB)),
            (3, "b", Some(2 * TB)),
            (4, "c", Some(700 * GB)),
            (5, "c", Some(TB)),
        ]);
        let first = compute(&r, 2, None).expect("valid layout");
        let again = compute(&r, 2, Some(&first.assignment)).expect("valid layout");
        assert_eq!(again.moves, 0);
        assert_eq!(again.assignment, first.assignment);

        let held = first.partitions_per_node[&id(4)];
        r.remove(&id(4));
        let after = compute(&r, 2, Some(&first.assignment)).expect("valid layout");
        assert_eq!(after.moves_per_node[&id(4)].outgoing, held);
        assert_eq!(after.moves, held);
        let incoming: usize = after.moves_per_node.values().map(|m| m.incoming).sum();
        let outgoing: usize = after.moves_per_node.values().map(|m| m.outgoing).sum();
        assert_eq!((incoming, outgoing), (held, held));
    }

    #[test]
    fn invalid_layouts_say_what_to_change() {
        let r = roles(&[(1, "a", Some(TB)), (2, "b", Some(0)), (3, "c", None)]);
        assert_eq!(
            compute(&r, 1, None),
            Err(LayoutError::ZeroCapacity {
                node: id(2).short()
            })
        );
        let r = roles(&[(1, "a", Some(TB)), (2, "b", Some(TB)), (3, "c", None)]);
        assert_eq!(
            compute(&r, 3, None),
            Err(LayoutError::NotEnoughNodes {
                rf: 3,
                storage: 2,
                missing: 1
            })
        );
        for rf in [0, MAX_REPLICATION_FACTOR + 1] {
            assert_eq!(
                compute(&r, rf, None),
                Err(LayoutError::BadReplicationFactor {
                    rf,
                    max: MAX_REPLICATION_FACTOR
                })
            );
        }
        let gateways = roles(&[(1, "a", None)]);
        assert!(matches!(
            compute(&gateways, 1, None),
            Err(LayoutError::NotEnoughNodes { storage: 0, .. })
        ));
    }

    /// With rf 1 the shares are 253.2 and 2.8: the larger remainder is the
    /// small node's, but 3 partitions would load it 3 / 2.8 times its
    /// share, against 254 / 253.2 for the big node, so usable capacity wants
    /// the big node rounded up.
    #[test]
    fn rounding_up_goes_where_it_costs_least_usable_capacity() {
        let r = roles(&[(1, "a", Some(2532 * GB)), (2, "b", Some(28 * GB))]);
        let report = compute(&r, 1, None).expect("valid layout");
        assert_eq!(report.partitions_per_node[&id(1)], 254);
        assert_eq!(report.partitions_per_node[&id(2)], 2);
        assert_eq!(report.usable_capacity, 2532 * GB * 256 / 254);
    }

    /// Once a layout exists, which nodes round up follows what they hold:
    /// the node that already had the ceiling keeps it, whatever its rank.
    #[test]
    fn rounding_keeps_previous_counts_when_usable_capacity_allows() {
        let r = roles(&[(1, "a", Some(TB)), (2, "b", Some(TB)), (3, "c", Some(TB))]);
        let first = compute(&r, 1, None).expect("valid layout");
        // 256 / 3: one node rounds up; by rank the lowest id.
        assert_eq!(first.partitions_per_node[&id(1)], 86);
        let mut previous = first.assignment.clone();
        // Move one partition from node 1 to node 3 by hand.
        let p = previous
            .iter()
            .position(|nodes| nodes == &vec![id(1)])
            .expect("node 1 holds partitions");
        previous[p] = vec![id(3)];
        let again = compute(&r, 1, Some(&previous)).expect("valid layout");
        assert_eq!(again.moves, 0);
        assert_eq!(again.partitions_per_node[&id(3)], 86);
        assert_eq!(again.partitions_per_node[&id(1)], 85);
    }

    #[test]
    fn water_fill_caps_nodes_at_every_partition() {
        let (shares, over) = water_fill(&[10.0, 1.0, 1.0], 2.0 * P as f64);
        assert_eq!(shares, vec![P as f64, P as f64 / 2.0, P as f64 / 2.0]);
        assert_eq!(over, vec![true, false, false]);
    }
}
