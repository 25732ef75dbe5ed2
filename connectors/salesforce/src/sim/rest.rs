//! Single-record REST: `sobjects/{SObject}` (basic info, create), `sobjects/{SObject}/{id}`
//! (read, update, delete) and `sobjects/{SObject}/{ExternalIdField}/{value}` (read, upsert,
//! delete), with Salesforce's status codes and error arrays. Validation is the collection
//! routes' own ([`SimState::create`], [`SimState::update`]), answered the REST way: 400 with
//! `[{"message","errorCode","fields"}]` instead of a per-item `success:false`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::{
    add_limit_info, answer, canonical_object, describe, lock, refuse, rest_error,
    unknown_field_answer, Shared, SimRecord, SimState, EXTERNAL_ID_FIELD,
};

const NOT_FOUND_MESSAGE: &str = "The requested resource does not exist";

fn with_limits(s: &SimState, mut r: Response) -> Response {
    add_limit_info(s, &mut r);
    r
}

fn not_found(s: &SimState) -> Response {
    with_limits(
        s,
        rest_error(StatusCode::NOT_FOUND, "NOT_FOUND", NOT_FOUND_MESSAGE),
    )
}

/// `v46.0` -> 46.0; an unreadable version counts as the newest.
fn version_number(v: &str) -> f64 {
    v.trim_start_matches('v').parse().unwrap_or(f64::MAX)
}

/// A collection item's refusal (`{"success":false,"errors":[{statusCode,...}]}`) as the
/// single-record resources answer it: 400 and `[{"message","errorCode","fields"}]`.
fn refusal(s: &SimState, item: &Value) -> Option<Response> {
    if item["success"] == json!(true) {
        return None;
    }
    let errors: Vec<Value> = item["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| json!({"message": e["message"], "errorCode": e["statusCode"], "fields": e["fields"]}))
        .collect();
    let code = errors
        .first()
        .and_then(|e| e["errorCode"].as_str())
        .unwrap_or_default();
    let status = match code {
        "ENTITY_IS_DELETED" | "INVALID_CROSS_REFERENCE_KEY" => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    };
    Some(answer(s, status, Value::Array(errors)))
}

/// The request body as fields of `object`, or Salesforce's answer to a body it cannot
/// read: not a JSON object, or naming a field the object does not have.
// The error is the ready answer a handler returns at once; boxing it buys nothing.
#[allow(clippy::result_large_err)]
fn body_fields(s: &SimState, object: &str, body: &Bytes) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut m)) => {
            m.remove("attributes");
            match unknown_field_answer(s, object, m.keys()) {
                Some(refused) => Err(refused),
                None => Ok(m),
            }
        }
        _ => Err(with_limits(
            s,
            rest_error(
                StatusCode::BAD_REQUEST,
                "JSON_PARSER_ERROR",
                "The request body is not a JSON object",
            ),
        )),
    }
}

/// A whole record as `GET /sobjects/{SObject}/{id}` shows it: every described field
/// (null when unset) and any other the record holds, or only `fields=` when given.
fn full(s: &SimState, r: &SimRecord, only: Option<&str>, version: &str) -> Value {
    let names: Vec<String> = match only {
        Some(list) => list
            .split(',')
            .map(|f| f.trim().to_owned())
            .filter(|f| !f.is_empty())
            .collect(),
        None => {
            let mut names: Vec<String> = describe::describe(&r.object)
                .and_then(|d| d.get("fields").and_then(Value::as_array).cloned())
                .into_iter()
                .flatten()
                .filter_map(|f| f.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect();
            for k in r.fields.keys() {
                if !names.contains(k) {
                    names.push(k.clone());
                }
            }
            names
        }
    };
    s.render(r, &names, version)
}

/// `/sobjects/{SObject}`: GET basic info, POST create (201 `{"id","success","errors"}`).
pub(super) async fn root(
    State(st): State<Shared>,
    Path((_v, object)): Path<(String, String)>,
    method: axum::http::Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = lock(&st);
    if let Some(r) = refuse(&mut s, &headers) {
        return r;
    }
    let Some(object) = canonical_object(&object) else {
        return not_found(&s);
    };
    if method == axum::http::Method::GET {
        let mut info = describe::describe(object).unwrap_or_default();
        if let Some(m) = info.as_object_mut() {
            m.remove("fields");
        }
        return answer(
            &s,
            StatusCode::OK,
            json!({"objectDescribe": info, "recentItems": []}),
        );
    }
    let fields = match body_fields(&s, object, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let item = s.create(object, fields);
    if let Some(r) = refusal(&s, &item) {
        return r;
    }
    answer(
        &s,
        StatusCode::CREATED,
        json!({"id": item.get("id"), "success": true, "errors": []}),
    )
}

/// `/sobjects/{SObject}/{id}`: GET the record, PATCH (204), DELETE (204).
pub(super) async fn row(
    State(st): State<Shared>,
    Path((v, object, id)): Path<(String, String, String)>,
    method: axum::http::Method,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let mut s = lock(&st);
    if let Some(r) = refuse(&mut s, &headers) {
        return r;
    }
    let Some(object) = canonical_object(&object) else {
        return not_found(&s);
    };
    let rec = match s.records.get(&id) {
        Some(r) if r.object == object => r.clone(),
        _ => return not_found(&s),
    };
    if rec.deleted {
        return with_limits(
            &s,
            rest_error(
                StatusCode::NOT_FOUND,
                "ENTITY_IS_DELETED",
                "entity is deleted",
            ),
        );
    }
    match method.as_str() {
        "GET" => {
            let body = full(&s, &rec, q.get("fields").map(String::as_str), &v);
            answer(&s, StatusCode::OK, body)
        }
        "PATCH" => {
            let fields = match body_fields(&s, object, &body) {
                Ok(f) => f,
                Err(r) => return r,
            };
            let item = s.update(&id, Some(object), fields);
            refusal(&s, &item)
                .unwrap_or_else(|| with_limits(&s, StatusCode::NO_CONTENT.into_response()))
        }
        _ => {
            let item = s.delete(&id);
            refusal(&s, &item)
                .unwrap_or_else(|| with_limits(&s, StatusCode::NO_CONTENT.into_response()))
        }
    }
}

/// The live records of `object` whose `field` holds `value`.
fn by_external_id(s: &SimState, object: &str, field: &str, value: &str) -> Vec<SimRecord> {
    s.live(object)
        .filter(|r| {
            if field.eq_ignore_ascii_case("Id") {
                r.id == value
            } else {
                r.fields.get(field).and_then(Value::as_str) == Some(value)
            }
        })
        .cloned()
        .collect()
}

/// `/sobjects/{SObject}/{field}/{value}`: GET, PATCH (upsert), DELETE by external id.
/// Upsert answers 201 `{"id","success","errors","created":true}` on create; on update 200
/// with `created:false` from API v46.0 on, 204 before; 300 with the matches' URLs when the
/// value is not unique.
pub(super) async fn external(
    State(st): State<Shared>,
    Path((v, object, field, value)): Path<(String, String, String, String)>,
    method: axum::http::Method,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let mut s = lock(&st);
    if let Some(r) = refuse(&mut s, &headers) {
        return r;
    }
    let Some(object) = canonical_object(&object) else {
        return not_found(&s);
    };
    let field = if field.eq_ignore_ascii_case(EXTERNAL_ID_FIELD) {
        EXTERNAL_ID_FIELD
    } else if field.eq_ignore_ascii_case("Id") {
        "Id"
    } else {
        return with_limits(
            &s,
            rest_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("Provided external ID field does not exist or is not accessible: {field}"),
            ),
        );
    };
    let matched = by_external_id(&s, object, field, &value);
    if matched.len() > 1 {
        let urls: Vec<String> = matched
            .iter()
            .map(|r| format!("/services/data/{v}/sobjects/{object}/{}", r.id))
            .collect();
        return answer(&s, StatusCode::MULTIPLE_CHOICES, json!(urls));
    }
    let found = matched.into_iter().next();
    match (method.as_str(), found) {
        ("GET", Some(rec)) => {
            let body = full(&s, &rec, q.get("fields").map(String::as_str), &v);
            answer(&s, StatusCode::OK, body)
        }
        ("DELETE", Some(rec)) => {
            let item = s.delete(&rec.id);
            refusal(&s, &item)
                .unwrap_or_else(|| with_limits(&s, StatusCode::NO_CONTENT.into_response()))
        }
        ("PATCH", found) => {
            let mut fields = match body_fields(&s, object, &body) {
                Ok(f) => f,
                Err(r) => return r,
            };
            let newer = version_number(&v) >= 46.0;
            if let Some(rec) = found {
                let item = s.update(&rec.id, Some(object), fields);
                if let Some(r) = refusal(&s, &item) {
                    return r;
                }
                return if newer {
                    answer(
                        &s,
                        StatusCode::OK,
                        json!({"id": rec.id, "success": true, "errors": [], "created": false}),
                    )
                } else {
                    with_limits(&s, StatusCode::NO_CONTENT.into_response())
                };
            }
            if field == "Id" || q.get("updateOnly").is_some_and(|u| u == "true") {
                return not_found(&s);
            }
            fields.insert(field.to_owned(), json!(value));
            let item = s.create(object, fields);
            if let Some(r) = refusal(&s, &item) {
                return r;
            }
            let body = if newer {
                json!({"id": item.get("id"), "success": true, "errors": [], "created": true})
            } else {
                json!({"id": item.get("id"), "success": true, "errors": []})
            };
            answer(&s, StatusCode::CREATED, body)
        }
        _ => not_found(&s),
    }
}
