//! KPI history from the first day (issue 20): a daemon started on an empty store against a
//! Stripe simulator whose subscriptions lived six months on a test clock reports the MRR
//! and its bridge for each of those months. Nothing was watched as it happened: the history
//! came from what Stripe keeps (the subscriptions' timestamps and their invoices).
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use chrono::DateTime;
use common::*;
use revsync_stripe::sim::{Sim, SimConfig};
use serde_json::{json, Value};

const ADMIN: &str = "admin-token-for-tests";
const CLOCKS: &str = "/v1/test_helpers/test_clocks";

fn at(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp()
}

async fn post(http: &reqwest::Client, sim: &Sim, path: &str, form: &str) -> Value {
    let r = http
        .post(format!("{}{path}", sim.base_url()))
        .bearer_auth(SimConfig::default().secret_key)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "POST {path} {form}: {body}");
    body
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// The history of `connectors/stripe/tests/history.rs`, made through the API on a test
/// clock: A pays $20 a month after a 14-day trial from 2024-01-01 (active Jan 15), takes
/// quantity 3 on Mar 20 without proration (billed from the Apr 15 renewal), cancels at
/// period end on Apr 20 and ends May 15; B pays $1,200 a year from 2024-01-01.
async fn clock_history(sim: &Sim) {
    let http = reqwest::Client::new();
    let clock = id(&post(
        &http,
        sim,
        CLOCKS,
        &format!("frozen_time={}", at("2024-01-01T00:00:00Z")),
    )
    .await);
    let monthly = sim.create_price(2_000, "usd", "month", 1, false);
    let yearly = sim.create_price(120_000, "usd", "year", 1, false);
    let mut subs = Vec::new();
    for (name, terms) in [
        (
            "Ada",
            format!("items[0][price]={monthly}&trial_period_days=14"),
        ),
        ("Bea", format!("items[0][price]={yearly}")),
    ] {
        let customer = post(
            &http,
            sim,
            "/v1/customers",
            &format!("name={name}&test_clock={clock}"),
        )
        .await;
        let form = format!("customer={}&{terms}", id(&customer));
        subs.push(post(&http, sim, "/v1/subscriptions", &form).await);
    }
    let a = id(&subs[0]);
    let advance = |to: &'static str| {
        let path = format!("{CLOCKS}/{clock}/advance");
        let http = http.clone();
        async move { post(&http, sim, &path, &format!("frozen_time={}", at(to))).await }
    };
    advance("2024-02-20T00:00:00Z").await;
    advance("2024-03-20T00:00:00Z").await;
    let item = subs[0]["items"]["data"][0]["id"].as_str().unwrap();
    let form = format!("items[0][id]={item}&items[0][quantity]=3&proration_behavior=none");
    post(&http, sim, &format!("/v1/subscriptions/{a}"), &form).await;
    advance("2024-04-20T00:00:00Z").await;
    let path = format!("/v1/subscriptions/{a}");
    post(&http, sim, &path, "cancel_at_period_end=true").await;
    advance("2024-06-10T00:00:00Z").await;
}

fn connector_yaml(sim: &Sim) -> String {
    // Customers by name only: the two share a mail domain, which would make one company.
    format!(
        "version: 1\nid: stripe\ntype: stripe\nparams:\n  secret_key: {}\n  base_url: '{}'\npoll:\n  interval_secs: 2\nobjects:\n  customers:\n    kind: organization\n    direction: in\n    fields: {{ name: name }}\n  subscriptions:\n    kind: subscription\n    direction: in\n    fields:\n      status: {{ to: status, map: default }}\n      mrr: {{ to: mrr, currency_field: currency, minor_units: true }}\n      currency: currency\n      started_at: started_at\n      canceled_at: canceled_at\n      ended_at: ended_at\n      customer: {{ to: customer, ref: customers }}\ndeletes: ignore\n",
        SimConfig::default().secret_key,
        sim.base_url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_months_kpis_come_from_stripes_history_on_the_first_sync() {
    let sim = Sim::start(SimConfig::default()).await;
    clock_history(&sim).await;
    let (dir, port, daemon) = daemon_with("stripe", &connector_yaml(&sim), ADMIN);
    // Both subscriptions synced: today's MRR is B's alone (A ended).
    let report = kpi_once(
        port,
        ADMIN,
        "period=month&from=2024-01-01&to=2024-07-01",
        |body| {
            body["now"]["USD"]["mrr"] == 10_000
                && body["periods"][5]["currencies"]["USD"]["mrr_end"] == 10_000
        },
    )
    .await;
    // That report came from the state the daemon kept as each write landed; a full
    // recompute of the store finds the same facts.
    let verify = cli(dir.path(), &["kpi", "--verify"], port, ADMIN);
    let said = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success() && said.contains("equals a full recompute (2 records)"),
        "{said}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    stop_daemon(daemon);

    // Month by month, by hand (MRR at the first instant of the month and of the next):
    // Jan: A trialing (0) + B 10,000 (120,000 / 12) = 10,000 -> A active at 2,000 from
    //      Jan 15: 12,000; A is new: 2,000.
    // Feb, Mar: 12,000 -> 12,000 (A's quantity 3 from Mar 20 is billed from Apr 15).
    // Apr: 12,000 -> A at 6,000 from Apr 15: 16,000; expansion 4,000.
    // May: 16,000 -> A ended May 15 (canceled Apr 20 at period end): 10,000; churn 6,000.
    // Jun: 10,000 -> 10,000.
    let expected = [
        ("2024-01", 10_000, 12_000, [2_000, 0, 0, 0, 0]),
        ("2024-02", 12_000, 12_000, [0, 0, 0, 0, 0]),
        ("2024-03", 12_000, 12_000, [0, 0, 0, 0, 0]),
        ("2024-04", 12_000, 16_000, [0, 0, 4_000, 0, 0]),
        ("2024-05", 16_000, 10_000, [0, 0, 0, 0, 6_000]),
        ("2024-06", 10_000, 10_000, [0, 0, 0, 0, 0]),
    ];
    let periods = report["periods"].as_array().unwrap();
    assert_eq!(periods.len(), expected.len(), "{report:#}");
    for (p, (month, start, end, [new, reactivation, expansion, contraction, churn])) in
        periods.iter().zip(expected)
    {
        let usd = &p["currencies"]["USD"];
        assert_eq!(usd["mrr_start"], start, "{month} start: {usd:#}");
        assert_eq!(usd["mrr_end"], end, "{month} end: {usd:#}");
        assert_eq!(
            usd["bridge"],
            json!({"new": new, "reactivation": reactivation, "expansion": expansion,
                "contraction": contraction, "churn": churn}),
            "{month} bridge"
        );
    }
    // A's churn in May: one logo of two, 6,000 of 16,000 lost.
    let may = &periods[4]["currencies"]["USD"];
    assert_eq!(may["logo_churn"], json!({ "percent": 50.0 }), "{may:#}");
    assert_eq!(may["grr"], json!({ "percent": 62.5 }));
}
