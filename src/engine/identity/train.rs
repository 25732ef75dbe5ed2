//! Estimating a model from the records themselves: u from random pairs, m and the prior by
//! expectation-maximisation over the pairs blocking brings together (Fellegi-Sunter as
//! Splink estimates it), and term frequencies of names.

use std::collections::HashMap;

use serde::Serialize;

use super::model::{Model, Profile};

/// Random pairs sampled for u (at most; fewer when the records make fewer pairs).
pub const U_PAIRS: usize = 300_000;
/// The most EM iterations; it stops earlier once no m moves by more than `TOLERANCE`.
pub const MAX_ITERATIONS: usize = 50;
const TOLERANCE: f64 = 1e-5;
/// Values kept per comparison in the term-frequency table: the most common ones.
const TF_VALUES: usize = 2000;

/// One record as training sees it: its prepared values, comparison values for term
/// frequencies and its blocking keys.
pub struct Sample {
    pub profile: Profile,
    pub keys: Vec<String>,
}

/// One comparison level's estimate.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LevelReport {
    pub level: String,
    pub m: f64,
    pub u: f64,
    /// log2(m / u): what landing on this level adds to a pair's weight.
    pub weight: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ComparisonReport {
    pub field: String,
    pub levels: Vec<LevelReport>,
}

/// What training estimated, readable by an operator before the model is used.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TrainReport {
    pub kind: String,
    pub version: u32,
    pub records: usize,
    pub random_pairs: usize,
    pub blocked_pairs: usize,
    pub iterations: usize,
    /// Share of blocked pairs EM takes for matches.
    pub blocked_match_share: f64,
    pub prior: f64,
    pub comparisons: Vec<ComparisonReport>,
    pub upper: f64,
    pub lower: f64,
    /// Blocked pairs at or above `upper`, and the mean match probability among them: the
    /// precision the model expects of its automatic merges.
    pub pairs_above_upper: usize,
    pub expected_precision: f64,
    pub pairs_in_review: usize,
}

/// A new version of `base`, estimated from `samples`. `seed` fixes the random pairs.
pub fn train(base: &Model, samples: &[Sample], seed: u64) -> (Model, TrainReport) {
    let mut model = base.clone();
    model.version = base.version.saturating_add(1);
    let n = samples.len();
    let mut rng = fastrand::Rng::with_seed(seed);

    // u: level frequencies among random pairs, smoothed so no level is impossible.
    let total_pairs = n.saturating_mul(n.saturating_sub(1)) / 2;
    let random_pairs = U_PAIRS.min(total_pairs);
    let mut u_counts: Vec<Vec<f64>> = model
        .comparisons
        .iter()
        .map(|c| vec![0.0; c.comparator.levels().len()])
        .collect();
    for _ in 0..random_pairs {
        let (i, j) = (rng.usize(..n), rng.usize(..n));
        let (Some(a), Some(b)) = (samples.get(i), samples.get(j)) else {
            continue;
        };
        if i == j {
            continue;
        }
        for (counts, level) in u_counts
            .iter_mut()
            .zip(model.levels(&a.profile, &b.profile))
        {
            if let Some(slot) = level.and_then(|l| counts.get_mut(l)) {
                *slot += 1.0;
            }
        }
    }
    for (c, counts) in model.comparisons.iter_mut().zip(&u_counts) {
        let total: f64 = counts.iter().sum();
        if total > 0.0 {
            let k = counts.len() as f64;
            c.u = counts
                .iter()
                .map(|x| (x + 0.5) / (total + 0.5 * k))
                .collect();
        }
    }

    // Term frequencies of exact values, from the prepared profiles.
    for (ci, c) in model.comparisons.iter_mut().enumerate() {
        if !matches!(
            c.comparator,
            super::model::Comparator::Name { .. } | super::model::Comparator::Company
        ) {
            continue;
        }
        let mut freq: HashMap<&str, usize> = HashMap::new();
        let mut present = 0usize;
        for s in samples {
            if let Some(v) = s.profile.value(ci) {
                *freq.entry(v).or_default() += 1;
                present += 1;
            }
        }
        let mut common: Vec<(&str, usize)> = freq.into_iter().filter(|(_, k)| *k > 1).collect();
        common.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        common.truncate(TF_VALUES);
        let u0 = c.u.first().copied().unwrap_or(0.0);
        c.tf = common
            .into_iter()
            .map(|(v, k)| (v.to_owned(), k as f64 / present.max(1) as f64))
            .filter(|(_, f)| *f > u0)
            .collect();
    }

    // Blocked pairs, per blocking rule. Within one rule's pairs the fields that rule
    // blocks on agree far more often than chance says, match or not: their comparisons
    // would pull EM towards calling every blocked pair a match. So, as Splink does, each
    // rule's pairs estimate only the comparisons of the other fields, and each m is the
    // pair-weighted mean over the rules that estimated it.
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    let mut seen: std::collections::HashSet<(usize, usize)> = std::collections::HashSet::new();
    let mut sums: Vec<Vec<f64>> = model
        .comparisons
        .iter()
        .map(|c| vec![0.0; c.m.len()])
        .collect();
    let mut iterations = 0;
    let rule_names: std::collections::BTreeSet<&str> =
        base.blocking.iter().map(|r| r.name.as_str()).collect();
    for name in rule_names {
        let blocked_fields: std::collections::BTreeSet<&str> = base
            .blocking
            .iter()
            .filter(|r| r.name == name)
            .flat_map(|r| r.parts.iter().flat_map(super::model::KeyPart::fields))
            .collect();
        let active: Vec<bool> = model
            .comparisons
            .iter()
            .map(|c| {
                !blocked_fields.contains(c.field.as_str())
                    && !c.swap_field().is_some_and(|f| blocked_fields.contains(f))
            })
            .collect();
        let prefix = format!("{name}|");
        let mut blocks: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, s) in samples.iter().enumerate() {
            for k in s.keys.iter().filter(|k| k.starts_with(&prefix)) {
                let members = blocks.entry(k.as_str()).or_default();
                if members.len() < model.max_block {
                    members.push(i);
                }
            }
        }
        let mut rule_seen: std::collections::HashSet<(usize, usize)> =
            std::collections::HashSet::new();
        let mut patterns: HashMap<Vec<Option<usize>>, f64> = HashMap::new();
        for members in blocks.values() {
            for (x, &i) in members.iter().enumerate() {
                for &j in members.iter().skip(x + 1) {
                    let key = (i.min(j), i.max(j));
                    if !rule_seen.insert(key) {
                        continue;
                    }
                    let (Some(a), Some(b)) = (samples.get(key.0), samples.get(key.1)) else {
                        continue;
                    };
                    *patterns
                        .entry(model.levels(&a.profile, &b.profile))
                        .or_default() += 1.0;
                    if seen.insert(key) {
                        pairs.push(key);
                    }
                }
            }
        }
        let (m, _, its) = em(&model, &patterns, &active);
        iterations += its;
        for ((sum, m), on) in sums.iter_mut().zip(&m).zip(&active) {
            if *on {
                let n_pairs: f64 = patterns.values().sum();
                for (s, x) in sum.iter_mut().zip(m) {
                    *s += x * n_pairs;
                }
            }
        }
    }
    for (c, sum) in model.comparisons.iter_mut().zip(&sums) {
        let total: f64 = sum.iter().sum();
        if total > 0.0 {
            c.m = sum.iter().map(|x| x / total).collect();
        }
    }
    let blocked_pairs = pairs.len();
    // The share of matches among all blocked pairs, under the estimated m and u.
    let mut all_patterns: HashMap<Vec<Option<usize>>, f64> = HashMap::new();
    for (i, j) in &pairs {
        if let (Some(a), Some(b)) = (samples.get(*i), samples.get(*j)) {
            *all_patterns
                .entry(model.levels(&a.profile, &b.profile))
                .or_default() += 1.0;
        }
    }
    let share = share_of_matches(&model, &all_patterns);
    // Blocking keeps (nearly) every true pair, so matches among all pairs are the blocked
    // matches spread over every pair.
    if total_pairs > 0 {
        model.prior = (share * blocked_pairs as f64 / total_pairs as f64).clamp(1e-12, 0.5);
    }

    let mut above = 0usize;
    let mut above_p = 0.0;
    let mut review = 0usize;
    for (i, j) in &pairs {
        let (Some(a), Some(b)) = (samples.get(*i), samples.get(*j)) else {
            continue;
        };
        let p = model.score(&a.profile, &b.profile).probability;
        if p >= model.upper {
            above += 1;
            above_p += p;
        } else if p >= model.lower {
            review += 1;
        }
    }
    let report = TrainReport {
        kind: model.kind.to_string(),
        version: model.version,
        records: n,
        random_pairs,
        blocked_pairs,
        iterations,
        blocked_match_share: share,
        prior: model.prior,
        comparisons: model
            .comparisons
            .iter()
            .map(|c| ComparisonReport {
                field: c.field.clone(),
                levels: c
                    .comparator
                    .levels()
                    .iter()
                    .zip(c.m.iter().zip(&c.u))
                    .map(|(label, (m, u))| LevelReport {
                        level: (*label).to_owned(),
                        m: *m,
                        u: *u,
                        weight: (m.max(1e-12) / u.max(1e-12)).log2(),
                    })
                    .collect(),
            })
            .collect(),
        upper: model.upper,
        lower: model.lower,
        pairs_above_upper: above,
        expected_precision: if above == 0 {
            1.0
        } else {
            above_p / above as f64
        },
        pairs_in_review: review,
    };
    (model, report)
}

/// The report as an operator reads it.
pub fn render(r: &TrainReport) -> String {
    let mut out = format!(
        "{} model v{}: {} records, {} random pairs for u, {} blocked pairs for m ({} EM iterations, {:.2}% of them matches)\n\
         prior {:.3e}; merge at >= {}, review at >= {}\n",
        r.kind, r.version, r.records, r.random_pairs, r.blocked_pairs, r.iterations,
        r.blocked_match_share * 100.0, r.prior, r.upper, r.lower
    );
    for c in &r.comparisons {
        out.push_str(&format!("\n{}\n", c.field));
        out.push_str(&format!(
            "  {:<26} {:>9} {:>11} {:>8}\n",
            "level", "m", "u", "weight"
        ));
        for l in &c.levels {
            out.push_str(&format!(
                "  {:<26} {:>9.5} {:>11.7} {:>+8.2}\n",
                l.level, l.m, l.u, l.weight
            ));
        }
    }
    out.push_str(&format!(
        "\nautomatic merges expected among blocked pairs: {} at an expected precision of {:.5}; {} pairs would go to review\n",
        r.pairs_above_upper, r.expected_precision, r.pairs_in_review
    ));
    out
}

/// Match probability of each pattern under `model` with matches making `share` of pairs.
fn posterior(model: &Model, pattern: &[Option<usize>], share: f64, active: &[bool]) -> f64 {
    let (mut lm, mut lu) = (share.ln(), (1.0 - share).ln());
    for ((c, level), on) in model.comparisons.iter().zip(pattern).zip(active) {
        if let (Some(l), true) = (level, on) {
            lm += c.m.get(*l).copied().unwrap_or(0.0).max(1e-12).ln();
            lu += c.u.get(*l).copied().unwrap_or(0.0).max(1e-12).ln();
        }
    }
    1.0 / (1.0 + (lu - lm).exp())
}

/// EM over level patterns with u fixed: m of the `active` comparisons and the share of
/// matches, and the iterations it took.
fn em(
    model: &Model,
    patterns: &HashMap<Vec<Option<usize>>, f64>,
    active: &[bool],
) -> (Vec<Vec<f64>>, f64, usize) {
    let mut m: Vec<Vec<f64>> = model.comparisons.iter().map(|c| c.m.clone()).collect();
    let mut share: f64 = 0.1;
    let mut iterations = 0;
    let mut work = model.clone();
    for _ in 0..MAX_ITERATIONS {
        iterations += 1;
        for (c, m) in work.comparisons.iter_mut().zip(&m) {
            c.m.clone_from(m);
        }
        let mut num: Vec<Vec<f64>> = m.iter().map(|x| vec![0.0; x.len()]).collect();
        let (mut matched, mut all) = (0.0, 0.0);
        for (pattern, count) in patterns {
            let p = posterior(&work, pattern, share, active);
            matched += p * count;
            all += count;
            for ((n, level), on) in num.iter_mut().zip(pattern).zip(active) {
                if let (Some(slot), true) = (level.and_then(|l| n.get_mut(l)), on) {
                    *slot += p * count;
                }
            }
        }
        let mut moved: f64 = 0.0;
        for ((old, n), on) in m.iter_mut().zip(&num).zip(active) {
            let total: f64 = n.iter().sum();
            if !on || total <= 0.0 {
                continue;
            }
            let k = n.len() as f64;
            let new: Vec<f64> = n.iter().map(|x| (x + 0.01) / (total + 0.01 * k)).collect();
            moved = old
                .iter()
                .zip(&new)
                .map(|(a, b)| (a - b).abs())
                .fold(moved, f64::max);
            *old = new;
        }
        if all > 0.0 {
            share = (matched / all).clamp(1e-6, 1.0 - 1e-6);
        }
        if moved < TOLERANCE {
            break;
        }
    }
    (m, share, iterations)
}

/// The share of matches among pairs with these patterns, m and u held (EM on the share alone).
fn share_of_matches(model: &Model, patterns: &HashMap<Vec<Option<usize>>, f64>) -> f64 {
    let active = vec![true; model.comparisons.len()];
    let mut share: f64 = 0.1;
    for _ in 0..MAX_ITERATIONS {
        let (mut matched, mut all) = (0.0, 0.0);
        for (pattern, count) in patterns {
            matched += posterior(model, pattern, share, &active) * count;
            all += count;
        }
        let next = if all > 0.0 {
            (matched / all).clamp(1e-6, 1.0 - 1e-6)
        } else {
            share
        };
        if (next - share).abs() < TOLERANCE {
            return next;
        }
        share = next;
    }
    share
}
