//! Deals' past read from HubSpot's property history on a backfill (issue 20): the simulator
//! keeps every value a property took with its time and serves `propertiesWithHistory` as
//! HubSpot does; the connector hands each past state to the engine dated then.
// Tests: a panic here is a failed test, not a crashed daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use chrono::DateTime;
use common::{call, connector, fast, read_pass, unlimited};
use revsync_hubspot::mapping::format_time;
use revsync_hubspot::sim::Sim;
use serde_json::{json, Value};

fn ms(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

/// A deal made Jan 5 2024 at 1,000, qualified Feb 1 at 1,500, won Mar 10, renamed Mar 12.
fn won_deal(sim: &Sim) -> String {
    let id = sim.create_at(
        "deals",
        &[
            ("dealname", "Acme"),
            ("dealstage", "appointmentscheduled"),
            ("amount", "1000"),
            ("pipeline", "default"),
        ],
        ms("2024-01-05T09:00:00Z"),
    );
    sim.update_at(
        "deals",
        &id,
        &[("dealstage", "qualifiedtobuy"), ("amount", "1500")],
        ms("2024-02-01T10:00:00Z"),
    );
    sim.update_at(
        "deals",
        &id,
        &[
            ("dealstage", "closedwon"),
            ("closedate", "2024-03-10T15:00:00.000Z"),
        ],
        ms("2024-03-10T15:00:00Z"),
    );
    sim.update_at(
        "deals",
        &id,
        &[("dealname", "Acme (won)")],
        ms("2024-03-12T08:00:00Z"),
    );
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfilled_deal_brings_each_past_stage_dated_when_it_began() {
    let sim = Sim::start(fast()).await;
    let id = won_deal(&sim);
    let c = connector(&sim, json!({}), unlimited());
    let (pages, _) = read_pass(c.as_ref(), "deals", None).await;
    let mine: Vec<_> = pages
        .iter()
        .flat_map(|p| &p.changes)
        .filter(|ch| ch.external_id == id)
        .collect();
    let seen: Vec<(String, Value, Value, Value, Value)> = mine
        .iter()
        .map(|ch| {
            (
                format_time(ch.source_updated_at),
                ch.fields["dealstage"].clone(),
                ch.fields["amount"].clone(),
                ch.fields["closedate"].clone(),
                ch.fields["createdate"].clone(),
            )
        })
        .collect();
    let created = json!("2024-01-05T09:00:00.000Z");
    assert_eq!(
        seen,
        vec![
            (
                "2024-01-05T09:00:00.000Z".into(),
                json!("appointmentscheduled"),
                json!("1000"),
                Value::Null,
                created.clone()
            ),
            (
                "2024-02-01T10:00:00.000Z".into(),
                json!("qualifiedtobuy"),
                json!("1500"),
                Value::Null,
                created.clone()
            ),
            (
                "2024-03-10T15:00:00.000Z".into(),
                json!("closedwon"),
                json!("1500"),
                json!("2024-03-10T15:00:00.000Z"),
                created.clone()
            ),
            // Today's state, as of its own modification time.
            (
                "2024-03-12T08:00:00.000Z".into(),
                json!("closedwon"),
                json!("1500"),
                json!("2024-03-10T15:00:00.000Z"),
                created
            ),
        ],
        "{mine:#?}"
    );
    // Only the backfill reads the past: the search that follows hands out today's state.
    assert!(mine.iter().all(|ch| !ch.deleted));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_serves_history_newest_first_on_smaller_pages() {
    let sim = Sim::start(fast()).await;
    let id = won_deal(&sim);
    sim.seed("deals", 120);
    // HubSpot makes a page smaller when history is asked, whatever `limit` says.
    let (status, page) = call(
        &sim,
        "GET",
        "/crm/v3/objects/deals?limit=100&propertiesWithHistory=dealstage,amount,nosuchprop",
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["results"].as_array().unwrap().len(), 50);
    assert!(page["paging"]["next"]["link"]
        .as_str()
        .unwrap()
        .contains("limit=50"));
    let deal = &page["results"][0];
    assert_eq!(deal["id"], json!(id));
    let stages: Vec<(&str, &str)> = deal["propertiesWithHistory"]["dealstage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["value"].as_str().unwrap(),
                v["timestamp"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        stages,
        [
            ("closedwon", "2024-03-10T15:00:00.000Z"),
            ("qualifiedtobuy", "2024-02-01T10:00:00.000Z"),
            ("appointmentscheduled", "2024-01-05T09:00:00.000Z"),
        ]
    );
    assert_eq!(
        deal["propertiesWithHistory"]["amount"][0]["sourceType"],
        "API"
    );
    assert!(deal["propertiesWithHistory"].get("nosuchprop").is_none());
    // Without history the page holds what `limit` asks.
    let (_, page) = call(&sim, "GET", "/crm/v3/objects/deals?limit=100", None).await;
    assert_eq!(page["results"].as_array().unwrap().len(), 100);
    assert!(page["results"][0].get("propertiesWithHistory").is_none());
    // A batch read serves the history it is asked for.
    let (status, read) = call(
        &sim,
        "POST",
        "/crm/v3/objects/deals/batch/read",
        Some(json!({"properties": ["dealname"], "propertiesWithHistory": ["amount"], "inputs": [{"id": id}]})),
    )
    .await;
    assert_eq!(status, 200, "{read}");
    let amounts = &read["results"][0]["propertiesWithHistory"]["amount"];
    assert_eq!(amounts[0]["value"], "1500");
    assert_eq!(amounts[1]["value"], "1000");
    assert_eq!(amounts[1]["timestamp"], "2024-01-05T09:00:00.000Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_asking_history_reads_every_deal_in_pages_of_fifty() {
    let sim = Sim::start(fast()).await;
    let mut seeded: Vec<String> = sim.seed("deals", 120);
    seeded.sort();
    let c = connector(&sim, json!({}), unlimited());
    let (pages, _) = read_pass(c.as_ref(), "deals", None).await;
    let mut read: Vec<String> = pages
        .iter()
        .flat_map(|p| &p.changes)
        .map(|ch| ch.external_id.clone())
        .collect();
    read.sort();
    read.dedup();
    assert_eq!(read, seeded);
    // Three list pages (50, 50, 20), each one record's creation its only past: no past state.
    let sizes: Vec<usize> = pages.iter().take(3).map(|p| p.changes.len()).collect();
    assert_eq!(sizes, [50, 50, 20]);
}
