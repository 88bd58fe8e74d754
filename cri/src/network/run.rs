//! Running a network's plugin chain on a pod: ADD in order when the pod
//! starts, DEL in reverse when it stops, each plugin a child process told
//! what to do through `CNI_*` variables and its stdin configuration, as the
//! CNI spec and libcni have it.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::chain::{del_takes_prev_result, plugin_config};
use super::conf::plugin_type;
use super::result::{plugin_error, result_ips, short, AddResult};
use super::{CniError, NetworkConf, PodNetwork};

/// How long one plugin may run before it is killed: a guard against a
/// plugin hung on a lock or a dead API server, not a performance limit.
pub const PLUGIN_TIMEOUT: Duration = Duration::from_secs(120);

/// `PATH` for plugins when the daemon has none: `portmap`, `bridge` and
/// friends run `iptables` and the like.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A CNI command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    Add,
    Del,
}

impl Command {
    fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
        }
    }
}

/// Sets the pod's network up: runs every plugin of `conf` in order with
/// `CNI_COMMAND=ADD`, each given the previous one's result, and returns
/// the last one's. Every plugin binary is looked up before any runs. A
/// plugin failing part-way leaves what the earlier ones (and it) made:
/// the caller runs `del` to clean up, as containerd does.
pub async fn add(
    conf: &NetworkConf,
    bin_dirs: &[PathBuf],
    pod: &PodNetwork,
) -> Result<AddResult, CniError> {
    add_with_timeout(conf, bin_dirs, pod, PLUGIN_TIMEOUT).await
}

/// Tears the pod's network down: runs every plugin of `conf` in reverse
/// order with `CNI_COMMAND=DEL`, each given `prev` (the saved ADD result)
/// from CNI 0.4.0 on. Safe to repeat, and to call for a pod never (or
/// half) set up, as far as the plugins allow. When the pod's network
/// namespace is gone (or its pin is no longer a namespace) the plugins are
/// given an empty `CNI_NETNS`, which tells them to release what they hold
/// outside it (addresses, NAT rules); as go-cni does, a plugin that then
/// fails with "no such file or directory", or with "not found", is taken
/// to have nothing left to delete.
pub async fn del(
    conf: &NetworkConf,
    bin_dirs: &[PathBuf],
    pod: &PodNetwork,
    prev: Option<&Value>,
) -> Result<(), CniError> {
    del_with_timeout(conf, bin_dirs, pod, prev, PLUGIN_TIMEOUT).await
}

async fn add_with_timeout(
    conf: &NetworkConf,
    bin_dirs: &[PathBuf],
    pod: &PodNetwork,
    limit: Duration,
) -> Result<AddResult, CniError> {
    let chain = resolve(conf, bin_dirs)?;
    let env = plugin_env(Command::Add, pod, pod.netns.as_os_str(), bin_dirs)?;
    let caps = pod.capability_args();
    let mut prev: Option<Value> = None;
    let mut last = "";
    for p in &chain {
        let stdin = plugin_config(conf, p.conf, prev.as_ref(), &caps);
        let out = exec(p, Command::Add, &pod.id, &env, &stdin, limit).await?;
        let result: Value = serde_json::from_slice(&out).map_err(|e| CniError::BadResult {
            plugin: p.name.to_string(),
            command: Command::Add.as_str(),
            reason: format!("{e}: {:?}", short(&String::from_utf8_lossy(&out))),
        })?;
        prev = Some(result);
        last = p.name;
    }
    let result = prev.ok_or_else(|| CniError::BadConfig {
        path: conf.path.clone(),
        reason: "no plugins".to_string(),
    })?;
    let ips = result_ips(&result).map_err(|reason| CniError::BadResult {
        plugin: last.to_string(),
        command: Command::Add.as_str(),
        reason,
    })?;
    Ok(AddResult { ips, result })
}

async fn del_with_timeout(
    conf: &NetworkConf,
    bin_dirs: &[PathBuf],
    pod: &PodNetwork,
    prev: Option<&Value>,
    limit: Duration,
) -> Result<(), CniError> {
    // A plugin whose binary is gone cannot be asked to undo anything;
    // refusing the whole DEL for it would make the pod unremovable.
    let chain: Vec<Plugin<'_>> = match resolve(conf, bin_dirs) {
        Ok(c) => c,
        Err(CniError::PluginNotFound { .. }) => conf
            .plugin_confs
            .iter()
            .filter_map(|c| {
                let name = plugin_type(c)?;
                match find_plugin(name, bin_dirs) {
                    Some(path) => Some(Plugin {
                        name,
                        path,
                        conf: c,
                    }),
                    None => {
                        tracing::warn!(plugin = name, pod = %pod.id, "CNI DEL: plugin binary not found; skipped");
                        None
                    }
                }
            })
            .collect(),
        Err(e) => return Err(e),
    };
    let netns: &OsStr = if is_netns(&pod.netns) {
        pod.netns.as_os_str()
    } else {
        OsStr::new("")
    };
    let env = plugin_env(Command::Del, pod, netns, bin_dirs)?;
    let caps = pod.capability_args();
    let prev = prev.filter(|_| del_takes_prev_result(conf));
    for p in chain.iter().rev() {
        let stdin = plugin_config(conf, p.conf, prev, &caps);
        match exec(p, Command::Del, &pod.id, &env, &stdin, limit).await {
            Ok(_) => {}
            Err(CniError::PluginFailed { ref msg, .. }) if nothing_left(msg, netns.is_empty()) => {
                tracing::warn!(
                    plugin = p.name,
                    pod = %pod.id,
                    error = %msg,
                    "CNI DEL found nothing to delete; going on"
                );
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether a DEL failure means the plugin had nothing left to delete
/// (go-cni's rule, for plugins that do not handle it themselves).
fn nothing_left(msg: &str, netns_gone: bool) -> bool {
    (netns_gone && msg.contains("no such file or directory")) || msg.contains("not found")
}

/// Whether `p` is a network namespace (still pinned, or a /proc one).
fn is_netns(p: &Path) -> bool {
    !p.as_os_str().is_empty()
        && nix::sys::statfs::statfs(p)
            .is_ok_and(|st| st.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

/// One plugin of the chain, ready to run.
struct Plugin<'a> {
    /// Its type.
    name: &'a str,
    /// Its binary.
    path: PathBuf,
    /// Its configuration.
    conf: &'a Map<String, Value>,
}

/// Finds the binary of every plugin of the chain.
fn resolve<'a>(conf: &'a NetworkConf, bin_dirs: &[PathBuf]) -> Result<Vec<Plugin<'a>>, CniError> {
    if conf.plugin_confs.is_empty() {
        return Err(CniError::BadConfig {
            path: conf.path.clone(),
            reason: "no plugins".to_string(),
        });
    }
    conf.plugin_confs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let name = plugin_type(c).ok_or_else(|| CniError::BadConfig {
                path: conf.path.clone(),
                reason: format!("plugin {i} has no type"),
            })?;
            let path = find_plugin(name, bin_dirs).ok_or_else(|| {
                if name.contains('/') || name == "." || name == ".." {
                    CniError::BadConfig {
                        path: conf.path.clone(),
                        reason: format!("plugin type {name:?} is not a file name"),
                    }
                } else {
                    CniError::PluginNotFound {
                        plugin: name.to_string(),
                        dirs: bin_dirs.to_vec(),
                    }
                }
            })?;
            Ok(Plugin {
                name,
                path,
                conf: c,
            })
        })
        .collect()
}

/// The first `<dir>/<name>` that is a file, as libcni's `FindInPath`; never
/// anything outside the bin dirs.
fn find_plugin(name: &str, bin_dirs: &[PathBuf]) -> Option<PathBuf> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return None;
    }
    bin_dirs.iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// The `CNI_*` variables of one command for `pod`.
fn plugin_env(
    cmd: Command,
    pod: &PodNetwork,
    netns: &OsStr,
    bin_dirs: &[PathBuf],
) -> Result<Vec<(&'static str, OsString)>, CniError> {
    let mut cni_path = OsString::new();
    for (i, d) in bin_dirs.iter().enumerate() {
        if i > 0 {
            cni_path.push(":");
        }
        cni_path.push(d);
    }
    Ok(vec![
        ("CNI_COMMAND", cmd.as_str().into()),
        ("CNI_CONTAINERID", pod.id.clone().into()),
        ("CNI_NETNS", netns.to_os_string()),
        ("CNI_IFNAME", pod.ifname.clone().into()),
        ("CNI_ARGS", pod.cni_args()?.into()),
        ("CNI_PATH", cni_path),
    ])
}

/// Runs one plugin and returns its stdout; a non-zero exit is its CNI
/// error. The plugin inherits the daemon's environment (its `PATH` above
/// all) with the `CNI_*` variables set, runs in a process group of its own,
/// and that group is killed if it outlives `limit`.
async fn exec(
    p: &Plugin<'_>,
    cmd: Command,
    pod_id: &str,
    env: &[(&'static str, OsString)],
    stdin: &Value,
    limit: Duration,
) -> Result<Vec<u8>, CniError> {
    let command = cmd.as_str();
    let io_err = |source| CniError::Spawn {
        plugin: p.name.to_string(),
        path: p.path.clone(),
        command,
        source,
    };
    let input = serde_json::to_vec(stdin).map_err(|e| io_err(e.into()))?;
    tracing::debug!(plugin = p.name, command, pod = pod_id, path = %p.path.display(), "running CNI plugin");
    let mut c = tokio::process::Command::new(&p.path);
    c.envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if std::env::var_os("PATH").is_none() {
        c.env("PATH", DEFAULT_PATH);
    }
    let mut child = c.spawn().map_err(io_err)?;
    let pid = child.id();
    let (stdin_pipe, stdout_pipe, stderr_pipe) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let run = async {
        let feed = async {
            if let Some(mut s) = stdin_pipe {
                // A plugin may exit without reading it all; its exit
                // status says what happened.
                let _ = s.write_all(&input).await;
            }
        };
        let (_, out, err) = tokio::join!(feed, read_all(stdout_pipe), read_all(stderr_pipe));
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, out?, err?))
    };
    let (status, out, err) = match tokio::time::timeout(limit, run).await {
        Ok(r) => r.map_err(io_err)?,
        Err(_) => {
            kill_group(pid);
            let _ = child.kill().await;
            tracing::warn!(
                plugin = p.name,
                command,
                pod = pod_id,
                "CNI plugin timed out; killed"
            );
            return Err(CniError::Timeout {
                plugin: p.name.to_string(),
                path: p.path.clone(),
                command,
                secs: limit.as_secs(),
            });
        }
    };
    let stderr_text = String::from_utf8_lossy(&err);
    tracing::debug!(
        plugin = p.name,
        command,
        pod = pod_id,
        %status,
        stderr = %stderr_text.trim(),
        "CNI plugin finished"
    );
    if status.success() {
        return Ok(out);
    }
    let e = plugin_error(&out, &err);
    Err(CniError::PluginFailed {
        plugin: p.name.to_string(),
        command,
        status,
        code: e.code,
        msg: e.msg,
        details: e.details,
    })
}

async fn read_all<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if let Some(mut r) = pipe {
        r.read_to_end(&mut buf).await?;
    }
    Ok(buf)
}

/// Kills the process group a timed-out plugin leads, its children too
/// (an `iptables` it waits for, say). The leader is not reaped yet, so
/// the group id cannot have been reused.
fn kill_group(pid: Option<u32>) {
    if let Some(pgid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    use serde_json::json;

    use crate::network::{parse_conf, PortMapping};

    /// Writes an executable shell script plugin.
    fn script(dir: &Path, name: &str, body: &str) {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write plugin");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn pod() -> PodNetwork {
        PodNetwork {
            id: "sandbox1".into(),
            netns: "/proc/self/ns/net".into(),
            ifname: "eth0".into(),
            pod_name: "web".into(),
            pod_namespace: "default".into(),
            pod_uid: "uid-1".into(),
            port_mappings: vec![PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: String::new(),
            }],
            pod_cidr: String::new(),
        }
    }

    fn conf(dir: &Path, text: &str) -> NetworkConf {
        parse_conf(&dir.join("10-test.conflist"), text).expect("conf")
    }

    /// A plugin that records its stdin and environment under `log` and
    /// prints `result`.
    fn recorder(dir: &Path, name: &str, log: &Path, result: &str) {
        script(
            dir,
            name,
            &format!(
                "cat > {log}/{name}.$CNI_COMMAND.json\n\
                 env | grep -E '^(CNI_|PATH=)' | sort > {log}/{name}.$CNI_COMMAND.env\n\
                 echo {name}.$CNI_COMMAND >> {log}/order\n\
                 echo '{result}'",
                log = log.display()
            ),
        );
    }

    #[tokio::test]
    async fn add_chains_results_and_del_runs_in_reverse() {
        let d = tempfile::tempdir().expect("tmp");
        let (bin, log) = (d.path().join("bin"), d.path().join("log"));
        std::fs::create_dir_all(&bin).expect("mkdir");
        std::fs::create_dir_all(&log).expect("mkdir");
        recorder(
            &bin,
            "first",
            &log,
            r#"{"cniVersion":"1.0.0","ips":[{"address":"fd00::2/64"},{"address":"10.1.0.2/24"}]}"#,
        );
        recorder(
            &bin,
            "second",
            &log,
            r#"{"cniVersion":"1.0.0","ips":[{"address":"fd00::3/64"},{"address":"10.1.0.3/24"}]}"#,
        );
        let c = conf(
            d.path(),
            r#"{"cniVersion":"1.0.0","name":"t","plugins":[
                {"type":"first"},
                {"type":"second","capabilities":{"portMappings":true}}]}"#,
        );
        let bins = [d.path().join("missing"), bin.clone()];
        let r = add(&c, &bins, &pod()).await.expect("add");
        assert_eq!(r.ips, ["10.1.0.3", "fd00::3"]);
        let first: Value = serde_json::from_slice(
            &std::fs::read(log.join("first.ADD.json")).expect("stdin of first"),
        )
        .expect("json");
        assert_eq!(
            first,
            json!({"type": "first", "name": "t", "cniVersion": "1.0.0"})
        );
        let second: Value = serde_json::from_slice(
            &std::fs::read(log.join("second.ADD.json")).expect("stdin of second"),
        )
        .expect("json");
        assert_eq!(second["prevResult"]["ips"][1]["address"], "10.1.0.2/24");
        assert_eq!(
            second["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
        );
        let env = std::fs::read_to_string(log.join("first.ADD.env")).expect("env");
        let want_path = format!("CNI_PATH={}:{}", bins[0].display(), bins[1].display());
        for want in [
            "CNI_COMMAND=ADD",
            "CNI_CONTAINERID=sandbox1",
            "CNI_NETNS=/proc/self/ns/net",
            "CNI_IFNAME=eth0",
            "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;\
             K8S_POD_INFRA_CONTAINER_ID=sandbox1;K8S_POD_UID=uid-1",
            &want_path,
        ] {
            assert!(env.lines().any(|l| l == want), "{want} not in\n{env}");
        }
        assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");

        del(&c, &bins, &pod(), Some(&r.result)).await.expect("del");
        let order = std::fs::read_to_string(log.join("order")).expect("order");
        let order: Vec<&str> = order.lines().collect();
        assert_eq!(
            order,
            ["first.ADD", "second.ADD", "second.DEL", "first.DEL"]
        );
        for name in ["first", "second"] {
            let stdin: Value = serde_json::from_slice(
                &std::fs::read(log.join(format!("{name}.DEL.json"))).expect("stdin"),
            )
            .expect("json");
            assert_eq!(stdin["prevResult"], r.result, "{name}");
        }
    }

    #[tokio::test]
    async fn del_of_a_vanished_netns_passes_an_empty_netns() {
        let d = tempfile::tempdir().expect("tmp");
        let log = d.path().join("log");
        std::fs::create_dir_all(&log).expect("mkdir");
        recorder(d.path(), "rec", &log, "");
        let c = conf(
            d.path(),
            r#"{"cniVersion":"0.3.1","name":"t","type":"rec"}"#,
        );
        let p = PodNetwork {
            netns: d.path().join("gone/net"),
            ..pod()
        };
        del(&c, &[d.path().to_path_buf()], &p, Some(&json!({"ips": []})))
            .await
            .expect("del");
        let env = std::fs::read_to_string(log.join("rec.DEL.env")).expect("env");
        assert!(env.lines().any(|l| l == "CNI_NETNS="), "{env}");
        // 0.3.1 predates prevResult on DEL.
        let stdin: Value =
            serde_json::from_slice(&std::fs::read(log.join("rec.DEL.json")).expect("stdin"))
                .expect("json");
        assert!(stdin.get("prevResult").is_none(), "{stdin}");
    }

    #[tokio::test]
    async fn del_tolerates_plugins_with_nothing_left_to_delete() {
        let d = tempfile::tempdir().expect("tmp");
        script(
            d.path(),
            "gone",
            r#"echo '{"code":11,"msg":"open /run/x: no such file or directory"}'; exit 1"#,
        );
        let c = conf(
            d.path(),
            r#"{"cniVersion":"1.0.0","name":"t","type":"gone"}"#,
        );
        let bins = [d.path().to_path_buf()];
        let vanished = PodNetwork {
            netns: d.path().join("gone-netns"),
            ..pod()
        };
        del(&c, &bins, &vanished, None).await.expect("tolerated");
        // With the namespace still there, the same words are an error.
        let e = del(&c, &bins, &pod(), None)
            .await
            .expect_err("not tolerated");
        assert!(e.to_string().contains("no such file or directory"), "{e}");
    }

    #[tokio::test]
    async fn a_failing_plugin_without_a_cni_error_reports_its_stderr() {
        let d = tempfile::tempdir().expect("tmp");
        script(
            d.path(),
            "broken",
            "echo 'cannot frob the widget' >&2; exit 3",
        );
        let c = conf(
            d.path(),
            r#"{"cniVersion":"1.0.0","name":"t","type":"broken"}"#,
        );
        let e = add(&c, &[d.path().to_path_buf()], &pod())
            .await
            .expect_err("must fail");
        let s = e.to_string();
        assert!(s.contains("\"broken\""), "{s}");
        assert!(s.contains("cannot frob the widget"), "{s}");
        assert!(s.contains("exit status: 3"), "{s}");
    }

    #[tokio::test]
    async fn a_result_that_is_not_json_is_an_error() {
        let d = tempfile::tempdir().expect("tmp");
        script(d.path(), "chatty", "echo hello");
        let c = conf(
            d.path(),
            r#"{"cniVersion":"1.0.0","name":"t","type":"chatty"}"#,
        );
        let e = add(&c, &[d.path().to_path_buf()], &pod())
            .await
            .expect_err("must fail");
        assert!(matches!(e, CniError::BadResult { .. }), "{e}");
        assert!(e.to_string().contains("hello"), "{e}");
    }

    #[tokio::test]
    async fn a_hung_plugin_is_killed() {
        let d = tempfile::tempdir().expect("tmp");
        script(d.path(), "hang", "exec sleep 100000");
        let c = conf(
            d.path(),
            r#"{"cniVersion":"1.0.0","name":"t","type":"hang"}"#,
        );
        let e = add_with_timeout(
            &c,
            &[d.path().to_path_buf()],
            &pod(),
            Duration::from_secs(1),
        )
        .await
        .expect_err("must time out");
        assert!(matches!(e, CniError::Timeout { .. }), "{e}");
    }

    #[tokio::test]
    async fn missing_plugins_fail_before_any_plugin_runs() {
        let d = tempfile::tempdir().expect("tmp");
        let log = d.path().join("log");
        std::fs::create_dir_all(&log).expect("mkdir");
        recorder(d.path(), "rec", &log, r#"{"cniVersion":"1.0.0"}"#);
        let c = conf(
            d.path(),
            r#"{"cniVersion":"1.0.0","name":"t","plugins":[{"type":"rec"},{"type":"nope"}]}"#,
        );
        let e = add(&c, &[d.path().to_path_buf()], &pod())
            .await
            .expect_err("must fail");
        assert!(matches!(e, CniError::PluginNotFound { .. }), "{e}");
        assert!(!log.join("order").exists());
    }

    #[test]
    fn plugin_types_cannot_leave_the_bin_dirs() {
        let dirs = [PathBuf::from("/usr/lib/cni")];
        for bad in ["", ".", "..", "../../bin/sh", "/bin/sh"] {
            assert_eq!(find_plugin(bad, &dirs), None, "{bad}");
        }
    }
}
