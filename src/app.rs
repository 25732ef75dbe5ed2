//! The daemon's lifecycle: open the store, start connectors and the HTTP server,
//! then shut down in order when asked.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{self, Auth};
use crate::config::Config;
use crate::config::StoreKind;
use crate::engine::{system_clock, Engine};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::status::{ConnectorState, ConnectorStatus, StatusHub};
use crate::store::Store;

/// How stale `/status` and `/metrics` store figures may be.
const STORE_STATS_EVERY: Duration = Duration::from_secs(2);
/// The revenue gauges: computed from the incremental KPI state (no store read), but over
/// every subscription and deal, so on a timer rather than per scrape.
const REVENUE_EVERY: Duration = Duration::from_secs(30);

/// Every wait ends at once on shutdown, so a task still running this long after is in
/// the middle of work (a push on the wire): the log names it, and again at this interval
/// until the deadline.
const DRAIN_REPORT_AFTER: Duration = Duration::from_millis(500);
const DRAIN_REPORT_EVERY: Duration = Duration::from_secs(5);

const INSECURE_WARNING: &str = "authentication is disabled (--insecure-no-auth): anyone who reaches this port can read customer records and change the queue";

/// State shared by the HTTP handlers and the background tasks.
pub struct AppState {
    pub started: Instant,
    pub store: Arc<dyn Store>,
    pub engine: Arc<Engine>,
    /// How admin and record endpoints (and `/status`, `/metrics` unless public) check callers.
    pub auth: Auth,
    /// `server.read_only_token`: reads everything, changes nothing.
    pub read_only_token: Option<revsync_sdk::Secret>,
    /// The console's signed-in sessions and one-time links.
    pub console: crate::console::session::Sessions,
    /// `/status` and `/metrics` answer without the token.
    pub status_public: bool,
    /// Host names the operator API answers to.
    pub hosts: crate::serve::AllowedHosts,
    pub runtime: Arc<crate::sync::Runtime>,
    /// Base of the URL webhook senders sign, when behind a proxy.
    pub public_url: Option<String>,
    pub status: Arc<StatusHub>,
    pub metrics: Metrics,
    /// The KPIs' configured inputs (`kpi:` in revsync.yaml).
    pub kpi: crate::kpi::report::Inputs,
    /// The KPIs' incremental state, kept by the engine's writes; none where no daemon
    /// keeps one (a report then reads the whole store).
    pub kpi_live: Option<Arc<crate::kpi::live::Live>>,
    /// The workflow runner, when `workflows/` holds rules.
    pub workflows: Option<Arc<crate::workflows::Runner>>,
    /// The store's figures as of the last refresh: sled reads the disk for its size, which
    /// must not happen on an async thread at every `/status` or `/metrics` request.
    store_stats: std::sync::RwLock<crate::store::StoreStats>,
    shutting_down: AtomicBool,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        engine: Arc<Engine>,
        runtime: Arc<crate::sync::Runtime>,
        server: &crate::config::ServerConfig,
        auth: Auth,
        status: Arc<StatusHub>,
    ) -> Self {
        Self {
            started: Instant::now(),
            store,
            engine,
            auth,
            read_only_token: server.read_only_token.clone(),
            console: Default::default(),
            status_public: server.status_is_public(),
            hosts: crate::serve::AllowedHosts::from_config(server),
            runtime,
            public_url: server.public_url.clone(),
            status,
            metrics: Metrics::new(),
            kpi: crate::kpi::report::Inputs::default(),
            kpi_live: None,
            workflows: None,
            store_stats: std::sync::RwLock::default(),
            shutting_down: AtomicBool::new(false),
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// The store's figures as last refreshed (every few seconds, off the async threads).
    pub fn store_stats(&self) -> crate::store::StoreStats {
        self.store_stats
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Measure the store (its size walks the data directory) on a blocking thread and keep
    /// the figures for the handlers: the one place that refreshes them.
    pub async fn refresh_store_stats(&self) {
        let store = self.store.clone();
        let measured = tokio::task::spawn_blocking(move || {
            store.refresh_stats();
            store.stats()
        });
        if let Ok(stats) = measured.await {
            *self
                .store_stats
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = stats;
        }
    }

    /// The revenue KPIs of the month to date for `/metrics`, on a blocking thread.
    pub async fn refresh_revenue(self: &Arc<Self>) {
        let now = chrono::Utc::now();
        let q = crate::kpi::report::Query {
            period: Some("month".into()),
            from: Some(now.format("%Y-%m-01").to_string()),
            to: None,
        };
        let state = self.clone();
        let done = tokio::task::spawn_blocking(move || state.kpi_report(&q, now)).await;
        match done {
            Ok(Ok(report)) => self.metrics.set_revenue(&report),
            Ok(Err(e)) => tracing::warn!(error = %e, "revenue KPIs not refreshed"),
            Err(e) => tracing::warn!(error = %e, "revenue KPIs not refreshed"),
        }
    }

    /// The KPI report: from the incremental state where the daemon keeps one, else from a
    /// full read of the store. Blocking.
    pub fn kpi_report(
        &self,
        q: &crate::kpi::report::Query,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<serde_json::Value, String> {
        let store = self.store.as_ref();
        let read = match &self.kpi_live {
            Some(live) => live.read(store),
            None => crate::kpi::read::read(store),
        }
        .map_err(|e| e.to_string())?;
        crate::kpi::report::from_read(store, read, q, &self.kpi, now)
    }

    /// Keeps the KPIs in `live`, which the engine must already tell of its writes.
    pub fn with_kpi_live(mut self, live: Arc<crate::kpi::live::Live>) -> Self {
        self.kpi_live = Some(live);
        self
    }

    pub fn with_workflows(mut self, runner: Option<Arc<crate::workflows::Runner>>) -> Self {
        self.workflows = runner;
        self
    }

    pub fn with_kpi(mut self, inputs: crate::kpi::report::Inputs) -> Self {
        self.kpi = inputs;
        self
    }

    /// What an operator must know about how this daemon runs, shown on `/status`.
    pub fn warnings(&self) -> Vec<&'static str> {
        match self.auth {
            Auth::Disabled => vec![INSECURE_WARNING],
            Auth::Token(_) => Vec::new(),
        }
    }

    /// Why `/readyz` would answer 503; empty when ready. The store is open by
    /// construction (state exists only after it opened).
    pub fn not_ready_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.is_shutting_down() {
            reasons.push("shutting down".to_owned());
        }
        for c in self.status.snapshot() {
            if !c.state.is_started() {
                reasons.push(format!("connector `{}` has not started", c.id));
            }
        }
        reasons
    }
}

/// Background tasks with names, so a slow shutdown can say what it is waiting for.
#[derive(Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    live: Arc<Mutex<BTreeMap<u64, String>>>,
    next: Arc<AtomicU64>,
}

impl Tasks {
    pub fn spawn<F>(&self, name: impl Into<String>, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, name.into());
        let live = self.live.clone();
        self.tracker.spawn(async move {
            fut.await;
            live.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        });
    }

    pub fn running(&self) -> Vec<String> {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Wait for every task, up to `deadline`, saying which ones it waits for; returns
    /// the names still running at the deadline.
    pub async fn drain(&self, deadline: Duration) -> Vec<String> {
        self.tracker.close();
        let all_done = self.tracker.wait();
        let give_up = tokio::time::sleep(deadline);
        tokio::pin!(all_done, give_up);
        let mut report = tokio::time::interval_at(
            tokio::time::Instant::now() + DRAIN_REPORT_AFTER,
            DRAIN_REPORT_EVERY,
        );
        loop {
            tokio::select! {
                () = &mut all_done => return Vec::new(),
                () = &mut give_up => return self.running(),
                _ = report.tick() => tracing::info!(
                    tasks = ?self.running(),
                    "waiting for tasks to finish their work in hand (a push on the wire ends when its system answers)"
                ),
            }
        }
    }
}

/// Bind the configured address and run until `shutdown` resolves.
pub async fn run(
    config: Config,
    registry: Registry,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let addr = config.daemon.server.listen;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (server.listen)"))?;
    serve(config, registry, listener, shutdown).await
}

/// Run the daemon on an already bound listener until `shutdown` resolves.
pub async fn serve(
    config: Config,
    registry: Registry,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let store_cfg = &config.daemon.store;
    let path: PathBuf = store_cfg.path.clone();
    let shutdown = shutdown;
    tokio::pin!(shutdown);
    let (store, listener): (Arc<dyn Store>, TcpListener) = match (store_cfg.kind, &store_cfg.url) {
        (StoreKind::Postgres, Some(url)) => {
            let (url, size) = (url.expose().to_owned(), store_cfg.pool_size);
            let pg = Arc::new(
                tokio::task::spawn_blocking(move || crate::store::PgStore::open(&url, size))
                    .await?
                    .context("cannot open the store (store.url)")?,
            );
            let limits = crate::serve::Limits::from_config(&config.daemon.server);
            match standby(&pg, listener, limits, shutdown.as_mut()).await? {
                Some(listener) => (pg, listener),
                None => return Ok(()),
            }
        }
        _ => {
            let c = store_cfg.clone();
            let store = tokio::task::spawn_blocking(move || crate::store::open(&c))
                .await?
                .with_context(|| {
                    format!("cannot open the store (store.path = {})", path.display())
                })?;
            (store, listener)
        }
    };
    let stats = store.stats();
    tracing::info!(at = %stats.path, backend = stats.backend, "store open");

    let auth = resolve_auth(&config.daemon).await?;

    let (mappings, policies) = Engine::validate(&config)
        .map_err(|errors| anyhow::anyhow!("{}", crate::config::ConfigErrors(errors)))?;
    let engine = Arc::new(Engine::new(
        store.clone(),
        &config,
        mappings,
        policies,
        system_clock(),
    )?);
    for (connector, object, was, now) in engine.restart_reads_of_changed_kinds()? {
        tracing::warn!(
            connector,
            object,
            was,
            now = now.as_str(),
            "the object's kind changed since it was last read: reading it again from the start"
        );
    }

    // Loaded and watching before any poll or webhook can write a revenue record.
    let kpi_live = {
        let store = store.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || crate::kpi::live::Live::load(store.as_ref()))
                .await?
                .context("cannot read the revenue records for the KPIs")?,
        )
    };
    engine.observe_revenue(kpi_live.clone());
    tracing::info!(records = kpi_live.len(), "kpi state loaded");

    // Events are written from the first write on when rules consume them; with none,
    // events a former configuration left are dropped rather than run later.
    engine.emit_events(!config.workflows.is_empty())?;
    let workflows = (!config.workflows.is_empty()).then(|| {
        Arc::new(crate::workflows::Runner::new(
            engine.clone(),
            config.workflows.clone(),
        ))
    });

    let status = Arc::new(StatusHub::default());
    let tasks = Tasks::default();
    let cancel = CancellationToken::new();
    for (_, c) in &config.connectors {
        status.register(ConnectorStatus::new(
            &c.id,
            &c.type_name,
            c.objects.keys().cloned().collect(),
            c.enabled,
        ));
    }
    let runtime = crate::sync::start(
        &config, &registry, &engine, &store, &status, &tasks, &cancel,
    )?;
    let state = Arc::new(
        AppState::new(
            store.clone(),
            engine,
            runtime,
            &config.daemon.server,
            auth,
            status.clone(),
        )
        .with_kpi((&config.daemon.kpi).into())
        .with_kpi_live(kpi_live)
        .with_workflows(workflows.clone()),
    );
    if let Some(runner) = workflows {
        tracing::info!(rules = config.workflows.0.len(), "workflow runner started");
        tasks.spawn("workflows", runner.run(cancel.clone()));
    }

    {
        let (cfg, status, cancel) = (config.daemon.alerts.clone(), status.clone(), cancel.clone());
        tasks.spawn("alerts", crate::alerts::watch(cfg, status, cancel));
    }
    state.refresh_store_stats().await;
    {
        let (state, cancel) = (state.clone(), cancel.clone());
        tasks.spawn("store stats", async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(STORE_STATS_EVERY) => state.refresh_store_stats().await,
                }
            }
        });
    }

    {
        let (state, cancel) = (state.clone(), cancel.clone());
        tasks.spawn("revenue gauges", async move {
            loop {
                state.refresh_revenue().await;
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(REVENUE_EVERY) => {}
                }
            }
        });
    }

    let local = listener.local_addr()?;
    let http_stop = CancellationToken::new();
    let server = {
        let stop = http_stop.clone();
        let app = crate::http::router(state.clone(), config.daemon.server.max_body_bytes);
        let limits = crate::serve::Limits::from_config(&config.daemon.server);
        tokio::spawn(crate::serve::serve(listener, app, limits, stop))
    };
    tracing::info!(addr = %local, connectors = config.connectors.len(), "http server listening");

    shutdown.await;

    // Readiness goes first so load balancers stop sending work while we drain.
    state.shutting_down.store(true, Ordering::SeqCst);
    let deadline = Duration::from_secs(config.daemon.shutdown_timeout_secs);
    tracing::info!(timeout_secs = deadline.as_secs(), "shutting down");
    cancel.cancel();
    let stuck = tasks.drain(deadline).await;
    if !stuck.is_empty() {
        tracing::warn!(tasks = ?stuck, "tasks still running at the shutdown deadline; abandoning them");
    }
    for c in status.snapshot() {
        if c.state != ConnectorState::Disabled {
            status.set_state(&c.id, ConnectorState::Stopped);
        }
    }

    let flush_store = store.clone();
    tokio::task::spawn_blocking(move || flush_store.flush())
        .await?
        .context("final store flush failed")?;
    tracing::info!("store flushed");

    http_stop.cancel();
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(joined) => joined?.context("http server failed")?,
        Err(_) => tracing::warn!("http server did not stop within 5s; closing"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// How often a standby asks for the PostgreSQL store.
const STANDBY_RETRY: Duration = Duration::from_secs(1);

/// Take the PostgreSQL store for this daemon, or wait as a standby while another daemon
/// holds it (ADR 0052). A standby answers `/healthz` (alive), `/readyz` 503 and everything
/// else 503 with `Retry-After`, so a webhook sent to it is delivered again later, to
/// whichever daemon is active then. `None`: shut down while waiting.
async fn standby(
    pg: &Arc<crate::store::PgStore>,
    listener: TcpListener,
    limits: crate::serve::Limits,
    mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> anyhow::Result<Option<TcpListener>> {
    let try_hold = || {
        let p = pg.clone();
        async move {
            tokio::task::spawn_blocking(move || p.try_hold_for_daemon())
                .await?
                .context("cannot take the store (store.url)")
        }
    };
    if try_hold().await? {
        return Ok(Some(listener));
    }
    tracing::warn!(store = %pg.stats().path, "standby: another revsync daemon is active on this store; taking over when it stops");
    // The same socket served twice: by the standby's answers now, by the daemon later.
    let socket = listener.into_std()?;
    let standby_socket = TcpListener::from_std(socket.try_clone()?)?;
    let listener = TcpListener::from_std(socket)?;
    let stop = CancellationToken::new();
    let server = tokio::spawn(crate::serve::serve(
        standby_socket,
        standby_router(),
        limits,
        stop.clone(),
    ));
    let held = loop {
        tokio::select! {
            () = shutdown.as_mut() => break false,
            () = tokio::time::sleep(STANDBY_RETRY) => {}
        }
        if try_hold().await? {
            break true;
        }
    };
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    if held {
        tracing::warn!(store = %pg.stats().path, "took over: the active daemon is gone");
        Ok(Some(listener))
    } else {
        Ok(None)
    }
}

fn standby_router() -> axum::Router {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let busy = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            axum::Json(serde_json::json!({
                "error": "standby",
                "message": "this replica is a standby: another revsync daemon is active on the store"
            })),
        )
    };
    axum::Router::new()
        .route(
            "/healthz",
            axum::routing::get(|| async {
                axum::Json(serde_json::json!({"status": "standby"})).into_response()
            }),
        )
        .fallback(move || async move { busy().into_response() })
}

/// The configured token, else the one generated at first start in the data directory
/// (created there now if absent). The token itself is never logged, only where it is.
async fn resolve_auth(daemon: &crate::config::DaemonConfig) -> anyhow::Result<Auth> {
    if daemon.server.insecure_no_auth {
        tracing::warn!("{INSECURE_WARNING}");
        return Ok(Auth::Disabled);
    }
    if let Some(token) = &daemon.server.admin_token {
        tracing::info!("admin endpoints need server.admin_token as a bearer token");
        return Ok(Auth::Token(token.clone()));
    }
    let path = auth::token_path(&daemon.store.path);
    let p = path.clone();
    let (token, created) = tokio::task::spawn_blocking(move || auth::load_or_create(&p))
        .await?
        .with_context(|| {
            format!(
                "cannot read or create the admin token at {}",
                path.display()
            )
        })?;
    tracing::info!(
        path = %path.display(),
        generated = created,
        "no server.admin_token configured: admin and record endpoints need the token kept in this file (revsync's CLI reads it)"
    );
    Ok(Auth::Token(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CountingStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn status_and_metrics_answer_from_the_cached_store_figures() {
        let store = Arc::new(CountingStore::default());
        let shared: Arc<dyn Store> = store.clone();
        let config = Config {
            dir: PathBuf::from("."),
            daemon: crate::config::DaemonConfig::default(),
            connectors: Vec::new(),
            workflows: Default::default(),
        };
        let (m, p) = Engine::validate(&config).unwrap();
        let engine = Arc::new(Engine::new(shared.clone(), &config, m, p, system_clock()).unwrap());
        let status = Arc::new(StatusHub::default());
        let (tasks, cancel) = (Tasks::default(), CancellationToken::new());
        let runtime = crate::sync::start(
            &config,
            &Registry::builtin(),
            &engine,
            &shared,
            &status,
            &tasks,
            &cancel,
        )
        .unwrap();
        let server = &config.daemon.server;
        let state = Arc::new(AppState::new(
            shared,
            engine,
            runtime,
            server,
            Auth::Disabled,
            status,
        ));
        state.refresh_store_stats().await;
        let calls_before = store.stats_calls.load(Ordering::SeqCst);

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let served = tokio::spawn(crate::serve::serve(
            listener,
            crate::http::router(state.clone(), 1024),
            crate::serve::Limits::from_config(server),
            stop.clone(),
        ));
        let http = reqwest::Client::new();
        for _ in 0..10 {
            for path in ["/status", "/metrics"] {
                let r = http.get(format!("{base}{path}")).send().await.unwrap();
                assert_eq!(r.status(), 200);
            }
        }
        assert_eq!(
            store.stats_calls.load(Ordering::SeqCst),
            calls_before,
            "a request read the store's figures itself"
        );
        stop.cancel();
        cancel.cancel();
        served.await.unwrap().unwrap();
        assert!(tasks.drain(Duration::from_secs(5)).await.is_empty());
    }
}
