//! View 6, Events: the connected node's event log with the console's
//! own events, newest first.

use super::super::draw::*;
use super::super::*;

impl App {
    pub(in crate::tui) fn draw_events(&self, f: &mut Frame, area: Rect) {
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
}

/// An event's time: "23:40:01" today, "12-01 23:40:01" before (UTC).
pub(in crate::tui) fn event_time(now_ms: u64, at_ms: u64) -> String {
    let secs = (at_ms / 1000) % 86_400;
    let t = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    let day = at_ms / 86_400_000;
    if day == now_ms / 86_400_000 {
        return t;
    }
    let (_, m, d) = hangar_common::date::civil_from_days(day as i64);
    format!("{m:02}-{d:02} {t}")
}
