//! What the kernel side captures of HTTP traffic (request heads, bodies, status lines), as
//! userspace parses and redacts it. Whatever comes out stays within what went in.

#![no_main]

use libfuzzer_sys::fuzz_target;
use runbom_event::http;

fuzz_target!(|data: &[u8]| {
    if let Some(head) = http::parse_head(data) {
        assert!(head.body_offset.is_none_or(|o| o <= data.len()));
        if let Some(offset) = head.body_offset {
            let _ = http::model(&data[offset..]);
        }
    }
    let _ = http::status(data);
    let _ = http::model(data);
    let text = String::from_utf8_lossy(data);
    let _ = http::redact_target(&text);
    let _ = http::parse_traceparent(&text);
});
