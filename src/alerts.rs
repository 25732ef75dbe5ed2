//! Alerts: a Slack-compatible `{"text": ...}` POST to `alerts.webhook_url` when a
//! connector needs a person (authentication failed, paused on a quota, dead letters past a
//! threshold, no successful read for too long), and again when that is over.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::AlertsConfig;
use crate::status::{ConnectorState, ConnectorStatus, StatusHub};
use crate::sync::backoff;

/// What needs a person about one connector now, each with how to say it.
fn conditions(c: &ConnectorStatus, cfg: &AlertsConfig) -> BTreeMap<&'static str, String> {
    let mut out = BTreeMap::new();
    match c.state {
        ConnectorState::AuthFailed => {
            let why = c.errors.last_message.clone().unwrap_or_default();
            out.insert("auth_failed", format!("authentication failed: {why}"));
        }
        ConnectorState::Paused => {
            out.insert("paused", "paused: its API quota is spent".to_owned());
        }
        _ => {}
    }
    if c.dead_letters > cfg.dead_letters_over {
        out.insert(
            "dead_letters",
            format!(
                "{} dead letters (more than {}): `revsync dlq list --connector {}`",
                c.dead_letters, cfg.dead_letters_over, c.id
            ),
        );
    }
    if c.lag_secs.is_some_and(|l| l > cfg.lag_over_secs) {
        out.insert(
            "lag",
            format!(
                "no successful read or push for {} s (more than {})",
                c.lag_secs.unwrap_or(0),
                cfg.lag_over_secs
            ),
        );
    }
    out
}

/// The messages a change of conditions calls for: each one that began, and each one over.
fn messages(
    id: &str,
    before: &BTreeMap<&'static str, String>,
    now: &BTreeMap<&'static str, String>,
) -> Vec<String> {
    let began = now
        .iter()
        .filter(|(k, _)| !before.contains_key(*k))
        .map(|(_, say)| format!("revsync: connector `{id}`: {say}"));
    let over = before
        .keys()
        .filter(|k| !now.contains_key(*k))
        .map(|k| format!("revsync: connector `{id}` recovered ({k} is over)"));
    began.chain(over).collect()
}

/// Watch every connector until shutdown; alert on each change of what needs a person.
pub async fn watch(cfg: AlertsConfig, status: Arc<StatusHub>, cancel: CancellationToken) {
    let Some(url) = cfg.webhook_url.as_ref().map(|u| u.expose().to_owned()) else {
        return;
    };
    let Ok(client) = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    else {
        return;
    };
    let every = Duration::from_secs(cfg.check_interval_secs.max(1));
    let mut known: BTreeMap<String, BTreeMap<&'static str, String>> = BTreeMap::new();
    loop {
        for c in status.snapshot() {
            let now = conditions(&c, &cfg);
            let before = known.remove(&c.id).unwrap_or_default();
            for text in messages(&c.id, &before, &now) {
                send(&client, &url, &text, &cancel).await;
            }
            known.insert(c.id, now);
        }
        if !backoff::sleep(every, &cancel).await {
            return;
        }
    }
}

/// POST one message, a few tries apart; a failure is logged (never the URL: it is a secret).
async fn send(client: &reqwest::Client, url: &str, text: &str, cancel: &CancellationToken) {
    let mut retry = backoff::Backoff::new(backoff::exponential(
        Duration::from_secs(1),
        Duration::from_secs(30),
    ))
    .at_most(3);
    loop {
        let sent = client
            .post(url)
            .json(&serde_json::json!({ "text": text }))
            .send()
            .await;
        let error = match sent {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => format!("the alert webhook answered {}", r.status()),
            Err(e) => format!(
                "the alert webhook could not be reached ({})",
                e.without_url()
            ),
        };
        let Some(wait) = retry.failed() else {
            tracing::warn!(error, alert = text, "alert not delivered");
            return;
        };
        if !backoff::sleep(wait, cancel).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_when_a_condition_begins_and_one_when_it_is_over() {
        let cfg = AlertsConfig::default();
        let mut c = ConnectorStatus::new("hubspot-main", "hubspot", Vec::new(), true);
        let calm = conditions(&c, &cfg);
        assert!(calm.is_empty());
        c.state = ConnectorState::AuthFailed;
        c.dead_letters = 2;
        let bad = conditions(&c, &cfg);
        let said = messages(&c.id, &calm, &bad);
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(said.iter().any(|m| m.contains("authentication failed")));
        assert!(said.iter().any(|m| m.contains("2 dead letters")));
        // Nothing new: nothing said again.
        assert!(messages(&c.id, &bad, &bad).is_empty());
        c.state = ConnectorState::Idle;
        let better = conditions(&c, &cfg);
        assert_eq!(
            messages(&c.id, &bad, &better),
            vec!["revsync: connector `hubspot-main` recovered (auth_failed is over)"]
        );
    }
}
