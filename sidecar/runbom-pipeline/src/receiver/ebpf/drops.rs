//! The periodic report of what the kernel dropped (README: "runbom reports those counts every
//! 10 s and when it stops"): a line only when the counts grew since the last report, so a
//! healthy node stays quiet.

use std::{sync::Arc, time::Duration};

use opentelemetry::KeyValue;
use runbom_common::SHED_SLOTS;
use runbom_kernel::{
    Losses,
    overload::{SHEDDABLE, slot_name},
    probes::LossCounters,
};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// How often the kernel's loss counters are looked at.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Remembers the counts of the last report.
#[derive(Debug, Default)]
pub struct DropReporter {
    last: Losses,
}

impl DropReporter {
    /// The report for the counts `now`, when they grew since the last one.
    pub fn report(&mut self, now: Losses) -> Option<String> {
        let ring = now.ring_full.saturating_sub(self.last.ring_full);
        let inflight = now.inflight_full.saturating_sub(self.last.inflight_full);
        let shed: [u64; SHED_SLOTS] =
            std::array::from_fn(|i| now.shed[i].saturating_sub(self.last.shed[i]));
        let shed_total: u64 = shed.iter().sum();
        if ring + inflight + shed_total == 0 {
            return None;
        }
        self.last = now;
        Some(format!(
            "the kernel dropped {} events in the last {}s ({ring} ring buffer full, {inflight} \
             in-flight map full, {shed_total} shed under overload: {}; {}, {} and {} since \
             start): runbom cannot keep up, raise receivers.ebpf.ring_buffer_bytes",
            ring + inflight + shed_total,
            REPORT_INTERVAL.as_secs(),
            shed_summary(&shed),
            now.ring_full,
            now.inflight_full,
            now.shed.iter().sum::<u64>()
        ))
    }
}

/// `file.open=120 net.connect=3` for the slots that shed anything (`none` otherwise).
#[must_use]
pub fn shed_summary(shed: &[u64; SHED_SLOTS]) -> String {
    let parts: Vec<String> = shed
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(slot, n)| format!("{}={n}", slot_name(slot).unwrap_or("other")))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(" ")
    }
}

/// `runbom_kernel_shed_total{runbom_event=...}`: events shed under overload, per kind.
pub fn register_shed_counter(telemetry: &crate::Telemetry, losses: Arc<LossCounters>) {
    // One series per sheddable kind.
    telemetry
        .metrics()
        .limit_series("runbom.kernel.shed", SHEDDABLE.len());
    telemetry
        .meter()
        .u64_observable_counter("runbom.kernel.shed")
        .with_unit("{event}")
        .with_description("Kernel events shed under overload (the ring above the kind's fill threshold), by kind.")
        .with_callback(move |o| {
            let shed = losses.read().shed;
            for (name, slot) in SHEDDABLE {
                o.observe(shed[slot], &[KeyValue::new("runbom.event", name)]);
            }
        })
        .build();
}

/// Every [`REPORT_INTERVAL`] until `stop`, a warning when the kernel dropped events since the
/// last one.
pub async fn report_every_interval(losses: Arc<LossCounters>, stop: CancellationToken) {
    let mut reporter = DropReporter::default();
    let mut every = tokio::time::interval(REPORT_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = every.tick() => {
                if let Some(line) = reporter.report(losses.read()) {
                    warn!("{line}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_only_growth_with_the_new_and_total_counts() {
        let mut r = DropReporter::default();
        assert_eq!(r.report(Losses::default()), None, "nothing dropped: quiet");
        let losses = |ring_full, file_open| {
            let mut shed = [0; SHED_SLOTS];
            shed[runbom_common::EventKind::FileOpen as usize] = file_open;
            Losses {
                ring_full,
                inflight_full: 3,
                shed,
            }
        };
        let first = r.report(losses(120, 0)).expect("a report");
        assert!(
            first.starts_with("the kernel dropped 123 events in the last 10s (120 ring buffer full, 3 in-flight map full, 0 shed under overload: none; 120, 3 and 0 since start)"),
            "{first}"
        );
        assert_eq!(r.report(losses(120, 0)), None, "no new drops: quiet");
        let second = r.report(losses(150, 7)).expect("a report");
        assert!(second.contains("dropped 37 events"), "{second}");
        assert!(
            second.contains("7 shed under overload: file.open=7; 150, 3 and 7 since start"),
            "{second}"
        );
    }
}
