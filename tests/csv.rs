//! `type: csv` end to end (issue 18): the connector file exactly as the issue writes it is
//! accepted by `revsync check` and syncs; a bad one is refused naming file, connector and
//! field; and a daemon killed with SIGKILL while it writes a file back leaves the old file
//! or the new one, never a torn one, and never a row twice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_revsync");
const TOKEN: &str = "csv-test-admin-token-0123456789";

/// A config dir: the issue's `leads-sheet` over `sheets/` and a `mirror` connector that
/// keeps `mirror/people.csv` up to date with the agreed persons.
struct Setup {
    root: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for d in ["config/connectors", "sheets", "mirror", "data"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::write(
            r.join("config/revsync.yaml"),
            format!(
                "version: 1\nserver:\n  listen: 127.0.0.1:0\n  admin_token: {TOKEN}\nstore:\n  path: {}\nlog:\n  level: warn\n",
                r.join("data").display()
            ),
        )
        .unwrap();
        // The issue's form, word for word but for the folder; polled every second (the
        // default minute is longer than a test should wait).
        std::fs::write(
            r.join("config/connectors/leads-sheet.yaml"),
            format!(
                "version: 1
id: leads-sheet
type: csv
params: {{ dir: {} }}
objects:
  people:            # reads /path/to/folder/people.csv
    kind: person
    key: id
    fields: {{ email: email, first_name: first_name, last_name: last_name, phone: phone, company: custom.company }}
poll: {{ interval_secs: 1 }}
",
                r.join("sheets").display()
            ),
        )
        .unwrap();
        std::fs::write(
            r.join("config/connectors/mirror.yaml"),
            format!(
                "version: 1
id: mirror
type: csv
params: {{ dir: {}, write_back: true }}
poll: {{ interval_secs: 1 }}
objects:
  people:
    kind: person
    key: email
    fields: {{ email: email, first_name: first_name, last_name: last_name, company: custom.company }}
",
                r.join("mirror").display()
            ),
        )
        .unwrap();
        Self { root }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.path().join(p)
    }

    fn config(&self) -> PathBuf {
        self.path("config")
    }

    fn start(&self) -> Child {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("daemon.log"))
            .unwrap();
        Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(self.config())
            .env_remove("RUST_LOG")
            .env("REVSYNC_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("daemon.log")).unwrap_or_default()
    }
}

fn people_csv(n: usize) -> String {
    let mut s = String::from("id,email,first_name,last_name,phone,company\n");
    for i in 0..n {
        s.push_str(&format!(
            "{i},person{i}@csv.test,First{i},\"Last, {i}\",,\"Acme \"\"{i}\"\"\"\n"
        ));
    }
    s
}

/// The mirror's rows by email, column by column, after checking the file is whole: a
/// header, every row as wide as it, each person once.
fn mirror_rows(path: &Path) -> Result<BTreeMap<String, BTreeMap<String, String>>, String> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(BTreeMap::new());
    };
    let mut rdr = csv::ReaderBuilder::new().from_reader(&bytes[..]);
    let header: Vec<String> = rdr
        .headers()
        .map_err(|e| format!("header: {e}"))?
        .iter()
        .map(str::to_owned)
        .collect();
    let email = header
        .iter()
        .position(|h| h == "email")
        .ok_or("no email column")?;
    let mut rows = BTreeMap::new();
    for r in rdr.records() {
        let r = r.map_err(|e| format!("a torn row: {e}"))?;
        if r.len() != header.len() {
            return Err(format!(
                "a row of {} cells under {} columns",
                r.len(),
                header.len()
            ));
        }
        let key = r[email].to_owned();
        let cells = header.iter().cloned().zip(r.iter().map(str::to_owned));
        if rows.insert(key.clone(), cells.collect()).is_some() {
            return Err(format!("{key} twice"));
        }
    }
    Ok(rows)
}

fn wait_for(what: &str, secs: u64, setup: &Setup, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for: {what}\n{}", setup.log());
}

#[test]
fn the_issues_csv_form_checks_and_syncs_into_a_written_back_file() {
    let s = Setup::new();
    std::fs::write(s.path("sheets/people.csv"), people_csv(3)).unwrap();
    let check = Command::new(BIN)
        .args(["check", "--config"])
        .arg(s.config())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    let mut d = s.start();
    let mirror = s.path("mirror/people.csv");
    wait_for("three people in the mirror", 60, &s, || {
        mirror_rows(&mirror).unwrap().len() == 3
    });
    let rows = mirror_rows(&mirror).unwrap();
    let text = std::fs::read_to_string(&mirror).unwrap();
    assert!(
        text.starts_with("email,"),
        "the key column comes first: {text}"
    );
    assert!(text.contains("\"Acme \"\"1\"\"\""), "{text}");
    let one = &rows["person1@csv.test"];
    assert_eq!(one["last_name"], "Last, 1", "{text}");
    assert_eq!(one["company"], "Acme \"1\"", "{text}");
    assert_eq!(one.len(), 5, "{text}");

    // An edit of the sheet reaches the mirror, and the mirror's own write is not read back
    // as a change (no ping-pong: the file settles).
    let edited = people_csv(3).replace("First2,", "Renamed,");
    std::fs::write(s.path("sheets/people.csv"), edited).unwrap();
    wait_for("the edit in the mirror", 30, &s, || {
        std::fs::read_to_string(&mirror)
            .unwrap()
            .contains("Renamed")
    });
    let settled = std::fs::read(&mirror).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(std::fs::read(&mirror).unwrap(), settled);
    d.kill().unwrap();
    let _ = d.wait();
}

#[test]
fn a_bad_csv_connector_is_refused_with_file_connector_and_field() {
    let s = Setup::new();
    let file = s.path("config/connectors/mirror.yaml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("write_back: true", "write_back: true, delimiter: ';;'")
        .replace("    key: email\n", "");
    std::fs::write(&file, text).unwrap();
    std::fs::write(
        s.path("config/connectors/odd.yaml"),
        format!(
            "version: 1\nid: odd\ntype: csv\nparams: {{ dir: {} }}\nobjects:\n  ../etc:\n    kind: person\n",
            s.path("sheets").display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(s.config())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(err.contains("mirror.yaml"), "{err}");
    assert!(err.contains("params.delimiter"), "{err}");
    assert!(err.contains("not one ASCII character"), "{err}");
    assert!(err.contains("objects.people.key"), "{err}");
    assert!(err.contains("write_back needs a key column"), "{err}");
    assert!(err.contains("odd.yaml"), "{err}");
    assert!(err.contains("`../etc` is not a plain name"), "{err}");
    assert!(err.contains("objects.../etc.fields"), "{err}");
    assert!(err.contains("no default mapping"), "{err}");
}

#[test]
fn a_kill_during_write_back_leaves_a_whole_file_and_every_row_once() {
    let s = Setup::new();
    let mirror = s.path("mirror/people.csv");
    let mut n = 0;
    // Each round adds rows to the sheet and kills the daemon at a different moment of
    // its reading and writing them.
    for (round, wait_ms) in [150u64, 400, 700, 1000, 1500].into_iter().enumerate() {
        n += 400;
        std::fs::write(s.path("sheets/people.csv"), people_csv(n)).unwrap();
        let mut d = s.start();
        std::thread::sleep(Duration::from_millis(wait_ms));
        d.kill().unwrap();
        let _ = d.wait();
        match mirror_rows(&mirror) {
            Err(e) => panic!("round {round}: the mirror is torn: {e}\n{}", s.log()),
            Ok(rows) => eprintln!(
                "round {round}: killed after {wait_ms} ms with {} of {n} people in the mirror",
                rows.len()
            ),
        }
        let strays: Vec<_> = std::fs::read_dir(s.path("mirror"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "people.csv")
            .collect();
        // A temporary file a kill left behind is harmless: it is never read.
        assert!(strays.iter().all(|n| n.ends_with(".tmp")), "{strays:?}");
    }
    let mut d = s.start();
    wait_for("every person once in the mirror", 120, &s, || {
        mirror_rows(&mirror).is_ok_and(|r| r.len() == n)
    });
    d.kill().unwrap();
    let _ = d.wait();
    let rows = mirror_rows(&mirror).unwrap();
    assert_eq!(rows.len(), n);
    assert_eq!(rows["person7@csv.test"]["first_name"], "First7");
}
