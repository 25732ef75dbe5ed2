//! The MRR movement bridge over a period and the retention rates read from it (KPIS.md,
//! "Recurring revenue"): logo churn, gross MRR churn, NRR, GRR, expansion and renewal rates.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{Currency, CustomerId, Period, Subscription, SubscriptionStatus};
use super::mrr::{mrr_at, sub_paid_before};
use super::ratio::Ratio;
use super::Kpi;

/// One currency's bridge: every movement is a non-negative amount of minor units, and
/// `end_mrr = start_mrr + new + reactivation + expansion - contraction - churn` by
/// construction (each customer's change lands in exactly one movement).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bridge {
    pub start_mrr: i64,
    pub end_mrr: i64,
    pub new: i64,
    pub reactivation: i64,
    pub expansion: i64,
    pub contraction: i64,
    pub churn: i64,
    /// Customers with MRR > 0 at start, the base of the logo rates.
    pub customers_at_start: u64,
    pub new_customers: BTreeSet<CustomerId>,
    pub reactivated_customers: BTreeSet<CustomerId>,
    pub expanded_customers: BTreeSet<CustomerId>,
    pub contracted_customers: BTreeSet<CustomerId>,
    pub churned_customers: BTreeSet<CustomerId>,
}

impl Bridge {
    /// Holds for every bridge `bridge` builds; the property test checks it.
    pub fn balances(&self) -> bool {
        i128::from(self.start_mrr)
            + i128::from(self.new)
            + i128::from(self.reactivation)
            + i128::from(self.expansion)
            - i128::from(self.contraction)
            - i128::from(self.churn)
            == i128::from(self.end_mrr)
    }

    fn of_customers(&self, n: usize) -> Kpi<Ratio> {
        rate(
            n as i128,
            i128::from(self.customers_at_start),
            "no customer had MRR > 0 at the start",
        )
    }

    fn of_start_mrr(&self, num: i128) -> Kpi<Ratio> {
        rate(num, i128::from(self.start_mrr), "MRR at the start is 0")
    }

    /// Customers churned / customers with MRR > 0 at start.
    pub fn logo_churn_rate(&self) -> Kpi<Ratio> {
        self.of_customers(self.churned_customers.len())
    }

    /// (churn + contraction) / MRR(start).
    pub fn gross_mrr_churn_rate(&self) -> Kpi<Ratio> {
        self.of_start_mrr(i128::from(self.churn) + i128::from(self.contraction))
    }

    /// (MRR(start) + expansion - contraction - churn) / MRR(start): new and reactivated
    /// customers had 0 at start, so they are outside it.
    pub fn nrr(&self) -> Kpi<Ratio> {
        self.of_start_mrr(
            i128::from(self.start_mrr) + i128::from(self.expansion)
                - i128::from(self.contraction)
                - i128::from(self.churn),
        )
    }

    /// (MRR(start) - contraction - churn) / MRR(start).
    pub fn grr(&self) -> Kpi<Ratio> {
        self.of_start_mrr(
            i128::from(self.start_mrr) - i128::from(self.contraction) - i128::from(self.churn),
        )
    }

    /// Customers with expansion / customers with MRR > 0 at start.
    pub fn expansion_rate(&self) -> Kpi<Ratio> {
        self.of_customers(self.expanded_customers.len())
    }
}

fn rate(num: i128, den: i128, why: &str) -> Kpi<Ratio> {
    Kpi::ratio(num, den, why)
}

/// The bridge over `[start, end)` per currency, comparing each customer's MRR at the two
/// instants. New versus reactivation asks whether the customer paid before `start` in any
/// currency: a logo that comes back is not a new logo.
pub fn bridge(subs: &[Subscription], period: Period) -> BTreeMap<Currency, Bridge> {
    let at_start = mrr_at(subs, period.start);
    let at_end = mrr_at(subs, period.end);
    let currencies: BTreeSet<&Currency> = at_start.keys().chain(at_end.keys()).collect();
    // Each customer's subscriptions, indexed once when a first customer starts paying in
    // the period: asking every subscription for every such customer was quadratic.
    let mut by_customer: Option<std::collections::HashMap<&str, Vec<&Subscription>>> = None;
    let mut out = BTreeMap::new();
    for cur in currencies {
        let s = at_start.get(cur).cloned().unwrap_or_default();
        let e = at_end.get(cur).cloned().unwrap_or_default();
        let mut b = Bridge {
            start_mrr: s.total,
            end_mrr: e.total,
            customers_at_start: s.by_customer.len() as u64,
            ..Bridge::default()
        };
        let customers: BTreeSet<&CustomerId> =
            s.by_customer.keys().chain(e.by_customer.keys()).collect();
        for c in customers {
            let (m0, m1) = (s.customer(c), e.customer(c));
            if m0 == 0 && m1 > 0 {
                let index = by_customer.get_or_insert_with(|| {
                    let mut m: std::collections::HashMap<&str, Vec<&Subscription>> =
                        std::collections::HashMap::new();
                    for s in subs {
                        m.entry(s.customer.as_str()).or_default().push(s);
                    }
                    m
                });
                let before = index
                    .get(c.as_str())
                    .is_some_and(|own| own.iter().any(|s| sub_paid_before(s, period.start)));
                if before {
                    b.reactivation += m1;
                    b.reactivated_customers.insert(c.clone());
                } else {
                    b.new += m1;
                    b.new_customers.insert(c.clone());
                }
            } else if m0 > 0 && m1 == 0 {
                b.churn += m0;
                b.churned_customers.insert(c.clone());
            } else if m1 > m0 {
                b.expansion += m1 - m0;
                b.expanded_customers.insert(c.clone());
            } else if m1 < m0 {
                b.contraction += m0 - m1;
                b.contracted_customers.insert(c.clone());
            }
        }
        out.insert(cur.clone(), b);
    }
    out
}

/// Renewal rate per currency: of the billing periods that ended within `period`, the share
/// after which the subscription continued. A period end counts when the state in effect just
/// before it names it as `current_period_end` and the subscription was live then; it
/// continued when the state at that instant is neither canceled, incomplete nor ended. Only
/// period ends the history records are seen: a renewal the source never reported is not
/// invented.
pub fn renewal_rate(subs: &[Subscription], period: Period) -> BTreeMap<Currency, Kpi<Ratio>> {
    let mut counts: BTreeMap<Currency, (i128, i128)> = BTreeMap::new();
    for sub in subs {
        let ends: BTreeSet<_> = sub
            .states
            .iter()
            .map(|s| s.current_period_end)
            .filter(|e| period.contains(*e))
            .collect();
        for end in ends {
            let Some(before) = sub.state_before(end) else {
                continue;
            };
            let live = before.current_period_end == end
                && !matches!(
                    before.status,
                    SubscriptionStatus::Canceled | SubscriptionStatus::Incomplete
                )
                && before.ended_at.is_none_or(|e| e >= end);
            if !live {
                continue;
            }
            let continued = sub.state_at(end).is_some_and(|s| {
                !matches!(
                    s.status,
                    SubscriptionStatus::Canceled | SubscriptionStatus::Incomplete
                ) && s.ended_at.is_none_or(|e| e > end)
            });
            let c = counts.entry(sub.currency.clone()).or_insert((0, 0));
            c.1 += 1;
            if continued {
                c.0 += 1;
            }
        }
    }
    counts
        .into_iter()
        .map(|(cur, (renewed, due))| {
            (
                cur,
                rate(renewed, due, "no billing period ended in the period"),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use std::num::NonZeroU32;

    use chrono::{Duration, TimeZone, Utc};
    use proptest::prelude::*;

    use super::*;
    use crate::kpi::model::{Discount, Interval, Item, SubscriptionState};

    const STATUSES: [SubscriptionStatus; 7] = [
        SubscriptionStatus::Trialing,
        SubscriptionStatus::Active,
        SubscriptionStatus::PastDue,
        SubscriptionStatus::Unpaid,
        SubscriptionStatus::Paused,
        SubscriptionStatus::Canceled,
        SubscriptionStatus::Incomplete,
    ];
    const INTERVALS: [Interval; 4] = [
        Interval::Day,
        Interval::Week,
        Interval::Month,
        Interval::Year,
    ];

    fn item() -> impl Strategy<Value = Item> {
        (0i64..200_000, 0u64..6, 0usize..4, 1u32..4, any::<bool>()).prop_map(
            |(unit_amount, quantity, i, n, metered)| Item {
                unit_amount,
                quantity,
                interval: INTERVALS[i],
                interval_count: NonZeroU32::new(n).unwrap(),
                metered: metered && quantity == 1,
            },
        )
    }

    fn discount() -> impl Strategy<Value = Option<Discount>> {
        prop_oneof![
            Just(None),
            (0u32..=10_000).prop_map(|bp| Some(Discount::PercentOff(bp))),
            (0i64..50_000, 0usize..4).prop_map(|(amount, i)| Some(Discount::AmountOff {
                amount,
                interval: INTERVALS[i],
                interval_count: NonZeroU32::new(1).unwrap(),
            })),
        ]
    }

    fn state() -> impl Strategy<Value = SubscriptionState> {
        (
            0i64..200,
            0usize..7,
            prop::collection::vec(item(), 0..3),
            discount(),
            prop::option::of(0i64..200),
        )
            .prop_map(|(day, s, items, discount, end)| {
                let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
                let at = t0 + Duration::days(day);
                SubscriptionState {
                    effective_at: at,
                    status: STATUSES[s],
                    items,
                    discount,
                    current_period_start: at,
                    current_period_end: at + Duration::days(30),
                    canceled_at: None,
                    ended_at: end.map(|e| t0 + Duration::days(e)),
                }
            })
    }

    fn subscription() -> impl Strategy<Value = Subscription> {
        (
            0usize..5,
            any::<bool>(),
            prop::collection::vec(state(), 1..6),
        )
            .prop_map(|(c, eur, states)| Subscription {
                id: String::new(),
                customer: format!("c{c}"),
                currency: if eur { "EUR" } else { "USD" }.into(),
                states,
            })
    }

    proptest! {
        #[test]
        fn the_bridge_always_balances(
            subs in prop::collection::vec(subscription(), 0..10),
            a in 0i64..220,
            len in 0i64..120,
        ) {
            let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
            let period = Period::new(t0 + Duration::days(a), t0 + Duration::days(a + len));
            let start = mrr_at(&subs, period.start);
            let end = mrr_at(&subs, period.end);
            for (cur, b) in bridge(&subs, period) {
                prop_assert!(b.balances(), "{cur}: {b:?}");
                prop_assert_eq!(b.start_mrr, start.get(&cur).map_or(0, |s| s.total));
                prop_assert_eq!(b.end_mrr, end.get(&cur).map_or(0, |s| s.total));
                for m in [b.new, b.reactivation, b.expansion, b.contraction, b.churn] {
                    prop_assert!(m >= 0);
                }
            }
        }
    }
}
