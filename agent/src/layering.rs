//! The layering of the agent, enforced: each module may use only modules
//! of its own layer or below. A test reads every `crate::` path in the
//! sources and fails on one that points up (or at a module missing from
//! [`LAYERS`], so a new module gets a place on purpose).

/// Bottom to top. A module may use the modules of its layer and of every
/// layer before it.
pub const LAYERS: &[&[&str]] = &[
    // Storage engine, file-system helpers, background work.
    &["db", "fs", "worker"],
    // Secure connections to peers, membership, RPC metrics.
    &["net"],
    // The ring: partitions to nodes, gossiped.
    &["layout"],
    // Replicated CRDT tables, per-item consensus.
    &["table"],
    // The block store: placement, replication, resync, scrub.
    &["block"],
    // Buckets, keys, objects, usage, lifecycle.
    &["model"],
    // The S3 API and static websites.
    &["s3"],
    // Services for consoles and peers, events, /metrics and /health.
    &["admin"],
    // Startup checks and wiring; entry points for fuzzing.
    &["node", "fuzzing"],
];

/// The layer of a top-level module.
#[cfg(test)]
fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level modules a source file names through `crate::` paths,
/// grouped imports (`use crate::{a, b::c}`) included; comments skipped.
#[cfg(test)]
fn crate_uses(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in source.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            if let Some(group) = after.strip_prefix('{') {
                // Top-level items of the group, up to its closing brace.
                let mut depth = 0;
                let mut item = String::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            out.extend(first_ident(&item));
                            item.clear();
                            continue;
                        }
                        _ => {}
                    }
                    if depth == 0 {
                        item.push(c);
                    }
                }
                out.extend(first_ident(&item));
            } else {
                out.extend(first_ident(after));
            }
            rest = after;
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
fn first_ident(s: &str) -> Option<String> {
    let id: String = s
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!id.is_empty() && id != "self").then_some(id)
}

/// What is wrong with `module` (a top-level module) using `used`.
#[cfg(test)]
fn violation(module: &str, used: &str) -> Option<String> {
    if module == used {
        return None;
    }
    match (layer_of(module), layer_of(used)) {
        (Some(m), Some(u)) if u <= m => None,
        (Some(_), Some(_)) => Some(format!("{module} uses {used}, a layer above it")),
        (None, _) => Some(format!("module {module} has no layer in LAYERS")),
        (_, None) => Some(format!(
            "{module} uses {used}, which has no layer in LAYERS"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("source directory").flatten() {
            let p = e.path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    #[test]
    fn no_module_uses_a_layer_above_its_own() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&root, &mut files);
        let mut wrong = Vec::new();
        for f in &files {
            let rel = f.strip_prefix(&root).expect("under src");
            let first = rel
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .unwrap_or_default();
            let module = first.trim_end_matches(".rs");
            // The binary and the crate root sit above every layer.
            if matches!(module, "main" | "lib" | "layering") {
                continue;
            }
            let text = std::fs::read_to_string(f).expect("source file");
            for used in crate_uses(&text) {
                if let Some(v) = violation(module, &used) {
                    wrong.push(format!("{}: {v}", rel.display()));
                }
            }
        }
        assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
    }

    #[test]
    fn an_upward_use_is_caught() {
        // Planted: the table layer reaching up into the S3 API.
        let src = "use crate::db::Db;\nuse crate::{net::Net, s3::xml};\n// crate::admin in a comment\nfn f() { crate::layout::x(); }\n";
        assert_eq!(crate_uses(src), ["db", "layout", "net", "s3"]);
        let found: Vec<String> = crate_uses(src)
            .iter()
            .filter_map(|u| violation("table", u))
            .collect();
        assert_eq!(found, ["table uses s3, a layer above it"]);
        assert_eq!(
            violation("newthing", "db").as_deref(),
            Some("module newthing has no layer in LAYERS")
        );
    }
}
