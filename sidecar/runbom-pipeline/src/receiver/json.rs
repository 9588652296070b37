//! OTLP/JSON bodies: requests are decoded by [`runbom_otlp::json`]; the responses are written
//! here.

use runbom_otlp::signal::SignalKind;
use serde_json::{Map, Value};

pub(crate) use runbom_otlp::json::{JsonError, decode};

use super::validate::PartialSuccess;

/// The `Export*ServiceResponse` in OTLP/JSON; `{}` for a full success.
pub(crate) fn response(kind: SignalKind, partial: &PartialSuccess) -> Vec<u8> {
    let mut response = Map::new();
    if !partial.is_empty() {
        let rejected = match kind {
            SignalKind::Traces => "rejectedSpans",
            SignalKind::Logs => "rejectedLogRecords",
            SignalKind::Metrics => "rejectedDataPoints",
        };
        let mut detail = Map::new();
        // int64 is a string in the protobuf JSON mapping.
        detail.insert(rejected.into(), partial.rejected.to_string().into());
        detail.insert("errorMessage".into(), partial.error_message.clone().into());
        response.insert("partialSuccess".into(), detail.into());
    }
    Value::Object(response).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_success_uses_string_int64() {
        let partial = PartialSuccess {
            rejected: 2,
            error_message: "why".into(),
        };
        let json: Value = serde_json::from_slice(&response(SignalKind::Logs, &partial))
            .expect("the response is JSON");
        assert_eq!(json["partialSuccess"]["rejectedLogRecords"], "2", "{json}");
        assert_eq!(
            response(SignalKind::Traces, &PartialSuccess::default()),
            b"{}"
        );
    }
}
