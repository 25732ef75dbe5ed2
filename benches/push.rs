//! Push throughput against a rate-limited API: how much of the API's request budget the
//! dispatcher and the shared HTTP client turn into records, with how many 429s.
//!
//! `cargo bench --bench push` starts a fake API on 127.0.0.1 that allows 100 requests in
//! any ROLLING 10 s window (over it: 429 with `Retry-After` = whole seconds until a slot
//! frees, rounded up; a refused request takes no slot) and refuses batches of more than
//! 100 records with 400. A store is pre-filled through `Engine::apply` (pages of 500 from a
//! `bench-source` connector) so that 20,000 creates wait in the outbox of `bench-target`,
//! whose connector declares `batch_size: 100` and an `ApiClient` with
//! `Limits::new(100, 10 s)`, the API's documented limit. Then the daemon's own
//! `sync::dispatch::Dispatcher` drains that outbox, exactly as `app::serve` runs it (no poll
//! loop: nothing else spends the target's budget).
//!
//! Measured at the fake API, from the arrival of the first push to the moment it holds
//! 20,000 records: requests (all of them, 429s included), 429s, records per request.
//! The headline budget is `100 x elapsed / 10 s` (continuous); `100 x ceil(elapsed / 10 s)`,
//! the most a rolling window could let through in that time, is printed beside it.
//! Figures: docs/BENCHMARKS.md.
//!
//! Then the same backlog goes to Zendesk: the real `zendesk` connector, built from its
//! connector file as the daemon builds it (defaults: 700 requests a minute, up to 30 jobs
//! in flight, `job_poll_interval_ms` 1 s: ADR 0032), against the Zendesk simulator configured
//! as an Enterprise account: 700 requests per 60 s window (then 429), at most 100 records
//! per `create_or_update_many` job, at most 30 jobs queued or running (then a 429
//! TooManyJobs), and every job finishing 1 to 3 s after its submit (spread evenly). The
//! daemon's `Dispatcher` drains the outbox; timed from its start until the outbox is empty,
//! every record confirmed by the result of its job.
//!
//! The Zendesk ceiling: a job's records count once its result has been read, so a job
//! costs its submit plus its share of a status read, and one `job_statuses/show_many` read
//! covers at most the 30 jobs an account can have in flight: at least 1 + 1/30 requests
//! per 100 records. 700 requests a minute then carry at most
//! `700 / 60 / (1 + 1/30) x 100 = 1,129 records/s`. (Read one job at a time, as before,
//! a job costs at least 2 requests and the ceiling would be 583 records/s.)
//!
//! Environment: `PUSH_RUNS=3` repeats the run (a fresh API and store each time).
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use revsync::config::{self, Config};
use revsync::engine::{system_clock, Engine, Page};
use revsync::registry::Registry;
use revsync::status::{ConnectorStatus, StatusHub};
use revsync::store::{SledStore, Store};
use revsync::sync::dispatch::Dispatcher;
use revsync_sdk::http::{ApiClient, ApiRequest, DefaultPolicy, LimiterStats, Limits, RetryPolicy};
use revsync_sdk::{
    BuildContext, Capabilities, Change, Connector, ConnectorError, ConnectorType, Fetched, Kind,
    ObjectCapability, ParamError, PushItem, PushOp, PushResult,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Records waiting to be pushed.
const BACKLOG: usize = 20_000;
/// The API's limit, and what the connector declares: requests per rolling window.
const LIMIT: usize = 100;
const WINDOW: Duration = Duration::from_secs(10);
/// Largest batch the API takes, and the connector's `batch_size`.
const MAX_BATCH: usize = 100;
/// Changes per `Engine::apply` while filling the store (not timed).
const FILL_PAGE: usize = 500;
/// A run that has not finished by then has failed.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

const TARGET_BUDGET: f64 = 0.95;
const TARGET_429: f64 = 0.005;
const TARGET_FILL: f64 = 0.98;

/// Zendesk Enterprise: requests a minute, records per job, jobs queued or running.
const ZD_PER_MINUTE: f64 = 700.0;
const ZD_JOB: f64 = 100.0;
const ZD_JOBS: f64 = 30.0;
const ZD_JOB_DELAY: Duration = Duration::from_secs(1);
const ZD_JOB_SPREAD: Duration = Duration::from_secs(2);
const TARGET_ZD_RATIO: f64 = 0.9;

fn main() {
    let runs = std::env::var("PUSH_RUNS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the runtime");
    println!(
        "push: {} cores ({}), backlog {BACKLOG} creates, API: {LIMIT} requests per rolling {} s and at most {MAX_BATCH} records per batch; connector: batch_size {MAX_BATCH}, Limits::new({LIMIT}, {} s)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        WINDOW.as_secs(),
        WINDOW.as_secs(),
    );
    println!("load average before: {}", load_average());
    let mut missed = false;
    for run in 1..=runs {
        if runs > 1 {
            println!("\nrun {run} of {runs}");
        }
        let report = rt.block_on(run_once());
        missed |= !report.print();
        let zendesk = rt.block_on(run_zendesk());
        missed |= !zendesk.print();
    }
    println!("\nload average after: {}", load_average());
    if missed {
        println!("at least one target was missed");
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

// ---- the fake API

/// Everything the fake API saw.
#[derive(Default)]
struct ApiState {
    /// Arrival times of the requests that took a slot, newest last, within one window.
    window: VecDeque<Instant>,
    /// Every request: arrival time, status answered, records accepted.
    log: Vec<(Instant, u16, usize)>,
    /// Idempotency key -> id: a retried create is the same record.
    by_key: HashMap<String, u64>,
    creates: u64,
    updates: u64,
    /// A create whose key was already known (a retry after a lost answer).
    replays: u64,
    /// When the API first held `BACKLOG` records.
    full_at: Option<Instant>,
}

struct Api {
    state: Mutex<ApiState>,
    full: Notify,
}

impl Api {
    async fn start() -> (Arc<Self>, String) {
        let api = Arc::new(Self {
            state: Mutex::new(ApiState::default()),
            full: Notify::new(),
        });
        let app = Router::new()
            .route("/v1/contacts/batch", post(batch))
            .with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake API");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("fake API") });
        (api, url)
    }
}

async fn batch(State(api): State<Arc<Api>>, Json(body): Json<Value>) -> Response {
    let now = Instant::now();
    let mut guard = api.state.lock().expect("api state");
    let s = &mut *guard;
    while s
        .window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= WINDOW)
    {
        s.window.pop_front();
    }
    if s.window.len() >= LIMIT {
        let oldest = *s.window.front().expect("a full window");
        let frees_in = WINDOW - now.duration_since(oldest);
        let secs = frees_in.as_nanos().div_ceil(1_000_000_000);
        s.log.push((now, 429, 0));
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs.to_string())],
            Json(json!({"error": "rate limit: 100 requests per 10 seconds"})),
        )
            .into_response();
    }
    s.window.push_back(now);
    let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
    if inputs.len() > MAX_BATCH {
        s.log.push((now, 400, 0));
        let msg = format!("at most {MAX_BATCH} inputs per batch, got {}", inputs.len());
        return (StatusCode::BAD_REQUEST, Json(json!({"error": msg}))).into_response();
    }
    s.log.push((now, 200, inputs.len()));
    let mut results = Vec::with_capacity(inputs.len());
    for input in &inputs {
        let id = match (input["id"].as_str(), input["idempotency_key"].as_str()) {
            (Some(id), _) => {
                s.updates += 1;
                id.parse().unwrap_or(0)
            }
            (None, Some(key)) => match s.by_key.get(key).copied() {
                Some(id) => {
                    s.replays += 1;
                    id
                }
                None => {
                    s.creates += 1;
                    let id = 1_000_000 + s.creates;
                    s.by_key.insert(key.to_owned(), id);
                    id
                }
            },
            (None, None) => {
                s.creates += 1;
                1_000_000 + s.creates
            }
        };
        results.push(json!({"id": id.to_string()}));
    }
    if s.creates as usize >= BACKLOG && s.full_at.is_none() {
        s.full_at = Some(Instant::now());
        api.full.notify_one();
    }
    Json(json!({"results": results})).into_response()
}

// ---- the connector

/// The `bench` connector type: contacts over the fake API's batch endpoint.
struct BenchType;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BenchParams {
    base_url: String,
}

impl ConnectorType for BenchType {
    fn name(&self) -> &'static str {
        "bench"
    }

    fn objects(&self) -> &'static [(&'static str, Kind)] {
        &[("contacts", Kind::Person)]
    }

    fn validate_params(&self, params: &Value) -> Result<(), Vec<ParamError>> {
        revsync_sdk::parse_params::<BenchParams>(params)
            .map(|_| ())
            .map_err(|e| vec![e])
    }

    fn params_example(&self) -> &'static str {
        "params:\n  base_url: http://127.0.0.1:9"
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Option<Result<Arc<dyn Connector>, ConnectorError>> {
        let permanent = |detail: String| ConnectorError::Permanent {
            detail,
            status: None,
            body: None,
        };
        let p: BenchParams = match revsync_sdk::parse_params(ctx.params) {
            Ok(p) => p,
            Err(e) => return Some(Err(permanent(e.message))),
        };
        // The API's documented limit, unless the file's `rate_limit:` says otherwise.
        let limits = match ctx.rate_limit.resolve(Limits::new(LIMIT as u32, WINDOW)) {
            Ok(l) => l,
            Err(e) => return Some(Err(permanent(e))),
        };
        Some(
            ApiClient::new(
                &p.base_url,
                limits,
                RetryPolicy::default(),
                Duration::from_secs(10),
                Arc::new(DefaultPolicy),
            )
            .map(|client| Arc::new(Bench { client }) as Arc<dyn Connector>),
        )
    }
}

struct Bench {
    client: ApiClient,
}

#[async_trait]
impl Connector for Bench {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            objects: vec![ObjectCapability {
                name: "contacts".into(),
                kind: Kind::Person,
                read: true,
                write: true,
            }],
            batch_size: MAX_BATCH,
            webhooks: false,
        }
    }

    /// Never called: the store is filled through the engine and nothing polls.
    async fn fetch(&self, _object: &str, cursor: Option<&str>) -> Result<Fetched, ConnectorError> {
        Ok(Fetched {
            changes: Vec::new(),
            cursor: cursor.map(str::to_owned),
            more: false,
            ..Fetched::default()
        })
    }

    async fn fetch_by_ids(
        &self,
        _object: &str,
        _ids: &[String],
    ) -> Result<Vec<Change>, ConnectorError> {
        Ok(Vec::new())
    }

    async fn push(
        &self,
        _object: &str,
        items: &[PushItem],
    ) -> Result<Vec<PushResult>, ConnectorError> {
        let inputs: Vec<Value> = items
            .iter()
            .map(|i| match &i.op {
                PushOp::Create { canonical_id } => {
                    json!({"idempotency_key": canonical_id.to_string(), "properties": i.fields})
                }
                PushOp::Update { external_id } | PushOp::Delete { external_id } => {
                    json!({"id": external_id, "properties": i.fields})
                }
            })
            .collect();
        // Creates carry idempotency keys: safe to retry.
        let req = ApiRequest::post("/v1/contacts/batch")
            .with_json(json!({"inputs": inputs}))
            .with_retry(true);
        let body: Value = self.client.send(req).await?.json()?;
        Ok(body["results"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| Ok(r["id"].as_str().unwrap_or_default().to_owned()))
            .collect())
    }

    fn rate_limit(&self) -> Option<LimiterStats> {
        Some(self.client.limiter().stats())
    }
}

// ---- one run

/// A configuration in `dir`: `bench-source` (contacts read in) and the connector file
/// `target` (its id and YAML), which pushes them out.
fn write_config(dir: &Path, target: (&str, String)) -> Config {
    std::fs::create_dir_all(dir.join("connectors")).expect("create connectors/");
    std::fs::write(
        dir.join("revsync.yaml"),
        format!(
            "version: 1\nstore:\n  path: {}\nlog:\n  level: warn\n",
            dir.join("data").display()
        ),
    )
    .expect("write revsync.yaml");
    for (id, yaml) in [
        (
            "bench-source",
            bench_file("bench-source", "http://127.0.0.1:9", "in"),
        ),
        (target.0, target.1),
    ] {
        std::fs::write(dir.join(format!("connectors/{id}.yaml")), yaml)
            .expect("write a connector file");
    }
    config::load(
        dir,
        &Registry::with(vec![
            Box::new(BenchType),
            Box::new(revsync_zendesk::Zendesk),
        ]),
        &BTreeMap::<String, String>::new(),
    )
    .unwrap_or_else(|e| panic!("benchmark configuration: {e}"))
}

/// A `bench` connector file over `url`'s contacts.
fn bench_file(id: &str, url: &str, direction: &str) -> String {
    format!(
        "version: 1\nid: {id}\ntype: bench\nparams:\n  base_url: {url}\nobjects:\n  contacts:\n    kind: person\n    direction: {direction}\n    fields: {{ email: email, name: {{ to: full_name }} }}\n"
    )
}

/// A store holding the backlog for `target`, and the daemon's dispatcher for it, not
/// started yet.
struct Setup {
    engine: Arc<Engine>,
    connector: Arc<dyn Connector>,
    status: Arc<StatusHub>,
    cancel: CancellationToken,
    dispatcher: Arc<Dispatcher>,
    fill_secs: f64,
    // Holds the store's directory until the run ends.
    _dir: tempfile::TempDir,
}

async fn setup(
    dir: tempfile::TempDir,
    cfg: &Config,
    target: &str,
    kind: &dyn ConnectorType,
    object: &str,
) -> Setup {
    let s = &cfg.daemon.store;
    let store: Arc<dyn Store> = Arc::new(
        SledStore::open(&s.path, s.flush_interval_ms, s.cache_mb).expect("open the sled store"),
    );
    let (mappings, policies) = Engine::validate(cfg).unwrap_or_else(|e| panic!("{e:?}"));
    let engine = Arc::new(
        Engine::new(store.clone(), cfg, mappings, policies, system_clock())
            .expect("start the engine"),
    );
    let filling = Instant::now();
    let enqueued = {
        let engine = engine.clone();
        tokio::task::spawn_blocking(move || fill(&engine))
            .await
            .expect("fill the store")
    };
    assert_eq!(enqueued, BACKLOG, "every change is a create for {target}");
    let fill_secs = filling.elapsed().as_secs_f64();
    let (_, t) = cfg
        .connectors
        .iter()
        .find(|(_, c)| c.id == target)
        .expect("the target is configured");
    let ctx = BuildContext {
        id: &t.id,
        params: &t.params,
        rate_limit: &t.rate_limit,
        http: &t.http,
        mapped_fields: &Default::default(),
        objects: &Default::default(),
        shutdown: Default::default(),
    };
    let connector = kind
        .build(&ctx)
        .expect("the type has a client")
        .expect("build the connector");
    let status = Arc::new(StatusHub::default());
    status.register(ConnectorStatus::new(
        &t.id,
        kind.name(),
        vec![object.into()],
        true,
    ));
    let cancel = CancellationToken::new();
    let dispatcher = Arc::new(Dispatcher {
        connector_id: t.id.clone(),
        connector: connector.clone(),
        engine: engine.clone(),
        status: status.clone(),
        cancel: cancel.clone(),
        // The target is write-only here: nothing to read first.
        gated: Default::default(),
        caught_up: Default::default(),
        first_reads: {
            let reads = revsync::sync::dispatch::FirstReads::default();
            reads.set(Vec::new());
            Arc::new(reads)
        },
        resume_after: Default::default(),
        pass: Default::default(),
        retry: Default::default(),
        dry_run: false,
        pauses: Arc::new(revsync::sync::pause::Pauses::new(Default::default())),
    });
    Setup {
        engine,
        connector,
        status,
        cancel,
        dispatcher,
        fill_secs,
        _dir: dir,
    }
}

/// 20,000 new contacts from `bench-source`: each one a create waiting for `bench-target`.
fn fill(engine: &Engine) -> usize {
    let mut enqueued = 0;
    let changes: Vec<Change> = (0..BACKLOG)
        .map(|i| Change {
            object: "contacts".into(),
            external_id: format!("src-{i}"),
            source_updated_at: DateTime::<Utc>::from_timestamp(1_700_000_000 + i as i64, 0)
                .expect("a valid time"),
            fields: [
                ("email".to_owned(), json!(format!("user{i}@push.test"))),
                ("name".to_owned(), json!(format!("Push User{i}"))),
            ]
            .into_iter()
            .collect(),
            deleted: false,
            canonical_id: None,
        })
        .collect();
    for (n, page) in changes.chunks(FILL_PAGE).enumerate() {
        let report = engine
            .apply(
                "bench-source",
                Page {
                    object: "contacts".into(),
                    changes: page.to_vec(),
                    cursor: Some(n.to_string()),
                },
            )
            .expect("apply a page");
        enqueued += report.enqueued;
    }
    enqueued
}

struct Report {
    elapsed: Duration,
    requests: usize,
    throttled: usize,
    refused_400: usize,
    records: usize,
    creates: u64,
    replays: u64,
    updates: u64,
    limiter: Option<LimiterStats>,
    /// The shortest time in which any 101 consecutive requests arrived.
    tightest_101: Option<Duration>,
    /// The shortest gap between two consecutive requests.
    min_gap: Option<Duration>,
    /// From the last record stored to an empty outbox (the last confirmations).
    drain_after: Option<Duration>,
    fill_secs: f64,
}

async fn run_once() -> Report {
    let (api, url) = Api::start().await;
    let tmp = tempfile::Builder::new()
        .prefix("push-bench-")
        .tempdir()
        .expect("create a temporary directory");
    let cfg = write_config(
        tmp.path(),
        ("bench-target", bench_file("bench-target", &url, "out")),
    );
    let Setup {
        engine,
        connector,
        cancel,
        dispatcher,
        fill_secs,
        _dir,
        ..
    } = setup(tmp, &cfg, "bench-target", &BenchType, "contacts").await;
    let running = tokio::spawn(dispatcher.run());

    let full = api.full.notified();
    let finished = tokio::time::timeout(RUN_TIMEOUT, full).await.is_ok()
        || api.state.lock().expect("api state").full_at.is_some();
    let drain_after = if finished {
        let since = Instant::now();
        let mut drained = None;
        while since.elapsed() < Duration::from_secs(30) {
            let e = engine.clone();
            let left = tokio::task::spawn_blocking(move || e.outbox("bench-target", 1))
                .await
                .expect("read the outbox")
                .expect("read the outbox");
            if left.is_empty() {
                let full_at = api.state.lock().expect("api state").full_at;
                drained = full_at.map(|t| t.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        drained
    } else {
        None
    };
    cancel.cancel();
    let _ = running.await;

    let s = api.state.lock().expect("api state");
    let first = s
        .log
        .first()
        .map(|(t, _, _)| *t)
        .expect("at least one push");
    let end = s.full_at.unwrap_or_else(Instant::now);
    let upto: Vec<&(Instant, u16, usize)> = s.log.iter().filter(|(t, _, _)| *t <= end).collect();
    let arrivals: Vec<Instant> = upto.iter().map(|(t, _, _)| *t).collect();
    Report {
        elapsed: end - first,
        requests: upto.len(),
        throttled: upto.iter().filter(|(_, st, _)| *st == 429).count(),
        refused_400: upto.iter().filter(|(_, st, _)| *st == 400).count(),
        records: upto.iter().map(|(_, _, n)| n).sum(),
        creates: s.creates,
        replays: s.replays,
        updates: s.updates,
        limiter: connector.rate_limit(),
        tightest_101: arrivals.windows(LIMIT + 1).map(|w| w[LIMIT] - w[0]).min(),
        min_gap: arrivals.windows(2).map(|w| w[1] - w[0]).min(),
        drain_after,
        fill_secs,
    }
}

impl Report {
    /// Prints the figures; false when a target was missed.
    fn print(&self) -> bool {
        let secs = self.elapsed.as_secs_f64();
        let windows = secs / WINDOW.as_secs_f64();
        let budget = LIMIT as f64 * windows;
        let budget_ceil = LIMIT as f64 * windows.ceil().max(1.0);
        let used = self.requests as f64 / budget;
        let share_429 = self.throttled as f64 / self.requests.max(1) as f64;
        let fill = self.records as f64 / (self.requests.max(1) * MAX_BATCH) as f64;
        let ok = |met: bool| if met { "met" } else { "MISSED" };
        println!(
            "  store filled: {BACKLOG} creates queued in {:.1} s (not timed)",
            self.fill_secs
        );
        println!(
            "  elapsed, first push -> {BACKLOG}th record stored  {secs:>9.2} s{}",
            if self.creates as usize >= BACKLOG {
                ""
            } else {
                "  (TIMED OUT)"
            }
        );
        println!(
            "  requests sent                                 {:>9}  (429: {}, 400: {})",
            self.requests, self.throttled, self.refused_400
        );
        println!(
            "  requests / budget (100 x elapsed / 10 s)      {used:>9.3}  budget {budget:.1}; target >= {TARGET_BUDGET}: {}",
            ok(used >= TARGET_BUDGET)
        );
        println!(
            "  (by whole windows, 100 x ceil(elapsed / 10 s) = {budget_ceil:.0}: {:.3}; the run is {:.2} s into window {:.0})",
            self.requests as f64 / budget_ceil,
            secs - (windows.ceil() - 1.0) * WINDOW.as_secs_f64(),
            windows.ceil(),
        );
        println!(
            "  429 share                                     {:>8.2} %  target <= {:.1} %: {}",
            share_429 * 100.0,
            TARGET_429 * 100.0,
            ok(share_429 <= TARGET_429)
        );
        println!(
            "  batch fill (records / (requests x {MAX_BATCH}))      {fill:>9.3}  {} records; target >= {TARGET_FILL}: {}",
            self.records,
            ok(fill >= TARGET_FILL)
        );
        println!(
            "  throughput                                    {:>9.0} records/s",
            self.creates as f64 / secs
        );
        println!(
            "  API saw: {} creates, {} replayed creates, {} updates",
            self.creates, self.replays, self.updates
        );
        if let Some(l) = self.limiter {
            println!(
                "  client limiter: {} permits granted, {} answers throttled",
                l.requests, l.throttled_429
            );
        }
        if let (Some(t), Some(g)) = (self.tightest_101, self.min_gap) {
            println!(
                "  arrivals: any {} consecutive requests spanned >= {:.4} s; smallest gap {:.1} ms",
                LIMIT + 1,
                t.as_secs_f64(),
                g.as_secs_f64() * 1000.0
            );
        }
        match self.drain_after {
            Some(d) => println!(
                "  outbox empty {:.0} ms after the last record was stored",
                d.as_secs_f64() * 1000.0
            ),
            None => println!("  outbox NOT empty after the run"),
        }
        used >= TARGET_BUDGET && share_429 <= TARGET_429 && fill >= TARGET_FILL
    }
}

// ---- Zendesk

struct ZendeskReport {
    elapsed: Duration,
    confirmed: u64,
    stats: revsync_zendesk::sim::SimStats,
    left: usize,
}

async fn run_zendesk() -> ZendeskReport {
    use revsync_zendesk::sim::{Sim, SimConfig};
    let sim = Sim::start(SimConfig {
        requests_per_window: ZD_PER_MINUTE as u32,
        window: Duration::from_secs(60),
        max_jobs: ZD_JOBS as usize,
        job_delay: ZD_JOB_DELAY,
        job_delay_spread: ZD_JOB_SPREAD,
        ..SimConfig::default()
    })
    .await;
    let tmp = tempfile::Builder::new()
        .prefix("push-bench-zd-")
        .tempdir()
        .expect("create a temporary directory");
    let file = format!(
        "version: 1\nid: zendesk\ntype: zendesk\nparams: {}\nobjects:\n  users:\n    kind: person\n    direction: out\n    fields: {{ email: email, name: {{ to: full_name }} }}\n",
        sim.params()
    );
    let cfg = write_config(tmp.path(), ("zendesk", file));
    let Setup {
        engine,
        status,
        cancel,
        dispatcher,
        _dir,
        ..
    } = setup(tmp, &cfg, "zendesk", &revsync_zendesk::Zendesk, "users").await;
    let started = Instant::now();
    let running = tokio::spawn(dispatcher.run());
    let mut left = BACKLOG;
    while started.elapsed() < RUN_TIMEOUT {
        let e = engine.clone();
        left = tokio::task::spawn_blocking(move || e.outbox_len("zendesk", BACKLOG))
            .await
            .expect("read the outbox")
            .expect("read the outbox");
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    cancel.cancel();
    let _ = running.await;
    let confirmed = status
        .snapshot()
        .iter()
        .find(|c| c.id == "zendesk")
        .map_or(0, |c| c.records_out);
    ZendeskReport {
        elapsed,
        confirmed,
        stats: sim.stats(),
        left,
    }
}

impl ZendeskReport {
    /// Prints the figures; false when a target was missed.
    fn print(&self) -> bool {
        let secs = self.elapsed.as_secs_f64();
        let st = &self.stats;
        let ceiling = ZD_PER_MINUTE / 60.0 / (1.0 + 1.0 / ZD_JOBS) * ZD_JOB;
        let rate = self.confirmed as f64 / secs;
        let ratio = rate / ceiling;
        let refused = st.throttled + st.too_many_jobs;
        let share_429 = refused as f64 / st.requests.max(1) as f64;
        let ok = |met: bool| if met { "met" } else { "MISSED" };
        println!(
            "zendesk: {BACKLOG} user creates; simulator: {ZD_PER_MINUTE} requests per 60 s, {ZD_JOB} records per job, {ZD_JOBS} jobs in flight, jobs finish {}-{} s after submit; connector defaults",
            ZD_JOB_DELAY.as_secs(),
            (ZD_JOB_DELAY + ZD_JOB_SPREAD).as_secs()
        );
        println!(
            "  elapsed, dispatcher start -> outbox empty      {secs:>9.2} s{}",
            if self.left == 0 { "" } else { "  (TIMED OUT)" }
        );
        println!(
            "  records confirmed                             {:>9}  ({} records left)",
            self.confirmed, self.left
        );
        println!(
            "  requests                                      {:>9}  ({} jobs, {} status reads, {:.3} requests per job; {:.1} requests/min)",
            st.requests,
            st.jobs,
            st.status_reads,
            st.requests as f64 / st.jobs.max(1) as f64,
            st.requests as f64 / secs * 60.0
        );
        println!(
            "  most jobs in flight at once                   {:>9}",
            st.max_active_jobs
        );
        println!("  pushed                                        {rate:>9.0} records/s");
        println!("  ceiling (700/min, 1 + 1/30 requests per job)  {ceiling:>9.0} records/s");
        println!("ratio zendesk pushed / ceiling: {ratio:.3}");
        println!(
            "  ratio target >= {TARGET_ZD_RATIO}: {}",
            ok(ratio >= TARGET_ZD_RATIO)
        );
        println!(
            "  429 share                                     {:>8.2} %  ({} over budget, {} TooManyJobs); target <= {:.1} %: {}",
            share_429 * 100.0,
            st.throttled,
            st.too_many_jobs,
            TARGET_429 * 100.0,
            ok(share_429 <= TARGET_429)
        );
        self.left == 0 && ratio >= TARGET_ZD_RATIO && share_429 <= TARGET_429
    }
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
