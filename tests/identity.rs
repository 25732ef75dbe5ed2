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

/// The pair of the first test, which merges on its score; each guard below must keep it apart.
fn bill_johnson_again(
    e: &revsync::engine::Engine,
    extra_crm: serde_json::Value,
    extra_sf: serde_json::Value,
) -> revsync::engine::ApplyReport {
    let mut crm = json!({"email": "william.johnson@acme.com", "firstname": "William", "lastname": "Johnson", "phone": "+1 415 555 0123"});
    crm.as_object_mut()
        .unwrap()
        .extend(extra_crm.as_object().unwrap().clone());
    apply_one(e, "hubspot-main", "contacts", "101", 1, crm);
    let mut sf = json!({"Email": "bill.johnson@gmail.com", "FirstName": "Bill", "LastName": "Jonhson", "Phone": "(415) 555-0123"});
    sf.as_object_mut()
        .unwrap()
        .extend(extra_sf.as_object().unwrap().clone());
    e.apply(
        "salesforce-main",
        page("Contact", vec![change("Contact", "003A", 2, sf)]),
    )
    .unwrap()
}

#[test]
fn a_different_strong_identifier_keeps_a_likely_pair_apart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), "identity:\n  person: { strong: [title] }\n");
    let e = engine(&cfg, Arc::new(MemStore::new()));
    let r = bill_johnson_again(&e, json!({"jobtitle": "CFO"}), json!({"Title": "Intern"}));
    assert_eq!((r.created, r.scored_merged, r.vetoed), (1, 0, 1), "{r:?}");
    // The same titles let the same pair join.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), "identity:\n  person: { strong: [title] }\n");
    let e = engine(&cfg, Arc::new(MemStore::new()));
    let r = bill_johnson_again(&e, json!({"jobtitle": "CFO"}), json!({"Title": "cfo"}));
    assert_eq!((r.created, r.scored_merged), (0, 1), "{r:?}");
}

#[test]
fn people_at_two_different_companies_are_never_joined_by_score() {
    let (_d, e, _) = setup();
    apply_one(
        &e,
        "hubspot-main",
        "companies",
        "c1",
        1,
        json!({"name": "Acme", "domain": "acme.com"}),
    );
    e.apply(
        "salesforce-main",
        page(
            "Account",
            vec![change(
                "Account",
                "001X",
                1,
                json!({"Name": "Globex", "Website": "https://globex.com"}),
            )],
        ),
    )
    .unwrap();
    let r = bill_johnson_again(
        &e,
        json!({"associatedcompanyid": "c1"}),
        json!({"AccountId": "001X"}),
    );
    assert_eq!((r.created, r.scored_merged, r.vetoed), (1, 0, 1), "{r:?}");
    let crm = e.find("hubspot-main:contacts:101").unwrap().unwrap();
    let sf = e.find("salesforce-main:Contact:003A").unwrap().unwrap();
    assert_ne!(crm.id, sf.id);
}

#[test]
fn a_record_at_max_cluster_sends_the_pair_to_review_instead_of_merging() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), "identity:\n  person: { max_cluster: 2 }\n");
    let e = engine(&cfg, Arc::new(MemStore::new()));
    // Zendesk's copy joins by email: the record holds two copies before Salesforce's.
    apply_one(
        &e,
        "zendesk-main",
        "users",
        "9",
        1,
        json!({"email": "william.johnson@acme.com", "name": "William Johnson"}),
    );
    let r = bill_johnson_again(&e, json!({}), json!({}));
    assert_eq!(
        (r.created, r.scored_merged, r.to_review),
        (1, 0, 1),
        "{r:?}"
    );
    let pairs = e.reviews(10).unwrap();
    assert_eq!(pairs.len(), 1);
    assert!(
        pairs[0].pair.reason.contains("max_cluster 2"),
        "{}",
        pairs[0].pair.reason
    );
}

/// Fields and links: what "as it was" means for a record.
fn state(
    r: &revsync_sdk::Record,
) -> (
    std::collections::BTreeMap<String, revsync_sdk::FieldEntry>,
    Vec<revsync_sdk::Link>,
) {
    (r.fields.clone(), r.links.clone())
}

#[test]
fn an_unmerge_splits_a_scored_join_off_as_it_was_and_pushes_both() {
    let (_d, e, _) = setup();
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "101",
        1,
        json!({"email": "william.johnson@acme.com", "firstname": "William", "lastname": "Johnson", "phone": "+1 415 555 0123"}),
    );
    let before = e.find("hubspot-main:contacts:101").unwrap().unwrap();
    // Salesforce's copy joins on its score and gives the record its title.
    let r = e
        .apply("salesforce-main", page("Contact", vec![change("Contact", "003A", 2, json!({"Email": "bill.johnson@gmail.com", "FirstName": "Bill", "LastName": "Jonhson", "Phone": "(415) 555-0123", "Title": "CFO"}))]))
        .unwrap();
    assert_eq!(r.scored_merged, 1, "{r:?}");
    let joined = e.find("hubspot-main:contacts:101").unwrap().unwrap();
    assert_eq!(joined.links.len(), 2);
    assert!(joined.value("title").is_some());
    // Salesforce took the merged values.
    let pending = e.outbox("salesforce-main", 100).unwrap();
    assert_eq!(pending.len(), 1);
    let (seq, entry) = pending[0].clone();
    e.confirm_push(
        "salesforce-main",
        &[seq],
        entry.record,
        "Contact",
        entry.hash,
        None,
    )
    .unwrap();

    let out = e
        .unmerge(joined.id, Some("salesforce-main:Contact:003A"), "a test")
        .unwrap();
    let revsync::engine::Unmerged::Done {
        survivor,
        split,
        link,
    } = out
    else {
        panic!("{out:?}")
    };
    assert_eq!(survivor, before.id);
    assert_eq!(link.unwrap().external_id, "003A");
    // The CRM record is as it was before the join: its fields with their sources, its links.
    let after = e.record(survivor).unwrap().unwrap();
    assert_eq!(state(&after), state(&before));
    // The copy is a record of its own, with its own values.
    let sf = e.find("salesforce-main:Contact:003A").unwrap().unwrap();
    assert_eq!(sf.id, split);
    assert_eq!(
        sf.value("first_name"),
        Some(&revsync_sdk::Value::Text("Bill".into()))
    );
    assert_eq!(
        sf.value("email"),
        Some(&revsync_sdk::Value::Text("bill.johnson@gmail.com".into()))
    );
    assert_eq!(sf.links.len(), 1);
    // Both are pushed: Salesforce gets its copy's own values back, and the CRM person,
    // who has no copy there now, is created there as before the join.
    let queued: Vec<_> = e
        .outbox("salesforce-main", 100)
        .unwrap()
        .into_iter()
        .map(|(_, o)| o.record)
        .collect();
    assert!(
        queued.contains(&split) && queued.contains(&survivor),
        "{queued:?}"
    );
    // Both audits say so.
    for id in [survivor, split] {
        assert!(e
            .audit(id, 50)
            .unwrap()
            .iter()
            .any(|a| matches!(a.event, AuditEvent::Unmerged { .. })));
    }
    // The copy's next report stays on its own record; the pair is never proposed again.
    e.apply("salesforce-main", page("Contact", vec![change("Contact", "003A", 5, json!({"Email": "bill.johnson@gmail.com", "FirstName": "Bill", "LastName": "Johnson", "Phone": "(415) 555-0123", "Title": "CFO"}))]))
        .unwrap();
    assert_eq!(
        e.find("salesforce-main:Contact:003A").unwrap().unwrap().id,
        split
    );
    assert!(e.reviews(10).unwrap().is_empty());
    // Nothing more to undo.
    assert!(matches!(
        e.unmerge(survivor, None, "a test").unwrap(),
        revsync::engine::Unmerged::Refused(_)
    ));
}

#[test]
fn an_exact_join_once_unmerged_does_not_merge_again_on_the_shared_email() {
    let (_d, e, _) = setup();
    // Pat in the CRM and Patricia in Salesforce share one address.
    let both_report = |ts: i64| {
        apply_one(
            &e,
            "hubspot-main",
            "contacts",
            "1",
            ts,
            json!({"email": "pat@acme.com", "firstname": "Pat", "lastname": "Lee"}),
        );
        e.apply(
            "salesforce-main",
            page(
                "Contact",
                vec![change(
                    "Contact",
                    "003P",
                    ts + 1,
                    json!({"Email": "pat@acme.com", "FirstName": "Patricia", "LastName": "Lee"}),
                )],
            ),
        )
        .unwrap();
    };
    both_report(1);
    let crm = e.find("hubspot-main:contacts:1").unwrap().unwrap();
    assert_eq!(crm.links.len(), 2);
    let out = e
        .unmerge(crm.id, Some("salesforce-main:Contact:003P"), "a test")
        .unwrap();
    let revsync::engine::Unmerged::Done { split, .. } = out else {
        panic!("{out:?}")
    };
    // Both report again with the same email: each stays on its own record.
    both_report(3);
    assert_eq!(
        e.find("hubspot-main:contacts:1").unwrap().unwrap().id,
        crm.id
    );
    assert_eq!(
        e.find("salesforce-main:Contact:003P").unwrap().unwrap().id,
        split
    );
    let now = e.record(crm.id).unwrap().unwrap();
    assert_eq!(now.links.len(), 1);
    assert_eq!(
        now.value("first_name"),
        Some(&revsync_sdk::Value::Text("Pat".into()))
    );
}

#[test]
fn a_record_merge_is_undone_by_naming_the_absorbed_record() {
    let (_d, e, _) = setup();
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "1",
        1,
        json!({"email": "ann@acme.com", "firstname": "Ann", "jobtitle": "CEO"}),
    );
    e.apply("salesforce-main", page("Contact", vec![change("Contact", "003Z", 2, json!({"Email": "ann.other@globex.com", "FirstName": "Ann", "LastName": "Other", "Title": "VP"}))]))
        .unwrap();
    let a = e.find("hubspot-main:contacts:1").unwrap().unwrap();
    let b = e.find("salesforce-main:Contact:003Z").unwrap().unwrap();
    assert_ne!(a.id, b.id);
    let survivor = e.merge(a.id, b.id, "a test").unwrap().unwrap();
    assert_eq!(survivor, a.id.min(b.id));
    let absorbed = if survivor == a.id { &b } else { &a };
    let kept = if survivor == a.id { &a } else { &b };
    assert_eq!(e.record(survivor).unwrap().unwrap().links.len(), 2);
    let out = e.unmerge(absorbed.id, None, "a test").unwrap();
    assert!(
        matches!(out, revsync::engine::Unmerged::Done { .. }),
        "{out:?}"
    );
    assert_eq!(state(&e.record(kept.id).unwrap().unwrap()), state(kept));
    let revived = e.record(absorbed.id).unwrap().unwrap();
    assert_eq!(revived.merged_into, None);
    assert_eq!(state(&revived), state(absorbed));
    assert_eq!(
        e.find("salesforce-main:Contact:003Z").unwrap().unwrap().id,
        b.id
    );
    assert_eq!(e.find("ann@acme.com").unwrap().unwrap().id, a.id);
}

const STRIPE_BILLING: &str = "version: 1\nid: stripe-main\ntype: stripe\nparams: { secret_key: sk_test_x, base_url: 'http://127.0.0.1:9' }\nobjects:\n  customers:\n    kind: organization\n    fields: { name: name }\n  subscriptions:\n    kind: subscription\n    fields: { status: status, customer: { to: customer, ref: customers } }\n";

/// Two Stripe customers that both still pay are two accounts: neither an operator's merge
/// nor an accepted review joins them; once one subscription is canceled, they may merge.
#[test]
fn two_billing_customers_with_live_subscriptions_are_never_merged() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with_connector(dir.path(), "stripe", STRIPE_BILLING);
    let e = engine(&cfg, Arc::new(MemStore::new()));
    let stripe = |object: &str, id: &str, ts: i64, fields: serde_json::Value| {
        e.apply(
            "stripe-main",
            page(object, vec![change(object, id, ts, fields)]),
        )
        .unwrap()
    };
    stripe("customers", "cus_1", 1, json!({"name": "Acme"}));
    stripe("customers", "cus_2", 1, json!({"name": "Acme Inc"}));
    stripe(
        "subscriptions",
        "sub_1",
        2,
        json!({"status": "active", "customer": "cus_1"}),
    );
    stripe(
        "subscriptions",
        "sub_2",
        2,
        json!({"status": "past_due", "customer": "cus_2"}),
    );
    let a = e.find("stripe-main:customers:cus_1").unwrap().unwrap().id;
    let b = e.find("stripe-main:customers:cus_2").unwrap().unwrap().id;
    assert_ne!(a, b);
    let refused = e.merge(a, b, "a test").unwrap_err().to_string();
    assert!(
        refused.contains("two billing customers with live subscriptions"),
        "{refused}"
    );
    assert_ne!(
        e.find("stripe-main:customers:cus_1").unwrap().unwrap().id,
        e.find("stripe-main:customers:cus_2").unwrap().unwrap().id
    );
    // The second account is closed: nothing bills twice any more.
    stripe(
        "subscriptions",
        "sub_2",
        3,
        json!({"status": "canceled", "customer": "cus_2"}),
    );
    let survivor = e.merge(a, b, "a test").unwrap().unwrap();
    assert_eq!(e.record(survivor).unwrap().unwrap().links.len(), 2);
}

/// A copy edited in its system after it joined leaves with that edit, not with the values
/// it joined with: the split must not push an older value back over the system's own.
#[test]
fn an_unmerged_copy_keeps_what_its_system_said_after_the_join() {
    let (_d, e, _) = setup();
    let r = bill_johnson_again(&e, json!({}), json!({"Title": "CFO"}));
    assert_eq!(r.scored_merged, 1, "{r:?}");
    e.apply("salesforce-main", page("Contact", vec![change("Contact", "003A", 9, json!({"Email": "bill.johnson@gmail.com", "FirstName": "Bill", "LastName": "Jonhson", "Phone": "(415) 555-0123", "Title": "CEO"}))]))
        .unwrap();
    let joined = e.find("hubspot-main:contacts:101").unwrap().unwrap();
    let out = e
        .unmerge(joined.id, Some("salesforce-main:Contact:003A"), "a test")
        .unwrap();
    assert!(
        matches!(out, revsync::engine::Unmerged::Done { .. }),
        "{out:?}"
    );
    let sf = e.find("salesforce-main:Contact:003A").unwrap().unwrap();
    assert_eq!(
        sf.value("title"),
        Some(&revsync_sdk::Value::Text("CEO".into()))
    );
}

/// A copy deleted at its source is no longer the record's: there is nothing to split off,
/// and the record's latest merge is the one before it.
#[test]
fn a_copy_deleted_at_its_source_is_not_split_off_again() {
    let (_d, e, _) = setup();
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "1",
        1,
        json!({"email": "kim@acme.com", "firstname": "Kim"}),
    );
    let crm = e.find("hubspot-main:contacts:1").unwrap().unwrap();
    e.apply(
        "salesforce-main",
        page(
            "Contact",
            vec![change(
                "Contact",
                "003K",
                2,
                json!({"Email": "kim@acme.com", "LastName": "Kim"}),
            )],
        ),
    )
    .unwrap();
    e.apply(
        "zendesk-main",
        page(
            "users",
            vec![change(
                "users",
                "77",
                3,
                json!({"email": "kim@acme.com", "name": "Kim Park"}),
            )],
        ),
    )
    .unwrap();
    e.apply(
        "zendesk-main",
        page("users", vec![deleted("users", "77", 4)]),
    )
    .unwrap();
    assert_eq!(e.record(crm.id).unwrap().unwrap().links.len(), 2);
    let gone = e
        .unmerge(crm.id, Some("zendesk-main:users:77"), "a test")
        .unwrap();
    let revsync::engine::Unmerged::Refused(why) = gone else {
        panic!("{gone:?}")
    };
    assert!(why.contains("no longer a copy"), "{why}");
    // Without a source, the latest merge still there: Salesforce's.
    let out = e.unmerge(crm.id, None, "a test").unwrap();
    let revsync::engine::Unmerged::Done { link, .. } = out else {
        panic!("{out:?}")
    };
    assert_eq!(link.unwrap().external_id, "003K");
    assert!(e.find("zendesk-main:users:77").unwrap().is_none());
}
