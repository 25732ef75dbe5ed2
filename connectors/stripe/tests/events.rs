//! Following `/v1/events` at idle (issue 17): an account whose last second holds many
//! events costs one request per object per poll, and nothing new is missed, lost or read
//! twice, whether it comes in that same second, a later one, or after an unknown cursor.
// Tests: a panic here is a failed test, not a crashed daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeSet;

use revsync_sdk::{Connector, ConnectorError};
use revsync_stripe::sim::Sim;
use revsync_stripe::Cursor;
use serde_json::{json, Value};

use common::drain;

const OBJECTS: [&str; 3] = ["customers", "subscriptions", "invoices"];

/// `n` customers made in the simulator's current second, as a bulk import makes them.
fn import_customers(sim: &Sim, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| sim.seed_customer(&format!("C{i}"), &format!("c{i}@bulk.example")))
        .collect()
}

fn events_cursor(cursor: Option<&str>) -> (i64, Vec<String>) {
    match serde_json::from_str(cursor.expect("a cursor")).expect("a cursor") {
        Cursor::Events { created, seen } => (created, seen),
        other => panic!("not following events: {other:?}"),
    }
}

/// The backfill of `object`, then the first read of its events: the cursor at the newest
/// second, as a daemon holds it once caught up.
async fn caught_up(c: &dyn Connector, object: &str) -> Option<String> {
    let (_, cursor) = drain(c, object, None).await;
    drain(c, object, cursor).await.1
}

/// One poll of `object` from `cursor`: its changes, its cursor and the requests it cost.
async fn poll(
    sim: &Sim,
    c: &dyn Connector,
    object: &str,
    cursor: Option<&str>,
) -> (usize, Option<String>, u64) {
    let before = sim.request_counts().0;
    let f = c.fetch(object, cursor).await.expect("fetch");
    assert!(!f.more, "{object}: an idle poll reads on");
    (f.changes.len(), f.cursor, sim.request_counts().0 - before)
}

#[tokio::test]
async fn an_idle_poll_after_a_bulk_second_costs_one_request_per_object() {
    let sim = common::sim().await;
    sim.freeze_clock();
    let c = common::connector(&sim, json!({}));
    let price = sim.create_price(2_000, "usd", "month", 1, false);
    let customers = import_customers(&sim, 500);
    for id in &customers[..150] {
        sim.seed_invoice(id, 2_000, "open");
        sim.seed_subscription(id, &[(&price, 1)], "active").unwrap();
    }
    let mut cursors = Vec::new();
    for object in OBJECTS {
        let cursor = caught_up(&c, object).await;
        let (created, seen) = events_cursor(cursor.as_deref());
        assert_eq!(created, sim.now(), "{object}");
        let expected = if object == "customers" { 500 } else { 150 };
        assert_eq!(
            seen.len(),
            expected,
            "{object}: the bulk second is the boundary"
        );
        cursors.push(cursor);
    }
    for _ in 0..3 {
        for (object, cursor) in OBJECTS.iter().zip(&cursors) {
            let (changes, next, requests) = poll(&sim, &c, object, cursor.as_deref()).await;
            assert_eq!(changes, 0, "{object}");
            assert_eq!(
                requests, 1,
                "{object}: an idle poll re-read the bulk second"
            );
            assert_eq!(&next, cursor, "{object}: an idle poll moved the cursor");
        }
    }
}

#[tokio::test]
async fn a_backfill_and_the_events_after_it_hand_out_each_record_once() {
    let sim = common::sim().await;
    sim.freeze_clock();
    let c = common::connector(&sim, json!({}));
    // Made seconds before the first sync, as the demo seeds its world: their events sit
    // inside the window a backfill used to read again.
    let made = import_customers(&sim, 30);
    sim.advance(2);
    let (listed, cursor) = drain(&c, "customers", None).await;
    assert_eq!(listed.len(), 30);
    let (again, cursor) = drain(&c, "customers", cursor).await;
    assert!(
        again.is_empty(),
        "read again from events: {:?}",
        again.iter().map(|c| &c.external_id).collect::<Vec<_>>()
    );
    // What changes after the backfill began is read, once.
    sim.update_customer(&made[4], json!({"name": "Renamed"}));
    let (changes, cursor) = drain(&c, "customers", cursor).await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].external_id, made[4]);
    let (changes, _) = drain(&c, "customers", cursor).await;
    assert!(changes.is_empty());
}

#[tokio::test]
async fn events_after_a_bulk_second_in_it_and_after_it_are_read_exactly_once() {
    let sim = common::sim().await;
    sim.freeze_clock();
    let c = common::connector(&sim, json!({}));
    import_customers(&sim, 500);
    let cursor = caught_up(&c, "customers").await;
    let (bulk_second, _) = events_cursor(cursor.as_deref());
    let (_, cursor, requests) = poll(&sim, &c, "customers", cursor.as_deref()).await;
    assert_eq!(requests, 1);

    // Created later in the cursor's own second: Stripe lists it before every event of
    // that second read so far, so the cheap check sees it.
    let late = sim.seed_customer("Late", "late@bulk.example");
    let (changes, cursor) = drain(&c, "customers", cursor).await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].external_id, late);
    let (created, seen) = events_cursor(cursor.as_deref());
    assert_eq!(created, bulk_second);
    assert_eq!(seen.len(), 501);
    let (changes, cursor, requests) = poll(&sim, &c, "customers", cursor.as_deref()).await;
    assert_eq!(
        (changes, requests),
        (0, 1),
        "idle again after the late event"
    );

    // A later second.
    sim.advance(1);
    sim.update_customer(&late, json!({"name": "Later"}));
    let (changes, cursor) = drain(&c, "customers", cursor).await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].fields["name"], json!("Later"));
    let (created, seen) = events_cursor(cursor.as_deref());
    assert_eq!((created, seen.len()), (bulk_second + 1, 1));
    let (changes, _, requests) = poll(&sim, &c, "customers", cursor.as_deref()).await;
    assert_eq!((changes, requests), (0, 1));
}

#[tokio::test]
async fn an_unknown_newest_seen_event_falls_back_to_reading_the_second() {
    let sim = common::sim().await;
    sim.freeze_clock();
    let c = common::connector(&sim, json!({}));
    let ids: BTreeSet<String> = import_customers(&sim, 500).into_iter().collect();
    let cursor = caught_up(&c, "customers").await;
    let (created, _) = events_cursor(cursor.as_deref());

    // Stripe answers 400 resource_missing for an event it does not know (one purged, or
    // a cursor written by hand): the connector reads the whole second instead.
    let unknown = serde_json::to_string(&Cursor::Events {
        created,
        seen: vec!["evt_unknown".into()],
    })
    .unwrap();
    let before = sim.request_counts().0;
    let (changes, cursor) = drain(&c, "customers", Some(unknown)).await;
    let read: BTreeSet<String> = changes.iter().map(|ch| ch.external_id.clone()).collect();
    assert_eq!(changes.len(), 500, "each event of the second once");
    assert_eq!(read, ids);
    assert_eq!(
        sim.request_counts().0 - before,
        1 + 5,
        "the check, then five pages"
    );
    let (changes, _, requests) = poll(&sim, &c, "customers", cursor.as_deref()).await;
    assert_eq!((changes, requests), (0, 1));
}

/// `/v1/events` as Stripe lists it: newest first, one second's events newest first too,
/// `ending_before` giving the ones listed before (newer than) an event.
#[tokio::test]
async fn the_simulator_lists_one_seconds_events_newest_first() {
    let sim = common::sim().await;
    sim.freeze_clock();
    let made: Vec<String> = (0..3)
        .map(|i| sim.seed_customer(&format!("C{i}"), &format!("c{i}@x.example")))
        .collect();
    sim.advance(1);
    sim.update_customer(&made[0], json!({"name": "C0 again"}));
    let customer = |e: &Value| e["data"]["object"]["id"].as_str().unwrap().to_owned();
    let ids = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(customer)
            .collect()
    };
    let all = events(&sim, &[]).await.unwrap();
    assert_eq!(
        ids(&all),
        [made[0].as_str(), &made[2], &made[1], &made[0]],
        "newest first"
    );
    assert_eq!(all["data"][0]["type"], "customer.updated");
    let evt = |i: usize| all["data"][i]["id"].as_str().unwrap().to_owned();
    let newer = events(&sim, &[("limit", "1"), ("ending_before", &evt(2))])
        .await
        .unwrap();
    assert_eq!(
        ids(&newer),
        [made[2].as_str()],
        "the one listed just before"
    );
    assert_eq!(newer["has_more"], true);
    let none = events(&sim, &[("limit", "1"), ("ending_before", &evt(0))])
        .await
        .unwrap();
    assert_eq!(ids(&none), Vec::<String>::new());
    assert_eq!(none["has_more"], false);
    match events(&sim, &[("ending_before", "evt_unknown")]).await {
        Err(ConnectorError::Permanent { status, body, .. }) => {
            assert_eq!(status, Some(400));
            let body: Value = serde_json::from_str(body.as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "resource_missing");
            assert_eq!(body["error"]["param"], "ending_before");
        }
        other => panic!("{other:?}"),
    }
}

/// `GET /v1/events` through the connector's own client.
async fn events(sim: &Sim, query: &[(&str, &str)]) -> Result<Value, ConnectorError> {
    let second = std::time::Duration::from_secs(1);
    let client = revsync_stripe::client::StripeClient::new(
        &sim.base_url(),
        revsync_sdk::Secret::new(common::KEY),
        revsync_sdk::http::Limits::new(100, second),
        revsync_sdk::http::Limits::new(25, second),
        5 * second,
    )
    .unwrap();
    let query: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    client.get("/v1/events", &query).await
}
