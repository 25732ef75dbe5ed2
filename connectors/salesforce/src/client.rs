//! OAuth sessions, the org's daily API quota and the HTTP calls to Salesforce.
//!
//! Every data call goes through [`SfClient::send`]: it takes a slot from the [`Quota`]
//! (refusing before anything is sent once the reserve is reached), attaches the current
//! access token, and on `401 INVALID_SESSION_ID` renews the token once and retries. A
//! renewal is single-flight: callers that saw the same stale token wait for one refresh.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::HeaderMap;
use revsync_sdk::http::{
    ApiClient, ApiPolicy, ApiRequest, ApiResponse, Auth as HttpAuth, Limits, RetryPolicy,
};
use revsync_sdk::{ConnectorError, LimitScope, Secret, Shutdown};
use serde::Deserialize;
use tokio::time::Instant;

use crate::config::Auth;

/// Marks an expired or revoked session in an `Auth` error so `send` can renew once.
const INVALID_SESSION: &str = "INVALID_SESSION_ID";

/// One REST error item: Salesforce answers errors as a JSON array of these.
#[derive(Debug, Deserialize)]
struct RestError {
    #[serde(default, rename = "errorCode")]
    error_code: String,
    #[serde(default)]
    message: String,
}

fn error_codes(body: &[u8]) -> Vec<RestError> {
    serde_json::from_slice::<Vec<RestError>>(body).unwrap_or_default()
}

/// How long the org is left alone after the concurrent-request limit refused a call.
/// Backoff grows from there; the limit clears as soon as one long request ends.
pub const CONCURRENT_LIMIT_WAIT: Duration = Duration::from_secs(1);

/// `REQUEST_LIMIT_EXCEEDED` names two limits: the rolling daily allocation
/// (`TotalRequests Limit exceeded.`) and the cap on concurrent long-running requests
/// (`ConcurrentPerOrgLongTxn Limit exceeded.`, API_FACTS 2.4). The second is a burst: it
/// clears when another request finishes, so it is retried and the daily quota untouched.
fn concurrent_limit(codes: &[RestError]) -> Option<ConnectorError> {
    codes
        .iter()
        .any(|e| {
            e.error_code == "REQUEST_LIMIT_EXCEEDED"
                && e.message.to_ascii_lowercase().contains("concurrent")
        })
        .then_some(ConnectorError::RateLimited {
            retry_after: Some(CONCURRENT_LIMIT_WAIT),
            scope: LimitScope::Burst,
        })
}

/// `api-usage=used/max` from `Sforce-Limit-Info` (other entries such as `api-bursts` ignored).
pub fn parse_limit_info(value: &str) -> Option<(u64, u64)> {
    value.split([';', ',']).find_map(|part| {
        let (name, v) = part.trim().split_once('=')?;
        if name.trim() != "api-usage" {
            return None;
        }
        let (used, max) = v.trim().split_once('/')?;
        Some((used.trim().parse().ok()?, max.trim().parse().ok()?))
    })
}

/// What `/status` could show about the org's daily allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaStatus {
    pub used: Option<u64>,
    pub max: Option<u64>,
    /// The most revsync lets the org's usage reach.
    pub ceiling: Option<u64>,
    /// `quota_reserve_reached`: revsync is paused until usage falls.
    pub reserve_reached: bool,
}

#[derive(Debug, Default)]
struct QuotaState {
    used: Option<u64>,
    max: Option<u64>,
    /// Calls sent and not yet answered: they will count, so they are budgeted.
    in_flight: u64,
    paused_since: Option<Instant>,
    probe_in_flight: bool,
}

/// The share of the org's rolling 24 h allocation revsync never spends.
///
/// The allocation is shared by every tool on the org, so usage moves without us; the
/// only honest signal is the `Sforce-Limit-Info` of each answer. Once usage (plus our
/// calls in flight) reaches the ceiling, nothing is sent: callers get
/// `RateLimited{Daily}` and the runtime pauses. After `recheck`, exactly one call goes
/// out to learn whether usage fell; that probe is the only spending past the ceiling.
#[derive(Debug)]
pub struct Quota {
    reserve_pct: u8,
    recheck: Duration,
    state: Mutex<QuotaState>,
}

/// A budgeted call; dropping it releases the slot.
pub struct QuotaSlot<'a> {
    quota: &'a Quota,
    probe: bool,
}

impl Drop for QuotaSlot<'_> {
    fn drop(&mut self) {
        let mut s = self.quota.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if self.probe {
            s.probe_in_flight = false;
            // Still over after the probe: wait a full period again.
            if s.paused_since.is_some() {
                s.paused_since = Some(Instant::now());
            }
        }
    }
}

impl Quota {
    pub fn new(reserve_pct: u8, recheck: Duration) -> Self {
        Self {
            reserve_pct,
            recheck,
            state: Mutex::new(QuotaState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QuotaState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ceiling(&self, max: u64) -> u64 {
        // `max` is the org's word (Sforce-Limit-Info): u128 so no value can overflow.
        let reserve = (u128::from(max) * u128::from(self.reserve_pct)).div_ceil(100);
        max.saturating_sub(u64::try_from(reserve).unwrap_or(max))
    }

    fn refused(&self, since: Instant) -> ConnectorError {
        let left = since.checked_add(self.recheck).map_or(self.recheck, |end| {
            end.saturating_duration_since(Instant::now())
        });
        ConnectorError::RateLimited {
            retry_after: Some(left.max(Duration::from_secs(1))),
            scope: LimitScope::Reserve,
        }
    }

    /// A slot for one call, or `RateLimited{Daily}` without sending anything.
    pub fn admit(&self) -> Result<QuotaSlot<'_>, ConnectorError> {
        let mut s = self.lock();
        if let Some(since) = s.paused_since {
            if since.elapsed() < self.recheck || s.probe_in_flight || s.in_flight > 0 {
                return Err(self.refused(since));
            }
            s.probe_in_flight = true;
            s.in_flight += 1;
            tracing::info!("daily api reserve reached; one call checks whether usage fell");
            return Ok(QuotaSlot {
                quota: self,
                probe: true,
            });
        }
        if let (Some(used), Some(max)) = (s.used, s.max) {
            let ceiling = self.ceiling(max);
            if used.saturating_add(s.in_flight) >= ceiling {
                let now = Instant::now();
                s.paused_since = Some(now);
                tracing::warn!(
                    used,
                    max,
                    ceiling,
                    reserve_pct = self.reserve_pct,
                    "quota_reserve_reached: pausing salesforce calls"
                );
                return Err(self.refused(now));
            }
        }
        s.in_flight += 1;
        Ok(QuotaSlot {
            quota: self,
            probe: false,
        })
    }

    /// Usage as the org reported it in an answer.
    pub fn observe(&self, used: u64, max: u64) {
        let mut s = self.lock();
        s.used = Some(used);
        s.max = Some(max);
        if s.paused_since.is_some() && used < self.ceiling(max) {
            tracing::info!(
                used,
                max,
                "daily api usage fell below the reserve; resuming"
            );
            s.paused_since = None;
        }
    }

    /// The org refused a call for its limit: pause as for the reserve.
    pub fn exhausted(&self) -> ConnectorError {
        let mut s = self.lock();
        let now = Instant::now();
        s.paused_since = Some(now);
        drop(s);
        tracing::warn!("REQUEST_LIMIT_EXCEEDED: the org's daily api limit is spent; pausing");
        self.refused(now)
    }

    pub fn status(&self) -> QuotaStatus {
        let s = self.lock();
        QuotaStatus {
            used: s.used,
            max: s.max,
            ceiling: s.max.map(|m| self.ceiling(m)),
            reserve_reached: s.paused_since.is_some(),
        }
    }
}

/// Salesforce's peculiarities for the shared client: quota headers on every answer,
/// session expiry as 401 INVALID_SESSION_ID, and the org limit as 403.
pub struct SfPolicy {
    pub quota: Arc<Quota>,
}

impl ApiPolicy for SfPolicy {
    fn classify(&self, status: u16, _headers: &HeaderMap, body: &[u8]) -> Option<ConnectorError> {
        let codes = error_codes(body);
        let has = |code: &str| codes.iter().any(|e| e.error_code == code);
        if status == 403 {
            // Too many long requests in flight on the org: wait briefly, then retry.
            if let Some(e) = concurrent_limit(&codes) {
                return Some(e);
            }
        }
        match status {
            401 => Some(ConnectorError::Auth(
                if has(INVALID_SESSION) || codes.is_empty() {
                    format!("{INVALID_SESSION}: session expired or invalid")
                } else {
                    codes
                        .iter()
                        .map(|e| e.error_code.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            )),
            // Never a loop of retries: the whole account waits for usage to fall.
            403 if has("REQUEST_LIMIT_EXCEEDED") => Some(self.quota.exhausted()),
            // A row locked by another transaction frees itself.
            400..=499 if has("UNABLE_TO_LOCK_ROW") => Some(ConnectorError::Transient(
                "UNABLE_TO_LOCK_ROW: record locked by another transaction".into(),
            )),
            400..=499 if !codes.is_empty() => Some(ConnectorError::Permanent {
                detail: codes
                    .iter()
                    .map(|e| format!("{}: {}", e.error_code, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
                status: Some(status),
                body: Some(revsync_sdk::http::truncated_body(body)),
            }),
            _ => None,
        }
    }

    fn observe(&self, headers: &HeaderMap) -> Option<Duration> {
        if let Some((used, max)) = headers
            .get("sforce-limit-info")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_limit_info)
        {
            self.quota.observe(used, max);
        }
        // The reserve is enforced before sending (see `Quota::admit`), not by sleeping.
        None
    }
}

/// The token endpoint's errors: `{error, error_description}`, never worth a retry.
pub(crate) struct TokenPolicy;

impl ApiPolicy for TokenPolicy {
    fn classify(&self, status: u16, _headers: &HeaderMap, body: &[u8]) -> Option<ConnectorError> {
        if !(400..=499).contains(&status) {
            return None;
        }
        // A login is a request like any other for the concurrent limit, not a refusal.
        if let Some(e) = concurrent_limit(&error_codes(body)) {
            return Some(e);
        }
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let text = |key: &str| v.get(key).and_then(serde_json::Value::as_str);
        let error = text("error").unwrap_or("unknown_error");
        let desc = text("error_description").unwrap_or("");
        Some(ConnectorError::Auth(format!(
            "token request refused ({status}): {error} {desc}"
        )))
    }
}

#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    access_token: String,
    instance_url: String,
}

/// The token endpoint's answer: the token and a usable instance URL.
pub(crate) fn token_answer(resp: &ApiResponse) -> Result<TokenResponse, ConnectorError> {
    let t: TokenResponse = resp.json()?;
    revsync_sdk::check_base_url("instance_url", &t.instance_url).map_err(|e| {
        ConnectorError::Auth(format!(
            "token response has a bad instance_url: {}",
            e.message
        ))
    })?;
    Ok(t)
}

/// A logged-in session: the token and the client for its instance.
pub struct Session {
    token: Secret,
    pub api: ApiClient,
    instance_url: String,
    /// Bumped by every renewal, so callers holding a stale token renew only once.
    generation: u64,
}

/// Settings of the HTTP clients, fixed at build.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub limits: Limits,
    pub retry: RetryPolicy,
    pub timeout: Duration,
    /// The connector file's `http.max_response_bytes`, for every client built.
    pub max_response_bytes: usize,
    /// The daemon's shutdown, for every client built.
    pub shutdown: Shutdown,
}

pub struct SfClient {
    auth: Auth,
    token_http: ApiClient,
    http: HttpSettings,
    pub(crate) policy: Arc<SfPolicy>,
    pub quota: Arc<Quota>,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
    /// The last session, readable without waiting (limiter stats for `/status`).
    current: Mutex<Option<Arc<Session>>>,
}

impl SfClient {
    /// The instance the current session talks to, if one was opened.
    pub fn instance_url(&self) -> Option<String> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|s| s.instance_url.clone())
    }

    pub fn new(auth: Auth, http: HttpSettings, quota: Arc<Quota>) -> Result<Self, ConnectorError> {
        let token_http = ApiClient::new(
            auth.token_url(),
            http.limits,
            http.retry,
            http.timeout,
            Arc::new(TokenPolicy),
        )?
        .with_max_response_bytes(http.max_response_bytes)
        .with_shutdown(http.shutdown.clone());
        Ok(Self {
            auth,
            token_http,
            http,
            policy: Arc::new(SfPolicy {
                quota: quota.clone(),
            }),
            quota,
            session: tokio::sync::Mutex::new(None),
            current: Mutex::new(None),
        })
    }

    pub fn current(&self) -> Option<Arc<Session>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn session(&self) -> Result<Arc<Session>, ConnectorError> {
        let mut slot = self.session.lock().await;
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let s = self.login(None).await?;
        *slot = Some(s.clone());
        Ok(s)
    }

    /// Renew the session `stale` was part of, unless another caller already did.
    async fn renew(&self, stale: u64) -> Result<Arc<Session>, ConnectorError> {
        let mut slot = self.session.lock().await;
        if let Some(s) = slot.as_ref().filter(|s| s.generation != stale) {
            return Ok(s.clone());
        }
        let s = self.login(slot.as_deref()).await?;
        *slot = Some(s.clone());
        Ok(s)
    }

    async fn login(&self, prev: Option<&Session>) -> Result<Arc<Session>, ConnectorError> {
        let form: Vec<(String, String)> = match &self.auth {
            Auth::RefreshToken {
                client_id,
                client_secret,
                refresh_token,
                ..
            } => vec![
                ("grant_type".into(), "refresh_token".into()),
                ("client_id".into(), client_id.clone()),
                ("client_secret".into(), client_secret.expose().to_owned()),
                ("refresh_token".into(), refresh_token.expose().to_owned()),
            ],
            Auth::ClientCredentials {
                client_id,
                client_secret,
                ..
            } => vec![
                ("grant_type".into(), "client_credentials".into()),
                ("client_id".into(), client_id.clone()),
                ("client_secret".into(), client_secret.expose().to_owned()),
            ],
        };
        // Asking again for a token changes nothing server-side: safe to retry.
        let req = ApiRequest::post(self.auth.token_url())
            .with_form(form)
            .with_retry(true);
        let t = token_answer(&self.token_http.send(req).await?)?;
        let api = match prev {
            // Keep the account's limiter when the instance stays the same.
            Some(p) if p.instance_url == t.instance_url => p.api.clone(),
            _ => ApiClient::new(
                &t.instance_url,
                self.http.limits,
                self.http.retry,
                self.http.timeout,
                self.policy.clone(),
            )?
            .with_max_response_bytes(self.http.max_response_bytes)
            .with_shutdown(self.http.shutdown.clone()),
        };
        let generation = prev.map_or(0, |p| p.generation + 1);
        tracing::info!(generation, "salesforce session established");
        let s = Arc::new(Session {
            token: Secret::new(t.access_token),
            api,
            instance_url: t.instance_url,
            generation,
        });
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.clone());
        Ok(s)
    }

    /// Send `req` (a path on the instance) with the session's token, within the quota.
    pub async fn send(&self, req: ApiRequest) -> Result<ApiResponse, ConnectorError> {
        let session = self.session().await?;
        let first = {
            let _slot = self.quota.admit()?;
            session
                .api
                .send(
                    req.clone()
                        .with_auth(HttpAuth::Bearer(session.token.clone())),
                )
                .await
        };
        match first {
            Err(ConnectorError::Auth(m)) if m.starts_with(INVALID_SESSION) => {
                tracing::info!("salesforce session expired; renewing the token once");
                let session = self.renew(session.generation).await?;
                let _slot = self.quota.admit()?;
                session
                    .api
                    .send(req.with_auth(HttpAuth::Bearer(session.token.clone())))
                    .await
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_info_is_parsed_with_or_without_bursts() {
        assert_eq!(
            parse_limit_info("api-usage=10018/100000"),
            Some((10018, 100000))
        );
        assert_eq!(
            parse_limit_info("api-usage=5/15000; api-bursts=1/750"),
            Some((5, 15000))
        );
        assert_eq!(parse_limit_info("api-bursts=1/750"), None);
        assert_eq!(parse_limit_info("api-usage=x/1"), None);
    }

    /// The usage header is the server's: numbers at the edge of u64 must not overflow.
    #[tokio::test]
    async fn extreme_usage_numbers_refuse_calls_without_overflow() {
        let q = Quota::new(10, Duration::MAX);
        q.observe(u64::MAX, u64::MAX);
        let e = q.admit().err().expect("the whole allocation is used");
        assert!(matches!(
            e,
            ConnectorError::RateLimited {
                scope: LimitScope::Reserve,
                ..
            }
        ));
        // Paused with a recheck too long to add to a clock: still an answer, not a panic.
        assert!(q.admit().is_err());
    }

    #[tokio::test]
    async fn the_reserve_is_refused_before_sending() {
        let q = Quota::new(10, Duration::from_secs(900));
        q.observe(899, 1000);
        let slot = q.admit().expect("899 of a 900 ceiling leaves one call");
        // The call in flight counts: a second one would reach the reserve.
        let e = q.admit().err().expect("in-flight call fills the budget");
        assert!(matches!(
            e,
            ConnectorError::RateLimited {
                scope: LimitScope::Reserve,
                ..
            }
        ));
        assert!(q.status().reserve_reached);
        drop(slot);
        // Usage fell (rolling window): calls resume.
        q.observe(500, 1000);
        assert!(!q.status().reserve_reached);
        assert!(q.admit().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_recheck_period_exactly_one_probe_goes_out() {
        let q = Quota::new(10, Duration::from_secs(60));
        q.observe(950, 1000);
        assert!(q.admit().is_err());
        tokio::time::advance(Duration::from_secs(61)).await;
        let probe = q.admit().expect("one probe after the period");
        assert!(q.admit().is_err(), "only one probe at a time");
        q.observe(951, 1000);
        drop(probe);
        assert!(q.admit().is_err(), "still over: wait a full period again");
    }

    #[test]
    fn the_concurrent_request_limit_is_a_short_retried_throttle() {
        let q = Arc::new(Quota::new(10, Duration::from_secs(900)));
        let p = SfPolicy { quota: q.clone() };
        let body = br#"[{"message":"ConcurrentPerOrgLongTxn Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#;
        let e = p.classify(403, &HeaderMap::new(), body).unwrap();
        assert_eq!(
            e,
            ConnectorError::RateLimited {
                retry_after: Some(CONCURRENT_LIMIT_WAIT),
                scope: LimitScope::Burst,
            }
        );
        assert!(e.is_retryable());
        assert!(
            !q.status().reserve_reached,
            "the daily quota was marked spent"
        );
        assert!(q.admit().is_ok());
        // The token endpoint reads it the same way, not as a refused login.
        assert_eq!(TokenPolicy.classify(403, &HeaderMap::new(), body), Some(e));
        assert!(matches!(
            TokenPolicy.classify(400, &HeaderMap::new(), br#"{"error":"invalid_grant"}"#),
            Some(ConnectorError::Auth(_))
        ));
    }

    #[test]
    fn request_limit_exceeded_is_daily_and_not_retryable() {
        let q = Arc::new(Quota::new(10, Duration::from_secs(60)));
        let p = SfPolicy { quota: q.clone() };
        let body = br#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#;
        let e = p.classify(403, &HeaderMap::new(), body).unwrap();
        assert!(!e.is_retryable());
        assert!(q.status().reserve_reached);
        let e = p
            .classify(
                401,
                &HeaderMap::new(),
                br#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#,
            )
            .unwrap();
        assert!(matches!(e, ConnectorError::Auth(m) if m.starts_with(INVALID_SESSION)));
    }
}
