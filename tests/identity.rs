//! Scored identity (issue 19) through the engine: fuzzy duplicates join, guards keep
//! different people apart, the review queue merges on accept and remembers a reject.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use common::*;
use revsync::engine::codec::AuditEvent;
use revsync::store::MemStore;
use serde_json::json;

fn setup() -> (tempfile::TempDir, revsync::engine::Engine, Arc<MemStore>) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), "");
    let store = Arc::new(MemStore::new());
    let e = engine(&cfg, store.clone());
    (dir, e, store)
}

#[test]
fn a_nickname_a_typo_and_a_personal_email_join_the_crm_contact() {
    let (_d, e, _) = setup();
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "101",
        1,
        json!({"email": "william.johnson@acme.com", "firstname": "William", "lastname": "Johnson", "phone": "+1 415 555 0123"}),
    );
    let r = e
        .apply("salesforce-main", page("Contact", vec![change("Contact", "003A", 2, json!({"Email": "bill.johnson@gmail.com", "FirstName": "Bill", "LastName": "Jonhson", "Phone": "(415) 555-0123"}))]))
        .unwrap();
    assert_eq!((r.created, r.scored_merged), (0, 1), "{r:?}");
    let rec = e.find("hubspot-main:contacts:101").unwrap().unwrap();
    assert_eq!(rec.links.len(), 2);
    assert_eq!(
        e.find("salesforce-main:Contact:003A").unwrap().unwrap().id,
        rec.id
    );
    // The audit says why: the score and the levels that decided it.
    let matched = e
        .audit(rec.id, 50)
        .unwrap()
        .into_iter()
        .find_map(|a| match a.event {
            AuditEvent::Matched { evidence, link } => Some((evidence, link)),
            _ => None,
        });
    let (evidence, link) = matched.expect("a Matched audit entry");
    assert_eq!(link.external_id, "003A");
    assert!(
        evidence.contains("scored match p=") && evidence.contains("first_name nickname"),
        "{evidence}"
    );
}

#[test]
fn two_addresses_at_one_company_are_two_people_whatever_the_score() {
    let (_d, e, _) = setup();
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "1",
        1,
        json!({"email": "john.smith@acme.com", "firstname": "John", "lastname": "Smith", "phone": "+1 415 555 0199"}),
    );
    let r = e
        .apply("salesforce-main", page("Contact", vec![change("Contact", "2", 2, json!({"Email": "jsmith@acme.com", "FirstName": "John", "LastName": "Smith", "Phone": "415-555-0199"}))]))
        .unwrap();
    // Filed apart (both have a work address), they are never even compared.
    assert_eq!(
        (r.created, r.scored_merged, r.to_review),
        (1, 0, 0),
        "{r:?}"
    );
}

#[test]
fn a_namesake_at_another_company_is_not_a_match() {
    let (_d, e, _) = setup();
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "1",
        1,
        json!({"email": "anna.nielsen@zangru.io", "firstname": "Anna", "lastname": "Nielsen"}),
    );
    let r = e
        .apply("salesforce-main", page("Contact", vec![change("Contact", "2", 2, json!({"Email": "anna.nielsen@talulm.io", "FirstName": "Anna", "LastName": "Nielsen"}))]))
        .unwrap();
    assert_eq!((r.created, r.scored_merged), (1, 0), "{r:?}");
}

#[test]
fn a_shared_role_address_never_joins_two_people() {
    let (_d, e, _) = setup();
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "1",
        1,
        json!({"email": "info@acme.com", "firstname": "Ada", "lastname": "Lovelace"}),
    );
    let r = e
        .apply(
            "salesforce-main",
            page(
                "Contact",
                vec![change(
                    "Contact",
                    "2",
                    2,
                    json!({"Email": "info@acme.com", "FirstName": "Grace", "LastName": "Hopper"}),
                )],
            ),
        )
        .unwrap();
    assert_eq!(r.created, 1, "an exact role address is no identity: {r:?}");
}

#[test]
fn a_review_pair_merges_on_accept_and_a_reject_is_remembered_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), "");
    let store = Arc::new(MemStore::new());
    let e = engine(&cfg, store.clone());
    // Same name, one personal address with the work address's local part: likely, not sure.
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "1",
        1,
        json!({"email": "lucy.meyer@ganbar.com", "firstname": "Lucy", "lastname": "Meyer"}),
    );
    let r = e
        .apply("salesforce-main", page("Contact", vec![change("Contact", "2", 2, json!({"Email": "lucy.meyer@hotmail.com", "FirstName": "Lucy", "LastName": "Meyer"}))]))
        .unwrap();
    assert_eq!((r.created, r.to_review), (1, 1), "{r:?}");
    let pairs = e.reviews(10).unwrap();
    assert_eq!(pairs.len(), 1);
    let p = &pairs[0];
    assert!(
        p.pair.probability >= 0.5 && p.pair.probability < 0.999,
        "{p:?}"
    );
    assert!(p
        .pair
        .levels
        .iter()
        .any(|(f, l, _)| f == "email" && l == "same local part"));

    // Accept: one record holding both copies, pushed to the system that lacked each.
    let survivor = e.accept_review(p.a, p.b, "test").unwrap().expect("merged");
    assert_eq!(survivor, p.a.min(p.b));
    let rec = e.find("salesforce-main:Contact:2").unwrap().unwrap();
    assert_eq!(rec.id, survivor);
    assert_eq!(rec.links.len(), 2);
    assert!(e.reviews(10).unwrap().is_empty());
    assert!(
        e.outbox_len("zendesk-main", 100).unwrap() >= 1,
        "the merged record goes out"
    );

    // A second pair, rejected, then the daemon restarts: it stays rejected and apart.
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "3",
        3,
        json!({"email": "nora.ganmar@densen.co", "firstname": "Nora", "lastname": "Ganmar"}),
    );
    apply_one(
        &e,
        "salesforce-main",
        "Contact",
        "4",
        4,
        json!({"Email": "nora.ganmar@gmail.com", "FirstName": "Nora", "LastName": "Ganmar"}),
    );
    let p = e.reviews(10).unwrap().pop().expect("a second pair");
    assert!(e.reject_review(p.a, p.b).unwrap());
    assert!(!e.reject_review(p.a, p.b).unwrap(), "gone once rejected");
    drop(e);
    let e = engine(&cfg, store.clone());
    assert!(e.reviews(10).unwrap().is_empty());
    assert_eq!(
        e.accept_review(p.a, p.b, "test").unwrap(),
        None,
        "a rejected pair cannot be accepted"
    );
    // The same pair's copies read again: still two records, not proposed again.
    apply_one(
        &e,
        "salesforce-main",
        "Contact",
        "4",
        5,
        json!({"Email": "nora.ganmar@gmail.com", "FirstName": "Nora", "LastName": "Ganmar", "Title": "CTO"}),
    );
    assert_ne!(
        e.find("hubspot-main:contacts:3").unwrap().unwrap().id,
        e.find("salesforce-main:Contact:4").unwrap().unwrap().id
    );
    assert!(e.reviews(10).unwrap().is_empty());
}

#[test]
fn a_store_from_before_scored_matching_gets_its_block_index_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let off = config_in(dir.path(), "identity:\n  person: { enabled: false }\n");
    let store = Arc::new(MemStore::new());
    let e = engine(&off, store.clone());
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "1",
        1,
        json!({"email": "peggy.hopper@navy.mil", "firstname": "Margaret", "lastname": "Hopper", "phone": "+1 212 555 0101"}),
    );
    drop(e);
    let dir2 = tempfile::tempdir().unwrap();
    let on = config_in(dir2.path(), "");
    let e = engine(&on, store.clone());
    let r = e
        .apply(
            "salesforce-main",
            page(
                "Contact",
                vec![change(
                    "Contact",
                    "9",
                    2,
                    json!({"FirstName": "Peggy", "LastName": "Hopper", "Phone": "212.555.0101"}),
                )],
            ),
        )
        .unwrap();
    assert_eq!((r.created, r.scored_merged), (0, 1), "{r:?}");
    assert_eq!(e.identity_stats().scored_merged, 1);
}

#[test]
fn training_keeps_each_new_version_for_the_next_start() {
    use revsync::engine::identity::gen::{generate, Rates};
    let (_d, e, _) = setup();
    let world = generate(300, 3, &Rates::default());
    fn field(k: &str) -> &str {
        match k {
            "first_name" => "firstname",
            "last_name" => "lastname",
            other => other,
        }
    }
    let changes: Vec<_> = world
        .persons
        .iter()
        .enumerate()
        .filter(|(_, c)| c.source == 0)
        .map(|(i, c)| {
            let fields: serde_json::Map<String, serde_json::Value> = c
                .values
                .iter()
                .filter(|(k, _)| {
                    ["first_name", "last_name", "email", "phone"].contains(&k.as_str())
                })
                .filter_map(|(k, v)| v.as_text().map(|t| (field(k).to_owned(), json!(t))))
                .collect();
            change(
                "contacts",
                &i.to_string(),
                1,
                serde_json::Value::Object(fields),
            )
        })
        .collect();
    e.apply("hubspot-main", page("contacts", changes)).unwrap();
    let (model, report) = e
        .train_identity(revsync_sdk::Kind::Person, 7)
        .unwrap()
        .expect("person matching is on");
    assert_eq!(model.version, 1);
    assert!(
        report.records > 100 && report.random_pairs > 0,
        "{report:?}"
    );
    assert!(revsync::engine::identity::train::render(&report).contains("first_name"));
    let (again, _) = e
        .train_identity(revsync_sdk::Kind::Person, 8)
        .unwrap()
        .unwrap();
    assert_eq!(again.version, 2, "each training is a new version");
}
