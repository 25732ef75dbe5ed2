//! `Stripe-Signature` verification (v1, HMAC-SHA256 over "{t}.{body}") and event parsing.
// This module parses what anyone on the internet can send: no arithmetic that can overflow.
#![deny(clippy::arithmetic_side_effects)]

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use revsync_sdk::{Change, Inbound, WebhookError, WebhookEvent};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::CustomersAs;
use crate::mapping;

/// Stripe's libraries refuse signatures more than five minutes from now.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Hex HMAC-SHA256 of "{t}.{body}" keyed with the endpoint secret (the whole `whsec_…`).
pub fn compute_signature(secret: &str, t: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this never fails; if it did, an empty signature
    // matches nothing.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A complete `Stripe-Signature` header value for `body` signed at `t`.
pub fn signature_header(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", compute_signature(secret, t, body))
}

/// Checks the header against `body`: any `v1` may match (secret rotation sends several);
/// `v0` and unknown schemes are ignored. Returns the signed timestamp.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secret: &str,
    now: DateTime<Utc>,
    tolerance_secs: i64,
) -> Result<i64, WebhookError> {
    let header =
        header.ok_or_else(|| WebhookError::BadSignature("no Stripe-Signature header".into()))?;
    let mut t: Option<i64> = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            continue;
        };
        match k {
            "t" => t = v.parse().ok(),
            "v1" => v1.push(v),
            _ => {}
        }
    }
    let t =
        t.ok_or_else(|| WebhookError::BadSignature("Stripe-Signature has no valid t=".into()))?;
    if v1.is_empty() {
        return Err(WebhookError::BadSignature(
            "Stripe-Signature has no v1 signature".into(),
        ));
    }
    let expected = compute_signature(secret, t, body);
    // Compare every candidate, in constant time each, so timing says nothing of which matched.
    let matched = v1.iter().fold(false, |acc, sig| {
        acc | bool::from(sig.as_bytes().ct_eq(expected.as_bytes()))
    });
    if !matched {
        return Err(WebhookError::BadSignature("no v1 signature matches".into()));
    }
    // A `t` too far off to subtract is as stale as any.
    let age = now.timestamp().checked_sub(t);
    if age.is_none_or(|age| age.unsigned_abs() > tolerance_secs.unsigned_abs()) {
        return Err(WebhookError::Stale(format!(
            "signed at {t}, more than the tolerance of {tolerance_secs}s from now"
        )));
    }
    Ok(t)
}

/// An event's record as a change dated by the event's `created`, so that an event
/// delivered late never overwrites what a newer one already said. `None` for events
/// about objects this connector does not sync.
pub fn event_change(event: &Value, customers_as: CustomersAs) -> Result<Option<Change>, String> {
    let id = event
        .get("id")
        .and_then(Value::as_str)
        .ok_or("event without an id")?;
    let created = event
        .get("created")
        .and_then(Value::as_i64)
        .ok_or_else(|| format!("event {id} without `created`"))?;
    let at = DateTime::from_timestamp(created, 0)
        .ok_or_else(|| format!("event {id}: bad created {created}"))?;
    let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
    let Some(object) = event.pointer("/data/object") else {
        return Err(format!("event {id} without data.object"));
    };
    let stripe_object = object.get("object").and_then(Value::as_str).unwrap_or("");
    if mapping::object_for(stripe_object).is_none() {
        return Ok(None);
    }
    let mut change =
        mapping::to_change(object, at, customers_as).map_err(|e| format!("event {id}: {e}"))?;
    // A deleted customer or draft invoice is gone; a "deleted" subscription is one that was
    // canceled, and stays readable with status canceled.
    if stripe_object != "subscription" && kind.ends_with(".deleted") {
        change.deleted = true;
    }
    Ok(Some(change))
}

/// A verified webhook body as events.
pub fn parse(body: &[u8], customers_as: CustomersAs) -> Result<Vec<WebhookEvent>, WebhookError> {
    let event: Value = serde_json::from_slice(body)
        .map_err(|e| WebhookError::Malformed(format!("not JSON: {e}")))?;
    if event.get("object").and_then(Value::as_str) != Some("event") {
        return Err(WebhookError::Malformed("body is not a Stripe event".into()));
    }
    let id = event
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if id.is_empty() {
        return Err(WebhookError::Malformed("event without an id".into()));
    }
    match event_change(&event, customers_as).map_err(WebhookError::Malformed)? {
        Some(change) => Ok(vec![WebhookEvent {
            id,
            object: change.object.clone(),
            inbound: Inbound::Change(change),
        }]),
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_vector_in_api_facts() {
        assert_eq!(
            compute_signature(
                "whsec_test_secret",
                1_700_000_000,
                br#"{"id":"evt_test","object":"event"}"#
            ),
            "8042376f6ca064adbe037642a718227dfd59047137eb49497a54c49eb0cfb724"
        );
    }

    #[test]
    fn a_signed_timestamp_at_the_ends_of_the_range_is_stale() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        for t in [i64::MIN, i64::MAX] {
            let header = signature_header("whsec_a", t, b"{}");
            assert!(
                matches!(
                    verify(Some(&header), b"{}", "whsec_a", now, 300),
                    Err(WebhookError::Stale(_))
                ),
                "t={t}"
            );
        }
    }

    #[test]
    fn any_v1_may_match_and_v0_is_ignored() {
        let body = b"{}";
        let now = DateTime::from_timestamp(1_700_000_100, 0).unwrap();
        let good = compute_signature("whsec_a", 1_700_000_000, body);
        let header = format!("t=1700000000,v1={},v1={good},v0={good}", "0".repeat(64));
        assert_eq!(
            verify(Some(&header), body, "whsec_a", now, 300),
            Ok(1_700_000_000)
        );
        let only_v0 = format!("t=1700000000,v0={good}");
        assert!(matches!(
            verify(Some(&only_v0), body, "whsec_a", now, 300),
            Err(WebhookError::BadSignature(_))
        ));
        assert!(matches!(
            verify(None, body, "whsec_a", now, 300),
            Err(WebhookError::BadSignature(_))
        ));
    }

    #[test]
    fn a_signed_timestamp_too_far_off_to_subtract_is_stale() {
        let body = b"{}";
        let now = DateTime::from_timestamp(1_700_000_100, 0).unwrap();
        for t in [i64::MIN, i64::MAX] {
            let header = format!("t={t},v1={}", compute_signature("whsec_a", t, body));
            assert!(
                matches!(
                    verify(Some(&header), body, "whsec_a", now, 300),
                    Err(WebhookError::Stale(_))
                ),
                "{t}"
            );
        }
    }
}
