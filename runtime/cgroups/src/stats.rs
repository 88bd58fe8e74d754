//! One resource-usage snapshot of a cgroup, the same on cgroup v1 and v2.
//!
//! Two users read it: the shim, which answers containerd's `Stats` call with
//! the cgroups v1/v2 `Metrics` messages, and the CRI daemon, which answers
//! `ContainerStats`/`PodSandboxStats` with what kubelet expects (CPU usage in
//! nanoseconds, the memory working set, available bytes, RSS, page faults).
//! Both get the same [`Stats`], so neither needs to know which cgroup version
//! the host runs.
//!
//! Every file is parsed by a pure function of its content (unit-tested with
//! realistic v1 and v2 samples); the readers only decide which files to read
//! and read each of them once. A controller that is not there (v1: not
//! mounted; v2: not enabled) or a file the kernel does not have leaves its
//! fields `None` (or empty); a file that exists but cannot be read, or holds
//! something unexpected, is an error naming it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::error::{errno_of, Error};
use crate::{fs, Hierarchy};

/// A point-in-time reading of a cgroup's usage (fields None where the
/// controller or its file is absent).
///
/// The same struct on cgroup v1 and v2, so the shim and the CRI daemon can
/// report a container's (or a pod's) usage without caring which version the
/// host runs. Byte counts are bytes and times are nanoseconds on both.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// CPU time used and CFS throttling.
    pub cpu: CpuStats,
    /// Memory usage, limits, and the breakdown of memory.stat.
    pub memory: MemoryStats,
    /// Number of tasks and their limit.
    pub pids: PidsStats,
    /// Huge page usage, one entry per page size the kernel offers, smallest
    /// page size first; empty when the hugetlb controller is absent.
    pub hugetlb: Vec<HugetlbStats>,
}

/// CPU time a cgroup consumed, and how much CFS bandwidth control held it
/// back: what containerd's `CPUStat` and kubelet's `usage_core_nano_seconds`
/// are made of.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuStats {
    /// Total CPU time. v1: cpuacct.usage; v2: cpu.stat `usage_usec` × 1000.
    pub usage_ns: Option<u64>,
    /// CPU time in user mode. v1: cpuacct.stat `user` (USER_HZ ticks, so
    /// 10 ms granularity); v2: cpu.stat `user_usec` × 1000.
    pub user_ns: Option<u64>,
    /// CPU time in kernel mode. v1: cpuacct.stat `system` (USER_HZ ticks);
    /// v2: cpu.stat `system_usec` × 1000.
    pub system_ns: Option<u64>,
    /// CPU time per CPU, indexed by CPU number. v1: cpuacct.usage_percpu;
    /// always empty on v2, which has no such file.
    pub per_cpu_ns: Vec<u64>,
    /// CFS enforcement periods that elapsed. v1 and v2: cpu.stat
    /// `nr_periods` (None without the cpu controller).
    pub nr_periods: Option<u64>,
    /// Periods in which the cgroup was throttled. cpu.stat `nr_throttled`.
    pub nr_throttled: Option<u64>,
    /// Total time spent throttled. v1: cpu.stat `throttled_time` (already in
    /// ns); v2: cpu.stat `throttled_usec` × 1000.
    pub throttled_ns: Option<u64>,
}

/// Memory a cgroup uses and may use: what containerd's `MemoryStat` and
/// kubelet's memory stats (working set, available, RSS, page faults) are made
/// of.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemoryStats {
    /// Memory charged to the cgroup (including page cache), in bytes.
    /// v1: memory.usage_in_bytes; v2: memory.current.
    pub usage: Option<u64>,
    /// The highest usage recorded. v1: memory.max_usage_in_bytes; v2:
    /// memory.peak (kernel 5.19+, None before).
    pub max_usage: Option<u64>,
    /// The memory limit in bytes; None when unlimited. v1:
    /// memory.limit_in_bytes (the kernel's "unlimited", LONG_MAX rounded
    /// down to a page, reads as None); v2: memory.max ("max" reads as None).
    pub limit: Option<u64>,
    /// Swap in use, in bytes, swap alone on both versions. v1:
    /// memory.memsw.usage_in_bytes minus memory.usage_in_bytes (None without
    /// swap accounting); v2: memory.swap.current.
    pub swap_usage: Option<u64>,
    /// The swap limit in bytes, swap alone on both versions (the reverse of
    /// how an OCI `memory.swap` becomes memory.swap.max); None when unlimited
    /// or not accounted. v1: memory.memsw.limit_in_bytes minus
    /// memory.limit_in_bytes; v2: memory.swap.max.
    pub swap_limit: Option<u64>,
    /// How often the limit was hit. v1: memory.failcnt; v2: memory.events
    /// `max`.
    pub failcnt: Option<u64>,
    /// How many processes the OOM killer killed in the cgroup. v1:
    /// memory.oom_control `oom_kill` (kernel 4.13+); v2: memory.events
    /// `oom_kill`.
    pub oom_kills: Option<u64>,
    /// Anonymous memory. v1: memory.stat `total_rss` (`rss` if there is no
    /// hierarchical total); v2: memory.stat `anon`.
    pub rss: Option<u64>,
    /// Page cache. v1: memory.stat `total_cache` (else `cache`); v2:
    /// memory.stat `file`.
    pub cache: Option<u64>,
    /// File pages on the inactive LRU list, the part of the page cache
    /// kubelet does not count in the working set. v1: memory.stat
    /// `total_inactive_file` (else `inactive_file`); v2: `inactive_file`.
    pub inactive_file: Option<u64>,
    /// File pages on the active LRU list. v1: memory.stat `total_active_file`
    /// (else `active_file`); v2: `active_file`.
    pub active_file: Option<u64>,
    /// Page faults. v1: memory.stat `total_pgfault` (else `pgfault`); v2:
    /// `pgfault`.
    pub pgfault: Option<u64>,
    /// Major page faults (that needed I/O). v1: memory.stat
    /// `total_pgmajfault` (else `pgmajfault`); v2: `pgmajfault`.
    pub pgmajfault: Option<u64>,
    /// The whole memory.stat as read, for consumers that need a key not
    /// lifted into a field above (containerd's metrics carry most of them).
    /// Keys are as the kernel spells them for the running version.
    pub stat: BTreeMap<String, u64>,
}

impl MemoryStats {
    /// What kubelet calls the working set: usage minus inactive file pages,
    /// floored at 0 (usage alone when memory.stat has no inactive_file).
    /// Kubelet evicts on it and reports it as `working_set_bytes`.
    pub fn working_set(&self) -> Option<u64> {
        let usage = self.usage?;
        Some(usage.saturating_sub(self.inactive_file.unwrap_or(0)))
    }

    /// What kubelet reports as `available_bytes`: the limit minus the
    /// working set, floored at 0. None when there is no limit (or no usage).
    pub fn available(&self) -> Option<u64> {
        Some(self.limit?.saturating_sub(self.working_set()?))
    }
}

/// Tasks in a cgroup and their limit (pids.current / pids.max, the same
/// files on v1 and v2): containerd's `PidsStat`, kubelet's process count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PidsStats {
    /// Tasks (threads) in the cgroup and its descendants: pids.current.
    pub current: Option<u64>,
    /// The limit; None when unlimited ("max") or without the pids controller.
    pub limit: Option<u64>,
}

/// Huge page usage of one page size: containerd's `HugetlbStat`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HugetlbStats {
    /// The page size as the kernel spells it in file names, e.g. "2MB", "1GB".
    pub page_size: String,
    /// Bytes of huge pages in use. v1: `hugetlb.<size>.usage_in_bytes`; v2:
    /// `hugetlb.<size>.current`.
    pub usage: u64,
    /// The highest usage recorded. v1: `hugetlb.<size>.max_usage_in_bytes`;
    /// None on v2, which does not record one.
    pub max_usage: Option<u64>,
    /// Allocations that failed because of the limit. v1:
    /// `hugetlb.<size>.failcnt`; v2: `hugetlb.<size>.events` `max`.
    pub failcnt: Option<u64>,
}

/// What cpuacct.stat counts in: USER_HZ, which the kernel fixes at 100 for
/// everything it exports to user space (sysconf(_SC_CLK_TCK) on Linux).
const USER_HZ: u64 = 100;

/// Nanoseconds per USER_HZ tick.
const NS_PER_TICK: u64 = 1_000_000_000 / USER_HZ;

/// From here on a v1 limit means "unlimited". The kernel reports no limit
/// as LONG_MAX rounded down to its page size (9223372036854771712 with
/// 4 KiB pages, 9223372036854710272 with 64 KiB pages); no real limit comes
/// near 2^62 bytes (4 EiB).
const V1_UNLIMITED: u64 = 1 << 62;

// ---------------------------------------------------------------------------
// Pure parsers: file content in, value out; `path` only names the file in
// errors.

fn parse_error(path: &Path, content: &str) -> Error {
    Error::Parse {
        path: path.to_path_buf(),
        content: content.trim().to_string(),
    }
}

/// A file holding one unsigned number (memory.current, pids.current, ...).
pub(crate) fn parse_u64(path: &Path, content: &str) -> Result<u64, Error> {
    let s = content.trim();
    s.parse().map_err(|_| parse_error(path, s))
}

/// A v2 limit file (memory.max, memory.swap.max, pids.max; also v1
/// pids.max): a number, or "max" for no limit (None).
pub(crate) fn parse_max(path: &Path, content: &str) -> Result<Option<u64>, Error> {
    match content.trim() {
        "max" => Ok(None),
        _ => parse_u64(path, content).map(Some),
    }
}

/// A v1 byte limit (memory.limit_in_bytes, memory.memsw.limit_in_bytes):
/// the kernel's "unlimited" sentinel (see [`V1_UNLIMITED`]) is None.
pub(crate) fn parse_v1_limit(path: &Path, content: &str) -> Result<Option<u64>, Error> {
    let v = parse_u64(path, content)?;
    Ok((v < V1_UNLIMITED).then_some(v))
}

/// A flat-keyed file (memory.stat, cpu.stat, cpuacct.stat, memory.events,
/// memory.oom_control): one `key value` per line. Any other line is an
/// error naming it.
pub(crate) fn parse_keyed(path: &Path, content: &str) -> Result<BTreeMap<String, u64>, Error> {
    let mut out = BTreeMap::new();
    for line in content.lines().filter(|l| !l.trim().is_empty()) {
        let mut it = line.split_whitespace();
        let (Some(key), Some(value), None) = (it.next(), it.next(), it.next()) else {
            return Err(parse_error(path, line));
        };
        let value = value.parse().map_err(|_| parse_error(path, line))?;
        out.insert(key.to_string(), value);
    }
    Ok(out)
}

/// cpuacct.usage_percpu: one number per CPU on a single line (the kernel
/// leaves a trailing space).
pub(crate) fn parse_per_cpu(path: &Path, content: &str) -> Result<Vec<u64>, Error> {
    content
        .split_whitespace()
        .map(|v| v.parse().map_err(|_| parse_error(path, content)))
        .collect()
}

/// The page size in a hugetlb file name, `hugetlb.<size>.<suffix>` ("2MB"
/// for "hugetlb.2MB.current" with suffix "current"); None for other files,
/// including the `.rsvd.` variants.
pub(crate) fn hugetlb_page_size<'a>(name: &'a str, suffix: &str) -> Option<&'a str> {
    let size = name
        .strip_prefix("hugetlb.")?
        .strip_suffix(suffix)?
        .strip_suffix('.')?;
    (!size.is_empty() && !size.contains('.')).then_some(size)
}

/// A kernel page-size name ("64KB", "2MB", "1GB") in bytes, to sort by.
fn page_size_bytes(size: &str) -> Option<u64> {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: u64 = digits.parse().ok()?;
    let shift = match &size[digits.len()..] {
        "KB" => 10,
        "MB" => 20,
        "GB" => 30,
        "TB" => 40,
        "PB" => 50,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

/// Microseconds (v2 cpu.stat) to nanoseconds.
fn us_to_ns(us: u64) -> u64 {
    us.saturating_mul(1000)
}

/// v1 memory.stat: the hierarchical `total_<key>` (what covers the
/// cgroup's descendants too), else the cgroup's own `<key>`.
fn v1_stat(stat: &BTreeMap<String, u64>, key: &str) -> Option<u64> {
    stat.get(&format!("total_{key}"))
        .or_else(|| stat.get(key))
        .copied()
}

// ---------------------------------------------------------------------------
// Reading: which files, each read once.

/// Where a snapshot's files come from: the kernel, or a table in unit tests.
pub(crate) trait Source {
    /// The file's content; None when it does not exist.
    fn read(&self, path: &Path) -> Result<Option<String>, Error>;
    /// Whether `path` is an existing directory.
    fn is_dir(&self, path: &Path) -> bool;
    /// Names of the entries of `dir`; empty when it does not exist.
    fn names(&self, dir: &Path) -> Result<Vec<String>, Error>;
}

/// The real cgroup file system.
pub(crate) struct Kernel;

impl Source for Kernel {
    fn read(&self, path: &Path) -> Result<Option<String>, Error> {
        match fs::read(path) {
            Ok(content) => Ok(Some(content)),
            Err(Error::Read {
                errno: Errno::ENOENT,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn names(&self, dir: &Path) -> Result<Vec<String>, Error> {
        let err = |e: std::io::Error| Error::Read {
            path: dir.to_path_buf(),
            errno: errno_of(&e),
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(err(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            out.push(
                entry
                    .map_err(err)?
                    .file_name()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        Ok(out)
    }
}

/// Reads `dir/file` and parses it; None when the file does not exist.
fn read_with<T>(
    src: &impl Source,
    dir: &Path,
    file: &str,
    parse: impl FnOnce(&Path, &str) -> Result<T, Error>,
) -> Result<Option<T>, Error> {
    let path = dir.join(file);
    match src.read(&path)? {
        Some(content) => parse(&path, &content).map(Some),
        None => Ok(None),
    }
}

/// The container's directory in each v1 hierarchy a snapshot reads; None
/// where that controller is not mounted. cpu and cpuacct may be the same
/// directory (co-mounted).
#[derive(Clone, Debug, Default)]
pub(crate) struct V1Dirs {
    /// The cpuacct hierarchy: usage, user/system time, per-CPU usage.
    pub cpuacct: Option<PathBuf>,
    /// The cpu hierarchy: CFS throttling (cpu.stat).
    pub cpu: Option<PathBuf>,
    /// The memory hierarchy.
    pub memory: Option<PathBuf>,
    /// The pids hierarchy.
    pub pids: Option<PathBuf>,
    /// The hugetlb hierarchy.
    pub hugetlb: Option<PathBuf>,
}

/// A snapshot on cgroup v1.
///
/// A controller whose cgroup directory is missing counts as absent (the
/// hierarchy may have been mounted after the cgroup was created), but when
/// the cgroup exists in none of the mounted hierarchies it does not exist at
/// all, and that is an [`Error::Open`] with ENOENT naming a directory.
pub(crate) fn read_v1(src: &impl Source, dirs: &V1Dirs) -> Result<Stats, Error> {
    fn existing<'a>(src: &impl Source, d: &'a Option<PathBuf>) -> Option<&'a Path> {
        d.as_deref().filter(|d| src.is_dir(d))
    }
    let memory = existing(src, &dirs.memory);
    let cpuacct = existing(src, &dirs.cpuacct);
    let cpu = existing(src, &dirs.cpu);
    let pids_dir = existing(src, &dirs.pids);
    let hugetlb_dir = existing(src, &dirs.hugetlb);
    let none_exists = [memory, cpuacct, cpu, pids_dir, hugetlb_dir]
        .iter()
        .all(Option::is_none);
    let first_mounted = [
        &dirs.memory,
        &dirs.cpuacct,
        &dirs.cpu,
        &dirs.pids,
        &dirs.hugetlb,
    ]
    .into_iter()
    .find_map(|d| d.as_deref());
    if let (true, Some(first)) = (none_exists, first_mounted) {
        return Err(Error::Open {
            path: first.to_path_buf(),
            errno: Errno::ENOENT,
        });
    }
    Ok(Stats {
        cpu: cpu_v1(src, cpuacct, cpu)?,
        memory: match memory {
            Some(d) => memory_v1(src, d)?,
            None => MemoryStats::default(),
        },
        pids: match pids_dir {
            Some(d) => pids(src, d)?,
            None => PidsStats::default(),
        },
        hugetlb: match hugetlb_dir {
            Some(d) => hugetlb(src, d, Hierarchy::V1)?,
            None => Vec::new(),
        },
    })
}

/// A snapshot on cgroup v2, from the cgroup's one directory; a missing
/// directory is an [`Error::Open`] with ENOENT.
pub(crate) fn read_v2(src: &impl Source, dir: &Path) -> Result<Stats, Error> {
    if !src.is_dir(dir) {
        return Err(Error::Open {
            path: dir.to_path_buf(),
            errno: Errno::ENOENT,
        });
    }
    Ok(Stats {
        cpu: cpu_v2(src, dir)?,
        memory: memory_v2(src, dir)?,
        pids: pids(src, dir)?,
        hugetlb: hugetlb(src, dir, Hierarchy::V2)?,
    })
}

fn cpu_v1(
    src: &impl Source,
    cpuacct: Option<&Path>,
    cpu: Option<&Path>,
) -> Result<CpuStats, Error> {
    let mut out = CpuStats::default();
    if let Some(dir) = cpuacct {
        out.usage_ns = read_with(src, dir, "cpuacct.usage", parse_u64)?;
        out.per_cpu_ns =
            read_with(src, dir, "cpuacct.usage_percpu", parse_per_cpu)?.unwrap_or_default();
        if let Some(stat) = read_with(src, dir, "cpuacct.stat", parse_keyed)? {
            let ticks_to_ns = |k: &str| stat.get(k).map(|t| t.saturating_mul(NS_PER_TICK));
            out.user_ns = ticks_to_ns("user");
            out.system_ns = ticks_to_ns("system");
        }
    }
    if let Some(dir) = cpu {
        if let Some(stat) = read_with(src, dir, "cpu.stat", parse_keyed)? {
            out.nr_periods = stat.get("nr_periods").copied();
            out.nr_throttled = stat.get("nr_throttled").copied();
            out.throttled_ns = stat.get("throttled_time").copied();
        }
    }
    Ok(out)
}

fn cpu_v2(src: &impl Source, dir: &Path) -> Result<CpuStats, Error> {
    let mut out = CpuStats::default();
    // cpu.stat is a core file: usage/user/system are there even without the
    // cpu controller, the throttling keys only with it.
    if let Some(stat) = read_with(src, dir, "cpu.stat", parse_keyed)? {
        let ns = |k: &str| stat.get(k).map(|&us| us_to_ns(us));
        out.usage_ns = ns("usage_usec");
        out.user_ns = ns("user_usec");
        out.system_ns = ns("system_usec");
        out.nr_periods = stat.get("nr_periods").copied();
        out.nr_throttled = stat.get("nr_throttled").copied();
        out.throttled_ns = ns("throttled_usec");
    }
    Ok(out)
}

fn memory_v1(src: &impl Source, dir: &Path) -> Result<MemoryStats, Error> {
    let usage = read_with(src, dir, "memory.usage_in_bytes", parse_u64)?;
    let limit = read_with(src, dir, "memory.limit_in_bytes", parse_v1_limit)?.flatten();
    // Present only with swap accounting; they count memory + swap.
    let memsw_usage = read_with(src, dir, "memory.memsw.usage_in_bytes", parse_u64)?;
    let memsw_limit = read_with(src, dir, "memory.memsw.limit_in_bytes", parse_v1_limit)?;
    let oom = read_with(src, dir, "memory.oom_control", parse_keyed)?;
    let stat = read_with(src, dir, "memory.stat", parse_keyed)?.unwrap_or_default();
    Ok(MemoryStats {
        usage,
        max_usage: read_with(src, dir, "memory.max_usage_in_bytes", parse_u64)?,
        limit,
        swap_usage: memsw_usage
            .zip(usage)
            .map(|(memsw, mem)| memsw.saturating_sub(mem)),
        // The kernel keeps limit <= memsw limit, so a finite memsw limit
        // comes with a finite limit.
        swap_limit: memsw_limit
            .flatten()
            .map(|memsw| memsw.saturating_sub(limit.unwrap_or(0))),
        failcnt: read_with(src, dir, "memory.failcnt", parse_u64)?,
        oom_kills: oom.and_then(|o| o.get("oom_kill").copied()),
        rss: v1_stat(&stat, "rss"),
        cache: v1_stat(&stat, "cache"),
        inactive_file: v1_stat(&stat, "inactive_file"),
        active_file: v1_stat(&stat, "active_file"),
        pgfault: v1_stat(&stat, "pgfault"),
        pgmajfault: v1_stat(&stat, "pgmajfault"),
        stat,
    })
}

fn memory_v2(src: &impl Source, dir: &Path) -> Result<MemoryStats, Error> {
    let events = read_with(src, dir, "memory.events", parse_keyed)?;
    let event = |k: &str| events.as_ref().and_then(|e| e.get(k).copied());
    let stat = read_with(src, dir, "memory.stat", parse_keyed)?.unwrap_or_default();
    let key = |k: &str| stat.get(k).copied();
    Ok(MemoryStats {
        usage: read_with(src, dir, "memory.current", parse_u64)?,
        max_usage: read_with(src, dir, "memory.peak", parse_u64)?,
        limit: read_with(src, dir, "memory.max", parse_max)?.flatten(),
        swap_usage: read_with(src, dir, "memory.swap.current", parse_u64)?,
        swap_limit: read_with(src, dir, "memory.swap.max", parse_max)?.flatten(),
        failcnt: event("max"),
        oom_kills: event("oom_kill"),
        rss: key("anon"),
        cache: key("file"),
        inactive_file: key("inactive_file"),
        active_file: key("active_file"),
        pgfault: key("pgfault"),
        pgmajfault: key("pgmajfault"),
        stat,
    })
}

/// pids.current and pids.max: the same files on v1 and v2.
fn pids(src: &impl Source, dir: &Path) -> Result<PidsStats, Error> {
    Ok(PidsStats {
        current: read_with(src, dir, "pids.current", parse_u64)?,
        limit: read_with(src, dir, "pids.max", parse_max)?.flatten(),
    })
}

/// One entry per page size that has a usage file in `dir`, smallest first.
fn hugetlb(src: &impl Source, dir: &Path, version: Hierarchy) -> Result<Vec<HugetlbStats>, Error> {
    let usage_suffix = match version {
        Hierarchy::V1 => "usage_in_bytes",
        Hierarchy::V2 => "current",
    };
    let mut sizes: Vec<String> = src
        .names(dir)?
        .iter()
        .filter_map(|n| hugetlb_page_size(n, usage_suffix))
        .map(str::to_string)
        .collect();
    sizes.sort_by(|a, b| (page_size_bytes(a), a).cmp(&(page_size_bytes(b), b)));
    let mut out = Vec::new();
    for size in sizes {
        let file = |suffix: &str| format!("hugetlb.{size}.{suffix}");
        // Listed a moment ago; gone now only if the cgroup is being removed.
        let Some(usage) = read_with(src, dir, &file(usage_suffix), parse_u64)? else {
            continue;
        };
        let (max_usage, failcnt) = match version {
            Hierarchy::V1 => (
                read_with(src, dir, &file("max_usage_in_bytes"), parse_u64)?,
                read_with(src, dir, &file("failcnt"), parse_u64)?,
            ),
            Hierarchy::V2 => (
                None,
                read_with(src, dir, &file("events"), parse_keyed)?
                    .and_then(|e| e.get("max").copied()),
            ),
        };
        out.push(HugetlbStats {
            page_size: size,
            usage,
            max_usage,
            failcnt,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Files as a table, recording every read so tests can check that each
    /// file is read at most once.
    #[derive(Default)]
    struct Table {
        files: BTreeMap<PathBuf, String>,
        reads: RefCell<Vec<PathBuf>>,
    }

    impl Table {
        fn new(dir: &str, files: &[(&str, &str)]) -> Table {
            let mut t = Table::default();
            t.add(dir, files);
            t
        }

        fn add(&mut self, dir: &str, files: &[(&str, &str)]) {
            for (name, content) in files {
                self.files
                    .insert(Path::new(dir).join(name), content.to_string());
            }
        }

        fn assert_each_read_once(&self) {
            let mut reads = self.reads.borrow().clone();
            let n = reads.len();
            reads.sort();
            reads.dedup();
            assert_eq!(reads.len(), n, "some file was read twice");
        }
    }

    impl Source for Table {
        fn read(&self, path: &Path) -> Result<Option<String>, Error> {
            self.reads.borrow_mut().push(path.to_path_buf());
            Ok(self.files.get(path).cloned())
        }

        fn is_dir(&self, path: &Path) -> bool {
            self.files.keys().any(|p| p.parent() == Some(path))
        }

        fn names(&self, dir: &Path) -> Result<Vec<String>, Error> {
            Ok(self
                .files
                .keys()
                .filter(|p| p.parent() == Some(dir))
                .filter_map(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .collect())
        }
    }

    const P: &str = "/cg/f";

    fn p() -> &'static Path {
        Path::new(P)
    }

    // Captured from a kernel 6.x v1 cgroup (with a child, so total_* differ).
    const V1_MEMORY_STAT: &str = "cache 14004224
rss 4190208
rss_huge 0
shmem 13082624
mapped_file 10162176
dirty 24576
writeback 0
workingset_refault_anon 0
workingset_refault_file 699
swap 0
swapcached 0
pgpgin 42375
pgpgout 37933
pgfault 47935
pgmajfault 1
inactive_anon 0
active_anon 1531904
inactive_file 57344
active_file 864256
unevictable 15740928
hierarchical_memory_limit 67108864
hierarchical_memsw_limit 134217728
total_cache 15204352
total_rss 7815168
total_rss_huge 0
total_shmem 13082624
total_mapped_file 16662528
total_dirty 237568
total_writeback 0
total_workingset_refault_anon 0
total_workingset_refault_file 861
total_swap 4096
total_swapcached 0
total_pgpgin 45359
total_pgpgout 39487
total_pgfault 52892
total_pgmajfault 7
total_inactive_anon 3403776
total_active_anon 1552384
total_inactive_file 2602192
total_active_file 945474
total_unevictable 15740928
";

    // A kernel 6.1 v2 memory.stat.
    const V2_MEMORY_STAT: &str = "anon 4329472
file 1302528
kernel 602112
kernel_stack 49152
pagetables 90112
sec_pagetables 0
percpu 0
sock 0
vmalloc 0
shmem 0
zswap 0
zswapped 0
file_mapped 860160
file_dirty 0
file_writeback 0
swapcached 0
anon_thp 0
file_thp 0
shmem_thp 0
inactive_anon 4317184
active_anon 12288
inactive_file 1069056
active_file 233472
unevictable 0
slab_reclaimable 175800
slab_unreclaimable 234672
slab 410472
workingset_refault_anon 0
workingset_refault_file 0
workingset_activate_anon 0
workingset_activate_file 0
workingset_restore_anon 0
workingset_restore_file 0
workingset_nodereclaim 0
pgscan 0
pgsteal 0
pgscan_kswapd 0
pgscan_direct 0
pgsteal_kswapd 0
pgsteal_direct 0
pgfault 3366
pgmajfault 6
pgrefill 0
pgactivate 54
pgdeactivate 0
pglazyfree 0
pglazyfreed 0
zswpin 0
zswpout 0
thp_fault_alloc 0
thp_collapse_alloc 0
";

    #[test]
    fn single_numbers_parse_and_junk_is_named() {
        assert_eq!(parse_u64(p(), "4096\n").unwrap(), 4096);
        assert_eq!(parse_u64(p(), "0").unwrap(), 0);
        for bad in ["", "max", "-1", "12 34", "1.5"] {
            let err = parse_u64(p(), bad).unwrap_err();
            assert!(err.to_string().starts_with("parse /cg/f: "), "{err}");
        }
    }

    #[test]
    fn max_means_no_limit() {
        let cases: &[(&str, Option<u64>)] = &[
            ("max\n", None),
            ("67108864\n", Some(67_108_864)),
            ("0\n", Some(0)),
            // A limit above the v1 sentinel is still a limit on v2.
            ("9223372036854771712\n", Some(9_223_372_036_854_771_712)),
        ];
        for (content, want) in cases {
            assert_eq!(parse_max(p(), content).unwrap(), *want, "{content:?}");
        }
        assert!(parse_max(p(), "Max").is_err());
        assert!(parse_max(p(), "max 100000").is_err());
    }

    #[test]
    fn v1_unlimited_sentinel_is_no_limit() {
        let cases: &[(&str, Option<u64>)] = &[
            // 4 KiB pages (x86_64).
            ("9223372036854771712\n", None),
            // 64 KiB pages (arm64, ppc64le).
            ("9223372036854710272\n", None),
            ("18446744073709551615\n", None),
            ("67108864\n", Some(67_108_864)),
            ("0\n", Some(0)),
        ];
        for (content, want) in cases {
            assert_eq!(parse_v1_limit(p(), content).unwrap(), *want, "{content:?}");
        }
        assert!(parse_v1_limit(p(), "-1").is_err());
    }

    #[test]
    fn keyed_files_parse_every_line_and_reject_junk() {
        let stat = parse_keyed(p(), V1_MEMORY_STAT).unwrap();
        assert_eq!(stat.len(), 42);
        assert_eq!(stat["total_inactive_file"], 2_602_192);
        assert_eq!(stat["hierarchical_memory_limit"], 67_108_864);
        assert_eq!(parse_keyed(p(), "").unwrap(), BTreeMap::new());
        assert_eq!(
            parse_keyed(p(), "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n").unwrap()["oom_kill"],
            2
        );
        for bad in ["user", "user x", "user 1 2", "user -1"] {
            let err = parse_keyed(p(), &format!("system 1\n{bad}\n")).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("parse /cg/f: unexpected content {bad:?}")
            );
        }
    }

    #[test]
    fn per_cpu_usage_tolerates_the_trailing_space() {
        assert_eq!(
            parse_per_cpu(p(), "786559887074 844412063775 \n").unwrap(),
            vec![786_559_887_074, 844_412_063_775]
        );
        assert_eq!(parse_per_cpu(p(), "\n").unwrap(), Vec::<u64>::new());
        assert!(parse_per_cpu(p(), "1 x 3").is_err());
    }

    #[test]
    fn hugetlb_file_names_yield_page_sizes() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("hugetlb.2MB.current", "current", Some("2MB")),
            ("hugetlb.1GB.usage_in_bytes", "usage_in_bytes", Some("1GB")),
            ("hugetlb.2MB.rsvd.current", "current", None),
            ("hugetlb.2MB.max", "current", None),
            ("hugetlb..current", "current", None),
            ("memory.current", "current", None),
            ("hugetlb.2MBcurrent", "current", None),
        ];
        for (name, suffix, want) in cases {
            assert_eq!(hugetlb_page_size(name, suffix), *want, "{name}");
        }
        assert_eq!(page_size_bytes("64KB"), Some(64 << 10));
        assert_eq!(page_size_bytes("1GB"), Some(1 << 30));
        assert_eq!(page_size_bytes("2mb"), None);
    }

    #[test]
    fn working_set_is_usage_minus_inactive_file_floored_at_zero() {
        let m = |usage, inactive_file, limit| MemoryStats {
            usage,
            inactive_file,
            limit,
            ..Default::default()
        };
        let cases: &[(MemoryStats, Option<u64>, Option<u64>)] = &[
            (m(Some(1000), Some(300), Some(2000)), Some(700), Some(1300)),
            // inactive_file counted, usage read a moment earlier: floored.
            (m(Some(100), Some(300), Some(2000)), Some(0), Some(2000)),
            (m(Some(1000), None, Some(2000)), Some(1000), Some(1000)),
            // Above the limit (kernel charges in batches): available floors.
            (m(Some(3000), Some(0), Some(2000)), Some(3000), Some(0)),
            (m(Some(1000), Some(300), None), Some(700), None),
            (m(None, Some(300), Some(2000)), None, None),
        ];
        for (stats, working_set, available) in cases {
            assert_eq!(stats.working_set(), *working_set, "{stats:?}");
            assert_eq!(stats.available(), *available, "{stats:?}");
        }
    }

    fn v1_table() -> (Table, V1Dirs) {
        let mut t = Table::default();
        t.add(
            "/cg/cpu,cpuacct/pod/ctr",
            &[
                ("cpuacct.usage", "1630971950849\n"),
                ("cpuacct.usage_percpu", "786559887074 844412063775 \n"),
                ("cpuacct.stat", "user 131202\nsystem 31894\n"),
                (
                    "cpu.stat",
                    "nr_periods 120\nnr_throttled 7\nthrottled_time 356000123\n\
                     nr_bursts 0\nburst_time 0\n",
                ),
            ],
        );
        t.add(
            "/cg/memory/pod/ctr",
            &[
                ("memory.usage_in_bytes", "30000000\n"),
                ("memory.max_usage_in_bytes", "41000000\n"),
                ("memory.limit_in_bytes", "67108864\n"),
                ("memory.memsw.usage_in_bytes", "30004096\n"),
                ("memory.memsw.limit_in_bytes", "134217728\n"),
                ("memory.failcnt", "3\n"),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
                ),
                ("memory.stat", V1_MEMORY_STAT),
            ],
        );
        t.add(
            "/cg/pids/pod/ctr",
            &[("pids.current", "3\n"), ("pids.max", "32\n")],
        );
        t.add(
            "/cg/hugetlb/pod/ctr",
            &[
                ("hugetlb.2MB.usage_in_bytes", "4194304\n"),
                ("hugetlb.2MB.max_usage_in_bytes", "6291456\n"),
                ("hugetlb.2MB.failcnt", "2\n"),
                ("hugetlb.2MB.limit_in_bytes", "9223372036854771712\n"),
                ("hugetlb.2MB.rsvd.usage_in_bytes", "0\n"),
                ("hugetlb.1GB.usage_in_bytes", "0\n"),
                ("hugetlb.1GB.max_usage_in_bytes", "0\n"),
                ("hugetlb.1GB.failcnt", "0\n"),
            ],
        );
        let ctr = |c: &str| Some(PathBuf::from(format!("/cg/{c}/pod/ctr")));
        let dirs = V1Dirs {
            cpuacct: ctr("cpu,cpuacct"),
            cpu: ctr("cpu,cpuacct"),
            memory: ctr("memory"),
            pids: ctr("pids"),
            hugetlb: ctr("hugetlb"),
        };
        (t, dirs)
    }

    #[test]
    fn v1_snapshot_maps_every_file() {
        let (t, dirs) = v1_table();
        let s = read_v1(&t, &dirs).unwrap();
        t.assert_each_read_once();
        assert_eq!(
            s.cpu,
            CpuStats {
                usage_ns: Some(1_630_971_950_849),
                user_ns: Some(1_312_020_000_000),
                system_ns: Some(318_940_000_000),
                per_cpu_ns: vec![786_559_887_074, 844_412_063_775],
                nr_periods: Some(120),
                nr_throttled: Some(7),
                throttled_ns: Some(356_000_123),
            }
        );
        let m = &s.memory;
        assert_eq!(m.usage, Some(30_000_000));
        assert_eq!(m.max_usage, Some(41_000_000));
        assert_eq!(m.limit, Some(67_108_864));
        assert_eq!(m.swap_usage, Some(4096));
        assert_eq!(m.swap_limit, Some(134_217_728 - 67_108_864));
        assert_eq!(m.failcnt, Some(3));
        assert_eq!(m.oom_kills, Some(1));
        // The hierarchical totals, not the cgroup's own counters.
        assert_eq!(m.rss, Some(7_815_168));
        assert_eq!(m.cache, Some(15_204_352));
        assert_eq!(m.inactive_file, Some(2_602_192));
        assert_eq!(m.active_file, Some(945_474));
        assert_eq!(m.pgfault, Some(52_892));
        assert_eq!(m.pgmajfault, Some(7));
        assert_eq!(m.stat.len(), 42);
        assert_eq!(m.working_set(), Some(30_000_000 - 2_602_192));
        assert_eq!(
            s.pids,
            PidsStats {
                current: Some(3),
                limit: Some(32)
            }
        );
        assert_eq!(
            s.hugetlb,
            vec![
                HugetlbStats {
                    page_size: "2MB".into(),
                    usage: 4_194_304,
                    max_usage: Some(6_291_456),
                    failcnt: Some(2),
                },
                HugetlbStats {
                    page_size: "1GB".into(),
                    usage: 0,
                    max_usage: Some(0),
                    failcnt: Some(0),
                },
            ]
        );
    }

    #[test]
    fn v1_unlimited_and_unaccounted_read_as_none() {
        let (mut t, dirs) = v1_table();
        t.add(
            "/cg/memory/pod/ctr",
            &[
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                (
                    "memory.stat",
                    "cache 10\nrss 20\ninactive_file 5\npgfault 9\n",
                ),
                // Kernels before 4.13 have no oom_kill line.
                ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n"),
            ],
        );
        t.add("/cg/pids/pod/ctr", &[("pids.max", "max\n")]);
        // Swap accounting off: no memsw files.
        t.files
            .retain(|p, _| !p.to_string_lossy().contains("memsw"));
        let s = read_v1(&t, &dirs).unwrap();
        assert_eq!(s.memory.limit, None);
        assert_eq!(s.memory.swap_usage, None);
        assert_eq!(s.memory.swap_limit, None);
        assert_eq!(s.memory.oom_kills, None);
        // No total_* keys: the cgroup's own values.
        assert_eq!(s.memory.rss, Some(20));
        assert_eq!(s.memory.cache, Some(10));
        assert_eq!(s.memory.pgfault, Some(9));
        assert_eq!(s.memory.pgmajfault, None);
        assert_eq!(s.memory.available(), None);
        assert_eq!(s.pids.limit, None);
        assert_eq!(s.pids.current, Some(3));

        // Unlimited memory+swap with a memory limit: swap is unlimited.
        let (mut t, dirs) = v1_table();
        t.add(
            "/cg/memory/pod/ctr",
            &[("memory.memsw.limit_in_bytes", "9223372036854771712\n")],
        );
        assert_eq!(read_v1(&t, &dirs).unwrap().memory.swap_limit, None);
    }

    #[test]
    fn v1_missing_controllers_leave_fields_empty() {
        let (t, mut dirs) = v1_table();
        // Not mounted at all, and mounted but without this cgroup.
        dirs.hugetlb = None;
        dirs.memory = Some(PathBuf::from("/cg/memory/other"));
        let s = read_v1(&t, &dirs).unwrap();
        assert_eq!(s.memory, MemoryStats::default());
        assert!(s.hugetlb.is_empty());
        assert_eq!(s.pids.current, Some(3));
        assert_eq!(s.cpu.usage_ns, Some(1_630_971_950_849));

        // cpu and cpuacct mounted separately, cpu.stat missing.
        let mut t = Table::new(
            "/cg/cpuacct/ctr",
            &[
                ("cpuacct.usage", "5\n"),
                ("cpuacct.stat", "user 1\nsystem 2\n"),
            ],
        );
        t.add("/cg/cpu/ctr", &[("cpu.shares", "1024\n")]);
        let dirs = V1Dirs {
            cpuacct: Some(PathBuf::from("/cg/cpuacct/ctr")),
            cpu: Some(PathBuf::from("/cg/cpu/ctr")),
            ..Default::default()
        };
        let s = read_v1(&t, &dirs).unwrap();
        assert_eq!(
            s.cpu,
            CpuStats {
                usage_ns: Some(5),
                user_ns: Some(10_000_000),
                system_ns: Some(20_000_000),
                ..Default::default()
            }
        );
        assert_eq!(read_v1(&t, &V1Dirs::default()).unwrap(), Stats::default());
    }

    #[test]
    fn v1_cgroup_missing_everywhere_is_an_error() {
        let (t, _) = v1_table();
        let dirs = V1Dirs {
            memory: Some(PathBuf::from("/cg/memory/gone")),
            pids: Some(PathBuf::from("/cg/pids/gone")),
            ..Default::default()
        };
        let err = read_v1(&t, &dirs).unwrap_err();
        let Error::Open { path, errno } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(
            (path.as_path(), *errno),
            (Path::new("/cg/memory/gone"), Errno::ENOENT)
        );
    }

    #[test]
    fn v1_bad_content_is_an_error_naming_the_file() {
        let (mut t, dirs) = v1_table();
        t.add("/cg/memory/pod/ctr", &[("memory.failcnt", "lots\n")]);
        assert_eq!(
            read_v1(&t, &dirs).unwrap_err().to_string(),
            "parse /cg/memory/pod/ctr/memory.failcnt: unexpected content \"lots\""
        );
    }

    fn v2_table() -> Table {
        Table::new(
            "/cg/pod/ctr",
            &[
                (
                    "cpu.stat",
                    "usage_usec 1745637\nuser_usec 1200000\nsystem_usec 545637\n\
                     core_sched.force_idle_usec 0\nnr_periods 120\nnr_throttled 7\n\
                     throttled_usec 356000\nnr_bursts 0\nburst_usec 0\n",
                ),
                ("memory.current", "5955584\n"),
                ("memory.peak", "8388608\n"),
                ("memory.max", "67108864\n"),
                ("memory.swap.current", "0\n"),
                ("memory.swap.max", "0\n"),
                (
                    "memory.events",
                    "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n",
                ),
                (
                    "memory.events.local",
                    "low 0\nhigh 0\nmax 1\noom 0\noom_kill 0\n",
                ),
                ("memory.stat", V2_MEMORY_STAT),
                ("pids.current", "4\n"),
                ("pids.max", "max\n"),
                ("hugetlb.2MB.current", "2097152\n"),
                ("hugetlb.2MB.max", "max\n"),
                ("hugetlb.2MB.events", "max 5\n"),
                ("hugetlb.2MB.rsvd.current", "0\n"),
                ("hugetlb.1GB.current", "0\n"),
                ("hugetlb.1GB.events", "max 0\n"),
                (
                    "cgroup.controllers",
                    "cpuset cpu io memory hugetlb pids rdma misc\n",
                ),
            ],
        )
    }

    #[test]
    fn v2_snapshot_maps_every_file() {
        let t = v2_table();
        let s = read_v2(&t, Path::new("/cg/pod/ctr")).unwrap();
        t.assert_each_read_once();
        assert_eq!(
            s.cpu,
            CpuStats {
                usage_ns: Some(1_745_637_000),
                user_ns: Some(1_200_000_000),
                system_ns: Some(545_637_000),
                per_cpu_ns: vec![],
                nr_periods: Some(120),
                nr_throttled: Some(7),
                throttled_ns: Some(356_000_000),
            }
        );
        let m = &s.memory;
        assert_eq!(m.usage, Some(5_955_584));
        assert_eq!(m.max_usage, Some(8_388_608));
        assert_eq!(m.limit, Some(67_108_864));
        assert_eq!(m.swap_usage, Some(0));
        assert_eq!(m.swap_limit, Some(0));
        assert_eq!(m.failcnt, Some(12));
        assert_eq!(m.oom_kills, Some(1));
        assert_eq!(m.rss, Some(4_329_472));
        assert_eq!(m.cache, Some(1_302_528));
        assert_eq!(m.inactive_file, Some(1_069_056));
        assert_eq!(m.active_file, Some(233_472));
        assert_eq!(m.pgfault, Some(3366));
        assert_eq!(m.pgmajfault, Some(6));
        assert_eq!(m.stat.len(), 51);
        assert_eq!(m.working_set(), Some(5_955_584 - 1_069_056));
        assert_eq!(m.available(), Some(67_108_864 - (5_955_584 - 1_069_056)));
        assert_eq!(
            s.pids,
            PidsStats {
                current: Some(4),
                limit: None
            }
        );
        assert_eq!(
            s.hugetlb,
            vec![
                HugetlbStats {
                    page_size: "2MB".into(),
                    usage: 2_097_152,
                    max_usage: None,
                    failcnt: Some(5),
                },
                HugetlbStats {
                    page_size: "1GB".into(),
                    usage: 0,
                    max_usage: None,
                    failcnt: Some(0),
                },
            ]
        );
    }

    #[test]
    fn v2_without_controllers_has_only_core_cpu_time() {
        // A cgroup with no controller enabled (e.g. on the hybrid mount):
        // cpu.stat is a core file with just the usage keys.
        let t = Table::new(
            "/cg/x",
            &[
                ("cpu.stat", "usage_usec 10\nuser_usec 6\nsystem_usec 4\n"),
                ("cgroup.procs", "1\n"),
                ("memory.max", "max\n"),
            ],
        );
        let s = read_v2(&t, Path::new("/cg/x")).unwrap();
        assert_eq!(
            s.cpu,
            CpuStats {
                usage_ns: Some(10_000),
                user_ns: Some(6_000),
                system_ns: Some(4_000),
                ..Default::default()
            }
        );
        // memory.max alone (unlimited) and nothing else.
        assert_eq!(s.memory, MemoryStats::default());
        assert_eq!(s.pids, PidsStats::default());
        assert!(s.hugetlb.is_empty());
        // Kernels before 5.19 have no memory.peak.
        let mut t = v2_table();
        t.files.remove(Path::new("/cg/pod/ctr/memory.peak"));
        assert_eq!(
            read_v2(&t, Path::new("/cg/pod/ctr"))
                .unwrap()
                .memory
                .max_usage,
            None
        );
    }

    #[test]
    fn v2_missing_cgroup_and_bad_content_are_errors() {
        let t = v2_table();
        let err = read_v2(&t, Path::new("/cg/pod/gone")).unwrap_err();
        let Error::Open { path, errno } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(
            (path.as_path(), *errno),
            (Path::new("/cg/pod/gone"), Errno::ENOENT)
        );
        let mut t = v2_table();
        t.add("/cg/pod/ctr", &[("memory.max", "unlimited\n")]);
        assert_eq!(
            read_v2(&t, Path::new("/cg/pod/ctr"))
                .unwrap_err()
                .to_string(),
            "parse /cg/pod/ctr/memory.max: unexpected content \"unlimited\""
        );
    }

    /// Through `Manager` and the real file system (a temporary tree laid out
    /// like cgroupfs): controller directories come from `path_for`, missing
    /// files are None, and a file that exists but cannot be read is an error.
    #[test]
    fn manager_stats_reads_the_controller_directories() {
        use crate::{Hierarchy, Manager};
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let put = |rel: &str, content: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        };
        put("cpu,cpuacct/pod/ctr/cpuacct.usage", "42\n");
        put("memory/pod/ctr/memory.usage_in_bytes", "8192\n");
        put(
            "memory/pod/ctr/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        put("pids/pod/ctr/pids.current", "1\n");
        put("pids/pod/ctr/pids.max", "10\n");
        std::fs::create_dir_all(root.join("freezer/pod/ctr")).unwrap();
        let m = Manager::with_root(root, Hierarchy::V1, Some("/pod/ctr"), "ctr").unwrap();
        let s = m.stats().unwrap();
        assert_eq!(s.cpu.usage_ns, Some(42));
        assert_eq!(s.cpu.user_ns, None);
        assert_eq!(s.memory.usage, Some(8192));
        assert_eq!(s.memory.limit, None);
        assert_eq!(s.pids.current, Some(1));
        assert_eq!(s.pids.limit, Some(10));

        // A directory where a file should be: present but unreadable.
        std::fs::create_dir(root.join("memory/pod/ctr/memory.stat")).unwrap();
        let err = m.stats().unwrap_err().to_string();
        assert!(err.starts_with("read "), "{err}");
        assert!(err.contains("memory/pod/ctr/memory.stat: EISDIR"), "{err}");

        // A manager derived from another reads its own cgroup through the
        // same hierarchies.
        put("cpu,cpuacct/pod/other/cpuacct.usage", "7\n");
        let other = m.at(Some("/pod/other"), "other").unwrap();
        assert_eq!(other.stats().unwrap().cpu.usage_ns, Some(7));
        assert_eq!(
            other.path_for("cpuacct"),
            Some(root.join("cpu,cpuacct/pod/other"))
        );

        let gone = Manager::with_root(root, Hierarchy::V1, Some("/pod/gone"), "gone").unwrap();
        assert!(matches!(
            gone.stats(),
            Err(Error::Open {
                errno: Errno::ENOENT,
                ..
            })
        ));

        let v2 = root.join("unified");
        put("unified/pod/ctr/memory.current", "4096\n");
        put("unified/pod/ctr/memory.max", "max\n");
        put("unified/pod/ctr/hugetlb.2MB.current", "0\n");
        let m = Manager::with_root(&v2, Hierarchy::V2, Some("/pod/ctr"), "ctr").unwrap();
        let s = m.stats().unwrap();
        assert_eq!(s.memory.usage, Some(4096));
        assert_eq!(s.memory.limit, None);
        assert_eq!(s.cpu, CpuStats::default());
        assert_eq!(s.hugetlb.len(), 1);
    }
}
