//! Revenue KPIs read from the canonical store: changes applied through the engine at their
//! source times are kept as history, and the report over past months is what happened then,
//! not what is true today.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use common::*;
use revsync::engine::Page;
use revsync::kpi::report::{self, Query};
use revsync::store::{MemStore, Store};
use revsync_sdk::Change;
use serde_json::{json, Value as Json};

const STRIPE: &str = "version: 1\nid: stripe-main\ntype: stripe\nparams: { secret_key: sk_test_x, base_url: 'http://127.0.0.1:9' }\nobjects:\n  customers:\n    kind: organization\n    fields: { name: name }\n  subscriptions:\n    kind: subscription\n    direction: in\n    fields: { status: { to: status, map: default }, mrr: { to: mrr, currency_field: currency, minor_units: true }, currency: currency, customer: { to: customer, ref: customers } }\n";

fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(y, m, d)
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc()
}

fn one(object: &str, id: &str, when: DateTime<Utc>, fields: Json) -> Page {
    let Json::Object(map) = fields else { panic!() };
    page(
        object,
        vec![Change {
            object: object.into(),
            external_id: id.into(),
            source_updated_at: when,
            fields: map.into_iter().collect(),
            deleted: false,
            canonical_id: None,
        }],
    )
}

fn sub(status: &str, mrr: i64) -> Json {
    json!({ "status": status, "mrr": mrr, "currency": "usd" })
}

/// Jan-Mar 2026: A pays 100.00 from Jan 10 and 150.00 from Mar 5; B pays 50.00 from Jan 20
/// and cancels Feb 15; C trials from Mar 10 and pays 20.00 from Mar 20. HubSpot: deal D1
/// opened Feb 2 (1,000.00) and won Mar 3; D2 opened Feb 5 (3,000.00) and lost Mar 12; D3
/// (500.00) was first read on Mar 20, already won.
fn world() -> (tempfile::TempDir, Arc<MemStore>) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with_connector(dir.path(), "stripe", STRIPE);
    let store = Arc::new(MemStore::new());
    apply_world(&cfg, store.clone());
    (dir, store)
}

fn apply_world(cfg: &revsync::config::Config, store: Arc<dyn Store>) {
    let e = engine(cfg, store);
    let s = "stripe-main";
    for (c, when) in [
        ("cus_A", day(2026, 1, 10)),
        ("cus_B", day(2026, 1, 20)),
        ("cus_C", day(2026, 3, 10)),
    ] {
        e.apply(s, one("customers", c, when, json!({ "name": c })))
            .unwrap();
    }
    let subs: [(&str, &str, DateTime<Utc>, Json); 6] = [
        ("sub_A", "cus_A", day(2026, 1, 10), sub("active", 10_000)),
        ("sub_B", "cus_B", day(2026, 1, 20), sub("active", 5_000)),
        ("sub_B", "cus_B", day(2026, 2, 15), sub("canceled", 5_000)),
        ("sub_A", "cus_A", day(2026, 3, 5), sub("active", 15_000)),
        ("sub_C", "cus_C", day(2026, 3, 10), sub("trialing", 2_000)),
        ("sub_C", "cus_C", day(2026, 3, 20), sub("active", 2_000)),
    ];
    for (id, customer, when, mut fields) in subs {
        fields["customer"] = json!(customer);
        e.apply(s, one("subscriptions", id, when, fields)).unwrap();
    }
    let h = "hubspot-main";
    let deal = |stage: &str, amount: &str| json!({ "dealname": "d", "dealstage": stage, "amount": amount, "deal_currency_code": "USD" });
    for (id, when, fields) in [
        ("D1", day(2026, 2, 2), deal("appointmentscheduled", "1000")),
        ("D2", day(2026, 2, 5), deal("qualifiedtobuy", "3000")),
        ("D1", day(2026, 3, 3), deal("closedwon", "1000")),
        ("D2", day(2026, 3, 12), deal("closedlost", "3000")),
        // First read already won: when it was created is not known.
        ("D3", day(2026, 3, 20), deal("closedwon", "500")),
    ] {
        e.apply(h, one("deals", id, when, fields)).unwrap();
    }
}

fn months(store: &MemStore, from: &str, to: &str) -> Json {
    let q = Query {
        period: Some("month".into()),
        from: Some(from.into()),
        to: Some(to.into()),
    };
    report::from_store(store, &q, &report::Inputs::default(), day(2026, 4, 15)).unwrap()
}

#[test]
fn the_mrr_bridge_of_past_months_comes_from_history_not_todays_state() {
    let (_d, store) = world();
    let r = months(&store, "2026-02-01", "2026-04-01");
    let feb = &r["periods"][0]["currencies"]["USD"];
    let mar = &r["periods"][1]["currencies"]["USD"];

    // February: A and B pay 150.00 at its start; B cancels.
    assert_eq!(feb["mrr_start"], 15_000, "{feb:#}");
    assert_eq!(feb["mrr_end"], 10_000);
    assert_eq!(
        feb["bridge"],
        json!({"new": 0, "reactivation": 0, "expansion": 0, "contraction": 0, "churn": 5_000})
    );
    assert_eq!(feb["logo_churn"], json!({ "percent": 50.0 }));
    assert_eq!(feb["nrr"], json!({ "percent": 66.67 }));
    assert_eq!(feb["grr"], json!({ "percent": 66.67 }));

    // March: A expands by 50.00, C is new (its trial paid nothing, then 20.00).
    assert_eq!(mar["mrr_start"], 10_000, "{mar:#}");
    assert_eq!(mar["mrr_end"], 17_000);
    assert_eq!(mar["arr_end"], 204_000);
    assert_eq!(
        mar["bridge"],
        json!({"new": 2_000, "reactivation": 0, "expansion": 5_000, "contraction": 0, "churn": 0})
    );
    assert_eq!(mar["nrr"], json!({ "percent": 150.0 }));
    assert_eq!(mar["grr"], json!({ "percent": 100.0 }));
    assert_eq!(mar["logo_churn"], json!({ "percent": 0.0 }));
    assert_eq!(mar["expansion_rate"], json!({ "percent": 100.0 }));

    // Today's state alone would say 170.00 all along.
    assert_eq!(r["now"]["USD"]["mrr"], 17_000);
}

#[test]
fn deals_are_counted_in_the_month_they_closed_with_their_amount_then() {
    let (_d, store) = world();
    let r = months(&store, "2026-02-01", "2026-04-01");
    let feb = &r["periods"][0]["currencies"]["USD"];
    let mar = &r["periods"][1]["currencies"]["USD"]["deals"];
    assert!(
        feb.get("deals").is_none(),
        "nothing closed in February: {feb:#}"
    );
    assert_eq!(mar["won"], 2, "{mar:#}");
    assert_eq!(mar["lost"], 1);
    assert_eq!(mar["won_amount"], 150_000);
    assert_eq!(mar["win_rate"], json!({ "percent": 66.67 }));
    assert_eq!(mar["win_rate_by_amount"], json!({ "percent": 33.33 }));
    assert_eq!(mar["average_deal_size"], 75_000.0);
    // D1 only, Feb 2 to Mar 3, both at noon: D3's creation is unknown, not the day it was
    // first read.
    assert_eq!(mar["sales_cycle_median_days"], 29.0);
}

#[test]
fn what_history_does_not_cover_or_config_does_not_give_is_unavailable_never_zero() {
    let (_d, store) = world();
    // January starts before the first subscription was seen (Jan 10).
    let r = months(&store, "2026-01-01", "2026-02-01");
    let jan = &r["periods"][0]["currencies"]["USD"];
    let why = jan["nrr"]["unavailable"].as_str().expect("NRR unavailable");
    assert!(why.contains("history starts at 2026-01-10"), "{why}");
    assert!(jan["mrr_start"]["unavailable"].is_string(), "{jan:#}");
    // No spend configured: CAC says so.
    let r = months(&store, "2026-03-01", "2026-04-01");
    let cac = &r["periods"][0]["currencies"]["USD"]["cac"];
    assert!(
        cac["unavailable"].as_str().unwrap().contains("spend"),
        "{cac}"
    );
    // The table names the reason once, as a note.
    let text = report::tables(&months(&store, "2026-01-01", "2026-04-01"));
    assert!(text.contains("n/a [1]"), "{text}");
    assert!(text.contains("MRR at end"), "{text}");
    assert!(text.contains("150.00%"), "{text}");
}

#[test]
fn replaying_the_same_changes_keeps_one_history() {
    let (dir, store) = world();
    let before = store
        .scan(revsync::store::Table::History, b"", None, 10_000)
        .unwrap()
        .len();
    // The same pages again, as after a restart that re-reads the overlap window.
    let cfg = config_with_connector(dir.path(), "stripe", STRIPE);
    let e = engine(&cfg, store.clone());
    e.apply(
        "stripe-main",
        one("subscriptions", "sub_A", day(2026, 3, 5), {
            let mut f = sub("active", 15_000);
            f["customer"] = json!("cus_A");
            f
        }),
    )
    .unwrap();
    let after = store
        .scan(revsync::store::Table::History, b"", None, 10_000)
        .unwrap()
        .len();
    assert_eq!(before, after);
    assert!(before > 0);
}

#[test]
fn a_question_the_report_cannot_answer_is_refused_with_the_reason() {
    let now = day(2026, 4, 15);
    let bad = |period: &str, from: &str, to: &str| {
        Query {
            period: Some(period.into()),
            from: Some(from.into()),
            to: Some(to.into()),
        }
        .periods(now)
        .unwrap_err()
    };
    assert!(bad("week", "2026-01-01", "2026-02-01").contains("month or quarter"));
    assert!(bad("month", "2026-13-01", "2026-02-01").contains("not a date"));
    assert!(bad("month", "2026-03-01", "2026-02-01").contains("before"));
    // Quarters are calendar quarters; the last one runs to date.
    let q = Query {
        period: Some("quarter".into()),
        from: Some("2025-11-15".into()),
        to: None,
    };
    let p = q.periods(now).unwrap();
    assert_eq!(p.len(), 3);
    assert_eq!(p[0].start, day(2025, 10, 1) - chrono::Duration::hours(12));
    assert_eq!(p[2].end, now);
}

#[test]
fn revsync_kpi_reads_the_store_when_no_daemon_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Spend and gross margin come from revsync.yaml: 1,000.00 in March, 80 %.
    config_in(
        dir.path(),
        &format!(
            "server:\n  listen: 127.0.0.1:{port}\nkpi:\n  gross_margin: 0.8\n  spend:\n    - {{ from: 2026-03-01, to: 2026-04-01, amount_minor: 100000, currency: USD }}\n"
        ),
    );
    std::fs::write(dir.path().join("connectors/stripe.yaml"), STRIPE).unwrap();
    let cfg = revsync::config::load(
        dir.path(),
        &revsync::registry::Registry::builtin(),
        &std::collections::BTreeMap::new(),
    )
    .unwrap();
    {
        let s = &cfg.daemon.store;
        let store =
            revsync::store::SledStore::open(&s.path, s.flush_interval_ms, s.cache_mb).unwrap();
        let store = Arc::new(store);
        apply_world(&cfg, store.clone());
        store.flush().unwrap();
    }
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_revsync"))
            .arg("kpi")
            .args(["--config", dir.path().to_str().unwrap()])
            .args(args)
            .env_remove("REVSYNC_URL")
            .output()
            .unwrap()
    };
    let out = run(&["--from", "2026-03-01", "--to", "2026-04-01", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Json = serde_json::from_slice(&out.stdout).unwrap();
    let mar = &r["periods"][0]["currencies"]["USD"];
    assert_eq!(mar["mrr_end"], 17_000, "{r:#}");
    // One new customer (C) for 1,000.00 of spend.
    assert_eq!(mar["cac"], 100_000.0, "{mar:#}");
    // ARPA 85.00 x 0.8 / monthly logo churn over Jan-Mar (1 of 0 + 2 + 1 customers at
    // the months' starts) = 68.00 x 3 = 204.00.
    assert_eq!(mar["ltv"], 20_400.0);
    // 1,000.00 / 68.00 = 14.705... months.
    assert_eq!(mar["cac_payback_months"], 14.71);
    let out = run(&[
        "--period",
        "quarter",
        "--from",
        "2026-01-01",
        "--to",
        "2026-04-01",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("MRR at end") && text.contains("170.00"),
        "{text}"
    );
    // A question it cannot answer: a message and a non-zero exit.
    let out = run(&["--period", "week"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("month or quarter"));
}

const SF_FORECAST: &str = "version: 1\nid: sf\ntype: salesforce\nparams: { auth: { flow: client_credentials, token_url: 'http://127.0.0.1:9/token', client_id: c, client_secret: s } }\nobjects:\n  Opportunity:\n    kind: deal\n    fields: { Name: name, Amount: { to: amount, currency_field: CurrencyIsoCode }, StageName: { to: stage, map: default }, CloseDate: close_date, Probability: probability, ForecastCategoryName: { to: forecast_category, map: default } }\n";

#[test]
fn the_forecast_made_at_a_months_start_is_read_from_history_and_scored() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with_connector(dir.path(), "sf", SF_FORECAST);
    let store = Arc::new(MemStore::new());
    let e = engine(&cfg, store.clone());
    let opp = |stage: &str, amount: &str, close: &str, p: i64, cat: &str| {
        json!({ "Name": "o", "StageName": stage, "Amount": amount, "CurrencyIsoCode": "USD",
                "CloseDate": close, "Probability": p, "ForecastCategoryName": cat })
    };
    // Feb 10: O1 (10,000 at 60 %, commit) and O2 (5,000 at 20 %) expected in March.
    // Feb 25: O2 slips to April. Mar 12: O1 is won at 12,000.
    for (id, when, fields) in [
        (
            "006A",
            day(2026, 2, 10),
            opp("Negotiation/Review", "10000", "2026-03-15", 60, "Commit"),
        ),
        (
            "006B",
            day(2026, 2, 10),
            opp("Prospecting", "5000", "2026-03-20", 20, "Pipeline"),
        ),
        (
            "006B",
            day(2026, 2, 25),
            opp("Prospecting", "5000", "2026-04-20", 20, "Pipeline"),
        ),
        (
            "006A",
            day(2026, 3, 12),
            opp("Closed Won", "12000", "2026-03-12", 100, "Closed"),
        ),
    ] {
        e.apply("sf", one("Opportunity", id, when, fields)).unwrap();
    }
    let r = months(&store, "2026-03-01", "2026-05-01");
    let mar = &r["periods"][0]["currencies"]["USD"];
    // The snapshot at March's start: O1 only (O2 had slipped), 60 % of 10,000.00.
    assert_eq!(mar["forecast_at_start"]["weighted"], 600_000, "{mar:#}");
    assert_eq!(mar["forecast_at_start"]["by_category"]["commit"], 600_000);
    // 12,000.00 won against 6,000.00 forecast: 1 - 6,000 / 12,000.
    assert_eq!(mar["forecast_accuracy"], json!({ "percent": 50.0 }));
    // April is not over on Apr 15: no accuracy yet, and its snapshot has O2.
    let apr = &r["periods"][1]["currencies"]["USD"];
    assert_eq!(apr["forecast_at_start"]["weighted"], 100_000, "{apr:#}");
    assert!(apr.get("forecast_accuracy").is_none());
    // Looking ahead from Apr 15: April holds O2 still open.
    assert_eq!(
        r["forecast"][0]["currencies"]["USD"]["weighted"], 100_000,
        "{r:#}"
    );
    let text = report::tables(&r);
    assert!(
        text.contains("forecast accuracy") && text.contains("50.00%"),
        "{text}"
    );
}

/// One generated write: a subscription or a deal reported (possibly late, out of order,
/// or deleted), or a customer renamed.
#[derive(Debug, Clone)]
enum Ev {
    Sub {
        id: u8,
        customer: u8,
        status: u8,
        mrr: i64,
        day: i64,
    },
    Deal {
        id: u8,
        stage: u8,
        amount: u32,
        day: i64,
    },
    Gone {
        deal: bool,
        id: u8,
        day: i64,
    },
    Customer {
        id: u8,
        day: i64,
    },
}

fn ev() -> impl proptest::strategy::Strategy<Value = Ev> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (0u8..4, 0u8..3, 0u8..5, 0i64..4, 0i64..90).prop_map(|(id, customer, status, mrr, day)| Ev::Sub { id, customer, status, mrr: mrr * 1_000, day }),
        3 => (0u8..4, 0u8..4, 1u32..4, 0i64..90).prop_map(|(id, stage, amount, day)| Ev::Deal { id, stage, amount: amount * 500, day }),
        1 => (any::<bool>(), 0u8..4, 0i64..90).prop_map(|(deal, id, day)| Ev::Gone { deal, id, day }),
        1 => (0u8..3, 0i64..90).prop_map(|(id, day)| Ev::Customer { id, day }),
    ]
}

fn write(e: &revsync::engine::Engine, ev: &Ev) {
    let when = |d: i64| day(2026, 1, 1) + chrono::Duration::days(d);
    let (connector, change) = match ev {
        Ev::Sub {
            id,
            customer,
            status,
            mrr,
            day,
        } => {
            let status = ["trialing", "active", "past_due", "canceled", "unpaid"][*status as usize];
            let mut f = sub(status, *mrr);
            f["customer"] = json!(format!("cus_{customer}"));
            (
                "stripe-main",
                one("subscriptions", &format!("sub_{id}"), when(*day), f),
            )
        }
        Ev::Deal {
            id,
            stage,
            amount,
            day,
        } => {
            let stage = [
                "appointmentscheduled",
                "qualifiedtobuy",
                "closedwon",
                "closedlost",
            ][*stage as usize];
            let f = json!({ "dealname": "d", "dealstage": stage, "amount": amount.to_string(), "deal_currency_code": "USD" });
            (
                "hubspot-main",
                one("deals", &format!("D{id}"), when(*day), f),
            )
        }
        Ev::Gone { deal, id, day } => {
            let (c, o, x) = if *deal {
                ("hubspot-main", "deals", format!("D{id}"))
            } else {
                ("stripe-main", "subscriptions", format!("sub_{id}"))
            };
            let mut p = one(o, &x, when(*day), json!({}));
            p.changes[0].deleted = true;
            (c, p)
        }
        Ev::Customer { id, day } => (
            "stripe-main",
            one(
                "customers",
                &format!("cus_{id}"),
                when(*day),
                json!({ "name": format!("C{id} {day}") }),
            ),
        ),
    };
    e.apply(connector, change).unwrap();
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// The daemon's KPI state, kept write by write, equals a full recompute of the store
    /// after every write, whatever the writes and their order.
    #[test]
    fn the_incremental_kpi_state_equals_a_full_recompute(events in proptest::collection::vec(ev(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_with_connector(dir.path(), "stripe", STRIPE);
        let store = Arc::new(MemStore::new());
        let e = engine(&cfg, store.clone());
        let live = Arc::new(revsync::kpi::live::Live::load(store.as_ref()).unwrap());
        assert!(e.observe_revenue(live.clone()));
        for (i, ev) in events.iter().enumerate() {
            write(&e, ev);
            let v = live.verify(store.as_ref()).unwrap();
            proptest::prop_assert_eq!(v.differing, 0, "after write {} ({:?}): {:?}", i, ev, v);
        }
        // And the report read from the state is the one read from the store.
        let q = Query { period: Some("month".into()), from: Some("2026-01-01".into()), to: Some("2026-05-01".into()) };
        let inputs = report::Inputs::default();
        let now = day(2026, 5, 1);
        let incremental = report::from_read(store.as_ref(), live.read(store.as_ref()).unwrap(), &q, &inputs, now).unwrap();
        proptest::prop_assert_eq!(incremental, report::from_store(store.as_ref(), &q, &inputs, now).unwrap());
    }
}

#[test]
fn the_kpi_state_is_not_fooled_by_a_fresh_load_or_a_stale_one() {
    let (_d, store) = world();
    // Loaded from a store that already holds the world: the same facts as a recompute.
    let live = revsync::kpi::live::Live::load(store.as_ref()).unwrap();
    assert_eq!(live.len(), 6, "three subscriptions and three deals");
    let v = live.verify(store.as_ref()).unwrap();
    assert_eq!((v.differing, v.repaired, v.records), (0, false, 6));
    // A state that missed writes (no observer) is found out, named and repaired.
    let empty = revsync::kpi::live::Live::load(&MemStore::new()).unwrap();
    let v = empty.verify(store.as_ref()).unwrap();
    assert_eq!((v.differing, v.repaired, v.examples.len()), (6, true, 6));
    assert_eq!(empty.verify(store.as_ref()).unwrap().differing, 0);
}
