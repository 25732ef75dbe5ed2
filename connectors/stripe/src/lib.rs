//! Stripe connector (customers, subscriptions, invoices).

pub mod config;

use revsync_sdk::{ConnectorType, Kind, ParamError};

/// The `stripe` connector type.
pub struct Stripe;

impl ConnectorType for Stripe {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn objects(&self) -> &'static [(&'static str, Kind)] {
        &[
            ("customers", Kind::Organization),
            ("subscriptions", Kind::Subscription),
            ("invoices", Kind::Invoice),
        ]
    }

    fn validate_params(&self, params: &serde_json::Value) -> Result<(), Vec<ParamError>> {
        config::StripeParams::from_value(params).map(|_| ())
    }

    fn params_example(&self) -> &'static str {
        "params:\n  secret_key: ${STRIPE_SECRET_KEY}\n  webhook_secret: ${STRIPE_WEBHOOK_SECRET}"
    }
}
