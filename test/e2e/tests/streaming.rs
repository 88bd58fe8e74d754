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
//! silent. Several concurrent connections in one port-forward session (as
//! `kubectl port-forward` multiplexes them), with and without SPDY flow
//! control; an attach that follows live output and leaves the container
//! running.

use std::path::Path;
use std::time::{Duration, Instant};

use carapace_e2e::spdy_client::{self, Flow};
use carapace_e2e::workload::{create, pull, run_pod, start, status, Rt};
use carapace_e2e::ws_client;
use carapace_e2e::{eventually, pod_config, require_registry, Daemon, HANG_GUARD};
use k8s_cri::v1 as cri;

const BUSYBOX: &str = "127.0.0.1:5000/test/busybox:latest";

/// A web server in the container with one page, `hello-pf`, on 8080.
const HTTPD: &str = "mkdir -p /www; echo hello-pf > /www/index.html; exec httpd -f -p 8080 -h /www";

/// A container that answers each line on stdin on stdout and stderr.
const ECHO_LINES: &str = "while read l; do echo got:$l; echo err:$l >&2; done; echo bye";

/// A daemon with a running `sleep` container: (daemon, client, container).
async fn running_container() -> (Daemon, Rt, String) {
    running(|_| {}).await
}

/// A daemon with a running container as `adjust` makes it.
async fn running(adjust: impl FnOnce(&mut cri::ContainerConfig)) -> (Daemon, Rt, String) {
    running_with("", adjust).await
}

/// A daemon with `extra` config and a running container as `adjust`
/// makes it, in a pod with a log directory (a container with a
/// `log_path` has a CRI log there).
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
    let mut pc = pod_config("streaming");
    pc.log_directory = d.dir.path().join("logs").display().to_string();
    let pod = run_pod(&mut rt, pc.clone()).await;
    let mut cfg = cri::ContainerConfig {
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

/// `sh -c script`.
fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// An attach to `id` without a terminal, with stdout and as asked stdin
/// and stderr.
fn attach_request(id: &str, stdin: bool, stderr: bool) -> cri::AttachRequest {
    cri::AttachRequest {
        container_id: id.into(),
        stdin,
        tty: false,
        stdout: true,
        stderr,
    }
}

async fn attach_url(rt: &mut Rt, req: cri::AttachRequest) -> Result<String, tonic::Status> {
    rt.attach(req).await.map(|r| r.into_inner().url)
}

/// The one pod the test's daemon runs.
async fn the_pod(rt: &mut Rt) -> String {
    rt.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .expect("list pods")
        .into_inner()
        .items
        .first()
        .expect("the pod")
        .id
        .clone()
}

/// A PortForward URL for `port` of `pod`.
async fn port_forward_url(rt: &mut Rt, pod: &str, port: u16) -> String {
    rt.port_forward(cri::PortForwardRequest {
        pod_sandbox_id: pod.into(),
        port: vec![i32::from(port)],
    })
    .await
    .expect("port-forward url")
    .into_inner()
    .url
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
    let (_d, mut rt, id) = running(|c| {
        c.command = sh(ECHO_LINES);
        c.stdin = true;
        c.stdin_once = true;
    })
    .await;
    let u = attach_url(&mut rt, attach_request(&id, true, true))
        .await
        .expect("attach url");
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
    let e = attach_url(&mut rt2, attach_request(&plain, true, true))
        .await
        .expect_err("no stdin");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_reaches_a_port_inside_the_pod() {
    let (_d, mut rt, _) = running(|c| c.command = sh(HTTPD)).await;
    let pod = the_pod(&mut rt).await;
    let forward = |port: u16| {
        let mut rt = rt.clone();
        let pod = pod.clone();
        async move {
            let u = port_forward_url(&mut rt, &pod, port).await;
            spdy_client::port_forward(&u, port, b"GET /index.html HTTP/1.0\r\n\r\n")
                .await
                .expect("forward")
        }
    };
    // httpd may still be starting: retry until it answers.
    let (status, data, error) = eventually("httpd", || async {
        let r = forward(8080).await;
        if r.1.is_empty() {
            Err(format!("{r:?}"))
        } else {
            Ok(r)
        }
    })
    .await;
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

/// An echo server in the container: busybox `nc -ll` hands each
/// connection to a `cat` of its own and keeps listening, so connections
/// are served at the same time.
const ECHO_SERVER: &str = "exec nc -ll -p 7777 -e /bin/cat";
const ECHO_PORT: u16 = 7777;

/// `len` bytes for connection `n`: its name, then a pseudo-random run no
/// other connection sends.
/// Waits until the pod's echo server answers: nc may still be starting,
/// so one connection at a time until it echoes.
async fn wait_for_echo(rt: &Rt, pod: &str) {
    eventually("the echo server", || {
        let mut rt = rt.clone();
        let pod = pod.to_string();
        async move {
            let u = port_forward_url(&mut rt, &pod, ECHO_PORT).await;
            let r = spdy_client::port_forward(&u, ECHO_PORT, b"ping")
                .await
                .expect("forward");
            if r.1 == b"ping" {
                Ok(())
            } else {
                Err(format!("{r:?}"))
            }
        }
    })
    .await;
}

fn payload(n: u32, len: usize) -> Vec<u8> {
    let mut bytes = format!("connection {n}\n").into_bytes();
    let mut x = 0x9e37_79b9_u32 ^ n.wrapping_mul(0x85eb_ca6b);
    while bytes.len() < len {
        // xorshift32
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        bytes.push(x as u8);
    }
    bytes.truncate(len);
    bytes
}

/// Where two byte strings first differ (or where the shorter ends).
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_carries_concurrent_connections_in_one_session() {
    let (_d, mut rt, _) = running(|c| c.command = sh(ECHO_SERVER)).await;
    let pod = the_pod(&mut rt).await;
    wait_for_echo(&rt, &pod).await;

    // One connection carries over a MiB: sixteen times the 64 KiB window
    // a SPDY/3.1 sender starts with.
    let payloads = [
        payload(0, 100),
        payload(1, (1 << 20) + 4321),
        payload(2, 200 << 10),
        payload(3, 20),
    ];
    // As kubectl does (no flow control), then as SPDY/3.1 prescribes (the
    // client sends only within the windows the daemon grants).
    for flow in [Flow::LikeSpdystream, Flow::Windowed] {
        let u = port_forward_url(&mut rt, &pod, ECHO_PORT).await;
        let mut pf = spdy_client::PortForward::connect(&u, flow)
            .await
            .expect("port-forward session");
        // One session, one stream pair per connection; the pairs' streams
        // interleave, so only their requestIDs tell them apart.
        let conns = pf
            .forward_interleaved(ECHO_PORT, payloads.len())
            .expect("open the connections");
        let ids: std::collections::HashSet<u32> = conns.iter().map(|c| c.request_id).collect();
        assert_eq!(ids.len(), conns.len(), "{flow:?}: request IDs {ids:?}");
        let exchange = async {
            // Every connection is up at once: each echoes a greeting while
            // all the others are still open.
            for (i, c) in conns.iter().enumerate() {
                c.data
                    .write(format!("hello {i}\n").as_bytes())
                    .await
                    .expect("greet");
            }
            for (i, c) in conns.iter().enumerate() {
                let hello = format!("hello {i}\n");
                let mut got = Vec::new();
                c.data
                    .read_until(&mut got, |g| g.len() >= hello.len())
                    .await
                    .unwrap_or_else(|e| panic!("{flow:?}: connection {i}: {e:#}"));
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    hello,
                    "{flow:?}: connection {i}"
                );
            }
            // Then all the payloads at the same time, each connection
            // half-closed once its own is sent.
            futures_util::future::join_all(
                conns.iter().zip(&payloads).map(|(c, p)| c.round_trip(p)),
            )
            .await
        };
        let results = tokio::time::timeout(HANG_GUARD, exchange)
            .await
            .unwrap_or_else(|_| panic!("{flow:?}: the connections hung"));
        for (i, (r, sent)) in results.into_iter().zip(&payloads).enumerate() {
            let (back, error) = r.unwrap_or_else(|e| panic!("{flow:?}: connection {i}: {e:#}"));
            assert_eq!(error, "", "{flow:?}: connection {i}");
            assert!(
                back == *sent,
                "{flow:?}: connection {i} sent {} bytes and got {} back, first difference at {:?}",
                sent.len(),
                back.len(),
                first_difference(sent, &back)
            );
        }
    }
}

/// A counter on stdout, one number per line, five a second.
const COUNTER: &str = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.2; done";

/// The numbers on the complete lines of `text` (a line still being
/// written is left out).
fn numbers(text: &str) -> Vec<u64> {
    let complete = text.rsplit_once('\n').map_or("", |(done, _)| done);
    complete
        .lines()
        .map(|l| {
            l.parse()
                .unwrap_or_else(|_| panic!("{l:?} is not a number in {text:?}"))
        })
        .collect()
}

/// The numbers the counter has written to its CRI log so far.
fn logged_numbers(log: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: String = text
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| {
            // <timestamp> <stream> <tag> <content>
            let mut f = l.splitn(4, ' ');
            let (_, stream, tag) = (f.next(), f.next(), f.next());
            assert_eq!((stream, tag), (Some("stdout"), Some("F")), "{l:?}");
            f.next().unwrap_or_default()
        })
        .collect();
    numbers(&lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_follows_live_output_and_the_container_outlives_the_client() {
    let (_d, mut rt, id) = running(|c| {
        c.command = sh(COUNTER);
        c.log_path = "counter.log".into();
    })
    .await;
    let log = std::path::PathBuf::from(status(&mut rt, &id).await.log_path);
    assert!(log.ends_with("logs/counter.log"), "{log:?}");
    // The counter has been going for a while when the client comes.
    let before = eventually("the first lines in the log", || {
        let n = logged_numbers(&log);
        async move {
            match n.last() {
                Some(&last) if n.len() >= 3 => Ok(last),
                _ => Err(format!("{n:?}")),
            }
        }
    })
    .await;
    // Stdout only: no stdin, no stderr.
    let u = attach_url(&mut rt, attach_request(&id, false, false))
        .await
        .expect("attach url");
    let session = spdy_client::Session::connect(&u, &["v4.channel.k8s.io"], Flow::LikeSpdystream)
        .await
        .expect("attach session");
    assert_eq!(session.protocol, "v4.channel.k8s.io");
    let error = session
        .open(&[("streamType", "error")])
        .expect("error stream");
    let stdout = session
        .open(&[("streamType", "stdout")])
        .expect("stdout stream");
    let mut got = Vec::new();
    tokio::time::timeout(
        HANG_GUARD,
        stdout.read_until(&mut got, |g| {
            g.iter().filter(|b| **b == b'\n').count() >= 10
        }),
    )
    .await
    .expect("ten lines within the hang guard")
    .expect("the attach's stdout");
    let seen = numbers(&String::from_utf8_lossy(&got));
    // Live: what the counter says from now on, not a replay of its log.
    assert!(
        seen.first().is_some_and(|first| *first > before),
        "the log had reached {before} before the attach, which then got {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[1] == w[0] + 1),
        "not consecutive: {seen:?}"
    );
    // The client goes away without a goodbye.
    drop((error, stdout, session));
    let at_leaving = logged_numbers(&log).last().copied().unwrap_or_default();
    // The container runs on, its log growing with nothing lost.
    let logged = eventually("the log to grow after the client left", || {
        let n = logged_numbers(&log);
        async move {
            match n.last() {
                Some(&last) if last >= at_leaving + 3 => Ok(n),
                _ => Err(format!("{n:?}")),
            }
        }
    })
    .await;
    let expected: Vec<u64> = (0..logged.len() as u64).collect();
    assert_eq!(logged, expected, "the CRI log lost or repeated lines");
    let s = status(&mut rt, &id).await;
    assert_eq!(
        s.state,
        cri::ContainerState::ContainerRunning as i32,
        "{s:?}"
    );
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
    let (_d, mut rt, id) = running(|c| {
        c.command = sh(ECHO_LINES);
        c.stdin = true;
        c.stdin_once = true;
    })
    .await;
    let u = attach_url(&mut rt, attach_request(&id, true, true))
        .await
        .expect("attach url");
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
    let (_d, mut rt, _) = running(|c| c.command = sh(HTTPD)).await;
    let pod = the_pod(&mut rt).await;
    let pf_url = |port: u16| {
        let mut rt = rt.clone();
        let pod = pod.clone();
        async move { port_forward_url(&mut rt, &pod, port).await }
    };
    const GET: &[u8] = b"GET /index.html HTTP/1.0\r\n\r\n";
    // httpd may still be starting: retry until it answers.
    let (status, protocol, data, error) = eventually("httpd", || async {
        let r = ws_client::port_forward_tunnel(&pf_url(8080).await, 8080, GET)
            .await
            .expect("tunnel");
        if r.2.is_empty() {
            Err(format!("{r:?}"))
        } else {
            Ok(r)
        }
    })
    .await;
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
    let ttl = Duration::from_secs(2);
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
    tokio::time::sleep(ttl + Duration::from_secs(1)).await;
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
        c.command = sh(script);
        c.stdin = true;
        c.stdin_once = false;
    })
    .await;
    for transport in ["spdy", "websocket"] {
        let u = attach_url(&mut rt, attach_request(&id, true, true))
            .await
            .expect("attach url");
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
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            let now = open_sockets(d.pid());
            let left: Vec<&String> = held.iter().filter(|s| now.contains(*s)).collect();
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{transport}: the daemon still holds {left:?} a minute after the client left"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The container is none the worse: still there to talk to.
    let u = attach_url(&mut rt, attach_request(&id, true, false))
        .await
        .expect("attach url");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_gives_up_a_lone_stream_and_resets_a_duplicate() {
    let (_d, mut rt, _) = running_with("[streaming]\nstream_creation_timeout_seconds = 1\n", |c| {
        c.command = sh(ECHO_SERVER)
    })
    .await;
    let pod = the_pod(&mut rt).await;
    wait_for_echo(&rt, &pod).await;
    let u = port_forward_url(&mut rt, &pod, ECHO_PORT).await;
    let mut pf = spdy_client::PortForward::connect(&u, Flow::LikeSpdystream)
        .await
        .expect("port-forward session");

    // An error stream whose data stream never comes gets kubelet's reason
    // once the pair's time is up, and ends.
    let (lone_id, lone) = pf.error_stream(ECHO_PORT).expect("lone error stream");
    let text = tokio::time::timeout(HANG_GUARD, lone.read_to_end())
        .await
        .expect("the lone stream is given up")
        .expect("read the lone stream");
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("timed out waiting for streams"), "{text:?}");
    assert!(text.contains(&lone_id.to_string()), "{text:?}");

    // A second error stream for a request that has one is reset at once;
    // the request's own streams then pair up and carry the connection.
    let (id, error) = pf.error_stream(ECHO_PORT).expect("error stream");
    let dup = pf.stream("error", ECHO_PORT, id).expect("duplicate");
    let dup_got = tokio::time::timeout(HANG_GUARD, dup.read_to_end())
        .await
        .expect("the duplicate is ended, not kept")
        .expect("read the duplicate");
    assert!(dup_got.is_empty(), "{dup_got:?}");
    let data = pf.stream("data", ECHO_PORT, id).expect("data stream");
    let c = spdy_client::Forwarded {
        request_id: id,
        error,
        data,
    };
    let (back, err) = tokio::time::timeout(HANG_GUARD, c.round_trip(b"still here"))
        .await
        .expect("the pair carries the connection")
        .expect("round trip");
    assert_eq!(back, b"still here");
    assert_eq!(err, "");
}
