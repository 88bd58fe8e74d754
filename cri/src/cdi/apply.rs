//! A container's CDI edits: device nodes become [`NodeFacts`], which the
//! container's creation hands to the spec builder like CRI devices (it
//! creates them and allows them in the device cgroup); env, mounts, hooks,
//! groups and Intel RDT are written into the built OCI spec.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

use oci_spec::runtime::{Hook as OciHook, Hooks, LinuxIntelRdt, Mount as OciMount, Spec};

use super::spec::{ContainerEdits, DeviceNode, Hook, IntelRdt, Mount};
use super::CdiError;

/// A device node as the container gets it, its gaps filled from the host.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFacts {
    /// The node on the host.
    pub host_path: PathBuf,
    /// Its path in the container.
    pub container_path: String,
    /// Device cgroup access (`r`, `w`, `m`).
    pub permissions: String,
    /// A block device (else a character device).
    pub block: bool,
    /// Major number.
    pub major: i64,
    /// Minor number.
    pub minor: i64,
    /// Mode bits of the node.
    pub file_mode: u32,
    /// Owner in the container.
    pub uid: u32,
    /// Group in the container.
    pub gid: u32,
}

/// The edits of every device a container asked for, in order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Edits {
    /// `KEY=value`, later entries winning.
    pub env: Vec<String>,
    /// Device nodes, with the device that asked for each.
    pub nodes: Vec<(String, DeviceNode)>,
    /// Mounts.
    pub mounts: Vec<Mount>,
    /// Hooks.
    pub hooks: Vec<Hook>,
    /// Additional groups.
    pub additional_gids: Vec<u32>,
    /// Intel RDT (the last device's that sets it).
    pub intel_rdt: Option<IntelRdt>,
}

impl Edits {
    /// Adds one device's (or its spec's) edits.
    pub fn add(&mut self, device: &str, e: &ContainerEdits) {
        self.env.extend(e.env.iter().cloned());
        self.nodes.extend(
            e.device_nodes
                .iter()
                .map(|n| (device.to_string(), n.clone())),
        );
        self.mounts.extend(e.mounts.iter().cloned());
        self.hooks.extend(e.hooks.iter().cloned());
        self.additional_gids
            .extend(e.additional_gids.iter().copied());
        if e.intel_rdt.is_some() {
            self.intel_rdt = e.intel_rdt.clone();
        }
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        *self == Edits::default()
    }

    /// The device nodes as the spec builder takes devices: what the spec
    /// leaves out (type, numbers, mode) read from the host node, as the
    /// CNCF library fills it in.
    pub fn device_facts(&self) -> Result<Vec<NodeFacts>, CdiError> {
        self.nodes
            .iter()
            .map(|(device, n)| node_facts(device, n))
            .collect()
    }

    /// Writes env, mounts, hooks, groups and Intel RDT into `spec`.
    pub fn apply(&self, spec: &mut Spec) {
        if let Some(mut process) = spec.process().clone() {
            let mut env = process.env().clone().unwrap_or_default();
            for kv in &self.env {
                let key = kv.split('=').next().unwrap_or(kv);
                match env.iter_mut().find(|e| e.split('=').next() == Some(key)) {
                    Some(e) => *e = kv.clone(),
                    None => env.push(kv.clone()),
                }
            }
            process.set_env(Some(env));
            let mut user = process.user().clone();
            let mut gids = user.additional_gids().clone().unwrap_or_default();
            for g in &self.additional_gids {
                // Group 0 is never added by a device (as the CNCF library).
                if *g != 0 && !gids.contains(g) {
                    gids.push(*g);
                }
            }
            user.set_additional_gids(Some(gids));
            process.set_user(user);
            spec.set_process(Some(process));
        }
        if !self.mounts.is_empty() {
            let mut mounts = spec.mounts().clone().unwrap_or_default();
            mounts.extend(self.mounts.iter().map(oci_mount));
            // Parents before children, as the CNCF library orders them.
            mounts.sort_by_key(|m| {
                m.destination()
                    .components()
                    .filter(|c| matches!(c, std::path::Component::Normal(_)))
                    .count()
            });
            spec.set_mounts(Some(mounts));
        }
        if !self.hooks.is_empty() {
            let mut hooks: Hooks = spec.hooks().clone().unwrap_or_default();
            for h in &self.hooks {
                let mut o = OciHook::default();
                o.set_path(PathBuf::from(&h.path))
                    .set_args((!h.args.is_empty()).then(|| h.args.clone()))
                    .set_env((!h.env.is_empty()).then(|| h.env.clone()))
                    .set_timeout(h.timeout);
                let list = match h.hook_name.as_str() {
                    "prestart" => hooks.prestart().clone(),
                    "createRuntime" => hooks.create_runtime().clone(),
                    "createContainer" => hooks.create_container().clone(),
                    "startContainer" => hooks.start_container().clone(),
                    "poststart" => hooks.poststart().clone(),
                    _ => hooks.poststop().clone(),
                };
                let mut list = list.unwrap_or_default();
                list.push(o);
                match h.hook_name.as_str() {
                    "prestart" => hooks.set_prestart(Some(list)),
                    "createRuntime" => hooks.set_create_runtime(Some(list)),
                    "createContainer" => hooks.set_create_container(Some(list)),
                    "startContainer" => hooks.set_start_container(Some(list)),
                    "poststart" => hooks.set_poststart(Some(list)),
                    _ => hooks.set_poststop(Some(list)),
                };
            }
            spec.set_hooks(Some(hooks));
        }
        if let (Some(rdt), Some(mut linux)) = (&self.intel_rdt, spec.linux().clone()) {
            let mut r = LinuxIntelRdt::default();
            r.set_clos_id(rdt.clos_id.clone())
                .set_l3_cache_schema(rdt.l3_cache_schema.clone())
                .set_mem_bw_schema(rdt.mem_bw_schema.clone())
                .set_enable_cmt(Some(rdt.enable_cmt))
                .set_enable_mbm(Some(rdt.enable_mbm));
            linux.set_intel_rdt(Some(r));
            spec.set_linux(Some(linux));
        }
    }
}

fn oci_mount(m: &Mount) -> OciMount {
    let typ = m
        .typ
        .clone()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "bind".into());
    let mut options = m.options.clone();
    if typ == "bind" && !options.iter().any(|o| o == "bind" || o == "rbind") {
        options.push("rbind".into());
    }
    let mut o = OciMount::default();
    o.set_destination(PathBuf::from(&m.container_path))
        .set_source(Some(PathBuf::from(&m.host_path)))
        .set_typ(Some(typ))
        .set_options(Some(options));
    o
}

/// One node's facts, the host node's where the spec is silent.
fn node_facts(device: &str, n: &DeviceNode) -> Result<NodeFacts, CdiError> {
    let host = n.host_path.clone().unwrap_or_else(|| n.path.clone());
    let fail = |reason: String| CdiError::DeviceNode {
        device: device.to_string(),
        path: host.clone(),
        reason,
    };
    let md = std::fs::metadata(&host).map_err(|e| fail(e.to_string()))?;
    let ft = md.file_type();
    // Some(true) for a block device, Some(false) for a character one.
    let host_block = if ft.is_char_device() {
        Some(false)
    } else if ft.is_block_device() {
        Some(true)
    } else {
        None
    };
    let block = match n.typ.as_deref() {
        Some("c") | Some("u") => false,
        Some("b") => true,
        Some(t) => {
            return Err(fail(format!(
                "device type {t:?} is not supported (c, u or b)"
            )))
        }
        None => host_block.ok_or_else(|| fail("is not a device node".into()))?,
    };
    let rdev = md.rdev();
    let from_host = host_block == Some(block);
    let number = |given: Option<i64>, host: u64, what: &str| match given {
        Some(v) => Ok(v),
        None if from_host => Ok(host as i64),
        None => Err(fail(format!(
            "no {what} number, and the host node is not a device of that type"
        ))),
    };
    Ok(NodeFacts {
        host_path: PathBuf::from(&host),
        container_path: n.path.clone(),
        permissions: n.permissions.clone().unwrap_or_else(|| "rwm".into()),
        block,
        major: number(n.major, nix::sys::stat::major(rdev), "major")?,
        minor: number(n.minor, nix::sys::stat::minor(rdev), "minor")?,
        file_mode: n.file_mode.unwrap_or(md.mode() & 0o7777),
        uid: n.uid.unwrap_or(0),
        gid: n.gid.unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edits() -> Edits {
        let mut e = Edits::default();
        e.add(
            "a.com/x=1",
            &ContainerEdits {
                env: vec!["PATH=/vendor/bin".into(), "NEW=1".into()],
                device_nodes: vec![DeviceNode {
                    path: "/dev/vendor0".into(),
                    host_path: Some("/dev/null".into()),
                    permissions: Some("rw".into()),
                    ..Default::default()
                }],
                hooks: vec![Hook {
                    hook_name: "createContainer".into(),
                    path: "/usr/bin/vendor-hook".into(),
                    args: vec!["vendor-hook".into()],
                    ..Default::default()
                }],
                mounts: vec![Mount {
                    host_path: "/opt/vendor".into(),
                    container_path: "/usr/lib/vendor".into(),
                    options: vec!["ro".into()],
                    typ: None,
                }],
                intel_rdt: None,
                additional_gids: vec![0, 44, 44],
            },
        );
        e
    }

    #[test]
    fn nodes_take_what_the_spec_leaves_out_from_the_host() {
        let facts = edits().device_facts().expect("facts");
        assert_eq!(facts.len(), 1);
        let f = &facts[0];
        assert_eq!((f.block, f.major, f.minor), (false, 1, 3));
        assert_eq!(f.container_path, "/dev/vendor0");
        assert_eq!(f.permissions, "rw");
        let mut missing = Edits::default();
        missing.nodes.push((
            "a.com/x=2".into(),
            DeviceNode {
                path: "/dev/none".into(),
                host_path: Some("/nonexistent/dev".into()),
                ..Default::default()
            },
        ));
        assert!(matches!(
            missing.device_facts(),
            Err(CdiError::DeviceNode { device, .. }) if device == "a.com/x=2"
        ));
    }

    #[test]
    fn env_mounts_hooks_and_groups_go_into_the_spec() {
        let mut spec = Spec::default();
        edits().apply(&mut spec);
        let process = spec.process().clone().expect("process");
        let env = process.env().clone().unwrap_or_default();
        assert!(env.contains(&"PATH=/vendor/bin".to_string()), "{env:?}");
        assert!(env.contains(&"NEW=1".to_string()), "{env:?}");
        assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
        assert_eq!(process.user().additional_gids().clone(), Some(vec![44]));
        let mounts = spec.mounts().clone().unwrap_or_default();
        let m = mounts
            .iter()
            .find(|m| m.destination() == &PathBuf::from("/usr/lib/vendor"))
            .expect("mount");
        assert_eq!(m.typ().as_deref(), Some("bind"));
        assert_eq!(m.options().clone(), Some(vec!["ro".into(), "rbind".into()]));
        let hooks = spec.hooks().clone().expect("hooks");
        let cc = hooks
            .create_container()
            .clone()
            .expect("createContainer hooks");
        assert_eq!(cc[0].path(), &PathBuf::from("/usr/bin/vendor-hook"));
    }
}
