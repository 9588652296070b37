//! The `memory_limiter` processor's section.

use std::time::Duration;

use serde::Deserialize;

use super::MemoryLimit;
use crate::component::{ProcessorConfig, SpecContext};
use crate::config::{ConfigError, Section, duration};
use crate::{ProcessorSpec, processor::ProcessorError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryLimiterConfig {
    #[serde(default = "default_check_interval", with = "duration")]
    pub check_interval: Duration,
    /// The hard limit on resident size, in MiB.
    pub limit_mib: Option<u64>,
    /// The headroom kept below the hard limit for a spike between two checks (default 20 % of
    /// the limit): data is refused above `limit_mib - spike_limit_mib`, the soft limit.
    pub spike_limit_mib: Option<u64>,
    /// The hard limit as a share of the machine's memory.
    pub limit_percentage: Option<u64>,
    /// The spike headroom as a share of the machine's memory (with `limit_percentage`).
    pub spike_limit_percentage: Option<u64>,
}

fn default_check_interval() -> Duration {
    Duration::from_secs(1)
}

impl ProcessorConfig for MemoryLimiterConfig {
    fn check(&self, at: &Section) -> Result<(), ConfigError> {
        match (self.limit_mib, self.limit_percentage) {
            (None, None) => return Err(at.error("set `limit_mib` or `limit_percentage`")),
            (Some(_), Some(_)) => {
                return Err(at.error("set `limit_mib` or `limit_percentage`, not both"));
            }
            (Some(0), _) => return Err(at.at("limit_mib").error("must be at least 1")),
            (_, Some(p)) if p == 0 || p > 100 => {
                return Err(at.at("limit_percentage").error("must be from 1 to 100"));
            }
            _ => {}
        }
        if self.check_interval.is_zero() {
            return Err(at.at("check_interval").error("must be more than 0"));
        }
        if let (Some(spike), Some(limit)) = (self.spike_limit_mib, self.limit_mib)
            && spike >= limit
        {
            return Err(at
                .at("spike_limit_mib")
                .error(format!("must be less than limit_mib ({limit})")));
        }
        if let (Some(spike), Some(limit)) = (self.spike_limit_percentage, self.limit_percentage)
            && spike >= limit
        {
            return Err(at
                .at("spike_limit_percentage")
                .error(format!("must be less than limit_percentage ({limit})")));
        }
        if self.spike_limit_mib.is_some() && self.limit_mib.is_none() {
            return Err(at
                .at("spike_limit_mib")
                .error("goes with limit_mib (use spike_limit_percentage with limit_percentage)"));
        }
        if self.spike_limit_percentage.is_some() && self.limit_percentage.is_none() {
            return Err(at
                .at("spike_limit_percentage")
                .error("goes with limit_percentage (use spike_limit_mib with limit_mib)"));
        }
        Ok(())
    }

    fn spec(&self, _ctx: &SpecContext) -> Result<ProcessorSpec, ProcessorError> {
        let (limit, spike) = if let Some(mib) = self.limit_mib {
            (mib << 20, self.spike_limit_mib.map(|s| s << 20))
        } else {
            let total = total_memory();
            let share = |p: u64| total / 100 * p;
            (
                share(self.limit_percentage.unwrap_or(100)),
                self.spike_limit_percentage.map(share),
            )
        };
        // As the Collector: 20 % of the limit unless set.
        let spike = spike.unwrap_or(limit / 5).min(limit);
        Ok(ProcessorSpec::MemoryLimiter(MemoryLimit {
            check_interval: self.check_interval,
            limit_bytes: limit,
            soft_limit_bytes: limit - spike,
        }))
    }
}

/// The machine's memory (`MemTotal`), in bytes; 0 when unknown.
fn total_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

#[cfg(test)]
mod tests {
    use crate::{
        ProcessorSpec,
        component::SpecContext,
        config::{Config, assert_refused},
    };

    fn config(section: &str) -> String {
        format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc: {{}}\nprocessors:\n  memory_limiter: {section}\n\
             exporters:\n  nop: {{}}\nservice:\n  pipelines:\n    logs: {{ receivers: [otlp], processors: [memory_limiter], exporters: [nop] }}\n"
        )
    }

    /// The limit and the soft limit, in MiB.
    fn limits(section: &str) -> (u64, u64) {
        let (hard, soft) = limit_bytes(section);
        (hard >> 20, soft >> 20)
    }

    fn limit_bytes(section: &str) -> (u64, u64) {
        let c = Config::parse(&config(section), "c.yaml").expect("valid");
        let ctx = SpecContext {
            name: "memory_limiter",
            kernel_source: None,
            own_endpoints: &[],
            host_name: "h",
        };
        match c.processors["memory_limiter"].spec(&ctx) {
            Ok(ProcessorSpec::MemoryLimiter(l)) => (l.limit_bytes, l.soft_limit_bytes),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_soft_limit_is_the_limit_less_the_spike_as_in_the_collector() {
        assert_eq!(
            limits("{ limit_mib: 1000 }"),
            (1000, 800),
            "spike: 20 % by default"
        );
        assert_eq!(
            limits("{ limit_mib: 1000, spike_limit_mib: 100 }"),
            (1000, 900)
        );
        // Shares of the machine's memory, in bytes (compared in MiB, each floored on its own,
        // they can be a MiB off on some machines).
        let share = super::total_memory() / 100;
        assert_eq!(
            limit_bytes("{ limit_percentage: 50, spike_limit_percentage: 10 }"),
            (share * 50, share * 40)
        );
    }

    #[test]
    fn inconsistent_limits_are_refused() {
        for (section, want) in [
            (
                "{ check_interval: 1s }",
                "set `limit_mib` or `limit_percentage`",
            ),
            ("{ limit_mib: 100, limit_percentage: 50 }", "not both"),
            (
                "{ limit_mib: 100, spike_limit_mib: 100 }",
                "must be less than limit_mib (100)",
            ),
            ("{ limit_percentage: 101 }", "must be from 1 to 100"),
            (
                "{ limit_percentage: 50, spike_limit_percentage: 60 }",
                "must be less than limit_percentage (50)",
            ),
            (
                "{ limit_percentage: 50, spike_limit_mib: 10 }",
                "goes with limit_mib",
            ),
            (
                "{ limit_mib: 0 }",
                "`processors.memory_limiter.limit_mib`: must be at least 1",
            ),
        ] {
            assert_refused(&config(section), want);
        }
    }
}
