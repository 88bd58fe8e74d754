//! `usage_nano_cores`: CPU *rate*, in billionths of a core, derived from
//! two cumulative cgroup samples. The cgroup only counts CPU time, so the
//! rate needs the previous sample of the same container or pod: kept here,
//! per ID, and replaced by every new one (as containerd keeps one per
//! container in its store).
//!
//! The first sample of an ID has nothing to compare with and reports no
//! rate (the field is left unset, as containerd does, so kubelet computes
//! one from its own cache instead of seeing a false 0).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Whether a sample is of a container or of a pod (their IDs never
/// collide, but the two kinds are kept apart anyway, as containerd does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A container's cgroup.
    Container,
    /// A pod's cgroup.
    Pod,
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    usage_ns: u64,
    at: Instant,
}

/// The previous CPU sample of every container and pod that was asked about.
#[derive(Debug, Default)]
pub struct CpuSampler {
    last: Mutex<HashMap<(Subject, String), Sample>>,
}

impl CpuSampler {
    /// Records `usage_ns` (cumulative CPU time) read at `at` for `id`, and
    /// returns the rate since the previous sample: None on the first one,
    /// when no time passed, or when the counter went backwards (a cgroup
    /// made anew), which starts over from this sample.
    pub fn nano_cores(
        &self,
        subject: Subject,
        id: &str,
        usage_ns: u64,
        at: Instant,
    ) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let key = (subject, id.to_string());
        let now = Sample { usage_ns, at };
        let Some(prev) = last.get(&key).copied() else {
            last.insert(key, now);
            return None;
        };
        let Some(dt) = at.checked_duration_since(prev.at).filter(|d| !d.is_zero()) else {
            // A sample taken concurrently, before the stored one: keep the
            // newer one.
            return None;
        };
        last.insert(key, now);
        rate(usage_ns.checked_sub(prev.usage_ns)?, dt)
    }

    /// Keeps only the samples of IDs `keep` accepts.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.retain(|(_, id), _| keep(id));
    }

    /// How many samples are kept (for tests and debugging).
    pub fn len(&self) -> usize {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no sample is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// CPU time `used_ns` spent over the wall-clock interval `over`, as
/// nanocores: used / over × 10⁹ (one fully busy core is 10⁹). None for an
/// empty interval; saturates rather than overflows.
pub fn rate(used_ns: u64, over: Duration) -> Option<u64> {
    let over_ns = over.as_nanos();
    if over_ns == 0 {
        return None;
    }
    let cores = u128::from(used_ns) * 1_000_000_000 / over_ns;
    Some(u64::try_from(cores).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_cpu_time_over_wall_time_in_nanocores() {
        // One full core for a second.
        assert_eq!(
            rate(1_000_000_000, Duration::from_secs(1)),
            Some(1_000_000_000)
        );
        // Half a core over 10 s.
        assert_eq!(
            rate(5_000_000_000, Duration::from_secs(10)),
            Some(500_000_000)
        );
        // Two cores for 250 ms.
        assert_eq!(
            rate(500_000_000, Duration::from_millis(250)),
            Some(2_000_000_000)
        );
        // Idle.
        assert_eq!(rate(0, Duration::from_secs(1)), Some(0));
        assert_eq!(rate(1, Duration::ZERO), None);
        // Huge values do not overflow.
        assert_eq!(rate(u64::MAX, Duration::from_nanos(1)), Some(u64::MAX));
    }

    #[test]
    fn first_sample_has_no_rate_and_the_second_does() {
        let s = CpuSampler::default();
        let t0 = Instant::now();
        assert_eq!(s.nano_cores(Subject::Container, "c", 1_000, t0), None);
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(
            s.nano_cores(Subject::Container, "c", 1_000 + 250_000_000, t1),
            Some(500_000_000)
        );
        // The rate is over the latest interval only.
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(
            s.nano_cores(Subject::Container, "c", 1_000 + 250_000_000, t2),
            Some(0)
        );
    }

    #[test]
    fn containers_and_pods_are_sampled_apart() {
        let s = CpuSampler::default();
        let t0 = Instant::now();
        assert_eq!(s.nano_cores(Subject::Container, "x", 0, t0), None);
        assert_eq!(
            s.nano_cores(Subject::Pod, "x", 0, t0 + Duration::from_secs(1)),
            None
        );
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn a_counter_that_goes_backwards_starts_over() {
        let s = CpuSampler::default();
        let t0 = Instant::now();
        s.nano_cores(Subject::Container, "c", 5_000, t0);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(s.nano_cores(Subject::Container, "c", 10, t1), None);
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(
            s.nano_cores(Subject::Container, "c", 10 + 1_000_000_000, t2),
            Some(1_000_000_000)
        );
    }

    #[test]
    fn an_older_concurrent_sample_does_not_replace_a_newer_one() {
        let s = CpuSampler::default();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        s.nano_cores(Subject::Container, "c", 100, t1);
        assert_eq!(s.nano_cores(Subject::Container, "c", 50, t0), None);
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(
            s.nano_cores(Subject::Container, "c", 100 + 1_000_000_000, t2),
            Some(1_000_000_000)
        );
    }

    #[test]
    fn retain_forgets_removed_ids() {
        let s = CpuSampler::default();
        let t0 = Instant::now();
        s.nano_cores(Subject::Container, "keep", 0, t0);
        s.nano_cores(Subject::Container, "gone", 0, t0);
        s.nano_cores(Subject::Pod, "gone-pod", 0, t0);
        s.retain(|id| id == "keep");
        assert_eq!(s.len(), 1);
        assert!(!s.is_empty());
    }
}
