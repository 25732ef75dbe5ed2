//! `params:` of a HubSpot connector file.

use revsync_sdk::{
    check_base_url, check_range, check_timeout_ms, collected, parse_params, ParamError, Secret,
    MAX_WINDOW_SECS,
};
use serde::Deserialize;

/// The HubSpot subscription tier, which sets the documented burst limit
/// (API_FACTS 1.4: Free/Starter 100 per 10 s, Professional/Enterprise 190 per 10 s).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Free,
    Starter,
    #[default]
    Professional,
    Enterprise,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSpotParams {
    /// Private app token, sent as `Authorization: Bearer`.
    pub token: Secret,
    #[serde(default)]
    pub tier: Tier,
    /// Number of purchased API limit increases (0 to 2): each raises the burst to 250 per 10 s.
    #[serde(default)]
    pub api_limit_increases: u8,
    /// The app's client secret, needed to verify v3 webhook signatures.
    #[serde(default)]
    pub client_secret: Option<Secret>,
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The HubSpot account id (Settings > Account details), only for links from the
    /// console to each record in HubSpot.
    #[serde(default)]
    pub portal_id: Option<u64>,
    /// A custom unique-value property (created by the operator in every object) that holds
    /// revsync's canonical id: creates upsert on it, so a retried create never duplicates.
    #[serde(default = "default_canonical_id_property")]
    pub canonical_id_property: String,
    /// How far behind "now" the incremental cursor stays, because the search index lags
    /// writes by "a few moments" (API_FACTS 1.2, duration unstated).
    #[serde(default = "default_search_overlap_secs")]
    pub search_overlap_secs: u64,
    /// The search API's own budget (documented 5 per second per account).
    #[serde(default = "default_search_requests_per_sec")]
    pub search_requests_per_sec: u32,
    /// Search page size (documented maximum 200).
    #[serde(default = "default_search_page_size")]
    pub search_page_size: u32,
    /// The unit of a `Retry-After` header on a 429: unconfirmed [U] (HubSpot documents
    /// milliseconds only for workflow retries).
    #[serde(default)]
    pub retry_after_unit: RetryAfterUnit,
    /// When the daily quota resets, as minutes east of UTC of the account's midnight:
    /// unconfirmed [U]; the default assumes midnight UTC.
    #[serde(default)]
    pub daily_reset_utc_offset_mins: i32,
    /// Read the archived (recycle bin) list after each incremental pass to see deletions,
    /// which search never returns.
    #[serde(default = "default_true")]
    pub archived_sweep: bool,
    /// Per-request timeout.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

/// How a `Retry-After` value on a 429 is read.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RetryAfterUnit {
    #[default]
    Seconds,
    Milliseconds,
}

fn default_base_url() -> String {
    "https://api.hubapi.com".to_owned()
}

fn default_canonical_id_property() -> String {
    "revsync_id".to_owned()
}

fn default_search_overlap_secs() -> u64 {
    30
}

fn default_search_requests_per_sec() -> u32 {
    5
}

fn default_search_page_size() -> u32 {
    200
}

fn default_true() -> bool {
    true
}

fn default_timeout_ms() -> u64 {
    30_000
}

impl HubSpotParams {
    pub fn from_value(v: &serde_json::Value) -> Result<Self, Vec<ParamError>> {
        let p: Self = parse_params(v).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        if p.token.is_empty() {
            errors.push(
                ParamError::new("token", "must not be empty")
                    .with_example("token: ${HUBSPOT_TOKEN}"),
            );
        }
        if p.api_limit_increases > 2 {
            errors.push(
                ParamError::new(
                    "api_limit_increases",
                    format!(
                        "{} is more than HubSpot sells (at most 2)",
                        p.api_limit_increases
                    ),
                )
                .with_example("api_limit_increases: 1"),
            );
        }
        if p.canonical_id_property.trim().is_empty() {
            errors.push(
                ParamError::new("canonical_id_property", "must not be empty")
                    .with_example("canonical_id_property: revsync_id"),
            );
        }
        if p.search_requests_per_sec == 0 {
            errors.push(
                ParamError::new("search_requests_per_sec", "must be at least 1, got 0")
                    .with_example("search_requests_per_sec: 5"),
            );
        }
        if !(1..=200).contains(&p.search_page_size) {
            errors.push(
                ParamError::new(
                    "search_page_size",
                    format!(
                        "{} is outside 1..=200 (HubSpot's maximum)",
                        p.search_page_size
                    ),
                )
                .with_example("search_page_size: 200"),
            );
        }
        if p.daily_reset_utc_offset_mins.abs() > 14 * 60 {
            errors.push(
                ParamError::new(
                    "daily_reset_utc_offset_mins",
                    format!("{} is not a UTC offset", p.daily_reset_utc_offset_mins),
                )
                .with_example("daily_reset_utc_offset_mins: -300"),
            );
        }
        // Bounded so the overlap in milliseconds and `now - overlap` stay within a clock.
        errors.extend(check_range(
            "search_overlap_secs",
            p.search_overlap_secs,
            0..=MAX_WINDOW_SECS,
            "seconds",
            "30",
        ));
        errors.extend(check_timeout_ms(p.timeout_ms, "30000"));
        if let Err(e) = check_base_url("base_url", &p.base_url) {
            errors.push(e);
        }
        collected(p, errors)
    }

    /// Requests allowed per rolling 10 seconds, per the documented tier limits.
    pub fn burst_per_10s(&self) -> u32 {
        if self.api_limit_increases > 0 {
            return 250;
        }
        match self.tier {
            Tier::Free | Tier::Starter => 100,
            Tier::Professional | Tier::Enterprise => 190,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tier_sets_the_documented_burst() {
        let p = HubSpotParams::from_value(&json!({"token": "t", "tier": "starter"})).unwrap();
        assert_eq!(p.burst_per_10s(), 100);
        let p = HubSpotParams::from_value(&json!({"token": "t"})).unwrap();
        assert_eq!(p.burst_per_10s(), 190);
        let p =
            HubSpotParams::from_value(&json!({"token": "t", "api_limit_increases": 1})).unwrap();
        assert_eq!(p.burst_per_10s(), 250);
    }

    #[test]
    fn reports_bad_fields_by_path() {
        let e = HubSpotParams::from_value(&json!({"token": "t", "tier": "gold"})).unwrap_err();
        assert_eq!(e[0].path, "tier");
        let e =
            HubSpotParams::from_value(&json!({"token": "", "api_limit_increases": 5})).unwrap_err();
        let paths: Vec<_> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["token", "api_limit_increases"]);
    }

    #[test]
    fn clock_params_beyond_their_range_are_refused() {
        let e = HubSpotParams::from_value(
            &json!({"token": "t", "search_overlap_secs": u64::MAX, "timeout_ms": 0}),
        )
        .unwrap_err();
        assert_eq!(
            ParamError::pairs(&e),
            [
                (
                    "search_overlap_secs",
                    "18446744073709551615 is outside 0..=86400 seconds"
                ),
                ("timeout_ms", "0 is outside 1..=3600000 milliseconds"),
            ]
        );
    }
}
