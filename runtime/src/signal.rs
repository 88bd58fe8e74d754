//! Signal names as runc accepts them: `KILL`, `SIGKILL`, `9`.

use std::str::FromStr;

use nix::sys::signal::Signal;

use crate::error::{Error, Result};

/// Parse a signal given by name (with or without SIG) or number.
pub fn parse(s: &str) -> Result<i32> {
    let bad = || Error::InvalidArgument(format!("invalid signal {s:?}"));
    if let Ok(n) = s.parse::<i32>() {
        let rt_max = libc::SIGRTMAX();
        if n <= 0 || n > rt_max {
            return Err(bad());
        }
        return Ok(n);
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    Signal::from_str(&name).map(|s| s as i32).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("KILL").ok(), Some(9));
        assert_eq!(parse("SIGTERM").ok(), Some(15));
        assert_eq!(parse("term").ok(), Some(15));
        assert_eq!(parse("10").ok(), Some(10));
        assert!(parse("NOPE").is_err());
        assert!(parse("0").is_err());
        assert!(parse("-1").is_err());
        assert!(parse("999").is_err());
    }
}
