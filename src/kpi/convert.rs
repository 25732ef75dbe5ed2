//! One reporting currency (`kpi.reporting_currency` with `kpi.rates`): every amount of the
//! history is converted at the fixed rate of its currency before any KPI is computed, so
//! each KPI is computed once, over every customer, in one currency (KPIS.md). A price, a
//! discount, a deal amount or a spend entry is converted on its own and rounded half to
//! even to the reporting currency's minor unit. Amounts in a currency with no rate stay as
//! they are, reported in their own currency, and the report names them.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{Currency, Discount, History};
use super::Ratio;
use crate::engine::mapping::currency_exponent;

/// Units of the reporting currency one unit of each other currency is worth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rates {
    pub to: Currency,
    pub per_unit: BTreeMap<Currency, Ratio>,
}

fn pow10(e: u32) -> i128 {
    10i128.pow(e)
}

impl Rates {
    /// `amount` minor units of `from` in minor units of the reporting currency; `None`
    /// when `from` has no rate.
    pub fn convert(&self, amount: i64, from: &str) -> Option<i64> {
        if from == self.to {
            return Some(amount);
        }
        let rate = *self.per_unit.get(from)?;
        let scale = Ratio::new(
            pow10(currency_exponent(&self.to)),
            pow10(currency_exponent(from)),
        )?;
        let v = (Ratio::from_int(i128::from(amount)) * scale * rate).round_half_even();
        i64::try_from(v).ok()
    }
}

/// Convert `h` in place; the currencies left as they were, for want of a rate.
pub fn convert(h: &mut History, rates: &Rates) -> BTreeSet<Currency> {
    let mut missing = BTreeSet::new();
    let conv =
        |amount: &mut i64, currency: &mut Currency, missing: &mut BTreeSet<Currency>| match rates
            .convert(*amount, currency)
        {
            Some(v) => {
                *amount = v;
                currency.clone_from(&rates.to);
            }
            None => {
                missing.insert(currency.clone());
            }
        };
    for s in &mut h.subscriptions {
        let from = s.currency.clone();
        if rates.convert(0, &from).is_none() {
            missing.insert(from);
            continue;
        }
        for state in &mut s.states {
            for item in &mut state.items {
                let mut c = from.clone();
                conv(&mut item.unit_amount, &mut c, &mut missing);
            }
            if let Some(Discount::AmountOff { amount, .. }) = &mut state.discount {
                let mut c = from.clone();
                conv(amount, &mut c, &mut missing);
            }
        }
        s.currency.clone_from(&rates.to);
    }
    for d in &mut h.deals {
        for a in &mut d.amounts {
            conv(&mut a.amount, &mut a.currency, &mut missing);
        }
    }
    for s in h.spend.iter_mut().flatten() {
        conv(&mut s.amount, &mut s.currency, &mut missing);
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates() -> Rates {
        Rates {
            to: "USD".into(),
            per_unit: BTreeMap::from([
                ("EUR".into(), Ratio::new(108, 100).unwrap()),
                ("JPY".into(), Ratio::new(67, 10_000).unwrap()),
            ]),
        }
    }

    #[test]
    fn amounts_convert_between_minor_units_rounded_half_to_even() {
        let r = rates();
        // 49.00 EUR at 1.08 = 52.92 USD.
        assert_eq!(r.convert(4_900, "EUR"), Some(5_292));
        // 1,500 JPY (no minor unit) at 0.0067 = 10.05 USD.
        assert_eq!(r.convert(1_500, "JPY"), Some(1_005));
        // 0.125 USD rounds half to even: 1 cent at 1.08 = 1.08 -> 1; 25 cents at 1.08 = 27.
        assert_eq!(r.convert(1, "EUR"), Some(1));
        assert_eq!(r.convert(25, "EUR"), Some(27));
        assert_eq!(r.convert(700, "USD"), Some(700));
        assert_eq!(r.convert(700, "GBP"), None);
    }

    #[test]
    fn a_history_in_two_currencies_becomes_one_and_names_what_had_no_rate() {
        use crate::kpi::model::*;
        use std::num::NonZeroU32;
        let item = |amount| Item {
            unit_amount: amount,
            quantity: 2,
            interval: Interval::Month,
            interval_count: NonZeroU32::MIN,
            metered: false,
        };
        let sub = |id: &str, currency: &str, amount| Subscription {
            id: id.into(),
            customer: id.into(),
            currency: currency.into(),
            states: vec![SubscriptionState {
                effective_at: chrono::DateTime::UNIX_EPOCH,
                status: SubscriptionStatus::Active,
                items: vec![item(amount)],
                discount: None,
                current_period_start: chrono::DateTime::UNIX_EPOCH,
                current_period_end: chrono::DateTime::UNIX_EPOCH + chrono::Duration::days(30),
                canceled_at: None,
                ended_at: None,
            }],
        };
        let mut h = History {
            subscriptions: vec![
                sub("a", "USD", 10_000),
                sub("b", "EUR", 4_900),
                sub("c", "GBP", 1_000),
            ],
            ..Default::default()
        };
        let missing = convert(&mut h, &rates());
        assert_eq!(missing, BTreeSet::from(["GBP".to_owned()]));
        let at = chrono::DateTime::UNIX_EPOCH + chrono::Duration::days(1);
        let mrr = crate::kpi::mrr_at(&h.subscriptions, at);
        // 2 x 100.00 USD + 2 x 52.92 USD, in one currency; GBP stays apart.
        assert_eq!(mrr.get("USD").map(|s| s.total), Some(30_584));
        assert_eq!(mrr.get("GBP").map(|s| s.total), Some(2_000));
        assert!(!mrr.contains_key("EUR"));
    }
}
