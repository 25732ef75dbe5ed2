//! Reading an object: the list request for a position, its answer decoded into changes,
//! and the cursor that carries paging and the incremental position between polls.
//!
//! An incremental read asks for records changed at or after `since`; records stamped with
//! exactly `since` that were already handed out as they are now (`seen`: id and a
//! fingerprint of the record) are dropped, so a same-second change is neither lost nor
//! applied twice, and a record edited again within that second is read again. `since` moves only when a read reaches its last
//! page: a read cut short starts again from its page, a finished one from its newest time.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use revsync_sdk::http::ApiRequest;
use revsync_sdk::{canonical_id_in, Change, ConnectorError, Fetched};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json_path::JsonPath;

use crate::config::{ListRequest, Paging, TimeFormat};

/// Where a read stands, stored as the object's cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The newest change time of the last finished read (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Records stamped exactly `since` already read, as `id#fingerprint` (an id alone, from
    /// a cursor written before fingerprints, matches nothing: read once more).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen: Vec<String>,
    /// The next page of a read under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Next>,
    /// The newest time (and its ids) of the read under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub newest_ids: Vec<String>,
}

/// A record handed out at the cursor's second: its id and what it said.
fn seen_key(id: &str, record: &Value) -> String {
    format!("{id}#{:016x}", revsync_sdk::fingerprint(record))
}

/// The next page, in the paging style's own terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Next {
    Page(u64),
    Offset(u64),
    Cursor(String),
    Url(String),
}

impl Cursor {
    pub fn parse(text: Option<&str>) -> Self {
        // A cursor this version cannot read restarts the object from the beginning, which
        // the engine makes harmless (what it holds is set aside as a re-read).
        text.and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default()
    }
}

/// A record's id as text (ids are strings or numbers in JSON).
pub fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A dotted field of a record (`properties.email`).
pub fn field<'a>(record: &'a Value, dotted: &str) -> Option<&'a Value> {
    if let Some(v) = record.get(dotted) {
        return Some(v);
    }
    dotted.split('.').try_fold(record, |v, part| v.get(part))
}

pub fn parse_time(v: &Value, format: TimeFormat) -> Option<DateTime<Utc>> {
    match (v, format) {
        (Value::String(s), _) => DateTime::parse_from_rfc3339(s.trim())
            .ok()
            .map(|t| t.with_timezone(&Utc))
            .or_else(|| {
                s.trim()
                    .parse::<i64>()
                    .ok()
                    .and_then(|n| from_number(n, format))
            }),
        (Value::Number(n), _) => n.as_i64().and_then(|n| from_number(n, format)),
        _ => None,
    }
}

fn from_number(n: i64, format: TimeFormat) -> Option<DateTime<Utc>> {
    match format {
        TimeFormat::UnixMs => Utc.timestamp_millis_opt(n).single(),
        // A number in an RFC 3339 field: seconds, unless it can only be milliseconds.
        TimeFormat::Unix | TimeFormat::Rfc3339 if n > 100_000_000_000 => {
            Utc.timestamp_millis_opt(n).single()
        }
        TimeFormat::Unix | TimeFormat::Rfc3339 => Utc.timestamp_opt(n, 0).single(),
    }
}

fn format_time(t: DateTime<Utc>, format: TimeFormat) -> String {
    match format {
        TimeFormat::Rfc3339 => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        TimeFormat::Unix => t.timestamp().to_string(),
        TimeFormat::UnixMs => t.timestamp_millis().to_string(),
    }
}

/// The list request for `cursor`'s position. `base`: the API's base URL, which a next-page
/// URL must share (it would otherwise carry our credentials to another host).
pub fn request(
    list: &ListRequest,
    cursor: &Cursor,
    base: &str,
) -> Result<ApiRequest, ConnectorError> {
    if let Some(Next::Url(url)) = &cursor.next {
        if !same_origin(base, url) {
            return Err(ConnectorError::Permanent {
                detail: format!("the next page is on another host ({}); not following it with this API's credentials", origin(url)),
                status: None,
                body: None,
            });
        }
        return Ok(ApiRequest::get(url.clone()));
    }
    let mut req = ApiRequest::get(list.path.clone());
    for (k, v) in &list.query {
        req = req.with_query(k.clone(), v.clone());
    }
    match (&list.paging, &cursor.next) {
        (
            Paging::Page {
                param,
                start,
                size_param,
                size,
                ..
            },
            next,
        ) => {
            let page = match next {
                Some(Next::Page(n)) => *n,
                _ => *start,
            };
            req = req.with_query(param.clone(), page.to_string());
            if let Some(sp) = size_param {
                req = req.with_query(sp.clone(), size.to_string());
            }
        }
        (
            Paging::Offset {
                param,
                size_param,
                size,
                ..
            },
            next,
        ) => {
            let offset = match next {
                Some(Next::Offset(n)) => *n,
                _ => 0,
            };
            req = req.with_query(param.clone(), offset.to_string());
            if let Some(sp) = size_param {
                req = req.with_query(sp.clone(), size.to_string());
            }
        }
        (Paging::Cursor { param, .. }, Some(Next::Cursor(c))) => {
            req = req.with_query(param.clone(), c.clone());
        }
        _ => {}
    }
    if let (Some(inc), Some(since)) = (&list.incremental, &cursor.since) {
        let since = DateTime::parse_from_rfc3339(since)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| ConnectorError::Permanent {
                detail: format!("stored cursor time `{since}`: {e}"),
                status: None,
                body: None,
            })?;
        let from = since - chrono::Duration::seconds(i64::try_from(inc.lookback_secs).unwrap_or(0));
        req = req.with_query(inc.param.clone(), format_time(from, inc.format));
    }
    Ok(req)
}

fn origin(url: &str) -> String {
    reqwest::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| "an unreadable URL".into())
}

fn same_origin(base: &str, url: &str) -> bool {
    match (reqwest::Url::parse(base), reqwest::Url::parse(url)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

/// The compiled paths of one object's list.
pub struct Paths {
    pub records: JsonPath,
    pub more: Option<JsonPath>,
    pub from: Option<JsonPath>,
    pub total: Option<JsonPath>,
}

impl Paths {
    pub fn compile(list: &ListRequest) -> Result<Self, String> {
        let opt = |p: Option<&String>| p.map(|p| crate::config::path(p)).transpose();
        let (more, from, total) = match &list.paging {
            Paging::Page { more, .. } => (more.as_ref(), None, None),
            Paging::Offset { total, .. } => (None, None, total.as_ref()),
            Paging::Cursor { from, more, .. } => (more.as_ref(), Some(from), None),
            Paging::NextUrl { from } => (None, Some(from), None),
            Paging::None | Paging::LinkHeader => (None, None, None),
        };
        Ok(Self {
            records: crate::config::path(&list.records)?,
            more: opt(more)?,
            from: opt(from)?,
            total: opt(total)?,
        })
    }
}

/// The records a JSONPath selects: an array it selects is its elements.
pub fn select<'a>(path: &JsonPath, body: &'a Value) -> Vec<&'a Value> {
    let nodes = path.query(body).all();
    match nodes.as_slice() {
        [Value::Array(items)] => items.iter().collect(),
        _ => nodes,
    }
}

fn one<'a>(path: Option<&JsonPath>, body: &'a Value) -> Option<&'a Value> {
    path.and_then(|p| p.query(body).all().into_iter().next())
}

/// How a record becomes a change.
pub struct Decode<'a> {
    pub object: &'a str,
    pub key: &'a str,
    pub updated_at: Option<&'a str>,
    pub external_id_field: Option<&'a str>,
    pub format: TimeFormat,
    pub now: DateTime<Utc>,
    pub add_fields: &'a BTreeMap<String, Value>,
}

impl Decode<'_> {
    /// A change, or why the record cannot be one.
    pub fn change(&self, record: &Value) -> Result<(Change, Option<DateTime<Utc>>), String> {
        let Value::Object(map) = record else {
            return Err("the record is not a JSON object".into());
        };
        let id = field(record, self.key)
            .and_then(id_text)
            .ok_or_else(|| format!("no id in `{}`", self.key))?;
        let updated = match self.updated_at {
            None => None,
            Some(f) => Some(
                field(record, f)
                    .and_then(|v| parse_time(v, self.format))
                    .ok_or_else(|| format!("`{f}` is not a time"))?,
            ),
        };
        let mut fields: BTreeMap<String, Value> =
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (k, v) in self.add_fields {
            fields.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Ok((
            Change {
                object: self.object.to_owned(),
                external_id: id,
                source_updated_at: updated.unwrap_or(self.now),
                canonical_id: self
                    .external_id_field
                    .and_then(|f| canonical_id_in(field(record, f))),
                fields,
                deleted: false,
            },
            updated,
        ))
    }
}

/// A page's answer as changes, and where the read goes next.
pub fn page(
    list: &ListRequest,
    paths: &Paths,
    decode: &Decode<'_>,
    cursor: &Cursor,
    body: &Value,
    link: Option<&str>,
) -> Result<Fetched, ConnectorError> {
    let records = select(&paths.records, body);
    let mut out = Fetched::default();
    let mut c = cursor.clone();
    let since = cursor
        .since
        .as_deref()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc));
    let mut newest = c
        .newest
        .as_deref()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc));
    for r in &records {
        match decode.change(r) {
            Err(e) => out.reject(decode.object, r, e),
            Ok((change, updated)) => {
                if let Some(t) = updated {
                    let seen = seen_key(&change.external_id, r);
                    if since == Some(t) && cursor.seen.contains(&seen) {
                        continue; // handed out by the last read as it is, the same second
                    }
                    match newest {
                        Some(n) if n > t => {}
                        Some(n) if n == t => c.newest_ids.push(seen),
                        _ => {
                            newest = Some(t);
                            c.newest_ids = vec![seen];
                        }
                    }
                }
                out.changes.push(change);
            }
        }
    }
    c.newest = newest.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
    let n = records.len() as u64;
    let truthy = |p: Option<&JsonPath>| one(p, body).map(|v| matches!(v, Value::Bool(true)));
    c.next = match &list.paging {
        Paging::None => None,
        Paging::Page { start, size, .. } => {
            let page = match &cursor.next {
                Some(Next::Page(p)) => *p,
                _ => *start,
            };
            let more = truthy(paths.more.as_ref()).unwrap_or(n >= *size && n > 0);
            more.then(|| Next::Page(page.saturating_add(1)))
        }
        Paging::Offset { size, .. } => {
            let offset = match &cursor.next {
                Some(Next::Offset(o)) => *o,
                _ => 0,
            };
            let next = offset.saturating_add(n);
            let total = one(paths.total.as_ref(), body).and_then(Value::as_u64);
            let more = match total {
                Some(t) => next < t && n > 0,
                None => n >= *size && n > 0,
            };
            more.then_some(Next::Offset(next))
        }
        Paging::Cursor { .. } => {
            let token = one(paths.from.as_ref(), body).and_then(id_text);
            let more = truthy(paths.more.as_ref()).unwrap_or(token.is_some());
            token.filter(|_| more).map(Next::Cursor)
        }
        Paging::NextUrl { .. } => one(paths.from.as_ref(), body)
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .map(|u| Next::Url(u.to_owned())),
        Paging::LinkHeader => link.and_then(next_link).map(Next::Url),
    };
    // A next page that is the page just read would loop for ever.
    if c.next.is_some() && c.next == cursor.next {
        return Err(ConnectorError::Permanent {
            detail: "the API answered the same next page again".into(),
            status: None,
            body: None,
        });
    }
    out.more = c.next.is_some();
    if !out.more {
        // The read is done: the next one starts from its newest time.
        if let Some(n) = c.newest.take() {
            let ids = std::mem::take(&mut c.newest_ids);
            if c.since.as_deref() == Some(n.as_str()) {
                c.seen.extend(ids);
                c.seen.sort();
                c.seen.dedup();
            } else {
                c.seen = ids;
                c.since = Some(n);
            }
        }
        c.newest_ids.clear();
    }
    out.cursor = Some(revsync_sdk::cursor_text(&c)?);
    Ok(out)
}

/// The `rel="next"` URL of a `Link` header (RFC 8288).
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
        let next = params.split(';').any(|p| {
            let p = p.trim();
            p.strip_prefix("rel=")
                .map(|r| {
                    r.trim_matches('"')
                        .split_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
                })
                .unwrap_or(false)
        });
        next.then(|| url.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Incremental;
    use serde_json::json;

    fn list(paging: Paging) -> ListRequest {
        ListRequest {
            path: "/v1/people".into(),
            query: BTreeMap::new(),
            records: "$.data".into(),
            paging,
            incremental: Some(Incremental {
                field: "updated_at".into(),
                param: "updated_since".into(),
                format: TimeFormat::Rfc3339,
                lookback_secs: 0,
            }),
        }
    }

    fn decode() -> Decode<'static> {
        Decode {
            object: "people",
            key: "id",
            updated_at: Some("updated_at"),
            external_id_field: None,
            format: TimeFormat::Rfc3339,
            now: Utc::now(),
            add_fields: &NO_FIELDS,
        }
    }

    static NO_FIELDS: BTreeMap<String, Value> = BTreeMap::new();

    #[test]
    fn link_headers_name_their_next_page() {
        let h =
            r#"<https://a.test/p?page=1>; rel="prev", <https://a.test/p?page=3>; rel="next last""#;
        assert_eq!(next_link(h).as_deref(), Some("https://a.test/p?page=3"));
        assert_eq!(next_link(r#"<https://a.test/x>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn a_same_second_change_is_read_once_and_the_time_moves_when_the_read_ends() {
        let l = list(Paging::Cursor {
            param: "cursor".into(),
            from: "$.next_cursor".into(),
            more: None,
        });
        let paths = Paths::compile(&l).unwrap();
        let body = json!({"data": [
            {"id": "a", "updated_at": "2026-01-01T00:00:01Z"},
            {"id": "b", "updated_at": "2026-01-01T00:00:02Z"}
        ], "next_cursor": "p2"});
        let first = page(&l, &paths, &decode(), &Cursor::default(), &body, None).unwrap();
        assert!(first.more);
        let c1 = Cursor::parse(first.cursor.as_deref());
        assert_eq!(c1.next, Some(Next::Cursor("p2".into())));
        assert_eq!(c1.since, None);
        let body2 = json!({"data": [{"id": "c", "updated_at": "2026-01-01T00:00:02Z"}], "next_cursor": null});
        let last = page(&l, &paths, &decode(), &c1, &body2, None).unwrap();
        assert!(!last.more);
        let c2 = Cursor::parse(last.cursor.as_deref());
        assert_eq!(c2.since.as_deref(), Some("2026-01-01T00:00:02Z"));
        let ids = |c: &Cursor| -> Vec<String> {
            c.seen
                .iter()
                .map(|k| k.split('#').next().unwrap_or_default().to_owned())
                .collect()
        };
        assert_eq!(ids(&c2), ["b", "c"]);
        assert_eq!(c2.next, None);

        // The next read asks from that second: b and c come again, with d new.
        let req = request(&l, &c2, "https://a.test").unwrap();
        assert!(req
            .query
            .contains(&("updated_since".into(), "2026-01-01T00:00:02Z".into())));
        let again = json!({"data": [
            {"id": "b", "updated_at": "2026-01-01T00:00:02Z"},
            {"id": "c", "updated_at": "2026-01-01T00:00:02Z"},
            {"id": "d", "updated_at": "2026-01-01T00:00:02Z"}
        ]});
        let f = page(&l, &paths, &decode(), &c2, &again, None).unwrap();
        let read: Vec<&str> = f.changes.iter().map(|c| c.external_id.as_str()).collect();
        assert_eq!(read, ["d"]);
        let c3 = Cursor::parse(f.cursor.as_deref());
        assert_eq!(ids(&c3), ["b", "c", "d"]);

        // b edited again within that same second: read again, once.
        let edited = json!({"data": [
            {"id": "b", "updated_at": "2026-01-01T00:00:02Z", "attended": true},
            {"id": "c", "updated_at": "2026-01-01T00:00:02Z"},
            {"id": "d", "updated_at": "2026-01-01T00:00:02Z"}
        ]});
        let f = page(&l, &paths, &decode(), &c3, &edited, None).unwrap();
        let read: Vec<&str> = f.changes.iter().map(|c| c.external_id.as_str()).collect();
        assert_eq!(read, ["b"]);
        let c4 = Cursor::parse(f.cursor.as_deref());
        let f = page(&l, &paths, &decode(), &c4, &edited, None).unwrap();
        assert!(f.changes.is_empty(), "{:?}", f.changes);
    }

    #[test]
    fn page_and_offset_paging_stop_at_a_short_page_or_the_total() {
        let l = list(Paging::Page {
            param: "page".into(),
            start: 1,
            size_param: Some("per_page".into()),
            size: 2,
            more: None,
        });
        let paths = Paths::compile(&l).unwrap();
        let full = json!({"data": [{"id": 1, "updated_at": 1}, {"id": 2, "updated_at": 2}]});
        let f = page(&l, &paths, &decode(), &Cursor::default(), &full, None).unwrap();
        assert_eq!(Cursor::parse(f.cursor.as_deref()).next, Some(Next::Page(2)));
        let short = json!({"data": [{"id": 3, "updated_at": 3}]});
        let c = Cursor::parse(f.cursor.as_deref());
        let req = request(&l, &c, "https://a.test").unwrap();
        assert!(req.query.contains(&("page".into(), "2".into())));
        assert!(req.query.contains(&("per_page".into(), "2".into())));
        assert!(!page(&l, &paths, &decode(), &c, &short, None).unwrap().more);

        let o = list(Paging::Offset {
            param: "offset".into(),
            size_param: Some("limit".into()),
            size: 2,
            total: Some("$.total".into()),
        });
        let paths = Paths::compile(&o).unwrap();
        let body =
            json!({"data": [{"id": 1, "updated_at": 1}, {"id": 2, "updated_at": 2}], "total": 2});
        assert!(
            !page(&o, &paths, &decode(), &Cursor::default(), &body, None)
                .unwrap()
                .more
        );
    }

    #[test]
    fn a_next_url_on_another_host_is_not_followed() {
        let c = Cursor {
            next: Some(Next::Url("https://evil.test/steal".into())),
            ..Cursor::default()
        };
        let l = list(Paging::NextUrl {
            from: "$.links.next".into(),
        });
        let e = request(&l, &c, "https://api.test").unwrap_err();
        assert!(e.to_string().contains("another host"), "{e}");
        let ok = Cursor {
            next: Some(Next::Url("https://api.test/v1/people?after=9".into())),
            ..Cursor::default()
        };
        assert_eq!(
            request(&l, &ok, "https://api.test").unwrap().path,
            "https://api.test/v1/people?after=9"
        );
    }

    #[test]
    fn a_record_without_id_or_time_is_rejected_and_the_rest_read() {
        let l = list(Paging::None);
        let paths = Paths::compile(&l).unwrap();
        let body = json!({"data": [{"id": "a", "updated_at": "nope"}, {"name": "x"}, 7, {"id": "b", "updated_at": "2026-01-01T00:00:00Z"}]});
        let f = page(&l, &paths, &decode(), &Cursor::default(), &body, None).unwrap();
        assert_eq!(f.changes.len(), 1);
        assert_eq!(f.invalid.len(), 3);
        assert_eq!(f.rejected[0].external_id.as_deref(), Some("a"));
    }
}
