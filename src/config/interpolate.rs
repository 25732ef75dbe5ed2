//! `${VAR}` references in configuration values, resolved from the environment.
//!
//! Interpolation runs on parsed values, not on the file's text, so a secret holding
//! `:` or `#` can never change the YAML's structure.

/// A reference that could not be resolved.
#[derive(Debug, PartialEq, Eq)]
pub struct Unresolved {
    pub path: String,
    pub message: String,
}

/// Resolve every `${VAR}` in the string values of `value`, in place. `$${` is a
/// literal `${`. Returns the substituted values (to redact them from errors)
/// and every reference that failed.
pub fn interpolate(
    value: &mut serde_json::Value,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> (Vec<String>, Vec<Unresolved>) {
    let mut used = Vec::new();
    let mut failed = Vec::new();
    walk(value, String::new(), lookup, &mut used, &mut failed);
    (used, failed)
}

fn walk(
    value: &mut serde_json::Value,
    path: String,
    lookup: &dyn Fn(&str) -> Option<String>,
    used: &mut Vec<String>,
    failed: &mut Vec<Unresolved>,
) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_owned()
        } else {
            format!("{path}.{k}")
        }
    };
    match value {
        serde_json::Value::String(s) if s.contains('$') => match expand(s, lookup) {
            Ok((out, values)) => {
                *s = out;
                used.extend(values);
            }
            Err(message) => failed.push(Unresolved { path, message }),
        },
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                walk(v, join(k), lookup, used, failed);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                walk(v, join(&i.to_string()), lookup, used, failed);
            }
        }
        _ => {}
    }
}

fn expand(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Vec<String>), String> {
    let mut out = String::with_capacity(s.len());
    let mut values = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in `{s}`"))?;
            let name = &tail[..end];
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!(
                    "`${{{name}}}` is not a valid environment variable name"
                ));
            }
            let v =
                lookup(name).ok_or_else(|| format!("environment variable `{name}` is not set"))?;
            out.push_str(&v);
            values.push(v);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok((out, values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("pat: #1".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_references_anywhere_in_strings() {
        let mut v = json!({"params": {"token": "${TOKEN}", "url": "a${EMPTY}b", "lit": "$${X} costs $5"}, "n": 3});
        let (used, failed) = interpolate(&mut v, &env);
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(v["params"]["token"], "pat: #1");
        assert_eq!(v["params"]["url"], "ab");
        assert_eq!(v["params"]["lit"], "${X} costs $5");
        assert_eq!(used, vec!["pat: #1".to_string(), String::new()]);
    }

    #[test]
    fn reports_each_missing_variable_with_its_path() {
        let mut v = json!({"params": {"token": "${NOPE}", "list": ["${ALSO_NOPE}"], "bad": "${1X}", "open": "${X"}});
        let (_, failed) = interpolate(&mut v, &env);
        let got: Vec<_> = failed
            .iter()
            .map(|u| (u.path.as_str(), u.message.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "params.bad",
                    "`${1X}` is not a valid environment variable name"
                ),
                (
                    "params.list.0",
                    "environment variable `ALSO_NOPE` is not set"
                ),
                ("params.open", "unclosed `${` in `${X`"),
                ("params.token", "environment variable `NOPE` is not set"),
            ]
        );
    }
}
