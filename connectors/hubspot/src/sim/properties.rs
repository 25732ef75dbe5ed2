//! The simulated portal's property definitions (`GET /crm/v3/properties/{objectType}`):
//! HubSpot's own default properties of each object the simulator stores, as the
//! properties API describes them, and a few custom ones an operator would have made.
//!
//! Writes are checked against these: a property not defined here is refused with
//! HubSpot's PROPERTY_DOESNT_EXIST, as a portal refuses a property it does not have.

use serde_json::{json, Value};

/// One property definition.
#[derive(Debug, Clone)]
pub(super) struct Prop {
    pub name: String,
    label: &'static str,
    ty: &'static str,
    field_type: &'static str,
    group: &'static str,
    /// HubSpot sets the value itself (`modificationMetadata.readOnlyValue`).
    pub read_only: bool,
    calculated: bool,
    /// Made by the account, not by HubSpot (`hubspotDefined` absent).
    custom: bool,
    unique: bool,
    /// The values come from elsewhere in the portal (owners), not from `options`.
    external_options: bool,
    options: &'static [(&'static str, &'static str)],
}

impl Prop {
    /// The definition as the properties API answers it.
    pub fn json(&self) -> Value {
        let options: Vec<Value> = self
            .options
            .iter()
            .zip(0..)
            .map(|((value, label), order)| {
                json!({"label": label, "value": value, "displayOrder": order, "hidden": false})
            })
            .collect();
        let mut p = json!({
            "name": self.name,
            "label": self.label,
            "type": self.ty,
            "fieldType": self.field_type,
            "description": "",
            "groupName": self.group,
            "options": options,
            "displayOrder": -1,
            "calculated": self.calculated,
            "externalOptions": self.external_options,
            "hasUniqueValue": self.unique,
            "hidden": false,
            "modificationMetadata": {
                "archivable": self.custom,
                "readOnlyDefinition": !self.custom,
                "readOnlyValue": self.read_only,
            },
            "formField": !self.read_only,
            "createdAt": if self.custom { "2025-03-04T09:12:44.118Z" } else { "2019-08-06T02:41:52.184Z" },
            "updatedAt": "2025-03-04T09:12:44.118Z",
            "archived": false,
        });
        // Custom properties carry no `hubspotDefined` at all, not `false`.
        if !self.custom {
            if let Some(m) = p.as_object_mut() {
                m.insert("hubspotDefined".into(), json!(true));
            }
        }
        p
    }
}

const LIFECYCLE_STAGES: &[(&str, &str)] = &[
    ("subscriber", "Subscriber"),
    ("lead", "Lead"),
    ("marketingqualifiedlead", "Marketing Qualified Lead"),
    ("salesqualifiedlead", "Sales Qualified Lead"),
    ("opportunity", "Opportunity"),
    ("customer", "Customer"),
    ("evangelist", "Evangelist"),
    ("other", "Other"),
];

const LEAD_STATUSES: &[(&str, &str)] = &[
    ("NEW", "New"),
    ("OPEN", "Open"),
    ("IN_PROGRESS", "In Progress"),
    ("OPEN_DEAL", "Open Deal"),
    ("UNQUALIFIED", "Unqualified"),
    ("ATTEMPTED_TO_CONTACT", "Attempted to Contact"),
    ("CONNECTED", "Connected"),
    ("BAD_TIMING", "Bad Timing"),
];

// A part of HubSpot's ~150 industries: the ones the simulator and the demo use, and some.
const INDUSTRIES: &[(&str, &str)] = &[
    ("ACCOUNTING", "Accounting"),
    ("BANKING", "Banking"),
    ("COMPUTER_SOFTWARE", "Computer Software"),
    ("CONSTRUCTION", "Construction"),
    ("EDUCATION_MANAGEMENT", "Education Management"),
    ("FINANCIAL_SERVICES", "Financial Services"),
    ("HOSPITAL_HEALTH_CARE", "Hospital & Health Care"),
    (
        "INFORMATION_TECHNOLOGY_AND_SERVICES",
        "Information Technology and Services",
    ),
    ("LOGISTICS_AND_SUPPLY_CHAIN", "Logistics and Supply Chain"),
    ("RETAIL", "Retail"),
    ("TELECOMMUNICATIONS", "Telecommunications"),
];

const COMPANY_TYPES: &[(&str, &str)] = &[
    ("PROSPECT", "Prospect"),
    ("PARTNER", "Partner"),
    ("RESELLER", "Reseller"),
    ("VENDOR", "Vendor"),
    ("OTHER", "Other"),
];

// The stages of the portal's default pipeline.
const DEAL_STAGES: &[(&str, &str)] = &[
    ("appointmentscheduled", "Appointment Scheduled"),
    ("qualifiedtobuy", "Qualified To Buy"),
    ("presentationscheduled", "Presentation Scheduled"),
    ("decisionmakerboughtin", "Decision Maker Bought-In"),
    ("contractsent", "Contract Sent"),
    ("closedwon", "Closed Won"),
    ("closedlost", "Closed Lost"),
];

const PIPELINES: &[(&str, &str)] = &[("default", "Sales Pipeline")];

const DEAL_TYPES: &[(&str, &str)] = &[
    ("newbusiness", "New Business"),
    ("existingbusiness", "Existing Business"),
];

// The currencies a multi-currency portal has turned on.
const CURRENCIES: &[(&str, &str)] = &[
    ("USD", "US Dollar"),
    ("EUR", "Euro"),
    ("GBP", "British Pound Sterling"),
    ("CAD", "Canadian Dollar"),
    ("JPY", "Japanese Yen"),
];

const CUSTOMER_TIERS: &[(&str, &str)] =
    &[("bronze", "Bronze"), ("silver", "Silver"), ("gold", "Gold")];

const ACCOUNT_TIERS: &[(&str, &str)] = &[
    ("strategic", "Strategic"),
    ("enterprise", "Enterprise"),
    ("smb", "SMB"),
];

/// A property as a row: name, label, `type`, `fieldType`.
type Row = (&'static str, &'static str, &'static str, &'static str);

/// What contacts and companies both have.
const SHARED: &[Row] = &[
    ("phone", "Phone Number", "string", "phonenumber"),
    ("website", "Website URL", "string", "text"),
    ("city", "City", "string", "text"),
    ("state", "State/Region", "string", "text"),
    ("country", "Country/Region", "string", "text"),
    ("lifecyclestage", "Lifecycle Stage", "enumeration", "radio"),
];

const CONTACTS: &[Row] = &[
    ("email", "Email", "string", "text"),
    ("firstname", "First Name", "string", "text"),
    ("lastname", "Last Name", "string", "text"),
    (
        "mobilephone",
        "Mobile Phone Number",
        "string",
        "phonenumber",
    ),
    ("jobtitle", "Job Title", "string", "text"),
    ("company", "Company Name", "string", "text"),
    ("address", "Street Address", "string", "text"),
    ("zip", "Postal Code", "string", "text"),
    ("hs_lead_status", "Lead Status", "enumeration", "radio"),
    (
        "associatedcompanyid",
        "Primary Associated Company ID",
        "number",
        "number",
    ),
    ("hs_email_domain", "Email Domain", "string", "text"),
    ("lastmodifieddate", "Last Modified Date", "datetime", "date"),
    ("customer_tier", "Customer tier", "enumeration", "select"),
];

const COMPANIES: &[Row] = &[
    ("name", "Company name", "string", "text"),
    ("domain", "Company Domain Name", "string", "text"),
    ("industry", "Industry", "enumeration", "select"),
    ("type", "Type", "enumeration", "select"),
    (
        "numberofemployees",
        "Number of Employees",
        "number",
        "number",
    ),
    ("annualrevenue", "Annual Revenue", "number", "number"),
    ("hs_parent_company_id", "Parent Company", "number", "number"),
    (
        "num_associated_contacts",
        "Number of Associated Contacts",
        "number",
        "number",
    ),
    (
        "hs_lastmodifieddate",
        "Last Modified Date",
        "datetime",
        "date",
    ),
    ("account_tier", "Account tier", "enumeration", "select"),
    ("at_risk", "At risk", "bool", "booleancheckbox"),
    ("at_risk_reason", "At-risk reason", "string", "text"),
];

const DEALS: &[Row] = &[
    ("dealname", "Deal Name", "string", "text"),
    ("amount", "Amount", "number", "number"),
    ("deal_currency_code", "Currency", "enumeration", "select"),
    ("dealstage", "Deal Stage", "enumeration", "radio"),
    ("pipeline", "Pipeline", "enumeration", "select"),
    ("closedate", "Close Date", "datetime", "date"),
    ("dealtype", "Deal Type", "enumeration", "radio"),
    ("description", "Deal Description", "string", "textarea"),
    (
        "hs_deal_stage_probability",
        "Deal probability",
        "number",
        "number",
    ),
    (
        "amount_in_home_currency",
        "Amount in company currency",
        "number",
        "number",
    ),
    ("hs_is_closed", "Is Deal Closed?", "bool", "booleancheckbox"),
    (
        "hs_lastmodifieddate",
        "Last Modified Date",
        "datetime",
        "date",
    ),
    ("renewal_date", "Renewal date", "date", "date"),
];

/// Values HubSpot keeps itself (`readOnlyValue`).
const READ_ONLY: &[&str] = &[
    "hs_object_id",
    "createdate",
    "lastmodifieddate",
    "hs_lastmodifieddate",
];

/// Values HubSpot computes from others (`calculated`, and so read-only too).
const CALCULATED: &[&str] = &[
    "hs_email_domain",
    "num_associated_contacts",
    "hs_deal_stage_probability",
    "amount_in_home_currency",
    "hs_is_closed",
];

/// The account's own properties beside the canonical id property (at_risk and
/// at_risk_reason: the flags config/examples/workflows/4-past-due-at-risk.yaml sets).
const CUSTOM: &[&str] = &[
    "customer_tier",
    "account_tier",
    "renewal_date",
    "at_risk",
    "at_risk_reason",
];

fn options(name: &str) -> &'static [(&'static str, &'static str)] {
    match name {
        "lifecyclestage" => LIFECYCLE_STAGES,
        "hs_lead_status" => LEAD_STATUSES,
        "industry" => INDUSTRIES,
        "type" => COMPANY_TYPES,
        "dealstage" => DEAL_STAGES,
        "pipeline" => PIPELINES,
        "dealtype" => DEAL_TYPES,
        "deal_currency_code" => CURRENCIES,
        "customer_tier" => CUSTOMER_TIERS,
        "account_tier" => ACCOUNT_TIERS,
        _ => &[],
    }
}

/// Every property `object` has in the simulated portal; `None` for an object type the
/// portal does not have. `canonical` is the custom unique property revsync upserts on.
pub(super) fn of(object: &str, canonical: &str) -> Option<Vec<Prop>> {
    let (group, owner, rows): (_, _, Vec<Row>) = match object {
        "contacts" => (
            "contactinformation",
            "Contact owner",
            [SHARED, CONTACTS].concat(),
        ),
        "companies" => (
            "companyinformation",
            "Company owner",
            [SHARED, COMPANIES].concat(),
        ),
        "deals" => ("dealinformation", "Deal owner", DEALS.to_vec()),
        _ => return None,
    };
    let common = [
        ("hubspot_owner_id", owner, "enumeration", "select"),
        ("hs_object_id", "Record ID", "number", "number"),
        ("createdate", "Create Date", "datetime", "date"),
        (canonical, "revsync canonical id", "string", "text"),
    ];
    let props = rows
        .into_iter()
        .chain(common)
        .map(|(name, label, ty, field_type)| {
            let calculated = CALCULATED.contains(&name);
            Prop {
                name: name.to_owned(),
                label,
                ty,
                field_type,
                group: if name == "hs_lead_status" {
                    "sales_properties"
                } else {
                    group
                },
                read_only: calculated || READ_ONLY.contains(&name),
                calculated,
                custom: name == canonical || CUSTOM.contains(&name),
                unique: name == canonical,
                // The owners of the portal, not a list of the property's own.
                external_options: name == "hubspot_owner_id",
                options: options(name),
            }
        })
        .collect();
    Some(props)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_property_the_connector_reads_is_defined() {
        for spec in crate::mapping::OBJECTS {
            let defined = of(spec.name, "revsync_id").unwrap();
            for p in spec.properties {
                assert!(
                    defined.iter().any(|d| d.name == *p),
                    "{}.{p} is read by the connector but not defined",
                    spec.name
                );
            }
        }
        assert!(of("tickets", "revsync_id").is_none());
    }

    #[test]
    fn custom_properties_carry_no_hubspot_defined() {
        let props = of("contacts", "revsync_id").unwrap();
        let tier = props.iter().find(|p| p.name == "customer_tier").unwrap();
        assert!(tier.json().get("hubspotDefined").is_none());
        let email = props.iter().find(|p| p.name == "email").unwrap();
        assert_eq!(email.json()["hubspotDefined"], true);
    }
}
