//! Poison items never stall anything: the daemon (in-process `app::serve`) with three
//! "Acme" systems on loopback, one of which refuses some records for ever and cannot read
//! one record a webhook points at. The other connectors' pushes and webhooks go on within
//! one poll interval; items out of attempts end in the dead-letter queue, inbound too.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "support/acme.rs"]
mod acme;

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use acme::{AcmeType, Fake};
use revsync::registry::Registry;
use serde_json::{json, Value};

const ADMIN: &str = "poison-test-admin";
const POLL_SECS: u64 = 2;

struct Daemon {
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

fn registry() -> Registry {
    Registry::with(vec![Box::new(AcmeType)])
}

/// Three acme connectors (`acme-a`, `acme-b`, `acme-c`) with the given `retry:` section.
async fn start(fakes: [&Fake; 3], retry: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), fakes, retry);
    let cfg = revsync::config::load(
        dir.path(),
        &registry(),
        &std::collections::BTreeMap::<String, String>::new(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(revsync::app::serve(cfg, registry(), listener, async move {
        let _ = rx.await;
    }));
    Daemon {
        base,
        stop: Some(tx),
        done,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

fn write_config(dir: &Path, fakes: [&Fake; 3], retry: &str) {
    std::fs::create_dir_all(dir.join("connectors")).unwrap();
    std::fs::write(
        dir.join("revsync.yaml"),
        format!(
            "version: 1\nserver:\n  admin_token: {ADMIN}\nstore:\n  path: {}\nshutdown_timeout_secs: 5\nretry:\n{retry}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    for (id, fake) in ["acme-a", "acme-b", "acme-c"].into_iter().zip(fakes) {
        std::fs::write(
            dir.join(format!("connectors/{id}.yaml")),
            format!(
                "version: 1\nid: {id}\ntype: acme\nparams:\n  base_url: {}\n  token: acme-token\n  webhook_token: hook-secret\npoll:\n  interval_secs: {POLL_SECS}\n  jitter_pct: 0\nobjects:\n  contacts:\n    kind: person\n    fields: {{ email: email, name: {{ to: full_name }} }}\n",
                fake.url()
            ),
        )
        .unwrap();
    }
}

impl Daemon {
    async fn connector(&self, id: &str) -> Value {
        let s: Value = self
            .http
            .get(format!("{}/status", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        s["connectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap()
    }

    async fn webhook(&self, connector: &str, events: Value) {
        let r = self
            .http
            .post(format!("{}/webhooks/{connector}", self.base))
            .header("x-acme-token", "hook-secret")
            .json(&json!({ "events": events }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
    }

    async fn has_record(&self, email: &str) -> bool {
        let r = self
            .http
            .get(format!("{}/records/{email}", self.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        r.status() == 200
    }

    async fn dlq(&self, connector: &str) -> Vec<Value> {
        let v: Value = self
            .http
            .get(format!("{}/admin/dlq?connector={connector}", self.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["dead_letters"].as_array().cloned().unwrap_or_default()
    }

    /// `POST /admin/dlq/replay {inbound: id}`, which must succeed.
    async fn replay_inbound(&self, id: &Value) {
        let r = self
            .http
            .post(format!("{}/admin/dlq/replay", self.base))
            .bearer_auth(ADMIN)
            .json(&json!({ "inbound": id }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.done)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

/// Poll `check` until it holds (bounded: tests never hang).
async fn eventually<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn has_email(fake: &Fake, email: &str) -> bool {
    fake.holds_email(email)
}

/// Three systems and the daemon: `n` poison records seeded in A that B refuses for ever,
/// and a record B cannot read (id 4040).
async fn poisoned(n: usize, retry: &str) -> ([Fake; 3], Daemon) {
    let (a, b, c) = (
        Fake::start().await,
        Fake::start().await,
        Fake::start().await,
    );
    for i in 0..n {
        let email = format!("poison-{i}@acme.test");
        a.seed(&email, &format!("Poison {i}"));
        b.state.lock().unwrap().poison.insert(email);
    }
    b.state
        .lock()
        .unwrap()
        .broken_reads
        .insert("4040".to_owned());
    let d = start([&a, &b, &c], retry).await;
    ([a, b, c], d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_items_and_a_stuck_webhook_group_delay_no_one_else() {
    // Attempts enough that nothing is dead-lettered during the test: the poison stays.
    let ([a, b, c], d) = poisoned(
        500,
        "  max_attempts: 1000\n  min_delay_ms: 1000\n  max_delay_secs: 5\n",
    )
    .await;
    eventually("the 500 records reached C", 60, || async {
        c.count() == 500
    })
    .await;
    eventually("B refused its poison", 30, || async {
        d.connector("acme-b").await["errors"]["count"]
            .as_u64()
            .unwrap_or(0)
            >= 500
    })
    .await;
    // A webhook group that cannot be applied: B cannot read the record it names.
    d.webhook("acme-b", json!([{"id": "stuck-1", "hint": "4040"}]))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Another connector's webhook goes through at once.
    let hooked = json!({"id": "7001", "email": "hooked@acme.test", "name": "Hooked", "updated": 1_800_000_000});
    let posted = Instant::now();
    d.webhook("acme-c", json!([{"id": "evt-c-1", "contact": hooked}]))
        .await;
    eventually("C's webhook was applied", 20, || async {
        d.has_record("hooked@acme.test").await
    })
    .await;
    let webhook_in = posted.elapsed();
    // Within the stuck connector, another record's events go on; a later event of the
    // stuck record waits behind it, so that record keeps its order.
    let same =
        json!({"id": "4040", "email": "held@acme.test", "name": "Held", "updated": 1_800_000_001});
    let other = json!({"id": "5050", "email": "other@acme.test", "name": "Other", "updated": 1_800_000_001});
    let posted_b = Instant::now();
    d.webhook(
        "acme-b",
        json!([{"id": "evt-b-1", "contact": same}, {"id": "evt-b-2", "contact": other}]),
    )
    .await;
    eventually("B's event for another record was applied", 20, || async {
        d.has_record("other@acme.test").await
    })
    .await;
    let other_in = posted_b.elapsed();
    assert!(!d.has_record("held@acme.test").await);
    eventually("the webhook's record reached A and B", 20, || async {
        has_email(&a, "hooked@acme.test") && has_email(&b, "hooked@acme.test")
    })
    .await;
    let hooked_out = posted.elapsed();
    // And so does a new record, to every system, past B's 500 failing entries.
    let seeded = Instant::now();
    a.seed("fresh@acme.test", "Fresh Record");
    eventually("the fresh record reached C", 20, || async {
        has_email(&c, "fresh@acme.test")
    })
    .await;
    let to_c = seeded.elapsed();
    eventually("the fresh record reached B past the poison", 20, || async {
        has_email(&b, "fresh@acme.test")
    })
    .await;
    let to_b = seeded.elapsed();
    eprintln!(
        "webhook applied in {webhook_in:?}, pushed out in {hooked_out:?}; B's other record in {other_in:?}; a new record reached C in {to_c:?}, B in {to_b:?}"
    );
    let interval = Duration::from_secs(POLL_SECS);
    assert!(webhook_in <= interval, "webhook waited {webhook_in:?}");
    assert!(
        other_in <= interval,
        "B's other webhook waited {other_in:?}"
    );
    // One poll interval for A to read it, and at most one more.
    assert!(to_c <= 2 * interval, "push to C waited {to_c:?}");
    assert!(to_b <= 2 * interval, "push to B waited {to_b:?}");
    assert!(
        hooked_out <= interval,
        "webhook record push waited {hooked_out:?}"
    );
    // The poison is still there, still failing, and nothing was dead-lettered yet.
    assert!(!has_email(&b, "poison-0@acme.test"));
    assert_eq!(d.connector("acme-b").await["dead_letters"], 0);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_out_of_attempts_end_in_the_dead_letter_queue_inbound_too() {
    let ([_a, b, _c], d) = poisoned(
        20,
        "  max_attempts: 3\n  min_delay_ms: 100\n  max_delay_secs: 1\n",
    )
    .await;
    eventually("B's 20 poison pushes were dead-lettered", 60, || async {
        d.connector("acme-b").await["dead_letters"] == 20
    })
    .await;
    let letters = d.dlq("acme-b").await;
    let outbound: Vec<&Value> = letters
        .iter()
        .filter(|l| l["direction"] == "outbound")
        .collect();
    assert_eq!(outbound.len(), 20, "{letters:?}");
    assert_eq!(outbound[0]["class"], "transient");
    assert!(
        outbound[0]["detail"]
            .as_str()
            .unwrap()
            .contains("gave up after 3 attempts"),
        "{:?}",
        outbound[0]
    );
    let writes = b.writes();

    d.webhook("acme-b", json!([{"id": "stuck-1", "hint": "4040"}]))
        .await;
    eventually("the stuck webhook event was dead-lettered", 30, || async {
        d.connector("acme-b").await["inbound_dead_letters"] == 1
    })
    .await;
    let letters = d.dlq("acme-b").await;
    let inbound: Vec<&Value> = letters
        .iter()
        .filter(|l| l["direction"] == "inbound")
        .collect();
    assert_eq!(inbound.len(), 1, "{letters:?}");
    assert_eq!(inbound[0]["external_id"], "4040");
    assert_eq!(inbound[0]["source"], "webhook");
    assert!(
        inbound[0]["error"].as_str().unwrap().contains("503"),
        "{:?}",
        inbound[0]
    );

    // The system can read it now: a replay reads it again by id and applies it.
    {
        let mut s = b.state.lock().unwrap();
        s.broken_reads.clear();
        s.contacts.insert(
            "4040".into(),
            acme::Contact {
                id: "4040".into(),
                email: "late@acme.test".into(),
                name: "Late Read".into(),
                updated: 1_800_000_000,
                idempotency_key: None,
            },
        );
    }
    d.replay_inbound(&inbound[0]["id"]).await;
    eventually("the replayed event was applied", 20, || async {
        d.has_record("late@acme.test").await
    })
    .await;
    eventually("the inbound dead letter is gone", 10, || async {
        d.connector("acme-b").await["inbound_dead_letters"] == 0
    })
    .await;
    // Nothing more was sent for the dead-lettered pushes.
    assert!(
        b.writes() <= writes + 2,
        "{} writes after {writes}",
        b.writes()
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_record_is_kept_with_its_raw_body_and_replayed_by_id() {
    let ([a, _b, c], d) = poisoned(0, "  max_attempts: 3\n").await;
    let bad = a.seed("undecodable@acme.test", "Garbled Record");
    a.seed("fine@acme.test", "Fine Record");
    eventually("the readable record went on", 30, || async {
        has_email(&c, "fine@acme.test")
    })
    .await;
    eventually("the unreadable one is counted", 10, || async {
        d.connector("acme-a").await["inbound_dead_letters"] == 1
    })
    .await;
    let letters = d.dlq("acme-a").await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter["direction"], "inbound");
    assert_eq!(letter["source"], "poll");
    assert_eq!(letter["object"], "contacts");
    assert_eq!(letter["external_id"], bad.as_str());
    assert_eq!(letter["error"], "undecodable contact");
    let raw: Value = serde_json::from_str(letter["raw"].as_str().unwrap()).unwrap();
    assert_eq!(raw["email"], "undecodable@acme.test");
    assert!(!d.has_record("undecodable@acme.test").await);

    // Mended upstream without a newer time (the poll would not see it again): a replay
    // reads it by id through the connector.
    a.state
        .lock()
        .unwrap()
        .contacts
        .get_mut(&bad)
        .unwrap()
        .email = "mended@acme.test".into();
    d.replay_inbound(&letter["id"]).await;
    eventually("the replayed record was read and applied", 20, || async {
        d.has_record("mended@acme.test").await
    })
    .await;
    assert_eq!(d.connector("acme-a").await["inbound_dead_letters"], 0);
    assert!(d.dlq("acme-a").await.is_empty());
    d.stop().await;
}

/// Alerts (issue 26): a connector whose authentication fails is announced to the
/// configured webhook, Slack-style, and the URL (a secret) is never in `/status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_that_fails_authentication_is_announced_to_the_alert_webhook() {
    use axum::{extract::State, routing::post, Json, Router};
    type Heard = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;
    let heard: Heard = Default::default();
    let app = Router::new()
        .route(
            "/hook/secret-part",
            post(|State(h): State<Heard>, Json(v): Json<Value>| async move {
                h.lock().unwrap().push(v);
            }),
        )
        .with_state(heard.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook/secret-part", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (a, b, c) = (
        Fake::start().await,
        Fake::start().await,
        Fake::start().await,
    );
    a.seed("alert@corp.test", "Alert Me");
    b.script(acme::Scripted::Unauthorized);
    let alerts =
        format!("  max_attempts: 20\nalerts:\n  webhook_url: {hook}\n  check_interval_secs: 1\n");
    let d = start([&a, &b, &c], &alerts).await;
    eventually("the alert webhook heard of acme-b", 30, || async {
        heard.lock().unwrap().iter().any(|v| {
            v["text"]
                .as_str()
                .is_some_and(|t| t.contains("`acme-b`") && t.contains("authentication failed"))
        })
    })
    .await;
    let status = d
        .http
        .get(format!("{}/status", d.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!status.contains("secret-part"), "{status}");
    d.stop().await;
}
