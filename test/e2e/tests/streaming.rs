//! Streaming Exec end to end: the CRI Exec call hands out a URL on the
//! daemon's streaming server, and a SPDY/3.1 remote-command client (as
//! kubectl and crictl speak it) runs a command there — stdin in, stdout
//! and stderr out, the exit code on the error channel, terminal resizes;
//! URLs are single-use; bad requests get clear statuses. Attach joins the
//! container's own stdio the same way, and PortForward reaches a pod's
//! ports. The same again over WebSocket: the remote-command channel
//! protocols (v5 with its stdin close signal, v4, base64, the original)
//! and port forwarding as SPDY tunnelled through WebSocket or kubelet's
//! channel protocol. The server over TLS when configured, URLs that
//! expire, and an attach client that vanishes while the container is
//! silent.

use carapace_e2e::workload::{create, pull, run_pod, start, Rt};
use carapace_e2e::{pod_config, require_registry, Daemon};
use carapace_e2e::{spdy_client, ws_client};
use k8s_cri::v1 as cri;

const BUSYBOX: &str = "127.0.0.1:5000/test/busybox:latest";

/// A daemon with a running `sleep` container: (daemon, client, container).
async fn running_container() -> (Daemon, Rt, String) {
    running(|_| {}).await
}

/// A daemon with a running container as `adjust` makes it.
async fn running(adjust: impl FnOnce(&mut cri::ContainerConfig)) -> (Daemon, Rt, String) {
    running_with("", adjust).await
}

/// A daemon with `extra` config and a running container as `adjust`
/// makes it.
async fn running_with(
    extra: &str,
    adjust: impl FnOnce(&mut cri::ContainerConfig),
) -> (Daemon, Rt, String) {
    require_registry();
    let d = Daemon::start_with_network(
        &format!("[registry]\ninsecure = [\"127.0.0.1:5000\"]\n{extra}"),
        &[],
    );
    pull(&d, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let pc = pod_config("streaming");
    let pod = run_pod(&mut rt, pc.clone()).await;
    let cfg = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: BUSYBOX.into(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "1000".into()],
        linux: Some(cri::LinuxContainerConfig::default()),
        ..Default::default()
    };
    let mut cfg = cfg;
    adjust(&mut cfg);
    let id = create(&mut rt, &pod, &pc, cfg).await.expect("create");
    start(&mut rt, &id).await;
    (d, rt, id)
}

fn request(id: &str, cmd: &[&str], stdin: bool, tty: bool) -> cri::ExecRequest {
    cri::ExecRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin,
        stdout: true,
        stderr: !tty,
    }
}

async fn url(rt: &mut Rt, req: cri::ExecRequest) -> Result<String, tonic::Status> {
    rt.exec(req).await.map(|r| r.into_inner().url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_streams_stdio_and_the_exit_code_over_spdy() {
    let (_d, mut rt, id) = running_container().await;
    let script = "cat; echo err >&2; exit 5";
    let u = url(&mut rt, request(&id, &["sh", "-c", script], true, false))
        .await
        .expect("exec url");
    assert!(u.starts_with("http://127.0.0.1:"), "{u}");
    let out = spdy_client::exec(
        &u,
        &["v4.channel.k8s.io", "v3.channel.k8s.io"],
        &["error", "stdin", "stdout", "stderr"],
        b"piped in\n",
        None,
    )
    .await
    .expect("stream");
    assert_eq!(out.http_status, 101);
    assert_eq!(out.protocol, "v4.channel.k8s.io");
    assert_eq!(out.text("stdout"), "piped in\n");
    assert_eq!(out.text("stderr"), "err\n");
    let status: serde_json::Value =
        serde_json::from_str(&out.text("error")).expect("a Status on the error channel");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "5");

    // A URL works once.
    let again = spdy_client::exec(&u, &["v4.channel.k8s.io"], &["error", "stdout"], b"", None)
        .await
        .expect("second try");
    assert_eq!(again.http_status, 404);

    // Success on v4 is a Success status; on v2 it is an empty error channel.
    let u = url(&mut rt, request(&id, &["echo", "fine"], false, false))
        .await
        .expect("exec url");
    let out = spdy_client::exec(
        &u,
        &["v4.channel.k8s.io"],
        &["error", "stdout", "stderr"],
        b"",
        None,
    )
    .await
    .expect("stream");
    assert_eq!(out.text("stdout"), "fine\n");
    let status: serde_json::Value = serde_json::from_str(&out.text("error")).expect("status");
    assert_eq!(status["status"], "Success");
    let u = url(&mut rt, request(&id, &["echo", "old"], false, false))
        .await
        .expect("exec url");
    let out = spdy_client::exec(
        &u,
        &["v2.channel.k8s.io"],
        &["error", "stdout", "stderr"],
        b"",
        None,
    )
    .await
    .expect("stream");
    assert_eq!(out.protocol, "v2.channel.k8s.io");
    assert_eq!(out.text("stdout"), "old\n");
    assert_eq!(out.text("error"), "");

    // No common protocol: refused before anything runs.
    let u = url(&mut rt, request(&id, &["true"], false, false))
        .await
        .expect("exec url");
    let out = spdy_client::exec(&u, &["v9.channel.k8s.io"], &["error"], b"", None)
        .await
        .expect("handshake");
    assert_eq!(out.http_status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tty_exec_gets_a_terminal_and_its_size() {
    let (_d, mut rt, id) = running_container().await;
    let u = url(
        &mut rt,
        request(&id, &["sh", "-c", "sleep 0.5; stty size; tty"], true, true),
    )
    .await
    .expect("exec url");
    let out = spdy_client::exec(
        &u,
        &["v4.channel.k8s.io"],
        &["error", "stdin", "stdout", "resize"],
        b"",
        Some((100, 30)),
    )
    .await
    .expect("stream");
    let text = out.text("stdout");
    assert!(text.contains("30 100"), "{text:?}");
    assert!(text.contains("/dev/pts/"), "{text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_exec_requests_get_clear_statuses() {
    let (_d, mut rt, id) = running_container().await;
    let mut r = request(&id, &["true"], false, true);
    r.stderr = true;
    let e = url(&mut rt, r).await.expect_err("tty and stderr");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let mut r = request(&id, &["true"], false, false);
    r.stdout = false;
    r.stderr = false;
    let e = url(&mut rt, r).await.expect_err("no stdio");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = url(&mut rt, request(&id, &[], false, false))
        .await
        .expect_err("no command");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = url(&mut rt, request("feedface", &["true"], false, false))
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), tonic::Code::NotFound);
    rt.stop_container(cri::StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .expect("stop");
    let e = url(&mut rt, request(&id, &["true"], false, false))
        .await
        .expect_err("exited");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_joins_the_containers_own_stdio() {
    let script = "while read l; do echo got:$l; echo err:$l >&2; done; echo bye";
    let (_d, mut rt, id) = running(|c| {
        c.command = vec!["sh".into(), "-c".into(), script.into()];
        c.stdin = true;
        c.stdin_once = true;
    })
    .await;
    let u = rt
        .attach(cri::AttachRequest {
            container_id: id.clone(),
            stdin: true,
            tty: false,
            stdout: true,
            stderr: true,
        })
        .await
        .expect("attach url")
        .into_inner()
        .url;
    assert!(u.contains("/attach/"), "{u}");
    let out = spdy_client::exec(
        &u,
        &["v4.channel.k8s.io"],
        &["error", "stdin", "stdout", "stderr"],
        b"one\ntwo\n",
        None,
    )
    .await
    .expect("stream");
    // stdin_once: the client's end of input is the container's.
    assert_eq!(out.text("stdout"), "got:one\ngot:two\nbye\n");
    assert_eq!(out.text("stderr"), "err:one\nerr:two\n");
    let status: serde_json::Value = serde_json::from_str(&out.text("error")).expect("status");
    assert_eq!(status["status"], "Success");

    // A container made without stdin cannot be given one.
    let (_d2, mut rt2, plain) = running_container().await;
    let e = rt2
        .attach(cri::AttachRequest {
            container_id: plain,
            stdin: true,
            tty: false,
            stdout: true,
            stderr: true,
        })
        .await
        .expect_err("no stdin");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_reaches_a_port_inside_the_pod() {
    let script = "mkdir -p /www; echo hello-pf > /www/index.html; exec httpd -f -p 8080 -h /www";
    let (_d, mut rt, id) = running(|c| {
        c.command = vec!["sh".into(), "-c".into(), script.into()];
    })
    .await;
    let pod = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: true,
        })
        .await
        .expect("status")
        .into_inner()
        .info
        .get("info")
        .and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok())
        .and_then(|v| v["sandboxID"].as_str().map(str::to_string))
        .expect("sandbox id");
    let forward = |port: u16| {
        let mut rt = rt.clone();
        let pod = pod.clone();
        async move {
            let u = rt
                .port_forward(cri::PortForwardRequest {
                    pod_sandbox_id: pod,
                    port: vec![i32::from(port)],
                })
                .await
                .expect("port-forward url")
                .into_inner()
                .url;
            spdy_client::port_forward(&u, port, b"GET /index.html HTTP/1.0\r\n\r\n")
                .await
                .expect("forward")
        }
    };
    // httpd may still be starting: retry until it answers (hang-guarded).
    let deadline = std::time::Instant::now() + carapace_e2e::HANG_GUARD;
    let (status, data, error) = loop {
        let r = forward(8080).await;
        if !r.1.is_empty() || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(status, 101);
    let text = String::from_utf8_lossy(&data);
    assert!(text.contains("hello-pf"), "{text:?} / {error:?}");
    assert_eq!(error, "");
    // Nothing listens on 9999 inside the pod (even if the node has it).
    let (status, data, error) = forward(9999).await;
    assert_eq!(status, 101);
    assert!(data.is_empty());
    assert!(error.contains("9999"), "{error:?}");

    let e = rt
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: "feedface".into(),
            port: vec![80],
        })
        .await
        .expect_err("unknown pod");
    assert_eq!(e.code(), tonic::Code::NotFound);
}

// ---- WebSocket ----------------------------------------------------------
//
// The same sessions over WebSocket, as client-go's WebSocket executor
// (`crictl exec --transport websocket`) and its SPDY-over-WebSocket
// port-forward dialer speak them, and kubelet's older channel protocols.

/// The metav1.Status on a WebSocket session's error channel.
fn ws_status(out: &ws_client::Outcome) -> serde_json::Value {
    serde_json::from_str(&out.text(ws_client::ERROR))
        .unwrap_or_else(|e| panic!("a Status on the error channel ({e}): {out:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_over_websocket_v5_closes_stdin_and_reports_the_exit_code() {
    let (_d, mut rt, id) = running_container().await;
    let u = url(
        &mut rt,
        request(&id, &["sh", "-c", "cat; echo err >&2; exit 7"], true, false),
    )
    .await
    .expect("exec url");
    // crictl offers v5 only; `cat` ends only if the close signal for stdin
    // is honoured.
    let send = ws_client::Send {
        stdin: b"piped in\n".to_vec(),
        close_stdin: true,
        resize: None,
    };
    let out = ws_client::exec(&u, &["v5.channel.k8s.io"], &send)
        .await
        .expect("stream");
    assert_eq!(out.http_status, 101);
    assert_eq!(out.protocol, "v5.channel.k8s.io");
    // First, one empty message on stdout: the connection is up.
    assert_eq!(out.messages.first(), Some(&(ws_client::STDOUT, Vec::new())));
    assert_eq!(out.text(ws_client::STDOUT), "piped in\n");
    assert_eq!(out.text(ws_client::STDERR), "err\n");
    let status = ws_status(&out);
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "7");
    // The error channel is the last word, then a normal close.
    assert_eq!(out.messages.last().map(|m| m.0), Some(ws_client::ERROR));
    assert_eq!(out.close_code, Some(1000));

    // A URL works once, whatever the transport.
    let again = ws_client::exec(&u, &["v5.channel.k8s.io"], &ws_client::Send::default())
        .await
        .expect("second try");
    assert_eq!(again.http_status, 404);

    // Success is a Success status.
    let u = url(&mut rt, request(&id, &["echo", "fine"], false, false))
        .await
        .expect("exec url");
    let out = ws_client::exec(&u, &["v5.channel.k8s.io"], &ws_client::Send::default())
        .await
        .expect("stream");
    assert_eq!(out.text(ws_client::STDOUT), "fine\n");
    assert_eq!(ws_status(&out)["status"], "Success");

    // A terminal gets the size sent on the resize channel (the command
    // waits for it).
    let wait_for_size = r#"until [ "$(stty size)" = "30 100" ]; do sleep 0.1; done; tty"#;
    let u = url(
        &mut rt,
        request(&id, &["sh", "-c", wait_for_size], true, true),
    )
    .await
    .expect("exec url");
    let send = ws_client::Send {
        resize: Some((100, 30)),
        ..Default::default()
    };
    let out = ws_client::exec(&u, &["v5.channel.k8s.io"], &send)
        .await
        .expect("stream");
    assert!(out.text(ws_client::STDOUT).contains("/dev/pts/"), "{out:?}");
    assert_eq!(ws_status(&out)["status"], "Success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_over_websocket_v4_and_older_protocols() {
    let (_d, mut rt, id) = running_container().await;
    // v4: the exit code in a Status; stdin without a close signal (the
    // command stops reading on its own).
    let script = "head -c 5; echo; echo out; exit 3";
    let u = url(&mut rt, request(&id, &["sh", "-c", script], true, false))
        .await
        .expect("exec url");
    let send = ws_client::Send {
        stdin: b"abcde".to_vec(),
        ..Default::default()
    };
    let out = ws_client::exec(&u, &["v4.channel.k8s.io", "channel.k8s.io"], &send)
        .await
        .expect("stream");
    assert_eq!(out.http_status, 101);
    assert_eq!(out.protocol, "v4.channel.k8s.io");
    assert_eq!(out.text(ws_client::STDOUT), "abcde\nout\n");
    let status = ws_status(&out);
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    assert_eq!(out.close_code, Some(1000));

    // base64: text messages with a channel digit, both ways.
    let u = url(&mut rt, request(&id, &["sh", "-c", script], true, false))
        .await
        .expect("exec url");
    let out = ws_client::exec(&u, &["v4.base64.channel.k8s.io"], &send)
        .await
        .expect("stream");
    assert_eq!(out.protocol, "v4.base64.channel.k8s.io");
    assert_eq!(out.messages.first(), Some(&(ws_client::STDOUT, Vec::new())));
    assert_eq!(out.text(ws_client::STDOUT), "abcde\nout\n");
    assert_eq!(ws_status(&out)["details"]["causes"][0]["message"], "3");

    // The original protocols: a text message on failure only.
    let u = url(&mut rt, request(&id, &["sh", "-c", script], true, false))
        .await
        .expect("exec url");
    let out = ws_client::exec(&u, &["base64.channel.k8s.io"], &send)
        .await
        .expect("stream");
    assert_eq!(out.protocol, "base64.channel.k8s.io");
    assert_eq!(out.text(ws_client::STDOUT), "abcde\nout\n");
    assert_eq!(
        out.text(ws_client::ERROR),
        "command terminated with non-zero exit code: exit status 3"
    );
    let u = url(&mut rt, request(&id, &["echo", "old"], false, false))
        .await
        .expect("exec url");
    let out = ws_client::exec(&u, &[], &ws_client::Send::default())
        .await
        .expect("stream");
    assert_eq!(out.protocol, "", "no offer: channel.k8s.io unnamed");
    assert_eq!(out.text(ws_client::STDOUT), "old\n");
    assert!(!out.by_channel().contains_key(&ws_client::ERROR), "{out:?}");

    // No common subprotocol: refused before anything runs.
    let u = url(&mut rt, request(&id, &["true"], false, false))
        .await
        .expect("exec url");
    let out = ws_client::exec(&u, &["v3.channel.k8s.io"], &ws_client::Send::default())
        .await
        .expect("handshake");
    assert_eq!(out.http_status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_over_websocket_joins_the_containers_own_stdio() {
    let script = "while read l; do echo got:$l; echo err:$l >&2; done; echo bye";
    let (_d, mut rt, id) = running(|c| {
        c.command = vec!["sh".into(), "-c".into(), script.into()];
        c.stdin = true;
        c.stdin_once = true;
    })
    .await;
    let u = rt
        .attach(cri::AttachRequest {
            container_id: id.clone(),
            stdin: true,
            tty: false,
            stdout: true,
            stderr: true,
        })
        .await
        .expect("attach url")
        .into_inner()
        .url;
    let send = ws_client::Send {
        stdin: b"one\ntwo\n".to_vec(),
        close_stdin: true,
        resize: None,
    };
    let out = ws_client::exec(&u, &["v5.channel.k8s.io"], &send)
        .await
        .expect("stream");
    assert_eq!(out.http_status, 101);
    // stdin_once: the close signal is the end of the container's input.
    assert_eq!(out.text(ws_client::STDOUT), "got:one\ngot:two\nbye\n");
    assert_eq!(out.text(ws_client::STDERR), "err:one\nerr:two\n");
    assert_eq!(ws_status(&out)["status"], "Success");
    assert_eq!(out.close_code, Some(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_over_websocket_tunnels_spdy_and_serves_channels() {
    let script = "mkdir -p /www; echo hello-pf > /www/index.html; exec httpd -f -p 8080 -h /www";
    let (_d, mut rt, id) = running(|c| {
        c.command = vec!["sh".into(), "-c".into(), script.into()];
    })
    .await;
    let _ = id;
    // The daemon runs this one pod.
    let pod = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .expect("list pods")
        .into_inner()
        .items
        .first()
        .expect("the pod")
        .id
        .clone();
    let pf_url = |port: u16| {
        let mut rt = rt.clone();
        let pod = pod.clone();
        async move {
            rt.port_forward(cri::PortForwardRequest {
                pod_sandbox_id: pod,
                port: vec![i32::from(port)],
            })
            .await
            .expect("port-forward url")
            .into_inner()
            .url
        }
    };
    const GET: &[u8] = b"GET /index.html HTTP/1.0\r\n\r\n";
    // httpd may still be starting: retry until it answers (hang-guarded).
    let deadline = std::time::Instant::now() + carapace_e2e::HANG_GUARD;
    let (status, protocol, data, error) = loop {
        let r = ws_client::port_forward_tunnel(&pf_url(8080).await, 8080, GET)
            .await
            .expect("tunnel");
        if !r.2.is_empty() || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(status, 101);
    assert_eq!(protocol, "SPDY/3.1+portforward.k8s.io");
    let text = String::from_utf8_lossy(&data);
    assert!(text.contains("hello-pf"), "{text:?} / {error:?}");
    assert_eq!(error, "");
    // A closed port is reported on the pair's error stream, in the tunnel.
    let (status, _, data, error) = ws_client::port_forward_tunnel(&pf_url(9999).await, 9999, GET)
        .await
        .expect("tunnel");
    assert_eq!(status, 101);
    assert!(data.is_empty());
    assert!(error.contains("9999"), "{error:?}");

    // kubelet's channel protocol: ports in the query, data on channel 0
    // and errors on 1, each opened with the port in little-endian bytes.
    for protocol in ["v4.channel.k8s.io", "v4.base64.channel.k8s.io"] {
        let u = format!("{}?port=8080", pf_url(8080).await);
        let out = ws_client::port_forward_channels(&u, &[protocol], GET)
            .await
            .expect("channels");
        assert_eq!(out.http_status, 101);
        assert_eq!(out.protocol, protocol);
        let port = 8080u16.to_le_bytes().to_vec();
        assert_eq!(out.messages.first(), Some(&(0, port.clone())), "{out:?}");
        assert!(out.messages.contains(&(1, port)), "{out:?}");
        let data = out.by_channel().remove(&0).unwrap_or_default();
        let text = String::from_utf8_lossy(&data[2..]);
        assert!(text.contains("hello-pf"), "{text:?}");
        assert_eq!(out.close_code, Some(1000));
    }
    // Without ports there is nothing to forward.
    let out = ws_client::port_forward_channels(&pf_url(8080).await, &[], GET)
        .await
        .expect("handshake");
    assert_eq!(out.http_status, 400);
}

// ---- TLS, expiry, vanishing clients -------------------------------------

/// A self-signed certificate for 127.0.0.1 and its key, made by the
/// `openssl` CLI in `dir`: (certificate PEM path, key path).
fn self_signed_cert(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("stream.crt"), dir.join("stream.key"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap_or_else(|e| {
            panic!("the openssl CLI is needed to make a test certificate (apt-get install openssl): {e}")
        });
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_over_tls_and_plain_http_is_refused() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed_cert(certs.path());
    let extra = format!(
        "[streaming]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let (_d, mut rt, id) = running_with(&extra, |_| {}).await;
    let u = url(
        &mut rt,
        request(&id, &["sh", "-c", "cat; exit 4"], true, false),
    )
    .await
    .expect("exec url");
    assert!(u.starts_with("https://127.0.0.1:"), "{u}");

    // Plain HTTP to the TLS port: told so, never upgraded.
    let plain = u.replacen("https://", "http://", 1);
    let out = spdy_client::exec(
        &plain,
        &["v4.channel.k8s.io"],
        &["error", "stdout"],
        b"",
        None,
    )
    .await
    .expect("plain HTTP answer");
    assert_eq!(out.http_status, 400, "{out:?}");

    // Over TLS, trusting the certificate: the same URL (the plain try
    // never reached it) streams.
    let tls =
        spdy_client::Dialer::trusting(&std::fs::read(&cert).expect("read cert")).expect("dialer");
    let out = spdy_client::exec_via(
        &tls,
        &u,
        &["v4.channel.k8s.io"],
        &["error", "stdin", "stdout", "stderr"],
        b"over tls\n",
        None,
    )
    .await
    .expect("exec over TLS");
    assert_eq!(out.http_status, 101);
    assert_eq!(out.text("stdout"), "over tls\n");
    let status: serde_json::Value = serde_json::from_str(&out.text("error")).expect("status");
    assert_eq!(status["details"]["causes"][0]["message"], "4");
    // And once only, over TLS too.
    let again = spdy_client::exec_via(
        &tls,
        &u,
        &["v4.channel.k8s.io"],
        &["error", "stdout"],
        b"",
        None,
    )
    .await
    .expect("second try");
    assert_eq!(again.http_status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_url_gets_404() {
    let ttl = std::time::Duration::from_secs(2);
    let extra = format!("[streaming]\ntoken_ttl_seconds = {}\n", ttl.as_secs());
    let (_d, mut rt, id) = running_with(&extra, |_| {}).await;
    let channels = ["error", "stdout", "stderr"];
    // Used at once: well within its life.
    let fresh = url(&mut rt, request(&id, &["echo", "fresh"], false, false))
        .await
        .expect("exec url");
    let out = spdy_client::exec(&fresh, &["v4.channel.k8s.io"], &channels, b"", None)
        .await
        .expect("stream");
    assert_eq!(out.http_status, 101);
    assert_eq!(out.text("stdout"), "fresh\n");
    // Used after its life: gone, whatever the transport.
    let stale = url(&mut rt, request(&id, &["echo", "stale"], false, false))
        .await
        .expect("exec url");
    let stale_ws = url(&mut rt, request(&id, &["echo", "stale"], false, false))
        .await
        .expect("exec url");
    tokio::time::sleep(ttl + std::time::Duration::from_secs(1)).await;
    let out = spdy_client::exec(&stale, &["v4.channel.k8s.io"], &channels, b"", None)
        .await
        .expect("handshake");
    assert_eq!(out.http_status, 404);
    let out = ws_client::exec(
        &stale_ws,
        &["v5.channel.k8s.io"],
        &ws_client::Send::default(),
    )
    .await
    .expect("handshake");
    assert_eq!(out.http_status, 404);
}

/// The daemon's open sockets and pipes (each named by its inode).
fn open_sockets(pid: i32) -> std::collections::HashSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the daemon's fds")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .filter(|l| l.starts_with("socket:") || l.starts_with("pipe:"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attach_client_that_vanishes_is_let_go() {
    // Silent until spoken to; stdin outlives any one client.
    let script = "while read l; do echo got:$l; done";
    let (d, mut rt, id) = running(|c| {
        c.command = vec!["sh".into(), "-c".into(), script.into()];
        c.stdin = true;
        c.stdin_once = false;
    })
    .await;
    for transport in ["spdy", "websocket"] {
        let u = rt
            .attach(cri::AttachRequest {
                container_id: id.clone(),
                stdin: true,
                tty: false,
                stdout: true,
                stderr: true,
            })
            .await
            .expect("attach url")
            .into_inner()
            .url;
        let before = open_sockets(d.pid());
        let said = format!("{transport}\n");
        let heard = format!("got:{transport}\n");
        // Attached once the container's answer comes back through it.
        let client: Box<dyn std::any::Any> = match transport {
            "spdy" => Box::new(
                spdy_client::open_until(
                    &u,
                    &["v4.channel.k8s.io"],
                    &["error", "stdin", "stdout", "stderr"],
                    said.as_bytes(),
                    heard.as_bytes(),
                )
                .await
                .expect("attached over SPDY"),
            ),
            _ => Box::new(
                ws_client::open_until(
                    &u,
                    &["v5.channel.k8s.io"],
                    said.as_bytes(),
                    heard.as_bytes(),
                )
                .await
                .expect("attached over WebSocket"),
            ),
        };
        let held: Vec<String> = open_sockets(d.pid()).difference(&before).cloned().collect();
        // At least the client's connection and the one to the shim.
        assert!(held.len() >= 2, "{transport}: the session holds {held:?}");
        // The client vanishes without a goodbye; the container says
        // nothing more.
        drop(client);
        let deadline = std::time::Instant::now() + carapace_e2e::HANG_GUARD;
        loop {
            let now = open_sockets(d.pid());
            let left: Vec<&String> = held.iter().filter(|s| now.contains(*s)).collect();
            if left.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{transport}: the daemon still holds {left:?} a minute after the client left"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    // The container is none the worse: still there to talk to.
    let u = rt
        .attach(cri::AttachRequest {
            container_id: id.clone(),
            stdin: true,
            tty: false,
            stdout: true,
            stderr: false,
        })
        .await
        .expect("attach url")
        .into_inner()
        .url;
    spdy_client::open_until(
        &u,
        &["v4.channel.k8s.io"],
        &["error", "stdin", "stdout"],
        b"again\n",
        b"got:again\n",
    )
    .await
    .expect("attach after the vanished clients");
}
