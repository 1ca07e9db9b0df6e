//! Forms: a few text fields, validated as they are typed, that turn into
//! an [`Action`] on Enter. ↑/↓ (or Tab) move between fields; in a zone
//! field, ←/→ pick among the zones the cluster already has.

use hangar_common::NodeId;
use hangar_common::PeerAddr;
use hangar_common::layout::NodeRole;
use hangar_common::layout::cluster::StagedRole;
use hangar_common::rpc::PermissionChange;
use hangar_common::size::{format_bytes, parse_size};
use ratatui::crossterm::event::KeyCode;

use super::{Action, App};

#[derive(Clone, Debug, PartialEq)]
pub enum FormKind {
    /// Connect a new node and give it a role.
    Onboard,
    /// Change the role of a node of the layout.
    EditRole(NodeId),
    BucketCreate,
    KeyCreate,
    /// Grant (true) or revoke (false) a key's permissions on a bucket.
    Grant(String, bool),
    /// The same from the key list: this key (its id), a bucket to pick.
    GrantKey(String, bool),
    Quota(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub label: &'static str,
    pub value: String,
    pub hint: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Form {
    pub kind: FormKind,
    pub title: String,
    pub fields: Vec<Field>,
    pub focus: usize,
    /// The first problem with what is typed: (field, message).
    pub problem: Option<(usize, String)>,
}

fn field(label: &'static str, value: &str, hint: impl Into<String>) -> Field {
    Field {
        label,
        value: value.to_string(),
        hint: hint.into(),
    }
}

/// Zones of the applied layout, sorted.
/// The values a picker field goes through with ←/→.
fn choices(label: &str, app: &App) -> Vec<String> {
    match label {
        "Zone" => zones(app),
        "Key" => app
            .data
            .keys
            .iter()
            .flatten()
            .map(|k| k.name.clone())
            .collect(),
        "Bucket" => app
            .data
            .buckets
            .iter()
            .flatten()
            .map(|b| b.name.clone())
            .collect(),
        _ => Vec::new(),
    }
}

fn zones(app: &App) -> Vec<String> {
    let mut z: Vec<String> = app
        .data
        .layout
        .iter()
        .flat_map(|v| v.layout.roles.values().map(|r| r.zone.clone()))
        .collect();
    z.sort();
    z.dedup();
    z
}

fn check_zone(z: &str) -> Result<(), String> {
    if z.is_empty() {
        Err("give the node a zone: the site or house it is in".into())
    } else if z.chars().any(|c| c.is_whitespace()) {
        Err("a zone name has no spaces".into())
    } else {
        Ok(())
    }
}

/// A capacity, or `None` for a gateway.
fn check_capacity(c: &str) -> Result<Option<u64>, String> {
    if c.eq_ignore_ascii_case("gateway") {
        return Ok(None);
    }
    match parse_size(c) {
        Ok(0) => Err("a capacity above zero, or 'gateway'".into()),
        Ok(n) => Ok(Some(n)),
        Err(e) => Err(format!("{e} (e.g. 500G, 1.5T, or 'gateway')")),
    }
}

fn check_bucket_name(n: &str) -> Result<(), String> {
    let ok = (3..=63).contains(&n.len())
        && n.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err("3 to 63 lowercase letters, digits, '-' or '.'".into())
    }
}

impl Form {
    pub fn new(kind: FormKind, app: &App) -> Form {
        let zones = zones(app);
        let zone_hint = if zones.is_empty() {
            "a new zone name, e.g. home".to_string()
        } else {
            format!("←/→ picks one of: {}", zones.join(", "))
        };
        let (title, fields) = match &kind {
            FormKind::Onboard => (
                " Add a node ".to_string(),
                vec![
                    field(
                        "Node",
                        "",
                        "id@host:port, as `hangar-agent node-id` prints it on that node",
                    ),
                    field("Zone", "", zone_hint),
                    field("Capacity", "", "space it offers: 500G, 2T... or gateway"),
                ],
            ),
            FormKind::EditRole(id) => {
                let role = app
                    .data
                    .layout
                    .as_ref()
                    .and_then(|v| v.layout.roles.get(id).cloned());
                let zone = role.as_ref().map(|r| r.zone.clone()).unwrap_or_default();
                let cap = match role.map(|r| r.capacity) {
                    Some(Some(c)) => format_bytes(c),
                    Some(None) => "gateway".into(),
                    None => String::new(),
                };
                (
                    format!(" Role of node {} ", id.short()),
                    vec![
                        field("Zone", &zone, zone_hint),
                        field("Capacity", &cap, "space it offers: 500G, 2T... or gateway"),
                    ],
                )
            }
            FormKind::BucketCreate => (
                " New bucket ".to_string(),
                vec![field("Name", "", "lowercase letters, digits, '-' and '.'")],
            ),
            FormKind::KeyCreate => (
                " New access key ".to_string(),
                vec![field("Name", "", "who or what uses it, e.g. laptop")],
            ),
            FormKind::Grant(bucket, allow) => (
                format!(
                    " {} on bucket {bucket} ",
                    if *allow {
                        "Grant permissions"
                    } else {
                        "Revoke permissions"
                    }
                ),
                vec![
                    field(
                        "Key",
                        choices("Key", app)
                            .first()
                            .map(String::as_str)
                            .unwrap_or(""),
                        "←/→ pick, or type an access key id or name",
                    ),
                    field(
                        "Permissions",
                        if *allow { "rw" } else { "rwo" },
                        "r read, w write, o owner",
                    ),
                ],
            ),
            FormKind::GrantKey(key, allow) => (
                format!(
                    " {} of key {key} ",
                    if *allow {
                        "Grant permissions"
                    } else {
                        "Revoke permissions"
                    }
                ),
                vec![
                    field(
                        "Bucket",
                        choices("Bucket", app)
                            .first()
                            .map(String::as_str)
                            .unwrap_or(""),
                        "←/→ pick, or type a bucket name",
                    ),
                    field(
                        "Permissions",
                        if *allow { "rw" } else { "rwo" },
                        "r read, w write, o owner",
                    ),
                ],
            ),
            FormKind::Quota(bucket) => {
                let b = app
                    .data
                    .buckets
                    .iter()
                    .flatten()
                    .find(|b| b.name == *bucket);
                let size = b
                    .and_then(|b| b.quota_max_size)
                    .map(format_bytes)
                    .unwrap_or_default();
                let objects = b
                    .and_then(|b| b.quota_max_objects)
                    .map(|n| n.to_string())
                    .unwrap_or_default();
                (
                    format!(" Quotas of bucket {bucket} "),
                    vec![
                        field("Max size", &size, "e.g. 10G; empty: no limit"),
                        field("Max objects", &objects, "a number; empty: no limit"),
                    ],
                )
            }
        };
        let mut f = Form {
            kind,
            title,
            fields,
            focus: 0,
            problem: None,
        };
        // Nothing is wrong before anything is typed: problems show from
        // the first key on (or on Enter).
        f.problem = None;
        f
    }

    pub fn key(&mut self, code: KeyCode, app: &App) {
        let n = self.fields.len();
        match code {
            KeyCode::Down | KeyCode::Tab => self.focus = (self.focus + 1) % n,
            KeyCode::Up | KeyCode::BackTab => self.focus = (self.focus + n - 1) % n,
            // Fields with known values are pickers: ←/→ go through them.
            KeyCode::Left | KeyCode::Right => {
                let choices = choices(self.fields[self.focus].label, app);
                if !choices.is_empty() {
                    let cur = choices
                        .iter()
                        .position(|z| *z == self.fields[self.focus].value);
                    let next = match (cur, code == KeyCode::Right) {
                        (None, _) => 0,
                        (Some(i), true) => (i + 1) % choices.len(),
                        (Some(i), false) => (i + choices.len() - 1) % choices.len(),
                    };
                    self.fields[self.focus].value = choices[next].clone();
                }
            }
            KeyCode::Backspace => {
                self.fields[self.focus].value.pop();
            }
            KeyCode::Char(c) => self.fields[self.focus].value.push(c),
            _ => {}
        }
        self.problem = self.validate(app).err();
    }

    /// Enter: the action, or stay with the problem shown.
    pub fn submit(&mut self, app: &App) -> Result<(Action, String), ()> {
        match self.validate(app) {
            Ok(a) => Ok(a),
            Err(p) => {
                self.focus = p.0;
                self.problem = Some(p);
                Err(())
            }
        }
    }

    fn value(&self, i: usize) -> &str {
        self.fields[i].value.trim()
    }

    /// What the form would do, or the first problem with it.
    pub fn validate(&self, app: &App) -> Result<(Action, String), (usize, String)> {
        match &self.kind {
            FormKind::Onboard => {
                let peer: PeerAddr = self.value(0).parse().map_err(|e| (0, format!("{e}")))?;
                check_zone(self.value(1)).map_err(|e| (1, e))?;
                let capacity = check_capacity(self.value(2)).map_err(|e| (2, e))?;
                let what = format!("adding node {} in zone {}", peer.id.short(), self.value(1));
                Ok((
                    Action::Onboard {
                        peer,
                        role: NodeRole {
                            zone: self.value(1).to_string(),
                            capacity,
                        },
                    },
                    what,
                ))
            }
            FormKind::EditRole(id) => {
                check_zone(self.value(0)).map_err(|e| (0, e))?;
                let capacity = check_capacity(self.value(1)).map_err(|e| (1, e))?;
                Ok((
                    Action::Stage(
                        *id,
                        StagedRole::Set(NodeRole {
                            zone: self.value(0).to_string(),
                            capacity,
                        }),
                    ),
                    format!("staging a new role for node {}", id.short()),
                ))
            }
            FormKind::BucketCreate => {
                let name = self.value(0);
                check_bucket_name(name).map_err(|e| (0, e))?;
                if app.data.buckets.iter().flatten().any(|b| b.name == name) {
                    return Err((0, format!("bucket {name} already exists")));
                }
                Ok((
                    Action::BucketCreate(name.to_string()),
                    format!("creating bucket {name}"),
                ))
            }
            FormKind::KeyCreate => {
                let name = self.value(0);
                if name.is_empty() {
                    return Err((0, "give the key a name".into()));
                }
                Ok((
                    Action::KeyCreate(name.to_string()),
                    format!("creating key {name}"),
                ))
            }
            FormKind::Grant(bucket, allow) => {
                let key = self.value(0);
                let found: Vec<_> = app
                    .data
                    .keys
                    .iter()
                    .flatten()
                    .filter(|k| k.access_key_id == key || k.name == key)
                    .collect();
                if key.is_empty() {
                    return Err((0, "which key? its id or name".into()));
                }
                if found.len() != 1 {
                    return Err((
                        0,
                        if found.is_empty() {
                            format!("no key named {key}")
                        } else {
                            format!("several keys are named {key}: use its id")
                        },
                    ));
                }
                let p = self.value(1);
                if p.is_empty() || !p.chars().all(|c| "rwo".contains(c)) {
                    return Err((1, "letters among r, w and o".into()));
                }
                let perm = PermissionChange {
                    read: p.contains('r'),
                    write: p.contains('w'),
                    owner: p.contains('o'),
                };
                Ok((
                    Action::Grant {
                        bucket: bucket.clone(),
                        key: found[0].access_key_id.clone(),
                        perm,
                        allow: *allow,
                    },
                    format!("changing permissions of {key} on {bucket}"),
                ))
            }
            FormKind::GrantKey(key, allow) => {
                let bucket = self.value(0);
                if !app.data.buckets.iter().flatten().any(|b| b.name == bucket) {
                    return Err((0, format!("no bucket named {bucket:?}")));
                }
                let p = self.value(1);
                if p.is_empty() || !p.chars().all(|c| "rwo".contains(c)) {
                    return Err((1, "letters among r, w and o".into()));
                }
                Ok((
                    Action::Grant {
                        bucket: bucket.to_string(),
                        key: key.clone(),
                        perm: PermissionChange {
                            read: p.contains('r'),
                            write: p.contains('w'),
                            owner: p.contains('o'),
                        },
                        allow: *allow,
                    },
                    format!("changing permissions of {key} on {bucket}"),
                ))
            }
            FormKind::Quota(bucket) => {
                let size = match self.value(0) {
                    "" => None,
                    s => Some(parse_size(s).map_err(|e| (0, format!("{e} (e.g. 10G)")))?),
                };
                let objects = match self.value(1) {
                    "" => None,
                    s => Some(
                        s.parse::<u64>()
                            .map_err(|_| (1, "a whole number of objects".to_string()))?,
                    ),
                };
                Ok((
                    Action::Quota {
                        bucket: bucket.clone(),
                        max_size: size,
                        max_objects: objects,
                    },
                    format!("setting quotas of {bucket}"),
                ))
            }
        }
    }
}
