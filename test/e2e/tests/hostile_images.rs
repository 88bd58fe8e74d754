//! Images from a hostile registry cannot exhaust the node (issue 22):
//! each test builds a one-layer image around a hostile layer, pushes it to
//! the test registry (hack/registry.sh) through the registry API,
//! pulls it through the daemon, and checks that the pull fails with a
//! clear status, the daemon's peak memory stays within a stated bound,
//! no unpacked layer is left, and the daemon still pulls other images.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use carapace_e2e::workload::try_pull as pull;
use carapace_e2e::{require_registry, Daemon};
use sha2::{Digest, Sha256};

const REG: &str = "127.0.0.1:5000";

fn sha256(b: &[u8]) -> String {
    let d = Sha256::digest(b);
    let hex: String = d.iter().map(|x| format!("{x:02x}")).collect();
    format!("sha256:{hex}")
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).expect("gzip");
    e.finish().expect("gzip")
}

/// Runs curl against the test registry; fails loudly. Its stdout.
fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .arg("-fsS")
        .args(args)
        .output()
        .expect("run curl (hack/registry.sh installs it)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Uploads `blob` to `repo` through the registry API (an upload session,
/// then one PUT: no client in between that would refuse hostile content);
/// its descriptor.
fn upload(dir: &Path, repo: &str, media_type: &str, blob: &[u8]) -> serde_json::Value {
    let digest = sha256(blob);
    let file = dir.join(digest.trim_start_matches("sha256:"));
    std::fs::write(&file, blob).expect("write blob");
    let headers = curl(&[
        "-X",
        "POST",
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("http://{REG}/v2/{repo}/blobs/uploads/"),
    ]);
    let location = headers
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("location")
                .then(|| v.trim().to_string())
        })
        .expect("upload location");
    let location = if location.starts_with('/') {
        format!("http://{REG}{location}")
    } else {
        location
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    curl(&[
        "-X",
        "PUT",
        "-o",
        "/dev/null",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{location}{sep}digest={digest}"),
    ]);
    serde_json::json!({"mediaType": media_type, "digest": digest, "size": blob.len()})
}

/// Pushes an image whose one layer is `layer_tar` (gzip'd here) to
/// `127.0.0.1:5000/<repo>:latest`; the layer blob's digest.
fn push_one_layer_image(repo: &str, layer_tar: &[u8]) -> String {
    push_image(repo, layer_tar, 0)
}

/// As [`push_one_layer_image`], the config padded with `pad` bytes.
fn push_image(repo: &str, layer_tar: &[u8], pad: usize) -> String {
    push_layers(repo, &[layer_tar], pad).remove(0)
}

/// Pushes an image of `layer_tars` (gzip'd here, bottom first), its config
/// padded with `pad` bytes, to `127.0.0.1:5000/<repo>:latest`; the layer
/// blobs' digests.
fn push_layers(repo: &str, layer_tars: &[&[u8]], pad: usize) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let layers: Vec<serde_json::Value> = layer_tars
        .iter()
        .map(|t| {
            upload(
                dir.path(),
                repo,
                "application/vnd.oci.image.layer.v1.tar+gzip",
                &gzip(t),
            )
        })
        .collect();
    let diff_ids: Vec<String> = layer_tars.iter().map(|t| sha256(t)).collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "padding": "x".repeat(pad)
    });
    let config = upload(
        dir.path(),
        repo,
        "application/vnd.oci.image.config.v1+json",
        config.to_string().as_bytes(),
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": layers
    });
    let path = dir.path().join("manifest.json");
    std::fs::write(&path, manifest.to_string()).expect("manifest");
    curl(&[
        "-X",
        "PUT",
        "-o",
        "/dev/null",
        "-H",
        "Content-Type: application/vnd.oci.image.manifest.v1+json",
        "--data-binary",
        &format!("@{}", path.display()),
        &format!("http://{REG}/v2/{repo}/manifests/latest"),
    ]);
    layers
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect()
}

/// Appends a regular file `path` holding `data`, owned by root.
fn append_file(tar: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut f = tar::Header::new_gnu();
    f.set_entry_type(tar::EntryType::Regular);
    f.set_size(data.len() as u64);
    f.set_mode(0o644);
    f.set_uid(0);
    f.set_gid(0);
    f.set_mtime(0);
    tar.append_data(&mut f, path, data).expect("file");
}

/// The daemon's peak resident memory so far, in KiB.
fn peak_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Blobs in the daemon's content store, and files left in its ingest dir.
fn stored_blobs(d: &Daemon) -> Vec<String> {
    let images = d.dir.path().join("root/images");
    ["blobs/sha256", "ingest"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(images.join(sub)).into_iter().flatten())
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Unpacked layer directories in the daemon's image store.
fn unpacked_layers(d: &Daemon) -> Vec<String> {
    std::fs::read_dir(d.dir.path().join("root/images/layers"))
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Pulls the hostile `repo` (whose layer blob is `layer`), expecting
/// `code`; checks the peak memory bound, that neither the layer blob nor
/// an unpacked layer is left, and that the daemon still pulls.
async fn pull_fails_within_bounds(
    d: &Daemon,
    repo: &str,
    layer: &str,
    code: tonic::Code,
) -> tonic::Status {
    pull_fails_within_bounds_from(d, REG, repo, layer, code).await
}

/// As [`pull_fails_within_bounds`], from the registry at `reg`.
async fn pull_fails_within_bounds_from(
    d: &Daemon,
    reg: &str,
    repo: &str,
    layer: &str,
    code: tonic::Code,
) -> tonic::Status {
    pull_fails_leaving_nothing(d, reg, repo, &[layer], code).await
}

/// As [`pull_fails_within_bounds_from`], for an image of several layers,
/// none of which may be kept.
async fn pull_fails_leaving_nothing(
    d: &Daemon,
    reg: &str,
    repo: &str,
    layers: &[&str],
    code: tonic::Code,
) -> tonic::Status {
    let before = peak_rss_kib(d.pid());
    let e = pull(d, &format!("{reg}/{repo}:latest"))
        .await
        .expect_err("a hostile image");
    assert_eq!(
        e.code(),
        code,
        "{}",
        &e.message()[..e.message().len().min(500)]
    );
    assert!(
        e.message().len() < 4096,
        "a {} byte message",
        e.message().len()
    );
    let after = peak_rss_kib(d.pid());
    // The bound this test states: a hostile layer costs the daemon less
    // than 64 MiB of peak memory (the long-name bomb took 1.6 GiB).
    assert!(
        after < before + (64 << 10),
        "peak RSS went from {before} KiB to {after} KiB"
    );
    let left = unpacked_layers(d);
    assert!(left.is_empty(), "layers left unpacked: {left:?}");
    let blobs = stored_blobs(d);
    assert!(
        blobs.is_empty(),
        "blobs of the failed pull are kept: {blobs:?}"
    );
    for layer in layers.iter().filter(|l| !l.is_empty()) {
        assert!(
            !blobs.contains(&layer.trim_start_matches("sha256:").to_string()),
            "the hostile layer blob {layer} is kept"
        );
    }
    pull(d, &format!("{REG}/test/busybox:latest"))
        .await
        .expect("another pull after the hostile one");
    e
}

/// A GNU long name of 256 MiB: a layer of a few hundred KiB of gzip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_name_bomb_fails_the_pull_in_bounded_memory() {
    require_registry();
    let mut tar = tar::Builder::new(Vec::new());
    let name = vec![b'a'; 256 << 20];
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNULongName);
    h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    h.set_size(name.len() as u64);
    h.set_cksum();
    tar.append(&h, name.as_slice()).expect("long name");
    append_file(&mut tar, "f", b"x");
    let layer = tar.into_inner().expect("tar");
    drop(name);
    let blob = push_one_layer_image("hostile/longname", &layer);
    let d = Daemon::start(&format!("[registry]\ninsecure = [\"{REG}\"]\n"));
    let e = pull_fails_within_bounds(&d, "hostile/longname", &blob, tonic::Code::Internal).await;
    assert!(e.message().contains("over 1024 KiB"), "{}", e.message());
}

/// 256 MiB of one repeated byte gzips to a few hundred KiB; a layer limit
/// of 16 MiB stops it while unpacking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_over_the_layer_limit_fails_the_pull() {
    require_registry();
    let mut tar = tar::Builder::new(Vec::new());
    let data = vec![b'A'; 256 << 20];
    append_file(&mut tar, "bomb", &data);
    let layer = tar.into_inner().expect("tar");
    drop(data);
    let blob = push_one_layer_image("hostile/gzipbomb", &layer);
    let d = Daemon::start(&format!(
        "[registry]\ninsecure = [\"{REG}\"]\n[images]\nmax_layer_bytes = 16777216\n"
    ));
    let e = pull_fails_within_bounds(
        &d,
        "hostile/gzipbomb",
        &blob,
        tonic::Code::ResourceExhausted,
    )
    .await;
    assert!(e.message().contains("max_layer_bytes"), "{}", e.message());
}

/// A 64 MiB config is refused from its declared size, before it is
/// downloaded or read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_config_is_refused_unread() {
    require_registry();
    let mut tar = tar::Builder::new(Vec::new());
    append_file(&mut tar, "f", b"x");
    let layer = tar.into_inner().expect("tar");
    let blob = push_image("hostile/bigconfig", &layer, 64 << 20);
    let d = Daemon::start(&format!("[registry]\ninsecure = [\"{REG}\"]\n"));
    let e = pull_fails_within_bounds(&d, "hostile/bigconfig", &blob, tonic::Code::Internal).await;
    assert!(
        e.message().contains("over the 4 MiB limit"),
        "{}",
        e.message()
    );
}

/// A registry on 127.0.0.1 that answers `/v2/` and, for any manifest, a
/// body of `size` bytes: said in Content-Length, or (`with_length` false)
/// streamed until the connection closes. Its `host:port`.
fn registry_of_one_big_manifest(size: usize, with_length: bool) -> String {
    serve_http(move |path, out| {
        if path == "/v2/" {
            return out
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
                .is_ok();
        }
        let length = if with_length {
            format!("Content-Length: {size}\r\n")
        } else {
            "Connection: close\r\n".to_string()
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n{length}\r\n"
        );
        if out.write_all(head.as_bytes()).is_err() {
            return false;
        }
        let chunk = vec![b' '; 64 << 10];
        let mut sent = 0;
        while sent < size {
            let n = chunk.len().min(size - sent);
            if out.write_all(&chunk[..n]).is_err() {
                return false;
            }
            sent += n;
        }
        with_length
    })
}

/// A plain HTTP/1.1 server on 127.0.0.1 for registries that misbehave on
/// purpose: each request's path goes to `answer`, which writes the whole
/// response and says whether the connection stays open. Its `host:port`.
fn serve_http<F>(answer: F) -> String
where
    F: Fn(&str, &mut std::net::TcpStream) -> bool + Clone + Send + 'static,
{
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut out = conn;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                    }
                    if !answer(&path, &mut out) {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A 64 MiB manifest is refused at 4 MiB, whether its length is said up
/// front or not: oci-client alone would read it whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_manifest_is_refused_at_the_limit() {
    require_registry();
    for with_length in [true, false] {
        let reg = registry_of_one_big_manifest(64 << 20, with_length);
        let d = Daemon::start(&format!("[registry]\ninsecure = [\"{reg}\", \"{REG}\"]\n"));
        let e = pull_fails_within_bounds_from(&d, &reg, "big", "", tonic::Code::Internal).await;
        assert!(
            e.message().contains("over the 4 MiB limit"),
            "with_length {with_length}: {}",
            e.message()
        );
    }
}

/// A PAX header of 256 MiB (one `path` record): the tar reader would
/// read it whole into memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pax_header_bomb_fails_the_pull_in_bounded_memory() {
    require_registry();
    let mut tar = tar::Builder::new(Vec::new());
    let value = vec![b'p'; 256 << 20];
    tar.append_pax_extensions([("path", value.as_slice())])
        .expect("pax header");
    drop(value);
    append_file(&mut tar, "f", b"x");
    let layer = tar.into_inner().expect("tar");
    let blob = push_one_layer_image("hostile/paxbomb", &layer);
    let d = Daemon::start(&format!("[registry]\ninsecure = [\"{REG}\"]\n"));
    let e = pull_fails_within_bounds(&d, "hostile/paxbomb", &blob, tonic::Code::Internal).await;
    assert!(e.message().contains("over 1024 KiB"), "{}", e.message());
}

/// A GNU sparse tar (`tar --sparse`, as the issue made it) of a file that
/// is a `hole` byte hole and a few bytes of data; its bytes.
fn sparse_layer(hole: u64) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("sparse");
    let file = std::fs::File::create(&f).expect("create");
    file.set_len(hole).expect("make the hole");
    drop(file);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&f)
        .expect("open");
    file.write_all(b"tail").expect("tail");
    drop(file);
    let out = dir.path().join("layer.tar");
    let st = Command::new("tar")
        .args(["--sparse", "--format=gnu", "--owner=0", "--group=0", "-cf"])
        .arg(&out)
        .arg("-C")
        .arg(dir.path())
        .arg("sparse")
        .status()
        .expect("GNU tar");
    assert!(st.success(), "tar --sparse failed");
    let tar = std::fs::read(&out).expect("read the tar");
    assert!(
        tar.len() < 1 << 20,
        "tar --sparse made {} bytes: not sparse",
        tar.len()
    );
    tar
}

/// A 1 GiB hole in a 10 KiB tar unpacks as a hole: the pull succeeds and
/// the file takes (almost) no space on the image store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sparse_file_is_unpacked_as_a_hole() {
    use std::os::unix::fs::MetadataExt;
    require_registry();
    let layer = sparse_layer(1 << 30);
    push_one_layer_image("hostile/sparse", &layer);
    let d = Daemon::start(&format!("[registry]\ninsecure = [\"{REG}\"]\n"));
    pull(&d, &format!("{REG}/hostile/sparse:latest"))
        .await
        .expect("a sparse layer within the limits");
    let layers = unpacked_layers(&d);
    let dir = layers
        .iter()
        .find(|n| !n.ends_with(".usage"))
        .expect("an unpacked layer");
    let file = d
        .dir
        .path()
        .join("root/images/layers")
        .join(dir)
        .join("sparse");
    let md = std::fs::metadata(&file).expect("the sparse file");
    assert_eq!(md.len(), (1 << 30) + 4);
    assert!(
        md.blocks() * 512 < 1 << 20,
        "a 1 GiB hole takes {} bytes",
        md.blocks() * 512
    );
}

/// A 64 GiB hole, over a 16 MiB layer limit: the pull fails while
/// unpacking, long before 64 GiB of zeros are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sparse_bomb_over_the_layer_limit_fails_the_pull() {
    require_registry();
    let layer = sparse_layer(64 << 30);
    let blob = push_one_layer_image("hostile/sparsebomb", &layer);
    let d = Daemon::start(&format!(
        "[registry]\ninsecure = [\"{REG}\"]\n[images]\nmax_layer_bytes = 16777216\n"
    ));
    let e = pull_fails_within_bounds(
        &d,
        "hostile/sparsebomb",
        &blob,
        tonic::Code::ResourceExhausted,
    )
    .await;
    assert!(e.message().contains("max_layer_bytes"), "{}", e.message());
}

/// Three layers of 12 MiB each, every one within its own 16 MiB limit,
/// are 36 MiB together: over a 32 MiB image limit. The pull fails, and
/// neither the layers it unpacked nor any blob it stored is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_each_within_limits_fail_together_over_the_image_limit() {
    require_registry();
    let tars: Vec<Vec<u8>> = (0..3u8)
        .map(|i| {
            let mut tar = tar::Builder::new(Vec::new());
            append_file(&mut tar, &format!("part{i}"), &vec![b'a' + i; 12 << 20]);
            tar.into_inner().expect("tar")
        })
        .collect();
    let refs: Vec<&[u8]> = tars.iter().map(|t| t.as_slice()).collect();
    let blobs = push_layers("hostile/imagebudget", &refs, 0);
    let blobs: Vec<&str> = blobs.iter().map(|b| b.as_str()).collect();
    let d = Daemon::start(&format!(
        "[registry]\ninsecure = [\"{REG}\"]\n[images]\nmax_layer_bytes = 16777216\nmax_image_bytes = 33554432\n"
    ));
    let e = pull_fails_leaving_nothing(
        &d,
        REG,
        "hostile/imagebudget",
        &blobs,
        tonic::Code::ResourceExhausted,
    )
    .await;
    assert!(e.message().contains("max_image_bytes"), "{}", e.message());
}

/// A registry on 127.0.0.1 serving one image, `slow:latest`, whose only
/// layer (declared 1 GiB) is sent a KiB every 50 ms for as long as the
/// client reads. Its `host:port`, and a receiver told once the layer's
/// download starts and again once the client has closed it.
fn registry_of_one_slow_layer() -> (String, std::sync::mpsc::Receiver<&'static str>) {
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256(b"never")]}
    })
    .to_string();
    let layer = sha256(b"the layer that never ends");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(config.as_bytes()), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer, "size": 1u64 << 30}]
    })
    .to_string();
    let (tell, told) = std::sync::mpsc::channel();
    let addr = serve_http(move |path, out| {
        let (kind, body) = if path == "/v2/" {
            ("application/json", "{}".to_string())
        } else if path.contains("/manifests/") {
            (
                "application/vnd.oci.image.manifest.v1+json",
                manifest.clone(),
            )
        } else if path.ends_with(&layer) {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                1u64 << 30
            );
            if out.write_all(head.as_bytes()).is_err() {
                return false;
            }
            let _ = tell.send("started");
            let chunk = [0u8; 1024];
            while out.write_all(&chunk).is_ok() {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = tell.send("closed");
            return false;
        } else if path.contains("/blobs/") {
            ("application/octet-stream", config.clone())
        } else {
            return out
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .is_ok();
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        out.write_all(head.as_bytes()).is_ok() && out.write_all(body.as_bytes()).is_ok()
    });
    (addr, told)
}

/// Ctrl-C on `carapace image pull` cancels the pull in the daemon: the
/// layer download stops (the registry sees its connection closed; the
/// layer would otherwise trickle in for hours), no partial blob stays in
/// the content store, and the daemon still pulls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_on_an_admin_pull_cancels_it_in_the_daemon() {
    use std::time::Duration;
    require_registry();
    let (reg, told) = registry_of_one_slow_layer();
    let d = Daemon::start(&format!("[registry]\ninsecure = [\"{reg}\", \"{REG}\"]\n"));
    let mut cli = Command::new(carapace_e2e::daemon_bin())
        .arg("--config")
        .arg(d.config_path())
        .args(["image", "pull", &format!("{reg}/slow:latest")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("carapace image pull");
    assert_eq!(
        told.recv_timeout(Duration::from_secs(60)),
        Ok("started"),
        "the layer download never started"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(cli.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT the pull");
    cli.wait().expect("wait for the CLI");
    // The daemon notices within a second or two (a WAITING message each
    // quiet second); a minute is far beyond that, and far below the
    // hours the trickle would take.
    assert_eq!(
        told.recv_timeout(Duration::from_secs(60)),
        Ok("closed"),
        "the daemon kept downloading after the caller went away"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !stored_blobs(&d).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = stored_blobs(&d);
    assert!(left.is_empty(), "the cancelled pull left {left:?}");
    pull(&d, &format!("{REG}/test/busybox:latest"))
        .await
        .expect("a pull after the cancelled one");
}

/// The daemon killed -9 in the middle of a pull (its manifest and config
/// stored, its layer trickling in): the restarted daemon keeps nothing of
/// it, and pulls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_cut_by_a_daemon_kill_leaves_nothing_after_the_restart() {
    use std::time::Duration;
    require_registry();
    let (reg, told) = registry_of_one_slow_layer();
    let mut d = Daemon::start(&format!("[registry]\ninsecure = [\"{reg}\", \"{REG}\"]\n"));
    let mut images = d.images().await;
    let image = format!("{reg}/slow:latest");
    let cut = tokio::spawn(async move {
        images
            .pull_image(k8s_cri::v1::PullImageRequest {
                image: Some(k8s_cri::v1::ImageSpec {
                    image,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
    });
    assert_eq!(
        told.recv_timeout(Duration::from_secs(60)),
        Ok("started"),
        "the layer download never started"
    );
    d.stop(nix::sys::signal::Signal::SIGKILL);
    assert!(
        cut.await.expect("join").is_err(),
        "a pull outlived its daemon"
    );
    let before = stored_blobs(&d);
    assert!(
        before.len() >= 2,
        "the cut pull stored too little to prove anything: {before:?}"
    );
    d.spawn();
    // Served means recovered (the socket is bound before recovery).
    d.runtime()
        .await
        .version(k8s_cri::v1::VersionRequest::default())
        .await
        .expect("the restarted daemon serves");
    let left = stored_blobs(&d);
    assert!(left.is_empty(), "the restarted daemon kept {left:?}");
    pull(&d, &format!("{REG}/test/busybox:latest"))
        .await
        .expect("a pull after the restart");
}
