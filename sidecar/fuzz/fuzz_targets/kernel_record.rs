//! Ring-buffer records as the kernel side writes them (or as a bug there could): the decoder
//! checks kind and size before it reads.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = runbom_common::decode::decode(data) {
        let header = event.header();
        assert!(
            header.size as usize <= data.len(),
            "read past what the header declares"
        );
    }
});
