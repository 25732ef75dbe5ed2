//! A stateful HubSpot CRM v3 on loopback (feature `sim`): the paths, shapes, limits and
//! errors of API_FACTS section 1, for tests and `revsync demo`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{TimeZone, Utc};
use revsync_sdk::http::{ApiClient, ApiRequest, Body, DefaultPolicy, Limits, RetryPolicy};
use revsync_sdk::simfault::{self, Fault, Faults};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use crate::mapping::{self, format_time, ObjectSpec};
use crate::webhook::sign_v3;

mod assoc;
mod filter;
mod history;
mod params;
mod properties;
mod refusal;
mod single;

use filter::{matches, rec_num};
use refusal::Refusal;

/// How the simulated account behaves.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub token: String,
    pub client_secret: String,
    /// Requests per rolling window (HubSpot: 100 or 190 per 10 s by tier).
    pub burst_limit: u32,
    pub burst_window: Duration,
    /// Search requests per second (documented 5).
    pub search_per_sec: u32,
    /// Requests per day; `None`: unlimited.
    pub daily_limit: Option<u64>,
    /// How long a write takes to show in search ("a few moments").
    pub search_lag: Duration,
    /// Where every change is delivered, v3-signed, as HubSpot webhooks.
    pub webhook_url: Option<String>,
    /// The custom unique property holding the canonical id, in every object.
    pub canonical_id_property: String,
    /// Whether 429s carry `Retry-After` (seconds); unconfirmed for HubSpot [U].
    pub retry_after_on_429: bool,
    /// Refuse a request body without an attribute HubSpot's published OpenAPI spec marks
    /// required, as a validating gateway or mock does: today a batch read without
    /// `inputs`, `properties` or `propertiesWithHistory`. Off by default: HubSpot's own
    /// Python client (hubspot-api-client 12) leaves `propertiesWithHistory` out, and the
    /// fidelity suite expects that read answered. Tests turn it on to hold a connector to
    /// the spec.
    pub strict_spec: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            token: "pat-na1-sim".into(),
            client_secret: "sim-client-secret".into(),
            burst_limit: 190,
            burst_window: Duration::from_secs(10),
            search_per_sec: 5,
            daily_limit: None,
            search_lag: Duration::ZERO,
            webhook_url: None,
            canonical_id_property: "revsync_id".into(),
            retry_after_on_429: false,
            strict_spec: false,
        }
    }
}

/// Counters a test asserts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    pub requests: u64,
    pub search_requests: u64,
    pub throttled_burst: u64,
    pub throttled_search: u64,
    pub throttled_daily: u64,
    pub batch_writes: u64,
    pub webhook_posts: u64,
    pub webhook_failures: u64,
}

#[derive(Debug, Clone)]
struct Rec {
    id: u64,
    props: BTreeMap<String, String>,
    created_ms: i64,
    updated_ms: i64,
    archived_ms: Option<i64>,
    /// Every value each property took and when, oldest first: what `propertiesWithHistory`
    /// serves (newest first).
    history: BTreeMap<String, Vec<(i64, String)>>,
}

struct St {
    opts: SimOptions,
    objects: BTreeMap<&'static str, BTreeMap<u64, Rec>>,
    /// The property definitions of each object, custom ones included.
    props: BTreeMap<&'static str, Vec<properties::Prop>>,
    /// (object, id, object, id), stored both ways.
    assoc: BTreeSet<(&'static str, u64, &'static str, u64)>,
    next_id: u64,
    burst: VecDeque<Instant>,
    search: VecDeque<Instant>,
    daily_used: u64,
    next_event: u64,
    stats: SimStats,
    events: Option<mpsc::UnboundedSender<Value>>,
    /// This server's own URL, for `paging.next.link` (HubSpot's is absolute).
    base_url: String,
    /// `METHOD /path` of each request no simulated route answered.
    not_simulated: BTreeSet<String>,
}

type Shared = Arc<Mutex<St>>;

/// A running simulator.
#[derive(Clone)]
pub struct Sim {
    state: Shared,
    addr: SocketAddr,
    faults: Faults,
}

const PORTAL_ID: u64 = 62515;
const APP_ID: u64 = 54321;

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn spec_of(name: &str) -> Option<&'static ObjectSpec> {
    mapping::spec(name)
}

fn singular(o: &str) -> &'static str {
    match o {
        "contacts" => "contact",
        "companies" => "company",
        _ => "deal",
    }
}

impl Sim {
    // Harness API for tests and the demo: a panic here is the caller's mistake (an
    // unknown object, a non-numeric id), never something a request can cause.
    #[allow(clippy::expect_used)]
    pub async fn start(opts: SimOptions) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let webhook_url = opts.webhook_url.clone();
        let secret = opts.client_secret.clone();
        let state = Arc::new(Mutex::new(St {
            objects: mapping::OBJECTS
                .iter()
                .map(|o| (o.name, BTreeMap::new()))
                .collect(),
            props: mapping::OBJECTS
                .iter()
                .filter_map(|o| {
                    Some((o.name, properties::of(o.name, &opts.canonical_id_property)?))
                })
                .collect(),
            assoc: BTreeSet::new(),
            next_id: 1001,
            burst: VecDeque::new(),
            search: VecDeque::new(),
            daily_used: 0,
            next_event: 1,
            stats: SimStats::default(),
            events: webhook_url.is_some().then_some(tx),
            base_url: String::new(),
            not_simulated: BTreeSet::new(),
            opts,
        }));
        if let Some(url) = webhook_url {
            tokio::spawn(deliver(state.clone(), rx, url, secret));
        }
        let faults = Faults::new({
            let state = state.clone();
            move |fault| fault_answer(&state, fault)
        });
        let app = Router::new()
            .route("/crm/v3/properties/{obj}", get(property_definitions))
            .route("/crm/v3/objects/{obj}", get(list).post(single::create))
            .route(
                "/crm/v3/objects/{obj}/{id}",
                get(single::one).patch(single::one).delete(single::one),
            )
            .route("/crm/v3/objects/{obj}/search", post(search))
            .route("/crm/v3/objects/{obj}/batch/{op}", post(batch))
            .route(
                "/crm/v4/associations/{from}/{to}/batch/read",
                post(assoc::read),
            )
            .route(
                "/crm/v4/associations/{from}/{to}/batch/associate/default",
                post(assoc::associate_default),
            )
            .fallback(not_simulated)
            .method_not_allowed_fallback(not_simulated)
            .layer(axum::middleware::from_fn_with_state(
                faults.clone(),
                simfault::inject,
            ))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        lock(&state).base_url = format!("http://{addr}");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            state,
            addr,
            faults,
        }
    }

    /// Injected faults (none until set): 429s of the rolling window, 500s, stalls and
    /// cut-short answers, on every route.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, St> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates `n` records of generated data now, as a user would; their ids.
    // Harness API for tests and the demo: a panic here is the caller's mistake (an
    // unknown object, a non-numeric id), never something a request can cause.
    #[allow(clippy::expect_used)]
    pub fn seed(&self, object: &str, n: usize) -> Vec<String> {
        let spec = spec_of(object).expect("a hubspot object");
        let mut s = self.lock();
        (0..n)
            .map(|_| {
                let ms = now_ms();
                let props = generated(object, s.next_id);
                s.insert(spec, props, ms).to_string()
            })
            .collect()
    }

    /// Creates `n` records modified at `start_ms`, `start_ms + step_ms`, ... (history).
    // Harness API for tests and the demo: a panic here is the caller's mistake (an
    // unknown object, a non-numeric id), never something a request can cause.
    #[allow(clippy::expect_used)]
    pub fn seed_at(&self, object: &str, n: usize, start_ms: i64, step_ms: i64) -> Vec<String> {
        let spec = spec_of(object).expect("a hubspot object");
        let mut s = self.lock();
        (0..n)
            .map(|i| {
                let props = generated(object, s.next_id);
                let ms = start_ms + step_ms * i64::try_from(i).unwrap_or(0);
                s.insert(spec, props, ms).to_string()
            })
            .collect()
    }

    /// Changes properties now, as a user would.
    // Harness API for tests and the demo: a panic here is the caller's mistake (an
    // unknown object, a non-numeric id), never something a request can cause.
    #[allow(clippy::expect_used)]
    pub fn update(&self, object: &str, id: &str, props: &[(&str, &str)]) {
        self.update_at(object, id, props, now_ms());
    }

    /// Changes properties at `ms` (epoch milliseconds), which may be in the past: the
    /// simulator has no settable clock, so a test builds a record's past this way, each
    /// value kept in its property history with that time (issue 20).
    // Harness API for tests and the demo: a panic here is the caller's mistake (an
    // unknown object, a non-numeric id), never something a request can cause.
    #[allow(clippy::expect_used)]
    pub fn update_at(&self, object: &str, id: &str, props: &[(&str, &str)], ms: i64) {
        let mut s = self.lock();
        let id: u64 = id.parse().expect("numeric id");
        s.apply(object, id, owned(props), ms);
    }

    /// Creates a record with `props` at `ms` (epoch milliseconds, past allowed, as for
    /// [`Sim::update_at`]); its id.
    // Harness API for tests and the demo: a panic here is the caller's mistake (an
    // unknown object), never something a request can cause.
    #[allow(clippy::expect_used)]
    pub fn create_at(&self, object: &str, props: &[(&str, &str)], ms: i64) -> String {
        let spec = spec_of(object).expect("a hubspot object");
        self.lock().insert(spec, owned(props), ms).to_string()
    }

    /// Moves a record to the recycle bin.
    // Harness API for tests and the demo: a panic here is the caller's mistake (an
    // unknown object, a non-numeric id), never something a request can cause.
    #[allow(clippy::expect_used)]
    pub fn archive(&self, object: &str, id: &str) {
        let mut s = self.lock();
        s.archive(object, id.parse().expect("numeric id"), now_ms());
    }

    pub fn get(&self, object: &str, id: &str) -> Option<BTreeMap<String, String>> {
        let s = self.lock();
        let id: u64 = id.parse().ok()?;
        s.objects
            .get(object)?
            .get(&id)
            .filter(|r| r.archived_ms.is_none())
            .map(|r| r.props.clone())
    }

    /// Ids of the records not archived.
    pub fn ids(&self, object: &str) -> BTreeSet<String> {
        let s = self.lock();
        s.objects
            .get(object)
            .map(|m| {
                m.values()
                    .filter(|r| r.archived_ms.is_none())
                    .map(|r| r.id.to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn associated(&self, from: &str, id: &str, to: &str) -> Vec<String> {
        let s = self.lock();
        let Ok(id) = id.parse::<u64>() else {
            return Vec::new();
        };
        s.assoc
            .iter()
            .filter(|(f, fid, t, _)| *f == from && *fid == id && *t == to)
            .map(|(_, _, _, tid)| tid.to_string())
            .collect()
    }

    /// `METHOD /path` of every request that reached no simulated route, sorted.
    pub fn not_simulated(&self) -> Vec<String> {
        self.lock().not_simulated.iter().cloned().collect()
    }

    pub fn stats(&self) -> SimStats {
        self.lock().stats.clone()
    }

    /// Spends the daily quota down to `remaining`.
    pub fn set_daily_remaining(&self, remaining: u64) {
        let mut s = self.lock();
        let limit = s.opts.daily_limit.unwrap_or(250_000);
        s.opts.daily_limit = Some(limit);
        s.daily_used = limit.saturating_sub(remaining);
    }

    /// Spends `n` of the rolling window now, as another app of the same account would.
    pub fn consume_burst(&self, n: usize) {
        let mut s = self.lock();
        let now = Instant::now();
        for _ in 0..n {
            s.burst.push_back(now);
        }
    }

    pub fn options(&self) -> SimOptions {
        self.lock().opts.clone()
    }
}

fn owned(props: &[(&str, &str)]) -> BTreeMap<String, String> {
    props
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn generated(object: &str, n: u64) -> BTreeMap<String, String> {
    let pairs: Vec<(&str, String)> = match object {
        "contacts" => vec![
            ("email", format!("person{n}@example.com")),
            ("firstname", format!("First{n}")),
            ("lastname", format!("Last{n}")),
            ("lifecyclestage", "lead".into()),
        ],
        "companies" => vec![
            ("name", format!("Company {n}")),
            ("domain", format!("company{n}.example")),
            ("industry", "COMPUTER_SOFTWARE".into()),
        ],
        _ => vec![
            ("dealname", format!("Deal {n}")),
            ("amount", format!("{}", 1000 + n % 97)),
            ("dealstage", "appointmentscheduled".into()),
            ("pipeline", "default".into()),
        ],
    };
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

impl St {
    /// The records of `name`; none for an object the simulator does not know.
    fn records(&self, name: &str) -> &BTreeMap<u64, Rec> {
        static NONE: BTreeMap<u64, Rec> = BTreeMap::new();
        self.objects.get(name).unwrap_or(&NONE)
    }

    fn definition(&self, object: &str, prop: &str) -> Option<&properties::Prop> {
        self.props.get(object)?.iter().find(|p| p.name == prop)
    }

    fn modified_prop(object: &str) -> &'static str {
        spec_of(object).map_or("hs_lastmodifieddate", |o| o.modified)
    }

    fn insert(
        &mut self,
        spec: &'static ObjectSpec,
        mut props: BTreeMap<String, String>,
        ms: i64,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let t = format_time(
            Utc.timestamp_millis_opt(ms)
                .single()
                .unwrap_or_else(Utc::now),
        );
        props.insert("hs_object_id".into(), id.to_string());
        props.insert("createdate".into(), t.clone());
        props.insert(spec.modified.into(), t);
        if let Some(company) = props
            .get("associatedcompanyid")
            .and_then(|c| c.parse().ok())
        {
            self.link(spec.name, id, "companies", company);
        }
        let history = props
            .iter()
            .map(|(k, v)| (k.clone(), vec![(ms, v.clone())]))
            .collect();
        self.objects.entry(spec.name).or_default().insert(
            id,
            Rec {
                id,
                props,
                created_ms: ms,
                updated_ms: ms,
                archived_ms: None,
                history,
            },
        );
        self.event(spec.name, "creation", id, None);
        id
    }

    fn apply(&mut self, object: &str, id: u64, props: BTreeMap<String, String>, ms: i64) {
        let Some(spec) = spec_of(object) else { return };
        let Some(rec) = self.objects.get_mut(spec.name).and_then(|m| m.get_mut(&id)) else {
            return;
        };
        let mut changed = Vec::new();
        for (k, v) in props {
            if rec.props.get(&k) != Some(&v) {
                rec.props.insert(k.clone(), v.clone());
                rec.history
                    .entry(k.clone())
                    .or_default()
                    .push((ms, v.clone()));
                changed.push((k, v));
            }
        }
        rec.updated_ms = ms;
        let t = format_time(
            Utc.timestamp_millis_opt(ms)
                .single()
                .unwrap_or_else(Utc::now),
        );
        let modified = Self::modified_prop(spec.name);
        rec.history
            .entry(modified.into())
            .or_default()
            .push((ms, t.clone()));
        rec.props.insert(modified.into(), t);
        for (k, v) in changed {
            if k == "associatedcompanyid" {
                if let Ok(c) = v.parse() {
                    self.link(spec.name, id, "companies", c);
                }
            }
            self.event(spec.name, "propertyChange", id, Some((k, v)));
        }
    }

    fn archive(&mut self, object: &str, id: u64, ms: i64) {
        let Some(spec) = spec_of(object) else { return };
        if let Some(rec) = self.objects.get_mut(spec.name).and_then(|m| m.get_mut(&id)) {
            if rec.archived_ms.is_none() {
                rec.archived_ms = Some(ms);
                self.event(spec.name, "deletion", id, None);
            }
        }
    }

    fn link(&mut self, from: &'static str, fid: u64, to: &'static str, tid: u64) {
        self.assoc.insert((from, fid, to, tid));
        self.assoc.insert((to, tid, from, fid));
    }

    fn event(&mut self, object: &str, action: &str, id: u64, prop: Option<(String, String)>) {
        let Some(tx) = &self.events else { return };
        let mut e = json!({
            "eventId": self.next_event,
            "subscriptionId": 12345,
            "portalId": PORTAL_ID,
            "appId": APP_ID,
            "occurredAt": now_ms(),
            "subscriptionType": format!("{}.{action}", singular(object)),
            "attemptNumber": 0,
            "objectId": id,
            "changeSource": "CRM",
        });
        if action == "creation" {
            put(&mut e, "changeFlag", json!("NEW"));
        }
        if let Some((k, v)) = prop {
            put(&mut e, "propertyName", json!(k));
            put(&mut e, "propertyValue", json!(v));
        }
        self.next_event += 1;
        let _ = tx.send(e);
    }

    /// Whether `prop` identifies one record of `object`: a contact's email, or the
    /// canonical-id property (the portal's unique-value one).
    fn is_unique(&self, object: &str, prop: &str) -> bool {
        (prop == "email" && object == "contacts") || prop == self.opts.canonical_id_property
    }

    fn find_unique(&self, object: &str, prop: &str, value: &str) -> Option<u64> {
        self.objects.get(object)?.values().find_map(|r| {
            (r.archived_ms.is_none()
                && r.props
                    .get(prop)
                    .is_some_and(|v| v.eq_ignore_ascii_case(value)))
            .then_some(r.id)
        })
    }

    fn json_of(&self, object: &str, rec: &Rec, props: Option<&[String]>) -> Value {
        let mut p = Map::new();
        let defaults = ["hs_object_id", "createdate", Self::modified_prop(object)];
        for (k, v) in &rec.props {
            let wanted =
                props.is_none_or(|ps| ps.iter().any(|x| x == k)) || defaults.contains(&k.as_str());
            if wanted {
                p.insert(k.clone(), json!(v));
            }
        }
        // Requested properties the record has no value for come back as null; names the
        // portal has no property for are left out.
        for k in props.unwrap_or(&[]) {
            if self.definition(object, k).is_some() {
                p.entry(k.clone()).or_insert(Value::Null);
            }
        }
        let mut o = json!({
            "id": rec.id.to_string(),
            "properties": p,
            "createdAt": format_time(Utc.timestamp_millis_opt(rec.created_ms).single().unwrap_or_else(Utc::now)),
            "updatedAt": format_time(Utc.timestamp_millis_opt(rec.updated_ms).single().unwrap_or_else(Utc::now)),
            "archived": rec.archived_ms.is_some(),
        });
        if let Some(a) = rec.archived_ms {
            let at = Utc
                .timestamp_millis_opt(a)
                .single()
                .unwrap_or_else(Utc::now);
            put(&mut o, "archivedAt", json!(format_time(at)));
        }
        o
    }

    /// The rolling-window checks every call goes through; `Err` is the answer to send.
    // The error is the ready answer a handler returns at once; boxing it buys nothing.
    #[allow(clippy::result_large_err)]
    fn admit(&mut self, headers: &HeaderMap, search: bool) -> Result<HeaderMap, Response> {
        self.stats.requests += 1;
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
        if auth != Some(&format!("Bearer {}", self.opts.token)) {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found.",
            ));
        }
        let now = Instant::now();
        if let Some(limit) = self.opts.daily_limit {
            if self.daily_used >= limit {
                self.stats.throttled_daily += 1;
                return Err(limited(
                    "DAILY",
                    "You have reached your daily limit.",
                    HeaderMap::new(),
                ));
            }
        }
        if search {
            self.stats.search_requests += 1;
            while self
                .search
                .front()
                .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
            {
                self.search.pop_front();
            }
            if self.search.len() >= self.opts.search_per_sec as usize {
                self.stats.throttled_search += 1;
                // Search answers carry no X-HubSpot-RateLimit-* headers [S].
                return Err(limited(
                    "SECONDLY",
                    "You have reached your secondly limit.",
                    HeaderMap::new(),
                ));
            }
            self.search.push_back(now);
            self.daily_used += 1;
            return Ok(HeaderMap::new());
        }
        let window = self.opts.burst_window;
        while self
            .burst
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            self.burst.pop_front();
        }
        let max = self.opts.burst_limit as usize;
        if self.burst.len() >= max {
            self.stats.throttled_burst += 1;
            let mut h = self.limit_headers(0);
            if self.opts.retry_after_on_429 {
                let oldest = self.burst.front().copied().unwrap_or(now);
                let wait = window.saturating_sub(now.duration_since(oldest));
                h.insert("retry-after", HeaderValue::from(wait.as_secs().max(1)));
            }
            return Err(limited(
                "TEN_SECONDLY_ROLLING",
                "You have reached your ten_secondly_rolling limit.",
                h,
            ));
        }
        self.burst.push_back(now);
        self.daily_used += 1;
        let remaining = max - self.burst.len();
        Ok(self.limit_headers(remaining))
    }

    fn limit_headers(&self, remaining: usize) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "x-hubspot-ratelimit-max",
            HeaderValue::from(self.opts.burst_limit),
        );
        h.insert(
            "x-hubspot-ratelimit-remaining",
            HeaderValue::from(remaining as u64),
        );
        h.insert(
            "x-hubspot-ratelimit-interval-milliseconds",
            HeaderValue::from(u64::try_from(self.opts.burst_window.as_millis()).unwrap_or(10_000)),
        );
        if let Some(limit) = self.opts.daily_limit {
            h.insert("x-hubspot-ratelimit-daily", HeaderValue::from(limit));
            h.insert(
                "x-hubspot-ratelimit-daily-remaining",
                HeaderValue::from(limit.saturating_sub(self.daily_used)),
            );
        }
        h
    }
}

fn correlation_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// HubSpot's error body: `status`, `message`, `correlationId`, `category`.
fn error(status: StatusCode, category: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "status": "error",
            "message": message,
            "correlationId": correlation_id(),
            "category": category,
        })),
    )
        .into_response()
}

/// A route the simulator does not have, though HubSpot may: HubSpot's 404 for a path it
/// does not know (no `category`), and one warning per route, so the gap is visible.
async fn not_simulated(State(s): State<Shared>, method: Method, uri: Uri) -> Response {
    let key = format!("{method} {}", uri.path());
    if lock(&s).not_simulated.insert(key.clone()) {
        tracing::warn!(request = %key, "hubspot simulator: not simulated");
    }
    let body = json!({
        "status": "error",
        "message": "resource not found",
        "correlationId": correlation_id(),
        "requestId": uuid::Uuid::now_v7().simple().to_string(),
    });
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

fn limited(policy: &str, message: &str, headers: HeaderMap) -> Response {
    let body = json!({
        "status": "error",
        "message": message,
        "errorType": "RATE_LIMIT",
        "correlationId": correlation_id(),
        "policyName": policy,
        "requestId": correlation_id(),
    });
    (StatusCode::TOO_MANY_REQUESTS, headers, axum::Json(body)).into_response()
}

/// What HubSpot answers for an injected refusal: the ten-secondly 429 with the window's
/// headers showing nothing left, as the account's own limit would; or a 500.
fn fault_answer(state: &Shared, fault: Fault) -> Response {
    match fault {
        Fault::Throttle => {
            let st = lock(state);
            let mut h = st.limit_headers(0);
            if st.opts.retry_after_on_429 {
                h.insert(
                    "retry-after",
                    HeaderValue::from(st.opts.burst_window.as_secs().max(1)),
                );
            }
            limited(
                "TEN_SECONDLY_ROLLING",
                "You have reached your ten_secondly_rolling limit.",
                h,
            )
        }
        _ => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "internal error",
        ),
    }
}

fn ok(status: StatusCode, headers: HeaderMap, body: Value) -> Response {
    (status, headers, axum::Json(body)).into_response()
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, St> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// `GET /crm/v3/properties/{objectType}`: every definition in one answer (no paging).
async fn property_definitions(
    State(s): State<Shared>,
    Path(obj): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut st = lock(&s);
    let rate = match st.admit(&headers, false) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let Some(props) = st.props.get(obj.as_str()) else {
        // HubSpot's wording for an object type it cannot resolve [U].
        return error(
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            &format!("Unable to infer object type from: {obj}"),
        );
    };
    let results: Vec<Value> = props.iter().map(properties::Prop::json).collect();
    ok(StatusCode::OK, rate, json!({"results": results}))
}

async fn list(
    State(s): State<Shared>,
    Path(obj): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let q = params::Params(q);
    let mut st = lock(&s);
    let rate = match st.admit(&headers, false) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let Some(spec) = spec_of(&obj) else {
        return error(
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            &format!("unknown object {obj}"),
        );
    };
    let with_history = q.list("propertiesWithHistory").unwrap_or_default();
    let most = if with_history.is_empty() {
        100
    } else {
        history::LIST_LIMIT_WITH_HISTORY
    };
    let limit: usize = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 10.min(most),
        Some(Ok(l)) => l.clamp(1, most),
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                "limit must be an integer",
            )
        }
    };
    let after: u64 = match q.get("after").map(|a| a.parse::<u64>()) {
        None => 0,
        Some(Ok(a)) => a,
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                "after must be a valid cursor",
            )
        }
    };
    let archived = q.get("archived").is_some_and(|a| a == "true");
    let props = q.list("properties");
    let assoc: Vec<&'static str> = q
        .list("associations")
        .unwrap_or_default()
        .iter()
        .filter_map(|x| spec_of(x).map(|o| o.name))
        .collect();
    let recs: Vec<&Rec> = st
        .records(spec.name)
        .range(after..)
        .map(|(_, r)| r)
        .filter(|r| r.archived_ms.is_some() == archived)
        .take(limit + 1)
        .collect();
    let mut results = Vec::new();
    for r in recs.iter().take(limit) {
        let mut o = st.json_of(spec.name, r, props.as_deref());
        st.put_history(spec.name, r, &with_history, &mut o);
        if !assoc.is_empty() {
            let mut a = Map::new();
            for to in &assoc {
                let rs: Vec<Value> = st
                    .assoc
                    .iter()
                    .filter(|(f, fid, t, _)| *f == spec.name && *fid == r.id && t == to)
                    .map(|(_, _, _, tid)| json!({"id": tid.to_string(), "type": format!("{}_to_{}", singular(spec.name), singular(to))}))
                    .collect();
                if !rs.is_empty() {
                    a.insert((*to).to_owned(), json!({"results": rs}));
                }
            }
            put(&mut o, "associations", Value::Object(a));
        }
        results.push(o);
    }
    let mut body = json!({"results": results});
    if let Some(next) = recs.get(limit) {
        let next = next.id.to_string();
        // Absolute, and the same query but for `after`, as HubSpot's link is.
        let mut query: Vec<String> = q
            .iter()
            .filter(|(k, _)| k.as_str() != "after" && k.as_str() != "limit")
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        query.insert(0, format!("limit={limit}"));
        query.push(format!("after={next}"));
        let link = format!("{}/crm/v3/objects/{obj}?{}", st.base_url, query.join("&"));
        put(
            &mut body,
            "paging",
            json!({"next": {"after": next, "link": link}}),
        );
    }
    ok(StatusCode::OK, rate, body)
}

/// Percent-encoding of a query value (unreserved characters kept).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

async fn search(
    State(s): State<Shared>,
    Path(obj): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = lock(&s);
    let rate = match st.admit(&headers, true) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let bad = |m: &str| error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", m);
    let Some(spec) = spec_of(&obj) else {
        return error(
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            &format!("unknown object {obj}"),
        );
    };
    if body.len() > 3000 {
        return bad("the query body exceeds 3,000 characters");
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return bad("invalid JSON body");
    };
    let groups: Vec<Value> = req
        .get("filterGroups")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let total_filters: usize = groups
        .iter()
        .map(|g| {
            g.get("filters")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        })
        .sum();
    if groups.len() > 5
        || groups.iter().any(|g| {
            g.get("filters")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
                > 6
        })
        || total_filters > 18
    {
        return bad("at most 5 filterGroups, 6 filters per group and 18 filters in total");
    }
    let limit = match req.get("limit") {
        None => 10,
        Some(v) => match v.as_u64() {
            Some(l @ 1..=200) => l as usize,
            _ => return bad("limit must be between 1 and 200"),
        },
    };
    let after: usize = match req.get("after").map(text) {
        None => 0,
        Some(Some(a)) => match a.parse() {
            Ok(a) => a,
            Err(_) => return bad("after must be formatted as an integer"),
        },
        Some(None) => return bad("after must be formatted as an integer"),
    };
    if after >= 10_000 {
        return bad("paging beyond 10,000 results is not supported: narrow the query");
    }
    let sorts: Vec<Value> = req
        .get("sorts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if sorts.len() > 1 {
        return bad("only one sort is supported");
    }
    let props: Option<Vec<String>> = req
        .get("properties")
        .and_then(Value::as_array)
        .map(|ps| ps.iter().filter_map(text).collect());
    let visible_before = now_ms() - i64::try_from(st.opts.search_lag.as_millis()).unwrap_or(0);
    let mut hits: Vec<&Rec> = Vec::new();
    for r in st.records(spec.name).values() {
        // Archived records never appear; fresh writes only once indexed.
        if r.archived_ms.is_some() || r.updated_ms > visible_before {
            continue;
        }
        let mut any = groups.is_empty();
        for g in &groups {
            let mut all = true;
            for f in g
                .get("filters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                match matches(r, f) {
                    Ok(m) => all &= m,
                    Err(e) => return bad(&e),
                }
            }
            any |= all;
        }
        if any {
            hits.push(r);
        }
    }
    if let Some(sort) = sorts.first() {
        let (prop, desc) = match sort {
            Value::String(p) => (p.trim_start_matches('-').to_owned(), p.starts_with('-')),
            o => (
                o.get("propertyName")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                o.get("direction").and_then(Value::as_str) == Some("DESCENDING"),
            ),
        };
        let mut keyed: Vec<(Option<f64>, String, &Rec)> = hits
            .into_iter()
            .map(|r| {
                let n = rec_num(r, &prop);
                let t = if n.is_none() {
                    r.props
                        .get(&prop)
                        .map(|v| v.to_lowercase())
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                (n, t, r)
            })
            .collect();
        // Stable: ties keep id order.
        keyed.sort_by(|a, b| {
            let o = match (a.0, b.0) {
                (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
                _ => a.1.cmp(&b.1),
            };
            if desc {
                o.reverse()
            } else {
                o
            }
        });
        hits = keyed.into_iter().map(|(_, _, r)| r).collect();
    }
    let total = hits.len();
    let results: Vec<Value> = hits
        .iter()
        .skip(after)
        .take(limit)
        .map(|r| st.json_of(spec.name, r, props.as_deref()))
        .collect();
    let mut body = json!({"total": total, "results": results});
    if after + limit < total {
        put(
            &mut body,
            "paging",
            json!({"next": {"after": (after + limit).to_string()}}),
        );
    }
    ok(StatusCode::OK, rate, body)
}

/// HubSpot's words for batch inputs whose records it cannot find.
fn not_found_message(object: &str) -> String {
    format!(
        "Could not get some {} objects, they may be deleted or not exist. Check that ids are valid.",
        singular(object).to_uppercase()
    )
}

fn item_error(category: &str, message: String, trace: Option<&Value>, id: Option<&str>) -> Value {
    let mut context = Map::new();
    if let Some(t) = trace.and_then(text) {
        context.insert("objectWriteTraceId".into(), json!([t]));
    }
    if let Some(id) = id {
        context.insert("ids".into(), json!([id]));
    }
    json!({"status": "error", "category": category, "message": message, "context": context})
}

/// Checks properties a client writes: known, writable, valid, unique.
fn validate(
    st: &St,
    spec: &ObjectSpec,
    props: &Map<String, Value>,
    own_id: Option<u64>,
) -> Result<BTreeMap<String, String>, Refusal> {
    let canonical = st.opts.canonical_id_property.as_str();
    let mut out = BTreeMap::new();
    for (k, v) in props {
        let Some(definition) = st.definition(spec.name, k) else {
            return Err(Refusal::no_such_properties(&BTreeSet::from([k.as_str()])));
        };
        if definition.read_only {
            return Err(Refusal::new(
                "VALIDATION_ERROR",
                format!("Property \"{k}\" is read-only"),
            ));
        }
        let v = text(v).unwrap_or_default();
        if k == "email" && !v.is_empty() && !v.contains('@') {
            return Err(Refusal::invalid_values(&[(
                "email",
                "INVALID_EMAIL",
                format!("Email address {v} is invalid"),
            )]));
        }
        if (k == "email" || k == canonical) && !v.is_empty() {
            if let Some(other) = st.find_unique(spec.name, k, &v) {
                if Some(other) != own_id {
                    // HubSpot's own words for contacts (seen in 409 answers to creates,
                    // updates and upserts); the other objects' wording is not documented.
                    let message = if spec.name == "contacts" {
                        format!("Contact already exists. Existing ID: {other}")
                    } else {
                        format!(
                            "A {} with {k} {v} already exists: {other}",
                            singular(spec.name)
                        )
                    };
                    return Err(Refusal::new("CONFLICT", message));
                }
            }
        }
        let v = if k == "email" { v.to_lowercase() } else { v };
        out.insert(k.clone(), v);
    }
    Ok(out)
}

async fn batch(
    State(s): State<Shared>,
    Path((obj, op)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = lock(&s);
    let rate = match st.admit(&headers, false) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let bad = |m: &str| error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", m);
    let Some(spec) = spec_of(&obj) else {
        return error(
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            &format!("unknown object {obj}"),
        );
    };
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return bad("invalid JSON body");
    };
    if op == "read" && st.opts.strict_spec {
        // The spec's required attributes of BatchReadInputSimplePublicObjectId, refused in
        // the words of HubSpot's JSON binding, which lists every one missing.
        let missing: Vec<&str> = ["inputs", "properties", "propertiesWithHistory"]
            .into_iter()
            .filter(|k| req.get(k).is_none_or(Value::is_null))
            .collect();
        if !missing.is_empty() {
            return bad(&format!(
                "Invalid input JSON: Cannot build BatchReadInputSimplePublicObjectId, some of required attributes are not set [{}]",
                missing.join(", ")
            ));
        }
    }
    let Some(inputs) = req.get("inputs").and_then(Value::as_array).cloned() else {
        return bad("inputs is required");
    };
    if inputs.len() > 100 {
        return bad(&format!(
            "Batch input size {} exceeds the limit of 100",
            inputs.len()
        ));
    }
    if op != "read" {
        st.stats.batch_writes += 1;
    }
    // A property the portal lacks refuses the whole call, whichever inputs name it.
    if op != "read" && op != "archive" {
        let unknown: BTreeSet<&str> = inputs
            .iter()
            .filter_map(|i| i.get("properties").and_then(Value::as_object))
            .flat_map(|p| p.keys())
            .map(String::as_str)
            .filter(|k| st.definition(spec.name, k).is_none())
            .collect();
        if !unknown.is_empty() {
            return Refusal::no_such_properties(&unknown).response();
        }
    }
    // "Partial upserts are not supported when using `email` as the idProperty"
    // (API_FACTS 1.3): one refused input refuses the call, and nothing is written.
    if op == "upsert" {
        for input in inputs
            .iter()
            .filter(|i| i.get("idProperty").and_then(Value::as_str) == Some("email"))
        {
            let key = input.get("id").and_then(text).unwrap_or_default();
            let mut props = input
                .get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            props.insert("email".into(), json!(key));
            let existing = st.find_unique(spec.name, "email", &key);
            match validate(&st, spec, &props, existing) {
                // A contact the input would make or change already holds one of its unique
                // values: HubSpot answers the call 409 and names that contact.
                Err(r) if r.category == "CONFLICT" => return r.response(),
                Err(r) => return bad(&format!("{} (email upserts are all or nothing)", r.message)),
                Ok(_) => {}
            }
        }
    }
    let with_history: Vec<String> = match op.as_str() {
        "read" => req
            .get("propertiesWithHistory")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let now = now_ms();
    let mut results = Vec::new();
    let mut errors = Vec::new();
    // Ids of untraced inputs not found: HubSpot names them all in one error.
    let mut missing = Vec::new();
    for input in &inputs {
        let trace = input.get("objectWriteTraceId");
        let id_text = input.get("id").and_then(text);
        let props = input
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut with_trace = |st: &St, id: u64, new: Option<bool>| {
            let Some(rec) = st.records(spec.name).get(&id) else {
                return;
            };
            let mut o = st.json_of(spec.name, rec, None);
            st.put_history(spec.name, rec, &with_history, &mut o);
            if let Some(t) = trace {
                put(&mut o, "objectWriteTraceId", t.clone());
            }
            if let Some(n) = new {
                put(&mut o, "new", json!(n));
            }
            results.push(o);
        };
        match op.as_str() {
            "read" | "update" | "archive" => {
                // Reads name the id property once for the call, updates one an input.
                let by = match op.as_str() {
                    "read" => req.get("idProperty"),
                    "update" => input.get("idProperty"),
                    _ => None,
                }
                .and_then(Value::as_str)
                .filter(|p| *p != "hs_object_id");
                let id = match by {
                    Some(p) if !st.is_unique(spec.name, p) => {
                        return bad(&format!("idProperty {p} is not a unique-value property"))
                    }
                    Some(p) => id_text
                        .as_deref()
                        .and_then(|k| st.find_unique(spec.name, p, k)),
                    None => id_text
                        .as_deref()
                        .and_then(|i| i.parse::<u64>().ok())
                        .filter(|i| {
                            st.records(spec.name)
                                .get(i)
                                .is_some_and(|r| r.archived_ms.is_none())
                        }),
                };
                let Some(id) = id else {
                    match (op.as_str(), trace) {
                        ("archive", _) => {}
                        // Traced inputs are answered one by one, the others together.
                        (_, Some(_)) => errors.push(item_error(
                            "OBJECT_NOT_FOUND",
                            not_found_message(spec.name),
                            trace,
                            id_text.as_deref(),
                        )),
                        _ => missing.push(json!(id_text.clone().unwrap_or_default())),
                    }
                    continue;
                };
                match op.as_str() {
                    "read" => with_trace(&st, id, None),
                    "archive" => st.archive(spec.name, id, now),
                    _ => match validate(&st, spec, &props, Some(id)) {
                        Ok(p) => {
                            st.apply(spec.name, id, p, now);
                            with_trace(&st, id, None);
                        }
                        Err(r) => errors.push(item_error(
                            r.category,
                            r.message,
                            trace,
                            id_text.as_deref(),
                        )),
                    },
                }
            }
            "create" => match validate(&st, spec, &props, None) {
                Ok(p) => {
                    let id = st.insert(spec, p, now);
                    with_trace(&st, id, None);
                }
                Err(r) => errors.push(item_error(r.category, r.message, trace, None)),
            },
            "upsert" => {
                let id_prop = input
                    .get("idProperty")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !st.is_unique(spec.name, id_prop) {
                    return bad(&format!(
                        "idProperty {id_prop} is not a unique-value property"
                    ));
                }
                let Some(key) = id_text.clone().filter(|k| !k.is_empty()) else {
                    errors.push(item_error(
                        "VALIDATION_ERROR",
                        "id is required".into(),
                        trace,
                        None,
                    ));
                    continue;
                };
                let existing = st.find_unique(spec.name, id_prop, &key);
                let mut props = props.clone();
                props.insert(id_prop.to_owned(), json!(key));
                match validate(&st, spec, &props, existing) {
                    Ok(p) => {
                        let (id, new) = match existing {
                            Some(id) => {
                                st.apply(spec.name, id, p, now);
                                (id, false)
                            }
                            None => (st.insert(spec, p, now), true),
                        };
                        with_trace(&st, id, Some(new));
                    }
                    Err(r) => errors.push(item_error(r.category, r.message, trace, Some(&key))),
                }
            }
            _ => {
                return error(
                    StatusCode::NOT_FOUND,
                    "OBJECT_NOT_FOUND",
                    &format!("no batch operation {op}"),
                )
            }
        }
    }
    if op == "archive" {
        return (StatusCode::NO_CONTENT, rate).into_response();
    }
    if !missing.is_empty() {
        errors.push(json!({"status": "error", "category": "OBJECT_NOT_FOUND",
                           "message": not_found_message(spec.name), "context": {"ids": missing}}));
    }
    let done = if op == "create" {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    batch_answer(done, rate, results, errors)
}

/// A batch answer: COMPLETE with its times, `done` when every input went through, else 207
/// with the errors beside the results.
fn batch_answer(
    done: StatusCode,
    rate: HeaderMap,
    results: Vec<Value>,
    errors: Vec<Value>,
) -> Response {
    let ts = format_time(Utc::now());
    let mut body =
        json!({"status": "COMPLETE", "results": results, "startedAt": ts, "completedAt": ts});
    let status = if errors.is_empty() {
        done
    } else {
        put(&mut body, "numErrors", json!(errors.len()));
        put(&mut body, "errors", json!(errors));
        StatusCode::MULTI_STATUS
    };
    ok(status, rate, body)
}

/// Delivers events in batches, v3-signed, retried like HubSpot does (bounded here).
async fn deliver(
    state: Shared,
    mut rx: mpsc::UnboundedReceiver<Value>,
    url: String,
    secret: String,
) {
    let Ok(client) = ApiClient::new(
        &url,
        Limits::new(1000, Duration::from_secs(1)),
        RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        },
        Duration::from_secs(5),
        Arc::new(DefaultPolicy),
    ) else {
        return;
    };
    while let Some(first) = rx.recv().await {
        let mut events = vec![first];
        while events.len() < 100 {
            match rx.try_recv() {
                Ok(e) => events.push(e),
                Err(_) => break,
            }
        }
        let body = serde_json::to_vec(&events).unwrap_or_default();
        let ts = now_ms();
        let signature = sign_v3(&secret, "POST", &url, &body, ts);
        let mut req = ApiRequest::post(url.clone())
            .with_header("X-HubSpot-Signature-v3", signature)
            .with_header("X-HubSpot-Request-Timestamp", ts.to_string())
            .with_retry(true);
        req.body = Some(Body::Raw {
            content_type: "application/json".into(),
            bytes: body,
        });
        let r = client.send(req).await;
        let mut st = lock(&state);
        st.stats.webhook_posts += 1;
        if r.is_err() {
            st.stats.webhook_failures += 1;
        }
    }
}

/// Sets `key` of a JSON object built here; anything else is left as it is.
fn put(target: &mut Value, key: &str, value: Value) {
    if let Some(map) = target.as_object_mut() {
        map.insert(key.to_owned(), value);
    }
}
