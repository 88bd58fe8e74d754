//! Crash recovery of pod operations, table-tested without root against
//! the fake node ([`crate::fake_effects`]): for every point of
//! RunPodSandbox, StopPodSandbox and RemovePodSandbox (before and after
//! each effect on the node), "crash here, restart, recover, remove every
//! pod" must leave nothing on the node, no record and no pod directory;
//! and a failure at any point must be undone (Run) or be retried to a
//! clean end (Stop, Remove) as kubelet retries.

use std::future::Future;
use std::sync::Arc;

use k8s_cri::v1 as cri;

use crate::config::{Config, RuntimeHandler};
use crate::daemon::Daemon;
use crate::fake_effects::FakeNode;
use crate::store::Store;

use super::registry::{Paths, Sandboxes};
use super::{recover, remove, run, stop};

/// A node (the fake) and a daemon's directories, across daemon lives.
struct World {
    dir: tempfile::TempDir,
    node: Arc<FakeNode>,
    preexisting: Vec<String>,
}

/// How one daemon life ended.
enum Ended<T> {
    Done(T),
    Crashed,
}

impl World {
    fn new(case: &Case) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let net = dir.path().join("net.d");
        std::fs::create_dir_all(&net).expect("net.d");
        std::fs::write(
            net.join("10-pods.conflist"),
            r#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge"}]}"#,
        )
        .expect("conflist");
        std::fs::create_dir_all(dir.path().join("state/pods")).expect("pods");
        let node = FakeNode::new();
        for p in &case.preexisting {
            node.preexisting(p);
        }
        World {
            dir,
            node,
            preexisting: case.preexisting.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A daemon over the world's store, as `main` makes one.
    fn daemon(&self) -> Arc<Sandboxes> {
        let d = self.dir.path();
        let mut config = Config {
            root: d.join("root"),
            state: d.join("state"),
            ..Default::default()
        };
        config.cni.conf_dir = d.join("net.d");
        config.runtime_handlers.insert(
            config.default_runtime_handler.clone(),
            RuntimeHandler {
                // Any file: the fake shim runs nothing.
                path: d.join("net.d/10-pods.conflist"),
                root: d.join("runtime"),
            },
        );
        std::fs::create_dir_all(&config.root).expect("root");
        let store = Arc::new(Store::open(&config.root.join("metadata.redb")).expect("store"));
        let paths = Paths {
            shim: "carapace-shim".into(),
            infra: "carapace-infra".into(),
            pods: d.join("state/pods"),
            shim_sockets: d.join("state/s"),
            events_address: String::new(),
        };
        Arc::new(Sandboxes::new(
            Arc::new(Daemon::new(config)),
            store,
            paths,
            self.node.effects(),
        ))
    }

    /// One daemon life: start (recovering what the store holds), run `op`
    /// until it ends or the node reaches its crash point, then die
    /// (everything in memory, every task it spawned, dropped).
    fn life<T, F, Fut>(&self, op: F) -> Ended<T>
    where
        F: FnOnce(Arc<Sandboxes>) -> Fut,
        Fut: Future<Output = T>,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let out = rt.block_on(async {
            let s = self.daemon();
            recover::recover(&s).await.expect("recover");
            tokio::select! {
                biased;
                r = op(s.clone()) => Ended::Done(r),
                () = self.node.crashed() => Ended::Crashed,
            }
        });
        drop(rt);
        self.node.restart();
        out
    }

    /// A life in which kubelet removes every pod the daemon knows, then
    /// runs `config`'s pod again (its name must be free) and removes it;
    /// then nothing may be left.
    fn clean_up_and_check(&self, config: &cri::PodSandboxConfig, what: &str) {
        let config = config.clone();
        let ended = self.life(|s| async move {
            for sb in s.all() {
                let id = sb.record().id;
                remove::remove(&s, &id)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: RemovePodSandbox {id}: {e}"));
            }
            let id = run::run(&s, config, "")
                .await
                .unwrap_or_else(|e| panic!("{what}: the pod's name stayed taken: {e}"));
            remove::remove(&s, &id)
                .await
                .unwrap_or_else(|e| panic!("{what}: RemovePodSandbox {id}: {e}"));
            (s.all().len(), s.stored().map(|v| v.len()))
        });
        let Ended::Done((in_memory, stored)) = ended else {
            panic!("{what}: crashed without a crash point");
        };
        assert_eq!(in_memory, 0, "{what}: pods left in memory");
        assert_eq!(stored.expect("stored"), 0, "{what}: records left");
        self.assert_node_clean(what);
    }

    fn assert_node_clean(&self, what: &str) {
        let left: Vec<String> = self
            .node
            .live()
            .into_iter()
            .filter(|l| !self.preexisting.contains(l))
            .collect();
        assert!(left.is_empty(), "{what}: left on the node: {left:?}");
        for p in &self.preexisting {
            assert!(
                self.node.live().contains(p),
                "{what}: {p} was not the daemon's, and is gone"
            );
        }
        let dirs: Vec<_> = std::fs::read_dir(self.dir.path().join("state/pods"))
            .expect("pods dir")
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(dirs.is_empty(), "{what}: pod directories left: {dirs:?}");
    }
}

/// A pod config of the table.
struct Case {
    name: &'static str,
    config: cri::PodSandboxConfig,
    /// Node state that is not the daemon's (kubelet's pod cgroup).
    preexisting: Vec<&'static str>,
}

fn pod(name: &str) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            namespace: "ns".into(),
            uid: format!("uid-{name}"),
            attempt: 0,
        }),
        ..Default::default()
    }
}

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
            config: pod("own"),
            preexisting: vec![],
        },
        Case {
            name: "host network and IPC",
            config: host_net,
            preexisting: vec![],
        },
        Case {
            name: "kubelet's pod cgroup",
            config: kubelet_cgroup,
            preexisting: vec!["cgroup /kubepods/besteffort/pod1"],
        },
    ]
}

/// The points passed by `ops` (the last one the operation under test),
/// and by all ops before it: (first point of the last op, last point).
fn points_of(case: &Case, ops: &[Op]) -> (usize, usize) {
    let w = World::new(case);
    let mut first = 0;
    for (i, op) in ops.iter().enumerate() {
        if i + 1 == ops.len() {
            first = w.node.points() + 1;
        }
        match w.life(|s| op.run(s, case.config.clone())) {
            Ended::Done(Ok(())) => {}
            Ended::Done(Err(e)) => panic!("{}: {op:?} without faults: {e}", case.name),
            Ended::Crashed => panic!("{}: {op:?} crashed without a crash point", case.name),
        }
    }
    let last = w.node.points();
    w.clean_up_and_check(
        &case.config,
        &format!("{}: {ops:?} without faults", case.name),
    );
    (first, last)
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Run,
    Stop,
    Remove,
}

impl Op {
    /// Runs the op on the pod of `config` (Stop and Remove: the one pod).
    async fn run(
        self,
        s: Arc<Sandboxes>,
        config: cri::PodSandboxConfig,
    ) -> Result<(), super::SandboxError> {
        let only = || s.all().first().map(|sb| sb.record().id).unwrap_or_default();
        match self {
            Op::Run => run::run(&s, config, "").await.map(drop),
            Op::Stop => stop::stop(&s, &only()).await,
            Op::Remove => remove::remove(&s, &only()).await,
        }
    }
}

/// Crashes `ops`' last op at each of its points in turn, restarts, and
/// has kubelet clean up; then fails it at each point instead, and has
/// kubelet clean up without a restart.
fn every_point_of(ops: &[Op]) {
    for case in cases() {
        let (first, last) = points_of(&case, ops);
        eprintln!(
            "{}: {ops:?}: points {first}..={last}, each crashed and failed",
            case.name
        );
        assert!(last >= first, "{}: {ops:?} passes no point", case.name);
        for n in first..=last {
            let w = World::new(&case);
            w.node.crash_at(n);
            for (i, op) in ops.iter().enumerate() {
                let ended = w.life(|s| op.run(s, case.config.clone()));
                let last_op = i + 1 == ops.len();
                match ended {
                    Ended::Crashed if last_op => {}
                    Ended::Done(Ok(())) if !last_op => {}
                    Ended::Crashed => panic!("{}: crashed early at point {n}", case.name),
                    Ended::Done(r) => panic!(
                        "{}: {op:?} ended ({:?}) before point {n}",
                        case.name,
                        r.err()
                    ),
                }
            }
            let what = format!(
                "{}: {ops:?}, crash at point {n} ({})",
                case.name,
                w.node.point_name(n)
            );
            w.clean_up_and_check(&case.config, &what);
        }
        for n in first..=last {
            let w = World::new(&case);
            w.node.fail_at(n);
            let mut result = Ok(());
            for op in ops {
                let Ended::Done(r) = w.life(|s| op.run(s, case.config.clone())) else {
                    panic!("{}: crashed without a crash point", case.name);
                };
                result = r;
            }
            let what = format!(
                "{}: {ops:?}, failure at point {n} ({})",
                case.name,
                w.node.point_name(n)
            );
            if matches!(ops.last(), Some(Op::Run)) {
                // A failed RunPodSandbox leaves nothing, at once.
                assert!(result.is_err(), "{what}: the failure was not reported");
                w.assert_node_clean(&what);
            }
            w.clean_up_and_check(&case.config, &what);
        }
    }
}

#[test]
fn run_pod_sandbox_crashed_or_failed_at_any_point_leaves_nothing() {
    every_point_of(&[Op::Run]);
}

#[test]
fn stop_pod_sandbox_crashed_or_failed_at_any_point_leaves_nothing() {
    every_point_of(&[Op::Run, Op::Stop]);
}

#[test]
fn remove_pod_sandbox_crashed_or_failed_at_any_point_leaves_nothing() {
    every_point_of(&[Op::Run, Op::Stop, Op::Remove]);
}

#[test]
fn remove_of_a_ready_pod_crashed_or_failed_at_any_point_leaves_nothing() {
    every_point_of(&[Op::Run, Op::Remove]);
}
