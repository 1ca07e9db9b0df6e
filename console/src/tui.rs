//! The full-screen console.
//!
//! One [`App`] state, updated by [`Msg`]s that arrive on one channel from
//! three sources: the keyboard (a blocking reader thread), a refresh task
//! that polls the agent, and a tick. Drawing reads the state and never
//! awaits anything, so the screen stays responsive while calls are in
//! flight or the agent is unreachable.
//!
//! This first version shows the cluster view (nodes, state, layout health)
//! and keeps reconnecting when the agent goes away; the other views of the
//! console (layout editing, buckets, workers, events) build on it.

use std::time::Duration;

use hangar_common::rpc::ClusterStatus;
use ratatui::Frame;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Gauge, Paragraph, Row, Table};
use tokio::sync::mpsc;

use crate::cli::node_state;
use crate::conn::{Target, ctx};

/// How often the console asks the agent for news.
const REFRESH: Duration = Duration::from_secs(1);

pub enum Msg {
    Key(KeyCode, KeyModifiers),
    Status(Box<Result<ClusterStatus, String>>),
    Resize,
}

#[derive(Default)]
pub struct App {
    pub addr: String,
    pub status: Option<ClusterStatus>,
    pub error: Option<String>,
    pub quit: bool,
}

impl App {
    pub fn update(&mut self, msg: Msg) {
        match msg {
            Msg::Key(KeyCode::Char('q'), _) | Msg::Key(KeyCode::Esc, _) => self.quit = true,
            Msg::Key(KeyCode::Char('c'), m) if m.contains(KeyModifiers::CONTROL) => {
                self.quit = true
            }
            Msg::Key(..) | Msg::Resize => {}
            Msg::Status(res) => match *res {
                Ok(st) => {
                    self.status = Some(st);
                    self.error = None;
                }
                Err(e) => self.error = Some(e),
            },
        }
    }

    pub fn draw(&self, f: &mut Frame) {
        let [head, body, work, foot] = Layout::vertical([
            Constraint::Length(3),
            Constraint::Min(3),
            Constraint::Length(6),
            Constraint::Length(1),
        ])
        .areas(f.area());

        let header = match (&self.status, &self.error) {
            (_, Some(e)) => Line::from(vec![
                Span::styled(
                    "Not connected ",
                    Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
                ),
                Span::raw(format!("to {}: {e} (retrying)", self.addr)),
            ]),
            (Some(st), None) => {
                let up = st.nodes.iter().filter(|n| n.up).count();
                let color = if st.health.unavailable > 0 {
                    Color::Red
                } else if st.health.degraded > 0 {
                    Color::Yellow
                } else {
                    Color::Green
                };
                Line::from(vec![
                    Span::raw(format!(
                        "Node {} at {} · layout v{} · {up}/{} nodes up · ",
                        st.node.short(),
                        self.addr,
                        st.layout_version,
                        st.nodes.len()
                    )),
                    Span::styled(st.health.summary(), Style::default().fg(color)),
                ])
            }
            (None, None) => Line::from(format!("Connecting to {}...", self.addr)),
        };
        f.render_widget(
            Paragraph::new(header).block(Block::bordered().title(" Hangar ")),
            head,
        );

        let rows: Vec<Row> = self
            .status
            .iter()
            .flat_map(|st| st.nodes.iter())
            .map(|n| {
                let (zone, cap) = match &n.role {
                    Some(r) => (
                        r.zone.clone(),
                        r.capacity
                            .map(hangar_common::size::format_bytes)
                            .unwrap_or_else(|| "gateway".into()),
                    ),
                    None => ("-".into(), "-".into()),
                };
                let style = if n.up {
                    Style::default()
                } else {
                    Style::default().fg(Color::Red)
                };
                Row::new(vec![
                    n.id.short(),
                    n.addr.clone().unwrap_or_default(),
                    zone,
                    cap,
                    n.partitions.to_string(),
                    node_state(n),
                    n.rtt_ms
                        .filter(|_| !n.is_self)
                        .map(|r| format!("{r:.1} ms"))
                        .unwrap_or_else(|| "-".into()),
                ])
                .style(style)
            })
            .collect();
        let table = Table::new(
            rows,
            [
                Constraint::Length(17),
                Constraint::Length(22),
                Constraint::Length(10),
                Constraint::Length(10),
                Constraint::Length(10),
                Constraint::Length(22),
                Constraint::Length(10),
            ],
        )
        .header(
            Row::new(vec![
                "ID",
                "ADDRESS",
                "ZONE",
                "CAPACITY",
                "PARTITIONS",
                "STATE",
                "RTT",
            ])
            .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(Block::bordered().title(" Cluster "));
        f.render_widget(table, body);
        self.draw_work(f, work);
        f.render_widget(Paragraph::new("q quit"), foot);
    }

    /// Background work of the connected node: data moves after a layout
    /// change and the scrub as gauges, resync and tables as counts.
    fn draw_work(&self, f: &mut Frame, area: ratatui::layout::Rect) {
        let block = Block::bordered().title(" Background work (this node) ");
        let inner = block.inner(area);
        f.render_widget(block, area);
        let Some(st) = &self.status else { return };
        let [moving, scrub, resync, tables] =
            Layout::vertical([Constraint::Length(1); 4]).areas(inner);
        let (ratio, label) = if st.live_versions.len() > 1 {
            let total = st.nodes_in_transition.max(1);
            (
                st.nodes_synced as f64 / total as f64,
                format!(
                    "data moving to layout v{}: {} of {} nodes have pushed their data",
                    st.layout_version, st.nodes_synced, total
                ),
            )
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
                    "scrub: {} of {} blocks checked",
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
            Paragraph::new(format!(
                "resync: {} blocks fetched, {} deleted, {} handed over, {} errors retried",
                b.fetched, b.deleted, b.handed_over, b.errors
            )),
            resync,
        );
        let items: u64 = st.tables.iter().map(|t| t.items).sum();
        let merkle: u64 = st.tables.iter().map(|t| t.merkle_queue).sum();
        let gc: u64 = st.tables.iter().map(|t| t.gc_queue).sum();
        f.render_widget(
            Paragraph::new(format!(
                "metadata: {items} items in {} tables, {merkle} changes waiting for the Merkle trees, {gc} deletions to collect",
                st.tables.len()
            )),
            tables,
        );
    }
}

/// Poll the agent forever, reconnecting as needed.
async fn refresher(target: Target, tx: mpsc::Sender<Msg>) {
    let mut client = None;
    loop {
        if client.is_none() {
            match target.connect().await {
                Ok((c, _)) => client = Some(c),
                Err(e) => {
                    if tx
                        .send(Msg::Status(Box::new(Err(format!("{e:#}")))))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        if let Some(c) = &client {
            let msg = match c.status(ctx()).await {
                Ok(st) => Ok(st),
                Err(e) => {
                    client = None;
                    Err(e.to_string())
                }
            };
            if tx.send(Msg::Status(Box::new(msg))).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(REFRESH).await;
    }
}

pub async fn run(target: Target) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::channel(64);
    let mut app = App {
        addr: target.addr.clone(),
        ..App::default()
    };
    tokio::spawn(refresher(target, tx.clone()));
    let keys = tx.clone();
    std::thread::spawn(move || {
        loop {
            match event::read() {
                Ok(Event::Key(k)) if k.kind == KeyEventKind::Press => {
                    if keys.blocking_send(Msg::Key(k.code, k.modifiers)).is_err() {
                        return;
                    }
                }
                Ok(Event::Resize(..)) => {
                    if keys.blocking_send(Msg::Resize).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });

    let mut terminal = ratatui::init();
    let res = async {
        loop {
            terminal.draw(|f| app.draw(f))?;
            match rx.recv().await {
                Some(msg) => app.update(msg),
                None => break,
            }
            if app.quit {
                break;
            }
        }
        anyhow::Ok(())
    }
    .await;
    ratatui::restore();
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangar_common::NodeId;
    use hangar_common::layout::cluster::RingHealth;
    use hangar_common::rpc::NodeStatus;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn node(b: u8, up: bool) -> NodeStatus {
        NodeStatus {
            id: NodeId([b; 32]),
            addr: Some(format!("10.0.0.{b}:3901")),
            is_self: b == 1,
            up,
            down_since_ms: (!up).then_some(hangar_common::crdt::now_msec()),
            last_seen_ms: None,
            rtt_ms: Some(1.5),
            agent_version: None,
            role: None,
            staged: None,
            layout_version: Some(1),
            partitions: 0,
        }
    }

    fn render(app: &App) -> String {
        let mut t = Terminal::new(TestBackend::new(110, 16)).unwrap();
        t.draw(|f| app.draw(f)).unwrap();
        let buf = t.backend().buffer().clone();
        (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn cluster_view_lists_nodes_and_marks_the_down_one() {
        let mut app = App {
            addr: "127.0.0.1:3901".into(),
            ..App::default()
        };
        app.update(Msg::Status(Box::new(Ok(ClusterStatus {
            node: NodeId([1; 32]),
            agent_version: "0.1.0".into(),
            layout_version: 1,
            replication_factor: 3,
            health: RingHealth {
                healthy: 0,
                degraded: 256,
                unavailable: 0,
            },
            nodes: vec![node(1, true), node(2, false)],
            tables: Vec::new(),
            live_versions: vec![1, 2],
            nodes_synced: 1,
            nodes_in_transition: 2,
            blocks: hangar_common::rpc::BlockWorkerStats {
                scrub_running: true,
                scrub_checked: 3,
                scrub_total: 4,
                ..Default::default()
            },
        }))));
        let screen = render(&app);
        assert!(
            screen.contains("2 nodes up") || screen.contains("1/2 nodes up"),
            "{screen}"
        );
        assert!(screen.contains("0101010101010101"), "{screen}");
        assert!(screen.contains("DOWN since"), "{screen}");
        assert!(screen.contains("degraded"), "{screen}");
        assert!(
            screen.contains("1 of 2 nodes have pushed their data"),
            "{screen}"
        );
        assert!(screen.contains("scrub: 3 of 4 blocks checked"), "{screen}");
    }

    #[test]
    fn connection_errors_are_shown_and_q_quits() {
        let mut app = App {
            addr: "127.0.0.1:3901".into(),
            ..App::default()
        };
        app.update(Msg::Status(Box::new(Err("connection refused".into()))));
        assert!(render(&app).contains("Not connected"));
        app.update(Msg::Key(KeyCode::Char('q'), KeyModifiers::NONE));
        assert!(app.quit);
    }
}
