//! The PostgreSQL store (issue 23): the `Store` contract, migrations, the engine's
//! guarantees on it, the daemon's refusal of an old schema, and `store copy` both ways.
//!
//! Each test makes a database of its own on the server at `REVSYNC_TEST_POSTGRES`
//! (default: the machine's PostgreSQL on 127.0.0.1:5432, user postgres, trust auth) and
//! drops it afterwards.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::process::Command;
use std::sync::Arc;

use common::*;
use revsync::store::{copy, PgStore, SledStore, Store, Table, WriteBatch};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_revsync");

fn server() -> String {
    std::env::var("REVSYNC_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Runs `sql` on the server's maintenance database, from a runtime of its own.
fn admin(sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&server(), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "no PostgreSQL at {} ({e}): start it, or point REVSYNC_TEST_POSTGRES at one",
                    server()
                )
            });
        tokio::spawn(conn);
        client.batch_execute(sql).await.unwrap();
    });
}

/// A database made for one test, dropped with it.
struct Db {
    name: String,
}

impl Db {
    fn new(tag: &str) -> Self {
        let name = format!(
            "revsync_test_{tag}_{}_{}",
            std::process::id(),
            fastrand::u32(..)
        );
        admin(&format!("CREATE DATABASE {name}"));
        Db { name }
    }

    fn url(&self) -> String {
        let base = server();
        let root = base.rsplit_once('/').map_or(base.as_str(), |(r, _)| r);
        format!("{root}/{}", self.name)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        admin(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

#[test]
fn the_store_contract_holds_on_postgres_after_migration() {
    let db = Db::new("contract");
    let err = PgStore::open(&db.url(), 2).err().unwrap().to_string();
    assert!(
        err.contains("schema version 0") && err.contains("revsync migrate"),
        "{err}"
    );
    assert_eq!(PgStore::migrate(&db.url()).unwrap(), (0, 1));
    assert_eq!(PgStore::migrate(&db.url()).unwrap(), (1, 1), "again: no-op");
    let s = PgStore::open(&db.url(), 4).unwrap();
    revsync::store::conformance::check(&s);
    s.refresh_stats();
    let stats = s.stats();
    assert_eq!(stats.backend, "postgres");
    assert!(stats.path.ends_with(&db.name), "{}", stats.path);
    assert!(stats.size_on_disk_bytes > 0);
}

#[test]
fn migrations_run_once_when_replicas_start_together() {
    let db = Db::new("race");
    let url = db.url();
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PgStore::migrate(&url).unwrap())
        })
        .collect();
    let mut from: Vec<i32> = runs.into_iter().map(|r| r.join().unwrap().0).collect();
    from.sort();
    assert_eq!(from, [0, 1, 1, 1], "one migrated, the others found it done");
    PgStore::open(&url, 1).unwrap();
}

/// A write is one transaction: a batch that fails half way leaves nothing behind, and
/// writers on many threads (through the pool) never see each other's half batches.
#[test]
fn batches_are_atomic_and_concurrent_writers_see_whole_batches() {
    let db = Db::new("atomic");
    PgStore::migrate(&db.url()).unwrap();
    let s = Arc::new(PgStore::open(&db.url(), 4).unwrap());
    let writers: Vec<_> = (0..4u8)
        .map(|w| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..50u32 {
                    let mut b = WriteBatch::new();
                    let key = [vec![w], i.to_be_bytes().to_vec()].concat();
                    b.put(Table::Records, key.clone(), vec![w; 8]);
                    b.put(Table::Cursors, vec![w], i.to_be_bytes().to_vec());
                    s.write(b).unwrap();
                    // The cursor never runs ahead of the record it was written with.
                    let cursor = s.get(Table::Cursors, &[w]).unwrap().unwrap();
                    let at = u32::from_be_bytes(cursor.try_into().unwrap());
                    let rec = [vec![w], at.to_be_bytes().to_vec()].concat();
                    assert!(s.get(Table::Records, &rec).unwrap().is_some());
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(s.scan(Table::Records, b"", None, 1000).unwrap().len(), 200);
}

/// The engine on PostgreSQL: one person from three systems, the pushes queued with the
/// page, the cursor written with it; then the same after a reopen.
#[test]
fn the_engine_keeps_its_guarantees_on_postgres() {
    let db = Db::new("engine");
    PgStore::migrate(&db.url()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), "");
    {
        let store: Arc<dyn Store> = Arc::new(PgStore::open(&db.url(), 4).unwrap());
        let e = engine(&cfg, store);
        let mut p = page(
            "contacts",
            vec![change(
                "contacts",
                "101",
                1,
                json!({"email": "ada@example.com", "firstname": "Ada"}),
            )],
        );
        p.cursor = Some("hs-cursor-1".to_owned());
        e.apply("hubspot-main", p).unwrap();
        apply_one(
            &e,
            "salesforce-main",
            "Contact",
            "003A",
            2,
            json!({"Email": "ADA@example.com", "LastName": "Lovelace"}),
        );
        apply_one(
            &e,
            "zendesk-main",
            "users",
            "9",
            3,
            json!({"email": "ada@example.com", "name": "Ada Lovelace"}),
        );
    }
    let store: Arc<dyn Store> = Arc::new(PgStore::open(&db.url(), 4).unwrap());
    let e = engine(&cfg, store);
    let rec = e.find("ada@example.com").unwrap().unwrap();
    assert_eq!(rec.links.len(), 3, "{:?}", rec.links);
    assert_eq!(
        e.cursor("hubspot-main", "contacts").unwrap().as_deref(),
        Some("hs-cursor-1")
    );
    // HubSpot learns the last name; replaying the same pages changes nothing more.
    assert!(!e.outbox("hubspot-main", 10).unwrap().is_empty());
    let r = e
        .apply(
            "zendesk-main",
            page(
                "users",
                vec![change(
                    "users",
                    "9",
                    3,
                    json!({"email": "ada@example.com", "name": "Ada Lovelace"}),
                )],
            ),
        )
        .unwrap();
    assert_eq!(r.updated + r.created, 0, "{r:?}");
}

fn write_config(dir: &std::path::Path, store: &str) {
    config_in(dir, "");
    std::fs::write(
        dir.join("revsync.yaml"),
        format!(
            "version: 1\nserver:\n  listen: 127.0.0.1:0\nstore:\n  path: {}\n{store}",
            dir.join("data").display()
        ),
    )
    .unwrap();
}

#[test]
fn the_daemon_refuses_an_unmigrated_store_and_names_the_command() {
    let db = Db::new("refuse");
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "  kind: postgres\n  url: ${DATABASE_URL}\n");
    let run = Command::new(BIN)
        .args(["run", "--config"])
        .arg(dir.path())
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("store.url") && err.contains("revsync migrate"),
        "{err}"
    );
    let migrate = Command::new(BIN)
        .args(["migrate", "--config"])
        .arg(dir.path())
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&migrate.stdout);
    assert!(migrate.status.success(), "{out}");
    assert!(out.contains("schema version 0 -> 1"), "{out}");
    // `check` names the store without its credentials.
    let check = Command::new(BIN)
        .args(["check", "--config"])
        .arg(dir.path())
        .env(
            "DATABASE_URL",
            db.url().replace("postgres@", "postgres:s3cret-pw@"),
        )
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        out.contains(&db.name) && !out.contains("s3cret-pw"),
        "{out}"
    );
}

#[test]
fn a_bad_store_url_is_refused_by_check_with_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "  kind: postgres\n  url: 'host=127.0.0.1 port=notaport password=hunter2'\n",
    );
    let check = Command::new(BIN)
        .args(["check", "--config"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(2), "{err}");
    assert!(
        err.contains("revsync.yaml") && err.contains("store.url"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

/// `revsync store copy` from sled into PostgreSQL and back: every entry, the same
/// checksum each way; a destination that holds data is refused.
#[test]
fn store_copy_moves_an_installation_both_ways() {
    let db = Db::new("copy");
    let dir = tempfile::tempdir().unwrap();
    let sled_dir = dir.path().join("sled");
    {
        let s = SledStore::open(&sled_dir, 500, 16).unwrap();
        let cfg = config_in(dir.path(), "");
        let e = engine(&cfg, Arc::new(s));
        for i in 0..300 {
            apply_one(
                &e,
                "hubspot-main",
                "contacts",
                &i.to_string(),
                i,
                json!({"email": format!("p{i}@example.com"), "firstname": "P"}),
            );
        }
    }
    let before = copy::summarize(&SledStore::open(&sled_dir, 500, 16).unwrap()).unwrap();
    assert!(before.entries() > 600, "{before:?}");

    let run = |from: &str, to: &str| {
        Command::new(BIN)
            .args(["store", "copy", "--from", from, "--to", to, "--config"])
            .arg(dir.path())
            .env("DATABASE_URL", db.url())
            .output()
            .unwrap()
    };
    let to_pg = run(sled_dir.to_str().unwrap(), "${DATABASE_URL}");
    let out = String::from_utf8_lossy(&to_pg.stdout);
    assert!(
        to_pg.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&to_pg.stderr)
    );
    assert!(out.contains(&before.checksum), "{out}");
    assert!(
        out.contains(&format!("copied {} entries", before.entries())),
        "{out}"
    );

    let again = run(sled_dir.to_str().unwrap(), "${DATABASE_URL}");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds data"));

    let back_dir = dir.path().join("back");
    let back = run("${DATABASE_URL}", back_dir.to_str().unwrap());
    assert!(
        back.status.success(),
        "{}",
        String::from_utf8_lossy(&back.stderr)
    );
    let after = copy::summarize(&SledStore::open(&back_dir, 500, 16).unwrap()).unwrap();
    assert_eq!(after, before);
}

/// The daemon on PostgreSQL against the four simulators: `revsync demo --once --postgres`
/// converges with nothing dead-lettered, the workflow chain complete and the KPIs whole.
#[test]
fn the_demo_converges_on_postgres() {
    let db = Db::new("demo");
    let out = Command::new(BIN)
        .args(["demo", "--once"])
        .args(SMALL_WORLD)
        .args(["--timeout-secs", "150", "--postgres", &db.url()])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("canonical store: postgres://"), "{stderr}");
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("summary: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let s: std::collections::BTreeMap<&str, &str> = line
        .split(' ')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let num = |k: &str| -> i64 { s[k].parse().unwrap_or_else(|_| panic!("{k} in {line}")) };
    assert_eq!(s["converged"], "true", "{line}");
    assert_eq!(num("dead_letters"), 0, "{line}");
    assert_eq!(num("chain_tickets"), num("chain_won"), "{line}");
    assert_eq!(num("chain_escalated"), 1, "{line}");
    assert_eq!(
        num("mrr_usd"),
        num("mrr_seeded") + num("mrr_chain"),
        "{line}"
    );
    // The state is in the database, not in the run directory.
    let store = PgStore::open(&db.url(), 1).unwrap();
    let summary = copy::summarize(&store).unwrap();
    assert!(summary.entries() > 1_000, "{summary:?}");
}

/// Until replicas share the work, one daemon per database: a second is refused (it would
/// push the same outbox), and the database is free again once the first is gone.
#[test]
fn a_second_daemon_on_the_same_database_is_refused() {
    let db = Db::new("lock");
    PgStore::migrate(&db.url()).unwrap();
    let first = PgStore::open(&db.url(), 1).unwrap();
    first.hold_for_daemon().unwrap();
    let second = PgStore::open(&db.url(), 1).unwrap();
    let err = second.hold_for_daemon().unwrap_err().to_string();
    assert!(err.contains("another revsync daemon"), "{err}");
    // Readers (the CLI's `records get`, `kpi`) still open it.
    assert!(second.get(Table::Meta, b"x").unwrap().is_none());
    drop(first);
    let mut taken = false;
    for _ in 0..50 {
        if second.hold_for_daemon().is_ok() {
            taken = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(taken, "the lock went with the first daemon's connection");
}

/// A free loopback port for a daemon's `server.listen`.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One plain HTTP/1.1 request to a daemon on loopback: (status code, body), `None` when
/// nothing answers in time.
fn http(port: u16, request: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let code = answer.get(9..12)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}

/// What `/healthz` says: `ok` (active), `standby`, or nothing.
fn health(port: u16) -> Option<String> {
    let (code, body) = http(
        port,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    (code == 200).then(|| v["status"].as_str().unwrap_or_default().to_owned())
}

/// Two daemons on one database: the second waits as a standby while the first is
/// active (and while it is paused with SIGSTOP), and takes over when the first is killed
/// with SIGKILL. The takeover time is printed.
#[test]
fn a_standby_daemon_takes_over_when_the_active_one_is_killed() {
    let db = Db::new("standby");
    PgStore::migrate(&db.url()).unwrap();
    let start = |dir: &std::path::Path, port: u16| {
        write_config(dir, "  kind: postgres\n  url: ${DATABASE_URL}\n");
        let yaml = std::fs::read_to_string(dir.join("revsync.yaml"))
            .unwrap()
            .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
        std::fs::write(dir.join("revsync.yaml"), yaml).unwrap();
        // No system to reach: the connectors poll unreachable ports and back off.
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(dir)
            .env("DATABASE_URL", db.url())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let wait = |what: &str, port: u16, want: &str, secs: u64| {
        let t = std::time::Instant::now();
        while health(port).as_deref() != Some(want) {
            assert!(t.elapsed().as_secs() < secs, "{what}: {:?}", health(port));
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        t.elapsed()
    };
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a_port, b_port) = (free_port(), free_port());
    let mut a = start(a_dir.path(), a_port);
    wait("the first daemon never served", a_port, "ok", 60);
    let mut b = start(b_dir.path(), b_port);
    // Alive, not ready, and a webhook is answered 503 (the sender delivers it again).
    wait(
        "the second daemon never answered as a standby",
        b_port,
        "standby",
        30,
    );
    let ready = http(
        b_port,
        "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(ready.map(|r| r.0), Some(503));
    let hook = http(
        b_port,
        "POST /webhooks/hubspot-main HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]",
    );
    assert_eq!(hook.map(|r| r.0), Some(503));
    // A paused daemon keeps the store: the standby never runs beside it.
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &a.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    };
    signal("-STOP");
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(
        health(b_port).as_deref(),
        Some("standby"),
        "the standby took over from a paused daemon"
    );
    signal("-CONT");
    wait("the resumed daemon never served again", a_port, "ok", 30);
    a.kill().unwrap();
    a.wait().unwrap();
    let took = wait("the standby never took over", b_port, "ok", 60);
    println!(
        "takeover after SIGKILL of the active daemon: {:.1} s",
        took.as_secs_f64()
    );
    let _ = b.kill();
    let out = b.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("standby") && log.contains("took over"),
        "{log}"
    );
}
