//! Identity benchmark (issue 19): precision and recall of the engine's identity (exact keys,
//! then the scored model) on generated persons and companies with realistic errors and
//! ground truth, and the time per record online.
//!
//! `cargo bench --bench identity` generates 10k and 100k person entities (and a fifth as
//! many companies), each held by 2 to 4 of four systems (src/engine/identity/gen.rs lists
//! the errors and their rates), and applies every copy through `Engine::apply` in pages of
//! 200, systems interleaved, on a sled store in a temporary directory. Each size runs
//! three times, in the same process: `exact`, with scored matching off (the reference: links
//! and exact keys only); `scored`, the shipped model; and `trained`, with the models
//! `Engine::train_identity` estimated from the exact run's store (what `revsync identity
//! train` after a first sync with scored matching off, then a restart, gives). It prints, per kind, pairwise precision and
//! recall against the truth, merges made by score, pairs sent to review (and how many of
//! them are true pairs), guard vetoes, microseconds per record and the ratio of the scored
//! run's time to the exact run's. Figures: docs/BENCHMARKS.md.
//!
//! `IDENTITY_SIZES=2000,10000` picks the sizes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use revsync::config::{self, Config};
use revsync::engine::identity::gen::{self, Copy, Rates};
use revsync::engine::identity::Model;
use revsync::engine::{codec, install_model, system_clock, Engine, Page};
use revsync::registry::Registry;
use revsync::store::{SledStore, Store, Table};
use revsync_sdk::{Change, Kind, Value};
use uuid::Uuid;

const PAGE: usize = 200;
const SEED: u64 = 0x6964_656e_7469_7479;
const SYSTEMS: [&str; 4] = ["crm-a", "crm-b", "support", "billing"];

fn connector(id: &str) -> String {
    format!(
        "version: 1
id: {id}
type: hubspot
params: {{ token: bench-token }}
objects:
  contacts:
    kind: person
    direction: both
    fields:
      email: email
      firstname: first_name
      lastname: last_name
      phone: phone
      city: city
      date_of_birth: custom.birth_date
  companies:
    kind: organization
    direction: both
    fields: {{ name: name, domain: domain, phone: custom.phone, city: city, country: country }}
"
    )
}

fn write_config(dir: &Path, scored: bool) -> Config {
    std::fs::create_dir_all(dir.join("connectors")).unwrap();
    let identity = if scored {
        String::new()
    } else {
        "identity:\n  person: { enabled: false }\n  organization: { enabled: false }\n".into()
    };
    std::fs::write(
        dir.join("revsync.yaml"),
        format!(
            "version: 1\nstore:\n  path: {}\n  flush_interval_ms: 500\nlog:\n  level: warn\n{identity}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    for id in SYSTEMS {
        std::fs::write(dir.join(format!("connectors/{id}.yaml")), connector(id)).unwrap();
    }
    config::load(
        dir,
        &Registry::builtin(),
        &BTreeMap::<String, String>::new(),
    )
    .unwrap_or_else(|e| panic!("benchmark configuration: {e}"))
}

fn field_name(canonical: &str) -> &str {
    match canonical {
        "first_name" => "firstname",
        "last_name" => "lastname",
        "custom.birth_date" => "date_of_birth",
        "custom.phone" => "phone",
        other => other,
    }
}

fn change(i: usize, c: &Copy) -> Change {
    Change {
        object: String::new(),
        external_id: format!("{}-{i}", c.entity),
        source_updated_at: Utc.timestamp_opt(1_700_000_000 + i as i64, 0).unwrap(),
        fields: c
            .values
            .iter()
            .filter_map(|(k, v)| match v {
                Value::Text(t) => Some((
                    field_name(k).to_owned(),
                    serde_json::Value::String(t.clone()),
                )),
                _ => None,
            })
            .collect(),
        deleted: false,
        canonical_id: None,
    }
}

struct Outcome {
    elapsed: Duration,
    copies: usize,
    scored_merged: usize,
    merged: usize,
    vetoed: usize,
    reviews: Vec<(Uuid, Uuid)>,
    /// (kind, precision, recall, true pairs found, predicted pairs, true pairs)
    quality: Vec<(&'static str, f64, f64, u64, u64, u64)>,
    review_true: usize,
}

fn alive(store: &dyn Store, mut id: Uuid) -> Uuid {
    for _ in 0..64 {
        let Some(bytes) = store.get(Table::Records, &codec::record_key(id)).unwrap() else {
            break;
        };
        match codec::decode_record(&bytes).unwrap().merged_into {
            Some(next) => id = next,
            None => break,
        }
    }
    id
}

/// One run over a fresh store: `scored` off is the exact-only reference; `trained` models
/// are installed before the engine starts (as `revsync identity train` leaves them for
/// the next start). The exact run trains on its result (duplicates no score merged: the
/// population as the systems hold it) and returns the models, for the trained run.
fn run(world: &gen::World, scored: bool, trained: &[Model]) -> (Outcome, Vec<Model>) {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), scored);
    let s = &cfg.daemon.store;
    let store: Arc<dyn Store> = Arc::new(
        SledStore::open(&tmp.path().join("data"), s.flush_interval_ms, s.cache_mb).unwrap(),
    );
    for m in trained {
        install_model(store.as_ref(), m).unwrap();
    }
    let (mappings, policies) = Engine::validate(&cfg).unwrap_or_else(|e| panic!("{e:?}"));
    let engine = Engine::new(store.clone(), &cfg, mappings, policies, system_clock()).unwrap();

    // Each system's copies in order, its pages taken in turn with the other systems'.
    let mut pages: Vec<(usize, &'static str, Vec<Change>)> = Vec::new();
    for (object, copies) in [
        ("contacts", &world.persons),
        ("companies", &world.organizations),
    ] {
        let mut per: Vec<Vec<Change>> = vec![Vec::new(); SYSTEMS.len()];
        for (i, c) in copies.iter().enumerate() {
            per[c.source].push(change(i, c));
        }
        let mut chunks: Vec<std::vec::IntoIter<Vec<Change>>> = per
            .into_iter()
            .map(|v| {
                v.chunks(PAGE)
                    .map(<[Change]>::to_vec)
                    .collect::<Vec<_>>()
                    .into_iter()
            })
            .collect();
        loop {
            let mut any = false;
            for (sys, it) in chunks.iter_mut().enumerate() {
                if let Some(p) = it.next() {
                    pages.push((sys, object, p));
                    any = true;
                }
            }
            if !any {
                break;
            }
        }
    }
    let copies = pages.iter().map(|p| p.2.len()).sum();
    let mut out = Outcome {
        elapsed: Duration::ZERO,
        copies,
        scored_merged: 0,
        merged: 0,
        vetoed: 0,
        reviews: Vec::new(),
        quality: Vec::new(),
        review_true: 0,
    };
    let start = Instant::now();
    for (n, (sys, object, changes)) in pages.into_iter().enumerate() {
        let r = engine
            .apply(
                SYSTEMS[sys],
                Page {
                    object: object.to_owned(),
                    changes,
                    cursor: Some(n.to_string()),
                },
            )
            .unwrap();
        out.scored_merged += r.scored_merged;
        out.merged += r.merged;
        out.vetoed += r.vetoed;
    }
    store.flush().unwrap();
    out.elapsed = start.elapsed();

    let mut record_of: BTreeMap<(usize, &str, String), Uuid> = BTreeMap::new();
    for (kind, object, copies) in [
        ("person", "contacts", &world.persons),
        ("organization", "companies", &world.organizations),
    ] {
        let mut pairs = Vec::with_capacity(copies.len());
        for (i, c) in copies.iter().enumerate() {
            let ext = format!("{}-{i}", c.entity);
            let key = codec::link_key(SYSTEMS[c.source], object, &ext);
            let id = Uuid::from_slice(
                &store
                    .get(Table::Links, &key)
                    .unwrap()
                    .expect("every copy is linked"),
            )
            .unwrap();
            let id = alive(store.as_ref(), id);
            record_of.insert((c.source, object, ext), id);
            pairs.push((id.as_u128(), c.entity));
        }
        let (p, r, tp, pp, tt) = gen::pairwise(pairs);
        out.quality.push((kind, p, r, tp, pp, tt));
    }
    if std::env::var("IDENTITY_DEBUG").is_ok() && scored {
        let mut by_record: BTreeMap<Uuid, Vec<&Copy>> = BTreeMap::new();
        for (i, c) in world.persons.iter().enumerate() {
            by_record
                .entry(record_of[&(c.source, "contacts", format!("{}-{i}", c.entity))])
                .or_default()
                .push(c);
        }
        let mut shown = 0;
        for (id, cs) in &by_record {
            if cs.iter().any(|c| c.entity != cs[0].entity) && shown < 8 {
                shown += 1;
                println!("false merge {id}:");
                for c in cs {
                    println!(
                        "   entity {} source {}: {:?}",
                        c.entity,
                        c.source,
                        c.values.values().collect::<Vec<_>>()
                    );
                }
                for a in engine.audit(*id, 20).unwrap() {
                    println!("   audit {:?}", a.event);
                }
            }
        }
    }
    // Review pairs that are one entity: each record's entities, by its copies.
    let mut entities_of: BTreeMap<Uuid, Vec<u32>> = BTreeMap::new();
    for (object, copies) in [
        ("contacts", &world.persons),
        ("companies", &world.organizations),
    ] {
        for (i, c) in copies.iter().enumerate() {
            let id = record_of[&(c.source, object, format!("{}-{i}", c.entity))];
            entities_of.entry(id).or_default().push(c.entity);
        }
    }
    for r in engine.reviews(100_000).unwrap() {
        let (a, b) = (alive(store.as_ref(), r.a), alive(store.as_ref(), r.b));
        let ea = entities_of.get(&a).cloned().unwrap_or_default();
        let eb = entities_of.get(&b).cloned().unwrap_or_default();
        if ea.iter().any(|e| eb.contains(e)) {
            out.review_true += 1;
        }
        out.reviews.push((a, b));
    }
    let mut models = Vec::new();
    if !scored {
        for kind in [Kind::Person, Kind::Organization] {
            let t = Instant::now();
            if let Some((m, r)) = engine.train_identity(kind, SEED).unwrap() {
                println!(
                    "  trained {kind} v{} on the exact run's {} records in {:.1} s ({} blocked pairs, {} EM iterations, expected precision {:.5})",
                    m.version,
                    r.records,
                    t.elapsed().as_secs_f64(),
                    r.blocked_pairs,
                    r.iterations,
                    r.expected_precision
                );
                models.push(m);
            }
        }
    }
    (out, models)
}

fn main() {
    let sizes: Vec<usize> = std::env::var("IDENTITY_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000]);
    println!("identity: persons and companies with realistic errors (src/engine/identity/gen.rs), through Engine::apply on sled, pages of {PAGE}");
    for n in sizes {
        let t = Instant::now();
        let world = gen::generate(n, SEED, &Rates::default());
        println!(
            "\n{n} person entities ({} copies), {} companies ({} copies); generated in {:.1} s",
            world.persons.len(),
            n / 5,
            world.organizations.len(),
            t.elapsed().as_secs_f64()
        );
        let (exact, models) = run(&world, false, &[]);
        let (scored, _) = run(&world, true, &[]);
        let (trained, _) = run(&world, true, &models);
        for (name, o) in [
            ("exact", &exact),
            ("scored", &scored),
            ("trained", &trained),
        ] {
            println!(
                "  {name:<7} {:>8.1} s whole set, {:>7.1} us per record; merges by score {}, record merges {}, to review {} ({} true pairs), guard vetoes {}",
                o.elapsed.as_secs_f64(),
                o.elapsed.as_secs_f64() * 1e6 / o.copies as f64,
                o.scored_merged,
                o.merged,
                o.reviews.len(),
                o.review_true,
                o.vetoed
            );
            for (kind, p, r, tp, pp, tt) in &o.quality {
                println!("         {kind:<12} precision {p:.5} recall {r:.5} (true pairs found {tp} of {tt}; pairs predicted {pp})");
            }
        }
        println!(
            "  ratio scored / exact time: {:.2}; trained / exact: {:.2}",
            scored.elapsed.as_secs_f64() / exact.elapsed.as_secs_f64(),
            trained.elapsed.as_secs_f64() / exact.elapsed.as_secs_f64()
        );
    }
}
