//! revsync connector for CSV files (`type: csv`): one file per object in a folder, read
//! again whenever it changes (only the rows that changed are applied), and optionally
//! kept up to date with the agreed state (`write_back: true`).
//!
//! A file has no per-row change times: every row read carries the file's modification
//! time. Rows are known by the object's `key:` column, or by their content when it has
//! none (such an object is read only: an edited row is a new row).

pub mod config;
mod describe;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod table;
pub mod write;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use revsync_sdk::{
    canonical_id_in, BuildContext, Capabilities, Change, Connector, ConnectorError, ConnectorType,
    Fetched, Kind, ObjectCapability, ObjectDecl, ParamError, PushItem, PushResult, Rejected,
};

use crate::config::{Format, Params};
use crate::table::{Row, Table};

/// The connector type registered with the daemon.
pub struct Csv;

impl ConnectorType for Csv {
    fn name(&self) -> &'static str {
        "csv"
    }

    fn objects(&self) -> &'static [(&'static str, Kind)] {
        &[]
    }

    fn open_objects(&self) -> bool {
        true
    }

    fn validate_params(&self, params: &serde_json::Value) -> Result<(), Vec<ParamError>> {
        Params::parse(params).map(|_| ())
    }

    fn validate_object(
        &self,
        params: &serde_json::Value,
        _name: &str,
        object: &ObjectDecl,
    ) -> Vec<ParamError> {
        // Read on its own, so a mistake elsewhere in `params` does not hide this one.
        let write_back = params.get("write_back") == Some(&serde_json::Value::Bool(true));
        if write_back && object.write && object.key.is_none() {
            return vec![ParamError::new(
                "key",
                "write_back needs a key column to find each row again (or `direction: in`)",
            )
            .with_example("key: id")];
        }
        Vec::new()
    }

    fn params_example(&self) -> &'static str {
        config::EXAMPLE
    }

    fn build(
        &self,
        ctx: &BuildContext<'_>,
    ) -> Option<Result<Arc<dyn revsync_sdk::Connector>, ConnectorError>> {
        Some(
            Params::parse(ctx.params)
                .map_err(|e| {
                    let detail = e
                        .iter()
                        .map(|e| format!("params.{}: {}", e.path, e.message))
                        .collect::<Vec<_>>()
                        .join("; ");
                    ConnectorError::Permanent {
                        detail,
                        status: None,
                        body: None,
                    }
                })
                .map(|p| Arc::new(CsvConnector::new(&p, ctx.objects)) as Arc<dyn Connector>),
        )
    }
}

/// A file modified this recently may change again within the same timestamp: its content
/// is compared, not only its size and time (git's "racy clean" rule).
const RACY: Duration = Duration::from_secs(2);

/// What revsync last saw of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    len: u64,
    modified: Option<SystemTime>,
    /// The content's hash, the object's cursor (`None`: no file).
    hash: Option<String>,
}

#[derive(Default)]
struct ObjectState {
    seen: Option<Seen>,
    /// Each row's content hash by key, as of `seen`: a new version is diffed against it.
    rows: HashMap<String, table::Hash>,
    /// Rows already reported unreadable: reported once, not on every change of the file.
    bad: HashSet<table::Hash>,
    /// A read applied in pages: what is left of it, and the cursor once it is done.
    pending: VecDeque<Change>,
    pending_rejected: Vec<Rejected>,
    pending_cursor: Option<String>,
}

struct Object {
    kind: Kind,
    key: Option<String>,
    read: bool,
    write: bool,
    state: Mutex<ObjectState>,
}

pub struct CsvConnector {
    dir: PathBuf,
    format: Format,
    page_rows: usize,
    objects: BTreeMap<String, Arc<Object>>,
}

impl CsvConnector {
    pub fn new(params: &Params, objects: &BTreeMap<String, ObjectDecl>) -> Self {
        Self {
            dir: params.dir.clone(),
            format: params.format(),
            page_rows: usize::try_from(params.page_rows).unwrap_or(1000).max(1),
            objects: objects
                .iter()
                .map(|(name, d)| {
                    let o = Object {
                        kind: d.kind,
                        key: d.key.clone(),
                        read: d.read,
                        write: d.write && params.write_back && d.key.is_some(),
                        state: Mutex::new(ObjectState::default()),
                    };
                    (name.clone(), Arc::new(o))
                })
                .collect(),
        }
    }

    fn object(&self, name: &str) -> Result<(Arc<Object>, PathBuf), ConnectorError> {
        let o = self
            .objects
            .get(name)
            .cloned()
            .ok_or_else(|| ConnectorError::Permanent {
                detail: format!("no object `{name}` in this connector's file"),
                status: None,
                body: None,
            })?;
        Ok((o, self.dir.join(format!("{name}.csv"))))
    }
}

fn transient(path: &Path, e: &std::io::Error) -> ConnectorError {
    ConnectorError::Transient(format!("{}: {e}", path.display()))
}

fn file_error(path: &Path, e: &table::FileError) -> ConnectorError {
    ConnectorError::Permanent {
        detail: format!("{}: {}", path.display(), e.0),
        status: None,
        body: None,
    }
}

/// Runs file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ConnectorError> + Send + 'static,
) -> Result<T, ConnectorError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ConnectorError::Transient(format!("file task failed: {e}")))?
}

fn modified_at(modified: Option<SystemTime>) -> DateTime<Utc> {
    modified.map_or_else(Utc::now, DateTime::<Utc>::from)
}

fn change(object: &str, header: &[String], row: &Row, at: DateTime<Utc>) -> Change {
    let fields: BTreeMap<String, serde_json::Value> = header
        .iter()
        .zip(&row.cells)
        .map(|(h, c)| {
            let v = if c.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::Value::String(c.clone())
            };
            (h.clone(), v)
        })
        .collect();
    Change {
        object: object.to_owned(),
        external_id: row.key.clone(),
        source_updated_at: at,
        canonical_id: canonical_id_in(fields.get(table::REVSYNC_ID)),
        fields,
        deleted: false,
    }
}

fn cursor_of(hash: &str) -> Result<String, ConnectorError> {
    revsync_sdk::cursor_text(&serde_json::json!({ "sha256": hash }))
}

/// Read `object`'s file if it changed since it was last seen; queue what changed.
fn refresh(
    name: &str,
    path: &Path,
    o: &Object,
    st: &mut ObjectState,
    format: &Format,
    cursor: Option<&str>,
) -> Result<(), ConnectorError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(transient(path, &e)),
    };
    let Some(meta) = meta else {
        // No file (yet): nothing to read, and a write-back may create it.
        if st.seen.as_ref().is_some_and(|s| s.hash.is_some()) {
            tracing::warn!(file = %path.display(), "the file is gone; its rows are kept as they were");
        }
        st.seen = Some(Seen {
            len: 0,
            modified: None,
            hash: None,
        });
        st.rows.clear();
        return Ok(());
    };
    let modified = meta.modified().ok();
    let racy = modified.is_none_or(|m| m.elapsed().map_or(true, |age| age < RACY));
    let full = cursor.is_none();
    if let Some(seen) = &st.seen {
        if !full && !racy && seen.len == meta.len() && seen.modified == modified {
            return Ok(());
        }
    }
    let bytes = std::fs::read(path).map_err(|e| transient(path, &e))?;
    let hash = table::file_hash(&bytes);
    let seen = Seen {
        len: meta.len(),
        modified,
        hash: Some(hash.clone()),
    };
    let unchanged = st
        .seen
        .as_ref()
        .is_some_and(|s| s.hash.as_deref() == Some(hash.as_str()));
    if unchanged && !full {
        st.seen = Some(seen);
        return Ok(());
    }
    let table = table::parse(&bytes, format, o.key.as_deref()).map_err(|e| file_error(path, &e))?;
    let rows: HashMap<String, table::Hash> =
        table.rows.iter().map(|r| (r.key.clone(), r.hash)).collect();
    let new_cursor = cursor_of(&hash)?;
    // A new process meets the file it last applied: nothing to apply, only to remember.
    if st.seen.is_none() && cursor == Some(new_cursor.as_str()) {
        st.bad = table.bad.iter().map(|b| b.hash).collect();
        st.rows = rows;
        st.seen = Some(seen);
        return Ok(());
    }
    let at = modified_at(modified);
    // Against nothing when this process has not read the file yet or a full read is asked:
    // every row then goes to the engine, which sets aside what it already holds.
    let before = if full || st.seen.is_none() {
        HashMap::new()
    } else {
        std::mem::take(&mut st.rows)
    };
    let Table {
        header,
        rows: read,
        bad,
    } = table;
    let mut changes: VecDeque<Change> = read
        .iter()
        .filter(|r| before.get(&r.key) != Some(&r.hash))
        .map(|r| change(name, &header, r, at))
        .collect();
    let bad_keys: HashSet<&str> = bad.iter().filter_map(|b| b.key.as_deref()).collect();
    let mut gone: Vec<&String> = before
        .keys()
        .filter(|k| !rows.contains_key(*k) && !bad_keys.contains(k.as_str()))
        .collect();
    gone.sort();
    changes.extend(gone.into_iter().map(|k| Change {
        object: name.to_owned(),
        external_id: k.clone(),
        source_updated_at: at,
        fields: BTreeMap::new(),
        deleted: true,
        canonical_id: None,
    }));
    let file = path.display().to_string();
    let fresh: Vec<Rejected> = bad
        .iter()
        .filter(|b| !st.bad.contains(&b.hash))
        .map(|b| Rejected {
            object: name.to_owned(),
            external_id: b.key.clone(),
            raw: b.raw.to_string(),
            error: format!("{file}: {}", b.error),
        })
        .collect();
    st.bad = bad.iter().map(|b| b.hash).collect();
    st.rows = rows;
    st.seen = Some(seen);
    st.pending = changes;
    st.pending_rejected = fresh;
    st.pending_cursor = Some(new_cursor);
    Ok(())
}

/// The next page of what [`refresh`] queued; the cursor moves with the last one.
fn next_page(st: &mut ObjectState, page_rows: usize, cursor: Option<&str>) -> Fetched {
    let n = st.pending.len().min(page_rows);
    let changes: Vec<Change> = st.pending.drain(..n).collect();
    let rejected = std::mem::take(&mut st.pending_rejected);
    let more = !st.pending.is_empty();
    let cursor = if more {
        cursor.map(str::to_owned)
    } else {
        st.pending_cursor
            .take()
            .or_else(|| cursor.map(str::to_owned))
    };
    Fetched {
        changes,
        cursor,
        more,
        behind: false,
        invalid: rejected.iter().map(|r| r.error.clone()).collect(),
        rejected,
    }
}

#[async_trait]
impl Connector for CsvConnector {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            objects: self
                .objects
                .iter()
                .map(|(name, o)| ObjectCapability {
                    name: name.clone(),
                    kind: o.kind,
                    read: o.read,
                    write: o.write,
                })
                .collect(),
            // One push rewrites the file once: the bigger the batch, the fewer rewrites.
            batch_size: 1000,
            webhooks: false,
        }
    }

    async fn fetch(&self, object: &str, cursor: Option<&str>) -> Result<Fetched, ConnectorError> {
        let (o, path) = self.object(object)?;
        let (name, cursor) = (object.to_owned(), cursor.map(str::to_owned));
        let (format, page_rows) = (self.format, self.page_rows);
        blocking(move || {
            let mut st = o.state.lock().unwrap_or_else(PoisonError::into_inner);
            if st.pending.is_empty() && st.pending_rejected.is_empty() {
                refresh(&name, &path, &o, &mut st, &format, cursor.as_deref())?;
            }
            Ok(next_page(&mut st, page_rows, cursor.as_deref()))
        })
        .await
    }

    async fn fetch_by_ids(
        &self,
        object: &str,
        ids: &[String],
    ) -> Result<Vec<Change>, ConnectorError> {
        let (o, path) = self.object(object)?;
        let (name, format) = (object.to_owned(), self.format);
        let wanted: HashSet<String> = ids.iter().cloned().collect();
        blocking(move || {
            let meta = std::fs::metadata(&path).map_err(|e| transient(&path, &e))?;
            let bytes = std::fs::read(&path).map_err(|e| transient(&path, &e))?;
            let t = table::parse(&bytes, &format, o.key.as_deref())
                .map_err(|e| file_error(&path, &e))?;
            let at = modified_at(meta.modified().ok());
            Ok(t.rows
                .iter()
                .filter(|r| wanted.contains(&r.key))
                .map(|r| change(&name, &t.header, r, at))
                .collect())
        })
        .await
    }

    fn reads_by_id_carry_modified_times(&self) -> bool {
        // Every row carries the file's time, not its own: a read-before-update would
        // let a file touched for another row win over newer values.
        false
    }

    async fn push(
        &self,
        object: &str,
        items: &[PushItem],
    ) -> Result<Vec<PushResult>, ConnectorError> {
        let (o, path) = self.object(object)?;
        if !o.write {
            return Err(ConnectorError::Permanent {
                detail: format!(
                    "{} is not written back (params.write_back, a key column and a direction that writes)",
                    path.display()
                ),
                status: None,
                body: None,
            });
        }
        let key = o.key.clone().unwrap_or_default();
        let (items, format) = (items.to_vec(), self.format);
        blocking(move || {
            let mut st = o.state.lock().unwrap_or_else(PoisonError::into_inner);
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(transient(&path, &e)),
            };
            let hash = (!bytes.is_empty() || path.exists()).then(|| table::file_hash(&bytes));
            // Someone's edit not read yet would be written over: read it first.
            let seen = st.seen.as_ref().map(|s| s.hash.clone());
            if !st.pending.is_empty() || seen != Some(hash) {
                return Err(ConnectorError::Transient(format!(
                    "{} changed since it was last read; the write waits for that read",
                    path.display()
                )));
            }
            let (out, results) = write::apply(&bytes, &format, &key, &items)?;
            write::replace(&path, &out).map_err(|e| transient(&path, &e))?;
            // What was just written is not a change to read back.
            let t = table::parse(&out, &format, Some(&key)).map_err(|e| file_error(&path, &e))?;
            st.rows = t.rows.iter().map(|r| (r.key.clone(), r.hash)).collect();
            let meta = std::fs::metadata(&path).map_err(|e| transient(&path, &e))?;
            st.seen = Some(Seen {
                len: meta.len(),
                modified: meta.modified().ok(),
                hash: Some(table::file_hash(&out)),
            });
            Ok(results)
        })
        .await
    }

    async fn describe(&self, object: &str) -> Result<revsync_sdk::ObjectSchema, ConnectorError> {
        let (o, path) = self.object(object)?;
        let format = self.format;
        let name = object.to_owned();
        blocking(move || describe::describe(&name, &path, &format, o.key.as_deref())).await
    }
}
