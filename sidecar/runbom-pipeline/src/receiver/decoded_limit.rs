//! The memory a request may take once decoded, checked on its bytes before it is decoded.
//!
//! The size limit (`max_recv_msg_size_mib`) bounds the bytes received, not what they decode
//! to: 4 MiB of empty spans (`12 00`, two bytes each) decode to 2 million `Span` structs,
//! some 550 MB, and the `memory_limiter` only sees a request once it is decoded. So both
//! receivers estimate a request's decoded size from its bytes
//! ([`runbom_otlp::decoded_size`]) and refuse it, undecoded, when the estimate exceeds
//! [`PROTOBUF_BYTES_PER_BYTE`] bytes per byte received ([`JSON_BYTES_PER_BYTE`] for OTLP/JSON)
//! plus [`ALLOWANCE`]: gRPC `RESOURCE_EXHAUSTED`, HTTP 413, with a message naming the estimate
//! and the limit. The items the request held count as refused.
//!
//! The bounds are set between what real requests estimate at and what floods of empty items
//! do (estimated bytes per byte received, measured on requests of 1 to 11 MB):
//!
//! | request                                                            | protobuf | OTLP/JSON |
//! |--------------------------------------------------------------------|---------:|----------:|
//! | `GenAI` spans as `runbom-loadgen` sends them                       | 2.6      | 26        |
//! | spans without attributes; log records as the SDKs write them       | 3.8; 2.7 | 14; 22    |
//! | data points with three attributes of one-letter keys               | 5.4      | 37        |
//! | spans with 20 attributes of two-letter keys and integer values     | 5.6      | 46        |
//! | exponential histograms of 160 small bucket counts                  | 7.8      |           |
//! | log records of only a time and a two-letter body                   | 10.9     | 18        |
//! | **limit**                                                          | **16**   | **96**    |
//! | floods of empty array values (accepted); of empty attributes       | 16; 28   |           |
//! | floods of empty data points; links; log records; spans             | 44; 52; 92; 132 |    |
//! | floods of `{"a":1}`; of `{}` (as spans)                            |          | 134; 309  |
//!
//! OTLP/JSON is read into a `serde_json` tree before it is decoded, with a 632-byte map node
//! for every object that has members, hence its higher bound (attributes of two-letter keys
//! written without their default fields, as some senders write them, come to about 60). Decoding's peak is up to
//! about twice the estimate for protobuf (vectors grow by doubling) and below it for OTLP/JSON.
//!
//! This bounds one request; [`super::inflight`] bounds what the requests a server decodes at
//! once hold together.

use runbom_otlp::{
    decoded_size::{self, Estimate},
    signal::SignalKind,
};

use crate::ingest::Ingest;

/// Decoded bytes a protobuf request may take per byte received.
pub const PROTOBUF_BYTES_PER_BYTE: u64 = 16;
/// Decoded bytes (the JSON tree and the request) an OTLP/JSON request may take per byte.
pub const JSON_BYTES_PER_BYTE: u64 = 96;
/// Decoded bytes any request may take besides: a request of a few items is mostly its
/// resource and scope, which decode to far more than their few bytes.
pub const ALLOWANCE: u64 = 64 * 1024;

/// How a request's body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Self::Protobuf => "protobuf",
            Self::Json => "OTLP/JSON",
        }
    }

    fn bytes_per_byte(self) -> u64 {
        match self {
            Self::Protobuf => PROTOBUF_BYTES_PER_BYTE,
            Self::Json => JSON_BYTES_PER_BYTE,
        }
    }
}

/// A request refused because it would take too much memory decoded.
#[derive(Debug, thiserror::Error)]
#[error(
    "request too large once decoded: its {received} bytes of {} hold {} {}, about {} bytes \
     decoded, over the limit of {limit} bytes ({} per byte received + {ALLOWANCE})",
    format.name(), estimate.items, kind.item(), estimate.bytes, format.bytes_per_byte()
)]
pub(crate) struct DecodedTooLarge {
    kind: SignalKind,
    format: Format,
    received: usize,
    estimate: Estimate,
    limit: u64,
}

/// The largest decoded size allowed for a request of `received` bytes in `format`.
fn limit(format: Format, received: usize) -> u64 {
    (received as u64)
        .saturating_mul(format.bytes_per_byte())
        .saturating_add(ALLOWANCE)
}

/// Refuses `body`, a request of `kind` in `format`, when its decoded size would exceed the
/// limit; its items are then counted as refused by `ingest`'s receiver. Otherwise returns the
/// estimate, what the request takes from the server's [`super::inflight`] budget.
pub(crate) fn check(
    ingest: &Ingest,
    kind: SignalKind,
    format: Format,
    body: &[u8],
) -> Result<Estimate, DecodedTooLarge> {
    let limit = limit(format, body.len());
    let estimate = match format {
        Format::Protobuf => decoded_size::protobuf(kind, body),
        Format::Json => decoded_size::json(kind, body),
    };
    if estimate.bytes <= limit {
        return Ok(estimate);
    }
    ingest.count_rejected(kind, estimate.items);
    let too_large = DecodedTooLarge {
        kind,
        format,
        received: body.len(),
        estimate,
        limit,
    };
    tracing::debug!(receiver = ingest.receiver(), %too_large, "OTLP request refused");
    Err(too_large)
}
