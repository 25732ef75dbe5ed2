//! HubSpot objects <-> `Change` fields: property names kept as HubSpot spells them, the
//! modification timestamp per object, and associations carried as id fields.
// Every number here comes from the API: arithmetic on it must be checked (issue 25).
#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use revsync_sdk::{Change, Kind};
use serde_json::{Map, Value};

/// What differs between the three CRM objects the connector reads.
#[derive(Debug, Clone, Copy)]
pub struct ObjectSpec {
    pub name: &'static str,
    pub kind: Kind,
    /// The property search filters and sorts on: contacts keep the legacy name
    /// (API_FACTS 1.2, "default properties").
    pub modified: &'static str,
    /// Properties requested on every read. The engine maps by YAML; these cover the default
    /// mappings of MODEL.md plus what relations and identity need.
    pub properties: &'static [&'static str],
    /// Association fields: (field in `Change.fields`, associated object).
    pub associations: &'static [(&'static str, &'static str)],
    /// Associations that are also plain properties HubSpot keeps itself (a contact's
    /// primary company), so search results carry them without an association call.
    pub property_associations: &'static [&'static str],
    /// Properties whose past values a read from the beginning asks for
    /// (`propertiesWithHistory`), to emit the record's past states dated as HubSpot dates
    /// them (issue 20, `history.rs`).
    pub history: &'static [&'static str],
}

pub const CONTACTS: ObjectSpec = ObjectSpec {
    name: "contacts",
    kind: Kind::Person,
    modified: "lastmodifieddate",
    properties: &[
        "email",
        "firstname",
        "lastname",
        "phone",
        "jobtitle",
        "lifecyclestage",
        "hs_lead_status",
        "hubspot_owner_id",
        "country",
        "city",
        "company",
        "associatedcompanyid",
        "createdate",
        "lastmodifieddate",
    ],
    associations: &[],
    property_associations: &["associatedcompanyid"],
    history: &[],
};

pub const COMPANIES: ObjectSpec = ObjectSpec {
    name: "companies",
    kind: Kind::Organization,
    modified: "hs_lastmodifieddate",
    properties: &[
        "name",
        "domain",
        "website",
        "industry",
        "numberofemployees",
        "annualrevenue",
        "country",
        "city",
        "hubspot_owner_id",
        "hs_parent_company_id",
        "createdate",
        "hs_lastmodifieddate",
    ],
    associations: &[],
    property_associations: &[],
    history: &[],
};

pub const DEALS: ObjectSpec = ObjectSpec {
    name: "deals",
    kind: Kind::Deal,
    modified: "hs_lastmodifieddate",
    properties: &[
        "dealname",
        "amount",
        "deal_currency_code",
        "dealstage",
        "pipeline",
        "closedate",
        "hs_deal_stage_probability",
        "dealtype",
        "hubspot_owner_id",
        "createdate",
        "hs_lastmodifieddate",
    ],
    associations: &[
        ("associatedcompanyid", "companies"),
        ("associatedcontactid", "contacts"),
    ],
    property_associations: &[],
    // What win rate, sales cycle and pipeline as of a past instant are computed from.
    history: &["dealstage", "amount", "closedate"],
};

pub const OBJECTS: [ObjectSpec; 3] = [CONTACTS, COMPANIES, DEALS];

pub fn spec(object: &str) -> Option<&'static ObjectSpec> {
    OBJECTS.iter().find(|o| o.name == object)
}

/// HubSpot sends dates as ISO-8601 or as epoch-millisecond strings (API_FACTS 1.2).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Utc.timestamp_millis_opt(ms).single();
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A record's modification time: the object's own property, else `updatedAt`.
pub fn modified_at(spec: &ObjectSpec, obj: &Value) -> Option<DateTime<Utc>> {
    time_of(obj, spec.modified, "updatedAt")
}

/// A record's creation time: `createdate`, else `createdAt`.
pub fn created_at(obj: &Value) -> Option<DateTime<Utc>> {
    time_of(obj, "createdate", "createdAt")
}

fn time_of(obj: &Value, property: &str, attribute: &str) -> Option<DateTime<Utc>> {
    obj.get("properties")
        .and_then(|p| p.get(property))
        .and_then(Value::as_str)
        .and_then(parse_time)
        .or_else(|| {
            obj.get(attribute)
                .and_then(Value::as_str)
                .and_then(parse_time)
        })
}

/// Associated ids as a v3 read returns them (`associations.companies.results[].id`),
/// deduplicated because one pair appears once per association type.
pub fn association_ids(obj: &Value, to_object: &str) -> Vec<String> {
    let mut ids: Vec<String> = obj
        .get("associations")
        .and_then(|a| a.get(to_object))
        .and_then(|a| a.get("results"))
        .and_then(Value::as_array)
        .map(|rs| rs.iter().filter_map(|r| id_string(r.get("id")?)).collect())
        .unwrap_or_default();
    ids.dedup();
    ids
}

fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A HubSpot object as a `Change`. `assoc` holds association ids read separately (search
/// results carry none); when absent, the object's own `associations` block is used.
pub fn to_change(
    spec: &ObjectSpec,
    obj: &Value,
    assoc: Option<&BTreeMap<String, Vec<String>>>,
) -> Result<Change, String> {
    let id = obj
        .get("id")
        .and_then(id_string)
        .ok_or_else(|| format!("{} record without an id", spec.name))?;
    let updated = modified_at(spec, obj)
        .ok_or_else(|| format!("{} {id}: no readable {}", spec.name, spec.modified))?;
    let mut fields = BTreeMap::new();
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            // Nulls are seen in practice [U]; they mean "no value", as an empty string does.
            let v = match v {
                Value::String(s) if s.is_empty() => Value::Null,
                other => other.clone(),
            };
            fields.insert(k.clone(), v);
        }
    }
    for (field, to) in spec.associations {
        let ids = match assoc {
            Some(a) => a.get(*to).cloned().unwrap_or_default(),
            None => association_ids(obj, to),
        };
        // The relation names one record; HubSpot lists the oldest association first.
        fields.insert(
            (*field).to_owned(),
            ids.first()
                .map_or(Value::Null, |s| Value::String(s.clone())),
        );
    }
    let deleted = obj
        .get("archived")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(Change {
        object: spec.name.to_owned(),
        external_id: id,
        source_updated_at: updated,
        fields,
        deleted,
        canonical_id: None,
    })
}

/// A pushed field value as HubSpot property text (every property value is a string).
pub fn property_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// Splits pushed fields into properties and (association object, id) pairs.
pub fn to_properties(
    spec: &ObjectSpec,
    fields: &BTreeMap<String, Value>,
) -> (Map<String, Value>, Vec<(&'static str, String)>) {
    let mut props = Map::new();
    let mut assoc = Vec::new();
    for (k, v) in fields {
        if let Some((_, to)) = spec.associations.iter().find(|(f, _)| f == k) {
            let id = property_text(v);
            if !id.is_empty() {
                assoc.push((*to, id));
            }
            continue;
        }
        // HubSpot sets these itself; sending them is a validation error.
        if k == spec.modified || k == "createdate" || k == "hs_object_id" {
            continue;
        }
        props.insert(k.clone(), Value::String(property_text(v)));
    }
    (props, assoc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_properties_time_and_associations() {
        let obj = json!({
            "id": "513881705057",
            "properties": {"dealname": "Big", "amount": "10.5", "hs_lastmodifieddate": "2025-12-22T18:16:33.376Z", "pipeline": null, "dealtype": ""},
            "createdAt": "2025-12-22T18:16:33.376Z", "updatedAt": "2025-12-22T18:16:33.376Z", "archived": false,
            "associations": {"companies": {"results": [{"id": "7", "type": "deal_to_company"}, {"id": "7", "type": "deal_to_company_unlabeled"}]}}
        });
        let c = to_change(&DEALS, &obj, None).unwrap();
        assert_eq!(c.external_id, "513881705057");
        assert_eq!(c.fields["associatedcompanyid"], json!("7"));
        assert_eq!(c.fields["associatedcontactid"], Value::Null);
        assert_eq!(c.fields["dealtype"], Value::Null);
        assert_eq!(c.source_updated_at.timestamp_millis(), 1_766_427_393_376);
        assert!(!c.deleted);
    }

    #[test]
    fn times_read_as_iso_or_epoch_millis() {
        assert_eq!(
            parse_time("1579514400000").unwrap(),
            parse_time("2020-01-20T10:00:00Z").unwrap()
        );
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn a_record_without_id_or_time_is_invalid() {
        assert!(to_change(&CONTACTS, &json!({"properties": {}}), None).is_err());
        assert!(to_change(&CONTACTS, &json!({"id": "1", "properties": {}}), None).is_err());
    }

    #[test]
    fn pushed_values_become_strings_and_relations_split_out() {
        let fields: BTreeMap<String, Value> = [
            ("dealname".to_owned(), json!("X")),
            ("amount".to_owned(), json!(12.5)),
            ("associatedcompanyid".to_owned(), json!("42")),
            (
                "hs_lastmodifieddate".to_owned(),
                json!("2020-01-01T00:00:00Z"),
            ),
        ]
        .into();
        let (props, assoc) = to_properties(&DEALS, &fields);
        assert_eq!(props["amount"], json!("12.5"));
        assert!(!props.contains_key("associatedcompanyid"));
        assert!(!props.contains_key("hs_lastmodifieddate"));
        assert_eq!(assoc, vec![("companies", "42".to_owned())]);
    }
}
