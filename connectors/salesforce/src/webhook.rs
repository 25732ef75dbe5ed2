//! Outbound Messages: Salesforce's SOAP `notifications()` calls, accepted as hints.
//!
//! They carry no signature, so authenticity rests on the `OrganizationId` matching the
//! configured org (plus, outside revsync, a client certificate or IP allow-list). Each
//! notification becomes a hint: the record is fetched through the API, so the message's
//! field selection and its out-of-order or repeated delivery never matter.
// This module parses what anyone on the internet can send: no arithmetic that can overflow.
#![deny(clippy::arithmetic_side_effects)]

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
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

/// Deepest nesting accepted. The envelope is six levels deep (Envelope, Body,
/// notifications, Notification, sObject, field); anything far deeper is not Salesforce.
const MAX_DEPTH: usize = 32;

/// Most elements one message may hold: 100 notifications (Salesforce's batch) of up to
/// ~1,000 selected fields each, with room to spare. Bounds the work an unauthenticated
/// POST can cause.
const MAX_ELEMENTS: usize = 200_000;

/// Where an open element sits, as far as reading a message cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Notifications,
    OrganizationId,
    Notification,
    NotificationId,
    SObject,
    SObjectId,
    Other,
}

impl Tag {
    /// The tag of an element named `name` (local name) opened inside `parent`.
    fn of(parent: Option<Tag>, name: &[u8]) -> Tag {
        match (parent, name) {
            (_, b"notifications") => Tag::Notifications,
            (Some(Tag::Notifications), b"OrganizationId") => Tag::OrganizationId,
            (Some(Tag::Notifications), b"Notification") => Tag::Notification,
            (Some(Tag::Notification), b"Id") => Tag::NotificationId,
            (Some(Tag::Notification), b"sObject") => Tag::SObject,
            (Some(Tag::SObject), b"Id") => Tag::SObjectId,
            _ => Tag::Other,
        }
    }

    /// Whether the element's text is read.
    fn keeps_text(self) -> bool {
        matches!(
            self,
            Tag::OrganizationId | Tag::NotificationId | Tag::SObjectId
        )
    }
}

/// One `Notification` as read so far: the first of each child wins.
#[derive(Debug, Default)]
struct Pending {
    id: Option<String>,
    sobject: bool,
    object: Option<String>,
    record: Option<String>,
}

/// Org ids are sent 18 characters long and often configured 15 long: the first 15 (the
/// case-sensitive id) decide.
fn same_org(a: &str, b: &str) -> bool {
    let short = |s: &str| s.chars().take(15).collect::<String>();
    a.len() >= 15 && b.len() >= 15 && short(a) == short(b)
}

/// At most 40 characters of a value the sender chose, for an error message: a reply or a
/// log line must not grow with what was posted.
fn shown(value: &str) -> String {
    let mut kept: String = value.chars().take(40).collect();
    if kept.len() < value.len() {
        kept.push('…');
    }
    kept
}

fn malformed(detail: impl Into<String>) -> WebhookError {
    WebhookError::Malformed(detail.into())
}

fn xml_error(e: impl std::fmt::Display) -> WebhookError {
    malformed(format!("invalid xml: {e}"))
}

/// The sObject's type from its `xsi:type` attribute, prefix dropped (`sf:Contact`).
fn sobject_type(tag: &BytesStart<'_>) -> Result<Option<String>, WebhookError> {
    let Some(attr) = tag.try_get_attribute("xsi:type").map_err(xml_error)? else {
        return Ok(None);
    };
    let value = attr
        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
        .map_err(xml_error)?;
    Ok(Some(local(&value).to_owned()))
}

fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

/// A finished `Notification` as the hint it asks for, or None for an object not synced.
fn event_of(n: Pending, objects: &[&str]) -> Result<Option<WebhookEvent>, WebhookError> {
    let id =
        n.id.filter(|s| !s.is_empty())
            .ok_or_else(|| malformed("a Notification without Id"))?;
    let named = shown(&id);
    if !n.sobject {
        return Err(malformed(format!("notification {named} without sObject")));
    }
    let object = n
        .object
        .ok_or_else(|| malformed(format!("notification {named}: sObject has no xsi:type")))?;
    let record = n
        .record
        .filter(|s| crate::mapping::is_id(s))
        .ok_or_else(|| malformed(format!("notification {named}: sObject without a valid Id")))?;
    // Another object's message is acknowledged and ignored: refusing it would only make
    // Salesforce re-send it for a day.
    let Some(object) = objects.iter().find(|o| **o == object) else {
        tracing::debug!(
            object,
            "outbound message for an object not synced; acknowledged"
        );
        return Ok(None);
    };
    Ok(Some(WebhookEvent {
        id,
        object: (*object).to_owned(),
        inbound: Inbound::Hint {
            external_id: record,
        },
    }))
}

/// Verify an Outbound Message and turn each notification into a hint for `objects`.
///
/// The body is read as a stream of events with a bounded stack (no recursion, no tree):
/// nesting and element count are capped, and the sender's `OrganizationId` is checked the
/// moment it is read, so a message for another org is refused before anything else of it
/// is looked at. The schema puts `OrganizationId` before the notifications.
pub fn verify(
    req: &WebhookRequest<'_>,
    organization_id: Option<&str>,
    objects: &[&str],
) -> Result<Vec<WebhookEvent>, WebhookError> {
    let expected = organization_id.ok_or_else(|| {
        WebhookError::BadSignature(
            "params.organization_id is not set: outbound messages cannot be checked".into(),
        )
    })?;
    let body = std::str::from_utf8(req.body).map_err(|_| malformed("body is not utf-8"))?;
    let mut reader = Reader::from_str(body);
    let mut message = Message {
        expected,
        objects,
        org_checked: false,
        seen_notifications: false,
        pending: None,
        events: Vec::new(),
    };
    let mut stack: Vec<Tag> = Vec::new();
    let mut elements: usize = 0;
    let mut text = String::new();
    loop {
        let event = reader.read_event().map_err(xml_error)?;
        let keeps_text = stack.last().is_some_and(|t| t.keeps_text());
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                elements = elements.saturating_add(1);
                if elements > MAX_ELEMENTS {
                    return Err(malformed(format!("more than {MAX_ELEMENTS} elements")));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(malformed(format!(
                        "nested deeper than {MAX_DEPTH} elements"
                    )));
                }
                let tag = Tag::of(stack.last().copied(), start.local_name().as_ref());
                message.open(tag, start)?;
                text.clear();
                if matches!(event, Event::Empty(_)) {
                    // `<Notification/>` and the like: opened and closed at once.
                    message.close(tag, "")?;
                } else {
                    stack.push(tag);
                }
            }
            Event::End(_) => {
                let tag = stack
                    .pop()
                    .ok_or_else(|| malformed("unbalanced closing tag"))?;
                message.close(tag, &text)?;
                text.clear();
            }
            Event::Text(t) if keeps_text => {
                text.push_str(&t.xml10_content().map_err(xml_error)?);
            }
            Event::CData(t) if keeps_text => {
                text.push_str(&t.decode().map_err(xml_error)?);
            }
            Event::GeneralRef(r) if keeps_text => match r.resolve_char_ref().map_err(xml_error)? {
                Some(c) => text.push(c),
                None => {
                    let name = r.decode().map_err(xml_error)?;
                    let resolved = quick_xml::escape::resolve_predefined_entity(&name)
                        .ok_or_else(|| malformed(format!("unknown entity `&{};`", shown(&name))))?;
                    text.push_str(resolved);
                }
            },
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(malformed("unclosed element"));
    }
    message.events()
}

/// What reading a message has found so far.
struct Message<'a> {
    expected: &'a str,
    objects: &'a [&'a str],
    org_checked: bool,
    seen_notifications: bool,
    pending: Option<Pending>,
    events: Vec<WebhookEvent>,
}

impl Message<'_> {
    /// Acts on an element that just opened.
    fn open(&mut self, tag: Tag, start: &BytesStart<'_>) -> Result<(), WebhookError> {
        match tag {
            Tag::Notifications => self.seen_notifications = true,
            Tag::Notification if !self.org_checked => {
                return Err(malformed("a Notification before the OrganizationId"));
            }
            Tag::Notification => self.pending = Some(Pending::default()),
            Tag::SObject => {
                if let Some(n) = self.pending.as_mut().filter(|n| !n.sobject) {
                    n.sobject = true;
                    n.object = sobject_type(start)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Acts on an element that just closed, with the text it held.
    fn close(&mut self, tag: Tag, text: &str) -> Result<(), WebhookError> {
        let text = text.trim();
        match tag {
            Tag::OrganizationId => {
                if !same_org(text, self.expected) {
                    return Err(WebhookError::BadSignature(format!(
                        "OrganizationId `{}` is not the configured org",
                        shown(text)
                    )));
                }
                self.org_checked = true;
            }
            Tag::NotificationId => {
                if let Some(n) = self.pending.as_mut().filter(|n| n.id.is_none()) {
                    n.id = Some(text.to_owned());
                }
            }
            Tag::SObjectId => {
                if let Some(n) = self.pending.as_mut().filter(|n| n.record.is_none()) {
                    n.record = Some(text.to_owned());
                }
            }
            Tag::Notification => {
                if let Some(n) = self.pending.take() {
                    self.events.extend(event_of(n, self.objects)?);
                }
            }
            Tag::Notifications | Tag::SObject | Tag::Other => {}
        }
        Ok(())
    }

    /// The hints of a message read to its end.
    fn events(self) -> Result<Vec<WebhookEvent>, WebhookError> {
        if !self.seen_notifications {
            return Err(malformed("no `notifications` element"));
        }
        if !self.org_checked {
            return Err(malformed("no `OrganizationId`"));
        }
        Ok(self.events)
    }
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

    /// 145,000 nested elements in 1 MB: once enough to overflow the stack and abort the
    /// daemon, before anyone checked who sent it.
    /// A message from the configured org with one Contact notification.
    fn one_contact() -> String {
        sample_message(
            ORG,
            &[("04l000000000001AAA", "Contact", "003000000000001AAA")],
        )
    }

    fn assert_malformed(body: &str, says: &str) {
        match verify(&req(body), Some(ORG), &["Contact"]) {
            Err(WebhookError::Malformed(m)) => assert!(m.contains(says), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deeply_nested_body_is_malformed_not_a_crash() {
        let body = format!("{}{}", "<a>".repeat(145_000), "</a>".repeat(145_000));
        assert_malformed(&body, "nested deeper");
        let flat = format!("<r>{}</r>", "<a/>".repeat(MAX_ELEMENTS));
        assert_malformed(&flat, "elements");
    }

    #[test]
    fn entities_numeric_and_named_decode() {
        let body = one_contact()
            .replace("00D000000000001AAA", "&#48;0D&#x30;00000000001AA&amp;")
            .replace(
                "<sf:Id>003000000000001AAA</sf:Id>",
                "<sf:Id>&#x30;03000000000001AAA</sf:Id>",
            );
        // The org id decodes to `00D000000000001AA&`: its first 15 characters decide.
        let events = verify(&req(&body), Some(ORG), &["Contact"]).unwrap();
        assert_eq!(
            events[0].inbound,
            Inbound::Hint {
                external_id: "003000000000001AAA".into()
            }
        );
        let unknown = sample_message(ORG, &[]).replace("<ActionId>", "<ActionId>&bogus;");
        // Outside the elements read, an entity is not looked at.
        assert!(verify(&req(&unknown), Some(ORG), &["Contact"]).is_ok());
        let in_id = sample_message(ORG, &[]).replace("00D000000000001AAA", "&bogus;");
        assert_malformed(&in_id, "entity");
    }

    #[test]
    fn a_foreign_org_is_refused_before_its_notifications_are_read() {
        // Notifications this broken would be Malformed if anything looked at them.
        let body = sample_message("00D000000000009AAA", &[]).replace(
            "</notifications>",
            "<Notification><sObject/></Notification></notifications>",
        );
        assert!(matches!(
            verify(&req(&body), Some(ORG), &["Contact"]),
            Err(WebhookError::BadSignature(_))
        ));
        // What the sender wrote is echoed only in part.
        let long = sample_message(&"9".repeat(100_000), &[]);
        match verify(&req(&long), Some(ORG), &["Contact"]) {
            Err(WebhookError::BadSignature(m)) => assert!(m.len() < 200, "{} bytes", m.len()),
            other => panic!("{other:?}"),
        }
        // The schema puts OrganizationId first; a message that does not is not trusted.
        let reordered = one_contact()
            .replace("<OrganizationId>00D000000000001AAA</OrganizationId>", "")
            .replace(
                "</notifications>",
                "<OrganizationId>00D000000000001AAA</OrganizationId></notifications>",
            );
        assert_malformed(&reordered, "before the OrganizationId");
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
