//! `propertiesWithHistory` as HubSpot serves it (issue 20): each asked property's values,
//! newest first, each with the time it was set, on list pages and batch reads.

use chrono::{TimeZone, Utc};
use serde_json::{json, Map, Value};

use super::{put, Rec, St};
use crate::mapping::format_time;

/// Most records a list page holds when history is asked: the figure the client knows.
pub(super) use crate::client::LIST_LIMIT_WITH_HISTORY;

impl St {
    /// Adds `propertiesWithHistory` to `o` for the asked properties the portal defines and
    /// the record has held; nothing when none is asked.
    pub(super) fn put_history(&self, object: &str, rec: &Rec, asked: &[String], o: &mut Value) {
        if asked.is_empty() {
            return;
        }
        let mut by_prop = Map::new();
        for prop in asked {
            if self.definition(object, prop).is_none() {
                continue;
            }
            let Some(versions) = rec.history.get(prop) else {
                continue;
            };
            let newest_first: Vec<Value> = versions
                .iter()
                .rev()
                .map(|(ms, value)| {
                    let at = Utc
                        .timestamp_millis_opt(*ms)
                        .single()
                        .unwrap_or_else(Utc::now);
                    json!({"value": value, "timestamp": format_time(at), "sourceType": "API"})
                })
                .collect();
            by_prop.insert(prop.clone(), Value::Array(newest_first));
        }
        put(o, "propertiesWithHistory", Value::Object(by_prop));
    }
}
