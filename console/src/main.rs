//! hangar: the operator console.
//!
//! With no subcommand, a full-screen terminal console (see [`tui`]); with a
//! subcommand, it runs once, prints (human tables, or JSON with `--json`)
//! and exits, for scripts. Either way it talks to one agent, any agent, over
//! the `Admin` tarpc service: there is no master node.

mod cli;
mod conn;
mod demo;
mod tui;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hangar",
    version,
    about = "Hangar console: see and run a Hangar cluster"
)]
pub struct Cli {
    /// Configuration file (default: $HANGAR_CONFIG, then
    /// ~/.config/hangar/hangar.toml, then /etc/hangar/hangar.toml).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Agent to talk to: ID@HOST:PORT (checks the node's identity) or
    /// HOST:PORT. Default: the rpc_public_addr of the config.
    #[arg(long, global = true, env = "HANGAR_RPC_HOST")]
    pub rpc_host: Option<String>,
    /// The cluster's rpc secret (64 hex digits). Default: from the config.
    #[arg(long, global = true, env = "HANGAR_RPC_SECRET", hide_env_values = true)]
    pub rpc_secret: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What `hangar bucket versioning` sets.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum VersioningState {
    Enable,
    Suspend,
}

#[derive(Subcommand)]
pub enum Command {
    /// Start a throwaway 3-node cluster on this machine (a bucket, a key
    /// and a little data ready) and open the console on it; quitting
    /// stops it and removes its data.
    Demo,
    /// Nodes, their state, and the health of the ring.
    Status,
    /// Nodes: connect a new one.
    #[command(subcommand)]
    Node(NodeCmd),
    /// The layout: which nodes store what.
    #[command(subcommand)]
    Layout(LayoutCmd),
    /// Buckets: create, delete, list, inspect, and which keys may use them.
    #[command(subcommand)]
    Bucket(BucketCmd),
    /// Access keys for S3 clients.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Background workers of the connected node: list, pause, resume.
    #[command(subcommand)]
    Worker(WorkerCmd),
    /// Start a repair on the connected node.
    #[command(subcommand)]
    Repair(RepairCmd),
    /// Write a snapshot of the connected node's metadata now (while it
    /// runs); prints its directory.
    Snapshot,
    /// What the connected node saw happen to the cluster (nodes down and
    /// up, quorum lost, layouts, data moves, repairs...), newest first.
    Events {
        /// How many entries.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Diagnostics: exercise the replicated metadata tables.
    #[command(subcommand)]
    Debug(DebugCmd),
}

#[derive(Subcommand)]
pub enum WorkerCmd {
    /// Each worker, paused or not, and what it has done.
    List,
    /// Pause a worker (it finishes its current unit of work first).
    Pause { name: String },
    /// Resume a paused worker.
    Resume { name: String },
}

#[derive(Subcommand)]
pub enum RepairCmd {
    /// Read every local block back and check it; bad copies are replaced
    /// from other replicas.
    Scrub,
    /// Compare every metadata partition with the other replicas now.
    Tables,
    /// Re-check where every local block belongs and fetch missing ones.
    Blocks,
}

#[derive(Subcommand)]
pub enum BucketCmd {
    /// Create a bucket.
    Create { name: String },
    /// Delete an empty bucket.
    Delete { name: String },
    /// List every bucket.
    List,
    /// A bucket and the keys that may use it.
    Info { name: String },
    /// Grant a key permissions on a bucket.
    Allow {
        name: String,
        /// Access key id or name.
        #[arg(long)]
        key: String,
        #[arg(long)]
        read: bool,
        #[arg(long)]
        write: bool,
        #[arg(long)]
        owner: bool,
    },
    /// Limit what a bucket may hold; writes past a limit are refused
    /// (QuotaExceeded). Usage trails writes by a few seconds.
    Quota {
        name: String,
        /// Largest total size, e.g. 10G, 500MiB.
        #[arg(long, conflicts_with = "clear")]
        max_size: Option<String>,
        /// Largest number of objects.
        #[arg(long, conflicts_with = "clear")]
        max_objects: Option<u64>,
        /// Remove both limits.
        #[arg(long)]
        clear: bool,
    },
    /// Turn S3 versioning on (every write keeps the versions before it)
    /// or suspend it (versions kept stay; new writes replace the "null"
    /// version). A bucket never goes back to unversioned.
    Versioning {
        name: String,
        #[arg(value_enum)]
        state: VersioningState,
    },
    /// Revoke a key's permissions on a bucket.
    Deny {
        name: String,
        #[arg(long)]
        key: String,
        #[arg(long)]
        read: bool,
        #[arg(long)]
        write: bool,
        #[arg(long)]
        owner: bool,
    },
}

#[derive(Subcommand)]
pub enum KeyCmd {
    /// Create an access key; prints its id and secret (shown only once).
    Create { name: String },
    /// List access keys.
    List,
    /// A key and its permissions.
    Info {
        key: String,
        /// Print its secret too (for a secret that was lost).
        #[arg(long)]
        show_secret: bool,
    },
    /// Delete a key.
    Delete { key: String },
}

#[derive(Subcommand)]
pub enum DebugCmd {
    /// The `debug_kv` table: a replicated key-value table for checking
    /// that metadata replication works on this cluster.
    #[command(subcommand)]
    Kv(KvCmd),
}

#[derive(Subcommand)]
pub enum KvCmd {
    /// Write a value (quorum write).
    Put { key: String, value: String },
    /// Read a value (quorum read, with read repair).
    Get { key: String },
    /// Delete a value (a tombstone, collected once every replica has it).
    Delete { key: String },
    /// What the connected node's own replica holds for these keys.
    Local { keys: Vec<String> },
}

#[derive(Subcommand)]
pub enum NodeCmd {
    /// Connect the cluster to a node, given as printed by `hangar-agent
    /// node-id` on it.
    Connect {
        /// ID@HOST:PORT
        peer: String,
    },
}

#[derive(Subcommand)]
pub enum LayoutCmd {
    /// Current layout, staged changes and what applying them would do.
    Show,
    /// Stage a node's role: its zone and capacity, or gateway.
    Assign {
        /// Node id, or any unique prefix of it.
        node: String,
        /// Zone (site, house) the node is in.
        #[arg(long, short)]
        zone: String,
        /// Storage capacity it offers, e.g. 500G, 1.5TB, 800GiB.
        #[arg(
            long,
            short,
            conflicts_with = "gateway",
            required_unless_present = "gateway"
        )]
        capacity: Option<String>,
        /// Serve requests but store nothing.
        #[arg(long, short)]
        gateway: bool,
    },
    /// Stage the removal of a node from the layout.
    Remove {
        /// Node id, or any unique prefix of it.
        node: String,
    },
    /// Apply the staged changes as the next layout version.
    Apply {
        /// The new version number: the current one plus one (a guard
        /// against applying on top of a layout someone else just changed).
        #[arg(long)]
        version: u64,
    },
    /// Drop every staged change.
    Revert,
    /// Let the move to layout VERSION complete without the nodes that are
    /// down and have not confirmed it (a node that stays in the layout but
    /// will not be back soon). Such a node, if it returns, catches up by
    /// anti-entropy; writes it accepts before it learns the new layout may
    /// reach only the old replicas.
    SkipDead {
        /// The layout version being moved to (the current one).
        #[arg(long)]
        version: u64,
    },
}

fn main() {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hangar: error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let res = rt.block_on(async {
        if let Some(Command::Demo) = &cli.command {
            return demo::run().await;
        }
        let target = conn::Target::resolve(&cli)?;
        match &cli.command {
            None => tui::run(target, tui::Session::default()).await,
            Some(cmd) => cli::run(&target, cmd, cli.json).await,
        }
    });
    if let Err(e) = res {
        eprintln!("hangar: error: {e:#}");
        std::process::exit(1);
    }
}
