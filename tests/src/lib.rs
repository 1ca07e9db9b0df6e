//! Cluster test harness: real `hangar-agent` processes on loopback, each
//! with its own temporary directories and free ports, driven with the real
//! `hangar` command line, as an operator would.
//!
//! Waiting is always by polling a condition against a deadline
//! ([`wait_for`]), never by sleeping a fixed time. The binaries are built
//! once per test process (`cargo build`, a no-op when up to date) so a test
//! never runs stale binaries.

pub mod faults;
pub mod garage;
pub mod tools;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hangar_common::transport::RpcSecret;
use serde_json::Value;

/// Default time a condition may take to become true.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Directory holding the built binaries.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test binary path");
        // target/<profile>/deps/<test> -> target/<profile>
        let dir = exe
            .parent()
            .and_then(|p| p.parent())
            .expect("test binary lives in target/<profile>/deps")
            .to_path_buf();
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args([
            "build",
            "-q",
            "-p",
            "hangar-agent",
            "-p",
            "hangar-console",
            "--bins",
        ]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build for the binaries");
        assert!(status.success(), "building hangar-agent and hangar failed");
        dir
    })
}

pub fn agent_bin() -> PathBuf {
    bin_dir().join("hangar-agent")
}

pub fn console_bin() -> PathBuf {
    bin_dir().join("hangar")
}

/// A port that was free a moment ago.
/// A port free on loopback, never handed out twice by this process, and
/// outside the kernel's ephemeral range (32768-60999 on Linux): between
/// choosing a port and the agent binding it, an outgoing connection of
/// any test could otherwise take it as its source port.
/// Reserve `port` across test processes (a test runner may run each test
/// in its own process): a file per port under the temporary directory,
/// holding the reserving process's id; one whose process is gone is taken
/// over. A port is free only if it binds *and* no other live test process
/// handed it out (its agent may not have bound it yet).
fn reserve_port(port: u16) -> bool {
    let dir = std::env::temp_dir().join("hangar-test-ports");
    if std::fs::create_dir_all(&dir).is_err() {
        return true; // no registry: binding alone decides
    }
    let path = dir.join(port.to_string());
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                use std::io::Write;
                return write!(f, "{}", std::process::id()).is_ok();
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let owner = std::fs::read_to_string(&path).unwrap_or_default();
                let alive = match owner.trim().parse::<u32>() {
                    Ok(pid) => Path::new(&format!("/proc/{pid}")).exists(),
                    // Being written this instant, unless long abandoned.
                    Err(_) => std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_none_or(|age| age < Duration::from_secs(10)),
                };
                if alive {
                    return false;
                }
                let _ = std::fs::remove_file(&path);
            }
            Err(_) => return true,
        }
    }
    false
}

pub fn free_port() -> u16 {
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<std::collections::HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    let given = given.get_or_insert_with(Default::default);
    // Start somewhere different in each test process (spread: processes
    // started one after the other have consecutive ids).
    let mut port = 20_000 + (std::process::id().wrapping_mul(7_919) % 12_000) as u16;
    for _ in 0..12_000 {
        port = if port >= 32_000 { 20_000 } else { port + 1 };
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() && reserve_port(port) {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port left in 20000-32000 on loopback")
}

/// Poll `cond` until it returns `Some`, or panic after `deadline` with
/// `what` and the last value seen.
pub fn wait_for<T>(what: &str, deadline: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut delay = Duration::from_millis(20);
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(250));
    }
}

/// One agent process and everything it owns.
pub struct Agent {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub rpc_port: u16,
    pub s3_port: u16,
    pub web_port: u16,
    /// `/metrics` and `/health`.
    pub metrics_port: u16,
    /// The loopback address the agent's RPC binds to (and, when it is not
    /// 127.0.0.1, its connections to other nodes leave from).
    pub rpc_ip: String,
    /// How other nodes reach it (through a fault proxy, or directly).
    pub public_addr: String,
    pub secret: RpcSecret,
    pub id: String,
    /// The clock nemesis: this agent's wall clock is shifted by this many
    /// milliseconds (either way) from its next start, as a machine with a
    /// wrong clock would be.
    pub clock_offset_ms: i64,
    child: Option<Child>,
    starts: u32,
}

/// Options for a new agent.
#[derive(Clone)]
pub struct AgentOpts {
    pub replication_factor: usize,
    pub bootstrap: Vec<String>,
    pub extra: String,
    /// Lines added to the `[s3_api]` section.
    pub s3_extra: String,
    /// Lines added to the `[s3_web]` section.
    pub web_extra: String,
    /// Bind the RPC to this loopback address (and leave from it), e.g.
    /// 127.0.1.2, so a fault proxy can tell which node a connection is from.
    pub rpc_ip: Option<String>,
    /// The address other nodes are told to use (a fault proxy's).
    pub public_addr: Option<String>,
    /// Where the agent keeps its blocks (default: in its directory).
    pub data_dir: Option<PathBuf>,
    /// The `data_dir` value as TOML (a list of directories), instead.
    pub data_dir_toml: Option<String>,
    /// Clock offsets in milliseconds, by agent index in a cluster (see
    /// [`Agent::clock_offset_ms`]); agents beyond the list have none.
    pub clock_offsets_ms: Vec<i64>,
    /// The metadata engine (`[tables] engine`); by default the one named
    /// by `HANGAR_TEST_ENGINE`, else the agent's default (sled). Running
    /// the suite with `HANGAR_TEST_ENGINE=redb` tries every test on redb.
    pub engine: Option<String>,
}

impl Default for AgentOpts {
    fn default() -> Self {
        AgentOpts {
            replication_factor: 3,
            bootstrap: Vec::new(),
            extra: String::new(),
            s3_extra: String::new(),
            web_extra: String::new(),
            rpc_ip: None,
            public_addr: None,
            data_dir: None,
            data_dir_toml: None,
            clock_offsets_ms: Vec::new(),
            engine: None,
        }
    }
}

/// `extra` (config lines before `[s3_api]`) with `[tables] engine` set
/// to `engine`, if any.
fn with_engine(extra: &str, engine: Option<String>) -> String {
    let Some(e) = engine.or_else(|| std::env::var("HANGAR_TEST_ENGINE").ok()) else {
        return extra.to_string();
    };
    let line = format!("engine = {e:?}\n");
    match extra.find("[tables]\n") {
        Some(i) => {
            let at = i + "[tables]\n".len();
            format!("{}{line}{}", &extra[..at], &extra[at..])
        }
        None => format!("{extra}\n[tables]\n{line}"),
    }
}

impl Agent {
    /// Create the agent's directory and config; does not start it.
    pub fn new(secret: &RpcSecret, opts: &AgentOpts) -> Agent {
        let dir = tempfile::tempdir().expect("temporary directory");
        let rpc_port = free_port();
        let config_path = dir.path().join("hangar.toml");
        let rpc_ip = opts.rpc_ip.clone().unwrap_or_else(|| "127.0.0.1".into());
        let mut agent = Agent {
            dir,
            config_path,
            rpc_port,
            s3_port: free_port(),
            web_port: free_port(),
            metrics_port: free_port(),
            public_addr: opts
                .public_addr
                .clone()
                .unwrap_or_else(|| format!("{rpc_ip}:{rpc_port}")),
            rpc_ip,
            secret: secret.clone(),
            id: String::new(),
            clock_offset_ms: 0,
            child: None,
            starts: 0,
        };
        agent.write_config(opts);
        agent.id = agent
            .node_id_line()
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string();
        agent
    }

    /// Rewrite the config with other options (same ports and identity):
    /// takes effect at the next start.
    pub fn write_config(&self, opts: &AgentOpts) {
        let d = self.dir.path();
        let peers: Vec<String> = opts.bootstrap.iter().map(|p| format!("{p:?}")).collect();
        let text = format!(
            "metadata_dir = {meta:?}\n\
             data_dir = {data}\n\
             replication_factor = {rf}\n\
             rpc_bind_addr = \"{ip}:{port}\"\n\
             rpc_public_addr = \"{public}\"\n\
             rpc_bind_outgoing = {outgoing}\n\
             rpc_secret = \"{secret}\"\n\
             bootstrap_peers = [{peers}]\n\
             ping_interval_ms = 200\n\
             ping_failures_before_down = 3\n\
             {extra}\n\
             [s3_api]\napi_bind_addr = \"127.0.0.1:{s3}\"\n{s3_extra}\n\
             [s3_web]\nbind_addr = \"127.0.0.1:{web}\"\n{web_extra}\n\
             [admin]\nmetrics_bind_addr = \"127.0.0.1:{metrics}\"\n",
            meta = d.join("meta"),
            data = opts.data_dir_toml.clone().unwrap_or_else(|| format!(
                "{:?}",
                opts.data_dir.clone().unwrap_or_else(|| d.join("data"))
            )),
            rf = opts.replication_factor,
            port = self.rpc_port,
            ip = self.rpc_ip,
            public = self.public_addr,
            outgoing = self.rpc_ip != "127.0.0.1",
            secret = self.secret.to_hex(),
            peers = peers.join(", "),
            extra = with_engine(&opts.extra, opts.engine.clone()),
            s3 = self.s3_port,
            s3_extra = opts.s3_extra,
            web_extra = opts.web_extra,
            metrics = self.metrics_port,
            web = self.web_port,
        );
        std::fs::write(&self.config_path, text).expect("write agent config");
    }

    /// `hangar-agent node-id` for this agent.
    pub fn node_id_line(&self) -> String {
        let out = Command::new(agent_bin())
            .current_dir(self.dir.path())
            .args(["node-id", "--config"])
            .arg(&self.config_path)
            .output()
            .expect("run hangar-agent node-id");
        assert!(
            out.status.success(),
            "node-id failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Where the agent's RPC listens (consoles connect here directly).
    pub fn addr(&self) -> String {
        format!("{}:{}", self.rpc_ip, self.rpc_port)
    }

    /// The S3 endpoint URL.
    pub fn s3_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// Block files this agent holds on disk.
    pub fn block_files(&self) -> std::collections::BTreeSet<String> {
        fn walk(dir: &Path, out: &mut std::collections::BTreeSet<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if let Some(name) = p.file_name().and_then(|n| n.to_str())
                    && let name = name.strip_suffix(".zst").unwrap_or(name)
                    && name.len() == 64
                {
                    out.insert(name.to_string());
                }
            }
        }
        let mut out = std::collections::BTreeSet::new();
        walk(&self.dir.path().join("data").join("blocks"), &mut out);
        out
    }

    /// `<id>@<address other nodes use>`.
    pub fn peer_addr(&self) -> String {
        format!("{}@{}", self.id, self.public_addr)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("agent-{}.log", self.starts))
    }

    /// Everything the agent has logged, across restarts.
    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("agent-{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Start the process and wait until it answers `hangar status`.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "agent already running");
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).expect("create agent log");
        let log2 = log.try_clone().expect("clone log handle");
        // In its own directory: relative paths in its config (as some
        // tests use, for placements that do not depend on a random
        // temporary path) are relative to it.
        let child = Command::new(agent_bin())
            .current_dir(self.dir.path())
            .args(["run", "--config"])
            .arg(&self.config_path)
            .env("RUST_LOG", "info,hangar_agent=debug,tarpc=warn")
            .env(
                hangar_common::clock::OFFSET_ENV,
                self.clock_offset_ms.to_string(),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .expect("spawn hangar-agent");
        self.child = Some(child);
        wait_for(
            &format!("agent {} to answer", self.addr()),
            DEADLINE,
            || {
                if let Some(status) = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    panic!("agent exited during start with {status}:\n{}", self.logs());
                }
                self.hangar(&["status"]).status.success().then_some(())
            },
        );
    }

    /// SIGKILL: no chance to clean up, as in a power cut.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("agent is running");
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        wait_for("agent to exit after SIGTERM", DEADLINE, || {
            c.try_wait().ok().flatten()
        })
    }

    /// SIGSTOP: the process freezes, its sockets stay open (a hung node).
    pub fn pause(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-STOP", &c.id().to_string()])
                .status();
        }
    }

    /// SIGCONT after [`Agent::pause`].
    pub fn resume(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
        }
    }

    /// The agent's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Run the console CLI against this agent.
    pub fn hangar(&self, args: &[&str]) -> Output {
        Command::new(console_bin())
            .args([
                "--rpc-host",
                &self.addr(),
                "--rpc-secret",
                &self.secret.to_hex(),
            ])
            .args(args)
            .env_remove("HANGAR_CONFIG")
            .output()
            .expect("run hangar")
    }

    /// Run the console CLI with `--json`, insist on success, parse.
    pub fn hangar_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.hangar(&full);
        assert!(
            out.status.success(),
            "hangar {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("hangar --json prints JSON")
    }

    /// `status --json`, or None if the agent does not answer.
    pub fn status(&self) -> Option<Value> {
        let out = self.hangar(&["--json", "status"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }
}

impl Agent {
    /// The Merkle digest of each table on this agent, once its Merkle
    /// queues are empty (None before): replicas holding the same items
    /// have the same digests.
    pub fn merkle_digests(&self) -> Option<std::collections::BTreeMap<String, String>> {
        let st = self.status()?;
        st["tables"]
            .as_array()?
            .iter()
            .map(|t| {
                let queue = t["merkle_queue"].as_u64()?;
                (queue == 0).then(|| {
                    (
                        t["table"].as_str().unwrap_or_default().to_string(),
                        t["merkle_digest"].as_str().unwrap_or_default().to_string(),
                    )
                })
            })
            .collect()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        // HANGAR_TEST_KEEP=1 keeps every agent's directory (config, logs,
        // metadata) for a look after a failure.
        if std::env::var_os("HANGAR_TEST_KEEP").is_some() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
            eprintln!(
                "kept agent {} directory: {}",
                &self.id[..16.min(self.id.len())],
                dir.keep().display()
            );
        }
    }
}

/// Several agents sharing one secret.
pub struct Cluster {
    pub secret: RpcSecret,
    pub agents: Vec<Agent>,
}

impl Cluster {
    /// Start `n` agents, not yet connected to each other.
    pub fn start(n: usize, opts: &AgentOpts) -> Cluster {
        let secret = RpcSecret::generate();
        let mut agents: Vec<Agent> = (0..n)
            .map(|i| {
                let mut a = Agent::new(&secret, opts);
                a.clock_offset_ms = opts.clock_offsets_ms.get(i).copied().unwrap_or(0);
                a
            })
            .collect();
        for a in &mut agents {
            a.start();
        }
        Cluster { secret, agents }
    }
}

/// The node entry for `id` in a `status --json` document.
pub fn node_in<'a>(status: &'a Value, id: &str) -> Option<&'a Value> {
    status["nodes"].as_array()?.iter().find(|n| n["id"] == id)
}

/// Whether `status` shows node `id` up.
pub fn sees_up(status: &Value, id: &str) -> bool {
    node_in(status, id).is_some_and(|n| n["up"] == true)
}

/// Wait until every agent's replicas hold the same metadata (the same
/// Merkle roots for every table, nothing left to fold).
pub fn wait_for_same_metadata(agents: &[Agent], deadline: Duration) {
    wait_for(
        "the replicas' metadata to converge (same Merkle roots)",
        deadline,
        || {
            let d: Vec<_> = agents.iter().map(Agent::merkle_digests).collect();
            (d[0].is_some() && d.iter().all(|x| *x == d[0])).then_some(())
        },
    );
}

/// Whether `status` shows node `id` marked down (not merely never seen).
pub fn sees_down(status: &Value, id: &str) -> bool {
    node_in(status, id).is_some_and(|n| n["up"] == false && !n["down_since_ms"].is_null())
}

/// Async twin of [`wait_for`]: poll `cond` until `Some`, or panic.
pub async fn wait_for_async<T, F, Fut>(what: &str, deadline: Duration, mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut delay = Duration::from_millis(20);
    loop {
        if let Some(v) = cond().await {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(250));
    }
}

/// A tarpc context with a generous deadline for test calls.
pub fn ctx() -> tarpc::context::Context {
    hangar_common::rpc::context_with_timeout(Duration::from_secs(20))
}

impl Agent {
    /// An Admin RPC client connected to this agent (the library the
    /// console uses, over a real socket).
    pub async fn admin(&self) -> hangar_common::rpc::AdminClient {
        // Retried: on a loaded 2-core machine a handshake may take a while.
        let mut last = String::new();
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            match hangar_common::rpc::connect_admin(
                &self.addr(),
                None,
                &self.secret,
                Duration::from_secs(10),
            )
            .await
            {
                Ok((client, _)) => return client,
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "cannot connect to the admin service of {}: {last}",
            self.addr()
        );
    }
}

impl Cluster {
    /// Start `n` agents and make them a cluster: connect them, give agent
    /// `i` zone `dc{i+1}` and 100 GB, apply layout version 1, and wait
    /// until every agent has it and sees every other up.
    pub fn start_formed(n: usize, opts: &AgentOpts) -> Cluster {
        let c = Cluster::start(n, opts);
        c.form();
        c
    }

    /// One agent with replication factor 1 and default settings, formed.
    pub fn single_node() -> Cluster {
        Cluster::start_formed(
            1,
            &AgentOpts {
                replication_factor: 1,
                ..AgentOpts::default()
            },
        )
    }

    /// Connect every agent to the first, give agent i zone `dc<i+1>` and
    /// 100G, apply layout 1 and wait until every agent has it.
    pub fn form(&self) {
        let c = self;
        for other in &c.agents[1..] {
            let out = c.agents[0].hangar(&["node", "connect", &other.peer_addr()]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for (i, a) in c.agents.iter().enumerate() {
            let zone = format!("dc{}", i + 1);
            c.agents[0].assign_role(&a.id, &zone, "100G");
        }
        c.agents[0].hangar_json(&["layout", "apply", "--version", "1"]);
        c.wait_converged(1);
    }

    /// Start a new agent with this cluster's secret and connect it to the
    /// first (it has no role yet).
    pub fn add_agent(&self, opts: &AgentOpts) -> Agent {
        let mut d = Agent::new(&self.secret, opts);
        d.start();
        let out = self.agents[0].hangar(&["node", "connect", &d.peer_addr()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        d
    }

    /// Wait until every agent reports layout `version` and sees all up.
    pub fn wait_converged(&self, version: u64) {
        let ids: Vec<String> = self.agents.iter().map(|a| a.id.clone()).collect();
        wait_for("the cluster to converge", DEADLINE, || {
            for a in &self.agents {
                let st = a.status()?;
                if st["layout_version"] != version || !ids.iter().all(|id| sees_up(&st, id)) {
                    return None;
                }
            }
            Some(())
        });
    }
}

/// Every agent of `agents` reports layout `version` with no older version
/// still live (the data transition is over).
pub fn transition_done(agents: &[&Agent], version: u64) -> Option<()> {
    for a in agents {
        let st = a.status()?;
        if st["layout_version"] != version || st["live_versions"] != serde_json::json!([version]) {
            return None;
        }
    }
    Some(())
}

/// An access key as `hangar --json key create` prints it.
#[derive(Clone, Debug)]
pub struct S3Key {
    pub id: String,
    pub secret: String,
}

impl Agent {
    /// Create an access key with the CLI.
    pub fn create_key(&self, name: &str) -> S3Key {
        let k = self.hangar_json(&["key", "create", name]);
        S3Key {
            id: k["access_key_id"]
                .as_str()
                .expect("access_key_id")
                .to_string(),
            secret: k["secret_access_key"]
                .as_str()
                .expect("secret_access_key")
                .to_string(),
        }
    }

    /// Create bucket `bucket` and an access key `key_name` that may read
    /// and write it, with the CLI.
    pub fn bucket_with_key(&self, bucket: &str, key_name: &str) -> S3Key {
        let key = self.create_key(key_name);
        self.hangar_json(&["bucket", "create", bucket]);
        self.hangar_json(&[
            "bucket", "allow", bucket, "--key", key_name, "--read", "--write",
        ]);
        key
    }

    /// The command running a scenario of `tests/s3/client.py` (boto3)
    /// against this agent, for tests that drive the process themselves.
    pub fn boto3_command(&self, key: &S3Key, bucket: &str, args: &[&str]) -> Command {
        self.script_command("client.py", key, bucket, args)
    }

    /// The command running a Python script of `tests/s3/` with the
    /// connection settings of this agent, a key and a bucket in its
    /// environment.
    pub fn script_command(
        &self,
        script: &str,
        key: &S3Key,
        bucket: &str,
        args: &[&str],
    ) -> Command {
        if script == "compat.py" {
            // Its HTTPS scenario makes a throw-away certificate.
            tools::require_tool("openssl", "openssl");
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("s3")
            .join(script);
        let mut cmd = Command::new(tools::python());
        cmd.env("PATH", tools::path_with_clients())
            .arg(script)
            .args(args)
            .env("HANGAR_S3_ENDPOINT", self.s3_endpoint())
            .env("HANGAR_WEB_PORT", self.web_port.to_string())
            .env("HANGAR_KEY_ID", &key.id)
            .env("HANGAR_KEY_SECRET", &key.secret)
            .env("HANGAR_BUCKET", bucket);
        cmd
    }

    /// Run a scenario of `tests/s3/client.py` (boto3) against this agent.
    pub fn boto3(
        &self,
        key: &S3Key,
        bucket: &str,
        extra_env: &[(&str, &str)],
        args: &[&str],
    ) -> Output {
        self.script("client.py", key, bucket, extra_env, args)
    }

    /// Run a script of `tests/s3/` against this agent.
    pub fn script(
        &self,
        script: &str,
        key: &S3Key,
        bucket: &str,
        extra_env: &[(&str, &str)],
        args: &[&str],
    ) -> Output {
        self.script_command(script, key, bucket, args)
            .envs(extra_env.iter().copied())
            .output()
            .expect("run the test environment's python")
    }

    /// Like [`Agent::boto3`], insisting on success.
    pub fn boto3_ok(
        &self,
        key: &S3Key,
        bucket: &str,
        extra_env: &[(&str, &str)],
        args: &[&str],
    ) -> String {
        self.script_ok("client.py", key, bucket, extra_env, args)
    }

    /// `hangar layout assign NODE --zone ZONE --capacity CAPACITY` through
    /// this agent, insisting on success.
    pub fn assign_role(&self, node: &str, zone: &str, capacity: &str) -> Value {
        self.hangar_json(&[
            "layout",
            "assign",
            node,
            "--zone",
            zone,
            "--capacity",
            capacity,
        ])
    }

    /// PUT `n` objects of `size` bytes named `<prefix>0000`... (content
    /// fixed by name) through this agent; every PUT must succeed.
    pub fn put_many(&self, key: &S3Key, bucket: &str, prefix: &str, n: usize, size: usize) {
        let (n, size) = (n.to_string(), size.to_string());
        self.script_ok(
            "compat.py",
            key,
            bucket,
            &[],
            &["put_many", prefix, &n, &size],
        );
    }

    /// Read back every object [`Agent::put_many`] wrote, checking content.
    pub fn get_many(&self, key: &S3Key, bucket: &str, prefix: &str, n: usize, size: usize) {
        let (n, size) = (n.to_string(), size.to_string());
        self.script_ok(
            "compat.py",
            key,
            bucket,
            &[],
            &["get_many", prefix, &n, &size],
        );
    }

    /// Like [`Agent::script`], insisting on success.
    pub fn script_ok(
        &self,
        script: &str,
        key: &S3Key,
        bucket: &str,
        extra_env: &[(&str, &str)],
        args: &[&str],
    ) -> String {
        let out = self.script(script, key, bucket, extra_env, args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{script} {args:?} failed:\n{stdout}\n{}\nagent log tail:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        );
        stdout
    }
}

/// A small tmpfs mounted for a test (a real file system that fills up),
/// unmounted when dropped.
pub struct SmallDisk {
    path: PathBuf,
    /// The mount point, removed after the unmount.
    _mount_point: tempfile::TempDir,
}

impl SmallDisk {
    /// Mount one of `size` (`"6m"`). Mounting needs root: where it is
    /// refused this panics naming what the test needs, so a test that
    /// could not run never counts as passed. Tests that use it are in the
    /// full tier (`#[ignore]`d by a plain `cargo test`).
    pub fn mount(size: &str) -> SmallDisk {
        let mnt = tempfile::tempdir().expect("a mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(mnt.path())
            .output();
        match out {
            Ok(o) if o.status.success() => SmallDisk {
                path: mnt.path().to_path_buf(),
                _mount_point: mnt,
            },
            Ok(o) => panic!(
                "this test mounts a {size} tmpfs to fill it up, which needs root (run the full \
                 tier as root, as CI does): mount said {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!(
                "this test mounts a {size} tmpfs and needs the mount command (Debian package \
                 mount) and root: {e}"
            ),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
