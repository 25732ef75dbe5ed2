//! The Zendesk simulator answers as Zendesk does, over real HTTP on loopback, to the calls a
//! client library (node-zendesk, zenpy, the zendesk_api gem) makes (issue 24): the `.json`
//! suffix, both paging styles with absolute URLs, single-record endpoints, the Search API,
//! unique emails, and a `Date` on every answer.
// Tests: a panic here is a failed test, not a crashed daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::time::Duration;

use revsync_zendesk::sim::{Sim, SimConfig};
use serde_json::{json, Value};

struct Api {
    sim: Sim,
    http: reqwest::Client,
}

impl Api {
    async fn start() -> Self {
        let sim = Sim::start(SimConfig {
            exports_per_window: 10_000,
            ..SimConfig::default()
        })
        .await;
        Self {
            sim,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.sim.base_url())
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let p = self.sim.params();
        let mut req = self.http.request(method, self.url(path)).basic_auth(
            format!("{}/token", p["auth"]["email"].as_str().unwrap()),
            Some(p["auth"]["token"].as_str().unwrap()),
        );
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let r = self.send(method, path, body).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Submits a bulk job and waits for its results.
    async fn job(&self, method: reqwest::Method, path: &str, body: Value) -> Vec<Value> {
        let (status, answer) = self.call(method, path, Some(body)).await;
        assert_eq!(status, 200, "{answer}");
        let id = answer["job_status"]["id"].as_str().unwrap().to_owned();
        for _ in 0..200 {
            let (_, s) = self.get(&format!("/job_statuses/{id}.json")).await;
            if s["job_status"]["status"] == "completed" {
                return s["job_status"]["results"].as_array().unwrap().clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("job {id} did not finish");
    }

    fn users_with_email(&self, email: &str) -> Vec<String> {
        self.sim
            .ids("users")
            .into_iter()
            .filter(|id| self.sim.record("users", id).unwrap()["email"] == json!(email))
            .collect()
    }
}

#[tokio::test]
async fn the_json_suffix_is_accepted_on_every_endpoint() {
    let api = Api::start().await;
    let ids = api.sim.seed("users", 3);
    api.sim.advance(61);
    let (status, list) = api.get("/users.json").await;
    assert_eq!(status, 200);
    assert_eq!(list["users"].as_array().unwrap().len(), 3);
    let (status, one) = api.get(&format!("/users/{}.json", ids[1])).await;
    assert_eq!(status, 200);
    assert_eq!(one["user"]["id"].to_string(), ids[1]);
    assert_eq!(
        one["user"]["url"],
        json!(format!("{}/users/{}.json", api.sim.base_url(), ids[1]))
    );
    let start = api.sim.now() - 3600;
    let (status, export) = api
        .get(&format!(
            "/incremental/users/cursor.json?start_time={start}"
        ))
        .await;
    assert_eq!(status, 200, "{export}");
    assert_eq!(export["users"].as_array().unwrap().len(), 3);
    // And the form without the suffix still answers the same.
    let (status, plain) = api.get("/users").await;
    assert_eq!((status, plain["count"].clone()), (200, json!(3)));
    let (status, missing) = api.get("/users/1.json").await;
    assert_eq!(status, 404);
    assert_eq!(
        missing,
        json!({"error": "RecordNotFound", "description": "Not found"})
    );
}

#[tokio::test]
async fn every_answer_carries_the_accounts_date() {
    let api = Api::start().await;
    api.sim.advance(3 * 86_400);
    let date_of = |r: &reqwest::Response| {
        let d = r
            .headers()
            .get("date")
            .expect("a Date header")
            .to_str()
            .unwrap()
            .to_owned();
        chrono::DateTime::parse_from_rfc2822(&d)
            .unwrap()
            .timestamp()
    };
    let ok = api.send(reqwest::Method::GET, "/users.json", None).await;
    assert_eq!(ok.status(), 200);
    assert!((date_of(&ok) - api.sim.now()).abs() <= 2);
    let missing = api.send(reqwest::Method::GET, "/users/7.json", None).await;
    assert_eq!(missing.status(), 404);
    assert!((date_of(&missing) - api.sim.now()).abs() <= 2);
    let unrouted = api
        .send(reqwest::Method::GET, "/no_such_thing.json", None)
        .await;
    assert_eq!(unrouted.status(), 404);
    date_of(&unrouted);
    let refused = api
        .http
        .get(api.url("/users.json"))
        .basic_auth("ops@acme.example/token", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert!((date_of(&refused) - api.sim.now()).abs() <= 2);
}

#[tokio::test]
async fn offset_and_cursor_paging_give_absolute_urls_and_cover_every_record() {
    let api = Api::start().await;
    let seeded: BTreeSet<String> = api.sim.seed("users", 250).into_iter().collect();

    // Offset paging: `next_page` is an absolute URL to follow as given.
    let mut seen = BTreeSet::new();
    let mut next = Some(api.url("/users.json?per_page=100"));
    let mut pages = 0;
    while let Some(url) = next {
        let (status, page) = api.get(&url).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["count"], 250);
        for u in page["users"].as_array().unwrap() {
            seen.insert(u["id"].to_string());
        }
        next = page["next_page"].as_str().map(str::to_owned);
        if let Some(n) = &next {
            assert!(
                n.starts_with(&format!("http://{}/api/v2/users.json?", api.sim.addr)),
                "{n}"
            );
        }
        pages += 1;
    }
    assert_eq!((pages, &seen), (3, &seeded));

    // Cursor paging: `page[size]`, then `links.next` until `meta.has_more` is false.
    let mut seen = Vec::new();
    let mut url = api.url("/users.json?page[size]=100");
    loop {
        let (status, page) = api.get(&url).await;
        assert_eq!(status, 200, "{page}");
        assert!(
            page.get("next_page").is_none(),
            "cursor pages have no offsets"
        );
        for u in page["users"].as_array().unwrap() {
            seen.push(u["id"].to_string());
        }
        if page["meta"]["has_more"] == false {
            assert_eq!(page["users"].as_array().unwrap().len(), 50);
            assert_eq!(page["links"]["next"], Value::Null);
            break;
        }
        let after = page["meta"]["after_cursor"].as_str().unwrap();
        url = page["links"]["next"].as_str().unwrap().to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        assert!(url.contains(&format!("page[after]={after}")), "{url}");
    }
    assert_eq!(seen.len(), 250, "no record twice");
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), seeded);

    // Back from the second page with `page[before]`.
    let (_, first) = api.get("/users.json?page[size]=100").await;
    let (_, second) = api.get(first["links"]["next"].as_str().unwrap()).await;
    let (_, back) = api.get(second["links"]["prev"].as_str().unwrap()).await;
    assert_eq!(back["users"], first["users"]);

    // Organizations and tickets page the same way.
    api.sim.seed("organizations", 3);
    api.sim.seed("tickets", 3);
    for object in ["organizations", "tickets"] {
        let (status, page) = api.get(&format!("/{object}.json?page[size]=2")).await;
        assert_eq!(status, 200);
        assert_eq!(page[object].as_array().unwrap().len(), 2);
        assert_eq!(page["meta"]["has_more"], true);
    }

    for bad in [
        "/users.json?page[size]=101",
        "/users.json?page[after]=!!nope",
    ] {
        let (status, body) = api.get(bad).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["errors"][0]["code"], "InvalidPaginationParameter");
    }
}

#[tokio::test]
async fn single_records_are_created_read_and_updated() {
    use reqwest::Method;
    let api = Api::start().await;
    let (status, made) = api
        .call(
            Method::POST,
            "/users.json",
            Some(json!({"user": {"name": "Ada Lovelace", "email": "ada@example.com"}})),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let id = made["user"]["id"].as_u64().unwrap();
    assert_eq!(made["user"]["role"], "end-user");
    let (status, put) = api
        .call(
            Method::PUT,
            &format!("/users/{id}.json"),
            Some(json!({"user": {"phone": "+44 20 7946 0000"}})),
        )
        .await;
    assert_eq!(status, 200, "{put}");
    let (status, read) = api.get(&format!("/users/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(read["user"]["phone"], "+44 20 7946 0000");
    assert_eq!(read["user"]["name"], "Ada Lovelace");

    let (status, org) = api
        .call(
            Method::POST,
            "/organizations.json",
            Some(json!({"organization": {"name": "Acme"}})),
        )
        .await;
    assert_eq!(status, 201, "{org}");
    let org_id = org["organization"]["id"].as_u64().unwrap();
    let (status, _) = api
        .call(
            Method::PUT,
            &format!("/organizations/{org_id}.json"),
            Some(json!({"organization": {"notes": "key account"}})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, org) = api.get(&format!("/organizations/{org_id}.json")).await;
    assert_eq!(org["organization"]["notes"], "key account");
    let (status, dup) = api
        .call(
            Method::POST,
            "/organizations",
            Some(json!({"organization": {"name": "Acme"}})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(dup["error"], "RecordInvalid");
    assert_eq!(dup["details"]["name"][0]["error"], "DuplicateValue");

    let (status, ticket) = api
        .call(
            Method::POST,
            "/tickets.json",
            Some(json!({"ticket": {"subject": "Printer on fire", "comment": {"body": "help"}, "requester_id": id}})),
        )
        .await;
    assert_eq!(status, 201);
    let tid = ticket["ticket"]["id"].as_u64().unwrap();
    let (status, read) = api.get(&format!("/tickets/{tid}.json")).await;
    assert_eq!(status, 200);
    assert_eq!(read["ticket"]["subject"], "Printer on fire");

    for missing in ["/users/9.json", "/organizations/9", "/tickets/9.json"] {
        let (status, body) = api.get(missing).await;
        assert_eq!(status, 404, "{missing}");
        assert_eq!(body["error"], "RecordNotFound");
    }

    // users/create_many, which the issue saw answer 404.
    let results = api
        .job(
            Method::POST,
            "/users/create_many.json",
            json!({"users": [{"name": "Bo", "email": "bo@example.com"}, {"name": "Ada 2", "email": "ADA@example.com"}]}),
        )
        .await;
    assert!(results[0]["id"].as_u64().is_some(), "{results:?}");
    assert_eq!(results[1]["status"], "Failed");
    assert_eq!(api.users_with_email("ada@example.com").len(), 1);
}

#[tokio::test]
async fn the_search_api_finds_by_type_email_and_free_text_with_paging() {
    use reqwest::Method;
    let api = Api::start().await;
    for (name, email) in [
        ("Ada Lovelace", "ada@example.com"),
        ("Grace Hopper", "grace@navy.example"),
        ("Alan Turing", "alan@example.com"),
    ] {
        let (status, _) = api
            .call(
                Method::POST,
                "/users",
                Some(json!({"user": {"name": name, "email": email}})),
            )
            .await;
        assert_eq!(status, 201);
    }
    api.call(
        Method::POST,
        "/organizations",
        Some(json!({"organization": {"name": "Lovelace Labs"}})),
    )
    .await;

    let (status, found) = api
        .get("/search.json?query=type:user%20email:ADA@example.com")
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["count"], 1);
    assert_eq!(found["results"][0]["result_type"], "user");
    assert_eq!(found["results"][0]["name"], "Ada Lovelace");

    // Free text over users and organizations alike; `type:` narrows it.
    let (_, any) = api.get("/search.json?query=lovelace").await;
    let kinds: BTreeSet<String> = any["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result_type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["organization", "user"].map(String::from).into());
    let (_, users) = api.get("/search.json?query=type:user%20example.com").await;
    assert_eq!(users["count"], 2);

    // Offset paging with absolute `next_page`.
    let (_, first) = api.get("/search.json?query=type:user&per_page=2").await;
    assert_eq!(first["count"], 3);
    assert_eq!(first["results"].as_array().unwrap().len(), 2);
    let next = first["next_page"].as_str().unwrap();
    assert!(next.starts_with("http://127.0.0.1:"), "{next}");
    let (_, second) = api.get(next).await;
    assert_eq!(second["results"].as_array().unwrap().len(), 1);
    assert_eq!(second["next_page"], Value::Null);

    let (status, _) = api.get("/search.json?query=").await;
    assert_eq!(status, 400);
    // Offset paging only, and no page past the first 1,000 results.
    let (status, _) = api.get("/search.json?query=type:user&page[size]=2").await;
    assert_eq!(status, 400);
    let (status, body) = api.get("/search.json?query=type:user&page=11").await;
    assert_eq!(status, 422, "{body}");
}

/// Zendesk keeps one user per email: trimmed and in any case the same address. A create or
/// an update to an email another user holds is refused with 422 `RecordInvalid`; the
/// upserts update the user they find by external id or email, never making a second one.
#[tokio::test]
async fn emails_are_unique_and_upserts_update_the_user_they_find() {
    use reqwest::Method;
    let api = Api::start().await;
    let (_, ada) = api
        .call(
            Method::POST,
            "/users",
            Some(json!({"user": {"name": "Ada", "email": "Ada@Example.com "}})),
        )
        .await;
    let ada_id = ada["user"]["id"].as_u64().unwrap();
    assert_eq!(
        ada["user"]["email"], "ada@example.com",
        "stored trimmed, lower case"
    );

    let (status, dup) = api
        .call(
            Method::POST,
            "/users",
            Some(json!({"user": {"name": "Ada 2", "email": " ADA@example.com"}})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        dup,
        json!({"error": "RecordInvalid", "description": "Record validation errors",
            "details": {"email": [{"description": "Email: ADA@example.com is already being used by another user",
                "error": "DuplicateValue"}]}})
    );
    let (_, bo) = api
        .call(
            Method::POST,
            "/users",
            Some(json!({"user": {"name": "Bo", "email": "bo@example.com"}})),
        )
        .await;
    let bo_id = bo["user"]["id"].as_u64().unwrap();
    let (status, dup) = api
        .call(
            Method::PUT,
            &format!("/users/{bo_id}.json"),
            Some(json!({"user": {"email": "ada@example.com"}})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(dup["details"]["email"][0]["error"], "DuplicateValue");
    // A user may keep (or re-case) its own email.
    let (status, _) = api
        .call(
            Method::PUT,
            &format!("/users/{ada_id}.json"),
            Some(json!({"user": {"email": "ADA@example.com", "name": "Ada L."}})),
        )
        .await;
    assert_eq!(status, 200);
    let bulk_update = api
        .job(
            Method::PUT,
            "/users/update_many.json",
            json!({"users": [{"id": bo_id, "email": "ada@example.com"}]}),
        )
        .await;
    assert_eq!(bulk_update[0]["status"], "Failed", "{bulk_update:?}");
    assert_eq!(
        api.sim.record("users", &bo_id.to_string()).unwrap()["email"],
        "bo@example.com"
    );

    // One job: byte-identical emails, and the same address with spaces and in capitals.
    let results = api
        .job(
            Method::POST,
            "/users/create_or_update_many.json",
            json!({"users": [
                {"name": "Cy", "email": "cy@example.com", "external_id": "crm-1"},
                {"name": "Cy", "email": "cy@example.com", "external_id": "crm-2"},
                {"name": "Cy", "email": "cy@example.com"},
                {"name": "Cy", "email": "  Cy@Example.COM "},
                {"name": "Ada (CRM)", "email": " ada@EXAMPLE.com"},
            ]}),
        )
        .await;
    let statuses: Vec<&str> = results
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["Created", "Updated", "Updated", "Updated", "Updated"]
    );
    let cy = results[0]["id"].clone();
    assert!(results[..4].iter().all(|r| r["id"] == cy), "{results:?}");
    assert_eq!(results[4]["id"], json!(ada_id));

    // Across jobs: the same again, and the single create_or_update.
    let again = api
        .job(
            Method::POST,
            "/users/create_or_update_many",
            json!({"users": [{"name": "Cy C", "email": "cy@example.com"}, {"name": "Cy D", "email": "\tCY@example.com\n"}]}),
        )
        .await;
    assert!(
        again
            .iter()
            .all(|r| r["id"] == cy && r["status"] == "Updated"),
        "{again:?}"
    );
    let (status, one) = api
        .call(
            Method::POST,
            "/users/create_or_update.json",
            Some(json!({"user": {"name": "Cy E", "email": " cy@example.com"}})),
        )
        .await;
    assert_eq!(status, 200, "an update, not a create: {one}");
    assert_eq!(one["user"]["id"], cy);
    let (status, fresh) = api
        .call(
            Method::POST,
            "/users/create_or_update.json",
            Some(json!({"user": {"name": "Di", "email": "di@example.com"}})),
        )
        .await;
    assert_eq!(status, 201, "{fresh}");

    assert_eq!(api.users_with_email("cy@example.com"), [cy.to_string()]);
    assert_eq!(
        api.users_with_email("ada@example.com"),
        [ada_id.to_string()]
    );
    assert_eq!(api.sim.ids("users").len(), 4, "Ada, Bo, Cy and Di");
}

/// Zendesk refuses a user without a name, as node-zendesk showed the simulator did not:
/// a create (single, bulk or an upsert that finds no one) and an update that blanks it.
/// An upsert that finds the user needs no name.
#[tokio::test]
async fn a_user_needs_a_name() {
    use reqwest::Method;
    let api = Api::start().await;
    let refused = json!({"error": "RecordInvalid", "description": "Record validation errors",
        "details": {"name": [{"description": "Name: is too short (minimum one character)",
            "error": "ValueTooShort"}]}});
    for body in [
        json!({"user": {"email": "nameless@example.com"}}),
        json!({"user": {"name": "  ", "email": "blank@example.com"}}),
    ] {
        let (status, answer) = api.call(Method::POST, "/users.json", Some(body)).await;
        assert_eq!((status, answer), (422, refused.clone()));
    }
    let (status, answer) = api
        .call(
            Method::POST,
            "/users/create_or_update.json",
            Some(json!({"user": {"email": "nameless@example.com"}})),
        )
        .await;
    assert_eq!((status, answer), (422, refused.clone()));
    assert!(api.sim.ids("users").is_empty());

    let results = api
        .job(
            Method::POST,
            "/users/create_many.json",
            json!({"users": [{"name": "Ada", "email": "ada@example.com"}, {"email": "x@example.com"}]}),
        )
        .await;
    assert!(results[0]["id"].is_u64(), "{results:?}");
    assert_eq!(
        results[1],
        json!({"index": 1, "status": "Failed", "error": "RecordInvalid",
            "details": "Name: is too short (minimum one character)"})
    );
    let ada = results[0]["id"].as_u64().unwrap();
    let (status, found) = api
        .call(
            Method::POST,
            "/users/create_or_update.json",
            Some(json!({"user": {"email": "ADA@example.com", "notes": "found"}})),
        )
        .await;
    assert_eq!((status, found["user"]["id"].as_u64()), (200, Some(ada)));
    let (status, answer) = api
        .call(
            Method::PUT,
            &format!("/users/{ada}.json"),
            Some(json!({"user": {"name": ""}})),
        )
        .await;
    assert_eq!((status, answer), (422, refused));
    assert_eq!(
        api.sim.record("users", &ada.to_string()).unwrap()["name"],
        "Ada"
    );
}

/// `users/create_or_update` names the user it wrote in `Location`, created or updated.
#[tokio::test]
async fn create_or_update_answers_with_the_users_location() {
    let api = Api::start().await;
    for expected in [201, 200] {
        let r = api
            .send(
                reqwest::Method::POST,
                "/users/create_or_update.json",
                Some(json!({"user": {"name": "Ada", "external_id": "ada-1"}})),
            )
            .await;
        assert_eq!(r.status().as_u16(), expected);
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        let id = r.json::<Value>().await.unwrap()["user"]["id"].clone();
        assert_eq!(location, format!("/api/v2/users/{id}.json"));
    }
}

/// `GET /users/search`, which node-zendesk's `users.search` calls: the Search API's syntax
/// over users (free text matches part of a field) or one external id exactly, paged by
/// offset with absolute links that keep the query.
#[tokio::test]
async fn search_users_by_query_or_external_id_pages_by_offset() {
    use reqwest::Method;
    let api = Api::start().await;
    for i in 0..5 {
        let (status, _) = api
            .call(
                Method::POST,
                "/users",
                Some(json!({"user": {"name": format!("Jane Doe {i}"), "email": format!("jdoe{i}@example.com"),
                    "external_id": format!("Ext-{i}")}})),
            )
            .await;
        assert_eq!(status, 201);
    }
    api.call(
        Method::POST,
        "/users",
        Some(json!({"user": {"name": "Bo", "email": "bo@example.com"}})),
    )
    .await;
    api.call(
        Method::POST,
        "/organizations",
        Some(json!({"organization": {"name": "jdoe org"}})),
    )
    .await;

    let (status, first) = api.get("/users/search.json?query=jdoe&per_page=2").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["count"], 5, "users only, by part of the email");
    let mut seen: Vec<Value> = first["users"].as_array().unwrap().clone();
    let mut next = first["next_page"].clone();
    assert_eq!(first["previous_page"], Value::Null);
    while let Some(url) = next.as_str().map(str::to_owned) {
        assert!(
            url.starts_with(&format!("{}/users/search.json?", api.sim.base_url()))
                && url.contains("query=jdoe"),
            "{url}"
        );
        let (_, page) = api.get(&url).await;
        seen.extend(page["users"].as_array().unwrap().iter().cloned());
        next = page["next_page"].clone();
    }
    let ids: BTreeSet<String> = seen.iter().map(|u| u["id"].to_string()).collect();
    assert_eq!((seen.len(), ids.len()), (5, 5));

    let (_, one) = api.get("/users/search.json?external_id=Ext-3").await;
    assert_eq!(one["count"], 1);
    assert_eq!(one["users"][0]["name"], "Jane Doe 3");
    let (_, syntax) = api
        .get("/users/search.json?query=email:jdoe4@example.com")
        .await;
    assert_eq!(syntax["users"][0]["external_id"], "Ext-4");
    let (status, _) = api.get("/users/search.json").await;
    assert_eq!(status, 400);
}

/// An endpoint Zendesk has but the simulator does not is answered with Zendesk's 404 for
/// an unknown endpoint, and noted (and logged) once as not simulated.
#[tokio::test]
async fn an_endpoint_not_simulated_is_zendesks_404_noted_once() {
    let api = Api::start().await;
    for _ in 0..2 {
        let (status, body) = api.get("/views.json").await;
        assert_eq!(
            (status, body),
            (
                404,
                json!({"error": "InvalidEndpoint", "description": "Not found"})
            )
        );
    }
    let (status, _) = api.get("/macros/active.json").await;
    assert_eq!(status, 404);
    assert_eq!(
        api.sim.stats().not_simulated,
        ["GET /api/v2/macros/active", "GET /api/v2/views"]
            .map(String::from)
            .into()
    );
}

/// A method Zendesk has on a path the simulator routes (`DELETE /organizations/{id}`,
/// `DELETE /tickets/{id}`) is answered as an endpoint not simulated, as an unknown path is:
/// Zendesk's 404 body and one note, not a bare 405.
#[tokio::test]
async fn a_method_not_simulated_on_a_simulated_path_is_zendesks_404_noted_once() {
    use reqwest::Method;
    let api = Api::start().await;
    let org = api.sim.seed("organizations", 1).remove(0);
    let ticket = api.sim.seed("tickets", 1).remove(0);
    let invalid = json!({"error": "InvalidEndpoint", "description": "Not found"});
    for _ in 0..2 {
        let (status, body) = api
            .call(Method::DELETE, &format!("/organizations/{org}.json"), None)
            .await;
        assert_eq!((status, body), (404, invalid.clone()));
    }
    let (status, body) = api
        .call(Method::DELETE, &format!("/tickets/{ticket}"), None)
        .await;
    assert_eq!((status, body), (404, invalid.clone()));
    let (status, body) = api
        .call(Method::POST, "/organizations/create_or_update.json", None)
        .await;
    assert_eq!((status, body), (404, invalid));
    assert_eq!(
        api.sim.stats().not_simulated,
        [
            format!("DELETE /api/v2/organizations/{org}"),
            format!("DELETE /api/v2/tickets/{ticket}"),
            "POST /api/v2/organizations/create_or_update".to_owned(),
        ]
        .into()
    );
    // Nothing was deleted.
    assert!(api.sim.record("organizations", &org).unwrap()["deleted_at"].is_null());
    assert_eq!(
        api.sim.record("tickets", &ticket).unwrap()["status"],
        "open"
    );
}

/// `DELETE /users/{id}`: Zendesk keeps the user, inactive, and answers 200 with it.
#[tokio::test]
async fn a_deleted_user_is_kept_inactive() {
    use reqwest::Method;
    let api = Api::start().await;
    let id = api.sim.seed("users", 1).remove(0);
    let (status, body) = api
        .call(Method::DELETE, &format!("/users/{id}.json"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["id"].to_string(), id);
    assert_eq!(body["user"]["active"], false);
    let (status, read) = api.get(&format!("/users/{id}")).await;
    assert_eq!(
        (status, read["user"]["active"].clone()),
        (200, json!(false))
    );
    let (status, body) = api.call(Method::DELETE, "/users/9.json", None).await;
    assert_eq!(
        (status, body),
        (
            404,
            json!({"error": "RecordNotFound", "description": "Not found"})
        )
    );
    assert!(api.sim.stats().not_simulated.is_empty());
}

/// A name where a simulated collection takes an id (`/users/me`, `/tickets/recent`) is one
/// of Zendesk's endpoints, not a missing record: answered and noted as not simulated. The
/// counts are simulated.
#[tokio::test]
async fn names_under_a_collection_are_endpoints_not_ids() {
    use reqwest::Method;
    let api = Api::start().await;
    api.sim.seed("users", 3);
    api.sim.seed("organizations", 2);
    let invalid = json!({"error": "InvalidEndpoint", "description": "Not found"});
    for path in [
        "/users/me.json",
        "/users/me",
        "/organizations/autocomplete?name=ac",
        "/tickets/recent.json",
        "/users/count.json?role=agent",
    ] {
        let (status, body) = api.get(path).await;
        assert_eq!((status, body), (404, invalid.clone()), "{path}");
    }
    let (status, body) = api
        .call(
            Method::PUT,
            "/tickets/recent.json",
            Some(json!({"ticket": {"status": "solved"}})),
        )
        .await;
    assert_eq!((status, body), (404, invalid), "PUT /tickets/recent");
    assert_eq!(
        api.sim.stats().not_simulated,
        [
            "GET /api/v2/organizations/autocomplete",
            "GET /api/v2/tickets/recent",
            "GET /api/v2/users/count?role",
            "GET /api/v2/users/me",
            "PUT /api/v2/tickets/recent",
        ]
        .map(String::from)
        .into()
    );

    let now = api.sim.now();
    for (path, n) in [
        ("/users/count.json", 3),
        ("/organizations/count", 2),
        ("/tickets/count.json", 0),
    ] {
        let (status, body) = api.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body["count"]["value"], n, "{path}: {body}");
        let refreshed = body["count"]["refreshed_at"].as_str().unwrap();
        let at = chrono::DateTime::parse_from_rfc3339(refreshed).unwrap();
        assert!((at.timestamp() - now).abs() <= 2, "{path}: {body}");
    }
}

/// An organization's name and external id stay unique on an update, single or bulk, as on
/// a create: the same 422 `RecordInvalid` (and `Failed` result), and a name given up by a
/// rename is free again.
#[tokio::test]
async fn organization_names_and_external_ids_stay_unique_on_update() {
    use reqwest::Method;
    let api = Api::start().await;
    let mut ids = Vec::new();
    for (name, external) in [("Acme", "a-1"), ("Beta", "b-1")] {
        let (status, org) = api
            .call(
                Method::POST,
                "/organizations",
                Some(json!({"organization": {"name": name, "external_id": external}})),
            )
            .await;
        assert_eq!(status, 201, "{org}");
        ids.push(org["organization"]["id"].as_u64().unwrap());
    }
    let (acme, beta) = (ids[0], ids[1]);
    let put = |id: u64, fields: Value| {
        let api = &api;
        async move {
            api.call(
                Method::PUT,
                &format!("/organizations/{id}.json"),
                Some(json!({ "organization": fields })),
            )
            .await
        }
    };
    let refusal = |field: &str, error: &str, description: &str| {
        json!({"error": "RecordInvalid", "description": "Record validation errors",
            "details": {field: [{"description": description, "error": error}]}})
    };
    assert_eq!(
        put(beta, json!({"name": " acme "})).await,
        (
            422,
            refusal(
                "name",
                "DuplicateValue",
                "Name: acme has already been taken"
            )
        )
    );
    assert_eq!(
        put(beta, json!({"external_id": "A-1"})).await,
        (
            422,
            refusal(
                "external_id",
                "DuplicateValue",
                "External: has already been taken"
            )
        )
    );
    assert_eq!(
        put(beta, json!({"name": ""})).await,
        (422, refusal("name", "BlankValue", "Name: cannot be blank"))
    );
    // Its own name and external id are no conflict.
    let (status, same) = put(acme, json!({"name": "Acme", "external_id": "a-1"})).await;
    assert_eq!(status, 200, "{same}");
    assert_eq!(
        api.sim.record("organizations", &beta.to_string()).unwrap()["name"],
        "Beta"
    );

    let results = api
        .job(
            Method::PUT,
            "/organizations/update_many.json",
            json!({"organizations": [
                {"id": beta, "name": "ACME"},
                {"id": acme, "external_id": "b-1"},
                {"id": acme, "name": "Alpha"},
            ]}),
        )
        .await;
    assert_eq!(results[0]["status"], "Failed", "{results:?}");
    assert_eq!(results[0]["error"], "RecordInvalid");
    assert_eq!(results[0]["details"], "Name: ACME has already been taken");
    assert_eq!(results[1]["status"], "Failed", "{results:?}");
    assert_eq!(results[1]["details"], "External: has already been taken");
    assert_eq!(results[2]["status"], "Updated", "{results:?}");
    let beta_now = api.sim.record("organizations", &beta.to_string()).unwrap();
    assert_eq!(
        (beta_now["name"].clone(), beta_now["external_id"].clone()),
        (json!("Beta"), json!("b-1"))
    );

    // "Acme" was given up by the rename: a new organization may take it.
    let (status, reused) = api
        .call(
            Method::POST,
            "/organizations",
            Some(json!({"organization": {"name": "Acme"}})),
        )
        .await;
    assert_eq!(status, 201, "{reused}");
}

/// `GET /search/export`, node-zendesk's `search.exportResults`: one type given by
/// `filter[type]`, oldest first, by cursor with absolute `links.next` until `has_more` is
/// false; no `count`, no `prev`.
#[tokio::test]
async fn search_export_pages_one_type_by_cursor() {
    use reqwest::Method;
    let api = Api::start().await;
    let mut made = Vec::new();
    for i in 0..5 {
        let (_, u) = api
            .call(
                Method::POST,
                "/users",
                Some(json!({"user": {"name": format!("Vip {i}"), "email": format!("vip{i}@example.com")}})),
            )
            .await;
        made.push(u["user"]["id"].clone());
    }
    api.call(
        Method::POST,
        "/organizations",
        Some(json!({"organization": {"name": "Vip org"}})),
    )
    .await;

    let (status, page) = api
        .get("/search/export.json?query=vip&filter[type]=user&page[size]=2")
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["count"], Value::Null);
    let mut seen = Vec::new();
    let mut page = page;
    loop {
        assert_eq!(page["links"]["prev"], Value::Null);
        for r in page["results"].as_array().unwrap() {
            assert_eq!(r["result_type"], "user");
            seen.push(r["id"].clone());
        }
        if page["meta"]["has_more"] == false {
            assert_eq!(page["links"]["next"], Value::Null);
            break;
        }
        let next = page["links"]["next"].as_str().unwrap().to_owned();
        assert!(next.starts_with(&api.sim.base_url()), "{next}");
        page = api.get(&next).await.1;
    }
    assert_eq!(seen, made, "every user once, oldest first");

    for refused in [
        "/search/export.json?query=vip",
        "/search/export.json?query=type:user%20vip&filter[type]=user",
        "/search/export.json?query=vip&filter[type]=user&page[size]=1001",
        "/search/export.json?filter[type]=user",
    ] {
        assert_eq!(api.get(refused).await.0, 400, "{refused}");
    }
}
