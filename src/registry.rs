//! The connector types compiled into this binary, each behind its cargo feature.

use revsync_sdk::ConnectorType;

/// Every connector type this build knows, by `type:` name.
pub struct Registry {
    types: Vec<Box<dyn ConnectorType>>,
}

impl Registry {
    /// The one place connector types are registered.
    pub fn builtin() -> Self {
        let mut types: Vec<Box<dyn ConnectorType>> = vec![
            #[cfg(feature = "hubspot")]
            Box::new(revsync_hubspot::HubSpot),
            #[cfg(feature = "salesforce")]
            Box::new(revsync_salesforce::Salesforce),
            #[cfg(feature = "stripe")]
            Box::new(revsync_stripe::Stripe),
            #[cfg(feature = "zendesk")]
            Box::new(revsync_zendesk::Zendesk),
            #[cfg(feature = "csv")]
            Box::new(revsync_csv::Csv),
            #[cfg(feature = "rest")]
            Box::new(revsync_rest::Rest),
        ];
        types.sort_by_key(|t| t.name());
        Self { types }
    }

    /// The built-in types plus `extra` (tests register their own connector types).
    pub fn with(extra: Vec<Box<dyn ConnectorType>>) -> Self {
        let mut r = Self::builtin();
        r.types.extend(extra);
        r.types.sort_by_key(|t| t.name());
        r
    }

    pub fn get(&self, name: &str) -> Option<&dyn ConnectorType> {
        self.types
            .iter()
            .find(|t| t.name() == name)
            .map(|t| t.as_ref())
    }

    /// Known type names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.types.iter().map(|t| t.name()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_every_compiled_in_type_in_order() {
        assert_eq!(
            Registry::builtin().names(),
            ["csv", "hubspot", "rest", "salesforce", "stripe", "zendesk"]
        );
    }
}
