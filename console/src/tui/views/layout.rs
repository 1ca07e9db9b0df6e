//! View 3, Layout: current and staged roles, the ring by node and zone,
//! the preview of the staged changes.

use super::super::draw::*;
use super::super::*;

impl App {
    pub(in crate::tui) fn draw_layout(&self, f: &mut Frame, area: Rect) {
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
                    "Preview of v{}: usable capacity {before} → {}, {} copies of parts of the data move, each part in ≥ {} zones",
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
    pub(in crate::tui) fn draw_ring(&self, f: &mut Frame, area: Rect) {
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
}

impl App {
    /// This view's keys (see `keys.rs` for their table).
    pub(in crate::tui) fn layout_key(&mut self, c: char) {
        match c {
            'n' => self.overlay = Overlay::Form(Form::new(FormKind::Onboard, self)),
            'e' => {
                if let Some(id) = self.selected_node() {
                    self.overlay = Overlay::Form(Form::new(FormKind::EditRole(id), self));
                }
            }
            'd' => {
                if let Some(id) = self.selected_node() {
                    self.overlay = Overlay::Confirm {
                        lines: self.removal_lines(id),
                        action: Action::Stage(id, StagedRole::Remove),
                    };
                }
            }
            'a' => self.confirm_apply(),
            'w' => self.confirm_skip_dead(),
            'r' => {
                self.overlay = Overlay::Confirm {
                    lines: vec![REVERT_QUESTION.into()],
                    action: Action::Revert,
                }
            }
            _ => {}
        }
    }
}
