//! Stripe over the SDK's `ApiClient`: bracket-notation forms, error classification, paging
//! and a per-endpoint budget beside the account-wide one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use revsync_sdk::http::{
    retry_after, AccountLimiter, ApiClient, ApiPolicy, ApiRequest, Auth, LimiterStats, Limits,
    RetryPolicy,
};
use revsync_sdk::{ConnectorError, LimitScope, Secret, Shutdown};
use serde::Deserialize;
use serde_json::Value;

/// Stripe's `{"error": {...}}` body.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StripeError {
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub param: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: StripeError,
}

/// Reads Stripe's error JSON so the dead-letter queue says what Stripe said.
#[derive(Debug, Clone, Copy, Default)]
pub struct StripePolicy;

impl ApiPolicy for StripePolicy {
    fn classify(
        &self,
        status: u16,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Option<ConnectorError> {
        if (200..300).contains(&status) {
            return None;
        }
        let err = serde_json::from_slice::<ErrorBody>(body)
            .map(|b| b.error)
            .unwrap_or_default();
        let detail = format!(
            "stripe answered {status}: {}{}{}",
            if err.kind.is_empty() {
                "unknown_error"
            } else {
                &err.kind
            },
            err.code
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default(),
            err.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default(),
        );
        Some(match status {
            // Both the rate limiter and lock contention (`lock_timeout`) clear within
            // seconds: retry, never dead-letter. Stripe sends no Retry-After and its
            // limits are per second, so a rate-limit answer holds the account back for a
            // second (retrying sooner only meets the same full window); lock contention
            // is per object and only needs the short backoff.
            429 => ConnectorError::RateLimited {
                retry_after: retry_after(headers).or_else(|| {
                    (err.code.as_deref() != Some("lock_timeout"))
                        .then_some(std::time::Duration::from_secs(1))
                }),
                scope: LimitScope::Burst,
            },
            401 | 403 => ConnectorError::Auth(detail),
            404 => ConnectorError::NotFound,
            // An idempotent request with the same key is still running: retry later.
            409 => ConnectorError::Transient(detail),
            500..=599 => ConnectorError::Transient(detail),
            _ => ConnectorError::Permanent {
                detail,
                status: Some(status),
                body: Some(revsync_sdk::http::truncated_body(body)),
            },
        })
    }
}

/// Flatten JSON into Stripe's form fields: `metadata[k]=v`, `items[0][price]=p`.
/// `null` becomes an empty value, which is how Stripe unsets a field.
pub fn form_encode(value: &Value) -> Vec<(String, String)> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}[{k}]")
                    };
                    walk(&key, v, out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(&format!("{prefix}[{i}]"), v, out);
                }
            }
            Value::Null => out.push((prefix.to_owned(), String::new())),
            Value::String(s) => out.push((prefix.to_owned(), s.clone())),
            other => out.push((prefix.to_owned(), other.to_string())),
        }
    }
    let mut out = Vec::new();
    walk("", value, &mut out);
    out
}

/// One page of a list endpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct List {
    pub data: Vec<Value>,
    pub has_more: bool,
}

/// A list endpoint's answer (`{data, has_more}`), read from `path`.
pub(crate) fn list_answer(v: Value, path: &str) -> Result<List, ConnectorError> {
    serde_json::from_value(v).map_err(|e| ConnectorError::Permanent {
        detail: format!("malformed list from {path}: {e}"),
        status: Some(200),
        body: None,
    })
}

/// The Stripe API for one secret key.
pub struct StripeClient {
    api: ApiClient,
    key: Secret,
    endpoint_limits: Limits,
    endpoints: Mutex<HashMap<String, Arc<AccountLimiter>>>,
}

impl StripeClient {
    pub fn new(
        base_url: &str,
        key: Secret,
        overall: Limits,
        per_endpoint: Limits,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let api = ApiClient::new(
            base_url,
            overall,
            RetryPolicy::default(),
            timeout,
            Arc::new(StripePolicy),
        )?;
        Ok(Self {
            api,
            key,
            endpoint_limits: per_endpoint,
            endpoints: Mutex::new(HashMap::new()),
        })
    }

    /// Caps every API answer's body.
    pub fn with_max_response_bytes(mut self, max: usize) -> Self {
        self.api = self.api.with_max_response_bytes(max);
        self
    }

    /// Ends every wait of this client, the endpoints' budgets too, when the daemon stops.
    pub fn with_shutdown(mut self, shutdown: &Shutdown) -> Self {
        self.api = self.api.with_shutdown(shutdown.clone());
        self
    }

    pub fn stats(&self) -> LimiterStats {
        self.api.limiter().stats()
    }

    /// Stripe limits each endpoint separately (25/s by default) under the account-wide
    /// budget; the endpoint is the resource collection (`/v1/customers`), whatever the id.
    fn endpoint(&self, method: &str, path: &str) -> Arc<AccountLimiter> {
        let resource: String = path.split('/').take(3).collect::<Vec<_>>().join("/");
        let key = format!("{method} {resource}");
        let mut map = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key)
            .or_insert_with(|| Arc::new(AccountLimiter::new(self.endpoint_limits)))
            .clone()
    }

    async fn send(&self, req: ApiRequest) -> Result<Value, ConnectorError> {
        let endpoint = self.endpoint(req.method.as_str(), &req.path);
        self.api.shutdown().wait(endpoint.acquire()).await?;
        let req = req.with_auth(Auth::Bearer(self.key.clone()));
        self.api.send(req).await?.json()
    }

    pub async fn get(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> Result<Value, ConnectorError> {
        let mut req = ApiRequest::get(path);
        for (k, v) in query {
            req = req.with_query(k.clone(), v.clone());
        }
        self.send(req).await
    }

    pub async fn list(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> Result<List, ConnectorError> {
        list_answer(self.get(path, query).await?, path)
    }

    /// Every POST carries an idempotency key, so it may be retried like a GET.
    pub async fn post(
        &self,
        path: &str,
        form: Vec<(String, String)>,
        idempotency_key: &str,
    ) -> Result<Value, ConnectorError> {
        let req = ApiRequest::post(path)
            .with_form(form)
            .with_header("Idempotency-Key", idempotency_key)
            .with_retry(true);
        self.send(req).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, ConnectorError> {
        self.send(ApiRequest::new(http::Method::DELETE, path)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_values_use_bracket_notation() {
        let form = form_encode(&json!({
            "name": "Acme",
            "metadata": {"revsync_id": "abc", "tier": 2},
            "items": [{"price": "price_1", "quantity": 3}],
            "phone": null,
        }));
        assert_eq!(
            form,
            vec![
                ("items[0][price]".to_owned(), "price_1".to_owned()),
                ("items[0][quantity]".to_owned(), "3".to_owned()),
                ("metadata[revsync_id]".to_owned(), "abc".to_owned()),
                ("metadata[tier]".to_owned(), "2".to_owned()),
                ("name".to_owned(), "Acme".to_owned()),
                ("phone".to_owned(), String::new()),
            ]
        );
    }

    #[test]
    fn lock_timeout_is_a_retryable_rate_limit() {
        let body = br#"{"error":{"type":"invalid_request_error","code":"lock_timeout","message":"locked"}}"#;
        let e = StripePolicy
            .classify(429, &Default::default(), body)
            .unwrap();
        assert!(e.is_retryable(), "{e:?}");
        assert!(
            matches!(
                e,
                ConnectorError::RateLimited {
                    retry_after: None,
                    ..
                }
            ),
            "{e:?}"
        );
        let limited = br#"{"error":{"type":"invalid_request_error","code":"rate_limit","message":"too many"}}"#;
        let e = StripePolicy
            .classify(429, &Default::default(), limited)
            .unwrap();
        assert_eq!(
            e,
            ConnectorError::RateLimited {
                retry_after: Some(std::time::Duration::from_secs(1)),
                scope: LimitScope::Burst
            }
        );
    }

    #[test]
    fn idempotency_misuse_is_permanent_with_stripes_message() {
        let body = br#"{"error":{"type":"idempotency_error","message":"Keys for idempotent requests can only be used with the same parameters"}}"#;
        match StripePolicy
            .classify(400, &Default::default(), body)
            .unwrap()
        {
            ConnectorError::Permanent { detail, status, .. } => {
                assert_eq!(status, Some(400));
                assert!(detail.contains("idempotency_error"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }
}
