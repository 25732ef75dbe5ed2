"""HubSpot fidelity client (issue 24): `revsync sim hubspot` driven by HubSpot's own Python
client, hubspot-api-client, as a user would drive api.hubapi.com.

Each case asserts what the client sees against what HubSpot's CRM v3/v4 answers (API_FACTS
section 1, HubSpot's error-handling page, and bodies seen from the real API); a mismatch
raises with what HubSpot would have given.
"""

import json
import time

import hubspot
from hubspot.crm.associations.v4 import BatchInputPublicDefaultAssociationMultiPost, BatchInputPublicFetchAssociationsBatchRequest
from hubspot.crm.companies import SimplePublicObjectInputForCreate as CompanyInput
from hubspot.crm.contacts import (
    ApiException,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchInputSimplePublicObjectId,
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.contacts.exceptions import NotFoundException
from urllib3.util.retry import Retry

from simproc import Sim, check, ok

DOMAIN = "fidelity.example"


def client_for(sim):
    # HubSpot's client keeps urllib3's retry; none here, so a 429 reaches the caller as
    # HubSpot sent it. `host` is set on every API's Configuration by the discovery layer.
    return hubspot.Client.create(access_token=sim.value("token"), host=sim.url, retry=Retry(total=0, status_forcelist=()))


def error_body(e, status):
    check(e.status == status, f"HubSpot answers {status} here, the client saw {e.status}: {e.body}")
    try:
        body = json.loads(e.body)
    except (TypeError, ValueError):
        raise AssertionError(f"HubSpot's {status} has a JSON body; got {e.body!r}")
    for field in ("status", "message", "correlationId"):
        check(field in body, f"HubSpot's {status} body has `{field}`: {body}")
    check(body["status"] == "error", f"HubSpot's error body says status 'error': {body}")
    return body


def expect_error(call, status):
    try:
        call()
    except ApiException as e:
        return e, error_body(e, status)
    raise AssertionError(f"HubSpot answers {status} here; the call succeeded")


def paced(search_api):
    """do_search at most 4 times a second: HubSpot allows 5 searches a second per account."""
    last = [0.0]

    def do_search(req):
        wait = last[0] + 0.25 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        last[0] = time.monotonic()
        return search_api.do_search(req)

    return do_search


def header(e_or_headers, name):
    headers = e_or_headers.headers if hasattr(e_or_headers, "headers") else e_or_headers
    for k, v in dict(headers).items():
        if k.lower() == name.lower():
            return v
    return None


def main():
    start = time.monotonic()
    sim = Sim("hubspot")
    hs = client_for(sim)
    contacts = hs.crm.contacts

    # -- create, single: 201 and a SimplePublicObject with HubSpot's own properties
    one = contacts.basic_api.create(
        SimplePublicObjectInputForCreate(properties={"email": f"Ada@{DOMAIN}", "firstname": "Ada", "lastname": "Lovelace"})
    )
    check(one.id.isdigit(), f"HubSpot's ids are numeric strings; got {one.id!r}")
    props = one.properties
    check(props.get("email") == f"ada@{DOMAIN}", f"HubSpot stores emails lowercased; got {props.get('email')!r}")
    for p in ("hs_object_id", "createdate", "lastmodifieddate"):
        check(p in props, f"HubSpot's create answer carries `{p}`; got {sorted(props)}")
    check(props["hs_object_id"] == one.id, "hs_object_id is the record id")
    check(one.archived is False and one.created_at is not None and one.updated_at is not None, "createdAt/updatedAt/archived are set")
    company = hs.crm.companies.basic_api.create(CompanyInput(properties={"name": "Fidelity Ltd", "domain": DOMAIN}))
    check(company.properties.get("name") == "Fidelity Ltd", f"company name round-trips; got {company.properties}")
    check("hs_lastmodifieddate" in company.properties, "companies carry hs_lastmodifieddate")
    ok("create")

    # -- create, batch: 201 with status COMPLETE and one result per input
    names = [f"Person{i:02d}" for i in range(12)]
    batch = contacts.batch_api.create(
        BatchInputSimplePublicObjectBatchInputForCreate(
            inputs=[
                {"properties": {"email": f"{n.lower()}@{DOMAIN}", "firstname": n, "lifecyclestage": "lead" if i % 3 else "customer"}}
                for i, n in enumerate(names)
            ]
        )
    )
    check(batch.status == "COMPLETE", f"HubSpot's batch answer is COMPLETE; got {batch.status}")
    check(batch.started_at is not None and batch.completed_at is not None, "batch answers carry startedAt/completedAt")
    check(len(batch.results) == len(names), f"one result per input; got {len(batch.results)}")
    by_name = {r.properties["firstname"]: r.id for r in batch.results}
    check(sorted(by_name) == names, f"every input created once; got {sorted(by_name)}")
    ok("create_batch")

    # -- read by id (and by the unique email), requested properties only
    got = contacts.basic_api.get_by_id(one.id, properties=["email", "firstname", "phone"])
    check(got.id == one.id and got.properties["firstname"] == "Ada", f"read returns the record; got {got}")
    check("phone" in got.properties and got.properties["phone"] is None, f"a requested property with no value comes back null; got {got.properties}")
    check("lastname" not in got.properties, f"properties not asked for are left out; got {sorted(got.properties)}")
    by_email = contacts.basic_api.get_by_id(f"ada@{DOMAIN}", id_property="email")
    check(by_email.id == one.id, f"idProperty=email finds the same contact; got {by_email.id}")
    read = contacts.batch_api.read(BatchReadInputSimplePublicObjectId(inputs=[{"id": one.id}, {"id": by_name["Person00"]}], properties=["email"]))
    check(sorted(r.id for r in read.results) == sorted([one.id, by_name["Person00"]]), "batch read returns both")
    ok("read")

    # -- update: PATCH, 200, the new value and a later updatedAt
    time.sleep(0.01)
    upd = contacts.basic_api.update(one.id, SimplePublicObjectInput(properties={"lastname": "Byron", "phone": "+44 20 0000"}))
    check(upd.properties.get("lastname") == "Byron", f"update answers the new value; got {upd.properties}")
    check(upd.updated_at > one.updated_at, f"updatedAt moves on an update: {one.updated_at} -> {upd.updated_at}")
    again = contacts.basic_api.get_by_id(one.id, properties=["lastname", "phone"])
    check(again.properties["lastname"] == "Byron" and again.properties["phone"] == "+44 20 0000", f"the update is stored; got {again.properties}")
    ok("update")

    # -- upsert by a unique property: batch/upsert with idProperty email, then the custom
    # unique property (revsync_id); one existing record and one new in each call.
    up = contacts.batch_api.upsert(
        BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=[
                {"id": f"ada@{DOMAIN}", "idProperty": "email", "properties": {"jobtitle": "Analyst"}},
                {"id": f"grace@{DOMAIN}", "idProperty": "email", "properties": {"firstname": "Grace"}},
            ]
        )
    )
    check(up.status == "COMPLETE" and len(up.results) == 2, f"upsert answers COMPLETE with both; got {up}")
    res = {r.properties.get("email"): r for r in up.results}
    check(res[f"ada@{DOMAIN}"].id == one.id and res[f"ada@{DOMAIN}"].new is False, "the existing contact is updated (new: false)")
    check(res[f"grace@{DOMAIN}"].new is True, "the unknown email creates a contact (new: true)")
    grace = res[f"grace@{DOMAIN}"].id
    up2 = contacts.batch_api.upsert(
        BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=[
                {"id": "ext-1", "idProperty": "revsync_id", "properties": {"email": f"ext1@{DOMAIN}", "firstname": "Ext"}},
            ]
        )
    )
    check(up2.results[0].new is True, "a new external id creates")
    up3 = contacts.batch_api.upsert(
        BatchInputSimplePublicObjectBatchInputUpsert(inputs=[{"id": "ext-1", "idProperty": "revsync_id", "properties": {"lastname": "Ernal"}}])
    )
    check(up3.results[0].new is False and up3.results[0].id == up2.results[0].id, "the same external id updates the same record")
    ext = up2.results[0].id
    ok("upsert")

    # -- list across pages: every contact once, with `after` from paging.next
    want = {one.id, grace, ext, *by_name.values()}
    seen, after, pages = [], None, 0
    while True:
        kwargs = {"limit": 4, "properties": ["email", "firstname"]}
        if after:
            kwargs["after"] = after
        page = contacts.basic_api.get_page(**kwargs)
        pages += 1
        for r in page.results:
            check("email" in r.properties and "firstname" in r.properties, f"every requested property is returned (repeated `properties` parameters); got {sorted(r.properties)}")
        seen += [r.id for r in page.results]
        if not page.paging:
            break
        nxt = page.paging.next
        check(nxt.link and nxt.link.startswith(sim.url + "/crm/v3/objects/contacts?"), f"paging.next.link is absolute; got {nxt.link}")
        after = nxt.after
    check(len(seen) == len(set(seen)), f"no record twice across pages; got {seen}")
    check(set(seen) == want, f"every record once; missing {want - set(seen)}, extra {set(seen) - want}")
    check(pages == -(-len(want) // 4), f"{len(want)} records at 4 a page are {-(-len(want) // 4)} pages; got {pages}")
    ok("list_pages")

    # -- search: EQ, CONTAINS_TOKEN + GT, IN; one sort; paging by `after`
    search = paced(contacts.search_api)
    s = search(
        PublicObjectSearchRequest(filter_groups=[FilterGroup(filters=[Filter(property_name="email", operator="EQ", value=f"grace@{DOMAIN}")])])
    )
    check(s.total == 1 and s.results[0].id == grace, f"EQ on email finds one; got total {s.total}")
    check(s.paging is None, "a single page has no paging")
    # Every contact made here has a first name and an address in DOMAIN.
    floor = int(by_name["Person03"])
    expected = sorted((int(v) for v in want if int(v) > floor), reverse=True)
    hits, after = [], None
    while True:
        req = PublicObjectSearchRequest(
            filter_groups=[
                FilterGroup(
                    filters=[
                        Filter(property_name="email", operator="CONTAINS_TOKEN", value=f"*@{DOMAIN}"),
                        Filter(property_name="hs_object_id", operator="GT", value=str(floor)),
                        Filter(property_name="firstname", operator="HAS_PROPERTY"),
                    ]
                )
            ],
            sorts=[{"propertyName": "hs_object_id", "direction": "DESCENDING"}],
            properties=["email", "firstname"],
            limit=3,
            after=after,
        )
        page = search(req)
        check(page.total == len(expected), f"search total counts every match; want {len(expected)}, got {page.total}")
        hits += [int(r.id) for r in page.results]
        if not page.paging:
            break
        after = page.paging.next.after
    check(hits == expected, f"search pages in the sorted order, each match once; want {expected}, got {hits}")
    s = search(
        PublicObjectSearchRequest(
            filter_groups=[
                FilterGroup(filters=[Filter(property_name="lifecyclestage", operator="IN", values=["customer"])]),
                FilterGroup(filters=[Filter(property_name="email", operator="EQ", value=f"ext1@{DOMAIN}")]),
            ],
            limit=100,
        )
    )
    customers = {by_name[n] for i, n in enumerate(names) if i % 3 == 0}
    check({r.id for r in s.results} == customers | {ext}, f"filter groups are ORed; got {sorted(r.id for r in s.results)}")
    ok("search")

    # -- 404: NotFoundException with HubSpot's OBJECT_NOT_FOUND body
    try:
        contacts.basic_api.get_by_id("999999999")
        raise AssertionError("HubSpot answers 404 for a missing contact id")
    except NotFoundException as e:
        body = error_body(e, 404)
        check(body.get("category") == "OBJECT_NOT_FOUND", f"HubSpot's 404 category is OBJECT_NOT_FOUND; got {body}")
        check(body.get("message") == "Object not found.  objectId are usually numeric.", f"HubSpot's 404 message; got {body.get('message')!r}")
        check(body.get("context", {}).get("id") == ["999999999"], f"HubSpot's 404 names the id in context.id; got {body.get('context')}")
    e, body = expect_error(lambda: contacts.basic_api.update("999999999", SimplePublicObjectInput(properties={"firstname": "X"})), 404)
    check(body.get("category") == "OBJECT_NOT_FOUND", f"a PATCH of a missing id is OBJECT_NOT_FOUND; got {body}")
    # A real endpoint the simulator does not have: HubSpot's 404 shape, not a 405 or an empty body.
    e, body = expect_error(lambda: contacts.basic_api.merge({"primaryObjectId": one.id, "objectIdToMerge": grace}), 404)
    ok("not_found")

    # -- 400 VALIDATION_ERROR: an unknown property, then an invalid email
    e, body = expect_error(
        lambda: contacts.basic_api.create(SimplePublicObjectInputForCreate(properties={"email": f"x@{DOMAIN}", "no_such_prop": "1"})), 400
    )
    check(body.get("category") == "VALIDATION_ERROR", f"HubSpot's category is VALIDATION_ERROR; got {body}")
    check(body["message"].startswith("Property values were not valid: "), f"HubSpot's message lists the invalid values; got {body['message']!r}")
    detail = json.loads(body["message"][len("Property values were not valid: ") :])
    check(detail[0]["error"] == "PROPERTY_DOESNT_EXIST" and detail[0]["name"] == "no_such_prop", f"the detail names the property; got {detail}")
    err = body.get("errors", [{}])[0]
    check(err.get("code") == "PROPERTY_DOESNT_EXIST", f"errors[0].code is PROPERTY_DOESNT_EXIST; got {body.get('errors')}")
    check(err.get("context", {}).get("propertyName") == ["no_such_prop"], f"errors[0].context.propertyName; got {err}")
    e, body = expect_error(lambda: contacts.basic_api.create(SimplePublicObjectInputForCreate(properties={"email": "not-an-email"})), 400)
    check(body.get("category") == "VALIDATION_ERROR", f"an invalid email is VALIDATION_ERROR; got {body}")
    check(body["message"].startswith("Property values were not valid: "), f"HubSpot's message lists the invalid values; got {body['message']!r}")
    detail = json.loads(body["message"][len("Property values were not valid: ") :])
    check(
        detail[0].get("error") == "INVALID_EMAIL" and detail[0].get("name") == "email" and detail[0].get("message") == "Email address not-an-email is invalid",
        f"HubSpot's detail is INVALID_EMAIL for `email`; got {detail}",
    )
    ok("validation_error")

    # -- 409 CONFLICT: an email another contact holds
    e, body = expect_error(lambda: contacts.basic_api.create(SimplePublicObjectInputForCreate(properties={"email": f"GRACE@{DOMAIN}"})), 409)
    check(body.get("category") == "CONFLICT", f"HubSpot's category is CONFLICT; got {body}")
    check(body["message"] == f"Contact already exists. Existing ID: {grace}", f"HubSpot names the holder; got {body['message']!r}")
    ok("conflict")

    # -- v4 associations: default association, then batch read
    assoc = hs.crm.associations.v4.batch_api.create_default(
        "contacts", "companies", BatchInputPublicDefaultAssociationMultiPost(inputs=[{"from": {"id": one.id}, "to": {"id": company.id}}])
    )
    check(assoc.status == "COMPLETE" and len(assoc.results) == 1, f"the default association is made; got {assoc}")
    spec = assoc.results[0].association_spec
    check(spec.association_category == "HUBSPOT_DEFINED" and spec.association_type_id == 279, f"contact->company default is HUBSPOT_DEFINED 279; got {spec}")
    got = hs.crm.associations.v4.batch_api.get_page("contacts", "companies", BatchInputPublicFetchAssociationsBatchRequest(inputs=[{"id": one.id}]))
    to = got.results[0].to
    check([t.to_object_id for t in to] == [company.id], f"the association reads back; got {to}")
    check(any(t.type_id == 279 for t in to[0].association_types), f"read shows type 279; got {to[0].association_types}")
    ok("associations")

    # -- 429: a second simulator with 3 requests per 10 s
    small = Sim("hubspot", rate_limit=3)
    lim = client_for(small).crm.contacts
    _, status, headers = lim.basic_api.get_page_with_http_info(limit=1)
    check(status == 200, "the first call passes")
    check(header(headers, "X-HubSpot-RateLimit-Max") == "3", f"X-HubSpot-RateLimit-Max is the window's allowance; got {dict(headers)}")
    check(header(headers, "X-HubSpot-RateLimit-Remaining") == "2", f"X-HubSpot-RateLimit-Remaining counts down; got {dict(headers)}")
    check(header(headers, "X-HubSpot-RateLimit-Interval-Milliseconds") == "10000", "the window is 10000 ms")
    lim.basic_api.get_page(limit=1)
    lim.basic_api.get_page(limit=1)
    e, body = expect_error(lambda: lim.basic_api.get_page(limit=1), 429)
    check(body.get("errorType") == "RATE_LIMIT", f"HubSpot's 429 says errorType RATE_LIMIT; got {body}")
    check(body.get("policyName") == "TEN_SECONDLY_ROLLING", f"the burst window's policyName is TEN_SECONDLY_ROLLING; got {body}")
    check(header(e, "X-HubSpot-RateLimit-Remaining") == "0", f"the 429 shows nothing remaining; got {e.headers}")
    check(header(e, "X-HubSpot-RateLimit-Max") == "3", f"the 429 carries the window's headers; got {e.headers}")
    ok("rate_limit")

    # -- archive, then a batch read: a 207 naming every id it could not get in one error
    contacts.batch_api.archive(BatchInputSimplePublicObjectId(inputs=[{"id": grace}]))
    got = contacts.batch_api.read(
        BatchReadInputSimplePublicObjectId(inputs=[{"id": grace}, {"id": one.id}, {"id": "999999999"}], properties=["email"])
    )
    check([r.id for r in got.results] == [one.id], f"an archived contact is not read; got {[r.id for r in got.results]}")
    check(getattr(got, "num_errors", None) == 1 and len(got.errors) == 1, f"HubSpot answers 207 with one error for the missing ids; got {got}")
    err = got.errors[0]
    check(err.category == "OBJECT_NOT_FOUND", f"the missing ids are OBJECT_NOT_FOUND; got {err}")
    check(
        err.message == "Could not get some CONTACT objects, they may be deleted or not exist. Check that ids are valid.",
        f"HubSpot's words for missing batch ids; got {err.message!r}",
    )
    check(sorted(err.context["ids"]) == sorted([grace, "999999999"]), f"context.ids names every missing id; got {err.context}")
    got = contacts.batch_api.read(BatchReadInputSimplePublicObjectId(id_property="email", inputs=[{"id": f"ada@{DOMAIN}"}], properties=["email"]))
    check([r.id for r in got.results] == [one.id], f"batch read by idProperty=email; got {[r.id for r in got.results]}")
    ok("archive")

    print(f"hubspot: {time.monotonic() - start:.1f}s", flush=True)


if __name__ == "__main__":
    main()
