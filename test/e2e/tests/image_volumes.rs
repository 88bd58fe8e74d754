//! Image volumes (CRI `Mount.image`, KEP 4639): an image already on the
//! node is mounted read-only into a container from its layers (whiteouts
//! and all), without setuid or device files; the image cannot be removed
//! while a container mounts it, and is collected once it is gone; a sub
//! path binds a directory or file of the image, its symlinks resolved
//! inside the image; an image that is not on the node is NotFound and a
//! sub path that is not in the image InvalidArgument, leaving nothing.

use carapace_e2e::workload::{
    busybox_container, busybox_pod, create, image_mount, list_containers, pull, run, sh,
    stop_and_remove, BUSYBOX,
};
use carapace_e2e::{mounts_under, Daemon};
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use tonic::transport::Channel;

/// Three layers: layer 2 whites out /data/gone and makes /opq opaque,
/// /replace is "new" on top (hack/build-test-images.sh).
const LAYERED: &str = "127.0.0.1:5000/test/layered:latest";

async fn remove_image(
    images: &mut ImageServiceClient<Channel>,
    image: &str,
) -> Result<(), tonic::Status> {
    images
        .remove_image(cri::RemoveImageRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
        })
        .await
        .map(|_| ())
}

async fn image_fs_bytes(images: &mut ImageServiceClient<Channel>) -> u64 {
    images
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .expect("ImageFsInfo")
        .into_inner()
        .image_filesystems
        .iter()
        .filter_map(|f| f.used_bytes.as_ref().map(|u| u.value))
        .sum()
}

fn mounts_of(d: &Daemon) -> Vec<String> {
    mounts_under(d.dir.path())
        .into_iter()
        .filter(|m| m.contains("image-volumes"))
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn an_image_is_mounted_read_only_from_its_layers_and_kept_while_in_use() {
    let (d, mut rt, pod, pc) = busybox_pod("imgvol", |_| {}).await;
    pull(&d, LAYERED).await;
    let mut images = d.images().await;
    let mut c = busybox_container("imgvol", &["sleep", "3600"], Default::default());
    // A multi-layer image (an overlay of its layers) and a one-layer one
    // (a read-only bind of its layer).
    c.mounts = vec![
        image_mount("/vol", LAYERED, ""),
        image_mount("/bb", BUSYBOX, ""),
    ];
    let id = run(&mut rt, &pod, &pc, c).await;

    let (code, out, err) = sh(
        &mut rt,
        &id,
        "cat /vol/replace; echo; test -e /vol/data/keep && echo keep; \
         test -e /vol/data/gone || echo gone-whited-out; ls /vol/opq | tr '\\n' ' '",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out, "new\nkeep\ngone-whited-out\nc ",
        "the layers were not stacked: {out}"
    );
    let (code, _, err) = sh(&mut rt, &id, "touch /vol/new-file").await;
    assert_ne!(code, 0, "wrote into an image volume");
    assert!(err.contains("Read-only"), "{err}");
    let (_, out, _) = sh(&mut rt, &id, "grep -E ' /(vol|bb) ' /proc/mounts").await;
    for line in out.lines() {
        let opts: Vec<&str> = line.split(' ').nth(3).unwrap_or("").split(',').collect();
        for want in ["ro", "nosuid", "nodev"] {
            assert!(opts.contains(&want), "{want} missing: {line}");
        }
    }
    assert_eq!(out.lines().count(), 2, "{out}");
    // Programs of an image volume run (it is not noexec).
    let (code, out, err) = sh(&mut rt, &id, "/bb/bin/busybox echo from-the-volume").await;
    assert_eq!((code, out.as_str()), (0, "from-the-volume\n"), "{err}");
    assert_eq!(mounts_of(&d).len(), 2, "{:?}", mounts_under(d.dir.path()));

    // In use as a volume: RemoveImage refuses, and says why.
    let used = image_fs_bytes(&mut images).await;
    let e = remove_image(&mut images, LAYERED)
        .await
        .expect_err("removed an image in use as a volume");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("image volume"), "{e:?}");
    let (code, out, _) = sh(&mut rt, &id, "cat /vol/replace").await;
    assert_eq!((code, out.as_str()), (0, "new"));

    stop_and_remove(&mut rt, &id).await;
    assert!(mounts_of(&d).is_empty(), "{:?}", mounts_of(&d));
    remove_image(&mut images, LAYERED)
        .await
        .expect("removal once no container mounts it");
    // Its layers counted as used until then, and were collected with it.
    let after = image_fs_bytes(&mut images).await;
    assert!(after < used, "image fs used {used} before, {after} after");
}

#[tokio::test(flavor = "current_thread")]
async fn an_image_volume_of_an_absent_image_is_not_found_and_leaves_nothing() {
    let (d, mut rt, pod, pc) = busybox_pod("imgvol-absent", |_| {}).await;
    let mut c = busybox_container("absent", &["sleep", "3600"], Default::default());
    c.mounts = vec![image_mount(
        "/vol",
        "127.0.0.1:5000/test/not-pulled:latest",
        "",
    )];
    let e = create(&mut rt, &pod, &pc, c)
        .await
        .expect_err("created with an image volume that is not on the node");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    assert!(e.message().contains("/vol"), "{e:?}");
    // Both host path and image: InvalidArgument.
    let mut c = busybox_container("both", &["sleep", "3600"], Default::default());
    let mut m = image_mount("/vol", BUSYBOX, "");
    m.host_path = d.dir.path().display().to_string();
    c.mounts = vec![m];
    let e = create(&mut rt, &pod, &pc, c)
        .await
        .expect_err("created with a host path and an image");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let listed = list_containers(&mut rt).await;
    assert!(listed.is_empty(), "{listed:?}");
    assert!(mounts_of(&d).is_empty(), "{:?}", mounts_of(&d));
}

#[tokio::test(flavor = "current_thread")]
async fn a_sub_path_binds_a_directory_or_file_of_the_image() {
    let (d, mut rt, pod, pc) = busybox_pod("imgvol-sub", |_| {}).await;
    pull(&d, LAYERED).await;
    let mut c = busybox_container("sub", &["sleep", "3600"], Default::default());
    c.mounts = vec![
        // A directory after the layers' whiteouts.
        image_mount("/data-only", LAYERED, "data"),
        // A file, named through a symlink of the image (links/sym ->
        // target): resolved inside the image.
        image_mount("/one-file", LAYERED, "links/sym"),
        // An absolute symlink of the image (links/abs -> /bin/busybox)
        // is the image's /bin/busybox, not the host's.
        image_mount("/tool", LAYERED, "links/abs"),
    ];
    let id = run(&mut rt, &pod, &pc, c).await;
    let (code, out, err) = sh(
        &mut rt,
        &id,
        "ls /data-only | tr '\\n' ' '; echo; test -f /one-file && echo file; \
         cmp -s /one-file /tool || echo differ; ln -s /tool /tmp/echo && /tmp/echo tool-runs",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "keep \nfile\ndiffer\ntool-runs\n", "{out}");
    let (code, _, err) = sh(&mut rt, &id, "echo x > /one-file").await;
    assert_ne!(code, 0, "wrote through a sub path");
    assert!(err.contains("Read-only"), "{err}");
    stop_and_remove(&mut rt, &id).await;
    assert!(mounts_of(&d).is_empty(), "{:?}", mounts_of(&d));

    // Not in the image, or climbing out of it: refused, nothing left.
    for (sub, what) in [
        ("no/such/dir", "no such file"),
        ("../etc", "without \"..\""),
    ] {
        let mut c = busybox_container("bad-sub", &["sleep", "3600"], Default::default());
        c.mounts = vec![image_mount("/v", LAYERED, sub)];
        let e = create(&mut rt, &pod, &pc, c)
            .await
            .expect_err("created with a bad sub path");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{sub}: {e:?}");
        assert!(e.message().contains(what), "{sub}: {e:?}");
        assert!(mounts_of(&d).is_empty(), "{:?}", mounts_of(&d));
    }
}
