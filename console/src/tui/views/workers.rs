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

impl App {
    /// This view's keys (see `keys.rs` for their table).
    pub(in crate::tui) fn workers_key(&mut self, c: char) {
        match c {
            'p' => {
                if let Some(w) = self.data.workers.get(self.sel()) {
                    let (name, pause) = (w.name.clone(), !w.paused);
                    let verb = if pause { "pause" } else { "resume" };
                    self.start(
                        Action::WorkerPause(name.clone(), pause),
                        format!("{verb} {name}"),
                    );
                }
            }
            's' | 't' | 'b' => {
                let (what, repair) = match c {
                    's' => (
                        "Check every block of this node against its hash (scrub)?",
                        Repair::Scrub,
                    ),
                    't' => (
                        "Compare this node's metadata with the other nodes' copies now?",
                        Repair::Tables,
                    ),
                    _ => (
                        "Re-check where every local block belongs and fetch missing ones?",
                        Repair::Blocks,
                    ),
                };
                self.overlay = Overlay::Confirm {
                    lines: vec![
                        what.into(),
                        "It runs in the background; progress shows here.".into(),
                    ],
                    action: Action::Repair(repair),
                };
            }
            _ => {}
        }
    }
}
