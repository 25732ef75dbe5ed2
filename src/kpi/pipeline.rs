//! Pipeline KPIs from deal history (KPIS.md, "Pipeline"): win rate by count and amount,
//! average deal size, sales cycle length and pipeline velocity.

use std::collections::BTreeMap;

use chrono::Duration;

use super::model::{Currency, Deal, DealStage, Period, Timestamp};
use super::ratio::Ratio;
use super::Kpi;

/// The trailing window pipeline velocity reads its rates over when none is given.
pub const DEFAULT_VELOCITY_WINDOW_DAYS: i64 = 90;

/// A deal that closed within a period: the stage in effect just before the period's end is
/// closed won or lost, and it was entered within the period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClosedDeal {
    pub id: String,
    pub won: bool,
    pub amount: i64,
    pub currency: Currency,
    pub created_at: Timestamp,
    pub created_known: bool,
    pub closed_at: Timestamp,
}

/// Deals closed in `period`, with the amount in effect when they closed. A deal reopened
/// before the end is not closed; one with no amount by then is left out (nothing to count).
pub fn closed_in(deals: &[Deal], period: Period) -> Vec<ClosedDeal> {
    deals
        .iter()
        .filter_map(|d| {
            let stage = d.stage_before(period.end)?;
            if !stage.stage.is_closed() || !period.contains(stage.at) {
                return None;
            }
            let amount = d.amount_at(stage.at)?;
            Some(ClosedDeal {
                id: d.id.clone(),
                won: stage.stage == DealStage::ClosedWon,
                amount: amount.amount,
                currency: amount.currency.clone(),
                created_at: d.created_at,
                created_known: d.created_known,
                closed_at: stage.at,
            })
        })
        .collect()
}

/// One currency's pipeline figures over a period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineStats {
    pub won: u64,
    pub lost: u64,
    pub won_amount: i64,
    pub lost_amount: i64,
    /// Won / (won + lost).
    pub win_rate: Kpi<Ratio>,
    /// Won amount / (won + lost) amount.
    pub win_rate_by_amount: Kpi<Ratio>,
    /// Mean amount of won deals, minor units.
    pub average_deal_size: Kpi<Ratio>,
    /// Days from created_at to closed_at of won deals (exact: seconds / 86,400); the median of
    /// an even count is the mean of the middle two.
    pub sales_cycle_median_days: Kpi<Ratio>,
    pub sales_cycle_mean_days: Kpi<Ratio>,
}

/// Pipeline figures per currency (the currency of each deal's amount when it closed).
pub fn pipeline(deals: &[Deal], period: Period) -> BTreeMap<Currency, PipelineStats> {
    let mut by_cur: BTreeMap<Currency, Vec<ClosedDeal>> = BTreeMap::new();
    for d in closed_in(deals, period) {
        by_cur.entry(d.currency.clone()).or_default().push(d);
    }
    by_cur
        .into_iter()
        .map(|(cur, ds)| (cur, stats(&ds)))
        .collect()
}

fn stats(ds: &[ClosedDeal]) -> PipelineStats {
    let won: Vec<&ClosedDeal> = ds.iter().filter(|d| d.won).collect();
    let lost: Vec<&ClosedDeal> = ds.iter().filter(|d| !d.won).collect();
    let won_amount: i64 = won.iter().map(|d| d.amount).sum();
    let lost_amount: i64 = lost.iter().map(|d| d.amount).sum();
    let n_won = won.len() as i128;
    let mut days: Vec<Ratio> = won
        .iter()
        .filter(|d| d.created_known)
        .filter_map(|d| {
            Ratio::new(
                i128::from((d.closed_at - d.created_at).num_seconds()),
                86_400,
            )
        })
        .collect();
    days.sort();
    let none_won = "no deal was won in the period";
    let no_cycle = if won.is_empty() {
        none_won
    } else {
        "no deal won in the period has a known creation time"
    };
    PipelineStats {
        won: won.len() as u64,
        lost: lost.len() as u64,
        won_amount,
        lost_amount,
        win_rate: Kpi::ratio(n_won, ds.len() as i128, "no deal closed in the period"),
        win_rate_by_amount: Kpi::ratio(
            i128::from(won_amount),
            i128::from(won_amount) + i128::from(lost_amount),
            "deals closed in the period total 0",
        ),
        average_deal_size: Kpi::ratio(i128::from(won_amount), n_won, none_won),
        sales_cycle_median_days: Kpi::from_option(median(&days), no_cycle),
        sales_cycle_mean_days: Kpi::from_option(
            days.iter()
                .fold(Ratio::zero(), |a, d| a + *d)
                .checked_div(Ratio::from_int(days.len() as i128)),
            no_cycle,
        ),
    }
}

pub(super) fn median(sorted: &[Ratio]) -> Option<Ratio> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    if n % 2 == 1 {
        sorted.get(n / 2).copied()
    } else {
        let (a, b) = (sorted.get(n / 2 - 1)?, sorted.get(n / 2)?);
        (*a + *b).checked_div(Ratio::from_int(2))
    }
}

/// Deals open at `t` per currency: created by then, and the stage in effect not closed.
pub fn open_deals_at(deals: &[Deal], t: Timestamp) -> BTreeMap<Currency, u64> {
    let mut out = BTreeMap::new();
    for d in deals.iter().filter(|d| d.created_at <= t) {
        if d.stage_at(t).is_some_and(|s| s.stage.is_closed()) {
            continue;
        }
        if let Some(a) = d.amount_at(t) {
            *out.entry(a.currency.clone()).or_insert(0) += 1;
        }
    }
    out
}

/// Pipeline velocity at `end`, money (minor units) per day, per currency: open deals at end x
/// win rate x average deal size / median sales cycle, the last three over
/// `[end - window_days, end)`.
pub fn pipeline_velocity(
    deals: &[Deal],
    end: Timestamp,
    window_days: i64,
) -> BTreeMap<Currency, Kpi<Ratio>> {
    let window = Period::new(end - Duration::days(window_days), end);
    let trailing = pipeline(deals, window);
    let open = open_deals_at(deals, end);
    let currencies: std::collections::BTreeSet<&Currency> =
        trailing.keys().chain(open.keys()).collect();
    currencies
        .into_iter()
        .map(|cur| {
            let open_n = Ratio::from_int(i128::from(open.get(cur).copied().unwrap_or(0)));
            let v = match trailing.get(cur) {
                None => Kpi::Unavailable(format!(
                    "no {cur} deal closed in the trailing {window_days} days"
                )),
                Some(s) => s.win_rate.clone().and_then(|w| {
                    s.average_deal_size.clone().and_then(|size| {
                        s.sales_cycle_median_days.clone().and_then(|cycle| {
                            Kpi::from_option(
                                (open_n * w * size).checked_div(cycle),
                                "the median sales cycle is 0 days",
                            )
                        })
                    })
                }),
            };
            (cur.clone(), v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::kpi::{AmountChange, StageChange};

    #[test]
    fn a_period_with_only_lost_deals_has_no_sales_cycle_rather_than_a_panic() {
        let t = |d| Utc.with_ymd_and_hms(2026, 3, d, 0, 0, 0).unwrap();
        let lost = Deal {
            id: "d".into(),
            created_at: t(1),
            created_known: true,
            amounts: vec![AmountChange {
                at: t(1),
                amount: 500,
                currency: "USD".into(),
            }],
            stages: vec![
                StageChange {
                    at: t(1),
                    stage: DealStage::Open("proposal".into()),
                },
                StageChange {
                    at: t(5),
                    stage: DealStage::ClosedLost,
                },
            ],
            close_dates: Vec::new(),
            probabilities: Vec::new(),
            categories: Vec::new(),
        };
        let stats = pipeline(&[lost], Period::new(t(1), t(20)));
        let usd = &stats["USD"];
        assert_eq!((usd.won, usd.lost), (0, 1));
        assert!(matches!(usd.sales_cycle_median_days, Kpi::Unavailable(_)));
        assert!(matches!(usd.average_deal_size, Kpi::Unavailable(_)));
    }
}
