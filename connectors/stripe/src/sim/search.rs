//! `GET /v1/customers/search` of the Stripe simulator: the search query language's clauses
//! (`email:'x'`, `metadata['k']:'v'`, negation, `~` substrings, numeric `created`) joined by
//! spaces, `AND` or `OR`, and the `search_result` page with its `next_page` token.

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::{error, limit, page};

/// Stripe takes at most this many clauses in one query.
const MAX_CLAUSES: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Email,
    Name,
    Phone,
    Created,
    Metadata(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Exact,
    Substring,
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Clause {
    negated: bool,
    field: Field,
    op: Op,
    value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Query {
    clauses: Vec<Clause>,
    /// `OR` joins the clauses; otherwise (spaces or `AND`) all must hold.
    any: bool,
}

/// A quoted string starting at `rest` (after its opening quote): its text and what follows.
fn quoted(rest: &str, quote: char) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => out.push(escaped),
                None => break,
            },
            c if c == quote => return Ok((out, rest.get(i + c.len_utf8()..).unwrap_or(""))),
            c => out.push(c),
        }
    }
    Err("a quoted value is not closed".into())
}

fn field(name: &str, key: Option<String>) -> Result<Field, String> {
    match (name, key) {
        ("metadata", Some(k)) => Ok(Field::Metadata(k)),
        ("email", None) => Ok(Field::Email),
        ("name", None) => Ok(Field::Name),
        ("phone", None) => Ok(Field::Phone),
        ("created", None) => Ok(Field::Created),
        (other, _) => Err(format!(
            "Field `{other}` is an unsupported search field for resource `customers`."
        )),
    }
}

/// One clause at the start of `s` (leading spaces skipped), and what follows it.
fn clause(s: &str) -> Result<(Clause, &str), String> {
    let s = s.trim_start();
    let (negated, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let name_end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    let (name, mut rest) = s.split_at(name_end);
    if name.is_empty() {
        return Err("expected a field name".into());
    }
    let mut key = None;
    if let Some(after) = rest.strip_prefix('[') {
        let quote = after
            .chars()
            .next()
            .filter(|c| *c == '\'' || *c == '"')
            .ok_or("a metadata key must be quoted")?;
        let (k, after) = quoted(after.get(1..).unwrap_or(""), quote)?;
        rest = after
            .strip_prefix(']')
            .ok_or("a metadata key must be closed by `]`")?;
        key = Some(k);
    }
    let field = field(name, key)?;
    let (op, rest) = [
        (">=", Op::Gte),
        ("<=", Op::Lte),
        (">", Op::Gt),
        ("<", Op::Lt),
        (":", Op::Exact),
        ("~", Op::Substring),
    ]
    .into_iter()
    .find_map(|(text, op)| rest.strip_prefix(text).map(|r| (op, r)))
    .ok_or("expected an operator (`:`, `~`, `>`, `<`, `>=`, `<=`) after the field")?;
    let applies = match field {
        Field::Created => op != Op::Substring,
        _ => matches!(op, Op::Exact | Op::Substring),
    };
    if !applies {
        return Err("this operator does not apply to this field".into());
    }
    let (value, rest) = match rest.chars().next() {
        Some(q @ ('\'' | '"')) => quoted(rest.get(1..).unwrap_or(""), q)?,
        _ if field == Field::Created => {
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let (n, after) = rest.split_at(end);
            if n.is_empty() {
                return Err("`created` takes a number".into());
            }
            (n.to_owned(), after)
        }
        _ => return Err("a string value must be quoted".into()),
    };
    if op == Op::Substring && value.chars().count() < 3 {
        return Err("a substring search needs at least 3 characters".into());
    }
    Ok((
        Clause {
            negated,
            field,
            op,
            value,
        },
        rest,
    ))
}

fn parse(q: &str) -> Result<Query, String> {
    let mut clauses = Vec::new();
    let mut joins = Vec::new();
    let mut rest = q;
    loop {
        let (c, after) = clause(rest)?;
        clauses.push(c);
        let next = after.trim_start();
        if next.is_empty() {
            break;
        }
        if next.len() == after.len() {
            return Err("clauses must be separated by a space".into());
        }
        let word = next.split_whitespace().next().unwrap_or("");
        rest = if word.eq_ignore_ascii_case("and") || word.eq_ignore_ascii_case("or") {
            joins.push(word.to_ascii_lowercase());
            next.get(word.len()..).unwrap_or("")
        } else {
            joins.push("and".into());
            next
        };
    }
    if clauses.len() > MAX_CLAUSES {
        return Err(format!("a query takes at most {MAX_CLAUSES} clauses"));
    }
    let any = joins.iter().any(|j| j == "or");
    if any && joins.iter().any(|j| j == "and") {
        return Err("`AND` and `OR` cannot be combined in one query".into());
    }
    Ok(Query { clauses, any })
}

fn holds(c: &Clause, customer: &Value) -> bool {
    let text = match &c.field {
        Field::Email => customer["email"].as_str(),
        Field::Name => customer["name"].as_str(),
        Field::Phone => customer["phone"].as_str(),
        Field::Metadata(k) => customer
            .get("metadata")
            .and_then(|m| m.get(k))
            .and_then(Value::as_str),
        Field::Created => None,
    };
    let hit = match (&c.field, c.op) {
        (Field::Created, op) => {
            let (have, want) = (customer["created"].as_i64(), c.value.parse::<i64>().ok());
            match (have, want) {
                (Some(h), Some(w)) => match op {
                    Op::Gt => h > w,
                    Op::Gte => h >= w,
                    Op::Lt => h < w,
                    Op::Lte => h <= w,
                    _ => h == w,
                },
                _ => false,
            }
        }
        (_, Op::Substring) => {
            text.is_some_and(|t| t.to_lowercase().contains(&c.value.to_lowercase()))
        }
        _ => text.is_some_and(|t| t.eq_ignore_ascii_case(&c.value)),
    };
    hit != c.negated
}

/// The answer to a search (`/v1/customers/search`, `/v1/subscriptions/search`) over
/// `rows`, newest first: the query language is the same for both.
pub(super) fn rows(rows: Vec<&Value>, params: &Value, url: &str) -> (u16, Value) {
    let invalid = |message: &str, param: &str| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            message,
            Some(param),
        )
    };
    let Some(q) = params["query"].as_str() else {
        return invalid("Missing required param: query.", "query");
    };
    let query = match parse(q) {
        Ok(query) => query,
        Err(why) => return invalid(&format!("Invalid query `{q}`: {why}"), "query"),
    };
    let limit = match limit(params) {
        Ok(n) => n,
        Err(refused) => return refused,
    };
    // `next_page` is opaque to clients; here it is the offset of the next result.
    let start = match params["page"].as_str() {
        None => 0,
        Some(p) => match p
            .strip_prefix("page_")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) => n,
            None => return invalid(&format!("Invalid page: {p}"), "page"),
        },
    };
    let hits: Vec<&Value> = rows
        .into_iter()
        .filter(|c| {
            let mut each = query.clauses.iter().map(|clause| holds(clause, c));
            if query.any {
                each.any(|h| h)
            } else {
                each.all(|h| h)
            }
        })
        .collect();
    let end = start.saturating_add(limit).min(hits.len());
    let data = page(&hits, start, end);
    let has_more = end < hits.len();
    (
        200,
        json!({
            "object": "search_result",
            "url": url,
            "has_more": has_more,
            "next_page": has_more.then(|| format!("page_{end}")),
            "data": data,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clauses_parse_with_either_quote_and_either_join() {
        let q = parse(r#"email:'a@x.example' AND metadata["revsync_id"]:"r1""#).unwrap();
        assert!(!q.any);
        assert_eq!(q.clauses.len(), 2);
        assert_eq!(q.clauses[1].field, Field::Metadata("revsync_id".into()));
        assert_eq!(q.clauses[1].value, "r1");
        let q = parse("email:'a@x.example' or -name~'acme' OR created>=5").unwrap();
        assert!(q.any);
        assert!(q.clauses[1].negated && q.clauses[1].op == Op::Substring);
        assert_eq!(q.clauses[2].op, Op::Gte);
        // Juxtaposed clauses are joined by AND.
        assert!(!parse("email:'a' name:'b'").unwrap().any);
    }

    #[test]
    fn malformed_queries_are_refused() {
        for bad in [
            "",
            "email",
            "email:a@x.example",
            "email:'open",
            "metadata[key]:'v'",
            "shoe_size:'9'",
            "email:'a' AND name:'b' OR phone:'c'",
            "name~'ab'",
            "email>'a'",
            "email:'a'name:'b'",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matching_is_exact_and_case_insensitive_and_pages_have_the_real_shape() {
        let a =
            json!({"id": "cus_a", "email": "A@x.example", "metadata": {"k": "v"}, "created": 5});
        let b = json!({"id": "cus_b", "email": "b@x.example", "metadata": {}, "created": 9});
        let found = || vec![&b, &a];
        let search = |params: &Value| rows(found(), params, "/v1/customers/search");
        let (status, page) = search(&json!({"query": "email:'a@x.example'"}));
        assert_eq!(status, 200);
        assert_eq!(page["object"], "search_result");
        assert_eq!(page["data"][0]["id"], "cus_a");
        assert_eq!(page["next_page"], Value::Null);
        let (_, page) = search(&json!({"query": "metadata['k']:'v' OR created>6"}));
        assert_eq!(page["data"].as_array().unwrap().len(), 2);
        let (_, page) = search(&json!({"query": "-metadata['k']:'v'", "limit": "1"}));
        assert_eq!(page["data"][0]["id"], "cus_b");
        let (_, first) = search(&json!({"query": "created>0", "limit": "1"}));
        assert_eq!(first["has_more"], true);
        let next = first["next_page"].as_str().unwrap();
        let (_, second) = search(&json!({"query": "created>0", "limit": "1", "page": next}));
        assert_eq!(second["data"][0]["id"], "cus_a");
        let (status, body) = search(&json!({"query": "email:"}));
        assert_eq!(status, 400);
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "query");
    }
}
