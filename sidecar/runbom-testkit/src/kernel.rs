//! The real probes in the test's own process: load them, read their ring with the real
//! enricher while a workload runs, and hand back every event seen meanwhile (of every process:
//! tests filter by their own pids).

use std::sync::{Arc, Mutex};

use runbom_event::KernelEvent;
use runbom_kernel::{
    Enricher, ProbeSettings, Probes, clock::BootClock, openssl, proctable::ProcessTable, reader,
};

/// Loads the probes with `settings` (with `openssl`, hooks every OpenSSL library mapped now,
/// at least one), runs `work` on a blocking thread, and returns the events seen until it ended
/// with what it returned.
///
/// # Panics
/// When the probes do not load or no OpenSSL library is hooked (with `openssl`).
pub fn capture<T: Send + 'static>(
    settings: &ProbeSettings,
    openssl: bool,
    work: impl FnOnce() -> T + Send + 'static,
) -> (Vec<KernelEvent>, T) {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let mut probes = Probes::load(settings).expect("load the probes");
        let ring = probes.take_ring().expect("ring");
        let probes = Arc::new(Mutex::new(probes));
        if openssl {
            let mut watcher = openssl::Watcher::new(probes.clone());
            assert!(watcher.scan_all() >= 1, "no libssl hooked");
        }
        let enricher = Enricher::new(ProcessTable::from_proc(), BootClock::new());
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<KernelEvent>>(64);
        // Every process's events arrive: collect them as they come, or the reader would wait.
        let collector = tokio::spawn(async move {
            let mut events = Vec::new();
            while let Some(batch) = rx.recv().await {
                events.extend(batch);
            }
            events
        });
        let stop = tokio_util::sync::CancellationToken::new();
        let reader = reader::spawn(
            ring,
            enricher,
            tx,
            Arc::default(),
            settings.overload.drain_interval,
            stop.clone(),
        )
        .expect("reader thread");
        let out = tokio::task::spawn_blocking(work).await.expect("workload");
        stop.cancel();
        reader.join().await.expect("reader");
        drop(probes);
        (collector.await.expect("collector task"), out)
    })
}
