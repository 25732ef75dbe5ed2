//! Data quality: what is wrong with the values of persons and companies, counted per
//! problem and per system (the connector each faulty value came from), with examples.
//!
//! Problems are read from the canonical values each time, not kept as flags beside them:
//! a flag would need a merge rule and a source of its own, and would go stale when the
//! disposable-domain list or the phone metadata changes with a new release. The one
//! fix made at ingest, names typed in ALL CAPS or all lower case, is in
//! [`super::normalize::name_case`]; a name still in one case here came in before it, or
//! with `quality.fix_name_case: false`.

use std::collections::BTreeMap;

use revsync_sdk::{Kind, Record, Value};
use serde::Serialize;
use uuid::Uuid;

use super::normalize;

/// One thing wrong with one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// Not a plausible address (`n/a`, `jane@`, two `@`).
    EmailInvalid,
    /// A throwaway mailbox (mailinator.com and 55,000 others).
    EmailDisposable,
    /// A team's address (`info@`, `sales@`): reaches no one person.
    EmailRole,
    /// Not a valid number for its country, so kept as typed instead of E.164.
    PhoneInvalid,
    /// A name in ALL CAPS or all lower case.
    NameCase,
    /// A country revsync could not read as ISO 3166 (kept as typed).
    CountryUnknown,
}

impl Problem {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EmailInvalid => "email_invalid",
            Self::EmailDisposable => "email_disposable",
            Self::EmailRole => "email_role",
            Self::PhoneInvalid => "phone_invalid",
            Self::NameCase => "name_case",
            Self::CountryUnknown => "country_unknown",
        }
    }

    /// What an operator reads next to the count.
    pub fn describe(self) -> &'static str {
        match self {
            Self::EmailInvalid => "email is not a plausible address",
            Self::EmailDisposable => "email is a disposable mailbox",
            Self::EmailRole => "email is a role address (info@, sales@...)",
            Self::PhoneInvalid => "phone is not a valid number for its country",
            Self::NameCase => "name in ALL CAPS or all lower case",
            Self::CountryUnknown => "country is not a known country",
        }
    }
}

/// A problem found on one field of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub problem: Problem,
    pub field: String,
    /// The connector the value came from.
    pub source: String,
}

/// Every problem of a record's current values. Kinds other than persons and companies
/// have none yet.
pub fn assess(r: &Record) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut found = |problem, field: &str| {
        if let Some(e) = r.fields.get(field) {
            out.push(Finding {
                problem,
                field: field.to_owned(),
                source: e.from.connector.clone(),
            });
        }
    };
    let text = |field: &str| r.value(field).and_then(Value::as_text);
    match r.kind {
        Kind::Person => {
            if let Some(email) = text("email") {
                if r.value("email_valid") == Some(&Value::Bool(false)) {
                    found(Problem::EmailInvalid, "email");
                } else if normalize::is_disposable(email) {
                    found(Problem::EmailDisposable, "email");
                } else if normalize::is_role_address(email) {
                    found(Problem::EmailRole, "email");
                }
            }
            if text("phone").is_some_and(|p| !is_e164(p)) {
                found(Problem::PhoneInvalid, "phone");
            }
            for f in ["first_name", "last_name"] {
                if text(f).is_some_and(|n| normalize::name_case(n).is_some()) {
                    found(Problem::NameCase, f);
                }
            }
        }
        Kind::Organization => {}
        _ => return out,
    }
    if text("country").is_some_and(|c| !is_alpha2(c)) {
        found(Problem::CountryUnknown, "country");
    }
    out
}

/// What ingest makes of a readable number: `+` and digits only.
fn is_e164(p: &str) -> bool {
    p.strip_prefix('+')
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// What ingest makes of a readable country: two capital letters.
fn is_alpha2(c: &str) -> bool {
    c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase())
}

/// How many examples each problem keeps.
pub const EXAMPLES: usize = 5;

/// One faulty value shown as an example.
#[derive(Debug, Clone, Serialize)]
pub struct Example {
    pub record: Uuid,
    pub source: String,
    pub value: serde_json::Value,
}

/// One problem on one kind's field, over the whole store.
#[derive(Debug, Clone, Serialize)]
pub struct ProblemCount {
    pub kind: Kind,
    pub problem: Problem,
    pub field: String,
    pub description: &'static str,
    pub total: u64,
    /// Per connector the faulty value came from.
    pub by_source: BTreeMap<String, u64>,
    pub examples: Vec<Example>,
}

/// `revsync quality`: every problem with its counts and examples.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Records read, per kind.
    pub scanned: BTreeMap<String, u64>,
    /// Records with at least one problem, per kind.
    pub with_problems: BTreeMap<String, u64>,
    /// Only values from this connector were counted, when set.
    pub connector: Option<String>,
    pub problems: Vec<ProblemCount>,
}

impl Report {
    pub fn new(connector: Option<String>) -> Self {
        Self {
            connector,
            ..Self::default()
        }
    }

    /// Counts one record's problems (those of `connector`'s values, when set).
    pub fn add(&mut self, r: &Record) {
        let kind = r.kind.to_string();
        *self.scanned.entry(kind.clone()).or_default() += 1;
        let findings: Vec<Finding> = assess(r)
            .into_iter()
            .filter(|f| self.connector.as_ref().is_none_or(|c| *c == f.source))
            .collect();
        if !findings.is_empty() {
            *self.with_problems.entry(kind).or_default() += 1;
        }
        for f in findings {
            let at = match self
                .problems
                .iter()
                .position(|p| p.kind == r.kind && p.problem == f.problem && p.field == f.field)
            {
                Some(i) => i,
                None => {
                    self.problems.push(ProblemCount {
                        kind: r.kind,
                        problem: f.problem,
                        field: f.field.clone(),
                        description: f.problem.describe(),
                        total: 0,
                        by_source: BTreeMap::new(),
                        examples: Vec::new(),
                    });
                    self.problems.len() - 1
                }
            };
            let Some(p) = self.problems.get_mut(at) else {
                continue;
            };
            p.total += 1;
            *p.by_source.entry(f.source.clone()).or_default() += 1;
            if p.examples.len() < EXAMPLES {
                p.examples.push(Example {
                    record: r.id,
                    source: f.source,
                    value: r.value(&f.field).map(Value::to_json).unwrap_or_default(),
                });
            }
        }
    }

    /// Most frequent first, so the table opens with what matters.
    pub fn finish(mut self) -> Self {
        self.problems.sort_by(|a, b| {
            b.total
                .cmp(&a.total)
                .then(a.kind.to_string().cmp(&b.kind.to_string()))
                .then(a.problem.cmp(&b.problem))
        });
        self
    }
}

#[cfg(test)]
mod tests {
    use revsync_sdk::{FieldEntry, Provenance};

    use super::*;

    fn person(fields: &[(&str, Value, &str)]) -> Record {
        let mut r = Record::new(Uuid::now_v7(), Kind::Person, 0);
        for (k, v, src) in fields {
            r.fields.insert(
                (*k).to_owned(),
                FieldEntry {
                    value: v.clone(),
                    from: Provenance {
                        connector: (*src).to_owned(),
                        source_ts: 0,
                        observed_ts: 0,
                    },
                },
            );
        }
        r
    }

    fn text(s: &str) -> Value {
        Value::Text(s.to_owned())
    }

    #[test]
    fn each_problem_is_found_on_its_field_and_blamed_on_its_source() {
        let r = person(&[
            ("email", text("jane@mailinator.com"), "hubspot"),
            ("email_valid", Value::Bool(true), "hubspot"),
            ("phone", text("555-0000"), "zendesk"),
            ("first_name", text("JANE"), "salesforce"),
            ("last_name", text("Doe"), "salesforce"),
            ("country", text("Atlantis"), "zendesk"),
        ]);
        let got: Vec<(Problem, String, String)> = assess(&r)
            .into_iter()
            .map(|f| (f.problem, f.field, f.source))
            .collect();
        assert_eq!(
            got,
            vec![
                (Problem::EmailDisposable, "email".into(), "hubspot".into()),
                (Problem::PhoneInvalid, "phone".into(), "zendesk".into()),
                (Problem::NameCase, "first_name".into(), "salesforce".into()),
                (Problem::CountryUnknown, "country".into(), "zendesk".into()),
            ]
        );
    }

    #[test]
    fn a_clean_person_has_no_problem() {
        let r = person(&[
            ("email", text("jane@acme.com"), "hubspot"),
            ("email_valid", Value::Bool(true), "hubspot"),
            ("phone", text("+14155550123"), "hubspot"),
            ("first_name", text("Jane"), "hubspot"),
            ("country", text("US"), "hubspot"),
        ]);
        assert!(assess(&r).is_empty());
    }

    #[test]
    fn invalid_wins_over_role_and_role_is_found() {
        let bad = person(&[
            ("email", text("info@@acme.com"), "csv"),
            ("email_valid", Value::Bool(false), "csv"),
        ]);
        assert_eq!(assess(&bad)[0].problem, Problem::EmailInvalid);
        let role = person(&[
            ("email", text("sales@acme.com"), "csv"),
            ("email_valid", Value::Bool(true), "csv"),
        ]);
        assert_eq!(assess(&role)[0].problem, Problem::EmailRole);
    }

    #[test]
    fn the_report_counts_per_source_keeps_examples_and_filters_by_connector() {
        let mut all = Report::new(None);
        let mut zendesk = Report::new(Some("zendesk".into()));
        for i in 0..8 {
            let src = if i % 2 == 0 { "zendesk" } else { "hubspot" };
            let r = person(&[("phone", text(&format!("12{i}")), src)]);
            all.add(&r);
            zendesk.add(&r);
        }
        let clean = person(&[("first_name", text("Ann"), "hubspot")]);
        all.add(&clean);
        let all = all.finish();
        assert_eq!(all.scanned["person"], 9);
        assert_eq!(all.with_problems["person"], 8);
        let phone = &all.problems[0];
        assert_eq!((phone.problem, phone.total), (Problem::PhoneInvalid, 8));
        assert_eq!(phone.by_source["zendesk"], 4);
        assert_eq!(phone.by_source["hubspot"], 4);
        assert_eq!(phone.examples.len(), EXAMPLES);
        let zendesk = zendesk.finish();
        assert_eq!(zendesk.problems[0].total, 4);
        assert_eq!(zendesk.problems[0].by_source.len(), 1);
        assert_eq!(zendesk.with_problems["person"], 4);
    }
}
