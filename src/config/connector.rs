//! A connector file (`connectors/*.yaml`): the sections common to every connector.
//! `params:` belongs to the connector type and is validated by it.

use std::collections::BTreeMap;

use revsync_sdk::Kind;
use serde::Deserialize;

#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    pub version: u32,
    pub id: String,
    pub type_name: String,
    pub enabled: bool,
    pub poll: PollConfig,
    pub objects: BTreeMap<String, ObjectConfig>,
    pub deletes: DeletePolicy,
    /// Country of numbers written without a country code (ISO 3166 alpha-2), so
    /// `(415) 867-5309` reads as +14158675309. Without it such numbers stay as written.
    pub phone_region: Option<String>,
    /// Overrides of the API's documented rate limit (a lower plan, a shared account).
    pub rate_limit: revsync_sdk::http::RateLimitConfig,
    /// The `http:` section: bounds on what the API's answers may make the daemon hold.
    pub http: revsync_sdk::http::HttpConfig,
    /// Raw `params:` with secrets interpolated; the connector type parses it.
    pub params: serde_json::Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollConfig {
    #[serde(default = "default_interval_secs")]
    pub interval_secs: u64,
    /// Random spread added to each interval, in percent, so connectors don't poll in lockstep.
    #[serde(default = "default_jitter_pct")]
    pub jitter_pct: u8,
}

impl Default for PollConfig {
    fn default() -> Self {
        Self {
            interval_secs: default_interval_secs(),
            jitter_pct: default_jitter_pct(),
        }
    }
}

fn default_interval_secs() -> u64 {
    60
}
fn default_jitter_pct() -> u8 {
    10
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    In,
    Out,
    #[default]
    Both,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
            Direction::Both => "both",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectConfig {
    pub kind: Kind,
    #[serde(default)]
    pub direction: Direction,
    /// Source field -> canonical field (or a mapping with transforms); checked
    /// against the canonical model by the engine's mapping compiler.
    #[serde(default)]
    pub fields: BTreeMap<String, serde_json::Value>,
}

/// What a delete in the source system does to the canonical record.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeletePolicy {
    /// Drop the link, keep the record everywhere else.
    #[default]
    Ignore,
    /// Drop the link and mark the canonical record archived.
    Archive,
    /// Delete the record in every other system that holds it.
    Propagate,
}

impl DeletePolicy {
    /// As written in a connector file.
    pub fn as_str(self) -> &'static str {
        match self {
            DeletePolicy::Ignore => "ignore",
            DeletePolicy::Archive => "archive",
            DeletePolicy::Propagate => "propagate",
        }
    }
}

/// Top-level keys of a connector file.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "version",
    "id",
    "type",
    "enabled",
    "poll",
    "objects",
    "deletes",
    "phone_region",
    "rate_limit",
    "http",
    "params",
];

/// Poll interval bounds: at least a second, at most a day.
pub const INTERVAL_SECS_RANGE: std::ops::RangeInclusive<u64> = 1..=86_400;

/// Longest `rate_limit.per_secs` window: a day.
pub const RATE_LIMIT_MAX_PER_SECS: u64 = 86_400;

/// Largest `http.max_response_bytes`: 1 GiB, like the server's own body cap.
pub const MAX_RESPONSE_BYTES_CAP: u64 = 1 << 30;
