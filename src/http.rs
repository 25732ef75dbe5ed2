//! The operator HTTP API: health, readiness, status and metrics.
// Request data (headers, bodies, query numbers) is untrusted: no overflow on it.
#![deny(clippy::arithmetic_side_effects)]

use std::sync::Arc;

use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::app::AppState;
use crate::auth::Role;

/// Largest body an admin request (`/admin/dlq/replay`, `/admin/resync`) may carry.
pub const ADMIN_MAX_BODY_BYTES: usize = 64 * 1024;

pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    let token = middleware::from_fn_with_state(state.clone(), require_token);
    // Customer data and queue changes: always behind the token (unless auth is disabled).
    let admin = Router::new()
        // A static segment wins over `{query}`: `export` is never an email, domain or id.
        .route("/records/export", get(export))
        .route("/records/{query}", get(record))
        .route("/kpi", get(kpi))
        .route("/admin/dlq", get(dlq_list))
        .route("/admin/dlq/replay", post(dlq_replay))
        .route("/admin/resync", post(resync))
        .route("/admin/kpi/verify", post(kpi_verify))
        .route("/admin/connectors/{id}/pause", post(pause))
        .route("/admin/connectors/{id}/resume", post(resume))
        .route("/admin/console/link", post(console_link))
        .route("/admin/identity/train", post(identity_train))
        .route("/admin/dupes", get(dupes_list))
        .route("/admin/dupes/{id}", get(dupes_show))
        .route("/admin/dupes/{id}/accept", post(dupes_accept))
        .route("/admin/dupes/{id}/reject", post(dupes_reject))
        .route("/admin/quality", get(quality))
        .route("/admin/workflows", get(workflows_list))
        .route("/admin/workflows/runs", get(workflows_runs))
        .route("/admin/workflows/{rule}/test/{id}", get(workflows_test))
        .route("/admin/records/{id}/unmerge", post(unmerge))
        .route("/admin/records/{id}/merge", post(merge))
        // Operator requests are a few bytes of JSON; anything near axum's 2 MiB default
        // is not one, and is refused with 413 before it is buffered.
        .layer(axum::extract::DefaultBodyLimit::max(ADMIN_MAX_BODY_BYTES))
        .route_layer(token.clone());
    let observe = Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics));
    let observe = if state.status_public {
        observe
    } else {
        observe.route_layer(token)
    };
    // Webhooks (signed, and relayed by proxies that may rewrite Host) and health probes
    // show nothing worth a DNS-rebinding attack; everything else checks the Host.
    let operator = admin
        .merge(observe)
        .merge(crate::console::router(state.clone()))
        .route_layer(middleware::from_fn_with_state(state.clone(), check_host));
    Router::new()
        .route(
            "/webhooks/{connector}",
            post(webhook).layer(axum::extract::DefaultBodyLimit::max(max_body_bytes)),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(operator)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(middleware::from_fn(json_errors))
        .with_state(state)
}

/// Alive as long as the process answers.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let reasons = state.not_ready_reasons();
    if reasons.is_empty() {
        (StatusCode::OK, Json(json!({ "ready": true }))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reasons": reasons })),
        )
            .into_response()
    }
}

async fn status(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started.elapsed().as_secs(),
        "ready": state.not_ready_reasons().is_empty(),
        "shutting_down": state.is_shutting_down(),
        "auth": if matches!(state.auth, crate::auth::Auth::Disabled) { "disabled" } else { "token" },
        "warnings": state.warnings(),
        "store": state.store_stats(),
        "identity": state.engine.identity_stats(),
        "connectors": state.status.snapshot(),
    }))
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    if let Some(w) = &state.workflows {
        let counts: Vec<_> = w
            .rules()
            .0
            .iter()
            .map(|r| (r.name.clone(), w.stats(&r.name)))
            .collect();
        state.metrics.workflows(&counts);
    }
    let body = state.metrics.render(
        state.started.elapsed().as_secs_f64(),
        state.not_ready_reasons().is_empty(),
        &state.store_stats(),
        &state.status.snapshot(),
        &state.engine.identity_stats(),
    );
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Every error the server itself answers is JSON like the handlers' own: axum's
/// rejections (405, 413, 415, 422, a malformed query or path) come as plain text or empty,
/// which clients parsing `{error, message}` would choke on.
async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json") || c.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Rejection texts are one line; anything longer is cut, never buffered whole.
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let reason = status.canonical_reason().unwrap_or("error");
    let code = reason.to_ascii_lowercase().replace([' ', '-'], "_");
    let message = if text.is_empty() {
        reason.to_owned()
    } else {
        text
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(
        parts,
        axum::body::Body::from(json!({ "error": code, "message": message }).to_string()),
    )
}

/// Refuses a Host this daemon was not configured to answer to (server.allowed_hosts).
async fn check_host(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    // A request without Host (HTTP/1.0) cannot come from a browser.
    let host = req
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or(""));
    match host {
        Some(h) if !state.hosts.allows(h) => error(
            StatusCode::MISDIRECTED_REQUEST,
            "unknown_host",
            "this Host is not one the daemon answers to; add it to server.allowed_hosts",
        ),
        _ => next.run(req).await,
    }
}

/// Runs before the handler and its extractors, so an unauthenticated request is refused
/// before its body is read or parsed.
async fn require_token(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match state.auth.role_of_header(state.read_only_token.as_ref(), given) {
        Some(Role::Admin) => next.run(req).await,
        Some(Role::ReadOnly) if req.method() == axum::http::Method::GET => next.run(req).await,
        Some(Role::ReadOnly) => error(
            StatusCode::FORBIDDEN,
            "read_only",
            "this token is server.read_only_token: it reads, and changes nothing; use the admin token",
        ),
        None => error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this endpoint needs `Authorization: Bearer <token>`: server.admin_token, or the token the daemon generated in <store.path>/admin_token",
        ),
    }
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error": code, "message": message.into() })),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct RecordQuery {
    #[serde(default = "default_audit")]
    audit: usize,
}

fn default_audit() -> usize {
    20
}

/// `POST /webhooks/{connector}`: 2xx only once the events are on disk; 401 bad or stale
/// signature, 400 malformed, 404 unknown connector, 413 too large (nothing stored).
async fn webhook(
    State(state): State<Arc<AppState>>,
    Path(connector_id): Path<String>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    // Over `server.max_body_bytes` axum answers 413 before this runs: nothing stored.
    body: axum::body::Bytes,
) -> Response {
    use crate::sync::inbox::Refused;
    let Some(connector) = state.runtime.connectors.get(&connector_id).cloned() else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_connector",
            format!("no running connector `{connector_id}`"),
        );
    };
    let header_list: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_owned(), v.to_owned()))
        })
        .collect();
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let full_uri = match &state.public_url {
        Some(base) => format!("{}{path_and_query}", base.trim_end_matches('/')),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}{path_and_query}")
        }
    };
    let request = revsync_sdk::WebhookRequest {
        method: method.as_str(),
        uri: &full_uri,
        headers: &header_list,
        body: &body,
        received_at: chrono::Utc::now(),
    };
    match state
        .runtime
        .inbox
        .accept(&connector_id, connector.as_ref(), &request, &state.status)
        .await
    {
        Ok(n) => match connector.webhook_ack(n) {
            Some(ack) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, ack.content_type)],
                ack.body,
            )
                .into_response(),
            None => (StatusCode::OK, Json(json!({ "accepted": n }))).into_response(),
        },
        Err(Refused::UnknownConnector) => {
            error(StatusCode::NOT_FOUND, "unknown_connector", connector_id)
        }
        Err(Refused::Unauthorized(m)) => error(StatusCode::UNAUTHORIZED, "unauthorized", m),
        Err(Refused::Malformed(m)) => error(StatusCode::BAD_REQUEST, "malformed", m),
        Err(Refused::Unavailable(m)) => {
            tracing::error!(connector = %connector_id, error = %m, "webhook could not be stored");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "could not store the event; retry",
            )
        }
    }
}

/// `GET /kpi[?period=month|quarter&from=YYYY-MM-DD&to=YYYY-MM-DD]`: the revenue KPIs over
/// each period, from the store's history (src/kpi).
async fn kpi(
    State(state): State<Arc<AppState>>,
    Query(q): Query<crate::kpi::report::Query>,
) -> Response {
    let now = chrono::Utc::now();
    // A bad question is answered before the store is read.
    if let Err(e) = q.periods(now) {
        return error(StatusCode::BAD_REQUEST, "bad_request", e);
    }
    let done = tokio::task::spawn_blocking(move || state.kpi_report(&q, now)).await;
    match done {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// `POST /admin/kpi/verify`: recompute every KPI fact from the store, with writes held
/// off meanwhile, and compare with the incremental state (repairing it if they differ).
async fn kpi_verify(State(state): State<Arc<AppState>>) -> Response {
    let Some(live) = state.kpi_live.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "this daemon keeps no incremental KPI state",
        );
    };
    let engine = state.engine.clone();
    let done =
        tokio::task::spawn_blocking(move || engine.quiesced(|store| live.verify(store))).await;
    match done {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

#[derive(serde::Deserialize)]
struct DlqQuery {
    connector: Option<String>,
    #[serde(default = "default_dlq_limit")]
    limit: usize,
}

fn default_dlq_limit() -> usize {
    crate::engine::view::DLQ_LIST_LIMIT
}

/// `GET /admin/dlq[?connector=ID]`: dead letters of both directions, as
/// [`crate::engine::view::dead_letters_json`] lists them.
async fn dlq_list(State(state): State<Arc<AppState>>, Query(q): Query<DlqQuery>) -> Response {
    let engine = state.engine.clone();
    let listed = tokio::task::spawn_blocking(move || {
        crate::engine::view::dead_letters_json(&engine, q.connector.as_deref(), q.limit)
    })
    .await;
    match listed {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

#[derive(serde::Deserialize)]
struct ReplayRequest {
    connector: Option<String>,
    seq: Option<u64>,
    #[serde(default)]
    all: bool,
    /// An inbound dead letter's id, as listed.
    inbound: Option<String>,
}

/// `POST /admin/dlq/replay` with `{connector, seq}` or `{all: true[, connector]}`: put dead
/// letters back in their outbox (after the cause was fixed). `{inbound: ID}`: read an
/// inbound one again through its connector (or apply its change again).
async fn dlq_replay(
    State(state): State<Arc<AppState>>,
    Json(req): Json<ReplayRequest>,
) -> Response {
    if let Some(id) = &req.inbound {
        return match state.runtime.replay_inbound(id).await {
            Ok(true) => Json(json!({ "replayed": 1 })).into_response(),
            Ok(false) => error(StatusCode::NOT_FOUND, "not_found", "no such dead letter"),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
        };
    }
    let engine = state.engine.clone();
    // Replaying everything when nothing is dead-lettered did what was asked: 200 with 0.
    let all = req.all;
    let done = tokio::task::spawn_blocking(move || -> Result<usize, crate::engine::EngineError> {
        match (req.all, req.connector, req.seq) {
            (false, Some(c), Some(seq)) => Ok(usize::from(engine.replay_dead_letter(&c, seq)?)),
            (true, c, None) => engine.replay_dead_letters(c.as_deref()),
            _ => Ok(usize::MAX),
        }
    })
    .await;
    match done {
        Ok(Ok(usize::MAX)) => error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "send {\"connector\", \"seq\"} or {\"all\": true}",
        ),
        Ok(Ok(0)) if !all => error(StatusCode::NOT_FOUND, "not_found", "no such dead letter"),
        Ok(Ok(n)) => Json(json!({ "replayed": n })).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// `POST /admin/connectors/{id}/pause`: stop polling and pushing until resumed (kept
/// across restarts); webhooks are still accepted and kept.
async fn pause(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    set_paused(state, id, true).await
}

/// `POST /admin/connectors/{id}/resume`.
async fn resume(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    set_paused(state, id, false).await
}

async fn set_paused(state: Arc<AppState>, id: String, paused: bool) -> Response {
    let rt = state.runtime.clone();
    let c = id.clone();
    match tokio::task::spawn_blocking(move || rt.set_paused(&c, paused)).await {
        Ok(Ok(changed)) => {
            Json(json!({ "connector": id, "paused": paused, "changed": changed })).into_response()
        }
        Ok(Err(e)) => error(StatusCode::NOT_FOUND, "not_found", e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

#[derive(serde::Deserialize)]
struct TrainRequest {
    kind: String,
}

/// `POST /admin/identity/train {"kind": "person"}`: estimate the kind's scored identity
/// model from the store and keep it; used from the daemon's next start.
async fn identity_train(
    State(state): State<Arc<AppState>>,
    Json(req): Json<TrainRequest>,
) -> Response {
    let kind: revsync_sdk::Kind = match req.kind.parse() {
        Ok(k) => k,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e),
    };
    let engine = state.engine.clone();
    let seed = u64::try_from(engine.now()).unwrap_or(0);
    let done = tokio::task::spawn_blocking(move || engine.train_identity(kind, seed)).await;
    engine_answer(
        done,
        "that kind has no identity model (persons and organizations have)",
        |(model, report)| {
            Json(json!({
                "kind": kind.as_str(),
                "version": model.version,
                "report": report,
                "text": crate::engine::identity::train::render(&report),
                "takes_effect": "at the daemon's next start",
            }))
            .into_response()
        },
    )
}

#[derive(serde::Deserialize)]
struct DupesQuery {
    #[serde(default = "default_dupes_limit")]
    limit: usize,
}

fn default_dupes_limit() -> usize {
    100
}

/// `GET /admin/dupes`: pairs the scored identity model sent to review (issue 19).
async fn dupes_list(State(state): State<Arc<AppState>>, Query(q): Query<DupesQuery>) -> Response {
    let engine = state.engine.clone();
    match tokio::task::spawn_blocking(move || engine.reviews(q.limit)).await {
        Ok(Ok(pairs)) => Json(json!({
            "pairs": pairs.iter().map(crate::engine::view::review_json).collect::<Vec<_>>(),
        }))
        .into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

#[derive(serde::Deserialize)]
struct QualityQuery {
    connector: Option<String>,
}

/// `GET /admin/quality[?connector=ID]`: data quality problems per problem and system,
/// with examples (issue 19). Reads every person and company.
async fn quality(State(state): State<Arc<AppState>>, Query(q): Query<QualityQuery>) -> Response {
    if let Some(c) = q.connector.as_deref() {
        if state.engine.kinds_for(c).is_empty() {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no connector `{c}` is configured"),
            );
        }
    }
    let engine = state.engine.clone();
    match tokio::task::spawn_blocking(move || engine.quality(q.connector.as_deref())).await {
        Ok(Ok(report)) => Json(json!(report)).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// `GET /admin/workflows`: the rules and their counts since start.
async fn workflows_list(State(state): State<Arc<AppState>>) -> Response {
    let runner = state.workflows.as_deref();
    let rules = runner.map(|r| r.rules().clone()).unwrap_or_default();
    Json(crate::workflows::list_json(&rules, runner)).into_response()
}

#[derive(serde::Deserialize)]
struct RunsQuery {
    rule: Option<String>,
    #[serde(default = "default_runs")]
    limit: usize,
}

fn default_runs() -> usize {
    50
}

/// `GET /admin/workflows/runs[?rule=R&limit=N]`: the newest runs, newest first.
async fn workflows_runs(
    State(state): State<Arc<AppState>>,
    Query(q): Query<RunsQuery>,
) -> Response {
    if let Some(r) = q.rule.as_deref() {
        if state
            .workflows
            .as_ref()
            .is_none_or(|w| w.rules().get(r).is_none())
        {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no workflow rule `{r}`"),
            );
        }
    }
    let store = state.store.clone();
    let limit = q.limit.min(1_000);
    match tokio::task::spawn_blocking(move || {
        crate::workflows::runner::runs(store.as_ref(), q.rule.as_deref(), limit)
    })
    .await
    {
        Ok(Ok(runs)) => Json(json!({ "runs": runs })).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// `GET /admin/workflows/{rule}/test/{id}`: what the rule would do for the record now,
/// changing nothing.
async fn workflows_test(
    State(state): State<Arc<AppState>>,
    Path((rule, id)): Path<(String, String)>,
) -> Response {
    let Some(runner) = state.workflows.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no workflow rule `{rule}`"),
        );
    };
    let Ok(id) = uuid::Uuid::parse_str(&id) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "a record id is a canonical id (a UUID)",
        );
    };
    match tokio::task::spawn_blocking(move || runner.dry_run(&rule, id)).await {
        Ok(Ok(d)) => Json(json!(d)).into_response(),
        Ok(Err(e)) => error(StatusCode::NOT_FOUND, "not_found", e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// The 400 for a review pair id that is not two canonical ids joined by `.`.
fn bad_pair_id() -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        "a pair id is two canonical ids joined by `.`",
    )
}

/// A blocking engine call's answer: 404 with `missing` for `None`, 500 for an error.
fn engine_answer<T>(
    done: Result<Result<Option<T>, crate::engine::EngineError>, tokio::task::JoinError>,
    missing: &str,
    ok: impl FnOnce(T) -> Response,
) -> Response {
    match done {
        Ok(Ok(Some(v))) => ok(v),
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, "not_found", missing),
        Ok(Err(crate::engine::EngineError::Refused(why))) => {
            error(StatusCode::CONFLICT, "refused", why)
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

const NO_PAIR: &str = "no such pair waits for review";

/// `GET /admin/dupes/{a.b}`: one pair with both records.
async fn dupes_show(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let Some((a, b)) = crate::engine::view::parse_review_id(&id) else {
        return bad_pair_id();
    };
    let engine = state.engine.clone();
    let found = tokio::task::spawn_blocking(move || {
        let Some(r) = engine.review(a, b)? else {
            return Ok(None);
        };
        let mut v = crate::engine::view::review_json(&r);
        for (side, rid) in [("record_a", r.a), ("record_b", r.b)] {
            let rec = crate::engine::lookup_view(&engine, &rid.to_string(), 5)?;
            if let Some(obj) = v.as_object_mut() {
                obj.insert(side.into(), rec.unwrap_or(serde_json::Value::Null));
            }
        }
        Ok(Some(v))
    })
    .await;
    engine_answer(found, NO_PAIR, |v| Json(v).into_response())
}

/// `POST /admin/dupes/{a.b}/accept`: merge the pair and push the result.
async fn dupes_accept(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let Some((a, b)) = crate::engine::view::parse_review_id(&id) else {
        return bad_pair_id();
    };
    let engine = state.engine.clone();
    let done = tokio::task::spawn_blocking(move || engine.accept_review(a, b, "an operator")).await;
    engine_answer(done, NO_PAIR, |survivor| {
        Json(json!({ "merged": true, "survivor": survivor })).into_response()
    })
}

/// `POST /admin/dupes/{a.b}/reject`: the two are different; never proposed again.
async fn dupes_reject(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let Some((a, b)) = crate::engine::view::parse_review_id(&id) else {
        return bad_pair_id();
    };
    let engine = state.engine.clone();
    let done =
        tokio::task::spawn_blocking(move || engine.reject_review(a, b).map(|r| r.then_some(())))
            .await;
    engine_answer(done, NO_PAIR, |()| {
        Json(json!({ "rejected": true })).into_response()
    })
}

#[derive(serde::Deserialize)]
struct MergeQuery {
    with: String,
}

/// `POST /admin/records/{id}/merge?with=<other id>`: an operator's merge of two records
/// of one kind (the older id survives), journaled like any other, so `unmerge` undoes it.
async fn merge(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<MergeQuery>,
) -> Response {
    let (Ok(a), Ok(b)) = (uuid::Uuid::parse_str(&id), uuid::Uuid::parse_str(&q.with)) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "records are named by their canonical ids",
        );
    };
    let engine = state.engine.clone();
    let done = tokio::task::spawn_blocking(move || engine.merge(a, b, "an operator")).await;
    engine_answer(
        done,
        "no two records of one kind have these ids",
        |survivor| Json(json!({ "merged": true, "survivor": survivor })).into_response(),
    )
}

#[derive(serde::Deserialize)]
struct UnmergeQuery {
    source: Option<String>,
}

/// `POST /admin/records/{id}/unmerge[?source=connector:object:id]`: undo a merge (issue
/// 19); 409 with the reason when no such merge is on record.
async fn unmerge(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<UnmergeQuery>,
) -> Response {
    let Ok(id) = uuid::Uuid::parse_str(&id) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "a record is named by its canonical id",
        );
    };
    let engine = state.engine.clone();
    let done =
        tokio::task::spawn_blocking(move || engine.unmerge(id, q.source.as_deref(), "an operator"))
            .await;
    match done {
        Ok(Ok(crate::engine::Unmerged::Done {
            survivor,
            split,
            link,
        })) => Json(json!({
            "unmerged": true,
            "survivor": survivor,
            "split": split,
            "link": link.map(|l| format!("{}:{}:{}", l.connector, l.object, l.external_id)),
        }))
        .into_response(),
        Ok(Ok(crate::engine::Unmerged::Refused(why))) => {
            error(StatusCode::CONFLICT, "nothing_to_unmerge", why)
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// `POST /admin/console/link`: a one-time sign-in link to the console (15 minutes, one
/// use), so an operator with the token in a terminal opens the console without pasting it.
async fn console_link(State(state): State<Arc<AppState>>) -> Response {
    let secret = state.console.link(Role::Admin);
    Json(json!({
        "path": format!("/login/once/{secret}"),
        "expires_in_secs": crate::console::session::LINK_TTL.as_secs(),
    }))
    .into_response()
}

#[derive(serde::Deserialize)]
struct ResyncRequest {
    connector: String,
    object: Option<String>,
}

/// `POST /admin/resync` with `{connector[, object]}`: a full re-read; progress on `/status`.
async fn resync(State(state): State<Arc<AppState>>, Json(req): Json<ResyncRequest>) -> Response {
    match state.runtime.resync(&req.connector, req.object.as_deref()) {
        Ok(objects) => (StatusCode::ACCEPTED, Json(json!({ "started": objects }))).into_response(),
        Err(e @ crate::sync::ResyncError::AlreadyRunning(_)) => {
            error(StatusCode::CONFLICT, "conflict", e.to_string())
        }
        Err(e) => error(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
    }
}

#[derive(serde::Deserialize)]
struct ExportQuery {
    kind: String,
    #[serde(default = "default_export_format")]
    format: crate::export::Format,
}

fn default_export_format() -> crate::export::Format {
    crate::export::Format::Csv
}

/// Every record of a kind: `GET /records/export?kind=person[&format=csv|jsonl]`. The body
/// streams as the store is read (src/export/stream.rs); a failure part-way aborts it.
async fn export(State(state): State<Arc<AppState>>, Query(q): Query<ExportQuery>) -> Response {
    let kind = match q.kind.parse::<revsync_sdk::Kind>() {
        Ok(k) => k,
        Err(m) => return error(StatusCode::BAD_REQUEST, "bad_request", m),
    };
    let export = crate::export::Export::new(kind, q.format, state.engine.mappings());
    let body = crate::export::stream::spawn(export, state.store.clone());
    (
        [(header::CONTENT_TYPE, q.format.content_type())],
        axum::body::Body::new(body),
    )
        .into_response()
}

/// One customer, unified: `GET /records/{email | domain | id | connector:object:id}`.
async fn record(
    State(state): State<Arc<AppState>>,
    Path(query): Path<String>,
    Query(q): Query<RecordQuery>,
) -> Response {
    let engine = state.engine.clone();
    let found =
        tokio::task::spawn_blocking(move || crate::engine::lookup_view(&engine, &query, q.audit))
            .await;
    match found {
        Ok(Ok(Some(v))) => Json(v).into_response(),
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, "not_found", "no record matches"),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "record lookup failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "record lookup failed",
            )
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

async fn not_found(req: Request) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({
            "error": "not_found",
            "message": format!("no route for {} {}", req.method(), req.uri().path()),
        })),
    )
        .into_response()
}

/// Count every request by route template (never the raw path: unbounded label values).
async fn count_requests(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = crate::metrics::method_label(req.method());
    let response = next.run(req).await;
    state
        .metrics
        .http_requests
        .get_or_create(&crate::metrics::HttpLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
