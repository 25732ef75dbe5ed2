//! MRR as of an instant (MODEL.md's rule) and ARR, per customer and per currency.

use std::collections::BTreeMap;

use super::model::{Currency, CustomerId, Discount, Subscription, SubscriptionState, Timestamp};
use super::ratio::Ratio;

/// The MRR of one subscription state, in minor units, before the status and end are looked
/// at: items normalized to a month, the discount applied, floored at 0, rounded half to even
/// once at the end (MODEL.md).
pub fn state_mrr(state: &SubscriptionState) -> i64 {
    let gross = state
        .items
        .iter()
        .filter(|i| !i.metered)
        .fold(Ratio::zero(), |acc, i| {
            let line = i128::from(i.unit_amount) * i128::from(i.quantity);
            acc + Ratio::from_int(line) * i.interval.monthly_factor(i.interval_count)
        });
    let net = match &state.discount {
        None => gross,
        Some(Discount::PercentOff(bp)) => {
            let keep = 10_000 - i128::from((*bp).min(10_000));
            gross * Ratio::new(keep, 10_000).unwrap_or_else(Ratio::zero)
        }
        Some(Discount::AmountOff {
            amount,
            interval,
            interval_count,
        }) => {
            gross - Ratio::from_int(i128::from(*amount)) * interval.monthly_factor(*interval_count)
        }
    };
    let rounded = net.max(Ratio::zero()).round_half_even();
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

/// A subscription's MRR at `t`: 0 before its first state, once ended, and while its status
/// does not contribute (trialing, canceled, incomplete).
pub fn subscription_mrr_at(sub: &Subscription, t: Timestamp) -> i64 {
    match sub.state_at(t) {
        Some(s) if s.status.contributes() && s.ended_at.is_none_or(|e| e > t) => state_mrr(s),
        _ => 0,
    }
}

/// MRR at one instant in one currency.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MrrSnapshot {
    pub total: i64,
    /// Only customers with MRR > 0.
    pub by_customer: BTreeMap<CustomerId, i64>,
}

impl MrrSnapshot {
    /// ARR = 12 x MRR (KPIS.md).
    pub fn arr(&self) -> i64 {
        self.total.saturating_mul(12)
    }

    pub fn customer(&self, c: &str) -> i64 {
        self.by_customer.get(c).copied().unwrap_or(0)
    }
}

/// MRR at `t` per currency: total and per customer.
pub fn mrr_at(subs: &[Subscription], t: Timestamp) -> BTreeMap<Currency, MrrSnapshot> {
    let mut out: BTreeMap<Currency, MrrSnapshot> = BTreeMap::new();
    for sub in subs {
        let m = subscription_mrr_at(sub, t);
        if m == 0 {
            continue;
        }
        let snap = out.entry(sub.currency.clone()).or_default();
        snap.total = snap.total.saturating_add(m);
        let c = snap.by_customer.entry(sub.customer.clone()).or_insert(0);
        *c = c.saturating_add(m);
    }
    out
}

/// Whether the customer had MRR > 0 (any currency) at some instant before `t`. MRR only
/// rises at a state's `effective_at`, so those instants are the ones to look at.
pub fn paid_before(subs: &[Subscription], customer: &str, t: Timestamp) -> bool {
    subs.iter()
        .filter(|s| s.customer == customer)
        .any(|s| sub_paid_before(s, t))
}

/// Whether `s` had MRR > 0 at some instant before `t`.
pub fn sub_paid_before(s: &Subscription, t: Timestamp) -> bool {
    s.states
        .iter()
        .filter(|st| st.effective_at < t)
        .any(|st| subscription_mrr_at(s, st.effective_at) > 0)
}
