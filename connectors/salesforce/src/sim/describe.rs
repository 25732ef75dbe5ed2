//! The simulated org's sObject describe (`GET /services/data/vXX.X/sobjects/{SObject}/describe`):
//! the standard fields of each object the simulator serves, with Salesforce's own names,
//! types, picklists and access flags, the External ID field revsync upserts on, and one
//! custom `__c` field an object, as an admin would have added it.

use serde_json::{json, Value};

use super::EXTERNAL_ID_FIELD;

/// What a field allows, as describe's flags say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Createable, updateable, nillable.
    Open,
    /// Not nillable and not defaulted: a create without it is REQUIRED_FIELD_MISSING.
    Required,
    /// Not nillable, but Salesforce fills it on create (Status, OwnerId, checkboxes).
    Defaulted,
    /// Set on create only (Opportunity.ContactId).
    CreateOnly,
    /// Salesforce keeps it (Id, SystemModstamp, IsWon): neither createable nor updateable.
    System,
    /// A formula: computed on read.
    Formula,
}

/// name, label, type, access, the objects a reference points at.
type Row = (
    &'static str,
    &'static str,
    &'static str,
    Access,
    &'static [&'static str],
);

use Access::{CreateOnly, Defaulted, Formula, Open, Required, System};

const USER: &[&str] = &["User"];

/// Every sObject's own bookkeeping.
const SYSTEM: &[Row] = &[
    ("Id", "Record ID", "id", System, &[]),
    ("IsDeleted", "Deleted", "boolean", System, &[]),
    ("OwnerId", "Owner ID", "reference", Defaulted, USER),
    ("CreatedDate", "Created Date", "datetime", System, &[]),
    ("CreatedById", "Created By ID", "reference", System, USER),
    (
        "LastModifiedDate",
        "Last Modified Date",
        "datetime",
        System,
        &[],
    ),
    (
        "LastModifiedById",
        "Last Modified By ID",
        "reference",
        System,
        USER,
    ),
    ("SystemModstamp", "System Modstamp", "datetime", System, &[]),
    // The simulated org has multi-currency on (the demo's Opportunities carry a currency),
    // and Salesforce then adds the field to every object that holds money or people.
    (
        "CurrencyIsoCode",
        "Currency ISO Code",
        "picklist",
        Defaulted,
        &[],
    ),
];

const LEAD: &[Row] = &[
    ("FirstName", "First Name", "string", Open, &[]),
    ("LastName", "Last Name", "string", Required, &[]),
    ("Name", "Full Name", "string", System, &[]),
    ("Email", "Email", "email", Open, &[]),
    ("Phone", "Phone", "phone", Open, &[]),
    ("Title", "Title", "string", Open, &[]),
    ("Company", "Company", "string", Required, &[]),
    ("Status", "Lead Status", "picklist", Defaulted, &[]),
    ("LeadSource", "Lead Source", "picklist", Open, &[]),
    ("Industry", "Industry", "picklist", Open, &[]),
    ("Country", "Country", "string", Open, &[]),
    ("City", "City", "string", Open, &[]),
    ("Description", "Description", "textarea", Open, &[]),
    ("IsConverted", "Converted", "boolean", CreateOnly, &[]),
    ("ConvertedDate", "Converted Date", "date", System, &[]),
    (
        "ConvertedAccountId",
        "Converted Account ID",
        "reference",
        System,
        &["Account"],
    ),
    (
        "ConvertedContactId",
        "Converted Contact ID",
        "reference",
        System,
        &["Contact"],
    ),
    (
        "ConvertedOpportunityId",
        "Converted Opportunity ID",
        "reference",
        System,
        &["Opportunity"],
    ),
    ("Lead_Score__c", "Lead Score", "double", Open, &[]),
];

const CONTACT: &[Row] = &[
    ("FirstName", "First Name", "string", Open, &[]),
    ("LastName", "Last Name", "string", Required, &[]),
    ("Name", "Full Name", "string", System, &[]),
    ("Email", "Email", "email", Open, &[]),
    ("Phone", "Business Phone", "phone", Open, &[]),
    ("Title", "Title", "string", Open, &[]),
    ("Department", "Department", "string", Open, &[]),
    ("AccountId", "Account ID", "reference", Open, &["Account"]),
    ("LeadSource", "Lead Source", "picklist", Open, &[]),
    ("MailingCountry", "Mailing Country", "string", Open, &[]),
    ("MailingCity", "Mailing City", "string", Open, &[]),
    ("Description", "Contact Description", "textarea", Open, &[]),
    ("Customer_Tier__c", "Customer Tier", "picklist", Open, &[]),
];

const ACCOUNT: &[Row] = &[
    ("Name", "Account Name", "string", Required, &[]),
    ("Website", "Website", "url", Open, &[]),
    ("Phone", "Account Phone", "phone", Open, &[]),
    ("Industry", "Industry", "picklist", Open, &[]),
    ("Type", "Account Type", "picklist", Open, &[]),
    ("NumberOfEmployees", "Employees", "int", Open, &[]),
    ("AnnualRevenue", "Annual Revenue", "currency", Open, &[]),
    ("BillingCountry", "Billing Country", "string", Open, &[]),
    ("BillingCity", "Billing City", "string", Open, &[]),
    (
        "ParentId",
        "Parent Account ID",
        "reference",
        Open,
        &["Account"],
    ),
    ("Description", "Account Description", "textarea", Open, &[]),
    ("Region__c", "Region", "picklist", Open, &[]),
];

const OPPORTUNITY: &[Row] = &[
    ("Name", "Name", "string", Required, &[]),
    ("AccountId", "Account ID", "reference", Open, &["Account"]),
    (
        "ContactId",
        "Contact ID",
        "reference",
        CreateOnly,
        &["Contact"],
    ),
    ("StageName", "Stage", "picklist", Required, &[]),
    ("Amount", "Amount", "currency", Open, &[]),
    ("Probability", "Probability (%)", "percent", Open, &[]),
    ("CloseDate", "Close Date", "date", Required, &[]),
    ("Type", "Opportunity Type", "picklist", Open, &[]),
    ("IsClosed", "Closed", "boolean", System, &[]),
    ("IsWon", "Won", "boolean", System, &[]),
    (
        "ForecastCategory",
        "Forecast Category",
        "picklist",
        System,
        &[],
    ),
    (
        "ForecastCategoryName",
        "Forecast Category",
        "picklist",
        Defaulted,
        &[],
    ),
    (
        "ExpectedRevenue",
        "Expected Amount",
        "currency",
        Formula,
        &[],
    ),
    ("Description", "Description", "textarea", Open, &[]),
    ("Renewal_Date__c", "Renewal Date", "date", Open, &[]),
];

/// A picklist's values: value, active, the default on create. Labels are the values, as
/// in a new org.
fn picklist(object: &str, field: &str) -> &'static [(&'static str, bool, bool)] {
    match (object, field) {
        ("Lead", "Status") => &[
            ("Open - Not Contacted", true, true),
            ("Working - Contacted", true, false),
            ("Closed - Converted", true, false),
            ("Closed - Not Converted", true, false),
        ],
        (_, "LeadSource") => &[
            ("Web", true, false),
            ("Phone Inquiry", true, false),
            ("Partner Referral", true, false),
            ("Purchased List", true, false),
            ("Other", true, false),
        ],
        (_, "Industry") => &[
            ("Agriculture", true, false),
            ("Banking", true, false),
            ("Communications", true, false),
            ("Consulting", true, false),
            ("Education", true, false),
            ("Finance", true, false),
            ("Healthcare", true, false),
            ("Manufacturing", true, false),
            ("Retail", true, false),
            ("Technology", true, false),
            ("Telecommunications", true, false),
            ("Transportation", true, false),
            ("Other", true, false),
        ],
        ("Account", "Type") => &[
            ("Prospect", true, false),
            ("Customer - Direct", true, false),
            ("Customer - Channel", true, false),
            ("Channel Partner / Reseller", true, false),
            ("Technology Partner", true, false),
            ("Other", true, false),
        ],
        ("Opportunity", "StageName") => &[
            ("Prospecting", true, false),
            ("Qualification", true, false),
            ("Needs Analysis", true, false),
            ("Value Proposition", true, false),
            ("Id. Decision Makers", true, false),
            ("Perception Analysis", true, false),
            ("Proposal/Price Quote", true, false),
            ("Negotiation/Review", true, false),
            ("Closed Won", true, false),
            ("Closed Lost", true, false),
        ],
        ("Opportunity", "Type") => &[
            ("Existing Customer - Upgrade", true, false),
            ("Existing Customer - Replacement", true, false),
            ("Existing Customer - Downgrade", true, false),
            ("New Customer", true, false),
        ],
        ("Opportunity", "ForecastCategory" | "ForecastCategoryName") => &[
            ("Omitted", true, false),
            ("Pipeline", true, false),
            ("BestCase", true, false),
            ("Commit", true, false),
            ("Closed", true, false),
        ],
        // An admin retired Platinum: describe still lists it, inactive.
        ("Contact", "Customer_Tier__c") => &[
            ("Bronze", true, false),
            ("Silver", true, false),
            ("Gold", true, false),
            ("Platinum", false, false),
        ],
        (_, "CurrencyIsoCode") => &[
            ("USD", true, true),
            ("EUR", true, false),
            ("GBP", true, false),
        ],
        ("Account", "Region__c") => &[
            ("AMER", true, false),
            ("EMEA", true, false),
            ("APAC", true, false),
        ],
        _ => &[],
    }
}

/// The text length describe states: 0 for anything that is not text.
/// The most characters a text field holds (describe's `length`), as the standard fields
/// of a Developer Edition org declare them; a longer value is refused (STRING_TOO_LONG).
fn length(ty: &str, name: &str) -> u32 {
    match ty {
        "id" | "reference" => 18,
        "string" if name == "FirstName" => 40,
        "email" | "string" if name == "LastName" || name == "Email" => 80,
        "string" if name == "Title" => 128,
        "email" | "string" | "url" | "picklist" => 255,
        "phone" => 40,
        "textarea" => 32_000,
        _ => 0,
    }
}

fn field((name, label, ty, access, refs): Row, object: &str) -> Value {
    let custom = name.ends_with("__c");
    let external = name == EXTERNAL_ID_FIELD;
    let boolean = ty == "boolean";
    let (createable, updateable) = match access {
        Open | Required | Defaulted => (true, true),
        CreateOnly => (true, false),
        System | Formula => (false, false),
    };
    // Checkboxes are never null: Salesforce makes them false on create.
    let nillable = matches!(access, Open | CreateOnly | Formula) && !boolean;
    let defaulted = matches!(access, Defaulted | System) || boolean;
    let picklist: Vec<Value> = picklist(object, name)
        .iter()
        .map(|(value, active, default)| {
            json!({"value": value, "label": value, "active": active, "defaultValue": default, "validFor": null})
        })
        .collect();
    let relationship = (ty == "reference").then(|| match name.strip_suffix("__c") {
        Some(stem) => format!("{stem}__r"),
        None => name.strip_suffix("Id").unwrap_or(name).to_owned(),
    });
    json!({
        "name": name,
        "label": label,
        "type": ty,
        "length": length(ty, name),
        "nillable": nillable,
        "createable": createable,
        "updateable": updateable,
        "defaultedOnCreate": defaulted,
        "calculated": access == Formula,
        "custom": custom,
        "unique": external,
        "externalId": external,
        "idLookup": name == "Id" || external,
        "picklistValues": picklist,
        "referenceTo": refs,
        "relationshipName": relationship,
    })
}

const EXTERNAL: Row = (EXTERNAL_ID_FIELD, "Revsync Id", "string", Open, &[]);

/// Every field row of `object`; `None` for an sObject the org does not have.
fn rows(object: &str) -> Option<impl Iterator<Item = &'static Row>> {
    let own = match object {
        "Lead" => LEAD,
        "Contact" => CONTACT,
        "Account" => ACCOUNT,
        "Opportunity" => OPPORTUNITY,
        _ => return None,
    };
    Some(SYSTEM.iter().chain(own).chain([&EXTERNAL]))
}

/// A field `object` has (API names ignore case): its name as Salesforce spells it.
pub(super) fn field_name(object: &str, name: &str) -> Option<&'static str> {
    rows(object)?
        .map(|row| row.0)
        .find(|n| n.eq_ignore_ascii_case(name))
}

/// Why a write may not set these fields, field by field, as Salesforce checks a record:
/// the first field the object does not have (`INVALID_FIELD`, the whole request fails), or
/// else the fields it has but will not take on this write (`INVALID_FIELD_FOR_INSERT_UPDATE`).
pub(super) enum WriteCheck {
    Fine,
    Unknown(String),
    ReadOnly(Vec<String>),
}

pub(super) fn check_write<'a>(
    object: &str,
    names: impl IntoIterator<Item = &'a String>,
    creating: bool,
) -> WriteCheck {
    let Some(all) = rows(object).map(Iterator::collect::<Vec<_>>) else {
        return WriteCheck::Fine;
    };
    let mut read_only = Vec::new();
    for name in names {
        let Some(row) = all.iter().find(|r| r.0.eq_ignore_ascii_case(name)) else {
            return WriteCheck::Unknown(name.clone());
        };
        let writable = match row.3 {
            Open | Required | Defaulted => true,
            CreateOnly => creating,
            System | Formula => false,
        };
        // An Id in the body names the record being written (collections, upserts).
        if !writable && row.0 != "Id" {
            read_only.push(row.0.to_owned());
        }
    }
    if read_only.is_empty() {
        WriteCheck::Fine
    } else {
        WriteCheck::ReadOnly(read_only)
    }
}

/// The first text value in `fields` longer than its field holds: (field, its length).
pub(super) fn too_long(
    object: &str,
    fields: &serde_json::Map<String, Value>,
) -> Option<(String, u32)> {
    let all: Vec<&Row> = rows(object)?.collect();
    fields.iter().find_map(|(name, value)| {
        let row = all.iter().find(|r| r.0.eq_ignore_ascii_case(name))?;
        let max = length(row.2, row.0);
        let text = value.as_str()?;
        (max > 0 && text.chars().count() > max as usize).then(|| (row.0.to_owned(), max))
    })
}

/// The describe answer for `object`; `None` for an sObject the org does not have.
pub(super) fn describe(object: &str) -> Option<Value> {
    let fields: Vec<Value> = rows(object)?.map(|row| field(*row, object)).collect();
    let plural = match object {
        "Opportunity" => "Opportunities".to_owned(),
        other => format!("{other}s"),
    };
    Some(json!({
        "name": object,
        "label": object,
        "labelPlural": plural,
        "keyPrefix": super::prefix(object),
        "custom": false,
        "createable": true,
        "updateable": true,
        "deletable": true,
        "queryable": true,
        "fields": fields,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_the_connector_selects_is_described() {
        for object in crate::mapping::OBJECTS {
            let d = describe(object).unwrap();
            let names: Vec<&str> = d["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["name"].as_str().unwrap())
                .collect();
            for f in crate::mapping::default_fields(object, false) {
                assert!(
                    names.contains(&f),
                    "{object}.{f} is selected but not described"
                );
            }
            assert!(names.contains(&EXTERNAL_ID_FIELD));
        }
        assert!(describe("Case").is_none());
    }
}
