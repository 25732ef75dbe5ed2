//! What a system says about its own objects and fields (`revsync discover`).
//!
//! Each API describes itself in its own way (HubSpot's properties API, Salesforce's sObject
//! describe, Zendesk's user and organization fields, Stripe's fixed object shapes); a
//! connector turns that into this one shape so the CLI can list fields, show which canonical
//! field a mapping gives each, and write a starting connector file.

use serde::Serialize;

/// One object of a system, as its API describes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ObjectSchema {
    /// The object's name as connector files use it (`contacts`, `Lead`, `users`).
    pub name: String,
    /// The system's display name, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub fields: Vec<FieldSchema>,
}

/// One field of an object.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FieldSchema {
    /// The name a mapping uses (`firstname`, `LastName`, `user_fields.plan`).
    pub name: String,
    /// The system's display name.
    pub label: String,
    /// The system's own type name (`string`, `enumeration`, `picklist`, `checkbox`).
    #[serde(rename = "type")]
    pub ty: String,
    /// The system refuses a create without it.
    pub required: bool,
    /// The system computes it; writes to it are refused or ignored.
    pub read_only: bool,
    /// Defined by the account (a custom property or field), not by the vendor.
    pub custom: bool,
    /// The values a picklist or enumeration allows.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// The objects a reference field points at.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
}

impl FieldSchema {
    /// A vendor-defined, optional, writable field.
    pub fn new(name: impl Into<String>, label: impl Into<String>, ty: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            label: label.into(),
            ty: ty.into(),
            ..Self::default()
        }
    }

    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    pub fn custom(mut self) -> Self {
        self.custom = true;
        self
    }

    pub fn options<I, S>(mut self, options: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.options = options.into_iter().map(Into::into).collect();
        self
    }

    pub fn references<I, S>(mut self, objects: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.references = objects.into_iter().map(Into::into).collect();
        self
    }
}

/// The answer of a connector whose API has no way to describe itself.
pub fn cannot_describe(object: &str) -> crate::error::ConnectorError {
    crate::error::ConnectorError::Permanent {
        detail: format!(
            "this connector cannot describe `{object}`: its API has no schema endpoint"
        ),
        status: None,
        body: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_serializes_with_the_systems_type_and_only_the_lists_it_has() {
        let f = FieldSchema::new("LastName", "Last Name", "string").required();
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["type"], "string");
        assert_eq!(v["required"], true);
        assert!(v.get("options").is_none() && v.get("references").is_none());
        let f = FieldSchema::new("AccountId", "Account ID", "reference").references(["Account"]);
        assert_eq!(
            serde_json::to_value(&f).unwrap()["references"][0],
            "Account"
        );
    }
}
