//! The conformance suite every connector runs against its simulator (feature `testsuite`).
//!
//! It checks the contract the runtime relies on, through the connector's public trait
//! only: complete backfills across pages, incremental reads from a cursor, one result per
//! pushed item, creates that never duplicate when retried, and webhook verification.
//! Each failure says which promise was broken.
// A test harness: its panics are the failed assertions it reports.
#![allow(clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;

use async_trait::async_trait;
use uuid::Uuid;

use crate::sync::{Connector, PushItem, PushOp, WebhookRequest};

/// A webhook request's headers and body.
pub type SampleWebhook = (Vec<(String, String)>, Vec<u8>);

/// What the suite needs from a connector's simulator.
#[async_trait]
pub trait Harness: Send + Sync {
    /// Create a record in the simulated system directly (as a user would); its id.
    async fn seed(&self, object: &str, n: usize) -> Vec<String>;
    /// Ids of every record the system holds in `object`.
    async fn ids(&self, object: &str) -> BTreeSet<String>;
    /// Source fields for a record the connector will create by push.
    fn new_fields(
        &self,
        object: &str,
        i: usize,
    ) -> std::collections::BTreeMap<String, serde_json::Value>;
    /// (headers, body) of a webhook the connector must accept, if it takes webhooks.
    fn signed_webhook(&self) -> Option<SampleWebhook>;
    /// The same webhook with a wrong signature.
    fn tampered_webhook(&self) -> Option<SampleWebhook>;
}

/// Read everything from the start, following the cursor; bounded.
async fn read_all(
    c: &dyn Connector,
    object: &str,
    from: Option<String>,
) -> (Vec<String>, Option<String>) {
    let mut cursor = from;
    let mut seen = Vec::new();
    for page in 0..10_000 {
        let f = c
            .fetch(object, cursor.as_deref())
            .await
            .unwrap_or_else(|e| panic!("fetch of page {page} of {object} failed: {e}"));
        seen.extend(f.changes.iter().map(|ch| ch.external_id.clone()));
        assert!(
            f.changes.iter().all(|ch| ch.object == object),
            "fetch({object}) returned changes of another object"
        );
        if f.cursor.is_some() {
            cursor = f.cursor;
        }
        if !f.more {
            return (seen, cursor);
        }
    }
    panic!("fetch({object}) never reported the end of the data after 10,000 pages");
}

/// Run every check for `object`. Panics with the broken promise.
pub async fn run(c: &dyn Connector, h: &dyn Harness, object: &str) {
    let caps = c.capabilities();
    let cap = caps
        .objects
        .iter()
        .find(|o| o.name == object)
        .unwrap_or_else(|| panic!("capabilities do not list object `{object}`"));
    assert!(caps.batch_size >= 1, "batch_size must be at least 1");

    if cap.read {
        // Backfill across several pages: every record seen.
        let seeded: BTreeSet<String> = h.seed(object, 25).await.into_iter().collect();
        let (seen, cursor) = read_all(c, object, None).await;
        let seen_set: BTreeSet<String> = seen.iter().cloned().collect();
        let missing: Vec<_> = seeded.difference(&seen_set).collect();
        assert!(
            missing.is_empty(),
            "a backfill of {object} missed {missing:?}"
        );

        // Incremental: records created after the cursor are read from it.
        let later: BTreeSet<String> = h.seed(object, 3).await.into_iter().collect();
        let (seen, _) = read_all(c, object, cursor).await;
        let seen: BTreeSet<String> = seen.into_iter().collect();
        let missing: Vec<_> = later.difference(&seen).collect();
        assert!(
            missing.is_empty(),
            "an incremental read of {object} missed {missing:?}"
        );
    }

    if cap.write {
        let before = h.ids(object).await;
        let n = caps.batch_size.min(5);
        let items: Vec<PushItem> = (0..n)
            .map(|i| PushItem {
                op: PushOp::Create {
                    canonical_id: Uuid::now_v7(),
                },
                fields: h.new_fields(object, i),
                version: 1,
            })
            .collect();
        let results = c
            .push(object, &items)
            .await
            .unwrap_or_else(|e| panic!("push of {n} creates to {object} failed: {e}"));
        assert_eq!(results.len(), n, "push must return one result per item");
        let ids: Vec<String> = results
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.unwrap_or_else(|e| panic!("create {i} in {object} failed: {e}")))
            .collect();
        let after = h.ids(object).await;
        for id in &ids {
            assert!(
                after.contains(id),
                "push reported id {id} that {object} does not hold"
            );
        }
        assert_eq!(
            after.len(),
            before.len() + n,
            "{n} creates must add {n} records"
        );

        // The same creates again (a retry after a lost answer): nothing new.
        let again = c
            .push(object, &items)
            .await
            .unwrap_or_else(|e| panic!("retried creates failed: {e}"));
        let again: Vec<String> = again
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| panic!("retried create failed: {e}")))
            .collect();
        assert_eq!(
            again, ids,
            "a retried create must name the record it made the first time"
        );
        assert_eq!(
            h.ids(object).await.len(),
            after.len(),
            "a retried create made a duplicate"
        );

        // An update of what was created.
        let update = PushItem {
            op: PushOp::Update {
                external_id: ids[0].clone(),
            },
            fields: h.new_fields(object, 99),
            version: 2,
        };
        let r = c
            .push(object, std::slice::from_ref(&update))
            .await
            .unwrap_or_else(|e| panic!("update failed: {e}"));
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].as_deref().ok(),
            Some(ids[0].as_str()),
            "an update answers with the record's id"
        );
    }

    if caps.webhooks {
        let (headers, body) = h
            .signed_webhook()
            .expect("a connector with webhooks needs a signed sample");
        let req = WebhookRequest {
            method: "POST",
            uri: "http://127.0.0.1/webhooks/test",
            headers: &headers,
            body: &body,
            received_at: chrono::Utc::now(),
        };
        let events = c
            .verify_webhook(&req)
            .unwrap_or_else(|e| panic!("a correctly signed webhook was refused: {e}"));
        assert!(
            !events.is_empty(),
            "a correctly signed webhook produced no events"
        );
        assert!(
            events.iter().all(|e| !e.id.is_empty()),
            "every webhook event needs an id (dedupe)"
        );
        let (headers, body) = h
            .tampered_webhook()
            .expect("a connector with webhooks needs a tampered sample");
        let req = WebhookRequest {
            method: "POST",
            uri: "http://127.0.0.1/webhooks/test",
            headers: &headers,
            body: &body,
            received_at: chrono::Utc::now(),
        };
        assert!(
            matches!(
                c.verify_webhook(&req),
                Err(crate::sync::WebhookError::BadSignature(_)
                    | crate::sync::WebhookError::Stale(_))
            ),
            "a tampered webhook must be refused as a bad signature"
        );
    }
}
