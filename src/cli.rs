//! The `revsync` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, ProcessEnv};
use crate::registry::Registry;

/// Exit codes, documented in the README.
pub mod exit {
    pub const OK: u8 = 0;
    /// The daemon failed at run time (port taken, store unreadable, ...).
    pub const FAILURE: u8 = 1;
    /// The configuration is invalid (or the command line is: clap uses 2 too).
    pub const CONFIG: u8 = 2;
    /// A second SIGTERM/SIGINT cut the graceful shutdown short.
    pub const FORCED: u8 = 130;
}

#[derive(Parser, Debug)]
#[command(name = "revsync", version, about = "Keeps HubSpot, Salesforce, Zendesk and Stripe in agreement", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the sync daemon until SIGTERM or Ctrl-C.
    Run(ConfigArg),
    /// Validate the configuration and print one line per connector (exit 2 on errors).
    Check(ConfigArg),
    /// Look at canonical records.
    #[command(subcommand)]
    Records(RecordsCommand),
}

#[derive(Subcommand, Debug)]
enum RecordsCommand {
    /// Show one customer: every field with its source and time, every system's id, relations, audit.
    ///
    /// Asks the running daemon (server.listen); with no daemon running, reads the store directly.
    Get {
        /// An email, a domain, a canonical id, or connector:object:external_id.
        query: String,
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// How many of the latest audit entries to show.
        #[arg(long, default_value_t = 10)]
        audit: usize,
    },
}

#[derive(clap::Args, Debug)]
struct ConfigArg {
    /// Directory holding revsync.yaml and connectors/*.yaml.
    #[arg(
        long,
        short,
        value_name = "DIR",
        default_value = "config",
        env = "REVSYNC_CONFIG_DIR"
    )]
    config: PathBuf,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Check(a) => check(&a.config),
        Command::Run(a) => run(&a.config),
        Command::Records(RecordsCommand::Get {
            query,
            config,
            json,
            audit,
        }) => records_get(&config.config, &query, json, audit),
    };
    ExitCode::from(code)
}

/// Load and validate everything `run` would need: files, connector params, field
/// mappings against the canonical model, merge rules.
fn load(dir: &Path) -> Result<Config, u8> {
    let report = |errors: config::ConfigErrors| {
        eprintln!("{errors}");
        exit::CONFIG
    };
    let cfg = config::load(dir, &Registry::builtin(), &ProcessEnv).map_err(report)?;
    crate::engine::Engine::validate(&cfg).map_err(|e| report(config::ConfigErrors(e)))?;
    Ok(cfg)
}

fn check(dir: &Path) -> u8 {
    let cfg = match load(dir) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let d = &cfg.daemon;
    println!(
        "daemon: listen {}, store {} (sled), log {:?}, shutdown within {}s",
        d.server.listen,
        d.store.path.display(),
        d.log.format,
        d.shutdown_timeout_secs
    );
    for (file, c) in &cfg.connectors {
        let objects: Vec<String> = c
            .objects
            .iter()
            .map(|(name, o)| {
                format!(
                    "{name}->{} ({}, {} fields)",
                    o.kind,
                    o.direction.as_str(),
                    o.fields.len()
                )
            })
            .collect();
        println!(
            "ok {} ({}) {}: {}; poll every {}s; deletes {:?} [{}]",
            c.id,
            c.type_name,
            if c.enabled { "enabled" } else { "disabled" },
            if objects.is_empty() {
                "no objects".to_owned()
            } else {
                objects.join(", ")
            },
            c.poll.interval_secs,
            c.deletes,
            file.display()
        );
    }
    if cfg.connectors.is_empty() {
        println!(
            "no connectors configured in {}",
            dir.join(config::CONNECTORS_DIR).display()
        );
    }
    exit::OK
}

fn run(dir: &Path) -> u8 {
    let cfg = match load(dir) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(e) = crate::telemetry::init(&cfg.daemon.log) {
        eprintln!("error: {e:#}");
        return exit::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = shutdown_signal();
        match crate::app::run(cfg, shutdown).await {
            Ok(()) => exit::OK,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "revsync stopped on an error");
                exit::FAILURE
            }
        }
    })
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits at once.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        let first = next_signal(&mut term).await;
        tracing::info!(
            signal = first,
            "shutdown requested; send it again to exit at once"
        );
        let _ = tx.send(());
        let second = next_signal(&mut term).await;
        tracing::warn!(signal = second, "second signal: exiting without draining");
        std::process::exit(i32::from(exit::FORCED));
    });
    async move {
        let _ = rx.await;
    }
}

async fn next_signal(term: &mut tokio::signal::unix::Signal) -> &'static str {
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}

fn records_get(dir: &Path, query: &str, as_json: bool, audit: usize) -> u8 {
    let cfg = match load(dir) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let found = match ask_daemon(&cfg, query, audit) {
        Ok(found) => Ok(found),
        Err(DaemonAnswer::NotRunning) => read_store(&cfg, query, audit),
        Err(DaemonAnswer::Failed(e)) => Err(e),
    };
    match found {
        Ok(Some(v)) => {
            if as_json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", crate::engine::view::record_table(&v));
            }
            exit::OK
        }
        Ok(None) => {
            eprintln!("no record matches `{query}`");
            exit::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::FAILURE
        }
    }
}

enum DaemonAnswer {
    NotRunning,
    Failed(String),
}

/// The running daemon owns the store (sled locks it), so ask it first.
fn ask_daemon(
    cfg: &Config,
    query: &str,
    audit: usize,
) -> Result<Option<serde_json::Value>, DaemonAnswer> {
    let mut addr = cfg.daemon.server.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let mut url = url::Url::parse(&format!("http://{addr}/records/"))
        .map_err(|e| DaemonAnswer::Failed(e.to_string()))?;
    url.path_segments_mut()
        .map_err(|_| DaemonAnswer::Failed("bad url".into()))?
        .pop_if_empty()
        .push(query);
    url.query_pairs_mut()
        .append_pair("audit", &audit.to_string());
    let token = cfg.daemon.server.admin_token.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DaemonAnswer::Failed(e.to_string()))?;
    rt.block_on(async move {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| DaemonAnswer::Failed(e.to_string()))?;
        let mut req = client.get(url);
        if let Some(t) = &token {
            req = req.bearer_auth(t.expose());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Err(DaemonAnswer::NotRunning),
            Err(e) => {
                return Err(DaemonAnswer::Failed(format!(
                    "asking the daemon at {addr}: {e}"
                )))
            }
        };
        match resp.status().as_u16() {
            200 => resp
                .json()
                .await
                .map(Some)
                .map_err(|e| DaemonAnswer::Failed(e.to_string())),
            404 => Ok(None),
            401 => Err(DaemonAnswer::Failed(
                "the daemon refused the admin token (server.admin_token)".into(),
            )),
            s => Err(DaemonAnswer::Failed(format!(
                "the daemon at {addr} answered {s}"
            ))),
        }
    })
}

fn read_store(
    cfg: &Config,
    query: &str,
    audit: usize,
) -> Result<Option<serde_json::Value>, String> {
    let s = &cfg.daemon.store;
    let store =
        crate::store::SledStore::open(&s.path, s.flush_interval_ms, s.cache_mb).map_err(|e| {
            format!(
                "{e} (is a daemon holding it without answering on {}?)",
                cfg.daemon.server.listen
            )
        })?;
    let store: std::sync::Arc<dyn crate::store::Store> = std::sync::Arc::new(store);
    let (m, p) =
        crate::engine::Engine::validate(cfg).map_err(|e| config::ConfigErrors(e).to_string())?;
    let engine = crate::engine::Engine::new(store, cfg, m, p, crate::engine::system_clock())
        .map_err(|e| e.to_string())?;
    crate::engine::lookup_view(&engine, query, audit).map_err(|e| e.to_string())
}
