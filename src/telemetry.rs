//! Logging setup: human-readable by default, JSON lines for log shippers.

use std::ffi::OsStr;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Install the global subscriber. `RUST_LOG`, when set, wins over `log.level`.
pub fn init(log: &LogConfig) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => EnvFilter::try_new(f)?,
        _ => EnvFilter::try_new(&log.level)?,
    };
    let colour = colour(
        log.format,
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    let result = match log.format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}

/// Whether log lines carry ANSI colour: only text read by a person at a terminal. In a
/// file, a pipe or journald the escape codes are noise a search must step around, and a
/// set `NO_COLOR` (https://no-color.org: any value but empty) turns them off anywhere.
fn colour(format: LogFormat, stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    format == LogFormat::Text && stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_for_text_on_a_terminal_without_no_color() {
        let set = Some(OsStr::new("1"));
        assert!(colour(LogFormat::Text, true, None));
        assert!(colour(LogFormat::Text, true, Some(OsStr::new(""))));
        assert!(!colour(LogFormat::Text, true, set));
        assert!(!colour(LogFormat::Text, false, None));
        assert!(!colour(LogFormat::Json, true, None));
    }
}
