//! A deal's past as HubSpot itself dates it (issue 20): read when the connector reads
//! records from the beginning (the list walk of a first sync or a resync), so the KPIs of
//! months before the first sync are known.
//!
//! The list asks `propertiesWithHistory` for the object's history properties (deals: stage,
//! amount, close date); each version carries the time it was set. Every instant one of
//! them changed, and the record's `createdate`, before the current modification time is a
//! past state: the record as read now, with each history property as it stood then.
//! Properties without history (the name, the owner) keep today's value: nothing better is
//! known of their past.
// Every number here comes from the API: arithmetic on it must be checked (issue 25).
#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use revsync_sdk::Change;
use serde_json::Value;

use crate::mapping::{created_at, parse_time, ObjectSpec};

/// One value a property held from `at`.
struct Version<'a> {
    at: DateTime<Utc>,
    prop: &'a str,
    value: Value,
}

/// The versions of `spec.history` in `obj.propertiesWithHistory`, oldest first. A version
/// without a readable timestamp says nothing.
fn versions<'a>(spec: &'a ObjectSpec, obj: &Value) -> Vec<Version<'a>> {
    let mut out = Vec::new();
    let Some(history) = obj.get("propertiesWithHistory").and_then(Value::as_object) else {
        return out;
    };
    for prop in spec.history {
        let Some(list) = history.get(*prop).and_then(Value::as_array) else {
            continue;
        };
        for v in list {
            let Some(at) = v
                .get("timestamp")
                .and_then(Value::as_str)
                .and_then(parse_time)
            else {
                continue;
            };
            // As a current value: empty text is no value.
            let value = match v.get("value") {
                None | Some(Value::Null) => Value::Null,
                Some(Value::String(s)) if s.is_empty() => Value::Null,
                Some(other) => other.clone(),
            };
            out.push(Version { at, prop, value });
        }
    }
    // Listed newest first; a stable sort keeps that order among equal times, so the
    // reversal makes the one listed first (the newest) win below.
    out.reverse();
    out.sort_by_key(|v| v.at);
    out
}

/// The past states of the record `obj`, whose current state is `current`, oldest first,
/// each dated when it began; none when the read carried no history.
pub fn past_changes(spec: &ObjectSpec, obj: &Value, current: &Change) -> Vec<Change> {
    if spec.history.is_empty() {
        return Vec::new();
    }
    let versions = versions(spec, obj);
    if versions.is_empty() {
        return Vec::new();
    }
    let now = current.source_updated_at;
    let created = created_at(obj);
    let mut instants: BTreeSet<DateTime<Utc>> = versions.iter().map(|v| v.at).collect();
    instants.extend(created);
    // Nothing before the record existed; the current change itself says its own instant.
    instants.retain(|t| *t < now && created.is_none_or(|c| *t >= c));
    let mut out: Vec<Change> = Vec::new();
    let mut last: Option<Vec<Value>> = None;
    for t in instants {
        let state: Vec<Value> = spec
            .history
            .iter()
            .map(|p| {
                versions
                    .iter()
                    .rev()
                    .find(|v| v.prop == *p && v.at <= t)
                    .map_or(Value::Null, |v| v.value.clone())
            })
            .collect();
        if last.as_ref() == Some(&state) {
            continue;
        }
        let then = spec.history.iter().copied().zip(state.iter().cloned());
        out.push(current.as_of(t, then, &[spec.modified]));
        last = Some(state);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::{format_time, to_change, CONTACTS, DEALS};
    use serde_json::json;

    fn deal() -> Value {
        json!({
            "id": "7",
            "properties": {"dealname": "Big", "dealstage": "closedwon", "amount": "1500",
                "closedate": "2024-03-10T00:00:00.000Z", "createdate": "2024-01-05T00:00:00.000Z",
                "hs_lastmodifieddate": "2024-03-12T00:00:00.000Z"},
            "createdAt": "2024-01-05T00:00:00.000Z", "updatedAt": "2024-03-12T00:00:00.000Z",
            "archived": false,
            "propertiesWithHistory": {
                "dealstage": [
                    {"value": "closedwon", "timestamp": "2024-03-10T00:00:00.000Z", "sourceType": "CRM_UI"},
                    {"value": "qualifiedtobuy", "timestamp": "2024-02-01T00:00:00.000Z", "sourceType": "CRM_UI"},
                    {"value": "appointmentscheduled", "timestamp": "2024-01-05T00:00:00.000Z", "sourceType": "API"}
                ],
                "amount": [
                    {"value": "1500", "timestamp": "2024-02-01T00:00:00.000Z", "sourceType": "CRM_UI"},
                    {"value": "1000", "timestamp": "2024-01-05T00:00:00.000Z", "sourceType": "API"}
                ],
                "closedate": [
                    {"value": "2024-03-10T00:00:00.000Z", "timestamp": "2024-03-10T00:00:00.000Z", "sourceType": "CALCULATED"}
                ]
            }
        })
    }

    #[test]
    fn each_instant_a_history_property_changed_is_a_past_state() {
        let obj = deal();
        let current = to_change(&DEALS, &obj, None).unwrap();
        let past = past_changes(&DEALS, &obj, &current);
        let seen: Vec<(String, &Value, &Value, &Value)> = past
            .iter()
            .map(|c| {
                (
                    format_time(c.source_updated_at),
                    &c.fields["dealstage"],
                    &c.fields["amount"],
                    &c.fields["closedate"],
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                (
                    "2024-01-05T00:00:00.000Z".to_owned(),
                    &json!("appointmentscheduled"),
                    &json!("1000"),
                    &Value::Null
                ),
                (
                    "2024-02-01T00:00:00.000Z".to_owned(),
                    &json!("qualifiedtobuy"),
                    &json!("1500"),
                    &Value::Null
                ),
                (
                    "2024-03-10T00:00:00.000Z".to_owned(),
                    &json!("closedwon"),
                    &json!("1500"),
                    &json!("2024-03-10T00:00:00.000Z")
                ),
            ]
        );
        // Today's values of what has no history, and the time the state began.
        assert_eq!(past[0].fields["dealname"], json!("Big"));
        assert_eq!(
            past[1].fields["hs_lastmodifieddate"],
            json!("2024-02-01T00:00:00.000Z")
        );
        assert_eq!(past[0].external_id, "7");
    }

    #[test]
    fn no_history_asked_or_carried_says_nothing() {
        let mut obj = deal();
        let current = to_change(&DEALS, &obj, None).unwrap();
        assert!(past_changes(&CONTACTS, &obj, &current).is_empty());
        obj.as_object_mut().unwrap().remove("propertiesWithHistory");
        assert!(past_changes(&DEALS, &obj, &current).is_empty());
    }

    #[test]
    fn versions_at_or_after_the_current_time_or_unreadable_are_left_out() {
        let mut obj = deal();
        obj["propertiesWithHistory"]["dealstage"][0]["timestamp"] =
            json!("2024-03-12T00:00:00.000Z");
        obj["propertiesWithHistory"]["amount"][0]["timestamp"] = json!("soon");
        let current = to_change(&DEALS, &obj, None).unwrap();
        let past = past_changes(&DEALS, &obj, &current);
        assert_eq!(past.len(), 3, "{past:#?}");
        let last = past.last().unwrap();
        assert_eq!(last.fields["dealstage"], json!("qualifiedtobuy"));
        assert_eq!(last.fields["amount"], json!("1000"));
        assert!(past
            .iter()
            .all(|c| c.source_updated_at < current.source_updated_at));
    }
}
