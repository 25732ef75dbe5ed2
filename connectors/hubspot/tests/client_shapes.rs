//! What HubSpot's own Python client (hubspot-api-client) sends and needs back, answered as
//! HubSpot answers it (issue 24's fidelity suite found each of these): repeated query
//! parameters, the 404 bodies, an invalid email's 400, the v4 association answers.
// Tests: a panic here is a failed test, not a crashed daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{call, fast};
use revsync_hubspot::sim::{Sim, SimOptions};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_properties_parameters_all_count() {
    // The client sends `properties=a&properties=b` (OpenAPI "multi"), HubSpot reads both.
    let sim = Sim::start(fast()).await;
    let id = sim.seed("contacts", 1).remove(0);
    let (status, one) = call(
        &sim,
        "GET",
        &format!("/crm/v3/objects/contacts/{id}?properties=email&properties=firstname,phone"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{one}");
    assert!(one["properties"]["email"].is_string(), "{one}");
    assert!(one["properties"]["firstname"].is_string(), "{one}");
    assert_eq!(one["properties"]["phone"], Value::Null, "{one}");
    assert!(one["properties"].get("lastname").is_none(), "{one}");

    sim.seed("contacts", 2);
    let (status, page) = call(
        &sim,
        "GET",
        "/crm/v3/objects/contacts?limit=2&properties=email&properties=firstname&archived=false",
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    for r in page["results"].as_array().unwrap() {
        assert!(r["properties"]["email"].is_string(), "{r}");
        assert!(r["properties"]["firstname"].is_string(), "{r}");
    }
    // The link repeats the parameters as they came.
    let link = page["paging"]["next"]["link"].as_str().unwrap();
    assert!(
        link.contains("properties=email&properties=firstname"),
        "{link}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_id_names_itself_in_the_404_context() {
    let sim = Sim::start(fast()).await;
    let (status, body) = call(&sim, "GET", "/crm/v3/objects/contacts/424242", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["category"], "OBJECT_NOT_FOUND");
    assert_eq!(
        body["message"],
        "Object not found.  objectId are usually numeric."
    );
    assert_eq!(body["context"]["id"], json!(["424242"]), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsimulated_route_is_hubspots_404_and_is_recorded_once() {
    let sim = Sim::start(fast()).await;
    // A real endpoint the simulator lacks, on a path that matches a simulated one's shape:
    // not axum's empty 405.
    for _ in 0..2 {
        let (status, body) = call(
            &sim,
            "POST",
            "/crm/v3/objects/contacts/merge",
            Some(json!({"primaryObjectId": "1", "objectIdToMerge": "2"})),
        )
        .await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["status"], "error");
        assert_eq!(body["message"], "resource not found");
        assert!(body["correlationId"].is_string(), "{body}");
    }
    let (status, _) = call(&sim, "GET", "/crm/v3/owners", None).await;
    assert_eq!(status, 404);
    assert_eq!(
        sim.not_simulated(),
        ["GET /crm/v3/owners", "POST /crm/v3/objects/contacts/merge"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_email_is_hubspots_invalid_email_detail() {
    let sim = Sim::start(fast()).await;
    let (status, body) = call(
        &sim,
        "POST",
        "/crm/v3/objects/contacts",
        Some(json!({"properties": {"email": "not-an-email"}})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["category"], "VALIDATION_ERROR");
    let message = body["message"].as_str().unwrap();
    let detail: Value = serde_json::from_str(
        message
            .strip_prefix("Property values were not valid: ")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(detail[0]["isValid"], false);
    assert_eq!(detail[0]["error"], "INVALID_EMAIL");
    assert_eq!(detail[0]["name"], "email");
    assert_eq!(
        detail[0]["message"],
        "Email address not-an-email is invalid"
    );
    assert_eq!(body["errors"][0]["code"], "INVALID_EMAIL");
    assert_eq!(
        body["errors"][0]["context"]["propertyName"],
        json!(["email"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_association_answers_carry_the_spec_and_the_batch_times() {
    let sim = Sim::start(fast()).await;
    let contact = sim.seed("contacts", 1).remove(0);
    let company = sim.seed("companies", 1).remove(0);
    let (status, made) = call(
        &sim,
        "POST",
        "/crm/v4/associations/contacts/companies/batch/associate/default",
        Some(json!({"inputs": [{"from": {"id": contact}, "to": {"id": company}}]})),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    assert_eq!(made["status"], "COMPLETE");
    assert!(made["startedAt"].is_string() && made["completedAt"].is_string());
    let spec = &made["results"][0]["associationSpec"];
    assert_eq!(spec["associationCategory"], "HUBSPOT_DEFINED", "{made}");
    assert_eq!(spec["associationTypeId"], 279, "{made}");

    let (status, read) = call(
        &sim,
        "POST",
        "/crm/v4/associations/companies/contacts/batch/read",
        Some(json!({"inputs": [{"id": company}]})),
    )
    .await;
    assert_eq!(status, 200, "{read}");
    assert!(read["startedAt"].is_string() && read["completedAt"].is_string());
    let to = &read["results"][0]["to"][0];
    assert_eq!(to["toObjectId"].to_string(), contact, "{read}");
    assert_eq!(to["associationTypes"][0]["typeId"], 280, "{read}");
    assert_eq!(to["associationTypes"][0]["category"], "HUBSPOT_DEFINED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_read_names_every_missing_id_in_one_error() {
    let sim = Sim::start(fast()).await;
    let id = sim.seed("contacts", 1).remove(0);
    let email = sim.get("contacts", &id).unwrap()["email"].clone();
    let (status, body) = call(
        &sim,
        "POST",
        "/crm/v3/objects/contacts/batch/read",
        Some(json!({"properties": ["email"], "inputs": [{"id": id}, {"id": "77"}, {"id": "78"}]})),
    )
    .await;
    assert_eq!(status, 207, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 1);
    assert_eq!(body["numErrors"], 1, "{body}");
    let e = &body["errors"][0];
    assert_eq!(e["category"], "OBJECT_NOT_FOUND");
    assert_eq!(
        e["message"],
        "Could not get some CONTACT objects, they may be deleted or not exist. Check that ids are valid."
    );
    assert_eq!(e["context"]["ids"], json!(["77", "78"]), "{body}");

    // By a unique property, as `idProperty` asks.
    let (status, body) = call(
        &sim,
        "POST",
        "/crm/v3/objects/contacts/batch/read",
        Some(
            json!({"idProperty": "email", "inputs": [{"id": email}, {"id": "nobody@example.com"}]}),
        ),
    )
    .await;
    assert_eq!(status, 207, "{body}");
    assert_eq!(body["results"][0]["id"], id.as_str(), "{body}");
    assert_eq!(
        body["errors"][0]["context"]["ids"],
        json!(["nobody@example.com"])
    );
}

/// HubSpot's spec marks a batch read's `inputs`, `properties` and `propertiesWithHistory`
/// required. A portal set to insist on them (`strict_spec`, as a validating gateway does)
/// refuses a read without one with HubSpot's 400 VALIDATION_ERROR, naming every one
/// missing; the default portal answers the read as HubSpot's Python client sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_portal_refuses_a_batch_read_without_properties_with_history() {
    let path = "/crm/v3/objects/contacts/batch/read";
    let strict = Sim::start(SimOptions {
        strict_spec: true,
        ..fast()
    })
    .await;
    let id = strict.seed("contacts", 1).remove(0);
    let (status, body) = call(
        &strict,
        "POST",
        path,
        Some(json!({"properties": ["email"], "inputs": [{"id": id}]})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["status"], "error");
    assert_eq!(body["category"], "VALIDATION_ERROR");
    assert!(body["correlationId"].is_string(), "{body}");
    assert_eq!(
        body["message"],
        "Invalid input JSON: Cannot build BatchReadInputSimplePublicObjectId, some of required attributes are not set [propertiesWithHistory]"
    );
    let (status, body) = call(&strict, "POST", path, Some(json!({"inputs": [{"id": id}]}))).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .ends_with("[properties, propertiesWithHistory]"),
        "{body}"
    );
    let (status, body) = call(
        &strict,
        "POST",
        path,
        Some(json!({"properties": ["email"], "propertiesWithHistory": [], "inputs": [{"id": id}]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["id"], id.as_str());

    let lenient = Sim::start(fast()).await;
    let id = lenient.seed("contacts", 1).remove(0);
    let (status, body) = call(
        &lenient,
        "POST",
        path,
        Some(json!({"properties": ["email"], "inputs": [{"id": id}]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}
