//! The fuzz targets' entry (feature `fuzzing`, see `fuzz/README.md`): one HubSpot answer,
//! from status, headers and body, through the classification and the decoders the client
//! and the connector use, to a result. No decoding of its own lives here.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use revsync_sdk::http::{self, ApiResponse, Limits};
use revsync_sdk::{ConnectorError, Fetched};
use serde_json::{json, Value};

use crate::config::HubSpotParams;
use crate::{assign, client, mapping, HubSpotConnector};

fn connector() -> &'static HubSpotConnector {
    static CONNECTOR: OnceLock<HubSpotConnector> = OnceLock::new();
    CONNECTOR.get_or_init(|| {
        let params = HubSpotParams::from_value(&json!({"token": "fuzz"}))
            .unwrap_or_else(|e| panic!("fuzzing params: {e:?}"));
        HubSpotConnector::new(params, Limits::new(100, Duration::from_secs(10)))
            .unwrap_or_else(|e| panic!("fuzzing connector: {e}"))
    })
}

/// Decodes one answer as received: `decoder % 4` picks a list page, a search page, an
/// association read or a batch write's answer; `decoder / 4` the object (and, for
/// batches, whether results are matched by email). Returns how many records or items
/// came out.
pub fn decode_answer(decoder: u8, answer: ApiResponse) -> Result<usize, ConnectorError> {
    let c = connector();
    let resp = http::answer(
        &c.client.policy,
        c.client.api.limiter(),
        answer,
        "POST /fuzz",
    )?;
    let pick = usize::from(decoder / 4) % mapping::OBJECTS.len();
    let Some(spec) = mapping::OBJECTS.get(pick) else {
        return Ok(0);
    };
    let mut out = Fetched::default();
    match decoder % 4 {
        0 => {
            let (objs, _next) = client::list_page(&resp.json()?)?;
            // The recycle bin's pages are list pages too, dated by `archivedAt`.
            for o in &objs {
                let _ = o
                    .get("archivedAt")
                    .and_then(Value::as_str)
                    .and_then(mapping::parse_time);
            }
            c.changes(spec, &objs, None, &mut out);
        }
        1 => {
            let objs = client::results_of(&resp.json()?)?;
            for o in &objs {
                let _ = (
                    o.get("id").and_then(client::value_id),
                    mapping::modified_at(spec, o).map(|t| t.timestamp_millis()),
                );
            }
            c.changes(spec, &objs, Some(&BTreeMap::new()), &mut out);
        }
        2 => {
            let mut found = BTreeMap::new();
            client::association_page(&resp.json()?, &mut found)?;
            return Ok(found.len());
        }
        _ => {
            let answer = client::batch_answer(&resp.json()?)?;
            let group: Vec<(usize, Value, String)> = (0..3)
                .map(|i| {
                    let key = format!("{i}@example.com");
                    (i, json!({"objectWriteTraceId": i.to_string()}), key)
                })
                .collect();
            let key_prop = (decoder & 16 != 0).then_some("email");
            let mut results = vec![None; group.len()];
            assign(&group, &answer, key_prop, &mut results);
            return Ok(results.iter().flatten().count());
        }
    }
    Ok(out.changes.len() + out.invalid.len())
}
