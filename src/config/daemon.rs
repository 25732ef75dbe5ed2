//! `revsync.yaml`: the daemon's own settings.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use revsync_sdk::Secret;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    #[serde(default = "default_version")]
    pub version: u32,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// How long shutdown waits for tasks to finish before giving up on them.
    #[serde(default = "default_shutdown_timeout_secs")]
    pub shutdown_timeout_secs: u64,
    /// Field merge rules by `<kind>.<field>` or `<kind>.*`, over the default ownership.
    #[serde(default)]
    pub merge: BTreeMap<String, MergeRuleConfig>,
    /// How long what only grows is kept: webhook ids, audit entries.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// How a failing push or webhook event is retried before it is dead-lettered.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Messages to a webhook when a connector needs a person.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// The KPIs' inputs no system holds: spend, gross margin, the at-risk threshold.
    #[serde(default)]
    pub kpi: KpiConfig,
    /// Scored matching of the records no exact key joins, per kind (issue 19).
    #[serde(default)]
    pub identity: IdentityConfig,
    /// What ingest fixes in the values it reads (issue 19).
    #[serde(default)]
    pub quality: QualityConfig,
}

/// `quality:` in revsync.yaml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityConfig {
    /// A person's first or last name read in ALL CAPS or all lower case is stored, and so
    /// written to every other system, as people write it (`JOHN O'BRIEN` becomes `John
    /// O'Brien`); the system it came from keeps its spelling until it changes there.
    #[serde(default = "default_true")]
    pub fix_name_case: bool,
}

impl Default for QualityConfig {
    fn default() -> Self {
        Self {
            fix_name_case: true,
        }
    }
}

/// `identity:` in revsync.yaml. Persons and organizations are matched by the shipped
/// models (src/engine/identity/model.rs) unless a kind says `enabled: false`; any part of
/// a kind's model can be replaced here. A model trained by `revsync identity train` is
/// used in place of the shipped m and u from the next start.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    #[serde(default)]
    pub person: KindIdentityConfig,
    #[serde(default)]
    pub organization: KindIdentityConfig,
}

/// One kind's scored identity settings; what is left out comes from the shipped model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindIdentityConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Match probability at or above which a pair merges on its own.
    #[serde(default)]
    pub upper: Option<f64>,
    /// Match probability at or above which a pair goes to the review queue.
    #[serde(default)]
    pub lower: Option<f64>,
    #[serde(default)]
    pub max_cluster: Option<usize>,
    #[serde(default)]
    pub max_block: Option<usize>,
    /// Fields that identify outright: two different values never merge.
    #[serde(default)]
    pub strong: Option<Vec<String>>,
    #[serde(default)]
    pub comparisons: Option<Vec<crate::engine::identity::model::Comparison>>,
    #[serde(default)]
    pub blocking: Option<Vec<crate::engine::identity::model::BlockRule>>,
}

impl Default for KindIdentityConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            upper: None,
            lower: None,
            max_cluster: None,
            max_block: None,
            strong: None,
            comparisons: None,
            blocking: None,
        }
    }
}

fn default_true() -> bool {
    true
}

/// `kpi:` in revsync.yaml (KPIS.md): what the revenue KPIs need besides the systems' data.
/// Left out, the KPIs that need an input are reported unavailable, never 0.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KpiConfig {
    /// Gross margin as a fraction (0.8 for 80 %), for LTV and CAC payback.
    #[serde(default)]
    pub gross_margin: Option<f64>,
    /// Sales and marketing spend, one entry per period, for CAC.
    #[serde(default)]
    pub spend: Vec<SpendConfig>,
    /// More urgent or high tickets than this in 30 days puts a paying customer at risk.
    #[serde(default = "default_urgent_tickets_over")]
    pub urgent_tickets_over: usize,
    /// Report every KPI in this currency (ISO 4217), converting other currencies at `rates`.
    #[serde(default)]
    pub reporting_currency: Option<String>,
    /// Units of `reporting_currency` one unit of each other currency is worth (`EUR: 1.08`).
    #[serde(default)]
    pub rates: std::collections::BTreeMap<String, f64>,
}

impl Default for KpiConfig {
    fn default() -> Self {
        Self {
            gross_margin: None,
            spend: Vec::new(),
            urgent_tickets_over: default_urgent_tickets_over(),
            reporting_currency: None,
            rates: std::collections::BTreeMap::new(),
        }
    }
}

fn default_urgent_tickets_over() -> usize {
    2
}

/// Spend over `[from, to)` (dates, UTC), in minor units of `currency`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendConfig {
    pub from: chrono::NaiveDate,
    pub to: chrono::NaiveDate,
    pub amount_minor: i64,
    pub currency: String,
}

impl KpiConfig {
    /// (field, message, example) for each value out of bounds.
    pub fn problems(&self) -> Vec<(String, String, &'static str)> {
        let mut out = Vec::new();
        const EXAMPLE: &str = "kpi:\n  gross_margin: 0.8\n  spend:\n    - { from: 2026-01-01, to: 2026-02-01, amount_minor: 2500000, currency: USD }";
        if let Some(m) = self.gross_margin.filter(|m| !(*m > 0.0 && *m <= 1.0)) {
            out.push((
                "gross_margin".into(),
                format!("{m} is not a fraction in (0, 1] (0.8 means 80 %)"),
                EXAMPLE,
            ));
        }
        for (i, s) in self.spend.iter().enumerate() {
            if s.from >= s.to {
                out.push((
                    format!("spend[{i}]"),
                    format!("from {} is not before to {}", s.from, s.to),
                    EXAMPLE,
                ));
            }
            if s.amount_minor < 0 {
                out.push((
                    format!("spend[{i}].amount_minor"),
                    format!("{} is negative", s.amount_minor),
                    EXAMPLE,
                ));
            }
            if s.currency.len() != 3 || !s.currency.chars().all(|c| c.is_ascii_alphabetic()) {
                out.push((
                    format!("spend[{i}].currency"),
                    format!("`{}` is not an ISO 4217 code", s.currency),
                    EXAMPLE,
                ));
            }
        }
        out
    }
}

/// Alerts (`alerts:` in revsync.yaml): a Slack-compatible `{"text": ...}` POST when a
/// connector's authentication fails, it is paused (quota), its dead letters pass a
/// threshold or its lag does, and again when that is over.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Where to POST; none: no alerts. Often holds a token (Slack): a secret.
    #[serde(default)]
    pub webhook_url: Option<Secret>,
    /// Alert when a connector's dead letters are more than this.
    #[serde(default)]
    pub dead_letters_over: u64,
    /// Alert when a connector has not read successfully for longer than this.
    #[serde(default = "default_lag_over_secs")]
    pub lag_over_secs: u64,
    /// How often states are looked at.
    #[serde(default = "default_alert_check_secs")]
    pub check_interval_secs: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            dead_letters_over: 0,
            lag_over_secs: default_lag_over_secs(),
            check_interval_secs: default_alert_check_secs(),
        }
    }
}

fn default_lag_over_secs() -> u64 {
    1800
}

fn default_alert_check_secs() -> u64 {
    30
}

/// `retry:`: one failing item (a push, a webhook event group) is tried again with
/// exponential back-off and jitter, at most `max_attempts` times, then it moves to the
/// dead-letter queue with its last error. Rate limits and pauses do not count: they are
/// the system's, not the item's.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(default = "default_retry_max_attempts")]
    pub max_attempts: u32,
    /// The first wait; each later one doubles, up to `max_delay_secs`.
    #[serde(default = "default_retry_min_delay_ms")]
    pub min_delay_ms: u64,
    #[serde(default = "default_retry_max_delay_secs")]
    pub max_delay_secs: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: default_retry_max_attempts(),
            min_delay_ms: default_retry_min_delay_ms(),
            max_delay_secs: default_retry_max_delay_secs(),
        }
    }
}

/// `retry.max_attempts` bounds.
pub const RETRY_MAX_ATTEMPTS_RANGE: std::ops::RangeInclusive<u32> = 1..=1000;

/// With the default delays, about 4 to 8 hours of failing: an outage of a few hours
/// dead-letters nothing, a poison item is parked within a working day.
fn default_retry_max_attempts() -> u32 {
    20
}
fn default_retry_min_delay_ms() -> u64 {
    1000
}
fn default_retry_max_delay_secs() -> u64 {
    3600
}

/// `retention:`: bounds on data that would otherwise only grow. Pruning runs in the
/// background, in bounded batches, every `prune_interval_secs`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// How long an accepted webhook's id is remembered to refuse its redelivery. Longer
    /// than every vendor's retry window (Stripe retries for up to 3 days).
    #[serde(default = "default_webhook_seen_ttl_secs")]
    pub webhook_seen_ttl_secs: u64,
    /// The newest audit entries kept per record (the audit is the records' value history:
    /// ADR 0019).
    #[serde(default = "default_audit_max_entries_per_record")]
    pub audit_max_entries_per_record: u64,
    /// Audit entries older than this many days are dropped; 0 keeps them for ever.
    #[serde(default)]
    pub audit_max_age_days: u64,
    #[serde(default = "default_prune_interval_secs")]
    pub prune_interval_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            webhook_seen_ttl_secs: default_webhook_seen_ttl_secs(),
            audit_max_entries_per_record: default_audit_max_entries_per_record(),
            audit_max_age_days: 0,
            prune_interval_secs: default_prune_interval_secs(),
        }
    }
}

/// The shortest webhook id memory accepted: 4 days, a day beyond Stripe's 3-day retries.
pub const MIN_WEBHOOK_SEEN_TTL_SECS: u64 = 4 * 86_400;

impl RetentionConfig {
    /// Each out-of-range value as (field under `retention.`, message, valid example).
    pub fn problems(&self) -> Vec<(&'static str, String, &'static str)> {
        let mut out = Vec::new();
        if !(MIN_WEBHOOK_SEEN_TTL_SECS..=365 * 86_400).contains(&self.webhook_seen_ttl_secs) {
            out.push((
                "webhook_seen_ttl_secs",
                format!(
                    "{} is outside {MIN_WEBHOOK_SEEN_TTL_SECS}..=31536000 seconds (4 to 365 days): shorter than a vendor's retry window lets a redelivered event apply twice",
                    self.webhook_seen_ttl_secs
                ),
                "retention:\n  webhook_seen_ttl_secs: 604800",
            ));
        }
        if self.audit_max_entries_per_record == 0 {
            out.push((
                "audit_max_entries_per_record",
                "must be at least 1".into(),
                "retention:\n  audit_max_entries_per_record: 10000",
            ));
        }
        if !(1..=86_400).contains(&self.prune_interval_secs) {
            out.push((
                "prune_interval_secs",
                format!("{} is outside 1..=86400 seconds", self.prune_interval_secs),
                "retention:\n  prune_interval_secs: 3600",
            ));
        }
        out
    }
}

fn default_webhook_seen_ttl_secs() -> u64 {
    7 * 86_400
}
fn default_audit_max_entries_per_record() -> u64 {
    10_000
}
fn default_prune_interval_secs() -> u64 {
    3600
}

/// A merge rule under `merge:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeRuleConfig {
    #[serde(default)]
    pub policy: Option<PolicyName>,
    /// Connector ids, most trusted first (implies `policy: priority`). `Some(empty)` is
    /// a mistake `check` reports, so it is kept apart from an absent key.
    #[serde(default)]
    pub priority: Option<Vec<String>>,
    /// Let an empty value overwrite a non-empty one.
    #[serde(default)]
    pub allow_empty: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PolicyName {
    Newest,
    Priority,
    FirstNonEmpty,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            version: default_version(),
            server: ServerConfig::default(),
            store: StoreConfig::default(),
            log: LogConfig::default(),
            shutdown_timeout_secs: default_shutdown_timeout_secs(),
            merge: BTreeMap::new(),
            retention: RetentionConfig::default(),
            retry: RetryConfig::default(),
            alerts: AlertsConfig::default(),
            kpi: KpiConfig::default(),
            identity: IdentityConfig::default(),
            quality: QualityConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Loopback by default: exposing the daemon is an explicit decision.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Bearer token required by admin and record endpoints; `${REVSYNC_ADMIN_TOKEN}`
    /// typically. Without one the daemon generates a token at first start and keeps it
    /// in `store.path/admin_token` (mode 0600).
    #[serde(default)]
    pub admin_token: Option<Secret>,
    /// A second token that reads everything the admin token reads (console, `/records`,
    /// `/kpi`, dead letters) and changes nothing: for analysts and dashboards.
    #[serde(default)]
    pub read_only_token: Option<Secret>,
    /// Set by `revsync run --insecure-no-auth` only, never from a file: anyone who reaches
    /// the port becomes an operator.
    #[serde(skip)]
    pub insecure_no_auth: bool,
    /// Whether `/status` and `/metrics` need the token. Unset: public while `listen` is a
    /// loopback address (local probes and `curl` work), token otherwise.
    #[serde(default)]
    pub status_auth: Option<StatusAuth>,
    /// Host names (no port) the operator API answers to besides `localhost`, IP
    /// literals and `public_url`'s host: a name a browser was tricked into resolving to
    /// this daemon (DNS rebinding) is refused.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Largest accepted request body (webhooks), in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// A client must send its whole request head within this time, or is disconnected.
    #[serde(default = "default_header_read_timeout_secs")]
    pub header_read_timeout_secs: u64,
    /// A connection on which no byte moves for this long is closed.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// Connections served at once; further ones wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// The URL senders use to reach this daemon (behind a proxy or load balancer), e.g.
    /// `https://revsync.example.com`: some webhook signatures cover the full URL.
    #[serde(default)]
    pub public_url: Option<String>,
}

/// `server.status_auth`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StatusAuth {
    Public,
    Token,
}

impl ServerConfig {
    /// Whether `/status` and `/metrics` answer without the token.
    pub fn status_is_public(&self) -> bool {
        match self.status_auth {
            Some(StatusAuth::Public) => true,
            Some(StatusAuth::Token) => false,
            None => self.listen.ip().is_loopback(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            admin_token: None,
            read_only_token: None,
            insecure_no_auth: false,
            status_auth: None,
            allowed_hosts: Vec::new(),
            max_body_bytes: default_max_body_bytes(),
            header_read_timeout_secs: default_header_read_timeout_secs(),
            idle_timeout_secs: default_idle_timeout_secs(),
            max_connections: default_max_connections(),
            public_url: None,
        }
    }
}

/// Where the canonical store lives (ADR 0052).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// Embedded, in `store.path`: nothing to install.
    #[default]
    Sled,
    /// A PostgreSQL database at `store.url`, shared by every replica.
    Postgres,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default)]
    pub kind: StoreKind,
    /// `kind: postgres`: the connection URL (`postgres://user:password@host:5432/db`), a
    /// secret: usually `${DATABASE_URL}`.
    #[serde(default)]
    pub url: Option<Secret>,
    /// `kind: postgres`: connections the pool keeps at most.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Data directory, relative to the working directory unless absolute: the sled store,
    /// and the admin token file whatever the kind.
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
    /// Background flush interval; durable acknowledgements flush explicitly anyway.
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// sled's page cache, in MiB.
    #[serde(default = "default_cache_mb")]
    pub cache_mb: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::Sled,
            url: None,
            pool_size: default_pool_size(),
            path: default_store_path(),
            flush_interval_ms: default_flush_interval_ms(),
            cache_mb: default_cache_mb(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    /// As written in revsync.yaml.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter (`info`, `revsync=debug,info`); `RUST_LOG` wins when set.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: default_log_level(),
        }
    }
}

fn default_version() -> u32 {
    1
}
fn default_shutdown_timeout_secs() -> u64 {
    30
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_body_bytes() -> usize {
    1024 * 1024
}
fn default_header_read_timeout_secs() -> u64 {
    10
}
fn default_idle_timeout_secs() -> u64 {
    60
}
fn default_max_connections() -> usize {
    512
}
fn default_store_path() -> PathBuf {
    PathBuf::from("data")
}
fn default_flush_interval_ms() -> u64 {
    500
}
fn default_cache_mb() -> u64 {
    256
}
fn default_pool_size() -> usize {
    8
}
fn default_log_level() -> String {
    "info".to_owned()
}

/// One value outside its bounds: the field path, what is wrong, a valid example.
pub struct OutOfBounds {
    pub field: &'static str,
    pub message: String,
    pub example: &'static str,
}

impl DaemonConfig {
    /// Limits that would crash the daemon at start (sled panics on a zero cache) or make
    /// it useless (a zero body limit refuses every webhook): checked with no IO.
    pub fn out_of_bounds(&self) -> Vec<OutOfBounds> {
        let mut out = Vec::new();
        let mut range = |field, value: u64, min: u64, max: u64, unit: &str, example| {
            if !(min..=max).contains(&value) {
                out.push(OutOfBounds {
                    field,
                    message: format!("{value} is outside {min}..={max} {unit}"),
                    example,
                });
            }
        };
        let s = &self.server;
        range(
            "store.cache_mb",
            self.store.cache_mb,
            MIN_CACHE_MB,
            1024 * 1024,
            "MiB",
            "store:\n  cache_mb: 256",
        );
        range(
            "server.max_body_bytes",
            u64::try_from(s.max_body_bytes).unwrap_or(u64::MAX),
            1,
            1024 * 1024 * 1024,
            "bytes",
            "server:\n  max_body_bytes: 1048576",
        );
        range(
            "server.header_read_timeout_secs",
            s.header_read_timeout_secs,
            1,
            300,
            "seconds",
            "server:\n  header_read_timeout_secs: 10",
        );
        range(
            "server.idle_timeout_secs",
            s.idle_timeout_secs,
            1,
            3600,
            "seconds",
            "server:\n  idle_timeout_secs: 60",
        );
        range(
            "server.max_connections",
            u64::try_from(s.max_connections).unwrap_or(u64::MAX),
            1,
            65536,
            "connections",
            "server:\n  max_connections: 512",
        );
        range(
            "store.pool_size",
            u64::try_from(self.store.pool_size).unwrap_or(u64::MAX),
            1,
            1000,
            "connections",
            "store:\n  pool_size: 8",
        );
        match (&self.store.kind, &self.store.url) {
            (StoreKind::Postgres, None) => out.push(OutOfBounds {
                field: "store.url",
                message: "is required with `kind: postgres`".to_owned(),
                example: "store:\n  kind: postgres\n  url: ${DATABASE_URL}",
            }),
            (StoreKind::Postgres, Some(url)) => {
                if let Err(e) = crate::store::pg_url(url.expose()) {
                    out.push(OutOfBounds {
                        field: "store.url",
                        message: e,
                        example:
                            "store:\n  kind: postgres\n  url: postgres://revsync@db:5432/revsync",
                    });
                }
            }
            (StoreKind::Sled, Some(_)) => out.push(OutOfBounds {
                field: "store.url",
                message: "is only read with `kind: postgres`; the sled store lives in `store.path`"
                    .to_owned(),
                example: "store:\n  kind: postgres\n  url: ${DATABASE_URL}",
            }),
            (StoreKind::Sled, None) => {}
        }
        if self.store.path.as_os_str().is_empty() {
            out.push(OutOfBounds {
                field: "store.path",
                message: "is empty: the store would be written into the working directory"
                    .to_owned(),
                example: "store:\n  path: /var/lib/revsync",
            });
        }
        if let Some(t) = &s.admin_token {
            if t.expose().trim().is_empty() || t.expose().chars().any(char::is_whitespace) {
                out.push(OutOfBounds {
                    field: "server.admin_token",
                    message: "is empty or contains whitespace".to_owned(),
                    example: "server:\n  admin_token: ${REVSYNC_ADMIN_TOKEN}",
                });
            }
        }
        let code = |c: &str| c.len() == 3 && c.chars().all(|ch| ch.is_ascii_alphabetic());
        if let Some(c) = &self.kpi.reporting_currency {
            if !code(c) {
                out.push(OutOfBounds {
                    field: "kpi.reporting_currency",
                    message: format!("`{c}` is not an ISO 4217 currency code"),
                    example: "kpi:\n  reporting_currency: USD",
                });
            }
        }
        for (c, rate) in &self.kpi.rates {
            if !code(c) || !rate.is_finite() || *rate <= 0.0 || *rate > 1e9 {
                out.push(OutOfBounds {
                    field: "kpi.rates",
                    message: format!("`{c}: {rate}` is not a currency code with a positive rate"),
                    example: "kpi:\n  reporting_currency: USD\n  rates: { EUR: 1.08, GBP: 1.27 }",
                });
            }
        }
        if !self.kpi.rates.is_empty() && self.kpi.reporting_currency.is_none() {
            out.push(OutOfBounds {
                field: "kpi.rates",
                message: "rates need kpi.reporting_currency, the currency they convert into"
                    .to_owned(),
                example: "kpi:\n  reporting_currency: USD\n  rates: { EUR: 1.08 }",
            });
        }
        if let Some(t) = &s.read_only_token {
            if t.expose().trim().is_empty() || t.expose().chars().any(char::is_whitespace) {
                out.push(OutOfBounds {
                    field: "server.read_only_token",
                    message: "is empty or contains whitespace".to_owned(),
                    example: "server:\n  read_only_token: ${REVSYNC_READ_ONLY_TOKEN}",
                });
            } else if s
                .admin_token
                .as_ref()
                .is_some_and(|a| a.expose() == t.expose())
            {
                out.push(OutOfBounds {
                    field: "server.read_only_token",
                    message: "is the admin token: a reader would be an admin".to_owned(),
                    example: "server:\n  read_only_token: ${REVSYNC_READ_ONLY_TOKEN}",
                });
            }
        }
        for h in &s.allowed_hosts {
            let bad = h.trim().is_empty() || h.contains([':', '/', '@', ' ']);
            if bad {
                out.push(OutOfBounds {
                    field: "server.allowed_hosts",
                    message: format!("`{h}` is not a host name (no scheme, port or path)"),
                    example: "server:\n  allowed_hosts: [revsync.internal]",
                });
            }
        }
        if let Some(u) = &s.public_url {
            let ok = url::Url::parse(u)
                .is_ok_and(|p| matches!(p.scheme(), "http" | "https") && p.host_str().is_some());
            if !ok {
                out.push(OutOfBounds {
                    field: "server.public_url",
                    message: format!("`{u}` is not an http(s) URL with a host"),
                    example: "server:\n  public_url: https://revsync.example.com",
                });
            }
        }
        out
    }
}

/// sled splits its cache into shards; below a few MiB it does not open reliably.
pub const MIN_CACHE_MB: u64 = 8;

/// Top-level keys of `revsync.yaml`; environment overrides must start with one.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "version",
    "server",
    "store",
    "log",
    "shutdown_timeout_secs",
    "merge",
    "retention",
    "retry",
    "alerts",
    "kpi",
    "identity",
    "quality",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_public_by_default_only_on_loopback() {
        let mut s = ServerConfig::default();
        assert!(s.status_is_public());
        s.listen = SocketAddr::from(([0, 0, 0, 0], 8080));
        assert!(!s.status_is_public());
        s.status_auth = Some(StatusAuth::Public);
        assert!(s.status_is_public());
        s.listen = default_listen();
        s.status_auth = Some(StatusAuth::Token);
        assert!(!s.status_is_public());
    }
}
