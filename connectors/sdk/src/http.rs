//! The HTTP client every connector talks to its API through: one rate budget per account,
//! classified errors, bounded retries and logs that never carry credentials.
//!
//! All waiting (permits, pauses, backoff) goes through `tokio::time`, so tests drive it with
//! `tokio::time::pause()` instead of sleeping for real.

use std::fmt;
use std::ops::Add;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use bytes::{Bytes, BytesMut};
use governor::clock::{Clock, ReasonablyRealtime, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::time::Instant;

use crate::error::{upstream_wait, ConnectorError, LimitScope, MAX_UPSTREAM_WAIT};
use crate::secret::Secret;
use crate::shutdown::Shutdown;

/// How much of an error body is kept: enough to read the API's message in the dead-letter
/// queue, not so much that one bad answer bloats the store.
const MAX_ERROR_BODY: usize = 4096;

/// The largest response body read unless a connector file says otherwise
/// (`http.max_response_bytes`): generous for Salesforce's 2,000-record pages with every
/// field selected, and still a bound on what one answer can make the daemon hold.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// The `http:` section of a connector file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest response body accepted, in bytes; [`DEFAULT_MAX_RESPONSE_BYTES`] when unset.
    pub max_response_bytes: Option<u64>,
}

impl HttpConfig {
    /// The body cap to build clients with: the configured value over the default.
    pub fn max_response_bytes(&self) -> Result<usize, String> {
        match self.max_response_bytes {
            Some(0) => Err("http.max_response_bytes must be at least 1, got 0".into()),
            Some(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            None => Ok(usize::try_from(DEFAULT_MAX_RESPONSE_BYTES).unwrap_or(usize::MAX)),
        }
    }
}

/// A request budget: at most `requests` in any window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub requests: u32,
    pub per: Duration,
}

impl Limits {
    pub const fn new(requests: u32, per: Duration) -> Self {
        Self { requests, per }
    }

    /// The spacing between permits. Rounded up so that `requests` permits never fit in
    /// less than `per`.
    fn period(&self) -> Duration {
        let n = u128::from(self.requests.max(1));
        let nanos = self.per.as_nanos().div_ceil(n).max(1);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// The `rate_limit:` section of a connector file. Both fields are optional so an operator
/// only writes what differs from the API's documented limit (e.g. a lower plan tier).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub requests: Option<u32>,
    pub per_secs: Option<u64>,
}

impl RateLimitConfig {
    /// The limits to use: the configured values over the documented ones.
    pub fn resolve(&self, documented: Limits) -> Result<Limits, String> {
        let requests = self.requests.unwrap_or(documented.requests);
        if requests == 0 {
            return Err("rate_limit.requests must be at least 1, got 0".into());
        }
        let per = match self.per_secs {
            Some(0) => return Err("rate_limit.per_secs must be at least 1, got 0".into()),
            Some(s) => Duration::from_secs(s),
            None => documented.per,
        };
        Ok(Limits { requests, per })
    }
}

/// How a failed call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Including the first one.
    pub max_attempts: u32,
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// No retry starts once this much time has passed since the first attempt.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The delays before each retry: exponential, capped, with full jitter so that tasks
    /// failing together do not come back together.
    fn backoff(&self) -> impl Iterator<Item = Duration> + Send + Sync + Unpin {
        ExponentialBuilder::new()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .build()
            .map(full_jitter as fn(Duration) -> Duration)
    }
}

fn full_jitter(delay: Duration) -> Duration {
    delay.mul_f64(fastrand::f64())
}

/// A point on tokio's clock, so governor's arithmetic follows `tokio::time::pause()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokioInstant(pub Instant);

impl Add<Nanos> for TokioInstant {
    type Output = Self;

    fn add(self, other: Nanos) -> Self {
        Self(instant_after(self.0, Duration::from(other)))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        self.0
            .checked_sub(duration.into())
            .map(Self)
            .unwrap_or(*self)
    }
}

/// governor's clock over `tokio::time::Instant`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    type Instant = TokioInstant;

    fn now(&self) -> TokioInstant {
        TokioInstant(Instant::now())
    }
}

impl ReasonablyRealtime for TokioClock {}

type Governor = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<TokioInstant>>;

/// What `/status` shows about an account's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterStats {
    pub configured: Limits,
    /// Answers classified as rate limited (429, or the API's equivalent).
    pub throttled_429: u64,
    /// How long the account is still paused for.
    pub current_wait_ms: u64,
    /// Permits granted so far.
    pub requests: u64,
}

/// One API account's shared budget: every request of every task of a connector takes a
/// permit here.
///
/// Permits are spaced evenly (no burst), which is what keeps any window of `per` at
/// `requests` or fewer: a bucket that starts full would let nearly twice that through the
/// first window. When the API says to stop (429 with `Retry-After`, or a "remaining: 0"
/// header), [`AccountLimiter::pause_for`] holds back every caller, not only the one that saw it.
pub struct AccountLimiter {
    limits: Limits,
    governor: Governor,
    paused_until: Mutex<Option<Instant>>,
    throttled: AtomicU64,
    granted: AtomicU64,
}

impl AccountLimiter {
    pub fn new(limits: Limits) -> Self {
        // `period()` is at least 1 ns, so governor always accepts it; the fallback only
        // keeps that fact out of the panic paths.
        let quota = Quota::with_period(limits.period())
            .unwrap_or_else(|| Quota::per_second(std::num::NonZeroU32::MIN));
        Self {
            limits,
            governor: RateLimiter::direct_with_clock(quota, TokioClock),
            paused_until: Mutex::new(None),
            throttled: AtomicU64::new(0),
            granted: AtomicU64::new(0),
        }
    }

    /// Waits until the account is not paused and a permit is free, then takes it.
    pub async fn acquire(&self) {
        loop {
            if let Some(until) = self.pause_end() {
                if until > Instant::now() {
                    tokio::time::sleep_until(until).await;
                    continue;
                }
            }
            match self.governor.check() {
                Ok(()) => {
                    self.granted.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                // Re-check the pause after sleeping: it may have started meanwhile.
                Err(not_until) => {
                    tokio::time::sleep(not_until.wait_time_from(TokioClock.now())).await
                }
            }
        }
    }

    /// Holds back every request of the account for `d` from now. A shorter pause than the
    /// one in force changes nothing: the API's longest instruction wins.
    /// A pause comes from the API, so it is held to [`MAX_UPSTREAM_WAIT`].
    pub fn pause_for(&self, d: Duration) {
        let until = instant_after(Instant::now(), upstream_wait(d));
        let mut paused = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
    }

    pub fn stats(&self) -> LimiterStats {
        let wait = self
            .pause_end()
            .map(|until| until.saturating_duration_since(Instant::now()))
            .unwrap_or_default();
        LimiterStats {
            configured: self.limits,
            throttled_429: self.throttled.load(Ordering::Relaxed),
            current_wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            requests: self.granted.load(Ordering::Relaxed),
        }
    }

    fn pause_end(&self) -> Option<Instant> {
        *self.paused_until.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn note_throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for AccountLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountLimiter")
            .field("stats", &self.stats())
            .finish()
    }
}

/// What a connector tells the client about its API's peculiarities.
pub trait ApiPolicy: Send + Sync {
    /// Classify a non-2xx answer (or a 2xx that is an error inside); None -> default
    /// classification.
    fn classify(&self, _status: u16, _headers: &HeaderMap, _body: &[u8]) -> Option<ConnectorError> {
        None
    }

    /// Look at every response's headers (e.g. X-HubSpot-RateLimit-Remaining,
    /// Sforce-Limit-Info, X-Rate-Limit-Remaining/ratelimit-reset) and return a pause to
    /// apply to the whole account, if any.
    fn observe(&self, _headers: &HeaderMap) -> Option<Duration> {
        None
    }
}

/// An API with nothing unusual: status codes and `Retry-After` say it all.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultPolicy;

impl ApiPolicy for DefaultPolicy {}

/// Credentials for one request. Both forms keep the secret in a [`Secret`] until the header
/// is built.
#[derive(Debug, Clone)]
pub enum Auth {
    Bearer(Secret),
    Basic { user: String, password: Secret },
}

#[derive(Clone)]
pub enum Body {
    Json(serde_json::Value),
    Form(Vec<(String, String)>),
    Raw {
        content_type: String,
        bytes: Vec<u8>,
    },
}

/// Bodies hold customer data, so Debug says only what kind of body it is.
impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Json(_) => f.write_str("Json(..)"),
            Body::Form(_) => f.write_str("Form(..)"),
            Body::Raw {
                content_type,
                bytes,
            } => {
                write!(f, "Raw({content_type}, {} bytes)", bytes.len())
            }
        }
    }
}

#[derive(Clone)]
pub struct ApiRequest {
    pub method: Method,
    /// Joined to the client's base URL, or an absolute URL (e.g. a "next page" link).
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub auth: Option<Auth>,
    pub body: Option<Body>,
    /// Whether a retryable failure may be sent again; false for calls that are not
    /// idempotent, where a lost response plus a retry would create a duplicate.
    pub retry: bool,
}

impl ApiRequest {
    /// A request that is retried when its method is idempotent (GET, HEAD, PUT, DELETE,
    /// OPTIONS); a POST must opt in with [`ApiRequest::with_retry`], e.g. when it carries
    /// an idempotency key.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        let retry = method.is_idempotent();
        Self {
            method,
            path: path.into(),
            query: Vec::new(),
            headers: Vec::new(),
            auth: None,
            body: None,
            retry,
        }
    }

    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }

    pub fn post(path: impl Into<String>) -> Self {
        Self::new(Method::POST, path)
    }

    pub fn with_query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = Some(auth);
        self
    }

    pub fn with_json(mut self, value: serde_json::Value) -> Self {
        self.body = Some(Body::Json(value));
        self
    }

    pub fn with_form(mut self, fields: Vec<(String, String)>) -> Self {
        self.body = Some(Body::Form(fields));
        self
    }

    pub fn with_retry(mut self, retry: bool) -> Self {
        self.retry = retry;
        self
    }
}

/// Query values and header values may be credentials (API keys, signatures), so Debug
/// shows only their names.
impl fmt::Debug for ApiRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |pairs: &[(String, String)]| -> Vec<String> {
            pairs.iter().map(|(name, _)| name.clone()).collect()
        };
        f.debug_struct("ApiRequest")
            .field("method", &self.method)
            .field("path", &path_only(&self.path))
            .field("query", &names(&self.query))
            .field("headers", &names(&self.headers))
            .field("auth", &self.auth)
            .field("body", &self.body)
            .field("retry", &self.retry)
            .finish()
    }
}

/// A successful (classified as such) answer.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ApiResponse {
    /// The body decoded as `T`. A body that does not decode is the API's fault, not a
    /// reason to retry; a body that stops mid-document was cut short on the way (a
    /// dropped connection, a proxy) and is transient like a timeout: what the request
    /// did is unknown, and only sending it again (writes are idempotent) tells.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ConnectorError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            if e.is_eof() && !self.body.is_empty() {
                ConnectorError::Transient(format!(
                    "response cut short after {} bytes: {e}",
                    self.body.len()
                ))
            } else {
                ConnectorError::Permanent {
                    detail: format!("malformed response: {e}"),
                    status: Some(self.status),
                    body: Some(truncated_body(&self.body)),
                }
            }
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A permit of an account's budget, taken by [`ApiClient::permit`] and spent by
/// [`ApiClient::send_with`]. Only the client makes one.
#[derive(Debug)]
pub struct Permit {
    _taken: (),
}

/// The client for one API account. Cheap to clone: clones share the connection pool and
/// the account's limiter.
#[derive(Clone)]
pub struct ApiClient {
    inner: Arc<Inner>,
    /// Kept per handle, so setting it needs no access to the shared part.
    max_response_bytes: usize,
    /// Ends this client's waits (permits, pauses, back-off) when the daemon stops.
    shutdown: Shutdown,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    base_str: String,
    limiter: AccountLimiter,
    retry: RetryPolicy,
    policy: Arc<dyn ApiPolicy>,
}

impl fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiClient")
            .field("base_url", &self.inner.base_str)
            .field("limiter", &self.inner.limiter)
            .field("retry", &self.inner.retry)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

impl ApiClient {
    /// `timeout` bounds each attempt from connect to the last byte of the body.
    pub fn new(
        base_url: &str,
        limits: Limits,
        retry: RetryPolicy,
        timeout: Duration,
        policy: Arc<dyn ApiPolicy>,
    ) -> Result<Self, ConnectorError> {
        let base_str = base_url.trim_end_matches('/').to_string();
        let base = Url::parse(&base_str)
            .map_err(|e| permanent(format!("invalid base url `{base_url}`: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("revsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| permanent(format!("cannot build http client: {}", error_chain(&e))))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base,
                base_str,
                limiter: AccountLimiter::new(limits),
                retry,
                policy,
            }),
            max_response_bytes: usize::try_from(DEFAULT_MAX_RESPONSE_BYTES).unwrap_or(usize::MAX),
            shutdown: Shutdown::default(),
        })
    }

    /// Once `shutdown` starts, this client sends nothing new: a request waiting for a
    /// permit, a pause or a retry's back-off ends at once with
    /// [`ConnectorError::Cancelled`]. An exchange already on the wire finishes.
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// The shutdown this client's waits end on, for a connector's own waits.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Caps every response body this client reads: a larger one is a Permanent error,
    /// read no further than the cap (see [`HttpConfig`]).
    pub fn with_max_response_bytes(mut self, max: usize) -> Self {
        self.max_response_bytes = max.max(1);
        self
    }

    pub fn limiter(&self) -> &AccountLimiter {
        &self.inner.limiter
    }

    /// Send with permits, classification and retries of retryable errors (Transient,
    /// RateLimited{Burst}); a Retry-After pauses the whole account before the next attempt.
    /// `retry: false` for non-idempotent calls.
    pub async fn send(&self, req: ApiRequest) -> Result<ApiResponse, ConnectorError> {
        self.send_inner(req, None).await
    }

    /// Takes a permit of the account's budget now, for a request sent with
    /// [`ApiClient::send_with`]: a caller that must also wait for something else (a job
    /// slot) waits for it holding the permit, not the other way round.
    pub async fn permit(&self) -> Result<Permit, ConnectorError> {
        self.shutdown.wait(self.inner.limiter.acquire()).await?;
        Ok(Permit { _taken: () })
    }

    /// [`ApiClient::send`], whose first attempt uses `permit` rather than waiting for one
    /// (a retry takes its own).
    pub async fn send_with(
        &self,
        req: ApiRequest,
        permit: Permit,
    ) -> Result<ApiResponse, ConnectorError> {
        self.send_inner(req, Some(permit)).await
    }

    async fn send_inner(
        &self,
        req: ApiRequest,
        permit: Option<Permit>,
    ) -> Result<ApiResponse, ConnectorError> {
        let mut permit = permit;
        let url = self.url_for(&req)?;
        if !req.retry {
            return self.attempt(&req, &url, 1, permit).await;
        }
        let policy = self.inner.retry;
        let started = Instant::now();
        let mut attempt = 0;
        let once = || {
            attempt += 1;
            self.attempt(&req, &url, attempt, permit.take())
        };
        let shutdown = self.shutdown.clone();
        // A back-off cut short by shutdown leads to an attempt that stops at its permit.
        let back_off = move |d| {
            let shutdown = shutdown.clone();
            async move {
                let _ = shutdown.sleep(d).await;
            }
        };
        once.retry(policy.backoff())
            .sleep(back_off)
            .when(ConnectorError::is_retryable)
            .adjust(|err, delay| {
                // The account pause already delays the next attempt; it only counts here
                // so that a pause longer than the budget hands the error back at once.
                let delay = delay?;
                let pause = match err {
                    ConnectorError::RateLimited {
                        retry_after: Some(d),
                        ..
                    } => *d,
                    _ => Duration::ZERO,
                };
                let wait = delay.max(pause);
                (started.elapsed().saturating_add(wait) <= policy.max_elapsed).then_some(delay)
            })
            .notify(|err, delay| {
                tracing::debug!(
                    method = %req.method,
                    path = %url.path(),
                    class = err.class(),
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "retrying http request"
                );
            })
            .await
    }

    fn url_for(&self, req: &ApiRequest) -> Result<Url, ConnectorError> {
        let absolute = req.path.starts_with("https://") || req.path.starts_with("http://");
        let mut url = if absolute {
            let url = Url::parse(&req.path)
                .map_err(|e| permanent(format!("invalid url `{}`: {e}", path_only(&req.path))))?;
            // A "next page" link is data from the API; following one to another host
            // must not hand that host our credentials.
            if req.auth.is_some() && url.origin() != self.inner.base.origin() {
                return Err(permanent(format!(
                    "refusing to send credentials to `{}`, which is not the origin of `{}`",
                    url.origin().ascii_serialization(),
                    self.inner.base_str
                )));
            }
            url
        } else {
            let joined = format!(
                "{}/{}",
                self.inner.base_str,
                req.path.trim_start_matches('/')
            );
            Url::parse(&joined)
                .map_err(|e| permanent(format!("invalid path `{}`: {e}", path_only(&req.path))))?
        };
        if !req.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&req.query);
        }
        Ok(url)
    }

    fn build(&self, req: &ApiRequest, url: Url) -> reqwest::RequestBuilder {
        let mut builder = self.inner.http.request(req.method.clone(), url);
        for (name, value) in &req.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        // reqwest marks both headers sensitive, so they stay out of its own Debug output.
        builder = match &req.auth {
            Some(Auth::Bearer(token)) => builder.bearer_auth(token.expose()),
            Some(Auth::Basic { user, password }) => {
                builder.basic_auth(user, Some(password.expose()))
            }
            None => builder,
        };
        match &req.body {
            Some(Body::Json(value)) => builder.json(value),
            Some(Body::Form(fields)) => builder.form(fields),
            Some(Body::Raw {
                content_type,
                bytes,
            }) => builder
                .header(CONTENT_TYPE, content_type.as_str())
                .body(bytes.clone()),
            None => builder,
        }
    }

    async fn attempt(
        &self,
        req: &ApiRequest,
        url: &Url,
        attempt: u32,
        permit: Option<Permit>,
    ) -> Result<ApiResponse, ConnectorError> {
        let inner = &*self.inner;
        if permit.is_none() {
            self.shutdown.wait(inner.limiter.acquire()).await?;
        }
        let started = Instant::now();
        let what = format!("{} {}", req.method, url.path());
        let (status, outcome) = match self.exchange(req, url, &what).await {
            Ok((status, headers, body)) => {
                let status = status.as_u16();
                let outcome = answer(
                    &*inner.policy,
                    &inner.limiter,
                    ApiResponse {
                        status,
                        headers,
                        body,
                    },
                    &what,
                );
                (status, outcome)
            }
            // 0 in the log: no answer (or none read to its end).
            Err(e) => (0, Err(e)),
        };
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match &outcome {
            Ok(_) => tracing::debug!(
                method = %req.method,
                path = %url.path(),
                status,
                attempt,
                elapsed_ms,
                "http request"
            ),
            Err(e) => tracing::warn!(
                method = %req.method,
                path = %url.path(),
                status,
                attempt,
                elapsed_ms,
                class = e.class(),
                "http request failed"
            ),
        }
        outcome
    }

    /// Sends and reads the whole answer, body no larger than the client's cap: a
    /// `Content-Length` over it is refused unread, and a body without one is read in
    /// chunks that stop at the cap.
    async fn exchange(
        &self,
        req: &ApiRequest,
        url: &Url,
        what: &str,
    ) -> Result<(reqwest::StatusCode, HeaderMap, Bytes), ConnectorError> {
        let transport = |e: reqwest::Error| transport_error(&e, what);
        let mut response = self
            .build(req, url.clone())
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let cap = self.max_response_bytes;
        // The same body would come back on a retry: nothing transient about it.
        let too_large = |size: String| {
            ConnectorError::Permanent {
            detail: format!(
                "{what} answered {status} with a body of {size}, over http.max_response_bytes ({cap})"
            ),
            status: Some(status.as_u16()),
            body: None,
        }
        };
        let announced = response.content_length();
        if let Some(len) = announced.filter(|len| usize::try_from(*len).map_or(true, |l| l > cap)) {
            return Err(too_large(format!("{len} bytes")));
        }
        // The chunks are kept as they come and joined once into a buffer of the exact size:
        // a growing buffer would double past the body (a 17 MiB answer held 32 MiB, with a
        // copy at every step), and the announced length is only the server's word.
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut len = 0usize;
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if chunk.len() > cap.saturating_sub(len) {
                return Err(too_large(format!("more than {cap} bytes")));
            }
            len += chunk.len();
            chunks.push(chunk);
        }
        let body = match chunks.len() {
            0 => Bytes::new(),
            1 => chunks.pop().unwrap_or_default(),
            _ => {
                let mut whole = BytesMut::with_capacity(len);
                for chunk in chunks.drain(..) {
                    whole.extend_from_slice(&chunk);
                }
                whole.freeze()
            }
        };
        Ok((status, headers, body))
    }
}

/// What one answer of the API means, as [`ApiClient::send`] decides for every attempt:
/// the pause its headers ask of the account, then the policy's classification (else the
/// default one), a rate limit pausing the account too. The pure half of an attempt, also
/// the entry point the fuzz targets drive with hostile answers.
pub fn answer(
    policy: &dyn ApiPolicy,
    limiter: &AccountLimiter,
    response: ApiResponse,
    what: &str,
) -> Result<ApiResponse, ConnectorError> {
    let ApiResponse {
        status,
        headers,
        body,
    } = &response;
    if let Some(pause) = policy.observe(headers) {
        limiter.pause_for(pause);
    }
    let refused = policy
        .classify(*status, headers, body)
        .or_else(|| default_classification(*status, headers, body, what))
        // Whatever wait a policy read from the answer, the runtime gets it clamped: it
        // schedules retries on it too.
        .map(ConnectorError::with_upstream_wait);
    match refused {
        None => Ok(response),
        Some(e) => {
            if let ConnectorError::RateLimited { retry_after, .. } = &e {
                limiter.note_throttled();
                if let Some(d) = retry_after {
                    limiter.pause_for(*d);
                }
            }
            Err(e)
        }
    }
}

/// The classification every API gets unless its policy says otherwise.
fn default_classification(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
) -> Option<ConnectorError> {
    let error = match status {
        200..=299 => return None,
        429 => ConnectorError::RateLimited {
            retry_after: retry_after(headers),
            scope: LimitScope::Burst,
        },
        401 | 403 => ConnectorError::Auth(format!("{what} answered {status}")),
        404 => ConnectorError::NotFound,
        408 | 500..=599 => ConnectorError::Transient(format!("{what} answered {status}")),
        _ => ConnectorError::Permanent {
            detail: format!("{what} answered {status}"),
            status: Some(status),
            body: Some(truncated_body(body)),
        },
    };
    Some(error)
}

/// `Retry-After` as a delay from now, whether given in seconds or as an HTTP-date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    parse_retry_after(headers.get(RETRY_AFTER)?.to_str().ok()?)
}

/// Parses a `Retry-After` value: delay-seconds, or an HTTP-date (a date already passed
/// means no wait).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(upstream_wait(Duration::from_secs(secs)));
    }
    // HTTP-date (IMF-fixdate) is a subset of RFC 2822 with "GMT" as the zone.
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.signed_duration_since(chrono::Utc::now());
    Some(upstream_wait(wait.to_std().unwrap_or(Duration::ZERO)))
}

/// The pause an API asks for with a pair of "remaining" and "reset in N seconds" headers
/// (e.g. Zendesk's `ratelimit-remaining` / `ratelimit-reset`): the reset delay once nothing
/// remains, otherwise none.
pub fn pause_when_exhausted(
    headers: &HeaderMap,
    remaining: &str,
    reset_secs: &str,
) -> Option<Duration> {
    let number =
        |name: &str| -> Option<u64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
    if number(remaining)? > 0 {
        return None;
    }
    number(reset_secs).map(|secs| upstream_wait(Duration::from_secs(secs)))
}

/// `at + d`, or the farthest point the clock can hold when that overflows. Only ever
/// reached with waits already held to [`MAX_UPSTREAM_WAIT`]; the fallback keeps a
/// mistake there a long wait instead of a panic.
fn instant_after(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(MAX_UPSTREAM_WAIT))
        .unwrap_or(at)
}

fn transport_error(e: &reqwest::Error, what: &str) -> ConnectorError {
    let cause = error_chain(e);
    if e.is_builder() {
        permanent(format!("cannot build {what}: {cause}"))
    } else if e.is_timeout() {
        ConnectorError::Transient(format!("{what} timed out: {cause}"))
    } else if e.is_connect() {
        ConnectorError::Transient(format!("cannot connect for {what}: {cause}"))
    } else {
        ConnectorError::Transient(format!("{what} failed: {cause}"))
    }
}

/// reqwest's message plus its causes, without the URL: its query string may hold a token.
fn error_chain(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    let head = match e.url() {
        Some(url) => e
            .to_string()
            .replace(&format!(" for url ({url})"), "")
            .replace(url.as_str(), url.path()),
        None => e.to_string(),
    };
    std::iter::once(head)
        .chain(parts)
        .collect::<Vec<_>>()
        .join(": ")
}

fn permanent(detail: String) -> ConnectorError {
    ConnectorError::Permanent {
        detail,
        status: None,
        body: None,
    }
}

/// At most [`MAX_ERROR_BODY`] bytes of the body as text, cut on a character boundary:
/// what an error keeps of an API's answer.
pub fn truncated_body(body: &[u8]) -> String {
    let end = body.len().min(MAX_ERROR_BODY);
    let mut text = String::from_utf8_lossy(body.get(..end).unwrap_or(body)).into_owned();
    // A multi-byte character cut at the limit decodes as U+FFFD; drop that artefact.
    if end < body.len() && text.ends_with('\u{FFFD}') {
        text.pop();
    }
    text
}

/// A path or URL without its query string, for messages and logs.
fn path_only(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_grants_requests_per_window_and_no_more() {
        let per = Duration::from_secs(10);
        let limiter = AccountLimiter::new(Limits::new(5, per));
        let start = Instant::now();
        let mut granted = Vec::new();
        for _ in 0..20 {
            limiter.acquire().await;
            granted.push(start.elapsed());
        }
        let in_first_window = granted.iter().filter(|t| **t < per).count();
        assert_eq!(in_first_window, 5, "{granted:?}");
        for pair in granted.windows(6) {
            assert!(
                pair[5] - pair[0] >= per,
                "six permits within {per:?}: {pair:?}"
            );
        }
        // No slower than the budget either: 20 permits in four windows.
        assert!(granted[19] < 4 * per, "{granted:?}");
        assert_eq!(limiter.stats().requests, 20);
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_budget_is_shared_by_concurrent_tasks() {
        let per = Duration::from_secs(1);
        let limiter = Arc::new(AccountLimiter::new(Limits::new(4, per)));
        let start = Instant::now();
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    let mut times = Vec::new();
                    for _ in 0..4 {
                        limiter.acquire().await;
                        times.push(start.elapsed());
                    }
                    times
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        all.sort();
        assert_eq!(all.iter().filter(|t| **t < per).count(), 4, "{all:?}");
        for pair in all.windows(5) {
            assert!(pair[4] - pair[0] >= per, "{all:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pause_holds_back_acquire_and_is_never_shortened() {
        let limiter = AccountLimiter::new(Limits::new(100, Duration::from_secs(1)));
        let start = Instant::now();
        limiter.pause_for(Duration::from_secs(5));
        limiter.pause_for(Duration::from_secs(1));
        assert_eq!(limiter.stats().current_wait_ms, 5000);
        limiter.acquire().await;
        assert!(
            start.elapsed() >= Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert!(
            start.elapsed() < Duration::from_secs(6),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(limiter.stats().current_wait_ms, 0);

        // A longer pause does extend one in force.
        let start = Instant::now();
        limiter.pause_for(Duration::from_secs(2));
        limiter.pause_for(Duration::from_secs(3));
        limiter.acquire().await;
        assert!(
            start.elapsed() >= Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pause_started_while_waiting_for_a_permit_is_honoured() {
        let limiter = Arc::new(AccountLimiter::new(Limits::new(1, Duration::from_secs(1))));
        limiter.acquire().await;
        let start = Instant::now();
        let waiter = {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                limiter.acquire().await;
                start.elapsed()
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        limiter.pause_for(Duration::from_secs(10));
        let waited = waiter.await.unwrap();
        assert!(waited >= Duration::from_millis(10_100), "{waited:?}");
    }

    #[test]
    fn a_body_cut_short_is_transient_and_a_wrong_one_permanent() {
        let answer = |body: &'static str| ApiResponse {
            status: 201,
            headers: HeaderMap::new(),
            body: Bytes::from_static(body.as_bytes()),
        };
        let cut = answer(r#"{"id":"42","na"#).json::<serde_json::Value>();
        assert!(matches!(cut, Err(ConnectorError::Transient(_))), "{cut:?}");
        // Complete but not what was asked for, or nothing at all: the API's fault.
        let wrong = answer(r#"{"id":42}"#).json::<Vec<String>>();
        assert!(
            matches!(
                wrong,
                Err(ConnectorError::Permanent {
                    status: Some(201),
                    ..
                })
            ),
            "{wrong:?}"
        );
        let empty = answer("").json::<serde_json::Value>();
        assert!(
            matches!(empty, Err(ConnectorError::Permanent { .. })),
            "{empty:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_of_any_length_is_held_to_the_maximum() {
        let limiter = AccountLimiter::new(Limits::new(100, Duration::from_secs(1)));
        limiter.pause_for(Duration::MAX);
        assert_eq!(
            u128::from(limiter.stats().current_wait_ms),
            MAX_UPSTREAM_WAIT.as_millis()
        );
        let stated = [
            parse_retry_after("18446744073709551615"),
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT"),
            pause_when_exhausted(
                &headers(&[("r", "0"), ("reset", "18446744073709551615")]),
                "r",
                "reset",
            ),
        ];
        assert_eq!(stated, [Some(MAX_UPSTREAM_WAIT); 3]);
    }

    #[test]
    fn http_config_defaults_and_refuses_zero() {
        assert_eq!(
            HttpConfig::default().max_response_bytes(),
            Ok(64 * 1024 * 1024)
        );
        let set: HttpConfig = serde_json::from_str(r#"{"max_response_bytes": 1000}"#).unwrap();
        assert_eq!(set.max_response_bytes(), Ok(1000));
        let zero: HttpConfig = serde_json::from_str(r#"{"max_response_bytes": 0}"#).unwrap();
        assert!(zero.max_response_bytes().is_err());
        assert!(serde_json::from_str::<HttpConfig>(r#"{"max_body": 1}"#).is_err());
    }

    #[test]
    fn zero_limits_do_not_panic() {
        assert_eq!(
            Limits::new(0, Duration::ZERO).period(),
            Duration::from_nanos(1)
        );
        // Rounded up: 190 permits never fit in less than 10 s.
        let period = Limits::new(190, Duration::from_secs(10)).period();
        assert!(period * 190 >= Duration::from_secs(10));
    }

    #[test]
    fn backoff_is_bounded_jittered_and_counts_attempts() {
        let policy = RetryPolicy {
            max_attempts: 6,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            max_elapsed: Duration::from_secs(60),
        };
        let caps = [100, 200, 400, 500, 500];
        let mut seen_below_cap = false;
        for _ in 0..50 {
            let delays: Vec<_> = policy.backoff().collect();
            assert_eq!(delays.len(), 5, "one delay per retry: {delays:?}");
            for (delay, cap) in delays.iter().zip(caps) {
                assert!(*delay <= Duration::from_millis(cap), "{delays:?}");
                seen_below_cap |= *delay < Duration::from_millis(cap / 2);
            }
        }
        assert!(seen_below_cap, "full jitter draws from [0, cap]");
        let once = RetryPolicy {
            max_attempts: 1,
            ..policy
        };
        assert_eq!(once.backoff().count(), 0);
    }

    #[test]
    fn default_classification_follows_status() {
        let none = HeaderMap::new();
        let class = |status: u16| default_classification(status, &none, b"{}", "GET /x");
        assert_eq!(class(200), None);
        assert_eq!(class(204), None);
        assert_eq!(
            class(429),
            Some(ConnectorError::RateLimited {
                retry_after: None,
                scope: LimitScope::Burst
            })
        );
        assert!(matches!(class(401), Some(ConnectorError::Auth(_))));
        assert!(matches!(class(403), Some(ConnectorError::Auth(_))));
        assert_eq!(class(404), Some(ConnectorError::NotFound));
        for status in [408, 500, 502, 503, 504] {
            assert!(
                matches!(class(status), Some(ConnectorError::Transient(_))),
                "{status}"
            );
        }
        assert_eq!(
            class(422),
            Some(ConnectorError::Permanent {
                detail: "GET /x answered 422".into(),
                status: Some(422),
                body: Some("{}".into()),
            })
        );
        let with_retry = headers(&[("retry-after", "7")]);
        assert_eq!(
            default_classification(429, &with_retry, b"", "GET /x"),
            Some(ConnectorError::RateLimited {
                retry_after: Some(Duration::from_secs(7)),
                scope: LimitScope::Burst
            })
        );
    }

    #[test]
    fn error_bodies_are_truncated_to_4_kib_on_a_char_boundary() {
        let body = "é".repeat(3000); // 6000 bytes, two per char
        let kept = truncated_body(body.as_bytes());
        assert_eq!(kept.len(), 4096);
        assert!(kept.chars().all(|c| c == 'é'));
        assert_eq!(truncated_body(b"short"), "short");
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let soon = chrono::Utc::now() + chrono::Duration::seconds(90);
        let date = soon.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let wait = parse_retry_after(&date).unwrap();
        assert!(
            wait > Duration::from_secs(85) && wait <= Duration::from_secs(90),
            "{wait:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-3"), None);
    }

    #[test]
    fn exhausted_budget_headers_give_a_pause() {
        let spent = headers(&[("ratelimit-remaining", "0"), ("ratelimit-reset", "41")]);
        assert_eq!(
            pause_when_exhausted(&spent, "ratelimit-remaining", "ratelimit-reset"),
            Some(Duration::from_secs(41))
        );
        let left = headers(&[("ratelimit-remaining", "3"), ("ratelimit-reset", "41")]);
        assert_eq!(
            pause_when_exhausted(&left, "ratelimit-remaining", "ratelimit-reset"),
            None
        );
        assert_eq!(
            pause_when_exhausted(&HeaderMap::new(), "ratelimit-remaining", "ratelimit-reset"),
            None
        );
    }

    #[test]
    fn rate_limit_config_overrides_documented_limits() {
        let documented = Limits::new(190, Duration::from_secs(10));
        assert_eq!(
            RateLimitConfig::default().resolve(documented),
            Ok(documented)
        );
        let lower: RateLimitConfig = serde_json::from_str(r#"{"requests": 100}"#).unwrap();
        assert_eq!(
            lower.resolve(documented),
            Ok(Limits::new(100, Duration::from_secs(10)))
        );
        let zero = RateLimitConfig {
            requests: Some(0),
            per_secs: None,
        };
        assert_eq!(
            zero.resolve(documented),
            Err("rate_limit.requests must be at least 1, got 0".into())
        );
        assert!(serde_json::from_str::<RateLimitConfig>(r#"{"request": 1}"#).is_err());
    }

    #[test]
    fn urls_join_the_base_and_keep_credentials_at_home() {
        let client = ApiClient::new(
            "https://api.example.com/v2/",
            Limits::new(10, Duration::from_secs(1)),
            RetryPolicy::default(),
            Duration::from_secs(5),
            Arc::new(DefaultPolicy),
        )
        .unwrap();
        let url = client
            .url_for(&ApiRequest::get("/tickets.json").with_query("page[size]", "100"))
            .unwrap();
        assert_eq!(
            url.as_str(),
            "https://api.example.com/v2/tickets.json?page%5Bsize%5D=100"
        );
        let next = ApiRequest::get("https://api.example.com/v2/tickets.json?cursor=abc");
        assert_eq!(
            client.url_for(&next).unwrap().as_str(),
            "https://api.example.com/v2/tickets.json?cursor=abc"
        );
        let elsewhere = ApiRequest::get("https://evil.example.net/steal")
            .with_auth(Auth::Bearer(Secret::new("tok")));
        assert!(matches!(
            client.url_for(&elsewhere),
            Err(ConnectorError::Permanent { .. })
        ));
    }

    #[test]
    fn debug_output_hides_credentials_and_data() {
        let req = ApiRequest::post("/search?hapikey=sekrit")
            .with_query("api_key", "sekrit")
            .with_header("X-Api-Key", "sekrit")
            .with_auth(Auth::Basic {
                user: "me@example.com/token".into(),
                password: Secret::new("sekrit"),
            })
            .with_json(serde_json::json!({"email": "person@example.com"}));
        let shown = format!("{req:?}");
        assert!(!shown.contains("sekrit"), "{shown}");
        assert!(!shown.contains("person@example.com"), "{shown}");
        assert!(shown.contains("X-Api-Key"), "{shown}");
        assert!(!req.retry, "POST is not retried unless asked");
        assert!(ApiRequest::get("/x").retry);
    }

    #[test]
    fn send_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let client = ApiClient::new(
            "http://127.0.0.1:9",
            Limits::new(1, Duration::from_secs(1)),
            RetryPolicy::default(),
            Duration::from_secs(1),
            Arc::new(DefaultPolicy),
        )
        .unwrap();
        let fut = client.send(ApiRequest::get("/"));
        assert_send(&fut);
    }
}

/// The client against a local fake API over real HTTP: what a connector sees in production.
#[cfg(test)]
mod fake_server_tests {
    use std::collections::VecDeque;
    use std::io::Write;

    use axum::body::Body as AxumBody;
    use axum::extract::{Request, State};
    use axum::response::Response;
    use axum::Router;

    use super::*;

    /// One request as the fake saw it.
    #[derive(Debug, Clone)]
    struct Seen {
        at: std::time::Instant,
        path: String,
        authorization: Option<String>,
    }

    struct Scripted {
        status: u16,
        headers: Vec<(&'static str, &'static str)>,
        body: &'static str,
    }

    fn answer(
        status: u16,
        headers: &[(&'static str, &'static str)],
        body: &'static str,
    ) -> Scripted {
        Scripted {
            status,
            headers: headers.to_vec(),
            body,
        }
    }

    #[derive(Clone, Default)]
    struct Fake {
        script: Arc<Mutex<VecDeque<Scripted>>>,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Fake {
        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    async fn handle(State(fake): State<Fake>, req: Request) -> Response {
        fake.seen.lock().unwrap().push(Seen {
            at: std::time::Instant::now(),
            path: req.uri().path().to_string(),
            authorization: req
                .headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string()),
        });
        let next = fake.script.lock().unwrap().pop_front();
        let scripted = next.unwrap_or_else(|| answer(200, &[], r#"{"ok":true}"#));
        let mut response = Response::builder().status(scripted.status);
        for (name, value) in scripted.headers {
            response = response.header(name, value);
        }
        response
            .header("content-type", "application/json")
            .body(AxumBody::from(scripted.body))
            .unwrap()
    }

    /// Starts a fake answering `script` in order, then 200 `{"ok":true}`.
    async fn fake(script: Vec<Scripted>) -> (Fake, String) {
        let fake = Fake::default();
        fake.script.lock().unwrap().extend(script);
        let app = Router::new().fallback(handle).with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (fake, format!("http://{addr}"))
    }

    fn fast_retries() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_elapsed: Duration::from_secs(10),
        }
    }

    fn client(base: &str, policy: Arc<dyn ApiPolicy>) -> ApiClient {
        client_with(
            base,
            Limits::new(1000, Duration::from_secs(1)),
            Duration::from_secs(5),
            policy,
        )
    }

    /// A client with fast retries.
    fn client_with(
        base: &str,
        limits: Limits,
        timeout: Duration,
        policy: Arc<dyn ApiPolicy>,
    ) -> ApiClient {
        ApiClient::new(base, limits, fast_retries(), timeout, policy).unwrap()
    }

    /// Issue 17: a request waiting to be retried (here for the account's next permit, a
    /// minute away) ends at once when shutdown starts, and nothing new is sent after.
    #[tokio::test]
    async fn shutdown_ends_a_retry_waiting_for_its_permit() {
        let (fake, base) = fake((0..3).map(|_| answer(503, &[], "down")).collect()).await;
        let token = tokio_util::sync::CancellationToken::new();
        let budget = Limits::new(1, Duration::from_secs(60));
        let client = client_with(
            &base,
            budget,
            Duration::from_secs(5),
            Arc::new(DefaultPolicy),
        )
        .with_shutdown(Shutdown::new(token.clone()));
        let sending = tokio::spawn({
            let client = client.clone();
            async move { client.send(ApiRequest::get("/items")).await }
        });
        while fake.seen().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let asked = Instant::now();
        token.cancel();
        let outcome = tokio::time::timeout(Duration::from_secs(5), sending)
            .await
            .expect("the retry's wait ended on shutdown")
            .unwrap();
        assert_eq!(outcome.unwrap_err(), ConnectorError::Cancelled);
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "{:?}",
            asked.elapsed()
        );
        let after = client.send(ApiRequest::get("/more")).await.unwrap_err();
        assert_eq!(after, ConnectorError::Cancelled);
        assert_eq!(fake.seen().len(), 1, "nothing sent after the first answer");
    }

    #[tokio::test]
    async fn retry_after_429_pauses_then_succeeds() {
        let (fake, base) = fake(vec![answer(
            429,
            &[("retry-after", "1")],
            r#"{"error":"slow down"}"#,
        )])
        .await;
        let client = client(&base, Arc::new(DefaultPolicy));
        let response = client.send(ApiRequest::get("/items")).await.unwrap();
        assert_eq!(response.status, 200);
        let seen = fake.seen();
        assert_eq!(seen.len(), 2, "{seen:?}");
        let gap = seen[1].at - seen[0].at;
        assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
        assert_eq!(client.limiter().stats().throttled_429, 1);
    }

    #[tokio::test]
    async fn retry_after_pauses_every_task_of_the_account() {
        let (fake, base) = fake(vec![answer(429, &[("retry-after", "1")], "{}")]).await;
        let client = client(&base, Arc::new(DefaultPolicy));
        let first = {
            let client = client.clone();
            tokio::spawn(async move { client.send(ApiRequest::get("/first")).await })
        };
        let paused = async {
            while client.limiter().stats().current_wait_ms == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), paused)
            .await
            .expect("the 429 paused the account");
        // Another task of the same connector, which never saw the 429.
        client.send(ApiRequest::get("/second")).await.unwrap();
        first.await.unwrap().unwrap();
        let seen = fake.seen();
        assert_eq!(seen.len(), 3, "{seen:?}");
        let throttled_at = seen[0].at;
        for later in &seen[1..] {
            assert!(
                later.at - throttled_at >= Duration::from_secs(1),
                "{} reached the API {:?} after the 429",
                later.path,
                later.at - throttled_at
            );
        }
    }

    /// A server that asks for an absurd wait must not crash the client (an `Instant`
    /// overflow), and the account pause it causes is held to the documented maximum.
    #[tokio::test]
    async fn overflowing_retry_after_is_clamped_not_a_panic() {
        let (fake, base) = fake(vec![answer(
            429,
            &[("retry-after", "18446744073709551615")],
            "{}",
        )])
        .await;
        let client = client(&base, Arc::new(DefaultPolicy));
        let err = client.send(ApiRequest::get("/items")).await.unwrap_err();
        assert_eq!(
            err,
            ConnectorError::RateLimited {
                retry_after: Some(MAX_UPSTREAM_WAIT),
                scope: LimitScope::Burst
            }
        );
        assert_eq!(
            fake.seen().len(),
            1,
            "a day-long wait is beyond the retry budget"
        );
        let wait = client.limiter().stats().current_wait_ms;
        assert!(
            wait > 0 && u128::from(wait) <= MAX_UPSTREAM_WAIT.as_millis(),
            "{wait}"
        );
    }

    #[tokio::test]
    async fn overflowing_reset_header_is_clamped_not_a_panic() {
        struct Reset;
        impl ApiPolicy for Reset {
            fn observe(&self, headers: &HeaderMap) -> Option<Duration> {
                pause_when_exhausted(headers, "x-remaining", "x-reset")
            }
        }
        let (_fake, base) = fake(vec![answer(
            200,
            &[("x-remaining", "0"), ("x-reset", "18446744073709551615")],
            "{}",
        )])
        .await;
        let client = client(&base, Arc::new(Reset));
        client.send(ApiRequest::get("/items")).await.unwrap();
        let wait = client.limiter().stats().current_wait_ms;
        assert!(
            wait > 0 && u128::from(wait) <= MAX_UPSTREAM_WAIT.as_millis(),
            "{wait}"
        );
    }

    fn assert_too_large(err: ConnectorError, says: &str) {
        match err {
            ConnectorError::Permanent {
                detail,
                status: Some(200),
                body: None,
            } => assert!(detail.contains(says), "{detail}"),
            other => panic!("expected permanent, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_permanent_and_not_retried() {
        let big: &'static str = Box::leak("x".repeat(4097).into_boxed_str());
        let exact: &'static str = Box::leak(format!("\"{}\"", "x".repeat(4094)).into_boxed_str());
        let (fake, base) = fake(vec![answer(200, &[], big), answer(200, &[], exact)]).await;
        let client = client(&base, Arc::new(DefaultPolicy)).with_max_response_bytes(4096);
        let err = client.send(ApiRequest::get("/big")).await.unwrap_err();
        assert_too_large(err, "4097 bytes");
        assert_eq!(fake.seen().len(), 1, "the same body would come back");
        let fits = client.send(ApiRequest::get("/exact")).await.unwrap();
        assert_eq!(fits.body.len(), 4096);
    }

    /// A body without Content-Length is read no further than the cap.
    #[tokio::test]
    async fn a_chunked_body_stops_at_the_cap() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let sent = Arc::new(AtomicU64::new(0));
        let server = {
            let sent = sent.clone();
            tokio::spawn(async move {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 65536 {
                    let n = socket.read(&mut buf).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("400\r\n{}\r\n", "x".repeat(1024));
                // 1 MiB offered; the client should hang up long before.
                for _ in 0..1024 {
                    if socket.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                    sent.fetch_add(1024, Ordering::Relaxed);
                }
                let _ = socket.write_all(b"0\r\n\r\n").await;
            })
        };
        let client = client(&base, Arc::new(DefaultPolicy)).with_max_response_bytes(4096);
        let err = client
            .send(ApiRequest::get("/stream").with_retry(false))
            .await
            .unwrap_err();
        assert_too_large(err, "more than 4096 bytes");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server stops once the client hangs up")
            .unwrap();
        assert!(
            sent.load(Ordering::Relaxed) < 1024 * 1024,
            "the client stopped reading at the cap"
        );
    }

    #[tokio::test]
    async fn server_errors_are_retried_until_success() {
        let (fake, base) = fake(vec![answer(500, &[], "oops"), answer(503, &[], "oops")]).await;
        let client = client(&base, Arc::new(DefaultPolicy));
        let response = client.send(ApiRequest::get("/items")).await.unwrap();
        assert_eq!(
            response.json::<serde_json::Value>().unwrap(),
            serde_json::json!({"ok": true})
        );
        assert_eq!(fake.seen().len(), 3);
    }

    #[tokio::test]
    async fn retries_stop_after_max_attempts() {
        let script = (0..10).map(|_| answer(502, &[], "bad gateway")).collect();
        let (fake, base) = fake(script).await;
        let client = client(&base, Arc::new(DefaultPolicy));
        let err = client.send(ApiRequest::get("/items")).await.unwrap_err();
        assert!(matches!(err, ConnectorError::Transient(_)), "{err:?}");
        assert_eq!(fake.seen().len(), 4, "max_attempts is 4");
    }

    #[tokio::test]
    async fn bad_request_is_permanent_with_the_body_and_not_retried() {
        let body = r#"{"status":"error","message":"Property values were not valid","category":"VALIDATION_ERROR"}"#;
        let (fake, base) = fake(vec![answer(400, &[], body)]).await;
        let client = client(&base, Arc::new(DefaultPolicy));
        let err = client
            .send(
                ApiRequest::post("/crm/v3/objects/contacts")
                    .with_retry(true)
                    .with_json(serde_json::json!({})),
            )
            .await
            .unwrap_err();
        match err {
            ConnectorError::Permanent {
                status,
                body: got,
                detail,
            } => {
                assert_eq!(status, Some(400));
                assert_eq!(got.as_deref(), Some(body));
                assert_eq!(detail, "POST /crm/v3/objects/contacts answered 400");
            }
            other => panic!("expected permanent, got {other:?}"),
        }
        assert_eq!(fake.seen().len(), 1);
    }

    #[tokio::test]
    async fn unauthorized_is_auth_and_not_retried() {
        let (fake, base) = fake(vec![answer(401, &[], r#"{"message":"expired"}"#)]).await;
        let client = client(&base, Arc::new(DefaultPolicy));
        let err = client.send(ApiRequest::get("/items")).await.unwrap_err();
        assert!(matches!(err, ConnectorError::Auth(_)), "{err:?}");
        assert_eq!(fake.seen().len(), 1);
    }

    #[tokio::test]
    async fn no_retry_request_is_sent_once() {
        let (fake, base) = fake(vec![answer(500, &[], "oops")]).await;
        let client = client(&base, Arc::new(DefaultPolicy));
        let err = client
            .send(ApiRequest::get("/items").with_retry(false))
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectorError::Transient(_)), "{err:?}");
        assert_eq!(fake.seen().len(), 1);
    }

    #[tokio::test]
    async fn daily_limit_is_returned_not_retried() {
        struct DailyOn429;
        impl ApiPolicy for DailyOn429 {
            fn classify(&self, status: u16, _: &HeaderMap, _: &[u8]) -> Option<ConnectorError> {
                (status == 429).then_some(ConnectorError::RateLimited {
                    retry_after: None,
                    scope: LimitScope::Daily,
                })
            }
        }
        let (fake, base) = fake(vec![answer(429, &[], r#"{"policyName":"DAILY"}"#)]).await;
        let client = client(&base, Arc::new(DailyOn429));
        let err = client.send(ApiRequest::get("/items")).await.unwrap_err();
        assert_eq!(
            err,
            ConnectorError::RateLimited {
                retry_after: None,
                scope: LimitScope::Daily
            }
        );
        assert_eq!(fake.seen().len(), 1);
        assert_eq!(client.limiter().stats().throttled_429, 1);
    }

    #[tokio::test]
    async fn exhausted_budget_header_pauses_the_next_request() {
        struct TestHeaders;
        impl ApiPolicy for TestHeaders {
            fn observe(&self, headers: &HeaderMap) -> Option<Duration> {
                (headers.get("x-test-remaining")? == "0").then_some(Duration::from_millis(500))
            }
        }
        let (fake, base) = fake(vec![answer(200, &[("x-test-remaining", "0")], "{}")]).await;
        let client = client(&base, Arc::new(TestHeaders));
        client.send(ApiRequest::get("/a")).await.unwrap();
        client.send(ApiRequest::get("/b")).await.unwrap();
        let seen = fake.seen();
        let gap = seen[1].at - seen[0].at;
        assert!(
            gap >= Duration::from_millis(500),
            "second request after {gap:?}"
        );
        assert_eq!(client.limiter().stats().throttled_429, 0);
    }

    #[tokio::test]
    async fn connection_refused_is_transient() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let client = client(&base, Arc::new(DefaultPolicy));
        let err = client
            .send(ApiRequest::get("/items").with_retry(false))
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectorError::Transient(_)), "{err:?}");
    }

    #[tokio::test]
    async fn slow_answer_times_out_as_transient() {
        let app = Router::new().fallback(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late"
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let limits = Limits::new(10, Duration::from_secs(1));
        let client = client_with(
            &base,
            limits,
            Duration::from_millis(200),
            Arc::new(DefaultPolicy),
        );
        let err = client
            .send(ApiRequest::get("/slow").with_retry(false))
            .await
            .unwrap_err();
        match err {
            ConnectorError::Transient(msg) => assert!(msg.contains("timed out"), "{msg}"),
            other => panic!("expected transient, got {other:?}"),
        }
    }

    /// A log sink for one test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Logs of the whole test binary. A global subscriber rather than `set_default`: tracing
    /// caches a callsite's interest process-wide, so a callsite first hit by another test's
    /// thread (no subscriber there) would stay disabled for a thread-local one.
    fn captured_logs() -> Captured {
        static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Captured::default();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer({
                    let logs = logs.clone();
                    move || logs.clone()
                })
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
            logs
        })
        .clone()
    }

    #[tokio::test]
    async fn credentials_are_sent_but_never_logged() {
        let logs = captured_logs();

        let (fake, base) = fake(vec![answer(500, &[], "oops")]).await;
        let client = client(&base, Arc::new(DefaultPolicy));
        client
            .send(
                ApiRequest::get("/bearer")
                    .with_query("api_key", "query-sekrit")
                    .with_auth(Auth::Bearer(Secret::new("pat-na1-sekrit"))),
            )
            .await
            .unwrap();
        client
            .send(ApiRequest::get("/basic").with_auth(Auth::Basic {
                user: "agent@example.com/token".into(),
                password: Secret::new("zd-sekrit"),
            }))
            .await
            .unwrap();

        let seen = fake.seen();
        let auth: Vec<_> = seen.iter().map(|s| s.authorization.as_deref()).collect();
        assert_eq!(
            auth,
            [
                Some("Bearer pat-na1-sekrit"),
                Some("Bearer pat-na1-sekrit"),
                // base64("agent@example.com/token:zd-sekrit")
                Some("Basic YWdlbnRAZXhhbXBsZS5jb20vdG9rZW46emQtc2Vrcml0"),
            ]
        );

        let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(logs.contains("path=/bearer"), "{logs}");
        assert!(logs.contains("status=500"), "{logs}");
        assert!(logs.contains("attempt=2"), "{logs}");
        assert!(logs.contains("path=/basic"), "{logs}");
        for secret in [
            "sekrit",
            "YWdlbnRAZXhhbXBsZS5jb20vdG9rZW46emQtc2Vrcml0",
            "api_key",
        ] {
            assert!(!logs.contains(secret), "`{secret}` in logs:\n{logs}");
        }
    }
}
