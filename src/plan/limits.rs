//! Resource limits (F-LIMITS): the bottle's `limits` over the defaults, CPUs capped at what
//! the host has. Every bottle gets pids, memory and CPU limits on its agent and its bundle,
//! so a fork bomb or a memory hog in one bottle stays inside it (decision 0038).

use crate::manifest::{LimitSet, Limits};

use super::HostEnv;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// The agent's memory by default: a Node CLI plus the builds and tests it runs.
pub(crate) const AGENT_MEMORY: u64 = 4 * GIB;
/// The agent's process and thread count by default: far above a busy session, far below a
/// host's pid space (often 32768).
pub(crate) const AGENT_PIDS: u32 = 2048;
/// The bundle's memory by default: egress buffers request bodies (32 MiB each at most).
pub(crate) const BUNDLE_MEMORY: u64 = GIB;
/// The bundle's pids by default: above egress's blocking pool (512 threads) and the gates.
pub(crate) const BUNDLE_PIDS: u32 = 1024;
/// The bundle's CPUs by default (hundredths).
pub(crate) const BUNDLE_CPUS_CENTI: u32 = 100;

/// The agent's CPUs by default (hundredths): every CPU of the host but one, at least one, so
/// a bottle spinning every core still leaves the host one.
pub(crate) fn agent_cpus_default(host_cpus: u32) -> u32 {
    host_cpus.saturating_sub(1).max(1) * 100
}

/// The effective limits of one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ContainerLimits {
    /// CPUs in hundredths.
    pub(crate) cpus_centi: u32,
    /// Memory in bytes; swap included (no swap beyond it).
    pub memory_bytes: u64,
    pub pids: u32,
    /// Which fields the bottle set (the rest are defaults).
    pub from_bottle: LimitSet,
    /// The CPUs the bottle asked for when that was more than the host has (then
    /// `cpus_centi` is the host's count: the engine refuses more).
    pub(crate) cpus_capped_from: Option<u32>,
}

/// The agent's and the bundle's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LimitsPlan {
    pub agent: ContainerLimits,
    pub bundle: ContainerLimits,
}

impl LimitsPlan {
    /// The bottle's limits over the defaults for `host`.
    pub(crate) fn resolve(declared: &Limits, host: &HostEnv) -> LimitsPlan {
        let host_cpus = host.cpus.max(1);
        let one = |set: LimitSet, cpus: u32, memory: u64, pids: u32| {
            let asked = set.cpus_centi.unwrap_or(cpus);
            let cap = host_cpus.saturating_mul(100);
            ContainerLimits {
                cpus_centi: asked.min(cap),
                memory_bytes: set.memory_bytes.unwrap_or(memory),
                pids: set.pids.unwrap_or(pids),
                from_bottle: set,
                cpus_capped_from: (asked > cap).then_some(asked),
            }
        };
        LimitsPlan {
            agent: one(
                declared.agent,
                agent_cpus_default(host_cpus),
                AGENT_MEMORY,
                AGENT_PIDS,
            ),
            bundle: one(
                declared.bundle,
                BUNDLE_CPUS_CENTI,
                BUNDLE_MEMORY,
                BUNDLE_PIDS,
            ),
        }
    }
}

impl ContainerLimits {
    /// CPUs as Docker takes them (`1.5`).
    pub(crate) fn cpus(&self) -> f64 {
        f64::from(self.cpus_centi) / 100.0
    }

    /// Whole vCPUs for a VM: rounded up, at least one.
    pub(crate) fn vcpus(&self) -> u32 {
        self.cpus_centi.div_ceil(100).max(1)
    }

    /// Memory in MiB for a VM, rounded up.
    pub(crate) fn memory_mib(&self) -> u64 {
        self.memory_bytes.div_ceil(MIB)
    }

    /// `cpus 1.5, memory 4g, pids 2048`, each value the bottle set marked `(bottle)`.
    /// `pids` is left out when the backend cannot apply it (`pids_applied`).
    pub(crate) fn describe(&self, pids_applied: bool) -> String {
        let mark = |set: bool| if set { " (bottle)" } else { "" };
        let mut cpus = format!(
            "cpus {}{}",
            show_cpus(self.cpus_centi),
            mark(self.from_bottle.cpus_centi.is_some())
        );
        if let Some(asked) = self.cpus_capped_from {
            cpus = format!(
                "cpus {} (the bottle asks {}; this host has {})",
                show_cpus(self.cpus_centi),
                show_cpus(asked),
                show_cpus(self.cpus_centi)
            );
        }
        let pids = if pids_applied {
            format!(
                "pids {}{}",
                self.pids,
                mark(self.from_bottle.pids.is_some())
            )
        } else {
            "pids not limited (smolvm has no such limit; the VM's memory bounds them)".to_string()
        };
        format!(
            "{cpus}, memory {}{}, {pids}",
            show_bytes(self.memory_bytes),
            mark(self.from_bottle.memory_bytes.is_some())
        )
    }

    /// The limits as JSON for `info --json`.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "cpus": self.cpus(),
            "memory_bytes": self.memory_bytes,
            "pids": self.pids,
            "from_bottle": {
                "cpus": self.from_bottle.cpus_centi.is_some(),
                "memory": self.from_bottle.memory_bytes.is_some(),
                "pids": self.from_bottle.pids.is_some(),
            },
        })
    }
}

/// `1`, `1.5`, `0.25`.
pub(crate) fn show_cpus(centi: u32) -> String {
    let whole = centi / 100;
    match centi % 100 {
        0 => whole.to_string(),
        f if f % 10 == 0 => format!("{whole}.{}", f / 10),
        f => format!("{whole}.{f:02}"),
    }
}

/// `4g`, `512m`, `1536k`: the largest unit that divides the value (the manifest's form).
pub(crate) fn show_bytes(b: u64) -> String {
    if b % GIB == 0 {
        format!("{}g", b / GIB)
    } else if b % MIB == 0 {
        format!("{}m", b / MIB)
    } else if b % 1024 == 0 {
        format!("{}k", b / 1024)
    } else {
        format!("{b} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testutil::host;

    fn with_cpus(n: u32) -> HostEnv {
        let mut h = host();
        h.cpus = n;
        h
    }

    #[test]
    fn defaults_leave_the_host_a_cpu_and_bound_memory_and_pids() {
        let p = LimitsPlan::resolve(&Limits::default(), &with_cpus(8));
        assert_eq!(p.agent.cpus_centi, 700);
        assert_eq!(p.agent.memory_bytes, AGENT_MEMORY);
        assert_eq!(p.agent.pids, AGENT_PIDS);
        assert_eq!(p.bundle.cpus_centi, 100);
        assert_eq!(p.bundle.memory_bytes, BUNDLE_MEMORY);
        assert_eq!(p.bundle.pids, BUNDLE_PIDS);
        // One or two CPUs: the agent still gets one.
        assert_eq!(
            LimitsPlan::resolve(&Limits::default(), &with_cpus(2))
                .agent
                .cpus_centi,
            100
        );
        assert_eq!(
            LimitsPlan::resolve(&Limits::default(), &with_cpus(1))
                .agent
                .cpus_centi,
            100
        );
        assert_eq!(
            p.agent.describe(true),
            "cpus 7, memory 4g, pids 2048",
            "no value is marked as the bottle's"
        );
    }

    #[test]
    fn bottle_values_win_and_are_marked_and_cpus_are_capped_at_the_host() {
        let declared = Limits {
            agent: LimitSet {
                cpus_centi: Some(1600),
                memory_bytes: Some(512 * MIB),
                pids: None,
            },
            bundle: LimitSet {
                cpus_centi: Some(50),
                memory_bytes: None,
                pids: Some(64),
            },
        };
        let p = LimitsPlan::resolve(&declared, &with_cpus(4));
        assert_eq!(p.agent.cpus_centi, 400);
        assert_eq!(p.agent.cpus_capped_from, Some(1600));
        assert_eq!(p.agent.memory_bytes, 512 * MIB);
        assert_eq!(p.agent.pids, AGENT_PIDS);
        assert_eq!(
            p.agent.describe(true),
            "cpus 4 (the bottle asks 16; this host has 4), memory 512m (bottle), pids 2048"
        );
        assert_eq!(
            p.bundle.describe(true),
            "cpus 0.5 (bottle), memory 1g, pids 64 (bottle)"
        );
        assert!(p.agent.describe(false).contains("pids not limited"));
    }

    #[test]
    fn vm_units_round_up() {
        let mut c = LimitsPlan::resolve(&Limits::default(), &with_cpus(4)).agent;
        c.cpus_centi = 150;
        c.memory_bytes = 1536 * 1024;
        assert_eq!(c.vcpus(), 2);
        assert_eq!(c.memory_mib(), 2);
        c.cpus_centi = 25;
        assert_eq!(c.vcpus(), 1);
        assert_eq!(show_cpus(25), "0.25");
        assert_eq!(show_cpus(150), "1.5");
        assert_eq!(show_bytes(1536 * 1024), "1536k");
        assert_eq!(show_bytes(3 * GIB), "3g");
    }
}
