//! Shape checks of the JSON documents that Exec and Update hand on to the
//! runtime (`exec --process FILE`, `update --resources FILE`).
//!
//! The runtime validates them in full and its error reaches the caller, so
//! the shim only refuses what it can tell is wrong before writing a file: not
//! JSON, not an object, or a process without arguments. It deliberately does
//! not deserialize them into oci-spec's types: those deserializers, and the
//! regular-expression engine one of them validates with, were a quarter of
//! the code every shim maps for a check the runtime repeats anyway.

use serde::Deserialize;

use crate::error::{Error, Result};

/// The part of an OCI process spec the shim looks at.
#[derive(Deserialize)]
struct ProcessShape {
    #[serde(default)]
    args: Option<Vec<String>>,
}

/// Refuses an exec process spec that is not a JSON object or has no args.
pub(super) fn check_process(json: &[u8]) -> Result<()> {
    let p: ProcessShape = serde_json::from_slice(json)
        .map_err(|e| Error::InvalidArgument(format!("exec process spec: {e}")))?;
    if p.args.as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::InvalidArgument(
            "exec process spec has no args".into(),
        ));
    }
    Ok(())
}

/// Refuses an Update's resources that are not a JSON object.
pub(super) fn check_resources(json: &[u8]) -> Result<()> {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(json)
        .map(drop)
        .map_err(|e| Error::InvalidArgument(format!("resources: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_needs_args() {
        assert!(check_process(br#"{"args":["sh"],"cwd":"/"}"#).is_ok());
        for bad in [
            &br#"{"cwd":"/"}"#[..],
            br#"{"args":[]}"#,
            br#"{"args":"sh"}"#,
            br#"["sh"]"#,
            b"not json",
        ] {
            let e = check_process(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        }
    }

    #[test]
    fn resources_must_be_an_object() {
        assert!(check_resources(br#"{"memory":{"limit":1048576}}"#).is_ok());
        assert!(check_resources(b"{}").is_ok());
        for bad in [&b"[]"[..], b"3", b"{"] {
            assert!(matches!(
                check_resources(bad),
                Err(Error::InvalidArgument(_))
            ));
        }
    }
}
