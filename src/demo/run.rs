//! Running the demo: simulators up and seeded, the daemon on config/demo/, progress until
//! convergence, then a summary built only from what the daemon answers over HTTP.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use crate::format::thousands;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::seed::{self, CopyRef, Sims, HUBSPOT, SALESFORCE, STRIPE, WEBINAR, ZENDESK};
use super::world::World;
use super::{DemoArgs, SimArgs, System};
use crate::cli::exit;
use crate::json::{at, member};
use crate::registry::Registry;

const CONNECTORS: [&str; 5] = [HUBSPOT, SALESFORCE, ZENDESK, STRIPE, WEBINAR];

/// When the Salesforce rep edits titles, after the daemon started.
const EDIT_AFTER: Duration = Duration::from_secs(6);

/// Zendesk's ten exports a minute space each object's reads 18 s apart: convergence is
/// not declared before every object had a chance to be read again after the first pushes.
const MIN_RUN: Duration = Duration::from_secs(24);

/// People who register for a webinar while the demo runs, after the daemon started: their
/// `registrant.created` webhooks bring them in as new leads.
const REGISTER_AFTER: Duration = Duration::from_secs(8);
const LIVE_REGISTRANTS: usize = 3;
/// How long after registering the first live registrant attends (an MQL by rule 1).
const ATTEND_AFTER: Duration = Duration::from_secs(5);

/// When a rep wins deals in HubSpot at the earliest (and once its deals were read
/// through), and how many: the shipped rules carry each one on to a Stripe subscription
/// and a Zendesk onboarding ticket.
const WIN_AFTER: Duration = Duration::from_secs(10);
const WON_DEALS: usize = 3;

/// config/demo/, compiled in so the demo runs from any directory.
const FILES: [(&str, &str); 10] = [
    (
        "revsync.yaml",
        include_str!("../../config/demo/revsync.yaml"),
    ),
    (
        "connectors/hubspot.yaml",
        include_str!("../../config/demo/connectors/hubspot.yaml"),
    ),
    (
        "connectors/salesforce.yaml",
        include_str!("../../config/demo/connectors/salesforce.yaml"),
    ),
    (
        "connectors/zendesk.yaml",
        include_str!("../../config/demo/connectors/zendesk.yaml"),
    ),
    (
        "connectors/stripe.yaml",
        include_str!("../../config/demo/connectors/stripe.yaml"),
    ),
    (
        "connectors/webinar.yaml",
        include_str!("../../config/demo/connectors/webinar.yaml"),
    ),
    // The shipped example rules, as they are: the demo runs the chain they make.
    (
        "workflows/1-webinar-to-lead.yaml",
        include_str!("../../config/examples/workflows/1-webinar-to-lead.yaml"),
    ),
    (
        "workflows/2-deal-won-to-subscription.yaml",
        include_str!("../../config/examples/workflows/2-deal-won-to-subscription.yaml"),
    ),
    (
        "workflows/3-subscription-active-onboarding.yaml",
        include_str!("../../config/examples/workflows/3-subscription-active-onboarding.yaml"),
    ),
    (
        "workflows/4-past-due-at-risk.yaml",
        include_str!("../../config/examples/workflows/4-past-due-at-risk.yaml"),
    ),
];

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            None
        }
    }
}

const RUN_DIR_PREFIX: &str = "revsync-demo-";

/// Run directories of demos whose process is gone (killed, so nothing removed them): the
/// name carries the pid, and a pid with no `/proc` entry no longer runs. Where there is
/// no `/proc`, nothing is removed.
fn remove_stale_runs(tmp: &Path) -> Vec<PathBuf> {
    if !Path::new("/proc/self").exists() {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(RUN_DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let gone = !Path::new(&format!("/proc/{pid}")).exists();
        if gone && e.path().is_dir() && std::fs::remove_dir_all(e.path()).is_ok() {
            removed.push(e.path());
        }
    }
    removed
}

/// A fresh directory per run: the store of one demo never leaks into the next.
fn run_dir() -> anyhow::Result<PathBuf> {
    for stale in remove_stale_runs(&std::env::temp_dir()) {
        eprintln!("removed {} (a demo that was killed)", stale.display());
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("{RUN_DIR_PREFIX}{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(dir.join("connectors"))?;
    std::fs::create_dir_all(dir.join("workflows"))?;
    for (name, text) in FILES {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(dir)
}

pub fn demo(args: DemoArgs) -> u8 {
    let Some(rt) = runtime() else {
        return exit::FAILURE;
    };
    let dir = match run_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: cannot create the demo's run directory: {e}");
            return exit::FAILURE;
        }
    };
    let code = rt.block_on(async {
        match demo_inner(&args, &dir).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                exit::FAILURE
            }
        }
    });
    // The simulators live only in this process: the store is meaningless without them.
    let _ = std::fs::remove_dir_all(&dir);
    code
}

/// Where the demo's at-risk step is: not yet, done (a customer fell past due with an
/// urgent ticket), or skipped (no subscribed customer with an onboarding ticket showed).
const RISK_PENDING: u8 = 0;
const RISK_STARTED: u8 = 1;
const RISK_SKIPPED: u8 = 2;

/// Once the won deals' onboarding tickets exist, an agent makes one of them urgent (Zendesk
/// announces it by webhook) and then Stripe finds that customer's payment failing: the
/// subscription goes past due, and rule 4 flags the customer at risk in HubSpot.
///
/// The agent edits the ticket moments after the rule made it, often within the same
/// second: Zendesk stamps the edit with that second's start, before the rule's own value.
/// The step waits until the canonical ticket is urgent (ADR 0051) before the payment fails,
/// and says whether it got there in `escalated`.
async fn at_risk_step(
    zd: &revsync_zendesk::sim::Sim,
    st: &revsync_stripe::sim::Sim,
    hook: &str,
    records: (&reqwest::Client, &str),
    escalated: &std::sync::atomic::AtomicBool,
) -> u8 {
    for _ in 0..240 {
        if let Some((ticket, sub)) = seed::onboarded(zd, st) {
            zd.update(
                "tickets",
                &ticket,
                serde_json::json!({"priority": "urgent", "status": "open"}),
            );
            if zd
                .deliver(hook, "ticket.priority_changed", &ticket)
                .await
                .is_err()
            {
                return RISK_SKIPPED;
            }
            let (client, base) = records;
            let url = format!("{base}/records/{ZENDESK}:tickets:{ticket}");
            for _ in 0..80 {
                let rec = match client.get(&url).send().await {
                    Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
                    _ => None,
                };
                if rec.is_some_and(|r| {
                    r.pointer("/fields/priority/value") == Some(&Value::from("urgent"))
                }) {
                    escalated.store(true, std::sync::atomic::Ordering::Relaxed);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            st.set_subscription_status(&sub, "past_due");
            return RISK_STARTED;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    RISK_SKIPPED
}

/// A client for the daemon's record and admin endpoints, with the admin token.
fn admin_client(token: &revsync_sdk::Secret) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut bearer = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))?;
    bearer.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, bearer);
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .default_headers(headers)
        .no_proxy()
        .build()?)
}

/// Counters of one connector, from `/status`.
#[derive(Debug, Clone, Default, PartialEq)]
struct Counts {
    records_in: u64,
    records_reread: u64,
    records_echoed: u64,
    records_out: u64,
    outbox: u64,
    dead_letters: u64,
    throttled: u64,
    state: String,
    read_ok: bool,
}

fn counts(status: &Value) -> BTreeMap<String, Counts> {
    at(status, "/connectors")
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                at(c, "/id").as_str().unwrap_or_default().to_owned(),
                Counts {
                    records_in: at(c, "/records_in").as_u64().unwrap_or(0),
                    records_reread: at(c, "/records_reread").as_u64().unwrap_or(0),
                    records_echoed: at(c, "/records_echoed").as_u64().unwrap_or(0),
                    records_out: at(c, "/records_out").as_u64().unwrap_or(0),
                    outbox: at(c, "/outbox_depth").as_u64().unwrap_or(0),
                    dead_letters: at(c, "/dead_letters").as_u64().unwrap_or(0),
                    throttled: at(c, "/rate_limit/throttled").as_u64().unwrap_or(0),
                    state: at(c, "/state").as_str().unwrap_or_default().to_owned(),
                    read_ok: !at(c, "/last_success_at").is_null()
                        && at(c, "/records_in").as_u64() > Some(0),
                },
            )
        })
        .collect()
}

/// Cancelled on the first SIGINT or SIGTERM. Listening from the start, so a signal that
/// arrives between two waits is not lost.
fn stop_signal() -> anyhow::Result<CancellationToken> {
    use tokio::signal::unix::{signal, SignalKind};
    let token = CancellationToken::new();
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let t = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        t.cancel();
    });
    Ok(token)
}

async fn demo_inner(args: &DemoArgs, dir: &Path) -> anyhow::Result<u8> {
    let stop = stop_signal()?;
    let t0 = Instant::now();
    let world = World::generate(args.world.seed, args.world.sizes());
    let sims = Sims::start().await.context("starting the simulators")?;
    let (mut refs, edits) = seed::seed_all(&sims, &world);
    let before = refs.len();
    seed::seed_webinar(&sims.webinar, &world, &mut refs);
    let registrants = refs.len() - before;
    let seeded = world.copies();
    eprintln!(
        "simulators up and seeded in {:.1}s: {} people, {} companies, {} deals, {} tickets, {} subscriptions, {} invoices",
        t0.elapsed().as_secs_f64(),
        world.people.len(),
        world.companies.len(),
        world.hubspot_deals.len() + world.salesforce_opportunities.len(),
        world.tickets.len(),
        world.subscriptions.len(),
        world.invoices()
    );
    for (name, url, n) in [
        ("hubspot", sims.hubspot.url(), seeded[0]),
        ("salesforce", sims.salesforce.url(), seeded[1]),
        ("zendesk", sims.zendesk.base_url(), seeded[2]),
        ("stripe", sims.stripe.base_url(), seeded[3]),
        ("webinar", sims.webinar.base_url(), registrants),
    ] {
        eprintln!("  {name:11} {url:34} {n:>6} records");
    }

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let mut env = sims.env();
    env.insert("REVSYNC_SERVER__LISTEN".into(), addr.to_string());
    env.insert(
        "REVSYNC_STORE__PATH".into(),
        dir.join("data").display().to_string(),
    );
    if let Some(url) = &args.postgres {
        let at = crate::store::PgStore::describe_url(url);
        let url2 = url.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            crate::store::PgStore::migrate(&url2)?;
            let store = crate::store::PgStore::open(&url2, 1)?;
            anyhow::ensure!(
                crate::store::copy::is_empty(&store)?,
                "it already holds revsync data: the demo's simulators start empty, so give it an empty database"
            );
            Ok(())
        })
        .await?
        .with_context(|| format!("the demo's PostgreSQL store at {at}"))?;
        eprintln!("canonical store: {at}");
        env.insert("REVSYNC_STORE__KIND".into(), "postgres".into());
        env.insert("REVSYNC_STORE__URL".into(), url.clone());
    }
    // The webinar platform announces new registrants to the daemon from now on.
    sims.webinar.set_webhook(
        &format!("http://{addr}/webhooks/{WEBINAR}"),
        &seed::webinar_config().webhook_secret,
    );
    let cfg = crate::config::load(dir, &Registry::builtin(), &env)
        .map_err(|e| anyhow::anyhow!("the demo configuration is invalid:\n{e}"))?;
    crate::telemetry::init(&cfg.daemon.log)?;
    // The same token file the daemon would generate at start: made here first so this
    // process can call the record endpoints with it.
    let token_file = crate::auth::token_path(&cfg.daemon.store.path);
    let (token, _) = crate::auth::load_or_create(&token_file)
        .with_context(|| format!("creating the admin token at {}", token_file.display()))?;

    // Another app on the same HubSpot account spends most of the 10-second budget now and
    // then: the daemon meets 429s it did not cause and must absorb them.
    let other_app = {
        let hs = sims.hubspot.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            hs.consume_burst(185);
        })
    };

    // A rep edits titles in Salesforce once the daemon has read both systems: those
    // people's HubSpot titles are now the older ones.
    let rep = {
        let sf = sims.salesforce.clone();
        tokio::spawn(async move {
            tokio::time::sleep(EDIT_AFTER).await;
            seed::edit_titles(&sf, &edits);
            edits.len()
        })
    };

    // People register for a webinar during the run: new leads, by webhook. The first one
    // attends a little later.
    let live = {
        let wb = sims.webinar.clone();
        tokio::spawn(async move {
            tokio::time::sleep(REGISTER_AFTER).await;
            let live = seed::register_live(&wb, LIVE_REGISTRANTS);
            tokio::time::sleep(ATTEND_AFTER).await;
            seed::attend(&wb, live.get(..1).unwrap_or_default());
            live
        })
    };

    // A rep wins deals in HubSpot once the daemon has read its deals through: what it
    // reads before is HubSpot's past, on which rules do not run. The workflow chain starts.
    let won_count = Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX));
    let risk = Arc::new(std::sync::atomic::AtomicU8::new(RISK_PENDING));
    let escalated = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let won = {
        let hs = sims.hubspot.clone();
        let (zd, st) = (sims.zendesk.clone(), sims.stripe.clone());
        let url = format!("http://{addr}/status");
        let hook = format!("http://{addr}/webhooks/{ZENDESK}");
        let count = won_count.clone();
        let risk = risk.clone();
        let escalated = escalated.clone();
        let base = format!("http://{addr}");
        let admin = admin_client(&token)?;
        let settle = move |won: Option<Vec<String>>| {
            let n = won.as_ref().map_or(0, Vec::len);
            count.store(n, std::sync::atomic::Ordering::Relaxed);
            won
        };
        tokio::spawn(async move {
            tokio::time::sleep(WIN_AFTER).await;
            let client = reqwest::Client::builder().no_proxy().build().ok()?;
            for _ in 0..600 {
                let read = match client.get(&url).send().await {
                    Ok(r) => r.json::<Value>().await.ok(),
                    Err(_) => None,
                };
                let through = read.as_ref().and_then(|s| {
                    s["connectors"]
                        .as_array()?
                        .iter()
                        .find(|c| c["id"] == HUBSPOT)?["read_through"]
                        .as_array()
                        .map(|o| o.iter().any(|o| o == "deals"))
                });
                if through == Some(true) {
                    let won = settle(Some(seed::win_deals(&hs, WON_DEALS)));
                    // Then one of those customers gets into trouble (rule 4).
                    let records = (&admin, base.as_str());
                    let step = at_risk_step(&zd, &st, &hook, records, &escalated).await;
                    risk.store(step, std::sync::atomic::Ordering::Relaxed);
                    return won;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            risk.store(RISK_SKIPPED, std::sync::atomic::Ordering::Relaxed);
            settle(None)
        })
    };

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(crate::app::serve(
        cfg,
        Registry::builtin(),
        listener,
        async move {
            let _ = stop_rx.await;
        },
    ));
    let base = format!("http://{addr}");
    // Now, not only in the summary: the run takes minutes and is worth watching.
    eprintln!("daemon on {base}  (status: {base}/status); inspect it while it syncs:");
    for command in inspect_commands(&base, &token_file) {
        eprintln!("  {command}");
    }

    let client = admin_client(&token)?;
    // The console, signed in by a one-time link: nothing to paste.
    if let Some(link) = console_link(&client, &base).await {
        eprintln!("console: {base}/  (one-time sign-in link: {link})");
    }
    let started = Instant::now();
    // The workflow chain has gaps with nothing queued (a rule waits for the next read):
    // not converged before every won deal has its onboarding ticket.
    let chain_settled = || {
        let won = won_count.load(std::sync::atomic::Ordering::Relaxed);
        if won == usize::MAX {
            return Some("the rep has not won the deals yet".to_owned());
        }
        let tickets = Chain::onboarding_tickets(&sims.zendesk);
        if tickets < won {
            return Some(format!("{tickets} of {won} onboarding tickets made"));
        }
        match risk.load(std::sync::atomic::Ordering::Relaxed) {
            RISK_PENDING => Some("a customer is about to fall past due".to_owned()),
            RISK_STARTED if Chain::at_risk(&sims.hubspot) == 0 => {
                Some("the past-due customer is not flagged at risk yet".to_owned())
            }
            _ => None,
        }
    };
    let outcome = converge(
        &client,
        &base,
        args.timeout_secs,
        &daemon,
        &stop,
        chain_settled,
    )
    .await;
    other_app.abort();
    if let Ok(n) = rep.await {
        eprintln!(
            "a rep edited {n} titles in Salesforce {}s into the run",
            EDIT_AFTER.as_secs()
        );
    }
    let live = live.await.unwrap_or_default();
    if !live.is_empty() {
        eprintln!(
            "{} people registered for a webinar {}s into the run",
            live.len(),
            REGISTER_AFTER.as_secs()
        );
    }
    refs.extend(live.iter().map(|id| (WEBINAR, "registrants", id.clone())));
    let won = won.await.ok().flatten().unwrap_or_default();
    if !won.is_empty() {
        eprintln!(
            "a rep won {} deals in HubSpot once its deals were read through",
            won.len(),
        );
    }
    let elapsed = started.elapsed();

    let last = get_json(&client, &format!("{base}/status")).await.ok();
    let summary = match &last {
        Some(_) => {
            let mut s = summarize(&client, &base, &world, &refs, &live).await;
            s.chain = Chain::count(&sims, &live, won.len());
            s.chain.escalated = escalated.load(std::sync::atomic::Ordering::Relaxed);
            Some(s)
        }
        None => None,
    };
    print_summary(
        &outcome,
        elapsed,
        last.as_ref(),
        summary.as_ref(),
        &base,
        &token_file,
    );

    let interrupted = matches!(outcome, Outcome::Interrupted);
    if !args.once && !interrupted && !daemon.is_finished() {
        let link = console_link(&client, &base)
            .await
            .unwrap_or_else(|| format!("{base}/"));
        println!("\nserving the console ({link}: a one-time sign-in link), {base}/status and the simulators; Ctrl-C to stop");
        stop.cancelled().await;
    }
    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(20), daemon).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => eprintln!("error: the daemon stopped on an error: {e:#}"),
        Ok(Err(e)) => eprintln!("error: the daemon task failed: {e}"),
        Err(_) => eprintln!("warning: the daemon did not stop within 20s"),
    }
    Ok(if matches!(outcome, Outcome::Converged) {
        exit::OK
    } else {
        exit::FAILURE
    })
}

#[derive(Debug)]
enum Outcome {
    Converged,
    TimedOut(String),
    Interrupted,
    DaemonStopped,
}

async fn get_json(client: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    Ok(client.get(url).send().await?.json().await?)
}

/// Converged: every connector has read successfully, every outbox is empty, and two
/// consecutive polls saw no new writes. Reads alone do not count against it: echoes of our
/// own writes keep arriving (Zendesk's exports hold back the latest minute) and change
/// nothing.
async fn converge(
    client: &reqwest::Client,
    base: &str,
    timeout_secs: u64,
    daemon: &tokio::task::JoinHandle<anyhow::Result<()>>,
    stop: &CancellationToken,
    unsettled: impl Fn() -> Option<String>,
) -> Outcome {
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(Duration::from_millis(120));
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(timeout_secs);
    let mut previous: Option<BTreeMap<String, Counts>> = None;
    let mut quiet_polls = 0;
    let mut last_line = Instant::now();
    let mut why = String::from("no answer from /status yet");
    let outcome = loop {
        if daemon.is_finished() {
            break Outcome::DaemonStopped;
        }
        if Instant::now() >= deadline {
            break Outcome::TimedOut(why);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(1000)) => {}
            _ = stop.cancelled() => break Outcome::Interrupted,
        }
        let Ok(status) = get_json(client, &format!("{base}/status")).await else {
            continue;
        };
        let now = counts(&status);
        let line = progress_line(&now, started.elapsed());
        bar.set_message(line.clone());
        if !tty && last_line.elapsed() >= Duration::from_secs(5) {
            eprintln!("{line}");
            last_line = Instant::now();
        }
        let behind: Vec<String> = CONNECTORS
            .iter()
            .filter(|c| now.get(**c).is_none_or(|s| !s.read_ok))
            .map(|c| format!("{c} has not completed a read"))
            .collect();
        let queued: u64 = now.values().map(|c| c.outbox).sum();
        let still = previous.as_ref().is_some_and(|p| {
            p.iter()
                .all(|(k, a)| now.get(k).is_some_and(|b| a.records_out == b.records_out))
        });
        let early = started.elapsed() < MIN_RUN;
        let waiting = unsettled();
        why = if !behind.is_empty() {
            behind.join(", ")
        } else if let Some(w) = &waiting {
            w.clone()
        } else if queued > 0 {
            format!("{queued} pushes still queued")
        } else if early {
            "still in the first read cycle".to_owned()
        } else {
            "writes still happening".to_owned()
        };
        quiet_polls = if behind.is_empty() && waiting.is_none() && queued == 0 && still && !early {
            quiet_polls + 1
        } else {
            0
        };
        previous = Some(now);
        if quiet_polls >= 2 {
            break Outcome::Converged;
        }
    };
    bar.finish_and_clear();
    outcome
}

fn progress_line(now: &BTreeMap<String, Counts>, t: Duration) -> String {
    let parts: Vec<String> = CONNECTORS
        .iter()
        .filter_map(|c| now.get(*c).map(|s| (c, s)))
        .map(|(c, s)| {
            format!(
                "{c} in {} out {} queued {}{}",
                s.records_in,
                s.records_out,
                s.outbox,
                if s.state == "backing_off" {
                    " (backing off)"
                } else {
                    ""
                }
            )
        })
        .collect();
    format!(
        "converging {:>5.1}s  {}",
        t.as_secs_f64(),
        parts.join(" | ")
    )
}

/// What the daemon says about the seeded copies.
#[derive(Default)]
struct Summary {
    /// kind -> (copies seeded and found, distinct canonical records)
    kinds: BTreeMap<String, (usize, BTreeSet<String>)>,
    missing: usize,
    conflicts: usize,
    examples: Vec<String>,
    /// connector -> copies revsync created beside one the system already had.
    second_copies: BTreeMap<String, usize>,
    webinar: WebinarLeads,
    /// `GET /kpi` at the end of the run.
    kpi: Option<Value>,
    /// MRR the seeded subscriptions add up to by MODEL.md's rule (USD minor units): what
    /// the KPI report must find.
    seeded_mrr: i64,
    chain: Chain,
}

/// What the shipped workflow rules did during the run, counted in the simulators:
/// registrants -> leads (-> MQLs) and deals won -> subscriptions -> onboarding tickets.
#[derive(Default)]
struct Chain {
    registrants: usize,
    /// Live registrants that are HubSpot contacts in lifecycle stage lead or MQL.
    leads: usize,
    mqls: usize,
    won: usize,
    /// Stripe subscriptions revsync made (`metadata[revsync_id]`).
    subscriptions: usize,
    /// Zendesk onboarding tickets revsync made (external id set).
    tickets: usize,
    /// HubSpot companies flagged at risk.
    at_risk: usize,
    /// The MRR those subscriptions add (USD minor units, by their price and quantity).
    mrr: i64,
    /// The agent's escalation in Zendesk reached the canonical ticket.
    escalated: bool,
}

impl Chain {
    /// HubSpot companies flagged at risk (rule 4).
    fn at_risk(hs: &revsync_hubspot::sim::Sim) -> usize {
        hs.ids("companies")
            .iter()
            .filter_map(|id| hs.get("companies", id))
            .filter(|p| p.get("at_risk").map(String::as_str) == Some("true"))
            .count()
    }

    /// Onboarding tickets revsync made in Zendesk (external id set, subject of rule 3).
    fn onboarding_tickets(zd: &revsync_zendesk::sim::Sim) -> usize {
        zd.ids("tickets")
            .iter()
            .filter_map(|id| zd.record("tickets", id))
            .filter(|t| {
                t["external_id"].is_string()
                    && t["subject"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("Onboarding:"))
            })
            .count()
    }

    fn count(sims: &seed::Sims, live: &[String], won: usize) -> Chain {
        let emails: BTreeSet<String> = sims
            .webinar
            .registrants()
            .iter()
            .filter(|r| live.iter().any(|id| r["id"].as_str() == Some(id)))
            .filter_map(|r| r["email"].as_str().map(str::to_lowercase))
            .collect();
        let hs = &sims.hubspot;
        let stage = |stage: &str| {
            hs.ids("contacts")
                .iter()
                .filter_map(|id| hs.get("contacts", id))
                .filter(|p| {
                    p.get("email")
                        .is_some_and(|e| emails.contains(&e.to_lowercase()))
                })
                .filter(|p| p.get("lifecyclestage").map(String::as_str) == Some(stage))
                .count()
        };
        let mqls = stage("marketingqualifiedlead");
        let st = &sims.stripe;
        let zd = &sims.zendesk;
        let made: Vec<Value> = st
            .ids("subscriptions")
            .iter()
            .filter_map(|id| st.get("subscriptions", id))
            .filter(|s| at(s, "/metadata/revsync_id").is_string())
            .collect();
        Chain {
            registrants: live.len(),
            leads: stage("lead") + mqls,
            mqls,
            won,
            subscriptions: made.len(),
            mrr: made
                .iter()
                .filter(|s| matches!(at(s, "/status").as_str(), Some("active" | "past_due")))
                .flat_map(|s| at(s, "/items/data").as_array().cloned().unwrap_or_default())
                .map(|i| {
                    at(&i, "/price/unit_amount").as_i64().unwrap_or(0)
                        * at(&i, "/quantity").as_i64().unwrap_or(0)
                })
                .sum(),
            tickets: Chain::onboarding_tickets(zd),
            at_risk: Chain::at_risk(hs),
            escalated: false,
        }
    }
}

/// Where the webinar's registrants went.
#[derive(Default)]
struct WebinarLeads {
    registrants: usize,
    /// Registrants no other system knew: new people.
    new_people: usize,
    /// New people now a HubSpot contact, and a Salesforce Lead.
    in_hubspot: usize,
    as_salesforce_leads: usize,
    /// Registered during the run (webhooks), and of those in both CRMs.
    live: usize,
    live_in_both: usize,
}

/// The seeded subscriptions' MRR: a trial pays nothing, an annual plan a twelfth a month
/// (rounded half to even per subscription, as MODEL.md says).
fn seeded_mrr(world: &World) -> i64 {
    world
        .subscriptions
        .iter()
        .filter(|s| s.status != "trialing")
        .filter_map(|s| {
            let &(_, cents, interval) = super::world::PLANS.get(s.plan)?;
            let amount = cents * s.quantity;
            Some(match interval {
                "year" => {
                    let r = crate::kpi::Ratio::new(i128::from(amount), 12)?;
                    i64::try_from(r.round_half_even()).ok()?
                }
                _ => amount,
            })
        })
        .sum()
}

async fn summarize(
    client: &reqwest::Client,
    base: &str,
    world: &World,
    refs: &[CopyRef],
    live: &[String],
) -> Summary {
    let mut s = Summary {
        kpi: get_json(client, &format!("{base}/kpi")).await.ok(),
        seeded_mrr: seeded_mrr(world),
        ..Summary::default()
    };
    // Which canonical record each seeded copy became, asked of the daemon itself.
    let views = lookup_all(
        client,
        base,
        refs.iter()
            .map(|(c, o, id)| format!("{c}:{o}:{id}"))
            .collect(),
        0,
    )
    .await;
    let mut canonical_ids = BTreeSet::new();
    let elsewhere: BTreeSet<String> = refs
        .iter()
        .filter(|(c, _, _)| *c != WEBINAR)
        .map(|(c, o, id)| format!("{c}:{o}:{id}"))
        .collect();
    for ((c, _, id), v) in refs.iter().zip(&views) {
        if *c == WEBINAR {
            webinar_lead(&mut s.webinar, v.as_ref(), live.contains(id), &elsewhere);
        }
    }
    for v in &views {
        let Some(v) = v else {
            s.missing += 1;
            continue;
        };
        let id = at(v, "/merged_into")
            .as_str()
            .or(at(v, "/id").as_str())
            .unwrap_or_default()
            .to_owned();
        let kind = at(v, "/kind").as_str().unwrap_or("?").to_owned();
        let e = s.kinds.entry(kind).or_default();
        e.0 += 1;
        e.1.insert(id.clone());
        canonical_ids.insert(id);
    }
    // Conflicts: a value that lost to another system's, as each record's audit keeps it.
    let audited = lookup_all(client, base, canonical_ids.into_iter().collect(), 200).await;
    let mut other_examples = Vec::new();
    let mut example_ids = Vec::new();
    let seeded: BTreeSet<String> = refs
        .iter()
        .map(|(c, o, id)| format!("{c}:{o}:{id}"))
        .collect();
    for v in audited.iter().flatten() {
        // A copy revsync created in a system that already held one (the world seeds no
        // duplicates in Stripe or Zendesk; in HubSpot and Salesforce only the rep's, which
        // are seeded too): "never create a second record", checked.
        let mut per: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for l in at(v, "/links").as_array().into_iter().flatten() {
            let c = at(l, "/connector").as_str().unwrap_or_default();
            let key = format!(
                "{c}:{}:{}",
                at(l, "/object").as_str().unwrap_or_default(),
                at(l, "/external_id").as_str().unwrap_or_default()
            );
            let e = per.entry(c).or_default();
            if seeded.contains(&key) {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
        for (c, (had, made)) in per {
            let extra = if had > 0 {
                made
            } else {
                made.saturating_sub(1)
            };
            if extra > 0 {
                *s.second_copies.entry(c.to_owned()).or_default() += extra;
            }
        }
        for a in at(v, "/audit").as_array().into_iter().flatten() {
            let (winner, loser) = match at(a, "/event").as_str() {
                Some("overwritten") => (at(a, "/new"), at(a, "/old")),
                Some("rejected") => {
                    let field = at(a, "/field").as_str().unwrap_or_default();
                    (member(at(v, "/fields"), field), at(a, "/value"))
                }
                _ => continue,
            };
            // The raw form of a normalized phone is not a disagreement.
            let raw = at(a, "/field")
                .as_str()
                .is_some_and(|f| f.ends_with("_raw"));
            // A relation not yet resolved losing to the resolved one is not a disagreement.
            let relation = at(winner, "/value").is_object() || at(loser, "/value").is_object();
            if raw
                || relation
                || at(winner, "/source") == at(loser, "/source")
                || at(winner, "/value") == at(loser, "/value")
            {
                continue;
            }
            s.conflicts += 1;
            // Examples: a newer value replacing another system's, the plainest case.
            let plain = at(a, "/event") == "overwritten" && at(a, "/field") != "title";
            if plain && other_examples.len() < 4 && !example_ids.contains(at(v, "/id")) {
                example_ids.push(at(v, "/id").clone());
                other_examples.push(example(v, a, winner, loser));
            }
        }
    }
    // Titles edited in both HubSpot and Salesforce: one won by each, when there are both.
    for later in [true, false] {
        let candidates = world
            .title_conflicts
            .iter()
            .filter(|c| c.salesforce_later == later && c.hubspot != c.salesforce)
            .take(10);
        for c in candidates {
            let url = format!("{base}/records/{}?audit=50", c.email);
            let Ok(v) = get_json(client, &url).await else {
                continue;
            };
            if let Some(line) = title_example(&v) {
                s.examples.push(line);
                break;
            }
        }
    }
    s.examples
        .extend(other_examples.into_iter().take(3 - s.examples.len().min(3)));
    s.examples.truncate(3);
    s
}

/// Counts one registrant: a new person (no copy seeded in another system: only the
/// webinar's and those revsync made) and where revsync put it.
fn webinar_lead(
    w: &mut WebinarLeads,
    view: Option<&Value>,
    live: bool,
    elsewhere: &BTreeSet<String>,
) {
    w.registrants += 1;
    w.live += usize::from(live);
    let Some(v) = view else {
        return;
    };
    let links: Vec<(String, String, String)> = at(v, "/links")
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let text = |p: &str| at(l, p).as_str().unwrap_or_default().to_owned();
            (text("/connector"), text("/object"), text("/external_id"))
        })
        .collect();
    let has = |c: &str, o: &str| links.iter().any(|(lc, lo, _)| lc == c && lo == o);
    let (hubspot, lead) = (has(HUBSPOT, "contacts"), has(SALESFORCE, "Lead"));
    let new = !links
        .iter()
        .any(|(c, o, id)| elsewhere.contains(&format!("{c}:{o}:{id}")));
    if new {
        w.new_people += 1;
        w.in_hubspot += usize::from(hubspot);
        w.as_salesforce_leads += usize::from(lead);
    }
    if live && hubspot && lead {
        w.live_in_both += 1;
    }
}

/// The audit entry where one system's title lost to the other's (our own writes coming
/// back as echoes are skipped: same system on both sides).
fn title_example(v: &Value) -> Option<String> {
    at(v, "/audit").as_array()?.iter().find_map(|a| {
        if at(a, "/field") != "title" {
            return None;
        }
        let (winner, loser) = match at(a, "/event").as_str()? {
            "overwritten" => (at(a, "/new"), at(a, "/old")),
            "rejected" => (at(v, "/fields/title"), at(a, "/value")),
            _ => return None,
        };
        (at(winner, "/source") != at(loser, "/source")
            && at(winner, "/value") != at(loser, "/value"))
        .then(|| example(v, a, winner, loser))
    })
}

fn example(v: &Value, a: &Value, winner: &Value, loser: &Value) -> String {
    let who = at(v, "/fields/email/value")
        .as_str()
        .or(at(v, "/fields/domain/value").as_str())
        .or(at(v, "/fields/name/value").as_str())
        .unwrap_or_else(|| at(v, "/id").as_str().unwrap_or("?"));
    let text = |j: &Value| match j {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    format!(
        "{} {}, {}: {} from {} ({}) won over {} from {} ({}) [rule: {}]; the loser is kept in the audit log",
        at(v, "/kind").as_str().unwrap_or("record"),
        who,
        at(a, "/field").as_str().unwrap_or("?"),
        text(at(winner, "/value")),
        at(winner, "/source").as_str().unwrap_or("?"),
        at(winner, "/source_time").as_str().unwrap_or("?"),
        text(at(loser, "/value")),
        at(loser, "/source").as_str().unwrap_or("?"),
        at(loser, "/source_time").as_str().unwrap_or("?"),
        at(a, "/reason").as_str().unwrap_or("-"),
    )
}

/// `GET /records/{query}` for every query, a few at a time; `None` where nothing matched.
async fn lookup_all(
    client: &reqwest::Client,
    base: &str,
    queries: Vec<String>,
    audit: usize,
) -> Vec<Option<Value>> {
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = Vec::with_capacity(queries.len());
    for q in queries {
        let client = client.clone();
        let sem = sem.clone();
        let mut url = match url::Url::parse(&format!("{base}/records/")) {
            Ok(u) => u,
            Err(_) => continue,
        };
        if let Ok(mut seg) = url.path_segments_mut() {
            seg.pop_if_empty().push(&q);
        }
        url.query_pairs_mut()
            .append_pair("audit", &audit.to_string());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.ok()?;
            let resp = client.get(url).send().await.ok()?;
            if !resp.status().is_success() {
                return None;
            }
            resp.json::<Value>().await.ok()
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.ok().flatten());
    }
    out
}

fn per_system(c: &BTreeMap<String, Counts>, f: impl Fn(&Counts) -> u64) -> String {
    CONNECTORS
        .iter()
        .map(|id| format!("{id} {}", thousands(c.get(*id).map_or(0, &f))))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_summary(
    outcome: &Outcome,
    elapsed: Duration,
    status: Option<&Value>,
    summary: Option<&Summary>,
    base: &str,
    token_file: &Path,
) {
    let secs = elapsed.as_secs_f64();
    match outcome {
        Outcome::Converged => println!("\nconverged in {secs:.1}s"),
        Outcome::TimedOut(why) => {
            println!("\nNOT converged after {secs:.1}s: {why}")
        }
        Outcome::Interrupted => println!("\ninterrupted after {secs:.1}s, before converging"),
        Outcome::DaemonStopped => println!("\nthe daemon stopped after {secs:.1}s"),
    }
    let Some(status) = status else {
        println!("no /status answer: no summary");
        return;
    };
    let c = counts(status);
    let read: u64 = c.values().map(|x| x.records_in).sum();
    println!("  records read        {}", per_system(&c, |x| x.records_in));
    if c.values().any(|x| x.records_reread > 0) {
        println!(
            "  read again          {}  (overlap windows and repeated events: nothing new)",
            per_system(&c, |x| x.records_reread)
        );
    }
    if c.values().any(|x| x.records_echoed > 0) {
        println!(
            "  own writes read back {}  (a poll sees each write revsync made once)",
            per_system(&c, |x| x.records_echoed)
        );
    }
    let mut canonical = 0;
    let mut merged = 0;
    let mut conflicts = 0;
    if let Some(s) = summary {
        let parts: Vec<String> = s
            .kinds
            .iter()
            .map(|(k, (_, ids))| format!("{k} {}", thousands(ids.len() as u64)))
            .collect();
        canonical = s.kinds.values().map(|(_, ids)| ids.len()).sum::<usize>();
        let copies: usize = s.kinds.values().map(|(n, _)| n).sum();
        merged = copies - canonical;
        conflicts = s.conflicts;
        println!(
            "  canonical records   {} ({})",
            thousands(canonical as u64),
            parts.join(", ")
        );
        println!(
            "  identities merged   {}  ({} seeded copies became {} records{})",
            thousands(merged as u64),
            thousands(copies as u64),
            thousands(canonical as u64),
            if s.missing > 0 {
                format!("; {} copies not found", s.missing)
            } else {
                String::new()
            }
        );
        let id = |k: &str| {
            status
                .pointer(&format!("/identity/{k}"))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        println!(
            "  fuzzy duplicates    {} joined on their score, {} pairs sent to review ({} waiting: `revsync dupes list`), {} kept apart by a guard",
            thousands(id("scored_merged")),
            thousands(id("to_review")),
            thousands(id("pending_review")),
            thousands(id("vetoed"))
        );
        println!(
            "  conflicts resolved  {}  (values two systems disagreed on; each loser is in its record's audit log)",
            thousands(conflicts as u64)
        );
        for e in &s.examples {
            println!("    - {e}");
        }
    }
    println!(
        "  records written     {}",
        per_system(&c, |x| x.records_out)
    );
    if let Some(w) = summary.map(|s| &s.webinar).filter(|w| w.registrants > 0) {
        println!(
            "  webinar leads       {} registrants (type: rest), {} of them new people: {} now HubSpot contacts, {} Salesforce Leads; {} registered during the run (by webhook), {} of them in both CRMs",
            thousands(w.registrants as u64),
            thousands(w.new_people as u64),
            thousands(w.in_hubspot as u64),
            thousands(w.as_salesforce_leads as u64),
            w.live,
            w.live_in_both
        );
    }
    if let Some(c) = summary
        .map(|s| &s.chain)
        .filter(|c| c.registrants + c.won > 0)
    {
        println!(
            "  workflows           {} registered -> {} leads ({} MQL) in HubSpot; {} deals won -> {} Stripe subscriptions -> {} Zendesk onboarding tickets; past due with an urgent ticket -> {} HubSpot companies at risk",
            c.registrants, c.leads, c.mqls, c.won, c.subscriptions, c.tickets, c.at_risk
        );
    }
    let mrr_usd = summary
        .and_then(|s| s.kpi.as_ref())
        .and_then(|k| k.pointer("/now/USD/mrr"))
        .and_then(Value::as_i64);
    if let Some(k) = summary.and_then(|s| s.kpi.as_ref()) {
        for (cur, v) in k["now"].as_object().into_iter().flatten() {
            let money = |minor: Option<i64>| {
                let m = minor.unwrap_or(0);
                format!(
                    "{}.{:02} {cur}",
                    thousands((m / 100).unsigned_abs()),
                    (m % 100).abs()
                )
            };
            println!(
                "  revenue (KPIs)      MRR {} from {} paying customers, ARR {}; open pipeline {} over {} deals",
                money(v["mrr"].as_i64()),
                v["customers"].as_u64().unwrap_or(0),
                money(v["arr"].as_i64()),
                money(v["open_pipeline"].as_i64()),
                v["open_deals"].as_u64().unwrap_or(0),
            );
        }
        // The months before the run, from Stripe's own history of the subscriptions.
        for (cur, _) in k["now"].as_object().into_iter().flatten() {
            let months: Vec<String> = k["periods"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    let m = p.pointer(&format!("/currencies/{cur}/mrr_end"))?.as_i64()?;
                    Some(format!(
                        "{} {}",
                        p["start"].as_str()?.get(..7)?,
                        thousands((m / 100).unsigned_abs())
                    ))
                })
                .collect();
            if !months.is_empty() {
                println!(
                    "                      MRR at each month's end ({cur}): {}",
                    months.join(" · ")
                );
            }
        }
        println!(
            "                      month by month: revsync kpi --url {base} --token \"$(cat {})\"",
            token_file.display()
        );
    }
    if let Some(s) = summary.filter(|s| !s.second_copies.is_empty()) {
        let total: usize = s.second_copies.values().sum();
        let parts: Vec<String> = s
            .second_copies
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        println!(
            "  second copies made  {total}  ({}): created before that system's own copy was read",
            parts.join(", ")
        );
    }
    let throttled: u64 = c.values().map(|x| x.throttled).sum();
    println!(
        "  429s met, absorbed  {}  ({})",
        thousands(throttled),
        per_system(&c, |x| x.throttled)
    );
    let dead: u64 = c.values().map(|x| x.dead_letters).sum();
    let queued: u64 = c.values().map(|x| x.outbox).sum();
    println!(
        "  dead letters        {}  ({}); still queued {}",
        thousands(dead),
        per_system(&c, |x| x.dead_letters),
        thousands(queued)
    );
    println!("  status              {base}/status   records: {base}/records/<email|domain|id>");
    println!(
        "  admin token         in {0} (records and /admin need it):\n                      curl -H \"Authorization: Bearer $(cat {0})\" {base}/records/<email>",
        token_file.display()
    );
    for (i, command) in inspect_commands(base, token_file).iter().enumerate() {
        let label = if i == 0 { "inspect with" } else { "" };
        println!("  {label:20}{command}");
    }
    // One line for scripts.
    let mut line = format!(
        "summary: converged={} secs={secs:.1}",
        matches!(outcome, Outcome::Converged)
    );
    for id in CONNECTORS {
        let x = c.get(id).cloned().unwrap_or_default();
        line += &format!(
            " {id}_read={} {id}_reread={} {id}_written={}",
            x.records_in, x.records_reread, x.records_out
        );
    }
    if let Some(w) = summary.map(|s| &s.webinar) {
        line += &format!(
            " webinar_new={} webinar_new_in_hubspot={} webinar_new_salesforce_leads={} webinar_live={} webinar_live_in_both={}",
            w.new_people, w.in_hubspot, w.as_salesforce_leads, w.live, w.live_in_both
        );
    }
    if let Some(s) = summary {
        // Months of the report, before this one, whose MRR the history gives.
        let past = s
            .kpi
            .as_ref()
            .and_then(|k| k["periods"].as_array())
            .map_or(0, |ps| {
                ps.iter()
                    .rev()
                    .skip(1)
                    .filter(|p| {
                        p.pointer("/currencies/USD/mrr_end")
                            .is_some_and(|m| m.as_i64().unwrap_or(0) > 0)
                    })
                    .count()
            });
        line += &format!(
            " mrr_usd={} mrr_seeded={} mrr_past_months={past}",
            mrr_usd.unwrap_or(-1),
            s.seeded_mrr
        );
        let c = &s.chain;
        line += &format!(
            " chain_registered={} chain_leads={} chain_mqls={} chain_won={} chain_subscriptions={} chain_tickets={} chain_escalated={} chain_at_risk={} mrr_chain={}",
            c.registrants, c.leads, c.mqls, c.won, c.subscriptions, c.tickets, u8::from(c.escalated), c.at_risk, c.mrr
        );
    }
    let id = |k: &str| {
        status
            .pointer(&format!("/identity/{k}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    line += &format!(
        " read={read} canonical={canonical} merged={merged} scored_merged={} review={} vetoed={} conflicts={conflicts} throttled={throttled} dead_letters={dead}",
        id("scored_merged"),
        id("to_review"),
        id("vetoed")
    );
    println!("{line}");
}

/// The CLI commands that look into this run: they need neither its config nor any secret.
/// A one-time console sign-in link from the demo's daemon (15 minutes, one use).
async fn console_link(client: &reqwest::Client, base: &str) -> Option<String> {
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        client.post(format!("{base}/admin/console/link")).send(),
    )
    .await
    .ok()?
    .ok()?;
    let v = r.json::<Value>().await.ok()?;
    Some(format!("{base}{}", v.get("path")?.as_str()?))
}

fn inspect_commands(base: &str, token_file: &Path) -> [String; 3] {
    let cli = format!("--url {base} --token \"$(cat {})\"", token_file.display());
    [
        format!("revsync status {cli}"),
        format!("revsync records get <email> {cli}"),
        format!("revsync dlq list {cli}"),
    ]
}

pub fn sim(args: SimArgs) -> u8 {
    let Some(rt) = runtime() else {
        return exit::FAILURE;
    };
    rt.block_on(async {
        match sim_inner(args).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                exit::FAILURE
            }
        }
    })
}

async fn sim_inner(args: SimArgs) -> anyhow::Result<u8> {
    // Warnings reach stderr: a request to an endpoint the simulator lacks is logged once as
    // "not simulated", so a client run against it shows the gap.
    crate::telemetry::init(&crate::config::LogConfig {
        level: "warn".to_owned(),
        ..Default::default()
    })?;
    let stop = stop_signal()?;
    let world = World::generate(args.world.seed, args.world.sizes());
    let mut refs = Vec::new();
    let hook = args.webhook_url.clone();
    if hook.is_some() && matches!(args.system, System::Salesforce | System::Zendesk) {
        eprintln!(
            "warning: the {:?} simulator does not send webhooks; --webhook-url is ignored",
            args.system
        );
    }
    // (base URL, real address, credentials to print)
    let (url, lines): (String, Vec<String>) = match args.system {
        System::Hubspot => {
            let mut opts = seed::hubspot_options(hook);
            if let Some(n) = args.rate_limit {
                opts.burst_limit = n;
            }
            let s = revsync_hubspot::sim::Sim::start(opts.clone()).await;
            seed::seed_hubspot(&s, &world, &mut refs);
            (
                s.url(),
                vec![
                    format!("token: {}   (Authorization: Bearer)", opts.token),
                    format!(
                        "client_secret: {}   (v3 webhook signatures)",
                        opts.client_secret
                    ),
                    format!(
                        "limits: {} requests per {}s, {} searches per second",
                        opts.burst_limit,
                        opts.burst_window.as_secs(),
                        opts.search_per_sec
                    ),
                ],
            )
        }
        System::Salesforce => {
            let s = revsync_salesforce::sim::Sim::start().await?;
            let edits = seed::seed_salesforce(&s, &world, &mut refs);
            seed::edit_titles(&s, &edits);
            // After seeding, so the allowance is the client's alone.
            if let Some(n) = args.rate_limit {
                s.with(|st| {
                    st.api_used = 0;
                    st.api_max = u64::from(n);
                });
            }
            (
                s.url(),
                vec![
                    format!("token_url: {}", s.token_url()),
                    format!(
                        "client_id: {}  client_secret: {}  refresh_token: {}",
                        revsync_salesforce::sim::CLIENT_ID,
                        revsync_salesforce::sim::CLIENT_SECRET,
                        revsync_salesforce::sim::REFRESH_TOKEN
                    ),
                    format!(
                        "organization_id: {}  external_id_field: {}",
                        revsync_salesforce::sim::ORG_ID,
                        revsync_salesforce::sim::EXTERNAL_ID_FIELD
                    ),
                    format!("limits: {} API requests per day", s.with(|st| st.api_max)),
                ],
            )
        }
        System::Zendesk => {
            let mut cfg = seed::zendesk_config();
            if let Some(n) = args.rate_limit {
                cfg.requests_per_window = n;
            }
            let s = revsync_zendesk::sim::Sim::start(cfg.clone()).await;
            seed::seed_zendesk(&s, &world, &mut refs);
            (
                s.base_url(),
                vec![
                    format!(
                        "email: {}  token: {}   (api_token auth)",
                        cfg.email, cfg.token
                    ),
                    format!("webhook_secret: {}", cfg.webhook_secret),
                    format!(
                        "limits: {} requests and {} exports per {}s",
                        cfg.requests_per_window,
                        cfg.exports_per_window,
                        cfg.window.as_secs()
                    ),
                ],
            )
        }
        System::Stripe => {
            let mut cfg = seed::stripe_config(hook);
            if let Some(n) = args.rate_limit {
                cfg.endpoint_limit = n;
            }
            let s = revsync_stripe::sim::Sim::start(cfg.clone()).await;
            seed::seed_stripe(&s, &world, &mut refs);
            let mut lines = vec![
                format!("secret_key: {}   (Authorization: Bearer)", cfg.secret_key),
                format!(
                    "limits: {} requests per second per endpoint",
                    cfg.endpoint_limit
                ),
            ];
            if let Some((u, secret)) = &cfg.webhook {
                lines.push(format!("webhooks to {u}, signed with {secret}"));
            }
            (s.base_url(), lines)
        }
        System::Webinar => {
            let mut cfg = seed::webinar_config();
            if let Some(n) = args.rate_limit {
                cfg.requests_per_minute = n;
            }
            let s = revsync_rest::sim::Sim::start(cfg.clone()).await;
            seed::seed_webinar(&s, &world, &mut refs);
            let mut lines = vec![
                format!("token: {}   (Authorization: Bearer)", cfg.tokens.join(", ")),
                format!(
                    "limits: {} requests per minute per token",
                    cfg.requests_per_minute
                ),
            ];
            if let Some(u) = &hook {
                s.set_webhook(u, &cfg.webhook_secret);
                lines.push(format!(
                    "registrant.created webhooks to {u}, signed with {}",
                    cfg.webhook_secret
                ));
            } else {
                lines.push(format!("webhook_secret: {}", cfg.webhook_secret));
            }
            (s.base_url(), lines)
        }
    };
    let url = match args.port {
        Some(port) => forward(port, &url).await?,
        None => url,
    };
    println!("{:?} simulator: {url}", args.system);
    for l in lines {
        println!("  {l}");
    }
    println!(
        "  {} records loaded (world seed {})",
        refs.len(),
        args.world.seed
    );
    println!("Ctrl-C to stop");
    stop.cancelled().await;
    Ok(exit::OK)
}

/// The simulators pick their own port; `--port` forwards a fixed loopback port to it.
async fn forward(port: u16, url: &str) -> anyhow::Result<String> {
    let parsed = url::Url::parse(url)?;
    let target: std::net::SocketAddr = format!(
        "{}:{}",
        parsed.host_str().unwrap_or("127.0.0.1"),
        parsed.port().unwrap_or(80)
    )
    .parse()?;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    let bound = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let mut public = parsed;
    let _ = public.set_port(Some(bound));
    Ok(public.to_string().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_directories_of_demos_no_longer_running_are_removed_and_ours_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let ours = tmp
            .path()
            .join(format!("{RUN_DIR_PREFIX}{}-1", std::process::id()));
        // Pids are at most 2^22 on Linux: this one never runs.
        let killed = tmp.path().join(format!("{RUN_DIR_PREFIX}4294967-2"));
        let other = tmp.path().join("someone-elses-dir");
        for d in [&ours, &killed, &other] {
            std::fs::create_dir_all(d.join("data")).unwrap();
        }
        let removed = remove_stale_runs(tmp.path());
        assert_eq!(removed, vec![killed.clone()]);
        assert!(ours.exists() && other.exists() && !killed.exists());
    }
}
