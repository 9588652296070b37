//! Cost of redaction on the hot paths: [`redact::command_line`] runs once per exec (argv of
//! the new program) and [`redact::text`] on every captured request's host, user agent and path
//! segments. The inputs are what a busy node mostly sees (ordinary command lines and paths, no
//! secret) plus one command line full of credentials.

// Criterion's macros generate undocumented items.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use runbom_event::redact;

fn bench(c: &mut Criterion) {
    let plain: [&[&str]; 4] = [
        &[
            "/usr/bin/python3",
            "agent.py",
            "--model",
            "gpt-4o-mini",
            "--port",
            "8080",
        ],
        &["ls", "-la", "/var/lib/runbom"],
        &[
            "/bin/sh",
            "-c",
            "tar -xzf /tmp/release.tar.gz -C /opt/app && echo done",
        ],
        &[
            "curl",
            "-sS",
            "-H",
            "Accept: application/json",
            "https://api.example.com/v1/items",
        ],
    ];
    let secrets: &[&str] = &[
        "curl",
        "-u",
        "admin:hunter2",
        "-H",
        "X-Api-Key: 0123456789abcdef",
        "-H",
        "Cookie: session=abc; theme=dark",
        "https://api.example.com/v1/items",
    ];
    c.bench_function("command_line plain x4", |b| {
        b.iter(|| {
            for argv in plain {
                black_box(redact::command_line(black_box(argv)));
            }
        });
    });
    c.bench_function("command_line secrets", |b| {
        b.iter(|| black_box(redact::command_line(black_box(secrets))));
    });
    let texts = [
        "api.example.com:443",
        "python-requests/2.32.3",
        "v1",
        "chat",
        "completions",
        "tickets",
        "T-2718.md",
    ];
    c.bench_function("text plain x7", |b| {
        b.iter(|| {
            for t in texts {
                black_box(redact::text(black_box(t)));
            }
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
