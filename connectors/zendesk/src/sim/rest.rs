//! The Zendesk simulator's record endpoints outside the bulk jobs: lists with both paging
//! styles Zendesk documents (offset, and cursor with `page[size]`), counts, single-record
//! show, create and update, a user's delete, `users/create_or_update`, the Search API (and
//! its cursor export) and Search Users. Users' emails are unique, as Zendesk keeps them, and
//! a user has a name; an organization's name and external id are unique and it has a name:
//! a write, create or update, that would break one of these is refused with Zendesk's 422
//! `RecordInvalid`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};

use super::{error, gap, normal, rfc3339, Inner, Obj, Shared};

/// Why a write of a user was refused: one entry of Zendesk's `details`.
#[derive(Debug, Clone)]
pub(super) struct Refusal {
    field: &'static str,
    error: &'static str,
    description: String,
}

impl Refusal {
    /// The 422 a single-record endpoint answers (the zendesk_api gem reads this shape).
    fn answer(&self) -> Response {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "error": "RecordInvalid",
                "description": "Record validation errors",
                "details": {self.field: [{"description": self.description, "error": self.error}]},
            })),
        )
            .into_response()
    }

    /// One failed result of a bulk job: `RecordInvalid`, the validation's text in `details`.
    pub(super) fn result(&self, index: usize) -> Value {
        json!({"index": index, "status": "Failed", "error": "RecordInvalid",
            "details": self.description})
    }

    /// One failed result of an `update_many` job.
    pub(super) fn update_result(&self, index: usize, id: u64) -> Value {
        json!({"id": id, "index": index, "action": "update", "success": false,
            "status": "Failed", "error": "RecordInvalid", "details": self.description})
    }
}

fn text<'a>(fields: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    fields
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// A record of `o` other than `except` whose `field` is `value` (in Zendesk's normal form:
/// trimmed, any case).
fn holder(s: &Inner, o: Obj, field: &'static str, value: &str, except: Option<u64>) -> Option<u64> {
    s.index
        .get(&(o, field, normal(value)))?
        .iter()
        .copied()
        .find(|id| Some(*id) != except)
}

/// Zendesk's refusal of a user without a name (as a live account answers it).
fn nameless() -> Refusal {
    Refusal {
        field: "name",
        error: "ValueTooShort",
        description: "Name: is too short (minimum one character)".to_owned(),
    }
}

/// Whether `fields` may be written to user `id` (`None`: a new user).
pub(super) fn check_user(
    s: &Inner,
    fields: &Map<String, Value>,
    id: Option<u64>,
) -> Result<(), Refusal> {
    let blank = |v: &Value| v.as_str().is_none_or(|n| n.trim().is_empty());
    if fields.get("name").is_some_and(blank) {
        return Err(nameless());
    }
    let Some(email) = fields.get("email").and_then(Value::as_str) else {
        return Ok(());
    };
    let email = email.trim();
    if email.is_empty() {
        return Ok(());
    }
    if !email.contains('@') {
        return Err(Refusal {
            field: "email",
            error: "InvalidValue",
            description: format!("Email: {email} is not properly formatted"),
        });
    }
    if holder(s, Obj::Users, "email", email, id).is_some() {
        return Err(Refusal {
            field: "email",
            error: "DuplicateValue",
            description: format!("Email: {email} is already being used by another user"),
        });
    }
    Ok(())
}

/// Whether `fields` may be written to organization `id` (`None`: a new one). Its name is
/// required and, like its external id, unique (trimmed, any case) on an update as on a
/// create: Zendesk refuses a rename to a name another organization holds.
pub(super) fn check_org(
    s: &Inner,
    fields: &Map<String, Value>,
    id: Option<u64>,
) -> Result<(), Refusal> {
    let blanked = fields
        .get("name")
        .is_some_and(|v| v.as_str().is_none_or(|n| n.trim().is_empty()));
    let refuse = |field, error, description| {
        Err(Refusal {
            field,
            error,
            description,
        })
    };
    if blanked || (id.is_none() && !fields.contains_key("name")) {
        return refuse("name", "BlankValue", "Name: cannot be blank".to_owned());
    }
    if let Some(name) = text(fields, "name") {
        if holder(s, Obj::Orgs, "name", name, id).is_some() {
            let said = format!("Name: {name} has already been taken");
            return refuse("name", "DuplicateValue", said);
        }
    }
    let external = text(fields, "external_id");
    if external.is_some_and(|e| holder(s, Obj::Orgs, "external_id", e, id).is_some()) {
        let said = "External: has already been taken".to_owned();
        return refuse("external_id", "DuplicateValue", said);
    }
    Ok(())
}

/// Whether `fields` may be written to record `id` of `o` (`PUT /{object}/{id}` and
/// `update_many` alike).
pub(super) fn check_update(
    s: &Inner,
    o: Obj,
    fields: &Map<String, Value>,
    id: u64,
) -> Result<(), Refusal> {
    match o {
        Obj::Users => check_user(s, fields, Some(id)),
        Obj::Orgs => check_org(s, fields, Some(id)),
        Obj::Tickets => Ok(()),
    }
}

/// `users/create_many` and `POST /users`: a new user, unless it has no name or the email
/// is taken.
pub(super) fn create_user_in(
    s: &mut Inner,
    fields: &Map<String, Value>,
    ts: i64,
) -> Result<u64, Refusal> {
    if text(fields, "name").is_none() {
        return Err(nameless());
    }
    check_user(s, fields, None)?;
    Ok(s.insert(Obj::Users, fields, ts))
}

/// `users/create_or_update(_many)`: the user with this external id, else the one with this
/// email (trimmed, any case), is updated; only when neither exists is one created.
/// `Ok((id, created))`.
pub(super) fn upsert_user_in(
    s: &mut Inner,
    fields: &Map<String, Value>,
    ts: i64,
) -> Result<(u64, bool), Refusal> {
    let by_external = text(fields, "external_id")
        .and_then(|e| s.index.get(&(Obj::Users, "external_id", normal(e))))
        .and_then(|ids| ids.first().copied());
    let by_email = || {
        text(fields, "email")
            .and_then(|e| s.index.get(&(Obj::Users, "email", normal(e))))
            .and_then(|ids| ids.first().copied())
    };
    match by_external.or_else(by_email) {
        Some(id) => {
            check_user(s, fields, Some(id))?;
            s.update(Obj::Users, id, fields, ts);
            Ok((id, false))
        }
        None => create_user_in(s, fields, ts).map(|id| (id, true)),
    }
}

fn body_of<'a>(body: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    body.get(key).and_then(Value::as_object)
}

fn no_body(key: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "InvalidValue",
        &format!("body needs `{key}`"),
    )
}

fn one(o: Obj) -> &'static str {
    match o {
        Obj::Users => "user",
        Obj::Orgs => "organization",
        Obj::Tickets => "ticket",
    }
}

fn record(s: &mut Inner, o: Obj, id: u64) -> Value {
    let body = s.table(o).get(&id).map(|r| r.body.clone());
    json!({ one(o): body })
}

/// `POST /users` `{"user": {...}}`: 201 with the user.
pub(super) async fn create_user(State(state): State<Shared>, Json(body): Json<Value>) -> Response {
    let Some(fields) = body_of(&body, "user") else {
        return no_body("user");
    };
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let ts = s.now();
    match create_user_in(&mut s, fields, ts) {
        Ok(id) => (StatusCode::CREATED, Json(record(&mut s, Obj::Users, id))).into_response(),
        Err(refusal) => refusal.answer(),
    }
}

/// `POST /users/create_or_update`: 201 when it created the user, 200 when it updated one,
/// either with `Location: /api/v2/users/{id}.json`, as Zendesk documents.
pub(super) async fn create_or_update_user(
    State(state): State<Shared>,
    Json(body): Json<Value>,
) -> Response {
    let Some(fields) = body_of(&body, "user") else {
        return no_body("user");
    };
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let ts = s.now();
    match upsert_user_in(&mut s, fields, ts) {
        Ok((id, created)) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let location = format!("/api/v2/users/{id}.json");
            (
                status,
                [(axum::http::header::LOCATION, location)],
                Json(record(&mut s, Obj::Users, id)),
            )
                .into_response()
        }
        Err(refusal) => refusal.answer(),
    }
}

/// `POST /organizations`: names (and external ids) are unique, as Zendesk's are.
pub(super) async fn create_org(State(state): State<Shared>, Json(body): Json<Value>) -> Response {
    let Some(fields) = body_of(&body, "organization") else {
        return no_body("organization");
    };
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(refusal) = check_org(&s, fields, None) {
        return refusal.answer();
    }
    let ts = s.now();
    let id = s.insert(Obj::Orgs, fields, ts);
    (StatusCode::CREATED, Json(record(&mut s, Obj::Orgs, id))).into_response()
}

pub(super) fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "RecordNotFound", "Not found")
}

/// The record id in `/{object}/{id}`. A name there is no id but one of Zendesk's endpoints
/// the simulator does not have (`/users/me`, `/organizations/autocomplete`,
/// `/tickets/recent`): answered and logged as not simulated, not as a missing record.
// The error is the ready answer a handler returns at once; boxing it buys nothing.
#[allow(clippy::result_large_err)]
pub(super) fn record_id(state: &Shared, method: &str, o: Obj, id: &str) -> Result<u64, Response> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(gap(state, method, &format!("/api/v2/{}/{id}", o.key())));
    }
    id.parse().map_err(|_| not_found())
}

/// `GET /{object}/{id}`.
pub(super) async fn show(State(state): State<Shared>, Path(id): Path<String>, o: Obj) -> Response {
    let id = match record_id(&state, "GET", o, &id) {
        Ok(id) => id,
        Err(answer) => return answer,
    };
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    if !s.table(o).contains_key(&id) {
        return not_found();
    }
    Json(record(&mut s, o, id)).into_response()
}

/// `PUT /users/{id}`, `PUT /organizations/{id}` with `{"user": {...}}`: refused as the
/// create would be when it breaks a unique value (an email, an organization's name).
pub(super) async fn update(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
    o: Obj,
) -> Response {
    let id = match record_id(&state, "PUT", o, &id) {
        Ok(id) => id,
        Err(answer) => return answer,
    };
    let Some(fields) = body_of(&body, one(o)) else {
        return no_body(one(o));
    };
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    if !s.table(o).contains_key(&id) {
        return not_found();
    }
    if let Err(refusal) = check_update(&s, o, fields, id) {
        return refusal.answer();
    }
    let ts = s.now();
    s.update(o, id, fields, ts);
    Json(record(&mut s, o, id)).into_response()
}

/// `DELETE /users/{id}`: Zendesk keeps a deleted user, inactive, and answers 200 with it
/// (`active: false`), as `destroy_many` leaves them.
pub(super) async fn delete_user(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    let id = match record_id(&state, "DELETE", Obj::Users, &id) {
        Ok(id) => id,
        Err(answer) => return answer,
    };
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    if !s.users.contains_key(&id) {
        return not_found();
    }
    let ts = s.now();
    let mut gone = Map::new();
    gone.insert("active".into(), json!(false));
    s.update(Obj::Users, id, &gone, ts);
    Json(record(&mut s, Obj::Users, id)).into_response()
}

/// `GET /users/count`, `/organizations/count`, `/tickets/count`: `{"count": {"value",
/// "refreshed_at"}}`, the records the list pages through, counted now (Zendesk refreshes
/// a count over 100,000 once a day). Filters (`role`, `permission_set`) are not simulated.
pub(super) async fn count(
    State(state): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    o: Obj,
) -> Response {
    if !q.is_empty() {
        let mut names: Vec<&str> = q.keys().map(String::as_str).collect();
        names.sort_unstable();
        let path = format!("/api/v2/{}/count?{}", o.key(), names.join("&"));
        return gap(&state, "GET", &path);
    }
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let refreshed_at = rfc3339(s.now());
    let value = s.table(o).len();
    Json(json!({"count": {"value": value, "refreshed_at": refreshed_at}})).into_response()
}

/// `page` (from 1) and `per_page` (1 to 100, 100 unless given) of offset paging.
fn offset_params(q: &HashMap<String, String>) -> (usize, usize) {
    let page = q
        .get("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    let per = q
        .get("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100usize)
        .clamp(1, 100);
    (page, per)
}

/// Zendesk's answer to paging parameters it refuses.
fn bad_paging(detail: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"errors": [{"code": "InvalidPaginationParameter",
            "title": "Invalid pagination", "detail": detail, "status": "400"}]})),
    )
        .into_response()
}

fn encode_cursor(id: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("id:{id}"))
}

fn decode_cursor(c: &str) -> Option<u64> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
    raw.strip_prefix("id:")?.parse().ok()
}

/// `GET /users`, `/organizations`, `/tickets`: cursor paging when any `page[...]` is
/// given (`page[size]` up to 100, `page[after]`, `page[before]`), otherwise offset paging,
/// which Zendesk refuses past the first 10,000 records. Both give absolute URLs.
pub(super) async fn list(
    State(state): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    o: Obj,
) -> Response {
    if q.keys().any(|k| k.starts_with("page[")) {
        return cursor_page(&state, &q, o);
    }
    let (page, per) = offset_params(&q);
    if (page - 1) * per + per > 10_000 {
        return bad_paging(
            "Offset pagination is limited to the first 10,000 records; use cursor pagination",
        );
    }
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let base = format!("{}/api/v2/{}.json", s.base, o.key());
    // List Tickets takes `external_id` (Zendesk's Tickets API reference): the tickets
    // carrying it, read from the database, not the search index. Deleted ones are not
    // listed (they are in the deleted tickets view).
    if let Some(ext) = q.get("external_id").filter(|_| o == Obj::Tickets) {
        let ids = s
            .index
            .get(&(o, "external_id", normal(ext)))
            .cloned()
            .unwrap_or_default();
        let rows: Vec<Value> = ids
            .iter()
            .filter_map(|id| s.tickets.get(id))
            .filter(|r| r.body.get("status").and_then(Value::as_str) != Some("deleted"))
            .map(|r| r.body.clone())
            .collect();
        let count = rows.len();
        return Json(
            json!({ "tickets": rows, "count": count, "next_page": null, "previous_page": null }),
        )
        .into_response();
    }
    let table = s.table(o);
    let count = table.len();
    let rows: Vec<Value> = table
        .values()
        .skip((page - 1) * per)
        .take(per)
        .map(|r| r.body.clone())
        .collect();
    let next = (page * per < count).then(|| format!("{base}?page={}&per_page={per}", page + 1));
    let previous = (page > 1).then(|| format!("{base}?page={}&per_page={per}", page - 1));
    Json(json!({ o.key(): rows, "count": count, "next_page": next, "previous_page": previous }))
        .into_response()
}

fn cursor_page(state: &Shared, q: &HashMap<String, String>, o: Obj) -> Response {
    let size = match q.get("page[size]").map(|v| v.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => return bad_paging("page[size] must be a number from 1 to 100"),
    };
    let cursor = |k: &str| q.get(k).filter(|v| !v.is_empty()).map(|c| decode_cursor(c));
    let (after, before) = match (cursor("page[after]"), cursor("page[before]")) {
        (Some(None), _) | (_, Some(None)) => return bad_paging("the cursor is not valid"),
        (Some(Some(a)), _) => (Some(a), None),
        (None, b) => (None, b.flatten()),
    };
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let base = format!("{}/api/v2/{}.json", s.base, o.key());
    let table = s.table(o);
    let (rows, has_more): (Vec<(u64, Value)>, bool) = match before {
        Some(b) => {
            let mut older: Vec<_> = table.range(..b).rev().take(size + 1).collect();
            let more = older.len() > size;
            older.truncate(size);
            older.reverse();
            (
                older
                    .into_iter()
                    .map(|(id, r)| (*id, r.body.clone()))
                    .collect(),
                more,
            )
        }
        None => {
            let from = after.map_or(0, |a| a.saturating_add(1));
            let mut newer: Vec<_> = table.range(from..).take(size + 1).collect();
            let more = newer.len() > size;
            newer.truncate(size);
            (
                newer
                    .into_iter()
                    .map(|(id, r)| (*id, r.body.clone()))
                    .collect(),
                more,
            )
        }
    };
    let first = rows.first().map(|(id, _)| encode_cursor(*id));
    let last = rows.last().map(|(id, _)| encode_cursor(*id));
    let link = |dir: &str, c: &Option<String>| {
        c.as_ref()
            .map(|c| format!("{base}?page[size]={size}&page[{dir}]={c}"))
    };
    // Going forward, `has_more` says whether more follow; going back, whether more precede.
    let next = if before.is_some() || has_more {
        link("after", &last)
    } else {
        None
    };
    let prev = if before.is_none() || has_more {
        link("before", &first)
    } else {
        None
    };
    Json(json!({
        o.key(): rows.into_iter().map(|(_, b)| b).collect::<Vec<_>>(),
        "meta": {"has_more": has_more, "after_cursor": last, "before_cursor": first},
        "links": {"next": next, "prev": prev},
    }))
    .into_response()
}

/// One term of a search query.
#[derive(Debug, PartialEq, Eq)]
enum Term {
    Type(Obj),
    /// `field:value`; a `*` at the end of the value matches any rest.
    Field(String, String),
    /// Free text: a word (or a quoted phrase) somewhere in the record's text.
    Text(String),
}

fn terms(query: &str) -> Result<Vec<Term>, String> {
    let mut out = Vec::new();
    let mut rest = query.trim();
    while !rest.is_empty() {
        let (token, after) = if let Some(q) = rest.strip_prefix('"') {
            let end = q.find('"').ok_or("a quoted phrase is not closed")?;
            let (phrase, after) = q.split_at(end);
            out.push(Term::Text(phrase.to_lowercase()));
            rest = after.get(1..).unwrap_or("").trim_start();
            continue;
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            rest.split_at(end)
        };
        rest = after.trim_start();
        match token.split_once(':') {
            Some(("type", kind)) => out.push(Term::Type(match kind {
                "user" => Obj::Users,
                "organization" => Obj::Orgs,
                "ticket" => Obj::Tickets,
                other => return Err(format!("unknown type `{other}`")),
            })),
            Some((field, value)) if !field.is_empty() => {
                let value = value.trim_matches('"');
                out.push(Term::Field(field.to_lowercase(), value.to_lowercase()));
            }
            _ => out.push(Term::Text(token.to_lowercase())),
        }
    }
    Ok(out)
}

fn matches_value(have: &Value, want: &str) -> bool {
    let have = match have {
        Value::String(t) => t.trim().to_lowercase(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => return items.iter().any(|i| matches_value(i, want)),
        _ => return false,
    };
    match want.strip_suffix('*') {
        Some(prefix) => have.starts_with(prefix),
        None => have == want,
    }
}

fn holds(term: &Term, o: Obj, body: &Value) -> bool {
    match term {
        Term::Type(t) => *t == o,
        Term::Field(field, want) => {
            let field = match field.as_str() {
                "tags" | "tag" => "tags",
                "organization" => "organization_id",
                "requester" => "requester_id",
                f => f,
            };
            body.get(field).is_some_and(|v| matches_value(v, want))
        }
        Term::Text(word) => body.as_object().is_some_and(|m| {
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "url" | "created_at" | "updated_at"))
                .any(|(_, v)| match v {
                    Value::String(t) => t.to_lowercase().contains(word.as_str()),
                    _ => false,
                })
        }),
    }
}

/// The 400 Zendesk answers for a query it cannot read.
fn bad_query(query: &str, why: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "InvalidSearchParameters",
        &format!("invalid query `{query}`: {why}"),
    )
}

/// `GET /search?query=type:user email:a@b.example`: users, organizations and tickets whose
/// every term holds, each with its `result_type`; offset paging of at most 100 a page, and
/// at most 1,000 results a query, as Zendesk's Search API.
pub(super) async fn search(
    State(state): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let query = q.get("query").map(String::as_str).unwrap_or("").trim();
    if query.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidSearchParameters",
            "query is required",
        );
    }
    let terms = match terms(query) {
        Ok(t) => t,
        Err(why) => return bad_query(query, &why),
    };
    // Search pages by offset only: `page[size]` and the like are refused, as Zendesk does.
    if q.keys().any(|k| k.starts_with("page[")) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"title": "Invalid attribute", "message":
                "You passed an invalid value for the page attribute. Invalid parameter: page must be an integer from api/v2/search/index"}})),
        )
            .into_response();
    }
    let (page, per) = offset_params(&q);
    if page * per > 1000 {
        // A page past the first 1,000 results (page=11 at 100 a page).
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": "invalid", "description":
                "Invalid search: Requested response size was greater than Search Response Limits"})),
        )
            .into_response();
    }
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let base = s.base.clone();
    let mut hits = Vec::new();
    for o in [Obj::Users, Obj::Orgs, Obj::Tickets] {
        for r in s.table(o).values() {
            if terms.iter().all(|t| holds(t, o, &r.body)) {
                let mut hit = r.body.clone();
                if let Some(m) = hit.as_object_mut() {
                    m.insert("result_type".into(), json!(one(o)));
                }
                hits.push(hit);
            }
        }
    }
    let count = hits.len();
    let rows: Vec<Value> = hits.into_iter().skip((page - 1) * per).take(per).collect();
    let url = |p: usize| {
        let mut u = format!("{base}/api/v2/search.json?");
        u.push_str(&form_pairs(&[
            ("page", p.to_string()),
            ("per_page", per.to_string()),
            ("query", query.to_owned()),
        ]));
        u
    };
    let next = (page * per < count.min(1000)).then(|| url(page + 1));
    let previous = (page > 1).then(|| url(page - 1));
    Json(json!({"results": rows, "count": count, "facets": null,
        "next_page": next, "previous_page": previous}))
    .into_response()
}

/// `GET /search/export?query=…&filter[type]=user`: the Search API's matches of one type
/// (`filter[type]`; a `type:` in the query is refused), oldest first, by cursor only
/// (`page[size]` up to 1,000, `page[after]`), with no `count` and `links.prev` always
/// null, as Zendesk's Export Search Results.
pub(super) async fn export_search(
    State(state): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let query = q.get("query").map(String::as_str).unwrap_or("").trim();
    let kind = q.get("filter[type]").map(String::as_str).unwrap_or("");
    let Some(o) = Obj::parse(&format!("{kind}s")).filter(|_| !kind.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "filter[type] must be ticket, organization or user (groups are not simulated)",
        );
    };
    let wanted = match terms(query) {
        Ok(t) => t,
        Err(why) => return bad_query(query, &why),
    };
    if wanted.is_empty() {
        return bad_query(query, "query is required");
    }
    if wanted.iter().any(|t| matches!(t, Term::Type(_))) {
        return bad_query(query, "the type is given by filter[type], not in the query");
    }
    let size = match q.get("page[size]").map(|v| v.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => return bad_paging("page[size] must be a number from 1 to 1000"),
    };
    let after = match q.get("page[after]").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => match decode_cursor(c) {
            Some(id) => Some(id),
            None => return bad_paging("the cursor is not valid"),
        },
    };
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let base = s.base.clone();
    let from = after.map_or(0, |a| a.saturating_add(1));
    let mut rows: Vec<(u64, Value)> = s
        .table(o)
        .range(from..)
        .filter(|(_, r)| wanted.iter().all(|t| holds(t, o, &r.body)))
        .take(size + 1)
        .map(|(id, r)| {
            let mut hit = r.body.clone();
            if let Some(m) = hit.as_object_mut() {
                m.insert("result_type".into(), json!(one(o)));
            }
            (*id, hit)
        })
        .collect();
    let has_more = rows.len() > size;
    rows.truncate(size);
    let after_cursor = rows.last().map(|(id, _)| encode_cursor(*id));
    let next = after_cursor.as_ref().filter(|_| has_more).map(|c| {
        let pairs = [
            ("filter[type]", kind.to_owned()),
            ("page[after]", c.clone()),
            ("page[size]", size.to_string()),
            ("query", query.to_owned()),
        ];
        format!("{base}/api/v2/search/export.json?{}", form_pairs(&pairs))
    });
    Json(json!({
        "results": rows.into_iter().map(|(_, hit)| hit).collect::<Vec<_>>(),
        "facets": null,
        "meta": {"has_more": has_more, "after_cursor": after_cursor, "before_cursor": null},
        "links": {"next": next, "prev": null},
    }))
    .into_response()
}

/// `GET /users/search?query=jdoe` (the Search API's syntax, users only: free text matches
/// part of any field) or `?external_id=abc` (that id exactly, no syntax): offset paging
/// only, at most 10,000 users a query, as Zendesk documents Search Users.
pub(super) async fn search_users(
    State(state): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let external = q.get("external_id").map(|e| e.trim().to_owned());
    let query = q.get("query").map(|v| v.trim().to_owned());
    let wanted = match (&external, &query) {
        (Some(_), _) => Vec::new(),
        (None, Some(query)) => match terms(query) {
            Ok(t) => t,
            Err(why) => return bad_query(query, &why),
        },
        (None, None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidSearchParameters",
                "query or external_id is required",
            )
        }
    };
    let (page, per) = offset_params(&q);
    if (page - 1) * per + per > 10_000 {
        return bad_paging("Search Users returns at most 10,000 records per query");
    }
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let base = format!("{}/api/v2/users/search.json?", s.base);
    let hits: Vec<Value> = s
        .table(Obj::Users)
        .values()
        .map(|r| &r.body)
        .filter(|body| match &external {
            Some(e) => body.get("external_id").and_then(Value::as_str) == Some(e.as_str()),
            None => wanted.iter().all(|t| holds(t, Obj::Users, body)),
        })
        .cloned()
        .collect();
    let count = hits.len();
    let rows: Vec<Value> = hits.into_iter().skip((page - 1) * per).take(per).collect();
    let (key, value) = match (external, query) {
        (Some(e), _) => ("external_id", e),
        (None, q) => ("query", q.unwrap_or_default()),
    };
    let url = |p: usize| {
        let pairs = [
            ("page", p.to_string()),
            ("per_page", per.to_string()),
            (key, value.clone()),
        ];
        format!("{base}{}", form_pairs(&pairs))
    };
    let next = (page * per < count).then(|| url(page + 1));
    let previous = (page > 1).then(|| url(page - 1));
    Json(json!({"users": rows, "count": count, "next_page": next, "previous_page": previous}))
        .into_response()
}

/// `k=v&k=v` with the values percent-encoded.
fn form_pairs(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let v: String = v
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `GET /organizations/search?name=Acme` (the name exactly, any case) or `?external_id=abc`:
/// Search Organizations, as Zendesk documents it (one page; names and external ids are
/// unique, so at most one organization matches).
pub(super) async fn search_organizations(
    State(state): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (field, value) = match (q.get("external_id"), q.get("name")) {
        (Some(e), _) => ("external_id", e.trim().to_owned()),
        (None, Some(n)) => ("name", n.trim().to_owned()),
        (None, None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidSearchParameters",
                "name or external_id is required",
            )
        }
    };
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let found = super::find(&s, Obj::Orgs, field, &value);
    let rows: Vec<Value> = found
        .and_then(|id| s.table(Obj::Orgs).get(&id))
        .map(|r| r.body.clone())
        .into_iter()
        .collect();
    let count = rows.len();
    Json(json!({"organizations": rows, "count": count, "next_page": null, "previous_page": null}))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_terms_parse() {
        assert_eq!(
            terms(r#"type:user email:Ada@X.example "big deal" acme"#).unwrap(),
            vec![
                Term::Type(Obj::Users),
                Term::Field("email".into(), "ada@x.example".into()),
                Term::Text("big deal".into()),
                Term::Text("acme".into()),
            ]
        );
        assert!(terms("type:widget").is_err());
        assert!(terms("\"open").is_err());
    }

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        assert_eq!(decode_cursor(&encode_cursor(360_123)), Some(360_123));
        assert_eq!(decode_cursor("not a cursor"), None);
    }
}
