//! The canonical model: kinds, typed field values with provenance, records and changes.
//!
//! This is revsync's own vocabulary (MODEL.md). Connectors translate their systems'
//! shapes into [`Change`]s; the engine reconciles them into [`Record`]s.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A kind of canonical record. Each connector object maps onto exactly one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Person,
    Organization,
    Deal,
    Ticket,
    Subscription,
    Invoice,
    Activity,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Person,
        Kind::Organization,
        Kind::Deal,
        Kind::Ticket,
        Kind::Subscription,
        Kind::Invoice,
        Kind::Activity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Person => "person",
            Kind::Organization => "organization",
            Kind::Deal => "deal",
            Kind::Ticket => "ticket",
            Kind::Subscription => "subscription",
            Kind::Invoice => "invoice",
            Kind::Activity => "activity",
        }
    }

    /// The well-known fields of this kind.
    pub fn fields(self) -> &'static [FieldDef] {
        crate::schema::fields(self)
    }

    /// A well-known field of this kind, by canonical name.
    pub fn field(self, name: &str) -> Option<&'static FieldDef> {
        self.fields().iter().find(|f| f.name == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let valid: Vec<_> = Kind::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown kind `{s}`, expected one of: {}", valid.join(", "))
            })
    }
}

/// The type of a well-known canonical field; drives parsing and normalization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Text,
    /// Trimmed, lowercased; an invalid address is kept and flagged, never dropped.
    Email,
    /// E.164 where parseable; the raw form is kept beside it.
    Phone,
    /// A bare host name (`acme.com`), derived from URLs and company emails too.
    Domain,
    Url,
    /// ISO 3166-1 alpha-2.
    Country,
    /// One of a fixed set of lowercase snake_case values.
    Enum(&'static [&'static str]),
    Int,
    /// 0 to 100.
    Percent,
    /// Integer minor units plus ISO 4217 currency; never a float.
    Money,
    Date,
    Time,
    Bool,
    /// A canonical record of the given kind (`None`: person or organization).
    Relation(Option<Kind>),
    TextList,
    /// Free-form structured data (activity properties), passed through.
    Json,
}

/// A documented canonical field.
#[derive(Debug, Clone, Copy)]
pub struct FieldDef {
    pub name: &'static str,
    pub ty: FieldType,
    pub doc: &'static str,
}

/// A canonical field value. Money is integer minor units: floats never hold money.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Text(String),
    Money {
        amount_minor: i64,
        currency: String,
    },
    Date(NaiveDate),
    /// Microseconds since the epoch, UTC.
    Time(i64),
    /// A canonical record.
    Ref(Uuid),
    /// A record known only by its id in one system, until that record is seen.
    ExtRef {
        connector: String,
        object: String,
        id: String,
    },
    List(Vec<Value>),
    /// Structured passthrough (custom fields, activity properties), as JSON text.
    Json(String),
}

impl Value {
    /// Empty values never overwrite non-empty ones unless a field's policy allows it.
    pub fn is_empty(&self) -> bool {
        match self {
            Value::Null => true,
            Value::Text(s) | Value::Json(s) => s.is_empty(),
            Value::List(l) => l.is_empty(),
            _ => false,
        }
    }

    pub fn time(t: DateTime<Utc>) -> Value {
        Value::Time(t.timestamp_micros())
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The value as JSON for display and APIs (money as an object, times as RFC 3339).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => json!(b),
            Value::Int(i) => json!(i),
            Value::Text(s) => json!(s),
            Value::Money {
                amount_minor,
                currency,
            } => json!({ "amount_minor": amount_minor, "currency": currency }),
            Value::Date(d) => json!(d.to_string()),
            Value::Time(us) => {
                json!(micros_to_time(*us)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)))
            }
            Value::Ref(id) => json!({ "ref": id }),
            Value::ExtRef {
                connector,
                object,
                id,
            } => json!({ "ext_ref": format!("{connector}:{object}:{id}") }),
            Value::List(items) => {
                serde_json::Value::Array(items.iter().map(Value::to_json).collect())
            }
            Value::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| json!(s)),
        }
    }
}

pub fn micros_to_time(us: i64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_micros(us)
}

/// Where a field's current value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    pub connector: String,
    /// When the source system says the value changed (microseconds, UTC).
    pub source_ts: i64,
    /// When revsync saw it (microseconds, UTC).
    pub observed_ts: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldEntry {
    pub value: Value,
    pub from: Provenance,
}

/// One system's copy of a record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Link {
    pub connector: String,
    pub object: String,
    pub external_id: String,
    /// Newest source timestamp seen through this link: older events never regress it.
    pub source_ts: i64,
}

/// A canonical record: one person, company, deal... however many systems hold a copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// UUIDv7: ordered by creation, so "the older id survives a merge" is a comparison.
    pub id: Uuid,
    pub kind: Kind,
    pub fields: BTreeMap<String, FieldEntry>,
    pub links: Vec<Link>,
    /// Bumped on every change.
    pub version: u64,
    /// Set when this record was absorbed by a merge; it is then a tombstone.
    pub merged_into: Option<Uuid>,
    /// Set when a source deleted it under the `archive` policy.
    pub archived: bool,
    pub created_ts: i64,
    pub updated_ts: i64,
}

impl Record {
    pub fn new(id: Uuid, kind: Kind, now_us: i64) -> Self {
        Self {
            id,
            kind,
            fields: BTreeMap::new(),
            links: Vec::new(),
            version: 0,
            merged_into: None,
            archived: false,
            created_ts: now_us,
            updated_ts: now_us,
        }
    }

    pub fn value(&self, field: &str) -> Option<&Value> {
        self.fields.get(field).map(|e| &e.value)
    }

    pub fn link(&self, connector: &str, object: &str) -> Option<&Link> {
        self.links
            .iter()
            .find(|l| l.connector == connector && l.object == object)
    }
}

/// A record as a source system reported it: source field names, raw JSON values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub object: String,
    pub external_id: String,
    pub source_updated_at: DateTime<Utc>,
    pub fields: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub deleted: bool,
    /// The canonical id revsync stamped on this copy when it created it (HubSpot's
    /// `revsync_id` property, Salesforce's External ID field, Zendesk's `external_id`,
    /// Stripe's `metadata[revsync_id]`). A copy read back before its create was confirmed
    /// (the answer was lost, or the daemon died) still joins the record it was made for.
    #[serde(default)]
    pub canonical_id: Option<Uuid>,
}

impl Change {
    /// This record as it stood from `at`, for a connector's backfill of its past (issue
    /// 20): `then` the fields as they were, each of `stamps` (the system's modification
    /// time fields) the record carries set to `at`, the rest as today. Never a deletion:
    /// the record existed then.
    pub fn as_of<'a>(
        &self,
        at: DateTime<Utc>,
        then: impl IntoIterator<Item = (&'a str, serde_json::Value)>,
        stamps: &[&str],
    ) -> Change {
        let mut c = self.clone();
        c.source_updated_at = at;
        c.deleted = false;
        for (k, v) in then {
            c.fields.insert(k.to_owned(), v);
        }
        let stamp = serde_json::Value::String(at.to_rfc3339_opts(SecondsFormat::Millis, true));
        for k in stamps {
            if let Some(v) = c.fields.get_mut(*k) {
                *v = stamp.clone();
            }
        }
        c
    }
}

/// A canonical id as a system holds it in text; anything else (another tool's external
/// id) is not one.
pub fn canonical_id_in(v: Option<&serde_json::Value>) -> Option<Uuid> {
    v.and_then(serde_json::Value::as_str)
        .and_then(|s| Uuid::parse_str(s.trim()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for k in Kind::ALL {
            assert_eq!(k.as_str().parse::<Kind>().unwrap(), k);
            assert!(!k.fields().is_empty(), "{k} has documented fields");
        }
        let err = "people".parse::<Kind>().unwrap_err();
        assert!(err.contains("person, organization"), "{err}");
    }

    #[test]
    fn empty_means_no_information() {
        assert!(Value::Null.is_empty());
        assert!(Value::Text(String::new()).is_empty());
        assert!(!Value::Int(0).is_empty());
        assert!(!Value::Bool(false).is_empty());
    }

    #[test]
    fn money_and_times_render_exactly() {
        let m = Value::Money {
            amount_minor: 129_900,
            currency: "USD".into(),
        };
        assert_eq!(
            m.to_json(),
            serde_json::json!({"amount_minor": 129900, "currency": "USD"})
        );
        let t = Value::Time(1_700_000_000_123_456);
        assert_eq!(
            t.to_json(),
            serde_json::json!("2023-11-14T22:13:20.123456Z")
        );
    }
}
