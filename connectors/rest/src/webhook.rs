//! Webhooks of a declared API: the signature scheme the YAML names (header, prefix, HMAC
//! algorithm, encoding, what is signed, timestamp header and tolerance), checked in constant
//! time before the body is parsed; then each event's record as a change.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use revsync_sdk::{Inbound, WebhookError, WebhookEvent, WebhookRequest};
use serde_json::Value;
use serde_json_path::JsonPath;
use sha2::{Digest, Sha256};

use crate::config::{Algorithm, SigEncoding, WebhookConfig};
use crate::read::{id_text, select, Decode};

/// A checked scheme, paths compiled.
pub struct Scheme {
    pub config: WebhookConfig,
    events: JsonPath,
    record: JsonPath,
    event_id: Option<JsonPath>,
}

impl Scheme {
    pub fn new(config: WebhookConfig) -> Result<Self, String> {
        Ok(Self {
            events: crate::config::path(&config.events)?,
            record: crate::config::path(&config.record)?,
            event_id: config
                .event_id
                .as_deref()
                .map(crate::config::path)
                .transpose()?,
            config,
        })
    }

    fn mac(&self, signed: &[u8]) -> Vec<u8> {
        let key = self.config.secret.expose().as_bytes();
        // HMAC takes a key of any length: new_from_slice cannot fail for it.
        match self.config.algorithm {
            Algorithm::Sha256 => Hmac::<Sha256>::new_from_slice(key)
                .map(|mut m| {
                    m.update(signed);
                    m.finalize().into_bytes().to_vec()
                })
                .unwrap_or_default(),
            Algorithm::Sha1 => Hmac::<sha1::Sha1>::new_from_slice(key)
                .map(|mut m| {
                    m.update(signed);
                    m.finalize().into_bytes().to_vec()
                })
                .unwrap_or_default(),
            Algorithm::Sha512 => Hmac::<sha2::Sha512>::new_from_slice(key)
                .map(|mut m| {
                    m.update(signed);
                    m.finalize().into_bytes().to_vec()
                })
                .unwrap_or_default(),
        }
    }

    /// The signature the sender should have sent for `body` at `timestamp`.
    pub fn sign(&self, timestamp: Option<&str>, body: &[u8]) -> String {
        let signed = self.signed_bytes(timestamp, body);
        let mac = self.mac(&signed);
        let text = match self.config.encoding {
            SigEncoding::Hex => crate::hex(&mac),
            SigEncoding::Base64 => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode(&mac)
            }
        };
        format!("{}{text}", self.config.signature_prefix)
    }

    fn signed_bytes(&self, timestamp: Option<&str>, body: &[u8]) -> Vec<u8> {
        // `{body}` is raw bytes, not text: split the template around it.
        let template = self
            .config
            .signed
            .replace("{timestamp}", timestamp.unwrap_or(""));
        let mut out = Vec::with_capacity(template.len() + body.len());
        let mut parts = template.split("{body}");
        if let Some(first) = parts.next() {
            out.extend_from_slice(first.as_bytes());
        }
        for rest in parts {
            out.extend_from_slice(body);
            out.extend_from_slice(rest.as_bytes());
        }
        out
    }

    pub fn verify(
        &self,
        req: &WebhookRequest<'_>,
        decode: &Decode<'_>,
    ) -> Result<Vec<WebhookEvent>, WebhookError> {
        let c = &self.config;
        let timestamp = match &c.timestamp_header {
            None => None,
            Some(h) => {
                let t = req
                    .header(h)
                    .ok_or_else(|| WebhookError::BadSignature(format!("no {h} header")))?;
                let secs: i64 = t
                    .trim()
                    .parse()
                    .map_err(|_| WebhookError::BadSignature(format!("{h} is not a number")))?;
                // Milliseconds when it can only be milliseconds.
                let secs = if secs > 100_000_000_000 {
                    secs / 1000
                } else {
                    secs
                };
                let sent = DateTime::<Utc>::from_timestamp(secs, 0)
                    .ok_or_else(|| WebhookError::BadSignature(format!("{h} is out of range")))?;
                let skew = req
                    .received_at
                    .signed_duration_since(sent)
                    .num_seconds()
                    .unsigned_abs();
                if skew > c.tolerance_secs {
                    return Err(WebhookError::Stale(format!(
                        "signed {skew}s away from our clock (tolerance {}s)",
                        c.tolerance_secs
                    )));
                }
                Some(t.trim())
            }
        };
        let given = req.header(&c.signature_header).ok_or_else(|| {
            WebhookError::BadSignature(format!("no {} header", c.signature_header))
        })?;
        let expected = self.sign(timestamp, req.body);
        // A header may carry several signatures (a secret being rotated): any one will do.
        let ok = given.split([',', ' ']).map(str::trim).any(|g| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                g.as_bytes(),
                expected.as_bytes(),
            ))
        });
        if !ok {
            return Err(WebhookError::BadSignature(
                "signature does not match".into(),
            ));
        }
        let body: Value = serde_json::from_slice(req.body)
            .map_err(|e| WebhookError::Malformed(format!("not JSON: {e}")))?;
        let mut out = Vec::new();
        for event in select(&self.events, &body) {
            let record = self
                .record
                .query(event)
                .all()
                .into_iter()
                .next()
                .ok_or_else(|| WebhookError::Malformed(format!("no record at {}", c.record)))?;
            let (change, _) = decode
                .change(record)
                .map_err(|e| WebhookError::Malformed(format!("the event's record: {e}")))?;
            let id = self
                .event_id
                .as_ref()
                .and_then(|p| p.query(event).all().into_iter().next().and_then(id_text))
                .unwrap_or_else(|| crate::hex(&Sha256::digest(event.to_string().as_bytes())));
            out.push(WebhookEvent {
                id,
                object: c.object.clone(),
                inbound: Inbound::Change(change),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scheme() -> Scheme {
        let config: WebhookConfig = serde_json::from_value(json!({
            "secret": "whsec", "signature_header": "X-Sig", "signature_prefix": "v1=",
            "signed": "{timestamp}.{body}", "timestamp_header": "X-Ts", "object": "people",
            "events": "$", "event_id": "$.event_id", "record": "$.data"
        }))
        .unwrap();
        Scheme::new(config).unwrap()
    }

    fn decode() -> Decode<'static> {
        Decode {
            object: "people",
            key: "id",
            updated_at: Some("updated_at"),
            external_id_field: None,
            format: crate::config::TimeFormat::Rfc3339,
            now: Utc::now(),
            add_fields: &NO_FIELDS,
        }
    }

    static NO_FIELDS: std::collections::BTreeMap<String, serde_json::Value> =
        std::collections::BTreeMap::new();

    fn request<'a>(
        headers: &'a [(String, String)],
        body: &'a [u8],
        at: DateTime<Utc>,
    ) -> WebhookRequest<'a> {
        WebhookRequest {
            method: "POST",
            uri: "https://hooks.test/webhooks/x",
            headers,
            body,
            received_at: at,
        }
    }

    #[test]
    fn a_signed_event_is_accepted_and_a_tampered_or_stale_one_refused() {
        let s = scheme();
        let now = Utc::now();
        let ts = now.timestamp().to_string();
        let body = br#"{"event":"registrant.created","event_id":"evt_1","data":{"id":"reg_1","email":"a@x.test","updated_at":"2026-01-01T00:00:00Z"}}"#;
        // The documented scheme, computed independently of `sign`.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec").unwrap();
        mac.update(format!("{ts}.").as_bytes());
        mac.update(body);
        let sig = format!("v1={}", crate::hex(&mac.finalize().into_bytes()));
        let headers = vec![
            ("x-ts".to_owned(), ts.clone()),
            ("x-sig".to_owned(), sig.clone()),
        ];
        let events = s.verify(&request(&headers, body, now), &decode()).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].id, "evt_1");
        let Inbound::Change(c) = &events[0].inbound else {
            panic!("{events:?}")
        };
        assert_eq!(
            (c.external_id.as_str(), &c.fields["email"]),
            ("reg_1", &json!("a@x.test"))
        );

        let tampered = body
            .iter()
            .copied()
            .map(|b| if b == b'a' { b'b' } else { b })
            .collect::<Vec<_>>();
        assert!(matches!(
            s.verify(&request(&headers, &tampered, now), &decode()),
            Err(WebhookError::BadSignature(_))
        ));
        let late = now + chrono::Duration::seconds(301);
        assert!(matches!(
            s.verify(&request(&headers, body, late), &decode()),
            Err(WebhookError::Stale(_))
        ));
        let unsigned = vec![("x-ts".to_owned(), ts)];
        assert!(matches!(
            s.verify(&request(&unsigned, body, now), &decode()),
            Err(WebhookError::BadSignature(_))
        ));
    }
}
