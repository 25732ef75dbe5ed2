//! The `revsync` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, ProcessEnv};
use crate::json::{at, member};
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
    /// Create or upgrade the PostgreSQL store's schema (`store: { kind: postgres }`) to
    /// this build's version. Safe to run again, and from several replicas at once.
    Migrate(ConfigArg),
    /// Move a store's whole state between sled and PostgreSQL.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Run the sync daemon until SIGTERM or Ctrl-C.
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Serve admin and record endpoints without a token. For local experiments only:
        /// anyone who reaches the port can read customer records and change the queue.
        #[arg(long)]
        insecure_no_auth: bool,
    },
    /// Validate the configuration and print one line per connector (exit 2 on errors).
    Check(ConfigArg),
    /// Dry run: read every system (or a sample), reconcile in memory, and show what the
    /// first sync would create, update, merge and resolve in each. Writes nothing.
    Plan {
        #[command(flatten)]
        config: ConfigArg,
        /// Read at most this many records per object (a sample; the objects cut short are named).
        #[arg(long)]
        limit: Option<usize>,
        /// Print the whole plan as JSON.
        #[arg(long)]
        json: bool,
        /// Also write one CSV per system into this directory.
        #[arg(long, value_name = "DIR")]
        csv: Option<PathBuf>,
        /// Lines shown per list in the table (JSON and CSV carry all).
        #[arg(long, default_value_t = 10)]
        show: usize,
    },
    /// List the objects and fields a configured system's API describes (custom ones
    /// included), with the canonical field the connector's mapping gives each.
    Discover {
        /// Connector id (`id:` in its file).
        connector: String,
        /// Only this object.
        #[arg(long)]
        object: Option<String>,
        /// Print a starting connector file: the current one with every unmapped field
        /// listed, commented out, with the canonical field it most likely means.
        #[arg(long, conflicts_with = "json")]
        yaml: bool,
        /// Print the description as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Look at canonical records.
    #[command(subcommand)]
    Records(RecordsCommand),
    /// Show each connector's state and counters (from the running daemon's /status).
    Status {
        #[command(flatten)]
        client: ClientArg,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revenue KPIs (MRR and its bridge, churn, NRR, GRR, win rate, velocity, CAC, LTV...)
    /// over calendar periods, from the canonical store's history.
    Kpi {
        /// Period length: month or quarter.
        #[arg(long, default_value = "month")]
        period: String,
        /// First day (YYYY-MM-DD); default: two periods before the current one.
        #[arg(long)]
        from: Option<String>,
        /// Day after the last (YYYY-MM-DD, exclusive); default: now.
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        client: ClientArg,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Instead of the report: have the running daemon recompute every KPI fact from its
        /// store and compare them with its incremental state (exit 1 if they differed; the
        /// daemon then keeps the recomputed ones). Holds the daemon's writes meanwhile.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        verify: bool,
    },
    /// Pushes a system refused for good.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Re-read a connector from the beginning (its cursor moves only when the re-read completes).
    Resync {
        /// Connector id.
        connector: String,
        /// Only this object.
        #[arg(long)]
        object: Option<String>,
        #[command(flatten)]
        client: ClientArg,
    },
    /// Print a one-time link that signs this browser in to the console (15 minutes, one use).
    Console {
        #[command(flatten)]
        client: ClientArg,
    },
    /// Stop a connector polling and pushing until `revsync resume` (kept across restarts;
    /// its webhooks are still accepted and kept).
    Pause {
        /// Connector id.
        connector: String,
        #[command(flatten)]
        client: ClientArg,
    },
    /// Let a paused connector poll and push again; what queued meanwhile goes out.
    Resume {
        /// Connector id.
        connector: String,
        #[command(flatten)]
        client: ClientArg,
    },
    /// The scored identity model.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Likely duplicates the scored identity model sent to review.
    #[command(subcommand)]
    Dupes(DupesCommand),
    /// Data quality of persons and companies: invalid, disposable and role emails, phones
    /// not valid for their country, names in one case, unknown countries; counted per
    /// system the value came from, with examples.
    ///
    /// Asks the running daemon (server.listen); with no daemon running, reads the store directly.
    Quality {
        /// Only the values this connector brought.
        #[arg(long)]
        connector: Option<String>,
        #[command(flatten)]
        client: ClientArg,
        #[arg(long)]
        json: bool,
    },
    /// Workflow rules (DIR/workflows/*.yaml): list them, see their runs, or try one on a
    /// record without changing anything.
    ///
    /// Asks the running daemon (server.listen); with no daemon running, reads the store directly.
    #[command(subcommand)]
    Workflows(WorkflowsCommand),
    /// Start the four simulators with a generated company world and the daemon against them.
    Demo(crate::demo::DemoArgs),
    /// Run one simulator alone, in the foreground, printing its base URL and credentials.
    Sim(crate::demo::SimArgs),
}

#[derive(Subcommand, Debug)]
enum IdentityCommand {
    /// Estimate a kind's model (m by EM, u from random pairs, name frequencies) from the
    /// records in the running daemon's store and keep it as the next version; the daemon
    /// uses it from its next start. Prints each comparison level's m, u and weight.
    Train {
        /// person or organization; both when left out.
        #[arg(long)]
        kind: Option<String>,
        #[command(flatten)]
        client: ClientArg,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum WorkflowsCommand {
    /// Each rule: its trigger, condition and actions, and its runs since the daemon started.
    List {
        #[command(flatten)]
        client: ClientArg,
        #[arg(long)]
        json: bool,
    },
    /// The newest runs (done, scheduled, failed), newest first, with what each did.
    Runs {
        /// Only this rule's runs.
        #[arg(long)]
        rule: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        client: ClientArg,
        #[arg(long)]
        json: bool,
    },
    /// A dry run: what the rule would do for this record as it is now, as if its trigger
    /// had just fired. Nothing is written anywhere.
    Test {
        rule: String,
        /// The canonical id of a record of the kind the rule runs on.
        record: String,
        #[command(flatten)]
        client: ClientArg,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum DupesCommand {
    /// Pairs waiting for review, with their match probability and why they wait.
    List {
        #[command(flatten)]
        client: ClientArg,
        #[arg(long)]
        json: bool,
    },
    /// One pair: what each comparison found, and both records.
    Show {
        /// The pair's id as `dupes list` shows it.
        id: String,
        #[command(flatten)]
        client: ClientArg,
    },
    /// They are one: merge them (the older id survives) and push the result.
    Accept {
        id: String,
        #[command(flatten)]
        client: ClientArg,
    },
    /// They are two: never proposed or merged by score again.
    Reject {
        id: String,
        #[command(flatten)]
        client: ClientArg,
    },
}

#[derive(Subcommand, Debug)]
enum DlqCommand {
    /// List dead letters with the request sent and the answer received.
    ///
    /// Asks the running daemon (server.listen); with no daemon running, reads the store directly.
    List {
        #[arg(long)]
        connector: Option<String>,
        #[command(flatten)]
        client: ClientArg,
        #[arg(long)]
        json: bool,
    },
    /// Put dead letters back in their outbox, after fixing the cause.
    Replay {
        /// `CONNECTOR:SEQ` (a push) or `in:ID` (a record or event that could not be
        /// brought in: read again by id through its connector), as `dlq list` shows it.
        id: Option<String>,
        /// Every dead letter (of --connector, if given).
        #[arg(long, conflicts_with = "id")]
        all: bool,
        #[arg(long)]
        connector: Option<String>,
        #[command(flatten)]
        client: ClientArg,
    },
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
        client: ClientArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// How many of the latest audit entries to show.
        #[arg(long, default_value_t = 10)]
        audit: usize,
    },
    /// Merge two records you know are one person or company (the older id survives) and
    /// push the result; `records unmerge` undoes it. Asks the running daemon.
    Merge {
        /// Canonical ids, as `records get` shows them.
        a: String,
        b: String,
        #[command(flatten)]
        client: ClientArg,
    },
    /// Undo a merge: the copy (or record) it joined becomes a record of its own again,
    /// as it was before, the two are pushed to every system and never merged again.
    ///
    /// Without --source: the record's latest merge; a merged-away (absorbed) id names the
    /// merge that absorbed it. Asks the running daemon (server.listen).
    Unmerge {
        /// The canonical id (`records get` shows it, and each merge in its audit).
        id: String,
        /// The copy to split off, `connector:object:external_id`.
        #[arg(long)]
        source: Option<String>,
        #[command(flatten)]
        client: ClientArg,
    },
    /// Every record of a kind, one row each: its fields, every system's id for it, the
    /// records merged into it and each source copy. Streams: any number of records.
    ///
    /// Asks the running daemon (server.listen); with no daemon running, reads the store directly.
    Export {
        /// person, organization, deal, ticket, subscription, invoice or activity.
        #[arg(long, value_parser = |s: &str| s.parse::<revsync_sdk::Kind>())]
        kind: revsync_sdk::Kind,
        #[arg(long, value_enum, default_value_t = crate::export::Format::Csv)]
        format: crate::export::Format,
        /// Write here (created whole or not at all) instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArg,
    },
}

/// Where a client command finds the daemon and its token.
#[derive(clap::Args, Debug)]
struct ClientArg {
    #[command(flatten)]
    config: ConfigArg,
    /// The daemon's base URL (e.g. http://127.0.0.1:8080); default: server.listen from
    /// the configuration's revsync.yaml (connector files and their secrets are not read).
    #[arg(long, env = "REVSYNC_URL", value_name = "URL")]
    url: Option<String>,
    /// The daemon's admin token; default: server.admin_token, else the token the daemon
    /// generated in <store.path>/admin_token.
    #[arg(long, env = "REVSYNC_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// The daemon a client command talks to.
struct Target {
    /// `http://host:port`, no trailing slash.
    base: String,
    token: Option<String>,
}

impl ClientArg {
    /// `--url` as given, or `server.listen` of revsync.yaml; the token as
    /// [`client_token`] finds it. Only the daemon's own file is read: a client command
    /// needs no connector's secret.
    fn target(&self) -> Result<Target, u8> {
        let explicit = self.token.clone().filter(|t| !t.is_empty());
        if let Some(url) = &self.url {
            let base = url.trim_end_matches('/').to_owned();
            if url::Url::parse(&base).is_err() {
                eprintln!("error: --url `{url}` is not a URL (e.g. http://127.0.0.1:8080)");
                return Err(exit::CONFIG);
            }
            return Ok(Target {
                base,
                token: explicit,
            });
        }
        let daemon = config::load_daemon_only(&self.config.config, &ProcessEnv).map_err(|e| {
            eprintln!("{e}");
            eprintln!("hint: or point at the daemon with --url / REVSYNC_URL");
            exit::CONFIG
        })?;
        let mut addr = daemon.server.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        Ok(Target {
            base: format!("http://{addr}"),
            token: explicit.or_else(|| client_token(&daemon)),
        })
    }
}

#[derive(Subcommand, Debug)]
enum StoreCommand {
    /// Copy every table of one store into another, empty one, and verify the copy by
    /// counts and a checksum. Stop the daemon first: a sled store is held by one process,
    /// and writes made during the copy would be missed. A store is a sled directory or a
    /// PostgreSQL URL (`postgres://...`, `${DATABASE_URL}` read from the environment);
    /// a PostgreSQL destination is migrated first.
    Copy {
        #[arg(long, value_name = "DIR|URL")]
        from: String,
        #[arg(long, value_name = "DIR|URL")]
        to: String,
        /// Read for a sled store's cache size and flush interval.
        #[command(flatten)]
        config: ConfigArg,
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
        Command::Plan {
            config,
            limit,
            json,
            csv,
            show,
        } => plan(&config.config, limit, json, csv.as_deref(), show),
        Command::Discover {
            connector,
            object,
            yaml,
            json,
            config,
        } => discover(&config.config, &connector, object.as_deref(), yaml, json),
        Command::Run {
            config,
            insecure_no_auth,
        } => run(&config.config, insecure_no_auth),
        Command::Records(RecordsCommand::Get {
            query,
            client,
            json,
            audit,
        }) => records_get(&client, &query, json, audit),
        Command::Records(RecordsCommand::Merge { a, b, client }) => records_merge(&client, &a, &b),
        Command::Records(RecordsCommand::Unmerge { id, source, client }) => {
            records_unmerge(&client, &id, source.as_deref())
        }
        Command::Records(RecordsCommand::Export {
            kind,
            format,
            out,
            client,
        }) => records_export(&client, kind, format, out.as_deref()),
        Command::Status { client, json } => status(&client, json),
        Command::Kpi {
            client,
            json,
            verify: true,
            ..
        } => kpi_verify(&client, json),
        Command::Kpi {
            period,
            from,
            to,
            client,
            json,
            verify: false,
        } => kpi(
            &client,
            &crate::kpi::report::Query {
                period: Some(period),
                from,
                to,
            },
            json,
        ),
        Command::Dlq(DlqCommand::List {
            connector,
            client,
            json,
        }) => dlq_list(&client, connector.as_deref(), json),
        Command::Dlq(DlqCommand::Replay {
            id,
            all,
            connector,
            client,
        }) => dlq_replay(&client, id.as_deref(), all, connector.as_deref()),
        Command::Resync {
            connector,
            object,
            client,
        } => resync(&client, &connector, object.as_deref()),
        Command::Console { client } => console_link(&client),
        Command::Pause { connector, client } => pause(&client, &connector, true),
        Command::Resume { connector, client } => pause(&client, &connector, false),
        Command::Dupes(cmd) => dupes(cmd),
        Command::Workflows(cmd) => workflows(cmd),
        Command::Quality {
            connector,
            client,
            json,
        } => quality(&client, connector.as_deref(), json),
        Command::Identity(IdentityCommand::Train { kind, client, json }) => {
            identity_train(&client, kind.as_deref(), json)
        }
        Command::Migrate(a) => migrate(&a.config),
        Command::Store(StoreCommand::Copy { from, to, config }) => {
            store_copy(&config.config, &from, &to)
        }
        Command::Demo(a) => crate::demo::demo(a),
        Command::Sim(a) => crate::demo::sim(a),
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

/// [`load`], and a runtime for a command that talks to the systems itself.
/// The daemon's blocking pool: store reads and writes, applies, flushes.
const BLOCKING_THREADS: usize = 8;

fn load_with_runtime(dir: &Path) -> Result<(Config, tokio::runtime::Runtime), u8> {
    let cfg = load(dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: {e}");
            exit::FAILURE
        })?;
    Ok((cfg, rt))
}

fn check(dir: &Path) -> u8 {
    // Every stage runs, whatever the one before found: one run shows every mistake.
    let (cfg, mut errors) = config::load_all(dir, &Registry::builtin(), &ProcessEnv);
    if let Err(e) = crate::engine::Engine::validate(&cfg) {
        errors.extend(e);
    }
    if !errors.is_empty() {
        eprintln!("{}", config::ConfigErrors(errors));
        return exit::CONFIG;
    }
    let d = &cfg.daemon;
    let store = match (d.store.kind, &d.store.url) {
        (config::StoreKind::Postgres, Some(url)) => {
            crate::store::PgStore::describe_url(url.expose())
        }
        _ => format!("{} (sled)", d.store.path.display()),
    };
    println!(
        "daemon: listen {}, store {}, log {}, shutdown within {}s",
        d.server.listen,
        store,
        d.log.format.as_str(),
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
            "ok {} ({}) {}: {}; poll every {}s; deletes {} [{}]",
            c.id,
            c.type_name,
            if c.enabled { "enabled" } else { "disabled" },
            if objects.is_empty() {
                "no objects".to_owned()
            } else {
                objects.join(", ")
            },
            c.poll.interval_secs,
            c.deletes.as_str(),
            file.display()
        );
    }
    if cfg.connectors.is_empty() {
        println!(
            "no connectors configured in {}",
            dir.join(config::CONNECTORS_DIR).display()
        );
    }
    for r in &cfg.workflows.0 {
        let actions: Vec<&str> = r
            .actions
            .iter()
            .map(crate::workflows::rules::Action::name)
            .collect();
        println!(
            "ok workflow {}: on {}{}, do {} [{}]",
            r.name,
            r.trigger.describe(),
            r.after
                .map(|a| format!(", {}s after", a.as_secs()))
                .unwrap_or_default(),
            actions.join(", "),
            r.file.display()
        );
    }
    exit::OK
}

fn plan(dir: &Path, limit: Option<usize>, as_json: bool, csv: Option<&Path>, show: usize) -> u8 {
    let (cfg, rt) = match load_with_runtime(dir) {
        Ok(both) => both,
        Err(code) => return code,
    };
    let progress = Progress::new();
    let planned = rt.block_on(crate::plan::plan(
        &cfg,
        &Registry::builtin(),
        limit,
        &|m: &str| progress.say(m),
    ));
    progress.done();
    let p = match planned {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e:#}");
            return exit::FAILURE;
        }
    };
    if let Some(dir) = csv {
        match p.write_csv(dir) {
            Ok(files) => {
                for f in files {
                    eprintln!("wrote {}", f.display());
                }
            }
            Err(e) => {
                eprintln!("error: writing CSV to {}: {e:#}", dir.display());
                return exit::FAILURE;
            }
        }
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&p).unwrap_or_default());
    } else {
        print!("{}", p.table(show));
    }
    exit::OK
}

fn discover(dir: &Path, id: &str, object: Option<&str>, as_yaml: bool, as_json: bool) -> u8 {
    let (cfg, rt) = match load_with_runtime(dir) {
        Ok(both) => both,
        Err(code) => return code,
    };
    let found = rt.block_on(crate::discover::discover(
        &cfg,
        &Registry::builtin(),
        id,
        object,
    ));
    let d = match found {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e:#}");
            return exit::FAILURE;
        }
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&d).unwrap_or_default());
    } else if as_yaml {
        let file = cfg
            .connectors
            .iter()
            .find(|(_, c)| c.id == id)
            .map(|(f, _)| f.clone())
            .unwrap_or_default();
        let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
        match crate::discover::connector_file(&d, &file, &today) {
            Ok(text) => print!("{text}"),
            Err(e) => {
                eprintln!("error: {e:#}");
                return exit::FAILURE;
            }
        }
    } else {
        print!("{}", crate::discover::table(&d));
    }
    for o in d.objects.iter().filter(|o| o.error.is_some()) {
        eprintln!(
            "error: {} could not describe {}: {}",
            d.connector,
            o.name,
            o.error.as_deref().unwrap_or_default()
        );
    }
    if d.failed() {
        exit::FAILURE
    } else {
        exit::OK
    }
}

/// Progress for long reads: a spinner on a terminal; elsewhere (a pipe, a log file) a
/// plain line now and then, so a redirected run is not silent for minutes.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last: std::sync::Mutex<std::time::Instant>,
}

impl Progress {
    fn new() -> Self {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.enable_steady_tick(std::time::Duration::from_millis(120));
            b
        });
        Self {
            bar,
            last: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }

    fn say(&self, message: &str) {
        match &self.bar {
            Some(b) => b.set_message(message.to_owned()),
            None => {
                let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
                if last.elapsed() >= std::time::Duration::from_secs(5) {
                    *last = std::time::Instant::now();
                    eprintln!("{message}");
                }
            }
        }
    }

    /// A line that stays (above the spinner on a terminal).
    fn line(&self, message: &str) {
        match &self.bar {
            Some(b) => b.println(message),
            None => println!("{message}"),
        }
    }

    fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

fn run(dir: &Path, insecure_no_auth: bool) -> u8 {
    let mut cfg = match load(dir) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // app::serve logs the warning once logging is set up (JSON logs stay JSON).
    cfg.daemon.server.insecure_no_auth = insecure_no_auth;
    if let Err(e) = crate::telemetry::init(&cfg.daemon.log) {
        eprintln!("error: {e:#}");
        return exit::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Store work runs on the blocking pool in bursts. Each thread there gets its own
        // allocator heap, which keeps the pages it touched: the 1-hour soak ran 38 threads
        // and its RSS floor rose 23% before levelling off. A few threads, kept a minute
        // between bursts, serve every burst (applies are serialized by the engine's writer
        // lock anyway; no blocking task waits for another to start). Tokio's defaults are
        // 512 threads and 10 s.
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_keep_alive(std::time::Duration::from_secs(60))
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
        match crate::app::run(cfg, Registry::builtin(), shutdown).await {
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

fn records_get(client: &ClientArg, query: &str, as_json: bool, audit: usize) -> u8 {
    let target = match client.target() {
        Ok(t) => t,
        Err(code) => return code,
    };
    let found = match ask_daemon(&target, query, audit) {
        Ok(found) => Ok(found),
        // No daemon holds the store: read it here, which needs the whole configuration
        // (the mappings say how records look). Not when a URL named another machine.
        Err(DaemonAnswer::NotRunning) if client.url.is_none() => {
            match load(&client.config.config) {
                Ok(cfg) => read_store(&cfg, query, audit),
                Err(code) => return code,
            }
        }
        Err(DaemonAnswer::NotRunning) => Err(format!("no daemon answers at {}", target.base)),
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

fn kpi(client: &ClientArg, q: &crate::kpi::report::Query, as_json: bool) -> u8 {
    // A bad question is refused here, before any daemon or store is asked.
    if let Err(e) = q.periods(chrono::Utc::now()) {
        eprintln!("error: {e}");
        return exit::FAILURE;
    }
    let target = match client.target() {
        Ok(t) => t,
        Err(code) => return code,
    };
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [("period", &q.period), ("from", &q.from), ("to", &q.to)] {
        if let Some(v) = v {
            query.append_pair(k, v);
        }
    }
    let path = format!("/kpi?{}", query.finish());
    let report = match call_daemon(&target, reqwest::Method::GET, &path, None) {
        Ok((200, v)) => Ok(v),
        Ok((status, v)) => Err(format!(
            "the daemon answered {status}: {}",
            v.get("message")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("no message")
        )),
        // No daemon holds the store: read it here. Not when a URL named another machine.
        Err(DaemonAnswer::NotRunning) if client.url.is_none() => {
            match load(&client.config.config) {
                Ok(cfg) => open_store(&cfg).and_then(|store| {
                    let inputs = (&cfg.daemon.kpi).into();
                    crate::kpi::report::from_store(store.as_ref(), q, &inputs, chrono::Utc::now())
                }),
                Err(code) => return code,
            }
        }
        Err(DaemonAnswer::NotRunning) => Err(format!("no daemon answers at {}", target.base)),
        Err(DaemonAnswer::Failed(e)) => Err(e),
    };
    match report {
        Ok(r) if as_json => {
            println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            exit::OK
        }
        Ok(r) => {
            print!("{}", crate::kpi::report::tables(&r));
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::FAILURE
        }
    }
}

fn kpi_verify(client: &ClientArg, as_json: bool) -> u8 {
    let target = match client.target() {
        Ok(t) => t,
        Err(code) => return code,
    };
    match call_daemon(&target, reqwest::Method::POST, "/admin/kpi/verify", None) {
        Ok((200, v)) => {
            let differing = v.get("differing").and_then(serde_json::Value::as_u64);
            if as_json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                let records = v.get("records").and_then(serde_json::Value::as_u64);
                match differing {
                    Some(0) => println!(
                        "kpi state equals a full recompute ({} records)",
                        records.unwrap_or(0)
                    ),
                    _ => println!(
                        "kpi state differed from a full recompute in {} of {} records (now replaced by it): {}",
                        differing.unwrap_or(0),
                        records.unwrap_or(0),
                        v.get("examples").map(ToString::to_string).unwrap_or_default()
                    ),
                }
            }
            if differing == Some(0) {
                exit::OK
            } else {
                exit::FAILURE
            }
        }
        Ok((status, v)) => {
            eprintln!(
                "error: the daemon answered {status}: {}",
                v.get("message")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("no message")
            );
            exit::FAILURE
        }
        Err(DaemonAnswer::NotRunning) => {
            eprintln!(
                "error: no daemon answers at {}: the incremental KPI state lives in the running daemon",
                target.base
            );
            exit::FAILURE
        }
        Err(DaemonAnswer::Failed(e)) => {
            eprintln!("error: {e}");
            exit::FAILURE
        }
    }
}

fn records_export(
    client: &ClientArg,
    kind: revsync_sdk::Kind,
    format: crate::export::Format,
    out: Option<&Path>,
) -> u8 {
    use crate::export::client::{from_daemon, Fetch, OutFile};
    use std::io::Write;
    let target = match client.target() {
        Ok(t) => t,
        Err(code) => return code,
    };
    let mut file = match out.map(OutFile::create).transpose() {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "error: creating {}: {e}",
                out.unwrap_or(Path::new("-")).display()
            );
            return exit::FAILURE;
        }
    };
    let mut stdout = std::io::BufWriter::with_capacity(256 * 1024, std::io::stdout().lock());
    let w: &mut dyn Write = match &mut file {
        Some(f) => f,
        None => &mut stdout,
    };
    let done = match from_daemon(&target.base, target.token.as_deref(), kind, format, w) {
        Ok(bytes) => Ok(format!("{bytes} bytes")),
        // No daemon holds the store: walk it here. Not when a URL named another machine.
        Err(Fetch::NotRunning) if client.url.is_none() => match load(&client.config.config) {
            Ok(cfg) => export_store(&cfg, kind, format, w).map(|n| format!("{n} records")),
            Err(code) => return code,
        },
        Err(Fetch::NotRunning) => Err(format!("no daemon answers at {}", target.base)),
        Err(Fetch::Failed(e)) => Err(e),
    };
    let done = done.and_then(|what| match file {
        Some(f) => f
            .commit()
            .map(|()| what)
            .map_err(|e| format!("writing the export: {e}")),
        None => stdout
            .flush()
            .map(|()| what)
            .map_err(|e| format!("writing the export: {e}")),
    });
    match (done, out) {
        (Ok(what), Some(path)) => {
            eprintln!("exported {what} of {kind} to {}", path.display());
            exit::OK
        }
        (Ok(_), None) => exit::OK,
        (Err(e), _) => {
            eprintln!("error: {e}");
            exit::FAILURE
        }
    }
}

/// The export walked in this process, over the store no daemon holds.
fn export_store(
    cfg: &Config,
    kind: revsync_sdk::Kind,
    format: crate::export::Format,
    out: &mut dyn std::io::Write,
) -> Result<u64, String> {
    let store = open_store(cfg)?;
    let (m, _) =
        crate::engine::Engine::validate(cfg).map_err(|e| config::ConfigErrors(e).to_string())?;
    crate::export::Export::new(kind, format, &m)
        .run(store.as_ref(), out)
        .map_err(|e| e.to_string())
}

/// The store, opened by this process (for sled: no daemon may hold it).
fn open_store(cfg: &Config) -> Result<std::sync::Arc<dyn crate::store::Store>, String> {
    crate::store::open(&cfg.daemon.store).map_err(|e| match cfg.daemon.store.kind {
        config::StoreKind::Sled => format!(
            "{e} (is a daemon holding it without answering on {}?)",
            cfg.daemon.server.listen
        ),
        config::StoreKind::Postgres => e.to_string(),
    })
}

enum DaemonAnswer {
    NotRunning,
    Failed(String),
}

/// One call to the running daemon's API: (status, JSON body).
fn call_daemon(
    target: &Target,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(u16, serde_json::Value), DaemonAnswer> {
    let addr = target.base.clone();
    let token = target.token.clone();
    let url = format!("{addr}{path}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DaemonAnswer::Failed(e.to_string()))?;
    rt.block_on(async move {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| DaemonAnswer::Failed(e.to_string()))?;
        let mut req = client.request(method, &url);
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
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
        let status = resp.status().as_u16();
        if status == 401 {
            return Err(DaemonAnswer::Failed(token_refused(token.is_some())));
        }
        let v = resp.json().await.unwrap_or(serde_json::Value::Null);
        Ok((status, v))
    })
}

/// What a client command says when the daemon answers 401.
pub(crate) fn token_refused(token_given: bool) -> String {
    if token_given {
        "the daemon refused the admin token (give the one it uses with --token or REVSYNC_TOKEN)"
            .into()
    } else {
        "the daemon wants an admin token: pass --token or set REVSYNC_TOKEN (server.admin_token, or the contents of <store.path>/admin_token)".into()
    }
}

/// The token a client command sends: `--token`/`REVSYNC_TOKEN`, else `server.admin_token`,
/// else the one the daemon generated in the store directory (when this user may read it).
fn client_token(daemon: &config::DaemonConfig) -> Option<String> {
    if let Some(t) = &daemon.server.admin_token {
        return Some(t.expose().to_owned());
    }
    crate::auth::read(&crate::auth::token_path(&daemon.store.path))
        .ok()
        .flatten()
        .map(|t| t.expose().to_owned())
}

/// Run one admin call and print a clear error when the daemon is not there.
fn admin(
    client: &ClientArg,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(u16, serde_json::Value), u8> {
    let target = client.target()?;
    call_daemon(&target, method, path, body).map_err(|e| {
        match e {
            DaemonAnswer::NotRunning => eprintln!(
                "error: no daemon answers at {} (start it with `revsync run`, or name it with --url)",
                target.base
            ),
            DaemonAnswer::Failed(m) => eprintln!("error: {m}"),
        }
        exit::FAILURE
    })
}

fn status(client: &ClientArg, as_json: bool) -> u8 {
    let (_, v) = match admin(client, reqwest::Method::GET, "/status", None) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return exit::OK;
    }
    println!(
        "revsync {}  up {}s  ready {}  store {} bytes",
        at(&v, "/version").as_str().unwrap_or("?"),
        at(&v, "/uptime_secs"),
        at(&v, "/ready"),
        at(&v, "/store/size_on_disk_bytes")
    );
    println!("{}", status_table(&v));
    exit::OK
}

/// One row per connector, columns aligned whatever the widths (names, counts, messages).
fn status_table(v: &serde_json::Value) -> comfy_table::Table {
    use comfy_table::{CellAlignment, ColumnConstraint, Table, Width};
    let mut t = Table::new();
    t.load_preset(comfy_table::presets::NOTHING).set_header([
        "CONNECTOR",
        "TYPE",
        "STATE",
        "IN",
        "OUT",
        "OUTBOX",
        "DLQ",
        "ERRORS",
        "LAST ERROR / NOTE",
    ]);
    for c in at(v, "/connectors").as_array().into_iter().flatten() {
        let s = |k: &str| member(c, k).as_str().unwrap_or("-").to_owned();
        let n = |p: &str| at(c, p).as_u64().unwrap_or(0).to_string();
        let said = at(c, "/errors/last_message")
            .as_str()
            .or(at(c, "/note").as_str())
            .unwrap_or("")
            .to_owned();
        t.add_row([
            s("id"),
            s("type"),
            s("state"),
            n("/records_in"),
            n("/records_out"),
            n("/outbox_depth"),
            n("/dead_letters"),
            n("/errors/count"),
            said,
        ]);
    }
    for i in 3..8 {
        if let Some(col) = t.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    // A long message wraps in its own column instead of pushing the others about.
    if let Some(col) = t.column_mut(8) {
        col.set_constraint(ColumnConstraint::UpperBoundary(Width::Fixed(60)));
    }
    t
}

fn dlq_list(client: &ClientArg, connector: Option<&str>, as_json: bool) -> u8 {
    let path = match connector {
        Some(c) => format!("/admin/dlq?connector={c}"),
        None => "/admin/dlq".to_owned(),
    };
    let listed = match ask_or_read(client, &path, |cfg| read_dead_letters(cfg, connector)) {
        Ok(answer) => answer,
        Err(code) => return code,
    };
    let v = match listed {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FAILURE;
        }
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return exit::OK;
    }
    let letters = at(&v, "/dead_letters")
        .as_array()
        .cloned()
        .unwrap_or_default();
    if letters.is_empty() {
        println!("no dead letters");
    }
    for d in letters {
        if at(&d, "/direction") == "inbound" {
            println!(
                "in:{}  {} {} {}  from {}  attempts {}  {}\n    error: {}\n    body: {}",
                at(&d, "/id").as_str().unwrap_or("?"),
                at(&d, "/connector").as_str().unwrap_or("?"),
                at(&d, "/object").as_str().unwrap_or("?"),
                at(&d, "/external_id").as_str().unwrap_or("(no id)"),
                at(&d, "/source").as_str().unwrap_or("?"),
                at(&d, "/attempts"),
                at(&d, "/failed_at").as_str().unwrap_or(""),
                at(&d, "/error").as_str().unwrap_or(""),
                at(&d, "/raw").as_str().unwrap_or("-")
            );
            continue;
        }
        println!(
            "{}:{}  {} {}  {} {}  status {}  {}\n    sent: {}\n    answer: {}",
            at(&d, "/connector").as_str().unwrap_or("?"),
            at(&d, "/seq"),
            at(&d, "/object").as_str().unwrap_or("?"),
            at(&d, "/record").as_str().unwrap_or("?"),
            at(&d, "/class").as_str().unwrap_or("?"),
            at(&d, "/detail").as_str().unwrap_or(""),
            at(&d, "/status"),
            at(&d, "/failed_at").as_str().unwrap_or(""),
            at(&d, "/request").as_str().unwrap_or(""),
            at(&d, "/response").as_str().unwrap_or("-")
        );
    }
    exit::OK
}

fn dlq_replay(client: &ClientArg, id: Option<&str>, all: bool, connector: Option<&str>) -> u8 {
    let body = match (id, all) {
        (Some(id), false) if id.starts_with("in:") => {
            serde_json::json!({ "inbound": id.trim_start_matches("in:") })
        }
        (Some(id), false) => match id
            .rsplit_once(':')
            .and_then(|(c, s)| s.parse::<u64>().ok().map(|s| (c, s)))
        {
            Some((c, seq)) => serde_json::json!({ "connector": c, "seq": seq }),
            None => {
                eprintln!("error: `{id}` is not CONNECTOR:SEQ or in:ID (see `revsync dlq list`)");
                return exit::CONFIG;
            }
        },
        (None, true) => serde_json::json!({ "all": true, "connector": connector }),
        _ => {
            eprintln!("error: give CONNECTOR:SEQ or --all");
            return exit::CONFIG;
        }
    };
    match admin(
        client,
        reqwest::Method::POST,
        "/admin/dlq/replay",
        Some(body),
    ) {
        Ok((200, v)) => {
            println!("replayed {}", at(&v, "/replayed"));
            exit::OK
        }
        Ok((_, v)) => {
            eprintln!(
                "error: {}",
                at(&v, "/message").as_str().unwrap_or("replay refused")
            );
            exit::FAILURE
        }
        Err(code) => code,
    }
}

fn console_link(client: &ClientArg) -> u8 {
    let Ok(target) = client.target() else {
        return exit::FAILURE;
    };
    match admin(client, reqwest::Method::POST, "/admin/console/link", None) {
        Ok((200, v)) => {
            println!(
                "{}{}",
                target.base.trim_end_matches('/'),
                at(&v, "/path").as_str().unwrap_or("/")
            );
            eprintln!("open it within 15 minutes; it signs in once");
            exit::OK
        }
        Ok((_, v)) => refused(&v),
        Err(code) => code,
    }
}

fn identity_train(client: &ClientArg, kind: Option<&str>, as_json: bool) -> u8 {
    let kinds: Vec<&str> = kind.map_or_else(|| vec!["person", "organization"], |k| vec![k]);
    let mut code = exit::OK;
    for k in kinds {
        let body = serde_json::json!({ "kind": k });
        match admin(
            client,
            reqwest::Method::POST,
            "/admin/identity/train",
            Some(body),
        ) {
            Ok((200, v)) if as_json => println!("{v:#}"),
            Ok((200, v)) => {
                print!("{}", at(&v, "/text").as_str().unwrap_or(""));
                println!(
                    "kept as {k} model v{}; the daemon uses it from its next start",
                    at(&v, "/version").as_u64().unwrap_or(0)
                );
            }
            Ok((_, v)) => {
                eprintln!(
                    "error: {k}: {}",
                    at(&v, "/message").as_str().unwrap_or("refused")
                );
                code = exit::FAILURE;
            }
            Err(c) => return c,
        }
    }
    code
}

fn dupes(cmd: DupesCommand) -> u8 {
    let (client, method, path) = match &cmd {
        DupesCommand::List { client, .. } => {
            (client, reqwest::Method::GET, "/admin/dupes".to_owned())
        }
        DupesCommand::Show { id, client } => {
            (client, reqwest::Method::GET, format!("/admin/dupes/{id}"))
        }
        DupesCommand::Accept { id, client } => (
            client,
            reqwest::Method::POST,
            format!("/admin/dupes/{id}/accept"),
        ),
        DupesCommand::Reject { id, client } => (
            client,
            reqwest::Method::POST,
            format!("/admin/dupes/{id}/reject"),
        ),
    };
    let v = match admin(client, method, &path, None) {
        Ok((200, v)) => v,
        Ok((_, v)) => {
            eprintln!(
                "error: {}",
                at(&v, "/message").as_str().unwrap_or("refused")
            );
            return exit::FAILURE;
        }
        Err(code) => return code,
    };
    let pair_line = |p: &serde_json::Value| {
        format!(
            "{}  {}  p={:.5}  {}",
            at(p, "/id").as_str().unwrap_or("?"),
            at(p, "/kind").as_str().unwrap_or("?"),
            at(p, "/probability").as_f64().unwrap_or(0.0),
            at(p, "/reason").as_str().unwrap_or("")
        )
    };
    match cmd {
        DupesCommand::List { json: true, .. } => println!("{v:#}"),
        DupesCommand::List { .. } => {
            let pairs = at(&v, "/pairs").as_array().cloned().unwrap_or_default();
            if pairs.is_empty() {
                println!("no pairs wait for review");
            }
            for p in &pairs {
                println!("{}", pair_line(p));
            }
        }
        DupesCommand::Show { .. } => {
            println!("{}", pair_line(&v));
            for l in at(&v, "/levels").as_array().cloned().unwrap_or_default() {
                println!(
                    "  {:<20} {:<26} {:+.2}",
                    at(&l, "/field").as_str().unwrap_or(""),
                    at(&l, "/level").as_str().unwrap_or(""),
                    at(&l, "/weight").as_f64().unwrap_or(0.0)
                );
            }
            for side in ["record_a", "record_b"] {
                println!();
                print!(
                    "{}",
                    crate::engine::view::record_table(at(&v, &format!("/{side}")))
                );
            }
        }
        DupesCommand::Accept { .. } => println!(
            "merged into {}",
            at(&v, "/survivor").as_str().unwrap_or("?")
        ),
        DupesCommand::Reject { .. } => {
            println!("rejected: the two stay apart and are not proposed again")
        }
    }
    exit::OK
}

/// The daemon said no: its message, and the failure exit code.
fn refused(v: &serde_json::Value) -> u8 {
    eprintln!("error: {}", at(v, "/message").as_str().unwrap_or("refused"));
    exit::FAILURE
}

fn records_merge(client: &ClientArg, a: &str, b: &str) -> u8 {
    let path = format!(
        "/admin/records/{a}/merge?{}",
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("with", b)
            .finish()
    );
    match admin(client, reqwest::Method::POST, &path, None) {
        Ok((200, v)) => {
            println!(
                "merged into {}: the result goes out to every system (`revsync records unmerge` undoes it)",
                at(&v, "/survivor").as_str().unwrap_or("?")
            );
            exit::OK
        }
        Ok((_, v)) => refused(&v),
        Err(code) => code,
    }
}

fn records_unmerge(client: &ClientArg, id: &str, source: Option<&str>) -> u8 {
    let mut path = format!("/admin/records/{id}/unmerge");
    if let Some(src) = source {
        path.push('?');
        path.push_str(
            &url::form_urlencoded::Serializer::new(String::new())
                .append_pair("source", src)
                .finish(),
        );
    }
    match admin(client, reqwest::Method::POST, &path, None) {
        Ok((200, v)) => {
            println!(
                "{} split off {}{}: both are pushed to every system and never merged again",
                at(&v, "/split").as_str().unwrap_or("?"),
                at(&v, "/survivor").as_str().unwrap_or("?"),
                at(&v, "/link")
                    .as_str()
                    .map(|l| format!(" with its copy {l}"))
                    .unwrap_or_default(),
            );
            exit::OK
        }
        Ok((_, v)) => refused(&v),
        Err(code) => code,
    }
}

fn quality(client: &ClientArg, connector: Option<&str>, as_json: bool) -> u8 {
    let path = match connector {
        Some(c) => format!(
            "/admin/quality?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("connector", c)
                .finish()
        ),
        None => "/admin/quality".to_owned(),
    };
    let report = match ask_or_read(client, &path, |cfg| read_quality(cfg, connector)) {
        Ok(answer) => answer,
        Err(code) => return code,
    };
    match report {
        Ok(v) if as_json => println!("{v:#}"),
        Ok(v) => print!("{}", quality_text(&v)),
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FAILURE;
        }
    }
    exit::OK
}

fn workflows(cmd: WorkflowsCommand) -> u8 {
    let (client, as_json) = match &cmd {
        WorkflowsCommand::List { client, json }
        | WorkflowsCommand::Runs { client, json, .. }
        | WorkflowsCommand::Test { client, json, .. } => (client, *json),
    };
    let answer = match &cmd {
        WorkflowsCommand::List { .. } => ask_or_read(client, "/admin/workflows", |cfg| {
            Ok(crate::workflows::list_json(&cfg.workflows, None))
        }),
        WorkflowsCommand::Runs { rule, limit, .. } => {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            query.append_pair("limit", &limit.to_string());
            if let Some(r) = rule {
                query.append_pair("rule", r);
            }
            let path = format!("/admin/workflows/runs?{}", query.finish());
            ask_or_read(client, &path, |cfg| {
                if let Some(r) = rule.as_deref().filter(|r| cfg.workflows.get(r).is_none()) {
                    return Err(format!("no workflow rule `{r}`"));
                }
                let engine = store_engine(cfg)?;
                let runs = crate::workflows::runner::runs(
                    engine.store().as_ref(),
                    rule.as_deref(),
                    *limit,
                )
                .map_err(|e| e.to_string())?;
                Ok(serde_json::json!({ "runs": runs }))
            })
        }
        WorkflowsCommand::Test { rule, record, .. } => {
            let Ok(id) = uuid::Uuid::parse_str(record) else {
                eprintln!(
                    "error: `{record}` is not a canonical id (a UUID, as `records get` shows it)"
                );
                return exit::FAILURE;
            };
            let path = format!(
                "/admin/workflows/{}/test/{id}",
                url::form_urlencoded::byte_serialize(rule.as_bytes()).collect::<String>()
            );
            ask_or_read(client, &path, |cfg| {
                let engine = std::sync::Arc::new(store_engine(cfg)?);
                let runner = crate::workflows::Runner::new(engine, cfg.workflows.clone());
                let d = runner.dry_run(rule, id)?;
                serde_json::to_value(d).map_err(|e| e.to_string())
            })
        }
    };
    let v = match answer {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            return exit::FAILURE;
        }
        Err(code) => return code,
    };
    if as_json {
        println!("{v:#}");
        return exit::OK;
    }
    match cmd {
        WorkflowsCommand::List { .. } => print!("{}", workflows_text(&v)),
        WorkflowsCommand::Runs { .. } => print!("{}", runs_text(&v)),
        WorkflowsCommand::Test { .. } => print!("{}", dry_run_text(&v)),
    }
    exit::OK
}

fn workflows_text(v: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let rules = at(v, "/rules").as_array().cloned().unwrap_or_default();
    if rules.is_empty() {
        return "no workflow rules (add them in DIR/workflows/*.yaml)\n".into();
    }
    let mut out = String::new();
    for r in &rules {
        let s = |p: &str| at(r, p).as_str().unwrap_or_default().to_owned();
        let actions: Vec<&str> = at(r, "/actions")
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        let _ = writeln!(out, "{}  ({})", s("/name"), s("/file"));
        if !s("/description").is_empty() {
            let _ = writeln!(out, "  {}", s("/description"));
        }
        let after = at(r, "/after_secs")
            .as_u64()
            .map(|n| format!(", {n}s after"))
            .unwrap_or_default();
        let _ = writeln!(out, "  on:   {}{after}", s("/trigger"));
        if !s("/when").is_empty() {
            let _ = writeln!(out, "  when: {}", s("/when"));
        }
        let _ = writeln!(out, "  do:   {}", actions.join(", "));
        if let Some(c) = at(r, "/counts").as_object() {
            let n = |k: &str| c.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
            let _ = writeln!(
                out,
                "  since start: {} runs, {} actions, {} scheduled, {} failed",
                n("runs"),
                n("actions"),
                n("scheduled"),
                n("failures")
            );
        }
    }
    out
}

fn runs_text(v: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let runs = at(v, "/runs").as_array().cloned().unwrap_or_default();
    if runs.is_empty() {
        return "no runs yet\n".into();
    }
    let mut out = String::new();
    for r in &runs {
        let when = at(r, "/at")
            .as_i64()
            .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_micros)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{when}  {:<9} {}  record {}  (event {}, depth {})",
            at(r, "/status").as_str().unwrap_or("?"),
            at(r, "/rule").as_str().unwrap_or("?"),
            at(r, "/record").as_str().unwrap_or("?"),
            at(r, "/event"),
            at(r, "/depth"),
        );
        for a in at(r, "/actions").as_array().into_iter().flatten() {
            let _ = writeln!(out, "    {}", a.as_str().unwrap_or_default());
        }
        for o in at(r, "/outcomes").as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "    -> {} {}",
                at(o, "/outcome").as_str().unwrap_or("?"),
                at(o, "/record").as_str().unwrap_or("?")
            );
        }
        if let Some(e) = at(r, "/error").as_str() {
            let _ = writeln!(out, "    error: {e}");
        }
    }
    out
}

fn dry_run_text(v: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let s = |p: &str| at(v, p).as_str().unwrap_or_default().to_owned();
    let _ = writeln!(
        out,
        "rule {} on record {} (dry run: nothing is changed)",
        s("/rule"),
        s("/record")
    );
    let _ = writeln!(out, "  on:   {}", s("/trigger"));
    if !s("/when").is_empty() {
        let holds = at(v, "/condition_holds").as_bool().unwrap_or(false);
        let _ = writeln!(
            out,
            "  when: {}  -> {}",
            s("/when"),
            if holds { "true" } else { "false" }
        );
    }
    if !s("/after").is_empty() {
        let _ = writeln!(out, "  runs {} after its trigger", s("/after"));
    }
    let actions = at(v, "/actions").as_array().cloned().unwrap_or_default();
    if actions.is_empty() {
        out.push_str("  would do nothing\n");
    }
    for a in actions {
        let _ = writeln!(out, "  would {}", a.as_str().unwrap_or_default());
    }
    out
}

/// `GET path` from the running daemon; with no daemon running (and no --url naming
/// another machine), `read` over the store in this process. `Err`: the exit code of a
/// configuration that could not be loaded.
fn ask_or_read(
    client: &ClientArg,
    path: &str,
    read: impl FnOnce(&Config) -> Result<serde_json::Value, String>,
) -> Result<Result<serde_json::Value, String>, u8> {
    let target = client.target()?;
    Ok(
        match call_daemon(&target, reqwest::Method::GET, path, None) {
            Ok((200, v)) => Ok(v),
            Ok((status, v)) => Err(format!(
                "the daemon answered {status}: {}",
                at(&v, "/message").as_str().unwrap_or("no message")
            )),
            Err(DaemonAnswer::NotRunning) if client.url.is_none() => {
                read(&load(&client.config.config)?)
            }
            Err(DaemonAnswer::NotRunning) => Err(format!(
                "no daemon answers at {} (start it with `revsync run`, or name it with --url)",
                target.base
            )),
            Err(DaemonAnswer::Failed(e)) => Err(e),
        },
    )
}

/// The quality report read in this process from the store no daemon holds.
fn read_quality(cfg: &Config, connector: Option<&str>) -> Result<serde_json::Value, String> {
    let engine = store_engine(cfg)?;
    if let Some(c) = connector.filter(|c| engine.kinds_for(c).is_empty()) {
        return Err(format!("no connector `{c}` is configured"));
    }
    let report = engine.quality(connector).map_err(|e| e.to_string())?;
    serde_json::to_value(report).map_err(|e| e.to_string())
}

/// `revsync quality` as a person reads it: what was read, then one line per problem with
/// its count per system, then its examples.
fn quality_text(v: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let n = |p: &str| at(v, p).as_u64().unwrap_or(0);
    let mut out = String::new();
    let scope = at(v, "/connector")
        .as_str()
        .map(|c| format!(" (values from {c})"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "read {} persons and {} companies{scope}: {} persons and {} companies have a problem",
        crate::format::thousands(n("/scanned/person")),
        crate::format::thousands(n("/scanned/organization")),
        crate::format::thousands(n("/with_problems/person")),
        crate::format::thousands(n("/with_problems/organization")),
    );
    let problems = at(v, "/problems").as_array().cloned().unwrap_or_default();
    if problems.is_empty() {
        out.push_str("no problem found\n");
        return out;
    }
    for p in &problems {
        let by: Vec<String> = at(p, "/by_source")
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, c)| {
                        format!("{k} {}", crate::format::thousands(c.as_u64().unwrap_or(0)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "\n{:>8}  {}.{}: {} ({})",
            crate::format::thousands(at(p, "/total").as_u64().unwrap_or(0)),
            at(p, "/kind").as_str().unwrap_or("?"),
            at(p, "/field").as_str().unwrap_or("?"),
            at(p, "/description").as_str().unwrap_or("?"),
            by.join(", ")
        );
        for e in at(p, "/examples").as_array().cloned().unwrap_or_default() {
            let _ = writeln!(
                out,
                "          {}  {:<12} {}",
                at(&e, "/record").as_str().unwrap_or("?"),
                at(&e, "/source").as_str().unwrap_or("?"),
                at(&e, "/value")
            );
        }
    }
    out
}

fn pause(client: &ClientArg, connector: &str, paused: bool) -> u8 {
    let verb = if paused { "pause" } else { "resume" };
    match admin(
        client,
        reqwest::Method::POST,
        &format!("/admin/connectors/{connector}/{verb}"),
        None,
    ) {
        Ok((200, v)) => {
            let changed = at(&v, "/changed").as_bool().unwrap_or(false);
            println!(
                "{connector}: {}{}",
                if paused { "paused" } else { "resumed" },
                if changed { "" } else { " (it already was)" }
            );
            exit::OK
        }
        Ok((_, v)) => refused(&v),
        Err(code) => code,
    }
}

fn resync(client: &ClientArg, connector: &str, object: Option<&str>) -> u8 {
    let body = serde_json::json!({ "connector": connector, "object": object });
    let objects = match admin(client, reqwest::Method::POST, "/admin/resync", Some(body)) {
        Ok((202, v)) => at(&v, "/started").as_array().cloned().unwrap_or_default(),
        Ok((_, v)) => {
            eprintln!(
                "error: {}",
                at(&v, "/message").as_str().unwrap_or("resync refused")
            );
            return exit::FAILURE;
        }
        Err(code) => return code,
    };
    let names: Vec<String> = objects
        .iter()
        .filter_map(|o| o.as_str().map(str::to_owned))
        .collect();
    let progress = Progress::new();
    let started = std::time::Instant::now();
    // Objects are re-read one after another; each gets a line when it completes.
    let mut reported = 0;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let Ok((_, v)) = admin(client, reqwest::Method::GET, "/status", None) else {
            progress.done();
            eprintln!("error: lost the daemon during the resync of {connector}; it may still run there (see `revsync status`)");
            return exit::FAILURE;
        };
        let c = at(&v, "/connectors")
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| at(c, "/id") == connector)
            .cloned()
            .unwrap_or_default();
        let r = at(&c, "/resync");
        let object = at(r, "/object").as_str().unwrap_or("").to_owned();
        let records = at(r, "/records").as_u64().unwrap_or(0);
        let completed = at(r, "/completed").as_array().cloned().unwrap_or_default();
        for d in completed.iter().skip(reported) {
            progress.line(&format!(
                "{connector} {}: {} records in {} pages re-read",
                at(d, "/object").as_str().unwrap_or("?"),
                at(d, "/records"),
                at(d, "/pages")
            ));
        }
        reported = reported.max(completed.len());
        let position = names.iter().position(|o| *o == object).map_or(0, |i| i + 1);
        progress.say(&format!(
            "{connector} {object} (object {position} of {}): {} pages, {records} records, {}s",
            names.len(),
            at(r, "/pages"),
            started.elapsed().as_secs()
        ));
        if let Some(e) = at(r, "/error").as_str() {
            progress.done();
            eprintln!(
                "error: resync of {connector} {object} failed: {e} (its cursor is unchanged)"
            );
            return exit::FAILURE;
        }
        if at(r, "/done") == true && completed.len() >= names.len() {
            progress.done();
            let total: u64 = completed
                .iter()
                .filter_map(|d| at(d, "/records").as_u64())
                .sum();
            println!(
                "resync of {connector} complete in {}s: {total} records in {} objects; cursors moved",
                started.elapsed().as_secs(),
                completed.len()
            );
            return exit::OK;
        }
    }
}

/// The running daemon owns the store (sled locks it), so ask it first.
fn ask_daemon(
    target: &Target,
    query: &str,
    audit: usize,
) -> Result<Option<serde_json::Value>, DaemonAnswer> {
    // Build the path through `Url` so the query is percent-encoded as one segment.
    let mut url = url::Url::parse("http://localhost/records/")
        .map_err(|e| DaemonAnswer::Failed(e.to_string()))?;
    url.path_segments_mut()
        .map_err(|_| DaemonAnswer::Failed("bad url".into()))?
        .pop_if_empty()
        .push(query);
    url.query_pairs_mut()
        .append_pair("audit", &audit.to_string());
    let path = format!("{}?{}", url.path(), url.query().unwrap_or_default());
    match call_daemon(target, reqwest::Method::GET, &path, None)? {
        (200, v) => Ok(Some(v)),
        (404, _) => Ok(None),
        (s, v) => Err(DaemonAnswer::Failed(format!(
            "the daemon answered {s}: {}",
            at(&v, "/message").as_str().unwrap_or("")
        ))),
    }
}

/// The dead letters, read in this process from the store no daemon holds.
fn read_dead_letters(cfg: &Config, connector: Option<&str>) -> Result<serde_json::Value, String> {
    let engine = store_engine(cfg)?;
    crate::engine::view::dead_letters_json(&engine, connector, crate::engine::view::DLQ_LIST_LIMIT)
        .map_err(|e| e.to_string())
}

fn read_store(
    cfg: &Config,
    query: &str,
    audit: usize,
) -> Result<Option<serde_json::Value>, String> {
    let engine = store_engine(cfg)?;
    crate::engine::lookup_view(&engine, query, audit).map_err(|e| e.to_string())
}

/// `revsync migrate`: the configured PostgreSQL store brought to this build's schema.
fn migrate(dir: &Path) -> u8 {
    let cfg = match load(dir) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    let s = &cfg.daemon.store;
    let Some(url) = s
        .url
        .as_ref()
        .filter(|_| s.kind == config::StoreKind::Postgres)
    else {
        println!(
            "the store is sled ({}): it needs no migration",
            s.path.display()
        );
        return exit::OK;
    };
    let at = crate::store::PgStore::describe_url(url.expose());
    match crate::store::PgStore::migrate(url.expose()) {
        Ok((from, to)) if from == to => {
            println!("{at}: schema version {to}, up to date");
            exit::OK
        }
        Ok((from, to)) => {
            println!("{at}: schema version {from} -> {to}");
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {at}: {e}");
            exit::FAILURE
        }
    }
}

/// A store named on the command line: a PostgreSQL URL (or `${VAR}`), else a sled directory.
fn store_at(
    spec: &str,
    cfg: &config::StoreConfig,
    create: bool,
) -> Result<(String, std::sync::Arc<dyn crate::store::Store>), String> {
    let spec = config::interpolate_value(spec, &ProcessEnv)?;
    if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        let at = crate::store::PgStore::describe_url(&spec);
        if create {
            crate::store::PgStore::migrate(&spec).map_err(|e| format!("{at}: {e}"))?;
        }
        let store = crate::store::PgStore::open(&spec, 4).map_err(|e| format!("{at}: {e}"))?;
        return Ok((at, std::sync::Arc::new(store)));
    }
    let path = PathBuf::from(&spec);
    if !create && !path.exists() {
        return Err(format!("{spec}: no sled store there"));
    }
    let store = crate::store::SledStore::open(&path, cfg.flush_interval_ms, cfg.cache_mb)
        .map_err(|e| format!("{e} (is a daemon holding it?)"))?;
    Ok((spec, std::sync::Arc::new(store)))
}

/// `revsync store copy`.
fn store_copy(dir: &Path, from: &str, to: &str) -> u8 {
    // Only a sled store's cache and flush settings are read; without a file, the defaults.
    let store = config::load_daemon_only(dir, &ProcessEnv)
        .map(|d| d.store)
        .unwrap_or_default();
    let go = || -> Result<crate::store::copy::Summary, String> {
        let (from_at, source) = store_at(from, &store, false)?;
        let (to_at, dest) = store_at(to, &store, true)?;
        if !crate::store::copy::is_empty(dest.as_ref()).map_err(|e| e.to_string())? {
            return Err(format!(
                "{to_at} already holds data: copy into an empty store (a new database, or a new directory)"
            ));
        }
        eprintln!("copying {from_at} -> {to_at}");
        crate::store::copy::copy(source.as_ref(), dest.as_ref(), |t, n| {
            if n % 100_000 == 0 {
                eprintln!("  {} {n}", t.name());
            }
        })
        .map_err(|e| e.to_string())
    };
    match go() {
        Ok(summary) => {
            for (t, n) in summary.tables.iter().filter(|(_, n)| *n > 0) {
                println!("{:<14} {n:>10}", t.name());
            }
            println!(
                "copied {} entries; checksum {} (verified in the destination)",
                summary.entries(),
                summary.checksum
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::FAILURE
        }
    }
}

/// An engine over the store, opened by this process (no daemon may hold it).
fn store_engine(cfg: &Config) -> Result<crate::engine::Engine, String> {
    let store = open_store(cfg)?;
    let (m, p) =
        crate::engine::Engine::validate(cfg).map_err(|e| config::ConfigErrors(e).to_string())?;
    crate::engine::Engine::new(store, cfg, m, p, crate::engine::system_clock())
        .map_err(|e| e.to_string())
}
