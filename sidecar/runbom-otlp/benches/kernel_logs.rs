//! Writing kernel log records from the events (`KernelLogs::write_protobuf_part`, what the
//! `otlp` exporter sends for the kernel path), on a batch like the kernel path's at line rate:
//! 8 192 `file.open` events (`batch`'s default size) of three processes, most of them of one
//! busy process, each process with its executable and command line; a few paths opened again
//! and again, one open in ten failed. Time is the benchmark thread's CPU time, so `thrpt` is
//! events per CPU-second and time other processes of a shared machine take is not counted.
//!
//! `write_protobuf_part` is given the groups as the exporter gives them (planned before);
//! `write_protobuf` plans them too.

#![allow(missing_docs, clippy::cast_possible_truncation)]

use std::{hint::black_box, sync::Arc, time::Duration};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use runbom_event::{Detail, KernelEvent, ProcessInfo};
use runbom_otlp::{ConvertOptions, KernelLogs};
use runbom_testkit::cpu::cpu_time;

const EVENTS: usize = 8192;

/// `O_RDONLY | O_CLOEXEC`, `O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC` (`x86_64`).
const READ: u32 = 0o2_000_000;
const WRITE: u32 = 0o2_001_101;

fn process(pid: u32, exe: &str, command_line: &str) -> Arc<ProcessInfo> {
    Arc::new(ProcessInfo {
        pid,
        ppid: 1000 + pid,
        uid: 1000,
        exe: exe.into(),
        command_line: command_line.into(),
        container_id: None,
        trace_id: [pid as u8; 16],
        fork_tid: 0,
        fork_ns: 0,
    })
}

fn events() -> Vec<KernelEvent> {
    let processes = [
        process(
            4100,
            "/usr/local/bin/python3.12",
            "python3 -m agent.main --config /etc/agent/agent.yaml --workers 4 --log-level info",
        ),
        process(
            4200,
            "/usr/bin/node",
            "node /srv/tools/mcp-filesystem/dist/index.js --root /home/agent/project",
        ),
        process(4300, "/usr/bin/git", "git status --porcelain"),
    ];
    (0..EVENTS)
        .map(|i| {
            // Six in eight of the busy process's, then one each.
            let p = match i % 8 {
                6 => 1,
                7 => 2,
                _ => 0,
            };
            let process = processes[p].clone();
            let start_ns = 1_780_000_000_000_000_000 + i as u64 * 10_000;
            KernelEvent {
                pid: process.pid,
                tid: process.pid + (i % 3) as u32,
                cgroup_id: 4242,
                start_ns,
                end_ns: start_ns + 2_500,
                detail: Detail::FileOpen {
                    path: format!(
                        "/home/agent/project/src/module_{:02}/data_{:03}.json",
                        i % 7,
                        i % 41
                    ),
                    flags: if i % 3 == 0 { WRITE } else { READ },
                    error: (i % 10 == 0).then_some("ENOENT"),
                },
                process,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let opts = Arc::new(ConvertOptions {
        host_name: "bench-node".into(),
        uncorrelated_spans: false,
    });
    let logs = KernelLogs::new(events(), opts);
    let groups = logs.groups();
    let mut out = Vec::with_capacity(8 << 20);
    logs.write_protobuf_part(&groups, &mut out);
    eprintln!("{EVENTS} records: {} bytes", out.len());
    let mut group = c.benchmark_group("kernel_logs");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("file_open_8k/write_protobuf_part", |b| {
        b.iter_custom(|iters| {
            cpu_time(iters, || {
                out.clear();
                black_box(&logs).write_protobuf_part(black_box(&groups), &mut out);
                black_box(out.len());
            })
        });
    });
    group.bench_function("file_open_8k/write_protobuf", |b| {
        b.iter_custom(|iters| {
            cpu_time(iters, || {
                out.clear();
                black_box(&logs).write_protobuf(&mut out);
                black_box(out.len());
            })
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = bench
}
criterion_main!(benches);
