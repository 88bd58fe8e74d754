//! Reading what plugins print: an ADD result (the pod's addresses, for
//! `PodSandboxStatus`) or, when a plugin fails, its CNI error.

use std::net::IpAddr;

use serde_json::Value;

/// The outcome of a successful ADD: the pod's addresses, and the raw
/// result, kept with the sandbox to give DEL as `prevResult`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AddResult {
    /// The pod's addresses without prefix length, in result order, IPv4
    /// before IPv6 (CRI reports the first as the pod IP).
    pub ips: Vec<String>,
    /// The final plugin's result, as it printed it.
    pub result: Value,
}

/// The addresses of a CNI result: `ips[].address` (CNI 0.3.0 and later)
/// or `ip4.ip` / `ip6.ip` (0.1.0, 0.2.0), without prefix length, IPv4
/// first. Errors say what is wrong with the result.
pub(crate) fn result_ips(result: &Value) -> Result<Vec<String>, String> {
    let obj = result
        .as_object()
        .ok_or_else(|| format!("not a JSON object: {}", short(&result.to_string())))?;
    let mut cidrs: Vec<&Value> = Vec::new();
    match obj.get("ips") {
        Some(ips) => {
            let list = ips.as_array().ok_or("\"ips\" is not a list")?;
            for ip in list {
                cidrs.push(ip.get("address").ok_or("an \"ips\" entry has no address")?);
            }
        }
        None => {
            for key in ["ip4", "ip6"] {
                if let Some(block) = obj.get(key) {
                    cidrs.push(
                        block
                            .get("ip")
                            .ok_or_else(|| format!("\"{key}\" has no \"ip\""))?,
                    );
                }
            }
        }
    }
    let mut addrs: Vec<IpAddr> = Vec::with_capacity(cidrs.len());
    for c in cidrs {
        let s = c
            .as_str()
            .ok_or_else(|| format!("address {c} is not a string"))?;
        let host = s.split_once('/').map_or(s, |(h, _)| h);
        addrs.push(
            host.parse()
                .map_err(|_| format!("address {s:?} is not an IP address"))?,
        );
    }
    // A stable sort: the result's own order within each family.
    addrs.sort_by_key(|a| a.is_ipv6());
    Ok(addrs.iter().map(IpAddr::to_string).collect())
}

/// A failed plugin's error, in its own words.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PluginError {
    /// The CNI error code, when it printed a CNI error.
    pub code: Option<u64>,
    /// Its message.
    pub msg: String,
    /// The CNI error's details ("" when none).
    pub details: String,
}

/// What a plugin that exited unsuccessfully had to say: the CNI error
/// JSON on its stdout (`{"code", "msg", "details"}`), or else its stderr,
/// or else whatever text its stdout has.
pub(crate) fn plugin_error(stdout: &[u8], stderr: &[u8]) -> PluginError {
    if let Ok(Value::Object(e)) = serde_json::from_slice::<Value>(stdout) {
        let code = e.get("code").and_then(Value::as_u64);
        let msg = e.get("msg").and_then(Value::as_str).unwrap_or_default();
        if code.is_some() || !msg.is_empty() {
            return PluginError {
                code,
                msg: if msg.is_empty() {
                    "no message".to_string()
                } else {
                    msg.to_string()
                },
                details: e
                    .get("details")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            };
        }
    }
    let text = [stderr, stdout]
        .into_iter()
        .map(|b| String::from_utf8_lossy(b).trim().to_string())
        .find(|t| !t.is_empty())
        .unwrap_or_else(|| "no error output".to_string());
    PluginError {
        code: None,
        msg: text,
        details: String::new(),
    }
}

/// Text cut short enough for an error message.
pub(crate) fn short(s: &str) -> String {
    const MAX: usize = 200;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn current_results_give_addresses_without_prefix() {
        let r = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": "/run/x/net"}],
            "ips": [{"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 0}],
        });
        assert_eq!(result_ips(&r).expect("ips"), ["10.88.0.5"]);
        let r = json!({"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.1.2.3/24"}]});
        assert_eq!(result_ips(&r).expect("ips"), ["10.1.2.3"]);
    }

    #[test]
    fn ipv4_comes_before_ipv6_in_result_order_otherwise() {
        let r = json!({"cniVersion": "1.0.0", "ips": [
            {"address": "fd00::5/64"},
            {"address": "10.0.0.9/24"},
            {"address": "fd00::6/64"},
            {"address": "10.0.0.2/24"},
        ]});
        assert_eq!(
            result_ips(&r).expect("ips"),
            ["10.0.0.9", "10.0.0.2", "fd00::5", "fd00::6"]
        );
    }

    #[test]
    fn old_results_give_ip4_and_ip6() {
        let r = json!({
            "cniVersion": "0.2.0",
            "ip6": {"ip": "fd00::5/64"},
            "ip4": {"ip": "10.88.0.5/16", "gateway": "10.88.0.1"},
        });
        assert_eq!(result_ips(&r).expect("ips"), ["10.88.0.5", "fd00::5"]);
    }

    #[test]
    fn a_result_without_addresses_is_empty() {
        assert!(result_ips(&json!({"cniVersion": "1.0.0"}))
            .expect("ips")
            .is_empty());
        assert!(result_ips(&json!({"cniVersion": "1.0.0", "ips": []}))
            .expect("ips")
            .is_empty());
    }

    #[test]
    fn malformed_results_are_refused() {
        for r in [
            json!("10.0.0.1"),
            json!({"ips": "10.0.0.1/24"}),
            json!({"ips": [{"gateway": "10.0.0.1"}]}),
            json!({"ips": [{"address": 7}]}),
            json!({"ips": [{"address": "not-an-ip/24"}]}),
            json!({"ip4": {"gateway": "10.0.0.1"}}),
        ] {
            assert!(result_ips(&r).is_err(), "{r}");
        }
    }

    #[test]
    fn cni_errors_are_read_from_stdout() {
        let e = plugin_error(
            br#"{"cniVersion":"1.0.0","code":7,"msg":"Invalid Configuration","details":"Network 192.168.0.0/31 too small"}"#,
            b"some log line\n",
        );
        assert_eq!(
            e,
            PluginError {
                code: Some(7),
                msg: "Invalid Configuration".into(),
                details: "Network 192.168.0.0/31 too small".into(),
            }
        );
    }

    #[test]
    fn without_a_cni_error_stderr_is_the_message() {
        let e = plugin_error(b"", b"panic: runtime error\n");
        assert_eq!(e.code, None);
        assert_eq!(e.msg, "panic: runtime error");
        let e = plugin_error(b"{}", b"");
        assert_eq!(e.msg, "{}");
        let e = plugin_error(b"plain words", b"");
        assert_eq!(e.msg, "plain words");
        let e = plugin_error(b"", b"  \n");
        assert_eq!(e.msg, "no error output");
    }
}
