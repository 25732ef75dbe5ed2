//! The operator HTTP API: health, readiness, status and metrics.

use std::sync::Arc;

use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::app::AppState;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/records/{query}", get(record))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
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
        "store": state.store.stats(),
        "connectors": state.status.snapshot(),
    }))
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let body = state.metrics.render(
        state.started.elapsed().as_secs_f64(),
        state.not_ready_reasons().is_empty(),
        &state.store.stats(),
        &state.status.snapshot(),
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

/// Admin endpoints carry customer data: when `server.admin_token` is set they need it as
/// a bearer token, compared in constant time.
fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.admin_token else {
        return true;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    bool::from(subtle::ConstantTimeEq::ct_eq(
        given.as_bytes(),
        token.expose().as_bytes(),
    ))
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "this endpoint needs `Authorization: Bearer <server.admin_token>`",
    )
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

/// One customer, unified: `GET /records/{email | domain | id | connector:object:id}`.
async fn record(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(query): Path<String>,
    Query(q): Query<RecordQuery>,
) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
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
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
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
