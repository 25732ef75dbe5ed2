//! The `params:` of a `type: csv` connector file.

use std::path::PathBuf;

use revsync_sdk::{check_range, collected, parse_params, ParamError};
use serde::Deserialize;

/// Rows handed to the engine per page: a big file is applied in steps, each with its own
/// store write, rather than in one transaction the size of the file.
pub const PAGE_ROWS: std::ops::RangeInclusive<u64> = 1..=10_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The folder holding one `<object>.csv` per object.
    pub dir: PathBuf,
    /// One ASCII character (`,`, `;`, `\t` for tab-separated files).
    #[serde(default = "comma")]
    pub delimiter: String,
    /// One ASCII character.
    #[serde(default = "double_quote")]
    pub quote: String,
    /// A WHATWG encoding label (`utf-8`, `windows-1252`, `latin1`, `utf-16le`, ...). A byte
    /// order mark in the file wins over it, as browsers and spreadsheets do.
    #[serde(default = "utf8")]
    pub encoding: String,
    /// Keep each object's file up to date with the agreed state (objects whose `direction`
    /// lets revsync write). Off by default: a file is a source until its owner says so.
    #[serde(default)]
    pub write_back: bool,
    #[serde(default = "page_rows")]
    pub page_rows: u64,
}

fn comma() -> String {
    ",".into()
}
fn double_quote() -> String {
    "\"".into()
}
fn utf8() -> String {
    "utf-8".into()
}
fn page_rows() -> u64 {
    1000
}

/// The parsed form the reader and writer use.
#[derive(Debug, Clone, Copy)]
pub struct Format {
    pub delimiter: u8,
    pub quote: u8,
    pub encoding: &'static encoding_rs::Encoding,
}

impl Default for Format {
    fn default() -> Self {
        Self {
            delimiter: b',',
            quote: b'"',
            encoding: encoding_rs::UTF_8,
        }
    }
}

pub const EXAMPLE: &str = "params:\n  dir: /srv/sheets\n  delimiter: \",\"\n  encoding: utf-8";

impl Params {
    pub fn parse(params: &serde_json::Value) -> Result<Self, Vec<ParamError>> {
        let p: Params = parse_params(params).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        if p.dir.as_os_str().is_empty() {
            errors.push(ParamError::new("dir", "is empty").with_example("dir: /srv/sheets"));
        } else if !p.dir.is_absolute() {
            errors.push(
                ParamError::new(
                    "dir",
                    format!(
                        "`{}` is relative: the daemon's working directory is not a place to rely on",
                        p.dir.display()
                    ),
                )
                .with_example("dir: /srv/sheets"),
            );
        }
        for (path, v) in [("delimiter", &p.delimiter), ("quote", &p.quote)] {
            if one_byte(v).is_none() {
                errors.push(
                    ParamError::new(path, format!("{v:?} is not one ASCII character"))
                        .with_example(format!("{path}: \";\"")),
                );
            }
        }
        if encoding_rs::Encoding::for_label(p.encoding.trim().as_bytes()).is_none() {
            errors.push(
                ParamError::new("encoding", format!("unknown encoding `{}`", p.encoding))
                    .with_example("encoding: windows-1252"),
            );
        }
        if let Some(e) = check_range("page_rows", p.page_rows, PAGE_ROWS, "rows", "1000") {
            errors.push(e);
        }
        collected(p, errors)
    }

    pub fn format(&self) -> Format {
        let d = Format::default();
        Format {
            delimiter: one_byte(&self.delimiter).unwrap_or(d.delimiter),
            quote: one_byte(&self.quote).unwrap_or(d.quote),
            encoding: encoding_rs::Encoding::for_label(self.encoding.trim().as_bytes())
                .unwrap_or(d.encoding),
        }
    }
}

/// `\t` is how a YAML file most often spells a tab.
fn one_byte(s: &str) -> Option<u8> {
    match s {
        "\\t" => Some(b'\t'),
        _ => match s.as_bytes() {
            [b] if b.is_ascii() && *b != b'\n' && *b != b'\r' => Some(*b),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_every_error_with_its_field() {
        let p = Params::parse(&json!({"dir": "/srv/x"})).unwrap();
        let f = p.format();
        assert_eq!((f.delimiter, f.quote), (b',', b'"'));
        assert_eq!(f.encoding, encoding_rs::UTF_8);
        assert!(!p.write_back);

        let errs = Params::parse(&json!({
            "dir": "sheets", "delimiter": ";;", "quote": "é", "encoding": "klingon", "page_rows": 0
        }))
        .unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["dir", "delimiter", "quote", "encoding", "page_rows"]
        );

        let unknown = Params::parse(&json!({"dir": "/x", "delimeter": ";"})).unwrap_err();
        assert!(unknown[0].message.contains("delimeter"), "{unknown:?}");
        let tab = Params::parse(&json!({"dir": "/x", "delimiter": "\\t", "encoding": "latin1"}))
            .unwrap()
            .format();
        assert_eq!(tab.delimiter, b'\t');
        assert_eq!(tab.encoding, encoding_rs::WINDOWS_1252);
    }
}
