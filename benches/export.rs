//! Export benchmark: `revsync records export` of N persons, its time and peak memory
//! against a bare walk of the same store measured in the same run.
//!
//! `cargo bench --bench export` writes a HubSpot + Salesforce configuration into a
//! temporary directory and fills a sled store through `Engine::apply` (pages of 500, not
//! timed) with N persons from HubSpot (`EXPORT_N`, default 100,000; the documented
//! campaign is 1,000,000), a third of them also in Salesforce under the same email with
//! another title (two ids, an audit entry each), and N/10 companies the person export
//! must skip. Then, each in a fresh child process of this binary so that its peak RSS
//! (VmHWM) is its own:
//! - `csv` and `jsonl`: the export as the CLI runs it without a daemon (`Export::run` over
//!   the opened store into a 256 KiB-buffered file); the daemon runs the same walk into
//!   its bounded channel.
//! - `raw`: the reference, the same page-by-page walk of the `Records` table writing each
//!   stored value to the same kind of file: no decoding, no audit reads, no formatting.
//!
//! Printed: rows, bytes, seconds, records/s, peak RSS and RSS after opening the store for
//! each, and `ratio export / raw walk` (time) on a line of its own. The store keeps the
//! daemon's default 256 MiB cache, which a full walk fills: the raw walk's peak shows
//! that share, and the export's peak above it is the export's own. `EXPORT_CACHE_MB=16`
//! opens the store for the walks (not the fill) with a small cache, so that the peaks are
//! mostly the walks' own. Figures: docs/BENCHMARKS.md.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

// The daemon's allocator (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use revsync::config::{self, Config};
use revsync::engine::{system_clock, Engine, Page};
use revsync::export::{Export, Format};
use revsync::registry::Registry;
use revsync::store::{scan_pages, SledStore, Store, Table};
use revsync_sdk::{Change, Kind};
use serde_json::json;

const CHILD_ENV: &str = "EXPORT_BENCH_CHILD";
const PAGE: usize = 500;

const HUBSPOT: &str = "version: 1\nid: hubspot-main\ntype: hubspot\nparams: { token: t, base_url: 'http://127.0.0.1:9' }\nobjects:\n  contacts:\n    kind: person\n    fields: { email: email, firstname: first_name, lastname: last_name, jobtitle: title, lifecyclestage: { to: lifecycle_stage, map: default }, hs_lead_tier: custom.tier }\n  companies:\n    kind: organization\n    fields: { name: name, domain: domain }\n";
const SALESFORCE: &str = "version: 1\nid: salesforce-main\ntype: salesforce\nparams: { auth: { flow: client_credentials, token_url: 'http://127.0.0.1:9/token', client_id: c, client_secret: s } }\nobjects:\n  Contact:\n    kind: person\n    fields: { Email: email, FirstName: first_name, LastName: last_name, Title: title }\n";

fn main() {
    match std::env::var(CHILD_ENV) {
        Ok(mode) => child(&mode),
        Err(_) => parent(),
    }
}

fn n() -> usize {
    std::env::var("EXPORT_N")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(100_000)
}

fn parent() {
    let n = n();
    let tmp = tempfile::Builder::new()
        .prefix("export-")
        .tempdir()
        .unwrap();
    let cfg = write_config(tmp.path());
    println!(
        "export: {} cores, N = {n} persons ({} also in Salesforce) and {} companies, store cache_mb {} (fill {})",
        std::thread::available_parallelism().map_or(0, |c| c.get()),
        n / 3 + usize::from(n % 3 != 0),
        n / 10,
        cache_mb(&cfg),
        cfg.daemon.store.cache_mb,
    );
    let fill = spawn("fill", tmp.path());
    println!("   fill (not timed against anything): {}", fill.trim());
    let mut figures = BTreeMap::new();
    for mode in ["raw", "csv", "jsonl"] {
        let line = spawn(mode, tmp.path());
        println!("   {mode:5} {}", line.trim());
        let secs: f64 = field(&line, "secs").parse().unwrap();
        figures.insert(mode, secs);
    }
    for mode in ["csv", "jsonl"] {
        println!(
            "ratio {mode} export / raw walk: {:.2}",
            figures[mode] / figures["raw"]
        );
    }
}

/// The store cache the walks open it with: `EXPORT_CACHE_MB`, else the daemon's default.
fn cache_mb(cfg: &Config) -> u64 {
    std::env::var("EXPORT_CACHE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cfg.daemon.store.cache_mb)
}

/// `key=value` out of a child's line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

fn spawn(mode: &str, dir: &Path) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, mode)
        .env("EXPORT_DIR", dir)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{mode} run failed:\n{text}");
    text
}

fn child(mode: &str) {
    let dir = PathBuf::from(std::env::var("EXPORT_DIR").unwrap());
    let cfg = config::load(&dir, &Registry::builtin(), &BTreeMap::new()).unwrap();
    let s = &cfg.daemon.store;
    // The walks may open the store with another cache than the fill (EXPORT_CACHE_MB):
    // with a small one, what is left of the peak is the walk's own memory.
    let cache_mb = match mode {
        "fill" => s.cache_mb,
        _ => cache_mb(&cfg),
    };
    let store: Arc<dyn Store> =
        Arc::new(SledStore::open(&s.path, s.flush_interval_ms, cache_mb).unwrap());
    if mode == "fill" {
        return fill(&cfg, store, n());
    }
    let opened_kb = status_kb("VmRSS:");
    let path = dir.join(format!("out.{mode}"));
    let mut out = BufWriter::with_capacity(256 * 1024, std::fs::File::create(&path).unwrap());
    let started = Instant::now();
    let rows = match mode {
        "raw" => {
            let mut rows = 0u64;
            for page in scan_pages(
                store.as_ref(),
                Table::Records,
                b"",
                revsync::export::PAGE_RECORDS,
            ) {
                for (_, v) in page.unwrap() {
                    out.write_all(&v).unwrap();
                    out.write_all(b"\n").unwrap();
                    rows += 1;
                }
            }
            out.flush().unwrap();
            rows
        }
        "csv" | "jsonl" => {
            let format = if mode == "csv" {
                Format::Csv
            } else {
                Format::Jsonl
            };
            let (m, _) = Engine::validate(&cfg).unwrap();
            Export::new(Kind::Person, format, &m)
                .run(store.as_ref(), &mut out)
                .unwrap()
        }
        other => panic!("unknown mode {other}"),
    };
    let secs = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&path).unwrap().len();
    println!(
        "rows={rows} bytes={bytes} secs={secs:.3} rows_per_sec={:.0} peak_rss_mib={} rss_after_open_mib={}",
        rows as f64 / secs,
        status_kb("VmHWM:") / 1024,
        opened_kb / 1024,
    );
    let _ = std::fs::remove_file(&path);
}

fn fill(cfg: &Config, store: Arc<dyn Store>, n: usize) {
    let (m, p) = Engine::validate(cfg).unwrap();
    let engine = Engine::new(store.clone(), cfg, m, p, system_clock()).unwrap();
    let started = Instant::now();
    let stamp = |i: usize| DateTime::<Utc>::from_timestamp(1_700_000_000 + i as i64, 0).unwrap();
    let change = |object: &str, id: String, i: usize, fields: serde_json::Value| Change {
        object: object.into(),
        external_id: id,
        source_updated_at: stamp(i),
        fields: fields.as_object().unwrap().clone().into_iter().collect(),
        deleted: false,
        canonical_id: None,
    };
    let apply = |connector: &str, object: &str, changes: Vec<Change>| {
        engine
            .apply(
                connector,
                Page {
                    object: object.into(),
                    changes,
                    cursor: None,
                },
            )
            .unwrap();
    };
    for start in (0..n).step_by(PAGE) {
        let end = (start + PAGE).min(n);
        let contacts = (start..end)
            .map(|i| {
                change(
                    "contacts",
                    i.to_string(),
                    i,
                    json!({
                        "email": format!("person{i}@example{}.com", i % 997),
                        "firstname": format!("First{i}"),
                        "lastname": format!("Last, \"{i}\""),
                        "jobtitle": "Engineer",
                        "lifecyclestage": "lead",
                        "hs_lead_tier": "gold",
                    }),
                )
            })
            .collect();
        apply("hubspot-main", "contacts", contacts);
        let sf = (start..end)
            .filter(|i| i % 3 == 0)
            .map(|i| {
                change(
                    "Contact",
                    format!("003{i:012}"),
                    i + 1,
                    json!({
                        "Email": format!("person{i}@example{}.com", i % 997),
                        "LastName": format!("Last, \"{i}\""),
                        "Title": "Senior Engineer",
                    }),
                )
            })
            .collect();
        apply("salesforce-main", "Contact", sf);
    }
    for start in (0..n / 10).step_by(PAGE) {
        let end = (start + PAGE).min(n / 10);
        let companies = (start..end)
            .map(|i| {
                change(
                    "companies",
                    format!("c{i}"),
                    i,
                    json!({"name": format!("Company {i}"), "domain": format!("company{i}.io")}),
                )
            })
            .collect();
        apply("hubspot-main", "companies", companies);
    }
    store.flush().unwrap();
    println!("filled in {:.1}s", started.elapsed().as_secs_f64());
}

fn write_config(dir: &Path) -> Config {
    std::fs::create_dir_all(dir.join("connectors")).unwrap();
    std::fs::write(
        dir.join("revsync.yaml"),
        format!(
            "version: 1\nstore:\n  path: {}\nlog:\n  level: warn\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("connectors/hubspot.yaml"), HUBSPOT).unwrap();
    std::fs::write(dir.join("connectors/salesforce.yaml"), SALESFORCE).unwrap();
    config::load(dir, &Registry::builtin(), &BTreeMap::new()).unwrap()
}

/// A `kB` figure of /proc/self/status (0 where there is none).
fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
