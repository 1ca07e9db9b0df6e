//! Drawing: every view and window, from the [`App`] state only. Symbols
//! carry the meaning and colour only underlines it (`●` up, `✗` down, `!`
//! degraded), so the console reads on a monochrome terminal too. Fits 80x24
//! and uses whatever more there is.

use hangar_common::layout::cluster::{StagedRole, write_quorum};
use hangar_common::rpc::{ClusterStatus, NodeStatus};
use hangar_common::size::format_bytes;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Gauge, Paragraph, Row, Table, TableState, Tabs, Wrap};

use super::{App, Overlay, Tab};

const ZONE_COLORS: [Color; 6] = [
    Color::Cyan,
    Color::Magenta,
    Color::Yellow,
    Color::Green,
    Color::Blue,
    Color::LightRed,
];

fn bold() -> Style {
    Style::default().add_modifier(Modifier::BOLD)
}

/// "3 min ago" between two instants.
fn ago(now_ms: u64, t_ms: u64) -> String {
    let s = now_ms.saturating_sub(t_ms) / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// An event's time: "23:40:01" today, "12-01 23:40:01" before (UTC).
fn event_time(now_ms: u64, at_ms: u64) -> String {
    let secs = (at_ms / 1000) % 86_400;
    let t = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    let day = at_ms / 86_400_000;
    if day == now_ms / 86_400_000 {
        return t;
    }
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = day as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    format!("{m:02}-{d:02} {t}")
}

/// How many lines `text` takes once word-wrapped at `width` columns.
fn wrapped_lines(text: &str, width: usize) -> usize {
    let width = width.max(1);
    let mut lines = 1;
    let mut col = 0;
    for word in text.split_whitespace() {
        let w = word.chars().count();
        if col > 0 && col + 1 + w > width {
            lines += 1;
            col = 0;
        }
        col += if col == 0 { w } else { w + 1 };
        while col > width {
            lines += 1;
            col -= width;
        }
    }
    lines
}

/// A node's clock offset from the cluster's when it is worth a warning.
fn clock_skew(n: &NodeStatus) -> Option<i64> {
    n.clock_offset_ms
        .filter(|o| o.abs() > hangar_common::clock::SKEW_WARN_MS)
}

/// The state cell; `clock` adds a skewed clock to it (on narrow screens,
/// which have no CLOCK column).
fn state_cell(n: &NodeStatus, now_ms: u64, clock: bool) -> (String, Style) {
    if let Some(off) = clock_skew(n).filter(|_| clock && n.up) {
        (
            format!("! up, clock {}", hangar_common::clock::describe_offset(off)),
            Style::default().fg(Color::Yellow),
        )
    } else if n.is_self {
        ("● up (this node)".into(), Style::default().fg(Color::Green))
    } else if n.up {
        ("● up".into(), Style::default().fg(Color::Green))
    } else if let Some(t) = n.down_since_ms {
        (
            format!("✗ DOWN since {}", ago(now_ms, t)),
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        )
    } else {
        ("… connecting".into(), Style::default().fg(Color::Yellow))
    }
}

fn role_cells(n: &NodeStatus) -> (String, String) {
    match &n.role {
        Some(r) => (
            r.zone.clone(),
            r.capacity
                .map(format_bytes)
                .unwrap_or_else(|| "gateway".into()),
        ),
        None => ("-".into(), "-".into()),
    }
}

/// A table with the selected row marked by `>` (and reversed colours).
/// The selected node's data directories: what each holds, its room, and
/// why one takes no new blocks.
fn draw_data_dirs(n: &NodeStatus, f: &mut Frame, area: Rect) {
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

fn selectable<'a>(
    rows: Vec<Row<'a>>,
    widths: Vec<Constraint>,
    header: Vec<&'a str>,
    title: String,
    selected: usize,
    focused: bool,
) -> (Table<'a>, TableState) {
    let mut state = TableState::default();
    if focused && !rows.is_empty() {
        state.select(Some(selected.min(rows.len() - 1)));
    }
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(bold()))
        .block(Block::bordered().title(title))
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    (table, state)
}

impl App {
    pub fn draw(&self, f: &mut Frame) {
        let advice = self.advice();
        // The advice wraps: as many lines as it needs at this width (at
        // most 3, so the view keeps its room).
        let advice_rows = advice.as_ref().map_or(0, |(text, _)| {
            wrapped_lines(text, f.area().width as usize).clamp(1, 3) as u16
        });
        let [tabs, head, adv, body, msg, foot] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Length(advice_rows),
            Constraint::Min(5),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(f.area());
        let titles: Vec<String> = Tab::ALL
            .iter()
            .enumerate()
            .map(|(i, t)| format!("{} {}", i + 1, t.title()))
            .collect();
        f.render_widget(
            Tabs::new(titles)
                .select(self.tab.index())
                .highlight_style(bold().add_modifier(Modifier::REVERSED))
                .divider("│"),
            tabs,
        );
        f.render_widget(Paragraph::new(self.header(head.width)), head);
        if let Some((text, warn)) = advice {
            let color = if warn { Color::Red } else { Color::Yellow };
            f.render_widget(
                Paragraph::new(text)
                    .style(Style::default().fg(color))
                    .wrap(Wrap { trim: true }),
                adv,
            );
        }
        match self.tab {
            Tab::Cluster => self.draw_cluster(f, body),
            Tab::WhatIf => self.draw_what_if(f, body),
            Tab::Layout => self.draw_layout(f, body),
            Tab::Buckets => self.draw_buckets(f, body),
            Tab::Workers => self.draw_workers(f, body),
            Tab::Events => self.draw_events(f, body),
        }
        f.render_widget(Paragraph::new(self.message_line()), msg);
        f.render_widget(Paragraph::new(self.footer()), foot);
        self.draw_overlay(f);
    }

    fn header(&self, width: u16) -> Line<'_> {
        match (&self.data.status, &self.error) {
            (_, Some(e)) => Line::from(vec![
                Span::styled(
                    "✗ Not connected ",
                    Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
                ),
                Span::raw(format!(
                    "to {}: {e} (retrying; s switches to another node)",
                    self.addr
                )),
            ]),
            (Some(st), None) => {
                let up = st.nodes.iter().filter(|n| n.up).count();
                let (sym, color) = if st.health.unavailable > 0 {
                    ("✗", Color::Red)
                } else if st.health.degraded > 0 {
                    ("!", Color::Yellow)
                } else {
                    ("●", Color::Green)
                };
                // Narrow screens leave the address out so the health
                // word fits.
                let at = if width < 120 {
                    String::new()
                } else {
                    format!(" at {}", self.addr)
                };
                Line::from(vec![
                    Span::raw(format!(
                        "Node {}{at} · layout v{} · {up}/{} nodes up · ",
                        st.node.short(),
                        st.layout_version,
                        st.nodes.len()
                    )),
                    Span::styled(
                        {
                            let s = st.health.summary();
                            // Narrow screens get the first word only.
                            let s = if width < 120 {
                                s.split(':').next().unwrap_or(s)
                            } else {
                                s
                            };
                            format!("{sym} {s}")
                        },
                        Style::default().fg(color),
                    ),
                ])
            }
            (None, None) => Line::from(format!("Connecting to {}...", self.addr)),
        }
    }

    /// The line above the key hints: what is being typed, what is running,
    /// or how the last action went.
    fn message_line(&self) -> Line<'_> {
        if self.filtering {
            return Line::from(format!(
                "/{}_  (Enter keeps the filter, Esc clears it)",
                self.filter
            ));
        }
        if let Overlay::Command(line) = &self.overlay {
            return Line::from(format!(
                ":{line}_  (a hangar subcommand, e.g. status; Esc cancels)"
            ));
        }
        if let Some(b) = &self.busy {
            return Line::from(Span::styled(
                format!("… {b}"),
                Style::default().fg(Color::Yellow),
            ));
        }
        if let Some((err, m)) = &self.message {
            let style = if *err {
                Style::default().fg(Color::Red)
            } else {
                Style::default().fg(Color::Green)
            };
            return Line::from(Span::styled(
                format!("{} {m}", if *err { "✗" } else { "✓" }),
                style,
            ));
        }
        if let Some(note) = &self.note {
            return Line::from(note.clone());
        }
        // Otherwise: where clients connect.
        match self.data.status.as_ref().and_then(|s| s.endpoints.as_ref()) {
            Some(e) => Line::from(Span::styled(
                format!("S3: {} (region {}) · websites: {}", e.s3, e.region, e.web),
                Style::default().add_modifier(Modifier::DIM),
            )),
            None => Line::from(""),
        }
    }

    /// The key hints of the current view, always shown.
    fn footer(&self) -> Line<'_> {
        let filter = if self.filter.is_empty() {
            String::new()
        } else {
            format!(" · filter: {}", self.filter)
        };
        Line::from(format!("{}{filter}", super::keys::footer(self.tab)))
    }

    fn node_rows(&self, marks: bool, wide: bool) -> Vec<Row<'_>> {
        self.nodes()
            .into_iter()
            .map(|n| {
                let (zone, cap) = role_cells(n);
                let (state, style) = state_cell(n, self.now_ms, !wide && !marks);
                let mut cells = Vec::new();
                if marks {
                    cells.push(
                        if self.lost.contains(&n.id) {
                            "[x]"
                        } else {
                            "[ ]"
                        }
                        .to_string(),
                    );
                }
                cells.push(self.id_text(&n.id, wide));
                if wide {
                    cells.push(n.addr.clone().unwrap_or_default());
                }
                cells.extend([zone, cap]);
                if !marks {
                    // The same at both widths: used of the disk's size.
                    cells.push(match n.disk {
                        Some(d) => format!(
                            "{} of {}",
                            format_bytes(d.total.saturating_sub(d.free)),
                            format_bytes(d.total)
                        ),
                        None => "-".into(),
                    });
                }
                cells.push(n.partitions.to_string());
                // A down node's disk and round trip are what it last
                // reported: dimmed.
                let stale = !n.up && !n.is_self;
                let dim = |c: ratatui::widgets::Cell<'static>| {
                    if stale {
                        c.style(Style::default().add_modifier(Modifier::DIM))
                    } else {
                        c
                    }
                };
                let mut row: Vec<ratatui::widgets::Cell> = cells
                    .into_iter()
                    .map(|c| dim(ratatui::widgets::Cell::from(c)))
                    .collect();
                row.push(ratatui::widgets::Cell::from(state).style(style));
                if !marks && wide {
                    row.push(dim(n
                        .rtt_ms
                        .filter(|_| !n.is_self)
                        .map(|r| format!("{r:.1} ms"))
                        .unwrap_or_else(|| "-".into())
                        .into()));
                    row.push(match (n.clock_offset_ms, clock_skew(n)) {
                        (_, Some(off)) => {
                            ratatui::widgets::Cell::from(hangar_common::clock::describe_offset(off))
                                .style(Style::default().fg(Color::Yellow))
                        }
                        (Some(_), None) => "ok".into(),
                        (None, _) => "-".into(),
                    });
                    row.push(n.agent_version.clone().unwrap_or_else(|| "-".into()).into());
                }
                Row::new(row)
            })
            .collect()
    }

    /// A node id in a table: whole on wide screens, its first 8 digits on
    /// narrow ones (any unique prefix names a node), so zone names fit.
    fn id_text(&self, id: &hangar_common::NodeId, wide: bool) -> String {
        let s = id.short();
        if wide { s } else { s[..8].to_string() }
    }

    /// The ZONE column's width: the longest zone name (4 to 16).
    fn zone_width(&self) -> u16 {
        self.nodes()
            .iter()
            .filter_map(|n| n.role.as_ref().map(|r| r.zone.chars().count()))
            .max()
            .unwrap_or(4)
            .clamp(4, 16) as u16
    }

    fn draw_cluster(&self, f: &mut Frame, area: Rect) {
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

    fn draw_what_if(&self, f: &mut Frame, area: Rect) {
        let [nodes, result] =
            Layout::vertical([Constraint::Min(4), Constraint::Length(8)]).areas(area);
        let wide = area.width >= 120;
        let mut widths = vec![
            Constraint::Length(3),
            Constraint::Length(if wide { 16 } else { 8 }),
        ];
        let mut header = vec!["", "ID"];
        if wide {
            widths.push(Constraint::Length(21));
            header.push("ADDRESS");
        }
        widths.extend([
            Constraint::Length(self.zone_width()),
            Constraint::Length(8),
            Constraint::Length(5),
            Constraint::Min(12),
        ]);
        header.extend(["ZONE", "CAPACITY", "PARTS", "STATE"]);
        let (t, mut s) = selectable(
            self.node_rows(true, wide),
            widths,
            header,
            " Pick nodes to imagine them down (space; z: a whole zone) ".into(),
            self.selected[1],
            true,
        );
        f.render_stateful_widget(t, nodes, &mut s);
        let mut lines: Vec<Line> = Vec::new();
        for text in self.what_if_lines(&self.lost) {
            lines.push(if text.starts_with("The cluster would keep") {
                Line::from(Span::styled(
                    format!("● {text}"),
                    Style::default().fg(Color::Green),
                ))
            } else if text.starts_with("The cluster would NOT") {
                Line::from(Span::styled(
                    format!("✗ {text}"),
                    Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
                ))
            } else {
                Line::from(text)
            });
        }
        f.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(Block::bordered().title(" What would happen ")),
            result,
        );
    }

    fn draw_layout(&self, f: &mut Frame, area: Rect) {
        let Some(view) = &self.data.layout else {
            f.render_widget(Paragraph::new("Waiting for the layout..."), area);
            return;
        };
        let wide = area.width >= 120;
        let ring_rows = view
            .layout
            .roles
            .values()
            .filter(|r| r.capacity.is_some())
            .count() as u16
            + 1;
        // Every node first, then the staged changes (short when there are
        // none); the ring takes what is left, up to what it needs.
        let node_rows = self.nodes().len() as u16 + 3;
        let preview_rows = if view.preview.is_some() { 5 } else { 3 };
        let [nodes, ring, preview] = Layout::vertical([
            Constraint::Min(node_rows.min(area.height.saturating_sub(preview_rows + 3))),
            Constraint::Max(ring_rows + 2),
            Constraint::Length(preview_rows),
        ])
        .areas(area);
        let staged = view.layout.effective_staged();
        let report = view.preview.as_ref().and_then(|p| p.as_ref().ok());
        let rows: Vec<Row> = self
            .nodes()
            .into_iter()
            .map(|n| {
                let (zone, cap) = role_cells(n);
                let change = match staged.get(&n.id) {
                    Some(StagedRole::Set(r)) => format!(
                        "→ {} {}",
                        r.zone,
                        r.capacity
                            .map(format_bytes)
                            .unwrap_or_else(|| "gateway".into())
                    ),
                    Some(StagedRole::Remove) => "→ remove".into(),
                    _ => String::new(),
                };
                let moves = report
                    .and_then(|r| r.moves_per_node.get(&n.id))
                    .map(|m| format!("+{} -{}", m.incoming, m.outgoing))
                    .unwrap_or_default();
                let after = report
                    .and_then(|r| r.partitions_per_node.get(&n.id))
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                let state = if n.up {
                    ratatui::widgets::Cell::from("● up").style(Style::default().fg(Color::Green))
                } else if n.down_since_ms.is_some() {
                    ratatui::widgets::Cell::from("✗ DOWN")
                        .style(Style::default().fg(Color::Red).add_modifier(Modifier::BOLD))
                } else {
                    ratatui::widgets::Cell::from("…").style(Style::default().fg(Color::Yellow))
                };
                Row::new(vec![
                    self.id_text(&n.id, wide).into(),
                    state,
                    zone.into(),
                    cap.into(),
                    n.partitions.to_string().into(),
                    change.into(),
                    after.into(),
                    moves.into(),
                ])
            })
            .collect();
        let (t, mut s) = selectable(
            rows,
            vec![
                Constraint::Length(if wide { 16 } else { 8 }),
                Constraint::Length(6),
                Constraint::Length(self.zone_width()),
                Constraint::Length(8),
                Constraint::Length(5),
                Constraint::Length(16),
                Constraint::Length(5),
                Constraint::Min(9),
            ],
            vec![
                "ID", "STATE", "ZONE", "CAPACITY", "PARTS", "STAGED", "AFTER", "MOVES",
            ],
            format!(" Layout v{}: current and staged ", view.layout.version),
            self.selected[2],
            true,
        );
        f.render_stateful_widget(t, nodes, &mut s);
        self.draw_ring(f, ring);

        let mut lines = Vec::new();
        match &view.preview {
            None => lines.push(Line::from(
                "Nothing staged: n adds a node, e edits the selected one, d removes it.",
            )),
            Some(Err(e)) => lines.push(Line::from(Span::styled(
                format!("✗ The staged layout cannot be applied: {e}"),
                Style::default().fg(Color::Red),
            ))),
            Some(Ok(r)) => {
                let before = format_bytes(view.layout.usable_capacity());
                lines.push(Line::from(format!(
                    "Preview of v{}: usable capacity {before} → {}, {} partition replicas move, zones per partition ≥ {}",
                    view.layout.version + 1,
                    format_bytes(r.usable_capacity),
                    r.moves,
                    r.min_zone_spread
                )));
                for n in r.notes.iter().take(2) {
                    lines.push(Line::from(format!("  {n}")));
                }
                lines.push(Line::from(Span::styled(
                    "a applies (after a confirmation), r reverts",
                    bold(),
                )));
            }
        }
        f.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(Block::bordered().title(" Staged changes ")),
            preview,
        );
    }

    /// The ring: one line per node of the layout, the 256 partitions
    /// left to right (several per cell on narrow screens), a cell filled
    /// (`█`, in its zone's colour) where the node holds them, half (`▒`)
    /// where it holds some; a last line marks partitions with a replica
    /// down (`!`) or without a write quorum (`X`).
    fn draw_ring(&self, f: &mut Frame, area: Rect) {
        let (Some(view), Some(st)) = (&self.data.layout, &self.data.status) else {
            return;
        };
        let l = &view.layout;
        let mut zones: Vec<String> = l.roles.values().map(|r| r.zone.clone()).collect();
        zones.sort();
        zones.dedup();
        let up = |id: &hangar_common::NodeId| st.nodes.iter().any(|n| n.id == *id && n.up);
        // Zone names whole (up to 16), then 8 digits of the id.
        let zw = self.zone_width() as usize;
        let label = zw + 10;
        let cells = (area.width.saturating_sub(2) as usize)
            .saturating_sub(label)
            .clamp(1, 256);
        let per = 256usize.div_ceil(cells);
        let cells = 256usize.div_ceil(per);
        let mut lines = Vec::new();
        let mut nodes: Vec<(&hangar_common::NodeId, &hangar_common::layout::NodeRole)> = l
            .roles
            .iter()
            .filter(|(_, r)| r.capacity.is_some())
            .collect();
        nodes.sort_by(|a, b| (&a.1.zone, a.0).cmp(&(&b.1.zone, b.0)));
        for (id, role) in nodes {
            let zi = zones.iter().position(|z| *z == role.zone).unwrap_or(0);
            // A node that is down: marked ✗, its share drawn hollow.
            let down = !up(id);
            let style = if down {
                Style::default().fg(Color::Red)
            } else {
                Style::default().fg(ZONE_COLORS[zi % ZONE_COLORS.len()])
            };
            let mut spans = vec![Span::styled(
                format!(
                    "{:<zw$} {:<8}{}",
                    trunc(&role.zone, zw),
                    &id.short()[..8],
                    if down { "✗" } else { " " }
                ),
                style,
            )];
            let row: String = (0..cells)
                .map(|c| {
                    let range = c * per..((c + 1) * per).min(256);
                    let n = range.len();
                    let held = range.filter(|p| l.nodes_of(*p).contains(id)).count();
                    match held {
                        0 => ' ',
                        _ if down => '░',
                        h if h == n => '█',
                        _ => '▒',
                    }
                })
                .collect();
            spans.push(Span::styled(row, style));
            lines.push(Line::from(spans));
        }
        let wq = write_quorum(l.replication_factor);
        let health: String = (0..cells)
            .map(|c| {
                let range = c * per..((c + 1) * per).min(256);
                let mut mark = '·';
                for p in range {
                    let nodes = l.nodes_of(p);
                    let alive = nodes.iter().filter(|n| up(n)).count();
                    if alive < wq {
                        return 'X';
                    }
                    if alive < nodes.len() {
                        mark = '!';
                    }
                }
                mark
            })
            .collect();
        lines.push(Line::from(vec![
            Span::raw(format!("{:<label$}", "health")),
            Span::styled(health, Style::default().fg(Color::Yellow)),
        ]));
        f.render_widget(
            Paragraph::new(lines).block(Block::bordered().title(format!(
                " Ring, 256 parts{} · ✗░ node down · ! a copy down · X cannot write ",
                if per > 1 {
                    format!(", {per} per cell")
                } else {
                    String::new()
                }
            ))),
            area,
        );
    }

    fn draw_buckets(&self, f: &mut Frame, area: Rect) {
        let wide = area.width >= 120;
        let [left, right] = if wide {
            Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area)
        } else {
            Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area)
        };
        let rows: Vec<Row> = self
            .buckets()
            .into_iter()
            .map(|b| {
                let quota = match (b.quota_max_size, b.quota_max_objects) {
                    (None, None) => "-".to_string(),
                    (s, o) => format!(
                        "{}{}{}",
                        s.map(format_bytes).unwrap_or_default(),
                        if s.is_some() && o.is_some() {
                            " / "
                        } else {
                            ""
                        },
                        o.map(|o| format!("{o} obj")).unwrap_or_default()
                    ),
                };
                Row::new(vec![
                    b.name.clone(),
                    b.objects.to_string(),
                    format_bytes(b.bytes),
                    quota,
                    b.keys
                        .iter()
                        .map(|k| {
                            format!(
                                "{}:{}{}{}",
                                k.key_name,
                                if k.read { "r" } else { "" },
                                if k.write { "w" } else { "" },
                                if k.owner { "o" } else { "" }
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(" "),
                    if b.website { "yes" } else { "" }.to_string(),
                ])
            })
            .collect();
        let (t, mut s) = selectable(
            rows,
            vec![
                Constraint::Length(14),
                Constraint::Length(7),
                Constraint::Length(9),
                Constraint::Length(10),
                Constraint::Min(10),
                Constraint::Length(4),
            ],
            vec!["BUCKET", "OBJECTS", "SIZE", "QUOTA", "KEYS", "WEB"],
            " Buckets ".into(),
            self.selected[3],
            !self.keys_focus,
        );
        f.render_stateful_widget(t, left, &mut s);
        let rows: Vec<Row> = self
            .keys()
            .into_iter()
            .map(|k| {
                Row::new(vec![
                    k.name.clone(),
                    k.access_key_id.clone(),
                    k.buckets
                        .iter()
                        .map(|g| g.bucket.clone())
                        .collect::<Vec<_>>()
                        .join(" "),
                ])
            })
            .collect();
        let (t, mut s) = selectable(
            rows,
            vec![
                Constraint::Length(12),
                Constraint::Length(26),
                Constraint::Min(8),
            ],
            vec!["KEY", "ACCESS KEY ID", "BUCKETS"],
            " Access keys ".into(),
            self.selected[3],
            self.keys_focus,
        );
        f.render_stateful_widget(t, right, &mut s);
    }

    fn draw_workers(&self, f: &mut Frame, area: Rect) {
        let [list, work] =
            Layout::vertical([Constraint::Min(4), Constraint::Length(6)]).areas(area);
        let rows: Vec<Row> = self
            .data
            .workers
            .iter()
            .map(|w| {
                Row::new(vec![
                    w.name.clone(),
                    if w.paused {
                        "‖ paused"
                    } else {
                        "▶ running"
                    }
                    .to_string(),
                    w.progress.clone(),
                ])
            })
            .collect();
        let (t, mut s) = selectable(
            rows,
            vec![
                Constraint::Length(16),
                Constraint::Length(10),
                Constraint::Min(20),
            ],
            vec!["WORKER", "STATE", "PROGRESS"],
            " Background workers (this node) ".into(),
            self.selected[4],
            true,
        );
        f.render_stateful_widget(t, list, &mut s);
        self.draw_work(f, work);
    }

    fn draw_events(&self, f: &mut Frame, area: Rect) {
        let skip = self.selected[5];
        let lines: Vec<Line> = self
            .events()
            .into_iter()
            .skip(skip)
            .map(|e| {
                let t = event_time(self.now_ms, e.at_ms);
                if e.warn {
                    Line::from(Span::styled(
                        format!("{t} ! {}", e.text),
                        Style::default().fg(Color::Red),
                    ))
                } else {
                    Line::from(format!("{t}   {}", e.text))
                }
            })
            .collect();
        let lines = if lines.is_empty() {
            vec![Line::from(
                "Nothing recorded yet: failures, layout changes and repairs show here.",
            )]
        } else {
            lines
        };
        f.render_widget(
            Paragraph::new(lines).block(Block::bordered().title(" Events (newest first, UTC) ")),
            area,
        );
    }

    /// Background work of the connected node: data moves after a layout
    /// change and the scrub as gauges, resync and tables as counts.
    fn draw_work(&self, f: &mut Frame, area: Rect) {
        let block = Block::bordered().title(" Background work (this node) ");
        let inner = block.inner(area);
        f.render_widget(block, area);
        let Some(st) = &self.data.status else { return };
        draw_work_lines(st, self.rates, f, inner);
    }

    fn draw_overlay(&self, f: &mut Frame) {
        let area = f.area();
        let popup = |w: u16, h: u16| {
            let w = w.min(area.width.saturating_sub(2));
            let h = h.min(area.height.saturating_sub(2));
            Rect::new(
                area.x + (area.width - w) / 2,
                area.y + (area.height - h) / 2,
                w,
                h,
            )
        };
        match &self.overlay {
            Overlay::None | Overlay::Command(_) => {}
            Overlay::Help => {
                let lines = super::keys::help_lines(self.tab);
                let r = popup(72, lines.len() as u16 + 2);
                f.render_widget(Clear, r);
                f.render_widget(
                    Paragraph::new(lines.into_iter().map(Line::from).collect::<Vec<_>>())
                        .block(Block::bordered().title(" Keys (any key closes) ")),
                    r,
                );
            }
            Overlay::Confirm { lines, .. } => {
                let mut text: Vec<Line> = lines.iter().map(|l| Line::from(l.as_str())).collect();
                text.push(Line::from(""));
                text.push(Line::from(Span::styled("y yes · n no", bold())));
                let r = popup(70, text.len() as u16 + 4);
                f.render_widget(Clear, r);
                f.render_widget(
                    Paragraph::new(text)
                        .wrap(Wrap { trim: false })
                        .block(Block::bordered().title(" Confirm ")),
                    r,
                );
            }
            Overlay::Secret { text, .. } => {
                // Wrapped, never cut: the secret must be copyable whole at
                // 80 columns.
                let w = area.width.saturating_sub(2);
                let inner = w.saturating_sub(2) as usize;
                let mut lines: Vec<Line> =
                    text.lines().map(|l| Line::from(l.to_string())).collect();
                lines.push(Line::from(""));
                lines.push(Line::from(Span::styled(
                    "Enter closes (the secret can be shown again: s in the key list) · w writes this to a file only you can read",
                    bold(),
                )));
                let rows: usize = text.lines().map(|l| wrapped_lines(l, inner)).sum::<usize>()
                    + 1
                    + wrapped_lines(
                        "Enter closes (the secret can be shown again: s in the key list) · w writes this to a file only you can read",
                        inner,
                    );
                let r = popup(w, rows as u16 + 2);
                f.render_widget(Clear, r);
                f.render_widget(
                    Paragraph::new(lines)
                        .wrap(Wrap { trim: false })
                        .block(Block::bordered().title(" Access key: copy the secret now ")),
                    r,
                );
            }
            Overlay::Output { title, text } => {
                let lines: Vec<Line> = text.lines().map(Line::from).collect();
                let r = popup(area.width.saturating_sub(4), lines.len() as u16 + 3);
                f.render_widget(Clear, r);
                f.render_widget(
                    Paragraph::new(lines).block(Block::bordered().title(title.as_str())),
                    r,
                );
            }
            Overlay::Form(form) => {
                let mut lines = Vec::new();
                for (i, fl) in form.fields.iter().enumerate() {
                    let focus = i == form.focus;
                    lines.push(Line::from(vec![
                        Span::raw(if focus { "> " } else { "  " }),
                        Span::styled(format!("{:<12}", fl.label), bold()),
                        Span::raw(format!("{}{}", fl.value, if focus { "_" } else { "" })),
                    ]));
                    lines.push(Line::from(format!("  {:<12}{}", "", fl.hint)));
                }
                lines.push(Line::from(""));
                match &form.problem {
                    Some((i, p)) => lines.push(Line::from(Span::styled(
                        format!("✗ {}: {p}", form.fields[*i].label),
                        Style::default().fg(Color::Red),
                    ))),
                    None => lines.push(Line::from(Span::styled(
                        "✓ ready: Enter to go",
                        Style::default().fg(Color::Green),
                    ))),
                }
                lines.push(Line::from("↑/↓ next field · Enter go · Esc cancel"));
                // Long values wrap: count the rows they take.
                let inner = popup(76, 1).width.saturating_sub(2).max(1) as usize;
                let rows: usize = lines.iter().map(|l| l.width().max(1).div_ceil(inner)).sum();
                let r = popup(76, rows as u16 + 2);
                f.render_widget(Clear, r);
                f.render_widget(
                    Paragraph::new(lines)
                        .wrap(Wrap { trim: false })
                        .block(Block::bordered().title(form.title.as_str())),
                    r,
                );
            }
        }
    }
}

/// The background-work lines (gauges and counts) of a node.
pub fn draw_work_lines(st: &ClusterStatus, rates: Option<(f64, f64)>, f: &mut Frame, inner: Rect) {
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

/// At most `n` characters of `s`.
fn trunc(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
