//! `params:` of a Salesforce connector file.

use std::collections::BTreeMap;

use revsync_sdk::{
    check_base_url, check_range, check_timeout_ms, collected, parse_params, ParamError, Secret,
    MAX_WINDOW_SECS,
};
use serde::Deserialize;

/// OAuth 2.0 flow used to obtain an access token (API_FACTS 2.1).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "flow", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    RefreshToken {
        token_url: String,
        client_id: String,
        client_secret: Secret,
        refresh_token: Secret,
    },
    ClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: Secret,
    },
}

impl Auth {
    pub fn token_url(&self) -> &str {
        match self {
            Auth::RefreshToken { token_url, .. } | Auth::ClientCredentials { token_url, .. } => {
                token_url
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesforceParams {
    pub auth: Auth,
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// Share of the org's daily API allocation revsync never spends, in percent:
    /// other tools on the org need it too.
    #[serde(default = "default_daily_reserve_pct")]
    pub daily_reserve_pct: u8,
    /// External ID field (on every synced object) that holds revsync's canonical id,
    /// so creates are upserts and a retried create never duplicates.
    #[serde(default = "default_external_id_field")]
    pub external_id_field: String,
    /// Org id expected in Outbound Messages; others are rejected.
    #[serde(default)]
    pub organization_id: Option<String>,
    /// Once the reserve is reached, how long to wait before one call checks whether the
    /// org's usage fell (Salesforce gives no reset time: the window is a rolling 24 h).
    #[serde(default = "default_quota_recheck_secs")]
    pub quota_recheck_secs: u64,
    /// `LIMIT` of each incremental SOQL query: records per `fetch` page.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Once caught up, the next read starts this far before the newest record read.
    /// SystemModstamp has whole seconds, so a record written in an already-read second
    /// with a lower Id would be skipped; a long transaction's records carry the time it
    /// started and may commit after later ones were read. Re-read records change nothing.
    #[serde(default = "default_overlap_secs")]
    pub overlap_secs: u64,
    /// Read through `queryAll` so deletions (`IsDeleted`) are seen.
    #[serde(default = "default_true")]
    pub include_deleted: bool,
    /// The org has multi-currency enabled, so `CurrencyIsoCode` exists on Opportunity;
    /// selecting it in a single-currency org fails with INVALID_FIELD.
    #[serde(default = "default_true")]
    pub multi_currency: bool,
    /// Extra fields to select per object (custom fields named in the mapping), added to
    /// the default selection.
    #[serde(default)]
    pub fields: BTreeMap<String, Vec<String>>,
    /// Per-request timeout, from connect to the last byte of the answer. Generous: a
    /// 2,000-record query page or a 200-record collection write can take a while.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    120_000
}

fn default_quota_recheck_secs() -> u64 {
    900
}

fn default_overlap_secs() -> u64 {
    60
}

fn default_page_size() -> u32 {
    2000
}

fn default_true() -> bool {
    true
}

fn default_api_version() -> String {
    "v66.0".to_owned()
}

fn default_daily_reserve_pct() -> u8 {
    10
}

fn default_external_id_field() -> String {
    "Revsync_Id__c".to_owned()
}

impl SalesforceParams {
    pub fn from_value(v: &serde_json::Value) -> Result<Self, Vec<ParamError>> {
        let p: Self = parse_params(v).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        if let Err(e) = check_base_url("auth.token_url", p.auth.token_url()) {
            errors.push(e);
        }
        let v = p.api_version.strip_prefix('v').unwrap_or("");
        if v.split('.').count() != 2 || !v.split('.').all(|n| n.parse::<u32>().is_ok()) {
            errors.push(
                ParamError::new(
                    "api_version",
                    format!("`{}` is not a REST API version", p.api_version),
                )
                .with_example("api_version: v66.0"),
            );
        }
        if p.daily_reserve_pct >= 100 {
            errors.push(
                ParamError::new(
                    "daily_reserve_pct",
                    format!("{} leaves nothing to spend (0 to 99)", p.daily_reserve_pct),
                )
                .with_example("daily_reserve_pct: 10"),
            );
        }
        if !p.external_id_field.ends_with("__c") {
            errors.push(
                ParamError::new(
                    "external_id_field",
                    format!(
                        "`{}` is not a custom field (must end in __c)",
                        p.external_id_field
                    ),
                )
                .with_example("external_id_field: Revsync_Id__c"),
            );
        }
        if p.page_size == 0 || p.page_size > 50_000 {
            errors.push(
                ParamError::new(
                    "page_size",
                    format!("{} is not a page size (1 to 50000)", p.page_size),
                )
                .with_example("page_size: 2000"),
            );
        }
        // Bounded so `now + recheck` and `stamp - overlap` cannot overflow a clock.
        errors.extend(check_range(
            "quota_recheck_secs",
            p.quota_recheck_secs,
            1..=MAX_WINDOW_SECS,
            "seconds",
            "900",
        ));
        errors.extend(check_range(
            "overlap_secs",
            p.overlap_secs,
            0..=MAX_WINDOW_SECS,
            "seconds",
            "60",
        ));
        errors.extend(check_timeout_ms(p.timeout_ms, "120000"));
        for (object, fields) in &p.fields {
            if !crate::mapping::OBJECTS.contains(&object.as_str()) {
                errors.push(ParamError::new(
                    format!("fields.{object}"),
                    format!(
                        "unknown object `{object}`, expected one of: {}",
                        crate::mapping::OBJECTS.join(", ")
                    ),
                ));
            }
            for f in fields {
                if !crate::mapping::is_field_name(f) {
                    errors.push(ParamError::new(
                        format!("fields.{object}"),
                        format!("`{f}` is not a Salesforce field name"),
                    ));
                }
            }
        }
        collected(p, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn auth() -> serde_json::Value {
        json!({"flow": "client_credentials", "token_url": "https://login.salesforce.com/services/oauth2/token",
               "client_id": "id", "client_secret": "s"})
    }

    #[test]
    fn defaults_keep_a_tenth_of_the_quota() {
        let p = SalesforceParams::from_value(&json!({"auth": auth()})).unwrap();
        assert_eq!(p.daily_reserve_pct, 10);
        assert_eq!(p.api_version, "v66.0");
        assert_eq!(p.timeout_ms, 120_000);
    }

    #[test]
    fn a_zero_timeout_is_refused() {
        let e =
            SalesforceParams::from_value(&json!({"auth": auth(), "timeout_ms": 0})).unwrap_err();
        assert_eq!(e[0].path, "timeout_ms");
        assert_eq!(e[0].message, "0 is outside 1..=3600000 milliseconds");
    }

    #[test]
    fn clock_params_beyond_their_range_are_refused() {
        let e = SalesforceParams::from_value(&json!({"auth": auth(),
            "overlap_secs": u64::MAX, "quota_recheck_secs": 86_401}))
        .unwrap_err();
        assert_eq!(
            ParamError::pairs(&e),
            [
                ("quota_recheck_secs", "86401 is outside 1..=86400 seconds"),
                (
                    "overlap_secs",
                    "18446744073709551615 is outside 0..=86400 seconds"
                ),
            ]
        );
    }

    #[test]
    fn rejects_unknown_flow_and_bad_version() {
        let e = SalesforceParams::from_value(&json!({"auth": {"flow": "password"}})).unwrap_err();
        assert_eq!(e[0].path, "auth.flow");
        assert!(
            e[0].message.contains("unknown variant `password`"),
            "{}",
            e[0].message
        );
        let e = SalesforceParams::from_value(&json!({"auth": auth(), "api_version": "66"}))
            .unwrap_err();
        assert_eq!(e[0].path, "api_version");
    }
}
