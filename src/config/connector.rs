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
    /// Read as usual, write nothing: what would be written waits in the outbox (shown on
    /// `/status`) and goes out once this is turned off.
    pub dry_run: bool,
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
    /// Which records sync: conditions on source fields, all of which must hold. Applied to
    /// what is read (a record outside it is not brought in) and to what would be written
    /// (for the fields the mapping writes: a record outside it is not pushed here).
    #[serde(default)]
    pub filter: BTreeMap<String, Condition>,
    /// The field that identifies a record, for connector types whose objects the file
    /// names (a CSV file's key column); other types know their systems' ids.
    #[serde(default)]
    pub key: Option<String>,
    /// Which records revsync creates here, as conditions on canonical fields (`custom.*`
    /// too), all of which must hold. A record it does not create here may be created by the
    /// connector's next object of the kind (Salesforce: leads as a Lead, the rest as a
    /// Contact); copies already linked are updated whatever it says.
    #[serde(default)]
    pub create_when: BTreeMap<String, Condition>,
}

impl ObjectConfig {
    /// What the connector is told of this object.
    pub fn decl(&self) -> revsync_sdk::ObjectDecl {
        revsync_sdk::ObjectDecl {
            kind: self.kind,
            key: self.key.clone(),
            read: self.direction != Direction::Out,
            write: self.direction != Direction::In,
        }
    }
}

/// One condition of an object's `filter:` on a source field (a dotted path reads nested
/// objects). Text compares trimmed and without regard to case; numbers and true/false as
/// written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// The value is one of these.
    #[serde(default, rename = "in")]
    pub any_of: Option<Vec<serde_json::Value>>,
    /// The value is none of these (an absent value is none of them).
    #[serde(default)]
    pub not_in: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub equals: Option<serde_json::Value>,
    #[serde(default)]
    pub not_equals: Option<serde_json::Value>,
    /// The field has a value (`true`) or is empty or absent (`false`).
    #[serde(default)]
    pub exists: Option<bool>,
}

impl Condition {
    /// Whether any operator is given: a condition that names none is a mistake.
    pub fn is_empty(&self) -> bool {
        self.any_of.is_none()
            && self.not_in.is_none()
            && self.equals.is_none()
            && self.not_equals.is_none()
            && self.exists.is_none()
    }

    /// Whether `value` (absent: `None`) meets every operator given.
    pub fn holds(&self, value: Option<&serde_json::Value>) -> bool {
        let v = value.and_then(comparable);
        let is = |x: &serde_json::Value| v.is_some() && comparable(x) == v;
        self.exists.is_none_or(|e| e == v.is_some())
            && self.equals.as_ref().is_none_or(is)
            && self.not_equals.as_ref().is_none_or(|x| !is(x))
            && self.any_of.as_ref().is_none_or(|xs| xs.iter().any(is))
            && self.not_in.as_ref().is_none_or(|xs| !xs.iter().any(is))
    }
}

/// A filter value as compared: text trimmed and lowercased, other scalars as written;
/// null and empty text are no value.
fn comparable(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) if s.trim().is_empty() => None,
        serde_json::Value::String(s) => Some(s.trim().to_lowercase()),
        other => Some(other.to_string()),
    }
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
    "dry_run",
];

/// Poll interval bounds: at least a second, at most a day.
pub const INTERVAL_SECS_RANGE: std::ops::RangeInclusive<u64> = 1..=86_400;

/// Longest `rate_limit.per_secs` window: a day.
pub const RATE_LIMIT_MAX_PER_SECS: u64 = 86_400;

/// Largest `http.max_response_bytes`: 1 GiB, like the server's own body cap.
pub const MAX_RESPONSE_BYTES_CAP: u64 = 1 << 30;

#[cfg(test)]
mod filter_tests {
    use super::*;
    use serde_json::json;

    fn cond(v: serde_json::Value) -> Condition {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn conditions_compare_text_trimmed_and_caseless_and_absent_values_as_none() {
        let c = cond(json!({"in": ["customer", "opportunity"]}));
        assert!(c.holds(Some(&json!(" Customer "))));
        assert!(!c.holds(Some(&json!("lead"))));
        assert!(!c.holds(None));
        let c = cond(json!({"not_in": ["lead"]}));
        assert!(c.holds(None) && c.holds(Some(&json!("customer"))));
        assert!(!c.holds(Some(&json!("LEAD"))));
        assert!(cond(json!({"exists": true})).holds(Some(&json!(5))));
        assert!(!cond(json!({"exists": true})).holds(Some(&json!(""))));
        assert!(cond(json!({"exists": false})).holds(Some(&json!(null))));
        assert!(cond(json!({"equals": 5})).holds(Some(&json!(5))));
        assert!(!cond(json!({"not_equals": true})).holds(Some(&json!(true))));
        assert!(cond(json!({})).is_empty());
        assert!(serde_json::from_value::<Condition>(json!({"within": [1]})).is_err());
    }
}
