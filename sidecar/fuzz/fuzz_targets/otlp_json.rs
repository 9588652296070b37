//! OTLP/JSON bodies (the HTTP receiver's, and the file exporter's lines `investigate` reads):
//! decoded with the one OTLP/JSON reader, then screened as a receiver screens a request.
//! The first byte picks the signal.

#![no_main]

use libfuzzer_sys::fuzz_target;
use runbom_otlp::signal::SignalKind;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let kind = match which % 3 {
        0 => SignalKind::Traces,
        1 => SignalKind::Logs,
        _ => SignalKind::Metrics,
    };
    if let Ok(mut signal) = runbom_otlp::json::decode(kind, body) {
        assert_eq!(signal.kind(), kind);
        runbom_pipeline::receiver::screen(&mut signal);
    }
});
