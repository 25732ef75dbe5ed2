//! Subscription billing as Stripe runs it while a test clock moves: calendar periods from the
//! billing cycle anchor, the invoice of each period (a draft finalized and paid an hour
//! later), the trial's end with its warning three days before, and scheduled cancellations.

use chrono::{DateTime, Months, Utc};
use serde_json::{json, Map, Value};

use super::{as_int, new_id, put, template, State};

/// Stripe waits an hour after `invoice.created` before it finalizes and charges a renewal.
const FINALIZE_AFTER_SECS: i64 = 3600;
/// `customer.subscription.trial_will_end` comes three days before the trial ends.
const TRIAL_WARNING_SECS: i64 = 3 * 86_400;

/// `n` billing intervals after `anchor`. Months and years keep the anchor's day of month, or
/// take the month's last day when it is shorter (Jan 31, Feb 29, Mar 31), as Stripe bills.
pub(super) fn add_intervals(anchor: i64, recurring: &Value, n: i64) -> i64 {
    let steps = recurring["interval_count"]
        .as_i64()
        .unwrap_or(1)
        .max(1)
        .saturating_mul(n);
    let months = match recurring["interval"].as_str().unwrap_or("month") {
        "day" => return anchor + steps * 86_400,
        "week" => return anchor + steps * 7 * 86_400,
        "year" => steps * 12,
        _ => steps,
    };
    DateTime::<Utc>::from_timestamp(anchor, 0)
        .zip(u32::try_from(months).ok())
        .and_then(|(start, m)| start.checked_add_months(Months::new(m)))
        .map_or(anchor, |end| end.timestamp())
}

/// The first period boundary after `after`, counted from `anchor` so that short months do
/// not pull later periods earlier.
fn next_period_end(anchor: i64, recurring: &Value, after: i64) -> i64 {
    (1..=100_000)
        .map(|n| add_intervals(anchor, recurring, n))
        .find(|end| *end > after)
        .unwrap_or(after)
}

static NULL: Value = Value::Null;

/// What the JSON pointer `path` finds in `v`, or null.
pub(super) fn field<'a>(v: &'a Value, path: &str) -> &'a Value {
    v.pointer(path).unwrap_or(&NULL)
}

fn first_item(sub: &Value) -> &Value {
    field(sub, "/items/data/0")
}

/// Keeps `cancel_at` and `canceled_at` in step with what was just asked of `sub`:
/// `cancel_at_period_end` cancels at the current period's end, `cancel_at` at that time,
/// and turning `cancel_at_period_end` off resumes it. `previous` holds what the request
/// replaced (its keys are the parameters given) and takes the values replaced here too.
pub(super) fn schedule_cancellation(sub: &mut Value, previous: &mut Map<String, Value>, now: i64) {
    if sub["status"] == "canceled" {
        return;
    }
    let at_period_end = matches!(&sub["cancel_at_period_end"], Value::Bool(true))
        || sub["cancel_at_period_end"] == "true";
    put(sub, "cancel_at_period_end", json!(at_period_end));
    let before = (sub["cancel_at"].clone(), sub["canceled_at"].clone());
    let resumed = previous.contains_key("cancel_at_period_end")
        && !at_period_end
        && !previous.contains_key("cancel_at");
    let wanted = if at_period_end {
        first_item(sub)["current_period_end"].as_i64()
    } else if resumed {
        None
    } else {
        as_int(&sub["cancel_at"])
    };
    let previous_cancel_at = previous
        .get("cancel_at")
        .cloned()
        .unwrap_or(before.0.clone());
    if as_int(&previous_cancel_at) == wanted {
        put(sub, "cancel_at", json!(wanted));
        return;
    }
    put(sub, "cancel_at", json!(wanted));
    put(sub, "canceled_at", json!(wanted.map(|_| now)));
    previous.entry("cancel_at").or_insert(before.0);
    previous.entry("canceled_at").or_insert(before.1);
}

/// Changes the quantities of `sub`'s items named in `items` (`items[n][id]`,
/// `items[n][quantity]`), keeping what the items were in `previous`. Only
/// `proration_behavior=none` is simulated: Stripe's default would add proration invoice
/// items to the next invoice, which this simulator does not make.
pub(super) fn update_items(
    sub: &mut Value,
    items: &Value,
    proration: &Value,
    previous: &mut Map<String, Value>,
) -> Result<(), (u16, Value)> {
    let refuse = |message: String, param: &str| {
        super::error(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            &message,
            Some(param),
        )
    };
    let Some(items) = items.as_array() else {
        return Err(refuse("Invalid array".into(), "items"));
    };
    if proration.as_str() != Some("none") {
        return Err(refuse(
            "This simulator changes subscription items only with proration_behavior=none \
             (prorations are not simulated)."
                .into(),
            "proration_behavior",
        ));
    }
    let before = field(sub, "/items").clone();
    for (i, given) in items.iter().enumerate() {
        let id = given["id"].as_str().unwrap_or_default();
        let quantity = as_int(&given["quantity"]);
        let data = sub.pointer_mut("/items/data").and_then(Value::as_array_mut);
        let Some(item) = data.and_then(|d| d.iter_mut().find(|it| it["id"] == id)) else {
            return Err(refuse(
                format!("No such subscription item: '{id}'"),
                &format!("items[{i}][id]"),
            ));
        };
        if let Some(q) = quantity {
            put(item, "quantity", json!(q));
        }
    }
    previous.entry("items").or_insert(before);
    Ok(())
}

/// What falls due for a test clock's objects, in the order Stripe runs one second's work.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Step {
    TrialWillEnd(String),
    Cancel(String),
    Renew(String),
    Finalize(String),
}

/// The earliest thing due for `clock`'s subscriptions and invoices, with its time.
pub(super) fn next_step(s: &State, clock: &str) -> Option<(i64, Step)> {
    let mut due = Vec::new();
    let live = s.subscriptions.rows.values().filter(|sub| {
        sub["test_clock"] == clock
            && !matches!(
                sub["status"].as_str(),
                Some("canceled" | "incomplete_expired")
            )
    });
    for sub in live {
        let id = sub["id"].as_str().unwrap_or_default().to_owned();
        if let (Some("trialing"), Some(end)) = (sub["status"].as_str(), sub["trial_end"].as_i64()) {
            if !s.clocks.warned.contains(&id) {
                let start = sub["trial_start"].as_i64().unwrap_or(end);
                due.push((
                    (end - TRIAL_WARNING_SECS).max(start),
                    Step::TrialWillEnd(id.clone()),
                ));
            }
        }
        if let Some(at) = sub["cancel_at"].as_i64() {
            due.push((at, Step::Cancel(id.clone())));
        }
        if let Some(end) = first_item(sub)["current_period_end"].as_i64() {
            due.push((end, Step::Renew(id)));
        }
    }
    for (invoice, at) in &s.clocks.drafts {
        let on_clock = s
            .invoices
            .rows
            .get(invoice)
            .is_some_and(|inv| inv["test_clock"] == clock);
        if on_clock {
            due.push((*at, Step::Finalize(invoice.clone())));
        }
    }
    due.into_iter().min()
}

/// How far `clock` may move in one advance: two intervals of its shortest subscription,
/// or two years without one.
pub(super) fn advance_limit(s: &State, clock: &str, frozen: i64) -> i64 {
    s.subscriptions
        .rows
        .values()
        .filter(|sub| sub["test_clock"] == clock && sub["status"] != "canceled")
        .map(|sub| add_intervals(frozen, field(sub, "/items/data/0/price/recurring"), 2))
        .min()
        .unwrap_or_else(|| add_intervals(frozen, &json!({"interval": "year"}), 2))
}

/// Runs one step at the governing clock time.
pub(super) fn apply(s: &mut State, step: Step) {
    match step {
        Step::TrialWillEnd(id) => {
            s.clocks.warned.insert(id.clone());
            if let Some(sub) = s.subscriptions.rows.get(&id).cloned() {
                s.emit("customer.subscription.trial_will_end", &sub, None, None);
            }
        }
        Step::Cancel(id) => cancel(s, &id),
        Step::Renew(id) => renew(s, &id),
        Step::Finalize(invoice) => {
            s.clocks.drafts.remove(&invoice);
            pay(s, &invoice);
        }
    }
}

fn cancel(s: &mut State, id: &str) {
    let now = s.op_now();
    let Some(sub) = s.subscriptions.rows.get_mut(id) else {
        return;
    };
    put(sub, "status", json!("canceled"));
    put(sub, "ended_at", json!(now));
    if sub["canceled_at"].is_null() {
        put(sub, "canceled_at", json!(now));
    }
    put(
        sub,
        "cancellation_details",
        json!({"comment": null, "feedback": null, "reason": "cancellation_requested"}),
    );
    let sub = sub.clone();
    s.emit("customer.subscription.deleted", &sub, None, None);
}

/// The period ends: the next one starts (a trial's end makes the subscription active) and
/// its invoice is drafted, to be paid an hour later.
fn renew(s: &mut State, id: &str) {
    let now = s.op_now();
    let Some(mut sub) = s.subscriptions.rows.get(id).cloned() else {
        return;
    };
    let started = first_item(&sub)["current_period_start"]
        .as_i64()
        .unwrap_or(now);
    let anchor = field(&sub, "/billing_cycle_anchor").as_i64().unwrap_or(now);
    let end = next_period_end(anchor, field(&sub, "/items/data/0/price/recurring"), now);
    let mut previous = Map::new();
    for k in ["items", "latest_invoice"] {
        previous.insert(k.into(), field(&sub, &format!("/{k}")).clone());
    }
    if field(&sub, "/status") != "active" {
        previous.insert("status".into(), field(&sub, "/status").clone());
        put(&mut sub, "status", json!("active"));
    }
    let items = sub.pointer_mut("/items/data").and_then(Value::as_array_mut);
    if let Some(items) = items {
        for item in items {
            put(item, "current_period_start", json!(now));
            put(item, "current_period_end", json!(end));
        }
    }
    let invoice = new_id("in");
    put(&mut sub, "latest_invoice", json!(invoice));
    s.subscriptions.rows.insert(id.to_owned(), sub.clone());
    open_invoice(
        s,
        &sub,
        &invoice,
        "subscription_cycle",
        [(started, now), (now, end)],
    );
    s.clocks.drafts.insert(invoice, now + FINALIZE_AFTER_SECS);
    s.emit(
        "customer.subscription.updated",
        &sub,
        Some(Value::Object(previous)),
        None,
    );
}

/// A past period of `sub` billed as Stripe billed it then (a world's history seeded before
/// a test): an invoice dated at the period's start whose lines bill `quantity` of each
/// item over `period`, paid. `first`: the subscription's first invoice.
pub(super) fn bill_past_period(
    s: &mut State,
    sub: &Value,
    quantity: i64,
    period: (i64, i64),
    first: bool,
) -> String {
    let mut then = sub.clone();
    put(&mut then, "status", json!("active"));
    if let Some(items) = then
        .pointer_mut("/items/data")
        .and_then(Value::as_array_mut)
    {
        for item in items {
            put(item, "quantity", json!(quantity));
        }
    }
    let id = new_id("in");
    let saved = s.under_clock.replace((String::new(), period.0));
    let reason = if first {
        "subscription_create"
    } else {
        "subscription_cycle"
    };
    open_invoice(s, &then, &id, reason, [(period.0, period.0), period]);
    pay(s, &id);
    s.under_clock = saved;
    id
}

/// A new subscription's first invoice, paid at once: nothing during a trial, else its first
/// period in advance.
pub(super) fn bill_first_period(s: &mut State, sub: &Value, invoice: String, service: (i64, i64)) {
    let now = s.op_now();
    open_invoice(
        s,
        sub,
        &invoice,
        "subscription_create",
        [(now, now), service],
    );
    pay(s, &invoice);
}

/// Drafts the invoice `id` of `sub`. `spans` are the invoice's own period (the one that just
/// ended, as Stripe dates subscription invoices) and the service its lines bill.
fn open_invoice(s: &mut State, sub: &Value, id: &str, reason: &str, spans: [(i64, i64); 2]) {
    let now = s.op_now();
    let [(period_start, period_end), (from, to)] = spans;
    let trial = sub["status"] == "trialing";
    let sub_id = sub["id"].clone();
    let customer = s
        .customers
        .rows
        .get(sub["customer"].as_str().unwrap_or_default())
        .cloned()
        .unwrap_or_default();
    let mut lines = Vec::new();
    let mut total = 0;
    for item in field(sub, "/items/data").as_array().into_iter().flatten() {
        let price = &item["price"];
        let quantity = item["quantity"].as_i64().unwrap_or(1);
        // Metered usage is billed in arrears from usage records, which this simulator has none of.
        let amount = if trial || field(price, "/recurring/usage_type") == "metered" {
            0
        } else {
            price["unit_amount"].as_i64().unwrap_or(0) * quantity
        };
        total += amount;
        let mut line = field(&template("invoice"), "/lines/data/0").clone();
        put(&mut line, "id", json!(new_id("il")));
        put(&mut line, "invoice", json!(id));
        put(&mut line, "amount", json!(amount));
        put(&mut line, "subtotal", json!(amount));
        put(&mut line, "currency", price["currency"].clone());
        put(&mut line, "description", Value::Null);
        put(&mut line, "quantity", json!(quantity));
        put(&mut line, "period", json!({"start": from, "end": to}));
        put(&mut line, "discountable", json!(true));
        put(
            &mut line,
            "parent",
            json!({"type": "subscription_item_details", "invoice_item_details": null,
            "subscription_item_details": {"invoice_item": null, "proration": false,
            "proration_details": {"credited_items": null}, "subscription": sub_id,
            "subscription_item": item["id"]}}),
        );
        put(
            &mut line,
            "pricing",
            json!({"type": "price_details", "unit_amount_decimal": price["unit_amount_decimal"],
            "price_details": {"price": price["id"], "product": price["product"]}}),
        );
        lines.push(line);
    }
    let mut inv = template("invoice");
    for (k, v) in [
        ("id", json!(id)),
        ("created", json!(now)),
        ("customer", field(&customer, "/id").clone()),
        ("customer_email", field(&customer, "/email").clone()),
        ("customer_name", field(&customer, "/name").clone()),
        ("currency", sub["currency"].clone()),
        ("billing_reason", json!(reason)),
        ("subscription", sub_id.clone()),
        ("test_clock", sub["test_clock"].clone()),
        ("period_start", json!(period_start)),
        ("period_end", json!(period_end)),
        ("amount_due", json!(total)),
        ("amount_remaining", json!(total)),
        ("amount_paid", json!(0)),
        ("amount_overpaid", json!(0)),
        ("subtotal", json!(total)),
        ("subtotal_excluding_tax", json!(total)),
        ("total", json!(total)),
        ("total_excluding_tax", json!(total)),
        ("status", json!("draft")),
        ("number", Value::Null),
        ("auto_advance", json!(true)),
        (
            "automatically_finalizes_at",
            json!(now + FINALIZE_AFTER_SECS),
        ),
        ("next_payment_attempt", json!(now + FINALIZE_AFTER_SECS)),
        ("due_date", Value::Null),
        ("effective_at", Value::Null),
        ("webhooks_delivered_at", Value::Null),
        ("from_invoice", Value::Null),
        ("last_finalization_error", Value::Null),
        ("shipping_cost", Value::Null),
        ("shipping_details", Value::Null),
        (
            "status_transitions",
            json!({"finalized_at": null, "marked_uncollectible_at": null, "paid_at": null, "voided_at": null}),
        ),
        (
            "parent",
            json!({"type": "subscription_details", "quote_details": null,
            "subscription_details": {"metadata": sub["metadata"], "subscription": sub_id}}),
        ),
        (
            "lines",
            json!({"object": "list", "data": lines, "has_more": false,
            "url": format!("/v1/invoices/{id}/lines")}),
        ),
    ] {
        put(&mut inv, k, v);
    }
    let seq = s.next_seq();
    s.invoices.insert(id, inv.clone(), seq);
    s.emit("invoice.created", &inv, None, None);
}

/// Finalizes the draft `id` (numbered from its customer's sequence) and charges it.
fn pay(s: &mut State, id: &str) {
    let now = s.op_now();
    let Some(customer) = s
        .invoices
        .rows
        .get(id)
        .and_then(|inv| inv["customer"].as_str())
        .map(str::to_owned)
    else {
        return;
    };
    let number = s.customers.rows.get_mut(&customer).map(|c| {
        let seq = c["next_invoice_sequence"].as_i64().unwrap_or(1);
        put(c, "next_invoice_sequence", json!(seq + 1));
        format!(
            "{}-{seq:04}",
            c["invoice_prefix"].as_str().unwrap_or_default()
        )
    });
    let Some(inv) = s.invoices.rows.get_mut(id) else {
        return;
    };
    put(inv, "status", json!("open"));
    put(inv, "number", json!(number));
    put(inv, "effective_at", json!(now));
    put(inv, "auto_advance", json!(false));
    put(inv, "automatically_finalizes_at", Value::Null);
    put(inv, "webhooks_delivered_at", json!(now));
    if let Some(t) = inv.get_mut("status_transitions") {
        put(t, "finalized_at", json!(now));
    }
    let finalized = inv.clone();
    let due = inv["amount_due"].as_i64().unwrap_or(0);
    put(inv, "status", json!("paid"));
    put(inv, "attempted", json!(true));
    put(inv, "attempt_count", json!(i64::from(due > 0)));
    put(inv, "amount_paid", json!(due));
    put(inv, "amount_remaining", json!(0));
    put(inv, "next_payment_attempt", Value::Null);
    if let Some(t) = inv.get_mut("status_transitions") {
        put(t, "paid_at", json!(now));
    }
    let paid = inv.clone();
    s.emit("invoice.finalized", &finalized, None, None);
    s.emit("invoice.paid", &paid, None, None);
    s.emit("invoice.payment_succeeded", &paid, None, None);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp()
    }

    #[test]
    fn monthly_periods_keep_the_anchor_day_or_the_month_end() {
        let monthly = json!({"interval": "month", "interval_count": 1});
        let anchor = day("2024-01-31T10:00:00Z");
        assert_eq!(
            add_intervals(anchor, &monthly, 1),
            day("2024-02-29T10:00:00Z")
        );
        assert_eq!(
            add_intervals(anchor, &monthly, 2),
            day("2024-03-31T10:00:00Z")
        );
        assert_eq!(
            next_period_end(anchor, &monthly, day("2024-02-29T10:00:00Z")),
            day("2024-03-31T10:00:00Z")
        );
        let yearly = json!({"interval": "year", "interval_count": 1});
        assert_eq!(
            add_intervals(anchor, &yearly, 1),
            day("2025-01-31T10:00:00Z")
        );
        let fortnight = json!({"interval": "week", "interval_count": 2});
        assert_eq!(add_intervals(anchor, &fortnight, 1), anchor + 14 * 86_400);
    }

    #[test]
    fn cancel_at_period_end_sets_cancel_at_and_resuming_clears_it() {
        let mut sub = json!({"status": "active", "cancel_at": null, "canceled_at": null,
            "cancel_at_period_end": "true",
            "items": {"data": [{"current_period_end": 500}]}});
        let mut previous = Map::new();
        schedule_cancellation(&mut sub, &mut previous, 100);
        assert_eq!(
            (
                &sub["cancel_at"],
                &sub["canceled_at"],
                &sub["cancel_at_period_end"]
            ),
            (&json!(500), &json!(100), &json!(true))
        );
        assert_eq!(previous["cancel_at"], Value::Null);
        put(&mut sub, "cancel_at_period_end", json!("false"));
        let mut asked = Map::from_iter([("cancel_at_period_end".to_owned(), json!(true))]);
        schedule_cancellation(&mut sub, &mut asked, 200);
        assert_eq!(
            (&sub["cancel_at"], &sub["canceled_at"]),
            (&Value::Null, &Value::Null)
        );
    }
}
