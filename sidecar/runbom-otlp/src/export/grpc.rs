//! OTLP/gRPC exporter (tonic).

use opentelemetry_proto::tonic::collector::{
    logs::v1::logs_service_client::LogsServiceClient,
    metrics::v1::metrics_service_client::MetricsServiceClient,
    trace::v1::trace_service_client::TraceServiceClient,
};
use tonic::{
    codec::CompressionEncoding,
    metadata::{MetadataKey, MetadataMap, MetadataValue},
    transport::{Channel, Endpoint},
};

use super::{ExportError, NetworkSettings};
use crate::signal::Signal;

pub struct GrpcExporter {
    endpoint: String,
    traces: TraceServiceClient<Channel>,
    logs: LogsServiceClient<Channel>,
    metrics: MetricsServiceClient<Channel>,
    metadata: MetadataMap,
    settings: NetworkSettings,
}

impl GrpcExporter {
    /// Connects lazily: a collector that is not up yet is not an error until data is sent.
    pub fn new(settings: NetworkSettings) -> Result<Self, ExportError> {
        let endpoint = if settings.endpoint.contains("://") {
            settings.endpoint.clone()
        } else {
            format!("http://{}", settings.endpoint)
        };
        let bad = |reason: String| ExportError::Endpoint {
            exporter: "otlp",
            endpoint: settings.endpoint.clone(),
            reason,
        };
        let channel = Endpoint::from_shared(endpoint.clone())
            .map_err(|e| bad(e.to_string()))?
            .timeout(settings.timeout)
            .connect_lazy();
        let mut metadata = MetadataMap::new();
        for (name, value) in &settings.headers {
            let header_err = |reason: &str| ExportError::Header {
                exporter: "otlp",
                name: name.clone(),
                reason: reason.into(),
            };
            let key = MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| header_err("not a valid gRPC metadata name"))?;
            let value = MetadataValue::try_from(value.as_str())
                .map_err(|_| header_err("value is not valid ASCII"))?;
            metadata.insert(key, value);
        }
        let mut traces = TraceServiceClient::new(channel.clone());
        let mut logs = LogsServiceClient::new(channel.clone());
        let mut metrics = MetricsServiceClient::new(channel);
        if settings.gzip {
            traces = traces.send_compressed(CompressionEncoding::Gzip);
            logs = logs.send_compressed(CompressionEncoding::Gzip);
            metrics = metrics.send_compressed(CompressionEncoding::Gzip);
        }
        Ok(Self {
            endpoint,
            traces,
            logs,
            metrics,
            metadata,
            settings,
        })
    }

    pub async fn export(&mut self, signal: &Signal) -> Result<(), ExportError> {
        let fail = |status| ExportError::Grpc {
            endpoint: self.endpoint.clone(),
            status: Box::new(status),
        };
        let retry = self.settings.retry;
        retry
            .run(&self.settings.retries, || {
                let (traces, logs, metrics) =
                    (self.traces.clone(), self.logs.clone(), self.metrics.clone());
                let signal = signal.clone();
                let metadata = self.metadata.clone();
                async move {
                    let result = match signal {
                        Signal::Traces(r) => {
                            let mut c = traces;
                            c.export(request(r, metadata)).await.map(drop)
                        }
                        Signal::Logs(r) => {
                            let mut c = logs;
                            c.export(request(r, metadata)).await.map(drop)
                        }
                        Signal::Metrics(r) => {
                            let mut c = metrics;
                            c.export(request(r, metadata)).await.map(drop)
                        }
                    };
                    result.map_err(fail)
                }
            })
            .await
    }
}

fn request<T>(msg: T, metadata: MetadataMap) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    *req.metadata_mut() = metadata;
    req
}
