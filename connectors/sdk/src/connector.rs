//! What a connector type tells the daemon about itself.
//!
//! The daemon's registry holds one [`ConnectorType`] per compiled-in system. At
//! start-up (and in `revsync check`) the daemon hands each connector file's
//! `params:` section to its type, which deserializes it into its own typed struct
//! and reports every problem with a field path, before any IO happens.

use crate::model::Kind;

/// A problem in a connector's `params:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    /// Dotted path below `params`, e.g. `tier` or `oauth.token_url`.
    pub path: String,
    pub message: String,
    /// A valid example for the field, shown to the operator.
    pub example: Option<String>,
}

impl ParamError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            example: None,
        }
    }

    pub fn with_example(mut self, example: impl Into<String>) -> Self {
        self.example = Some(example.into());
        self
    }

    /// `(path, message)` of each error, the shape tests compare.
    pub fn pairs(errors: &[ParamError]) -> Vec<(&str, &str)> {
        errors
            .iter()
            .map(|e| (e.path.as_str(), e.message.as_str()))
            .collect()
    }
}

/// A kind of connector (`type:` in a connector file).
pub trait ConnectorType: Send + Sync + 'static {
    /// The value of `type:` that selects this connector.
    fn name(&self) -> &'static str;

    /// The objects this system exposes and the canonical kind each maps to by default.
    fn objects(&self) -> &'static [(&'static str, Kind)];

    /// Check `params:` (secrets already interpolated) without any IO.
    fn validate_params(&self, params: &serde_json::Value) -> Result<(), Vec<ParamError>>;

    /// A minimal valid `params:` block, shown when validation fails.
    fn params_example(&self) -> &'static str;

    /// Source fields the system refuses a create of `object` without (Salesforce's
    /// `LastName` and `Company` on a Lead): `check` requires each to be mapped for writing
    /// or given a `default:` wherever revsync may create there.
    fn required_for_create(&self, _object: &str) -> &'static [&'static str] {
        &[]
    }

    /// Whether the connector file names this type's objects (`type: csv`: one file per
    /// object, any name) instead of choosing among [`ConnectorType::objects`]. Such objects
    /// may declare a `key:` column, and carry no default mapping.
    fn open_objects(&self) -> bool {
        false
    }

    /// Check one object of the file against `params`, which may hold errors of their own
    /// (only for [`ConnectorType::open_objects`]); each error's path is below
    /// `objects.<name>`.
    fn validate_object(
        &self,
        params: &serde_json::Value,
        name: &str,
        object: &ObjectDecl,
    ) -> Vec<ParamError> {
        let _ = (params, name, object);
        Vec::new()
    }

    /// Build the running connector from validated params. `None`: this build has no API
    /// client for the type yet; it is validated and shown on `/status` but does not sync.
    fn build(
        &self,
        ctx: &BuildContext<'_>,
    ) -> Option<Result<std::sync::Arc<dyn crate::sync::Connector>, crate::error::ConnectorError>>
    {
        let _ = ctx;
        None
    }
}

/// What a connector is built from.
#[derive(Debug, Clone)]
pub struct BuildContext<'a> {
    /// The connector's `id:`.
    pub id: &'a str,
    /// `params:`, secrets interpolated, already validated by `validate_params`.
    pub params: &'a serde_json::Value,
    /// The file's `rate_limit:` section: overrides of the API's documented limit
    /// (`ctx.rate_limit.resolve(documented)`).
    pub rate_limit: &'a crate::http::RateLimitConfig,
    /// The file's `http:` section (`ctx.http.max_response_bytes()` for the body cap).
    pub http: &'a crate::http::HttpConfig,
    /// Per object, the source fields the YAML mapping reads or writes (top-level names), so
    /// a connector that must name its fields (SOQL) selects what the mapping needs.
    pub mapped_fields: &'a std::collections::BTreeMap<String, Vec<String>>,
    /// The objects the connector file declares, with what the daemon will do with each.
    pub objects: &'a std::collections::BTreeMap<String, ObjectDecl>,
    /// The daemon's shutdown: every API client the connector builds takes it
    /// (`ApiClient::with_shutdown`), and so does any wait of the connector's own.
    pub shutdown: crate::shutdown::Shutdown,
}

/// One object of a connector file, as the connector is told of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectDecl {
    pub kind: Kind,
    /// The field that identifies a record (`key:`; only for [`ConnectorType::open_objects`]).
    pub key: Option<String>,
    /// The daemon reads it (`direction` is `in` or `both`).
    pub read: bool,
    /// The daemon may write it (`direction` is `out` or `both`).
    pub write: bool,
}

/// Deserialize `params` into `T` and turn a serde failure into a [`ParamError`]
/// carrying the failing field's path.
pub fn parse_params<T: serde::de::DeserializeOwned>(
    params: &serde_json::Value,
) -> Result<T, ParamError> {
    serde_path_to_error::deserialize(params).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ParamError::new(path, e.into_inner().to_string())
    })
}

/// `Ok(value)` when no error was collected, otherwise every error.
pub fn collected<T>(value: T, errors: Vec<ParamError>) -> Result<T, Vec<ParamError>> {
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(errors)
    }
}

/// A duration or size param outside `range`: bounded so that no use of it can overflow a
/// clock (`Instant + d`, `x * 1000`) however large the operator's number (issue 25).
pub fn check_range(
    path: &str,
    value: u64,
    range: std::ops::RangeInclusive<u64>,
    unit: &str,
    example: &str,
) -> Option<ParamError> {
    (!range.contains(&value)).then(|| {
        ParamError::new(
            path,
            format!(
                "{value} is outside {}..={} {unit}",
                range.start(),
                range.end()
            ),
        )
        .with_example(format!("{path}: {example}"))
    })
}

/// Longest per-request timeout a connector accepts: an hour.
pub const TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u64> = 1..=3_600_000;

/// `timeout_ms`, which every connector has, within [`TIMEOUT_MS_RANGE`].
pub fn check_timeout_ms(value: u64, example: &str) -> Option<ParamError> {
    check_range(
        "timeout_ms",
        value,
        TIMEOUT_MS_RANGE,
        "milliseconds",
        example,
    )
}

/// Longest clock window (overlap, tolerance, recheck, job timeout) a param may set: a day.
pub const MAX_WINDOW_SECS: u64 = 86_400;

/// Check that a configured base URL is absolute http(s) with no trailing slash
/// issues, so a typo is reported at `check` time rather than on the first request.
pub fn check_base_url(path: &str, url: &str) -> Result<(), ParamError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') && !host.contains(' ') => Ok(()),
        _ => Err(
            ParamError::new(path, format!("`{url}` is not an absolute http(s) URL"))
                .with_example(format!("{path}: https://api.example.com")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_must_be_absolute_http() {
        assert!(check_base_url("base_url", "https://api.hubapi.com").is_ok());
        assert!(check_base_url("base_url", "http://127.0.0.1:9000").is_ok());
        let e = check_base_url("base_url", "api.hubapi.com").unwrap_err();
        assert_eq!(e.path, "base_url");
        assert!(e.message.contains("not an absolute"), "{}", e.message);
        assert!(check_base_url("base_url", "https://").is_err());
    }

    #[test]
    fn parse_params_reports_the_failing_path() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct P {
            inner: Inner,
        }
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Inner {
            n: u32,
        }
        let e = parse_params::<P>(&serde_json::json!({"inner": {"n": "x"}})).unwrap_err();
        assert_eq!(e.path, "inner.n");
    }
}
