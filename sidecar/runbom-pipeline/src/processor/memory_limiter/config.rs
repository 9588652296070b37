//! The `memory_limiter` processor's section.

use std::time::Duration;

use serde::{Deserialize, de::IgnoredAny};

use super::MemoryLimit;
use crate::component::{ProcessorConfig, SpecContext};
use crate::config::{ConfigError, Section, duration};
use crate::{ProcessorSpec, processor::ProcessorError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryLimiterConfig {
    #[serde(default = "default_check_interval", with = "duration")]
    pub check_interval: Duration,
    /// Refuse data above this resident size, in MiB.
    pub limit_mib: Option<u64>,
    /// Accepted for compatibility, and ignored: the limit applies as a hard limit.
    #[serde(default, rename = "spike_limit_mib")]
    _spike_limit_mib: IgnoredAny,
    /// Refuse data above this share of the machine's memory.
    pub limit_percentage: Option<u64>,
    #[serde(default, rename = "spike_limit_percentage")]
    _spike_limit_percentage: IgnoredAny,
}

fn default_check_interval() -> Duration {
    Duration::from_secs(1)
}

impl ProcessorConfig for MemoryLimiterConfig {
    fn check(&self, at: &Section) -> Result<(), ConfigError> {
        if self.limit_mib.is_none() && self.limit_percentage.is_none() {
            return Err(at.error("set `limit_mib` or `limit_percentage`"));
        }
        Ok(())
    }

    fn spec(&self, _ctx: &SpecContext) -> Result<ProcessorSpec, ProcessorError> {
        Ok(ProcessorSpec::MemoryLimiter(MemoryLimit {
            check_interval: self.check_interval,
            limit_bytes: limit_bytes(self.limit_mib, self.limit_percentage),
        }))
    }
}

fn limit_bytes(limit_mib: Option<u64>, percentage: Option<u64>) -> u64 {
    if let Some(mib) = limit_mib {
        return mib << 20;
    }
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    total / 100 * percentage.unwrap_or(100)
}
