//! Crash recovery of pod operations, table-tested without root against
//! the fake node (harness: [`crate::crash_world`]): for every point of
//! RunPodSandbox, StopPodSandbox and RemovePodSandbox (before and after
//! each effect on the node), "crash here, restart, recover, remove every
//! pod" must leave nothing on the node, no record and no pod directory,
//! and free the pod's name; a failure at any point must be undone (Run)
//! or retried to a clean end (Stop, Remove), as kubelet retries.

use k8s_cri::v1 as cri;

use crate::crash_world::{container, every_point_of, pod, Case, Op};

fn cases() -> Vec<Case> {
    let mut host_net = pod("host-net");
    host_net.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(cri::NamespaceOption {
                network: cri::NamespaceMode::Node as i32,
                ipc: cri::NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let mut kubelet_cgroup = pod("kubelet-cgroup");
    kubelet_cgroup.linux = Some(cri::LinuxPodSandboxConfig {
        cgroup_parent: "/kubepods/besteffort/pod1".into(),
        ..Default::default()
    });
    vec![
        Case {
            name: "own namespaces",
            pod: pod("own"),
            container: container("app"),
            preexisting: vec![],
        },
        Case {
            name: "host network and IPC",
            pod: host_net,
            container: container("app"),
            preexisting: vec![],
        },
        Case {
            name: "kubelet's pod cgroup",
            pod: kubelet_cgroup,
            container: container("app"),
            preexisting: vec!["cgroup /kubepods/besteffort/pod1"],
        },
    ]
}

#[test]
fn run_pod_sandbox_crashed_or_failed_at_any_point_leaves_nothing() {
    every_point_of(&cases(), &[Op::RunPod]);
}

#[test]
fn stop_pod_sandbox_crashed_or_failed_at_any_point_leaves_nothing() {
    every_point_of(&cases(), &[Op::RunPod, Op::StopPod]);
}

#[test]
fn remove_pod_sandbox_crashed_or_failed_at_any_point_leaves_nothing() {
    every_point_of(&cases(), &[Op::RunPod, Op::StopPod, Op::RemovePod]);
}

#[test]
fn remove_of_a_ready_pod_crashed_or_failed_at_any_point_leaves_nothing() {
    every_point_of(&cases(), &[Op::RunPod, Op::RemovePod]);
}
