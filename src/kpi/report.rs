//! The KPI report: every KPI of [`super`] over a run of calendar periods, as JSON (`GET /kpi`,
//! `revsync kpi --json`) and as tables for a terminal.
//!
//! Rates are shown in percent with two decimals (from exact ratios, rounded half to even),
//! money in minor units with its currency. A KPI without its input says why, and MRR
//! figures for a period that starts before the store's subscription history are unavailable
//! rather than counted from zero.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, Months, NaiveDate, TimeZone, Utc};
use serde_json::{json, Map, Value as Json};

use super::model::{History, Period, Timestamp};
use super::read::Read;
use super::{
    at_risk, bridge, forecast_accuracy, mrr_at, pipeline, pipeline_velocity, renewal_rate, support,
    unit_economics, weighted_pipeline, Kpi, Ratio, DEFAULT_VELOCITY_WINDOW_DAYS,
};

/// The calendar unit of a report's periods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeriodKind {
    Month,
    Quarter,
}

impl PeriodKind {
    pub fn parse(s: &str) -> Option<PeriodKind> {
        match s {
            "month" => Some(PeriodKind::Month),
            "quarter" => Some(PeriodKind::Quarter),
            _ => None,
        }
    }

    fn months(self) -> u32 {
        match self {
            PeriodKind::Month => 1,
            PeriodKind::Quarter => 3,
        }
    }

    /// The start of the period that holds `t`.
    fn start_of(self, t: Timestamp) -> Timestamp {
        let month0 = t.month0() - t.month0() % self.months();
        Utc.with_ymd_and_hms(t.year(), month0 + 1, 1, 0, 0, 0)
            .single()
            .unwrap_or(t)
    }
}

/// The periods from the one holding `from` up to `to`; the last ends at `to` when `to`
/// falls inside it (a period to date). At most `max` periods, the latest kept.
pub fn periods(kind: PeriodKind, from: Timestamp, to: Timestamp, max: usize) -> Vec<Period> {
    let mut out = Vec::new();
    let mut start = kind.start_of(from);
    while start < to {
        let Some(next) = start.checked_add_months(Months::new(kind.months())) else {
            break;
        };
        out.push(Period::new(start, next.min(to)));
        start = next;
    }
    let skip = out.len().saturating_sub(max);
    out.split_off(skip)
}

/// The default run: the current period to date and the two before it.
pub fn default_from(kind: PeriodKind, now: Timestamp) -> Timestamp {
    let start = kind.start_of(now);
    start
        .checked_sub_months(Months::new(2 * kind.months()))
        .unwrap_or(start)
}

/// A day as the instant it starts (UTC).
pub fn day_start(d: NaiveDate) -> Timestamp {
    d.and_time(chrono::NaiveTime::MIN).and_utc()
}

fn rate(k: &Kpi<Ratio>) -> Json {
    match k {
        Kpi::Value(r) => json!({ "percent": r.basis_points() as f64 / 100.0 }),
        Kpi::Unavailable(why) => json!({ "unavailable": why }),
    }
}

/// Money per unit (ARPA, CAC, LTV): minor units, rounded half to even.
fn amount(k: &Kpi<Ratio>) -> Json {
    match k {
        Kpi::Value(r) => json!(r.round_half_even() as f64),
        Kpi::Unavailable(why) => json!({ "unavailable": why }),
    }
}

/// Days or months, two decimals.
fn quantity(k: &Kpi<Ratio>) -> Json {
    match k {
        Kpi::Value(r) => json!((*r * Ratio::from_int(100)).round_half_even() as f64 / 100.0),
        Kpi::Unavailable(why) => json!({ "unavailable": why }),
    }
}

fn unavailable(why: &str) -> Json {
    json!({ "unavailable": why })
}

/// Every KPI over each period, per currency.
pub fn report(read: &Read, kind: PeriodKind, periods: &[Period], now: Timestamp) -> Json {
    let h: &History = &read.history;
    let since = read.subscriptions_since;
    let out: Vec<Json> = periods
        .iter()
        .map(|p| period_report(h, since, *p, now))
        .collect();
    // At risk now; contraction is judged over the last whole period.
    let current = kind.start_of(now);
    let last = Period::new(
        current
            .checked_sub_months(Months::new(kind.months()))
            .unwrap_or(current),
        current,
    );
    let urgent = read.urgent_tickets_over;
    let risk: Vec<Json> = at_risk(h, now, urgent, last)
        .into_iter()
        .map(|r| json!({ "customer": r.customer, "mrr": r.mrr, "reasons": r.reasons }))
        .collect();
    // The weighted pipeline of the period under way and the two after it, as it stands.
    let ahead: Vec<Json> = periods_ahead(kind, now)
        .into_iter()
        .map(|p| {
            let w: Map<String, Json> = weighted_pipeline(&h.deals, p, now)
                .into_iter()
                .map(|(cur, w)| (cur, weighted_json(&w)))
                .collect();
            json!({ "start": p.start.to_rfc3339(), "end": p.end.to_rfc3339(), "currencies": w })
        })
        .collect();
    let mut current: Map<String, Json> = mrr_at(&h.subscriptions, now)
        .iter()
        .map(|(cur, snap)| {
            (
                cur.clone(),
                json!({ "mrr": snap.total, "arr": snap.arr(), "customers": snap.by_customer.len() }),
            )
        })
        .collect();
    // Open pipeline: every deal not closed now, at its amount now, in all and by stage.
    let mut open: BTreeMap<&str, (i64, u64)> = BTreeMap::new();
    let mut by_stage: BTreeMap<&str, BTreeMap<&str, (i64, u64)>> = BTreeMap::new();
    for d in &h.deals {
        let Some(super::model::DealStage::Open(stage)) = d.stage_at(now).map(|s| &s.stage) else {
            continue;
        };
        if let Some(a) = d.amount_at(now) {
            for e in [
                open.entry(a.currency.as_str()).or_default(),
                by_stage
                    .entry(a.currency.as_str())
                    .or_default()
                    .entry(stage.as_str())
                    .or_default(),
            ] {
                e.0 = e.0.saturating_add(a.amount);
                e.1 += 1;
            }
        }
    }
    for (cur, (amount, n)) in open {
        let e = current.entry(cur.to_owned()).or_insert_with(|| json!({}));
        e["open_pipeline"] = json!(amount);
        e["open_deals"] = json!(n);
        let stages: Map<String, Json> = by_stage
            .remove(cur)
            .unwrap_or_default()
            .into_iter()
            .map(|(stage, (amount, n))| (stage.to_owned(), json!({ "amount": amount, "deals": n })))
            .collect();
        e["open_pipeline_by_stage"] = Json::Object(stages);
    }
    json!({
        "as_of": now.to_rfc3339(),
        "subscription_history_since": since.map(|t| t.to_rfc3339()),
        "subscriptions": h.subscriptions.len(),
        "deals": h.deals.len(),
        "skipped": read.skipped.len(),
        "now": current,
        "periods": out,
        "forecast": ahead,
        "at_risk": risk,
        "at_risk_rules": format!(
            "MRR > 0 and a subscription past due or unpaid, more than {urgent} urgent or high tickets in the last 30 days, or contraction over {} .. {}",
            last.start.to_rfc3339(),
            last.end.to_rfc3339()
        ),
    })
}

/// What the KPIs need that no system holds (`kpi:` in revsync.yaml).
#[derive(Clone, Debug)]
pub struct Inputs {
    pub spend: Option<Vec<super::Spend>>,
    pub gross_margin: Option<Ratio>,
    /// More urgent or high tickets than this in 30 days puts a paying customer at risk.
    pub urgent_tickets_over: usize,
    /// `kpi.reporting_currency` and its rate table: every amount converted before the KPIs.
    pub rates: Option<super::convert::Rates>,
}

impl Default for Inputs {
    fn default() -> Self {
        Inputs::from(&crate::config::KpiConfig::default())
    }
}

impl From<&crate::config::KpiConfig> for Inputs {
    fn from(c: &crate::config::KpiConfig) -> Self {
        let spend = (!c.spend.is_empty()).then(|| {
            c.spend
                .iter()
                .map(|s| super::Spend {
                    period: Period::new(day_start(s.from), day_start(s.to)),
                    amount: s.amount_minor,
                    currency: s.currency.to_ascii_uppercase(),
                })
                .collect()
        });
        // In basis points: exact for any margin written with up to four decimals.
        let gross_margin = c
            .gross_margin
            .and_then(|m| Ratio::new((m * 10_000.0).round() as i128, 10_000));
        // Rates to nine decimals, exactly as a rational.
        let rates = c
            .reporting_currency
            .as_ref()
            .map(|to| super::convert::Rates {
                to: to.to_ascii_uppercase(),
                per_unit: c
                    .rates
                    .iter()
                    .filter_map(|(cur, r)| {
                        Some((
                            cur.to_ascii_uppercase(),
                            Ratio::new((r * 1e9).round() as i128, 1_000_000_000)?,
                        ))
                    })
                    .collect(),
            });
        Inputs {
            spend,
            gross_margin,
            urgent_tickets_over: c.urgent_tickets_over,
            rates,
        }
    }
}

/// The period holding `now` and the two after it, whole.
fn periods_ahead(kind: PeriodKind, now: Timestamp) -> Vec<Period> {
    let start = kind.start_of(now);
    let end = start
        .checked_add_months(Months::new(3 * kind.months()))
        .unwrap_or(now);
    periods(kind, start, end, 3)
}

fn weighted_json(w: &super::WeightedPipeline) -> Json {
    json!({
        "weighted": w.weighted,
        "by_category": w.by_category,
        "deals": w.deals,
        "amount": w.amount,
        "without_probability": w.without_probability,
    })
}

fn period_report(h: &History, since: Option<Timestamp>, p: Period, now: Timestamp) -> Json {
    // MRR at the start is known only from the first state the store holds on.
    let recurring_known = since.is_some_and(|s| s <= p.start);
    let why_not = match since {
        None => "no subscription history in the store".to_string(),
        Some(s) => format!(
            "subscription history starts at {}, after the period starts",
            s.to_rfc3339()
        ),
    };
    let bridges = bridge(&h.subscriptions, p);
    let renewals = renewal_rate(&h.subscriptions, p);
    let deals = pipeline(&h.deals, p);
    let velocity = pipeline_velocity(&h.deals, p.end, DEFAULT_VELOCITY_WINDOW_DAYS);
    let units = unit_economics(h, p);
    let end_mrr = mrr_at(&h.subscriptions, p.end);
    // The forecast snapshot: the weighted pipeline as it stood when the period began.
    let snapshot = weighted_pipeline(&h.deals, p, p.start);
    let accuracy = if p.end <= now {
        forecast_accuracy(&h.deals, p)
    } else {
        BTreeMap::new()
    };
    let currencies: BTreeSet<&String> = bridges
        .keys()
        .chain(deals.keys())
        .chain(velocity.keys())
        .chain(end_mrr.keys())
        .chain(snapshot.keys())
        .collect();
    let mut by_currency = Map::new();
    for cur in currencies {
        let mut c = Map::new();
        if let Some(snap) = end_mrr.get(cur) {
            c.insert("mrr_end".into(), json!(snap.total));
            c.insert("arr_end".into(), json!(snap.arr()));
            c.insert("customers_end".into(), json!(snap.by_customer.len()));
        }
        match bridges.get(cur) {
            Some(b) if recurring_known => {
                c.insert("mrr_start".into(), json!(b.start_mrr));
                c.insert(
                    "bridge".into(),
                    json!({
                        "new": b.new, "reactivation": b.reactivation, "expansion": b.expansion,
                        "contraction": b.contraction, "churn": b.churn,
                    }),
                );
                c.insert("customers_start".into(), json!(b.customers_at_start));
                c.insert("logo_churn".into(), rate(&b.logo_churn_rate()));
                c.insert("gross_mrr_churn".into(), rate(&b.gross_mrr_churn_rate()));
                c.insert("nrr".into(), rate(&b.nrr()));
                c.insert("grr".into(), rate(&b.grr()));
                c.insert("expansion_rate".into(), rate(&b.expansion_rate()));
            }
            Some(_) => {
                for k in [
                    "mrr_start",
                    "bridge",
                    "logo_churn",
                    "gross_mrr_churn",
                    "nrr",
                    "grr",
                    "expansion_rate",
                ] {
                    c.insert(k.into(), unavailable(&why_not));
                }
            }
            None => {}
        }
        if let Some(r) = renewals.get(cur) {
            c.insert("renewal_rate".into(), rate(r));
        }
        if let Some(d) = deals.get(cur) {
            c.insert(
                "deals".into(),
                json!({
                    "won": d.won, "lost": d.lost,
                    "won_amount": d.won_amount, "lost_amount": d.lost_amount,
                    "win_rate": rate(&d.win_rate),
                    "win_rate_by_amount": rate(&d.win_rate_by_amount),
                    "average_deal_size": amount(&d.average_deal_size),
                    "sales_cycle_median_days": quantity(&d.sales_cycle_median_days),
                    "sales_cycle_mean_days": quantity(&d.sales_cycle_mean_days),
                }),
            );
        }
        if let Some(v) = velocity.get(cur) {
            c.insert("pipeline_velocity_per_day".into(), amount(v));
        }
        if let Some(w) = snapshot.get(cur) {
            c.insert("forecast_at_start".into(), weighted_json(w));
        }
        if let Some(a) = accuracy.get(cur) {
            c.insert("forecast_accuracy".into(), rate(a));
        }
        if let Some(u) = units.get(cur) {
            let known = |k: &Kpi<Ratio>, f: fn(&Kpi<Ratio>) -> Json| {
                if recurring_known {
                    f(k)
                } else {
                    unavailable(&why_not)
                }
            };
            c.insert("cac".into(), known(&u.cac, amount));
            c.insert("arpa".into(), amount(&u.arpa));
            c.insert("ltv".into(), amount(&u.ltv));
            c.insert("ltv_to_cac".into(), known(&u.ltv_to_cac, quantity));
            c.insert(
                "cac_payback_months".into(),
                known(&u.cac_payback_months, quantity),
            );
        }
        by_currency.insert(cur.clone(), Json::Object(c));
    }
    let s = support(&h.tickets, p);
    json!({
        "start": p.start.to_rfc3339(),
        "end": p.end.to_rfc3339(),
        "currencies": by_currency,
        "support": {
            "tickets": s.tickets,
            "tickets_per_customer": quantity(&s.tickets_per_customer),
            "median_first_response_hours": quantity(&s.median_first_response_hours),
            "median_resolution_hours": quantity(&s.median_resolution_hours),
        },
    })
}

/// The report as tables, one per period: a row per KPI, a column per currency.
pub fn tables(report: &Json) -> String {
    let mut out = String::new();
    if let Some(now) = report["now"].as_object() {
        for (cur, v) in now {
            out.push_str(&format!(
                "now: MRR {} {cur}, ARR {} {cur}, {} paying customers\n",
                money(&v["mrr"]),
                money(&v["arr"]),
                v["customers"]
            ));
        }
    }
    match report["subscription_history_since"].as_str() {
        Some(_) => out.push_str(&format!(
            "subscription history since {}\n",
            when(&report["subscription_history_since"])
        )),
        None => out.push_str("no subscription history in the store\n"),
    }
    let rows: [(&str, &[&str]); 26] = [
        ("MRR at start", &["mrr_start"]),
        ("  + new", &["bridge", "new"]),
        ("  + reactivation", &["bridge", "reactivation"]),
        ("  + expansion", &["bridge", "expansion"]),
        ("  - contraction", &["bridge", "contraction"]),
        ("  - churn", &["bridge", "churn"]),
        ("MRR at end", &["mrr_end"]),
        ("ARR at end", &["arr_end"]),
        ("logo churn", &["logo_churn"]),
        ("gross MRR churn", &["gross_mrr_churn"]),
        ("NRR", &["nrr"]),
        ("GRR", &["grr"]),
        ("expansion rate", &["expansion_rate"]),
        ("renewal rate", &["renewal_rate"]),
        ("deals won / lost", &["deals"]),
        ("win rate", &["deals", "win_rate"]),
        ("win rate by amount", &["deals", "win_rate_by_amount"]),
        ("average deal size", &["deals", "average_deal_size"]),
        (
            "sales cycle (median days)",
            &["deals", "sales_cycle_median_days"],
        ),
        ("pipeline velocity / day", &["pipeline_velocity_per_day"]),
        ("forecast at start", &["forecast_at_start", "weighted"]),
        ("forecast accuracy", &["forecast_accuracy"]),
        ("ARPA", &["arpa"]),
        ("CAC", &["cac"]),
        ("LTV", &["ltv"]),
        ("CAC payback (months)", &["cac_payback_months"]),
    ];
    let mut notes: BTreeMap<String, usize> = BTreeMap::new();
    for p in report["periods"].as_array().into_iter().flatten() {
        let Some(curs) = p["currencies"].as_object() else {
            continue;
        };
        out.push_str(&format!("\n{} .. {}\n", when(&p["start"]), when(&p["end"])));
        if curs.is_empty() {
            out.push_str("  nothing to report\n");
            continue;
        }
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::NOTHING);
        let mut header = vec!["KPI".to_string()];
        header.extend(curs.keys().cloned());
        t.set_header(header);
        for (label, path) in rows {
            let mut row = vec![label.to_string()];
            let mut any = false;
            for v in curs.values() {
                let cell = if path == ["deals"] {
                    v.get("deals")
                        .map(|d| format!("{} / {}", d["won"], d["lost"]))
                } else {
                    path.iter()
                        .try_fold(v, |v, k| v.get(*k))
                        .map(|x| cell(label, x, &mut notes))
                };
                any |= cell.is_some();
                row.push(cell.unwrap_or_default());
            }
            if any {
                t.add_row(row);
            }
        }
        out.push_str(&t.to_string());
        out.push('\n');
    }
    for p in report["periods"].as_array().into_iter().flatten() {
        let s = &p["support"];
        if s["tickets"].as_u64().unwrap_or(0) > 0 {
            out.push_str(&format!(
                "\nsupport {} .. {}: {} tickets, {} per customer, median first response {} h, median resolution {} h",
                when(&p["start"]),
                when(&p["end"]),
                s["tickets"],
                cell("per", &s["tickets_per_customer"], &mut notes),
                cell("hours", &s["median_first_response_hours"], &mut notes),
                cell("hours", &s["median_resolution_hours"], &mut notes),
            ));
        }
    }
    for p in report["forecast"].as_array().into_iter().flatten() {
        for (cur, w) in p["currencies"].as_object().into_iter().flatten() {
            out.push_str(&format!(
                "\nforecast {} .. {}: {} {cur} weighted over {} open deals ({} {cur} unweighted)",
                when(&p["start"]),
                when(&p["end"]),
                money(&w["weighted"]),
                w["deals"],
                money(&w["amount"]),
            ));
            for (cat, v) in w["by_category"].as_object().into_iter().flatten() {
                out.push_str(&format!("; {cat} {}", money(v)));
            }
            if w["without_probability"].as_u64().unwrap_or(0) > 0 {
                out.push_str(&format!(
                    "; {} without a probability left out",
                    w["without_probability"]
                ));
            }
        }
    }
    if let Some(list) = report["at_risk"].as_array().filter(|l| !l.is_empty()) {
        out.push_str(&format!("\n\nat risk ({} customers):\n", list.len()));
        for r in list {
            let mrr: Vec<String> = r["mrr"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(cur, v)| format!("{} {cur}", money(v)))
                .collect();
            out.push_str(&format!(
                "  {}  MRR {}: {}\n",
                r["name"].as_str().or(r["customer"].as_str()).unwrap_or("?"),
                mrr.join(", "),
                r["reasons"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Json::as_str)
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
    }
    if !notes.is_empty() {
        out.push_str("\nunavailable:\n");
        let mut by_n: Vec<(&usize, &String)> = notes.iter().map(|(k, v)| (v, k)).collect();
        by_n.sort();
        for (n, why) in by_n {
            out.push_str(&format!("  [{n}] {why}\n"));
        }
    }
    out
}

/// An instant for a reader: the day alone at midnight, else to the minute.
fn when(v: &Json) -> String {
    let Some(t) = v
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    else {
        return "?".into();
    };
    let t = t.with_timezone(&Utc);
    if t.time() == chrono::NaiveTime::MIN {
        t.format("%Y-%m-%d").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M UTC").to_string()
    }
}

fn money(v: &Json) -> String {
    match v.as_i64() {
        Some(minor) => {
            let sign = if minor < 0 { "-" } else { "" };
            let m = minor.unsigned_abs();
            format!("{sign}{}.{:02}", m / 100, m % 100)
        }
        None => v.to_string(),
    }
}

/// One cell: a rate in percent, money in major units, a count as is; an unavailable value
/// as a numbered note, so long reasons do not widen the table.
fn cell(label: &str, v: &Json, notes: &mut BTreeMap<String, usize>) -> String {
    if let Some(why) = v.get("unavailable").and_then(Json::as_str) {
        let next = notes.len() + 1;
        let n = *notes.entry(why.to_string()).or_insert(next);
        return format!("n/a [{n}]");
    }
    if let Some(p) = v.get("percent").and_then(Json::as_f64) {
        return format!("{p:.2}%");
    }
    let plain = ["days", "months", "rate", "hours", "per"]
        .iter()
        .any(|k| label.contains(k));
    if plain {
        return v.to_string();
    }
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 => money(&json!(f as i64)),
        _ => v.to_string(),
    }
}

/// What a report is asked for, as `GET /kpi` and `revsync kpi` take it: `period` (month or
/// quarter), `from` and `to` as dates (`to` exclusive; default now).
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct Query {
    pub period: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// Most periods one report covers: ten years of months.
const MAX_PERIODS: usize = 120;

impl Query {
    /// The periods asked for, or what is wrong with the question.
    pub fn kind(&self) -> Result<PeriodKind, String> {
        match self.period.as_deref() {
            None => Ok(PeriodKind::Month),
            Some(p) => {
                PeriodKind::parse(p).ok_or_else(|| format!("period `{p}` is not month or quarter"))
            }
        }
    }

    pub fn periods(&self, now: Timestamp) -> Result<Vec<Period>, String> {
        let kind = self.kind()?;
        let date = |name: &str, v: &Option<String>| -> Result<Option<Timestamp>, String> {
            v.as_deref()
                .map(|s| {
                    NaiveDate::parse_from_str(s, "%Y-%m-%d")
                        .map(day_start)
                        .map_err(|_| format!("{name} `{s}` is not a date (YYYY-MM-DD)"))
                })
                .transpose()
        };
        let to = date("to", &self.to)?.unwrap_or(now);
        let from = date("from", &self.from)?.unwrap_or_else(|| default_from(kind, to));
        if from >= to {
            return Err("from must be before to".into());
        }
        Ok(periods(kind, from, to, MAX_PERIODS))
    }
}

/// The report over the store as it is now: a full recompute.
pub fn from_store(
    store: &dyn crate::store::Store,
    q: &Query,
    inputs: &Inputs,
    now: Timestamp,
) -> Result<Json, String> {
    let read = super::read::read(store).map_err(|e| e.to_string())?;
    from_read(store, read, q, inputs, now)
}

/// The report from facts already read (the daemon's incremental state); the store is
/// read only for the names of the at-risk customers.
pub fn from_read(
    store: &dyn crate::store::Store,
    mut read: super::read::Read,
    q: &Query,
    inputs: &Inputs,
    now: Timestamp,
) -> Result<Json, String> {
    let periods = q.periods(now)?;
    read.history.spend = inputs.spend.clone();
    read.history.gross_margin = inputs.gross_margin;
    read.urgent_tickets_over = inputs.urgent_tickets_over;
    let unconverted = inputs
        .rates
        .as_ref()
        .map(|rates| super::convert::convert(&mut read.history, rates));
    let mut r = report(&read, q.kind()?, &periods, now);
    if let (Some(rates), Some(obj)) = (&inputs.rates, r.as_object_mut()) {
        obj.insert("reporting_currency".into(), json!(rates.to));
        obj.insert(
            "rates".into(),
            json!(rates
                .per_unit
                .iter()
                .map(|(c, r)| (c.clone(), json!(format!("{}/{}", r.numer(), r.denom()))))
                .collect::<Map<String, Json>>()),
        );
        obj.insert(
            "without_rate".into(),
            json!(unconverted.unwrap_or_default()),
        );
    }
    // The at-risk customers by name, read for those few only.
    if let Some(list) = r.get_mut("at_risk").and_then(Json::as_array_mut) {
        for entry in list {
            let name = entry
                .get("customer")
                .and_then(Json::as_str)
                .and_then(|c| uuid::Uuid::parse_str(c).ok())
                .and_then(|id| {
                    store
                        .get(
                            crate::store::Table::Records,
                            &crate::engine::codec::record_key(id),
                        )
                        .ok()
                        .flatten()
                })
                .and_then(|b| crate::engine::codec::decode_record(&b).ok())
                .and_then(|rec| {
                    ["name", "email"]
                        .iter()
                        .find_map(|f| rec.value(f).and_then(|v| v.as_text()).map(str::to_owned))
                });
            if let (Some(name), Some(obj)) = (name, entry.as_object_mut()) {
                obj.insert("name".into(), json!(name));
            }
        }
    }
    Ok(r)
}
