//! The fuzz targets' entry (feature `fuzzing`, see `fuzz/README.md`): one Salesforce
//! answer, from status, headers and body, through the classification and the decoders the
//! client and the connector use, to a result. No decoding of its own lives here.

use std::sync::OnceLock;
use std::time::Duration;

use revsync_sdk::http::{self, AccountLimiter, ApiPolicy, ApiResponse, Limits, RetryPolicy};
use revsync_sdk::ConnectorError;
use serde_json::{json, Value};

use crate::client::{token_answer, HttpSettings, TokenPolicy};
use crate::config::SalesforceParams;
use crate::mapping::{self, OBJECTS};
use crate::{collection_answer, query_page, SalesforceConnector};

struct Fixture {
    connector: SalesforceConnector,
    limiter: AccountLimiter,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let params = SalesforceParams::from_value(&json!({
            "auth": {
                "flow": "client_credentials",
                "token_url": "https://login.example.invalid/services/oauth2/token",
                "client_id": "fuzz",
                "client_secret": "fuzz",
            },
            "organization_id": "00D000000000001",
        }))
        .unwrap_or_else(|e| panic!("fuzzing params: {e:?}"));
        let limits = Limits::new(25, Duration::from_secs(1));
        let http = HttpSettings {
            limits,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(1),
            max_response_bytes: usize::try_from(revsync_sdk::http::DEFAULT_MAX_RESPONSE_BYTES)
                .unwrap_or(usize::MAX),
            shutdown: revsync_sdk::Shutdown::default(),
        };
        Fixture {
            connector: SalesforceConnector::new(params, http)
                .unwrap_or_else(|e| panic!("fuzzing connector: {e}")),
            limiter: AccountLimiter::new(limits),
        }
    })
}

/// Decodes one answer as received: `decoder % 4` picks a query page (then the changes
/// and cursor of its records, from no cursor or from its first record's), a collection
/// write's results, or the token endpoint's answer; `decoder / 4` the object, and for
/// writes how many results are expected and whether they answer deletes. Returns how
/// many records or items came out.
pub fn decode_answer(decoder: u8, answer: ApiResponse) -> Result<usize, ConnectorError> {
    let f = fixture();
    let token = decoder % 4 == 3;
    let policy: &dyn ApiPolicy = if token {
        &TokenPolicy
    } else {
        &*f.connector.client.policy
    };
    let resp = http::answer(policy, &f.limiter, answer, "POST /fuzz")?;
    let pick = usize::from(decoder / 4) % OBJECTS.len();
    let Some(&object) = OBJECTS.get(pick) else {
        return Ok(0);
    };
    match decoder % 4 {
        0 | 1 => {
            let mut records = Vec::new();
            query_page(&resp.json::<Value>()?, &mut records)?;
            let from = (decoder % 4 == 1)
                .then(|| {
                    records
                        .first()
                        .and_then(|r| mapping::to_change(object, r).ok())
                })
                .flatten()
                .map(|(_, at)| at)
                .unwrap_or(mapping::Cursor {
                    stamp: chrono::DateTime::UNIX_EPOCH,
                    id: mapping::LOWEST_ID.to_owned(),
                });
            // Answered "now", past the overlap: the read settles what it can.
            let answered = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
            let page =
                f.connector
                    .page(object, mapping::ReadState::at(from), &records, answered)?;
            Ok(page.changes.len() + page.invalid.len())
        }
        2 => {
            let n = usize::from(decoder / 16);
            let results = collection_answer(&resp.json()?, n, decoder & 8 != 0)?;
            Ok(results.len())
        }
        _ => token_answer(&resp).map(|_| 1),
    }
}
