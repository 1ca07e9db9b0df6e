//! View 2, What-if: pick nodes or a zone and see what losing them (with
//! the nodes already down) would do.

use super::super::draw::*;
use super::super::*;

impl App {
    pub(in crate::tui) fn draw_what_if(&self, f: &mut Frame, area: Rect) {
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
}

impl App {
    /// This view's keys (see `keys.rs` for their table).
    pub(in crate::tui) fn what_if_key(&mut self, c: char) {
        match c {
            ' ' => {
                if let Some(id) = self.selected_node()
                    && !self.lost.remove(&id)
                {
                    self.lost.insert(id);
                }
            }
            'z' => {
                let zone = self
                    .nodes()
                    .get(self.sel())
                    .and_then(|n| n.role.as_ref().map(|r| r.zone.clone()));
                if let (Some(zone), Some(st)) = (zone, &self.data.status) {
                    let ids: Vec<NodeId> = st
                        .nodes
                        .iter()
                        .filter(|n| n.role.as_ref().is_some_and(|r| r.zone == zone))
                        .map(|n| n.id)
                        .collect();
                    let n = ids.len();
                    if ids.iter().all(|id| self.lost.contains(id)) {
                        ids.iter().for_each(|id| {
                            self.lost.remove(id);
                        });
                        self.message = Some((false, format!("zone {zone} unpicked ({n} nodes)")));
                    } else {
                        self.lost.extend(ids);
                        self.message = Some((
                            false,
                            format!("zone {zone} picked: its {n} node(s) imagined down"),
                        ));
                    }
                }
            }
            'c' => self.lost.clear(),
            _ => {}
        }
    }
}
