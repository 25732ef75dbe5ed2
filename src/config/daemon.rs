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
    /// How a failing push or webhook event is retried before it is dead-lettered.
    #[serde(default)]
    pub retry: RetryConfig,
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

/// A merge rule under `merge:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeRuleConfig {
    #[serde(default)]
    pub policy: Option<PolicyName>,
    /// Connector ids, most trusted first (implies `policy: priority`).
    #[serde(default)]
    pub priority: Vec<String>,
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
            retry: RetryConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Loopback by default: exposing the daemon is an explicit decision.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Bearer token required by admin endpoints; `${REVSYNC_ADMIN_TOKEN}` typically.
    #[serde(default)]
    pub admin_token: Option<Secret>,
    /// Largest accepted request body (webhooks), in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// The URL senders use to reach this daemon (behind a proxy or load balancer), e.g.
    /// `https://revsync.example.com`: some webhook signatures cover the full URL.
    #[serde(default)]
    pub public_url: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            admin_token: None,
            max_body_bytes: default_max_body_bytes(),
            public_url: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Data directory, relative to the working directory unless absolute.
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
fn default_store_path() -> PathBuf {
    PathBuf::from("data")
}
fn default_flush_interval_ms() -> u64 {
    500
}
fn default_cache_mb() -> u64 {
    256
}
fn default_log_level() -> String {
    "info".to_owned()
}

/// Top-level keys of `revsync.yaml`; environment overrides must start with one.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "version",
    "server",
    "store",
    "log",
    "shutdown_timeout_secs",
    "merge",
    "retry",
];
