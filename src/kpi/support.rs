//! Support signals (KPIS.md): tickets per customer, first response and resolution times per
//! period, and the customers whose revenue is at risk.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Duration;

use super::model::{CustomerId, Dated, History, Period, SubscriptionStatus, Timestamp};
use super::mrr::mrr_at;
use super::ratio::Ratio;
use super::retention::bridge;
use super::Kpi;

/// A ticket as its history tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub id: String,
    /// The organization it was raised for, else its requester.
    pub customer: Option<CustomerId>,
    pub created_at: Timestamp,
    pub first_response_at: Option<Timestamp>,
    pub solved_at: Option<Timestamp>,
    pub priorities: Vec<Dated<String>>,
}

impl Ticket {
    fn priority_at(&self, t: Timestamp) -> Option<&str> {
        self.priorities
            .iter()
            .filter(|p| p.at <= t)
            .max_by_key(|p| p.at)
            .map(|p| p.value.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupportStats {
    /// Tickets created in the period.
    pub tickets: u64,
    /// Those tickets over the customers who raised them.
    pub tickets_per_customer: Kpi<Ratio>,
    /// Median hours from creation to first response, over tickets created in the period
    /// that had one.
    pub median_first_response_hours: Kpi<Ratio>,
    /// Median hours from creation to solved, over tickets solved in the period.
    pub median_resolution_hours: Kpi<Ratio>,
}

fn hours(from: Timestamp, to: Timestamp) -> Option<Ratio> {
    Ratio::new(i128::from((to - from).num_seconds().max(0)), 3_600)
}

fn median(mut xs: Vec<Ratio>) -> Option<Ratio> {
    xs.sort();
    super::pipeline::median(&xs)
}

pub fn support(tickets: &[Ticket], period: Period) -> SupportStats {
    let created: Vec<&Ticket> = tickets
        .iter()
        .filter(|t| period.contains(t.created_at))
        .collect();
    let customers: BTreeSet<&str> = created
        .iter()
        .filter_map(|t| t.customer.as_deref())
        .collect();
    let with_customer = created.iter().filter(|t| t.customer.is_some()).count();
    let first = created
        .iter()
        .filter_map(|t| hours(t.created_at, t.first_response_at?))
        .collect();
    let solved = tickets
        .iter()
        .filter_map(|t| {
            let s = t.solved_at.filter(|s| period.contains(*s))?;
            hours(t.created_at, s)
        })
        .collect();
    SupportStats {
        tickets: created.len() as u64,
        tickets_per_customer: Kpi::ratio(
            with_customer as i128,
            customers.len() as i128,
            "no ticket in the period names its customer",
        ),
        median_first_response_hours: Kpi::from_option(
            median(first),
            "no ticket created in the period has a first response time",
        ),
        median_resolution_hours: Kpi::from_option(
            median(solved),
            "no ticket was solved in the period",
        ),
    }
}

/// A paying customer showing a sign of leaving.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AtRisk {
    pub customer: CustomerId,
    /// Its MRR at the instant asked, per currency.
    pub mrr: BTreeMap<String, i64>,
    pub reasons: Vec<String>,
}

/// Customers with MRR > 0 at `at` and any of: a subscription past_due or unpaid; more than
/// `urgent_over` urgent or high tickets created in the 30 days before `at`; contraction over
/// `last_period`. Highest MRR first (summed across currencies, for the order only).
pub fn at_risk(h: &History, at: Timestamp, urgent_over: usize, last_period: Period) -> Vec<AtRisk> {
    let mut mrr: BTreeMap<CustomerId, BTreeMap<String, i64>> = BTreeMap::new();
    for (cur, snap) in mrr_at(&h.subscriptions, at) {
        for (c, v) in snap.by_customer {
            mrr.entry(c).or_default().insert(cur.clone(), v);
        }
    }
    let mut reasons: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for s in &h.subscriptions {
        if let Some(st) = s.state_at(at) {
            let why = match st.status {
                SubscriptionStatus::PastDue => "a subscription is past due",
                SubscriptionStatus::Unpaid => "a subscription is unpaid",
                _ => continue,
            };
            let r = reasons.entry(s.customer.as_str()).or_default();
            if !r.iter().any(|x| x == why) {
                r.push(why.to_owned());
            }
        }
    }
    let month = Period::new(at - Duration::days(30), at);
    let mut urgent: BTreeMap<&str, usize> = BTreeMap::new();
    for t in h.tickets.iter().filter(|t| month.contains(t.created_at)) {
        if let (Some(c), Some("urgent" | "high")) = (t.customer.as_deref(), t.priority_at(at)) {
            *urgent.entry(c).or_default() += 1;
        }
    }
    for (c, n) in urgent.into_iter().filter(|(_, n)| *n > urgent_over) {
        reasons
            .entry(c)
            .or_default()
            .push(format!("{n} urgent or high tickets in the last 30 days"));
    }
    let bridges = bridge(&h.subscriptions, last_period);
    for b in bridges.values() {
        for c in &b.contracted_customers {
            reasons
                .entry(c.as_str())
                .or_default()
                .push("contracted in the last period".to_owned());
        }
    }
    let mut out: Vec<AtRisk> = reasons
        .into_iter()
        .filter_map(|(c, reasons)| {
            let mrr = mrr.get(c)?.clone();
            Some(AtRisk {
                customer: c.to_owned(),
                mrr,
                reasons,
            })
        })
        .collect();
    out.sort_by_key(|r| std::cmp::Reverse(r.mrr.values().sum::<i64>()));
    out
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::kpi::{Interval, Item, Subscription, SubscriptionState};

    fn t(m: u32, d: u32, h: u32) -> Timestamp {
        Utc.with_ymd_and_hms(2026, m, d, h, 0, 0).unwrap()
    }

    fn ticket(id: &str, customer: &str, created: Timestamp, priority: &str) -> Ticket {
        Ticket {
            id: id.into(),
            customer: Some(customer.into()),
            created_at: created,
            first_response_at: None,
            solved_at: None,
            priorities: vec![Dated {
                at: created,
                value: priority.into(),
            }],
        }
    }

    fn sub(customer: &str, states: &[(Timestamp, SubscriptionStatus, i64)]) -> Subscription {
        Subscription {
            id: format!("sub_{customer}"),
            customer: customer.into(),
            currency: "USD".into(),
            states: states
                .iter()
                .map(|(at, status, mrr)| SubscriptionState {
                    effective_at: *at,
                    status: *status,
                    items: vec![Item {
                        unit_amount: *mrr,
                        quantity: 1,
                        interval: Interval::Month,
                        interval_count: NonZeroU32::MIN,
                        metered: false,
                    }],
                    discount: None,
                    current_period_start: *at,
                    current_period_end: Timestamp::MAX_UTC,
                    canceled_at: None,
                    ended_at: None,
                })
                .collect(),
        }
    }

    #[test]
    fn response_and_resolution_medians_over_the_period() {
        let mut a = ticket("1", "acme", t(3, 2, 8), "normal");
        a.first_response_at = Some(t(3, 2, 10)); // 2 h
        a.solved_at = Some(t(3, 3, 8)); // 24 h
        let mut b = ticket("2", "acme", t(3, 5, 8), "high");
        b.first_response_at = Some(t(3, 5, 12)); // 4 h
        let mut c = ticket("3", "bolt", t(2, 27, 8), "low");
        c.solved_at = Some(t(3, 1, 8)); // solved in March after 48 h
        let s = support(&[a, b, c], Period::new(t(3, 1, 0), t(4, 1, 0)));
        assert_eq!(s.tickets, 2);
        assert_eq!(s.tickets_per_customer, Kpi::Value(Ratio::from_int(2)));
        assert_eq!(
            s.median_first_response_hours,
            Kpi::Value(Ratio::from_int(3))
        );
        assert_eq!(s.median_resolution_hours, Kpi::Value(Ratio::from_int(36)));
        let empty = support(&[], Period::new(t(3, 1, 0), t(4, 1, 0)));
        assert!(matches!(
            empty.median_first_response_hours,
            Kpi::Unavailable(_)
        ));
    }

    #[test]
    fn paying_customers_with_a_sign_of_leaving_are_listed_by_revenue() {
        use SubscriptionStatus::*;
        let now = t(4, 15, 0);
        let h = History {
            subscriptions: vec![
                // Past due since April 2.
                sub(
                    "late",
                    &[(t(1, 1, 0), Active, 5_000), (t(4, 2, 0), PastDue, 5_000)],
                ),
                // Three urgent tickets in April.
                sub("noisy", &[(t(1, 1, 0), Active, 20_000)]),
                // Down from 10,000 to 8,000 in March.
                sub(
                    "shrunk",
                    &[(t(1, 1, 0), Active, 10_000), (t(3, 10, 0), Active, 8_000)],
                ),
                // Fine: two urgent tickets only.
                sub("fine", &[(t(1, 1, 0), Active, 30_000)]),
                // Gone: no MRR, not at risk any more.
                sub(
                    "gone",
                    &[(t(1, 1, 0), Active, 1_000), (t(2, 1, 0), Canceled, 1_000)],
                ),
            ],
            tickets: vec![
                ticket("1", "noisy", t(4, 1, 0), "urgent"),
                ticket("2", "noisy", t(4, 3, 0), "high"),
                ticket("3", "noisy", t(4, 9, 0), "urgent"),
                ticket("4", "fine", t(4, 9, 0), "urgent"),
                ticket("5", "fine", t(4, 10, 0), "urgent"),
                ticket("6", "gone", t(4, 10, 0), "urgent"),
                ticket("7", "gone", t(4, 11, 0), "urgent"),
                ticket("8", "gone", t(4, 12, 0), "urgent"),
            ],
            ..History::default()
        };
        let list = at_risk(&h, now, 2, Period::new(t(3, 1, 0), t(4, 1, 0)));
        let who: Vec<&str> = list.iter().map(|r| r.customer.as_str()).collect();
        assert_eq!(who, ["noisy", "shrunk", "late"]);
        assert_eq!(
            list[0].reasons,
            ["3 urgent or high tickets in the last 30 days"]
        );
        assert_eq!(list[1].reasons, ["contracted in the last period"]);
        assert_eq!(list[2].reasons, ["a subscription is past due"]);
        assert_eq!(list[2].mrr["USD"], 5_000);
    }
}
