//! Opens joined with their results: in order, interleaved across threads, and with results
//! lost, late or missing. The records are built as the kernel writes them and go through the
//! same decoder as the ring's.

use std::time::{Duration, Instant};

use runbom_common::{
    EventHeader, EventKind, FileOpenEvent, FileOpenResult, ForkEvent, OPEN_RESULT_UNKNOWN,
    PATH_MAX,
    decode::{Event, as_bytes, decode_record},
};

use super::{OPEN_RESULT_WAIT, OpenJoin, PENDING_MAX};

fn open(tid: u32, time_ns: u64, path: &str) -> Vec<u8> {
    let mut ev = FileOpenEvent {
        header: EventHeader {
            kind: EventKind::FileOpen as u32,
            size: size_of::<FileOpenEvent>() as u32,
            pid: 100,
            tid,
            time_ns,
            cgroup_id: 1,
        },
        end_ns: 0,
        flags: 0o100,
        ret: 0,
        path_len: path.len() as u32,
        _pad: 0,
        path: [0; PATH_MAX],
    };
    ev.path[..path.len()].copy_from_slice(path.as_bytes());
    as_bytes(&ev).to_vec()
}

fn result(tid: u32, end_ns: u64, ret: i32) -> Vec<u8> {
    as_bytes(&FileOpenResult {
        kind: EventKind::FileOpenResult as u32,
        tid,
        end_ns,
        ret,
        _pad: 0,
    })
    .to_vec()
}

fn fork(tid: u32) -> Vec<u8> {
    as_bytes(&ForkEvent {
        header: EventHeader {
            kind: EventKind::Fork as u32,
            size: size_of::<ForkEvent>() as u32,
            pid: 100,
            tid,
            time_ns: 5,
            cgroup_id: 1,
        },
        child_pid: 101,
        _pad: 0,
    })
    .to_vec()
}

/// What came out, in order: `(tid, path or "fork", ret, end_ns)`.
type Out = Vec<(u32, String, i32, u64)>;

fn summary(ev: &Event<'_>) -> (u32, String, i32, u64) {
    match ev {
        Event::FileOpen(f) => (
            f.header.tid,
            String::from_utf8_lossy(&f.path[..f.path_len as usize]).into_owned(),
            f.ret,
            f.end_ns,
        ),
        other => (other.header().tid, "fork".into(), 0, 0),
    }
}

fn feed(join: &mut OpenJoin, records: &[Vec<u8>], now: Instant) -> Out {
    let mut out = Vec::new();
    for r in records {
        let record = decode_record(r).expect("the record should decode");
        join.push(record, now, |ev| out.push(summary(ev)));
    }
    out
}

#[test]
fn result_joins_its_open_across_interleaved_threads() {
    let mut join = OpenJoin::default();
    // Thread 2 opens while thread 1 is inside its open; their results come back crossed.
    let records = [
        open(1, 10, "/data/a"),
        open(2, 11, "/data/b"),
        fork(3),
        result(2, 20, 5),
        result(1, 21, -2),
    ];
    let out = feed(&mut join, &records, Instant::now());
    assert_eq!(
        out,
        vec![
            (3, "fork".into(), 0, 0),
            (2, "/data/b".into(), 5, 20),
            (1, "/data/a".into(), -2, 21),
        ]
    );
    assert!(!join.has_pending());
    assert_eq!((join.results_lost, join.results_unmatched), (0, 0));
}

#[test]
fn lost_result_is_emitted_as_unknown_at_the_threads_next_record() {
    let mut join = OpenJoin::default();
    // Thread 1's first result was lost: its next open, and then a fork, tell.
    let records = [
        open(1, 10, "/data/a"),
        open(1, 30, "/data/b"),
        fork(1),
        open(2, 40, "/data/c"),
        result(2, 41, 3),
    ];
    let out = feed(&mut join, &records, Instant::now());
    assert_eq!(
        out,
        vec![
            (1, "/data/a".into(), OPEN_RESULT_UNKNOWN, 0),
            (1, "/data/b".into(), OPEN_RESULT_UNKNOWN, 0),
            (1, "fork".into(), 0, 0),
            (2, "/data/c".into(), 3, 41),
        ]
    );
    assert_eq!(join.results_lost, 2);
    assert!(!join.has_pending());
}

#[test]
fn open_without_result_is_emitted_after_the_wait_and_a_late_result_is_counted() {
    let mut join = OpenJoin::default();
    let t0 = Instant::now();
    let out = feed(&mut join, &[open(7, 10, "/data/fifo")], t0);
    assert!(out.is_empty());
    let mut expired = Vec::new();
    join.expire(t0 + Duration::from_secs(1), OPEN_RESULT_WAIT, |ev| {
        expired.push(summary(ev));
    });
    assert!(expired.is_empty(), "not yet due");
    join.expire(t0 + OPEN_RESULT_WAIT, OPEN_RESULT_WAIT, |ev| {
        expired.push(summary(ev));
    });
    assert_eq!(
        expired,
        vec![(7, "/data/fifo".into(), OPEN_RESULT_UNKNOWN, 0)]
    );
    // Its result arrives after all: nothing to join, counted.
    let out = feed(&mut join, &[result(7, 99, 4)], t0);
    assert!(out.is_empty());
    assert_eq!((join.results_lost, join.results_unmatched), (1, 1));
}

#[test]
fn flush_and_the_bound_emit_what_waits() {
    let mut join = OpenJoin::default();
    let now = Instant::now();
    let records: Vec<Vec<u8>> = (0..=PENDING_MAX as u32)
        .map(|tid| open(tid, u64::from(tid) + 1, "/data/x"))
        .collect();
    let out = feed(&mut join, &records, now);
    // One more than the bound: the oldest went out without its result.
    assert_eq!(out, vec![(0, "/data/x".into(), OPEN_RESULT_UNKNOWN, 0)]);
    let mut rest = 0;
    join.flush(|ev| {
        assert!(matches!(ev, Event::FileOpen(f) if f.ret == OPEN_RESULT_UNKNOWN));
        rest += 1;
    });
    assert_eq!(rest, PENDING_MAX);
    assert_eq!(join.results_lost, PENDING_MAX as u64 + 1);
    assert!(!join.has_pending());
}
