//! Salesforce REST connector (Lead, Contact, Account, Opportunity).

pub mod config;

use revsync_sdk::{ConnectorType, Kind, ParamError};

/// The `salesforce` connector type.
pub struct Salesforce;

impl ConnectorType for Salesforce {
    fn name(&self) -> &'static str {
        "salesforce"
    }

    fn objects(&self) -> &'static [(&'static str, Kind)] {
        &[
            ("Lead", Kind::Person),
            ("Contact", Kind::Person),
            ("Account", Kind::Organization),
            ("Opportunity", Kind::Deal),
        ]
    }

    fn validate_params(&self, params: &serde_json::Value) -> Result<(), Vec<ParamError>> {
        config::SalesforceParams::from_value(params).map(|_| ())
    }

    fn params_example(&self) -> &'static str {
        "params:\n  auth:\n    flow: refresh_token\n    token_url: https://login.salesforce.com/services/oauth2/token\n    client_id: ${SF_CLIENT_ID}\n    client_secret: ${SF_CLIENT_SECRET}\n    refresh_token: ${SF_REFRESH_TOKEN}"
    }
}
