//! `RuntimeConfig`: kubelet (1.28+) asks which cgroup driver to use instead
//! of being told by a flag.

use k8s_cri::v1 as cri;
use tonic::Status;

use crate::daemon::Daemon;

/// Answers with the configured cgroup driver.
pub fn handle(
    d: &Daemon,
    _req: cri::RuntimeConfigRequest,
) -> Result<cri::RuntimeConfigResponse, Status> {
    let driver = match d.config.cgroup_driver.as_str() {
        "systemd" => cri::CgroupDriver::Systemd,
        _ => cri::CgroupDriver::Cgroupfs,
    };
    Ok(cri::RuntimeConfigResponse {
        linux: Some(cri::LinuxRuntimeConfiguration {
            cgroup_driver: driver as i32,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_configured_cgroup_driver_is_reported() {
        let mut c = Config::default();
        let r = handle(&Daemon::new(c.clone()), Default::default()).expect("config");
        assert_eq!(
            r.linux.expect("linux").cgroup_driver,
            cri::CgroupDriver::Cgroupfs as i32
        );
        c.cgroup_driver = "systemd".into();
        let r = handle(&Daemon::new(c), Default::default()).expect("config");
        assert_eq!(
            r.linux.expect("linux").cgroup_driver,
            cri::CgroupDriver::Systemd as i32
        );
    }
}
