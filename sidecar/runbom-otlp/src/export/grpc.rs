//! OTLP/gRPC exporter (tonic).

use opentelemetry_proto::tonic::collector::{
    logs::v1::logs_service_client::LogsServiceClient,
    trace::v1::trace_service_client::TraceServiceClient,
};
use tonic::{
    codec::CompressionEncoding,
    metadata::{MetadataKey, MetadataMap, MetadataValue},
    transport::{Channel, Endpoint},
};

use super::{ExportError, NetworkSettings};
use crate::convert::OtlpBatch;

pub struct GrpcExporter {
    endpoint: String,
    traces: TraceServiceClient<Channel>,
    logs: LogsServiceClient<Channel>,
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
        let mut logs = LogsServiceClient::new(channel);
        if settings.gzip {
            traces = traces.send_compressed(CompressionEncoding::Gzip);
            logs = logs.send_compressed(CompressionEncoding::Gzip);
        }
        Ok(Self {
            endpoint,
            traces,
            logs,
            metadata,
            settings,
        })
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        *req.metadata_mut() = self.metadata.clone();
        req
    }

    pub async fn export(&mut self, batch: &OtlpBatch) -> Result<(), ExportError> {
        let fail = |status| ExportError::Grpc {
            endpoint: self.endpoint.clone(),
            status: Box::new(status),
        };
        let retry = self.settings.retry;
        if !batch.traces.resource_spans.is_empty() {
            retry
                .run(|| {
                    let mut client = self.traces.clone();
                    let req = self.request(batch.traces.clone());
                    async move { client.export(req).await.map(drop).map_err(fail) }
                })
                .await?;
        }
        if !batch.logs.resource_logs.is_empty() {
            retry
                .run(|| {
                    let mut client = self.logs.clone();
                    let req = self.request(batch.logs.clone());
                    async move { client.export(req).await.map(drop).map_err(fail) }
                })
                .await?;
        }
        Ok(())
    }
}
