//! Why HubSpot refuses a write, in its own words: a category (`VALIDATION_ERROR`,
//! `CONFLICT`), a message, and for invalid property values the "Property values were not
//! valid: [...]" message with one `errors` item a property (API_FACTS 1.3's example; an
//! invalid email's INVALID_EMAIL detail as seen in real 400s).

use std::collections::BTreeSet;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{correlation_id, PORTAL_ID};

#[derive(Debug)]
pub(super) struct Refusal {
    pub category: &'static str,
    pub message: String,
    /// The `errors` items of a single write's answer; none for a plain refusal.
    errors: Vec<Value>,
}

impl Refusal {
    pub fn new(category: &'static str, message: String) -> Self {
        Self {
            category,
            message,
            errors: Vec::new(),
        }
    }

    /// Values HubSpot will not store: each `(property, code, message)`, e.g.
    /// `("email", "INVALID_EMAIL", "Email address x is invalid")`.
    pub fn invalid_values(invalid: &[(&str, &str, String)]) -> Self {
        let detail: Vec<Value> = invalid
            .iter()
            .map(|(name, code, said)| {
                json!({"isValid": false, "message": said, "error": code, "name": name,
                       "localizedErrorMessage": said, "portalId": PORTAL_ID})
            })
            .collect();
        let errors = invalid
            .iter()
            .map(|(name, code, said)| {
                json!({"message": said, "code": code, "context": {"propertyName": [name]}})
            })
            .collect();
        Self {
            category: "VALIDATION_ERROR",
            message: format!("Property values were not valid: {}", Value::Array(detail)),
            errors,
        }
    }

    /// A write naming properties the portal does not have.
    pub fn no_such_properties(names: &BTreeSet<&str>) -> Self {
        let invalid: Vec<(&str, &str, String)> = names
            .iter()
            .map(|n| {
                (
                    *n,
                    "PROPERTY_DOESNT_EXIST",
                    format!("Property \"{n}\" does not exist"),
                )
            })
            .collect();
        Self::invalid_values(&invalid)
    }

    /// The answer to a single write (or a whole batch call) refused for this reason.
    pub fn response(&self) -> Response {
        let status = if self.category == "CONFLICT" {
            StatusCode::CONFLICT
        } else {
            StatusCode::BAD_REQUEST
        };
        let mut body = json!({
            "status": "error",
            "message": self.message,
            "correlationId": correlation_id(),
            "category": self.category,
        });
        if !self.errors.is_empty() {
            if let Some(m) = body.as_object_mut() {
                m.insert("errors".into(), Value::Array(self.errors.clone()));
            }
        }
        (status, axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_values_list_the_detail_in_the_message_and_in_errors() {
        let r = Refusal::invalid_values(&[(
            "email",
            "INVALID_EMAIL",
            "Email address x is invalid".into(),
        )]);
        assert_eq!(r.category, "VALIDATION_ERROR");
        let detail: Value = serde_json::from_str(
            r.message
                .strip_prefix("Property values were not valid: ")
                .unwrap_or_default(),
        )
        .unwrap_or_default();
        assert_eq!(detail[0]["error"], "INVALID_EMAIL");
        assert_eq!(r.errors[0]["context"]["propertyName"], json!(["email"]));
        assert!(Refusal::new("CONFLICT", "taken".into()).errors.is_empty());
    }
}
