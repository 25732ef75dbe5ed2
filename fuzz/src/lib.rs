//! Shared pieces of the fuzz targets: how one input becomes a webhook request or an API
//! answer, and the connectors built the way the daemon builds them. The formats are
//! line-based so that corpus files stay readable and editable by hand (README.md).

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use revsync_sdk::http::{ApiResponse, HttpConfig, RateLimitConfig};
use revsync_sdk::{BuildContext, Connector, ConnectorType, WebhookRequest};

/// The time every request is received at, so that runs are reproducible.
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
}

/// The URI webhook requests are signed for.
pub const URI: &str = "https://hooks.example.com/webhooks/fuzz?x=1";

/// A connector built from `params` through its type, as the daemon builds it.
pub fn build(kind: &dyn ConnectorType, params: serde_json::Value) -> Arc<dyn Connector> {
    let ctx = BuildContext {
        id: "fuzz",
        params: &params,
        rate_limit: &RateLimitConfig::default(),
        http: &HttpConfig::default(),
        mapped_fields: &Default::default(),
        objects: &Default::default(),
        shutdown: Default::default(),
    };
    match kind.build(&ctx) {
        Some(Ok(c)) => c,
        Some(Err(e)) => panic!("cannot build the {} connector: {e}", kind.name()),
        None => panic!("the {} connector type builds nothing", kind.name()),
    }
}

/// Runs one webhook input through `connector.verify_webhook`. Input: either `H`, then
/// `name: value` header lines, a blank line and the body, sent with those headers as
/// they are; or a first line naming the signing timestamp (empty: [`now`]) and the body
/// after it, sent with the headers `sign(timestamp, body)` returns, so that the parser
/// behind the signature check is reached.
pub fn verify_webhook(
    connector: &dyn Connector,
    data: &[u8],
    sign: impl FnOnce(Option<&str>, &[u8]) -> Vec<(String, String)>,
) {
    let (headers, body) = match data.strip_prefix(b"H") {
        Some(rest) => {
            let (head, body) = split_head(rest);
            let headers = header_lines(head)
                .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
                .collect();
            (headers, body)
        }
        None => {
            let (first, body) = split_line(data);
            let timestamp = std::str::from_utf8(first).ok().filter(|t| !t.is_empty());
            (sign(timestamp, body), body)
        }
    };
    send(connector, headers, body);
}

/// Runs `body` through `connector.verify_webhook` with fixed headers.
pub fn verify_raw(connector: &dyn Connector, headers: &[(&str, &str)], body: &[u8]) {
    let headers = headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    send(connector, headers, body);
}

fn send(connector: &dyn Connector, headers: Vec<(String, String)>, body: &[u8]) {
    let req = WebhookRequest {
        method: "POST",
        uri: URI,
        headers: &headers,
        body,
        received_at: now(),
    };
    let _ = connector.verify_webhook(&req);
}

/// One API answer and the decoder to run on it.
pub struct Answer {
    pub decoder: u8,
    pub response: ApiResponse,
}

/// Input: one byte choosing the decoder, the status as text on the rest of that line
/// (`200`), `name: value` header lines, a blank line, the body. A status that is not a
/// number from 100 to 999 is 200.
pub fn answer(data: &[u8]) -> Option<Answer> {
    let (&decoder, rest) = data.split_first()?;
    let (first, rest) = split_line(rest);
    let status = std::str::from_utf8(first)
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .filter(|s| (100..=999).contains(s))
        .unwrap_or(200);
    let (head, body) = split_head(rest);
    let mut headers = HeaderMap::new();
    for (name, value) in header_lines(head) {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    }
    Some(Answer {
        decoder,
        response: ApiResponse {
            status,
            headers,
            body: Bytes::copy_from_slice(body),
        },
    })
}

/// The first line, and what follows it.
fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[data.len()..]),
    }
}

/// Splits at the first blank line: header lines before, the body after.
fn split_head(data: &[u8]) -> (&[u8], &[u8]) {
    if data.first() == Some(&b'\n') {
        return (&data[..0], &data[1..]);
    }
    match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &data[data.len()..]),
    }
}

fn header_lines(head: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    std::str::from_utf8(head)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim(), v.trim()))
}
