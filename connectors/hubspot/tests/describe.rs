//! `revsync discover` against the HubSpot simulator over loopback HTTP: the properties API
//! as a schema, and custom properties a mapping names being read and written.
// Tests: a panic here is a failed test, not a crashed daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{connector, connector_mapping, create, fast, unlimited};
use revsync_hubspot::sim::{Sim, SimOptions};
use revsync_hubspot::{Cursor, Pos};
use revsync_sdk::{ConnectorError, FieldSchema};
use serde_json::{json, Value};

fn field<'a>(fields: &'a [FieldSchema], name: &str) -> &'a FieldSchema {
    fields
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no field {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_shows_default_and_custom_properties_as_the_portal_defines_them() {
    let sim = Sim::start(fast()).await;
    let c = connector(&sim, json!({}), unlimited());

    let contacts = c.describe("contacts").await.unwrap();
    assert_eq!(contacts.name, "contacts");
    let f = &contacts.fields;
    let email = field(f, "email");
    assert_eq!(email.ty, "string");
    assert!(!email.read_only && !email.custom);
    let stage = field(f, "lifecyclestage");
    assert_eq!(stage.ty, "enumeration");
    assert_eq!(
        stage.options,
        [
            "subscriber",
            "lead",
            "marketingqualifiedlead",
            "salesqualifiedlead",
            "opportunity",
            "customer",
            "evangelist",
            "other"
        ]
    );
    for ro in [
        "hs_object_id",
        "createdate",
        "lastmodifieddate",
        "hs_email_domain",
    ] {
        assert!(field(f, ro).read_only, "{ro} is set by hubspot");
    }
    let tier = field(f, "customer_tier");
    assert!(tier.custom && !tier.read_only);
    assert_eq!(tier.options, ["bronze", "silver", "gold"]);
    assert!(field(f, "revsync_id").custom);
    // HubSpot's API requires no property on create, and properties reference nothing.
    assert!(f.iter().all(|x| !x.required && x.references.is_empty()));

    let deals = c.describe("deals").await.unwrap();
    assert!(field(&deals.fields, "dealstage")
        .options
        .contains(&"closedwon".to_owned()));
    assert!(field(&deals.fields, "hs_deal_stage_probability").read_only);
    assert!(field(&deals.fields, "renewal_date").custom);
    let companies = c.describe("companies").await.unwrap();
    assert!(field(&companies.fields, "account_tier").custom);
    assert!(field(&companies.fields, "industry")
        .options
        .contains(&"COMPUTER_SOFTWARE".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describing_an_unknown_object_fails_and_the_simulator_answers_hubspots_404() {
    let sim = Sim::start(fast()).await;
    let c = connector(&sim, json!({}), unlimited());
    match c.describe("tickets").await {
        Err(ConnectorError::Permanent { detail, .. }) => {
            assert!(
                detail.contains("tickets") && detail.contains("contacts"),
                "{detail}"
            )
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }

    let http = reqwest::Client::new();
    let ask = |object: &str| {
        http.get(format!("{}/crm/v3/properties/{object}", sim.url()))
            .bearer_auth(sim.options().token)
            .send()
    };
    let r = ask("tickets").await.unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "error");
    assert_eq!(body["category"], "OBJECT_NOT_FOUND");
    assert!(body["correlationId"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    let r = ask("contacts").await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-hubspot-ratelimit-remaining"));
    let anonymous = http
        .get(format!("{}/crm/v3/properties/contacts", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

/// The properties call spends the account's rolling window like any other: a full window
/// is waited out, not failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_waits_out_a_spent_window() {
    let sim = Sim::start(SimOptions {
        burst_limit: 5,
        burst_window: Duration::from_millis(200),
        ..fast()
    })
    .await;
    let c = connector(&sim, json!({}), unlimited());
    sim.consume_burst(5);
    let schema = c.describe("contacts").await.unwrap();
    assert!(!schema.fields.is_empty());
    assert!(sim.stats().throttled_burst >= 1);
    assert!(c.rate_limit().unwrap().throttled_429 >= 1);
}

fn mapped() -> BTreeMap<String, Vec<String>> {
    BTreeMap::from([
        (
            "contacts".to_owned(),
            vec!["customer_tier".to_owned(), "email".to_owned()],
        ),
        // An association field is mapped too, and is not a property of deals.
        (
            "deals".to_owned(),
            vec!["associatedcompanyid".to_owned(), "renewal_date".to_owned()],
        ),
    ])
}

/// A custom property an operator maps (as discover showed it) is read by the list, search
/// and batch reads; unmapped, it is not asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapped_custom_property_is_read() {
    let sim = Sim::start(fast()).await;
    let id = sim.seed("contacts", 1).remove(0);
    sim.update("contacts", &id, &[("customer_tier", "gold")]);
    let deal = sim.seed("deals", 1).remove(0);
    sim.update("deals", &deal, &[("renewal_date", "2027-01-31")]);

    let plain = connector(&sim, json!({}), unlimited());
    let page = plain.fetch("contacts", None).await.unwrap();
    assert!(!page.changes[0].fields.contains_key("customer_tier"));

    let c = connector_mapping(&sim, json!({}), unlimited(), &mapped());
    let listed = c.fetch("contacts", None).await.unwrap();
    assert_eq!(listed.changes[0].fields["customer_tier"], json!("gold"));

    let from_zero = Cursor::Search {
        settled: Pos::default(),
        scan: None,
        archived_since_ms: chrono::Utc::now().timestamp_millis(),
        seen: Default::default(),
    }
    .encode()
    .unwrap();
    let searched = c.fetch("contacts", Some(&from_zero)).await.unwrap();
    assert_eq!(searched.changes[0].fields["customer_tier"], json!("gold"));

    let by_id = c.fetch_by_ids("contacts", &[id]).await.unwrap();
    assert_eq!(by_id[0].fields["customer_tier"], json!("gold"));
    let deals = c.fetch_by_ids("deals", &[deal]).await.unwrap();
    assert_eq!(deals[0].fields["renewal_date"], json!("2027-01-31"));
}

/// A custom property the portal has is stored and read back; one it lacks is refused with
/// HubSpot's PROPERTY_DOESNT_EXIST, for the whole call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_properties_are_written_and_unknown_ones_refused() {
    let sim = Sim::start(fast()).await;
    let c = connector_mapping(&sim, json!({}), unlimited(), &mapped());
    let r = c
        .push(
            "contacts",
            &[create(
                json!({"email": "tier@example.com", "customer_tier": "silver"}),
            )],
        )
        .await
        .unwrap();
    let id = r[0].clone().unwrap();
    assert_eq!(sim.get("contacts", &id).unwrap()["customer_tier"], "silver");
    let read = c.fetch_by_ids("contacts", &[id]).await.unwrap();
    assert_eq!(read[0].fields["customer_tier"], json!("silver"));

    let refused = c
        .push(
            "contacts",
            &[create(
                json!({"email": "colour@example.com", "favourite_colour": "teal"}),
            )],
        )
        .await;
    let e = match refused {
        Err(e) => e,
        Ok(mut r) => r.remove(0).unwrap_err(),
    };
    match e {
        ConnectorError::Permanent {
            status: Some(400),
            body: Some(body),
            ..
        } => assert!(body.contains("PROPERTY_DOESNT_EXIST"), "{body}"),
        other => panic!("expected hubspot's 400, got {other:?}"),
    }
    assert_eq!(sim.ids("contacts").len(), 1);

    let http = reqwest::Client::new();
    let r = http
        .post(format!(
            "{}/crm/v3/objects/contacts/batch/create",
            sim.url()
        ))
        .bearer_auth(sim.options().token)
        .json(&json!({"inputs": [
            {"properties": {"email": "a@example.com"}},
            {"properties": {"email": "b@example.com", "favourite_colour": "teal"}}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["category"], "VALIDATION_ERROR");
    assert_eq!(body["errors"][0]["code"], "PROPERTY_DOESNT_EXIST");
    assert_eq!(
        body["errors"][0]["context"]["propertyName"],
        json!(["favourite_colour"])
    );
    assert!(body["message"]
        .as_str()
        .unwrap()
        .starts_with("Property values were not valid"));
    assert_eq!(
        sim.ids("contacts").len(),
        1,
        "nothing of a refused call is written"
    );
}
