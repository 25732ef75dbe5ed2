//! Every Prometheus metric revsync exports, declared in one place with its help text.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::status::{ConnectorState, ConnectorStatus};
use crate::store::StoreStats;

/// Labels of `revsync_http_requests_total`. Every value comes from a bounded set: the
/// matched route template (never the raw path; `unmatched` for 404s), a known method or
/// `other`, the status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub method: &'static str,
    pub status: u16,
}

/// A request's method as a label: clients choose the method's text, so anything but the
/// standard methods is one value.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkflowLabels {
    pub rule: String,
    pub outcome: String,
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
pub struct RevenueLabels {
    pub kpi: String,
    pub currency: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: String,
}

type PerConnector<M> = Family<ConnectorLabels, M>;

/// Reads one count from a connector's status.
type CountOf = fn(&ConnectorStatus) -> u64;

/// Counts kept by `/status` since start, exported as counters (`_total` is added by the
/// encoder): name, help, and how to read the count from a connector's status.
const CONNECTOR_COUNTERS: &[(&str, &str, CountOf)] = &[
    (
        "connector_records_in",
        "Changes read from the connector's system that were new",
        |c| c.records_in,
    ),
    (
        "connector_records_reread",
        "Records read again with nothing new (overlap windows, repeated events)",
        |c| c.records_reread,
    ),
    (
        "connector_records_echoed",
        "Revsync's own writes read back from the system, nothing new",
        |c| c.records_echoed,
    ),
    (
        "connector_records_filtered",
        "Records read that are outside their object's filter, so not brought in",
        |c| c.records_filtered,
    ),
    (
        "connector_records_out",
        "Records written to the connector's system",
        |c| c.records_out,
    ),
    (
        "connector_edits_read_before_push",
        "Edits made in the connector's system since its last read, found and applied before an update would have written over them",
        |c| c.edits_read_before_push,
    ),
    (
        "connector_invalid_records",
        "Records or values skipped because the system sent something unreadable",
        |c| c.invalid_records,
    ),
    (
        "connector_errors",
        "Errors met by the connector",
        |c| c.errors.count,
    ),
    (
        "connector_rate_limited",
        "Rate-limit answers (429 or equivalent) met by the connector",
        |c| c.rate_limit.as_ref().map_or(0, |r| r.throttled),
    ),
    (
        "api_requests",
        "Requests sent to the connector's system's API (retries included)",
        |c| c.api_requests,
    ),
    (
        "connector_restarts",
        "Times a connector task was restarted after a panic",
        |c| c.restarts,
    ),
    (
        "connector_webhooks_accepted",
        "Webhook events stored durably",
        |c| c.webhooks_accepted,
    ),
    (
        "connector_webhooks_rejected",
        "Webhook requests refused (signature, staleness, shape)",
        |c| c.webhooks_rejected,
    ),
];

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    uptime_seconds: Gauge<f64, AtomicU64>,
    ready: Gauge,
    store_size_bytes: Gauge,
    store_flushes: Counter,
    connector_state: Family<ConnectorStateLabels, Gauge>,
    counters: Vec<PerConnector<Counter>>,
    outbox_depth: PerConnector<Gauge>,
    dead_letters: PerConnector<Gauge>,
    lag_seconds: PerConnector<Gauge>,
    rate_limit_wait_seconds: PerConnector<Gauge<f64, AtomicU64>>,
    api_quota_remaining: PerConnector<Gauge>,
    revenue: Family<RevenueLabels, Gauge<f64, AtomicU64>>,
    identity_scored_merges: Counter,
    identity_review_pairs: Counter,
    identity_vetoes: Counter,
    identity_unmerges: Counter,
    identity_review_pending: Gauge,
    workflow_runs: Family<WorkflowLabels, Counter>,
    /// Counters are advanced to the status figures under this lock, so two scrapes at
    /// once cannot both add the same difference.
    rendering: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("revsync");
        let build_info = Family::<VersionLabels, Gauge>::default();
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        r.register("build_info", "revsync build, as a label", build_info);
        let m = Self {
            http_requests: Family::default(),
            uptime_seconds: Gauge::default(),
            ready: Gauge::default(),
            store_size_bytes: Gauge::default(),
            store_flushes: Counter::default(),
            connector_state: Family::default(),
            counters: CONNECTOR_COUNTERS
                .iter()
                .map(|_| PerConnector::default())
                .collect(),
            outbox_depth: Family::default(),
            dead_letters: Family::default(),
            lag_seconds: Family::default(),
            rate_limit_wait_seconds: Family::default(),
            api_quota_remaining: Family::default(),
            revenue: Family::default(),
            identity_scored_merges: Counter::default(),
            identity_review_pairs: Counter::default(),
            identity_vetoes: Counter::default(),
            identity_unmerges: Counter::default(),
            identity_review_pending: Gauge::default(),
            workflow_runs: Family::default(),
            rendering: Mutex::new(()),
            registry: Registry::default(),
        };
        r.register(
            "workflow_runs",
            "Workflow rule runs and what came of them (outcome: done, scheduled, failed; actions: acts and webhooks carried out; webhooks_sent)",
            m.workflow_runs.clone(),
        );
        r.register(
            "identity_scored_merges",
            "Copies no exact key placed that joined a record on their scored match",
            m.identity_scored_merges.clone(),
        );
        r.register(
            "identity_review_pairs",
            "Likely duplicates sent to the review queue",
            m.identity_review_pairs.clone(),
        );
        r.register(
            "identity_vetoes",
            "Scored matches a guard forbade (two addresses at one company, two companies, a strong id)",
            m.identity_vetoes.clone(),
        );
        r.register(
            "identity_unmerges",
            "Merges an operator undid with records unmerge",
            m.identity_unmerges.clone(),
        );
        r.register(
            "identity_review_pending",
            "Pairs waiting in the review queue",
            m.identity_review_pending.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests served, by route template, method and status",
            m.http_requests.clone(),
        );
        r.register(
            "uptime_seconds",
            "Seconds since the daemon started",
            m.uptime_seconds.clone(),
        );
        r.register("ready", "1 when /readyz answers 200", m.ready.clone());
        r.register_with_unit(
            "store_size",
            "Size of the store on disk",
            Unit::Bytes,
            m.store_size_bytes.clone(),
        );
        r.register(
            "store_flushes",
            "Explicit store flushes",
            m.store_flushes.clone(),
        );
        r.register(
            "connector_state",
            "1 for the state each connector is in",
            m.connector_state.clone(),
        );
        for ((name, help, _), family) in CONNECTOR_COUNTERS.iter().zip(&m.counters) {
            r.register(*name, *help, family.clone());
        }
        r.register(
            "connector_outbox_depth",
            "Pushes waiting for the connector",
            m.outbox_depth.clone(),
        );
        r.register(
            "connector_dead_letters",
            "Pushes the connector's system refused for good, waiting for a replay",
            m.dead_letters.clone(),
        );
        r.register_with_unit(
            "connector_lag",
            "Time since the connector's last successful read or push",
            Unit::Seconds,
            m.lag_seconds.clone(),
        );
        r.register_with_unit(
            "connector_rate_limit_wait",
            "How long the connector's requests are currently held back (Retry-After)",
            Unit::Seconds,
            m.rate_limit_wait_seconds.clone(),
        );
        r.register(
            "connector_api_quota_remaining",
            "What the system's API says is left of its allowance (Salesforce: per day)",
            m.api_quota_remaining.clone(),
        );
        r.register(
            "revenue",
            "Revenue KPIs from the canonical store, per currency: mrr, arr and open_pipeline in minor units; nrr, grr and logo_churn of the month to date as fractions (refreshed every few minutes)",
            m.revenue.clone(),
        );
        Self { registry: r, ..m }
    }

    /// The revenue gauges from a KPI report whose last period is the month to date. A KPI
    /// that is unavailable is left out, not set to 0.
    pub fn set_revenue(&self, report: &serde_json::Value) {
        let set = |kpi: &str, currency: &str, v: f64| {
            self.revenue
                .get_or_create(&RevenueLabels {
                    kpi: kpi.to_owned(),
                    currency: currency.to_owned(),
                })
                .set(v);
        };
        if let Some(now) = report["now"].as_object() {
            for (cur, v) in now {
                for kpi in ["mrr", "arr", "open_pipeline"] {
                    if let Some(x) = v[kpi].as_f64() {
                        set(kpi, cur, x);
                    }
                }
            }
        }
        let last = report["periods"].as_array().and_then(|p| p.last());
        if let Some(curs) = last.and_then(|p| p["currencies"].as_object()) {
            for (cur, v) in curs {
                for kpi in ["nrr", "grr", "logo_churn"] {
                    let pct = v.get(kpi).and_then(|k| k.get("percent"));
                    if let Some(pct) = pct.and_then(serde_json::Value::as_f64) {
                        set(kpi, cur, pct / 100.0);
                    }
                }
            }
        }
    }

    /// Move the per-rule workflow counters up to the runner's counts.
    pub fn workflows(&self, rules: &[(String, crate::workflows::runner::RuleCounts)]) {
        for (rule, c) in rules {
            for (outcome, n) in [
                ("done", c.runs),
                ("scheduled", c.scheduled),
                ("failed", c.failures),
                ("actions", c.actions),
                ("webhooks_sent", c.webhooks_sent),
            ] {
                let labels = WorkflowLabels {
                    rule: rule.clone(),
                    outcome: outcome.to_owned(),
                };
                advance(&self.workflow_runs.get_or_create(&labels), n);
            }
        }
    }

    /// Refresh from live state, then render the OpenMetrics text format.
    pub fn render(
        &self,
        uptime_secs: f64,
        ready: bool,
        store: &StoreStats,
        connectors: &[ConnectorStatus],
        identity: &crate::engine::IdentityStats,
    ) -> String {
        let _one_at_a_time = self
            .rendering
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.uptime_seconds.set(uptime_secs);
        self.ready.set(i64::from(ready));
        self.store_size_bytes.set(gauge(store.size_on_disk_bytes));
        advance(&self.store_flushes, store.flushes);
        advance(&self.identity_scored_merges, identity.scored_merged);
        advance(&self.identity_review_pairs, identity.to_review);
        advance(&self.identity_vetoes, identity.vetoed);
        advance(&self.identity_unmerges, identity.unmerged);
        self.identity_review_pending
            .set(gauge(identity.pending_review));
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
            for ((_, _, read), family) in CONNECTOR_COUNTERS.iter().zip(&self.counters) {
                advance(&family.get_or_create(&l), read(c));
            }
            self.outbox_depth
                .get_or_create(&l)
                .set(gauge(c.outbox_depth));
            self.dead_letters
                .get_or_create(&l)
                .set(gauge(c.dead_letters));
            self.lag_seconds
                .get_or_create(&l)
                .set(gauge(c.lag_secs.unwrap_or(0)));
            if let Some(q) = &c.api_quota {
                self.api_quota_remaining
                    .get_or_create(&l)
                    .set(gauge(q.remaining));
            }
            let wait_ms = c.rate_limit.as_ref().map_or(0, |r| r.current_wait_ms);
            #[allow(clippy::cast_precision_loss)] // milliseconds far below 2^52
            self.rate_limit_wait_seconds
                .get_or_create(&l)
                .set(wait_ms as f64 / 1000.0);
        }
        let mut out = String::new();
        // Writing to a String cannot fail; an empty answer would be the only symptom.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Move a counter up to a count kept elsewhere (counts only grow while the daemon runs).
fn advance(counter: &Counter, to: u64) {
    let now = counter.get();
    if to > now {
        counter.inc_by(to - now);
    }
}

fn gauge(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
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
        c.api_requests = 12;
        c.api_quota = Some(crate::status::ApiQuota {
            remaining: 900,
            limit: 1000,
            window: "day",
        });
        let text = m.render(
            1.5,
            true,
            &StoreStats::default(),
            std::slice::from_ref(&c),
            &Default::default(),
        );
        assert!(text.contains("revsync_ready 1"), "{text}");
        assert!(
            text.contains(r#"revsync_connector_state{connector="hs",state="idle"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"revsync_connector_state{connector="hs",state="running"} 0"#));
        assert!(text.contains(r#"revsync_connector_records_in_total{connector="hs"} 7"#));
        assert!(text.contains(r#"revsync_api_requests_total{connector="hs"} 12"#));
        assert!(text.contains(r#"revsync_connector_api_quota_remaining{connector="hs"} 900"#));
        assert!(
            text.contains("# TYPE revsync_connector_records_in counter"),
            "{text}"
        );
        // A second render with the same figures does not count them twice.
        let text = m.render(2.0, true, &StoreStats::default(), &[c], &Default::default());
        assert!(text.contains(r#"revsync_connector_records_in_total{connector="hs"} 7"#));
        assert!(text.contains("revsync_store_size_bytes 0"), "{text}");
        assert!(
            text.contains("# UNIT revsync_connector_lag_seconds seconds"),
            "{text}"
        );
        assert!(text.contains("# HELP revsync_build_info"));
        assert!(text.ends_with("# EOF\n"));
    }
}

#[cfg(test)]
mod revenue_tests {
    use super::*;

    #[test]
    fn revenue_gauges_show_what_the_report_has_and_leave_out_what_it_cannot_give() {
        let m = Metrics::new();
        m.set_revenue(&serde_json::json!({
            "now": { "USD": { "mrr": 17_000, "arr": 204_000, "open_pipeline": 5_000 } },
            "periods": [{ "currencies": { "USD": {
                "nrr": { "percent": 150.0 },
                "grr": { "percent": 100.0 },
                "logo_churn": { "unavailable": "subscription history starts later" },
            } } }],
        }));
        let text = m.render(1.0, true, &StoreStats::default(), &[], &Default::default());
        for line in [
            "revsync_revenue{kpi=\"mrr\",currency=\"USD\"} 17000.0",
            "revsync_revenue{kpi=\"arr\",currency=\"USD\"} 204000.0",
            "revsync_revenue{kpi=\"open_pipeline\",currency=\"USD\"} 5000.0",
            "revsync_revenue{kpi=\"nrr\",currency=\"USD\"} 1.5",
            "revsync_revenue{kpi=\"grr\",currency=\"USD\"} 1.0",
        ] {
            assert!(text.contains(line), "no `{line}` in:\n{text}");
        }
        assert!(!text.contains("kpi=\"logo_churn\""), "{text}");
    }
}

#[cfg(test)]
mod label_tests {
    use super::*;

    #[test]
    fn methods_outside_the_standard_ones_share_one_label() {
        let odd = axum::http::Method::from_bytes(b"X-RANDOM-12345").unwrap();
        assert_eq!(method_label(&odd), "other");
        assert_eq!(method_label(&axum::http::Method::GET), "GET");
    }
}
