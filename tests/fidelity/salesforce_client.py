"""Fidelity client for the Salesforce simulator (issue 24): simple-salesforce, as a user runs it.

The session comes the way a user's script gets one: the OAuth refresh_token grant at the
token URL `revsync sim salesforce` prints, then `Salesforce(instance_url, session_id)`.
Every case asserts what the real REST API would give simple-salesforce: status, exception
class, the `[{"message","errorCode"}]` error array, paging with `nextRecordsUrl`, and the
403 REQUEST_LIMIT_EXCEEDED that is Salesforce's answer to a spent daily allocation (REST
has no 429).
"""

import uuid

import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from simproc import Sim, check, ok

API_VERSION = "62.0"
RUN = uuid.uuid4().hex[:8]


class LoopbackHttp(HTTPAdapter):
    """simple-salesforce builds every URL as `https://{sf_instance}/...` (api.py: base_url,
    SFType.base_url, query_more's nextRecordsUrl), and neither `instance_url`'s scheme nor
    `proxies` changes that (an https proxy would need CONNECT). The sim speaks plain HTTP on
    loopback, so this adapter, mounted on the session the library is given (its documented
    `session=` argument), sends exactly the request the library built over http:// instead:
    paths, headers and bodies are the library's own, only the transport differs, as behind a
    TLS-terminating proxy."""

    def send(self, request, **kwargs):
        if request.url.startswith("https://"):
            request.url = "http://" + request.url[len("https://"):]
        return super().send(request, **kwargs)


def connect(sim):
    """A Salesforce session as a user makes one: refresh_token grant, then instance_url."""
    r = requests.post(
        sim.value("token_url"),
        data={
            "grant_type": "refresh_token",
            "client_id": sim.value("client_id"),
            "client_secret": sim.value("client_secret"),
            "refresh_token": sim.value("refresh_token"),
        },
        timeout=10,
    )
    check(r.status_code == 200, f"token grant: Salesforce answers 200, got {r.status_code} {r.text}")
    tok = r.json()
    for k in ("access_token", "instance_url", "id", "token_type", "issued_at", "signature"):
        check(k in tok, f"token response has `{k}` (Salesforce OAuth token response): {tok}")
    check(tok["token_type"] == "Bearer", f"token_type is Bearer: {tok}")
    host = tok["instance_url"].split("://", 1)[1].rstrip("/")
    session = requests.Session()
    session.mount(f"https://{host}/", LoopbackHttp(max_retries=0))
    return Salesforce(
        instance_url=tok["instance_url"],
        session_id=tok["access_token"],
        version=API_VERSION,
        session=session,
    )


def error_body(exc):
    """The error array simple-salesforce exposes as `content` (decoded JSON)."""
    body = exc.content
    check(
        isinstance(body, list) and body and all("message" in e and "errorCode" in e for e in body),
        f"Salesforce errors are a JSON array of {{message, errorCode}}: got {body!r}",
    )
    return body


def expect(exc_type, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        return e
    except Exception as e:  # noqa: BLE001 - the wrong class is the finding
        raise AssertionError(f"expected {exc_type.__name__}, got {type(e).__name__}: {e}") from e
    raise AssertionError(f"expected {exc_type.__name__}, the call succeeded")


def main():
    sim = Sim("salesforce")
    ext_field = sim.value("external_id_field")
    sf = connect(sim)

    # create (single): 201 {"id","success":true,"errors":[]}
    acct = sf.Account.create({"Name": f"Fidelity Account {RUN}", "Website": "https://example.com"})
    check(acct.get("success") is True and acct.get("errors") == [], f"create answers success/errors: {acct}")
    check(str(acct["id"]).startswith("001") and len(acct["id"]) == 18, f"Account ids are 18 chars, 001…: {acct}")
    made = sf.Contact.create(
        {"FirstName": "Ada", "LastName": f"Lovelace {RUN}", "Email": f"ada-{RUN}@example.com", "AccountId": acct["id"]}
    )
    check(made.get("success") is True and str(made["id"]).startswith("003"), f"Contact create: {made}")
    cid = made["id"]
    ok("create single")

    # read by id: the whole record, attributes with type and url on the caller's version
    c = sf.Contact.get(cid)
    check(c["Id"] == cid and c["LastName"] == f"Lovelace {RUN}", f"get returns the record: {c}")
    check(
        c["attributes"] == {"type": "Contact", "url": f"/services/data/v{API_VERSION}/sobjects/Contact/{cid}"},
        f"attributes carry type and the versioned url: {c['attributes']}",
    )
    check(c["AccountId"] == acct["id"], f"reference field reads back: {c}")
    for f in ("SystemModstamp", "CreatedDate", "OwnerId", "IsDeleted", "Phone"):
        check(f in c, f"a full GET lists every field, {f} included (null when unset): {sorted(c)}")
    a = sf.Account.get(acct["id"])
    check(a["Name"] == f"Fidelity Account {RUN}" and a["attributes"]["type"] == "Account", f"Account get: {a}")
    ok("read by id")

    # update: PATCH → 204, simple-salesforce returns the status code
    status = sf.Contact.update(cid, {"Title": "Analyst"})
    check(status == 204, f"update answers 204 No Content, got {status}")
    check(sf.Contact.get(cid)["Title"] == "Analyst", "the update is read back")
    ok("update")

    # upsert by external id: 201 with created:true, then 200 with created:false (v46+)
    key = f"ext-{RUN}"
    r = sf.Contact.upsert(f"{ext_field}/{key}", {"LastName": f"Upserted {RUN}"}, raw_response=True)
    check(r.status_code == 201, f"upsert of a new external id answers 201, got {r.status_code} {r.text}")
    body = r.json()
    check(body.get("created") is True and body.get("success") is True, f"created:true on insert: {body}")
    up_id = body["id"]
    r = sf.Contact.upsert(f"{ext_field}/{key}", {"Title": "Engineer"}, raw_response=True)
    check(r.status_code == 200, f"upsert of a known external id answers 200 (v46+), got {r.status_code}")
    check(r.json() == {"id": up_id, "success": True, "errors": [], "created": False}, f"update body: {r.text}")
    described = {f["name"]: f for f in sf.Contact.describe()["fields"]}
    check(
        described.get(ext_field, {}).get("externalId") is True,
        f"describe marks {ext_field} as an External ID: {described.get(ext_field)}",
    )
    by_ext = sf.Contact.get_by_custom_id(ext_field, key)
    check(by_ext["Id"] == up_id and by_ext["Title"] == "Engineer", f"read by external id: {by_ext}")
    ok("upsert by external id")

    # create batch: sObject Collections, allOrNone
    tag = f"Batch{RUN}"
    total = 450
    ids = []
    for start in range(0, total, 200):
        recs = [
            {"attributes": {"type": "Contact"}, "LastName": f"{tag} {i:04d}", "Email": f"b{i}-{RUN}@example.com"}
            for i in range(start, min(start + 200, total))
        ]
        res = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": recs})
        check(isinstance(res, list) and len(res) == len(recs), f"one SaveResult per record, in order: {res!r:.200}")
        for item in res:
            check(item.get("success") is True and item.get("errors") == [], f"SaveResult: {item}")
            ids.append(item["id"])
    check(len(set(ids)) == total, "every created record has its own id")
    # allOrNone: one bad record rolls back the whole request; HTTP 200 with every item failed
    bad = [
        {"attributes": {"type": "Contact"}, "LastName": f"{tag} rolled back", "Email": f"rb-{RUN}@example.com"},
        {"attributes": {"type": "Contact"}, "FirstName": "NoLastName"},
    ]
    res = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": bad})
    check(len(res) == 2 and all(item["success"] is False for item in res), f"allOrNone: all fail: {res}")
    check(
        res[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        f"the valid record is rolled back (ALL_OR_NONE_OPERATION_ROLLED_BACK): {res[0]}",
    )
    check(
        res[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING" and res[1]["errors"][0]["fields"] == ["LastName"],
        f"the bad record names its own error: {res[1]}",
    )
    gone = sf.query(f"SELECT Id FROM Contact WHERE LastName = '{tag} rolled back'")
    check(gone["totalSize"] == 0, f"nothing of a rolled-back request is committed: {gone}")
    ok("create batch")

    # list across several pages: batchSize=200 gives 3 batches of 450 rows
    opts = {"Sforce-Query-Options": "batchSize=200"}
    soql = f"SELECT Id, LastName FROM Contact WHERE LastName LIKE '{tag}%' ORDER BY LastName"
    first = sf.query(soql, headers=opts)
    check(first["totalSize"] == total and first["done"] is False, f"first batch: totalSize and done:false: {first['totalSize']} {first['done']}")
    check(len(first["records"]) == 200, f"batchSize=200 gives 200 rows a batch, got {len(first['records'])}")
    nxt = first["nextRecordsUrl"]
    check(nxt.startswith(f"/services/data/v{API_VERSION}/query/"), f"nextRecordsUrl is a versioned path: {nxt}")
    pages, seen, page = 1, [r["Id"] for r in first["records"]], first
    while not page["done"]:
        page = sf.query_more(page["nextRecordsUrl"], identifier_is_url=True, headers=opts)
        check(page["totalSize"] == total, f"every batch repeats totalSize: {page['totalSize']}")
        seen += [r["Id"] for r in page["records"]]
        pages += 1
    check(pages == 3 and "nextRecordsUrl" not in page, f"3 batches, the last without nextRecordsUrl: {pages}")
    check(sorted(seen) == sorted(ids) and len(seen) == len(set(seen)), "every record seen exactly once")
    everything = sf.query_all(soql, headers=opts)
    names = [r["LastName"] for r in everything["records"]]
    check(len(names) == total and names == sorted(names), "query_all follows nextRecordsUrl, ORDER BY holds across batches")
    ok("list across pages")

    # query: WHERE, LIKE, IN, ORDER BY, LIMIT
    q = sf.query(
        f"SELECT Id, LastName FROM Contact WHERE LastName LIKE '{tag} 00%' ORDER BY LastName DESC LIMIT 5"
    )
    got = [r["LastName"] for r in q["records"]]
    check(got == [f"{tag} {i:04d}" for i in (99, 98, 97, 96, 95)], f"LIKE + ORDER BY DESC + LIMIT: {got}")
    check(q["done"] is True and q["totalSize"] == 5, f"LIMIT caps totalSize: {q['totalSize']}")
    q = sf.query(f"SELECT Id FROM Contact WHERE Id IN ('{cid}', '{up_id}') AND Title != null ORDER BY Title")
    check([r["Id"] for r in q["records"]] == [cid, up_id], f"IN + AND + ORDER BY: {q['records']}")
    rec = q["records"][0]
    check(rec["attributes"]["type"] == "Contact" and set(rec) == {"attributes", "Id"}, f"only selected fields: {rec}")
    q = sf.query(f"SELECT Id, Name FROM Account WHERE Name = 'fidelity account {RUN}'")
    check(q["totalSize"] == 1, f"= on text ignores case, as SOQL does: {q}")
    # queryAll (include_deleted) also returns deleted rows, IsDeleted true; query does not
    gone_id = sf.Contact.create({"LastName": f"Deleted {RUN}"})["id"]
    check(sf.Contact.delete(gone_id) == 204, "delete answers 204")
    soql = f"SELECT Id, IsDeleted FROM Contact WHERE Id = '{gone_id}'"
    check(sf.query(soql)["totalSize"] == 0, "query leaves deleted records out")
    rows = sf.query_all(soql, include_deleted=True)["records"]
    check(len(rows) == 1 and rows[0]["IsDeleted"] is True, f"queryAll shows the deleted record: {rows}")
    ok("query")

    # 404: NOT_FOUND for a well-formed id that names no record
    e = expect(SalesforceResourceNotFound, sf.Contact.get, "003000000000000AAA")
    check(e.status == 404, f"status 404, got {e.status}")
    body = error_body(e)
    check(
        body[0]["errorCode"] == "NOT_FOUND" and body[0]["message"] == "The requested resource does not exist",
        f"[{{errorCode: NOT_FOUND}}]: {body}",
    )
    e = expect(SalesforceResourceNotFound, sf.Contact.get_by_custom_id, ext_field, f"missing-{RUN}")
    check(error_body(e)[0]["errorCode"] == "NOT_FOUND", f"no record with that external id: {e.content}")
    ok("404 not found")

    # 401: a session the org does not know (simple-salesforce cannot refresh a given session id)
    stale = Salesforce(instance_url=sim.url, session_id="00DSIM!stale", version=API_VERSION, session=sf.session)
    e = expect(SalesforceExpiredSession, stale.query, "SELECT Id FROM Contact")
    check(
        e.status == 401 and error_body(e) == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
        f"401 INVALID_SESSION_ID: {e.status} {e.content}",
    )
    ok("401 invalid session")

    # 400: a Contact without LastName; an unknown field in SOQL and on a write
    e = expect(SalesforceMalformedRequest, sf.Contact.create, {"FirstName": "NoLastName"})
    body = error_body(e)
    check(e.status == 400 and body[0]["errorCode"] == "REQUIRED_FIELD_MISSING", f"REQUIRED_FIELD_MISSING: {body}")
    check(body[0].get("fields") == ["LastName"], f"the error names LastName in fields: {body}")
    e = expect(SalesforceMalformedRequest, sf.query, "SELECT Id, Bogus_Field__c FROM Contact")
    body = error_body(e)
    check(body[0]["errorCode"] == "INVALID_FIELD", f"SOQL on an unknown field is INVALID_FIELD: {body}")
    check("No such column 'Bogus_Field__c' on entity 'Contact'" in body[0]["message"], f"message names the column: {body}")
    e = expect(SalesforceMalformedRequest, sf.query, "SELECT Id FROM Contact WHERE Nope = 'x'")
    check(error_body(e)[0]["errorCode"] == "INVALID_FIELD", f"WHERE on an unknown field is INVALID_FIELD: {e.content}")
    e = expect(SalesforceMalformedRequest, sf.query, "SELECT Id FROM Contact WHERE LastName = ")
    check(error_body(e)[0]["errorCode"] == "MALFORMED_QUERY", f"bad SOQL is MALFORMED_QUERY: {e.content}")
    e = expect(SalesforceMalformedRequest, sf.Contact.create, {"LastName": "X", "Bogus_Field__c": 1})
    body = error_body(e)
    check(
        body[0]["errorCode"] == "INVALID_FIELD" and body[0]["message"] == "No such column 'Bogus_Field__c' on sobject of type Contact",
        f"a write with an unknown field is INVALID_FIELD: {body}",
    )
    e = expect(SalesforceMalformedRequest, sf.Contact.update, cid, {"Nope": "x"})
    check(error_body(e)[0]["errorCode"] == "INVALID_FIELD", f"update with an unknown field: {e.content}")
    e = expect(SalesforceMalformedRequest, sf.Contact.update, cid, {"Name": "Full Name"})
    body = error_body(e)
    check(
        body[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE" and body[0].get("fields") == ["Name"],
        f"a write to a read-only field is INVALID_FIELD_FOR_INSERT_UPDATE: {body}",
    )
    ok("400 validation")

    # api usage: Sforce-Limit-Info on every answer. simple-salesforce parses it into the
    # object that made the call: `sf.api_usage` for query/restful, an SFType's own
    # `api_usage` for sf.Contact.* (a new SFType per attribute access, so keep one).
    sf.query("SELECT Id FROM Contact LIMIT 1")
    usage = sf.api_usage.get("api-usage")
    check(usage is not None and usage.total == 100000 and 0 < usage.used < usage.total, f"api-usage parsed: {sf.api_usage}")
    before = usage.used
    contacts = sf.Contact
    contacts.get(cid)
    check(contacts.api_usage["api-usage"].used == before + 1, f"each call counts one request: {contacts.api_usage}")
    sf.query("SELECT Id FROM Contact LIMIT 1")
    check(sf.api_usage["api-usage"].used == before + 2, f"and the count is the org's: {sf.api_usage}")
    ok("api usage header")

    # the daily allocation spent: 403 REQUEST_LIMIT_EXCEEDED (no 429 on REST)
    limited = Sim("salesforce", rate_limit=3)
    lf = connect(limited)
    lc = lf.Contact
    for i in range(2):
        lc.create({"LastName": f"Limited {RUN} {i}"})
    check(lc.api_usage["api-usage"] == (2, 3), f"usage 2/3 after two calls: {lc.api_usage}")
    lf.query("SELECT Id FROM Contact LIMIT 1")
    check(lf.api_usage["api-usage"] == (3, 3), f"usage 3/3: {lf.api_usage}")
    e = expect(SalesforceRefusedRequest, lf.Contact.create, {"LastName": f"Limited {RUN} over"})
    check(e.status == 403, f"Salesforce answers a spent allocation with 403, got {e.status}")
    check(
        error_body(e) == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
        f"REQUEST_LIMIT_EXCEEDED body: {e.content}",
    )
    e = expect(SalesforceRefusedRequest, lf.query, "SELECT Id FROM Contact")
    check(error_body(e)[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED", "reads are refused too")
    ok("rate limit")


if __name__ == "__main__":
    main()
