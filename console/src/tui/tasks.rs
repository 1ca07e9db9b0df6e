//! The console's tasks: the keyboard reader, the refresher (polls the
//! agent every second, reconnecting as needed), the action runner, and the
//! loop that feeds their messages to the [`App`] and redraws.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hangar_common::layout::cluster::StagedRole;
use hangar_common::rpc::AdminClient;
use ratatui::crossterm::event::{self, Event, KeyEventKind};
use tokio::sync::mpsc;

use super::{Action, App, Data, Msg, Outcome, Tab};
use crate::conn::{Target, ctx};

/// How often the console asks the agent for news.
const REFRESH: Duration = Duration::from_secs(1);

/// The agent both tasks talk to; switching bumps the generation so both
/// reconnect.
struct Shared {
    target: Target,
    generation: u64,
}

type SharedTarget = Arc<Mutex<Shared>>;

fn current(t: &SharedTarget) -> (Target, u64) {
    let s = t.lock().unwrap_or_else(|p| p.into_inner());
    (s.target.clone(), s.generation)
}

/// A connection that follows the shared target.
struct Conn {
    target: SharedTarget,
    client: Option<(AdminClient, u64)>,
}

impl Conn {
    async fn get(&mut self) -> Result<AdminClient, String> {
        let (target, generation) = current(&self.target);
        if let Some((c, g)) = &self.client
            && *g == generation
        {
            return Ok(c.clone());
        }
        let (c, _) = target.connect().await.map_err(|e| format!("{e:#}"))?;
        self.client = Some((c.clone(), generation));
        Ok(c)
    }

    fn reset(&mut self) {
        self.client = None;
    }
}

/// One refresh. Only a failed call fails it (the agent is unreachable):
/// status, layout and workers are the node's own view and never wait for
/// other nodes, while buckets and keys are read from a quorum of their
/// replicas and may be unavailable when nodes are down; then the rest is
/// shown as usual and `tables_error` says why the lists are stale.
async fn fetch(c: &AdminClient) -> Result<Data, String> {
    let e = |e: tarpc::client::RpcError| e.to_string();
    let status = c.status(ctx()).await.map_err(e)?;
    let layout = c.layout(ctx()).await.map_err(e)?;
    let workers = c.worker_list(ctx()).await.map_err(e)?;
    let cluster_events = c.events(ctx(), 300).await.map_err(e)?;
    let buckets = c.bucket_list(ctx()).await.map_err(e)?;
    let keys = c.key_list(ctx()).await.map_err(e)?;
    let tables_error = match (&buckets, &keys) {
        (Err(e), _) | (_, Err(e)) => Some(e.to_string()),
        _ => None,
    };
    Ok(Data {
        status: Some(status),
        layout: Some(layout),
        buckets: buckets.ok(),
        keys: keys.ok(),
        workers,
        tables_error,
        cluster_events,
    })
}

async fn refresher(target: SharedTarget, tx: mpsc::Sender<Msg>) {
    let mut conn = Conn {
        target,
        client: None,
    };
    loop {
        let res = match conn.get().await {
            Ok(c) => {
                let r = fetch(&c).await;
                if r.is_err() {
                    conn.reset();
                }
                r
            }
            Err(e) => Err(e),
        };
        if tx.send(Msg::Refreshed(Box::new(res))).await.is_err() {
            return;
        }
        tokio::time::sleep(REFRESH).await;
    }
}

/// Write a file only its owner may read (mode 0600 from its creation, so
/// the secret is never readable by others, even for a moment).
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_secret_file_is_readable_by_its_owner_only() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("key.txt");
        super::write_private(&path, "secret").expect("write");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "secret\n");
    }
}

/// An outcome that shows a key's secret.
fn with_secret(k: &hangar_common::rpc::KeyInfo, text: String) -> Outcome {
    Outcome {
        secret: Some((
            k.access_key_id.clone(),
            k.secret_access_key.clone().unwrap_or_default(),
        )),
        ..ok(text)
    }
}

fn ok(text: impl Into<String>) -> Outcome {
    Outcome {
        result: Ok(text.into()),
        secret: None,
        output: None,
        then: None,
    }
}

/// Run one action on the agent.
async fn perform(conn: &mut Conn, action: Action) -> Result<Outcome, String> {
    if let Action::Cli(words) = &action {
        return run_cli(&current(&conn.target).0, words).await;
    }
    let c = conn.get().await?;
    let rpc = |e: tarpc::client::RpcError| e.to_string();
    let app = |e: hangar_common::rpc::RpcError| e.to_string();
    Ok(match action {
        Action::Onboard { peer, role } => {
            let short = peer.id.short();
            let zone = role.zone.clone();
            c.connect_node(ctx(), peer.clone())
                .await
                .map_err(rpc)?
                .map_err(app)?;
            c.layout_stage(ctx(), vec![(peer.id, StagedRole::Set(role))])
                .await
                .map_err(rpc)?
                .map_err(app)?;
            Outcome {
                then: Some(Tab::Layout),
                ..ok(format!(
                    "node {short} connected and staged in zone {zone}: check the preview, then press a to apply"
                ))
            }
        }
        Action::Stage(id, role) => {
            c.layout_stage(ctx(), vec![(id, role)])
                .await
                .map_err(rpc)?
                .map_err(app)?;
            ok(format!(
                "change staged for node {}: press a to apply it",
                id.short()
            ))
        }
        Action::Apply(version) => {
            let r = c
                .layout_apply(ctx(), version)
                .await
                .map_err(rpc)?
                .map_err(app)?;
            ok(format!(
                "layout v{version} applied: {} partition replicas to move",
                r.moves
            ))
        }
        Action::SkipDead(version) => {
            let skipped = c
                .layout_skip_dead(ctx(), version)
                .await
                .map_err(rpc)?
                .map_err(app)?;
            ok(format!(
                "layout v{version}: the move goes on without {}",
                skipped
                    .iter()
                    .map(|n| n.short())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
        Action::Revert => {
            c.layout_revert(ctx()).await.map_err(rpc)?.map_err(app)?;
            ok("staged layout changes dropped")
        }
        Action::BucketCreate(name) => {
            c.bucket_create(ctx(), name.clone())
                .await
                .map_err(rpc)?
                .map_err(app)?;
            ok(format!("bucket {name} created: grant a key access with g"))
        }
        Action::BucketDelete(name) => {
            c.bucket_delete(ctx(), name.clone())
                .await
                .map_err(rpc)?
                .map_err(app)?;
            ok(format!("bucket {name} deleted"))
        }
        Action::BucketVersioning(name, enable) => {
            c.bucket_set_versioning(ctx(), name.clone(), enable)
                .await
                .map_err(rpc)?
                .map_err(app)?;
            ok(format!(
                "versioning of {name} {}",
                if enable { "enabled" } else { "suspended" }
            ))
        }
        Action::KeyCreate(name) => {
            let k = c
                .key_create(ctx(), name.clone())
                .await
                .map_err(rpc)?
                .map_err(app)?;
            with_secret(&k, format!("key {name} created ({})", k.access_key_id))
        }
        Action::KeySecret(id) => {
            let k = c
                .key_secret(ctx(), id.clone())
                .await
                .map_err(rpc)?
                .map_err(app)?;
            with_secret(
                &k,
                format!("secret of key {} ({})", k.name, k.access_key_id),
            )
        }
        Action::WriteSecret { path, text } => {
            write_private(&path, &text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            let shown = std::fs::canonicalize(&path).unwrap_or(path);
            ok(format!(
                "written to {} (readable by you only)",
                shown.display()
            ))
        }
        Action::KeyDelete(id) => {
            c.key_delete(ctx(), id.clone())
                .await
                .map_err(rpc)?
                .map_err(app)?;
            ok(format!("key {id} deleted"))
        }
        Action::Grant {
            bucket,
            key,
            perm,
            allow,
        } => {
            c.bucket_allow(ctx(), bucket.clone(), key.clone(), perm, allow)
                .await
                .map_err(rpc)?
                .map_err(app)?;
            ok(format!(
                "permissions of {key} on {bucket} {}",
                if allow { "granted" } else { "revoked" }
            ))
        }
        Action::Quota {
            bucket,
            max_size,
            max_objects,
        } => {
            c.bucket_set_quotas(ctx(), bucket.clone(), max_size, max_objects)
                .await
                .map_err(rpc)?
                .map_err(app)?;
            ok(format!("quotas of {bucket} set"))
        }
        Action::WorkerPause(name, paused) => {
            c.worker_pause(ctx(), name.clone(), paused)
                .await
                .map_err(rpc)?
                .map_err(app)?;
            ok(format!(
                "worker {name} {}",
                if paused { "paused" } else { "resumed" }
            ))
        }
        Action::Repair(what) => {
            let text = c.repair(ctx(), what).await.map_err(rpc)?.map_err(app)?;
            ok(text)
        }
        Action::Cli(_) | Action::Switch(_) | Action::Quit => ok(""),
    })
}

/// A `:` command: this same program with the CLI subcommand, its output
/// shown in a window.
async fn run_cli(target: &Target, words: &[String]) -> Result<Outcome, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the hangar program: {e}"))?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("--rpc-host")
        .arg(match target.expected {
            Some(id) => format!("{id}@{}", target.addr),
            None => target.addr.clone(),
        })
        .args(words.iter().skip_while(|w| w.as_str() == "hangar"))
        .env("HANGAR_RPC_SECRET", target.secret.to_hex())
        .stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .map_err(|_| "the command took more than a minute".to_string())?
        .map_err(|e| format!("cannot run the command: {e}"))?;
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let line = words.join(" ");
    Ok(Outcome {
        result: if out.status.success() {
            Ok(format!(":{line} done"))
        } else {
            Err(format!(":{line} failed"))
        },
        secret: None,
        output: Some(text),
        then: None,
    })
}

async fn runner(target: SharedTarget, mut rx: mpsc::Receiver<Action>, tx: mpsc::Sender<Msg>) {
    let mut conn = Conn {
        target,
        client: None,
    };
    while let Some(action) = rx.recv().await {
        let outcome = match perform(&mut conn, action).await {
            Ok(o) => o,
            Err(e) => {
                conn.reset();
                Outcome {
                    result: Err(e),
                    secret: None,
                    output: None,
                    then: None,
                }
            }
        };
        if tx.send(Msg::Done(Box::new(outcome))).await.is_err() {
            return;
        }
    }
}

/// What a console session shows beyond the cluster, and asks before
/// quitting (`hangar demo`).
#[derive(Default)]
pub struct Session {
    pub quit_question: Option<Vec<String>>,
    pub note: Option<String>,
}

pub async fn run(target: Target, session: Session) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::channel(64);
    let (actions, actions_rx) = mpsc::channel::<Action>(16);
    let mut app = App::new(&target.addr);
    app.quit_question = session.quit_question;
    app.note = session.note;
    let shared = Arc::new(Mutex::new(Shared {
        target,
        generation: 0,
    }));
    tokio::spawn(refresher(shared.clone(), tx.clone()));
    tokio::spawn(runner(shared.clone(), actions_rx, tx.clone()));
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

    // ratatui::init restores the terminal on panic too.
    let mut terminal = ratatui::init();
    let res = async {
        loop {
            terminal.draw(|f| app.draw(f))?;
            match rx.recv().await {
                Some(msg) => app.update(msg),
                None => break,
            }
            for action in app.outbox.drain(..) {
                if let Action::Switch(addr) = &action {
                    let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                    s.target.addr = addr.clone();
                    s.target.expected = None;
                    s.generation += 1;
                    continue;
                }
                if actions.try_send(action).is_err() {
                    app.busy = None;
                    app.message = Some((true, "busy: wait for the running action".into()));
                }
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
