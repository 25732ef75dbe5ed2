//! The KPIs' input read out of the canonical store: each subscription's and deal's states
//! replayed from the history table (every value with the time it took effect).
//!
//! A record whose history holds nothing (a store written before the table existed) is read
//! from its current values, each at the time its provenance says it changed. Nothing before
//! the first value a system reported is guessed: the report says from when history runs.

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use chrono::{DateTime, NaiveTime, Utc};
use revsync_sdk::{Kind, Record, Value};
use uuid::Uuid;

use super::model::{
    AmountChange, Dated, Deal, DealStage, History, Item, StageChange, Subscription,
    SubscriptionState, SubscriptionStatus, Timestamp,
};
use super::support::Ticket;
use crate::engine::codec::{self, HistoryEntry};
use crate::store::{scan_pages, Store, StoreError, Table};

const PAGE: usize = 1024;

/// What was read, and what could not be.
#[derive(Debug, Default)]
pub struct Read {
    pub history: History,
    /// The earliest instant any subscription's history starts: MRR before it is unknown.
    pub subscriptions_since: Option<Timestamp>,
    /// Records that could not be turned into facts, with the reason (a status no KPI knows,
    /// a subscription without an MRR or a currency).
    pub skipped: Vec<String>,
    /// The at-risk threshold (`kpi.urgent_tickets_over`), carried to the report.
    pub urgent_tickets_over: usize,
}

/// One record's part in the KPIs, derived from it and its history alone: what the
/// incremental state ([`super::live`]) keeps per record and replaces when the record changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fact {
    Subscription(Subscription),
    Deal(Deal),
    Ticket(Ticket),
    /// Could not be turned into facts: the reason, naming the record.
    Skipped(String),
}

/// Reads every live subscription, deal and ticket record with its history: the full
/// recompute.
pub fn read(store: &dyn Store) -> Result<Read, StoreError> {
    Ok(assemble(facts(store)?.into_values()))
}

/// Every record's [`Fact`], by id (the store's order), read page by page.
pub fn facts(store: &dyn Store) -> Result<BTreeMap<Uuid, Fact>, StoreError> {
    let mut out = BTreeMap::new();
    for page in scan_pages(store, Table::Records, b"", PAGE) {
        for (_, bytes) in page? {
            let Ok(rec) = codec::decode_record(&bytes) else {
                continue;
            };
            if let Some(f) = fact(store, &rec)? {
                out.insert(rec.id, f);
            }
        }
    }
    Ok(out)
}

/// The record's [`Fact`], or none when no KPI reads it (another kind, merged away).
pub fn fact(store: &dyn Store, rec: &Record) -> Result<Option<Fact>, StoreError> {
    if rec.merged_into.is_some()
        || !matches!(rec.kind, Kind::Subscription | Kind::Deal | Kind::Ticket)
    {
        return Ok(None);
    }
    let values = values_in_order(store, rec)?;
    Ok(Some(match rec.kind {
        Kind::Subscription => match subscription(rec, &values) {
            Ok(s) => Fact::Subscription(s),
            Err(why) => Fact::Skipped(format!("subscription {}: {why}", rec.id)),
        },
        Kind::Ticket => Fact::Ticket(ticket(rec, &values)),
        _ => match deal(rec, &values) {
            Ok(d) => Fact::Deal(d),
            Err(why) => Fact::Skipped(format!("deal {}: {why}", rec.id)),
        },
    }))
}

/// The KPIs' input from the records' facts, in the records' order.
pub fn assemble(facts: impl IntoIterator<Item = Fact>) -> Read {
    let mut out = Read {
        urgent_tickets_over: super::report::Inputs::default().urgent_tickets_over,
        ..Read::default()
    };
    for f in facts {
        match f {
            Fact::Subscription(s) => {
                let first = s.states.iter().map(|s| s.effective_at).min();
                out.subscriptions_since = match (out.subscriptions_since, first) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                out.history.subscriptions.push(s);
            }
            Fact::Deal(d) => out.history.deals.push(d),
            Fact::Ticket(t) => out.history.tickets.push(t),
            Fact::Skipped(why) => out.skipped.push(why),
        }
    }
    out
}

/// (time, field, value), oldest first: the history table's entries, or the record's current
/// values when it has none.
fn values_in_order(
    store: &dyn Store,
    rec: &Record,
) -> Result<Vec<(i64, String, Value)>, StoreError> {
    let prefix = codec::history_prefix(rec.id);
    let mut out = Vec::new();
    for page in scan_pages(store, Table::History, &prefix, PAGE) {
        for (key, bytes) in page? {
            let (Some((ts, field)), Ok(entry)) = (
                codec::split_history_key(&key),
                codec::decode::<HistoryEntry>(&bytes),
            ) else {
                continue;
            };
            out.push((ts, field.to_owned(), entry.value));
        }
    }
    if out.is_empty() {
        out = rec
            .fields
            .iter()
            .map(|(f, e)| (e.from.source_ts, f.clone(), e.value.clone()))
            .collect();
        out.sort_by_key(|(ts, _, _)| *ts);
    }
    Ok(out)
}

fn time(us: i64) -> Option<Timestamp> {
    DateTime::<Utc>::from_timestamp_micros(us)
}

/// A time field's value as an instant (a date is its midnight UTC).
fn instant(v: Option<&Value>) -> Option<Timestamp> {
    match v? {
        Value::Time(us) => time(*us),
        Value::Date(d) => Some(d.and_time(NaiveTime::MIN).and_utc()),
        Value::Int(secs) => DateTime::<Utc>::from_timestamp(*secs, 0),
        _ => None,
    }
}

fn status(v: Option<&Value>) -> Result<Option<SubscriptionStatus>, String> {
    let Some(v) = v else { return Ok(None) };
    let Value::Text(s) = v else {
        return Err(format!("status {v:?} is not text"));
    };
    Ok(Some(match s.as_str() {
        "trialing" => SubscriptionStatus::Trialing,
        "active" => SubscriptionStatus::Active,
        "past_due" => SubscriptionStatus::PastDue,
        "unpaid" => SubscriptionStatus::Unpaid,
        "paused" => SubscriptionStatus::Paused,
        "canceled" | "incomplete_expired" => SubscriptionStatus::Canceled,
        "incomplete" => SubscriptionStatus::Incomplete,
        other => return Err(format!("status `{other}` is not one of MODEL.md's")),
    }))
}

/// A money field: amount and currency (an integer amount takes the `currency` field's).
fn money(v: Option<&Value>, currency: Option<&Value>) -> Option<(i64, String)> {
    match v? {
        Value::Money {
            amount_minor,
            currency,
        } => Some((*amount_minor, currency.to_ascii_uppercase())),
        Value::Int(n) => match currency? {
            Value::Text(c) if !c.is_empty() => Some((*n, c.to_ascii_uppercase())),
            _ => None,
        },
        _ => None,
    }
}

/// Replays the values into the states the subscription went through. The canonical `mrr`
/// is already MODEL.md's monthly figure (the billing connector computes it from the items),
/// so each state carries it as one monthly item.
fn subscription(rec: &Record, values: &[(i64, String, Value)]) -> Result<Subscription, String> {
    let mut now: BTreeMap<&str, &Value> = BTreeMap::new();
    let mut states = Vec::new();
    let mut currency = None;
    for group in values.chunk_by(|a, b| a.0 == b.0) {
        let mut ts = 0;
        for (t, field, value) in group {
            now.insert(field, value);
            ts = *t;
        }
        let (Some(status), Some(at)) = (status(now.get("status").copied())?, time(ts)) else {
            continue;
        };
        let Some((mrr, cur)) = money(now.get("mrr").copied(), now.get("currency").copied()) else {
            continue;
        };
        if currency.get_or_insert_with(|| cur.clone()) != &cur {
            return Err(format!("its currency changed from {currency:?} to {cur}"));
        }
        states.push(SubscriptionState {
            effective_at: at,
            status,
            items: vec![Item {
                unit_amount: mrr,
                quantity: 1,
                interval: super::Interval::Month,
                interval_count: NonZeroU32::MIN,
                metered: false,
            }],
            discount: None,
            current_period_start: instant(now.get("current_period_start").copied()).unwrap_or(at),
            // No period end known: none falls in any period, so renewals are not counted.
            current_period_end: instant(now.get("current_period_end").copied())
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            canceled_at: instant(now.get("canceled_at").copied()),
            ended_at: instant(now.get("ended_at").copied()),
        });
    }
    let Some(currency) = currency else {
        return Err("no state with a status, an mrr and a currency".into());
    };
    let customer = customer_ref(rec.value("customer")).unwrap_or_else(|| rec.id.to_string());
    Ok(Subscription {
        id: rec.id.to_string(),
        customer,
        currency,
        states,
    })
}

fn customer_ref(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Ref(id) => Some(id.to_string()),
        Value::ExtRef {
            connector,
            object,
            id,
        } => Some(format!("{connector}:{object}:{id}")),
        _ => None,
    }
}

/// A ticket's times: its own fields where mapped, else when its history shows it first
/// reported (created) and first solved or closed.
fn ticket(rec: &Record, values: &[(i64, String, Value)]) -> Ticket {
    let mut solved = None;
    let mut priorities = Vec::new();
    for (ts, field, value) in values {
        let Some(at) = time(*ts) else { continue };
        match (field.as_str(), value) {
            ("status", Value::Text(s)) if matches!(s.as_str(), "solved" | "closed") => {
                solved.get_or_insert(at);
            }
            ("priority", Value::Text(p)) => priorities.push(Dated {
                at,
                value: p.clone(),
            }),
            _ => {}
        }
    }
    let first_seen = values.first().and_then(|(ts, _, _)| time(*ts));
    // A ticket first read already solved was solved at some unknown time before.
    let solved = solved.filter(|s| Some(*s) != first_seen);
    let created_at = instant(rec.value("created_at"))
        .or(first_seen)
        .or_else(|| time(rec.created_ts))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    if let Some(p) = priorities.first_mut() {
        p.at = p.at.min(created_at);
    }
    Ticket {
        id: rec.id.to_string(),
        customer: customer_ref(rec.value("organization"))
            .or_else(|| customer_ref(rec.value("requester"))),
        created_at,
        first_response_at: instant(rec.value("first_response_at")),
        solved_at: instant(rec.value("solved_at")).or(solved),
        priorities,
    }
}

fn stage(v: &Value, status: Option<&Value>) -> Option<DealStage> {
    let closed = |s: &str| match s {
        "closed_won" | "won" => Some(DealStage::ClosedWon),
        "closed_lost" | "lost" => Some(DealStage::ClosedLost),
        _ => None,
    };
    let Value::Text(s) = v else { return None };
    if let Some(c) = closed(s) {
        return Some(c);
    }
    // A pipeline's own closed stage mapped through `status` (won/lost).
    if let Some(Value::Text(st)) = status {
        if let Some(c) = closed(st) {
            return Some(c);
        }
    }
    Some(DealStage::Open(s.clone()))
}

/// Replays a deal's stage and amount. A close is dated by the deal's own `closed_at` (or
/// `close_date`) when that is no later than the time the closed stage was reported: a deal
/// read for the first time long after it was won was won then, not when revsync read it.
fn deal(rec: &Record, values: &[(i64, String, Value)]) -> Result<Deal, String> {
    let mut now: BTreeMap<&str, &Value> = BTreeMap::new();
    let mut stages: Vec<StageChange> = Vec::new();
    let mut amounts: Vec<AmountChange> = Vec::new();
    let mut close_dates = Vec::new();
    let mut probabilities = Vec::new();
    let mut categories = Vec::new();
    // Closes dated back to the deal's own close date: (reported at, closed at).
    let mut backdated: Vec<(Timestamp, Timestamp)> = Vec::new();
    for (ts, field, value) in values {
        now.insert(field, value);
        let Some(at) = time(*ts) else { continue };
        match field.as_str() {
            "stage" | "status" => {
                let Some(v) = now.get("stage").or_else(|| now.get("status")) else {
                    continue;
                };
                let Some(st) = stage(v, now.get("status").copied()) else {
                    continue;
                };
                if stages.last().is_some_and(|s| s.stage == st) {
                    continue;
                }
                let reported = at;
                let at = if st.is_closed() {
                    instant(
                        now.get("closed_at")
                            .or_else(|| now.get("close_date"))
                            .copied(),
                    )
                    .filter(|c| *c <= at)
                    .unwrap_or(at)
                } else {
                    at
                };
                if at < reported {
                    backdated.push((reported, at));
                }
                stages.push(StageChange { at, stage: st });
            }
            "close_date" => {
                if let Some(value) = instant(Some(value)) {
                    close_dates.push(Dated { at, value });
                }
            }
            "probability" => {
                let p = match value {
                    Value::Int(n) => u32::try_from(*n).ok(),
                    Value::Text(s) => s.trim().parse::<f64>().ok().map(|f| f.round() as u32),
                    _ => None,
                };
                if let Some(value) = p.filter(|p| *p <= 100) {
                    probabilities.push(Dated { at, value });
                }
            }
            "forecast_category" => {
                if let Value::Text(s) = value {
                    categories.push(Dated {
                        at,
                        value: s.clone(),
                    });
                }
            }
            "amount" => {
                if let Some((amount, currency)) = money(Some(value), now.get("currency").copied()) {
                    amounts.push(AmountChange {
                        at,
                        amount,
                        currency,
                    });
                }
            }
            _ => {}
        }
    }
    if stages.is_empty() {
        return Err("no stage".into());
    }
    // The amount reported with a close is the amount it closed at.
    for (reported, at) in backdated {
        for a in amounts.iter_mut().filter(|a| a.at == reported) {
            a.at = at;
        }
    }
    amounts.sort_by_key(|a| a.at);
    let stated = instant(rec.value("created_at"));
    let created_known = stated.is_some() || stages.first().is_some_and(|s| !s.stage.is_closed());
    let created_at = stated
        .or_else(|| time(rec.created_ts))
        .ok_or("no creation time")?;
    // A deal first read already closed, and dated before revsync saw it created.
    let first = stages.iter().map(|s| s.at).fold(created_at, Timestamp::min);
    // The amount first reported is the one the deal had when its first stage was.
    if let Some(a) = amounts.first_mut() {
        a.at = a.at.min(first);
    }
    for first_known in [
        close_dates
            .first_mut()
            .map(|d: &mut Dated<Timestamp>| &mut d.at),
        probabilities
            .first_mut()
            .map(|d: &mut Dated<u32>| &mut d.at),
        categories
            .first_mut()
            .map(|d: &mut Dated<String>| &mut d.at),
    ]
    .into_iter()
    .flatten()
    {
        *first_known = (*first_known).min(first);
    }
    Ok(Deal {
        id: rec.id.to_string(),
        created_at: first,
        created_known,
        amounts,
        stages,
        close_dates,
        probabilities,
        categories,
    })
}
