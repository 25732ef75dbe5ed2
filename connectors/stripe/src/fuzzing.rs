//! The fuzz targets' entry (feature `fuzzing`, see `fuzz/README.md`): one Stripe answer,
//! from status, headers and body, through the classification and the decoders the client
//! and the connector use, to a result. No decoding of its own lives here.

use std::sync::OnceLock;
use std::time::Duration;

use revsync_sdk::http::{self as sdk_http, AccountLimiter, ApiResponse, Limits};
use revsync_sdk::ConnectorError;
use serde_json::{json, Value};

use crate::client::{list_answer, StripePolicy};
use crate::config::StripeParams;
use crate::{created_id, StripeConnector};

/// The objects a list or event page is read for.
const OBJECTS: [&str; 3] = ["customers", "subscriptions", "invoices"];

struct Fixture {
    connector: StripeConnector,
    limiter: AccountLimiter,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let params = StripeParams::from_value(&json!({"secret_key": "sk_test_fuzz"}))
            .unwrap_or_else(|e| panic!("fuzzing params: {e:?}"));
        let limits = Limits::new(100, Duration::from_secs(1));
        Fixture {
            connector: StripeConnector::new(params, limits)
                .unwrap_or_else(|e| panic!("fuzzing connector: {e}")),
            limiter: AccountLimiter::new(limits),
        }
    })
}

/// Decodes one answer as received: `decoder % 3` picks a backfill list page, a page of
/// events (from a fresh cursor or one that saw an event in its second, in a narrowed
/// window or not), or a write's answer (the created or updated object's id); `decoder /
/// 4` the object. Returns how many records or items came out.
pub fn decode_answer(decoder: u8, answer: ApiResponse) -> Result<usize, ConnectorError> {
    let f = fixture();
    let resp = sdk_http::answer(&StripePolicy, &f.limiter, answer, "GET /fuzz")?;
    let pick = usize::from(decoder / 4) % OBJECTS.len();
    let Some(&object) = OBJECTS.get(pick) else {
        return Ok(0);
    };
    let v: Value = resp.json()?;
    let page = match decoder % 3 {
        0 => {
            let list = list_answer(v, "/v1/fuzz")?;
            f.connector
                .backfill_page(object, 1_700_000_000, None, &list, Default::default())?
        }
        1 => {
            let list = list_answer(v, "/v1/events")?;
            let seen = vec!["evt_1".to_owned()];
            let upper = (decoder & 16 != 0).then_some(1_700_000_100);
            f.connector
                .events_page(object, list.data, 1_700_000_000, &seen, upper)?
        }
        _ => return created_id(&v).map(|_| 1),
    };
    Ok(page.changes.len() + page.invalid.len())
}
