//! The unified view of one customer, as JSON: every field with its value, source and
//! time, every system's id for it, its relations and its latest audit entries; and the
//! dead-letter list, the same whether the daemon or the CLI (no daemon running) reads it.

use revsync_sdk::model::micros_to_time;
use revsync_sdk::{FieldEntry, Record, Value};
use serde_json::{json, Value as Json};

use super::codec::{AuditEntry, AuditEvent};
use super::{Engine, EngineError};

pub(crate) fn time(us: i64) -> Json {
    match micros_to_time(us) {
        Some(t) if us != 0 => json!(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        _ => Json::Null,
    }
}

fn entry(e: &FieldEntry) -> Json {
    json!({
        "value": e.value.to_json(),
        "source": e.from.connector,
        "source_time": time(e.from.source_ts),
        "observed_time": time(e.from.observed_ts),
    })
}

/// How a person names a record: its email, domain, name or subject.
pub fn label(r: &Record) -> Option<String> {
    ["email", "domain", "name", "subject", "number"]
        .iter()
        .find_map(|f| r.value(f).and_then(Value::as_text).map(str::to_owned))
}

/// `related` names the record a relation points at (its [`label`]), when it is known.
pub fn record_json(
    r: &Record,
    audit: &[AuditEntry],
    related: &dyn Fn(uuid::Uuid) -> Option<String>,
) -> Json {
    let relations: serde_json::Map<String, Json> = r
        .fields
        .iter()
        .filter_map(|(k, e)| match &e.value {
            Value::Ref(id) => Some((k.clone(), json!({ "id": id, "name": related(*id) }))),
            Value::ExtRef {
                connector,
                object,
                id,
            } => Some((
                k.clone(),
                json!({ "unresolved": format!("{connector}:{object}:{id}") }),
            )),
            _ => None,
        })
        .collect();
    json!({
        "id": r.id,
        "kind": r.kind,
        "version": r.version,
        "archived": r.archived,
        "merged_into": r.merged_into,
        "created_at": time(r.created_ts),
        "updated_at": time(r.updated_ts),
        "fields": r.fields.iter().map(|(k, e)| (k.clone(), entry(e))).collect::<serde_json::Map<_, _>>(),
        "links": r.links.iter().map(|l| json!({
            "connector": l.connector, "object": l.object, "external_id": l.external_id, "source_time": time(l.source_ts),
        })).collect::<Vec<_>>(),
        "relations": relations,
        "quality": super::quality::assess(r).iter().map(|f| json!({
            "problem": f.problem.as_str(), "field": f.field, "source": f.source,
            "description": f.problem.describe(),
        })).collect::<Vec<_>>(),
        "audit": audit.iter().map(audit_json).collect::<Vec<_>>(),
    })
}

pub fn audit_json(a: &AuditEntry) -> Json {
    let mut v = match &a.event {
        AuditEvent::Overwritten {
            field,
            old,
            new,
            reason,
        } => {
            json!({ "event": "overwritten", "field": field, "old": entry(old), "new": entry(new), "reason": reason })
        }
        AuditEvent::Rejected {
            field,
            value,
            reason,
        } => {
            json!({ "event": "rejected", "field": field, "value": entry(value), "reason": reason })
        }
        AuditEvent::Merged {
            survivor,
            absorbed,
            evidence,
        } => {
            json!({ "event": "merged", "survivor": survivor, "absorbed": absorbed, "evidence": evidence })
        }
        AuditEvent::LinkRemoved { link, policy } => json!({
            "event": "link_removed", "connector": link.connector, "object": link.object,
            "external_id": link.external_id, "policy": policy,
        }),
        AuditEvent::Invalid {
            connector,
            problem,
            at,
        } => {
            json!({ "event": "invalid_value", "connector": connector, "problem": problem, "source_time": time(at.source_ts) })
        }
        AuditEvent::Matched { link, evidence } => json!({
            "event": "matched", "connector": link.connector, "object": link.object,
            "external_id": link.external_id, "evidence": evidence,
        }),
        AuditEvent::Unmerged {
            survivor,
            split,
            link,
            by,
        } => json!({
            "event": "unmerged", "survivor": survivor, "split": split, "by": by,
            "link": link.as_ref().map(|l| format!("{}:{}:{}", l.connector, l.object, l.external_id)),
        }),
    };
    if let Some(fields) = v.as_object_mut() {
        fields.insert("at".into(), time(a.observed_ts));
    }
    v
}

/// A readable table of the same view, for terminals.
pub fn record_table(v: &Json) -> String {
    use std::fmt::Write;
    let s = |j: &Json| match j {
        Json::String(s) => s.clone(),
        Json::Null => "-".into(),
        other => other.to_string(),
    };
    // Two levels down: a missing level reads as null, never a panic.
    let s2 = |j: &Json, path: &str| s(crate::json::at(j, path));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {}  version {}{}{}",
        s(&v["kind"]),
        s(&v["id"]),
        v["version"],
        if v["archived"] == true {
            "  (archived)"
        } else {
            ""
        },
        if v["merged_into"].is_null() {
            String::new()
        } else {
            format!("  merged into {}", s(&v["merged_into"]))
        }
    );
    let fields = v["fields"].as_object().cloned().unwrap_or_default();
    let w = fields.keys().map(String::len).max().unwrap_or(5).max(5);
    let vw = fields
        .values()
        .map(|f| s(&f["value"]).chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 48);
    let _ = writeln!(
        out,
        "\n{:w$}  {:vw$}  {:18}  SOURCE TIME",
        "FIELD", "VALUE", "SOURCE"
    );
    for (k, f) in &fields {
        let mut val = s(&f["value"]);
        if val.chars().count() > vw {
            val = val.chars().take(vw - 1).collect::<String>() + "…";
        }
        let _ = writeln!(
            out,
            "{k:w$}  {val:vw$}  {:18}  {}",
            s(&f["source"]),
            s(&f["source_time"])
        );
    }
    let _ = writeln!(out, "\nLINKS");
    for l in v["links"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  {}:{}:{}  (source time {})",
            s(&l["connector"]),
            s(&l["object"]),
            s(&l["external_id"]),
            s(&l["source_time"])
        );
    }
    if let Some(rel) = v["relations"].as_object().filter(|r| !r.is_empty()) {
        let _ = writeln!(out, "\nRELATIONS");
        for (k, r) in rel {
            let target = if r["id"].is_null() {
                s(&r["unresolved"]) + " (not seen yet)"
            } else if let Some(name) = r["name"].as_str() {
                format!("{name} ({})", s(&r["id"]))
            } else {
                s(&r["id"])
            };
            let _ = writeln!(out, "  {k} -> {target}");
        }
    }
    if let Some(q) = v["quality"].as_array().filter(|q| !q.is_empty()) {
        let _ = writeln!(out, "\nQUALITY");
        for f in q {
            let _ = writeln!(
                out,
                "  {}: {} (from {})",
                s(&f["field"]),
                s(&f["description"]),
                s(&f["source"])
            );
        }
    }
    let audit = v["audit"].as_array().cloned().unwrap_or_default();
    if !audit.is_empty() {
        let _ = writeln!(out, "\nAUDIT (latest {})", audit.len());
        for a in &audit {
            let line = match a["event"].as_str().unwrap_or_default() {
                "overwritten" => format!(
                    "{}: {} ({}) replaced by {} ({}): {}",
                    s(&a["field"]),
                    s2(a, "/old/value"),
                    s2(a, "/old/source"),
                    s2(a, "/new/value"),
                    s2(a, "/new/source"),
                    s(&a["reason"])
                ),
                "rejected" => format!(
                    "{}: kept current, rejected {} ({}): {}",
                    s(&a["field"]),
                    s2(a, "/value/value"),
                    s2(a, "/value/source"),
                    s(&a["reason"])
                ),
                "merged" => format!(
                    "merged {} into {}: {}",
                    s(&a["absorbed"]),
                    s(&a["survivor"]),
                    s(&a["evidence"])
                ),
                "link_removed" => format!(
                    "{}:{}:{} deleted at the source ({})",
                    s(&a["connector"]),
                    s(&a["object"]),
                    s(&a["external_id"]),
                    s(&a["policy"])
                ),
                "matched" => format!(
                    "{}:{}:{} joined on its score: {}",
                    s(&a["connector"]),
                    s(&a["object"]),
                    s(&a["external_id"]),
                    s(&a["evidence"])
                ),
                "unmerged" => format!(
                    "{} split off {}{} by {}",
                    s(&a["split"]),
                    s(&a["survivor"]),
                    a["link"]
                        .as_str()
                        .map(|l| format!(" with its copy {l}"))
                        .unwrap_or_default(),
                    s(&a["by"])
                ),
                _ => format!(
                    "{} sent an invalid value: {}",
                    s(&a["connector"]),
                    s(&a["problem"])
                ),
            };
            let _ = writeln!(out, "  {}  {line}", s(&a["at"]));
        }
    }
    out
}

/// How many dead letters of each direction a listing shows unless asked otherwise.
pub const DLQ_LIST_LIMIT: usize = 1000;

/// `{dead_letters: [...]}`: pushes the systems refused for good, with what was sent and
/// what they answered (`direction: outbound`), and records or events that could not be
/// brought in, with their raw body and error (`direction: inbound`).
pub fn dead_letters_json(
    engine: &Engine,
    connector: Option<&str>,
    limit: usize,
) -> Result<Json, EngineError> {
    let out = engine.dead_letters(connector, limit)?;
    let inbound = engine.inbound_dead_letters(connector, limit)?;
    let time = |ts| micros_to_time(ts).map(|t| t.to_rfc3339());
    let items: Vec<Json> = out
        .iter()
        .map(|(connector, seq, d)| {
            json!({
                "direction": "outbound",
                "connector": connector,
                "seq": seq,
                "record": d.entry.record,
                "object": d.entry.object,
                "class": d.class,
                "detail": d.detail,
                "status": d.status,
                "request": d.request,
                "response": d.response,
                "attempts": d.entry.attempts,
                "failed_at": time(d.failed_ts),
            })
        })
        .chain(inbound.iter().map(|(id, d)| {
            json!({
                "direction": "inbound",
                "id": id,
                "connector": d.connector,
                "object": d.object,
                "external_id": d.external_id,
                "source": d.source,
                "error": d.error,
                "raw": d.raw,
                "attempts": d.attempts,
                "failed_at": time(d.failed_ts),
            })
        }))
        .collect();
    Ok(json!({ "dead_letters": items }))
}

/// A review pair as the admin API and CLI show it.
pub fn review_json(r: &super::Review) -> Json {
    json!({
        "id": r.id(),
        "kind": r.pair.kind.as_str(),
        "a": r.a,
        "b": r.b,
        "probability": r.pair.probability,
        "weight": r.pair.weight,
        "reason": r.pair.reason,
        "levels": r.pair.levels.iter().map(|(f, l, w)| json!({ "field": f, "level": l, "weight": w })).collect::<Vec<_>>(),
        "proposed_at": time(r.pair.at),
    })
}

/// `a.b` (two canonical ids) as [`super::Review::id`] writes it.
pub fn parse_review_id(id: &str) -> Option<(uuid::Uuid, uuid::Uuid)> {
    let (a, b) = id.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}
