//! Workflows (issue 22) through the engine and the runner: a rule runs once per trigger
//! and its acts land with the event they consume, across a restart too; a loop stops at
//! the depth bound; a dry run changes nothing; a bad expression is refused by `check`;
//! a webhook goes out signed, once, and is retried on a 5xx.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::*;
use revsync::config::{self, Config};
use revsync::engine::Engine;
use revsync::registry::Registry;
use revsync::store::{SledStore, Store, Table};
use revsync::workflows::{RunStatus, Runner};
use revsync_sdk::{Kind, Value};
use serde_json::json;

const WON: &str = r#"version: 1
rules:
  - name: won-deal-onboarding
    description: a won deal of 1,000 or more opens an onboarding ticket
    on: { changed: deal.status, to: won }
    when: "record.amount.amount_minor >= 100000"
    do:
      - create:
          kind: ticket
          route: [zendesk-main]
          fields:
            subject: "Onboarding: {{ record.name }}"
            priority: normal
            status: new
      - set:
          fields: { forecast_category: closed }
"#;

fn setup(dir: &Path, rules: &str) -> Config {
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    std::fs::write(dir.join("workflows/rules.yaml"), rules).unwrap();
    config_in(dir, "")
}

fn open(config: &Config, dir: &Path) -> (Arc<Engine>, Runner) {
    // sled's flusher thread lets go of the file lock a moment after the last handle is
    // dropped: a reopen right after a close may find it held (seen under load).
    let mut tries = 0;
    let store = loop {
        match SledStore::open(&dir.join("data"), 0, 16) {
            Ok(s) => break s,
            Err(e) if tries < 100 && format!("{e:?}").contains("could not acquire lock") => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    let store: Arc<dyn Store> = Arc::new(store);
    let engine = Arc::new(engine(config, store));
    engine.emit_events(true).unwrap();
    // The systems were read once already: what comes now is a change, not their past.
    for object in ["deals", "contacts", "companies"] {
        engine.mark_backfilled("hubspot-main", object).unwrap();
    }
    let runner = Runner::new(engine.clone(), config.workflows.clone());
    (engine, runner)
}

/// Step until nothing is left, at most `max` times.
fn drain(runner: &Runner, max: usize) -> usize {
    let mut steps = 0;
    while runner.step().unwrap() > 0 {
        steps += 1;
        assert!(steps < max, "the runner did not settle in {max} steps");
    }
    steps
}

fn deal(e: &Engine, secs: i64, stage: &str) {
    apply_one(
        e,
        "hubspot-main",
        "deals",
        "d1",
        secs,
        json!({"dealname": "Acme renewal", "amount": "1500", "deal_currency_code": "EUR", "dealstage": stage}),
    );
}

fn tickets(store: &dyn Store) -> Vec<revsync_sdk::Record> {
    store
        .scan(Table::Records, b"", None, 10_000)
        .unwrap()
        .into_iter()
        .filter_map(|(_, v)| revsync::engine::codec::decode_record(&v).ok())
        .filter(|r| r.kind == Kind::Ticket && r.merged_into.is_none())
        .collect()
}

#[test]
fn a_won_deal_runs_its_rule_once_and_the_acts_land_with_the_event() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), WON);
    let (e, runner) = open(&config, dir.path());
    deal(&e, 1, "appointmentscheduled");
    drain(&runner, 10);
    assert!(
        tickets(e.store().as_ref()).is_empty(),
        "an open deal triggers nothing"
    );

    deal(&e, 2, "closedwon");
    drain(&runner, 10);
    let t = tickets(e.store().as_ref());
    assert_eq!(t.len(), 1);
    assert_eq!(
        t[0].value("subject"),
        Some(&Value::Text("Onboarding: Acme renewal".into()))
    );
    assert_eq!(
        t[0].fields["subject"].from.connector,
        "workflow:won-deal-onboarding"
    );
    let d = e.find("hubspot-main:deals:d1").unwrap().unwrap();
    assert_eq!(
        d.value("forecast_category"),
        Some(&Value::Text("closed".into()))
    );

    let runs = runner.runs(None, 10).unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, RunStatus::Done);
    assert_eq!(runs[0].record, d.id);
    assert_eq!(runs[0].outcomes.len(), 2);
    assert_eq!(runner.stats("won-deal-onboarding").runs, 1);

    // The same report again (a replay, an overlap window) changes nothing: no run.
    deal(&e, 2, "closedwon");
    drain(&runner, 10);
    assert_eq!(tickets(e.store().as_ref()).len(), 1);
    assert!(e.events(10).unwrap().is_empty(), "every event consumed");
}

#[test]
fn a_restart_neither_loses_nor_repeats_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), WON);
    {
        let (e, _runner) = open(&config, dir.path());
        deal(&e, 1, "appointmentscheduled");
        deal(&e, 2, "closedwon");
        // Stopped before the runner took the events: they wait in the store.
        e.store().flush().unwrap();
    }
    {
        let (e, runner) = open(&config, dir.path());
        assert_eq!(e.events(10).unwrap().len(), 2);
        drain(&runner, 10);
        assert_eq!(tickets(e.store().as_ref()).len(), 1);
        e.store().flush().unwrap();
    }
    let (e, runner) = open(&config, dir.path());
    assert_eq!(drain(&runner, 10), 0, "nothing left to run after a restart");
    assert_eq!(tickets(e.store().as_ref()).len(), 1);
    assert_eq!(runner.runs(None, 10).unwrap().len(), 1);
}

#[test]
fn rules_that_trigger_each_other_stop_at_the_depth_bound() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(
        dir.path(),
        r#"version: 1
rules:
  - name: ping
    on: { changed: person.title }
    do: [ { set: { fields: { custom.echo: "{{ record.title }}" } } } ]
  - name: pong
    on: { changed: person.custom.echo }
    do: [ { set: { fields: { title: "{{ record.custom.echo }}!" } } } ]
"#,
    );
    let (e, runner) = open(&config, dir.path());
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "1",
        1,
        json!({"email": "ada@acme.com", "jobtitle": "CTO"}),
    );
    drain(&runner, 20);
    let rec = e.find("ada@acme.com").unwrap().unwrap();
    // ping (1), pong (2), ping (3), pong (4): the fifth write would exceed max_depth 4.
    assert_eq!(rec.value("title"), Some(&Value::Text("CTO!!".into())));
    let failed: Vec<_> = runner
        .runs(None, 50)
        .unwrap()
        .into_iter()
        .filter(|r| r.status == RunStatus::Failed)
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let error = failed[0].error.as_deref().unwrap();
    assert!(
        error.contains("chain stopped") && error.contains("max_depth is 4"),
        "{error}"
    );
}

#[test]
fn a_dry_run_says_what_it_would_do_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), WON);
    let (e, runner) = open(&config, dir.path());
    deal(&e, 1, "closedwon");
    drain(&runner, 10);
    let deal_id = e.find("hubspot-main:deals:d1").unwrap().unwrap().id;
    let before: Vec<_> = Table::ALL
        .iter()
        .map(|t| e.store().scan(*t, b"", None, 100_000).unwrap())
        .collect();
    let d = runner.dry_run("won-deal-onboarding", deal_id).unwrap();
    assert!(d.condition_holds);
    assert_eq!(d.trigger, "deal.status changed to won");
    assert!(
        d.actions[0].starts_with("create ticket in zendesk-main: "),
        "{:?}",
        d.actions
    );
    assert!(
        d.actions[0].contains(r#"subject="Onboarding: Acme renewal""#),
        "{:?}",
        d.actions
    );
    let after: Vec<_> = Table::ALL
        .iter()
        .map(|t| e.store().scan(*t, b"", None, 100_000).unwrap())
        .collect();
    assert!(before == after, "a dry run wrote to the store");
    let err = runner
        .dry_run("won-deal-onboarding", uuid::Uuid::now_v7())
        .unwrap_err();
    assert!(err.starts_with("no record"), "{err}");
    assert!(runner
        .dry_run("nope", deal_id)
        .unwrap_err()
        .contains("no workflow rule `nope`"));
}

#[test]
fn check_refuses_a_bad_expression_naming_file_rule_field_and_position() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("workflows")).unwrap();
    std::fs::write(
        dir.path().join("workflows/bad.yaml"),
        "version: 1\nrules:\n  - name: broken\n    on: { created: person }\n    when: \"record.email ==\"\n    do: [ { set: { fields: { lifecycle_stage: lead } } } ]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("revsync.yaml"), "version: 1\n").unwrap();
    let (_, errors) = config::load_all(
        dir.path(),
        &Registry::builtin(),
        &std::collections::BTreeMap::<String, String>::new(),
    );
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(
        text[0].contains("bad.yaml: rule `broken`: field `rules[0].when`: line 1, column"),
        "{}",
        text[0]
    );
}

#[test]
fn a_webhook_goes_out_signed_once_and_is_retried_after_a_5xx() {
    let seen: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let fail_first = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    {
        let (seen, fail_first) = (seen.clone(), fail_first.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let (seen, fail_first) = (seen.clone(), fail_first.clone());
                async move {
                    let h = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_owned();
                    seen.lock().unwrap().push((
                        h("x-revsync-signature"),
                        h("idempotency-key"),
                        body,
                    ));
                    if fail_first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                        axum::http::StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        axum::http::StatusCode::OK
                    }
                }
            }),
        );
        rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    }
    let dir = tempfile::tempdir().unwrap();
    let config = setup(
        dir.path(),
        &format!(
            r#"version: 1
rules:
  - name: notify
    on: {{ changed: deal.status, to: won }}
    do:
      - webhook:
          url: http://{addr}/hook
          secret: a-long-enough-secret
          body: {{ deal: "{{{{ record.name }}}}", amount: "{{{{ record.amount.amount_minor }}}}" }}
"#
        ),
    );
    let (e, runner) = open(&config, dir.path());
    deal(&e, 1, "closedwon");
    drain(&runner, 10);
    let client = reqwest::Client::new();
    assert_eq!(rt.block_on(runner.send_webhooks(&client)).unwrap(), 1);
    // Refused with a 503: kept, and not due again at once.
    assert_eq!(rt.block_on(runner.send_webhooks(&client)).unwrap(), 0);
    assert_eq!(seen.lock().unwrap().len(), 1);
    // Due now: make every kept job due and send again.
    let jobs = e.store().scan(Table::Workflows, b"w\0", None, 10).unwrap();
    assert_eq!(jobs.len(), 1);
    let mut job: revsync::workflows::runner::WebhookJob =
        serde_json::from_slice(&jobs[0].1).unwrap();
    assert_eq!(job.attempts, 1);
    job.not_before = 0;
    let mut batch = revsync::store::WriteBatch::new();
    batch.put(
        Table::Workflows,
        jobs[0].0.clone(),
        serde_json::to_vec(&job).unwrap(),
    );
    e.store().write(batch).unwrap();
    assert_eq!(rt.block_on(runner.send_webhooks(&client)).unwrap(), 1);
    assert_eq!(
        rt.block_on(runner.send_webhooks(&client)).unwrap(),
        0,
        "delivered: gone"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].1, seen[1].1,
        "one idempotency key for every attempt"
    );
    let body: serde_json::Value = serde_json::from_str(&seen[1].2).unwrap();
    assert_eq!(body, json!({"deal": "Acme renewal", "amount": 150000}));
    let (sig, _, raw) = &seen[1];
    let t: i64 = sig
        .split(',')
        .next()
        .unwrap()
        .trim_start_matches("t=")
        .parse()
        .unwrap();
    assert_eq!(
        *sig,
        revsync::workflows::webhook::signature("a-long-enough-secret", t, raw)
    );
    assert_eq!(runner.stats("notify").webhooks_sent, 1);
}

#[test]
fn a_created_record_goes_only_where_its_route_says_and_finds_an_existing_one_first() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(
        dir.path(),
        r#"version: 1
rules:
  - name: champion
    on: { changed: deal.status, to: won }
    do:
      - create:
          kind: person
          route: [hubspot-main]
          fields: { email: "champion+{{ record.name | lower | replace(' ', '-') }}@acme.com", lifecycle_stage: customer }
"#,
    );
    let (e, runner) = open(&config, dir.path());
    deal(&e, 1, "closedwon");
    drain(&runner, 10);
    let p = e.find("champion+acme-renewal@acme.com").unwrap().unwrap();
    let queued = |c: &str| {
        e.outbox(c, 100)
            .unwrap()
            .into_iter()
            .filter(|(_, o)| o.record == p.id)
            .count()
    };
    assert_eq!(
        (
            queued("hubspot-main"),
            queued("salesforce-main"),
            queued("zendesk-main")
        ),
        (1, 0, 0)
    );
    // A second deal won: the person is found by email and updated, not made twice.
    apply_one(
        &e,
        "hubspot-main",
        "deals",
        "d2",
        5,
        json!({"dealname": "Acme renewal", "amount": "10", "deal_currency_code": "EUR", "dealstage": "closedwon"}),
    );
    drain(&runner, 10);
    let runs = runner.runs(Some("champion"), 10).unwrap();
    assert_eq!(runs.len(), 2);
    assert!(
        matches!(
            runs[0].outcomes[0],
            revsync::engine::ActOutcome::Unchanged(id) if id == p.id
        ),
        "{:?}",
        runs[0].outcomes
    );
}

#[test]
fn the_shipped_examples_compile_against_the_demo_connectors() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/workflows");
    let ids: Vec<String> = ["hubspot", "salesforce", "stripe", "webinar", "zendesk"]
        .map(String::from)
        .to_vec();
    let mut errors = Vec::new();
    let rules = revsync::workflows::load(
        examples.parent().unwrap(),
        &ids,
        &std::collections::BTreeMap::<String, String>::new(),
        &mut errors,
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(rules.0.len(), 5);
}

#[test]
fn a_first_read_runs_only_the_rules_that_ask_for_the_past() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(
        dir.path(),
        &WON.replace("won-deal-onboarding", "live-only").replace(
            "rules:\n",
            "rules:\n  - name: with-past\n    on: { changed: deal.status, to: won, backfill: true }\n    do: [ { set: { fields: { custom.seen: \"yes\" } } } ]\n",
        ),
    );
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("data"), 0, 16).unwrap());
    let e = Arc::new(engine(&config, store));
    e.emit_events(true).unwrap();
    let runner = Runner::new(e.clone(), config.workflows.clone());
    // HubSpot's deals not read through once yet: this is its past.
    deal(&e, 1, "closedwon");
    drain(&runner, 10);
    assert!(tickets(e.store().as_ref()).is_empty());
    let d = e.find("hubspot-main:deals:d1").unwrap().unwrap();
    assert_eq!(d.value("custom.seen"), Some(&Value::Text("yes".into())));
    assert_eq!(runner.runs(Some("live-only"), 10).unwrap().len(), 0);
}

/// A record a rule made is no system's past: a system's first read (backfill) that says
/// something new of it runs the rules on it, while the same read of a record that system
/// always had runs none.
#[test]
fn a_first_read_of_a_record_a_rule_made_carries_the_chain_on() {
    let dir = tempfile::tempdir().unwrap();
    let rules = r#"version: 1
rules:
  - name: won-deal-account
    on: { changed: deal.status, to: won }
    do:
      - create:
          kind: organization
          route: [zendesk-main]
          fields: { name: "Account {{ record.name }}", domain: account.example }
  - name: renamed
    on: { changed: organization.name, to: Renamed by an agent }
    do:
      - set:
          fields: { custom.seen: "yes" }
"#;
    let config = setup(dir.path(), rules);
    let (e, runner) = open(&config, dir.path());
    deal(&e, 1, "closedwon");
    drain(&runner, 10);
    let made = e
        .find("account.example")
        .unwrap()
        .expect("the rule's account");
    // Zendesk's first read, never read through: the account revsync made there, renamed by
    // an agent, and an organization Zendesk always had.
    let later = chrono::Utc::now().timestamp() + 60;
    let mut ours = change(
        "organizations",
        "701",
        later,
        json!({"name": "Renamed by an agent"}),
    );
    ours.canonical_id = Some(made.id);
    let theirs = change(
        "organizations",
        "702",
        later,
        json!({"name": "Renamed by an agent"}),
    );
    e.apply("zendesk-main", page("organizations", vec![ours, theirs]))
        .unwrap();
    drain(&runner, 10);
    let made = e.record(made.id).unwrap().unwrap();
    assert_eq!(made.value("custom.seen"), Some(&Value::Text("yes".into())));
    let globex = e.find("zendesk-main:organizations:702").unwrap().unwrap();
    assert_eq!(
        globex.value("custom.seen"),
        None,
        "Zendesk's past ran a rule"
    );
}

/// The real binary with a HubSpot simulator: a contact's new title runs a rule that writes
/// the lead status back to HubSpot; the run shows on the admin API, the console page,
/// `/metrics` and `revsync workflows runs`, and `workflows test` changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_runs_a_rule_and_every_surface_shows_it() {
    use revsync_hubspot::sim::{Sim, SimOptions};
    const ADMIN: &str = "admin-token-for-workflow-tests";
    let sim = Sim::start(SimOptions::default()).await;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let contact = sim.create_at(
        "contacts",
        &[("email", "ada@example.com"), ("jobtitle", "Engineer")],
        now_ms - 60_000,
    );
    let dir = tempfile::tempdir().unwrap();
    write_daemon_config(
        dir.path(),
        "hubspot",
        &format!(
            "version: 1\nid: hubspot\ntype: hubspot\nparams:\n  token: {}\n  base_url: '{}'\npoll:\n  interval_secs: 1\nobjects:\n  contacts:\n    kind: person\n    direction: both\n    fields:\n      email: email\n      jobtitle: title\n      hs_lead_status: lead_status\n",
            sim.options().token,
            sim.url()
        ),
    );
    std::fs::create_dir_all(dir.path().join("workflows")).unwrap();
    std::fs::write(
        dir.path().join("workflows/leads.yaml"),
        "version: 1\nrules:\n  - name: buyer-is-a-lead\n    on: { changed: person.title }\n    when: \"'Head' in record.title\"\n    do:\n      - set: { fields: { lead_status: OPEN } }\n",
    )
    .unwrap();
    let port = free_port();
    let mut daemon = start_daemon(dir.path(), port, ADMIN);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        async move {
            http.get(path)
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    // Read once (HubSpot's past: nothing runs), then the title changes in HubSpot.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !get(format!("{base}/records/ada@example.com"))
        .await
        .contains("Engineer")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the contact was never read"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    sim.update("contacts", &contact, &[("jobtitle", "Head of Sales")]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let held = sim.get("contacts", &contact).unwrap();
        if held.get("hs_lead_status").map(String::as_str) == Some("OPEN") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "HubSpot never got the lead status: {held:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let runs: serde_json::Value =
        serde_json::from_str(&get(format!("{base}/admin/workflows/runs")).await).unwrap();
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs:#}");
    assert_eq!(runs["runs"][0]["status"], "done");
    let id = runs["runs"][0]["record"].as_str().unwrap().to_owned();
    let metrics = get(format!("{base}/metrics")).await;
    assert!(
        metrics.contains(r#"revsync_workflow_runs_total{rule="buyer-is-a-lead",outcome="done"} 1"#),
        "{metrics}"
    );
    let out = cli(dir.path(), &["workflows", "runs"], port, ADMIN);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("done      buyer-is-a-lead") && text.contains("lead_status=\"OPEN\""),
        "{text}"
    );
    let out = cli(
        dir.path(),
        &["workflows", "test", "buyer-is-a-lead", &id],
        port,
        ADMIN,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("-> true") && text.contains("would set person"),
        "{text}"
    );
    let after: serde_json::Value =
        serde_json::from_str(&get(format!("{base}/admin/workflows/runs")).await).unwrap();
    assert_eq!(after["runs"].as_array().unwrap().len(), 1, "a dry run ran");
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}
