//! Token and call figures of the LLM exchanges the kernel saw, per agent (the calling
//! executable) and model, through runbom's meter (`Telemetry::meter`). Executables, models and
//! error types come from the workload: each is bounded (`telemetry::bounded`).
//! `gen_ai.client.token.usage` and `gen_ai.client.operation.duration` as the GenAI
//! conventions name them, and `runbom.gen_ai.calls` (errors carry `error.type`).

use opentelemetry::{
    KeyValue,
    metrics::{Counter, Histogram, Meter},
};
use runbom_event::{
    Detail, KernelEvent,
    semconv::{
        ERROR_TYPE, GEN_AI_OPERATION_NAME, GEN_AI_PROVIDER_NAME, GEN_AI_REQUEST_MODEL,
        GEN_AI_RESPONSE_MODEL, GEN_AI_TOKEN_TYPE, PROCESS_EXECUTABLE_NAME,
    },
};

use crate::telemetry::bounded::Bounded;

/// Distinct values kept per attribute (executables, models, error types).
const DISTINCT: usize = 64;

/// The instruments, made once per receiver.
pub struct GenAiMetrics {
    tokens: Histogram<u64>,
    duration: Histogram<f64>,
    calls: Counter<u64>,
    executables: Bounded,
    request_models: Bounded,
    response_models: Bounded,
    errors: Bounded,
}

impl GenAiMetrics {
    pub fn new(meter: &Meter) -> Self {
        Self {
            executables: Bounded::new(
                meter,
                "runbom.gen_ai.calls",
                PROCESS_EXECUTABLE_NAME,
                DISTINCT,
            ),
            request_models: Bounded::new(
                meter,
                "runbom.gen_ai.calls",
                GEN_AI_REQUEST_MODEL,
                DISTINCT,
            ),
            response_models: Bounded::new(
                meter,
                "runbom.gen_ai.calls",
                GEN_AI_RESPONSE_MODEL,
                DISTINCT,
            ),
            errors: Bounded::new(meter, "runbom.gen_ai.calls", ERROR_TYPE, DISTINCT),
            tokens: meter
                .u64_histogram("gen_ai.client.token.usage")
                .with_unit("{token}")
                .with_description("Tokens of the LLM calls runbom saw, by agent, model and type.")
                .with_boundaries(vec![
                    1.0,
                    4.0,
                    16.0,
                    64.0,
                    256.0,
                    1024.0,
                    4096.0,
                    16384.0,
                    65536.0,
                    262_144.0,
                    1_048_576.0,
                ])
                .build(),
            duration: meter
                .f64_histogram("gen_ai.client.operation.duration")
                .with_unit("s")
                .with_description("Duration of the LLM calls runbom saw, request to last byte.")
                .build(),
            calls: meter
                .u64_counter("runbom.gen_ai.calls")
                .with_unit("{call}")
                .with_description(
                    "LLM calls runbom saw, by agent and model; failed ones with error.type.",
                )
                .build(),
        }
    }

    /// Records the LLM exchanges among `events`.
    pub fn record(&self, events: &[KernelEvent]) {
        for ev in events {
            let Detail::HttpRequest(h) = &ev.detail else {
                continue;
            };
            let Some(g) = h.genai.as_deref() else {
                continue;
            };
            let mut attrs = vec![
                KeyValue::new(
                    PROCESS_EXECUTABLE_NAME,
                    self.executables.value(ev.process.exe_name()),
                ),
                KeyValue::new(GEN_AI_OPERATION_NAME, g.operation),
                KeyValue::new(GEN_AI_PROVIDER_NAME, g.provider),
            ];
            if let Some(m) = h.model.as_deref().or(g.request_model.as_deref()) {
                attrs.push(KeyValue::new(
                    GEN_AI_REQUEST_MODEL,
                    self.request_models.value(m),
                ));
            }
            if let Some(m) = &g.response_model {
                attrs.push(KeyValue::new(
                    GEN_AI_RESPONSE_MODEL,
                    self.response_models.value(m),
                ));
            }
            let mut call = attrs.clone();
            if let Some(e) = &g.error_type {
                call.push(KeyValue::new(ERROR_TYPE, self.errors.value(e)));
            }
            self.calls.add(1, &call);
            #[allow(clippy::cast_precision_loss)] // nanoseconds: exact to 104 days
            let seconds = ev.end_ns.saturating_sub(ev.start_ns) as f64 / 1e9;
            self.duration.record(seconds, &call);
            for (kind, n) in [("input", g.input_tokens), ("output", g.output_tokens)] {
                if let Some(n) = n {
                    let mut a = attrs.clone();
                    a.push(KeyValue::new(GEN_AI_TOKEN_TYPE, kind));
                    self.tokens.record(n, &a);
                }
            }
        }
    }
}
