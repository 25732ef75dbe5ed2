//! Zendesk Support connector (users, organizations, tickets).

pub mod config;

use revsync_sdk::{ConnectorType, Kind, ParamError};

/// The `zendesk` connector type.
pub struct Zendesk;

impl ConnectorType for Zendesk {
    fn name(&self) -> &'static str {
        "zendesk"
    }

    fn objects(&self) -> &'static [(&'static str, Kind)] {
        &[
            ("users", Kind::Person),
            ("organizations", Kind::Organization),
            ("tickets", Kind::Ticket),
        ]
    }

    fn validate_params(&self, params: &serde_json::Value) -> Result<(), Vec<ParamError>> {
        config::ZendeskParams::from_value(params).map(|_| ())
    }

    fn params_example(&self) -> &'static str {
        "params:\n  subdomain: acme\n  auth:\n    method: api_token\n    email: ops@acme.com\n    token: ${ZENDESK_TOKEN}"
    }
}
