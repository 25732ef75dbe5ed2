//! Revenue KPIs (shared KPIS.md) as pure functions over dated facts: no store, no IO.
//!
//! [`read`] turns the canonical store's history into [`History`]; here every KPI is
//! computed from it as of any instant or over any half-open period `[start, end)`, per
//! currency. Money is integer minor units; rates are exact [`Ratio`]s. A KPI whose input is
//! missing, or whose base is empty, is [`Kpi::Unavailable`] with the reason, never 0.
//! ADR 0039 says why the core is pure; docs/kpi.md gives each definition as implemented.

pub mod convert;
pub mod forecast;
pub mod live;
pub mod model;
pub mod mrr;
pub mod pipeline;
pub mod ratio;
pub mod read;
pub mod report;
pub mod retention;
pub mod support;
pub mod unit;

#[cfg(test)]
mod tests;

pub use forecast::{forecast_accuracy, weighted_pipeline, WeightedPipeline};
pub use model::{
    AmountChange, Currency, CustomerId, Dated, Deal, DealStage, Discount, History, Interval, Item,
    Period, Spend, StageChange, Subscription, SubscriptionState, SubscriptionStatus, Timestamp,
};
pub use mrr::{mrr_at, state_mrr, subscription_mrr_at, MrrSnapshot};
pub use pipeline::{pipeline, pipeline_velocity, PipelineStats, DEFAULT_VELOCITY_WINDOW_DAYS};
pub use ratio::Ratio;
pub use retention::{bridge, renewal_rate, Bridge};
pub use support::{at_risk, support, AtRisk, SupportStats, Ticket};
pub use unit::{unit_economics, UnitEconomics};

/// A KPI's value, or why it has none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kpi<T> {
    Value(T),
    Unavailable(String),
}

impl<T> Kpi<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Kpi<U> {
        match self {
            Kpi::Value(v) => Kpi::Value(f(v)),
            Kpi::Unavailable(r) => Kpi::Unavailable(r),
        }
    }

    /// The first missing input's reason wins.
    pub fn and_then<U>(self, f: impl FnOnce(T) -> Kpi<U>) -> Kpi<U> {
        match self {
            Kpi::Value(v) => f(v),
            Kpi::Unavailable(r) => Kpi::Unavailable(r),
        }
    }

    pub fn from_option(v: Option<T>, why: &str) -> Kpi<T> {
        match v {
            Some(v) => Kpi::Value(v),
            None => Kpi::Unavailable(why.to_string()),
        }
    }

    pub fn value(&self) -> Option<&T> {
        match self {
            Kpi::Value(v) => Some(v),
            Kpi::Unavailable(_) => None,
        }
    }
}

impl Kpi<Ratio> {
    /// `num / den`, unavailable with `why` when `den` is 0.
    pub fn ratio(num: i128, den: i128, why: &str) -> Kpi<Ratio> {
        Kpi::from_option(Ratio::new(num, den), why)
    }
}
