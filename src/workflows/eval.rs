//! A rule against one event: whether it triggers, its `when:`, and the acts its actions
//! come to, rendered from the record (and the records it refers to) as it is now.

use std::collections::BTreeMap;

use revsync_sdk::{FieldType, Kind, Record, Value};
use serde_json::{json, Map, Value as Json};
use uuid::Uuid;

use super::rules::{describe_error, Action, Rule, Template, Trigger};
use crate::engine::{mapping, Act, Engine, Event};

/// What one run of a rule does.
#[derive(Debug, Default)]
pub struct Plan {
    pub acts: Vec<Act>,
    pub webhooks: Vec<WebhookCall>,
    /// One line per action, for `workflows test` and the run log.
    pub described: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WebhookCall {
    pub url: String,
    pub secret: String,
    pub body: String,
}

/// Whether the event is one the rule's trigger names.
pub fn triggers(rule: &Rule, event: &Event) -> bool {
    if event.kind != rule.trigger.kind() || (event.backfill && !rule.backfill) {
        return false;
    }
    match &rule.trigger {
        Trigger::Created(_) => event.created,
        Trigger::Changed {
            field, from, to, ..
        } => {
            let Some(c) = event.change(field) else {
                return false;
            };
            let is = |want: &Option<Vec<Json>>, v: &Value| {
                want.as_ref().is_none_or(|w| w.iter().any(|w| same(w, v)))
            };
            is(from, &c.from) && is(to, &c.to)
        }
    }
}

/// A rule's literal against a canonical value: text compares as text (`won`, `5`).
fn same(want: &Json, v: &Value) -> bool {
    let got = v.to_json();
    if *want == got {
        return true;
    }
    match (want, &got) {
        (Json::Null, _) => v.is_empty(),
        (Json::String(w), Json::String(g)) => w.eq_ignore_ascii_case(g),
        (w, Json::String(g)) => g.as_str() == w.to_string().as_str(),
        (Json::String(w), g) => w.as_str() == g.to_string().as_str(),
        _ => false,
    }
}

/// Records of each kind referring to a record, as rules see them: at most this many.
const REFERRERS: usize = 200;

/// A record as rules see it: `id`, `kind`, `systems` (where it has copies) and each
/// field by name. Above depth 0, a relation is the related record itself (one level
/// less deep) and `referred_by.KIND` lists the records whose fields name this one (a
/// company's tickets, a person's deals).
pub fn record_json(engine: &Engine, rec: &Record, depth: u8) -> Json {
    let mut m = Map::new();
    m.insert("id".into(), json!(rec.id.to_string()));
    m.insert("kind".into(), json!(rec.kind.as_str()));
    let systems: Vec<&str> = rec.links.iter().map(|l| l.connector.as_str()).collect();
    m.insert("systems".into(), json!(systems));
    if depth > 0 {
        let mut by: Map<String, Json> = Map::new();
        for id in engine.referrers(rec.id, REFERRERS).unwrap_or_default() {
            if let Ok(Some(r)) = engine.record(id) {
                if r.merged_into.is_none() {
                    let entry = by.entry(r.kind.as_str()).or_insert_with(|| json!([]));
                    if let Json::Array(list) = entry {
                        list.push(record_json(engine, &r, 0));
                    }
                }
            }
        }
        m.insert("referred_by".into(), Json::Object(by));
    }
    for (field, entry) in &rec.fields {
        let v = match &entry.value {
            Value::Ref(id) if depth > 0 => match engine.record(*id) {
                Ok(Some(r)) => record_json(engine, &r, depth - 1),
                _ => json!({ "id": id.to_string() }),
            },
            Value::Ref(id) => json!({ "id": id.to_string() }),
            other => other.to_json(),
        };
        insert_dotted(&mut m, field, v);
    }
    Json::Object(m)
}

/// `custom.tier` is reachable as `record.custom.tier`.
fn insert_dotted(m: &mut Map<String, Json>, field: &str, v: Json) {
    match field.split_once('.') {
        Some((head, rest)) => {
            let slot = m.entry(head.to_owned()).or_insert_with(|| json!({}));
            if let Json::Object(inner) = slot {
                insert_dotted(inner, rest, v);
            }
        }
        None => {
            m.insert(field.to_owned(), v);
        }
    }
}

/// What a rule's expressions see: `record` (as now) and `event` (the change).
pub fn context(engine: &Engine, event: &Event, rec: &Record, seq: u64) -> Json {
    let time = |us: i64| Value::Time(us).to_json();
    let changes: Map<String, Json> = event
        .changes
        .iter()
        .map(|c| {
            let v = json!({ "from": c.from.to_json(), "to": c.to.to_json(), "by": c.by });
            (c.field.clone(), v)
        })
        .collect();
    json!({
        "record": record_json(engine, rec, 2),
        "event": {
            "seq": seq,
            "created": event.created,
            "at": time(event.at),
            "depth": event.depth,
            "changes": changes,
        },
        "now": time(engine.now()),
    })
}

fn eval(env: &minijinja::Environment<'_>, expr: &str, ctx: &Json) -> Result<Json, String> {
    let compiled = env
        .compile_expression(expr)
        .map_err(|e| describe_error(expr, &e))?;
    let v = compiled
        .eval(ctx)
        .map_err(|e| format!("`{expr}`: {}", describe_error(expr, &e)))?;
    if v.is_undefined() || v.is_none() {
        return Ok(Json::Null);
    }
    serde_json::to_value(&v).map_err(|e| format!("`{expr}`: {e}"))
}

/// The rule's `when:` (no condition: true).
pub fn condition(
    env: &minijinja::Environment<'_>,
    rule: &Rule,
    ctx: &Json,
) -> Result<bool, String> {
    let Some(w) = &rule.when else {
        return Ok(true);
    };
    let compiled = env
        .compile_expression(w)
        .map_err(|e| describe_error(w, &e))?;
    let v = compiled
        .eval(ctx)
        .map_err(|e| format!("when: {}", describe_error(w, &e)))?;
    Ok(v.is_true())
}

pub fn render(env: &minijinja::Environment<'_>, t: &Template, ctx: &Json) -> Result<Json, String> {
    match t {
        Template::Literal(j) => Ok(j.clone()),
        Template::Expr(e) => eval(env, e, ctx),
        Template::Text(s) => env
            .render_str(s, ctx)
            .map(Json::String)
            .map_err(|e| describe_error(s, &e)),
    }
}

/// What the rule's actions come to for this record, nothing carried out.
pub fn plan(
    engine: &Engine,
    env: &minijinja::Environment<'_>,
    rule: &Rule,
    rec: &Record,
    ctx: &Json,
) -> Result<Plan, String> {
    let mut plan = Plan::default();
    for (i, action) in rule.actions.iter().enumerate() {
        let at = |e: String| format!("do[{i}] {}: {e}", action.name());
        match action {
            Action::Set { record, fields } => {
                let target = match record {
                    None => rec.clone(),
                    Some(t) => {
                        let j = render(env, t, ctx).map_err(at)?;
                        let id =
                            record_id(&j).ok_or_else(|| at(format!("`{j}` names no record")))?;
                        match engine.record(id).map_err(|e| at(e.to_string()))? {
                            Some(r) => r,
                            None => return Err(at(format!("record {id} is not there"))),
                        }
                    }
                };
                let values = values(env, target.kind, fields, ctx).map_err(at)?;
                plan.described.push(format!(
                    "set {} {}: {}",
                    target.kind,
                    target.id,
                    show(&values)
                ));
                plan.acts.push(Act::Set {
                    record: target.id,
                    values,
                });
            }
            Action::Create {
                kind,
                fields,
                route,
            } => {
                let values = values(env, *kind, fields, ctx).map_err(at)?;
                let to = route
                    .as_ref()
                    .map(|r| format!(" in {}", r.join(", ")))
                    .unwrap_or_default();
                plan.described
                    .push(format!("create {kind}{to}: {}", show(&values)));
                plan.acts.push(Act::Create {
                    kind: *kind,
                    values,
                    route: route.clone(),
                });
            }
            Action::Webhook { url, secret, body } => {
                let body = match body {
                    None => {
                        json!({ "rule": rule.name, "record": ctx["record"], "event": ctx["event"] })
                    }
                    Some(fields) => {
                        let mut m = Map::new();
                        for (k, t) in fields {
                            m.insert(k.clone(), render(env, t, ctx).map_err(at)?);
                        }
                        Json::Object(m)
                    }
                };
                plan.described.push(format!("POST {url}"));
                plan.webhooks.push(WebhookCall {
                    url: url.clone(),
                    secret: secret.clone(),
                    body: body.to_string(),
                });
            }
        }
    }
    Ok(plan)
}

fn show(values: &BTreeMap<String, Value>) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k}={}", v.to_json()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn values(
    env: &minijinja::Environment<'_>,
    kind: Kind,
    fields: &[(String, Template)],
    ctx: &Json,
) -> Result<BTreeMap<String, Value>, String> {
    let mut out = BTreeMap::new();
    for (field, t) in fields {
        let j = render(env, t, ctx).map_err(|e| format!("{field}: {e}"))?;
        let v = to_value(kind, field, &j).map_err(|e| format!("{field}: {e}"))?;
        out.insert(field.clone(), v);
    }
    Ok(out)
}

/// A record id from what an expression gave: the id itself, or a record (`record.organization`).
fn record_id(j: &Json) -> Option<Uuid> {
    match j {
        Json::String(s) => Uuid::parse_str(s.trim()).ok(),
        Json::Object(m) => m.get("id").or_else(|| m.get("ref")).and_then(record_id),
        _ => None,
    }
}

/// A rendered value as the canonical value of `kind`'s `field`.
pub fn to_value(kind: Kind, field: &str, j: &Json) -> Result<Value, String> {
    if j.is_null() || j.as_str().is_some_and(|s| s.trim().is_empty()) {
        return Ok(Value::Null);
    }
    let ty = match kind.field(field) {
        Some(def) => def.ty,
        None if field.starts_with("custom.") => FieldType::Json,
        None => return Err(format!("{kind} has no field `{field}`")),
    };
    let text = || match j {
        Json::String(s) => s.trim().to_owned(),
        other => other.to_string(),
    };
    Ok(match ty {
        FieldType::Text | FieldType::Url | FieldType::Domain | FieldType::Phone => {
            Value::Text(text())
        }
        FieldType::Country => Value::Text(text().to_uppercase()),
        FieldType::Email => Value::Text(text().to_lowercase()),
        FieldType::Enum(allowed) => {
            let t = text();
            if !allowed.contains(&t.as_str()) {
                return Err(format!("`{t}` is not one of {}", allowed.join(", ")));
            }
            Value::Text(t)
        }
        FieldType::Int | FieldType::Percent => match j {
            Json::Number(n) => Value::Int(
                n.as_i64()
                    .or_else(|| n.as_f64().map(|f| f.round() as i64))
                    .ok_or_else(|| format!("`{n}` is not a whole number"))?,
            ),
            _ => Value::Int(
                text()
                    .parse()
                    .map_err(|_| format!("`{}` is not a whole number", text()))?,
            ),
        },
        FieldType::Money => {
            let amount = j.get("amount_minor").and_then(Json::as_i64);
            let currency = j.get("currency").and_then(Json::as_str);
            match (amount, currency) {
                (Some(amount_minor), Some(c)) if c.len() == 3 => Value::Money {
                    amount_minor,
                    currency: c.to_uppercase(),
                },
                _ => return Err(format!("`{j}` is not money: give {{amount_minor, currency}}, e.g. `{{{{ record.amount }}}}`")),
            }
        }
        FieldType::Date => Value::Date(mapping::parse_date(j)?),
        FieldType::Time => Value::time(mapping::parse_time(j)?),
        FieldType::Bool => match j {
            Json::Bool(b) => Value::Bool(*b),
            _ => match text().as_str() {
                "true" | "yes" | "1" => Value::Bool(true),
                "false" | "no" | "0" => Value::Bool(false),
                t => return Err(format!("`{t}` is not true or false")),
            },
        },
        FieldType::Relation(_) => {
            Value::Ref(record_id(j).ok_or_else(|| format!("`{j}` names no record"))?)
        }
        FieldType::TextList => match j {
            Json::Array(items) => Value::List(
                items
                    .iter()
                    .map(|i| Value::Text(i.as_str().map_or_else(|| i.to_string(), str::to_owned)))
                    .collect(),
            ),
            _ => Value::List(vec![Value::Text(text())]),
        },
        FieldType::Json => match j {
            Json::String(s) => Value::Text(s.clone()),
            other => Value::Json(other.to_string()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_values_take_their_fields_types() {
        let id = Uuid::now_v7();
        assert_eq!(
            to_value(
                Kind::Subscription,
                "customer",
                &json!({"id": id.to_string(), "name": "Acme"})
            ),
            Ok(Value::Ref(id))
        );
        assert_eq!(
            to_value(
                Kind::Deal,
                "amount",
                &json!({"amount_minor": 1200, "currency": "eur"})
            ),
            Ok(Value::Money {
                amount_minor: 1200,
                currency: "EUR".into()
            })
        );
        assert_eq!(
            to_value(Kind::Person, "email", &json!(" A@X.io ")),
            Ok(Value::Text("a@x.io".into()))
        );
        assert_eq!(
            to_value(Kind::Person, "lead_status", &json!("")),
            Ok(Value::Null)
        );
        assert!(to_value(Kind::Deal, "status", &json!("maybe")).is_err());
        assert!(to_value(Kind::Deal, "nope", &json!("x")).is_err());
        assert_eq!(
            to_value(Kind::Deal, "custom.tier", &json!(3)),
            Ok(Value::Json("3".into()))
        );
    }

    #[test]
    fn trigger_values_compare_as_text() {
        assert!(same(&json!("won"), &Value::Text("won".into())));
        assert!(same(&json!(5), &Value::Int(5)));
        assert!(same(&json!("5"), &Value::Int(5)));
        assert!(same(&Json::Null, &Value::Null));
        assert!(!same(&json!("won"), &Value::Text("lost".into())));
    }
}
