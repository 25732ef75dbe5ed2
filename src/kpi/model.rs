//! Input: history as dated facts, the shape a later step will read out of the canonical store.
//!
//! Every fact carries the instant it took effect in the source system, so any KPI can be asked
//! "as of t" without knowing today's state. Money is integer minor units with an ISO 4217 code.

use std::num::NonZeroU32;

use chrono::{DateTime, Utc};

use super::ratio::Ratio;

pub type Timestamp = DateTime<Utc>;
/// ISO 4217 code, upper case (`"USD"`); every KPI is grouped by it.
pub type Currency = String;
pub type CustomerId = String;

/// A half-open period `[start, end)` in UTC (KPIS.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Period {
    pub fn new(start: Timestamp, end: Timestamp) -> Period {
        Period { start, end }
    }

    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }
}

/// MODEL.md's subscription statuses (`incomplete_expired` already mapped to canceled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscriptionStatus {
    Trialing,
    Active,
    PastDue,
    Unpaid,
    Paused,
    Canceled,
    Incomplete,
}

impl SubscriptionStatus {
    /// MODEL.md: trialing, canceled and incomplete contribute 0; every other status counts,
    /// past_due included (the customer still owes it).
    pub fn contributes(self) -> bool {
        !matches!(
            self,
            SubscriptionStatus::Trialing
                | SubscriptionStatus::Canceled
                | SubscriptionStatus::Incomplete
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interval {
    Day,
    Week,
    Month,
    Year,
}

impl Interval {
    /// The factor that turns one amount per `interval_count` intervals into a monthly amount
    /// (MODEL.md): month 1/n, year 1/(12n), week 52/(12n), day 365/(12n).
    pub fn monthly_factor(self, interval_count: NonZeroU32) -> Ratio {
        let n = i128::from(interval_count.get());
        let (num, den) = match self {
            Interval::Month => (1, n),
            Interval::Year => (1, 12 * n),
            Interval::Week => (52, 12 * n),
            Interval::Day => (365, 12 * n),
        };
        Ratio::new(num, den).unwrap_or_else(Ratio::zero)
    }
}

/// One price on a subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub unit_amount: i64,
    pub quantity: u64,
    pub interval: Interval,
    pub interval_count: NonZeroU32,
    /// Metered prices contribute 0 until invoiced (MODEL.md).
    pub metered: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Discount {
    /// Percent off in basis points (1250 = 12.5 %), as Stripe allows fractional percents.
    PercentOff(u32),
    /// An amount off every invoice of the given billing interval, in the subscription's
    /// currency; normalized to a month like an item.
    AmountOff {
        amount: i64,
        interval: Interval,
        interval_count: NonZeroU32,
    },
}

/// A subscription as it was from `effective_at` until its next state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionState {
    pub effective_at: Timestamp,
    pub status: SubscriptionStatus,
    pub items: Vec<Item>,
    pub discount: Option<Discount>,
    pub current_period_start: Timestamp,
    pub current_period_end: Timestamp,
    /// When cancellation was asked for; a subscription canceled at period end keeps paying
    /// until then, so this alone does not end its MRR.
    pub canceled_at: Option<Timestamp>,
    /// From this instant on the subscription contributes 0.
    pub ended_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub id: String,
    pub customer: CustomerId,
    pub currency: Currency,
    /// In any order; read by `effective_at`.
    pub states: Vec<SubscriptionState>,
}

impl Subscription {
    /// The state in effect at `t`: the latest with `effective_at <= t`. Ties keep the one
    /// listed last, so a history may correct itself at the same instant.
    pub fn state_at(&self, t: Timestamp) -> Option<&SubscriptionState> {
        latest(&self.states, |s| s.effective_at, |at| at <= t)
    }

    /// The state in effect just before `t` (latest with `effective_at < t`).
    pub fn state_before(&self, t: Timestamp) -> Option<&SubscriptionState> {
        latest(&self.states, |s| s.effective_at, |at| at < t)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DealStage {
    /// Any open stage, by its canonical name (prospecting, proposal, ...).
    Open(String),
    ClosedWon,
    ClosedLost,
}

impl DealStage {
    pub fn is_closed(&self) -> bool {
        matches!(self, DealStage::ClosedWon | DealStage::ClosedLost)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageChange {
    pub at: Timestamp,
    pub stage: DealStage,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmountChange {
    pub at: Timestamp,
    pub amount: i64,
    pub currency: Currency,
}

/// A value a deal field took at an instant (close date, probability, forecast category).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dated<T> {
    pub at: Timestamp,
    pub value: T,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deal {
    pub id: String,
    pub created_at: Timestamp,
    /// False when the system never said when the deal was created and it was first read
    /// already closed: `created_at` is then only a bound, and no sales cycle is taken from it.
    pub created_known: bool,
    pub amounts: Vec<AmountChange>,
    pub stages: Vec<StageChange>,
    /// The expected close date (its instant), as the CRM said over time.
    pub close_dates: Vec<Dated<Timestamp>>,
    /// Win probability in percent (MODEL.md: 0-100).
    pub probabilities: Vec<Dated<u32>>,
    /// Forecast category (commit, best_case, pipeline, ...).
    pub categories: Vec<Dated<String>>,
}

impl Deal {
    pub fn stage_at(&self, t: Timestamp) -> Option<&StageChange> {
        latest(&self.stages, |s| s.at, |at| at <= t)
    }

    /// The stage that ended before `t`: a close at exactly `t` belongs to the next period.
    pub fn stage_before(&self, t: Timestamp) -> Option<&StageChange> {
        latest(&self.stages, |s| s.at, |at| at < t)
    }

    pub fn amount_at(&self, t: Timestamp) -> Option<&AmountChange> {
        latest(&self.amounts, |a| a.at, |at| at <= t)
    }

    pub fn close_date_at(&self, t: Timestamp) -> Option<Timestamp> {
        dated_at(&self.close_dates, t).copied()
    }

    pub fn probability_at(&self, t: Timestamp) -> Option<u32> {
        dated_at(&self.probabilities, t).copied()
    }

    pub fn category_at(&self, t: Timestamp) -> Option<&str> {
        dated_at(&self.categories, t).map(String::as_str)
    }
}

fn dated_at<T>(xs: &[Dated<T>], t: Timestamp) -> Option<&T> {
    latest(xs, |d| d.at, |at| at <= t).map(|d| &d.value)
}

/// The fact with the latest time among those `keep` accepts; ties go to the one listed last.
fn latest<T>(
    xs: &[T],
    at: impl Fn(&T) -> Timestamp,
    keep: impl Fn(Timestamp) -> bool,
) -> Option<&T> {
    xs.iter()
        .enumerate()
        .filter(|(_, x)| keep(at(x)))
        .max_by_key(|(i, x)| (at(x), *i))
        .map(|(_, x)| x)
}

/// Sales and marketing spend over `[start, end)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spend {
    pub period: Period,
    pub amount: i64,
    pub currency: Currency,
}

/// Everything the KPIs read. `spend` and `gross_margin` are optional inputs: `None` means not
/// configured, and the KPIs that need them are reported unavailable.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub subscriptions: Vec<Subscription>,
    pub deals: Vec<Deal>,
    pub tickets: Vec<super::support::Ticket>,
    pub spend: Option<Vec<Spend>>,
    /// Gross margin as a fraction (0.8 = `Ratio::new(4, 5)`).
    pub gross_margin: Option<Ratio>,
}
