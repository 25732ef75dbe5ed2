//! `OpportunityHistory` as Salesforce keeps it (issue 20): a row when an Opportunity is
//! created and one each time its StageName, Amount or CloseDate changes, carrying those
//! fields as they then stood, dated `CreatedDate`. Read-only: SOQL reads it, no write
//! route takes it, as the real object supports only query, retrieve and describe.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::{SimRecord, SimState};

pub(super) const OBJECT: &str = "OpportunityHistory";

/// The fields an `OpportunityHistory` row has (Salesforce's object reference).
const FIELDS: &[&str] = &[
    "Id",
    "IsDeleted",
    "OpportunityId",
    "CreatedById",
    "CreatedDate",
    "SystemModstamp",
    "StageName",
    "Amount",
    "ExpectedRevenue",
    "CloseDate",
    "Probability",
    "ForecastCategory",
    "PrevAmount",
    "PrevCloseDate",
];

/// What a change of one of these makes a row of.
const TRACKED: &[&str] = &["StageName", "Amount", "CloseDate"];

/// The field `name` names on `OpportunityHistory` (names ignore case).
pub(super) fn field_name(name: &str) -> Option<&'static str> {
    FIELDS
        .iter()
        .copied()
        .find(|f| f.eq_ignore_ascii_case(name))
}

/// Whether a write that set `changed` (the Opportunity's fields before it, `before`) makes
/// a row: on create (no `before`), or when a tracked field took another value.
pub(super) fn makes_row(before: Option<&Map<String, Value>>, changed: &Map<String, Value>) -> bool {
    let Some(before) = before else { return true };
    TRACKED.iter().any(|f| {
        changed
            .get(*f)
            .is_some_and(|v| before.get(*f).unwrap_or(&Value::Null) != v)
    })
}

impl SimState {
    /// A history row of Opportunity `opp` as it stands now, at `at`; `before` its fields
    /// before the write (the `Prev*` values), none on create.
    pub(super) fn record_history(
        &mut self,
        opp: &str,
        before: Option<&Map<String, Value>>,
        at: DateTime<Utc>,
    ) {
        let Some(now) = self.records.get(opp).map(|r| r.fields.clone()) else {
            return;
        };
        let get = |m: &Map<String, Value>, f: &str| m.get(f).cloned().unwrap_or(Value::Null);
        let mut fields = Map::new();
        fields.insert("OpportunityId".into(), json!(opp));
        fields.insert("CreatedDate".into(), json!(super::sf_datetime(at)));
        for f in ["StageName", "Amount", "CloseDate", "Probability"] {
            fields.insert(f.into(), get(&now, f));
        }
        if let Some(b) = before {
            fields.insert("PrevAmount".into(), get(b, "Amount"));
            fields.insert("PrevCloseDate".into(), get(b, "CloseDate"));
        }
        let id = self.new_id(OBJECT);
        self.records.insert(
            id.clone(),
            SimRecord {
                id,
                object: OBJECT.to_owned(),
                stamp: at,
                deleted: false,
                fields,
            },
        );
    }
}
