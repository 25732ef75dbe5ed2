//! Zendesk webhooks through the connector's `verify_webhook`: the HMAC signature and
//! timestamp checks, then the event parser (signed inside the target, or with fuzzed
//! headers).
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use revsync_fuzz::now;
use revsync_sdk::Connector;
use revsync_zendesk::config::SignatureOrder;
use revsync_zendesk::webhook::{sign, SIGNATURE, TIMESTAMP};

const SECRET: &str = "fuzz-webhook-secret";

static CONNECTOR: LazyLock<Arc<dyn Connector>> = LazyLock::new(|| {
    revsync_fuzz::build(
        &revsync_zendesk::Zendesk,
        serde_json::json!({
            "subdomain": "fuzz",
            "auth": {"method": "api_token", "email": "ops@example.com", "token": "fuzz"},
            "webhook_secret": SECRET,
        }),
    )
});

fuzz_target!(|data: &[u8]| {
    revsync_fuzz::verify_webhook(&**CONNECTOR, data, |timestamp, body| {
        let ts = timestamp.map_or_else(|| now().to_rfc3339(), str::to_owned);
        let signature = sign(SECRET, SignatureOrder::TimestampBody, &ts, body);
        vec![
            (SIGNATURE.to_owned(), signature),
            (TIMESTAMP.to_owned(), ts),
            ("x-zendesk-webhook-invocation-id".to_owned(), "1".to_owned()),
        ]
    });
});
