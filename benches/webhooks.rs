//! Webhook intake latency with durable acknowledgements, under an open-loop load.
//!
//! `cargo bench --bench webhooks` runs the daemon in-process (`app::serve`, on its own
//! multi-thread runtime, as the binary does) with one `acme` connector (the runtime tests'
//! fake, `tests/support/acme.rs`: the webhook is authenticated by its `x-acme-token`
//! header). A load generator on a separate runtime posts 2 KB JSON bodies, one event each
//! with a unique id, to `POST /webhooks/acme-a` on 127.0.0.1:
//!
//! - warm-up: 200 requests at 200/s, not measured;
//! - 500 requests/s for 10 s (5,000 requests);
//! - 2,000 requests/s for 5 s (10,000 requests).
//!
//! Sends are scheduled at fixed intervals (open loop: a send never waits for an earlier
//! answer) with at most 512 requests in flight. Latency is measured from a request's
//! scheduled send time to its answer, so a generator held back by the cap is charged to
//! the daemon, not hidden; the generator's own lag is printed. The daemon answers 200
//! only after the event is flushed to disk (`sync::inbox`, group commit). An error is any
//! answer other than 200 or a transport failure.
//!
//! Before the load, probes in the store's directory show what durability costs without
//! the daemon: 200 `write + fdatasync` of 4 KB; 1,000 `SledStore` write + `flush()` at
//! 500/s; and 4,000 `SledStore` writes at 2,000/s acknowledged by group commit. Per phase it prints latency percentiles (overall and p99 per second), errors,
//! achieved rates, store flushes (how well acknowledgements share a flush) and the
//! process's CPU time; after each phase, how long until every event was applied (the inbox
//! drained into the engine). Figures: docs/BENCHMARKS.md.
//!
//! Environment: `WEBHOOKS_DIR=/path` puts the store there instead of the system's
//! temporary directory (to compare disks).
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../tests/support/acme.rs"]
mod acme;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use acme::{AcmeType, Fake};
use revsync::registry::Registry;
use revsync::store::{SledStore, Store, Table, WriteBatch};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

const CONNECTOR: &str = "acme-a";
const WEBHOOK_TOKEN: &str = "hook-secret";
const BODY_BYTES: usize = 2048;
const MAX_IN_FLIGHT: usize = 512;
/// A stretch of load at a fixed rate.
#[derive(Clone, Copy)]
struct Phase {
    name: &'static str,
    /// Prefix of the phase's event ids: every event id is unique across the run.
    tag: &'static str,
    per_sec: u64,
    secs: u64,
}

const WARM_UP: Phase = Phase {
    name: "warm-up",
    tag: "warm",
    per_sec: 200,
    secs: 1,
};
const PHASES: [Phase; 2] = [
    Phase {
        name: "500/s",
        tag: "p500",
        per_sec: 500,
        secs: 10,
    },
    Phase {
        name: "2000/s",
        tag: "p2000",
        per_sec: 2000,
        secs: 5,
    },
];
const TARGET_P99_MS_AT_500: f64 = 20.0;

fn main() {
    let dir = match std::env::var_os("WEBHOOKS_DIR") {
        Some(base) => tempfile::Builder::new()
            .prefix("webhooks-bench-")
            .tempdir_in(base),
        None => tempfile::Builder::new().prefix("webhooks-bench-").tempdir(),
    }
    .expect("create a temporary directory");
    println!(
        "webhooks: {} cores ({}), store in {} ({}), {BODY_BYTES}-byte bodies, at most {MAX_IN_FLIGHT} in flight",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        dir.path().display(),
        filesystem_of(dir.path()),
    );
    println!("load average before: {}", load_average());
    disk_probe(dir.path());
    store_probe(&dir.path().join("probe-store"));

    // The daemon's runtime: what `revsync` builds (one worker per core).
    let daemon_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the daemon's runtime");
    let (base, stop, done) = daemon_rt.block_on(start_daemon(dir.path()));

    // The load generator's runtime: one thread of its own.
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("start the load generator's runtime");
    let missed = load_rt.block_on(drive(&base));

    let _ = stop.send(());
    daemon_rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(20), done).await })
        .expect("the daemon stops within 20 s")
        .expect("the daemon task")
        .expect("the daemon stops cleanly");
    println!("\nload average after: {}", load_average());
    if missed {
        println!("at least one target was missed");
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

type Stop = tokio::sync::oneshot::Sender<()>;
type Done = tokio::task::JoinHandle<anyhow::Result<()>>;

async fn start_daemon(dir: &Path) -> (String, Stop, Done) {
    // The connector polls its API at start: give it an empty one.
    let api = Fake::start().await;
    std::fs::create_dir_all(dir.join("connectors")).expect("create connectors/");
    std::fs::write(
        dir.join("revsync.yaml"),
        format!(
            "version: 1\nstore:\n  path: {}\nlog:\n  level: warn\nshutdown_timeout_secs: 10\n",
            dir.join("data").display()
        ),
    )
    .expect("write revsync.yaml");
    std::fs::write(
        dir.join(format!("connectors/{CONNECTOR}.yaml")),
        format!(
            "version: 1\nid: {CONNECTOR}\ntype: acme\nparams:\n  base_url: {}\n  token: acme-token\n  webhook_token: {WEBHOOK_TOKEN}\npoll:\n  interval_secs: 3600\n  jitter_pct: 0\nobjects:\n  contacts:\n    kind: person\n    fields: {{ email: email, name: {{ to: full_name }} }}\n",
            api.url()
        ),
    )
    .expect("write the connector file");
    let registry = || Registry::with(vec![Box::new(AcmeType)]);
    let cfg = revsync::config::load(dir, &registry(), &BTreeMap::<String, String>::new())
        .unwrap_or_else(|e| panic!("benchmark configuration: {e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the daemon");
    let base = format!("http://{}", listener.local_addr().expect("local address"));
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(revsync::app::serve(cfg, registry(), listener, async move {
        let _ = rx.await;
    }));
    let http = reqwest::Client::new();
    let ready = async {
        loop {
            let r = http.get(format!("{base}/readyz")).send().await;
            if r.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), ready)
        .await
        .expect("the daemon is ready within 10 s");
    (base, stop, done)
}

/// One event, padded to exactly `BODY_BYTES`.
fn body(tag: &str, n: u64) -> Vec<u8> {
    let event = |pad: String| {
        json!({
            "events": [{
                "id": format!("evt-{tag}-{n}"),
                "contact": {
                    "id": format!("{tag}-{n}"),
                    "email": format!("{tag}{n}@load.test"),
                    "name": format!("Load User{n}"),
                    "updated": 1_700_000_000 + n,
                },
            }],
            "pad": pad,
        })
    };
    let bare = serde_json::to_vec(&event(String::new())).expect("serialize");
    let body = serde_json::to_vec(&event("x".repeat(BODY_BYTES - bare.len()))).expect("serialize");
    assert_eq!(body.len(), BODY_BYTES);
    body
}

/// What happened to one request.
struct Sample {
    scheduled: Instant,
    sent: Instant,
    answered: Instant,
    outcome: Result<u16, String>,
}

struct PhaseResult {
    samples: Vec<Sample>,
    flushes: Option<u64>,
    /// Process CPU time (daemon and load generator together) and wall time of the phase.
    cpu: Duration,
    wall: Duration,
    /// Bytes the process sent to the disk during the phase (`/proc/self/io` write_bytes).
    disk_bytes: u64,
}

/// Runs every phase; true when a target was missed.
async fn drive(base: &str) -> bool {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(MAX_IN_FLIGHT)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("build the http client");
    let url = format!("{base}/webhooks/{CONNECTOR}");
    run_phase(&http, base, &url, WARM_UP).await;
    let mut missed = false;
    let mut total = 0;
    let mut last_answer = Instant::now();
    for phase in PHASES {
        let result = run_phase(&http, base, &url, phase).await;
        total += result.samples.len() as u64;
        if let Some(t) = result.samples.iter().map(|s| s.answered).max() {
            last_answer = t;
        }
        missed |= !report(phase, &result);
        // Let the inbox catch up so one phase's backlog does not land in the next.
        let expected = total + WARM_UP.per_sec * WARM_UP.secs;
        wait_applied(&http, base, expected, last_answer).await;
    }
    missed
}

async fn run_phase(http: &reqwest::Client, base: &str, url: &str, phase: Phase) -> PhaseResult {
    let count = phase.per_sec * phase.secs;
    let bodies: Vec<Vec<u8>> = (0..count).map(|n| body(phase.tag, n)).collect();
    let flushes_before = store_flushes(http, base).await;
    let (cpu_before, wall_before, disk_before) = (process_cpu(), Instant::now(), disk_written());
    let interval = Duration::from_nanos(1_000_000_000 / phase.per_sec);
    let cap = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let start = Instant::now() + Duration::from_millis(10);
    let mut tasks = Vec::with_capacity(bodies.len());
    for (n, body) in bodies.into_iter().enumerate() {
        let scheduled = start + interval * n as u32;
        tokio::time::sleep_until(scheduled.into()).await;
        let permit = cap.clone().acquire_owned().await.expect("semaphore open");
        let req = http
            .post(url)
            .header("x-acme-token", WEBHOOK_TOKEN)
            .header("content-type", "application/json")
            .body(body);
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let outcome = match req.send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    // Read the answer to the end: that is when the client has it.
                    let _ = r.bytes().await;
                    Ok(status)
                }
                Err(e) => Err(e.to_string()),
            };
            drop(permit);
            Sample {
                scheduled,
                sent,
                answered: Instant::now(),
                outcome,
            }
        }));
    }
    let mut samples = Vec::with_capacity(tasks.len());
    for t in tasks {
        samples.push(t.await.expect("a request task"));
    }
    let (cpu, wall) = (process_cpu() - cpu_before, wall_before.elapsed());
    let disk_bytes = disk_written().saturating_sub(disk_before);
    let flushes_after = store_flushes(http, base).await;
    PhaseResult {
        cpu,
        wall,
        disk_bytes,
        samples,
        flushes: flushes_before
            .zip(flushes_after)
            .map(|(b, a)| a.saturating_sub(b)),
    }
}

/// Prints one phase; false when its target was missed.
fn report(phase: Phase, r: &PhaseResult) -> bool {
    let s = &r.samples;
    let mut lat: Vec<Duration> = s
        .iter()
        .filter(|x| x.outcome == Ok(200))
        .map(|x| x.answered - x.scheduled)
        .collect();
    lat.sort();
    let errors: Vec<&Sample> = s.iter().filter(|x| x.outcome != Ok(200)).collect();
    let first_sent = s.iter().map(|x| x.sent).min().expect("samples");
    let last_sent = s.iter().map(|x| x.sent).max().expect("samples");
    let last_answer = s.iter().map(|x| x.answered).max().expect("samples");
    let send_rate = (s.len() - 1) as f64 / (last_sent - first_sent).as_secs_f64();
    let ack_rate = lat.len() as f64 / (last_answer - first_sent).as_secs_f64();
    let mut lags: Vec<Duration> = s.iter().map(|x| x.sent - x.scheduled).collect();
    lags.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "\n{}: {} requests scheduled over {} s",
        phase.name,
        s.len(),
        phase.secs
    );
    println!(
        "  achieved: sent {send_rate:.0}/s, acknowledged {ack_rate:.0}/s; generator lag (scheduled -> sent): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(percentile(&lags, 0.50)),
        ms(percentile(&lags, 0.99)),
        ms(*lags.last().expect("samples")),
    );
    println!(
        "  process CPU: {:.2} s in {:.2} s ({:.2} of {} cores)",
        r.cpu.as_secs_f64(),
        r.wall.as_secs_f64(),
        r.cpu.as_secs_f64() / r.wall.as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    if lat.is_empty() {
        println!("  no request succeeded");
    } else {
        println!(
            "  accept latency (scheduled send -> 200): p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            ms(percentile(&lat, 0.50)),
            ms(percentile(&lat, 0.99)),
            ms(percentile(&lat, 0.999)),
            ms(*lat.last().expect("not empty")),
        );
    }
    // Where the tail sits: p99 of the requests scheduled in each second of the phase.
    let start = s.iter().map(|x| x.scheduled).min().expect("samples");
    let mut per_sec: Vec<Vec<Duration>> = vec![Vec::new(); phase.secs as usize];
    for x in s.iter().filter(|x| x.outcome == Ok(200)) {
        let sec = ((x.scheduled - start).as_secs() as usize).min(per_sec.len() - 1);
        per_sec[sec].push(x.answered - x.scheduled);
    }
    let by_sec: Vec<String> = per_sec
        .iter_mut()
        .map(|v| {
            v.sort();
            if v.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.1}", ms(percentile(v, 0.99)))
            }
        })
        .collect();
    println!("  p99 by second of the phase (ms): {}", by_sec.join(" "));
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for e in &errors {
        let kind = match &e.outcome {
            Ok(status) => format!("status {status}"),
            Err(m) => format!("transport: {m}"),
        };
        *kinds.entry(kind).or_default() += 1;
    }
    println!(
        "  errors: {}{}",
        errors.len(),
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" {kinds:?}")
        }
    );
    if let Some(f) = r.flushes {
        println!(
            "  store flushes during the phase: {f} ({:.1} acknowledgements per flush); {:.1} MB written to disk ({:.1} KB per event)",
            lat.len() as f64 / f.max(1) as f64,
            r.disk_bytes as f64 / 1e6,
            r.disk_bytes as f64 / 1024.0 / lat.len().max(1) as f64,
        );
    }
    let ok = |met: bool| if met { "met" } else { "MISSED" };
    match phase.per_sec {
        500 => {
            let p99 = if lat.is_empty() {
                f64::INFINITY
            } else {
                ms(percentile(&lat, 0.99))
            };
            println!(
                "  target p99 <= {TARGET_P99_MS_AT_500} ms: {} ({p99:.2} ms)",
                ok(p99 <= TARGET_P99_MS_AT_500)
            );
            p99 <= TARGET_P99_MS_AT_500
        }
        2000 => {
            println!(
                "  target 0 errors: {} ({})",
                ok(errors.is_empty()),
                errors.len()
            );
            errors.is_empty()
        }
        _ => true,
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn status_of(http: &reqwest::Client, base: &str) -> Option<Value> {
    let s: Value = http
        .get(format!("{base}/status"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    s["connectors"]
        .as_array()?
        .iter()
        .find(|c| c["id"] == CONNECTOR)
        .cloned()
}

/// Waits (bounded) until `expected` events are applied; prints how long after `since`.
async fn wait_applied(http: &reqwest::Client, base: &str, expected: u64, since: Instant) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut applied = 0;
    while Instant::now() < deadline {
        if let Some(c) = status_of(http, base).await {
            applied = c["records_in"].as_u64().unwrap_or(0);
            if applied >= expected {
                println!(
                    "  all {expected} accepted events applied {:.2} s after the last acknowledgement",
                    since.elapsed().as_secs_f64()
                );
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("  only {applied} of {expected} accepted events applied after 120 s");
}

async fn store_flushes(http: &reqwest::Client, base: &str) -> Option<u64> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("revsync_store_flushes_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// 200 appends of 4 KB, each followed by `fdatasync`, in `dir`: the floor under any
/// durable acknowledgement on this disk.
fn disk_probe(dir: &Path) {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).expect("create the probe file");
    let block = [0x5a_u8; 4096];
    let mut times: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            file.write_all(&block).expect("write the probe file");
            file.sync_data().expect("fdatasync the probe file");
            t.elapsed()
        })
        .collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "disk: write 4 KB + fdatasync x200: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(percentile(&times, 0.50)),
        ms(percentile(&times, 0.99)),
        ms(*times.last().expect("200 samples")),
    );
    let _ = std::fs::remove_file(path);
}

/// The daemon's durability path without the daemon, on `SledStore` with the daemon's
/// defaults (flush every 500 ms, 256 MB cache):
///
/// - one inbox-sized write then `flush()`, 1,000 times at 500/s: what an acknowledgement
///   costs at that rate before HTTP, the engine or CPU contention add anything;
/// - 4,000 inbox-sized writes at 2,000/s, acknowledged by a flushing thread with the
///   daemon's group commit (one flush covers every write made before it started): the
///   floor at that rate, and how long a lone `write` (which the inbox does on an async
///   worker thread) takes while flushes run.
fn store_probe(path: &Path) {
    let store = Arc::new(SledStore::open(path, 500, 256).expect("open the probe store"));
    let value = vec![b'v'; BODY_BYTES + 300];
    let write = |store: &SledStore, n: u64| {
        let mut batch = WriteBatch::new();
        batch.put(Table::Inbox, n.to_be_bytes().to_vec(), value.clone());
        store.write(batch).expect("write the probe store");
    };
    let mut acks = Vec::with_capacity(1000);
    for n in 0u64..1000 {
        let t = Instant::now();
        write(&store, n);
        store.flush().expect("flush the probe store");
        let took = t.elapsed();
        acks.push(took);
        std::thread::sleep(Duration::from_millis(2).saturating_sub(took));
    }
    acks.sort();
    println!(
        "sled: write {} B + flush x1000 at 500/s: {}",
        value.len(),
        summary(&acks)
    );

    // Group commit as the daemon's flusher does it: a write asks for a flush; one flush
    // covers every write made before it started.
    #[derive(Default)]
    struct Tickets {
        /// Writes made so far.
        requested: u64,
        /// Writes covered by a finished flush.
        flushed: u64,
        stop: bool,
    }
    let tickets = Arc::new((
        std::sync::Mutex::new(Tickets::default()),
        std::sync::Condvar::new(),
    ));
    let flusher = {
        let (store, tickets) = (store.clone(), tickets.clone());
        std::thread::spawn(move || {
            let (lock, cv) = &*tickets;
            // (writes covered, when the flush ended)
            let mut flushes: Vec<(u64, Instant)> = Vec::new();
            loop {
                let target = {
                    let mut t = lock.lock().expect("tickets");
                    while t.requested == t.flushed && !t.stop {
                        t = cv.wait(t).expect("tickets");
                    }
                    if t.requested == t.flushed {
                        return flushes;
                    }
                    t.requested
                };
                store.flush().expect("flush the probe store");
                flushes.push((target, Instant::now()));
                lock.lock().expect("tickets").flushed = target;
            }
        })
    };
    let (count, every) = (4000u64, Duration::from_micros(500));
    let disk_before = disk_written();
    let start = Instant::now() + Duration::from_millis(1);
    let mut writes = Vec::with_capacity(count as usize);
    for n in 0..count {
        let due = start + every * n as u32;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let t = Instant::now();
        write(&store, 1000 + n);
        writes.push(t.elapsed());
        let (lock, cv) = &*tickets;
        lock.lock().expect("tickets").requested = n + 1;
        cv.notify_one();
    }
    {
        let (lock, cv) = &*tickets;
        lock.lock().expect("tickets").stop = true;
        cv.notify_one();
    }
    let flushes = flusher.join().expect("the probe flusher");
    let disk_bytes = disk_written().saturating_sub(disk_before);
    // Write n is acknowledged by the first flush that covers it.
    let mut acked = Vec::with_capacity(count as usize);
    let mut f = flushes.iter().peekable();
    for n in 0..count {
        while f.peek().is_some_and(|(covered, _)| *covered < n + 1) {
            f.next();
        }
        if let Some((_, at)) = f.peek() {
            acked.push(*at - (start + every * n as u32));
        }
    }
    writes.sort();
    acked.sort();
    println!(
        "sled: group commit of {count} writes at 2000/s, no HTTP or engine: ack (scheduled -> flushed) {}; {} flushes ({:.1} writes per flush); {:.1} KB written to disk per write; write alone {}",
        summary(&acked),
        flushes.len(),
        count as f64 / flushes.len().max(1) as f64,
        disk_bytes as f64 / 1024.0 / count as f64,
        summary(&writes),
    );
}

/// p50, p99, p99.9 and max of sorted durations, in milliseconds.
fn summary(sorted: &[Duration]) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        ms(percentile(sorted, 0.50)),
        ms(percentile(sorted, 0.99)),
        ms(percentile(sorted, 0.999)),
        ms(*sorted.last().expect("samples")),
    )
}

/// Bytes this process has caused to be sent to storage so far.
fn disk_written() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// User + system CPU time of this process so far.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// The type of the filesystem holding `path`, from the longest matching mount point.
fn filesystem_of(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, mount, fs) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(mount)
                .then(|| (mount.len(), format!("{fs} on {dev}")))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown filesystem".into(), |(_, fs)| fs)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown cpu".into())
}
