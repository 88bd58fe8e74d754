//! The daemon's own log: tracing to stderr, as text or JSON, filtered by
//! the configured level or a tracing directive (`RUST_LOG` overrides).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `format` is "text" or "json".
pub fn init(level: &str, format: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    // Colour codes only for a person at a terminal, not in journald or files.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
