//! `params:` of a HubSpot connector file.

use revsync_sdk::{check_base_url, collected, parse_params, ParamError, Secret};
use serde::Deserialize;

/// The HubSpot subscription tier, which sets the documented burst limit
/// (API_FACTS 1.4: Free/Starter 100 per 10 s, Professional/Enterprise 190 per 10 s).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Free,
    Starter,
    #[default]
    Professional,
    Enterprise,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSpotParams {
    /// Private app token, sent as `Authorization: Bearer`.
    pub token: Secret,
    #[serde(default)]
    pub tier: Tier,
    /// Number of purchased API limit increases (0 to 2): each raises the burst to 250 per 10 s.
    #[serde(default)]
    pub api_limit_increases: u8,
    /// The app's client secret, needed to verify v3 webhook signatures.
    #[serde(default)]
    pub client_secret: Option<Secret>,
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

fn default_base_url() -> String {
    "https://api.hubapi.com".to_owned()
}

impl HubSpotParams {
    pub fn from_value(v: &serde_json::Value) -> Result<Self, Vec<ParamError>> {
        let p: Self = parse_params(v).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        if p.token.is_empty() {
            errors.push(
                ParamError::new("token", "must not be empty")
                    .with_example("token: ${HUBSPOT_TOKEN}"),
            );
        }
        if p.api_limit_increases > 2 {
            errors.push(
                ParamError::new(
                    "api_limit_increases",
                    format!(
                        "{} is more than HubSpot sells (at most 2)",
                        p.api_limit_increases
                    ),
                )
                .with_example("api_limit_increases: 1"),
            );
        }
        if let Err(e) = check_base_url("base_url", &p.base_url) {
            errors.push(e);
        }
        collected(p, errors)
    }

    /// Requests allowed per rolling 10 seconds, per the documented tier limits.
    pub fn burst_per_10s(&self) -> u32 {
        if self.api_limit_increases > 0 {
            return 250;
        }
        match self.tier {
            Tier::Free | Tier::Starter => 100,
            Tier::Professional | Tier::Enterprise => 190,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tier_sets_the_documented_burst() {
        let p = HubSpotParams::from_value(&json!({"token": "t", "tier": "starter"})).unwrap();
        assert_eq!(p.burst_per_10s(), 100);
        let p = HubSpotParams::from_value(&json!({"token": "t"})).unwrap();
        assert_eq!(p.burst_per_10s(), 190);
        let p =
            HubSpotParams::from_value(&json!({"token": "t", "api_limit_increases": 1})).unwrap();
        assert_eq!(p.burst_per_10s(), 250);
    }

    #[test]
    fn reports_bad_fields_by_path() {
        let e = HubSpotParams::from_value(&json!({"token": "t", "tier": "gold"})).unwrap_err();
        assert_eq!(e[0].path, "tier");
        let e =
            HubSpotParams::from_value(&json!({"token": "", "api_limit_increases": 5})).unwrap_err();
        let paths: Vec<_> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["token", "api_limit_increases"]);
    }
}
