//! A CSV file read into rows: decoding, the header, each row's key and content hash, and
//! the rows that cannot be read (each with its line), which never stop the others.

use std::borrow::Cow;
use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::config::Format;

/// The column revsync stamps with the canonical id of each row it creates, so a retried
/// create finds its row instead of adding a second.
pub const REVSYNC_ID: &str = "revsync_id";

/// A content hash: enough bits that two different rows never share one.
pub type Hash = [u8; 16];

/// A row that was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The line the row starts on (1 is the header).
    pub line: u64,
    /// The key column's value, or the row's content hash (hex) when the object has none.
    pub key: String,
    /// One cell per header column.
    pub cells: Vec<String>,
    pub hash: Hash,
}

/// A row that could not be read, with why and what it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad {
    pub line: u64,
    /// Its key, when the key cell could be read: a replay reads the row again by it.
    pub key: Option<String>,
    /// The row as text, column by column (lossy where it was not valid text).
    pub raw: serde_json::Value,
    pub error: String,
    pub hash: Hash,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Row>,
    pub bad: Vec<Bad>,
}

/// What makes a whole file unreadable (no rows can be trusted without a header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError(pub String);

/// The file's text as UTF-8 bytes, and whether it began with a UTF-8 byte order mark.
/// UTF-8 is kept as bytes so that one row with a bad sequence is reported on its own; a
/// UTF-16 BOM wins over the configured encoding, as spreadsheets save such files.
pub fn decode<'a>(bytes: &'a [u8], format: &Format) -> (Cow<'a, [u8]>, Encoded) {
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return (Cow::Borrowed(rest), Encoded::Utf8 { bom: true });
    }
    let utf16 = match bytes {
        [0xFF, 0xFE, ..] => Some(encoding_rs::UTF_16LE),
        [0xFE, 0xFF, ..] => Some(encoding_rs::UTF_16BE),
        _ => None,
    };
    if let Some(enc) = utf16 {
        let (text, _, _) = enc.decode(bytes);
        return (
            Cow::Owned(text.into_owned().into_bytes()),
            Encoded::Utf16 {
                big_endian: enc == encoding_rs::UTF_16BE,
            },
        );
    }
    if format.encoding == encoding_rs::UTF_8 {
        return (Cow::Borrowed(bytes), Encoded::Utf8 { bom: false });
    }
    let (text, _, _) = format.encoding.decode(bytes);
    (
        Cow::Owned(text.into_owned().into_bytes()),
        Encoded::Other(format.encoding),
    )
}

/// How a file was encoded, so a write-back keeps it that way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoded {
    Utf8 { bom: bool },
    Utf16 { big_endian: bool },
    Other(&'static encoding_rs::Encoding),
}

impl Encoded {
    /// UTF-8 text as this encoding's bytes.
    pub fn encode(self, text: &[u8]) -> Vec<u8> {
        match self {
            Encoded::Utf8 { bom } => {
                let mut out = Vec::with_capacity(text.len() + 3);
                if bom {
                    out.extend_from_slice(b"\xEF\xBB\xBF");
                }
                out.extend_from_slice(text);
                out
            }
            Encoded::Utf16 { big_endian } => {
                let s = String::from_utf8_lossy(text);
                let mut out = if big_endian {
                    vec![0xFE, 0xFF]
                } else {
                    vec![0xFF, 0xFE]
                };
                for u in s.encode_utf16() {
                    let b = if big_endian {
                        u.to_be_bytes()
                    } else {
                        u.to_le_bytes()
                    };
                    out.extend_from_slice(&b);
                }
                out
            }
            Encoded::Other(enc) => {
                let s = String::from_utf8_lossy(text);
                enc.encode(&s).0.into_owned()
            }
        }
    }
}

pub fn reader<'a>(format: &Format, text: &'a [u8]) -> csv::Reader<&'a [u8]> {
    csv::ReaderBuilder::new()
        .delimiter(format.delimiter)
        .quote(format.quote)
        .has_headers(false)
        .flexible(true)
        .from_reader(text)
}

/// The header's column names, checked: none empty, none twice.
pub fn header(record: &csv::ByteRecord) -> Result<Vec<String>, FileError> {
    let mut names: Vec<String> = Vec::with_capacity(record.len());
    for (i, field) in record.iter().enumerate() {
        let name = std::str::from_utf8(field)
            .map_err(|_| FileError(format!("column {} of the header is not valid text", i + 1)))?
            .trim()
            .to_owned();
        if name.is_empty() {
            return Err(FileError(format!(
                "column {} of the header has no name",
                i + 1
            )));
        }
        if names.contains(&name) {
            return Err(FileError(format!("column `{name}` is in the header twice")));
        }
        names.push(name);
    }
    Ok(names)
}

/// Parse `bytes` (the whole file). `key`: the key column, if the object has one.
pub fn parse(bytes: &[u8], format: &Format, key: Option<&str>) -> Result<Table, FileError> {
    let (text, _) = decode(bytes, format);
    let mut rdr = reader(format, &text);
    let mut records = rdr.byte_records();
    let first = match records.next() {
        None => return Ok(Table::default()),
        Some(r) => r.map_err(|e| FileError(format!("the header cannot be read: {e}")))?,
    };
    let header = header(&first)?;
    let key_col = match key {
        None => None,
        Some(k) => Some(header.iter().position(|h| h == k).ok_or_else(|| {
            FileError(format!(
                "no column `{k}` (the object's key) in the header: {}",
                header.join(", ")
            ))
        })?),
    };
    let mut table = Table {
        header,
        ..Table::default()
    };
    let mut lines: HashMap<String, u64> = HashMap::new();
    let mut counter = Lines::new(&text);
    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                // csv only fails here on input it cannot go on from: keep what was read.
                let line = e.position().map_or(0, csv::Position::line);
                table.bad.push(Bad {
                    line,
                    key: None,
                    raw: serde_json::Value::Null,
                    error: format!("line {line}: {e}"),
                    hash: hash_bytes(&[e.to_string().as_bytes()]),
                });
                break;
            }
        };
        let line = counter.line_at(record.position().map_or(0, csv::Position::byte));
        if record.len() == 1 && record.get(0).is_some_and(<[u8]>::is_empty) {
            continue; // a blank line
        }
        match row(&table.header, key_col, line, &record) {
            Ok(row) => match lines.get(&row.key) {
                Some(first) => table.bad.push(Bad {
                    line,
                    key: None,
                    raw: raw(&table.header, &record),
                    error: format!("line {line}: key `{}` is already on line {first}", row.key),
                    hash: row.hash,
                }),
                None => {
                    lines.insert(row.key.clone(), line);
                    table.rows.push(row);
                }
            },
            Err(error) => table.bad.push(Bad {
                line,
                key: key_col
                    .and_then(|i| record.get(i))
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .map(|k| k.trim().to_owned())
                    .filter(|k| !k.is_empty()),
                raw: raw(&table.header, &record),
                error: format!("line {line}: {error}"),
                hash: hash_bytes(&record.iter().collect::<Vec<_>>()),
            }),
        }
    }
    Ok(table)
}

/// Line numbers from byte offsets. csv's own line count lags a line after each CRLF and
/// skips blank lines; its byte offset can point at the end of the previous line.
struct Lines<'a> {
    text: &'a [u8],
    at: usize,
    line: u64,
}

impl<'a> Lines<'a> {
    fn new(text: &'a [u8]) -> Self {
        Self {
            text,
            at: 0,
            line: 1,
        }
    }

    /// The line of the record starting at `byte` (offsets only grow).
    fn line_at(&mut self, byte: u64) -> u64 {
        let mut to = usize::try_from(byte)
            .unwrap_or(usize::MAX)
            .min(self.text.len());
        while matches!(self.text.get(to), Some(b'\r' | b'\n')) {
            to += 1;
        }
        if to > self.at {
            let skipped = self.text.get(self.at..to).unwrap_or_default();
            self.line += skipped.iter().filter(|b| **b == b'\n').count() as u64;
            self.at = to;
        }
        self.line
    }
}

fn row(
    header: &[String],
    key_col: Option<usize>,
    line: u64,
    record: &csv::ByteRecord,
) -> Result<Row, String> {
    if record.len() != header.len() {
        return Err(format!(
            "{} fields where the header has {}",
            record.len(),
            header.len()
        ));
    }
    let mut cells = Vec::with_capacity(record.len());
    for (i, field) in record.iter().enumerate() {
        let text = std::str::from_utf8(field).map_err(|_| {
            format!(
                "column `{}` is not valid UTF-8 (set the connector's `encoding:` if the file is not UTF-8)",
                header.get(i).map_or("?", String::as_str)
            )
        })?;
        cells.push(text.to_owned());
    }
    let hash = hash_cells(&cells);
    let key = match key_col {
        Some(i) => {
            let k = cells.get(i).map_or("", |k| k.trim());
            if k.is_empty() {
                return Err(format!(
                    "no value in the key column `{}`",
                    header.get(i).map_or("?", String::as_str)
                ));
            }
            k.to_owned()
        }
        None => hex(&hash),
    };
    Ok(Row {
        line,
        key,
        cells,
        hash,
    })
}

/// A row as JSON, column by column, for the dead-letter queue.
fn raw(header: &[String], record: &csv::ByteRecord) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (i, field) in record.iter().enumerate() {
        let name = header
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("column {}", i + 1));
        map.insert(
            name,
            serde_json::Value::String(String::from_utf8_lossy(field).into_owned()),
        );
    }
    serde_json::Value::Object(map)
}

pub fn hash_cells(cells: &[String]) -> Hash {
    hash_bytes(&cells.iter().map(String::as_bytes).collect::<Vec<_>>())
}

/// Length-prefixed, so `a,bc` and `ab,c` differ.
fn hash_bytes(parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let full = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(full.get(..16).unwrap_or(&[0u8; 16]));
    out
}

/// A file's content hash, hex: the object's cursor.
pub fn file_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf8() -> Format {
        Format::default()
    }

    #[test]
    fn a_bom_quoted_commas_and_newlines_are_one_row_each() {
        let file = "\u{FEFF}id,name,notes\r\n1,\"Doe, Jane\",\"line one\nline two\"\r\n2,Bob,\"say \"\"hi\"\"\"\r\n";
        let t = parse(file.as_bytes(), &utf8(), Some("id")).unwrap();
        assert_eq!(t.header, ["id", "name", "notes"]);
        assert!(t.bad.is_empty(), "{:?}", t.bad);
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.rows[0].cells, ["1", "Doe, Jane", "line one\nline two"]);
        assert_eq!(t.rows[1].cells[2], "say \"hi\"");
        assert_eq!((t.rows[0].line, t.rows[1].line), (2, 4));
        let lf = parse(b"\n\nid\n\n1\n\"2\n\"\n3\n", &utf8(), Some("id")).unwrap();
        let lines: Vec<u64> = lf.rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, [5, 6, 8]);
    }

    #[test]
    fn broken_rows_are_reported_with_their_line_and_the_rest_is_read() {
        let mut file = b"id,email\n1,a@x.test\n2,b@x.test,extra\n,c@x.test\n".to_vec();
        file.extend_from_slice(b"4,\xff\xfe@x.test\n1,dup@x.test\n5,e@x.test\n");
        let t = parse(&file, &utf8(), Some("id")).unwrap();
        let keys: Vec<&str> = t.rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["1", "5"]);
        let errors: Vec<&str> = t.bad.iter().map(|b| b.error.as_str()).collect();
        assert_eq!(errors[0], "line 3: 3 fields where the header has 2");
        assert_eq!(errors[1], "line 4: no value in the key column `id`");
        assert!(errors[2].starts_with("line 5: column `email` is not valid UTF-8"));
        assert_eq!(errors[3], "line 6: key `1` is already on line 2");
        assert_eq!(t.bad[2].key.as_deref(), Some("4"));
        assert_eq!(t.bad[0].raw["email"], "b@x.test");
    }

    #[test]
    fn a_missing_key_column_or_a_bad_header_refuses_the_file() {
        let e = parse(b"email,name\na@x,A\n", &utf8(), Some("id")).unwrap_err();
        assert!(e.0.contains("no column `id`"), "{e:?}");
        let e = parse(b"id,,name\n", &utf8(), None).unwrap_err();
        assert!(e.0.contains("column 2 of the header has no name"), "{e:?}");
        let e = parse(b"id,id\n", &utf8(), None).unwrap_err();
        assert!(e.0.contains("twice"), "{e:?}");
        assert_eq!(parse(b"", &utf8(), None).unwrap(), Table::default());
    }

    #[test]
    fn without_a_key_a_row_is_known_by_its_content() {
        let a = parse(b"email\na@x.test\nb@x.test\n", &utf8(), None).unwrap();
        let b = parse(b"email\nb@x.test\na@x.test\n", &utf8(), None).unwrap();
        assert_eq!(a.rows[0].key, b.rows[1].key);
        assert_eq!(a.rows[0].key.len(), 32);
        assert_ne!(a.rows[0].key, a.rows[1].key);
    }

    #[test]
    fn other_encodings_are_decoded_and_written_back_the_same_way() {
        let latin1 = Format {
            encoding: encoding_rs::WINDOWS_1252,
            ..Format::default()
        };
        let t = parse(b"name\nJos\xe9\n", &latin1, None).unwrap();
        assert_eq!(t.rows[0].cells, ["José"]);
        let (_, enc) = decode(b"name\n", &latin1);
        assert_eq!(enc.encode("José".as_bytes()), b"Jos\xe9");

        let mut utf16 = vec![0xFF, 0xFE];
        for u in "id;name\n1;Zoë\n".encode_utf16() {
            utf16.extend_from_slice(&u.to_le_bytes());
        }
        let semi = Format {
            delimiter: b';',
            ..Format::default()
        };
        let t = parse(&utf16, &semi, Some("id")).unwrap();
        assert_eq!(t.rows[0].cells, ["1", "Zoë"]);
        let (_, enc) = decode(&utf16, &semi);
        assert_eq!(enc.encode(b"id;name\n1;Zo\xc3\xab\n"), utf16);
    }
}
