//! The scored identity step of a write: block candidates from the index, the best score,
//! the guards, and the block entries a record is indexed under (DESIGN.md, Identity II).

use std::collections::{BTreeMap, HashSet};

use revsync_sdk::{Kind, Record, Value};
use uuid::Uuid;

use super::super::codec::{self, index, ReviewPair};
use super::super::identity::model::value_text;
use super::super::identity::{compare, Model, Score, Verdict};
use super::super::normalize;
use super::{corrupt, EngineError, Txn};
use crate::store::Table;

/// What the scored step decided for a record no exact key placed.
pub(in crate::engine) enum Scored {
    /// Join this record.
    Merge(Uuid, Score),
    /// Create a record and put the pair in the review queue, for this reason.
    Review(Uuid, Score, String),
    /// A guard forbids the merge the score asked for.
    Vetoed(Uuid, Score, String),
    Nothing,
}

/// One line for the audit trail and `records get`: the probability and what decided it.
pub(in crate::engine) fn describe(s: &Score) -> String {
    let levels: Vec<String> = s
        .levels
        .iter()
        .map(|l| format!("{} {} {:+.1}", l.field, l.level, l.weight))
        .collect();
    format!("scored match p={:.5}: {}", s.probability, levels.join(", "))
}

impl Txn<'_> {
    /// Block entries of a record under its kind's model: none for kinds without one.
    pub(super) fn block_entries(&self, rec: &Record) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.policies
            .identity(rec.kind)
            .map(|model| super::super::blocks::entries(model, rec))
            .unwrap_or_default()
    }

    /// The best-scoring candidate for values no exact key placed, and what to do with it.
    pub(super) fn score(
        &self,
        kind: Kind,
        values: &BTreeMap<String, Value>,
    ) -> Result<Scored, EngineError> {
        let Some(model) = self.policies.identity(kind) else {
            return Ok(Scored::Nothing);
        };
        let get = |f: &str| values.get(f);
        let keys = super::super::blocks::keys_to_read(model, &get);
        if keys.is_empty() {
            return Ok(Scored::Nothing);
        }
        let me = model.profile(&get);
        let mut seen: HashSet<Uuid> = HashSet::new();
        let mut scored: Vec<(Uuid, Score)> = Vec::new();
        for key in keys {
            let prefix = index::block_of(kind.as_str(), &key);
            for (id, value) in self.entries_under_limited(&prefix, model.max_block)? {
                if !seen.insert(id) {
                    continue;
                }
                let stored: Vec<(String, String)> =
                    codec::decode(&value).map_err(corrupt("index"))?;
                let s = model.score(&me, &model.profile_of_stored(&stored));
                if model.verdict(&s) != Verdict::Separate {
                    scored.push((id, s));
                }
            }
        }
        // Best first; a candidate a guard forbids leaves the next one its chance (a
        // namesake at another company must not hide the same person's own record).
        scored.sort_by(|a, b| b.1.weight.total_cmp(&a.1.weight));
        let mut vetoed = None;
        for (id, score) in scored {
            let id = self.alive(id)?;
            match self.guard(model, id, values)? {
                Some(Guard::Never(why)) => {
                    vetoed.get_or_insert((id, score, why));
                }
                Some(Guard::Review(why)) => return Ok(Scored::Review(id, score, why)),
                None if model.verdict(&score) == Verdict::Merge => {
                    return Ok(Scored::Merge(id, score))
                }
                None => return Ok(Scored::Review(id, score, "between the thresholds".into())),
            }
        }
        Ok(vetoed.map_or(Scored::Nothing, |(id, score, why)| {
            Scored::Vetoed(id, score, why)
        }))
    }

    /// What forbids `candidate` and the incoming values being one entity, whatever the
    /// score: a strong identifier that differs, two addresses at one company, two
    /// companies; or what asks for a person first: a cluster grown too big.
    fn guard(
        &self,
        model: &Model,
        candidate: Uuid,
        values: &BTreeMap<String, Value>,
    ) -> Result<Option<Guard>, EngineError> {
        let Some(verdict) = self.with_record(candidate, |rec| {
            let theirs = |f: &str| rec.value(f).and_then(value_text);
            let mine = |f: &str| values.get(f).and_then(value_text);
            for f in &model.strong {
                if let (Some(a), Some(b)) = (mine(f), theirs(f)) {
                    if compare::fold(&a) != compare::fold(&b) {
                        return Some(Guard::Never(format!("different {f}")));
                    }
                }
            }
            if rec.kind == Kind::Person {
                if let (Some(a), Some(b)) = (mine("email"), theirs("email")) {
                    let (a, b) = (a.to_lowercase(), b.to_lowercase());
                    // `domain_from_email` gives no free-mail domain: these are work addresses.
                    match (
                        normalize::domain_from_email(&a),
                        normalize::domain_from_email(&b),
                    ) {
                        (Some(da), Some(db)) if a != b && da == db => {
                            return Some(Guard::Never(format!("two addresses at {da}")));
                        }
                        (Some(da), Some(db)) if da != db => {
                            return Some(Guard::Never(format!("work addresses at {da} and {db}")));
                        }
                        _ => {}
                    }
                }
                if let (Some(Value::Ref(a)), Some(Value::Ref(b))) =
                    (values.get("organization"), rec.value("organization"))
                {
                    if a != b {
                        return Some(Guard::Never("different companies".into()));
                    }
                }
            }
            if rec.links.len() >= model.max_cluster {
                return Some(Guard::Review(format!(
                    "the record already holds {} copies (max_cluster {})",
                    rec.links.len(),
                    model.max_cluster
                )));
            }
            None
        })?
        else {
            return Ok(None);
        };
        Ok(verdict)
    }

    /// Queue a pair for review unless an operator already said they are not one.
    pub(super) fn propose(
        &mut self,
        kind: Kind,
        a: Uuid,
        b: Uuid,
        score: &Score,
        reason: String,
    ) -> Result<bool, EngineError> {
        if self.get(Table::Index, &index::never(a, b))?.is_some() {
            return Ok(false);
        }
        let pair = ReviewPair {
            kind,
            probability: score.probability,
            weight: score.weight,
            levels: score
                .levels
                .iter()
                .map(|l| (l.field.clone(), l.level.clone(), l.weight))
                .collect(),
            reason,
            at: self.now,
        };
        self.put(Table::Index, index::review(a, b), codec::encode(&pair));
        Ok(true)
    }

    /// An operator accepted a review pair: the two records merge through the normal
    /// path (the older id survives) and every copy's projection is queued. `None`: no
    /// such pair waits.
    pub(in crate::engine) fn accept_review(
        &mut self,
        a: Uuid,
        b: Uuid,
        by: &str,
    ) -> Result<Option<Uuid>, EngineError> {
        let key = index::review(a, b);
        let Some(bytes) = self.get(Table::Index, &key)? else {
            return Ok(None);
        };
        let pair: ReviewPair = codec::decode(&bytes).map_err(corrupt("index"))?;
        let (a, b) = (self.alive(a)?, self.alive(b)?);
        if let (Some(ra), Some(rb)) = (self.load(a)?, self.load(b)?) {
            if let Some(why) = self.billing_conflict(&ra, &rb)? {
                return Err(EngineError::Refused(format!("not merged: {why}")));
            }
        }
        self.del(Table::Index, key);
        if a == b {
            return Ok(Some(a));
        }
        let evidence = format!(
            "review accepted by {by}: scored match p={:.5} ({})",
            pair.probability, pair.reason
        );
        let mut report = super::super::ApplyReport::default();
        let survivor = self.merge_records(&[a, b].into_iter().collect(), &evidence, &mut report)?;
        if let Some(s) = survivor {
            self.enqueue_projections(s)?;
        }
        Ok(survivor)
    }

    /// An operator rejected a review pair: it goes, and the two are never proposed or
    /// merged by score again.
    pub(in crate::engine) fn reject_review(
        &mut self,
        a: Uuid,
        b: Uuid,
    ) -> Result<bool, EngineError> {
        let key = index::review(a, b);
        if self.get(Table::Index, &key)?.is_none() {
            return Ok(false);
        }
        self.del(Table::Index, key);
        self.put(
            Table::Index,
            index::never(a, b),
            self.now.to_be_bytes().to_vec(),
        );
        Ok(true)
    }

    /// At most `limit` `Index` entries under `prefix`, as this batch has changed them.
    fn entries_under_limited(
        &self,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Uuid, Vec<u8>)>, EngineError> {
        let mut found: BTreeMap<Vec<u8>, Vec<u8>> = self
            .store
            .scan(Table::Index, prefix, None, limit)?
            .into_iter()
            .collect();
        self.overlay_index(prefix, &mut found);
        found
            .into_iter()
            .take(limit)
            .filter_map(|(k, v)| {
                let id = k
                    .get(prefix.len()..)
                    .and_then(|b| Uuid::from_slice(b).ok())?;
                Some(Ok((id, v)))
            })
            .collect()
    }
}

/// Statuses of a subscription that bills, or is about to.
const BILLING: &[&str] = &["active", "trialing", "past_due", "unpaid"];

impl Txn<'_> {
    /// Two records that are each a billing system's customer with a subscription still
    /// billing are two accounts, whatever else they share: one record would hold two
    /// invoice streams, and the KPIs would count one customer where the billing system
    /// has two. `Some(why)` when `a` and `b` are such a pair.
    pub(super) fn billing_conflict(
        &self,
        a: &Record,
        b: &Record,
    ) -> Result<Option<String>, EngineError> {
        match (self.billed_as(a)?, self.billed_as(b)?) {
            (Some(x), Some(y)) if x != y => Ok(Some(format!(
                "two billing customers with live subscriptions ({x} and {y})"
            ))),
            _ => Ok(None),
        }
    }

    /// The billing copy (`connector:object:id`) of a record that a subscription still
    /// billing names as its customer; a billing system is a connector that maps a
    /// subscription object.
    fn billed_as(&self, r: &Record) -> Result<Option<String>, EngineError> {
        let billing = r.links.iter().find(|l| {
            self.mappings
                .objects
                .iter()
                .any(|m| m.connector == l.connector && m.kind == Kind::Subscription)
        });
        let Some(l) = billing else {
            return Ok(None);
        };
        for s in self.referrers(r.id)? {
            let live = self.with_record(s, |sub| {
                sub.kind == Kind::Subscription
                    && sub.value("customer") == Some(&Value::Ref(r.id))
                    && sub
                        .value("status")
                        .and_then(Value::as_text)
                        .is_some_and(|st| BILLING.contains(&st))
            })?;
            if live == Some(true) {
                return Ok(Some(format!(
                    "{}:{}:{}",
                    l.connector, l.object, l.external_id
                )));
            }
        }
        Ok(None)
    }
}

enum Guard {
    Never(String),
    Review(String),
}
