//! Small HTTP and raw-gRPC clients, to send what a well-behaved client would not.

use std::net::SocketAddr;

use bytes::{Buf as _, BufMut as _, Bytes};
use http_body_util::{BodyExt as _, Full};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

/// An HTTP answer, body read.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The `Retry-After` header in seconds, when there is one that is a number.
    #[must_use]
    pub fn retry_after_seconds(&self) -> Option<u64> {
        self.headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }
}

/// Sends `method path` with `headers` and `body` to `addr`.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .expect("the test request should be well-formed");
    let response = client
        .request(request)
        .await
        .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"));
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("reading the answer to {method} {path} failed: {e}"))
        .to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

/// POSTs `body` with `content_type` (and `Content-Encoding: gzip` when `gzipped`).
pub async fn post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    gzipped: bool,
    body: Vec<u8>,
) -> Answer {
    let mut headers = vec![("content-type", content_type)];
    if gzipped {
        headers.push(("content-encoding", "gzip"));
    }
    http(addr, "POST", path, &headers, body).await
}

/// A tonic codec that sends and receives raw bytes, to send malformed gRPC payloads.
#[derive(Clone, Copy, Default)]
pub struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// Calls `/opentelemetry.proto.collector.<signal>.v1.<Service>/Export` with raw `payload`.
pub async fn grpc_raw(
    addr: SocketAddr,
    service: &str,
    payload: Vec<u8>,
    gzipped: bool,
) -> Result<Vec<u8>, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("the test endpoint is a valid URI")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to {addr} failed: {e}"));
    let mut grpc = tonic::client::Grpc::new(channel);
    if gzipped {
        grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
    }
    grpc.ready()
        .await
        .unwrap_or_else(|e| panic!("the gRPC channel to {addr} is not ready: {e}"));
    let path = format!("/{service}/Export")
        .parse()
        .expect("the method path is valid");
    grpc.unary(tonic::Request::new(payload), path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}
