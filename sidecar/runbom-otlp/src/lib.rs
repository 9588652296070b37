//! OTLP data, with no I/O: kernel events as OTLP ([`convert`](mod@convert)), the OTLP request
//! types ([`signal`]) and OTLP/JSON as the file exporter writes it and the HTTP receiver takes
//! it ([`json`]), protobuf of trace and log requests with lengths computed once ([`encode`]),
//! and an encoded request cut into smaller ones ([`split`]).

pub mod convert;
pub mod encode;
pub mod json;
pub mod signal;
pub mod split;

pub use convert::{
    ConvertOptions, OtlpBatch, Placement, convert, event_attributes, process_resource,
};
