//! The operator console: HTML pages served by the daemon at `/` (ADR 0044), on the same
//! port and behind the same tokens as the API. A browser signs in with a token once and
//! holds an HttpOnly, SameSite=Strict session cookie; every form that changes anything
//! carries the session's CSRF token. The pages read what the API reads (the engine's
//! views, `/status`'s snapshot, the KPI report) and change things only through the
//! engine and the runtime, as the admin API does.

mod chart;
mod pages;
pub mod session;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::app::AppState;
use crate::auth::Role;

/// The source an edit made in the console carries (its provenance): no connector may
/// have this id.
pub const SOURCE: &str = "console";

/// The session cookie's name.
pub const COOKIE: &str = "revsync_session";

/// Who is looking at a page: the role, and the CSRF token forms must carry (none for
/// a bearer-token caller, whom a browser cannot be tricked into being).
#[derive(Debug, Clone)]
pub struct Viewer {
    pub role: Role,
    pub csrf: Option<String>,
}

impl Viewer {
    /// Whether a form's `csrf` field proves it came from a page this session loaded.
    fn csrf_ok(&self, given: &str) -> bool {
        match &self.csrf {
            None => true,
            Some(expected) => bool::from(subtle::ConstantTimeEq::ct_eq(
                given.as_bytes(),
                expected.as_bytes(),
            )),
        }
    }
}

/// The console's routes; `operator` middleware (the Host check) is added by the caller.
pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let signed_in = Router::new()
        .route("/", get(pages::overview))
        .route(
            "/console/fragments/connectors",
            get(pages::connectors_fragment),
        )
        .route("/console/connectors/{id}/pause", post(pages::pause))
        .route("/console/connectors/{id}/resume", post(pages::resume))
        .route("/console/records", get(pages::records))
        .route("/console/records/{id}", get(pages::record))
        .route("/console/records/{id}/edit", post(pages::edit))
        .route("/console/records/{id}/unmerge", post(pages::unmerge))
        .route("/console/grid", get(pages::grid))
        .route("/console/dlq", get(pages::dead_letters))
        .route("/console/dlq/replay", post(pages::replay))
        .route("/console/dupes", get(pages::dupes))
        .route("/console/dupes/decide", post(pages::decide))
        .route("/console/quality", get(pages::quality))
        .route("/console/workflows", get(pages::workflows))
        .route("/console/revenue", get(pages::revenue))
        .route("/logout", post(pages::logout))
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::http::ADMIN_MAX_BODY_BYTES,
        ))
        .route_layer(middleware::from_fn_with_state(state, require_viewer));
    Router::new()
        .route("/login", get(pages::login_page).post(pages::login))
        .route("/login/once/{secret}", get(pages::login_once))
        .route("/console/assets/{name}", get(asset))
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::http::ADMIN_MAX_BODY_BYTES,
        ))
        .merge(signed_in)
        .layer(middleware::from_fn(security_headers))
}

/// The session id a request's cookie carries, if any.
fn session_cookie(req_headers: &axum::http::HeaderMap) -> Option<String> {
    req_headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_owned())
}

/// Pages need a session (or a bearer token, for scripts); without one a browser is sent
/// to the login page and anything else gets 401.
async fn require_viewer(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let viewer = match bearer {
        Some(h) => state
            .auth
            .role_of_header(state.read_only_token.as_ref(), Some(h))
            .map(|role| Viewer { role, csrf: None }),
        None => match session_cookie(req.headers()).and_then(|id| state.console.get(&id)) {
            Some(s) => Some(Viewer {
                role: s.role,
                csrf: Some(s.csrf),
            }),
            None if matches!(state.auth, crate::auth::Auth::Disabled) => Some(Viewer {
                role: Role::Admin,
                csrf: None,
            }),
            None => None,
        },
    };
    match viewer {
        Some(v) => {
            req.extensions_mut().insert(v);
            next.run(req).await
        }
        None if req.method() == Method::GET => {
            let next_path = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            let to = format!(
                "/login?next={}",
                url::form_urlencoded::byte_serialize(next_path.as_bytes()).collect::<String>()
            );
            Redirect::to(&to).into_response()
        }
        None => pages::plain_error(
            StatusCode::UNAUTHORIZED,
            "Sign in first",
            "this action needs a signed-in session or a bearer token",
        ),
    }
}

/// No page may be framed, sniffed, cached or given scripts from elsewhere.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// The embedded stylesheet and script: no CDN, nothing to build at run time.
async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}
