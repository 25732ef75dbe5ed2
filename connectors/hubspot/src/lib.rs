//! HubSpot CRM v3 connector (contacts, companies, deals).
//!
//! Reads backfill through the list endpoints, then follow the CRM search API on the
//! modification time with a (timestamp, ids) cursor that stays a safety window behind now;
//! writes go through batch upsert/update/archive, 100 per call, one result per item.
//! The backfill's list asks each deal's property history and hands its past states to the
//! engine, dated as HubSpot dates them (`history.rs`, issue 20).

pub mod client;
pub mod config;
pub mod describe;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod history;
pub mod mapping;
#[cfg(feature = "sim")]
pub mod sim;
pub mod webhook;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use revsync_sdk::http::{LimiterStats, Limits};
use revsync_sdk::Shutdown;
use revsync_sdk::{
    answer, BuildContext, Capabilities, Change, Connector, ConnectorError, ConnectorType, Fetched,
    Kind, LimitScope, ObjectCapability, ParamError, PushItem, PushOp, PushResult, WebhookError,
    WebhookEvent, WebhookRequest,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::client::{BatchAnswer, Client, BATCH_LIMIT, SEARCH_CAP};
use crate::config::HubSpotParams;
use crate::mapping::ObjectSpec;

/// The `hubspot` connector type.
pub struct HubSpot;

impl ConnectorType for HubSpot {
    fn name(&self) -> &'static str {
        "hubspot"
    }

    fn objects(&self) -> &'static [(&'static str, Kind)] {
        &[
            ("contacts", Kind::Person),
            ("companies", Kind::Organization),
            ("deals", Kind::Deal),
        ]
    }

    fn validate_params(&self, params: &serde_json::Value) -> Result<(), Vec<ParamError>> {
        config::HubSpotParams::from_value(params).map(|_| ())
    }

    fn params_example(&self) -> &'static str {
        "params:\n  token: ${HUBSPOT_TOKEN}\n  tier: professional"
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Option<Result<Arc<dyn Connector>, ConnectorError>> {
        Some((|| {
            let params = HubSpotParams::from_value(ctx.params).map_err(|errors| {
                let detail = errors
                    .iter()
                    .map(|e| format!("params.{}: {}", e.path, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                permanent(format!("connector {}: {detail}", ctx.id))
            })?;
            let documented = Limits::new(params.burst_per_10s(), Duration::from_secs(10));
            let limits = ctx
                .rate_limit
                .resolve(documented)
                .map_err(|e| permanent(format!("connector {}: {e}", ctx.id)))?;
            let max_body = ctx
                .http
                .max_response_bytes()
                .map_err(|e| permanent(format!("connector {}: {e}", ctx.id)))?;
            let c: Arc<dyn Connector> = Arc::new(
                HubSpotConnector::new(params, limits)?
                    .with_mapped_properties(ctx.mapped_fields)
                    .with_max_response_bytes(max_body)
                    .with_shutdown(&ctx.shutdown),
            );
            Ok(c)
        })())
    }
}

pub(crate) fn permanent(detail: String) -> ConnectorError {
    ConnectorError::Permanent {
        detail,
        status: None,
        body: None,
    }
}

/// A position in the ascending modification order: a timestamp and the ids already read
/// at exactly that timestamp (ties are common at millisecond resolution and their order is
/// not documented, so "id greater than" would lose some).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pos {
    pub ts: i64,
    pub ids: BTreeSet<String>,
    /// Results of the query from `ts` to skip: only non-zero when more records share one
    /// timestamp than a page holds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Pos {
    fn at(ts: i64) -> Self {
        Self {
            ts,
            ids: BTreeSet::new(),
            offset: 0,
        }
    }

    fn covers(&self, ts: i64, id: &str) -> bool {
        ts < self.ts || (ts == self.ts && self.ids.contains(id))
    }

    fn advance(&mut self, ts: i64, id: &str) {
        if ts > self.ts {
            *self = Self::at(ts);
        }
        self.ids.insert(id.to_owned());
    }
}

/// Where a read resumes, stored by the engine with each page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Cursor {
    /// Walking the list endpoint; `since_ms` is the newest modification search knew of when
    /// the backfill began, where the incremental read will start.
    Backfill {
        after: Option<String>,
        since_ms: i64,
        archived_since_ms: i64,
        /// Records the walk handed out that search will find again from `since_ms` (the
        /// newest when it began, any changed while it ran): see `Search::seen`.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        seen: BTreeMap<String, (i64, u64)>,
    },
    /// Following search. `settled` never passes records newer than now minus the overlap
    /// (the index may still be missing some); `scan` is how far this pass has read.
    Search {
        settled: Pos,
        scan: Option<Pos>,
        archived_since_ms: i64,
        /// Records past `settled` already handed out: id -> (modified ms, fingerprint).
        /// The unsettled window is searched again on every pass; a record found there as
        /// it was handed out is not handed to the engine again (issue 17, as ADR 0031 does
        /// for Salesforce). Forgotten once `settled` passes it.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        seen: BTreeMap<String, (i64, u64)>,
    },
    /// Reading the recycle bin for archivals since `since_ms` (search never shows them).
    Archived {
        settled: Pos,
        after: Option<String>,
        since_ms: i64,
        started_ms: i64,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        seen: BTreeMap<String, (i64, u64)>,
    },
}

impl Cursor {
    pub fn encode(&self) -> Result<String, ConnectorError> {
        revsync_sdk::cursor_text(self)
    }

    pub fn decode(s: &str) -> Result<Self, ConnectorError> {
        serde_json::from_str(s)
            .map_err(|e| permanent(format!("unreadable hubspot cursor `{s}`: {e}")))
    }
}

/// A running HubSpot account connection.
#[derive(Debug)]
pub struct HubSpotConnector {
    client: Client,
    params: HubSpotParams,
    refused_associations: RefusedAssociations,
}

/// Associations HubSpot refused for good, shown on `/status`: their records were written
/// and count as pushed, so nothing else would say the association is missing.
#[derive(Debug, Default)]
struct RefusedAssociations(std::sync::Mutex<(u64, Option<String>)>);

impl RefusedAssociations {
    fn note(&self, from: &str, to: &str, pairs: &[(String, String)], e: &ConnectorError) {
        let why = match e {
            ConnectorError::Permanent {
                body: Some(body), ..
            } => serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|b| {
                    let category = b.get("category")?.as_str()?;
                    let message = b.get("message")?.as_str()?;
                    Some(format!("{category}: {message}"))
                })
                .unwrap_or_else(|| e.to_string()),
            other => other.to_string(),
        };
        for (from_id, to_id) in pairs {
            tracing::warn!(from, from_id = %from_id, to, to_id = %to_id, error = %why, "hubspot refused an association; its record was written");
        }
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        seen.0 = seen.0.saturating_add(pairs.len() as u64);
        if let Some((from_id, to_id)) = pairs.last() {
            seen.1 = Some(format!("{from} {from_id} -> {to} {to_id}: {why}"));
        }
    }

    fn notice(&self) -> Option<String> {
        let seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let last = seen.1.as_ref()?;
        Some(format!(
            "hubspot refused {} associations for good; their records were written without them (last: {last})",
            seen.0
        ))
    }
}

impl HubSpotConnector {
    /// Caps every API answer's body (the connector file's `http.max_response_bytes`).
    pub fn with_max_response_bytes(mut self, max: usize) -> Self {
        let client = &mut self.client;
        client.api = client.api.clone().with_max_response_bytes(max);
        client.search = client.search.clone().with_max_response_bytes(max);
        self
    }

    /// Reads ask for every property the mapping names, beside the connector's own list.
    pub fn with_mapped_properties(
        mut self,
        mapped: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> Self {
        self.client = self.client.with_mapped_properties(mapped);
        self
    }

    /// Ends both clients' waits when the daemon stops.
    pub fn with_shutdown(mut self, shutdown: &Shutdown) -> Self {
        let client = &mut self.client;
        client.api = client.api.clone().with_shutdown(shutdown.clone());
        client.search = client.search.clone().with_shutdown(shutdown.clone());
        self
    }

    pub fn new(params: HubSpotParams, limits: Limits) -> Result<Self, ConnectorError> {
        Ok(Self {
            client: Client::new(&params, limits)?,
            params,
            refused_associations: RefusedAssociations::default(),
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn overlap_ms(&self) -> i64 {
        i64::try_from(self.params.search_overlap_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// A daily 429 on either budget stops both: the quota is the account's.
    fn note(&self, e: ConnectorError) -> ConnectorError {
        if let ConnectorError::RateLimited {
            retry_after: Some(d),
            scope: LimitScope::Daily,
        } = &e
        {
            self.client.api.limiter().pause_for(*d);
            self.client.search.limiter().pause_for(*d);
        }
        e
    }

    async fn with_associations(
        &self,
        spec: &ObjectSpec,
        objs: &[Value],
    ) -> Result<BTreeMap<String, BTreeMap<String, Vec<String>>>, ConnectorError> {
        let mut by_record: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        if spec.associations.is_empty() || objs.is_empty() {
            return Ok(by_record);
        }
        let ids: Vec<String> = objs
            .iter()
            .filter_map(|o| o.get("id").and_then(client::value_id))
            .collect();
        for (_, to) in spec.associations {
            let found = self.client.associations(spec.name, to, &ids).await?;
            for id in &ids {
                by_record
                    .entry(id.clone())
                    .or_default()
                    .insert((*to).to_owned(), found.get(id).cloned().unwrap_or_default());
            }
        }
        Ok(by_record)
    }

    /// The changes of `objs`; each record's past states (`history.rs`) first, when the
    /// read carried them: the engine applies a page's changes in order, each newer than
    /// the last, so every one is kept in the record's history.
    fn changes(
        &self,
        spec: &ObjectSpec,
        objs: &[Value],
        assoc: Option<&BTreeMap<String, BTreeMap<String, Vec<String>>>>,
        out: &mut Fetched,
    ) {
        for o in objs {
            let id = o.get("id").and_then(client::value_id).unwrap_or_default();
            match mapping::to_change(spec, o, assoc.and_then(|a| a.get(&id))) {
                Ok(mut c) => {
                    // A record revsync created names the canonical record it was made for.
                    c.canonical_id = revsync_sdk::canonical_id_in(
                        c.fields.get(&self.params.canonical_id_property),
                    );
                    out.changes.extend(history::past_changes(spec, o, &c));
                    out.changes.push(c)
                }
                Err(e) => out.reject(spec.name, o, e),
            }
        }
    }

    async fn start_backfill(&self, spec: &ObjectSpec) -> Result<Cursor, ConnectorError> {
        // The newest record search knows of now: anything changed during the backfill is
        // newer and the incremental read starting here sees it. No overlap is taken off:
        // a record changed earlier that the search index has not caught up with is read
        // by the list walk itself (the list reads the records, not the index), so going
        // back would only read the whole recent past a second time.
        let newest = self.client.search_modified(spec, 0, 0, 1, true).await?;
        let since_ms = newest
            .first()
            .and_then(|o| mapping::modified_at(spec, o))
            .map_or(0, |t| t.timestamp_millis());
        Ok(Cursor::Backfill {
            after: None,
            seen: BTreeMap::new(),
            since_ms,
            archived_since_ms: Utc::now()
                .timestamp_millis()
                .saturating_sub(self.overlap_ms()),
        })
    }

    async fn fetch_inner(
        &self,
        spec: &ObjectSpec,
        cursor: Option<&str>,
    ) -> Result<Fetched, ConnectorError> {
        let cursor = match cursor {
            None => self.start_backfill(spec).await?,
            Some(s) => Cursor::decode(s)?,
        };
        let mut out = Fetched::default();
        match cursor {
            Cursor::Backfill {
                after,
                since_ms,
                archived_since_ms,
                mut seen,
            } => {
                // Read from the beginning: the past comes with it (issue 20).
                let (objs, next) = self
                    .client
                    .list(spec, after.as_deref(), false, spec.history)
                    .await?;
                for o in &objs {
                    if let (Some(id), Some(ts)) = (
                        o.get("id").and_then(client::value_id),
                        mapping::modified_at(spec, o).map(|t| t.timestamp_millis()),
                    ) {
                        if ts >= since_ms {
                            seen.insert(id, (ts, revsync_sdk::fingerprint(&o.get("properties"))));
                        }
                    }
                }
                self.changes(spec, &objs, None, &mut out);
                let next = match next {
                    Some(after) => Cursor::Backfill {
                        after: Some(after),
                        since_ms,
                        archived_since_ms,
                        seen,
                    },
                    None => Cursor::Search {
                        settled: Pos::at(since_ms),
                        scan: None,
                        archived_since_ms,
                        seen,
                    },
                };
                out.cursor = Some(next.encode()?);
                out.more = true;
            }
            Cursor::Search {
                settled,
                scan,
                archived_since_ms,
                seen,
            } => {
                self.search_page(spec, settled, scan, archived_since_ms, seen, &mut out)
                    .await?;
            }
            Cursor::Archived {
                settled,
                after,
                since_ms,
                started_ms,
                seen,
            } => {
                let (objs, next) = self.client.list(spec, after.as_deref(), true, &[]).await?;
                for o in &objs {
                    let archived_at = o
                        .get("archivedAt")
                        .and_then(Value::as_str)
                        .and_then(mapping::parse_time);
                    if archived_at.is_none_or(|t| t.timestamp_millis() >= since_ms) {
                        match mapping::to_change(spec, o, Some(&BTreeMap::new())) {
                            Ok(mut c) => {
                                c.deleted = true;
                                if let Some(t) = archived_at {
                                    c.source_updated_at = c.source_updated_at.max(t);
                                }
                                out.changes.push(c);
                            }
                            Err(e) => out.reject(spec.name, o, e),
                        }
                    }
                }
                let next = match next {
                    Some(after) => {
                        out.more = true;
                        Cursor::Archived {
                            settled,
                            after: Some(after),
                            since_ms,
                            started_ms,
                            seen,
                        }
                    }
                    None => Cursor::Search {
                        settled,
                        scan: None,
                        archived_since_ms: started_ms.saturating_sub(self.overlap_ms()),
                        seen,
                    },
                };
                out.cursor = Some(next.encode()?);
            }
        }
        Ok(out)
    }

    async fn search_page(
        &self,
        spec: &ObjectSpec,
        mut settled: Pos,
        scan: Option<Pos>,
        archived_since_ms: i64,
        mut seen: BTreeMap<String, (i64, u64)>,
        out: &mut Fetched,
    ) -> Result<(), ConnectorError> {
        let limit = self.client.search_page();
        let pos = scan.unwrap_or_else(|| settled.clone());
        // The offset is the stored cursor's: a crafted one is refused, not wrapped.
        if pos.offset.saturating_add(limit) > SEARCH_CAP {
            return Err(permanent(format!(
                "more than {SEARCH_CAP} {} share the modification time {}: search cannot page past them",
                spec.name, pos.ts
            )));
        }
        // A fresh query from the last position for every page, rather than `after` offsets
        // into one long query: a record modified meanwhile moves to the end of that query and
        // shifts every offset, skipping one unread record. It also never nears the
        // 10,000-result ceiling.
        let objs = self
            .client
            .search_modified(spec, pos.ts, pos.offset, limit, false)
            .await?;
        let full = objs.len() >= limit;
        let horizon = Utc::now()
            .timestamp_millis()
            .saturating_sub(self.overlap_ms());
        let mut fresh = Vec::new();
        let mut next = pos.clone();
        let mut settling = true;
        let mut tie_page = true;
        for o in &objs {
            let (Some(id), Some(ts)) = (
                o.get("id").and_then(client::value_id),
                mapping::modified_at(spec, o).map(|t| t.timestamp_millis()),
            ) else {
                out.reject(
                    spec.name,
                    o,
                    format!("{} search result without id or time", spec.name),
                );
                continue;
            };
            if ts != pos.ts {
                tie_page = false;
            }
            // The settled position follows the read only over records old enough that the
            // index has everything before them.
            if settling && ts <= horizon {
                if !settled.covers(ts, &id) {
                    settled.advance(ts, &id);
                }
            } else {
                settling = false;
            }
            if pos.covers(ts, &id) {
                continue;
            }
            next.advance(ts, &id);
            let mark = (ts, revsync_sdk::fingerprint(&o.get("properties")));
            if seen.get(&id) == Some(&mark) {
                continue;
            }
            seen.insert(id, mark);
            fresh.push(o.clone());
        }
        seen.retain(|id, (ts, _)| !settled.covers(*ts, id));
        let assoc = self.with_associations(spec, &fresh).await?;
        self.changes(spec, &fresh, Some(&assoc), out);
        let cursor = if full {
            if tie_page {
                // A whole page at one timestamp: page on within it.
                next.offset = pos.offset.saturating_add(objs.len());
            } else {
                next.offset = 0;
            }
            out.more = true;
            Cursor::Search {
                settled,
                scan: Some(next),
                archived_since_ms,
                seen,
            }
        } else if self.params.archived_sweep {
            out.more = true;
            Cursor::Archived {
                settled,
                after: None,
                since_ms: archived_since_ms,
                started_ms: Utc::now().timestamp_millis(),
                seen,
            }
        } else {
            Cursor::Search {
                settled,
                scan: None,
                archived_since_ms,
                seen,
            }
        };
        out.cursor = Some(cursor.encode()?);
        Ok(())
    }

    async fn push_inner(
        &self,
        spec: &ObjectSpec,
        items: &[PushItem],
    ) -> Result<Vec<PushResult>, ConnectorError> {
        if items.len() > BATCH_LIMIT {
            return Err(permanent(format!(
                "{} items in one push, hubspot takes at most {BATCH_LIMIT}",
                items.len()
            )));
        }
        let id_prop = self.params.canonical_id_property.as_str();
        let mut out: Vec<Option<PushResult>> = vec![None; items.len()];
        // (index, input, the value results are matched on)
        let mut by_email = Vec::new();
        let mut by_id_prop = Vec::new();
        let mut updates = Vec::new();
        let mut deletes = Vec::new();
        let mut links: Vec<Vec<(&'static str, String)>> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let (mut props, assoc) = mapping::to_properties(spec, &item.fields);
            links.push(assoc);
            let trace = i.to_string();
            match &item.op {
                PushOp::Create { canonical_id } => {
                    let canonical = canonical_id.to_string();
                    props.insert(id_prop.to_owned(), Value::String(canonical.clone()));
                    let email = props
                        .get("email")
                        .and_then(Value::as_str)
                        .map(|e| e.trim().to_lowercase())
                        .filter(|e| !e.is_empty() && spec.name == "contacts");
                    match email {
                        Some(email) => by_email.push((
                            i,
                            json!({"id": email, "idProperty": "email", "properties": props, "objectWriteTraceId": trace}),
                            email,
                        )),
                        None => by_id_prop.push((
                            i,
                            json!({"id": canonical, "idProperty": id_prop, "properties": props, "objectWriteTraceId": trace}),
                            canonical,
                        )),
                    }
                }
                PushOp::Update { external_id } => updates.push((
                    i,
                    json!({"id": external_id, "properties": props, "objectWriteTraceId": trace}),
                    external_id.clone(),
                )),
                PushOp::Delete { external_id } => deletes.push((i, external_id.clone())),
            }
        }

        let mut call_errors = Vec::new();
        let mut calls = 0;
        for (op, group, key_prop) in [
            ("upsert", by_email, Some("email")),
            ("upsert", by_id_prop, Some(id_prop)),
            ("update", updates, None),
        ] {
            if group.is_empty() {
                continue;
            }
            calls += 1;
            // Email upserts are all or nothing: one bad address refuses the call, and would
            // dead-letter the other 99. The halves are sent again until each refused input
            // stands alone: 15 calls for one bad input in 100. A refusal every input shares
            // (a property the portal lacks) stops at the budget of 12 splits (25 calls).
            let mut splits_left = if key_prop == Some("email") { 12 } else { 0 };
            let mut split = false;
            let mut parts = vec![group];
            let mut wrote = false;
            let mut refused = None;
            while let Some(mut part) = parts.pop() {
                let inputs = part.iter().map(|(_, input, _)| input.clone()).collect();
                let sent = self.client.batch_write(spec, op, inputs).await;
                if let Some(existing) = sent.as_ref().err().and_then(conflict_existing_id) {
                    match self
                        .claim_existing(spec, &mut part, &existing, &mut out)
                        .await
                    {
                        Ok(true) => {
                            wrote = true;
                            if !part.is_empty() {
                                parts.push(part);
                            }
                            continue;
                        }
                        // Not one of ours: the 409 is answered as any refusal.
                        Ok(false) => {}
                        Err(e) => {
                            let e = self.note(e);
                            for (i, _, _) in &part {
                                answer(&mut out, *i, Err(e.clone()));
                            }
                            refused = Some(e);
                            continue;
                        }
                    }
                }
                match sent {
                    Ok(answer) => {
                        wrote = true;
                        assign(&part, &answer, key_prop, &mut out);
                    }
                    Err(ConnectorError::Permanent { .. }) if part.len() > 1 && splits_left > 0 => {
                        splits_left -= 1;
                        split = true;
                        let back = part.split_off(part.len() / 2);
                        parts.push(back);
                        parts.push(part);
                    }
                    Err(e) => {
                        let e = self.note(e);
                        // A limit, an outage or the spent budget answers the rest of the
                        // group too, without more calls.
                        if !matches!(e, ConnectorError::Permanent { .. }) || splits_left == 0 {
                            part.extend(parts.drain(..).flatten());
                        }
                        for (i, _, _) in &part {
                            answer(&mut out, *i, Err(e.clone()));
                        }
                        refused = Some(e);
                    }
                }
            }
            // A split group's items each carry their own answer: none speaks for the batch.
            if let Some(e) = refused.filter(|_| !wrote && !split) {
                call_errors.push(e);
            }
        }
        if !deletes.is_empty() {
            calls += 1;
            let ids: Vec<String> = deletes.iter().map(|(_, id)| id.clone()).collect();
            let r = self
                .client
                .archive(spec, &ids)
                .await
                .map_err(|e| self.note(e));
            if let Err(e) = &r {
                call_errors.push(e.clone());
            }
            for (i, id) in deletes {
                answer(&mut out, i, r.clone().map(|_| id));
            }
        }
        let one_kind = call_errors
            .windows(2)
            .all(|w| matches!(w, [a, b] if std::mem::discriminant(a) == std::mem::discriminant(b)));
        if calls > 0 && call_errors.len() == calls && one_kind {
            // Nothing was written, and every call failed the same way: say it once for
            // the batch. Mixed failures (a 400 for one group, a 429 for another) stay
            // per item, so the rate-limited items are retried, not dead-lettered.
            return Err(call_errors.swap_remove(0));
        }

        // Associations of written records (upsert, update and associate are all repeatable).
        let mut pairs: BTreeMap<&'static str, Vec<(usize, String, String)>> = BTreeMap::new();
        for (i, assoc) in links.iter().enumerate() {
            if let Some(Some(Ok(id))) = out.get(i) {
                for (to, to_id) in assoc {
                    pairs
                        .entry(to)
                        .or_default()
                        .push((i, id.clone(), to_id.clone()));
                }
            }
        }
        for (to, list) in pairs {
            let ps: Vec<(String, String)> = list
                .iter()
                .map(|(_, f, t)| (f.clone(), t.clone()))
                .collect();
            match self
                .client
                .associate(spec.name, to, &ps)
                .await
                .map_err(|e| self.note(e))
            {
                Ok(()) => {}
                // The records are written and keep their ids: answering the item with the
                // association's refusal would dead-letter a record HubSpot holds and lose
                // its link. Sending it again would meet the same refusal, so it is reported
                // on its own.
                Err(e @ (ConnectorError::Permanent { .. } | ConnectorError::NotFound)) => {
                    self.refused_associations.note(spec.name, to, &ps, &e);
                }
                // A limit, an outage, bad credentials: the item is pushed again, its upsert
                // or update lands on the same record, and the association is retried with it.
                Err(e) => {
                    for (i, _, _) in list {
                        answer(&mut out, i, Err(e.clone()));
                    }
                }
            }
        }

        Ok(out
            .into_iter()
            .map(|r| {
                // Never report an item written unless HubSpot said so.
                r.unwrap_or_else(|| {
                    Err(ConnectorError::Transient(
                        "hubspot's answer did not mention this item".into(),
                    ))
                })
            })
            .collect())
    }
}

impl HubSpotConnector {
    /// After a 409 naming `existing`: the input of `part` that contact belongs to, written to
    /// it by id and answered with its id (true), or none found (false).
    ///
    /// A create whose first attempt made its contact without an email (upserted by the
    /// canonical id), and whose answer was lost, is retried as an email upsert once the
    /// record has an email. HubSpot would make a new contact holding the same unique
    /// canonical id, and refuses it, naming the first one. That contact is read: if it holds
    /// the input's canonical id (revsync made it for this record), or no canonical id and the
    /// input's email (the same person), the input is written to it. Anything else is left
    /// to the refusal.
    async fn claim_existing(
        &self,
        spec: &ObjectSpec,
        part: &mut Vec<(usize, Value, String)>,
        existing: &str,
        out: &mut [Option<PushResult>],
    ) -> Result<bool, ConnectorError> {
        let id_prop = self.params.canonical_id_property.as_str();
        let found = self.client.batch_read(spec, &[existing.to_owned()]).await?;
        let Some(contact) = found.first() else {
            return Ok(false);
        };
        let held = |p: &str| {
            contact
                .pointer(&format!("/properties/{p}"))
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_lowercase)
        };
        let (canonical, email) = (held(id_prop), held("email"));
        let belongs = |input: &Value| {
            let prop = |p: &str| {
                input
                    .pointer(&format!("/properties/{p}"))
                    .and_then(Value::as_str)
                    .map(str::to_lowercase)
            };
            // A contact made for another record is never taken over by its email.
            match &canonical {
                Some(_) => prop(id_prop) == canonical,
                None => email.is_some() && prop("email") == email,
            }
        };
        let Some(at) = part.iter().position(|(_, input, _)| belongs(input)) else {
            return Ok(false);
        };
        let (i, input, _) = part.remove(at);
        tracing::info!(
            object = spec.name,
            existing,
            "hubspot named the contact this create made; writing to it"
        );
        let update = json!({
            "id": existing,
            "properties": input.get("properties").cloned().unwrap_or_default(),
            "objectWriteTraceId": input.get("objectWriteTraceId").cloned().unwrap_or_default(),
        });
        match self
            .client
            .batch_write(spec, "update", vec![update.clone()])
            .await
        {
            Ok(answered) => assign(&[(i, update, existing.to_owned())], &answered, None, out),
            Err(e) => answer(out, i, Err(self.note(e))),
        }
        Ok(true)
    }
}

/// The contact a 409 CONFLICT names ("Contact already exists. Existing ID: 123").
fn conflict_existing_id(e: &ConnectorError) -> Option<String> {
    let ConnectorError::Permanent {
        body: Some(body), ..
    } = e
    else {
        return None;
    };
    let body: Value = serde_json::from_str(body).ok()?;
    if body.get("category")?.as_str()? != "CONFLICT" {
        return None;
    }
    let (_, tail) = body.get("message")?.as_str()?.split_once("Existing ID:")?;
    let id: String = tail
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (!id.is_empty()).then_some(id)
}

/// Matches a batch answer to its inputs: by `objectWriteTraceId`, else by the id property.
fn assign(
    group: &[(usize, Value, String)],
    answer: &BatchAnswer,
    key_prop: Option<&str>,
    out: &mut [Option<PushResult>],
) {
    let by_trace = |v: &Value| -> Option<usize> {
        let t = v.as_str()?;
        group
            .iter()
            .find(|(_, input, _)| input["objectWriteTraceId"].as_str() == Some(t))
            .map(|(i, _, _)| *i)
    };
    let by_key = |k: &str| -> Option<usize> {
        group
            .iter()
            .find(|(_, _, key)| key.eq_ignore_ascii_case(k))
            .map(|(i, _, _)| *i)
    };
    for r in &answer.results {
        let Some(id) = r.get("id").and_then(client::value_id) else {
            continue;
        };
        let key = match key_prop {
            Some(p) => r
                .pointer(&format!("/properties/{p}"))
                .and_then(Value::as_str),
            None => Some(id.as_str()),
        };
        let index = r
            .get("objectWriteTraceId")
            .and_then(by_trace)
            .or_else(|| key.and_then(by_key));
        if let Some(i) = index {
            revsync_sdk::answer(out, i, Ok(id));
        }
    }
    for e in &answer.errors {
        let class = item_error(e);
        let mut hit = false;
        if let Some(traces) = e
            .pointer("/context/objectWriteTraceId")
            .and_then(Value::as_array)
        {
            for t in traces {
                if let Some(i) = by_trace(t) {
                    revsync_sdk::answer(out, i, Err(class.clone()));
                    hit = true;
                }
            }
        }
        if !hit {
            for k in ["ids", "id", "email"] {
                for v in e
                    .pointer(&format!("/context/{k}"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(i) = v.as_str().and_then(by_key) {
                        revsync_sdk::answer(out, i, Err(class.clone()));
                    }
                }
            }
        }
    }
}

/// One failed input of a 207, classified by its category.
fn item_error(e: &Value) -> ConnectorError {
    let category = e.get("category").and_then(Value::as_str).unwrap_or("");
    let message = e
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("no message");
    match category {
        "OBJECT_NOT_FOUND" => ConnectorError::NotFound,
        "RATE_LIMITS" => ConnectorError::RateLimited {
            retry_after: None,
            scope: LimitScope::Burst,
        },
        _ => ConnectorError::Permanent {
            detail: format!("{category}: {message}"),
            status: e
                .get("status")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok()),
            body: Some(e.to_string()),
        },
    }
}

/// The record page in HubSpot's app: needs `portal_id`, and HubSpot's own API.
fn app_url(p: &HubSpotParams, object: &str, id: &str) -> Option<String> {
    let portal = p.portal_id?;
    if p.base_url.trim_end_matches('/') != "https://api.hubapi.com" {
        return None;
    }
    let type_id = match object {
        "contacts" => "0-1",
        "companies" => "0-2",
        "deals" => "0-3",
        "tickets" => "0-5",
        _ => return None,
    };
    Some(format!(
        "https://app.hubspot.com/contacts/{portal}/record/{type_id}/{id}"
    ))
}

#[async_trait]
impl Connector for HubSpotConnector {
    /// The record page in HubSpot's app (needs `portal_id`).
    fn record_url(&self, object: &str, external_id: &str) -> Option<String> {
        app_url(&self.params, object, external_id)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            objects: mapping::OBJECTS
                .iter()
                .map(|o| ObjectCapability {
                    name: o.name.to_owned(),
                    kind: o.kind,
                    read: true,
                    write: true,
                })
                .collect(),
            batch_size: BATCH_LIMIT,
            webhooks: self.params.client_secret.is_some(),
        }
    }

    async fn fetch(&self, object: &str, cursor: Option<&str>) -> Result<Fetched, ConnectorError> {
        let spec = object_spec(object)?;
        self.fetch_inner(spec, cursor)
            .await
            .map_err(|e| self.note(e))
    }

    /// Batch reads carry `updatedAt`, the copy's own time.
    fn reads_by_id_carry_modified_times(&self) -> bool {
        true
    }

    async fn fetch_by_ids(
        &self,
        object: &str,
        ids: &[String],
    ) -> Result<Vec<Change>, ConnectorError> {
        let spec = object_spec(object)?;
        let mut changes = Vec::new();
        for chunk in ids.chunks(BATCH_LIMIT) {
            let objs = self
                .client
                .batch_read(spec, chunk)
                .await
                .map_err(|e| self.note(e))?;
            let assoc = self.with_associations(spec, &objs).await?;
            let mut page = Fetched::default();
            self.changes(spec, &objs, Some(&assoc), &mut page);
            changes.extend(page.changes);
        }
        Ok(changes)
    }

    async fn push(
        &self,
        object: &str,
        items: &[PushItem],
    ) -> Result<Vec<PushResult>, ConnectorError> {
        let spec = object_spec(object)?;
        self.push_inner(spec, items).await
    }

    fn verify_webhook(&self, req: &WebhookRequest<'_>) -> Result<Vec<WebhookEvent>, WebhookError> {
        let secret = self.params.client_secret.as_ref().ok_or_else(|| {
            WebhookError::BadSignature("no client_secret configured for hubspot webhooks".into())
        })?;
        webhook::verify_v3(secret.expose(), req)?;
        webhook::parse_events(req.body)
    }

    fn rate_limit(&self) -> Option<LimiterStats> {
        let mut s = self.client.api.limiter().stats();
        let search = self.client.search.limiter().stats();
        s.throttled_429 = s.throttled_429.saturating_add(search.throttled_429);
        s.current_wait_ms = s.current_wait_ms.max(search.current_wait_ms);
        s.requests = s.requests.saturating_add(search.requests);
        Some(s)
    }

    fn notices(&self) -> Vec<String> {
        self.refused_associations.notice().into_iter().collect()
    }

    /// The properties API: one call per object, custom properties included.
    async fn describe(&self, object: &str) -> Result<revsync_sdk::ObjectSchema, ConnectorError> {
        let spec = object_spec(object)?;
        let answer = self
            .client
            .property_definitions(spec)
            .await
            .map_err(|e| self.note(e))?;
        describe::schema(spec.name, &answer)
    }

    fn min_poll_interval(&self) -> Duration {
        // Each poll costs at least one search call per object against 5 per second.
        Duration::from_secs(5)
    }
}

fn object_spec(object: &str) -> Result<&'static ObjectSpec, ConnectorError> {
    mapping::spec(object).ok_or_else(|| {
        permanent(format!(
            "hubspot has no object `{object}` (contacts, companies, deals)"
        ))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_copy_links_to_its_hubspot_record_page_once_the_portal_is_known() {
        let mut p: super::HubSpotParams =
            serde_json::from_value(serde_json::json!({ "token": "pat" })).unwrap();
        assert_eq!(super::app_url(&p, "contacts", "101"), None, "no portal_id");
        p.portal_id = Some(4_242);
        assert_eq!(
            super::app_url(&p, "deals", "7").as_deref(),
            Some("https://app.hubspot.com/contacts/4242/record/0-3/7")
        );
        p.base_url = "http://127.0.0.1:9999".into();
        assert_eq!(super::app_url(&p, "deals", "7"), None);
    }

    use super::*;

    #[test]
    fn positions_skip_ties_already_read() {
        let mut p = Pos::at(10);
        p.advance(10, "5");
        assert!(p.covers(9, "1"));
        assert!(p.covers(10, "5"));
        assert!(!p.covers(10, "3"), "a tie not yet read is not covered");
        p.advance(12, "1");
        assert!(p.covers(10, "3"));
        assert!(!p.covers(12, "2"));
    }

    #[test]
    fn cursors_round_trip() {
        let c = Cursor::Search {
            settled: Pos::at(5),
            scan: None,
            archived_since_ms: 1,
            seen: BTreeMap::from([("7".to_owned(), (6, 42))]),
        };
        assert_eq!(Cursor::decode(&c.encode().unwrap()).unwrap(), c);
        assert!(Cursor::decode("garbage").is_err());
    }
}
