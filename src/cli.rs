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
