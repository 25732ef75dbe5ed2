//! Writes of a declared API: one request per record, its path and body filled from the
//! fields the mapping writes, with an idempotency key where the API takes one, so a retry
//! never makes a second record.

use std::collections::{BTreeMap, BTreeSet};

use revsync_sdk::http::ApiRequest;
use revsync_sdk::{ConnectorError, PushItem, PushOp, PushResult};
use serde_json::{Map, Value};

use crate::client::RestClient;
use crate::config::{ObjectApi, WriteRequest};
use crate::read::id_text;

fn permanent(detail: impl Into<String>) -> ConnectorError {
    ConnectorError::Permanent {
        detail: detail.into(),
        status: None,
        body: None,
    }
}

/// Text for a path segment: unreserved characters as they are, the rest percent-encoded.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `path` with `{id}` and `{field}` filled in.
pub fn fill_path(
    path: &str,
    id: Option<&str>,
    fields: &BTreeMap<String, Value>,
) -> Result<String, ConnectorError> {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let (before, after) = rest.split_at(open);
        out.push_str(before);
        let close = after
            .find('}')
            .ok_or_else(|| permanent(format!("`{path}` has an unclosed `{{`")))?;
        let name = after.get(1..close).unwrap_or_default();
        let value = match name {
            "id" => id.map(str::to_owned),
            _ => fields.get(name).and_then(id_text),
        }
        .ok_or_else(|| {
            permanent(format!(
                "`{path}` needs `{{{name}}}`, which this record's mapped fields do not give"
            ))
        })?;
        out.push_str(&segment(&value));
        rest = after.get(close + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    Ok(out)
}

/// The mapped fields as JSON, dotted names nested (`address.city`).
fn nested(fields: &BTreeMap<String, Value>) -> Value {
    fn put(into: &mut Map<String, Value>, parts: &[&str], v: &Value) {
        match parts {
            [] => {}
            [last] => {
                into.insert((*last).to_owned(), v.clone());
            }
            [first, rest @ ..] => {
                let entry = into
                    .entry((*first).to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                if let Value::Object(m) = entry {
                    put(m, rest, v);
                }
            }
        }
    }
    let mut root = Map::new();
    for (name, v) in fields {
        let parts: Vec<&str> = name.split('.').collect();
        put(&mut root, &parts, v);
    }
    Value::Object(root)
}

/// The body: the template with `"{{field}}"` replaced (a field the record does not give
/// leaves its key out) and `"{{fields}}"` the whole set; no template, the fields.
pub fn body(template: Option<&Value>, fields: &BTreeMap<String, Value>) -> Value {
    fn fill(t: &Value, fields: &BTreeMap<String, Value>, all: &Value) -> Option<Value> {
        match t {
            Value::String(s) => match s.strip_prefix("{{").and_then(|s| s.strip_suffix("}}")) {
                Some("fields") => Some(all.clone()),
                Some(name) => fields.get(name.trim()).cloned(),
                None => Some(t.clone()),
            },
            Value::Object(m) => Some(Value::Object(
                m.iter()
                    .filter_map(|(k, v)| fill(v, fields, all).map(|v| (k.clone(), v)))
                    .collect(),
            )),
            Value::Array(a) => Some(Value::Array(
                a.iter().filter_map(|v| fill(v, fields, all)).collect(),
            )),
            other => Some(other.clone()),
        }
    }
    let all = nested(fields);
    match template {
        None => all,
        Some(t) => fill(t, fields, &all).unwrap_or(Value::Null),
    }
}

/// The fields a body template writes.
pub fn template_fields(t: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    fn walk(t: &Value, out: &mut BTreeSet<String>) {
        match t {
            Value::String(s) => {
                if let Some(n) = s.strip_prefix("{{").and_then(|s| s.strip_suffix("}}")) {
                    out.insert(n.trim().to_owned());
                }
            }
            Value::Object(m) => m.values().for_each(|v| walk(v, out)),
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(t, &mut out);
    out
}

fn method(w: &WriteRequest) -> reqwest::Method {
    reqwest::Method::from_bytes(w.method.to_ascii_uppercase().as_bytes())
        .unwrap_or(reqwest::Method::POST)
}

/// Write one record; its id in the system, or why not.
pub async fn push_one(
    client: &RestClient,
    api: &ObjectApi,
    key: &str,
    item: &PushItem,
) -> PushResult {
    let (w, id, idem) = match &item.op {
        PushOp::Create { canonical_id } => (
            api.create
                .as_ref()
                .ok_or_else(|| permanent("no `create` request is declared"))?,
            None,
            // The same key for every attempt of this record's create: a retry, or the
            // push of a later version of a record whose first create was lost, is
            // answered with the first one's record.
            canonical_id.to_string(),
        ),
        PushOp::Update { external_id } => (
            api.update
                .as_ref()
                .ok_or_else(|| permanent("no `update` request is declared"))?,
            Some(external_id.as_str()),
            format!("{external_id}:{}", item.version),
        ),
        PushOp::Delete { .. } => return Err(permanent("deletes are not declared for this API")),
    };
    let path = fill_path(&w.path, id, &item.fields)?;
    let mut fields = item.fields.clone();
    if let (PushOp::Create { canonical_id }, Some(f)) = (&item.op, &api.external_id_field) {
        fields.insert(f.clone(), Value::String(canonical_id.to_string()));
    }
    let mut req = ApiRequest::new(method(w), path).with_json(body(w.body.as_ref(), &fields));
    // Setting fields to values is the same the second time; a create only with a key.
    let mut retry = id.is_some();
    if let Some(h) = &w.idempotency_header {
        req = req.with_header(h.clone(), idem);
        retry = true;
    }
    let answer = client.send(req.with_retry(retry)).await?;
    if let Some(id) = id {
        return Ok(id.to_owned());
    }
    let body: Value = answer.json()?;
    let at = w.id.clone().unwrap_or_else(|| format!("$.{key}"));
    let path = crate::config::path(&at).map_err(permanent)?;
    path.query(&body)
        .all()
        .into_iter()
        .next()
        .and_then(id_text)
        .ok_or_else(|| permanent(format!("the create's answer has no id at {at}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn paths_take_the_id_and_fields_percent_encoded() {
        let f = fields(json!({"webinar_id": "web 1/2", "n": 7}));
        assert_eq!(
            fill_path(
                "/v1/webinars/{webinar_id}/registrants/{id}",
                Some("r&1"),
                &f
            )
            .unwrap(),
            "/v1/webinars/web%201%2F2/registrants/r%261"
        );
        assert_eq!(fill_path("/x/{n}", None, &f).unwrap(), "/x/7");
        let e = fill_path("/x/{missing}", None, &f).unwrap_err();
        assert!(e.to_string().contains("{missing}"), "{e}");
    }

    #[test]
    fn bodies_follow_the_template_and_leave_out_what_the_record_lacks() {
        let f = fields(json!({"first_name": "Ann", "address.city": "Lyon", "n": 3}));
        assert_eq!(
            body(None, &f),
            json!({"first_name": "Ann", "address": {"city": "Lyon"}, "n": 3})
        );
        let t = json!({"registrant": {"first": "{{first_name}}", "last": "{{last_name}}", "kind": "lead"}, "all": "{{fields}}"});
        let b = body(Some(&t), &f);
        assert_eq!(b["registrant"], json!({"first": "Ann", "kind": "lead"}));
        assert_eq!(b["all"]["address"]["city"], "Lyon");
        assert_eq!(
            template_fields(&t),
            BTreeSet::from([
                "first_name".to_owned(),
                "last_name".to_owned(),
                "fields".to_owned()
            ])
        );
    }
}
