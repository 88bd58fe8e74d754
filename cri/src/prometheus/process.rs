//! The standard `process_*` metrics every Prometheus client exposes (the
//! Go client does for containerd): resident memory, CPU time, threads,
//! open file descriptors and start time, read from /proc/self.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The process gauges, refreshed by [`ProcessMetrics::sample`].
pub struct ProcessMetrics {
    rss: Gauge,
    threads: Gauge,
    fds: Gauge,
    cpu: Gauge<f64, AtomicU64>,
}

impl ProcessMetrics {
    /// Registers the process metrics; the start time is constant.
    pub fn register(r: &mut Registry) -> ProcessMetrics {
        let m = ProcessMetrics {
            rss: Gauge::default(),
            threads: Gauge::default(),
            fds: Gauge::default(),
            cpu: Gauge::default(),
        };
        r.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            m.rss.clone(),
        );
        r.register("process_threads", "Number of OS threads", m.threads.clone());
        r.register(
            "process_open_fds",
            "Number of open file descriptors",
            m.fds.clone(),
        );
        // A gauge holding a monotonic total: prometheus-client's counters
        // only go up by increments, and this is read whole from /proc.
        r.register(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds (a running total)",
            m.cpu.clone(),
        );
        if let Some(start) = start_time() {
            r.register(
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                ConstCounter::new(start),
            );
        }
        m
    }

    /// Reads the current values from /proc/self (a value that cannot be
    /// read keeps its last one).
    pub fn sample(&self) {
        if let Some((rss_pages, threads, cpu_ticks)) = stat() {
            self.rss.set(rss_pages.saturating_mul(page_size()) as i64);
            self.threads.set(threads as i64);
            self.cpu.set(cpu_ticks as f64 / ticks_per_second());
        }
        if let Ok(d) = std::fs::read_dir("/proc/self/fd") {
            self.fds.set(d.count() as i64);
        }
    }
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |v| v as u64)
}

fn ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |v| v as f64)
}

/// /proc/self/stat's fields after the command: (rss pages, threads,
/// utime + stime ticks).
fn stat() -> Option<(u64, u64, u64)> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat(&s).map(|f| (f.rss, f.threads, f.utime + f.stime))
}

struct StatFields {
    utime: u64,
    stime: u64,
    threads: u64,
    starttime: u64,
    rss: u64,
}

/// Parses /proc/PID/stat (the command may hold spaces and parentheses:
/// fields start after the last `)`).
fn parse_stat(s: &str) -> Option<StatFields> {
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): field N is f[N - 3].
    let n = |i: usize| f.get(i - 3)?.parse::<u64>().ok();
    Some(StatFields {
        utime: n(14)?,
        stime: n(15)?,
        threads: n(20)?,
        starttime: n(22)?,
        rss: n(24)?,
    })
}

/// The process's start time in seconds since the epoch (boot time plus
/// its start in ticks since boot).
fn start_time() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let start_ticks = parse_stat(&s)?.starttime as f64;
    let btime = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
    Some(btime + start_ticks / ticks_per_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_found_after_an_awkward_command() {
        let line = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 500 0 0 0 \
                    7 3 0 0 20 0 5 0 12345 100000 321 18446744073709551615";
        let f = parse_stat(line).expect("parsed");
        assert_eq!(
            (f.utime, f.stime, f.threads, f.starttime, f.rss),
            (7, 3, 5, 12345, 321)
        );
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn this_process_is_sampled() {
        let mut r = Registry::default();
        let m = ProcessMetrics::register(&mut r);
        m.sample();
        assert!(m.rss.get() > 0);
        assert!(m.threads.get() >= 1);
        assert!(m.fds.get() >= 3);
    }
}
