//! A webinar platform on loopback (feature `sim`): webinars, registrants, attendance.
//!
//! It is the API the `type: rest` connector is declared against, shaped like a real webinar
//! platform (docs/simulators.md, "Webinar"): page-number paging of webinars, one registrant
//! list that offers a cursor in the body, a `next` URL in the body and a `Link` header at
//! once, offset paging of attendance, a per-token budget of requests in a fixed one-minute
//! window, idempotent creates, and a signed `registrant.created` webhook.
//!
//! Record times come from a clock the tests move forward (`advance`); so does the rate
//! limit's window, so a test waits out a 429 without sleeping.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use revsync_sdk::simfault::{self, Fault, Faults};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

mod api;
mod hooks;
mod people;
mod records;

pub use hooks::sign;
use records::{Changes, Registrant, Webinar};

/// How the simulated platform behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Bearer tokens the API accepts; each has its own request budget.
    pub tokens: Vec<String>,
    /// Requests per token in each fixed 60 s window.
    pub requests_per_minute: u32,
    /// Where `registrant.created` events are POSTed; none: no webhooks.
    pub webhook_url: Option<String>,
    pub webhook_secret: String,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            tokens: vec!["webinar-sim-token".into()],
            requests_per_minute: 120,
            webhook_url: None,
            webhook_secret: "webinar-sim-webhook-secret".into(),
        }
    }
}

/// What the simulator saw, for assertions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Every request that reached the API, refused ones included.
    pub requests: u64,
    pub unauthorized: u64,
    /// Requests refused with 429 by the budget (injected faults are counted by `faults()`).
    pub throttled: u64,
    /// Registrants created and updated through the API (not by the harness or seeding).
    pub created: u64,
    pub updated: u64,
    /// Creates answered with the stored answer of an earlier one with the same key.
    pub idempotent_replays: u64,
    /// Webhook events posted (each once, whatever its retries), and those given up on.
    pub webhook_posts: u64,
    pub webhook_failures: u64,
    /// `METHOD /path` of requests no simulated route answered, each logged once.
    pub not_simulated: BTreeSet<String>,
}

/// The seconds a rate-limit window lasts.
const WINDOW_SECS: i64 = 60;

/// One token's use of its budget: the window's start (simulator clock) and requests in it.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    used: u32,
}

/// A create's answer kept under its idempotency key: (token, key) -> (status, body).
type Replays = HashMap<(String, String), (StatusCode, Value)>;

struct Inner {
    cfg: SimConfig,
    /// `http://127.0.0.1:port`, for the absolute `next` URLs.
    base: String,
    webinars: BTreeMap<u64, Webinar>,
    registrants: BTreeMap<u64, Registrant>,
    /// Registrants in list order, (updated_at, number): a page is a range of it.
    order: BTreeSet<(i64, u64)>,
    /// (webinar number, email trimmed and lower-cased) -> registrant number.
    emails: HashMap<(u64, String), u64>,
    next_webinar: u64,
    next_registrant: u64,
    next_event: u64,
    /// How many people seeding has generated, so a second `seed` makes new ones.
    generated: u64,
    /// Seconds added to the wall clock by `advance`.
    offset: i64,
    windows: HashMap<String, Window>,
    replays: Replays,
    events: mpsc::UnboundedSender<hooks::Outgoing>,
    stats: SimStats,
}

/// Registrant numbers start here so that all have six digits for a long while: `reg_<n>`
/// in string order is then list order too, whichever a client compares.
const FIRST_REGISTRANT: u64 = 100_001;
const FIRST_WEBINAR: u64 = 1001;

impl Inner {
    fn now(&self) -> i64 {
        Utc::now().timestamp() + self.offset
    }

    fn webinar_by_id(&self, id: &str) -> Option<&Webinar> {
        self.webinars.get(&number(id, "web_")?)
    }

    fn add_webinar(&mut self, title: String, starts_at: i64, minutes: u32, at: i64) -> u64 {
        let n = self.next_webinar;
        self.next_webinar += 1;
        let w = Webinar {
            n,
            title,
            starts_at,
            duration_minutes: minutes,
            created_at: at,
            updated_at: at,
        };
        self.webinars.insert(n, w);
        n
    }

    /// The registrant of `email` in `webinar`, if one registered already.
    fn registered(&self, webinar: u64, email: &str) -> Option<u64> {
        self.emails.get(&(webinar, normal(email))).copied()
    }

    /// A new registrant (the email checked unique by the caller), announced by webhook
    /// unless seeding; its number.
    fn create(&mut self, webinar: u64, c: Changes, at: i64, announce: bool) -> u64 {
        let n = self.next_registrant;
        self.next_registrant += 1;
        let email = normal(c.email.as_deref().unwrap_or_default());
        let r = Registrant {
            n,
            webinar,
            email: email.clone(),
            first_name: c.first_name.unwrap_or_default(),
            last_name: c.last_name.unwrap_or_default(),
            company: c.company.flatten(),
            job_title: c.job_title.flatten(),
            registered_at: at,
            attended: c.attended.unwrap_or(false),
            updated_at: at,
        };
        self.emails.insert((webinar, email), n);
        self.order.insert((at, n));
        self.registrants.insert(n, r);
        if announce {
            self.announce(n);
        }
        n
    }

    /// Applies `c` and moves the registrant to `at` in list order.
    fn update(&mut self, n: u64, c: Changes, at: i64) {
        let Some(r) = self.registrants.get_mut(&n) else {
            return;
        };
        self.order.remove(&(r.updated_at, n));
        r.apply(c);
        r.updated_at = at;
        self.order.insert((at, n));
    }

    fn registrant_json(&self, n: u64) -> Value {
        self.registrants
            .get(&n)
            .map_or(Value::Null, Registrant::json)
    }

    /// Queues a `registrant.created` event for the webhook target, if there is one.
    fn announce(&mut self, n: u64) {
        let Some(url) = self.cfg.webhook_url.clone() else {
            return;
        };
        self.next_event += 1;
        let event = json!({
            "event": "registrant.created",
            "event_id": format!("evt_{}", self.next_event),
            "created_at": rfc3339(self.now()),
            "data": self.registrant_json(n),
        });
        let out = hooks::Outgoing {
            url,
            secret: self.cfg.webhook_secret.clone(),
            // A JSON value always serializes.
            body: serde_json::to_vec(&event).unwrap_or_default(),
        };
        let _ = self.events.send(out);
    }
}

/// The number in `web_12` or `reg_100001`.
fn number(id: &str, prefix: &str) -> Option<u64> {
    id.strip_prefix(prefix)?.parse().ok()
}

/// An email as uniqueness sees it: without surrounding spaces, in lower case.
fn normal(email: &str) -> String {
    email.trim().to_lowercase()
}

fn rfc3339(ts: i64) -> String {
    DateTime::<Utc>::from_timestamp(ts, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running simulator.
#[derive(Clone)]
pub struct Sim {
    state: Shared,
    pub addr: SocketAddr,
    faults: Faults,
}

impl Sim {
    // Harness API for tests and the demo: a panic here is the caller's mistake (an
    // unknown webinar, a field the API refuses), never something a request can cause.
    #[allow(clippy::expect_used)]
    pub async fn start(cfg: SimConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(Mutex::new(Inner {
            cfg,
            base: format!("http://{addr}"),
            webinars: BTreeMap::new(),
            registrants: BTreeMap::new(),
            order: BTreeSet::new(),
            emails: HashMap::new(),
            next_webinar: FIRST_WEBINAR,
            next_registrant: FIRST_REGISTRANT,
            next_event: 0,
            generated: 0,
            offset: 0,
            windows: HashMap::new(),
            replays: HashMap::new(),
            events: tx,
            stats: SimStats::default(),
        }));
        tokio::spawn(hooks::deliver(state.clone(), rx));
        let api = Router::new()
            .route("/v1/webinars", get(api::list_webinars))
            .route(
                "/v1/webinars/{webinar_id}/registrants",
                post(api::create_registrant),
            )
            .route("/v1/registrants", get(api::list_registrants))
            .route(
                "/v1/registrants/{id}",
                get(api::show_registrant).patch(api::update_registrant),
            )
            .route("/v1/attendance", get(api::list_attendance))
            .fallback(not_simulated)
            .method_not_allowed_fallback(not_simulated)
            .layer(from_fn_with_state(state.clone(), gate))
            .with_state(state.clone());
        let faults = Faults::new(fault_answer);
        let app = api.layer(from_fn_with_state(faults.clone(), simfault::inject));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            state,
            addr,
            faults,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.state)
    }

    /// The API's origin; every path starts with `/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The first accepted token (`Authorization: Bearer <token>`).
    pub fn token(&self) -> String {
        self.lock().cfg.tokens.first().cloned().unwrap_or_default()
    }

    pub fn config(&self) -> SimConfig {
        self.lock().cfg.clone()
    }

    /// Injected faults (none until set): 429 `rate_limited` with `Retry-After: 1`, 503s,
    /// stalls and cut-short answers, on every route. A stalled or cut create has stored
    /// its idempotency key's answer.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    pub fn stats(&self) -> SimStats {
        self.lock().stats.clone()
    }

    /// Moves the clock forward, as if `secs` had passed: record times and the rate
    /// limit's window follow it.
    pub fn advance(&self, secs: i64) {
        self.lock().offset += secs;
    }

    /// The simulator's current time (Unix seconds).
    pub fn now(&self) -> i64 {
        self.lock().now()
    }

    /// Sends `registrant.created` events to `url` from now on, signed with `secret`.
    pub fn set_webhook(&self, url: &str, secret: &str) {
        let mut s = self.lock();
        s.cfg.webhook_url = Some(url.to_owned());
        s.cfg.webhook_secret = secret.to_owned();
    }

    /// Lowers or raises every token's budget (requests per minute).
    pub fn set_rate_limit(&self, requests_per_minute: u32) {
        self.lock().cfg.requests_per_minute = requests_per_minute;
    }

    /// Creates `webinars` webinars (half already held) and `registrants` registrants
    /// spread over all the webinars there are, with generated people: the same calls make
    /// the same data. Registrations are stamped in the past, several sharing a second, and
    /// a past webinar's attendees were updated when it ended. No webhooks: this is the
    /// platform's history, not news. The new (webinar ids, registrant ids).
    pub fn seed(&self, webinars: usize, registrants: usize) -> (Vec<String>, Vec<String>) {
        let mut s = self.lock();
        people::seed(&mut s, webinars, registrants)
    }

    /// Registers a person as the platform's own form would, stamped now, announced by
    /// webhook; the registrant's id (the existing one's, for an email already registered).
    // Harness API: a panic here is the caller's mistake, never a request's.
    #[allow(clippy::expect_used)]
    pub fn register(
        &self,
        webinar_id: &str,
        email: &str,
        first_name: &str,
        last_name: &str,
        company: Option<&str>,
        job_title: Option<&str>,
    ) -> String {
        let mut s = self.lock();
        let webinar = s.webinar_by_id(webinar_id).expect("a known webinar id").n;
        if let Some(n) = s.registered(webinar, email) {
            return records::registrant_id(n);
        }
        let c = Changes {
            email: Some(email.to_owned()),
            first_name: Some(first_name.to_owned()),
            last_name: Some(last_name.to_owned()),
            company: Some(company.map(str::to_owned)),
            job_title: Some(job_title.map(str::to_owned)),
            attended: None,
        };
        let at = s.now();
        records::registrant_id(s.create(webinar, c, at, true))
    }

    /// Changes a registrant's writable fields as `PATCH` would, stamped now.
    // Harness API: a panic here is the caller's mistake, never a request's.
    #[allow(clippy::expect_used)]
    pub fn update(&self, id: &str, fields: Value) {
        let mut s = self.lock();
        let n = number(id, "reg_")
            .filter(|n| s.registrants.contains_key(n))
            .expect("a known registrant id");
        let map = fields.as_object().expect("an object of fields");
        let c = records::patch(map).expect("writable fields of the right types");
        let at = s.now();
        s.update(n, c, at);
    }

    /// Every registrant, by id.
    pub fn registrants(&self) -> Vec<Value> {
        let s = self.lock();
        s.registrants.values().map(Registrant::json).collect()
    }

    /// Every webinar, by id.
    pub fn webinars(&self) -> Vec<Value> {
        let s = self.lock();
        s.webinars.values().map(Webinar::json).collect()
    }
}

/// An answer as a create keeps it under its idempotency key.
type Answer = (StatusCode, Value);

/// The platform's error body: `{"error":{"code","message"}}`.
fn error_answer(status: StatusCode, code: &str, message: &str) -> Answer {
    (status, json!({"error": {"code": code, "message": message}}))
}

/// A 422 naming the field at fault.
fn invalid_answer(field: &str, message: &str) -> Answer {
    let body = json!({"error": {"code": "validation_failed", "message": message, "field": field}});
    (StatusCode::UNPROCESSABLE_ENTITY, body)
}

fn not_found_answer(what: &str) -> Answer {
    error_answer(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("{what} not found"),
    )
}

fn respond((status, body): Answer) -> Response {
    (status, Json(body)).into_response()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    respond(error_answer(status, code, message))
}

fn invalid(field: &str, message: &str) -> Response {
    respond(invalid_answer(field, message))
}

fn not_found(what: &str) -> Response {
    respond(not_found_answer(what))
}

/// An endpoint the simulator does not have: a 404, and a warning the first time each one
/// is asked for, so a gap in the simulation shows instead of passing quietly.
async fn not_simulated(State(state): State<Shared>, req: Request) -> Response {
    let key = format!("{} {}", req.method(), req.uri().path());
    if lock(&state).stats.not_simulated.insert(key.clone()) {
        tracing::warn!(request = %key, "webinar simulator: not simulated");
    }
    not_found(&format!("no route {key}; it"))
}

/// What the platform answers for an injected refusal: its rate limiter's 429 with a
/// second's `Retry-After`, or a 503 while the service is briefly unavailable.
fn fault_answer(fault: Fault) -> Response {
    match fault {
        Fault::Throttle => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests, retry after 1 second",
            );
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
            r
        }
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "the service is temporarily unavailable, try again shortly",
        ),
    }
}

/// The token a request was admitted with, for handlers that scope by it.
#[derive(Debug, Clone)]
struct Token(String);

/// Authentication and the token's budget; the budget's headers on every admitted answer.
async fn gate(State(state): State<Shared>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let (limit, remaining, reset) = {
        let mut s = lock(&state);
        s.stats.requests += 1;
        let Some(token) = token.filter(|t| s.cfg.tokens.contains(t)) else {
            s.stats.unauthorized += 1;
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required",
            );
        };
        let now = s.now();
        let limit = s.cfg.requests_per_minute;
        let w = s.windows.entry(token.clone()).or_insert(Window {
            start: now,
            used: 0,
        });
        if now >= w.start + WINDOW_SECS {
            *w = Window {
                start: now,
                used: 0,
            };
        }
        let reset = w.start + WINDOW_SECS;
        let over = w.used >= limit;
        if !over {
            w.used += 1;
        }
        let remaining = limit.saturating_sub(w.used);
        if over {
            s.stats.throttled += 1;
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                &format!("over the budget of {limit} requests per minute for this token"),
            );
            rate_headers(&mut r, limit, 0, reset);
            r.headers_mut()
                .insert("retry-after", HeaderValue::from((reset - now).max(1)));
            return r;
        }
        req.extensions_mut().insert(Token(token));
        (limit, remaining, reset)
    };
    let mut r = next.run(req).await;
    rate_headers(&mut r, limit, remaining, reset);
    r
}

fn rate_headers(r: &mut Response, limit: u32, remaining: u32, reset: i64) {
    let h = r.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    h.insert("x-ratelimit-reset", HeaderValue::from(reset));
}

/// A JSON request body as an object, or the 400 the platform answers.
fn body_object(bytes: &[u8]) -> Result<Map<String, Value>, Answer> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(error_answer(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body must be a JSON object",
        )),
    }
}
