//! Salesforce records <-> `Change`s and push bodies, the SOQL the connector emits, and the
//! (SystemModstamp, Id) cursor.
//!
//! Field names stay Salesforce's own: the YAML mapping turns them into canonical fields.
// Every number here comes from the API: arithmetic on it must be checked (issue 25).
#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use revsync_sdk::Change;
use serde_json::{Map, Value};

/// Objects this connector reads and writes.
pub const OBJECTS: &[&str] = &["Lead", "Contact", "Account", "Opportunity"];

/// Always selected: identity, the cursor and deletions.
const SYSTEM_FIELDS: &[&str] = &["Id", "SystemModstamp", "IsDeleted"];

/// Fields Salesforce computes; sending them in a write fails the item
/// (INVALID_FIELD_FOR_INSERT_UPDATE), so they are read-only here whatever the mapping says.
const READ_ONLY: &[&str] = &[
    "Id",
    "SystemModstamp",
    "IsDeleted",
    "CreatedDate",
    "LastModifiedDate",
    "CreatedById",
    "LastModifiedById",
    "IsClosed",
    "IsWon",
    "ForecastCategory",
    "IsConverted",
    "ConvertedContactId",
    "ConvertedAccountId",
    "ConvertedOpportunityId",
    "ConvertedDate",
];

/// The default selection per object: what MODEL.md's default mappings and the relations
/// (AccountId, ContactId, conversion) need.
pub fn default_fields(object: &str, multi_currency: bool) -> Vec<&'static str> {
    let mut f: Vec<&'static str> = match object {
        "Lead" => vec![
            "FirstName",
            "LastName",
            "Email",
            "Phone",
            "Title",
            "Company",
            "Status",
            "LeadSource",
            "Country",
            "City",
            "OwnerId",
            // A converted Lead names its Contact: the engine keeps one person (xref).
            "IsConverted",
            "ConvertedContactId",
            "ConvertedAccountId",
        ],
        "Contact" => vec![
            "FirstName",
            "LastName",
            "Email",
            "Phone",
            "Title",
            "AccountId",
            "LeadSource",
            "MailingCountry",
            "MailingCity",
            "OwnerId",
        ],
        "Account" => vec![
            "Name",
            "Website",
            "Industry",
            "NumberOfEmployees",
            "AnnualRevenue",
            "BillingCountry",
            "BillingCity",
            "ParentId",
            "OwnerId",
        ],
        "Opportunity" => vec![
            "Name",
            "StageName",
            "Amount",
            "Probability",
            "CloseDate",
            "IsClosed",
            "IsWon",
            "ForecastCategory",
            // The writable twin, with the labels the default value map knows.
            "ForecastCategoryName",
            "Type",
            "AccountId",
            "ContactId",
            "OwnerId",
            "CreatedDate",
        ],
        _ => Vec::new(),
    };
    if object == "Opportunity" && multi_currency {
        f.push("CurrencyIsoCode");
    }
    f
}

/// Letters, digits and underscores, starting with a letter (`Revsync_Id__c`).
pub fn is_field_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Where an incremental read resumes: after the last record read, in (SystemModstamp, Id)
/// order, so records sharing a timestamp across a page boundary are never skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub stamp: DateTime<Utc>,
    pub id: String,
}

/// Lower than any record id: a cursor at (t, LOWEST_ID) reads every record of second t.
pub const LOWEST_ID: &str = "000000000000000";

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}|{}", soql_datetime(self.stamp), self.id)
    }

    pub fn decode(s: &str) -> Result<Self, String> {
        let (ts, id) = s
            .split_once('|')
            .ok_or_else(|| format!("cursor `{s}` is not `<SystemModstamp>|<Id>`"))?;
        if !is_id(id) {
            return Err(format!("cursor `{s}` has no record id"));
        }
        Ok(Cursor {
            stamp: parse_datetime(ts).ok_or_else(|| format!("cursor `{s}` has a bad timestamp"))?,
            id: id.to_owned(),
        })
    }
}

/// Where an incremental read stands, as stored with each page.
///
/// Stamps are whole seconds and a long transaction commits with the time it started, so
/// the newest seconds cannot be trusted complete when first read. Rather than read them
/// again into the engine on every poll (quota, and engine work for nothing: issue 17),
/// the read keeps what it already handed out there and drops those records when they come
/// back unchanged; once the server's clock is `overlap_secs` (+1 s for truncation) past a
/// record, no commit can still land before it, and the read moves past it for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadState {
    /// Every record at or before this position was read, and none can still appear there.
    pub settled: Cursor,
    /// How far a pass of full pages has read past `settled`; `None` between passes.
    pub scan: Option<Cursor>,
    /// Records past `settled` already handed out: id -> (stamp secs, fingerprint).
    pub seen: BTreeMap<String, (i64, u64)>,
    /// Reading from the beginning (a first sync or a resync) and not caught up yet: each
    /// Opportunity read comes with its past (`history.rs`, issue 20).
    pub backfill: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ReadStateText {
    settled: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scan: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    seen: BTreeMap<String, (i64, u64)>,
    #[serde(default, skip_serializing_if = "is_false")]
    backfill: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

impl ReadState {
    pub fn at(settled: Cursor) -> Self {
        Self {
            settled,
            scan: None,
            seen: BTreeMap::new(),
            backfill: false,
        }
    }

    /// Where the next query starts (strictly after).
    pub fn from(&self) -> &Cursor {
        self.scan.as_ref().unwrap_or(&self.settled)
    }

    pub fn encode(&self) -> Result<String, revsync_sdk::ConnectorError> {
        revsync_sdk::cursor_text(&ReadStateText {
            settled: self.settled.encode(),
            scan: self.scan.as_ref().map(Cursor::encode),
            seen: self.seen.clone(),
            backfill: self.backfill,
        })
    }

    /// A stored cursor; the plain `<SystemModstamp>|<Id>` of earlier versions is a
    /// settled position with nothing seen past it (its window is handed out once more).
    pub fn decode(s: &str) -> Result<Self, String> {
        if !s.starts_with('{') {
            return Cursor::decode(s).map(Self::at);
        }
        let t: ReadStateText = serde_json::from_str(s)
            .map_err(|e| format!("cursor `{s}` is not a read state: {e}"))?;
        if let Some(bad) = t.seen.keys().find(|id| !is_id(id)) {
            return Err(format!("cursor names `{bad}`, not a record id"));
        }
        Ok(Self {
            settled: Cursor::decode(&t.settled)?,
            scan: t.scan.as_deref().map(Cursor::decode).transpose()?,
            seen: t.seen,
            backfill: t.backfill,
        })
    }

    /// Take one read's records (in query order, from [`ReadState::from`]): the changes not
    /// handed out before, and the state after them. `full`: the page hit its limit.
    /// `horizon`: the server time of the read minus the overlap; records stamped before
    /// it are complete.
    pub fn advance(
        mut self,
        read: Vec<(Change, Cursor)>,
        full: bool,
        horizon: DateTime<Utc>,
    ) -> (Vec<Change>, Self) {
        // Only a pass that starts at `settled` can move it: one resumed from `scan` has
        // records behind it that may not be complete yet.
        let mut settling = self.scan.is_none();
        let mut last = self.from().clone();
        let mut fresh = Vec::new();
        for (change, at) in read {
            if settling && at.stamp < horizon {
                self.settled = at.clone();
            } else {
                settling = false;
            }
            let mark = (at.stamp.timestamp(), fingerprint(&change));
            last = at;
            if self.seen.get(&change.external_id) == Some(&mark) {
                continue;
            }
            self.seen.insert(change.external_id.clone(), mark);
            fresh.push(change);
        }
        let settled = &self.settled;
        self.seen.retain(|id, (secs, _)| {
            (*secs, id.as_str()) > (settled.stamp.timestamp(), settled.id.as_str())
        });
        self.scan = (full && last != self.settled).then_some(last);
        (fresh, self)
    }
}

/// What a record said (its fields), stable across runs.
fn fingerprint(change: &Change) -> u64 {
    revsync_sdk::fingerprint(&change.fields)
}

/// Salesforce ids are 15 or 18 letters and digits; anything else never enters a query.
pub fn is_id(s: &str) -> bool {
    (s.len() == 15 || s.len() == 18) && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// A SOQL datetime literal (unquoted, UTC, whole seconds: the documented form).
/// Truncating a sub-second stamp only makes `>` re-read a few records, never skip one.
pub fn soql_datetime(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Salesforce datetimes: `2024-01-01T00:00:00.000+0000`, or RFC 3339.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })
}

fn select(object: &str, fields: &[String]) -> String {
    let mut all: Vec<&str> = SYSTEM_FIELDS.to_vec();
    for f in fields {
        if !all.contains(&f.as_str()) {
            all.push(f);
        }
    }
    format!("SELECT {} FROM {object}", all.join(", "))
}

/// The page after `cursor`, oldest first.
pub fn incremental_soql(
    object: &str,
    fields: &[String],
    cursor: Option<&Cursor>,
    limit: u32,
) -> String {
    let mut q = select(object, fields);
    if let Some(c) = cursor {
        let ts = soql_datetime(c.stamp);
        q.push_str(&format!(
            " WHERE SystemModstamp > {ts} OR (SystemModstamp = {ts} AND Id > '{}')",
            c.id
        ));
    }
    q.push_str(&format!(" ORDER BY SystemModstamp, Id LIMIT {limit}"));
    q
}

/// These records, by id (ids are checked by the caller: they never carry quotes).
pub fn by_ids_soql(object: &str, fields: &[String], ids: &[String]) -> String {
    let list: Vec<String> = ids.iter().map(|i| format!("'{i}'")).collect();
    format!(
        "{} WHERE Id IN ({})",
        select(object, fields),
        list.join(", ")
    )
}

/// A record of a query result as a `Change`; `Err` names what was wrong with it.
pub fn to_change(object: &str, record: &Value) -> Result<(Change, Cursor), String> {
    let obj = record
        .as_object()
        .ok_or_else(|| format!("{object} record is not an object"))?;
    let id = obj
        .get("Id")
        .and_then(Value::as_str)
        .filter(|i| is_id(i))
        .ok_or_else(|| format!("{object} record without a valid Id"))?;
    let stamp = obj
        .get("SystemModstamp")
        .and_then(Value::as_str)
        .and_then(parse_datetime)
        .ok_or_else(|| format!("{object} {id}: missing or bad SystemModstamp"))?;
    let fields: BTreeMap<String, Value> = obj
        .iter()
        .filter(|(k, _)| k.as_str() != "attributes")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let deleted = obj.get("IsDeleted").and_then(Value::as_bool) == Some(true);
    Ok((
        Change {
            object: object.to_owned(),
            external_id: id.to_owned(),
            source_updated_at: stamp,
            fields,
            deleted,
            canonical_id: None,
        },
        Cursor {
            stamp,
            id: id.to_owned(),
        },
    ))
}

/// A record body for a collection write: the item's writable fields under `attributes`.
pub fn to_record(object: &str, fields: &BTreeMap<String, Value>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("attributes".into(), serde_json::json!({ "type": object }));
    for (k, v) in fields {
        if !READ_ONLY.contains(&k.as_str()) && k != "attributes" {
            m.insert(k.clone(), v.clone());
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_cursor_query_breaks_ties_on_id() {
        let c = Cursor {
            stamp: parse_datetime("2024-03-01T10:00:00.000+0000").unwrap(),
            id: "003000000000001AAA".into(),
        };
        let q = incremental_soql("Contact", &["Email".into()], Some(&c), 200);
        assert_eq!(
            q,
            "SELECT Id, SystemModstamp, IsDeleted, Email FROM Contact WHERE SystemModstamp > 2024-03-01T10:00:00Z OR (SystemModstamp = 2024-03-01T10:00:00Z AND Id > '003000000000001AAA') ORDER BY SystemModstamp, Id LIMIT 200"
        );
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert!(Cursor::decode("2024-01-01T00:00:00Z|x' OR Id != '").is_err());
    }

    #[test]
    fn records_become_changes_and_deletions_are_kept() {
        let r = json!({"attributes": {"type": "Contact"}, "Id": "003000000000001AAA",
            "SystemModstamp": "2024-03-01T10:00:00.000+0000", "IsDeleted": true, "Email": "a@b.co",
            "AccountId": "001000000000001AAA"});
        let (ch, cur) = to_change("Contact", &r).unwrap();
        assert!(ch.deleted);
        assert_eq!(ch.fields["AccountId"], "001000000000001AAA");
        assert!(!ch.fields.contains_key("attributes"));
        assert_eq!(cur.id, "003000000000001AAA");
        let bad = json!({"Id": "003000000000001AAA"});
        assert!(to_change("Contact", &bad)
            .unwrap_err()
            .contains("SystemModstamp"));
    }

    #[test]
    fn a_read_settles_only_what_is_older_than_the_horizon() {
        let t = |s: &str| parse_datetime(s).unwrap();
        let rec = |id: &str, stamp: &str| {
            let r = json!({"Id": id, "SystemModstamp": stamp, "Email": "a@b.co"});
            to_change("Contact", &r).unwrap()
        };
        let read = || {
            vec![
                rec("003000000000001AAA", "2024-03-01T10:00:00.000+0000"),
                rec("003000000000002AAA", "2024-03-01T10:01:00.000+0000"),
            ]
        };
        let start = ReadState::decode("2024-03-01T09:00:00Z|000000000000000").unwrap();
        let (fresh, st) = start.advance(read(), false, t("2024-03-01T10:00:30Z"));
        assert_eq!(fresh.len(), 2);
        assert_eq!(st.settled.id, "003000000000001AAA");
        assert_eq!(st.seen.keys().collect::<Vec<_>>(), ["003000000000002AAA"]);
        let st = ReadState::decode(&st.encode().unwrap()).unwrap();
        // Read again from `settled`: the unchanged record is not handed out again; once
        // the horizon passes it, the read moves past it and forgets it.
        let (fresh, st) = st.advance(read()[1..].to_vec(), false, t("2024-03-01T10:00:30Z"));
        assert!(fresh.is_empty());
        let (fresh, st) = st.advance(read()[1..].to_vec(), false, t("2024-03-01T10:05:00Z"));
        assert!(fresh.is_empty());
        assert_eq!(st.settled.id, "003000000000002AAA");
        assert!(st.seen.is_empty() && st.scan.is_none());
        assert!(ReadState::decode(
            r#"{"settled":"2024-03-01T09:00:00Z|000000000000000","seen":{"x' OR":[0,0]}}"#
        )
        .is_err());
    }

    #[test]
    fn writes_drop_fields_salesforce_computes() {
        let f: BTreeMap<String, Value> = [
            ("StageName".to_owned(), json!("Closed Won")),
            ("IsWon".to_owned(), json!(true)),
            ("Id".to_owned(), json!("006000000000001AAA")),
        ]
        .into_iter()
        .collect();
        let r = to_record("Opportunity", &f);
        assert_eq!(r["attributes"]["type"], "Opportunity");
        assert!(r.contains_key("StageName"));
        assert!(!r.contains_key("IsWon") && !r.contains_key("Id"));
    }
}
