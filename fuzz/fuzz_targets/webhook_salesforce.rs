//! Salesforce Outbound Messages through the connector's `verify_webhook`: the SOAP
//! parser, then the OrganizationId check. Unsigned by design, so the whole input is the
//! body, which any client on the internet could send.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use revsync_sdk::Connector;

/// The org the fuzz connector expects (the corpus's messages name it).
const ORG: &str = "00D000000000001AAA";

static CONNECTOR: LazyLock<Arc<dyn Connector>> = LazyLock::new(|| {
    revsync_fuzz::build(
        &revsync_salesforce::Salesforce,
        serde_json::json!({
            "auth": {
                "flow": "client_credentials",
                "token_url": "https://login.example.invalid/services/oauth2/token",
                "client_id": "fuzz",
                "client_secret": "fuzz",
            },
            "organization_id": ORG,
        }),
    )
});

fuzz_target!(|data: &[u8]| {
    let headers = [("content-type", "text/xml; charset=utf-8")];
    revsync_fuzz::verify_raw(&**CONNECTOR, &headers, data);
});
