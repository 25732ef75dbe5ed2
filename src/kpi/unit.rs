//! Unit economics (KPIS.md): CAC, ARPA, LTV, LTV:CAC and CAC payback, per currency. Spend and
//! gross margin are configured inputs; without them the KPIs that need them are unavailable.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Months;

use super::model::{Currency, History, Period, Timestamp};
use super::mrr::mrr_at;
use super::ratio::Ratio;
use super::retention::bridge;
use super::Kpi;

/// How many trailing months LTV's churn rate is read over (KPIS.md).
pub const LTV_CHURN_MONTHS: u32 = 3;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitEconomics {
    /// Spend in the period / new customers in the period, minor units per customer.
    pub cac: Kpi<Ratio>,
    /// MRR / customers with MRR > 0, at the period's end, minor units.
    pub arpa: Kpi<Ratio>,
    /// Pooled over the trailing months before the period's end: customers churned in each
    /// month, summed, over customers with MRR > 0 at each month's start, summed.
    pub monthly_logo_churn: Kpi<Ratio>,
    /// ARPA x gross margin / monthly logo churn, minor units.
    pub ltv: Kpi<Ratio>,
    pub ltv_to_cac: Kpi<Ratio>,
    /// CAC / (ARPA x gross margin), months.
    pub cac_payback_months: Kpi<Ratio>,
}

/// Spend in `currency` over `period`: entries inside it summed. An entry that straddles a
/// boundary makes it unavailable: prorating would guess how the money was spent.
fn spend_in(h: &History, currency: &str, period: Period) -> Kpi<i64> {
    let Some(spend) = &h.spend else {
        return Kpi::Unavailable("no sales and marketing spend is configured".into());
    };
    let mut total = 0i64;
    let mut any = false;
    for s in spend.iter().filter(|s| s.currency == currency) {
        let inside = s.period.start >= period.start && s.period.end <= period.end;
        let overlaps = s.period.start < period.end && s.period.end > period.start;
        if inside {
            total = total.saturating_add(s.amount);
            any = true;
        } else if overlaps {
            return Kpi::Unavailable(format!(
                "spend entry {}..{} straddles the period",
                s.period.start, s.period.end
            ));
        }
    }
    if any {
        Kpi::Value(total)
    } else {
        Kpi::Unavailable(format!("no {currency} spend is recorded for the period"))
    }
}

/// Pooled monthly logo churn over the `LTV_CHURN_MONTHS` months before `end`.
fn trailing_logo_churn(h: &History, currency: &str, end: Timestamp) -> Kpi<Ratio> {
    let (mut churned, mut base) = (0i128, 0i128);
    for k in 0..LTV_CHURN_MONTHS {
        let (Some(to), Some(from)) = (
            end.checked_sub_months(Months::new(k)),
            end.checked_sub_months(Months::new(k + 1)),
        ) else {
            return Kpi::Unavailable("the trailing months fall outside the calendar".into());
        };
        if let Some(b) = bridge(&h.subscriptions, Period::new(from, to)).get(currency) {
            churned += b.churned_customers.len() as i128;
            base += i128::from(b.customers_at_start);
        }
    }
    if base == 0 {
        return Kpi::Unavailable(format!(
            "no {currency} customer had MRR > 0 in the trailing {LTV_CHURN_MONTHS} months"
        ));
    }
    Kpi::ratio(churned, base, "")
}

/// Unit economics per currency over `period` (CAC) and at its end (ARPA, LTV).
pub fn unit_economics(h: &History, period: Period) -> BTreeMap<Currency, UnitEconomics> {
    let bridges = bridge(&h.subscriptions, period);
    // A customer is new once, whichever currency it started paying in.
    let new_customers: BTreeSet<&String> = bridges
        .values()
        .flat_map(|b| b.new_customers.iter())
        .collect();
    let at_end = mrr_at(&h.subscriptions, period.end);
    let mut currencies: BTreeSet<Currency> = bridges.keys().cloned().collect();
    if let Some(spend) = &h.spend {
        currencies.extend(spend.iter().map(|s| s.currency.clone()));
    }
    let margin = || match h.gross_margin {
        Some(m) => Kpi::Value(m),
        None => Kpi::Unavailable("no gross margin is configured".into()),
    };
    currencies
        .into_iter()
        .map(|cur| {
            let cac = spend_in(h, &cur, period).and_then(|s| {
                Kpi::ratio(
                    i128::from(s),
                    new_customers.len() as i128,
                    "no new customer in the period",
                )
            });
            let arpa = match at_end.get(&cur) {
                Some(snap) => {
                    Kpi::ratio(i128::from(snap.total), snap.by_customer.len() as i128, "")
                }
                None => Kpi::Unavailable(format!("no {cur} customer has MRR > 0 at the end")),
            };
            let churn = trailing_logo_churn(h, &cur, period.end);
            let monthly_margin = arpa.clone().and_then(|a| margin().map(|m| a * m));
            let ltv = monthly_margin.clone().and_then(|mm| {
                churn.clone().and_then(|c| {
                    Kpi::from_option(
                        mm.checked_div(c),
                        "no customer churned in the trailing months: LTV is unbounded",
                    )
                })
            });
            let ltv_to_cac = ltv.clone().and_then(|l| {
                cac.clone()
                    .and_then(|c| Kpi::from_option(l.checked_div(c), "CAC is 0"))
            });
            let cac_payback_months = cac.clone().and_then(|c| {
                monthly_margin
                    .clone()
                    .and_then(|mm| Kpi::from_option(c.checked_div(mm), "ARPA x gross margin is 0"))
            });
            (
                cur,
                UnitEconomics {
                    cac,
                    arpa,
                    monthly_logo_churn: churn,
                    ltv,
                    ltv_to_cac,
                    cac_payback_months,
                },
            )
        })
        .collect()
}
