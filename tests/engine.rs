//! Engine behaviour a user relies on: one record per customer, field-level merge with
//! nothing lost, echo suppression, deletes, relations, atomic cursors.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use common::*;
use revsync::engine::codec::{AuditEvent, PushOp};
use revsync::engine::Page;
use revsync::store::{Entry, MemStore, Op, Store, StoreError, StoreStats, Table, WriteBatch};
use revsync_sdk::Value;
use serde_json::json;

fn setup() -> (tempfile::TempDir, revsync::engine::Engine, Arc<MemStore>) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), "");
    let store = Arc::new(MemStore::new());
    let e = engine(&cfg, store.clone());
    (dir, e, store)
}

/// A Stripe whose customers name their HubSpot company in `metadata.crm_id`.
const STRIPE_WITH_XREF: &str = "version: 1\nid: stripe-main\ntype: stripe\nparams: { secret_key: sk_test_x, base_url: 'http://127.0.0.1:9' }\nobjects:\n  customers:\n    kind: organization\n    fields: { name: name, metadata.crm_id: { xref: hubspot-main.companies } }\n";

/// A CRM whose companies have a domain and a website field.
const CRM_WITH_WEBSITE: &str = "version: 1\nid: crm\ntype: hubspot\nparams: { token: t, base_url: 'http://127.0.0.1:9' }\nobjects:\n  companies:\n    kind: organization\n    fields: { name: name, domain: domain, website: website }\n";

/// The three connectors plus one more, over a fresh in-memory store.
fn with_connector(name: &str, yaml: &str) -> (tempfile::TempDir, revsync::engine::Engine) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with_connector(dir.path(), name, yaml);
    let e = engine(&cfg, Arc::new(MemStore::new()));
    (dir, e)
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

#[test]
fn the_same_person_from_three_systems_is_one_record() {
    let (_d, e, _) = setup();
    e.apply("hubspot-main", page("contacts", vec![change("contacts", "101", 1, json!({"email": " Ada@Example.COM ", "firstname": "Ada", "phone": "+1 (415) 555-0123"}))])).unwrap();
    let r = e.apply("salesforce-main", page("Contact", vec![change("Contact", "003A", 2, json!({"Email": "ada@example.com", "LastName": "Lovelace", "Phone": "415.555.0123"}))])).unwrap();
    assert_eq!((r.created, r.updated), (0, 1));
    apply_one(
        &e,
        "zendesk-main",
        "users",
        "9",
        3,
        json!({"email": "ADA@example.com", "name": "Ada  Lovelace"}),
    );

    let rec = e.find("ada@example.com").unwrap().expect("found by email");
    assert_eq!(rec.links.len(), 3, "{:?}", rec.links);
    assert_eq!(rec.value("email"), Some(&text("ada@example.com")));
    assert_eq!(rec.value("email_valid"), Some(&Value::Bool(true)));
    assert_eq!(rec.value("first_name"), Some(&text("Ada")));
    assert_eq!(rec.value("last_name"), Some(&text("Lovelace")));
    assert_eq!(
        rec.fields["email"].from.connector, "zendesk-main",
        "an equal value is attributed to its newest assertion"
    );
    for q in [
        "hubspot-main:contacts:101",
        "salesforce-main:Contact:003A",
        "zendesk-main:users:9",
        &rec.id.to_string(),
    ] {
        assert_eq!(e.find(q).unwrap().unwrap().id, rec.id, "{q}");
    }
}

#[test]
fn organizations_match_on_bare_domain_but_never_on_free_mail() {
    let (_d, e, _) = setup();
    apply_one(
        &e,
        "salesforce-main",
        "Account",
        "001",
        1,
        json!({"Name": "Acme", "Website": "https://www.Acme.com/about"}),
    );
    apply_one(
        &e,
        "hubspot-main",
        "companies",
        "5",
        2,
        json!({"name": "ACME Inc", "domain": "acme.com"}),
    );
    apply_one(
        &e,
        "zendesk-main",
        "organizations",
        "77",
        3,
        json!({"name": "Acme Support", "domain_names": ["ACME.com", "acme.io"]}),
    );
    let acme = e.find("acme.com").unwrap().unwrap();
    assert_eq!(acme.links.len(), 3);
    assert_eq!(
        e.find("acme.io").unwrap().unwrap().id,
        acme.id,
        "every known domain is an identity key"
    );

    // Two companies whose only domain is gmail.com stay two companies.
    e.apply(
        "hubspot-main",
        page(
            "companies",
            vec![
                change(
                    "companies",
                    "6",
                    4,
                    json!({"name": "Bob's Bikes", "domain": "gmail.com"}),
                ),
                change(
                    "companies",
                    "7",
                    5,
                    json!({"name": "Carol's Cakes", "domain": "gmail.com"}),
                ),
            ],
        ),
    )
    .unwrap();
    let a = e.find("hubspot-main:companies:6").unwrap().unwrap();
    let b = e.find("hubspot-main:companies:7").unwrap().unwrap();
    assert_ne!(a.id, b.id);
}

#[test]
fn newest_value_wins_and_the_overwritten_one_is_in_the_audit_log() {
    let (_d, e, _) = setup();
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "1",
        10,
        json!({"email": "g@x.io", "jobtitle": "CTO"}),
    );
    apply_one(
        &e,
        "salesforce-main",
        "Contact",
        "A",
        20,
        json!({"Email": "g@x.io", "Title": "Chief Technology Officer"}),
    );
    // An older edit arriving late loses, and is kept too.
    apply_one(
        &e,
        "zendesk-main",
        "users",
        "z",
        5,
        json!({"email": "g@x.io", "name": "Grace Hopper"}),
    );
    let rec = e.find("g@x.io").unwrap().unwrap();
    assert_eq!(rec.value("title"), Some(&text("Chief Technology Officer")));
    assert_eq!(rec.fields["title"].from.connector, "salesforce-main");
    let audit = e.audit(rec.id, 100).unwrap();
    assert!(audit.iter().any(|a| matches!(&a.event, AuditEvent::Overwritten { field, old, .. } if field == "title" && old.value == text("CTO") && old.from.connector == "hubspot-main")), "{audit:#?}");
}

#[test]
fn an_empty_value_never_erases_and_bad_values_are_counted_not_fatal() {
    let (_d, e, _) = setup();
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "1",
        1,
        json!({"email": "e@x.io", "jobtitle": "VP"}),
    );
    let r = e
        .apply("hubspot-main", page("contacts", vec![change("contacts", "1", 2, json!({"email": "e@x.io", "jobtitle": "", "lifecyclestage": "astronaut", "firstname": "Eve"}))]))
        .unwrap();
    assert_eq!(r.invalid.len(), 1, "{:?}", r.invalid);
    assert!(
        r.invalid[0].contains("lifecyclestage: `astronaut` is not in the value map"),
        "{:?}",
        r.invalid
    );
    let rec = e.find("e@x.io").unwrap().unwrap();
    assert_eq!(rec.value("title"), Some(&text("VP")));
    assert_eq!(
        rec.value("first_name"),
        Some(&text("Eve")),
        "the rest of the record applied"
    );
}

#[test]
fn priority_policy_from_yaml_beats_recency() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(
        dir.path(),
        "merge:\n  person.title: { priority: [salesforce-main] }\n",
    );
    let e = engine(&cfg, Arc::new(MemStore::new()));
    apply_one(
        &e,
        "salesforce-main",
        "Contact",
        "A",
        1,
        json!({"Email": "p@x.io", "Title": "Founder"}),
    );
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "1",
        99,
        json!({"email": "p@x.io", "jobtitle": "Intern"}),
    );
    let rec = e.find("p@x.io").unwrap().unwrap();
    assert_eq!(rec.value("title"), Some(&text("Founder")));
    let audit = e.audit(rec.id, 100).unwrap();
    assert!(audit.iter().any(|a| matches!(&a.event, AuditEvent::Rejected { field, value, .. } if field == "title" && value.value == text("Intern"))));
}

#[test]
fn a_change_is_pushed_to_the_other_systems_once_and_its_echo_changes_nothing() {
    let (_d, e, _) = setup();
    let r = e.apply("hubspot-main", page("contacts", vec![change("contacts", "1", 1, json!({"email": "h@x.io", "firstname": "Hal", "lastname": "Abelson", "jobtitle": "Prof"}))])).unwrap();
    assert_eq!(r.enqueued, 2, "salesforce and zendesk get a create");
    assert!(
        e.outbox("hubspot-main", 10).unwrap().is_empty(),
        "no push back to the source"
    );
    let sf = e.outbox("salesforce-main", 10).unwrap();
    assert_eq!(sf.len(), 1);
    let (seq, entry) = &sf[0];
    assert_eq!(entry.op, PushOp::Upsert);
    let rec = e.record(entry.record).unwrap().unwrap();
    let (proj, hash) = e
        .projection("salesforce-main", "Contact", &rec)
        .unwrap()
        .unwrap();
    assert_eq!(proj["Email"], "h@x.io");
    assert_eq!(proj["Title"], "Prof");
    e.confirm_push(
        "salesforce-main",
        &[*seq],
        rec.id,
        "Contact",
        hash,
        Some("003NEW"),
    )
    .unwrap();
    assert!(e.outbox("salesforce-main", 10).unwrap().is_empty());

    // Salesforce reports our own write back (later timestamp, same values): nothing moves.
    let echo = change("Contact", "003NEW", 5, serde_json::to_value(&proj).unwrap());
    let r = e
        .apply("salesforce-main", page("Contact", vec![echo]))
        .unwrap();
    assert_eq!((r.enqueued, r.updated, r.created), (0, 0, 0), "{r:?}");
    assert_eq!(
        e.outbox("zendesk-main", 10).unwrap().len(),
        1,
        "only the original create"
    );
    assert_eq!(
        e.find("h@x.io").unwrap().unwrap().version,
        rec.version + 1,
        "only the link was added"
    );
}

#[test]
fn replaying_a_page_changes_nothing() {
    let (_d, e, tap) = tapped();
    let store = &tap.inner;
    let p = Page {
        object: "contacts".into(),
        changes: vec![
            change(
                "contacts",
                "1",
                1,
                json!({"email": "r@x.io", "firstname": "Ron"}),
            ),
            change(
                "contacts",
                "2",
                2,
                json!({"email": "s@x.io", "firstname": "Sue"}),
            ),
            change(
                "contacts",
                "1",
                3,
                json!({"email": "r@x.io", "firstname": "Ronald"}),
            ),
        ],
        cursor: Some("c1".into()),
    };
    e.apply("hubspot-main", p.clone()).unwrap();
    let before = store.dump();
    let r = e.apply("hubspot-main", p).unwrap();
    assert_eq!(r.enqueued, 0);
    let after = store.dump();
    let changed: Vec<_> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        changed.is_empty() && after.len() == before.len(),
        "replay changed {changed:?}"
    );
    // Nor does it write again what it would not change: only the cursor and the
    // outbox sequence go with every page.
    let (puts, dels) = tap.last();
    let tables: Vec<Table> = puts.iter().map(|(t, _)| *t).collect();
    assert_eq!(tables, [Table::Cursors, Table::Meta], "{puts:?}");
    assert!(dels.is_empty(), "{dels:?}");
    assert_eq!(
        e.cursor("hubspot-main", "contacts").unwrap().as_deref(),
        Some("c1")
    );
}

#[test]
fn out_of_order_events_never_regress_a_copy() {
    let (_d, e, _) = setup();
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "1",
        50,
        json!({"email": "o@x.io", "jobtitle": "New title"}),
    );
    let r = e
        .apply(
            "hubspot-main",
            page(
                "contacts",
                vec![change(
                    "contacts",
                    "1",
                    10,
                    json!({"email": "o@x.io", "jobtitle": "Old title"}),
                )],
            ),
        )
        .unwrap();
    assert_eq!(r.stale, 1);
    assert_eq!(
        e.find("o@x.io").unwrap().unwrap().value("title"),
        Some(&text("New title"))
    );
}

#[test]
fn new_evidence_merges_two_records_into_the_older_one() {
    let (_d, e, _) = setup();
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "1",
        1,
        json!({"email": "old@x.io", "firstname": "Kim"}),
    );
    apply_one(
        &e,
        "zendesk-main",
        "users",
        "z1",
        2,
        json!({"email": "kim@x.io", "name": "Kim Park"}),
    );
    let older = e.find("old@x.io").unwrap().unwrap();
    let younger = e.find("kim@x.io").unwrap().unwrap();
    assert_ne!(older.id, younger.id);
    let r = e
        .apply(
            "hubspot-main",
            page(
                "contacts",
                vec![change(
                    "contacts",
                    "1",
                    3,
                    json!({"email": "kim@x.io", "firstname": "Kim"}),
                )],
            ),
        )
        .unwrap();
    assert_eq!(r.merged, 1);
    let merged = e.find("kim@x.io").unwrap().unwrap();
    assert_eq!(merged.id, older.id, "the older id survives");
    assert_eq!(merged.links.len(), 2);
    assert_eq!(merged.value("last_name"), Some(&text("Park")));
    let tomb = e.record(younger.id).unwrap().unwrap();
    assert_eq!(tomb.merged_into, Some(older.id));
    assert_eq!(
        e.find("zendesk-main:users:z1").unwrap().unwrap().id,
        older.id
    );
    assert!(
        e.find("old@x.io").unwrap().is_none(),
        "a replaced email stops being an identity key"
    );
    let audit = e.audit(older.id, 100).unwrap();
    assert!(audit.iter().any(
        |a| matches!(&a.event, AuditEvent::Merged { absorbed, .. } if *absorbed == younger.id)
    ));
}

#[test]
fn relations_resolve_across_systems() {
    let (_d, e, _) = setup();
    apply_one(
        &e,
        "salesforce-main",
        "Account",
        "001",
        1,
        json!({"Name": "Globex", "Website": "globex.com"}),
    );
    apply_one(
        &e,
        "salesforce-main",
        "Contact",
        "003",
        2,
        json!({"Email": "hank@globex.com", "AccountId": "001"}),
    );
    let org = e.find("globex.com").unwrap().unwrap();
    let person = e.find("hank@globex.com").unwrap().unwrap();
    assert_eq!(person.value("organization"), Some(&Value::Ref(org.id)));
    // HubSpot learns the company: the contact's projection names HubSpot's company id.
    apply_one(
        &e,
        "hubspot-main",
        "companies",
        "55",
        3,
        json!({"name": "Globex", "domain": "globex.com"}),
    );
    let (proj, _) = e
        .projection("hubspot-main", "contacts", &person)
        .unwrap()
        .unwrap();
    assert_eq!(proj["associatedcompanyid"], "55");
    // `records get` names the related record, not only its id (issue 26).
    let view = revsync::engine::lookup_view(&e, "hank@globex.com", 0)
        .unwrap()
        .unwrap();
    assert_eq!(view["relations"]["organization"]["name"], "globex.com");
    let table = revsync::engine::view::record_table(&view);
    assert!(
        table.contains(&format!("organization -> globex.com ({})", org.id)),
        "{table}"
    );
}

#[test]
fn deal_amounts_are_exact_minor_units_and_stages_map_between_systems() {
    let (_d, e, _) = setup();
    e.apply("salesforce-main", page("Opportunity", vec![change("Opportunity", "006", 1, json!({"Name": "Big deal", "Amount": 1299.99, "CurrencyIsoCode": "usd", "StageName": "Negotiation/Review"}))])).unwrap();
    let deal = e.find("salesforce-main:Opportunity:006").unwrap().unwrap();
    assert_eq!(
        deal.value("amount"),
        Some(&Value::Money {
            amount_minor: 129_999,
            currency: "USD".into()
        })
    );
    assert_eq!(deal.value("stage"), Some(&text("negotiation")));
    assert_eq!(deal.value("status"), Some(&text("open")));
    let (proj, _) = e
        .projection("hubspot-main", "deals", &deal)
        .unwrap()
        .unwrap();
    assert_eq!(proj["amount"], "1299.99");
    assert_eq!(proj["deal_currency_code"], "USD");
    assert_eq!(proj["dealstage"], "contractsent");
}

#[test]
fn deletes_follow_each_connectors_policy() {
    let (_d, e, _) = setup();
    e.apply(
        "hubspot-main",
        page(
            "contacts",
            vec![change("contacts", "1", 1, json!({"email": "d@x.io"}))],
        ),
    )
    .unwrap();
    e.apply(
        "salesforce-main",
        page(
            "Contact",
            vec![change("Contact", "S1", 2, json!({"Email": "d@x.io"}))],
        ),
    )
    .unwrap();
    e.apply(
        "zendesk-main",
        page(
            "users",
            vec![change("users", "Z1", 2, json!({"email": "d@x.io"}))],
        ),
    )
    .unwrap();
    let before_sf = e.outbox("salesforce-main", 100).unwrap().len();

    // HubSpot archives: its link goes, the record stays (and is marked archived).
    let r = e
        .apply(
            "hubspot-main",
            page("contacts", vec![deleted("contacts", "1", 3)]),
        )
        .unwrap();
    assert_eq!(r.deleted, 1);
    let rec = e.find("d@x.io").unwrap().unwrap();
    assert!(rec.archived);
    assert!(rec.link("hubspot-main", "contacts").is_none());
    assert!(e.audit(rec.id, 100).unwrap().iter().any(
        |a| matches!(&a.event, AuditEvent::LinkRemoved { policy, .. } if policy == "archive")
    ));
    assert_eq!(
        e.outbox("salesforce-main", 100).unwrap().len(),
        before_sf,
        "archive does not delete elsewhere"
    );

    // Salesforce propagates: the remaining copies get a delete.
    e.apply(
        "salesforce-main",
        page("Contact", vec![deleted("Contact", "S1", 4)]),
    )
    .unwrap();
    let zd = e.outbox("zendesk-main", 100).unwrap();
    assert!(
        zd.iter().any(|(_, o)| o.op
            == PushOp::Delete {
                external_id: "Z1".into()
            }),
        "{zd:?}"
    );
    // A stale delete of a link already gone changes nothing.
    let r = e
        .apply(
            "salesforce-main",
            page("Contact", vec![deleted("Contact", "S1", 4)]),
        )
        .unwrap();
    assert_eq!(r.deleted, 0);
}

#[test]
fn the_cursor_is_written_with_the_page() {
    let (_d, e, _) = setup();
    assert_eq!(e.cursor("zendesk-main", "users").unwrap(), None);
    e.apply(
        "zendesk-main",
        Page {
            object: "users".into(),
            changes: vec![change("users", "1", 1, json!({"email": "c@x.io"}))],
            cursor: Some("after=1".into()),
        },
    )
    .unwrap();
    assert_eq!(
        e.cursor("zendesk-main", "users").unwrap().as_deref(),
        Some("after=1")
    );
    let err = e
        .apply("zendesk-main", page("tickets", vec![]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "connector `zendesk-main` has no mapping for object `tickets`"
    );
}

#[test]
fn mappings_are_checked_against_the_canonical_model() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("connectors")).unwrap();
    std::fs::write(
        dir.path().join("connectors/hs.yaml"),
        "version: 1\nid: hs\ntype: hubspot\nparams: { token: t }\nobjects:\n  contacts:\n    kind: person\n    fields: { email: emial, lifecyclestage: { to: lifecycle_stage, map: { lead: prospect } } }\n  deals:\n    kind: deal\n    fields: { amount: amount }\n",
    )
    .unwrap();
    let cfg = revsync::config::load(
        dir.path(),
        &revsync::registry::Registry::builtin(),
        &std::collections::BTreeMap::<String, String>::new(),
    )
    .unwrap();
    let errors = revsync::engine::Engine::validate(&cfg).unwrap_err();
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let all = text.join("\n");
    assert!(all.contains("connectors/hs.yaml: connector `hs`: field `objects.contacts.fields.email`: `emial` is not a field of person; did you mean `email`?"), "{all}");
    assert!(all.contains("field `objects.contacts.fields.lifecyclestage`: value map sends `lead` to `prospect`, which is not one of subscriber, lead, mql"), "{all}");
    assert!(all.contains("field `objects.deals.fields.amount`: money field `amount` needs `currency_field: <source field>` or `currency: USD`"), "{all}");
    assert_eq!(errors.len(), 3);
}

#[test]
fn a_copy_revsync_created_joins_its_record_even_before_the_create_is_confirmed() {
    // A deal has no identity key: only the canonical id the create carried can say that
    // the HubSpot deal read back is the Salesforce opportunity's record.
    let (_d, e, _) = setup();
    apply_one(
        &e,
        "salesforce-main",
        "Opportunity",
        "006A",
        1,
        json!({"Name": "Big", "Amount": 10, "CurrencyIsoCode": "USD"}),
    );
    let deal = e.find("salesforce-main:Opportunity:006A").unwrap().unwrap();
    // The create's answer was lost; HubSpot's copy is read before the retry.
    let mut read_back = change(
        "deals",
        "77",
        2,
        json!({"dealname": "Big", "amount": "10", "deal_currency_code": "USD"}),
    );
    read_back.canonical_id = Some(deal.id);
    let r = e
        .apply("hubspot-main", page("deals", vec![read_back]))
        .unwrap();
    assert_eq!(r.created, 0, "no second canonical deal");
    let found = e.find("hubspot-main:deals:77").unwrap().unwrap();
    assert_eq!(found.id, deal.id);

    // An id that names no record (another tool's external id) changes nothing.
    let mut stranger = change("deals", "78", 3, json!({"dealname": "Other"}));
    stranger.canonical_id = Some(uuid::Uuid::now_v7());
    let r = e
        .apply("hubspot-main", page("deals", vec![stranger]))
        .unwrap();
    assert_eq!(r.created, 1);
}

#[test]
fn a_relation_is_pushed_once_its_target_is_linked_in_that_system() {
    // The contact is read before its company: Salesforce cannot be told the Account
    // until the company has one; when it gets one, the contact is queued again.
    let (_d, e, _) = setup();
    apply_one(
        &e,
        "salesforce-main",
        "Contact",
        "003A",
        1,
        json!({"Email": "ada@acme.com", "LastName": "Lovelace", "AccountId": "001A"}),
    );
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "101",
        2,
        json!({"email": "ada@acme.com"}),
    );
    let before = e.outbox("hubspot-main", 1000).unwrap().len();
    // The Account arrives, and HubSpot already holds the company (same domain).
    apply_one(
        &e,
        "hubspot-main",
        "companies",
        "501",
        3,
        json!({"name": "Acme", "domain": "acme.com"}),
    );
    apply_one(
        &e,
        "salesforce-main",
        "Account",
        "001A",
        4,
        json!({"Name": "Acme", "Website": "acme.com"}),
    );
    let person = e.find("ada@acme.com").unwrap().unwrap();
    let queued: Vec<_> = e
        .outbox("hubspot-main", 1000)
        .unwrap()
        .into_iter()
        .skip(before)
        .filter(|(_, entry)| entry.record == person.id && entry.object == "contacts")
        .collect();
    assert!(
        !queued.is_empty(),
        "the contact's company became known to HubSpot: the contact must be pushed again"
    );
    let (proj, _) = e
        .projection("hubspot-main", "contacts", &person)
        .unwrap()
        .unwrap();
    assert_eq!(
        proj.get("associatedcompanyid").map(|v| v.to_string()),
        Some("\"501\"".to_owned()),
        "{proj:?}"
    );
}

#[test]
fn a_relation_read_before_its_target_follows_links_the_target_gains_later() {
    // The contact names an Account not read yet; the Account is read, then created in
    // HubSpot by revsync: the HubSpot contact must then be told its company.
    let (_d, e, _) = setup();
    apply_one(
        &e,
        "salesforce-main",
        "Contact",
        "003A",
        1,
        json!({"Email": "ada@acme.com", "LastName": "Lovelace", "AccountId": "001A"}),
    );
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "101",
        2,
        json!({"email": "ada@acme.com"}),
    );
    apply_one(
        &e,
        "salesforce-main",
        "Account",
        "001A",
        3,
        json!({"Name": "Acme", "Website": "acme.com"}),
    );
    let org = e.find("salesforce-main:Account:001A").unwrap().unwrap();
    let (seq, entry) = e
        .outbox("hubspot-main", 1000)
        .unwrap()
        .into_iter()
        .find(|(_, entry)| entry.record == org.id && entry.object == "companies")
        .expect("the company is queued for HubSpot");
    // The contact was pushed first, while HubSpot had no company to name.
    let person = e.find("ada@acme.com").unwrap().unwrap();
    let (_, pushed) = e
        .projection("hubspot-main", "contacts", &person)
        .unwrap()
        .unwrap();
    let seqs: Vec<u64> = e
        .outbox("hubspot-main", 1000)
        .unwrap()
        .into_iter()
        .filter(|(_, x)| x.record == person.id && x.object == "contacts")
        .map(|(s, _)| s)
        .collect();
    e.confirm_push("hubspot-main", &seqs, person.id, "contacts", pushed, None)
        .unwrap();
    let before = e.outbox("hubspot-main", 1000).unwrap().len();
    e.confirm_push(
        "hubspot-main",
        &[seq],
        org.id,
        "companies",
        entry.hash,
        Some("501"),
    )
    .unwrap();
    let person = e.find("ada@acme.com").unwrap().unwrap();
    let queued = e
        .outbox("hubspot-main", 1000)
        .unwrap()
        .into_iter()
        .filter(|(_, x)| x.record == person.id && x.object == "contacts")
        .count();
    assert!(
        queued > 0,
        "the contact was not queued again ({before} entries before)"
    );
    let (proj, _) = e
        .projection("hubspot-main", "contacts", &person)
        .unwrap()
        .unwrap();
    assert_eq!(
        proj.get("associatedcompanyid"),
        Some(&json!("501")),
        "{proj:?}"
    );
}

/// A Stripe customer names its CRM company in metadata, but is read before that company:
/// once the company is read, the two are one record, as if read in the other order.
#[test]
fn a_cross_system_id_read_before_its_target_merges_when_the_target_is_read() {
    let (_dir, e) = with_connector("stripe", STRIPE_WITH_XREF);

    apply_one(
        &e,
        "stripe-main",
        "customers",
        "cus_1",
        1,
        json!({"name": "Prestige Health", "metadata.crm_id": "5"}),
    );
    let early = e.find("stripe-main:customers:cus_1").unwrap().unwrap();
    apply_one(
        &e,
        "hubspot-main",
        "companies",
        "5",
        2,
        json!({"name": "Prestige Health", "domain": "prestigehealth.com"}),
    );
    let company = e.find("prestigehealth.com").unwrap().unwrap();
    let customer = e.find("stripe-main:customers:cus_1").unwrap().unwrap();
    assert_eq!(customer.id, company.id, "still two records");
    assert_eq!(company.id, early.id, "the older record survives");
    assert_eq!(company.links.len(), 2, "{:?}", company.links);
    let trail = e.audit(company.id, 50).unwrap();
    assert!(
        trail
            .iter()
            .any(|a| matches!(&a.event, AuditEvent::Merged { evidence, .. }
            if evidence.contains("stripe-main customers cus_1 names hubspot-main:companies:5"))),
        "{trail:?}"
    );

    // Read again (a replay), nothing splits or merges twice.
    apply_one(
        &e,
        "hubspot-main",
        "companies",
        "5",
        2,
        json!({"name": "Prestige Health", "domain": "prestigehealth.com"}),
    );
    assert_eq!(
        e.find("prestigehealth.com").unwrap().unwrap().links.len(),
        2
    );
}

/// A company whose domain field is empty but whose website is set (common in HubSpot) is
/// found by the domain its website gives, like one with the domain filled in.
#[test]
fn an_empty_domain_is_taken_from_the_website() {
    let (_dir, e) = with_connector("crm", CRM_WITH_WEBSITE);
    apply_one(
        &e,
        "zendesk-main",
        "organizations",
        "77",
        1,
        json!({"name": "Dunder Logistics", "domain_names": ["dunderlogistics.io"]}),
    );
    apply_one(
        &e,
        "crm",
        "companies",
        "1113",
        2,
        json!({"name": "Dunder Logistics", "domain": null, "website": "https://www.dunderlogistics.io/pricing"}),
    );
    let zd = e.find("zendesk-main:organizations:77").unwrap().unwrap();
    let crm = e.find("crm:companies:1113").unwrap().unwrap();
    assert_eq!(
        zd.id, crm.id,
        "the website's domain did not identify the company"
    );
}

/// With `phone_region`, a number written without its country code is read in that
/// country; without it, the number stays as written (it could be from anywhere).
#[test]
fn national_phone_numbers_read_in_the_connectors_phone_region() {
    let (_d, e) = with_connector(
        "crm",
        "version: 1\nid: crm\ntype: hubspot\nparams: { token: t, base_url: 'http://127.0.0.1:9' }\nphone_region: United States\nobjects:\n  contacts:\n    kind: person\n    fields: { email: email, phone: phone }\n",
    );
    apply_one(
        &e,
        "crm",
        "contacts",
        "1",
        1,
        json!({"email": "ann@acme.com", "phone": "(415) 867-5309"}),
    );
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "2",
        1,
        json!({"email": "bob@acme.com", "phone": "(415) 867-5310"}),
    );
    let ann = e.find("ann@acme.com").unwrap().unwrap();
    assert_eq!(ann.value("phone"), Some(&text("+14158675309")));
    assert_eq!(ann.value("phone_raw"), Some(&text("(415) 867-5309")));
    let bob = e.find("bob@acme.com").unwrap().unwrap();
    assert_eq!(bob.value("phone"), Some(&text("(415) 867-5310")));
}

/// A domain read off a website identifies a company and fills an empty domain, but never
/// replaces the domain another system states, even when its report is newer.
#[test]
fn a_domain_implied_by_a_website_never_replaces_a_stated_one() {
    let (_dir, e) = with_connector("crm", CRM_WITH_WEBSITE);
    let company = |id: &str, secs: i64, fields: serde_json::Value| {
        page("companies", vec![change("companies", id, secs, fields)])
    };
    e.apply(
        "hubspot-main",
        company("5", 1, json!({"name": "Acme", "domain": "acme.com"})),
    )
    .unwrap();
    e.apply(
        "crm",
        company(
            "9",
            2,
            json!({"name": "Acme", "website": "https://acme.com/"}),
        ),
    )
    .unwrap();
    e.apply(
        "crm",
        company(
            "9",
            3,
            json!({"name": "Acme", "website": "https://www.acme-group.com/"}),
        ),
    )
    .unwrap();
    let rec = e.find("crm:companies:9").unwrap().unwrap();
    assert_eq!(rec.links.len(), 2, "{:?}", rec.links);
    assert_eq!(rec.value("domain"), Some(&text("acme.com")));
    assert_eq!(
        rec.value("website"),
        Some(&text("https://www.acme-group.com/"))
    );
}

/// A cross-system id corrected before its target was read no longer counts: the company it
/// named first stays a different company.
#[test]
fn a_corrected_cross_system_id_forgets_the_id_it_replaced() {
    let (_dir, e) = with_connector("stripe", STRIPE_WITH_XREF);
    let customer = |secs: i64, crm: &str| {
        page(
            "customers",
            vec![change(
                "customers",
                "cus_1",
                secs,
                json!({"name": "Prestige Health", "metadata.crm_id": crm}),
            )],
        )
    };
    let company = |id: &str, secs: i64, domain: &str| {
        page(
            "companies",
            vec![change(
                "companies",
                id,
                secs,
                json!({"name": "Prestige", "domain": domain}),
            )],
        )
    };
    e.apply("stripe-main", customer(1, "5")).unwrap();
    e.apply("stripe-main", customer(2, "6")).unwrap();
    e.apply("hubspot-main", company("5", 3, "prestige.org"))
        .unwrap();
    e.apply("hubspot-main", company("6", 4, "prestigehealth.com"))
        .unwrap();
    let cus = e.find("stripe-main:customers:cus_1").unwrap().unwrap();
    assert_eq!(
        e.find("hubspot-main:companies:6").unwrap().unwrap().id,
        cus.id,
        "the id it names now joins"
    );
    assert_ne!(
        e.find("hubspot-main:companies:5").unwrap().unwrap().id,
        cus.id,
        "the id it named before must not"
    );
}

/// The outbox is stored in chunks (one key per page and target): confirming, retrying and
/// dead-lettering single entries inside chunks must leave exactly the others, in order.
#[test]
fn entries_inside_an_outbox_chunk_are_confirmed_retried_and_dead_lettered_one_by_one() {
    let (_d, e, _) = setup();
    // 150 contacts in one page: Zendesk gets 150 creates, over three chunks.
    let changes = (0..150)
        .map(|i| {
            change(
                "contacts",
                &format!("c{i}"),
                1,
                json!({"email": format!("p{i}@x.io"), "firstname": format!("P{i}")}),
            )
        })
        .collect();
    e.apply("hubspot-main", page("contacts", changes)).unwrap();
    let all = e.outbox("zendesk-main", usize::MAX).unwrap();
    assert_eq!(all.len(), 150);
    assert_eq!(e.outbox_len("zendesk-main", 1000).unwrap(), 150);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "in sequence order");
    let seqs: Vec<u64> = all.iter().map(|(s, _)| *s).collect();

    // Paging from inside a chunk starts right after the given sequence.
    let page2 = e.outbox_after("zendesk-main", Some(seqs[69]), 5).unwrap();
    assert_eq!(
        page2.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        seqs[70..75]
    );

    // Confirm one in the middle of the first chunk and the last of the second.
    for i in [10, 127] {
        let (seq, entry) = &all[i];
        e.confirm_push(
            "zendesk-main",
            &[*seq],
            entry.record,
            "users",
            entry.hash,
            Some(&format!("z{i}")),
        )
        .unwrap();
    }
    // A retry keeps its place with its new attempt count.
    let (seq, entry) = &all[64];
    let mut retried = entry.clone();
    retried.attempts = 3;
    retried.not_before = 42;
    e.reschedule("zendesk-main", *seq, &retried, &[*seq, seqs[65]])
        .unwrap();
    // A refused one leaves for the dead letters.
    let (seq, entry) = &all[149];
    e.dead_letter("zendesk-main", &[*seq], &refused(entry))
        .unwrap();

    let left = e.outbox("zendesk-main", usize::MAX).unwrap();
    let want: Vec<u64> = seqs
        .iter()
        .enumerate()
        .filter(|(i, _)| ![10, 127, 65, 149].contains(i))
        .map(|(_, s)| *s)
        .collect();
    assert_eq!(left.iter().map(|(s, _)| *s).collect::<Vec<_>>(), want);
    assert_eq!(e.outbox_len("zendesk-main", 1000).unwrap(), 146);
    let kept = left.iter().find(|(s, _)| *s == seqs[64]).unwrap();
    assert_eq!((kept.1.attempts, kept.1.not_before), (3, 42));
    assert_eq!(e.dead_letters(Some("zendesk-main"), 10).unwrap().len(), 1);

    // Emptying a chunk removes it; the rest still reads in order.
    let first_chunk: Vec<u64> = left
        .iter()
        .map(|(s, _)| *s)
        .filter(|s| *s <= seqs[63])
        .collect();
    for s in &first_chunk {
        let entry = &left.iter().find(|(x, _)| x == s).unwrap().1;
        e.confirm_push(
            "zendesk-main",
            &[*s],
            entry.record,
            "users",
            entry.hash,
            None,
        )
        .unwrap();
    }
    assert_eq!(
        e.outbox("zendesk-main", 1).unwrap()[0].0,
        seqs[64],
        "the first entry left after the emptied chunk"
    );
    assert_eq!(
        e.outbox_len("zendesk-main", 1000).unwrap(),
        146 - first_chunk.len()
    );
}

/// Stores written before sync states moved into the record's value keep them under their
/// own key: they must still suppress echoes, and move into the record on its next write.
#[test]
fn sync_states_from_a_store_written_before_they_moved_into_the_record_still_hold() {
    use revsync::engine::codec;
    use revsync::store::{Store, Table, WriteBatch};

    let (_d, e, store) = setup();
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "1",
        1,
        json!({"email": "old@x.io", "firstname": "Olga", "jobtitle": "CTO"}),
    );
    let (seq, entry) = e.outbox("salesforce-main", 10).unwrap()[0].clone();
    let rec = e.record(entry.record).unwrap().unwrap();
    let (proj, hash) = e
        .projection("salesforce-main", "Contact", &rec)
        .unwrap()
        .unwrap();
    e.confirm_push(
        "salesforce-main",
        &[seq],
        rec.id,
        "Contact",
        hash,
        Some("003OLD"),
    )
    .unwrap();

    // Rewrite the record the old way: the record alone, its states in `Pushed`.
    let key = codec::record_key(rec.id);
    let (stored, states) =
        codec::decode_record_and_sync(&store.get(Table::Records, &key).unwrap().unwrap()).unwrap();
    let states = states.expect("written with its states");
    let mut legacy = WriteBatch::new();
    legacy.put(Table::Records, key.clone(), codec::encode(&stored));
    // Those states had no sent projections: (held, queued) per copy.
    let old_states: std::collections::BTreeMap<_, _> = states
        .into_iter()
        .map(|(k, st)| (k, (st.held, st.queued)))
        .collect();
    legacy.put(
        Table::Pushed,
        codec::sync_key(rec.id),
        codec::encode(&old_states),
    );
    store.write(legacy).unwrap();

    assert_eq!(
        e.held("salesforce-main", "Contact", rec.id).unwrap(),
        Some(hash)
    );
    let echo = change("Contact", "003OLD", 5, serde_json::to_value(&proj).unwrap());
    let r = e
        .apply("salesforce-main", page("Contact", vec![echo]))
        .unwrap();
    assert_eq!(
        r.enqueued, 0,
        "the old states still suppress the echo: {r:?}"
    );

    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "1",
        9,
        json!({"jobtitle": "CEO"}),
    );
    assert!(
        store
            .get(Table::Pushed, &codec::sync_key(rec.id))
            .unwrap()
            .is_none(),
        "the old key goes once the record is written"
    );
    let (_, moved) =
        codec::decode_record_and_sync(&store.get(Table::Records, &key).unwrap().unwrap()).unwrap();
    assert!(moved.is_some(), "the states moved into the record");
    assert_eq!(
        e.held("salesforce-main", "Contact", rec.id).unwrap(),
        Some(hash)
    );
    assert_eq!(
        e.outbox("salesforce-main", 10).unwrap().len(),
        1,
        "the title change is queued"
    );
}

/// `/status` reads outbox depth and dead letters from counters kept as entries move: after
/// queueing, confirming, coalescing, retrying, dead-lettering and replaying they must equal
/// a recount, and an engine opened over the same store must start from the same figures.
#[test]
fn queue_counts_kept_as_entries_move_equal_a_recount() {
    let (dir, e, store) = setup();
    let recount = |e: &revsync::engine::Engine, c: &str| {
        let n = e.queue_counts(c);
        let want = (
            e.outbox_len(c, usize::MAX).unwrap() as u64,
            e.dead_letter_count(c, usize::MAX).unwrap() as u64,
        );
        assert_eq!((n.outbox, n.dead_letters), want, "{c}");
        want
    };
    new_contacts(&e, 150);
    assert_eq!(recount(&e, "zendesk-main"), (150, 0));
    let all = e.outbox("zendesk-main", usize::MAX).unwrap();
    let (seq, entry) = &all[10];
    e.confirm_push(
        "zendesk-main",
        &[*seq],
        entry.record,
        "users",
        entry.hash,
        Some("z10"),
    )
    .unwrap();
    let mut retried = all[64].1.clone();
    retried.attempts = 2;
    e.reschedule("zendesk-main", all[64].0, &retried, &[all[64].0, all[65].0])
        .unwrap();
    e.dead_letter(
        "zendesk-main",
        &[all[149].0, all[148].0],
        &refused(&all[149].1),
    )
    .unwrap();
    e.dead_letter("zendesk-main", &[all[100].0], &refused(&all[100].1))
        .unwrap();
    // Removing an entry that is already gone changes nothing.
    e.reschedule("zendesk-main", all[64].0, &retried, &[all[65].0])
        .unwrap();
    // Dead-lettering no sequences moves nothing (it used to panic on the empty list).
    e.dead_letter("zendesk-main", &[], &refused(&all[100].1))
        .unwrap();
    assert_eq!(recount(&e, "zendesk-main"), (145, 2));
    assert!(e.replay_dead_letter("zendesk-main", all[100].0).unwrap());
    assert!(!e.replay_dead_letter("zendesk-main", all[100].0).unwrap());
    assert_eq!(recount(&e, "zendesk-main"), (146, 1));
    // A second record's change queues more, for every other connector.
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "c0",
        5,
        json!({"email": "p0@x.io", "firstname": "P"}),
    );
    let now = recount(&e, "zendesk-main");
    recount(&e, "salesforce-main");
    drop(e);
    let cfg = config_in(dir.path(), "");
    let reopened = engine(&cfg, store);
    assert_eq!(recount(&reopened, "zendesk-main"), now);
}

/// A dead letter for `entry`, as a 422 would leave it.
fn refused(entry: &revsync::engine::codec::OutboxEntry) -> revsync::engine::codec::DeadLetter {
    revsync::engine::codec::DeadLetter {
        entry: entry.clone(),
        request: "{}".into(),
        class: "permanent".into(),
        detail: "refused".into(),
        status: Some(422),
        response: None,
        failed_ts: 0,
    }
}

/// `/records` shows a record's newest audit entries: read from the end of its trail, and
/// given oldest first.
#[test]
fn a_records_newest_audit_entries_are_read_from_the_end() {
    let (_d, e, _) = setup();
    let (rec, all) = renamed_five_times(&e);
    assert_eq!(all.len(), 5, "{all:?}");
    assert_eq!(e.audit(rec.id, 2).unwrap(), all[3..]);
    assert!(e.audit(rec.id, 0).unwrap().is_empty());
}

/// "Replay all" walks the dead letters a page at a time and replays every one, past the
/// first page; a listing never returns more than its cap.
#[test]
fn replaying_every_dead_letter_goes_past_the_first_page() {
    let (_d, e, _) = setup();
    let n = revsync::engine::SCAN_PAGE + 76;
    new_contacts(&e, n);
    for (seq, entry) in e.outbox("zendesk-main", usize::MAX).unwrap() {
        e.dead_letter("zendesk-main", &[seq], &refused(&entry))
            .unwrap();
    }
    assert_eq!(e.queue_counts("zendesk-main").dead_letters, n as u64);
    assert_eq!(e.replay_dead_letters(Some("salesforce-main")).unwrap(), 0);
    assert_eq!(e.replay_dead_letters(Some("zendesk-main")).unwrap(), n);
    assert_eq!(e.dead_letter_count("zendesk-main", usize::MAX).unwrap(), 0);
    assert_eq!(e.outbox_len("zendesk-main", usize::MAX).unwrap(), n);
    assert_eq!(e.replay_dead_letters(None).unwrap(), 0);
}

/// `n` new HubSpot contacts in one page: each queues a create for every other system.
fn new_contacts(e: &revsync::engine::Engine, n: usize) {
    let changes = (0..n)
        .map(|i| {
            change(
                "contacts",
                &format!("c{i}"),
                1,
                json!({"email": format!("p{i}@x.io")}),
            )
        })
        .collect();
    e.apply("hubspot-main", page("contacts", changes)).unwrap();
}

/// The retention task, as the daemon runs it: old webhook ids and audit entries past the
/// per-record bound go, the rest stays, and it stops when told.
#[test]
fn the_retention_task_prunes_webhook_ids_and_audit_entries() {
    use revsync::store::{Store, Table, WriteBatch};
    use revsync::sync::seen;
    let (_d, e, store) = setup();
    let (rec, all) = renamed_five_times(&e);
    assert_eq!(all.len(), 5);
    let mut b = WriteBatch::new();
    b.put(
        Table::Inbox,
        [seen::PREFIX, b"hs\0old"].concat(),
        seen::stamp(1),
    );
    b.put(
        Table::Inbox,
        [seen::PREFIX, b"hs\0new"].concat(),
        seen::stamp(seen::now_secs()),
    );
    store.write(b).unwrap();

    let cfg = revsync::config::RetentionConfig {
        webhook_seen_ttl_secs: 3600,
        audit_max_entries_per_record: 2,
        audit_max_age_days: 0,
        prune_interval_secs: 1,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let engine = Arc::new(e);
    let task = rt.spawn(revsync::sync::retention(
        store.clone(),
        engine.clone(),
        cfg,
        cancel.clone(),
    ));
    let ids = || {
        store
            .scan(Table::Inbox, seen::PREFIX, None, 10)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>()
    };
    rt.block_on(async {
        for _ in 0..50 {
            if ids().len() == 1 && engine.audit(rec.id, usize::MAX).unwrap().len() == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    assert_eq!(ids(), [[seen::PREFIX, b"hs\0new"].concat()]);
    let kept = engine.audit(rec.id, usize::MAX).unwrap();
    assert_eq!(kept, all[3..], "the newest two");
    cancel.cancel();
    rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(2), task)
            .await
            .unwrap()
            .unwrap()
    });
}

/// A contact whose first name changed five times: its record and its audit (five entries).
fn renamed_five_times(
    e: &revsync::engine::Engine,
) -> (revsync_sdk::Record, Vec<revsync::engine::codec::AuditEntry>) {
    for t in 1..=6 {
        let fields = json!({"email": "a@x.io", "firstname": format!("N{t}")});
        apply_one(e, "hubspot-main", "contacts", "1", t, fields);
    }
    let rec = e.find("a@x.io").unwrap().unwrap();
    let all = e.audit(rec.id, usize::MAX).unwrap();
    (rec, all)
}

/// A store whose next write panics when armed: a bug inside a transaction, as the engine
/// sees it.
struct PanickyStore {
    inner: MemStore,
    armed: std::sync::atomic::AtomicBool,
}

impl revsync::store::Store for PanickyStore {
    fn get(
        &self,
        table: revsync::store::Table,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, revsync::store::StoreError> {
        self.inner.get(table, key)
    }

    fn scan(
        &self,
        table: revsync::store::Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<revsync::store::Entry>, revsync::store::StoreError> {
        self.inner.scan(table, prefix, after, limit)
    }

    fn write(&self, batch: revsync::store::WriteBatch) -> Result<(), revsync::store::StoreError> {
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            panic!("injected panic inside the write");
        }
        self.inner.write(batch)
    }

    fn flush(&self) -> Result<(), revsync::store::StoreError> {
        self.inner.flush()
    }

    fn stats(&self) -> revsync::store::StoreStats {
        self.inner.stats()
    }
}

#[test]
fn a_panic_inside_one_apply_is_its_error_and_the_next_apply_works() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), "");
    let store = Arc::new(PanickyStore {
        inner: MemStore::new(),
        armed: false.into(),
    });
    let e = engine(&cfg, store.clone());
    // Armed once the engine has started (it writes at start: the identity index's state).
    store.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let first = e.apply(
        "hubspot-main",
        page(
            "contacts",
            vec![change(
                "contacts",
                "1",
                1,
                json!({"email": "ada@example.com"}),
            )],
        ),
    );
    match first {
        Err(revsync::engine::EngineError::Panicked(m)) => assert!(m.contains("injected"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(
        e.find("ada@example.com").unwrap().is_none(),
        "nothing of it kept"
    );
    // The writer lock was not left poisoned: later writes go through.
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "2",
        2,
        json!({"email": "grace@example.com"}),
    );
    assert!(e.find("grace@example.com").unwrap().is_some());
    let report = e
        .apply(
            "hubspot-main",
            page(
                "contacts",
                vec![change(
                    "contacts",
                    "1",
                    3,
                    json!({"email": "ada@example.com"}),
                )],
            ),
        )
        .unwrap();
    assert_eq!(report.created, 1);
}

/// The soak's lost edit (BENCHMARKS, "an echo of our own write ... beats a newer edit"):
/// revsync writes title A to Salesforce, HubSpot's newer edit B becomes canonical, then
/// Salesforce's read brings A back stamped with the time of revsync's write, later than B.
/// It is revsync's own write: it must not beat B, whether or not the push was confirmed yet.
fn an_echo_of_a_sent_projection_never_beats_a_newer_edit(confirmed_before_the_edit: bool) {
    let (_d, e, _) = setup();
    apply_one(
        &e,
        "salesforce-main",
        "Contact",
        "003A",
        1,
        json!({"Email": "t@x.io", "LastName": "Tan", "Title": "Old"}),
    );
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "1",
        2,
        json!({"email": "t@x.io", "lastname": "Tan", "jobtitle": "Title A"}),
    );
    let rec = e.find("t@x.io").unwrap().unwrap();
    let sf = e.outbox("salesforce-main", 10).unwrap();
    let seqs: Vec<u64> = sf.iter().map(|(s, _)| *s).collect();
    let (proj_a, hash_a) = e
        .projection("salesforce-main", "Contact", &rec)
        .unwrap()
        .unwrap();
    assert_eq!(proj_a["Title"], "Title A");
    // The dispatcher takes A and sends it; Salesforce stores it (stamped 4, below).
    e.mark_sent("salesforce-main", "Contact", &[(rec.id, hash_a)])
        .unwrap();
    if confirmed_before_the_edit {
        e.confirm_push("salesforce-main", &seqs, rec.id, "Contact", hash_a, None)
            .unwrap();
    }
    // HubSpot's newer edit, made at 3, becomes canonical.
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "1",
        3,
        json!({"email": "t@x.io", "lastname": "Tan", "jobtitle": "Title B"}),
    );
    assert_eq!(
        e.find("t@x.io").unwrap().unwrap().value("title"),
        Some(&text("Title B"))
    );
    // Salesforce's read: our own write of A, stamped 4 by Salesforce.
    let salesforce_reads = |secs, proj: &revsync::engine::Projection| {
        let fields = serde_json::to_value(proj).unwrap();
        apply_one(&e, "salesforce-main", "Contact", "003A", secs, fields)
    };
    let r = salesforce_reads(4, &proj_a);
    assert_eq!(r.updated, 0, "an echo is no change: {r:?}");
    let now = e.find("t@x.io").unwrap().unwrap();
    assert_eq!(now.value("title"), Some(&text("Title B")), "B was lost");
    let audit = e.audit(rec.id, 100).unwrap();
    assert!(
        !audit.iter().any(|a| matches!(&a.event, AuditEvent::Overwritten { new, .. } if new.value == text("Title A") && new.from.connector == "salesforce-main")),
        "{audit:#?}"
    );
    // B still goes to Salesforce, which holds A.
    let (_, hash_b) = e
        .projection("salesforce-main", "Contact", &now)
        .unwrap()
        .unwrap();
    assert!(
        e.outbox("salesforce-main", 10)
            .unwrap()
            .iter()
            .any(|(_, x)| x.hash == hash_b),
        "B is queued for Salesforce"
    );
    assert_eq!(
        e.held("salesforce-main", "Contact", rec.id).unwrap(),
        Some(hash_a),
        "Salesforce holds A"
    );

    // A real edit in Salesforce afterwards, to something revsync never sent, still wins.
    let mut edited = proj_a.clone();
    edited.insert("Title".into(), json!("Title C"));
    let r = salesforce_reads(5, &edited);
    assert_eq!(r.updated, 1, "{r:?}");
    assert_eq!(
        e.find("t@x.io").unwrap().unwrap().value("title"),
        Some(&text("Title C"))
    );
}

#[test]
fn an_echo_read_while_its_push_is_in_flight_never_beats_a_newer_edit() {
    an_echo_of_a_sent_projection_never_beats_a_newer_edit(false);
}

#[test]
fn an_echo_of_a_confirmed_push_never_beats_a_newer_edit_queued_after_it() {
    an_echo_of_a_sent_projection_never_beats_a_newer_edit(true);
}

/// A create revsync sent, read back before its confirmation (joined through its canonical
/// id) and after a newer edit became canonical, is an echo too.
#[test]
fn an_echo_of_a_create_read_before_its_confirmation_never_beats_a_newer_edit() {
    let (_d, e, _) = setup();
    let person = |title: &str| json!({"email": "c@x.io", "lastname": "Cho", "jobtitle": title});
    apply_one(&e, "hubspot-main", "contacts", "1", 2, person("Title A"));
    let rec = e.find("c@x.io").unwrap().unwrap();
    let (proj_a, hash_a) = e
        .projection("salesforce-main", "Contact", &rec)
        .unwrap()
        .unwrap();
    e.mark_sent("salesforce-main", "Contact", &[(rec.id, hash_a)])
        .unwrap();
    apply_one(&e, "hubspot-main", "contacts", "1", 3, person("Title B"));
    let mut made = change(
        "Contact",
        "003NEW",
        4,
        serde_json::to_value(&proj_a).unwrap(),
    );
    made.canonical_id = Some(rec.id);
    let r = e
        .apply("salesforce-main", page("Contact", vec![made]))
        .unwrap();
    assert_eq!(r.created, 0, "{r:?}");
    let now = e.find("salesforce-main:Contact:003NEW").unwrap().unwrap();
    assert_eq!(now.id, rec.id);
    assert_eq!(now.value("title"), Some(&text("Title B")), "B was lost");
}

/// An engine on a clock the test sets, with one Zendesk user (phone +14155550100) read
/// at 1 s.
fn zendesk_user_on_a_set_clock(
    email: &str,
) -> (
    tempfile::TempDir,
    revsync::engine::Engine,
    TestClock,
    uuid::Uuid,
) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), "");
    let clock = TestClock::new();
    let (m, p) = revsync::engine::Engine::validate(&cfg).unwrap();
    let e =
        revsync::engine::Engine::new(Arc::new(MemStore::new()), &cfg, m, p, clock.clock()).unwrap();
    apply_one(
        &e,
        "zendesk-main",
        "users",
        "9",
        1,
        json!({"email": email, "name": "Ana Ruiz", "phone": "+14155550100"}),
    );
    let id = e.find(email).unwrap().unwrap().id;
    (dir, e, clock, id)
}

fn set_clock(clock: &TestClock, secs: i64, micros: i64) {
    clock.0.store(
        at(secs).timestamp_micros() + micros,
        std::sync::atomic::Ordering::SeqCst,
    );
}

/// An operator sets `phone` at `micros` into second 50; revsync sends the projection to
/// Zendesk 0.1 s later, which confirms it. The projection sent.
fn operator_phone_sent_to_zendesk(
    e: &revsync::engine::Engine,
    clock: &TestClock,
    id: uuid::Uuid,
    phone: &str,
    micros: i64,
) -> revsync::engine::Projection {
    set_clock(clock, 50, micros);
    let set = std::collections::BTreeMap::from([("phone".to_owned(), text(phone))]);
    e.edit(id, &set, "console").unwrap();
    let now = e.find(&id.to_string()).unwrap().unwrap();
    let (proj, hash) = e
        .projection("zendesk-main", "users", &now)
        .unwrap()
        .unwrap();
    assert_eq!(proj["phone"], phone);
    let seqs: Vec<u64> = e
        .outbox("zendesk-main", 10)
        .unwrap()
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(seqs.len(), 1);
    set_clock(clock, 50, micros + 100_000);
    e.mark_sent("zendesk-main", "users", &[(id, hash)]).unwrap();
    e.confirm_push("zendesk-main", &seqs, id, "users", hash, None)
        .unwrap();
    proj
}

/// Ana's phone, set by an operator at 50.3 s and sent to Zendesk, which confirms; then an
/// agent changes it in Zendesk, whose clock has whole seconds: the edit is stamped
/// `stamp`. What the record holds afterwards, and the engine.
fn phone_edited_in_zendesk_after_revsyncs_write(
    stamp: i64,
) -> (
    tempfile::TempDir,
    revsync::engine::Engine,
    revsync_sdk::Record,
) {
    let (dir, e, clock, id) = zendesk_user_on_a_set_clock("ana@x.io");
    let proj = operator_phone_sent_to_zendesk(&e, &clock, id, "+14155550111", 300_000);
    set_clock(&clock, 50, 700_000);
    let mut edited = serde_json::to_value(&proj).unwrap();
    edited["phone"] = json!("+14155550199");
    let r = apply_one(&e, "zendesk-main", "users", "9", stamp, edited);
    assert_eq!(r.stale, 0, "{r:?}");
    let now = e.find("ana@x.io").unwrap().unwrap();
    (dir, e, now)
}

/// The demo's lost escalation (ADR 0051): an edit made in a whole-second system within
/// the second of revsync's write there is stamped before the value revsync wrote, yet it
/// was made after it. It wins, is not overwritten by what revsync sent, and goes on to the
/// other systems.
#[test]
fn an_edit_made_in_the_second_of_revsyncs_write_there_is_newer_than_that_write() {
    let (_d, e, now) = phone_edited_in_zendesk_after_revsyncs_write(50);
    assert_eq!(
        now.value("phone"),
        Some(&text("+14155550199")),
        "the agent's edit was lost"
    );
    assert_eq!(now.fields["phone"].from.connector, "zendesk-main");
    assert!(
        e.outbox("zendesk-main", 10).unwrap().is_empty(),
        "nothing goes back over the agent's edit"
    );
    let audit = e.audit(now.id, 100).unwrap();
    assert!(
        audit.iter().any(|a| matches!(&a.event, AuditEvent::Overwritten { new, .. } if new.value == text("+14155550199"))),
        "{audit:#?}"
    );
}

/// The same edit stamped in an earlier second than revsync's send was made before it, and
/// the send wrote over it in Zendesk: a late read of it changes nothing anywhere.
#[test]
fn an_edit_stamped_before_the_second_of_revsyncs_write_is_older_than_that_write() {
    let (_d, e, now) = phone_edited_in_zendesk_after_revsyncs_write(49);
    assert_eq!(now.value("phone"), Some(&text("+14155550111")));
    let (_, hash) = e
        .projection("zendesk-main", "users", &now)
        .unwrap()
        .unwrap();
    assert_eq!(
        e.held("zendesk-main", "users", now.id).unwrap(),
        Some(hash),
        "Zendesk holds what revsync sent after that edit"
    );
    assert!(e.outbox("zendesk-main", 10).unwrap().is_empty());
}

/// Two writes of revsync to Zendesk within one second, and a late read of the state
/// between them (stamped in that second): it is revsync's own older write, not an edit
/// made after the second one, and it must not bring the older value back (ADR 0051). The
/// demo's deal stage flipped this way under load and a rule ran twice.
#[test]
fn a_late_read_of_revsyncs_earlier_write_in_the_same_second_changes_nothing() {
    let (_d, e, clock, id) = zendesk_user_on_a_set_clock("li@x.io");
    // revsync writes A, then B, to Zendesk within the same second; both confirmed.
    let first = operator_phone_sent_to_zendesk(&e, &clock, id, "+14155550111", 100_000);
    operator_phone_sent_to_zendesk(&e, &clock, id, "+14155550122", 300_000);
    // A read made between the two writes, stamped in their second, arrives late.
    set_clock(&clock, 50, 700_000);
    let fields = serde_json::to_value(&first).unwrap();
    apply_one(&e, "zendesk-main", "users", "9", 50, fields);
    let now = e.find("li@x.io").unwrap().unwrap();
    assert_eq!(
        now.value("phone"),
        Some(&text("+14155550122")),
        "revsync's own older write came back as an edit"
    );
}

/// A Stripe whose customers are people: a billing email that is often personal, and
/// finance's link to the CRM contact in `metadata.hubspot_contact_id`.
const STRIPE_PEOPLE: &str = "version: 1\nid: stripe-main\ntype: stripe\nparams: { secret_key: sk_test_x, base_url: 'http://127.0.0.1:9', customers_as: person }\nobjects:\n  customers:\n    kind: person\n    fields: { name: { to: full_name }, email: { to: email, direction: in }, billing_email: { to: billing_email, direction: in }, metadata.hubspot_contact_id: { xref: hubspot-main.contacts } }\n";

#[test]
fn a_personal_billing_email_never_replaces_the_work_email_nor_splits_the_person() {
    let (_d, e) = with_connector("stripe", STRIPE_PEOPLE);
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "101",
        1,
        json!({"email": "ada@acme.com", "firstname": "Ada"}),
    );
    // Billing, newer, with a personal address, tied to the contact by finance's id only.
    apply_one(
        &e,
        "stripe-main",
        "customers",
        "cus_1",
        5,
        json!({"name": "Ada Lovelace", "email": "ada.l@gmail.com",
               "billing_email": "ada.l@gmail.com",
               "metadata": {"hubspot_contact_id": "101"}}),
    );
    let rec = e.find("hubspot-main:contacts:101").unwrap().unwrap();
    assert_eq!(rec.links.len(), 2, "{:?}", rec.links);
    assert_eq!(
        rec.value("email"),
        Some(&text("ada@acme.com")),
        "billing does not own the email"
    );
    assert_eq!(rec.value("billing_email"), Some(&text("ada.l@gmail.com")));
    // Found by either address.
    assert_eq!(e.find("ada@acme.com").unwrap().unwrap().id, rec.id);
    assert_eq!(e.find("ada.l@gmail.com").unwrap().unwrap().id, rec.id);
    // Support's copy, read later with the work email, is the same person.
    let r = e
        .apply(
            "zendesk-main",
            page(
                "users",
                vec![change(
                    "users",
                    "9",
                    6,
                    json!({"email": "ada@acme.com", "name": "Ada Lovelace"}),
                )],
            ),
        )
        .unwrap();
    assert_eq!(
        r.created, 0,
        "the Zendesk copy must not start a second person"
    );
    assert_eq!(e.find("zendesk-main:users:9").unwrap().unwrap().id, rec.id);
}

#[test]
fn a_record_stays_findable_by_every_copys_own_email() {
    let (_d, e, _) = setup();
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "101",
        1,
        json!({"email": "ada@old.com"}),
    );
    apply_one(
        &e,
        "salesforce-main",
        "Contact",
        "003A",
        2,
        json!({"Email": "ada@old.com", "LastName": "Lovelace"}),
    );
    // HubSpot changes the address; newest wins, but Salesforce still holds the old one
    // until revsync's push lands there.
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "101",
        3,
        json!({"email": "ada@new.com"}),
    );
    let rec = e.find("hubspot-main:contacts:101").unwrap().unwrap();
    assert_eq!(rec.value("email"), Some(&text("ada@new.com")));
    assert_eq!(
        e.find("ada@old.com").unwrap().map(|r| r.id),
        Some(rec.id),
        "Salesforce's copy still says ada@old.com"
    );
    // Once Salesforce says the new address too, nobody holds the old one: it goes.
    apply_one(
        &e,
        "salesforce-main",
        "Contact",
        "003A",
        4,
        json!({"Email": "ada@new.com", "LastName": "Lovelace"}),
    );
    assert_eq!(e.find("ada@old.com").unwrap().map(|r| r.id), None);
    assert_eq!(e.find("ada@new.com").unwrap().unwrap().id, rec.id);
}

/// A CRM whose `companies` are first mapped as organizations, then (edited YAML) as deals.
fn things_as(kind: &str) -> String {
    format!("version: 1\nid: crm\ntype: hubspot\nparams: {{ token: t, base_url: 'http://127.0.0.1:9' }}\nobjects:\n  companies:\n    kind: {kind}\n    fields: {{ name: name }}\n")
}

#[test]
fn an_object_whose_kind_is_edited_is_read_again_and_gates_creates_until_then() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<MemStore> = Arc::new(MemStore::new());
    let cfg = config_with_connector(dir.path(), "crm", &things_as("organization"));
    let e = engine(&cfg, store.clone());
    let mut p = page(
        "companies",
        vec![change("companies", "1", 1, json!({"name": "Acme"}))],
    );
    p.cursor = Some("c1".into());
    e.apply("crm", p).unwrap();
    e.mark_backfilled("crm", "companies").unwrap();
    assert!(e.backfilled("crm", "companies").unwrap());

    // Same kind at the next start: nothing restarts.
    let e = engine(&cfg, store.clone());
    assert!(e.restart_reads_of_changed_kinds().unwrap().is_empty());
    assert_eq!(e.cursor("crm", "companies").unwrap().as_deref(), Some("c1"));
    assert!(e.backfilled("crm", "companies").unwrap());

    // Edited to deals: the copies were linked as companies, so the object is read again
    // from the start, and deal creates wait for that read.
    let cfg = config_with_connector(dir.path(), "crm", &things_as("deal"));
    let e = engine(&cfg, store.clone());
    assert!(
        !e.backfilled("crm", "companies").unwrap(),
        "the old marker no longer gates"
    );
    let restarted = e.restart_reads_of_changed_kinds().unwrap();
    assert_eq!(restarted.len(), 1, "{restarted:?}");
    assert_eq!(restarted[0].2, "organization");
    assert_eq!(e.cursor("crm", "companies").unwrap(), None);
    e.mark_backfilled("crm", "companies").unwrap();
    assert!(e.backfilled("crm", "companies").unwrap());
    assert!(e.restart_reads_of_changed_kinds().unwrap().is_empty());
}

/// HubSpot holding only customers and opportunities: `filter:` on `lifecyclestage`.
const HUBSPOT_CUSTOMERS_ONLY: &str = "version: 1\nid: hubspot-main\ntype: hubspot\nparams: { token: t, base_url: 'http://127.0.0.1:9' }\nobjects:\n  contacts:\n    kind: person\n    fields: { email: email, firstname: first_name, lifecyclestage: { to: lifecycle_stage, map: default } }\n    filter: { lifecyclestage: { in: [customer, opportunity] } }\n";

#[test]
fn a_filter_decides_which_records_are_read_and_which_are_written() {
    let (_d, e) = with_connector("hubspot", HUBSPOT_CUSTOMERS_ONLY);
    // Read: a lead is outside the filter and not brought in; a customer is.
    let r = e
        .apply(
            "hubspot-main",
            page(
                "contacts",
                vec![
                    change(
                        "contacts",
                        "1",
                        1,
                        json!({"email": "lead@acme.com", "lifecyclestage": "lead"}),
                    ),
                    change(
                        "contacts",
                        "2",
                        1,
                        json!({"email": "buyer@acme.com", "lifecyclestage": "Customer"}),
                    ),
                ],
            ),
        )
        .unwrap();
    assert_eq!((r.filtered, r.created), (1, 1));
    assert!(e.find("lead@acme.com").unwrap().is_none());
    assert!(e.find("buyer@acme.com").unwrap().is_some());

    // Write: a person known only to Salesforce has no lifecycle stage, so it is outside
    // HubSpot's filter and not created there; the customer goes to Salesforce as usual.
    apply_one(
        &e,
        "salesforce-main",
        "Contact",
        "003A",
        2,
        json!({"Email": "prospect@acme.com", "LastName": "Doe"}),
    );
    let to_hubspot = e.outbox("hubspot-main", 100).unwrap();
    assert!(to_hubspot.is_empty(), "{to_hubspot:?}");
    let buyer = e.find("buyer@acme.com").unwrap().unwrap().id;
    let to_sf = e.outbox("salesforce-main", 100).unwrap();
    assert!(to_sf.iter().any(|(_, x)| x.record == buyer), "{to_sf:?}");
}

type TableKey = (Table, Vec<u8>);

/// A store that keeps every batch written to it, to see what a write touched.
struct Tap {
    inner: MemStore,
    batches: std::sync::Mutex<Vec<Vec<Op>>>,
}

impl Tap {
    /// The (table, key) pairs the last batch put, and the ones it deleted.
    fn last(&self) -> (Vec<TableKey>, Vec<TableKey>) {
        let batches = self.batches.lock().unwrap();
        let (mut puts, mut dels) = (Vec::new(), Vec::new());
        for op in batches.last().into_iter().flatten() {
            match op {
                Op::Put(t, k, _) => puts.push((*t, k.clone())),
                Op::Delete(t, k) => dels.push((*t, k.clone())),
            }
        }
        (puts, dels)
    }
}

impl Store for Tap {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(table, key)
    }
    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.inner.scan(table, prefix, after, limit)
    }
    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let ops = batch.into_ops();
        self.batches.lock().unwrap().push(ops.clone());
        let mut again = WriteBatch::new();
        for op in ops {
            match op {
                Op::Put(t, k, v) => again.put(t, k, v),
                Op::Delete(t, k) => again.delete(t, k),
            }
        }
        self.inner.write(again)
    }
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
}

fn tapped() -> (tempfile::TempDir, revsync::engine::Engine, Arc<Tap>) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), "");
    let store = Arc::new(Tap {
        inner: MemStore::new(),
        batches: Default::default(),
    });
    let e = engine(&cfg, store.clone());
    (dir, e, store)
}

#[test]
fn an_unchanged_identity_key_or_link_is_not_rewritten() {
    let (_d, e, store) = tapped();
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "1",
        1,
        json!({"email": "r@x.io", "firstname": "Ron"}),
    );
    let (puts, _) = store.last();
    assert!(
        puts.iter().any(|(t, _)| *t == Table::Index),
        "a new record is indexed: {puts:?}"
    );
    assert!(puts.iter().any(|(t, _)| *t == Table::Links), "{puts:?}");

    // A new name, the same email: the record is rewritten, its email key and link are not.
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "1",
        2,
        json!({"email": "r@x.io", "firstname": "Ronald"}),
    );
    let (puts, _) = store.last();
    assert!(puts.iter().any(|(t, _)| *t == Table::Records), "{puts:?}");
    assert!(
        !puts
            .iter()
            .any(|(t, _)| matches!(t, Table::Index | Table::Links)),
        "{puts:?}"
    );

    // A new email: its key is written (and the old one stays, as the copy's keys say).
    apply_one(
        &e,
        "hubspot-main",
        "contacts",
        "1",
        3,
        json!({"email": "ron@x.io", "firstname": "Ronald"}),
    );
    let (puts, _) = store.last();
    let index: Vec<&Vec<u8>> = puts
        .iter()
        .filter(|(t, _)| *t == Table::Index)
        .map(|(_, k)| k)
        .collect();
    assert_eq!(index.len(), 1, "{puts:?}");
    assert!(index[0].ends_with(b"ron@x.io"), "{index:?}");
    assert_eq!(
        e.find("ron@x.io").unwrap().unwrap().value("first_name"),
        Some(&text("Ronald"))
    );
}

#[test]
fn a_new_link_removes_a_tombstone_only_where_a_copy_was_deleted() {
    let (_d, e, store) = tapped();
    // Contact 1 read at `secs`: what that write deleted.
    let read = |secs| {
        apply_one(
            &e,
            "hubspot-main",
            "contacts",
            "1",
            secs,
            json!({"email": "t@x.io"}),
        );
        store.last().1
    };
    let tombstones = || {
        store
            .inner
            .dump()
            .keys()
            .filter(|(t, k)| {
                *t == Table::Index as u8 && k.starts_with(b"t\0hubspot-main\0contacts\0")
            })
            .count()
    };
    let dels = read(1);
    assert!(dels.is_empty(), "no copy was ever deleted: {dels:?}");

    e.apply(
        "hubspot-main",
        page("contacts", vec![deleted("contacts", "1", 2)]),
    )
    .unwrap();
    assert_eq!(tombstones(), 1);

    // The copy comes back: its tombstone goes, in the same write as its link.
    let dels = read(3);
    assert_eq!(dels.len(), 1, "{dels:?}");
    assert_eq!(tombstones(), 0);
}

/// Salesforce's Lead and Contact (MODEL.md: lifecycle stage decides): a new lead is
/// created as a Lead, a customer as a Contact, and a copy already linked stays where it is.
#[test]
fn create_when_routes_a_new_person_to_the_object_that_takes_it() {
    const SF: &str = "version: 1\nid: sf-leads\ntype: salesforce\nparams: { auth: { flow: client_credentials, token_url: 'http://127.0.0.1:9/token', client_id: c, client_secret: s } }\nobjects:\n  Contact:\n    kind: person\n    create_when: { lifecycle_stage: { not_in: [subscriber, lead, mql] } }\n    fields: { Email: email, LastName: { to: last_name, default: '[not provided]' } }\n  Lead:\n    kind: person\n    fields: { Email: email, LastName: { to: last_name, default: '[not provided]' }, Company: { to: custom.company, default: '[not provided]' } }\n";
    let (_d, e) = with_connector("sf-leads", SF);
    e.apply(
        "hubspot-main",
        page(
            "contacts",
            vec![
                change(
                    "contacts",
                    "1",
                    1,
                    json!({"email": "lead@x.io", "lastname": "Lead", "lifecyclestage": "lead"}),
                ),
                change(
                    "contacts",
                    "2",
                    1,
                    json!({"email": "cust@x.io", "lastname": "Cust", "lifecyclestage": "customer"}),
                ),
                change(
                    "contacts",
                    "3",
                    1,
                    json!({"email": "none@x.io", "lastname": "None"}),
                ),
            ],
        ),
    )
    .unwrap();
    let mut by_email = std::collections::BTreeMap::new();
    for (_, entry) in e.outbox("sf-leads", 10).unwrap() {
        let rec = e.record(entry.record).unwrap().unwrap();
        let email = rec
            .value("email")
            .and_then(Value::as_text)
            .unwrap()
            .to_owned();
        by_email
            .entry(email)
            .or_insert_with(Vec::new)
            .push(entry.object);
    }
    assert_eq!(by_email["lead@x.io"], ["Lead"]);
    assert_eq!(by_email["cust@x.io"], ["Contact"]);
    assert_eq!(by_email["none@x.io"], ["Contact"], "no stage: not a lead");

    // Known first without a stage (queued as a Contact), then HubSpot says lead: the push
    // goes to the Lead, whatever was read first.
    apply_one(
        &e,
        "zendesk-main",
        "users",
        "7",
        1,
        json!({"email": "late@x.io", "name": "Late Stage"}),
    );
    e.apply(
        "hubspot-main",
        page(
            "contacts",
            vec![change(
                "contacts",
                "7",
                2,
                json!({"email": "late@x.io", "lastname": "Stage", "lifecyclestage": "lead"}),
            )],
        ),
    )
    .unwrap();
    let rec = e.find("late@x.io").unwrap().unwrap();
    assert!(e.projection("sf-leads", "Contact", &rec).unwrap().is_none());
    assert!(e.projection("sf-leads", "Lead", &rec).unwrap().is_some());

    // A bad create_when is refused by `check`, naming the field.
    let dir = tempfile::tempdir().unwrap();
    config_in(dir.path(), "");
    let bad = SF.replace("lifecycle_stage: { not_in", "lifecycle_stag: { not_in");
    std::fs::write(dir.path().join("connectors/sf-leads.yaml"), bad).unwrap();
    let err = revsync::config::load(
        dir.path(),
        &revsync::registry::Registry::builtin(),
        &std::collections::BTreeMap::<String, String>::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("objects.Contact.create_when.lifecycle_stag"),
        "{err}"
    );
}
