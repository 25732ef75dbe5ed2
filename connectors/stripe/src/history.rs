//! A subscription's past as Stripe itself dates it (issue 20): read when the connector reads
//! subscriptions from the beginning, so the KPIs of months before the first sync are known.
//!
//! Two sources, nothing guessed:
//! - the status timeline from the subscription's own timestamps: trialing from
//!   `trial_start` (else active from `start_date`), active from a `trial_end` that passed,
//!   `canceled_at` as it was set, canceled from `ended_at`;
//! - the MRR from its invoices: each paid or open invoice's subscription lines (not
//!   prorations) bill one period of each item; their amounts less their `discount_amounts`,
//!   normalized to a month by the line's price interval (MODEL.md, [`mapping::mrr_minor`]),
//!   are the MRR in effect from the lines' `period.start`.
//!
//! Trialing and canceled states have MRR 0 by MODEL.md's rule. A subscription without an
//! invoice has its status timeline only: no MRR is said before the current read.
// Every number here comes from the API: arithmetic on it must be checked (issue 25).
#![deny(clippy::arithmetic_side_effects)]

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use revsync_sdk::Change;
use serde_json::{json, Value};

use crate::mapping;

/// What one paid or open invoice says the subscription billed from its period start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Billed {
    /// The service period start of its subscription lines (unix seconds).
    pub from: i64,
    /// MRR in minor units (MODEL.md), discounts taken off.
    pub mrr: i64,
    /// The first line's price id, its interval and the lines' total quantity.
    pub plan: Option<String>,
    pub interval: Option<String>,
    pub interval_count: Option<i64>,
    pub quantity: Option<i64>,
    /// Invoice creation, the tie-break of two invoices of one period start.
    created: i64,
}

/// The price ids an invoice's subscription lines name that `known` does not hold (the
/// connector fetches them once).
pub fn unknown_prices(
    sub_id: &str,
    invoices: &[Value],
    known: &HashMap<String, Value>,
) -> Vec<String> {
    let mut out: Vec<String> = invoices
        .iter()
        .flat_map(|inv| subscription_lines(sub_id, inv))
        .filter(|l| !l.get("price").is_some_and(Value::is_object))
        .filter_map(|l| line_price_id(l).map(str::to_owned))
        .filter(|id| !known.contains_key(id))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The lines of `invoice` that bill `sub_id`'s items for a period: those whose parent is
/// a subscription item of it (API 2025-03-31 and later) or of `type` subscription (before),
/// not prorations.
fn subscription_lines<'a>(sub_id: &'a str, invoice: &'a Value) -> impl Iterator<Item = &'a Value> {
    invoice
        .pointer("/lines/data")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |l| {
            let details = l.pointer("/parent/subscription_item_details");
            let (of_sub, proration) = match details.filter(|d| d.is_object()) {
                Some(d) => (
                    l.pointer("/parent/type").and_then(Value::as_str)
                        == Some("subscription_item_details")
                        && d.get("subscription").and_then(Value::as_str) == Some(sub_id),
                    d.get("proration").and_then(Value::as_bool).unwrap_or(false),
                ),
                None => (
                    l.get("type").and_then(Value::as_str) == Some("subscription")
                        && l.get("subscription").and_then(Value::as_str) == Some(sub_id),
                    l.get("proration").and_then(Value::as_bool).unwrap_or(false),
                ),
            };
            of_sub && !proration
        })
}

fn line_price_id(line: &Value) -> Option<&str> {
    line.pointer("/pricing/price_details/price")
        .and_then(Value::as_str)
        .or_else(|| line.pointer("/price/id").and_then(Value::as_str))
}

/// What each paid or open invoice of `sub_id` billed, oldest period first; `prices` holds
/// the prices its lines name (the subscription's items' and any fetched). An invoice whose
/// lines cannot all be priced (a price not known, more lines than the list embeds) says
/// nothing rather than something partial.
pub fn billed(sub_id: &str, invoices: &[Value], prices: &HashMap<String, Value>) -> Vec<Billed> {
    let mut out: Vec<Billed> = Vec::new();
    for inv in invoices {
        if !matches!(
            inv.get("status").and_then(Value::as_str),
            Some("paid" | "open")
        ) {
            continue;
        }
        let id = inv.get("id").and_then(Value::as_str).unwrap_or_default();
        if inv.pointer("/lines/has_more").and_then(Value::as_bool) == Some(true) {
            tracing::warn!(
                invoice = id,
                "invoice lines not all listed, its mrr is not used"
            );
            continue;
        }
        match invoice_billed(sub_id, inv, prices) {
            Ok(Some(b)) => out.push(b),
            Ok(None) => {}
            Err(why) => tracing::warn!(invoice = id, reason = %why, "invoice mrr not computed"),
        }
    }
    out.sort_by_key(|b| (b.from, b.created));
    // Two invoices of one period start: the later one bills what was in effect.
    let mut kept: Vec<Billed> = Vec::new();
    for b in out {
        match kept.last_mut() {
            Some(last) if last.from == b.from => *last = b,
            _ => kept.push(b),
        }
    }
    kept
}

fn invoice_billed(
    sub_id: &str,
    inv: &Value,
    prices: &HashMap<String, Value>,
) -> Result<Option<Billed>, String> {
    let mut items = Vec::new();
    let mut from: Option<i64> = None;
    let mut quantity: Option<i64> = Some(0);
    let mut first: Option<(Option<String>, Value)> = None;
    for line in subscription_lines(sub_id, inv) {
        let price = match line.get("price").filter(|p| p.is_object()) {
            Some(p) => p.clone(),
            None => {
                let id = line_price_id(line).ok_or("a subscription line without a price")?;
                prices
                    .get(id)
                    .cloned()
                    .ok_or_else(|| format!("price {id} unknown"))?
            }
        };
        let recurring = price
            .get("recurring")
            .cloned()
            .ok_or("a subscription line of a one-time price")?;
        let amount = line
            .get("amount")
            .and_then(Value::as_i64)
            .ok_or("a line without an amount")?;
        let discounts = line
            .get("discount_amounts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|d| d.get("amount").and_then(Value::as_i64))
            .try_fold(0i64, i64::checked_add)
            .ok_or("discounts overflow")?;
        let net = amount.checked_sub(discounts).ok_or("amount overflows")?;
        let start = line
            .pointer("/period/start")
            .and_then(Value::as_i64)
            .ok_or("a line without a period")?;
        from = Some(from.map_or(start, |f| f.min(start)));
        quantity = quantity.and_then(|q| q.checked_add(line.get("quantity")?.as_i64()?));
        first.get_or_insert_with(|| {
            (
                price.get("id").and_then(Value::as_str).map(str::to_owned),
                recurring.clone(),
            )
        });
        // The line bills one period of the item: its amount is the item's price for it.
        items.push(json!({
            "quantity": 1,
            "price": {"unit_amount": net, "recurring": recurring},
        }));
    }
    let (Some(from), Some((plan, recurring))) = (from, first) else {
        return Ok(None);
    };
    let priced = json!({"status": "active", "items": {"data": items}});
    Ok(Some(Billed {
        from,
        mrr: mapping::mrr_minor(&priced)?,
        plan,
        interval: recurring
            .get("interval")
            .and_then(Value::as_str)
            .map(str::to_owned),
        interval_count: recurring.get("interval_count").and_then(Value::as_i64),
        quantity,
        created: inv.get("created").and_then(Value::as_i64).unwrap_or(0),
    }))
}

/// The subscription's past states as changes of its own record, oldest first, each dated
/// at the instant Stripe gives and strictly before `now` (the current read, which follows
/// them). Empty for a subscription that never left `incomplete`: its start is not a fact.
pub fn past_changes(sub: &Value, billed: &[Billed], now: i64) -> Vec<Change> {
    let Some(id) = sub.get("id").and_then(Value::as_str) else {
        return Vec::new();
    };
    if matches!(
        sub.get("status").and_then(Value::as_str),
        Some("incomplete" | "incomplete_expired")
    ) {
        return Vec::new();
    }
    let int = |k: &str| sub.get(k).and_then(Value::as_i64);
    let Some(start) = int("start_date").or_else(|| int("created")) else {
        return Vec::new();
    };
    let ended = int("ended_at").filter(|e| *e < now);
    let canceled = int("canceled_at").filter(|c| *c < now);
    // Status facts, by instant.
    let mut status: BTreeMap<i64, &str> = BTreeMap::new();
    match int("trial_start") {
        Some(trial_start) => {
            status.insert(trial_start, "trialing");
            if let Some(end) = int("trial_end") {
                if end < now && ended.is_none_or(|e| end < e) {
                    status.insert(end, "active");
                }
            }
        }
        None => {
            status.insert(start, "active");
        }
    }
    if let Some(e) = ended {
        status.insert(e, "canceled");
    }
    let mut instants: Vec<i64> = status.keys().copied().collect();
    instants.extend(canceled);
    instants.extend(billed.iter().map(|b| b.from));
    instants.retain(|t| *t < now && *t >= start.min(int("trial_start").unwrap_or(start)));
    instants.sort_unstable();
    instants.dedup();

    let currency = sub.get("currency").cloned().unwrap_or(Value::Null);
    let customer = match sub.get("customer") {
        Some(Value::Object(o)) => o.get("id").cloned().unwrap_or(Value::Null),
        Some(v) => v.clone(),
        None => Value::Null,
    };
    let mut out = Vec::new();
    let mut last: Option<BTreeMap<String, Value>> = None;
    for t in instants {
        let Some(st) = status.range(..=t).next_back().map(|(_, s)| *s) else {
            continue;
        };
        let bill = billed.iter().rev().find(|b| b.from <= t);
        let mut f = BTreeMap::new();
        f.insert("id".to_owned(), json!(id));
        f.insert("status".to_owned(), json!(st));
        f.insert("currency".to_owned(), currency.clone());
        f.insert("customer".to_owned(), customer.clone());
        f.insert(
            "created".to_owned(),
            sub.get("created").cloned().unwrap_or(Value::Null),
        );
        f.insert("started_at".to_owned(), json!(start));
        f.insert(
            "trial_end".to_owned(),
            sub.get("trial_end").cloned().unwrap_or(Value::Null),
        );
        f.insert(
            "canceled_at".to_owned(),
            json!(canceled.filter(|c| *c <= t)),
        );
        f.insert("ended_at".to_owned(), json!(ended.filter(|e| *e <= t)));
        // MRR only where it is a fact: by MODEL.md's rule, or from an invoice in effect.
        // Without any invoice, none is said (a trial's 0 would run on into the months
        // after it).
        let mrr = match (st, bill) {
            _ if billed.is_empty() => None,
            ("trialing" | "canceled", _) => Some(0),
            (_, Some(b)) => Some(b.mrr),
            (_, None) => None,
        };
        if let Some(m) = mrr {
            f.insert("mrr".to_owned(), json!(m));
        }
        if let Some(b) = bill {
            f.insert("plan".to_owned(), json!(b.plan));
            f.insert("interval".to_owned(), json!(b.interval));
            f.insert("interval_count".to_owned(), json!(b.interval_count));
            f.insert("quantity".to_owned(), json!(b.quantity));
        }
        if last.as_ref() == Some(&f) {
            continue;
        }
        last = Some(f.clone());
        let Some(at) = DateTime::<Utc>::from_timestamp(t, 0) else {
            continue;
        };
        out.push(Change {
            object: "subscriptions".to_owned(),
            external_id: id.to_owned(),
            source_updated_at: at,
            fields: f,
            deleted: false,
            canonical_id: revsync_sdk::canonical_id_in(sub.pointer("/metadata/revsync_id")),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sub: &str, price: &str, amount: i64, qty: i64, start: i64) -> Value {
        json!({"object": "line_item", "amount": amount, "quantity": qty,
            "discount_amounts": [], "period": {"start": start, "end": start.saturating_add(100)},
            "pricing": {"type": "price_details", "price_details": {"price": price, "product": "prod_1"}},
            "parent": {"type": "subscription_item_details", "subscription_item_details": {
                "subscription": sub, "subscription_item": "si_1", "proration": false}}})
    }

    fn invoice(status: &str, created: i64, lines: Vec<Value>) -> Value {
        json!({"id": format!("in_{created}"), "object": "invoice", "status": status,
            "created": created, "lines": {"object": "list", "has_more": false, "data": lines}})
    }

    fn prices() -> HashMap<String, Value> {
        HashMap::from([
            (
                "price_m".to_owned(),
                json!({"id": "price_m", "recurring": {"interval": "month", "interval_count": 1}}),
            ),
            (
                "price_y".to_owned(),
                json!({"id": "price_y", "recurring": {"interval": "year", "interval_count": 1}}),
            ),
        ])
    }

    #[test]
    fn invoice_lines_give_the_mrr_from_their_period_start() {
        let mut discounted = line("sub_1", "price_y", 120_000, 1, 300);
        discounted["discount_amounts"] = json!([{"amount": 12_000, "discount": "di_1"}]);
        let mut proration = line("sub_1", "price_m", 999, 1, 250);
        proration["parent"]["subscription_item_details"]["proration"] = json!(true);
        let invoices = vec![
            invoice("paid", 10, vec![line("sub_1", "price_m", 6_000, 3, 100)]),
            invoice("void", 20, vec![line("sub_1", "price_m", 9_000, 1, 200)]),
            invoice(
                "open",
                30,
                vec![discounted, proration, line("sub_2", "price_m", 1, 1, 300)],
            ),
        ];
        let b = billed("sub_1", &invoices, &prices());
        // 6,000 a month; (120,000 - 12,000) / 12 = 9,000; the void invoice, the proration
        // and another subscription's line say nothing.
        assert_eq!(
            b.iter()
                .map(|b| (b.from, b.mrr, b.quantity))
                .collect::<Vec<_>>(),
            vec![(100, 6_000, Some(3)), (300, 9_000, Some(1))]
        );
        assert!(unknown_prices("sub_1", &invoices, &prices()).is_empty());
        let mut few = prices();
        few.remove("price_y");
        assert_eq!(unknown_prices("sub_1", &invoices, &few), vec!["price_y"]);
        // An invoice that cannot be priced is left out, not half counted.
        assert_eq!(billed("sub_1", &invoices, &few).len(), 1);
    }

    #[test]
    fn a_trial_renewals_and_a_cancel_at_period_end_make_dated_states() {
        let sub = json!({"id": "sub_1", "object": "subscription", "status": "canceled",
            "currency": "usd", "customer": "cus_1", "created": 0, "start_date": 0,
            "trial_start": 0, "trial_end": 100, "canceled_at": 250, "ended_at": 400});
        let billed = vec![
            Billed {
                from: 0,
                mrr: 0,
                plan: None,
                interval: None,
                interval_count: None,
                quantity: Some(1),
                created: 0,
            },
            Billed {
                from: 100,
                mrr: 2_000,
                plan: None,
                interval: None,
                interval_count: None,
                quantity: Some(1),
                created: 100,
            },
            Billed {
                from: 300,
                mrr: 6_000,
                plan: None,
                interval: None,
                interval_count: None,
                quantity: Some(3),
                created: 300,
            },
        ];
        let got: Vec<(i64, Value, Value, Value)> = past_changes(&sub, &billed, 1_000)
            .into_iter()
            .map(|c| {
                (
                    c.source_updated_at.timestamp(),
                    c.fields["status"].clone(),
                    c.fields.get("mrr").cloned().unwrap_or(Value::Null),
                    c.fields["canceled_at"].clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (0, json!("trialing"), json!(0), Value::Null),
                (100, json!("active"), json!(2_000), Value::Null),
                (250, json!("active"), json!(2_000), json!(250)),
                (300, json!("active"), json!(6_000), json!(250)),
                (400, json!("canceled"), json!(0), json!(250)),
            ]
        );
        // Nothing at or after the current read; no MRR without an invoice.
        assert_eq!(past_changes(&sub, &billed, 100).len(), 1);
        let bare = past_changes(&sub, &[], 1_000);
        assert_eq!(bare.len(), 4);
        assert!(bare.iter().all(|c| !c.fields.contains_key("mrr")));
    }
}
