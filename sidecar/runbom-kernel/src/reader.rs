//! The ring buffer reader: drains the ring every `drain_interval`, and at once when the kernel
//! wakes it (through `AsyncFd`), which it does only when a burst crosses the wake-up threshold
//! (`crate::overload`): a wake-up per event would cost an interrupt per event. It decodes and
//! enriches every record and hands batches downstream. When downstream is full the reader
//! waits, the ring fills, the kernel sheds the least valuable kinds first and counts what it
//! drops (see `LossCounters`): nothing is lost silently.
//!
//! [`spawn`] runs it on a thread of its own (with a runtime of its own): a long poll on the
//! pipeline's workers (an exporter encoding or writing a large request, a long processor step)
//! then cannot keep it from draining the ring.

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use runbom_common::decode::{Event, decode_record};
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, oneshot},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use runbom_event::KernelEvent;

use crate::{
    enrich::Enricher,
    openjoin::{OPEN_RESULT_WAIT, OpenJoin},
};

/// Events handed downstream in one batch, at most (a few more when one record completes
/// several). A batch is filled by events, not records: an open is two records, and a batch of
/// half its room would be copied into the next one downstream.
pub const BATCH: usize = 1024;
/// Most records read into one batch: records that make no event (forks, bodies, results
/// nobody waits for) do not keep the reader from handing on what it has.
const RECORDS_MAX: u64 = 4 * BATCH as u64;
/// While TLS requests wait for their response, how often waiting ones are checked for expiry.
const PENDING_CHECK: Duration = Duration::from_millis(500);

/// Counters of the reader, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct ReaderStats {
    /// Records read from the ring.
    pub records: AtomicU64,
    /// Records that failed to decode (and were skipped).
    pub decode_errors: AtomicU64,
    /// Events handed downstream.
    pub events: AtomicU64,
    /// HTTP/2 connections that could no longer be followed (their open streams were released
    /// without a response; later streams on them are not seen).
    pub h2_lost: AtomicU64,
    /// Opens handed on without their result (its record was lost; see `crate::openjoin`).
    pub open_results_lost: AtomicU64,
    /// Open results that found no open waiting (dropped).
    pub open_results_unmatched: AtomicU64,
}

/// The name of the reader's thread (as `ps -L` and `top -H` show it).
pub const THREAD_NAME: &str = "runbom-ring";
/// The reader thread's nice value: it wakes every `drain_interval` for a short drain, and on a
/// busy CPU it should run before the threads it feeds (otherwise the ring fills while it
/// waits for a CPU). Its CPU is bounded by the records the kernel writes.
const NICE: libc::c_int = -10;

/// The reader running on its own thread ([`spawn`]).
#[derive(Debug)]
pub struct ReaderThread {
    done: oneshot::Receiver<io::Result<()>>,
    thread: thread::JoinHandle<()>,
}

/// Starts [`run`] on a thread of its own, named [`THREAD_NAME`], with a current-thread runtime
/// of its own (the ring's fd registered with that runtime's epoll, its drain timer on that
/// runtime's clock): the pipeline's workers can all be busy and the ring is still drained. The
/// batches reach the pipeline through `tx` as before; waiting on a full `tx` is still what
/// makes the kernel shed. Fails when the runtime or the thread cannot be made.
pub fn spawn(
    ring: RingBuf<MapData>,
    enricher: Enricher,
    tx: mpsc::Sender<Vec<KernelEvent>>,
    stats: Arc<ReaderStats>,
    drain_interval: Duration,
    stop: CancellationToken,
) -> io::Result<ReaderThread> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let (done_tx, done) = oneshot::channel();
    let thread = thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(move || {
            raise_priority();
            let result = runtime.block_on(run(ring, enricher, tx, stats, drain_interval, stop));
            drop(runtime);
            // The receiver is gone only when nobody waits for the reader any more.
            let _ = done_tx.send(result);
        })?;
    Ok(ReaderThread { done, thread })
}

impl ReaderThread {
    /// Waits (without blocking a worker) until the reader has stopped and drained, and its
    /// thread has ended; returns what the reader returned, or an error if it panicked.
    pub async fn join(self) -> io::Result<()> {
        let result = self.done.await;
        // It has sent its result or dropped the sender unwinding: it is ending, not waiting.
        let joined = self.thread.join();
        match (result, joined) {
            (Ok(result), Ok(())) => result,
            (_, Err(panic)) => Err(io::Error::other(format!(
                "the ring reader panicked: {}",
                panic_message(panic.as_ref())
            ))),
            (Err(_), Ok(())) => Err(io::Error::other("the ring reader ended without a result")),
        }
    }
}

/// Gives the calling thread the nice value [`NICE`]; without the privilege for it
/// (`CAP_SYS_NICE`) the thread keeps the process's, said once in the log.
fn raise_priority() {
    // SAFETY: `gettid` and `setpriority` on the calling thread's own id read and change nothing
    // but that thread's scheduling priority.
    let raised = unsafe {
        libc::setpriority(
            libc::PRIO_PROCESS,
            libc::id_t::try_from(libc::gettid()).unwrap_or(0),
            NICE,
        )
    };
    if raised != 0 {
        let e = io::Error::last_os_error();
        debug!("the ring reader keeps the process's priority (nice {NICE} refused: {e})");
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Reads until `stop` is cancelled, then drains what the ring still holds and returns. The
/// ring is drained at least every `drain_interval` (non-zero).
pub async fn run(
    ring: RingBuf<MapData>,
    mut enricher: Enricher,
    tx: mpsc::Sender<Vec<KernelEvent>>,
    stats: Arc<ReaderStats>,
    drain_interval: Duration,
    stop: CancellationToken,
) -> std::io::Result<()> {
    // SAFETY: the ring buffer owns its file descriptor, which stays open and the same for as
    // long as the `AsyncFd` owns the ring.
    let mut fd = unsafe { AsyncFd::register(ring) }?;
    let mut every = tokio::time::interval(drain_interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending_checked = Instant::now();
    let mut opens = OpenJoin::default();
    loop {
        let stopping = tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                drain(guard.get_inner_mut(), &mut enricher, &mut opens, &tx, &stats).await;
                guard.clear_ready();
                false
            }
            _ = every.tick() => {
                drain(fd.get_mut(), &mut enricher, &mut opens, &tx, &stats).await;
                if enricher.has_pending() && pending_checked.elapsed() >= PENDING_CHECK {
                    pending_checked = Instant::now();
                    let mut ready = Vec::new();
                    enricher.take_ready(&mut ready);
                    send(ready, &tx, &stats).await;
                }
                false
            }
            () = stop.cancelled() => true,
        };
        if stopping {
            drain(fd.get_mut(), &mut enricher, &mut opens, &tx, &stats).await;
            let mut rest = Vec::new();
            opens.flush(|ev| rest.extend(enricher.enrich(ev)));
            stats
                .open_results_lost
                .store(opens.results_lost, Ordering::Relaxed);
            enricher.flush(&mut rest);
            send(rest, &tx, &stats).await;
            return Ok(());
        }
    }
}

async fn drain(
    ring: &mut RingBuf<MapData>,
    enricher: &mut Enricher,
    opens: &mut OpenJoin,
    tx: &mpsc::Sender<Vec<KernelEvent>>,
    stats: &ReaderStats,
) {
    loop {
        let now = Instant::now();
        let mut batch = Vec::with_capacity(BATCH);
        let mut records = 0u64;
        while batch.len() < BATCH && records < RECORDS_MAX {
            let Some(item) = ring.next() else { break };
            records += 1;
            match decode_record(&item) {
                // An open becomes an event when its result (the thread's next record) is read.
                Ok(record) => opens.push(record, now, |e| hand_on(enricher, &mut batch, e)),
                Err(e) => {
                    stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                    warn!("skipping kernel record: {e}");
                }
            }
        }
        if records == 0 {
            opens.expire(now, OPEN_RESULT_WAIT, |e| hand_on(enricher, &mut batch, e));
        }
        stats.records.fetch_add(records, Ordering::Relaxed);
        stats.h2_lost.store(enricher.h2_lost(), Ordering::Relaxed);
        stats
            .open_results_lost
            .store(opens.results_lost, Ordering::Relaxed);
        stats
            .open_results_unmatched
            .store(opens.results_unmatched, Ordering::Relaxed);
        if records == 0 && batch.is_empty() {
            return;
        }
        enricher.take_ready(&mut batch);
        // A batch waits in the channel and the pipeline: a few events should not hold the
        // room of a full batch (128 KiB) meanwhile (copying them is cheap; a full one stays).
        if batch.len() < BATCH / 4 {
            batch.shrink_to_fit();
        }
        if !send(batch, tx, stats).await || records == 0 {
            return; // downstream is gone (shutting down), or the ring is empty
        }
    }
}

/// Enriches one complete event into `batch`.
fn hand_on(enricher: &mut Enricher, batch: &mut Vec<KernelEvent>, event: &Event<'_>) {
    batch.extend(enricher.enrich(event));
    // A request its record completed goes out in record order: what the process did after the
    // response (a tool it ran) comes after it.
    enricher.take_completed(batch);
}

/// Hands a batch downstream; false when downstream is gone.
async fn send(
    batch: Vec<KernelEvent>,
    tx: &mpsc::Sender<Vec<KernelEvent>>,
    stats: &ReaderStats,
) -> bool {
    let n = batch.len() as u64;
    if batch.is_empty() {
        return true;
    }
    if tx.send(batch).await.is_err() {
        return false;
    }
    stats.events.fetch_add(n, Ordering::Relaxed);
    true
}
