//! CDI devices (Container Device Interface): a spec file in the
//! configured spec dirs describes a device; a container that names it,
//! in CRI's `CDI_devices` or a `cdi.k8s.io/*` annotation, gets its device
//! node (allowed in the device cgroup with the spec's permissions), its
//! mount and its env. An unknown or malformed name is InvalidArgument
//! naming it and leaves nothing; a spec written while the daemon runs is
//! used by the next container; Status's verbose info lists the devices.

use carapace_e2e::workload::{
    busybox_container, create, list_containers, pull, run, run_pod, sh, BUSYBOX,
};
use carapace_e2e::{mounts_under, pod_config, require_registry, Daemon};
use k8s_cri::v1 as cri;

/// A daemon whose CDI spec dirs are `etc` and `run` under `specs`.
fn daemon(specs: &std::path::Path) -> Daemon {
    require_registry();
    Daemon::start_with_network(
        &format!(
            "[registry]\ninsecure = [\"127.0.0.1:5000\"]\n[cdi]\nspec_dirs = [\"{0}/etc\", \"{0}/run\"]\n",
            specs.display()
        ),
        &[],
    )
}

#[tokio::test(flavor = "current_thread")]
async fn a_cdi_device_is_resolved_into_the_container_from_the_field_and_annotations() {
    let specs = tempfile::tempdir().expect("tmp");
    for d in ["etc", "run", "vendor-lib"] {
        std::fs::create_dir_all(specs.path().join(d)).expect("mkdir");
    }
    std::fs::write(specs.path().join("vendor-lib/lib.txt"), "vendor library").expect("write");
    // A device not in the default device cgroup allow list (10:237,
    // loop-control), readable only: the spec's permissions are what the
    // container gets.
    std::fs::write(
        specs.path().join("etc/vendor.yaml"),
        format!(
            r#"cdiVersion: "0.6.0"
kind: "example.com/test"
containerEdits:
  env: ["VENDOR_SPEC=1"]
devices:
  - name: "dev0"
    containerEdits:
      env: ["VENDOR_DEVICE=dev0"]
      deviceNodes:
        - path: "/dev/vendor-ctl"
          hostPath: "/dev/loop-control"
          permissions: "r"
      mounts:
        - hostPath: "{}/vendor-lib"
          containerPath: "/opt/vendor"
          options: ["ro", "nosuid", "nodev", "bind"]
  - name: "dev1"
    containerEdits:
      env: ["VENDOR_DEVICE1=yes"]
"#,
            specs.path().display()
        ),
    )
    .expect("spec");
    let d = daemon(specs.path());
    pull(&d, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let mut pc = pod_config("cdi");
    pc.log_directory = d.dir.path().join("logs").display().to_string();
    let pod = run_pod(&mut rt, pc.clone()).await;

    let mut c = busybox_container("cdi", &["sleep", "3600"], Default::default());
    c.cdi_devices = vec![cri::CdiDevice {
        name: "example.com/test=dev0".into(),
    }];
    c.annotations
        .insert("cdi.k8s.io/extra".into(), "example.com/test=dev1".into());
    let id = run(&mut rt, &pod, &pc, c).await;
    let (code, out, err) = sh(
        &mut rt,
        &id,
        "test -c /dev/vendor-ctl && echo node; exec 3</dev/vendor-ctl && echo read-ok; \
         cat /opt/vendor/lib.txt; echo; echo $VENDOR_SPEC $VENDOR_DEVICE $VENDOR_DEVICE1",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "node\nread-ok\nvendor library\n1 dev0 yes\n", "{err}");
    // "r" only: the device cgroup refuses opening it for writing.
    let (code, _, err) = sh(&mut rt, &id, "exec 3>/dev/vendor-ctl").await;
    assert_ne!(code, 0, "opened a read-only CDI device for writing");
    assert!(err.contains("not permitted"), "{err}");
    let (code, _, _) = sh(&mut rt, &id, "touch /opt/vendor/x").await;
    assert_ne!(code, 0, "wrote into the read-only CDI mount");

    // Unknown and malformed names: InvalidArgument naming them, nothing left.
    for (name, annotation) in [
        ("example.com/test=nope", false),
        ("not-a-qualified-name", false),
        ("example.com/other=dev0", true),
    ] {
        let mut c = busybox_container("bad-cdi", &["sleep", "3600"], Default::default());
        if annotation {
            c.annotations.insert("cdi.k8s.io/x".into(), name.into());
        } else {
            c.cdi_devices = vec![cri::CdiDevice { name: name.into() }];
        }
        let e = create(&mut rt, &pod, &pc, c)
            .await
            .expect_err("created with an unresolvable CDI device");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{name}: {e:?}");
        assert!(e.message().contains(name), "{name}: {e:?}");
    }
    let listed = list_containers(&mut rt).await;
    assert_eq!(listed.len(), 1, "{listed:?}");

    // A spec a driver writes now is used by the next container.
    std::fs::write(
        specs.path().join("run/late.json"),
        serde_json::json!({
            "cdiVersion": "0.5.0", "kind": "example.com/late",
            "devices": [{"name": "a", "containerEdits": {"env": ["LATE=1"]}}]
        })
        .to_string(),
    )
    .expect("late spec");
    let mut c = busybox_container("late", &["sleep", "3600"], Default::default());
    c.cdi_devices = vec![cri::CdiDevice {
        name: "example.com/late=a".into(),
    }];
    let late = run(&mut rt, &pod, &pc, c).await;
    let (_, out, _) = sh(&mut rt, &late, "echo $LATE").await;
    assert_eq!(out, "1\n");

    // Reported in Status's verbose info (crictl info).
    let info = rt
        .status(cri::StatusRequest { verbose: true })
        .await
        .expect("status")
        .into_inner()
        .info;
    let cdi: serde_json::Value = serde_json::from_str(&info["cdi"]).expect("cdi info");
    assert_eq!(cdi["enabled"], true);
    assert_eq!(
        cdi["devices"],
        serde_json::json!([
            "example.com/late=a",
            "example.com/test=dev0",
            "example.com/test=dev1"
        ])
    );

    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("remove pod");
    assert!(mounts_under(d.dir.path()).is_empty());
}
