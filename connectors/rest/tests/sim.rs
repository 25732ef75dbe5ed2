//! The webinar simulator over real HTTP on loopback: its three paging styles, cursors
//! across updates, idempotent creates, refusals, the rate limit and signed webhooks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use revsync_rest::sim::{Sim, SimConfig};
use serde_json::{json, Value};
use sha2::Sha256;

async fn sim() -> Sim {
    Sim::start(SimConfig {
        requests_per_minute: 10_000,
        ..SimConfig::default()
    })
    .await
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn send(sim: &Sim, req: reqwest::RequestBuilder) -> Answer {
    let r = req.bearer_auth(sim.token()).send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

/// `path` is relative to the API's origin, or an absolute URL it gave out.
async fn get(sim: &Sim, path: &str) -> Answer {
    let url = if path.starts_with("http") {
        path.to_owned()
    } else {
        format!("{}{path}", sim.base_url())
    };
    send(sim, reqwest::Client::new().get(url)).await
}

async fn post_registrant(sim: &Sim, webinar: &str, body: Value, key: Option<&str>) -> Answer {
    let url = format!("{}/v1/webinars/{webinar}/registrants", sim.base_url());
    let mut req = reqwest::Client::new().post(url).json(&body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    send(sim, req).await
}

async fn patch(sim: &Sim, id: &str, body: Value) -> Answer {
    let url = format!("{}/v1/registrants/{id}", sim.base_url());
    send(sim, reqwest::Client::new().patch(url).json(&body)).await
}

fn ids(page: &Answer) -> Vec<String> {
    page.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Style {
    CursorInBody,
    NextUrlInBody,
    LinkHeader,
}

/// The address of the page after `page`, as `style` reads it.
fn next(page: &Answer, style: Style, limit: usize) -> Option<String> {
    match style {
        Style::CursorInBody => {
            let more = page.body["has_more"].as_bool().unwrap();
            let cursor = page.body["next_cursor"].as_str();
            assert_eq!(more, cursor.is_some(), "has_more agrees with next_cursor");
            cursor.map(|c| format!("/v1/registrants?limit={limit}&cursor={c}"))
        }
        Style::NextUrlInBody => page.body["links"]["next"].as_str().map(str::to_owned),
        Style::LinkHeader => page.header("link").map(|l| {
            let (url, rel) = l.split_once("; ").unwrap();
            assert_eq!(rel, "rel=\"next\"");
            url.trim_start_matches('<').trim_end_matches('>').to_owned()
        }),
    }
}

/// Every page from the first, as `style` follows them; calls `between` after each page.
async fn walk(
    sim: &Sim,
    style: Style,
    limit: usize,
    mut between: impl FnMut(usize),
) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut at = Some(format!("/v1/registrants?limit={limit}"));
    while let Some(path) = at {
        let page = get(sim, &path).await;
        assert_eq!(page.status, 200, "{}", page.body);
        pages.push(ids(&page));
        between(pages.len());
        at = next(&page, style, limit);
        assert!(pages.len() < 1000, "paging does not end");
    }
    pages
}

async fn every_record_once(style: Style) {
    let sim = sim().await;
    let (_, seeded) = sim.seed(4, 257);
    let pages = walk(&sim, style, 20, |_| {}).await;
    assert_eq!(pages.len(), 13, "{style:?}: 257 records, 20 a page");
    let seen: Vec<String> = pages.into_iter().flatten().collect();
    assert_eq!(seen.len(), 257, "{style:?}: none twice");
    let distinct: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(distinct, seeded.into_iter().collect(), "{style:?}: all");
}

#[tokio::test]
async fn paging_by_cursor_in_the_body_walks_every_registrant_once() {
    every_record_once(Style::CursorInBody).await;
}

#[tokio::test]
async fn paging_by_next_url_in_the_body_walks_every_registrant_once() {
    every_record_once(Style::NextUrlInBody).await;
}

#[tokio::test]
async fn paging_by_link_header_walks_every_registrant_once() {
    every_record_once(Style::LinkHeader).await;
}

#[tokio::test]
async fn registrants_come_in_updated_at_then_id_order_with_a_last_page_that_says_so() {
    let sim = sim().await;
    sim.seed(3, 60);
    let page = get(&sim, "/v1/registrants?limit=500").await;
    let data = page.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 60, "a limit over 200 is served as 200");
    let keys: Vec<(String, String)> = data
        .iter()
        .map(|r| {
            (
                r["updated_at"].as_str().unwrap().to_owned(),
                r["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    let ties = keys.windows(2).filter(|w| w[0].0 == w[1].0).count();
    assert!(ties > 0, "seeding shares seconds, so paging meets ties");
    assert_eq!(page.body["has_more"], json!(false));
    assert_eq!(page.body["next_cursor"], Value::Null);
    assert_eq!(page.body["links"]["next"], Value::Null);
    assert!(page.header("link").is_none());
}

/// Registrant ids in list order, as the simulator holds them.
fn list_order(sim: &Sim) -> Vec<String> {
    let mut rows: Vec<(String, String)> = sim
        .registrants()
        .iter()
        .map(|r| {
            let at = r["updated_at"].as_str().unwrap().to_owned();
            (at, r["id"].as_str().unwrap().to_owned())
        })
        .collect();
    rows.sort();
    rows.into_iter().map(|(_, id)| id).collect()
}

#[tokio::test]
async fn a_cursor_stays_valid_when_a_record_is_updated_between_pages() {
    let sim = sim().await;
    sim.seed(2, 50);
    sim.advance(5);
    // Updated after the first page: one record it served, one still to come.
    let order = list_order(&sim);
    let (served, unserved) = (order[0].clone(), order[45].clone());
    let s2 = sim.clone();
    let (a, b) = (served.clone(), unserved.clone());
    let pages = walk(&sim, Style::CursorInBody, 10, move |n| {
        if n == 1 {
            s2.update(&a, json!({"job_title": "Chief Revenue Officer"}));
            s2.update(&b, json!({"attended": true}));
        }
    })
    .await;
    assert!(pages[0].contains(&served));
    let seen: Vec<String> = pages.iter().flatten().cloned().collect();
    let distinct: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(distinct.len(), 50, "nothing skipped");
    assert_eq!(
        seen.len(),
        51,
        "only the record updated after it was served comes again"
    );
    assert_eq!(seen.iter().filter(|id| **id == unserved).count(), 1);
    let mut moved = vec![served, unserved];
    moved.sort();
    assert_eq!(
        &seen[seen.len() - 2..],
        moved,
        "updated records move to the end, by id"
    );
}

#[tokio::test]
async fn updated_since_includes_records_updated_at_that_very_second() {
    let sim = sim().await;
    sim.seed(1, 5);
    sim.advance(100);
    let a = sim.register("web_1001", "ann@one.example", "Ann", "One", None, None);
    let b = sim.register("web_1001", "bob@two.example", "Bob", "Two", None, None);
    sim.advance(1);
    let c = sim.register("web_1001", "cy@three.example", "Cy", "Three", None, None);
    let time_of = |id: &str| {
        let all = sim.registrants();
        let r = all.iter().find(|r| r["id"] == id).unwrap();
        r["updated_at"].as_str().unwrap().to_owned()
    };
    let at = time_of(&a);
    let page = get(&sim, &format!("/v1/registrants?updated_since={at}")).await;
    assert_eq!(ids(&page), [a.clone(), b.clone(), c.clone()]);
    let later =
        chrono::DateTime::parse_from_rfc3339(&at).unwrap() + chrono::Duration::milliseconds(500);
    let encoded = later.to_rfc3339().replace('+', "%2B");
    let page = get(&sim, &format!("/v1/registrants?updated_since={encoded}")).await;
    // `b` shares `a`'s second unless the wall clock ticked between the two calls.
    let expected: Vec<String> = [b.clone(), c]
        .into_iter()
        .filter(|id| time_of(id) > at)
        .collect();
    assert_eq!(
        ids(&page),
        expected,
        "a fraction past a second excludes that second"
    );
    let bad = get(&sim, "/v1/registrants?updated_since=yesterday").await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.body["error"]["field"], "updated_since");
}

#[tokio::test]
async fn webinars_page_by_number_and_attendance_by_offset() {
    let sim = sim().await;
    sim.seed(7, 30);
    let mut seen = Vec::new();
    for page in 1..=3 {
        let a = get(&sim, &format!("/v1/webinars?page={page}&per_page=3")).await;
        assert_eq!(
            a.body["meta"],
            json!({"page": page, "per_page": 3, "total": 7, "total_pages": 3})
        );
        seen.extend(ids(&a));
    }
    assert_eq!(seen.len(), 7);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 7);
    let w = get(&sim, "/v1/webinars").await;
    assert_eq!(w.body["meta"]["per_page"], 50);
    let first = &w.body["data"][0];
    for field in [
        "id",
        "title",
        "starts_at",
        "duration_minutes",
        "created_at",
        "updated_at",
    ] {
        assert!(!first[field].is_null(), "{field}");
    }
    assert_eq!(
        get(&sim, "/v1/webinars?per_page=1000").await.body["meta"]["per_page"],
        100
    );
    assert_eq!(get(&sim, "/v1/webinars?page=0").await.status, 422);

    let mut rows = Vec::new();
    let mut offset = 0;
    loop {
        let a = get(&sim, &format!("/v1/attendance?offset={offset}&limit=8")).await;
        assert_eq!(a.body["total"], 30);
        let data = a.body["data"].as_array().unwrap().clone();
        if data.is_empty() {
            break;
        }
        offset += data.len();
        rows.extend(data);
    }
    assert_eq!(rows.len(), 30);
    let attended: Vec<&Value> = rows.iter().filter(|r| r["attended"] == true).collect();
    assert!(!attended.is_empty() && attended.len() < 30, "some attended");
    for r in &rows {
        let present = r["attended"] == true;
        assert_eq!(r["joined_at"].is_string(), present, "{r}");
        assert_eq!(r["minutes"].as_u64().unwrap() > 0, present, "{r}");
    }
}

#[tokio::test]
async fn a_repeated_idempotency_key_gets_the_first_answer_and_creates_nothing() {
    let sim = sim().await;
    sim.seed(1, 0);
    let body = json!({"email": "ada@northwind.example", "first_name": "Ada", "last_name": "Lovelace", "company": "Northwind Traders"});
    let first = post_registrant(&sim, "web_1001", body.clone(), Some("k-1")).await;
    assert_eq!(first.status, 201);
    // Even a different body: the key, not the body, decides.
    let other = json!({"email": "grace@x.example", "first_name": "Grace", "last_name": "Hopper"});
    let again = post_registrant(&sim, "web_1001", other, Some("k-1")).await;
    assert_eq!((again.status, &again.body), (201, &first.body));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(sim.registrants().len(), 1);
    let s = sim.stats();
    assert_eq!((s.created, s.idempotent_replays), (1, 1));
    let r = &first.body;
    assert_eq!(r["id"], "reg_100001");
    assert_eq!(r["webinar_id"], "web_1001");
    assert_eq!(r["job_title"], Value::Null);
    assert_eq!(r["attended"], false);
    assert_eq!(r["registered_at"], r["updated_at"]);
}

#[tokio::test]
async fn a_second_registration_of_an_email_returns_the_existing_registrant() {
    let sim = sim().await;
    sim.seed(2, 0);
    let body =
        json!({"email": "Ada@Northwind.example", "first_name": "Ada", "last_name": "Lovelace"});
    let first = post_registrant(&sim, "web_1001", body, None).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.body["email"], "ada@northwind.example");
    let dup = json!({"email": "  ADA@northwind.example ", "first_name": "A", "last_name": "L"});
    let second = post_registrant(&sim, "web_1001", dup.clone(), None).await;
    assert_eq!((second.status, &second.body), (200, &first.body));
    let elsewhere = post_registrant(&sim, "web_1002", dup, None).await;
    assert_eq!(elsewhere.status, 201, "unique per webinar only");
    assert_eq!(sim.registrants().len(), 2);
}

#[tokio::test]
async fn refusals_have_the_documented_bodies() {
    let sim = sim().await;
    let (_, regs) = sim.seed(1, 1);
    let unauth = reqwest::get(format!("{}/v1/webinars", sim.base_url()))
        .await
        .unwrap();
    assert_eq!(unauth.status(), 401);
    let body: Value = unauth.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(body["error"]["message"].is_string());

    let no_email = post_registrant(
        &sim,
        "web_1001",
        json!({"first_name": "A", "last_name": "B"}),
        None,
    )
    .await;
    assert_eq!(no_email.status, 422);
    assert_eq!(no_email.body["error"]["code"], "validation_failed");
    assert_eq!(no_email.body["error"]["field"], "email");
    assert!(no_email.body["error"]["message"].is_string());

    let body = json!({"email": "a@b.example", "first_name": "A", "last_name": "B"});
    let no_webinar = post_registrant(&sim, "web_9", body, None).await;
    assert_eq!(no_webinar.status, 404);
    assert_eq!(no_webinar.body["error"]["code"], "not_found");

    let unknown_field = patch(&sim, &regs[0], json!({"attended": true, "phone": "555"})).await;
    assert_eq!(unknown_field.status, 422);
    assert_eq!(unknown_field.body["error"]["field"], "phone");
    let missing = get(&sim, "/v1/registrants/reg_1").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["error"]["code"], "not_found");
    assert_eq!(
        patch(&sim, "reg_1", json!({"attended": true})).await.status,
        404
    );

    let route = get(&sim, "/v1/events").await;
    assert_eq!(route.status, 404);
    assert_eq!(route.body["error"]["code"], "not_found");
    get(&sim, "/v1/events").await;
    let del = send(
        &sim,
        reqwest::Client::new().delete(format!("{}/v1/registrants/{}", sim.base_url(), regs[0])),
    )
    .await;
    assert_eq!(del.status, 404);
    assert_eq!(
        sim.stats().not_simulated,
        BTreeSet::from([
            format!("DELETE /v1/registrants/{}", regs[0]),
            "GET /v1/events".to_owned()
        ])
    );
}

#[tokio::test]
async fn a_patch_changes_only_what_it_names_and_moves_updated_at() {
    let sim = sim().await;
    let (_, regs) = sim.seed(1, 3);
    sim.advance(30);
    let before = get(&sim, &format!("/v1/registrants/{}", regs[0]))
        .await
        .body;
    let after = patch(
        &sim,
        &regs[0],
        json!({"company": "Initech", "attended": true}),
    )
    .await;
    assert_eq!(after.status, 200);
    assert_eq!(after.body["company"], "Initech");
    assert_eq!(after.body["attended"], true);
    assert_eq!(after.body["first_name"], before["first_name"]);
    assert_eq!(after.body["registered_at"], before["registered_at"]);
    assert!(after.body["updated_at"].as_str() > before["updated_at"].as_str());
    let list = get(&sim, "/v1/registrants").await;
    assert_eq!(ids(&list).last(), Some(&regs[0]));
}

#[tokio::test]
async fn over_the_budget_a_token_gets_429_with_retry_after_until_its_window_ends() {
    let sim = Sim::start(SimConfig {
        tokens: vec!["one".into(), "two".into()],
        requests_per_minute: 3,
        ..SimConfig::default()
    })
    .await;
    let call = |token: &'static str| {
        let url = format!("{}/v1/webinars", sim.base_url());
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let r = call("one").await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ratelimit-limit"], "3");
        remaining.push(
            r.headers()["x-ratelimit-remaining"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let refused = call("one").await;
    assert_eq!(refused.status(), 429);
    let h = refused.headers().clone();
    let retry: i64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    let reset: i64 = h["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!((reset - sim.now() - retry).abs() <= 1);
    assert_eq!(h["x-ratelimit-remaining"], "0");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(
        call("two").await.status(),
        200,
        "each token has its own budget"
    );
    sim.advance(retry);
    assert_eq!(
        call("one").await.status(),
        200,
        "a new window after Retry-After"
    );
    assert_eq!(sim.stats().throttled, 1);
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    /// Answers 500 to this many posts first.
    refuse: Arc<Mutex<u32>>,
}

async fn receiver(refuse: u32) -> (String, Receiver) {
    let rx = Receiver {
        refuse: Arc::new(Mutex::new(refuse)),
        ..Receiver::default()
    };
    let r = rx.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let r = r.clone();
            async move {
                r.got.lock().unwrap().push((headers, body));
                let mut left = r.refuse.lock().unwrap();
                if *left > 0 {
                    *left -= 1;
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

/// The documented scheme, computed here without the simulator's code.
fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let ts = headers["x-webinar-timestamp"].to_str().unwrap();
    let sig = headers["x-webinar-signature"].to_str().unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    sig == format!("v1={hex}")
}

async fn until(mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("not within 5 s");
}

#[tokio::test]
async fn a_registrant_created_webhook_is_signed_as_documented_and_retried_with_one_event_id() {
    let sim = sim().await;
    sim.seed(1, 3);
    let (url, rx) = receiver(2).await;
    sim.set_webhook(&url, "whsec-test");
    let via_api = post_registrant(
        &sim,
        "web_1001",
        json!({"email": "ken@bell.example", "first_name": "Ken", "last_name": "Thompson"}),
        None,
    )
    .await;
    let via_helper = sim.register(
        "web_1001",
        "dmr@bell.example",
        "Dennis",
        "Ritchie",
        Some("Bell Labs"),
        Some("Researcher"),
    );
    until(|| sim.stats().webhook_posts == 2).await;
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 4, "two refused attempts, then one each");
    for (headers, body) in &got {
        assert!(verify("whsec-test", headers, body), "signature verifies");
        assert!(!verify("other-secret", headers, body));
        let now = chrono::Utc::now().timestamp();
        let ts: i64 = headers["x-webinar-timestamp"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (now - ts).abs() < 30,
            "the real time, for a receiver's tolerance"
        );
    }
    let events: Vec<Value> = got
        .iter()
        .map(|(_, b)| serde_json::from_slice(b).unwrap())
        .collect();
    assert_eq!(events[0], events[1]);
    assert_eq!(events[1], events[2], "retries send the same event");
    assert_ne!(events[2]["event_id"], events[3]["event_id"]);
    assert_eq!(events[0]["event"], "registrant.created");
    assert!(events[0]["event_id"].as_str().unwrap().starts_with("evt_"));
    assert!(events[0]["created_at"].is_string());
    assert_eq!(events[0]["data"], via_api.body);
    assert_eq!(events[3]["data"]["id"], via_helper.as_str());
    let tampered = {
        let (h, b) = &got[0];
        let mut b = b.to_vec();
        b[10] ^= 1;
        verify("whsec-test", h, &b)
    };
    assert!(!tampered, "a changed byte breaks the signature");
    let s = sim.stats();
    assert_eq!((s.webhook_posts, s.webhook_failures), (2, 0));
}

#[tokio::test]
async fn a_webhook_the_receiver_keeps_refusing_is_counted_as_failed() {
    let sim = sim().await;
    sim.seed(1, 0);
    let (url, rx) = receiver(u32::MAX).await;
    sim.set_webhook(&url, "s");
    sim.register("web_1001", "a@b.example", "A", "B", None, None);
    until(|| sim.stats().webhook_failures == 1).await;
    assert_eq!(
        rx.got.lock().unwrap().len(),
        4,
        "a few attempts, then given up"
    );
}

#[tokio::test]
async fn seeding_is_deterministic_and_realistic() {
    let (a, b) = (sim().await, sim().await);
    a.seed(3, 40);
    b.seed(3, 40);
    let strip = |v: Vec<Value>| -> Vec<Value> {
        v.into_iter()
            .map(|mut r| {
                r.as_object_mut()
                    .unwrap()
                    .retain(|k, _| !k.ends_with("_at"));
                r
            })
            .collect()
    };
    assert_eq!(strip(a.registrants()), strip(b.registrants()));
    let regs = a.registrants();
    let emails: BTreeSet<_> = regs
        .iter()
        .map(|r| {
            (
                r["webinar_id"].to_string(),
                r["email"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(emails.len(), 40, "emails unique per webinar");
    assert!(
        regs.iter().any(|r| r["company"].is_null())
            && regs.iter().any(|r| r["company"].is_string())
    );
    assert!(regs.iter().any(|r| r["job_title"].is_string()));
    assert!(regs
        .iter()
        .all(|r| r["updated_at"].as_str() <= Some(&*sim_now(&a))));
}

fn sim_now(sim: &Sim) -> String {
    chrono::DateTime::from_timestamp(sim.now(), 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
