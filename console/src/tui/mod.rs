//! The full-screen console.
//!
//! One [`App`] state, changed only by [`Msg`]s that arrive on one channel
//! from the keyboard (a blocking reader thread), the refresh task that
//! polls the agent, and the action task that runs what the operator asked
//! for. [`App::update`] never awaits: actions it decides on go to an
//! outbox that the run loop hands to the action task, and their outcome
//! comes back as a message. Drawing reads the state only, so the screen
//! keeps redrawing while calls are in flight or the agent is unreachable,
//! and every view can be rendered in tests from a fixed state.
//!
//! Views: `draw.rs`; forms with validation as typed: `form.rs`; talking to
//! the agent: `tasks.rs`.

mod draw;
mod form;
pub mod keys;
mod tasks;
#[cfg(test)]
mod tests;
mod views;

use std::collections::{BTreeSet, VecDeque};

use hangar_common::NodeId;
use hangar_common::layout::NodeRole;
use hangar_common::layout::cluster::StagedRole;
use hangar_common::rpc::{
    BucketInfo, ClusterStatus, KeyInfo, LayoutView, PermissionChange, Repair, WorkerInfo,
};
use hangar_common::{PeerAddr, crdt::now_msec};
use ratatui::crossterm::event::{KeyCode, KeyModifiers};

pub use self::form::{Form, FormKind};
pub use self::tasks::{Session, run};

/// The views, in tab order (number keys 1-6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Cluster,
    WhatIf,
    Layout,
    Buckets,
    Workers,
    Events,
}

impl Tab {
    pub const ALL: [Tab; 6] = [
        Tab::Cluster,
        Tab::WhatIf,
        Tab::Layout,
        Tab::Buckets,
        Tab::Workers,
        Tab::Events,
    ];
    pub fn title(self) -> &'static str {
        match self {
            Tab::Cluster => "Cluster",
            Tab::WhatIf => "What-if",
            Tab::Layout => "Layout",
            Tab::Buckets => "Buckets & keys",
            Tab::Workers => "Workers",
            Tab::Events => "Events",
        }
    }
    fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }
}

/// What the console knows of the cluster, refreshed every second.
#[derive(Clone, Debug, Default)]
pub struct Data {
    pub status: Option<ClusterStatus>,
    pub layout: Option<LayoutView>,
    /// Buckets and keys: `None` when this refresh could not read them
    /// (the last known lists are kept, see [`App::refreshed`]).
    pub buckets: Option<Vec<BucketInfo>>,
    pub keys: Option<Vec<KeyInfo>>,
    pub workers: Vec<WorkerInfo>,
    /// Why buckets and keys could not be read (quorum lost), if so.
    pub tables_error: Option<String>,
    /// The connected node's event log, newest first: what happened
    /// before the console was opened too.
    pub cluster_events: Vec<hangar_common::events::ClusterEvent>,
}

/// Something the operator asked for, run by the action task.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Connect a new node and stage its role.
    Onboard {
        peer: PeerAddr,
        role: NodeRole,
    },
    Stage(NodeId, StagedRole),
    Apply(u64),
    Revert,
    /// Let the move to this version complete without the nodes down.
    SkipDead(u64),
    BucketCreate(String),
    BucketDelete(String),
    /// Enable (true) or suspend (false) a bucket's versioning.
    BucketVersioning(String, bool),
    KeyCreate(String),
    KeyDelete(String),
    /// Show a key's secret again.
    KeySecret(String),
    /// Write a key's client setup to a file only its owner may read.
    WriteSecret {
        path: std::path::PathBuf,
        text: String,
    },
    Grant {
        bucket: String,
        key: String,
        perm: PermissionChange,
        allow: bool,
    },
    Quota {
        bucket: String,
        max_size: Option<u64>,
        max_objects: Option<u64>,
    },
    WorkerPause(String, bool),
    Repair(Repair),
    /// A CLI subcommand typed at the `:` prompt.
    Cli(Vec<String>),
    /// Talk to another agent from now on.
    Switch(String),
    /// Leave the console (asked first where leaving does more, as in
    /// `hangar demo`).
    Quit,
}

/// How an action went.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub result: Result<String, String>,
    /// A new key's secret, shown once.
    pub secret: Option<(String, String)>,
    /// Output to show in a window (`:` commands).
    pub output: Option<String>,
    /// The view to show next.
    pub then: Option<Tab>,
}

pub enum Msg {
    Key(KeyCode, KeyModifiers),
    Refreshed(Box<Result<Data, String>>),
    Done(Box<Outcome>),
    Resize,
}

/// A window over the current view.
#[derive(Clone, Debug, PartialEq)]
pub enum Overlay {
    None,
    Help,
    Confirm {
        lines: Vec<String>,
        action: Action,
    },
    Form(Form),
    /// Text to read (command output); any key closes.
    Output {
        title: String,
        text: String,
    },
    /// A key's secret and client setup: only Enter closes it (a stray key
    /// must not lose a secret shown once), `w` writes it to a file.
    Secret {
        id: String,
        text: String,
    },
    /// The `:` command line being typed.
    Command(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub at_ms: u64,
    pub warn: bool,
    pub text: String,
}

/// The question before dropping the staged layout changes.
const REVERT_QUESTION: &str = "Drop every staged layout change?";

/// The question before deleting a key.
fn key_delete_lines(name: &str, id: &str) -> Vec<String> {
    vec![
        format!("Delete access key {name} ({id})?"),
        "Clients using it lose access at once.".into(),
    ]
}

/// The question before deleting a bucket.
fn bucket_delete_lines(name: &str) -> Vec<String> {
    vec![
        format!("Delete bucket {name}?"),
        "Only an empty bucket can be deleted.".into(),
    ]
}

/// What the console asks before turning a bucket's versioning on or off.
fn versioning_lines(name: &str, enable: bool) -> Vec<String> {
    if enable {
        vec![
            format!("Turn versioning on for bucket {name}?"),
            "Every overwrite and delete then keeps the version before it".into(),
            "(and its space) until deleted by version id or by a lifecycle rule.".into(),
            "It can be suspended later, never turned off.".into(),
        ]
    } else {
        vec![
            format!("Suspend versioning of bucket {name}?"),
            "Versions kept stay; new writes replace the \"null\" version.".into(),
        ]
    }
}

/// Events kept for the Events view.
const MAX_EVENTS: usize = 500;

pub struct App {
    /// The agent address the console talks to.
    pub addr: String,
    pub data: Data,
    /// Why the last refresh failed, while it keeps failing.
    pub error: Option<String>,
    pub tab: Tab,
    pub overlay: Overlay,
    /// Selected row, per view.
    pub selected: [usize; 6],
    /// Buckets & keys: whether the key list (not the bucket list) has
    /// the focus.
    pub keys_focus: bool,
    /// The `/` filter of lists, and whether it is being typed.
    pub filter: String,
    pub filtering: bool,
    /// What-if: the nodes imagined down.
    pub lost: BTreeSet<NodeId>,
    pub events: VecDeque<Event>,
    /// An action is running (its description).
    pub busy: Option<String>,
    /// The last outcome, shown in the footer.
    pub message: Option<(bool, String)>,
    /// Clock of the view ("down since ... ago"), read at each refresh.
    pub now_ms: u64,
    /// Where `now_ms` comes from (tests fix it).
    pub clock: fn() -> u64,
    /// Throughput of the block workers between the last two refreshes:
    /// blocks per second (resync fetched + handed over, scrub checked).
    pub rates: Option<(f64, f64)>,
    last_refresh_ms: u64,
    /// Actions decided by `update`, for the run loop to start.
    pub outbox: Vec<Action>,
    pub quit: bool,
    /// Asked before quitting, when quitting does more than close the
    /// console (`hangar demo` deletes its cluster).
    pub quit_question: Option<Vec<String>>,
    /// Shown on the message line while there is no message (where clients
    /// connect, for instance).
    pub note: Option<String>,
    /// A bucket or key being created (by name): selected once it shows.
    pending_select: Option<String>,
}

impl App {
    pub fn new(addr: &str) -> App {
        App {
            addr: addr.to_string(),
            data: Data::default(),
            error: None,
            tab: Tab::Cluster,
            overlay: Overlay::None,
            selected: [0; 6],
            keys_focus: false,
            filter: String::new(),
            filtering: false,
            lost: BTreeSet::new(),
            events: VecDeque::new(),
            busy: None,
            message: None,
            now_ms: now_msec(),
            clock: now_msec,
            rates: None,
            last_refresh_ms: 0,
            outbox: Vec::new(),
            quit: false,
            quit_question: None,
            note: None,
            pending_select: None,
        }
    }

    fn event(&mut self, warn: bool, text: impl Into<String>) {
        self.events.push_front(Event {
            at_ms: self.now_ms,
            warn,
            text: text.into(),
        });
        self.events.truncate(MAX_EVENTS);
    }

    fn start(&mut self, action: Action, what: impl Into<String>) {
        if let Action::BucketCreate(name) | Action::KeyCreate(name) = &action {
            self.pending_select = Some(name.clone());
        }
        let what = what.into();
        self.busy = Some(what);
        self.outbox.push(action);
    }

    pub fn update(&mut self, msg: Msg) {
        match msg {
            Msg::Resize => {}
            Msg::Refreshed(res) => self.refreshed(*res),
            Msg::Done(outcome) => self.done(*outcome),
            Msg::Key(code, mods) => self.key(code, mods),
        }
    }

    fn refreshed(&mut self, res: Result<Data, String>) {
        self.now_ms = (self.clock)().max(self.now_ms);
        match res {
            Ok(data) => {
                if let Some(e) = self.error.take() {
                    self.event(false, format!("connected to {} again ({e})", self.addr));
                }
                self.note_rates(&data);
                let mut data = data;
                // Lists that could not be read: keep the last known ones.
                if data.buckets.is_none() {
                    data.buckets = self.data.buckets.take();
                }
                if data.keys.is_none() {
                    data.keys = self.data.keys.take();
                }
                // The selection follows the item, not the row number.
                let kept: Vec<Option<String>> =
                    Tab::ALL.iter().map(|t| self.selected_id(*t)).collect();
                self.data = data;
                for (i, tab) in Tab::ALL.iter().enumerate() {
                    if let Some(id) = &kept[i]
                        && let Some(p) = self.position_of(*tab, id)
                    {
                        self.selected[i] = p;
                    }
                    let rows = self.rows(*tab);
                    self.selected[i] = self.selected[i].min(rows.saturating_sub(1));
                }
                if let Some(name) = self.pending_select.clone()
                    && let Some(p) = self.position_of(Tab::Buckets, &name)
                {
                    self.selected[Tab::Buckets.index()] = p;
                    self.pending_select = None;
                }
            }
            Err(e) => {
                if self.error.is_none() {
                    self.event(true, format!("lost the connection to {}: {e}", self.addr));
                }
                self.error = Some(e);
            }
        }
    }

    /// Block worker throughput from two refreshes.
    fn note_rates(&mut self, new: &Data) {
        let prev = std::mem::replace(&mut self.last_refresh_ms, self.now_ms);
        let (Some(old), Some(st)) = (&self.data.status, &new.status) else {
            return;
        };
        let secs = self.now_ms.saturating_sub(prev) as f64 / 1000.0;
        if prev == 0 || secs <= 0.0 || old.node != st.node {
            return;
        }
        let moved = |b: &hangar_common::rpc::BlockWorkerStats| (b.fetched + b.handed_over) as f64;
        let resync = (moved(&st.blocks) - moved(&old.blocks)).max(0.0) / secs;
        let scrub =
            (st.blocks.scrub_checked as f64 - old.blocks.scrub_checked as f64).max(0.0) / secs;
        self.rates = Some((resync, scrub));
    }

    fn done(&mut self, o: Outcome) {
        self.busy = None;
        match &o.result {
            Ok(text) => {
                self.event(false, text.clone());
                self.message = Some((false, text.clone()));
            }
            Err(e) => {
                self.event(true, e.clone());
                self.message = Some((true, e.clone()));
            }
        }
        if let Some((id, secret)) = o.secret {
            let text = self.client_setup(&id, &secret);
            self.overlay = Overlay::Secret { id, text };
        } else if let Some(text) = o.output {
            self.overlay = Overlay::Output {
                title: " Command output ".into(),
                text,
            };
        }
        if let (Some(tab), Ok(_)) = (o.then, &o.result) {
            self.tab = tab;
        }
    }

    /// Rows of the current view's list, after the filter (for selection).
    pub fn rows(&self, tab: Tab) -> usize {
        match tab {
            Tab::Cluster | Tab::WhatIf | Tab::Layout => self.nodes().len(),
            Tab::Buckets if self.keys_focus => self.keys().len(),
            Tab::Buckets => self.buckets().len(),
            Tab::Workers => self.data.workers.len(),
            Tab::Events => self.events().len(),
        }
    }

    /// What the selected row of a view is (a node id, a bucket name, a
    /// key id, a worker name), to find it again after a refresh.
    fn selected_id(&self, tab: Tab) -> Option<String> {
        let i = self.selected[tab.index()];
        match tab {
            Tab::Cluster | Tab::WhatIf | Tab::Layout => {
                self.nodes().get(i).map(|n| n.id.to_string())
            }
            Tab::Buckets if self.keys_focus => self.keys().get(i).map(|k| k.access_key_id.clone()),
            Tab::Buckets => self.buckets().get(i).map(|b| b.name.clone()),
            Tab::Workers => self.data.workers.get(i).map(|w| w.name.clone()),
            Tab::Events => None,
        }
    }

    /// Where the item `id` is in a view's list now (keys also by name).
    fn position_of(&self, tab: Tab, id: &str) -> Option<usize> {
        match tab {
            Tab::Cluster | Tab::WhatIf | Tab::Layout => {
                self.nodes().iter().position(|n| n.id.to_string() == id)
            }
            Tab::Buckets if self.keys_focus => self
                .keys()
                .iter()
                .position(|k| k.access_key_id == id || k.name == id),
            Tab::Buckets => self.buckets().iter().position(|b| b.name == id),
            Tab::Workers => self.data.workers.iter().position(|w| w.name == id),
            Tab::Events => None,
        }
    }

    fn matches(&self, text: &str) -> bool {
        self.filter.is_empty() || text.to_lowercase().contains(&self.filter.to_lowercase())
    }

    /// Nodes as listed in the node views (filtered).
    pub fn nodes(&self) -> Vec<&hangar_common::rpc::NodeStatus> {
        self.data
            .status
            .iter()
            .flat_map(|s| s.nodes.iter())
            .filter(|n| {
                let zone = n.role.as_ref().map(|r| r.zone.as_str()).unwrap_or("");
                self.matches(&format!(
                    "{} {} {zone}",
                    n.id,
                    n.addr.as_deref().unwrap_or("")
                ))
            })
            .collect()
    }

    pub fn buckets(&self) -> Vec<&BucketInfo> {
        self.data
            .buckets
            .iter()
            .flatten()
            .filter(|b| self.matches(&b.name))
            .collect()
    }

    pub fn keys(&self) -> Vec<&KeyInfo> {
        self.data
            .keys
            .iter()
            .flatten()
            .filter(|k| self.matches(&format!("{} {}", k.access_key_id, k.name)))
            .collect()
    }

    /// The connected node's event log and the console's own events
    /// (connection lost and back), newest first.
    pub fn events(&self) -> Vec<Event> {
        let mut all: Vec<Event> = self
            .data
            .cluster_events
            .iter()
            .map(|e| Event {
                at_ms: e.at_ms,
                warn: e.warn,
                text: e.text.clone(),
            })
            .chain(self.events.iter().cloned())
            .filter(|e| self.matches(&e.text))
            .collect();
        all.sort_by_key(|e| std::cmp::Reverse(e.at_ms));
        all
    }

    fn sel(&self) -> usize {
        self.selected[self.tab.index()]
    }

    fn selected_node(&self) -> Option<NodeId> {
        self.nodes().get(self.sel()).map(|n| n.id)
    }

    fn selected_bucket(&self) -> Option<String> {
        self.buckets().get(self.sel()).map(|b| b.name.clone())
    }

    fn key(&mut self, code: KeyCode, mods: KeyModifiers) {
        if code == KeyCode::Char('c') && mods.contains(KeyModifiers::CONTROL) {
            self.quit = true;
            return;
        }
        // A window takes the keys first.
        match std::mem::replace(&mut self.overlay, Overlay::None) {
            Overlay::None => {}
            Overlay::Help | Overlay::Output { .. } => return,
            Overlay::Secret { id, text } => {
                match code {
                    KeyCode::Enter => {}
                    KeyCode::Char('w') => {
                        let path = std::path::PathBuf::from(format!("hangar-key-{id}.txt"));
                        self.start(
                            Action::WriteSecret {
                                path: path.clone(),
                                text: text.clone(),
                            },
                            format!("writing {}", path.display()),
                        );
                        self.overlay = Overlay::Secret { id, text };
                    }
                    _ => self.overlay = Overlay::Secret { id, text },
                }
                return;
            }
            Overlay::Confirm { lines, action } => {
                match code {
                    KeyCode::Char('y') | KeyCode::Char('Y') if action == Action::Quit => {
                        self.quit = true
                    }
                    KeyCode::Char('y') | KeyCode::Char('Y') => {
                        let what = lines.first().cloned().unwrap_or_default();
                        self.start(action, what);
                    }
                    KeyCode::Char('n') | KeyCode::Esc | KeyCode::Char('q') => {}
                    _ => self.overlay = Overlay::Confirm { lines, action },
                }
                return;
            }
            Overlay::Command(mut line) => {
                match code {
                    KeyCode::Esc => {}
                    KeyCode::Enter => {
                        let words: Vec<String> =
                            line.split_whitespace().map(str::to_string).collect();
                        if words.is_empty() {
                        } else if let Some(lines) = self.command_confirmation(&words) {
                            self.overlay = Overlay::Confirm {
                                lines,
                                action: Action::Cli(words),
                            };
                        } else {
                            self.start(Action::Cli(words), format!(":{line}"));
                        }
                    }
                    KeyCode::Backspace => {
                        line.pop();
                        self.overlay = Overlay::Command(line);
                    }
                    KeyCode::Char(c) => {
                        line.push(c);
                        self.overlay = Overlay::Command(line);
                    }
                    _ => self.overlay = Overlay::Command(line),
                }
                return;
            }
            Overlay::Form(mut form) => {
                match code {
                    KeyCode::Esc => {}
                    KeyCode::Enter => match form.submit(self) {
                        Ok((action, what)) => self.start(action, what),
                        Err(()) => self.overlay = Overlay::Form(form),
                    },
                    _ => {
                        form.key(code, self);
                        self.overlay = Overlay::Form(form);
                    }
                }
                return;
            }
        }
        if self.filtering {
            match code {
                KeyCode::Esc => {
                    self.filter.clear();
                    self.filtering = false;
                }
                KeyCode::Enter => self.filtering = false,
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) => self.filter.push(c),
                _ => {}
            }
            self.selected[self.tab.index()] = 0;
            return;
        }
        let rows = self.rows(self.tab);
        let i = self.tab.index();
        match code {
            // Esc only ever closes or clears: quitting is q, always.
            KeyCode::Esc => self.filter.clear(),
            KeyCode::Char('q') => match &self.quit_question {
                Some(lines) => {
                    self.overlay = Overlay::Confirm {
                        lines: lines.clone(),
                        action: Action::Quit,
                    }
                }
                None => self.quit = true,
            },
            KeyCode::Char('?') => self.overlay = Overlay::Help,
            KeyCode::Char(':') => self.overlay = Overlay::Command(String::new()),
            KeyCode::Char('/') => {
                self.filtering = true;
                self.filter.clear();
            }
            KeyCode::Char(c @ '1'..='6') => {
                self.tab = Tab::ALL[(c as usize) - ('1' as usize)];
            }
            KeyCode::Tab => self.tab = Tab::ALL[(i + 1) % Tab::ALL.len()],
            KeyCode::BackTab => self.tab = Tab::ALL[(i + Tab::ALL.len() - 1) % Tab::ALL.len()],
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected[i] = (self.selected[i] + 1).min(rows.saturating_sub(1))
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.selected[i] = self.selected[i].saturating_sub(1)
            }
            KeyCode::Char('s') if self.error.is_some() => self.switch_node(),
            _ => self.view_key(code),
        }
    }

    /// Offer another known node when the current one is unreachable:
    /// the nodes last seen up first, then the others in turn.
    fn switch_node(&mut self) {
        let Some(st) = &self.data.status else { return };
        let addrs: Vec<String> = st.nodes.iter().filter_map(|n| n.addr.clone()).collect();
        let cycled = addrs
            .iter()
            .position(|a| *a == self.addr)
            .map(|p| addrs[(p + 1) % addrs.len()].clone())
            .or_else(|| addrs.first().cloned());
        let next = st
            .nodes
            .iter()
            .filter(|n| n.up && !n.is_self)
            .filter_map(|n| n.addr.clone())
            .find(|a| *a != self.addr)
            .or(cycled);
        if let Some(addr) = next.filter(|a| *a != self.addr) {
            self.event(false, format!("switching to {addr}"));
            self.addr = addr.clone();
            self.outbox.push(Action::Switch(addr));
        }
    }

    fn view_key(&mut self, code: KeyCode) {
        let KeyCode::Char(c) = code else {
            if self.tab == Tab::Buckets && matches!(code, KeyCode::Left | KeyCode::Right) {
                self.keys_focus = code == KeyCode::Right;
                self.selected[self.tab.index()] = 0;
            }
            return;
        };
        match self.tab {
            Tab::Cluster => self.cluster_key(c),
            Tab::WhatIf => self.what_if_key(c),
            Tab::Layout => self.layout_key(c),
            Tab::Buckets => self.buckets_key(c),
            Tab::Workers => self.workers_key(c),
            Tab::Events => {}
        }
    }

    /// Ask before letting a data move complete without the nodes that are
    /// down and have not confirmed the new layout.
    fn confirm_skip_dead(&mut self) {
        let (Some(view), Some(st)) = (&self.data.layout, &self.data.status) else {
            return;
        };
        let l = &view.layout;
        if !l.in_transition() {
            self.message = Some((false, "no data move in progress: nothing to skip".into()));
            return;
        }
        let dead: Vec<String> = l
            .all_live_nodes()
            .into_iter()
            .filter(|n| {
                l.ack.get(n).copied().unwrap_or(0) < l.version
                    && !st.nodes.iter().any(|s| s.id == *n && s.up)
            })
            .map(|n| n.short())
            .collect();
        if dead.is_empty() {
            self.message = Some((
                false,
                "no node that is down holds the move: it is under way".into(),
            ));
            return;
        }
        self.overlay = Overlay::Confirm {
            lines: vec![
                format!(
                    "Let the move to layout v{} complete without {}?",
                    l.version,
                    dead.join(", ")
                ),
                "Do it for a node that will not be back soon. If it returns, it".into(),
                "catches up; writes it takes before it learns the new layout may".into(),
                "reach only the old replicas.".into(),
            ],
            action: Action::SkipDead(l.version),
        };
    }

    fn confirm_apply(&mut self) {
        match self.apply_lines() {
            Ok((lines, version)) => {
                self.overlay = Overlay::Confirm {
                    lines,
                    action: Action::Apply(version),
                }
            }
            Err(e) => self.message = Some((true, e)),
        }
    }

    /// What applying the staged changes would do, and the version it
    /// would make; or why there is nothing to apply.
    fn apply_lines(&self) -> Result<(Vec<String>, u64), String> {
        let Some(view) = &self.data.layout else {
            return Err("the layout is not known yet".into());
        };
        let version = view.layout.version + 1;
        let mut lines = vec![format!("Apply the staged changes as layout v{version}?")];
        match &view.preview {
            None => {
                return Err("nothing is staged: press n to add a node, e to edit one".into());
            }
            Some(Err(e)) => {
                return Err(format!("the staged layout cannot be applied: {e}"));
            }
            Some(Ok(r)) => {
                lines.push(format!(
                    "{} copies of parts of the data will move; usable capacity becomes {}.",
                    r.moves,
                    hangar_common::size::format_bytes(r.usable_capacity)
                ));
                // Nodes leaving: what losing them would do.
                let removed: BTreeSet<NodeId> = view
                    .layout
                    .effective_staged()
                    .into_iter()
                    .filter(|(_, s)| *s == StagedRole::Remove)
                    .map(|(id, _)| id)
                    .collect();
                if !removed.is_empty() {
                    lines.push("Nodes leaving keep serving until their data has moved; should they fail meanwhile:".into());
                    lines.extend(self.what_if_lines(&removed));
                }
            }
        }
        Ok((lines, version))
    }

    /// The question for staging a node's removal, with what losing it
    /// would do.
    fn removal_lines(&self, id: NodeId) -> Vec<String> {
        let mut lines = vec![format!("Stage the removal of node {}?", id.short())];
        if self.nodes_down().contains(&id) {
            lines.push("It is down: its data is copied again from the other nodes.".into());
        }
        lines.extend(self.what_if_lines(&BTreeSet::from([id])));
        lines.push("Nothing changes until the layout is applied (a).".into());
        lines
    }

    /// A `:` command that changes the cluster asks exactly what the same
    /// action asks from its view (None: it only reads, it runs at once).
    pub fn command_confirmation(&self, words: &[String]) -> Option<Vec<String>> {
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        let reads = matches!(
            w.as_slice(),
            ["status", ..] | ["help", ..] | [_, "list" | "info" | "show" | "get", ..]
        ) && !w.contains(&"--show-secret");
        if reads {
            return None;
        }
        let node = |prefix: &str| {
            self.data
                .status
                .iter()
                .flat_map(|s| s.nodes.iter())
                .map(|n| n.id)
                .find(|id| id.to_string().starts_with(prefix))
        };
        let ran = format!("Run `hangar {}`?", w.join(" "));
        Some(match w.as_slice() {
            ["key", "delete", k, ..] => {
                let found = self
                    .data
                    .keys
                    .iter()
                    .flatten()
                    .find(|x| x.access_key_id == *k || x.name == *k);
                match found {
                    Some(x) => key_delete_lines(&x.name, &x.access_key_id),
                    None => key_delete_lines(k, k),
                }
            }
            ["bucket", "delete", b, ..] => bucket_delete_lines(b),
            ["layout", "revert", ..] => vec![REVERT_QUESTION.into()],
            ["layout", "apply", ..] => match self.apply_lines() {
                Ok((lines, _)) => lines,
                Err(e) => vec![ran, e],
            },
            ["layout", "remove", n, ..] => match node(n) {
                Some(id) => self.removal_lines(id),
                None => vec![ran],
            },
            _ => vec![ran, "It changes the cluster.".into()],
        })
    }

    /// A key's secret with ready-to-paste client settings for the node
    /// the console is connected to.
    pub fn client_setup(&self, id: &str, secret: &str) -> String {
        let ep = self.data.status.as_ref().and_then(|s| s.endpoints.clone());
        let (url, region) = ep
            .map(|e| (e.s3, e.region))
            .unwrap_or_else(|| ("http://HOST:3900".into(), "hangar".into()));
        format!(
            "Access key id:      {id}\n\
             Secret access key:  {secret}\n\
             \n\
             aws CLI: add to ~/.aws/credentials\n\
             [hangar]\n\
             aws_access_key_id = {id}\n\
             aws_secret_access_key = {secret}\n\
             and use: aws --profile hangar --endpoint-url {url} --region {region} s3 ls\n\
             \n\
             rclone: rclone config create hangar s3 provider=Other env_auth=false access_key_id={id} secret_access_key={secret} endpoint={url} region={region}"
        )
    }

    /// Storage nodes of the layout that are down, as "node ID (zone Z)".
    pub fn down_storage_nodes(&self) -> Vec<String> {
        let Some(st) = &self.data.status else {
            return Vec::new();
        };
        st.nodes
            .iter()
            .filter(|n| !n.up && n.role.as_ref().is_some_and(|r| r.capacity.is_some()))
            .map(|n| {
                let zone = n.role.as_ref().map(|r| r.zone.as_str()).unwrap_or("?");
                format!("node {} (zone {zone})", n.id.short())
            })
            .collect()
    }

    /// One plain sentence on what to do now, when something needs doing:
    /// (text, whether it is serious). Shown under the header.
    pub fn advice(&self) -> Option<(String, bool)> {
        if let Some(e) = &self.error {
            return Some((
                format!("✗ {e}. Retrying every second; s switches to another node."),
                true,
            ));
        }
        let st = self.data.status.as_ref()?;
        let down = self.down_storage_nodes();
        let names = match down.len() {
            0 => String::new(),
            1 => down[0].clone(),
            _ => format!(
                "{} and {}",
                down[..down.len() - 1].join(", "),
                down[down.len() - 1]
            ),
        };
        let replace = if down.len() == 1 {
            "Gone for good? Replace it: Layout (3), select it, d, a."
        } else {
            "One gone for good? Replace it: Layout (3), select it, d, a."
        };
        if st.health.unavailable > 0 {
            return Some((
                format!(
                    "✗ Part of the data cannot be read or written. Start {} again. {replace}",
                    if names.is_empty() {
                        "the nodes that are down".to_string()
                    } else {
                        names
                    }
                ),
                true,
            ));
        }
        if let Some(e) = &self.data.tables_error {
            return Some((format!("✗ Buckets and keys cannot be read now: {e}"), true));
        }
        if st.health.degraded > 0 && !names.is_empty() {
            return Some((
                format!("! All works, with fewer copies: start {names} again. {replace}"),
                false,
            ));
        }
        None
    }

    /// Nodes of the layout that are down now.
    pub fn nodes_down(&self) -> BTreeSet<NodeId> {
        self.data
            .status
            .iter()
            .flat_map(|s| s.nodes.iter())
            .filter(|n| !n.up && n.role.is_some())
            .map(|n| n.id)
            .collect()
    }

    /// What losing `picked` would do, counting the nodes already down as
    /// lost too (they are): plain sentences, the verdict last (it starts
    /// with "The cluster would keep serving" or "The cluster would NOT").
    pub fn what_if_lines(&self, picked: &BTreeSet<NodeId>) -> Vec<String> {
        let Some(view) = &self.data.layout else {
            return Vec::new();
        };
        let down = self.nodes_down();
        let more: BTreeSet<NodeId> = picked.difference(&down).copied().collect();
        let all: BTreeSet<NodeId> = down.union(picked).copied().collect();
        let w = view.layout.what_if(&all);
        let names =
            |s: &BTreeSet<NodeId>| s.iter().map(|n| n.short()).collect::<Vec<_>>().join(", ");
        let mut out = Vec::new();
        if !down.is_empty() {
            out.push(format!("Already down: {}.", names(&down)));
        }
        let already = picked.intersection(&down).count();
        let subject = match (more.len(), down.is_empty()) {
            (0, true) => return vec!["No node picked: everything as it is now.".into()],
            (0, false) if already > 0 => format!(
                "{} down already; as things are now",
                if already == 1 { "It is" } else { "They are" }
            ),
            (0, false) => "As things are now".into(),
            (1, true) => format!("If node {} went down", names(&more)),
            (_, true) => format!("If these {} nodes went down", more.len()),
            (1, false) => format!("If node {} went down as well", names(&more)),
            (_, false) => format!("If these {} nodes went down as well", more.len()),
        };
        let rf = view.layout.replication_factor;
        out.push(format!(
            "{subject}, of the 256 parts of the data ({rf} copies each):"
        ));
        out.push(format!(
            "  {} would lose a copy, {} could no longer be written, {} no longer read, {} would lose every copy.",
            w.lose_redundancy, w.lose_write_quorum, w.lose_read_quorum, w.lose_all
        ));
        out.push(if w.keeps_serving() {
            "The cluster would keep serving every read and write.".into()
        } else {
            "The cluster would NOT keep serving: some reads or writes would fail.".into()
        });
        out
    }
}
