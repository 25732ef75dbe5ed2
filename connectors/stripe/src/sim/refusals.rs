//! What the Stripe simulator refuses before touching an object, worded as Stripe words it:
//! a URL Stripe does not route (or that this simulator does not have), and an email
//! address Stripe will not store on a customer.

use std::collections::HashSet;

use axum::http::StatusCode;
use serde_json::Value;

use super::error;

/// Stripe's 404 for a path it does not route: `invalid_request_error` without a code. A
/// real endpoint this simulator lacks answers the same, logged once per method and path
/// so the gap is visible.
pub(super) fn unrecognized(seen: &mut HashSet<String>, method: &str, path: &str) -> (u16, Value) {
    let key = format!("{method} {path}");
    if seen.insert(key.clone()) {
        tracing::warn!(request = %key, "stripe simulator: not simulated");
    }
    // Stripe adds a hint when the path ends in a slash, the usual sign of an empty id.
    let hint = if path.len() > 1 && path.ends_with('/') {
        " If you are trying to list objects, remove the trailing slash. If you are trying to \
         retrieve an object, make sure you passed a valid (non-empty) identifier in your code."
    } else {
        ""
    };
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        None,
        &format!(
            "Unrecognized request URL ({method}: {path}).{hint} Please see \
             https://stripe.com/docs or we can help at https://support.stripe.com/."
        ),
        None,
    )
}

/// A customer's `email` Stripe refuses (`email_invalid` on param `email`); an empty one
/// clears the field and is fine.
pub(super) fn invalid_email(params: &Value) -> Option<(u16, Value)> {
    let email = params.get("email")?.as_str()?;
    if email.is_empty() || plausible_email(email) {
        return None;
    }
    Some(error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        Some("email_invalid"),
        &format!("Invalid email address: {email}"),
        Some("email"),
    ))
}

/// Stripe's check is stricter than RFC 5322: it refuses spaces (a leading one included),
/// a host without a dot (`a@localhost`, `a@com`) and non-ASCII such as a full-width `＠`.
fn plausible_email(email: &str) -> bool {
    let Some((local, host)) = email.split_once('@') else {
        return false;
    };
    let host_ok = host.contains('.')
        && host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    let local_ok = !local.is_empty()
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_graphic() && !"@()<>[]:;,\\\"".contains(c));
    host_ok && local_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_unknown_route_is_stripes_404_and_is_logged_once() {
        let mut seen = HashSet::new();
        let (status, body) = unrecognized(&mut seen, "GET", "/v1/products");
        assert_eq!(status, 404);
        assert_eq!(
            body,
            json!({"error": {"type": "invalid_request_error", "message":
                "Unrecognized request URL (GET: /v1/products). Please see https://stripe.com/docs or we can help at https://support.stripe.com/."}})
        );
        unrecognized(&mut seen, "GET", "/v1/products");
        unrecognized(&mut seen, "POST", "/v1/products");
        assert_eq!(
            seen.len(),
            2,
            "one entry (and one warning) per method and path"
        );
        let (_, body) = unrecognized(&mut seen, "GET", "/v1/customers/");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("(GET: /v1/customers/). If you are trying to list objects, remove the trailing slash."),
            "{message}"
        );
    }

    #[test]
    fn emails_stripe_refuses_are_email_invalid_on_param_email() {
        for good in [
            "ada@example.com",
            "a.b+tag@mail.example.co.uk",
            "x_y@a-b.example",
        ] {
            assert_eq!(invalid_email(&json!({ "email": good })), None, "{good}");
        }
        assert_eq!(invalid_email(&json!({ "email": "" })), None, "empty clears");
        assert_eq!(invalid_email(&json!({ "name": "no email" })), None);
        for bad in [
            "not-an-email",
            "otameshi@com",
            " k@gmail.com",
            "a@localhost",
            "a＠icloud.com",
            "a@@b.example",
            "@b.example",
            "a@b..example",
            "a b@c.example",
        ] {
            let (status, body) = invalid_email(&json!({ "email": bad })).unwrap_or_default();
            assert_eq!(status, 400, "{bad}");
            assert_eq!(body["error"]["code"], "email_invalid");
            assert_eq!(body["error"]["param"], "email");
            assert_eq!(
                body["error"]["message"],
                format!("Invalid email address: {bad}")
            );
        }
    }
}
