//! Shared by the HubSpot tests: a simulator plus a connector built the way the daemon
//! builds it, and the conformance harness.
// Tests: a panic here is a failed test, not a crashed daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use revsync_hubspot::sim::{Sim, SimOptions};
use revsync_hubspot::webhook::sign_v3;
use revsync_hubspot::HubSpot;
use revsync_sdk::http::RateLimitConfig;
use revsync_sdk::testsuite::{Harness, SampleWebhook};
use revsync_sdk::{BuildContext, Connector, ConnectorType, Fetched, PushItem, PushOp};
use serde_json::{json, Value};

/// The connector for `sim`, through `ConnectorType::build`; `params` adds to the defaults.
pub fn connector(sim: &Sim, params: Value, rate: RateLimitConfig) -> Arc<dyn Connector> {
    connector_mapping(sim, params, rate, &BTreeMap::new())
}

/// [`connector`] for a connector file whose mapping names `mapped` (object -> fields).
pub fn connector_mapping(
    sim: &Sim,
    params: Value,
    rate: RateLimitConfig,
    mapped: &BTreeMap<String, Vec<String>>,
) -> Arc<dyn Connector> {
    let o = sim.options();
    let mut p = json!({
        "token": o.token,
        "client_secret": o.client_secret,
        "base_url": sim.url(),
        "canonical_id_property": o.canonical_id_property,
        "timeout_ms": 10_000,
    });
    for (k, v) in params.as_object().cloned().unwrap_or_default() {
        p[k] = v;
    }
    HubSpot
        .build(&BuildContext {
            id: "hubspot-test",
            params: &p,
            rate_limit: &rate,
            http: &Default::default(),
            mapped_fields: mapped,
            objects: &Default::default(),
            shutdown: Default::default(),
        })
        .expect("hubspot builds a connector")
        .expect("valid params")
}

/// A create of `fields` for a new canonical record.
pub fn create(fields: Value) -> PushItem {
    PushItem {
        op: PushOp::Create {
            canonical_id: uuid::Uuid::now_v7(),
        },
        fields: serde_json::from_value(fields).unwrap(),
        version: 1,
    }
}

/// Reads pages until the connector says nothing more is ready; bounded.
pub async fn read_pass(
    c: &dyn Connector,
    object: &str,
    cursor: Option<String>,
) -> (Vec<Fetched>, Option<String>) {
    let mut cursor = cursor;
    let mut pages = Vec::new();
    for _ in 0..2_000 {
        let f = c.fetch(object, cursor.as_deref()).await.expect("fetch");
        if f.cursor.is_some() {
            cursor = f.cursor.clone();
        }
        let more = f.more;
        pages.push(f);
        if !more {
            return (pages, cursor);
        }
    }
    panic!("fetch({object}) never finished a pass in 2,000 pages");
}

pub struct SimHarness {
    pub sim: Sim,
}

#[async_trait]
impl Harness for SimHarness {
    async fn seed(&self, object: &str, n: usize) -> Vec<String> {
        self.sim.seed(object, n)
    }

    async fn ids(&self, object: &str) -> BTreeSet<String> {
        self.sim.ids(object)
    }

    fn new_fields(&self, object: &str, i: usize) -> BTreeMap<String, Value> {
        let pairs: Vec<(&str, Value)> = match object {
            "contacts" => vec![
                ("email", json!(format!("new{i}@example.org"))),
                ("firstname", json!(format!("New{i}"))),
            ],
            "companies" => vec![
                ("name", json!(format!("New Co {i}"))),
                ("domain", json!(format!("newco{i}.example"))),
            ],
            _ => vec![
                ("dealname", json!(format!("New deal {i}"))),
                ("amount", json!(100 + i)),
            ],
        };
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    fn signed_webhook(&self) -> Option<SampleWebhook> {
        let body = br#"[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM","changeFlag":"NEW","appId":54321}]"#.to_vec();
        let ts = chrono::Utc::now().timestamp_millis();
        let sig = sign_v3(
            &self.sim.options().client_secret,
            "POST",
            "http://127.0.0.1/webhooks/test",
            &body,
            ts,
        );
        Some((
            vec![
                ("x-hubspot-signature-v3".into(), sig),
                ("x-hubspot-request-timestamp".into(), ts.to_string()),
            ],
            body,
        ))
    }

    fn tampered_webhook(&self) -> Option<SampleWebhook> {
        let (headers, mut body) = self.signed_webhook()?;
        let n = body.len();
        body[n - 2] = b'9';
        Some((headers, body))
    }
}

/// One request to the simulator as a user's script sends it: the status and the JSON body
/// (`Null` when the body is not JSON).
pub async fn call(sim: &Sim, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut rb = reqwest::Client::new()
        .request(method.parse().unwrap(), format!("{}{path}", sim.url()))
        .bearer_auth(sim.options().token);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub fn fast() -> SimOptions {
    SimOptions {
        burst_limit: 100_000,
        search_per_sec: 100_000,
        ..SimOptions::default()
    }
}

pub fn unlimited() -> RateLimitConfig {
    RateLimitConfig {
        requests: Some(100_000),
        per_secs: Some(10),
    }
}
