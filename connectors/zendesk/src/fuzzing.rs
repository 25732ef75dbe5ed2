//! The fuzz targets' entry (feature `fuzzing`, see `fuzz/README.md`): one Zendesk answer,
//! from status, headers and body, through the classification and the decoders the client
//! and the connector use, to a result. No decoding of its own lives here.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use revsync_sdk::http::{self, AccountLimiter, ApiResponse, Limits};
use revsync_sdk::ConnectorError;
use serde_json::Value;

use crate::client::{job_outcome, submitted_job, ZendeskPolicy};
use crate::{by_index, delete_result, export_page, item_result, organizations_page};

struct Fixture {
    policy: ZendeskPolicy,
    limiter: AccountLimiter,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| Fixture {
        policy: ZendeskPolicy {
            exports: Arc::new(AccountLimiter::new(Limits::new(
                10,
                Duration::from_secs(60),
            ))),
        },
        limiter: AccountLimiter::new(Limits::new(700, Duration::from_secs(60))),
    })
}

/// Decodes one answer as received: `decoder % 3` picks a cursor export page (users or
/// tickets, from a start time or a cursor), an organization time export page (fresh or
/// repeating a second), or a bulk job's status and its per-item results (updates by
/// index, deletes by id). Returns how many records or items came out.
pub fn decode_answer(decoder: u8, answer: ApiResponse) -> Result<usize, ConnectorError> {
    let f = fixture();
    let resp = http::answer(&f.policy, &f.limiter, answer, "GET /fuzz")?;
    let v: Value = resp.json()?;
    let flag = decoder & 8 != 0;
    let page = match decoder % 3 {
        0 => {
            let object = if flag { "tickets" } else { "users" };
            let cursor = (decoder & 16 != 0).then_some("c:MTU3NjYxMzUzOS4wfHw0Njd8");
            export_page(object, &v, cursor)?
        }
        1 => {
            let (start, seen) = if flag {
                (1_700_000_000, BTreeSet::from(["1".to_owned()]))
            } else {
                (0, BTreeSet::new())
            };
            organizations_page(&v, start, &seen)?
        }
        _ => {
            let (status, id) = submitted_job(&v)?;
            let Some(job) = job_outcome(&status, &id)? else {
                return Ok(0);
            };
            if flag {
                let done = ["1", "2", "3"]
                    .iter()
                    .filter(|id| delete_result(&job, id).is_ok())
                    .count();
                return Ok(done);
            }
            let done = by_index(&job.results, 3)
                .into_iter()
                .filter(|r| item_result(r.clone()).is_ok())
                .count();
            return Ok(done);
        }
    };
    Ok(page.changes.len() + page.invalid.len())
}
