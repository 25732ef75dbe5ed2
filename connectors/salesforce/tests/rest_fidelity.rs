//! The simulator answers plain REST calls as Salesforce does (issue 24): what a user's own
//! script or a vendor client (simple-salesforce) sends, over real HTTP on loopback.
// Tests: a panic here is a failed test, not a crashed daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use revsync_salesforce::sim::{Sim, CLIENT_ID, CLIENT_SECRET, EXTERNAL_ID_FIELD, REFRESH_TOKEN};
use serde_json::{json, Value};

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

struct Answer {
    status: u16,
    body: Value,
    raw: String,
}

impl Api {
    async fn login(sim: &Sim) -> Self {
        let http = reqwest::Client::new();
        let form = format!(
            "grant_type=refresh_token&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}&refresh_token={REFRESH_TOKEN}"
        );
        let r = http
            .post(sim.token_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap();
        let t: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        Self {
            http,
            base: sim.url(),
            token: t["access_token"].as_str().unwrap().to_owned(),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let url = if path.starts_with("/services") {
            format!("{}{path}", self.base)
        } else {
            format!("{}/services/data/v66.0{path}", self.base)
        };
        let mut rb = self
            .http
            .request(method.parse().unwrap(), url)
            .bearer_auth(&self.token);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&b).unwrap());
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let raw = r.text().await.unwrap();
        let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
        Answer { status, body, raw }
    }

    async fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None, &[]).await
    }

    async fn query(&self, soql: &str) -> Answer {
        let q: String = soql
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        self.get(&format!("/query?q={q}")).await
    }
}

fn ids(a: &Answer) -> Vec<String> {
    a.body["records"]
        .as_array()
        .unwrap_or_else(|| panic!("records in {}", a.raw))
        .iter()
        .map(|r| r["Id"].as_str().unwrap().to_owned())
        .collect()
}

/// `/sobjects/{SObject}/updated` and `/deleted` are resources the simulator does not have,
/// not record ids: Salesforce's 404 for an unknown resource, and noted as not simulated
/// (once each), while an id no record has stays a plain missing record.
#[tokio::test]
async fn updated_and_deleted_are_noted_as_not_simulated_not_taken_for_ids() {
    let sim = Sim::start().await.unwrap();
    let api = Api::login(&sim).await;
    let not_found =
        json!([{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]);
    for _ in 0..2 {
        for path in [
            "/sobjects/Contact/updated/?start=2024-01-01T00:00:00Z&end=2024-01-02T00:00:00Z",
            "/sobjects/Account/deleted?start=2024-01-01T00:00:00Z&end=2024-01-02T00:00:00Z",
        ] {
            let a = api.get(path).await;
            assert_eq!((a.status, a.body), (404, not_found.clone()), "{path}");
        }
    }
    let a = api.get("/sobjects/Contact/003000000000000AAA").await;
    assert_eq!((a.status, a.body), (404, not_found));
    assert_eq!(
        sim.with(|s| s.not_simulated.clone()),
        [
            "GET /services/data/v66.0/sobjects/Account/deleted",
            "GET /services/data/v66.0/sobjects/Contact/updated",
        ]
        .map(String::from)
        .into()
    );
}

#[tokio::test]
async fn urls_with_a_trailing_slash_are_accepted_and_unknown_ones_answer_not_found() {
    let sim = Sim::start().await.unwrap();
    sim.seed("Contact", 2);
    let api = Api::login(&sim).await;

    let a = api.get("/query/?q=SELECT+Id+FROM+Contact").await;
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(a.body["totalSize"], 2);

    let made = api
        .call(
            "POST",
            "/sobjects/Contact/",
            Some(json!({"LastName": "Slash", "Email": "slash@example.com"})),
            &[],
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.raw);
    let id = made.body["id"].as_str().unwrap();
    let read = api.get(&format!("/sobjects/Contact/{id}/")).await;
    assert_eq!(read.status, 200, "{}", read.raw);
    assert_eq!(read.body["LastName"], "Slash");
    assert_eq!(api.get("/sobjects/Contact/describe/").await.status, 200);

    for path in ["/sobjects/Nope__x/", "/nothing/here", "/services/other"] {
        let a = api.get(path).await;
        assert_eq!(a.status, 404, "{path}");
        assert_eq!(
            a.body,
            json!([{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]),
            "{path}: {}",
            a.raw
        );
    }
    let a = api.call("PUT", "/sobjects/Contact/", None, &[]).await;
    assert_eq!(a.status, 405);
    assert_eq!(a.body[0]["errorCode"], "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn single_record_create_read_update_delete_answer_as_salesforce() {
    let sim = Sim::start().await.unwrap();
    let api = Api::login(&sim).await;

    let made = api
        .call(
            "POST",
            "/sobjects/Contact",
            Some(json!({"FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@example.com"})),
            &[],
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.raw);
    let id = made.body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("003"), "{id}");
    assert_eq!(made.body, json!({"id": id, "success": true, "errors": []}));

    let read = api.get(&format!("/sobjects/Contact/{id}")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["Id"], id.as_str());
    assert_eq!(read.body["Email"], "ada@example.com");
    assert_eq!(
        read.body["Phone"],
        Value::Null,
        "every field, null when unset"
    );
    assert_eq!(read.body["attributes"]["type"], "Contact");
    assert_eq!(
        read.body["attributes"]["url"],
        format!("/services/data/v66.0/sobjects/Contact/{id}")
    );
    let some = api
        .get(&format!("/sobjects/Contact/{id}?fields=Email"))
        .await;
    assert_eq!(some.body["Email"], "ada@example.com");
    assert!(some.body.get("Phone").is_none(), "{}", some.raw);

    let upd = api
        .call(
            "PATCH",
            &format!("/sobjects/Contact/{id}"),
            Some(json!({"Title": "Countess"})),
            &[],
        )
        .await;
    assert_eq!((upd.status, upd.raw.as_str()), (204, ""));
    assert_eq!(sim.record(&id).unwrap().fields["Title"], "Countess");

    // The collection routes' validation, in the single-record error shape.
    let missing = api
        .call(
            "POST",
            "/sobjects/Contact",
            Some(json!({"FirstName": "X"})),
            &[],
        )
        .await;
    assert_eq!(missing.status, 400);
    assert_eq!(
        missing.body,
        json!([{"message": "Required fields are missing: [LastName]", "errorCode": "REQUIRED_FIELD_MISSING", "fields": ["LastName"]}])
    );
    let dup = api
        .call(
            "POST",
            "/sobjects/Contact",
            Some(json!({"LastName": "Again", "Email": "ADA@example.com"})),
            &[],
        )
        .await;
    assert_eq!(dup.status, 400);
    assert_eq!(dup.body[0]["errorCode"], "DUPLICATES_DETECTED");
    let blank = api
        .call(
            "PATCH",
            &format!("/sobjects/Contact/{id}"),
            Some(json!({"LastName": ""})),
            &[],
        )
        .await;
    assert_eq!(blank.status, 400);
    assert_eq!(blank.body[0]["errorCode"], "REQUIRED_FIELD_MISSING");
    // Text longer than describe's `length` (Title: 128) is refused, nothing saved.
    let long = "T".repeat(129);
    let too_long = api
        .call(
            "PATCH",
            &format!("/sobjects/Contact/{id}"),
            Some(json!({"Title": long})),
            &[],
        )
        .await;
    assert_eq!(too_long.status, 400);
    assert_eq!(too_long.body[0]["errorCode"], "STRING_TOO_LONG");
    assert_eq!(too_long.body[0]["fields"], json!(["Title"]));
    assert_eq!(sim.record(&id).unwrap().fields["Title"], "Countess");
    let fits = api
        .call(
            "PATCH",
            &format!("/sobjects/Contact/{id}"),
            Some(json!({"Title": "T".repeat(128)})),
            &[],
        )
        .await;
    assert_eq!(fits.status, 204);
    let junk = api
        .call("POST", "/sobjects/Contact", Some(json!([1, 2])), &[])
        .await;
    assert_eq!(junk.status, 400);
    assert_eq!(junk.body[0]["errorCode"], "JSON_PARSER_ERROR");

    let gone = api
        .call("DELETE", &format!("/sobjects/Contact/{id}"), None, &[])
        .await;
    assert_eq!((gone.status, gone.raw.as_str()), (204, ""));
    let again = api.get(&format!("/sobjects/Contact/{id}")).await;
    assert_eq!(again.status, 404);
    assert_eq!(again.body[0]["errorCode"], "ENTITY_IS_DELETED");
    let none = api.get("/sobjects/Contact/003000000009999AAA").await;
    assert_eq!(none.status, 404);
    assert_eq!(none.body[0]["errorCode"], "NOT_FOUND");
    // An Account's id is not a Contact.
    let acct = sim.seed("Account", 1).remove(0);
    assert_eq!(
        api.get(&format!("/sobjects/Contact/{acct}")).await.status,
        404
    );
}

#[tokio::test]
async fn upsert_and_read_by_external_id_follow_the_api_version() {
    let sim = Sim::start().await.unwrap();
    let api = Api::login(&sim).await;
    let path = format!("/sobjects/Contact/{EXTERNAL_ID_FIELD}/ext-1");

    let made = api
        .call("PATCH", &path, Some(json!({"LastName": "Hopper"})), &[])
        .await;
    assert_eq!(made.status, 201, "{}", made.raw);
    let id = made.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        made.body,
        json!({"id": id, "success": true, "errors": [], "created": true})
    );
    assert_eq!(sim.record(&id).unwrap().fields[EXTERNAL_ID_FIELD], "ext-1");

    let upd = api
        .call("PATCH", &path, Some(json!({"Title": "Rear Admiral"})), &[])
        .await;
    assert_eq!(upd.status, 200, "{}", upd.raw);
    assert_eq!(
        upd.body,
        json!({"id": id, "success": true, "errors": [], "created": false})
    );
    // Before v46.0 an update by external id answered 204 and no body.
    let old = api
        .call(
            "PATCH",
            &format!("/services/data/v45.0/sobjects/Contact/{EXTERNAL_ID_FIELD}/ext-1"),
            Some(json!({"Title": "Commodore"})),
            &[],
        )
        .await;
    assert_eq!((old.status, old.raw.as_str()), (204, ""));

    let read = api.get(&path).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["Id"], id.as_str());
    assert_eq!(read.body["Title"], "Commodore");

    let only = api
        .call(
            "PATCH",
            &format!("/sobjects/Contact/{EXTERNAL_ID_FIELD}/ext-2?updateOnly=true"),
            Some(json!({"LastName": "Nobody"})),
            &[],
        )
        .await;
    assert_eq!(only.status, 404);
    let invalid = api
        .call(
            "PATCH",
            &format!("/sobjects/Contact/{EXTERNAL_ID_FIELD}/ext-3"),
            Some(json!({"FirstName": "No last name"})),
            &[],
        )
        .await;
    assert_eq!(invalid.status, 400);
    assert_eq!(invalid.body[0]["errorCode"], "REQUIRED_FIELD_MISSING");
    let field = api.get("/sobjects/Contact/Nickname__c/x").await;
    assert_eq!(field.status, 404);
    assert_eq!(
        field.body[0]["message"],
        "Provided external ID field does not exist or is not accessible: Nickname__c"
    );

    // Two records holding one value: 300 and the candidates, nothing written.
    let twin = sim.seed("Contact", 1).remove(0);
    sim.with(|s| {
        s.records
            .get_mut(&twin)
            .unwrap()
            .fields
            .insert(EXTERNAL_ID_FIELD.into(), json!("ext-1"));
    });
    let many = api
        .call("PATCH", &path, Some(json!({"Title": "X"})), &[])
        .await;
    assert_eq!(many.status, 300);
    assert_eq!(many.body.as_array().unwrap().len(), 2);
    assert_eq!(sim.record(&id).unwrap().fields["Title"], "Commodore");

    let gone = api
        .call("DELETE", &format!("/sobjects/Contact/Id/{twin}"), None, &[])
        .await;
    assert_eq!(gone.status, 204);
    assert_eq!(api.get(&path).await.status, 200, "one match left");
}

#[tokio::test]
async fn soql_where_like_in_order_limit_offset() {
    let sim = Sim::start().await.unwrap();
    let api = Api::login(&sim).await;
    let mut made = Vec::new();
    for (name, email, amount) in [
        ("Abe", Some("ab1@example.com"), 10),
        ("Bea", Some("ab2@example.com"), 20),
        ("Cal", Some("cd@example.com"), 30),
        ("Dot", None, 40),
    ] {
        let mut f = json!({"LastName": name, "Company": "Acme", "Lead_Score__c": amount});
        if let Some(e) = email {
            f["Email"] = json!(e);
        }
        let a = api.call("POST", "/sobjects/Lead", Some(f), &[]).await;
        assert_eq!(a.status, 201, "{}", a.raw);
        made.push(a.body["id"].as_str().unwrap().to_owned());
    }
    let [abe, bea, cal, dot] = [&made[0], &made[1], &made[2], &made[3]];

    let q = |w: &str| format!("SELECT Id, LastName, Email FROM Lead {w}");
    let cases: Vec<(String, Vec<&String>)> = vec![
        (q("WHERE Email = 'cd@example.com'"), vec![cal]),
        (q("WHERE email = 'CD@EXAMPLE.COM'"), vec![cal]),
        (
            q("WHERE Email LIKE 'ab%' ORDER BY LastName"),
            vec![abe, bea],
        ),
        (
            q("WHERE Email != 'cd@example.com' ORDER BY LastName"),
            vec![abe, bea, dot],
        ),
        (q("WHERE Email = null"), vec![dot]),
        (
            q("WHERE Lead_Score__c > 15 AND Lead_Score__c < 40 ORDER BY Lead_Score__c DESC"),
            vec![cal, bea],
        ),
        (
            q("WHERE Lead_Score__c >= 20 AND (Email LIKE '%cd%' OR Email = null) ORDER BY LastName"),
            vec![cal, dot],
        ),
        (
            q("WHERE LastName IN ('Abe', 'Dot') ORDER BY LastName DESC"),
            vec![dot, abe],
        ),
        (
            q("WHERE LastName NOT IN ('Abe', 'Dot') ORDER BY LastName"),
            vec![bea, cal],
        ),
        (q("ORDER BY Email"), vec![dot, abe, bea, cal]),
        (q("ORDER BY Email NULLS LAST"), vec![abe, bea, cal, dot]),
        (q("ORDER BY LastName LIMIT 2 OFFSET 1"), vec![bea, cal]),
    ];
    for (soql, want) in cases {
        let a = api.query(&soql).await;
        assert_eq!(a.status, 200, "{soql}: {}", a.raw);
        let want: Vec<String> = want.into_iter().cloned().collect();
        assert_eq!(ids(&a), want, "{soql}");
        assert_eq!(a.body["totalSize"], want.len(), "{soql}");
    }

    for bad in [
        "SELECT Id FROM Contact WHERE Email = 'a' AND LastName = 'b' OR LastName = 'c'",
        "SELECT Id FROM Contact WHERE Email CONTAINS 'a'",
        "SELECT Id FROM Contact WHERE",
        "SELECT Id, FROM Contact",
    ] {
        let a = api.query(bad).await;
        assert_eq!(a.status, 400, "{bad}");
        assert_eq!(a.body[0]["errorCode"], "MALFORMED_QUERY", "{bad}");
    }
    // A column the object does not have, anywhere in the query: INVALID_FIELD, with
    // Salesforce's pointer at the column.
    for (soql, column) in [
        ("SELECT Id, Amount__c FROM Lead", 12),
        ("SELECT Id FROM Lead WHERE Nope = 'x'", 27),
        ("SELECT Id FROM Lead ORDER BY Nope", 30),
    ] {
        let a = api.query(soql).await;
        assert_eq!(a.status, 400, "{soql}: {}", a.raw);
        assert_eq!(a.body[0]["errorCode"], "INVALID_FIELD", "{soql}");
        let message = a.body[0]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!(
                "\n{soql}\n{}^\nERROR at Row:1:Column:{column}\nNo such column '",
                " ".repeat(column - 1)
            )),
            "{soql}: {message:?}"
        );
        assert!(message.contains("on entity 'Lead'"), "{message}");
    }
    let a = api.query("SELECT Id FROM Widget__c").await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body[0]["errorCode"], "INVALID_TYPE");
}

#[tokio::test]
async fn batch_size_header_and_the_callers_api_version_shape_the_pages() {
    let sim = Sim::start().await.unwrap();
    sim.seed("Account", 450);
    let api = Api::login(&sim).await;
    let first = api
        .call(
            "GET",
            "/services/data/v58.0/query?q=SELECT+Id+FROM+Account",
            None,
            &[("Sforce-Query-Options", "batchSize=200")],
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.raw);
    assert_eq!(first.body["totalSize"], 450);
    assert_eq!(first.body["done"], false);
    assert_eq!(first.body["records"].as_array().unwrap().len(), 200);
    let rec = &first.body["records"][0];
    assert_eq!(
        rec["attributes"]["url"],
        format!(
            "/services/data/v58.0/sobjects/Account/{}",
            rec["Id"].as_str().unwrap()
        )
    );
    let next = first.body["nextRecordsUrl"].as_str().unwrap().to_owned();
    assert!(next.starts_with("/services/data/v58.0/query/"), "{next}");

    let mut seen: Vec<String> = ids(&first);
    let mut next = Some(next);
    let mut pages = 1;
    while let Some(url) = next {
        let a = api.get(&url).await;
        assert_eq!(a.status, 200, "{}", a.raw);
        assert!(a.body["records"].as_array().unwrap().len() <= 200);
        seen.extend(ids(&a));
        next = a.body["nextRecordsUrl"].as_str().map(str::to_owned);
        if let Some(n) = &next {
            assert!(n.starts_with("/services/data/v58.0/query/"), "{n}");
        }
        pages += 1;
    }
    assert_eq!(pages, 3);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 450);

    // Below Salesforce's minimum of 200, the minimum; without the header, up to 2,000.
    let small = api
        .call(
            "GET",
            "/query?q=SELECT+Id+FROM+Account",
            None,
            &[("Sforce-Query-Options", "batchSize=50")],
        )
        .await;
    assert_eq!(small.body["records"].as_array().unwrap().len(), 200);
    let all = api.query("SELECT Id FROM Account").await;
    assert_eq!(all.body["records"].as_array().unwrap().len(), 450);
    assert_eq!(all.body["done"], true);
}

#[tokio::test]
async fn writes_naming_unknown_or_read_only_fields_are_refused_as_salesforce_does() {
    let sim = Sim::start().await.unwrap();
    let api = Api::login(&sim).await;
    let id = sim.seed("Contact", 1).remove(0);
    let no_such = json!([{"message": "No such column 'Bogus__c' on sobject of type Contact", "errorCode": "INVALID_FIELD"}]);

    // Single-record create, update and upsert: 400 INVALID_FIELD, nothing written.
    for (method, path) in [
        ("POST", "/sobjects/Contact".to_owned()),
        ("PATCH", format!("/sobjects/Contact/{id}")),
        (
            "PATCH",
            format!("/sobjects/Contact/{EXTERNAL_ID_FIELD}/k-1"),
        ),
    ] {
        let a = api
            .call(
                method,
                &path,
                Some(json!({"LastName": "X", "Bogus__c": 1})),
                &[],
            )
            .await;
        assert_eq!((a.status, &a.body), (400, &no_such), "{method} {path}");
    }
    assert_eq!(sim.ids("Contact").len(), 1);
    assert!(!sim.record(&id).unwrap().fields.contains_key("Bogus__c"));
    // Field names ignore case, as everywhere in the API.
    let a = api
        .call(
            "PATCH",
            &format!("/sobjects/Contact/{id}"),
            Some(json!({"title": "T"})),
            &[],
        )
        .await;
    assert_eq!(a.status, 204, "{}", a.raw);

    // A field the object has but a write may not set.
    let a = api
        .call(
            "PATCH",
            &format!("/sobjects/Contact/{id}"),
            Some(json!({"Name": "Full", "SystemModstamp": "x"})),
            &[],
        )
        .await;
    assert_eq!(a.status, 400, "{}", a.raw);
    assert_eq!(a.body[0]["errorCode"], "INVALID_FIELD_FOR_INSERT_UPDATE");
    assert_eq!(a.body[0]["fields"], json!(["Name", "SystemModstamp"]));
    assert!(a.body[0]["message"]
        .as_str()
        .unwrap()
        .starts_with("Unable to create/update fields: Name, SystemModstamp."));
    // Opportunity.ContactId is set on create only.
    let opp = json!({"Name": "D", "StageName": "Prospecting", "CloseDate": "2024-12-31", "ContactId": id});
    let made = api
        .call("POST", "/sobjects/Opportunity", Some(opp), &[])
        .await;
    assert_eq!(made.status, 201, "{}", made.raw);
    let oid = made.body["id"].as_str().unwrap();
    let a = api
        .call(
            "PATCH",
            &format!("/sobjects/Opportunity/{oid}"),
            Some(json!({"ContactId": id})),
            &[],
        )
        .await;
    assert_eq!(
        a.body[0]["errorCode"], "INVALID_FIELD_FOR_INSERT_UPDATE",
        "{}",
        a.raw
    );

    // Collections: an unknown field fails the whole request before any record is saved;
    // a SaveResult has no `created`, an UpsertResult has.
    let records = json!([
        {"attributes": {"type": "Contact"}, "LastName": "Fine"},
        {"attributes": {"type": "Contact"}, "LastName": "Bad", "Bogus__c": 1},
    ]);
    let a = api
        .call(
            "POST",
            "/composite/sobjects",
            Some(json!({"allOrNone": false, "records": records})),
            &[],
        )
        .await;
    assert_eq!((a.status, &a.body), (400, &no_such));
    assert_eq!(sim.ids("Contact").len(), 1, "nothing saved");
    let a = api
        .call(
            "PATCH",
            "/composite/sobjects",
            Some(json!({"records": [{"id": id, "Bogus__c": 1}]})),
            &[],
        )
        .await;
    assert_eq!((a.status, &a.body), (400, &no_such));
    let a = api
        .call(
            "POST",
            "/composite/sobjects",
            Some(json!({"records": [{"attributes": {"type": "Contact"}, "LastName": "Saved"}]})),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(
        a.body[0].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["errors", "id", "success"]
    );
    let a = api
        .call(
            "PATCH",
            &format!("/composite/sobjects/Contact/{EXTERNAL_ID_FIELD}"),
            Some(json!({"records": [{"attributes": {"type": "Contact"}, "LastName": "U", EXTERNAL_ID_FIELD: "u-1"}]})),
            &[],
        )
        .await;
    assert_eq!(a.body[0]["created"], true, "{}", a.raw);
}

#[tokio::test]
async fn all_or_none_collections_roll_back_every_record_when_one_fails() {
    let sim = Sim::start().await.unwrap();
    let api = Api::login(&sim).await;
    let kept = sim.seed("Contact", 1).remove(0);
    let records = json!([
        {"attributes": {"type": "Contact"}, "LastName": "Good"},
        {"attributes": {"type": "Contact"}, "FirstName": "No last name"},
    ]);
    let a = api
        .call(
            "POST",
            "/composite/sobjects",
            Some(json!({"allOrNone": true, "records": records})),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(
        a.body,
        json!([
            {"success": false, "errors": [{"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": "Record rolled back because not all records were valid and the request was using AllOrNone header", "fields": []}]},
            {"success": false, "errors": [{"statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [LastName]", "fields": ["LastName"]}]},
        ])
    );
    assert_eq!(sim.ids("Contact").len(), 1, "the good record is not saved");

    // Updates and deletes too; without allOrNone the good ones stand.
    let both = json!({"allOrNone": true, "records": [{"id": kept, "Title": "New"}, {"id": "003000000009999AAA", "Title": "x"}]});
    let a = api
        .call("PATCH", "/composite/sobjects", Some(both), &[])
        .await;
    assert_eq!(
        a.body[0]["errors"][0]["statusCode"],
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    );
    assert!(!sim.record(&kept).unwrap().fields.contains_key("Title"));
    let a = api
        .call(
            "DELETE",
            &format!("/composite/sobjects?ids={kept},003000000009999AAA&allOrNone=true"),
            None,
            &[],
        )
        .await;
    assert_eq!(a.body[0]["success"], false, "{}", a.raw);
    assert!(!sim.record(&kept).unwrap().deleted);
    let a = api
        .call(
            "DELETE",
            &format!("/composite/sobjects?ids={kept},003000000009999AAA&allOrNone=false"),
            None,
            &[],
        )
        .await;
    assert_eq!(a.body[0]["success"], true, "{}", a.raw);
    assert!(sim.record(&kept).unwrap().deleted);
}
