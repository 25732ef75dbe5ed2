//! Requests to the declared API: the SDK client (rate limit, retries on 429/5xx with
//! `Retry-After`, body cap, shutdown) plus the declared credentials, with OAuth2 tokens
//! fetched, cached until shortly before they expire, and renewed once on a 401.

use std::sync::Arc;
use std::time::{Duration, Instant};

use revsync_sdk::http::{
    ApiClient, ApiRequest, ApiResponse, Auth, DefaultPolicy, Limits, RetryPolicy,
};
use revsync_sdk::{ConnectorError, Secret, Shutdown};
use serde::Deserialize;

use crate::config::{AuthConfig, Params};

/// A token is renewed this long before the API says it expires.
const EARLY: Duration = Duration::from_secs(60);

struct Token {
    value: Secret,
    until: Option<Instant>,
}

pub struct RestClient {
    pub api: ApiClient,
    auth: AuthConfig,
    headers: Vec<(String, String)>,
    /// Its own client: token requests spend no permit of the API's budget.
    token_http: Option<ApiClient>,
    token: tokio::sync::Mutex<Option<Token>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl RestClient {
    pub fn new(
        p: &Params,
        limits: Limits,
        max_response_bytes: usize,
        shutdown: Shutdown,
    ) -> Result<Self, ConnectorError> {
        let timeout = Duration::from_millis(p.timeout_ms);
        let api = ApiClient::new(
            &p.base_url,
            limits,
            RetryPolicy::default(),
            timeout,
            Arc::new(DefaultPolicy),
        )?
        .with_max_response_bytes(max_response_bytes)
        .with_shutdown(shutdown.clone());
        let token_http = match &p.auth {
            AuthConfig::Oauth2 { token_url, .. } => Some(
                ApiClient::new(
                    token_url,
                    limits,
                    RetryPolicy::default(),
                    timeout,
                    Arc::new(DefaultPolicy),
                )?
                .with_max_response_bytes(max_response_bytes)
                .with_shutdown(shutdown),
            ),
            _ => None,
        };
        Ok(Self {
            api,
            auth: p.auth.clone(),
            headers: p
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            token_http,
            token: tokio::sync::Mutex::new(None),
        })
    }

    async fn oauth_token(&self, renew: bool) -> Result<Secret, ConnectorError> {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref() {
            let fresh = t.until.is_none_or(|u| Instant::now() + EARLY < u);
            if fresh && !renew {
                return Ok(t.value.clone());
            }
        }
        let (
            AuthConfig::Oauth2 {
                token_url,
                client_id,
                client_secret,
                refresh_token,
                scope,
            },
            Some(http),
        ) = (&self.auth, &self.token_http)
        else {
            return Err(ConnectorError::Auth("no OAuth2 settings".into()));
        };
        let mut form = match refresh_token {
            Some(r) => vec![
                ("grant_type".to_owned(), "refresh_token".to_owned()),
                ("refresh_token".to_owned(), r.expose().to_owned()),
            ],
            None => vec![("grant_type".to_owned(), "client_credentials".to_owned())],
        };
        form.push(("client_id".into(), client_id.clone()));
        form.push(("client_secret".into(), client_secret.expose().to_owned()));
        if let Some(s) = scope {
            form.push(("scope".into(), s.clone()));
        }
        // Asking for a token again changes nothing server-side: safe to retry.
        let req = ApiRequest::post(token_url.clone())
            .with_form(form)
            .with_retry(true);
        let answer = http.send(req).await.map_err(|e| match e {
            ConnectorError::Permanent { detail, .. } => {
                ConnectorError::Auth(format!("token request refused: {detail}"))
            }
            other => other,
        })?;
        let t: TokenAnswer = answer.json()?;
        let value = Secret::new(t.access_token);
        *slot = Some(Token {
            value: value.clone(),
            until: t
                .expires_in
                .map(|s| Instant::now() + Duration::from_secs(s)),
        });
        Ok(value)
    }

    async fn authorize(
        &self,
        mut req: ApiRequest,
        renew: bool,
    ) -> Result<ApiRequest, ConnectorError> {
        for (k, v) in &self.headers {
            req = req.with_header(k.clone(), v.clone());
        }
        Ok(match &self.auth {
            AuthConfig::None => req,
            AuthConfig::Bearer { token } => req.with_auth(Auth::Bearer(token.clone())),
            AuthConfig::ApiKey {
                header: Some(h),
                value,
                ..
            } => req.with_header(h.clone(), value.expose().to_owned()),
            AuthConfig::ApiKey {
                query: Some(q),
                value,
                ..
            } => req.with_query(q.clone(), value.expose().to_owned()),
            AuthConfig::ApiKey { .. } => req,
            AuthConfig::Basic { username, password } => req.with_auth(Auth::Basic {
                user: username.clone(),
                password: password.clone(),
            }),
            AuthConfig::Oauth2 { .. } => {
                req.with_auth(Auth::Bearer(self.oauth_token(renew).await?))
            }
        })
    }

    /// Send `req` with the declared credentials; an OAuth2 token the API refuses is
    /// renewed and the request sent once more.
    pub async fn send(&self, req: ApiRequest) -> Result<ApiResponse, ConnectorError> {
        let first = self
            .api
            .send(self.authorize(req.clone(), false).await?)
            .await;
        match first {
            Err(ConnectorError::Auth(_)) if matches!(self.auth, AuthConfig::Oauth2 { .. }) => {
                self.api.send(self.authorize(req, true).await?).await
            }
            other => other,
        }
    }
}
