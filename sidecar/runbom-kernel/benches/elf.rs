//! Finding OpenSSL's exports in an ELF file, as runbom does once per library or executable it
//! attaches to (`elf::exported_offsets`): Node's 99 MiB `node` (OpenSSL linked in, about
//! 80 000 dynamic symbols) and Debian's `libssl.so.3`. Files this machine does not have are
//! skipped.

use std::{hint::black_box, path::Path};

use criterion::{Criterion, criterion_group, criterion_main};
use runbom_kernel::{elf, probes::SSL_SYMBOLS};

fn bench(c: &mut Criterion) {
    for (name, path) in [
        ("node", "/usr/bin/node"),
        ("libssl.so.3", "/lib/x86_64-linux-gnu/libssl.so.3"),
    ] {
        if !Path::new(path).exists() {
            continue;
        }
        c.bench_function(&format!("exported_offsets {name}"), |b| {
            b.iter(|| black_box(elf::exported_offsets(Path::new(path), &SSL_SYMBOLS)));
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
