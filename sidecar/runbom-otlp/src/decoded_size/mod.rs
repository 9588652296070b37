//! How much memory an encoded export request takes once decoded, estimated from its bytes
//! without decoding it, so that a receiver can refuse a request before decoding it.
//!
//! A request's bytes on the wire do not bound what it takes decoded: an empty span is two
//! bytes of protobuf (`12 00`) but a 264-byte `Span` struct, so 4 MiB of them decode to some
//! 550 MB. [`protobuf()`] walks the wire format, [`json()`] scans the characters
//! of an OTLP/JSON body; neither allocates.
//!
//! The estimate counts what the decoded request holds, not the spare room of its vectors:
//! vectors grow by doubling, so decoding's peak is up to about twice the estimate (2.3 times
//! at most in the measurements of the receivers' `decoded_limit`). It counts everything
//! decoding reads before a fault: a request cut short or malformed is estimated up to the
//! fault, which is what decoding allocates before it fails, and left for the decoder to
//! refuse.

pub mod json;
pub mod protobuf;

pub use json::json;
pub use protobuf::protobuf;

/// What decoding a request takes, estimated from its bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Estimate {
    /// Bytes of memory the decoded request holds (see [`protobuf()`] and [`json()`] for what
    /// is counted).
    pub bytes: u64,
    /// The items it holds: spans, log records or metric data points.
    pub items: u64,
}

impl Estimate {
    fn add(&mut self, bytes: usize) {
        self.bytes = self.bytes.saturating_add(bytes as u64);
    }
}
