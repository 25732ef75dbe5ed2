//! Identity II: scored matching of the records no exact key joins (DESIGN.md, issue 19).
//!
//! The exact path (links, emails, domains, cross-system ids) stays first and cheap. A
//! record it does not place is compared, under its kind's Fellegi-Sunter [`Model`], with
//! the candidates its blocking keys find in the store's index; the best score decides:
//! merge, review, or a record of its own. Guards veto merges no score may make.

pub mod compare;
// The generator indexes its own constant lists and vectors by bounds it drew.
#[allow(clippy::indexing_slicing)]
pub mod gen;
pub mod model;
pub mod train;

pub use model::{default_for, Model, Profile, Score, Verdict};

#[cfg(test)]
mod tests {
    use super::gen::{generate, Rates};
    use super::model::default_person;
    use super::train::{train, Sample};

    fn samples(m: &super::Model, world: &gen::World) -> Vec<Sample> {
        world
            .persons
            .iter()
            .map(|c| Sample {
                profile: m.profile(&|f| c.values.get(f)),
                keys: m.block_keys(&|f| c.values.get(f)),
            })
            .collect()
    }
    use super::gen;

    #[test]
    fn training_recovers_the_generators_error_rates() {
        let rates = Rates::default();
        let world = generate(3000, 11, &rates);
        let base = default_person();
        let (model, report) = train(&base, &samples(&base, &world), 5);
        assert_eq!(model.version, 1);
        assert!(report.blocked_pairs > 3000, "{report:?}");
        let m_of = |field: &str, level: usize| {
            model
                .comparisons
                .iter()
                .find(|c| c.field == field)
                .and_then(|c| c.m.get(level).copied())
                .unwrap_or(f64::NAN)
        };
        // Both copies of a true pair typed without error: (1 - typo)^2 (1 - swap)^2.
        let last_exact = (1.0 - rates.last_typo).powi(2) * (1.0 - rates.swapped).powi(2);
        assert!(
            (m_of("last_name", 0) - last_exact).abs() < 0.05,
            "last_name exact m {} vs {last_exact}",
            m_of("last_name", 0)
        );
        let phone_exact = (1.0 - rates.phone_typo).powi(2);
        assert!(
            (m_of("phone", 0) - phone_exact).abs() < 0.04,
            "phone exact m {} vs {phone_exact}",
            m_of("phone", 0)
        );
        let city_exact = 1.0;
        assert!(
            (m_of("city", 0) - city_exact).abs() < 0.06,
            "city exact m {}",
            m_of("city", 0)
        );
        // A common surname's exact match counts for less than a rare one's.
        let last = model
            .comparisons
            .iter()
            .find(|c| c.field == "last_name")
            .map(|c| c.tf.len());
        assert!(last.unwrap_or(0) > 10);
        assert!(report.expected_precision > 0.99, "{report:?}");
    }
}
