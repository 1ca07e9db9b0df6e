//! View 4, Buckets & keys: the two lists side by side.

use super::super::draw::*;
use super::super::*;

impl App {
    pub(in crate::tui) fn draw_buckets(&self, f: &mut Frame, area: Rect) {
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
                // Versioning, and what the versions kept beside the
                // current ones hold.
                let versions = match b.versioning.as_deref() {
                    None => "-".to_string(),
                    Some(state) => format!(
                        "{} {}",
                        if state == "Enabled" { "on" } else { "susp" },
                        format_bytes(b.noncurrent_bytes)
                    ),
                };
                Row::new(vec![
                    b.name.clone(),
                    b.objects.to_string(),
                    format_bytes(b.bytes),
                    quota,
                    versions,
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
                    public_summary(&b.public),
                ])
            })
            .collect();
        let all = self.buckets();
        let selected = all
            .get(self.selected[3])
            .filter(|_| !self.keys_focus)
            .map(|b| (&b.name, &b.public));
        let title = buckets_title(selected);
        let (t, mut s) = selectable(
            rows,
            vec![
                Constraint::Length(14),
                Constraint::Length(7),
                Constraint::Length(9),
                Constraint::Length(10),
                Constraint::Length(12),
                Constraint::Min(10),
                Constraint::Length(10),
            ],
            vec![
                "BUCKET", "OBJECTS", "SIZE", "QUOTA", "VERSIONS", "KEYS", "PUBLIC",
            ],
            title,
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
}

impl App {
    /// This view's keys (see `keys.rs` for their table).
    pub(in crate::tui) fn buckets_key(&mut self, c: char) {
        match c {
            'c' => {
                let kind = if self.keys_focus {
                    FormKind::KeyCreate
                } else {
                    FormKind::BucketCreate
                };
                self.overlay = Overlay::Form(Form::new(kind, self));
            }
            'd' => {
                if self.keys_focus {
                    if let Some(k) = self.keys().get(self.sel()) {
                        self.overlay = Overlay::Confirm {
                            lines: key_delete_lines(&k.name, &k.access_key_id),
                            action: Action::KeyDelete(k.access_key_id.clone()),
                        };
                    }
                } else if let Some(b) = self.selected_bucket() {
                    self.overlay = Overlay::Confirm {
                        lines: bucket_delete_lines(&b),
                        action: Action::BucketDelete(b),
                    };
                }
            }
            's' if self.keys_focus => {
                if let Some(k) = self.keys().get(self.sel()) {
                    let id = k.access_key_id.clone();
                    self.start(
                        Action::KeySecret(id.clone()),
                        format!("reading the secret of {id}"),
                    );
                }
            }
            'g' | 'x' if !self.keys_focus => {
                if let Some(b) = self.selected_bucket() {
                    self.overlay = Overlay::Form(Form::new(FormKind::Grant(b, c == 'g'), self));
                }
            }
            'g' | 'x' => {
                if let Some(k) = self.keys().get(self.sel()) {
                    let kind = FormKind::GrantKey(k.access_key_id.clone(), c == 'g');
                    self.overlay = Overlay::Form(Form::new(kind, self));
                }
            }
            'v' if !self.keys_focus => {
                if let Some(b) = self.buckets().get(self.sel()) {
                    let enable = b.versioning.as_deref() != Some("Enabled");
                    self.overlay = Overlay::Confirm {
                        lines: versioning_lines(&b.name, enable),
                        action: Action::BucketVersioning(b.name.clone(), enable),
                    };
                }
            }
            'u' if !self.keys_focus => {
                if let Some(b) = self.selected_bucket() {
                    self.overlay = Overlay::Form(Form::new(FormKind::Quota(b), self));
                }
            }
            _ => {}
        }
    }
}

/// The PUBLIC column: why anyone without a key reaches the bucket, in
/// short (`acl web`, `policy`...), or nothing when it is private.
fn public_summary(reasons: &[String]) -> String {
    let mut kinds: Vec<&str> = reasons
        .iter()
        .map(|r| match r.split(':').next().unwrap_or_default() {
            "ACL" => "acl",
            "policy" => "policy",
            "website" => "web",
            other => other,
        })
        .collect();
    kinds.dedup();
    kinds.join(" ")
}

/// The Buckets table's title: for the selected bucket, when anyone
/// without a key reaches it, why (its ACL, its policy, its website).
fn buckets_title(selected: Option<(&String, &Vec<String>)>) -> String {
    match selected {
        Some((name, why)) if !why.is_empty() => {
            format!(" Buckets · {name} is public: {} ", why.join("; "))
        }
        _ => " Buckets ".into(),
    }
}
