//! Webhook durability across SIGKILL: the daemon is killed right after acknowledging
//! webhook events, and after every restart each acknowledged event must be applied: in the
//! canonical store, and pushed to the other system exactly once.
//!
//! The daemon is this test binary re-executed on one test (`webhook_crash_child`), so the
//! product binary carries no test hooks. The fake Acme systems live in the parent: they
//! must outlive every killed daemon, and the parent reads what reached them.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "support/acme.rs"]
mod acme;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use acme::{AcmeType, Fake};
use revsync::registry::Registry;
use serde_json::{json, Value};

/// Set only in the child: the configuration directory it serves from.
const CHILD_ENV: &str = "REVSYNC_WEBHOOK_CHILD_DIR";
const CHILD_TEST: &str = "webhook_crash_child";
const HOOK_TOKEN: &str = "hook-secret";
const SEED: u64 = 0x5eed_0bee_f00d_0019;
const CYCLES: usize = 3;
const EVENTS_PER_CYCLE: usize = 300;
const BURST: usize = 20;
/// Kills land between this many acknowledged events and this many before the end of the
/// cycle's sends, so every cycle both acknowledges plenty and has requests in flight.
const MIN_ACKS_BEFORE_KILL: usize = 50;
const CHECK_SECS: u64 = 30;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn registry() -> Registry {
    Registry::with(vec![Box::new(AcmeType)])
}

/// The operator API's token: `/records` always needs one.
const ADMIN: &str = "webhook-crash-admin";

fn write_config(dir: &Path, port: u16, a: &Fake, b: &Fake) {
    std::fs::create_dir_all(dir.join("connectors")).unwrap();
    // The background flush interval stays at its default (500 ms): an acknowledgement must
    // rest on the explicit flush the intake does, not on a lucky timer.
    std::fs::write(
        dir.join("revsync.yaml"),
        format!(
            "version: 1\nserver:\n  listen: 127.0.0.1:{port}\n  admin_token: {ADMIN}\nstore:\n  path: {}\nshutdown_timeout_secs: 5\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    for (id, fake) in [("acme-a", a), ("acme-b", b)] {
        std::fs::write(
            dir.join(format!("connectors/{id}.yaml")),
            format!(
                "version: 1\nid: {id}\ntype: acme\nparams:\n  base_url: {}\n  token: acme-token\n  webhook_token: {HOOK_TOKEN}\npoll:\n  interval_secs: 1\n  jitter_pct: 0\nobjects:\n  contacts:\n    kind: person\n    fields: {{ email: email, name: {{ to: full_name }} }}\n",
                fake.url()
            ),
        )
        .unwrap();
    }
}

/// The child: serves the daemon until killed. A no-op in ordinary test runs.
#[test]
fn webhook_crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    // A fixed environment: the child's marker variable must not reach the config loader.
    let config = revsync::config::load(Path::new(&dir), &registry(), &BTreeMap::new())
        .unwrap_or_else(|e| panic!("config: {e}"));
    revsync::telemetry::init(&config.daemon.log).expect("log subscriber");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let result = rt.block_on(async move {
        let addr = config.daemon.server.listen;
        // The killed predecessor's sockets may hold the port for a moment.
        let started = Instant::now();
        let listener = loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) if started.elapsed() < Duration::from_secs(10) => {
                    eprintln!("bind {addr}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot bind {addr}: {e}"),
            }
        };
        revsync::app::serve(config, registry(), listener, std::future::pending()).await
    });
    panic!("the daemon stopped without being killed: {result:?}");
}

/// One daemon child. Killed on drop, so a failing parent leaves nothing running.
struct Daemon {
    child: Child,
    base: String,
}

impl Daemon {
    fn spawn(dir: &Path, port: u16, log: &Path) -> Self {
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir)
            // Plain text: the log is quoted in assertion messages.
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn the daemon child");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    async fn wait_ready(&mut self, logs: &Logs) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(CHECK_SECS);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the daemon ended ({status}) before it was ready\n{}",
                    logs.tail()
                );
            }
            if let Ok(r) = http.get(format!("{}/readyz", self.base)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the daemon was not ready within {CHECK_SECS} s\n{}",
                logs.tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Reap a child the sending tasks already SIGKILLed, and make sure that is how it died.
    fn reap_killed(&mut self, logs: &Logs) {
        let status = self.child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "the daemon ended ({status}) other than by the kill\n{}",
            logs.tail()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The children's stderr files, quoted in failure messages.
struct Logs {
    dir: PathBuf,
    count: usize,
}

impl Logs {
    fn next(&mut self) -> PathBuf {
        self.count += 1;
        self.dir.join(format!("daemon-{}.log", self.count))
    }

    /// The last lines of the current and the previous (killed) daemon's logs.
    fn tail(&self) -> String {
        let mut out = String::new();
        for n in self.count.saturating_sub(1).max(1)..=self.count {
            let path = self.dir.join(format!("daemon-{n}.log"));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!(
                "--- {} (last {} of {} lines) ---\n",
                path.display(),
                lines.len().min(60),
                lines.len()
            ));
            for l in &lines[lines.len().saturating_sub(60)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

fn email(i: usize) -> String {
    format!("w{i}@corp.test")
}

fn contact_id(i: usize) -> String {
    (50_000 + i).to_string()
}

fn event(i: usize) -> Value {
    json!({
        "id": format!("evt-{i}"),
        "contact": {
            "id": contact_id(i),
            "email": email(i),
            "name": format!("Hook Person{i}"),
            "updated": 1_700_000_000 + i as i64,
        }
    })
}

/// POST events `ids` to acme-a; `Ok(accepted)` on a 200, `Err(why)` otherwise.
async fn post_events(http: &reqwest::Client, base: &str, ids: &[usize]) -> Result<u64, String> {
    let body = json!({ "events": ids.iter().map(|&i| event(i)).collect::<Vec<_>>() });
    let r = http
        .post(format!("{base}/webhooks/acme-a"))
        .header("x-acme-token", HOOK_TOKEN)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = r.status();
    let text = r.text().await.map_err(|e| format!("read: {e}"))?;
    if status != 200 {
        return Err(format!("{status}: {text}"));
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    v["accepted"]
        .as_u64()
        .ok_or_else(|| format!("no `accepted` in {text}"))
}

struct CycleOutcome {
    acked: Vec<usize>,
    kill_at: usize,
    in_flight_failures: usize,
}

/// Send events `range` in concurrent bursts and SIGKILL the daemon as soon as `kill_at`
/// events are acknowledged, while the rest of that burst is still in flight.
async fn send_until_killed(
    d: &Daemon,
    range: std::ops::Range<usize>,
    rng: &mut XorShift,
    logs: &Logs,
) -> CycleOutcome {
    let span = range.len() - 2 * MIN_ACKS_BEFORE_KILL;
    let kill_at = MIN_ACKS_BEFORE_KILL + rng.below(span);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let pid = d.pid();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let acked_n = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut in_flight_failures = 0;
    let mut next = range.start;
    while next < range.end && !killed.load(Ordering::SeqCst) {
        let mut burst = tokio::task::JoinSet::new();
        for _ in 0..BURST {
            if next >= range.end {
                break;
            }
            let n = (1 + rng.below(3)).min(range.end - next);
            let ids: Vec<usize> = (next..next + n).collect();
            next += n;
            let (http, base) = (http.clone(), d.base.clone());
            let (acked, acked_n, killed, failures) = (
                acked.clone(),
                acked_n.clone(),
                killed.clone(),
                failures.clone(),
            );
            burst.spawn(async move {
                match post_events(&http, &base, &ids).await {
                    Ok(accepted) => {
                        if accepted != ids.len() as u64 {
                            failures.lock().unwrap().push(format!(
                                "events {ids:?} are new but {accepted} were accepted"
                            ));
                        }
                        acked.lock().unwrap().extend_from_slice(&ids);
                        let total = acked_n.fetch_add(ids.len(), Ordering::SeqCst) + ids.len();
                        // The kill follows the acknowledgement with no pause: whatever the
                        // daemon had not yet applied is only in its inbox on disk.
                        if total >= kill_at && !killed.swap(true, Ordering::SeqCst) {
                            // SAFETY: kill(2) on our own child, not yet reaped.
                            #[allow(
                                unsafe_code,
                                reason = "kill(2) of our own child: no memory-safety preconditions"
                            )]
                            let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
                            assert_eq!(rc, 0, "kill failed");
                        }
                        false
                    }
                    // Failing after the kill is expected: such events were never acknowledged.
                    Err(_) if killed.load(Ordering::SeqCst) => true,
                    Err(e) => {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("events {ids:?} before the kill: {e}"));
                        false
                    }
                }
            });
        }
        while let Some(r) = burst.join_next().await {
            in_flight_failures += usize::from(r.expect("sending task"));
        }
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "webhook requests failed while the daemon was alive:\n{}\n{}",
        failures.join("\n"),
        logs.tail()
    );
    assert!(
        killed.load(Ordering::SeqCst),
        "all {} events were sent with only {} acknowledged: the kill point {kill_at} was never reached",
        range.len(),
        acked_n.load(Ordering::SeqCst)
    );
    let acked = acked.lock().unwrap().clone();
    CycleOutcome {
        acked,
        kill_at,
        in_flight_failures,
    }
}

/// Whether the restarted daemon holds event `i`'s contact, linked to its acme-a id.
async fn applied(http: &reqwest::Client, base: &str, i: usize) -> bool {
    let Ok(r) = http
        .get(format!("{base}/records/{}", email(i)))
        .bearer_auth(ADMIN)
        .send()
        .await
    else {
        return false;
    };
    if r.status() != 200 {
        return false;
    }
    let Ok(v) = r.json::<Value>().await else {
        return false;
    };
    let linked = v["links"].as_array().into_iter().flatten().any(|l| {
        l["connector"] == "acme-a"
            && l["object"] == "contacts"
            && l["external_id"] == contact_id(i).as_str()
    });
    linked && v["fields"]["email"]["value"] == email(i).as_str()
}

/// Events the restarted daemon applied from its inbox: Fake A holds no contacts, so its
/// polls add nothing and acme-a's `records_in` counts webhook events alone.
async fn replayed_from_inbox(base: &str) -> u64 {
    let status: Value = match reqwest::get(format!("{base}/status")).await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    status["connectors"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["id"] == "acme-a")
        .and_then(|c| c["records_in"].as_u64())
        .unwrap_or(0)
}

/// How many contacts Fake B holds per email.
fn emails_in(fake: &Fake) -> BTreeMap<String, usize> {
    let mut by_email = BTreeMap::new();
    for c in fake.state.lock().unwrap().contacts.values() {
        *by_email.entry(c.email.clone()).or_insert(0) += 1;
    }
    by_email
}

fn duplicates(by_email: &BTreeMap<String, usize>) -> Vec<String> {
    by_email
        .iter()
        .filter(|(_, &n)| n > 1)
        .map(|(e, n)| format!("{e} x{n}"))
        .collect()
}

fn listed(ids: &BTreeSet<usize>) -> String {
    let shown: Vec<String> = ids.iter().take(40).map(|i| format!("evt-{i}")).collect();
    let more = ids.len().saturating_sub(40);
    if more > 0 {
        format!("{} (and {more} more)", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Every acknowledged event must reach the store and then Fake B, once.
async fn check_all_applied(d: &Daemon, b: &Fake, acked: &BTreeSet<usize>, logs: &Logs) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(CHECK_SECS);
    let mut missing = acked.clone();
    while !missing.is_empty() && Instant::now() < deadline {
        let pending: Vec<usize> = missing.iter().copied().collect();
        for chunk in pending.chunks(BURST) {
            let mut set = tokio::task::JoinSet::new();
            for &i in chunk {
                let (http, base) = (http.clone(), d.base.clone());
                set.spawn(async move { (i, applied(&http, &base, i).await) });
            }
            while let Some(r) = set.join_next().await {
                if let (i, true) = r.expect("lookup task") {
                    missing.remove(&i);
                }
            }
        }
        if !missing.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events are not in the store {CHECK_SECS} s after the restart: {}\n{}",
        missing.len(),
        acked.len(),
        listed(&missing),
        logs.tail()
    );

    let mut absent = acked.clone();
    while Instant::now() < deadline {
        let by_email = emails_in(b);
        absent.retain(|&i| !by_email.contains_key(&email(i)));
        if absent.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        absent.is_empty(),
        "{} of {} acknowledged events never reached acme-b within {CHECK_SECS} s of the restart: {}\n{}",
        absent.len(),
        acked.len(),
        listed(&absent),
        logs.tail()
    );
    let dups = duplicates(&emails_in(b));
    assert!(
        dups.is_empty(),
        "acme-b holds duplicates: {}\n{}",
        dups.join(", "),
        logs.tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_webhooks_survive_sigkill() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (a, b) = (Fake::start().await, Fake::start().await);
    // The port must stay the same across restarts, as a webhook sender's URL would.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    write_config(dir, port, &a, &b);
    let mut logs = Logs {
        dir: dir.to_owned(),
        count: 0,
    };
    let mut rng = XorShift(SEED);
    let mut acked = BTreeSet::new();
    let mut d = Daemon::spawn(dir, port, &logs.next());
    d.wait_ready(&logs).await;

    for cycle in 1..=CYCLES {
        let range = (cycle - 1) * EVENTS_PER_CYCLE..cycle * EVENTS_PER_CYCLE;
        let sent_at = Instant::now();
        let out = send_until_killed(&d, range, &mut rng, &logs).await;
        d.reap_killed(&logs);
        let send_ms = sent_at.elapsed().as_millis();
        acked.extend(out.acked.iter().copied());

        drop(d);
        d = Daemon::spawn(dir, port, &logs.next());
        d.wait_ready(&logs).await;

        // A redelivery of an acknowledged event must be recognised after the crash.
        let again = out.acked[rng.below(out.acked.len())];
        let http = reqwest::Client::new();
        let accepted = post_events(&http, &d.base, &[again])
            .await
            .unwrap_or_else(|e| panic!("redelivering evt-{again}: {e}\n{}", logs.tail()));
        assert_eq!(
            accepted,
            0,
            "evt-{again}, acknowledged before the kill, was accepted again after the restart\n{}",
            logs.tail()
        );

        let checked_at = Instant::now();
        check_all_applied(&d, &b, &acked, &logs).await;
        let check_ms = checked_at.elapsed().as_millis();
        println!(
            "cycle {cycle}: killed at {} acknowledged (target {}), {} requests in flight failed, \
             sends {send_ms} ms; {} events replayed from the inbox after the restart; \
             all {} acknowledged so far applied, checked in {check_ms} ms",
            out.acked.len(),
            out.kill_at,
            out.in_flight_failures,
            replayed_from_inbox(&d.base).await,
            acked.len(),
        );
    }
    // Events stored but never acknowledged may still be on their way to acme-b: let the
    // pushes settle before the last duplicate check.
    let settle = Instant::now() + Duration::from_secs(10);
    let mut writes = b.writes();
    loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = b.writes();
        if now == writes || Instant::now() > settle {
            break;
        }
        writes = now;
    }
    let dups = duplicates(&emails_in(&b));
    assert!(
        dups.is_empty(),
        "acme-b holds duplicates once the pushes settled: {}\n{}",
        dups.join(", "),
        logs.tail()
    );
    println!(
        "{CYCLES} kills, {} acknowledged events, all applied once; acme-b holds {} contacts; {:.1} s",
        acked.len(),
        b.count(),
        started.elapsed().as_secs_f64()
    );
}
