//! A gRPC codec for OTLP requests encoded once and sent as they are (the `otlp` exporter's
//! retries, the load generator's identical requests), and a channel that sends such a request
//! without copying it at all ([`SendEncoded`]).

use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Buf as _, BufMut as _, Bytes};
use hyper::body::Frame;
use tonic::{
    codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::{Service, http},
};

/// Where tonic yields a frame of what it encoded (its own default).
const YIELD_THRESHOLD: usize = 32 << 10;
/// tonic's frame header: compression flag and length.
const FRAME_HEADER: usize = 5;

/// A gRPC codec for messages encoded beforehand: sends the bytes as they are, reads the
/// answer's and drops them (OTLP's `Export` responses carry only an optional partial success).
///
/// tonic copies each message into a frame buffer of its own; [`EncodedCodec::sized`] makes
/// that buffer the message's size, so a request is copied once, where tonic's default buffer
/// (8 KiB) grows, and is copied again, at every doubling of a request of megabytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct EncodedCodec {
    /// The size of the message sent, when known.
    message: Option<usize>,
}

impl EncodedCodec {
    /// A codec for a message of `len` bytes.
    #[must_use]
    pub fn sized(len: usize) -> Self {
        Self { message: Some(len) }
    }
}

impl Codec for EncodedCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self {
        *self
    }

    fn decoder(&mut self) -> Self {
        *self
    }
}

impl Encoder for EncodedCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        match self.message {
            Some(len) => BufferSettings::new(len + FRAME_HEADER, YIELD_THRESHOLD),
            None => BufferSettings::default(),
        }
    }
}

impl Decoder for EncodedCodec {
    type Item = ();
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        src.advance(src.remaining());
        Ok(Some(()))
    }
}

/// The encoded message of a request sent through [`SendEncoded`] (a request extension): sent as
/// the request's body in place of the one tonic made.
#[derive(Clone, Debug)]
pub struct EncodedMessage(pub Bytes);

/// A gRPC service (a tonic channel) that sends the body of a request carrying an
/// [`EncodedMessage`] straight from the message's bytes: tonic's client copies every message
/// into a frame buffer of its own, allocated for each call (a page fault per 4 KiB of a request
/// of megabytes, then the copy). The request is otherwise tonic's: headers, path, metadata, and
/// the answer read as tonic reads it. Only for messages sent uncompressed: a compressed one is
/// written by tonic's codec.
#[derive(Clone, Debug)]
pub struct SendEncoded<S>(pub S);

impl<S> Service<http::Request<tonic::body::Body>> for SendEncoded<S>
where
    S: Service<http::Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        if let Some(EncodedMessage(message)) = request.extensions_mut().remove()
            // gRPC's prefix holds a 32-bit length: a larger message keeps the body tonic made,
            // which tonic refuses to send.
            && let Ok(len) = u32::try_from(message.len())
        {
            *request.body_mut() = tonic::body::Body::new(MessageBody::new(message, len));
        }
        self.0.call(request)
    }
}

/// One uncompressed gRPC message: its 5-byte prefix, then its bytes as they are.
struct MessageBody {
    prefix: Option<Bytes>,
    message: Option<Bytes>,
}

impl MessageBody {
    /// `message`, whose length is `len`.
    fn new(message: Bytes, len: u32) -> Self {
        let mut prefix = [0u8; FRAME_HEADER];
        // Not compressed (the first byte), then the length.
        prefix[1..].copy_from_slice(&len.to_be_bytes());
        Self {
            prefix: Some(Bytes::copy_from_slice(&prefix)),
            message: Some(message).filter(|m| !m.is_empty()),
        }
    }
}

impl hyper::body::Body for MessageBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let next = this.prefix.take().or_else(|| this.message.take());
        Poll::Ready(next.map(|data| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.message.is_none()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    /// The body is the message with gRPC's prefix (uncompressed, its length), as tonic frames it.
    #[tokio::test]
    async fn a_message_body_is_the_prefixed_message() {
        for message in [&b"\x0a\x03abc"[..], b""] {
            let len = u32::try_from(message.len()).expect("a short message");
            let body = MessageBody::new(Bytes::copy_from_slice(message), len);
            let sent = body.collect().await.expect("infallible").to_bytes();
            let mut framed = vec![0, 0, 0, 0, message.len() as u8];
            framed.extend_from_slice(message);
            assert_eq!(sent[..], framed[..]);
        }
    }
}
