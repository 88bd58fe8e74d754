//! CheckpointContainer and the restore of its archive (KEP 2008), against
//! the real daemon, shim, runtime and CRIU: a counting container is
//! checkpointed while it runs (and runs on); the archive holds what CRI-O's
//! does; a container created in another pod with the archive's path as its
//! image is restored stopped, and once started counts on from where the
//! checkpoint caught it, with the checkpointed rootfs changes, in the new
//! pod's network; so is one whose image is that checkpoint packed as a
//! checkpoint image (CRI-O's form). Ignored in plain `cargo test`: CRIU cannot run on every
//! kernel (Debian's CRIU 3.17 fails `criu check` on the build host's);
//! hack/test-v2.sh runs it with `--ignored` in its VM, on Debian's kernel.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use carapace_e2e::workload::{
    busybox_container, busybox_pod, create, pod_ip, run, run_pod, sh, start, status,
    stop_and_remove, stop_and_remove_pod, Rt,
};
use k8s_cri::v1 as cri;

/// The numbers a counter container has logged (CRI log lines).
fn counted(log: &Path) -> Vec<u64> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit(' ').next())
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The entry names of a tar.
fn entries(tar: &Path) -> BTreeSet<String> {
    let mut ar = tar::Archive::new(std::fs::File::open(tar).expect("open archive"));
    ar.entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string()
                .trim_end_matches('/')
                .to_string()
        })
        .collect()
}

/// A file of a tar, read whole.
fn read_entry(tar: &Path, name: &str) -> Vec<u8> {
    let mut ar = tar::Archive::new(std::fs::File::open(tar).expect("open archive"));
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        if e.path().expect("path").display().to_string() == name {
            let mut b = Vec::new();
            e.read_to_end(&mut b).expect("read");
            return b;
        }
    }
    panic!("{} has no {name}", tar.display());
}

/// Packs a checkpoint archive as an OCI image archive the way CRI-O's
/// checkpoint images are built (buildah: the archive's content as the one
/// layer, the checkpoint annotation on the manifest).
fn checkpoint_image(archive: &Path, out: &Path) {
    use sha2::{Digest, Sha256};
    let digest = |b: &[u8]| {
        let hex: String = Sha256::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect();
        format!("sha256:{hex}")
    };
    let layer = std::fs::read(archive).expect("read archive");
    let layer_digest = digest(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]}
    }))
    .expect("json");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest(&config),
            "size": config.len()
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len()
        }],
        "annotations": {"io.kubernetes.cri-o.annotations.checkpoint.name": "counter"}
    }))
    .expect("json");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(&manifest),
            "size": manifest.len()
        }]
    }))
    .expect("json");
    let mut b = tar::Builder::new(std::fs::File::create(out).expect("create"));
    let mut add = |name: String, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).expect("append");
    };
    add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json".into(), &index);
    for blob in [&layer, &config, &manifest] {
        let d = digest(blob);
        add(format!("blobs/sha256/{}", &d["sha256:".len()..]), blob);
    }
    b.finish().expect("finish");
}

async fn checkpoint(rt: &mut Rt, id: &str, location: &Path) -> Result<(), tonic::Status> {
    rt.checkpoint_container(cri::CheckpointContainerRequest {
        container_id: id.into(),
        location: location.display().to_string(),
        timeout: 120,
    })
    .await
    .map(drop)
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "needs a kernel CRIU works on: hack/test-v2.sh runs it in its VM lane"]
async fn a_checkpointed_counter_is_restored_in_another_pod_and_counts_on() {
    let (d, mut rt, pod, pc) = busybox_pod("ckpt-a", |_| {}).await;
    let logs = Path::new(&pc.log_directory).to_path_buf();
    // Changes to its rootfs: a file made, an image file deleted.
    let counter = busybox_container(
        "counter",
        &[
            "sh",
            "-c",
            "echo made-before-checkpoint > /marker; rm /bin/yes; \
             i=0; while :; do i=$((i+1)); echo $i; sleep 0.2; done",
        ],
        Default::default(),
    );
    let id = run(&mut rt, &pod, &pc, counter).await;
    let log = logs.join("counter.log");
    wait_for("five numbers", || counted(&log).len() >= 5).await;

    let out = d.dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let archive = out.join("counter.tar");
    // Refusals first: a relative location, a missing directory.
    let e = checkpoint(&mut rt, &id, Path::new("counter.tar"))
        .await
        .expect_err("relative location");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let e = checkpoint(&mut rt, &id, &out.join("no/such/dir.tar"))
        .await
        .expect_err("missing directory");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");

    checkpoint(&mut rt, &id, &archive)
        .await
        .expect("CheckpointContainer");
    let at_checkpoint = counted(&log).len() as u64;
    // CRI-O's layout.
    let names = entries(&archive);
    for want in [
        "config.dump",
        "spec.dump",
        "rootfs-diff.tar",
        "deleted.files",
        "checkpoint/inventory.img",
        "checkpoint/descriptors.json",
    ] {
        assert!(names.contains(want), "archive lacks {want}: {names:?}");
    }
    assert!(
        names.iter().any(|n| n.starts_with("checkpoint/pages-")),
        "no CRIU memory pages: {names:?}"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&read_entry(&archive, "config.dump")).expect("config.dump");
    assert_eq!(config["id"], id.as_str(), "{config}");
    assert_eq!(config["name"], "counter", "{config}");
    assert!(
        config["rootfsImageName"]
            .as_str()
            .is_some_and(|n| n.contains("test/busybox")),
        "{config}"
    );
    let deleted: Vec<String> =
        serde_json::from_slice(&read_entry(&archive, "deleted.files")).expect("deleted.files");
    assert!(deleted.contains(&"/bin/yes".to_string()), "{deleted:?}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&archive)
            .expect("stat")
            .permissions()
            .mode()
            & 0o077,
        0,
        "the archive (the container's memory) is readable by others"
    );
    // It runs on.
    wait_for("the checkpointed container to count on", || {
        counted(&log).len() as u64 > at_checkpoint + 2
    })
    .await;
    assert_eq!(
        status(&mut rt, &id).await.state,
        cri::ContainerState::ContainerRunning as i32
    );

    // Restore in another pod, the archive's path as the image.
    let mut pc2 = carapace_e2e::pod_config("ckpt-b");
    pc2.log_directory = pc.log_directory.clone();
    pc2.hostname = "restored-host".into();
    let pod2 = run_pod(&mut rt, pc2.clone()).await;
    let mut restored =
        busybox_container("restored", &["this", "is", "replaced"], Default::default());
    restored.image = Some(cri::ImageSpec {
        image: archive.display().to_string(),
        ..Default::default()
    });
    let id2 = create(&mut rt, &pod2, &pc2, restored)
        .await
        .expect("CreateContainer from the checkpoint archive");
    let st = status(&mut rt, &id2).await;
    assert_eq!(st.state, cri::ContainerState::ContainerCreated as i32);
    // On the checkpointed container's image; the image kubelet asked for
    // (the archive) is what status names.
    let original = status(&mut rt, &id).await;
    assert_eq!(st.image_ref, original.image_ref, "{st:?}");
    assert_eq!(
        st.image.as_ref().map(|i| i.image.clone()),
        Some(archive.display().to_string())
    );
    start(&mut rt, &id2).await;
    let log2 = logs.join("restored.log");
    wait_for("the restored container to count", || {
        counted(&log2).len() >= 3
    })
    .await;
    let got = counted(&log2);
    assert!(
        got[0] > 3 && got[0] <= at_checkpoint + 1,
        "the restored counter starts at {} (the checkpoint caught it at {at_checkpoint}): {got:?}",
        got[0]
    );
    for w in got.windows(2) {
        assert_eq!(w[1], w[0] + 1, "{got:?}");
    }
    // The rootfs changes came along; the network and hostname are the new
    // pod's.
    let (code, marker, _) = sh(&mut rt, &id2, "cat /marker; test ! -e /bin/yes").await;
    assert_eq!((code, marker.trim()), (0, "made-before-checkpoint"));
    let (_, ip, _) = sh(&mut rt, &id2, "ip -4 addr show eth0").await;
    let ip2 = pod_ip(&mut rt, &pod2).await;
    assert!(
        ip.contains(&format!("{ip2}/")),
        "restored container not on pod b's network ({ip2}): {ip}"
    );
    let (_, host, _) = sh(&mut rt, &id2, "hostname").await;
    assert_eq!(host.trim(), "restored-host");

    // The same checkpoint as a checkpoint image (CRI-O's form: one layer
    // holding the archive's content, marked by its annotation), imported
    // and named as the image.
    let oci = out.join("counter-oci.tar");
    checkpoint_image(&archive, &oci);
    let o = std::process::Command::new(carapace_e2e::daemon_bin())
        .arg("--config")
        .arg(d.config_path())
        .args([
            "image",
            "import",
            "--name",
            "localhost/checkpoint/counter:latest",
        ])
        .arg(&oci)
        .output()
        .expect("run carapace image import");
    assert!(o.status.success(), "import: {o:?}");
    let mut from_image = busybox_container("from-image", &["replaced"], Default::default());
    from_image.image = Some(cri::ImageSpec {
        image: "localhost/checkpoint/counter:latest".into(),
        ..Default::default()
    });
    // In a third pod: pods share one PID namespace among their containers
    // (the e2e pods do), and a restore needs the checkpointed processes'
    // PIDs free in it, which the first restore in pod b now holds.
    let mut pc3 = carapace_e2e::pod_config("ckpt-c");
    pc3.log_directory = pc.log_directory.clone();
    let pod3 = run_pod(&mut rt, pc3.clone()).await;
    let id3 = create(&mut rt, &pod3, &pc3, from_image)
        .await
        .expect("CreateContainer from the checkpoint image");
    start(&mut rt, &id3).await;
    let log3 = logs.join("from-image.log");
    wait_for("the container restored from the image to count", || {
        counted(&log3).len() >= 3
    })
    .await;
    let got3 = counted(&log3);
    assert!(
        got3[0] > 3 && got3[0] <= at_checkpoint + 1,
        "restored from the image, the counter starts at {}: {got3:?}",
        got3[0]
    );
    // As for any image a container runs on, removing the checkpoint image
    // keeps its layers while the container exists.
    d.images()
        .await
        .remove_image(cri::RemoveImageRequest {
            image: Some(cri::ImageSpec {
                image: "localhost/checkpoint/counter:latest".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("remove the checkpoint image");
    assert_eq!(
        status(&mut rt, &id3).await.state,
        cri::ContainerState::ContainerRunning as i32
    );
    stop_and_remove(&mut rt, &id3).await;

    // Both go away cleanly.
    stop_and_remove(&mut rt, &id2).await;
    stop_and_remove(&mut rt, &id).await;
    for p in [&pod, &pod2, &pod3] {
        stop_and_remove_pod(&mut rt, p).await;
    }
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "needs a kernel CRIU works on: hack/test-v2.sh runs it in its VM lane"]
async fn a_path_that_is_not_a_checkpoint_is_refused_as_an_image() {
    let (d, mut rt, pod, pc) = busybox_pod("ckpt-bad", |_| {}).await;
    let junk = d.dir.path().join("junk.tar");
    std::fs::write(&junk, b"not a tar at all").expect("write");
    for (path, code) in [
        (junk.clone(), tonic::Code::InvalidArgument),
        (d.dir.path().join("missing.tar"), tonic::Code::NotFound),
    ] {
        let mut c = busybox_container("bad", &["true"], Default::default());
        c.image = Some(cri::ImageSpec {
            image: path.display().to_string(),
            ..Default::default()
        });
        let e = create(&mut rt, &pod, &pc, c).await.expect_err("created");
        assert_eq!(e.code(), code, "{e:?}");
    }
    // Nothing was left: no container, and the name is free again.
    let id = run(
        &mut rt,
        &pod,
        &pc,
        busybox_container("bad", &["sleep", "60"], Default::default()),
    )
    .await;
    stop_and_remove(&mut rt, &id).await;
}
