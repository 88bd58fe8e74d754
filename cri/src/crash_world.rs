//! The harness of the crash-recovery table tests (`sandbox::crash_tests`,
//! `container::crash_tests`): a daemon over a real store in a temporary
//! directory and the fake node of [`crate::fake_effects`], living one
//! daemon life at a time. An operation is run until it ends or reaches the
//! node's crash point; then the daemon dies (its runtime, with every task
//! it spawned, is dropped), and the next life starts by recovering, as
//! `main` does. The node and the store outlive the daemon.

use std::future::Future;
use std::sync::Arc;

use k8s_cri::v1 as cri;

use crate::config::{Config, RuntimeHandler};
use crate::container::{self, Containers};
use crate::daemon::Daemon;
use crate::fake_effects::FakeNode;
use crate::image::ImageRecord;
use crate::sandbox::registry::Paths;
use crate::service::Service;
use crate::store::{Kind, Store};

/// The image every container of the tables runs.
pub const IMAGE: &str = "example.com/app:v1";
/// An image with one layer, for image volumes (CRI `Mount.image`).
pub const VOLUME_IMAGE: &str = "example.com/data:v1";

/// A row of a table: a pod (and a container in it) and the node state
/// that is not the daemon's.
#[derive(Clone, Debug)]
pub struct Case {
    /// What the row is, in failure messages.
    pub name: &'static str,
    /// The pod.
    pub pod: cri::PodSandboxConfig,
    /// The container the container ops create.
    pub container: cri::ContainerConfig,
    /// Ledger entries made by someone else (kubelet's pod cgroup): they
    /// must still be there at the end.
    pub preexisting: Vec<&'static str>,
}

/// A pod config as kubelet sends one.
pub fn pod(name: &str) -> cri::PodSandboxConfig {
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

/// A container config as kubelet sends one.
pub fn container(name: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: IMAGE.into(),
            ..Default::default()
        }),
        command: vec!["/bin/app".into()],
        ..Default::default()
    }
}

/// A CRI call of the tables, on the case's only pod and container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// RunPodSandbox.
    RunPod,
    /// StopPodSandbox (its containers first).
    StopPod,
    /// RemovePodSandbox (its containers first).
    RemovePod,
    /// CreateContainer.
    Create,
    /// StartContainer.
    Start,
    /// StopContainer, without grace.
    StopContainer,
    /// RemoveContainer.
    RemoveContainer,
}

impl Op {
    /// Runs the call as kubelet would; its error as text.
    pub async fn run(self, cs: Arc<Containers>, case: &Case) -> Result<(), String> {
        let pod = || {
            cs.sandboxes
                .all()
                .first()
                .map(|p| p.record().id)
                .unwrap_or_default()
        };
        let ctr = || cs.all().first().map(|c| c.record().id).unwrap_or_default();
        let r = match self {
            Op::RunPod => crate::sandbox::run::run(&cs.sandboxes, case.pod.clone(), "")
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Op::StopPod => crate::pod::stop(&cs, &pod())
                .await
                .map_err(|e| e.to_string()),
            Op::RemovePod => crate::pod::remove(&cs, &pod())
                .await
                .map_err(|e| e.to_string()),
            Op::Create => container::create::create(&cs, &pod(), case.container.clone())
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Op::Start => container::start::start(&cs, &ctr())
                .await
                .map_err(|e| e.to_string()),
            Op::StopContainer => container::stop::stop(&cs, &ctr(), 0)
                .await
                .map_err(|e| e.to_string()),
            Op::RemoveContainer => container::remove::remove(&cs, &ctr())
                .await
                .map_err(|e| e.to_string()),
        };
        r.map_err(|e| format!("{self:?}: {e}"))
    }
}

/// How one daemon life ended.
pub enum Ended<T> {
    /// The operation returned.
    Done(T),
    /// The node reached its crash point.
    Crashed,
}

/// A node and a daemon's directories, across daemon lives.
pub struct World {
    dir: tempfile::TempDir,
    /// The node.
    pub node: Arc<FakeNode>,
    preexisting: Vec<String>,
}

impl World {
    /// An empty node with `case`'s preexisting state, and an empty store
    /// holding one image.
    pub fn new(case: &Case) -> World {
        // On tmpfs where there is one: every record change is a durable
        // store commit, and fsyncs to a disk made these tests slow.
        let dir = match tempfile::tempdir_in("/dev/shm") {
            Ok(d) => d,
            Err(_) => tempfile::tempdir().expect("tempdir"),
        };
        let net = dir.path().join("net.d");
        std::fs::create_dir_all(&net).expect("net.d");
        std::fs::write(
            net.join("10-pods.conflist"),
            r#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge"}]}"#,
        )
        .expect("conflist");
        for d in ["state/pods", "state/containers", "root/containers"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("state dirs");
        }
        let node = FakeNode::new();
        for p in &case.preexisting {
            node.preexisting(p);
        }
        let w = World {
            dir,
            node,
            preexisting: case.preexisting.iter().map(|s| s.to_string()).collect(),
        };
        let store = Store::open(&w.config().root.join("metadata.redb")).expect("store");
        let image = ImageRecord {
            id: "sha256:0000000000000000000000000000000000000000000000000000000000000001".into(),
            repo_tags: vec![IMAGE.into()],
            repo_digests: Vec::new(),
            manifest_digest: String::new(),
            index_digest: None,
            media_type: String::new(),
            config: serde_json::json!({}),
            layers: Vec::new(),
            size: 0,
            pulled_at: 0,
        };
        store.put(Kind::Image, &image.id, &image).expect("image");
        let chain = "sha256:0000000000000000000000000000000000000000000000000000000000000003";
        let volume = ImageRecord {
            id: "sha256:0000000000000000000000000000000000000000000000000000000000000002".into(),
            repo_tags: vec![VOLUME_IMAGE.into()],
            layers: vec![crate::image::records::LayerRecord {
                digest: chain.into(),
                media_type: String::new(),
                size: 0,
                diff_id: chain.into(),
                chain_id: chain.into(),
                unpacked_size: 0,
                inodes: 0,
            }],
            ..image
        };
        store
            .put(Kind::Image, &volume.id, &volume)
            .expect("volume image");
        w
    }

    fn config(&self) -> Config {
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
                // Any file: the fake shims run nothing.
                path: d.join("net.d/10-pods.conflist"),
                root: d.join("runtime"),
                runtime_type: String::new(),
            },
        );
        config
    }

    /// A daemon over the world's stores, made as `main` makes one.
    fn service(&self) -> Service {
        let config = self.config();
        let paths = Paths {
            shim: "carapace-shim".into(),
            infra: "carapace-infra".into(),
            pods: config.state.join("pods"),
            shim_sockets: config.state.join("s"),
            events_address: String::new(),
        };
        Service::open(Arc::new(Daemon::new(config)), paths, self.node.effects()).expect("open")
    }

    /// One daemon life: start (recovering pods, then containers), run `op`
    /// until it ends or the node reaches its crash point, then die.
    pub fn life<T, F, Fut>(&self, op: F) -> Ended<T>
    where
        F: FnOnce(Arc<Containers>) -> Fut,
        Fut: Future<Output = T>,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let out = rt.block_on(async {
            let service = self.service();
            service.recover().await.expect("recover");
            let cs = service.containers.clone();
            tokio::select! {
                biased;
                r = op(cs.clone()) => Ended::Done(r),
                () = self.node.crashed() => Ended::Crashed,
            }
        });
        drop(rt);
        self.node.restart();
        out
    }

    /// A life in which kubelet removes every container and pod the daemon
    /// knows, then runs `ops` again from scratch (the names must be free)
    /// and removes the pod; then nothing may be left anywhere.
    pub fn clean_up_and_check(&self, case: &Case, ops: &[Op], what: &str) {
        let case = case.clone();
        let ops = ops.to_vec();
        let ended = self.life(|cs| async move {
            for c in cs.all() {
                let id = c.record().id;
                container::remove::remove(&cs, &id)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: RemoveContainer {id}: {e}"));
            }
            for p in cs.sandboxes.all() {
                let id = p.record().id;
                crate::pod::remove(&cs, &id)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: RemovePodSandbox {id}: {e}"));
            }
            for op in ops.iter().filter(|o| matches!(o, Op::RunPod | Op::Create)) {
                op.run(cs.clone(), &case)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: again from scratch: {e}"));
            }
            Op::RemovePod
                .run(cs.clone(), &case)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let stored = (
                cs.stored().map(|v| v.len()).unwrap_or(usize::MAX),
                cs.sandboxes.stored().map(|v| v.len()).unwrap_or(usize::MAX),
            );
            (cs.all().len(), cs.sandboxes.all().len(), stored)
        });
        let Ended::Done(counts) = ended else {
            panic!("{what}: crashed without a crash point");
        };
        assert_eq!(
            counts,
            (0, 0, (0, 0)),
            "{what}: (containers, pods, (stored containers, stored pods)) left"
        );
        self.assert_node_clean(what);
    }

    /// Nothing of the daemon's left on the node or in its directories;
    /// everything preexisting still there.
    pub fn assert_node_clean(&self, what: &str) {
        let live = self.node.live();
        let left: Vec<&String> = live
            .iter()
            .filter(|l| !self.preexisting.contains(l))
            .collect();
        assert!(left.is_empty(), "{what}: left on the node: {left:?}");
        for p in &self.preexisting {
            assert!(
                live.contains(p),
                "{what}: {p} was not the daemon's, and is gone"
            );
        }
        for d in ["state/pods", "state/containers", "root/containers"] {
            let entries: Vec<_> = std::fs::read_dir(self.dir.path().join(d))
                .expect("state dir")
                .flatten()
                .map(|e| e.path())
                .collect();
            assert!(entries.is_empty(), "{what}: left in {d}: {entries:?}");
        }
    }
}

/// For each case: runs `ops` once to number the points of the last op;
/// then, for each of those points, a fresh world in which the last op
/// crashes there, a restart, and kubelet's clean-up; then the same with a
/// failure at each point and no restart. `RunPod` as the last op must
/// report its failure and leave nothing at once.
pub fn every_point_of(cases: &[Case], ops: &[Op]) {
    for case in cases {
        let (first, last) = points_of(case, ops);
        assert!(last >= first, "{}: {ops:?} passes no point", case.name);
        eprintln!(
            "{}: {ops:?}: points {first}..={last}, each crashed and failed",
            case.name
        );
        for n in first..=last {
            let w = World::new(case);
            w.node.crash_at(n);
            for (i, op) in ops.iter().enumerate() {
                let ended = w.life(|cs| async move { op.run(cs, case).await });
                match ended {
                    Ended::Crashed if i + 1 == ops.len() => {}
                    Ended::Done(Ok(())) if i + 1 < ops.len() => {}
                    Ended::Crashed => panic!("{}: crashed early at point {n}", case.name),
                    Ended::Done(r) => {
                        panic!("{}: {op:?} ended ({r:?}) before point {n}", case.name)
                    }
                }
            }
            let what = format!(
                "{}: {ops:?}, crash at point {n} ({})",
                case.name,
                w.node.point_name(n)
            );
            w.clean_up_and_check(case, ops, &what);
        }
        for n in first..=last {
            let w = World::new(case);
            w.node.fail_at(n);
            let mut result = Ok(());
            for op in ops {
                let Ended::Done(r) = w.life(|cs| async move { op.run(cs, case).await }) else {
                    panic!("{}: crashed without a crash point", case.name);
                };
                result = r;
            }
            let what = format!(
                "{}: {ops:?}, failure at point {n} ({})",
                case.name,
                w.node.point_name(n)
            );
            if ops.last() == Some(&Op::RunPod) {
                assert!(result.is_err(), "{what}: the failure was not reported");
                w.assert_node_clean(&what);
            }
            w.clean_up_and_check(case, ops, &what);
        }
    }
}

/// The points `ops`' last op passes without faults: (first, last).
fn points_of(case: &Case, ops: &[Op]) -> (usize, usize) {
    let w = World::new(case);
    let mut first = 0;
    for (i, op) in ops.iter().enumerate() {
        if i + 1 == ops.len() {
            first = w.node.points() + 1;
        }
        match w.life(|cs| async move { op.run(cs, case).await }) {
            Ended::Done(Ok(())) => {}
            Ended::Done(Err(e)) => panic!("{}: without faults: {e}", case.name),
            Ended::Crashed => panic!("{}: {op:?} crashed without a crash point", case.name),
        }
    }
    let last = w.node.points();
    w.clean_up_and_check(case, ops, &format!("{}: {ops:?} without faults", case.name));
    (first, last)
}
