//! Stripe objects as `Change`s in Stripe's own field names, plus MRR in exact minor units.
// Every number here comes from the API: arithmetic on it must be checked (issue 25).
#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use revsync_sdk::Change;
use serde_json::{json, Value};

use crate::config::CustomersAs;

/// The metadata key a created customer carries its canonical id under.
pub const REVSYNC_ID: &str = "revsync_id";

/// Which revsync object a Stripe object (its `object` field) belongs to.
pub fn object_for(stripe_object: &str) -> Option<&'static str> {
    match stripe_object {
        "customer" => Some("customers"),
        "subscription" => Some("subscriptions"),
        "invoice" => Some("invoices"),
        _ => None,
    }
}

/// The customer id of a field that is either an id or an expanded object.
fn id_of(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) => json!(s),
        Some(Value::Object(o)) => o.get("id").cloned().unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

fn copy(fields: &mut BTreeMap<String, Value>, obj: &Value, keys: &[&str]) {
    for k in keys {
        fields.insert((*k).to_owned(), obj.get(*k).cloned().unwrap_or(Value::Null));
    }
}

/// A Stripe object (customer, subscription or invoice) as a change observed at `at`.
pub fn to_change(
    obj: &Value,
    at: DateTime<Utc>,
    customers_as: CustomersAs,
) -> Result<Change, String> {
    let id = obj
        .get("id")
        .and_then(Value::as_str)
        .ok_or("object without an id")?;
    let kind = obj
        .get("object")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{id}: no `object` field"))?;
    let object = object_for(kind).ok_or_else(|| format!("{id}: unexpected object `{kind}`"))?;
    let deleted = obj.get("deleted").and_then(Value::as_bool).unwrap_or(false);
    let mut fields = BTreeMap::new();
    if !deleted {
        fields.insert("id".to_owned(), json!(id));
        match kind {
            "customer" => customer_fields(obj, customers_as, &mut fields),
            "subscription" => subscription_fields(obj, &mut fields),
            _ => invoice_fields(obj, &mut fields),
        }
    }
    Ok(Change {
        object: object.to_owned(),
        external_id: id.to_owned(),
        source_updated_at: at,
        fields,
        deleted,
        canonical_id: revsync_sdk::canonical_id_in(obj.pointer("/metadata/revsync_id")),
    })
}

fn customer_fields(obj: &Value, customers_as: CustomersAs, f: &mut BTreeMap<String, Value>) {
    copy(
        f,
        obj,
        &[
            "name",
            "email",
            "phone",
            "description",
            "currency",
            "created",
            "delinquent",
            "metadata",
        ],
    );
    // Flat dotted names, which a mapping reads as they are and a push nests again.
    let address = obj.get("address").cloned().unwrap_or(Value::Null);
    for part in ["line1", "line2", "city", "state", "postal_code", "country"] {
        f.insert(
            format!("address.{part}"),
            address.get(part).cloned().unwrap_or(Value::Null),
        );
    }
    f.insert(
        REVSYNC_ID.into(),
        obj.pointer("/metadata/revsync_id")
            .cloned()
            .unwrap_or(Value::Null),
    );
    // B2C: the customer is the person, and its email is where invoices go: often a
    // personal address, kept apart so it never has to win the person's email.
    if customers_as == CustomersAs::Person {
        f.insert(
            "billing_email".into(),
            obj.get("email").cloned().unwrap_or(Value::Null),
        );
    }
    // B2B: the customer is the company and its email names the billing contact; the
    // contact travels as fields of the organization for the engine to link a person.
    if customers_as == CustomersAs::Organization {
        f.insert(
            "billing_contact_email".into(),
            obj.get("email").cloned().unwrap_or(Value::Null),
        );
        f.insert(
            "billing_contact_name".into(),
            obj.get("name").cloned().unwrap_or(Value::Null),
        );
    }
}

fn subscription_fields(obj: &Value, f: &mut BTreeMap<String, Value>) {
    copy(
        f,
        obj,
        &[
            "status",
            "currency",
            "created",
            "trial_end",
            "cancel_at",
            "canceled_at",
            "ended_at",
            "metadata",
        ],
    );
    f.insert("customer".into(), id_of(obj.get("customer")));
    f.insert(
        "started_at".into(),
        obj.get("start_date").cloned().unwrap_or(Value::Null),
    );
    let items = obj
        .pointer("/items/data")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let first = items.first().cloned().unwrap_or(Value::Null);
    let price = first.get("price").cloned().unwrap_or(Value::Null);
    f.insert(
        "plan".into(),
        price.get("id").cloned().unwrap_or(Value::Null),
    );
    f.insert(
        "interval".into(),
        price
            .pointer("/recurring/interval")
            .cloned()
            .unwrap_or(Value::Null),
    );
    f.insert(
        "interval_count".into(),
        price
            .pointer("/recurring/interval_count")
            .cloned()
            .unwrap_or(Value::Null),
    );
    // Quantities come from the API: a sum that does not fit is unknown, not wrapped.
    let quantity = items
        .iter()
        .filter_map(|i| i.get("quantity").and_then(Value::as_i64))
        .try_fold(0i64, i64::checked_add);
    f.insert("quantity".into(), json!(quantity));
    f.insert(
        "items".into(),
        Value::Array(
            items
                .iter()
                .map(|i| {
                    json!({
                        "price": i.pointer("/price/id"),
                        "quantity": i.get("quantity"),
                        "unit_amount": i.pointer("/price/unit_amount"),
                        "interval": i.pointer("/price/recurring/interval"),
                        "interval_count": i.pointer("/price/recurring/interval_count"),
                        "usage_type": i.pointer("/price/recurring/usage_type"),
                    })
                })
                .collect(),
        ),
    );
    match mrr_minor(obj) {
        Ok(m) => {
            f.insert("mrr".into(), json!(m));
        }
        Err(why) => {
            let id = obj.get("id").and_then(Value::as_str).unwrap_or_default();
            tracing::warn!(subscription = id, reason = %why, "mrr not computed");
            f.insert("mrr".into(), Value::Null);
        }
    }
}

fn invoice_fields(obj: &Value, f: &mut BTreeMap<String, Value>) {
    copy(
        f,
        obj,
        &[
            "number",
            "status",
            "currency",
            "amount_due",
            "amount_paid",
            "amount_remaining",
            "total",
            "created",
            "metadata",
        ],
    );
    f.insert("customer".into(), id_of(obj.get("customer")));
    // Newer API versions moved the subscription under `parent.subscription_details`.
    let sub = match obj.get("subscription") {
        Some(v) if !v.is_null() => id_of(Some(v)),
        _ => id_of(obj.pointer("/parent/subscription_details/subscription")),
    };
    f.insert("subscription".into(), sub);
    let finalized = obj
        .pointer("/status_transitions/finalized_at")
        .cloned()
        .unwrap_or(Value::Null);
    f.insert(
        "issued_at".into(),
        if finalized.is_null() {
            obj.get("created").cloned().unwrap_or(Value::Null)
        } else {
            finalized
        },
    );
    f.insert(
        "due_at".into(),
        obj.get("due_date").cloned().unwrap_or(Value::Null),
    );
    f.insert(
        "paid_at".into(),
        obj.pointer("/status_transitions/paid_at")
            .cloned()
            .unwrap_or(Value::Null),
    );
}

/// An exact fraction; MRR is rounded once, at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ratio {
    num: i128,
    den: i128,
}

/// `None` only for `i128::MIN`, whose magnitude has no `i128`.
fn gcd(a: i128, b: i128) -> Option<i128> {
    let (mut a, mut b) = (a.checked_abs()?, b.checked_abs()?);
    while b != 0 {
        (a, b) = (b, a.checked_rem(b)?);
    }
    Some(a.max(1))
}

// Every step is checked: amounts, quantities and interval counts come from the API, and a
// crafted one must make the MRR unavailable, not panic or wrap into a plausible number.
impl Ratio {
    fn new(num: i128, den: i128) -> Option<Self> {
        if den == 0 {
            return None;
        }
        let g = gcd(num, den)?;
        let s = if den < 0 { -1 } else { 1 };
        Some(Ratio {
            num: num.checked_mul(s)?.checked_div(g)?,
            den: den.checked_mul(s)?.checked_div(g)?,
        })
    }
    fn int(n: i64) -> Self {
        Ratio {
            num: i128::from(n),
            den: 1,
        }
    }
    fn add(self, o: Ratio) -> Option<Ratio> {
        let num = self
            .num
            .checked_mul(o.den)?
            .checked_add(o.num.checked_mul(self.den)?)?;
        Ratio::new(num, self.den.checked_mul(o.den)?)
    }
    fn mul(self, o: Ratio) -> Option<Ratio> {
        Ratio::new(self.num.checked_mul(o.num)?, self.den.checked_mul(o.den)?)
    }
    /// Half to even: 2.5 -> 2, 3.5 -> 4 (values here are never negative).
    fn round_half_even(self) -> Option<i128> {
        let q = self.num.checked_div_euclid(self.den)?;
        let r = self.num.checked_rem_euclid(self.den)?;
        Some(match r.checked_mul(2)?.cmp(&self.den) {
            std::cmp::Ordering::Less => q,
            std::cmp::Ordering::Greater => q.checked_add(1)?,
            std::cmp::Ordering::Equal => q.checked_add(q & 1)?,
        })
    }
}

/// A decimal such as `25.5` or `"1999.5"` as an exact fraction (no floats touch money).
fn decimal(v: &Value) -> Option<Ratio> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
    if frac.len() > 12 {
        return None;
    }
    let digits: i128 = format!("{int}{frac}").parse().ok()?;
    Ratio::new(digits, 10i128.checked_pow(u32::try_from(frac.len()).ok()?)?)
}

/// Per-month factor of a billing interval: month / n, year / 12n, week 52/12n, day 365/12n.
fn per_month(interval: &str, count: i64) -> Result<Ratio, String> {
    if count < 1 {
        return Err(format!("interval_count {count}"));
    }
    let n = i128::from(count);
    let (num, months) = match interval {
        "month" => (1, 1),
        "year" => (1, 12),
        "week" => (52, 12),
        "day" => (365, 12),
        other => return Err(format!("unknown interval `{other}`")),
    };
    n.checked_mul(months)
        .and_then(|den| Ratio::new(num, den))
        .ok_or_else(|| format!("interval_count {count}"))
}

/// Monthly recurring revenue in minor units (MODEL.md): 0 for trialing, canceled and
/// incomplete subscriptions and for metered prices; discounts from expanded discount
/// objects (`discount`, `discounts[]`) reduce it. Unexpanded discount ids cannot be
/// priced and are ignored (the simulator and `fetch` expand them).
pub fn mrr_minor(sub: &Value) -> Result<i64, String> {
    let status = sub.get("status").and_then(Value::as_str).unwrap_or("");
    if matches!(
        status,
        "trialing" | "canceled" | "incomplete" | "incomplete_expired"
    ) {
        return Ok(0);
    }
    let items = sub
        .pointer("/items/data")
        .and_then(Value::as_array)
        .ok_or("no items")?;
    const OVERFLOW: &str = "mrr overflows";
    let mut total = Ratio::int(0);
    let mut period: Option<Ratio> = None;
    for item in items {
        let price = item.get("price").ok_or("item without a price")?;
        let recurring = price.get("recurring").ok_or("price is not recurring")?;
        if recurring.get("usage_type").and_then(Value::as_str) == Some("metered") {
            continue;
        }
        let unit = match price.get("unit_amount") {
            Some(Value::Number(n)) => Ratio::int(n.as_i64().ok_or("unit_amount")?),
            _ => price
                .get("unit_amount_decimal")
                .and_then(decimal)
                .ok_or("price without unit_amount (tiered prices are not priced)")?,
        };
        let qty = item.get("quantity").and_then(Value::as_i64).unwrap_or(1);
        let factor = per_month(
            recurring
                .get("interval")
                .and_then(Value::as_str)
                .unwrap_or(""),
            recurring
                .get("interval_count")
                .and_then(Value::as_i64)
                .unwrap_or(1),
        )?;
        period.get_or_insert(factor);
        total = unit
            .mul(Ratio::int(qty))
            .and_then(|r| r.mul(factor))
            .and_then(|r| total.add(r))
            .ok_or(OVERFLOW)?;
    }
    let mut discounts: Vec<&Value> = Vec::new();
    if let Some(d) = sub.get("discount").filter(|d| d.is_object()) {
        discounts.push(d);
    }
    if let Some(list) = sub.get("discounts").and_then(Value::as_array) {
        discounts.extend(list.iter().filter(|d| d.is_object()));
    }
    for d in discounts {
        let coupon = d
            .get("coupon")
            .filter(|c| c.is_object())
            .or_else(|| d.pointer("/source/coupon").filter(|c| c.is_object()));
        let Some(coupon) = coupon else { continue };
        if let Some(p) = coupon.get("percent_off").and_then(decimal) {
            let den = p.den.checked_mul(100).ok_or(OVERFLOW)?;
            total = den
                .checked_sub(p.num)
                .and_then(|num| Ratio::new(num, den))
                .and_then(|r| total.mul(r))
                .ok_or(OVERFLOW)?;
        } else if let Some(off) = coupon.get("amount_off").and_then(Value::as_i64) {
            // An amount off applies once per invoice, i.e. once per billing period.
            let per = period.unwrap_or(Ratio::int(1));
            total = Ratio::int(off)
                .mul(Ratio::int(-1))
                .and_then(|r| r.mul(per))
                .and_then(|r| total.add(r))
                .ok_or(OVERFLOW)?;
        }
    }
    if total.num < 0 {
        total = Ratio::int(0);
    }
    total
        .round_half_even()
        .and_then(|m| i64::try_from(m).ok())
        .ok_or_else(|| OVERFLOW.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(status: &str, items: &[(i64, i64, &str, i64)]) -> Value {
        json!({
            "id": "sub_1", "object": "subscription", "status": status, "customer": "cus_1",
            "currency": "usd",
            "items": {"object": "list", "data": items.iter().map(|(amount, qty, interval, count)| json!({
                "object": "subscription_item", "quantity": qty,
                "price": {"id": "price_1", "unit_amount": amount,
                          "recurring": {"interval": interval, "interval_count": count, "usage_type": "licensed"}}
            })).collect::<Vec<_>>()}
        })
    }

    #[test]
    fn monthly_yearly_and_quantities_are_exact() {
        assert_eq!(
            mrr_minor(&sub("active", &[(2000, 1, "month", 1)])),
            Ok(2000)
        );
        assert_eq!(
            mrr_minor(&sub("active", &[(2000, 3, "month", 1)])),
            Ok(6000)
        );
        // 12,000 a year is 1,000 a month.
        assert_eq!(
            mrr_minor(&sub("active", &[(12_000, 1, "year", 1)])),
            Ok(1000)
        );
        // 9,999 x 7 / 12 = 5832.75 -> 5833
        assert_eq!(
            mrr_minor(&sub("active", &[(9_999, 7, "year", 1)])),
            Ok(5833)
        );
        // Quarterly: 3,000 / 3.
        assert_eq!(
            mrr_minor(&sub("active", &[(3_000, 1, "month", 3)])),
            Ok(1000)
        );
        // Weekly: 1,000 x 52 / 12 = 4333.33 -> 4333
        assert_eq!(
            mrr_minor(&sub("active", &[(1_000, 1, "week", 1)])),
            Ok(4333)
        );
        // Daily: 100 x 365 / 12 = 3041.67 -> 3042
        assert_eq!(mrr_minor(&sub("active", &[(100, 1, "day", 1)])), Ok(3042));
    }

    #[test]
    fn rounding_is_half_to_even_once_at_the_end() {
        // 30 / 12 = 2.5 -> 2; 42 / 12 = 3.5 -> 4.
        assert_eq!(mrr_minor(&sub("active", &[(30, 1, "year", 1)])), Ok(2));
        assert_eq!(mrr_minor(&sub("active", &[(42, 1, "year", 1)])), Ok(4));
        // Two items of 2.5 each: 5 exactly (per-item rounding would say 4).
        assert_eq!(
            mrr_minor(&sub("active", &[(30, 1, "year", 1), (30, 1, "year", 1)])),
            Ok(5)
        );
    }

    #[test]
    fn inactive_and_metered_contribute_nothing() {
        for status in ["trialing", "canceled", "incomplete", "incomplete_expired"] {
            assert_eq!(
                mrr_minor(&sub(status, &[(2000, 1, "month", 1)])),
                Ok(0),
                "{status}"
            );
        }
        let mut s = sub("active", &[(2000, 1, "month", 1), (500, 1, "month", 1)]);
        s["items"]["data"][1]["price"]["recurring"]["usage_type"] = json!("metered");
        assert_eq!(mrr_minor(&s), Ok(2000));
    }

    #[test]
    fn discounts_reduce_mrr() {
        let mut s = sub("active", &[(10_000, 1, "month", 1)]);
        s["discounts"] = json!([{"object": "discount", "source": {"type": "coupon",
            "coupon": {"object": "coupon", "percent_off": 25.5, "amount_off": null}}}]);
        assert_eq!(mrr_minor(&s), Ok(7450));
        let mut s = sub("active", &[(120_000, 1, "year", 1)]);
        s["discount"] = json!({"object": "discount", "coupon": {"object": "coupon", "percent_off": null, "amount_off": 12_000}});
        // (120,000 - 12,000) / 12
        assert_eq!(mrr_minor(&s), Ok(9000));
    }

    #[test]
    fn absurd_amounts_make_mrr_unavailable_not_a_panic() {
        let too_big = Err("mrr overflows".to_owned());
        // i64::MAX x i64::MAX fits i128; times 365 days does not.
        assert_eq!(
            mrr_minor(&sub("active", &[(i64::MAX, i64::MAX, "day", 1)])),
            too_big
        );
        // Two such items overflow the sum, one alone the final i64.
        let max = (i64::MAX, i64::MAX, "month", 1);
        assert_eq!(mrr_minor(&sub("active", &[max, max])), too_big);
        assert_eq!(mrr_minor(&sub("active", &[max])), too_big);
        assert!(mrr_minor(&sub("active", &[(1, 1, "year", i64::MAX)])).is_ok());
        let mut s = sub("active", &[(i64::MAX, 1, "month", 1)]);
        s["discount"] =
            json!({"coupon": {"percent_off": "-99999999999999999999999999999999999.5"}});
        assert_eq!(mrr_minor(&s), too_big);
        s["discount"] = json!({"coupon": {"amount_off": i64::MIN}});
        assert!(mrr_minor(&s).is_err());
        // A whole subscription record still maps, with its MRR null.
        let ch = to_change(
            &sub("active", &[max, max]),
            Utc::now(),
            CustomersAs::Organization,
        )
        .unwrap();
        assert_eq!(ch.fields["mrr"], Value::Null);
        assert_eq!(ch.fields["quantity"], Value::Null);
    }

    #[test]
    fn a_customer_keeps_stripes_names_and_its_canonical_id() {
        let c = json!({"id": "cus_1", "object": "customer", "name": "Acme", "email": "ap@acme.com",
                       "metadata": {"revsync_id": "0190"}, "created": 1});
        let ch = to_change(&c, Utc::now(), CustomersAs::Organization).unwrap();
        assert_eq!(ch.object, "customers");
        assert_eq!(ch.fields["name"], json!("Acme"));
        assert_eq!(ch.fields[REVSYNC_ID], json!("0190"));
        assert_eq!(ch.fields["billing_contact_email"], json!("ap@acme.com"));
        assert!(!ch.fields.contains_key("billing_email"));
        let ch = to_change(&c, Utc::now(), CustomersAs::Person).unwrap();
        assert!(!ch.fields.contains_key("billing_contact_email"));
        assert_eq!(ch.fields["billing_email"], json!("ap@acme.com"));
        let gone = json!({"id": "cus_1", "object": "customer", "deleted": true});
        assert!(
            to_change(&gone, Utc::now(), CustomersAs::Person)
                .unwrap()
                .deleted
        );
    }
}
