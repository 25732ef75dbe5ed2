//! The SDK conformance suite against the Acme fake: the suite itself is exercised here,
//! and each real connector runs it against its own simulator.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "support/acme.rs"]
mod acme;

use std::collections::{BTreeMap, BTreeSet};

use acme::{AcmeType, Fake};
use async_trait::async_trait;
use revsync_sdk::testsuite::{self, Harness};
use revsync_sdk::ConnectorType;
use serde_json::{json, Value};

struct AcmeHarness(Fake);

#[async_trait]
impl Harness for AcmeHarness {
    async fn seed(&self, _object: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                self.0.seed(
                    &format!("seed{}@corp.test", self.0.count() + i),
                    "Seed Person",
                )
            })
            .collect()
    }
    async fn ids(&self, _object: &str) -> BTreeSet<String> {
        self.0
            .state
            .lock()
            .unwrap()
            .contacts
            .keys()
            .cloned()
            .collect()
    }
    fn new_fields(&self, _object: &str, i: usize) -> BTreeMap<String, Value> {
        [
            ("email".to_owned(), json!(format!("new{i}@corp.test"))),
            ("name".to_owned(), json!(format!("New Person{i}"))),
        ]
        .into_iter()
        .collect()
    }
    fn signed_webhook(&self) -> Option<testsuite::SampleWebhook> {
        let body = json!({"events": [{"id": "e1", "contact": {"id": "1", "email": "w@corp.test", "name": "W H", "updated": 1}}]});
        Some((
            vec![("x-acme-token".into(), "hook-secret".into())],
            serde_json::to_vec(&body).unwrap(),
        ))
    }
    fn tampered_webhook(&self) -> Option<testsuite::SampleWebhook> {
        self.signed_webhook()
            .map(|(_, b)| (vec![("x-acme-token".into(), "forged".into())], b))
    }
}

/// The Acme connector pointed at `fake`, built the way the daemon builds connectors.
fn acme(fake: &Fake) -> std::sync::Arc<dyn revsync_sdk::Connector> {
    let params =
        json!({"base_url": fake.url(), "token": "acme-token", "webhook_token": "hook-secret"});
    let limits = revsync_sdk::http::RateLimitConfig::default();
    let ctx = revsync_sdk::BuildContext {
        id: "acme",
        params: &params,
        rate_limit: &limits,
        http: &Default::default(),
        mapped_fields: &Default::default(),
        objects: &Default::default(),
        shutdown: Default::default(),
    };
    AcmeType.build(&ctx).unwrap().unwrap()
}

#[tokio::test]
async fn the_suite_passes_against_a_conforming_connector() {
    let fake = Fake::start().await;
    let connector = acme(&fake);
    testsuite::run(connector.as_ref(), &AcmeHarness(fake), "contacts").await;
}

/// The suite must catch a connector that duplicates on retried creates.
#[tokio::test]
async fn the_suite_fails_a_connector_that_duplicates_creates() {
    let fake = Fake::start().await;
    let connector = acme(&fake);
    let broken = DropsIdempotencyKeys(connector);
    let outcome =
        tokio::spawn(async move { testsuite::run(&broken, &AcmeHarness(fake), "contacts").await })
            .await;
    let panic = outcome.expect_err("the suite passed a duplicating connector");
    let msg = panic.into_panic();
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("retried create"), "{msg}");
}

/// Turns every create into a key-less one: each retry makes a new record.
struct DropsIdempotencyKeys(std::sync::Arc<dyn revsync_sdk::Connector>);

#[async_trait]
impl revsync_sdk::Connector for DropsIdempotencyKeys {
    fn capabilities(&self) -> revsync_sdk::Capabilities {
        let mut c = self.0.capabilities();
        c.webhooks = false;
        c
    }
    async fn fetch(
        &self,
        o: &str,
        c: Option<&str>,
    ) -> Result<revsync_sdk::Fetched, revsync_sdk::ConnectorError> {
        self.0.fetch(o, c).await
    }
    async fn fetch_by_ids(
        &self,
        o: &str,
        ids: &[String],
    ) -> Result<Vec<revsync_sdk::Change>, revsync_sdk::ConnectorError> {
        self.0.fetch_by_ids(o, ids).await
    }
    async fn push(
        &self,
        o: &str,
        items: &[revsync_sdk::PushItem],
    ) -> Result<Vec<revsync_sdk::PushResult>, revsync_sdk::ConnectorError> {
        let fresh: Vec<_> = items
            .iter()
            .map(|i| match i.op {
                revsync_sdk::PushOp::Create { .. } => revsync_sdk::PushItem {
                    op: revsync_sdk::PushOp::Create {
                        canonical_id: uuid::Uuid::now_v7(),
                    },
                    ..i.clone()
                },
                _ => i.clone(),
            })
            .collect();
        self.0.push(o, &fresh).await
    }
}
