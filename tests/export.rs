//! `revsync records export`: every person with its fields, every system's id, the record
//! merged into it and each source copy, as CSV and JSON lines; read from the store when no
//! daemon runs, and streamed by the daemon (token enforced) when one does.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::*;
use revsync::store::{SledStore, Store};
use serde_json::json;

const ADMIN: &str = "admin-token-for-export-tests";
/// A title with every character CSV must quote: a comma, quotes and a line break.
const TITLE: &str = "Head of \"R&D\", EMEA\nLondon";

/// Ada: one person seen by HubSpot and Salesforce (one record from the start). Kim: two
/// records (HubSpot and Zendesk) until HubSpot's copy takes Zendesk's email and they
/// merge. One company, which a person export must leave out.
fn populate(dir: &Path) -> (String, String) {
    config_with_env(
        dir,
        "server:\n  admin_token: ${REVSYNC_TEST_ADMIN}\n",
        &[("REVSYNC_TEST_ADMIN", ADMIN)],
    );
    // A custom field for the `custom` column.
    let hubspot = dir.join("connectors/hubspot.yaml");
    let text = std::fs::read_to_string(&hubspot).unwrap();
    std::fs::write(
        &hubspot,
        text.replace("jobtitle: title,", "jobtitle: title, tier: custom.tier,"),
    )
    .unwrap();
    let env = BTreeMap::from([("REVSYNC_TEST_ADMIN".to_owned(), ADMIN.to_owned())]);
    let cfg = revsync::config::load(dir, &revsync::registry::Registry::builtin(), &env).unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&cfg.daemon.store.path, 100, 16).unwrap());
    let e = engine(&cfg, store.clone());
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "101",
        1,
        json!({"email": "Ada@Example.com", "firstname": "Ada", "jobtitle": TITLE, "tier": "gold"}),
    );
    apply_one(
        &e,
        "salesforce-main",
        "Contact",
        "003A",
        2,
        json!({"Email": "ada@example.com", "LastName": "Lovelace"}),
    );
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "102",
        3,
        json!({"email": "old@x.io", "firstname": "Kim"}),
    );
    apply_one(
        &e,
        "zendesk-main",
        "users",
        "z1",
        4,
        json!({"email": "kim@x.io", "name": "Kim Park"}),
    );
    let absorbed = e.find("kim@x.io").unwrap().unwrap().id.to_string();
    let r = apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "102",
        5,
        json!({"email": "kim@x.io", "firstname": "Kim"}),
    );
    assert_eq!(r.merged, 1);
    let survivor = e.find("kim@x.io").unwrap().unwrap().id.to_string();
    assert_ne!(survivor, absorbed);
    apply_one(
        &e,
        "hubspot-main",
        "companies",
        "c1",
        6,
        json!({"name": "Acme", "domain": "acme.io"}),
    );
    store.flush().unwrap();
    (survivor, absorbed)
}

fn revsync(dir: &Path, args: &[&str], port: u16) -> std::process::Output {
    cli(dir, args, port, ADMIN)
}

fn ok(out: &std::process::Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The CSV as maps of column -> cell, one per row, parsed by a real CSV reader.
fn rows(csv_text: &[u8]) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let mut r = csv::Reader::from_reader(csv_text);
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = r
        .records()
        .map(|rec| {
            let rec = rec.unwrap();
            header
                .iter()
                .cloned()
                .zip(rec.iter().map(str::to_owned))
                .collect()
        })
        .collect();
    (header, rows)
}

fn check_csv(csv_text: &[u8], survivor: &str, absorbed: &str) {
    let (header, rows) = rows(csv_text);
    let prefix = [
        "id",
        "kind",
        "archived",
        "created_at",
        "updated_at",
        "email",
    ];
    assert_eq!(&header[..prefix.len()], prefix);
    let tail = [
        "custom",
        "hubspot-main_id",
        "salesforce-main_id",
        "zendesk-main_id",
        "merged_from",
        "sources",
    ];
    assert_eq!(&header[header.len() - tail.len()..], tail);
    assert_eq!(
        rows.len(),
        2,
        "two persons, the company and the absorbed record left out"
    );

    let ada = rows
        .iter()
        .find(|r| r["email"] == "ada@example.com")
        .unwrap();
    assert_eq!(ada["kind"], "person");
    assert_eq!(ada["title"], TITLE, "quoted and read back whole");
    assert_eq!(ada["first_name"], "Ada");
    assert_eq!(ada["last_name"], "Lovelace");
    assert_eq!(ada["custom"], r#"{"tier":"gold"}"#);
    assert_eq!(ada["hubspot-main_id"], "101");
    assert_eq!(ada["salesforce-main_id"], "003A");
    assert_eq!(ada["zendesk-main_id"], "");
    assert_eq!(ada["merged_from"], "");
    assert_eq!(
        ada["sources"],
        "hubspot-main:contacts:101;salesforce-main:Contact:003A"
    );

    let kim = rows.iter().find(|r| r["email"] == "kim@x.io").unwrap();
    assert_eq!(kim["id"], survivor);
    assert_eq!(kim["last_name"], "Park");
    assert_eq!(kim["hubspot-main_id"], "102");
    assert_eq!(kim["zendesk-main_id"], "z1");
    assert_eq!(kim["merged_from"], absorbed);
    assert_eq!(
        kim["sources"],
        "hubspot-main:contacts:102;zendesk-main:users:z1"
    );
}

#[test]
fn exports_every_person_with_ids_merges_and_sources_from_the_store_and_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (survivor, absorbed) = populate(dir.path());
    let port = free_port();

    // No daemon: the CLI walks the store itself, into a file.
    let file = dir.path().join("persons.csv");
    let out = revsync(
        dir.path(),
        &[
            "records",
            "export",
            "--kind",
            "person",
            "--out",
            file.to_str().unwrap(),
        ],
        port,
    );
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("exported 2 records of person"));
    let local = std::fs::read(&file).unwrap();
    check_csv(&local, &survivor, &absorbed);
    assert!(!dir.path().join("persons.csv.partial").exists());

    // A daemon named by URL that does not answer: an error, and no file at all.
    let missing = dir.path().join("missing.csv");
    let out = revsync(
        dir.path(),
        &[
            "records",
            "export",
            "--kind",
            "person",
            "--url",
            &format!("http://127.0.0.1:{}", free_port()),
            "--out",
            missing.to_str().unwrap(),
        ],
        port,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no daemon answers"));
    assert!(!missing.exists() && !dir.path().join("missing.csv.partial").exists());

    // With the daemon running (it holds the store's lock), the CLI streams from it.
    let daemon = start_daemon(dir.path(), port, ADMIN);

    let out = revsync(dir.path(), &["records", "export", "--kind", "person"], port);
    ok(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&local),
        "the daemon's stream and the CLI's own walk agree byte for byte"
    );

    let out = revsync(
        dir.path(),
        &["records", "export", "--kind", "person", "--format", "jsonl"],
        port,
    );
    ok(&out);
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let by_email = |e: &str| lines.iter().find(|l| l["fields"]["email"] == e).unwrap();
    let kim = by_email("kim@x.io");
    assert_eq!(kim["id"], survivor.as_str());
    assert_eq!(kim["kind"], "person");
    assert_eq!(kim["fields"]["last_name"], "Park");
    assert_eq!(
        kim["ids"],
        json!({"hubspot-main": ["102"], "zendesk-main": ["z1"]})
    );
    assert_eq!(kim["merged_from"], json!([absorbed]));
    assert_eq!(
        kim["sources"][1],
        json!({"connector": "zendesk-main", "object": "users", "external_id": "z1"})
    );
    let ada = by_email("ada@example.com");
    assert_eq!(ada["fields"]["title"], TITLE);
    assert_eq!(ada["fields"]["custom.tier"], "gold");

    let out = revsync(
        dir.path(),
        &["records", "export", "--kind", "organization"],
        port,
    );
    ok(&out);
    let (_, orgs) = rows(&out.stdout);
    assert_eq!(orgs.len(), 1);
    assert_eq!(orgs[0]["domain"], "acme.io");
    assert_eq!(orgs[0]["hubspot-main_id"], "c1");

    // The endpoint: the admin token, and a clear 400 for a kind that does not exist.
    let base = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let url = format!("{base}/records/export?kind=person");
        assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
        let r = http.get(&url).bearer_auth("wrong").send().await.unwrap();
        assert_eq!(r.status(), 401);
        let r = http.get(&url).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
        let r = http
            .get(format!("{base}/records/export?kind=people"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v["message"]
            .as_str()
            .unwrap()
            .contains("unknown kind `people`"));
    });
    assert_eq!(stop_daemon(daemon), Some(0));
}
