//! The console's pages, built with maud (every value escaped): overview, records and
//! the record page, the editable grid, dead letters and revenue.
// The pages read the engine's and the KPI report's JSON views with `v["key"]`:
// serde_json's read-only indexing answers Null for a missing key and never panics.
#![allow(clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Extension, Form, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup, DOCTYPE};
use revsync_sdk::model::FieldType;
use revsync_sdk::{Kind, Value};
use serde_json::Value as Json;
use uuid::Uuid;

use super::{chart, Viewer, COOKIE, SOURCE};
use crate::app::AppState;
use crate::auth::Role;
use crate::format::thousands;
use crate::status::{ConnectorState, ConnectorStatus};

/// Rows the grid shows per page; records the name search and the grid read at most per
/// request (a store of millions is searched by email, domain or id, not by scan).
const GRID_ROWS: usize = 50;
const SCAN_LIMIT: usize = 20_000;

// ---------------------------------------------------------------- layout and helpers

fn layout(title: &str, viewer: Option<&Viewer>, active: &str, body: Markup) -> Markup {
    let nav = [
        ("/", "Overview"),
        ("/console/records", "Records"),
        ("/console/grid", "Grid"),
        ("/console/dlq", "Dead letters"),
        ("/console/dupes", "Duplicates"),
        ("/console/quality", "Quality"),
        ("/console/workflows", "Workflows"),
        ("/console/revenue", "Revenue"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · revsync" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "revsync" }
                    @if let Some(v) = viewer {
                        nav aria-label="Main" {
                            ul {
                                @for (href, name) in nav {
                                    li { a href=(href) aria-current=[(active == name).then_some("page")] { (name) } }
                                }
                            }
                        }
                        div.who {
                            span.role { "Signed in · " (v.role.as_str()) }
                            @if v.csrf.is_some() {
                                form method="post" action="/logout" {
                                    (csrf_field(v))
                                    button.link type="submit" { "Sign out" }
                                }
                            }
                        }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

fn csrf_field(v: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(v.csrf.as_deref().unwrap_or_default()); }
}

fn page(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// An error as a page, for the browser (the API answers JSON).
pub fn plain_error(status: StatusCode, title: &str, message: &str) -> Response {
    page(
        status,
        layout(
            title,
            None,
            "",
            html! { section.card { h1 { (title) } p { (message) } p { a href="/" { "Back to the console" } } } },
        ),
    )
}

fn forbidden() -> Response {
    plain_error(
        StatusCode::FORBIDDEN,
        "Read-only",
        "this session's token can read everything and change nothing; sign in with the admin token to do this",
    )
}

/// A POST must come from a session that may change things, with its own CSRF token.
fn may_change(v: &Viewer, csrf: &str) -> Result<(), Box<Response>> {
    if !v.csrf_ok(csrf) {
        return Err(Box::new(plain_error(
            StatusCode::FORBIDDEN,
            "Refused",
            "the form did not carry this session's CSRF token; reload the page and try again",
        )));
    }
    if v.role != Role::Admin {
        return Err(Box::new(forbidden()));
    }
    Ok(())
}

/// A time the browser shows in the viewer's own zone (console.js); the UTC text stands
/// until it runs.
fn when(t: Option<&str>) -> Markup {
    match t {
        Some(t) => html! { time datetime=(t) { (t) } },
        None => html! { span.muted { "—" } },
    }
}

/// Minor units as major, grouped, with the currency: `12,345.60 USD`.
pub(super) fn money(minor: i64, currency: &str) -> String {
    let exp = crate::engine::mapping::currency_exponent(currency);
    let text = crate::engine::mapping::format_decimal(minor.abs(), exp);
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let grouped = thousands(int.parse().unwrap_or(0));
    let sign = if minor < 0 { "−" } else { "" };
    if frac.is_empty() {
        format!("{sign}{grouped} {currency}")
    } else {
        format!("{sign}{grouped}.{frac} {currency}")
    }
}

/// What the last action said, carried in the redirect's query (`?note=` or `?error=`).
#[derive(serde::Deserialize, Default)]
pub struct Flash {
    note: Option<String>,
    error: Option<String>,
}

fn note(f: &Flash) -> Markup {
    html! {
        @if let Some(n) = &f.note { p.flash role="status" { (n) } }
        @if let Some(e) = &f.error { p.flash.error role="alert" { (e) } }
    }
}

fn back_with(to: &str, key: &str, message: &str) -> Response {
    let sep = if to.contains('?') { '&' } else { '?' };
    let m: String = url::form_urlencoded::byte_serialize(message.as_bytes()).collect();
    Redirect::to(&format!("{to}{sep}{key}={m}")).into_response()
}

/// Only a path on this site may be a redirect target (no `//host`, no scheme).
fn local(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/".to_owned(),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        plain_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error",
            &e.to_string(),
        )
    })
}

fn store_error(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console: store read failed");
    plain_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Store error",
        "the store could not be read; the daemon's log says why",
    )
}

// ---------------------------------------------------------------- sign in and out

#[derive(serde::Deserialize, Default)]
pub struct LoginQuery {
    next: Option<String>,
}

fn login_form(next: &str, error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        "",
        html! {
            section.card.narrow {
                h1 { "Sign in to revsync" }
                @if let Some(e) = error { p.flash.error role="alert" { (e) } }
                form method="post" action="/login" {
                    input type="hidden" name="next" value=(next);
                    label for="token" { "Token" }
                    input #token type="password" name="token" autocomplete="current-password" required autofocus;
                    p.hint { "The admin token (server.admin_token, or the file admin_token in the data directory), or server.read_only_token to look without changing anything." }
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

pub async fn login_page(Query(q): Query<LoginQuery>) -> Response {
    page(StatusCode::OK, login_form(&local(q.next.as_deref()), None))
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

fn session_cookie(state: &AppState, id: &str, max_age: Option<i64>) -> String {
    let mut c = cookie::Cookie::build((COOKIE, id.to_owned()))
        .path("/")
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .secure(
            state
                .public_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://")),
        );
    if let Some(s) = max_age {
        c = c.max_age(cookie::time::Duration::seconds(s));
    }
    c.build().to_string()
}

fn signed_in(state: &AppState, role: Role, to: &str) -> Response {
    let (id, _) = state.console.open(role);
    let ttl = i64::try_from(super::session::SESSION_TTL.as_secs()).unwrap_or(i64::MAX);
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, session_cookie(state, &id, Some(ttl))),
            (header::LOCATION, to.to_owned()),
        ],
    )
        .into_response()
}

pub async fn login(State(state): State<Arc<AppState>>, Form(f): Form<LoginForm>) -> Response {
    let next = local(f.next.as_deref());
    match state
        .auth
        .role(state.read_only_token.as_ref(), f.token.trim())
    {
        Some(role) => {
            tracing::info!(role = role.as_str(), "console: signed in");
            signed_in(&state, role, &next)
        }
        None => {
            // A guess costs a second: tokens are 256 bits, and the log shows the attempts.
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            tracing::warn!("console: a sign-in with a wrong token");
            page(
                StatusCode::UNAUTHORIZED,
                login_form(
                    &next,
                    Some("That token is not the admin or the read-only token."),
                ),
            )
        }
    }
}

/// `GET /login/once/{secret}`: the demo's (and `POST /admin/console/link`'s) one-time link.
pub async fn login_once(
    State(state): State<Arc<AppState>>,
    Path(secret): Path<String>,
) -> Response {
    match state.console.redeem(&secret) {
        Some(role) => signed_in(&state, role, "/"),
        None => page(
            StatusCode::UNAUTHORIZED,
            login_form(
                "/",
                Some("That sign-in link was used already or has expired; sign in with the token."),
            ),
        ),
    }
}

#[derive(serde::Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(state): State<Arc<AppState>>,
    Extension(v): Extension<Viewer>,
    headers: axum::http::HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !v.csrf_ok(&f.csrf) {
        return plain_error(
            StatusCode::FORBIDDEN,
            "Refused",
            "the form did not carry this session's CSRF token",
        );
    }
    if let Some(id) = super::session_cookie(&headers) {
        state.console.close(&id);
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, session_cookie(&state, "", Some(0))),
            (header::LOCATION, "/login".to_owned()),
        ],
    )
        .into_response()
}

// ---------------------------------------------------------------- overview

fn state_class(s: ConnectorState) -> &'static str {
    match s {
        ConnectorState::Idle | ConnectorState::Running => "ok",
        ConnectorState::Starting
        | ConnectorState::BackingOff
        | ConnectorState::QuotaReserveReached => "warn",
        ConnectorState::Paused | ConnectorState::Disabled | ConnectorState::Stopped => "muted",
        ConnectorState::AuthFailed => "bad",
    }
}

fn connectors_table(state: &AppState, v: &Viewer) -> Markup {
    let all: Vec<ConnectorStatus> = state.status.snapshot();
    html! {
        @if all.is_empty() {
            p.empty { "No connector is configured. Add one YAML file per system under connectors/ (see config/examples), then run " code { "revsync check" } "." }
        } @else {
            div.scroll {
                table.connectors {
                    caption { "Connectors" }
                    thead { tr {
                        th scope="col" { "Connector" } th scope="col" { "State" } th scope="col" { "Last poll" }
                        th scope="col" class="num" { "Lag" } th scope="col" class="num" { "Records in" }
                        th scope="col" class="num" { "Records out" } th scope="col" class="num" { "Outbox" }
                        th scope="col" class="num" { "429s" } th scope="col" class="num" { "Dead letters" }
                        th scope="col" class="num" { "API requests" } th scope="col" { "" }
                    } }
                    tbody {
                        @for c in &all {
                            @let paused = state.runtime.is_paused(&c.id);
                            tr data-connector=(c.id) {
                                th scope="row" { (c.id) br; span.muted { (c.type_name) } }
                                td { span class={"badge " (state_class(c.state))} { (c.state.as_str()) }
                                    @if let Some(n) = &c.note { br; span.muted.small { (n) } } }
                                td { (when(c.last_poll_at.map(|t| t.to_rfc3339()).as_deref())) }
                                td.num { @match c.lag_secs { Some(s) => (format!("{s} s")), None => "—" } }
                                td.num data-field="records_in" { (thousands(c.records_in)) }
                                td.num data-field="records_out" { (thousands(c.records_out)) }
                                td.num { (thousands(c.outbox_depth)) }
                                td.num { (thousands(c.rate_limit.as_ref().map_or(0, |r| r.throttled))) }
                                td.num { @let d = c.dead_letters + c.inbound_dead_letters;
                                    @if d > 0 { a href={"/console/dlq?connector=" (c.id)} { (thousands(d)) } } @else { "0" } }
                                td.num {
                                    (thousands(c.api_requests_last_minute)) " /min"
                                    @if let Some(r) = &c.rate_limit { br; span.muted.small { "budget " (r.requests) " per " (r.per_secs) " s" } }
                                    @if let Some(q) = &c.api_quota { br; span.muted.small { (thousands(q.remaining)) " left of " (thousands(q.limit)) " per " (q.window) } }
                                }
                                td {
                                    @if v.role == Role::Admin {
                                        @if paused {
                                            form method="post" action={"/console/connectors/" (c.id) "/resume"} {
                                                (csrf_field(v)) button type="submit" { "Resume" }
                                            }
                                        } @else {
                                            form method="post" action={"/console/connectors/" (c.id) "/pause"} data-confirm={"Pause " (c.id) "? It stops polling and pushing until resumed."} {
                                                (csrf_field(v)) button.secondary type="submit" { "Pause" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub async fn overview(
    State(state): State<Arc<AppState>>,
    Extension(v): Extension<Viewer>,
    Query(q): Query<Flash>,
) -> Response {
    let stats = state.store_stats();
    let warnings = state.warnings();
    let body = html! {
        h1 { "Overview" }
        (note(&q))
        @for w in warnings { p.flash.error role="alert" { (w) } }
        section #connectors data-refresh="/console/fragments/connectors" data-every="2000" aria-live="polite" {
            (connectors_table(&state, &v))
        }
        section.card {
            h2 { "Store" }
            dl.facts {
                dt { "Backend" } dd { (stats.backend) }
                dt { "Size on disk" } dd { (thousands(stats.size_on_disk_bytes / 1024)) " KiB" }
                dt { "Version" } dd { (env!("CARGO_PKG_VERSION")) }
                dt { "Up for" } dd { (thousands(state.started.elapsed().as_secs())) " s" }
            }
        }
    };
    page(
        StatusCode::OK,
        layout("Overview", Some(&v), "Overview", body),
    )
}

pub async fn connectors_fragment(
    State(state): State<Arc<AppState>>,
    Extension(v): Extension<Viewer>,
) -> Response {
    page(StatusCode::OK, connectors_table(&state, &v))
}

async fn set_paused(
    state: Arc<AppState>,
    v: Viewer,
    id: String,
    csrf: String,
    paused: bool,
) -> Response {
    if let Err(r) = may_change(&v, &csrf) {
        return *r;
    }
    let rt = state.runtime.clone();
    let c = id.clone();
    match blocking(move || rt.set_paused(&c, paused)).await {
        Ok(Ok(_)) => back_with(
            "/",
            "note",
            &format!("{id} {}", if paused { "paused" } else { "resumed" }),
        ),
        Ok(Err(e)) => back_with("/", "error", &e),
        Err(r) => r,
    }
}

pub async fn pause(
    State(state): State<Arc<AppState>>,
    Extension(v): Extension<Viewer>,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    set_paused(state, v, id, f.csrf, true).await
}

pub async fn resume(
    State(state): State<Arc<AppState>>,
    Extension(v): Extension<Viewer>,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    set_paused(state, v, id, f.csrf, false).await
}

// ---------------------------------------------------------------- records

#[derive(serde::Deserialize, Default)]
pub struct SearchQuery {
    q: Option<String>,
}

/// A record's one-line name for lists.
fn label_of(r: &revsync_sdk::Record) -> String {
    let name = || {
        let first = r.value("first_name").and_then(Value::as_text).unwrap_or("");
        let last = r.value("last_name").and_then(Value::as_text).unwrap_or("");
        let full = format!("{first} {last}").trim().to_owned();
        (!full.is_empty()).then_some(full)
    };
    match (name(), crate::engine::view::label(r)) {
        (Some(n), Some(l)) if n != l => format!("{n} <{l}>"),
        (Some(n), _) => n,
        (None, Some(l)) => l,
        (None, None) => r.id.to_string(),
    }
}

/// Records whose name, email, domain or subject contains `needle` (case-insensitive),
/// reading at most [`SCAN_LIMIT`] records after `after`: (matches, last id read, whether
/// the walk stopped before the end).
fn scan(
    store: &dyn crate::store::Store,
    kind: Option<Kind>,
    needle: &str,
    after: Option<Uuid>,
    want: usize,
) -> Result<(Vec<revsync_sdk::Record>, Option<Uuid>, bool), String> {
    use crate::engine::codec;
    let needle = needle.to_lowercase();
    let mut found = Vec::new();
    let mut read = 0usize;
    let mut last = after;
    let start = after.map(codec::record_key);
    let mut cursor = start;
    loop {
        let page = store
            .scan(crate::store::Table::Records, &[], cursor.as_deref(), 256)
            .map_err(|e| e.to_string())?;
        let end = page.len() < 256;
        for (k, bytes) in &page {
            read += 1;
            cursor = Some(k.clone());
            if let Ok(id) = crate::engine::uuid_from(k) {
                last = Some(id);
            }
            if kind.is_some_and(|want| codec::decode_record_kind(bytes).ok() != Some(want)) {
                continue;
            }
            let Ok(rec) = codec::decode_record(bytes) else {
                continue;
            };
            if rec.merged_into.is_some() {
                continue;
            }
            let hit = needle.is_empty()
                || label_of(&rec).to_lowercase().contains(&needle)
                || ["name", "subject", "title"].iter().any(|f| {
                    rec.value(f)
                        .and_then(Value::as_text)
                        .is_some_and(|t| t.to_lowercase().contains(&needle))
                });
            if hit {
                found.push(rec);
                if found.len() >= want {
                    return Ok((found, last, true));
                }
            }
            if read >= SCAN_LIMIT {
                return Ok((found, last, true));
            }
        }
        if end {
            return Ok((found, last, false));
        }
    }
}

pub async fn records(
    State(state): State<Arc<AppState>>,
    Extension(v): Extension<Viewer>,
    Query(q): Query<SearchQuery>,
) -> Response {
    let query = q.q.unwrap_or_default().trim().to_owned();
    let mut results = Vec::new();
    let mut more = false;
    if !query.is_empty() {
        let (engine, store, text) = (state.engine.clone(), state.store.clone(), query.clone());
        let found = blocking(move || -> Result<_, String> {
            if let Some(r) = engine.find(&text).map_err(|e| e.to_string())? {
                return Ok(Err(r.id));
            }
            scan(store.as_ref(), None, &text, None, GRID_ROWS).map(Ok)
        })
        .await;
        match found {
            Err(r) => return r,
            Ok(Err(e)) => return store_error(e),
            Ok(Ok(Err(id))) => {
                return Redirect::to(&format!("/console/records/{id}")).into_response()
            }
            Ok(Ok(Ok((r, _, m)))) => {
                results = r;
                more = m;
            }
        }
    }
    let body = html! {
        h1 { "Records" }
        form.search role="search" method="get" action="/console/records" {
            label for="q" { "Find a customer" }
            input #q type="search" name="q" value=(query) placeholder="email, domain, name or a system's id (hubspot:contacts:123)" autofocus;
            button type="submit" { "Search" }
        }
        @if query.is_empty() {
            p.empty { "Type an email, a company domain, a name, a canonical id or a system's id. The grid lists records of one kind to edit them." }
        } @else if results.is_empty() {
            p.empty { "No record matches “" (query) "”. An email or domain finds its record exactly; a name is searched among the first " (thousands(SCAN_LIMIT as u64)) " records." }
        } @else {
            ul.results {
                @for r in &results {
                    li { a href={"/console/records/" (r.id)} { (label_of(r)) } " " span.badge.muted { (r.kind.as_str()) }
                        " " span.muted.small { (r.links.len()) " systems" } }
                }
            }
            @if more { p.muted { "More may match: refine the search." } }
        }
    };
    page(StatusCode::OK, layout("Records", Some(&v), "Records", body))
}

fn value_text(v: &Json) -> String {
    match v {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        Json::Object(o) if o.contains_key("amount_minor") => {
            let minor = o.get("amount_minor").and_then(Json::as_i64).unwrap_or(0);
            let cur = o.get("currency").and_then(Json::as_str).unwrap_or("");
            money(minor, cur)
        }
        other => other.to_string(),
    }
}

/// Fields the grid and the record page let an operator edit: text and fixed-choice
/// fields of people, companies, deals and tickets that are not identity keys (an email
/// or domain is changed in its system). Billing records are the billing system's facts
/// (MODEL.md) and the KPIs' history: they are changed in Stripe, never here.
fn editable(kind: Kind) -> Vec<(&'static str, FieldType)> {
    if !matches!(
        kind,
        Kind::Person | Kind::Organization | Kind::Deal | Kind::Ticket
    ) {
        return Vec::new();
    }
    kind.fields()
        .iter()
        .filter(|d| matches!(d.ty, FieldType::Text | FieldType::Enum(_)))
        .filter(|d| {
            !matches!(
                d.name,
                "phone_raw" | "owner" | "mrr" | "currency" | "number"
            )
        })
        .map(|d| (d.name, d.ty))
        .collect()
}

fn edit_input(name: &str, ty: FieldType, current: &str, form: Option<&str>) -> Markup {
    html! {
        @match ty {
            FieldType::Enum(choices) => {
                select name=(name) form=[form] aria-label=(name) {
                    option value="" selected[current.is_empty()] { "—" }
                    @for c in choices { option value=(c) selected[*c == current] { (c) } }
                }
            }
            _ => { input type="text" name=(name) value=(current) form=[form] aria-label=(name); }
        }
    }
}

pub async fn record(
    State(state): State<Arc<AppState>>,
    Extension(v): Extension<Viewer>,
    Path(id): Path<String>,
    Query(q): Query<Flash>,
) -> Response {
    let engine = state.engine.clone();
    let key = id.clone();
    let view: Json = match blocking(move || crate::engine::lookup_view(&engine, &key, 50)).await {
        Err(r) => return r,
        Ok(Err(e)) => return store_error(e),
        Ok(Ok(None)) => {
            return plain_error(
                StatusCode::NOT_FOUND,
                "No such record",
                "no record has that id; search for it on the Records page",
            )
        }
        Ok(Ok(Some(view))) => view,
    };
    let kind: Option<Kind> = view["kind"].as_str().and_then(|k| k.parse().ok());
    let rid = view["id"].as_str().unwrap_or_default().to_owned();
    let fields = view["fields"].as_object().cloned().unwrap_or_default();
    let title = fields
        .get("email")
        .or_else(|| fields.get("name"))
        .or_else(|| fields.get("domain"))
        .or_else(|| fields.get("subject"))
        .map(|f| value_text(&f["value"]))
        .unwrap_or_else(|| rid.clone());
    let edits = kind.map(editable).unwrap_or_default();
    let body = html! {
        p.crumbs { a href="/console/records" { "Records" } " / " (kind.map_or("record", Kind::as_str)) }
        h1 { (title) }
        (note(&q))
        @if let Some(m) = view["merged_into"].as_str() {
            p.flash { "This record was merged into " a href={"/console/records/" (m)} { (m) } "." }
        }
        dl.facts {
            dt { "Canonical id" } dd { code { (rid) } }
            dt { "Kind" } dd { (kind.map_or("?", Kind::as_str)) }
            dt { "Version" } dd { (view["version"]) }
            dt { "Created" } dd { (when(view["created_at"].as_str())) }
            dt { "Updated" } dd { (when(view["updated_at"].as_str())) }
        }
        section.card {
            h2 { "Fields" }
            div.scroll { table {
                thead { tr { th scope="col" { "Field" } th scope="col" { "Value" } th scope="col" { "Source" } th scope="col" { "Changed there" } } }
                tbody {
                    @for (name, e) in &fields {
                        tr data-field=(name) {
                            th scope="row" { (name) }
                            td.value {
                                @if let Some(target) = e["value"]["ref"].as_str() {
                                    a href={"/console/records/" (target)} { (view["relations"][name.as_str()]["name"].as_str().unwrap_or(target)) }
                                } @else { (value_text(&e["value"])) }
                            }
                            td { span.badge.muted { (e["source"].as_str().unwrap_or("?")) } }
                            td { (when(e["source_time"].as_str())) }
                        }
                    }
                }
            } }
        }
        section.card {
            h2 { "In each system" }
            @let links = view["links"].as_array().cloned().unwrap_or_default();
            @if links.is_empty() { p.empty { "No system holds a copy yet: the next push creates one where the mappings say so." } }
            @else {
                ul.links { @for l in &links {
                    @let (c, o, x) = (l["connector"].as_str().unwrap_or("?"), l["object"].as_str().unwrap_or("?"), l["external_id"].as_str().unwrap_or("?"));
                    li { strong { (c) } " " (o) " "
                        @match state.runtime.connectors.get(c).and_then(|conn| conn.record_url(o, x)) {
                            Some(url) => { a href=(url) target="_blank" rel="noopener noreferrer" { code { (x) } } }
                            None => { code { (x) } }
                        }
                        " " span.muted.small { "last changed " (when(l["source_time"].as_str())) }
                        @if v.role == Role::Admin && links.len() > 1 {
                            form.inline method="post" action={"/console/records/" (rid) "/unmerge"} data-confirm="Split this copy off into a record of its own, in every system?" {
                                (csrf_field(&v))
                                input type="hidden" name="source" value=(format!("{c}:{o}:{x}"));
                                button.secondary type="submit" { "Split off" }
                            }
                        }
                    }
                } }
            }
            @if let Some(q) = view["quality"].as_array().filter(|q| !q.is_empty()) {
                h3 { "Data quality" }
                ul { @for f in q {
                    li { (f["field"].as_str().unwrap_or("?")) ": " (f["description"].as_str().unwrap_or("?")) " " span.muted.small { "(from " (f["source"].as_str().unwrap_or("?")) ")" } }
                } }
            }
            @if let Some(rel) = view["relations"].as_object().filter(|r| !r.is_empty()) {
                h3 { "Relations" }
                ul { @for (name, r) in rel {
                    li { (name) ": "
                        @if let Some(target) = r["id"].as_str() { a href={"/console/records/" (target)} { (r["name"].as_str().unwrap_or(target)) } }
                        @else { span.muted { (r["unresolved"].as_str().unwrap_or("?")) " (not read yet)" } }
                    }
                } }
            }
        }
        @if !edits.is_empty() && v.role == Role::Admin {
            section.card {
                h2 { "Edit" }
                p.hint { "Saved as a change from the console: the same merge rules decide, and every system holding a copy is updated." }
                form.edit method="post" action={"/console/records/" (rid) "/edit"} {
                    (csrf_field(&v))
                    input type="hidden" name="back" value={"/console/records/" (rid)};
                    @for (name, ty) in &edits {
                        @let current = fields.get(*name).map(|e| value_text(&e["value"])).unwrap_or_default();
                        label { span { (name) } (edit_input(name, *ty, &current, None)) }
                    }
                    button type="submit" { "Save" }
                }
            }
        }
        section.card {
            h2 { "Audit" }
            @let audit = view["audit"].as_array().cloned().unwrap_or_default();
            @if audit.is_empty() { p.empty { "No conflict, merge or invalid value recorded for this record." } }
            @else {
                div.scroll { table {
                    thead { tr { th scope="col" { "When" } th scope="col" { "What" } th scope="col" { "Detail" } } }
                    tbody { @for a in &audit { tr {
                        td { (when(a["at"].as_str())) }
                        td { (a["event"].as_str().unwrap_or("?")) }
                        td { (audit_detail(a)) }
                    } } }
                } }
            }
        }
    };
    page(StatusCode::OK, layout(&title, Some(&v), "Records", body))
}

fn audit_detail(a: &Json) -> Markup {
    let src = |e: &Json| {
        format!(
            "{} from {}",
            value_text(&e["value"]),
            e["source"].as_str().unwrap_or("?")
        )
    };
    html! {
        @match a["event"].as_str() {
            Some("overwritten") => { (a["field"].as_str().unwrap_or("?")) ": " (src(&a["new"])) " won over " (src(&a["old"])) " (" (a["reason"].as_str().unwrap_or("")) ")" }
            Some("rejected") => { (a["field"].as_str().unwrap_or("?")) ": kept the current value over " (src(&a["value"])) " (" (a["reason"].as_str().unwrap_or("")) ")" }
            Some("merged") => { "absorbed " (a["absorbed"]) " on " (a["evidence"].as_str().unwrap_or("")) }
            Some("invalid_value") => { (a["connector"].as_str().unwrap_or("?")) ": " (a["problem"].as_str().unwrap_or("")) }
            Some("matched") => { (a["connector"].as_str().unwrap_or("?")) ":" (a["object"].as_str().unwrap_or("?")) ":" (a["external_id"].as_str().unwrap_or("?")) " joined on its score: " (a["evidence"].as_str().unwrap_or("")) }
            Some("unmerged") => { (a["split"].as_str().unwrap_or("?")) " split off " (a["survivor"].as_str().unwrap_or("?")) @if let Some(l) = a["link"].as_str() { " with its copy " (l) } " by " (a["by"].as_str().unwrap_or("?")) }
            _ => { (a.to_string()) }
        }
    }
}

#[derive(serde::Deserialize)]
pub struct UnmergeForm {
    #[serde(default)]
    csrf: String,
    source: String,
}

/// `POST /console/records/{id}/unmerge`: split one copy off the record (`records
/// unmerge --source`), then show the record it became.
pub async fn unmerge(
    State(state): State<Arc<AppState>>,
    Extension(v): Extension<Viewer>,
    Path(id): Path<String>,
    Form(f): Form<UnmergeForm>,
) -> Response {
    if let Err(r) = may_change(&v, &f.csrf) {
        return *r;
    }
    let back = format!("/console/records/{id}");
    let Ok(uuid) = id.parse::<Uuid>() else {
        return back_with("/console/records", "error", "not a record id");
    };
    let engine = state.engine.clone();
    let source = f.source.clone();
    let done = blocking(move || engine.unmerge(uuid, Some(&source), "the console")).await;
    match done {
        Err(r) => r,
        Ok(Ok(crate::engine::Unmerged::Done { split, .. })) => {
            tracing::info!(record = %uuid, %split, source = %f.source, "console: an operator split a copy off");
            back_with(
                &format!("/console/records/{split}"),
                "note",
                "split off: a record of its own again, pushed to every system and never merged with the other again",
            )
        }
        Ok(Ok(crate::engine::Unmerged::Refused(why))) => back_with(&back, "error", &why),
        Ok(Err(e)) => back_with(&back, "error", &e.to_string()),
    }
}

/// A record's label and what the edit did to each field sent.
type Edited = (String, Vec<(String, crate::engine::EditOutcome)>);

/// `POST /console/records/{id}/edit`: the editable fields as sent, applied through the
/// engine with the console as their source.
pub async fn edit(
    State(state): State<Arc<AppState>>,
    Extension(v): Extension<Viewer>,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if let Err(r) = may_change(&v, get("csrf").unwrap_or_default()) {
        return *r;
    }
    let back = local(get("back"));
    let Ok(uuid) = id.parse::<Uuid>() else {
        return back_with(&back, "error", "not a record id");
    };
    let engine = state.engine.clone();
    let form2 = form.clone();
    let done = blocking(move || -> Result<Option<Edited>, String> {
        let Some(rec) = engine.record(uuid).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let allowed = editable(rec.kind);
        let mut values = BTreeMap::new();
        for (name, raw) in &form2 {
            let Some((field, ty)) = allowed.iter().find(|(f, _)| f == name) else {
                continue;
            };
            let raw = raw.trim();
            if let FieldType::Enum(choices) = ty {
                if !raw.is_empty() && !choices.contains(&raw) {
                    return Err(format!(
                        "{field}: `{raw}` is not one of {}",
                        choices.join(", ")
                    ));
                }
            }
            let value = if raw.is_empty() {
                Value::Null
            } else {
                Value::Text(raw.to_owned())
            };
            // Only what changed: an untouched field keeps its source and time.
            let current = rec.value(field).cloned().unwrap_or(Value::Null);
            if current != value && !(current.is_empty() && value.is_empty()) {
                values.insert((*field).to_owned(), value);
            }
        }
        if values.is_empty() {
            return Ok(Some((label_of(&rec), Vec::new())));
        }
        let outcome = engine
            .edit(uuid, &values, SOURCE)
            .map_err(|e| e.to_string())?;
        Ok(outcome.map(|o| (label_of(&rec), o)))
    })
    .await;
    match done {
        Err(r) => r,
        Ok(Err(e)) => back_with(&back, "error", &e),
        Ok(Ok(None)) => back_with(&back, "error", "no such record"),
        Ok(Ok(Some((who, outcomes)))) => {
            let written: Vec<&str> = outcomes
                .iter()
                .filter(|(_, o)| *o == crate::engine::EditOutcome::Written)
                .map(|(f, _)| f.as_str())
                .collect();
            let kept: Vec<String> = outcomes
                .iter()
                .filter_map(|(f, o)| match o {
                    crate::engine::EditOutcome::Kept(why) => Some(format!("{f} ({why})")),
                    _ => None,
                })
                .collect();
            if !written.is_empty() {
                tracing::info!(record = %uuid, fields = ?written, "console: an operator edited a record");
            }
            let msg = match (written.is_empty(), kept.is_empty()) {
                (true, true) => format!("{who}: nothing changed"),
                (false, true) => format!(
                    "{who}: saved {}; pushing to every system that holds it",
                    written.join(", ")
                ),
                (_, false) => format!(
                    "{who}: saved {}; kept the current value of {}",
                    if written.is_empty() {
                        "nothing".into()
                    } else {
                        written.join(", ")
                    },
                    kept.join(", ")
                ),
            };
            back_with(&back, if kept.is_empty() { "note" } else { "error" }, &msg)
        }
    }
}

// ---------------------------------------------------------------- grid

#[derive(serde::Deserialize, Default)]
pub struct GridQuery {
    kind: Option<String>,
    q: Option<String>,
    after: Option<Uuid>,
    #[serde(flatten)]
    flash: Flash,
}

pub async fn grid(
    State(state): State<Arc<AppState>>,
    Extension(v): Extension<Viewer>,
    Query(q): Query<GridQuery>,
) -> Response {
    let kind = q
        .kind
        .as_deref()
        .and_then(|k| k.parse::<Kind>().ok())
        .unwrap_or(Kind::Person);
    let filter = q.q.clone().unwrap_or_default();
    let (store, needle, after) = (state.store.clone(), filter.clone(), q.after);
    let (rows, last, more) =
        match blocking(move || scan(store.as_ref(), Some(kind), &needle, after, GRID_ROWS)).await {
            Err(r) => return r,
            Ok(Err(e)) => return store_error(e),
            Ok(Ok(found)) => found,
        };
    // A kind with nothing editable (billing records) still shows its main fields.
    let editing = !editable(kind).is_empty();
    let cols: Vec<(&'static str, FieldType)> = if editing {
        editable(kind)
    } else {
        kind.fields()
            .iter()
            .filter(|d| !matches!(d.ty, FieldType::Json | FieldType::TextList))
            .take(8)
            .map(|d| (d.name, d.ty))
            .collect()
    };
    let here = {
        let mut u = format!("/console/grid?kind={}", kind.as_str());
        if !filter.is_empty() {
            u.push_str("&q=");
            u.extend(url::form_urlencoded::byte_serialize(filter.as_bytes()));
        }
        u
    };
    let admin = v.role == Role::Admin && editing;
    let body = html! {
        h1 { "Grid" }
        (note(&q.flash))
        form.search method="get" action="/console/grid" {
            label for="kind" { "Kind" }
            select #kind name="kind" {
                @for k in Kind::ALL { option value=(k.as_str()) selected[k == kind] { (k.as_str()) } }
            }
            label for="gq" { "Filter" }
            input #gq type="search" name="q" value=(filter) placeholder="name, email, domain";
            button type="submit" { "Show" }
        }
        @if rows.is_empty() {
            p.empty { "No " (kind.as_str()) " record" @if !filter.is_empty() { " matches “" (filter) "”" } " yet. Records appear here once a connector has read them." }
        } @else {
            @if admin { p.hint { "Edit a cell and press Save on its row (or Enter): the change goes through the merge rules to every system that holds the record." } }
            @if !editing { p.hint { (kind.as_str()) " records are read-only here: billing facts are changed in the billing system." } }
            div.scroll { table.grid {
                thead { tr {
                    th scope="col" { "Record" }
                    @for (c, _) in &cols { th scope="col" { (c) } }
                    th scope="col" { "Systems" }
                    @if admin { th scope="col" { "" } }
                } }
                tbody {
                    @for r in &rows {
                        @let form_id = format!("row-{}", r.id);
                        tr data-record=(r.id) {
                            th scope="row" { a href={"/console/records/" (r.id)} { (label_of(r)) } }
                            @for (c, ty) in &cols {
                                @let current = r.value(c).map(|x| value_text(&x.to_json())).unwrap_or_default();
                                td data-field=(c) {
                                    @if admin { (edit_input(c, *ty, &current, Some(&form_id))) } @else { (current) }
                                }
                            }
                            td.small { @for l in &r.links { span.badge.muted { (l.connector) } " " } }
                            @if admin {
                                td { form id=(form_id) method="post" action={"/console/records/" (r.id) "/edit"} {
                                    (csrf_field(&v))
                                    input type="hidden" name="back" value=(here);
                                    button type="submit" { "Save" }
                                } }
                            }
                        }
                    }
                }
            } }
            @if more { @if let Some(l) = last { p { a href={(here) "&after=" (l)} { "Next records →" } } } }
        }
    };
    page(StatusCode::OK, layout("Grid", Some(&v), "Grid", body))
}

// ---------------------------------------------------------------- dead letters

#[derive(serde::Deserialize, Default)]
pub struct DlqQuery {
    connector: Option<String>,
    #[serde(flatten)]
    flash: Flash,
}

pub async fn dead_letters(
    State(state): State<Arc<AppState>>,
    Extension(v): Extension<Viewer>,
    Query(q): Query<DlqQuery>,
) -> Response {
    let (engine, c) = (state.engine.clone(), q.connector.clone());
    let listed =
        match blocking(move || crate::engine::view::dead_letters_json(&engine, c.as_deref(), 200))
            .await
        {
            Err(r) => return r,
            Ok(Err(e)) => return store_error(e),
            Ok(Ok(v)) => v,
        };
    let items = listed["dead_letters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let admin = v.role == Role::Admin;
    let body = html! {
        h1 { "Dead letters" }
        (note(&q.flash))
        @if let Some(c) = &q.connector { p { "Showing " strong { (c) } " only · " a href="/console/dlq" { "all connectors" } } }
        @if items.is_empty() {
            p.empty { "No dead letter. Pushes a system refused for good, and records that could not be brought in, appear here with what was sent and answered." }
        } @else {
            @if admin {
                form method="post" action="/console/dlq/replay" data-confirm={"Replay all " (items.len()) " dead letters? Each goes back to its queue and is tried again."} {
                    (csrf_field(&v))
                    input type="hidden" name="all" value="true";
                    @if let Some(c) = &q.connector { input type="hidden" name="connector" value=(c); }
                    button type="submit" { "Replay all (" (items.len()) ")" }
                }
            }
            div.scroll { table.dlq {
                thead { tr { th scope="col" { "Failed" } th scope="col" { "Connector" } th scope="col" { "Direction" } th scope="col" { "What" } th scope="col" { "Why" } th scope="col" { "" } } }
                tbody { @for d in &items {
                    @let dir = d["direction"].as_str().unwrap_or("?");
                    tr {
                        td { (when(d["failed_at"].as_str())) }
                        td { (d["connector"].as_str().unwrap_or("?")) }
                        td { (dir) }
                        td {
                            (d["object"].as_str().unwrap_or("")) " "
                            @if let Some(r) = d["record"].as_str() { a href={"/console/records/" (r)} { "record" } }
                            @if let Some(x) = d["external_id"].as_str() { code { (x) } }
                        }
                        td {
                            (d["detail"].as_str().or(d["error"].as_str()).unwrap_or(""))
                            @if let Some(s) = d["status"].as_u64() { " (HTTP " (s) ")" }
                            details { summary { "Request and answer" }
                                @if dir == "outbound" {
                                    h4 { "Sent" } pre { (pretty(&d["request"])) }
                                    h4 { "Answered" } pre { (pretty(&d["response"])) }
                                } @else { h4 { "Received" } pre { (pretty(&d["raw"])) } }
                            }
                        }
                        td { @if admin {
                            form method="post" action="/console/dlq/replay" data-confirm="Replay this dead letter?" {
                                (csrf_field(&v))
                                @if dir == "outbound" {
                                    input type="hidden" name="connector" value=(d["connector"].as_str().unwrap_or(""));
                                    input type="hidden" name="seq" value=(d["seq"]);
                                } @else {
                                    input type="hidden" name="inbound" value=(d["id"].as_str().unwrap_or(""));
                                }
                                button.secondary type="submit" { "Replay" }
                            }
                        } }
                    }
                } }
            } }
        }
    };
    page(
        StatusCode::OK,
        layout("Dead letters", Some(&v), "Dead letters", body),
    )
}

fn pretty(v: &Json) -> String {
    match v {
        Json::Null => "—".into(),
        Json::String(s) => serde_json::from_str::<Json>(s)
            .ok()
            .and_then(|j| serde_json::to_string_pretty(&j).ok())
            .unwrap_or_else(|| s.clone()),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

#[derive(serde::Deserialize)]
pub struct ReplayForm {
    #[serde(default)]
    csrf: String,
    connector: Option<String>,
    seq: Option<u64>,
    #[serde(default)]
    all: bool,
    inbound: Option<String>,
}

pub async fn replay(
    State(state): State<Arc<AppState>>,
    Extension(v): Extension<Viewer>,
    Form(f): Form<ReplayForm>,
) -> Response {
    if let Err(r) = may_change(&v, &f.csrf) {
        return *r;
    }
    if let Some(id) = &f.inbound {
        return match state.runtime.replay_inbound(id).await {
            Ok(true) => back_with("/console/dlq", "note", "replayed 1 dead letter"),
            Ok(false) => back_with(
                "/console/dlq",
                "error",
                "no such dead letter (replayed already?)",
            ),
            Err(e) => back_with("/console/dlq", "error", &e),
        };
    }
    let engine = state.engine.clone();
    let done = blocking(move || match (f.all, f.connector, f.seq) {
        (false, Some(c), Some(seq)) => engine.replay_dead_letter(&c, seq).map(usize::from),
        (true, c, None) => engine.replay_dead_letters(c.as_deref()),
        _ => Ok(0),
    })
    .await;
    match done {
        Err(r) => r,
        Ok(Ok(n)) => {
            tracing::info!(replayed = n, "console: an operator replayed dead letters");
            back_with(
                "/console/dlq",
                "note",
                &format!("replayed {n} dead letter{}", if n == 1 { "" } else { "s" }),
            )
        }
        Ok(Err(e)) => back_with("/console/dlq", "error", &e.to_string()),
    }
}

// ---------------------------------------------------------------- duplicates

/// One side of a review pair: its name or email, and what holds a copy of it.
fn pair_side(r: Option<&revsync_sdk::Record>, id: uuid::Uuid) -> Markup {
    html! {
        @match r {
            Some(r) => {
                a href={"/console/records/" (r.id)} { (label_of(r)) }
                br;
                small { @for l in &r.links { (l.connector) " " (l.object) " " code { (l.external_id) } " " } }
            }
            None => { code { (id) } " (gone)" }
        }
    }
}

pub async fn dupes(
    State(state): State<Arc<AppState>>,
    Extension(v): Extension<Viewer>,
    Query(flash): Query<Flash>,
) -> Response {
    let engine = state.engine.clone();
    type Side = Option<revsync_sdk::Record>;
    let listed = blocking(
        move || -> Result<Vec<(crate::engine::Review, Side, Side)>, crate::engine::EngineError> {
            engine
                .reviews(200)?
                .into_iter()
                .map(|r| {
                    let (a, b) = (engine.record(r.a)?, engine.record(r.b)?);
                    Ok((r, a, b))
                })
                .collect()
        },
    )
    .await;
    let pairs = match listed {
        Err(r) => return r,
        Ok(Err(e)) => return store_error(e),
        Ok(Ok(p)) => p,
    };
    let admin = v.role == Role::Admin;
    let body = html! {
        h1 { "Duplicates" }
        (note(&flash))
        p { "Pairs the scored identity model found likely but not sure: accept merges them (the older record survives) and pushes the result to every system; reject keeps them apart for good." }
        @if pairs.is_empty() {
            p.empty { "No pair waits for review." }
        } @else {
            div.scroll { table.dupes {
                thead { tr { th scope="col" { "Match" } th scope="col" { "One" } th scope="col" { "Other" } th scope="col" { "Why" } th scope="col" { "" } } }
                tbody { @for (r, a, b) in &pairs {
                    tr {
                        td { (format!("{:.1} %", r.pair.probability * 100.0)) br; small { (r.pair.kind.as_str()) } }
                        td { (pair_side(a.as_ref(), r.a)) }
                        td { (pair_side(b.as_ref(), r.b)) }
                        td {
                            (r.pair.reason)
                            details { summary { "Comparisons" }
                                ul { @for (field, level, w) in &r.pair.levels { li { (field) ": " (level) " (" (format!("{w:+.1}")) ")" } } }
                            }
                        }
                        td { @if admin {
                            form method="post" action="/console/dupes/decide" data-confirm="Merge these two records in every system?" {
                                (csrf_field(&v))
                                input type="hidden" name="id" value=(r.id());
                                input type="hidden" name="accept" value="true";
                                button type="submit" { "Accept" }
                            }
                            form method="post" action="/console/dupes/decide" {
                                (csrf_field(&v))
                                input type="hidden" name="id" value=(r.id());
                                input type="hidden" name="accept" value="false";
                                button.secondary type="submit" { "Reject" }
                            }
                        } }
                    }
                } }
            } }
        }
    };
    page(
        StatusCode::OK,
        layout("Duplicates", Some(&v), "Duplicates", body),
    )
}

/// `/console/quality`: the data quality report (`revsync quality`): each problem with
/// its count per system and examples that link to their records.
pub async fn quality(
    State(state): State<Arc<AppState>>,
    Extension(v): Extension<Viewer>,
) -> Response {
    let engine = state.engine.clone();
    let report = match blocking(move || engine.quality(None)).await {
        Err(r) => return r,
        Ok(Err(e)) => return store_error(e),
        Ok(Ok(r)) => r,
    };
    let n = |m: &std::collections::BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    let body = html! {
        h1 { "Data quality" }
        p { (thousands(n(&report.scanned, "person"))) " persons and " (thousands(n(&report.scanned, "organization"))) " companies read; "
            (thousands(n(&report.with_problems, "person"))) " persons and " (thousands(n(&report.with_problems, "organization"))) " companies have a problem. "
            "Each problem is counted against the system its value came from. Names typed in ALL CAPS or all lower case are fixed as they come in; the rest is for the systems' owners to correct." }
        @if report.problems.is_empty() {
            p.empty { "No problem found." }
        } @else {
            div.scroll { table {
                thead { tr { th scope="col" { "Problem" } th scope="col" { "Records" } th scope="col" { "By system" } th scope="col" { "Examples" } } }
                tbody { @for p in &report.problems { tr {
                    td { (p.kind.as_str()) "." (p.field) ": " (p.description) }
                    td.num { (thousands(p.total)) }
                    td { @for (src, c) in &p.by_source { (src) " " (thousands(*c)) br; } }
                    td { @for e in &p.examples {
                        a href={"/console/records/" (e.record)} { (value_text(&e.value)) } " " span.muted.small { "(" (e.source) ")" } br;
                    } }
                } } }
            } }
        }
    };
    page(
        StatusCode::OK,
        layout("Data quality", Some(&v), "Quality", body),
    )
}

/// A time of the store (microseconds, UTC) as a person reads it.
fn time_text(us: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// The first 8 characters of a canonical id, as a link text.
fn short_id(id: uuid::Uuid) -> String {
    id.simple().to_string().chars().take(8).collect()
}

/// `/console/workflows`: each rule with its trigger and counts since start, then the
/// newest runs with what they did, each linking to its record (`revsync workflows`).
pub async fn workflows(
    State(state): State<Arc<AppState>>,
    Extension(v): Extension<Viewer>,
) -> Response {
    let runner = state.workflows.clone();
    let store = state.store.clone();
    let runs =
        match blocking(move || crate::workflows::runner::runs(store.as_ref(), None, 50)).await {
            Err(r) => return r,
            Ok(Err(e)) => return store_error(e),
            Ok(Ok(r)) => r,
        };
    let rules = runner
        .as_ref()
        .map(|r| r.rules().0.clone())
        .unwrap_or_default();
    let body = html! {
        h1 { "Workflows" }
        @if rules.is_empty() {
            p.empty { "No workflow rules. Rules go in the configuration's workflows/ directory (docs/workflows.md)." }
        } @else {
            div.scroll { table {
                thead { tr { th scope="col" { "Rule" } th scope="col" { "When" } th scope="col" { "Does" } th scope="col" { "Runs" } th scope="col" { "Failed" } } }
                tbody { @for r in &rules {
                    @let c = runner.as_ref().map(|x| x.stats(&r.name)).unwrap_or_default();
                    tr {
                        td { strong { (r.name) } @if !r.description.is_empty() { br; span.muted.small { (r.description) } } }
                        td { (r.trigger.describe())
                            @if let Some(a) = r.after { ", " (a.as_secs()) " s after" }
                            @if let Some(w) = &r.when { br; code { (w) } } }
                        td { @for a in &r.actions { (a.name()) " " } }
                        td.num { (thousands(c.runs)) @if c.scheduled > 0 { " (" (thousands(c.scheduled)) " scheduled)" } }
                        td.num { (thousands(c.failures)) }
                    }
                } }
            } }
            p.muted.small { "Counts since the daemon started." }
        }
        h2 { "Latest runs" }
        @if runs.is_empty() {
            p.empty { "No runs yet." }
        } @else {
            div.scroll { table {
                thead { tr { th scope="col" { "When" } th scope="col" { "Rule" } th scope="col" { "Record" } th scope="col" { "Status" } th scope="col" { "What it did" } } }
                tbody { @for run in &runs { tr {
                    td { (time_text(run.at)) }
                    td { (run.rule) }
                    td { a href={"/console/records/" (run.record)} { (short_id(run.record)) } }
                    td { (run.status.as_str()) }
                    td {
                        @for a in &run.actions { (a) br; }
                        @for o in &run.outcomes { "→ " a href={"/console/records/" (o.record())} { (short_id(o.record())) } br; }
                        @if let Some(e) = &run.error { span.failed { (e) } }
                    }
                } } }
            } }
        }
    };
    page(
        StatusCode::OK,
        layout("Workflows", Some(&v), "Workflows", body),
    )
}

#[derive(serde::Deserialize)]
pub struct DecideForm {
    #[serde(default)]
    csrf: String,
    id: String,
    accept: bool,
}

pub async fn decide(
    State(state): State<Arc<AppState>>,
    Extension(v): Extension<Viewer>,
    Form(f): Form<DecideForm>,
) -> Response {
    if let Err(r) = may_change(&v, &f.csrf) {
        return *r;
    }
    let Some((a, b)) = crate::engine::view::parse_review_id(&f.id) else {
        return back_with("/console/dupes", "error", "not a pair id");
    };
    let engine = state.engine.clone();
    let accept = f.accept;
    let done = blocking(move || {
        if accept {
            engine
                .accept_review(a, b, "the console")
                .map(|s| s.is_some())
        } else {
            engine.reject_review(a, b)
        }
    })
    .await;
    match done {
        Err(r) => r,
        Ok(Ok(true)) => {
            tracing::info!(pair = %f.id, accept, "console: an operator decided a review pair");
            back_with(
                "/console/dupes",
                "note",
                if accept {
                    "merged; the result goes out to every system"
                } else {
                    "rejected: they stay apart"
                },
            )
        }
        Ok(Ok(false)) => back_with(
            "/console/dupes",
            "error",
            "that pair no longer waits (decided already?)",
        ),
        Ok(Err(e)) => back_with("/console/dupes", "error", &e.to_string()),
    }
}

// ---------------------------------------------------------------- revenue

#[derive(serde::Deserialize, Default)]
pub struct RevenueQuery {
    period: Option<String>,
    currency: Option<String>,
}

fn rate_text(v: &Json) -> Markup {
    match v {
        Json::Object(o) if o.contains_key("percent") => {
            html! { (format!("{:.1} %", o.get("percent").and_then(Json::as_f64).unwrap_or(0.0))) }
        }
        Json::Object(o) if o.contains_key("unavailable") => {
            html! { span.muted title=(o.get("unavailable").and_then(Json::as_str).unwrap_or("")) { "unavailable" } }
        }
        _ => html! { span.muted { "—" } },
    }
}

fn money_text(v: &Json, cur: &str) -> Markup {
    match v {
        Json::Number(n) => {
            html! { (money(n.as_i64().unwrap_or_else(|| n.as_f64().unwrap_or(0.0).round() as i64), cur)) }
        }
        Json::Object(o) if o.contains_key("unavailable") => {
            html! { span.muted title=(o.get("unavailable").and_then(Json::as_str).unwrap_or("")) { "unavailable" } }
        }
        _ => html! { span.muted { "—" } },
    }
}

fn month_label(start: &str) -> String {
    start.get(..7).unwrap_or(start).to_owned()
}

pub async fn revenue(
    State(state): State<Arc<AppState>>,
    Extension(v): Extension<Viewer>,
    Query(rq): Query<RevenueQuery>,
) -> Response {
    let period = rq
        .period
        .clone()
        .filter(|p| p == "quarter")
        .unwrap_or_else(|| "month".into());
    let now = chrono::Utc::now();
    let q = crate::kpi::report::Query {
        period: Some(period.clone()),
        from: Some(
            (now - chrono::Duration::days(if period == "quarter" { 730 } else { 365 }))
                .format("%Y-%m-%d")
                .to_string(),
        ),
        to: None,
    };
    let st = state.clone();
    let report = match blocking(move || st.kpi_report(&q, now)).await {
        Err(r) => return r,
        Ok(Err(e)) => return store_error(e),
        Ok(Ok(r)) => r,
    };
    let periods = report["periods"].as_array().cloned().unwrap_or_default();
    // The at-risk list names customers by id: the page shows their names.
    let risk_ids: Vec<Uuid> = report["at_risk"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["customer"].as_str()?.parse().ok())
        .take(200)
        .collect();
    let engine = state.engine.clone();
    let names: BTreeMap<String, String> = blocking(move || {
        risk_ids
            .into_iter()
            .filter_map(|id| Some((id.to_string(), label_of(&engine.record(id).ok()??))))
            .collect()
    })
    .await
    .unwrap_or_default();
    // Currencies any period or today's state knows, the largest MRR first.
    let mut currencies: Vec<String> = report["now"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    for p in &periods {
        for c in p["currencies"]
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys())
        {
            if !currencies.contains(c) {
                currencies.push(c.clone());
            }
        }
    }
    currencies.sort_by_key(|c| std::cmp::Reverse(report["now"][c]["mrr"].as_i64().unwrap_or(0)));
    let cur = rq
        .currency
        .clone()
        .filter(|c| currencies.contains(c))
        .or_else(|| currencies.first().cloned());
    let body = match cur {
        None => html! {
            h1 { "Revenue" }
            p.empty { "No subscription or deal in the store yet. Once Stripe subscriptions and CRM deals are read (with their past: see docs/kpi.md), MRR, the MRR bridge, win rate and the forecast show here." }
        },
        Some(cur) => {
            let series: Vec<(String, i64)> = periods
                .iter()
                .filter_map(|p| {
                    Some((
                        month_label(p["start"].as_str()?),
                        p["currencies"][&cur]["mrr_end"].as_i64()?,
                    ))
                })
                .collect();
            // The last period whose bridge is known: the waterfall.
            // The last whole period whose starting MRR is known (the one under way only
            // when there is no other): a month to date says little.
            let known = |p: &&Json| p["currencies"][&cur]["mrr_start"].is_number();
            let whole = |p: &&Json| {
                p["end"]
                    .as_str()
                    .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
                    .is_some_and(|e| e < now)
            };
            let last_bridge = periods
                .iter()
                .rev()
                .find(|p| known(p) && whole(p))
                .or_else(|| periods.iter().rev().find(known));
            let now_c = &report["now"][&cur];
            html! {
                h1 { "Revenue" }
                form.search method="get" action="/console/revenue" {
                    label for="period" { "Period" }
                    select #period name="period" { option value="month" selected[period == "month"] { "month" } option value="quarter" selected[period == "quarter"] { "quarter" } }
                    @if currencies.len() > 1 {
                        label for="currency" { "Currency" }
                        select #currency name="currency" { @for c in &currencies { option value=(c) selected[*c == cur] { (c) } } }
                    }
                    button type="submit" { "Show" }
                }
                div.tiles {
                    div.tile { span.k { "MRR" } span.v data-kpi="mrr" { (money_text(&now_c["mrr"], &cur)) } }
                    div.tile { span.k { "ARR" } span.v data-kpi="arr" { (money_text(&now_c["arr"], &cur)) } }
                    div.tile { span.k { "Paying customers" } span.v { (now_c["customers"].as_u64().map(thousands).unwrap_or_else(|| "0".into())) } }
                    div.tile { span.k { "Open pipeline" } span.v { (money_text(&now_c["open_pipeline"], &cur)) } }
                }
                section.card {
                    h2 { "MRR over time" }
                    @if series.len() < 2 { p.empty { "Two periods of subscription history are needed for a line." } }
                    @else { (chart::line(&series, &cur)) }
                }
                @if last_bridge.is_none() {
                    section.card { h2 { "MRR bridge" } p.empty { "No period yet whose starting MRR is known: "
                        (report["periods"][0]["currencies"][&cur]["mrr_start"]["unavailable"].as_str().unwrap_or("no subscription history"))
                        ". The bridge shows from the first whole period after subscription history begins." } }
                }
                @if let Some(p) = last_bridge {
                    @let c = &p["currencies"][&cur];
                    section.card {
                        h2 { "MRR bridge · " (month_label(p["start"].as_str().unwrap_or(""))) }
                        (chart::waterfall(&[
                            ("start", c["mrr_start"].as_i64().unwrap_or(0)),
                            ("new", c["bridge"]["new"].as_i64().unwrap_or(0)),
                            ("reactivation", c["bridge"]["reactivation"].as_i64().unwrap_or(0)),
                            ("expansion", c["bridge"]["expansion"].as_i64().unwrap_or(0)),
                            ("contraction", -c["bridge"]["contraction"].as_i64().unwrap_or(0).abs()),
                            ("churn", -c["bridge"]["churn"].as_i64().unwrap_or(0).abs()),
                        ], c["mrr_end"].as_i64().unwrap_or(0), &cur))
                    }
                }
                section.card {
                    h2 { "By period" }
                    div.scroll { table.kpis {
                        thead { tr {
                            th scope="col" { "Period" } th.num scope="col" { "MRR end" } th.num scope="col" { "NRR" } th.num scope="col" { "GRR" }
                            th.num scope="col" { "Logo churn" } th.num scope="col" { "Won / lost" } th.num scope="col" { "Win rate" }
                            th.num scope="col" { "Avg deal" } th.num scope="col" { "Forecast at start" } th.num scope="col" { "Forecast accuracy" }
                        } }
                        tbody { @for p in periods.iter().rev() {
                            @let c = &p["currencies"][&cur];
                            tr {
                                th scope="row" { (month_label(p["start"].as_str().unwrap_or(""))) }
                                td.num { (money_text(&c["mrr_end"], &cur)) }
                                td.num { (rate_text(&c["nrr"])) }
                                td.num { (rate_text(&c["grr"])) }
                                td.num { (rate_text(&c["logo_churn"])) }
                                td.num { (c["deals"]["won"].as_u64().unwrap_or(0)) " / " (c["deals"]["lost"].as_u64().unwrap_or(0)) }
                                td.num { (rate_text(&c["deals"]["win_rate"])) }
                                td.num { (money_text(&c["deals"]["average_deal_size"], &cur)) }
                                td.num { (money_text(&c["forecast_at_start"]["weighted"], &cur)) }
                                td.num { (rate_text(&c["forecast_accuracy"])) }
                            }
                        } }
                    } }
                }
                section.card {
                    h2 { "Open pipeline by stage" }
                    @let stages = now_c["open_pipeline_by_stage"].as_object().cloned().unwrap_or_default();
                    @if stages.is_empty() { p.empty { "No open deal with an amount in " (cur) "." } }
                    @else {
                        @let top = stages.values().filter_map(|v| v["amount"].as_i64()).max().unwrap_or(1).max(1);
                        table.stages {
                            thead { tr { th scope="col" { "Stage" } th.num scope="col" { "Deals" } th.num scope="col" { "Amount" } th scope="col" { span.sr { "Share" } } } }
                            tbody { @for (stage, v) in &stages {
                                @let amount = v["amount"].as_i64().unwrap_or(0);
                                tr {
                                    th scope="row" { (stage) }
                                    td.num { (v["deals"].as_u64().unwrap_or(0)) }
                                    td.num { (money(amount, &cur)) }
                                    td.barcell { svg.stagebar viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true" { rect width=(amount.saturating_mul(100) / top) height="10" {} } }
                                }
                            } }
                        }
                    }
                }
                section.card {
                    h2 { "Pipeline ahead (weighted)" }
                    @let ahead = report["forecast"].as_array().cloned().unwrap_or_default();
                    div.scroll { table {
                        thead { tr { th scope="col" { "Period" } th.num scope="col" { "Deals" } th.num scope="col" { "Amount" } th.num scope="col" { "Weighted" } th scope="col" { "By category" } } }
                        tbody { @for p in &ahead {
                            @let w = &p["currencies"][&cur];
                            tr {
                                th scope="row" { (month_label(p["start"].as_str().unwrap_or(""))) }
                                td.num { (w["deals"].as_u64().unwrap_or(0)) }
                                td.num { (money_text(&w["amount"], &cur)) }
                                td.num { (money_text(&w["weighted"], &cur)) }
                                td.small { @if let Some(cats) = w["by_category"].as_object() { @for (k, a) in cats { (k) " " (money_text(a, &cur)) br; } } }
                            }
                        } }
                    } }
                }
                section.card {
                    h2 { "At risk" }
                    @let risk = report["at_risk"].as_array().cloned().unwrap_or_default();
                    @if risk.is_empty() { p.empty { "No paying customer is at risk by the rules: " (report["at_risk_rules"].as_str().unwrap_or("")) } }
                    @else {
                        ul.results { @for r in &risk {
                            li {
                                @if let Some(id) = r["customer"].as_str() { a href={"/console/records/" (id)} { (names.get(id).cloned().unwrap_or_else(|| id.to_owned())) } }
                                " · MRR " (r["mrr"].as_object().map(|m| m.iter().map(|(c, a)| money(a.as_i64().unwrap_or(0), c)).collect::<Vec<_>>().join(", ")).unwrap_or_default())
                                " · " span.muted { (r["reasons"].as_array().map(|a| a.iter().filter_map(Json::as_str).collect::<Vec<_>>().join("; ")).unwrap_or_default()) }
                            }
                        } }
                    }
                }
                p.muted.small { "As of " (when(report["as_of"].as_str())) ". Definitions: KPIS.md; the same figures as GET /kpi and revsync kpi." }
            }
        }
    };
    page(StatusCode::OK, layout("Revenue", Some(&v), "Revenue", body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_and_counts_read_as_people_write_them() {
        assert_eq!(money(1_234_560, "USD"), "12,345.60 USD");
        assert_eq!(money(-500, "EUR"), "−5.00 EUR");
        assert_eq!(money(1500, "JPY"), "1,500 JPY");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(999), "999");
    }

    #[test]
    fn only_a_local_path_is_a_redirect_target() {
        assert_eq!(
            local(Some("/console/grid?kind=person")),
            "/console/grid?kind=person"
        );
        assert_eq!(local(Some("//evil.example")), "/");
        assert_eq!(local(Some("https://evil.example")), "/");
        assert_eq!(local(Some("/\\evil.example")), "/");
        assert_eq!(local(None), "/");
    }

    #[test]
    fn identity_keys_are_not_editable_in_the_console() {
        let person: Vec<&str> = editable(Kind::Person).iter().map(|(f, _)| *f).collect();
        assert!(person.contains(&"title"));
        assert!(!person.contains(&"email"));
        assert!(!person.contains(&"phone"));
        let org: Vec<&str> = editable(Kind::Organization)
            .iter()
            .map(|(f, _)| *f)
            .collect();
        assert!(org.contains(&"name"));
        assert!(!org.contains(&"domain"));
        assert!(
            editable(Kind::Subscription).is_empty(),
            "billing facts are Stripe's"
        );
        assert!(editable(Kind::Invoice).is_empty());
    }
}
