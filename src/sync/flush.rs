//! Group commit: many concurrent callers wanting "my write is on disk" share one flush.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{watch, Notify};

use crate::store::Store;

pub struct Flusher {
    requested: AtomicU64,
    wake: Notify,
    /// (highest ticket covered by a completed flush, whether it succeeded)
    done: watch::Sender<(u64, bool)>,
}

impl Flusher {
    /// Start the flushing task (it lives as long as the runtime).
    pub fn start(store: Arc<dyn Store>) -> Arc<Self> {
        let (done, _) = watch::channel((0, true));
        let me = Arc::new(Self {
            requested: AtomicU64::new(0),
            wake: Notify::new(),
            done,
        });
        let f = me.clone();
        tokio::spawn(async move {
            loop {
                // Every ticket issued before this read was issued after its write: covered.
                let target = f.requested.load(Ordering::SeqCst);
                if f.done.borrow().0 >= target {
                    // notify_one keeps a permit, so a request made just now is not missed.
                    f.wake.notified().await;
                    continue;
                }
                let s = store.clone();
                let ok = matches!(
                    tokio::task::spawn_blocking(move || s.flush()).await,
                    Ok(Ok(()))
                );
                if !ok {
                    tracing::error!(
                        "store flush failed; durable acknowledgements are refused until it works"
                    );
                }
                f.done.send_replace((target, ok));
            }
        });
        me
    }

    /// Wait until everything written before this call is on disk.
    pub async fn flush(&self) -> Result<(), &'static str> {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut rx = self.done.subscribe();
        self.wake.notify_one();
        let seen = rx
            .wait_for(|(d, _)| *d >= ticket)
            .await
            .map_err(|_| "flusher stopped")?;
        if seen.1 {
            Ok(())
        } else {
            Err("store flush failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    #[tokio::test]
    async fn concurrent_callers_share_flushes() {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let f = Flusher::start(store);
        let mut joins = Vec::new();
        for _ in 0..50 {
            let f = f.clone();
            joins.push(tokio::spawn(async move { f.flush().await }));
        }
        for j in joins {
            j.await.unwrap().unwrap();
        }
        assert!(f.done.borrow().0 >= 50);
    }
}
