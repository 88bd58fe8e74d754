//! The daemon's own log: tracing to stderr, as text or JSON, filtered by
//! the configured level or a tracing directive (`RUST_LOG` overrides).
//!
//! Under systemd, stderr is a stream to the journal. The journal stamps
//! every line itself and reads a `<N>` syslog priority prefix
//! (SyslogLevelPrefix=, on by default), so there the text format drops its
//! own timestamp and colours and leads each line with its priority:
//! `journalctl -u carapace -p warning` then shows warnings and errors only.

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `format` is "text" or "json".
pub fn init(level: &str, format: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let journal = stderr_is_journal();
    // Colour codes only for a person at a terminal, not in journald or files.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(!journal && std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else if journal {
        builder.event_format(JournalFormat::default()).try_init()
    } else {
        builder.try_init()
    };
}

/// Whether stderr is systemd's stream to the journal: systemd sets
/// `JOURNAL_STREAM` to that stream's "device:inode", and only a match with
/// our own fd 2 counts (a child that inherited the variable but not the
/// stream must not take it for the journal).
fn stderr_is_journal() -> bool {
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    match nix::sys::stat::fstat(std::io::stderr()) {
        Ok(st) => journal_stream_matches(&var.to_string_lossy(), st.st_dev, st.st_ino),
        Err(_) => false,
    }
}

/// Parses `JOURNAL_STREAM` ("dev:ino", both decimal) and compares it.
fn journal_stream_matches(var: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = var.split_once(':') else {
        return false;
    };
    d.parse::<u64>() == Ok(dev) && i.parse::<u64>() == Ok(ino)
}

/// The syslog priority (sd-daemon.h's SD_ERR … SD_DEBUG) of a level.
fn syslog_priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// The text format for the journal: `<N>` priority, no timestamp (the
/// journal keeps its own), then tracing's usual level, target and fields.
struct JournalFormat {
    inner: Format<tracing_subscriber::fmt::format::Full, ()>,
}

impl Default for JournalFormat {
    fn default() -> Self {
        JournalFormat {
            inner: Format::default().without_time().with_ansi(false),
        }
    }
}

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", syslog_priority(event.metadata().level()))?;
        self.inner.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn journal_stream_must_name_our_stderr() {
        assert!(journal_stream_matches("64768:1234", 64768, 1234));
        assert!(!journal_stream_matches("64768:1234", 64768, 1235));
        assert!(!journal_stream_matches("64768", 64768, 1234));
        assert!(!journal_stream_matches("x:1234", 64768, 1234));
        assert!(!journal_stream_matches("", 0, 0));
    }

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn journal_lines_lead_with_their_priority_and_carry_no_time() {
        let out = Captured::default();
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(Level::DEBUG)
            .with_writer(move || sink.clone())
            .event_format(JournalFormat::default())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(pod = "p1", "run failed");
            tracing::warn!("slow");
            tracing::info!("serving");
            tracing::debug!("detail");
        });
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("<3>ERROR "), "{}", lines[0]);
        assert!(lines[0].contains("run failed") && lines[0].contains("pod=\"p1\""));
        assert!(lines[1].starts_with("<4> WARN "), "{}", lines[1]);
        assert!(lines[2].starts_with("<6> INFO "), "{}", lines[2]);
        assert!(lines[3].starts_with("<7>DEBUG "), "{}", lines[3]);
        // No timestamp: the journal adds its own.
        assert!(!text.contains("Z "), "{text}");
    }
}
