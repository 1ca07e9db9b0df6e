//! Cluster events: what changed between two status snapshots of a node,
//! in plain words.
//!
//! Agents compare their own status every second and keep what changed in
//! their event log (so an operator who opens the console the morning after
//! sees the night); the function is pure, shared here so its wording is
//! tested once.

use serde::{Deserialize, Serialize};

use crate::rpc::{ClusterStatus, NodeStatus};

/// One thing that happened, as a node saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterEvent {
    /// Unix milliseconds (the observing node's wall clock).
    pub at_ms: u64,
    /// Something went wrong (shown in red), rather than back to normal.
    pub warn: bool,
    pub text: String,
}

fn zone_of(n: &NodeStatus) -> String {
    n.role
        .as_ref()
        .map(|r| format!(" (zone {})", r.zone))
        .unwrap_or_default()
}

/// What changed from `old` to `new`, as (warn, text) pairs.
pub fn changes(old: &ClusterStatus, new: &ClusterStatus) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    for n in &new.nodes {
        let before = old.nodes.iter().find(|o| o.id == n.id);
        match (before.map(|b| b.up), n.up) {
            // Known up and now down, or first known already down.
            (Some(true) | None, false) if n.down_since_ms.is_some() => out.push((
                true,
                format!(
                    "node {}{} is down: it stopped answering pings",
                    n.id.short(),
                    zone_of(n)
                ),
            )),
            (Some(false), true) => out.push((
                false,
                format!("node {}{} is up again", n.id.short(), zone_of(n)),
            )),
            (None, true) if !n.is_self => {
                out.push((false, format!("node {} joined", n.id.short())))
            }
            _ => {}
        }
        let skew = |n: &NodeStatus| {
            n.clock_offset_ms
                .and_then(|o| crate::clock::skew_warning(&n.id.short(), o))
        };
        match (before.and_then(skew), skew(n)) {
            (None, Some(w)) => out.push((true, w)),
            (Some(_), None) if n.clock_offset_ms.is_some() => out.push((
                false,
                format!(
                    "node {}'s clock agrees with the cluster's again",
                    n.id.short()
                ),
            )),
            _ => {}
        }
        for d in &n.data_dirs {
            let was_full = before
                .and_then(|b| b.data_dirs.iter().find(|o| o.path == d.path))
                .is_some_and(|o| o.full.is_some());
            match (&d.full, was_full) {
                (Some(why), false) => out.push((
                    true,
                    format!(
                        "data directory {} of node {} takes no new blocks: {why}",
                        d.path,
                        n.id.short()
                    ),
                )),
                (None, true) => out.push((
                    false,
                    format!(
                        "data directory {} of node {} takes new blocks again",
                        d.path,
                        n.id.short()
                    ),
                )),
                _ => {}
            }
        }
    }
    if new.layout_version != old.layout_version {
        out.push((false, format!("layout v{} applied", new.layout_version)));
    }
    match (old.live_versions.len() > 1, new.live_versions.len() > 1) {
        (false, true) => out.push((
            false,
            format!("data moving to layout v{}", new.layout_version),
        )),
        (true, false) => out.push((
            false,
            format!("data in place for layout v{}", new.layout_version),
        )),
        _ => {}
    }
    let (h0, h1) = (&old.health, &new.health);
    if h1.unavailable > 0 && h0.unavailable == 0 {
        let down: Vec<String> = new
            .nodes
            .iter()
            .filter(|n| !n.up && n.role.is_some())
            .map(|n| format!("{}{}", n.id.short(), zone_of(n)))
            .collect();
        out.push((
            true,
            format!(
                "{} of 256 parts of the data lost enough copies to be read or written (quorum lost); nodes down: {}",
                h1.unavailable,
                down.join(", ")
            ),
        ));
    } else if h1.unavailable == 0 && h0.unavailable > 0 {
        out.push((
            false,
            "every part of the data can be read and written again".into(),
        ));
    }
    if h1.degraded == 0 && h1.unavailable == 0 && (h0.degraded > 0 || h0.unavailable > 0) {
        out.push((
            false,
            "every part of the data has all its copies again".into(),
        ));
    }
    let (b0, b1) = (&old.blocks, &new.blocks);
    if b1.scrub_corrupted > b0.scrub_corrupted {
        out.push((
            true,
            format!(
                "scrub found {} corrupted block(s) on node {}; they are fetched again from other nodes",
                b1.scrub_corrupted - b0.scrub_corrupted,
                new.node.short()
            ),
        ));
    }
    if b0.scrub_running && !b1.scrub_running {
        out.push((
            false,
            format!("scrub finished: {} blocks checked", b1.scrub_checked),
        ));
    }
    if let Some(s) = &new.last_snapshot
        && old.last_snapshot.as_ref().map(|o| o.at_ms) != Some(s.at_ms)
    {
        out.push((
            false,
            format!(
                "metadata snapshot written on node {}: {} entries in {:.1} s",
                new.node.short(),
                s.entries,
                s.duration_ms as f64 / 1000.0
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeId;
    use crate::layout::NodeRole;
    use crate::layout::cluster::RingHealth;

    fn node(b: u8, up: bool) -> NodeStatus {
        NodeStatus {
            id: NodeId([b; 32]),
            addr: None,
            is_self: b == 1,
            up,
            down_since_ms: (!up).then_some(1),
            last_seen_ms: None,
            rtt_ms: None,
            agent_version: None,
            role: Some(NodeRole {
                zone: format!("dc{b}"),
                capacity: Some(1),
            }),
            staged: None,
            disk: None,
            layout_version: None,
            partitions: 256,
            data_dirs: Vec::new(),
            clock_offset_ms: Some(0),
        }
    }

    fn status(ups: [bool; 3], health: RingHealth) -> ClusterStatus {
        ClusterStatus {
            node: NodeId([1; 32]),
            agent_version: "0".into(),
            layout_version: 1,
            replication_factor: 3,
            health,
            nodes: (1..=3).map(|b| node(b, ups[b as usize - 1])).collect(),
            tables: Vec::new(),
            live_versions: vec![1],
            nodes_synced: 0,
            nodes_in_transition: 0,
            blocks: Default::default(),
            last_snapshot: None,
            endpoints: None,
            metadata_engine: None,
        }
    }

    fn health(healthy: usize, degraded: usize, unavailable: usize) -> RingHealth {
        RingHealth {
            healthy,
            degraded,
            unavailable,
        }
    }

    #[test]
    fn a_bad_night_reads_as_what_happened() {
        let ok = status([true; 3], health(256, 0, 0));
        let one = status([true, false, true], health(0, 256, 0));
        let two = status([true, false, false], health(0, 0, 256));
        let texts = |a: &ClusterStatus, b: &ClusterStatus| changes(a, b);
        assert_eq!(
            texts(&ok, &one),
            vec![(
                true,
                "node 0202020202020202 (zone dc2) is down: it stopped answering pings".into()
            )]
        );
        let lost = texts(&one, &two);
        assert_eq!(lost.len(), 2, "{lost:?}");
        assert!(lost[1].0);
        assert_eq!(
            lost[1].1,
            "256 of 256 parts of the data lost enough copies to be read or written (quorum lost); nodes down: 0202020202020202 (zone dc2), 0303030303030303 (zone dc3)"
        );
        let back = texts(&two, &one);
        assert!(back.contains(&(false, "node 0303030303030303 (zone dc3) is up again".into())));
        assert!(back.contains(&(
            false,
            "every part of the data can be read and written again".into()
        )));
        let healed = texts(&one, &ok);
        assert!(healed.contains(&(
            false,
            "every part of the data has all its copies again".into()
        )));
        // Nothing changed, nothing said.
        assert!(texts(&ok, &ok).is_empty());
    }

    #[test]
    fn clocks_layouts_moves_and_full_disks_are_events() {
        let before = status([true; 3], health(256, 0, 0));
        let mut after = before.clone();
        after.nodes[2].clock_offset_ms = Some(420_000);
        after.layout_version = 2;
        after.live_versions = vec![1, 2];
        after.nodes[0].data_dirs = vec![crate::rpc::DataDirStatus {
            path: "/d".into(),
            capacity: None,
            read_only: false,
            blocks: 0,
            bytes: 0,
            counted: true,
            fs_total: 0,
            fs_free: 0,
            full: Some("file system nearly full".into()),
        }];
        let c = changes(&before, &after);
        let has = |t: &str| c.iter().any(|(_, x)| x.contains(t));
        assert!(
            has("node 0303030303030303's clock is 7 min ahead of the cluster's: set up NTP"),
            "{c:?}"
        );
        assert!(has("layout v2 applied"), "{c:?}");
        assert!(has("data moving to layout v2"), "{c:?}");
        assert!(
            has(
                "data directory /d of node 0101010101010101 takes no new blocks: file system nearly full"
            ),
            "{c:?}"
        );
        let mut fixed = after.clone();
        fixed.nodes[2].clock_offset_ms = Some(10);
        fixed.live_versions = vec![2];
        let c = changes(&after, &fixed);
        let has = |t: &str| c.iter().any(|(_, x)| x.contains(t));
        assert!(
            has("node 0303030303030303's clock agrees with the cluster's again"),
            "{c:?}"
        );
        assert!(has("data in place for layout v2"), "{c:?}");
    }
}
