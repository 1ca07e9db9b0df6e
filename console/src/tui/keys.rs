//! The console's keys, in one table: the footer's hints, the `?` help
//! window and the README's key list are all generated from it, so they
//! cannot drift from each other (a test checks the README).

use super::Tab;

/// One key (or group of keys) and what it does.
pub struct KeyHelp {
    /// The keys, as shown ("g / x").
    pub keys: &'static str,
    /// A word or two for the footer; empty keeps it out of the footer.
    pub hint: &'static str,
    /// One line for the help window and the README.
    pub help: &'static str,
}

/// A table entry (a struct literal, so the tables are promoted to
/// statics).
macro_rules! k {
    ($keys:expr, $hint:expr, $help:expr $(,)?) => {
        KeyHelp {
            keys: $keys,
            hint: $hint,
            help: $help,
        }
    };
}

/// Keys that work in every view.
pub const GLOBAL: &[KeyHelp] = &[
    k!("1-6 / Tab / Shift-Tab", "", "switch view"),
    k!("↑ ↓ (j k)", "", "move in a list"),
    k!("/", "", "filter the list (Esc clears)"),
    k!(
        ":",
        "",
        "run a hangar subcommand (e.g. :status); one that changes the cluster asks first",
    ),
    k!(
        "s",
        "",
        "switch node (when disconnected; nodes seen up first)"
    ),
    k!(
        "Esc",
        "",
        "close a window or clear the filter (never quits)"
    ),
    k!(
        "q",
        "",
        "quit (hangar demo asks first: it deletes its cluster)"
    ),
];

/// The keys of one view.
pub fn view_keys(tab: Tab) -> &'static [KeyHelp] {
    match tab {
        Tab::Cluster => &[k!("n", "add node", "add a node (guided form)")],
        Tab::WhatIf => &[
            k!(
                "space",
                "pick node",
                "imagine the selected node down (again: up); nodes already down count as lost",
            ),
            k!("z", "pick zone", "imagine its whole zone down"),
            k!("c", "clear", "clear the picks"),
        ],
        Tab::Layout => &[
            k!("n", "add", "add a node: connect, zone, capacity"),
            k!("e", "edit", "change the selected node's zone / capacity"),
            k!(
                "d",
                "remove",
                "stage the selected node's removal (shows the what-if)"
            ),
            k!("a", "apply", "apply the staged changes (asks first)"),
            k!("r", "revert", "revert the staged changes (asks first)"),
            k!(
                "w",
                "skip down",
                "let a data move complete without the nodes down",
            ),
        ],
        Tab::Buckets => &[
            k!("← →", "lists", "buckets list / keys list"),
            k!(
                "c",
                "new",
                "create a bucket / key (its secret shows until Enter; w writes it to a file)",
            ),
            k!(
                "d",
                "delete",
                "delete the selected bucket / key (asks first)"
            ),
            k!(
                "g / x",
                "perms",
                "grant / revoke permissions (of a picked key, or on a picked bucket)",
            ),
            k!("u", "quota", "set the bucket's quotas"),
            // (No room left in the footer: listed in the help window.)
            k!(
                "v",
                "",
                "turn the bucket's versioning on / suspend it (asks first); the VERSIONS column shows it and the space older versions hold"
            ),
            k!(
                "s",
                "secret",
                "show the selected key's secret again (keys list)"
            ),
        ],
        Tab::Workers => &[
            k!("p", "pause/resume", "pause / resume the selected worker"),
            k!(
                "s / t / b",
                "repairs",
                "repair: scrub / tables / blocks (asks first)",
            ),
        ],
        Tab::Events => &[k!("↑ ↓", "", "scroll")],
    }
}

/// The footer's key hints for a view.
pub fn footer(tab: Tab) -> String {
    let mut parts: Vec<String> = view_keys(tab)
        .iter()
        .filter(|k| !k.hint.is_empty())
        .map(|k| format!("{} {}", k.keys.replace(' ', ""), k.hint))
        .collect();
    parts.push("? help".into());
    parts.push("q quit".into());
    parts.join(" · ")
}

/// The help window's lines for a view, `width` columns wide: the keys in
/// a column, what they do wrapped beside them.
pub fn help_lines(tab: Tab, width: usize) -> Vec<String> {
    const KEYS: usize = 24;
    let text_width = width.saturating_sub(KEYS).max(20);
    let lines = |k: &KeyHelp| {
        let mut out: Vec<String> = Vec::new();
        let mut cur = String::new();
        for word in k.help.split_whitespace() {
            if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > text_width {
                out.push(std::mem::take(&mut cur));
            }
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(word);
        }
        out.push(cur);
        out.into_iter()
            .enumerate()
            .map(|(i, t)| format!("{:<KEYS$}{t}", if i == 0 { k.keys } else { "" }))
            .collect::<Vec<_>>()
    };
    let mut v: Vec<String> = GLOBAL.iter().flat_map(lines).collect();
    v.push(String::new());
    v.extend(view_keys(tab).iter().flat_map(lines));
    v
}

/// The README's key list (between its `keys:begin` / `keys:end` markers).
#[cfg(test)]
pub fn readme_list() -> String {
    let mut out = String::from("| view | key | what it does |\n|---|---|---|\n");
    for k in GLOBAL {
        out.push_str(&format!("| any | `{}` | {} |\n", k.keys, k.help));
    }
    for (i, tab) in Tab::ALL.iter().enumerate() {
        for k in view_keys(*tab) {
            out.push_str(&format!(
                "| {} {} | `{}` | {} |\n",
                i + 1,
                tab.title(),
                k.keys,
                k.help
            ));
        }
    }
    out
}
