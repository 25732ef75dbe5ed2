//! Write-back: a batch of pushes applied to a CSV file's rows, and the file replaced
//! atomically (a temporary file, synced, renamed over it), so a crash at any moment
//! leaves either the old file or the new one, never a torn one.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::Path;

use revsync_sdk::{ConnectorError, PushItem, PushOp, PushResult};

use crate::config::Format;
use crate::table::{self, Encoded, REVSYNC_ID};

/// A file's rows as they are, every one kept verbatim (rows revsync cannot read too: a
/// write-back never drops a row someone typed).
struct Sheet {
    header: Vec<String>,
    records: Vec<Vec<String>>,
    encoded: Encoded,
    crlf: bool,
}

impl Sheet {
    fn read(bytes: &[u8], format: &Format) -> Result<Self, String> {
        let (text, encoded) = table::decode(bytes, format);
        let crlf = text.windows(2).any(|w| w == b"\r\n");
        let mut rdr = table::reader(format, &text);
        let mut records = rdr.byte_records();
        let header = match records.next() {
            None => Vec::new(),
            Some(r) => table::header(&r.map_err(|e| e.to_string())?).map_err(|e| e.0)?,
        };
        let mut rows = Vec::new();
        for r in records {
            let r = r.map_err(|e| e.to_string())?;
            if r.len() == 1 && r.get(0).is_some_and(<[u8]>::is_empty) {
                continue;
            }
            rows.push(
                r.iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect(),
            );
        }
        Ok(Self {
            header,
            records: rows,
            encoded,
            crlf,
        })
    }

    fn column(&mut self, name: &str) -> usize {
        if let Some(i) = self.header.iter().position(|h| h == name) {
            return i;
        }
        let width = self.header.len();
        self.header.push(name.to_owned());
        for r in self.records.iter_mut().filter(|r| r.len() == width) {
            r.push(String::new());
        }
        width
    }

    fn set(&mut self, row: usize, fields: &BTreeMap<String, serde_json::Value>) {
        for (name, value) in fields {
            let col = self.column(name);
            let width = self.header.len();
            if let Some(r) = self.records.get_mut(row) {
                if r.len() < width {
                    r.resize(width, String::new());
                }
                if let Some(cell) = r.get_mut(col) {
                    *cell = cell_text(value);
                }
            }
        }
    }

    fn to_bytes(&self, format: &Format) -> Result<Vec<u8>, String> {
        let mut w = csv::WriterBuilder::new()
            .delimiter(format.delimiter)
            .quote(format.quote)
            .flexible(true)
            .terminator(if self.crlf {
                csv::Terminator::CRLF
            } else {
                csv::Terminator::Any(b'\n')
            })
            .from_writer(Vec::new());
        w.write_record(&self.header).map_err(|e| e.to_string())?;
        for r in &self.records {
            w.write_record(r).map_err(|e| e.to_string())?;
        }
        let text = w.into_inner().map_err(|e| e.to_string())?;
        Ok(self.encoded.encode(&text))
    }
}

/// A canonical value as a cell: text as it is, numbers and booleans as JSON writes them,
/// nothing as an empty cell, anything structured as its JSON.
fn cell_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Apply `items` to the file's `bytes` (empty: no file yet). Returns the new file and one
/// result per item: the row's key. `key`: the key column (a writable object has one).
pub fn apply(
    bytes: &[u8],
    format: &Format,
    key: &str,
    items: &[PushItem],
) -> Result<(Vec<u8>, Vec<PushResult>), ConnectorError> {
    let permanent = |detail: String| ConnectorError::Permanent {
        detail,
        status: None,
        body: None,
    };
    let mut sheet = Sheet::read(bytes, format).map_err(permanent)?;
    let key_col = sheet.column(key);
    let index = |sheet: &Sheet, col: Option<usize>| -> HashMap<String, usize> {
        let Some(col) = col else {
            return HashMap::new();
        };
        sheet
            .records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let k = r.get(col)?.trim();
                (!k.is_empty()).then(|| (k.to_owned(), i))
            })
            .collect()
    };
    let mut by_key = index(&sheet, Some(key_col));
    let by_id = index(&sheet, sheet.header.iter().position(|h| h == REVSYNC_ID));
    let mut removed = Vec::new();
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        let result = match &item.op {
            PushOp::Create { canonical_id } => {
                let id = canonical_id.to_string();
                let given = item
                    .fields
                    .get(key)
                    .map(cell_text)
                    .map(|k| k.trim().to_owned())
                    .filter(|k| !k.is_empty());
                // A retried create finds the row it made; a row already holding the key
                // is that record's copy: both are updated, never doubled.
                let existing = by_id
                    .get(&id)
                    .or_else(|| given.as_ref().and_then(|k| by_key.get(k)))
                    .copied();
                let row = match existing {
                    Some(row) => row,
                    None => {
                        let row = sheet.records.len();
                        sheet.records.push(vec![String::new(); sheet.header.len()]);
                        let k = given.clone().unwrap_or_else(|| id.clone());
                        if let Some(cell) =
                            sheet.records.get_mut(row).and_then(|r| r.get_mut(key_col))
                        {
                            *cell = k.clone();
                        }
                        by_key.insert(k, row);
                        row
                    }
                };
                sheet.set(row, &item.fields);
                let stamp =
                    BTreeMap::from([(REVSYNC_ID.to_owned(), serde_json::Value::String(id))]);
                if existing.is_none() {
                    sheet.set(row, &stamp);
                }
                Ok(sheet
                    .records
                    .get(row)
                    .and_then(|r| r.get(key_col))
                    .cloned()
                    .unwrap_or_default())
            }
            PushOp::Update { external_id } => match by_key.get(external_id).copied() {
                Some(row) => {
                    sheet.set(row, &item.fields);
                    Ok(external_id.clone())
                }
                None => Err(ConnectorError::NotFound),
            },
            PushOp::Delete { external_id } => {
                if let Some(row) = by_key.remove(external_id) {
                    removed.push(row);
                }
                Ok(external_id.clone())
            }
        };
        results.push(result);
    }
    removed.sort_unstable();
    for row in removed.into_iter().rev() {
        if row < sheet.records.len() {
            sheet.records.remove(row);
        }
    }
    Ok((sheet.to_bytes(format).map_err(permanent)?, results))
}

/// Replace `path` with `bytes`: written beside it, synced, renamed over it, and the folder
/// synced so the rename itself survives a power cut.
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.revsync-{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        if let Ok(meta) = std::fs::metadata(path) {
            f.set_permissions(meta.permissions())?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use uuid::Uuid;

    fn fields(v: serde_json::Value) -> BTreeMap<String, serde_json::Value> {
        serde_json::from_value(v).unwrap()
    }

    fn update(id: &str, v: serde_json::Value) -> PushItem {
        PushItem {
            op: PushOp::Update {
                external_id: id.into(),
            },
            fields: fields(v),
            version: 1,
        }
    }

    fn create(id: Uuid, v: serde_json::Value) -> PushItem {
        PushItem {
            op: PushOp::Create { canonical_id: id },
            fields: fields(v),
            version: 1,
        }
    }

    #[test]
    fn updates_creates_and_deletes_keep_every_other_row_and_column() {
        let file = b"id,email,notes,broken\r\n1,a@x.test,\"keep, this\",\r\n2,b@x.test,,\r\n3,only-two\r\n";
        let new = Uuid::now_v7();
        let (out, results) = apply(
            file,
            &Format::default(),
            "id",
            &[
                update("1", json!({"email": "a2@x.test", "phone": "+1 555"})),
                create(new, json!({"email": "c@x.test"})),
                PushItem {
                    op: PushOp::Delete {
                        external_id: "2".into(),
                    },
                    fields: BTreeMap::new(),
                    version: 1,
                },
                update("9", json!({"email": "nobody@x.test"})),
            ],
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            format!(
                "id,email,notes,broken,phone,revsync_id\r\n1,a2@x.test,\"keep, this\",,+1 555,\r\n3,only-two\r\n{new},c@x.test,,,,{new}\r\n"
            )
        );
        assert_eq!(results[0], Ok("1".into()));
        assert_eq!(results[1], Ok(new.to_string()));
        assert_eq!(results[3], Err(ConnectorError::NotFound));
    }

    #[test]
    fn a_retried_create_updates_the_row_it_made() {
        let id = Uuid::now_v7();
        let item = create(id, json!({"email": "c@x.test", "name": "C"}));
        let (once, _) = apply(
            b"",
            &Format::default(),
            "email",
            std::slice::from_ref(&item),
        )
        .unwrap();
        let (twice, r) = apply(&once, &Format::default(), "email", &[item]).unwrap();
        assert_eq!(once, twice);
        assert_eq!(r[0], Ok("c@x.test".into()));
        assert_eq!(
            String::from_utf8(once).unwrap(),
            format!("email,name,revsync_id\nc@x.test,C,{id}\n")
        );
    }

    #[test]
    fn replace_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("people.csv");
        std::fs::write(&path, "old").unwrap();
        replace(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
