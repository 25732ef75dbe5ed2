//! Shared set-up for engine tests: a three-system configuration and change builders.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use revsync::config::{self, Config};
use revsync::engine::{Engine, Page};
use revsync::registry::Registry;
use revsync::store::Store;
use revsync_sdk::Change;

pub const HUBSPOT: &str = "hubspot:\n  version: 1\n  id: hubspot-main\n  type: hubspot\n  params: { token: t, base_url: 'http://127.0.0.1:9' }\n  deletes: archive\n  objects:\n    contacts:\n      kind: person\n      fields: { email: email, firstname: first_name, lastname: last_name, phone: phone, jobtitle: title, lifecyclestage: { to: lifecycle_stage, map: default }, associatedcompanyid: { to: organization, ref: companies } }\n    companies:\n      kind: organization\n      fields: { name: name, domain: domain, industry: industry }\n    deals:\n      kind: deal\n      fields: { dealname: name, amount: { to: amount, currency_field: deal_currency_code }, dealstage: { to: stage, map: default } }\n";

pub const SALESFORCE: &str = "salesforce:\n  version: 1\n  id: salesforce-main\n  type: salesforce\n  params: { auth: { flow: client_credentials, token_url: 'http://127.0.0.1:9/token', client_id: c, client_secret: s } }\n  deletes: propagate\n  objects:\n    Contact:\n      kind: person\n      fields: { Email: email, FirstName: first_name, LastName: last_name, Phone: phone, Title: title, AccountId: organization }\n    Account:\n      kind: organization\n      fields: { Name: name, Website: website, Industry: industry }\n    Opportunity:\n      kind: deal\n      fields: { Name: name, Amount: { to: amount, currency_field: CurrencyIsoCode }, StageName: { to: stage, map: default }, CloseDate: close_date }\n";

pub const ZENDESK: &str = "zendesk:\n  version: 1\n  id: zendesk-main\n  type: zendesk\n  params: { base_url: 'http://127.0.0.1:9/api/v2', auth: { method: oauth, access_token: t } }\n  objects:\n    users:\n      kind: person\n      fields: { email: email, name: { to: full_name }, phone: phone }\n    organizations:\n      kind: organization\n      fields: { name: name, domain_names: { to: domains } }\n";

/// `revsync demo`'s world, small enough for a test run in a debug build.
pub const SMALL_WORLD: [&str; 10] = [
    "--people",
    "150",
    "--companies",
    "30",
    "--deals",
    "40",
    "--tickets",
    "60",
    "--subscriptions",
    "20",
];

/// Write the three connectors (plus `daemon_extra` appended to revsync.yaml) and load.
pub fn config_in(dir: &Path, daemon_extra: &str) -> Config {
    config_with_env(dir, daemon_extra, &[])
}

/// As [`config_in`], resolving `${VAR}`s from `env`.
pub fn config_with_env(dir: &Path, daemon_extra: &str, env: &[(&str, &str)]) -> Config {
    std::fs::create_dir_all(dir.join("connectors")).unwrap();
    std::fs::write(
        dir.join("revsync.yaml"),
        format!(
            "version: 1\nstore:\n  path: {}\n{daemon_extra}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    for block in [HUBSPOT, SALESFORCE, ZENDESK] {
        let (name, body) = block.split_once(":\n").unwrap();
        let body: String = body
            .lines()
            .map(|l| l.strip_prefix("  ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(dir.join(format!("connectors/{name}.yaml")), body).unwrap();
    }
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    config::load(dir, &Registry::builtin(), &env).unwrap_or_else(|e| panic!("{e}"))
}

/// The three connectors plus one more (`connectors/{name}.yaml` with `yaml`), loaded.
pub fn config_with_connector(dir: &Path, name: &str, yaml: &str) -> Config {
    config_in(dir, "");
    std::fs::write(dir.join(format!("connectors/{name}.yaml")), yaml).unwrap();
    config::load(dir, &Registry::builtin(), &BTreeMap::new()).unwrap_or_else(|e| panic!("{e}"))
}

/// A test clock, in microseconds.
pub struct TestClock(pub Arc<AtomicI64>);

impl TestClock {
    pub fn new() -> Self {
        Self(Arc::new(AtomicI64::new(1_800_000_000_000_000)))
    }
    pub fn clock(&self) -> revsync::engine::Clock {
        let t = self.0.clone();
        Arc::new(move || t.fetch_add(1, Ordering::SeqCst))
    }
}

pub fn engine(config: &Config, store: Arc<dyn Store>) -> Engine {
    let (m, p) = Engine::validate(config).unwrap_or_else(|e| panic!("{e:?}"));
    Engine::new(store, config, m, p, TestClock::new().clock()).unwrap()
}

pub fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
}

pub fn change(object: &str, id: &str, secs: i64, fields: serde_json::Value) -> Change {
    let serde_json::Value::Object(map) = fields else {
        panic!("fields must be an object")
    };
    Change {
        object: object.into(),
        external_id: id.into(),
        source_updated_at: at(secs),
        fields: map.into_iter().collect(),
        deleted: false,
        canonical_id: None,
    }
}

pub fn deleted(object: &str, id: &str, secs: i64) -> Change {
    Change {
        object: object.into(),
        external_id: id.into(),
        source_updated_at: at(secs),
        fields: BTreeMap::new(),
        deleted: true,
        canonical_id: None,
    }
}

/// Apply one change of `object` from `connector`, as a page of its own.
pub fn apply_one(
    e: &Engine,
    connector: &str,
    object: &str,
    id: &str,
    secs: i64,
    fields: serde_json::Value,
) -> revsync::engine::ApplyReport {
    e.apply(
        connector,
        page(object, vec![change(object, id, secs, fields)]),
    )
    .unwrap_or_else(|err| panic!("{connector} {object} {id}: {err}"))
}

pub fn page(object: &str, changes: Vec<Change>) -> Page {
    Page {
        object: object.into(),
        changes,
        cursor: None,
    }
}

/// A port nothing listens on (yet).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A client command of the binary with the configuration in `dir`, its daemon on `port`
/// and `${REVSYNC_TEST_ADMIN}` = `admin`; nothing from the caller's REVSYNC_URL/TOKEN.
pub fn cli(dir: &Path, args: &[&str], port: u16, admin: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_revsync"))
        .args(args)
        .arg("--config")
        .arg(dir)
        .env("REVSYNC_TEST_ADMIN", admin)
        .env("REVSYNC_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("REVSYNC_LOG__FORMAT", "json")
        .env_remove("REVSYNC_URL")
        .env_remove("REVSYNC_TOKEN")
        .output()
        .unwrap()
}

/// `revsync run` with the configuration in `dir` on `port`, once it listens.
pub fn start_daemon(dir: &Path, port: u16, admin: &str) -> std::process::Child {
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_revsync"))
        .args(["run", "--config"])
        .arg(dir)
        .env("REVSYNC_TEST_ADMIN", admin)
        .env("REVSYNC_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return daemon;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    panic!("daemon did not listen on {port}");
}

/// A daemon's configuration in `dir` with the one connector `connectors/{name}.yaml`, its
/// admin token from `REVSYNC_TEST_ADMIN` (what [`start_daemon`] sets).
pub fn write_daemon_config(dir: &Path, name: &str, connector_yaml: &str) {
    std::fs::create_dir_all(dir.join("connectors")).unwrap();
    std::fs::write(
        dir.join("revsync.yaml"),
        format!(
            "version: 1\nstore:\n  path: {}\nserver:\n  admin_token: ${{REVSYNC_TEST_ADMIN}}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join(format!("connectors/{name}.yaml")), connector_yaml).unwrap();
}

/// A daemon started on an empty store in a new directory with the one connector
/// `connectors/{name}.yaml`: the directory (kept while it runs), its port and the process.
pub fn daemon_with(
    name: &str,
    connector_yaml: &str,
    admin: &str,
) -> (tempfile::TempDir, u16, std::process::Child) {
    let dir = tempfile::tempdir().unwrap();
    write_daemon_config(dir.path(), name, connector_yaml);
    let port = free_port();
    let daemon = start_daemon(dir.path(), port, admin);
    (dir, port, daemon)
}

/// The `/kpi` report of the daemon on `port` for `query`, once `synced` holds of it;
/// fails after a minute.
pub async fn kpi_once(
    port: u16,
    admin: &str,
    query: &str,
    synced: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/kpi?{query}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r = http.get(&url).bearer_auth(admin).send().await.unwrap();
        let body: serde_json::Value = r.json().await.unwrap_or(serde_json::Value::Null);
        if synced(&body) {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not synced in time: {body:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// SIGTERM to a daemon of [`start_daemon`], and its exit code.
pub fn stop_daemon(mut daemon: std::process::Child) -> Option<i32> {
    // SAFETY: kill(2) on our own child's pid touches no memory of ours.
    #[allow(
        unsafe_code,
        reason = "kill(2) of our own child: no memory-safety preconditions"
    )]
    let _ = unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    daemon.wait().unwrap().code()
}
