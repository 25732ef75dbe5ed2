//! `revsync records get` (the unified view of one customer) and `revsync dlq list`: read
//! from the store when no daemon runs, and through the daemon's admin endpoint (token
//! enforced) when one does.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use common::*;
use revsync::store::{SledStore, Store};
use serde_json::json;

const ADMIN: &str = "admin-token-for-tests";

/// An empty sled store in `dir`, as the daemon there will find it, and the engine over it.
fn open(dir: &std::path::Path) -> (Arc<dyn Store>, revsync::engine::Engine) {
    let cfg = config_with_env(
        dir,
        "server:\n  admin_token: ${REVSYNC_TEST_ADMIN}\n",
        &[("REVSYNC_TEST_ADMIN", ADMIN)],
    );
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&cfg.daemon.store.path, 100, 16).unwrap());
    let e = engine(&cfg, store.clone());
    (store, e)
}

/// A store holding one person, from HubSpot and Salesforce; the engine over it, still open.
fn populate(dir: &std::path::Path) -> (Arc<dyn Store>, revsync::engine::Engine) {
    let (store, e) = open(dir);
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "101",
        1,
        json!({"email": "Ada@Example.com", "firstname": "Ada", "jobtitle": "CTO"}),
    );
    e.apply("salesforce-main", page("Contact", vec![change("Contact", "003A", 2, json!({"Email": "ada@example.com", "LastName": "Lovelace", "Title": "Chief Technology Officer"}))])).unwrap();
    store.flush().unwrap();
    (store, e)
}

/// The CLI run exited 0; its stderr shows when not.
fn succeeded(out: &std::process::Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn revsync(dir: &std::path::Path, args: &[&str], port: u16) -> std::process::Output {
    cli(dir, args, port, ADMIN)
}

#[test]
fn shows_one_customer_with_sources_links_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    drop(populate(dir.path()));
    let port = free_port();

    // No daemon: the CLI reads the store itself.
    let out = revsync(dir.path(), &["records", "get", "ADA@example.com"], port);
    succeeded(&out);
    let table = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "person ",
        "title",
        "Chief Technology Officer",
        "salesforce-main",
        "hubspot-main:contacts:101",
        "salesforce-main:Contact:003A",
        "CTO (hubspot-main) replaced by Chief Technology Officer (salesforce-main): newer",
    ] {
        assert!(table.contains(needle), "missing {needle:?} in\n{table}");
    }
    let out = revsync(dir.path(), &["records", "get", "nobody@example.com"], port);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no record matches `nobody@example.com`"));

    // With the daemon running (it holds the store's lock), the CLI asks it.
    let daemon = start_daemon(dir.path(), port, ADMIN);
    let base = format!("http://127.0.0.1:{port}");
    let out = revsync(
        dir.path(),
        &["records", "get", "hubspot-main:contacts:101", "--json"],
        port,
    );
    succeeded(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "person");
    assert_eq!(v["fields"]["email"]["value"], "ada@example.com");
    assert_eq!(v["fields"]["title"]["source"], "salesforce-main");
    assert_eq!(v["links"].as_array().unwrap().len(), 2);
    assert_eq!(v["audit"][0]["event"], "overwritten");

    // The endpoint itself refuses requests without the admin token.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let r = http
            .get(format!("{base}/records/ada@example.com"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = http
            .get(format!("{base}/records/ada@example.com"))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = http
            .get(format!("{base}/records/ada@example.com"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = http
            .get(format!("{base}/records/nobody@example.com"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    });
    assert_eq!(stop_daemon(daemon), Some(0));
}

/// `dlq list` with no daemon running reads the dead letters from the store, as `records
/// get` does, and shows the same list the daemon then serves.
#[test]
fn dlq_list_reads_the_store_when_no_daemon_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (store, e) = populate(dir.path());
    // Zendesk refused the create of the person the two other systems hold.
    let (seq, entry) = e.outbox("zendesk-main", 1).unwrap().remove(0);
    let letter = revsync::engine::codec::DeadLetter {
        entry,
        request: r#"{"email":"ada@example.com"}"#.into(),
        class: "permanent".into(),
        detail: "email is invalid".into(),
        status: Some(422),
        response: Some("RecordInvalid".into()),
        failed_ts: 0,
    };
    e.dead_letter("zendesk-main", &[seq], &letter).unwrap();
    store.flush().unwrap();
    drop((e, store));
    let port = free_port();

    let out = revsync(dir.path(), &["dlq", "list"], port);
    let stdout = String::from_utf8_lossy(&out.stdout);
    succeeded(&out);
    for needle in [
        "zendesk-main:",
        "users",
        "permanent email is invalid",
        "status 422",
        "RecordInvalid",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in\n{stdout}");
    }
    let out = revsync(dir.path(), &["dlq", "list", "--json"], port);
    let offline: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        offline["dead_letters"].as_array().unwrap().len(),
        1,
        "{offline}"
    );

    // The daemon, once it runs, serves the same list.
    let daemon = start_daemon(dir.path(), port, ADMIN);
    let out = revsync(dir.path(), &["dlq", "list", "--json"], port);
    assert_eq!(stop_daemon(daemon), Some(0));
    let online: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(online, offline);
}

/// `revsync quality`: each problem counted against the system its value came from, with
/// examples, the same from the store and from the daemon; a name typed in capitals is
/// fixed at ingest and so is no problem; `records get` lists the record's problems.
#[test]
fn quality_counts_each_problem_per_system_with_examples() {
    let dir = tempfile::tempdir().unwrap();
    let (store, e) = open(dir.path());
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "1",
        1,
        json!({"email": "JOHN.SMITH@mailinator.com", "firstname": "JOHN", "lastname": "o'brien"}),
    );
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "2",
        1,
        json!({"email": "not-an-address", "firstname": "Ann"}),
    );
    e.apply(
        "salesforce-main",
        page(
            "Contact",
            vec![
                change(
                    "Contact",
                    "003A",
                    2,
                    json!({"Email": "info@acme.com", "LastName": "Lee", "Phone": "555-01"}),
                ),
                change(
                    "Contact",
                    "003B",
                    2,
                    json!({"Email": "kim@acme.com", "LastName": "Kim", "Phone": "+1 415 555 0123"}),
                ),
            ],
        ),
    )
    .unwrap();
    let john = e.find("hubspot-main:contacts:1").unwrap().unwrap();
    assert_eq!(
        john.value("first_name"),
        Some(&revsync_sdk::Value::Text("John".into()))
    );
    assert_eq!(
        john.value("last_name"),
        Some(&revsync_sdk::Value::Text("O'Brien".into()))
    );
    store.flush().unwrap();
    drop((e, store));
    let port = free_port();

    let out = revsync(dir.path(), &["quality", "--json"], port);
    succeeded(&out);
    let offline: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(offline["scanned"]["person"], 4, "{offline}");
    assert_eq!(offline["with_problems"]["person"], 3, "{offline}");
    let count = |v: &serde_json::Value, problem: &str| {
        v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["problem"] == problem)
            .map(|p| {
                (
                    p["total"].as_u64().unwrap(),
                    p["by_source"].clone(),
                    p["examples"][0]["value"].clone(),
                )
            })
    };
    assert_eq!(
        count(&offline, "email_disposable"),
        Some((
            1,
            json!({"hubspot-main": 1}),
            json!("john.smith@mailinator.com")
        ))
    );
    assert_eq!(
        count(&offline, "email_invalid"),
        Some((1, json!({"hubspot-main": 1}), json!("not-an-address")))
    );
    assert_eq!(
        count(&offline, "email_role"),
        Some((1, json!({"salesforce-main": 1}), json!("info@acme.com")))
    );
    assert_eq!(
        count(&offline, "phone_invalid"),
        Some((1, json!({"salesforce-main": 1}), json!("555-01")))
    );
    assert_eq!(
        count(&offline, "name_case"),
        None,
        "fixed at ingest: {offline}"
    );

    // One system's values only; an unknown connector is named.
    let out = revsync(
        dir.path(),
        &["quality", "--connector", "salesforce-main"],
        port,
    );
    succeeded(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "person.email: email is a role address",
        "salesforce-main 1",
        "\"555-01\"",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert!(!text.contains("disposable"), "{text}");
    let out = revsync(dir.path(), &["quality", "--connector", "nope"], port);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no connector `nope`"));

    // The record says what is wrong with it.
    let out = revsync(
        dir.path(),
        &["records", "get", "salesforce-main:Contact:003A"],
        port,
    );
    succeeded(&out);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("QUALITY")
            && table.contains(
                "phone: phone is not a valid number for its country (from salesforce-main)"
            ),
        "{table}"
    );

    // The daemon serves the same report.
    let daemon = start_daemon(dir.path(), port, ADMIN);
    let out = revsync(dir.path(), &["quality", "--json"], port);
    assert_eq!(stop_daemon(daemon), Some(0));
    succeeded(&out);
    let online: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(online, offline);
}

/// `quality.fix_name_case: false` keeps names as typed, and the report then finds them.
#[test]
fn names_stay_as_typed_when_the_fix_is_off_and_the_report_finds_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), "quality:\n  fix_name_case: false\n");
    let e = engine(&cfg, Arc::new(revsync::store::MemStore::new()));
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "1",
        1,
        json!({"email": "jane@acme.com", "firstname": "JANE", "lastname": "doe"}),
    );
    let jane = e.find("hubspot-main:contacts:1").unwrap().unwrap();
    assert_eq!(
        jane.value("first_name"),
        Some(&revsync_sdk::Value::Text("JANE".into()))
    );
    let report = e.quality(None).unwrap();
    let names: Vec<&str> = report
        .problems
        .iter()
        .filter(|p| p.problem == revsync::engine::quality::Problem::NameCase)
        .map(|p| p.field.as_str())
        .collect();
    assert_eq!(names.len(), 2, "{report:?}");
    assert!(names.contains(&"first_name") && names.contains(&"last_name"));
}

/// `revsync records unmerge` through the daemon: the Salesforce copy that joined Ada's
/// record by email is a record of its own again; a second try is refused with the reason.
#[test]
fn records_unmerge_splits_a_copy_off_through_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (store, e) = populate(dir.path());
    let ada = e.find("hubspot-main:contacts:101").unwrap().unwrap();
    assert_eq!(ada.links.len(), 2);
    drop((e, store));
    let port = free_port();
    let daemon = start_daemon(dir.path(), port, ADMIN);
    let id = ada.id.to_string();
    let split_sf = [
        "records",
        "unmerge",
        &id,
        "--source",
        "salesforce-main:Contact:003A",
    ];
    let out = revsync(dir.path(), &split_sf, port);
    let split_line = String::from_utf8_lossy(&out.stdout).into_owned();
    let get = |q: &str| {
        let out = revsync(dir.path(), &["records", "get", q, "--json"], port);
        succeeded(&out);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let crm = get("hubspot-main:contacts:101");
    let sf = get("salesforce-main:Contact:003A");
    let table = revsync(dir.path(), &["records", "get", &id], port);
    // An operator merges them again by hand, and undoes that too.
    let sf_id = sf["id"].as_str().unwrap().to_owned();
    let merged = revsync(dir.path(), &["records", "merge", &id, &sf_id], port);
    let rejoined = get("salesforce-main:Contact:003A");
    let undone = revsync(dir.path(), &["records", "unmerge", &sf_id], port);
    let apart = get("salesforce-main:Contact:003A");
    let nonsense = revsync(dir.path(), &["records", "merge", &id, "nope"], port);
    let again = revsync(dir.path(), &split_sf, port);
    let bad = revsync(dir.path(), &["records", "unmerge", "not-an-id"], port);
    assert_eq!(stop_daemon(daemon), Some(0));
    succeeded(&out);
    assert!(
        split_line.contains("split off") && split_line.contains(&id),
        "{split_line}"
    );
    assert_eq!(crm["id"], id.as_str());
    assert_ne!(sf["id"], id.as_str());
    // Each holds its own copy's values again: the CRM title, Salesforce's last name.
    assert_eq!(crm["fields"]["title"]["value"], "CTO");
    assert!(crm["fields"]["last_name"].is_null(), "{crm}");
    assert_eq!(sf["fields"]["last_name"]["value"], "Lovelace");
    assert!(
        crm["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["event"] == "unmerged" && a["by"] == "an operator"),
        "{crm}"
    );
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("split off")
            && table.contains("with its copy salesforce-main:Contact:003A by an operator"),
        "{table}"
    );
    succeeded(&merged);
    assert!(String::from_utf8_lossy(&merged.stdout).contains(&format!("merged into {id}")));
    assert_eq!(rejoined["id"], id.as_str());
    succeeded(&undone);
    assert_eq!(apart["id"], sf_id.as_str());
    assert_eq!(nonsense.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&nonsense.stderr).contains("canonical ids"));
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("no merge of salesforce-main:Contact:003A")
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("canonical id"));
}
