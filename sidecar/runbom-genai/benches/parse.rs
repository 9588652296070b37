//! Cost of reading one LLM exchange (request body and whole response, as the capture holds
//! them) into `gen_ai.*` attributes, per provider fixture (tests/fixtures), plain and
//! gzip+chunked, next to the cost of only finding the API (what a request to a non-LLM
//! destination pays) as the baseline measured in the same run. Then the cost of telling when a
//! 64 KiB response captured one byte per read is complete (`Completion::check` on everything
//! captured so far, as the trackers call it on each read): a chunked response, and a head that
//! never ends.

// Criterion's macros generate undocumented items.
#![allow(missing_docs)]

use std::{hint::black_box, io::Write, path::Path};

use criterion::{Criterion, criterion_group, criterion_main};
use runbom_genai::{Completion, Exchange, Options, detect, parse};

struct Fixture {
    name: &'static str,
    host: String,
    target: String,
    request: Vec<u8>,
    plain: Vec<u8>,
    gzip_chunked: Vec<u8>,
}

fn load(name: &'static str) -> Fixture {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("exchange.json")).expect("exchange.json"))
            .expect("JSON");
    let body = std::fs::read(dir.join("response.json"))
        .or_else(|_| std::fs::read(dir.join("response.txt")))
        .expect("a response");
    let ctype = meta["content_type"].as_str().expect("content_type");
    let mut plain = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    plain.extend_from_slice(&body);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&body).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let mut gzip_chunked = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Encoding: gzip\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for c in gz.chunks(1024) {
        gzip_chunked.extend(format!("{:x}\r\n", c.len()).into_bytes());
        gzip_chunked.extend_from_slice(c);
        gzip_chunked.extend_from_slice(b"\r\n");
    }
    gzip_chunked.extend_from_slice(b"0\r\n\r\n");
    Fixture {
        name,
        host: meta["host"].as_str().expect("host").to_owned(),
        target: meta["target"].as_str().expect("target").to_owned(),
        request: std::fs::read(dir.join("request.json")).expect("request.json"),
        plain,
        gzip_chunked,
    }
}

fn bench(c: &mut Criterion) {
    let fixtures = [
        "openai-chat-tool-calls",
        "openai-chat-stream-tool-calls",
        "anthropic-messages-stream-tool-use",
        "gemini-stream-tool-call",
        "bedrock-converse",
    ]
    .map(load);
    let mut g = c.benchmark_group("genai");
    g.bench_function("detect only (baseline)", |b| {
        b.iter(|| {
            for f in &fixtures {
                black_box(detect(Some(&f.host), &f.target));
            }
        });
    });
    for f in &fixtures {
        for (framing, response) in [("plain", &f.plain), ("gzip+chunked", &f.gzip_chunked)] {
            g.bench_function(format!("{} {framing}", f.name), |b| {
                b.iter(|| {
                    black_box(parse(
                        &Exchange {
                            host: Some(&f.host),
                            target: &f.target,
                            request_body: &f.request,
                            response,
                            response_cut: false,
                        },
                        Options::default(),
                    ))
                });
            });
        }
    }
    g.finish();
}

/// `raw` given to a fresh `Completion` one more byte at a time.
fn one_byte_per_push(raw: &[u8]) -> bool {
    let mut c = Completion::default();
    (1..=raw.len()).fold(false, |_, end| c.check(&raw[..end]))
}

fn completion(c: &mut Criterion) {
    const SIZE: usize = 64 << 10;
    let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    while chunked.len() < SIZE {
        chunked.extend_from_slice(b"400\r\n");
        chunked.extend_from_slice(&[b'x'; 0x400]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let mut endless_head = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
    endless_head.resize(SIZE, b'a');
    let mut g = c.benchmark_group("completion");
    for (name, raw) in [("chunked", &chunked), ("head without end", &endless_head)] {
        g.bench_function(format!("one byte per push, 64 KiB, {name}"), |b| {
            b.iter(|| black_box(one_byte_per_push(black_box(raw))));
        });
    }
    g.finish();
}

criterion_group!(benches, bench, completion);
criterion_main!(benches);
