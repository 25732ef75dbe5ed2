//! The simulator answers single-object CRUD and list paging as HubSpot does (issue 24):
//! what hubspot-api-client's `basic_api` and a user's script send, over real HTTP.
// Tests: a panic here is a failed test, not a crashed daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{call, fast};
use revsync_hubspot::sim::Sim;
use serde_json::{json, Value};

fn assert_error(body: &Value, category: &str) {
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["category"], category, "{body}");
    assert!(body["message"].is_string(), "{body}");
    assert!(
        body["correlationId"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_create_read_update_archive_answer_as_hubspot() {
    let sim = Sim::start(fast()).await;
    let (status, made) = call(
        &sim,
        "POST",
        "/crm/v3/objects/contacts",
        Some(json!({"properties": {"email": "Ada@Example.com", "firstname": "Ada"}})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(made["properties"]["email"], "ada@example.com");
    assert_eq!(made["properties"]["hs_object_id"], id.as_str());
    assert_eq!(made["archived"], false);
    assert!(made["createdAt"].is_string() && made["updatedAt"].is_string());
    assert_eq!(sim.ids("contacts").len(), 1);

    let (status, read) = call(
        &sim,
        "GET",
        &format!("/crm/v3/objects/contacts/{id}?properties=firstname,email"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(read["properties"]["firstname"], "Ada");
    let (status, by_email) = call(
        &sim,
        "GET",
        "/crm/v3/objects/contacts/ada@example.com?idProperty=email",
        None,
    )
    .await;
    assert_eq!(status, 200, "{by_email}");
    assert_eq!(by_email["id"], id.as_str());

    let (status, upd) = call(
        &sim,
        "PATCH",
        &format!("/crm/v3/objects/contacts/{id}"),
        Some(json!({"properties": {"lastname": "Lovelace"}})),
    )
    .await;
    assert_eq!(status, 200, "{upd}");
    assert_eq!(upd["properties"]["lastname"], "Lovelace");
    assert_eq!(sim.get("contacts", &id).unwrap()["lastname"], "Lovelace");

    // The batch routes' checks: an unknown property, an invalid email.
    let (status, body) = call(
        &sim,
        "POST",
        "/crm/v3/objects/contacts",
        Some(json!({"properties": {"nickname": "x"}})),
    )
    .await;
    assert_eq!(status, 400);
    assert_error(&body, "VALIDATION_ERROR");
    assert_eq!(body["errors"][0]["code"], "PROPERTY_DOESNT_EXIST");
    let (status, body) = call(
        &sim,
        "POST",
        "/crm/v3/objects/contacts",
        Some(json!({"properties": {"email": "not-an-email"}})),
    )
    .await;
    assert_eq!(status, 400);
    assert_error(&body, "VALIDATION_ERROR");
    let (status, body) = call(
        &sim,
        "POST",
        "/crm/v3/objects/companies",
        Some(json!({"properties": {"name": "Acme", "domain": "acme.example"}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let (status, _) = call(
        &sim,
        "DELETE",
        &format!("/crm/v3/objects/contacts/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert!(sim.ids("contacts").is_empty());
    let (status, body) = call(&sim, "GET", &format!("/crm/v3/objects/contacts/{id}"), None).await;
    assert_eq!(status, 404);
    assert_error(&body, "OBJECT_NOT_FOUND");
    let (status, body) = call(
        &sim,
        "GET",
        &format!("/crm/v3/objects/contacts/{id}?archived=true"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["archived"], true);
    let (status, body) = call(
        &sim,
        "PATCH",
        "/crm/v3/objects/contacts/999999",
        Some(json!({"properties": {"firstname": "X"}})),
    )
    .await;
    assert_eq!(status, 404);
    assert_error(&body, "OBJECT_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_with_a_taken_unique_value_is_a_409_naming_the_holder() {
    let sim = Sim::start(fast()).await;
    let held = sim.seed("contacts", 1).remove(0);
    let email = sim.get("contacts", &held).unwrap()["email"].clone();
    let (status, body) = call(
        &sim,
        "POST",
        "/crm/v3/objects/contacts",
        Some(json!({"properties": {"email": email.to_uppercase()}})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_error(&body, "CONFLICT");
    assert_eq!(
        body["message"],
        format!("Contact already exists. Existing ID: {held}")
    );

    // The canonical-id property is unique in every object too.
    let canonical = sim.options().canonical_id_property;
    let (status, first) = call(
        &sim,
        "POST",
        "/crm/v3/objects/companies",
        Some(json!({"properties": {"name": "One", canonical.clone(): "c-1"}})),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    let (status, body) = call(
        &sim,
        "POST",
        "/crm/v3/objects/companies",
        Some(json!({"properties": {"name": "Two", canonical.clone(): "c-1"}})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_error(&body, "CONFLICT");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(first["id"].as_str().unwrap()),
        "{body}"
    );
    // An update onto another record's unique value is refused the same way.
    let other = sim.seed("contacts", 1).remove(0);
    let (status, body) = call(
        &sim,
        "PATCH",
        &format!("/crm/v3/objects/contacts/{other}"),
        Some(json!({"properties": {"email": email}})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(sim.ids("contacts").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_paging_links_are_absolute_and_keep_the_query() {
    let sim = Sim::start(fast()).await;
    let seeded = sim.seed("contacts", 5);
    let (status, page) = call(
        &sim,
        "GET",
        "/crm/v3/objects/contacts?limit=2&properties=email",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let after = page["paging"]["next"]["after"].as_str().unwrap().to_owned();
    assert_eq!(
        after, seeded[2],
        "after is the next record's id, as HubSpot's"
    );
    let link = page["paging"]["next"]["link"].as_str().unwrap();
    assert_eq!(
        link,
        format!(
            "{}/crm/v3/objects/contacts?limit=2&properties=email&after={after}",
            sim.url()
        )
    );
    // The link is followable as is.
    let next: Value = reqwest::Client::new()
        .get(link)
        .bearer_auth(sim.options().token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = next["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [seeded[2].as_str(), seeded[3].as_str()]);
    assert!(next["results"][0]["properties"]["email"].is_string());
}
