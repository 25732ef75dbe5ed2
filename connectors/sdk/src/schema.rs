//! The documented well-known fields of each canonical kind (MODEL.md).
//! Fields not listed here pass through the mapping as `custom.<name>`.

use crate::model::{FieldDef, FieldType as T, Kind};

const LIFECYCLE: &[&str] = &[
    "subscriber",
    "lead",
    "mql",
    "sql",
    "opportunity",
    "customer",
    "evangelist",
    "other",
];
const DEAL_STAGE: &[&str] = &[
    "prospecting",
    "qualification",
    "discovery",
    "proposal",
    "negotiation",
    "closed_won",
    "closed_lost",
];
const DEAL_STATUS: &[&str] = &["open", "won", "lost"];
const DEAL_TYPE: &[&str] = &["new", "expansion", "renewal"];
const FORECAST: &[&str] = &["pipeline", "best_case", "commit", "closed", "omitted"];
const TICKET_STATUS: &[&str] = &["new", "open", "pending", "on_hold", "solved", "closed"];
const TICKET_PRIORITY: &[&str] = &["low", "normal", "high", "urgent"];
const SUB_STATUS: &[&str] = &[
    "trialing",
    "active",
    "past_due",
    "paused",
    "canceled",
    "incomplete",
    "unpaid",
];
const INTERVAL: &[&str] = &["day", "week", "month", "year"];
const INVOICE_STATUS: &[&str] = &["draft", "open", "paid", "uncollectible", "void"];

const fn f(name: &'static str, ty: T, doc: &'static str) -> FieldDef {
    FieldDef { name, ty, doc }
}

const PERSON: &[FieldDef] = &[
    f("email", T::Email, "primary email, trimmed and lowercased"),
    f(
        "email_valid",
        T::Bool,
        "false when the email is not a plausible address",
    ),
    f(
        "billing_email",
        T::Email,
        "the address invoices go to (a billing system's own; never an identity owner)",
    ),
    f("first_name", T::Text, "given name"),
    f("last_name", T::Text, "family name"),
    f("phone", T::Phone, "E.164 where parseable"),
    f("phone_raw", T::Text, "the phone as the source wrote it"),
    f("title", T::Text, "job title"),
    f(
        "lifecycle_stage",
        T::Enum(LIFECYCLE),
        "marketing lifecycle stage",
    ),
    f("lead_status", T::Text, "lead status in the sales system"),
    f("owner", T::Text, "owning user"),
    f(
        "organization",
        T::Relation(Some(Kind::Organization)),
        "employer",
    ),
    f("country", T::Country, "ISO 3166-1 alpha-2"),
    f("city", T::Text, "city"),
    f("source", T::Text, "original source"),
];

const ORGANIZATION: &[FieldDef] = &[
    f("name", T::Text, "company name"),
    f(
        "domain",
        T::Domain,
        "primary bare domain, the best company match key",
    ),
    f("domains", T::TextList, "every known domain"),
    f("website", T::Url, "website URL"),
    f("industry", T::Text, "industry"),
    f("employee_count", T::Int, "number of employees"),
    f("annual_revenue", T::Money, "annual revenue"),
    f("address", T::Text, "street address"),
    f("country", T::Country, "ISO 3166-1 alpha-2"),
    f("city", T::Text, "city"),
    f("owner", T::Text, "owning user"),
    f(
        "parent",
        T::Relation(Some(Kind::Organization)),
        "parent company",
    ),
];

const DEAL: &[FieldDef] = &[
    f("name", T::Text, "deal name"),
    f("amount", T::Money, "amount with currency"),
    f("stage", T::Enum(DEAL_STAGE), "canonical pipeline stage"),
    f("pipeline", T::Text, "pipeline name"),
    f("probability", T::Percent, "win probability, 0 to 100"),
    f("close_date", T::Date, "expected or actual close date"),
    f("status", T::Enum(DEAL_STATUS), "open, won or lost"),
    f("forecast_category", T::Enum(FORECAST), "forecast category"),
    f(
        "type",
        T::Enum(DEAL_TYPE),
        "new business, expansion or renewal",
    ),
    f(
        "organization",
        T::Relation(Some(Kind::Organization)),
        "account",
    ),
    f("person", T::Relation(Some(Kind::Person)), "primary contact"),
    f("owner", T::Text, "owning user"),
    f("created_at", T::Time, "when the deal was created"),
    f("closed_at", T::Time, "when the deal was closed"),
];

const TICKET: &[FieldDef] = &[
    f("subject", T::Text, "subject line"),
    f("status", T::Enum(TICKET_STATUS), "ticket status"),
    f("priority", T::Enum(TICKET_PRIORITY), "priority"),
    f("channel", T::Text, "channel it arrived through"),
    f("requester", T::Relation(Some(Kind::Person)), "who asked"),
    f(
        "organization",
        T::Relation(Some(Kind::Organization)),
        "requester's organization",
    ),
    f("assignee", T::Text, "assigned agent"),
    f("created_at", T::Time, "created"),
    f("updated_at", T::Time, "last updated"),
    f("solved_at", T::Time, "solved"),
    f("first_response_at", T::Time, "first agent response"),
];

const SUBSCRIPTION: &[FieldDef] = &[
    f("status", T::Enum(SUB_STATUS), "subscription status"),
    f("plan", T::Text, "plan or price name"),
    f("interval", T::Enum(INTERVAL), "billing interval"),
    f("interval_count", T::Int, "intervals per billing period"),
    f("quantity", T::Int, "seats or units"),
    f(
        "mrr",
        T::Money,
        "monthly recurring revenue, computed (MODEL.md rule)",
    ),
    f("currency", T::Text, "ISO 4217"),
    f("started_at", T::Time, "start"),
    f("trial_end", T::Time, "end of trial"),
    f("cancel_at", T::Time, "scheduled cancellation"),
    f("canceled_at", T::Time, "when it was canceled"),
    f("ended_at", T::Time, "when it ended"),
    f(
        "customer",
        T::Relation(None),
        "paying organization or person",
    ),
];

const INVOICE: &[FieldDef] = &[
    f("number", T::Text, "invoice number"),
    f("status", T::Enum(INVOICE_STATUS), "invoice status"),
    f("amount_due", T::Money, "amount due"),
    f("amount_paid", T::Money, "amount paid"),
    f("issued_at", T::Time, "issued"),
    f("due_at", T::Time, "due"),
    f("paid_at", T::Time, "paid"),
    f(
        "subscription",
        T::Relation(Some(Kind::Subscription)),
        "subscription billed",
    ),
    f(
        "customer",
        T::Relation(None),
        "billed organization or person",
    ),
];

const ACTIVITY: &[FieldDef] = &[
    f(
        "type",
        T::Text,
        "form_submission, webinar_registered, webinar_attended, email_opened, meeting, call, ...",
    ),
    f("occurred_at", T::Time, "when it happened"),
    f("person", T::Relation(Some(Kind::Person)), "who"),
    f(
        "organization",
        T::Relation(Some(Kind::Organization)),
        "their organization",
    ),
    f("properties", T::Json, "what the source recorded about it"),
];

pub fn fields(kind: Kind) -> &'static [FieldDef] {
    match kind {
        Kind::Person => PERSON,
        Kind::Organization => ORGANIZATION,
        Kind::Deal => DEAL,
        Kind::Ticket => TICKET,
        Kind::Subscription => SUBSCRIPTION,
        Kind::Invoice => INVOICE,
        Kind::Activity => ACTIVITY,
    }
}
