//! One generated company world, split into what each system holds of it, with the mess
//! real accounts have: emails in other cases and with stray spaces, one phone written
//! three ways, websites instead of domains, titles edited in two systems, rep-made
//! duplicates and records that live in one system only.
//!
//! Deterministic for a seed, so a demo run can be repeated and `revsync sim` can serve the
//! same slice of the same world the demo would.

/// How big the world is.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub people: usize,
    pub companies: usize,
    pub deals: usize,
    pub tickets: usize,
    pub subscriptions: usize,
    /// Percent of Salesforce Contacts a rep typed in again as a Lead (a nickname, no
    /// email, the phone in another form): fuzzy duplicates only scored identity places.
    pub retyped_pct: u8,
}

/// SplitMix64: enough randomness for fake data, and no dependency for it.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `pct` percent.
    pub fn pct(&mut self, pct: u64) -> bool {
        self.next_u64() % 100 < pct
    }

    /// One of `items` (the default when there are none).
    pub fn pick<T: Copy + Default>(&mut self, items: &[T]) -> T {
        items
            .get(self.below(items.len()))
            .copied()
            .unwrap_or_default()
    }
}

/// `items[i]`, wrapping around (empty for no items).
fn cyclic(items: &[&'static str], i: usize) -> &'static str {
    i.checked_rem(items.len())
        .and_then(|k| items.get(k))
        .copied()
        .unwrap_or_default()
}

const FIRST: &[&str] = &[
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Margaret",
    "Ken",
    "Barbara",
    "Dennis",
    "Frances",
    "John",
    "Radia",
    "Tim",
    "Sophie",
    "Hedy",
    "Edsger",
    "Katherine",
    "Guido",
    "Annie",
    "Bjarne",
    "Joan",
    "Niklaus",
    "Karen",
    "Donald",
    "Shafi",
    "Leslie",
    "Mary",
    "Vint",
    "Lynn",
    "Ivan",
    "Carol",
];
const LAST: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Allen",
    "Backus",
    "Perlman",
    "Berners-Lee",
    "Wilson",
    "Lamarr",
    "Dijkstra",
    "Johnson",
    "van Rossum",
    "Easley",
    "Stroustrup",
    "Clarke",
    "Wirth",
    "Jones",
    "Knuth",
    "Goldwasser",
    "Lamport",
    "Keller",
    "Cerf",
    "Conway",
    "Sutherland",
    "Shaw",
    "Kay",
    "Moore",
];
const CO_A: &[&str] = &[
    "Northwind",
    "Contoso",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Aperture",
    "Acme",
    "Oscorp",
    "Wonka",
    "Gringotts",
    "Monarch",
    "Massive",
    "Pied",
    "Dunder",
    "Prestige",
    "Vehement",
    "Nakatomi",
];
const CO_B: &[&str] = &[
    "Analytics",
    "Logistics",
    "Labs",
    "Systems",
    "Foods",
    "Robotics",
    "Health",
    "Capital",
    "Media",
    "Energy",
    "Software",
    "Devices",
    "Outfitters",
    "Freight",
    "Bank",
    "Studios",
    "Networks",
    "Biotech",
    "Mining",
    "Airways",
    "Textiles",
    "Security",
    "Motors",
    "Farms",
];
const INDUSTRY: &[&str] = &[
    "COMPUTER_SOFTWARE",
    "FINANCIAL_SERVICES",
    "HOSPITAL_HEALTH_CARE",
    "LOGISTICS_AND_SUPPLY_CHAIN",
    "RETAIL",
    "TELECOMMUNICATIONS",
];
const TITLES: &[&str] = &[
    "VP Sales",
    "Head of Operations",
    "CFO",
    "RevOps Manager",
    "Account Executive",
    "Director of Marketing",
    "Support Lead",
    "CTO",
    "Procurement Manager",
    "Office Manager",
];
const PROMOTED: &[&str] = &[
    "SVP Sales",
    "COO",
    "Chief Revenue Officer",
    "Senior RevOps Manager",
    "VP Marketing",
];
const SUBJECTS: &[&str] = &[
    "Cannot log in after password reset",
    "Invoice shows the wrong VAT number",
    "Export to CSV times out",
    "Please add two seats",
    "SSO setup question",
    "Webhook deliveries failing",
    "Data missing from last week's report",
    "How do I cancel the trial?",
];
const FREE_MAIL: &[&str] = &["gmail.com", "outlook.com", "yahoo.com"];

pub struct Company {
    pub name: String,
    pub domain: String,
    pub industry: &'static str,
    pub employees: u32,
}

pub struct Person {
    pub first: String,
    pub last: String,
    /// Lowercase, trimmed: what every copy should agree on.
    pub email: String,
    /// Ten digits, North American, written differently per system.
    pub phone: Option<String>,
    pub title: &'static str,
    pub company: usize,
}

/// A HubSpot company: most have a domain, some only a website URL.
pub struct HsCompany {
    pub company: usize,
    pub domain: Option<String>,
    pub website: Option<String>,
}

/// A person's copy in one system, as typed there.
pub struct PersonCopy {
    pub person: usize,
    pub email: String,
    pub phone: Option<String>,
    pub title: Option<String>,
}

pub struct SfPerson {
    pub copy: PersonCopy,
    /// A first name typed otherwise than the person's (a nickname).
    pub first: Option<String>,
    /// A rep typed this person in again, without the email: a fuzzy duplicate only the
    /// scored identity model can place. Stamped before every other copy, so its values
    /// never win "newest".
    pub retyped: bool,
    pub lead: bool,
    /// Edited in Salesforce after HubSpot's copy: its title should win.
    pub edited_later: bool,
}

pub struct Deal {
    pub company: usize,
    pub name: String,
    pub amount: u32,
    pub stage: &'static str,
    pub close_date: String,
}

pub struct Ticket {
    /// Index into `zendesk_users`.
    pub requester: usize,
    pub subject: &'static str,
    pub status: &'static str,
    pub priority: &'static str,
}

pub struct StripeCustomer {
    pub company: usize,
    pub name: String,
    pub email: String,
    /// Finance put the CRM company's id in the customer's metadata: the only link
    /// between a free-mail billing contact and its company.
    pub crm_xref: bool,
}

pub struct Subscription {
    /// Index into `stripe_customers`.
    pub customer: usize,
    /// Index into `PLANS`.
    pub plan: usize,
    pub quantity: i64,
    pub status: &'static str,
    /// (amount due in cents, status)
    pub invoices: Vec<(i64, &'static str)>,
}

/// (name, unit amount in cents, interval)
pub const PLANS: &[(&str, i64, &str)] = &[
    ("Starter", 4_900, "month"),
    ("Growth", 19_900, "month"),
    ("Scale", 99_900, "month"),
    ("Growth annual", 199_000, "year"),
];

/// A title edited in both HubSpot and Salesforce, for the summary's examples.
pub struct TitleConflict {
    pub email: String,
    pub hubspot: String,
    pub salesforce: String,
    pub salesforce_later: bool,
}

pub struct World {
    pub companies: Vec<Company>,
    pub people: Vec<Person>,
    pub hubspot_companies: Vec<HsCompany>,
    pub hubspot_contacts: Vec<PersonCopy>,
    pub hubspot_deals: Vec<Deal>,
    /// (company, Website as typed)
    pub salesforce_accounts: Vec<(usize, String)>,
    pub salesforce_people: Vec<SfPerson>,
    pub salesforce_opportunities: Vec<Deal>,
    pub zendesk_orgs: Vec<usize>,
    pub zendesk_users: Vec<PersonCopy>,
    pub tickets: Vec<Ticket>,
    pub stripe_customers: Vec<StripeCustomer>,
    pub subscriptions: Vec<Subscription>,
    pub title_conflicts: Vec<TitleConflict>,
}

/// The same email as someone might type it: other case, stray spaces.
fn messy_email(rng: &mut Rng, email: &str) -> String {
    match rng.below(6) {
        0 => email.to_uppercase(),
        1 => format!(" {email} "),
        2 => {
            let (local, host) = email.split_once('@').unwrap_or((email, ""));
            let mut cap = local.to_owned();
            if let Some(f) = cap.get_mut(0..1) {
                f.make_ascii_uppercase();
            }
            format!("{cap}@{host}")
        }
        _ => email.to_owned(),
    }
}

/// One phone, three ways: (HubSpot, Salesforce, Zendesk). All carry the country code:
/// the engine reads national forms like `(415) 555-0134` only with a default region,
/// which it is not given.
fn phone_forms(d: &str) -> [String; 3] {
    let (a, b, c) = (&d[0..3], &d[3..6], &d[6..10]);
    [
        format!("+1 {a} {b} {c}"),
        format!("+1 ({a}) {b}-{c}"),
        format!("+1.{a}.{b}.{c}"),
    ]
}

/// Area codes in service (a made-up one would not pass as a valid number).
const AREA: &[u16] = &[212, 303, 312, 404, 415, 512, 617, 646, 206, 720, 305, 702];

/// What a rep might type for a first name of `FIRST`.
fn nickname(first: &str) -> &str {
    match first {
        "Margaret" => "Peggy",
        "John" => "Jack",
        "Katherine" => "Kate",
        "Donald" => "Don",
        "Frances" => "Fran",
        "Barbara" => "Barb",
        "Leslie" => "Les",
        other => other,
    }
}

fn slug(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_lowercase()
}

impl World {
    pub fn generate(seed: u64, sizes: Sizes) -> World {
        let mut rng = Rng::new(seed);
        let companies: Vec<Company> = (0..sizes.companies)
            .map(|i| {
                let a = cyclic(CO_A, i);
                let b = cyclic(CO_B, i / CO_A.len() + i);
                let round = i / (CO_A.len() * CO_B.len());
                let name = if round == 0 {
                    format!("{a} {b}")
                } else {
                    format!("{a} {b} {round}")
                };
                let tld = if i % 7 == 0 { "io" } else { "com" };
                // Later rounds reuse the name pairs: the round number keeps domains unique.
                let domain = if round == 0 {
                    format!("{}{}.{tld}", slug(a), slug(b))
                } else {
                    format!("{}{}{round}.{tld}", slug(a), slug(b))
                };
                Company {
                    name,
                    domain,
                    industry: rng.pick(INDUSTRY),
                    employees: 5 + rng.below(5000) as u32,
                }
            })
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        let people: Vec<Person> = (0..sizes.people)
            .map(|j| {
                let first = rng.pick(FIRST).to_owned();
                let last = rng.pick(LAST).to_owned();
                let company = if companies.is_empty() {
                    0
                } else {
                    rng.below(companies.len())
                };
                let host = companies
                    .get(company)
                    .map_or("example.com".to_owned(), |c| c.domain.clone());
                let mut email = format!("{}.{}@{host}", slug(&first), slug(&last));
                if !seen.insert(email.clone()) {
                    email = format!("{}.{}{j}@{host}", slug(&first), slug(&last));
                    seen.insert(email.clone());
                }
                let phone = rng
                    .pct(70)
                    .then(|| format!("{}555{:04}", rng.pick(AREA), 100 + rng.below(100)));
                Person {
                    first,
                    last,
                    email,
                    phone,
                    title: rng.pick(TITLES),
                    company,
                }
            })
            .collect();

        let mut w = World {
            companies,
            people,
            hubspot_companies: Vec::new(),
            hubspot_contacts: Vec::new(),
            hubspot_deals: Vec::new(),
            salesforce_accounts: Vec::new(),
            salesforce_people: Vec::new(),
            salesforce_opportunities: Vec::new(),
            zendesk_orgs: Vec::new(),
            zendesk_users: Vec::new(),
            tickets: Vec::new(),
            stripe_customers: Vec::new(),
            subscriptions: Vec::new(),
            title_conflicts: Vec::new(),
        };

        for (i, c) in w.companies.iter().enumerate() {
            let (hs, sf, zd) = (rng.pct(80), rng.pct(65), rng.pct(50));
            // Every company lives somewhere; the last resort is HubSpot.
            let hs = hs || !(sf || zd || i < sizes.subscriptions);
            if hs {
                // A few were entered with a website only: the domain must come from the URL.
                // Always at least one that other systems hold too, so small worlds (the
                // end-to-end tests') have one to identify.
                let website_only = rng.pct(4)
                    || ((sf || zd) && w.hubspot_companies.iter().all(|h| h.domain.is_some()));
                w.hubspot_companies.push(HsCompany {
                    company: i,
                    domain: (!website_only).then(|| c.domain.clone()),
                    website: website_only.then(|| format!("https://www.{}/pricing", c.domain)),
                });
            }
            if sf {
                let site = match rng.below(4) {
                    0 => format!("https://www.{}", c.domain),
                    1 => format!("http://{}/", c.domain),
                    2 => format!("WWW.{}/about-us", c.domain.to_uppercase()),
                    _ => format!("https://{}/en/home", c.domain),
                };
                w.salesforce_accounts.push((i, site));
            }
            if zd {
                w.zendesk_orgs.push(i);
            }
        }

        let hs_companies: std::collections::BTreeSet<usize> =
            w.hubspot_companies.iter().map(|c| c.company).collect();
        let mut retyped_any = false;
        for (j, p) in w.people.iter().enumerate() {
            let phones = p.phone.as_deref().map(phone_forms);
            let (mut hs, sf, zd) = (rng.pct(70), rng.pct(55), rng.pct(45));
            if !(hs || sf || zd) {
                hs = true;
            }
            let mut hs_title = p.title.to_owned();
            if hs {
                w.hubspot_contacts.push(PersonCopy {
                    person: j,
                    email: messy_email(&mut rng, &p.email),
                    phone: phones.as_ref().map(|f| f[0].clone()),
                    title: Some(hs_title.clone()),
                });
                // No second HubSpot contact with the same email: HubSpot keeps email unique
                // among contacts (it is an upsert key). Reps' duplicates live in Salesforce.
            } else if rng.pct(50) {
                hs_title.clear();
            }
            if sf {
                let lead = rng.pct(15);
                let mut title = p.title.to_owned();
                let mut edited_later = false;
                if hs && rng.pct(12) {
                    // Edited in both systems, at different times.
                    title = rng.pick(PROMOTED).to_owned();
                    edited_later = rng.pct(50);
                    w.title_conflicts.push(TitleConflict {
                        email: p.email.clone(),
                        hubspot: hs_title.clone(),
                        salesforce: title.clone(),
                        salesforce_later: edited_later,
                    });
                }
                w.salesforce_people.push(SfPerson {
                    copy: PersonCopy {
                        person: j,
                        email: messy_email(&mut rng, &p.email),
                        phone: phones.as_ref().map(|f| f[1].clone()),
                        title: Some(title),
                    },
                    first: None,
                    retyped: false,
                    lead,
                    edited_later,
                });
                // A Lead created for someone already a Contact.
                let lead_twice = !lead && rng.pct(3);
                if lead_twice {
                    w.salesforce_people.push(SfPerson {
                        copy: PersonCopy {
                            person: j,
                            email: p.email.to_uppercase(),
                            phone: None,
                            title: None,
                        },
                        first: None,
                        retyped: false,
                        lead: true,
                        edited_later: false,
                    });
                }
                // The same person typed in again from a business card: a nickname, no
                // email, the phone in yet another form.
                // Only beside a Contact: Salesforce's duplicate rule refuses a second Lead
                // with one email, which revsync's push would give this one.
                // At least one when any are asked for, so small worlds show one. None
                // (and no draw from the generator) at 0, so such a world is the same as
                // one generated before they existed.
                let retype = sizes.retyped_pct > 0
                    && !lead
                    && !lead_twice
                    && (rng.pct(u64::from(sizes.retyped_pct)) || !retyped_any);
                if let Some(forms) = phones.as_ref().filter(|_| retype) {
                    retyped_any = true;
                    w.salesforce_people.push(SfPerson {
                        copy: PersonCopy {
                            person: j,
                            email: String::new(),
                            phone: Some(forms[2].clone()),
                            title: None,
                        },
                        first: Some(nickname(&p.first).to_owned()),
                        retyped: true,
                        lead: true,
                        edited_later: false,
                    });
                }
            }
            if zd {
                w.zendesk_users.push(PersonCopy {
                    person: j,
                    email: messy_email(&mut rng, &p.email),
                    phone: phones.as_ref().map(|f| f[2].clone()),
                    title: None,
                });
            }
        }

        for d in 0..sizes.deals {
            let company = rng.below(w.companies.len());
            let Some(co) = w.companies.get(company) else {
                break;
            };
            let product = rng.pick(&["Platform", "Seats", "Renewal", "Expansion", "Pilot"]);
            let amount = 1_000 + 500 * rng.below(200) as u32;
            let month = 1 + rng.below(12);
            let close_date = format!("2026-{month:02}-{:02}", 1 + rng.below(28));
            let name = format!("{} {product} {}", co.name, d % 9 + 2020);
            // HubSpot deals need a HubSpot company to hang from; the rest are Opportunities.
            if hs_companies.contains(&company) && rng.pct(55) {
                let stage = rng.pick(&[
                    "appointmentscheduled",
                    "qualifiedtobuy",
                    "presentationscheduled",
                    "decisionmakerboughtin",
                    "contractsent",
                    "closedwon",
                    "closedlost",
                ]);
                w.hubspot_deals.push(Deal {
                    company,
                    name,
                    amount,
                    stage,
                    close_date,
                });
            } else {
                let stage = rng.pick(&[
                    "Prospecting",
                    "Qualification",
                    "Needs Analysis",
                    "Proposal/Price Quote",
                    "Negotiation/Review",
                    "Closed Won",
                    "Closed Lost",
                ]);
                w.salesforce_opportunities.push(Deal {
                    company,
                    name,
                    amount,
                    stage,
                    close_date,
                });
            }
        }

        if !w.zendesk_users.is_empty() {
            for _ in 0..sizes.tickets {
                w.tickets.push(Ticket {
                    requester: rng.below(w.zendesk_users.len()),
                    subject: rng.pick(SUBJECTS),
                    status: rng.pick(&["new", "open", "open", "pending", "solved", "closed"]),
                    priority: rng.pick(&["low", "normal", "normal", "high", "urgent"]),
                });
            }
        }

        for s in 0..sizes.subscriptions.min(w.companies.len()) {
            let Some(c) = w.companies.get(s) else {
                break;
            };
            // Billing contacts on free mail: no domain to match; the HubSpot company id in
            // the customer's metadata is what ties it to its company.
            let in_hubspot = w.hubspot_companies.iter().any(|h| h.company == s);
            let crm_xref = in_hubspot && rng.pct(5);
            let email = if crm_xref {
                format!("{}.billing@{}", slug(&c.name), rng.pick(FREE_MAIL))
            } else {
                format!("{}@{}", rng.pick(&["billing", "ap", "finance"]), c.domain)
            };
            let name = if rng.pct(20) {
                format!("{}, Inc.", c.name)
            } else {
                c.name.clone()
            };
            w.stripe_customers.push(StripeCustomer {
                company: s,
                name,
                email,
                crm_xref,
            });
            let plan = rng.below(PLANS.len());
            let status = rng.pick(&["active", "active", "active", "trialing", "past_due"]);
            let quantity = 1 + rng.below(20) as i64;
            let n = 1 + rng.below(3);
            let invoices = (0..n)
                .map(|k| {
                    let due = PLANS.get(plan).map_or(0, |&(_, cents, _)| cents) * quantity;
                    let st = if k + 1 == n && status == "past_due" {
                        "open"
                    } else {
                        "paid"
                    };
                    (due, st)
                })
                .collect();
            w.subscriptions.push(Subscription {
                customer: w.stripe_customers.len() - 1,
                plan,
                quantity,
                status,
                invoices,
            });
        }
        w
    }

    pub fn invoices(&self) -> usize {
        self.subscriptions.iter().map(|s| s.invoices.len()).sum()
    }

    /// Copies each system starts with: (hubspot, salesforce, zendesk, stripe).
    pub fn copies(&self) -> [usize; 4] {
        [
            self.hubspot_companies.len() + self.hubspot_contacts.len() + self.hubspot_deals.len(),
            self.salesforce_accounts.len()
                + self.salesforce_people.len()
                + self.salesforce_opportunities.len(),
            self.zendesk_orgs.len() + self.zendesk_users.len() + self.tickets.len(),
            self.stripe_customers.len() + self.subscriptions.len() + self.invoices(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes() -> Sizes {
        Sizes {
            people: 300,
            companies: 60,
            deals: 80,
            tickets: 100,
            subscriptions: 40,
            retyped_pct: 4,
        }
    }

    #[test]
    fn the_three_phone_forms_normalize_to_one_number() {
        let e164: Vec<_> = phone_forms("4155550134")
            .iter()
            .map(|f| crate::engine::normalize::phone(f, None).and_then(|p| p.e164))
            .collect();
        assert_eq!(e164, vec![Some("+14155550134".to_owned()); 3]);
    }

    #[test]
    fn same_seed_same_world() {
        let a = World::generate(7, sizes());
        let b = World::generate(7, sizes());
        assert_eq!(a.copies(), b.copies());
        assert_eq!(a.people[10].email, b.people[10].email);
    }

    #[test]
    fn people_overlap_systems_and_emails_are_unique() {
        let w = World::generate(1, sizes());
        let emails: std::collections::BTreeSet<_> = w.people.iter().map(|p| &p.email).collect();
        assert_eq!(emails.len(), w.people.len());
        let sum = w.hubspot_contacts.len() + w.salesforce_people.len() + w.zendesk_users.len();
        assert!(sum > w.people.len(), "copies overlap");
        assert!(!w.title_conflicts.is_empty());
        assert_eq!(phone_forms("4155550134")[1], "+1 (415) 555-0134");
    }
}
