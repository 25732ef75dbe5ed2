//! Connector supervision: one task per enabled connector.
//!
//! The poll, webhook and push machinery lands with the sync runtime; until then a
//! connector's task registers as started (`idle`) and waits for shutdown, so the
//! lifecycle (readiness, drain, status) is real and exercised end to end.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::app::Tasks;
use crate::config::Config;
use crate::status::{ConnectorState, StatusHub};

pub fn start(config: &Config, status: &Arc<StatusHub>, tasks: &Tasks, cancel: &CancellationToken) {
    for (_, c) in config.connectors.iter().filter(|(_, c)| c.enabled) {
        let (id, status, cancel) = (c.id.clone(), status.clone(), cancel.clone());
        tasks.spawn(format!("connector {id}"), async move {
            status.set_state(&id, ConnectorState::Idle);
            tracing::info!(connector = %id, "connector started");
            cancel.cancelled().await;
            tracing::info!(connector = %id, "connector stopped");
        });
    }
}
