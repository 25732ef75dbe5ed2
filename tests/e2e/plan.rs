//! `revsync plan` (issue 26): run on the seeded world before any sync, it lists the
//! creates, updates (copy by copy, field by field) and merges the sync then performs; with
//! `--limit`, it reads a sample of each object and says which.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};

use crate::harness::{Rig, Snapshot};
use crate::{baseline, ONE_AT_A_TIME};

/// Records a system holds, by the snapshot's natural keys (per kind).
fn held(snap: &Snapshot, system: &str) -> usize {
    snap.held
        .iter()
        .filter(|(sk, _)| sk.starts_with(&format!("{system}:")))
        .map(|(_, keys)| keys.values().map(Vec::len).sum::<usize>())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_lists_the_creates_updates_and_merges_the_sync_then_performs() {
    let _one = ONE_AT_A_TIME.lock().await;
    let b = baseline().await;
    let plan = &b.plan;
    for system in ["hubspot", "salesforce", "zendesk", "stripe"] {
        let planned = plan["systems"][system]["creates"]
            .as_array()
            .map_or(0, Vec::len);
        let made = held(&b.snapshot, system) - held(&b.seeded, system);
        assert_eq!(
            planned, made,
            "{system}: plan said {planned} creates, the sync made {made} records"
        );
    }
    let creates: usize = ["hubspot", "salesforce", "zendesk"]
        .iter()
        .map(|s| plan["systems"][s]["creates"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(creates > 0, "the demo world needs creates: {plan}");

    // Every merge the plan shows, the sync made: its copies are one record.
    let merges = plan["merges"].as_array().unwrap();
    assert!(!merges.is_empty(), "the demo world has shared identities");
    for m in merges {
        let ids: BTreeSet<&String> = m["copies"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| b.canonical_of.get(c.as_str().unwrap()))
            .collect();
        assert_eq!(ids.len(), 1, "merge {m} became {ids:?} after the sync");
    }
    // And the sync made no merge the plan did not show: as many canonical records.
    let canonical: BTreeSet<&String> = b.canonical_of.values().collect();
    let planned = plan["canonical"].as_u64().unwrap() as usize;
    assert!(
        canonical.len() <= planned,
        "the seeded copies became {} records, the plan said {planned}",
        canonical.len()
    );
    // Each update the plan lists, the sync made, to the same copy and fields; and the
    // sync changed no seeded copy the plan did not list.
    let mut wrong = Vec::new();
    for system in ["hubspot", "salesforce", "zendesk", "stripe"] {
        let planned: BTreeMap<String, BTreeSet<String>> = plan["systems"][system]["updates"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|u| {
                let copy = format!(
                    "{system}:{}:{}",
                    u["object"].as_str().unwrap(),
                    u["external_id"].as_str().unwrap()
                );
                let fields = u["fields"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["field"].as_str().unwrap().to_owned())
                    .collect();
                (copy, fields)
            })
            .collect();
        let made: BTreeMap<String, BTreeSet<String>> = b
            .seeded_copies
            .iter()
            .filter(|(r, _)| r.starts_with(&format!("{system}:")))
            .filter_map(|(r, before)| {
                let after = b.synced_copies.get(r)?;
                let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
                let changed: BTreeSet<String> = keys
                    .into_iter()
                    .filter(|k| before.get(*k) != after.get(*k))
                    .cloned()
                    .collect();
                (!changed.is_empty()).then(|| (r.clone(), changed))
            })
            .collect();
        for (copy, fields) in &planned {
            match made.get(copy) {
                None => wrong.push(format!("{copy}: planned {fields:?}, not written")),
                Some(m) if m != fields => {
                    wrong.push(format!("{copy}: planned {fields:?}, written {m:?}"))
                }
                Some(_) => {}
            }
        }
        for (copy, fields) in &made {
            if !planned.contains_key(copy) {
                wrong.push(format!("{copy}: not planned, written {fields:?}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} differences:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// `plan --limit N` reads at most N records of each object, names each object it cut
/// short, and plans only from what it read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_with_a_limit_reads_a_sample_of_each_object_and_says_so() {
    let _one = ONE_AT_A_TIME.lock().await;
    let full = &baseline().await.plan;
    // The same seeded world, never synced.
    let rig = Rig::new().await;
    const LIMIT: u64 = 7;
    let sample = rig.plan_with(&["--limit", &LIMIT.to_string()]);
    let sampled: BTreeSet<&str> = sample["sampled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let mut cut = BTreeSet::new();
    for (connector, objects) in full["read"].as_object().unwrap() {
        for (object, n) in objects.as_object().unwrap() {
            let all = n.as_u64().unwrap();
            let read = sample["read"][connector][object].as_u64().unwrap();
            assert_eq!(
                read,
                all.min(LIMIT),
                "{connector}/{object}: read {read} of {all}"
            );
            if all > LIMIT {
                cut.insert(format!("{connector}/{object}"));
            }
        }
    }
    assert!(
        !cut.is_empty(),
        "the world has objects larger than the limit"
    );
    assert_eq!(
        sampled,
        cut.iter().map(String::as_str).collect(),
        "objects named as sampled"
    );
    // Planned from the sample only: no more records than were read, fewer writes.
    let read: u64 = sample["read"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|o| o.as_object().unwrap().values())
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert!(sample["canonical"].as_u64().unwrap() <= read, "{sample}");
    let creates = |p: &serde_json::Value| -> usize {
        p["systems"]
            .as_object()
            .unwrap()
            .values()
            .map(|s| s["creates"].as_array().map_or(0, Vec::len))
            .sum()
    };
    assert!(creates(&sample) < creates(full), "{sample}");
}
