//! The account's custom field definitions (`/user_fields`, `/organization_fields`,
//! `/ticket_fields`), paged by cursor (`page[size]`, `page[after]`) or by offset (`page`,
//! `per_page`) as Zendesk does, and the empty values every record carries for them.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use super::{error, Obj, Shared};
use crate::describe::is_system_ticket_type;

/// Which list of definitions a route serves.
#[derive(Clone, Copy, Debug)]
pub(super) enum Defs {
    User,
    Organization,
    Ticket,
}

impl Defs {
    pub(super) fn key(self) -> &'static str {
        match self {
            Defs::User => "user_fields",
            Defs::Organization => "organization_fields",
            Defs::Ticket => "ticket_fields",
        }
    }

    fn of(o: Obj) -> Defs {
        match o {
            Obj::Users => Defs::User,
            Obj::Orgs => Defs::Organization,
            Obj::Tickets => Defs::Ticket,
        }
    }
}

/// The definitions of a new account: per list a dropdown with options, a checkbox and an
/// inactive field (which a describe must leave out); tickets also list their system fields.
pub(super) fn defaults() -> HashMap<&'static str, Vec<Value>> {
    let stamp = "2024-01-01T00:00:00Z";
    let field = |kind: &str, id: u64, key: &str, ty: &str, title: &str, pos: u64, active: bool| {
        json!({"id": id, "url": format!("/api/v2/{kind}/{id}.json"), "key": key, "type": ty,
            "title": title, "description": "", "position": pos, "active": active, "system": false,
            "regexp_for_validation": null, "created_at": stamp, "updated_at": stamp})
    };
    let options = |base: u64, values: &[&str]| -> Value {
        values
            .iter()
            .zip(base..)
            .map(|(v, id)| json!({"id": id, "name": v.to_uppercase(), "value": v}))
            .collect()
    };
    let plan = field("user_fields", 9001, "plan", "dropdown", "Plan", 0, true);
    let users = vec![
        with(
            plan,
            "custom_field_options",
            options(9101, &["free", "pro", "enterprise"]),
        ),
        field("user_fields", 9002, "vip", "checkbox", "VIP", 1, true),
        field(
            "user_fields",
            9003,
            "legacy_id",
            "text",
            "Legacy id",
            2,
            false,
        ),
        field("user_fields", 9004, "renewal", "date", "Renewal", 3, true),
    ];
    let tier = field(
        "organization_fields",
        9201,
        "tier",
        "dropdown",
        "Tier",
        0,
        true,
    );
    let orgs = vec![
        with(
            tier,
            "custom_field_options",
            options(9301, &["bronze", "silver", "gold"]),
        ),
        field(
            "organization_fields",
            9202,
            "partner",
            "checkbox",
            "Partner",
            1,
            true,
        ),
        field(
            "organization_fields",
            9203,
            "old_region",
            "text",
            "Old region",
            2,
            false,
        ),
    ];
    // Ticket fields have no `key`; custom ones are addressed by id, and say `required`.
    let ticket = |id: u64, ty: &str, title: &str, pos: u64, active: bool, required: bool| {
        let mut f = field("ticket_fields", id, "", ty, title, pos, active);
        if let Some(m) = f.as_object_mut() {
            m.remove("key");
            m.insert("required".into(), json!(required));
            m.insert("removable".into(), json!(!is_system_ticket_type(ty)));
        }
        f
    };
    let product = with(
        ticket(9403, "tagger", "Product", 4, true, false),
        "custom_field_options",
        options(9501, &["product_a", "product_b"]),
    );
    let statuses: Vec<Value> = ["new", "open", "pending", "hold", "solved", "closed"]
        .iter()
        .map(|v| json!({"name": v, "value": v}))
        .collect();
    let status = with(
        ticket(9402, "status", "Status", 2, true, false),
        "system_field_options",
        Value::Array(statuses),
    );
    let tickets = vec![
        ticket(9400, "subject", "Subject", 0, true, true),
        ticket(9401, "description", "Description", 1, true, true),
        status,
        product,
        ticket(9404, "checkbox", "Escalated", 5, true, false),
        ticket(9405, "text", "Retired", 6, false, false),
    ];
    HashMap::from([
        (Defs::User.key(), users),
        (Defs::Organization.key(), orgs),
        (Defs::Ticket.key(), tickets),
    ])
}

fn with(mut v: Value, key: &str, x: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.insert(key.into(), x);
    }
    v
}

/// The custom values a new record of `o` carries: every active field, null until set.
/// Users and organizations hold them by key, tickets as a list by id.
pub(super) fn empty_values(
    defs: &HashMap<&'static str, Vec<Value>>,
    o: Obj,
) -> (&'static str, Value) {
    let d = Defs::of(o);
    let active = defs
        .get(d.key())
        .into_iter()
        .flatten()
        .filter(|f| f["active"] == json!(true));
    match o {
        Obj::Tickets => (
            "custom_fields",
            active
                .filter(|f| !f["type"].as_str().is_some_and(is_system_ticket_type))
                .map(|f| json!({"id": f["id"], "value": null}))
                .collect(),
        ),
        _ => (
            d.key(),
            Value::Object(
                active
                    .filter_map(|f| Some((f["key"].as_str()?.to_owned(), Value::Null)))
                    .collect(),
            ),
        ),
    }
}

/// Writes custom values as Zendesk does: the keys (or ids) given change, the others stay.
pub(super) fn merge_values(have: &mut Value, given: &Value) {
    match (have, given) {
        (Value::Object(have), Value::Object(given)) => {
            for (k, v) in given {
                have.insert(k.clone(), v.clone());
            }
        }
        (Value::Array(have), Value::Array(given)) => {
            for g in given {
                match have.iter_mut().find(|h| h["id"] == g["id"]) {
                    Some(h) => h["value"] = g["value"].clone(),
                    None => have.push(json!({"id": g["id"], "value": g["value"]})),
                }
            }
        }
        (have, given) => *have = given.clone(),
    }
}

fn encode_cursor(index: usize) -> String {
    STANDARD.encode(format!("f|{index}"))
}

fn decode_cursor(c: &str) -> Option<usize> {
    let raw = String::from_utf8(STANDARD.decode(c).ok()?).ok()?;
    raw.strip_prefix("f|")?.parse().ok()
}

/// `GET /{user,organization,ticket}_fields`: cursor pages when `page[size]` is given,
/// offset pages (`next_page`) otherwise, in `position` order.
pub(super) async fn list(
    State(state): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    d: Defs,
) -> Response {
    let s = state.lock().unwrap_or_else(|e| e.into_inner());
    let mut defs = s.fields.get(d.key()).cloned().unwrap_or_default();
    defs.sort_by_key(|f| (f["position"].as_u64(), f["id"].as_u64()));
    let max = s.cfg.fields_page_max.clamp(1, 100);
    let key = d.key();
    // `None`: out of Zendesk's range, refused as it refuses it.
    let size = |name: &str| -> Option<usize> {
        match q.get(name) {
            None => Some(100.min(max)),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .map(|n| n.min(max)),
        }
    };
    let bad_size = |name: &str| {
        error(
            StatusCode::BAD_REQUEST,
            "InvalidPaginationParameter",
            &format!("{name} must be between 1 and 100"),
        )
    };
    if q.contains_key("page[size]") {
        let Some(per) = size("page[size]") else {
            return bad_size("page[size]");
        };
        let start = match q.get("page[after]").map(|c| decode_cursor(c)) {
            None => 0,
            Some(Some(i)) => i.saturating_add(1),
            Some(None) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidPaginationParameter",
                    "page[after] is not a valid cursor",
                )
            }
        };
        let page: Vec<Value> = defs.iter().skip(start).take(per).cloned().collect();
        let end = start.saturating_add(page.len());
        let has_more = end < defs.len();
        let after = (!page.is_empty()).then(|| encode_cursor(end.saturating_sub(1)));
        let before = (!page.is_empty() && start > 0).then(|| encode_cursor(start));
        let link = |dir: &str, c: &Option<String>| {
            c.as_ref()
                .map(|c| format!("/api/v2/{key}.json?page[size]={per}&page[{dir}]={c}"))
        };
        let next = if has_more {
            link("after", &after)
        } else {
            None
        };
        let prev = link("before", &before);
        return Json(json!({
            key: page,
            "meta": {"has_more": has_more, "after_cursor": after, "before_cursor": before},
            "links": {"next": next, "prev": prev},
        }))
        .into_response();
    }
    let Some(per) = size("per_page") else {
        return bad_size("per_page");
    };
    let page: usize = q
        .get("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let start = (page - 1).saturating_mul(per);
    let rows: Vec<Value> = defs.iter().skip(start).take(per).cloned().collect();
    let url = |p: usize| format!("/api/v2/{key}.json?page={p}&per_page={per}");
    let next = (start.saturating_add(per) < defs.len()).then(|| url(page + 1));
    let prev = (page > 1).then(|| url(page - 1));
    Json(json!({ key: rows, "next_page": next, "previous_page": prev, "count": defs.len() }))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_values_merge_by_key_and_by_id() {
        let mut have = json!({"plan": "free", "vip": null});
        merge_values(&mut have, &json!({"vip": true}));
        assert_eq!(have, json!({"plan": "free", "vip": true}));
        let mut have = json!([{"id": 1, "value": null}, {"id": 2, "value": "x"}]);
        merge_values(
            &mut have,
            &json!([{"id": 1, "value": "a"}, {"id": 3, "value": "c"}]),
        );
        assert_eq!(
            have,
            json!([{"id": 1, "value": "a"}, {"id": 2, "value": "x"}, {"id": 3, "value": "c"}])
        );
    }
}
