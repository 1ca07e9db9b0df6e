//! The console driven as an operator would: the real `hangar` program in a
//! real terminal (tmux), keys sent with `send-keys`, the screen read with
//! `capture-pane`, against real agents.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use hangar_tests::*;

/// A tmux session running one program; killed when dropped.
struct Tmux {
    name: String,
}

static SESSIONS: AtomicU32 = AtomicU32::new(0);

impl Tmux {
    fn start(program: &[String], width: u16, height: u16) -> Tmux {
        tools::require_tool("tmux", "tmux");
        let name = format!(
            "hangar-test-{}-{}",
            std::process::id(),
            SESSIONS.fetch_add(1, Ordering::Relaxed)
        );
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-s", &name])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .args(program)
            .env("TERM", "xterm-256color")
            .status()
            .expect("run tmux");
        assert!(status.success(), "tmux new-session failed");
        Tmux { name }
    }

    fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.name])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    /// Type text literally.
    fn text(&self, text: &str) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.name, "-l", text])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Wait until the screen shows `text`.
    fn wait_for(&self, what: &str, text: &str) -> String {
        self.wait_within(what, &[text], DEADLINE)
    }

    /// Wait until the screen shows every one of `texts` at once, for at
    /// most `deadline`.
    fn wait_within(&self, what: &str, texts: &[&str], deadline: std::time::Duration) -> String {
        let mut last = String::new();
        let text = texts.join("\" and \"");
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for(what, deadline, || {
                last = self.screen();
                texts.iter().all(|t| last.contains(t)).then(|| last.clone())
            })
        }));
        match found {
            Ok(s) => s,
            Err(_) => panic!("{what}: {text:?} never showed; last screen:\n{last}"),
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[test]
fn an_operator_onboards_a_node_creates_a_bucket_and_a_key_and_sees_a_failure() {
    let mut c = Cluster::start_formed(3, &AgentOpts::default());
    // A fourth node, running but in no cluster yet.
    let mut fourth = Agent::new(&c.secret, &AgentOpts::default());
    fourth.start();

    let program = vec![
        console_bin().display().to_string(),
        "--rpc-host".into(),
        c.agents[0].addr(),
        "--rpc-secret".into(),
        c.secret.to_hex(),
    ];
    let t = Tmux::start(&program, 160, 48);
    t.wait_for("the console to connect", "3/3 nodes up");

    // Onboard the fourth node with the guided form.
    t.keys(&["3"]);
    t.wait_for("the layout view", "Layout v1");
    t.keys(&["n"]);
    t.wait_for("the onboarding form", "Add a node");
    t.text(&fourth.node_id_line());
    t.keys(&["Down"]);
    t.text("dc2");
    t.keys(&["Down"]);
    t.text("50G");
    t.wait_for("the form to accept the input", "ready: Enter to go");
    t.keys(&["Enter"]);
    t.wait_for("the node to be staged", "→ dc2 50 GB");
    t.wait_for("the preview", "Preview of v2");
    t.keys(&["a"]);
    t.wait_for("the confirmation", "Apply the staged changes as layout v2?");
    t.keys(&["y"]);
    t.wait_for("the new layout", "layout v2 ·");
    // Rebalancing progress shows on the cluster view until done.
    t.keys(&["1"]);
    t.wait_for("the fourth node to be listed", &fourth.id[..16]);
    let screen = t.wait_for("rebalancing progress", "layout v2");
    assert!(
        screen.contains("rebalancing to layout v2") || screen.contains("layout v2: data in place"),
        "{screen}"
    );
    t.wait_for("the rebalance to finish", "layout v2: data in place");

    // A bucket and a key.
    t.keys(&["4"]);
    t.wait_for("the buckets view", "Access keys");
    t.keys(&["c"]);
    t.wait_for("the bucket form", "New bucket");
    t.text("photos");
    t.keys(&["Enter"]);
    t.wait_for("the bucket to be created", "bucket photos created");
    t.keys(&["Right", "c"]);
    t.wait_for("the key form", "New access key");
    t.text("laptop");
    t.keys(&["Enter"]);
    // (Waiting for the popup's last line: a capture can catch it half drawn.)
    let screen = t.wait_for("the new key's secret", "Enter closes");
    assert!(screen.contains("Secret access key:"), "{screen}");
    // Only Enter closes it: the secret is still there after Escape.
    t.keys(&["Escape"]);
    t.wait_for("the secret to stay", "Secret access key:");
    t.keys(&["Enter"]);
    // The secret shown is the key's (read back with the CLI).
    let k = c.agents[1].hangar_json(&["key", "info", "laptop", "--show-secret"]);
    let secret = k["secret_access_key"]
        .as_str()
        .expect("a secret")
        .to_string();
    assert_eq!(secret.len(), 64, "{k}");
    assert!(screen.contains(&secret), "{screen}");
    let list = c.agents[1].hangar_json(&["bucket", "list"]);
    assert_eq!(list[0]["name"], "photos", "{list}");

    // A node dies: the console shows it down within the failure detection
    // time (3 pings of 200 ms here), well inside the deadline.
    c.agents[2].kill();
    t.keys(&["1"]);
    t.wait_for("the dead node to show down", "✗ DOWN since");
    t.keys(&["6"]);
    t.wait_for("the failure in the events", "is down");
    t.keys(&["q"]);
}

/// The console connected to the one node left of three.
fn console_on(a: &Agent, secret: &hangar_common::transport::RpcSecret) -> Tmux {
    let program = vec![
        console_bin().display().to_string(),
        "--rpc-host".into(),
        a.addr(),
        "--rpc-secret".into(),
        secret.to_hex(),
    ];
    Tmux::start(&program, 160, 48)
}

#[test]
fn the_bad_night_two_nodes_down_then_back_and_the_events_the_morning_after() {
    let mut c = Cluster::start_formed(3, &AgentOpts::default());
    c.agents[0].bucket_with_key("photos", "laptop");
    let t = console_on(&c.agents[0], &c.secret);
    t.wait_for("the console to connect", "3/3 nodes up");
    let (b, d) = (
        c.agents[1].id[..16].to_string(),
        c.agents[2].id[..16].to_string(),
    );

    // Two of three down: the live node's console says so within 5 s, with
    // the advice naming both; it is not a lost connection.
    c.agents[1].kill();
    c.agents[2].kill();
    let screen = t.wait_within(
        "quorum lost shown",
        &[
            "✗ unavailable",
            "1/3 nodes up",
            "cannot be read or written. Start node",
            &format!("node {b} (zone dc2)"),
            &format!("node {d} (zone dc3)"),
        ],
        std::time::Duration::from_secs(5),
    );
    assert_eq!(screen.matches("✗ DOWN since").count(), 2, "{screen}");
    assert!(!screen.contains("Not connected"), "{screen}");
    // What-if with nodes really down: losing one more.
    t.keys(&["2"]);
    t.wait_within(
        "the what-if view",
        &["Already down: ", &b, &d, "As things are now"],
        DEADLINE,
    );
    t.keys(&["1"]);

    // One back: degraded, the advice names the other.
    c.agents[1].start();
    t.wait_within(
        "degraded shown",
        &["! degraded", &format!("start node {d} (zone dc3) again")],
        DEADLINE,
    );
    // What-if with a node really down: losing one more loses the quorum.
    t.keys(&["2"]);
    t.wait_within("the what-if view", &["Already down: ", &d], DEADLINE);
    // Pick node 2 (up again): the cursor starts on the first row.
    let rows = t.screen();
    let downs = rows
        .lines()
        .filter(|l| l.contains("[ ]"))
        .position(|l| l.contains(&b))
        .expect("node 2 listed");
    t.keys(&vec!["Down"; downs]);
    t.keys(&["Space"]);
    t.wait_within(
        "what losing node 2 as well would do",
        &[
            &format!("If node {b} went down as well"),
            "could no longer be written",
            "would NOT keep serving",
        ],
        DEADLINE,
    );
    t.keys(&["c", "1"]);
    // Both back: healthy, no advice.
    c.agents[2].start();
    let screen = t.wait_for("healthy shown", "● healthy");
    assert!(!screen.contains("again."), "{screen}");
    t.keys(&["q"]);
    drop(t);

    // The morning after: a new console lists the night's events.
    let t = console_on(&c.agents[0], &c.secret);
    t.wait_for("the console to connect", "3/3 nodes up");
    t.keys(&["6"]);
    let screen = t.wait_within(
        "the night in the events",
        &[
            &format!("! node {b} (zone dc2) is down"),
            &format!("! node {d} (zone dc3) is down"),
            "lost enough copies to be read or written (quorum lost)",
            &format!("node {b} (zone dc2) is up again"),
            "every part of the data has all its copies again",
        ],
        DEADLINE,
    );
    // Newest first.
    let at = |s: &str| screen.find(s).unwrap_or(usize::MAX);
    assert!(
        at("has all its copies again") < at("quorum lost"),
        "{screen}"
    );
    // The same from the command line, for scripts.
    let events = c.agents[0].hangar_json(&["events", "--limit", "100"]);
    let texts: Vec<&str> = events
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["text"].as_str()).collect())
        .unwrap_or_default();
    assert!(texts.iter().any(|t| t.contains("quorum lost")), "{events}");
}

#[test]
fn hangar_demo_starts_a_cluster_with_data_and_removes_it_on_quit() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let program = vec![
        "env".to_string(),
        format!("TMPDIR={}", tmp.path().display()),
        console_bin().display().to_string(),
        "demo".into(),
    ];
    let t = Tmux::start(&program, 160, 48);
    t.wait_for("the demo cluster", "3/3 nodes up");
    t.wait_for("its three zones", "house-c");
    t.keys(&["4"]);
    // 20 objects, counted once usage is published (every 2 s).
    t.wait_for("the demo bucket with its objects", "demo           20");
    let dirs = || {
        std::fs::read_dir(tmp.path())
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(dirs(), 1, "the demo keeps its data in TMPDIR");
    // Where clients connect, inside the console.
    t.wait_for(
        "the demo's endpoint and key",
        "Demo S3 endpoint http://127.0.0.1:",
    );
    // Quitting deletes the cluster: asked first; Esc does not quit.
    t.keys(&["Escape", "q"]);
    t.wait_for("the question", "Quit the demo?");
    t.keys(&["y"]);
    wait_for("the demo to clean up", DEADLINE, || {
        (dirs() == 0).then_some(())
    });
}

/// `hangar ... | head -1`: the reader goes away before the output is
/// written. The CLI must end as `ls | head` does: no panic, no backtrace,
/// status 0 or 141 (what a shell reports for SIGPIPE). The read end of the
/// pipe is closed before the program starts, so every write meets a
/// closed pipe whatever the output's size and the timing.
#[test]
fn the_cli_ends_quietly_when_its_reader_goes_away() {
    let opts = AgentOpts {
        replication_factor: 1,
        ..AgentOpts::default()
    };
    let c = Cluster::start_formed(1, &opts);
    let a = &c.agents[0];
    for args in [
        &["--json", "layout", "show"][..],
        &["layout", "show"],
        &["status"],
        &["--json", "bucket", "list"],
    ] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = Command::new(console_bin())
            .args(["--rpc-host", &a.addr(), "--rpc-secret", &a.secret.to_hex()])
            .args(args)
            .env_remove("HANGAR_CONFIG")
            .env("RUST_BACKTRACE", "1")
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run hangar");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.is_empty(),
            "hangar {args:?} wrote to stderr: {stderr}"
        );
        assert!(
            matches!(out.status.code(), Some(0) | Some(141)),
            "hangar {args:?} ended with {:?}",
            out.status
        );
    }
}
