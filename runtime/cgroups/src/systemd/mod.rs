//! The systemd cgroup driver: on a host where systemd is PID 1 it owns the
//! cgroup tree, so a container's cgroup is a transient scope unit
//! (`carapace-<id>.scope`, started with the container's first process in
//! it) and a pod's is a transient slice, both created and stopped over
//! systemd's D-Bus API. Limits go to systemd as unit properties *and* to the
//! cgroup files, as runc does: the files take effect at once and cover what
//! systemd has no property for, the properties keep systemd from resetting
//! the files when it reloads.
//!
//! Everything else — freezing, killing, stats, joining an exec'd process —
//! works on the unit's cgroup directory like the cgroupfs driver: systemd
//! delegates the scope to us (`Delegate=yes`).
//!
//! cgroup v2 only. On v1 systemd resets the devices controller of a
//! delegated unit to "allow all" on reload unless told every device rule
//! as DevicePolicy/DeviceAllow properties, which this driver does not
//! translate; [`crate::Manager::new`] refuses v1 rather than run
//! containers whose device rules a reload would undo.

mod bus;
mod props;
mod wire;

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::error::Error;
use bus::Bus;
use wire::{Arg, Value};

/// Present (as a directory) exactly when systemd is PID 1 (sd_booted(3)).
pub(crate) const RUN_DIR: &str = "/run/systemd/system";

/// Whether systemd runs this host.
pub(crate) fn running() -> bool {
    Path::new(RUN_DIR).is_dir()
}

/// One systemd unit whose cgroup a [`crate::Manager`] manages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Unit {
    /// e.g. `carapace-abc.scope` or `carapace-podabc.slice`.
    pub name: String,
    /// The slice a scope goes in (e.g. `system.slice`); None when the unit
    /// is itself a slice (its place follows from its name).
    pub slice: Option<String>,
}

/// Checks that systemd is PID 1, the host is on cgroup v2 and systemd
/// accepts us on its private socket.
pub(crate) fn probe() -> Result<(), Error> {
    // Fails as Manager::new does: not running, or cgroup v1.
    crate::Manager::new(None, "probe", true)?;
    connect("connect", "-").map(drop)
}

fn connect(op: &'static str, unit: &str) -> Result<Bus, Error> {
    Bus::connect().map_err(|e| e.into_error(op, unit))
}

impl Unit {
    /// Whether the unit is a slice (no processes of its own).
    pub(crate) fn is_slice(&self) -> bool {
        self.slice.is_none()
    }

    fn start_transient(
        &self,
        bus: &mut Bus,
        props: Vec<(String, Value)>,
    ) -> Result<(), bus::CallError> {
        let args = [
            Arg::Str(self.name.clone()),
            Arg::Str("replace".into()),
            Arg::Properties(props),
            Arg::NoAuxUnits,
        ];
        bus.call_job("StartTransientUnit", &args)
    }

    /// Starts the scope with `pid` as its first process and the limits of
    /// `r` as properties. The scope is delegated to us, has no default
    /// dependencies (it must not hold up shutdown ordering) and its
    /// accounting is on, so systemd enables the controllers down to it.
    pub(crate) fn start_scope(&self, pid: i32, r: &LinuxResources) -> Result<(), Error> {
        let pid = u32::try_from(pid)
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| Error::InvalidResources(format!("invalid pid {pid}")))?;
        let mut p = vec![
            (
                "Description".to_string(),
                Value::Str(format!("carapace container {}", self.name)),
            ),
            ("Delegate".to_string(), Value::Bool(true)),
            ("DefaultDependencies".to_string(), Value::Bool(false)),
            ("PIDs".to_string(), Value::U32s(vec![pid])),
        ];
        if let Some(s) = &self.slice {
            p.push(("Slice".to_string(), Value::Str(s.clone())));
        }
        p.extend(props::accounting());
        p.extend(props::resources(r)?);
        let mut bus = connect("start", &self.name)?;
        match self.start_transient(&mut bus, p.clone()) {
            // A failed unit of the same name lingers until reset; a
            // container created again under its old ID must not trip on it.
            Err(e) if e.is(bus::UNIT_EXISTS) => {
                let _ = bus.call("ResetFailedUnit", &[Arg::Str(self.name.clone())]);
                self.start_transient(&mut bus, p)
            }
            other => other,
        }
        .map_err(|e| e.into_error("start", &self.name))
    }

    /// Starts the slice (a pod's). A slice systemd already has — loaded
    /// because a unit was put in it, or made by kubelet — is started in
    /// place instead.
    ///
    /// A slice is not delegated: systemd gives it only the controllers its
    /// settings need, and CPU accounting alone needs none on v2. The
    /// kernel's default weight, set explicitly, gets it the cpu controller,
    /// whose files (cpu.max, cpu.weight) pod limits write.
    pub(crate) fn start_slice(&self) -> Result<(), Error> {
        let mut p = vec![(
            "Description".to_string(),
            Value::Str(format!("carapace pod {}", self.name)),
        )];
        p.extend(props::accounting());
        p.push(("CPUWeight".to_string(), Value::U64(100)));
        let mut bus = connect("start", &self.name)?;
        match self.start_transient(&mut bus, p) {
            Ok(()) => Ok(()),
            Err(e) if e.is(bus::UNIT_EXISTS) => bus
                .call_job(
                    "StartUnit",
                    &[Arg::Str(self.name.clone()), Arg::Str("replace".into())],
                )
                .map_err(|e| e.into_error("start", &self.name)),
            Err(e) => Err(e.into_error("start", &self.name)),
        }
    }

    /// Tells systemd the new limits of `r` (only those it has properties
    /// for; the caller writes the files). Runtime-only, as runc does: they
    /// live as long as the unit.
    pub(crate) fn set_resources(&self, r: &LinuxResources) -> Result<(), Error> {
        let p = props::resources(r)?;
        if p.is_empty() {
            return Ok(());
        }
        let mut bus = connect("update", &self.name)?;
        bus.call(
            "SetUnitProperties",
            &[
                Arg::Str(self.name.clone()),
                Arg::Bool(true),
                Arg::Properties(p),
            ],
        )
        .map(|_| ())
        .map_err(|e| e.into_error("update", &self.name))
    }

    /// Stops the unit (systemd kills what is left in it and removes its
    /// cgroup) and forgets a failed state. A unit systemd does not know —
    /// never started, or already gone because its last process exited —
    /// is fine: stopping is idempotent.
    pub(crate) fn stop(&self) -> Result<(), Error> {
        let mut bus = connect("stop", &self.name)?;
        let r = bus.call_job(
            "StopUnit",
            &[Arg::Str(self.name.clone()), Arg::Str("replace".into())],
        );
        let _ = bus.call("ResetFailedUnit", &[Arg::Str(self.name.clone())]);
        match r {
            Err(e) if !e.is(bus::NO_SUCH_UNIT) => Err(e.into_error("stop", &self.name)),
            _ => Ok(()),
        }
    }
}
