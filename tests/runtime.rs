//! The sync runtime end to end: the daemon (in-process `app::serve`) with two "Acme"
//! systems on loopback. Reads flow in, pushes flow out, and each failure class does what
//! an operator expects: 429 waits, 5xx retries, 400 dead-letters, 401 pauses, a lost
//! create response never makes a second record, webhooks are durable and deduplicated.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "support/acme.rs"]
mod acme;

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use acme::{AcmeType, Fake, Scripted};
use revsync::registry::Registry;
use serde_json::{json, Value};

const ADMIN: &str = "runtime-test-admin";

struct Daemon {
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start(a: &Fake, b: &Fake) -> Daemon {
    start_with(a, b, "").await
}

/// `b_object` is added to acme-b's `contacts` object (`direction: out`, ...).
async fn start_with(a: &Fake, b: &Fake, b_object: &str) -> Daemon {
    start_named(a, b, "acme-b", b_object).await
}

/// As [`start_with`], the second connector called `b_id` (a failpoint armed for it touches
/// no other test of this binary).
async fn start_named(a: &Fake, b: &Fake, b_id: &str, b_object: &str) -> Daemon {
    start_params(a, b, b_id, b_object, "").await
}

/// As [`start_named`], with `b_params` (indented YAML lines) added to acme-b's `params`.
async fn start_params(a: &Fake, b: &Fake, b_id: &str, b_object: &str, b_params: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), a, b, b_id, b_object, b_params);
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
        _dir: dir,
    }
}

fn registry() -> Registry {
    Registry::with(vec![Box::new(AcmeType)])
}

fn write_config(dir: &Path, a: &Fake, b: &Fake, b_id: &str, b_object: &str, b_params: &str) {
    std::fs::create_dir_all(dir.join("connectors")).unwrap();
    std::fs::write(
        dir.join("revsync.yaml"),
        format!("version: 1\nserver:\n  admin_token: {ADMIN}\n  max_body_bytes: 4096\nstore:\n  path: {}\nshutdown_timeout_secs: 5\n", dir.join("data").display()),
    )
    .unwrap();
    for (id, fake, extra, params) in [("acme-a", a, "", ""), (b_id, b, b_object, b_params)] {
        std::fs::write(
            dir.join(format!("connectors/{id}.yaml")),
            format!(
                "version: 1\nid: {id}\ntype: acme\nparams:\n  base_url: {}\n  token: acme-token\n  webhook_token: hook-secret\n{params}poll:\n  interval_secs: 1\n  jitter_pct: 0\nobjects:\n  contacts:\n    kind: person\n    fields: {{ email: email, name: {{ to: full_name }} }}\n{extra}",
                fake.url()
            ),
        )
        .unwrap();
    }
}

impl Daemon {
    async fn status(&self) -> Value {
        reqwest::get(format!("{}/status", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn connector(&self, id: &str) -> Value {
        let s = self.status().await;
        s["connectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap()
    }

    /// `GET path` on the admin API, with the token.
    async fn admin_get(&self, path: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
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
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_flow_both_ways_and_writes_stop_growing() {
    let (a, b) = (Fake::start().await, Fake::start().await);
    for i in 0..25 {
        a.seed(&format!("user{i}@corp.test"), &format!("User Number{i}"));
    }
    b.seed("solo@corp.test", "Only InB");
    let d = start(&a, &b).await;
    eventually("25 creates in B and 1 in A", 20, || async {
        b.count() == 26 && a.count() == 26
    })
    .await;
    // Let both sides poll each other's writes back: no further writes may happen.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (wa, wb) = (a.writes(), b.writes());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        (a.writes(), b.writes()),
        (wa, wb),
        "writes kept growing: ping-pong"
    );
    assert_eq!(b.state.lock().unwrap().creates, 25);
    assert_eq!(a.state.lock().unwrap().creates, 1);
    let sb = d.connector("acme-b").await;
    assert_eq!(sb["records_out"], 25);
    assert_eq!(sb["dead_letters"], 0);
    assert!(d.connector("acme-a").await["records_in"].as_u64().unwrap() >= 25);
    let name = b
        .state
        .lock()
        .unwrap()
        .contacts
        .values()
        .find(|c| c.email == "user7@corp.test")
        .map(|c| c.name.clone());
    assert_eq!(name.as_deref(), Some("User Number7"));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_waited_out_then_the_push_succeeds() {
    let (a, b) = (Fake::start().await, Fake::start().await);
    a.seed("rate@corp.test", "Rate Limited");
    b.script(Scripted::TooMany {
        retry_after_secs: 2,
    });
    let d = start(&a, &b).await;
    eventually("the create reached B", 20, || async { b.count() == 1 }).await;
    let writes = b.state.lock().unwrap().writes.clone();
    assert_eq!(writes.len(), 2, "one refused, one accepted");
    eventually("the 429 shows on /status", 10, || async {
        d.connector("acme-b").await["rate_limit"]["throttled"] == 1
    })
    .await;
    let metrics = reqwest::get(format!("{}/metrics", d.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"revsync_connector_rate_limited_total{connector="acme-b"} 1"#),
        "{metrics}"
    );
    assert!(
        writes[1] - writes[0] >= Duration::from_secs(2),
        "retried after {:?}, before Retry-After",
        writes[1] - writes[0]
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_they_pass() {
    let (a, b) = (Fake::start().await, Fake::start().await);
    a.seed("flaky@corp.test", "Flaky Server");
    b.script(Scripted::ServerError);
    b.script(Scripted::ServerError);
    let d = start(&a, &b).await;
    eventually("the create reached B", 20, || async { b.count() == 1 }).await;
    assert_eq!(b.writes(), 3);
    assert_eq!(d.connector("acme-b").await["dead_letters"], 0);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_becomes_one_dead_letter_with_the_response() {
    let (a, b) = (Fake::start().await, Fake::start().await);
    a.seed("invalid@corp.test", "Bad Record");
    b.script(Scripted::BadRequest("property name is required"));
    let d = start(&a, &b).await;
    eventually("a dead letter on /status", 20, || async {
        d.connector("acme-b").await["dead_letters"] == 1
    })
    .await;
    assert_eq!(b.count(), 0);
    assert_eq!(b.writes(), 1, "a permanent error is not retried");
    let dlq = d.admin_get("/admin/dlq?connector=acme-b").await;
    let letters = dlq["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["status"], 400);
    assert!(
        letters[0]["response"]
            .as_str()
            .unwrap()
            .contains("property name is required"),
        "{dlq}"
    );
    assert!(letters[0]["request"]
        .as_str()
        .unwrap()
        .contains("invalid@corp.test"));
    // Replay: the system accepts it now, and the dead letter is gone.
    let seq = letters[0]["seq"].as_u64().unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/admin/dlq/replay", d.base))
        .bearer_auth(ADMIN)
        .json(&json!({"connector": "acme-b", "seq": seq}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually("the replayed create reached B", 20, || async {
        b.count() == 1
    })
    .await;
    eventually("the dead letter is gone", 10, || async {
        d.connector("acme-b").await["dead_letters"] == 0
    })
    .await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_pauses_the_connector_without_dead_letters() {
    let (a, b) = (Fake::start().await, Fake::start().await);
    a.seed("auth@corp.test", "Auth Fails");
    b.script(Scripted::Unauthorized);
    let d = start(&a, &b).await;
    eventually("acme-b shows auth_failed", 20, || async {
        d.connector("acme-b").await["state"] == "auth_failed"
    })
    .await;
    // Outbox figures are refreshed every 2 s.
    eventually("the push waits in the outbox", 10, || async {
        d.connector("acme-b").await["outbox_depth"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    })
    .await;
    let s = d.connector("acme-b").await;
    assert_eq!(s["dead_letters"], 0);
    assert_eq!(
        s["state"], "auth_failed",
        "reads still work; the connector is still shown paused: {s}"
    );
    assert!(
        s["errors"]["last_message"]
            .as_str()
            .unwrap()
            .contains("401"),
        "{s}"
    );
    assert_eq!(b.writes(), 1, "no push is attempted while paused");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_answer_was_lost_is_not_duplicated() {
    let (a, b) = (Fake::start().await, Fake::start().await);
    a.seed("once@corp.test", "Only Once");
    b.script(Scripted::ApplyThenFail);
    let d = start(&a, &b).await;
    eventually("the create was retried", 20, || async { b.writes() >= 2 }).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(b.count(), 1, "the retried create made a second record");
    assert_eq!(b.state.lock().unwrap().creates, 1);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_verified_stored_once_and_applied() {
    let (a, b) = (Fake::start().await, Fake::start().await);
    let d = start(&a, &b).await;
    let http = reqwest::Client::new();
    let post = |conn: &str, token: &str, body: Vec<u8>| {
        let req = http
            .post(format!("{}/webhooks/{conn}", d.base))
            .header("x-acme-token", token)
            .header("content-type", "application/json")
            .body(body);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let event = serde_json::to_vec(&json!({"events": [{"id": "evt-1", "contact": {"id": "9001", "email": "hook@corp.test", "name": "Web Hook", "updated": 1_700_000_500}}]})).unwrap();
    assert_eq!(post("acme-a", "wrong", event.clone()).await.0, 401);
    assert_eq!(
        post("acme-a", "hook-secret", b"{not json".to_vec()).await.0,
        400
    );
    assert_eq!(post("nope", "hook-secret", event.clone()).await.0, 404);
    let big = serde_json::to_vec(&json!({"events": [], "pad": "x".repeat(8000)})).unwrap();
    assert_eq!(post("acme-a", "hook-secret", big).await.0, 413);
    let (status, body) = post("acme-a", "hook-secret", event.clone()).await;
    assert_eq!((status, body["accepted"].as_u64()), (200, Some(1)));
    let (_, body) = post("acme-a", "hook-secret", event).await;
    assert_eq!(body["accepted"], 0, "a redelivered event is stored once");
    eventually("the webhook's contact reached B", 20, || async {
        b.count() == 1
    })
    .await;
    let s = d.connector("acme-a").await;
    assert_eq!(s["webhooks_accepted"], 1);
    assert_eq!(s["webhooks_rejected"], 2);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_connector_is_restarted_and_the_others_carry_on() {
    let (a, b) = (Fake::start().await, Fake::start().await);
    a.seed("panic@acme.test", "Boom Record");
    b.seed("calm@corp.test", "Calm Record");
    let d = start(&a, &b).await;
    eventually("acme-a restarted", 20, || async {
        d.connector("acme-a").await["restarts"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    })
    .await;
    // B carries on reading; pushes into A wait for A's first complete read in this run,
    // which its panics prevent (creating there could duplicate a record A already holds,
    // updating could overwrite an edit made there while revsync was down).
    eventually("B read its record regardless", 20, || async {
        d.connector("acme-b").await["records_in"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    })
    .await;
    eventually("A shows why pushes wait", 20, || async {
        d.connector("acme-a").await["note"]
            .as_str()
            .is_some_and(|n| n.contains("wait for this run's first read"))
    })
    .await;
    assert_eq!(
        a.count(),
        1,
        "nothing was created in A before it could be read"
    );
    let ready = reqwest::get(format!("{}/readyz", d.base)).await.unwrap();
    assert_eq!(ready.status(), 200);
    d.stop().await;
}

/// The operator CLI against a running daemon: only `revsync.yaml` is needed to reach it.
fn cli(d: &Daemon, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let addr = d.base.trim_start_matches("http://");
    std::fs::write(
        dir.path().join("revsync.yaml"),
        format!("version: 1\nserver:\n  listen: {addr}\n  admin_token: {ADMIN}\n"),
    )
    .unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_revsync"))
        .args(args)
        .arg("--config")
        .arg(dir.path())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_rereads_everything_and_the_cli_reports_it() {
    let (a, b) = (Fake::start().await, Fake::start().await);
    for i in 0..15 {
        a.seed(&format!("re{i}@corp.test"), &format!("Re Read{i}"));
    }
    // The first batch (10 records) is refused whole: 10 dead letters, the other 5 pass.
    b.script(Scripted::BadRequest("name too long"));
    let d = start(&a, &b).await;
    eventually("initial sync", 20, || async { b.count() == 5 }).await;
    let before = d.connector("acme-a").await["records_in"].as_u64().unwrap();

    let out = tokio::task::spawn_blocking({
        let base = d.base.clone();
        let dd = Daemon {
            base,
            stop: None,
            done: tokio::spawn(async { Ok(()) }),
            _dir: tempfile::tempdir().unwrap(),
        };
        move || {
            let r = cli(&dd, &["resync", "acme-a", "--object", "contacts"]);
            let s = cli(&dd, &["status"]);
            let l = cli(&dd, &["dlq", "list"]);
            (r, s, l)
        }
    })
    .await
    .unwrap();
    let (resync, status, dlq) = out;
    assert_eq!(
        resync.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&resync.stderr)
    );
    // Piped, not a terminal: plain lines, one per object and a total (issue 26).
    let said = String::from_utf8_lossy(&resync.stdout);
    assert!(
        said.contains("acme-a contacts: 15 records in")
            && said.contains("resync of acme-a complete in")
            && said.contains("15 records in 1 objects"),
        "{said}"
    );
    let after = d.connector("acme-a").await;
    assert!(
        after["records_in"].as_u64().unwrap() >= before + 15,
        "{after}"
    );
    assert_eq!(after["resync"]["done"], true);
    assert_eq!(after["resync"]["records"], 15);
    assert_eq!(b.count(), 5, "a re-read changes nothing downstream");

    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        table.contains("acme-a") && table.contains("acme-b") && table.contains("CONNECTOR"),
        "{table}"
    );
    let letters = String::from_utf8_lossy(&dlq.stdout);
    assert!(
        letters.contains("acme-b:")
            && letters.contains("name too long")
            && letters.contains("status 400"),
        "{letters}"
    );
    d.stop().await;
}

/// A system that is slow to read must not get creates for records it already holds: they
/// wait for its first complete read, which links its copies instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_wait_for_the_first_complete_read_of_the_target() {
    let (a, b) = (Fake::start().await, Fake::start().await);
    for i in 0..12 {
        a.seed(&format!("both{i}@corp.test"), &format!("Both Sides{i}"));
        b.seed(&format!("both{i}@corp.test"), &format!("Both Sides{i}"));
    }
    a.seed("only-a@corp.test", "Only InA");
    b.state.lock().unwrap().list_delay_ms = 700;
    let d = start(&a, &b).await;
    let has_only_a = || {
        b.state
            .lock()
            .unwrap()
            .contacts
            .values()
            .any(|c| c.email == "only-a@corp.test")
    };
    eventually("the record only A had reached B", 30, || async {
        has_only_a()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(b.count(), 13, "a create duplicated a record B already held");
    assert_eq!(b.state.lock().unwrap().creates, 1);
    assert_eq!(
        a.state.lock().unwrap().creates,
        0,
        "A already held all of B's records"
    );
    d.stop().await;
}

/// While one system's first read cannot complete, creates wait everywhere, but updates
/// queued behind a hundred held creates still go out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_creates_do_not_hold_back_the_updates_queued_behind_them() {
    let (a, b) = (Fake::start().await, Fake::start().await);
    a.seed("shared@corp.test", "Old Name");
    b.state.lock().unwrap().clock += 1000;
    for i in 0..100 {
        b.seed(&format!("b-only{i}@corp.test"), &format!("Only InB{i}"));
    }
    b.seed("shared@corp.test", "New Name");
    for i in 0..15 {
        b.seed(&format!("b-tail{i}@corp.test"), &format!("Tail InB{i}"));
    }
    // Eleven pages of ten: the hundred B-only records, then `shared`; then B is down.
    b.state.lock().unwrap().list_pages_left = Some(11);
    let d = start(&a, &b).await;
    let renamed = || {
        a.state
            .lock()
            .unwrap()
            .contacts
            .values()
            .any(|c| c.email == "shared@corp.test" && c.name == "New Name")
    };
    eventually(
        "the update queued behind the held creates reached A",
        20,
        || async { renamed() },
    )
    .await;
    assert_eq!(
        a.state.lock().unwrap().creates,
        0,
        "creates must wait for B"
    );
    let note = d.connector("acme-a").await["note"].clone();
    assert_eq!(
        note, "creates wait for the first complete read of acme-b/contacts",
        "{note}"
    );
    d.stop().await;
}

/// A system that holds its newest changes back (Zendesk's exports keep the last minute)
/// may hold a copy revsync has not seen: creates there wait until it serves them, unless
/// the create itself finds that copy (an upsert on the email). Updates never wait: each
/// copy is read by id before it is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_holding_changes_back_holds_creates_only_where_a_create_could_duplicate() {
    for upserts in [false, true] {
        let (a, b) = (Fake::start().await, Fake::start().await);
        b.seed("shared@corp.test", "Old Name");
        b.state.lock().unwrap().holds_back = true;
        a.state.lock().unwrap().clock += 1000;
        a.seed("shared@corp.test", "New Name");
        a.seed("a-only@corp.test", "Only In A");
        let params = if upserts {
            "  creates_match_existing: true\n"
        } else {
            ""
        };
        let d = start_params(&a, &b, "acme-b", "", params).await;
        let in_b = |name: &str| {
            b.state
                .lock()
                .unwrap()
                .contacts
                .values()
                .any(|c| c.name == name)
        };
        eventually(
            "the update reached B while it holds changes back",
            20,
            || async { in_b("New Name") },
        )
        .await;
        if upserts {
            eventually(
                "the create reached B: it finds any copy itself",
                20,
                || async { in_b("Only In A") },
            )
            .await;
        } else {
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(b.state.lock().unwrap().creates, 0, "creates must wait");
            let note = d.connector("acme-b").await["note"].clone();
            assert_eq!(
                note,
                "creates wait for the first complete read of acme-b/contacts (changes held back)",
            );
            b.state.lock().unwrap().holds_back = false;
            eventually(
                "the create reached B once it served everything",
                20,
                || async { in_b("Only In A") },
            )
            .await;
        }
        assert_eq!(
            b.state.lock().unwrap().creates,
            1,
            "one create, no duplicate"
        );
        d.stop().await;
    }
}

/// Someone renames a contact in B after revsync's last read of B; then another rename
/// made earlier in A is read and pushed to B. B's rename is the newer one: the push must
/// not write the older name over it, and A must get B's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_made_in_the_target_since_its_last_read_is_not_written_over() {
    let (a, b) = (Fake::start().await, Fake::start().await);
    let in_a = a.seed("x@corp.test", "Old Name");
    let d = start(&a, &b).await;
    let copy_in_b = || b.state.lock().unwrap().contacts.values().next().cloned();
    eventually("the contact reached B", 20, || async {
        copy_in_b().is_some()
    })
    .await;
    // Let revsync read its own write back from B, then stop B's list reads: from here on
    // only a read by id can see what happens in B.
    tokio::time::sleep(Duration::from_secs(3)).await;
    b.state.lock().unwrap().list_pages_left = Some(0);
    let in_b = copy_in_b().unwrap().id;
    {
        let mut s = a.state.lock().unwrap();
        let c = s.contacts.get_mut(&in_a).unwrap();
        c.name = "Name From A".into();
        c.updated = 1_800_000_100;
    }
    {
        let mut s = b.state.lock().unwrap();
        let c = s.contacts.get_mut(&in_b).unwrap();
        c.name = "Renamed In B".into();
        c.updated = 1_800_000_200;
    }
    let name_in_a = || a.state.lock().unwrap().contacts[&in_a].name.clone();
    eventually("B's newer rename reached A", 20, || async {
        name_in_a() == "Renamed In B"
    })
    .await;
    assert_eq!(
        copy_in_b().unwrap().name,
        "Renamed In B",
        "the push wrote the older name over B's"
    );
    assert!(b.state.lock().unwrap().reads_by_id >= 1);
    let sb = d.connector("acme-b").await;
    assert!(sb["edits_read_before_push"].as_u64().unwrap() >= 1, "{sb}");
    d.stop().await;
}

/// A read before an update that the target refuses for good (a changed API, a strict
/// gateway) holds the update back: it is never pushed blind over edits revsync has not
/// seen, and goes out once the read works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_whose_read_is_refused_waits_and_is_never_pushed_blind() {
    let (a, b) = (Fake::start().await, Fake::start().await);
    let in_a = a.seed("x@corp.test", "Old Name");
    let d = start(&a, &b).await;
    let copy_in_b = || b.state.lock().unwrap().contacts.values().next().cloned();
    eventually("the contact reached B", 20, || async {
        copy_in_b().is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let in_b = copy_in_b().unwrap().id;
    let updates_before = b.state.lock().unwrap().updates;
    b.state.lock().unwrap().refused_reads.insert(in_b.clone());
    {
        let mut s = a.state.lock().unwrap();
        let c = s.contacts.get_mut(&in_a).unwrap();
        c.name = "Name From A".into();
        c.updated = 1_800_000_100;
    }
    eventually("the update tried to read B's copy", 20, || async {
        b.state.lock().unwrap().reads_by_id >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        b.state.lock().unwrap().updates,
        updates_before,
        "the update was pushed without the read"
    );
    assert_eq!(copy_in_b().unwrap().name, "Old Name");
    b.state.lock().unwrap().refused_reads.clear();
    eventually("A's rename reached B once B could be read", 30, || async {
        copy_in_b().unwrap().name == "Name From A"
    })
    .await;
    d.stop().await;
}

/// A `direction: out` object is written, never read: not even the read before an update,
/// whose edits would otherwise flow back against the configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_only_object_is_not_read_before_its_updates() {
    let (a, b) = (Fake::start().await, Fake::start().await);
    let in_a = a.seed("x@corp.test", "Old Name");
    let d = start_with(&a, &b, "    direction: out\n").await;
    let name_in_b = || first_name(&b);
    eventually("the contact reached B", 20, || async {
        name_in_b().is_some()
    })
    .await;
    {
        let mut s = a.state.lock().unwrap();
        let c = s.contacts.get_mut(&in_a).unwrap();
        c.name = "Name From A".into();
        c.updated = 1_800_000_100;
    }
    eventually("A's rename reached B", 20, || async {
        name_in_b().as_deref() == Some("Name From A")
    })
    .await;
    assert_eq!(b.state.lock().unwrap().reads_by_id, 0, "B was read");
    d.stop().await;
}

/// Two re-reads of one connector would race over its cursors: the second is refused with
/// 409 while the first runs, and accepted again once it is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_resync_of_a_connector_is_refused_while_one_runs() {
    let (a, b) = (Fake::start().await, Fake::start().await);
    a.seed("slow@corp.test", "Slow Read");
    let d = start(&a, &b).await;
    eventually("initial sync", 20, || async { b.count() == 1 }).await;
    a.state.lock().unwrap().list_delay_ms = 1500;
    let post = || async {
        let r = reqwest::Client::new()
            .post(format!("{}/admin/resync", d.base))
            .bearer_auth(ADMIN)
            .json(&json!({ "connector": "acme-a" }))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(post().await.0, 202);
    let (code, body) = post().await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("already running"),
        "{body}"
    );
    let base = d.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        let dd = Daemon {
            base,
            stop: None,
            done: tokio::spawn(async { Ok(()) }),
            _dir: tempfile::tempdir().unwrap(),
        };
        cli(&dd, &["resync", "acme-a"])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "the CLI fails too");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already running"), "{stderr}");
    eventually("the first resync ends", 20, || async {
        d.connector("acme-a").await["resync"]["done"] == true
    })
    .await;
    a.state.lock().unwrap().list_delay_ms = 0;
    assert_eq!(post().await.0, 202, "refused only while one runs");
    d.stop().await;
}

/// The soak's lost edit (BENCHMARKS): B stores revsync's write of A with its own, later
/// stamp and the answer is lost, so the push is unconfirmed; A's newer edit, made before
/// that stamp, must still win over B's read of revsync's own write, everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_own_write_read_back_unconfirmed_never_beats_a_newer_edit() {
    let (a, b) = (Fake::start().await, Fake::start().await);
    let in_a = a.seed("x@corp.test", "Old Name");
    let d = start(&a, &b).await;
    let name_in_b = || first_name(&b);
    eventually("the contact reached B", 20, || async {
        name_in_b().is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let edit_in_a = |name: &str, at: i64| {
        let mut s = a.state.lock().unwrap();
        let c = s.contacts.get_mut(&in_a).unwrap();
        c.name = name.into();
        c.updated = at;
    };
    {
        // B stamps revsync's next write after both of A's edits below.
        let mut s = b.state.lock().unwrap();
        s.clock = 1_800_000_200;
        s.script.push_back(Scripted::ApplyThenFail);
    }
    edit_in_a("Name A", 1_800_000_100);
    eventually("B stored A, unconfirmed", 20, || async {
        name_in_b().as_deref() == Some("Name A")
    })
    .await;
    edit_in_a("Name B", 1_800_000_150);
    let name_in_a = || a.state.lock().unwrap().contacts[&in_a].name.clone();
    eventually("the newer edit reached B", 30, || async {
        name_in_b().as_deref() == Some("Name B")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        name_in_a(),
        "Name B",
        "revsync's own write came back over A's edit"
    );
    assert_eq!(name_in_b().as_deref(), Some("Name B"));
    d.stop().await;
}

/// The name of a system's first contact, if it has one.
fn first_name(f: &Fake) -> Option<String> {
    f.state
        .lock()
        .unwrap()
        .contacts
        .values()
        .next()
        .map(|c| c.name.clone())
}

/// The store refusing to record the answers of a push (the connector made the copies):
/// nothing is acknowledged, so the entries stay queued; once the store writes again, every
/// record ends linked to the one copy the system made, none made twice, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_the_store_cannot_record_are_neither_lost_nor_acknowledged() {
    let (a, b) = (Fake::start().await, Fake::start().await);
    for i in 0..5 {
        a.seed(&format!("stored{i}@corp.test"), &format!("Stored {i}"));
    }
    fail::cfg("engine-confirm-push", "return(acme-unrecorded)").unwrap();
    let d = start_named(&a, &b, "acme-unrecorded", "").await;
    eventually("acme-b made the copies", 20, || async { b.count() == 5 }).await;
    // The answers could not be recorded: the entries are still queued, none acknowledged.
    eventually("the failed recording is reported", 10, || async {
        d.connector("acme-unrecorded").await["outbox_depth"].as_u64() == Some(5)
    })
    .await;
    assert_eq!(d.connector("acme-unrecorded").await["records_out"], 0);
    fail::remove("engine-confirm-push");
    eventually("the queue drained", 30, || async {
        d.connector("acme-unrecorded").await["outbox_depth"] == 0
    })
    .await;
    assert_eq!(b.count(), 5, "the retry made second copies");
    assert_eq!(b.state.lock().unwrap().creates, 5);
    assert_eq!(d.connector("acme-unrecorded").await["dead_letters"], 0);
    for i in 0..5 {
        let rec = d.admin_get(&format!("/records/stored{i}@corp.test")).await;
        let systems: Vec<&str> = rec["links"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["connector"].as_str())
            .collect();
        assert_eq!(systems, ["acme-a", "acme-unrecorded"], "stored{i}: {rec}");
    }
    d.stop().await;
}

/// `dry_run: true` (issue 26): the connector reads as usual and writes nothing; what it
/// would write waits in its outbox and is listed on `/status`: each create with the fields
/// it sets, each update with its copy's id and only the fields that differ from the copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_connector_reads_but_writes_nothing_and_shows_what_it_would() {
    let (a, b) = (Fake::start().await, Fake::start().await);
    b.seed("already@corp.test", "Already There");
    let old = b.seed("shared@corp.test", "Old Name");
    for i in 0..3 {
        a.seed(&format!("dry{i}@corp.test"), &format!("Dry {i}"));
    }
    // Newer in acme-a: acme-b's copy would be renamed, its email left as it is.
    a.seed("shared@corp.test", "New Name");
    let d = start_with(&a, &b, "dry_run: true\n").await;
    eventually("acme-b's writes are listed", 20, || async {
        let c = d.connector("acme-b").await;
        c["dry_run"] == true
            && c["records_in"] == 2
            && c["would_write"]["total"] == 4
            && c["would_write"]["newest"]
                .as_array()
                .is_some_and(|w| w.len() == 4 && w.iter().all(|w| !w["fields"].is_null()))
    })
    .await;
    let c = d.connector("acme-b").await;
    assert!(c["note"].as_str().unwrap().contains("dry run"), "{c}");
    assert_eq!(c["outbox_depth"], 4, "{c}");
    let writes = c["would_write"]["newest"].as_array().unwrap();
    let creates: Vec<&Value> = writes
        .iter()
        .filter(|w| w["operation"] == "create")
        .collect();
    assert_eq!(creates.len(), 3, "{c}");
    for w in &creates {
        assert_eq!(w["object"], "contacts");
        assert!(w["external_id"].is_null(), "{w}");
        assert_eq!(w["fields"], json!(["email", "name"]), "{w}");
    }
    let update = writes.iter().find(|w| w["operation"] == "update").unwrap();
    assert_eq!(update["external_id"], old.as_str(), "{c}");
    assert_eq!(
        update["fields"],
        json!(["name"]),
        "only the name differs: {c}"
    );
    assert!(update["record"]
        .as_str()
        .unwrap()
        .parse::<uuid::Uuid>()
        .is_ok());
    assert!(
        !c.to_string().contains("New Name"),
        "no values on /status: {c}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(b.writes(), 0, "a dry run wrote to acme-b");
    assert_eq!(b.count(), 2);
    assert_eq!(
        d.connector("acme-b").await["outbox_depth"],
        4,
        "nothing was acknowledged"
    );
    // acme-a is not in a dry run: what acme-b holds reaches it.
    eventually("acme-b's record reached acme-a", 20, || async {
        a.holds_email("already@corp.test")
    })
    .await;
    d.stop().await;
}
