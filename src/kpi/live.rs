//! Incremental KPI state: every revenue record's facts held in memory and replaced as the
//! engine writes that record, so a report or a gauge reads no store (ADR 0043).
//!
//! A record's facts depend on that record and its history only ([`read::fact`]), so the
//! engine's list of the records a write touched ([`RevenueObserver`]) is all it takes to
//! keep the state equal to a full recompute; [`Live::verify`] checks that it is.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::RwLock;

use uuid::Uuid;

use super::read::{self, Fact, Read};
use crate::engine::{codec, RevenueObserver};
use crate::store::{Store, StoreError, Table};

/// Ids named by [`Verify`] at most, so a wholly wrong state gives a short answer.
const DIFFERENCES_SHOWN: usize = 20;

/// The facts of every subscription, deal and ticket, by record id (the store's order).
#[derive(Debug, Default)]
pub struct Live {
    state: RwLock<State>,
}

#[derive(Debug, Default)]
struct State {
    facts: BTreeMap<Uuid, Fact>,
    /// A refresh could not read the store: the next read recomputes everything rather
    /// than serve facts that may be behind.
    stale: bool,
}

/// A full recompute compared with the incremental state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verify {
    /// Records with facts, recomputed.
    pub records: usize,
    /// Records whose facts differ (or that only one side has).
    pub differing: usize,
    /// Some of them, by id.
    pub examples: Vec<String>,
    /// The state was replaced by the recomputed one.
    pub repaired: bool,
}

impl Live {
    /// The state of the store as it is: one full read.
    pub fn load(store: &dyn Store) -> Result<Self, StoreError> {
        Ok(Self {
            state: RwLock::new(State {
                facts: read::facts(store)?,
                stale: false,
            }),
        })
    }

    /// Re-derives the facts of `ids` from the store: the records a write just changed.
    pub fn refresh(&self, store: &dyn Store, ids: &BTreeSet<Uuid>) {
        let mut fresh = Vec::with_capacity(ids.len());
        for id in ids {
            match record_fact(store, *id) {
                Ok(f) => fresh.push((*id, f)),
                Err(e) => {
                    tracing::warn!(error = %e, record = %id, "kpi state not refreshed; the next report recomputes it");
                    self.write().stale = true;
                    return;
                }
            }
        }
        let mut state = self.write();
        for (id, f) in fresh {
            match f {
                Some(f) => state.facts.insert(id, f),
                None => state.facts.remove(&id),
            };
        }
    }

    /// The KPIs' input as the state holds it.
    pub fn read(&self, store: &dyn Store) -> Result<Read, StoreError> {
        if self.state().stale {
            let facts = read::facts(store)?;
            let mut state = self.write();
            state.facts = facts;
            state.stale = false;
        }
        Ok(read::assemble(self.state().facts.values().cloned()))
    }

    /// Records the state holds facts for.
    pub fn len(&self) -> usize {
        self.state().facts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Recomputes everything and compares it with the state, record by record; a
    /// difference is repaired (the recomputed facts win) and reported. The caller keeps
    /// writes out meanwhile (`Engine::quiesced`), or a write between the two reads would
    /// show as a difference.
    pub fn verify(&self, store: &dyn Store) -> Result<Verify, StoreError> {
        let full = read::facts(store)?;
        let mut state = self.write();
        let ids: BTreeSet<&Uuid> = full.keys().chain(state.facts.keys()).collect();
        let differing: Vec<String> = ids
            .into_iter()
            .filter(|id| full.get(id) != state.facts.get(id))
            .map(Uuid::to_string)
            .collect();
        let out = Verify {
            records: full.len(),
            differing: differing.len(),
            examples: differing.into_iter().take(DIFFERENCES_SHOWN).collect(),
            repaired: false,
        };
        if out.differing == 0 && !state.stale {
            return Ok(out);
        }
        if out.differing > 0 {
            tracing::error!(
                differing = out.differing,
                examples = ?out.examples,
                "kpi state differed from a full recompute; replaced by it"
            );
        }
        state.facts = full;
        state.stale = false;
        Ok(Verify {
            repaired: out.differing > 0,
            ..out
        })
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // Facts are replaced whole, never half-written: a poisoned lock still holds good ones.
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl RevenueObserver for Live {
    fn changed(&self, store: &dyn Store, ids: &BTreeSet<Uuid>) {
        self.refresh(store, ids);
    }
}

/// One record's facts as the store has it now (none when it is gone or no KPI reads it).
fn record_fact(store: &dyn Store, id: Uuid) -> Result<Option<Fact>, StoreError> {
    let Some(bytes) = store.get(Table::Records, &codec::record_key(id))? else {
        return Ok(None);
    };
    match codec::decode_record(&bytes) {
        Ok(rec) => read::fact(store, &rec),
        // The full read skips an undecodable record too.
        Err(_) => Ok(None),
    }
}
