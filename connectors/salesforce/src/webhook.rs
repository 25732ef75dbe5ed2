//! Outbound Messages: Salesforce's SOAP `notifications()` calls, accepted as hints.
//!
//! They carry no signature, so authenticity rests on the `OrganizationId` matching the
//! configured org (plus, outside revsync, a client certificate or IP allow-list). Each
//! notification becomes a hint: the record is fetched through the API, so the message's
//! field selection and its out-of-order or repeated delivery never matter.

use revsync_sdk::{Inbound, WebhookError, WebhookEvent, WebhookRequest};

/// The answer an Outbound Message expects; without `<Ack>true</Ack>` Salesforce re-sends
/// for up to 24 hours.
pub const ACK_BODY: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
    r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">"#,
    r#"<soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">"#,
    r#"<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"#
);

pub const ACK_CONTENT_TYPE: &str = "text/xml; charset=utf-8";

/// An element of the message: local name (prefix dropped), `xsi:type`, text, children.
#[derive(Debug, Default)]
struct Element {
    name: String,
    xsi_type: Option<String>,
    text: String,
    children: Vec<Element>,
}

impl Element {
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    fn find(&self, name: &str) -> Option<&Element> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }
}

fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The `xsi:type` attribute's value, if the tag has one.
fn xsi_type(tag: &str) -> Option<String> {
    let at = tag.find("xsi:type=")? + "xsi:type=".len();
    let rest = &tag[at..];
    let quote = rest.chars().next().filter(|q| *q == '"' || *q == '\'')?;
    let end = rest[1..].find(quote)?;
    Some(rest[1..1 + end].to_owned())
}

/// A small, strict XML reader: enough for the SOAP envelope Salesforce sends (elements,
/// attributes, text, declarations, comments), and an error for anything unbalanced.
fn parse_xml(body: &str) -> Result<Element, String> {
    let mut stack: Vec<Element> = vec![Element::default()];
    let mut rest = body;
    while let Some(open) = rest.find('<') {
        let text = &rest[..open];
        if let Some(top) = stack.last_mut() {
            top.text.push_str(&unescape(text));
        }
        rest = &rest[open..];
        if let Some(after) = rest.strip_prefix("<!--") {
            let end = after.find("-->").ok_or("unterminated comment")?;
            rest = &after[end + 3..];
            continue;
        }
        if rest.starts_with("<?") || rest.starts_with("<!") {
            let end = rest.find('>').ok_or("unterminated declaration")?;
            rest = &rest[end + 1..];
            continue;
        }
        let end = rest.find('>').ok_or("unterminated tag")?;
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let done = stack.pop().ok_or("unbalanced closing tag")?;
            if done.name != local(name.trim()) || stack.is_empty() {
                return Err(format!(
                    "closing `{}` does not match `{}`",
                    name.trim(),
                    done.name
                ));
            }
            if let Some(parent) = stack.last_mut() {
                parent.children.push(done);
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let name = tag.split_whitespace().next().ok_or("empty tag")?;
        let el = Element {
            name: local(name).to_owned(),
            xsi_type: xsi_type(tag),
            ..Element::default()
        };
        if self_closing {
            stack.last_mut().ok_or("no parent")?.children.push(el);
        } else {
            stack.push(el);
        }
    }
    if stack.len() != 1 {
        return Err("unclosed element".into());
    }
    let root = stack.pop().ok_or("empty document")?;
    if root.children.is_empty() {
        return Err("no element".into());
    }
    Ok(root)
}

/// Org ids are sent 18 characters long and often configured 15 long: the first 15 (the
/// case-sensitive id) decide.
fn same_org(a: &str, b: &str) -> bool {
    let short = |s: &str| s.chars().take(15).collect::<String>();
    a.len() >= 15 && b.len() >= 15 && short(a) == short(b)
}

/// Verify an Outbound Message and turn each notification into a hint for `objects`.
pub fn verify(
    req: &WebhookRequest<'_>,
    organization_id: Option<&str>,
    objects: &[&str],
) -> Result<Vec<WebhookEvent>, WebhookError> {
    let body = std::str::from_utf8(req.body)
        .map_err(|_| WebhookError::Malformed("body is not utf-8".into()))?;
    let root = parse_xml(body).map_err(WebhookError::Malformed)?;
    let notifications = root
        .find("notifications")
        .ok_or_else(|| WebhookError::Malformed("no `notifications` element".into()))?;
    let org = notifications
        .child("OrganizationId")
        .map(|e| e.text.trim())
        .ok_or_else(|| WebhookError::Malformed("no `OrganizationId`".into()))?;
    let expected = organization_id.ok_or_else(|| {
        WebhookError::BadSignature(
            "params.organization_id is not set: outbound messages cannot be checked".into(),
        )
    })?;
    if !same_org(org, expected) {
        return Err(WebhookError::BadSignature(format!(
            "OrganizationId `{org}` is not the configured org"
        )));
    }
    let mut events = Vec::new();
    for n in notifications
        .children
        .iter()
        .filter(|c| c.name == "Notification")
    {
        let id = n
            .child("Id")
            .map(|e| e.text.trim().to_owned())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| WebhookError::Malformed("a Notification without Id".into()))?;
        let sobject = n
            .child("sObject")
            .ok_or_else(|| WebhookError::Malformed(format!("notification {id} without sObject")))?;
        let object = sobject.xsi_type.as_deref().map(local).ok_or_else(|| {
            WebhookError::Malformed(format!("notification {id}: sObject has no xsi:type"))
        })?;
        let record = sobject
            .child("Id")
            .map(|e| e.text.trim().to_owned())
            .filter(|s| crate::mapping::is_id(s))
            .ok_or_else(|| {
                WebhookError::Malformed(format!("notification {id}: sObject without a valid Id"))
            })?;
        // Another object's message is acknowledged and ignored: refusing it would only
        // make Salesforce re-send it for a day.
        if let Some(object) = objects.iter().find(|o| **o == object) {
            events.push(WebhookEvent {
                id,
                object: (*object).to_owned(),
                inbound: Inbound::Hint {
                    external_id: record,
                },
            });
        } else {
            tracing::debug!(
                object,
                "outbound message for an object not synced; acknowledged"
            );
        }
    }
    Ok(events)
}

/// An Outbound Message as Salesforce sends it (for the simulator and tests).
pub fn sample_message(org: &str, items: &[(&str, &str, &str)]) -> String {
    let notes: String = items
        .iter()
        .map(|(nid, object, id)| {
            format!(
                "<Notification><Id>{nid}</Id><sObject xsi:type=\"sf:{object}\" xmlns:sf=\"urn:sobject.enterprise.soap.sforce.com\"><sf:Id>{id}</sf:Id></sObject></Notification>"
            )
        })
        .collect();
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">"#,
            r#"<soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound">"#,
            "<OrganizationId>{org}</OrganizationId><ActionId>04k000000000001AAA</ActionId>",
            r#"<SessionId xsi:nil="true"/>"#,
            "<EnterpriseUrl>https://example.my.salesforce.com/services/Soap/c/66.0/00D</EnterpriseUrl>",
            "<PartnerUrl>https://example.my.salesforce.com/services/Soap/u/66.0/00D</PartnerUrl>",
            "{notes}</notifications></soapenv:Body></soapenv:Envelope>"
        ),
        org = org,
        notes = notes
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORG: &str = "00D000000000001AAA";

    fn req(body: &str) -> WebhookRequest<'_> {
        WebhookRequest {
            method: "POST",
            uri: "http://127.0.0.1/webhooks/sf",
            headers: &[],
            body: body.as_bytes(),
            received_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn notifications_become_hints() {
        let body = sample_message(
            ORG,
            &[
                ("04l000000000001AAA", "Contact", "003000000000001AAA"),
                ("04l000000000002AAA", "Task", "00T000000000001AAA"),
            ],
        );
        let events = verify(&req(&body), Some("00D000000000001"), &["Contact"]).unwrap();
        assert_eq!(events.len(), 1, "the Task is acknowledged, not synced");
        assert_eq!(events[0].id, "04l000000000001AAA");
        assert_eq!(events[0].object, "Contact");
        assert_eq!(
            events[0].inbound,
            Inbound::Hint {
                external_id: "003000000000001AAA".into()
            }
        );
    }

    #[test]
    fn another_org_or_no_configured_org_is_refused() {
        let body = sample_message("00D000000000009AAA", &[]);
        assert!(matches!(
            verify(&req(&body), Some(ORG), &["Contact"]),
            Err(WebhookError::BadSignature(_))
        ));
        assert!(matches!(
            verify(&req(&body), None, &["Contact"]),
            Err(WebhookError::BadSignature(_))
        ));
    }

    #[test]
    fn broken_xml_is_malformed() {
        for body in [
            "",
            "not xml",
            "<a><b></a>",
            "<notifications><OrganizationId>x",
        ] {
            assert!(
                matches!(
                    verify(&req(body), Some(ORG), &["Contact"]),
                    Err(WebhookError::Malformed(_))
                ),
                "{body:?}"
            );
        }
    }
}
