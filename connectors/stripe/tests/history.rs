//! A first read of subscriptions gives each one's past as Stripe dates it (issue 20): a
//! history built on a test clock (a trial, renewals, a quantity change, a cancellation at
//! period end) comes back as dated changes whose replay gives the MRR of every past month.
// Tests: a panic here is a failed test, not a crashed daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use chrono::DateTime;
use revsync_sdk::Change;
use revsync_stripe::sim::Sim;
use serde_json::{json, Value};

const CLOCKS: &str = "/v1/test_helpers/test_clocks";

async fn call(sim: &Sim, method: &str, path: &str, form: &str) -> (u16, Value) {
    let bearer = format!("Bearer {}", common::KEY);
    common::request(sim, method, path, Some(&bearer), form).await
}

async fn post(sim: &Sim, path: &str, form: &str) -> Value {
    let (status, body) = call(sim, "POST", path, form).await;
    assert_eq!(status, 200, "POST {path} {form}: {body}");
    body
}

fn at(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// The clock-built history of two customers, as `tests/stripe_history.rs` (the daemon's
/// end-to-end test) also builds it; the two subscription ids.
///
/// - A: $20 a month, 14-day trial from 2024-01-01 (trialing, MRR 0), active from Jan 15
///   (2,000), quantity 3 from Mar 20 without proration (invoiced from the Apr 15 renewal:
///   6,000), canceled at period end on Apr 20, ended May 15 (0).
/// - B: $1,200 a year from 2024-01-01, paid at once: 10,000 a month throughout.
pub async fn clock_history(sim: &Sim) -> (String, String) {
    let clock = id(&post(
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
            sim,
            "/v1/customers",
            &format!("name={name}&email={name}%40example.com&test_clock={clock}"),
        )
        .await;
        let sub = post(
            sim,
            "/v1/subscriptions",
            &format!("customer={}&{terms}", id(&customer)),
        )
        .await;
        subs.push(sub);
    }
    let (a, b) = (id(&subs[0]), id(&subs[1]));
    let advance = |to: &'static str| {
        let path = format!("{CLOCKS}/{clock}/advance");
        async move { post(sim, &path, &format!("frozen_time={}", at(to))).await }
    };
    advance("2024-02-20T00:00:00Z").await;
    advance("2024-03-20T00:00:00Z").await;
    let item = subs[0]["items"]["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Stripe's default would prorate, which the simulator refuses to pretend.
    let (status, body) = call(
        sim,
        "POST",
        &format!("/v1/subscriptions/{a}"),
        &format!("items[0][id]={item}&items[0][quantity]=3"),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["param"]),
        (400, &json!("proration_behavior"))
    );
    let sub = post(
        sim,
        &format!("/v1/subscriptions/{a}"),
        &format!("items[0][id]={item}&items[0][quantity]=3&proration_behavior=none"),
    )
    .await;
    assert_eq!(sub["items"]["data"][0]["quantity"], 3);
    advance("2024-04-20T00:00:00Z").await;
    post(
        sim,
        &format!("/v1/subscriptions/{a}"),
        "cancel_at_period_end=true",
    )
    .await;
    advance("2024-06-10T00:00:00Z").await;
    (a, b)
}

/// The `mrr` and `status` in effect at `t` by replaying `changes` (oldest first) of `sub`:
/// each change's fields hold from its time on, as the store's history keeps them.
fn replay(changes: &[Change], sub: &str, t: i64) -> (Option<Value>, Option<Value>) {
    let mut mrr = None;
    let mut status = None;
    for c in changes
        .iter()
        .filter(|c| c.external_id == sub && c.source_updated_at.timestamp() <= t)
    {
        if let Some(m) = c.fields.get("mrr") {
            mrr = Some(m.clone());
        }
        status = c.fields.get("status").cloned();
    }
    (status, mrr)
}

#[tokio::test]
async fn a_first_read_replays_to_the_mrr_of_every_past_month() {
    let sim = common::sim().await;
    let (a, b) = clock_history(&sim).await;
    // Invoices are listed per subscription, as Stripe filters them.
    let (_, listed) = call(
        &sim,
        "GET",
        &format!("/v1/invoices?subscription={a}&limit=100"),
        "",
    )
    .await;
    let listed = listed["data"].as_array().unwrap();
    assert!(listed.iter().all(|i| i["subscription"] == a.as_str()));
    // Create (trial), Jan 15, Feb 15, Mar 15, Apr 15: five invoices; none at May 15.
    assert_eq!(listed.len(), 5, "{listed:?}");

    let connector = common::connector(&sim, json!({}));
    let (before, _) = sim.request_counts();
    let (changes, _) = common::drain(&connector, "subscriptions", None).await;
    let (after, throttled) = sim.request_counts();
    // Where the events stand (one page of the newest), the subscriptions page, then one
    // invoice list per subscription; both prices are on the subscriptions' items, so none
    // is fetched.
    assert_eq!((after - before, throttled), (4, 0));

    let times: Vec<i64> = changes
        .iter()
        .filter(|c| c.external_id == a)
        .map(|c| c.source_updated_at.timestamp())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {times:?}"
    );
    assert_eq!(
        &times[..5],
        &[
            at("2024-01-01T00:00:00Z"), // trialing
            at("2024-01-15T00:00:00Z"), // trial ends, first paid period
            at("2024-04-15T00:00:00Z"), // quantity 3 invoiced
            at("2024-04-20T00:00:00Z"), // canceled_at (at period end)
            at("2024-05-15T00:00:00Z"), // ended
        ]
    );
    // The current state comes last, as of the read.
    assert_eq!(times.len(), 6);

    // Month starts: A trialing, 2,000 (Feb, Mar, Apr: the quantity change is billed from
    // Apr 15), 6,000 in May, 0 once ended; B 10,000 a month from its first day.
    let months = [
        ("2024-01-01", "trialing", 0, 10_000),
        ("2024-02-01", "active", 2_000, 10_000),
        ("2024-03-01", "active", 2_000, 10_000),
        ("2024-04-01", "active", 2_000, 10_000),
        ("2024-05-01", "active", 6_000, 10_000),
        ("2024-06-01", "canceled", 0, 10_000),
    ];
    for (day, status, mrr_a, mrr_b) in months {
        let t = at(&format!("{day}T00:00:00Z"));
        assert_eq!(
            replay(&changes, &a, t),
            (Some(json!(status)), Some(json!(mrr_a))),
            "A at {day}"
        );
        assert_eq!(
            replay(&changes, &b, t),
            (Some(json!("active")), Some(json!(mrr_b))),
            "B at {day}"
        );
    }
    let canceled = changes
        .iter()
        .find(|c| c.external_id == a && c.fields["status"] == "canceled")
        .unwrap();
    assert_eq!(
        canceled.fields["canceled_at"],
        json!(at("2024-04-20T00:00:00Z"))
    );
    assert_eq!(
        canceled.fields["ended_at"],
        json!(at("2024-05-15T00:00:00Z"))
    );
    assert_eq!(canceled.fields["quantity"], json!(3));
}

#[tokio::test]
async fn a_subscription_without_invoices_has_its_status_timeline_only() {
    let sim = common::sim().await;
    let customer = sim.seed_customer("Cy", "cy@example.com");
    let price = sim.create_price(5_000, "usd", "month", 1, false);
    sim.seed_subscription(&customer, &[(price.as_str(), 1)], "active")
        .unwrap();
    sim.advance(86_400);
    let connector = common::connector(&sim, json!({}));
    let (changes, _) = common::drain(&connector, "subscriptions", None).await;
    // Its start, with no MRR said, then today's state with today's MRR.
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes[0].fields["status"], "active");
    assert!(!changes[0].fields.contains_key("mrr"));
    assert_eq!(changes[1].fields["mrr"], json!(5_000));
}
