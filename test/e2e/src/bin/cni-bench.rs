//! `cni-bench`: times a CNI plugin chain alone, for hack/bench-cri.sh:
//! the floor under RunPodSandbox (ADD) and StopPodSandbox (DEL) that every
//! runtime pays, whatever its own overhead. Both daemons of the bench run
//! the same plugins on the same configuration; the veth's deletion in the
//! bridge plugin's DEL waits out a kernel RCU barrier
//! (`netdev_run_todo`), which dominates it on our 2-vCPU VM.
//!
//! Usage: cni-bench CONF_DIR BIN_DIR WORK_DIR N
//! N times, one after another: a fresh network namespace pinned under
//! WORK_DIR (as the daemon pins a pod's), the chain of CONF_DIR's network
//! ADDed (timed), DELeted with the ADD result (timed), the namespace
//! unpinned. The plugins are run by Carapace's own plugin runner, as the
//! daemon runs them. Needs root.
//! Prints `cni_add <median ms> <p95 ms>` and `cni_del <median ms> <p95 ms>`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use carapace_cri::namespaces::{Kind, Pinned, Setup};
use carapace_cri::network::{self, PodNetwork};
use carapace_e2e::report;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, conf_dir, bin_dir, work, n] = &args[..] else {
        bail!("usage: cni-bench CONF_DIR BIN_DIR WORK_DIR N");
    };
    let n: usize = n.parse().context("N must be a number")?;
    if n == 0 {
        bail!("N must be at least 1");
    }
    let conf = network::find_conf(&PathBuf::from(conf_dir)).context("CNI configuration")?;
    let bin_dirs = vec![PathBuf::from(bin_dir)];
    let (mut add, mut del) = (Vec::new(), Vec::new());
    for i in 0..n {
        let dir = PathBuf::from(work).join(format!("cni-bench-{i}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Pinned::create(&dir, &[Kind::Net], &Setup::default()).context("pin a netns")?;
        let name = format!("cni-bench-{}-{i}", std::process::id());
        let pod = PodNetwork {
            id: name.clone(),
            netns: dir.join(Kind::Net.name()),
            ifname: "eth0".into(),
            pod_name: name.clone(),
            pod_namespace: "bench".into(),
            pod_uid: format!("uid-{name}"),
            port_mappings: Vec::new(),
            pod_cidr: String::new(),
        };
        let t = Instant::now();
        let added = network::add(&conf, &bin_dirs, &pod).await;
        add.push(t.elapsed().as_secs_f64() * 1e3);
        // DEL even after a failed ADD, as the daemon does, to clean up.
        let t = Instant::now();
        let deleted = network::del(
            &conf,
            &bin_dirs,
            &pod,
            added.as_ref().ok().map(|a| &a.result),
        )
        .await;
        del.push(t.elapsed().as_secs_f64() * 1e3);
        let unpinned = Pinned::unpin_all(&dir);
        added.context("CNI ADD")?;
        deleted.context("CNI DEL")?;
        unpinned.context("unpin the netns")?;
        std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    report("cni_add", add);
    report("cni_del", del);
    Ok(())
}
