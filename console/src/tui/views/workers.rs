//! View 5, Workers: background workers and their counts.

use super::super::draw::*;
use super::super::*;

impl App {
    pub(in crate::tui) fn draw_workers(&self, f: &mut Frame, area: Rect) {
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
}
