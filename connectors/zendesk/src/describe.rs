//! `revsync discover` for Zendesk: the built-in attributes of users, organizations and
//! tickets as Zendesk documents them (its API describes only custom fields), plus the
//! account's custom fields read from `/user_fields`, `/organization_fields` and
//! `/ticket_fields`.
//!
//! Every name is one a mapping can use: custom user and organization fields by the dotted
//! path into their object (`user_fields.plan`), custom ticket fields by id
//! (`custom_fields.360012`, which `mapping::ticket` offers beside the list).

use reqwest::Method;
use revsync_sdk::{ConnectorError, FieldSchema, ObjectSchema};
use serde_json::Value;

use crate::client::malformed;
use crate::mapping::TICKET_CUSTOM;
use crate::{permanent, ZendeskConnector};

/// Definitions per page: the most Zendesk's cursor pagination serves.
const FIELD_PAGE: usize = 100;
/// Pages followed before giving up: 10,000 definitions is far past what any account has,
/// and a server whose cursor never ends must not keep discover running.
const MAX_FIELD_PAGES: usize = 100;

/// The objects this connector describes.
const OBJECTS: &[&str] = &["users", "organizations", "tickets"];

/// Ticket field types Zendesk defines itself; the others are the account's.
pub fn is_system_ticket_type(ty: &str) -> bool {
    matches!(
        ty,
        "subject"
            | "description"
            | "status"
            | "custom_status"
            | "tickettype"
            | "priority"
            | "basic_priority"
            | "group"
            | "assignee"
    )
}

fn f(name: &str, label: &str, ty: &str) -> FieldSchema {
    FieldSchema::new(name, label, ty)
}

/// What revsync keeps in `external_id`: its canonical id, set on every create, so a
/// mapping must not write it.
fn external_id() -> FieldSchema {
    f("external_id", "External ID", "string").read_only()
}

fn timestamps() -> [FieldSchema; 2] {
    [
        f("created_at", "Created", "date").read_only(),
        f("updated_at", "Updated", "date").read_only(),
    ]
}

/// The documented built-in attributes of `object`, `None` for an object Zendesk (as this
/// connector reads it) does not have.
pub fn builtin(object: &str) -> Option<ObjectSchema> {
    let (label, fields) = match object {
        "users" => (
            "Users",
            vec![
                f("id", "ID", "integer").read_only(),
                // RecordInvalid without it (ConnectorType::required_for_create says so too).
                f("name", "Name", "string").required(),
                f("email", "Email", "string"),
                f("phone", "Phone", "string"),
                f("role", "Role", "string").options(["end-user", "agent", "admin"]),
                f("organization_id", "Organization", "integer").references(["organizations"]),
                external_id(),
                f("alias", "Alias", "string"),
                f("details", "Details", "string"),
                f("notes", "Notes", "string"),
                f("time_zone", "Time zone", "string"),
                f("locale", "Locale", "string"),
                f("verified", "Verified", "boolean"),
                f("suspended", "Suspended", "boolean"),
                // Deletion deactivates; revsync reads `active: false` as deleted.
                f("active", "Active", "boolean").read_only(),
                f("tags", "Tags", "array"),
                f("last_login_at", "Last login", "date").read_only(),
            ],
        ),
        "organizations" => (
            "Organizations",
            vec![
                f("id", "ID", "integer").read_only(),
                f("name", "Name", "string").required(),
                f("domain_names", "Domains", "array"),
                external_id(),
                f("details", "Details", "string"),
                f("notes", "Notes", "string"),
                f("group_id", "Group", "integer"),
                f("shared_tickets", "Shared tickets", "boolean"),
                f("shared_comments", "Shared comments", "boolean"),
                f("tags", "Tags", "array"),
                f("deleted_at", "Deleted", "date").read_only(),
            ],
        ),
        "tickets" => (
            "Tickets",
            vec![
                f("id", "ID", "integer").read_only(),
                f("subject", "Subject", "string"),
                // The first comment, set through `comment` on create and fixed after.
                f("description", "Description", "string").read_only(),
                f("comment.body", "Comment", "string").required(),
                f("comment.public", "Public comment", "boolean"),
                f("status", "Status", "string")
                    .options(["new", "open", "pending", "hold", "solved", "closed"]),
                f("priority", "Priority", "string").options(["low", "normal", "high", "urgent"]),
                f("type", "Type", "string").options(["problem", "incident", "question", "task"]),
                f("requester_id", "Requester", "integer").references(["users"]),
                f("submitter_id", "Submitter", "integer").references(["users"]),
                f("assignee_id", "Assignee", "integer"),
                f("organization_id", "Organization", "integer").references(["organizations"]),
                f("group_id", "Group", "integer"),
                external_id(),
                f("tags", "Tags", "array"),
                f("due_at", "Due", "date"),
                // From the ticket's metric set, which the export side-loads.
                f("solved_at", "Solved", "date").read_only(),
            ],
        ),
        _ => return None,
    };
    let mut fields = fields;
    fields.extend(timestamps());
    Some(ObjectSchema {
        name: object.to_owned(),
        label: Some(label.to_owned()),
        fields,
    })
}

/// The definitions list an object's custom fields come from.
fn definitions_of(object: &str) -> Option<&'static str> {
    match object {
        "users" => Some("user_fields"),
        "organizations" => Some("organization_fields"),
        "tickets" => Some("ticket_fields"),
        _ => None,
    }
}

/// Zendesk's `relationship_target_type` of a lookup field as this connector's object.
fn lookup_target(def: &Value) -> Option<&'static str> {
    match def.get("relationship_target_type")?.as_str()? {
        "zen:user" => Some("users"),
        "zen:organization" => Some("organizations"),
        "zen:ticket" => Some("tickets"),
        _ => None,
    }
}

/// The account's active custom fields among `defs` (a page's entries of `list`).
pub fn custom_fields(list: &str, defs: &[Value]) -> Vec<FieldSchema> {
    defs.iter()
        .filter(|d| d.get("active").and_then(Value::as_bool) != Some(false))
        .filter_map(|d| {
            let ty = d.get("type").and_then(Value::as_str).unwrap_or("text");
            let name = if list == "ticket_fields" {
                if is_system_ticket_type(ty) {
                    return None;
                }
                format!("{TICKET_CUSTOM}{}", crate::mapping::id_text(d.get("id")?)?)
            } else {
                let key = d.get("key").and_then(Value::as_str)?;
                format!("{list}.{key}")
            };
            let label = d
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or(&name)
                .to_owned();
            let options = d
                .get("custom_field_options")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|o| o.get("value").and_then(Value::as_str));
            let mut field = FieldSchema::new(name, label, ty).custom().options(options);
            field.required = d.get("required").and_then(Value::as_bool) == Some(true);
            if let Some(target) = lookup_target(d) {
                field = field.references([target]);
            }
            Some(field)
        })
        .collect()
}

/// Where the next page of a definitions list is: a cursor answer says `meta.has_more`;
/// an answer in the offset style (a server that ignored `page[size]`) says `next_page`.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    After(String),
    Page(u64),
    Done,
}

fn next_page(v: &Value, page: u64) -> Next {
    if let Some(meta) = v.get("meta") {
        return match (
            meta.get("has_more").and_then(Value::as_bool),
            meta.get("after_cursor").and_then(Value::as_str),
        ) {
            (Some(true), Some(c)) if !c.is_empty() => Next::After(c.to_owned()),
            _ => Next::Done,
        };
    }
    match v.get("next_page") {
        // The page number, not the URL: following a URL from an answer would send our
        // credentials wherever it points.
        Some(Value::String(_)) => Next::Page(page.saturating_add(1)),
        _ => Next::Done,
    }
}

impl ZendeskConnector {
    /// Every definition of `list`, page by page.
    async fn definitions(&self, list: &str) -> Result<Vec<Value>, ConnectorError> {
        let mut out = Vec::new();
        let mut at = Next::Page(1);
        for _ in 0..MAX_FIELD_PAGES {
            let mut req = self.client.request(Method::GET, list);
            req = match &at {
                Next::After(c) => req
                    .with_query("page[size]", FIELD_PAGE.to_string())
                    .with_query("page[after]", c.clone()),
                Next::Page(1) => req.with_query("page[size]", FIELD_PAGE.to_string()),
                Next::Page(n) => req
                    .with_query("page", n.to_string())
                    .with_query("per_page", FIELD_PAGE.to_string()),
                Next::Done => return Ok(out),
            };
            let v = self.client.json(req).await?;
            let defs = v
                .get(list)
                .and_then(Value::as_array)
                .ok_or_else(|| malformed(&format!("answer without `{list}`")))?;
            out.extend(defs.iter().cloned());
            let page = match at {
                Next::Page(n) => n,
                _ => 1,
            };
            at = next_page(&v, page);
            if at == Next::Done {
                return Ok(out);
            }
        }
        Err(permanent(format!(
            "zendesk `{list}` has more than {MAX_FIELD_PAGES} pages of {FIELD_PAGE}; stopped reading"
        )))
    }

    /// The built-in fields of `object` and the account's custom ones.
    pub(crate) async fn describe_object(
        &self,
        object: &str,
    ) -> Result<ObjectSchema, ConnectorError> {
        let (Some(mut schema), Some(list)) = (builtin(object), definitions_of(object)) else {
            return Err(permanent(format!(
                "zendesk has no object `{object}` to describe; its objects: {}",
                OBJECTS.join(", ")
            )));
        };
        let defs = self.definitions(list).await?;
        schema.fields.extend(custom_fields(list, &defs));
        Ok(schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_object_has_its_required_and_read_only_fields() {
        for object in OBJECTS {
            let s = builtin(object).unwrap();
            assert!(s.fields.iter().any(|f| f.name == "id" && f.read_only));
            assert!(s.fields.iter().any(|f| f.required), "{object}");
            assert!(definitions_of(object).is_some());
        }
        assert!(builtin("groups").is_none());
    }

    #[test]
    fn inactive_and_system_definitions_are_left_out() {
        let defs = [
            json!({"id": 1, "type": "subject", "title": "Subject", "active": true}),
            json!({"id": 2, "type": "tagger", "title": "Product", "active": true, "required": true,
                "custom_field_options": [{"id": 7, "name": "A", "value": "product_a"}]}),
            json!({"id": 3, "type": "text", "title": "Old", "active": false}),
            json!({"id": 4, "type": "lookup", "title": "Owner", "active": true,
                "relationship_target_type": "zen:user"}),
        ];
        let fields = custom_fields("ticket_fields", &defs);
        let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["custom_fields.2", "custom_fields.4"]);
        assert!(fields[0].required && fields[0].custom);
        assert_eq!(fields[0].options, ["product_a"]);
        assert_eq!(fields[1].references, ["users"]);
    }

    #[test]
    fn pages_follow_the_cursor_or_the_offset_and_stop() {
        let cursor = json!({"meta": {"has_more": true, "after_cursor": "abc"}});
        assert_eq!(next_page(&cursor, 1), Next::After("abc".into()));
        let last = json!({"meta": {"has_more": false, "after_cursor": "abc"}});
        assert_eq!(next_page(&last, 1), Next::Done);
        let offset =
            json!({"next_page": "https://elsewhere.example/api/v2/user_fields.json?page=3"});
        assert_eq!(next_page(&offset, 2), Next::Page(3));
        assert_eq!(next_page(&json!({"next_page": null}), 2), Next::Done);
    }
}
