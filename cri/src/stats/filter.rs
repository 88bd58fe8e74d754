//! Which containers and pods a ListContainerStats / ListPodSandboxStats
//! filter selects: an ID (or ID prefix, as crictl sends), a pod ID (or
//! prefix) for containers, and a label selector every key of which must
//! be present with the same value.

use std::collections::HashMap;

use k8s_cri::v1 as cri;

use crate::container::{ContainerRecord, Phase as ContainerPhase};
use crate::sandbox::SandboxRecord;

/// Whether `labels` has every key of `selector` with the same value (an
/// empty selector selects everything).
pub fn labels_match(selector: &HashMap<String, String>, labels: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether container `rec` has stats to list at all: every container in
/// the daemon's store (running or not, as containerd lists) except ones
/// still being created or being removed.
pub fn container_listed(rec: &ContainerRecord) -> bool {
    !matches!(
        rec.phase,
        ContainerPhase::Creating | ContainerPhase::Removing
    )
}

/// Whether container `rec` is listed by ListContainerStats under `f`.
pub fn container_matches(rec: &ContainerRecord, f: &cri::ContainerStatsFilter) -> bool {
    container_listed(rec)
        && rec.id.starts_with(&f.id)
        && rec.sandbox_id.starts_with(&f.pod_sandbox_id)
        && labels_match(&f.label_selector, &rec.config.labels)
}

/// Whether pod `rec` passes `f` (whether it has stats to give is up to
/// the caller: only Ready pods do).
pub fn pod_matches(rec: &SandboxRecord, f: &cri::PodSandboxStatsFilter) -> bool {
    rec.id.starts_with(&f.id) && labels_match(&f.label_selector, &rec.config.labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_selector_label_must_match() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        assert!(labels_match(&labels(&[]), &l));
        assert!(labels_match(&labels(&[("app", "web")]), &l));
        assert!(labels_match(
            &labels(&[("app", "web"), ("tier", "front")]),
            &l
        ));
        assert!(!labels_match(&labels(&[("app", "db")]), &l));
        assert!(!labels_match(&labels(&[("app", "web"), ("zone", "a")]), &l));
        assert!(!labels_match(&labels(&[("app", "")]), &l));
        assert!(labels_match(&labels(&[]), &labels(&[])));
        assert!(!labels_match(&labels(&[("app", "web")]), &labels(&[])));
    }
}
