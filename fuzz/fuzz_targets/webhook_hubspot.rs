//! HubSpot webhooks through the connector's `verify_webhook`: v3 signature and timestamp
//! checks, then the event parser (signed inside the target, or with fuzzed headers).
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use revsync_fuzz::{now, URI};
use revsync_hubspot::webhook::{sign_v3, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use revsync_sdk::Connector;

const SECRET: &str = "fuzz-client-secret";

static CONNECTOR: LazyLock<Arc<dyn Connector>> = LazyLock::new(|| {
    revsync_fuzz::build(
        &revsync_hubspot::HubSpot,
        serde_json::json!({"token": "fuzz", "client_secret": SECRET}),
    )
});

fuzz_target!(|data: &[u8]| {
    revsync_fuzz::verify_webhook(&**CONNECTOR, data, |timestamp, body| {
        let ts = timestamp.map_or_else(|| now().timestamp_millis().to_string(), str::to_owned);
        let signed_ms = ts.trim().parse().unwrap_or_default();
        let signature = sign_v3(SECRET, "POST", URI, body, signed_ms);
        vec![
            (SIGNATURE_HEADER.to_owned(), signature),
            (TIMESTAMP_HEADER.to_owned(), ts),
        ]
    });
});
