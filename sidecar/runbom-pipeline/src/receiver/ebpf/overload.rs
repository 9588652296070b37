//! The `ebpf` receiver's `overload` section: when the ring reader is woken, and which events the
//! kernel sheds first when the ring fills (`runbom_kernel::overload`).

use std::{collections::BTreeMap, time::Duration};

use runbom_kernel::overload::{Overload, SHEDDABLE, slot_of};
use serde::Deserialize;

use crate::config::section::{ConfigError, Section};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OverloadSettings {
    /// The reader drains the ring at least this often (1ms to 1s): the longest an event waits
    /// in the ring when no burst wakes the reader.
    #[serde(with = "crate::config::duration")]
    pub drain_interval: Duration,
    /// Unread bytes at each multiple of which the kernel wakes the reader at once (a power of
    /// two below the ring's size; absent: 1/16 of the ring; 0: wake on every event, an
    /// interrupt each).
    pub wakeup_bytes: Option<u32>,
    /// Ring fill, in percent, at which each kind of event is shed (0: never). Kinds left out
    /// keep their default. `process.exec`, fork and `process.exit` are never shed.
    pub shed_at_percent: BTreeMap<String, u8>,
}

impl Default for OverloadSettings {
    fn default() -> Self {
        let o = Overload::default();
        Self {
            drain_interval: o.drain_interval,
            wakeup_bytes: o.wakeup_bytes,
            shed_at_percent: SHEDDABLE
                .iter()
                .map(|(name, slot)| ((*name).to_string(), o.shed_at_percent[*slot]))
                .collect(),
        }
    }
}

impl OverloadSettings {
    pub fn check(&self, at: &Section, ring_bytes: u32) -> Result<(), ConfigError> {
        let d = self.drain_interval;
        if d < Duration::from_millis(1) || d > Duration::from_secs(1) {
            return Err(at
                .at("drain_interval")
                .error(format!("{d:?} is outside 1ms to 1s")));
        }
        if let Some(w) = self.wakeup_bytes
            && w != 0
            && (!w.is_power_of_two() || w >= ring_bytes)
        {
            return Err(at.at("wakeup_bytes").error(format!(
                "{w} must be 0 or a power of two below ring_buffer_bytes ({ring_bytes})"
            )));
        }
        let names: Vec<&str> = SHEDDABLE.iter().map(|(n, _)| *n).collect();
        for (name, percent) in &self.shed_at_percent {
            let field = at.at(&format!("shed_at_percent.{name}"));
            if slot_of(name).is_none() {
                let why = if name.starts_with("process.") {
                    "the process tree is never shed".to_string()
                } else {
                    format!(
                        "not a kind of event that can be shed ({})",
                        names.join(", ")
                    )
                };
                return Err(field.error(why));
            }
            if *percent > 100 {
                return Err(field.error(format!("{percent} is above 100")));
            }
        }
        Ok(())
    }

    /// The kernel side's settings: the defaults with what this section sets.
    #[must_use]
    pub fn overload(&self) -> Overload {
        let mut o = Overload {
            drain_interval: self.drain_interval,
            wakeup_bytes: self.wakeup_bytes,
            ..Overload::default()
        };
        for (name, percent) in &self.shed_at_percent {
            if let Some(slot) = slot_of(name) {
                o.shed_at_percent[slot] = *percent;
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use runbom_common::{EventKind, SHED_FILE_LOW_VALUE};

    use crate::{
        config::{EMBEDDED_DEFAULT, assert_refused, model::Config},
        receiver::ebpf::config::EbpfConfig,
    };

    fn with(section: &str) -> String {
        EMBEDDED_DEFAULT.replace("  ebpf: {}", &format!("  ebpf:\n{section}"))
    }

    #[test]
    fn overload_section() {
        let text = with(
            "    overload:\n      drain_interval: 25ms\n      wakeup_bytes: 65536\n      shed_at_percent:\n        net.connect: 60\n        file.open.low_value: 0\n    file:\n      low_value: [/srv/cache/]",
        );
        let c = Config::parse(&text, "c.yaml").unwrap();
        let s = c
            .receiver::<EbpfConfig>("ebpf")
            .expect("ebpf receiver missing")
            .probe_settings();
        let o = s.overload;
        assert_eq!(o.drain_interval.as_millis(), 25);
        assert_eq!(o.wake_bytes(s.ring_bytes), 65536);
        assert_eq!(o.shed_at_percent[EventKind::Connect as usize], 60);
        assert_eq!(o.shed_at_percent[SHED_FILE_LOW_VALUE], 0);
        assert_eq!(
            o.shed_at_percent[EventKind::FileOpen as usize],
            70,
            "default"
        );
        assert_eq!(s.file_low_value, vec!["/srv/cache/".to_string()]);
    }

    #[test]
    fn refuses_shedding_the_process_tree_and_bad_values() {
        assert_refused(
            &with("    overload:\n      shed_at_percent:\n        process.exec: 90"),
            "`receivers.ebpf.overload.shed_at_percent.process.exec`: the process tree is never shed",
        );
        assert_refused(
            &with("    overload:\n      shed_at_percent:\n        file.opn: 90"),
            "`receivers.ebpf.overload.shed_at_percent.file.opn`: not a kind of event that can be shed",
        );
        assert_refused(
            &with("    overload:\n      shed_at_percent:\n        file.open: 120"),
            "120 is above 100",
        );
        assert_refused(
            &with("    overload:\n      wakeup_bytes: 1000"),
            "`receivers.ebpf.overload.wakeup_bytes`: 1000 must be 0 or a power of two",
        );
        assert_refused(
            &with("    overload:\n      drain_interval: 5s"),
            "`receivers.ebpf.overload.drain_interval`",
        );
    }
}
