//! The platform's records, their JSON, and the checks a create or an update passes.

use serde_json::{json, Map, Value};

use super::rfc3339;

#[derive(Debug, Clone)]
pub(super) struct Webinar {
    pub n: u64,
    pub title: String,
    pub starts_at: i64,
    pub duration_minutes: u32,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Webinar {
    pub fn json(&self) -> Value {
        json!({
            "id": webinar_id(self.n),
            "title": self.title,
            "starts_at": rfc3339(self.starts_at),
            "duration_minutes": self.duration_minutes,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
        })
    }
}

#[derive(Debug, Clone)]
pub(super) struct Registrant {
    pub n: u64,
    pub webinar: u64,
    /// Trimmed and lower-cased, as the platform keeps it.
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub company: Option<String>,
    pub job_title: Option<String>,
    pub registered_at: i64,
    pub attended: bool,
    pub updated_at: i64,
}

impl Registrant {
    pub fn json(&self) -> Value {
        json!({
            "id": registrant_id(self.n),
            "webinar_id": webinar_id(self.webinar),
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "company": self.company,
            "job_title": self.job_title,
            "registered_at": rfc3339(self.registered_at),
            "attended": self.attended,
            "updated_at": rfc3339(self.updated_at),
        })
    }

    pub fn apply(&mut self, c: Changes) {
        if let Some(v) = c.first_name {
            self.first_name = v;
        }
        if let Some(v) = c.last_name {
            self.last_name = v;
        }
        if let Some(v) = c.company {
            self.company = v;
        }
        if let Some(v) = c.job_title {
            self.job_title = v;
        }
        if let Some(v) = c.attended {
            self.attended = v;
        }
    }

    /// The attendance row: minutes and join time follow from the registrant's number, so
    /// they stay put across reads, and an attendee never stays longer than the webinar.
    pub fn attendance(&self, webinar: Option<&Webinar>) -> Value {
        let (minutes, joined_at) = match webinar.filter(|_| self.attended) {
            Some(w) => {
                let late = (self.n % 7) as i64;
                let length = u64::from(w.duration_minutes.max(1));
                let minutes = length - (self.n * 13) % length.div_ceil(2);
                (minutes, Some(rfc3339(w.starts_at + late * 60)))
            }
            None => (0, None),
        };
        json!({
            "registrant_id": registrant_id(self.n),
            "webinar_id": webinar_id(self.webinar),
            "attended": self.attended,
            "minutes": minutes,
            "joined_at": joined_at,
        })
    }
}

pub(super) fn webinar_id(n: u64) -> String {
    format!("web_{n}")
}

pub(super) fn registrant_id(n: u64) -> String {
    format!("reg_{n}")
}

/// Fields a create or an update sets; `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default)]
pub(super) struct Changes {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<Option<String>>,
    pub job_title: Option<Option<String>>,
    pub attended: Option<bool>,
}

/// A refused field: (field, message), answered as a 422.
pub(super) type Refused = (String, String);

const CREATE_FIELDS: [&str; 5] = ["email", "first_name", "last_name", "company", "job_title"];
const PATCH_FIELDS: [&str; 5] = [
    "first_name",
    "last_name",
    "company",
    "job_title",
    "attended",
];

/// The body of `POST /v1/webinars/{id}/registrants`.
pub(super) fn create(body: &Map<String, Value>) -> Result<Changes, Refused> {
    known(body, &CREATE_FIELDS)?;
    let email = match body.get("email") {
        None | Some(Value::Null) => return Err(refused("email", "email is required")),
        Some(v) => text(v, "email")?,
    };
    if !plausible_email(&email) {
        return Err(refused(
            "email",
            &format!("`{}` is not an email address", email.trim()),
        ));
    }
    for field in ["first_name", "last_name"] {
        if !body.contains_key(field) {
            return Err(refused(field, &format!("{field} is required")));
        }
    }
    let mut c = fields(body)?;
    c.email = Some(email);
    Ok(c)
}

/// The body of `PATCH /v1/registrants/{id}`.
pub(super) fn patch(body: &Map<String, Value>) -> Result<Changes, Refused> {
    known(body, &PATCH_FIELDS)?;
    fields(body)
}

fn known(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), Refused> {
    match body.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(refused(
            k,
            &format!(
                "`{k}` is not a writable field (writable: {})",
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// The writable fields present in `body`, each of the right type.
fn fields(body: &Map<String, Value>) -> Result<Changes, Refused> {
    let mut c = Changes::default();
    if let Some(v) = body.get("first_name") {
        c.first_name = Some(name(v, "first_name")?);
    }
    if let Some(v) = body.get("last_name") {
        c.last_name = Some(name(v, "last_name")?);
    }
    if let Some(v) = body.get("company") {
        c.company = Some(nullable(v, "company")?);
    }
    if let Some(v) = body.get("job_title") {
        c.job_title = Some(nullable(v, "job_title")?);
    }
    match body.get("attended") {
        None => {}
        Some(Value::Bool(b)) => c.attended = Some(*b),
        Some(_) => return Err(refused("attended", "attended must be true or false")),
    }
    Ok(c)
}

fn refused(field: &str, message: &str) -> Refused {
    (field.to_owned(), message.to_owned())
}

fn text(v: &Value, field: &str) -> Result<String, Refused> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| refused(field, &format!("{field} must be a string")))
}

/// A person's name: a string with something in it, kept without surrounding spaces.
fn name(v: &Value, field: &str) -> Result<String, Refused> {
    let t = text(v, field)?;
    if t.trim().is_empty() {
        return Err(refused(field, &format!("{field} must not be blank")));
    }
    Ok(t.trim().to_owned())
}

/// A string, or null (a blank string clears it too, as the platform's form does).
fn nullable(v: &Value, field: &str) -> Result<Option<String>, Refused> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.trim().to_owned())),
        _ => Err(refused(field, &format!("{field} must be a string or null"))),
    }
}

/// The platform's own check, no more: one `@` with something on each side, no spaces.
fn plausible_email(email: &str) -> bool {
    let e = email.trim();
    match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !e.contains(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn a_create_needs_an_email_first_then_names_and_refuses_unknown_fields() {
        let missing = create(&obj(json!({"first_name": "Ada", "last_name": "L"})));
        assert_eq!(missing.unwrap_err().0, "email");
        let bad = create(&obj(
            json!({"email": "ada at x", "first_name": "Ada", "last_name": "L"}),
        ));
        assert_eq!(bad.unwrap_err().0, "email");
        let no_last = create(&obj(json!({"email": "a@x.example", "first_name": "Ada"})));
        assert_eq!(no_last.unwrap_err().0, "last_name");
        let extra = create(&obj(
            json!({"email": "a@x.example", "first_name": "A", "last_name": "L", "phone": "1"}),
        ));
        assert_eq!(extra.unwrap_err().0, "phone");
    }

    #[test]
    fn a_patch_takes_writable_fields_of_the_right_type_only() {
        assert_eq!(
            patch(&obj(json!({"email": "b@x.example"}))).unwrap_err().0,
            "email"
        );
        assert_eq!(
            patch(&obj(json!({"attended": "yes"}))).unwrap_err().0,
            "attended"
        );
        let c = patch(&obj(json!({"company": null, "job_title": " CTO "}))).unwrap();
        assert_eq!(c.company, Some(None));
        assert_eq!(c.job_title, Some(Some("CTO".into())));
    }

    #[test]
    fn attendance_minutes_stay_within_the_webinar() {
        let w = Webinar {
            n: 1001,
            title: "t".into(),
            starts_at: 0,
            duration_minutes: 45,
            created_at: 0,
            updated_at: 0,
        };
        for n in 100_001..100_200 {
            let r = Registrant {
                n,
                webinar: 1001,
                email: String::new(),
                first_name: String::new(),
                last_name: String::new(),
                company: None,
                job_title: None,
                registered_at: 0,
                attended: true,
                updated_at: 0,
            };
            let m = r.attendance(Some(&w))["minutes"].as_u64().unwrap();
            assert!((1..=45).contains(&m), "{m}");
        }
    }
}
