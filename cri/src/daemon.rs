//! What every CRI handler shares: the configuration and the daemon-wide
//! state the runtime config calls change.

use std::sync::RwLock;

use crate::config::Config;

/// The daemon's shared state, behind an `Arc` in every service.
#[derive(Debug)]
pub struct Daemon {
    /// The configuration the daemon started with.
    pub config: Config,
    /// The pod CIDR kubelet handed over with UpdateRuntimeConfig, passed
    /// to CNI plugins that want it (host-local's `podCIDR` range).
    pod_cidr: RwLock<String>,
    /// Pod and container lifecycle events (GetContainerEvents).
    pub events: crate::lifecycle::Events,
    /// What AppArmor the node enforces (decided as the daemon starts).
    pub apparmor: crate::apparmor::Node,
    /// The policy's container contexts where SELinux is on; None where it
    /// is off (decided as the daemon starts).
    pub selinux: Option<crate::selinux::Contexts>,
    /// The CDI devices the spec dirs define (read as containers ask).
    pub cdi: crate::cdi::Registry,
}

impl Daemon {
    /// A daemon for `config`.
    pub fn new(config: Config) -> Self {
        let cdi = crate::cdi::Registry::new(config.cdi.enabled, config.cdi.spec_dirs.clone());
        Daemon {
            cdi,
            config,
            pod_cidr: RwLock::new(String::new()),
            events: crate::lifecycle::Events::default(),
            apparmor: crate::apparmor::Node::Disabled,
            selinux: None,
        }
    }

    /// The same daemon on a node whose AppArmor is `node`
    /// ([`crate::apparmor::Node::prepare`]).
    pub fn with_apparmor(mut self, node: crate::apparmor::Node) -> Self {
        self.apparmor = node;
        self
    }

    /// The same daemon on a node whose SELinux policy has `contexts`
    /// (None: SELinux is off).
    pub fn with_selinux(mut self, contexts: Option<crate::selinux::Contexts>) -> Self {
        self.selinux = contexts;
        self
    }

    /// The pod CIDR last set by kubelet ("" until then).
    pub fn pod_cidr(&self) -> String {
        self.pod_cidr.read().map(|c| c.clone()).unwrap_or_default()
    }

    /// Records a new pod CIDR.
    pub fn set_pod_cidr(&self, cidr: &str) {
        if let Ok(mut c) = self.pod_cidr.write() {
            *c = cidr.to_string();
        }
    }
}
