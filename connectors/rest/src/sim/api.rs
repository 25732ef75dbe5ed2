//! The endpoints: webinars by page number, registrants by cursor (in the body, as a `next`
//! URL and as a `Link` header), one registrant, create and update, attendance by offset.

use std::collections::HashMap;
use std::ops::Bound;

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::DateTime;
use serde_json::{json, Value};

use super::records::{self, Registrant};
use super::{
    body_object, invalid, invalid_answer, lock, not_found, not_found_answer, number, respond,
    Answer, Shared, Token,
};

type Q = Query<HashMap<String, String>>;

/// A whole-number query parameter: its default when absent, a 422 when not a number in
/// `min..`, at most `max` (a larger one is served as `max`, as most platforms do).
fn param(
    q: &HashMap<String, String>,
    name: &str,
    default: usize,
    min: usize,
    max: usize,
) -> Result<usize, Answer> {
    let Some(raw) = q.get(name) else {
        return Ok(default);
    };
    match raw.trim().parse::<usize>() {
        Ok(n) if n >= min => Ok(n.min(max)),
        _ => Err(invalid_answer(
            name,
            &format!("{name} must be a whole number of at least {min}, not `{raw}`"),
        )),
    }
}

/// `GET /v1/webinars?page=&per_page=`.
pub(super) async fn list_webinars(State(state): State<Shared>, Query(q): Q) -> Response {
    answer(webinars(&state, &q))
}

/// A list's body, or the refusal of its query.
fn answer(listed: Result<Value, Answer>) -> Response {
    match listed {
        Ok(body) => Json(body).into_response(),
        Err(refused) => respond(refused),
    }
}

fn webinars(state: &Shared, q: &HashMap<String, String>) -> Result<Value, Answer> {
    let page = param(q, "page", 1, 1, usize::MAX)?;
    let per_page = param(q, "per_page", 50, 1, 100)?;
    let s = lock(state);
    let total = s.webinars.len();
    let data: Vec<Value> = s
        .webinars
        .values()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(records::Webinar::json)
        .collect();
    Ok(json!({
        "data": data,
        "meta": {
            "page": page,
            "per_page": per_page,
            "total": total,
            "total_pages": total.div_ceil(per_page),
        },
    }))
}

/// The cursor is the last served (updated_at, number), not an offset: a record updated
/// between pages moves to the end of the list, and no other record shifts under it.
fn encode_cursor(ts: i64, n: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{ts}.{n}"))
}

fn decode_cursor(c: &str) -> Option<(i64, u64)> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
    let (ts, n) = raw.split_once('.')?;
    Some((ts.parse().ok()?, n.parse().ok()?))
}

/// `updated_since` as whole Unix seconds, rounded up: records carry whole seconds, and
/// one at 10:00:00 was not updated since 10:00:00.5.
fn since(raw: &str) -> Option<i64> {
    let t = DateTime::parse_from_rfc3339(raw).ok()?;
    Some(t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0))
}

/// `GET /v1/registrants?limit=&updated_since=&cursor=`, ordered by (`updated_at`, `id`).
pub(super) async fn list_registrants(State(state): State<Shared>, Query(q): Q) -> Response {
    let limit = match param(&q, "limit", 100, 1, 200) {
        Ok(n) => n,
        Err(refused) => return respond(refused),
    };
    let from = match q.get("updated_since") {
        None => i64::MIN,
        Some(raw) => match since(raw) {
            Some(t) => t,
            None => {
                return invalid(
                    "updated_since",
                    &format!(
                    "updated_since must be an RFC 3339 time (a `+` in it sent as %2B), not `{raw}`"
                ),
                )
            }
        },
    };
    let after = match q.get("cursor").map(|c| decode_cursor(c)) {
        None => None,
        Some(Some(p)) => Some(p),
        Some(None) => return invalid("cursor", "cursor is not one this API gave out"),
    };
    let s = lock(&state);
    let lower = match after {
        Some(p) => Bound::Excluded(p.max((from, 0))),
        None => Bound::Included((from, 0)),
    };
    let mut rows = s.order.range((lower, Bound::Unbounded));
    let page: Vec<(i64, u64)> = rows.by_ref().take(limit).copied().collect();
    let has_more = rows.next().is_some();
    let data: Vec<Value> = page.iter().map(|(_, n)| s.registrant_json(*n)).collect();
    let cursor = page
        .last()
        .filter(|_| has_more)
        .map(|(ts, n)| encode_cursor(*ts, *n));
    let next = cursor
        .as_ref()
        .map(|c| format!("{}/v1/registrants?limit={limit}&cursor={c}", s.base));
    let body = json!({
        "data": data,
        "has_more": has_more,
        "next_cursor": cursor,
        "links": {"next": next},
    });
    let mut r = Json(body).into_response();
    if let Some(link) =
        next.and_then(|u| HeaderValue::from_str(&format!("<{u}>; rel=\"next\"")).ok())
    {
        r.headers_mut().insert("link", link);
    }
    r
}

/// `GET /v1/registrants/{id}`.
pub(super) async fn show_registrant(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Response {
    let s = lock(&state);
    match number(&id, "reg_").and_then(|n| s.registrants.get(&n)) {
        Some(r) => Json(r.json()).into_response(),
        None => not_found(&format!("registrant `{id}`")),
    }
}

/// `POST /v1/webinars/{webinar_id}/registrants`: 201 new, 200 for an email already
/// registered to that webinar. With an `Idempotency-Key`, a repeat gets the first answer,
/// refusals included, and changes nothing (its body is not compared with the first's).
pub(super) async fn create_registrant(
    State(state): State<Shared>,
    Path(webinar_id): Path<String>,
    Extension(Token(token)): Extension<Token>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(|k| (token, k.to_owned()));
    let mut s = lock(&state);
    if let Some((status, body)) = key.as_ref().and_then(|k| s.replays.get(k)).cloned() {
        s.stats.idempotent_replays += 1;
        let mut r = respond((status, body));
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        return r;
    }
    let (status, answer) = create_answer(&mut s, &webinar_id, &body);
    if let Some(k) = key {
        s.replays.insert(k, (status, answer.clone()));
    }
    respond((status, answer))
}

/// A create's outcome, refusals included: all are kept under the key.
fn create_answer(s: &mut super::Inner, webinar_id: &str, body: &[u8]) -> Answer {
    let Some(webinar) = s.webinar_by_id(webinar_id).map(|w| w.n) else {
        return not_found_answer(&format!("webinar `{webinar_id}`"));
    };
    let c = match body_object(body).and_then(|fields| {
        records::create(&fields).map_err(|(field, message)| invalid_answer(&field, &message))
    }) {
        Ok(c) => c,
        Err(refused) => return refused,
    };
    let email = c.email.as_deref().unwrap_or_default();
    if let Some(n) = s.registered(webinar, email) {
        return (StatusCode::OK, s.registrant_json(n));
    }
    let at = s.now();
    let n = s.create(webinar, c, at, true);
    s.stats.created += 1;
    (StatusCode::CREATED, s.registrant_json(n))
}

/// `PATCH /v1/registrants/{id}`: any of the writable fields; `updated_at` moves to now.
pub(super) async fn update_registrant(
    State(state): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let mut s = lock(&state);
    let Some(n) = number(&id, "reg_").filter(|n| s.registrants.contains_key(n)) else {
        return not_found(&format!("registrant `{id}`"));
    };
    let fields = match body_object(&body) {
        Ok(f) => f,
        Err(refused) => return respond(refused),
    };
    let c = match records::patch(&fields) {
        Ok(c) => c,
        Err((field, message)) => return invalid(&field, &message),
    };
    let at = s.now();
    s.update(n, c, at);
    s.stats.updated += 1;
    Json(s.registrant_json(n)).into_response()
}

/// `GET /v1/attendance?offset=&limit=`: one row per registrant, by registrant id.
pub(super) async fn list_attendance(State(state): State<Shared>, Query(q): Q) -> Response {
    answer(attendance(&state, &q))
}

fn attendance(state: &Shared, q: &HashMap<String, String>) -> Result<Value, Answer> {
    let offset = param(q, "offset", 0, 0, usize::MAX)?;
    let limit = param(q, "limit", 100, 1, 200)?;
    let s = lock(state);
    let data: Vec<Value> = s
        .registrants
        .values()
        .skip(offset)
        .take(limit)
        .map(|r: &Registrant| r.attendance(s.webinars.get(&r.webinar)))
        .collect();
    Ok(json!({"data": data, "total": s.registrants.len()}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_decodes_to_what_it_encoded_and_junk_to_nothing() {
        let c = encode_cursor(1_700_000_000, 100_042);
        assert_eq!(decode_cursor(&c), Some((1_700_000_000, 100_042)));
        assert_eq!(decode_cursor("not a cursor"), None);
    }

    #[test]
    fn updated_since_rounds_a_fraction_up() {
        assert_eq!(since("1970-01-01T00:00:10Z"), Some(10));
        assert_eq!(since("1970-01-01T00:00:10.5Z"), Some(11));
        assert_eq!(since("1970-01-01T01:00:10+01:00"), Some(10));
        assert_eq!(since("yesterday"), None);
    }
}
