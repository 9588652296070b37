//! The periodic report of what the kernel dropped (README: "runbom reports those counts every
//! 10 s and when it stops"): a line only when the counts grew since the last report, so a
//! healthy node stays quiet.

use std::{sync::Arc, time::Duration};

use runbom_kernel::{Losses, probes::LossCounters};
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
        if ring + inflight == 0 {
            return None;
        }
        self.last = now;
        Some(format!(
            "the kernel dropped {} events in the last {}s ({ring} ring buffer full, {inflight} \
             in-flight map full; {} and {} since start): runbom cannot keep up, raise \
             receivers.ebpf.ring_buffer_bytes",
            ring + inflight,
            REPORT_INTERVAL.as_secs(),
            now.ring_full,
            now.inflight_full
        ))
    }
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
        let first = r
            .report(Losses {
                ring_full: 120,
                inflight_full: 3,
            })
            .expect("a report");
        assert!(
            first.starts_with("the kernel dropped 123 events in the last 10s (120 ring buffer full, 3 in-flight map full; 120 and 3 since start)"),
            "{first}"
        );
        assert_eq!(
            r.report(Losses {
                ring_full: 120,
                inflight_full: 3,
            }),
            None,
            "no new drops: quiet"
        );
        let second = r
            .report(Losses {
                ring_full: 150,
                inflight_full: 3,
            })
            .expect("a report");
        assert!(second.contains("dropped 30 events"), "{second}");
        assert!(second.contains("150 and 3 since start"), "{second}");
    }
}
