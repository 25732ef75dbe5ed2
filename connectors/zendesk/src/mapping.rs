//! Zendesk records <-> `Change`s in Zendesk's own field names (the YAML maps them).
//!
//! Ids are numbers in the REST API and strings in webhooks; every id leaves here as a
//! string so a relation (`requester_id` -> users) names the record one way only.
//!
//! Custom fields: a user's `user_fields` and an organization's `organization_fields` stay
//! nested objects (a mapping reads `user_fields.plan` by its dotted path); a ticket's
//! `custom_fields` list is also offered as `custom_fields.<id>`, since a path cannot index
//! a list by an entry's id. Writes nest both back the way Zendesk takes them.
// Every number here comes from the API: arithmetic on it must be checked (issue 25).
#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use revsync_sdk::Change;
use serde_json::{json, Map, Value};

/// Fields holding ids of other records (or the record's own).
const ID_FIELDS: &[&str] = &[
    "id",
    "organization_id",
    "requester_id",
    "submitter_id",
    "assignee_id",
    "group_id",
    "default_group_id",
];

/// Fields Zendesk computes; sending them back is refused or ignored.
const READ_ONLY: &[&str] = &[
    "id",
    "url",
    "created_at",
    "updated_at",
    "deleted_at",
    "generated_timestamp",
];

/// A Zendesk id (number or string) as text.
pub fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn time(v: &Value, field: &str) -> Result<DateTime<Utc>, String> {
    let s = v
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("no `{field}`"))?;
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{field}` is not RFC 3339 ({s}): {e}"))
}

fn fields_of(v: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (k, val) in v.as_object().into_iter().flatten() {
        if k == "url" {
            continue;
        }
        let val = if ID_FIELDS.contains(&k.as_str()) {
            id_text(val).map(Value::String).unwrap_or(Value::Null)
        } else {
            val.clone()
        };
        out.insert(k.clone(), val);
    }
    out
}

fn change(object: &str, v: &Value, deleted: bool) -> Result<Change, String> {
    let id = v
        .get("id")
        .and_then(id_text)
        .ok_or_else(|| format!("{object} record without an id"))?;
    let updated = time(v, "updated_at").map_err(|e| format!("{object} {id}: {e}"))?;
    Ok(Change {
        object: object.to_owned(),
        external_id: id,
        source_updated_at: updated,
        fields: fields_of(v),
        deleted,
        // revsync creates users and organizations with external_id = canonical id.
        canonical_id: revsync_sdk::canonical_id_in(v.get("external_id")),
    })
}

/// A user of the export; `None` for agents and admins, who are staff, not people we sync.
pub fn user(v: &Value) -> Result<Option<Change>, String> {
    let role = v.get("role").and_then(Value::as_str).unwrap_or("end-user");
    if role != "end-user" {
        return Ok(None);
    }
    // Deleted users stay in the export with `active: false`.
    let deleted = v.get("active").and_then(Value::as_bool) == Some(false);
    change("users", v, deleted).map(Some)
}

pub fn organization(v: &Value) -> Result<Change, String> {
    let deleted = v.get("deleted_at").is_some_and(|d| !d.is_null());
    change("organizations", v, deleted)
}

/// A ticket; `solved_at` comes from its metric set when the export side-loaded one.
pub fn ticket(v: &Value, solved_at: Option<&Value>) -> Result<Change, String> {
    let deleted = v.get("status").and_then(Value::as_str) == Some("deleted");
    let mut c = change("tickets", v, deleted)?;
    if let Some(s) = solved_at {
        c.fields.insert("solved_at".into(), s.clone());
    }
    for f in v
        .get("custom_fields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(id) = f.get("id").and_then(id_text) {
            let value = f.get("value").cloned().unwrap_or(Value::Null);
            c.fields.insert(format!("{TICKET_CUSTOM}{id}"), value);
        }
    }
    Ok(c)
}

/// The prefix of a ticket's custom field by id (`custom_fields.360012`).
pub const TICKET_CUSTOM: &str = "custom_fields.";

/// The body of one record in a write: source fields minus what Zendesk computes, dotted
/// names nested (`user_fields.plan` into `user_fields: {plan}`, `comment.body` into
/// `comment: {body}`) and `custom_fields.<id>` gathered into the ticket's list.
pub fn payload(fields: &BTreeMap<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    let mut custom = Vec::new();
    for (k, v) in fields
        .iter()
        .filter(|(k, _)| !READ_ONLY.contains(&k.as_str()))
    {
        if let Some(id) = k.strip_prefix(TICKET_CUSTOM) {
            // Zendesk identifies a custom field by its numeric id.
            let id = id.parse::<u64>().map(Value::from).unwrap_or(json!(id));
            custom.push(json!({"id": id, "value": v}));
            continue;
        }
        // Zendesk wants numeric ids back where it sent numbers.
        let v = match (ID_FIELDS.contains(&k.as_str()), v) {
            (true, Value::String(s)) => s
                .parse::<u64>()
                .map(Value::from)
                .unwrap_or_else(|_| v.clone()),
            _ => v.clone(),
        };
        match k.split_once('.') {
            Some((parent, leaf)) if !parent.is_empty() && !leaf.is_empty() => {
                let slot = out.entry(parent).or_insert_with(|| json!({}));
                if !slot.is_object() {
                    *slot = json!({});
                }
                if let Some(m) = slot.as_object_mut() {
                    // A nested key wins over the same key in a whole object given beside it.
                    m.insert(leaf.to_owned(), v);
                }
            }
            _ => match (out.get_mut(k), v) {
                // The whole object given beside dotted keys: the dotted keys win.
                (Some(Value::Object(have)), Value::Object(whole)) => {
                    for (wk, wv) in whole {
                        have.entry(wk).or_insert(wv);
                    }
                }
                (_, v) => {
                    out.insert(k.clone(), v);
                }
            },
        }
    }
    if !custom.is_empty() {
        out.insert("custom_fields".into(), Value::Array(custom));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_keep_zendesk_names_and_string_ids() {
        let v = json!({"id": 7, "url": "x", "name": "Ada Lovelace", "email": "ada@x.io", "role": "end-user",
            "organization_id": 42, "active": true, "updated_at": "2024-01-02T03:04:05Z"});
        let c = user(&v).unwrap().unwrap();
        assert_eq!(c.external_id, "7");
        assert_eq!(c.fields["organization_id"], json!("42"));
        assert_eq!(c.fields["name"], json!("Ada Lovelace"));
        assert!(!c.fields.contains_key("url"));
        assert!(!c.deleted);
        let agent = json!({"id": 8, "role": "agent", "updated_at": "2024-01-02T03:04:05Z"});
        assert!(user(&agent).unwrap().is_none(), "agents are not synced");
        let gone = json!({"id": 9, "role": "end-user", "active": false, "updated_at": "2024-01-02T03:04:05Z"});
        assert!(user(&gone).unwrap().unwrap().deleted);
    }

    #[test]
    fn tickets_carry_relations_and_solved_time() {
        let v = json!({"id": 1, "status": "hold", "priority": "high", "requester_id": 7, "organization_id": null,
            "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-02T00:00:00Z"});
        let c = ticket(&v, Some(&json!("2024-01-02T00:00:00Z"))).unwrap();
        assert_eq!(c.fields["requester_id"], json!("7"));
        assert_eq!(c.fields["organization_id"], Value::Null);
        assert_eq!(c.fields["solved_at"], json!("2024-01-02T00:00:00Z"));
        assert!(ticket(&json!({"id": 2}), None)
            .unwrap_err()
            .contains("updated_at"));
    }

    #[test]
    fn payloads_drop_computed_fields_and_restore_numeric_ids() {
        let f: BTreeMap<String, Value> = [
            ("id".to_string(), json!("5")),
            ("updated_at".to_string(), json!("2024-01-01T00:00:00Z")),
            ("organization_id".to_string(), json!("42")),
            ("name".to_string(), json!("Ada")),
        ]
        .into();
        let p = payload(&f);
        assert_eq!(
            Value::Object(p),
            json!({"organization_id": 42, "name": "Ada"})
        );
    }

    #[test]
    fn custom_fields_are_read_by_path_and_written_nested() {
        let v = json!({"id": 1, "status": "open", "updated_at": "2024-01-02T00:00:00Z",
            "custom_fields": [{"id": 360_012, "value": "gold"}, {"id": 360_013, "value": null}]});
        let c = ticket(&v, None).unwrap();
        assert_eq!(c.fields["custom_fields.360012"], json!("gold"));
        assert_eq!(c.fields["custom_fields.360013"], Value::Null);
        let f: BTreeMap<String, Value> = [
            ("custom_fields.360012".to_string(), json!("silver")),
            ("user_fields.plan".to_string(), json!("pro")),
            (
                "user_fields".to_string(),
                json!({"plan": "free", "vip": true}),
            ),
            ("comment.body".to_string(), json!("hello")),
        ]
        .into();
        assert_eq!(
            Value::Object(payload(&f)),
            json!({"custom_fields": [{"id": 360_012, "value": "silver"}],
                "user_fields": {"plan": "pro", "vip": true}, "comment": {"body": "hello"}})
        );
    }
}
