//! Value normalization applied at ingest: emails, domains, phones and countries.
//!
//! Every function here is pure and idempotent. Two-way sync compares what it would write
//! with what the other side already holds; if normalizing a normalized value could change
//! it again, each side would keep "correcting" the other and the sync would loop. The
//! property tests at the bottom guard that.
//!
//! Bad input is flagged or turned into `None`, never an error: a CRM full of junk must
//! still sync, and rejecting a record over a malformed phone would lose the rest of it.
// Upstream values are untrusted: no overflow or division panic while normalizing them.
#![deny(clippy::arithmetic_side_effects)]

use std::str::FromStr;

use phonenumber::country::Id as PhoneRegion;
use url::{Host, Url};

/// A normalized email: trimmed, lowercased. `valid` is false when it is not a plausible address (never dropped, only flagged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub value: String,
    pub valid: bool,
}

/// Normalizes an email address; `None` only for empty or whitespace input.
///
/// Lowercasing the local part is technically lossy (RFC 5321 leaves it case-sensitive),
/// but no mainstream provider treats it so and every CRM matches case-insensitively.
/// Wrappers seen in exports are peeled: `mailto:` (with any `?subject=...`), surrounding
/// `<>`, and a display name (`Jane <jane@acme.com>`). Peeling repeats until nothing
/// changes, so nested wrappers cannot make a second pass differ from the first; a peel
/// that would leave nothing is skipped, so `<>` stays `<>` (flagged invalid) instead of
/// becoming `None`, which would break idempotence.
///
/// Validity is a syntactic plausibility check, not RFC 5322: exactly one `@`; a local
/// part of 1 to 64 bytes made of letters, digits and ``!#$%&'*+/=?^_`{|}~.-`` with no
/// leading, trailing or doubled dot; a host of at least two hostname labels (letters,
/// digits, inner hyphens; Unicode letters allowed) ending in an alphabetic or punycode
/// TLD; at most 254 bytes overall. Quoted local parts, IP-literal hosts and a trailing
/// dot are flagged invalid.
pub fn email(raw: &str) -> Option<Email> {
    let lowered = raw.trim().to_lowercase();
    if lowered.is_empty() {
        return None;
    }
    let mut value = lowered.as_str();
    loop {
        let next = peel_email_wrapper(value);
        if next == value || next.is_empty() {
            break;
        }
        value = next;
    }
    Some(Email {
        valid: is_plausible_email(value),
        value: value.to_owned(),
    })
}

/// Bare host of a domain, website URL or `user@host`: `https://www.Acme.com/about` gives `acme.com`.
///
/// Only a leading `www.` is removed (repeatedly, as long as a registrable-looking name with
/// a dot remains, so `www.com` is kept); other subdomains are meaningful (`app.acme.com`)
/// and public-suffix stripping would need a suffix list we do not want to ship. Unicode
/// names come back as punycode (`bücher.de` gives `xn--bcher-kva.de`) so the value is a
/// stable ASCII match key. `None` for junk: whitespace in the host, no dot, IP addresses,
/// characters not allowed in hostnames, a non-alphabetic TLD.
pub fn domain(raw: &str) -> Option<String> {
    let lowered = raw.trim().to_lowercase();
    // Extra slashes are what WHATWG parsing would skip anyway (`//acme.com`, `http:///acme.com`).
    let rest = strip_scheme(&lowered).trim_start_matches('/');
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    // The URL parser silently drops tabs and newlines; a host with blanks in it is junk,
    // not something to glue back together.
    if authority.is_empty() || authority.contains(char::is_whitespace) {
        return None;
    }
    // A fixed special scheme gets WHATWG host parsing (IDNA, percent-decoding, IP
    // detection, userinfo) for every input, whatever scheme it came with.
    let url = Url::parse(&format!("http://{rest}")).ok()?;
    let Some(Host::Domain(host)) = url.host() else {
        return None;
    };
    let mut host = host.trim_end_matches('.');
    while let Some(stripped) = host.strip_prefix("www.") {
        if !stripped.contains('.') {
            break;
        }
        host = stripped;
    }
    is_plausible_host(host).then(|| host.to_owned())
}

/// Company domain of an email address, in [`domain`] form; `None` for free-mail providers
/// (see [`is_free_mail`]) and when there is no `@` followed by a usable host. The address
/// need not be valid as a whole: `jane doe@acme.com` still names its company.
pub fn domain_from_email(email: &str) -> Option<String> {
    let normalized = self::email(email)?;
    let (_, host) = normalized.value.rsplit_once('@')?;
    let host = domain(host)?;
    (!is_free_mail(&host)).then_some(host)
}

/// Consumer mailbox providers, ISPs, privacy relays and disposable-mail services whose
/// domain says nothing about the sender's employer. Matched exactly.
///
/// Deliberately not exhaustive: a miss only means a person gets linked to a bogus
/// "organization", which a human can merge away, while a false hit would hide a real
/// company domain. Brand words that are also common company names (`live`, `outlook`,
/// `mail`) are therefore listed domain by domain rather than as families.
const FREE_MAIL: &[&str] = &[
    // Google, Microsoft, Apple
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "outlook.de",
    "outlook.es",
    "outlook.fr",
    "outlook.it",
    "live.com",
    "live.be",
    "live.ca",
    "live.co.uk",
    "live.com.au",
    "live.de",
    "live.fr",
    "live.it",
    "live.nl",
    "msn.com",
    "passport.com",
    "windowslive.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "privaterelay.appleid.com",
    // Yahoo and AOL brands outside the families
    "ymail.com",
    "rocketmail.com",
    "aim.com",
    // privacy-focused and independent providers
    "proton.me",
    "pm.me",
    "protonmail.com",
    "protonmail.ch",
    "tutanota.com",
    "tutanota.de",
    "tuta.com",
    "tuta.io",
    "fastmail.com",
    "fastmail.fm",
    "hey.com",
    "hushmail.com",
    "mailbox.org",
    "posteo.de",
    "duck.com",
    "zoho.com",
    "zohomail.com",
    "mail.com",
    "email.com",
    "inbox.com",
    "lycos.com",
    // Europe
    "web.de",
    "t-online.de",
    "freenet.de",
    "orange.fr",
    "wanadoo.fr",
    "free.fr",
    "sfr.fr",
    "laposte.net",
    "libero.it",
    "virgilio.it",
    "tiscali.it",
    "seznam.cz",
    "wp.pl",
    "o2.pl",
    "interia.pl",
    "onet.pl",
    "mail.ru",
    "bk.ru",
    "inbox.ru",
    "list.ru",
    "rambler.ru",
    "ya.ru",
    "ukr.net",
    // Asia
    "qq.com",
    "foxmail.com",
    "163.com",
    "126.com",
    "yeah.net",
    "sina.com",
    "sina.cn",
    "sohu.com",
    "aliyun.com",
    "naver.com",
    "daum.net",
    "hanmail.net",
    "rediffmail.com",
    // ISPs
    "comcast.net",
    "verizon.net",
    "att.net",
    "sbcglobal.net",
    "bellsouth.net",
    "cox.net",
    "charter.net",
    "earthlink.net",
    "btinternet.com",
    "sky.com",
    "virginmedia.com",
    "ntlworld.com",
    "talktalk.net",
    "shaw.ca",
    "rogers.com",
    "sympatico.ca",
    "bigpond.com",
    "optusnet.com.au",
    "xtra.co.nz",
    // disposable
    "mailinator.com",
    "yopmail.com",
    "guerrillamail.com",
];

/// Providers that run the same service under many country domains (`yahoo.co.jp`,
/// `hotmail.fr`, `gmx.at`, `yandex.com.tr`): matched on the label before the TLD.
const FREE_MAIL_FAMILIES: &[&str] = &["aol", "gmx", "hotmail", "yahoo", "yandex"];

/// Second-level labels under which country registries sell names (`co.uk`, `com.br`, `ne.jp`).
const SECOND_LEVEL_LABELS: &[&str] = &["co", "com", "ne", "net", "or", "org"];

/// Whether `domain` belongs to a free-mail provider; case and a trailing dot are ignored.
///
/// Local parts of shared mailboxes: a team's address, not one person's.
const ROLE_LOCAL_PARTS: &[&str] = &[
    "accounting",
    "accounts",
    "admin",
    "ap",
    "ar",
    "billing",
    "careers",
    "contact",
    "enquiries",
    "finance",
    "hello",
    "help",
    "hr",
    "info",
    "inquiries",
    "invoices",
    "jobs",
    "marketing",
    "no-reply",
    "noreply",
    "office",
    "orders",
    "postmaster",
    "sales",
    "support",
    "team",
    "webmaster",
];

/// Whether an (already normalized) email is a role address (`info@`, `billing@`): shared by
/// a team, it identifies no person, so it never joins two persons.
pub fn is_role_address(email: &str) -> bool {
    email.rsplit_once('@').is_some_and(|(local, _)| {
        ROLE_LOCAL_PARTS.contains(&local.split('+').next().unwrap_or(local))
    })
}

/// Exact match against `FREE_MAIL`, or for the families in `FREE_MAIL_FAMILIES` the
/// family label followed by a one-label TLD (`gmx.de`) or by a registry second level and
/// a two-letter country code (`yahoo.co.uk`). Subdomains never match: `yahoo.acme.com`
/// and `mail.gmail.com` are not mailbox domains.
pub fn is_free_mail(domain: &str) -> bool {
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    if FREE_MAIL.contains(&domain.as_str()) {
        return true;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let is_alpha = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase());
    match labels.as_slice() {
        [family, tld] => FREE_MAIL_FAMILIES.contains(family) && is_alpha(tld),
        [family, second, cc] => {
            FREE_MAIL_FAMILIES.contains(family)
                && SECOND_LEVEL_LABELS.contains(second)
                && cc.len() == 2
                && is_alpha(cc)
        }
        _ => false,
    }
}

/// Whether an (already normalized) email's domain, or any parent domain of it, is a
/// disposable mailbox provider (mailinator.com, guerrillamail.com, ...). The list is the
/// `mailchecker` crate's, about 55,000 domains kept up by its maintainers; it is read
/// once into a hash set because the crate's own lookup walks the list linearly.
pub fn is_disposable(email: &str) -> bool {
    static DOMAINS: std::sync::LazyLock<std::collections::HashSet<&'static str>> =
        std::sync::LazyLock::new(|| mailchecker::blacklist().into_iter().collect());
    let Some((_, host)) = email.rsplit_once('@') else {
        return false;
    };
    // `a.b.mailinator.com` is disposable because `mailinator.com` is: try every suffix
    // of two labels or more.
    let mut rest = host.trim_end_matches('.');
    loop {
        if DOMAINS.contains(rest) {
            return true;
        }
        match rest.split_once('.') {
            Some((_, parent)) if parent.contains('.') => rest = parent,
            _ => return false,
        }
    }
}

/// Words that stay lowercase inside a family name (`Ludwig van Beethoven`, `de la Cruz`)
/// unless they open it.
const NAME_PARTICLES: &[&str] = &[
    "da", "das", "de", "del", "della", "der", "di", "do", "dos", "du", "la", "le", "ten", "ter",
    "van", "von", "y", "zu",
];

/// A name typed in ALL CAPS or all lower case, in the case people write it: `JOHN` and
/// `john` give `John`, `o'brien` gives `O'Brien`, `MCDONALD` gives `McDonald`, `jean-luc`
/// gives `Jean-Luc`, `VAN DER BERG` gives `Van der Berg`. A name already in mixed case is
/// how its owner writes it (`DeShawn`, `van Dijk`, `MacKenzie`) and is left alone, as is
/// one with fewer than two cased letters (`J.`). `None` when nothing changes.
///
/// Idempotent: the result is in mixed case, or (when every word is one letter) unchanged.
pub fn name_case(raw: &str) -> Option<String> {
    // Read on every name ingested: one pass, no allocation, for the common mixed case.
    let (mut upper, mut lower) = (0usize, 0usize);
    for c in raw.chars() {
        if c.is_uppercase() {
            upper = upper.saturating_add(1);
        } else if c.is_lowercase() {
            lower = lower.saturating_add(1);
        }
        if upper > 0 && lower > 0 {
            return None;
        }
    }
    // Only letters whose case maps one to one: `ß` or `İ` would change length and could
    // make a second pass differ from the first.
    let simple = raw
        .chars()
        .filter(|c| c.is_uppercase() || c.is_lowercase())
        .all(|c| {
            c.to_lowercase().count() == 1
                && c.to_uppercase().count() == 1
                && c.to_lowercase()
                    .flat_map(char::to_uppercase)
                    .eq(c.to_uppercase())
        });
    if upper.saturating_add(lower) < 2 || !simple {
        return None;
    }
    let mut out = String::with_capacity(raw.len());
    for (i, word) in raw.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let lower = word.to_lowercase();
        if i > 0 && NAME_PARTICLES.contains(&lower.as_str()) {
            out.push_str(&lower);
            continue;
        }
        // Each part after a hyphen or apostrophe starts a capital: Jean-Luc, O'Brien.
        let mut start = true;
        let mut seen = String::new();
        for c in lower.chars() {
            if start && c.is_alphabetic() {
                out.extend(c.to_uppercase());
                start = false;
            } else if seen == "mc" && c.is_alphabetic() {
                out.extend(c.to_uppercase());
            } else {
                out.push(c);
            }
            if c == '-' || c == '\'' {
                start = true;
                seen.clear();
            } else {
                seen.push(c);
            }
        }
    }
    (out != raw).then_some(out)
}

/// A normalized phone number: E.164 when it could be parsed and validated, and always the trimmed original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone {
    pub e164: Option<String>,
    pub raw: String,
}

/// Normalizes a phone number with libphonenumber's metadata; `None` only for empty input.
///
/// `default_region` is how national numbers (`(415) 555-0123`) are read; it accepts
/// anything [`country`] does (`US`, `usa`, `United States`), and an unknown region is the
/// same as none. Numbers with a `+`, a `tel:` URI or the region's own international
/// prefix (`011` from the US) need no region. When that reading fails, a leading `00` is
/// retried as `+`: it is the international prefix most of the world dials, and a number
/// that starts with it is almost never national (`001 415 555 0123` with region US or
/// none gives `+14155550123`). Extensions are dropped
/// from `e164` (E.164 has none) but survive in `raw`. A number libphonenumber parses but
/// does not consider valid for its country gets `e164: None`.
/// The ISO 3166 alpha-2 code of a country phone numbers can be read for (`US`, `germany`
/// gives `DE`), or `None` when it is no such country.
pub fn phone_region(raw: &str) -> Option<&'static str> {
    country(raw).filter(|alpha2| PhoneRegion::from_str(alpha2).is_ok())
}

pub fn phone(raw: &str, default_region: Option<&str>) -> Option<Phone> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let region = default_region
        .and_then(country)
        .and_then(|alpha2| PhoneRegion::from_str(alpha2).ok());
    let e164 = parse_e164(raw, region).or_else(|| {
        raw.strip_prefix("00")
            .and_then(|rest| parse_e164(&format!("+{rest}"), None))
    });
    Some(Phone {
        e164,
        raw: raw.to_owned(),
    })
}

/// Aliases `celes` does not know: the common non-ISO abbreviations and the native names
/// most often typed into web forms. Keys are in [`country_key`] form.
const COUNTRY_ALIASES: &[(&str, &str)] = &[
    ("uk", "GB"),
    ("britain", "GB"),
    ("wales", "GB"),
    ("uae", "AE"),
    ("czech", "CZ"),
    ("republicofireland", "IE"),
    ("eire", "IE"),
    ("deutschland", "DE"),
    ("osterreich", "AT"),
    ("schweiz", "CH"),
    ("suisse", "CH"),
    ("svizzera", "CH"),
    ("nederland", "NL"),
    ("espana", "ES"),
    ("italia", "IT"),
    ("polska", "PL"),
    ("sverige", "SE"),
    ("norge", "NO"),
    ("danmark", "DK"),
    ("suomi", "FI"),
    ("brasil", "BR"),
];

/// ISO 3166-1 alpha-2 code (uppercase) for a country code or name; `None` when unknown.
///
/// Accepts alpha-2 and alpha-3 codes, English short and official names with or without a
/// leading "the", the aliases `celes` ships (`Holland`, `Russia`, `Ivory Coast`, ...), a
/// few more (`COUNTRY_ALIASES`: `UK`, `UAE`, `Deutschland`, ...), ISO's inverted list
/// form (`Korea, Republic of`) and a name followed by a qualifier (`Taiwan, Province of
/// China`). Case, whitespace, dots, hyphens, apostrophes, parentheses and common Latin
/// diacritics are ignored and `&` reads as "and", so `U.S.` is `us` and `Côte d'Ivoire`
/// is `cotedivoire`. Numeric codes (`840`) are refused: a bare number in a country field
/// is far more often junk than ISO 3166 numeric. Ambiguous names are left as `celes`
/// decides: `Korea` is unknown, `Congo` is CG.
pub fn country(raw: &str) -> Option<&'static str> {
    let direct = country_key(raw);
    if let Some(code) = country_from_key(&direct) {
        return Some(code);
    }
    let (head, tail) = raw.split_once(',')?;
    country_from_key(&country_key(&format!("{tail} {head}")))
        .or_else(|| country_from_key(&country_key(head)))
}

fn country_from_key(key: &str) -> Option<&'static str> {
    if key.is_empty() || key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if let Some((_, code)) = COUNTRY_ALIASES.iter().find(|(alias, _)| *alias == key) {
        return Some(code);
    }
    // `from_str` covers codes, names and most aliases, `from_alias` a few spellings
    // (`turkiye`) it lacks; `celes` keys some names with a leading "the" (`thebahamas`)
    // and some without, and people type either.
    let lookup = |k: &str| {
        celes::Country::from_str(k)
            .or_else(|_| celes::Country::from_alias(k))
            .ok()
    };
    lookup(key)
        .or_else(|| lookup(&format!("the{key}")))
        .or_else(|| {
            key.strip_prefix("the")
                // only names: "theus" must not become the US
                .filter(|k| k.len() > 3)
                .and_then(lookup)
        })
        .map(|c| c.alpha2)
}

fn country_key(raw: &str) -> String {
    raw.trim()
        .to_lowercase()
        .replace('&', "and")
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '.' | ',' | '-' | '\'' | '’' | '(' | ')'))
        .map(fold_latin_diacritic)
        .collect()
}

/// Country names in forms and exports carry accents inconsistently (`Cote d'Ivoire`,
/// `Côte d’Ivoire`, `Curaçao`); the lookup tables are unaccented.
fn fold_latin_diacritic(c: char) -> char {
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
        'ç' => 'c',
        'è' | 'é' | 'ê' | 'ë' => 'e',
        'ì' | 'í' | 'î' | 'ï' => 'i',
        'ñ' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => 'o',
        'ù' | 'ú' | 'û' | 'ü' => 'u',
        'ý' | 'ÿ' => 'y',
        other => other,
    }
}

/// One layer of wrapping around a trimmed address; returns the input when there is none.
/// The result is trimmed too, so whatever `email` settles on never has blanks around it.
fn peel_email_wrapper(s: &str) -> &str {
    if let Some(rest) = s.strip_prefix("mailto:") {
        return rest.split('?').next().unwrap_or(rest).trim();
    }
    if let Some(inner) = s.strip_prefix('<').and_then(|s| s.strip_suffix('>')) {
        return inner.trim();
    }
    if let Some((_, addr)) = s.strip_suffix('>').and_then(|inner| inner.rsplit_once('<')) {
        return addr.trim();
    }
    s
}

fn is_plausible_email(value: &str) -> bool {
    let Some((local, host)) = value.split_once('@') else {
        return false;
    };
    value.len() <= 254 && is_plausible_local_part(local) && is_plausible_host(host)
}

fn is_plausible_local_part(local: &str) -> bool {
    (1..=64).contains(&local.len())
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c))
}

/// Hostname rules (RFC 1123 labels) plus a TLD that is alphabetic or punycode, which is
/// what tells a name from `acme.123`. Unicode letters pass so that internationalized
/// email hosts are not flagged; [`domain`] only ever hands it punycode.
fn is_plausible_host(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    let Some(tld) = labels.last() else {
        return false;
    };
    host.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && tld.chars().count() >= 2
        && (tld.chars().all(char::is_alphabetic) || tld.starts_with("xn--"))
}

/// The text after a leading `scheme://`, or all of it when it does not start with one.
/// Checking the scheme's syntax keeps a `://` inside a path or query from being taken as one.
fn strip_scheme(s: &str) -> &str {
    match s.split_once("://") {
        Some((scheme, rest))
            if scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            rest
        }
        _ => s,
    }
}

fn parse_e164(raw: &str, region: Option<PhoneRegion>) -> Option<String> {
    let number = phonenumber::parse(region, raw).ok()?;
    number
        .is_valid()
        .then(|| number.format().mode(phonenumber::Mode::E164).to_string())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ok(value: &str) -> Option<Email> {
        Some(Email {
            value: value.to_owned(),
            valid: true,
        })
    }

    fn flagged(value: &str) -> Option<Email> {
        Some(Email {
            value: value.to_owned(),
            valid: false,
        })
    }

    #[test]
    fn email_normalizes_and_flags() {
        let cases: &[(&str, Option<Email>)] = &[
            ("  John.Doe@ACME.com ", ok("john.doe@acme.com")),
            ("jane@acme.co.uk", ok("jane@acme.co.uk")),
            ("jane+crm@acme.com", ok("jane+crm@acme.com")),
            ("o'brien@acme.ie", ok("o'brien@acme.ie")),
            ("MAILTO:Jane@Acme.com", ok("jane@acme.com")),
            ("mailto:jane@acme.com?subject=hello", ok("jane@acme.com")),
            ("<jane@acme.com>", ok("jane@acme.com")),
            ("  < jane@acme.com >  ", ok("jane@acme.com")),
            ("Jane Doe <Jane@Acme.com>", ok("jane@acme.com")),
            ("<mailto:jane@acme.com>", ok("jane@acme.com")),
            ("mailto:<jane@acme.com>", ok("jane@acme.com")),
            ("<<jane@acme.com>>", ok("jane@acme.com")),
            ("josé@acme.es", ok("josé@acme.es")),
            ("jane@bücher.de", ok("jane@bücher.de")),
            ("jane@xn--bcher-kva.de", ok("jane@xn--bcher-kva.de")),
            ("", None),
            ("   \t\n", None),
            ("<>", flagged("<>")),
            (" < > ", flagged("< >")),
            ("mailto: <>", flagged("<>")),
            ("mailto:", flagged("mailto:")),
            ("jane", flagged("jane")),
            ("jane@", flagged("jane@")),
            ("@acme.com", flagged("@acme.com")),
            ("jane@acme", flagged("jane@acme")),
            ("jane@@acme.com", flagged("jane@@acme.com")),
            ("jane@doe@acme.com", flagged("jane@doe@acme.com")),
            ("jane doe@acme.com", flagged("jane doe@acme.com")),
            ("jane@acme .com", flagged("jane@acme .com")),
            (".jane@acme.com", flagged(".jane@acme.com")),
            ("jane.@acme.com", flagged("jane.@acme.com")),
            ("ja..ne@acme.com", flagged("ja..ne@acme.com")),
            ("jane@acme..com", flagged("jane@acme..com")),
            ("jane@-acme.com", flagged("jane@-acme.com")),
            ("jane@acme.c", flagged("jane@acme.c")),
            ("jane@acme.123", flagged("jane@acme.123")),
            ("jane@[10.0.0.1]", flagged("jane@[10.0.0.1]")),
            ("\"jane doe\"@acme.com", flagged("\"jane doe\"@acme.com")),
            ("jane@acme.com.", flagged("jane@acme.com.")),
        ];
        for (raw, want) in cases {
            assert_eq!(&email(raw), want, "email({raw:?})");
        }
    }

    #[test]
    fn email_flags_overlong_parts() {
        let local = "a".repeat(65);
        assert_eq!(
            email(&format!("{local}@acme.com")).map(|e| e.valid),
            Some(false)
        );
        let host = format!("{}.com", vec!["a".repeat(60); 5].join("."));
        assert_eq!(email(&format!("jane@{host}")).map(|e| e.valid), Some(false));
    }

    #[test]
    fn domain_extracts_bare_host() {
        let cases: &[(&str, Option<&str>)] = &[
            ("https://www.Acme.com/about?x=1", Some("acme.com")),
            ("http://acme.com", Some("acme.com")),
            ("ACME.COM.", Some("acme.com")),
            ("acme.com", Some("acme.com")),
            ("  acme.com  ", Some("acme.com")),
            ("www.acme.com", Some("acme.com")),
            ("www.www.acme.com", Some("acme.com")),
            ("acme.co.uk", Some("acme.co.uk")),
            ("www.acme.co.uk", Some("acme.co.uk")),
            ("app.acme.com", Some("app.acme.com")),
            ("www2.acme.com", Some("www2.acme.com")),
            ("www.com", Some("www.com")),
            ("acme.com:8080/path", Some("acme.com")),
            ("https://acme.com:443", Some("acme.com")),
            ("//acme.com/x", Some("acme.com")),
            ("acme.com/a?next=https://other.com", Some("acme.com")),
            ("acme.com#top", Some("acme.com")),
            ("HTTPS://WWW.ACME.COM", Some("acme.com")),
            ("ftp://files.acme.com", Some("files.acme.com")),
            ("jane@acme.com", Some("acme.com")),
            ("Jane@WWW.Acme.com", Some("acme.com")),
            ("mailto:jane@acme.com", Some("acme.com")),
            ("https://user:pw@acme.com/", Some("acme.com")),
            ("medium.com/@acme", Some("medium.com")),
            ("bücher.de", Some("xn--bcher-kva.de")),
            ("xn--bcher-kva.de", Some("xn--bcher-kva.de")),
            ("my-company.io", Some("my-company.io")),
            ("123.com", Some("123.com")),
            ("", None),
            ("   ", None),
            ("acme", None),
            ("localhost", None),
            ("http://localhost:3000", None),
            ("acme .com", None),
            ("acme inc", None),
            ("Acme Inc.", None),
            ("https://acme .com/", None),
            ("acme\t.com", None),
            ("192.168.1.10", None),
            ("http://10.0.0.1/admin", None),
            ("1.2.3", None),
            ("[::1]", None),
            ("http://[2001:db8::1]/", None),
            ("acme.123", None),
            ("acme.c", None),
            ("acme!.com", None),
            ("a_b.com", None),
            ("-acme.com", None),
            ("acme..com", None),
            (".com", None),
            ("n/a", None),
            ("https://", None),
            ("jane@", None),
        ];
        for (raw, want) in cases {
            assert_eq!(domain(raw).as_deref(), *want, "domain({raw:?})");
        }
    }

    #[test]
    fn domain_from_email_skips_free_mail() {
        let cases: &[(&str, Option<&str>)] = &[
            ("jane@acme.com", Some("acme.com")),
            ("  Jane.Doe@Sales.ACME.co.uk ", Some("sales.acme.co.uk")),
            ("jane@www.acme.com", Some("acme.com")),
            ("Jane <jane@acme.com>", Some("acme.com")),
            ("mailto:jane@acme.com", Some("acme.com")),
            ("jane doe@acme.com", Some("acme.com")),
            ("jane@gmail.com", None),
            ("Jane@GMAIL.COM", None),
            ("jane@yahoo.co.uk", None),
            ("jane@hotmail.fr", None),
            ("jane@gmx.de", None),
            ("jane@proton.me", None),
            ("jane@privaterelay.appleid.com", None),
            ("jane@acme", None),
            ("jane@10.0.0.1", None),
            ("acme.com", None),
            ("", None),
            ("jane@", None),
        ];
        for (raw, want) in cases {
            assert_eq!(
                domain_from_email(raw).as_deref(),
                *want,
                "domain_from_email({raw:?})"
            );
        }
    }

    #[test]
    fn free_mail_matches_exact_and_families() {
        let free = [
            "gmail.com",
            "googlemail.com",
            "GMAIL.COM",
            " gmail.com. ",
            "outlook.com",
            "live.com",
            "msn.com",
            "aol.com",
            "aol.co.uk",
            "icloud.com",
            "me.com",
            "mac.com",
            "proton.me",
            "protonmail.com",
            "web.de",
            "mail.ru",
            "qq.com",
            "163.com",
            "zoho.com",
            "fastmail.com",
            "hey.com",
            "yahoo.com",
            "yahoo.fr",
            "yahoo.co.jp",
            "yahoo.com.br",
            "hotmail.com",
            "hotmail.co.uk",
            "hotmail.it",
            "gmx.de",
            "gmx.net",
            "gmx.at",
            "yandex.ru",
            "yandex.com",
            "yandex.com.tr",
        ];
        for d in free {
            assert!(is_free_mail(d), "{d:?} should be free mail");
        }
        let company = [
            "acme.com",
            "gmail.acme.com",
            "mail.gmail.com",
            "yahoo.acme.com",
            "yahooligans.com",
            "myyahoo.com",
            "yahoo",
            "yahoo.acme.co.uk",
            "yahoo.co.u1",
            "gmx.123",
            "live.tv",
            "outlook.ai",
            "mail.acme.com",
            "",
        ];
        for d in company {
            assert!(!is_free_mail(d), "{d:?} should not be free mail");
        }
    }

    #[test]
    fn free_mail_list_is_normalized() {
        for d in FREE_MAIL {
            assert_eq!(
                domain(d).as_deref(),
                Some(*d),
                "{d:?} is not in domain() form"
            );
        }
        let mut sorted = FREE_MAIL.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), FREE_MAIL.len(), "duplicate free-mail entry");
    }

    #[test]
    fn phone_parses_to_e164() {
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            ("(415) 555-0123", Some("US"), Some("+14155550123")),
            ("415.555.0123", Some("us"), Some("+14155550123")),
            (
                "(415) 555-0123",
                Some("United States"),
                Some("+14155550123"),
            ),
            ("+1 415 555 0123", None, Some("+14155550123")),
            ("+1 415 555 0123", Some("GB"), Some("+14155550123")),
            ("+1-415-555-0123 ext. 45", None, Some("+14155550123")),
            ("tel:+1-415-555-0123", None, Some("+14155550123")),
            ("011 44 20 7946 0958", Some("US"), Some("+442079460958")),
            ("001 415 555 0123", None, Some("+14155550123")),
            ("001 415 555 0123", Some("US"), Some("+14155550123")),
            ("001 415 555 0123", Some("DE"), Some("+14155550123")),
            ("+44 20 7946 0958", None, Some("+442079460958")),
            ("020 7946 0958", Some("GB"), Some("+442079460958")),
            ("020 7946 0958", Some("UK"), Some("+442079460958")),
            ("030 123456", Some("DE"), Some("+4930123456")),
            ("06 1234 5678", Some("IT"), Some("+390612345678")),
            ("+39 06 1234 5678", None, Some("+390612345678")),
            ("  +14155550123  ", None, Some("+14155550123")),
            ("(415) 555-0123", None, None),
            ("(415) 555-0123", Some("Narnia"), None),
            ("555-0123", Some("US"), None),
            ("+1 123", None, None),
            ("call me maybe", Some("US"), None),
            ("  2 22#:", Some("US"), None),
            ("003-836-4618x3001", Some("CH"), None),
            ("+", None, None),
            ("00", None, None),
        ];
        for (raw, region, want) in cases {
            let got = phone(raw, *region);
            assert_eq!(
                got.as_ref().and_then(|p| p.e164.as_deref()),
                *want,
                "phone({raw:?}, {region:?})"
            );
            assert_eq!(got.map(|p| p.raw), Some(raw.trim().to_owned()));
        }
    }

    #[test]
    fn phone_is_none_only_for_empty_input() {
        assert_eq!(phone("", Some("US")), None);
        assert_eq!(phone(" \t ", None), None);
        assert_eq!(
            phone(" n/a ", None),
            Some(Phone {
                e164: None,
                raw: "n/a".to_owned()
            })
        );
    }

    #[test]
    fn country_resolves_codes_names_and_aliases() {
        let cases: &[(&str, Option<&str>)] = &[
            ("us", Some("US")),
            ("US", Some("US")),
            (" usa ", Some("US")),
            ("United States", Some("US")),
            ("united states of america", Some("US")),
            ("The United States of America", Some("US")),
            ("U.S.", Some("US")),
            ("U.S.A.", Some("US")),
            ("America", Some("US")),
            ("GB", Some("GB")),
            ("GBR", Some("GB")),
            ("United Kingdom", Some("GB")),
            ("the United Kingdom", Some("GB")),
            ("UK", Some("GB")),
            ("U.K.", Some("GB")),
            ("Great Britain", Some("GB")),
            ("England", Some("GB")),
            ("Deutschland", Some("DE")),
            ("Germany", Some("DE")),
            ("deu", Some("DE")),
            ("France", Some("FR")),
            ("Netherlands", Some("NL")),
            ("The Netherlands", Some("NL")),
            ("Holland", Some("NL")),
            ("Bahamas", Some("BS")),
            ("The Bahamas", Some("BS")),
            ("South Korea", Some("KR")),
            ("Korea, Republic of", Some("KR")),
            ("Iran, Islamic Republic of", Some("IR")),
            ("Virgin Islands, British", Some("VG")),
            ("Bosnia & Herzegovina", Some("BA")),
            ("Bosnia and Herzegovina", Some("BA")),
            ("Guinea-Bissau", Some("GW")),
            ("Côte d'Ivoire", Some("CI")),
            ("Ivory Coast", Some("CI")),
            ("Türkiye", Some("TR")),
            ("Turkey", Some("TR")),
            ("Russia", Some("RU")),
            ("UAE", Some("AE")),
            ("United Arab Emirates", Some("AE")),
            ("Czech Republic", Some("CZ")),
            ("Viet Nam", Some("VN")),
            ("Hong Kong", Some("HK")),
            ("Brasil", Some("BR")),
            ("España", Some("ES")),
            ("Kosovo", Some("XK")),
            ("Curaçao", Some("CW")),
            ("Réunion", Some("RE")),
            ("Österreich", Some("AT")),
            ("México", Some("MX")),
            ("Taiwan, Province of China", Some("TW")),
            ("Congo, the Democratic Republic of the", Some("CD")),
            ("", None),
            ("   ", None),
            ("n/a", None),
            ("N/A", None),
            ("unknown", None),
            ("Narnia", None),
            ("840", None),
            ("Congo", Some("CG")),
            ("Korea", None),
            ("the", None),
            ("the us", None),
            ("xx", None),
            (",", None),
        ];
        for (raw, want) in cases {
            assert_eq!(country(raw), *want, "country({raw:?})");
        }
    }

    #[test]
    fn country_codes_are_fixed_points() {
        for c in celes::Country::get_countries() {
            assert_eq!(country(c.alpha2), Some(c.alpha2), "{}", c.long_name);
            assert_eq!(country(c.alpha3), Some(c.alpha2), "{}", c.long_name);
            assert_eq!(country(c.long_name), Some(c.alpha2), "{}", c.long_name);
        }
        for (alias, code) in COUNTRY_ALIASES {
            assert_eq!(country(alias), Some(*code), "{alias:?}");
            assert_eq!(country(code), Some(*code), "{code:?}");
        }
    }

    #[test]
    fn phone_region_accepts_every_country_code_without_panicking() {
        for c in celes::Country::get_countries() {
            let _ = phone("0123 456 789", Some(c.alpha2));
        }
    }

    fn messy_email() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[ <>]{0,2}(mailto:|MAILTO:)?[ <>]{0,2}[A-Za-z0-9._%+' -]{0,12}@{0,2}[A-Za-z0-9.-]{0,12}[ <>?]{0,3}",
            "[A-Za-z ]{0,8}<[A-Za-z0-9.]{1,8}@[A-Za-z0-9.]{1,8}>",
        ]
    }

    fn messy_domain() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[ ]?([a-zA-Z]{1,5}://)?([a-z]{1,4}(:[a-z]{1,4})?@)?(www\\.|WWW\\.){0,3}[a-zA-Z0-9_-]{0,8}(\\.[a-zA-Z0-9ü_-]{0,6}){0,4}\\.{0,2}(:[0-9]{1,5})?([/?#][a-z@:/.]{0,10})?[ ]?",
            "[a-zA-Z0-9.:/@?#%\\[\\] _-]{0,30}",
        ]
    }

    #[test]
    fn names_in_one_case_are_written_as_people_write_them() {
        for (raw, want) in [
            ("JOHN", Some("John")),
            ("john", Some("John")),
            ("o'brien", Some("O'Brien")),
            ("MCDONALD", Some("McDonald")),
            ("jean-luc", Some("Jean-Luc")),
            ("VAN DER BERG", Some("Van der Berg")),
            ("DE LA CRUZ", Some("De la Cruz")),
            ("ÉLODIE", Some("Élodie")),
            ("MARY ANN", Some("Mary Ann")),
            // As typed: mixed case, or too little to judge.
            ("DeShawn", None),
            ("van Dijk", None),
            ("MacKenzie", None),
            ("J.", None),
            ("J R", None),
            ("", None),
            // A case mapping that changes length is left alone.
            ("STRAßE", None),
        ] {
            assert_eq!(name_case(raw).as_deref(), want, "{raw}");
        }
    }

    #[test]
    fn disposable_domains_and_their_subdomains_are_found() {
        assert!(is_disposable("jane@mailinator.com"));
        assert!(is_disposable("jane@eu.mailinator.com"));
        assert!(is_disposable("jane@guerrillamail.com"));
        assert!(!is_disposable("jane@gmail.com"));
        assert!(!is_disposable("jane@acme.com"));
        assert!(!is_disposable("jane@com"));
        assert!(!is_disposable("not an address"));
    }

    proptest! {
        #[test]
        fn email_is_idempotent(raw in messy_email()) {
            if let Some(first) = email(&raw) {
                prop_assert_eq!(email(&first.value), Some(first.clone()));
            } else {
                prop_assert!(raw.trim().is_empty());
            }
        }

        #[test]
        fn domain_is_idempotent(raw in messy_domain()) {
            if let Some(first) = domain(&raw) {
                prop_assert_eq!(domain(&first), Some(first.clone()));
                prop_assert!(first.is_ascii() && !first.ends_with('.'));
                prop_assert!(first.strip_prefix("www.").is_none_or(|rest| !rest.contains('.')));
            }
        }

        #[test]
        fn phone_e164_is_a_fixed_point(
            raw in prop_oneof![any::<String>(), "[+(]?[0-9 ().-]{0,20}"],
            region in prop::option::of(prop::sample::select(vec!["US", "GB", "DE", "FR", "IT", "IN", "BR", "AU", "JP", "CH"])),
        ) {
            let Some(first) = phone(&raw, region) else {
                prop_assert!(raw.trim().is_empty());
                return Ok(());
            };
            prop_assert_eq!(phone(&first.raw, region), Some(first.clone()));
            if let Some(e164) = first.e164 {
                prop_assert_eq!(phone(&e164, None).and_then(|p| p.e164), Some(e164.clone()));
                prop_assert_eq!(phone(&e164, region).and_then(|p| p.e164), Some(e164));
            }
        }

        #[test]
        fn name_case_is_idempotent(raw in prop_oneof![any::<String>(), "[a-zA-Z '-]{0,20}", "[A-Z '-]{0,20}", "[a-z '-]{0,20}"]) {
            if let Some(fixed) = name_case(&raw) {
                prop_assert_eq!(name_case(&fixed), None, "{:?} became {:?}", raw, fixed);
                prop_assert_eq!(fixed.to_lowercase(), raw.to_lowercase());
            }
        }

        #[test]
        fn country_is_idempotent(raw in prop_oneof![any::<String>(), "[a-zA-Z .,&'-]{0,20}"]) {
            if let Some(code) = country(&raw) {
                prop_assert_eq!(country(code), Some(code));
            }
        }
    }
}
