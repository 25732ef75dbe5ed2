//! Inbound dead letters: what came in from a system and could not be applied (a webhook
//! event that kept failing, a record its connector could not decode), kept with its raw
//! body and last error so an operator can see it and replay it.

use std::sync::atomic::{AtomicU32, Ordering};

use revsync_sdk::Change;
use serde::{Deserialize, Serialize};

use super::{Engine, EngineError};
use crate::store::{Table, WriteBatch};

/// Key prefix inside the inbox table (the queue is `q\0`, seen event ids `d\0`).
pub const PREFIX: &[u8] = b"x\0";

/// One record or event that could not be brought in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundDeadLetter {
    pub connector: String,
    pub object: String,
    /// The system's id for it, when known: replay reads it again by this id.
    pub external_id: Option<String>,
    /// Where it came from: `webhook`, `poll`, `fetch_by_ids`.
    pub source: String,
    /// The record as the system sent it, when there is one.
    pub raw: Option<String>,
    /// A webhook change given up on: replay applies it again as it was.
    pub change: Option<Change>,
    pub error: String,
    pub attempts: u32,
    /// When it was given up on, store microseconds.
    pub failed_ts: i64,
}

/// Keys in time order; the counter keeps two letters of one microsecond apart.
pub fn key(failed_ts: i64, n: u32) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(&failed_ts.max(0).to_be_bytes());
    k.extend_from_slice(&n.to_be_bytes());
    k
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Add `letter` to `batch` under a fresh key; returns the key.
pub fn put(batch: &mut WriteBatch, letter: &InboundDeadLetter) -> Vec<u8> {
    let k = key(letter.failed_ts, NEXT.fetch_add(1, Ordering::Relaxed));
    batch.put(Table::Inbox, k.clone(), encode(letter));
    k
}

pub fn encode(letter: &InboundDeadLetter) -> Vec<u8> {
    // JSON: the raw bodies are the systems' own text, readable as stored.
    serde_json::to_vec(letter).unwrap_or_default()
}

/// The letter's id as `dlq list` shows it and `dlq replay` takes it.
pub fn id_of(key: &[u8]) -> String {
    key.get(PREFIX.len()..)
        .unwrap_or_default()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn key_of(id: &str) -> Option<Vec<u8>> {
    if id.len() != 24 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut k = PREFIX.to_vec();
    for i in (0..id.len()).step_by(2) {
        k.push(u8::from_str_radix(id.get(i..i + 2)?, 16).ok()?);
    }
    Some(k)
}

impl Engine {
    /// Inbound dead letters (of one connector, or all), oldest first, with their ids.
    pub fn inbound_dead_letters(
        &self,
        connector: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, InboundDeadLetter)>, EngineError> {
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .store
                .scan(Table::Inbox, PREFIX, after.as_deref(), 256)?;
            let Some((last, _)) = page.last() else {
                return Ok(out);
            };
            after = Some(last.clone());
            let full = page.len() == 256;
            for (k, v) in page {
                let letter: InboundDeadLetter =
                    serde_json::from_slice(&v).map_err(|e| EngineError::Corrupt {
                        table: "inbox",
                        detail: e.to_string(),
                    })?;
                if connector.is_none_or(|c| c == letter.connector) {
                    out.push((id_of(&k), letter));
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            if !full {
                return Ok(out);
            }
        }
    }

    /// The inbound dead letter `id`, if there is one.
    pub fn inbound_dead_letter(&self, id: &str) -> Result<Option<InboundDeadLetter>, EngineError> {
        let Some(k) = key_of(id) else {
            return Ok(None);
        };
        self.store
            .get(Table::Inbox, &k)?
            .map(|v| {
                serde_json::from_slice(&v).map_err(|e| EngineError::Corrupt {
                    table: "inbox",
                    detail: e.to_string(),
                })
            })
            .transpose()
    }

    /// The key of the inbound dead letter `id`, for a batch that replays it.
    pub fn inbound_dead_letter_key(id: &str) -> Option<Vec<u8>> {
        key_of(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_garbage_is_refused() {
        let k = key(1_700_000_000_000_000, 7);
        assert_eq!(key_of(&id_of(&k)), Some(k));
        assert_eq!(key_of("zz"), None);
        assert_eq!(key_of(&"g".repeat(24)), None);
    }
}
