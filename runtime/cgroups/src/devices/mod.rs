//! Device access rules (`linux.resources.devices`).
//!
//! The rule list is ordered; on both hierarchies the result is "the last rule
//! that matches a request decides". An allow rule matches a request when it
//! grants every requested access bit, a deny rule when it names any of them
//! (the kernel's own v1 semantics for exceptions).
//!
//! * v1: the rules are written to devices.allow / devices.deny. When the
//!   cgroup is already in allow-list mode and stays in it (the `update` case),
//!   only the difference is written, so running processes never see a
//!   transient "deny all" and pod cgroups with children can be updated.
//! * v2: there is no devices file; a BPF_PROG_TYPE_CGROUP_DEVICE program
//!   generated from the rules (default deny) is attached to the directory.

mod ebpf;
mod program;

use std::collections::BTreeMap;
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::Error;
use crate::fs;

pub use ebpf::{apply_device_rules_v2, attached_device_filters};

/// Access bits, with the values of the kernel's BPF_DEVCG_ACC_* constants.
pub(crate) const ACC_MKNOD: u8 = 1;
pub(crate) const ACC_READ: u8 = 2;
pub(crate) const ACC_WRITE: u8 = 4;
pub(crate) const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// Device class a rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// Every device ("a"); major and minor are ignored, as the v1 kernel does.
    All,
    /// Block devices ("b").
    Block,
    /// Character devices ("c", and OCI's "u").
    Char,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Kind::All => 'a',
            Kind::Block => 'b',
            Kind::Char => 'c',
        }
    }
}

/// A validated device rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    pub allow: bool,
    pub kind: Kind,
    /// None is the wildcard `*`.
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// ACC_* bits; never zero.
    pub access: u8,
}

/// Parses an OCI access string ("rwm" in any order). Unset or empty means
/// "rwm", as crun does.
fn parse_access(s: Option<&str>) -> Result<u8, Error> {
    let s = s.unwrap_or("");
    if s.is_empty() {
        return Ok(ACC_ALL);
    }
    let mut bits = 0;
    for c in s.chars() {
        bits |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => {
                return Err(Error::InvalidResources(format!(
                    "device access {s:?} may only contain r, w and m"
                )))
            }
        };
    }
    Ok(bits)
}

fn access_string(bits: u8) -> String {
    let mut s = String::new();
    for (bit, c) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
        if bits & bit != 0 {
            s.push(c);
        }
    }
    s
}

fn dev_number(what: &str, v: Option<i64>) -> Result<Option<u32>, Error> {
    match v {
        None => Ok(None),
        Some(n) if n < 0 => Ok(None),
        // BPF immediates are signed 32-bit; real majors/minors are far smaller.
        Some(n) if n <= i64::from(i32::MAX) => Ok(u32::try_from(n).ok()),
        Some(n) => Err(Error::InvalidResources(format!(
            "device {what} number {n} is out of range"
        ))),
    }
}

impl Rule {
    /// Validates one OCI rule.
    pub(crate) fn from_oci(r: &LinuxDeviceCgroup) -> Result<Rule, Error> {
        let kind = match r.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => Kind::All,
            LinuxDeviceType::B => Kind::Block,
            LinuxDeviceType::C | LinuxDeviceType::U => Kind::Char,
            LinuxDeviceType::P => {
                return Err(Error::InvalidResources(
                    "device rules for FIFOs (type p) are not supported by the device cgroup".into(),
                ))
            }
        };
        Ok(Rule {
            allow: r.allow(),
            kind,
            major: dev_number("major", r.major())?,
            minor: dev_number("minor", r.minor())?,
            access: parse_access(r.access().as_deref())?,
        })
    }

    /// The line the v1 devices.allow / devices.deny files take.
    pub(crate) fn v1_string(&self) -> String {
        if self.kind == Kind::All {
            return "a".into();
        }
        format_entry(self.kind, self.major, self.minor, self.access)
    }

    /// Whether this rule decides a request (see the module docs).
    #[cfg(test)]
    pub(crate) fn matches(&self, kind: Kind, major: u32, minor: u32, access: u8) -> bool {
        if self.kind != Kind::All
            && (self.kind != kind
                || self.major.is_some_and(|m| m != major)
                || self.minor.is_some_and(|m| m != minor))
        {
            return false;
        }
        if self.allow {
            access & !self.access == 0
        } else {
            access & self.access != 0
        }
    }
}

fn format_entry(kind: Kind, major: Option<u32>, minor: Option<u32>, access: u8) -> String {
    let num = |v: Option<u32>| v.map_or_else(|| "*".to_string(), |n| n.to_string());
    format!(
        "{} {}:{} {}",
        kind.letter(),
        num(major),
        num(minor),
        access_string(access)
    )
}

/// Validates an OCI rule list.
pub(crate) fn parse_rules(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Rule>, Error> {
    rules.iter().map(Rule::from_oci).collect()
}

type Key = (Kind, Option<u32>, Option<u32>);

/// What the v1 kernel keeps for a devices cgroup: a default and exceptions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct V1State {
    pub default_allow: bool,
    pub exceptions: BTreeMap<Key, u8>,
}

impl V1State {
    /// Applies one rule the way the kernel's devcgroup_update_access does.
    pub(crate) fn apply(&mut self, rule: &Rule) {
        if rule.kind == Kind::All {
            self.exceptions.clear();
            self.default_allow = rule.allow;
            return;
        }
        let key = (rule.kind, rule.major, rule.minor);
        // An exception is the opposite of the default.
        if rule.allow != self.default_allow {
            *self.exceptions.entry(key).or_insert(0) |= rule.access;
        } else if let Some(bits) = self.exceptions.get_mut(&key) {
            *bits &= !rule.access;
            if *bits == 0 {
                self.exceptions.remove(&key);
            }
        }
    }

    /// Reads devices.list. In allow-by-default mode the kernel prints only
    /// `a *:* rwm` (its exceptions are not listed); otherwise one line per
    /// allowed entry. None if the content is not understood.
    pub(crate) fn parse_list(content: &str) -> Option<V1State> {
        let mut state = V1State {
            default_allow: false,
            exceptions: BTreeMap::new(),
        };
        for line in content.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let mut it = line.split_whitespace();
            let kind = match it.next()? {
                "a" => {
                    state.default_allow = true;
                    continue;
                }
                "b" => Kind::Block,
                "c" => Kind::Char,
                _ => return None,
            };
            let (major, minor) = it.next()?.split_once(':')?;
            let num = |s: &str| -> Option<Option<u32>> {
                if s == "*" {
                    Some(None)
                } else {
                    s.parse().ok().map(Some)
                }
            };
            let access = parse_access(Some(it.next()?)).ok()?;
            *state
                .exceptions
                .entry((kind, num(major)?, num(minor)?))
                .or_insert(0) |= access;
        }
        if state.default_allow {
            state.exceptions.clear();
        }
        Some(state)
    }
}

/// The writes (true = devices.allow, false = devices.deny) that take a v1
/// devices cgroup whose devices.list reads `current_list` to the state the
/// rules describe.
///
/// If the cgroup is in allow-list mode and the rules keep it there, only the
/// difference is written (denies of dropped bits, then allows of new ones).
/// Otherwise the rules are replayed in order, starting with the `a` that
/// switches modes — exactly what runc writes for a fresh container.
pub(crate) fn v1_writes(current_list: &str, rules: &[Rule]) -> Vec<(bool, String)> {
    if let Some(current) = V1State::parse_list(current_list).filter(|s| !s.default_allow) {
        let mut target = current.clone();
        for r in rules {
            target.apply(r);
        }
        if !target.default_allow {
            let mut writes = Vec::new();
            for (key, bits) in &current.exceptions {
                let drop = bits & !target.exceptions.get(key).copied().unwrap_or(0);
                if drop != 0 {
                    writes.push((false, format_entry(key.0, key.1, key.2, drop)));
                }
            }
            for (key, bits) in &target.exceptions {
                let add = bits & !current.exceptions.get(key).copied().unwrap_or(0);
                if add != 0 {
                    writes.push((true, format_entry(key.0, key.1, key.2, add)));
                }
            }
            return writes;
        }
    }
    rules.iter().map(|r| (r.allow, r.v1_string())).collect()
}

/// Applies the rules to a v1 devices cgroup directory.
pub(crate) fn apply_v1(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), Error> {
    let rules = parse_rules(rules)?;
    if rules.is_empty() {
        return Ok(());
    }
    let list = fs::read(&dir.join("devices.list"))?;
    for (allow, line) in v1_writes(&list, &rules) {
        let file = if allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        fs::write(&dir.join(file), &line)?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    /// Builds an OCI rule: `oci(true, "c", Some(1), Some(3), "rwm")`.
    pub(crate) fn oci(
        allow: bool,
        typ: &str,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let typ = match typ {
            "a" => LinuxDeviceType::A,
            "b" => LinuxDeviceType::B,
            "c" => LinuxDeviceType::C,
            "u" => LinuxDeviceType::U,
            _ => LinuxDeviceType::P,
        };
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .access(access);
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().unwrap()
    }

    /// The rule list containerd gives a non-privileged container (abridged).
    pub(crate) fn default_rules() -> Vec<LinuxDeviceCgroup> {
        vec![
            oci(false, "a", None, None, "rwm"),
            oci(true, "c", None, None, "m"),
            oci(true, "b", None, None, "m"),
            oci(true, "c", Some(1), Some(3), "rwm"),
            oci(true, "c", Some(1), Some(5), "rwm"),
            oci(true, "c", Some(136), None, "rwm"),
            oci(true, "c", Some(5), Some(2), "rwm"),
        ]
    }

    #[test]
    fn oci_rules_are_validated() {
        let r = Rule::from_oci(&oci(true, "u", Some(1), Some(3), "")).unwrap();
        assert_eq!(r.kind, Kind::Char);
        assert_eq!(r.access, ACC_ALL);
        assert_eq!(r.v1_string(), "c 1:3 rwm");
        let r = Rule::from_oci(&oci(false, "b", Some(-1), None, "mw")).unwrap();
        assert_eq!(r.v1_string(), "b *:* wm");
        assert_eq!(
            Rule::from_oci(&oci(false, "a", Some(1), None, "r"))
                .unwrap()
                .v1_string(),
            "a"
        );
        assert!(Rule::from_oci(&oci(true, "p", None, None, "rwm")).is_err());
        assert!(Rule::from_oci(&oci(true, "c", None, None, "rx")).is_err());
        assert!(Rule::from_oci(&oci(true, "c", Some(1 << 40), None, "r")).is_err());
    }

    #[test]
    fn fresh_cgroup_gets_rules_replayed_deny_all_first() {
        let rules = parse_rules(&default_rules()).unwrap();
        let writes = v1_writes("a *:* rwm\n", &rules);
        assert_eq!(writes[0], (false, "a".to_string()));
        assert_eq!(writes[1], (true, "c *:* m".to_string()));
        assert_eq!(writes.len(), rules.len());
    }

    #[test]
    fn update_with_same_rules_writes_nothing() {
        let rules = parse_rules(&default_rules()).unwrap();
        let list = "c *:* m\nb *:* m\nc 1:3 rwm\nc 1:5 rwm\nc 136:* rwm\nc 5:2 rwm\n";
        assert!(v1_writes(list, &rules).is_empty());
    }

    #[test]
    fn update_writes_only_the_difference() {
        let mut oci_rules = default_rules();
        oci_rules.retain(|r| r.major() != Some(136));
        oci_rules.push(oci(true, "c", Some(10), Some(200), "rw"));
        oci_rules.push(oci(false, "c", Some(1), Some(5), "w"));
        let rules = parse_rules(&oci_rules).unwrap();
        let list = "c *:* m\nb *:* m\nc 1:3 rwm\nc 1:5 rwm\nc 136:* rwm\nc 5:2 rwm\n";
        assert_eq!(
            v1_writes(list, &rules),
            vec![
                (false, "c 1:5 w".to_string()),
                (false, "c 136:* rwm".to_string()),
                (true, "c 10:200 rw".to_string()),
            ]
        );
    }

    #[test]
    fn emulator_follows_kernel_exception_rules() {
        let mut s = V1State::parse_list("a *:* rwm").unwrap();
        assert!(s.default_allow);
        s.apply(&Rule::from_oci(&oci(false, "c", Some(1), Some(3), "w")).unwrap());
        assert_eq!(s.exceptions.len(), 1);
        s.apply(&Rule::from_oci(&oci(true, "c", Some(1), Some(3), "rw")).unwrap());
        assert!(s.exceptions.is_empty());
        s.apply(&Rule::from_oci(&oci(false, "a", None, None, "")).unwrap());
        assert!(!s.default_allow);
        assert!(V1State::parse_list("x 1:2 r").is_none());
    }
}
