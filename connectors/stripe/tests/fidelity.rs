//! The Stripe simulator takes what Stripe takes, over real HTTP on loopback, with the bytes
//! written out as curl and the client libraries send them (issue 24): the secret key as a
//! bearer token or as HTTP Basic's user name with an empty password, and customer search
//! in Stripe's query language.
// Tests: a panic here is a failed test, not a crashed daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use revsync_stripe::sim::Sim;
use serde_json::{json, Value};

async fn call(sim: &Sim, method: &str, path: &str, authorization: Option<&str>) -> (u16, Value) {
    common::request(sim, method, path, authorization, "").await
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
