//! `expand[]` on the Stripe simulator's reads: a subscription's or invoice's `customer` id
//! replaced by the customer object, as Stripe expands it (`data.customer` on a list).
//! Other paths are left unexpanded; a list path without `data.` is refused as Stripe
//! refuses it.

use axum::http::StatusCode;
use serde_json::Value;

use super::{error, Table};

/// The `expand` paths of a request, however the library sent them (`expand[]=` or
/// `expand[0]=`).
fn paths(params: &Value) -> Vec<&str> {
    match &params["expand"] {
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        Value::String(one) => vec![one.as_str()],
        _ => Vec::new(),
    }
}

/// Expand `path` of one object of `object` (`customers`, `subscriptions`, `invoices`).
fn one(customers: &Table, object: &str, target: &mut Value, path: &str) {
    if path != "customer" || !matches!(object, "subscriptions" | "invoices") {
        return;
    }
    let Some(id) = target.get("customer").and_then(Value::as_str) else {
        return;
    };
    let found = customers
        .rows
        .get(id)
        .or_else(|| customers.deleted.get(id))
        .cloned();
    if let (Some(customer), Some(slot)) = (found, target.get_mut("customer")) {
        *slot = customer;
    }
}

/// Apply a retrieve's `expand[]` to `answer`.
pub(super) fn object(customers: &Table, object: &str, answer: &mut Value, params: &Value) {
    for path in paths(params) {
        one(customers, object, answer, path);
    }
}

/// Apply a list's `expand[]` to each row of `answer`; a path not under `data.` is Stripe's
/// 400, since the list itself has nothing to expand.
pub(super) fn list(
    customers: &Table,
    object: &str,
    answer: &mut Value,
    params: &Value,
) -> Result<(), (u16, Value)> {
    for path in paths(params) {
        let Some(inner) = path.strip_prefix("data.") else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                &format!(
                    "This property cannot be expanded ({path}). You may want to try expanding \
                     'data.{path}' instead."
                ),
                None,
            ));
        };
        if let Some(rows) = answer.get_mut("data").and_then(Value::as_array_mut) {
            for row in rows {
                one(customers, object, row, inner);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn customers() -> Table {
        let mut t = Table::default();
        t.insert("cus_a", json!({"id": "cus_a", "object": "customer"}), 1);
        t
    }

    #[test]
    fn customer_expands_on_a_subscription_and_on_each_listed_invoice() {
        let t = customers();
        let mut sub = json!({"id": "sub_1", "customer": "cus_a"});
        object(
            &t,
            "subscriptions",
            &mut sub,
            &json!({"expand": ["customer"]}),
        );
        assert_eq!(sub["customer"]["object"], "customer");
        let mut page = json!({"object": "list", "data": [{"id": "in_1", "customer": "cus_a"}]});
        list(
            &t,
            "invoices",
            &mut page,
            &json!({"expand": ["data.customer"]}),
        )
        .ok();
        assert_eq!(page["data"][0]["customer"]["id"], "cus_a");
        let mut plain = json!({"id": "sub_2", "customer": "cus_a"});
        object(&t, "subscriptions", &mut plain, &json!({}));
        assert_eq!(plain["customer"], "cus_a", "nothing expands unasked");
    }

    #[test]
    fn a_list_path_outside_data_is_refused_with_stripes_hint() {
        let t = customers();
        let mut page = json!({"object": "list", "data": []});
        let refused = list(
            &t,
            "subscriptions",
            &mut page,
            &json!({"expand": ["customer"]}),
        );
        let Err((status, body)) = refused else {
            panic!("expected a 400, got {refused:?}");
        };
        assert_eq!(status, 400);
        assert_eq!(
            body["error"]["message"],
            "This property cannot be expanded (customer). You may want to try expanding 'data.customer' instead."
        );
    }
}
