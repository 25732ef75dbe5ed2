//! Every Prometheus metric revsync exports, declared in one place with its help text.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::status::{ConnectorState, ConnectorStatus};
use crate::store::StoreStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectorLabels {
    pub connector: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectorStateLabels {
    pub connector: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: String,
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    uptime_seconds: Gauge<f64, AtomicU64>,
    ready: Gauge,
    store_size_bytes: Gauge,
    store_flushes: Gauge,
    connector_state: Family<ConnectorStateLabels, Gauge>,
    records_in: Family<ConnectorLabels, Gauge>,
    records_reread: Family<ConnectorLabels, Gauge>,
    records_out: Family<ConnectorLabels, Gauge>,
    edits_read_before_push: Family<ConnectorLabels, Gauge>,
    errors: Family<ConnectorLabels, Gauge>,
    outbox_depth: Family<ConnectorLabels, Gauge>,
    dead_letters: Family<ConnectorLabels, Gauge>,
    lag_seconds: Family<ConnectorLabels, Gauge>,
    throttled: Family<ConnectorLabels, Gauge>,
    rate_limit_wait_ms: Family<ConnectorLabels, Gauge>,
    restarts: Family<ConnectorLabels, Gauge>,
    webhooks_accepted: Family<ConnectorLabels, Gauge>,
    webhooks_rejected: Family<ConnectorLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("revsync");
        let build_info = Family::<VersionLabels, Gauge>::default();
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register("build_info", "revsync build, as a label", build_info);
        let m = Self {
            http_requests: Family::default(),
            uptime_seconds: Gauge::default(),
            ready: Gauge::default(),
            store_size_bytes: Gauge::default(),
            store_flushes: Gauge::default(),
            connector_state: Family::default(),
            records_in: Family::default(),
            records_reread: Family::default(),
            records_out: Family::default(),
            edits_read_before_push: Family::default(),
            errors: Family::default(),
            outbox_depth: Family::default(),
            dead_letters: Family::default(),
            lag_seconds: Family::default(),
            throttled: Family::default(),
            rate_limit_wait_ms: Family::default(),
            restarts: Family::default(),
            webhooks_accepted: Family::default(),
            webhooks_rejected: Family::default(),
            registry,
        };
        m.register_all()
    }

    fn register_all(mut self) -> Self {
        let r = &mut self.registry;
        r.register(
            "http_requests",
            "HTTP requests served, by route, method and status",
            self.http_requests.clone(),
        );
        r.register(
            "uptime_seconds",
            "Seconds since the daemon started",
            self.uptime_seconds.clone(),
        );
        r.register("ready", "1 when /readyz answers 200", self.ready.clone());
        r.register(
            "store_size_bytes",
            "Size of the store on disk",
            self.store_size_bytes.clone(),
        );
        r.register(
            "store_flushes",
            "Explicit store flushes since start",
            self.store_flushes.clone(),
        );
        r.register(
            "connector_state",
            "1 for the state each connector is in",
            self.connector_state.clone(),
        );
        r.register(
            "connector_records_in",
            "Changes read from the connector's system that were new",
            self.records_in.clone(),
        );
        r.register(
            "connector_records_reread",
            "Records read again with nothing new (overlap windows, repeated events)",
            self.records_reread.clone(),
        );
        r.register(
            "connector_edits_read_before_push",
            "Edits made in the connector's system since its last read, found and applied before an update would have written over them",
            self.edits_read_before_push.clone(),
        );
        r.register(
            "connector_records_out",
            "Records written to the connector's system",
            self.records_out.clone(),
        );
        r.register(
            "connector_errors",
            "Errors met by the connector",
            self.errors.clone(),
        );
        r.register(
            "connector_outbox_depth",
            "Pushes waiting for the connector",
            self.outbox_depth.clone(),
        );
        r.register(
            "connector_dead_letters",
            "Pushes the connector's system refused for good",
            self.dead_letters.clone(),
        );
        r.register(
            "connector_lag_seconds",
            "Seconds since the connector's last successful read or push",
            self.lag_seconds.clone(),
        );
        r.register(
            "connector_rate_limited",
            "Rate-limit answers (429 or equivalent) met by the connector",
            self.throttled.clone(),
        );
        r.register(
            "connector_rate_limit_wait_ms",
            "How long the connector's requests are currently held back",
            self.rate_limit_wait_ms.clone(),
        );
        r.register(
            "connector_restarts",
            "Times a connector task was restarted after a panic",
            self.restarts.clone(),
        );
        r.register(
            "connector_webhooks_accepted",
            "Webhook events stored durably",
            self.webhooks_accepted.clone(),
        );
        r.register(
            "connector_webhooks_rejected",
            "Webhook requests refused (signature, staleness, shape)",
            self.webhooks_rejected.clone(),
        );
        self
    }

    /// Refresh the gauges from live state, then render the text exposition format.
    pub fn render(
        &self,
        uptime_secs: f64,
        ready: bool,
        store: &StoreStats,
        connectors: &[ConnectorStatus],
    ) -> String {
        self.uptime_seconds.set(uptime_secs);
        self.ready.set(i64::from(ready));
        self.store_size_bytes.set(store.size_on_disk_bytes as i64);
        self.store_flushes.set(store.flushes as i64);
        for c in connectors {
            for state in ConnectorState::ALL {
                self.connector_state
                    .get_or_create(&ConnectorStateLabels {
                        connector: c.id.clone(),
                        state: state.as_str().to_owned(),
                    })
                    .set(i64::from(state == c.state));
            }
            let l = ConnectorLabels {
                connector: c.id.clone(),
            };
            self.records_in.get_or_create(&l).set(c.records_in as i64);
            self.records_reread
                .get_or_create(&l)
                .set(c.records_reread as i64);
            self.records_out.get_or_create(&l).set(c.records_out as i64);
            self.edits_read_before_push
                .get_or_create(&l)
                .set(c.edits_read_before_push as i64);
            self.errors.get_or_create(&l).set(c.errors.count as i64);
            self.outbox_depth
                .get_or_create(&l)
                .set(c.outbox_depth as i64);
            self.dead_letters
                .get_or_create(&l)
                .set(c.dead_letters as i64);
            self.lag_seconds
                .get_or_create(&l)
                .set(c.lag_secs.unwrap_or(0) as i64);
            self.restarts.get_or_create(&l).set(c.restarts as i64);
            self.webhooks_accepted
                .get_or_create(&l)
                .set(c.webhooks_accepted as i64);
            self.webhooks_rejected
                .get_or_create(&l)
                .set(c.webhooks_rejected as i64);
            if let Some(r) = &c.rate_limit {
                self.throttled.get_or_create(&l).set(r.throttled as i64);
                self.rate_limit_wait_ms
                    .get_or_create(&l)
                    .set(r.current_wait_ms as i64);
            }
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_connector_gauges_by_state() {
        let m = Metrics::new();
        let mut c = ConnectorStatus::new("hs", "hubspot", vec![], true);
        c.state = ConnectorState::Idle;
        c.records_in = 7;
        let text = m.render(1.5, true, &StoreStats::default(), &[c]);
        assert!(text.contains("revsync_ready 1"), "{text}");
        assert!(
            text.contains(r#"revsync_connector_state{connector="hs",state="idle"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"revsync_connector_state{connector="hs",state="running"} 0"#));
        assert!(text.contains(r#"revsync_connector_records_in{connector="hs"} 7"#));
        assert!(text.contains("# HELP revsync_build_info"));
        assert!(text.ends_with("# EOF\n"));
    }
}
