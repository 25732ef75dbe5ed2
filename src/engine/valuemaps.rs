//! Default value maps shipped with revsync (MODEL.md), per connector type and source field.
//!
//! Each table lists (source value, canonical value). Going out, the first source value
//! listed for a canonical value is the one written, so table order is the preference.

/// The default table for `(connector type, object, source field)`, if any.
pub fn default_table(
    type_name: &str,
    object: &str,
    field: &str,
) -> Option<&'static [(&'static str, &'static str)]> {
    Some(match (type_name, object, field) {
        ("hubspot", "contacts", "lifecyclestage") => &[
            ("subscriber", "subscriber"),
            ("lead", "lead"),
            ("marketingqualifiedlead", "mql"),
            ("salesqualifiedlead", "sql"),
            ("opportunity", "opportunity"),
            ("customer", "customer"),
            ("evangelist", "evangelist"),
            ("other", "other"),
        ],
        ("hubspot", "deals", "dealstage") => &[
            ("appointmentscheduled", "prospecting"),
            ("qualifiedtobuy", "qualification"),
            ("presentationscheduled", "discovery"),
            ("decisionmakerboughtin", "proposal"),
            ("contractsent", "negotiation"),
            ("closedwon", "closed_won"),
            ("closedlost", "closed_lost"),
        ],
        ("salesforce", "Opportunity", "StageName") => &[
            ("Prospecting", "prospecting"),
            ("Qualification", "qualification"),
            ("Needs Analysis", "discovery"),
            ("Value Proposition", "discovery"),
            ("Proposal/Price Quote", "proposal"),
            ("Id. Decision Makers", "proposal"),
            ("Perception Analysis", "proposal"),
            ("Negotiation/Review", "negotiation"),
            ("Closed Won", "closed_won"),
            ("Closed Lost", "closed_lost"),
        ],
        ("salesforce", "Opportunity", "ForecastCategoryName") => &[
            ("Pipeline", "pipeline"),
            ("Best Case", "best_case"),
            ("Commit", "commit"),
            ("Closed", "closed"),
            ("Omitted", "omitted"),
        ],
        ("zendesk", "tickets", "status") => &[
            ("new", "new"),
            ("open", "open"),
            ("pending", "pending"),
            ("hold", "on_hold"),
            ("solved", "solved"),
            ("closed", "closed"),
        ],
        ("zendesk", "tickets", "priority") => &[
            ("low", "low"),
            ("normal", "normal"),
            ("high", "high"),
            ("urgent", "urgent"),
        ],
        ("stripe", "subscriptions", "status") => &[
            ("trialing", "trialing"),
            ("active", "active"),
            ("past_due", "past_due"),
            ("paused", "paused"),
            ("canceled", "canceled"),
            ("incomplete", "incomplete"),
            ("incomplete_expired", "canceled"),
            ("unpaid", "unpaid"),
        ],
        ("stripe", "invoices", "status") => &[
            ("draft", "draft"),
            ("open", "open"),
            ("paid", "paid"),
            ("uncollectible", "uncollectible"),
            ("void", "void"),
        ],
        _ => return None,
    })
}

/// Deal status follows from the canonical stage (MODEL.md: won/lost from the closed ones).
pub fn deal_status_for_stage(stage: &str) -> &'static str {
    match stage {
        "closed_won" => "won",
        "closed_lost" => "lost",
        _ => "open",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use revsync_sdk::{FieldType, Kind};

    #[test]
    fn every_default_maps_onto_valid_canonical_values() {
        let cases = [
            (
                "hubspot",
                "contacts",
                "lifecyclestage",
                Kind::Person,
                "lifecycle_stage",
            ),
            ("hubspot", "deals", "dealstage", Kind::Deal, "stage"),
            (
                "salesforce",
                "Opportunity",
                "StageName",
                Kind::Deal,
                "stage",
            ),
            (
                "salesforce",
                "Opportunity",
                "ForecastCategoryName",
                Kind::Deal,
                "forecast_category",
            ),
            ("zendesk", "tickets", "status", Kind::Ticket, "status"),
            ("zendesk", "tickets", "priority", Kind::Ticket, "priority"),
            (
                "stripe",
                "subscriptions",
                "status",
                Kind::Subscription,
                "status",
            ),
            ("stripe", "invoices", "status", Kind::Invoice, "status"),
        ];
        for (t, o, f, kind, field) in cases {
            let FieldType::Enum(allowed) = kind.field(field).unwrap().ty else {
                panic!("{kind}.{field} is an enum")
            };
            for (_, canon) in default_table(t, o, f).unwrap() {
                assert!(
                    allowed.contains(canon),
                    "{t}.{o}.{f}: {canon} not in {allowed:?}"
                );
            }
        }
    }
}
