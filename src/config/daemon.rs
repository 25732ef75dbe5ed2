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
        if let Some(t) = &s.admin_token {
            if t.expose().trim().is_empty() || t.expose().chars().any(char::is_whitespace) {
                out.push(OutOfBounds {
                    field: "server.admin_token",
                    message: "is empty or contains whitespace".to_owned(),
                    example: "server:\n  admin_token: ${REVSYNC_ADMIN_TOKEN}",
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
