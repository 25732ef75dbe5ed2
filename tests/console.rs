//! The operator console (issue 21) driven over HTTP against the real binary and a HubSpot
//! simulator: sign-in and its refusals, a person found by email with each field's source,
//! an edit made in the console reaching HubSpot, CSRF and read-only refusals that change
//! nothing, pause and resume. The browser test (tests/console/run) clicks through the
//! same pages in headless Chromium.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use revsync_hubspot::sim::{Sim, SimOptions};

const ADMIN: &str = "admin-token-for-console-tests";
const READER: &str = "reader-token-for-console-tests";

fn connector_yaml(sim: &Sim) -> String {
    format!(
        "version: 1\nid: hubspot\ntype: hubspot\nparams:\n  token: {}\n  base_url: '{}'\npoll:\n  interval_secs: 1\nobjects:\n  contacts:\n    kind: person\n    direction: both\n    fields:\n      email: email\n      firstname: first_name\n      jobtitle: title\n",
        sim.options().token,
        sim.url()
    )
}

/// An admin API answer as JSON.
async fn admin_json(http: &reqwest::Client, url: &str) -> serde_json::Value {
    http.get(url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A client that follows no redirect (the tests look at each one) and keeps no cookie.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The session cookie a sign-in answered with, as a `Cookie` header value.
fn session_of(r: &reqwest::Response) -> String {
    let set = r
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .expect("a session cookie")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    set.split(';').next().unwrap().to_owned()
}

async fn sign_in(http: &reqwest::Client, base: &str, token: &str) -> reqwest::Response {
    http.post(format!("{base}/login"))
        .form(&[("token", token), ("next", "/")])
        .send()
        .await
        .unwrap()
}

/// The CSRF token a page's forms carry.
fn csrf_in(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

async fn page(http: &reqwest::Client, url: &str, cookie: &str) -> (u16, String, Option<String>) {
    let r = http
        .get(url)
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get(reqwest::header::LOCATION)
        .map(|l| l.to_str().unwrap().to_owned());
    (status, r.text().await.unwrap(), location)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_finds_a_person_and_an_edit_in_the_console_reaches_hubspot() {
    let sim = Sim::start(SimOptions::default()).await;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let contact = sim.create_at(
        "contacts",
        &[
            ("email", "ada@example.com"),
            ("firstname", "Ada"),
            ("jobtitle", "CTO"),
        ],
        now_ms - 60_000,
    );
    let dir = tempfile::tempdir().unwrap();
    write_daemon_config(dir.path(), "hubspot", &connector_yaml(&sim));
    let main = dir.path().join("revsync.yaml");
    let yaml = std::fs::read_to_string(&main).unwrap();
    std::fs::write(&main, format!("{yaml}  read_only_token: {READER}\n")).unwrap();
    let port = free_port();
    let daemon = start_daemon(dir.path(), port, ADMIN);
    let base = format!("http://127.0.0.1:{port}");
    let http = client();

    // Nothing without signing in: the browser is sent to the login page, the API says 401.
    let (status, _, location) = page(&http, &format!("{base}/console/grid"), "").await;
    assert_eq!(status, 303);
    assert_eq!(location.as_deref(), Some("/login?next=%2Fconsole%2Fgrid"));
    let (status, login, _) = page(&http, &format!("{base}/login"), "").await;
    assert_eq!(status, 200);
    assert!(login.contains("type=\"password\""), "{login}");
    let api = http
        .get(format!("{base}/records/ada@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status().as_u16(), 401);
    let forged = sign_in(&http, &base, "not-the-token").await;
    assert_eq!(forged.status().as_u16(), 401);
    assert!(forged.headers().get(reqwest::header::SET_COOKIE).is_none());

    let signed = sign_in(&http, &base, ADMIN).await;
    assert_eq!(signed.status().as_u16(), 303);
    let admin = session_of(&signed);

    // The person, once read, is found by email and shows where each value came from.
    let deadline = Instant::now() + Duration::from_secs(30);
    let record_url = loop {
        let (status, _, location) = page(
            &http,
            &format!("{base}/console/records?q=ada%40example.com"),
            &admin,
        )
        .await;
        if status == 303 {
            break format!("{base}{}", location.unwrap());
        }
        assert!(Instant::now() < deadline, "the contact was never read");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (status, html, _) = page(&http, &record_url, &admin).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("CTO") && html.contains("hubspot") && html.contains(&contact),
        "{html}"
    );
    let csrf = csrf_in(&html);
    let edit_url = format!("{record_url}/edit");

    // A form without this session's CSRF token is refused and changes nothing.
    let refused = http
        .post(&edit_url)
        .header(reqwest::header::COOKIE, &admin)
        .form(&[("title", "Forged"), ("csrf", "0000")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);

    // A read-only session sees the page and may change nothing, in the console or the API.
    let reader = session_of(&sign_in(&http, &base, READER).await);
    let (status, html, _) = page(&http, &record_url, &reader).await;
    assert_eq!(status, 200);
    assert!(
        !html.contains("/edit\""),
        "a reader is offered no edit form"
    );
    let reader_csrf = csrf_in(&html);
    let refused = http
        .post(&edit_url)
        .header(reqwest::header::COOKIE, &reader)
        .form(&[("title", "Reader"), ("csrf", reader_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    let api = http
        .post(format!("{base}/admin/dlq/replay"))
        .bearer_auth(READER)
        .json(&serde_json::json!({ "all": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status().as_u16(), 403);
    let api = http
        .get(format!("{base}/records/ada@example.com"))
        .bearer_auth(READER)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status().as_u16(), 200);

    // The operator's edit goes through the engine and reaches HubSpot.
    let saved = http
        .post(&edit_url)
        .header(reqwest::header::COOKIE, &admin)
        .form(&[
            ("title", "VP Engineering"),
            ("csrf", csrf.as_str()),
            ("back", "/console/grid"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status().as_u16(), 303);
    let back = saved.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(back.starts_with("/console/grid?note="), "{back}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while sim.get("contacts", &contact).unwrap()["jobtitle"] != "VP Engineering" {
        assert!(Instant::now() < deadline, "the edit never reached HubSpot");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(sim.ids("contacts").len(), 1, "an edit creates nothing");
    let (_, html, _) = page(&http, &record_url, &admin).await;
    assert!(
        html.contains("VP Engineering") && html.contains("console"),
        "{html}"
    );
    let forged_title = sim.get("contacts", &contact).unwrap()["jobtitle"].clone();
    assert_ne!(forged_title, "Forged");
    assert_ne!(forged_title, "Reader");

    // Pause from the console: /status says so, and a resume undoes it.
    let paused = http
        .post(format!("{base}/console/connectors/hubspot/pause"))
        .header(reqwest::header::COOKIE, &admin)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(paused.status().as_u16(), 303);
    let status: serde_json::Value = http
        .get(format!("{base}/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["connectors"][0]["state"], "paused", "{status:#}");
    let (_, overview, _) = page(&http, &format!("{base}/"), &admin).await;
    assert!(overview.contains("Resume"), "{overview}");
    let resumed = http
        .post(format!("{base}/admin/connectors/hubspot/resume"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status().as_u16(), 200);

    // Signing out ends the session.
    let out = http
        .post(format!("{base}/logout"))
        .header(reqwest::header::COOKIE, &admin)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status().as_u16(), 303);
    let (status, _, _) = page(&http, &format!("{base}/"), &admin).await;
    assert_eq!(status, 303);
    assert_eq!(stop_daemon(daemon), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_outlives_a_restart_and_a_one_time_link_signs_in_once() {
    let sim = Sim::start(SimOptions::default()).await;
    let (dir, port, daemon) = daemon_with("hubspot", &connector_yaml(&sim), ADMIN);
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    let r = http
        .post(format!("{base}/admin/connectors/hubspot/pause"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(stop_daemon(daemon), Some(0));

    let daemon = start_daemon(dir.path(), port, ADMIN);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status: serde_json::Value = http
            .get(format!("{base}/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["connectors"][0]["state"] == "paused" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not paused after the restart: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Paused means no request to HubSpot, over several poll intervals.
    let before = sim.stats().requests;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        sim.stats().requests,
        before,
        "a paused connector polls nothing"
    );

    let link: serde_json::Value = http
        .post(format!("{base}/admin/console/link"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = link["path"].as_str().unwrap();
    let first = http.get(format!("{base}{path}")).send().await.unwrap();
    assert_eq!(first.status().as_u16(), 303);
    let session = session_of(&first);
    let (status, html, _) = page(&http, &format!("{base}/"), &session).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("hubspot") && html.contains("paused"),
        "{html}"
    );
    let again = http.get(format!("{base}{path}")).send().await.unwrap();
    assert_eq!(again.status().as_u16(), 401, "a link signs in once");
    assert_eq!(stop_daemon(daemon), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_likely_duplicate_waits_in_the_console_and_an_accept_merges_it() {
    let sim = Sim::start(SimOptions::default()).await;
    let now_ms = chrono::Utc::now().timestamp_millis();
    // One person typed twice in HubSpot: the same name, a work and a personal address.
    for (email, at) in [
        ("lucy.meyer@ganbar.com", 120_000),
        ("lucy.meyer@hotmail.com", 60_000),
    ] {
        sim.create_at(
            "contacts",
            &[
                ("email", email),
                ("firstname", "Lucy"),
                ("lastname", "Meyer"),
            ],
            now_ms - at,
        );
    }
    // And the team's inbox, its name typed in capitals.
    let inbox_id = sim.create_at(
        "contacts",
        &[("email", "info@ganbar.com"), ("firstname", "SUPPORT")],
        now_ms - 30_000,
    );
    let dir = tempfile::tempdir().unwrap();
    let yaml = connector_yaml(&sim).replace(
        "      jobtitle: title\n",
        "      jobtitle: title\n      lastname: last_name\n",
    );
    write_daemon_config(dir.path(), "hubspot", &yaml);
    let main = dir.path().join("revsync.yaml");
    let cfg = std::fs::read_to_string(&main).unwrap();
    std::fs::write(&main, format!("{cfg}  read_only_token: {READER}\n")).unwrap();
    let port = free_port();
    let daemon = start_daemon(dir.path(), port, ADMIN);
    let base = format!("http://127.0.0.1:{port}");
    let http = client();

    // Likely, not sure: the pair waits for a person.
    let deadline = Instant::now() + Duration::from_secs(30);
    let pair = loop {
        let listed: serde_json::Value = admin_json(&http, &format!("{base}/admin/dupes")).await;
        if let Some(p) = listed["pairs"].as_array().and_then(|p| p.first()) {
            break p.clone();
        }
        assert!(Instant::now() < deadline, "no pair was proposed: {listed}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let id = pair["id"].as_str().unwrap().to_owned();
    assert!(
        pair["reason"]
            .as_str()
            .unwrap()
            .contains("between the thresholds"),
        "{pair}"
    );
    let out = cli(dir.path(), &["dupes", "list"], port, ADMIN);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&id),
        "{out:?}"
    );

    // A reader sees it and cannot decide it.
    let reader = session_of(&sign_in(&http, &base, READER).await);
    let (status, html, _) = page(&http, &format!("{base}/console/dupes"), &reader).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Lucy Meyer") && !html.contains(">Accept<"),
        "{html}"
    );

    // The Quality page names the role address, blamed on HubSpot; the name came in fixed.
    let (status, html, _) = page(&http, &format!("{base}/console/quality"), &reader).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("email is a role address")
            && html.contains("info@ganbar.com")
            && html.contains("hubspot")
            && !html.contains("ALL CAPS or all lower case</td>"),
        "{html}"
    );
    let inbox: serde_json::Value = admin_json(
        &http,
        &format!("{base}/records/hubspot:contacts:{inbox_id}"),
    )
    .await;
    assert_eq!(
        inbox["fields"]["first_name"]["value"], "Support",
        "{inbox:#}"
    );

    // The admin accepts in the console: one record with both HubSpot copies.
    let admin = session_of(&sign_in(&http, &base, ADMIN).await);
    let (_, html, _) = page(&http, &format!("{base}/console/dupes"), &admin).await;
    assert!(html.contains(">Accept<"), "{html}");
    let csrf = csrf_in(&html);
    let decided = http
        .post(format!("{base}/console/dupes/decide"))
        .header(reqwest::header::COOKIE, &admin)
        .form(&[
            ("csrf", csrf.as_str()),
            ("id", id.as_str()),
            ("accept", "true"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(decided.status().as_u16(), 303);
    let view: serde_json::Value =
        admin_json(&http, &format!("{base}/records/lucy.meyer@ganbar.com")).await;
    assert_eq!(view["links"].as_array().map(Vec::len), Some(2), "{view:#}");
    let left: serde_json::Value = admin_json(&http, &format!("{base}/admin/dupes")).await;
    assert_eq!(left["pairs"].as_array().map(Vec::len), Some(0), "{left}");

    // Wrongly, after all: the admin splits the personal copy off again on the record page.
    let rid = view["id"].as_str().unwrap().to_owned();
    let record_page = format!("{base}/console/records/{rid}");
    let (_, html, _) = page(&http, &record_page, &reader).await;
    assert!(!html.contains("Split off"), "a reader cannot split: {html}");
    let (_, html, _) = page(&http, &record_page, &admin).await;
    assert_eq!(html.matches(">Split off<").count(), 2, "{html}");
    let personal = view["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| format!("hubspot:contacts:{}", l["external_id"].as_str().unwrap()))
        .find(|l| {
            l != &format!(
                "hubspot:contacts:{}",
                view["links"][0]["external_id"].as_str().unwrap()
            )
        })
        .unwrap();
    let split = http
        .post(format!("{record_page}/unmerge"))
        .header(reqwest::header::COOKIE, &admin)
        .form(&[
            ("csrf", csrf_in(&html).as_str()),
            ("source", personal.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(split.status().as_u16(), 303);
    let to = split.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        to.starts_with("/console/records/") && !to.contains(&rid) && to.contains("split+off"),
        "{to}"
    );
    let kept: serde_json::Value = admin_json(&http, &format!("{base}/records/{rid}")).await;
    assert_eq!(kept["links"].as_array().map(Vec::len), Some(1), "{kept:#}");
    let apart: serde_json::Value = admin_json(&http, &format!("{base}/records/{personal}")).await;
    assert_ne!(apart["id"], kept["id"], "{apart:#}");
    assert_eq!(stop_daemon(daemon), Some(0));
}
