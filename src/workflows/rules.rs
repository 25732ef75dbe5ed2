//! Workflow rules as written in `DIR/workflows/*.yaml`, checked and compiled: every
//! problem names its file, its rule and the field, and an expression's position.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use revsync_sdk::{FieldType, Kind};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::config::ConfigError;

/// A chain of rules (a rule's write triggering another) stops at this depth unless a
/// rule says otherwise.
pub const DEFAULT_MAX_DEPTH: u8 = 4;
pub const DEFAULT_RUNS_PER_MINUTE: u32 = 600;
/// Expression evaluation steps: a template cannot loop forever.
pub const FUEL: u64 = 50_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConf {
    version: u32,
    rules: Vec<RuleConf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleConf {
    name: String,
    #[serde(default)]
    description: String,
    on: TriggerConf,
    #[serde(default)]
    when: Option<String>,
    #[serde(rename = "do")]
    actions: Vec<ActionConf>,
    #[serde(default)]
    max_depth: Option<u8>,
    #[serde(default)]
    max_runs_per_minute: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerConf {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    changed: Option<String>,
    #[serde(default)]
    from: Option<OneOrMany>,
    #[serde(default)]
    to: Option<OneOrMany>,
    /// `14d`, `6h`, `30m`, `90s`: run that long after the trigger, on the record as it
    /// is then.
    #[serde(default)]
    after: Option<String>,
    /// Also run on what a connector's first full read brings (the system's past): off by
    /// default, so connecting a system does not replay its history through the rules.
    #[serde(default)]
    backfill: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<Json>),
    One(Json),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum ActionConf {
    Set {
        #[serde(default)]
        record: Option<String>,
        fields: BTreeMap<String, Json>,
    },
    Create {
        kind: String,
        fields: BTreeMap<String, Json>,
        #[serde(default)]
        route: Option<Vec<String>>,
    },
    /// A `create` of an activity.
    Activity {
        fields: BTreeMap<String, Json>,
        #[serde(default)]
        route: Option<Vec<String>>,
    },
    Webhook {
        url: String,
        secret: String,
        #[serde(default)]
        body: Option<BTreeMap<String, Json>>,
    },
}

/// A value in a rule: a literal, a template (`Deal {{ record.name }}`, always text) or a
/// lone `{{ expression }}`, which keeps the expression's type (a number, a record id).
#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    Literal(Json),
    Text(String),
    Expr(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    Created(Kind),
    Changed {
        kind: Kind,
        field: String,
        from: Option<Vec<Json>>,
        to: Option<Vec<Json>>,
    },
}

impl Trigger {
    pub fn kind(&self) -> Kind {
        match self {
            Trigger::Created(k) | Trigger::Changed { kind: k, .. } => *k,
        }
    }

    pub fn describe(&self) -> String {
        let list = |v: &Option<Vec<Json>>| {
            v.as_ref().map(|v| {
                v.iter()
                    .map(|j| match j {
                        Json::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
        };
        match self {
            Trigger::Created(k) => format!("{k} created"),
            Trigger::Changed {
                kind,
                field,
                from,
                to,
            } => {
                let mut s = format!("{kind}.{field} changed");
                if let Some(f) = list(from) {
                    s.push_str(&format!(" from {f}"));
                }
                if let Some(t) = list(to) {
                    s.push_str(&format!(" to {t}"));
                }
                s
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Set {
        /// The record written: `None` the trigger's own.
        record: Option<Template>,
        fields: Vec<(String, Template)>,
    },
    Create {
        kind: Kind,
        fields: Vec<(String, Template)>,
        route: Option<Vec<String>>,
    },
    Webhook {
        url: String,
        secret: String,
        body: Option<Vec<(String, Template)>>,
    },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Set { .. } => "set",
            Action::Create { .. } => "create",
            Action::Webhook { .. } => "webhook",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub file: PathBuf,
    pub description: String,
    pub trigger: Trigger,
    pub after: Option<Duration>,
    /// Runs on changes read by a connector's first full read too.
    pub backfill: bool,
    pub when: Option<String>,
    pub actions: Vec<Action>,
    pub max_depth: u8,
    pub max_runs_per_minute: u32,
}

impl Rule {
    /// The provenance of what this rule writes: its own writes never trigger it again.
    pub fn source(&self) -> String {
        source_of(&self.name)
    }
}

pub fn source_of(rule: &str) -> String {
    format!("{}{rule}", crate::engine::WORKFLOW_PREFIX)
}

/// Every rule of a configuration directory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules(pub Vec<Rule>);

impl Rules {
    pub fn get(&self, name: &str) -> Option<&Rule> {
        self.0.iter().find(|r| r.name == name)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Compile one file's rules (already read and interpolated). `connectors`: the ids a
/// `route:` may name. Errors are appended; rules with any error are left out.
pub fn compile_file(
    file: &Path,
    doc: &Json,
    connectors: &[String],
    errors: &mut Vec<ConfigError>,
) -> Vec<Rule> {
    let conf: FileConf = match serde_path_to_error::deserialize(doc) {
        Ok(c) => c,
        Err(e) => {
            let path = e.path().to_string();
            let rule = rule_at(doc, &path);
            let mut err = ConfigError::new(file, path, e.into_inner().to_string());
            err.rule = rule;
            errors.push(err);
            return Vec::new();
        }
    };
    if conf.version != 1 {
        errors.push(
            ConfigError::new(
                file,
                "version",
                format!("unsupported version {}", conf.version),
            )
            .hint("this revsync reads version 1"),
        );
        return Vec::new();
    }
    let env = environment();
    let mut out = Vec::new();
    for (i, r) in conf.rules.into_iter().enumerate() {
        let mut ctx = Ctx {
            file,
            rule: r.name.clone(),
            base: format!("rules[{i}]"),
            errors: Vec::new(),
            env: &env,
        };
        let rule = ctx.rule(r, connectors);
        errors.append(&mut ctx.errors);
        out.extend(rule);
    }
    out
}

/// The rule named at a serde error's path (`rules[2].do[0]...`), for the message.
fn rule_at(doc: &Json, path: &str) -> Option<String> {
    let i: usize = path
        .strip_prefix("rules[")?
        .split(']')
        .next()?
        .parse()
        .ok()?;
    doc.get("rules")?
        .get(i)?
        .get("name")?
        .as_str()
        .map(str::to_owned)
}

/// The expression environment rules run in: builtins only, bounded steps, and an
/// undefined value (a field the record lacks) that is simply empty.
pub fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(32);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    env
}

/// A minijinja error as "line L, column C: what", with the position in `source`.
pub fn describe_error(source: &str, e: &minijinja::Error) -> String {
    let what = e
        .detail()
        .map_or_else(|| e.kind().to_string(), str::to_owned);
    match e.range() {
        Some(r) => {
            let before = source.get(..r.start).unwrap_or_default();
            let line = before.matches('\n').count() + 1;
            let col = before
                .rsplit('\n')
                .next()
                .unwrap_or_default()
                .chars()
                .count()
                + 1;
            format!("line {line}, column {col}: {what}")
        }
        None => what,
    }
}

struct Ctx<'a> {
    file: &'a Path,
    rule: String,
    base: String,
    errors: Vec<ConfigError>,
    env: &'a minijinja::Environment<'static>,
}

impl Ctx<'_> {
    fn error(&mut self, field: &str, message: impl Into<String>) -> &mut ConfigError {
        let path = if field.is_empty() {
            self.base.clone()
        } else {
            format!("{}.{field}", self.base)
        };
        let mut e = ConfigError::new(self.file, path, message);
        e.rule = Some(self.rule.clone());
        self.errors.push(e);
        #[allow(clippy::unwrap_used, reason = "pushed on the line above")]
        self.errors.last_mut().unwrap()
    }

    fn rule(&mut self, r: RuleConf, connectors: &[String]) -> Option<Rule> {
        let before = self.errors.len();
        let valid_name = !r.name.is_empty()
            && r.name.len() <= 64
            && r.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !valid_name {
            self.error("name", format!("`{}` is not a valid rule name", r.name))
                .hint = Some("use 1 to 64 lowercase letters, digits, `-` or `_`".into());
        }
        let trigger = self.trigger(&r.on);
        let after = r.on.after.as_deref().and_then(|a| match parse_after(a) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error("on.after", e);
                None
            }
        });
        if let Some(w) = &r.when {
            if let Err(e) = self.env.compile_expression(w) {
                let message = describe_error(w, &e);
                self.error("when", message);
            }
        }
        if r.actions.is_empty() {
            self.error("do", "a rule needs at least one action");
        }
        let mut actions = Vec::new();
        for (i, a) in r.actions.into_iter().enumerate() {
            if let Some(a) = self.action(&format!("do[{i}]"), a, connectors) {
                actions.push(a);
            }
        }
        if r.max_depth == Some(0) {
            self.error("max_depth", "0 would stop every run; use 1 or more");
        }
        if r.max_runs_per_minute == Some(0) {
            self.error(
                "max_runs_per_minute",
                "0 would stop every run; use 1 or more",
            );
        }
        if self.errors.len() > before {
            return None;
        }
        Some(Rule {
            name: r.name,
            file: self.file.to_path_buf(),
            description: r.description,
            trigger: trigger?,
            after,
            backfill: r.on.backfill,
            when: r.when,
            actions,
            max_depth: r.max_depth.unwrap_or(DEFAULT_MAX_DEPTH),
            max_runs_per_minute: r.max_runs_per_minute.unwrap_or(DEFAULT_RUNS_PER_MINUTE),
        })
    }

    fn kind(&mut self, field: &str, name: &str) -> Option<Kind> {
        match name.parse::<Kind>() {
            Ok(k) => Some(k),
            Err(e) => {
                self.error(field, e);
                None
            }
        }
    }

    fn trigger(&mut self, on: &TriggerConf) -> Option<Trigger> {
        let many = |v: &Option<OneOrMany>| {
            v.as_ref().map(|v| match v {
                OneOrMany::Many(v) => v.clone(),
                OneOrMany::One(j) => vec![j.clone()],
            })
        };
        match (&on.created, &on.changed) {
            (Some(kind), None) => {
                if on.from.is_some() || on.to.is_some() {
                    self.error("on", "`from` and `to` go with `changed`, not `created`");
                }
                Some(Trigger::Created(self.kind("on.created", kind)?))
            }
            (None, Some(target)) => {
                let Some((kind, field)) = target.split_once('.') else {
                    self.error("on.changed", format!("`{target}` is not kind.field"))
                        .example = Some("on: { changed: deal.status, to: won }".into());
                    return None;
                };
                let kind = self.kind("on.changed", kind)?;
                self.field("on.changed", kind, field)?;
                Some(Trigger::Changed {
                    kind,
                    field: field.to_owned(),
                    from: many(&on.from),
                    to: many(&on.to),
                })
            }
            _ => {
                self.error(
                    "on",
                    "name one trigger: `created: KIND` or `changed: KIND.FIELD`",
                )
                .example = Some("on: { changed: deal.status, to: won }".into());
                None
            }
        }
    }

    /// A field a rule may read or write: a well-known one of the kind, or `custom.*`.
    fn field(&mut self, at: &str, kind: Kind, field: &str) -> Option<FieldType> {
        if let Some(def) = kind.field(field) {
            return Some(def.ty);
        }
        if field.strip_prefix("custom.").is_some_and(|n| !n.is_empty()) {
            return Some(FieldType::Json);
        }
        let names: Vec<&str> = kind.fields().iter().map(|f| f.name).collect();
        let hint = match crate::config::nearest(field, names.iter().copied()) {
            Some(n) => format!("did you mean `{n}`?"),
            None => format!("{kind} fields: {}, or custom.NAME", names.join(", ")),
        };
        self.error(at, format!("{kind} has no field `{field}`"))
            .hint = Some(hint);
        None
    }

    fn template(&mut self, at: &str, value: Json) -> Template {
        let Json::String(s) = value else {
            return Template::Literal(value);
        };
        let t = template_of(&s);
        let check = match &t {
            Template::Expr(e) => self.env.compile_expression(e).err().map(|e| (e, true)),
            Template::Text(s) => self.env.template_from_str(s).err().map(|e| (e, false)),
            Template::Literal(_) => None,
        };
        if let Some((e, expr)) = check {
            let source = match &t {
                Template::Expr(e) if expr => e.as_str(),
                Template::Text(s) => s.as_str(),
                _ => "",
            };
            let message = describe_error(source, &e);
            self.error(at, message);
        }
        t
    }

    fn fields(
        &mut self,
        at: &str,
        kind: Option<Kind>,
        fields: BTreeMap<String, Json>,
    ) -> Vec<(String, Template)> {
        let mut out = Vec::new();
        for (name, value) in fields {
            let path = format!("{at}.fields.{name}");
            if let Some(kind) = kind {
                if self.field(&path, kind, &name).is_none() {
                    continue;
                }
            }
            let t = self.template(&path, value);
            out.push((name, t));
        }
        out
    }

    fn route(&mut self, at: &str, route: Option<Vec<String>>, connectors: &[String]) {
        for c in route.iter().flatten() {
            if !connectors.contains(c) {
                let hint = match crate::config::nearest(c, connectors.iter().map(String::as_str)) {
                    Some(n) => format!("did you mean `{n}`?"),
                    None => format!("configured connectors: {}", connectors.join(", ")),
                };
                self.error(&format!("{at}.route"), format!("no connector `{c}`"))
                    .hint = Some(hint);
            }
        }
    }

    fn action(&mut self, at: &str, a: ActionConf, connectors: &[String]) -> Option<Action> {
        Some(match a {
            ActionConf::Set { record, fields } => {
                let record =
                    record.map(|r| self.template(&format!("{at}.set.record"), Json::String(r)));
                // The record written is known only when it runs: any kind's fields.
                let kind = None;
                if fields.is_empty() {
                    self.error(&format!("{at}.set.fields"), "no fields to set");
                }
                Action::Set {
                    record,
                    fields: self.fields(&format!("{at}.set"), kind, fields),
                }
            }
            ActionConf::Create {
                kind,
                fields,
                route,
            } => {
                let kind = self.kind(&format!("{at}.create.kind"), &kind)?;
                self.route(&format!("{at}.create"), route.clone(), connectors);
                Action::Create {
                    kind,
                    fields: self.fields(&format!("{at}.create"), Some(kind), fields),
                    route,
                }
            }
            ActionConf::Activity { fields, route } => {
                self.route(&format!("{at}.activity"), route.clone(), connectors);
                Action::Create {
                    kind: Kind::Activity,
                    fields: self.fields(&format!("{at}.activity"), Some(Kind::Activity), fields),
                    route,
                }
            }
            ActionConf::Webhook { url, secret, body } => {
                match url::Url::parse(&url) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                    _ => {
                        self.error(
                            &format!("{at}.webhook.url"),
                            format!("`{url}` is not an http(s) URL"),
                        );
                    }
                }
                if secret.len() < 16 {
                    self.error(
                        &format!("{at}.webhook.secret"),
                        "the signing secret needs at least 16 characters",
                    )
                    .hint = Some("put it in the environment: `secret: ${CRM_HOOK_SECRET}`".into());
                }
                let body = body.map(|b| {
                    b.into_iter()
                        .map(|(k, v)| {
                            let t = self.template(&format!("{at}.webhook.body.{k}"), v);
                            (k, t)
                        })
                        .collect()
                });
                Action::Webhook { url, secret, body }
            }
        })
    }
}

/// `{{ x }}` alone is an expression; anything else with `{{` or `{%` a text template.
pub fn template_of(s: &str) -> Template {
    let t = s.trim();
    if let Some(inner) = t.strip_prefix("{{").and_then(|r| r.strip_suffix("}}")) {
        if !inner.contains("{{") && !inner.contains("}}") {
            return Template::Expr(inner.trim().to_owned());
        }
    }
    if s.contains("{{") || s.contains("{%") {
        Template::Text(s.to_owned())
    } else {
        Template::Literal(Json::String(s.to_owned()))
    }
}

/// `14d`, `6h`, `30m`, `90s`.
pub fn parse_after(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| {
        format!("`{s}` is not a delay: write a number and a unit, e.g. 14d, 6h, 30m, 90s")
    })?;
    let secs = match unit {
        "d" => n.checked_mul(86_400),
        "h" => n.checked_mul(3_600),
        "m" => n.checked_mul(60),
        "s" => Some(n),
        _ => None,
    }
    .filter(|&s| s > 0 && s <= 366 * 86_400)
    .ok_or_else(|| format!("`{s}` is not a delay between 1s and 366d (units: d, h, m, s)"))?;
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(doc: Json) -> (Vec<Rule>, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let rules = compile_file(
            Path::new("workflows/w.yaml"),
            &doc,
            &["hubspot".into(), "stripe".into()],
            &mut errors,
        );
        (rules, errors)
    }

    #[test]
    fn a_valid_rule_compiles_with_its_templates_typed() {
        let (rules, errors) = compile(json!({"version": 1, "rules": [{
            "name": "won-to-subscription",
            "on": {"changed": "deal.status", "to": "won"},
            "when": "record.amount.amount_minor > 0",
            "do": [{"create": {"kind": "subscription", "route": ["stripe"], "fields": {
                "status": "active",
                "customer": "{{ record.organization.id }}",
                "plan": "Plan for {{ record.name }}"
            }}}]
        }]}));
        assert!(errors.is_empty(), "{errors:?}");
        let r = &rules[0];
        assert_eq!(r.trigger.describe(), "deal.status changed to won");
        let Action::Create { fields, .. } = &r.actions[0] else {
            panic!()
        };
        let get = |n: &str| fields.iter().find(|(f, _)| f == n).map(|(_, t)| t.clone());
        assert_eq!(
            get("customer"),
            Some(Template::Expr("record.organization.id".into()))
        );
        assert!(matches!(get("plan"), Some(Template::Text(_))));
        assert_eq!(get("status"), Some(Template::Literal(json!("active"))));
    }

    #[test]
    fn a_bad_expression_is_refused_with_file_rule_field_and_position() {
        let (rules, errors) = compile(json!({"version": 1, "rules": [{
            "name": "bad",
            "on": {"created": "person"},
            "when": "record.email ==",
            "do": [{"set": {"fields": {"lifecycle_stage": "{{ record.x + }}"}}}]
        }]}));
        assert!(rules.is_empty());
        assert_eq!(errors.len(), 2, "{errors:?}");
        let text = errors[0].to_string();
        assert!(
            text.starts_with("workflows/w.yaml: rule `bad`: field `rules[0].when`: line 1, column"),
            "{text}"
        );
        assert_eq!(errors[1].field, "rules[0].do[0].set.fields.lifecycle_stage");
    }

    #[test]
    fn unknown_kinds_fields_connectors_and_keys_are_named() {
        let (_, errors) = compile(json!({"version": 1, "rules": [{
            "name": "r",
            "on": {"changed": "deal.stauts"},
            "do": [{"create": {"kind": "ticket", "route": ["zendsk"], "fields": {"subjct": "x"}}}]
        }]}));
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "rules[0].on.changed",
                "rules[0].do[0].create.route",
                "rules[0].do[0].create.fields.subjct"
            ]
        );
        assert_eq!(errors[0].hint.as_deref(), Some("did you mean `status`?"));
        let (_, errors) = compile(json!({"version": 1, "rules": [{
            "name": "r", "on": {"created": "person"}, "do": [], "oops": 1
        }]}));
        assert_eq!(errors[0].rule.as_deref(), Some("r"));
        assert!(errors[0].message.contains("oops"), "{errors:?}");
    }

    #[test]
    fn delays_read_with_their_unit() {
        assert_eq!(parse_after("14d"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_after("90s"), Ok(Duration::from_secs(90)));
        assert!(
            parse_after("14").is_err() && parse_after("0m").is_err() && parse_after("2w").is_err()
        );
    }
}
