//! Stripe test clocks in the simulator, over real HTTP (issue 24): a customer put on a clock,
//! a trial subscription living through its trial and renewals as the clock is advanced, its
//! invoices and its events dated by the clock; cancellation at period end; the clock's
//! refusals; deletion with its customers; and the clocks' list paging.
// Tests: a panic here is a failed test, not a crashed daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use chrono::DateTime;
use revsync_stripe::sim::Sim;
use serde_json::Value;

const CLOCKS: &str = "/v1/test_helpers/test_clocks";
const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;

async fn stripe(sim: &Sim, method: &str, path: &str, form: &str) -> (u16, Value) {
    let bearer = format!("Bearer {}", common::KEY);
    common::request(sim, method, path, Some(&bearer), form).await
}

/// Answers 200 or fails the test with the body.
async fn ok(sim: &Sim, method: &str, path: &str, form: &str) -> Value {
    let (status, body) = stripe(sim, method, path, form).await;
    assert_eq!(status, 200, "{method} {path} {form}: {body}");
    body
}

async fn post(sim: &Sim, path: &str, form: &str) -> Value {
    ok(sim, "POST", path, form).await
}

async fn get(sim: &Sim, path: &str) -> Value {
    ok(sim, "GET", path, "").await
}

fn at(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// A clock at `frozen`, a customer on it and a monthly $20 subscription with `terms`.
async fn subscribed(sim: &Sim, frozen: i64, terms: &str) -> (String, String, Value) {
    let clock = post(sim, CLOCKS, &format!("frozen_time={frozen}&name=Sandbox")).await;
    let customer = post(
        sim,
        "/v1/customers",
        &format!("name=Ada&email=ada%40example.com&test_clock={}", id(&clock)),
    )
    .await;
    let price = sim.create_price(2_000, "usd", "month", 1, false);
    let sub = post(
        sim,
        "/v1/subscriptions",
        &format!("customer={}&items[0][price]={price}{terms}", id(&customer)),
    )
    .await;
    (id(&clock), id(&customer), sub)
}

async fn advance(sim: &Sim, clock: &str, to: i64) -> Value {
    post(
        sim,
        &format!("{CLOCKS}/{clock}/advance"),
        &format!("frozen_time={to}"),
    )
    .await
}

/// Advancing `clock` to `to` is refused as Stripe refuses it.
async fn refused_advance(sim: &Sim, clock: &str, to: i64, why: &str) {
    let path = format!("{CLOCKS}/{clock}/advance");
    let (status, body) = stripe(sim, "POST", &path, &format!("frozen_time={to}")).await;
    assert_eq!(status, 400, "{why}: {body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{why}");
    assert_eq!(body["error"]["param"], "frozen_time", "{why}");
}

fn period(sub: &Value) -> (i64, i64) {
    let item = &sub["items"]["data"][0];
    (
        item["current_period_start"].as_i64().unwrap(),
        item["current_period_end"].as_i64().unwrap(),
    )
}

/// The customer's invoices, oldest first.
async fn invoices(sim: &Sim, customer: &str) -> Vec<Value> {
    let page = get(sim, &format!("/v1/invoices?customer={customer}&limit=100")).await;
    let mut all = page["data"].as_array().unwrap().clone();
    all.reverse();
    all
}

/// `(type, created)` of the billing events, oldest first, as `/v1/events` lists them read
/// backwards; the clock's own events (at wall time) are left out.
async fn billing_events(sim: &Sim) -> Vec<(String, i64)> {
    let page = get(sim, "/v1/events?limit=100").await;
    let events = page["data"].as_array().unwrap();
    let created: Vec<i64> = events
        .iter()
        .map(|e| e["created"].as_i64().unwrap())
        .collect();
    assert!(
        created.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {created:?}"
    );
    events
        .iter()
        .rev()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["created"].as_i64().unwrap(),
            )
        })
        .filter(|(kind, _)| !kind.starts_with("test_helpers."))
        .collect()
}

fn expect(list: &[(&str, i64)]) -> Vec<(String, i64)> {
    list.iter().map(|(k, t)| ((*k).to_owned(), *t)).collect()
}

#[tokio::test]
async fn a_trial_subscription_renews_month_by_month_as_the_clock_advances() {
    let sim = common::sim().await;
    let t0 = at("2024-01-01T00:00:00Z");
    let (clock, customer, sub) = subscribed(&sim, t0, "&trial_period_days=14").await;
    let trial_end = at("2024-01-15T00:00:00Z");
    let c = get(&sim, &format!("/v1/customers/{customer}")).await;
    assert_eq!(
        (c["test_clock"].as_str(), c["created"].as_i64()),
        (Some(clock.as_str()), Some(t0))
    );
    assert_eq!(sub["status"], "trialing");
    assert_eq!(sub["test_clock"], clock.as_str());
    assert_eq!(
        (sub["created"].as_i64(), sub["trial_end"].as_i64()),
        (Some(t0), Some(trial_end))
    );
    assert_eq!(period(&sub), (t0, trial_end));

    // Stripe lets a clock move two intervals of its shortest subscription at a time: three
    // months are three advances.
    for (from, to) in [
        (t0, at("2024-02-01T00:00:00Z")),
        (at("2024-02-01T00:00:00Z"), at("2024-03-01T00:00:00Z")),
        (at("2024-03-01T00:00:00Z"), at("2024-04-01T00:00:00Z")),
    ] {
        let answer = advance(&sim, &clock, to).await;
        assert_eq!(answer["status"], "advancing");
        assert_eq!(answer["frozen_time"], from);
        assert_eq!(
            answer["status_details"]["advancing"]["target_frozen_time"],
            to
        );
        let now = get(&sim, &format!("{CLOCKS}/{clock}")).await;
        assert_eq!(
            (now["status"].as_str(), now["frozen_time"].as_i64()),
            (Some("ready"), Some(to))
        );
        assert_eq!(now["status_details"], serde_json::json!({}));
    }

    let sub = get(&sim, &format!("/v1/subscriptions/{}", id(&sub))).await;
    let (feb15, mar15, apr15) = (
        at("2024-02-15T00:00:00Z"),
        at("2024-03-15T00:00:00Z"),
        at("2024-04-15T00:00:00Z"),
    );
    assert_eq!(sub["status"], "active");
    assert_eq!(sub["billing_cycle_anchor"], trial_end);
    assert_eq!(period(&sub), (mar15, apr15));

    let invoices = invoices(&sim, &customer).await;
    let summary: Vec<_> = invoices
        .iter()
        .map(|i| {
            let line = &i["lines"]["data"][0]["period"];
            (
                i["billing_reason"].as_str().unwrap(),
                i["status"].as_str().unwrap(),
                i["amount_paid"].as_i64().unwrap(),
                (
                    i["period_start"].as_i64().unwrap(),
                    i["period_end"].as_i64().unwrap(),
                ),
                (
                    line["start"].as_i64().unwrap(),
                    line["end"].as_i64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("subscription_create", "paid", 0, (t0, t0), (t0, trial_end)),
            (
                "subscription_cycle",
                "paid",
                2_000,
                (t0, trial_end),
                (trial_end, feb15)
            ),
            (
                "subscription_cycle",
                "paid",
                2_000,
                (trial_end, feb15),
                (feb15, mar15)
            ),
            (
                "subscription_cycle",
                "paid",
                2_000,
                (feb15, mar15),
                (mar15, apr15)
            ),
        ]
    );
    for (inv, created) in invoices.iter().zip([t0, trial_end, feb15, mar15]) {
        assert_eq!(inv["created"], created);
        assert_eq!(inv["test_clock"], clock.as_str());
        assert_eq!(inv["subscription"], id(&sub));
        let paid_at = if created == t0 { t0 } else { created + HOUR };
        assert_eq!(inv["status_transitions"]["paid_at"], paid_at);
    }
    assert_eq!(sub["latest_invoice"], id(&invoices[3]));

    let renewal = |t: i64| {
        [
            ("invoice.created", t),
            ("customer.subscription.updated", t),
            ("invoice.finalized", t + HOUR),
            ("invoice.paid", t + HOUR),
            ("invoice.payment_succeeded", t + HOUR),
        ]
    };
    let mut want = vec![
        ("customer.created", t0),
        ("customer.subscription.created", t0),
        ("invoice.created", t0),
        ("invoice.finalized", t0),
        ("invoice.paid", t0),
        ("invoice.payment_succeeded", t0),
        ("customer.subscription.trial_will_end", trial_end - 3 * DAY),
    ];
    for t in [trial_end, feb15, mar15] {
        want.extend(renewal(t));
    }
    // Dated in 2024, yet listed: retention counts the wall's 30 days from when they were made.
    assert_eq!(billing_events(&sim).await, expect(&want));

    let page = get(
        &sim,
        "/v1/events?type=customer.subscription.updated&limit=1",
    )
    .await;
    let trial_over = get(
        &sim,
        &format!(
            "/v1/events?type=customer.subscription.updated&ending_before={}",
            id(&page["data"][0])
        ),
    )
    .await;
    assert_eq!(
        trial_over["data"].as_array().unwrap().len(),
        0,
        "the newest has nothing newer"
    );
    let first = get(
        &sim,
        "/v1/events?type=customer.subscription.updated&limit=3",
    )
    .await;
    let previous = &first["data"][2]["data"]["previous_attributes"];
    assert_eq!(previous["status"], "trialing", "{previous}");
}

#[tokio::test]
async fn cancel_at_period_end_cancels_when_the_clock_passes_the_period_end() {
    let sim = common::sim().await;
    let t0 = at("2024-01-31T12:00:00Z");
    let (clock, customer, sub) = subscribed(&sim, t0, "").await;
    let feb29 = at("2024-02-29T12:00:00Z");
    assert_eq!(sub["status"], "active");
    assert_eq!(
        period(&sub),
        (t0, feb29),
        "a short month ends the period on its last day"
    );

    let path = format!("/v1/subscriptions/{}", id(&sub));
    let asked = post(&sim, &path, "cancel_at_period_end=true").await;
    assert_eq!(asked["cancel_at_period_end"], true);
    assert_eq!(
        (asked["cancel_at"].as_i64(), asked["canceled_at"].as_i64()),
        (Some(feb29), Some(t0))
    );
    assert_eq!(asked["status"], "active");

    advance(&sim, &clock, at("2024-02-20T00:00:00Z")).await;
    assert_eq!(get(&sim, &path).await["status"], "active");
    advance(&sim, &clock, at("2024-03-10T00:00:00Z")).await;
    let ended = get(&sim, &path).await;
    assert_eq!(ended["status"], "canceled");
    assert_eq!(
        (ended["ended_at"].as_i64(), ended["canceled_at"].as_i64()),
        (Some(feb29), Some(t0))
    );
    assert_eq!(
        ended["cancellation_details"]["reason"],
        "cancellation_requested"
    );

    let invoices = invoices(&sim, &customer).await;
    assert_eq!(invoices.len(), 1, "no renewal after the cancellation");
    assert_eq!(invoices[0]["amount_paid"], 2_000);
    let events = billing_events(&sim).await;
    assert_eq!(
        events[events.len() - 2..].to_vec(),
        expect(&[
            ("customer.subscription.updated", t0),
            ("customer.subscription.deleted", feb29)
        ])
    );
    let listed = get(&sim, &format!("/v1/subscriptions?customer={customer}")).await;
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        0,
        "canceled is not listed by default"
    );
}

#[tokio::test]
async fn a_clock_moves_only_forward_and_two_intervals_at_most() {
    let sim = common::sim().await;
    let t0 = at("2024-01-01T00:00:00Z");
    let bare = post(&sim, CLOCKS, &format!("frozen_time={t0}")).await;
    assert_eq!(bare["name"], Value::Null);
    assert_eq!(bare["object"], "test_helpers.test_clock");
    assert_eq!(bare["livemode"], false);
    assert_eq!(
        bare["deletes_after"].as_i64().unwrap() - bare["created"].as_i64().unwrap(),
        7 * DAY
    );
    let bare = id(&bare);
    for to in [t0, t0 - 1] {
        refused_advance(&sim, &bare, to, "not after the frozen time").await;
    }
    let (status, body) = stripe(&sim, "POST", &format!("{CLOCKS}/{bare}/advance"), "").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("parameter_missing"))
    );
    let two_years = at("2026-01-01T00:00:00Z");
    refused_advance(
        &sim,
        &bare,
        two_years + 1,
        "no subscription: two years at most",
    )
    .await;
    advance(&sim, &bare, two_years).await;

    let (clock, _, _) = subscribed(&sim, t0, "").await;
    let three_months = at("2024-04-01T00:00:00Z");
    refused_advance(
        &sim,
        &clock,
        three_months,
        "a monthly subscription: two months",
    )
    .await;
    advance(&sim, &clock, at("2024-03-01T00:00:00Z")).await;

    let (status, body) = stripe(
        &sim,
        "POST",
        "/v1/customers",
        "name=X&test_clock=clock_nope",
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("resource_missing"))
    );
    assert_eq!(body["error"]["param"], "test_clock");
}

#[tokio::test]
async fn a_deleted_clock_is_gone_with_its_customers_and_subscriptions() {
    let sim = common::sim().await;
    let (clock, customer, sub) = subscribed(&sim, at("2024-01-01T00:00:00Z"), "").await;
    let gone = ok(&sim, "DELETE", &format!("{CLOCKS}/{clock}"), "").await;
    assert_eq!(
        gone,
        serde_json::json!({"id": clock, "object": "test_helpers.test_clock", "deleted": true})
    );
    for (method, path) in [
        ("GET", format!("{CLOCKS}/{clock}")),
        ("DELETE", format!("{CLOCKS}/{clock}")),
        ("POST", format!("{CLOCKS}/{clock}/advance")),
    ] {
        let (status, body) = stripe(&sim, method, &path, "frozen_time=1800000000").await;
        assert_eq!(status, 404, "{method} {path}");
        assert_eq!(
            body,
            serde_json::json!({"error": {
                "type": "invalid_request_error", "code": "resource_missing",
                "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
                "message": format!("No such test clock: '{clock}'"), "param": "id"}})
        );
    }
    let c = get(&sim, &format!("/v1/customers/{customer}")).await;
    assert_eq!(c["deleted"], true);
    let (status, _) = stripe(&sim, "GET", &format!("/v1/subscriptions/{}", id(&sub)), "").await;
    assert_eq!(status, 404);
    assert!(invoices(&sim, &customer).await.is_empty());
}

#[tokio::test]
async fn test_clocks_list_newest_first_in_pages() {
    let sim = common::sim().await;
    let mut made = Vec::new();
    for i in 0..3 {
        made.push(id(&post(
            &sim,
            CLOCKS,
            &format!("frozen_time=1700000000&name=c{i}"),
        )
        .await));
    }
    made.reverse();
    let ids =
        |page: &Value| -> Vec<String> { page["data"].as_array().unwrap().iter().map(id).collect() };
    let first = get(&sim, &format!("{CLOCKS}?limit=2")).await;
    assert_eq!(
        (first["url"].as_str(), first["has_more"].as_bool()),
        (Some(CLOCKS), Some(true))
    );
    assert_eq!(ids(&first), made[..2]);
    let rest = get(
        &sim,
        &format!("{CLOCKS}?limit=2&starting_after={}", made[1]),
    )
    .await;
    assert_eq!(
        (ids(&rest), rest["has_more"].as_bool()),
        (made[2..].to_vec(), Some(false))
    );
    let back = get(&sim, &format!("{CLOCKS}?limit=2&ending_before={}", made[2])).await;
    assert_eq!(ids(&back), made[..2]);
}
