//! View 1, Cluster: every node (state, zone, capacity, disk, clock), the
//! selected node's data directories, and the background work.

use super::super::draw::*;
use super::super::*;

impl App {
    pub(in crate::tui) fn draw_cluster(&self, f: &mut Frame, area: Rect) {
        let selected = self.nodes().get(self.selected[0]).copied();
        let dir_count = selected.map(|n| n.data_dirs.len()).unwrap_or(0);
        // Every node first; the selected node's directories get what room
        // is left (up to what they need), then the background work.
        let node_rows = self.nodes().len() as u16 + 3;
        let dirs_rows = dir_count.clamp(1, 4) as u16 + 3;
        let work_rows = 6u16.min(area.height.saturating_sub(node_rows + 3).max(4));
        let [nodes, dirs, work] = Layout::vertical([
            Constraint::Min(node_rows.min(area.height.saturating_sub(work_rows))),
            Constraint::Max(dirs_rows),
            Constraint::Length(work_rows),
        ])
        .areas(area);
        let wide = area.width >= 120;
        let (widths, header) = if wide {
            (
                vec![
                    Constraint::Length(16),
                    Constraint::Length(21),
                    Constraint::Length(10),
                    Constraint::Length(9),
                    Constraint::Length(22),
                    Constraint::Length(5),
                    Constraint::Length(24),
                    Constraint::Length(8),
                    Constraint::Length(14),
                    Constraint::Min(7),
                ],
                vec![
                    "ID",
                    "ADDRESS",
                    "ZONE",
                    "CAPACITY",
                    "DISK USED",
                    "PARTS",
                    "STATE",
                    "RTT",
                    "CLOCK",
                    "VERSION",
                ],
            )
        } else {
            (
                vec![
                    Constraint::Length(8),
                    Constraint::Length(self.zone_width()),
                    Constraint::Length(8),
                    Constraint::Length(15),
                    Constraint::Length(5),
                    Constraint::Min(16),
                ],
                vec!["ID", "ZONE", "CAPACITY", "DISK USED", "PARTS", "STATE"],
            )
        };
        let (t, mut s) = selectable(
            self.node_rows(false, wide),
            widths,
            header,
            " Nodes ".into(),
            self.selected[0],
            true,
        );
        f.render_stateful_widget(t, nodes, &mut s);
        if let Some(n) = selected
            && dirs.height >= 3
        {
            draw_data_dirs(n, f, dirs);
        }
        self.draw_work(f, work);
    }

    /// Background work of the connected node: data moves after a layout
    /// change and the scrub as gauges, resync and tables as counts.
    pub(in crate::tui) fn draw_work(&self, f: &mut Frame, area: Rect) {
        let block = Block::bordered().title(" Background work (this node) ");
        let inner = block.inner(area);
        f.render_widget(block, area);
        let Some(st) = &self.data.status else { return };
        draw_work_lines(st, self.rates, f, inner);
    }
}

/// A table with the selected row marked by `>` (and reversed colours).
/// The selected node's data directories: what each holds, its room, and
/// why one takes no new blocks.
pub(in crate::tui) fn draw_data_dirs(n: &NodeStatus, f: &mut Frame, area: Rect) {
    let full = n.data_dirs.iter().filter(|d| d.full.is_some()).count();
    // A node that is down reports nothing: what shows is what it said
    // last, dimmed and said so.
    let stale = !n.up && !n.is_self;
    let title = format!(
        " Data directories of {}{}{} ",
        n.id.short(),
        if full > 0 {
            format!(" · {full} FULL")
        } else {
            String::new()
        },
        if stale {
            " · last known, the node is down"
        } else {
            ""
        }
    );
    let block = Block::bordered().title(title);
    if n.data_dirs.is_empty() {
        f.render_widget(
            Paragraph::new("Not reported (the node is down, or runs an older agent).").block(block),
            area,
        );
        return;
    }
    let wide = area.width >= 120;
    let rows: Vec<Row> = n
        .data_dirs
        .iter()
        .map(|d| {
            let cap = d.capacity.unwrap_or(d.fs_total);
            let (state, color) = match (&d.full, d.read_only) {
                (_, true) => ("read-only, draining".to_string(), Color::Yellow),
                // Narrow screens get the reason without its figures.
                (Some(why), _) if !wide => (
                    format!("FULL: {}", why.split(" (").next().unwrap_or(why)),
                    Color::Red,
                ),
                (Some(why), _) => (format!("FULL: {why}"), Color::Red),
                (None, false) => ("● takes new blocks".to_string(), Color::Green),
            };
            let mut cells = vec![ratatui::widgets::Cell::from(d.path.clone())];
            if wide {
                cells.extend([
                    d.blocks.to_string().into(),
                    format_bytes(d.bytes).into(),
                    format!(
                        "{}{}",
                        format_bytes(cap),
                        if d.capacity.is_none() { " (disk)" } else { "" }
                    )
                    .into(),
                    format_bytes(d.fs_free).into(),
                ]);
            } else {
                cells.push(format!("{} of {}", format_bytes(d.bytes), format_bytes(cap)).into());
            }
            let style = if stale {
                Style::default().add_modifier(Modifier::DIM)
            } else {
                Style::default().fg(color)
            };
            cells.push(ratatui::widgets::Cell::from(state).style(style));
            let row = Row::new(cells);
            if stale {
                row.style(Style::default().add_modifier(Modifier::DIM))
            } else {
                row
            }
        })
        .collect();
    let (widths, header) = if wide {
        (
            vec![
                Constraint::Min(20),
                Constraint::Length(9),
                Constraint::Length(10),
                Constraint::Length(16),
                Constraint::Length(10),
                Constraint::Min(30),
            ],
            vec![
                "DIRECTORY",
                "BLOCKS",
                "STORED",
                "CAPACITY",
                "DISK FREE",
                "STATE",
            ],
        )
    } else {
        (
            vec![
                Constraint::Fill(1),
                Constraint::Length(18),
                Constraint::Fill(1),
            ],
            vec!["DIRECTORY", "STORED", "STATE"],
        )
    };
    f.render_widget(
        Table::new(rows, widths)
            .header(Row::new(header).style(bold()))
            .block(block),
        area,
    );
}

/// The background-work lines (gauges and counts) of a node.
pub(in crate::tui) fn draw_work_lines(
    st: &ClusterStatus,
    rates: Option<(f64, f64)>,
    f: &mut Frame,
    inner: Rect,
) {
    let (resync_rate, scrub_rate) = match rates {
        Some((r, s)) => (format!(" ({r:.0}/s)"), format!(" ({s:.0}/s)")),
        None => (String::new(), String::new()),
    };
    let [moving, scrub, resync, tables] = Layout::vertical([Constraint::Length(1); 4]).areas(inner);
    let (ratio, label) = if st.live_versions.len() > 1 {
        let total = st.nodes_in_transition.max(1);
        (st.nodes_synced as f64 / total as f64, {
            let down = st
                .nodes
                .iter()
                .filter(|n| !n.up && n.role.is_some())
                .count();
            format!(
                "rebalancing to layout v{}: {} of {} nodes pushed their data{}",
                st.layout_version,
                st.nodes_synced,
                total,
                if down > 0 {
                    format!(" · {down} down (Layout: w)")
                } else {
                    String::new()
                }
            )
        })
    } else {
        (1.0, format!("layout v{}: data in place", st.layout_version))
    };
    f.render_widget(
        Gauge::default()
            .gauge_style(Style::default().fg(Color::Cyan))
            .ratio(ratio.clamp(0.0, 1.0))
            .label(label),
        moving,
    );
    let b = &st.blocks;
    let (ratio, label) = if b.scrub_running {
        (
            b.scrub_checked as f64 / b.scrub_total.max(1) as f64,
            format!(
                "scrub: {} of {} blocks checked{scrub_rate}",
                b.scrub_checked, b.scrub_total
            ),
        )
    } else {
        (
            0.0,
            format!(
                "scrub: idle ({} corrupted blocks found and replaced so far)",
                b.scrub_corrupted
            ),
        )
    };
    f.render_widget(
        Gauge::default()
            .gauge_style(Style::default().fg(Color::Green))
            .ratio(ratio.clamp(0.0, 1.0))
            .label(label),
        scrub,
    );
    f.render_widget(
        Paragraph::new(if resync.width >= 100 {
            format!(
                "resync: {} queued, {} blocks fetched, {} deleted, {} handed over{resync_rate}, {} errors retried",
                b.resync_queue, b.fetched, b.deleted, b.handed_over, b.errors
            )
        } else {
            format!(
                "blocks: {} queued, {} fetched, {} deleted, {} moved{resync_rate}, {} retried",
                b.resync_queue, b.fetched, b.deleted, b.handed_over, b.errors
            )
        }),
        resync,
    );
    let items: u64 = st.tables.iter().map(|t| t.items).sum();
    let merkle: u64 = st.tables.iter().map(|t| t.merkle_queue).sum();
    let gc: u64 = st.tables.iter().map(|t| t.gc_queue).sum();
    f.render_widget(
        Paragraph::new(if tables.width >= 100 {
            format!(
                "metadata: {items} items in {} tables, {merkle} changes waiting for the Merkle trees, {gc} deletions to collect",
                st.tables.len()
            )
        } else {
            format!(
                "metadata: {items} items, {merkle} changes to index, {gc} deletions to collect"
            )
        }),
        tables,
    );
}

impl App {
    /// This view's keys (see `keys.rs` for their table).
    pub(in crate::tui) fn cluster_key(&mut self, c: char) {
        if c == 'n' {
            self.overlay = Overlay::Form(Form::new(FormKind::Onboard, self));
        }
    }
}
