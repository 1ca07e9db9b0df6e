//! Drawing: the frame around the views (tabs, header, advice, message and
//! key hints), windows, and what the views share; each view draws itself
//! in `views/`. Everything from the [`App`] state only. Symbols
//! carry the meaning and colour only underlines it (`●` up, `✗` down, `!`
//! degraded), so the console reads on a monochrome terminal too. Fits 80x24
//! and uses whatever more there is.

// What the views use too, re-exported for them.
pub(in crate::tui) use hangar_common::layout::cluster::{StagedRole, write_quorum};
pub(in crate::tui) use hangar_common::rpc::{ClusterStatus, NodeStatus};
pub(in crate::tui) use hangar_common::size::format_bytes;
pub(in crate::tui) use ratatui::Frame;
pub(in crate::tui) use ratatui::layout::{Constraint, Layout, Rect};
pub(in crate::tui) use ratatui::style::{Color, Modifier, Style};
pub(in crate::tui) use ratatui::text::{Line, Span};
pub(in crate::tui) use ratatui::widgets::{
    Block, Clear, Gauge, Paragraph, Row, Table, TableState, Tabs, Wrap,
};

use super::{App, Overlay, Tab};

pub(in crate::tui) const ZONE_COLORS: [Color; 6] = [
    Color::Cyan,
    Color::Magenta,
    Color::Yellow,
    Color::Green,
    Color::Blue,
    Color::LightRed,
];

pub(in crate::tui) fn bold() -> Style {
    Style::default().add_modifier(Modifier::BOLD)
}

/// "3 min ago" between two instants.
pub(in crate::tui) fn ago(now_ms: u64, t_ms: u64) -> String {
    let s = now_ms.saturating_sub(t_ms) / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// How many lines `text` takes once word-wrapped at `width` columns.
pub(in crate::tui) fn wrapped_lines(text: &str, width: usize) -> usize {
    let width = width.max(1);
    let mut lines = 1;
    // Leading spaces are kept by the wrapping (an indented hint).
    let mut col = text.chars().take_while(|c| *c == ' ').count();
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
pub(in crate::tui) fn clock_skew(n: &NodeStatus) -> Option<i64> {
    n.clock_offset_ms
        .filter(|o| o.abs() > hangar_common::clock::SKEW_WARN_MS)
}

/// The state cell; `clock` adds a skewed clock to it (on narrow screens,
/// which have no CLOCK column).
pub(in crate::tui) fn state_cell(n: &NodeStatus, now_ms: u64, clock: bool) -> (String, Style) {
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

pub(in crate::tui) fn role_cells(n: &NodeStatus) -> (String, String) {
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

pub(in crate::tui) fn selectable<'a>(
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
            // The reason and what to do are on the advice line.
            (_, Some(_)) => Line::from(vec![
                Span::styled(
                    "✗ Not connected ",
                    Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
                ),
                Span::raw(format!("to {}", self.addr)),
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

    pub(in crate::tui) fn node_rows(&self, marks: bool, wide: bool) -> Vec<Row<'_>> {
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
    pub(in crate::tui) fn id_text(&self, id: &hangar_common::NodeId, wide: bool) -> String {
        let s = id.short();
        if wide { s } else { s[..8].to_string() }
    }

    /// The ZONE column's width: the longest zone name (4 to 16).
    pub(in crate::tui) fn zone_width(&self) -> u16 {
        self.nodes()
            .iter()
            .filter_map(|n| n.role.as_ref().map(|r| r.zone.chars().count()))
            .max()
            .unwrap_or(4)
            .clamp(4, 16) as u16
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
                let w = area.width.saturating_sub(4).min(100);
                let lines = super::keys::help_lines(self.tab, w.saturating_sub(2) as usize);
                let r = popup(w, lines.len() as u16 + 2);
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
                    None if form.validate(self).is_ok() => lines.push(Line::from(Span::styled(
                        "✓ ready: Enter to go",
                        Style::default().fg(Color::Green),
                    ))),
                    None => lines.push(Line::from("Fill in the fields.")),
                }
                lines.push(Line::from("↑/↓ next field · Enter go · Esc cancel"));
                // Long values and hints wrap: count the rows they take, so
                // the key hints at the bottom are never cut.
                let inner = popup(76, 1).width.saturating_sub(2).max(1) as usize;
                let rows: usize = lines
                    .iter()
                    .map(|l| {
                        let text: String = l.spans.iter().map(|s| s.content.as_ref()).collect();
                        wrapped_lines(&text, inner)
                    })
                    .sum();
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

/// At most `n` characters of `s`.
pub(in crate::tui) fn trunc(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
