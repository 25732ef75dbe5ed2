//! A stateful Stripe on loopback (feature `sim`): customers, subscriptions, invoices and
//! events with the real shapes (API_FACTS 4, fixtures3.json), newest-first paging,
//! customer search, idempotency keys pruned after a day, bracket-notation forms,
//! per-endpoint 429s, event retention and signed webhook delivery. The secret key is
//! taken as a bearer token or as HTTP Basic's user name, as Stripe takes it.

mod billing;
mod clock;
mod expand;
mod refusals;
mod search;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use revsync_sdk::http::{ApiClient, ApiRequest, Body, DefaultPolicy, Limits, RetryPolicy};
use revsync_sdk::simfault::{self, Fault, Faults};
use serde_json::{json, Map, Value};

use crate::webhook::signature_header;

/// How the simulated account behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub secret_key: String,
    /// Requests per second each endpoint takes before answering 429.
    pub endpoint_limit: u32,
    /// Events older than this are gone from `/v1/events` (Stripe: 30 days).
    pub retention_secs: i64,
    /// Where every event is POSTed, signed with this endpoint secret.
    pub webhook: Option<(String, String)>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            secret_key: "sk_test_sim".into(),
            endpoint_limit: 25,
            retention_secs: 30 * 24 * 3600,
            webhook: None,
        }
    }
}

/// How long an idempotency key is kept (API_FACTS 4.3: "may be pruned after ≥24 h").
const IDEMPOTENCY_KEY_SECS: i64 = 24 * 3600;

fn fixtures() -> &'static Value {
    static F: OnceLock<Value> = OnceLock::new();
    F.get_or_init(|| {
        // Compiled in and parsed by every simulator test: Null only if the file is broken.
        serde_json::from_str(include_str!("../fixtures/objects.json")).unwrap_or_default()
    })
}

fn template(name: &str) -> Value {
    fixtures()[name].clone()
}

fn new_id(prefix: &str) -> String {
    // The random tail of a v7 uuid: ids carry no order, as Stripe's do not.
    let u = uuid::Uuid::now_v7().simple().to_string();
    format!("{prefix}_{}", &u[18..])
}

#[derive(Default)]
struct Table {
    rows: HashMap<String, Value>,
    /// Insertion sequence, the tie-break of equal `created` seconds.
    seq: HashMap<String, u64>,
    /// Deleted customers stay readable as `{"deleted": true}`.
    deleted: HashMap<String, Value>,
}

impl Table {
    fn insert(&mut self, id: &str, v: Value, seq: u64) {
        self.seq.entry(id.to_owned()).or_insert(seq);
        self.rows.insert(id.to_owned(), v);
    }

    /// Newest first, as Stripe lists.
    fn newest_first(&self) -> Vec<&Value> {
        let mut all: Vec<&Value> = self.rows.values().collect();
        all.sort_by_key(|v| {
            let id = v["id"].as_str().unwrap_or_default();
            std::cmp::Reverse((
                v["created"].as_i64().unwrap_or(0),
                self.seq.get(id).copied().unwrap_or(0),
            ))
        });
        all
    }
}

struct State {
    cfg: SimConfig,
    offset_secs: i64,
    /// The second the clock stands still at, when a test froze it.
    frozen_at: Option<i64>,
    seq: u64,
    customers: Table,
    subscriptions: Table,
    invoices: Table,
    prices: HashMap<String, Value>,
    /// Oldest first.
    events: Vec<Value>,
    /// key -> (request fingerprint, status, body, when it was saved)
    idempotency: HashMap<String, (String, u16, Value, i64)>,
    windows: HashMap<String, (u64, u32)>,
    lock_timeouts: VecDeque<()>,
    /// Routes answered "not simulated" so far, each logged once.
    not_simulated: HashSet<String>,
    started: Instant,
    requests: u64,
    throttled: u64,
    outbox: Option<tokio::sync::mpsc::UnboundedSender<Value>>,
    clocks: clock::Clocks,
    /// The test clock and its time while a request or an advance acts on that clock's
    /// objects: what happens then happens at the clock's time, not the wall's.
    under_clock: Option<(String, i64)>,
}

impl State {
    fn now(&self) -> i64 {
        self.frozen_at
            .unwrap_or_else(|| chrono::Utc::now().timestamp())
            + self.offset_secs
    }

    /// The time of what is being done now: the governing test clock's, else the wall's.
    fn op_now(&self) -> i64 {
        self.under_clock
            .as_ref()
            .map_or_else(|| self.now(), |(_, t)| *t)
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn table(&mut self, object: &str) -> Option<&mut Table> {
        match object {
            "customers" => Some(&mut self.customers),
            "subscriptions" => Some(&mut self.subscriptions),
            "invoices" => Some(&mut self.invoices),
            _ => None,
        }
    }

    /// Stripe prunes idempotency keys once they are at least 24 hours old: a request
    /// repeated after that is executed again.
    fn purge_idempotency_keys(&mut self) {
        let oldest = self.now() - IDEMPOTENCY_KEY_SECS;
        self.idempotency.retain(|_, saved| saved.3 > oldest);
    }

    fn purge_events(&mut self) {
        // A test clock's events are dated by the clock but kept for 30 days of the wall's
        // time, so a history simulated in the past is listed once made.
        let (oldest, clocks) = (self.now() - self.cfg.retention_secs, &self.clocks);
        self.events.retain(|e| {
            let made = clocks.made_at(e);
            made.or_else(|| e["created"].as_i64()).unwrap_or(0) >= oldest
        });
    }

    fn emit(
        &mut self,
        kind: &str,
        object: &Value,
        previous: Option<Value>,
        idem_key: Option<&str>,
    ) {
        let mut e = template("event");
        put(&mut e, "id", json!(new_id("evt")));
        put(&mut e, "type", json!(kind));
        put(&mut e, "created", json!(self.op_now()));
        put(&mut e, "api_version", json!("2024-06-20"));
        put(&mut e, "livemode", json!(false));
        put(&mut e, "data", json!({ "object": object }));
        if let Some(p) = previous {
            if let Some(data) = e.get_mut("data") {
                put(data, "previous_attributes", p);
            }
        }
        put(
            &mut e,
            "request",
            json!({ "id": idem_key.map(|_| new_id("req")), "idempotency_key": idem_key }),
        );
        put(
            &mut e,
            "pending_webhooks",
            json!(u8::from(self.outbox.is_some())),
        );
        if self.under_clock.is_some() {
            let wall = self.now();
            self.clocks.note_event(&e, wall);
        }
        if let Some(tx) = &self.outbox {
            let _ = tx.send(e.clone());
        }
        self.events.push(e);
    }
}

/// A running simulator; dropping it leaves the server running until the runtime ends.
#[derive(Clone)]
pub struct Sim {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    faults: Faults,
}

fn error(
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    message: &str,
    param: Option<&str>,
) -> (u16, Value) {
    let mut e = json!({"type": kind, "message": message});
    if let Some(c) = code {
        put(&mut e, "code", json!(c));
        let doc_url = format!(
            "https://stripe.com/docs/error-codes/{}",
            c.replace('_', "-")
        );
        put(&mut e, "doc_url", json!(doc_url));
    }
    if let Some(p) = param {
        put(&mut e, "param", json!(p));
    }
    (status.as_u16(), json!({ "error": e }))
}

fn missing(what: &str, id: &str) -> (u16, Value) {
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("resource_missing"),
        &format!("No such {what}: '{id}'"),
        Some("id"),
    )
}

/// `a[b][0][c]=v` pairs as nested JSON; all-numeric keys become arrays, `a[]` appends.
pub fn parse_brackets(pairs: impl IntoIterator<Item = (String, String)>) -> Value {
    let mut root = Map::new();
    for (key, value) in pairs {
        let (head, rest) = match key.find('[') {
            Some(i) => (&key[..i], &key[i..]),
            None => (key.as_str(), ""),
        };
        let mut path = vec![head.to_owned()];
        path.extend(
            rest.split('[')
                .skip(1)
                .map(|s| s.trim_end_matches(']').to_owned()),
        );
        let mut slot = &mut root;
        for (i, part) in path.iter().enumerate() {
            let last = i == path.len() - 1;
            let next_is_push = path.get(i + 1).is_some_and(|p| p.is_empty());
            if last {
                slot.insert(part.clone(), json!(value));
            } else if next_is_push {
                let arr = slot.entry(part.clone()).or_insert_with(|| json!([]));
                if let Some(a) = arr.as_array_mut() {
                    a.push(json!(value));
                }
                break;
            } else {
                let entry = slot.entry(part.clone()).or_insert_with(|| json!({}));
                if !entry.is_object() {
                    *entry = json!({});
                }
                let Value::Object(inner) = entry else {
                    break;
                };
                slot = inner;
            }
        }
    }
    fn arrays(v: Value) -> Value {
        match v {
            Value::Object(m) => {
                let numeric = !m.is_empty() && m.keys().all(|k| k.parse::<usize>().is_ok());
                if numeric {
                    let mut items: Vec<(usize, Value)> = m
                        .into_iter()
                        .map(|(k, v)| (k.parse().unwrap_or(0), arrays(v)))
                        .collect();
                    items.sort_by_key(|(k, _)| *k);
                    Value::Array(items.into_iter().map(|(_, v)| v).collect())
                } else {
                    Value::Object(m.into_iter().map(|(k, v)| (k, arrays(v))).collect())
                }
            }
            other => other,
        }
    }
    arrays(Value::Object(root))
}

fn parse_form(bytes: &[u8]) -> Value {
    parse_brackets(form_urlencoded::parse(bytes).map(|(k, v)| (k.into_owned(), v.into_owned())))
}

const CUSTOMER_PARAMS: &[&str] = &[
    "name",
    "email",
    "phone",
    "description",
    "address",
    "shipping",
    "metadata",
    "preferred_locales",
    "tax_exempt",
    "invoice_settings",
    "balance",
    "expand",
];

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

impl Sim {
    /// Serve on 127.0.0.1 on a free port.
    // Harness API for tests and the demo: a panic here is the caller's mistake, never
    // something a request can cause.
    #[allow(clippy::expect_used)]
    pub async fn start(cfg: SimConfig) -> Sim {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let webhook = cfg.webhook.clone();
        let state = Arc::new(Mutex::new(State {
            cfg,
            offset_secs: 0,
            frozen_at: None,
            seq: 0,
            customers: Table::default(),
            subscriptions: Table::default(),
            invoices: Table::default(),
            prices: HashMap::new(),
            events: Vec::new(),
            idempotency: HashMap::new(),
            windows: HashMap::new(),
            lock_timeouts: VecDeque::new(),
            not_simulated: HashSet::new(),
            started: Instant::now(),
            requests: 0,
            throttled: 0,
            outbox: webhook.as_ref().map(|_| tx),
            clocks: clock::Clocks::default(),
            under_clock: None,
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let sim = Sim {
            state,
            addr,
            faults: Faults::new(fault_answer),
        };
        let app = Router::new()
            .fallback({
                let sim = sim.clone();
                move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                    let sim = sim.clone();
                    async move { sim.handle(method, uri, headers, body) }
                }
            })
            .layer(axum::middleware::from_fn_with_state(
                sim.faults.clone(),
                simfault::inject,
            ));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        if let Some((url, secret)) = webhook {
            let sim2 = sim.clone();
            tokio::spawn(deliver(sim2, rx, url, secret));
        }
        sim
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Injected faults (none until set): rate-limit 429s, 500s, stalls and cut-short
    /// answers, on every route. A stalled or cut POST has stored its idempotent answer.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The simulator's clock (unix seconds), which tests may move forward.
    pub fn now(&self) -> i64 {
        self.lock().now()
    }

    pub fn advance(&self, secs: i64) {
        self.lock().offset_secs += secs;
    }

    /// Stop the clock at the current second (only `advance` moves it after), so a test
    /// can put many events, or a late one, into one second as a bulk import does.
    pub fn freeze_clock(&self) {
        let mut s = self.lock();
        if s.frozen_at.is_none() {
            s.frozen_at = Some(chrono::Utc::now().timestamp());
        }
    }

    /// The next `n` requests answer 429 `lock_timeout`.
    pub fn inject_lock_timeouts(&self, n: usize) {
        self.lock().lock_timeouts.extend(std::iter::repeat_n((), n));
    }

    /// (requests served, 429s answered).
    pub fn request_counts(&self) -> (u64, u64) {
        let s = self.lock();
        (s.requests, s.throttled)
    }

    pub fn ids(&self, object: &str) -> Vec<String> {
        let mut s = self.lock();
        s.table(object)
            .map(|t| t.rows.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn get(&self, object: &str, id: &str) -> Option<Value> {
        let mut s = self.lock();
        s.table(object).and_then(|t| t.rows.get(id).cloned())
    }

    /// Events still retained, oldest first.
    pub fn events(&self) -> Vec<Value> {
        let mut s = self.lock();
        s.purge_events();
        s.events.clone()
    }

    /// A webhook delivery of `event` as Stripe would send it, signed at `t`.
    pub fn signed(&self, event: &Value, secret: &str, t: i64) -> (Vec<(String, String)>, Vec<u8>) {
        // A JSON value always serializes.
        let body = serde_json::to_vec(event).unwrap_or_default();
        let header = signature_header(secret, t, &body);
        (
            vec![
                (
                    "content-type".into(),
                    "application/json; charset=utf-8".into(),
                ),
                ("stripe-signature".into(), header),
            ],
            body,
        )
    }

    /// A customer created as a user would in the dashboard.
    pub fn seed_customer(&self, name: &str, email: &str) -> String {
        let mut s = self.lock();
        let (_, v) = create_customer(&mut s, &json!({"name": name, "email": email}), None);
        v.get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }

    /// Change a customer as a user would (emits `customer.updated`).
    pub fn update_customer(&self, id: &str, params: Value) -> Value {
        let mut s = self.lock();
        update_customer(&mut s, id, &params, None).1
    }

    pub fn create_price(
        &self,
        unit_amount: i64,
        currency: &str,
        interval: &str,
        interval_count: i64,
        metered: bool,
    ) -> String {
        let id = new_id("price");
        self.seed_price(
            &id,
            unit_amount,
            currency,
            interval,
            interval_count,
            metered,
        );
        id
    }

    /// A price the account holds under `id`: what an operator's price map names
    /// (`price_growth_monthly` in config/examples/workflows/2-deal-won-to-subscription.yaml
    /// stands for the account's own id).
    pub fn seed_price(
        &self,
        id: &str,
        unit_amount: i64,
        currency: &str,
        interval: &str,
        interval_count: i64,
        metered: bool,
    ) {
        let mut s = self.lock();
        let mut p = template("price");
        let id = id.to_owned();
        put(&mut p, "id", json!(id));
        put(&mut p, "created", json!(s.now()));
        put(&mut p, "unit_amount", json!(unit_amount));
        put(
            &mut p,
            "unit_amount_decimal",
            json!(unit_amount.to_string()),
        );
        put(&mut p, "currency", json!(currency));
        put(
            &mut p,
            "recurring",
            json!({"interval": interval, "interval_count": interval_count,
            "meter": null, "usage_type": if metered {"metered"} else {"licensed"}, "trial_period_days": null}),
        );
        put(&mut p, "transform_quantity", Value::Null);
        s.prices.insert(id, p);
    }

    /// A subscription of `customer` to `(price, quantity)` items in `status`.
    pub fn seed_subscription(
        &self,
        customer: &str,
        items: &[(&str, i64)],
        status: &str,
    ) -> Result<String, Value> {
        let mut s = self.lock();
        let params = json!({
            "customer": customer,
            "items": items.iter().map(|(p, q)| json!({"price": p, "quantity": q.to_string()})).collect::<Vec<_>>(),
        });
        let (code, v) = create_subscription(&mut s, &params, Some(status), None);
        if code == 200 {
            Ok(v.get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned())
        } else {
            Err(v)
        }
    }

    /// Give a seeded subscription a past: `start` (unix seconds) becomes its `created` and
    /// `start_date`, and each `(period start, period end, quantity)` is billed as Stripe
    /// billed it then, oldest first (an invoice of its subscription lines, paid). Its
    /// current items are left as they are. The invoices' ids, in order.
    pub fn backdate_subscription(
        &self,
        id: &str,
        start: i64,
        periods: &[(i64, i64, i64)],
    ) -> Vec<String> {
        let mut s = self.lock();
        let Some(sub) = s.subscriptions.rows.get_mut(id) else {
            return Vec::new();
        };
        put(sub, "created", json!(start));
        put(sub, "start_date", json!(start));
        let sub = sub.clone();
        periods
            .iter()
            .enumerate()
            .map(|(i, &(from, to, quantity))| {
                billing::bill_past_period(&mut s, &sub, quantity, (from, to), i == 0)
            })
            .collect()
    }

    /// End a seeded subscription in the past, as a cancellation then would have: canceled
    /// at `canceled_at`, ended at `ended_at` (unix seconds), status `canceled`.
    pub fn end_subscription_at(&self, id: &str, canceled_at: i64, ended_at: i64) -> bool {
        let mut s = self.lock();
        let Some(sub) = s.subscriptions.rows.get_mut(id) else {
            return false;
        };
        put(sub, "status", json!("canceled"));
        put(sub, "canceled_at", json!(canceled_at));
        put(sub, "ended_at", json!(ended_at));
        put(sub, "cancel_at_period_end", json!(false));
        true
    }

    pub fn seed_invoice(&self, customer: &str, amount_due: i64, status: &str) -> String {
        let mut s = self.lock();
        let now = s.now();
        let mut inv = template("invoice");
        let id = new_id("in");
        put(&mut inv, "id", json!(id));
        put(&mut inv, "created", json!(now));
        put(&mut inv, "effective_at", json!(now));
        put(&mut inv, "customer", json!(customer));
        put(&mut inv, "amount_due", json!(amount_due));
        put(
            &mut inv,
            "amount_remaining",
            json!(if status == "paid" { 0 } else { amount_due }),
        );
        put(
            &mut inv,
            "amount_paid",
            json!(if status == "paid" { amount_due } else { 0 }),
        );
        put(&mut inv, "subtotal", json!(amount_due));
        put(&mut inv, "total", json!(amount_due));
        put(&mut inv, "status", json!(status));
        put(&mut inv, "number", json!(format!("SIM-{:04}", s.seq + 1)));
        put(
            &mut inv,
            "lines",
            json!({"object": "list", "data": [], "has_more": false, "url": format!("/v1/invoices/{id}/lines")}),
        );
        put(&mut inv, "parent", Value::Null);
        put(&mut inv, "last_finalization_error", Value::Null);
        let seq = s.next_seq();
        s.invoices.insert(&id, inv.clone(), seq);
        s.emit("invoice.created", &inv, None, None);
        id
    }

    fn handle(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        let mut s = self.lock();
        s.requests += 1;
        let (status, value, replayed) = route(&mut s, &method, &uri, &headers, &body);
        if status == 429 {
            s.throttled += 1;
        }
        drop(s);
        let mut resp = (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            axum::Json(value),
        )
            .into_response();
        let h = resp.headers_mut();
        if let Ok(id) = new_id("req").parse() {
            h.insert("request-id", id);
        }
        if let Some(k) = headers.get("idempotency-key") {
            h.insert("idempotency-key", k.clone());
        }
        if replayed {
            h.insert(
                "idempotent-replayed",
                axum::http::HeaderValue::from_static("true"),
            );
        }
        resp
    }
}

/// What Stripe answers for an injected refusal: the rate limiter's 429, or a 500
/// `api_error`; both with a request id, as every answer has.
fn fault_answer(fault: Fault) -> Response {
    let (status, body) = match fault {
        Fault::Throttle => error(StatusCode::TOO_MANY_REQUESTS, "invalid_request_error", Some("rate_limit"),
            "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.", None),
        _ => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            None,
            "Something went wrong on Stripe's end.",
            None,
        ),
    };
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response();
    if let Ok(id) = new_id("req").parse() {
        r.headers_mut().insert("request-id", id);
    }
    r
}

async fn deliver(
    sim: Sim,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Value>,
    url: String,
    secret: String,
) {
    let Ok(client) = ApiClient::new(
        &url,
        Limits::new(1000, Duration::from_secs(1)),
        RetryPolicy {
            max_attempts: 3,
            min_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(500),
            max_elapsed: Duration::from_secs(5),
        },
        Duration::from_secs(5),
        Arc::new(DefaultPolicy),
    ) else {
        return;
    };
    while let Some(event) = rx.recv().await {
        // A JSON value always serializes.
        let body = serde_json::to_vec(&event).unwrap_or_default();
        let t = sim.now();
        let mut req = ApiRequest::post(url.clone())
            .with_header("Stripe-Signature", signature_header(&secret, t, &body))
            .with_retry(true);
        req.body = Some(Body::Raw {
            content_type: "application/json; charset=utf-8".into(),
            bytes: body,
        });
        if let Err(e) = client.send(req).await {
            tracing::warn!(error = %e, "simulated webhook delivery failed");
        }
    }
}

/// The secret key as a bearer token, or as HTTP Basic's user name with the password left
/// empty (`curl -u sk_test_…:`), both of which Stripe accepts (its spec's `bearerAuth` and
/// `basicAuth`). Stripe ignores the password.
fn authorized(s: &State, headers: &HeaderMap) -> bool {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let (scheme, value) = auth.trim().split_once(' ').unwrap_or((auth, ""));
    let key = if scheme.eq_ignore_ascii_case("bearer") {
        Some(value.trim().to_owned())
    } else if scheme.eq_ignore_ascii_case("basic") {
        base64_decode(value.trim())
            .and_then(|raw| String::from_utf8(raw).ok())
            .map(|pair| {
                pair.split_once(':')
                    .map_or(pair.clone(), |(user, _)| user.to_owned())
            })
    } else {
        None
    };
    key.is_some_and(|k| k == s.cfg.secret_key)
}

/// Standard base64 (padding optional), for the Basic credentials above; `None` if it is not.
/// Hand-written to keep the simulator's dependencies those of the connector.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

fn route(
    s: &mut State,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> (u16, Value, bool) {
    if !authorized(s, headers) {
        let (c, v) = error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            "Invalid API Key provided: sk_****",
            None,
        );
        return (c, v, false);
    }
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    // Stripe limits per endpoint; the collection stands for the endpoint here.
    let endpoint = format!(
        "{method} /{}",
        segments
            .iter()
            .take(2)
            .copied()
            .collect::<Vec<_>>()
            .join("/")
    );
    let second = s.started.elapsed().as_secs();
    let limit = s.cfg.endpoint_limit;
    let w = s.windows.entry(endpoint).or_insert((second, 0));
    if w.0 != second {
        *w = (second, 0);
    }
    w.1 += 1;
    if w.1 > limit {
        let (c, v) = error(StatusCode::TOO_MANY_REQUESTS, "invalid_request_error", Some("rate_limit"),
            "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.", None);
        return (c, v, false);
    }
    if s.lock_timeouts.pop_front().is_some() {
        let (c, v) = error(StatusCode::TOO_MANY_REQUESTS, "invalid_request_error", Some("lock_timeout"),
            "This object cannot be accessed right now because another API request or Stripe process is currently accessing it. If you see this error intermittently, retry the request.", None);
        return (c, v, false);
    }
    let path = uri.path();
    // `/v1/customers/` is no route at Stripe, though its segments would match one here.
    if path.len() > 1 && path.ends_with('/') {
        let (c, v) = refusals::unrecognized(&mut s.not_simulated, method.as_str(), path);
        return (c, v, false);
    }
    let params = if *method == Method::POST {
        parse_form(body)
    } else {
        parse_form(uri.query().unwrap_or("").as_bytes())
    };
    let idem = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if *method == Method::POST {
        if let Some(key) = &idem {
            let fingerprint = format!("{method} {} {params}", uri.path());
            s.purge_idempotency_keys();
            if let Some((fp, status, body, _)) = s.idempotency.get(key) {
                if *fp == fingerprint {
                    return (*status, body.clone(), true);
                }
                let (c, v) = error(StatusCode::BAD_REQUEST, "idempotency_error", None,
                    &format!("Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."), None);
                return (c, v, false);
            }
            let (status, body) = dispatch(s, method, path, &segments, &params, Some(key));
            // Validation failures are not saved: the request never began executing.
            if status != 400 {
                let saved = s.now();
                s.idempotency
                    .insert(key.clone(), (fingerprint, status, body.clone(), saved));
            }
            return (status, body, false);
        }
    }
    let (status, body) = dispatch(s, method, path, &segments, &params, idem.as_deref());
    (status, body, false)
}

fn dispatch(
    s: &mut State,
    method: &Method,
    path: &str,
    seg: &[&str],
    params: &Value,
    idem: Option<&str>,
) -> (u16, Value) {
    if let Some(answer) = clock::dispatch(s, method.as_str(), seg, params, idem) {
        return answer;
    }
    s.under_clock = clock::governing(s, method.as_str(), seg, params);
    let answer = dispatch_object(s, method, path, seg, params, idem);
    s.under_clock = None;
    answer
}

fn dispatch_object(
    s: &mut State,
    method: &Method,
    path: &str,
    seg: &[&str],
    params: &Value,
    idem: Option<&str>,
) -> (u16, Value) {
    match (method.as_str(), seg) {
        ("GET", ["v1", "events"]) => {
            s.purge_events();
            // As Stripe lists them: newest created first, events of one second newest
            // first too (a stable sort of the log read backwards). Borrowed, not cloned:
            // only the page served is copied.
            let mut events: Vec<&Value> = s.events.iter().rev().collect();
            events.sort_by_key(|e| std::cmp::Reverse(e["created"].as_i64().unwrap_or(0)));
            list(events, params, "/v1/events", |e| event_matches(e, params))
        }
        ("GET", ["v1", "events", id]) => {
            s.purge_events();
            s.events
                .iter()
                .find(|e| e["id"] == *id)
                .cloned()
                .map_or_else(|| missing("event", id), |e| (200, e))
        }
        ("GET", ["v1", object @ ("customers" | "subscriptions" | "invoices")]) => {
            let path = format!("/v1/{object}");
            let object = object.to_string();
            let Some(t) = s.table(&object) else {
                return missing("object", &object);
            };
            let rows = t.newest_first();
            let (status, mut answer) =
                list(rows, params, &path, |v| list_filter(&object, v, params));
            if status != 200 {
                return (status, answer);
            }
            match expand::list(&s.customers, &object, &mut answer, params) {
                Ok(()) => (status, answer),
                Err(refused) => refused,
            }
        }
        ("GET", ["v1", "subscriptions", "search"]) => search::rows(
            s.subscriptions.newest_first(),
            params,
            "/v1/subscriptions/search",
        ),
        ("GET", ["v1", "customers", "search"]) => {
            search::rows(s.customers.newest_first(), params, "/v1/customers/search")
        }
        ("GET", ["v1", object @ ("customers" | "subscriptions" | "invoices"), id]) => {
            let what = object.trim_end_matches('s').to_owned();
            let Some(t) = s.table(object) else {
                return missing("object", object);
            };
            let Some(mut found) = t.rows.get(*id).or_else(|| t.deleted.get(*id)).cloned() else {
                return missing(&what, id);
            };
            expand::object(&s.customers, object, &mut found, params);
            (200, found)
        }
        ("GET", ["v1", "prices", id]) => s
            .prices
            .get(*id)
            .cloned()
            .map_or_else(|| missing("price", id), |p| (200, p)),
        ("POST", ["v1", "customers"]) => create_customer(s, params, idem),
        ("POST", ["v1", "customers", id]) => update_customer(s, id, params, idem),
        ("DELETE", ["v1", "customers", id]) => {
            let Some(c) = s.customers.rows.remove(*id) else {
                return missing("customer", id);
            };
            let gone = json!({"id": id, "object": "customer", "deleted": true});
            s.customers.deleted.insert((*id).to_owned(), gone.clone());
            s.emit("customer.deleted", &c, None, idem);
            (200, gone)
        }
        ("POST", ["v1", "subscriptions"]) => create_subscription(s, params, None, idem),
        ("POST", ["v1", "subscriptions", id]) => update(
            s,
            "subscriptions",
            id,
            params,
            SUBSCRIPTION_UPDATE_PARAMS,
            idem,
        ),
        ("DELETE", ["v1", "subscriptions", id]) => {
            let now = s.op_now();
            let Some(sub) = s.subscriptions.rows.get_mut(*id) else {
                return missing("subscription", id);
            };
            put(sub, "status", json!("canceled"));
            put(sub, "canceled_at", json!(now));
            put(sub, "ended_at", json!(now));
            let sub = sub.clone();
            s.emit("customer.subscription.deleted", &sub, None, idem);
            (200, sub)
        }
        _ => refusals::unrecognized(&mut s.not_simulated, method.as_str(), path),
    }
}

fn created_ok(v: &Value, params: &Value) -> bool {
    let c = v["created"].as_i64().unwrap_or(0);
    let f = &params["created"];
    if let Some(exact) = as_int(f) {
        return c == exact;
    }
    let test = |op: &str, pass: fn(i64, i64) -> bool| as_int(&f[op]).is_none_or(|x| pass(c, x));
    test("gt", |c, x| c > x)
        && test("gte", |c, x| c >= x)
        && test("lt", |c, x| c < x)
        && test("lte", |c, x| c <= x)
}

fn event_matches(e: &Value, params: &Value) -> bool {
    let kind = e["type"].as_str().unwrap_or_default();
    let type_ok = match (&params["type"], params["types"].as_array()) {
        (Value::String(t), _) => match t.strip_suffix('*') {
            Some(prefix) => kind.starts_with(prefix),
            None => kind == t,
        },
        (_, Some(types)) => types.iter().any(|t| t == kind),
        _ => true,
    };
    type_ok && created_ok(e, params)
}

fn list_filter(object: &str, v: &Value, params: &Value) -> bool {
    if !created_ok(v, params) {
        return false;
    }
    if let Some(c) = params["customer"].as_str() {
        if v["customer"] != c {
            return false;
        }
    }
    match object {
        "subscriptions" => match params["status"].as_str() {
            None => v["status"] != "canceled",
            Some("all") => true,
            Some(st) => v["status"] == st,
        },
        "invoices" => {
            params["status"].as_str().is_none_or(|st| v["status"] == st)
                && params["subscription"]
                    .as_str()
                    .is_none_or(|sub| v["subscription"] == sub)
        }
        "customers" => {
            params["email"].as_str().is_none_or(|e| v["email"] == e)
                && params["test_clock"]
                    .as_str()
                    .is_none_or(|c| v["test_clock"] == c)
        }
        _ => true,
    }
}

fn list(
    rows: Vec<&Value>,
    params: &Value,
    url: &str,
    keep: impl Fn(&Value) -> bool,
) -> (u16, Value) {
    let limit = match limit(params) {
        Ok(n) => n,
        Err(refused) => return refused,
    };
    let rows: Vec<&Value> = rows.into_iter().filter(|v| keep(v)).collect();
    let start = match (
        params["starting_after"].as_str(),
        params["ending_before"].as_str(),
    ) {
        (Some(_), Some(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                "You may only specify one of these parameters: ending_before, starting_after.",
                None,
            )
        }
        (Some(after), None) => match rows.iter().position(|v| v["id"] == after) {
            Some(i) => i + 1,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("resource_missing"),
                    &format!("No such object: '{after}'"),
                    Some("starting_after"),
                )
            }
        },
        (None, Some(before)) => match rows.iter().position(|v| v["id"] == before) {
            Some(i) => i.saturating_sub(limit),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("resource_missing"),
                    &format!("No such object: '{before}'"),
                    Some("ending_before"),
                )
            }
        },
        (None, None) => 0,
    };
    let end = match params["ending_before"].as_str() {
        Some(before) => rows.iter().position(|v| v["id"] == before).unwrap_or(0),
        None => (start + limit).min(rows.len()),
    };
    let data = page(&rows, start, end);
    let has_more = if params["ending_before"].is_string() {
        start > 0
    } else {
        end < rows.len()
    };
    (
        200,
        json!({"object": "list", "url": url, "has_more": has_more, "data": data}),
    )
}

/// `limit` of a list or search: 10 unless given, at most 100.
fn limit(params: &Value) -> Result<usize, (u16, Value)> {
    match &params["limit"] {
        Value::Null => Ok(10),
        v => match as_int(v).and_then(|n| usize::try_from(n).ok()) {
            Some(n) if (1..=100).contains(&n) => Ok(n),
            _ => Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                "Invalid limit: must be between 1 and 100",
                Some("limit"),
            )),
        },
    }
}

/// The rows `start..end` of a page, copied out.
fn page(rows: &[&Value], start: usize, end: usize) -> Vec<Value> {
    rows.get(start.min(end)..end)
        .unwrap_or_default()
        .iter()
        .map(|v| (*v).clone())
        .collect()
}

fn unknown_param(params: &Value, allowed: &[&str]) -> Option<(u16, Value)> {
    let bad = params
        .as_object()?
        .keys()
        .find(|k| !allowed.contains(&k.as_str()))?;
    Some(error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        Some("parameter_unknown"),
        &format!("Received unknown parameter: {bad}"),
        Some(bad),
    ))
}

/// Stripe's form values are strings; an empty one unsets the field.
fn set_field(obj: &mut Value, key: &str, v: &Value) {
    if key == "metadata" {
        if let Value::Object(m) = v {
            for (k, val) in m {
                if val == "" {
                    obj["metadata"].as_object_mut().map(|md| md.remove(k));
                } else {
                    if let Some(md) = obj.get_mut("metadata") {
                        put(md, k, val.clone());
                    }
                }
            }
        } else if v == "" {
            put(obj, "metadata", json!({}));
        }
    } else if key == "address" {
        // Stripe's address always has its six parts, those not given null; "" unsets it.
        let address = v.as_object().map(|given| {
            let mut a = json!({"city": null, "country": null, "line1": null, "line2": null,
                "postal_code": null, "state": null});
            for (k, part) in given {
                put(&mut a, k, part.clone());
            }
            a
        });
        put(obj, key, address.unwrap_or(Value::Null));
    } else if key == "balance" {
        put(obj, key, as_int(v).map_or(Value::Null, |n| json!(n)));
    } else if key != "expand" {
        obj[key] = if *v == Value::String(String::new()) {
            Value::Null
        } else {
            v.clone()
        };
    }
}

fn create_customer(s: &mut State, params: &Value, idem: Option<&str>) -> (u16, Value) {
    // Only a new customer can be put on a test clock.
    let (params, test_clock) = match clock::take_test_clock(s, params) {
        Ok(taken) => taken,
        Err(refused) => return refused,
    };
    if let Some(e) = unknown_param(&params, CUSTOMER_PARAMS) {
        return e;
    }
    if let Some(e) = refusals::invalid_email(&params) {
        return e;
    }
    let mut c = template("customer");
    // The fixture fills every field; a customer created without them has them null.
    put(&mut c, "address", Value::Null);
    put(&mut c, "shipping", Value::Null);
    let id = new_id("cus");
    put(&mut c, "id", json!(id));
    put(&mut c, "created", json!(s.op_now()));
    put(&mut c, "test_clock", json!(test_clock));
    put(&mut c, "discount", Value::Null);
    put(&mut c, "currency", Value::Null);
    put(&mut c, "invoice_prefix", json!(id[4..12].to_uppercase()));
    for (k, v) in params.as_object().into_iter().flatten() {
        set_field(&mut c, k, v);
    }
    let seq = s.next_seq();
    s.customers.insert(&id, c.clone(), seq);
    s.emit("customer.created", &c, None, idem);
    (200, c)
}

fn update_customer(s: &mut State, id: &str, params: &Value, idem: Option<&str>) -> (u16, Value) {
    update(s, "customers", id, params, CUSTOMER_PARAMS, idem)
}

/// What `POST /v1/subscriptions/{id}` changes here: metadata and a few flags.
const SUBSCRIPTION_UPDATE_PARAMS: &[&str] = &[
    "metadata",
    "description",
    "cancel_at_period_end",
    "cancel_at",
    "items",
    "proration_behavior",
    "expand",
];

/// Set `params` on one object and emit `{type}.updated` with the values they replaced.
fn update(
    s: &mut State,
    object: &str,
    id: &str,
    params: &Value,
    allowed: &[&str],
    idem: Option<&str>,
) -> (u16, Value) {
    if let Some(e) = unknown_param(params, allowed) {
        return e;
    }
    if object == "customers" {
        if let Some(e) = refusals::invalid_email(params) {
            return e;
        }
    }
    let (what, event) = match object {
        "customers" => ("customer", "customer.updated"),
        _ => ("subscription", "customer.subscription.updated"),
    };
    let now = s.op_now();
    let Some(row) = s.table(object).and_then(|t| t.rows.get_mut(id)) else {
        return missing(what, id);
    };
    let mut previous = Map::new();
    if object == "subscriptions" && !params["items"].is_null() {
        let mut changed = row.clone();
        if let Err(refused) = billing::update_items(
            &mut changed,
            &params["items"],
            &params["proration_behavior"],
            &mut previous,
        ) {
            return refused;
        }
        *row = changed;
    }
    for (k, v) in params.as_object().into_iter().flatten() {
        if matches!(k.as_str(), "expand" | "items" | "proration_behavior") {
            continue;
        }
        previous.insert(k.clone(), row[k.as_str()].clone());
        set_field(row, k, v);
    }
    if object == "subscriptions" {
        billing::schedule_cancellation(row, &mut previous, now);
    }
    let row = row.clone();
    s.emit(event, &row, Some(Value::Object(previous)), idem);
    (200, row)
}

/// What `POST /v1/subscriptions` takes here.
const SUBSCRIPTION_CREATE_PARAMS: &[&str] = &[
    "customer",
    "items",
    "metadata",
    "trial_period_days",
    "trial_end",
    "cancel_at",
    "cancel_at_period_end",
    "expand",
];

/// A subscription made through the API (`status` None: trialing or active, billed at once as
/// Stripe bills), or seeded by a test harness straight into `status`, with no invoice.
fn create_subscription(
    s: &mut State,
    params: &Value,
    status: Option<&str>,
    idem: Option<&str>,
) -> (u16, Value) {
    if let Some(e) = unknown_param(params, SUBSCRIPTION_CREATE_PARAMS) {
        return e;
    }
    let Some(customer) = params["customer"].as_str() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_missing"),
            "Missing required param: customer.",
            Some("customer"),
        );
    };
    let Some(test_clock) = s
        .customers
        .rows
        .get(customer)
        .map(|c| c["test_clock"].clone())
    else {
        return missing("customer", customer);
    };
    let now = s.op_now();
    let trial_end = match status {
        Some("trialing") => Some(now + 14 * 86_400),
        Some(_) => None,
        None => as_int(&params["trial_end"])
            .or_else(|| as_int(&params["trial_period_days"]).map(|d| now + d * 86_400))
            .filter(|end| *end > now),
    };
    let from_api = status.is_none();
    let status = status.unwrap_or(if trial_end.is_some() {
        "trialing"
    } else {
        "active"
    });
    let id = new_id("sub");
    let mut items = Vec::new();
    let mut currency = Value::Null;
    let mut period_end = now;
    for (i, item) in params["items"].as_array().into_iter().flatten().enumerate() {
        let price_id = item["price"].as_str().unwrap_or_default();
        let Some(price) = s.prices.get(price_id) else {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("resource_missing"),
                &format!("No such price: '{price_id}'"),
                Some(&format!("items[{i}][price]")),
            );
        };
        currency = price["currency"].clone();
        period_end =
            trial_end.unwrap_or_else(|| billing::add_intervals(now, &price["recurring"], 1));
        let mut si = template("subscription_item");
        put(&mut si, "id", json!(new_id("si")));
        put(&mut si, "created", json!(now));
        put(&mut si, "price", price.clone());
        put(
            &mut si,
            "quantity",
            json!(as_int(&item["quantity"]).unwrap_or(1)),
        );
        put(&mut si, "subscription", json!(id));
        put(&mut si, "current_period_start", json!(now));
        put(&mut si, "current_period_end", json!(period_end));
        put(&mut si, "plan", Value::Null);
        items.push(si);
    }
    if items.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_missing"),
            "Missing required param: items.",
            Some("items"),
        );
    }
    let mut sub = template("subscription");
    put(&mut sub, "id", json!(id));
    put(&mut sub, "created", json!(now));
    put(&mut sub, "start_date", json!(now));
    put(
        &mut sub,
        "billing_cycle_anchor",
        json!(trial_end.unwrap_or(now)),
    );
    put(&mut sub, "customer", json!(customer));
    put(&mut sub, "currency", currency);
    put(&mut sub, "status", json!(status));
    put(&mut sub, "test_clock", test_clock);
    put(
        &mut sub,
        "items",
        json!({"object": "list", "data": items, "has_more": false,
        "url": format!("/v1/subscription_items?subscription={id}")}),
    );
    for k in [
        "cancel_at",
        "canceled_at",
        "ended_at",
        "trial_end",
        "trial_start",
        "next_pending_invoice_item_invoice",
        "latest_invoice",
    ] {
        put(&mut sub, k, Value::Null);
    }
    if let Some(end) = trial_end {
        put(&mut sub, "trial_start", json!(now));
        put(&mut sub, "trial_end", json!(end));
    }
    put(&mut sub, "cancel_at_period_end", json!(false));
    put(&mut sub, "pending_update", Value::Null);
    put(&mut sub, "pause_collection", Value::Null);
    put(&mut sub, "transfer_data", Value::Null);
    put(&mut sub, "billing_schedules", json!([]));
    if let Some(m) = params["metadata"].as_object() {
        put(&mut sub, "metadata", Value::Object(m.clone()));
    }
    for k in ["cancel_at", "cancel_at_period_end"] {
        if !params[k].is_null() {
            set_field(&mut sub, k, &params[k]);
        }
    }
    billing::schedule_cancellation(&mut sub, &mut Map::new(), now);
    let invoice = from_api.then(|| new_id("in"));
    put(&mut sub, "latest_invoice", json!(invoice));
    let seq = s.next_seq();
    s.subscriptions.insert(&id, sub.clone(), seq);
    s.emit("customer.subscription.created", &sub, None, idem);
    if let Some(invoice) = invoice {
        billing::bill_first_period(s, &sub, invoice, (now, period_end));
    }
    (200, sub)
}

impl Sim {
    /// A status change as Stripe's billing would make it (emits `customer.subscription.updated`).
    pub fn set_subscription_status(&self, id: &str, status: &str) -> Option<Value> {
        let mut s = self.lock();
        let sub = s.subscriptions.rows.get_mut(id)?;
        let previous = json!({"status": sub["status"].clone()});
        put(sub, "status", json!(status));
        let sub = sub.clone();
        s.emit("customer.subscription.updated", &sub, Some(previous), None);
        Some(sub)
    }
}

/// Sets `key` of a JSON object built here; anything else is left as it is.
fn put(target: &mut Value, key: &str, value: Value) {
    if let Some(map) = target.as_object_mut() {
        map.insert(key.to_owned(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_nest_index_and_append() {
        let v = parse_form(b"name=A+B&metadata[revsync_id]=x&items[1][price]=p2&items[0][price]=p1&items[0][quantity]=3&expand[]=a&expand[]=b&created[gt]=5");
        assert_eq!(
            v,
            json!({
                "name": "A B",
                "metadata": {"revsync_id": "x"},
                "items": [{"price": "p1", "quantity": "3"}, {"price": "p2"}],
                "expand": ["a", "b"],
                "created": {"gt": "5"},
            })
        );
    }

    #[test]
    fn the_fixture_holds_every_template() {
        for name in [
            "customer",
            "subscription",
            "subscription_item",
            "price",
            "invoice",
            "event",
        ] {
            assert!(template(name).is_object(), "{name}");
        }
    }

    #[test]
    fn base64_decodes_with_or_without_padding_and_refuses_other_text() {
        assert_eq!(base64_decode("c2tfdGVzdF9zaW06").unwrap(), b"sk_test_sim:");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert_eq!(base64_decode("YWI").unwrap(), b"ab");
        assert_eq!(base64_decode("not base64!"), None);
    }
}
