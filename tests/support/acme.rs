//! "Acme CRM": a small fake API on loopback with the behaviours the runtime must survive
//! (paging, batch writes with idempotency keys, scripted 429/500/400/401 answers and
//! dropped responses), and the `acme` connector that speaks to it through the SDK's
//! shared HTTP client. Used by the runtime tests only.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use revsync_sdk::http::{ApiClient, ApiRequest, Auth, DefaultPolicy, Limits, RetryPolicy};
use revsync_sdk::{
    Capabilities, Change, Connector, ConnectorError, ConnectorType, Fetched, Inbound, Kind,
    ObjectCapability, ParamError, PushItem, PushOp, PushResult, Secret, WebhookError, WebhookEvent,
    WebhookRequest,
};
use serde::Deserialize;
use serde_json::{json, Value};

/// A scripted answer to the next batch write.
#[derive(Debug, Clone)]
pub enum Scripted {
    TooMany {
        retry_after_secs: u64,
    },
    ServerError,
    BadRequest(&'static str),
    Unauthorized,
    /// Apply the write, then answer 500 as if the response were lost.
    ApplyThenFail,
}

#[derive(Debug, Clone)]
pub struct Contact {
    pub id: String,
    pub email: String,
    pub name: String,
    pub updated: i64,
    pub idempotency_key: Option<String>,
}

#[derive(Default)]
pub struct FakeState {
    pub contacts: BTreeMap<String, Contact>,
    pub next_id: u64,
    pub clock: i64,
    pub script: VecDeque<Scripted>,
    /// Arrival time of every batch write.
    pub writes: Vec<Instant>,
    pub creates: u64,
    pub updates: u64,
    /// Slow reads: each list page answers after this long (a big or busy system).
    pub list_delay_ms: u64,
    /// Serve this many list pages, then answer 503 to every list read (a system whose
    /// first read never completes). Reads by id still answer.
    pub list_pages_left: Option<u32>,
    /// Reads of one contact by id.
    pub reads_by_id: u64,
    /// Poison records: a batch write answers each input with one of these emails with a
    /// per-item 503, for ever; the rest of the batch is written.
    pub poison: std::collections::HashSet<String>,
    /// Ids whose read by id answers 503, for ever.
    pub broken_reads: std::collections::HashSet<String>,
    /// Ids whose read by id is refused for good (400).
    pub refused_reads: std::collections::HashSet<String>,
    /// List answers say the newest changes are held back (as Zendesk's exports keep the
    /// last minute): a read to the end is `behind`.
    pub holds_back: bool,
}

#[derive(Clone)]
pub struct Fake {
    pub state: Arc<Mutex<FakeState>>,
    pub addr: SocketAddr,
}

impl Fake {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(FakeState {
            next_id: 1000,
            clock: 1_700_000_000,
            ..Default::default()
        }));
        let app = Router::new()
            .route("/v1/contacts", get(list))
            .route("/v1/contacts/batch", post(batch))
            .route("/v1/contacts/{id}", get(one))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { state, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seed(&self, email: &str, name: &str) -> String {
        let mut s = self.state.lock().unwrap();
        s.next_id += 1;
        s.clock += 1;
        let id = s.next_id.to_string();
        let c = Contact {
            id: id.clone(),
            email: email.into(),
            name: name.into(),
            updated: s.clock,
            idempotency_key: None,
        };
        s.contacts.insert(id.clone(), c);
        id
    }

    pub fn script(&self, s: Scripted) {
        self.state.lock().unwrap().script.push_back(s);
    }

    /// Whether some contact has this email.
    pub fn holds_email(&self, email: &str) -> bool {
        self.state
            .lock()
            .unwrap()
            .contacts
            .values()
            .any(|c| c.email == email)
    }

    pub fn count(&self) -> usize {
        self.state.lock().unwrap().contacts.len()
    }

    pub fn writes(&self) -> usize {
        self.state.lock().unwrap().writes.len()
    }
}

#[derive(Deserialize)]
struct ListQuery {
    after: Option<i64>,
    limit: Option<usize>,
}

/// The 401 for a request without the account's token.
fn unauthorized(headers: &HeaderMap) -> Option<Response> {
    (headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer acme-token")).then(
        || {
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "bad token"})),
            )
                .into_response()
        },
    )
}

async fn list(
    State(s): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Some(refused) = unauthorized(&headers) {
        return refused;
    }
    {
        let mut st = s.lock().unwrap();
        match st.list_pages_left {
            Some(0) => return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response(),
            Some(n) => st.list_pages_left = Some(n - 1),
            None => {}
        }
    }
    let delay = s.lock().unwrap().list_delay_ms;
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let s = s.lock().unwrap();
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(10).min(10);
    let mut rows: Vec<&Contact> = s.contacts.values().filter(|c| c.updated > after).collect();
    rows.sort_by_key(|c| c.updated);
    let page: Vec<Value> = rows
        .iter()
        .take(limit)
        .map(|c| json!({"id": c.id, "email": c.email, "name": c.name, "updated": c.updated}))
        .collect();
    let next = rows
        .get(limit.min(rows.len()).saturating_sub(1))
        .map(|c| c.updated);
    let behind = s.holds_back;
    Json(json!({"results": page, "next": next, "more": rows.len() > limit, "behind": behind}))
        .into_response()
}

async fn one(
    State(s): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    if let Some(refused) = unauthorized(&headers) {
        return refused;
    }
    let mut s = s.lock().unwrap();
    s.reads_by_id += 1;
    if s.broken_reads.contains(&id) {
        return (StatusCode::SERVICE_UNAVAILABLE, "unavailable").into_response();
    }
    if s.refused_reads.contains(&id) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "this read is refused"})),
        )
            .into_response();
    }
    match s.contacts.get(&id) {
        Some(c) => {
            Json(json!({"id": c.id, "email": c.email, "name": c.name, "updated": c.updated}))
                .into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such contact"})),
        )
            .into_response(),
    }
}

async fn batch(State(s): State<Arc<Mutex<FakeState>>>, Json(body): Json<Value>) -> Response {
    let mut s = s.lock().unwrap();
    s.writes.push(Instant::now());
    let scripted = s.script.pop_front();
    match &scripted {
        Some(Scripted::TooMany { retry_after_secs }) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", retry_after_secs.to_string())],
                Json(json!({"error": "slow down"})),
            )
                .into_response()
        }
        Some(Scripted::ServerError) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response()
        }
        Some(Scripted::BadRequest(msg)) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": msg, "category": "VALIDATION_ERROR"})),
            )
                .into_response()
        }
        Some(Scripted::Unauthorized) => {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "token revoked"})),
            )
                .into_response()
        }
        _ => {}
    }
    let mut results = Vec::new();
    for input in body["inputs"].as_array().cloned().unwrap_or_default() {
        let props = &input["properties"];
        if props["email"]
            .as_str()
            .is_some_and(|e| s.poison.contains(e))
        {
            results.push(json!({"error": "unavailable", "status": 503}));
            continue;
        }
        s.clock += 1;
        let clock = s.clock;
        let key = input["idempotency_key"].as_str().map(str::to_owned);
        // A create carrying a key we already saw is the same create: answer with its record.
        let existing = key.as_ref().and_then(|k| {
            s.contacts
                .values()
                .find(|c| c.idempotency_key.as_ref() == Some(k))
                .map(|c| c.id.clone())
        });
        let id = match (input["id"].as_str(), existing) {
            (Some(id), _) => {
                s.updates += 1;
                id.to_owned()
            }
            (None, Some(id)) => id,
            (None, None) => {
                s.creates += 1;
                s.next_id += 1;
                s.next_id.to_string()
            }
        };
        let entry = s.contacts.entry(id.clone()).or_insert(Contact {
            id: id.clone(),
            email: String::new(),
            name: String::new(),
            updated: clock,
            idempotency_key: key,
        });
        if let Some(e) = props["email"].as_str() {
            entry.email = e.into();
        }
        if let Some(n) = props["name"].as_str() {
            entry.name = n.into();
        }
        entry.updated = clock;
        results.push(json!({"id": id}));
    }
    if matches!(scripted, Some(Scripted::ApplyThenFail)) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "connection reset").into_response();
    }
    Json(json!({"results": results})).into_response()
}

/// The `acme` connector type.
pub struct AcmeType;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AcmeParams {
    base_url: String,
    token: Secret,
    #[serde(default)]
    webhook_token: Option<Secret>,
    /// Whether creates are upserts on the email (`Connector::creates_match_existing`).
    #[serde(default)]
    creates_match_existing: bool,
}

impl ConnectorType for AcmeType {
    fn name(&self) -> &'static str {
        "acme"
    }
    fn objects(&self) -> &'static [(&'static str, Kind)] {
        &[("contacts", Kind::Person)]
    }
    fn validate_params(&self, params: &Value) -> Result<(), Vec<ParamError>> {
        revsync_sdk::parse_params::<AcmeParams>(params)
            .map(|_| ())
            .map_err(|e| vec![e])
    }
    fn params_example(&self) -> &'static str {
        "params:\n  base_url: http://127.0.0.1:9\n  token: ${ACME_TOKEN}"
    }
    fn build(
        &self,
        ctx: &revsync_sdk::BuildContext<'_>,
    ) -> Option<Result<Arc<dyn Connector>, ConnectorError>> {
        let p: AcmeParams = match revsync_sdk::parse_params(ctx.params) {
            Ok(p) => p,
            Err(e) => {
                return Some(Err(ConnectorError::Permanent {
                    detail: e.message,
                    status: None,
                    body: None,
                }))
            }
        };
        let retry = RetryPolicy {
            max_attempts: 4,
            min_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(400),
            max_elapsed: Duration::from_secs(20),
        };
        Some(
            ApiClient::new(
                &p.base_url,
                // The fake documents 100 requests per second; the file may say less.
                match ctx
                    .rate_limit
                    .resolve(Limits::new(100, Duration::from_secs(1)))
                {
                    Ok(l) => l,
                    Err(e) => {
                        return Some(Err(ConnectorError::Permanent {
                            detail: e,
                            status: None,
                            body: None,
                        }))
                    }
                },
                retry,
                Duration::from_secs(5),
                Arc::new(DefaultPolicy),
            )
            .map(|client| {
                Arc::new(Acme {
                    client,
                    token: p.token,
                    webhook_token: p.webhook_token,
                    creates_match_existing: p.creates_match_existing,
                }) as Arc<dyn Connector>
            }),
        )
    }
}

pub struct Acme {
    client: ApiClient,
    token: Secret,
    webhook_token: Option<Secret>,
    creates_match_existing: bool,
}

fn to_change(v: &Value) -> Change {
    let updated = v["updated"].as_i64().unwrap_or(0);
    if v["email"] == "panic@acme.test" {
        panic!("the acme connector met a record it cannot handle");
    }
    Change {
        object: "contacts".into(),
        external_id: v["id"].as_str().unwrap_or_default().into(),
        source_updated_at: DateTime::<Utc>::from_timestamp(updated, 0).unwrap(),
        fields: [
            ("email".to_owned(), v["email"].clone()),
            ("name".to_owned(), v["name"].clone()),
        ]
        .into_iter()
        .collect(),
        deleted: false,
        canonical_id: None,
    }
}

#[async_trait]
impl Connector for Acme {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            objects: vec![ObjectCapability {
                name: "contacts".into(),
                kind: Kind::Person,
                read: true,
                write: true,
            }],
            batch_size: 10,
            webhooks: true,
        }
    }

    async fn fetch(&self, _object: &str, cursor: Option<&str>) -> Result<Fetched, ConnectorError> {
        let mut req = ApiRequest::get("/v1/contacts")
            .with_auth(Auth::Bearer(self.token.clone()))
            .with_query("limit", "10");
        if let Some(c) = cursor {
            req = req.with_query("after", c);
        }
        let body: Value = self.client.send(req).await?.json()?;
        let mut fetched = Fetched {
            cursor: body["next"]
                .as_i64()
                .map(|n| n.to_string())
                .or_else(|| cursor.map(str::to_owned)),
            more: body["more"] == true,
            behind: body["behind"] == true,
            ..Fetched::default()
        };
        for v in body["results"].as_array().into_iter().flatten() {
            // A record this connector cannot decode: kept aside, the page goes on.
            if v["email"]
                .as_str()
                .is_some_and(|e| e.starts_with("undecodable"))
            {
                fetched.reject("contacts", v, "undecodable contact".into());
            } else {
                fetched.changes.push(to_change(v));
            }
        }
        Ok(fetched)
    }

    fn rate_limit(&self) -> Option<revsync_sdk::http::LimiterStats> {
        Some(self.client.limiter().stats())
    }

    fn reads_by_id_carry_modified_times(&self) -> bool {
        true
    }

    fn creates_match_existing(&self, _object: &str) -> bool {
        self.creates_match_existing
    }

    async fn fetch_by_ids(
        &self,
        _object: &str,
        ids: &[String],
    ) -> Result<Vec<Change>, ConnectorError> {
        let mut out = Vec::new();
        for id in ids {
            let req = ApiRequest::get(format!("/v1/contacts/{id}"))
                .with_auth(Auth::Bearer(self.token.clone()));
            match self.client.send(req).await {
                Ok(resp) => out.push(to_change(&resp.json()?)),
                Err(ConnectorError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn push(
        &self,
        _object: &str,
        items: &[PushItem],
    ) -> Result<Vec<PushResult>, ConnectorError> {
        let inputs: Vec<Value> = items
            .iter()
            .map(|i| match &i.op {
                PushOp::Create { canonical_id } => {
                    json!({"idempotency_key": canonical_id.to_string(), "properties": i.fields})
                }
                PushOp::Update { external_id } | PushOp::Delete { external_id } => {
                    json!({"id": external_id, "properties": i.fields})
                }
            })
            .collect();
        // Creates carry idempotency keys and updates are idempotent: safe to retry.
        let req = ApiRequest::post("/v1/contacts/batch")
            .with_auth(Auth::Bearer(self.token.clone()))
            .with_json(json!({"inputs": inputs}))
            .with_retry(true);
        let body: Value = self.client.send(req).await?.json()?;
        Ok(body["results"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| match r["error"].as_str() {
                Some(e) => Err(ConnectorError::Transient(e.to_owned())),
                None => Ok(r["id"].as_str().unwrap_or_default().to_owned()),
            })
            .collect())
    }

    fn verify_webhook(&self, req: &WebhookRequest<'_>) -> Result<Vec<WebhookEvent>, WebhookError> {
        let expected = self
            .webhook_token
            .as_ref()
            .map(Secret::expose)
            .unwrap_or_default();
        if req.header("x-acme-token") != Some(expected) || expected.is_empty() {
            return Err(WebhookError::BadSignature(
                "x-acme-token does not match".into(),
            ));
        }
        let body: Value =
            serde_json::from_slice(req.body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
        let events = body["events"]
            .as_array()
            .ok_or_else(|| WebhookError::Malformed("no `events` array".into()))?;
        events
            .iter()
            .map(|e| {
                let id = e["id"]
                    .as_str()
                    .ok_or_else(|| WebhookError::Malformed("event without id".into()))?;
                // `{"id", "hint": "<contact id>"}`: something changed there, read it.
                let inbound = match e["hint"].as_str() {
                    Some(external_id) => Inbound::Hint {
                        external_id: external_id.into(),
                    },
                    None => Inbound::Change(to_change(&e["contact"])),
                };
                Ok(WebhookEvent {
                    id: id.into(),
                    object: "contacts".into(),
                    inbound,
                })
            })
            .collect()
    }
}
