//! `X-Zendesk-Webhook-Signature`: base64 HMAC-SHA256 over the signed timestamp and the
//! body (order configurable, API_FACTS 3.5), then the event-subscription envelope.
// This module parses what anyone on the internet can send: no arithmetic that can overflow.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use revsync_sdk::{Change, Inbound, Secret, WebhookError, WebhookEvent, WebhookRequest};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::SignatureOrder;
use crate::mapping::id_text;

pub const SIGNATURE: &str = "x-zendesk-webhook-signature";
pub const TIMESTAMP: &str = "x-zendesk-webhook-signature-timestamp";

/// The signature Zendesk sends for `body` signed at `timestamp` (the header's text).
pub fn sign(secret: &str, order: SignatureOrder, timestamp: &str, body: &[u8]) -> String {
    STANDARD.encode(mac(secret, order, timestamp, body))
}

fn mac(secret: &str, order: SignatureOrder, timestamp: &str, body: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length (the secret is used as text, not base64-decoded), so
    // this never fails; if it did, an empty MAC matches nothing.
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return Vec::new();
    };
    match order {
        SignatureOrder::TimestampBody => {
            m.update(timestamp.as_bytes());
            m.update(body);
        }
        SignatureOrder::BodyTimestamp => {
            m.update(body);
            m.update(timestamp.as_bytes());
        }
    }
    m.finalize().into_bytes().to_vec()
}

#[derive(Debug, Clone)]
pub struct Verifier {
    pub secret: Secret,
    pub order: SignatureOrder,
    pub tolerance: Duration,
}

impl Verifier {
    pub fn verify(&self, req: &WebhookRequest<'_>) -> Result<Vec<WebhookEvent>, WebhookError> {
        let sig = req
            .header(SIGNATURE)
            .ok_or_else(|| WebhookError::BadSignature(format!("no {SIGNATURE} header")))?;
        let ts = req
            .header(TIMESTAMP)
            .ok_or_else(|| WebhookError::BadSignature(format!("no {TIMESTAMP} header")))?;
        let given = STANDARD
            .decode(sig.trim())
            .map_err(|_| WebhookError::BadSignature("signature is not base64".into()))?;
        let expected = mac(self.secret.expose(), self.order, ts, req.body);
        if !bool::from(given.ct_eq(&expected)) {
            return Err(WebhookError::BadSignature(
                "signature does not match".into(),
            ));
        }
        // Checked after the signature, so an attacker cannot learn our tolerance.
        let at = DateTime::parse_from_rfc3339(ts.trim())
            .map_err(|_| WebhookError::Stale(format!("timestamp `{ts}` is not ISO-8601")))?
            .with_timezone(&Utc);
        let skew = req
            .received_at
            .signed_duration_since(at)
            .num_seconds()
            .unsigned_abs();
        if skew > self.tolerance.as_secs() {
            return Err(WebhookError::Stale(format!(
                "signed at {ts}, {skew}s from now (tolerance {}s)",
                self.tolerance.as_secs()
            )));
        }
        let delivery = req
            .header("x-zendesk-webhook-invocation-id")
            .map(str::to_owned);
        parse(req.body, ts, delivery)
    }
}

/// The event-subscription envelope (`zen:event-type:user.*`), or a trigger webhook whose
/// template names a ticket (`{"ticket": {"id": ...}}`).
pub fn parse(
    body: &[u8],
    ts: &str,
    delivery: Option<String>,
) -> Result<Vec<WebhookEvent>, WebhookError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| WebhookError::Malformed(format!("body is not JSON: {e}")))?;
    if let Some(kind) = v.get("type").and_then(Value::as_str) {
        let Some(event) = kind.strip_prefix("zen:event-type:") else {
            return Err(WebhookError::Malformed(format!(
                "unknown event type `{kind}`"
            )));
        };
        let object = match event.split('.').next().unwrap_or_default() {
            "user" => "users",
            "organization" => "organizations",
            "ticket" => "tickets",
            // Other subscriptions (articles, agents' availability...) are acknowledged.
            _ => return Ok(Vec::new()),
        };
        let id = v
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| WebhookError::Malformed("event without an `id`".into()))?;
        let external_id = v
            .pointer("/detail/id")
            .and_then(id_text)
            .or_else(|| {
                let subject = v.get("subject")?.as_str()?;
                Some(subject.rsplit(':').next()?.to_owned())
            })
            .filter(|s| !s.is_empty())
            .ok_or_else(|| WebhookError::Malformed(format!("event {id} names no record")))?;
        let inbound = if event.ends_with(".deleted") {
            let at = v
                .get("time")
                .and_then(Value::as_str)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
                .ok_or_else(|| WebhookError::Malformed(format!("event {id} has no `time`")))?;
            Inbound::Change(Change {
                object: object.into(),
                external_id,
                source_updated_at: at,
                fields: BTreeMap::new(),
                deleted: true,
                canonical_id: None,
            })
        } else {
            // The detail is a partial record (no name, no phone): read the whole one.
            Inbound::Hint { external_id }
        };
        return Ok(vec![WebhookEvent {
            id: id.to_owned(),
            object: object.into(),
            inbound,
        }]);
    }
    if let Some(ticket) = v.pointer("/ticket/id").and_then(id_text) {
        return Ok(vec![WebhookEvent {
            id: delivery.unwrap_or_else(|| format!("ticket:{ticket}:{ts}")),
            object: "tickets".into(),
            inbound: Inbound::Hint {
                external_id: ticket,
            },
        }]);
    }
    Err(WebhookError::Malformed(
        "neither a zen:event-type envelope nor a ticket trigger payload".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// API_FACTS 3.5: the old doc's vector matches body + timestamp only.
    #[test]
    fn both_documented_orders_reproduce_their_vectors() {
        let body = br#"{"say": "hello"}"#;
        let ts = "2021-07-25T10:00:00Z";
        assert_eq!(
            sign(
                "HRkRd4BeOAoUkfZr-mhauJT64rvBASlJRoIyPsd3zeA=",
                SignatureOrder::BodyTimestamp,
                ts,
                body
            ),
            "tRDSF7URY8BLCDlaBcQ7FHu051Zk+aAB0NKMP53teMw="
        );
        assert_eq!(
            sign(
                "HRkRd4BeOAoUkfZr-mhauJT64rvBASlJRoIyPsd3zeA=",
                SignatureOrder::TimestampBody,
                ts,
                body
            ),
            "Rry/4TtIdFyawtXXp8QdI6tlAUUQ/5kL1OTp5qo/ZIk="
        );
        assert_eq!(
            sign(
                "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ==",
                SignatureOrder::TimestampBody,
                ts,
                body
            ),
            "gf3v0LzLRHPUnIdhbvwRDVEvzSb07/QN0GYjSNlkBT0="
        );
    }

    #[test]
    fn envelopes_become_hints_and_deletions() {
        let body = br#"{"type":"zen:event-type:user.active_changed","id":"e1","time":"2099-07-04T05:33:18Z",
            "subject":"zen:user:65","detail":{"id":"65","organization_id":"0"}}"#;
        let e = parse(body, "t", None).unwrap();
        assert_eq!(e[0].object, "users");
        assert_eq!(
            e[0].inbound,
            Inbound::Hint {
                external_id: "65".into()
            }
        );
        let body = br#"{"type":"zen:event-type:organization.deleted","id":"e2","time":"2099-07-04T05:33:18Z",
            "subject":"zen:organization:9","detail":{"id":"9"}}"#;
        let e = parse(body, "t", None).unwrap();
        assert!(matches!(&e[0].inbound, Inbound::Change(c) if c.deleted && c.external_id == "9"));
        assert!(parse(b"{}", "t", None).is_err());
        assert!(parse(b"not json", "t", None).is_err());
    }
}
