//! Single-object CRUD of CRM v3: `POST /crm/v3/objects/{obj}` (201 SimplePublicObject),
//! `GET`, `PATCH` and `DELETE /crm/v3/objects/{obj}/{id}` (`idProperty` for a unique
//! property such as a contact's `email`), with the batch routes' property checks and
//! HubSpot's error bodies: 400 VALIDATION_ERROR, 409 CONFLICT naming the record that
//! already holds a unique value, 404 OBJECT_NOT_FOUND.

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::params::Params;
use super::{correlation_id, error, lock, now_ms, ok, spec_of, validate, Refusal, Shared, St};

/// HubSpot's 404 for an id it has no record for, naming the id as it came in the path.
fn not_found(id: &str) -> Response {
    let body = json!({
        "status": "error",
        "message": "Object not found.  objectId are usually numeric.",
        "correlationId": correlation_id(),
        "context": {"id": [id]},
        "category": "OBJECT_NOT_FOUND",
    });
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

/// `properties` of a write body, or the 400 a malformed body gets.
// The error is the ready answer a handler returns at once; boxing it buys nothing.
#[allow(clippy::result_large_err)]
fn properties(st: &St, object: &str, body: &Bytes) -> Result<Map<String, Value>, Response> {
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(body) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "Invalid input JSON: the body is not a JSON object",
        ));
    };
    let props = req
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let unknown: BTreeSet<&str> = props
        .keys()
        .map(String::as_str)
        .filter(|k| st.definition(object, k).is_none())
        .collect();
    if !unknown.is_empty() {
        return Err(Refusal::no_such_properties(&unknown).response());
    }
    Ok(props)
}

/// `POST /crm/v3/objects/{obj}`: one object, 201 and the SimplePublicObject.
pub(super) async fn create(
    State(s): State<Shared>,
    Path(obj): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = lock(&s);
    let rate = match st.admit(&headers, false) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let Some(spec) = spec_of(&obj) else {
        return error(
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            &format!("Unable to infer object type from: {obj}"),
        );
    };
    let props = match properties(&st, spec.name, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    match validate(&st, spec, &props, None) {
        Ok(p) => {
            let id = st.insert(spec, p, now_ms());
            let Some(rec) = st.records(spec.name).get(&id) else {
                return not_found(&id.to_string());
            };
            let body = st.json_of(spec.name, rec, None);
            ok(StatusCode::CREATED, rate, body)
        }
        Err(r) => r.response(),
    }
}

/// `GET`/`PATCH`/`DELETE /crm/v3/objects/{obj}/{id}`.
pub(super) async fn one(
    State(s): State<Shared>,
    Path((obj, id)): Path<(String, String)>,
    method: Method,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let q = Params(q);
    let mut st = lock(&s);
    let rate = match st.admit(&headers, false) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let Some(spec) = spec_of(&obj) else {
        return error(
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            &format!("Unable to infer object type from: {obj}"),
        );
    };
    let archived = method == Method::GET && q.get("archived").is_some_and(|a| a == "true");
    let found = match q.get("idProperty") {
        None | Some("hs_object_id") => id.parse::<u64>().ok().filter(|n| {
            st.records(spec.name)
                .get(n)
                .is_some_and(|r| r.archived_ms.is_some() == archived)
        }),
        Some(p) => {
            if !st.is_unique(spec.name, p) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "VALIDATION_ERROR",
                    &format!("idProperty {p} is not a unique-value property"),
                );
            }
            st.find_unique(spec.name, p, &id)
        }
    };
    if method == Method::DELETE {
        // Archiving what is already gone changes nothing and still answers 204.
        if let Some(n) = found {
            st.archive(spec.name, n, now_ms());
        }
        return (StatusCode::NO_CONTENT, rate).into_response();
    }
    let Some(n) = found else {
        return not_found(&id);
    };
    if method == Method::PATCH {
        let props = match properties(&st, spec.name, &body) {
            Ok(p) => p,
            Err(r) => return r,
        };
        match validate(&st, spec, &props, Some(n)) {
            Ok(p) => st.apply(spec.name, n, p, now_ms()),
            Err(r) => return r.response(),
        }
    }
    let wanted = q.list("properties");
    let Some(rec) = st.records(spec.name).get(&n) else {
        return not_found(&id);
    };
    let body = st.json_of(spec.name, rec, wanted.as_deref());
    ok(StatusCode::OK, rate, body)
}
