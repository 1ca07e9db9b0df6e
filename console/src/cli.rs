//! The scriptable subcommands: one call, print, exit. Human output is
//! aligned tables with sizes in decimal units; `--json` prints the RPC
//! results as they are, for scripts.

/// Write to standard output; when the reader has gone (`hangar ... | head`)
/// exit quietly with the status a shell gives a process ended by SIGPIPE
/// (141), as `ls | head` does, instead of `print!`'s panic.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_out(format_args!($($arg)*))
    };
}

/// [`out!`] with a newline.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// What [`out!`] calls.
pub fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("hangar: error: cannot write the output: {e}");
        std::process::exit(1);
    }
}

use anyhow::{Context as _, anyhow, bail};
use hangar_common::NodeId;
use hangar_common::layout::cluster::StagedRole;
use hangar_common::layout::{AssignmentReport, NodeRole};
use hangar_common::rpc::{
    AdminClient, BucketInfo, ClusterStatus, KeyGrant, LayoutView, NodeStatus, PermissionChange,
};
use hangar_common::size::{format_bytes, parse_size};

use crate::conn::{Target, ctx};
use crate::{
    BucketCmd, Command, DebugCmd, KeyCmd, KvCmd, LayoutCmd, NodeCmd, RepairCmd, WorkerCmd,
};

pub async fn run(target: &Target, cmd: &Command, json: bool) -> anyhow::Result<()> {
    let (client, _) = target.connect().await?;
    match cmd {
        Command::Demo => bail!("demo runs on its own: hangar demo"),
        Command::Status => {
            let st = client.status(ctx()).await.context("status call failed")?;
            if json {
                print_json(&st)
            } else {
                out!("{}", render_status(&st));
                Ok(())
            }
        }
        Command::Node(NodeCmd::Connect { peer }) => {
            let peer: hangar_common::PeerAddr = peer.parse().map_err(|e| anyhow!("{e}"))?;
            client.connect_node(ctx(), peer.clone()).await??;
            if json {
                print_json(&serde_json::json!({"connected": peer.id, "addr": peer.addr}))
            } else {
                outln!("Connected to node {} at {}.", peer.id.short(), peer.addr);
                outln!(
                    "Next: give it a zone and capacity with `hangar layout assign {} --zone ZONE --capacity SIZE`.",
                    peer.id.short()
                );
                Ok(())
            }
        }
        Command::Layout(l) => layout(&client, l, json).await,
        Command::Debug(DebugCmd::Kv(cmd)) => debug_kv(&client, cmd, json).await,
        Command::Bucket(cmd) => bucket(&client, cmd, json).await,
        Command::Worker(cmd) => {
            let list = match cmd {
                WorkerCmd::List => client.worker_list(ctx()).await?,
                WorkerCmd::Pause { name } => {
                    vec![client.worker_pause(ctx(), name.clone(), true).await??]
                }
                WorkerCmd::Resume { name } => {
                    vec![client.worker_pause(ctx(), name.clone(), false).await??]
                }
            };
            if json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|w| {
                    vec![
                        w.name.clone(),
                        if w.paused {
                            "paused".into()
                        } else {
                            "active".into()
                        },
                        w.progress.clone(),
                    ]
                })
                .collect();
            out!("{}", table(&["WORKER", "STATE", "PROGRESS"], &rows));
            Ok(())
        }
        Command::Repair(cmd) => {
            let what = match cmd {
                RepairCmd::Scrub => hangar_common::rpc::Repair::Scrub,
                RepairCmd::Tables => hangar_common::rpc::Repair::Tables,
                RepairCmd::Blocks => hangar_common::rpc::Repair::Blocks,
            };
            let msg = client.repair(ctx(), what).await??;
            if json {
                print_json(&serde_json::json!({ "started": msg }))
            } else {
                outln!("{msg}");
                Ok(())
            }
        }
        Command::Key(cmd) => key(&client, cmd, json).await,
        Command::Events { limit } => {
            let events = client.events(ctx(), *limit).await?;
            if json {
                return print_json(&events);
            }
            if events.is_empty() {
                outln!("No events recorded on this node yet.");
            }
            for e in &events {
                outln!(
                    "{:>10}  {} {}",
                    ago(e.at_ms),
                    if e.warn { "!" } else { " " },
                    e.text
                );
            }
            Ok(())
        }
        Command::Snapshot => {
            let dir = client.snapshot(ctx()).await??;
            if json {
                print_json(&serde_json::json!({ "snapshot": dir }))
            } else {
                outln!("Metadata snapshot written to {dir}");
                outln!(
                    "To restore: stop the agent, put its files in metadata_dir (its db/ as db/), start it."
                );
                Ok(())
            }
        }
    }
}

fn grants_table(grants: &[KeyGrant]) -> String {
    let rows: Vec<Vec<String>> = grants
        .iter()
        .map(|g| {
            let flag = |b: bool, c: &str| if b { c.to_string() } else { "-".into() };
            vec![
                g.bucket.clone(),
                g.key_id.clone(),
                g.key_name.clone(),
                format!(
                    "{}{}{}",
                    flag(g.read, "R"),
                    flag(g.write, "W"),
                    flag(g.owner, "O")
                ),
            ]
        })
        .collect();
    table(&["BUCKET", "KEY ID", "KEY NAME", "PERMISSIONS"], &rows)
}

fn print_bucket(b: &BucketInfo) {
    outln!(
        "Bucket {} (id {}, created {})",
        b.name,
        &b.id[..16.min(b.id.len())],
        ago(b.created_ms)
    );
    let limit = |v: Option<String>| v.unwrap_or_else(|| "no limit".into());
    outln!(
        "Holds {} objects ({}); quotas: size {}, objects {}{}",
        b.objects,
        format_bytes(b.bytes),
        limit(b.quota_max_size.map(format_bytes)),
        limit(b.quota_max_objects.map(|n| n.to_string())),
        if b.website {
            "; served as a website"
        } else {
            ""
        }
    );
    if b.public.is_empty() {
        outln!("Public: no (only keys allowed on it reach it)");
    } else {
        outln!("Public: yes: {}", b.public.join("; "));
    }
    match &b.versioning {
        Some(state) => outln!(
            "Versioning: {} ({} older versions kept, {})",
            state.to_lowercase(),
            b.noncurrent_objects,
            format_bytes(b.noncurrent_bytes)
        ),
        None => outln!(
            "Versioning: off (hangar bucket versioning {} enable)",
            b.name
        ),
    }
    if b.keys.is_empty() {
        outln!(
            "No key may use it yet: hangar bucket allow {} --key KEY --read --write",
            b.name
        );
    } else {
        out!("{}", grants_table(&b.keys));
    }
}

async fn bucket(client: &AdminClient, cmd: &BucketCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        BucketCmd::Create { name } => {
            let b = client.bucket_create(ctx(), name.clone()).await??;
            if json {
                return print_json(&b);
            }
            outln!("Bucket {name} created.");
            outln!("Give a key access with: hangar bucket allow {name} --key KEY --read --write");
        }
        BucketCmd::Delete { name } => {
            client.bucket_delete(ctx(), name.clone()).await??;
            if json {
                return print_json(&serde_json::json!({"deleted": name}));
            }
            outln!("Bucket {name} deleted.");
        }
        BucketCmd::List => {
            let list = client.bucket_list(ctx()).await??;
            if json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|b| {
                    vec![
                        b.name.clone(),
                        ago(b.created_ms),
                        b.objects.to_string(),
                        format_bytes(b.bytes),
                        b.keys.len().to_string(),
                        if b.website { "yes" } else { "" }.to_string(),
                    ]
                })
                .collect();
            out!(
                "{}",
                table(
                    &["NAME", "CREATED", "OBJECTS", "SIZE", "KEYS", "WEBSITE"],
                    &rows
                )
            );
        }
        BucketCmd::Quota {
            name,
            max_size,
            max_objects,
            clear,
        } => {
            if !clear && max_size.is_none() && max_objects.is_none() {
                bail!("give --max-size, --max-objects or --clear");
            }
            let current = client.bucket_info(ctx(), name.clone()).await??;
            let size = match max_size {
                Some(s) => {
                    Some(parse_size(s).map_err(|e| anyhow::anyhow!("--max-size {s:?}: {e}"))?)
                }
                None if *clear => None,
                None => current.quota_max_size,
            };
            let objects = match max_objects {
                Some(n) => Some(*n),
                None if *clear => None,
                None => current.quota_max_objects,
            };
            let b = client
                .bucket_set_quotas(ctx(), name.clone(), size, objects)
                .await??;
            if json {
                return print_json(&b);
            }
            print_bucket(&b);
        }
        BucketCmd::Versioning { name, state } => {
            let enabled = matches!(state, crate::VersioningState::Enable);
            let b = client
                .bucket_set_versioning(ctx(), name.clone(), enabled)
                .await??;
            if json {
                return print_json(&b);
            }
            print_bucket(&b);
        }
        BucketCmd::Info { name } => {
            let b = client.bucket_info(ctx(), name.clone()).await??;
            if json {
                return print_json(&b);
            }
            print_bucket(&b);
        }
        BucketCmd::Allow {
            name,
            key,
            read,
            write,
            owner,
        }
        | BucketCmd::Deny {
            name,
            key,
            read,
            write,
            owner,
        } => {
            let allow = matches!(cmd, BucketCmd::Allow { .. });
            if !(*read || *write || *owner) {
                bail!("name at least one permission: --read, --write or --owner");
            }
            let perm = PermissionChange {
                read: *read,
                write: *write,
                owner: *owner,
            };
            let b = client
                .bucket_allow(ctx(), name.clone(), key.clone(), perm, allow)
                .await??;
            if json {
                return print_json(&b);
            }
            print_bucket(&b);
        }
    }
    Ok(())
}

async fn key(client: &AdminClient, cmd: &KeyCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        KeyCmd::Create { name } => {
            let k = client.key_create(ctx(), name.clone()).await??;
            let secret = k.secret_access_key.clone().unwrap_or_default();
            if json {
                return print_json(&serde_json::json!({
                    "access_key_id": k.access_key_id,
                    "secret_access_key": secret,
                    "name": k.name,
                }));
            }
            outln!("Key {} created.", k.name);
            outln!("  access key id      {}", k.access_key_id);
            outln!("  secret access key  {secret}");
            outln!("The secret is shown only now: store it in your S3 client's configuration.");
        }
        KeyCmd::List => {
            let keys = client.key_list(ctx()).await??;
            if json {
                return print_json(&keys);
            }
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|k| {
                    vec![
                        k.access_key_id.clone(),
                        k.name.clone(),
                        k.buckets.len().to_string(),
                    ]
                })
                .collect();
            out!("{}", table(&["KEY ID", "NAME", "BUCKETS"], &rows));
        }
        KeyCmd::Info { key, show_secret } => {
            let k = if *show_secret {
                client.key_secret(ctx(), key.clone()).await??
            } else {
                client.key_info(ctx(), key.clone()).await??
            };
            if json {
                return print_json(&k);
            }
            outln!("Key {} ({})", k.access_key_id, k.name);
            if let Some(s) = &k.secret_access_key {
                outln!("  secret access key  {s}");
            }
            out!("{}", grants_table(&k.buckets));
        }
        KeyCmd::Delete { key } => {
            client.key_delete(ctx(), key.clone()).await??;
            if json {
                return print_json(&serde_json::json!({"deleted": key}));
            }
            outln!("Key {key} deleted.");
        }
    }
    Ok(())
}

async fn debug_kv(client: &AdminClient, cmd: &KvCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        KvCmd::Put { key, value } => {
            client
                .debug_kv_put(ctx(), key.clone(), Some(value.clone()))
                .await??;
            if json {
                return print_json(&serde_json::json!({"written": key}));
            }
            outln!("{key} written to a write quorum.");
        }
        KvCmd::Delete { key } => {
            client.debug_kv_put(ctx(), key.clone(), None).await??;
            if json {
                return print_json(&serde_json::json!({"deleted": key}));
            }
            outln!("{key} deleted.");
        }
        KvCmd::Get { key } => {
            let v = client.debug_kv_get(ctx(), key.clone()).await??;
            if json {
                return print_json(&serde_json::json!({"key": key, "value": v}));
            }
            match v {
                Some(v) => outln!("{v}"),
                None => bail!("{key}: no such key"),
            }
        }
        KvCmd::Local { keys } => {
            let held = client.debug_kv_local(ctx(), keys.clone()).await??;
            if json {
                return print_json(&held);
            }
            for (k, v) in keys.iter().zip(held) {
                let shown = match v {
                    hangar_common::rpc::LocalValue::Absent => "(absent)".to_string(),
                    hangar_common::rpc::LocalValue::Tombstone => "(deleted, tombstone)".to_string(),
                    hangar_common::rpc::LocalValue::Value(v) => v,
                };
                outln!("{k}\t{shown}");
            }
        }
    }
    Ok(())
}

async fn layout(client: &AdminClient, cmd: &LayoutCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        LayoutCmd::Show => {
            let view = client.layout(ctx()).await?;
            let st = client.status(ctx()).await?;
            if json {
                return print_json(&view);
            }
            out!("{}", render_layout(&view, &st));
        }
        LayoutCmd::Assign {
            node,
            zone,
            capacity,
            gateway,
        } => {
            let st = client.status(ctx()).await?;
            let id = resolve_node(&st, node)?;
            let capacity = match (capacity, gateway) {
                (_, true) => None,
                (Some(c), false) => {
                    let bytes = parse_size(c)?;
                    if bytes == 0 {
                        bail!(
                            "a capacity of 0 stores nothing: use --gateway for a node that stores nothing"
                        );
                    }
                    Some(bytes)
                }
                (None, false) => bail!("give --capacity SIZE or --gateway"),
            };
            let role = NodeRole {
                zone: zone.trim().to_string(),
                capacity,
            };
            let view = client
                .layout_stage(ctx(), vec![(id, StagedRole::Set(role))])
                .await??;
            finish_stage(&view, &st, json)?;
        }
        LayoutCmd::Remove { node } => {
            let st = client.status(ctx()).await?;
            let id = resolve_node(&st, node)?;
            let view = client
                .layout_stage(ctx(), vec![(id, StagedRole::Remove)])
                .await??;
            finish_stage(&view, &st, json)?;
        }
        LayoutCmd::Apply { version } => {
            let report = client.layout_apply(ctx(), *version).await??;
            if json {
                return print_json(&report);
            }
            let st = client.status(ctx()).await?;
            outln!("Layout version {version} applied.");
            out!("{}", render_report(&report, &st));
        }
        LayoutCmd::SkipDead { version } => {
            let skipped = client.layout_skip_dead(ctx(), *version).await??;
            if json {
                return print_json(&skipped);
            }
            if skipped.is_empty() {
                outln!(
                    "No node that is down still has to confirm layout version {version}: nothing skipped."
                );
            } else {
                outln!(
                    "Node(s) {} now count as having confirmed layout version {version}; the move completes with the others.",
                    skipped
                        .iter()
                        .map(|n| n.short())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        LayoutCmd::Revert => {
            let view = client.layout_revert(ctx()).await??;
            if json {
                return print_json(&view);
            }
            outln!(
                "Staged changes dropped; layout stays at version {}.",
                view.layout.version
            );
        }
    }
    Ok(())
}

fn finish_stage(view: &LayoutView, st: &ClusterStatus, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(view);
    }
    out!("{}", render_layout(view, st));
    Ok(())
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Find the node a (prefix of an) id names, among the nodes the agent knows.
pub fn resolve_node(st: &ClusterStatus, prefix: &str) -> anyhow::Result<NodeId> {
    let matches: Vec<NodeId> = st
        .nodes
        .iter()
        .map(|n| n.id)
        .filter(|id| id.matches_prefix(prefix))
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => bail!(
            "no known node id starts with {prefix:?}; connect it first with `hangar node connect ID@HOST:PORT` \
             (see `hangar status` for the nodes this agent knows)"
        ),
        many => bail!(
            "{prefix:?} matches {} nodes ({}); give more digits",
            many.len(),
            many.iter()
                .map(|m| m.short())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A plain text table with aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(|s| s.as_str()).collect()));
    }
    out
}

fn ago(ms: u64) -> String {
    let now = hangar_common::crdt::now_msec();
    let s = now.saturating_sub(ms) / 1000;
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86399 => format!("{}h{:02}m ago", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h ago", s / 86400, (s % 86400) / 3600),
    }
}

pub fn node_state(n: &NodeStatus) -> String {
    if n.is_self {
        "up (this node)".into()
    } else if n.up {
        "up".into()
    } else if let Some(t) = n.down_since_ms {
        format!("DOWN since {}", ago(t))
    } else {
        "connecting".into()
    }
}

fn role_cells(role: Option<&NodeRole>) -> (String, String) {
    match role {
        None => ("-".into(), "-".into()),
        Some(r) => (
            r.zone.clone(),
            r.capacity
                .map(format_bytes)
                .unwrap_or_else(|| "gateway".into()),
        ),
    }
}

pub fn render_status(st: &ClusterStatus) -> String {
    let mut out = format!(
        "Cluster seen from node {} · layout version {} · replication factor {}\n",
        st.node.short(),
        st.layout_version,
        st.replication_factor
    );
    let up = st.nodes.iter().filter(|n| n.up).count();
    out.push_str(&format!(
        "Nodes: {up} of {} up · Health: {} ({} healthy, {} degraded, {} unavailable partitions)\n\n",
        st.nodes.len(),
        st.health.summary(),
        st.health.healthy,
        st.health.degraded,
        st.health.unavailable
    ));
    if let Some(e) = &st.endpoints {
        out.push_str(&format!(
            "S3 clients connect to {} (region {}); websites are served at {}\n\n",
            e.s3, e.region, e.web
        ));
    }
    let skewed: Vec<String> = st
        .nodes
        .iter()
        .filter_map(|n| hangar_common::clock::skew_warning(&n.id.short(), n.clock_offset_ms?))
        .collect();
    for w in &skewed {
        out.push_str(&format!("WARNING: {w}\n"));
    }
    if !skewed.is_empty() {
        out.push('\n');
    }
    if st.live_versions.len() > 1 {
        out.push_str(&format!(
            "Data is moving to layout version {}: versions {:?} live (reads from {}), {} of {} nodes have pushed their data\n\n",
            st.layout_version,
            st.live_versions,
            st.live_versions[0],
            st.nodes_synced,
            st.nodes_in_transition
        ));
    }
    let rows: Vec<Vec<String>> = st
        .nodes
        .iter()
        .map(|n| {
            let (zone, cap) = role_cells(n.role.as_ref());
            vec![
                n.id.short(),
                n.addr.clone().unwrap_or_else(|| "?".into()),
                zone,
                cap,
                if n.role.is_some() {
                    n.partitions.to_string()
                } else {
                    "-".into()
                },
                node_state(n),
                n.last_seen_ms
                    .filter(|_| !n.is_self)
                    .map(ago)
                    .unwrap_or_else(|| "-".into()),
                n.rtt_ms
                    .filter(|_| !n.is_self)
                    .map(|r| format!("{r:.1} ms"))
                    .unwrap_or_else(|| "-".into()),
                n.layout_version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
                n.agent_version.clone().unwrap_or_else(|| "-".into()),
                n.clock_offset_ms
                    .map(clock_cell)
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "ID",
            "ADDRESS",
            "ZONE",
            "CAPACITY",
            "PARTITIONS",
            "STATE",
            "LAST SEEN",
            "RTT",
            "LAYOUT",
            "VERSION",
            "CLOCK",
        ],
        &rows,
    ));
    out.push_str(&format!(
        "\nBlocks: {} queued for a check, {} fetched from replicas, {} unreferenced deleted, {} handed over to new nodes, {} errors retried\n",
        st.blocks.resync_queue, st.blocks.fetched, st.blocks.deleted, st.blocks.handed_over, st.blocks.errors
    ));
    if st.blocks.scrub_running || st.blocks.scrub_corrupted > 0 {
        out.push_str(&format!(
            "Scrub: {} of {} blocks checked{} · {} corrupted found and being replaced\n",
            st.blocks.scrub_checked,
            st.blocks.scrub_total,
            if st.blocks.scrub_running {
                " (running)"
            } else {
                ""
            },
            st.blocks.scrub_corrupted
        ));
    }
    if st.blocks.scrub_moved > 0 {
        out.push_str(&format!(
            "Blocks moved to the data directory they belong in: {}\n",
            st.blocks.scrub_moved
        ));
    }
    if let Some(e) = &st.metadata_engine {
        out.push_str(&format!("Metadata store: {e} (`[tables] engine`)\n"));
    }
    out.push_str(&match &st.last_snapshot {
        Some(s) => format!(
            "Metadata snapshot: last {} ({} entries in {:.1} s, writes waited {:.2} s)\n",
            ago(s.at_ms),
            s.entries,
            s.duration_ms as f64 / 1000.0,
            s.writes_paused_ms as f64 / 1000.0
        ),
        None => "Metadata snapshot: none since this agent started (`hangar snapshot` takes one)\n"
            .to_string(),
    });
    out.push_str(&render_data_dirs(st));
    if !st.tables.is_empty() {
        for t in &st.tables {
            out.push_str(&table_line(t));
            out.push('\n');
        }
    }
    let unassigned: Vec<&NodeStatus> = st
        .nodes
        .iter()
        .filter(|n| n.role.is_none() && n.staged.is_none())
        .collect();
    if !unassigned.is_empty() {
        out.push_str(&format!(
            "\n{} node(s) have no role yet; give them one with `hangar layout assign NODE --zone ZONE --capacity SIZE`.\n",
            unassigned.len()
        ));
    }
    out
}

/// A node's clock offset from the cluster's, in a table cell: "ok" within
/// the warning threshold, else how far and which way.
pub fn clock_cell(offset_ms: i64) -> String {
    if offset_ms.abs() <= hangar_common::clock::SKEW_WARN_MS {
        "ok".into()
    } else {
        hangar_common::clock::describe_offset(offset_ms)
    }
}

/// Every node's data directories, one row each: what they hold, their
/// room, and why one takes no new blocks.
pub fn render_data_dirs(st: &ClusterStatus) -> String {
    let rows: Vec<Vec<String>> = st
        .nodes
        .iter()
        .flat_map(|n| n.data_dirs.iter().map(move |d| (n, d)))
        .map(|(n, d)| {
            vec![
                n.id.short(),
                d.path.clone(),
                format!("{}{}", d.blocks, if d.counted { "" } else { " (counting)" }),
                format_bytes(d.bytes),
                d.capacity
                    .map(format_bytes)
                    .unwrap_or_else(|| format!("{} (disk)", format_bytes(d.fs_total))),
                format_bytes(d.fs_free),
                data_dir_state(d),
            ]
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "\nData directories:\n{}",
        table(
            &[
                "NODE",
                "DIRECTORY",
                "BLOCKS",
                "STORED",
                "CAPACITY",
                "DISK FREE",
                "STATE"
            ],
            &rows,
        )
    )
}

/// `ok`, `read-only (draining)`, or `FULL: why`.
pub fn data_dir_state(d: &hangar_common::rpc::DataDirStatus) -> String {
    match (&d.full, d.read_only) {
        (_, true) => "read-only (draining)".into(),
        (Some(why), _) => format!("FULL: {why}"),
        (None, false) => "ok".into(),
    }
}

/// One line per table: what this node holds and how its background work
/// is doing.
pub fn table_line(t: &hangar_common::rpc::TableStats) -> String {
    let sync = match t.oldest_sync_ms {
        Some(ms) => format!(
            "all {} partitions synced, oldest {}",
            t.partitions_held,
            ago(ms)
        ),
        None => format!(
            "{}/{} partitions synced",
            t.partitions_synced, t.partitions_held
        ),
    };
    format!(
        "Table {}: {} items · Merkle queue {} · tombstones to collect {} · {sync}",
        t.table, t.items, t.merkle_queue, t.gc_queue
    )
}

pub fn render_layout(view: &LayoutView, st: &ClusterStatus) -> String {
    let l = &view.layout;
    let mut out = format!(
        "Layout version {} · replication factor {}\n\n",
        l.version, l.replication_factor
    );
    if l.roles.is_empty() {
        out.push_str("No layout applied yet.\n");
    } else {
        let rows: Vec<Vec<String>> = l
            .roles
            .iter()
            .map(|(id, r)| {
                let (zone, cap) = role_cells(Some(r));
                let parts = (0..hangar_common::layout::PARTITIONS)
                    .filter(|p| l.nodes_of(*p).contains(id))
                    .count();
                vec![id.short(), zone, cap, parts.to_string()]
            })
            .collect();
        out.push_str(&table(&["ID", "ZONE", "CAPACITY", "PARTITIONS"], &rows));
    }
    let staged = l.effective_staged();
    if staged.is_empty() {
        out.push_str("\nNo staged changes.\n");
        return out;
    }
    out.push_str("\nStaged changes:\n");
    let rows: Vec<Vec<String>> = staged
        .iter()
        .map(|(id, c)| match c {
            StagedRole::Set(r) => {
                let (zone, cap) = role_cells(Some(r));
                vec![id.short(), "assign".into(), zone, cap]
            }
            StagedRole::Remove => vec![id.short(), "remove".into(), "-".into(), "-".into()],
            StagedRole::Unchanged => vec![id.short(), "-".into(), "-".into(), "-".into()],
        })
        .collect();
    out.push_str(&table(&["ID", "CHANGE", "ZONE", "CAPACITY"], &rows));
    match &view.preview {
        Some(Ok(report)) => {
            out.push_str("\nIf applied:\n");
            out.push_str(&render_report(report, st));
            out.push_str(&format!(
                "\nTo apply: hangar layout apply --version {}   To drop: hangar layout revert\n",
                l.version + 1
            ));
        }
        Some(Err(e)) => out.push_str(&format!("\nThese changes cannot be applied: {e}\n")),
        None => {}
    }
    out
}

pub fn render_report(r: &AssignmentReport, st: &ClusterStatus) -> String {
    let addr = |id: &NodeId| {
        st.nodes
            .iter()
            .find(|n| n.id == *id)
            .and_then(|n| n.addr.clone())
            .unwrap_or_default()
    };
    let mut out = format!(
        "  usable capacity {} · partitions span at least {} zone(s) · {} partition replica(s) to move\n",
        format_bytes(r.usable_capacity),
        r.min_zone_spread,
        r.moves
    );
    let rows: Vec<Vec<String>> = r
        .partitions_per_node
        .iter()
        .map(|(id, n)| {
            let m = r.moves_per_node.get(id).copied().unwrap_or_default();
            vec![
                id.short(),
                addr(id),
                n.to_string(),
                format!("+{}", m.incoming),
                format!("-{}", m.outgoing),
            ]
        })
        .collect();
    let t = table(&["ID", "ADDRESS", "PARTITIONS", "IN", "OUT"], &rows);
    for line in t.lines() {
        out.push_str(&format!("  {line}\n"));
    }
    for note in &r.notes {
        out.push_str(&format!("  note: {note}\n"));
    }
    out
}
