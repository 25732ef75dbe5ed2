//! `revsync discover`: the objects and fields a configured system's API describes, beside
//! the canonical field this connector's mapping gives each, as a table, as JSON, or as a
//! starting connector file (`--yaml`) with every unmapped field listed, commented out.
//!
//! It asks the system itself (HubSpot's properties API, Salesforce's sObject describe,
//! Zendesk's user and organization fields, Stripe's object shapes and metadata keys), so
//! the account's own custom fields appear; it never reads a record's values.

use std::path::Path;
use std::sync::Arc;

use revsync_sdk::{Connector, FieldSchema, Kind};
use serde::Serialize;
use serde_json::Value as Json;

use crate::config::{Config, ConnectorConfig};
use crate::registry::Registry;

mod yaml;

/// What one connector's system says about its objects.
#[derive(Debug, Serialize)]
pub struct Discovery {
    pub connector: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub objects: Vec<DescribedObject>,
}

#[derive(Debug, Serialize)]
pub struct DescribedObject {
    pub name: String,
    pub kind: Kind,
    /// The connector file maps this object.
    pub configured: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub fields: Vec<DescribedField>,
    /// Source fields the mapping names that the API does not describe: an association or
    /// a derived value (expected), or a misspelt name (a field that would never be read).
    pub mapped_not_described: Vec<String>,
    /// Why the system could not describe the object (the rest went on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DescribedField {
    #[serde(flatten)]
    pub schema: FieldSchema,
    /// The canonical field the connector's mapping writes it to.
    pub maps_to: Option<String>,
}

impl Discovery {
    pub fn failed(&self) -> bool {
        self.objects.iter().any(|o| o.error.is_some())
    }
}

/// Ask connector `id` of `config` to describe `object`, or every object its type knows.
pub async fn discover(
    config: &Config,
    registry: &Registry,
    id: &str,
    object: Option<&str>,
) -> anyhow::Result<Discovery> {
    let Some((_, c)) = config.connectors.iter().find(|(_, c)| c.id == id) else {
        let ids: Vec<&str> = config
            .connectors
            .iter()
            .map(|(_, c)| c.id.as_str())
            .collect();
        anyhow::bail!(
            "no connector `{id}` in {}; configured: {}",
            config.dir.display(),
            if ids.is_empty() {
                "none".to_owned()
            } else {
                ids.join(", ")
            }
        );
    };
    let objects = objects_to_describe(registry, c, object)?;
    let connector: Arc<dyn Connector> =
        match crate::sync::build_connector(registry, c, revsync_sdk::Shutdown::default()) {
            Some(Ok(conn)) => conn,
            Some(Err(e)) => anyhow::bail!("connector `{id}` cannot start: {e}"),
            None => anyhow::bail!(
                "connector `{id}` ({}) has no API client in this build",
                c.type_name
            ),
        };
    let mut described = Vec::with_capacity(objects.len());
    for (name, kind) in objects {
        described.push(describe_one(connector.as_ref(), c, &name, kind).await);
    }
    Ok(Discovery {
        connector: c.id.clone(),
        type_name: c.type_name.clone(),
        objects: described,
    })
}

/// `object`, or every object of the type followed by any other the file configures.
fn objects_to_describe(
    registry: &Registry,
    c: &ConnectorConfig,
    object: Option<&str>,
) -> anyhow::Result<Vec<(String, Kind)>> {
    let mut known: Vec<(String, Kind)> = registry
        .get(&c.type_name)
        .map(|t| t.objects())
        .unwrap_or_default()
        .iter()
        .map(|(n, k)| ((*n).to_owned(), *k))
        .collect();
    for (name, o) in &c.objects {
        if !known.iter().any(|(n, _)| n == name) {
            known.push((name.clone(), o.kind));
        }
    }
    match object {
        None => Ok(known),
        Some(o) => match known.into_iter().find(|(n, _)| n == o) {
            Some(found) => Ok(vec![found]),
            None => {
                let names: Vec<&str> = registry
                    .get(&c.type_name)
                    .map(|t| t.objects())
                    .unwrap_or_default()
                    .iter()
                    .map(|(n, _)| *n)
                    .collect();
                anyhow::bail!(
                    "{} has no object `{o}`; its objects: {}",
                    c.type_name,
                    names.join(", ")
                )
            }
        },
    }
}

async fn describe_one(
    connector: &dyn Connector,
    c: &ConnectorConfig,
    name: &str,
    kind: Kind,
) -> DescribedObject {
    let configured = c.objects.get(name);
    let kind = configured.map_or(kind, |o| o.kind);
    let mapping: Vec<(&str, String)> = configured
        .map(|o| {
            o.fields
                .iter()
                .filter_map(|(src, spec)| target(spec).map(|t| (src.as_str(), t)))
                .collect()
        })
        .unwrap_or_default();
    let (label, fields, error) = match connector.describe(name).await {
        Ok(schema) => (schema.label, schema.fields, None),
        Err(e) => (None, Vec::new(), Some(e.to_string())),
    };
    let mapped_not_described = if error.is_some() {
        Vec::new()
    } else {
        mapping
            .iter()
            .filter(|(src, _)| !fields.iter().any(|f| f.name == *src))
            .map(|(src, _)| (*src).to_owned())
            .collect()
    };
    let fields = fields
        .into_iter()
        .map(|schema| {
            let maps_to = mapping
                .iter()
                .find(|(src, _)| *src == schema.name)
                .map(|(_, t)| t.clone());
            DescribedField { schema, maps_to }
        })
        .collect();
    DescribedObject {
        name: name.to_owned(),
        kind,
        configured: configured.is_some(),
        label,
        fields,
        mapped_not_described,
        error,
    }
}

/// The canonical field a mapping entry writes: `email: email` or `{to: email, ...}`.
fn target(spec: &Json) -> Option<String> {
    match spec {
        Json::String(s) => Some(s.clone()),
        Json::Object(m) => m.get("to").and_then(Json::as_str).map(str::to_owned),
        _ => None,
    }
}

/// The canonical field an unmapped source field most likely means: a well-known field of
/// the kind whose name matches once case, `_` and Salesforce's `__c` are set aside
/// (`firstname` and `FirstName` are `first_name`); otherwise `custom.<name>`, which keeps
/// the value as it is.
pub fn suggest(kind: Kind, source: &str) -> String {
    let squash = |s: &str| -> String {
        s.trim_end_matches("__c")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let wanted = squash(source);
    if let Some(f) = kind.fields().iter().find(|f| squash(f.name) == wanted) {
        return f.name.to_owned();
    }
    let custom: String = source
        .trim_end_matches("__c")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("custom.{custom}")
}

/// The table `revsync discover` prints: one block per object.
pub fn table(d: &Discovery) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for o in &d.objects {
        let state = if o.configured {
            "mapped in the connector file"
        } else {
            "not in the connector file"
        };
        let _ = writeln!(
            out,
            "{} {}{} -> {} ({state})",
            d.connector,
            o.name,
            o.label
                .as_deref()
                .filter(|l| *l != o.name)
                .map(|l| format!(" \"{l}\""))
                .unwrap_or_default(),
            o.kind.as_str(),
        );
        if let Some(e) = &o.error {
            let _ = writeln!(out, "  cannot describe: {e}\n");
            continue;
        }
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
            .set_header(["field", "type", "label", "notes", "maps to"]);
        for f in &o.fields {
            t.add_row([
                f.schema.name.clone(),
                f.schema.ty.clone(),
                f.schema.label.clone(),
                notes(&f.schema),
                f.maps_to.clone().unwrap_or_else(|| "-".to_owned()),
            ]);
        }
        let _ = writeln!(out, "{t}");
        let mapped = o.fields.iter().filter(|f| f.maps_to.is_some()).count();
        let _ = writeln!(
            out,
            "  {} fields, {mapped} mapped, {} custom",
            o.fields.len(),
            o.fields.iter().filter(|f| f.schema.custom).count()
        );
        if !o.mapped_not_described.is_empty() {
            let _ = writeln!(
                out,
                "  mapped but not described by the API: {} (associations and derived values are expected here; anything else is misspelt and never read)",
                o.mapped_not_described.join(", ")
            );
        }
        out.push('\n');
    }
    out
}

/// Required, read-only, custom, the first options and what a reference points at.
pub fn notes(f: &FieldSchema) -> String {
    let mut n: Vec<String> = Vec::new();
    if f.required {
        n.push("required".into());
    }
    if f.read_only {
        n.push("read-only".into());
    }
    if f.custom {
        n.push("custom".into());
    }
    if !f.references.is_empty() {
        n.push(format!("-> {}", f.references.join("|")));
    }
    if !f.options.is_empty() {
        const SHOWN: usize = 5;
        let mut o = f
            .options
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if f.options.len() > SHOWN {
            o.push_str(&format!(", +{}", f.options.len() - SHOWN));
        }
        n.push(format!("one of: {o}"));
    }
    n.join("; ")
}

/// A starting connector file: the file as written (its `${VAR}`s kept, so no secret is
/// printed), its mapping, and every field the API describes that it does not map, commented
/// out with the suggested canonical field, ready to uncomment.
pub fn connector_file(d: &Discovery, file: &Path, today: &str) -> anyhow::Result<String> {
    let raw = crate::config::read_uninterpolated(file).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(yaml::connector_file(d, &raw, file, today))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_match_well_known_fields_whatever_the_vendors_spelling() {
        assert_eq!(suggest(Kind::Person, "firstname"), "first_name");
        assert_eq!(suggest(Kind::Person, "LastName"), "last_name");
        assert_eq!(suggest(Kind::Person, "Email"), "email");
        assert_eq!(suggest(Kind::Organization, "Industry"), "industry");
        assert_eq!(suggest(Kind::Person, "Shoe_Size__c"), "custom.shoe_size");
        assert_eq!(
            suggest(Kind::Person, "user_fields.plan"),
            "custom.user_fields_plan"
        );
        assert_eq!(
            suggest(Kind::Person, "hs_lead_score"),
            "custom.hs_lead_score"
        );
    }

    #[test]
    fn notes_say_what_an_operator_must_know_before_mapping() {
        let f = FieldSchema::new("Status", "Status", "picklist")
            .required()
            .options(["a", "b", "c", "d", "e", "f", "g"]);
        assert_eq!(notes(&f), "required; one of: a, b, c, d, e, +2");
        let f = FieldSchema::new("AccountId", "Account", "reference")
            .read_only()
            .custom()
            .references(["Account"]);
        assert_eq!(notes(&f), "read-only; custom; -> Account");
    }

    #[test]
    fn a_mapping_entrys_target_is_its_string_or_its_to() {
        assert_eq!(
            target(&serde_json::json!("email")).as_deref(),
            Some("email")
        );
        assert_eq!(
            target(&serde_json::json!({"to": "stage", "map": "default"})).as_deref(),
            Some("stage")
        );
        assert_eq!(target(&serde_json::json!(3)), None);
    }
}
