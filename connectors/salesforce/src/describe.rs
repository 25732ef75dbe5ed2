//! Salesforce's sObject describe (`GET /services/data/vXX.X/sobjects/{SObject}/describe`)
//! as an [`ObjectSchema`] for `revsync discover`.

use revsync_sdk::{ConnectorError, FieldSchema, ObjectSchema};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
struct Answer {
    name: String,
    #[serde(default)]
    label: Option<String>,
    fields: Vec<Field>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Field {
    name: String,
    #[serde(default)]
    label: String,
    #[serde(rename = "type", default)]
    ty: String,
    #[serde(default)]
    nillable: bool,
    #[serde(default)]
    createable: bool,
    #[serde(default)]
    updateable: bool,
    #[serde(default)]
    defaulted_on_create: bool,
    #[serde(default)]
    calculated: bool,
    #[serde(default)]
    custom: bool,
    #[serde(default)]
    picklist_values: Vec<PicklistValue>,
    #[serde(default)]
    reference_to: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct PicklistValue {
    value: String,
    #[serde(default)]
    active: bool,
}

/// The describe answer as a schema.
pub fn schema(object: &str, answer: &Value) -> Result<ObjectSchema, ConnectorError> {
    let answer = Answer::deserialize(answer).map_err(|e| {
        crate::permanent(format!(
            "malformed salesforce describe answer for `{object}`: {e}"
        ))
    })?;
    let fields = answer
        .fields
        .into_iter()
        .map(|f| {
            let mut s = FieldSchema::new(f.name, f.label, f.ty)
                .options(
                    f.picklist_values
                        .into_iter()
                        .filter(|v| v.active)
                        .map(|v| v.value),
                )
                .references(f.reference_to);
            // How Salesforce marks LastName and Company on Lead: a create must carry
            // what is neither nillable nor filled in by the org.
            s.required = f.createable && !f.nillable && !f.defaulted_on_create;
            s.read_only = f.calculated || (!f.createable && !f.updateable);
            s.custom = f.custom;
            s
        })
        .collect();
    Ok(ObjectSchema {
        name: answer.name,
        label: answer.label,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn required_read_only_custom_options_and_references() {
        let answer = json!({"name": "Lead", "label": "Lead", "createable": true, "fields": [
            {"name": "Company", "label": "Company", "type": "string", "nillable": false,
             "createable": true, "updateable": true, "defaultedOnCreate": false},
            {"name": "Status", "label": "Lead Status", "type": "picklist", "nillable": false,
             "createable": true, "updateable": true, "defaultedOnCreate": true,
             "picklistValues": [{"value": "Open", "label": "Open", "active": true, "defaultValue": true},
                                {"value": "Old", "label": "Old", "active": false, "defaultValue": false}]},
            {"name": "SystemModstamp", "label": "System Modstamp", "type": "datetime", "nillable": false,
             "createable": false, "updateable": false, "defaultedOnCreate": true},
            {"name": "Score__c", "label": "Score", "type": "double", "nillable": true, "createable": false,
             "updateable": false, "calculated": true, "custom": true},
            {"name": "OwnerId", "label": "Owner ID", "type": "reference", "nillable": false,
             "createable": true, "updateable": true, "defaultedOnCreate": true, "referenceTo": ["Group", "User"]}
        ]});
        let s = schema("Lead", &answer).unwrap();
        assert_eq!(s.label.as_deref(), Some("Lead"));
        let [company, status, stamp, score, owner] = s.fields.as_slice() else {
            panic!("{s:?}")
        };
        assert!(company.required && !company.read_only);
        assert!(!status.required && status.options == ["Open"]);
        assert!(stamp.read_only && !stamp.required);
        assert!(score.read_only && score.custom);
        assert_eq!(owner.references, ["Group", "User"]);
        assert!(schema("Lead", &json!([{"errorCode": "NOT_FOUND"}])).is_err());
    }
}
