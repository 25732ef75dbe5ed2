//! Shared set-up: a simulator and a connector pointed at it, on one clock.
// Tests: a panic here is a failed test, not a crashed daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![allow(dead_code)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use revsync_sdk::http::Limits;
use revsync_sdk::{Change, Connector};
use revsync_stripe::config::StripeParams;
use revsync_stripe::sim::{Sim, SimConfig};
use revsync_stripe::StripeConnector;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const KEY: &str = "sk_test_sim";
pub const WHSEC: &str = "whsec_sim_secret";

pub async fn sim() -> Sim {
    Sim::start(SimConfig::default()).await
}

pub fn connector(sim: &Sim, extra: serde_json::Value) -> StripeConnector {
    let mut params =
        json!({"secret_key": KEY, "webhook_secret": WHSEC, "base_url": sim.base_url()});
    for (k, v) in extra.as_object().into_iter().flatten() {
        params[k] = v.clone();
    }
    let params = StripeParams::from_value(&params).expect("valid params");
    let clock = sim.clone();
    StripeConnector::new(params, Limits::new(100, Duration::from_secs(1)))
        .expect("connector builds")
        .with_clock(move || DateTime::<Utc>::from_timestamp(clock.now(), 0).expect("time"))
}

/// Read from `cursor` until the connector says there is no more; bounded.
pub async fn drain(
    c: &dyn Connector,
    object: &str,
    mut cursor: Option<String>,
) -> (Vec<Change>, Option<String>) {
    let mut all = Vec::new();
    for _ in 0..1000 {
        let f = c.fetch(object, cursor.as_deref()).await.expect("fetch");
        assert!(f.invalid.is_empty(), "{:?}", f.invalid);
        all.extend(f.changes);
        if f.cursor.is_some() {
            cursor = f.cursor;
        }
        if !f.more {
            return (all, cursor);
        }
    }
    panic!("fetch never finished");
}

/// One HTTP/1.1 request with `authorization` as given and `form` as its
/// `application/x-www-form-urlencoded` body, written out by hand as curl sends it; the status
/// and the JSON body.
pub async fn request(
    sim: &Sim,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    form: &str,
) -> (u16, Value) {
    let host = sim.base_url().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&host).await.unwrap();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap())
}
