//! Search filters as HubSpot applies them: numbers and dates compare as numbers (a date as
//! its milliseconds), other text ignoring case, and `CONTAINS_TOKEN` matches whole tokens,
//! with `*` for any run of characters.

use serde_json::Value;

use super::{text, Rec};
use crate::mapping;

fn num(s: &str) -> Option<f64> {
    s.trim()
        .parse::<f64>()
        .ok()
        .or_else(|| mapping::parse_time(s).map(|t| t.timestamp_millis() as f64))
}

/// A record's value as a number, reading the kept timestamps directly: the modification
/// filter runs over every record on every search.
pub(super) fn rec_num(rec: &Rec, prop: &str) -> Option<f64> {
    match prop {
        "lastmodifieddate" | "hs_lastmodifieddate" => Some(rec.updated_ms as f64),
        "createdate" => Some(rec.created_ms as f64),
        _ => rec.props.get(prop).and_then(|v| num(v)),
    }
}

fn compare_rec(rec: &Rec, prop: &str, have: &str, value: &str) -> std::cmp::Ordering {
    match (rec_num(rec, prop), num(value)) {
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => have.to_lowercase().cmp(&value.to_lowercase()),
    }
}

fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.to_lowercase().cmp(&b.to_lowercase()),
    }
}

/// Whether `rec` passes one search filter (`{"propertyName","operator","value",...}`), or
/// why the filter is refused.
pub(super) fn matches(rec: &Rec, f: &Value) -> Result<bool, String> {
    use std::cmp::Ordering::*;
    let prop = f
        .get("propertyName")
        .and_then(Value::as_str)
        .ok_or("filter without propertyName")?;
    let op = f.get("operator").and_then(Value::as_str).unwrap_or("EQ");
    let have = rec.props.get(prop).filter(|v| !v.is_empty());
    let value = f.get("value").and_then(text);
    let need = |v: &Option<String>| v.clone().ok_or(format!("operator {op} needs a value"));
    let cmp = |want: &[std::cmp::Ordering]| -> Result<bool, String> {
        let v = need(&value)?;
        Ok(have.is_some_and(|h| want.contains(&compare_rec(rec, prop, h, &v))))
    };
    Ok(match op {
        "HAS_PROPERTY" => have.is_some(),
        "NOT_HAS_PROPERTY" => have.is_none(),
        "EQ" => cmp(&[Equal])?,
        "NEQ" => have.is_none() || cmp(&[Less, Greater])?,
        "LT" => cmp(&[Less])?,
        "LTE" => cmp(&[Less, Equal])?,
        "GT" => cmp(&[Greater])?,
        "GTE" => cmp(&[Greater, Equal])?,
        "BETWEEN" => {
            let hi = f
                .get("highValue")
                .and_then(text)
                .ok_or("BETWEEN needs highValue")?;
            let lo = need(&value)?;
            have.is_some_and(|h| compare(h, &lo) != Less && compare(h, &hi) != Greater)
        }
        "IN" | "NOT_IN" => {
            let vals: Vec<String> = f
                .get("values")
                .and_then(Value::as_array)
                .ok_or(format!("{op} needs values"))?
                .iter()
                .filter_map(text)
                .collect();
            let hit = have.is_some_and(|h| vals.iter().any(|v| compare(h, v) == Equal));
            if op == "IN" {
                hit
            } else {
                !hit
            }
        }
        "CONTAINS_TOKEN" | "NOT_CONTAINS_TOKEN" => {
            let v = need(&value)?;
            let hit = have.is_some_and(|h| contains_token(h, &v));
            if op == "CONTAINS_TOKEN" {
                hit
            } else {
                !hit
            }
        }
        other => return Err(format!("unknown operator {other}")),
    })
}

/// Whether `have` holds the token `want`, as HubSpot's `CONTAINS_TOKEN` reads it: whole
/// tokens, not parts of words ("ada" is no token of "Adam"), ignoring case. Text is cut
/// into tokens at white space and punctuation, so a value of several tokens ("x.example")
/// matches them in a row. A `*` matches any run of characters within a word, punctuation
/// included (HubSpot's example: `*@hubspot.com` for a HubSpot email address).
fn contains_token(have: &str, want: &str) -> bool {
    let (have, want) = (have.to_lowercase(), want.to_lowercase());
    if want.contains('*') {
        let mut words = have.split_whitespace().chain(tokens(&have));
        return words.any(|word| glob(&want, word));
    }
    let want: Vec<&str> = tokens(&want).collect();
    let have: Vec<&str> = tokens(&have).collect();
    !want.is_empty() && have.windows(want.len()).any(|run| run == want.as_slice())
}

fn tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
}

/// Whether all of `text` matches `pattern`, in which `*` stands for any run of characters
/// (none included) and everything else for itself.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(mut rest) = parts.next().and_then(|first| text.strip_prefix(first)) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part).and_then(|at| rest.get(at + part.len()..)) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    /// 2024-03-01T00:00:00Z in milliseconds.
    const MARCH_1: i64 = 1_709_251_200_000;

    fn rec(props: &[(&str, &str)]) -> Rec {
        Rec {
            id: 1,
            props: props
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            created_ms: MARCH_1,
            updated_ms: MARCH_1,
            archived_ms: None,
            history: BTreeMap::new(),
        }
    }

    fn test(r: &Rec, prop: &str, op: &str, value: &str) -> bool {
        let f = json!({"propertyName": prop, "operator": op, "value": value});
        matches(r, &f).unwrap_or_else(|e| panic!("{prop} {op} {value}: {e}"))
    }

    #[test]
    fn contains_token_matches_whole_tokens_not_parts_of_words() {
        let r = rec(&[
            ("firstname", "Adam"),
            ("lastname", "Lovelace-Byron"),
            ("email", "ada@x.example"),
            ("notes", "Ada, the first"),
        ]);
        let hit = |prop: &str, value: &str| test(&r, prop, "CONTAINS_TOKEN", value);
        assert!(!hit("firstname", "ada"), "a part of a word is no token");
        assert!(!hit("email", "xample"));
        assert!(hit("firstname", "ADAM"));
        assert!(hit("notes", "ada"), "punctuation ends a token");
        assert!(hit("lastname", "byron"));
        assert!(hit("email", "ada@x.example"), "the whole value");
        assert!(hit("email", "x.example"), "its tokens in a row");
        assert!(!hit("email", "example.x"), "in their order");
        assert!(!hit("notes", "ada first"));
        assert!(!hit("firstname", "@"), "no token at all matches nothing");
        assert!(!test(&r, "firstname", "NOT_CONTAINS_TOKEN", "adam"));
        assert!(test(&r, "firstname", "NOT_CONTAINS_TOKEN", "ada"));
    }

    #[test]
    fn contains_token_takes_wildcards() {
        let r = rec(&[
            ("firstname", "Adam"),
            ("lastname", "Lovelace-Byron"),
            ("email", "ada@x.example"),
        ]);
        let hit = |prop: &str, value: &str| test(&r, prop, "CONTAINS_TOKEN", value);
        assert!(hit("firstname", "ada*"));
        assert!(hit("firstname", "*dam"));
        assert!(hit("firstname", "a*m"));
        assert!(hit("firstname", "*"));
        assert!(!hit("firstname", "b*"));
        assert!(hit("email", "*@x.example"), "HubSpot's own example's form");
        assert!(!hit("email", "*@y.example"));
        assert!(
            !hit("email", "*@x.exam"),
            "the pattern spans the whole word"
        );
        assert!(hit("lastname", "lov*"), "a token within a hyphenated word");
        assert!(hit("lastname", "*-byron"));
        assert!(hit("lastname", "l*e*n"));
        assert!(!hit("lastname", "l*x*n"));
    }

    #[test]
    fn neq_compares_numbers_as_numbers_and_text_ignoring_case() {
        let r = rec(&[("lifecyclestage", "lead"), ("amount", "10")]);
        let neq = |prop: &str, value: &str| test(&r, prop, "NEQ", value);
        assert!(neq("lifecyclestage", "customer"));
        assert!(!neq("lifecyclestage", "Lead"));
        assert!(!neq("amount", "10.0"));
        assert!(neq("amount", "9"));
    }

    #[test]
    fn lt_orders_numbers_and_dates_as_numbers_not_text() {
        let r = rec(&[
            ("amount", "9"),
            ("closedate", "2024-03-01T00:00:00Z"),
            ("lastmodifieddate", "2024-03-01T00:00:00.000Z"),
        ]);
        let lt = |prop: &str, value: &str| test(&r, prop, "LT", value);
        assert!(lt("amount", "10"), "9 < 10, though \"9\" > \"10\" as text");
        assert!(!lt("amount", "9"));
        assert!(!lt("amount", "8.5"));
        assert!(lt("closedate", "2024-03-02T00:00:00Z"));
        assert!(lt("closedate", &(MARCH_1 + 1).to_string()), "epoch ms");
        assert!(!lt("closedate", "2024-03-01T00:00:00Z"));
        assert!(lt("lastmodifieddate", &(MARCH_1 + 1).to_string()));
        assert!(!lt("lastmodifieddate", &MARCH_1.to_string()));
        assert!(!lt("phone", "5"), "no value is never less");
        let no_value = json!({"propertyName": "amount", "operator": "LT"});
        assert!(matches(&r, &no_value).is_err());
    }
}
