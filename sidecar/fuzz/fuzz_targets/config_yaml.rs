//! runbom's configuration (Collector-shaped YAML): parsed and checked; a bad one is an error
//! naming the file and the YAML path, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = runbom_pipeline::Config::parse(text, "fuzz.yaml");
    }
});
