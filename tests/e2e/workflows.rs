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

/// Zendesk's exports hold back their newest minute, and creates there wait until a read
/// reaches past the minute that was held back when the daemon started: the account's
/// clock moves on a minute every second, rather than the test waiting for it. Stops
/// when dropped.
struct ClockMover(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl ClockMover {
    fn start(rig: &Rig) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (zd, flag) = (rig.sims.zendesk.clone(), stop.clone());
        std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                zd.advance(61);
            }
        });
        ClockMover(stop)
    }
}

impl Drop for ClockMover {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
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

    let _clock = ClockMover::start(&rig);
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

const SUBSCRIBE: &str = "deal-won-subscription";
const ONBOARD: &str = "subscription-onboarding";

/// HubSpot companies and deals in; companies out to Stripe as customers; subscriptions
/// made in Stripe by a rule and read back; onboarding tickets out to Zendesk.
fn write_chain_config(dir: &Path, price: &str) {
    write_config(dir);
    std::fs::write(
        dir.join("connectors/hubspot.yaml"),
        "version: 1\nid: hubspot\ntype: hubspot\nparams:\n  token: pat-na1-revsync-demo\n  base_url: ${DEMO_HUBSPOT_URL}\n  search_overlap_secs: 1\npoll:\n  interval_secs: 1\nobjects:\n  companies:\n    kind: organization\n    direction: in\n    fields: { name: name, domain: domain }\n  deals:\n    kind: deal\n    direction: in\n    fields: { dealname: name, dealstage: { to: stage, map: default }, associatedcompanyid: { to: organization, ref: companies } }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("connectors/stripe.yaml"),
        "version: 1\nid: stripe\ntype: stripe\nparams:\n  secret_key: sk_test_revsync_demo\n  base_url: ${DEMO_STRIPE_URL}\n  customers_as: organization\n  allow_billing_writes: true\npoll:\n  interval_secs: 1\nobjects:\n  customers:\n    kind: organization\n    fields: { name: name }\n  subscriptions:\n    kind: subscription\n    fields:\n      status: { to: status, map: default, direction: in }\n      plan: plan\n      quantity: quantity\n      customer: { to: customer, ref: customers }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("workflows/onboarding.yaml"),
        format!(
            "version: 1\nrules:\n  - name: {SUBSCRIBE}\n    on: {{ changed: deal.status, to: won }}\n    when: record.organization\n    do:\n      - create:\n          kind: subscription\n          route: [stripe]\n          fields:\n            customer: \"{{{{ record.organization.id }}}}\"\n            plan: {price}\n            quantity: 2\n  - name: {ONBOARD}\n    on: {{ changed: subscription.status, to: active }}\n    do:\n      - create:\n          kind: ticket\n          route: [zendesk]\n          fields:\n            subject: \"Onboarding: {{{{ record.customer.name }}}}\"\n            priority: normal\n            status: new\n"
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_won_deal_becomes_one_stripe_subscription_and_one_onboarding_ticket_across_a_kill() {
    let _one = crate::ONE_AT_A_TIME.lock().await;
    let mut deal = String::new();
    let mut price = String::new();
    let rig = Rig::custom(
        |sims| {
            price = sims.stripe.create_price(5_000, "usd", "month", 1, false);
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
                    ("associatedcompanyid", company.as_str()),
                ],
                1_700_000_000_000,
            );
            vec![
                format!("hubspot:companies:{company}"),
                format!("hubspot:deals:{deal}"),
            ]
        },
        |dir| write_chain_config(dir, "PRICE"),
    )
    .await;
    // The price id is known once the simulator made it.
    let file = rig.config_dir().join("workflows/onboarding.yaml");
    let rules = std::fs::read_to_string(&file)
        .unwrap()
        .replace("PRICE", &price);
    std::fs::write(&file, rules).unwrap();
    let _clock = ClockMover::start(&rig);

    // Acme becomes a Stripe customer; the deal, not won yet, starts nothing.
    let mut d = rig.start();
    wait_for(&d, "Acme as a Stripe customer", CONVERGE, || {
        rig.sims.stripe.ids("customers").len() == 1
    })
    .await;
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
        serde_json::json!(price)
    );
    assert_eq!(sub["items"]["data"][0]["quantity"], serde_json::json!(2));
    assert_eq!(subjects(&rig), ["Onboarding: Acme"], "{}", d.log_tail());
    d.stop();
}
