//! Engine invariants under generated histories (proptest): order-independence,
//! idempotent replay, no ping-pong on echoes, and merges that lose nothing.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use common::*;
use proptest::prelude::*;
use revsync::config::Config;
use revsync::engine::codec::AuditEvent;
use revsync::engine::{Engine, Page};
use revsync::store::MemStore;
use revsync_sdk::{Change, Record, Value};
use serde_json::json;

const FIRST: [&str; 3] = ["Ann", "Bea", "Cy"];
const TITLE: [&str; 4] = ["", "CTO", "VP Sales", "Founder"];
const PHONE: [&str; 3] = ["+1 415 555 0100", "(415) 555-0101", ""];

/// One system's report of one person.
#[derive(Debug, Clone)]
struct Ev {
    system: u8,
    person: u8,
    first: u8,
    title: u8,
    phone: u8,
    /// Which spelling of the person's email the system uses (case, spaces).
    spelling: u8,
}

fn ev() -> impl Strategy<Value = Ev> {
    (0u8..3, 0u8..4, 0u8..3, 0u8..4, 0u8..3, 0u8..3).prop_map(
        |(system, person, first, title, phone, spelling)| Ev {
            system,
            person,
            first,
            title,
            phone,
            spelling,
        },
    )
}

fn email(person: u8, spelling: u8) -> String {
    match spelling {
        0 => format!("p{person}@acme.com"),
        1 => format!(" P{person}@ACME.com"),
        _ => format!("p{person}@Acme.Com  "),
    }
}

/// (connector, object, page) for an event at a distinct timestamp.
fn to_change(e: &Ev, ts: i64) -> (&'static str, &'static str, Change) {
    let (first, title, phone) = (
        FIRST[e.first as usize],
        TITLE[e.title as usize],
        PHONE[e.phone as usize],
    );
    let mail = email(e.person, e.spelling);
    match e.system {
        0 => (
            "hubspot-main",
            "contacts",
            change(
                "contacts",
                &format!("h{}", e.person),
                ts,
                json!({"email": mail, "firstname": first, "jobtitle": title, "phone": phone}),
            ),
        ),
        1 => (
            "salesforce-main",
            "Contact",
            change(
                "Contact",
                &format!("s{}", e.person),
                ts,
                json!({"Email": mail, "FirstName": first, "Title": title, "Phone": phone}),
            ),
        ),
        _ => (
            "zendesk-main",
            "users",
            change(
                "users",
                &format!("z{}", e.person),
                ts,
                json!({"email": mail, "name": format!("{first} Doe"), "phone": phone}),
            ),
        ),
    }
}

fn cfg() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let c = config_in(dir.path(), "");
    (dir, c)
}

fn apply_all(e: &Engine, events: &[(Ev, i64)]) {
    for (ev, ts) in events {
        let (conn, obj, ch) = to_change(ev, *ts);
        e.apply(
            conn,
            Page {
                object: obj.into(),
                changes: vec![ch],
                cursor: None,
            },
        )
        .unwrap();
    }
}

/// Links (connector, object, id, newest source time) and fields (value, source, time).
type View = (
    BTreeSet<(String, String, String, i64)>,
    BTreeMap<String, (Value, String, i64)>,
);

/// A record as the user sees it, without ids or observation times.
fn view(r: &Record) -> View {
    let links = r
        .links
        .iter()
        .map(|l| {
            (
                l.connector.clone(),
                l.object.clone(),
                l.external_id.clone(),
                l.source_ts,
            )
        })
        .collect();
    let fields = r
        .fields
        .iter()
        .map(|(k, e)| {
            (
                k.clone(),
                (e.value.clone(), e.from.connector.clone(), e.from.source_ts),
            )
        })
        .collect();
    (links, fields)
}

fn world_view(e: &Engine) -> BTreeMap<u8, View> {
    (0u8..4)
        .filter_map(|p| {
            e.find(&format!("p{p}@acme.com"))
                .unwrap()
                .map(|r| (p, view(&r)))
        })
        .collect()
}

/// Distinct timestamps, one per event.
fn timed(events: Vec<Ev>) -> Vec<(Ev, i64)> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| (e, i as i64 * 7 + 1))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn changes_converge_whatever_their_order(events in prop::collection::vec(ev(), 1..40), seed in any::<u64>()) {
        let (_d, c) = cfg();
        let events = timed(events);
        let mut shuffled = events.clone();
        // A deterministic shuffle from the seed (Fisher-Yates with xorshift).
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let a = engine(&c, Arc::new(MemStore::new()));
        let b = engine(&c, Arc::new(MemStore::new()));
        apply_all(&a, &events);
        apply_all(&b, &shuffled);
        prop_assert_eq!(world_view(&a), world_view(&b));
    }

    #[test]
    fn replaying_any_page_is_a_no_op(events in prop::collection::vec(ev(), 1..30), pick in any::<prop::sample::Index>()) {
        let (_d, c) = cfg();
        let store = Arc::new(MemStore::new());
        let e = engine(&c, store.clone());
        let events = timed(events);
        apply_all(&e, &events);
        let before = store.dump();
        let (ev, ts) = &events[pick.index(events.len())];
        let (conn, obj, ch) = to_change(ev, *ts);
        let r = e.apply(conn, Page { object: obj.into(), changes: vec![ch], cursor: None }).unwrap();
        prop_assert_eq!(r.enqueued, 0);
        let after = store.dump();
        let changed: Vec<String> = after
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(*v))
            .map(|((t, k), v)| match revsync::engine::codec::decode::<revsync::engine::codec::AuditEntry>(v) {
                Ok(a) if *t == 6 => format!("audit {:?}", a.event),
                _ => format!("table {t} key {k:?}"),
            })
            .collect();
        prop_assert!(changed.is_empty() && after.len() == before.len(), "replaying {:?} changed {:#?}", to_change(ev, *ts).2, changed);
    }

    #[test]
    fn the_echo_of_our_own_push_never_enqueues(events in prop::collection::vec(ev(), 1..30)) {
        let (_d, c) = cfg();
        let e = engine(&c, Arc::new(MemStore::new()));
        let events = timed(events);
        apply_all(&e, &events);
        let before = world_view(&e);
        // Deliver every queued push, then let each system report it back, later.
        let mut echoes = Vec::new();
        for (conn, obj_default) in [("hubspot-main", "contacts"), ("salesforce-main", "Contact"), ("zendesk-main", "users")] {
            for (seq, entry) in e.outbox(conn, usize::MAX).unwrap() {
                let rec = e.find(&entry.record.to_string()).unwrap().unwrap();
                let (proj, hash) = e.projection(conn, &entry.object, &rec).unwrap().unwrap();
                let ext = rec.link(conn, &entry.object).map(|l| l.external_id.clone()).unwrap_or_else(|| format!("new-{seq}"));
                let created = rec.link(conn, &entry.object).is_none().then_some(ext.as_str());
                e.confirm_push(conn, &[seq], rec.id, &entry.object, hash, created).unwrap();
                assert_eq!(entry.object, obj_default);
                echoes.push((conn, entry.object.clone(), ext.clone(), proj));
            }
        }
        for (i, (conn, obj, ext, proj)) in echoes.into_iter().enumerate() {
            let ch = change(&obj, &ext, 10_000 + i as i64, serde_json::to_value(&proj).unwrap());
            let r = e.apply(conn, Page { object: obj, changes: vec![ch], cursor: None }).unwrap();
            prop_assert_eq!(r.enqueued, 0, "echo enqueued a push: {:?}", r);
        }
        for conn in ["hubspot-main", "salesforce-main", "zendesk-main"] {
            prop_assert!(e.outbox(conn, usize::MAX).unwrap().is_empty(), "{} outbox not empty after echoes", conn);
        }
        // Values are unchanged (links grew by the created copies; provenance may refresh).
        let after = world_view(&e);
        for (p, (_, fields)) in before {
            let now: BTreeMap<_, _> = after[&p].1.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect();
            let was: BTreeMap<_, _> = fields.into_iter().map(|(k, v)| (k, v.0)).collect();
            prop_assert_eq!(now, was);
        }
    }

    /// Emails that change over time make records merge; no link and no value is lost.
    #[test]
    fn a_merge_never_loses_a_link_or_a_value(events in prop::collection::vec((ev(), 0u8..4), 1..30)) {
        let (_d, c) = cfg();
        let e = engine(&c, Arc::new(MemStore::new()));
        let mut seen_links = BTreeSet::new();
        let mut seen_values: Vec<(String, String, Value)> = Vec::new();
        for (i, (mut ev, other)) in events.into_iter().enumerate() {
            // Sometimes a system reports a person under another person's email: new evidence.
            let person = ev.person;
            if i % 3 == 0 { ev.person = other; }
            let (conn, obj, mut ch) = to_change(&ev, i as i64 + 1);
            ch.external_id = format!("{}{}", &ch.external_id[..1], person);
            seen_links.insert((conn.to_owned(), obj.to_owned(), ch.external_id.clone()));
            let title = TITLE[ev.title as usize];
            if conn != "zendesk-main" && !title.is_empty() {
                seen_values.push((format!("{conn}:{obj}:{}", ch.external_id), "title".into(), Value::Text(title.into())));
            }
            e.apply(conn, Page { object: obj.into(), changes: vec![ch], cursor: None }).unwrap();
        }
        for (conn, obj, ext) in &seen_links {
            let r = e.find(&format!("{conn}:{obj}:{ext}")).unwrap();
            prop_assert!(r.is_some(), "link {}:{}:{} lost", conn, obj, ext);
            let r = r.unwrap();
            prop_assert!(r.merged_into.is_none());
            prop_assert!(r.links.iter().any(|l| &l.connector == conn && &l.object == obj && &l.external_id == ext));
        }
        for (link, field, value) in &seen_values {
            let r = e.find(link).unwrap().unwrap();
            if r.value(field) == Some(value) { continue; }
            // Otherwise it is in the audit trail of the survivor or of a record merged into it.
            // Merges chain (A absorbs B, which had absorbed C): follow them all.
            let mut ids = vec![r.id];
            let mut k = 0;
            while k < ids.len() {
                for a in e.audit(ids[k], usize::MAX).unwrap() {
                    if let AuditEvent::Merged { absorbed, .. } = a.event {
                        if !ids.contains(&absorbed) { ids.push(absorbed); }
                    }
                }
                k += 1;
            }
            let kept = ids.iter().any(|id| e.audit(*id, usize::MAX).unwrap().iter().any(|a| match &a.event {
                AuditEvent::Overwritten { field: f, old, .. } => f == field && &old.value == value,
                AuditEvent::Rejected { field: f, value: v, .. } => f == field && &v.value == value,
                _ => false,
            }));
            let trail: Vec<String> = ids.iter().flat_map(|id| e.audit(*id, usize::MAX).unwrap().into_iter().map(move |a| format!("{id}: {:?}", a.event))).collect();
            prop_assert!(kept, "value {:?} of {} lost; record {:?}; trails {:#?}", value, link, r.fields.get(field), trail);
        }
    }
}

/// One step of a merge history: a new copy in another system joins a person by email, or
/// an operator merges two persons.
#[derive(Debug, Clone)]
enum MergeOp {
    Join(Ev),
    Merge(u8, u8),
}

fn merge_op() -> impl Strategy<Value = MergeOp> {
    prop_oneof![
        3 => ev().prop_map(|mut e| {
            e.system = 1 + e.system % 2;
            MergeOp::Join(e)
        }),
        1 => (0u8..4, 0u8..4).prop_map(|(a, b)| MergeOp::Merge(a, b)),
    ]
}

type Snapshot = BTreeMap<
    uuid::Uuid,
    (
        BTreeMap<String, revsync_sdk::FieldEntry>,
        Vec<revsync_sdk::Link>,
        Option<uuid::Uuid>,
    ),
>;

/// Every record ever made, exactly: fields with their provenance, links, tombstone.
fn snapshot(e: &Engine, ids: &BTreeSet<uuid::Uuid>) -> Snapshot {
    ids.iter()
        .filter_map(|id| e.record(*id).unwrap())
        .map(|r| (r.id, (r.fields, r.links, r.merged_into)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Issue 19: after any sequence of joins and merges, undoing them newest first
    /// restores, after each undo, every record that existed before that merge exactly.
    #[test]
    fn unmerge_after_any_sequence_of_merges_restores_the_state_before_each(
        people in prop::collection::vec(ev(), 4),
        ops in prop::collection::vec(merge_op(), 1..12),
    ) {
        let (_d, c) = cfg();
        let e = engine(&c, Arc::new(MemStore::new()));
        let mut ids = BTreeSet::new();
        for (i, mut p) in people.into_iter().enumerate() {
            p.system = 0;
            p.person = i as u8;
            apply_all(&e, &[(p, 1)]);
            ids.insert(e.find(&format!("hubspot-main:contacts:h{i}")).unwrap().unwrap().id);
        }
        // (snapshot before, how to undo it) per op that merged something.
        let mut undo: Vec<(Snapshot, uuid::Uuid, Option<String>)> = Vec::new();
        for (n, op) in ops.into_iter().enumerate() {
            let before = snapshot(&e, &ids);
            match op {
                MergeOp::Join(ev) => {
                    let (conn, obj, mut ch) = to_change(&ev, 10 + n as i64);
                    ch.external_id = format!("x{n}");
                    let link = format!("{conn}:{obj}:x{n}");
                    e.apply(conn, Page { object: obj.into(), changes: vec![ch], cursor: None }).unwrap();
                    let r = e.find(&link).unwrap().unwrap();
                    ids.insert(r.id);
                    if r.links.len() > 1 {
                        undo.push((before, r.id, Some(link)));
                    }
                }
                MergeOp::Merge(a, b) => {
                    let find = |p: u8| e.find(&format!("hubspot-main:contacts:h{p}")).unwrap().unwrap().id;
                    let (a, b) = (find(a), find(b));
                    if a == b {
                        continue;
                    }
                    let survivor = e.merge(a, b, "a test").unwrap().unwrap();
                    let absorbed = if survivor == a { b } else { a };
                    undo.push((before, absorbed, None));
                }
            }
        }
        while let Some((before, id, link)) = undo.pop() {
            let target = match &link {
                Some(l) => e.find(l).unwrap().unwrap().id,
                None => id,
            };
            let out = e.unmerge(target, link.as_deref(), "a test").unwrap();
            prop_assert!(matches!(out, revsync::engine::Unmerged::Done { .. }), "{:?}", out);
            let now = snapshot(&e, &ids);
            for (id, was) in &before {
                prop_assert_eq!(now.get(id), Some(was), "record {} differs after undoing {:?}", id, link);
            }
        }
    }
}
