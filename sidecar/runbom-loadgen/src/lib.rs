//! The load `runbom-loadgen` sends, as a library so that benchmarks measure the same spans.

pub mod genai;
