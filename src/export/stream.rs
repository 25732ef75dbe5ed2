//! The daemon's side of an export: the walk runs on the blocking pool and hands the
//! response body fixed-size chunks through a bounded channel.
//!
//! A slow client slows the walk instead of growing a buffer: when [`CHUNKS_IN_FLIGHT`]
//! chunks wait, the walk waits too. A client that goes away closes the channel and the
//! walk stops at its next chunk. A walk that fails after the first bytes went out ends
//! the body with an error, which aborts the response (no final chunk): a client never
//! takes a cut-short export for a whole one.

use std::io::{self, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Bytes;
use http_body::Frame;
use tokio::sync::mpsc;

use super::{Export, ExportError};
use crate::store::Store;

/// Bytes per chunk handed to the response.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Chunks that may wait for the client: with the one being filled, the most an export
/// holds in output is `(CHUNKS_IN_FLIGHT + 1) x CHUNK_BYTES` (plus one row past it).
pub const CHUNKS_IN_FLIGHT: usize = 4;

type Chunk = Result<Bytes, io::Error>;

/// Fills a chunk, then sends it, waiting while the channel is full. For the blocking pool
/// only (it blocks the thread it runs on).
pub struct ChannelWriter {
    tx: mpsc::Sender<Chunk>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    pub fn new(tx: mpsc::Sender<Chunk>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(CHUNK_BYTES),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| gone())
    }

    /// End the body with `error`: the response is aborted, not completed.
    pub fn fail(self, error: &ExportError) {
        let _ = self
            .tx
            .blocking_send(Err(io::Error::other(error.to_string())));
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the client went away")
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.tx.is_closed() {
            return Err(gone());
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_BYTES {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// The response body: the chunks as they come, an error if the walk failed.
pub struct ChannelBody(mpsc::Receiver<Chunk>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.0.poll_recv(cx).map(|c| c.map(|c| c.map(Frame::data)))
    }
}

/// Start `export` over `store` on a thread of its own; the body streams what it writes.
/// Not on the blocking pool: the walk runs at the client's pace (the channel is bounded),
/// and a few slow clients would hold the pool's few threads that every apply needs.
pub fn spawn(export: Export, store: Arc<dyn Store>) -> ChannelBody {
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let walk = move || {
        let started = std::time::Instant::now();
        let mut out = ChannelWriter::new(tx);
        match export.run(store.as_ref(), &mut out) {
            Ok(rows) => tracing::info!(
                kind = %export.kind(),
                format = export.format().as_str(),
                rows,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "records exported"
            ),
            Err(ExportError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
                tracing::info!(kind = %export.kind(), "export stopped: the client went away");
            }
            Err(e) => {
                tracing::error!(kind = %export.kind(), error = %e, "export failed");
                out.fail(&e);
            }
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("revsync-export".into())
        .spawn(walk)
    {
        // The walk (and with it the sender) is dropped: the body ends at once, empty.
        tracing::error!(error = %e, "export not started: no thread for it");
    }
    ChannelBody(rx)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::export::tests::{person, put};
    use crate::export::Format;
    use crate::store::{CountingStore, WriteBatch};
    use revsync_sdk::Kind;

    const PERSONS: u32 = 20_000;

    fn filled() -> Arc<CountingStore> {
        let s = CountingStore::default();
        let mut b = WriteBatch::new();
        for n in 0..PERSONS {
            put(&mut b, &person(n));
        }
        s.write(b).unwrap();
        Arc::new(s)
    }

    fn export() -> Export {
        Export::with_connectors(Kind::Person, Format::Csv, ["hubspot-main".into()])
    }

    /// Wait until the count stops moving (the walk is blocked on the full channel).
    fn settled(n: &AtomicU64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = u64::MAX;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            let now = n.load(Ordering::SeqCst);
            if now == last {
                return now;
            }
            last = now;
        }
        panic!("the walk never stopped: {last} records read");
    }

    #[test]
    fn a_client_that_does_not_read_holds_the_walk_at_a_few_chunks() {
        let store = filled();
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let walk = {
            let store = store.clone();
            std::thread::spawn(move || export().run(store.as_ref(), &mut ChannelWriter::new(tx)))
        };
        let read = settled(&store.records_scanned);
        // Rows are about 150 bytes: the chunks in flight, the one being filled and the
        // csv writer's buffer hold a few thousand; the walk reads at most a page beyond.
        let row = 150;
        let bound =
            ((CHUNKS_IN_FLIGHT + 2) * CHUNK_BYTES / row + 2 * crate::export::PAGE_RECORDS) as u64;
        assert!(
            read <= bound,
            "{read} records read while nothing was sent on (bound {bound})"
        );
        assert!(read < u64::from(PERSONS) / 2);
        // The client goes away: the walk ends at its next chunk, with the pipe's error.
        drop(rx);
        match walk.join().unwrap() {
            Err(ExportError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::BrokenPipe),
            other => panic!("expected a broken pipe, got {other:?}"),
        }
        let after = store.records_scanned.load(Ordering::SeqCst);
        assert!(after <= read + crate::export::PAGE_RECORDS as u64);
    }

    #[test]
    fn the_chunks_make_the_same_bytes_as_a_walk_into_memory() {
        let store = filled();
        let mut whole = Vec::new();
        assert_eq!(
            export().run(store.as_ref(), &mut whole).unwrap(),
            PERSONS as u64
        );
        let (tx, mut rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let walk = {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut w = ChannelWriter::new(tx);
                export().run(store.as_ref(), &mut w)
            })
        };
        let mut streamed = Vec::new();
        let mut sizes = Vec::new();
        while let Some(chunk) = rx.blocking_recv() {
            let chunk = chunk.unwrap();
            sizes.push(chunk.len());
            streamed.extend_from_slice(&chunk);
        }
        assert_eq!(walk.join().unwrap().unwrap(), PERSONS as u64);
        assert_eq!(streamed, whole);
        assert!(sizes.len() > CHUNKS_IN_FLIGHT);
        assert!(sizes.iter().all(|&s| s < 2 * CHUNK_BYTES));
    }
}
