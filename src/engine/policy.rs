//! Field-level merge policy: which value wins when two systems disagree.

use std::collections::HashMap;

use crate::config::{Config, ConfigError, PolicyName};
use revsync_sdk::{FieldEntry, Kind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// The value with the newest source timestamp (ties: the greater connector id).
    Newest,
    /// The first listed connector that holds a value; unlisted ones rank last, then newest.
    Priority(Vec<String>),
    /// Keep the first value seen until it is emptied.
    FirstNonEmpty,
    /// Newest, except that the listed connectors rank below every other: their value
    /// stands only where no other system states one (a billing system's email).
    NewestBelow(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub policy: Policy,
    /// Whether an empty value may overwrite a non-empty one.
    pub allow_empty: bool,
}

impl Rule {
    const NEWEST: Rule = Rule {
        policy: Policy::Newest,
        allow_empty: false,
    };
}

/// What to do with an incoming value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Equal to the current value: nothing changes, provenance stays.
    Same,
    /// Equal to the current value, asserted more authoritatively: provenance moves to it.
    Refresh,
    Take(&'static str),
    Keep(&'static str),
}

#[derive(Debug, Clone, Default)]
pub struct Policies {
    by_field: HashMap<(Kind, String), Rule>,
    by_kind: HashMap<Kind, Rule>,
    /// Scored identity models of the kinds that have one enabled.
    identity: HashMap<Kind, super::identity::Model>,
}

impl Policies {
    /// The scored identity model of a kind, if matching is on for it.
    pub fn identity(&self, kind: Kind) -> Option<&super::identity::Model> {
        self.identity.get(&kind)
    }

    /// Use a trained model's probabilities for its kind, keeping the configured
    /// thresholds, guards and blocking. Ignored for a kind whose matching is off or whose
    /// comparisons changed since it was trained.
    pub fn use_trained(&mut self, trained: super::identity::Model) -> bool {
        let Some(current) = self.identity.get_mut(&trained.kind) else {
            return false;
        };
        let same_shape = current.comparisons.len() == trained.comparisons.len()
            && current
                .comparisons
                .iter()
                .zip(&trained.comparisons)
                .all(|(a, b)| a.field == b.field && a.comparator == b.comparator);
        if !same_shape {
            return false;
        }
        current.comparisons = trained.comparisons;
        current.prior = trained.prior;
        current.version = trained.version;
        true
    }

    /// Explicit rules from `merge:` over MODEL.md's default ownership: billing facts
    /// to the billing system, deal facts to the sales CRM (Salesforce before HubSpot),
    /// marketing facts to the marketing system; everything else newest.
    pub fn from_config(config: &Config) -> Result<Self, Vec<ConfigError>> {
        let mut p = Policies::default();
        let ids = |t: &str| -> Vec<String> {
            config
                .connectors
                .iter()
                .filter(|(_, c)| c.type_name == t)
                .map(|(_, c)| c.id.clone())
                .collect()
        };
        let (stripe, salesforce, hubspot) = (ids("stripe"), ids("salesforce"), ids("hubspot"));
        if !stripe.is_empty() {
            for k in [Kind::Subscription, Kind::Invoice] {
                p.by_kind.insert(
                    k,
                    Rule {
                        policy: Policy::Priority(stripe.clone()),
                        allow_empty: false,
                    },
                );
            }
        }
        if !stripe.is_empty() {
            // A billing email is often a personal or accounts address: it must not win a
            // person's email over what sales and support know (ADR 0026). It still fills
            // an empty one, and is kept as `billing_email` where the mapping says so.
            p.by_field.insert(
                (Kind::Person, "email".to_owned()),
                Rule {
                    policy: Policy::NewestBelow(stripe.clone()),
                    allow_empty: false,
                },
            );
        }
        let crm: Vec<String> = salesforce.iter().chain(hubspot.iter()).cloned().collect();
        if !crm.is_empty() {
            p.by_kind.insert(
                Kind::Deal,
                Rule {
                    policy: Policy::Priority(crm),
                    allow_empty: false,
                },
            );
        }
        if !hubspot.is_empty() {
            for f in ["lifecycle_stage", "source"] {
                p.by_field.insert(
                    (Kind::Person, f.to_owned()),
                    Rule {
                        policy: Policy::Priority(hubspot.clone()),
                        allow_empty: false,
                    },
                );
            }
            p.by_kind.insert(
                Kind::Activity,
                Rule {
                    policy: Policy::Priority(hubspot.clone()),
                    allow_empty: false,
                },
            );
        }

        let mut errors = Vec::new();
        let file = config.dir.join(crate::config::DAEMON_FILE);
        let id_cfg = &config.daemon.identity;
        for (kind, c) in [
            (Kind::Person, &id_cfg.person),
            (Kind::Organization, &id_cfg.organization),
        ] {
            if !c.enabled {
                continue;
            }
            let Some(mut m) = super::identity::default_for(kind) else {
                continue;
            };
            if let Some(v) = c.upper {
                m.upper = v;
            }
            if let Some(v) = c.lower {
                m.lower = v;
            }
            if let Some(v) = c.max_cluster {
                m.max_cluster = v;
            }
            if let Some(v) = c.max_block {
                m.max_block = v;
            }
            if let Some(v) = &c.strong {
                m.strong.clone_from(v);
            }
            if let Some(v) = &c.comparisons {
                m.comparisons.clone_from(v);
            }
            if let Some(v) = &c.blocking {
                m.blocking.clone_from(v);
            }
            let problems = m.validate();
            if problems.is_empty() {
                p.identity.insert(kind, m);
            }
            for problem in problems {
                errors.push(ConfigError::new(&file, format!("identity.{kind}"), problem));
            }
        }
        for (key, rule) in &config.daemon.merge {
            let err = |m: String| ConfigError::new(&file, format!("merge.{key}"), m);
            let Some((kind, field)) = key.split_once('.') else {
                errors.push(err("expected `<kind>.<field>` or `<kind>.*`".into()));
                continue;
            };
            let kind: Kind = match kind.parse() {
                Ok(k) => k,
                Err(e) => {
                    errors.push(err(e));
                    continue;
                }
            };
            if field != "*" && !field.starts_with("custom.") && kind.field(field).is_none() {
                errors.push(err(format!("`{field}` is not a {kind} field")));
                continue;
            }
            if rule.priority.as_ref().is_some_and(Vec::is_empty) {
                errors.push(err(
                    "`priority: []` names no connector; list them, best first, or drop the key"
                        .into(),
                ));
                continue;
            }
            let priority = rule.priority.clone().unwrap_or_default();
            for c in &priority {
                if !config.connectors.iter().any(|(_, cc)| &cc.id == c) {
                    errors.push(err(format!(
                        "priority names `{c}`, which is not a configured connector"
                    )));
                }
            }
            let policy = match (rule.policy, priority.is_empty()) {
                (Some(PolicyName::Priority), true) => {
                    errors.push(err(
                        "policy `priority` needs a `priority: [connector ids]` list".into(),
                    ));
                    continue;
                }
                (Some(PolicyName::Priority) | None, false) => Policy::Priority(priority),
                (Some(PolicyName::Newest) | None, true) => Policy::Newest,
                (Some(PolicyName::FirstNonEmpty), true) => Policy::FirstNonEmpty,
                (Some(_), false) => {
                    errors.push(err("`priority:` applies only to policy `priority`".into()));
                    continue;
                }
            };
            let r = Rule {
                policy,
                allow_empty: rule.allow_empty,
            };
            if field == "*" {
                p.by_kind.insert(kind, r);
            } else {
                p.by_field.insert((kind, field.to_owned()), r);
            }
        }
        if errors.is_empty() {
            Ok(p)
        } else {
            Err(errors)
        }
    }

    pub fn rule(&self, kind: Kind, field: &str) -> &Rule {
        self.by_field
            .get(&(kind, field.to_owned()))
            .or_else(|| self.by_kind.get(&kind))
            .unwrap_or(&Rule::NEWEST)
    }
}

/// Decide between the current value and an incoming one. Deterministic, so the same
/// set of changes converges whatever order it arrives in (under `newest`/`priority`).
pub fn decide(rule: &Rule, current: Option<&FieldEntry>, incoming: &FieldEntry) -> Decision {
    let Some(cur) = current else {
        return if incoming.value.is_empty() {
            Decision::Same
        } else {
            Decision::Take("new value")
        };
    };
    let equal = cur.value == incoming.value;
    if !equal {
        if incoming.value.is_empty() && !cur.value.is_empty() && !rule.allow_empty {
            return Decision::Keep("an empty value never overwrites a value");
        }
        if cur.value.is_empty() {
            return Decision::Take("filled an empty value");
        }
    }
    let verdict = rank(rule, cur, incoming);
    if equal {
        // The current provenance is always the winning assertion of the value, so a later
        // conflicting edit is judged against it whatever order the two arrived in.
        return match verdict {
            Decision::Take(_) if incoming.from != cur.from => Decision::Refresh,
            _ => Decision::Same,
        };
    }
    verdict
}

fn rank(rule: &Rule, cur: &FieldEntry, incoming: &FieldEntry) -> Decision {
    let newest = || {
        let a = (incoming.from.source_ts, &incoming.from.connector);
        let b = (cur.from.source_ts, &cur.from.connector);
        if a > b || (a == b && value_order(&incoming.value) > value_order(&cur.value)) {
            Decision::Take("newer")
        } else {
            Decision::Keep("older than the current value")
        }
    };
    if incoming.from.connector == cur.from.connector && incoming.from.source_ts < cur.from.source_ts
    {
        return Decision::Keep("older than the current value from the same system");
    }
    match &rule.policy {
        Policy::Newest => newest(),
        Policy::FirstNonEmpty => Decision::Keep("first non-empty value is kept"),
        Policy::Priority(order) => {
            let rank = |c: &str| order.iter().position(|o| o == c).unwrap_or(order.len());
            by_rank(
                rank(&incoming.from.connector),
                rank(&cur.from.connector),
                newest,
            )
        }
        Policy::NewestBelow(below) => {
            let rank = |c: &String| below.contains(c);
            by_rank(
                rank(&incoming.from.connector),
                rank(&cur.from.connector),
                newest,
            )
        }
    }
}

/// The better-ranked (lower) source wins; equal ranks fall to `tie`.
fn by_rank<R: Ord>(incoming: R, current: R, tie: impl FnOnce() -> Decision) -> Decision {
    match incoming.cmp(&current) {
        std::cmp::Ordering::Less => Decision::Take("higher priority system"),
        std::cmp::Ordering::Greater => Decision::Keep("lower priority system"),
        std::cmp::Ordering::Equal => tie(),
    }
}

/// A total order on values for the (rare) tie of same source, same timestamp.
fn value_order(v: &revsync_sdk::Value) -> Vec<u8> {
    postcard::to_stdvec(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use revsync_sdk::{Provenance, Value};

    fn e(v: &str, c: &str, ts: i64) -> FieldEntry {
        FieldEntry {
            value: if v.is_empty() {
                Value::Null
            } else {
                Value::Text(v.into())
            },
            from: Provenance {
                connector: c.into(),
                source_ts: ts,
                observed_ts: 0,
            },
        }
    }

    #[test]
    fn newest_wins_and_ties_are_deterministic() {
        let r = Rule::NEWEST;
        assert_eq!(
            decide(&r, Some(&e("a", "hs", 1)), &e("b", "sf", 2)),
            Decision::Take("newer")
        );
        assert!(matches!(
            decide(&r, Some(&e("a", "hs", 2)), &e("b", "sf", 1)),
            Decision::Keep(_)
        ));
        // Same timestamp: the outcome does not depend on which arrived first.
        let x = decide(&r, Some(&e("a", "hs", 5)), &e("b", "sf", 5));
        let y = decide(&r, Some(&e("b", "sf", 5)), &e("a", "hs", 5));
        assert_ne!(
            matches!(x, Decision::Take(_)),
            matches!(y, Decision::Take(_))
        );
    }

    #[test]
    fn empty_never_overwrites_unless_allowed() {
        let r = Rule::NEWEST;
        assert!(matches!(
            decide(&r, Some(&e("a", "hs", 1)), &e("", "hs", 9)),
            Decision::Keep(_)
        ));
        let allow = Rule {
            policy: Policy::Newest,
            allow_empty: true,
        };
        assert!(matches!(
            decide(&allow, Some(&e("a", "hs", 1)), &e("", "hs", 9)),
            Decision::Take(_)
        ));
        assert_eq!(decide(&r, None, &e("", "hs", 1)), Decision::Same);
    }

    #[test]
    fn an_equal_value_moves_provenance_only_when_it_would_win() {
        let r = Rule::NEWEST;
        assert_eq!(
            decide(&r, Some(&e("a", "hs", 1)), &e("a", "sf", 2)),
            Decision::Refresh
        );
        assert_eq!(
            decide(&r, Some(&e("a", "sf", 2)), &e("a", "hs", 1)),
            Decision::Same
        );
        assert_eq!(
            decide(&r, Some(&e("a", "sf", 2)), &e("a", "sf", 2)),
            Decision::Same
        );
    }

    #[test]
    fn priority_beats_recency_and_same_source_never_regresses() {
        let r = Rule {
            policy: Policy::Priority(vec!["sf".into()]),
            allow_empty: false,
        };
        assert!(matches!(
            decide(&r, Some(&e("a", "sf", 1)), &e("b", "hs", 9)),
            Decision::Keep(_)
        ));
        assert!(matches!(
            decide(&r, Some(&e("a", "hs", 9)), &e("b", "sf", 1)),
            Decision::Take(_)
        ));
        assert!(matches!(
            decide(&r, Some(&e("a", "sf", 9)), &e("b", "sf", 1)),
            Decision::Keep(_)
        ));
        let f = Rule {
            policy: Policy::FirstNonEmpty,
            allow_empty: false,
        };
        assert!(matches!(
            decide(&f, Some(&e("a", "hs", 1)), &e("b", "sf", 9)),
            Decision::Keep(_)
        ));
    }

    #[test]
    fn a_billing_value_fills_an_empty_email_and_never_beats_another_system() {
        let r = Rule {
            policy: Policy::NewestBelow(vec!["stripe".into()]),
            allow_empty: false,
        };
        // Newer, from billing: kept out.
        assert!(matches!(
            decide(
                &r,
                Some(&e("w@acme.com", "hs", 1)),
                &e("p@gmail.com", "stripe", 9)
            ),
            Decision::Keep(_)
        ));
        // Billing stood alone; any other system's value replaces it, however old.
        assert!(matches!(
            decide(
                &r,
                Some(&e("p@gmail.com", "stripe", 9)),
                &e("w@acme.com", "hs", 1)
            ),
            Decision::Take(_)
        ));
        assert!(matches!(
            decide(&r, None, &e("p@gmail.com", "stripe", 9)),
            Decision::Take(_)
        ));
        // Between the others: newest, as before.
        assert!(matches!(
            decide(
                &r,
                Some(&e("a@acme.com", "hs", 1)),
                &e("b@acme.com", "zd", 2)
            ),
            Decision::Take(_)
        ));
        assert!(matches!(
            decide(
                &r,
                Some(&e("a@acme.com", "hs", 3)),
                &e("b@acme.com", "zd", 2)
            ),
            Decision::Keep(_)
        ));
    }
}
