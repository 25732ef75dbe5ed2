//! HubSpot CRM v3 calls over the SDK's `ApiClient`, and the policy that reads HubSpot's
//! rate-limit headers and 429 bodies.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use reqwest::header::HeaderMap;
use revsync_sdk::http::{ApiClient, ApiPolicy, ApiRequest, Auth, Limits, RetryPolicy};
use revsync_sdk::{upstream_wait, ConnectorError, LimitScope, Secret};
use serde_json::{json, Value};

use crate::config::{HubSpotParams, RetryAfterUnit};
use crate::mapping::ObjectSpec;

/// Most inputs one batch call takes (API_FACTS 1.3).
pub const BATCH_LIMIT: usize = 100;
/// Most records one list page returns.
pub const LIST_LIMIT: usize = 100;
/// Most records one list page returns when `propertiesWithHistory` is asked: HubSpot's
/// reference says asking it "will reduce the maximum number of objects that can be read by
/// a single request"; 50 is the figure integrators report [U].
pub const LIST_LIMIT_WITH_HISTORY: usize = 50;
/// No search query pages past this many results (API_FACTS 1.2): 400 beyond.
pub const SEARCH_CAP: usize = 10_000;

/// HubSpot's peculiarities: which 429 is a daily quota, what the headers say.
#[derive(Debug, Clone)]
pub struct HubSpotPolicy {
    pub retry_after_unit: RetryAfterUnit,
    pub daily_reset_utc_offset_mins: i32,
}

impl HubSpotPolicy {
    /// The time until the account's next midnight, when the daily quota resets [U].
    pub fn until_daily_reset(&self, now: DateTime<Utc>) -> Duration {
        let offset = ChronoDuration::minutes(i64::from(self.daily_reset_utc_offset_mins));
        let local = now + offset;
        let next_midnight = local
            .date_naive()
            .succ_opt()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc() - offset)
            .unwrap_or(now + ChronoDuration::hours(24));
        (next_midnight - now)
            .to_std()
            .unwrap_or(Duration::from_secs(60))
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

impl ApiPolicy for HubSpotPolicy {
    fn classify(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Option<ConnectorError> {
        match status {
            429 => {
                let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                let policy = parsed
                    .get("policyName")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if policy.eq_ignore_ascii_case("DAILY") {
                    // Retrying burns a quota shared with every app of the account: wait for
                    // the reset instead.
                    return Some(ConnectorError::RateLimited {
                        retry_after: Some(self.until_daily_reset(Utc::now())),
                        scope: LimitScope::Daily,
                    });
                }
                let stated =
                    header_u64(headers, "retry-after").map(|v| match self.retry_after_unit {
                        RetryAfterUnit::Seconds => upstream_wait(Duration::from_secs(v)),
                        RetryAfterUnit::Milliseconds => upstream_wait(Duration::from_millis(v)),
                    });
                let window = if policy.eq_ignore_ascii_case("SECONDLY") {
                    Some(Duration::from_secs(1))
                } else {
                    header_u64(headers, "x-hubspot-ratelimit-interval-milliseconds")
                        .map(|ms| upstream_wait(Duration::from_millis(ms)))
                };
                // Without a stated wait, the rolling window has certainly moved on after one
                // full interval.
                Some(ConnectorError::RateLimited {
                    retry_after: stated.or(window).or(Some(Duration::from_secs(10))),
                    scope: LimitScope::Burst,
                })
            }
            // Locked during a bulk sync: "wait at least 2 s" (API_FACTS 1.3).
            423 => Some(ConnectorError::RateLimited {
                retry_after: Some(Duration::from_secs(2)),
                scope: LimitScope::Burst,
            }),
            477 => Some(ConnectorError::Transient(
                "hubspot answered 477 migration in progress".into(),
            )),
            _ => None,
        }
    }

    fn observe(&self, headers: &HeaderMap) -> Option<Duration> {
        if header_u64(headers, "x-hubspot-ratelimit-remaining")? > 0 {
            return None;
        }
        let interval =
            header_u64(headers, "x-hubspot-ratelimit-interval-milliseconds").unwrap_or(10_000);
        Some(upstream_wait(Duration::from_millis(interval)))
    }
}

/// One HubSpot account: the general budget and the search API's own.
#[derive(Debug, Clone)]
pub struct Client {
    pub api: ApiClient,
    pub search: ApiClient,
    token: Secret,
    pub policy: HubSpotPolicy,
    search_page: usize,
    /// The unique property creates carry the canonical id in: read back with every record.
    id_prop: String,
    /// Per object, properties the YAML mapping names beyond the connector's own list
    /// (custom properties above all), so every read returns them.
    mapped: BTreeMap<String, Vec<String>>,
}

/// What a batch write answered: objects written and per-input errors.
#[derive(Debug, Default)]
pub struct BatchAnswer {
    pub results: Vec<Value>,
    pub errors: Vec<Value>,
}

impl Client {
    pub fn new(p: &HubSpotParams, limits: Limits) -> Result<Self, ConnectorError> {
        let policy = HubSpotPolicy {
            retry_after_unit: p.retry_after_unit,
            daily_reset_utc_offset_mins: p.daily_reset_utc_offset_mins,
        };
        let timeout = Duration::from_millis(p.timeout_ms);
        let api = ApiClient::new(
            &p.base_url,
            limits,
            RetryPolicy::default(),
            timeout,
            Arc::new(policy.clone()),
        )?;
        let search = ApiClient::new(
            &p.base_url,
            Limits::new(p.search_requests_per_sec, Duration::from_secs(1)),
            RetryPolicy::default(),
            timeout,
            Arc::new(policy.clone()),
        )?;
        Ok(Self {
            api,
            search,
            token: p.token.clone(),
            policy,
            search_page: p.search_page_size as usize,
            id_prop: p.canonical_id_property.clone(),
            mapped: BTreeMap::new(),
        })
    }

    /// Reads also ask for the properties the mapping names (`BuildContext::mapped_fields`).
    /// Association fields are left out: they are not properties of the object.
    pub fn with_mapped_properties(mut self, mapped: &BTreeMap<String, Vec<String>>) -> Self {
        for (object, fields) in mapped {
            let Some(spec) = crate::mapping::spec(object) else {
                continue;
            };
            let extra: Vec<String> = fields
                .iter()
                .filter(|f| !spec.properties.contains(&f.as_str()))
                .filter(|f| !spec.associations.iter().any(|(a, _)| a == f))
                .cloned()
                .collect();
            if !extra.is_empty() {
                self.mapped.insert(object.clone(), extra);
            }
        }
        self
    }

    pub fn search_page(&self) -> usize {
        self.search_page
    }

    /// The properties a read asks for: the object's, the mapped ones, and the canonical id
    /// property.
    fn properties(&self, spec: &ObjectSpec) -> Vec<&str> {
        let mut p: Vec<&str> = spec.properties.to_vec();
        let mapped = self.mapped.get(spec.name).into_iter().flatten();
        for extra in mapped.map(String::as_str).chain([self.id_prop.as_str()]) {
            if !p.contains(&extra) {
                p.push(extra);
            }
        }
        p
    }

    fn auth(&self) -> Auth {
        Auth::Bearer(self.token.clone())
    }

    /// `GET /crm/v3/properties/{obj}`: every property definition of the object, custom ones
    /// included, in one answer (the endpoint does not page).
    pub async fn property_definitions(&self, spec: &ObjectSpec) -> Result<Value, ConnectorError> {
        let req =
            ApiRequest::get(format!("/crm/v3/properties/{}", spec.name)).with_auth(self.auth());
        self.api.send(req).await?.json()
    }

    /// One page of `GET /crm/v3/objects/{obj}`: records and the next `after`, if any.
    ///
    /// `history` names the properties whose past values to return with each record
    /// (`propertiesWithHistory`); asking any makes pages smaller.
    pub async fn list(
        &self,
        spec: &ObjectSpec,
        after: Option<&str>,
        archived: bool,
        history: &[&str],
    ) -> Result<(Vec<Value>, Option<String>), ConnectorError> {
        let limit = if history.is_empty() {
            LIST_LIMIT
        } else {
            LIST_LIMIT_WITH_HISTORY
        };
        let mut req = ApiRequest::get(format!("/crm/v3/objects/{}", spec.name))
            .with_auth(self.auth())
            .with_query("limit", limit.to_string())
            .with_query("properties", self.properties(spec).join(","))
            .with_query("archived", archived.to_string());
        if !history.is_empty() {
            req = req.with_query("propertiesWithHistory", history.join(","));
        }
        let assoc: Vec<&str> = spec.associations.iter().map(|(_, to)| *to).collect();
        if !assoc.is_empty() {
            req = req.with_query("associations", assoc.join(","));
        }
        if let Some(after) = after {
            req = req.with_query("after", after);
        }
        list_page(&self.api.send(req).await?.json()?)
    }

    /// `POST /crm/v3/objects/{obj}/search` on the modification time, `GTE since_ms`,
    /// ascending (or descending with `limit` 1 to learn the newest).
    pub async fn search_modified(
        &self,
        spec: &ObjectSpec,
        since_ms: i64,
        after: usize,
        limit: usize,
        descending: bool,
    ) -> Result<Vec<Value>, ConnectorError> {
        let body = json!({
            "filterGroups": [{"filters": [
                {"propertyName": spec.modified, "operator": "GTE", "value": since_ms.max(0).to_string()}
            ]}],
            "sorts": [{"propertyName": spec.modified, "direction": if descending { "DESCENDING" } else { "ASCENDING" }}],
            "properties": self.properties(spec),
            "limit": limit,
            "after": after.to_string(),
        });
        // A search is a read: retrying it is safe.
        let req = ApiRequest::post(format!("/crm/v3/objects/{}/search", spec.name))
            .with_auth(self.auth())
            .with_json(body)
            .with_retry(true);
        let page: Value = self.search.send(req).await?.json()?;
        results_of(&page)
    }

    /// `POST /crm/v3/objects/{obj}/batch/read`, at most 100 ids.
    pub async fn batch_read(
        &self,
        spec: &ObjectSpec,
        ids: &[String],
    ) -> Result<Vec<Value>, ConnectorError> {
        let inputs: Vec<Value> = ids.iter().map(|id| json!({"id": id})).collect();
        let req = ApiRequest::post(format!("/crm/v3/objects/{}/batch/read", spec.name))
            .with_auth(self.auth())
            // The published spec marks `propertiesWithHistory` required: a strict
            // gateway or validating proxy refuses the read without it.
            .with_json(json!({
                "properties": self.properties(spec),
                "propertiesWithHistory": [],
                "inputs": inputs,
            }))
            .with_retry(true);
        let page: Value = self.api.send(req).await?.json()?;
        results_of(&page)
    }

    /// Associated ids per record, through the v4 association batch read (search results and
    /// batch reads carry no associations).
    pub async fn associations(
        &self,
        from: &str,
        to: &str,
        ids: &[String],
    ) -> Result<BTreeMap<String, Vec<String>>, ConnectorError> {
        let mut out = BTreeMap::new();
        for chunk in ids.chunks(BATCH_LIMIT) {
            let inputs: Vec<Value> = chunk.iter().map(|id| json!({"id": id})).collect();
            let req = ApiRequest::post(format!("/crm/v4/associations/{from}/{to}/batch/read"))
                .with_auth(self.auth())
                .with_json(json!({"inputs": inputs}))
                .with_retry(true);
            association_page(&self.api.send(req).await?.json()?, &mut out)?;
        }
        Ok(out)
    }

    /// A batch write (`create`, `update`, `upsert`): 200, 201 and 207 are all answers.
    pub async fn batch_write(
        &self,
        spec: &ObjectSpec,
        op: &str,
        inputs: Vec<Value>,
    ) -> Result<BatchAnswer, ConnectorError> {
        debug_assert!(inputs.len() <= BATCH_LIMIT);
        // Upserts and updates name their target, so sending them twice writes once; creates
        // are never sent this way (they go through upsert).
        let req = ApiRequest::post(format!("/crm/v3/objects/{}/batch/{op}", spec.name))
            .with_auth(self.auth())
            .with_json(json!({"inputs": inputs}))
            .with_retry(op != "create");
        batch_answer(&self.api.send(req).await?.json()?)
    }

    /// `POST …/batch/archive`: archiving twice is harmless.
    pub async fn archive(&self, spec: &ObjectSpec, ids: &[String]) -> Result<(), ConnectorError> {
        let inputs: Vec<Value> = ids.iter().map(|id| json!({"id": id})).collect();
        let req = ApiRequest::post(format!("/crm/v3/objects/{}/batch/archive", spec.name))
            .with_auth(self.auth())
            .with_json(json!({"inputs": inputs}))
            .with_retry(true);
        self.api.send(req).await.map(|_| ())
    }

    /// Default (unlabeled) associations through the v4 batch endpoint; repeating one is a
    /// no-op.
    pub async fn associate(
        &self,
        from: &str,
        to: &str,
        pairs: &[(String, String)],
    ) -> Result<(), ConnectorError> {
        for chunk in pairs.chunks(BATCH_LIMIT) {
            let inputs: Vec<Value> = chunk
                .iter()
                .map(|(f, t)| json!({"from": {"id": f}, "to": {"id": t}}))
                .collect();
            let req = ApiRequest::post(format!(
                "/crm/v4/associations/{from}/{to}/batch/associate/default"
            ))
            .with_auth(self.auth())
            .with_json(json!({"inputs": inputs}))
            .with_retry(true);
            self.api.send(req).await?;
        }
        Ok(())
    }
}

pub fn value_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A list page: its records and the next `after`, if any.
pub(crate) fn list_page(page: &Value) -> Result<(Vec<Value>, Option<String>), ConnectorError> {
    let results = results_of(page)?;
    let next = page
        .pointer("/paging/next/after")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok((results, next))
}

/// A v4 association batch read: the associated ids of each record, added to `out`.
pub(crate) fn association_page(
    page: &Value,
    out: &mut BTreeMap<String, Vec<String>>,
) -> Result<(), ConnectorError> {
    for r in results_of(page)? {
        let Some(from_id) = r.pointer("/from/id").and_then(value_id) else {
            continue;
        };
        let mut tos: Vec<String> = r
            .get("to")
            .and_then(Value::as_array)
            .map(|ts| {
                ts.iter()
                    .filter_map(|t| t.get("toObjectId").and_then(value_id))
                    .collect()
            })
            .unwrap_or_default();
        tos.dedup();
        out.insert(from_id, tos);
    }
    Ok(())
}

/// A batch write's answer (200, 201 or 207).
pub(crate) fn batch_answer(body: &Value) -> Result<BatchAnswer, ConnectorError> {
    Ok(BatchAnswer {
        results: results_of(body)?,
        errors: body
            .get("errors")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    })
}

pub(crate) fn results_of(page: &Value) -> Result<Vec<Value>, ConnectorError> {
    match page.get("results") {
        Some(Value::Array(rs)) => Ok(rs.clone()),
        None => Ok(Vec::new()),
        Some(_) => Err(ConnectorError::Permanent {
            detail: "malformed response: `results` is not an array".into(),
            status: None,
            body: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn policy() -> HubSpotPolicy {
        HubSpotPolicy {
            retry_after_unit: RetryAfterUnit::Seconds,
            daily_reset_utc_offset_mins: 0,
        }
    }

    #[test]
    fn daily_429_pauses_until_reset_and_burst_429_retries() {
        let daily = br#"{"status":"error","message":"You have reached your daily limit.","errorType":"RATE_LIMIT","correlationId":"c","policyName":"DAILY"}"#;
        match policy().classify(429, &HeaderMap::new(), daily) {
            Some(ConnectorError::RateLimited {
                retry_after: Some(d),
                scope: LimitScope::Daily,
            }) => {
                assert!(d <= Duration::from_secs(86_400));
            }
            other => panic!("{other:?}"),
        }
        let burst =
            br#"{"status":"error","policyName":"TEN_SECONDLY_ROLLING","correlationId":"c"}"#;
        let mut h = HeaderMap::new();
        h.insert(
            "x-hubspot-ratelimit-interval-milliseconds",
            HeaderValue::from_static("10000"),
        );
        assert_eq!(
            policy().classify(429, &h, burst),
            Some(ConnectorError::RateLimited {
                retry_after: Some(Duration::from_secs(10)),
                scope: LimitScope::Burst
            })
        );
        h.insert("retry-after", HeaderValue::from_static("1500"));
        let ms = HubSpotPolicy {
            retry_after_unit: RetryAfterUnit::Milliseconds,
            ..policy()
        };
        assert_eq!(
            ms.classify(429, &h, burst),
            Some(ConnectorError::RateLimited {
                retry_after: Some(Duration::from_millis(1500)),
                scope: LimitScope::Burst
            })
        );
        assert_eq!(policy().classify(400, &h, b"{}"), None);
    }

    #[test]
    fn absurd_stated_waits_are_held_to_a_day() {
        let huge = HeaderValue::from_static("18446744073709551615");
        let mut h = HeaderMap::new();
        h.insert("retry-after", huge.clone());
        h.insert("x-hubspot-ratelimit-interval-milliseconds", huge);
        let burst = br#"{"policyName":"TEN_SECONDLY_ROLLING"}"#;
        for unit in [RetryAfterUnit::Seconds, RetryAfterUnit::Milliseconds] {
            let p = HubSpotPolicy {
                retry_after_unit: unit,
                ..policy()
            };
            assert_eq!(
                p.classify(429, &h, burst),
                Some(ConnectorError::RateLimited {
                    retry_after: Some(revsync_sdk::MAX_UPSTREAM_WAIT),
                    scope: LimitScope::Burst
                })
            );
        }
        h.insert(
            "x-hubspot-ratelimit-remaining",
            HeaderValue::from_static("0"),
        );
        assert_eq!(policy().observe(&h), Some(revsync_sdk::MAX_UPSTREAM_WAIT));
    }

    #[test]
    fn daily_reset_is_the_next_midnight_at_the_offset() {
        let now = DateTime::parse_from_rfc3339("2026-01-10T23:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(policy().until_daily_reset(now), Duration::from_secs(3600));
        let east = HubSpotPolicy {
            daily_reset_utc_offset_mins: 120,
            ..policy()
        };
        // 01:00 local on the 11th: 23 hours to go.
        assert_eq!(east.until_daily_reset(now), Duration::from_secs(23 * 3600));
    }

    #[test]
    fn an_exhausted_window_pauses_the_account() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-hubspot-ratelimit-remaining",
            HeaderValue::from_static("3"),
        );
        h.insert(
            "x-hubspot-ratelimit-interval-milliseconds",
            HeaderValue::from_static("10000"),
        );
        assert_eq!(policy().observe(&h), None);
        h.insert(
            "x-hubspot-ratelimit-remaining",
            HeaderValue::from_static("0"),
        );
        assert_eq!(policy().observe(&h), Some(Duration::from_secs(10)));
    }
}
