//! A stateful Salesforce on loopback (feature `sim`): OAuth token endpoint with expiring
//! tokens, the SOQL subset the connector emits, query batches with `nextRecordsUrl`,
//! sObject Collections with per-item errors and external-id upsert, `Sforce-Limit-Info`
//! on every answer and `403 REQUEST_LIMIT_EXCEEDED` once the daily allocation is spent.
//!
//! Deliberately strict: SOQL outside the subset is `MALFORMED_QUERY`, so a connector
//! change that emits something the real API might read differently fails here first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use chrono::{DateTime, SubsecRound, TimeZone, Utc};
use revsync_sdk::simfault::{self, Fault, Faults};
use serde_json::{json, Map, Value};

mod collections;
mod describe;
mod history;
mod rest;
mod soql;

pub const ORG_ID: &str = "00DSIM000000001AAA";
pub const CLIENT_ID: &str = "sim-client";
pub const CLIENT_SECRET: &str = "sim-secret";
pub const REFRESH_TOKEN: &str = "sim-refresh";
pub const EXTERNAL_ID_FIELD: &str = "Revsync_Id__c";

/// A record as the simulated org holds it.
#[derive(Debug, Clone)]
pub struct SimRecord {
    pub id: String,
    pub object: String,
    pub stamp: DateTime<Utc>,
    pub deleted: bool,
    pub fields: Map<String, Value>,
}

/// The rest of a query answer, kept for `nextRecordsUrl`.
#[derive(Debug)]
struct Locator {
    version: String,
    batch: usize,
    rows: Vec<Value>,
}

#[derive(Debug)]
pub struct SimState {
    pub records: BTreeMap<String, SimRecord>,
    seq: u64,
    clock: DateTime<Utc>,
    /// While set, writes keep one SystemModstamp (many records per second).
    pub frozen: bool,
    /// Live tokens and the data calls each has left (`None`: until expired by hand).
    tokens: HashMap<String, Option<u32>>,
    /// Calls a new token is good for.
    pub token_ttl_calls: Option<u32>,
    pub token_requests: u64,
    pub api_used: u64,
    pub api_max: u64,
    /// Records per query answer before `nextRecordsUrl` (Salesforce: up to 2,000).
    pub batch_size: usize,
    locators: HashMap<String, Locator>,
    /// Apply the next N writes, then answer 500 as if the response were lost.
    pub drop_responses: u32,
    /// Write calls received (collections), for tests.
    pub write_calls: u64,
    pub limit_refusals: u64,
    /// Records sent in query answers, for tests of what a read costs.
    pub records_served: u64,
    /// `METHOD /path` of each request for a resource the simulator does not have (logged
    /// once each as not simulated).
    pub not_simulated: BTreeSet<String>,
    instance_url: String,
}

impl Default for SimState {
    fn default() -> Self {
        Self {
            records: BTreeMap::new(),
            seq: 0,
            clock: Utc
                .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
            frozen: false,
            tokens: HashMap::new(),
            token_ttl_calls: None,
            token_requests: 0,
            api_used: 0,
            api_max: 100_000,
            batch_size: 2000,
            locators: HashMap::new(),
            drop_responses: 0,
            write_calls: 0,
            limit_refusals: 0,
            records_served: 0,
            not_simulated: BTreeSet::new(),
            instance_url: String::new(),
        }
    }
}

fn prefix(object: &str) -> &'static str {
    match object {
        "Account" => "001",
        "Contact" => "003",
        "Opportunity" => "006",
        "Lead" => "00Q",
        history::OBJECT => "008",
        _ => "a00",
    }
}

/// The simulated sObject `name` names (API names ignore case), spelled as Salesforce does.
fn canonical_object(name: &str) -> Option<&'static str> {
    ["Account", "Contact", "Lead", "Opportunity"]
        .into_iter()
        .find(|o| o.eq_ignore_ascii_case(name))
}

fn required(object: &str) -> &'static [&'static str] {
    match object {
        "Contact" => &["LastName"],
        "Lead" => &["LastName", "Company"],
        "Account" => &["Name"],
        "Opportunity" => &["Name", "StageName", "CloseDate"],
        _ => &[],
    }
}

fn item_error(code: &str, message: &str, fields: &[&str]) -> Value {
    json!({"success": false, "errors": [{"statusCode": code, "message": message, "fields": fields}]})
}

fn succeeded(item: &Value) -> bool {
    item.get("success") == Some(&Value::Bool(true))
}

/// Salesforce's words for a write naming a field the object does not have.
fn no_such_column(object: &str, field: &str) -> String {
    format!("No such column '{field}' on sobject of type {object}")
}

/// A write's fields as Salesforce checks them before saving: the item error, if any.
fn field_refusal(object: &str, fields: &Map<String, Value>, creating: bool) -> Option<Value> {
    match describe::check_write(object, fields.keys(), creating) {
        describe::WriteCheck::Fine => describe::too_long(object, fields).map(|(f, max)| {
            let value = fields.get(&f).and_then(Value::as_str).unwrap_or_default();
            item_error(
                "STRING_TOO_LONG",
                &format!("{f}: data value too large: {value} (max length={max})"),
                &[f.as_str()],
            )
        }),
        describe::WriteCheck::Unknown(f) => Some(item_error(
            "INVALID_FIELD",
            &no_such_column(object, &f),
            &[],
        )),
        describe::WriteCheck::ReadOnly(names) => {
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            Some(item_error(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                &format!(
                    "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your role or profile.",
                    names.join(", ")
                ),
                &refs,
            ))
        }
    }
}

/// The REST answer to a body naming a field the object does not have: the whole request
/// fails with 400 INVALID_FIELD, before any record is saved.
fn unknown_field_answer<'a>(
    s: &SimState,
    object: &str,
    names: impl IntoIterator<Item = &'a String>,
) -> Option<Response> {
    match describe::check_write(object, names, true) {
        describe::WriteCheck::Unknown(f) => {
            let mut r = rest_error(
                StatusCode::BAD_REQUEST,
                "INVALID_FIELD",
                &no_such_column(object, &f),
            );
            add_limit_info(s, &mut r);
            Some(r)
        }
        _ => None,
    }
}

impl SimState {
    fn tick(&mut self) -> DateTime<Utc> {
        if !self.frozen {
            // SystemModstamp is the server's time of the write, in whole seconds (the API
            // shows `.000`): many writes share a second, and a write is never stamped
            // before the wall clock, so it reads back as newer than an earlier edit.
            let now = Utc::now().trunc_subsecs(0);
            self.clock = self.clock.max(now);
        }
        self.clock
    }

    fn new_id(&mut self, object: &str) -> String {
        self.seq += 1;
        // Fixed width: string order is creation order, as the connector's Id tiebreak needs.
        format!("{}{:012}AAA", prefix(object), self.seq)
    }

    /// Insert a record as a user would (no validation).
    pub fn insert(&mut self, object: &str, fields: Map<String, Value>) -> String {
        let stamp = self.tick();
        self.insert_at(object, fields, stamp)
    }

    /// [`SimState::insert`] stamped `at`, which may be in the past: the org's clock is not
    /// settable, so a test builds a record's past this way (issue 20). Later writes through
    /// the API are stamped no earlier than now.
    pub fn insert_at(
        &mut self,
        object: &str,
        fields: Map<String, Value>,
        at: DateTime<Utc>,
    ) -> String {
        let id = self.new_id(object);
        let stamp = at;
        self.records.insert(
            id.clone(),
            SimRecord {
                id: id.clone(),
                object: object.to_owned(),
                stamp,
                deleted: false,
                fields,
            },
        );
        if object == "Opportunity" {
            self.record_history(&id, None, stamp);
        }
        id
    }

    /// Changes fields of the record `id` as a user would (no validation), stamped `at`
    /// (past allowed, as for [`SimState::insert_at`]).
    pub fn update_at(&mut self, id: &str, fields: Map<String, Value>, at: DateTime<Utc>) {
        let Some(rec) = self.records.get_mut(id) else {
            return;
        };
        let before = (rec.object == "Opportunity"
            && history::makes_row(Some(&rec.fields), &fields))
        .then(|| rec.fields.clone());
        rec.fields.extend(fields);
        rec.stamp = at;
        if let Some(before) = before {
            self.record_history(id, Some(&before), at);
        }
    }

    pub fn live<'a>(&'a self, object: &'a str) -> impl Iterator<Item = &'a SimRecord> + 'a {
        self.records
            .values()
            .filter(move |r| r.object == object && !r.deleted)
    }

    /// Duplicate rule: a second live Contact or Lead with the same email.
    fn duplicate(&self, object: &str, fields: &Map<String, Value>, except: Option<&str>) -> bool {
        let Some(email) = fields.get("Email").and_then(Value::as_str) else {
            return false;
        };
        matches!(object, "Contact" | "Lead")
            && self.live(object).any(|r| {
                Some(r.id.as_str()) != except
                    && r.fields
                        .get("Email")
                        .and_then(Value::as_str)
                        .is_some_and(|e| e.eq_ignore_ascii_case(email))
            })
    }

    fn create(&mut self, object: &str, fields: Map<String, Value>) -> Value {
        if let Some(refused) = field_refusal(object, &fields, true) {
            return refused;
        }
        let missing: Vec<&str> = required(object)
            .iter()
            .copied()
            .filter(|f| fields.get(*f).is_none_or(|v| v.is_null() || v == ""))
            .collect();
        if !missing.is_empty() {
            return item_error(
                "REQUIRED_FIELD_MISSING",
                &format!("Required fields are missing: [{}]", missing.join(", ")),
                &missing,
            );
        }
        if self.duplicate(object, &fields, None) {
            return item_error("DUPLICATES_DETECTED", "Use one of these records?", &[]);
        }
        let id = self.insert(object, fields);
        json!({"id": id, "success": true, "errors": []})
    }

    fn update(&mut self, id: &str, object: Option<&str>, fields: Map<String, Value>) -> Value {
        let Some(rec) = self.records.get(id) else {
            return item_error(
                "INVALID_CROSS_REFERENCE_KEY",
                "invalid cross reference id",
                &[],
            );
        };
        if rec.deleted {
            return item_error("ENTITY_IS_DELETED", "entity is deleted", &[]);
        }
        if object.is_some_and(|o| o != rec.object) {
            return item_error("INVALID_TYPE", "record type does not match its id", &[]);
        }
        let object = rec.object.clone();
        if let Some(refused) = field_refusal(&object, &fields, false) {
            return refused;
        }
        if self.duplicate(&object, &fields, Some(id)) {
            return item_error("DUPLICATES_DETECTED", "Use one of these records?", &[]);
        }
        for f in required(&object) {
            if fields.get(*f).is_some_and(|v| v.is_null() || v == "") {
                return item_error(
                    "REQUIRED_FIELD_MISSING",
                    &format!("Required fields are missing: [{f}]"),
                    &[f],
                );
            }
        }
        let stamp = self.tick();
        self.update_at(id, fields, stamp);
        json!({"id": id, "success": true, "errors": []})
    }

    fn upsert(&mut self, object: &str, field: &str, fields: Map<String, Value>) -> Value {
        let Some(key) = fields.get(field).and_then(Value::as_str).map(str::to_owned) else {
            return item_error(
                "MISSING_ARGUMENT",
                &format!("{field} not specified"),
                &[field],
            );
        };
        let matched: Vec<String> = self
            .live(object)
            .filter(|r| r.fields.get(field).and_then(Value::as_str) == Some(key.as_str()))
            .map(|r| r.id.clone())
            .collect();
        // An UpsertResult is a SaveResult that says which of the two happened.
        let said = |mut item: Value, created: bool| {
            if succeeded(&item) {
                if let Some(m) = item.as_object_mut() {
                    m.insert("created".into(), json!(created));
                }
            }
            item
        };
        match matched.as_slice() {
            [] => said(self.create(object, fields), true),
            [id] => {
                let id = id.clone();
                said(self.update(&id, Some(object), fields), false)
            }
            _ => item_error(
                "DUPLICATE_EXTERNAL_ID",
                "more than one record matches",
                &[field],
            ),
        }
    }

    fn delete(&mut self, id: &str) -> Value {
        let stamp = self.tick();
        match self.records.get_mut(id) {
            None => item_error(
                "INVALID_CROSS_REFERENCE_KEY",
                "invalid cross reference id",
                &[],
            ),
            Some(r) if r.deleted => {
                json!({"id": id, "success": false, "errors": [{"statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted", "fields": []}]})
            }
            Some(r) => {
                r.deleted = true;
                r.stamp = stamp;
                json!({"id": id, "success": true, "errors": []})
            }
        }
    }

    /// `fields` of `r` as the API shows them, `attributes.url` on the caller's version.
    fn render(&self, r: &SimRecord, fields: &[String], version: &str) -> Value {
        let mut m = Map::new();
        m.insert(
            "attributes".into(),
            json!({"type": r.object, "url": format!("/services/data/{version}/sobjects/{}/{}", r.object, r.id)}),
        );
        for f in fields {
            let v = match f.as_str() {
                "Id" => json!(r.id),
                "SystemModstamp" | "LastModifiedDate" => json!(sf_datetime(r.stamp)),
                "IsDeleted" => json!(r.deleted),
                _ => r.fields.get(f).cloned().unwrap_or(Value::Null),
            };
            m.insert(f.clone(), v);
        }
        Value::Object(m)
    }
}

/// A datetime as the API shows it: `2024-01-01T00:00:00.000+0000`.
fn sf_datetime(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

type Shared = Arc<Mutex<SimState>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, SimState> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

fn rest_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!([{"message": message, "errorCode": code}])),
    )
        .into_response()
}

/// Token and quota gate of every data call: the refusal, or `None` and the call counted.
fn refuse(s: &mut SimState, headers: &HeaderMap) -> Option<Response> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    match s.tokens.get_mut(&token) {
        Some(Some(0)) | None => {
            return Some(rest_error(
                StatusCode::UNAUTHORIZED,
                "INVALID_SESSION_ID",
                "Session expired or invalid",
            ))
        }
        Some(Some(n)) => *n -= 1,
        Some(None) => {}
    }
    if s.api_used >= s.api_max {
        s.limit_refusals += 1;
        let mut r = rest_error(
            StatusCode::FORBIDDEN,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        );
        add_limit_info(s, &mut r);
        return Some(r);
    }
    s.api_used += 1;
    None
}

fn add_limit_info(s: &SimState, r: &mut Response) {
    if let Ok(v) = format!("api-usage={}/{}", s.api_used, s.api_max).parse() {
        r.headers_mut().insert("sforce-limit-info", v);
    }
}

fn answer(s: &SimState, status: StatusCode, body: Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    add_limit_info(s, &mut r);
    r
}

async fn token(State(st): State<Shared>, Form(f): Form<HashMap<String, String>>) -> Response {
    let mut s = lock(&st);
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
    let ok_client = get("client_id") == CLIENT_ID && get("client_secret") == CLIENT_SECRET;
    let ok_grant = match get("grant_type") {
        "refresh_token" => get("refresh_token") == REFRESH_TOKEN,
        "client_credentials" => true,
        _ => false,
    };
    if !ok_client || !ok_grant {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": "authentication failure"})),
        )
            .into_response();
    }
    s.token_requests += 1;
    let token = format!("00DSIM!tok{}", s.token_requests);
    let ttl = s.token_ttl_calls;
    s.tokens.insert(token.clone(), ttl);
    let instance = s.instance_url.clone();
    Json(json!({"access_token": token, "instance_url": instance, "id": format!("https://login.salesforce.com/id/{ORG_ID}/005SIM"),
        "token_type": "Bearer", "issued_at": "1700000000000", "signature": "sim"}))
    .into_response()
}

/// The batch size a query asked for with `Sforce-Query-Options: batchSize=N` (200 to
/// 2,000, Salesforce's bounds), never above the org's own (tests shrink it).
fn batch_size(s: &SimState, headers: &HeaderMap) -> usize {
    let asked = headers
        .get("sforce-query-options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .filter_map(|o| o.trim().split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("batchSize"))
                .and_then(|(_, n)| n.trim().parse::<usize>().ok())
        })
        .map_or(2000, |n| n.clamp(200, 2000));
    asked.min(s.batch_size).max(1)
}

fn run_query(s: &mut SimState, q: &str, all: bool, version: &str, batch: usize) -> Response {
    let soql = match soql::parse(q) {
        Ok(q) => q,
        Err(e) => {
            let mut r = rest_error(StatusCode::BAD_REQUEST, e.code, &e.message);
            add_limit_info(s, &mut r);
            return r;
        }
    };
    // OpportunityHistory is read, never written: only SOQL knows it.
    let object = canonical_object(&soql.object).or_else(|| {
        history::OBJECT
            .eq_ignore_ascii_case(&soql.object)
            .then_some(history::OBJECT)
    });
    let Some(object) = object else {
        let mut r = rest_error(
            StatusCode::BAD_REQUEST,
            "INVALID_TYPE",
            &format!("sObject type '{}' is not supported.", soql.object),
        );
        add_limit_info(s, &mut r);
        return r;
    };
    let unknown = soql.named_fields().into_iter().find(|f| {
        if object == history::OBJECT {
            history::field_name(f).is_none()
        } else {
            describe::field_name(object, f).is_none()
        }
    });
    if let Some(field) = unknown {
        let e = soql::no_such_column(q, field, object);
        let mut r = rest_error(StatusCode::BAD_REQUEST, e.code, &e.message);
        add_limit_info(s, &mut r);
        return r;
    }
    let mut rows: Vec<&SimRecord> = s
        .records
        .values()
        .filter(|r| r.object == object && (all || !r.deleted))
        .filter(|r| soql.filter.as_ref().is_none_or(|f| soql::matches(f, r)))
        .collect();
    // Without ORDER BY the order is unspecified; (SystemModstamp, Id) breaks ties.
    rows.sort_by(|a, b| (a.stamp, &a.id).cmp(&(b.stamp, &b.id)));
    rows.sort_by(|a, b| soql::order(&soql.order, a, b));
    let rows = rows.into_iter().skip(soql.offset);
    let rows: Vec<&SimRecord> = match soql.limit {
        Some(n) => rows.take(n).collect(),
        None => rows.collect(),
    };
    let rendered: Vec<Value> = rows
        .iter()
        .map(|r| s.render(r, &soql.fields, version))
        .collect();
    s.records_served += rendered.len() as u64;
    page(
        s,
        Locator {
            version: version.to_owned(),
            batch,
            rows: rendered,
        },
        0,
    )
}

fn page(s: &mut SimState, all: Locator, offset: usize) -> Response {
    let total = all.rows.len();
    let end = (offset + all.batch.max(1)).min(total);
    let records: Vec<Value> = all.rows.get(offset..end).unwrap_or_default().to_vec();
    let mut body = serde_json::Map::new();
    body.insert("totalSize".into(), json!(total));
    body.insert("done".into(), json!(end >= total));
    body.insert("records".into(), Value::Array(records));
    if end < total {
        let loc = format!("01gSIM{:08}", s.locators.len() + 1);
        body.insert(
            "nextRecordsUrl".into(),
            json!(format!("/services/data/{}/query/{loc}-{end}", all.version)),
        );
        s.locators.insert(loc, all);
    }
    let body = Value::Object(body);
    answer(s, StatusCode::OK, body)
}

async fn query(
    State(st): State<Shared>,
    Path(v): Path<String>,
    headers: HeaderMap,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    let mut s = lock(&st);
    if let Some(r) = refuse(&mut s, &headers) {
        return r;
    }
    let batch = batch_size(&s, &headers);
    let q = p.get("q").map(String::as_str).unwrap_or_default();
    run_query(&mut s, q, false, &v, batch)
}

async fn query_all(
    State(st): State<Shared>,
    Path(v): Path<String>,
    headers: HeaderMap,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    let mut s = lock(&st);
    if let Some(r) = refuse(&mut s, &headers) {
        return r;
    }
    let batch = batch_size(&s, &headers);
    let q = p.get("q").map(String::as_str).unwrap_or_default();
    run_query(&mut s, q, true, &v, batch)
}

async fn query_more(
    State(st): State<Shared>,
    Path((v, locator)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut s = lock(&st);
    if let Some(r) = refuse(&mut s, &headers) {
        return r;
    }
    let found = locator.rsplit_once('-').and_then(|(loc, off)| {
        let l = s.locators.get(loc)?;
        let rest = Locator {
            version: v.clone(),
            batch: l.batch,
            rows: l.rows.clone(),
        };
        Some((rest, off.parse::<usize>().ok()?))
    });
    match found {
        Some((all, offset)) => page(&mut s, all, offset),
        None => {
            let mut r = rest_error(
                StatusCode::BAD_REQUEST,
                "INVALID_QUERY_LOCATOR",
                "invalid query locator",
            );
            add_limit_info(&s, &mut r);
            r
        }
    }
}

/// `GET /sobjects/{SObject}/describe`: the object's fields, behind the same token and
/// quota gate as every data call.
async fn describe_object(
    State(st): State<Shared>,
    Path((_v, object)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut s = lock(&st);
    if let Some(r) = refuse(&mut s, &headers) {
        return r;
    }
    match describe::describe(&object) {
        Some(body) => answer(&s, StatusCode::OK, body),
        None => {
            let mut r = rest_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "The requested resource does not exist",
            );
            add_limit_info(&s, &mut r);
            r
        }
    }
}

/// What Salesforce answers for an injected refusal. REST never answers 429: the throttle
/// is the concurrent long-running request limit (API_FACTS 2.4), a 403 that clears in
/// seconds, unlike the daily allocation's `TotalRequests` 403.
fn fault_answer(state: &Shared, fault: Fault) -> Response {
    let s = lock(state);
    let mut r = match fault {
        Fault::Throttle => rest_error(
            StatusCode::FORBIDDEN,
            "REQUEST_LIMIT_EXCEEDED",
            "ConcurrentPerOrgLongTxn Limit exceeded.",
        ),
        _ => rest_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN_EXCEPTION",
            "An unexpected error occurred. Please include this ErrorId if you contact support: 1234567890-12345 (-987654321)",
        ),
    };
    add_limit_info(&s, &mut r);
    r
}

async fn strip_trailing_slash(mut req: Request) -> Request {
    let uri = req.uri();
    let path = uri.path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let rebuilt = match uri.query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_owned(),
        };
        if let Ok(new) = rebuilt.parse() {
            *req.uri_mut() = new;
        }
    }
    req
}

/// A resource the simulator does not have: Salesforce's 404 array, logged once per method
/// and path so a gap in the simulation is visible.
async fn not_simulated(State(st): State<Shared>, req: Request) -> Response {
    let key = format!("{} {}", req.method(), req.uri().path());
    if lock(&st).not_simulated.insert(key.clone()) {
        tracing::warn!(request = %key, "salesforce simulator: not simulated");
    }
    rest_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "The requested resource does not exist",
    )
}

async fn method_not_allowed(method: axum::http::Method) -> Response {
    rest_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        &format!("HTTP Method '{method}' not allowed"),
    )
}

/// A running simulator.
#[derive(Clone)]
pub struct Sim {
    pub state: Shared,
    pub addr: SocketAddr,
    faults: Faults,
}

impl Sim {
    pub async fn start() -> std::io::Result<Self> {
        let state: Shared = Arc::new(Mutex::new(SimState::default()));
        let faults = Faults::new({
            let state = state.clone();
            move |fault| fault_answer(&state, fault)
        });
        let api = Router::new()
            .route("/services/oauth2/token", post(token))
            .route("/services/data/{v}/query", get(query))
            .route("/services/data/{v}/queryAll", get(query_all))
            .route("/services/data/{v}/query/{locator}", get(query_more))
            .route(
                "/services/data/{v}/sobjects/{object}",
                get(rest::root).post(rest::root),
            )
            .route(
                "/services/data/{v}/sobjects/{object}/describe",
                get(describe_object),
            )
            .route(
                "/services/data/{v}/sobjects/{object}/{id}",
                get(rest::row).patch(rest::row).delete(rest::row),
            )
            .route(
                "/services/data/{v}/sobjects/{object}/{field}/{value}",
                get(rest::external)
                    .patch(rest::external)
                    .delete(rest::external),
            )
            .route(
                "/services/data/{v}/composite/sobjects",
                post(collections::create_many)
                    .patch(collections::update_many)
                    .delete(collections::delete_many),
            )
            .route(
                "/services/data/{v}/composite/sobjects/{object}/{field}",
                patch(collections::upsert_many),
            )
            // Resources of an sObject that `{id}` above would take for a record id (and
            // answer as a missing record, unlogged): the gap shows instead.
            .route(
                "/services/data/{v}/sobjects/{object}/updated",
                get(not_simulated),
            )
            .route(
                "/services/data/{v}/sobjects/{object}/deleted",
                get(not_simulated),
            )
            .fallback(not_simulated)
            .method_not_allowed_fallback(method_not_allowed)
            // The token endpoint too: a login may meet the same refusals.
            .layer(axum::middleware::from_fn_with_state(
                faults.clone(),
                simfault::inject,
            ))
            .with_state(state.clone());
        // Salesforce takes every URL with or without a trailing slash (simple-salesforce
        // sends `/sobjects/Contact/`, `/query/?q=`): the slash goes before routing.
        let app = Router::new()
            .fallback_service(api)
            .layer(axum::middleware::map_request(strip_trailing_slash));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        // The instance URL the token endpoint hands out: this same server.
        lock(&state).instance_url = url;
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "salesforce simulator stopped");
            }
        });
        Ok(Self {
            state,
            addr,
            faults,
        })
    }

    /// Injected faults (none until set), on every route including the token endpoint.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn token_url(&self) -> String {
        format!("{}/services/oauth2/token", self.url())
    }

    /// Connector `params:` that point at this simulator (refresh-token flow).
    pub fn params(&self) -> Value {
        json!({
            "auth": {"flow": "refresh_token", "token_url": self.token_url(),
                     "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN},
            "organization_id": ORG_ID,
            "external_id_field": EXTERNAL_ID_FIELD,
        })
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut SimState) -> T) -> T {
        f(&mut lock(&self.state))
    }

    /// Valid records, as a user would create them.
    pub fn seed(&self, object: &str, n: usize) -> Vec<String> {
        self.with(|s| {
            (0..n)
                .map(|_| {
                    let k = s.seq + 1;
                    let fields = sample_fields(object, &format!("seed{k}"));
                    s.insert(object, fields)
                })
                .collect()
        })
    }

    pub fn ids(&self, object: &str) -> std::collections::BTreeSet<String> {
        self.with(|s| s.live(object).map(|r| r.id.clone()).collect())
    }

    pub fn record(&self, id: &str) -> Option<SimRecord> {
        self.with(|s| s.records.get(id).cloned())
    }

    /// Let every issued token serve `calls` more data calls, then expire.
    pub fn limit_tokens(&self, calls: u32) {
        self.with(|s| s.tokens.values_mut().for_each(|t| *t = Some(calls)));
    }

    /// Make every issued token invalid (as when a session times out).
    pub fn expire_tokens(&self) {
        self.with(|s| s.tokens.values_mut().for_each(|t| *t = Some(0)));
    }
}

/// Fields that pass the simulator's validation for `object`.
pub fn sample_fields(object: &str, tag: &str) -> Map<String, Value> {
    let v = match object {
        "Contact" => {
            json!({"FirstName": "Ada", "LastName": format!("Contact {tag}"), "Email": format!("{tag}@example.com")})
        }
        "Lead" => {
            json!({"LastName": format!("Lead {tag}"), "Company": "Acme", "Email": format!("{tag}@lead.example.com")})
        }
        "Account" => json!({"Name": format!("Account {tag}"), "Website": "https://example.com"}),
        "Opportunity" => {
            json!({"Name": format!("Deal {tag}"), "StageName": "Prospecting", "CloseDate": "2024-12-31", "Amount": 1000})
        }
        _ => json!({}),
    };
    v.as_object().cloned().unwrap_or_default()
}

#[async_trait]
impl revsync_sdk::testsuite::Harness for Sim {
    async fn seed(&self, object: &str, n: usize) -> Vec<String> {
        Sim::seed(self, object, n)
    }

    async fn ids(&self, object: &str) -> std::collections::BTreeSet<String> {
        Sim::ids(self, object)
    }

    fn new_fields(&self, object: &str, i: usize) -> BTreeMap<String, Value> {
        let tag = format!("new{i}-{}", uuid::Uuid::now_v7().simple());
        sample_fields(object, &tag).into_iter().collect()
    }

    fn signed_webhook(&self) -> Option<revsync_sdk::testsuite::SampleWebhook> {
        let id = self.ids("Contact").into_iter().next()?;
        let body =
            crate::webhook::sample_message(ORG_ID, &[("04lSIM000000001AAA", "Contact", &id)]);
        Some((
            vec![("content-type".into(), "text/xml".into())],
            body.into_bytes(),
        ))
    }

    fn tampered_webhook(&self) -> Option<revsync_sdk::testsuite::SampleWebhook> {
        let body = crate::webhook::sample_message(
            "00DOTHER00000001AAA",
            &[("04lSIM000000001AAA", "Contact", "003000000000001AAA")],
        );
        Some((
            vec![("content-type".into(), "text/xml".into())],
            body.into_bytes(),
        ))
    }
}
