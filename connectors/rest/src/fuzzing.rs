//! The entries the `rest_answer` and `webhook_rest` fuzz targets drive (feature
//! `fuzzing`): any answer body through the list decoder and every paging style, and any
//! request through the declared signature check. No decoding of its own lives here.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use revsync_sdk::WebhookRequest;

use crate::config::{Incremental, ListRequest, Paging, TimeFormat, WebhookConfig};
use crate::read::{self, Cursor, Decode, Paths};
use crate::webhook::Scheme;

fn list(pick: u8) -> ListRequest {
    let paging = match pick % 6 {
        0 => Paging::None,
        1 => Paging::Page {
            param: "page".into(),
            start: 1,
            size_param: Some("per_page".into()),
            size: 2,
            more: Some("$.meta.more".into()),
        },
        2 => Paging::Offset {
            param: "offset".into(),
            size_param: None,
            size: 2,
            total: Some("$.total".into()),
        },
        3 => Paging::Cursor {
            param: "cursor".into(),
            from: "$.next_cursor".into(),
            more: Some("$.has_more".into()),
        },
        4 => Paging::NextUrl {
            from: "$.links.next".into(),
        },
        _ => Paging::LinkHeader,
    };
    ListRequest {
        path: "/v1/records".into(),
        query: BTreeMap::new(),
        records: if pick & 8 == 0 {
            "$.data".into()
        } else {
            "$".into()
        },
        paging,
        incremental: Some(Incremental {
            field: "updated_at".into(),
            param: "updated_since".into(),
            format: if pick & 16 == 0 {
                TimeFormat::Rfc3339
            } else {
                TimeFormat::Unix
            },
            lookback_secs: 0,
        }),
    }
}

static NO_FIELDS: BTreeMap<String, serde_json::Value> = BTreeMap::new();

fn decode() -> Decode<'static> {
    Decode {
        object: "records",
        key: "id",
        updated_at: Some("updated_at"),
        external_id_field: Some("revsync_id"),
        format: TimeFormat::Rfc3339,
        now: DateTime::<Utc>::UNIX_EPOCH,
        add_fields: &NO_FIELDS,
    }
}

/// First byte: the paging style and selector; the rest: the answer body. Then the request
/// for the page it points to, as the next poll would build it.
pub fn answer(data: &[u8]) -> usize {
    let Some((&pick, body)) = data.split_first() else {
        return 0;
    };
    let list = list(pick);
    let Ok(paths) = Paths::compile(&list) else {
        return 0;
    };
    let Ok(body) = serde_json::from_slice(body) else {
        return 0;
    };
    let link = (pick & 32 != 0).then_some(r#"<https://api.test/v1/records?p=2>; rel="next""#);
    match read::page(&list, &paths, &decode(), &Cursor::default(), &body, link) {
        Ok(f) => {
            let next = Cursor::parse(f.cursor.as_deref());
            let _ = read::request(&list, &next, "https://api.test");
            f.changes.len()
        }
        Err(_) => 0,
    }
}

fn scheme() -> Option<&'static Scheme> {
    static SCHEME: OnceLock<Option<Scheme>> = OnceLock::new();
    SCHEME
        .get_or_init(|| {
            let config: WebhookConfig = serde_json::from_value(serde_json::json!({
                "secret": "fuzz-secret", "signature_header": "X-Sig", "signature_prefix": "v1=",
                "signed": "{timestamp}.{body}", "timestamp_header": "X-Ts", "object": "records",
                "events": "$.events[*]", "event_id": "$.id", "record": "$.data"
            }))
            .ok()?;
            Scheme::new(config).ok()
        })
        .as_ref()
}

/// Input: timestamp line, signature line, then the body. With `sign` set (the first
/// byte odd), the signature is replaced by the right one, so the parser behind the check
/// is reached too.
pub fn webhook(data: &[u8]) -> usize {
    let Some((&flags, rest)) = data.split_first() else {
        return 0;
    };
    let mut parts = rest.splitn(3, |b| *b == b'\n');
    let ts = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let sig = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default();
    let Some(s) = scheme() else {
        return 0;
    };
    let sig = if flags & 1 == 1 {
        s.sign(Some(ts.trim()), body)
    } else {
        sig
    };
    let headers = vec![("x-ts".to_owned(), ts), ("x-sig".to_owned(), sig)];
    let received_at = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap_or_default();
    let req = WebhookRequest {
        method: "POST",
        uri: "https://hooks.test/webhooks/fuzz",
        headers: &headers,
        body,
        received_at,
    };
    s.verify(&req, &decode()).map_or(0, |e| e.len())
}
