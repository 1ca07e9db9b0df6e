//! The console rendered with ratatui's `TestBackend` from fixed cluster
//! states, compared with the text snapshots in `snapshots/` (run with
//! `HANGAR_BLESS=1` to rewrite them after a deliberate change and review
//! the diff), and driven key by key as an operator would.

use std::collections::BTreeSet;

use hangar_common::NodeId;
use hangar_common::layout::NodeRole;
use hangar_common::layout::cluster::{ClusterLayout, StagedRole};
use hangar_common::rpc::{
    BlockWorkerStats, BucketInfo, ClusterStatus, KeyGrant, KeyInfo, LayoutView, NodeStatus,
    WorkerInfo,
};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyModifiers};

use super::*;

/// A fixed "now": 2026-11-25 12:00:00 UTC.
const NOW: u64 = 1_795_608_000_000;
const TB: u64 = 1_000_000_000_000;

fn id(b: u8) -> NodeId {
    NodeId([b; 32])
}

fn role(zone: &str, cap: u64) -> StagedRole {
    StagedRole::Set(NodeRole {
        zone: zone.into(),
        capacity: Some(cap),
    })
}

fn node(b: u8, l: &ClusterLayout, up: bool) -> NodeStatus {
    let partitions = (0..256).filter(|p| l.nodes_of(*p).contains(&id(b))).count();
    NodeStatus {
        id: id(b),
        addr: Some(format!("10.0.0.{b}:3901")),
        is_self: b == 1,
        up,
        down_since_ms: (!up).then_some(NOW - 300_000),
        last_seen_ms: Some(NOW - 300_000),
        rtt_ms: Some(1.5 * b as f64),
        agent_version: Some("0.1.0".into()),
        role: l.roles.get(&id(b)).cloned(),
        staged: None,
        disk: Some(hangar_common::rpc::DiskUsage {
            total: 2 * TB,
            free: TB / 2 * b as u64,
        }),
        layout_version: Some(l.version),
        partitions,
        data_dirs: data_dirs(b),
        clock_offset_ms: Some(0),
    }
}

/// Node 1 has two disks, the smaller one full; the others one each.
fn data_dirs(b: u8) -> Vec<hangar_common::rpc::DataDirStatus> {
    let dir = |path: &str, capacity: Option<u64>, bytes: u64, full: Option<&str>| {
        hangar_common::rpc::DataDirStatus {
            path: path.into(),
            capacity,
            read_only: false,
            blocks: bytes >> 20,
            bytes,
            counted: true,
            fs_total: 2 * TB,
            fs_free: 2 * TB - bytes,
            full: full.map(str::to_string),
        }
    };
    if b == 1 {
        vec![
            dir(
                "/mnt/disk1/hangar",
                Some(TB / 2),
                TB / 2,
                Some("capacity reached (500 GB of 500 GB)"),
            ),
            dir("/mnt/disk2/hangar", Some(TB), TB / 4, None),
        ]
    } else {
        vec![dir("/var/lib/hangar/data", None, TB / 8 * b as u64, None)]
    }
}

/// The states the snapshots show.
#[derive(Clone, Copy, PartialEq)]
enum Scene {
    /// Three nodes in three zones, all up.
    Healthy,
    /// Node 3 down, a fourth node staged in dc2 (with its preview), data
    /// still moving from the previous layout, node 2's clock 5 min behind.
    Busy,
}

fn app(scene: Scene) -> App {
    let mut l = ClusterLayout::new(3);
    for (b, z) in [(1, "dc1"), (2, "dc2"), (3, "dc3")] {
        l.stage(id(b), role(z, TB), 1, id(1));
    }
    let (mut l, _) = l.apply(1).expect("first layout");
    let busy = scene == Scene::Busy;
    let mut nodes = vec![node(1, &l, true), node(2, &l, true), node(3, &l, !busy)];
    if busy {
        nodes[1].clock_offset_ms = Some(-300_000);
        l.stage(id(4), role("dc2", 2 * TB), 2, id(1));
        let mut n4 = node(4, &l, true);
        n4.addr = Some("10.0.0.4:3901".into());
        nodes.push(n4);
    }
    let preview = busy.then(|| l.preview());
    let health = l.health(|n| nodes.iter().any(|s| s.id == *n && s.up));
    let status = ClusterStatus {
        node: id(1),
        agent_version: "0.1.0".into(),
        layout_version: l.version,
        replication_factor: 3,
        health,
        nodes,
        tables: Vec::new(),
        live_versions: if busy { vec![1, 2] } else { vec![1] },
        nodes_synced: if busy { 1 } else { 0 },
        nodes_in_transition: if busy { 3 } else { 0 },
        blocks: BlockWorkerStats {
            scrub_running: busy,
            scrub_checked: 1200,
            scrub_total: 4800,
            fetched: 310,
            ..Default::default()
        },
        last_snapshot: None,
        endpoints: Some(hangar_common::rpc::Endpoints {
            s3: "http://10.0.0.1:3900".into(),
            web: "http://10.0.0.1:3902".into(),
            region: "hangar".into(),
        }),
        metadata_engine: Some("sled".into()),
    };
    let grant = |bucket: &str| KeyGrant {
        key_id: "GK0123456789abcdef01234567".into(),
        key_name: "laptop".into(),
        bucket: bucket.into(),
        read: true,
        write: true,
        owner: false,
    };
    let mut a = App::new("10.0.0.1:3901");
    a.now_ms = NOW;
    a.clock = || NOW;
    a.data = Data {
        status: Some(status),
        layout: Some(LayoutView { layout: l, preview }),
        buckets: Some(vec![
            BucketInfo {
                name: "photos".into(),
                id: "ab".repeat(32),
                created_ms: NOW - 86_400_000,
                keys: vec![grant("photos")],
                objects: 1234,
                bytes: 5_600_000_000,
                quota_max_size: Some(100_000_000_000),
                quota_max_objects: None,
                website: false,
                versioning: Some("Enabled".into()),
                noncurrent_objects: 40,
                noncurrent_bytes: 310_000_000,
                public: Vec::new(),
            },
            BucketInfo {
                name: "site".into(),
                id: "cd".repeat(32),
                created_ms: NOW - 3_600_000,
                keys: Vec::new(),
                objects: 12,
                bytes: 80_000,
                quota_max_size: None,
                quota_max_objects: None,
                website: true,
                versioning: None,
                noncurrent_objects: 0,
                noncurrent_bytes: 0,
                public: vec![
                    "ACL: everyone may READ".into(),
                    "website: served to anyone".into(),
                ],
            },
        ]),
        keys: Some(vec![KeyInfo {
            access_key_id: "GK0123456789abcdef01234567".into(),
            name: "laptop".into(),
            secret_access_key: None,
            buckets: vec![grant("photos")],
        }]),
        workers: [
            "block-resync",
            "block-scrub",
            "version-cleanup",
            "table-sync",
            "lifecycle",
        ]
        .iter()
        .map(|n| WorkerInfo {
            name: n.to_string(),
            paused: busy && *n == "block-scrub",
            progress: format!("{n}: 0 errors"),
        })
        .collect(),
        tables_error: None,
        cluster_events: Vec::new(),
    };
    if busy {
        for (i, (warn, t)) in [
            (false, "layout v1 applied"),
            (true, "node 0303030303030303 is down"),
            (false, "node 0404040404040404 joined"),
        ]
        .into_iter()
        .enumerate()
        {
            a.events.push_front(Event {
                at_ms: NOW - 60_000 + i as u64 * 1000,
                warn,
                text: t.into(),
            });
        }
    }
    a
}

fn render(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    t.draw(|f| app.draw(f)).expect("draw");
    let buf = t.backend().buffer().clone();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Compare with `snapshots/NAME.txt` (rewrite it with HANGAR_BLESS=1).
fn snapshot(name: &str, screen: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/tui/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("HANGAR_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("snapshot dir");
        std::fs::write(&path, screen).expect("write snapshot");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("no snapshot {}: run with HANGAR_BLESS=1", path.display()));
    assert!(
        want == screen,
        "{name} differs from {} (HANGAR_BLESS=1 rewrites it):\n--- want\n{want}\n--- got\n{screen}",
        path.display()
    );
}

fn key(a: &mut App, code: KeyCode) {
    a.update(Msg::Key(code, KeyModifiers::NONE));
}

fn typed(a: &mut App, text: &str) {
    for c in text.chars() {
        key(a, KeyCode::Char(c));
    }
}

#[test]
fn every_view_at_both_sizes_matches_its_snapshot() {
    for (scene, label) in [(Scene::Healthy, "healthy"), (Scene::Busy, "busy")] {
        for tab in Tab::ALL {
            let mut a = app(scene);
            a.tab = tab;
            if tab == Tab::WhatIf && scene == Scene::Busy {
                a.lost = BTreeSet::from([id(2), id(3)]);
            }
            for (w, h) in [(80, 24), (160, 48)] {
                let name = format!(
                    "{label}-{}-{w}x{h}",
                    tab.title().to_lowercase().replace([' ', '&'], "")
                );
                snapshot(&name, &render(&a, w, h));
            }
        }
    }
}

#[test]
fn the_views_say_what_matters() {
    let a = app(Scene::Busy);
    let s = render(&a, 160, 48);
    assert!(s.contains("3/4 nodes up"), "{s}");
    assert!(s.contains("✗ DOWN since 5 min ago"), "{s}");
    assert!(s.contains("rebalancing to layout v1: 1 of 3 nodes"), "{s}");
    assert!(s.contains("scrub: 1200 of 4800 blocks checked"), "{s}");
    // A wrong clock: in its own column when there is room, in the state
    // otherwise; the clocks that are right say so.
    assert!(s.contains("5 min behind"), "{s}");
    assert_eq!(s.matches(" ok ").count(), 3, "{s}");
    let s = render(&a, 80, 24);
    assert!(s.contains("! up, clock 5 min behind"), "{s}");

    let mut a = app(Scene::Busy);
    a.tab = Tab::Layout;
    let s = render(&a, 160, 48);
    assert!(s.contains("→ dc2 2 TB"), "staged role shown: {s}");
    assert!(s.contains("Preview of v2: usable capacity"), "{s}");
    assert!(s.contains("dc2  02020202 ████"), "ring row per node: {s}");
    assert!(
        s.contains("dc3  03030303✗░░░░"),
        "a node down is marked on the ring: {s}"
    );
    assert!(
        s.contains("0303030303030303 ✗ DOWN dc3"),
        "state in the layout: {s}"
    );
    assert!(
        s.contains("health        !!!!"),
        "degraded partitions marked: {s}"
    );

    // What-if counts the node really down (3): nothing picked is "as
    // things are now"; picking one more says what losing it would do.
    let mut a = app(Scene::Busy);
    a.tab = Tab::WhatIf;
    let s = render(&a, 160, 48);
    assert!(s.contains("Already down: 0303030303030303."), "{s}");
    assert!(s.contains("As things are now, of the 256 parts"), "{s}");
    assert!(
        s.contains("would keep serving"),
        "one zone of three down: {s}"
    );
    a.lost = BTreeSet::from([id(2)]);
    let s = render(&a, 160, 48);
    assert!(
        s.contains("If node 0202020202020202 went down as well, of the 256 parts of the data (3 copies each):"),
        "{s}"
    );
    assert!(
        s.contains("256 would lose a copy, 256 could no longer be written, 256 no longer read"),
        "{s}"
    );
    assert!(s.contains("would NOT keep serving"), "{s}");
    a.lost = BTreeSet::from([id(3)]);
    assert!(
        render(&a, 160, 48).contains("It is down already; as things are now"),
        "picking a node that is down"
    );
}

#[test]
fn lost_quorum_is_not_a_lost_connection_and_the_advice_names_the_nodes() {
    let mut a = app(Scene::Healthy);
    let mut next = a.data.clone();
    if let Some(st) = &mut next.status {
        for n in &mut st.nodes[1..] {
            n.up = false;
            n.down_since_ms = Some(NOW);
        }
        st.health.healthy = 0;
        st.health.unavailable = 256;
    }
    // Buckets and keys need a quorum: their read fails, the rest is fresh.
    next.buckets = None;
    next.keys = None;
    next.tables_error = Some("table bucket: quorum not reached for partition 7".into());
    a.update(Msg::Refreshed(Box::new(Ok(next))));
    let s = render(&a, 80, 24);
    assert!(!s.contains("Not connected"), "{s}");
    assert!(s.contains("✗ DOWN"), "{s}");
    assert!(s.contains("unavailable"), "{s}");
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("Start node 0202020202020202 (zone dc2) and node 0303030303030303 (zone dc3) again. One gone for good? Replace it: Layout (3), select it, d, a."),
        "{s}"
    );
    // The last known buckets stay listed.
    assert_eq!(a.buckets().len(), 2);
    // One back: degraded, the advice names the other.
    let mut next = a.data.clone();
    if let Some(st) = &mut next.status {
        st.nodes[1].up = true;
        st.health.unavailable = 0;
        st.health.degraded = 256;
    }
    next.tables_error = None;
    a.update(Msg::Refreshed(Box::new(Ok(next))));
    let s = render(&a, 80, 24);
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("All works, with fewer copies: start node 0303030303030303 (zone dc3) again. Gone for good? Replace it"),
        "{s}"
    );
    // Switching node offers one that is up first.
    a.error = Some("connection refused".into());
    key(&mut a, KeyCode::Char('s'));
    assert_eq!(a.outbox.pop(), Some(Action::Switch("10.0.0.2:3901".into())));
}

#[test]
fn a_new_keys_secret_is_whole_at_80_columns_and_stays_until_enter() {
    let mut a = app(Scene::Healthy);
    let secret = "0123456789abcdef".repeat(4);
    a.update(Msg::Done(Box::new(Outcome {
        result: Ok("key laptop created".into()),
        secret: Some(("GK0123456789abcdef01234567".into(), secret.clone())),
        output: None,
        then: None,
    })));
    let s = render(&a, 80, 24);
    assert!(s.contains(&secret), "the whole secret on one line: {s}");
    assert!(s.contains("aws_secret_access_key"), "{s}");
    assert!(s.contains("http://10.0.0.1:3900"), "{s}");
    snapshot("secret-80x24", &s);
    // A stray key does not close it.
    key(&mut a, KeyCode::Char('x'));
    key(&mut a, KeyCode::Esc);
    assert!(matches!(a.overlay, Overlay::Secret { .. }));
    // w writes it to a file (the runner does, mode 0600).
    key(&mut a, KeyCode::Char('w'));
    match a.outbox.pop() {
        Some(Action::WriteSecret { path, text }) => {
            assert_eq!(
                path.to_str(),
                Some("hangar-key-GK0123456789abcdef01234567.txt")
            );
            assert!(text.contains(&secret));
        }
        other => panic!("expected a file write, got {other:?}"),
    }
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.overlay, Overlay::None);
    // s in the key list shows it again.
    a.tab = Tab::Buckets;
    key(&mut a, KeyCode::Right);
    key(&mut a, KeyCode::Char('s'));
    assert_eq!(
        a.outbox.pop(),
        Some(Action::KeySecret("GK0123456789abcdef01234567".into()))
    );
}

#[test]
fn command_line_changes_ask_like_their_views() {
    let mut a = app(Scene::Healthy);
    // The view's question for deleting the key...
    a.tab = Tab::Buckets;
    key(&mut a, KeyCode::Right);
    key(&mut a, KeyCode::Char('d'));
    let Overlay::Confirm {
        lines: from_view, ..
    } = a.overlay.clone()
    else {
        panic!("no confirmation from the view")
    };
    key(&mut a, KeyCode::Char('n'));
    // ...is the question of `:key delete`, by name or id.
    for line in ["key delete laptop", "key delete GK0123456789abcdef01234567"] {
        key(&mut a, KeyCode::Char(':'));
        typed(&mut a, line);
        key(&mut a, KeyCode::Enter);
        let Overlay::Confirm { lines, action } = a.overlay.clone() else {
            panic!("`:{line}` ran without asking")
        };
        assert_eq!(lines, from_view);
        assert!(a.outbox.is_empty(), "nothing runs before y");
        key(&mut a, KeyCode::Char('y'));
        assert_eq!(a.outbox.pop(), Some(action));
        a.busy = None;
    }
    // Others that change something ask too; reads run at once.
    for (line, asks) in [
        ("layout revert", "Drop every staged layout change?"),
        ("bucket create new", "Run `hangar bucket create new`?"),
        (
            "layout remove 0202",
            "Stage the removal of node 0202020202020202?",
        ),
    ] {
        key(&mut a, KeyCode::Char(':'));
        typed(&mut a, line);
        key(&mut a, KeyCode::Enter);
        let Overlay::Confirm { lines, .. } = a.overlay.clone() else {
            panic!("`:{line}` ran without asking")
        };
        assert_eq!(lines[0], asks);
        key(&mut a, KeyCode::Esc);
        assert!(a.outbox.is_empty());
    }
    key(&mut a, KeyCode::Char(':'));
    typed(&mut a, "status");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.outbox.pop(), Some(Action::Cli(vec!["status".into()])));
}

#[test]
fn a_down_nodes_last_known_values_are_dimmed_and_said_so() {
    let mut a = app(Scene::Busy);
    // Select node 3 (down) in the Cluster view.
    key(&mut a, KeyCode::Down);
    key(&mut a, KeyCode::Down);
    let mut t = Terminal::new(TestBackend::new(160, 48)).expect("test terminal");
    t.draw(|f| a.draw(f)).expect("draw");
    let buf = t.backend().buffer().clone();
    let line = |y: u16| {
        (0..buf.area.width)
            .map(|x| buf[(x, y)].symbol())
            .collect::<String>()
    };
    let dimmed = |text: &str| {
        let (y, l) = (0..buf.area.height)
            .map(|y| (y, line(y)))
            .find(|(_, l)| l.contains(text))
            .unwrap_or_else(|| panic!("no {text:?}"));
        let x = l[..l.find(text).expect("found")].chars().count() as u16;
        buf[(x, y)].modifier.contains(ratatui::style::Modifier::DIM)
    };
    // Its disk and round trip as last reported: dimmed; a node up: not.
    assert!(dimmed("500 GB of 2 TB"));
    assert!(dimmed("4.5 ms"));
    assert!(!dimmed("3.0 ms"));
    let s = render(&a, 160, 48);
    assert!(
        s.contains("Data directories of 0303030303030303 · last known, the node is down"),
        "{s}"
    );
}

/// Five nodes in zones with long names, one down, at 80x24.
fn houses() -> App {
    let zones = [
        "house-martin",
        "house-dupont",
        "house-leroux",
        "house-martin",
        "house-garcia",
    ];
    let mut l = ClusterLayout::new(3);
    for (i, z) in zones.iter().enumerate() {
        l.stage(id(i as u8 + 1), role(z, TB), 1, id(1));
    }
    let (l, _) = l.apply(1).expect("first layout");
    let mut a = app(Scene::Healthy);
    let nodes: Vec<NodeStatus> = (1..=5).map(|b| node(b, &l, b != 4)).collect();
    if let Some(st) = &mut a.data.status {
        st.health = l.health(|n| nodes.iter().any(|s| s.id == *n && s.up));
        st.nodes = nodes;
    }
    if let Some(v) = &mut a.data.layout {
        v.layout = l;
        v.preview = None;
    }
    a
}

#[test]
fn at_80x24_zone_names_states_and_key_hints_are_whole() {
    for tab in [Tab::Cluster, Tab::WhatIf, Tab::Layout] {
        let mut a = houses();
        a.tab = tab;
        let s = render(&a, 80, 24);
        snapshot(
            &format!(
                "houses-{}-80x24",
                tab.title().to_lowercase().replace([' ', '&'], "")
            ),
            &s,
        );
        for zone in [
            "house-martin",
            "house-dupont",
            "house-leroux",
            "house-garcia",
        ] {
            assert!(s.contains(zone), "{zone} cut in {}:\n{s}", tab.title());
        }
        assert!(s.contains("✗ DOWN"), "{s}");
        assert!(s.contains("? help · q quit"), "key hints cut:\n{s}");
    }
}

#[test]
fn grants_from_the_key_list_pick_the_bucket() {
    let mut a = app(Scene::Healthy);
    a.tab = Tab::Buckets;
    key(&mut a, KeyCode::Right);
    key(&mut a, KeyCode::Char('g'));
    assert!(render(&a, 80, 24).contains("Grant permissions of key GK0123456789abcdef01234567"));
    // photos is offered first; → picks the next bucket.
    key(&mut a, KeyCode::Right);
    key(&mut a, KeyCode::Enter);
    assert_eq!(
        a.outbox.pop(),
        Some(Action::Grant {
            bucket: "site".into(),
            key: "GK0123456789abcdef01234567".into(),
            perm: PermissionChange {
                read: true,
                write: true,
                owner: false
            },
            allow: true,
        })
    );
}

#[test]
fn the_selection_follows_the_item_not_the_row() {
    let mut a = app(Scene::Healthy);
    // Node 3 selected.
    key(&mut a, KeyCode::Down);
    key(&mut a, KeyCode::Down);
    assert_eq!(a.selected_node(), Some(id(3)));
    // A node that sorts first joins: the cursor stays on node 3.
    let mut next = a.data.clone();
    if let (Some(st), Some(v)) = (&mut next.status, &next.layout) {
        st.nodes.insert(0, node(0, &v.layout, true));
    }
    a.update(Msg::Refreshed(Box::new(Ok(next))));
    assert_eq!(a.selected_node(), Some(id(3)));
    // A bucket created from the view is selected once it shows.
    a.tab = Tab::Buckets;
    key(&mut a, KeyCode::Char('c'));
    typed(&mut a, "music");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.outbox.pop(), Some(Action::BucketCreate("music".into())));
    a.busy = None;
    let mut next = a.data.clone();
    if let Some(b) = &mut next.buckets {
        let mut m = b[0].clone();
        m.name = "music".into();
        b.insert(0, m);
    }
    a.update(Msg::Refreshed(Box::new(Ok(next))));
    assert_eq!(a.selected_bucket(), Some("music".into()));
}

#[test]
fn a_pasted_node_id_wraps_and_the_form_keeps_its_key_hints_at_80x24() {
    let mut a = app(Scene::Healthy);
    a.tab = Tab::Layout;
    key(&mut a, KeyCode::Char('n'));
    let s = render(&a, 80, 24);
    assert!(
        !s.contains("✗"),
        "nothing wrong before anything is typed: {s}"
    );
    assert!(!s.contains("✓ ready"), "not ready either: {s}");
    typed(&mut a, &format!("{}@192.168.100.200:3901", id(9)));
    let s = render(&a, 80, 24);
    assert!(s.contains("↑/↓ next field · Enter go · Esc cancel"), "{s}");
    let flat: String = s
        .lines()
        .map(|l| l.trim_matches(|c| c == '│' || c == ' '))
        .collect();
    assert!(flat.contains(&id(9).to_string()), "the whole id shows: {s}");
}

#[test]
fn esc_never_quits_and_quitting_the_demo_asks() {
    let mut a = app(Scene::Healthy);
    key(&mut a, KeyCode::Esc);
    assert!(!a.quit);
    a.quit_question = Some(vec!["Quit the demo?".into()]);
    key(&mut a, KeyCode::Char('q'));
    assert!(!a.quit);
    assert!(render(&a, 80, 24).contains("Quit the demo?"));
    key(&mut a, KeyCode::Char('n'));
    assert!(!a.quit);
    key(&mut a, KeyCode::Char('q'));
    key(&mut a, KeyCode::Char('y'));
    assert!(a.quit);
}

#[test]
fn onboarding_validates_as_typed_then_stages_the_node() {
    let mut a = app(Scene::Healthy);
    a.tab = Tab::Layout;
    key(&mut a, KeyCode::Char('n'));
    let Overlay::Form(f) = &a.overlay else {
        panic!("no form")
    };
    assert_eq!(f.kind, FormKind::Onboard);
    typed(&mut a, "not-a-node");
    let s = render(&a, 80, 24);
    assert!(s.contains("✗ Node:"), "bad address flagged as typed: {s}");
    // Enter with a problem keeps the form open.
    key(&mut a, KeyCode::Enter);
    assert!(matches!(a.overlay, Overlay::Form(_)));
    for _ in 0.."not-a-node".len() {
        key(&mut a, KeyCode::Backspace);
    }
    let peer = format!("{}@10.0.0.9:3901", id(9));
    typed(&mut a, &peer);
    key(&mut a, KeyCode::Down);
    // ←/→ pick an existing zone.
    key(&mut a, KeyCode::Right);
    key(&mut a, KeyCode::Right);
    key(&mut a, KeyCode::Down);
    typed(&mut a, "1.5T");
    snapshot("form-onboard-80x24", &render(&a, 80, 24));
    key(&mut a, KeyCode::Enter);
    assert_eq!(
        a.outbox,
        vec![Action::Onboard {
            peer: peer.parse().expect("peer"),
            role: NodeRole {
                zone: "dc2".into(),
                capacity: Some(1_500_000_000_000),
            },
        }]
    );
    assert!(a.busy.is_some());
}

#[test]
fn apply_asks_first_with_the_preview() {
    let mut a = app(Scene::Busy);
    a.tab = Tab::Layout;
    key(&mut a, KeyCode::Char('a'));
    let Overlay::Confirm { lines, action } = &a.overlay else {
        panic!("no confirmation")
    };
    assert_eq!(*action, Action::Apply(2));
    assert!(
        lines[1].contains("copies of parts of the data will move"),
        "{lines:?}"
    );
    snapshot("confirm-apply-80x24", &render(&a, 80, 24));
    key(&mut a, KeyCode::Char('n'));
    assert!(a.outbox.is_empty() && a.overlay == Overlay::None);
    key(&mut a, KeyCode::Char('a'));
    key(&mut a, KeyCode::Char('y'));
    assert_eq!(a.outbox, vec![Action::Apply(2)]);
}

#[test]
fn a_move_held_by_a_node_down_can_go_on_without_it() {
    let mut a = app(Scene::Healthy);
    a.tab = Tab::Layout;
    key(&mut a, KeyCode::Char('w'));
    assert!(
        a.overlay == Overlay::None,
        "no move in progress: nothing to ask"
    );
    // Node 3 down while data moves to v1 from an older version.
    let mut a = app(Scene::Busy);
    a.tab = Tab::Layout;
    if let Some(view) = a.data.layout.as_mut() {
        let l = &mut view.layout;
        l.history
            .push(hangar_common::layout::cluster::HistoricVersion {
                version: 0,
                roles: l.roles.clone(),
                assignment: l.assignment.clone(),
            });
        l.ack.insert(id(1), 1);
    }
    key(&mut a, KeyCode::Char('w'));
    let Overlay::Confirm { lines, action } = &a.overlay else {
        panic!("no confirmation")
    };
    assert_eq!(*action, Action::SkipDead(1));
    assert!(lines[0].contains(&id(3).short()), "{lines:?}");
    assert!(
        !lines[0].contains(&id(2).short()),
        "node 2 is up: {lines:?}"
    );
    key(&mut a, KeyCode::Char('y'));
    assert_eq!(a.outbox, vec![Action::SkipDead(1)]);
}

#[test]
fn removing_a_node_shows_the_what_if_first() {
    let mut a = app(Scene::Healthy);
    a.tab = Tab::Layout;
    key(&mut a, KeyCode::Down);
    key(&mut a, KeyCode::Char('d'));
    let Overlay::Confirm { lines, action } = &a.overlay else {
        panic!("no confirmation")
    };
    assert_eq!(*action, Action::Stage(id(2), StagedRole::Remove));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("If node 0202020202020202 went down,")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("256 would lose a copy")),
        "{lines:?}"
    );
    // A node that is down already is said to be.
    let mut a = app(Scene::Busy);
    a.tab = Tab::Layout;
    key(&mut a, KeyCode::Down);
    key(&mut a, KeyCode::Down);
    key(&mut a, KeyCode::Char('d'));
    let Overlay::Confirm { lines, action } = &a.overlay else {
        panic!("no confirmation")
    };
    assert_eq!(*action, Action::Stage(id(3), StagedRole::Remove));
    let text = lines.join("\n");
    assert!(
        text.contains("It is down: its data is copied again"),
        "{text}"
    );
    assert!(!text.contains("went down"), "{text}");
}

#[test]
fn buckets_and_keys_are_managed_from_their_view() {
    let mut a = app(Scene::Healthy);
    key(&mut a, KeyCode::Char('4'));
    assert_eq!(a.tab, Tab::Buckets);
    key(&mut a, KeyCode::Char('c'));
    typed(&mut a, "Bad Name");
    assert!(render(&a, 80, 24).contains("✗ Name:"));
    for _ in 0..8 {
        key(&mut a, KeyCode::Backspace);
    }
    typed(&mut a, "backups");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.outbox.pop(), Some(Action::BucketCreate("backups".into())));
    a.update(Msg::Done(Box::new(Outcome {
        result: Ok("bucket backups created".into()),
        secret: None,
        output: None,
        then: None,
    })));
    // Quotas of the selected bucket (photos).
    key(&mut a, KeyCode::Char('u'));
    key(&mut a, KeyCode::Down);
    typed(&mut a, "5000");
    key(&mut a, KeyCode::Enter);
    assert_eq!(
        a.outbox.pop(),
        Some(Action::Quota {
            bucket: "photos".into(),
            max_size: Some(100_000_000_000),
            max_objects: Some(5000),
        })
    );
    a.busy = None;
    // Grant: the key is picked (the only one, laptop, offered).
    key(&mut a, KeyCode::Char('g'));
    let s = render(&a, 80, 24);
    assert!(s.contains("laptop"), "the key offered: {s}");
    assert!(
        !s.contains("✗"),
        "no problem shown before anything is typed: {s}"
    );
    key(&mut a, KeyCode::Down);
    key(&mut a, KeyCode::Backspace);
    key(&mut a, KeyCode::Backspace);
    typed(&mut a, "ro");
    key(&mut a, KeyCode::Enter);
    assert_eq!(
        a.outbox.pop(),
        Some(Action::Grant {
            bucket: "photos".into(),
            key: "GK0123456789abcdef01234567".into(),
            perm: PermissionChange {
                read: true,
                write: false,
                owner: true
            },
            allow: true,
        })
    );
    a.busy = None;
    // A new key's secret is shown in a window.
    key(&mut a, KeyCode::Right);
    key(&mut a, KeyCode::Char('c'));
    typed(&mut a, "phone");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.outbox.pop(), Some(Action::KeyCreate("phone".into())));
    a.update(Msg::Done(Box::new(Outcome {
        result: Ok("key phone created".into()),
        secret: Some(("GKnew".into(), "s3cr3t".into())),
        output: None,
        then: None,
    })));
    let s = render(&a, 80, 24);
    assert!(s.contains("s3cr3t") && s.contains("Enter closes"), "{s}");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.overlay, Overlay::None, "Enter closes it");
    assert!(!render(&a, 80, 24).contains("s3cr3t"));
}

#[test]
fn workers_pause_and_repairs_ask_first() {
    let mut a = app(Scene::Busy);
    key(&mut a, KeyCode::Char('5'));
    key(&mut a, KeyCode::Down);
    key(&mut a, KeyCode::Char('p'));
    assert_eq!(
        a.outbox.pop(),
        Some(Action::WorkerPause("block-scrub".into(), false)),
        "the paused scrub is resumed"
    );
    a.busy = None;
    key(&mut a, KeyCode::Char('s'));
    key(&mut a, KeyCode::Char('y'));
    assert_eq!(a.outbox.pop(), Some(Action::Repair(Repair::Scrub)));
}

#[test]
fn the_events_view_shows_what_the_node_logged_before_the_console_opened() {
    let mut a = app(Scene::Healthy);
    let mut next = a.data.clone();
    let ev = |at_ms: u64, warn: bool, text: &str| hangar_common::events::ClusterEvent {
        at_ms,
        warn,
        text: text.into(),
    };
    // Logged by the agent yesterday evening and this morning.
    next.cluster_events = vec![
        ev(
            NOW - 3_600_000,
            false,
            "node 0303030303030303 (zone dc3) is up again",
        ),
        ev(
            NOW - 40_000_000,
            true,
            "node 0303030303030303 (zone dc3) is down: it stopped answering pings",
        ),
    ];
    a.update(Msg::Refreshed(Box::new(Ok(next))));
    a.update(Msg::Refreshed(Box::new(Err("connection refused".into()))));
    key(&mut a, KeyCode::Char('6'));
    let s = render(&a, 160, 48);
    let at = |t: &str| s.find(t).unwrap_or_else(|| panic!("no {t:?} in {s}"));
    // Newest first, the console's own event with them; the older ones dated.
    assert!(at("lost the connection") < at("is up again"), "{s}");
    assert!(
        at("is up again") < at("is down: it stopped answering pings"),
        "{s}"
    );
    assert!(
        s.contains("! node 0303030303030303 (zone dc3) is down"),
        "{s}"
    );
}

#[test]
fn events_record_failures_and_help_filter_and_command_work() {
    let mut a = app(Scene::Healthy);
    let mut next = a.data.clone();
    next.cluster_events = vec![hangar_common::events::ClusterEvent {
        at_ms: NOW,
        warn: true,
        text: "node 0303030303030303 is down".into(),
    }];
    a.update(Msg::Refreshed(Box::new(Ok(next))));
    a.update(Msg::Refreshed(Box::new(Err("connection refused".into()))));
    key(&mut a, KeyCode::Char('6'));
    let s = render(&a, 80, 24);
    assert!(s.contains("node 0303030303030303 is down"), "{s}");
    assert!(s.contains("lost the connection"), "{s}");
    assert!(s.contains("Not connected"), "{s}");
    // Filter.
    key(&mut a, KeyCode::Char('/'));
    typed(&mut a, "lost");
    key(&mut a, KeyCode::Enter);
    let s = render(&a, 80, 24);
    assert!(
        s.contains("lost the connection") && !s.contains("is down"),
        "{s}"
    );
    key(&mut a, KeyCode::Esc);
    // Help.
    key(&mut a, KeyCode::Char('?'));
    snapshot("help-events-80x24", &render(&a, 80, 24));
    key(&mut a, KeyCode::Char('x'));
    // Command line.
    key(&mut a, KeyCode::Char(':'));
    typed(&mut a, "bucket list");
    key(&mut a, KeyCode::Enter);
    assert_eq!(
        a.outbox.pop(),
        Some(Action::Cli(vec!["bucket".into(), "list".into()]))
    );
    key(&mut a, KeyCode::Char('q'));
    assert!(a.quit);
}

static CLOCK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(NOW);

#[test]
fn worker_throughput_comes_from_two_refreshes() {
    use std::sync::atomic::Ordering;
    let mut a = app(Scene::Busy);
    a.clock = || CLOCK.load(Ordering::Relaxed);
    let first = a.data.clone();
    a.data.status = None;
    a.update(Msg::Refreshed(Box::new(Ok(first.clone()))));
    let mut next = first;
    if let Some(st) = &mut next.status {
        st.blocks.fetched += 100;
        st.blocks.scrub_checked += 600;
    }
    CLOCK.store(NOW + 2000, Ordering::Relaxed);
    a.update(Msg::Refreshed(Box::new(Ok(next))));
    assert_eq!(a.rates, Some((50.0, 300.0)));
    let s = render(&a, 160, 48);
    assert!(
        s.contains("scrub: 1800 of 4800 blocks checked (300/s)"),
        "{s}"
    );
    assert!(s.contains("0 handed over (50/s)"), "{s}");
}

#[test]
fn applying_a_removal_shows_what_losing_the_node_would_do() {
    // Node 4 joins dc2 and node 2 leaves it: three storage nodes remain.
    let mut a = app(Scene::Busy);
    if let Some(v) = &mut a.data.layout {
        v.layout.stage(id(2), StagedRole::Remove, NOW, id(1));
        v.preview = Some(v.layout.preview());
    }
    a.tab = Tab::Layout;
    key(&mut a, KeyCode::Char('a'));
    let Overlay::Confirm { lines, action } = &a.overlay else {
        panic!("no confirmation: {:?}", a.message)
    };
    assert_eq!(*action, Action::Apply(2));
    assert!(
        lines.iter().any(|l| l.contains("should they fail")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("keep serving")),
        "{lines:?}"
    );

    // Removing a node of three with replication 3 cannot be applied: the
    // console says why instead of asking.
    let mut a = app(Scene::Healthy);
    if let Some(v) = &mut a.data.layout {
        v.layout.stage(id(3), StagedRole::Remove, NOW, id(1));
        v.preview = Some(v.layout.preview());
    }
    a.tab = Tab::Layout;
    key(&mut a, KeyCode::Char('a'));
    assert_eq!(a.overlay, Overlay::None);
    let (err, m) = a.message.clone().expect("a message");
    assert!(err && m.contains("cannot be applied"), "{m}");
}

#[test]
fn the_readme_lists_the_keys_of_the_key_table() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&path).expect("README.md");
    let (begin, end) = ("<!-- keys:begin -->\n", "<!-- keys:end -->");
    let a = text.find(begin).expect("keys:begin marker in README.md") + begin.len();
    let b = text.find(end).expect("keys:end marker in README.md");
    let want = super::keys::readme_list();
    if std::env::var_os("HANGAR_BLESS").is_some() {
        let new = format!("{}{want}{}", &text[..a], &text[b..]);
        std::fs::write(&path, new).expect("write README.md");
        return;
    }
    assert!(
        text[a..b] == want,
        "README.md's key list differs from the key table (HANGAR_BLESS=1 rewrites it):\n{want}"
    );
}

#[test]
fn every_views_key_hints_fit_80_columns() {
    for tab in Tab::ALL {
        let f = super::keys::footer(tab);
        assert!(f.chars().count() <= 80, "{}: {f}", tab.title());
    }
}

#[test]
fn the_buckets_view_says_why_the_selected_bucket_is_public() {
    let mut a = app(Scene::Healthy);
    a.tab = Tab::Buckets;
    let screen = render(&a, 160, 48);
    assert!(screen.contains("│> photos"), "{screen}");
    assert!(
        !screen.contains("is public"),
        "photos is private:\n{screen}"
    );
    key(&mut a, KeyCode::Down);
    let screen = render(&a, 160, 48);
    assert!(
        screen.contains("site is public: ACL: everyone may READ; website: served to anyone"),
        "{screen}"
    );
    // The PUBLIC column, in short, for every bucket.
    assert!(screen.contains("acl web"), "{screen}");
}
