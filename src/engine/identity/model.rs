//! The Fellegi-Sunter model: per field a comparison with ordered levels, each level with
//! its m probability (the level's frequency among true matches) and u probability (among
//! random pairs); a pair's match weight is the prior's log-odds plus log2(m/u) of the
//! level each comparison lands on.

use std::collections::BTreeMap;

use revsync_sdk::{Kind, Value};
use serde::{Deserialize, Serialize};

use super::compare;

/// How one field's values are compared; each variant has a fixed list of levels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Comparator {
    /// Given or family names: exact, swapped with `swap_with` (first and last name typed
    /// in each other's box), same name under a nickname, Jaro-Winkler >= 0.92, >= 0.80.
    Name {
        #[serde(default)]
        nicknames: bool,
        #[serde(default)]
        swap_with: Option<String>,
    },
    /// Email addresses: exact, same local part with one of them at a free-mail domain (a
    /// personal and a work address of one person), same company domain (free-mail
    /// domains never count).
    Email,
    /// Phone numbers, postcodes and ids: exact, one edit, two edits (Damerau-Levenshtein).
    /// `digits_only` compares only the digits, and a number that ends with the other (a
    /// country code dropped) is exact.
    Code {
        #[serde(default)]
        digits_only: bool,
    },
    /// Dates: exact, one of year, month or day different, day and month transposed.
    Date,
    /// Company names with legal forms, punctuation and case removed: exact, Jaro-Winkler
    /// >= 0.92, >= 0.80.
    Company,
    /// Any value: equal or not.
    Exact,
}

impl Comparator {
    /// The labels of this comparator's levels, best first; the last is "different".
    pub fn levels(&self) -> &'static [&'static str] {
        match self {
            Comparator::Name { .. } => &[
                "exact",
                "swapped",
                "nickname",
                "jw>=0.92",
                "jw>=0.80",
                "different",
            ],
            Comparator::Email => &[
                "exact",
                "same local part",
                "same company domain",
                "different",
            ],
            Comparator::Code { .. } => &["exact", "one edit", "two edits", "different"],
            Comparator::Date => &[
                "exact",
                "one part off",
                "day and month transposed",
                "different",
            ],
            Comparator::Company => &["exact", "jw>=0.92", "jw>=0.80", "different"],
            Comparator::Exact => &["exact", "different"],
        }
    }

    /// Whether the exact level's weight is adjusted by how common the value is.
    fn term_frequency(&self) -> bool {
        matches!(self, Comparator::Name { .. } | Comparator::Company)
    }
}

/// One field's comparison and its trained (or default) probabilities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    pub field: String,
    pub comparator: Comparator,
    /// m per level, in `comparator.levels()` order.
    pub m: Vec<f64>,
    /// u per level.
    pub u: Vec<f64>,
    /// Frequency of common exact values (folded) among all records: an exact match on
    /// "smith" says less than one on "zylberstein". Values not listed use `u[0]`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tf: BTreeMap<String, f64>,
}

/// One part of a blocking key, computed from a field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyPart {
    /// The folded value.
    Exact { field: String },
    /// Soundex of the folded value.
    Soundex { field: String },
    /// The first letter of the given name's root ("bill" gives "w" of "william").
    NameInitial { field: String },
    /// The last `len` letters of the folded value.
    Suffix { field: String, len: usize },
    /// The given name's root ("bob" gives "robert").
    NameRoot { field: String },
    /// The last `len` digits.
    LastDigits { field: String, len: usize },
    /// An email's local part.
    EmailLocal { field: String },
    /// The company name reduced to what identifies it.
    Company { field: String },
    /// Soundex of a given name's root and of a family name, in sorted order: the same key
    /// for "Bill Smith", "William Smyth" and "Smith William" (names swapped).
    NamePair { first: String, last: String },
}

impl KeyPart {
    /// The fields this part reads.
    pub fn fields(&self) -> Vec<&str> {
        match self {
            KeyPart::Exact { field }
            | KeyPart::Soundex { field }
            | KeyPart::NameInitial { field }
            | KeyPart::Suffix { field, .. }
            | KeyPart::NameRoot { field }
            | KeyPart::LastDigits { field, .. }
            | KeyPart::EmailLocal { field }
            | KeyPart::Company { field } => vec![field],
            KeyPart::NamePair { first, last } => vec![first, last],
        }
    }
}

/// A blocking rule: records with an equal key under it are compared. Rules with the same
/// `name` share keys, so "last name, first initial" and its swapped twin meet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRule {
    pub name: String,
    pub parts: Vec<KeyPart>,
}

/// A kind's scored identity model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    pub kind: Kind,
    /// 0 for the shipped defaults; `identity train` stores 1, 2, ...
    #[serde(default)]
    pub version: u32,
    /// Probability that two random records of this kind are the same entity.
    pub prior: f64,
    /// Match probability at or above which a pair merges on its own.
    pub upper: f64,
    /// Match probability at or above which (and below `upper`) a pair goes to review.
    pub lower: f64,
    pub comparisons: Vec<Comparison>,
    pub blocking: Vec<BlockRule>,
    /// The most copies one record may hold after a scored merge; a bigger one goes to
    /// review (a runaway cluster is how one bad rule merges a whole company).
    pub max_cluster: usize,
    /// Fields that identify outright: two different non-empty values never merge.
    #[serde(default)]
    pub strong: Vec<String>,
    /// The most candidates read from one block: a block bigger than that is too common
    /// to say anything (everyone called Smith).
    pub max_block: usize,
}

impl Comparison {
    /// The field a Name comparison checks for a swap with.
    pub fn swap_field(&self) -> Option<&str> {
        match &self.comparator {
            Comparator::Name { swap_with, .. } => swap_with.as_deref(),
            _ => None,
        }
    }
}

/// One field's value prepared for comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    value: String,
    /// The `swap_with` field's folded value, for Name comparisons.
    other: Option<String>,
}

/// A record prepared once for every comparison it takes part in.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile(Vec<Option<Prepared>>);

impl Profile {
    /// The prepared value of the model's comparison `i`.
    pub fn value(&self, i: usize) -> Option<&str> {
        self.0.get(i)?.as_ref().map(|p| p.value.as_str())
    }
}

/// What one comparison contributed to a score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelWeight {
    pub field: String,
    pub level: String,
    pub weight: f64,
}

/// A scored pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Log2 odds of a match, prior included.
    pub weight: f64,
    pub probability: f64,
    pub levels: Vec<LevelWeight>,
}

/// What a score means under a model's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Merge,
    Review,
    Separate,
}

/// Text of a value for comparison; `None` for empty or incomparable values.
pub fn value_text(v: &Value) -> Option<String> {
    let s = match v {
        Value::Text(s) if !s.trim().is_empty() => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Date(d) => d.format("%Y-%m-%d").to_string(),
        Value::Ref(id) => id.to_string(),
        _ => return None,
    };
    Some(s)
}

fn prepare(c: &Comparator, raw: &str) -> String {
    match c {
        Comparator::Name { .. } => compare::fold(raw),
        Comparator::Email => raw.trim().to_lowercase(),
        Comparator::Code { digits_only: true } => compare::digits(raw),
        Comparator::Code { digits_only: false } => compare::fold(raw).replace(' ', ""),
        Comparator::Date | Comparator::Exact => raw.trim().to_lowercase(),
        Comparator::Company => compare::company(raw),
    }
}

fn level_of(c: &Comparator, a: &Prepared, b: &Prepared) -> usize {
    let (x, y) = (a.value.as_str(), b.value.as_str());
    match c {
        Comparator::Name { nicknames, .. } => {
            if x == y {
                0
            } else if a.other.as_deref() == Some(y) && b.other.as_deref() == Some(x) {
                1
            } else if *nicknames && compare::nicknames(x, y) {
                2
            } else {
                let jw = compare::jaro_winkler(x, y);
                if jw >= 0.92 {
                    3
                } else if jw >= 0.80 {
                    4
                } else {
                    5
                }
            }
        }
        Comparator::Email => {
            if x == y {
                return 0;
            }
            let split = |e: &str| {
                e.rsplit_once('@')
                    .map(|(l, d)| (l.to_owned(), d.to_owned()))
            };
            match (split(x), split(y)) {
                (Some((lx, dx)), Some((ly, dy))) => {
                    let free = super::super::normalize::is_free_mail;
                    // One person's personal and work address; two work addresses at two
                    // companies are two people (namesakes), whatever the local part.
                    if email_local(&lx) == email_local(&ly)
                        && !lx.is_empty()
                        && (free(&dx) || free(&dy))
                    {
                        1
                    } else if dx == dy && !super::super::normalize::is_free_mail(&dx) {
                        2
                    } else {
                        3
                    }
                }
                _ => 3,
            }
        }
        Comparator::Code { digits_only } => {
            if x == y {
                return 0;
            }
            if *digits_only {
                let (short, long) = if x.len() <= y.len() { (x, y) } else { (y, x) };
                if short.len() >= 7 && long.ends_with(short) {
                    return 0;
                }
            }
            match compare::damerau(x, y) {
                1 => 1,
                2 => 2,
                _ => 3,
            }
        }
        Comparator::Date => {
            if x == y {
                return 0;
            }
            let parts = |d: &str| -> Option<[String; 3]> {
                let mut it = d.splitn(3, '-').map(str::to_owned);
                Some([it.next()?, it.next()?, it.next()?])
            };
            match (parts(x), parts(y)) {
                (Some([ya, ma, da]), Some([yb, mb, db])) => {
                    let same =
                        usize::from(ya == yb) + usize::from(ma == mb) + usize::from(da == db);
                    if ya == yb && ma == db && da == mb {
                        2
                    } else if same == 2 {
                        1
                    } else {
                        3
                    }
                }
                _ => 3,
            }
        }
        Comparator::Company => {
            if x == y {
                0
            } else {
                let jw = compare::jaro_winkler(x, y);
                if jw >= 0.92 {
                    1
                } else if jw >= 0.80 {
                    2
                } else {
                    3
                }
            }
        }
        Comparator::Exact => usize::from(x != y),
    }
}

/// The part of an email's local part that names the person: "jane.doe+crm" gives "janedoe".
pub fn email_local(local: &str) -> String {
    local
        .split('+')
        .next()
        .unwrap_or(local)
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect()
}

fn log2_ratio(m: f64, u: f64) -> f64 {
    (m.max(1e-9) / u.max(1e-9)).log2()
}

/// Match probability of a log2-odds weight.
pub fn probability(weight: f64) -> f64 {
    let odds = weight.exp2();
    if odds.is_infinite() {
        1.0
    } else {
        odds / (1.0 + odds)
    }
}

impl Model {
    /// Prepares a record's values (given by canonical field name) for comparison.
    pub fn profile<'v>(&self, get: &dyn Fn(&str) -> Option<&'v Value>) -> Profile {
        Profile(
            self.comparisons
                .iter()
                .map(|c| {
                    let value = get(&c.field).and_then(value_text)?;
                    let value = prepare(&c.comparator, &value);
                    // A shared role address (info@, sales@) says nothing about who it is.
                    if value.is_empty()
                        || (c.comparator == Comparator::Email
                            && super::super::normalize::is_role_address(&value))
                    {
                        return None;
                    }
                    let other = match &c.comparator {
                        Comparator::Name {
                            swap_with: Some(f), ..
                        } => get(f).and_then(value_text).map(|s| compare::fold(&s)),
                        _ => None,
                    };
                    Some(Prepared { value, other })
                })
                .collect(),
        )
    }

    /// The fields this model reads, with their text: what a record's block entries hold.
    pub fn compared_values<'v>(
        &self,
        get: &dyn Fn(&str) -> Option<&'v Value>,
    ) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for c in &self.comparisons {
            for f in std::iter::once(c.field.as_str()).chain(c.swap_field()) {
                if out.iter().any(|(k, _)| k == f) {
                    continue;
                }
                if let Some(t) = get(f).and_then(value_text) {
                    out.push((f.to_owned(), t));
                }
            }
        }
        out
    }

    /// The profile of values as [`Model::compared_values`] gave them.
    pub fn profile_of_stored(&self, values: &[(String, String)]) -> Profile {
        let map: BTreeMap<&str, Value> = values
            .iter()
            .map(|(k, v)| (k.as_str(), Value::Text(v.clone())))
            .collect();
        self.profile(&|f| map.get(f))
    }

    /// Each comparison's level for a pair, `None` where either side has no value.
    pub fn levels(&self, a: &Profile, b: &Profile) -> Vec<Option<usize>> {
        self.comparisons
            .iter()
            .zip(a.0.iter().zip(b.0.iter()))
            .map(|(c, pair)| match pair {
                (Some(x), Some(y)) => Some(level_of(&c.comparator, x, y)),
                _ => None,
            })
            .collect()
    }

    /// The pair's match weight with the levels that made it.
    pub fn score(&self, a: &Profile, b: &Profile) -> Score {
        let prior = self.prior.clamp(1e-12, 1.0 - 1e-12);
        let mut weight = (prior / (1.0 - prior)).log2();
        let mut levels = Vec::new();
        for ((c, level), value) in self
            .comparisons
            .iter()
            .zip(self.levels(a, b))
            .zip(a.0.iter())
        {
            let Some(level) = level else { continue };
            let m = c.m.get(level).copied().unwrap_or(0.0);
            let mut u = c.u.get(level).copied().unwrap_or(1.0);
            if level == 0 && c.comparator.term_frequency() {
                if let Some(tf) = value.as_ref().and_then(|v| c.tf.get(&v.value)) {
                    u = u.max(*tf);
                }
            }
            let w = log2_ratio(m, u);
            weight += w;
            levels.push(LevelWeight {
                field: c.field.clone(),
                level: c
                    .comparator
                    .levels()
                    .get(level)
                    .copied()
                    .unwrap_or("?")
                    .to_owned(),
                weight: (w * 100.0).round() / 100.0,
            });
        }
        Score {
            weight,
            probability: probability(weight),
            levels,
        }
    }

    pub fn verdict(&self, score: &Score) -> Verdict {
        if score.probability >= self.upper {
            Verdict::Merge
        } else if score.probability >= self.lower {
            Verdict::Review
        } else {
            Verdict::Separate
        }
    }

    /// The blocking keys of a record: `rule name|part|part`. A rule whose part has no
    /// value gives no key.
    pub fn block_keys<'v>(&self, get: &dyn Fn(&str) -> Option<&'v Value>) -> Vec<String> {
        let mut keys: Vec<String> = self
            .blocking
            .iter()
            .filter_map(|rule| {
                let mut key = rule.name.clone();
                for part in &rule.parts {
                    let v = part_value(part, get)?;
                    if v.is_empty() {
                        return None;
                    }
                    key.push('|');
                    key.push_str(&v);
                }
                Some(key)
            })
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Problems that make a model unusable, each naming its place.
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if !(0.0 < self.prior && self.prior < 1.0) {
            errs.push(format!("prior: {} is not between 0 and 1", self.prior));
        }
        if !(0.0 < self.lower && self.lower <= self.upper && self.upper <= 1.0) {
            errs.push(format!(
                "thresholds: need 0 < lower ({}) <= upper ({}) <= 1",
                self.lower, self.upper
            ));
        }
        for (i, c) in self.comparisons.iter().enumerate() {
            let n = c.comparator.levels().len();
            for (name, p) in [("m", &c.m), ("u", &c.u)] {
                if p.len() != n {
                    errs.push(format!(
                        "comparisons[{i}] ({}): {name} has {} values, the comparator has {n} levels",
                        c.field,
                        p.len()
                    ));
                } else if p.iter().any(|x| !(0.0..=1.0).contains(x))
                    || (p.iter().sum::<f64>() - 1.0).abs() > 0.01
                {
                    errs.push(format!(
                        "comparisons[{i}] ({}): {name} must be probabilities summing to 1",
                        c.field
                    ));
                }
            }
        }
        if self.blocking.is_empty() {
            errs.push("blocking: at least one rule is needed".into());
        }
        if self.max_block == 0 || self.max_cluster < 2 {
            errs.push("max_block must be at least 1 and max_cluster at least 2".into());
        }
        errs
    }
}

fn part_value<'v>(part: &KeyPart, get: &dyn Fn(&str) -> Option<&'v Value>) -> Option<String> {
    let text = |f: &str| get(f).and_then(value_text);
    Some(match part {
        KeyPart::Exact { field } => compare::fold(&text(field)?),
        KeyPart::Soundex { field } => compare::soundex(&compare::fold(&text(field)?)),
        KeyPart::NameInitial { field } => {
            let folded = compare::fold(&text(field)?);
            compare::name_root(&folded).chars().next()?.to_string()
        }
        KeyPart::NameRoot { field } => {
            let folded = compare::fold(&text(field)?);
            compare::name_root(&folded).to_owned()
        }
        KeyPart::Suffix { field, len } => {
            let folded: Vec<char> = compare::fold(&text(field)?)
                .chars()
                .filter(|c| *c != ' ')
                .collect();
            if folded.len() < *len {
                return None;
            }
            folded
                .iter()
                .skip(folded.len().saturating_sub(*len))
                .collect()
        }
        KeyPart::LastDigits { field, len } => {
            let d = compare::digits(&text(field)?);
            if d.len() < *len {
                return None;
            }
            d.get(d.len().saturating_sub(*len)..)?.to_owned()
        }
        KeyPart::EmailLocal { field } => {
            let e = text(field)?.trim().to_lowercase();
            let (local, _) = e.rsplit_once('@')?;
            let local = email_local(local);
            // "info", "j": too short to say who it is.
            if local.len() < 4 {
                return None;
            }
            local
        }
        KeyPart::Company { field } => compare::company(&text(field)?),
        KeyPart::NamePair { first, last } => {
            let sound = |f: &str| -> Option<String> {
                let folded = compare::fold(&text(f)?);
                let code = compare::soundex(compare::name_root(&folded));
                (!code.is_empty()).then_some(code)
            };
            let (a, b) = (sound(first)?, sound(last)?);
            if a <= b {
                format!("{a}{b}")
            } else {
                format!("{b}{a}")
            }
        }
    })
}

fn cmp(field: &str, comparator: Comparator, m: &[f64], u: &[f64]) -> Comparison {
    Comparison {
        field: field.into(),
        comparator,
        m: m.to_vec(),
        u: u.to_vec(),
        tf: BTreeMap::new(),
    }
}

/// Phone numbers, compared on their digits.
fn phone(field: &str) -> Comparison {
    cmp(
        field,
        Comparator::Code { digits_only: true },
        &[0.7, 0.1, 0.05, 0.15],
        &[0.00001, 0.0001, 0.001, 0.99889],
    )
}

fn rule(name: &str, parts: Vec<KeyPart>) -> BlockRule {
    BlockRule {
        name: name.into(),
        parts,
    }
}

fn f(s: &str) -> String {
    s.to_owned()
}

/// The shipped person model: works with no training on typical CRM data.
pub fn default_person() -> Model {
    let name_m = [0.86, 0.02, 0.04, 0.04, 0.02, 0.02];
    Model {
        kind: Kind::Person,
        version: 0,
        prior: 1e-4,
        upper: 0.999,
        lower: 0.5,
        comparisons: vec![
            cmp(
                "first_name",
                Comparator::Name {
                    nicknames: true,
                    swap_with: Some(f("last_name")),
                },
                &name_m,
                &[0.01, 0.0001, 0.002, 0.004, 0.02, 0.9639],
            ),
            cmp(
                "last_name",
                Comparator::Name {
                    nicknames: false,
                    swap_with: Some(f("first_name")),
                },
                &[0.88, 0.02, 0.0001, 0.06, 0.02, 0.0199],
                &[0.002, 0.0001, 0.0001, 0.002, 0.015, 0.9808],
            ),
            cmp(
                "email",
                Comparator::Email,
                // A local part is mostly made of the name, already counted: the same one at
                // a personal and a work domain adds less than its rarity suggests.
                &[0.45, 0.2, 0.1, 0.25],
                &[0.00001, 0.002, 0.005, 0.99299],
            ),
            phone("phone"),
            cmp(
                "organization",
                Comparator::Exact,
                &[0.85, 0.15],
                &[0.002, 0.998],
            ),
            cmp(
                "custom.birth_date",
                Comparator::Date,
                &[0.9, 0.04, 0.02, 0.04],
                &[0.0001, 0.003, 0.0001, 0.9968],
            ),
            cmp("city", Comparator::Exact, &[0.85, 0.15], &[0.05, 0.95]),
        ],
        blocking: vec![
            // Both names, either way round, typos after their first letter forgiven.
            rule(
                "names",
                vec![KeyPart::NamePair {
                    first: f("first_name"),
                    last: f("last_name"),
                }],
            ),
            rule(
                "email_local",
                vec![KeyPart::EmailLocal { field: f("email") }],
            ),
            rule(
                "phone",
                vec![KeyPart::LastDigits {
                    field: f("phone"),
                    len: 7,
                }],
            ),
        ],
        max_cluster: 12,
        strong: vec![],
        max_block: 50,
    }
}

/// The shipped organization model.
pub fn default_organization() -> Model {
    Model {
        kind: Kind::Organization,
        version: 0,
        prior: 1e-4,
        upper: 0.999,
        lower: 0.5,
        comparisons: vec![
            cmp(
                "name",
                Comparator::Company,
                &[0.82, 0.1, 0.05, 0.03],
                &[0.0005, 0.001, 0.01, 0.9885],
            ),
            cmp(
                "domain",
                Comparator::Exact,
                &[0.55, 0.45],
                &[0.00001, 0.99999],
            ),
            // Organizations have no canonical phone; a mapping to `custom.phone` feeds this.
            phone("custom.phone"),
            cmp("city", Comparator::Exact, &[0.85, 0.15], &[0.05, 0.95]),
            cmp("country", Comparator::Exact, &[0.95, 0.05], &[0.2, 0.8]),
        ],
        blocking: vec![
            rule("company", vec![KeyPart::Company { field: f("name") }]),
            rule(
                "company_sound",
                vec![
                    KeyPart::Soundex { field: f("name") },
                    KeyPart::Exact {
                        field: f("country"),
                    },
                ],
            ),
            rule(
                "phone",
                vec![KeyPart::LastDigits {
                    field: f("custom.phone"),
                    len: 7,
                }],
            ),
        ],
        max_cluster: 12,
        strong: vec![f("custom.tax_id")],
        max_block: 50,
    }
}

/// The shipped model of a kind, if it has one.
pub fn default_for(kind: Kind) -> Option<Model> {
    match kind {
        Kind::Person => Some(default_person()),
        Kind::Organization => Some(default_organization()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(pairs: &[(&str, &str)]) -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::Text((*v).to_owned())))
            .collect()
    }

    fn score(m: &Model, a: &BTreeMap<String, Value>, b: &BTreeMap<String, Value>) -> Score {
        let pa = m.profile(&|f| a.get(f));
        let pb = m.profile(&|f| b.get(f));
        m.score(&pa, &pb)
    }

    #[test]
    fn shipped_models_are_valid() {
        assert_eq!(default_person().validate(), Vec::<String>::new());
        assert_eq!(default_organization().validate(), Vec::<String>::new());
    }

    #[test]
    fn a_typo_and_a_nickname_with_the_same_phone_merge() {
        let m = default_person();
        let a = person(&[
            ("first_name", "William"),
            ("last_name", "Johnson"),
            ("phone", "+14155550123"),
            ("email", "wjohnson@acme.com"),
        ]);
        let b = person(&[
            ("first_name", "Bill"),
            ("last_name", "Jonhson"),
            ("phone", "415-555-0123"),
            ("email", "bill.j@gmail.com"),
        ]);
        let s = score(&m, &a, &b);
        assert_eq!(m.verdict(&s), Verdict::Merge, "{s:?}");
        assert!(s.levels.iter().any(|l| l.level == "nickname"));
    }

    #[test]
    fn a_namesake_with_nothing_else_in_common_stays_apart() {
        let m = default_person();
        let a = person(&[
            ("first_name", "John"),
            ("last_name", "Smith"),
            ("email", "john@acme.com"),
        ]);
        let b = person(&[
            ("first_name", "John"),
            ("last_name", "Smith"),
            ("email", "jsmith@globex.com"),
        ]);
        assert_ne!(m.verdict(&score(&m, &a, &b)), Verdict::Merge);
    }

    #[test]
    fn swapped_names_are_seen_as_swapped() {
        let m = default_person();
        let a = person(&[("first_name", "Chen"), ("last_name", "Wei")]);
        let b = person(&[("first_name", "Wei"), ("last_name", "Chen")]);
        let s = score(&m, &a, &b);
        assert_eq!(s.levels.first().map(|l| l.level.as_str()), Some("swapped"));
        let ka = m.block_keys(&|f| a.get(f));
        let kb = m.block_keys(&|f| b.get(f));
        assert!(ka.iter().any(|k| kb.contains(k)), "{ka:?} {kb:?}");
    }

    #[test]
    fn company_names_compare_without_legal_forms() {
        let m = default_organization();
        let a = person(&[
            ("name", "ACME Corporation"),
            ("custom.phone", "+1 212 555 0100"),
        ]);
        let b = person(&[("name", "Acme, Inc."), ("custom.phone", "(212) 555-0100")]);
        let s = score(&m, &a, &b);
        assert_eq!(m.verdict(&s), Verdict::Merge, "{s:?}");
    }

    #[test]
    fn date_levels() {
        let c = Comparator::Date;
        let p = |s: &str| Prepared {
            value: s.into(),
            other: None,
        };
        assert_eq!(level_of(&c, &p("1980-03-04"), &p("1980-03-04")), 0);
        assert_eq!(level_of(&c, &p("1980-03-04"), &p("1981-03-04")), 1);
        assert_eq!(level_of(&c, &p("1980-03-04"), &p("1980-04-03")), 2);
        assert_eq!(level_of(&c, &p("1980-03-04"), &p("1990-05-04")), 3);
    }

    #[test]
    fn email_levels() {
        let c = Comparator::Email;
        let p = |s: &str| Prepared {
            value: s.into(),
            other: None,
        };
        assert_eq!(
            level_of(&c, &p("jane.doe@acme.com"), &p("janedoe@gmail.com")),
            1
        );
        assert_eq!(level_of(&c, &p("jane@acme.com"), &p("bob@acme.com")), 2);
        assert_eq!(level_of(&c, &p("jane@gmail.com"), &p("bob@gmail.com")), 3);
    }
}
