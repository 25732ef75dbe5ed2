//! A generator of person and company copies with realistic errors and ground truth, for
//! the identity benchmark, the training test and the demo world.
//!
//! Each entity is held by 2 to 4 of four systems (two CRMs, support, billing). Every copy
//! is typed by someone: nicknames, typos (a letter substituted, dropped, added or two
//! swapped), first and last name in each other's box, missing fields, phone numbers typed
//! in another format or with a wrong digit, a day and month transposed, and a personal
//! email in billing. Some entities are namesakes of another one at a different company.

use std::collections::BTreeMap;

use revsync_sdk::Value;

/// How often each error is made, per copy.
#[derive(Debug, Clone, PartialEq)]
pub struct Rates {
    pub nickname: f64,
    pub first_typo: f64,
    pub last_typo: f64,
    pub swapped: f64,
    pub no_email: f64,
    /// Billing copies only: the customer's personal address instead of the work one.
    pub personal_email: f64,
    pub no_phone: f64,
    pub phone_typo: f64,
    pub no_city: f64,
    pub birth_date: f64,
    pub date_transposed: f64,
    /// Entities that take the full name of an earlier one (at another company).
    pub namesake: f64,
    pub company_typo: f64,
    pub no_domain: f64,
}

impl Default for Rates {
    fn default() -> Self {
        Self {
            nickname: 0.08,
            first_typo: 0.04,
            last_typo: 0.04,
            swapped: 0.02,
            no_email: 0.08,
            personal_email: 0.4,
            no_phone: 0.35,
            phone_typo: 0.04,
            no_city: 0.2,
            birth_date: 0.3,
            date_transposed: 0.05,
            namesake: 0.03,
            company_typo: 0.04,
            no_domain: 0.4,
        }
    }
}

/// One system's copy of an entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Copy {
    /// 0 and 1 are CRMs, 2 support, 3 billing.
    pub source: usize,
    /// The entity it is a copy of: the ground truth.
    pub entity: u32,
    pub values: BTreeMap<String, Value>,
}

/// Every copy, in the order the systems would report them (shuffled across systems).
#[derive(Debug, Clone, Default)]
pub struct World {
    pub persons: Vec<Copy>,
    pub organizations: Vec<Copy>,
}

const FIRST: &[&str] = &[
    "William",
    "Robert",
    "Margaret",
    "Elizabeth",
    "Catherine",
    "Michael",
    "Richard",
    "James",
    "John",
    "Joseph",
    "Thomas",
    "Charles",
    "Christopher",
    "Daniel",
    "Matthew",
    "Anthony",
    "Patricia",
    "Jennifer",
    "Susan",
    "Jessica",
    "Rebecca",
    "Victoria",
    "Alexander",
    "Andrew",
    "Benjamin",
    "Nicholas",
    "Stephen",
    "Edward",
    "Samuel",
    "Jonathan",
    "Kenneth",
    "Timothy",
    "Gregory",
    "Deborah",
    "Dorothy",
    "Frederick",
    "Henry",
    "Lawrence",
    "Leonard",
    "Peter",
    "Philip",
    "Theodore",
    "Walter",
    "Zachary",
    "Isabella",
    "Eleanor",
    "Amelia",
    "Olivia",
    "Sophia",
    "Emma",
    "Charlotte",
    "Harper",
    "Evelyn",
    "Abigail",
    "Emily",
    "Madison",
    "Aria",
    "Grace",
    "Chloe",
    "Nora",
    "Hazel",
    "Aurora",
    "Stella",
    "Lucy",
    "Anna",
    "Maya",
    "Priya",
    "Aarav",
    "Vivaan",
    "Arjun",
    "Wei",
    "Li",
    "Mei",
    "Hiroshi",
    "Yuki",
    "Sakura",
    "Kenji",
    "Fatima",
    "Omar",
    "Ahmed",
    "Layla",
    "Yusuf",
    "Mateo",
    "Santiago",
    "Valentina",
    "Camila",
    "Lucas",
    "Gabriel",
    "Hugo",
    "Louis",
    "Jules",
    "Lea",
    "Manon",
    "Chloe",
    "Lukas",
    "Felix",
    "Jonas",
    "Mia",
    "Hannah",
    "Lena",
    "Sven",
    "Astrid",
    "Ingrid",
    "Nils",
    "Olga",
    "Dmitri",
    "Ivan",
    "Tatiana",
    "Kwame",
    "Amara",
    "Chidi",
    "Zara",
    "Noah",
    "Liam",
    "Ethan",
    "Mason",
    "Logan",
    "Oliver",
    "Elijah",
    "Aiden",
    "Jackson",
    "Sebastian",
    "Carter",
    "Owen",
    "Wyatt",
];

const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Mueller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Dubois",
    "Lefebvre",
    "Moreau",
    "Laurent",
    "Bernard",
    "Rossi",
    "Russo",
    "Ferrari",
    "Esposito",
    "Bianchi",
    "Tanaka",
    "Suzuki",
    "Takahashi",
    "Watanabe",
    "Wang",
    "Zhang",
    "Chen",
    "Liu",
    "Yang",
    "Huang",
    "Kim",
    "Park",
    "Singh",
    "Kumar",
    "Patel",
    "Sharma",
    "Gupta",
    "Ivanov",
    "Petrov",
    "Nowak",
    "Kowalski",
    "Jansen",
    "de Vries",
    "Andersson",
    "Johansson",
    "Nielsen",
    "Hansen",
    "O'Brien",
    "Murphy",
    "Kelly",
    "Walsh",
    "Okafor",
    "Mensah",
    "Haddad",
    "Khalil",
];

const SYLLABLES: &[&str] = &[
    "bar", "ren", "tal", "mor", "vik", "sen", "dor", "lin", "kas", "ter", "wel", "han", "gru",
    "pol", "zan", "mar", "tov", "ber", "sto", "fel", "gan", "ric", "bol", "den", "kor", "lav",
    "nes", "pri", "quin", "sal", "tor", "ulm", "var", "wex", "yar", "zel",
];

const CITIES: &[&str] = &[
    "New York",
    "London",
    "Paris",
    "Berlin",
    "Toronto",
    "Sydney",
    "Austin",
    "Chicago",
    "Madrid",
    "Milan",
    "Tokyo",
    "Singapore",
    "Dublin",
    "Amsterdam",
    "Stockholm",
    "Munich",
    "Boston",
    "Seattle",
    "Denver",
    "Lyon",
    "Zurich",
    "Vienna",
    "Warsaw",
    "Lisbon",
];

const COUNTRIES: &[&str] = &[
    "US", "GB", "FR", "DE", "CA", "AU", "ES", "IT", "JP", "SG", "IE", "NL",
];

const FREE_MAIL: &[&str] = &[
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "hotmail.com",
    "icloud.com",
];

const LEGAL: &[&str] = &[
    "",
    " Inc.",
    " Inc",
    ", Inc.",
    " Corp",
    " Corporation",
    " LLC",
    " Ltd",
    " Limited",
    " GmbH",
    " Co.",
];

const NICK: &[(&str, &[&str])] = &[
    ("William", &["Bill", "Will", "Billy", "Liam"]),
    ("Robert", &["Bob", "Rob", "Bobby"]),
    ("Margaret", &["Peggy", "Maggie", "Meg"]),
    ("Elizabeth", &["Liz", "Beth", "Betty", "Eliza"]),
    ("Catherine", &["Kate", "Cathy", "Katie"]),
    ("Michael", &["Mike", "Mikey"]),
    ("Richard", &["Rick", "Dick", "Rich"]),
    ("James", &["Jim", "Jimmy", "Jamie"]),
    ("John", &["Jack", "Johnny"]),
    ("Joseph", &["Joe", "Joey"]),
    ("Thomas", &["Tom", "Tommy"]),
    ("Charles", &["Charlie", "Chuck"]),
    ("Christopher", &["Chris"]),
    ("Daniel", &["Dan", "Danny"]),
    ("Matthew", &["Matt"]),
    ("Anthony", &["Tony"]),
    ("Patricia", &["Pat", "Patty", "Trish"]),
    ("Jennifer", &["Jen", "Jenny"]),
    ("Susan", &["Sue", "Susie"]),
    ("Jessica", &["Jess"]),
    ("Rebecca", &["Becky"]),
    ("Victoria", &["Vicky", "Tori"]),
    ("Alexander", &["Alex"]),
    ("Andrew", &["Andy", "Drew"]),
    ("Benjamin", &["Ben"]),
    ("Nicholas", &["Nick"]),
    ("Stephen", &["Steve"]),
    ("Edward", &["Ed", "Ted"]),
    ("Samuel", &["Sam"]),
    ("Jonathan", &["Jon"]),
    ("Kenneth", &["Ken"]),
    ("Timothy", &["Tim"]),
    ("Gregory", &["Greg"]),
    ("Deborah", &["Debbie", "Deb"]),
    ("Frederick", &["Fred"]),
    ("Lawrence", &["Larry"]),
    ("Peter", &["Pete"]),
    ("Philip", &["Phil"]),
    ("Theodore", &["Theo", "Ted"]),
    ("Zachary", &["Zach"]),
];

struct Person {
    first: String,
    last: String,
    org: usize,
    local: String,
    /// Their own address at a free-mail provider: unique, as a mailbox is.
    personal: String,
    phone: String,
    city: &'static str,
    birth: (i32, u32, u32),
}

struct Org {
    base: String,
    domain: String,
    phone: String,
    city: &'static str,
    country: &'static str,
}

fn pick<'a, T>(rng: &mut fastrand::Rng, items: &'a [T]) -> &'a T {
    // Every list here is a non-empty constant.
    &items[rng.usize(..items.len())]
}

fn chance(rng: &mut fastrand::Rng, p: f64) -> bool {
    rng.f64() < p
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn surname(rng: &mut fastrand::Rng) -> String {
    if chance(rng, 0.4) {
        (*pick(rng, LAST)).to_owned()
    } else {
        let n = 2 + rng.usize(..2);
        capitalize(&(0..n).map(|_| *pick(rng, SYLLABLES)).collect::<String>())
    }
}

/// One typing error: a letter substituted, dropped, added, or two neighbours swapped.
pub fn typo(rng: &mut fastrand::Rng, s: &str) -> String {
    let mut c: Vec<char> = s.chars().collect();
    if c.len() < 3 {
        return s.to_owned();
    }
    let i = rng.usize(1..c.len() - 1);
    let letter = char::from(b'a' + rng.u8(..26));
    match rng.u8(..4) {
        0 => c[i] = letter,
        1 => {
            c.remove(i);
        }
        2 => c.insert(i, letter),
        _ => c.swap(i, i + 1),
    }
    c.into_iter().collect()
}

fn phone_digits(rng: &mut fastrand::Rng) -> String {
    format!(
        "{}{:03}{:04}",
        2 + rng.u32(..8),
        rng.u32(200..1000),
        rng.u32(..10000)
    )
}

/// The same number as a person would type it.
fn format_phone(rng: &mut fastrand::Rng, d: &str) -> String {
    let (a, rest) = d.split_at(3.min(d.len()));
    let (b, c) = rest.split_at(3.min(rest.len()));
    match rng.u8(..4) {
        0 => format!("+1{d}"),
        1 => format!("({a}) {b}-{c}"),
        2 => format!("{a}.{b}.{c}"),
        _ => format!("+1 {a} {b} {c}"),
    }
}

fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

/// A world of `entities` persons (and a fifth as many companies) with ground truth.
pub fn generate(entities: usize, seed: u64, rates: &Rates) -> World {
    let mut rng = fastrand::Rng::with_seed(seed);
    let n_orgs = (entities / 5).max(1);
    let mut orgs: Vec<Org> = Vec::with_capacity(n_orgs);
    for i in 0..n_orgs {
        let namesake = i > 0 && chance(&mut rng, rates.namesake);
        let base = if namesake {
            orgs[rng.usize(..i)].base.clone()
        } else {
            let n = 2 + rng.usize(..2);
            capitalize(
                &(0..n)
                    .map(|_| *pick(&mut rng, SYLLABLES))
                    .collect::<String>(),
            ) + if chance(&mut rng, 0.3) {
                " Systems"
            } else {
                ""
            }
        };
        let domain = format!(
            "{}{}.{}",
            base.to_lowercase().replace(' ', ""),
            i,
            pick(&mut rng, &["com", "io", "net", "co"])
        );
        orgs.push(Org {
            base,
            domain,
            phone: phone_digits(&mut rng),
            city: CITIES[rng.usize(..CITIES.len())],
            country: COUNTRIES[rng.usize(..COUNTRIES.len())],
        });
    }
    let mut persons: Vec<Person> = Vec::with_capacity(entities);
    let mut mailboxes: std::collections::HashSet<(usize, String)> =
        std::collections::HashSet::new();
    for i in 0..entities {
        let org = rng.usize(..n_orgs);
        let (first, last) = if i > 0 && chance(&mut rng, rates.namesake) {
            let p = &persons[rng.usize(..i)];
            (p.first.clone(), p.last.clone())
        } else {
            ((*pick(&mut rng, FIRST)).to_owned(), surname(&mut rng))
        };
        let fl = crate::engine::identity::compare::fold(&first).replace(' ', "");
        let ll = crate::engine::identity::compare::fold(&last).replace(' ', "");
        let mut local = match rng.u8(..3) {
            0 => format!("{fl}.{ll}"),
            1 => format!("{}{ll}", fl.chars().next().unwrap_or('x')),
            _ => format!("{fl}{}", rng.u32(1..100)),
        };
        // A mailbox is one person's: a namesake at the same company gets another address.
        while !mailboxes.insert((org, local.clone())) {
            local = format!("{local}{}", rng.u32(2..10));
        }
        let mut personal = if chance(&mut rng, 0.5) {
            format!("{local}@{}", pick(&mut rng, FREE_MAIL))
        } else {
            format!(
                "{}{}@{}",
                local.replace('.', "_"),
                rng.u32(1..100),
                pick(&mut rng, FREE_MAIL)
            )
        };
        while !mailboxes.insert((usize::MAX, personal.clone())) {
            personal = personal.replacen('@', &format!("{}@", rng.u32(0..10)), 1);
        }
        persons.push(Person {
            first,
            last,
            org,
            local,
            personal,
            phone: phone_digits(&mut rng),
            city: orgs[org].city,
            birth: (1950 + rng.i32(0..50), 1 + rng.u32(..12), 1 + rng.u32(..28)),
        });
    }

    let mut world = World::default();
    for (e, p) in persons.iter().enumerate() {
        for source in sources(&mut rng) {
            world.persons.push(Copy {
                source,
                entity: e as u32,
                values: person_copy(&mut rng, rates, p, &orgs[p.org], source),
            });
        }
    }
    for (e, o) in orgs.iter().enumerate() {
        for source in sources(&mut rng) {
            world.organizations.push(Copy {
                source,
                entity: e as u32,
                values: org_copy(&mut rng, rates, o),
            });
        }
    }
    rng.shuffle(&mut world.persons);
    rng.shuffle(&mut world.organizations);
    world
}

/// 2 to 4 of the four systems.
fn sources(rng: &mut fastrand::Rng) -> Vec<usize> {
    let mut all = vec![0, 1, 2, 3];
    rng.shuffle(&mut all);
    all.truncate(2 + rng.usize(..3));
    all
}

fn person_copy(
    rng: &mut fastrand::Rng,
    r: &Rates,
    p: &Person,
    o: &Org,
    source: usize,
) -> BTreeMap<String, Value> {
    let mut first = p.first.clone();
    if chance(rng, r.nickname) {
        if let Some((_, nicks)) = NICK.iter().find(|(n, _)| *n == first) {
            first = (*pick(rng, nicks)).to_owned();
        }
    }
    if chance(rng, r.first_typo) {
        first = typo(rng, &first);
    }
    let mut last = p.last.clone();
    if chance(rng, r.last_typo) {
        last = typo(rng, &last);
    }
    if chance(rng, 0.03) {
        last = last.to_uppercase();
    }
    if chance(rng, r.swapped) {
        std::mem::swap(&mut first, &mut last);
    }
    let mut v = BTreeMap::new();
    v.insert("first_name".to_owned(), text(first));
    v.insert("last_name".to_owned(), text(last));
    if !chance(rng, r.no_email) {
        let email = if source == 3 && chance(rng, r.personal_email) {
            p.personal.clone()
        } else {
            format!("{}@{}", p.local, o.domain)
        };
        v.insert("email".to_owned(), text(email));
    }
    if !chance(rng, r.no_phone) {
        let mut d = p.phone.clone();
        if chance(rng, r.phone_typo) {
            let i = rng.usize(3..d.len());
            d.replace_range(i..=i, &rng.u8(..10).to_string());
        }
        v.insert("phone".to_owned(), text(format_phone(rng, &d)));
    }
    if !chance(rng, r.no_city) {
        v.insert("city".to_owned(), text(p.city));
    }
    if chance(rng, r.birth_date) {
        let (y, m, d) = p.birth;
        let (m, d) = if d <= 12 && chance(rng, r.date_transposed) {
            (d, m)
        } else {
            (m, d)
        };
        v.insert(
            "custom.birth_date".to_owned(),
            text(format!("{y:04}-{m:02}-{d:02}")),
        );
    }
    v
}

fn org_copy(rng: &mut fastrand::Rng, r: &Rates, o: &Org) -> BTreeMap<String, Value> {
    let mut name = format!("{}{}", o.base, pick(rng, LEGAL));
    if chance(rng, 0.15) {
        name = name.to_uppercase();
    }
    if chance(rng, r.company_typo) {
        name = typo(rng, &name);
    }
    let mut v = BTreeMap::new();
    v.insert("name".to_owned(), text(name));
    if !chance(rng, r.no_domain) {
        let d = if chance(rng, 0.3) {
            format!("https://www.{}/", o.domain)
        } else {
            o.domain.clone()
        };
        v.insert("domain".to_owned(), text(d));
    }
    if !chance(rng, r.no_phone) {
        v.insert("custom.phone".to_owned(), text(format_phone(rng, &o.phone)));
    }
    if !chance(rng, r.no_city) {
        v.insert("city".to_owned(), text(o.city));
    }
    v.insert("country".to_owned(), text(o.country));
    v
}

/// Pairwise precision and recall of a clustering against the truth: `pairs` gives each
/// copy's (predicted cluster, true entity).
pub fn pairwise(pairs: impl IntoIterator<Item = (u128, u32)>) -> (f64, f64, u64, u64, u64) {
    let mut cells: BTreeMap<(u128, u32), u64> = BTreeMap::new();
    let mut predicted: BTreeMap<u128, u64> = BTreeMap::new();
    let mut truth: BTreeMap<u32, u64> = BTreeMap::new();
    for (p, t) in pairs {
        *cells.entry((p, t)).or_default() += 1;
        *predicted.entry(p).or_default() += 1;
        *truth.entry(t).or_default() += 1;
    }
    let c2 = |n: u64| n * n.saturating_sub(1) / 2;
    let tp: u64 = cells.values().map(|&n| c2(n)).sum();
    let pp: u64 = predicted.values().map(|&n| c2(n)).sum();
    let tt: u64 = truth.values().map(|&n| c2(n)).sum();
    let precision = if pp == 0 { 1.0 } else { tp as f64 / pp as f64 };
    let recall = if tt == 0 { 1.0 } else { tp as f64 / tt as f64 };
    (precision, recall, tp, pp, tt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_deterministic_and_spreads_each_entity_over_two_to_four_systems() {
        let a = generate(200, 7, &Rates::default());
        let b = generate(200, 7, &Rates::default());
        assert_eq!(a.persons, b.persons);
        let mut per: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for c in &a.persons {
            per.entry(c.entity).or_default().push(c.source);
        }
        assert_eq!(per.len(), 200);
        assert!(per.values().all(|s| (2..=4).contains(&s.len())));
    }

    #[test]
    fn pairwise_scores_count_pairs() {
        // Truth {a,b,c} {d}; predicted {a,b} {c,d}: 1 true pair of 2 predicted, of 3 true.
        let (p, r, ..) = pairwise([(1, 0), (1, 0), (2, 0), (2, 1)]);
        assert!((p - 0.5).abs() < 1e-9 && (r - 1.0 / 3.0).abs() < 1e-9);
    }
}
