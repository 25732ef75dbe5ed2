//! The hand-built dataset: two dozen customers over the first half of 2026, every KPI worked
//! out by hand in the comments and asserted by exact equality.
//!
//! Q2 = [2026-04-01, 2026-07-01) is the period under test. Amounts are US cents unless a
//! customer is marked EUR. "M" below is MRR in cents.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::num::NonZeroU32;

use chrono::TimeZone;

use super::model::*;
use super::*;

fn d(y: i32, m: u32, day: u32) -> Timestamp {
    chrono::Utc.with_ymd_and_hms(y, m, day, 0, 0, 0).unwrap()
}

fn r(n: i128, den: i128) -> Kpi<Ratio> {
    Kpi::Value(Ratio::new(n, den).unwrap())
}

fn n(k: u32) -> NonZeroU32 {
    NonZeroU32::new(k).unwrap()
}

fn item(unit_amount: i64, quantity: u64, interval: Interval, count: u32) -> Item {
    Item {
        unit_amount,
        quantity,
        interval,
        interval_count: n(count),
        metered: false,
    }
}

fn monthly(unit: i64, qty: u64) -> Vec<Item> {
    vec![item(unit, qty, Interval::Month, 1)]
}

fn yearly(unit: i64) -> Vec<Item> {
    vec![item(unit, 1, Interval::Year, 1)]
}

fn weekly(unit: i64, qty: u64) -> Vec<Item> {
    vec![item(unit, qty, Interval::Week, 1)]
}

/// An active state from `at` with billing period `[ps, pe)`.
fn st(at: Timestamp, items: Vec<Item>, ps: Timestamp, pe: Timestamp) -> SubscriptionState {
    SubscriptionState {
        effective_at: at,
        status: SubscriptionStatus::Active,
        items,
        discount: None,
        current_period_start: ps,
        current_period_end: pe,
        canceled_at: None,
        ended_at: None,
    }
}

fn with(s: SubscriptionState, f: impl FnOnce(&mut SubscriptionState)) -> SubscriptionState {
    let mut s = s;
    f(&mut s);
    s
}

/// Canceled and ended at `at`, keeping the items and period of `prev`.
fn ended(prev: &SubscriptionState, at: Timestamp) -> SubscriptionState {
    with(prev.clone(), |s| {
        s.effective_at = at;
        s.status = SubscriptionStatus::Canceled;
        s.canceled_at = s.canceled_at.or(Some(at));
        s.ended_at = Some(at);
    })
}

fn sub(id: &str, customer: &str, currency: &str, states: Vec<SubscriptionState>) -> Subscription {
    Subscription {
        id: id.into(),
        customer: customer.into(),
        currency: currency.into(),
        states,
    }
}

fn usd(id: &str, states: Vec<SubscriptionState>) -> Subscription {
    sub(&format!("sub_{id}"), id, "USD", states)
}

fn subscriptions() -> Vec<Subscription> {
    let jan1 = d(2026, 1, 1);
    let feb1 = d(2026, 2, 1);
    // c15: monthly 8,000, renewed Apr 1, cancel asked Apr 10 for the period end, ended May 1.
    let c15_renewed = st(
        d(2026, 4, 1),
        monthly(8_000, 1),
        d(2026, 4, 1),
        d(2026, 5, 1),
    );
    let c15_asked = with(c15_renewed.clone(), |s| {
        s.effective_at = d(2026, 4, 10);
        s.canceled_at = Some(d(2026, 4, 10));
    });
    // c16: annual 96,000 (M 8,000) from 2025-06-01, cancel asked Mar 1, ended Jun 1.
    let c16_y = st(d(2025, 6, 1), yearly(96_000), d(2025, 6, 1), d(2026, 6, 1));
    let c16_asked = with(c16_y.clone(), |s| {
        s.effective_at = d(2026, 3, 1);
        s.canceled_at = Some(d(2026, 3, 1));
    });
    // c17: weekly 2,000 (M 2,000 x 52 / 12 = 8,666.67 -> 8,667), canceled at once May 20.
    let c17_renewed = st(
        d(2026, 5, 18),
        weekly(2_000, 1),
        d(2026, 5, 18),
        d(2026, 5, 25),
    );
    let c21_first = st(jan1, monthly(4_000, 1), jan1, feb1);
    let c22 = st(jan1, monthly(3_000, 1), jan1, feb1);
    let c23_trial = with(
        st(
            d(2026, 3, 1),
            monthly(2_000, 1),
            d(2026, 3, 1),
            d(2026, 4, 15),
        ),
        |s| s.status = SubscriptionStatus::Trialing,
    );
    vec![
        // Unchanged through Q2.
        // c01: monthly 10,000 x 1: M 10,000.
        usd("c01", vec![st(jan1, monthly(10_000, 1), jan1, feb1)]),
        // c02: monthly 2,500 x 4 seats: M 10,000.
        usd("c02", vec![st(jan1, monthly(2_500, 4), jan1, feb1)]),
        // c03: annual 120,000: M 120,000 / 12 = 10,000.
        usd("c03", vec![st(jan1, yearly(120_000), jan1, d(2027, 1, 1))]),
        // c04: weekly 1,500: M 1,500 x 52 / 12 = 6,500.
        usd(
            "c04",
            vec![st(
                d(2026, 1, 5),
                weekly(1_500, 1),
                d(2026, 1, 5),
                d(2026, 1, 12),
            )],
        ),
        // c05: monthly 9,900 with 20 % off: M 9,900 x 0.8 = 7,920.
        usd(
            "c05",
            vec![with(st(jan1, monthly(9_900, 1), jan1, feb1), |s| {
                s.discount = Some(Discount::PercentOff(2_000))
            })],
        ),
        // c06: every 3 months 30,000: M 10,000. Renewed Apr 1 (a period end in Q2, continued).
        usd(
            "c06",
            vec![
                st(
                    jan1,
                    vec![item(30_000, 1, Interval::Month, 3)],
                    jan1,
                    d(2026, 4, 1),
                ),
                st(
                    d(2026, 4, 1),
                    vec![item(30_000, 1, Interval::Month, 3)],
                    d(2026, 4, 1),
                    d(2026, 7, 1),
                ),
            ],
        ),
        // c07: monthly 4,999 x 3: M 14,997.
        usd("c07", vec![st(jan1, monthly(4_999, 3), jan1, feb1)]),
        // c08: annual 100,000: M 8,333.33 -> 8,333.
        usd("c08", vec![st(feb1, yearly(100_000), feb1, d(2027, 2, 1))]),
        // c09: monthly 5,000, past_due from Mar 20: past_due still counts, M 5,000. Its
        // period ends Apr 15 and it is still there (past_due is not canceled): continued.
        usd(
            "c09",
            vec![
                st(
                    d(2026, 1, 15),
                    monthly(5_000, 1),
                    d(2026, 1, 15),
                    d(2026, 2, 15),
                ),
                with(
                    st(
                        d(2026, 3, 20),
                        monthly(5_000, 1),
                        d(2026, 3, 15),
                        d(2026, 4, 15),
                    ),
                    |s| s.status = SubscriptionStatus::PastDue,
                ),
            ],
        ),
        // Expansion.
        // c10: monthly 5,000 x 2 = 10,000; May 10 a third seat: 15,000 (+5,000). Period end
        // Jun 10 in Q2, continued.
        usd(
            "c10",
            vec![
                st(
                    d(2026, 1, 10),
                    monthly(5_000, 2),
                    d(2026, 1, 10),
                    d(2026, 2, 10),
                ),
                st(
                    d(2026, 5, 10),
                    monthly(5_000, 3),
                    d(2026, 5, 10),
                    d(2026, 6, 10),
                ),
            ],
        ),
        // c11: annual 60,000 (M 5,000) from 2025-06-01; renewed Jun 1 at 120,000 (M 10,000,
        // +5,000). Period end Jun 1, continued.
        usd(
            "c11",
            vec![
                st(d(2025, 6, 1), yearly(60_000), d(2025, 6, 1), d(2026, 6, 1)),
                st(d(2026, 6, 1), yearly(120_000), d(2026, 6, 1), d(2027, 6, 1)),
            ],
        ),
        // c12: weekly 1,000 (M 4,333.33 -> 4,333); Apr 20 three seats: 3,000 x 52 / 12 =
        // 13,000 (+8,667). Period end Apr 27, continued.
        usd(
            "c12",
            vec![
                st(
                    d(2026, 1, 5),
                    weekly(1_000, 1),
                    d(2026, 1, 5),
                    d(2026, 1, 12),
                ),
                st(
                    d(2026, 4, 20),
                    weekly(1_000, 3),
                    d(2026, 4, 20),
                    d(2026, 4, 27),
                ),
            ],
        ),
        // Contraction.
        // c13: monthly 20,000; May 1 down to 12,000 (-8,000). Period end Jun 1, continued.
        usd(
            "c13",
            vec![
                st(jan1, monthly(20_000, 1), jan1, feb1),
                st(
                    d(2026, 5, 1),
                    monthly(12_000, 1),
                    d(2026, 5, 1),
                    d(2026, 6, 1),
                ),
            ],
        ),
        // c14: monthly 10,000; Jun 15 a 2,500 a month amount-off: 7,500 (-2,500).
        usd(
            "c14",
            vec![
                st(jan1, monthly(10_000, 1), jan1, feb1),
                with(
                    st(
                        d(2026, 6, 15),
                        monthly(10_000, 1),
                        d(2026, 6, 15),
                        d(2026, 7, 15),
                    ),
                    |s| {
                        s.discount = Some(Discount::AmountOff {
                            amount: 2_500,
                            interval: Interval::Month,
                            interval_count: n(1),
                        })
                    },
                ),
            ],
        ),
        // Churn.
        // c15: M 8,000 -> 0 at May 1 (churned in April). Period end May 1: not continued.
        usd(
            "c15",
            vec![
                st(jan1, monthly(8_000, 1), jan1, feb1),
                c15_renewed,
                ended(&c15_asked, d(2026, 5, 1)),
                c15_asked,
            ],
        ),
        // c16: M 8,000 -> 0 at Jun 1 (in May's bridge: Jun 1 is May's end instant).
        // Period end Jun 1: not continued.
        usd(
            "c16",
            vec![c16_y, ended(&c16_asked, d(2026, 6, 1)), c16_asked],
        ),
        // c17: M 8,667 -> 0 on May 20. Its period May 18..25 was cut short: canceled before
        // May 25, so it is no billing period that ended.
        usd(
            "c17",
            vec![
                st(
                    d(2026, 1, 5),
                    weekly(2_000, 1),
                    d(2026, 1, 5),
                    d(2026, 1, 12),
                ),
                ended(&c17_renewed, d(2026, 5, 20)),
                c17_renewed,
            ],
        ),
        // New.
        // c18: trial from Apr 1 (M 0), paying 5,000 from May 1: new 5,000. Period ends
        // May 1 (trial -> active) and Jun 1, both continued.
        usd(
            "c18",
            vec![
                with(
                    st(
                        d(2026, 4, 1),
                        monthly(5_000, 1),
                        d(2026, 4, 1),
                        d(2026, 5, 1),
                    ),
                    |s| s.status = SubscriptionStatus::Trialing,
                ),
                st(
                    d(2026, 5, 1),
                    monthly(5_000, 1),
                    d(2026, 5, 1),
                    d(2026, 6, 1),
                ),
            ],
        ),
        // c19: Jun 10, monthly 3,000 x 2: new 6,000.
        usd(
            "c19",
            vec![st(
                d(2026, 6, 10),
                monthly(3_000, 2),
                d(2026, 6, 10),
                d(2026, 7, 10),
            )],
        ),
        // c20: May 5, annual 240,000 with 10 % off: 20,000 x 0.9 = new 18,000.
        usd(
            "c20",
            vec![with(
                st(d(2026, 5, 5), yearly(240_000), d(2026, 5, 5), d(2027, 5, 5)),
                |s| s.discount = Some(Discount::PercentOff(1_000)),
            )],
        ),
        // Reactivation.
        // c21: paid 4,000 in Jan-Feb, ended Mar 1; a new subscription May 15 at 4,000:
        // reactivation 4,000. Period end Jun 15, continued.
        usd(
            "c21",
            vec![c21_first.clone(), ended(&c21_first, d(2026, 3, 1))],
        ),
        sub(
            "sub_c21_again",
            "c21",
            "USD",
            vec![st(
                d(2026, 5, 15),
                monthly(4_000, 1),
                d(2026, 5, 15),
                d(2026, 6, 15),
            )],
        ),
        // Outside Q2's movements.
        // c22: paid Jan-Feb only.
        usd("c22", vec![c22.clone(), ended(&c22, d(2026, 3, 1))]),
        // c23: a trial that lapsed Apr 15: never paid. Its trial period ends Apr 15 into
        // canceled: a period end in Q2, not continued.
        usd(
            "c23",
            vec![c23_trial.clone(), ended(&c23_trial, d(2026, 4, 15))],
        ),
        // c24 (EUR): monthly 5,000, unchanged.
        sub(
            "sub_c24",
            "c24",
            "EUR",
            vec![st(jan1, monthly(5_000, 1), jan1, feb1)],
        ),
    ]
}

fn deal(
    id: &str,
    created: Timestamp,
    amounts: &[(Timestamp, i64)],
    currency: &str,
    stages: Vec<(Timestamp, DealStage)>,
) -> Deal {
    Deal {
        id: id.into(),
        created_at: created,
        created_known: true,
        amounts: amounts
            .iter()
            .map(|(at, amount)| AmountChange {
                at: *at,
                amount: *amount,
                currency: currency.into(),
            })
            .collect(),
        stages: stages
            .into_iter()
            .map(|(at, stage)| StageChange { at, stage })
            .collect(),
        close_dates: Vec::new(),
        probabilities: Vec::new(),
        categories: Vec::new(),
    }
}

fn open(name: &str) -> DealStage {
    DealStage::Open(name.into())
}

fn deals() -> Vec<Deal> {
    use DealStage::{ClosedLost as Lost, ClosedWon as Won};
    let noon_jun30 = chrono::Utc.with_ymd_and_hms(2026, 6, 30, 12, 0, 0).unwrap();
    let deal_at = |id, created: Timestamp, amount, stages: Vec<(Timestamp, DealStage)>| {
        let mut all = vec![(created, open("prospecting"))];
        all.extend(stages);
        deal(id, created, &[(created, amount)], "USD", all)
    };
    vec![
        // d1: won Apr 15 at 120,000; Feb 1 -> Apr 15 = 28 + 31 + 14 = 73 days.
        deal_at("d1", d(2026, 2, 1), 120_000, vec![(d(2026, 4, 15), Won)]),
        // d2: 50,000 raised to 60,000 on Apr 20, won May 10 at 60,000; Mar 1 -> May 10 =
        // 31 + 30 + 9 = 70 days.
        deal(
            "d2",
            d(2026, 3, 1),
            &[(d(2026, 3, 1), 50_000), (d(2026, 4, 20), 60_000)],
            "USD",
            vec![(d(2026, 3, 1), open("proposal")), (d(2026, 5, 10), Won)],
        ),
        // d3: won Jun 1 at 240,000; Apr 1 -> Jun 1 = 30 + 31 = 61 days.
        deal_at("d3", d(2026, 4, 1), 240_000, vec![(d(2026, 6, 1), Won)]),
        // d4: lost Apr 30 at 80,000.
        deal_at("d4", d(2026, 1, 10), 80_000, vec![(d(2026, 4, 30), Lost)]),
        // d5: lost Jun 20 at 100,000.
        deal_at("d5", d(2026, 3, 15), 100_000, vec![(d(2026, 6, 20), Lost)]),
        // d6: won Jun 30 at noon, 30,000; Apr 10 -> Jun 30 12:00 = 30 + 31 + 20 + 0.5 = 81.5.
        deal_at("d6", d(2026, 4, 10), 30_000, vec![(noon_jun30, Won)]),
        // d7: won Mar 20, before Q2.
        deal_at("d7", d(2026, 1, 5), 50_000, vec![(d(2026, 3, 20), Won)]),
        // d8: lost at Jul 1 00:00, the end instant: the next period's, and not open at Jul 1.
        deal_at("d8", d(2026, 5, 1), 20_000, vec![(d(2026, 7, 1), Lost)]),
        // d9, d10: open at Jul 1.
        deal_at("d9", d(2026, 5, 20), 70_000, vec![]),
        deal_at(
            "d10",
            d(2026, 6, 1),
            40_000,
            vec![(d(2026, 6, 2), open("qualification"))],
        ),
        // d11: lost May 5, reopened Jun 5: not closed in Q2, open at Jul 1.
        deal_at(
            "d11",
            d(2026, 2, 10),
            90_000,
            vec![(d(2026, 5, 5), Lost), (d(2026, 6, 5), open("negotiation"))],
        ),
        // d12 (EUR): won Jun 10 at 50,000; Apr 5 -> Jun 10 = 25 + 31 + 10 = 66 days.
        deal(
            "d12",
            d(2026, 4, 5),
            &[(d(2026, 4, 5), 50_000)],
            "EUR",
            vec![(d(2026, 4, 5), open("discovery")), (d(2026, 6, 10), Won)],
        ),
    ]
}

fn spend_month(m: u32, amount: i64) -> Spend {
    Spend {
        period: Period::new(d(2026, m, 1), d(2026, m + 1, 1)),
        amount,
        currency: "USD".into(),
    }
}

fn history() -> History {
    History {
        subscriptions: subscriptions(),
        deals: deals(),
        tickets: vec![],
        // 3,000.00 a month in Q2; March's 2,500.00 lies outside it.
        spend: Some(vec![
            spend_month(3, 250_000),
            spend_month(4, 300_000),
            spend_month(5, 300_000),
            spend_month(6, 300_000),
        ]),
        gross_margin: Ratio::new(4, 5),
    }
}

fn q2() -> Period {
    Period::new(d(2026, 4, 1), d(2026, 7, 1))
}

#[test]
fn mrr_follows_the_model_rule() {
    let subs = subscriptions();
    let start = mrr_at(&subs, d(2026, 4, 1));
    let usd = &start["USD"];
    // Apr 1: c01 10,000 + c02 10,000 + c03 10,000 + c04 6,500 + c05 7,920 + c06 10,000
    // + c07 14,997 + c08 8,333 + c09 5,000 + c10 10,000 + c11 5,000 + c12 4,333
    // + c13 20,000 + c14 10,000 + c15 8,000 + c16 8,000 + c17 8,667 = 156,750 over 17
    // customers; c18 is trialing (0).
    assert_eq!(usd.total, 156_750);
    assert_eq!(usd.by_customer.len(), 17);
    assert_eq!(usd.customer("c04"), 6_500);
    assert_eq!(usd.customer("c05"), 7_920);
    assert_eq!(usd.customer("c08"), 8_333);
    assert_eq!(usd.customer("c09"), 5_000);
    assert_eq!(usd.customer("c12"), 4_333);
    assert_eq!(usd.customer("c17"), 8_667);
    assert_eq!(usd.customer("c18"), 0);
    // Jul 1: c01..c09 82,750 + c10 15,000 + c11 10,000 + c12 13,000 + c13 12,000
    // + c14 7,500 + c18 5,000 + c19 6,000 + c20 18,000 + c21 4,000 = 173,250 over 18.
    let end = mrr_at(&subs, d(2026, 7, 1));
    assert_eq!(end["USD"].total, 173_250);
    assert_eq!(end["USD"].by_customer.len(), 18);
    assert_eq!(end["USD"].customer("c20"), 18_000);
    assert_eq!(end["USD"].customer("c14"), 7_500);
    // ARR = 12 x 173,250 = 2,079,000.
    assert_eq!(end["USD"].arr(), 2_079_000);
    assert_eq!(end["EUR"].total, 5_000);
    assert_eq!(end["EUR"].arr(), 60_000);
}

#[test]
fn q2_bridge_and_retention_rates() {
    let b = bridge(&subscriptions(), q2());
    let usd = &b["USD"];
    // new: c18 5,000 + c19 6,000 + c20 18,000 = 29,000; reactivation: c21 4,000;
    // expansion: c10 5,000 + c11 5,000 + c12 8,667 = 18,667; contraction: c13 8,000
    // + c14 2,500 = 10,500; churn: c15 8,000 + c16 8,000 + c17 8,667 = 24,667.
    // 156,750 + 29,000 + 4,000 + 18,667 - 10,500 - 24,667 = 173,250.
    assert_eq!(
        (usd.start_mrr, usd.end_mrr, usd.new, usd.reactivation),
        (156_750, 173_250, 29_000, 4_000)
    );
    assert_eq!(
        (usd.expansion, usd.contraction, usd.churn),
        (18_667, 10_500, 24_667)
    );
    assert!(usd.balances());
    assert_eq!(usd.new_customers.len(), 3);
    assert!(usd.reactivated_customers.contains("c21"));
    // Logo churn 3 / 17; gross MRR churn (24,667 + 10,500) / 156,750 = 35,167 / 156,750;
    // NRR (156,750 + 18,667 - 10,500 - 24,667) / 156,750 = 140,250 / 156,750 (8,947 bp);
    // GRR (156,750 - 10,500 - 24,667) / 156,750 = 121,583 / 156,750; expansion 3 / 17.
    assert_eq!(usd.logo_churn_rate(), r(3, 17));
    assert_eq!(usd.gross_mrr_churn_rate(), r(35_167, 156_750));
    assert_eq!(usd.nrr(), r(140_250, 156_750));
    assert_eq!(usd.nrr().value().unwrap().basis_points(), 8_947);
    assert_eq!(usd.grr(), r(121_583, 156_750));
    assert_eq!(usd.expansion_rate(), r(3, 17));
    // EUR: c24 unchanged, so NRR = GRR = 1 and nobody churned.
    let eur = &b["EUR"];
    assert_eq!((eur.start_mrr, eur.end_mrr), (5_000, 5_000));
    assert_eq!(eur.nrr(), r(1, 1));
    assert_eq!(eur.logo_churn_rate(), r(0, 1));
}

#[test]
fn q2_renewal_rate() {
    // Period ends recorded in Q2: c06 Apr 1 yes, c09 Apr 15 yes (past_due continues),
    // c12 Apr 27 yes, c15 May 1 no, c18 May 1 yes (trial into active) and Jun 1 yes,
    // c11 Jun 1 yes, c13 Jun 1 yes, c16 Jun 1 no, c10 Jun 10 yes, c21 Jun 15 yes,
    // c23 Apr 15 no (trial lapsed). c17's period was cut short, so not counted.
    // 9 of 12 = 3 / 4. No EUR period ended in Q2.
    let rates = renewal_rate(&subscriptions(), q2());
    assert_eq!(rates["USD"], r(9, 12));
    assert!(!rates.contains_key("EUR"));
}

#[test]
fn q2_pipeline() {
    let p = pipeline(&deals(), q2());
    let usd = &p["USD"];
    // Won d1 120,000, d2 60,000 (its amount at close), d3 240,000, d6 30,000 = 450,000;
    // lost d4 80,000, d5 100,000 = 180,000. d7 closed before Q2, d8 at its end instant,
    // d11 was reopened.
    assert_eq!((usd.won, usd.lost), (4, 2));
    assert_eq!((usd.won_amount, usd.lost_amount), (450_000, 180_000));
    // Win rate 4 / 6; by amount 450,000 / 630,000 = 5 / 7; average deal 450,000 / 4.
    assert_eq!(usd.win_rate, r(2, 3));
    assert_eq!(usd.win_rate_by_amount, r(5, 7));
    assert_eq!(usd.average_deal_size, r(112_500, 1));
    // Cycles 61, 70, 73, 81.5 days: median (70 + 73) / 2 = 143 / 2; mean 285.5 / 4 = 571 / 8.
    assert_eq!(usd.sales_cycle_median_days, r(143, 2));
    assert_eq!(usd.sales_cycle_mean_days, r(571, 8));
    let eur = &p["EUR"];
    assert_eq!(eur.win_rate, r(1, 1));
    assert_eq!(eur.sales_cycle_median_days, r(66, 1));
    // No EUR deal lost, so the lost figures are 0 and the rates still hold.
    assert_eq!(eur.lost, 0);
}

#[test]
fn pipeline_velocity_over_the_trailing_90_days() {
    // Jul 1 - 90 days = Apr 2: the same closed deals as Q2. Open at Jul 1: d9, d10, d11.
    // 3 x 2/3 x 112,500 / (143 / 2) = 450,000 / 143 cents a day.
    let v = pipeline_velocity(&deals(), d(2026, 7, 1), DEFAULT_VELOCITY_WINDOW_DAYS);
    assert_eq!(v["USD"], r(450_000, 143));
    // EUR: no open deal at Jul 1, so 0 a day: a measured 0, not a missing input.
    assert_eq!(v["EUR"], r(0, 1));
}

#[test]
fn q2_unit_economics() {
    let u = unit_economics(&history(), q2());
    let usd = &u["USD"];
    // CAC: Q2 spend 900,000 / 3 new customers (c18, c19, c20; c21 came back) = 300,000.
    assert_eq!(usd.cac, r(300_000, 1));
    // ARPA at Jul 1: 173,250 / 18 = 9,625.
    assert_eq!(usd.arpa, r(9_625, 1));
    // Trailing months: April 1 churned (c15) of 17; May 2 (c17, and c16 ended at May's end
    // instant Jun 1) of 17 (c15 gone, c18 paying); June 0 of 17 (c01..c14, c18, c20, c21).
    // Pooled: 3 / 51 = 1 / 17.
    assert_eq!(usd.monthly_logo_churn, r(1, 17));
    // LTV = 9,625 x 4/5 / (1/17) = 7,700 x 17 = 130,900.
    assert_eq!(usd.ltv, r(130_900, 1));
    // LTV:CAC = 130,900 / 300,000 = 1,309 / 3,000; payback = 300,000 / 7,700 = 3,000 / 77.
    assert_eq!(usd.ltv_to_cac, r(1_309, 3_000));
    assert_eq!(usd.cac_payback_months, r(3_000, 77));
    // EUR: no spend in EUR and nobody churned, so CAC and LTV have no value; ARPA does.
    let eur = &u["EUR"];
    assert_eq!(
        eur.cac,
        Kpi::Unavailable("no EUR spend is recorded for the period".into())
    );
    assert_eq!(eur.arpa, r(5_000, 1));
    assert_eq!(
        eur.ltv,
        Kpi::Unavailable("no customer churned in the trailing months: LTV is unbounded".into())
    );
}

#[test]
fn missing_inputs_are_unavailable_with_the_reason() {
    let h = History {
        subscriptions: subscriptions(),
        deals: vec![],
        tickets: vec![],
        spend: None,
        gross_margin: None,
    };
    let u = unit_economics(&h, q2());
    let usd = &u["USD"];
    let no_spend = Kpi::Unavailable("no sales and marketing spend is configured".into());
    let no_margin = Kpi::Unavailable("no gross margin is configured".into());
    assert_eq!(usd.cac, no_spend);
    assert_eq!(usd.cac_payback_months, no_spend);
    assert_eq!(usd.ltv, no_margin);
    // Both missing: the first input read (LTV's margin) gives the reason.
    assert_eq!(usd.ltv_to_cac, no_margin);
    // ARPA needs neither.
    assert_eq!(usd.arpa, r(9_625, 1));

    // A spend entry across the period's start is not prorated.
    let mut h = history();
    h.spend = Some(vec![Spend {
        period: Period::new(d(2026, 3, 15), d(2026, 4, 15)),
        amount: 1,
        currency: "USD".into(),
    }]);
    assert!(matches!(&unit_economics(&h, q2())["USD"].cac,
        Kpi::Unavailable(why) if why.contains("straddles")));

    // Before any subscription: no base for the rates.
    let jan = Period::new(d(2025, 1, 1), d(2025, 2, 1));
    assert!(bridge(&subscriptions(), jan).is_empty());
    let empty = super::retention::Bridge::default();
    assert_eq!(
        empty.nrr(),
        Kpi::Unavailable("MRR at the start is 0".into())
    );
    assert_eq!(
        empty.logo_churn_rate(),
        Kpi::Unavailable("no customer had MRR > 0 at the start".into())
    );
    // No deal closed in the window: velocity has no win rate to use.
    let only_open = vec![deals().remove(8)];
    assert_eq!(
        pipeline_velocity(&only_open, d(2026, 7, 1), 90)["USD"],
        Kpi::Unavailable("no USD deal closed in the trailing 90 days".into())
    );
    assert!(pipeline(&deals(), jan).is_empty());
}
