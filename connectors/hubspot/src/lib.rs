//! HubSpot CRM v3 connector (contacts, companies, deals).

pub mod config;

use revsync_sdk::{ConnectorType, Kind, ParamError};

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
}
