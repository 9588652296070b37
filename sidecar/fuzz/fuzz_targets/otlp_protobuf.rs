//! OTLP/protobuf export requests as the receivers get them: decoded, then screened as a
//! receiver screens them (runbom's namespaces moved under `received.`, invalid items dropped).
//! A request that decodes must encode back to one that decodes to the same value, and the
//! receivers' estimate of its decoded size, read from its bytes, must count every item prost
//! kept. The first byte picks the signal.

#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use prost::Message;
use runbom_otlp::{
    decoded_size,
    signal::{Signal, SignalKind},
};

fn round_trip<M: Message + Default + PartialEq>(request: &M) {
    let again = M::decode(request.encode_to_vec().as_slice()).expect("re-encoded request decodes");
    assert!(again == *request, "re-encoded request differs");
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let kind = match which % 3 {
        0 => SignalKind::Traces,
        1 => SignalKind::Logs,
        _ => SignalKind::Metrics,
    };
    let estimate = decoded_size::protobuf(kind, body);
    let mut signal = match kind {
        SignalKind::Traces => match ExportTraceServiceRequest::decode(body) {
            Ok(r) => {
                round_trip(&r);
                Signal::Traces(r)
            }
            Err(_) => return,
        },
        SignalKind::Logs => match ExportLogsServiceRequest::decode(body) {
            Ok(r) => {
                round_trip(&r);
                Signal::Logs(r)
            }
            Err(_) => return,
        },
        SignalKind::Metrics => match ExportMetricsServiceRequest::decode(body) {
            Ok(r) => {
                round_trip(&r);
                Signal::Metrics(r)
            }
            Err(_) => return,
        },
    };
    let before = signal.item_count() as u64;
    // Equal for spans and log records; a metric's data points can be more on the wire, where
    // a later oneof field replaces the data an earlier one held.
    assert!(estimate.items >= before, "{estimate:?} for {before} items");
    if kind != SignalKind::Metrics {
        assert_eq!(estimate.items, before, "{estimate:?}");
    }
    let dropped = runbom_pipeline::receiver::screen(&mut signal);
    assert!(dropped <= before, "dropped more items than there were");
});
