//! The `type: rest` connector, declared in YAML as `config/examples/webinar.yaml` does,
//! against the webinar simulator over loopback: full and incremental reads in every paging
//! style the platform offers, a 429 honoured, a write round trip, and signed webhooks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};

use revsync_rest::sim::{Sim, SimConfig};
use revsync_rest::RestConnector;
use revsync_sdk::http::{HttpConfig, RateLimitConfig};
use revsync_sdk::simfault::FaultPlan;
use revsync_sdk::{
    BuildContext, Connector, ConnectorError, Fetched, Inbound, Kind, ObjectDecl, PushItem, PushOp,
    WebhookError, WebhookRequest,
};
use serde_json::{json, Value};

/// The registrants object with the given paging, and the webinars and attendance lists.
fn params(sim: &Sim, paging: Value) -> Value {
    json!({
        "base_url": sim.base_url(),
        "auth": {"type": "bearer", "token": sim.token()},
        "objects": {
            "registrants": {
                "list": {
                    "path": "/v1/registrants",
                    "query": {"limit": "7"},
                    "records": "$.data",
                    "paging": paging,
                    "incremental": {"field": "updated_at", "param": "updated_since"}
                },
                "get": {"path": "/v1/registrants/{id}"},
                "create": {
                    "path": "/v1/webinars/{webinar_id}/registrants",
                    "body": {"email": "{{email}}", "first_name": "{{first_name}}", "last_name": "{{last_name}}", "company": "{{company}}", "job_title": "{{job_title}}"},
                    "idempotency_header": "Idempotency-Key"
                },
                "update": {
                    "method": "PATCH",
                    "path": "/v1/registrants/{id}",
                    "body": {"first_name": "{{first_name}}", "last_name": "{{last_name}}", "company": "{{company}}", "job_title": "{{job_title}}"}
                },
                "add_fields": {"lead_source": "Webinar"}
            },
            "webinars": {
                "list": {"path": "/v1/webinars", "records": "$.data",
                         "paging": {"type": "page", "param": "page", "size_param": "per_page", "size": 3}}
            },
            "attendance": {
                "list": {"path": "/v1/attendance", "records": "$.data",
                         "paging": {"type": "offset", "param": "offset", "size_param": "limit", "size": 4, "total": "$.total"}}
            }
        },
        "webhook": {
            "secret": sim.config().webhook_secret,
            "signature_header": "X-Webinar-Signature",
            "signature_prefix": "v1=",
            "signed": "{timestamp}.{body}",
            "timestamp_header": "X-Webinar-Timestamp",
            "object": "registrants",
            "event_id": "$.event_id",
            "record": "$.data"
        }
    })
}

fn connector(params: &Value, requests_per_minute: Option<u32>) -> RestConnector {
    let objects = BTreeMap::from([
        ("registrants".to_owned(), decl(Kind::Person, "id")),
        ("webinars".to_owned(), decl(Kind::Activity, "id")),
        (
            "attendance".to_owned(),
            decl(Kind::Activity, "registrant_id"),
        ),
    ]);
    let rate_limit: RateLimitConfig = match requests_per_minute {
        None => RateLimitConfig::default(),
        Some(n) => serde_json::from_value(json!({"requests": n, "per_secs": 60})).unwrap(),
    };
    RestConnector::new(&BuildContext {
        id: "webinar",
        params,
        rate_limit: &rate_limit,
        http: &HttpConfig::default(),
        mapped_fields: &BTreeMap::new(),
        objects: &objects,
        shutdown: Default::default(),
    })
    .unwrap()
}

fn decl(kind: Kind, key: &str) -> ObjectDecl {
    ObjectDecl {
        kind,
        key: Some(key.into()),
        read: true,
        write: true,
    }
}

/// Every page of one read; the changes and the cursor it ends at.
async fn read(
    c: &RestConnector,
    object: &str,
    cursor: Option<String>,
) -> (Fetched, Option<String>, usize) {
    let mut all = Fetched::default();
    let mut cursor = cursor;
    for pages in 1..=200 {
        let page = c.fetch(object, cursor.as_deref()).await.unwrap();
        all.changes.extend(page.changes);
        all.rejected.extend(page.rejected);
        cursor = page.cursor.or(cursor);
        if !page.more {
            return (all, cursor, pages);
        }
    }
    panic!("{object}: more than 200 pages");
}

fn ids(f: &Fetched) -> Vec<String> {
    f.changes.iter().map(|c| c.external_id.clone()).collect()
}

#[tokio::test]
async fn every_paging_style_reads_each_record_once_then_only_what_changed() {
    let sim = Sim::start(SimConfig::default()).await;
    let (webinars, registrants) = sim.seed(5, 30);
    for (round, paging) in [
        json!({"type": "cursor", "param": "cursor", "from": "$.next_cursor", "more": "$.has_more"}),
        json!({"type": "next_url", "from": "$.links.next"}),
        json!({"type": "link_header"}),
    ]
    .into_iter()
    .enumerate()
    {
        // Our budget well above the platform's: these reads are not about pacing.
        let c = connector(&params(&sim, paging.clone()), Some(6000));
        let (full, cursor, pages) = read(&c, "registrants", None).await;
        let got: BTreeSet<String> = ids(&full).into_iter().collect();
        assert_eq!(got.len(), full.changes.len(), "{paging}: a record twice");
        let held: BTreeSet<String> = sim
            .registrants()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        assert!(held.is_superset(&registrants.iter().cloned().collect()));
        assert_eq!(got, held, "{paging}");
        assert!(pages >= 5, "{paging}: {pages} pages of 7 for 30");
        assert_eq!(full.changes[0].fields["lead_source"], "Webinar");

        // Nothing changed: nothing read.
        let (idle, cursor, _) = read(&c, "registrants", cursor).await;
        assert!(idle.changes.is_empty(), "{paging}: {:?}", ids(&idle));

        // Two edits in the same second as each other, and a new registration.
        sim.advance(5);
        sim.update(&registrants[3], json!({"job_title": "CFO"}));
        sim.update(&registrants[17], json!({"company": "Initech"}));
        let email = format!("new.person{round}@example.com");
        let new = sim.register(&webinars[0], &email, "New", "Person", None, None);
        let (delta, cursor, _) = read(&c, "registrants", cursor).await;
        let mut got = ids(&delta);
        got.sort();
        let mut want = vec![registrants[3].clone(), registrants[17].clone(), new];
        want.sort();
        assert_eq!(got, want, "{paging}");
        let (again, _, _) = read(&c, "registrants", cursor).await;
        assert!(
            again.changes.is_empty(),
            "{paging}: same-second records read twice: {:?}",
            ids(&again)
        );
    }

    // Page numbers and offsets, on the platform's other lists.
    let c = connector(&params(&sim, json!({"type": "none"})), Some(6000));
    let (w, _, pages) = read(&c, "webinars", None).await;
    assert_eq!(ids(&w), webinars);
    assert_eq!(pages, 2);
    let (a, _, pages) = read(&c, "attendance", None).await;
    assert!(!a.changes.is_empty());
    assert_eq!(a.changes.len(), sim.registrants().len());
    assert!(pages > 1);
}

#[tokio::test]
async fn throttled_and_failing_answers_are_waited_out_and_the_read_completes() {
    let sim = Sim::start(SimConfig::default()).await;
    let (_, registrants) = sim.seed(1, 20);
    sim.faults().set(FaultPlan {
        throttle: 0.4,
        throttle_burst: 2,
        server_error: 0.2,
        seed: 7,
        ..FaultPlan::default()
    });
    let c = connector(
        &params(
            &sim,
            json!({"type": "cursor", "param": "cursor", "from": "$.next_cursor"}),
        ),
        None,
    );
    let mut cursor: Option<String> = None;
    let mut got = BTreeSet::new();
    let mut gave_up = 0;
    // A page the client's own retries could not get is asked again, as the next poll would.
    for _ in 0..40 {
        match c.fetch("registrants", cursor.as_deref()).await {
            Err(e) => {
                assert!(
                    e.is_retryable() || matches!(e, ConnectorError::RateLimited { .. }),
                    "{e}"
                );
                gave_up += 1;
            }
            Ok(page) => {
                got.extend(page.changes.into_iter().map(|c| c.external_id));
                cursor = page.cursor.or(cursor);
                if !page.more {
                    break;
                }
            }
        }
    }
    assert_eq!(
        got,
        registrants.into_iter().collect(),
        "gave up {gave_up} times"
    );
    let counts = sim.faults().counts();
    assert!(
        counts.throttled >= 1 && counts.server_errors >= 1,
        "{counts:?}"
    );
}

#[tokio::test]
async fn a_create_and_an_update_round_trip_and_a_retried_create_makes_one() {
    let sim = Sim::start(SimConfig::default()).await;
    let (webinars, _) = sim.seed(2, 3);
    let c = connector(&params(&sim, json!({"type": "none"})), None);
    let canonical = uuid::Uuid::now_v7();
    let create = PushItem {
        op: PushOp::Create {
            canonical_id: canonical,
        },
        fields: BTreeMap::from([
            ("webinar_id".into(), json!(webinars[1])),
            ("email".into(), json!("ada@example.com")),
            ("first_name".into(), json!("Ada")),
            ("last_name".into(), json!("Lovelace")),
            ("job_title".into(), json!("Analyst")),
        ]),
        version: 1,
    };
    let first = c
        .push("registrants", std::slice::from_ref(&create))
        .await
        .unwrap();
    let id = first[0].clone().unwrap();
    // The answer was lost, say: the same create again is answered with the same record.
    let again = c.push("registrants", &[create]).await.unwrap();
    assert_eq!(again[0].as_ref().unwrap(), &id);
    let held: Vec<Value> = sim
        .registrants()
        .into_iter()
        .filter(|r| r["email"] == "ada@example.com")
        .collect();
    assert_eq!(held.len(), 1, "{held:?}");

    let update = PushItem {
        op: PushOp::Update {
            external_id: id.clone(),
        },
        fields: BTreeMap::from([
            ("company".into(), json!("Analytical Engines Ltd")),
            ("email".into(), json!("ignored@x.test")),
        ]),
        version: 2,
    };
    let r = c.push("registrants", &[update]).await.unwrap();
    assert_eq!(r[0].as_ref().unwrap(), &id);
    let back = c
        .fetch_by_ids("registrants", &[id.clone(), "reg_999999".into()])
        .await
        .unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].fields["company"], "Analytical Engines Ltd");
    assert_eq!(
        back[0].fields["email"], "ada@example.com",
        "the update's body template leaves email out"
    );

    // A refused write is that item's error, not the batch's.
    let bad = PushItem {
        op: PushOp::Create {
            canonical_id: uuid::Uuid::now_v7(),
        },
        fields: BTreeMap::from([("webinar_id".into(), json!("web_404404"))]),
        version: 1,
    };
    let r = c.push("registrants", &[bad]).await.unwrap();
    assert!(r[0].is_err(), "{r:?}");
}

#[tokio::test]
async fn a_signed_webhook_is_accepted_and_a_tampered_or_replayed_one_refused() {
    let sim = Sim::start(SimConfig::default()).await;
    let c = connector(&params(&sim, json!({"type": "none"})), None);
    let body = json!({"event": "registrant.created", "event_id": "evt_7", "created_at": "2026-12-06T10:00:00Z",
        "data": {"id": "reg_7", "webinar_id": "web_1", "email": "Grace@Example.com", "first_name": "Grace", "last_name": "Hopper",
                 "company": null, "job_title": null, "registered_at": "2026-12-06T10:00:00Z", "attended": false, "updated_at": "2026-12-06T10:00:00Z"}})
    .to_string();
    let now = chrono::Utc::now();
    let ts = now.timestamp().to_string();
    let secret = sim.config().webhook_secret;
    // Signed by the simulator's own signing code, as its deliveries are.
    let sig = revsync_rest::sim::sign(&secret, now.timestamp(), body.as_bytes());
    let headers = vec![
        ("x-webinar-timestamp".to_owned(), ts.clone()),
        ("x-webinar-signature".to_owned(), sig),
    ];
    let req = |headers: &[(String, String)], body: &[u8], at| -> Result<Vec<_>, WebhookError> {
        c.verify_webhook(&WebhookRequest {
            method: "POST",
            uri: "http://127.0.0.1/webhooks/webinar",
            headers,
            body,
            received_at: at,
        })
    };
    let events = req(&headers, body.as_bytes(), now).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id, "evt_7");
    let Inbound::Change(ch) = &events[0].inbound else {
        panic!("{events:?}")
    };
    assert_eq!(ch.external_id, "reg_7");
    assert_eq!(ch.fields["lead_source"], "Webinar");

    let tampered = body.replace("Grace", "Mallory");
    assert!(matches!(
        req(&headers, tampered.as_bytes(), now),
        Err(WebhookError::BadSignature(_))
    ));
    let later = now + chrono::Duration::minutes(10);
    assert!(matches!(
        req(&headers, body.as_bytes(), later),
        Err(WebhookError::Stale(_))
    ));
}
