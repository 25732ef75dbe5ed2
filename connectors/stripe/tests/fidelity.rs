//! The Stripe simulator takes what Stripe takes, over real HTTP on loopback, with the bytes
//! written out as curl and the client libraries send them (issue 24): the secret key as a
//! bearer token or as HTTP Basic's user name with an empty password, customer search
//! in Stripe's query language, and what stripe-python saw answered unlike Stripe: fields
//! never set, emails Stripe refuses, unrouted URLs and `expand[]=customer`.
// Tests: a panic here is a failed test, not a crashed daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use revsync_stripe::sim::Sim;
use serde_json::{json, Value};

async fn call(sim: &Sim, method: &str, path: &str, authorization: Option<&str>) -> (u16, Value) {
    common::request(sim, method, path, authorization, "").await
}

/// A request with the secret key and `form` as its form-encoded body.
async fn post(sim: &Sim, path: &str, form: &str) -> (u16, Value) {
    let bearer = format!("Bearer {}", common::KEY);
    common::request(sim, "POST", path, Some(&bearer), form).await
}

async fn get(sim: &Sim, path: &str) -> (u16, Value) {
    let bearer = format!("Bearer {}", common::KEY);
    common::request(sim, "GET", path, Some(&bearer), "").await
}

/// `GET /v1/customers/search?query=…` with the query percent-encoded, as the libraries send it.
async fn search(sim: &Sim, query: &str, extra: &str) -> (u16, Value) {
    let encoded: String = query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let bearer = format!("Bearer {}", common::KEY);
    call(
        sim,
        "GET",
        &format!("/v1/customers/search?query={encoded}{extra}"),
        Some(&bearer),
    )
    .await
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_secret_key_is_taken_as_bearer_or_as_basic_user_name() {
    let sim = common::sim().await;
    sim.seed_customer("Alpha", "a@alpha.example");
    // base64("sk_test_sim:"), what `curl -u sk_test_sim:` sends.
    for auth in [
        "Bearer sk_test_sim",
        "Basic c2tfdGVzdF9zaW06",
        // base64("sk_test_sim"): no colon at all; the user name is still the key.
        "Basic c2tfdGVzdF9zaW0=",
    ] {
        let (status, page) = call(&sim, "GET", "/v1/customers", Some(auth)).await;
        assert_eq!(status, 200, "{auth}: {page}");
        assert_eq!(page["object"], "list");
        assert_eq!(page["data"].as_array().unwrap().len(), 1);
    }
    // base64("sk_test_other:"), a wrong key in either scheme, and none at all.
    for auth in [
        Some("Basic c2tfdGVzdF9vdGhlcjo="),
        Some("Bearer sk_test_other"),
        Some("Basic !!!"),
        None,
    ] {
        let (status, body) = call(&sim, "GET", "/v1/customers", auth).await;
        assert_eq!(status, 401, "{auth:?}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
}

#[tokio::test]
async fn customer_search_speaks_stripes_query_language_over_http() {
    let sim = common::sim().await;
    let ada = sim.seed_customer("Ada Lovelace", "ada@engines.example");
    sim.update_customer(
        &ada,
        json!({"metadata": {"revsync_id": "r-1", "tier": "gold"}}),
    );
    let grace = sim.seed_customer("Grace Hopper", "grace@navy.example");
    sim.update_customer(&grace, json!({"metadata": {"tier": "gold"}}));
    let alan = sim.seed_customer("Alan Turing", "alan@engines.example");

    let (status, page) = search(&sim, "email:'ada@engines.example'", "").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["object"], "search_result");
    assert_eq!(page["url"], "/v1/customers/search");
    assert_eq!(page["has_more"], false);
    assert_eq!(page["next_page"], Value::Null);
    assert_eq!(ids(&page), [ada.as_str()]);

    let (_, page) = search(&sim, "metadata['revsync_id']:'r-1'", "").await;
    assert_eq!(ids(&page), [ada.as_str()]);
    let (_, page) = search(&sim, "name~'hop'", "").await;
    assert_eq!(ids(&page), [grace.as_str()]);
    let (_, page) = search(&sim, "metadata['tier']:'gold' AND name~'love'", "").await;
    assert_eq!(ids(&page), [ada.as_str()]);
    let (_, page) = search(&sim, "email:'alan@engines.example' OR name~'grace'", "").await;
    let mut both = ids(&page);
    both.sort();
    let mut want = vec![alan.clone(), grace.clone()];
    want.sort();
    assert_eq!(both, want);

    // Pages: `limit`, then `page` = the previous `next_page`, until `has_more` is false.
    let (_, first) = search(&sim, "metadata['tier']:'gold'", "&limit=1").await;
    assert_eq!(first["has_more"], true);
    let token = first["next_page"].as_str().unwrap().to_owned();
    let (_, second) = search(
        &sim,
        "metadata['tier']:'gold'",
        &format!("&limit=1&page={token}"),
    )
    .await;
    assert_eq!(second["has_more"], false);
    let mut paged = [ids(&first), ids(&second)].concat();
    paged.sort();
    let mut gold = vec![ada.clone(), grace.clone()];
    gold.sort();
    assert_eq!(paged, gold);

    // What Stripe refuses: unquoted values, unknown fields, a short substring, AND with OR.
    for bad in [
        "email:ada@engines.example",
        "shoe_size:'9'",
        "name~'ad'",
        "email:'a' AND name:'b' OR phone:'c'",
    ] {
        let (status, body) = search(&sim, bad, "").await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{bad}");
        assert_eq!(body["error"]["param"], "query", "{bad}");
        assert!(body["error"]["message"].as_str().is_some(), "{bad}");
    }
    let bearer = format!("Bearer {}", common::KEY);
    let (status, body) = call(&sim, "GET", "/v1/customers/search", Some(&bearer)).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "query");
}

#[tokio::test]
async fn a_new_customer_has_null_address_and_shipping_and_a_full_address_when_given_one() {
    let sim = common::sim().await;
    let (status, bare) = post(&sim, "/v1/customers", "name=Ada").await;
    assert_eq!(status, 200, "{bare}");
    assert_eq!(bare["address"], Value::Null);
    assert_eq!(bare["shipping"], Value::Null);
    let (_, placed) = post(&sim, "/v1/customers", "address[city]=Paris").await;
    assert_eq!(
        placed["address"],
        json!({"city": "Paris", "country": null, "line1": null, "line2": null,
            "postal_code": null, "state": null})
    );
}

#[tokio::test]
async fn an_email_stripe_refuses_is_a_400_email_invalid_on_create_and_update() {
    let sim = common::sim().await;
    let (status, body) = post(&sim, "/v1/customers", "email=not-an-email").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"],
        json!({"type": "invalid_request_error", "code": "email_invalid", "param": "email",
            "message": "Invalid email address: not-an-email",
            "doc_url": "https://stripe.com/docs/error-codes/email-invalid"})
    );
    let id = sim.seed_customer("Ada", "ada@example.com");
    let (status, body) = post(&sim, &format!("/v1/customers/{id}"), "email=ada%40com").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "email_invalid");
    assert_eq!(
        sim.get("customers", &id).unwrap()["email"],
        "ada@example.com"
    );
}

#[tokio::test]
async fn an_unrouted_url_is_stripes_unrecognized_404() {
    let sim = common::sim().await;
    let (status, body) = get(&sim, "/v1/products").await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"error": {"type": "invalid_request_error", "message":
            "Unrecognized request URL (GET: /v1/products). Please see https://stripe.com/docs or we can help at https://support.stripe.com/."}})
    );
    // A trailing slash is no route at Stripe either, though the list is one without it.
    let (status, body) = get(&sim, "/v1/customers/").await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Unrecognized request URL (GET: /v1/customers/). If you are trying to list objects, remove the trailing slash."));
}

#[tokio::test]
async fn customer_expands_on_a_subscription_and_on_listed_invoices() {
    let sim = common::sim().await;
    let cus = sim.seed_customer("Ada", "ada@example.com");
    let price = sim.create_price(1000, "usd", "month", 1, false);
    let sub = sim
        .seed_subscription(&cus, &[(&price, 1)], "active")
        .unwrap();
    sim.seed_invoice(&cus, 1000, "paid");
    let (status, got) = get(&sim, &format!("/v1/subscriptions/{sub}?expand[0]=customer")).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["customer"]["object"], "customer");
    assert_eq!(got["customer"]["id"], cus.as_str());
    let (_, plain) = get(&sim, &format!("/v1/subscriptions/{sub}")).await;
    assert_eq!(plain["customer"], cus.as_str());
    let (_, page) = get(&sim, "/v1/invoices?expand[]=data.customer").await;
    assert_eq!(page["data"][0]["customer"]["email"], "ada@example.com");
    let (status, body) = get(&sim, "/v1/invoices?expand[]=customer").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["message"],
        "This property cannot be expanded (customer). You may want to try expanding 'data.customer' instead."
    );
}
