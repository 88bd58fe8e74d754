//! The daemon itself over its socket: Version, Status, RuntimeConfig,
//! UpdateRuntimeConfig, honest Unimplemented answers, the socket's
//! permissions and life cycle.

use std::os::unix::fs::PermissionsExt;

use carapace_e2e::Daemon;
use k8s_cri::v1 as cri;

#[tokio::test(flavor = "current_thread")]
async fn version_and_runtime_config_answer_over_the_socket() {
    let d = Daemon::start("cgroup_driver = \"cgroupfs\"");
    let mut rt = d.runtime().await;
    let v = rt
        .version(cri::VersionRequest::default())
        .await
        .expect("version")
        .into_inner();
    assert_eq!(v.runtime_name, "carapace");
    assert_eq!(v.runtime_api_version, "v1");
    let c = rt
        .runtime_config(cri::RuntimeConfigRequest::default())
        .await
        .expect("runtime config")
        .into_inner();
    assert_eq!(
        c.linux.expect("linux").cgroup_driver,
        cri::CgroupDriver::Cgroupfs as i32
    );
    let mode = std::fs::metadata(d.socket())
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);
}

#[tokio::test(flavor = "current_thread")]
async fn network_becomes_ready_when_a_cni_config_appears() {
    let d = Daemon::start("");
    let mut rt = d.runtime().await;
    let ready = |s: &cri::StatusResponse, kind: &str| {
        s.status
            .as_ref()
            .and_then(|st| st.conditions.iter().find(|c| c.r#type == kind))
            .map(|c| (c.status, c.reason.clone()))
    };
    let s = rt
        .status(cri::StatusRequest { verbose: true })
        .await
        .expect("status")
        .into_inner();
    assert_eq!(ready(&s, "RuntimeReady"), Some((true, String::new())));
    assert_eq!(
        ready(&s, "NetworkReady"),
        Some((false, "NetworkPluginNotReady".to_string()))
    );
    assert!(s.info.contains_key("config"), "{:?}", s.info.keys());
    std::fs::write(
        d.cni_dir().join("10-pods.conflist"),
        r#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge"}]}"#,
    )
    .expect("write conflist");
    let s = rt
        .status(cri::StatusRequest { verbose: false })
        .await
        .expect("status")
        .into_inner();
    assert_eq!(ready(&s, "NetworkReady"), Some((true, String::new())));
    assert!(s.runtime_handlers.iter().any(|h| h.name == "carapace"));
    // The default handler is listed under "" as well (kubelet and critest
    // look its features up there), with the default's features.
    let features = |name: &str| {
        s.runtime_handlers
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.features)
    };
    assert!(features("").is_some(), "{:?}", s.runtime_handlers);
    assert_eq!(features(""), features("carapace"));
}

#[tokio::test(flavor = "current_thread")]
async fn pod_cidr_updates_are_validated() {
    let d = Daemon::start("");
    let mut rt = d.runtime().await;
    let req = |cidr: &str| cri::UpdateRuntimeConfigRequest {
        runtime_config: Some(cri::RuntimeConfig {
            network_config: Some(cri::NetworkConfig {
                pod_cidr: cidr.into(),
            }),
        }),
    };
    rt.update_runtime_config(req("10.88.0.0/16"))
        .await
        .expect("valid CIDR");
    let e = rt
        .update_runtime_config(req("10.88.0.0/40"))
        .await
        .expect_err("invalid CIDR");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let s = rt
        .status(cri::StatusRequest { verbose: true })
        .await
        .expect("status")
        .into_inner();
    assert_eq!(
        s.info.get("podCIDR").map(String::as_str),
        Some("10.88.0.0/16")
    );
}

/// CheckpointContainer checks its container, then the node's CRIU: where
/// `criu check` fails (or CRIU is missing) it is FailedPrecondition saying
/// why, and writes nothing; where CRIU works it writes the archive (the
/// checkpoint suite tests that archive and its restore).
#[tokio::test(flavor = "current_thread")]
async fn checkpoint_names_what_stands_in_its_way() {
    use carapace_e2e::workload::{busybox_container, busybox_pod, run};
    let (d, mut rt, pod, pc) = busybox_pod("ckpt", |_| {}).await;
    let e = rt
        .checkpoint_container(cri::CheckpointContainerRequest {
            container_id: "0".repeat(64),
            ..Default::default()
        })
        .await
        .expect_err("checkpointed a container that does not exist");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let id = run(
        &mut rt,
        &pod,
        &pc,
        busybox_container("ckpt", &["sleep", "3600"], Default::default()),
    )
    .await;
    let location = d.dir.path().join("ckpt.tar");
    let r = rt
        .checkpoint_container(cri::CheckpointContainerRequest {
            container_id: id,
            location: location.display().to_string(),
            timeout: 60,
        })
        .await;
    let info = rt
        .status(cri::StatusRequest { verbose: true })
        .await
        .expect("status")
        .into_inner()
        .info;
    let criu = info.get("checkpoint").cloned().unwrap_or_default();
    if criu.starts_with("unusable") {
        let e = r.expect_err("CheckpointContainer succeeded where CRIU cannot run");
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains("criu"), "{e:?}");
        assert!(!location.exists());
    } else {
        assert!(criu.ends_with("ready"), "{criu}");
        r.expect("CheckpointContainer where CRIU is ready");
        assert!(location.is_file());
    }
}

#[test]
fn sigterm_stops_serving_and_removes_the_socket() {
    let mut d = Daemon::start("");
    let st = d.stop(nix::sys::signal::Signal::SIGTERM);
    assert!(st.success(), "exit status {st}:\n{}", d.log());
    assert!(!d.socket().exists(), "socket left behind");
    // A stale socket (daemon killed) is replaced on the next start.
    d.spawn();
    d.stop(nix::sys::signal::Signal::SIGKILL);
    assert!(d.socket().exists());
    d.spawn();
    // A second daemon on a live socket refuses, leaving the first alone.
    let out = std::process::Command::new(carapace_e2e::daemon_bin())
        .arg("--config")
        .arg(d.config_path())
        .output()
        .expect("second daemon");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another daemon is serving"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::os::unix::net::UnixStream::connect(d.socket()).is_ok());
}

/// Under systemd, stderr is the journal's stream and systemd names it in
/// JOURNAL_STREAM ("dev:ino"). The daemon then leads each line with its
/// syslog priority and leaves the timestamp to the journal; a stream that
/// is not its stderr changes nothing.
#[test]
fn log_lines_carry_syslog_priorities_when_stderr_is_the_journal() {
    use std::os::unix::fs::MetadataExt;
    // The socket accepts connections from its bind on, a moment before
    // the line is written: wait for the line, within the hang guard.
    let serve_line = |d: &Daemon| {
        let deadline = std::time::Instant::now() + carapace_e2e::HANG_GUARD;
        loop {
            let log = d.log();
            if let Some(l) = log.lines().find(|l| l.contains("carapace serving CRI")) {
                return l.to_string();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no start-up line:\n{log}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    // The journal's stream: the daemon's own stderr, the log file here.
    let mut d = Daemon::configure("");
    std::fs::write(d.log_path(), "").expect("create log");
    let st = std::fs::metadata(d.log_path()).expect("stat log");
    d.env.push((
        "JOURNAL_STREAM".into(),
        format!("{}:{}", st.dev(), st.ino()),
    ));
    d.spawn();
    let line = serve_line(&d);
    assert!(line.starts_with("<6> INFO "), "{line}");
    assert!(
        !line.contains("Z "),
        "a timestamp in a journal line: {line}"
    );
    d.stop(nix::sys::signal::Signal::SIGTERM);
    assert!(
        d.log().lines().all(|l| l.starts_with('<')),
        "a line without a priority:\n{}",
        d.log()
    );
    // A stream that is not our stderr (inherited by a child, say).
    let mut d = Daemon::configure("");
    d.env.push((
        "JOURNAL_STREAM".into(),
        format!("{}:{}", st.dev(), st.ino() + 1),
    ));
    d.spawn();
    let line = serve_line(&d);
    assert!(!line.starts_with('<'), "{line}");
    assert!(
        line.contains("Z "),
        "no timestamp outside the journal: {line}"
    );
    d.stop(nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn bad_config_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("c.toml");
    // The daemon's stderr for a config file holding `text`; it must fail.
    let refused = |text: &str| {
        std::fs::write(&p, text).expect("write");
        let out = std::process::Command::new(carapace_e2e::daemon_bin())
            .arg("--config")
            .arg(&p)
            .output()
            .expect("run carapace");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = refused("cgroup_driver = \"nope\"\n");
    assert!(err.contains("cgroup_driver"), "{err}");
    // Without systemd as PID 1 (this host lane) the systemd driver is
    // refused at start, not reported to kubelet and failed per pod.
    assert!(
        !std::path::Path::new("/run/systemd/system").exists(),
        "this test expects a host without systemd; the systemd lane tests the driver"
    );
    let err = refused("cgroup_driver = \"systemd\"\n");
    assert!(
        err.contains("cgroup_driver = \"systemd\"")
            && err.contains("systemd is not running")
            && err.contains("cgroupfs"),
        "{err}"
    );
    // `config default` prints a config that loads back as the defaults.
    let out = std::process::Command::new(carapace_e2e::daemon_bin())
        .args(["config", "default"])
        .output()
        .expect("config default");
    assert!(out.status.success());
    std::fs::write(&p, &out.stdout).expect("write default");
    let shown = std::process::Command::new(carapace_e2e::daemon_bin())
        .arg("--config")
        .arg(&p)
        .args(["config", "show"])
        .output()
        .expect("config show");
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
}

/// Frames of a raw HTTP/2 client: (type, flags, stream, payload).
fn h2_frame(typ: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut v = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, typ, flags];
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn read_h2_frame(s: &mut std::os::unix::net::UnixStream) -> (u8, u8, u32, Vec<u8>) {
    use std::io::Read;
    let mut h = [0u8; 9];
    s.read_exact(&mut h).expect("frame header");
    let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).expect("frame payload");
    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
    (h[3], h[4], stream, p)
}

/// gRPC C-core (Python, Ruby, C++), grpc-java and grpc-dotnet send the
/// socket's path as `:authority`, which tonic's HTTP/2 stack alone resets
/// with PROTOCOL_ERROR. A raw HTTP/2 client sending exactly that gets a
/// normal Version answer.
#[test]
fn a_client_sending_the_socket_path_as_authority_gets_an_answer() {
    use std::io::Write;
    let d = Daemon::start("");
    let sock = d.socket();
    let mut s = std::os::unix::net::UnixStream::connect(&sock).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("timeout");
    let authority = sock.to_str().expect("utf-8 path").as_bytes().to_vec();
    let headers: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", b"/runtime.v1.RuntimeService/Version"),
        (b":authority", &authority),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ];
    let block = loona_hpack::Encoder::new().encode(headers);
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(0x4, 0, 0, &[])); // SETTINGS
    out.extend(h2_frame(0x1, 0x4, 1, &block)); // HEADERS, END_HEADERS
    out.extend(h2_frame(0x0, 0x1, 1, &[0, 0, 0, 0, 0])); // an empty VersionRequest
    s.write_all(&out).expect("send");
    let mut decoder = loona_hpack::Decoder::new();
    let (mut status, mut grpc_status, mut body) = (None, None, Vec::new());
    loop {
        let (typ, flags, stream, payload) = read_h2_frame(&mut s);
        match typ {
            0x4 if flags & 0x1 == 0 => s.write_all(&h2_frame(0x4, 0x1, 0, &[])).expect("ack"),
            0x3 if stream == 1 => panic!("stream reset with code {payload:?} (1: PROTOCOL_ERROR)"),
            0x7 => panic!("GOAWAY: {payload:?}"),
            0x0 if stream == 1 => body.extend_from_slice(&payload),
            0x1 if stream == 1 => {
                for (n, v) in decoder.decode(&payload).expect("hpack") {
                    match n.as_slice() {
                        b":status" => status = Some(v),
                        b"grpc-status" => grpc_status = Some(v),
                        _ => {}
                    }
                }
                if flags & 0x1 != 0 {
                    break;
                }
            }
            _ => {}
        }
    }
    assert_eq!(status.as_deref(), Some(&b"200"[..]));
    assert_eq!(grpc_status.as_deref(), Some(&b"0"[..]), "grpc-status");
    assert!(
        body.windows(8).any(|w| w == b"carapace"),
        "VersionResponse without the runtime name: {body:?}"
    );
}
