//! OTLP data, with no I/O: kernel events as OTLP ([`convert`](mod@convert)), the OTLP request
//! types ([`signal`]) and OTLP/JSON as the file exporter writes it and the HTTP receiver takes
//! it ([`json`]), protobuf of trace and log requests with lengths computed once ([`encode`]),
//! an encoded request cut into smaller ones ([`split`]), and kernel events written as log
//! records and spans without building the request first ([`kernel_logs`]), and spans written
//! with attributes a processor added beside them ([`annotated`]), and log records put together
//! from parts held once ([`shared_logs`]), and what a request takes once decoded, read from its
//! bytes before it is decoded ([`decoded_size`]).

mod added;
pub mod annotated;
pub mod convert;
pub mod decoded_size;
pub mod encode;
pub mod json;
pub mod kernel_logs;
pub mod shared_logs;
pub mod signal;
pub mod split;

pub use added::AttributeSet;
pub use annotated::AnnotatedTraces;
pub use kernel_logs::{KernelLogs, KernelSpans};
pub use shared_logs::SharedLogs;

pub use convert::{
    ConvertOptions, OtlpBatch, Placement, convert, event_attributes, process_resource,
};
pub use convert::{convert_placed_spans, convert_spans, placed_span_ids, span_ids};
