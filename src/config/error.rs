//! Configuration errors that name the file, the connector and the field.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// The connector's `id`, when the file got far enough to have one.
    pub connector: Option<String>,
    /// The workflow rule's name, for an error in `workflows/*.yaml`.
    pub rule: Option<String>,
    /// Dotted field path (`poll.interval_secs`); empty for whole-file problems.
    pub field: String,
    pub message: String,
    /// "did you mean ..." or another pointer to what would be valid.
    pub hint: Option<String>,
    /// A valid snippet for the field.
    pub example: Option<String>,
}

impl ConfigError {
    pub fn new(file: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            connector: None,
            rule: None,
            field: field.into(),
            message: message.into(),
            hint: None,
            example: None,
        }
    }

    pub fn connector(mut self, id: Option<&str>) -> Self {
        self.connector = id.map(str::to_owned);
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn example(mut self, example: impl Into<String>) -> Self {
        self.example = Some(example.into());
        self
    }

    /// Replace every interpolated secret value in the message, so a secret put in
    /// the wrong field (e.g. `tier: ${TOKEN}`) is not echoed back by serde.
    pub(crate) fn redact(mut self, secrets: &[String]) -> Self {
        for s in secrets.iter().filter(|s| !s.is_empty()) {
            self.message = self.message.replace(s.as_str(), "***");
        }
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(id) = &self.connector {
            write!(f, ": connector `{id}`")?;
        }
        if let Some(rule) = &self.rule {
            write!(f, ": rule `{rule}`")?;
        }
        if !self.field.is_empty() {
            write!(f, ": field `{}`", self.field)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n    hint: {h}")?;
        }
        if let Some(e) = &self.example {
            let indented = e.replace('\n', "\n             ");
            write!(f, "\n    example: {indented}")?;
        }
        Ok(())
    }
}

/// Every problem found in one load, in file order.
#[derive(Debug, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            writeln!(f, "error: {e}")?;
        }
        let n = self.0.len();
        write!(
            f,
            "{n} configuration error{}",
            if n == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for ConfigErrors {}

/// The closest candidate to `word`, if one is close enough to be a likely typo.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Turn serde's `unknown field `x`, expected one of `a`, `b`` into a hint naming the
/// nearest valid key. serde's wording for deny_unknown_fields is stable, and this is
/// the only place the list of valid keys is available.
pub fn unknown_field_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, expected) = rest.split_once('`')?;
    let valid: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    if valid.is_empty() {
        return None;
    }
    Some(match nearest(field, valid.iter().copied()) {
        Some(n) => format!("did you mean `{n}`?"),
        None => format!("valid keys here: {}", valid.join(", ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_the_nearest_key() {
        let m = "unknown field `intervl_secs`, expected `interval_secs` or `jitter_pct`";
        assert_eq!(
            unknown_field_hint(m).unwrap(),
            "did you mean `interval_secs`?"
        );
        let m = "unknown field `zzz`, expected one of `interval_secs`, `jitter_pct`";
        assert_eq!(
            unknown_field_hint(m).unwrap(),
            "valid keys here: interval_secs, jitter_pct"
        );
        assert!(unknown_field_hint("invalid type: string").is_none());
    }

    #[test]
    fn display_names_file_connector_and_field() {
        let e = ConfigError::new(
            Path::new("c/x.yaml"),
            "poll.interval_secs",
            "must be at least 1",
        )
        .connector(Some("hs"))
        .example("poll:\n  interval_secs: 60");
        assert_eq!(
            e.to_string(),
            "c/x.yaml: connector `hs`: field `poll.interval_secs`: must be at least 1\n    example: poll:\n               interval_secs: 60"
        );
    }

    #[test]
    fn redacts_interpolated_secrets() {
        let e = ConfigError::new(Path::new("x"), "tier", "unknown variant `pat-123`")
            .redact(&["pat-123".into()]);
        assert_eq!(e.message, "unknown variant `***`");
    }
}
