//! What each plugin of a chain reads on stdin, built as libcni's
//! `buildOneConfig` does: its own configuration, plus the list's `name` and
//! `cniVersion`, the previous result, and the capability arguments it
//! declares.

use serde_json::{Map, Value};

use super::conf::parse_version;
use super::NetworkConf;

/// The first CNI version whose DEL is given the ADD result as `prevResult`.
const DEL_PREV_RESULT_SINCE: (u64, u64, u64) = (0, 4, 0);

/// One plugin's stdin configuration. `prev` is the previous plugin's
/// result on ADD (none for the first) or the saved ADD result on DEL;
/// `caps` are the capability arguments on offer, of which the plugin gets
/// those its `capabilities` object sets to true, as `runtimeConfig` (which
/// replaces any it has, and is absent when none apply).
pub(crate) fn plugin_config(
    conf: &NetworkConf,
    plugin: &Map<String, Value>,
    prev: Option<&Value>,
    caps: &Map<String, Value>,
) -> Value {
    let mut c = plugin.clone();
    c.insert("name".to_string(), Value::String(conf.name.clone()));
    c.insert(
        "cniVersion".to_string(),
        Value::String(conf.cni_version.clone()),
    );
    match prev {
        Some(p) => c.insert("prevResult".to_string(), p.clone()),
        None => c.remove("prevResult"),
    };
    let runtime: Map<String, Value> = plugin
        .get("capabilities")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, on)| on.as_bool() == Some(true))
        .filter_map(|(cap, _)| caps.get(cap).map(|v| (cap.clone(), v.clone())))
        .collect();
    if !runtime.is_empty() {
        c.insert("runtimeConfig".to_string(), Value::Object(runtime));
    }
    Value::Object(c)
}

/// Whether DEL passes the saved ADD result on: CNI 0.4.0 and later.
pub(crate) fn del_takes_prev_result(conf: &NetworkConf) -> bool {
    parse_version(&conf.cni_version).is_some_and(|v| v >= DEL_PREV_RESULT_SINCE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conf(version: &str, plugins: Value) -> NetworkConf {
        let confs: Vec<Map<String, Value>> = plugins
            .as_array()
            .expect("array")
            .iter()
            .map(|p| p.as_object().expect("object").clone())
            .collect();
        NetworkConf {
            path: "/etc/cni/net.d/10-pods.conflist".into(),
            name: "pods".into(),
            plugins: Vec::new(),
            cni_version: version.into(),
            plugin_confs: confs,
        }
    }

    fn caps() -> Map<String, Value> {
        json!({
            "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
            "ipRanges": [[{"subnet": "10.244.0.0/24"}]],
        })
        .as_object()
        .expect("object")
        .clone()
    }

    #[test]
    fn the_first_plugin_gets_name_and_version_but_no_prev_result() {
        let c = conf(
            "1.0.0",
            json!([{"type": "bridge", "bridge": "cni0", "cniVersion": "0.3.1", "name": "x"}]),
        );
        assert_eq!(
            plugin_config(&c, &c.plugin_confs[0], None, &caps()),
            json!({"type": "bridge", "bridge": "cni0", "cniVersion": "1.0.0", "name": "pods"})
        );
    }

    #[test]
    fn later_plugins_get_the_previous_result() {
        let c = conf("1.0.0", json!([{"type": "bridge"}, {"type": "tuning"}]));
        let prev = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.88.0.5/16"}]});
        assert_eq!(
            plugin_config(&c, &c.plugin_confs[1], Some(&prev), &Map::new()),
            json!({"type": "tuning", "cniVersion": "1.0.0", "name": "pods", "prevResult": prev})
        );
    }

    #[test]
    fn runtime_config_holds_only_the_declared_capabilities() {
        let c = conf(
            "1.0.0",
            json!([
                {"type": "portmap", "capabilities": {"portMappings": true, "ipRanges": false}},
                {"type": "host-local", "capabilities": {"ipRanges": true, "bandwidth": true}},
                {"type": "bridge", "runtimeConfig": {"stale": 1}},
            ]),
        );
        let got = plugin_config(&c, &c.plugin_confs[0], None, &caps());
        assert_eq!(
            got["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
        );
        let got = plugin_config(&c, &c.plugin_confs[1], None, &caps());
        assert_eq!(
            got["runtimeConfig"],
            json!({"ipRanges": [[{"subnet": "10.244.0.0/24"}]]})
        );
        // Declaring nothing changes nothing.
        let got = plugin_config(&c, &c.plugin_confs[2], None, &caps());
        assert_eq!(got["runtimeConfig"], json!({"stale": 1}));
    }

    #[test]
    fn no_port_mappings_means_no_runtime_config() {
        let c = conf(
            "1.0.0",
            json!([{"type": "portmap", "capabilities": {"portMappings": true}}]),
        );
        let got = plugin_config(&c, &c.plugin_confs[0], None, &Map::new());
        assert!(got.get("runtimeConfig").is_none(), "{got}");
    }

    #[test]
    fn del_gets_the_add_result_from_cni_0_4_0_on() {
        for (v, want) in [
            ("", false),
            ("0.2.0", false),
            ("0.3.1", false),
            ("0.4.0", true),
            ("1.0.0", true),
            ("1.1", true),
        ] {
            assert_eq!(del_takes_prev_result(&conf(v, json!([]))), want, "{v}");
        }
    }
}
