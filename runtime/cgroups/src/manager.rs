//! The cgroup of one container (or pod) across every hierarchy.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use oci_spec::runtime::LinuxResources;

use crate::error::Error;
use crate::mountinfo::{self, Mount};
use crate::stats::{self, Stats};
use crate::systemd::{self, Unit};
use crate::{fs, path, v1, v2, Hierarchy};

/// Where cgroup hierarchies are mounted on every distribution we target.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Why the systemd driver refuses cgroup v1 (see the systemd module).
const SYSTEMD_V1: &str = "the systemd cgroup driver needs cgroup v2 (a unified \
    /sys/fs/cgroup): on cgroup v1 systemd would reset a container's device rules on \
    reload; use the cgroupfs driver";

/// Names the cgroup of one container in every mounted hierarchy and does
/// everything the runtime needs with it: create, join, limit, freeze, kill,
/// remove.
///
/// Constructing one only reads mount information; nothing is written until
/// a method says so, so it is cheap to build one per runtime command.
#[derive(Clone, Debug)]
pub struct Manager {
    hierarchy: Hierarchy,
    /// Normalized path below each hierarchy's root, e.g. "/carapace/abc".
    relative: String,
    /// v1: one entry per mounted hierarchy (plus the hybrid cgroup2 mount);
    /// v2: exactly one entry, the unified root.
    mounts: Vec<Mount>,
    /// With the systemd driver, the unit that owns the cgroup.
    unit: Option<Unit>,
}

fn detect_at(root: &Path) -> Result<Hierarchy, Error> {
    let st = nix::sys::statfs::statfs(root).map_err(|errno| Error::Statfs {
        path: root.to_path_buf(),
        errno,
    })?;
    Ok(
        if st.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC {
            Hierarchy::V2
        } else {
            Hierarchy::V1
        },
    )
}

/// Tells whether this host runs cgroup v2 (unified: /sys/fs/cgroup is a
/// cgroup2 file system) or v1 (legacy, or hybrid with a controller-less
/// cgroup2 mount at /sys/fs/cgroup/unified, which counts as v1).
pub fn detect() -> Result<Hierarchy, Error> {
    detect_at(Path::new(CGROUP_ROOT))
}

impl Manager {
    /// Resolves the container's cgroup on this host.
    ///
    /// `cgroups_path` is the OCI `linux.cgroupsPath`: None means
    /// `/carapace/<id>`; a plain path (absolute or relative) is taken relative
    /// to each hierarchy's root; the systemd form `slice:prefix:name` is
    /// expanded to the layout systemd would create (see [`crate::expand_slice`]).
    ///
    /// `systemd = true` selects the systemd driver ([`Error::SystemdNotRunning`]
    /// when systemd is not PID 1, [`Error::Unsupported`] on cgroup v1): the cgroup is then a unit's, named by the
    /// `slice:prefix:name` form (None means `system.slice:carapace:<id>`)
    /// or by a path where systemd puts a `.scope` or `.slice`; see
    /// [`Manager::start`] and [`Manager::create`]. Nothing is asked of
    /// systemd until a method needs it.
    pub fn new(cgroups_path: Option<&str>, id: &str, systemd: bool) -> Result<Manager, Error> {
        if !systemd {
            return Self::on_host(path::normalize(cgroups_path, id)?, None);
        }
        if !systemd::running() {
            return Err(Error::SystemdNotRunning);
        }
        let p = cgroups_path.map_or_else(
            || format!("{}:carapace:{id}", path::DEFAULT_SLICE),
            str::to_string,
        );
        let relative = path::normalize(Some(&p), id)?;
        let last = relative.rsplit('/').next().unwrap_or_default();
        if path::is_systemd_form(&p) && last.ends_with(".slice") {
            // slice:prefix:name where name is a slice: systemd places a
            // slice by its name alone.
            let name = last.to_string();
            return Self::on_host(path::expand_slice(&name)?, Some(Unit { name, slice: None }));
        }
        let (name, slice) = path::unit_of(&relative)?;
        Self::on_host(relative, Some(Unit { name, slice }))
    }

    fn on_host(relative: String, unit: Option<Unit>) -> Result<Manager, Error> {
        let root = Path::new(CGROUP_ROOT);
        let hierarchy = detect_at(root)?;
        if unit.is_some() && hierarchy == Hierarchy::V1 {
            return Err(Error::Unsupported(SYSTEMD_V1.into()));
        }
        let mounts = match hierarchy {
            Hierarchy::V2 => vec![unified_mount(root)],
            Hierarchy::V1 => {
                let info_path = Path::new("/proc/self/mountinfo");
                let mounts = mountinfo::read_v1(root).map_err(|e| Error::Read {
                    path: info_path.to_path_buf(),
                    errno: crate::error::errno_of(&e),
                })?;
                if mounts.is_empty() {
                    return Err(Error::Parse {
                        path: info_path.to_path_buf(),
                        content: "no cgroup v1 hierarchy is mounted".into(),
                    });
                }
                mounts
            }
        };
        Ok(Manager {
            hierarchy,
            relative,
            mounts,
            unit,
        })
    }

    /// The systemd unit behind this cgroup (systemd driver only), e.g.
    /// `carapace-abc.scope`: what `systemctl status` takes.
    pub fn unit_name(&self) -> Option<&str> {
        self.unit.as_ref().map(|u| u.name.as_str())
    }

    /// Like [`Manager::new`] with the cgroupfs driver, but against a given
    /// root and hierarchy type instead of the host's: for tests against a
    /// temporary directory, or a cgroup2 mount other than /sys/fs/cgroup.
    ///
    /// For V1, `root` holds one directory per hierarchy named after its
    /// controllers (`cpu,cpuacct`, `memory`, `systemd` for name=systemd,
    /// `unified` for a hybrid cgroup2 mount), as /sys/fs/cgroup does.
    /// For V2, `root` is the cgroup2 mount itself.
    pub fn with_root(
        root: &Path,
        hierarchy: Hierarchy,
        cgroups_path: Option<&str>,
        id: &str,
    ) -> Result<Manager, Error> {
        let relative = path::normalize(cgroups_path, id)?;
        let mounts = match hierarchy {
            Hierarchy::V2 => vec![unified_mount(root)],
            Hierarchy::V1 => mountinfo::scan_root(root).map_err(|e| Error::Read {
                path: root.to_path_buf(),
                errno: crate::error::errno_of(&e),
            })?,
        };
        Ok(Manager {
            hierarchy,
            relative,
            mounts,
            unit: None,
        })
    }

    /// A manager of another cgroup on the same host, reusing this one's
    /// view of the hierarchies. Resolving them reads /proc/self/mountinfo,
    /// which grows with every container's mounts: a caller that handles
    /// many cgroups at once (the daemon's stats of every container)
    /// resolves the host once and derives the rest.
    /// The result reads and writes files only (the cgroupfs driver), which
    /// is all reading stats needs.
    pub fn at(&self, cgroups_path: Option<&str>, id: &str) -> Result<Manager, Error> {
        Ok(Manager {
            hierarchy: self.hierarchy,
            relative: path::normalize(cgroups_path, id)?,
            mounts: self.mounts.clone(),
            unit: None,
        })
    }

    /// Which cgroup version this manager drives.
    pub fn hierarchy(&self) -> Hierarchy {
        self.hierarchy
    }

    /// The normalized cgroup path below each root, e.g. "/carapace/abc";
    /// what `/proc/<pid>/cgroup` shows for the container's processes.
    pub fn relative_path(&self) -> &str {
        &self.relative
    }

    fn dir_in(&self, mount: &Mount) -> PathBuf {
        mount.mountpoint.join(self.relative.trim_start_matches('/'))
    }

    /// The container's directories, one per hierarchy.
    fn dirs(&self) -> Vec<PathBuf> {
        self.mounts.iter().map(|m| self.dir_in(m)).collect()
    }

    /// The container's directory for a controller. v1: the directory in the
    /// hierarchy carrying that controller ("systemd" or "name=systemd" for the
    /// named hierarchy, "unified" for the hybrid cgroup2 one), None when it
    /// is not mounted. v2: the one directory, whatever the name.
    pub fn path_for(&self, controller: &str) -> Option<PathBuf> {
        match self.hierarchy {
            Hierarchy::V2 => self.mounts.first().map(|m| self.dir_in(m)),
            Hierarchy::V1 => self
                .mounts
                .iter()
                .find(|m| m.has(controller))
                .map(|m| self.dir_in(m)),
        }
    }

    /// The v2 directory (the only one).
    fn v2_dir(&self) -> Result<PathBuf, Error> {
        self.path_for("").ok_or_else(|| Error::ControllerMissing {
            controller: "cgroup2".into(),
            wanted: "the unified hierarchy".into(),
        })
    }

    fn v1_dir(&self, controller: &str, wanted: &str) -> Result<PathBuf, Error> {
        self.path_for(controller)
            .ok_or_else(|| Error::ControllerMissing {
                controller: controller.into(),
                wanted: wanted.into(),
            })
    }

    /// Creates the cgroup (and missing ancestors) in every hierarchy.
    /// Idempotent.
    ///
    /// v1: every new cpuset level gets cpuset.cpus/mems copied from its
    /// parent, since a cpuset with empty ones accepts no process. v2: the
    /// controllers available at each ancestor are enabled in its
    /// cgroup.subtree_control (best effort per controller, as runc does), so
    /// the leaf gets every controller's files.
    ///
    /// systemd driver: a slice is started as a transient unit; a scope
    /// cannot exist without a process, so it is made by [`Manager::start`]
    /// instead and this refuses.
    pub fn create(&self) -> Result<(), Error> {
        match &self.unit {
            Some(u) if u.is_slice() => u.start_slice(),
            Some(u) => Err(Error::Unsupported(format!(
                "systemd scope {} is created with its first process (Manager::start)",
                u.name
            ))),
            None => self.create_dirs(),
        }
    }

    /// Creates the cgroup, applies `r` and moves `pid` (blocked until its
    /// limits are in place) into it: the whole setup of a new container's
    /// cgroup, for either driver.
    ///
    /// systemd driver: the scope unit is started with `pid` in it and the
    /// limits as properties, then every limit is written to the files.
    pub fn start(&self, pid: i32, r: &LinuxResources) -> Result<(), Error> {
        match &self.unit {
            Some(u) if !u.is_slice() => {
                u.start_scope(pid, r)?;
                self.apply_files(r)
            }
            _ => {
                self.create()?;
                self.apply(r)?;
                self.add_process(pid)
            }
        }
    }

    fn create_dirs(&self) -> Result<(), Error> {
        let components: Vec<&str> = self.relative.split('/').filter(|c| !c.is_empty()).collect();
        for mount in &self.mounts {
            let mut dir = mount.mountpoint.clone();
            let is_cpuset = !mount.v2 && mount.has("cpuset");
            let v2 = self.hierarchy == Hierarchy::V2;
            for c in &components {
                if v2 {
                    enable_controllers(&dir)?;
                }
                let parent = dir.clone();
                dir.push(c);
                fs::mkdir(&dir)?;
                if is_cpuset {
                    init_cpuset(&parent, &dir)?;
                }
            }
        }
        Ok(())
    }

    /// Moves a process (and, on v1, all its threads) into the cgroup in
    /// every hierarchy. Pid 0 means the calling process, as the kernel has it.
    pub fn add_process(&self, pid: i32) -> Result<(), Error> {
        if pid < 0 {
            return Err(Error::InvalidResources(format!("invalid pid {pid}")));
        }
        for dir in self.dirs() {
            fs::write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Applies OCI resources (at create, and for `update`). Only what is set
    /// is written; the spec is validated before the first write.
    ///
    /// systemd driver: the limits systemd has properties for are set on
    /// the unit first, so a `systemctl daemon-reload` does not undo them and
    /// systemd enables the controllers they need (a slice is not delegated:
    /// its cpu controller, say, exists only once a CPU limit asks for it),
    /// then written to the files as above.
    pub fn apply(&self, r: &LinuxResources) -> Result<(), Error> {
        if let Some(u) = &self.unit {
            u.set_resources(r)?;
        }
        self.apply_files(r)
    }

    fn apply_files(&self, r: &LinuxResources) -> Result<(), Error> {
        match self.hierarchy {
            Hierarchy::V2 => v2::apply(&self.v2_dir()?, r),
            Hierarchy::V1 => v1::apply(&|c: &str| self.path_for(c), r),
        }
    }

    /// Freezes every process of the cgroup and waits (bounded) until the
    /// kernel reports the cgroup FROZEN: used by `pause` and by
    /// [`Manager::kill_all`].
    pub fn freeze(&self) -> Result<(), Error> {
        self.set_frozen(true)
    }

    /// Thaws the cgroup and waits (bounded) until the kernel reports it: used
    /// by `resume`.
    pub fn thaw(&self) -> Result<(), Error> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), Error> {
        match self.hierarchy {
            Hierarchy::V2 => v2::set_freeze(&self.v2_dir()?, frozen),
            Hierarchy::V1 => v1::set_freezer(&self.v1_dir("freezer", "freeze/thaw")?, frozen),
        }
    }

    /// Whether the cgroup is (completely) frozen: what `state` reports as
    /// "paused".
    pub fn is_frozen(&self) -> Result<bool, Error> {
        match self.hierarchy {
            Hierarchy::V2 => v2::is_frozen(&self.v2_dir()?),
            Hierarchy::V1 => v1::is_frozen(&self.v1_dir("freezer", "freeze/thaw")?),
        }
    }

    /// The directory whose cgroup.procs files list the container's processes.
    fn procs_dir(&self) -> Result<PathBuf, Error> {
        match self.hierarchy {
            Hierarchy::V2 => self.v2_dir(),
            Hierarchy::V1 => ["pids", "freezer", "memory", "cpu", "name=systemd"]
                .iter()
                .find_map(|c| self.path_for(c))
                .or_else(|| self.mounts.first().map(|m| self.dir_in(m)))
                .ok_or_else(|| Error::ControllerMissing {
                    controller: "any".into(),
                    wanted: "listing processes".into(),
                }),
        }
    }

    /// Every process in the cgroup and its descendants (sorted), as `ps`
    /// and `kill --all` need.
    pub fn pids(&self) -> Result<Vec<i32>, Error> {
        fs::pids_recursive(&self.procs_dir()?)
    }

    /// Sends `signal` to every process of the cgroup.
    ///
    /// On v2, SIGKILL goes through cgroup.kill when the kernel has it (no
    /// race with forks). Otherwise the cgroup is frozen while it is listed
    /// and signalled, so nothing forks in between, then thawed — unless it
    /// was already paused, in which case it stays frozen (except for SIGKILL,
    /// which only takes effect once the processes run again). An empty
    /// cgroup that is not frozen is left alone.
    pub fn kill_all(&self, signal: i32) -> Result<(), Error> {
        if self.hierarchy == Hierarchy::V2 && signal == libc::SIGKILL {
            let kill_file = self.v2_dir()?.join("cgroup.kill");
            if fs::exists(&kill_file) {
                return fs::write(&kill_file, "1");
            }
        }
        let was_frozen = self.is_frozen().unwrap_or(false);
        // Nobody to signal and nobody to fork into it: an empty cgroup
        // (the usual case when a stopped container is deleted) is not
        // frozen and thawed for nothing. On v1 the freezer's first freeze
        // and last thaw patch kernel code on every CPU, and the runtime's
        // share of the node's CPU at 110 pods showed it.
        if !was_frozen && matches!(self.pids(), Ok(p) if p.is_empty()) {
            return Ok(());
        }
        let froze = !was_frozen && self.freeze().is_ok();
        let result = self.signal_each(signal);
        if froze || (was_frozen && signal == libc::SIGKILL) {
            let thawed = self.thaw();
            result?;
            return thawed;
        }
        result
    }

    fn signal_each(&self, signal: i32) -> Result<(), Error> {
        for pid in self.pids()? {
            // SAFETY: kill(2) has no memory-safety preconditions; pids() only
            // returns positive pids, so this never targets a process group.
            let r = unsafe { libc::kill(pid, signal) };
            if r != 0 {
                let errno = Errno::last();
                if errno != Errno::ESRCH {
                    return Err(Error::Kill { pid, signal, errno });
                }
            }
        }
        Ok(())
    }

    /// Removes the cgroup — the leaf and any cgroups the container created
    /// below it, deepest first — in every hierarchy. EBUSY (processes still
    /// exiting) is retried a bounded number of times; a missing directory is
    /// fine, so this is idempotent. Ancestors are never removed: they may be
    /// shared (a pod's cgroup, /carapace). Every hierarchy is attempted; the
    /// first failure is returned.
    ///
    /// systemd driver: the unit is stopped first (systemd kills what is
    /// left in it and removes its cgroup; a unit already gone is fine), then
    /// whatever directories remain are removed as above.
    pub fn destroy(&self) -> Result<(), Error> {
        if let Some(u) = &self.unit {
            u.stop()?;
        }
        let mut first_err = None;
        for dir in self.dirs() {
            if !fs::exists(&dir) {
                continue;
            }
            let dirs = match fs::walk_post_order(&dir) {
                Ok(d) => d,
                Err(Error::Read {
                    errno: Errno::ENOENT,
                    ..
                }) => continue,
                Err(e) => {
                    first_err.get_or_insert(e);
                    continue;
                }
            };
            for d in dirs {
                if let Err(e) = fs::rmdir_retry(&d) {
                    first_err.get_or_insert(e);
                    break;
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Whether the cgroup directory exists in any hierarchy, i.e. whether
    /// there is still something for [`Manager::destroy`] to remove.
    pub fn exists(&self) -> bool {
        self.dirs().iter().any(|d| fs::exists(d))
    }

    /// A snapshot of the cgroup's CPU, memory, pids and hugetlb usage, the
    /// same on v1 and v2: what the shim's containerd `Stats` call and the CRI
    /// daemon's ContainerStats/PodSandboxStats report. See [`Stats`] for
    /// which file feeds which field.
    ///
    /// A controller that is not mounted (v1) or not enabled (v2), or a file
    /// this kernel lacks, leaves its fields None; a file that exists but
    /// cannot be read or parsed is an error naming it. A cgroup that does
    /// not exist (in no hierarchy, on v1) is [`Error::Open`] with ENOENT.
    pub fn stats(&self) -> Result<Stats, Error> {
        match self.hierarchy {
            Hierarchy::V2 => stats::read_v2(&stats::Kernel, &self.v2_dir()?),
            Hierarchy::V1 => {
                let dirs = stats::V1Dirs {
                    cpuacct: self.path_for("cpuacct"),
                    cpu: self.path_for("cpu"),
                    memory: self.path_for("memory"),
                    pids: self.path_for("pids"),
                    hugetlb: self.path_for("hugetlb"),
                };
                stats::read_v1(&stats::Kernel, &dirs)
            }
        }
    }

    /// How many processes the kernel OOM-killed in this cgroup: how the shim
    /// tells an OOMKilled exit from another SIGKILL. v1 reads the `oom_kill`
    /// line of memory.oom_control (kernel 4.13+), v2 that of memory.events.
    pub fn oom_kill_count(&self) -> Result<u64, Error> {
        match self.hierarchy {
            Hierarchy::V2 => fs::read_keyed(&self.v2_dir()?.join("memory.events"), "oom_kill"),
            Hierarchy::V1 => fs::read_keyed(
                &self
                    .v1_dir("memory", "the OOM kill count")?
                    .join("memory.oom_control"),
                "oom_kill",
            ),
        }
    }
}

fn unified_mount(root: &Path) -> Mount {
    Mount {
        controllers: vec![mountinfo::UNIFIED.to_string()],
        mountpoint: root.to_path_buf(),
        v2: true,
    }
}

/// Copies cpuset.cpus and cpuset.mems from `parent` into `dir` when `dir`'s
/// are empty (a new cpuset starts empty and then accepts no process).
fn init_cpuset(parent: &Path, dir: &Path) -> Result<(), Error> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = dir.join(file);
        if !fs::read_trimmed(&own)?.is_empty() {
            continue;
        }
        let inherited = fs::read_trimmed(&parent.join(file))?;
        if inherited.is_empty() {
            return Err(Error::Parse {
                path: parent.join(file),
                content: "empty; cannot initialize the child cpuset".into(),
            });
        }
        fs::write(&own, &inherited)?;
    }
    Ok(())
}

/// Enables, in `dir`'s cgroup.subtree_control, every controller listed in
/// its cgroup.controllers. If enabling all at once fails (one controller may
/// be refused, e.g. cpu while a realtime task sits in the root), each is
/// tried on its own and refusals are ignored: the resource writes that need
/// a missing controller report it precisely.
fn enable_controllers(dir: &Path) -> Result<(), Error> {
    let available = fs::read(&dir.join("cgroup.controllers"))?;
    let enabled = fs::read(&dir.join("cgroup.subtree_control"))?;
    let missing: Vec<String> = available
        .split_whitespace()
        .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let control = dir.join("cgroup.subtree_control");
    if fs::write(&control, &missing.join(" ")).is_err() {
        for c in &missing {
            let _ = fs::write(&control, c);
        }
    }
    Ok(())
}
