"""The Stripe simulator driven by Stripe's own Python library (issue 24 fidelity suite).

Each case uses `stripe.StripeClient` as an integration would, pointed at `revsync sim stripe`,
and checks what the library hands back against what api.stripe.com answers (API_FACTS 4).
Stripe has no batch create and no upsert by external id, so "batch" is several creates with
an Idempotency-Key each (a replayed key returns the first answer, creating nothing), and
"upsert" is what Stripe users do: search `metadata['revsync_id']`, then update or create.
"""

import time

import stripe

from simproc import Sim, check, ok


def connect(sim, key=None):
    # No retries: a 429 or 5xx must reach the case, and stripe-python adds its own
    # Idempotency-Key to every POST when retries are on, which would blur the batch case.
    return stripe.StripeClient(
        key or sim.value("secret_key"),
        base_addresses={"api": sim.url},
        max_network_retries=0,
    )


def refused(call, kind):
    """The error `call` raises, which must be a `kind`."""
    try:
        call()
    except kind as e:
        return e
    except stripe.StripeError as e:
        raise AssertionError(f"expected {kind.__name__}, the library raised {type(e).__name__}: {e}")
    raise AssertionError(f"expected {kind.__name__}, the call succeeded")


def error_body(e):
    body = e.json_body or {}
    check("error" in body, f"Stripe errors are {{'error': {{...}}}}, got {body}")
    return body["error"]


def customers_case(api):
    # create, single: Stripe answers the whole customer; fields not given are null, not empty.
    ada = api.v1.customers.create(
        params={"name": "Ada Lovelace", "email": "ada@example.com", "metadata": {"tier": "gold"}}
    )
    check(isinstance(ada, stripe.Customer), f"a customer object, got {type(ada)}")
    check(ada.id.startswith("cus_") and ada.object == "customer", f"a cus_ id, got {ada.id}")
    check(ada.email == "ada@example.com" and ada.name == "Ada Lovelace", f"fields echoed: {ada}")
    check(ada.metadata.to_dict() == {"tier": "gold"}, f"metadata as sent, got {ada.metadata}")
    check(ada.livemode is False and abs(ada.created - time.time()) < 120, f"created now, test mode: {ada}")
    check(ada.address is None and ada.shipping is None and ada.phone is None,
          f"a customer made without an address has address/shipping null, got {ada.address!r} {ada.shipping!r}")
    check(ada.balance == 0 and ada.delinquent is False, f"balance 0, not delinquent: {ada}")
    check(ada.last_response.request_id.startswith("req_"), "every answer carries a Request-Id req_…")
    ok("create single")

    # create, batch: one Idempotency-Key per customer; a replayed key answers the first
    # response again (Idempotent-Replayed: true) and creates nothing.
    batch = []
    for i in range(12):
        params = {"name": f"Batch {i:02}", "email": f"batch{i:02}@example.com",
                  "metadata": {"cohort": "b1", "n": str(i)}}
        c = api.v1.customers.create(params=params, options={"idempotency_key": f"fidelity-batch-{i}"})
        check(c.last_response.idempotency_key == f"fidelity-batch-{i}", "the Idempotency-Key echoed back")
        batch.append(c)
    check(len({c.id for c in batch}) == 12, "12 keys, 12 customers")
    again = api.v1.customers.create(
        params={"name": "Batch 00", "email": "batch00@example.com", "metadata": {"cohort": "b1", "n": "0"}},
        options={"idempotency_key": "fidelity-batch-0"},
    )
    check(again.id == batch[0].id, f"a replayed key answers the first customer {batch[0].id}, got {again.id}")
    check(again.last_response.headers.get("idempotent-replayed") == "true", "a replay says Idempotent-Replayed: true")
    e = refused(lambda: api.v1.customers.create(
        params={"name": "Someone else"}, options={"idempotency_key": "fidelity-batch-1"}), stripe.IdempotencyError)
    check(e.http_status == 400 and error_body(e)["type"] == "idempotency_error",
          f"a key reused with other parameters is a 400 idempotency_error, got {e.http_status} {e.json_body}")
    ok("create batch (one Idempotency-Key each, replay creates nothing)")

    # read by id
    got = api.v1.customers.retrieve(ada.id)
    check(got.to_dict() == ada.to_dict(), f"the customer as created, got {got}")
    ok("read by id")

    # update: POST /v1/customers/{id}; metadata keys merge, an empty value removes one.
    up = api.v1.customers.update(ada.id, params={"name": "Ada King", "metadata": {"tier": "", "team": "x"}})
    check(up.name == "Ada King" and up.email == "ada@example.com", f"name changed, email kept: {up}")
    check(up.metadata.to_dict() == {"team": "x"}, f"'tier' unset by '', 'team' added, got {up.metadata}")
    check(api.v1.customers.retrieve(ada.id).name == "Ada King", "the update is read back")
    ok("update")

    # upsert by external id: search metadata['revsync_id'], then update or create.
    def upsert(rid, fields):
        found = api.v1.customers.search(params={"query": f"metadata['revsync_id']:'{rid}'"})
        check(found.object == "search_result", f"a search_result, got {found.object}")
        if found.data:
            check(len(found.data) == 1, f"one customer per revsync_id, got {len(found.data)}")
            return api.v1.customers.update(found.data[0].id, params=fields), False
        return api.v1.customers.create(params={**fields, "metadata": {"revsync_id": rid}}), True

    first, created = upsert("rs-1", {"name": "Grace Hopper", "email": "grace@example.com"})
    check(created, "no customer had revsync_id rs-1: created")
    second, created = upsert("rs-1", {"name": "Grace B. Hopper"})
    check(not created and second.id == first.id, f"the same customer updated, got {second.id} vs {first.id}")
    check(second.name == "Grace B. Hopper" and second.metadata["revsync_id"] == "rs-1", f"updated: {second}")
    ok("upsert by external id (search metadata['revsync_id'], then update or create)")

    # list across pages: limit=3, starting_after=<last id>; newest first, each once.
    everyone = {c.id for c in batch} | {ada.id, first.id}
    page = api.v1.customers.list(params={"limit": 3})
    check(page.object == "list" and page.url == "/v1/customers", f"a list at /v1/customers, got {page.url}")
    check(len(page.data) == 3 and page.has_more, f"3 of {len(everyone)} and has_more, got {len(page.data)}")
    seen = [c.id for c in page.auto_paging_iter()]
    check(len(seen) == len(set(seen)), f"no customer twice across pages: {seen}")
    check(set(seen) == everyone, f"every customer once: missing {everyone - set(seen)}, extra {set(seen) - everyone}")
    created_at = [c.created for c in api.v1.customers.list(params={"limit": 100}).data]
    check(created_at == sorted(created_at, reverse=True), "lists are newest first")
    by_email = api.v1.customers.list(params={"email": "batch03@example.com"})
    check([c.id for c in by_email.data] == [batch[3].id], f"the email filter is exact, got {by_email.data}")
    ok(f"list across pages ({len(seen)} customers, limit=3)")

    # search: email and metadata clauses, paged by next_page.
    hit = api.v1.customers.search(params={"query": "email:'batch07@example.com'"})
    check([c.id for c in hit.data] == [batch[7].id], f"email:'…' finds the one customer, got {hit.data}")
    cohort = api.v1.customers.search(params={"query": "metadata['cohort']:'b1'", "limit": 5})
    check(cohort.has_more and cohort.next_page, f"12 hits at limit 5 has a next_page, got {cohort}")
    found = [c.id for c in cohort.auto_paging_iter()]
    check(sorted(found) == sorted(c.id for c in batch), f"all 12 of cohort b1 once, got {len(found)}")
    both = api.v1.customers.search(params={"query": "metadata['cohort']:'b1' AND email:'batch02@example.com'"})
    check([c.id for c in both.data] == [batch[2].id], f"AND narrows to one, got {both.data}")
    e = refused(lambda: api.v1.customers.search(params={"query": "email:batch02@example.com"}),
                stripe.InvalidRequestError)
    check(e.http_status == 400 and e.param == "query", f"an unquoted value is a 400 on param query, got {e.json_body}")
    ok("search (email, metadata, AND, paging)")

    # delete, then the id still reads as a deleted customer.
    gone = api.v1.customers.delete(batch[11].id)
    check(gone.deleted is True and gone.id == batch[11].id, f"deleted: true, got {gone}")
    check(api.v1.customers.retrieve(batch[11].id).to_dict().get("deleted") is True, "a deleted customer reads as deleted")
    ok("delete")
    return batch


def errors_case(api):
    e = refused(lambda: api.v1.customers.retrieve("cus_doesnotexist"), stripe.InvalidRequestError)
    err = error_body(e)
    check(e.http_status == 404, f"a missing customer is a 404, got {e.http_status}")
    check(err["type"] == "invalid_request_error" and e.code == "resource_missing" and e.param == "id",
          f"invalid_request_error resource_missing on param id, got {err}")
    check(err["message"] == "No such customer: 'cus_doesnotexist'", f"Stripe's message, got {err['message']}")
    check(err.get("doc_url") == "https://stripe.com/docs/error-codes/resource-missing", f"doc_url, got {err}")
    check(e.request_id and e.request_id.startswith("req_"), "the error carries a Request-Id")
    ok("404 resource_missing")

    e = refused(lambda: api.v1.customers.create(params={"email": "not-an-email"}), stripe.InvalidRequestError)
    err = error_body(e)
    check(e.http_status == 400 and err["type"] == "invalid_request_error", f"a 400 invalid_request_error, got {err}")
    check(e.param == "email" and e.code == "email_invalid", f"param email, code email_invalid, got {err}")
    check(err["message"] == "Invalid email address: not-an-email", f"Stripe's message, got {err['message']}")
    e = refused(lambda: api.v1.customers.create(params={"shoe_size": "9"}), stripe.InvalidRequestError)
    check(e.http_status == 400 and e.code == "parameter_unknown" and e.param == "shoe_size",
          f"an unknown parameter is parameter_unknown on that param, got {e.json_body}")
    e = refused(lambda: api.v1.customers.list(params={"limit": 101}), stripe.InvalidRequestError)
    check(e.http_status == 400 and e.param == "limit", f"limit above 100 is a 400 on param limit, got {e.json_body}")
    ok("400 invalid_request_error with param")

    # A real endpoint this simulator does not have answers Stripe's unrecognized-URL 404.
    e = refused(lambda: api.v1.products.list(), stripe.InvalidRequestError)
    err = error_body(e)
    check(e.http_status == 404 and err["type"] == "invalid_request_error" and e.code is None,
          f"a 404 invalid_request_error without a code, got {e.http_status} {err}")
    check(err["message"].startswith("Unrecognized request URL (GET: /v1/products). Please see https://stripe.com/docs"),
          f"Stripe's unrecognized-URL message, got {err['message']}")
    ok("404 on an endpoint not simulated")


def auth_case(sim):
    e = refused(lambda: connect(sim, "sk_test_wrong").v1.customers.list(), stripe.AuthenticationError)
    check(e.http_status == 401 and error_body(e)["type"] == "invalid_request_error",
          f"a wrong key is a 401 invalid_request_error, got {e.http_status} {e.json_body}")
    ok("401 on a wrong key")


def billing_case():
    # Seeded people bring subscriptions and invoices, as a live account has.
    sim = Sim("stripe", people=30, companies=10, subscriptions=8)
    api = connect(sim)
    subs = list(api.v1.subscriptions.list(params={"limit": 2, "status": "all"}).auto_paging_iter())
    check(len(subs) >= 3, f"the seeded account has subscriptions across pages, got {len(subs)}")
    check(len({s.id for s in subs}) == len(subs), "no subscription twice across pages")
    sub = api.v1.subscriptions.retrieve(subs[0].id)
    check(isinstance(sub, stripe.Subscription) and sub.id.startswith("sub_"), f"a subscription, got {sub}")
    check(sub.customer.startswith("cus_") and sub["items"].object == "list" and sub["items"].data,
          f"customer id and an items list, got {sub.customer} {sub['items']}")
    item = sub["items"].data[0]
    check(item.object == "subscription_item" and item.price.object == "price", f"an item with its price, got {item}")
    wide = api.v1.subscriptions.retrieve(sub.id, params={"expand": ["customer"]})
    check(isinstance(wide.customer, stripe.Customer) and wide.customer.id == sub.customer,
          f"expand[]=customer puts the customer object in place of its id, got {wide.customer!r}")
    mine = api.v1.subscriptions.list(params={"customer": sub.customer, "status": "all"})
    check(sub.id in [s.id for s in mine.data] and all(s.customer == sub.customer for s in mine.data),
          "the customer filter keeps that customer's subscriptions")
    up = api.v1.subscriptions.update(sub.id, params={"metadata": {"revsync_id": "rs-sub"}})
    check(up.metadata["revsync_id"] == "rs-sub", f"subscription metadata updated, got {up.metadata}")
    e = refused(lambda: api.v1.subscriptions.retrieve("sub_doesnotexist"), stripe.InvalidRequestError)
    check(e.http_status == 404 and e.code == "resource_missing"
          and error_body(e)["message"] == "No such subscription: 'sub_doesnotexist'",
          f"a missing subscription is a 404 resource_missing, got {e.json_body}")
    ok(f"subscriptions: list ({len(subs)}, limit=2), read, expand customer, update, 404")

    invoices = list(api.v1.invoices.list(params={"limit": 3}).auto_paging_iter())
    check(invoices, "the seeded account has invoices")
    inv = api.v1.invoices.retrieve(invoices[0].id)
    check(isinstance(inv, stripe.Invoice) and inv.id.startswith("in_") and inv.customer.startswith("cus_"),
          f"an invoice of a customer, got {inv}")
    check(inv.status in ("draft", "open", "paid", "uncollectible", "void"), f"a real invoice status, got {inv.status}")
    listed = api.v1.invoices.list(params={"limit": 3, "expand": ["data.customer"]})
    check(all(isinstance(i.customer, stripe.Customer) for i in listed.data),
          "expand[]=data.customer expands each listed invoice's customer")
    e = refused(lambda: api.v1.invoices.list(params={"expand": ["customer"]}), stripe.InvalidRequestError)
    check(e.http_status == 400 and "You may want to try expanding 'data.customer' instead." in error_body(e)["message"],
          f"a list expands under data., else Stripe's 400 with that hint, got {e.json_body}")
    paid = api.v1.invoices.list(params={"status": "paid", "limit": 100})
    check(all(i.status == "paid" for i in paid.data), "the status filter keeps paid invoices")
    theirs = api.v1.invoices.list(params={"customer": inv.customer})
    check(all(i.customer == inv.customer for i in theirs.data) and inv.id in [i.id for i in theirs.data],
          "the customer filter keeps that customer's invoices")
    ok(f"invoices: list ({len(invoices)}, limit=3), read, expand data.customer, filters")


def rate_limit_case():
    # Stripe limits each endpoint per second; this simulator takes 2 a second.
    sim = Sim("stripe", rate_limit=2)
    api = connect(sim)
    answers = []
    for _ in range(10):
        try:
            api.v1.customers.list(params={"limit": 1})
            answers.append(200)
        except stripe.RateLimitError as e:
            answers.append(e)
            break
    e = answers[-1]
    check(isinstance(e, stripe.RateLimitError), f"10 requests at 2 a second meet a 429, got {answers}")
    err = error_body(e)
    check(e.http_status == 429 and err.get("code") == "rate_limit" and err["type"] == "invalid_request_error",
          f"a 429 invalid_request_error rate_limit, got {e.http_status} {err}")
    check(err["message"].startswith("Request rate limit exceeded."), f"Stripe's message, got {err['message']}")
    check(e.request_id and e.request_id.startswith("req_"), "a 429 carries a Request-Id too")
    time.sleep(1.1)
    check(api.v1.customers.list(params={"limit": 1}).object == "list", "the next second is served again")
    ok("429 rate_limit (stripe.RateLimitError)")


def main():
    sim = Sim("stripe")
    api = connect(sim)
    customers_case(api)
    errors_case(api)
    auth_case(sim)
    billing_case()
    rate_limit_case()


if __name__ == "__main__":
    main()
