//! Every declared credential reaches a real server over loopback as the API expects it:
//! bearer, API key in a header or the query, basic, and OAuth2 (client credentials and
//! refresh token), with a token the API revokes renewed once and the request sent again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use revsync_rest::RestConnector;
use revsync_sdk::http::{HttpConfig, RateLimitConfig};
use revsync_sdk::{BuildContext, Connector, ConnectorError, Kind, ObjectDecl};
use serde_json::{json, Value};

#[derive(Default)]
struct Seen {
    /// Token requests, as their form fields.
    token_requests: Vec<HashMap<String, String>>,
    /// The token the API accepts now.
    valid: String,
    issued: u32,
}

type Shared = Arc<Mutex<Seen>>;

async fn token(State(s): State<Shared>, body: String) -> (StatusCode, Json<Value>) {
    // The fields these tests send need no percent-decoding.
    let form: HashMap<String, String> = body
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let mut s = s.lock().unwrap();
    s.token_requests.push(form.clone());
    if form.get("client_secret").map(String::as_str) != Some("cs-1") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        );
    }
    s.issued += 1;
    s.valid = format!("tok-{}", s.issued);
    (
        StatusCode::OK,
        Json(json!({"access_token": s.valid, "token_type": "bearer", "expires_in": 3600})),
    )
}

/// Answers one item when the request carries what `q.expect` names.
async fn items(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let valid = s.lock().unwrap().valid.clone();
    let ok = match q.get("expect").map(String::as_str) {
        Some("bearer") => h("authorization") == "Bearer static-token",
        Some("header") => h("x-api-key") == "key-1",
        Some("query") => q.get("api_key").map(String::as_str) == Some("key-2"),
        // "alice:pw" in base64
        Some("basic") => h("authorization") == "Basic YWxpY2U6cHc=",
        Some("oauth") => h("authorization") == format!("Bearer {valid}"),
        _ => false,
    };
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "unauthorized"})),
        );
    }
    (
        StatusCode::OK,
        Json(json!({"data": [{"id": 1, "email": "a@x.test"}]})),
    )
}

async fn server() -> (String, Shared) {
    let s: Shared = Arc::default();
    let app = Router::new()
        .route("/oauth/token", post(token))
        .route("/v1/items", get(items))
        .with_state(s.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (base, s)
}

fn connector(base: &str, expect: &str, auth: Value) -> RestConnector {
    let params = json!({
        "base_url": base,
        "auth": auth,
        "objects": {"items": {"list": {"path": "/v1/items", "query": {"expect": expect}, "records": "$.data"}}}
    });
    let objects = BTreeMap::from([(
        "items".to_owned(),
        ObjectDecl {
            kind: Kind::Person,
            key: None,
            read: true,
            write: false,
        },
    )]);
    let rate: RateLimitConfig =
        serde_json::from_value(json!({"requests": 1000, "per_secs": 1})).unwrap();
    RestConnector::new(&BuildContext {
        id: "auth-test",
        params: &params,
        rate_limit: &rate,
        http: &HttpConfig::default(),
        mapped_fields: &BTreeMap::new(),
        objects: &objects,
        shutdown: Default::default(),
    })
    .unwrap()
}

async fn reads(c: &RestConnector) -> Result<usize, ConnectorError> {
    c.fetch("items", None).await.map(|f| f.changes.len())
}

#[tokio::test]
async fn static_credentials_are_sent_where_declared() {
    let (base, _) = server().await;
    for (expect, auth) in [
        ("bearer", json!({"type": "bearer", "token": "static-token"})),
        (
            "header",
            json!({"type": "api_key", "header": "X-API-Key", "value": "key-1"}),
        ),
        (
            "query",
            json!({"type": "api_key", "query": "api_key", "value": "key-2"}),
        ),
        (
            "basic",
            json!({"type": "basic", "username": "alice", "password": "pw"}),
        ),
    ] {
        assert_eq!(
            reads(&connector(&base, expect, auth)).await.unwrap(),
            1,
            "{expect}"
        );
    }
    let wrong = connector(&base, "bearer", json!({"type": "bearer", "token": "nope"}));
    assert!(matches!(reads(&wrong).await, Err(ConnectorError::Auth(_))));
}

#[tokio::test]
async fn oauth2_tokens_are_cached_and_renewed_once_when_revoked() {
    let (base, seen) = server().await;
    let c = connector(
        &base,
        "oauth",
        json!({"type": "oauth2", "token_url": format!("{base}/oauth/token"), "client_id": "ci", "client_secret": "cs-1", "scope": "read"}),
    );
    assert_eq!(reads(&c).await.unwrap(), 1);
    assert_eq!(reads(&c).await.unwrap(), 1);
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.token_requests.len(), 1, "the token is cached");
        let form = &s.token_requests[0];
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(
            (form["client_id"].as_str(), form["scope"].as_str()),
            ("ci", "read")
        );
    }
    // The API revokes the token: the next read gets a new one and succeeds.
    seen.lock().unwrap().valid = "revoked-elsewhere".into();
    seen.lock().unwrap().issued = 10;
    assert_eq!(reads(&c).await.unwrap(), 1);
    assert_eq!(seen.lock().unwrap().token_requests.len(), 2);

    // With a refresh token, that grant is used; a refused client is an auth error.
    let r = connector(
        &base,
        "oauth",
        json!({"type": "oauth2", "token_url": format!("{base}/oauth/token"), "client_id": "ci", "client_secret": "cs-1", "refresh_token": "rt-9"}),
    );
    assert_eq!(reads(&r).await.unwrap(), 1);
    let last = seen.lock().unwrap().token_requests.last().cloned().unwrap();
    assert_eq!(
        (last["grant_type"].as_str(), last["refresh_token"].as_str()),
        ("refresh_token", "rt-9")
    );
    let bad = connector(
        &base,
        "oauth",
        json!({"type": "oauth2", "token_url": format!("{base}/oauth/token"), "client_id": "ci", "client_secret": "wrong"}),
    );
    let e = reads(&bad).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Auth(_)), "{e:?}");
    assert!(
        !e.to_string().contains("wrong"),
        "the secret is not in the error: {e}"
    );
}
