//! `params:` of a Stripe connector file.

use revsync_sdk::{
    check_base_url, check_range, check_timeout_ms, collected, parse_params, ParamError, Secret,
    MAX_WINDOW_SECS,
};
use serde::Deserialize;

/// What a Stripe customer becomes in the canonical model.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum CustomersAs {
    /// B2B: an organization, with its email's person as billing contact.
    #[default]
    Organization,
    Person,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeParams {
    /// `sk_live_…`, `sk_test_…` or a restricted `rk_…` key.
    pub secret_key: Secret,
    /// Endpoint secret (`whsec_…`) for `Stripe-Signature`.
    #[serde(default)]
    pub webhook_secret: Option<Secret>,
    #[serde(default = "default_base_url")]
    pub base_url: String,
    #[serde(default)]
    pub customers_as: CustomersAs,
    /// Subscriptions and invoices are billing facts: read-only unless allowed here.
    #[serde(default)]
    pub allow_billing_writes: bool,
    /// Overall requests per second; defaults from the key's mode (API_FACTS 4.4).
    #[serde(default)]
    pub requests_per_second: Option<u32>,
    /// Per-endpoint requests per second (Stripe's default is 25 for most endpoints).
    #[serde(default = "default_endpoint_requests_per_second")]
    pub endpoint_requests_per_second: u32,
    /// How far a `Stripe-Signature` timestamp may be from now.
    #[serde(default = "default_webhook_tolerance_secs")]
    pub webhook_tolerance_secs: u32,
    /// Per-request timeout, from connect to the last byte of the answer.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    30_000
}

fn default_endpoint_requests_per_second() -> u32 {
    25
}

fn default_webhook_tolerance_secs() -> u32 {
    300
}

fn default_base_url() -> String {
    "https://api.stripe.com".to_owned()
}

impl StripeParams {
    pub fn from_value(v: &serde_json::Value) -> Result<Self, Vec<ParamError>> {
        let p: Self = parse_params(v).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        let key = p.secret_key.expose();
        if !["sk_live_", "sk_test_", "rk_live_", "rk_test_"]
            .iter()
            .any(|pre| key.starts_with(pre))
        {
            // The value is a secret: describe it, never echo it.
            errors.push(
                ParamError::new(
                    "secret_key",
                    "is not a Stripe secret key (sk_live_, sk_test_, rk_live_ or rk_test_)",
                )
                .with_example("secret_key: ${STRIPE_SECRET_KEY}"),
            );
        }
        if p.endpoint_requests_per_second == 0 {
            errors.push(
                ParamError::new("endpoint_requests_per_second", "must be at least 1, got 0")
                    .with_example("endpoint_requests_per_second: 25"),
            );
        }
        if p.requests_per_second == Some(0) {
            errors.push(
                ParamError::new("requests_per_second", "must be at least 1, got 0")
                    .with_example("requests_per_second: 100"),
            );
        }
        errors.extend(check_range(
            "webhook_tolerance_secs",
            u64::from(p.webhook_tolerance_secs),
            0..=MAX_WINDOW_SECS,
            "seconds",
            "300",
        ));
        errors.extend(check_timeout_ms(p.timeout_ms, "30000"));
        if let Err(e) = check_base_url("base_url", &p.base_url) {
            errors.push(e);
        }
        collected(p, errors)
    }

    pub fn is_live(&self) -> bool {
        self.secret_key.expose().contains("_live_")
    }

    /// Live keys get 100 requests/s overall, test keys 25 (API_FACTS 4.4).
    pub fn requests_per_second(&self) -> u32 {
        self.requests_per_second
            .unwrap_or(if self.is_live() { 100 } else { 25 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mode_sets_the_rate() {
        let p = StripeParams::from_value(&json!({"secret_key": "sk_test_abc"})).unwrap();
        assert_eq!(p.requests_per_second(), 25);
        let p = StripeParams::from_value(&json!({"secret_key": "sk_live_abc"})).unwrap();
        assert_eq!(p.requests_per_second(), 100);
    }

    #[test]
    fn the_timeout_defaults_to_30s_and_zero_is_refused() {
        let p = StripeParams::from_value(&json!({"secret_key": "sk_test_abc"})).unwrap();
        assert_eq!(p.timeout_ms, 30_000);
        let e = StripeParams::from_value(&json!({"secret_key": "sk_test_abc", "timeout_ms": 0}))
            .unwrap_err();
        assert_eq!(e[0].path, "timeout_ms");
        assert_eq!(e[0].message, "0 is outside 1..=3600000 milliseconds");
    }

    #[test]
    fn clock_params_beyond_their_range_are_refused() {
        let e = StripeParams::from_value(&json!({"secret_key": "sk_test_abc",
            "webhook_tolerance_secs": u32::MAX, "timeout_ms": u64::MAX}))
        .unwrap_err();
        assert_eq!(
            ParamError::pairs(&e),
            [
                (
                    "webhook_tolerance_secs",
                    "4294967295 is outside 0..=86400 seconds"
                ),
                (
                    "timeout_ms",
                    "18446744073709551615 is outside 1..=3600000 milliseconds"
                ),
            ]
        );
    }

    #[test]
    fn a_bad_key_is_reported_without_its_value() {
        let e = StripeParams::from_value(&json!({"secret_key": "pk_live_leaky"})).unwrap_err();
        assert_eq!(e[0].path, "secret_key");
        assert!(!e[0].message.contains("leaky"));
    }
}
