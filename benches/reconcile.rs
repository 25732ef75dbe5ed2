//! Reconcile throughput benchmark: the engine's whole path against sled writing exactly the
//! keys and bytes the engine wrote, and nothing else.
//!
//! `cargo bench --bench reconcile` writes a three-system configuration (HubSpot, Salesforce,
//! Zendesk; persons and organizations; every object `direction: both`, so projections and
//! outbox entries are computed for the other systems) into a temporary directory, then pushes
//! 100k and 1M changes through `Engine::apply` (normalize -> identity -> merge -> projection ->
//! one atomic write per page of 500). It prints records/s, time(1M)/time(100k), RSS growth
//! (also per 1M canonical records) and size on disk. Figures: docs/BENCHMARKS.md.
//!
//! The reference (issue 17) is `rawsame`: the same number of sled keys with the same bytes
//! the engine wrote, one `WriteBatch` per engine write, same flush policy, no reads and no
//! engine work. It comes from a replay: a `record` run of the engine appends every batch it
//! writes (table, key, value or delete) to a file, and the `rawsame` run reads that file
//! back into a fresh `SledStore`, timing only its `write` calls and the final `flush`. The
//! headline engine figure is a third run without the recorder, so what recording costs
//! never enters it. The bench prints `ratio engine / raw same keys: X` on a line of its
//! own. Ids (UUIDv7) and clock stamps differ between the recorded and the timed engine
//! run, so their values differ in content, not in count or (varint stamps aside) size; both
//! runs' key and byte counts are printed.
//!
//! Also printed, in the same run: `raw`, each change's serialized bytes under one key per
//! change (the first reference, for comparison with older figures).
//!
//! The changes come from a seeded generator: 30% of them are the same people and companies
//! seen from all three systems (emails in other case or with blanks, phones formatted
//! differently, a website URL where another system has a bare domain), the rest distinct.
//! Only calls into the engine or the store (and a final `flush`) are timed; generating and
//! serializing the changes, and reading the recorded batches back, is not. Each run
//! happens in a fresh child process of this binary, so its RSS figures are its own.
//!
//! Environment:
//! - `RECONCILE_MAX=100000` runs only the sizes up to that many changes (a number below
//!   100000 runs just that size), for quick runs.
//! - `RECONCILE_BREAKDOWN=1` wraps the timed engine run's store in a meter (gets, keys and
//!   bytes written per table, time spent inside the store) to show where time goes. It
//!   costs a little, so the headline figures come from runs without it.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

// The daemon's allocator (src/main.rs), for the engine and the raw reference alike.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use revsync::config::{self, Config};
use revsync::engine::{system_clock, ApplyReport, Engine, Page};
use revsync::registry::Registry;
use revsync::store::{
    Entry, Op, PgStore, SledStore, Store, StoreError, StoreStats, Table, WriteBatch,
};
use revsync_sdk::{Change, Value};
use serde_json::{json, Value as Json};

/// Changes per page: the engine's unit of atomic write, and the raw run's batch size.
const PAGE_SIZE: usize = 500;
const SIZES: [usize; 2] = [100_000, 1_000_000];
/// Share of changes that are an entity seen from all three systems.
const SHARED_PCT: usize = 30;
/// Share of entities that are persons; the rest are organizations.
const PERSON_PCT: usize = 80;
/// Share of shared entities whose Salesforce copy disagrees (title, industry, headcount).
const DISAGREE_PCT: u64 = 15;
const SEED: u64 = 0x7265_7673_796e_6321;
/// Shared entities of each kind looked up after a run, to check they were reconciled.
const SAMPLE: u32 = 200;
/// Issue 17: engine records/s over the same keys written raw, at 1M.
const TARGET_RATIO: f64 = 0.6;
/// Issue 17: time(1M) / time(100k) at most this (10 is linear).
const TARGET_SCALE: f64 = 12.0;

/// Set in the child processes that do one run each (`record`, `engine`, `rawsame` or `raw`).
const CHILD_ENV: &str = "RECONCILE_CHILD";
/// Where the `record` run writes the engine's batches and the `rawsame` run reads them.
const BATCHES_ENV: &str = "RECONCILE_BATCHES";

/// Set by the parent for a child whose store is a PostgreSQL database.
const STORE_URL_ENV: &str = "RECONCILE_STORE_URL";

fn main() {
    match std::env::var(CHILD_ENV) {
        Ok(mode) => child(&mode),
        Err(_) => parent(),
    }
}

/// Every run happens in a fresh child process, so its RSS figures are its own and not
/// what the allocator kept from an earlier run.
fn parent() {
    let sizes = sizes();
    let breakdown = std::env::var("RECONCILE_BREAKDOWN").is_ok_and(|v| v == "1");
    let tmp = tempfile::Builder::new()
        .prefix("reconcile-")
        .tempdir()
        .expect("create a temporary directory");
    let cfg = write_config(tmp.path());
    println!(
        "reconcile: {} cores ({}), sizes {:?}, pages of {PAGE_SIZE}, store flush_interval_ms {} cache_mb {}{}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        sizes,
        cfg.daemon.store.flush_interval_ms,
        cfg.daemon.store.cache_mb,
        if breakdown { ", store metered (RECONCILE_BREAKDOWN=1)" } else { "" },
    );

    let postgres = postgres_server();
    let mut rows = Vec::new();
    for &n in &sizes {
        let plan = Plan::new(n);
        let shared = (plan.shared_persons + plan.shared_orgs) as usize;
        println!();
        println!(
            "== N = {n}: {} changes from {} persons and {} organizations seen by all three systems, {} distinct ({PERSON_PCT}% persons), {} pages",
            3 * shared,
            plan.shared_persons,
            plan.shared_orgs,
            n - 3 * shared,
            plan.pages(),
        );
        drop(plan);
        let load_before = load_average();
        let batches = tmp.path().join(format!("batches-{n}.bin"));
        let recorded = spawn("record", n, tmp.path(), &batches);
        // Timed engine and its reference back to back: the machine's load moves slowly.
        let engine = spawn("engine", n, tmp.path(), &batches);
        let same = spawn("rawsame", n, tmp.path(), &batches);
        let pg = postgres.as_ref().map(|server| {
            let engine = spawn_on_postgres(server, "engine", n, tmp.path(), &batches);
            let same = spawn_on_postgres(server, "rawsame", n, tmp.path(), &batches);
            (engine, same)
        });
        let _ = std::fs::remove_file(&batches);
        let raw = spawn("raw", n, tmp.path(), &batches);
        println!(
            "   load average before {load_before}, after {} (other work on the machine skews wall times)",
            load_average()
        );
        print_size(n, &engine, &recorded, &same, &raw);
        if let Some((pg_engine, pg_same)) = &pg {
            println!(
                "   postgres: engine {:.0} rec/s ({:.2} s), raw same keys {:.0} rec/s; ratio engine / raw same keys on postgres: {:.3}; engine on postgres / engine on sled: {:.3}",
                pg_engine.per_sec(n),
                pg_engine.timed.as_secs_f64(),
                pg_same.per_sec(n),
                pg_engine.per_sec(n) / pg_same.per_sec(n),
                pg_engine.per_sec(n) / engine.per_sec(n),
            );
            for note in pg_engine.notes.iter().filter(|n| n.starts_with("check")) {
                println!("   postgres {note}");
            }
        }
        rows.push(Row {
            n,
            engine,
            same,
            raw,
        });
    }
    print_summary(&rows);
}

/// Where the PostgreSQL runs go: `RECONCILE_POSTGRES` (a server URL; `off` skips them),
/// else the machine's server on 127.0.0.1:5432 when one answers.
fn postgres_server() -> Option<String> {
    let server = std::env::var("RECONCILE_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    if server == "off" {
        return None;
    }
    match pg_admin(&server, "SELECT 1") {
        Ok(()) => {
            println!("postgres: runs on {}", PgStore::describe_url(&server));
            Some(server)
        }
        Err(e) => {
            println!("postgres: skipped, no server answers ({e}); set RECONCILE_POSTGRES");
            None
        }
    }
}

fn pg_admin(server: &str, sql: &str) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(server, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        client.batch_execute(sql).await.map_err(|e| e.to_string())
    })
}

/// A run of `mode` on a database made for it (migrated), dropped afterwards.
fn spawn_on_postgres(server: &str, mode: &str, n: usize, dir: &Path, batches: &Path) -> Run {
    let db = format!("revsync_reconcile_{}_{mode}_{n}", std::process::id());
    pg_admin(server, &format!("CREATE DATABASE {db}")).expect("create the run's database");
    let root = server.rsplit_once('/').map_or(server, |(r, _)| r);
    let url = format!("{root}/{db}");
    PgStore::migrate(&url).expect("migrate the run's database");
    let run = spawn_with(mode, n, dir, batches, Some(&url));
    let _ = pg_admin(
        server,
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
    run
}

fn spawn(mode: &str, n: usize, dir: &Path, batches: &Path) -> Run {
    spawn_with(mode, n, dir, batches, None)
}

fn spawn_with(mode: &str, n: usize, dir: &Path, batches: &Path, url: Option<&str>) -> Run {
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("own executable"));
    if let Some(url) = url {
        cmd.env(STORE_URL_ENV, url);
    }
    let out = cmd
        .env(CHILD_ENV, mode)
        .env("RECONCILE_N", n.to_string())
        .env("RECONCILE_CONFIG", dir)
        .env(BATCHES_ENV, batches)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("start a benchmark run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{mode} run of {n} failed ({}):\n{text}",
        out.status
    );
    let mut notes = Vec::new();
    let mut result = None;
    for line in text.lines() {
        if let Some(note) = line.strip_prefix("NOTE ") {
            notes.push(note.to_owned());
        } else if let Some(r) = line.strip_prefix("RESULT ") {
            let f: Vec<f64> = r
                .split(' ')
                .map(|x| x.parse().expect("a RESULT figure"))
                .collect();
            result = Some(f);
        }
    }
    let f = result.unwrap_or_else(|| panic!("{mode} run of {n} printed no RESULT:\n{text}"));
    Run {
        timed: Duration::from_nanos(f[0] as u64),
        wall: Duration::from_nanos(f[1] as u64),
        cpu: Duration::from_nanos(f[8] as u64),
        rss_before_kb: f[2] as u64,
        rss_after_kb: f[3] as u64,
        peak_kb: (f[4] > 0.0).then_some(f[4] as u64),
        disk_bytes: f[5] as u64,
        mean_fields: f[6],
        mean_change: f[7],
        written: Written {
            batches: f[9] as u64,
            puts: f[10] as u64,
            deletes: f[11] as u64,
            bytes: f[12] as u64,
        },
        created: f[13] as u64,
        notes,
    }
}

fn child(mode: &str) {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let n: usize = var("RECONCILE_N").parse().expect("RECONCILE_N is a number");
    let dir = PathBuf::from(var("RECONCILE_CONFIG"));
    let cfg = load_config(&dir);
    let plan = Plan::new(n);
    let path = cfg.daemon.store.path.join(format!("{mode}-{n}"));
    let breakdown = std::env::var("RECONCILE_BREAKDOWN").is_ok_and(|v| v == "1");
    let batches = PathBuf::from(var(BATCHES_ENV));
    let run = match mode {
        "record" => run_engine(&cfg, &plan, &path, false, Some(&batches)),
        "engine" => run_engine(&cfg, &plan, &path, breakdown, None),
        "rawsame" => run_rawsame(&cfg, &path, &batches),
        "raw" => run_raw(&cfg, &plan, &path),
        other => panic!("unknown {CHILD_ENV} `{other}`"),
    };
    let _ = std::fs::remove_dir_all(&path);
    for note in &run.notes {
        println!("NOTE {note}");
    }
    println!(
        "RESULT {} {} {} {} {} {} {} {} {} {} {} {} {} {}",
        run.timed.as_nanos(),
        run.wall.as_nanos(),
        run.rss_before_kb,
        run.rss_after_kb,
        run.peak_kb.unwrap_or(0),
        run.disk_bytes,
        run.mean_fields,
        run.mean_change,
        run.cpu.as_nanos(),
        run.written.batches,
        run.written.puts,
        run.written.deletes,
        run.written.bytes,
        run.created,
    );
}

/// `RECONCILE_MAX` caps the sizes run; both by default.
fn sizes() -> Vec<usize> {
    let Some(max) = std::env::var("RECONCILE_MAX")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        return SIZES.to_vec();
    };
    let max: usize = max
        .trim()
        .replace('_', "")
        .parse()
        .unwrap_or_else(|_| panic!("RECONCILE_MAX `{max}` is not a number of changes"));
    let sizes: Vec<usize> = SIZES.iter().copied().filter(|&n| n <= max).collect();
    if sizes.is_empty() {
        vec![max.max(PAGE_SIZE)]
    } else {
        sizes
    }
}

// ---- configuration

const HUBSPOT: &str = "version: 1
id: hubspot-main
type: hubspot
params: { token: bench-token }
objects:
  contacts:
    kind: person
    direction: both
    fields:
      email: email
      firstname: first_name
      lastname: last_name
      phone: phone
      jobtitle: title
      lifecyclestage: { to: lifecycle_stage, map: default }
      city: city
      country: country
  companies:
    kind: organization
    direction: both
    fields: { name: name, domain: domain, industry: industry, numberofemployees: employee_count }
";

const SALESFORCE: &str = "version: 1
id: salesforce-main
type: salesforce
params:
  auth:
    flow: client_credentials
    token_url: https://login.salesforce.com/services/oauth2/token
    client_id: bench-client
    client_secret: bench-secret
objects:
  Contact:
    kind: person
    direction: both
    fields: { Email: email, FirstName: first_name, LastName: last_name, Phone: phone, Title: title }
  Account:
    kind: organization
    direction: both
    fields: { Name: name, Website: website, Industry: industry, NumberOfEmployees: employee_count }
";

const ZENDESK: &str = "version: 1
id: zendesk-main
type: zendesk
params: { subdomain: acme, auth: { method: oauth, access_token: bench-token } }
objects:
  users:
    kind: person
    direction: both
    fields: { email: email, name: { to: full_name }, phone: phone }
  organizations:
    kind: organization
    direction: both
    fields: { name: name, domain_names: { to: domains } }
";

fn write_config(dir: &Path) -> Config {
    std::fs::create_dir_all(dir.join("connectors")).expect("create connectors/");
    let daemon = format!(
        "version: 1\nstore:\n  path: {}\n  flush_interval_ms: 500\nlog:\n  level: warn\n",
        dir.join("data").display()
    );
    std::fs::write(dir.join("revsync.yaml"), daemon).expect("write revsync.yaml");
    for (name, body) in [
        ("hubspot", HUBSPOT),
        ("salesforce", SALESFORCE),
        ("zendesk", ZENDESK),
    ] {
        std::fs::write(dir.join(format!("connectors/{name}.yaml")), body)
            .expect("write a connector file");
    }
    load_config(dir)
}

fn load_config(dir: &Path) -> Config {
    config::load(
        dir,
        &Registry::builtin(),
        &BTreeMap::<String, String>::new(),
    )
    .unwrap_or_else(|e| panic!("benchmark configuration: {e}"))
}

// ---- runs

#[derive(Default)]
struct Totals {
    created: usize,
    updated: usize,
    unchanged: usize,
    stale: usize,
    merged: usize,
    enqueued: usize,
    invalid: usize,
    first_invalid: Option<String>,
}

impl Totals {
    fn add(&mut self, r: ApplyReport) {
        self.created += r.created;
        self.updated += r.updated;
        self.unchanged += r.unchanged;
        self.stale += r.stale;
        self.merged += r.merged;
        self.enqueued += r.enqueued;
        self.invalid += r.invalid.len();
        if self.first_invalid.is_none() {
            self.first_invalid = r.invalid.into_iter().next();
        }
    }
}

/// What one run measured.
struct Run {
    /// Time inside `apply` / `write` calls plus the final flush.
    timed: Duration,
    /// Including generation of the changes.
    wall: Duration,
    /// User plus system CPU time of the run's process over the same span as `wall`
    /// (every thread, sled's flusher included).
    cpu: Duration,
    rss_before_kb: u64,
    rss_after_kb: u64,
    peak_kb: Option<u64>,
    disk_bytes: u64,
    /// Mean JSON bytes of a change's source fields, and of the whole change (raw run only).
    mean_fields: f64,
    mean_change: f64,
    /// What the run wrote (`record` and `rawsame` runs; zero in the others).
    written: Written,
    /// Canonical records the engine created (engine runs only).
    created: u64,
    notes: Vec<String>,
}

/// Store writes as the store sees them: batches, keys put and deleted, and the key plus
/// value bytes of the puts (as the meter of `RECONCILE_BREAKDOWN=1` counts them).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Written {
    batches: u64,
    puts: u64,
    deletes: u64,
    bytes: u64,
}

impl Written {
    fn add(&mut self, op: &Op) {
        match op {
            Op::Put(_, k, v) => {
                self.puts += 1;
                self.bytes += (k.len() + v.len()) as u64;
            }
            Op::Delete(..) => self.deletes += 1,
        }
    }
}

impl Run {
    fn per_sec(&self, n: usize) -> f64 {
        n as f64 / self.timed.as_secs_f64()
    }
}

/// sled in `path`, or the PostgreSQL database the parent made for this run
/// ([`STORE_URL_ENV`]).
fn open_store(cfg: &Config, path: &Path) -> Arc<dyn Store> {
    if let Ok(url) = std::env::var(STORE_URL_ENV) {
        return Arc::new(PgStore::open(&url, 4).expect("open the PostgreSQL store"));
    }
    let s = &cfg.daemon.store;
    Arc::new(SledStore::open(path, s.flush_interval_ms, s.cache_mb).expect("open the sled store"))
}

/// `record`: also append every batch the engine writes to that file, for `rawsame`.
fn run_engine(
    cfg: &Config,
    plan: &Plan,
    path: &Path,
    breakdown: bool,
    record: Option<&Path>,
) -> Run {
    let meter = breakdown.then(|| Arc::new(Meter::default()));
    let recorder = record.map(|file| {
        let file = std::fs::File::create(file).expect("create the batch file");
        Mutex::new(Recorder {
            file: BufWriter::with_capacity(1 << 20, file),
            written: Written::default(),
        })
    });
    let sled = open_store(cfg, path);
    // The headline run talks to sled itself: not even a pass-through wrapper in its figure.
    let (store, tapped): (Arc<dyn Store>, _) = if meter.is_some() || recorder.is_some() {
        let t = Arc::new(Tapped {
            inner: sled,
            meter: meter.clone(),
            recorder,
        });
        (t.clone(), Some(t))
    } else {
        (sled, None)
    };
    let (mappings, policies) = Engine::validate(cfg).unwrap_or_else(|e| panic!("{e:?}"));
    let engine = Engine::new(store.clone(), cfg, mappings, policies, system_clock())
        .expect("start the engine");

    let mut totals = Totals::default();
    let mut timer = Timer::start();
    plan.for_each_page(|sys, ent, changes, cursor| {
        let page = Page {
            object: sys.object(ent).to_owned(),
            changes,
            cursor: Some(cursor),
        };
        let report = timer
            .time(|| engine.apply(sys.id(), page))
            .unwrap_or_else(|e| panic!("apply a {} {} page: {e}", sys.id(), sys.object(ent)));
        totals.add(report);
    });
    let run = timer.finish(store.as_ref());

    let mut notes = vec![
        format!(
            "engine reports: created {}, updated {}, unchanged {}, stale {}, merged {}, invalid values {}, outbox entries enqueued {} ({:.2} per change)",
            totals.created,
            totals.updated,
            totals.unchanged,
            totals.stale,
            totals.merged,
            totals.invalid,
            totals.enqueued,
            totals.enqueued as f64 / plan.n as f64,
        ),
        check(&engine, plan),
    ];
    if let Some(example) = &totals.first_invalid {
        notes.push(format!("first invalid value: {example}"));
    }
    if let Some(m) = &meter {
        notes.extend(m.report(plan.n, run.timed));
    }
    Run {
        written: tapped.map_or_else(Written::default, |t| t.finish()),
        created: totals.created as u64,
        notes,
        ..run
    }
}

/// Time spent in the store calls of a run, and what the process did meanwhile.
struct Timer {
    timed: Duration,
    wall: Instant,
    cpu: Duration,
    rss_before_kb: u64,
}

impl Timer {
    fn start() -> Self {
        let rss_before_kb = rss_kb();
        reset_peak();
        Timer {
            timed: Duration::ZERO,
            wall: Instant::now(),
            cpu: cpu_time(),
            rss_before_kb,
        }
    }

    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.timed += t.elapsed();
        out
    }

    /// The final flush is timed too: no unflushed work is left out of the figure.
    fn finish(mut self, store: &dyn Store) -> Run {
        self.time(|| store.flush().expect("flush the store"));
        let (wall, cpu) = (self.wall.elapsed(), cpu_time() - self.cpu);
        let (rss_after_kb, peak_kb) = (rss_kb(), peak_kb());
        store.refresh_stats();
        Run {
            timed: self.timed,
            wall,
            cpu,
            rss_before_kb: self.rss_before_kb,
            rss_after_kb,
            peak_kb,
            disk_bytes: store.stats().size_on_disk_bytes,
            mean_fields: 0.0,
            mean_change: 0.0,
            written: Written::default(),
            created: 0,
            notes: Vec::new(),
        }
    }
}

/// The reference: replay the batches a `record` run of the engine wrote, each as
/// one `WriteBatch`, into a fresh store with the same flush policy. Reading the file and
/// building each batch is not timed; only `write` and the final `flush` are.
fn run_rawsame(cfg: &Config, path: &Path, batches: &Path) -> Run {
    let store = open_store(cfg, path);
    let mut file = BufReader::with_capacity(
        1 << 20,
        std::fs::File::open(batches).expect("open the recorded batches"),
    );
    let mut written = Written::default();
    let mut timer = Timer::start();
    while let Some(ops) = read_batch(&mut file) {
        ops.iter().for_each(|op| written.add(op));
        written.batches += 1;
        let batch = batch_of(ops);
        timer.time(|| store.write(batch)).expect("replay a batch");
    }
    Run {
        written,
        ..timer.finish(store.as_ref())
    }
}

/// The first reference: each change's serialized bytes under its link key, one
/// key per change, one `WriteBatch` per page with the cursor.
fn run_raw(cfg: &Config, plan: &Plan, path: &Path) -> Run {
    let store = open_store(cfg, path);
    let (mut fields_bytes, mut change_bytes) = (0usize, 0usize);
    let mut timer = Timer::start();
    plan.for_each_page(|sys, ent, changes, cursor| {
        let mut batch = WriteBatch::new();
        for c in &changes {
            let bytes = serde_json::to_vec(c).expect("a change serializes");
            fields_bytes += serde_json::to_vec(&c.fields)
                .expect("fields serialize")
                .len();
            change_bytes += bytes.len();
            let key = [
                sys.id().as_bytes(),
                sys.object(ent).as_bytes(),
                c.external_id.as_bytes(),
            ]
            .join(&0u8);
            batch.put(Table::Inbox, key, bytes);
        }
        let cursor_key = [sys.id().as_bytes(), sys.object(ent).as_bytes()].join(&0u8);
        batch.put(Table::Cursors, cursor_key, cursor);
        timer.time(|| store.write(batch)).expect("raw batch write");
    });
    Run {
        mean_fields: fields_bytes as f64 / plan.n as f64,
        mean_change: change_bytes as f64 / plan.n as f64,
        ..timer.finish(store.as_ref())
    }
}

/// Look a sample of the shared entities up: each should be one record linked to all
/// three systems, with its phone in E.164. Catches a generator that does not do what
/// the figures claim.
fn check(engine: &Engine, plan: &Plan) -> String {
    let (mut persons, mut linked_p, mut e164) = (0, 0, 0);
    for i in 0..SAMPLE.min(plan.shared_persons) {
        let id = (i as u64 * plan.shared_persons as u64 / SAMPLE as u64) as u32;
        persons += 1;
        let p = plan.person(id);
        if let Some(r) = engine.find(&p.email).expect("find a person") {
            linked_p += usize::from(r.links.len() == 3);
            e164 += usize::from(
                matches!(r.value("phone"), Some(Value::Text(t)) if t.starts_with('+') && !t.contains(' ')),
            );
        }
    }
    let (mut orgs, mut linked_o) = (0, 0);
    for i in 0..SAMPLE.min(plan.shared_orgs) {
        let id = (i as u64 * plan.shared_orgs as u64 / SAMPLE as u64) as u32;
        orgs += 1;
        if let Some(r) = engine.find(&org_domain(id)).expect("find an organization") {
            linked_o += usize::from(r.links.len() == 3);
        }
    }
    format!(
        "check: {linked_p}/{persons} sampled shared persons are one record linked to 3 systems, {e164}/{persons} with an E.164 phone; {linked_o}/{orgs} sampled shared organizations linked to 3 systems"
    )
}

// ---- output

fn print_size(n: usize, engine: &Run, recorded: &Run, same: &Run, raw: &Run) {
    println!(
        "   mean JSON size: source fields {:.0} B, whole change {:.0} B (the bytes the raw run stores)",
        raw.mean_fields, raw.mean_change
    );
    let w = |r: &Run| r.written;
    println!(
        "   engine wrote (record run): {} batches, {} keys put, {} deleted, {} bytes ({:.2} keys and {:.0} bytes per change); replayed: {} batches, {} put, {} deleted, {} bytes",
        w(recorded).batches,
        w(recorded).puts,
        w(recorded).deletes,
        w(recorded).bytes,
        (w(recorded).puts + w(recorded).deletes) as f64 / n as f64,
        w(recorded).bytes as f64 / n as f64,
        w(same).batches,
        w(same).puts,
        w(same).deletes,
        w(same).bytes,
    );
    let runs = [engine, same, raw, recorded];
    let row = |label: &str, f: &dyn Fn(&Run) -> String| {
        let cells: Vec<String> = runs.iter().map(|r| format!("{:>16}", f(r))).collect();
        println!("   {label:<22}{}", cells.join(" "));
    };
    println!(
        "   {:<22}{:>16} {:>16} {:>16} {:>16}",
        "", "engine", "raw same keys", "raw, 1 key", "engine+recorder"
    );
    row("timed (s)", &|r| format!("{:.2}", r.timed.as_secs_f64()));
    row("wall incl. gen (s)", &|r| {
        format!("{:.2}", r.wall.as_secs_f64())
    });
    row("CPU user+sys (s)", &|r| {
        format!("{:.2}", r.cpu.as_secs_f64())
    });
    row("records/s", &|r| format!("{:.0}", r.per_sec(n)));
    row("RSS before (MiB)", &|r| mib(r.rss_before_kb));
    row("RSS after (MiB)", &|r| mib(r.rss_after_kb));
    row("RSS growth (MiB)", &growth);
    row("peak RSS (MiB)", &|r| r.peak_kb.map_or("?".into(), mib));
    row("store on disk (MiB)", &|r| {
        format!("{:.0}", r.disk_bytes as f64 / 1048576.0)
    });
    println!(
        "   engine RSS growth per 1M canonical records: {} MiB ({} records created)",
        per_million_records(engine),
        engine.created
    );
    println!(
        "   ratio engine / raw same keys: {:.3}",
        engine.per_sec(n) / same.per_sec(n)
    );
    println!(
        "   ratio engine / raw 1 key per change: {:.3}",
        engine.per_sec(n) / raw.per_sec(n)
    );
    for note in &engine.notes {
        println!("   {note}");
    }
}

struct Row {
    n: usize,
    engine: Run,
    same: Run,
    raw: Run,
}

fn print_summary(rows: &[Row]) {
    println!();
    println!("| N | engine s | engine CPU s | engine rec/s | raw same keys s | raw same keys rec/s | ratio engine / raw same keys | raw 1 key rec/s | engine RSS growth MiB | per 1M canonical records MiB | engine disk MiB |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for Row {
        n,
        engine: e,
        same: s,
        raw: r,
    } in rows
    {
        println!(
            "| {n} | {:.2} | {:.2} | {:.0} | {:.2} | {:.0} | {:.3} | {:.0} | {} | {} | {:.0} |",
            e.timed.as_secs_f64(),
            e.cpu.as_secs_f64(),
            e.per_sec(*n),
            s.timed.as_secs_f64(),
            s.per_sec(*n),
            e.per_sec(*n) / s.per_sec(*n),
            r.per_sec(*n),
            growth(e),
            per_million_records(e),
            e.disk_bytes as f64 / 1048576.0,
        );
    }
    let small = rows.iter().find(|r| r.n == SIZES[0]);
    let large = rows.iter().find(|r| r.n == SIZES[1]);
    if let (Some(a), Some(b)) = (small, large) {
        let scale = |x: &Run, y: &Run| y.timed.as_secs_f64() / x.timed.as_secs_f64();
        let engine = scale(&a.engine, &b.engine);
        println!();
        println!(
            "time(1M)/time(100k): engine {engine:.2} (target <= {TARGET_SCALE}: {}), raw same keys {:.2}, raw 1 key {:.2} (10.00 = linear)",
            met(engine <= TARGET_SCALE),
            scale(&a.same, &b.same),
            scale(&a.raw, &b.raw),
        );
    }
    if let Some(b) = large {
        let ratio = b.engine.per_sec(b.n) / b.same.per_sec(b.n);
        println!(
            "ratio engine / raw same keys at 1M: {ratio:.3} vs target {TARGET_RATIO}: {}",
            met(ratio >= TARGET_RATIO)
        );
    }
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "missed"
    }
}

/// RSS growth scaled to a million canonical records created.
fn per_million_records(r: &Run) -> String {
    if r.created == 0 {
        return "?".into();
    }
    let growth = (r.rss_after_kb as f64 - r.rss_before_kb as f64) / 1024.0;
    format!("{:+.0}", growth * 1e6 / r.created as f64)
}

fn mib(kb: u64) -> String {
    format!("{:.0}", kb as f64 / 1024.0)
}

fn growth(r: &Run) -> String {
    format!(
        "{:+.0}",
        (r.rss_after_kb as f64 - r.rss_before_kb as f64) / 1024.0
    )
}

// ---- process figures (Linux /proc; zero or `None` elsewhere)

fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn rss_kb() -> u64 {
    status_kb("VmRSS:").unwrap_or(0)
}

fn peak_kb() -> Option<u64> {
    status_kb("VmHWM:")
}

/// Reset VmHWM so each run's peak is its own (`5` in clear_refs, Linux 4.0+).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// User plus system CPU time of this process, all threads.
#[allow(
    unsafe_code,
    reason = "getrusage(2) into a zeroed struct of its own type"
)]
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown cpu".into())
}

// ---- the batch file (the `record` run writes it, `rawsame` reads it)

/// The batches a run wrote, appended to a file: per batch, its op count, then per op a kind
/// byte (0 put, 1 delete), the table byte, and length-prefixed key and value
/// (little-endian u32 lengths).
struct Recorder {
    file: BufWriter<std::fs::File>,
    written: Written,
}

impl Recorder {
    fn record(&mut self, ops: &[Op]) {
        let file = &mut self.file;
        file.write_all(&(ops.len() as u32).to_le_bytes()).unwrap();
        for op in ops {
            self.written.add(op);
            match op {
                Op::Put(t, k, v) => {
                    file.write_all(&[0, *t as u8]).unwrap();
                    write_bytes(file, k);
                    write_bytes(file, v);
                }
                Op::Delete(t, k) => {
                    file.write_all(&[1, *t as u8]).unwrap();
                    write_bytes(file, k);
                }
            }
        }
        self.written.batches += 1;
    }
}

fn batch_of(ops: Vec<Op>) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for op in ops {
        match op {
            Op::Put(t, k, v) => batch.put(t, k, v),
            Op::Delete(t, k) => batch.delete(t, k),
        }
    }
    batch
}

fn write_bytes(w: &mut impl Write, b: &[u8]) {
    w.write_all(&(b.len() as u32).to_le_bytes()).unwrap();
    w.write_all(b).unwrap();
}

fn read_u32(r: &mut impl Read) -> Option<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b).ok()?;
    Some(u32::from_le_bytes(b))
}

fn read_bytes(r: &mut impl Read) -> Vec<u8> {
    let len = read_u32(r).expect("a length in the batch file") as usize;
    let mut b = vec![0u8; len];
    r.read_exact(&mut b).expect("bytes in the batch file");
    b
}

/// The next recorded batch; `None` at the end of the file.
fn read_batch(r: &mut impl Read) -> Option<Vec<Op>> {
    let count = read_u32(r)?;
    let mut ops = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let mut head = [0u8; 2];
        r.read_exact(&mut head).expect("an op in the batch file");
        let table = *Table::ALL
            .iter()
            .find(|t| **t as u8 == head[1])
            .expect("a known table");
        let key = read_bytes(r);
        ops.push(match head[0] {
            0 => Op::Put(table, key, read_bytes(r)),
            _ => Op::Delete(table, key),
        });
    }
    Some(ops)
}

// ---- metered store (RECONCILE_BREAKDOWN=1)

#[derive(Default)]
struct Meter {
    gets: AtomicU64,
    get_ns: AtomicU64,
    scans: AtomicU64,
    scan_ns: AtomicU64,
    writes: AtomicU64,
    write_ns: AtomicU64,
    /// Indexed by the table's discriminant, which starts at 1.
    puts: [AtomicU64; Table::ALL.len() + 1],
    deletes: AtomicU64,
    bytes: AtomicU64,
}

impl Meter {
    fn report(&self, n: usize, timed: Duration) -> Vec<String> {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let per = |a: &AtomicU64| get(a) as f64 / n as f64;
        let share = |ns: &AtomicU64| 100.0 * get(ns) as f64 / timed.as_nanos() as f64;
        let store_ns = get(&self.get_ns) + get(&self.scan_ns) + get(&self.write_ns);
        let tables: Vec<String> = Table::ALL
            .iter()
            .filter(|t| get(&self.puts[**t as usize]) > 0)
            .map(|t| format!("{} {:.2}", t.name(), per(&self.puts[*t as usize])))
            .collect();
        vec![
            format!(
                "store per change: {:.2} gets, {:.3} scans, puts {} (total {:.2}), {:.2} deletes, {:.0} bytes written",
                per(&self.gets),
                per(&self.scans),
                tables.join(", "),
                self.puts.iter().map(get).sum::<u64>() as f64 / n as f64,
                per(&self.deletes),
                per(&self.bytes),
            ),
            format!(
                "timed split: store.get {:.1}%, store.scan {:.1}%, store.write {:.1}% ({} batches), engine outside the store {:.1}%",
                share(&self.get_ns),
                share(&self.scan_ns),
                share(&self.write_ns),
                get(&self.writes),
                100.0 - 100.0 * store_ns as f64 / timed.as_nanos() as f64,
            ),
        ]
    }
}

/// The engine's store with a meter, or a recorder of its batches, or both.
struct Tapped {
    inner: Arc<dyn Store>,
    meter: Option<Arc<Meter>>,
    recorder: Option<Mutex<Recorder>>,
}

impl Tapped {
    /// What the recorder wrote, its file flushed.
    fn finish(&self) -> Written {
        let Some(r) = &self.recorder else {
            return Written::default();
        };
        let mut r = r.lock().unwrap();
        r.file.flush().expect("flush the batch file");
        r.written
    }

    /// `f`, timed into `ns` and counted in `calls` when metered.
    fn metered<T>(&self, ns: fn(&Meter) -> (&AtomicU64, &AtomicU64), f: impl FnOnce() -> T) -> T {
        let Some(m) = &self.meter else {
            return f();
        };
        let t = Instant::now();
        let out = f();
        let (elapsed, calls) = ns(m);
        elapsed.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        calls.fetch_add(1, Ordering::Relaxed);
        out
    }
}

impl Store for Tapped {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.metered(|m| (&m.get_ns, &m.gets), || self.inner.get(table, key))
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.metered(
            |m| (&m.scan_ns, &m.scans),
            || self.inner.scan(table, prefix, after, limit),
        )
    }

    fn scan_rev(
        &self,
        table: Table,
        prefix: &[u8],
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.metered(
            |m| (&m.scan_ns, &m.scans),
            || self.inner.scan_rev(table, prefix, before, limit),
        )
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let ops = batch.into_ops();
        if let Some(m) = &self.meter {
            for op in &ops {
                match op {
                    Op::Put(t, k, v) => {
                        m.puts[*t as usize].fetch_add(1, Ordering::Relaxed);
                        m.bytes
                            .fetch_add((k.len() + v.len()) as u64, Ordering::Relaxed);
                    }
                    Op::Delete(..) => {
                        m.deletes.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        if let Some(r) = &self.recorder {
            r.lock().unwrap().record(&ops);
        }
        let batch = batch_of(ops);
        self.metered(|m| (&m.write_ns, &m.writes), || self.inner.write(batch))
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }

    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }

    fn refresh_stats(&self) {
        self.inner.refresh_stats()
    }
}

// ---- generator

/// xorshift64*, seeded through splitmix64 so neighbouring seeds give unrelated streams.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// A generator for one tagged entity: the same (tag, parts) always give the same values.
    fn of(tag: u64, parts: &[u64]) -> Self {
        let mut s = SEED ^ tag.wrapping_mul(0x100_0000_01B3);
        for p in parts {
            s = Rng::new(s ^ p).0;
        }
        Rng::new(s)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sys {
    HubSpot,
    Salesforce,
    Zendesk,
}

const SYSTEMS: [Sys; 3] = [Sys::HubSpot, Sys::Salesforce, Sys::Zendesk];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ent {
    Person,
    Org,
}

impl Sys {
    fn id(self) -> &'static str {
        match self {
            Sys::HubSpot => "hubspot-main",
            Sys::Salesforce => "salesforce-main",
            Sys::Zendesk => "zendesk-main",
        }
    }

    fn object(self, ent: Ent) -> &'static str {
        match (self, ent) {
            (Sys::HubSpot, Ent::Person) => "contacts",
            (Sys::HubSpot, Ent::Org) => "companies",
            (Sys::Salesforce, Ent::Person) => "Contact",
            (Sys::Salesforce, Ent::Org) => "Account",
            (Sys::Zendesk, Ent::Person) => "users",
            (Sys::Zendesk, Ent::Org) => "organizations",
        }
    }

    /// The id each system gives an entity: numeric for HubSpot and Zendesk, 18
    /// characters with a key prefix for Salesforce.
    fn external_id(self, ent: Ent, id: u32) -> String {
        let id = id as u64;
        match (self, ent) {
            (Sys::HubSpot, Ent::Person) => (51_000_000_000 + id * 3).to_string(),
            (Sys::HubSpot, Ent::Org) => (9_800_000_000 + id * 7).to_string(),
            (Sys::Salesforce, Ent::Person) => format!("003Dn{:0>10}IAA", radix(id, B62)),
            (Sys::Salesforce, Ent::Org) => format!("001Dn{:0>10}QAA", radix(id, B62)),
            (Sys::Zendesk, Ent::Person) => (361_000_000_000 + id).to_string(),
            (Sys::Zendesk, Ent::Org) => (360_000_000_000 + id).to_string(),
        }
    }

    /// The cursor a system hands back after a page.
    fn cursor(self, ent: Ent, consumed: usize) -> String {
        match self {
            Sys::HubSpot => format!("after={consumed}"),
            Sys::Salesforce => format!(
                "/services/data/v66.0/query/01gDn000{:0>7}{}-{consumed}",
                radix(consumed as u64, B62),
                self.object(ent)
            ),
            Sys::Zendesk => format!("eyJvIjoiaWQiLCJ2IjoiYVE9PSJ9{consumed}"),
        }
    }
}

/// One system's view of one kind: the entity ids it reports, in the order it reports them.
struct Stream {
    sys: Sys,
    ent: Ent,
    ids: Vec<u32>,
}

/// Which entity each change is about. Entity ids below `shared_*` are seen by all three
/// systems; the others by exactly one.
struct Plan {
    n: usize,
    shared_persons: u32,
    shared_orgs: u32,
    orgs: u32,
    streams: Vec<Stream>,
}

impl Plan {
    fn new(n: usize) -> Self {
        let shared = n * SHARED_PCT / 100 / 3;
        let distinct = n - 3 * shared;
        let (shared_p, distinct_p) = (shared * PERSON_PCT / 100, distinct * PERSON_PCT / 100);
        let (shared_o, distinct_o) = (shared - shared_p, distinct - distinct_p);
        let mut streams = Vec::new();
        for (s, sys) in SYSTEMS.into_iter().enumerate() {
            for (e, ent, sh, di) in [
                (0, Ent::Person, shared_p, distinct_p),
                (1, Ent::Org, shared_o, distinct_o),
            ] {
                let mut ids: Vec<u32> = (0..sh as u32)
                    .chain(
                        (0..di as u32)
                            .filter(|j| *j as usize % 3 == s)
                            .map(|j| sh as u32 + j),
                    )
                    .collect();
                // Each system reports in its own order: a shared entity is met at unrelated
                // points of the three streams, not while it is still hot in a cache.
                let mut rng = Rng::of(1, &[n as u64, s as u64, e]);
                for i in (1..ids.len()).rev() {
                    ids.swap(i, rng.below(i as u64 + 1) as usize);
                }
                streams.push(Stream { sys, ent, ids });
            }
        }
        Plan {
            n,
            shared_persons: shared_p as u32,
            shared_orgs: shared_o as u32,
            orgs: (shared_o + distinct_o) as u32,
            streams,
        }
    }

    /// Pages of up to `PAGE_SIZE` changes, the six streams interleaved in proportion to
    /// their lengths, as three systems' initial syncs running side by side would be.
    fn for_each_page(&self, mut f: impl FnMut(Sys, Ent, Vec<Change>, String)) {
        let mut pos = vec![0usize; self.streams.len()];
        loop {
            let next = (0..self.streams.len())
                .filter(|&i| pos[i] < self.streams[i].ids.len())
                .min_by(|&a, &b| {
                    // Least progress first; ties go to the earlier stream.
                    let done = |i: usize| pos[i] as f64 / self.streams[i].ids.len() as f64;
                    done(a).total_cmp(&done(b))
                });
            let Some(i) = next else { break };
            let s = &self.streams[i];
            let end = (pos[i] + PAGE_SIZE).min(s.ids.len());
            let changes = s.ids[pos[i]..end]
                .iter()
                .map(|&id| self.change(s.sys, s.ent, id))
                .collect();
            pos[i] = end;
            f(s.sys, s.ent, changes, s.sys.cursor(s.ent, end));
        }
    }

    fn pages(&self) -> usize {
        self.streams
            .iter()
            .map(|s| s.ids.len().div_ceil(PAGE_SIZE))
            .sum()
    }

    fn change(&self, sys: Sys, ent: Ent, id: u32) -> Change {
        let fields = match ent {
            Ent::Person => self.person_fields(sys, id),
            Ent::Org => self.org_fields(sys, id),
        };
        let mut rng = Rng::of(3, &[sys as u64, ent as u64, id as u64]);
        let secs = 1_704_067_200 + rng.below(365 * 86_400) as i64;
        Change {
            object: sys.object(ent).to_owned(),
            external_id: sys.external_id(ent, id),
            source_updated_at: DateTime::<Utc>::from_timestamp(secs, 0).expect("a 2024 time"),
            fields,
            deleted: false,
            canonical_id: None,
        }
    }

    fn person(&self, id: u32) -> Person {
        let mut r = Rng::of(2, &[id as u64]);
        let first = r.pick(FIRST_NAMES);
        let last = r.pick(LAST_NAMES);
        let employer = (id as u64 * 2_654_435_761 % self.orgs.max(1) as u64) as u32;
        let email = format!(
            "{}.{}{}@{}",
            first.to_ascii_lowercase(),
            squash(last),
            id,
            org_domain(employer)
        );
        let region = match r.below(100) {
            0..=69 => &REGIONS[0],
            70..=84 => &REGIONS[1],
            _ => &REGIONS[2],
        };
        let phone = match region.calling_code {
            1 => {
                let mut exchange = 200 + r.below(800);
                if exchange % 100 == 11 || exchange == 555 {
                    exchange += 1;
                }
                [r.pick(US_AREA_CODES), exchange, r.below(10_000)]
            }
            44 => [20, 7000 + r.below(1000), r.below(10_000)],
            _ => [30, 20_000_000 + r.below(80_000_000), 0],
        };
        let title = job_title(&mut r);
        let other_title = job_title(&mut r);
        Person {
            first,
            last,
            email,
            calling_code: region.calling_code,
            phone,
            title,
            salesforce_title: if r.chance(DISAGREE_PCT) {
                Some(other_title)
            } else {
                None
            },
            stage: r.pick(LIFECYCLE_STAGES),
            city: r.pick(region.cities),
            country: region.country,
        }
    }

    fn person_fields(&self, sys: Sys, id: u32) -> BTreeMap<String, Json> {
        let p = self.person(id);
        let phone = p.phone_as(sys);
        object(match sys {
            Sys::HubSpot => json!({
                "email": p.email,
                "firstname": p.first,
                "lastname": p.last,
                "phone": phone,
                "jobtitle": p.title,
                "lifecyclestage": p.stage,
                "city": p.city,
                "country": p.country,
            }),
            Sys::Salesforce => json!({
                "Email": capitalized(&p.email),
                "FirstName": p.first,
                "LastName": p.last,
                "Phone": phone,
                "Title": p.salesforce_title.as_deref().unwrap_or(&p.title),
            }),
            Sys::Zendesk => json!({
                "email": format!(" {} ", p.email),
                "name": format!("{} {}", p.first, p.last),
                "phone": phone,
            }),
        })
    }

    fn org_fields(&self, sys: Sys, id: u32) -> BTreeMap<String, Json> {
        let mut r = Rng::of(4, &[id as u64]);
        let (a, b) = (r.pick(ORG_WORDS_A), r.pick(ORG_WORDS_B));
        let name = format!("{a} {b} {}", r.pick(ORG_SUFFIXES));
        let domain = org_domain(id);
        let industry = r.pick(INDUSTRIES);
        let employees = 5 + r.below(20_000);
        let disagree = r.chance(DISAGREE_PCT);
        object(match sys {
            Sys::HubSpot => json!({
                "name": name,
                "domain": domain,
                "industry": industry,
                // HubSpot returns every property as a string.
                "numberofemployees": employees.to_string(),
            }),
            Sys::Salesforce => json!({
                "Name": name,
                "Website": match r.below(4) {
                    0 => format!("https://www.{domain}/"),
                    1 => format!("http://{domain}"),
                    2 => format!("www.{domain}"),
                    _ => format!("https://{domain}/about-us"),
                },
                "Industry": if disagree { r.pick(INDUSTRIES) } else { industry },
                "NumberOfEmployees": if disagree { employees + 1 + r.below(500) } else { employees },
            }),
            Sys::Zendesk => {
                let mut domains = vec![domain.clone()];
                if r.chance(40) {
                    domains.push(format!("{}-{}.io", squash(a), radix(id as u64, B36)));
                }
                json!({ "name": name, "domain_names": domains })
            }
        })
    }
}

/// An organization's primary domain; persons' email addresses use their employer's.
fn org_domain(id: u32) -> String {
    let mut r = Rng::of(4, &[id as u64]);
    let (a, b) = (r.pick(ORG_WORDS_A), r.pick(ORG_WORDS_B));
    let word = b.split(' ').next().unwrap_or(b);
    let tld = Rng::of(5, &[id as u64]).pick(&["com", "com", "com", "io", "co.uk", "de", "net"]);
    format!(
        "{}{}-{}.{tld}",
        squash(a),
        squash(word),
        radix(id as u64, B36)
    )
}

struct Person {
    first: &'static str,
    last: &'static str,
    email: String,
    calling_code: u32,
    /// Area code, exchange/number, line (US); 20, number, line (London); 30, number (Berlin).
    phone: [u64; 3],
    title: String,
    /// Set on the shared persons whose Salesforce title differs.
    salesforce_title: Option<String>,
    stage: &'static str,
    city: &'static str,
    country: &'static str,
}

impl Person {
    /// The same number as each system tends to store it.
    fn phone_as(&self, sys: Sys) -> String {
        let [a, b, c] = self.phone;
        match (self.calling_code, sys) {
            (1, Sys::HubSpot) => format!("+1 {a}-{b:03}-{c:04}"),
            (1, Sys::Salesforce) => format!("+1 ({a}) {b:03}-{c:04}"),
            (1, Sys::Zendesk) => format!("+1{a}{b:03}{c:04}"),
            (44, Sys::HubSpot) => format!("+44 {a} {b} {c:04}"),
            (44, Sys::Salesforce) => format!("0044 {a} {b} {c:04}"),
            (44, Sys::Zendesk) => format!("+44{a}{b}{c:04}"),
            (_, Sys::HubSpot) => format!("+49 {a} {b}"),
            (_, Sys::Salesforce) => format!("+49-{a}-{b}"),
            (_, Sys::Zendesk) => format!("+49{a}{b}"),
        }
    }
}

fn job_title(r: &mut Rng) -> String {
    let function = r.pick(FUNCTIONS);
    if r.chance(50) {
        let level = r.pick(&["Senior ", "Lead ", "Principal ", "Associate ", "Staff ", ""]);
        format!("{level}{function} {}", r.pick(ROLES))
    } else {
        format!(
            "{} of {function}, {}",
            r.pick(&["Director", "Senior Director", "Vice President", "Head"]),
            r.pick(SCOPES)
        )
    }
}

fn object(v: Json) -> BTreeMap<String, Json> {
    match v {
        Json::Object(m) => m.into_iter().collect(),
        _ => unreachable!("the generator builds objects"),
    }
}

/// Lowercase ASCII letters, digits and hyphens only: `van der Berg` -> `vanderberg`.
fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// `jane.doe@acme.com` -> `Jane.Doe@Acme.com`, as typed into a CRM.
fn capitalized(email: &str) -> String {
    let mut out = String::with_capacity(email.len());
    let mut up = true;
    for c in email.chars() {
        out.push(if up { c.to_ascii_uppercase() } else { c });
        up = matches!(c, '.' | '@' | '-');
    }
    out
}

const B36: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn radix(mut v: u64, digits: &[u8]) -> String {
    let base = digits.len() as u64;
    let mut out = Vec::new();
    loop {
        out.push(digits[(v % base) as usize]);
        v /= base;
        if v == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii digits")
}

struct Region {
    country: &'static str,
    calling_code: u32,
    cities: &'static [&'static str],
}

const REGIONS: [Region; 3] = [
    Region {
        country: "United States",
        calling_code: 1,
        cities: &[
            "San Francisco",
            "New York",
            "Chicago",
            "Boston",
            "Seattle",
            "Austin",
            "Denver",
            "Salt Lake City",
            "Minneapolis",
            "Philadelphia",
            "Atlanta",
            "San Diego",
        ],
    },
    Region {
        country: "United Kingdom",
        calling_code: 44,
        cities: &["London", "Manchester", "Edinburgh", "Bristol", "Leeds"],
    },
    Region {
        country: "Germany",
        calling_code: 49,
        cities: &[
            "Berlin",
            "Munich",
            "Hamburg",
            "Frankfurt am Main",
            "Cologne",
        ],
    },
];

const US_AREA_CODES: &[u64] = &[
    415, 212, 312, 617, 206, 512, 303, 646, 408, 650, 213, 305, 404, 702, 919, 720,
];

const FIRST_NAMES: &[&str] = &[
    "Margaret",
    "Jonathan",
    "Aisha",
    "Mateo",
    "Priya",
    "Oluwaseun",
    "Katarzyna",
    "Sebastian",
    "Isabella",
    "Nikolaos",
    "Hannah",
    "Rajesh",
    "Francesca",
    "Theodore",
    "Amara",
    "Benedikt",
    "Charlotte",
    "Dmitri",
    "Eleanor",
    "Fernando",
    "Gabriela",
    "Hiroshi",
    "Ingrid",
    "Jasmine",
    "Kwame",
    "Leonardo",
    "Magdalena",
    "Nathaniel",
    "Olivia",
    "Patrick",
    "Rosalind",
    "Samuel",
    "Tatiana",
    "Valentina",
    "William",
    "Xavier",
    "Yasmin",
    "Zachary",
    "Alexander",
    "Beatrice",
];

const LAST_NAMES: &[&str] = &[
    "Okonkwo-Smith",
    "van der Berg",
    "Fitzgerald",
    "Nakamura",
    "Rodriguez",
    "Christodoulou",
    "Abernathy",
    "Kowalczyk",
    "Montgomery",
    "Fernandez-Lopez",
    "Lindqvist",
    "Ramachandran",
    "O'Sullivan",
    "Weatherington",
    "Achterberg",
    "Delacroix",
    "Gunawardena",
    "Hollingsworth",
    "Ivanova",
    "Johansson",
    "Kristiansen",
    "MacDonald",
    "Nwachukwu",
    "Papadopoulos",
    "Quintero",
    "Rasmussen",
    "Schneider",
    "Thorndike",
    "Underwood",
    "Vasquez",
    "Whitfield",
    "Yamamoto",
    "Zielinski",
    "Bergstrom",
    "Castellanos",
    "Drummond",
    "Esposito",
    "Featherstone",
];

const FUNCTIONS: &[&str] = &[
    "Revenue Operations",
    "Customer Success",
    "Enterprise Sales",
    "Product Marketing",
    "Data Engineering",
    "Financial Planning & Analysis",
    "Procurement",
    "Talent Acquisition",
    "Solutions Engineering",
    "Information Security",
    "Partner Alliances",
    "Demand Generation",
];

const ROLES: &[&str] = &[
    "Manager",
    "Specialist",
    "Analyst",
    "Engineer",
    "Consultant",
    "Architect",
    "Program Manager",
];

const SCOPES: &[&str] = &[
    "EMEA",
    "North America",
    "APAC",
    "Global",
    "Mid-Market",
    "Strategic Accounts",
    "Public Sector",
];

const LIFECYCLE_STAGES: &[&str] = &[
    "subscriber",
    "lead",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "customer",
    "evangelist",
    "other",
];

const ORG_WORDS_A: &[&str] = &[
    "Northwind",
    "Blue Harbor",
    "Silverline",
    "Granite Peak",
    "Evergreen",
    "Brightwater",
    "Ironclad",
    "Summit Ridge",
    "Redwood",
    "Crescent Bay",
    "Golden Gate",
    "Starlight",
    "Cobalt",
    "Riverstone",
    "Maplewood",
    "Oakridge",
    "Pioneer",
    "Horizon",
    "Atlas",
    "Meridian",
];

const ORG_WORDS_B: &[&str] = &[
    "Logistics",
    "Analytics",
    "Biotherapeutics",
    "Financial Partners",
    "Software",
    "Manufacturing",
    "Health Systems",
    "Energy Solutions",
    "Consulting Group",
    "Robotics",
    "Media Holdings",
    "Capital Management",
    "Foods",
    "Aerospace",
    "Data Systems",
    "Hospitality Group",
    "Pharmaceuticals",
    "Security",
    "Telecommunications",
    "Learning",
];

const ORG_SUFFIXES: &[&str] = &[
    "Inc.",
    "LLC",
    "Ltd",
    "GmbH",
    "Corporation",
    "Holdings, Inc.",
    "Group plc",
    "& Co. KG",
    "S.A.",
    "Pty Ltd",
];

const INDUSTRIES: &[&str] = &[
    "Computer Software",
    "Financial Services",
    "Hospital & Health Care",
    "Logistics and Supply Chain",
    "Biotechnology",
    "Information Technology and Services",
    "Management Consulting",
    "Telecommunications",
    "Renewables & Environment",
    "Food & Beverages",
    "Higher Education",
    "Aviation & Aerospace",
];
