//! `params:` of a Zendesk connector file.

use revsync_sdk::{
    check_base_url, check_range, check_timeout_ms, collected, parse_params, ParamError, Secret,
    MAX_WINDOW_SECS,
};
use serde::Deserialize;

/// API_FACTS 3.1: API token as HTTP Basic `{email}/token:{token}`, or an OAuth bearer.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    ApiToken { email: String, token: Secret },
    Oauth { access_token: Secret },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZendeskParams {
    /// `acme` for https://acme.zendesk.com; ignored when `base_url` is set.
    #[serde(default)]
    pub subdomain: Option<String>,
    /// Overrides the URL derived from `subdomain` (simulators, proxies).
    #[serde(default)]
    pub base_url: Option<String>,
    pub auth: Auth,
    /// The plan's requests per minute (API_FACTS 3.4; Enterprise is 700).
    #[serde(default = "default_requests_per_minute")]
    pub requests_per_minute: u32,
    /// Signing secret of the webhook, for `X-Zendesk-Webhook-Signature`.
    #[serde(default)]
    pub webhook_secret: Option<Secret>,
    /// Which concatenation the signature covers: Zendesk's doc versions disagree (API_FACTS
    /// 3.5, unconfirmed), so it is the operator's to choose.
    #[serde(default)]
    pub webhook_signature_order: SignatureOrder,
    /// How far a webhook's signed timestamp may be from our clock (Zendesk names none).
    #[serde(default = "default_webhook_tolerance_secs")]
    pub webhook_tolerance_secs: u64,
    /// Incremental exports allowed per minute: 10, or 30 with the High Volume add-on.
    #[serde(default = "default_exports_per_minute")]
    pub exports_per_minute: u32,
    /// The least time between two reads of the bulk jobs' statuses while batches wait to
    /// be submitted (twice it once Zendesk's in-flight header tells the free slots; a
    /// quarter of it once none waits). One read covers every job in flight; a job is first
    /// looked at a quarter of it after its submit (ADR 0032).
    #[serde(default = "default_job_poll_interval_ms")]
    pub job_poll_interval_ms: u64,
    /// Bulk jobs this connector keeps queued or running at once, each a batch pushed:
    /// Zendesk allows 30 per account (API_FACTS 3.3). Lower it when other integrations
    /// run bulk jobs on the account, or their jobs and ours meet TooManyJobs.
    #[serde(default = "default_max_jobs_in_flight")]
    pub max_jobs_in_flight: usize,
    /// How long a bulk job may take (including waiting for a free job slot) before the
    /// batch is handed back as transient; creates are upserts, so a retry is safe.
    #[serde(default = "default_job_timeout_secs")]
    pub job_timeout_secs: u64,
    /// Push tickets (creation carries an `Idempotency-Key`); tickets are read-only otherwise.
    #[serde(default)]
    pub ticket_writes: bool,
    /// Per-request timeout, from connect to the last byte of the answer.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

/// The bytes `X-Zendesk-Webhook-Signature` is an HMAC of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureOrder {
    /// `TIMESTAMP + BODY`: the current verification doc and third-party implementations.
    #[default]
    TimestampBody,
    /// `BODY + TIMESTAMP`: the older doc page, whose test vector matches only this order.
    BodyTimestamp,
}

fn default_requests_per_minute() -> u32 {
    700
}

fn default_webhook_tolerance_secs() -> u64 {
    300
}

fn default_exports_per_minute() -> u32 {
    10
}

fn default_job_poll_interval_ms() -> u64 {
    1000
}

fn default_max_jobs_in_flight() -> usize {
    30
}

fn default_job_timeout_secs() -> u64 {
    300
}

fn default_timeout_ms() -> u64 {
    60_000
}

impl ZendeskParams {
    pub fn from_value(v: &serde_json::Value) -> Result<Self, Vec<ParamError>> {
        let p: Self = parse_params(v).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        match (&p.subdomain, &p.base_url) {
            (_, Some(url)) => {
                if let Err(e) = check_base_url("base_url", url) {
                    errors.push(e);
                }
            }
            (Some(s), None) => {
                if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    errors.push(
                        ParamError::new("subdomain", format!("`{s}` is not a Zendesk subdomain"))
                            .with_example("subdomain: acme"),
                    );
                }
            }
            (None, None) => errors.push(
                ParamError::new("subdomain", "either `subdomain` or `base_url` is required")
                    .with_example("subdomain: acme"),
            ),
        }
        if let Auth::ApiToken { email, .. } = &p.auth {
            if !email.contains('@') {
                errors.push(
                    ParamError::new("auth.email", format!("`{email}` is not an email address"))
                        .with_example("email: ops@acme.com"),
                );
            }
        }
        if !(1..=100_000).contains(&p.requests_per_minute) {
            errors.push(
                ParamError::new(
                    "requests_per_minute",
                    format!("{} is outside 1..=100000", p.requests_per_minute),
                )
                .with_example("requests_per_minute: 700"),
            );
        }
        if !(1..=1_000).contains(&p.exports_per_minute) {
            errors.push(
                ParamError::new(
                    "exports_per_minute",
                    format!("{} is outside 1..=1000", p.exports_per_minute),
                )
                .with_example("exports_per_minute: 10"),
            );
        }
        // Bounded so `Instant::now() + d` and the doubling of the job wait cannot overflow.
        errors.extend(check_range(
            "job_poll_interval_ms",
            p.job_poll_interval_ms,
            1..=600_000,
            "milliseconds",
            "1000",
        ));
        errors.extend(check_range(
            "max_jobs_in_flight",
            p.max_jobs_in_flight as u64,
            1..=30,
            "jobs",
            "30",
        ));
        errors.extend(check_range(
            "job_timeout_secs",
            p.job_timeout_secs,
            1..=MAX_WINDOW_SECS,
            "seconds",
            "300",
        ));
        errors.extend(check_range(
            "webhook_tolerance_secs",
            p.webhook_tolerance_secs,
            0..=MAX_WINDOW_SECS,
            "seconds",
            "300",
        ));
        errors.extend(check_timeout_ms(p.timeout_ms, "60000"));
        collected(p, errors)
    }

    /// `https://{subdomain}.zendesk.com/api/v2`, or the configured base URL.
    pub fn api_base(&self) -> String {
        match (&self.base_url, &self.subdomain) {
            (Some(url), _) => url.trim_end_matches('/').to_owned(),
            (None, Some(s)) => format!("https://{s}.zendesk.com/api/v2"),
            (None, None) => unreachable!("validated: subdomain or base_url is set"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn needs_a_subdomain_or_base_url() {
        let auth = json!({"method": "oauth", "access_token": "x"});
        let e = ZendeskParams::from_value(&json!({"auth": auth})).unwrap_err();
        assert_eq!(e[0].path, "subdomain");
        let p = ZendeskParams::from_value(&json!({"auth": auth, "subdomain": "acme"})).unwrap();
        assert_eq!(p.api_base(), "https://acme.zendesk.com/api/v2");
        assert_eq!(p.requests_per_minute, 700);
        assert_eq!(p.exports_per_minute, 10);
        assert_eq!(p.timeout_ms, 60_000);
    }

    #[test]
    fn a_zero_timeout_or_export_rate_is_refused() {
        let auth = json!({"method": "oauth", "access_token": "x"});
        let e = ZendeskParams::from_value(
            &json!({"auth": auth, "subdomain": "acme", "timeout_ms": 0, "exports_per_minute": 0}),
        )
        .unwrap_err();
        assert_eq!(
            ParamError::pairs(&e),
            [
                ("exports_per_minute", "0 is outside 1..=1000"),
                ("timeout_ms", "0 is outside 1..=3600000 milliseconds")
            ]
        );
    }

    #[test]
    fn clock_params_beyond_their_range_are_refused() {
        let auth = json!({"method": "oauth", "access_token": "x"});
        let e = ZendeskParams::from_value(&json!({"auth": auth, "subdomain": "acme",
            "job_timeout_secs": u64::MAX, "job_poll_interval_ms": 0,
            "webhook_tolerance_secs": 86_401, "timeout_ms": 3_600_001}))
        .unwrap_err();
        assert_eq!(
            ParamError::pairs(&e),
            [
                (
                    "job_poll_interval_ms",
                    "0 is outside 1..=600000 milliseconds"
                ),
                (
                    "job_timeout_secs",
                    "18446744073709551615 is outside 1..=86400 seconds"
                ),
                (
                    "webhook_tolerance_secs",
                    "86401 is outside 0..=86400 seconds"
                ),
                ("timeout_ms", "3600001 is outside 1..=3600000 milliseconds"),
            ]
        );
        assert_eq!(e[1].example.as_deref(), Some("job_timeout_secs: 300"));
    }
}
