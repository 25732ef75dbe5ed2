//! The canonical vocabulary: the kinds of record revsync reconciles.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A kind of canonical record. Each connector object maps onto exactly one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Person,
    Organization,
    Deal,
    Ticket,
    Subscription,
    Invoice,
    Activity,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Person,
        Kind::Organization,
        Kind::Deal,
        Kind::Ticket,
        Kind::Subscription,
        Kind::Invoice,
        Kind::Activity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Person => "person",
            Kind::Organization => "organization",
            Kind::Deal => "deal",
            Kind::Ticket => "ticket",
            Kind::Subscription => "subscription",
            Kind::Invoice => "invoice",
            Kind::Activity => "activity",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let valid: Vec<_> = Kind::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown kind `{s}`, expected one of: {}", valid.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for k in Kind::ALL {
            assert_eq!(k.as_str().parse::<Kind>().unwrap(), k);
        }
        let err = "people".parse::<Kind>().unwrap_err();
        assert!(err.contains("person, organization"), "{err}");
    }
}
