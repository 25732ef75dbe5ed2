//! Stripe webhooks through the connector's `verify_webhook`: the `Stripe-Signature`
//! check, then the event parser (signed inside the target, or with fuzzed headers).
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use revsync_fuzz::now;
use revsync_sdk::Connector;
use revsync_stripe::webhook::compute_signature;

const SECRET: &str = "whsec_fuzz";

static CONNECTOR: LazyLock<Arc<dyn Connector>> = LazyLock::new(|| {
    revsync_fuzz::build(
        &revsync_stripe::Stripe,
        serde_json::json!({"secret_key": "sk_test_fuzz", "webhook_secret": SECRET}),
    )
});

fuzz_target!(|data: &[u8]| {
    revsync_fuzz::verify_webhook(&**CONNECTOR, data, |timestamp, body| {
        // The timestamp line is the header's `t=` as sent; the signature is over the
        // number it names.
        let t = timestamp.map_or_else(|| now().timestamp().to_string(), str::to_owned);
        let signed = t.trim().parse().unwrap_or_default();
        let header = format!("t={t},v1={}", compute_signature(SECRET, signed, body));
        vec![("stripe-signature".to_owned(), header)]
    });
});
