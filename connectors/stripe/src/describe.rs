//! `revsync discover` for Stripe: no endpoint describes an object, so the connector states
//! the documented shape of customers, subscriptions and invoices (as `mapping.rs` hands them
//! on: `address.city`, `plan`, `mrr`), and finds the account's metadata keys by sampling the
//! newest page of the object's list: one request, never a read of every record.

use std::collections::BTreeSet;

use revsync_sdk::{ConnectorError, FieldSchema, ObjectSchema};
use serde_json::Value;

use crate::config::CustomersAs;
use crate::{list_path, mapping, permanent, StripeConnector, PAGE};

const OBJECTS: &[&str] = &["customers", "subscriptions", "invoices"];

fn f(name: &str, label: &str, ty: &str) -> FieldSchema {
    FieldSchema::new(name, label, ty)
}

fn ro(name: &str, label: &str, ty: &str) -> FieldSchema {
    f(name, label, ty).read_only()
}

/// The documented fields of `object` under the names a mapping uses; `None` for an object
/// this connector does not read.
pub fn builtin(object: &str, customers_as: CustomersAs) -> Option<ObjectSchema> {
    let (label, mut fields) = match object {
        "customers" => (
            "Customers",
            vec![
                ro("id", "ID", "string"),
                f("name", "Name", "string"),
                f("email", "Email", "string"),
                f("phone", "Phone", "string"),
                f("description", "Description", "string"),
                f("address.line1", "Address line 1", "string"),
                f("address.line2", "Address line 2", "string"),
                f("address.city", "City", "string"),
                f("address.state", "State", "string"),
                f("address.postal_code", "Postal code", "string"),
                f("address.country", "Country", "string"),
                // Set by the customer's first subscription or invoice, not by an update.
                ro("currency", "Currency", "string"),
                ro("delinquent", "Delinquent", "boolean"),
                ro("created", "Created", "timestamp"),
                f("metadata", "Metadata", "hash"),
                // revsync's own metadata key: the canonical id it created the customer for.
                ro(mapping::REVSYNC_ID, "revsync id", "string"),
            ],
        ),
        "subscriptions" => (
            "Subscriptions",
            vec![
                ro("id", "ID", "string"),
                ro("customer", "Customer", "string").references(["customers"]),
                ro("status", "Status", "string").options([
                    "incomplete",
                    "incomplete_expired",
                    "trialing",
                    "active",
                    "past_due",
                    "canceled",
                    "unpaid",
                    "paused",
                ]),
                ro("currency", "Currency", "string"),
                ro("created", "Created", "timestamp"),
                ro("started_at", "Start date", "timestamp"),
                f("trial_end", "Trial end", "timestamp"),
                f("cancel_at", "Cancel at", "timestamp"),
                ro("canceled_at", "Canceled at", "timestamp"),
                ro("ended_at", "Ended at", "timestamp"),
                // Derived from the items' prices (`mapping::subscription_fields`).
                ro("plan", "Price of the first item", "string"),
                ro("interval", "Billing interval", "string")
                    .options(["day", "week", "month", "year"]),
                ro("interval_count", "Billing interval count", "integer"),
                ro("quantity", "Quantity", "integer"),
                ro("items", "Items", "array"),
                ro("mrr", "Monthly recurring revenue (minor units)", "integer"),
                f("metadata", "Metadata", "hash"),
            ],
        ),
        "invoices" => (
            "Invoices",
            vec![
                ro("id", "ID", "string"),
                ro("number", "Number", "string"),
                ro("customer", "Customer", "string").references(["customers"]),
                ro("subscription", "Subscription", "string").references(["subscriptions"]),
                ro("status", "Status", "string").options([
                    "draft",
                    "open",
                    "paid",
                    "uncollectible",
                    "void",
                ]),
                ro("currency", "Currency", "string"),
                ro("amount_due", "Amount due", "integer"),
                ro("amount_paid", "Amount paid", "integer"),
                ro("amount_remaining", "Amount remaining", "integer"),
                ro("total", "Total", "integer"),
                ro("created", "Created", "timestamp"),
                ro("issued_at", "Finalized", "timestamp"),
                ro("due_at", "Due date", "timestamp"),
                ro("paid_at", "Paid at", "timestamp"),
                f("metadata", "Metadata", "hash"),
            ],
        ),
        _ => return None,
    };
    if object == "customers" {
        // The customer's email also travels under the name of the role it plays.
        fields.extend(match customers_as {
            CustomersAs::Person => vec![ro("billing_email", "Billing email", "string")],
            CustomersAs::Organization => vec![
                ro("billing_contact_email", "Billing contact email", "string"),
                ro("billing_contact_name", "Billing contact name", "string"),
            ],
        });
    }
    Some(ObjectSchema {
        name: object.to_owned(),
        label: Some(label.to_owned()),
        fields,
    })
}

/// Pages of records `describe` samples for metadata keys: 1,000 records, 10 requests.
const SAMPLE_PAGES: usize = 10;

/// The metadata keys the sampled records use, each a custom field `metadata.<key>`
/// (Stripe metadata values are strings). revsync's own key is listed above, not as the
/// account's.
pub fn metadata_fields(records: &[Value]) -> Vec<FieldSchema> {
    let keys: BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r.get("metadata").and_then(Value::as_object))
        .flat_map(|m| m.keys().map(String::as_str))
        .filter(|k| *k != mapping::REVSYNC_ID)
        .collect();
    keys.into_iter()
        .map(|k| FieldSchema::new(format!("metadata.{k}"), k, "string").custom())
        .collect()
}

impl StripeConnector {
    pub(crate) async fn describe_object(
        &self,
        object: &str,
    ) -> Result<ObjectSchema, ConnectorError> {
        let (Some(mut schema), Some(path)) =
            (builtin(object, self.params.customers_as), list_path(object))
        else {
            return Err(permanent(format!(
                "stripe has no object `{object}` to describe; its objects: {}",
                OBJECTS.join(", ")
            )));
        };
        // The newest SAMPLE_PAGES pages: keys only older records use are missed (a sample,
        // not a scan); Stripe lists newest first, and a key set on a few records (a CRM
        // link) rarely shows on the first page alone.
        let mut sampled = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..SAMPLE_PAGES {
            let mut query = vec![("limit".to_owned(), PAGE.to_owned())];
            if let Some(a) = &after {
                query.push(("starting_after".to_owned(), a.clone()));
            }
            let page = self.client.list(path, &query).await?;
            after = page
                .data
                .last()
                .and_then(|r| r.get("id"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            sampled.extend(page.data);
            if !page.has_more || after.is_none() {
                break;
            }
        }
        schema.fields.extend(metadata_fields(&sampled));
        Ok(schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_object_has_a_read_only_id_and_writable_metadata() {
        for object in OBJECTS {
            let s = builtin(object, CustomersAs::Organization).unwrap();
            assert!(s.fields.iter().any(|f| f.name == "id" && f.read_only));
            assert!(s
                .fields
                .iter()
                .any(|f| f.name == "metadata" && !f.read_only));
            assert!(list_path(object).is_some());
        }
        assert!(builtin("charges", CustomersAs::Person).is_none());
    }

    #[test]
    fn metadata_keys_are_gathered_once_without_revsyncs_own() {
        let records = [
            json!({"metadata": {"crm_id": "1", "revsync_id": "x"}}),
            json!({"metadata": {"crm_id": "2", "tier": "gold"}}),
            json!({"metadata": {}}),
            json!({"id": "cus_without"}),
        ];
        let names: Vec<String> = metadata_fields(&records)
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, ["metadata.crm_id", "metadata.tier"]);
    }
}
