//! The CLI's side of an export: ask the daemon for the stream and copy it to the output
//! as it arrives, and write the output file so that it exists only once whole.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use revsync_sdk::Kind;

use super::Format;

/// Longest pause between two chunks before the CLI gives up on the daemon. The daemon
/// sends as fast as the store reads, so a long silence means it is stuck or gone.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the daemon did not deliver an export.
pub enum Fetch {
    /// Nothing listens at the address: no daemon runs there.
    NotRunning,
    /// It answered and refused, or the stream broke part-way.
    Failed(String),
}

/// `GET {base}/records/export` copied into `out` chunk by chunk; returns the bytes copied.
pub fn from_daemon(
    base: &str,
    token: Option<&str>,
    kind: Kind,
    format: Format,
    out: &mut dyn Write,
) -> Result<u64, Fetch> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Fetch::Failed(e.to_string()))?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(READ_TIMEOUT)
            .build()
            .map_err(|e| Fetch::Failed(e.to_string()))?;
        let mut req = client
            .get(format!("{base}/records/export"))
            .query(&[("kind", kind.as_str()), ("format", format.as_str())]);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Err(Fetch::NotRunning),
            Err(e) => return Err(Fetch::Failed(format!("asking the daemon at {base}: {e}"))),
        };
        let status = resp.status().as_u16();
        if status == 401 {
            return Err(Fetch::Failed(crate::cli::token_refused(token.is_some())));
        }
        if status != 200 {
            let v: serde_json::Value = resp.json().await.unwrap_or_default();
            return Err(Fetch::Failed(format!(
                "the daemon answered {status}: {}",
                crate::json::at(&v, "/message").as_str().unwrap_or("")
            )));
        }
        let mut bytes = 0u64;
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    out.write_all(&chunk)
                        .map_err(|e| Fetch::Failed(format!("writing the export: {e}")))?;
                    bytes += chunk.len() as u64;
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(Fetch::Failed(format!(
                        "the export broke off after {bytes} bytes (see the daemon's log): {e}"
                    )))
                }
            }
        }
        out.flush()
            .map_err(|e| Fetch::Failed(format!("writing the export: {e}")))?;
        Ok(bytes)
    })
}

/// An output file written beside its final name and renamed into place by [`commit`]:
/// a failed or interrupted export never leaves a file that looks complete.
///
/// [`commit`]: OutFile::commit
pub struct OutFile {
    path: PathBuf,
    partial: PathBuf,
    file: Option<BufWriter<File>>,
}

impl OutFile {
    pub fn create(path: &Path) -> io::Result<Self> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".partial");
        let partial = path.with_file_name(name);
        let file = File::create(&partial)?;
        Ok(Self {
            path: path.to_owned(),
            partial,
            file: Some(BufWriter::with_capacity(256 * 1024, file)),
        })
    }

    /// Flush, sync and move the file to its name; on failure the partial file goes.
    pub fn commit(mut self) -> io::Result<()> {
        let file = self.file.take();
        let done = (|| {
            if let Some(w) = file {
                w.into_inner()
                    .map_err(io::IntoInnerError::into_error)?
                    .sync_all()?;
            }
            std::fs::rename(&self.partial, &self.path)
        })();
        if done.is_err() {
            let _ = std::fs::remove_file(&self.partial);
        }
        done
    }
}

impl Write for OutFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(data),
            None => Err(io::Error::other("export file already committed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for OutFile {
    /// Not committed: the partial file goes.
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}
