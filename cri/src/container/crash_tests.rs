//! Crash recovery of container operations, table-tested without root
//! against the fake node (harness: [`crate::crash_world`]): for every
//! point of CreateContainer, StartContainer, StopContainer,
//! RemoveContainer and RemovePodSandbox over a running container, "crash
//! here, restart, recover, remove every container and pod" must leave no
//! mount, shim, task, namespace pin, record or directory, and free the
//! names; a failure at any point must be retried to a clean end.

use crate::crash_world::{container, every_point_of, pod, Case, Op, VOLUME_IMAGE};

fn cases() -> Vec<Case> {
    let mut with_volume = container("app");
    with_volume.mounts.push(k8s_cri::v1::Mount {
        container_path: "/data".into(),
        readonly: true,
        image: Some(k8s_cri::v1::ImageSpec {
            image: VOLUME_IMAGE.into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    vec![
        Case {
            name: "container in a pod of its own namespaces",
            pod: pod("web"),
            container: container("app"),
            preexisting: vec![],
        },
        Case {
            name: "container with an image volume",
            pod: pod("web"),
            container: with_volume,
            preexisting: vec![],
        },
    ]
}

#[test]
fn create_container_crashed_or_failed_at_any_point_leaves_nothing() {
    every_point_of(&cases(), &[Op::RunPod, Op::Create]);
}

#[test]
fn start_container_crashed_or_failed_at_any_point_leaves_nothing() {
    every_point_of(&cases(), &[Op::RunPod, Op::Create, Op::Start]);
}

#[test]
fn stop_container_crashed_or_failed_at_any_point_leaves_nothing() {
    every_point_of(
        &cases(),
        &[Op::RunPod, Op::Create, Op::Start, Op::StopContainer],
    );
}

#[test]
fn remove_container_crashed_or_failed_at_any_point_leaves_nothing() {
    every_point_of(
        &cases(),
        &[
            Op::RunPod,
            Op::Create,
            Op::Start,
            Op::StopContainer,
            Op::RemoveContainer,
        ],
    );
}

#[test]
fn remove_pod_with_a_running_container_crashed_or_failed_at_any_point_leaves_nothing() {
    every_point_of(
        &cases(),
        &[Op::RunPod, Op::Create, Op::Start, Op::RemovePod],
    );
}
