//! `carapace image` end to end, against a real daemon: offline import of
//! the archives real tools write (skopeo's OCI archive and docker-archive,
//! gzip'd too) into a daemon that cannot reach the registry, then pods run
//! from them; hostile and broken archives refused with nothing left
//! behind; `image pull` reporting each layer; `image ls`. And a registry
//! that dies mid-transfer: a clear error, no partial image.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use carapace_e2e::workload::{create, exec, run_pod, start};
use carapace_e2e::{daemon_bin, pod_config, require_registry, Daemon};
use k8s_cri::v1 as cri;

const REG: &str = "127.0.0.1:5000";
/// The test registry with basic auth (carapace / carapace-test).
const AUTH_REG: &str = "127.0.0.1:5001";

/// `carapace --config <d's config> image ARGS…`.
fn cli(d: &Daemon, args: &[&str]) -> Output {
    Command::new(daemon_bin())
        .arg("--config")
        .arg(d.config_path())
        .arg("image")
        .args(args)
        .output()
        .expect("run carapace image")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "carapace image failed: {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `skopeo copy` of a test registry image to `dest` (an archive transport).
fn skopeo(image: &str, dest: &str) {
    let st = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{REG}/{image}"))
        .arg(dest)
        .status()
        .expect("skopeo (hack/install-deps.sh installs it)");
    assert!(st.success(), "skopeo copy {image} {dest}");
}

/// The config digest (the image ID) the registry has for `image`.
fn registry_image_id(image: &str) -> String {
    let o = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{REG}/{image}"))
        .output()
        .expect("skopeo inspect");
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).expect("manifest json");
    m["config"]["digest"]
        .as_str()
        .expect("config digest")
        .to_string()
}

async fn image_status(d: &Daemon, name: &str) -> Option<cri::Image> {
    d.images()
        .await
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: name.into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .expect("image status")
        .into_inner()
        .image
}

/// Scratch dirs of imports and interrupted downloads the daemon keeps.
fn leftovers(d: &Daemon) -> Vec<String> {
    let images = d.dir.path().join("root/images");
    let mut out: Vec<String> = std::fs::read_dir(&images)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".import-"))
        .collect();
    out.extend(
        std::fs::read_dir(images.join("ingest"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| format!("ingest/{}", e.file_name().to_string_lossy())),
    );
    out
}

fn container(name: &str, image: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "300".into()],
        linux: Some(cri::LinuxContainerConfig::default()),
        ..Default::default()
    }
}

/// Runs `image` in a new container of `pod` and returns the stdout of
/// `sh -c script` in it.
async fn run_in(
    rt: &mut carapace_e2e::workload::Rt,
    pod: &str,
    pc: &cri::PodSandboxConfig,
    name: &str,
    image: &str,
    script: &str,
) -> String {
    let id = create(rt, pod, pc, container(name, image))
        .await
        .expect("create from imported image");
    start(rt, &id).await;
    let r = exec(rt, &id, &["sh", "-c", script], 30)
        .await
        .expect("exec");
    assert_eq!(
        r.exit_code,
        0,
        "{script}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    String::from_utf8_lossy(&r.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_import_offline_and_their_images_run() {
    require_registry();
    let tmp = tempfile::tempdir().expect("tmp");
    let oci = tmp.path().join("layered-oci.tar");
    let docker = tmp.path().join("busybox-docker.tar");
    // Multi-layer, gzip + zstd layers, whiteouts and an opaque dir.
    skopeo(
        "test/layered:latest",
        &format!("oci-archive:{}:example.com/imp/layered:v1", oci.display()),
    );
    skopeo(
        "test/busybox:latest",
        &format!(
            "docker-archive:{}:example.com/imp/busybox:v1",
            docker.display()
        ),
    );
    // docker save output is often shipped gzip'd.
    let st = Command::new("gzip")
        .arg("-k")
        .arg(&docker)
        .status()
        .expect("gzip");
    assert!(st.success());
    let docker_gz = tmp.path().join("busybox-docker.tar.gz");

    // No insecure registry configured: this daemon cannot pull from the
    // local registry, so everything it runs comes from the archives.
    let d = Daemon::start_with_network("", &[]);
    let out = ok(&cli(&d, &["import", &oci.display().to_string()]));
    let layered_id = registry_image_id("test/layered:latest");
    assert!(
        out.contains(&layered_id) && out.contains("example.com/imp/layered:v1"),
        "{out}"
    );
    let out = ok(&cli(&d, &["import", &docker_gz.display().to_string()]));
    let busybox_id = registry_image_id("test/busybox:latest");
    assert!(
        out.contains(&busybox_id) && out.contains("example.com/imp/busybox:v1"),
        "{out}"
    );
    // Importing the same image again (plain tar this time) changes nothing.
    let again = ok(&cli(&d, &["import", &docker.display().to_string()]));
    assert!(again.contains(&busybox_id), "{again}");

    let s = image_status(&d, "example.com/imp/layered:v1")
        .await
        .expect("imported OCI image is known to CRI");
    assert_eq!(s.id, layered_id);
    assert!(
        s.repo_digests
            .iter()
            .any(|r| r.starts_with("example.com/imp/layered@sha256:")),
        "{:?}",
        s.repo_digests
    );
    let s = image_status(&d, "example.com/imp/busybox:v1")
        .await
        .expect("imported docker image is known to CRI");
    assert_eq!(s.id, busybox_id);

    let ls = ok(&cli(&d, &["ls"]));
    assert!(
        ls.contains("example.com/imp/layered:v1") && ls.contains("example.com/imp/busybox:v1"),
        "{ls}"
    );
    assert!(ls.contains(&busybox_id[7..19]), "{ls}");
    let ids = ok(&cli(&d, &["ls", "--quiet"]));
    let mut ids: Vec<&str> = ids.lines().collect();
    ids.sort();
    let mut want = vec![busybox_id.as_str(), layered_id.as_str()];
    want.sort();
    assert_eq!(ids, want);

    let mut rt = d.runtime().await;
    let pc = pod_config("imported");
    let pod = run_pod(&mut rt, pc.clone()).await;
    let got = run_in(
        &mut rt,
        &pod,
        &pc,
        "bb",
        "example.com/imp/busybox:v1",
        "echo imported-ok",
    )
    .await;
    assert_eq!(got.trim(), "imported-ok");
    let got = run_in(
        &mut rt,
        &pod,
        &pc,
        "layered",
        "example.com/imp/layered:v1",
        "ls /opq; test ! -e /data/gone && test -e /data/keep && cat /replace",
    )
    .await;
    assert_eq!(got.split_whitespace().collect::<Vec<_>>(), ["c", "new"]);
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
}

/// A tar with the given (name, bytes) members, built byte by byte so a
/// hostile name goes in as is.
fn tar_of(path: &Path, members: &[(&str, &[u8])]) {
    let mut out = Vec::new();
    for (name, data) in members {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| *b as u32).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    std::fs::write(path, out).expect("write tar");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_and_broken_archives_are_refused_and_leave_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = Daemon::start("");
    let escape = tmp.path().join("escape.tar");
    let victim = d.dir.path().join("root/images/escaped");
    tar_of(
        &escape,
        &[
            ("../escaped", b"pwned"),
            ("index.json", br#"{"manifests":[]}"#),
        ],
    );
    let garbage = tmp.path().join("garbage.tar");
    std::fs::write(&garbage, vec![0x42u8; 4096]).expect("garbage");
    let neither = tmp.path().join("neither.tar");
    tar_of(&neither, &[("hello.txt", b"hi")]);
    // A docker save whose layer does not match its config's diff_id.
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]},"config":{}}"#;
    let layer_tar = tmp.path().join("layer.tar");
    tar_of(&layer_tar, &[("f", b"hi")]);
    let layer = std::fs::read(&layer_tar).expect("layer");
    let manifest = br#"[{"Config":"c.json","RepoTags":["example.com/bad:v1"],"Layers":["l.tar"]}]"#;
    let mismatched = tmp.path().join("mismatch.tar");
    tar_of(
        &mismatched,
        &[
            ("manifest.json", manifest),
            ("c.json", config),
            ("l.tar", &layer),
        ],
    );
    for (archive, want) in [
        (&escape, "leaves the archive"),
        (&garbage, "image archive"),
        (&neither, "neither manifest.json"),
        (&mismatched, "the image config says"),
    ] {
        let o = cli(&d, &["import", &archive.display().to_string()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{} was imported", archive.display());
        assert!(err.contains(want), "{}: {err}", archive.display());
    }
    assert!(!victim.exists(), "a ../ member was written outside");
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
    let list = d
        .images()
        .await
        .list_images(cri::ListImagesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .images;
    assert!(list.is_empty(), "{list:?}");
    let layers: Vec<_> = std::fs::read_dir(d.dir.path().join("root/images/layers"))
        .expect("layers dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(layers.is_empty(), "unpacked layers left: {layers:?}");
    // A relative path is the caller's, not the daemon's: the CLI resolves
    // it; a missing file is its own clear error.
    let o = cli(&d, &["import", "/nonexistent/x.tar"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/x.tar"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_reports_every_layer_and_the_image() {
    require_registry();
    let d = Daemon::start(&format!("[registry]\ninsecure = [\"{REG}\"]\n"));
    let image = format!("{REG}/test/layered:latest");
    let o = cli(&d, &["pull", &image]);
    let out = ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    let id = registry_image_id("test/layered:latest");
    assert_eq!(out.trim(), id);
    let m: serde_json::Value = serde_json::from_slice(
        &Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{image}"))
            .output()
            .expect("skopeo inspect")
            .stdout,
    )
    .expect("manifest");
    let layers = m["layers"].as_array().expect("layers");
    assert!(layers.len() >= 3);
    // Not a terminal: a line per layer and step.
    for l in layers {
        let short = &l["digest"].as_str().expect("digest")[7..19];
        for step in ["to fetch", "downloaded", "unpacked"] {
            assert!(
                err.contains(&format!("{short}: "))
                    && err
                        .lines()
                        .any(|x| x.starts_with(short) && x.contains(step)),
                "no {step} line for {short}:\n{err}"
            );
        }
    }
    assert_eq!(
        image_status(&d, &image).await.expect("pulled").id,
        id,
        "CRI sees the CLI's pull"
    );
    // The daemon's log has a line per layer too.
    assert!(d.log().matches("layer downloaded").count() >= layers.len());
    // A second pull finds everything in place.
    let o = cli(&d, &["pull", &image]);
    assert_eq!(ok(&o).trim(), id);
    // Bad input is the daemon's clear error, and a non-zero exit.
    let o = cli(&d, &["pull", "UPPER/case::bad"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("invalid image reference"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `carapace --config <d's config> image ARGS…` with `stdin` piped in.
fn cli_with_stdin(d: &Daemon, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(daemon_bin())
        .arg("--config")
        .arg(d.config_path())
        .arg("image")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run carapace image");
    child
        .stdin
        .take()
        .expect("stdin pipe")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait for carapace image")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_takes_the_registry_password_from_stdin_or_a_file() {
    require_registry();
    let d = Daemon::start(&format!(
        "[registry]\ninsecure = [\"{REG}\", \"{AUTH_REG}\"]\n"
    ));
    let busybox = format!("{AUTH_REG}/test/busybox:latest");
    let o = cli(&d, &["pull", &busybox]);
    assert!(
        !o.status.success(),
        "pulled from the auth registry anonymously"
    );
    let login = ["pull", "--username", "carapace", "--password-stdin"];
    let o = cli_with_stdin(&d, &[&login[..], &[&busybox]].concat(), b"wrong\n");
    assert!(!o.status.success(), "pulled with a wrong password");
    // The password only on stdin, never on the command line.
    let o = cli_with_stdin(&d, &[&login[..], &[&busybox]].concat(), b"carapace-test\n");
    let id = ok(&o);
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("warning"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        image_status(&d, &busybox).await.expect("pulled").id,
        id.trim()
    );
    // From a file.
    let pw = d.dir.path().join("registry-password");
    std::fs::write(&pw, "carapace-test\n").expect("write password file");
    let nonroot = format!("{AUTH_REG}/test/nonroot:latest");
    let pw_arg = pw.display().to_string();
    let o = cli(
        &d,
        &[
            "pull",
            "--username",
            "carapace",
            "--password-file",
            &pw_arg,
            &nonroot,
        ],
    );
    assert_eq!(
        image_status(&d, &nonroot).await.expect("pulled").id,
        ok(&o).trim()
    );
    // The old form still works, with a warning that argv is public.
    let layered = format!("{AUTH_REG}/test/layered:latest");
    let o = cli(&d, &["pull", "--user", "carapace:carapace-test", &layered]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("warning") && err.contains("--password-stdin"),
        "{err}"
    );
}

/// A TCP proxy to the test registry that cuts every connection once it
/// has relayed `budget` response bytes on it, and after the first cut
/// refuses new connections: a registry that dies mid-transfer.
struct DyingRegistry {
    port: u16,
    dead: Arc<AtomicBool>,
}

impl DyingRegistry {
    fn start(budget: usize) -> DyingRegistry {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = l.local_addr().expect("addr").port();
        let dead = Arc::new(AtomicBool::new(false));
        let dead2 = dead.clone();
        std::thread::spawn(move || {
            for client in l.incoming() {
                let Ok(client) = client else { continue };
                if dead2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(upstream) = TcpStream::connect(REG) else {
                    continue;
                };
                let dead3 = dead2.clone();
                let (mut c_in, mut u_out) = (
                    client.try_clone().expect("clone"),
                    upstream.try_clone().expect("clone"),
                );
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut u_out);
                });
                std::thread::spawn(move || relay_until(upstream, client, budget, &dead3));
            }
        });
        DyingRegistry { port, dead }
    }
}

fn relay_until(mut from: TcpStream, mut to: TcpStream, budget: usize, dead: &AtomicBool) {
    let mut sent = 0;
    let mut buf = [0u8; 16384];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        let n = n.min(budget - sent);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n;
        if sent >= budget {
            dead.store(true, Ordering::SeqCst);
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_dies_mid_transfer_leaves_no_partial_image() {
    require_registry();
    // test/big has layers of megabytes: 256 KiB of responses covers the
    // manifest and config, then the registry dies inside a layer.
    let proxy = DyingRegistry::start(256 * 1024);
    let host = format!("127.0.0.1:{}", proxy.port);
    let d = Daemon::start(&format!("[registry]\ninsecure = [\"{host}\", \"{REG}\"]\n"));
    let image = format!("{host}/test/big:latest");
    let e = d
        .images()
        .await
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect_err("a pull from a dead registry");
    assert!(proxy.dead.load(Ordering::SeqCst), "the proxy never cut");
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(
        e.message().contains("sha256:") || e.message().contains(&host),
        "the error should name the blob or registry: {}",
        e.message()
    );
    assert!(image_status(&d, &image).await.is_none());
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
    let layers: Vec<PathBuf> = std::fs::read_dir(d.dir.path().join("root/images/layers"))
        .expect("layers dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        layers.iter().all(|p| !p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".tmp"))),
        "partial unpack left: {layers:?}"
    );
    // From a registry that stays up, the same blobs then pull into the
    // same store: nothing half-written is in the way.
    carapace_e2e::workload::pull(&d, &format!("{REG}/test/big:latest")).await;
    assert!(image_status(&d, &format!("{REG}/test/big:latest"))
        .await
        .is_some());
}
