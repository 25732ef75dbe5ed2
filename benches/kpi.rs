//! KPI benchmark: the full recompute of `revsync kpi` (36 monthly periods) over a store
//! holding N subscription changes spread over three years, against a bare walk of the same
//! tables measured in the same run.
//!
//! `cargo bench --bench kpi` writes a Stripe configuration into a temporary directory and
//! fills a sled store through `Engine::apply` (pages of 500, not timed) with
//! `KPI_CHANGES` subscription changes (default 200,000; the documented campaign is
//! 1,000,000): `KPI_CHANGES / 10` subscriptions, each starting on a day of the first year,
//! then changing once a quarter-ish (quantity up or down, a trial ending, one in eight
//! canceling), every change dated at its own instant so the history table holds each value
//! with its time. Then, timed:
//! - `raw`: the reference, a page-by-page walk of the `Records` and `History` tables
//!   reading every stored value without decoding it;
//! - `read`: the store read into dated facts (`kpi::read::read`);
//! - `report`: every KPI over the 36 months from those facts (`kpi::report::report`).
//!
//! Printed: changes, records, history keys, seconds for each, and `ratio full recompute /
//! raw walk` on a line of its own. Then the daemon's incremental state (`kpi::live`):
//! loaded once, then 2,000 single-subscription changes applied through the engine with the
//! state observing, each refresh timed (median and p99; issue 20's target: < 50 µs), a
//! report from the state, and a verify against a full recompute. Figures: docs/BENCHMARKS.md.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

// The daemon's allocator (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use revsync::config;
use revsync::engine::{system_clock, Engine, Page};
use revsync::kpi::report::{self, PeriodKind};
use revsync::registry::Registry;
use revsync::store::{scan_pages, SledStore, Store, Table};
use revsync_sdk::Change;
use serde_json::json;

const PAGE: usize = 500;

const STRIPE: &str = "version: 1\nid: stripe-main\ntype: stripe\nparams: { secret_key: sk_test_x, base_url: 'http://127.0.0.1:9' }\nobjects:\n  customers:\n    kind: organization\n    fields: { name: name }\n  subscriptions:\n    kind: subscription\n    direction: in\n    fields: { status: { to: status, map: default }, mrr: { to: mrr, currency_field: currency, minor_units: true }, currency: currency, customer: { to: customer, ref: customers } }\n";

fn changes() -> usize {
    std::env::var("KPI_CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

/// A small deterministic generator (xorshift): the same world on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn change(object: &str, id: &str, at: DateTime<Utc>, fields: serde_json::Value) -> Change {
    let serde_json::Value::Object(map) = fields else {
        panic!("fields must be an object")
    };
    Change {
        object: object.into(),
        external_id: id.into(),
        source_updated_at: at,
        fields: map.into_iter().collect(),
        deleted: false,
        canonical_id: None,
    }
}

/// Every subscription's changes, in time order across the world (as a system reports them).
fn world(total: usize, start: DateTime<Utc>) -> (Vec<Change>, Vec<Change>) {
    let subs = (total / 10).max(1);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut customers = Vec::with_capacity(subs);
    let mut timeline: Vec<Change> = Vec::with_capacity(total);
    for s in 0..subs {
        let customer = format!("cus_{s}");
        let id = format!("sub_{s}");
        let mut at = start + Duration::days(rng.below(365) as i64);
        customers.push(change(
            "customers",
            &customer,
            at,
            json!({ "name": customer }),
        ));
        let unit = [4_900, 19_900, 99_900][rng.below(3) as usize];
        let mut quantity = 1 + rng.below(20) as i64;
        let trial = rng.below(4) == 0;
        let mut status = if trial { "trialing" } else { "active" };
        for _ in 0..(total / subs) {
            timeline.push(change(
                "subscriptions",
                &id,
                at,
                json!({ "status": status, "mrr": unit * quantity, "currency": "usd", "customer": customer }),
            ));
            if status == "canceled" {
                break;
            }
            at += Duration::days(30 + rng.below(90) as i64);
            status = match rng.below(8) {
                0 => "canceled",
                1 => "past_due",
                _ => "active",
            };
            quantity = (quantity + rng.below(5) as i64 - 2).max(1);
        }
    }
    timeline.sort_by_key(|c| c.source_updated_at);
    (customers, timeline)
}

fn main() {
    let total = changes();
    let dir = tempfile::tempdir().unwrap();
    let cfg_dir = dir.path().join("config");
    std::fs::create_dir_all(cfg_dir.join("connectors")).unwrap();
    std::fs::write(
        cfg_dir.join("revsync.yaml"),
        format!(
            "version: 1\nstore:\n  path: {}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    std::fs::write(cfg_dir.join("connectors/stripe.yaml"), STRIPE).unwrap();
    let cfg = config::load(&cfg_dir, &Registry::builtin(), &BTreeMap::new()).unwrap();
    let s = &cfg.daemon.store;
    let store = Arc::new(SledStore::open(&s.path, s.flush_interval_ms, s.cache_mb).unwrap());
    let (m, p) = Engine::validate(&cfg).unwrap();
    let engine = Engine::new(store.clone(), &cfg, m, p, system_clock()).unwrap();

    let start = Utc.with_ymd_and_hms(2023, 1, 1, 0, 0, 0).unwrap();
    let (customers, timeline) = world(total, start);
    let fill = Instant::now();
    for (object, list) in [("customers", customers), ("subscriptions", timeline)] {
        let n = list.len();
        let mut it = list.into_iter();
        for _ in 0..n.div_ceil(PAGE) {
            let changes: Vec<Change> = it.by_ref().take(PAGE).collect();
            engine
                .apply(
                    "stripe-main",
                    Page {
                        object: object.into(),
                        changes,
                        cursor: None,
                    },
                )
                .unwrap();
        }
    }
    store.flush().unwrap();
    println!(
        "filled: {total} subscription changes through the engine in {:.1} s (not timed below)",
        fill.elapsed().as_secs_f64()
    );

    // The reference: every stored value of the two tables, not decoded.
    let t = Instant::now();
    let (mut records, mut history, mut bytes) = (0usize, 0usize, 0usize);
    for (table, count) in [
        (Table::Records, &mut records),
        (Table::History, &mut history),
    ] {
        for page in scan_pages(store.as_ref(), table, b"", 1024) {
            for (k, v) in page.unwrap() {
                *count += 1;
                bytes += k.len() + v.len();
            }
        }
    }
    let raw = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let read = revsync::kpi::read::read(store.as_ref()).unwrap();
    let read_s = t.elapsed().as_secs_f64();

    let now = start + Duration::days(3 * 365);
    let periods = report::periods(PeriodKind::Month, start, now, 120);
    let t = Instant::now();
    let r = report::report(&read, PeriodKind::Month, &periods, now);
    let report_s = t.elapsed().as_secs_f64();

    let states: usize = read
        .history
        .subscriptions
        .iter()
        .map(|s| s.states.len())
        .sum();
    println!(
        "store: {records} records, {history} history keys, {:.1} MiB walked; {} subscriptions with {states} states read, {} skipped",
        bytes as f64 / (1 << 20) as f64,
        read.history.subscriptions.len(),
        read.skipped.len()
    );
    println!("raw walk (Records + History, no decoding): {raw:.3} s");
    println!("read into dated facts:                      {read_s:.3} s");
    println!(
        "report, {} monthly periods:                  {report_s:.3} s",
        periods.len()
    );
    println!(
        "last period's MRR at end: {}",
        r["periods"][periods.len() - 1]["currencies"]["USD"]["mrr_end"]
    );
    println!(
        "ratio full recompute / raw walk: {:.2}",
        (read_s + report_s) / raw
    );

    // The daemon's way: the state loaded once at start, then kept write by write.
    let t = Instant::now();
    let live = Arc::new(revsync::kpi::live::Live::load(store.as_ref()).unwrap());
    let load_s = t.elapsed().as_secs_f64();
    assert!(engine.observe_revenue(live.clone()));
    let subs = (total / 10).max(1);
    let (mut apply_us, mut refresh_us) = (Vec::new(), Vec::new());
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for i in 0..INCREMENTAL {
        let id = format!("sub_{}", rng.below(subs as u64));
        let at = now + Duration::minutes(i as i64);
        let mrr = 4_900 * (1 + rng.below(20) as i64);
        let one = change(
            "subscriptions",
            &id,
            at,
            json!({ "status": "active", "mrr": mrr, "currency": "usd", "customer": id.replace("sub_", "cus_") }),
        );
        let t = Instant::now();
        engine
            .apply(
                "stripe-main",
                Page {
                    object: "subscriptions".into(),
                    changes: vec![one],
                    cursor: None,
                },
            )
            .unwrap();
        apply_us.push(t.elapsed().as_secs_f64() * 1e6);
        // The observer's share of that, measured alone: the record and its history re-read.
        let rec = engine
            .find(&format!("stripe-main:subscriptions:{id}"))
            .unwrap();
        let ids = rec
            .map(|r| std::collections::BTreeSet::from([r.id]))
            .unwrap();
        let t = Instant::now();
        live.refresh(store.as_ref(), &ids);
        refresh_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let t = Instant::now();
    let state = live.read(store.as_ref()).unwrap();
    let r2 = report::report(&state, PeriodKind::Month, &periods, now);
    let from_state_s = t.elapsed().as_secs_f64();
    let v = live.verify(store.as_ref()).unwrap();
    assert_eq!(v.differing, 0, "{v:?}");
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("state loaded at start (full read):          {load_s:.3} s");
    println!(
        "incremental change, {INCREMENTAL} single-change pages: median {:.1} us to refresh the state (p99 {:.1} us); the engine apply with it: median {:.1} us",
        median(&mut refresh_us),
        refresh_us[refresh_us.len() * 99 / 100],
        median(&mut apply_us)
    );
    println!(
        "report from the state (no store read):      {from_state_s:.3} s; last period's MRR at end: {}",
        r2["periods"][periods.len() - 1]["currencies"]["USD"]["mrr_end"]
    );
    println!(
        "ratio full recompute / report from state: {:.2}",
        (read_s + report_s) / from_state_s
    );
    println!(
        "verify after the changes: {} records, 0 differing",
        v.records
    );
}

/// Single changes timed after the fill.
const INCREMENTAL: usize = 2_000;
