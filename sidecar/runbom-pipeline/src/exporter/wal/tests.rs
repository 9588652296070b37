//! The write-ahead log: order, replay after a restart, a torn last record, the size bound.

use std::{sync::Arc, time::Duration};

use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest,
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
};
use runbom_otlp::signal::Signal;
use runbom_testkit::TempDir;

use super::{HEADER, Wal};

/// A log request of one record whose `severity_text` is `n` padded to `pad` bytes.
fn request(n: usize, pad: usize) -> Signal {
    Signal::Logs(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    severity_text: format!("{n:0pad$}"),
                    ..LogRecord::default()
                }],
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    })
}

fn number(signal: &Signal) -> usize {
    let Signal::Logs(r) = signal else {
        panic!("a log request")
    };
    r.resource_logs[0].scope_logs[0].log_records[0]
        .severity_text
        .parse()
        .expect("a number")
}

/// Takes `n` records, acknowledging each; returns their numbers.
async fn take(wal: &Arc<Wal>, n: usize, ack: bool) -> Vec<usize> {
    let mut out = Vec::new();
    for _ in 0..n {
        let (signal, pos) = tokio::time::timeout(Duration::from_secs(5), wal.next())
            .await
            .expect("a record within 5 s")
            .expect("readable")
            .expect("not closed");
        out.push(number(&signal));
        if ack {
            wal.ack(pos, 1).expect("ack");
        }
    }
    out
}

#[tokio::test]
async fn what_was_not_acknowledged_is_replayed_after_a_restart_in_order() {
    let dir = TempDir::new("wal-replay");
    let path = dir.join("q");
    {
        let (wal, replayed) = Wal::open(&path, false, 1 << 20).expect("open");
        assert_eq!(replayed, 0);
        let wal = Arc::new(wal);
        for n in 0..10 {
            wal.append(&request(n, 1000)).expect("append");
        }
        assert_eq!(take(&wal, 4, true).await, [0, 1, 2, 3]);
        // Handed out but not acknowledged: sent again after the restart.
        assert_eq!(take(&wal, 2, false).await, [4, 5]);
        assert_eq!(wal.pending(), 6);
    }
    let (wal, replayed) = Wal::open(&path, true, 1 << 20).expect("reopen");
    assert_eq!(replayed, 6);
    let wal = Arc::new(wal);
    wal.append(&request(10, 1000))
        .expect("append after the restart");
    assert_eq!(take(&wal, 7, true).await, [4, 5, 6, 7, 8, 9, 10]);
    assert_eq!(wal.pending(), 0);
    wal.close();
    assert!(
        wal.next().await.expect("readable").is_none(),
        "closed and empty"
    );
}

/// Records out at once (a queue drained with several exports in flight) may end in any order:
/// what a restart sends again is every record not yet delivered, and no delivered one before
/// the first still out.
#[tokio::test]
async fn acknowledgements_out_of_order_move_the_position_past_every_delivered_record_only() {
    let dir = TempDir::new("wal-unordered");
    let path = dir.join("q");
    let take_positions = |wal: Arc<Wal>| async move {
        let mut out = Vec::new();
        for _ in 0..3 {
            let (signal, pos) = wal.next().await.expect("readable").expect("a record");
            out.push((number(&signal), pos));
        }
        out
    };
    {
        let (wal, _) = Wal::open(&path, false, 1 << 20).expect("open");
        let wal = Arc::new(wal);
        for n in 0..6 {
            wal.append(&request(n, 100)).expect("append");
        }
        let out = take_positions(wal.clone()).await;
        assert_eq!(out.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [0, 1, 2]);
        // 1 and 2 delivered, 0 still out.
        wal.ack(out[2].1, 1).expect("ack");
        wal.ack(out[1].1, 1).expect("ack");
        assert_eq!(wal.level().0, 4, "items not delivered: 0, 3, 4, 5");
    }
    let (wal, replayed) = Wal::open(&path, false, 1 << 20).expect("reopen");
    assert_eq!(
        replayed, 6,
        "0 was not delivered: everything from it is sent again"
    );
    let wal = Arc::new(wal);
    let out = take_positions(wal.clone()).await;
    wal.ack(out[1].1, 1).expect("ack");
    wal.ack(out[2].1, 1).expect("ack");
    wal.ack(out[0].1, 1).expect("ack");
    drop(wal);
    let (wal, replayed) = Wal::open(&path, false, 1 << 20).expect("reopen");
    assert_eq!(replayed, 3, "0, 1, 2 delivered");
    assert_eq!(take(&Arc::new(wal), 3, true).await, [3, 4, 5]);
}

#[tokio::test]
async fn a_record_cut_short_by_a_crash_is_cut_off_and_the_rest_kept() {
    let dir = TempDir::new("wal-torn");
    let path = dir.join("q");
    {
        let (wal, _) = Wal::open(&path, false, 1 << 20).expect("open");
        for n in 0..3 {
            wal.append(&request(n, 100)).expect("append");
        }
    }
    let segment = std::fs::read_dir(&path)
        .expect("the queue directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "wal"))
        .expect("a segment");
    let len = std::fs::metadata(&segment).expect("segment").len();
    // Half of the last record written, as kill -9 mid-write leaves it.
    let f = std::fs::File::options()
        .write(true)
        .open(&segment)
        .expect("open the segment");
    f.set_len(len - 50).expect("truncate");
    let (wal, replayed) = Wal::open(&path, false, 1 << 20).expect("reopen");
    assert_eq!(replayed, 2, "the two whole records are kept");
    let wal = Arc::new(wal);
    wal.append(&request(3, 100))
        .expect("append after the torn record");
    assert_eq!(take(&wal, 3, true).await, [0, 1, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_holds_its_writer_until_records_are_delivered_and_segments_go() {
    let dir = TempDir::new("wal-bound");
    let path = dir.join("q");
    // 64 KiB segments (the smallest), 256 KiB in all; records of about 10 KiB.
    let max = 256 << 10;
    let (wal, _) = Wal::open(&path, false, max).expect("open");
    let wal = Arc::new(wal);
    let writer = {
        let wal = wal.clone();
        std::thread::spawn(move || {
            for n in 0..100 {
                wal.append(&request(n, 10_000)).expect("append");
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let on_disk = |wal: &Wal| {
        std::fs::read_dir(wal.dir())
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "wal"))
            .map(|e| e.metadata().expect("meta").len())
            .sum::<u64>()
    };
    assert!(!writer.is_finished(), "the writer waits for room");
    assert!(on_disk(&wal) <= max, "{} bytes on disk", on_disk(&wal));
    let got = take(&wal, 100, true).await;
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    writer.join().expect("the writer ends");
    assert!(
        on_disk(&wal) <= (64 << 10) + 10_000 + HEADER * 10,
        "delivered segments are deleted: {} bytes left",
        on_disk(&wal)
    );
}
