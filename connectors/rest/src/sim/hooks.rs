//! Signed `registrant.created` deliveries, retried on any refusal, one at a time in order.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use revsync_sdk::error::ConnectorError;
use revsync_sdk::http::{ApiClient, ApiPolicy, ApiRequest, Body, Limits, RetryPolicy};
use sha2::Sha256;
use tokio::sync::mpsc;

use super::{lock, Shared};

/// One event on its way: where to, signed with what, and the body as it is sent (built
/// once, so every retry carries the same `event_id` and the same bytes).
pub(super) struct Outgoing {
    pub url: String,
    pub secret: String,
    pub body: Vec<u8>,
}

/// `X-Webinar-Signature`: `v1=` and the lowercase hex HMAC-SHA256, keyed with the secret,
/// of `"<timestamp>.<raw body>"`, the timestamp being `X-Webinar-Timestamp`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        // HMAC takes a key of any length; this arm never runs.
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("v1={hex}")
}

/// Webhook senders retry whatever the receiver refuses, a 400 or a 401 included: the
/// receiver may be mid-deploy, and only the sender's retry budget ends the attempts.
struct RetryAnyRefusal;

impl ApiPolicy for RetryAnyRefusal {
    fn classify(&self, status: u16, _: &HeaderMap, _: &[u8]) -> Option<ConnectorError> {
        // 429 goes to the default classification, which honours its Retry-After.
        let refused = !(200..300).contains(&status) && status != 429;
        refused.then(|| ConnectorError::Transient(format!("webhook receiver answered {status}")))
    }
}

const ATTEMPTS: u32 = 4;

/// Posts queued events until the simulator is dropped.
pub(super) async fn deliver(state: Shared, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    let mut client: Option<(String, ApiClient)> = None;
    while let Some(out) = rx.recv().await {
        if client.as_ref().is_none_or(|(url, _)| *url != out.url) {
            client = ApiClient::new(
                &out.url,
                Limits::new(1000, Duration::from_secs(1)),
                RetryPolicy {
                    max_attempts: ATTEMPTS,
                    min_delay: Duration::from_millis(50),
                    max_delay: Duration::from_millis(500),
                    max_elapsed: Duration::from_secs(10),
                },
                Duration::from_secs(5),
                Arc::new(RetryAnyRefusal),
            )
            .ok()
            .map(|c| (out.url.clone(), c));
        }
        // Real time, not the simulator's: a receiver checks the timestamp against its own
        // clock, which `advance` does not move.
        let ts = Utc::now().timestamp();
        let sent = match &client {
            Some((_, c)) => {
                let mut req = ApiRequest::post(out.url.clone())
                    .with_header("X-Webinar-Timestamp", ts.to_string())
                    .with_header("X-Webinar-Signature", sign(&out.secret, ts, &out.body))
                    .with_retry(true);
                req.body = Some(Body::Raw {
                    content_type: "application/json".into(),
                    bytes: out.body,
                });
                c.send(req).await.map(|_| ())
            }
            None => Err(ConnectorError::Permanent {
                detail: format!("invalid webhook url `{}`", out.url),
                status: None,
                body: None,
            }),
        };
        let mut s = lock(&state);
        s.stats.webhook_posts += 1;
        if let Err(e) = sent {
            s.stats.webhook_failures += 1;
            tracing::warn!(error = %e, "webinar simulator: webhook delivery failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_lowercase_hex_hmac_of_timestamp_dot_body() {
        // From an independent tool:
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            sign("secret", 1_700_000_000, br#"{"a":1}"#),
            "v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }
}
