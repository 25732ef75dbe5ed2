//! CRM v4 associations: `POST /crm/v4/associations/{from}/{to}/batch/read` and
//! `.../batch/associate/default`, with HubSpot's unlabeled association type ids (contact to
//! company 279, company to contact 280, ...) and the batch answer's `startedAt` and
//! `completedAt`, which HubSpot's clients require.

use std::sync::MutexGuard;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::{batch_answer, error, item_error, lock, spec_of, text, Shared, St};
use crate::mapping::ObjectSpec;

/// The HUBSPOT_DEFINED id of the default (unlabeled) association from one object to another,
/// as HubSpot's association type table lists them.
fn default_type(from: &str, to: &str) -> u32 {
    match (from, to) {
        ("contacts", "companies") => 279,
        ("companies", "contacts") => 280,
        ("deals", "contacts") => 3,
        ("contacts", "deals") => 4,
        ("deals", "companies") => 341,
        ("companies", "deals") => 342,
        ("contacts", "contacts") => 449,
        ("companies", "companies") => 450,
        _ => 451,
    }
}

/// An admitted batch call between two known object types.
struct Call<'a> {
    st: MutexGuard<'a, St>,
    rate: HeaderMap,
    from: &'static ObjectSpec,
    to: &'static ObjectSpec,
    inputs: Vec<Value>,
}

/// Admits the call and reads its object types and `inputs`; `Err` is the answer to send.
// The error is the ready answer a handler returns at once; boxing it buys nothing.
#[allow(clippy::result_large_err)]
fn begin<'a>(
    s: &'a Shared,
    headers: &HeaderMap,
    (from, to): (&str, &str),
    body: &Bytes,
) -> Result<Call<'a>, Response> {
    let mut st = lock(s);
    let rate = st.admit(headers, false)?;
    let bad = |m: &str| error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", m);
    let (Some(from), Some(to)) = (spec_of(from), spec_of(to)) else {
        return Err(bad("unknown object type"));
    };
    let inputs = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("inputs").and_then(Value::as_array).cloned())
        .ok_or_else(|| bad("inputs is required"))?;
    Ok(Call {
        st,
        rate,
        from,
        to,
        inputs,
    })
}

pub(super) async fn read(
    State(s): State<Shared>,
    Path((from, to)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Call {
        st,
        rate,
        from: f,
        to: t,
        inputs,
    } = match begin(&s, &headers, (&from, &to), &body) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if inputs.len() > 1000 {
        return error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "too many inputs",
        );
    }
    let type_id = default_type(f.name, t.name);
    let mut results = Vec::new();
    for i in inputs {
        let Some(id) = i
            .get("id")
            .and_then(text)
            .and_then(|x| x.parse::<u64>().ok())
        else {
            continue;
        };
        let tos: Vec<Value> = st
            .assoc
            .iter()
            .filter(|(a, aid, b, _)| *a == f.name && *aid == id && *b == t.name)
            .map(|(_, _, _, bid)| json!({"toObjectId": bid, "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": null}]}))
            .collect();
        if !tos.is_empty() {
            results.push(json!({"from": {"id": id.to_string()}, "to": tos}));
        }
    }
    batch_answer(StatusCode::OK, rate, results, Vec::new())
}

pub(super) async fn associate_default(
    State(s): State<Shared>,
    Path((from, to)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Call {
        mut st,
        rate,
        from: f,
        to: t,
        inputs,
    } = match begin(&s, &headers, (&from, &to), &body) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let spec = json!({"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": default_type(f.name, t.name)});
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for i in inputs {
        let id = |side: &str| {
            i.pointer(side)
                .and_then(text)
                .and_then(|x| x.parse::<u64>().ok())
        };
        let exists = |o: &str, id: u64| {
            st.records(o)
                .get(&id)
                .is_some_and(|r| r.archived_ms.is_none())
        };
        let (Some(fid), Some(tid)) = (id("/from/id"), id("/to/id")) else {
            errors.push(item_error(
                "VALIDATION_ERROR",
                "from.id and to.id are required".into(),
                None,
                None,
            ));
            continue;
        };
        if !exists(f.name, fid) || !exists(t.name, tid) {
            errors.push(item_error(
                "OBJECT_NOT_FOUND",
                "one side of the association does not exist".into(),
                None,
                None,
            ));
            continue;
        }
        st.link(f.name, fid, t.name, tid);
        results.push(json!({"from": {"id": fid.to_string()}, "to": {"id": tid.to_string()}, "associationSpec": spec}));
    }
    batch_answer(StatusCode::OK, rate, results, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_types_are_hubspots_unlabeled_ids_each_way() {
        assert_eq!(default_type("contacts", "companies"), 279);
        assert_eq!(default_type("companies", "contacts"), 280);
        assert_eq!(default_type("deals", "companies"), 341);
        assert_eq!(default_type("companies", "deals"), 342);
    }
}
