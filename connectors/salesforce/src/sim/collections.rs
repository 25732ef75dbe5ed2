//! sObject Collections (`/composite/sobjects`): create, update, delete and external-id
//! upsert of up to 200 records a call, answered 200 with one SaveResult (UpsertResult for
//! upserts) per record in order; `allOrNone` rolls every record back when one fails; a
//! body naming a field the object does not have fails the whole request with 400
//! INVALID_FIELD before any record is saved.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Map, Value};

use super::{
    answer, canonical_object, item_error, lock, refuse, rest_error, succeeded,
    unknown_field_answer, Shared, SimRecord, SimState,
};

/// With `allOrNone`, one failed item undoes the request: the records as they were before,
/// each failure keeps its own error and every other item says it was rolled back.
fn all_or_none(
    s: &mut SimState,
    before: BTreeMap<String, SimRecord>,
    results: Vec<Value>,
) -> Vec<Value> {
    if results.iter().all(succeeded) {
        return results;
    }
    s.records = before;
    results
        .into_iter()
        .map(|r| {
            if succeeded(&r) {
                item_error(
                    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                    "Record rolled back because not all records were valid and the request was using AllOrNone header",
                    &[],
                )
            } else {
                r
            }
        })
        .collect()
}

/// Shared shape of collection writes: body checks, the 200 cap, `allOrNone`, lost answers.
/// `object_of` names the sObject a record is written to, for the field check every record
/// passes before any is saved.
fn collection(
    st: &Shared,
    headers: &HeaderMap,
    body: &Value,
    object_of: impl Fn(&SimState, &Value) -> Option<String>,
    mut apply: impl FnMut(&mut SimState, Map<String, Value>) -> Value,
) -> Response {
    let mut s = lock(st);
    if let Some(r) = refuse(&mut s, headers) {
        return r;
    }
    s.write_calls += 1;
    let Some(records) = body["records"].as_array() else {
        return rest_error(
            StatusCode::BAD_REQUEST,
            "JSON_PARSER_ERROR",
            "records missing",
        );
    };
    if records.len() > 200 {
        return rest_error(
            StatusCode::BAD_REQUEST,
            "EXCEEDED_ID_LIMIT",
            "record limit exceeded: 200",
        );
    }
    for r in records {
        let (Some(m), Some(object)) = (r.as_object(), object_of(&s, r)) else {
            continue;
        };
        let names = m.keys().filter(|k| *k != "attributes");
        if let Some(refused) = unknown_field_answer(&s, &object, names) {
            return refused;
        }
    }
    let all_or_none_asked = body.get("allOrNone") == Some(&Value::Bool(true));
    let before = all_or_none_asked.then(|| s.records.clone());
    let mut results = Vec::new();
    for r in records {
        let Some(mut fields) = r.as_object().cloned() else {
            results.push(item_error(
                "JSON_PARSER_ERROR",
                "record is not an object",
                &[],
            ));
            continue;
        };
        fields.remove("attributes");
        results.push(apply(&mut s, fields));
    }
    if let Some(before) = before {
        results = all_or_none(&mut s, before, results);
    }
    respond_or_drop(&mut s, Value::Array(results))
}

fn respond_or_drop(s: &mut SimState, results: Value) -> Response {
    if s.drop_responses > 0 {
        s.drop_responses -= 1;
        return (StatusCode::INTERNAL_SERVER_ERROR, "connection reset").into_response();
    }
    answer(s, StatusCode::OK, results)
}

pub(super) async fn create_many(
    State(st): State<Shared>,
    Path(_v): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let type_of = |r: &Value| {
        r.pointer("/attributes/type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let types: Vec<String> = body
        .get("records")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(type_of)
        .collect();
    let mut i = 0;
    let object_of = |_: &SimState, r: &Value| canonical_object(&type_of(r)).map(str::to_owned);
    collection(&st, &headers, &body, object_of, |s, fields| {
        let object = types.get(i).cloned().unwrap_or_default();
        i += 1;
        s.create(&object, fields)
    })
}

pub(super) async fn update_many(
    State(st): State<Shared>,
    Path(_v): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let object_of = |s: &SimState, r: &Value| {
        let id = r
            .get("id")
            .or_else(|| r.get("Id"))
            .and_then(Value::as_str)?;
        s.records.get(id).map(|rec| rec.object.clone())
    };
    collection(&st, &headers, &body, object_of, |s, mut fields| {
        let id = fields
            .remove("id")
            .or_else(|| fields.remove("Id"))
            .and_then(|v| v.as_str().map(str::to_owned));
        match id {
            Some(id) => s.update(&id, None, fields),
            None => item_error("MISSING_ARGUMENT", "id not specified", &[]),
        }
    })
}

pub(super) async fn delete_many(
    State(st): State<Shared>,
    Path(_v): Path<String>,
    headers: HeaderMap,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    let mut s = lock(&st);
    if let Some(r) = refuse(&mut s, &headers) {
        return r;
    }
    s.write_calls += 1;
    let ids: Vec<&str> = p
        .get("ids")
        .map(|v| v.split(',').collect())
        .unwrap_or_default();
    if ids.len() > 200 {
        return rest_error(
            StatusCode::BAD_REQUEST,
            "EXCEEDED_ID_LIMIT",
            "record limit exceeded: 200",
        );
    }
    let before = p
        .get("allOrNone")
        .is_some_and(|v| v == "true")
        .then(|| s.records.clone());
    let mut results: Vec<Value> = ids.iter().map(|id| s.delete(id)).collect();
    if let Some(before) = before {
        results = all_or_none(&mut s, before, results);
    }
    respond_or_drop(&mut s, Value::Array(results))
}

pub(super) async fn upsert_many(
    State(st): State<Shared>,
    Path((_v, object, field)): Path<(String, String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let target = canonical_object(&object).map(str::to_owned);
    collection(
        &st,
        &headers,
        &body,
        |_, _| target.clone(),
        |s, fields| s.upsert(&object, &field, fields),
    )
}
