//! HubSpot webhooks: v3 signature verification and the event array they carry.
// This module parses what anyone on the internet can send: no arithmetic that can overflow.
#![deny(clippy::arithmetic_side_effects)]

use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use revsync_sdk::{Change, Inbound, WebhookError, WebhookEvent, WebhookRequest};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Requests signed longer ago than this are replays (HubSpot's own SDKs use 300,000 ms).
pub const MAX_AGE_MS: i64 = 300_000;

pub const SIGNATURE_HEADER: &str = "x-hubspot-signature-v3";
pub const TIMESTAMP_HEADER: &str = "x-hubspot-request-timestamp";

/// `base64(HMAC_SHA256(client_secret, method + uri + body + timestamp))` (API_FACTS 1.5).
pub fn sign_v3(secret: &str, method: &str, uri: &str, body: &[u8], timestamp_ms: i64) -> String {
    // HMAC takes keys of any length, so this never fails; if it did, an empty signature
    // matches nothing.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(method.as_bytes());
    mac.update(uri.as_bytes());
    mac.update(body);
    mac.update(timestamp_ms.to_string().as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks the v3 signature and timestamp of a request.
pub fn verify_v3(secret: &str, req: &WebhookRequest<'_>) -> Result<(), WebhookError> {
    let signature = req
        .header(SIGNATURE_HEADER)
        .ok_or_else(|| WebhookError::BadSignature(format!("no {SIGNATURE_HEADER} header")))?;
    let ts_text = req
        .header(TIMESTAMP_HEADER)
        .ok_or_else(|| WebhookError::BadSignature(format!("no {TIMESTAMP_HEADER} header")))?;
    let ts: i64 = ts_text.trim().parse().map_err(|_| {
        WebhookError::BadSignature(format!("{TIMESTAMP_HEADER} `{ts_text}` is not epoch ms"))
    })?;
    // A timestamp far in the future is as suspicious as an old one. One too far off to
    // subtract (the header is the sender's) is as stale as any.
    let age = req.received_at.timestamp_millis().checked_sub(ts);
    if age.is_none_or(|age| age.unsigned_abs() > MAX_AGE_MS.unsigned_abs()) {
        return Err(WebhookError::Stale(format!(
            "signed at {ts} ms, more than the 300s allowed from the time received"
        )));
    }
    let matches = |uri: &str| {
        let expected = sign_v3(secret, req.method, uri, req.body, ts);
        bool::from(expected.as_bytes().ct_eq(signature.trim().as_bytes()))
    };
    // HubSpot's docs also ask receivers to decode some %xx escapes before hashing [U]; a
    // signature over either spelling of the same URI is accepted.
    if matches(req.uri) || (req.uri.contains('%') && matches(&decode_uri(req.uri))) {
        Ok(())
    } else {
        Err(WebhookError::BadSignature(
            "x-hubspot-signature-v3 does not match".into(),
        ))
    }
}

/// The escapes HubSpot lists as decoded before signing.
fn decode_uri(uri: &str) -> String {
    const DECODED: [(&str, &str); 11] = [
        ("%3A", ":"),
        ("%2F", "/"),
        ("%3F", "?"),
        ("%40", "@"),
        ("%21", "!"),
        ("%24", "$"),
        ("%27", "'"),
        ("%28", "("),
        ("%29", ")"),
        ("%2A", "*"),
        ("%2C", ","),
    ];
    let mut out = uri.to_owned();
    for (from, to) in DECODED {
        out = out.replace(from, to).replace(&from.to_lowercase(), to);
    }
    out.replace("%3B", ";").replace("%3b", ";")
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEvent {
    event_id: serde_json::Value,
    subscription_type: String,
    object_id: Option<serde_json::Value>,
    occurred_at: Option<i64>,
    #[serde(default)]
    primary_object_id: Option<serde_json::Value>,
    #[serde(default)]
    merged_object_ids: Vec<serde_json::Value>,
}

fn id_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// `contact.creation` -> ("contacts", "creation").
fn split_type(t: &str) -> Option<(&'static str, &str)> {
    let (object, action) = t.split_once('.')?;
    let object = match object {
        "contact" => "contacts",
        "company" => "companies",
        "deal" => "deals",
        _ => return None,
    };
    Some((object, action))
}

/// The events of a verified body. Creation and property changes are hints (an event
/// carries one property, not the record); deletions are changes with `deleted`; a merge
/// hints the surviving record and deletes the absorbed ids, which no longer exist.
pub fn parse_events(body: &[u8]) -> Result<Vec<WebhookEvent>, WebhookError> {
    let raw: Vec<RawEvent> = serde_json::from_slice(body)
        .map_err(|e| WebhookError::Malformed(format!("expected a JSON array of events: {e}")))?;
    let mut out = Vec::new();
    for (i, e) in raw.into_iter().enumerate() {
        let event_id = id_text(&e.event_id)
            .ok_or_else(|| WebhookError::Malformed(format!("event {i} has no eventId")))?;
        // Other subscriptions (associations, other objects) are not ours to sync.
        let Some((object, action)) = split_type(&e.subscription_type) else {
            continue;
        };
        let object_id = e.object_id.as_ref().and_then(id_text);
        let occurred = e
            .occurred_at
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
            .unwrap_or_else(Utc::now);
        let event = |id: String, inbound| WebhookEvent {
            id,
            object: object.to_owned(),
            inbound,
        };
        match action {
            "creation" | "propertyChange" | "restore" => {
                let id = object_id.ok_or_else(|| {
                    WebhookError::Malformed(format!("event {event_id} has no objectId"))
                })?;
                out.push(event(event_id, Inbound::Hint { external_id: id }));
            }
            "deletion" | "privacyDeletion" => {
                let id = object_id.ok_or_else(|| {
                    WebhookError::Malformed(format!("event {event_id} has no objectId"))
                })?;
                out.push(event(
                    event_id,
                    Inbound::Change(deleted(object, id, occurred)),
                ));
            }
            "merge" => {
                let primary = e
                    .primary_object_id
                    .as_ref()
                    .and_then(id_text)
                    .or(object_id)
                    .ok_or_else(|| {
                        WebhookError::Malformed(format!("merge {event_id} has no primaryObjectId"))
                    })?;
                for merged in e.merged_object_ids.iter().filter_map(id_text) {
                    if merged != primary {
                        out.push(event(
                            format!("{event_id}:merged:{merged}"),
                            Inbound::Change(deleted(object, merged, occurred)),
                        ));
                    }
                }
                out.push(event(
                    event_id,
                    Inbound::Hint {
                        external_id: primary,
                    },
                ));
            }
            _ => {}
        }
    }
    Ok(out)
}

fn deleted(object: &str, id: String, at: DateTime<Utc>) -> Change {
    Change {
        object: object.to_owned(),
        external_id: id,
        source_updated_at: at,
        fields: Default::default(),
        deleted: true,
        canonical_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";

    #[test]
    fn v3_matches_the_reference_value() {
        let sig = sign_v3(
            SECRET,
            "POST",
            "https://www.example.com/webhook_uri",
            br#"{"example_field":"example_value"}"#,
            1_700_000_000_000,
        );
        assert_eq!(sig, "rQEKkaNUiu+1qGF//O/pw4BCzstSqO1PyUnGICmf+7o=");
    }

    fn request<'a>(
        headers: &'a [(String, String)],
        body: &'a [u8],
        received_ms: i64,
    ) -> WebhookRequest<'a> {
        WebhookRequest {
            method: "POST",
            uri: "https://hooks.example.com/webhooks/hs?x=1",
            headers,
            body,
            received_at: Utc.timestamp_millis_opt(received_ms).unwrap(),
        }
    }

    #[test]
    fn checks_signature_and_age() {
        let body = br#"[{"eventId":1,"subscriptionType":"contact.creation","objectId":123}]"#;
        let ts = 1_700_000_000_000_i64;
        let sig = sign_v3(
            SECRET,
            "POST",
            "https://hooks.example.com/webhooks/hs?x=1",
            body,
            ts,
        );
        let headers = vec![
            (SIGNATURE_HEADER.to_owned(), sig),
            (TIMESTAMP_HEADER.to_owned(), ts.to_string()),
        ];
        assert!(verify_v3(SECRET, &request(&headers, body, ts + 299_000)).is_ok());
        assert!(matches!(
            verify_v3(SECRET, &request(&headers, body, ts + 301_000)),
            Err(WebhookError::Stale(_))
        ));
        assert!(matches!(
            verify_v3("other", &request(&headers, body, ts)),
            Err(WebhookError::BadSignature(_))
        ));
        let tampered = br#"[{"eventId":1,"subscriptionType":"contact.creation","objectId":124}]"#;
        assert!(matches!(
            verify_v3(SECRET, &request(&headers, tampered, ts)),
            Err(WebhookError::BadSignature(_))
        ));
        assert!(matches!(
            verify_v3(SECRET, &request(&[], body, ts)),
            Err(WebhookError::BadSignature(_))
        ));
    }

    /// A crafted timestamp once overflowed the age subtraction, before any signature check.
    #[test]
    fn a_timestamp_too_far_off_to_subtract_is_stale() {
        for ts in [i64::MIN, i64::MAX] {
            let headers = vec![
                (SIGNATURE_HEADER.to_owned(), "x".to_owned()),
                (TIMESTAMP_HEADER.to_owned(), ts.to_string()),
            ];
            assert!(
                matches!(
                    verify_v3(SECRET, &request(&headers, b"[]", 1_700_000_000_000)),
                    Err(WebhookError::Stale(_))
                ),
                "{ts}"
            );
        }
    }

    #[test]
    fn events_become_hints_and_deletions() {
        let body = br#"[
          {"eventId":1,"subscriptionType":"contact.creation","objectId":123,"occurredAt":1564113600000},
          {"eventId":2,"subscriptionType":"deal.propertyChange","objectId":9,"propertyName":"amount","propertyValue":"5"},
          {"eventId":3,"subscriptionType":"company.deletion","objectId":7,"occurredAt":1564113600000},
          {"eventId":4,"subscriptionType":"contact.merge","objectId":10,"primaryObjectId":10,"mergedObjectIds":[10,11]},
          {"eventId":5,"subscriptionType":"ticket.creation","objectId":1}
        ]"#;
        let ev = parse_events(body).unwrap();
        let ids: Vec<_> = ev.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["1", "2", "3", "4:merged:11", "4"]);
        assert_eq!(ev[1].object, "deals");
        assert!(matches!(&ev[0].inbound, Inbound::Hint { external_id } if external_id == "123"));
        assert!(matches!(&ev[2].inbound, Inbound::Change(c) if c.deleted && c.external_id == "7"));
        assert!(matches!(&ev[3].inbound, Inbound::Change(c) if c.deleted && c.external_id == "11"));
        assert!(matches!(
            parse_events(b"{}"),
            Err(WebhookError::Malformed(_))
        ));
    }
}
