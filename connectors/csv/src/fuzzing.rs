//! The entry the `csv_table` fuzz target drives (feature `fuzzing`): any bytes as a file,
//! read and then written back through the same code the connector runs.

use std::collections::BTreeMap;

use revsync_sdk::{PushItem, PushOp};

use crate::config::Format;
use crate::{table, write};

/// The first byte picks delimiter, quote, encoding and whether the object has a key; the
/// rest is the file. Returns how many rows were read, so the work is not optimized away.
pub fn parse_and_write(data: &[u8]) -> usize {
    let Some((&pick, file)) = data.split_first() else {
        return 0;
    };
    let format = Format {
        delimiter: match pick & 3 {
            0 => b',',
            1 => b';',
            2 => b'\t',
            _ => b'|',
        },
        quote: if pick & 4 == 0 { b'"' } else { b'\'' },
        encoding: if pick & 8 == 0 {
            encoding_rs::UTF_8
        } else {
            encoding_rs::WINDOWS_1252
        },
    };
    let key = (pick & 16 == 0).then_some("id");
    let read = match table::parse(file, &format, key) {
        Ok(t) => t.rows.len() + t.bad.len(),
        Err(_) => 0,
    };
    let items = [
        PushItem {
            op: PushOp::Update {
                external_id: "1".into(),
            },
            fields: BTreeMap::from([("email".to_owned(), serde_json::json!("a@x.test"))]),
            version: 1,
        },
        PushItem {
            op: PushOp::Create {
                canonical_id: uuid::Uuid::nil(),
            },
            fields: BTreeMap::from([("name".to_owned(), serde_json::json!("N, \"q\"\n"))]),
            version: 1,
        },
    ];
    if let Ok((out, _)) = write::apply(file, &format, key.unwrap_or("id"), &items) {
        // What revsync writes, it reads back whole.
        let _ = table::parse(&out, &format, None);
    }
    read
}
