//! Generated webinars and registrants for `Sim::seed`: plausible people at plausible
//! companies, the same for the same calls (a hash of the running count, no random state).

use super::records::{registrant_id, webinar_id, Changes};
use super::Inner;

const FIRST: [&str; 24] = [
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Margaret",
    "Dennis",
    "Barbara",
    "Ken",
    "Frances",
    "Edsger",
    "Radia",
    "Tim",
    "Hedy",
    "John",
    "Katherine",
    "Donald",
    "Sophie",
    "Vint",
    "Joan",
    "Niklaus",
    "Anita",
    "Bjarne",
    "Mary",
    "Guido",
];

const LAST: [&str; 24] = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Ritchie",
    "Liskov",
    "Thompson",
    "Allen",
    "Dijkstra",
    "Perlman",
    "Berners-Lee",
    "Lamarr",
    "McCarthy",
    "Johnson",
    "Knuth",
    "Wilson",
    "Cerf",
    "Clarke",
    "Wirth",
    "Borg",
    "Stroustrup",
    "Keller",
    "van Rossum",
];

/// (company, email domain); the last ones register with a personal address and no company.
const COMPANIES: [(Option<&str>, &str); 14] = [
    (Some("Northwind Traders"), "northwind.example"),
    (Some("Contoso Ltd"), "contoso.example"),
    (Some("Fabrikam Inc"), "fabrikam.example"),
    (Some("Initech"), "initech.example"),
    (Some("Globex Corporation"), "globex.example"),
    (Some("Umbrella Analytics"), "umbrella-analytics.example"),
    (Some("Hooli"), "hooli.example"),
    (Some("Stark Industries"), "stark.example"),
    (Some("Wayne Enterprises"), "wayne.example"),
    (Some("Tyrell Systems"), "tyrell.example"),
    (Some("Soylent Foods"), "soylent.example"),
    (Some("Acme Corp"), "acme.example"),
    (None, "mail.example"),
    (None, "inbox.example"),
];

const TITLES: [Option<&str>; 12] = [
    Some("VP Marketing"),
    Some("Marketing Operations Manager"),
    Some("Head of Revenue Operations"),
    Some("Sales Development Representative"),
    Some("Account Executive"),
    Some("Customer Success Manager"),
    Some("Data Analyst"),
    Some("CTO"),
    Some("Product Manager"),
    Some("Demand Generation Lead"),
    None,
    None,
];

const TOPICS: [&str; 8] = [
    "Pipeline Reviews That Forecast",
    "From MQL to Revenue: Attribution in Practice",
    "Cleaning Your CRM Without Losing Sleep",
    "Product-Led Growth Playbook",
    "Renewals Start on Day One",
    "Lead Routing at Scale",
    "Building a RevOps Data Model",
    "Webinar Follow-Up That Converts",
];

/// splitmix64: a well-spread hash of a counter.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `items[h % len]`, for the fixed non-empty lists above.
fn pick<T: Copy + Default>(items: &[T], h: u64) -> T {
    let len = items.len().max(1) as u64;
    items
        .get(usize::try_from(h % len).unwrap_or(0))
        .copied()
        .unwrap_or_default()
}

const DAY: i64 = 86_400;

pub(super) fn seed(
    s: &mut Inner,
    webinars: usize,
    registrants: usize,
) -> (Vec<String>, Vec<String>) {
    let now = s.now();
    let mut new_webinars = Vec::new();
    for k in 0..webinars {
        let seq = s.next_webinar;
        let title = pick(&TOPICS, seq).to_owned();
        // The first half (rounded up) held in the past weeks, the rest coming in the next
        // ones, each at 16:00 UTC: never today, so what has ended does not hang on the hour.
        let past = webinars.div_ceil(2) as i64;
        let k = k as i64;
        let weeks = if k < past { k - past } else { k - past + 1 };
        let starts_at = (now / DAY + weeks * 7) * DAY + 16 * 3600;
        let minutes = pick(&[30, 45, 60, 90], seq);
        let created = (now - 30 * DAY).min(starts_at - 14 * DAY);
        new_webinars.push(webinar_id(
            s.add_webinar(title, starts_at, minutes, created),
        ));
    }
    let targets: Vec<(u64, i64, u32)> = s
        .webinars
        .values()
        .map(|w| (w.n, w.starts_at, w.duration_minutes))
        .collect();
    let mut new_registrants = Vec::new();
    if targets.is_empty() {
        return (new_webinars, new_registrants);
    }
    for i in 0..registrants {
        s.generated += 1;
        let h = mix(s.generated);
        let (n, starts_at, minutes) = pick(&targets, s.generated);
        let first = pick(&FIRST, h);
        let last = pick(&LAST, h >> 8);
        let (company, domain) = pick(&COMPANIES, h >> 16);
        let local = format!("{}.{}", first, last.replace([' ', '-'], "")).to_lowercase();
        let mut email = format!("{local}@{domain}");
        if s.registered(n, &email).is_some() {
            email = format!("{local}{}@{domain}", s.generated);
        }
        // Three to a second, oldest first, and an hour or more before a past webinar
        // started: a list read meets ties on `updated_at`.
        let back = (registrants - i).div_ceil(3) as i64 * 41;
        let registered_at = now.min(starts_at - 3600) - back;
        let ended = starts_at + i64::from(minutes) * 60;
        let attended = ended <= now && (h >> 24) % 10 < 4;
        let c = Changes {
            email: Some(email),
            first_name: Some(first.to_owned()),
            last_name: Some(last.to_owned()),
            company: Some(company.map(str::to_owned)),
            job_title: Some(pick(&TITLES, h >> 32).map(str::to_owned)),
            attended: None,
        };
        let r = s.create(n, c, registered_at, false);
        if attended {
            // The platform marks attendance when the webinar ends, all at once.
            let mark = Changes {
                attended: Some(true),
                ..Changes::default()
            };
            s.update(r, mark, ended);
        }
        new_registrants.push(registrant_id(r));
    }
    (new_webinars, new_registrants)
}
