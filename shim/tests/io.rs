//! The shim's own Io service: kubelet's log rotation (ReopenLog) and live
//! attach to a process's stdio, against real busybox containers.

mod common;

use carapace_shim::proto::io::{attach_output, AttachInput, ReopenLogRequest};
use common::{ctx, records, Harness, HANG_GUARD};
use containerd_shim_protos::ttrpc::{self, Code};
use serde_json::json;

fn code(e: &ttrpc::Error) -> Code {
    match e {
        ttrpc::Error::RpcStatus(s) => s.code(),
        _ => Code::UNKNOWN,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn reopen_after_rename_writes_to_the_new_file() {
    let h = Harness::new("reopen", &["sh", "-c", "echo one; read x; echo two"]).await;
    let log = h.crilog("c.log");
    h.create_with_stdin("attach:", &log, &log, false)
        .await
        .expect("create");
    h.start("").await.expect("start");
    let io = h.io_client();
    let stream = io.attach(ctx()).await.expect("attach");
    stream
        .send(&AttachInput {
            id: h.id.clone(),
            stdin: true,
            ..Default::default()
        })
        .await
        .expect("attach first message");
    // Wait for the first line to reach the log, then rotate as kubelet does.
    let deadline = std::time::Instant::now() + HANG_GUARD;
    while !h.read("c.log").contains("one") {
        assert!(
            std::time::Instant::now() < deadline,
            "first line never logged"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    std::fs::rename(h.bundle().join("c.log"), h.bundle().join("c.log.1")).expect("rotate");
    io.reopen_log(
        ctx(),
        &ReopenLogRequest {
            id: h.id.clone(),
            ..Default::default()
        },
    )
    .await
    .expect("reopen");
    stream
        .send(&AttachInput {
            stdin_data: b"go\n".to_vec(),
            ..Default::default()
        })
        .await
        .expect("stdin");
    assert_eq!(h.wait("").await.exit_status, 0);
    let old = records(&h.read("c.log.1"));
    let new = records(&h.read("c.log"));
    assert_eq!(
        old.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
        ["one"],
        "{old:?}"
    );
    assert_eq!(
        new.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
        ["two"],
        "{new:?}"
    );

    // A process without a CRI log has nothing to reopen.
    h.delete("").await.expect("delete");
    let e = io
        .reopen_log(
            ctx(),
            &ReopenLogRequest {
                id: h.id.clone(),
                ..Default::default()
            },
        )
        .await
        .expect_err("reopen after delete");
    assert_eq!(code(&e), Code::NOT_FOUND, "{e:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn attach_streams_output_and_feeds_stdin() {
    let h = Harness::new(
        "attach",
        &[
            "sh",
            "-c",
            "while read l; do echo got-$l; echo err-$l >&2; done; exit 4",
        ],
    )
    .await;
    let log = h.crilog("c.log");
    h.create_with_stdin("attach:", &log, &log, false)
        .await
        .expect("create");
    h.start("").await.expect("start");
    let mut stream = h.io_client().attach(ctx()).await.expect("attach");
    stream
        .send(&AttachInput {
            id: h.id.clone(),
            stdin: true,
            stdout: true,
            stderr: true,
            stdin_data: b"hello\n".to_vec(),
            ..Default::default()
        })
        .await
        .expect("first message");
    let mut out = String::new();
    let mut err = String::new();
    while !(out.contains("got-hello\n") && err.contains("err-hello\n")) {
        let m = tokio::time::timeout(HANG_GUARD, stream.recv())
            .await
            .expect("no output")
            .expect("recv");
        let text = String::from_utf8_lossy(&m.data).into_owned();
        if m.stream.enum_value_or_default() == attach_output::Stream::STDERR {
            err.push_str(&text);
        } else {
            out.push_str(&text);
        }
    }
    // Closing stdin ends the loop; the attach stream ends with the output.
    stream
        .send(&AttachInput {
            close_stdin: true,
            ..Default::default()
        })
        .await
        .expect("close stdin");
    let end = tokio::time::timeout(HANG_GUARD, stream.recv())
        .await
        .expect("stream did not end");
    assert!(
        end.is_err(),
        "unexpected output after stdin closed: {end:?}"
    );
    assert_eq!(h.wait("").await.exit_status, 4);
    // The log got the same output.
    let recs = records(&h.read("c.log"));
    assert!(
        recs.contains(&("stdout".into(), "F".into(), "got-hello".into())),
        "{recs:?}"
    );
    h.delete("").await.expect("delete");
}

#[tokio::test(flavor = "current_thread")]
async fn attach_to_stdin_of_a_process_without_stdin_is_refused() {
    let mut h = Harness::new("nostdin", &["sleep", "1000"]).await;
    h.config["process"]["terminal"] = json!(false);
    h.write_config();
    h.create("", "", false).await.expect("create");
    h.start("").await.expect("start");
    let mut stream = h.io_client().attach(ctx()).await.expect("attach");
    stream
        .send(&AttachInput {
            id: h.id.clone(),
            stdin: true,
            ..Default::default()
        })
        .await
        .expect("first message");
    let e = tokio::time::timeout(HANG_GUARD, stream.recv())
        .await
        .expect("no answer")
        .expect_err("attach to stdin without stdin");
    assert_eq!(code(&e), Code::FAILED_PRECONDITION, "{e:?}");
    h.kill("", 9).await.expect("kill");
    h.wait("").await;
    h.delete("").await.expect("delete");
}

/// Waits (bounded by the hang guard) until `h`'s bundle file `name` holds
/// `text`.
async fn wait_for_text(h: &Harness, name: &str, text: &str) {
    let deadline = std::time::Instant::now() + HANG_GUARD;
    while !h.read(name).contains(text) {
        assert!(
            std::time::Instant::now() < deadline,
            "{text:?} never reached {name}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_deleted_log_stays_deleted_until_reopen_log() {
    let h = Harness::new(
        "deleted",
        &["sh", "-c", "while true; do echo tick; sleep 0.05; done"],
    )
    .await;
    let log = h.crilog("c.log");
    h.create(&log, &log, false).await.expect("create");
    h.start("").await.expect("start");
    let path = h.bundle().join("c.log");
    wait_for_text(&h, "c.log", "tick").await;
    std::fs::remove_file(&path).expect("delete the log");
    // Well past the shim's once-a-second check, with output flowing.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    assert!(!path.exists(), "the shim recreated the deleted log itself");
    h.io_client()
        .reopen_log(
            ctx(),
            &ReopenLogRequest {
                id: h.id.clone(),
                ..Default::default()
            },
        )
        .await
        .expect("reopen");
    wait_for_text(&h, "c.log", "tick").await;
    h.kill("", 9).await.expect("kill");
    h.wait("").await;
    h.delete("").await.expect("delete");
}

#[tokio::test(flavor = "current_thread")]
async fn a_symlink_at_the_log_path_is_not_followed() {
    let h = Harness::new("symlog", &["sh", "-c", "echo through-the-link"]).await;
    let victim = h.bundle().join("victim");
    std::fs::write(&victim, "precious\n").expect("write victim");
    std::os::unix::fs::symlink(&victim, h.bundle().join("c.log")).expect("plant symlink");
    let log = h.crilog("c.log");
    let e = h
        .create(&log, &log, false)
        .await
        .expect_err("created with a symlink at the log path");
    assert_eq!(code(&e), Code::INVALID_ARGUMENT, "{e:?}");
    assert_eq!(h.read("victim"), "precious\n");
}
