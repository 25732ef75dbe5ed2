//! Identity on a generated cross-system world with ground truth (issue 17): 400 people,
//! each in one to four systems, their emails typed differently in each, and some billed in
//! Stripe at a personal address that only finance's `metadata.hubspot_contact_id` ties to
//! the CRM contact. After a sync: no person split, no two people merged, no work email
//! replaced by a billing one, and no second copy of anyone in any system.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use revsync::demo::seed::Sims;
use serde_json::{json, Map, Value};

use crate::harness::{key, Rig};

const PEOPLE: usize = 400;
const SEED: u64 = 0x1d3_7171;

const FIRST: &[&str] = &[
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "John", "Margaret", "Dennis",
    "Radia", "Ken", "Hedy", "Tim", "Karen", "Linus", "Shafi", "Leslie", "Anita", "Niklaus",
];
const LAST: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "McCarthy",
    "Hamilton",
    "Ritchie",
    "Perlman",
    "Thompson",
    "Lamarr",
    "Berners-Lee",
    "Jones",
    "Torvalds",
    "Goldwasser",
    "Lamport",
    "Borg",
    "Wirth",
];
const COMPANIES: &[&str] = &[
    "acme.com",
    "globex.io",
    "initech.net",
    "umbrella.co",
    "hooli.com",
    "stark.dev",
    "wayne.org",
    "tyrell.ai",
];
const FREE_MAIL: &[&str] = &["gmail.com", "yahoo.com", "outlook.com", "icloud.com"];

/// A seeded xorshift: the same world every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// One person as the world knows them: the truth the checks compare with.
#[derive(Debug, Clone)]
struct Person {
    first: String,
    last: String,
    /// The work email, normalized: what every CRM and support copy must end with.
    work: String,
    /// A personal billing address in Stripe, tied to the HubSpot contact by metadata.
    personal: Option<String>,
    hubspot: bool,
    salesforce: bool,
    zendesk: bool,
    stripe: bool,
}

fn generate() -> Vec<Person> {
    let mut rng = Rng(SEED);
    (0..PEOPLE)
        .map(|i| {
            let first = FIRST[rng.below(FIRST.len())].to_owned();
            let last = LAST[rng.below(LAST.len())].to_owned();
            let domain = COMPANIES[rng.below(COMPANIES.len())];
            // Unique by the index: two people may share a name, never an address.
            let local = format!("{}.{}{i}", first.to_lowercase(), last.to_lowercase());
            let work = format!("{local}@{domain}");
            // One to four systems, every combination.
            let mut systems = 0;
            while systems == 0 {
                systems = rng.below(16);
            }
            let (hubspot, salesforce, zendesk, stripe) = (
                systems & 1 != 0,
                systems & 2 != 0,
                systems & 4 != 0,
                systems & 8 != 0,
            );
            // A personal billing email can only be tied to the person through finance's
            // link to the HubSpot contact; without one it is, rightly, someone else.
            let personal = (stripe && hubspot && rng.chance(40)).then(|| {
                format!(
                    "{}{}@{}",
                    last.to_lowercase(),
                    rng.below(1000),
                    FREE_MAIL[rng.below(FREE_MAIL.len())]
                )
            });
            Person {
                first,
                last,
                work,
                personal,
                hubspot,
                salesforce,
                zendesk,
                stripe,
            }
        })
        .collect()
}

/// How a person typed their email into one system: case and stray spaces vary.
fn typed(email: &str, rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => email.to_owned(),
        1 => email.to_uppercase(),
        2 => format!(" {email} "),
        _ => {
            let mut c = email.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        }
    }
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// Seeds the world through each simulator's own hooks; the copies, as
/// `connector:object:id`, per person.
fn seed(sims: &Sims, people: &[Person]) -> Vec<Vec<String>> {
    let mut rng = Rng(SEED ^ 0xfeed);
    let mut copies: Vec<Vec<String>> = vec![Vec::new(); people.len()];

    // Most Zendesk users were made two minutes ago; every fourth just now, inside the
    // minute Zendesk's exports hold back: the first read cannot see them, and a create
    // pushed before the read has caught up would meet them.
    let zd = &sims.zendesk;
    for recent in [false, true] {
        if !recent {
            zd.advance(-120);
        }
        for (i, p) in people.iter().enumerate().filter(|(_, p)| p.zendesk) {
            if (i % 4 == 0) != recent {
                continue;
            }
            let id = zd.seed("users", 1).remove(0);
            let name = format!("{} {}", p.first, p.last);
            zd.update(
                "users",
                &id,
                json!({"name": name, "email": typed(&p.work, &mut rng)}),
            );
            copies[i].push(format!("zendesk:users:{id}"));
        }
        if !recent {
            zd.advance(120);
        }
    }

    // Salesforce: last modified over the past month.
    let mut past = chrono::Utc::now() - chrono::Duration::days(30);
    sims.salesforce.with(|s| {
        for (i, p) in people.iter().enumerate().filter(|(_, p)| p.salesforce) {
            let id = s.insert(
                "Contact",
                obj(json!({"FirstName": p.first, "LastName": p.last,
                           "Email": typed(&p.work, &mut rng)})),
            );
            past += chrono::Duration::seconds(5);
            if let Some(r) = s.records.get_mut(&id) {
                r.stamp = past;
            }
            copies[i].push(format!("salesforce:Contact:{id}"));
        }
    });

    let hs = &sims.hubspot;
    let mut contact = BTreeMap::new();
    for (i, p) in people.iter().enumerate().filter(|(_, p)| p.hubspot) {
        let id = hs.seed("contacts", 1).remove(0);
        let email = typed(&p.work, &mut rng);
        hs.update(
            "contacts",
            &id,
            &[
                ("email", email.trim()),
                ("firstname", &p.first),
                ("lastname", &p.last),
            ],
        );
        contact.insert(i, id.clone());
        copies[i].push(format!("hubspot:contacts:{id}"));
    }

    // Stripe last, so the billing copy is the newest report of each person.
    let st = &sims.stripe;
    for (i, p) in people.iter().enumerate().filter(|(_, p)| p.stripe) {
        let email = p
            .personal
            .clone()
            .unwrap_or_else(|| typed(&p.work, &mut rng));
        let id = st.seed_customer(&format!("{} {}", p.first, p.last), email.trim());
        if let (Some(_), Some(c)) = (&p.personal, contact.get(&i)) {
            st.update_customer(&id, json!({"metadata": {"hubspot_contact_id": c}}));
        }
        copies[i].push(format!("stripe:customers:{id}"));
    }
    copies
}

/// People in HubSpot, Salesforce (Contacts), Zendesk (users) and Stripe (customers as
/// people, read only): the three first get everyone, Stripe keeps its own.
fn write_config(dir: &Path) {
    super::harness::write_daemon_yaml(dir);
    let files = [
        (
            "hubspot",
            "version: 1\nid: hubspot\ntype: hubspot\nparams:\n  token: pat-na1-revsync-demo\n  base_url: ${DEMO_HUBSPOT_URL}\n  search_overlap_secs: 1\npoll:\n  interval_secs: 1\nobjects:\n  contacts:\n    kind: person\n    direction: both\n    fields: { email: email, firstname: first_name, lastname: last_name }\n",
        ),
        (
            "salesforce",
            "version: 1\nid: salesforce\ntype: salesforce\nparams:\n  auth:\n    flow: refresh_token\n    token_url: ${DEMO_SALESFORCE_TOKEN_URL}\n    client_id: sim-client\n    client_secret: sim-secret\n    refresh_token: sim-refresh\n  organization_id: 00DSIM000000001AAA\n  external_id_field: Revsync_Id__c\npoll:\n  interval_secs: 1\nobjects:\n  Contact:\n    kind: person\n    direction: both\n    fields: { Email: email, FirstName: first_name, LastName: last_name }\n",
        ),
        (
            "zendesk",
            "version: 1\nid: zendesk\ntype: zendesk\nparams:\n  base_url: ${DEMO_ZENDESK_URL}\n  auth:\n    method: api_token\n    email: ops@acme.example\n    token: zendesk-revsync-demo-token\n  requests_per_minute: 700\n  exports_per_minute: 600\npoll:\n  interval_secs: 1\nobjects:\n  users:\n    kind: person\n    direction: both\n    fields: { email: email, name: { to: full_name } }\n",
        ),
        (
            "stripe",
            "version: 1\nid: stripe\ntype: stripe\nparams:\n  secret_key: sk_test_revsync_demo\n  base_url: ${DEMO_STRIPE_URL}\n  customers_as: person\npoll:\n  interval_secs: 1\nobjects:\n  customers:\n    kind: person\n    direction: in\n    fields:\n      name: { to: full_name }\n      email: email\n      billing_email: billing_email\n      metadata.hubspot_contact_id: { xref: hubspot.contacts }\n",
        ),
    ];
    for (name, body) in files {
        std::fs::write(dir.join(format!("connectors/{name}.yaml")), body).unwrap();
    }
}

/// Every person record each of the three synced systems holds: (system, normalized email)
/// -> ids.
fn people_held(sims: &Sims) -> BTreeMap<(&'static str, String), Vec<String>> {
    let mut held: BTreeMap<(&'static str, String), Vec<String>> = BTreeMap::new();
    let hs = &sims.hubspot;
    for id in hs.ids("contacts") {
        let email = hs
            .get("contacts", &id)
            .and_then(|p| p.get("email").cloned())
            .unwrap_or_default();
        held.entry(("hubspot", key(&email))).or_default().push(id);
    }
    let sf: Vec<(String, String)> = sims.salesforce.with(|s| {
        s.records
            .values()
            .filter(|r| !r.deleted && r.object == "Contact")
            .map(|r| {
                let email = r.fields.get("Email").and_then(Value::as_str).unwrap_or("");
                (r.id.clone(), email.to_owned())
            })
            .collect()
    });
    for (id, email) in sf {
        held.entry(("salesforce", key(&email)))
            .or_default()
            .push(id);
    }
    let zd = &sims.zendesk;
    for id in zd.ids("users") {
        let email = zd
            .record("users", &id)
            .and_then(|b| b["email"].as_str().map(str::to_owned))
            .unwrap_or_default();
        held.entry(("zendesk", key(&email))).or_default().push(id);
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_world_syncs_with_no_person_split_merged_or_copied_twice() {
    let _one = crate::ONE_AT_A_TIME.lock().await;
    let people = generate();
    let billed_personally = people.iter().filter(|p| p.personal.is_some()).count();
    assert!(
        billed_personally >= 20,
        "the world needs personal billing emails"
    );
    let mut copies = Vec::new();
    let rig = Rig::custom(
        |sims| {
            copies = seed(sims, &people);
            copies.iter().flatten().cloned().collect()
        },
        write_config,
    )
    .await;
    let stripe_before: BTreeMap<String, Value> = rig
        .sims
        .stripe
        .ids("customers")
        .into_iter()
        .filter_map(|id| Some((id.clone(), rig.sims.stripe.get("customers", &id)?)))
        .collect();

    let mut d = rig.start();
    d.converge(&rig.sims, Duration::from_secs(420)).await;

    let mut problems = Vec::new();
    // Ground truth 1: each person is one canonical record, holding every seeded copy, and
    // found by the work email (and the personal one, where billing has it).
    let mut canonical: BTreeMap<String, usize> = BTreeMap::new();
    for (i, p) in people.iter().enumerate() {
        let Some(rec) = d.record(&p.work).await else {
            problems.push(format!("{}: no record found by the work email", p.work));
            continue;
        };
        let id = rec["id"].as_str().unwrap_or_default().to_owned();
        if let Some(other) = canonical.insert(id.clone(), i) {
            problems.push(format!(
                "false merge: {} and {} are one record {id}",
                people[other].work, p.work
            ));
        }
        if let Some(email) = rec["fields"]["email"]["value"].as_str() {
            if email != p.work {
                problems.push(format!("{}: canonical email became {email}", p.work));
            }
        }
        for copy in &copies[i] {
            match d.record(copy).await {
                Some(r) if r["id"] == rec["id"] => {}
                Some(r) => problems.push(format!(
                    "split: {} copy {copy} is record {} not {id}",
                    p.work, r["id"]
                )),
                None => problems.push(format!("{}: copy {copy} never read", p.work)),
            }
        }
        if let Some(personal) = &p.personal {
            let found = d.record(personal).await.map(|r| r["id"].clone());
            if found != Some(rec["id"].clone()) {
                problems.push(format!(
                    "{}: the billing address {personal} finds {found:?}",
                    p.work
                ));
            }
        }
    }

    // Ground truth 2: every synced system holds each person once, under the work email,
    // and nothing else (a personal address in a CRM is a work email replaced, and an
    // unknown address is a person split off).
    let held = people_held(&rig.sims);
    let truth: BTreeSet<&str> = people.iter().map(|p| p.work.as_str()).collect();
    for system in ["hubspot", "salesforce", "zendesk"] {
        for p in &people {
            match held.get(&(system, p.work.clone())).map(Vec::len) {
                Some(1) => {}
                n => problems.push(format!("{system} holds {} {n:?} times", p.work)),
            }
        }
    }
    for ((system, email), ids) in &held {
        if !truth.contains(email.as_str()) {
            problems.push(format!(
                "{system} holds {email:?} (ids {ids:?}), no one's work email"
            ));
        }
    }

    // Stripe is read only here: finance's data is untouched.
    for (id, before) in &stripe_before {
        let now = rig.sims.stripe.get("customers", id);
        if now.as_ref().map(|v| &v["email"]) != Some(&before["email"]) {
            problems.push(format!("stripe customer {id} changed: {before} -> {now:?}"));
        }
    }
    assert_eq!(
        rig.sims.stripe.ids("customers").len(),
        stripe_before.len(),
        "no customer created in Stripe"
    );

    assert!(
        problems.is_empty(),
        "{} problems in a world of {PEOPLE} ({billed_personally} billed at a personal address):\n{}",
        problems.len(),
        problems.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
    d.stop();
}
