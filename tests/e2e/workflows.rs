//! Workflows against the simulators (issue 22): a deal won in HubSpot opens one
//! onboarding ticket in Zendesk, whatever moment the daemon is killed with SIGKILL at:
//! the run decided and nothing kept, the run kept and its push not sent, the deal's
//! change itself not yet written. Counted in the Zendesk simulator, not the daemon.

use std::path::Path;
use std::time::Duration;

use super::harness::Rig;

const CONVERGE: Duration = Duration::from_secs(180);
const RULE: &str = "won-deal-onboarding";

fn write_config(dir: &Path) {
    super::harness::write_daemon_yaml(dir);
    std::fs::write(
        dir.join("connectors/hubspot.yaml"),
        "version: 1\nid: hubspot\ntype: hubspot\nparams:\n  token: pat-na1-revsync-demo\n  base_url: ${DEMO_HUBSPOT_URL}\n  search_overlap_secs: 1\npoll:\n  interval_secs: 1\nobjects:\n  deals:\n    kind: deal\n    direction: in\n    fields: { dealname: name, dealstage: { to: stage, map: default } }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("connectors/zendesk.yaml"),
        "version: 1\nid: zendesk\ntype: zendesk\nparams:\n  base_url: ${DEMO_ZENDESK_URL}\n  auth:\n    method: api_token\n    email: ops@acme.example\n    token: zendesk-revsync-demo-token\n  requests_per_minute: 700\n  exports_per_minute: 600\n  ticket_writes: true\npoll:\n  interval_secs: 1\nobjects:\n  tickets:\n    kind: ticket\n    direction: both\n    fields:\n      subject: subject\n      status: { to: status, map: default }\n      priority: { to: priority, map: default }\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    std::fs::write(
        dir.join("workflows/onboarding.yaml"),
        format!(
            "version: 1\nrules:\n  - name: {RULE}\n    on: {{ changed: deal.status, to: won }}\n    do:\n      - create:\n          kind: ticket\n          route: [zendesk]\n          fields:\n            subject: \"Onboarding: {{{{ record.name }}}}\"\n            priority: normal\n            status: new\n"
        ),
    )
    .unwrap();
}

/// Subjects of the tickets Zendesk holds, sorted (a twice-made ticket shows twice).
fn subjects(rig: &Rig) -> Vec<String> {
    let zd = &rig.sims.zendesk;
    let mut s: Vec<String> = zd
        .ids("tickets")
        .iter()
        .filter_map(|id| zd.record("tickets", id))
        .filter_map(|t| t["subject"].as_str().map(str::to_owned))
        .collect();
    s.sort();
    s
}

/// Starts the daemon with the crash point `point` armed and waits for its SIGKILL.
fn crash_at(rig: &Rig, point: &str) {
    let mut crashed = rig.start_with(&[("FAILPOINTS", point)]);
    let died = crashed.wait_exit(Duration::from_secs(90));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&died),
        Some(libc::SIGKILL),
        "{point} did not fire ({died}); is the `failpoints` feature on?\n{}",
        crashed.log_tail()
    );
}

/// Polls `done` until it holds; panics with `what` and the daemon's log after `within`.
/// A run's outcome is awaited in the simulators, not by a whole convergence: the last
/// step of each test converges once, which is where a repeated action would show.
async fn wait_for(
    d: &super::harness::Daemon,
    what: &str,
    within: Duration,
    done: impl Fn() -> bool,
) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(
            start.elapsed() < within,
            "{what}: not within {within:?}\n{}",
            d.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_won_deal_opens_one_zendesk_ticket_whenever_the_daemon_is_killed() {
    let _one = crate::ONE_AT_A_TIME.lock().await;
    let mut deals = Vec::new();
    let rig = Rig::custom(
        |sims| {
            for name in ["Acme", "Globex", "Initech", "Umbrella"] {
                let id = sims.hubspot.create_at(
                    "deals",
                    &[("dealname", name), ("dealstage", "appointmentscheduled")],
                    1_700_000_000_000,
                );
                deals.push(id);
            }
            deals
                .iter()
                .map(|id| format!("hubspot:deals:{id}"))
                .collect()
        },
        write_config,
    )
    .await;

    // The first read is HubSpot's past: no rule runs on it.
    let mut d = rig.start();
    d.converge(&rig.sims, CONVERGE).await;
    assert!(subjects(&rig).is_empty(), "{:?}", subjects(&rig));
    // Won while the daemon runs: the ticket follows.
    rig.sims
        .hubspot
        .update("deals", &deals[0], &[("dealstage", "closedwon")]);
    wait_for(&d, "Acme's ticket", CONVERGE, || {
        subjects(&rig) == ["Onboarding: Acme"]
    })
    .await;
    d.stop();

    // Each crash moment, with a deal won while the daemon was down.
    for (deal, point, name) in [
        (&deals[1], format!("workflow-act=return({RULE})"), "Globex"),
        (
            &deals[2],
            format!("workflow-acted=return({RULE})"),
            "Initech",
        ),
        (
            &deals[3],
            "engine-apply-write=return(hubspot/deals)".to_owned(),
            "Umbrella",
        ),
    ] {
        rig.sims
            .hubspot
            .update("deals", deal, &[("dealstage", "closedwon")]);
        crash_at(&rig, &point);
        let mut d = rig.start();
        let want = format!("Onboarding: {name}");
        wait_for(
            &d,
            &format!("{name}'s ticket after {point}"),
            CONVERGE,
            || subjects(&rig).contains(&want),
        )
        .await;
        d.stop();
    }
    // Whatever a restart still had to do is done: one ticket per won deal, none twice.
    let mut d = rig.start();
    d.converge(&rig.sims, CONVERGE).await;
    d.stop();
    assert_eq!(
        subjects(&rig),
        [
            "Onboarding: Acme",
            "Onboarding: Globex",
            "Onboarding: Initech",
            "Onboarding: Umbrella"
        ]
    );
}

/// A shipped example rule file (config/examples/workflows/), copied as it is.
fn shipped(dir: &Path, file: &str) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/examples/workflows")
        .join(file);
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    std::fs::copy(from, dir.join("workflows").join(file)).unwrap();
}

const SUBSCRIBE: &str = "deal-won-subscription";
const ONBOARD: &str = "subscription-onboarding-ticket";

/// HubSpot companies and deals in; companies out to Stripe as customers; subscriptions
/// made in Stripe by the shipped rule 2 and read back; onboarding tickets out to Zendesk
/// by the shipped rule 3.
fn write_chain_config(dir: &Path) {
    write_config(dir);
    std::fs::remove_file(dir.join("workflows/onboarding.yaml")).unwrap();
    std::fs::write(
        dir.join("connectors/hubspot.yaml"),
        "version: 1\nid: hubspot\ntype: hubspot\nparams:\n  token: pat-na1-revsync-demo\n  base_url: ${DEMO_HUBSPOT_URL}\n  search_overlap_secs: 1\npoll:\n  interval_secs: 1\nobjects:\n  companies:\n    kind: organization\n    direction: in\n    fields: { name: name, domain: domain }\n  deals:\n    kind: deal\n    direction: in\n    fields: { dealname: name, dealstage: { to: stage, map: default }, hubspot_owner_id: owner, associatedcompanyid: { to: organization, ref: companies } }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("connectors/stripe.yaml"),
        "version: 1\nid: stripe\ntype: stripe\nparams:\n  secret_key: sk_test_revsync_demo\n  base_url: ${DEMO_STRIPE_URL}\n  customers_as: organization\n  allow_billing_writes: true\npoll:\n  interval_secs: 1\nobjects:\n  customers:\n    kind: organization\n    fields: { name: name }\n  subscriptions:\n    kind: subscription\n    fields:\n      status: { to: status, map: default, direction: in }\n      plan: plan\n      quantity: quantity\n      mrr: { to: mrr, currency_field: currency, minor_units: true, direction: in }\n      currency: { to: currency, direction: in }\n      customer: { to: customer, ref: customers }\n",
    )
    .unwrap();
    shipped(dir, "2-deal-won-to-subscription.yaml");
    shipped(dir, "3-subscription-active-onboarding.yaml");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_won_deal_becomes_one_stripe_subscription_and_one_onboarding_ticket_across_a_kill() {
    let _one = crate::ONE_AT_A_TIME.lock().await;
    let mut deal = String::new();
    let rig = Rig::custom(
        |sims| {
            // The price the shipped rule's product-to-price map falls back to.
            sims.stripe
                .seed_price("price_growth_monthly", 9_900, "usd", "month", 1, false);
            let company = sims.hubspot.create_at(
                "companies",
                &[("name", "Acme"), ("domain", "acme.example")],
                1_700_000_000_000,
            );
            deal = sims.hubspot.create_at(
                "deals",
                &[
                    ("dealname", "Acme platform"),
                    ("dealstage", "appointmentscheduled"),
                    ("hubspot_owner_id", "7001"),
                    ("associatedcompanyid", company.as_str()),
                ],
                1_700_000_000_000,
            );
            vec![
                format!("hubspot:companies:{company}"),
                format!("hubspot:deals:{deal}"),
            ]
        },
        write_chain_config,
    )
    .await;

    // Acme becomes a Stripe customer; the deal, not won yet, starts nothing. Stopped once
    // HubSpot's deals were read through: a deal won after that is news, not the past.
    let mut d = rig.start();
    wait_for(&d, "Acme as a Stripe customer", CONVERGE, || {
        rig.sims.stripe.ids("customers").len() == 1
    })
    .await;
    read_through(&d, "hubspot", "deals").await;
    assert!(rig.sims.stripe.ids("subscriptions").is_empty());
    d.stop();

    // Won while the daemon is down; it dies as the second rule's run is decided.
    rig.sims
        .hubspot
        .update("deals", &deal, &[("dealstage", "closedwon")]);
    let point = format!("workflow-act=return({ONBOARD})");
    crash_at(&rig, &point);
    let mut d = rig.start();
    wait_for(&d, "the subscription and its ticket", CONVERGE, || {
        !subjects(&rig).is_empty()
    })
    .await;
    d.converge(&rig.sims, CONVERGE).await;
    let subs = rig.sims.stripe.ids("subscriptions");
    assert_eq!(subs.len(), 1, "one subscription: {subs:?}");
    let sub = rig.sims.stripe.get("subscriptions", &subs[0]).unwrap();
    assert_eq!(
        sub["items"]["data"][0]["price"]["id"],
        serde_json::json!("price_growth_monthly")
    );
    assert_eq!(sub["items"]["data"][0]["quantity"], serde_json::json!(1));
    // Stripe bills the first period itself.
    assert!(!rig.sims.stripe.ids("invoices").is_empty());
    assert_eq!(
        subjects(&rig),
        ["Onboarding: Acme (deal owner: 7001)"],
        "{}",
        d.log_tail()
    );
    assert_eq!(done_runs(&d, SUBSCRIBE).await, 1);
    assert_eq!(done_runs(&d, ONBOARD).await, 1);
    // The KPIs count it: the rule wrote `incomplete` a moment before Stripe (whose clock
    // has whole seconds) said `active`, and the history still ends with what Stripe said.
    let kpi: serde_json::Value = serde_json::from_str(&d.get_text("/kpi").await).unwrap();
    assert_eq!(kpi["now"]["USD"]["mrr"], 9_900, "{kpi}");

    // A dry run of either rule says what it would do (a second subscription, a second
    // ticket) and changes nothing in any simulator.
    let before = held(&rig);
    for (rule, copy) in [
        (SUBSCRIBE, format!("hubspot:deals:{deal}")),
        (ONBOARD, format!("stripe:subscriptions:{}", subs[0])),
    ] {
        let id = d.record(&copy).await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let text = d
            .get_text(&format!("/admin/workflows/{rule}/test/{id}"))
            .await;
        assert!(text.contains("create"), "{rule}: {text}");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(held(&rig), before, "a dry run changed a simulator");
    d.stop();
}

/// Every record the four simulators hold (the objects these tests use), as text.
fn held(rig: &Rig) -> Vec<String> {
    let s = &rig.sims;
    let mut out = Vec::new();
    for object in ["contacts", "companies", "deals"] {
        for id in s.hubspot.ids(object) {
            out.push(format!(
                "hubspot {object} {id} {:?}",
                s.hubspot.get(object, &id)
            ));
        }
    }
    for object in ["customers", "subscriptions", "invoices"] {
        for id in s.stripe.ids(object) {
            out.push(format!(
                "stripe {object} {id} {:?}",
                s.stripe.get(object, &id)
            ));
        }
    }
    for object in ["users", "organizations", "tickets"] {
        for id in s.zendesk.ids(object) {
            out.push(format!(
                "zendesk {object} {id} {:?}",
                s.zendesk.record(object, &id)
            ));
        }
    }
    for object in ["Contact", "Lead", "Account", "Opportunity"] {
        for id in s.salesforce.ids(object) {
            let fields = s.salesforce.record(&id).map(|r| format!("{:?}", r.fields));
            out.push(format!("salesforce {object} {id} {fields:?}"));
        }
    }
    out
}

/// Waits until `/status` lists `object` of `connector` as read through (its past is in).
async fn read_through(d: &super::harness::Daemon, connector: &str, object: &str) {
    let start = std::time::Instant::now();
    loop {
        let through = d.status().await.is_some_and(|s| {
            s["connectors"].as_array().is_some_and(|cs| {
                cs.iter().any(|c| {
                    c["id"] == connector
                        && c["read_through"]
                            .as_array()
                            .is_some_and(|o| o.iter().any(|o| o == object))
                })
            })
        });
        if through {
            return;
        }
        assert!(
            start.elapsed() < CONVERGE,
            "{connector}/{object} not read through\n{}",
            d.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Done runs of `rule`, from the daemon's run log.
async fn done_runs(d: &super::harness::Daemon, rule: &str) -> usize {
    let text = d
        .get_text(&format!("/admin/workflows/runs?rule={rule}&limit=1000"))
        .await;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["status"] == "done")
        .count()
}

const LEAD: &str = "webinar-registrant-to-lead";
const MQL: &str = "webinar-attendee-to-mql";

/// Shipped example 1: registrants of the webinar platform (the declarative REST connector
/// of the demo) become HubSpot leads, and an attendee an MQL, with a SIGKILL in the middle
/// of each rule; counted in HubSpot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webinar_registrants_become_leads_and_attendees_mqls_across_kills() {
    let _one = crate::ONE_AT_A_TIME.lock().await;
    let mut webinar = String::new();
    let rig = Rig::custom(
        |sims| {
            let (w, _) = sims.webinar.seed(1, 0);
            webinar = w[0].clone();
            let old = sims.webinar.register(
                &webinar, "early@webinar.example", "Early", "Bird", Some("Initech"), None,
            );
            vec![format!("webinar:registrants:{old}")]
        },
        |dir| {
            super::harness::write_daemon_yaml(dir);
            let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo/connectors");
            let webinar = std::fs::read_to_string(demo.join("webinar.yaml"))
                .unwrap()
                .replace("interval_secs: 2", "interval_secs: 1");
            std::fs::write(dir.join("connectors/webinar.yaml"), webinar).unwrap();
            std::fs::write(
                dir.join("connectors/hubspot.yaml"),
                "version: 1\nid: hubspot\ntype: hubspot\nparams:\n  token: pat-na1-revsync-demo\n  base_url: ${DEMO_HUBSPOT_URL}\n  search_overlap_secs: 1\npoll:\n  interval_secs: 1\nobjects:\n  contacts:\n    kind: person\n    fields: { email: email, firstname: first_name, lastname: last_name, lifecyclestage: { to: lifecycle_stage, map: default } }\n",
            )
            .unwrap();
            shipped(dir, "1-webinar-to-lead.yaml");
        },
    )
    .await;
    let stage = |email: &str| -> Vec<String> {
        let hs = &rig.sims.hubspot;
        hs.ids("contacts")
            .iter()
            .filter_map(|id| hs.get("contacts", id))
            .filter(|p| p.get("email").map(String::as_str) == Some(email))
            .map(|p| p.get("lifecyclestage").cloned().unwrap_or_default())
            .collect()
    };

    // The registrant from before revsync is the webinar's past: a contact, no rule run.
    let mut d = rig.start();
    d.converge(&rig.sims, CONVERGE).await;
    assert_eq!(stage("early@webinar.example"), ["lead"]);
    assert_eq!(done_runs(&d, LEAD).await, 0);
    d.stop();

    // Registered while the daemon is down; it dies as the lead rule's run is decided.
    let ada = rig.sims.webinar.register(
        &webinar,
        "ada@webinar.example",
        "Ada",
        "Lovelace",
        Some("Analytical"),
        None,
    );
    crash_at(&rig, &format!("workflow-act=return({LEAD})"));
    let mut d = rig.start();
    wait_for(&d, "Ada as a HubSpot lead", CONVERGE, || {
        stage("ada@webinar.example") == ["lead"]
    })
    .await;
    let view = d
        .record(&format!("webinar:registrants:{ada}"))
        .await
        .unwrap();
    assert_eq!(view["fields"]["lead_status"]["value"], "new", "{view}");
    d.stop();

    // She attends; the daemon dies once the MQL rule's write is kept, before its push.
    rig.sims
        .webinar
        .update(&ada, serde_json::json!({"attended": true}));
    crash_at(&rig, &format!("workflow-acted=return({MQL})"));
    let mut d = rig.start();
    wait_for(&d, "Ada as an MQL in HubSpot", CONVERGE, || {
        stage("ada@webinar.example") == ["marketingqualifiedlead"]
    })
    .await;
    d.converge(&rig.sims, CONVERGE).await;
    // Once each: one contact each, one run each.
    assert_eq!(stage("ada@webinar.example"), ["marketingqualifiedlead"]);
    assert_eq!(stage("early@webinar.example"), ["lead"]);
    assert_eq!(done_runs(&d, LEAD).await, 1, "{}", d.log_tail());
    assert_eq!(done_runs(&d, MQL).await, 1);
    d.stop();
}

const AT_RISK: &str = "past-due-at-risk";

/// Shipped example 4: a subscription going past due flags its customer at risk in
/// HubSpot when the customer has an open urgent Zendesk ticket, and only then; a SIGKILL
/// as the run is decided. The company is one record across HubSpot, Stripe and Zendesk
/// (joined by domain).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_past_due_subscription_with_an_urgent_ticket_flags_the_company_across_a_kill() {
    let _one = crate::ONE_AT_A_TIME.lock().await;
    let mut subs = Vec::new();
    let mut companies = Vec::new();
    let rig = Rig::custom(
        |sims| {
            let price = sims.stripe.create_price(9_900, "usd", "month", 1, false);
            let zd = &sims.zendesk;
            let mut refs = Vec::new();
            for (name, priority) in [("Acme", "urgent"), ("Globex", "normal")] {
                let domain = format!("{}.example", name.to_lowercase());
                let company = sims.hubspot.create_at(
                    "companies",
                    &[("name", name), ("domain", domain.as_str())],
                    1_700_000_000_000,
                );
                let org = zd.seed_at("organizations", 1, zd.now() - 3_600)[0].clone();
                zd.update(
                    "organizations",
                    &org,
                    serde_json::json!({"name": name, "domain_names": [domain]}),
                );
                let ticket = zd.seed_at("tickets", 1, zd.now() - 3_600)[0].clone();
                zd.update(
                    "tickets",
                    &ticket,
                    serde_json::json!({"subject": format!("{name} is down"), "status": "open",
                        "priority": priority, "organization_id": org.parse::<u64>().unwrap()}),
                );
                let customer = sims.stripe.seed_customer(name, &format!("ap@{domain}"));
                sims.stripe.update_customer(
                    &customer,
                    serde_json::json!({"metadata": {"hubspot_company_id": company}}),
                );
                let sub = sims
                    .stripe
                    .seed_subscription(&customer, &[(price.as_str(), 1)], "active")
                    .unwrap();
                refs.extend([
                    format!("hubspot:companies:{company}"),
                    format!("zendesk:organizations:{org}"),
                    format!("zendesk:tickets:{ticket}"),
                    format!("stripe:customers:{customer}"),
                    format!("stripe:subscriptions:{sub}"),
                ]);
                companies.push(company);
                subs.push(sub);
            }
            refs
        },
        |dir| {
            super::harness::write_daemon_yaml(dir);
            std::fs::write(
                dir.join("connectors/hubspot.yaml"),
                "version: 1\nid: hubspot\ntype: hubspot\nparams:\n  token: pat-na1-revsync-demo\n  base_url: ${DEMO_HUBSPOT_URL}\n  search_overlap_secs: 1\npoll:\n  interval_secs: 1\nobjects:\n  companies:\n    kind: organization\n    fields: { name: name, domain: domain, at_risk: custom.at_risk, at_risk_reason: custom.at_risk_reason }\n",
            )
            .unwrap();
            std::fs::write(
                dir.join("connectors/stripe.yaml"),
                "version: 1\nid: stripe\ntype: stripe\nparams:\n  secret_key: sk_test_revsync_demo\n  base_url: ${DEMO_STRIPE_URL}\n  customers_as: organization\npoll:\n  interval_secs: 1\nobjects:\n  customers:\n    kind: organization\n    direction: in\n    fields: { name: name, metadata.hubspot_company_id: { xref: hubspot.companies } }\n  subscriptions:\n    kind: subscription\n    direction: in\n    fields:\n      status: { to: status, map: default }\n      plan: plan\n      customer: { to: customer, ref: customers }\n",
            )
            .unwrap();
            std::fs::write(
                dir.join("connectors/zendesk.yaml"),
                "version: 1\nid: zendesk\ntype: zendesk\nparams:\n  base_url: ${DEMO_ZENDESK_URL}\n  auth:\n    method: api_token\n    email: ops@acme.example\n    token: zendesk-revsync-demo-token\n  requests_per_minute: 700\n  exports_per_minute: 600\npoll:\n  interval_secs: 1\nobjects:\n  organizations:\n    kind: organization\n    direction: in\n    fields: { name: name, domain_names: domains }\n  tickets:\n    kind: ticket\n    direction: in\n    fields:\n      subject: subject\n      status: { to: status, map: default }\n      priority: { to: priority, map: default }\n      organization_id: { to: organization, ref: organizations }\n",
            )
            .unwrap();
            shipped(dir, "4-past-due-at-risk.yaml");
        },
    )
    .await;
    let flag = |company: &str| {
        let p = rig
            .sims
            .hubspot
            .get("companies", company)
            .unwrap_or_default();
        (
            p.get("at_risk").cloned().unwrap_or_default(),
            p.get("at_risk_reason").cloned().unwrap_or_default(),
        )
    };

    let mut d = rig.start();
    d.converge(&rig.sims, CONVERGE).await;
    assert_eq!(flag(&companies[0]).0, "", "nothing past due yet");
    d.stop();

    // Both fall past due while the daemon is down; it dies as the run is decided.
    for sub in &subs {
        rig.sims.stripe.set_subscription_status(sub, "past_due");
    }
    crash_at(&rig, &format!("workflow-act=return({AT_RISK})"));
    let mut d = rig.start();
    wait_for(&d, "Acme flagged at risk in HubSpot", CONVERGE, || {
        flag(&companies[0]).0 == "true"
    })
    .await;
    d.converge(&rig.sims, CONVERGE).await;
    assert!(
        flag(&companies[0]).1.contains("past due"),
        "{:?}",
        flag(&companies[0])
    );
    // Globex's open ticket is not urgent: no flag, no run.
    assert_eq!(flag(&companies[1]).0, "");
    assert_eq!(done_runs(&d, AT_RISK).await, 1, "{}", d.log_tail());
    d.stop();
}
