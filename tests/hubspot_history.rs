//! KPI history from the first day (issue 20), for deals: a daemon started on an empty store
//! against a HubSpot simulator whose deals were opened, won and lost months ago reports
//! that month's win rate and sales cycle. Nothing was watched as it happened: the past came
//! from HubSpot's property history (`propertiesWithHistory`) on the first sync. The
//! simulator has no settable clock; its seeding calls take the past times.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use chrono::DateTime;
use common::*;
use revsync_hubspot::sim::{Sim, SimOptions};
use serde_json::json;

const ADMIN: &str = "admin-token-for-tests";

fn ms(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

/// Won: opened Jan 5 2024 00:00 at 1,000.00, 1,500.00 from Feb 1, won Mar 10 15:00.
/// Lost: opened Feb 1 at 3,000.00, lost Mar 20. Both renamed in April, so today's state is
/// dated after the month they closed in.
fn past_deals(sim: &Sim) {
    let won = sim.create_at(
        "deals",
        &[
            ("dealname", "Acme"),
            ("dealstage", "appointmentscheduled"),
            ("amount", "1000"),
            ("deal_currency_code", "USD"),
            ("pipeline", "default"),
        ],
        ms("2024-01-05T00:00:00Z"),
    );
    sim.update_at(
        "deals",
        &won,
        &[("dealstage", "qualifiedtobuy"), ("amount", "1500")],
        ms("2024-02-01T10:00:00Z"),
    );
    sim.update_at(
        "deals",
        &won,
        &[
            ("dealstage", "closedwon"),
            ("closedate", "2024-03-10T15:00:00.000Z"),
        ],
        ms("2024-03-10T15:00:00Z"),
    );
    let lost = sim.create_at(
        "deals",
        &[
            ("dealname", "Bolt"),
            ("dealstage", "qualifiedtobuy"),
            ("amount", "3000"),
            ("deal_currency_code", "USD"),
            ("pipeline", "default"),
        ],
        ms("2024-02-01T12:00:00Z"),
    );
    sim.update_at(
        "deals",
        &lost,
        &[
            ("dealstage", "closedlost"),
            ("closedate", "2024-03-20T12:00:00.000Z"),
        ],
        ms("2024-03-20T12:00:00Z"),
    );
    for (id, name) in [(&won, "Acme (won)"), (&lost, "Bolt (lost)")] {
        sim.update_at(
            "deals",
            id,
            &[("dealname", name)],
            ms("2024-04-15T00:00:00Z"),
        );
    }
}

fn connector_yaml(sim: &Sim) -> String {
    format!(
        "version: 1\nid: hubspot\ntype: hubspot\nparams:\n  token: {}\n  base_url: '{}'\npoll:\n  interval_secs: 2\nobjects:\n  deals:\n    kind: deal\n    direction: in\n    fields:\n      dealname: name\n      amount: {{ to: amount, currency_field: deal_currency_code }}\n      dealstage: {{ to: stage, map: default }}\n      closedate: close_date\ndeletes: ignore\n",
        sim.options().token,
        sim.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_past_months_win_rate_and_sales_cycle_come_from_hubspots_history_on_the_first_sync() {
    let sim = Sim::start(SimOptions::default()).await;
    past_deals(&sim);
    let (_dir, port, daemon) = daemon_with("hubspot", &connector_yaml(&sim), ADMIN);
    let report = kpi_once(
        port,
        ADMIN,
        "period=month&from=2024-02-01&to=2024-04-01",
        |body| {
            let mar = &body["periods"][1]["currencies"]["USD"]["deals"];
            mar["won"] == 1 && mar["lost"] == 1
        },
    )
    .await;
    stop_daemon(daemon);

    let periods = report["periods"].as_array().unwrap();
    assert!(
        periods[0]["currencies"]["USD"].get("deals").is_none(),
        "nothing closed in February: {report:#}"
    );
    let mar = &periods[1]["currencies"]["USD"]["deals"];
    // Each at the amount it had when it closed; one of two won.
    assert_eq!(mar["won_amount"], 150_000, "{mar:#}");
    assert_eq!(mar["lost_amount"], 300_000);
    assert_eq!(mar["win_rate"], json!({ "percent": 50.0 }));
    // Jan 5 to Mar 10 (2024 is a leap year; the close counts from its close date's day):
    // 65 days, from the creation HubSpot dates, not the day revsync first read the deal.
    assert_eq!(mar["sales_cycle_median_days"], 65.0);
}
