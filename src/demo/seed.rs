//! Starting the four simulators and loading each with its part of the generated world,
//! through the simulators' own seeding hooks (as users of those systems would create
//! the records), not through their rate-limited APIs.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use serde_json::{json, Map, Value};

use super::world::{World, PLANS};

use revsync_hubspot::sim as hs;
use revsync_rest::sim as wb;
use revsync_salesforce::sim as sf;
use revsync_stripe::sim as st;
use revsync_zendesk::sim as zd;

/// Connector ids of the demo configuration (config/demo/connectors/*.yaml).
pub const HUBSPOT: &str = "hubspot";
pub const SALESFORCE: &str = "salesforce";
pub const ZENDESK: &str = "zendesk";
pub const STRIPE: &str = "stripe";
pub const WEBINAR: &str = "webinar";

/// The running simulators: the four systems, and the webinar platform the `type: rest`
/// connector is declared against.
pub struct Sims {
    pub hubspot: hs::Sim,
    pub salesforce: sf::Sim,
    pub zendesk: zd::Sim,
    pub stripe: st::Sim,
    pub webinar: wb::Sim,
}

/// A copy the world put in a system: (connector id, object, external id).
pub type CopyRef = (&'static str, &'static str, String);

/// Simulator credentials: fixed, public and only ever valid against these simulators.
pub fn hubspot_options(webhook_url: Option<String>) -> hs::SimOptions {
    hs::SimOptions {
        token: "pat-na1-revsync-demo".into(),
        client_secret: "revsync-demo-client-secret".into(),
        webhook_url,
        ..hs::SimOptions::default()
    }
}

pub fn stripe_config(webhook_url: Option<String>) -> st::SimConfig {
    st::SimConfig {
        secret_key: "sk_test_revsync_demo".into(),
        webhook: webhook_url.map(|u| (u, "whsec_revsync_demo".into())),
        ..st::SimConfig::default()
    }
}

pub fn zendesk_config() -> zd::SimConfig {
    zd::SimConfig {
        email: "ops@acme.example".into(),
        token: "zendesk-revsync-demo-token".into(),
        webhook_secret: "zendesk-revsync-demo-webhook-secret".into(),
        ..zd::SimConfig::default()
    }
}

/// Webhooks are set after seeding (`Sim::set_webhook`): the world is history, not news.
pub fn webinar_config() -> wb::SimConfig {
    wb::SimConfig {
        tokens: vec!["webinar-revsync-demo-token".into()],
        webhook_secret: "webinar-revsync-demo-webhook-secret".into(),
        ..wb::SimConfig::default()
    }
}

impl Sims {
    pub async fn start() -> anyhow::Result<Sims> {
        Ok(Sims {
            hubspot: hs::Sim::start(hubspot_options(None)).await,
            salesforce: sf::Sim::start().await?,
            zendesk: zd::Sim::start(zendesk_config()).await,
            stripe: st::Sim::start(stripe_config(None)).await,
            webinar: wb::Sim::start(webinar_config()).await,
        })
    }

    /// The `${...}` values config/demo/connectors/*.yaml refer to.
    pub fn env(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("DEMO_HUBSPOT_URL".to_owned(), self.hubspot.url()),
            (
                "DEMO_SALESFORCE_TOKEN_URL".to_owned(),
                self.salesforce.token_url(),
            ),
            ("DEMO_ZENDESK_URL".to_owned(), self.zendesk.base_url()),
            ("DEMO_STRIPE_URL".to_owned(), self.stripe.base_url()),
            ("DEMO_WEBINAR_URL".to_owned(), self.webinar.base_url()),
        ])
    }
}

/// A title a rep changes in Salesforce while the demo runs: (record id, new title).
pub type TitleEdit = (String, String);

/// Every copy seeded, so the summary can ask the daemon which canonical record each became,
/// and the Salesforce title edits still to make.
pub fn seed_all(sims: &Sims, w: &World) -> (Vec<CopyRef>, Vec<TitleEdit>) {
    let mut refs = Vec::new();
    seed_hubspot(&sims.hubspot, w, &mut refs);
    seed_zendesk(&sims.zendesk, w, &mut refs);
    seed_stripe(&sims.stripe, w, &mut refs);
    let edits = seed_salesforce(&sims.salesforce, w, &mut refs);
    (refs, edits)
}

/// The rep's edits, stamped now: newer than anything HubSpot holds for those people.
pub fn edit_titles(sim: &sf::Sim, edits: &[TitleEdit]) {
    let now = Utc::now();
    sim.with(|s| {
        for (id, title) in edits {
            if let Some(r) = s.records.get_mut(id) {
                r.fields.insert("Title".into(), json!(title));
                r.stamp = now;
            }
        }
    });
}

pub fn seed_hubspot(sim: &hs::Sim, w: &World, refs: &mut Vec<CopyRef>) {
    let mut company_ids = BTreeMap::new();
    let ids = sim.seed("companies", w.hubspot_companies.len());
    for (c, id) in w.hubspot_companies.iter().zip(ids) {
        let Some(co) = w.companies.get(c.company) else {
            continue;
        };
        let employees = co.employees.to_string();
        // The generated placeholder domain must go: an empty one is "no domain".
        let props = [
            ("name", co.name.as_str()),
            ("domain", c.domain.as_deref().unwrap_or("")),
            ("website", c.website.as_deref().unwrap_or("")),
            ("industry", co.industry),
            ("numberofemployees", employees.as_str()),
        ];
        sim.update("companies", &id, &props);
        company_ids.insert(c.company, id.clone());
        refs.push((HUBSPOT, "companies", id));
    }
    let ids = sim.seed("contacts", w.hubspot_contacts.len());
    for (c, id) in w.hubspot_contacts.iter().zip(ids) {
        let Some(p) = w.people.get(c.person) else {
            continue;
        };
        let mut props = vec![
            ("email", c.email.as_str()),
            ("firstname", p.first.as_str()),
            ("lastname", p.last.as_str()),
            ("lifecyclestage", "lead"),
        ];
        if let Some(phone) = &c.phone {
            props.push(("phone", phone));
        }
        if let Some(t) = &c.title {
            props.push(("jobtitle", t));
        }
        if let Some(co) = company_ids.get(&p.company) {
            props.push(("associatedcompanyid", co));
        }
        sim.update("contacts", &id, &props);
        refs.push((HUBSPOT, "contacts", id));
    }
    let ids = sim.seed("deals", w.hubspot_deals.len());
    for (d, id) in w.hubspot_deals.iter().zip(ids) {
        let amount = d.amount.to_string();
        let close = format!("{}T00:00:00.000Z", d.close_date);
        let mut props = vec![
            ("dealname", d.name.as_str()),
            ("amount", amount.as_str()),
            ("deal_currency_code", "USD"),
            ("dealstage", d.stage),
            ("pipeline", "default"),
            ("closedate", close.as_str()),
        ];
        if let Some(co) = company_ids.get(&d.company) {
            props.push(("associatedcompanyid", co));
        }
        sim.update("deals", &id, &props);
        refs.push((HUBSPOT, "deals", id));
    }
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

pub fn seed_salesforce(sim: &sf::Sim, w: &World, refs: &mut Vec<CopyRef>) -> Vec<TitleEdit> {
    // Records were last modified over the past month; the "edited later" titles change
    // while the demo runs, after the daemon has read both systems: an edit made while
    // the sync is live, not a timestamp race at start-up.
    let now = Utc::now();
    let mut past = now - Duration::days(30);
    let mut edits = Vec::new();
    let mut next_past = || {
        past += Duration::seconds(7);
        past
    };
    sim.with(|s| {
        let mut accounts = BTreeMap::new();
        for (company, website) in &w.salesforce_accounts {
            let Some(co) = w.companies.get(*company) else {
                continue;
            };
            let id = s.insert(
                "Account",
                obj(
                    json!({"Name": co.name, "Website": website, "Industry": "Technology",
                           "NumberOfEmployees": co.employees}),
                ),
            );
            set_stamp(s, &id, next_past());
            accounts.insert(*company, id.clone());
            refs.push((SALESFORCE, "Account", id));
        }
        for sp in &w.salesforce_people {
            let c = &sp.copy;
            let Some(p) = w.people.get(c.person) else {
                continue;
            };
            let first = sp.first.as_deref().unwrap_or(&p.first);
            let mut f = obj(json!({"FirstName": first, "LastName": p.last}));
            if !c.email.is_empty() {
                f.insert("Email".into(), json!(c.email));
            }
            if let Some(phone) = &c.phone {
                f.insert("Phone".into(), json!(phone));
            }
            match &c.title {
                Some(t) if sp.edited_later => {
                    f.insert("Title".into(), json!(p.title));
                    edits.push((t.clone(), t.clone()));
                }
                Some(t) => {
                    f.insert("Title".into(), json!(t));
                }
                None => {}
            }
            let object = if sp.lead {
                let company = w.companies.get(p.company).map(|co| co.name.as_str());
                f.insert("Company".into(), json!(company));
                f.insert("Status".into(), json!("Open - Not Contacted"));
                "Lead"
            } else {
                if let Some(a) = accounts.get(&p.company) {
                    f.insert("AccountId".into(), json!(a));
                }
                "Contact"
            };
            let id = s.insert(object, f);
            let stamp = if sp.retyped {
                now - Duration::days(31)
            } else {
                next_past()
            };
            set_stamp(s, &id, stamp);
            if sp.edited_later {
                if let Some(e) = edits.last_mut() {
                    e.0 = id.clone();
                }
            }
            refs.push((SALESFORCE, object, id));
        }
        for d in &w.salesforce_opportunities {
            let mut f = obj(
                json!({"Name": d.name, "StageName": d.stage, "CloseDate": d.close_date,
                               "Amount": d.amount, "CurrencyIsoCode": "USD"}),
            );
            if let Some(a) = accounts.get(&d.company) {
                f.insert("AccountId".into(), json!(a));
            }
            let id = s.insert("Opportunity", f);
            set_stamp(s, &id, next_past());
            refs.push((SALESFORCE, "Opportunity", id));
        }
    });
    edits
}

fn set_stamp(s: &mut sf::SimState, id: &str, t: chrono::DateTime<Utc>) {
    if let Some(r) = s.records.get_mut(id) {
        r.stamp = t;
    }
}

pub fn seed_zendesk(sim: &zd::Sim, w: &World, refs: &mut Vec<CopyRef>) {
    // Zendesk's exports hold back the latest minute: stamp the world two minutes ago so
    // the first read sees all of it, then put the clock back.
    sim.advance(-120);
    let mut orgs = BTreeMap::new();
    let ids = sim.seed("organizations", w.zendesk_orgs.len());
    for (c, id) in w.zendesk_orgs.iter().zip(ids) {
        let Some(co) = w.companies.get(*c) else {
            continue;
        };
        sim.update(
            "organizations",
            &id,
            json!({"name": co.name, "domain_names": [co.domain]}),
        );
        orgs.insert(*c, id.clone());
        refs.push((ZENDESK, "organizations", id));
    }
    let user_ids = sim.seed("users", w.zendesk_users.len());
    for (u, id) in w.zendesk_users.iter().zip(&user_ids) {
        let Some(p) = w.people.get(u.person) else {
            continue;
        };
        let mut f = obj(
            json!({"name": format!("{} {}", p.first, p.last), "email": u.email,
                           "phone": u.phone}),
        );
        if let Some(o) = orgs.get(&p.company).and_then(|o| o.parse::<u64>().ok()) {
            f.insert("organization_id".into(), json!(o));
        }
        sim.update("users", id, Value::Object(f));
        refs.push((ZENDESK, "users", id.clone()));
    }
    let ids = sim.seed("tickets", w.tickets.len());
    for (t, id) in w.tickets.iter().zip(ids) {
        let mut f = obj(json!({"subject": t.subject, "status": t.status, "priority": t.priority}));
        if let Some(r) = user_ids
            .get(t.requester)
            .and_then(|r| r.parse::<u64>().ok())
        {
            f.insert("requester_id".into(), json!(r));
        }
        if let Some(o) = w
            .zendesk_users
            .get(t.requester)
            .and_then(|u| w.people.get(u.person))
            .and_then(|p| orgs.get(&p.company))
            .and_then(|o| o.parse::<u64>().ok())
        {
            f.insert("organization_id".into(), json!(o));
        }
        sim.update("tickets", &id, Value::Object(f));
        refs.push((ZENDESK, "tickets", id));
    }
    sim.advance(120);
}

/// The prices the product-to-price map of config/examples/workflows/2-*.yaml names: the
/// demo account holds them under those ids, as an operator's map names their own.
pub const EXAMPLE_PRICES: [(&str, i64); 2] = [
    ("price_starter_monthly", 2_900),
    ("price_growth_monthly", 9_900),
];

pub fn seed_stripe(sim: &st::Sim, w: &World, refs: &mut Vec<CopyRef>) {
    for (id, cents) in EXAMPLE_PRICES {
        sim.seed_price(id, cents, "usd", "month", 1, false);
    }
    let prices: Vec<String> = PLANS
        .iter()
        .map(|(_, cents, interval)| sim.create_price(*cents, "usd", interval, 1, false))
        .collect();
    // The HubSpot id of each company, from the copies seeded there (absent when the Stripe
    // simulator runs alone).
    let hubspot_company: BTreeMap<usize, String> = w
        .hubspot_companies
        .iter()
        .zip(
            refs.iter()
                .filter(|(c, o, _)| *c == HUBSPOT && *o == "companies"),
        )
        .map(|(h, (_, _, id))| (h.company, id.clone()))
        .collect();
    let mut xrefs = Vec::new();
    let customers: Vec<String> = w
        .stripe_customers
        .iter()
        .map(|c| {
            let id = sim.seed_customer(&c.name, &c.email);
            if let Some(crm) = hubspot_company.get(&c.company).filter(|_| c.crm_xref) {
                xrefs.push((id.clone(), crm.clone()));
            }
            refs.push((STRIPE, "customers", id.clone()));
            id
        })
        .collect();
    for (id, crm) in xrefs {
        sim.update_customer(&id, json!({"metadata": {"hubspot_company_id": crm}}));
    }
    let now = sim.now();
    for (k, s) in w.subscriptions.iter().enumerate() {
        let (Some(customer), Some(price)) = (customers.get(s.customer), prices.get(s.plan)) else {
            continue;
        };
        // An earlier subscription of the same customer that ended: churn, and for a customer
        // paying again today, a reactivation too.
        if let Some((from, to)) = earlier_subscription(k, s, now) {
            if let Ok(id) = sim.seed_subscription(customer, &[(price, s.quantity)], "active") {
                let periods = months_between(from, to, s.quantity);
                for invoice in sim.backdate_subscription(&id, from, &periods) {
                    refs.push((STRIPE, "invoices", invoice));
                }
                sim.end_subscription_at(&id, to - 86_400, to);
                refs.push((STRIPE, "subscriptions", id));
            }
        }
        match sim.seed_subscription(customer, &[(price, s.quantity)], s.status) {
            Ok(id) => {
                for invoice in
                    sim.backdate_subscription(&id, past_start(k, now), &past_periods(k, s, now))
                {
                    refs.push((STRIPE, "invoices", invoice));
                }
                refs.push((STRIPE, "subscriptions", id));
            }
            Err(e) => tracing::warn!(error = %e, "the simulator refused a demo subscription"),
        }
        for (amount, status) in &s.invoices {
            let id = sim.seed_invoice(customer, *amount, status);
            refs.push((STRIPE, "invoices", id));
        }
    }
}

/// Months of history the demo's paying subscriptions have (issue 20): each started 1 to 6
/// months ago, so the KPI report and the console have past months to show.
const HISTORY_MONTHS: u32 = 6;

/// When the `k`-th subscription started: 1 to [`HISTORY_MONTHS`] months before `now`, spread
/// by index (the world stays the same for a seed), at a whole hour. Trials start now.
fn past_start(k: usize, now: i64) -> i64 {
    let months = 1 + (k * 7 % HISTORY_MONTHS as usize) as u32;
    let start = chrono::DateTime::from_timestamp(now - now % 3600, 0)
        .and_then(|t| t.checked_sub_months(chrono::Months::new(months)));
    start.map_or(now, |t| t.timestamp())
}

/// Months `[from, to)` as monthly periods of `quantity`.
fn months_between(from: i64, to: i64, quantity: i64) -> Vec<(i64, i64, i64)> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to && out.len() < 24 {
        let next = chrono::DateTime::from_timestamp(at, 0)
            .and_then(|d| d.checked_add_months(chrono::Months::new(1)))
            .map_or(to, |d| d.timestamp())
            .min(to);
        out.push((at, next, quantity));
        at = next;
    }
    out
}

/// When the `k`-th customer's earlier, ended subscription ran (one in ten customers of a
/// monthly plan): three months up to a month before today's subscription started (it
/// came back: a reactivation), or, for a customer only trialing today, from five months
/// to two months ago (it left: churn).
fn earlier_subscription(k: usize, s: &super::world::Subscription, now: i64) -> Option<(i64, i64)> {
    let monthly = PLANS.get(s.plan).is_some_and(|p| p.2 == "month");
    if !monthly || k % 10 != 3 {
        return None;
    }
    let back = |t: i64, months: u32| {
        chrono::DateTime::from_timestamp(t, 0)
            .and_then(|d| d.checked_sub_months(chrono::Months::new(months)))
            .map(|d| d.timestamp())
    };
    let anchor = if s.status == "trialing" {
        back(now - now % 3600, 1)?
    } else {
        past_start(k, now)
    };
    Some((back(anchor, 4)?, back(anchor, 1)?))
}

/// The past periods the `k`-th subscription was billed for, from its start up to now:
/// (start, end, quantity). Every fourth grew to its quantity today halfway (expansion),
/// every fourth after it shrank to it (contraction), the rest kept it. A trial has no past.
fn past_periods(k: usize, s: &super::world::Subscription, now: i64) -> Vec<(i64, i64, i64)> {
    if s.status == "trialing" {
        return Vec::new();
    }
    let start = past_start(k, now);
    let Some(&(_, _, interval)) = PLANS.get(s.plan) else {
        return Vec::new();
    };
    let step = if interval == "year" { 12 } else { 1 };
    let at = |t: i64, months: u32| {
        chrono::DateTime::from_timestamp(t, 0)
            .and_then(|d| d.checked_add_months(chrono::Months::new(months)))
            .map_or(t, |d| d.timestamp())
    };
    let mut periods = Vec::new();
    let mut from = start;
    while from < now - 3600 && periods.len() < 24 {
        let to = at(from, step);
        periods.push((from, to, s.quantity));
        from = to;
    }
    let half = periods.len() / 2;
    for (i, p) in periods.iter_mut().enumerate().filter(|(i, _)| *i < half) {
        p.2 = match k % 4 {
            0 => (s.quantity - 1 - (i as i64 % 2)).max(1),
            1 => s.quantity + 2,
            _ => s.quantity,
        };
    }
    periods
}

/// Four webinars; every fourth person of the world registered to one of them an hour ago
/// (people the CRMs know, a third of them attended), and a tenth as many people no other
/// system has: the new leads a webinar brings.
pub fn seed_webinar(sim: &wb::Sim, w: &World, refs: &mut Vec<CopyRef>) {
    let (webinars, _) = sim.seed(4, 0);
    sim.advance(-3600);
    for (k, p) in w.people.iter().step_by(4).enumerate() {
        let Some(webinar) = webinars.get(k % webinars.len().max(1)) else {
            continue;
        };
        let company = w.companies.get(p.company).map(|c| c.name.as_str());
        let title = Some(p.title).filter(|t| !t.is_empty());
        let id = sim.register(webinar, &p.email, &p.first, &p.last, company, title);
        if k % 3 == 0 {
            sim.update(&id, json!({"attended": true}));
        }
        refs.push((WEBINAR, "registrants", id));
    }
    sim.advance(3600);
    let (_, fresh) = sim.seed(0, w.people.len() / 10);
    refs.extend(fresh.into_iter().map(|id| (WEBINAR, "registrants", id)));
}

/// People who register for a webinar now, as the platform's form would (each announced by
/// webhook): new people, no other system has them. Their registrant ids.
pub fn register_live(sim: &wb::Sim, n: usize) -> Vec<String> {
    let Some(webinar) = sim
        .webinars()
        .first()
        .and_then(|w| w["id"].as_str().map(str::to_owned))
    else {
        return Vec::new();
    };
    (0..n)
        .map(|i| {
            let email = format!("live.registrant{i}@webinar-demo.example");
            sim.register(
                &webinar,
                &email,
                "Live",
                &format!("Registrant{i}"),
                Some("Webinar Co"),
                Some("Analyst"),
            )
        })
        .collect()
}

/// A rep marks up to `n` open HubSpot deals that have a company won, now (the first by id,
/// so every run wins the same ones): the won-deal rule makes each a Stripe subscription.
/// Their names.
pub fn win_deals(sim: &hs::Sim, n: usize) -> Vec<String> {
    let mut won = Vec::new();
    for id in sim.ids("deals") {
        if won.len() == n {
            break;
        }
        let Some(props) = sim.get("deals", &id) else {
            continue;
        };
        let open = !matches!(
            props.get("dealstage").map(String::as_str),
            Some("closedwon" | "closedlost")
        );
        let company = props
            .get("associatedcompanyid")
            .is_some_and(|c| !c.is_empty());
        if open && company {
            sim.update("deals", &id, &[("dealstage", "closedwon")]);
            won.push(props.get("dealname").cloned().unwrap_or(id));
        }
    }
    won
}

/// The registrants `ids` attend the webinar (the platform marks them so).
pub fn attend(sim: &wb::Sim, ids: &[String]) {
    for id in ids {
        sim.update(id, json!({"attended": true}));
    }
}

/// A customer revsync subscribed in Stripe (by a rule) and the onboarding ticket Zendesk
/// holds for it, matched by the customer's name: (ticket id, subscription id).
pub fn onboarded(zd: &zd::Sim, st: &st::Sim) -> Option<(String, String)> {
    let tickets: Vec<(String, String)> = zd
        .ids("tickets")
        .into_iter()
        .filter_map(|id| {
            let t = zd.record("tickets", &id)?;
            t.get("external_id")?.as_str()?;
            let subject = t.get("subject")?.as_str()?.to_owned();
            Some((id, subject))
        })
        .collect();
    st.ids("subscriptions").into_iter().find_map(|sub| {
        let s = st.get("subscriptions", &sub)?;
        s.pointer("/metadata/revsync_id")?.as_str()?;
        let customer = st.get("customers", s.get("customer")?.as_str()?)?;
        let name = customer.get("name")?.as_str()?;
        let prefix = format!("Onboarding: {name} (");
        tickets
            .iter()
            .find(|(_, subject)| subject.starts_with(&prefix))
            .map(|(t, _)| (t.clone(), sub.clone()))
    })
}
