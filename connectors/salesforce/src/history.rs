//! An Opportunity's past as Salesforce itself dates it (issue 20): read when the connector
//! reads from the beginning (a first sync or a resync, until the read catches up), so the
//! KPIs of months before the first sync are known.
//!
//! Salesforce writes an `OpportunityHistory` row when an Opportunity is created and each
//! time its StageName, Amount or CloseDate changes, holding those fields as they then
//! stood, dated `CreatedDate`. Each row before the Opportunity's current `SystemModstamp`
//! is a past state: the record as read now, with those three as the row says. Fields the
//! row does not keep (the name, the owner) carry today's value: nothing better is known.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use revsync_sdk::Change;
use serde_json::Value;

use crate::mapping::parse_datetime;

/// The fields a row says of the Opportunity.
const KEPT: &[&str] = &["StageName", "Amount", "CloseDate"];

/// The history rows of `ids` (at most [`crate::BATCH_SIZE`], so the query stays well
/// inside a GET URL), oldest first; `Id` breaks ties of one second.
pub fn soql(ids: &[String]) -> String {
    let list: Vec<String> = ids.iter().map(|i| format!("'{i}'")).collect();
    format!(
        "SELECT OpportunityId, StageName, Amount, CloseDate, CreatedDate FROM OpportunityHistory WHERE OpportunityId IN ({}) ORDER BY CreatedDate, Id",
        list.join(", ")
    )
}

/// Rows by Opportunity id, each `(CreatedDate, row)`, in the order read. A row without an
/// Opportunity or a readable date says nothing.
pub fn by_opportunity(rows: Vec<Value>) -> BTreeMap<String, Vec<(DateTime<Utc>, Value)>> {
    let mut out: BTreeMap<String, Vec<(DateTime<Utc>, Value)>> = BTreeMap::new();
    for row in rows {
        let (Some(opp), Some(at)) = (
            row.get("OpportunityId").and_then(Value::as_str),
            row.get("CreatedDate")
                .and_then(Value::as_str)
                .and_then(parse_datetime),
        ) else {
            continue;
        };
        out.entry(opp.to_owned()).or_default().push((at, row));
    }
    out
}

/// The past states of the Opportunity whose current state is `current`, oldest first,
/// each dated when it began, from its history `rows` (oldest first).
pub fn past_changes(current: &Change, rows: &[(DateTime<Utc>, Value)]) -> Vec<Change> {
    if current.deleted {
        return Vec::new();
    }
    let mut out: Vec<Change> = Vec::new();
    let mut last: Option<Vec<Value>> = None;
    for (i, (at, row)) in rows.iter().enumerate() {
        // The current change says its own instant and what came after it.
        if *at >= current.source_updated_at {
            break;
        }
        // Rows of one second: the last one is what held at its end.
        if rows.get(i + 1).is_some_and(|(next, _)| next == at) {
            continue;
        }
        let state: Vec<Value> = KEPT
            .iter()
            .map(|f| row.get(*f).cloned().unwrap_or(Value::Null))
            .collect();
        if last.as_ref() == Some(&state) {
            continue;
        }
        let then = KEPT.iter().copied().zip(state.iter().cloned());
        out.push(current.as_of(*at, then, &["SystemModstamp", "LastModifiedDate"]));
        last = Some(state);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::to_change;
    use serde_json::json;

    fn current() -> Change {
        let rec = json!({"attributes": {"type": "Opportunity"}, "Id": "006000000000001AAA",
            "SystemModstamp": "2024-03-12T08:00:00.000+0000", "IsDeleted": false,
            "Name": "Acme", "StageName": "Closed Won", "Amount": 1500.0, "CloseDate": "2024-03-10"});
        to_change("Opportunity", &rec).unwrap().0
    }

    fn row(at: &str, stage: &str, amount: f64, close: &str) -> Value {
        json!({"OpportunityId": "006000000000001AAA", "CreatedDate": at, "StageName": stage,
            "Amount": amount, "CloseDate": close})
    }

    #[test]
    fn each_row_before_the_current_state_is_a_past_state() {
        let rows = by_opportunity(vec![
            row(
                "2024-01-05T09:00:00.000+0000",
                "Prospecting",
                1000.0,
                "2024-04-30",
            ),
            row(
                "2024-02-01T10:00:00.000+0000",
                "Qualification",
                1000.0,
                "2024-04-30",
            ),
            // Two rows in one second: the later holds.
            row(
                "2024-02-01T10:00:00.000+0000",
                "Qualification",
                1500.0,
                "2024-04-30",
            ),
            // Nothing kept changed (a Probability edit): no new state.
            row(
                "2024-02-20T10:00:00.000+0000",
                "Qualification",
                1500.0,
                "2024-04-30",
            ),
            row(
                "2024-03-10T15:00:00.000+0000",
                "Closed Won",
                1500.0,
                "2024-03-10",
            ),
            // At or after the current state's time: the current change says it.
            row(
                "2024-03-12T08:00:00.000+0000",
                "Closed Won",
                1500.0,
                "2024-03-10",
            ),
        ]);
        let past = past_changes(&current(), &rows["006000000000001AAA"]);
        let seen: Vec<(String, &Value, &Value, &Value)> = past
            .iter()
            .map(|c| {
                (
                    c.source_updated_at.to_rfc3339(),
                    &c.fields["StageName"],
                    &c.fields["Amount"],
                    &c.fields["CloseDate"],
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                (
                    "2024-01-05T09:00:00+00:00".to_owned(),
                    &json!("Prospecting"),
                    &json!(1000.0),
                    &json!("2024-04-30")
                ),
                (
                    "2024-02-01T10:00:00+00:00".to_owned(),
                    &json!("Qualification"),
                    &json!(1500.0),
                    &json!("2024-04-30")
                ),
                (
                    "2024-03-10T15:00:00+00:00".to_owned(),
                    &json!("Closed Won"),
                    &json!(1500.0),
                    &json!("2024-03-10")
                ),
            ]
        );
        assert_eq!(past[0].fields["Name"], json!("Acme"));
        assert_eq!(
            past[0].fields["SystemModstamp"],
            json!("2024-01-05T09:00:00.000Z")
        );
    }

    #[test]
    fn a_deleted_opportunity_or_unreadable_rows_say_nothing() {
        let mut c = current();
        let rows = by_opportunity(vec![
            json!({"OpportunityId": "006000000000001AAA", "CreatedDate": "soon", "StageName": "X"}),
        ]);
        assert!(rows.is_empty());
        let rows = by_opportunity(vec![row(
            "2024-01-05T09:00:00.000+0000",
            "Prospecting",
            1.0,
            "2024-04-30",
        )]);
        c.deleted = true;
        assert!(past_changes(&c, &rows["006000000000001AAA"]).is_empty());
    }

    #[test]
    fn the_query_names_the_ids_and_orders_by_time() {
        let q = soql(&["006000000000001AAA".into(), "006000000000002AAA".into()]);
        assert_eq!(
            q,
            "SELECT OpportunityId, StageName, Amount, CloseDate, CreatedDate FROM OpportunityHistory WHERE OpportunityId IN ('006000000000001AAA', '006000000000002AAA') ORDER BY CreatedDate, Id"
        );
    }
}
