//! The SDK conformance suite against the HubSpot simulator, with its documented limits.
// Tests: a panic here is a failed test, not a crashed daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{connector, SimHarness};
use revsync_hubspot::sim::{Sim, SimOptions};
use revsync_sdk::http::RateLimitConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_contacts_companies_deals() {
    // Insisting on the attributes HubSpot's spec requires (`SimOptions::strict_spec`).
    let sim = Sim::start(SimOptions {
        strict_spec: true,
        ..SimOptions::default()
    })
    .await;
    let c = connector(&sim, serde_json::json!({}), RateLimitConfig::default());
    let h = SimHarness { sim: sim.clone() };
    for object in ["contacts", "companies", "deals"] {
        revsync_sdk::testsuite::run(c.as_ref(), &h, object).await;
    }
}
