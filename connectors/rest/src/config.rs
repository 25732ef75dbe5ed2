//! The `params:` of a `type: rest` connector file: the whole API, declared. Every problem is
//! reported with its path below `params` (`objects.registrants.list.paging.from`).

use std::collections::BTreeMap;

use revsync_sdk::{
    check_base_url, check_range, check_timeout_ms, parse_params, ParamError, Secret,
    MAX_WINDOW_SECS,
};
use serde::Deserialize;
use serde_json_path::JsonPath;

pub const EXAMPLE: &str = "params:
  base_url: https://api.example.com
  auth: { type: bearer, token: ${API_TOKEN} }
  objects:
    registrants:
      list:
        path: /v1/registrants
        records: $.data
        paging: { type: cursor, param: cursor, from: $.next_cursor }
        incremental: { field: updated_at, param: updated_since }";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub base_url: String,
    #[serde(default)]
    pub auth: AuthConfig,
    /// Headers sent with every request (an API version, an account id).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Each object the connector file syncs, by its name there.
    pub objects: BTreeMap<String, ObjectApi>,
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
}

fn default_timeout_ms() -> u64 {
    30_000
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    #[default]
    None,
    Bearer {
        token: Secret,
    },
    /// In a header (`header: X-API-Key`) or the query string (`query: api_key`).
    ApiKey {
        #[serde(default)]
        header: Option<String>,
        #[serde(default)]
        query: Option<String>,
        value: Secret,
    },
    Basic {
        username: String,
        password: Secret,
    },
    /// Client credentials, or a refresh token when one is given.
    Oauth2 {
        token_url: String,
        client_id: String,
        client_secret: Secret,
        #[serde(default)]
        refresh_token: Option<Secret>,
        #[serde(default)]
        scope: Option<String>,
    },
}

/// How one object is read and written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectApi {
    pub list: ListRequest,
    /// A record's last change time: a dotted field of the record. Without it every record
    /// read carries the time it was read.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// One record by id (webhook hints, replays): `{id}` in the path.
    #[serde(default)]
    pub get: Option<GetRequest>,
    #[serde(default)]
    pub create: Option<WriteRequest>,
    #[serde(default)]
    pub update: Option<WriteRequest>,
    /// A field the API keeps for another system's id: revsync writes the canonical id
    /// there on create, so a create whose answer was lost still joins its record.
    #[serde(default)]
    pub external_id_field: Option<String>,
    /// Fields added to every record read, where the record has none of its own (where a
    /// record came from: `lead_source: Webinar`), for the mapping to use like any other.
    #[serde(default)]
    pub add_fields: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListRequest {
    pub path: String,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Where the records are in the answer (a JSONPath; `$` for a bare array).
    #[serde(default = "root")]
    pub records: String,
    #[serde(default)]
    pub paging: Paging,
    #[serde(default)]
    pub incremental: Option<Incremental>,
}

fn root() -> String {
    "$".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Paging {
    /// One request answers everything.
    #[default]
    None,
    /// `?page=N`, from `start`; the last page is a short one, or `more` says false.
    Page {
        param: String,
        #[serde(default = "one")]
        start: u64,
        #[serde(default)]
        size_param: Option<String>,
        #[serde(default = "hundred")]
        size: u64,
        #[serde(default)]
        more: Option<String>,
    },
    /// `?offset=N&limit=M`; the last page is a short one, or past `total`.
    Offset {
        param: String,
        #[serde(default)]
        size_param: Option<String>,
        #[serde(default = "hundred")]
        size: u64,
        #[serde(default)]
        total: Option<String>,
    },
    /// The answer holds the next page's cursor (`from`), sent back as `param`.
    Cursor {
        param: String,
        from: String,
        #[serde(default)]
        more: Option<String>,
    },
    /// The answer holds the next page's URL (`from`).
    NextUrl { from: String },
    /// The `Link: <...>; rel="next"` header.
    LinkHeader,
}

fn one() -> u64 {
    1
}
fn hundred() -> u64 {
    100
}

/// Read only what changed since the last read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incremental {
    /// The record's change time (a dotted field).
    pub field: String,
    /// The request parameter that takes it; the API is expected to answer records changed
    /// at or after it (a strict API loses nothing either: set `lookback_secs`).
    pub param: String,
    #[serde(default)]
    pub format: TimeFormat,
    #[serde(default)]
    pub lookback_secs: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    #[default]
    Rfc3339,
    Unix,
    UnixMs,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetRequest {
    pub path: String,
    #[serde(default = "root")]
    pub record: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteRequest {
    #[serde(default = "post")]
    pub method: String,
    /// `{id}` is the record's id; `{field}` a value the mapping writes.
    pub path: String,
    /// The JSON body: a string `"{{field}}"` takes that field's value, `"{{fields}}"` all
    /// the mapped fields. Without it the body is the mapped fields.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// Where the written record's id is in the answer (default: the object's key).
    #[serde(default)]
    pub id: Option<String>,
    /// A header carrying a key the API uses to answer a repeat without doing it twice.
    #[serde(default)]
    pub idempotency_header: Option<String>,
}

fn post() -> String {
    "POST".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub secret: Secret,
    pub signature_header: String,
    /// Text before the signature in its header (`v1=`, `sha256=`).
    #[serde(default)]
    pub signature_prefix: String,
    #[serde(default)]
    pub algorithm: Algorithm,
    #[serde(default)]
    pub encoding: SigEncoding,
    /// What is signed: `{timestamp}` and `{body}` stand for the timestamp header's value and
    /// the raw body.
    #[serde(default = "body_only")]
    pub signed: String,
    #[serde(default)]
    pub timestamp_header: Option<String>,
    #[serde(default = "five_minutes")]
    pub tolerance_secs: u64,
    /// The object the events are about.
    pub object: String,
    /// Where the events are (an array, or one event).
    #[serde(default = "root")]
    pub events: String,
    /// The event's id within an event (deliveries of one event are applied once).
    #[serde(default)]
    pub event_id: Option<String>,
    /// The record within an event.
    #[serde(default = "root")]
    pub record: String,
}

fn body_only() -> String {
    "{body}".into()
}
fn five_minutes() -> u64 {
    300
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    #[default]
    Sha256,
    Sha1,
    Sha512,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SigEncoding {
    #[default]
    Hex,
    Base64,
}

/// A JSONPath, checked.
pub fn path(p: &str) -> Result<JsonPath, String> {
    JsonPath::parse(p).map_err(|e| format!("`{p}` is not a JSONPath: {e}"))
}

/// A request path: relative to `base_url`, with `{placeholders}` closed.
fn check_path(at: &str, p: &str, errors: &mut Vec<ParamError>) {
    if !p.starts_with('/') {
        errors.push(
            ParamError::new(
                at,
                format!("`{p}` must start with `/` (it is joined to base_url)"),
            )
            .with_example(format!(
                "{}: /v1/records",
                at.rsplit('.').next().unwrap_or(at)
            )),
        );
    }
    if p.matches('{').count() != p.matches('}').count() {
        errors.push(ParamError::new(at, format!("`{p}` has an unclosed `{{`")));
    }
}

fn check_jsonpath(at: &str, p: &str, errors: &mut Vec<ParamError>) {
    if let Err(e) = path(p) {
        errors.push(
            ParamError::new(at, e)
                .with_example(format!("{}: $.data", at.rsplit('.').next().unwrap_or(at))),
        );
    }
}

impl Params {
    pub fn parse(params: &serde_json::Value) -> Result<Self, Vec<ParamError>> {
        let p: Params = parse_params(params).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        if let Err(e) = check_base_url("base_url", &p.base_url) {
            errors.push(e);
        }
        if let Some(e) = check_timeout_ms(p.timeout_ms, "30000") {
            errors.push(e);
        }
        match &p.auth {
            AuthConfig::ApiKey { header, query, .. } if header.is_some() == query.is_some() => {
                errors.push(
                    ParamError::new(
                        "auth",
                        "an api_key goes in a `header` or a `query` parameter: name exactly one",
                    )
                    .with_example("auth: { type: api_key, header: X-API-Key, value: ${API_KEY} }"),
                );
            }
            AuthConfig::Oauth2 { token_url, .. } => {
                if let Err(e) = check_base_url("auth.token_url", token_url) {
                    errors.push(e);
                }
            }
            _ => {}
        }
        if p.objects.is_empty() {
            errors.push(
                ParamError::new("objects", "declares no object: say how each is read")
                    .with_example(EXAMPLE),
            );
        }
        for (name, o) in &p.objects {
            o.check(&format!("objects.{name}"), &mut errors);
        }
        if let Some(w) = &p.webhook {
            if w.signature_header.trim().is_empty() {
                errors.push(ParamError::new("webhook.signature_header", "is empty"));
            }
            if !w.signed.contains("{body}") {
                errors.push(
                    ParamError::new("webhook.signed", "must contain `{body}`: a signature that does not cover the body proves nothing about it")
                        .with_example("signed: \"{timestamp}.{body}\""),
                );
            }
            if w.signed.contains("{timestamp}") && w.timestamp_header.is_none() {
                errors.push(
                    ParamError::new(
                        "webhook.timestamp_header",
                        "`signed` uses {timestamp}: name the header that carries it",
                    )
                    .with_example("timestamp_header: X-Timestamp"),
                );
            }
            if let Some(e) = check_range(
                "webhook.tolerance_secs",
                w.tolerance_secs,
                1..=MAX_WINDOW_SECS,
                "seconds",
                "300",
            ) {
                errors.push(e);
            }
            if !p.objects.contains_key(&w.object) {
                errors.push(ParamError::new(
                    "webhook.object",
                    format!("`{}` is not one of params.objects", w.object),
                ));
            }
            for (at, jp) in [
                ("webhook.events", Some(&w.events)),
                ("webhook.record", Some(&w.record)),
                ("webhook.event_id", w.event_id.as_ref()),
            ] {
                if let Some(jp) = jp {
                    check_jsonpath(at, jp, &mut errors);
                }
            }
        }
        revsync_sdk::collected(p, errors)
    }
}

impl ObjectApi {
    fn check(&self, at: &str, errors: &mut Vec<ParamError>) {
        let l = &self.list;
        check_path(&format!("{at}.list.path"), &l.path, errors);
        check_jsonpath(&format!("{at}.list.records"), &l.records, errors);
        match &l.paging {
            Paging::Page { size, more, .. } => {
                size_range(&format!("{at}.list.paging.size"), *size, errors);
                if let Some(m) = more {
                    check_jsonpath(&format!("{at}.list.paging.more"), m, errors);
                }
            }
            Paging::Offset { size, total, .. } => {
                size_range(&format!("{at}.list.paging.size"), *size, errors);
                if let Some(t) = total {
                    check_jsonpath(&format!("{at}.list.paging.total"), t, errors);
                }
            }
            Paging::Cursor { from, more, .. } => {
                check_jsonpath(&format!("{at}.list.paging.from"), from, errors);
                if let Some(m) = more {
                    check_jsonpath(&format!("{at}.list.paging.more"), m, errors);
                }
            }
            Paging::NextUrl { from } => {
                check_jsonpath(&format!("{at}.list.paging.from"), from, errors)
            }
            Paging::None | Paging::LinkHeader => {}
        }
        if let Some(i) = &l.incremental {
            if let Some(e) = check_range(
                &format!("{at}.list.incremental.lookback_secs"),
                i.lookback_secs,
                0..=MAX_WINDOW_SECS,
                "seconds",
                "0",
            ) {
                errors.push(e);
            }
        }
        if let Some(g) = &self.get {
            check_path(&format!("{at}.get.path"), &g.path, errors);
            check_jsonpath(&format!("{at}.get.record"), &g.record, errors);
        }
        for (which, w) in [("create", &self.create), ("update", &self.update)] {
            let Some(w) = w else { continue };
            check_path(&format!("{at}.{which}.path"), &w.path, errors);
            if reqwest::Method::from_bytes(w.method.to_ascii_uppercase().as_bytes()).is_err()
                || !matches!(
                    w.method.to_ascii_uppercase().as_str(),
                    "POST" | "PUT" | "PATCH"
                )
            {
                errors.push(
                    ParamError::new(
                        format!("{at}.{which}.method"),
                        format!("`{}` is not POST, PUT or PATCH", w.method),
                    )
                    .with_example("method: PATCH"),
                );
            }
            if let Some(id) = &w.id {
                check_jsonpath(&format!("{at}.{which}.id"), id, errors);
            }
        }
        if self
            .update
            .as_ref()
            .is_some_and(|u| !u.path.contains("{id}"))
        {
            errors.push(
                ParamError::new(
                    format!("{at}.update.path"),
                    "has no `{id}`: an update must name the record it changes",
                )
                .with_example("path: /v1/records/{id}"),
            );
        }
    }
}

fn size_range(at: &str, size: u64, errors: &mut Vec<ParamError>) {
    if let Some(e) = check_range(at, size, 1..=10_000, "records", "100") {
        errors.push(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> serde_json::Value {
        json!({
            "base_url": "https://api.example.com",
            "auth": {"type": "bearer", "token": "t"},
            "objects": {"people": {"list": {"path": "/v1/people", "records": "$.data"}}}
        })
    }

    #[test]
    fn a_minimal_declaration_parses() {
        let p = Params::parse(&minimal()).unwrap();
        assert!(matches!(p.auth, AuthConfig::Bearer { .. }));
        assert!(matches!(p.objects["people"].list.paging, Paging::None));
        assert_eq!(p.timeout_ms, 30_000);
    }

    #[test]
    fn every_mistake_is_named_with_its_path() {
        let bad = json!({
            "base_url": "api.example.com",
            "auth": {"type": "api_key", "value": "k"},
            "objects": {"people": {
                "list": {"path": "v1/people", "records": "data[", "paging": {"type": "cursor", "param": "c", "from": "$$"}},
                "update": {"method": "DELETE", "path": "/v1/people"}
            }},
            "webhook": {"secret": "s", "signature_header": "X-Sig", "signed": "{timestamp}", "object": "nope"}
        });
        let errs = Params::parse(&bad).unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        for p in [
            "base_url",
            "auth",
            "objects.people.list.path",
            "objects.people.list.records",
            "objects.people.list.paging.from",
            "objects.people.update.method",
            "objects.people.update.path",
            "webhook.signed",
            "webhook.timestamp_header",
            "webhook.object",
        ] {
            assert!(paths.contains(&p), "{p} not in {paths:?}");
        }
        let typo = json!({"base_url": "https://x.test", "objects": {"p": {"list": {"path": "/p", "paging": {"type": "pages"}}}}});
        let e = Params::parse(&typo).unwrap_err();
        assert_eq!(e[0].path, "objects.p.list.paging.type");
        assert!(e[0].message.contains("pages"), "{e:?}");
    }
}
