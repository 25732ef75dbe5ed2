//! `revsync discover` for a CSV file: its header's columns, all text, the key required.

use std::path::Path;

use revsync_sdk::{ConnectorError, FieldSchema, ObjectSchema};

use crate::config::Format;
use crate::table;

pub fn describe(
    name: &str,
    path: &Path,
    format: &Format,
    key: Option<&str>,
) -> Result<ObjectSchema, ConnectorError> {
    let bytes = std::fs::read(path)
        .map_err(|e| ConnectorError::Transient(format!("{}: {e}", path.display())))?;
    let (text, _) = table::decode(&bytes, format);
    let mut rdr = table::reader(format, &text);
    let header = match rdr.byte_records().next() {
        None => Vec::new(),
        Some(r) => {
            let r = r.map_err(|e| ConnectorError::Permanent {
                detail: format!("{}: the header cannot be read: {e}", path.display()),
                status: None,
                body: None,
            })?;
            table::header(&r).map_err(|e| ConnectorError::Permanent {
                detail: format!("{}: {}", path.display(), e.0),
                status: None,
                body: None,
            })?
        }
    };
    Ok(ObjectSchema {
        name: name.to_owned(),
        label: Some(path.display().to_string()),
        fields: header
            .into_iter()
            .map(|h| {
                let f = FieldSchema::new(h.clone(), h.clone(), "text");
                if key == Some(h.as_str()) {
                    f.required()
                } else {
                    f
                }
            })
            .collect(),
    })
}
