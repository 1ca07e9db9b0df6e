//! hangar-agent: the daemon that runs on every Hangar node.
//!
//! Layers, each depending only on those below (see ARCHITECTURE.md):
//! `net` (secure connections, membership) -> `layout` (the ring, gossiped)
//! -> `admin` (the services consoles and peers call). `node` wires them up.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hangar_common::config::{Config, ConfigSource};
use hangar_common::layout::NodeRole;
use hangar_common::layout::cluster::StagedRole;
use tracing::{info, warn};

use hangar_agent::admin::Services;
use hangar_agent::layout::LayoutManager;
use hangar_agent::net::{Net, NetConfig};
use hangar_agent::node::StartError;
use hangar_agent::table::data::TableData;
use hangar_agent::table::kv::KvTable;
use hangar_agent::table::{Table, TableConfig, TableEndpoint, TableSchema};
use hangar_agent::{block, db, model, node, s3, table, worker};

#[derive(Parser)]
#[command(name = "hangar-agent", version, about = "The Hangar storage daemon")]
struct Cli {
    /// Configuration file (default: $HANGAR_CONFIG, then
    /// ~/.config/hangar/hangar.toml, then /etc/hangar/hangar.toml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node until SIGINT or SIGTERM.
    Run,
    /// Print `<node id>@<rpc_public_addr>`, to give to `hangar node connect`.
    NodeId,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = real_main(cli) {
        eprintln!("hangar-agent: error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    let (config, source) = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::NodeId => {
            let identity = node::prepare(&config)?;
            println!("{}@{}", identity.keypair.public, config.public_addr());
            Ok(())
        }
        Command::Run => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tarpc=warn")),
                )
                .with_writer(std::io::stderr)
                .init();
            limit_malloc_arenas();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .max_blocking_threads(MAX_BLOCKING_THREADS)
                .thread_keep_alive(std::time::Duration::from_secs(5))
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(run(config, source))
        }
    }
}

/// Threads for blocking work (storage transactions, block files): enough
/// for every request of a busy household node to wait on the disk at once;
/// more only cost memory. Idle ones leave after 5 s.
const MAX_BLOCKING_THREADS: usize = 64;

/// Limit glibc's malloc arenas: by default it creates up to 8 per core,
/// one per thread that allocates concurrently (tokio's blocking pool has
/// many), and keeps freed memory in each, which multiplies resident memory
/// under load on small machines for no measurable speed gain here.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator tuning parameter; it is called
    // before the runtime starts any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Every 10 s, hand the memory the allocator holds free back to the
/// system: after a burst of requests glibc keeps what they used (70 MiB
/// after the S3 bench on one node, against 4 MiB idle before it). A trim
/// of a quiet heap takes well under a millisecond.
async fn return_freed_memory() {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(10)).await;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free memory of the allocator's
        // own heaps; it is thread-safe.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

async fn run(config: Config, source: ConfigSource) -> anyhow::Result<()> {
    let identity = node::prepare(&config)?;
    let listener = tokio::net::TcpListener::bind(&config.rpc_bind_addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.rpc_bind_addr.clone(),
            source,
        })?;

    let net = Net::new(
        identity.keypair.clone(),
        identity.secret.clone(),
        NetConfig {
            public_addr: config.public_addr(),
            ping_interval: Duration::from_millis(config.ping_interval_ms),
            failures_before_down: config.ping_failures_before_down,
            metadata_dir: config.metadata_dir.clone(),
            bind_outgoing: config
                .rpc_bind_outgoing
                .then(|| config.rpc_bind_addr.parse::<std::net::SocketAddr>().ok())
                .flatten()
                .map(|a| a.ip())
                .filter(|ip| !ip.is_unspecified()),
        },
    );
    let layout = LayoutManager::open(net.clone(), &config.metadata_dir, config.replication_factor)?;
    net.set_gossip(layout.clone());
    let db_dir = config.metadata_dir.join("db");
    let db = db::open(config.tables.engine, &db_dir, config.tables.db_cache_bytes).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the metadata store in {}: {e} (is another agent using this metadata_dir?)",
            db_dir.display()
        )
    })?;
    let workers = Arc::new(worker::Workers::default());
    let table_cfg: TableConfig = TableConfig {
        workers: workers.clone(),
        op_timeout: Duration::from_millis(config.tables.op_timeout_ms),
        sync_interval: Duration::from_millis(config.tables.sync_interval_ms),
        gc_delay: Duration::from_millis(config.tables.gc_delay_ms),
    };
    let kv = Table::new(
        TableData::open(db.clone(), Arc::new(KvTable))?,
        net.clone(),
        layout.clone(),
        table_cfg.clone(),
    );
    kv.spawn_workers();
    let blocks = block::BlockManager::open(
        &config.data_dir,
        db.clone(),
        net.clone(),
        layout.clone(),
        block::BlockConfig {
            op_timeout: Duration::from_millis(config.tables.op_timeout_ms),
            unreferenced_grace: Duration::from_secs(config.blocks.unreferenced_grace_secs),
            arrival_delay: Duration::from_secs(config.blocks.arrival_delay_secs),
            workers: workers.clone(),
            compression_level: (config.blocks.compression_level > 0)
                .then_some(config.blocks.compression_level),
        },
    )?;
    let model = open_model(&db, &net, &layout, &table_cfg, blocks.clone())?;
    let mut tables: BTreeMap<&'static str, Arc<dyn TableEndpoint>> = BTreeMap::new();
    tables.insert(KvTable::NAME, kv.clone());
    tables.insert(model::tables::BucketTable::NAME, model.buckets.clone());
    tables.insert(model::tables::BucketAliasTable::NAME, model.aliases.clone());
    tables.insert(model::tables::KeyTable::NAME, model.keys.clone());
    tables.insert(model::tables::ObjectTable::NAME, model.objects.clone());
    tables.insert(model::tables::VersionTable::NAME, model.versions.clone());
    tables.insert(model::tables::UploadTable::NAME, model.uploads.clone());
    tables.insert(model::tables::BucketUsageTable::NAME, model.usage.clone());
    tables.insert(model::tables::BlockRefTable::NAME, model.refs.clone());
    tokio::spawn(return_freed_memory());
    tokio::spawn(blocks.clone().resync_loop());
    tokio::spawn(blocks.clone().count_queue_loop());
    tokio::spawn(blocks.clone().scrub_loop(
        Duration::from_secs(config.blocks.scrub_interval_days * 86_400),
        Duration::from_millis(config.blocks.scrub_pause_ms),
    ));
    tokio::spawn(model.clone().gc_loop());
    tokio::spawn(model.clone().usage_loop());
    tokio::spawn(model.clone().keep_warm_loop());
    tokio::spawn(
        model
            .clone()
            .lifecycle_loop(model::lifecycle::LifecycleTiming {
                interval: Duration::from_secs(config.s3_api.lifecycle_interval_secs.max(1)),
                day: Duration::from_secs(config.s3_api.lifecycle_day_secs.max(1)),
            }),
    );
    tokio::spawn(table::transition::transition_loop(
        net.clone(),
        layout.clone(),
        tables.values().cloned().collect(),
        Duration::from_millis(config.tables.op_timeout_ms),
    ));
    let s3_metrics = Arc::new(s3::metrics::S3Metrics::default());
    let services = Arc::new(Services {
        net: net.clone(),
        layout: layout.clone(),
        tables: Arc::new(tables),
        kv,
        model: model.clone(),
        metadata_dir: config.metadata_dir.clone(),
        metadata_engine: db.name(),
        snapshot_keep: config.snapshots.keep,
        last_snapshot: Default::default(),
        events: Arc::new(hangar_agent::admin::events::EventLog::open(&db)?),
        s3_metrics: s3_metrics.clone(),
        endpoints: hangar_common::rpc::Endpoints {
            s3: format!(
                "http://{}",
                client_addr(&config.s3_api.api_bind_addr, &config.public_addr())
            ),
            web: format!(
                "http://{}",
                client_addr(&config.s3_web.bind_addr, &config.public_addr())
            ),
            region: config.s3_api.s3_region.clone(),
        },
    });
    tokio::spawn(hangar_agent::admin::events::watch(services.clone()));
    if config.snapshots.interval_hours > 0 {
        let s = services.clone();
        let every = Duration::from_secs(config.snapshots.interval_hours * 3600);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = s.snapshot().await {
                    warn!("metadata snapshot failed, retried next time: {e}");
                }
            }
        });
    }
    if let Some(addr) = &config.admin.metrics_bind_addr {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| {
                anyhow::anyhow!("cannot listen on {addr} ([admin] metrics_bind_addr): {source}")
            })?;
        tokio::spawn(hangar_agent::admin::http::serve(l, services.clone()));
    }
    tokio::spawn(net.clone().serve(listener, services));
    let s3_listener = tokio::net::TcpListener::bind(&config.s3_api.api_bind_addr)
        .await
        .map_err(|source| {
            anyhow::anyhow!(
                "cannot listen on {} ([s3_api] api_bind_addr): {source}",
                config.s3_api.api_bind_addr
            )
        })?;
    let s3 = Arc::new(s3::server::S3Server::new(
        model.clone(),
        s3::server::S3Config {
            region: config.s3_api.s3_region.clone(),
            root_domain: config.s3_api.root_domain.clone(),
            block_size: config.blocks.block_size,
            inline_max: config.blocks.inline_max_bytes,
        },
        s3_metrics,
    ));
    tokio::spawn(s3.clone().serve(s3_listener));
    let web_listener = tokio::net::TcpListener::bind(&config.s3_web.bind_addr)
        .await
        .map_err(|source| {
            anyhow::anyhow!(
                "cannot listen on {} ([s3_web] bind_addr): {source}",
                config.s3_web.bind_addr
            )
        })?;
    let web = Arc::new(s3::web::WebServer {
        s3,
        root_domain: config.s3_web.root_domain.clone(),
    });
    tokio::spawn(web.serve(web_listener));

    for p in &config.bootstrap_peers {
        // Validated when the config was loaded.
        if let Ok(p) = p.parse::<hangar_common::PeerAddr>() {
            net.learn(p.id, Some(p.addr));
        }
    }

    if source == ConfigSource::Defaults && layout.current().version == 0 {
        // No config at all: make this a working single-node cluster right
        // away, offering the free space of the data directory.
        let capacity = model
            .blocks
            .store
            .disk()
            .map(|d| d.free)
            .unwrap_or(0)
            .max(1 << 30);
        let role = NodeRole {
            zone: "local".into(),
            capacity: Some(capacity),
        };
        layout.stage(vec![(net.id, StagedRole::Set(role))]);
        if let Err(e) = layout.apply(1) {
            warn!("could not apply the single-node layout: {e}");
        }
    }

    print_banner(&config, &source, &net, identity.generated_secret);
    info!(
        "node {} listening on {}",
        net.id.short(),
        config.rpc_bind_addr
    );

    shutdown_signal().await;
    info!("shutting down");
    if let Err(e) = db.flush() {
        warn!("could not flush the metadata store: {e}");
    }
    Ok(())
}

/// Open the object store's tables and start their workers.
fn open_model(
    db: &db::Db,
    net: &Arc<Net>,
    layout: &Arc<LayoutManager>,
    cfg: &TableConfig,
    blocks: Arc<block::BlockManager>,
) -> anyhow::Result<Arc<model::Model>> {
    use model::tables::*;
    fn open<S: TableSchema>(
        db: &db::Db,
        net: &Arc<Net>,
        layout: &Arc<LayoutManager>,
        cfg: &TableConfig,
        schema: S,
    ) -> anyhow::Result<Arc<Table<S>>> {
        let t = Table::new(
            TableData::open(db.clone(), Arc::new(schema))?,
            net.clone(),
            layout.clone(),
            cfg.clone(),
        );
        t.spawn_workers();
        Ok(t)
    }
    let version_gc = db.open_tree("object:version_gc")?;
    let ref_gc = db.open_tree("version:ref_gc")?;
    Ok(Arc::new(model::Model {
        net: net.clone(),
        db: db.clone(),
        buckets: open(db, net, layout, cfg, BucketTable)?,
        aliases: open(db, net, layout, cfg, BucketAliasTable)?,
        keys: open(db, net, layout, cfg, KeyTable)?,
        objects: open(
            db,
            net,
            layout,
            cfg,
            ObjectTable {
                version_gc,
                usage: db.open_tree("object:usage")?,
                rc: blocks.rc_trees(),
                blocks: blocks.clone(),
            },
        )?,
        usage: open(db, net, layout, cfg, BucketUsageTable)?,
        versions: open(db, net, layout, cfg, VersionTable { ref_gc })?,
        uploads: open(db, net, layout, cfg, UploadTable { version_gc })?,
        refs: open(
            db,
            net,
            layout,
            cfg,
            BlockRefTable {
                rc: blocks.rc_trees(),
            },
        )?,
        blocks,
        version_gc,
        ref_gc,
        workers: cfg.workers.clone(),
        lifecycle: Default::default(),
        key_cache: Default::default(),
        bucket_cache: Default::default(),
    }))
}

/// The address clients of another machine use for a service bound to
/// `bind`: a wildcard bind is reached at the host other nodes use for this
/// one (its public RPC address), on the service's port.
fn client_addr(bind: &str, public_rpc: &str) -> String {
    match bind.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => {
            let host = public_rpc
                .rsplit_once(':')
                .map(|(h, _)| h)
                .unwrap_or("localhost");
            format!("{host}:{}", a.port())
        }
        _ => bind.to_string(),
    }
}

/// The S3 address to show users: a wildcard bind shown as localhost.
fn s3_display_addr(bind: &str) -> String {
    match bind.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => format!("localhost:{}", a.port()),
        _ => bind.to_string(),
    }
}

fn print_banner(config: &Config, source: &ConfigSource, net: &Net, generated_secret: bool) {
    println!("Hangar agent {} is running", env!("CARGO_PKG_VERSION"));
    println!("  node id      {}", net.id);
    println!("  connect as   {}@{}", net.id, config.public_addr());
    println!(
        "  rpc          {} (public address {})",
        config.rpc_bind_addr,
        config.public_addr()
    );
    println!(
        "  s3 api       http://{} (region {})",
        s3_display_addr(&config.s3_api.api_bind_addr),
        config.s3_api.s3_region
    );
    println!(
        "  websites     http://{} (buckets with a website configuration)",
        s3_display_addr(&config.s3_web.bind_addr)
    );
    println!("  config       {source}");
    println!("  metadata     {}", config.metadata_dir.display());
    for d in &config.data_dir.0 {
        println!(
            "  data         {}{}{}",
            d.path.display(),
            d.capacity
                .map(|c| format!(" (capacity {})", hangar_common::size::format_bytes(c)))
                .unwrap_or_default(),
            if d.read_only { " (read-only)" } else { "" }
        );
    }
    if generated_secret {
        println!(
            "  rpc secret   generated in {} (give it to other nodes to grow the cluster)",
            config.generated_secret_path().display()
        );
    }
    if *source == ConfigSource::Defaults {
        println!("Single-node cluster with default settings. Open the console with:  hangar");
    } else {
        println!("Open the console with:  hangar --config {source}");
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
