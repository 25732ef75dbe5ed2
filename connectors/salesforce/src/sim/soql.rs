//! The SOQL the simulator answers: `SELECT fields FROM object [WHERE ...] [ORDER BY ...]
//! [LIMIT n] [OFFSET n]`, with `=`, `!=`/`<>`, `<`, `<=`, `>`, `>=`, `LIKE`, `IN`,
//! `NOT IN`, `AND`, `OR`, `NOT` and parentheses, string, number, boolean, `null`, date and
//! datetime literals. As in Salesforce: keywords and text comparisons ignore case, `AND` and
//! `OR` at one level need parentheses, nulls sort first unless `NULLS LAST`, `OFFSET` is at
//! most 2,000. Anything else is `MALFORMED_QUERY`, so a client that sends SOQL the real API
//! might read differently fails here first.

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use super::SimRecord;
use crate::mapping::{is_field_name, parse_datetime};

/// Salesforce's cap on `OFFSET`.
const MAX_OFFSET: usize = 2000;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Lit {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
    DateTime(DateTime<Utc>),
    Date(NaiveDate),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
}

#[derive(Debug, PartialEq)]
pub(super) enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Cmp {
        field: String,
        op: Op,
        value: Lit,
    },
    In {
        field: String,
        values: Vec<Lit>,
        negated: bool,
    },
}

#[derive(Debug, PartialEq)]
pub(super) struct Order {
    pub field: String,
    pub desc: bool,
    pub nulls_last: bool,
}

#[derive(Debug)]
pub(super) struct Soql {
    pub fields: Vec<String>,
    pub object: String,
    pub filter: Option<Expr>,
    pub order: Vec<Order>,
    pub limit: Option<usize>,
    pub offset: usize,
}

impl Soql {
    /// Every field the query names, in the order written: SELECT, WHERE, ORDER BY.
    pub(super) fn named_fields(&self) -> Vec<&str> {
        fn walk<'a>(e: &'a Expr, out: &mut Vec<&'a str>) {
            match e {
                Expr::And(es) | Expr::Or(es) => es.iter().for_each(|e| walk(e, out)),
                Expr::Not(e) => walk(e, out),
                Expr::Cmp { field, .. } | Expr::In { field, .. } => out.push(field),
            }
        }
        let mut out: Vec<&str> = self.fields.iter().map(String::as_str).collect();
        if let Some(f) = &self.filter {
            walk(f, &mut out);
        }
        out.extend(self.order.iter().map(|o| o.field.as_str()));
        out
    }
}

/// Salesforce's INVALID_FIELD answer to a query naming a column `object` does not have:
/// the query, a caret under the column, its row and column, then the explanation.
pub(super) fn no_such_column(q: &str, field: &str, object: &str) -> SoqlError {
    let chars: Vec<char> = q.chars().collect();
    let word = |c: Option<&char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_');
    let wanted: Vec<char> = field.to_lowercase().chars().collect();
    let at = (0..chars.len())
        .find(|&i| {
            chars.get(i..i + wanted.len()).is_some_and(|w| {
                w.iter()
                    .flat_map(|c| c.to_lowercase())
                    .eq(wanted.iter().copied())
            }) && !word(i.checked_sub(1).and_then(|j| chars.get(j)))
                && !word(chars.get(i + wanted.len()))
        })
        .unwrap_or(0);
    SoqlError {
        code: "INVALID_FIELD",
        message: format!(
            "\n{q}\n{caret:>width$}\nERROR at Row:1:Column:{col}\nNo such column '{field}' on entity '{object}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
            caret = "^",
            width = at + 1,
            col = at + 1,
        ),
    }
}

/// A refused query: Salesforce's error code and message.
#[derive(Debug)]
pub(super) struct SoqlError {
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    /// An unquoted literal: number, date or datetime.
    Bare(String),
    Punct(&'static str),
}

impl Tok {
    fn show(&self) -> String {
        match self {
            Tok::Word(w) | Tok::Bare(w) => w.clone(),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Punct(p) => (*p).to_owned(),
        }
    }
}

fn malformed(message: String) -> SoqlError {
    SoqlError {
        code: "MALFORMED_QUERY",
        message,
    }
}

fn tokens(q: &str) -> Result<Vec<Tok>, SoqlError> {
    let chars: Vec<char> = q.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            // Backslash escapes only (`\'`, `\\`, `\n`...): `''` is not an escape in SOQL.
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(malformed("unterminated string literal".into())),
                    Some('\'') => break,
                    Some('\\') => {
                        let e = chars
                            .get(i + 1)
                            .ok_or_else(|| malformed("unterminated string literal".into()))?;
                        // LIKE's own escapes stay escaped for the pattern matcher.
                        if matches!(e, '%' | '_') {
                            s.push('\\');
                        }
                        s.push(match e {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            other => *other,
                        });
                        i += 2;
                    }
                    Some(other) => {
                        s.push(*other);
                        i += 1;
                    }
                }
            }
            i += 1;
            out.push(Tok::Str(s));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while chars
                .get(i)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
            {
                i += 1;
            }
            out.push(Tok::Word(
                chars.get(start..i).unwrap_or_default().iter().collect(),
            ));
        } else if c.is_ascii_digit() || c == '-' || c == '+' {
            let start = i;
            while chars
                .get(i)
                .is_some_and(|c| !c.is_whitespace() && !matches!(c, ',' | '(' | ')'))
            {
                i += 1;
            }
            out.push(Tok::Bare(
                chars.get(start..i).unwrap_or_default().iter().collect(),
            ));
        } else {
            let two: String = chars.iter().skip(i).take(2).collect();
            let p = match two.as_str() {
                "!=" => "!=",
                "<>" => "<>",
                "<=" => "<=",
                ">=" => ">=",
                _ => match c {
                    '(' => "(",
                    ')' => ")",
                    ',' => ",",
                    '=' => "=",
                    '<' => "<",
                    '>' => ">",
                    _ => return Err(malformed(format!("unexpected token: '{c}'"))),
                },
            };
            i += p.len();
            out.push(Tok::Punct(p));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn unexpected(&self) -> SoqlError {
        match self.peek() {
            Some(t) => malformed(format!("unexpected token: '{}'", t.show())),
            None => malformed("unexpected token: <EOF>".into()),
        }
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        let yes = self.is_kw(kw);
        if yes {
            self.at += 1;
        }
        yes
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), SoqlError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn eat_punct(&mut self, p: &str) -> bool {
        let yes = matches!(self.peek(), Some(Tok::Punct(q)) if *q == p);
        if yes {
            self.at += 1;
        }
        yes
    }

    fn field(&mut self) -> Result<String, SoqlError> {
        const RESERVED: &[&str] = &[
            "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "LIMIT",
            "OFFSET", "ASC", "DESC", "NULLS", "NULL", "TRUE", "FALSE",
        ];
        match self.peek() {
            Some(Tok::Word(w))
                if is_field_name(w) && !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(w)) =>
            {
                let w = w.clone();
                self.at += 1;
                Ok(w)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn literal(&mut self) -> Result<Lit, SoqlError> {
        let lit = match self.peek() {
            Some(Tok::Str(s)) => Lit::Str(s.clone()),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => Lit::Null,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Lit::Bool(true),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Lit::Bool(false),
            Some(Tok::Bare(b)) => {
                if let Ok(d) = NaiveDate::parse_from_str(b, "%Y-%m-%d") {
                    Lit::Date(d)
                } else if let Some(t) = b.contains('T').then(|| parse_datetime(b)).flatten() {
                    Lit::DateTime(t)
                } else if let Ok(n) = b.parse::<f64>() {
                    Lit::Num(n)
                } else {
                    return Err(self.unexpected());
                }
            }
            _ => return Err(self.unexpected()),
        };
        self.at += 1;
        Ok(lit)
    }

    /// Conditions joined by one connective; mixing `AND` and `OR` needs parentheses.
    fn expr(&mut self) -> Result<Expr, SoqlError> {
        let first = self.unary()?;
        let mut items = vec![first];
        let mut joint: Option<&'static str> = None;
        loop {
            let j = if self.is_kw("AND") {
                "AND"
            } else if self.is_kw("OR") {
                "OR"
            } else {
                break;
            };
            if joint.is_some_and(|k| k != j) {
                return Err(self.unexpected());
            }
            joint = Some(j);
            self.at += 1;
            items.push(self.unary()?);
        }
        Ok(match (joint, items.len()) {
            (_, 1) => items.remove(0),
            (Some("OR"), _) => Expr::Or(items),
            _ => Expr::And(items),
        })
    }

    fn unary(&mut self) -> Result<Expr, SoqlError> {
        if self.eat_kw("NOT") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat_punct("(") {
            let e = self.expr()?;
            if !self.eat_punct(")") {
                return Err(self.unexpected());
            }
            return Ok(e);
        }
        let field = self.field()?;
        let negated = self.eat_kw("NOT");
        if self.eat_kw("IN") {
            if !self.eat_punct("(") {
                return Err(self.unexpected());
            }
            let mut values = vec![self.literal()?];
            while self.eat_punct(",") {
                values.push(self.literal()?);
            }
            if !self.eat_punct(")") {
                return Err(self.unexpected());
            }
            return Ok(Expr::In {
                field,
                values,
                negated,
            });
        }
        if negated {
            return Err(self.unexpected());
        }
        let op = if self.eat_kw("LIKE") {
            Op::Like
        } else {
            match self.next() {
                Some(Tok::Punct("=")) => Op::Eq,
                Some(Tok::Punct("!=" | "<>")) => Op::Ne,
                Some(Tok::Punct("<")) => Op::Lt,
                Some(Tok::Punct("<=")) => Op::Le,
                Some(Tok::Punct(">")) => Op::Gt,
                Some(Tok::Punct(">=")) => Op::Ge,
                _ => {
                    self.at -= 1;
                    return Err(self.unexpected());
                }
            }
        };
        let value = self.literal()?;
        let fits = match (&value, op) {
            (Lit::Null, Op::Eq | Op::Ne) => true,
            (Lit::Null, _) => false,
            (Lit::Str(_), Op::Like) => true,
            (_, Op::Like) => false,
            _ => true,
        };
        if !fits {
            return Err(malformed(format!(
                "invalid operator on {field} for this value"
            )));
        }
        Ok(Expr::Cmp { field, op, value })
    }

    fn count(&mut self) -> Result<usize, SoqlError> {
        match self.next() {
            Some(Tok::Bare(n)) => n.parse().map_err(|_| {
                self.at -= 1;
                self.unexpected()
            }),
            _ => {
                self.at -= 1;
                Err(self.unexpected())
            }
        }
    }
}

pub(super) fn parse(q: &str) -> Result<Soql, SoqlError> {
    let mut p = Parser {
        toks: tokens(q)?,
        at: 0,
    };
    p.expect_kw("SELECT")?;
    let mut fields = vec![p.field()?];
    while p.eat_punct(",") {
        fields.push(p.field()?);
    }
    p.expect_kw("FROM")?;
    let object = p.field()?;
    let filter = if p.eat_kw("WHERE") {
        Some(p.expr()?)
    } else {
        None
    };
    let mut order = Vec::new();
    if p.eat_kw("ORDER") {
        p.expect_kw("BY")?;
        loop {
            let field = p.field()?;
            let desc = if p.eat_kw("DESC") {
                true
            } else {
                p.eat_kw("ASC");
                false
            };
            let nulls_last = if p.eat_kw("NULLS") {
                if p.eat_kw("LAST") {
                    true
                } else {
                    p.expect_kw("FIRST")?;
                    false
                }
            } else {
                false
            };
            order.push(Order {
                field,
                desc,
                nulls_last,
            });
            if !p.eat_punct(",") {
                break;
            }
        }
    }
    let limit = if p.eat_kw("LIMIT") {
        Some(p.count()?)
    } else {
        None
    };
    let offset = if p.eat_kw("OFFSET") { p.count()? } else { 0 };
    if p.peek().is_some() {
        return Err(p.unexpected());
    }
    if offset > MAX_OFFSET {
        return Err(SoqlError {
            code: "NUMBER_OUTSIDE_VALID_RANGE",
            message: format!("Maximum SOQL offset allowed is {MAX_OFFSET}"),
        });
    }
    Ok(Soql {
        fields,
        object,
        filter,
        order,
        limit,
        offset,
    })
}

/// A record's value of `field` (names ignore case, as in SOQL).
pub(super) fn value_of(r: &SimRecord, field: &str) -> Lit {
    let is = |n: &str| field.eq_ignore_ascii_case(n);
    if is("Id") {
        return Lit::Str(r.id.clone());
    }
    if is("SystemModstamp") || is("LastModifiedDate") {
        return Lit::DateTime(r.stamp);
    }
    if is("IsDeleted") {
        return Lit::Bool(r.deleted);
    }
    let v = r
        .fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(field))
        .map(|(_, v)| v);
    match v {
        None | Some(Value::Null) => Lit::Null,
        Some(Value::String(s)) => Lit::Str(s.clone()),
        Some(Value::Bool(b)) => Lit::Bool(*b),
        Some(Value::Number(n)) => n.as_f64().map_or(Lit::Null, Lit::Num),
        Some(other) => Lit::Str(other.to_string()),
    }
}

/// How two non-null values order, when they are comparable at all.
fn cmp(have: &Lit, want: &Lit) -> Option<Ordering> {
    match (have, want) {
        (Lit::Str(a), Lit::Str(b)) => Some(a.to_lowercase().cmp(&b.to_lowercase())),
        (Lit::Num(a), Lit::Num(b)) => a.partial_cmp(b),
        (Lit::Bool(a), Lit::Bool(b)) => Some(a.cmp(b)),
        (Lit::DateTime(a), Lit::DateTime(b)) => Some(a.cmp(b)),
        (Lit::Str(s), Lit::DateTime(b)) => parse_datetime(s).map(|a| a.cmp(b)),
        (Lit::Date(a), Lit::Date(b)) => Some(a.cmp(b)),
        (Lit::Str(s), Lit::Date(b)) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .map(|a| a.cmp(b)),
        _ => None,
    }
}

/// `LIKE`: `%` any run, `_` one character, `\` escapes either; case ignored.
fn like(text: &str, pattern: &str) -> bool {
    fn go(t: &[char], p: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| go(t.get(i..).unwrap_or_default(), rest)),
            Some(('_', rest)) => t.split_first().is_some_and(|(_, tr)| go(tr, rest)),
            Some(('\\', rest)) => match (rest.split_first(), t.split_first()) {
                (Some((pc, pr)), Some((tc, tr))) => pc == tc && go(tr, pr),
                _ => false,
            },
            Some((pc, rest)) => t
                .split_first()
                .is_some_and(|(tc, tr)| tc == pc && go(tr, rest)),
        }
    }
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    go(&t, &p)
}

fn test(have: &Lit, op: Op, want: &Lit) -> bool {
    match (have, want) {
        // SOQL treats null as a value: `!= 'x'` includes records without one.
        (Lit::Null, Lit::Null) => op == Op::Eq,
        (Lit::Null, _) => op == Op::Ne,
        (_, Lit::Null) => op == Op::Ne,
        _ => match op {
            Op::Like => matches!((have, want), (Lit::Str(t), Lit::Str(p)) if like(t, p)),
            Op::Ne => cmp(have, want) != Some(Ordering::Equal),
            _ => cmp(have, want).is_some_and(|o| match op {
                Op::Eq => o == Ordering::Equal,
                Op::Lt => o == Ordering::Less,
                Op::Le => o != Ordering::Greater,
                Op::Gt => o == Ordering::Greater,
                _ => o != Ordering::Less,
            }),
        },
    }
}

pub(super) fn matches(e: &Expr, r: &SimRecord) -> bool {
    match e {
        Expr::And(es) => es.iter().all(|e| matches(e, r)),
        Expr::Or(es) => es.iter().any(|e| matches(e, r)),
        Expr::Not(e) => !matches(e, r),
        Expr::Cmp { field, op, value } => test(&value_of(r, field), *op, value),
        Expr::In {
            field,
            values,
            negated,
        } => {
            let have = value_of(r, field);
            values.iter().any(|v| test(&have, Op::Eq, v)) != *negated
        }
    }
}

/// The `ORDER BY` comparison of two records (sorting ignores case; nulls first by default).
pub(super) fn order(keys: &[Order], a: &SimRecord, b: &SimRecord) -> Ordering {
    for k in keys {
        let (x, y) = (value_of(a, &k.field), value_of(b, &k.field));
        let o = match (&x, &y) {
            (Lit::Null, Lit::Null) => Ordering::Equal,
            (Lit::Null, _) if k.nulls_last => Ordering::Greater,
            (Lit::Null, _) => Ordering::Less,
            (_, Lit::Null) if k.nulls_last => Ordering::Less,
            (_, Lit::Null) => Ordering::Greater,
            _ => {
                let o = cmp(&x, &y).unwrap_or(Ordering::Equal);
                if k.desc {
                    o.reverse()
                } else {
                    o
                }
            }
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connectors_incremental_query_parses() {
        let q = "SELECT Id, SystemModstamp, IsDeleted, Email FROM Contact WHERE SystemModstamp > 2024-03-01T10:00:00Z OR (SystemModstamp = 2024-03-01T10:00:00Z AND Id > '003000000000001AAA') ORDER BY SystemModstamp, Id LIMIT 200";
        let s = parse(q).unwrap();
        assert_eq!(s.object, "Contact");
        assert_eq!(s.limit, Some(200));
        assert_eq!(s.order.len(), 2);
        assert!(matches!(s.filter, Some(Expr::Or(ref v)) if v.len() == 2));
        let s =
            parse("SELECT Id FROM Lead WHERE Id IN ('00Q000000000001AAA', '00Q000000000002AAA')")
                .unwrap();
        assert!(matches!(s.filter, Some(Expr::In { ref values, .. }) if values.len() == 2));
    }

    #[test]
    fn comparisons_like_and_ordering_parse_and_the_rest_is_malformed() {
        for good in [
            "SELECT Id FROM Contact WHERE Name = 'x'",
            "select id from contact where email like 'ab%' order by Name desc nulls last limit 5 offset 2",
            "SELECT Id FROM Contact WHERE Email != null AND (Amount >= 10.5 OR Amount < -1)",
            "SELECT Id FROM Contact WHERE NOT Email IN ('a@b.c') AND CloseDate <= 2024-12-31",
            "SELECT Id FROM Contact WHERE Email NOT IN ('a@b.c', 'd@e.f')",
            "SELECT Id FROM Contact WHERE Name = 'O\\'Brien'",
        ] {
            assert!(parse(good).is_ok(), "{good}: {:?}", parse(good).err());
        }
        for bad in [
            "SELECT Id FROM Contact WHERE Id IN ('x'' OR 1=1')",
            "SELECT Id FROM Contact WHERE A = 'x' AND B = 'y' OR C = 'z'",
            "SELECT Id FROM Contact WHERE Email LIKE 3",
            "SELECT Id FROM Contact WHERE Email > null",
            "SELECT Id FROM Contact WHERE",
            "SELECT Id FROM Contact LIMIT x",
            "SELECT FROM Contact",
            "DELETE FROM Contact",
            "SELECT Id FROM Contact WHERE Name = 'open",
        ] {
            assert_eq!(
                parse(bad).map(|_| ()).unwrap_err().code,
                "MALFORMED_QUERY",
                "{bad}"
            );
        }
        let e = parse("SELECT Id FROM Contact OFFSET 2001").unwrap_err();
        assert_eq!(e.code, "NUMBER_OUTSIDE_VALID_RANGE");
    }

    #[test]
    fn like_follows_soql_wildcards_and_ignores_case() {
        assert!(like("Ab@example.com", "ab%"));
        assert!(like("abc", "a_c"));
        assert!(!like("abc", "a_"));
        assert!(like("50%", "50\\%"));
        assert!(!like("500", "50\\%"));
        assert!(like("anything", "%"));
    }
}
