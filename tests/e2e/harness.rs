//! The end-to-end rig: the four simulators in this process, seeded with one generated
//! world, and the real `revsync` binary run against them as a child process.
//!
//! What a test asserts is read from the simulators themselves (what each system holds),
//! never only from the daemon's own account of what it did: a create that the daemon lost
//! track of is exactly what must show up.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use revsync::demo::seed::{self, Sims};
use revsync::demo::world::{Sizes, World};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_revsync");

/// Small enough for CI, large enough that every kind of mess in the world generator shows
/// up: case and spaces in emails, phones written three ways, domains only in a website,
/// a rep's duplicates, records in one system only.
pub const SIZES: Sizes = Sizes {
    people: 60,
    companies: 15,
    deals: 20,
    tickets: 30,
    subscriptions: 10,
    // The plan tests compare `revsync plan` with the sync; a scored join depends on the
    // order copies arrive, which differs between the two (a known gap), so none here.
    retyped_pct: 0,
};
pub const WORLD_SEED: u64 = 42;

/// How long writes must have stopped, with every outbox empty, before a run counts as
/// converged: two HubSpot poll cycles (its floor is 5 s), so an echo of the last push has
/// been read back everywhere.
const QUIET: Duration = Duration::from_secs(12);

/// The one admin token of every e2e daemon: written into its revsync.yaml and sent on
/// every request this harness makes, so the tests hold whether or not the daemon would
/// accept admin calls without one.
pub const ADMIN_TOKEN: &str = "e2e-admin-token-not-a-secret";

/// One world in four simulators, and the configuration directory pointing at them.
pub struct Rig {
    pub sims: Sims,
    pub dir: tempfile::TempDir,
    /// What each system held before revsync ran.
    pub seeded: Snapshot,
    /// Copies the generated world put in each system, as `connector:object:id`.
    pub refs: Vec<String>,
    /// What each of those copies held before revsync ran ([`copy_values`]).
    pub seeded_copies: BTreeMap<String, Fields>,
    /// Extra `params:` lines per connector id, for the chaos run's short timeouts.
    extra_params: BTreeMap<&'static str, Vec<String>>,
    /// The daemon's port when a simulator sends it webhooks (known before the simulators
    /// start); otherwise each start takes a fresh one.
    port: Option<u16>,
}

impl Rig {
    pub async fn new() -> Rig {
        Self::with_params(BTreeMap::new()).await
    }

    pub async fn with_params(extra_params: BTreeMap<&'static str, Vec<String>>) -> Rig {
        Self::build(extra_params, false).await
    }

    /// As [`Rig::with_params`], and HubSpot sends v3-signed webhooks for every change to
    /// the daemon's `/webhooks/hubspot`, as a HubSpot app subscription would.
    pub async fn with_webhooks(extra_params: BTreeMap<&'static str, Vec<String>>) -> Rig {
        Self::build(extra_params, true).await
    }

    async fn build(extra_params: BTreeMap<&'static str, Vec<String>>, webhooks: bool) -> Rig {
        let port = webhooks.then(free_port);
        let hook = port.map(|p| format!("http://127.0.0.1:{p}/webhooks/hubspot"));
        let zendesk = revsync_zendesk::sim::Sim::start(revsync_zendesk::sim::SimConfig {
            // The documented 10 exports a minute would make every read cycle take 18 s;
            // the connector is told the same figure below, so it still paces itself.
            exports_per_window: 600,
            ..seed::zendesk_config()
        })
        .await;
        let sims = Sims {
            hubspot: revsync_hubspot::sim::Sim::start(seed::hubspot_options(hook)).await,
            salesforce: revsync_salesforce::sim::Sim::start()
                .await
                .expect("salesforce simulator"),
            zendesk,
            stripe: revsync_stripe::sim::Sim::start(seed::stripe_config(None)).await,
            // Up but unseeded: these rigs configure the four systems only.
            webinar: revsync_rest::sim::Sim::start(seed::webinar_config()).await,
        };
        let world = World::generate(WORLD_SEED, SIZES);
        let (refs, _edits) = seed::seed_all(&sims, &world);
        let refs = refs
            .into_iter()
            .map(|(c, o, id)| format!("{c}:{o}:{id}"))
            .collect::<Vec<_>>();
        let dir = tempfile::tempdir().expect("tempdir");
        let rig = Rig {
            seeded: Snapshot::take(&sims),
            seeded_copies: copies(&sims, &refs),
            sims,
            dir,
            refs,
            extra_params,
            port,
        };
        rig.write_config();
        rig
    }

    /// A rig of the four simulators seeded by `seed` (which returns the copies it made, as
    /// `connector:object:id`), with the configuration `write_config` puts in the directory
    /// it is given (`revsync.yaml` and `connectors/`; store and listen address come from
    /// the environment at start).
    pub async fn custom(
        seed: impl FnOnce(&Sims) -> Vec<String>,
        write_config: impl FnOnce(&Path),
    ) -> Rig {
        let sims = Sims {
            hubspot: revsync_hubspot::sim::Sim::start(seed::hubspot_options(None)).await,
            salesforce: revsync_salesforce::sim::Sim::start()
                .await
                .expect("salesforce simulator"),
            zendesk: revsync_zendesk::sim::Sim::start(revsync_zendesk::sim::SimConfig {
                exports_per_window: 600,
                ..seed::zendesk_config()
            })
            .await,
            stripe: revsync_stripe::sim::Sim::start(seed::stripe_config(None)).await,
            webinar: revsync_rest::sim::Sim::start(seed::webinar_config()).await,
        };
        let refs = seed(&sims);
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("config");
        std::fs::create_dir_all(conf.join("connectors")).unwrap();
        write_config(&conf);
        Rig {
            seeded: Snapshot::take(&sims),
            seeded_copies: copies(&sims, &refs),
            sims,
            dir,
            refs,
            extra_params: BTreeMap::new(),
            port: None,
        }
    }

    /// config/demo/, polling every second (each connector raises that to its own floor).
    fn write_config(&self) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo");
        let conf = self.dir.path().join("config");
        std::fs::create_dir_all(conf.join("connectors")).unwrap();
        let daemon = std::fs::read_to_string(root.join("revsync.yaml")).unwrap();
        let daemon = daemon.replacen(
            "\nserver:\n",
            &format!("\nserver:\n  admin_token: {ADMIN_TOKEN}\n"),
            1,
        );
        assert!(
            daemon.contains(ADMIN_TOKEN),
            "config/demo/revsync.yaml has no `server:`"
        );
        std::fs::write(conf.join("revsync.yaml"), daemon).unwrap();
        for id in ["hubspot", "salesforce", "zendesk", "stripe"] {
            let text = std::fs::read_to_string(root.join(format!("connectors/{id}.yaml"))).unwrap();
            let mut out = String::new();
            for line in text.lines() {
                if line.trim_start().starts_with("interval_secs:") {
                    out.push_str("  interval_secs: 1\n");
                    continue;
                }
                out.push_str(line);
                out.push('\n');
                if line == "params:" {
                    let mut extra = self.extra_params.get(id).cloned().unwrap_or_default();
                    if id == "zendesk" {
                        extra.push("exports_per_minute: 600".into());
                    }
                    for p in extra {
                        out.push_str(&format!("  {p}\n"));
                    }
                }
            }
            std::fs::write(conf.join(format!("connectors/{id}.yaml")), out).unwrap();
        }
    }

    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `revsync plan --json` against this rig's systems: what a first sync would do.
    pub fn plan(&self) -> Value {
        self.plan_with(&[])
    }

    /// As [`Rig::plan`], with more arguments (`--limit N`).
    pub fn plan_with(&self, args: &[&str]) -> Value {
        let mut cmd = Command::new(BIN);
        cmd.arg("plan")
            .arg("--json")
            .args(args)
            .arg("--config")
            .arg(self.config_dir())
            .env_remove("RUST_LOG")
            .env("REVSYNC_LOG__LEVEL", "warn");
        for (k, v) in self.sims.env() {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run revsync plan");
        assert!(
            out.status.success(),
            "revsync plan failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("plan --json is JSON")
    }

    /// Starts the daemon on this rig's store (a fresh port each time).
    pub fn start(&self) -> Daemon {
        self.start_with(&[])
    }

    /// Starts the daemon with extra environment (e.g. `FAILPOINTS`).
    pub fn start_with(&self, env: &[(&str, &str)]) -> Daemon {
        let port = self.port.unwrap_or_else(free_port);
        let log = self.dir.path().join("daemon.log");
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("run")
            .arg("--config")
            .arg(self.config_dir())
            .env_remove("RUST_LOG")
            .env("REVSYNC_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("REVSYNC_STORE__PATH", self.data_dir())
            .env("REVSYNC_LOG__LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(err);
        for (k, v) in self.sims.env() {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start revsync run");
        let connectors = std::fs::read_dir(self.config_dir().join("connectors"))
            .map(|d| d.count())
            .unwrap_or(4);
        Daemon {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            log,
            connectors,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .no_proxy()
                .default_headers(reqwest::header::HeaderMap::from_iter([(
                    reqwest::header::AUTHORIZATION,
                    format!("Bearer {ADMIN_TOKEN}").parse().unwrap(),
                )]))
                .build()
                .unwrap(),
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The real daemon, as a child process.
pub struct Daemon {
    child: Option<Child>,
    pub base: String,
    log: PathBuf,
    client: reqwest::Client,
    /// Connectors configured: converged only once each of them answers on `/status`.
    connectors: usize,
}

/// One connector's counters from `/status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub records_in: u64,
    pub records_out: u64,
    pub outbox: u64,
    pub dead_letters: u64,
    /// Records read that could not be decoded.
    pub invalid_records: u64,
    /// Webhook deliveries answered 2xx (stored in the inbox), and refused.
    pub webhooks_accepted: u64,
    pub webhooks_rejected: u64,
    pub read_ok: bool,
    /// The system still holds back changes made before the daemon's start (Zendesk's
    /// exports keep their newest minute).
    pub held_back: bool,
}

impl Daemon {
    pub async fn status(&self) -> Option<Value> {
        let r = self
            .client
            .get(format!("{}/status", self.base))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    pub async fn counts(&self) -> Option<BTreeMap<String, Counts>> {
        let s = self.status().await?;
        Some(
            s["connectors"]
                .as_array()?
                .iter()
                .map(|c| {
                    (
                        c["id"].as_str().unwrap_or_default().to_owned(),
                        Counts {
                            records_in: c["records_in"].as_u64().unwrap_or(0),
                            records_out: c["records_out"].as_u64().unwrap_or(0),
                            outbox: c["outbox_depth"].as_u64().unwrap_or(0),
                            dead_letters: c["dead_letters"].as_u64().unwrap_or(0),
                            invalid_records: c["invalid_records"].as_u64().unwrap_or(0),
                            webhooks_accepted: c["webhooks_accepted"].as_u64().unwrap_or(0),
                            webhooks_rejected: c["webhooks_rejected"].as_u64().unwrap_or(0),
                            // Read once, and nothing held back (Zendesk's last minute).
                            read_ok: !c["last_success_at"].is_null()
                                && c["held_back"].as_array().is_none_or(Vec::is_empty),
                            held_back: c["held_back"].as_array().is_some_and(|h| !h.is_empty()),
                        },
                    )
                })
                .collect(),
        )
    }

    pub async fn get_text(&self, path: &str) -> String {
        match self.client.get(format!("{}{path}", self.base)).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => format!("GET {path}: {e}"),
        }
    }

    /// `GET /records/{query}` with the latest audit entries; `None` when nothing matches.
    pub async fn record(&self, query: &str) -> Option<Value> {
        let mut url = url::Url::parse(&format!("{}/records/", self.base)).ok()?;
        url.path_segments_mut().ok()?.pop_if_empty().push(query);
        url.query_pairs_mut().append_pair("audit", "100");
        let r = self.client.get(url).send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    /// Waits until every connector has read, every outbox is empty, and neither the
    /// daemon's write counters nor anything any simulator holds changed for [`QUIET`].
    /// Returns the total writes at that point.
    pub async fn converge(&mut self, sims: &Sims, timeout: Duration) -> u64 {
        let started = Instant::now();
        let mut last: Option<(u64, Snapshot)> = None;
        let mut quiet_since = Instant::now();
        let mut why = String::from("no /status answer");
        let mut moved = Instant::now();
        loop {
            assert!(
                started.elapsed() < timeout,
                "not converged after {timeout:?}: {why}\n--- daemon log ---\n{}",
                self.log_tail()
            );
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "the daemon exited with {status}\n--- daemon log ---\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let Some(c) = self.counts().await else {
                continue;
            };
            // Zendesk's exports serve a change a minute after it was made, so a daemon
            // is not read through until its account's clock passed the minute after its
            // first read: the account's clock is moved on rather than the test waiting
            // (each start would otherwise cost a minute). Records keep their order.
            if c.values().any(|x| x.held_back) && moved.elapsed() >= Duration::from_secs(1) {
                sims.zendesk.advance(61);
                moved = Instant::now();
            }
            let snap = Snapshot::take(sims);
            let written: u64 = c.values().map(|x| x.records_out).sum();
            let queued: u64 = c.values().map(|x| x.outbox).sum();
            let unread: Vec<&String> = c
                .iter()
                .filter(|(_, x)| !x.read_ok)
                .map(|(k, _)| k)
                .collect();
            let same = last
                .as_ref()
                .is_some_and(|(w, s)| *w == written && *s == snap);
            if !same || queued > 0 || !unread.is_empty() || c.len() < self.connectors {
                quiet_since = Instant::now();
            }
            why = format!(
                "{queued} queued, {written} written, not yet read: {unread:?}, quiet for {:?}",
                quiet_since.elapsed()
            );
            if quiet_since.elapsed() >= QUIET {
                return written;
            }
            last = Some((written, snap));
        }
    }

    /// The daemon's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no shutdown path runs, nothing is flushed.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the daemon to exit on its own; its exit status.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("a running daemon");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        panic!("revsync still ran after {within:?}:\n{}", self.log_tail());
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
            #[allow(
                unsafe_code,
                reason = "kill(2) of our own child: no memory-safety preconditions"
            )]
            let _ = unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = c.try_wait() {
                    assert!(status.success(), "revsync exited with {status}");
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            panic!("revsync did not stop within 30 s of SIGTERM");
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// [`copy_values`] of each of `refs`, by ref.
pub fn copies(sims: &Sims, refs: &[String]) -> BTreeMap<String, Fields> {
    refs.iter()
        .filter_map(|r| Some((r.clone(), copy_values(sims, r)?)))
        .collect()
}

/// Every value the copy `connector:object:id` holds, as text, by the system's own field
/// names (Stripe's metadata as `metadata.KEY`), without the times and counters a write
/// moves by itself: two states differ only where a field was written with a new value.
/// `None`: the copy is gone.
pub fn copy_values(sims: &Sims, r: &str) -> Option<Fields> {
    let mut parts = r.splitn(3, ':');
    let (system, object, id) = (parts.next()?, parts.next()?, parts.next()?);
    let from_json = |body: &Value| -> Fields {
        let mut f = Fields::new();
        for (k, v) in body.as_object().into_iter().flatten() {
            match v {
                Value::Object(m) => f.extend(
                    m.iter()
                        .filter_map(|(mk, mv)| Some((format!("{k}.{mk}"), text(mv)?))),
                ),
                v => f.extend(text(v).map(|t| (k.clone(), t))),
            }
        }
        f
    };
    let mut f = match system {
        "hubspot" => sims.hubspot.get(object, id)?,
        "salesforce" => {
            let rec = sims.salesforce.record(id).filter(|r| !r.deleted)?;
            from_json(&Value::Object(rec.fields))
        }
        "zendesk" => from_json(&sims.zendesk.record(object, id)?),
        "stripe" => from_json(&sims.stripe.get(object, id)?),
        _ => return None,
    };
    f.retain(|k, v| {
        let k = k.to_ascii_lowercase();
        !v.is_empty()
            && !["modified", "updated", "modstamp", "version"]
                .iter()
                .any(|t| k.contains(t))
    });
    Some(f)
}

/// One record's mapped fields as a system holds them, ids of other records replaced by
/// those records' keys so two runs (with different ids) compare equal.
pub type Fields = BTreeMap<String, String>;

/// What every system holds, by (system, kind) and natural key (email for people, name for
/// companies and deals): the same world synced twice must give the same snapshot, and a
/// key held more often than seeded (beyond the first copy revsync makes) is a duplicate.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub held: BTreeMap<String, BTreeMap<String, Vec<Fields>>>,
    /// Records revsync created, by system and the canonical id each carries (HubSpot's
    /// `revsync_id`, Salesforce's External ID, Zendesk's `external_id`, Stripe's
    /// `metadata[revsync_id]`): two for one id is a create that was not idempotent.
    pub made: BTreeMap<String, BTreeMap<String, usize>>,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => Some(a.iter().filter_map(text).collect::<Vec<_>>().join(",")),
        other => Some(other.to_string()),
    }
}

pub fn key(s: &str) -> String {
    s.trim().to_lowercase()
}

/// Two runs of one world hold the same values; the canonical ids they carry differ.
impl PartialEq for Snapshot {
    fn eq(&self, other: &Self) -> bool {
        self.held == other.held
    }
}

impl Snapshot {
    pub fn take(sims: &Sims) -> Snapshot {
        let mut snap = Snapshot::default();
        let mut made: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        let mut mark = |system: &str, marker: Option<String>| {
            if let Some(m) = marker.filter(|m| !m.is_empty()) {
                *made
                    .entry(system.to_owned())
                    .or_default()
                    .entry(m)
                    .or_default() += 1;
            }
        };
        let mut put = |sk: &str, k: Option<String>, f: Fields| {
            let k = k.map(|k| key(&k)).unwrap_or_else(|| "(no key)".into());
            snap.held
                .entry(sk.to_owned())
                .or_default()
                .entry(k)
                .or_default()
                .push(f);
        };

        // HubSpot: properties as strings.
        let hs = &sims.hubspot;
        let company_name = |id: &str| {
            hs.get("companies", id)
                .and_then(|p| p.get("name").cloned())
                .unwrap_or_else(|| format!("(company {id} missing)"))
        };
        let company_of = |object: &str, id: &str, props: &BTreeMap<String, String>| {
            props
                .get("associatedcompanyid")
                .filter(|v| !v.is_empty())
                .cloned()
                .or_else(|| hs.associated(object, id, "companies").into_iter().next())
                .map(|c| company_name(&c))
        };
        let pick = |props: &BTreeMap<String, String>, names: &[&str]| -> Fields {
            names
                .iter()
                .filter_map(|n| {
                    props
                        .get(*n)
                        .filter(|v| !v.is_empty())
                        .map(|v| ((*n).to_owned(), v.clone()))
                })
                .collect()
        };
        for id in hs.ids("contacts") {
            let Some(p) = hs.get("contacts", &id) else {
                continue;
            };
            mark("hubspot", p.get("revsync_id").cloned());
            let mut f = pick(
                &p,
                &[
                    "email",
                    "firstname",
                    "lastname",
                    "phone",
                    "jobtitle",
                    "lifecyclestage",
                ],
            );
            if let Some(c) = company_of("contacts", &id, &p) {
                f.insert("company".into(), c);
            }
            put("hubspot:person", p.get("email").cloned(), f);
        }
        for id in hs.ids("companies") {
            let Some(p) = hs.get("companies", &id) else {
                continue;
            };
            mark("hubspot", p.get("revsync_id").cloned());
            let f = pick(
                &p,
                &["name", "domain", "website", "industry", "numberofemployees"],
            );
            put("hubspot:organization", p.get("name").cloned(), f);
        }
        for id in hs.ids("deals") {
            let Some(p) = hs.get("deals", &id) else {
                continue;
            };
            mark("hubspot", p.get("revsync_id").cloned());
            let mut f = pick(
                &p,
                &[
                    "dealname",
                    "amount",
                    "deal_currency_code",
                    "dealstage",
                    "closedate",
                ],
            );
            if let Some(c) = company_of("deals", &id, &p) {
                f.insert("company".into(), c);
            }
            put("hubspot:deal", p.get("dealname").cloned(), f);
        }

        // Salesforce: Leads and Contacts are both people.
        let sf: Vec<revsync_salesforce::sim::SimRecord> = sims
            .salesforce
            .with(|s| s.records.values().filter(|r| !r.deleted).cloned().collect());
        let account_name: BTreeMap<String, String> = sf
            .iter()
            .filter(|r| r.object == "Account")
            .filter_map(|r| Some((r.id.clone(), text(r.fields.get("Name")?)?)))
            .collect();
        for r in &sf {
            let get = |n: &str| r.fields.get(n).and_then(text);
            mark(
                "salesforce",
                get(revsync_salesforce::sim::EXTERNAL_ID_FIELD),
            );
            let fields = |names: &[&str]| -> Fields {
                names
                    .iter()
                    .filter_map(|n| Some(((*n).to_owned(), get(n)?)))
                    .collect()
            };
            let account = || {
                get("AccountId").map(|a| {
                    account_name
                        .get(&a)
                        .cloned()
                        .unwrap_or_else(|| format!("(account {a} missing)"))
                })
            };
            match r.object.as_str() {
                "Lead" | "Contact" => {
                    let mut f = fields(&["Email", "FirstName", "LastName", "Phone", "Title"]);
                    f.insert("object".into(), r.object.clone());
                    if let Some(a) = account() {
                        f.insert("account".into(), a);
                    }
                    put("salesforce:person", get("Email"), f);
                }
                "Account" => {
                    let f = fields(&["Name", "Website", "NumberOfEmployees"]);
                    put("salesforce:organization", get("Name"), f);
                }
                "Opportunity" => {
                    let mut f = fields(&[
                        "Name",
                        "Amount",
                        "CurrencyIsoCode",
                        "StageName",
                        "CloseDate",
                    ]);
                    if let Some(a) = account() {
                        f.insert("account".into(), a);
                    }
                    put("salesforce:deal", get("Name"), f);
                }
                _ => {}
            }
        }

        // Zendesk.
        let zd = &sims.zendesk;
        let org_name: BTreeMap<String, String> = zd
            .ids("organizations")
            .into_iter()
            .filter_map(|id| {
                let b = zd.record("organizations", &id)?;
                Some((id, text(&b["name"])?))
            })
            .collect();
        for id in zd.ids("users") {
            let Some(b) = zd.record("users", &id) else {
                continue;
            };
            mark("zendesk", text(&b["external_id"]));
            let mut f: Fields = ["email", "name", "phone"]
                .iter()
                .filter_map(|n| Some(((*n).to_owned(), text(&b[*n])?)))
                .collect();
            if let Some(o) = text(&b["organization_id"]) {
                f.insert(
                    "organization".into(),
                    org_name
                        .get(&o)
                        .cloned()
                        .unwrap_or_else(|| format!("(org {o} missing)")),
                );
            }
            put("zendesk:person", text(&b["email"]), f);
        }
        for id in zd.ids("organizations") {
            let Some(b) = zd.record("organizations", &id) else {
                continue;
            };
            mark("zendesk", text(&b["external_id"]));
            let f: Fields = ["name", "domain_names"]
                .iter()
                .filter_map(|n| Some(((*n).to_owned(), text(&b[*n])?)))
                .collect();
            put("zendesk:organization", text(&b["name"]), f);
        }

        // Stripe: customers are organizations in the demo's mapping.
        let st = &sims.stripe;
        for id in st.ids("customers") {
            let Some(b) = st.get("customers", &id) else {
                continue;
            };
            if b["deleted"] == Value::Bool(true) {
                continue;
            }
            mark("stripe", text(&b["metadata"]["revsync_id"]));
            let f: Fields = ["name", "email"]
                .iter()
                .filter_map(|n| Some(((*n).to_owned(), text(&b[*n])?)))
                .collect();
            put("stripe:organization", text(&b["name"]), f);
        }

        // A phone reads the same typed or in E.164, an email the same in any case; which
        // form a system ends with depends on whether anything else made revsync write
        // that record.
        for keys in snap.held.values_mut() {
            for copies in keys.values_mut() {
                for f in copies.iter_mut() {
                    for name in ["phone", "Phone"] {
                        if let Some(p) = f.get_mut(name) {
                            let d: String = p.chars().filter(char::is_ascii_digit).collect();
                            *p = d[d.len().saturating_sub(10)..].to_owned();
                        }
                    }
                    // Likewise an email's case and stray spaces.
                    for name in ["email", "Email"] {
                        if let Some(e) = f.get_mut(name) {
                            *e = key(e);
                        }
                    }
                }
            }
        }
        snap.made = made;
        for keys in snap.held.values_mut() {
            for copies in keys.values_mut() {
                copies.sort();
            }
        }
        snap
    }

    /// Canonical ids some system holds more than one record for: a retried create that
    /// made a second record.
    pub fn repeated_creates(&self) -> Vec<String> {
        self.made
            .iter()
            .flat_map(|(system, ids)| {
                ids.iter()
                    .filter(|(_, n)| **n > 1)
                    .map(move |(id, n)| format!("{system}: {n} records carry revsync id {id}"))
            })
            .collect()
    }

    /// Lines where two snapshots differ, for a readable assertion.
    pub fn diff(&self, other: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        let sks: BTreeSet<&String> = self.held.keys().chain(other.held.keys()).collect();
        for sk in sks {
            let empty = BTreeMap::new();
            let a = self.held.get(sk).unwrap_or(&empty);
            let b = other.held.get(sk).unwrap_or(&empty);
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                if a.get(k) != b.get(k) {
                    out.push(format!(
                        "{sk} {k:?}:\n    {:?}\n vs {:?}",
                        a.get(k),
                        b.get(k)
                    ));
                }
            }
        }
        out
    }
}

/// The daemon's `revsync.yaml` of a custom rig: any port, the admin token, a short flush.
pub fn write_daemon_yaml(dir: &Path) {
    std::fs::write(
        dir.join("revsync.yaml"),
        format!(
            "version: 1\nserver:\n  listen: 127.0.0.1:0\n  admin_token: {ADMIN_TOKEN}\nstore:\n  path: data\n  flush_interval_ms: 500\nlog:\n  level: warn\n"
        ),
    )
    .unwrap();
}
