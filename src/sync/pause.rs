//! Operator pauses: a paused connector neither polls nor pushes until it is resumed.
//! Its webhooks are still accepted and kept (the sender is not made to retry), and
//! its outbox keeps growing, to go out on resume. Pauses are kept in the store, so a
//! restart does not quietly resume a connector an operator stopped.

use std::collections::BTreeSet;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::status::{ConnectorState, StatusHub};

/// What `/status` says of a connector an operator paused.
pub const NOTE: &str = "paused by an operator: not polling or pushing; webhooks are still kept";

pub struct Pauses {
    paused: watch::Sender<BTreeSet<String>>,
}

impl Pauses {
    pub fn new(initial: BTreeSet<String>) -> Self {
        Self {
            paused: watch::Sender::new(initial),
        }
    }

    pub fn is_paused(&self, connector: &str) -> bool {
        self.paused.borrow().contains(connector)
    }

    /// Pause or resume; whether anything changed.
    pub fn set(&self, connector: &str, paused: bool) -> bool {
        self.paused.send_if_modified(|set| {
            if paused {
                set.insert(connector.to_owned())
            } else {
                set.remove(connector)
            }
        })
    }

    /// Return at once unless `connector` is paused; otherwise show it paused and wait for
    /// its resume. False when shutdown came first.
    pub async fn wait(
        &self,
        connector: &str,
        status: &StatusHub,
        cancel: &CancellationToken,
    ) -> bool {
        let mut rx = self.paused.subscribe();
        let mut waited = false;
        loop {
            if !rx.borrow_and_update().contains(connector) {
                if waited {
                    status.update(connector, |s| {
                        if s.note.as_deref() == Some(NOTE) {
                            s.note = None;
                        }
                        s.state = ConnectorState::Idle;
                    });
                }
                return true;
            }
            if !waited {
                status.update(connector, |s| {
                    s.state = ConnectorState::Paused;
                    s.note = Some(NOTE.to_owned());
                });
                waited = true;
            }
            tokio::select! {
                _ = cancel.cancelled() => return false,
                changed = rx.changed() => if changed.is_err() { return false },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_paused_loop_waits_for_its_resume_and_shows_paused_meanwhile() {
        let pauses = Arc::new(Pauses::new(BTreeSet::from(["hubspot".to_owned()])));
        let status = Arc::new(StatusHub::default());
        status.register(crate::status::ConnectorStatus::new(
            "hubspot",
            "hubspot",
            Vec::new(),
            true,
        ));
        let cancel = CancellationToken::new();
        // Another connector is not held.
        assert!(pauses.wait("stripe", &status, &cancel).await);
        let waiting = {
            let (p, s, c) = (pauses.clone(), status.clone(), cancel.clone());
            tokio::spawn(async move { p.wait("hubspot", &s, &c).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        let shown = status
            .snapshot()
            .into_iter()
            .find(|s| s.id == "hubspot")
            .unwrap();
        assert_eq!(shown.state, ConnectorState::Paused);
        assert!(pauses.set("hubspot", false));
        assert!(
            !pauses.set("hubspot", false),
            "resuming twice changes nothing"
        );
        assert!(waiting.await.unwrap());
        let shown = status
            .snapshot()
            .into_iter()
            .find(|s| s.id == "hubspot")
            .unwrap();
        assert_eq!(shown.state, ConnectorState::Idle);
        assert_eq!(shown.note, None);
    }

    #[tokio::test]
    async fn shutdown_ends_a_pause() {
        let pauses = Pauses::new(BTreeSet::from(["hubspot".to_owned()]));
        let status = StatusHub::default();
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert!(!pauses.wait("hubspot", &status, &cancel).await);
    }
}
