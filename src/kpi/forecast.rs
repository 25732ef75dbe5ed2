//! Forecast (KPIS.md): the weighted pipeline of a period as it stood at any instant, split
//! by forecast category, and the accuracy of the forecast made at a period's start.
//!
//! A forecast snapshot is the weighted pipeline as of the period's start. With every value
//! kept with the time it changed, that is read from history rather than stored when the
//! period begins: the same figure, and one a team gets for periods before it installed
//! revsync as far as the history reaches.

use std::collections::BTreeMap;

use super::model::{Currency, Deal, Period, Timestamp};
use super::pipeline::closed_in;
use super::ratio::Ratio;
use super::Kpi;

/// Deals without a category are counted under this one.
pub const NO_CATEGORY: &str = "uncategorized";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WeightedPipeline {
    /// Sum of amount x probability / 100 over the open deals expected to close in the
    /// period, minor units, rounded half to even once.
    pub weighted: i64,
    /// The same, per forecast category.
    pub by_category: BTreeMap<String, i64>,
    /// Open deals expected to close in the period, and their unweighted amount.
    pub deals: u64,
    pub amount: i64,
    /// Of those, deals with no probability: left out of `weighted`, never counted as 0 %.
    pub without_probability: u64,
}

/// The weighted pipeline for `period` as it stood at `at`: deals open at `at` whose close
/// date (as known at `at`) falls in the period, at their amount and probability then.
pub fn weighted_pipeline(
    deals: &[Deal],
    period: Period,
    at: Timestamp,
) -> BTreeMap<Currency, WeightedPipeline> {
    let mut sums: BTreeMap<Currency, (WeightedPipeline, Ratio, BTreeMap<String, Ratio>)> =
        BTreeMap::new();
    for d in deals {
        if d.created_at > at || d.stage_at(at).is_none_or(|s| s.stage.is_closed()) {
            continue;
        }
        let (Some(close), Some(amount)) = (d.close_date_at(at), d.amount_at(at)) else {
            continue;
        };
        if !period.contains(close) {
            continue;
        }
        let (w, total, cats) = sums
            .entry(amount.currency.clone())
            .or_insert_with(|| (WeightedPipeline::default(), Ratio::zero(), BTreeMap::new()));
        w.deals += 1;
        w.amount = w.amount.saturating_add(amount.amount);
        let Some(p) = d.probability_at(at) else {
            w.without_probability += 1;
            continue;
        };
        let share = Ratio::new(i128::from(amount.amount) * i128::from(p.min(100)), 100)
            .unwrap_or_else(Ratio::zero);
        *total = *total + share;
        let cat = d.category_at(at).unwrap_or(NO_CATEGORY).to_owned();
        let c = cats.entry(cat).or_insert_with(Ratio::zero);
        *c = *c + share;
    }
    sums.into_iter()
        .map(|(cur, (mut w, total, cats))| {
            w.weighted = clamp(total.round_half_even());
            w.by_category = cats
                .into_iter()
                .map(|(k, v)| (k, clamp(v.round_half_even())))
                .collect();
            (cur, w)
        })
        .collect()
}

fn clamp(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// Forecast accuracy of a closed period: 1 - |forecast - actual| / actual, the forecast
/// being the weighted pipeline as of the period's start and the actual the amount won in
/// it. Unavailable when nothing was won (no base) or nothing was forecast.
pub fn forecast_accuracy(deals: &[Deal], period: Period) -> BTreeMap<Currency, Kpi<Ratio>> {
    let forecast = weighted_pipeline(deals, period, period.start);
    let mut won: BTreeMap<Currency, i64> = BTreeMap::new();
    for c in closed_in(deals, period).into_iter().filter(|c| c.won) {
        let w = won.entry(c.currency).or_default();
        *w = w.saturating_add(c.amount);
    }
    let currencies: std::collections::BTreeSet<&Currency> =
        forecast.keys().chain(won.keys()).collect();
    currencies
        .into_iter()
        .map(|cur| {
            let actual = i128::from(won.get(cur).copied().unwrap_or(0));
            let kpi = match forecast.get(cur) {
                None => Kpi::Unavailable(format!(
                    "no open {cur} deal was expected to close in the period at its start"
                )),
                Some(f) => {
                    let miss = (i128::from(f.weighted) - actual).abs();
                    Kpi::ratio(actual - miss, actual, "nothing was won in the period")
                }
            };
            (cur.clone(), kpi)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::kpi::{AmountChange, Dated, DealStage, StageChange};

    fn t(m: u32, d: u32) -> Timestamp {
        Utc.with_ymd_and_hms(2026, m, d, 0, 0, 0).unwrap()
    }

    fn deal(id: &str, amount: i64, close: Timestamp, p: Option<u32>, cat: &str) -> Deal {
        Deal {
            id: id.into(),
            created_at: t(1, 5),
            created_known: true,
            amounts: vec![AmountChange {
                at: t(1, 5),
                amount,
                currency: "USD".into(),
            }],
            stages: vec![StageChange {
                at: t(1, 5),
                stage: DealStage::Open("proposal".into()),
            }],
            close_dates: vec![Dated {
                at: t(1, 5),
                value: close,
            }],
            probabilities: p
                .map(|p| Dated {
                    at: t(1, 5),
                    value: p,
                })
                .into_iter()
                .collect(),
            categories: vec![Dated {
                at: t(1, 5),
                value: cat.into(),
            }],
        }
    }

    #[test]
    fn the_weighted_pipeline_of_a_period_as_it_stood_and_its_accuracy() {
        let march = Period::new(t(3, 1), t(4, 1));
        // A: 10,000.00 at 60 % (commit), won on Mar 10. B: 5,000.00 at 20 % (pipeline),
        // moved to April on Feb 20. C: 2,000.00 with no probability. D closes in April.
        let mut a = deal("A", 1_000_000, t(3, 15), Some(60), "commit");
        a.stages.push(StageChange {
            at: t(3, 10),
            stage: DealStage::ClosedWon,
        });
        let mut b = deal("B", 500_000, t(3, 20), Some(20), "pipeline");
        b.close_dates.push(Dated {
            at: t(2, 20),
            value: t(4, 5),
        });
        let c = deal("C", 200_000, t(3, 25), None, "pipeline");
        let d = deal("D", 900_000, t(4, 2), Some(90), "commit");
        let deals = [a, b, c, d];

        // As of Feb 1: A, B and C are expected in March; A 600,000 + B 100,000.
        let feb1 = &weighted_pipeline(&deals, march, t(2, 1))["USD"];
        assert_eq!(feb1.weighted, 700_000);
        assert_eq!(feb1.by_category["commit"], 600_000);
        assert_eq!(feb1.by_category["pipeline"], 100_000);
        assert_eq!((feb1.deals, feb1.without_probability), (3, 1));
        assert_eq!(feb1.amount, 1_700_000);

        // The snapshot at March's start no longer has B (moved to April on Feb 20).
        let mar1 = &weighted_pipeline(&deals, march, t(3, 1))["USD"];
        assert_eq!(mar1.weighted, 600_000);
        // Once A is won it is no longer open pipeline.
        assert!(weighted_pipeline(&deals, march, t(3, 11))["USD"].weighted == 0);

        // Forecast 600,000 at March's start, 1,000,000 won: 1 - 400,000 / 1,000,000.
        let acc = forecast_accuracy(&deals, march);
        assert_eq!(acc["USD"], Kpi::Value(Ratio::new(3, 5).unwrap()));
        // April: D and B expected (810,000 + 100,000), nothing won.
        let april = Period::new(t(4, 1), t(5, 1));
        assert!(matches!(
            forecast_accuracy(&deals, april)["USD"],
            Kpi::Unavailable(_)
        ));
    }
}
