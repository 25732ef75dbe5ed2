//! The SDK's conformance suite against the Stripe simulator, for every object.
// Tests: a panic here is a failed test, not a crashed daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use revsync_sdk::testsuite::{self, Harness, SampleWebhook};
use revsync_stripe::sim::Sim;
use serde_json::{json, Value};

struct StripeHarness {
    sim: Sim,
}

#[async_trait]
impl Harness for StripeHarness {
    async fn seed(&self, object: &str, n: usize) -> Vec<String> {
        let price = self.sim.create_price(1500, "usd", "month", 1, false);
        (0..n)
            .map(|i| {
                let cus = self
                    .sim
                    .seed_customer(&format!("Seed {i}"), &format!("billing{i}@seed.example"));
                match object {
                    "customers" => cus,
                    "subscriptions" => self
                        .sim
                        .seed_subscription(&cus, &[(&price, 1)], "active")
                        .expect("subscription"),
                    "invoices" => self.sim.seed_invoice(&cus, 1500, "open"),
                    other => panic!("unknown object {other}"),
                }
            })
            .collect()
    }

    async fn ids(&self, object: &str) -> BTreeSet<String> {
        self.sim.ids(object).into_iter().collect()
    }

    fn new_fields(&self, _object: &str, i: usize) -> BTreeMap<String, Value> {
        [
            ("name".to_owned(), json!(format!("Pushed {i}"))),
            ("email".to_owned(), json!(format!("ap{i}@pushed.example"))),
            ("address.city".to_owned(), json!("Lisbon")),
        ]
        .into()
    }

    fn signed_webhook(&self) -> Option<SampleWebhook> {
        let event = self.sim.events().pop().expect("the seeds made events");
        Some(
            self.sim
                .signed(&event, common::WHSEC, chrono::Utc::now().timestamp()),
        )
    }

    fn tampered_webhook(&self) -> Option<SampleWebhook> {
        let (headers, mut body) = self.signed_webhook()?;
        let at = body.len() / 2;
        body[at] = if body[at] == b'a' { b'b' } else { b'a' };
        Some((headers, body))
    }
}

#[tokio::test]
async fn conformance_customers_subscriptions_invoices() {
    let sim = common::sim().await;
    let c = common::connector(&sim, json!({}));
    let h = StripeHarness { sim: sim.clone() };
    for object in ["customers", "subscriptions", "invoices"] {
        testsuite::run(&c, &h, object).await;
    }
}
