//! Declared AI-BOMs (CycloneDX JSON): parsed and checked; a bad one is an error naming the
//! place, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = runbom_aibom::DeclaredBom::parse(text, "fuzz.cdx.json");
    }
});
