//! Crash safety of `Engine::apply`: a child process applying pages is killed with SIGKILL at
//! random points, and after every kill the reopened store must agree with itself.
//!
//! The child is this test binary re-executed on one test (`crash_child`), so the product
//! binary carries no test hooks. Page contents are a pure function of (stream, page number),
//! which is what lets the parent know exactly what a stored cursor promises.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use revsync::config::{self, Config};
use revsync::engine::codec::{self, OutboxEntry};
use revsync::engine::{self, Engine, Page};
use revsync::registry::Registry;
use revsync::store::{SledStore, Store, Table};
use revsync_sdk::{Change, Kind, Record, Value};
use serde_json::json;
use uuid::Uuid;

/// Set only in the child: the configuration directory it works on.
const CHILD_ENV: &str = "REVSYNC_CRASH_CHILD_DIR";
/// Set only in the child: the file it creates once the store is open and work begins.
const READY_ENV: &str = "REVSYNC_CRASH_CHILD_READY";
const CHILD_TEST: &str = "crash_child";
const TRIALS: usize = 24;
const KILL_AFTER_MS: std::ops::Range<u64> = 50..400;
const SEED: u64 = 0x5eed_c0de_2024_0001;

/// People are numbered; each page opens a block of this many new numbers.
const PEOPLE_PER_PAGE: u64 = 20;
const COMPANIES_PER_PAGE: u64 = 10;
const PERSON_CHANGES_PER_PAGE: usize = 50;
const COMPANY_CHANGES_PER_PAGE: usize = 25;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Stream {
    Contacts,
    Users,
    Companies,
}

impl Stream {
    const ALL: [Stream; 3] = [Stream::Contacts, Stream::Users, Stream::Companies];

    fn connector(self) -> &'static str {
        match self {
            Stream::Contacts | Stream::Companies => "hubspot",
            Stream::Users => "zendesk",
        }
    }

    fn object(self) -> &'static str {
        match self {
            Stream::Contacts => "contacts",
            Stream::Users => "users",
            Stream::Companies => "companies",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Stream::Contacts => "hs",
            Stream::Users => "zd",
            Stream::Companies => "co",
        }
    }

    /// Which entities this system holds. People 1 and 2 (mod 4) are in both systems, so
    /// identity matching across systems is exercised; 0 only in HubSpot, 3 only in Zendesk.
    fn holds(self, n: u64) -> bool {
        match self {
            Stream::Contacts => n % 4 != 3,
            Stream::Users => n % 4 != 0,
            Stream::Companies => true,
        }
    }

    /// A number this system holds, at most `n`'s neighbour: keeps updates inside the
    /// range of entities created by earlier pages.
    fn held_near(self, n: u64) -> u64 {
        match self {
            Stream::Contacts if n % 4 == 3 => n - 1,
            Stream::Users if n % 4 == 0 => n + 1,
            _ => n,
        }
    }

    fn block(self) -> u64 {
        match self {
            Stream::Companies => COMPANIES_PER_PAGE,
            _ => PEOPLE_PER_PAGE,
        }
    }

    fn changes_per_page(self) -> usize {
        match self {
            Stream::Companies => COMPANY_CHANGES_PER_PAGE,
            _ => PERSON_CHANGES_PER_PAGE,
        }
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn email_of(p: u64) -> String {
    format!("person{p}@firm{}.com", p % 97)
}

/// The same address as different systems (and different edits) spell it.
fn email_as_sent(p: u64, salt: u64) -> String {
    let e = email_of(p);
    match salt % 4 {
        0 => e,
        1 => e.to_uppercase(),
        2 => format!("  {e}\t"),
        _ => format!("P{}", &e[1..]),
    }
}

/// Source time of change `j` of page `k`: strictly increasing within a stream, so the
/// newest version of an entity is the last one generated.
fn source_time(k: u64, j: usize) -> DateTime<Utc> {
    let us = (1_700_000_000 + k as i64 * 60) * 1_000_000 + j as i64 * 1_000;
    DateTime::from_timestamp_micros(us).expect("in range")
}

/// Page `k` (from 1) of a stream: first the entities of block `k`, then updates of
/// entities created by earlier pages. The same `k` always gives the same page.
fn page(stream: Stream, k: u64) -> Vec<(u64, Change)> {
    let block = stream.block();
    let mut ids: Vec<(u64, bool)> = ((k - 1) * block..k * block)
        .filter(|&n| stream.holds(n))
        .map(|n| (n, true))
        .collect();
    let existing = (k - 1) * block;
    let mut j = 0;
    while existing > 0 && ids.len() < stream.changes_per_page() {
        let r = splitmix(splitmix(k ^ ((stream as u64) << 56)) ^ j);
        ids.push((stream.held_near(r % existing), false));
        j += 1;
    }
    ids.into_iter()
        .enumerate()
        .map(|(j, (n, new))| (n, change(stream, k, j, n, new)))
        .collect()
}

fn change(stream: Stream, k: u64, j: usize, n: u64, new: bool) -> Change {
    let salt = k + j as u64;
    let fields = match stream {
        Stream::Contacts => BTreeMap::from([
            ("email".into(), json!(email_as_sent(n, salt))),
            ("firstname".into(), json!(format!("First{n}"))),
            ("lastname".into(), json!(format!("Last{n}"))),
            ("jobtitle".into(), json!(format!("Title {n} page {k}"))),
        ]),
        Stream::Users => {
            let mut f = BTreeMap::from([
                ("name".into(), json!(format!("  First{n}   Last{n} "))),
                (
                    "phone".into(),
                    json!(format!(" +1 415 555 {:04} ", (n * 31 + k) % 10_000)),
                ),
            ]);
            // Some Zendesk users start without an email and gain it later: a separate record
            // first, merged into the HubSpot one when the email arrives.
            if !(new && n % 4 == 2) {
                f.insert("email".into(), json!(email_as_sent(n, salt + 1)));
            }
            f
        }
        Stream::Companies => {
            let domain = match salt % 4 {
                0 => format!("company{n}.com"),
                1 => format!("https://www.Company{n}.com/about"),
                2 => format!("COMPANY{n}.COM"),
                _ => format!("www.company{n}.com"),
            };
            BTreeMap::from([
                ("name".into(), json!(format!("Company {n} rev {k}"))),
                ("domain".into(), json!(domain)),
            ])
        }
    };
    Change {
        object: stream.object().into(),
        external_id: format!("{}-{n}", stream.prefix()),
        source_updated_at: source_time(k, j),
        fields,
        deleted: false,
        canonical_id: None,
    }
}

/// The newest change of every entity on pages `1..=cursor`, with the page it was on.
fn expected(stream: Stream, cursor: u64) -> BTreeMap<u64, (u64, Change)> {
    let mut last = BTreeMap::new();
    for k in 1..=cursor {
        for (n, c) in page(stream, k) {
            last.insert(n, (k, c));
        }
    }
    last
}

fn write_config(dir: &Path) {
    std::fs::create_dir_all(dir.join("connectors")).unwrap();
    std::fs::write(
        dir.join("revsync.yaml"),
        format!(
            "version: 1\nstore:\n  path: {}\n  flush_interval_ms: 50\n  cache_mb: 16\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("connectors/hubspot.yaml"),
        "version: 1\nid: hubspot\ntype: hubspot\nparams:\n  token: t\nobjects:\n  contacts:\n    kind: person\n    fields: { email: email, firstname: first_name, lastname: last_name, jobtitle: title }\n  companies:\n    kind: organization\n    fields: { name: name, domain: domain }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("connectors/zendesk.yaml"),
        "version: 1\nid: zendesk\ntype: zendesk\nparams:\n  subdomain: acme\n  auth: { method: oauth, access_token: t }\nobjects:\n  users:\n    kind: person\n    fields: { email: email, name: { to: full_name }, phone: phone }\n",
    )
    .unwrap();
}

fn load_config(dir: &Path) -> Config {
    // A fixed environment: the child's marker variable must not reach the config loader.
    let env = BTreeMap::<String, String>::new();
    config::load(dir, &Registry::builtin(), &env).unwrap_or_else(|e| panic!("config: {e}"))
}

/// Open the store and build the engine the way the daemon does. Retries while the lock
/// is held: a killed child's or the parent's sled may take a moment to let go.
fn open_engine(dir: &Path) -> (Engine, Arc<dyn Store>) {
    let config = load_config(dir);
    let (mappings, policies) =
        Engine::validate(&config).unwrap_or_else(|e| panic!("engine config: {e:?}"));
    let s = &config.daemon.store;
    let started = Instant::now();
    let store: Arc<dyn Store> = loop {
        match SledStore::open(&s.path, s.flush_interval_ms, s.cache_mb) {
            Ok(store) => break Arc::new(store),
            Err(_) if started.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot open the store: {e}"),
        }
    };
    let engine = Engine::new(
        store.clone(),
        &config,
        mappings,
        policies,
        engine::system_clock(),
    )
    .expect("engine");
    (engine, store)
}

fn cursor(engine: &Engine, stream: Stream) -> u64 {
    engine
        .cursor(stream.connector(), stream.object())
        .expect("read cursor")
        .map(|c| c.parse().expect("cursor is a page number"))
        .unwrap_or(0)
}

fn apply_next(engine: &Engine) {
    let (stream, next) = Stream::ALL
        .into_iter()
        .map(|s| (s, cursor(engine, s) + 1))
        .min_by_key(|(_, next)| *next)
        .expect("streams");
    let changes = page(stream, next).into_iter().map(|(_, c)| c).collect();
    let page = Page {
        object: stream.object().into(),
        changes,
        cursor: Some(next.to_string()),
    };
    engine
        .apply(stream.connector(), page)
        .unwrap_or_else(|e| panic!("apply {stream:?} page {next}: {e}"));
}

/// The child: applies pages until killed. A no-op in ordinary test runs.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    // Phone metadata loads lazily and takes about half a second in a debug build; load it
    // before saying ready, so the parent's kill delay is time spent applying pages.
    let _ = revsync::engine::normalize::phone("+1 415 555 0100", None);
    let (engine, _store) = open_engine(Path::new(&dir));
    let ready = std::env::var_os(READY_ENV).expect("ready marker path");
    std::fs::write(ready, b"").expect("write ready marker");
    loop {
        apply_next(&engine);
    }
}

fn text<'r>(rec: &'r Record, field: &str) -> Option<&'r str> {
    rec.value(field).and_then(Value::as_text)
}

fn trimmed(c: &Change, field: &str) -> String {
    c.fields[field].as_str().expect("text").trim().to_owned()
}

/// What a check saw, printed so a run shows the crashes hit merges and pushes too.
struct Seen {
    cursors: [u64; 3],
    live: usize,
    merged: usize,
    outbox: usize,
}

/// Every invariant a crash must not break; returns the violations and what was checked.
fn check(engine: &Engine, store: &dyn Store) -> (Vec<String>, Seen) {
    let mut bad = Vec::new();
    let cursors = Stream::ALL.map(|s| cursor(engine, s));

    // 1. The cursor covers exactly the stored data: every change up to it is there, and
    //    nothing of the page after it (whose changes carry newer source times).
    let mut person_of: HashMap<(Stream, u64), Uuid> = HashMap::new();
    let mut covered: HashSet<Vec<u8>> = HashSet::new();
    for (stream, &c) in Stream::ALL.iter().zip(&cursors) {
        let (conn, obj) = (stream.connector(), stream.object());
        for (n, (k, ch)) in expected(*stream, c) {
            let ext = &ch.external_id;
            covered.insert(codec::link_key(conn, obj, ext));
            let what = format!("{conn}/{obj} cursor {c}: {ext} (last changed on page {k})");
            let rec = match engine.find(&format!("{conn}:{obj}:{ext}")) {
                Ok(Some(r)) => r,
                Ok(None) => {
                    bad.push(format!("invariant 1: {what} has no live record"));
                    continue;
                }
                Err(e) => {
                    bad.push(format!("invariant 1: {what}: find failed: {e}"));
                    continue;
                }
            };
            let want_ts = ch.source_updated_at.timestamp_micros();
            match rec
                .links
                .iter()
                .find(|l| l.connector == conn && l.object == obj && &l.external_id == ext)
            {
                None => bad.push(format!(
                    "invariant 1: {what}: record {} lacks the link",
                    rec.id
                )),
                Some(l) if l.source_ts > want_ts => bad.push(format!(
                    "invariant 1: {what}: link has source time {} > {want_ts}: data ahead of the cursor",
                    l.source_ts
                )),
                Some(l) if l.source_ts < want_ts => bad.push(format!(
                    "invariant 1: {what}: link has source time {} < {want_ts}: cursor ahead of the data",
                    l.source_ts
                )),
                Some(_) => {}
            }
            let mut want: Vec<(&str, String)> = Vec::new();
            match stream {
                Stream::Contacts => {
                    want.push(("email", email_of(n)));
                    want.push(("title", trimmed(&ch, "jobtitle")));
                    want.push(("first_name", format!("First{n}")));
                    want.push(("last_name", format!("Last{n}")));
                }
                Stream::Users => {
                    if ch.fields.contains_key("email") {
                        want.push(("email", email_of(n)));
                    }
                    want.push(("phone_raw", trimmed(&ch, "phone")));
                    want.push(("first_name", format!("First{n}")));
                    want.push(("last_name", format!("Last{n}")));
                }
                Stream::Companies => {
                    want.push(("name", trimmed(&ch, "name")));
                    want.push(("domain", format!("company{n}.com")));
                }
            }
            for (field, value) in want {
                if text(&rec, field) != Some(value.as_str()) {
                    bad.push(format!(
                        "invariant 1: {what}: record {} has {field} {:?}, expected {value:?}",
                        rec.id,
                        rec.value(field)
                    ));
                }
            }
            if *stream != Stream::Companies && text(&rec, "email").is_some() {
                person_of.insert((*stream, n), rec.id);
            }
        }
    }
    // People both systems hold with an email are one record.
    for (&(stream, n), &id) in &person_of {
        if stream == Stream::Contacts {
            if let Some(&other) = person_of.get(&(Stream::Users, n)) {
                if other != id {
                    bad.push(format!(
                        "invariant 4: person {n} is {id} in hubspot but {other} in zendesk"
                    ));
                }
            }
        }
    }

    // 2. Records and the Links table agree, both ways.
    let records: HashMap<Uuid, Record> = store
        .scan(Table::Records, b"", None, usize::MAX)
        .expect("scan records")
        .into_iter()
        .map(|(k, v)| {
            let rec = codec::decode_record(&v).expect("record decodes");
            assert_eq!(k, codec::record_key(rec.id), "record stored under its id");
            (rec.id, rec)
        })
        .collect();
    let alive = |mut id: Uuid| -> Option<&Record> {
        for _ in 0..16 {
            let r = records.get(&id)?;
            match r.merged_into {
                Some(next) => id = next,
                None => return Some(r),
            }
        }
        None
    };
    let links: BTreeMap<Vec<u8>, Uuid> = store
        .scan(Table::Links, b"", None, usize::MAX)
        .expect("scan links")
        .into_iter()
        .map(|(k, v)| (k, Uuid::from_slice(&v).expect("link value is a uuid")))
        .collect();
    for r in records.values().filter(|r| r.merged_into.is_none()) {
        for l in &r.links {
            let key = codec::link_key(&l.connector, &l.object, &l.external_id);
            let target = links.get(&key).and_then(|&id| alive(id)).map(|t| t.id);
            if target != Some(r.id) {
                bad.push(format!(
                    "invariant 2: record {} holds link {}:{}:{} but the Links table resolves it to {target:?}",
                    r.id, l.connector, l.object, l.external_id
                ));
            }
        }
    }
    for (key, &id) in &links {
        let parts: Vec<String> = key
            .split(|&b| b == 0)
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        let name = parts.join(":");
        if !covered.contains(key) {
            bad.push(format!(
                "invariant 1: link {name} exists but no page up to its cursor names it: data ahead of the cursor"
            ));
        }
        match alive(id) {
            None => bad.push(format!(
                "invariant 2: link {name} points to {id}, which does not lead to a live record"
            )),
            Some(r) => {
                let held = parts.len() == 3
                    && r.links.iter().any(|l| {
                        [&l.connector, &l.object, &l.external_id]
                            == [&parts[0], &parts[1], &parts[2]]
                    });
                if !held {
                    bad.push(format!(
                        "invariant 2: link {name} resolves to {} which does not hold it",
                        r.id
                    ));
                }
            }
        }
    }

    // 3. The outbox references existing records, and its sequence is persisted with it:
    //    a sequence behind the entries would make the next page overwrite queued pushes.
    let seq = store
        .get(Table::Meta, codec::META_OUTBOX_SEQ)
        .expect("read outbox seq")
        .map(|b| u64::from_be_bytes(b.as_slice().try_into().expect("8 bytes")))
        .unwrap_or(0);
    let outbox = store
        .scan(Table::Outbox, b"", None, usize::MAX)
        .expect("scan outbox");
    for (key, value) in &outbox {
        let (conn, last) = codec::split_seq_key(key);
        let entries: Vec<(u64, OutboxEntry)> = match codec::decode_outbox_chunk(key, value) {
            Ok(entries) => entries,
            Err(e) => {
                bad.push(format!(
                    "invariant 3: outbox {conn} #{last} is corrupt: {e}"
                ));
                continue;
            }
        };
        for (s, entry) in entries {
            if s > seq || s > last {
                bad.push(format!(
                    "invariant 3: outbox {conn} #{s} is beyond the stored sequence {seq} or its chunk's #{last}"
                ));
            }
            if alive(entry.record).is_none() {
                bad.push(format!(
                    "invariant 3: outbox {conn} #{s} names {}, which does not lead to a live record",
                    entry.record
                ));
            }
        }
    }

    // 4. One live record per identity key, and the index points at it.
    let mut by_key: BTreeMap<(Kind, String), Vec<Uuid>> = BTreeMap::new();
    for r in records.values().filter(|r| r.merged_into.is_none()) {
        let key = match r.kind {
            Kind::Person => text(r, "email"),
            Kind::Organization => text(r, "domain"),
            _ => None,
        };
        if let Some(k) = key {
            by_key.entry((r.kind, k.to_owned())).or_default().push(r.id);
        }
    }
    for ((kind, key), ids) in &by_key {
        if ids.len() != 1 {
            bad.push(format!(
                "invariant 4: {kind} {key} has {} live records: {ids:?}",
                ids.len()
            ));
            continue;
        }
        let index_key = match kind {
            Kind::Person => codec::index::email(key),
            _ => codec::index::domain(key),
        };
        let indexed = store
            .get(Table::Index, &index_key)
            .expect("read index")
            .and_then(|b| alive(Uuid::from_slice(&b).ok()?))
            .map(|r| r.id);
        if indexed != Some(ids[0]) {
            bad.push(format!(
                "invariant 4: index of {kind} {key} resolves to {indexed:?}, the record is {}",
                ids[0]
            ));
        }
    }
    let merged = records.values().filter(|r| r.merged_into.is_some()).count();
    let seen = Seen {
        cursors,
        live: records.len() - merged,
        merged,
        outbox: outbox.len(),
    };
    (bad, seen)
}

fn assert_consistent(when: &str, engine: &Engine, store: &dyn Store) -> Seen {
    let (bad, seen) = check(engine, store);
    let cursors = seen.cursors;
    assert!(
        bad.is_empty(),
        "{when}: {} violations (cursors contacts/users/companies = {cursors:?}), first ones:\n{}",
        bad.len(),
        bad.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
    seen
}

/// Kills the child if the parent panics first: it would otherwise apply pages forever.
struct Reaper(std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn apply_survives_sigkill_at_random_points() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_config(dir);
    let exe = std::env::current_exe().unwrap();
    let mut rng = XorShift(SEED);
    let started = Instant::now();
    let mut last = [0u64; 3];
    let mut trials_with_progress = 0;

    for trial in 1..=TRIALS {
        let log_path: PathBuf = dir.join(format!("child-{trial}.log"));
        let ready = dir.join(format!("child-{trial}.ready"));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Reaper(
            Command::new(&exe)
                .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, dir)
                .env(READY_ENV, &ready)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn child"),
        );
        // Start-up (process, config, sled recovery) grows with the data; timing the kill
        // from readiness keeps every kill inside the apply loop.
        let waiting = Instant::now();
        while !ready.exists() {
            if let Some(status) = child.0.try_wait().expect("poll child") {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("trial {trial}: the child ended ({status}) before it was ready:\n{log}");
            }
            assert!(
                waiting.elapsed() < Duration::from_secs(30),
                "trial {trial}: the child was not ready within 30 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let delay = KILL_AFTER_MS.start + rng.next() % (KILL_AFTER_MS.end - KILL_AFTER_MS.start);
        std::thread::sleep(Duration::from_millis(delay));
        // std's kill is SIGKILL on unix: no destructor, no flush, no unwinding.
        child.0.kill().expect("kill child");
        let status = child.0.wait().expect("wait child");
        if status.signal() != Some(libc::SIGKILL) {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("trial {trial}: the child ended by itself ({status}) before the kill:\n{log}");
        }

        let (engine, store) = open_engine(dir);
        let seen = assert_consistent(
            &format!("trial {trial} (killed after {delay} ms)"),
            &engine,
            store.as_ref(),
        );
        let cursors = seen.cursors;
        // What one reopen saw was on disk; a later crash must not take it back.
        for (i, s) in Stream::ALL.iter().enumerate() {
            assert!(
                cursors[i] >= last[i],
                "trial {trial}: {s:?} cursor went back from {} to {}: data seen after the previous crash was lost",
                last[i],
                cursors[i]
            );
        }
        if cursors != last {
            trials_with_progress += 1;
        }
        println!(
            "trial {trial:2}: killed after {delay:3} ms, cursors contacts/users/companies = {cursors:?}, \
             {} live records, {} merged, {} queued pushes",
            seen.live, seen.merged, seen.outbox
        );
        last = cursors;
        // Both must be gone before the next child opens the directory: sled locks it.
        drop(engine);
        drop(store);
    }

    // A trial whose work never reached the disk before the kill only re-tests the same state.
    assert!(
        trials_with_progress >= TRIALS / 2,
        "only {trials_with_progress} of {TRIALS} trials applied a page before the kill"
    );

    // Carry on in-process from wherever the last crash left things, then replay a page.
    let (engine, store) = open_engine(dir);
    for _ in 0..9 {
        apply_next(&engine);
    }
    let cursors = assert_consistent("after resuming in-process", &engine, store.as_ref()).cursors;
    for (i, s) in Stream::ALL.iter().enumerate() {
        let changes = page(*s, cursors[i]).into_iter().map(|(_, c)| c).collect();
        let again = Page {
            object: s.object().into(),
            changes,
            cursor: Some(cursors[i].to_string()),
        };
        let report = engine.apply(s.connector(), again).expect("replay");
        assert_eq!(
            (
                report.created,
                report.updated,
                report.merged,
                report.enqueued
            ),
            (0, 0, 0, 0),
            "replaying {s:?} page {} changed something: {report:?}",
            cursors[i]
        );
    }
    assert_consistent("after replaying the last pages", &engine, store.as_ref());
    println!(
        "{TRIALS} trials, final cursors {cursors:?}, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
