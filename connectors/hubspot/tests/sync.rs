//! The HubSpot connector against its simulator over loopback HTTP: backfill and search
//! cursors, rate limits, batch results, associations, archivals and webhooks.
// Tests: a panic here is a failed test, not a crashed daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use common::{connector, create, fast, read_pass, unlimited};
use hmac::{Hmac, Mac};
use revsync_hubspot::sim::{Sim, SimOptions};
use revsync_hubspot::{Cursor, Pos};
use revsync_sdk::http::RateLimitConfig;
use revsync_sdk::simfault::{FaultPlan, Refusal};
use revsync_sdk::{
    ConnectorError, Inbound, LimitScope, PushItem, PushOp, WebhookError, WebhookRequest,
};
use serde_json::{json, Value};
use sha2::Sha256;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_of_25k_then_search_across_the_10k_cap_loses_and_repeats_nothing() {
    let sim = Sim::start(fast()).await;
    // History: one change a second, a day ago, so every record is settled.
    let seeded: BTreeSet<String> = sim
        .seed_at("contacts", 25_000, now_ms() - 86_400_000, 1_000)
        .into_iter()
        .collect();
    let c = connector(&sim, json!({}), unlimited());

    let (pages, cursor) = read_pass(c.as_ref(), "contacts", None).await;
    let mut listed = BTreeMap::<String, usize>::new();
    for ch in pages.iter().flat_map(|p| &p.changes) {
        *listed.entry(ch.external_id.clone()).or_default() += 1;
    }
    assert_eq!(
        listed.keys().cloned().collect::<BTreeSet<_>>(),
        seeded,
        "backfill lost records"
    );
    // Only the overlap window (30 s = the newest 30 records, plus one at its edge) is read
    // twice, once by the list and once by the first search.
    let twice = listed.values().filter(|n| **n > 1).count();
    assert!(twice <= 31, "{twice} records read twice by the backfill");

    // The same 25,000 through search alone, from the beginning: 125 pages of 200, more
    // than twice the 10,000 results one query may page through.
    let from_zero = Cursor::Search {
        settled: Pos::default(),
        scan: None,
        archived_since_ms: now_ms(),
        seen: Default::default(),
    }
    .encode()
    .unwrap();
    let before = sim.stats();
    let (pages, cursor2) = read_pass(c.as_ref(), "contacts", Some(from_zero)).await;
    let mut seen = BTreeMap::<String, usize>::new();
    for ch in pages.iter().flat_map(|p| &p.changes) {
        *seen.entry(ch.external_id.clone()).or_default() += 1;
    }
    assert_eq!(
        seen.keys().cloned().collect::<BTreeSet<_>>(),
        seeded,
        "search lost records"
    );
    let dup: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dup.is_empty(),
        "search returned records twice: {:?}",
        &dup[..dup.len().min(5)]
    );
    let searches = sim.stats().search_requests - before.search_requests;
    assert!(
        searches >= 125,
        "only {searches} search calls for 25,000 records"
    );

    // Settled: the next pass from either cursor reads nothing again.
    for cur in [cursor, cursor2] {
        let (pages, _) = read_pass(c.as_ref(), "contacts", cur).await;
        let n: usize = pages.iter().map(|p| p.changes.len()).sum();
        assert_eq!(n, 0, "a settled cursor re-read {n} records");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_refuses_to_page_a_search_past_10k() {
    let sim = Sim::start(fast()).await;
    let http = reqwest::Client::new();
    let ask = |after: &str| {
        http.post(format!("{}/crm/v3/objects/contacts/search", sim.url()))
            .bearer_auth(sim.options().token)
            .json(&json!({"filterGroups": [], "limit": 100, "after": after}))
            .send()
    };
    assert_eq!(ask("9900").await.unwrap().status(), 200);
    let r = ask("10000").await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["category"], "VALIDATION_ERROR");
    assert!(body["correlationId"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_changed_during_a_backfill_are_not_missed() {
    let sim = Sim::start(fast()).await;
    let ids = sim.seed_at("contacts", 450, now_ms() - 3_600_000, 1_000);
    let c = connector(&sim, json!({}), unlimited());
    // Two list pages in, a user edits a record already read and adds one.
    let mut cursor = None;
    for _ in 0..2 {
        let f = c.fetch("contacts", cursor.as_deref()).await.unwrap();
        assert!(f.more);
        cursor = f.cursor;
    }
    let edited = ids[5].clone();
    sim.update("contacts", &edited, &[("firstname", "Edited")]);
    let added = sim.seed("contacts", 1).remove(0);
    let (pages, _) = read_pass(c.as_ref(), "contacts", cursor).await;
    let changes: Vec<_> = pages.iter().flat_map(|p| &p.changes).collect();
    assert!(
        changes
            .iter()
            .any(|ch| ch.external_id == edited && ch.fields["firstname"] == json!("Edited")),
        "the edit made during the backfill was missed"
    );
    assert!(
        changes.iter().any(|ch| ch.external_id == added),
        "the record added during the backfill was missed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_window_is_handed_out_once_and_an_edit_in_it_again() {
    // Records changed seconds ago: all inside the 30 s overlap the search keeps open.
    let sim = Sim::start(fast()).await;
    let ids = sim.seed_at("contacts", 20, now_ms() - 5_000, 10);
    let c = connector(&sim, json!({"archived_sweep": false}), unlimited());
    let handed = |pages: &[revsync_sdk::Fetched]| -> Vec<String> {
        pages
            .iter()
            .flat_map(|p| &p.changes)
            .map(|ch| ch.external_id.clone())
            .collect()
    };
    // The backfill reads the 20, and the search that follows it does not read them again.
    let (pages, mut cursor) = read_pass(c.as_ref(), "contacts", None).await;
    assert_eq!(handed(&pages).len(), 20, "{:?}", handed(&pages));
    for _ in 0..3 {
        let (pages, next) = read_pass(c.as_ref(), "contacts", cursor).await;
        cursor = next;
        assert!(
            handed(&pages).is_empty(),
            "read again: {:?}",
            handed(&pages)
        );
    }
    // An edit inside the open window is handed out, once.
    sim.update("contacts", &ids[3], &[("firstname", "Edited")]);
    let (pages, next) = read_pass(c.as_ref(), "contacts", cursor).await;
    assert_eq!(handed(&pages), vec![ids[3].clone()]);
    let (pages, _) = read_pass(c.as_ref(), "contacts", next).await;
    assert!(
        handed(&pages).is_empty(),
        "read again: {:?}",
        handed(&pages)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_search_index_is_covered_by_the_overlap() {
    // Writes show in search only after 1.5 s; the cursor stays 3 s behind.
    let sim = Sim::start(SimOptions {
        search_lag: Duration::from_millis(1_500),
        ..fast()
    })
    .await;
    sim.seed_at("contacts", 10, now_ms() - 60_000, 1_000);
    let c = connector(
        &sim,
        json!({"search_overlap_secs": 3, "archived_sweep": false}),
        unlimited(),
    );
    let (_, mut cursor) = read_pass(c.as_ref(), "contacts", None).await;
    let late = sim.seed("contacts", 1).remove(0);
    let mut found = false;
    for _ in 0..40 {
        let (pages, next) = read_pass(c.as_ref(), "contacts", cursor).await;
        cursor = next;
        if pages
            .iter()
            .flat_map(|p| &p.changes)
            .any(|ch| ch.external_id == late)
        {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(found, "a record indexed late was never read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_10s_limit_meets_429s_and_every_push_lands() {
    // The real rolling 10 s window, small; another app has already spent half of it.
    let sim = Sim::start(SimOptions {
        burst_limit: 10,
        ..SimOptions::default()
    })
    .await;
    sim.consume_burst(5);
    // Configured above what the account really allows, so only HubSpot's answers hold it back.
    let c = connector(&sim, json!({}), unlimited());
    let mut tasks = tokio::task::JoinSet::new();
    for b in 0..12 {
        let c = c.clone();
        tasks.spawn(async move {
            let items: Vec<PushItem> = (0..4)
                .map(|i| {
                    create(json!({"email": format!("burst{b}-{i}@example.com"), "firstname": "B"}))
                })
                .collect();
            c.push("contacts", &items).await
        });
    }
    let mut ids = BTreeSet::new();
    while let Some(r) = tasks.join_next().await {
        for item in r.unwrap().expect("a push was lost to the rate limit") {
            ids.insert(item.expect("an item failed"));
        }
    }
    assert_eq!(ids.len(), 48, "every pushed record exists once");
    assert_eq!(sim.ids("contacts").len(), 48);
    let s = sim.stats();
    assert!(s.throttled_burst > 0, "the burst never met a 429: {s:?}");
    assert!(c.rate_limit().unwrap().throttled_429 > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_429_pauses_instead_of_retrying() {
    let sim = Sim::start(SimOptions {
        daily_limit: Some(1_000),
        ..SimOptions::default()
    })
    .await;
    sim.set_daily_remaining(0);
    let c = connector(&sim, json!({}), RateLimitConfig::default());
    let err = c
        .push("contacts", &[create(json!({"email": "d@example.com"}))])
        .await
        .expect_err("nothing can be written past the daily limit");
    match err {
        ConnectorError::RateLimited {
            scope: LimitScope::Daily,
            retry_after: Some(d),
        } => {
            assert!(d > Duration::ZERO && d <= Duration::from_secs(86_400));
        }
        other => panic!("expected a daily rate limit, got {other:?}"),
    }
    assert_eq!(sim.stats().throttled_daily, 1, "a daily 429 was retried");
    let stats = c.rate_limit().unwrap();
    assert!(
        stats.current_wait_ms > 0,
        "the pause does not show in the limiter stats"
    );
    // Reads are held too, and fail fast rather than spending the quota.
    let r = tokio::time::timeout(Duration::from_millis(500), c.fetch("companies", None)).await;
    assert!(r.is_err() || r.unwrap().is_err());
}

/// The connector's batch read (the read before an update, and reads by id) sends every
/// attribute HubSpot's spec requires, `propertiesWithHistory` included: a portal that
/// insists on them answers it, where a read without one would be refused and the update
/// held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_read_sends_what_the_spec_requires() {
    let sim = Sim::start(SimOptions {
        strict_spec: true,
        ..fast()
    })
    .await;
    let c = connector(&sim, json!({}), unlimited());
    let ids = sim.seed("contacts", 3);
    let got = c.fetch_by_ids("contacts", &ids).await.unwrap();
    let read: BTreeSet<String> = got.into_iter().map(|ch| ch.external_id).collect();
    assert_eq!(read, ids.into_iter().collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_207_fails_only_the_bad_items() {
    let sim = Sim::start(fast()).await;
    let c = connector(&sim, json!({}), unlimited());
    let items = vec![
        create(json!({"email": "ok1@example.com"})),
        create(json!({"email": "not-an-email"})),
        create(json!({"firstname": "No email"})),
    ];
    let r = c.push("contacts", &items).await.unwrap();
    assert_eq!(r.len(), 3);
    assert!(r[0].is_ok() && r[2].is_ok(), "{r:?}");
    // Email upserts are all or nothing: the bad address fails its call, and the connector
    // sends the halves again so that the good one still lands.
    match &r[1] {
        Err(ConnectorError::Permanent { detail, body, .. }) => {
            let said = format!("{detail} {}", body.as_deref().unwrap_or_default());
            assert!(said.contains("VALIDATION_ERROR"), "{said}")
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_eq!(sim.ids("contacts").len(), 2);
    // The contact without an email was upserted by the canonical id property: again, same id.
    let again = c.push("contacts", &items[2..]).await.unwrap();
    assert_eq!(again[0].as_ref().unwrap(), r[2].as_ref().unwrap());
    assert_eq!(sim.ids("contacts").len(), 2);
    // Updates and deletes of unknown ids fail per item too.
    let upd = PushItem {
        op: PushOp::Update {
            external_id: "999999".into(),
        },
        fields: BTreeMap::new(),
        version: 2,
    };
    let r = c.push("contacts", &[upd]).await;
    assert!(
        matches!(r, Ok(ref v) if matches!(v[0], Err(ConnectorError::NotFound))),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn associations_are_written_and_read_back() {
    let sim = Sim::start(fast()).await;
    let c = connector(&sim, json!({}), unlimited());
    let company = sim.seed("companies", 1).remove(0);
    let contact = c
        .push(
            "contacts",
            &[create(
                json!({"email": "a@example.com", "associatedcompanyid": company}),
            )],
        )
        .await
        .unwrap()[0]
        .clone()
        .unwrap();
    let deal = c
        .push("deals", &[create(json!({"dealname": "D", "associatedcompanyid": company, "associatedcontactid": contact}))])
        .await
        .unwrap()[0]
        .clone()
        .unwrap();
    assert_eq!(
        sim.associated("deals", &deal, "companies"),
        vec![company.clone()]
    );
    assert_eq!(
        sim.associated("companies", &company, "deals"),
        vec![deal.clone()],
        "associations go both ways"
    );
    assert_eq!(
        sim.associated("contacts", &contact, "companies"),
        vec![company.clone()]
    );
    let got = c
        .fetch_by_ids("deals", std::slice::from_ref(&deal))
        .await
        .unwrap();
    assert_eq!(got[0].fields["associatedcompanyid"], json!(company));
    assert_eq!(got[0].fields["associatedcontactid"], json!(contact));
    // The list backfill reads them too.
    let (pages, _) = read_pass(c.as_ref(), "deals", None).await;
    let ch = pages
        .iter()
        .flat_map(|p| &p.changes)
        .find(|ch| ch.external_id == deal)
        .unwrap();
    assert_eq!(ch.fields["associatedcompanyid"], json!(company));
    let got = c
        .fetch_by_ids("contacts", std::slice::from_ref(&contact))
        .await
        .unwrap();
    assert_eq!(got[0].fields["associatedcompanyid"], json!(company));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_records_arrive_as_deletions() {
    let sim = Sim::start(fast()).await;
    let ids = sim.seed_at("companies", 5, now_ms() - 3_600_000, 1_000);
    let c = connector(&sim, json!({}), unlimited());
    let (_, cursor) = read_pass(c.as_ref(), "companies", None).await;
    sim.archive("companies", &ids[2]);
    let (pages, cursor) = read_pass(c.as_ref(), "companies", cursor).await;
    let deleted: Vec<_> = pages
        .iter()
        .flat_map(|p| &p.changes)
        .filter(|c| c.deleted)
        .map(|c| c.external_id.clone())
        .collect();
    assert_eq!(deleted, vec![ids[2].clone()]);
    // A push of a delete archives; archiving again is harmless.
    let del = PushItem {
        op: PushOp::Delete {
            external_id: ids[3].clone(),
        },
        fields: BTreeMap::new(),
        version: 3,
    };
    assert_eq!(
        c.push("companies", std::slice::from_ref(&del))
            .await
            .unwrap()[0]
            .as_ref()
            .unwrap(),
        &ids[3]
    );
    assert_eq!(
        c.push("companies", &[del]).await.unwrap()[0]
            .as_ref()
            .unwrap(),
        &ids[3]
    );
    assert!(!sim.ids("companies").contains(&ids[3]));
    let (pages, _) = read_pass(c.as_ref(), "companies", cursor).await;
    assert!(pages
        .iter()
        .flat_map(|p| &p.changes)
        .any(|c| c.deleted && c.external_id == ids[3]));
}

fn independent_v3(secret: &str, method: &str, uri: &str, body: &[u8], ts: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    let mut msg = Vec::new();
    msg.extend_from_slice(method.as_bytes());
    msg.extend_from_slice(uri.as_bytes());
    msg.extend_from_slice(body);
    msg.extend_from_slice(ts.as_bytes());
    mac.update(&msg);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

type Captured = Arc<Mutex<Vec<(String, Vec<(String, String)>, Vec<u8>)>>>;

async fn receiver() -> (String, Captured) {
    use axum::routing::post;
    let got: Captured = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hooks/hubspot",
        post(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let g = g.clone();
                async move {
                    let hs = headers
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                        .collect();
                    g.lock().unwrap().push((uri.to_string(), hs, body.to_vec()));
                    axum::http::StatusCode::NO_CONTENT
                }
            },
        ),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/hooks/hubspot?portal=62515",
        l.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_webhooks_are_v3_signed_as_documented_and_accepted() {
    let (url, got) = receiver().await;
    let sim = Sim::start(SimOptions {
        webhook_url: Some(url.clone()),
        ..fast()
    })
    .await;
    let c = connector(&sim, json!({}), unlimited());
    let id = sim.seed("contacts", 1).remove(0);
    sim.update("contacts", &id, &[("firstname", "Changed")]);
    sim.archive("contacts", &id);
    let mut events = Vec::new();
    for _ in 0..50 {
        if events.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        for (_uri, headers, body) in got.lock().unwrap().drain(..) {
            let h = |n: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.clone())
                    .unwrap()
            };
            let (sig, ts) = (
                h("x-hubspot-signature-v3"),
                h("x-hubspot-request-timestamp"),
            );
            let secret = sim.options().client_secret;
            assert_eq!(
                sig,
                independent_v3(&secret, "POST", &url, &body, &ts),
                "signature differs from the documented algorithm"
            );
            let req = WebhookRequest {
                method: "POST",
                uri: &url,
                headers: &headers,
                body: &body,
                received_at: chrono::Utc::now(),
            };
            events.extend(
                c.verify_webhook(&req)
                    .expect("the connector accepts the simulator's webhook"),
            );
        }
    }
    assert!(
        events.len() >= 3,
        "expected creation, propertyChange and deletion events, got {events:?}"
    );
    assert!(matches!(&events[0].inbound, Inbound::Hint { external_id } if *external_id == id));
    assert!(events
        .iter()
        .any(|e| matches!(&e.inbound, Inbound::Change(ch) if ch.deleted && ch.external_id == id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_with_a_bad_signature_or_an_old_timestamp_are_rejected() {
    let sim = Sim::start(fast()).await;
    let c = connector(&sim, json!({}), unlimited());
    let secret = sim.options().client_secret;
    let uri = "https://revsync.example.com/webhooks/hubspot-main";
    let body = br#"[{"eventId":7,"subscriptionType":"deal.creation","objectId":42,"occurredAt":1700000000000}]"#;
    let check = |sig: String, ts: i64| {
        let headers = vec![
            ("x-hubspot-signature-v3".to_owned(), sig),
            ("x-hubspot-request-timestamp".to_owned(), ts.to_string()),
        ];
        c.verify_webhook(&WebhookRequest {
            method: "POST",
            uri,
            headers: &headers,
            body,
            received_at: chrono::Utc::now(),
        })
    };
    let now = now_ms();
    let good = independent_v3(&secret, "POST", uri, body, &now.to_string());
    assert_eq!(check(good.clone(), now).unwrap().len(), 1);
    assert!(matches!(
        check(
            independent_v3("wrong", "POST", uri, body, &now.to_string()),
            now
        ),
        Err(WebhookError::BadSignature(_))
    ));
    // The signed timestamp is part of the signature: changing it breaks it.
    assert!(matches!(
        check(good, now - 1),
        Err(WebhookError::BadSignature(_))
    ));
    let old = now - 301_000;
    assert!(matches!(
        check(
            independent_v3(&secret, "POST", uri, body, &old.to_string()),
            old
        ),
        Err(WebhookError::Stale(_))
    ));
    let recent = now - 240_000;
    assert!(check(
        independent_v3(&secret, "POST", uri, body, &recent.to_string()),
        recent
    )
    .is_ok());
}

/// A short rolling window, so the pause a 429 asks for (the window) is short too.
fn quick_window() -> SimOptions {
    SimOptions {
        burst_window: Duration::from_millis(100),
        ..fast()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_429_bursts_are_absorbed_by_a_backfill() {
    let sim = Sim::start(quick_window()).await;
    let seeded: BTreeSet<String> = sim.seed("companies", 250).into_iter().collect();
    sim.faults().set(FaultPlan {
        throttle: 0.3,
        throttle_burst: 2,
        seed: 11,
        ..FaultPlan::default()
    });
    let c = connector(&sim, json!({}), unlimited());
    let (pages, _) = read_pass(c.as_ref(), "companies", None).await;
    let seen: BTreeSet<String> = pages
        .iter()
        .flat_map(|p| p.changes.iter().map(|ch| ch.external_id.clone()))
        .collect();
    assert_eq!(seen, seeded);
    let injected = sim.faults().counts().throttled;
    assert!(injected >= 2, "no burst was injected");
    assert!(c.rate_limit().unwrap().throttled_429 > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_answer_was_cut_or_stalled_leaves_one_record() {
    let sim = Sim::start(quick_window()).await;
    // Shorter than the stall: the client gives up on upserts that were applied.
    let c = connector(&sim, json!({"timeout_ms": 200}), unlimited());
    let items = vec![
        create(json!({"email": "cut@example.com", "firstname": "Cut"})),
        create(json!({"firstname": "No email"})),
    ];
    for plan in [
        FaultPlan {
            malformed: 1.0,
            ..FaultPlan::default()
        },
        FaultPlan {
            stall: 1.0,
            stall_for: Duration::from_millis(600),
            ..FaultPlan::default()
        },
    ] {
        sim.faults().set(plan);
        let e = c
            .push("contacts", &items)
            .await
            .expect_err("the answer never arrived whole");
        assert!(e.is_retryable(), "{e:?}");
        assert_eq!(sim.ids("contacts").len(), 2, "the work was done once");
    }
    sim.faults().clear();
    let ids = c.push("contacts", &items).await.unwrap();
    let ids: BTreeSet<String> = ids.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(
        ids,
        sim.ids("contacts"),
        "a retried create made a second record"
    );
    let counts = sim.faults().counts();
    assert!(counts.malformed >= 1 && counts.stalled >= 1, "{counts:?}");
}

/// One call of a push refused for good (an invalid email), the next one
/// refused by the daily limit: each item keeps its own answer. Said once for the whole
/// batch, the refusal would dead-letter the items that only met the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_call_failures_stay_per_item() {
    let sim = Sim::start(SimOptions {
        daily_limit: Some(1_000),
        ..fast()
    })
    .await;
    // The email upsert spends the last request of the day; the revsync_id upsert meets
    // the daily 429.
    sim.set_daily_remaining(1);
    let c = connector(&sim, json!({}), unlimited());
    let items = vec![
        create(json!({"email": "not-an-email"})),
        create(json!({"firstname": "No email"})),
    ];
    let r = c
        .push("contacts", &items)
        .await
        .expect("per-item answers, not one for the batch");
    assert!(
        matches!(&r[0], Err(ConnectorError::Permanent { .. })),
        "{r:?}"
    );
    assert!(
        matches!(
            &r[1],
            Err(ConnectorError::RateLimited {
                scope: LimitScope::Daily,
                ..
            })
        ),
        "{r:?}"
    );
}

/// Forty bad addresses in one push: the halving stops at its budget instead of sending
/// every address alone, and each item still gets its own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splitting_a_refused_email_upsert_is_bounded() {
    let sim = Sim::start(fast()).await;
    let c = connector(&sim, json!({}), unlimited());
    let items: Vec<PushItem> = (0..40)
        .map(|i| create(json!({"email": format!("bad-address-{i}")})))
        .collect();
    let r = c.push("contacts", &items).await.expect("per-item answers");
    assert_eq!(r.len(), 40);
    assert!(
        r.iter()
            .all(|r| matches!(r, Err(ConnectorError::Permanent { .. }))),
        "{r:?}"
    );
    let calls = sim.stats().batch_writes;
    assert!((2..=25).contains(&calls), "{calls} calls");
    assert!(sim.ids("contacts").is_empty());
}

/// A deal written whose association HubSpot then refuses for good keeps its answer: the
/// id it was given, so the link is kept and the record is not a dead letter. The refusal
/// is reported on its own (a notice on `/status`), and the association HubSpot took is
/// made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_written_keeps_its_id_when_its_association_is_refused_for_good() {
    let sim = Sim::start(fast()).await;
    let c = connector(&sim, json!({}), unlimited());
    let company = sim.seed("companies", 1).remove(0);
    let contact = sim.seed("contacts", 1).remove(0);
    sim.faults().refuse(Refusal {
        marker: "/crm/v4/associations/deals/companies/batch/associate".into(),
        status: axum::http::StatusCode::BAD_REQUEST,
        body: json!({
            "status": "error",
            "message": "association type is not allowed between these objects",
            "correlationId": "0d9c3a1e-5b7f-4c1a-9e2d-3f4b5c6d7e8f",
            "category": "VALIDATION_ERROR",
        })
        .to_string(),
    });
    let r = c
        .push(
            "deals",
            &[create(json!({"dealname": "Big", "associatedcompanyid": company, "associatedcontactid": contact}))],
        )
        .await
        .expect("per-item answers");
    let deal = r[0].clone().expect("the deal was written and keeps its id");
    assert_eq!(sim.ids("deals"), BTreeSet::from([deal.clone()]));
    assert_eq!(sim.associated("deals", &deal, "contacts"), vec![contact]);
    assert!(sim.associated("deals", &deal, "companies").is_empty());
    let notices = c.notices();
    assert!(
        notices.len() == 1
            && notices[0].contains(&format!("deals {deal} -> companies {company}"))
            && notices[0].contains("VALIDATION_ERROR"),
        "{notices:?}"
    );
}

/// A contact created without an email was upserted by `revsync_id`; its answer was lost.
/// Retried once the record has an email, it is upserted by that email, which no contact
/// holds: HubSpot would make a new contact, whose `revsync_id` the first one already holds,
/// and answers 409 CONFLICT naming it. The connector reads that contact, finds the
/// canonical id it made it for, and writes the retry to it by id: linked, not a dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_create_meeting_a_conflict_links_the_contact_it_made() {
    let sim = Sim::start(fast()).await;
    let c = connector(&sim, json!({}), unlimited());
    let first = create(json!({"firstname": "Ada"}));
    let made = c
        .push("contacts", std::slice::from_ref(&first))
        .await
        .unwrap()[0]
        .clone()
        .unwrap();
    let PushOp::Create { canonical_id } = &first.op else {
        unreachable!()
    };

    // What HubSpot answers the retry's upsert, as the simulator says it.
    let input = json!({"inputs": [{"id": "ada@example.com", "idProperty": "email",
        "properties": {"email": "ada@example.com", "revsync_id": canonical_id.to_string()}}]});
    let answer = reqwest::Client::new()
        .post(format!(
            "{}/crm/v3/objects/contacts/batch/upsert",
            sim.url()
        ))
        .bearer_auth(sim.options().token)
        .json(&input)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 409);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["status"], "error");
    assert_eq!(body["category"], "CONFLICT");
    assert_eq!(
        body["message"],
        format!("Contact already exists. Existing ID: {made}")
    );
    assert!(body["correlationId"].is_string(), "{body}");

    let mut retry = first.clone();
    retry.fields =
        serde_json::from_value(json!({"firstname": "Ada", "email": "ada@example.com"})).unwrap();
    retry.version = 2;
    let other = create(json!({"email": "grace@example.com"}));
    let r = c
        .push("contacts", &[retry, other])
        .await
        .expect("per-item answers");
    assert_eq!(r[0].as_deref().ok(), Some(made.as_str()), "{r:?}");
    assert!(r[1].is_ok(), "{r:?}");
    assert_eq!(sim.ids("contacts").len(), 2, "no second contact for Ada");
    let ada = sim.get("contacts", &made).unwrap();
    assert_eq!(ada["email"], "ada@example.com");
    assert_eq!(ada["revsync_id"], canonical_id.to_string());
}
