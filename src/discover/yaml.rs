//! The connector file `discover --yaml` writes. YAML built by hand: it carries comments (the
//! unmapped fields, ready to uncomment), which no serializer writes. Values are copied from
//! the file uninterpolated; mapping entries that are mappings are written in flow style
//! (JSON, which YAML reads as is).

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Map, Value as Json};

use super::{notes, suggest, DescribedObject, Discovery};

/// Written first, in this order; every other top-level key follows, then [`LAST`].
const FIRST: &[&str] = &["version", "id", "type", "enabled", "dry_run"];
/// Written last, as the shipped templates have them.
const LAST: &[&str] = &["objects", "deletes"];
/// An object's keys written first, in this order.
const OBJECT_FIRST: &[&str] = &["kind", "direction"];

pub(super) fn connector_file(
    d: &Discovery,
    raw: &Map<String, Json>,
    file: &Path,
    today: &str,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {} ({}): written by `revsync discover --yaml` on {today}, from {} and",
        d.connector,
        d.type_name,
        file.display()
    );
    out.push_str(
        "# from the fields the API describes. Fields the mapping does not use are listed\n",
    );
    out.push_str("# commented out, each with the canonical field it most likely means: uncomment to sync it.\n");
    for key in FIRST {
        if let Some(v) = raw.get(*key) {
            entry(&mut out, 0, key, v);
        }
    }
    for (key, v) in raw {
        if !FIRST.contains(&key.as_str()) && !LAST.contains(&key.as_str()) {
            entry(&mut out, 0, key, v);
        }
    }

    let raw_objects = raw.get("objects").and_then(Json::as_object);
    let configured = |name: &str| {
        raw_objects
            .and_then(|m| m.get(name))
            .and_then(Json::as_object)
    };
    let others: Vec<(&String, &Json)> = raw_objects
        .into_iter()
        .flatten()
        .filter(|(name, _)| !d.objects.iter().any(|o| &o.name == *name))
        .collect();
    let active = d.objects.iter().any(|o| configured(&o.name).is_some()) || !others.is_empty();
    out.push_str(if active {
        "objects:\n"
    } else {
        "objects: {}\n"
    });
    for o in &d.objects {
        match configured(&o.name) {
            Some(fields) => configured_object(&mut out, o, fields),
            None => commented_object(&mut out, o),
        }
    }
    // Objects the file maps that discover was not asked about (`--object`) stay as they are.
    for (name, v) in others {
        entry(&mut out, 2, name, v);
    }
    if let Some(v) = raw.get("deletes") {
        entry(&mut out, 0, "deletes", v);
    }
    out
}

fn configured_object(out: &mut String, o: &DescribedObject, raw: &Map<String, Json>) {
    let _ = writeln!(out, "  {}:", scalar_text(&o.name));
    for key in OBJECT_FIRST {
        if let Some(v) = raw.get(*key) {
            entry(out, 4, key, v);
        }
    }
    for (key, v) in raw
        .iter()
        .filter(|(k, _)| k.as_str() != "fields" && !OBJECT_FIRST.contains(&k.as_str()))
    {
        entry(out, 4, key, v);
    }
    let mapped = raw.get("fields").and_then(Json::as_object);
    let unmapped: Vec<String> = o
        .fields
        .iter()
        .filter(|f| f.maps_to.is_none() && !mapped.is_some_and(|m| m.contains_key(&f.schema.name)))
        .map(|f| unmapped_line(o, f))
        .collect();
    match mapped.filter(|m| !m.is_empty()) {
        Some(m) => {
            out.push_str("    fields:\n");
            for (src, spec) in m {
                let _ = writeln!(out, "      {}: {}", scalar_text(src), flow(spec));
            }
        }
        None => out.push_str("    fields: {}\n"),
    }
    if let Some(e) = &o.error {
        let _ = writeln!(
            out,
            "      # the API could not describe {}: {}",
            o.name,
            one_line(e)
        );
    }
    for line in unmapped {
        let _ = writeln!(out, "      # {line}");
    }
}

fn commented_object(out: &mut String, o: &DescribedObject) {
    if let Some(e) = &o.error {
        let _ = writeln!(
            out,
            "  # {}: the API could not describe it: {}",
            o.name,
            one_line(e)
        );
        return;
    }
    let _ = writeln!(out, "  # {}:", scalar_text(&o.name));
    let _ = writeln!(out, "  #   kind: {}", o.kind.as_str());
    out.push_str("  #   direction: in\n");
    out.push_str("  #   fields:\n");
    for f in &o.fields {
        let _ = writeln!(out, "  #     {}", unmapped_line(o, f));
    }
}

/// `name: suggestion   # label, type; notes`. A field the system computes is read only
/// (`direction: in`): uncommented, it must never be pushed back.
fn unmapped_line(o: &DescribedObject, f: &super::DescribedField) -> String {
    let s = &f.schema;
    let n = notes(s);
    let target = suggest(o.kind, &s.name);
    let target = if s.read_only {
        format!("{{ to: {target}, direction: in }}")
    } else {
        target
    };
    format!(
        "{}: {}   # {}, {}{}",
        scalar_text(&s.name),
        target,
        one_line(&s.label),
        s.ty,
        if n.is_empty() {
            String::new()
        } else {
            format!("; {n}")
        }
    )
}

/// `key: value` at `indent`, nested mappings as blocks.
fn entry(out: &mut String, indent: usize, key: &str, v: &Json) {
    let pad = " ".repeat(indent);
    match v {
        Json::Object(m) if !m.is_empty() => {
            let _ = writeln!(out, "{pad}{}:", scalar_text(key));
            for (k, child) in m {
                entry(out, indent + 2, k, child);
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{}: {}", scalar_text(key), flow(other));
        }
    }
}

/// A value on one line: scalars plain where YAML reads them back as the same string,
/// everything else as JSON.
fn flow(v: &Json) -> String {
    match v {
        Json::String(s) => scalar_text(s),
        other => other.to_string(),
    }
}

/// A string plain when YAML would read it back as that same string, else double-quoted
/// (JSON escapes are YAML's).
fn scalar_text(s: &str) -> String {
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    let rest_ok = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.-/@${}".contains(c));
    let reserved = matches!(
        s.to_ascii_lowercase().as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
    );
    let numeric = s.parse::<f64>().is_ok() || s.starts_with("0x") || s.starts_with("0o");
    if first_ok && rest_ok && !reserved && !numeric {
        s.to_owned()
    } else {
        Json::String(s.to_owned()).to_string()
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_plain_only_when_yaml_reads_them_back_unchanged() {
        assert_eq!(scalar_text("firstname"), "firstname");
        assert_eq!(scalar_text("${HUBSPOT_TOKEN}"), "${HUBSPOT_TOKEN}");
        assert_eq!(scalar_text("user_fields.plan"), "user_fields.plan");
        assert_eq!(scalar_text("yes"), "\"yes\"");
        assert_eq!(scalar_text("1.5"), "\"1.5\"");
        assert_eq!(scalar_text("a: b"), "\"a: b\"");
        assert_eq!(scalar_text(""), "\"\"");
        assert_eq!(scalar_text("#x"), "\"#x\"");
    }

    #[test]
    fn nested_mappings_are_blocks_and_mapping_entries_flow() {
        let mut out = String::new();
        entry(
            &mut out,
            0,
            "params",
            &serde_json::json!({"count": 3, "list": ["a"], "tier": "free", "token": "${T}"}),
        );
        assert_eq!(
            out,
            "params:\n  count: 3\n  list: [\"a\"]\n  tier: free\n  token: ${T}\n"
        );
        assert_eq!(
            flow(&serde_json::json!({"map": "default", "to": "stage"})),
            r#"{"map":"default","to":"stage"}"#
        );
    }
}
