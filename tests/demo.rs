//! `revsync demo --once` and `revsync sim`, run as the real binary against the simulators.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_revsync");

/// `key=value` pairs of the demo's one-line `summary:` output.
fn summary(stdout: &str) -> std::collections::BTreeMap<String, String> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("summary:"))
        .unwrap_or_else(|| panic!("no summary line in:\n{stdout}"));
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn num(s: &std::collections::BTreeMap<String, String>, key: &str) -> u64 {
    s.get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number `{key}` in {s:?}"))
}

/// Run the demo's printed `revsync status --url U --token "$(cat F)"` (as JSON), the
/// token read from F as the shell would.
fn inspect_live(line: &str) -> std::process::Output {
    let words: Vec<&str> = line.split_whitespace().collect();
    let url = words
        .iter()
        .position(|w| *w == "--url")
        .and_then(|i| words.get(i + 1))
        .unwrap_or_else(|| panic!("no --url in {line}"));
    let file = line
        .split_once("$(cat ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .unwrap_or_else(|| panic!("no token file in {line}"))
        .0;
    let token = std::fs::read_to_string(file).expect("token file");
    Command::new(BIN)
        .args(["status", "--json", "--url", url, "--token", token.trim()])
        .env_remove("REVSYNC_CONFIG_DIR")
        .output()
        .expect("run revsync status")
}

#[test]
fn demo_once_converges_and_merges_identities() {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(["demo", "--once"])
        .args(common::SMALL_WORLD)
        .args(["--timeout-secs", "150"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start revsync demo");
    // The demo says how to inspect it as soon as its daemon serves: that command, run
    // there and then, reaches the daemon mid-sync.
    let log = child.stderr.take().expect("stderr");
    let watcher = std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut live = None;
        for line in BufReader::new(log).lines() {
            let line = line.expect("stderr line");
            if live.is_none() && line.trim_start().starts_with("revsync status --url") {
                live = Some(inspect_live(&line));
            }
            lines.push(line);
        }
        (lines, live)
    });
    // Bounded: the demo's own timeout is 150 s (Zendesk is written to only once its
    // exports served the minute they hold back, a minute after the first read); the
    // summary and shutdown take a few more.
    let deadline = Duration::from_secs(190);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            panic!("revsync demo --once still running after {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (lines, live) = watcher.join().expect("stderr reader");
    let stderr = lines.join("\n");
    assert!(
        status.success(),
        "exit {status:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("converged in"), "{stdout}");
    // Printed before the sync converged (the rep's edits are told once it has), and the
    // command worked against the running daemon.
    let at = |needle: &str| lines.iter().position(|l| l.contains(needle));
    let inspect = at("revsync status --url").unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        inspect < at("a rep edited").unwrap_or(usize::MAX),
        "{stderr}"
    );
    let live = live.expect("inspect command run");
    assert!(
        live.status.success(),
        "{}",
        String::from_utf8_lossy(&live.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&live.stdout).expect("status JSON");
    assert_eq!(v["connectors"].as_array().map(Vec::len), Some(5), "{v}");
    for heading in [
        "records read",
        "canonical records",
        "identities merged",
        "fuzzy duplicates",
        "conflicts resolved",
        "records written",
        "429s",
    ] {
        assert!(stdout.contains(heading), "no `{heading}` in:\n{stdout}");
    }

    let s = summary(&stdout);
    assert_eq!(s["converged"], "true");
    for system in ["hubspot", "salesforce", "zendesk", "stripe"] {
        assert!(
            num(&s, &format!("{system}_read")) > 0,
            "nothing read from {system}"
        );
    }
    let canonical = num(&s, "canonical");
    assert!(canonical > 0);
    assert!(
        canonical < num(&s, "read"),
        "identities should merge: {s:?}"
    );
    assert!(num(&s, "merged") > 0, "{s:?}");
    // A Lead a rep typed again (a nickname, no email) joins its person on its score.
    assert!(num(&s, "scored_merged") > 0, "{s:?}");

    // Webinar registrants (a `type: rest` connector) arrive as leads in both CRMs, those
    // registered during the run too (by signed webhook).
    assert!(stdout.contains("webinar leads"), "{stdout}");
    assert!(num(&s, "webinar_read") > 0, "{s:?}");
    let new = num(&s, "webinar_new");
    assert!(new > 0, "{s:?}");
    assert_eq!(num(&s, "webinar_new_in_hubspot"), new, "{s:?}");
    assert_eq!(num(&s, "webinar_new_salesforce_leads"), new, "{s:?}");
    assert_eq!(num(&s, "webinar_live"), 3, "{s:?}");
    assert_eq!(num(&s, "webinar_live_in_both"), 3, "{s:?}");
    assert_eq!(num(&s, "dead_letters"), 0, "{s:?}");

    // The revenue KPIs, read from the canonical store, find the MRR the seeded
    // subscriptions add up to.
    assert!(stdout.contains("revenue (KPIs)"), "{stdout}");
    assert!(num(&s, "mrr_seeded") > 0, "{s:?}");
    // Plus what the subscriptions the workflow rules made add.
    assert!(num(&s, "mrr_chain") > 0, "{s:?}");
    assert_eq!(
        num(&s, "mrr_usd"),
        num(&s, "mrr_seeded") + num(&s, "mrr_chain"),
        "{s:?}"
    );
    // The two months before this one have MRR: the subscriptions' past came from Stripe
    // (their start dates and past invoices), not from watching it happen.
    assert_eq!(num(&s, "mrr_past_months"), 2, "{s:?}");

    // The shipped workflow rules carry what was captured on: the live registrants are
    // HubSpot leads (the one who attended an MQL), and each deal the rep won is one Stripe
    // subscription and one Zendesk onboarding ticket, counted in the simulators.
    assert!(stdout.contains("workflows "), "{stdout}");
    assert_eq!(num(&s, "chain_registered"), 3, "{s:?}");
    assert_eq!(num(&s, "chain_leads"), 3, "{s:?}");
    assert_eq!(num(&s, "chain_mqls"), 1, "{s:?}");
    let won = num(&s, "chain_won");
    assert!(won > 0, "{s:?}");
    assert_eq!(num(&s, "chain_subscriptions"), won, "{s:?}");
    assert_eq!(num(&s, "chain_tickets"), won, "{s:?}");
    // An agent makes one onboarding ticket urgent in Zendesk moments after the rule made
    // it (often within the same whole second): the canonical ticket turns urgent.
    assert_eq!(num(&s, "chain_escalated"), 1, "{s:?}");
    // One of those customers falls past due with an urgent ticket: flagged at risk.
    assert_eq!(num(&s, "chain_at_risk"), 1, "{s:?}");
}

#[test]
fn sim_serves_one_system_with_its_credentials() {
    let mut child = Command::new(BIN)
        .args(["sim", "hubspot", "--people", "20", "--companies", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start revsync sim");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut url = None;
    let mut token = None;
    for line in lines.by_ref().take(10) {
        let line = line.expect("read");
        if let Some(u) = line.split("simulator: ").nth(1) {
            url = Some(u.trim().to_owned());
        }
        if let Some(t) = line.trim().strip_prefix("token: ") {
            token = t.split_whitespace().next().map(str::to_owned);
        }
        if line.starts_with("Ctrl-C") {
            break;
        }
    }
    let (url, token) = (
        url.expect("base URL printed"),
        token.expect("token printed"),
    );
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body: serde_json::Value = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{url}/crm/v3/objects/contacts?limit=100"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("simulator answers")
            .json()
            .await
            .expect("json")
    });
    let _ = child.kill();
    let _ = child.wait();
    let results = body["results"].as_array().expect("results");
    assert!(!results.is_empty(), "{body}");
}
