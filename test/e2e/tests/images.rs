//! Images end to end against the local test registries (hack/registry.sh):
//! pull by tag and by digest, with and without basic auth, through a
//! docker.io mirror, from an index; list/status/remove/fs-info; the
//! unpacked layers mounted as overlay apply whiteouts and opaque dirs;
//! concurrent pulls share one transfer; a corrupted blob is refused.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use carapace_e2e::{registry_digest, require_registry, Daemon};
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use tonic::transport::Channel;

type Img = ImageServiceClient<Channel>;

const REG: &str = "127.0.0.1:5000";
const AUTH_REG: &str = "127.0.0.1:5001";

fn spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

async fn pull(
    img: &mut Img,
    image: &str,
    auth: Option<cri::AuthConfig>,
) -> Result<String, tonic::Status> {
    img.pull_image(cri::PullImageRequest {
        image: spec(image),
        auth,
        sandbox_config: None,
    })
    .await
    .map(|r| r.into_inner().image_ref)
}

async fn status(img: &mut Img, image: &str) -> (Option<cri::Image>, serde_json::Value) {
    let r = img
        .image_status(cri::ImageStatusRequest {
            image: spec(image),
            verbose: true,
        })
        .await
        .expect("image status")
        .into_inner();
    let info = r
        .info
        .get("info")
        .map(|s| serde_json::from_str(s).expect("info json"))
        .unwrap_or(serde_json::Value::Null);
    (r.image, info)
}

async fn remove(img: &mut Img, image: &str) {
    img.remove_image(cri::RemoveImageRequest { image: spec(image) })
        .await
        .expect("remove image");
}

fn insecure_daemon(extra: &str) -> Daemon {
    require_registry();
    Daemon::start(&format!(
        "{extra}\n[registry]\ninsecure = [\"{REG}\", \"{AUTH_REG}\"]\n"
    ))
}

fn blobs(d: &Daemon) -> usize {
    std::fs::read_dir(d.dir.path().join("root/images/blobs/sha256"))
        .map(|r| r.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_by_tag_and_digest_then_list_status_fsinfo_and_remove() {
    let d = insecure_daemon("");
    let mut img = d.images().await;
    let tag = format!("{REG}/test/busybox:latest");
    let id = pull(&mut img, &tag, None).await.expect("pull by tag");
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let digest = registry_digest("busybox");
    let by_digest = format!("{REG}/test/busybox@{digest}");
    assert_eq!(
        pull(&mut img, &by_digest, None)
            .await
            .expect("pull by digest"),
        id
    );

    let (image, info) = status(&mut img, &tag).await;
    let image = image.expect("image present");
    assert_eq!(image.id, id);
    assert_eq!(image.repo_tags, vec![tag.clone()]);
    assert_eq!(
        image.repo_digests,
        vec![format!("{REG}/test/busybox@{digest}")]
    );
    assert!(image.size > 0);
    assert_eq!(info["imageSpec"]["config"]["Cmd"][0], "sh");
    // The same image by ID, by short ID and by digest.
    for name in [id.clone(), id[7..19].to_string(), by_digest.clone()] {
        assert_eq!(
            status(&mut img, &name).await.0.map(|i| i.id),
            Some(id.clone()),
            "{name}"
        );
    }
    let list = img
        .list_images(cri::ListImagesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .images;
    assert_eq!(
        list.iter().map(|i| i.id.clone()).collect::<Vec<_>>(),
        vec![id.clone()]
    );
    let fs = img
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .expect("fs info")
        .into_inner();
    let u = &fs.image_filesystems[0];
    assert!(
        u.used_bytes.as_ref().expect("bytes").value > 1_000_000,
        "{u:?}"
    );
    assert!(u.inodes_used.as_ref().expect("inodes").value > 10, "{u:?}");

    // Not found is an empty answer, not an error.
    assert!(status(&mut img, &format!("{REG}/test/nothing:here"))
        .await
        .0
        .is_none());

    remove(&mut img, &tag).await;
    remove(&mut img, &tag).await; // idempotent
    assert!(status(&mut img, &id).await.0.is_none());
    assert_eq!(blobs(&d), 0, "blobs left after removing the only image");
    let layers = std::fs::read_dir(d.dir.path().join("root/images/layers"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(layers, 0, "layers left after removing the only image");
    // And back again.
    assert_eq!(pull(&mut img, &tag, None).await.expect("re-pull"), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_is_required_and_honoured() {
    let d = insecure_daemon("");
    let mut img = d.images().await;
    let image = format!("{AUTH_REG}/test/busybox:latest");
    let e = pull(&mut img, &image, None)
        .await
        .expect_err("no credentials");
    assert!(
        matches!(
            e.code(),
            tonic::Code::Unauthenticated | tonic::Code::Unavailable
        ),
        "{e:?}"
    );
    let wrong = cri::AuthConfig {
        username: "carapace".into(),
        password: "wrong".into(),
        ..Default::default()
    };
    pull(&mut img, &image, Some(wrong))
        .await
        .expect_err("wrong password");
    let good = cri::AuthConfig {
        username: "carapace".into(),
        password: "carapace-test".into(),
        ..Default::default()
    };
    let id = pull(&mut img, &image, Some(good))
        .await
        .expect("pull with password");
    // The `auth` field form: base64 of user:password.
    let encoded = cri::AuthConfig {
        auth: "Y2FyYXBhY2U6Y2FyYXBhY2UtdGVzdA==".into(),
        ..Default::default()
    };
    let nonroot = format!("{AUTH_REG}/test/nonroot:latest");
    let id2 = pull(&mut img, &nonroot, Some(encoded))
        .await
        .expect("pull with auth");
    assert_ne!(id, id2);
    let (image, _) = status(&mut img, &nonroot).await;
    assert_eq!(image.expect("nonroot").username, "app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_hub_names_go_through_a_configured_mirror() {
    require_registry();
    let d = Daemon::start(&format!(
        "[registry.mirrors]\n\"docker.io\" = [\"http://{REG}\"]\n"
    ));
    let mut img = d.images().await;
    let id = pull(&mut img, "busybox", None)
        .await
        .expect("pull busybox via mirror");
    let (image, _) = status(&mut img, "docker.io/library/busybox:latest").await;
    let image = image.expect("busybox");
    assert_eq!(image.id, id);
    assert_eq!(
        image.repo_tags,
        vec!["docker.io/library/busybox:latest".to_string()]
    );
    assert_eq!(status(&mut img, "busybox").await.0.map(|i| i.id), Some(id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_resolves_to_this_hosts_platform_and_tags_move() {
    let d = insecure_daemon("");
    let mut img = d.images().await;
    let tag = format!("{REG}/test/multiarch:latest");
    let id = pull(&mut img, &tag, None).await.expect("pull index");
    let (image, info) = status(&mut img, &tag).await;
    assert_eq!(info["imageSpec"]["architecture"], "amd64");
    assert_eq!(
        info["manifestDigest"],
        registry_digest("multiarch-amd64").as_str()
    );
    let image = image.expect("image");
    assert_eq!(
        image.repo_digests,
        vec![format!(
            "{REG}/test/multiarch@{}",
            registry_digest("multiarch")
        )]
    );
    // Re-tagging: pull another image under the same tag name via the
    // Docker schema2 manifest of busybox; the tag moves to it.
    let v2 = format!("{REG}/test/busybox:v2s2");
    let v2_id = pull(&mut img, &v2, None).await.expect("pull v2s2");
    assert_ne!(v2_id, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_mount_as_overlay_with_whiteouts_applied() {
    let d = insecure_daemon("");
    let mut img = d.images().await;
    let tag = format!("{REG}/test/layered:latest");
    pull(&mut img, &tag, None).await.expect("pull layered");
    let (_, info) = status(&mut img, &tag).await;
    let layers = info["layers"].as_array().expect("layers");
    assert!(layers.len() >= 3);
    let media: HashSet<String> = layers
        .iter()
        .map(|l| l["media_type"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(media.iter().any(|m| m.ends_with("+zstd")), "{media:?}");
    assert!(media.iter().any(|m| m.ends_with("+gzip")), "{media:?}");
    let dirs: Vec<PathBuf> = layers
        .iter()
        .rev()
        .map(|l| {
            let chain = l["chain_id"].as_str().expect("chain id");
            d.dir.path().join("root/images/layers").join(&chain[7..])
        })
        .collect();
    let work = d.dir.path().join("ovl");
    for sub in ["upper", "work", "merged"] {
        std::fs::create_dir_all(work.join(sub)).expect("mkdir");
    }
    let lower = dirs
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let merged = work.join("merged");
    let st = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!(
            "lowerdir={lower},upperdir={},workdir={}",
            work.join("upper").display(),
            work.join("work").display()
        ))
        .arg(&merged)
        .status()
        .expect("mount");
    assert!(st.success(), "overlay mount failed");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(merged.clone());
    let m = |p: &str| merged.join(p);
    assert!(m("data/keep").exists());
    assert!(!m("data/gone").exists(), "whiteout not applied");
    let opq: Vec<String> = std::fs::read_dir(m("opq"))
        .expect("opq")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(opq, vec!["c".to_string()], "opaque dir shows lower content");
    assert_eq!(
        std::fs::read_to_string(m("replace"))
            .expect("replace")
            .trim(),
        "new"
    );
    assert!(m("bin/sh").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_of_one_image_share_one_transfer() {
    let d = insecure_daemon("");
    let tag = format!("{REG}/test/big:latest");
    let mut a = d.images().await;
    let mut b = d.images().await;
    let (ra, rb) = tokio::join!(pull(&mut a, &tag, None), pull(&mut b, &tag, None));
    let (ra, rb) = (ra.expect("pull a"), rb.expect("pull b"));
    assert_eq!(ra, rb);
    let (_, info) = status(&mut a, &tag).await;
    let layers = info["layers"].as_array().expect("layers").len();
    let downloads = d.log().matches("layer downloaded").count();
    assert_eq!(
        downloads,
        layers,
        "each layer must be downloaded once:\n{}",
        d.log()
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Stops a registry the test started.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A registry of the test's own, its data in `dir/data`, serving TLS with
/// `tls` (certificate and key files) when given, holding a copy of the
/// test busybox; its `host:port`.
fn private_registry(dir: &Path, tls: Option<(&Path, &Path)>) -> (Kill, String) {
    let port = free_port();
    let cfg = dir.join("config.yml");
    let tls = tls
        .map(|(c, k)| {
            format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                c.display(),
                k.display()
            )
        })
        .unwrap_or_default();
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n{tls}",
            dir.join("data").display()
        ),
    )
    .expect("config");
    let reg = Kill(
        Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry (hack/install-deps.sh installs it)"),
    );
    let deadline = std::time::Instant::now() + carapace_e2e::HANG_GUARD;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "private registry never came up"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let dest = format!("127.0.0.1:{port}");
    let st = Command::new("skopeo")
        .args([
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--preserve-digests",
        ])
        .arg(format!("docker://{REG}/test/busybox:latest"))
        .arg(format!("docker://{dest}/test/busybox:latest"))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("skopeo");
    assert!(st.success(), "skopeo copy");
    (reg, dest)
}

/// Runs `openssl` with `args` in `dir`; fails the test if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Pulls `image`, which must fail on the registry's certificate (`what`
/// says why it should).
async fn refused_for_its_certificate(img: &mut Img, image: &str, what: &str) {
    let e = pull(img, image, None).await.expect_err(what);
    assert!(
        e.message().to_lowercase().contains("certificate"),
        "{}",
        e.message()
    );
}

/// Pulls from a registry that serves TLS: trusted through the roots the
/// system names (SSL_CERT_FILE here, as for Go's and OpenSSL's clients),
/// refused with a certificate error when its CA is not among them, or
/// when the node has no CA certificates at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_registry_is_pulled_from_when_its_ca_is_trusted_and_refused_otherwise() {
    require_registry();
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=carapace test CA",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.crt",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ],
    );
    let (_reg, dest) = private_registry(d, Some((&d.join("srv.crt"), &d.join("srv.key"))));
    let image = format!("{dest}/test/busybox:latest");

    let mut trusting = Daemon::configure("");
    trusting.env.push((
        "SSL_CERT_FILE".into(),
        d.join("ca.crt").display().to_string(),
    ));
    trusting.spawn();
    let mut img = trusting.images().await;
    let r = pull(&mut img, &image, None).await.expect("pull over TLS");
    assert!(r.starts_with("sha256:"), "{r}");

    let other = Daemon::start("");
    let mut img = other.images().await;
    refused_for_its_certificate(&mut img, &image, "a registry whose CA is not trusted").await;

    // A node with no CA certificates at all (a minimal image, the VM
    // lane's guest): the daemon keeps serving, plain-HTTP registries
    // still work, and TLS ones fail verification.
    std::fs::write(d.join("none.pem"), "").expect("empty bundle");
    let mut bare = Daemon::configure(&format!("[registry]\ninsecure = [\"{REG}\"]\n"));
    bare.env.push((
        "SSL_CERT_FILE".into(),
        d.join("none.pem").display().to_string(),
    ));
    bare.env.push((
        "SSL_CERT_DIR".into(),
        d.join("no-such-dir").display().to_string(),
    ));
    bare.spawn();
    let mut img = bare.images().await;
    refused_for_its_certificate(&mut img, &image, "TLS with no CA certificates").await;
    pull(&mut img, &format!("{REG}/test/busybox:latest"), None)
        .await
        .expect("a plain-HTTP pull on a node without CA certificates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_blob_is_refused_and_nothing_is_kept() {
    require_registry();
    // A private registry whose copy of busybox has a damaged layer.
    let dir = tempfile::tempdir().expect("tmp");
    let (_reg, dest) = private_registry(dir.path(), None);
    // Flip bytes in the biggest blob (the layer).
    let mut biggest: Option<(u64, PathBuf)> = None;
    for e in walk(&dir.path().join("data")) {
        if e.file_name().is_some_and(|n| n == "data") {
            let len = std::fs::metadata(&e).map(|m| m.len()).unwrap_or(0);
            if biggest.as_ref().is_none_or(|(l, _)| len > *l) {
                biggest = Some((len, e));
            }
        }
    }
    let (_, layer) = biggest.expect("a layer blob");
    let mut bytes = std::fs::read(&layer).expect("read blob");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&layer, bytes).expect("corrupt blob");

    let d = Daemon::start(&format!("[registry]\ninsecure = [\"{dest}\"]\n"));
    let mut img = d.images().await;
    let e = pull(&mut img, &format!("{dest}/test/busybox:latest"), None)
        .await
        .expect_err("corrupted blob");
    assert!(e.message().contains("digest"), "{}", e.message());
    let list = img
        .list_images(cri::ListImagesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .images;
    assert!(list.is_empty());
    let ingest = std::fs::read_dir(d.dir.path().join("root/images/ingest"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(ingest, 0, "partial download left behind");
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A registry that accepts the connection and never answers must not pin
/// a pull (and its layer locks) for ever: with `read_timeout_secs` the pull
/// fails as Unavailable, and the daemon goes on serving other pulls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_never_answers_fails_the_pull_instead_of_pinning_it() {
    require_registry();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    // Accepts and holds every connection, answering nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming().flatten() {
            held.push(c);
        }
    });
    let d = Daemon::start(&format!(
        "[registry]\ninsecure = [\"{addr}\", \"{REG}\"]\nread_timeout_secs = 2\n"
    ));
    let mut img = d.images().await;
    // A hang guard, not a performance bound: without the read timeout
    // the pull never returns.
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        pull(&mut img, &format!("{addr}/silent:1"), None),
    )
    .await
    .expect("the pull of a silent registry never returned");
    let e = r.expect_err("a silent registry");
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    pull(&mut img, &format!("{REG}/test/busybox:latest"), None)
        .await
        .expect("another pull after the stalled one");
}
