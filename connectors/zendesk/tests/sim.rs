//! The Zendesk connector against its simulator over real HTTP on loopback.
// Tests: a panic here is a failed test, not a crashed daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use reqwest::Method;
use revsync_sdk::http::Limits;
use revsync_sdk::testsuite::{self, Harness, SampleWebhook};
use revsync_sdk::{Connector, ConnectorError, PushItem, PushOp, WebhookError, WebhookRequest};
use revsync_zendesk::config::ZendeskParams;
use revsync_zendesk::sim::{Sim, SimConfig};
use revsync_zendesk::ZendeskConnector;
use serde_json::{json, Value};
use uuid::Uuid;

/// A simulator with export limits lifted (the 10/min budget is the connector's to keep,
/// and tests would otherwise wait out real minutes).
async fn sim(cfg: SimConfig) -> Sim {
    Sim::start(SimConfig {
        exports_per_window: 10_000,
        ..cfg
    })
    .await
}

fn params(sim: &Sim, extra: Value) -> ZendeskParams {
    let mut p = sim.params();
    p["exports_per_minute"] = json!(1000);
    p["job_poll_interval_ms"] = json!(20);
    for (k, v) in extra.as_object().into_iter().flatten() {
        p[k] = v.clone();
    }
    ZendeskParams::from_value(&p).expect("valid params")
}

fn connector(sim: &Sim, extra: Value) -> ZendeskConnector {
    ZendeskConnector::new(
        params(sim, extra),
        Limits::new(6000, Duration::from_secs(60)),
    )
    .unwrap()
}

struct H(Sim);

#[async_trait]
impl Harness for H {
    async fn seed(&self, object: &str, n: usize) -> Vec<String> {
        let ids = self.0.seed(object, n);
        // Exports hold back the most recent minute.
        self.0.advance(61);
        ids
    }

    async fn ids(&self, object: &str) -> BTreeSet<String> {
        self.0.ids(object).into_iter().collect()
    }

    fn new_fields(&self, object: &str, i: usize) -> BTreeMap<String, Value> {
        let u = Uuid::now_v7().simple().to_string();
        let v = match object {
            "users" => {
                json!({"name": format!("New {i}"), "email": format!("new{i}-{u}@example.com")})
            }
            "organizations" => {
                json!({"name": format!("New Org {i} {u}"), "domain_names": [format!("n{i}.example")]})
            }
            _ => {
                json!({"subject": format!("New ticket {i}"), "status": "open", "priority": "high"})
            }
        };
        serde_json::from_value(v).unwrap()
    }

    fn signed_webhook(&self) -> Option<SampleWebhook> {
        Some(self.0.webhook("user.created", "360123", Utc::now()))
    }

    fn tampered_webhook(&self) -> Option<SampleWebhook> {
        let (h, mut body) = self.0.webhook("user.created", "360123", Utc::now());
        body.extend_from_slice(b" ");
        Some((h, body))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_for_every_object() {
    let s = sim(SimConfig::default()).await;
    let c = connector(&s, json!({"ticket_writes": true}));
    let h = H(s.clone());
    for object in ["users", "organizations", "tickets"] {
        testsuite::run(&c, &h, object).await;
    }
}

/// 12,000 users over a dozen 1000-record pages while users keep changing between pages:
/// every user is read, and every user's last read state is its current state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_thousand_users_none_lost_while_updates_arrive() {
    let s = sim(SimConfig::default()).await;
    let c = connector(&s, json!({}));
    let ids = s.seed("users", 12_000);
    s.advance(61);
    let mut latest: HashMap<String, Value> = HashMap::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    let mut updated = BTreeSet::new();
    for round in 0..2 {
        loop {
            let f = c.fetch("users", cursor.as_deref()).await.unwrap();
            assert!(f.invalid.is_empty(), "{:?}", f.invalid);
            pages += 1;
            for ch in f.changes {
                latest.insert(ch.external_id, ch.fields["name"].clone());
            }
            cursor = f.cursor;
            if round == 0 && pages < 30 {
                for k in 0..40 {
                    let id = &ids[(pages * 733 + k * 97) % ids.len()];
                    s.update("users", id, json!({"name": format!("changed {pages}-{k}")}));
                    updated.insert(id.clone());
                }
                // Time passes between pages: earlier updates leave the held-back minute.
                s.advance(7);
            }
            if !f.more {
                break;
            }
        }
        // The next poll, a minute later: the remaining updates are now exportable.
        s.advance(61);
    }
    assert!(
        pages >= 13,
        "12,000 users need at least 12 pages of 1000, read {pages}"
    );
    let missing: Vec<_> = ids.iter().filter(|id| !latest.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} users never read, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    for id in &updated {
        let now = s.record("users", id).unwrap()["name"].clone();
        assert_eq!(latest[id], now, "user {id}: the last update was lost");
    }
    assert!(
        updated.len() > 400,
        "updates arrived during the export ({})",
        updated.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failed_item_of_a_batch_job_fails_alone() {
    let s = sim(SimConfig::default()).await;
    let c = connector(&s, json!({}));
    let before = s.ids("users").len();
    let items: Vec<PushItem> = (0..5)
        .map(|i| {
            let email = if i == 2 {
                "not-an-email".to_string()
            } else {
                format!("batch{i}@example.com")
            };
            PushItem {
                op: PushOp::Create {
                    canonical_id: Uuid::now_v7(),
                },
                fields: serde_json::from_value(json!({"name": format!("B {i}"), "email": email}))
                    .unwrap(),
                version: 1,
            }
        })
        .collect();
    let r = c.push("users", &items).await.unwrap();
    assert_eq!(r.len(), 5);
    for (i, res) in r.iter().enumerate() {
        if i == 2 {
            match res {
                Err(ConnectorError::Permanent { detail, .. }) => {
                    assert!(detail.contains("RecordInvalid"), "{detail}")
                }
                other => panic!("item 2 must be a permanent failure (dead letter), got {other:?}"),
            }
        } else {
            let id = res
                .as_ref()
                .unwrap_or_else(|e| panic!("item {i} failed: {e}"));
            assert_eq!(
                s.record("users", id).unwrap()["email"],
                json!(format!("batch{i}@example.com"))
            );
        }
    }
    assert_eq!(s.ids("users").len(), before + 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_jobs_backs_off_then_completes() {
    let s = sim(SimConfig::default()).await;
    let c = connector(&s, json!({}));
    s.occupy_job_slots(30, Duration::from_millis(1500));
    let items: Vec<PushItem> = (0..3)
        .map(|i| PushItem {
            op: PushOp::Create {
                canonical_id: Uuid::now_v7(),
            },
            fields: serde_json::from_value(
                json!({"name": format!("J {i}"), "email": format!("j{i}@example.com")}),
            )
            .unwrap(),
            version: 1,
        })
        .collect();
    let started = Instant::now();
    let r = c.push("users", &items).await.unwrap();
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    assert!(s.stats().too_many_jobs >= 1, "the job ceiling was hit");
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "waited for a free slot"
    );
    assert_eq!(s.stats().jobs, 1, "exactly one job was queued");
}

/// Zendesk frees a job's slot when the job finishes, and each submit's answer says how
/// many slots are taken (`zendesk-ratelimit-inflight-jobs`). With room for three jobs of
/// ours and jobs that finish in 20 ms, six pushes 50 ms apart all go out before the first
/// status read (due a second after the first submit): no slot waits for a read to learn
/// what the header already said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_zendesk_has_freed_are_used_before_the_next_status_read() {
    let s = sim(SimConfig {
        job_delay: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await;
    let c = std::sync::Arc::new(connector(
        &s,
        json!({"max_jobs_in_flight": 3, "job_poll_interval_ms": 4000}),
    ));
    let started = Instant::now();
    let mut pushes = tokio::task::JoinSet::new();
    for b in 0..6 {
        let c = c.clone();
        pushes.spawn(async move {
            let item = PushItem {
                op: PushOp::Create {
                    canonical_id: Uuid::now_v7(),
                },
                fields: serde_json::from_value(
                    json!({"name": format!("S {b}"), "email": format!("s{b}@example.com")}),
                )
                .unwrap(),
                version: 1,
            };
            c.push("users", &[item]).await.unwrap()
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep_until((started + Duration::from_millis(800)).into()).await;
    let st = s.stats();
    assert_eq!(st.status_reads, 0, "the first read is not due yet");
    assert_eq!(st.jobs, 6, "every push was submitted before any read");
    while let Some(r) = pushes.join_next().await {
        assert!(r.unwrap()[0].is_ok());
    }
    let st = s.stats();
    assert!(
        st.max_active_jobs <= 3,
        "{} jobs at once",
        st.max_active_jobs
    );
    assert_eq!(st.too_many_jobs, 0);
    assert_eq!(s.ids("users").len(), 6);
}

/// 1,000 users in batches of 100 against jobs that take 1 s, pushed as the dispatcher
/// does: up to `pushes_in_flight()` pushes at once. Jobs overlap within Zendesk's ceiling,
/// their statuses are read together rather than once per job, and every id a push
/// reports was named by its job's results before the push returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_users_go_out_as_overlapping_jobs_read_together() {
    let s = sim(SimConfig {
        job_delay: Duration::from_secs(1),
        ..SimConfig::default()
    })
    .await;
    let c = std::sync::Arc::new(connector(&s, json!({"job_poll_interval_ms": 500})));
    assert!(
        c.pushes_in_flight() > 1,
        "the connector declares pushes in flight"
    );
    let batches: Vec<Vec<PushItem>> = (0..10)
        .map(|b| {
            (0..100)
                .map(|i| PushItem {
                    op: PushOp::Create {
                        canonical_id: Uuid::now_v7(),
                    },
                    fields: serde_json::from_value(json!({"name": format!("P {b}-{i}"),
                        "email": format!("p{b}-{i}@example.com")}))
                    .unwrap(),
                    version: 1,
                })
                .collect()
        })
        .collect();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(c.pushes_in_flight()));
    let mut pushes = tokio::task::JoinSet::new();
    for batch in batches {
        let (c, s, slots) = (c.clone(), s.clone(), slots.clone());
        pushes.spawn(async move {
            let _slot = slots.acquire_owned().await.unwrap();
            let r = c.push("users", &batch).await.unwrap();
            // Taken as the push returns: an id not named yet was reported unconfirmed.
            let named = s.stats().named_in_results;
            for id in &r {
                let id = id.as_ref().unwrap();
                assert!(named.contains(id), "{id} reported before its job named it");
            }
            r.len()
        });
    }
    let mut pushed = 0;
    while let Some(n) = pushes.join_next().await {
        pushed += n.unwrap();
    }
    assert_eq!(pushed, 1000);
    assert_eq!(s.ids("users").len(), 1000);
    let st = s.stats();
    assert_eq!(st.jobs, 10);
    assert!(
        (2..=30).contains(&st.max_active_jobs),
        "jobs in flight at once: {}",
        st.max_active_jobs
    );
    assert!(
        st.status_reads < st.jobs,
        "{} status reads for {} jobs: reads are shared",
        st.status_reads,
        st.jobs
    );
    assert_eq!(st.too_many_jobs, 0);
}

/// Time-based export with a page of 10 and 25 organizations on one second: the page
/// boundary falls inside the tie, and `start_time = end_time` serves the second again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tied_organization_timestamps_neither_lost_nor_doubled() {
    let s = sim(SimConfig {
        export_page_max: 10,
        ..SimConfig::default()
    })
    .await;
    let c = connector(&s, json!({}));
    let t0 = s.now();
    let mut all = s.seed_at("organizations", 5, t0 - 300);
    all.extend(s.seed_at("organizations", 25, t0 - 299));
    all.extend(s.seed_at("organizations", 7, t0 - 298));
    let read = |cursor: Option<String>| {
        let c = &c;
        async move {
            let mut cursor = cursor;
            let mut seen = Vec::new();
            loop {
                let f = c.fetch("organizations", cursor.as_deref()).await.unwrap();
                seen.extend(f.changes.into_iter().map(|ch| ch.external_id));
                cursor = f.cursor;
                if !f.more {
                    return (seen, cursor);
                }
            }
        }
    };
    let (seen, cursor) = read(None).await;
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "duplicates in the backfill");
    assert_eq!(
        unique,
        all.iter().cloned().collect::<BTreeSet<_>>(),
        "backfill missed records"
    );

    // Later: two changed (one of them from the boundary second) and two new.
    let changed = [all[3].clone(), all[36].clone()];
    for id in &changed {
        s.update("organizations", id, json!({"notes": "changed"}));
    }
    let fresh = s.seed("organizations", 2);
    s.advance(61);
    let (seen, _) = read(cursor).await;
    let mut expected: Vec<String> = changed.iter().chain(&fresh).cloned().collect();
    expected.sort();
    let mut got = seen.clone();
    got.sort();
    assert_eq!(got, expected, "incremental read: each change exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_stale_signatures_are_rejected() {
    let s = sim(SimConfig::default()).await;
    let c = connector(&s, json!({}));
    let now = Utc::now();
    let check = |c: &ZendeskConnector, (headers, body): SampleWebhook| {
        c.verify_webhook(&WebhookRequest {
            method: "POST",
            uri: "http://127.0.0.1/webhooks/zendesk",
            headers: &headers,
            body: &body,
            received_at: now,
        })
    };
    let events = check(&c, s.webhook("user.created", "42", now)).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].object, "users");
    assert!(check(
        &c,
        s.webhook("user.created", "42", now - chrono::Duration::seconds(290))
    )
    .is_ok());

    let (h, mut body) = s.webhook("user.created", "42", now);
    body[3] ^= 1;
    assert!(matches!(
        check(&c, (h, body)),
        Err(WebhookError::BadSignature(_))
    ));
    let (mut h, body) = s.webhook("user.created", "42", now);
    h.retain(|(k, _)| k != "x-zendesk-webhook-signature");
    assert!(matches!(
        check(&c, (h, body)),
        Err(WebhookError::BadSignature(_))
    ));
    let (mut h, body) = s.webhook("user.created", "42", now);
    h.retain(|(k, _)| k != "x-zendesk-webhook-signature-timestamp");
    assert!(matches!(
        check(&c, (h, body)),
        Err(WebhookError::BadSignature(_))
    ));
    // A replay: the signature is right, the timestamp outside the 300 s window.
    for skew in [-400, 400] {
        let r = check(
            &c,
            s.webhook("user.created", "42", now + chrono::Duration::seconds(skew)),
        );
        assert!(
            matches!(r, Err(WebhookError::Stale(_))),
            "skew {skew}: {r:?}"
        );
    }
    let wrong = connector(&s, json!({"webhook_secret": "another-secret"}));
    assert!(matches!(
        check(&wrong, s.webhook("user.created", "42", now)),
        Err(WebhookError::BadSignature(_))
    ));
    // The unconfirmed order is a setting: the other order refuses this sender's signatures.
    let other = connector(&s, json!({"webhook_signature_order": "body_timestamp"}));
    assert!(matches!(
        check(&other, s.webhook("user.created", "42", now)),
        Err(WebhookError::BadSignature(_))
    ));
}

/// `ratelimit-remaining: 0` pauses the account until `ratelimit-reset`: no 429 needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_budget_headers_pause_before_a_429() {
    let s = sim(SimConfig {
        requests_per_window: 3,
        window: Duration::from_secs(1),
        ..SimConfig::default()
    })
    .await;
    let c = connector(&s, json!({}));
    let ids = s.seed("users", 3);
    let started = Instant::now();
    for _ in 0..7 {
        assert_eq!(c.fetch_by_ids("users", &ids).await.unwrap().len(), 3);
    }
    assert_eq!(s.stats().throttled, 0, "the headers were obeyed");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for the window to reset"
    );
}

/// Another tool spent the account's budget: 429 + Retry-After, then success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_requests_wait_for_retry_after_and_succeed() {
    let s = sim(SimConfig {
        requests_per_window: 3,
        window: Duration::from_secs(1),
        ..SimConfig::default()
    })
    .await;
    let c = connector(&s, json!({}));
    let ids = s.seed("users", 3);
    s.spend_requests(3);
    assert_eq!(c.fetch_by_ids("users", &ids).await.unwrap().len(), 3);
    assert!(s.stats().throttled >= 1, "the simulator answered 429");
    assert!(
        c.rate_limit().unwrap().throttled_429 >= 1,
        "the limiter counted it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_pages_beyond_ten_thousand_records_are_refused() {
    let s = sim(SimConfig::default()).await;
    let client = revsync_zendesk::client::ZendeskClient::new(
        &params(&s, json!({})),
        Limits::new(6000, Duration::from_secs(60)),
    )
    .unwrap();
    let page = |n: u32| {
        client
            .request(Method::GET, "users")
            .with_query("page", n.to_string())
            .with_query("per_page", "100")
    };
    assert!(client.json(page(100)).await.is_ok());
    match client.json(page(101)).await {
        Err(ConnectorError::Permanent {
            status: Some(400),
            detail,
            ..
        }) => {
            assert!(detail.contains("InvalidPaginationParameter"), "{detail}")
        }
        other => panic!("page 101 must be refused with 400, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_export_status_relations_and_solved_time() {
    let s = sim(SimConfig::default()).await;
    let c = connector(&s, json!({}));
    let user = s.seed("users", 1).remove(0);
    let t = s.seed("tickets", 1).remove(0);
    s.update(
        "tickets",
        &t,
        json!({"status": "solved", "requester_id": user.parse::<u64>().unwrap()}),
    );
    s.advance(61);
    let f = c.fetch("tickets", None).await.unwrap();
    let ch = f.changes.iter().find(|ch| ch.external_id == t).unwrap();
    assert_eq!(ch.fields["status"], json!("solved"));
    assert_eq!(ch.fields["requester_id"], json!(user));
    assert!(ch.fields["solved_at"].is_string(), "{:?}", ch.fields);
    let err = c.push("tickets", &[]).await.unwrap_err();
    assert!(
        matches!(err, ConnectorError::Permanent { .. }),
        "tickets are read-only by default"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_429_bursts_are_absorbed_by_an_export() {
    let s = sim(SimConfig::default()).await;
    let seeded: BTreeSet<String> = s.seed("users", 30).into_iter().collect();
    s.advance(61);
    // Every request is refused until a burst of two was: one export meets both.
    let faults = s.faults().clone();
    faults.set(revsync_sdk::simfault::FaultPlan {
        throttle: 1.0,
        throttle_burst: 2,
        ..Default::default()
    });
    tokio::spawn(async move {
        // The client waits out Retry-After (1 s) before its next attempt.
        while faults.counts().throttled < 2 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        faults.clear();
    });
    let c = connector(&s, json!({}));
    let mut cursor: Option<String> = None;
    let mut seen = BTreeSet::new();
    for _ in 0..100 {
        let f = c.fetch("users", cursor.as_deref()).await.expect("fetch");
        seen.extend(f.changes.into_iter().map(|ch| ch.external_id));
        cursor = f.cursor.or(cursor);
        if !f.more {
            break;
        }
    }
    assert_eq!(seen, seeded);
    assert!(s.faults().counts().throttled >= 2, "no burst was injected");
    assert!(c.rate_limit().unwrap().throttled_429 >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_create_whose_answer_was_cut_or_stalled_leaves_one_ticket() {
    use revsync_sdk::simfault::FaultPlan;
    let s = sim(SimConfig::default()).await;
    // Shorter than the stall: the client gives up on creates that were made.
    let c = connector(&s, json!({"ticket_writes": true, "timeout_ms": 200}));
    let item = PushItem {
        op: PushOp::Create {
            canonical_id: Uuid::now_v7(),
        },
        fields: serde_json::from_value(json!({"subject": "Printer on fire", "status": "open"}))
            .unwrap(),
        version: 1,
    };
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
        s.faults().set(plan);
        let e = c
            .push("tickets", std::slice::from_ref(&item))
            .await
            .expect_err("the answer never arrived whole");
        assert!(e.is_retryable(), "{e:?}");
        // The fault may hit the look-up before the create, or the create itself.
        assert!(
            s.ids("tickets").len() <= 1,
            "the work was done at most once"
        );
    }
    s.faults().clear();
    let r = c
        .push("tickets", std::slice::from_ref(&item))
        .await
        .unwrap();
    assert_eq!(
        s.ids("tickets"),
        vec![r[0].clone().unwrap()],
        "a retried create made a second ticket"
    );
}

/// A ticket made for a record earlier (its answer lost, its idempotency key forgotten) is
/// found by its external id before a create: the create adopts it, updates it and makes
/// no second ticket. So ticket creates need not wait for the export's held-back minute.
/// A deleted ticket with that external id is not adopted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_create_adopts_the_ticket_made_for_that_record() {
    let s = sim(SimConfig::default()).await;
    let c = connector(&s, json!({"ticket_writes": true}));
    assert!(c.creates_match_existing("tickets"));
    let key = Uuid::now_v7();
    let made = s.seed("tickets", 2);
    s.update("tickets", &made[1], json!({"external_id": key.to_string()}));
    let item = |subject: &str| PushItem {
        op: PushOp::Create { canonical_id: key },
        fields: serde_json::from_value(json!({"subject": subject, "status": "open"})).unwrap(),
        version: 2,
    };
    let r = c.push("tickets", &[item("Printer on fire")]).await.unwrap();
    assert_eq!(r[0].as_deref().ok(), Some(made[1].as_str()));
    assert_eq!(s.ids("tickets").len(), 2, "a second ticket was made");
    assert_eq!(
        s.record("tickets", &made[1]).unwrap()["subject"],
        json!("Printer on fire")
    );

    // Once deleted, that ticket is not listed: the create makes a new one.
    let del = PushItem {
        op: PushOp::Delete {
            external_id: made[1].clone(),
        },
        fields: BTreeMap::new(),
        version: 3,
    };
    c.push("tickets", &[del]).await.unwrap();
    let again = c.push("tickets", &[item("Still on fire")]).await.unwrap();
    let new_id = again[0].clone().unwrap();
    assert_ne!(new_id, made[1]);
    assert_eq!(s.ids("tickets").len(), 3);
}

/// A propagated delete: `destroy_many` deactivates users and stamps organizations'
/// `deleted_at`; the export then reports both as deleted, and deleting again is a no-op.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_go_through_destroy_many_and_read_back_as_deleted() {
    let s = sim(SimConfig::default()).await;
    let c = connector(&s, json!({"ticket_writes": true}));
    for object in ["users", "organizations", "tickets"] {
        let ids = s.seed(object, 3);
        let del = |id: &str| PushItem {
            op: PushOp::Delete {
                external_id: id.to_owned(),
            },
            fields: BTreeMap::new(),
            version: 1,
        };
        let r = c.push(object, &[del(&ids[0]), del(&ids[2])]).await.unwrap();
        assert_eq!(
            r.iter()
                .map(|r| r.as_ref().ok().cloned())
                .collect::<Vec<_>>(),
            vec![Some(ids[0].clone()), Some(ids[2].clone())],
            "{object}: {r:?}"
        );
        // Retried: the same ids again change nothing and still succeed.
        let again = c.push(object, &[del(&ids[0])]).await.unwrap();
        assert!(again[0].is_ok(), "{object}: {again:?}");

        s.advance(61);
        // Deleted tickets are read back from the export, where they carry the status
        // `deleted`; whether `show_many` still lists them is not documented.
        let read = if object == "tickets" {
            c.fetch(object, None).await.unwrap().changes
        } else {
            c.fetch_by_ids(object, &ids).await.unwrap()
        };
        let deleted: BTreeSet<String> = read
            .iter()
            .filter(|ch| ch.deleted)
            .map(|ch| ch.external_id.clone())
            .collect();
        assert_eq!(
            deleted,
            [ids[0].clone(), ids[2].clone()].into_iter().collect(),
            "{object}"
        );
    }
}

/// A ticket batch with a create and a delete, while every job slot stays taken: the
/// delete job cannot start and the batch goes back whole, before the create was sent.
/// Sent first, the create would make a ticket whose answer the error then threw away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_batch_whose_delete_job_cannot_start_creates_nothing() {
    let s = sim(SimConfig::default()).await;
    let c = connector(
        &s,
        json!({"ticket_writes": true, "job_timeout_secs": 1, "job_poll_interval_ms": 100}),
    );
    let old = s.seed("tickets", 1);
    s.occupy_job_slots(30, Duration::from_secs(10));
    let items = [
        PushItem {
            op: PushOp::Create {
                canonical_id: Uuid::now_v7(),
            },
            fields: serde_json::from_value(json!({"subject": "New one", "status": "open"}))
                .unwrap(),
            version: 1,
        },
        PushItem {
            op: PushOp::Delete {
                external_id: old[0].clone(),
            },
            fields: BTreeMap::new(),
            version: 1,
        },
    ];
    let r = c.push("tickets", &items).await;
    assert!(
        matches!(r, Err(ConnectorError::RateLimited { .. })),
        "{r:?}"
    );
    s.advance(61);
    let read = c.fetch("tickets", None).await.unwrap();
    let ids: Vec<&str> = read
        .changes
        .iter()
        .map(|ch| ch.external_id.as_str())
        .collect();
    assert_eq!(ids, vec![old[0].as_str()], "a ticket was created: {ids:?}");
}

/// An update and a delete of one ticket in one batch (an older edit still queued when
/// the delete came): the ticket is deleted and stays deleted, and both items are done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_beside_a_delete_of_the_same_ticket_does_not_revive_it() {
    let s = sim(SimConfig::default()).await;
    let c = connector(&s, json!({"ticket_writes": true}));
    let ids = s.seed("tickets", 1);
    let items = [
        PushItem {
            op: PushOp::Update {
                external_id: ids[0].clone(),
            },
            fields: serde_json::from_value(json!({"subject": "Edited", "status": "open"})).unwrap(),
            version: 2,
        },
        PushItem {
            op: PushOp::Delete {
                external_id: ids[0].clone(),
            },
            fields: BTreeMap::new(),
            version: 3,
        },
    ];
    let r = c.push("tickets", &items).await.unwrap();
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    s.advance(61);
    let read = c.fetch("tickets", None).await.unwrap().changes;
    assert!(
        read.iter().any(|ch| ch.external_id == ids[0] && ch.deleted),
        "the ticket came back: {read:?}"
    );
}

/// The exports never serve the last minute: a user created just before revsync's first
/// read is not in it. Until an answer comes a minute after the first (on the account's
/// clock, its `Date` header), every object's read says it is behind, so nothing is
/// created there that could already exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_is_behind_until_the_held_back_minute_has_passed() {
    let s = sim(SimConfig::default()).await;
    let c = connector(&s, json!({}));
    let old = s.seed("users", 1);
    s.advance(61);
    let fresh = s.seed("users", 1);
    for object in ["users", "organizations", "tickets"] {
        let f = c.fetch(object, None).await.unwrap();
        assert!(!f.more, "{object}");
        assert!(
            f.behind,
            "{object}: the first read cannot see the last minute"
        );
    }
    let f = c.fetch("users", None).await.unwrap();
    let ids: Vec<_> = f.changes.iter().map(|c| c.external_id.clone()).collect();
    assert_eq!(ids, old, "the user made in the last minute is held back");
    assert!(f.behind, "a read seconds later is still behind");

    s.advance(61);
    for object in ["users", "organizations", "tickets"] {
        let f = c.fetch(object, None).await.unwrap();
        assert!(
            !f.behind,
            "{object}: a minute after the first answer, caught up"
        );
        if object == "users" {
            let ids: BTreeSet<_> = f.changes.iter().map(|c| c.external_id.clone()).collect();
            assert!(ids.contains(&fresh[0]), "and the held-back user is served");
        }
    }
}

/// `revsync discover`: built-in attributes as documented, custom fields from the account's
/// definitions read page by page, inactive ones left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_lists_built_in_and_custom_fields_over_several_pages() {
    let s = sim(SimConfig {
        fields_page_max: 2,
        ..SimConfig::default()
    })
    .await;
    let c = connector(&s, json!({}));
    let field = |schema: &revsync_sdk::ObjectSchema, name: &str| {
        schema
            .fields
            .iter()
            .find(|f| f.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no `{name}` in {:?}", schema.fields))
    };
    let before = s.stats().requests;
    let users = c.describe("users").await.unwrap();
    // Four definitions, two a page.
    assert_eq!(s.stats().requests - before, 2, "one request per page");
    assert_eq!(users.name, "users");
    assert!(field(&users, "name").required);
    assert!(field(&users, "id").read_only && field(&users, "created_at").read_only);
    assert_eq!(
        field(&users, "role").options,
        ["end-user", "agent", "admin"]
    );
    assert_eq!(
        field(&users, "organization_id").references,
        ["organizations"]
    );
    let plan = field(&users, "user_fields.plan");
    assert!(plan.custom && !plan.read_only);
    assert_eq!(plan.ty, "dropdown");
    assert_eq!(plan.options, ["free", "pro", "enterprise"]);
    assert_eq!(field(&users, "user_fields.vip").ty, "checkbox");
    assert_eq!(field(&users, "user_fields.renewal").ty, "date");
    assert!(
        !users
            .fields
            .iter()
            .any(|f| f.name == "user_fields.legacy_id"),
        "an inactive field is left out"
    );

    let orgs = c.describe("organizations").await.unwrap();
    assert!(field(&orgs, "name").required);
    assert_eq!(
        field(&orgs, "organization_fields.tier").options,
        ["bronze", "silver", "gold"]
    );
    assert!(!orgs
        .fields
        .iter()
        .any(|f| f.name == "organization_fields.old_region"));

    let tickets = c.describe("tickets").await.unwrap();
    assert!(field(&tickets, "comment.body").required);
    assert_eq!(
        field(&tickets, "priority").options,
        ["low", "normal", "high", "urgent"]
    );
    assert_eq!(field(&tickets, "requester_id").references, ["users"]);
    let product = field(&tickets, "custom_fields.9403");
    assert!(product.custom);
    assert_eq!(product.options, ["product_a", "product_b"]);
    let custom: Vec<&str> = tickets
        .fields
        .iter()
        .filter(|f| f.custom)
        .map(|f| f.name.as_str())
        .collect();
    // Subject, description and status are Zendesk's own; 9405 is inactive.
    assert_eq!(custom, ["custom_fields.9403", "custom_fields.9404"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_of_an_object_zendesk_has_not_is_a_clear_error_without_a_request() {
    let s = sim(SimConfig::default()).await;
    let c = connector(&s, json!({}));
    let before = s.stats().requests;
    match c.describe("groups").await {
        Err(ConnectorError::Permanent { detail, .. }) => {
            assert!(detail.contains("`groups`"), "{detail}");
            assert!(detail.contains("users, organizations, tickets"), "{detail}");
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_eq!(s.stats().requests, before);
}

/// Definitions are behind the same gate as every route: credentials, then injected faults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_waits_out_a_429_and_bad_credentials_fail_as_auth() {
    let s = sim(SimConfig::default()).await;
    let faults = s.faults().clone();
    faults.set(revsync_sdk::simfault::FaultPlan {
        throttle: 1.0,
        throttle_burst: 1,
        ..Default::default()
    });
    tokio::spawn(async move {
        while faults.counts().throttled < 1 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        faults.clear();
    });
    let c = connector(&s, json!({}));
    let users = c.describe("users").await.unwrap();
    assert!(users.fields.iter().any(|f| f.name == "user_fields.plan"));
    assert!(s.faults().counts().throttled >= 1, "no 429 was injected");

    let wrong = connector(
        &s,
        json!({"auth": {"method": "api_token", "email": "ops@acme.example", "token": "wrong"}}),
    );
    assert!(matches!(
        wrong.describe("users").await,
        Err(ConnectorError::Auth(_))
    ));
}

/// The simulator pages definitions the older way too: `page`/`per_page` and `next_page`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_definitions_page_by_offset_and_by_cursor() {
    let s = sim(SimConfig::default()).await;
    let client = revsync_zendesk::client::ZendeskClient::new(
        &params(&s, json!({})),
        Limits::new(6000, Duration::from_secs(60)),
    )
    .unwrap();
    let offset = |n: u32| {
        client
            .request(Method::GET, "user_fields")
            .with_query("page", n.to_string())
            .with_query("per_page", "3")
    };
    let first = client.json(offset(1)).await.unwrap();
    assert_eq!(first["user_fields"].as_array().unwrap().len(), 3);
    assert_eq!(first["count"], 4);
    assert!(first["next_page"].as_str().unwrap().contains("page=2"));
    let last = client.json(offset(2)).await.unwrap();
    assert_eq!(last["user_fields"][0]["key"], "renewal");
    assert!(last["next_page"].is_null());

    let cursor = |after: Option<&str>| {
        let r = client
            .request(Method::GET, "ticket_fields")
            .with_query("page[size]", "4");
        match after {
            Some(a) => r.with_query("page[after]", a),
            None => r,
        }
    };
    let first = client.json(cursor(None)).await.unwrap();
    assert_eq!(first["meta"]["has_more"], true);
    assert!(first["links"]["next"]
        .as_str()
        .unwrap()
        .contains("page[after]="));
    let after = first["meta"]["after_cursor"].as_str().unwrap().to_owned();
    let last = client.json(cursor(Some(&after))).await.unwrap();
    assert_eq!(last["ticket_fields"].as_array().unwrap().len(), 2);
    assert_eq!(last["meta"]["has_more"], false);
    assert!(last["links"]["next"].is_null());
}

/// A mapped custom field is read by its dotted path and written back nested: user and
/// organization fields by key, ticket fields by id, other keys of the object untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapped_custom_fields_round_trip_through_the_simulator() {
    let s = sim(SimConfig::default()).await;
    let c = connector(&s, json!({"ticket_writes": true}));
    let create = |fields: Value| PushItem {
        op: PushOp::Create {
            canonical_id: Uuid::now_v7(),
        },
        fields: serde_json::from_value(fields).unwrap(),
        version: 1,
    };
    let update = |id: &str, fields: Value| PushItem {
        op: PushOp::Update {
            external_id: id.to_owned(),
        },
        fields: serde_json::from_value(fields).unwrap(),
        version: 2,
    };

    let made = c
        .push(
            "users",
            &[create(
                json!({"name": "Ada", "email": "ada@example.com", "user_fields.plan": "pro"}),
            )],
        )
        .await
        .unwrap();
    let id = made[0].clone().unwrap();
    let stored = s.record("users", &id).unwrap();
    assert_eq!(
        stored["user_fields"],
        json!({"plan": "pro", "vip": null, "renewal": null})
    );
    c.push("users", &[update(&id, json!({"user_fields.vip": true}))])
        .await
        .unwrap()[0]
        .clone()
        .unwrap();
    let read = c.fetch_by_ids("users", &[id]).await.unwrap();
    assert_eq!(read[0].fields["user_fields"]["plan"], json!("pro"));
    assert_eq!(read[0].fields["user_fields"]["vip"], json!(true));

    let org = c
        .push(
            "organizations",
            &[create(
                json!({"name": "Acme Custom", "organization_fields.tier": "gold"}),
            )],
        )
        .await
        .unwrap()[0]
        .clone()
        .unwrap();
    let read = c.fetch_by_ids("organizations", &[org]).await.unwrap();
    assert_eq!(read[0].fields["organization_fields"]["tier"], json!("gold"));
    assert_eq!(
        read[0].fields["organization_fields"]["partner"],
        Value::Null
    );

    let ticket = c
        .push(
            "tickets",
            &[create(
                json!({"subject": "Broken", "comment.body": "It broke", "custom_fields.9403": "product_b"}),
            )],
        )
        .await
        .unwrap()[0]
        .clone()
        .unwrap();
    let stored = s.record("tickets", &ticket).unwrap();
    assert_eq!(stored["description"], json!("It broke"));
    assert_eq!(
        stored["custom_fields"],
        json!([{"id": 9403, "value": "product_b"}, {"id": 9404, "value": null}])
    );
    c.push(
        "tickets",
        &[update(&ticket, json!({"custom_fields.9404": true}))],
    )
    .await
    .unwrap()[0]
        .clone()
        .unwrap();
    let read = c.fetch_by_ids("tickets", &[ticket]).await.unwrap();
    assert_eq!(read[0].fields["custom_fields.9403"], json!("product_b"));
    assert_eq!(read[0].fields["custom_fields.9404"], json!(true));
}

/// An organization whose name Zendesk already holds is that company's copy (names are
/// unique): a create finds it by name and adopts it, sets our external id and answers its
/// id, so the held-back minute of the export cannot make a dead letter or a second copy.
/// One that another record already claimed (its own external id) stays a refusal.
#[tokio::test]
async fn an_organization_create_adopts_the_unclaimed_organization_of_that_name() {
    let s = sim(SimConfig::default()).await;
    let c = connector(&s, json!({}));
    assert!(c.creates_match_existing("organizations") && c.creates_match_existing("users"));
    let ids = s.seed("organizations", 2);
    let (free, claimed) = (&ids[0], &ids[1]);
    s.update(
        "organizations",
        claimed,
        json!({"external_id": "someone-else"}),
    );
    let name = |id: &str| s.record("organizations", id).unwrap()["name"].clone();
    let ours = Uuid::now_v7();
    let create = |name: Value, canonical_id| PushItem {
        op: PushOp::Create { canonical_id },
        fields: serde_json::from_value(json!({ "name": name, "notes": "from revsync" })).unwrap(),
        version: 1,
    };
    let items = vec![
        create(name(free), ours),
        create(name(claimed), Uuid::now_v7()),
    ];
    let r = c.push("organizations", &items).await.unwrap();
    assert_eq!(
        r[0].as_ref().unwrap(),
        free,
        "adopted, not a second organization"
    );
    let adopted = s.record("organizations", free).unwrap();
    assert_eq!(adopted["external_id"], json!(ours.to_string()));
    assert_eq!(adopted["notes"], json!("from revsync"));
    match &r[1] {
        Err(ConnectorError::Permanent { detail, .. }) => {
            assert!(detail.contains("DuplicateValue"), "{detail}")
        }
        other => panic!("a claimed name stays refused, got {other:?}"),
    }
    assert_eq!(s.ids("organizations").len(), 2, "no organization was made");
}
