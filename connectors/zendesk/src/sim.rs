//! A stateful Zendesk on loopback (feature `sim`): incremental exports that hold back the
//! most recent minute, bulk jobs processed asynchronously under the 30-job ceiling, a
//! per-window request budget with Zendesk's headers, offset paging that refuses to go past
//! 10,000 records, and signed webhook deliveries.
//!
//! As the real API does, it takes the `.json` suffix on every endpoint, dates every answer
//! with the account's clock, and answers list, single-record and search calls with absolute
//! URLs (`sim/rest.rs`). A user's email is unique (trimmed, any case): the upserts update
//! the user they find by external id or email, and a write that would give a second user
//! an email is refused.
//!
//! The account has custom user, organization and ticket fields (`sim/fields.rs`), and
//! its records carry values for them.
//!
//! Record times come from a clock the tests can move forward (`advance`), so "a minute
//! later" costs nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{NestedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use revsync_sdk::simfault::{self, Fault, Faults};
use serde_json::{json, Map, Value};

use crate::config::SignatureOrder;

mod fields;
mod rest;

/// How the simulated account behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub email: String,
    pub token: String,
    pub webhook_secret: String,
    /// Requests per `window` (Zendesk: per minute, by plan).
    pub requests_per_window: u32,
    /// Incremental export requests per `window` (Zendesk: 10).
    pub exports_per_window: u32,
    pub window: Duration,
    /// Largest export page (Zendesk: 1000).
    pub export_page_max: usize,
    /// How long a bulk job waits before it runs.
    pub job_delay: Duration,
    /// Up to this much more, spread evenly over the jobs (not random: runs repeat).
    pub job_delay_spread: Duration,
    /// Queued plus running jobs allowed (Zendesk: 30).
    pub max_jobs: usize,
    /// Largest page of custom field definitions (Zendesk: 100); smaller makes paging show.
    pub fields_page_max: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            email: "ops@acme.example".into(),
            token: "zendesk-sim-token".into(),
            webhook_secret: "zendesk-sim-webhook-secret".into(),
            requests_per_window: 700,
            exports_per_window: 10,
            window: Duration::from_secs(60),
            export_page_max: 1000,
            job_delay: Duration::from_millis(20),
            job_delay_spread: Duration::ZERO,
            max_jobs: 30,
            fields_page_max: 100,
        }
    }
}

/// What the simulator saw, for assertions.
#[derive(Debug, Clone, Default)]
pub struct SimStats {
    pub requests: u64,
    pub throttled: u64,
    pub too_many_jobs: u64,
    pub jobs: u64,
    pub exports: u64,
    /// The most jobs queued or running at once (slots filled by `occupy_job_slots` too).
    pub max_active_jobs: usize,
    /// Requests for job statuses (one job or many).
    pub status_reads: u64,
    /// Ids that a finished job's results named in a status answer.
    pub named_in_results: BTreeSet<String>,
    /// Requests for endpoints the simulator does not have (`GET /api/v2/views`), each
    /// logged once as "not simulated".
    pub not_simulated: BTreeSet<String>,
}

#[derive(Debug, Clone)]
struct Rec {
    ts: i64,
    body: Value,
    solved_at: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Obj {
    Users,
    Orgs,
    Tickets,
}

impl Obj {
    fn key(self) -> &'static str {
        match self {
            Obj::Users => "users",
            Obj::Orgs => "organizations",
            Obj::Tickets => "tickets",
        }
    }

    fn parse(s: &str) -> Option<Obj> {
        match s {
            "users" => Some(Obj::Users),
            "organizations" => Some(Obj::Orgs),
            "tickets" => Some(Obj::Tickets),
            _ => None,
        }
    }
}

struct Inner {
    cfg: SimConfig,
    /// `http://127.0.0.1:port`, for the absolute URLs Zendesk answers with.
    base: String,
    users: BTreeMap<u64, Rec>,
    orgs: BTreeMap<u64, Rec>,
    tickets: BTreeMap<u64, Rec>,
    next_id: u64,
    /// Seconds added to the wall clock by `advance`.
    offset: i64,
    jobs: HashMap<String, Value>,
    active_jobs: usize,
    window_started: Instant,
    window_requests: u32,
    window_exports: u32,
    idempotency: HashMap<String, u64>,
    /// Records by the fields bulk jobs match on: an upsert of 100 users into 20,000 would
    /// otherwise scan them all for each item, and the benches would time the simulator.
    index: HashMap<(Obj, &'static str, String), BTreeSet<u64>>,
    /// Custom field definitions by list (`user_fields`, ...).
    fields: HashMap<&'static str, Vec<Value>>,
    stats: SimStats,
}

/// The fields bulk jobs find records by (case-insensitive, as Zendesk compares emails).
const INDEXED: [&str; 3] = ["external_id", "email", "name"];

fn index_key(o: Obj, field: &'static str, value: &Value) -> Option<(Obj, &'static str, String)> {
    Some((o, field, normal(value.as_str()?)))
}

/// An email as Zendesk keeps it, and any key bulk jobs match on: without surrounding
/// spaces, in lower case. (" Ada@X.example " and "ada@x.example" are one user.)
fn normal(text: &str) -> String {
    text.trim().to_lowercase()
}

impl Inner {
    fn now(&self) -> i64 {
        Utc::now().timestamp() + self.offset
    }

    fn table(&mut self, o: Obj) -> &mut BTreeMap<u64, Rec> {
        match o {
            Obj::Users => &mut self.users,
            Obj::Orgs => &mut self.orgs,
            Obj::Tickets => &mut self.tickets,
        }
    }

    fn insert(&mut self, o: Obj, fields: &Map<String, Value>, ts: i64) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let mut body = Map::new();
        match o {
            Obj::Users => {
                body.insert("role".into(), json!("end-user"));
                body.insert("active".into(), json!(true));
            }
            Obj::Orgs => {
                body.insert("domain_names".into(), json!([]));
            }
            Obj::Tickets => {
                body.insert("status".into(), json!("new"));
            }
        }
        let (key, empty) = fields::empty_values(&self.fields, o);
        body.insert(key.into(), empty);
        body.insert("created_at".into(), json!(rfc3339(ts)));
        let rec = Rec {
            ts,
            body: Value::Object(body),
            solved_at: None,
        };
        self.table(o).insert(id, rec);
        self.update(o, id, fields, ts);
        id
    }

    fn update(&mut self, o: Obj, id: u64, fields: &Map<String, Value>, ts: i64) {
        if !self.table(o).contains_key(&id) {
            return;
        }
        self.reindex(o, id, fields);
        let key = o.key();
        let url = format!("{}/api/v2/{key}/{id}.json", self.base);
        let Some(rec) = self.table(o).get_mut(&id) else {
            return;
        };
        let Some(body) = rec.body.as_object_mut() else {
            return;
        };
        for (k, v) in fields {
            match k.as_str() {
                "id" | "url" | "created_at" | "updated_at" => {}
                "email" if o == Obj::Users => {
                    let email = v.as_str().map_or(v.clone(), |e| json!(normal(e)));
                    body.insert(k.clone(), email);
                }
                "user_fields" | "organization_fields" | "custom_fields" => {
                    fields::merge_values(body.entry(k.as_str()).or_insert(Value::Null), v)
                }
                // A ticket's comment is not kept on it: the first one is its description.
                "comment" => {
                    if let Some(text) = v.get("body").filter(|_| !body.contains_key("description"))
                    {
                        body.insert("description".into(), text.clone());
                    }
                }
                _ => {
                    body.insert(k.clone(), v.clone());
                }
            }
        }
        body.insert("id".into(), json!(id));
        body.insert("url".into(), json!(url));
        body.insert("updated_at".into(), json!(rfc3339(ts)));
        rec.ts = ts;
        if o == Obj::Tickets {
            let solved = matches!(
                body.get("status").and_then(Value::as_str),
                Some("solved" | "closed")
            );
            if solved && rec.solved_at.is_none() {
                rec.solved_at = Some(rfc3339(ts));
            }
        }
    }

    /// Moves `id`'s index entries from its current values to those of `fields`.
    fn reindex(&mut self, o: Obj, id: u64, fields: &Map<String, Value>) {
        for field in INDEXED {
            let Some(new) = fields.get(field) else {
                continue;
            };
            let old = self
                .table(o)
                .get(&id)
                .and_then(|r| r.body.get(field))
                .and_then(|v| index_key(o, field, v));
            if let Some(ids) = old.and_then(|k| self.index.get_mut(&k)) {
                ids.remove(&id);
            }
            if let Some(k) = index_key(o, field, new) {
                self.index.entry(k).or_default().insert(id);
            }
        }
    }

    /// Records an export may serve: everything but the most recent minute, by (time, id).
    fn visible(&self, o: Obj) -> Vec<(i64, u64, &Rec)> {
        let horizon = self.now() - 60;
        let table = match o {
            Obj::Users => &self.users,
            Obj::Orgs => &self.orgs,
            Obj::Tickets => &self.tickets,
        };
        let mut rows: Vec<_> = table
            .iter()
            .filter(|(_, r)| r.ts <= horizon)
            .map(|(id, r)| (r.ts, *id, r))
            .collect();
        rows.sort_by_key(|(ts, id, _)| (*ts, *id));
        rows
    }
}

fn rfc3339(ts: i64) -> String {
    DateTime::<Utc>::from_timestamp(ts, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

type Shared = Arc<Mutex<Inner>>;
type Q = Query<HashMap<String, String>>;

/// A running simulator.
#[derive(Clone)]
pub struct Sim {
    state: Shared,
    pub addr: SocketAddr,
    faults: Faults,
}

impl Sim {
    // Harness API for tests and the demo: a panic here is the caller's mistake (an
    // unknown object, a non-numeric id), never something a request can cause.
    #[allow(clippy::expect_used)]
    pub async fn start(cfg: SimConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(Inner {
            cfg,
            base: format!("http://{addr}"),
            users: BTreeMap::new(),
            orgs: BTreeMap::new(),
            tickets: BTreeMap::new(),
            next_id: 360_000,
            offset: 0,
            jobs: HashMap::new(),
            active_jobs: 0,
            window_started: Instant::now(),
            window_requests: 0,
            window_exports: 0,
            idempotency: HashMap::new(),
            index: HashMap::new(),
            fields: fields::defaults(),
            stats: SimStats::default(),
        }));
        let api = Router::new()
            .route(
                "/incremental/users/cursor",
                get(|s: State<Shared>, q: Q| export_cursor(s, q, Obj::Users)),
            )
            .route(
                "/incremental/tickets/cursor",
                get(|s: State<Shared>, q: Q| export_cursor(s, q, Obj::Tickets)),
            )
            .route("/incremental/organizations", get(export_time))
            .route("/{object}/show_many", get(show_many))
            .route(
                "/users",
                get(|s: State<Shared>, q: Q| rest::list(s, q, Obj::Users)).post(rest::create_user),
            )
            .route(
                "/organizations",
                get(|s: State<Shared>, q: Q| rest::list(s, q, Obj::Orgs)).post(rest::create_org),
            )
            .route("/users/create_or_update", post(rest::create_or_update_user))
            .route("/users/search", get(rest::search_users))
            .route("/organizations/search", get(rest::search_organizations))
            .route(
                "/users/create_many",
                post(|s: State<Shared>, b: Json<Value>| submit(s, b, Bulk::UsersCreate)),
            )
            .route(
                "/users/create_or_update_many",
                post(|s: State<Shared>, b: Json<Value>| submit(s, b, Bulk::UsersUpsert)),
            )
            .route(
                "/users/update_many",
                put(|s: State<Shared>, b: Json<Value>| submit(s, b, Bulk::Update(Obj::Users))),
            )
            .route(
                "/organizations/create_many",
                post(|s: State<Shared>, b: Json<Value>| submit(s, b, Bulk::OrgsCreate)),
            )
            .route(
                "/organizations/update_many",
                put(|s: State<Shared>, b: Json<Value>| submit(s, b, Bulk::Update(Obj::Orgs))),
            )
            // Their own routes, as the tickets' below: `/users/{id}` would otherwise take
            // these names as ids.
            .route(
                "/users/show_many",
                get(|s: State<Shared>, q: Q| show_many(s, Path("users".to_owned()), q)),
            )
            .route(
                "/organizations/show_many",
                get(|s: State<Shared>, q: Q| show_many(s, Path("organizations".to_owned()), q)),
            )
            .route(
                "/users/destroy_many",
                delete(|s: State<Shared>, q: Q| destroy(s, Path("users".to_owned()), q)),
            )
            .route(
                "/organizations/destroy_many",
                delete(|s: State<Shared>, q: Q| destroy(s, Path("organizations".to_owned()), q)),
            )
            .route(
                "/users/count",
                get(|s: State<Shared>, q: Q| rest::count(s, q, Obj::Users)),
            )
            .route(
                "/organizations/count",
                get(|s: State<Shared>, q: Q| rest::count(s, q, Obj::Orgs)),
            )
            .route(
                "/tickets/count",
                get(|s: State<Shared>, q: Q| rest::count(s, q, Obj::Tickets)),
            )
            .route(
                "/users/{id}",
                get(|s: State<Shared>, id: Path<String>| rest::show(s, id, Obj::Users))
                    .put(|s: State<Shared>, id: Path<String>, b: Json<Value>| {
                        rest::update(s, id, b, Obj::Users)
                    })
                    .delete(rest::delete_user),
            )
            .route(
                "/organizations/{id}",
                get(|s: State<Shared>, id: Path<String>| rest::show(s, id, Obj::Orgs)).put(
                    |s: State<Shared>, id: Path<String>, b: Json<Value>| {
                        rest::update(s, id, b, Obj::Orgs)
                    },
                ),
            )
            .route("/search", get(rest::search))
            .route("/search/export", get(rest::export_search))
            .route("/{object}/destroy_many", delete(destroy))
            .route(
                "/tickets",
                get(|s: State<Shared>, q: Q| rest::list(s, q, Obj::Tickets)).post(create_ticket),
            )
            // Their own routes: `/tickets/{id}` would otherwise take these names as ids.
            .route(
                "/tickets/show_many",
                get(|s: State<Shared>, q: Q| show_many(s, Path("tickets".to_owned()), q)),
            )
            .route(
                "/tickets/destroy_many",
                delete(|s: State<Shared>, q: Q| destroy(s, Path("tickets".to_owned()), q)),
            )
            .route(
                "/tickets/{id}",
                get(|s: State<Shared>, id: Path<String>| rest::show(s, id, Obj::Tickets))
                    .put(update_ticket),
            )
            .route(
                "/user_fields",
                get(|s: State<Shared>, q: Q| fields::list(s, q, fields::Defs::User)),
            )
            .route(
                "/organization_fields",
                get(|s: State<Shared>, q: Q| fields::list(s, q, fields::Defs::Organization)),
            )
            .route(
                "/ticket_fields",
                get(|s: State<Shared>, q: Q| fields::list(s, q, fields::Defs::Ticket)),
            )
            .route("/job_statuses/show_many", get(job_statuses))
            .route("/job_statuses/{id}", get(job_status))
            // After every route (it is set on those already added); inside `gate`, as a
            // real endpoint checks credentials and counts the request first.
            .method_not_allowed_fallback(method_not_simulated)
            .layer(axum::middleware::from_fn_with_state(state.clone(), gate))
            .with_state(state.clone());
        let faults = Faults::new(fault_answer);
        let gaps = state.clone();
        let app = Router::new()
            .nest("/api/v2", api)
            .fallback(move |req: Request| not_simulated(gaps.clone(), req))
            .layer(axum::middleware::from_fn_with_state(
                faults.clone(),
                simfault::inject,
            ));
        // In front of the router that chooses a route: an outer one whose every request
        // goes to it, after `edge` has taken off the `.json` suffix.
        let app = Router::new()
            .fallback_service(app)
            .layer(from_fn_with_state(state.clone(), edge));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            state,
            addr,
            faults,
        }
    }

    /// Injected faults (none until set): 429s with `Retry-After: 1`, 503s, stalls and
    /// cut-short answers, on every route. A stalled or cut ticket create has stored its
    /// idempotency key.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The API base URL (`base_url:` of a connector file).
    pub fn base_url(&self) -> String {
        format!("http://{}/api/v2", self.addr)
    }

    /// `params:` of a connector file pointing at this simulator.
    pub fn params(&self) -> Value {
        let s = self.lock();
        json!({
            "base_url": self.base_url(),
            "auth": {"method": "api_token", "email": s.cfg.email, "token": s.cfg.token},
            "webhook_secret": s.cfg.webhook_secret,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the record clock forward, as if `secs` had passed.
    pub fn advance(&self, secs: i64) {
        self.lock().offset += secs;
    }

    /// The simulator's current time (Unix seconds).
    pub fn now(&self) -> i64 {
        self.lock().now()
    }

    /// Creates records as a Zendesk user would, stamped now; their ids.
    // Harness API for tests and the demo: a panic here is the caller's mistake (an
    // unknown object, a non-numeric id), never something a request can cause.
    #[allow(clippy::expect_used)]
    pub fn seed(&self, object: &str, n: usize) -> Vec<String> {
        let o = Obj::parse(object).expect("users, organizations or tickets");
        let mut s = self.lock();
        let ts = s.now();
        self.seed_locked(&mut s, o, n, ts)
    }

    /// Creates records stamped at `ts` (for ties on one second).
    // Harness API for tests and the demo: a panic here is the caller's mistake (an
    // unknown object, a non-numeric id), never something a request can cause.
    #[allow(clippy::expect_used)]
    pub fn seed_at(&self, object: &str, n: usize, ts: i64) -> Vec<String> {
        let o = Obj::parse(object).expect("users, organizations or tickets");
        let mut s = self.lock();
        self.seed_locked(&mut s, o, n, ts)
    }

    fn seed_locked(&self, s: &mut Inner, o: Obj, n: usize, ts: i64) -> Vec<String> {
        (0..n)
            .map(|_| {
                let k = s.next_id + 1;
                let fields = match o {
                    Obj::Users => json!({"name": format!("User {k}"), "email": format!("user{k}@example.com")}),
                    Obj::Orgs => json!({"name": format!("Org {k}"), "domain_names": [format!("org{k}.example")]}),
                    Obj::Tickets => json!({"subject": format!("Ticket {k}"), "status": "open", "priority": "normal"}),
                };
                let fields = fields.as_object().cloned().unwrap_or_default();
                s.insert(o, &fields, ts).to_string()
            })
            .collect()
    }

    /// Changes one record's fields, stamped now.
    // Harness API for tests and the demo: a panic here is the caller's mistake (an
    // unknown object, a non-numeric id), never something a request can cause.
    #[allow(clippy::expect_used)]
    pub fn update(&self, object: &str, id: &str, fields: Value) {
        let o = Obj::parse(object).expect("users, organizations or tickets");
        let mut s = self.lock();
        let ts = s.now();
        let id: u64 = id.parse().expect("numeric id");
        s.update(o, id, fields.as_object().expect("an object of fields"), ts);
    }

    pub fn record(&self, object: &str, id: &str) -> Option<Value> {
        let o = Obj::parse(object)?;
        let mut s = self.lock();
        s.table(o).get(&id.parse().ok()?).map(|r| r.body.clone())
    }

    // Harness API for tests and the demo: a panic here is the caller's mistake (an
    // unknown object, a non-numeric id), never something a request can cause.
    #[allow(clippy::expect_used)]
    pub fn ids(&self, object: &str) -> Vec<String> {
        let o = Obj::parse(object).expect("users, organizations or tickets");
        let mut s = self.lock();
        s.table(o).keys().map(u64::to_string).collect()
    }

    /// Uses up `n` requests of the current window, as another tool on the account would.
    pub fn spend_requests(&self, n: u32) {
        let mut s = self.lock();
        if s.window_started.elapsed() >= s.cfg.window {
            s.window_started = Instant::now();
            s.window_exports = 0;
            s.window_requests = 0;
        }
        s.window_requests += n;
    }

    pub fn stats(&self) -> SimStats {
        self.lock().stats.clone()
    }

    /// Fills `n` job slots with jobs that finish after `hold` (another integration busy).
    pub fn occupy_job_slots(&self, n: usize, hold: Duration) {
        self.lock().active_jobs += n;
        let state = self.state.clone();
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            s.active_jobs = s.active_jobs.saturating_sub(n);
        });
    }

    /// A signed event-subscription delivery: (headers, body).
    pub fn webhook(
        &self,
        event_type: &str,
        object_id: &str,
        signed_at: DateTime<Utc>,
    ) -> (Vec<(String, String)>, Vec<u8>) {
        let subject = event_type.split('.').next().unwrap_or("user");
        let body = json!({
            "type": format!("zen:event-type:{event_type}"),
            "account_id": 12_514_403,
            "id": uuid::Uuid::now_v7().to_string(),
            "time": rfc3339(signed_at.timestamp()),
            "zendesk_event_version": "2022-06-20",
            "subject": format!("zen:{subject}:{object_id}"),
            "detail": {"id": object_id},
            "event": {},
        })
        .to_string()
        .into_bytes();
        let ts = signed_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let secret = self.lock().cfg.webhook_secret.clone();
        let sig = crate::webhook::sign(&secret, SignatureOrder::TimestampBody, &ts, &body);
        let headers = vec![
            ("x-zendesk-webhook-signature".to_string(), sig),
            ("x-zendesk-webhook-signature-timestamp".to_string(), ts),
            ("x-zendesk-webhook-id".to_string(), "01HSIM".to_string()),
            ("user-agent".to_string(), "Zendesk Webhook".to_string()),
            ("content-type".to_string(), "application/json".to_string()),
        ];
        (headers, body)
    }

    /// POSTs a signed event to `url` (the daemon's webhook endpoint); the status answered.
    pub async fn deliver(
        &self,
        url: &str,
        event_type: &str,
        object_id: &str,
    ) -> Result<u16, String> {
        let (headers, body) = self.webhook(event_type, object_id, Utc::now());
        let mut req = reqwest::Client::new().post(url).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    }
}

/// An endpoint the simulator does not have: Zendesk's 404 for an unknown endpoint, and a
/// warning the first time each one is asked for, so a gap in the simulation is visible.
async fn not_simulated(state: Shared, req: Request) -> Response {
    gap(&state, req.method().as_str(), req.uri().path())
}

/// [`not_simulated`] for `METHOD /api/v2/...` (the path as Zendesk has it, without the
/// `.json` suffix): also for a real endpoint on a simulated path (`DELETE
/// /organizations/{id}`) and a name a simulated collection would take for an id
/// (`/users/me`).
fn gap(state: &Shared, method: &str, path: &str) -> Response {
    let key = format!("{method} {path}");
    let first = state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .stats
        .not_simulated
        .insert(key.clone());
    if first {
        tracing::warn!(request = %key, "zendesk simulator: not simulated");
    }
    error(StatusCode::NOT_FOUND, "InvalidEndpoint", "Not found")
}

/// A method Zendesk has on a simulated path but the simulator does not (`DELETE
/// /tickets/{id}`): answered as an endpoint not simulated rather than a bare 405.
async fn method_not_simulated(
    State(state): State<Shared>,
    at: NestedPath,
    method: Method,
    uri: Uri,
) -> Response {
    gap(
        &state,
        method.as_str(),
        &format!("{}{}", at.as_str(), uri.path()),
    )
}

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": code, "description": description})),
    )
        .into_response()
}

/// What Zendesk answers for an injected refusal: the rate limiter's 429 with a second's
/// `Retry-After`, or a 503 while the service is briefly unavailable.
fn fault_answer(fault: Fault) -> Response {
    match fault {
        Fault::Throttle => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "rate limit exceeded",
            );
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
            r
        }
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the service is temporarily unavailable, try again shortly",
        ),
    }
}

/// What every answer passes through, whatever route (or none) took it: Zendesk accepts
/// the `.json` suffix on every endpoint (`/users.json`, `/users/7.json`), and dates every
/// answer, refusals and 404s included, with the account's clock (moved by `advance`, as
/// the exports' held-back minute is), which the connector takes as the account's time.
async fn edge(State(state): State<Shared>, mut req: Request, next: Next) -> Response {
    let uri = req.uri();
    if let Some(path) = uri.path().strip_suffix(".json") {
        let rewritten = match uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        if let Ok(u) = rewritten.parse() {
            *req.uri_mut() = u;
        }
    }
    let mut r = next.run(req).await;
    let now = state.lock().unwrap_or_else(|e| e.into_inner()).now();
    if let Some(date) = DateTime::<Utc>::from_timestamp(now, 0).and_then(|d| {
        HeaderValue::from_str(&d.format("%a, %d %b %Y %H:%M:%S GMT").to_string()).ok()
    }) {
        r.headers_mut().insert("date", date);
    }
    r
}

/// Authentication and the request budget, with Zendesk's headers on every answer.
async fn gate(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let export = req.uri().path().contains("/incremental/");
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (limit, remaining, reset) = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.stats.requests += 1;
        let basic = format!(
            "Basic {}",
            STANDARD.encode(format!("{}/token:{}", s.cfg.email, s.cfg.token))
        );
        let bearer = format!("Bearer {}", s.cfg.token);
        if auth != basic && auth != bearer {
            return error(
                StatusCode::UNAUTHORIZED,
                "Couldn't authenticate you",
                "bad credentials",
            );
        }
        if s.window_started.elapsed() >= s.cfg.window {
            s.window_started = Instant::now();
            s.window_requests = 0;
            s.window_exports = 0;
        }
        let reset = s
            .cfg
            .window
            .saturating_sub(s.window_started.elapsed())
            .as_secs()
            .max(1);
        let over = s.window_requests >= s.cfg.requests_per_window
            || (export && s.window_exports >= s.cfg.exports_per_window);
        if over {
            s.stats.throttled += 1;
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "rate limit exceeded",
            );
            r.headers_mut()
                .insert("retry-after", HeaderValue::from(reset));
            return r;
        }
        s.window_requests += 1;
        if export {
            s.window_exports += 1;
            s.stats.exports += 1;
        }
        (
            s.cfg.requests_per_window,
            s.cfg.requests_per_window - s.window_requests,
            reset,
        )
    };
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert("x-rate-limit", HeaderValue::from(limit));
    h.insert("x-rate-limit-remaining", HeaderValue::from(remaining));
    h.insert("ratelimit-limit", HeaderValue::from(limit));
    h.insert("ratelimit-remaining", HeaderValue::from(remaining));
    h.insert("ratelimit-reset", HeaderValue::from(reset));
    r
}

fn encode_cursor(ts: i64, id: u64) -> String {
    STANDARD.encode(format!("{ts}|{id}"))
}

fn decode_cursor(c: &str) -> Option<(i64, u64)> {
    let raw = String::from_utf8(STANDARD.decode(c).ok()?).ok()?;
    let (ts, id) = raw.split_once('|')?;
    Some((ts.parse().ok()?, id.parse().ok()?))
}

/// `start_time`, or why it is refused.
fn start_time(s: &Inner, q: &HashMap<String, String>) -> Result<i64, &'static str> {
    let t: i64 = q
        .get("start_time")
        .and_then(|v| v.parse().ok())
        .ok_or("start_time is required")?;
    if t > s.now() - 60 {
        return Err("start_time must be more than a minute in the past");
    }
    Ok(t)
}

fn page_size(s: &Inner, q: &HashMap<String, String>) -> usize {
    q.get("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000usize)
        .clamp(1, s.cfg.export_page_max)
}

async fn export_cursor(
    State(state): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    o: Obj,
) -> Response {
    let s = state.lock().unwrap_or_else(|e| e.into_inner());
    let from = match q.get("cursor") {
        Some(c) => match decode_cursor(c) {
            Some(p) => p,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidCursor",
                    "cursor is not valid",
                )
            }
        },
        None => match start_time(&s, &q) {
            Ok(t) => (t, 0),
            Err(why) => return error(StatusCode::BAD_REQUEST, "InvalidValue", why),
        },
    };
    let per = page_size(&s, &q);
    let rows: Vec<_> = s
        .visible(o)
        .into_iter()
        .filter(|(ts, id, _)| (*ts, *id) > from)
        .collect();
    let page = rows.get(..per).unwrap_or(&rows);
    let after = page.last().map_or(from, |(ts, id, _)| (*ts, *id));
    let cursor = encode_cursor(after.0, after.1);
    let mut body = json!({
        o.key(): page.iter().map(|(_, _, r)| r.body.clone()).collect::<Vec<_>>(),
        "after_cursor": cursor,
        "after_url": format!("{}/api/v2/incremental/{}/cursor.json?cursor={cursor}", s.base, o.key()),
        "before_cursor": null,
        "before_url": null,
        "end_of_stream": rows.len() <= per,
    });
    if o == Obj::Tickets && q.get("include").is_some_and(|i| i.contains("metric_sets")) {
        let metric_sets = page
            .iter()
            .map(|(_, id, r)| json!({"ticket_id": id, "solved_at": r.solved_at}))
            .collect();
        if let Some(map) = body.as_object_mut() {
            map.insert("metric_sets".into(), metric_sets);
        }
    }
    Json(body).into_response()
}

/// The time-based export: a page is never cut inside a second (ties all come together),
/// and the next `start_time` is the last second served, so its records come again.
async fn export_time(
    State(state): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let s = state.lock().unwrap_or_else(|e| e.into_inner());
    let start = match start_time(&s, &q) {
        Ok(t) => t,
        Err(why) => return error(StatusCode::BAD_REQUEST, "InvalidValue", why),
    };
    let per = page_size(&s, &q);
    let rows: Vec<_> = s
        .visible(Obj::Orgs)
        .into_iter()
        .filter(|(ts, _, _)| *ts >= start)
        .collect();
    let mut n = rows.len().min(per);
    if let Some((last, _, _)) = n.checked_sub(1).and_then(|i| rows.get(i)).copied() {
        while rows.get(n).is_some_and(|r| r.0 == last) {
            n += 1;
        }
    }
    let page = rows.get(..n).unwrap_or(&rows);
    let mut end_time = page.last().map_or(start, |(ts, _, _)| *ts);
    if end_time == start && n >= per {
        // A full page of one second: move past it, or the next page is the same page.
        end_time += 1;
    }
    Json(json!({
        "organizations": page.iter().map(|(_, _, r)| r.body.clone()).collect::<Vec<_>>(),
        "count": n,
        "end_time": end_time,
        "end_of_stream": n < per,
        "next_page": format!("{}/api/v2/incremental/organizations.json?start_time={end_time}", s.base),
    }))
    .into_response()
}

async fn show_many(
    State(state): State<Shared>,
    Path(object): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(o) = Obj::parse(&object) else {
        return error(StatusCode::NOT_FOUND, "InvalidEndpoint", "not found");
    };
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let list = |k: &str| -> Vec<String> {
        q.get(k)
            .map(|v| {
                v.split(',')
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (ids, external) = (list("ids"), list("external_ids"));
    if ids.len() + external.len() > 100 {
        return error(StatusCode::BAD_REQUEST, "InvalidValue", "at most 100 ids");
    }
    let table = s.table(o);
    let mut out: Vec<Value> = ids
        .iter()
        .filter_map(|id| table.get(&id.parse().ok()?).map(|r| r.body.clone()))
        .collect();
    out.extend(
        table
            .values()
            .filter(|r| {
                r.body
                    .get("external_id")
                    .and_then(Value::as_str)
                    .is_some_and(|e| external.iter().any(|x| x == e))
            })
            .map(|r| r.body.clone()),
    );
    Json(json!({ o.key(): out })).into_response()
}

#[derive(Clone, Copy, Debug)]
enum Bulk {
    UsersUpsert,
    UsersCreate,
    OrgsCreate,
    Update(Obj),
    /// `destroy_many`: users are deactivated (`active: false`), organizations get a
    /// `deleted_at`, tickets the status `deleted`; all stay in the exports, as Zendesk's do.
    Destroy(Obj),
}

/// `DELETE /{object}/destroy_many?ids=1,2,3`: a bulk job like the others.
async fn destroy(state: State<Shared>, Path(object): Path<String>, Query(q): Q) -> Response {
    let Some(o) = Obj::parse(&object) else {
        return error(StatusCode::NOT_FOUND, "InvalidEndpoint", "not found");
    };
    let ids: Option<Vec<Value>> = q.get("ids").map(|ids| {
        ids.split(',')
            .map(|id| json!({"id": id.trim().parse::<u64>().ok()}))
            .collect()
    });
    match ids {
        Some(items) if !items.is_empty() => queue(state, items, Bulk::Destroy(o)).await,
        _ => error(StatusCode::BAD_REQUEST, "InvalidValue", "`ids` is required"),
    }
}

async fn submit(state: State<Shared>, Json(body): Json<Value>, bulk: Bulk) -> Response {
    let key = match bulk {
        Bulk::UsersUpsert | Bulk::UsersCreate | Bulk::Update(Obj::Users) => "users",
        _ => "organizations",
    };
    let Some(items) = body.get(key).and_then(Value::as_array).cloned() else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidValue",
            &format!("body needs `{key}`"),
        );
    };
    queue(state, items, bulk).await
}

/// Queue a bulk job (the ceiling is checked here), then run it after `job_delay`.
async fn queue(State(state): State<Shared>, items: Vec<Value>, bulk: Bulk) -> Response {
    if items.len() > 100 {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidValue",
            "at most 100 records per job",
        );
    }
    let (id, delay, job) = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        let max = s.cfg.max_jobs;
        if s.active_jobs >= max {
            s.stats.too_many_jobs += 1;
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({"error": "TooManyJobs",
                    "description": "Too many jobs are currently queued or running. Try again later.",
                    "current_job_ids": []})),
            )
                .into_response();
            inflight_header(&mut r, max, 0);
            return r;
        }
        s.active_jobs += 1;
        s.stats.max_active_jobs = s.stats.max_active_jobs.max(s.active_jobs);
        s.stats.jobs += 1;
        let id = uuid::Uuid::now_v7().simple().to_string();
        let job = json!({"id": id, "url": format!("{}/api/v2/job_statuses/{id}.json", s.base), "total": items.len(),
            "progress": 0, "status": "queued", "message": null, "results": null});
        s.jobs.insert(id.clone(), job.clone());
        let remaining = max - s.active_jobs;
        // The golden ratio's fractions spread the jobs' delays evenly over the range.
        let spread = s
            .cfg
            .job_delay_spread
            .mul_f64((s.stats.jobs as f64 * 0.618_034).fract());
        (id, s.cfg.job_delay + spread, (job, max, remaining))
    };
    let state2 = state.clone();
    let job_id = id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let mut s = state2.lock().unwrap_or_else(|e| e.into_inner());
        let results = match bulk {
            Bulk::Destroy(o) => run_destroy(&mut s, o, &items),
            _ => Value::Array(run_bulk(&mut s, bulk, &items)),
        };
        if let Some(j) = s.jobs.get_mut(&job_id) {
            j["status"] = json!("completed");
            j["progress"] = json!(items.len());
            j["message"] = json!(format!("Completed at {}", rfc3339(Utc::now().timestamp())));
            j["results"] = results;
        }
        s.active_jobs = s.active_jobs.saturating_sub(1);
    });
    let (job, max, remaining) = job;
    let mut r = Json(json!({ "job_status": job })).into_response();
    inflight_header(&mut r, max, remaining);
    r
}

/// The first record (by id) whose `field` is `value`, ignoring case and surrounding spaces.
fn find(s: &Inner, o: Obj, field: &'static str, value: &str) -> Option<u64> {
    let key = (o, field, normal(value));
    s.index.get(&key)?.first().copied()
}

/// A deletion job. Zendesk documents only this result form for them: whether all went
/// through. Ids that do not exist change nothing.
fn run_destroy(s: &mut Inner, o: Obj, items: &[Value]) -> Value {
    let ts = s.now();
    let gone = match o {
        Obj::Users => json!({"active": false}),
        Obj::Orgs => json!({"deleted_at": rfc3339(ts)}),
        Obj::Tickets => json!({"status": "deleted"}),
    };
    let gone = gone.as_object().cloned().unwrap_or_default();
    for id in items.iter().filter_map(|i| i["id"].as_u64()) {
        s.update(o, id, &gone, ts);
    }
    json!({"success": true})
}

fn run_bulk(s: &mut Inner, bulk: Bulk, items: &[Value]) -> Vec<Value> {
    let ts = s.now();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let fields = item.as_object().cloned().unwrap_or_default();
        let text = |k: &str| {
            fields
                .get(k)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        match bulk {
            // Matched by external id, else by email (trimmed, any case): updated, never
            // a second user for one email.
            Bulk::UsersUpsert => match rest::upsert_user_in(s, &fields, ts) {
                Ok((id, created)) => {
                    let status = if created { "Created" } else { "Updated" };
                    out.push(json!({"index": i, "id": id, "status": status}));
                }
                Err(refusal) => out.push(refusal.result(i)),
            },
            Bulk::UsersCreate => match rest::create_user_in(s, &fields, ts) {
                Ok(id) => out.push(json!({"index": i, "id": id})),
                Err(refusal) => out.push(refusal.result(i)),
            },
            Bulk::OrgsCreate => {
                let dup_ext = text("external_id")
                    .is_some_and(|e| find(s, Obj::Orgs, "external_id", &e).is_some());
                let dup_name =
                    text("name").is_none_or(|n| find(s, Obj::Orgs, "name", &n).is_some());
                if dup_ext || dup_name {
                    let field = if dup_ext { "external_id" } else { "name" };
                    out.push(json!({"index": i, "error": "DuplicateValue",
                        "details": format!("{field}: has already been taken or is empty")}));
                    continue;
                }
                let id = s.insert(Obj::Orgs, &fields, ts);
                out.push(json!({"index": i, "id": id}));
            }
            Bulk::Update(o) => {
                let id = fields.get("id").and_then(Value::as_u64);
                match id.filter(|id| s.table(o).contains_key(id)) {
                    // Refused as `PUT /{object}/{id}` would refuse it (a taken email or name).
                    Some(id) => match rest::check_update(s, o, &fields, id) {
                        Ok(()) => {
                            s.update(o, id, &fields, ts);
                            out.push(json!({"id": id, "index": i, "action": "update", "status": "Updated", "success": true}));
                        }
                        Err(refusal) => out.push(refusal.update_result(i, id)),
                    },
                    None => out.push(
                        json!({"id": fields.get("id"), "index": i, "action": "update",
                        "success": false, "status": "Failed", "error": "RecordNotFound"}),
                    ),
                }
            }
            Bulk::Destroy(_) => unreachable!("deletion jobs run in `run_destroy`"),
        }
    }
    out
}

async fn create_ticket(
    State(state): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let Some(fields) = body.get("ticket").and_then(Value::as_object).cloned() else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidValue",
            "body needs `ticket`",
        );
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(id) = key.as_ref().and_then(|k| s.idempotency.get(k).copied()) {
        let t = s.tickets.get(&id).map(|r| r.body.clone());
        return (
            StatusCode::CREATED,
            [("x-idempotency-lookup", "hit")],
            Json(json!({"ticket": t})),
        )
            .into_response();
    }
    let ts = s.now();
    let id = s.insert(Obj::Tickets, &fields, ts);
    if let Some(k) = key {
        s.idempotency.insert(k, id);
    }
    let t = s.tickets.get(&id).map(|r| r.body.clone());
    (
        StatusCode::CREATED,
        [("x-idempotency-lookup", "miss")],
        Json(json!({"ticket": t})),
    )
        .into_response()
}

async fn update_ticket(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let id = match rest::record_id(&state, "PUT", Obj::Tickets, &id) {
        Ok(id) => id,
        Err(answer) => return answer,
    };
    let fields = body
        .get("ticket")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    if !s.tickets.contains_key(&id) {
        return rest::not_found();
    }
    let ts = s.now();
    s.update(Obj::Tickets, id, &fields, ts);
    let body = s.tickets.get(&id).map(|t| t.body.clone());
    Json(json!({ "ticket": body })).into_response()
}

async fn job_status(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let id = id.trim_end_matches(".json");
    s.stats.status_reads += 1;
    match served(&mut s, id) {
        Some(j) => Json(json!({"job_status": j})).into_response(),
        None => error(StatusCode::NOT_FOUND, "RecordNotFound", "Not found"),
    }
}

/// `GET /job_statuses/show_many?ids=a,b`: the statuses of the jobs it knows, in one answer.
async fn job_statuses(State(state): State<Shared>, Query(q): Q) -> Response {
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    s.stats.status_reads += 1;
    let ids = q.get("ids").map(String::as_str).unwrap_or_default();
    let jobs: Vec<Value> = ids
        .split(',')
        .filter_map(|id| served(&mut s, id.trim()))
        .collect();
    Json(json!({ "job_statuses": jobs })).into_response()
}

/// A job's status as answered, noting the ids its results name.
fn served(s: &mut Inner, id: &str) -> Option<Value> {
    let job = s.jobs.get(id)?.clone();
    for r in job
        .get("results")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(id) = r.get("id").and_then(Value::as_u64) {
            s.stats.named_in_results.insert(id.to_string());
        }
    }
    Some(job)
}

/// Zendesk's job-slot header: `total=30; remaining=N; resets=60`.
fn inflight_header(r: &mut Response, max: usize, remaining: usize) {
    if let Ok(v) = HeaderValue::from_str(&format!("total={max}; remaining={remaining}; resets=60"))
    {
        r.headers_mut().insert("zendesk-ratelimit-inflight-jobs", v);
    }
}
