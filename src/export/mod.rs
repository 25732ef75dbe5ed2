//! `revsync records export`: every canonical record of one kind, as CSV or JSON lines,
//! with its fields, every system's id for it, the records merged into it and each source
//! copy (ADR 0036).
//!
//! The walk reads the `Records` table in key order one page at a time and writes each row
//! as soon as it is built, so memory holds one page and one row, whatever the store holds.
//! It runs wherever the store is open: inside the daemon behind `GET /records/export`
//! ([`stream`]), or in the CLI when no daemon holds the store.

pub mod client;
pub mod stream;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use revsync_sdk::{Kind, Record, Value};
use serde_json::{json, Value as Json};
use uuid::Uuid;

use crate::engine::codec::{self, AuditEntry, AuditEvent};
use crate::engine::Mappings;
use crate::store::{scan_pages, Store, StoreError, Table};

/// Records read per store call. A page is decoded whole before its rows are written, so
/// this bounds what the walk holds besides the row being written.
pub const PAGE_RECORDS: usize = 256;

/// Audit entries read per store call while looking for a record's merges.
const PAGE_AUDIT: usize = 256;

/// What the rows are written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A header row, then one row per record (RFC 4180 quoting).
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Jsonl => "application/x-ndjson",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error("corrupt {table} entry {key}: {detail}")]
    Corrupt {
        table: &'static str,
        key: String,
        detail: String,
    },
    /// Writing the output failed (a full disk; inside the daemon, the client went away).
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
}

impl From<csv::Error> for ExportError {
    fn from(e: csv::Error) -> Self {
        match e.into_kind() {
            csv::ErrorKind::Io(io) => ExportError::Io(io),
            other => ExportError::Io(std::io::Error::other(format!("{other:?}"))),
        }
    }
}

/// One export: a kind, a format, and the systems that get an id column.
#[derive(Debug, Clone)]
pub struct Export {
    kind: Kind,
    format: Format,
    /// Connectors with an object of this kind, sorted: one `<connector>_id` column each.
    connectors: Vec<String>,
}

impl Export {
    /// The id columns are the configured connectors that hold this kind, so the header
    /// depends on the configuration only, never on what the walk meets. A link of a
    /// connector configured no more still shows in `sources`.
    pub fn new(kind: Kind, format: Format, mappings: &Mappings) -> Self {
        let connectors = mappings
            .objects
            .iter()
            .filter(|m| m.kind == kind)
            .map(|m| m.connector.clone());
        Self::with_connectors(kind, format, connectors)
    }

    pub fn with_connectors(
        kind: Kind,
        format: Format,
        connectors: impl IntoIterator<Item = String>,
    ) -> Self {
        let connectors: BTreeSet<String> = connectors.into_iter().collect();
        Self {
            kind,
            format,
            connectors: connectors.into_iter().collect(),
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The CSV header: id, kind, archived, times, the kind's well-known fields in schema
    /// order, `custom` (every other field, as one JSON object), one id column per
    /// connector, `merged_from`, `sources`.
    pub fn columns(&self) -> Vec<String> {
        let mut cols: Vec<String> = ["id", "kind", "archived", "created_at", "updated_at"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        cols.extend(self.kind.fields().iter().map(|f| f.name.to_owned()));
        cols.push("custom".into());
        cols.extend(self.connectors.iter().map(|c| format!("{c}_id")));
        cols.push("merged_from".into());
        cols.push("sources".into());
        cols
    }

    /// Write every live record of the kind to `out` (which should buffer: rows arrive in
    /// small writes) and return how many. Records absorbed by a merge are not rows of
    /// their own; they are listed in their survivor's `merged_from`.
    pub fn run(&self, store: &dyn Store, out: &mut dyn Write) -> Result<u64, ExportError> {
        let mut sink = match self.format {
            Format::Csv => {
                let mut w = csv::Writer::from_writer(out);
                w.write_record(self.columns())?;
                Sink::Csv(w)
            }
            Format::Jsonl => Sink::Jsonl(out),
        };
        let mut rows = 0u64;
        for page in scan_pages(store, Table::Records, b"", PAGE_RECORDS) {
            for (key, value) in page? {
                let corrupt = |e: postcard::Error| ExportError::Corrupt {
                    table: "records",
                    key: hex(&key),
                    detail: e.to_string(),
                };
                if codec::decode_record_kind(&value).map_err(corrupt)? != self.kind {
                    continue;
                }
                let record = codec::decode_record(&value).map_err(corrupt)?;
                if record.merged_into.is_some() {
                    continue;
                }
                let merged = merged_from(store, record.id)?;
                match &mut sink {
                    Sink::Csv(w) => w.write_record(self.csv_row(&record, &merged))?,
                    Sink::Jsonl(w) => {
                        serde_json::to_writer(&mut **w, &self.json_row(&record, &merged))
                            .map_err(std::io::Error::from)?;
                        w.write_all(b"\n")?;
                    }
                }
                rows += 1;
            }
        }
        match sink {
            Sink::Csv(mut w) => w.flush()?,
            Sink::Jsonl(w) => w.flush()?,
        }
        Ok(rows)
    }

    fn csv_row(&self, r: &Record, merged: &BTreeSet<Uuid>) -> Vec<String> {
        let time = |us| {
            crate::engine::view::time(us)
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        let mut row = vec![
            r.id.to_string(),
            r.kind.as_str().to_owned(),
            r.archived.to_string(),
            time(r.created_ts),
            time(r.updated_ts),
        ];
        row.extend(
            self.kind
                .fields()
                .iter()
                .map(|f| r.value(f.name).map(cell).unwrap_or_default()),
        );
        let custom = custom_fields(r);
        row.push(if custom.is_empty() {
            String::new()
        } else {
            Json::Object(custom).to_string()
        });
        for c in &self.connectors {
            let ids: Vec<&str> = r
                .links
                .iter()
                .filter(|l| &l.connector == c)
                .map(|l| l.external_id.as_str())
                .collect();
            row.push(ids.join(";"));
        }
        row.push(join(merged.iter().map(Uuid::to_string)));
        row.push(join(r.links.iter().map(|l| {
            format!("{}:{}:{}", l.connector, l.object, l.external_id)
        })));
        row
    }

    fn json_row(&self, r: &Record, merged: &BTreeSet<Uuid>) -> Json {
        let mut ids: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for l in &r.links {
            ids.entry(&l.connector).or_default().push(&l.external_id);
        }
        json!({
            "id": r.id,
            "kind": r.kind,
            "archived": r.archived,
            "created_at": crate::engine::view::time(r.created_ts),
            "updated_at": crate::engine::view::time(r.updated_ts),
            "fields": r.fields.iter().map(|(k, e)| (k.clone(), e.value.to_json())).collect::<serde_json::Map<_, _>>(),
            "ids": ids,
            "merged_from": merged,
            "sources": r.links.iter().map(|l| json!({
                "connector": l.connector, "object": l.object, "external_id": l.external_id,
            })).collect::<Vec<_>>(),
        })
    }
}

#[allow(
    clippy::large_enum_variant,
    reason = "one per export: boxing the CSV writer saves nothing"
)]
enum Sink<'a> {
    Csv(csv::Writer<&'a mut dyn Write>),
    Jsonl(&'a mut dyn Write),
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(";")
}

fn hex(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// A value as one CSV cell: text as it is, numbers and flags as written, a relation as
/// the id it names, money, lists and structured values as compact JSON (lossless, and
/// the same shape `records get` shows).
fn cell(v: &Value) -> String {
    match v {
        Value::Ref(id) => id.to_string(),
        Value::ExtRef {
            connector,
            object,
            id,
        } => format!("{connector}:{object}:{id}"),
        other => match other.to_json() {
            Json::Null => String::new(),
            Json::String(s) => s,
            j => j.to_string(),
        },
    }
}

/// Every field the kind's schema does not name (custom ones without their `custom.`
/// prefix), as JSON: one column, whatever fields the walk meets.
fn custom_fields(r: &Record) -> serde_json::Map<String, Json> {
    r.fields
        .iter()
        .filter(|(k, _)| r.kind.field(k).is_none())
        .map(|(k, e)| {
            let name = k.strip_prefix("custom.").unwrap_or(k);
            (name.to_owned(), e.value.to_json())
        })
        .collect()
}

/// The records absorbed into `id`, directly or through a record that absorbed others
/// first, from the `Merged` entries of the audit trails. Each is checked against its own
/// tombstone (it must still name its survivor), so only merges that stand are listed.
fn merged_from(store: &dyn Store, id: Uuid) -> Result<BTreeSet<Uuid>, ExportError> {
    let mut found = BTreeSet::new();
    let mut todo = vec![id];
    while let Some(survivor) = todo.pop() {
        for page in scan_pages(store, Table::Audit, survivor.as_bytes(), PAGE_AUDIT) {
            for (key, value) in page? {
                let entry: AuditEntry =
                    codec::decode(&value).map_err(|e| ExportError::Corrupt {
                        table: "audit",
                        key: hex(&key),
                        detail: e.to_string(),
                    })?;
                let AuditEvent::Merged {
                    survivor: s,
                    absorbed,
                    ..
                } = entry.event
                else {
                    continue;
                };
                if s != survivor || absorbed == id || found.contains(&absorbed) {
                    continue;
                }
                let stands = crate::engine::read_record(store, absorbed)?
                    .is_some_and(|a| a.merged_into == Some(survivor));
                if stands {
                    found.insert(absorbed);
                    todo.push(absorbed);
                }
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::codec::{audit_key, encode, encode_record, SyncStates};
    use crate::store::{MemStore, WriteBatch};
    use revsync_sdk::{FieldEntry, Link, Provenance};

    /// A person numbered `n` (ids in creation order), with an email and one HubSpot copy.
    pub(crate) fn person(n: u32) -> Record {
        let mut id = [0u8; 16];
        id[12..].copy_from_slice(&n.to_be_bytes());
        let mut r = Record::new(Uuid::from_bytes(id), Kind::Person, 1_700_000_000_000_000);
        let from = Provenance {
            connector: "hubspot-main".into(),
            source_ts: 1,
            observed_ts: 2,
        };
        r.fields.insert(
            "email".into(),
            FieldEntry {
                value: Value::Text(format!("p{n}@example.com")),
                from,
            },
        );
        r.links.push(Link {
            connector: "hubspot-main".into(),
            object: "contacts".into(),
            external_id: n.to_string(),
            source_ts: 1,
        });
        r
    }

    pub(crate) fn put(b: &mut WriteBatch, r: &Record) {
        b.put(
            Table::Records,
            codec::record_key(r.id),
            encode_record(r, &SyncStates::new()),
        );
    }

    fn merged(b: &mut WriteBatch, survivor: &Record, absorbed: &mut Record, at: i64) {
        absorbed.merged_into = Some(survivor.id);
        let entry = AuditEntry {
            record: survivor.id,
            observed_ts: at,
            event: AuditEvent::Merged {
                survivor: survivor.id,
                absorbed: absorbed.id,
                evidence: "email".into(),
            },
        };
        b.put(
            Table::Audit,
            audit_key(survivor.id, at, absorbed.id.as_bytes()),
            encode(&entry),
        );
    }

    #[test]
    fn merged_from_follows_chains_and_skips_merges_that_no_longer_stand() {
        let (a, mut b_rec, mut c, mut d) = (person(1), person(2), person(3), person(4));
        let mut b = WriteBatch::new();
        // C into B, then B into A: A was merged from both.
        merged(&mut b, &b_rec, &mut c, 10);
        merged(&mut b, &a, &mut b_rec, 20);
        // A's trail names D, but D's own tombstone names no survivor (undone).
        merged(&mut b, &a, &mut d, 30);
        d.merged_into = None;
        for r in [&a, &b_rec, &c, &d] {
            put(&mut b, r);
        }
        let s = MemStore::new();
        s.write(b).unwrap();
        assert_eq!(
            merged_from(&s, a.id).unwrap(),
            BTreeSet::from([b_rec.id, c.id])
        );
        assert!(merged_from(&s, d.id).unwrap().is_empty());

        // The export: A and D are rows, B and C are A's merged_from.
        let mut out = Vec::new();
        let e = Export::with_connectors(Kind::Person, Format::Jsonl, ["hubspot-main".into()]);
        assert_eq!(e.run(&s, &mut out).unwrap(), 2);
        let lines: Vec<Json> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["id"], json!(a.id));
        assert_eq!(lines[0]["merged_from"], json!([b_rec.id, c.id]));
        assert_eq!(lines[1]["id"], json!(d.id));
    }

    #[test]
    fn cells_are_plain_text_ids_or_compact_json() {
        let money = Value::Money {
            amount_minor: 129900,
            currency: "USD".into(),
        };
        assert_eq!(cell(&money), r#"{"amount_minor":129900,"currency":"USD"}"#);
        assert_eq!(cell(&Value::Null), "");
        assert_eq!(cell(&Value::Int(-3)), "-3");
        assert_eq!(cell(&Value::Bool(false)), "false");
        assert_eq!(cell(&Value::Text("a, \"b\"".into())), "a, \"b\"");
        let id = Uuid::from_bytes([5; 16]);
        assert_eq!(cell(&Value::Ref(id)), id.to_string());
        let ext = Value::ExtRef {
            connector: "hubspot-main".into(),
            object: "companies".into(),
            id: "9".into(),
        };
        assert_eq!(cell(&ext), "hubspot-main:companies:9");
        let list = Value::List(vec![Value::Text("a.io".into()), Value::Text("b.io".into())]);
        assert_eq!(cell(&list), r#"["a.io","b.io"]"#);
    }

    #[test]
    fn the_header_depends_on_the_kind_and_the_connectors_only() {
        let e = Export::with_connectors(
            Kind::Organization,
            Format::Csv,
            [
                "zendesk-main".into(),
                "hubspot-main".into(),
                "zendesk-main".into(),
            ],
        );
        let cols = e.columns();
        assert_eq!(
            cols[..6],
            ["id", "kind", "archived", "created_at", "updated_at", "name"]
        );
        assert_eq!(
            cols[cols.len() - 5..],
            [
                "custom",
                "hubspot-main_id",
                "zendesk-main_id",
                "merged_from",
                "sources"
            ]
        );
        assert_eq!(cols.len(), 5 + Kind::Organization.fields().len() + 5);
        // No record: the header alone.
        let mut out = Vec::new();
        assert_eq!(e.run(&MemStore::new(), &mut out).unwrap(), 0);
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 1);
    }
}
