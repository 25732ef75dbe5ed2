//! HubSpot's properties API (`GET /crm/v3/properties/{objectType}`) as an [`ObjectSchema`]
//! for `revsync discover`.

use revsync_sdk::{ConnectorError, FieldSchema, ObjectSchema};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
struct Answer {
    results: Vec<Property>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Property {
    name: String,
    #[serde(default)]
    label: String,
    #[serde(rename = "type", default)]
    ty: String,
    #[serde(default)]
    options: Vec<PropertyOption>,
    #[serde(default)]
    calculated: bool,
    #[serde(default)]
    hubspot_defined: bool,
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    modification_metadata: Option<Modification>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Modification {
    #[serde(default)]
    read_only_value: bool,
}

#[derive(Debug, Deserialize)]
struct PropertyOption {
    value: String,
    #[serde(default)]
    hidden: bool,
}

/// The properties answer for `object` as its schema. HubSpot marks no property required on
/// create through the API, so none is.
pub fn schema(object: &str, answer: &Value) -> Result<ObjectSchema, ConnectorError> {
    let answer = Answer::deserialize(answer).map_err(|e| {
        crate::permanent(format!(
            "malformed hubspot properties answer for `{object}`: {e}"
        ))
    })?;
    let fields = answer
        .results
        .into_iter()
        .filter(|p| !p.archived)
        .map(|p| {
            let read_only =
                p.calculated || p.modification_metadata.is_some_and(|m| m.read_only_value);
            let mut f = FieldSchema::new(p.name, p.label, p.ty)
                .options(p.options.into_iter().filter(|o| !o.hidden).map(|o| o.value));
            f.read_only = read_only;
            // Custom properties carry no `hubspotDefined` at all.
            f.custom = !p.hubspot_defined;
            f
        })
        .collect();
    Ok(ObjectSchema {
        name: object.to_owned(),
        label: None,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_read_only_custom_and_visible_options() {
        let answer = json!({"results": [
            {"name": "lifecyclestage", "label": "Lifecycle Stage", "type": "enumeration", "fieldType": "radio",
             "options": [{"label": "Lead", "value": "lead", "displayOrder": 1, "hidden": false},
                         {"label": "Old", "value": "old", "displayOrder": 2, "hidden": true}],
             "calculated": false, "hubspotDefined": true,
             "modificationMetadata": {"archivable": false, "readOnlyDefinition": true, "readOnlyValue": false}},
            {"name": "hs_object_id", "label": "Record ID", "type": "number", "hubspotDefined": true,
             "modificationMetadata": {"readOnlyValue": true}},
            {"name": "hs_email_domain", "label": "Email Domain", "type": "string", "calculated": true, "hubspotDefined": true},
            {"name": "customer_tier", "label": "Customer tier", "type": "enumeration", "options": []},
            {"name": "gone", "label": "Gone", "type": "string", "archived": true}
        ]});
        let s = schema("contacts", &answer).unwrap();
        let names: Vec<&str> = s.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "lifecyclestage",
                "hs_object_id",
                "hs_email_domain",
                "customer_tier"
            ]
        );
        assert_eq!(s.fields[0].options, ["lead"]);
        assert!(!s.fields[0].read_only && !s.fields[0].custom && !s.fields[0].required);
        assert!(s.fields[1].read_only && s.fields[2].read_only);
        assert!(s.fields[3].custom && !s.fields[3].read_only);
        assert!(schema("contacts", &json!({"results": 3})).is_err());
    }
}
