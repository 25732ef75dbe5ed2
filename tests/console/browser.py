"""The console in a real browser (issue 21): headless Chromium, driven through
chromedriver by Selenium, against `revsync demo` (the daemon and the simulators of the
demo world on loopback).

Checks, in order: a page without a session shows the login page and the API answers 401;
the one-time link the demo prints signs in; the overview lists every connector and its
counts change while the world syncs; a person is found by email and shows fields from
several systems with their sources; a title edited in the grid reaches the simulated
HubSpot and Salesforce; a title too long for Salesforce becomes a dead letter, which is
replayed from the console once fixed; a POST without the CSRF token is refused; signing
out ends the session. Each page's screenshot goes to docs/console/.
"""

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

BIN = os.environ["REVSYNC_BIN"]
SHOTS = os.environ.get("CONSOLE_SCREENSHOTS", "")
HUBSPOT_TOKEN = "pat-na1-revsync-demo"


def ok(case):
    print(f"ok {case}", flush=True)


def wait_for(what, check, timeout=90, every=0.5):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as e:  # a page mid-reload, a simulator busy: try again
            last = e
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def http(method, url, token=None, body=None, form=None, headers=None):
    data = None
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        h["Content-Type"] = "application/x-www-form-urlencoded"
    req = urllib.request.Request(url, data=data, method=method, headers=h)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def shot(driver, name, whole=False):
    """A screenshot for docs/console; `whole`: the page's full height (up to 2,400 px)."""
    if not SHOTS:
        return
    if whole:
        size = driver.get_window_size()
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(size["width"], min(max(height, size["height"]), 2400))
        driver.save_screenshot(os.path.join(SHOTS, f"{name}.png"))
        driver.set_window_size(size["width"], size["height"])
    else:
        driver.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


def start_demo(workdir):
    log = open(os.path.join(workdir, "demo.log"), "w+")
    proc = subprocess.Popen(
        [BIN, "demo", "--listen", "127.0.0.1:0", "--timeout-secs", "600"],
        cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
    )
    lines = {}

    def started():
        log.seek(0)
        text = log.read()
        if proc.poll() is not None:
            raise SystemExit(f"the demo exited early:\n{text}")
        m = re.search(r"console: (http://\S+)/\s+\(one-time sign-in link: (\S+)\)", text)
        if not m:
            return None
        lines["base"], lines["link"] = m.group(1), m.group(2)
        lines["hubspot"] = re.search(r"hubspot\s+(http://\S+)", text).group(1)
        lines["salesforce"] = re.search(r"salesforce\s+(http://\S+)", text).group(1)
        lines["token_file"] = re.search(r"\$\(cat (\S+admin_token)\)", text).group(1)
        return lines

    wait_for("the demo to start", started, timeout=120)
    return proc, lines


def salesforce_title(sf_base, record_id):
    """The Title the simulated Salesforce holds for a Contact or Lead, through its API."""
    status, body = http("POST", f"{sf_base}/services/oauth2/token", form={
        "grant_type": "refresh_token", "client_id": "sim-client",
        "client_secret": "sim-secret", "refresh_token": "sim-refresh"})
    assert status == 200, body
    tok = json.loads(body)
    base = tok.get("instance_url", sf_base)
    obj = "Lead" if record_id.startswith("00Q") else "Contact"
    status, body = http("GET", f"{base}/services/data/v60.0/sobjects/{obj}/{record_id}", token=tok["access_token"])
    assert status == 200, body
    return json.loads(body).get("Title")


def hubspot_title(hs_base, contact_id):
    status, body = http("GET", f"{hs_base}/crm/v3/objects/contacts/{contact_id}?properties=jobtitle", token=HUBSPOT_TOKEN)
    assert status == 200, body
    return json.loads(body)["properties"].get("jobtitle")


def grid_edit(driver, base, email, title):
    driver.get(f"{base}/console/grid?kind=person&q={urllib.parse.quote(email)}")
    row = driver.find_element(By.CSS_SELECTOR, "tr[data-record]")
    box = row.find_element(By.CSS_SELECTOR, "td[data-field=title] input")
    box.clear()
    box.send_keys(title)
    row.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for("the save note", lambda: driver.find_elements(By.CSS_SELECTOR, "p.flash"), timeout=20)
    return driver.find_element(By.CSS_SELECTOR, "p.flash").text


def main():
    workdir = os.environ.get("CONSOLE_WORKDIR") or os.getcwd()
    proc, demo = start_demo(workdir)
    base = demo["base"]
    token = open(demo["token_file"]).read().strip()
    opts = Options()
    for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--window-size=1280,900",
              "--disable-dev-shm-usage"]:
        opts.add_argument(a)
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    driver = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=opts)
    driver.set_page_load_timeout(30)
    try:
        # No session: the login page; the API answers 401.
        driver.get(f"{base}/console/records")
        assert "/login" in driver.current_url, driver.current_url
        assert driver.find_element(By.CSS_SELECTOR, "input[type=password]")
        shot(driver, "login")
        status, _ = http("GET", f"{base}/records/someone@example.com")
        assert status == 401, status
        ok("without a session: the login page, and 401 from the API")

        # The demo's one-time link signs in.
        driver.get(demo["link"])
        assert driver.find_element(By.CSS_SELECTOR, "table.connectors")
        ok("the demo's one-time link signs in")

        # Every connector is listed and its counts move while the world syncs.
        connectors = {r.get_attribute("data-connector") for r in driver.find_elements(By.CSS_SELECTOR, "tr[data-connector]")}
        for c in ["hubspot", "salesforce", "zendesk", "stripe"]:
            assert c in connectors, connectors

        def counts():
            return {r.get_attribute("data-connector"): r.find_element(By.CSS_SELECTOR, "td[data-field=records_in]").text
                    for r in driver.find_elements(By.CSS_SELECTOR, "tr[data-connector]")}
        first = counts()
        wait_for("the counts to change without a reload", lambda: counts() != first, timeout=60)
        ok(f"the overview lists {len(connectors)} connectors and its counts change live")

        # A person held by three systems or more, from the export (with the token).
        def person():
            status, body = http("GET", f"{base}/records/export?kind=person&format=jsonl", token=token)
            assert status == 200, body[:200]
            for line in body.splitlines():
                rec = json.loads(line)
                systems = {l["connector"] for l in rec.get("sources", [])}
                links = {l["connector"]: l["external_id"] for l in rec.get("sources", [])}
                email = rec.get("fields", {}).get("email")
                if {"hubspot", "salesforce"} <= systems and len(systems) >= 3 and email:
                    return rec, links, email
            return None
        rec, links, email = wait_for("a person in three systems", person, timeout=120, every=2)
        shot(driver, "overview")

        # Search by email; the record page shows values with their sources.
        driver.find_element(By.LINK_TEXT, "Records").click()
        box = driver.find_element(By.ID, "q")
        box.send_keys(email)
        box.submit()
        wait_for("the record page", lambda: "/console/records/" in driver.current_url and driver.find_elements(By.CSS_SELECTOR, "tr[data-field]"))
        sources = {b.text for b in driver.find_elements(By.CSS_SELECTOR, "tr[data-field] td .badge")}
        systems = {li.find_element(By.TAG_NAME, "strong").text for li in driver.find_elements(By.CSS_SELECTOR, "ul.links li")}
        assert len(systems) >= 3, systems
        assert len(sources) >= 2, sources
        shot(driver, "record", whole=True)
        ok(f"{email}: copies in {sorted(systems)}, field values from {sorted(sources)}")

        # An edit in the grid reaches HubSpot and Salesforce.
        title = f"Head of Revenue Operations {int(time.time()) % 10000}"
        note = grid_edit(driver, base, email, title)
        assert "saved title" in note, note
        shot(driver, "grid")
        wait_for("the title in HubSpot", lambda: hubspot_title(demo["hubspot"], links["hubspot"]) == title, timeout=60)
        wait_for("the title in Salesforce", lambda: salesforce_title(demo["salesforce"], links["salesforce"]) == title, timeout=60)
        ok(f"a title edited in the grid reached HubSpot and Salesforce: {title!r}")

        # Too long for Salesforce: a dead letter, replayed from the console once fixed.
        long_title = "Vice President of " + "Revenue Operations and Customer Success, " * 4
        grid_edit(driver, base, email, long_title)

        def dead_letter():
            driver.get(f"{base}/console/dlq?connector=salesforce")
            rows = driver.find_elements(By.CSS_SELECTOR, "table.dlq tbody tr")
            return rows if rows and "STRING_TOO_LONG" in driver.page_source else None
        wait_for("Salesforce's refusal as a dead letter", dead_letter, timeout=90, every=1)
        shot(driver, "dead-letters")
        ok("a title too long for Salesforce is a dead letter, with its request and answer")
        fixed = f"VP Revenue Operations {int(time.time()) % 10000}"
        grid_edit(driver, base, email, fixed)
        wait_for("the fixed title in Salesforce", lambda: salesforce_title(demo["salesforce"], links["salesforce"]) == fixed, timeout=60)
        # Fixed at the source, the letters are replayed: each goes back to its queue, is
        # built from the record as it is now, and leaves the queue. "Replay all": a push of
        # the long title that was already under way when the first letter showed (the
        # record's HubSpot copy read back, say) may have left a second one.
        driver.get(f"{base}/console/dlq?connector=salesforce")
        driver.find_element(By.CSS_SELECTOR, "form[data-confirm^='Replay all'] button[type=submit]").click()
        driver.switch_to.alert.accept()
        wait_for("the replay note", lambda: re.search(r"replayed \d+ dead letters?", driver.page_source), timeout=20)

        def no_letter():
            driver.get(f"{base}/console/dlq?connector=salesforce")
            return not driver.find_elements(By.CSS_SELECTOR, "table.dlq tbody tr")
        try:
            wait_for("the dead letter to be gone", no_letter, timeout=60, every=1)
        except Exception:
            print(http("GET", f"{base}/admin/dlq?connector=salesforce", token=token)[1][:4000], file=sys.stderr)
            raise
        ok("the dead letter was replayed from the console and went through")

        # Revenue.
        driver.find_element(By.LINK_TEXT, "Revenue").click()
        assert driver.find_element(By.TAG_NAME, "h1").text == "Revenue"
        mrr = driver.find_element(By.CSS_SELECTOR, "[data-kpi=mrr]").text
        status, body = http("GET", f"{base}/kpi", token=token)
        want = json.loads(body)["now"]["USD"]["mrr"]
        assert mrr.replace(",", "") == f"{want // 100}.{want % 100:02d} USD", (mrr, want)
        # The bridge is drawn once a whole period with a known starting MRR exists; the
        # demo's history starts this month, so the page says why there is none yet.
        headings = [h.text for h in driver.find_elements(By.TAG_NAME, "h2")]
        assert any(h.startswith("MRR bridge") for h in headings), headings
        stages = driver.find_elements(By.CSS_SELECTOR, "table.stages tbody tr")
        assert stages, "the open pipeline by stage"
        shot(driver, "revenue", whole=True)
        ok(f"the revenue page shows today's MRR as GET /kpi does ({mrr})")

        # A POST without the session's CSRF token is refused and changes nothing.
        cookie = driver.get_cookie("revsync_session")
        assert cookie and cookie.get("httpOnly") and cookie.get("sameSite") == "Strict", cookie
        status, _ = http("POST", f"{base}/console/connectors/hubspot/pause",
                         form={"csrf": "forged"}, headers={"Cookie": f"revsync_session={cookie['value']}"})
        assert status == 403, status
        status, body = http("GET", f"{base}/status", token=token)
        hub = [c for c in json.loads(body)["connectors"] if c["id"] == "hubspot"][0]
        assert hub["state"] != "paused", hub
        ok("a POST without the CSRF token is refused and changes nothing")

        # Signing out ends the session.
        driver.get(f"{base}/")
        driver.find_element(By.CSS_SELECTOR, "form[action='/logout'] button").click()
        wait_for("the login page", lambda: "/login" in driver.current_url)
        driver.get(f"{base}/")
        assert "/login" in driver.current_url
        status, _ = http("GET", f"{base}/", headers={"Cookie": f"revsync_session={cookie['value']}"})
        assert status == 303, status
        ok("signing out ends the session")

        # The login form signs in with the token; on a phone's width nothing overflows.
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
        wait_for("the overview", lambda: driver.find_elements(By.CSS_SELECTOR, "table.connectors"))
        driver.set_window_size(390, 844)
        driver.get(f"{base}/")
        width = driver.execute_script("return document.documentElement.scrollWidth")
        inner = driver.execute_script("return window.innerWidth")
        assert width <= inner, f"the page is {width}px wide in a {inner}px window"
        shot(driver, "overview-phone")
        ok(f"the login form signs in; at {inner}px wide the page does not overflow")
    finally:
        driver.quit()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
