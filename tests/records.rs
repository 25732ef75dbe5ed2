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

/// A store holding one person, from HubSpot and Salesforce; the engine over it, still open.
fn populate(dir: &std::path::Path) -> (Arc<dyn Store>, revsync::engine::Engine) {
    let cfg = config_with_env(
        dir,
        "server:\n  admin_token: ${REVSYNC_TEST_ADMIN}\n",
        &[("REVSYNC_TEST_ADMIN", ADMIN)],
    );
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&cfg.daemon.store.path, 100, 16).unwrap());
    let e = engine(&cfg, store.clone());
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
