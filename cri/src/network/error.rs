//! What can go wrong finding a network configuration and running its
//! plugins. Each message names the plugin, the command and the plugin's own
//! words, because it goes verbatim into the gRPC error kubelet shows.

use std::path::PathBuf;

/// Why pod networking could not be configured, set up or torn down.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The conf dir has no usable file.
    #[error("no network config found in {0}")]
    NoConfig(PathBuf),
    /// The configuration in use cannot be run as it stands.
    #[error("network config {path}: {reason}")]
    BadConfig {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A pod value cannot be written into `CNI_ARGS`, whose `;`/`=`
    /// syntax has no escaping.
    #[error("pod {key} {value:?} cannot be passed to CNI plugins: CNI_ARGS values may not contain ';' or '='")]
    BadArg {
        /// Which value (`K8S_POD_NAME`, …).
        key: &'static str,
        /// The value.
        value: String,
    },
    /// No bin dir has the plugin's binary.
    #[error("CNI plugin {plugin:?} not found in {}", search_path(.dirs))]
    PluginNotFound {
        /// The plugin type (the binary's name).
        plugin: String,
        /// The directories searched, in order.
        dirs: Vec<PathBuf>,
    },
    /// The plugin could not be started or its pipes failed.
    #[error("run CNI plugin {plugin:?} ({path}) for {command}: {source}")]
    Spawn {
        /// The plugin type.
        plugin: String,
        /// Its binary.
        path: PathBuf,
        /// ADD or DEL.
        command: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The plugin exited unsuccessfully. (Its binary is in the debug
    /// trace; the variant stays small enough to wrap.)
    #[error("CNI plugin {plugin:?} failed on {command}: {}", failure(.status, .code, .msg, .details))]
    PluginFailed {
        /// The plugin type.
        plugin: String,
        /// ADD or DEL.
        command: &'static str,
        /// How it exited.
        status: std::process::ExitStatus,
        /// The CNI error code of its JSON error, if it printed one.
        code: Option<u64>,
        /// Its error message: the JSON error's `msg`, or else its stderr
        /// (or stdout) text.
        msg: String,
        /// The JSON error's `details` ("" when none).
        details: String,
    },
    /// The plugin ran past the hang guard and was killed.
    #[error(
        "CNI plugin {plugin:?} ({path}) did not finish {command} within {secs}s and was killed"
    )]
    Timeout {
        /// The plugin type.
        plugin: String,
        /// Its binary.
        path: PathBuf,
        /// ADD or DEL.
        command: &'static str,
        /// The limit.
        secs: u64,
    },
    /// The plugin succeeded but printed something that is not a usable
    /// CNI result.
    #[error("CNI plugin {plugin:?} returned an unusable {command} result: {reason}")]
    BadResult {
        /// The plugin type.
        plugin: String,
        /// ADD or DEL.
        command: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

fn search_path(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        return "(no CNI bin dirs configured)".to_string();
    }
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

fn failure(
    status: &std::process::ExitStatus,
    code: &Option<u64>,
    msg: &str,
    details: &str,
) -> String {
    let mut s = msg.to_string();
    if !details.is_empty() {
        s.push_str(": ");
        s.push_str(details);
    }
    match code {
        Some(c) => s.push_str(&format!(" (CNI error code {c}, {status})")),
        None => s.push_str(&format!(" ({status})")),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_failures_read_as_the_plugins_own_words() {
        let e = CniError::PluginFailed {
            plugin: "bridge".into(),
            command: "ADD",
            status: std::os::unix::process::ExitStatusExt::from_raw(1 << 8),
            code: Some(7),
            msg: "invalid CIDR address: 10.0.0.0/33".into(),
            details: "range set 0".into(),
        };
        assert_eq!(
            e.to_string(),
            "CNI plugin \"bridge\" failed on ADD: invalid CIDR address: \
             10.0.0.0/33: range set 0 (CNI error code 7, exit status: 1)"
        );
        let e = CniError::PluginNotFound {
            plugin: "flannel".into(),
            dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
        };
        assert_eq!(
            e.to_string(),
            "CNI plugin \"flannel\" not found in /opt/cni/bin:/usr/lib/cni"
        );
    }

    #[test]
    fn cni_errors_stay_small_enough_to_wrap() {
        // clippy's result_large_err limit, for the errors that wrap this one.
        assert!(std::mem::size_of::<CniError>() <= 128);
    }
}
