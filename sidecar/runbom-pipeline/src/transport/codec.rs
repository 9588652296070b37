//! A gRPC codec for OTLP requests encoded once and sent as they are (the `otlp` exporter's
//! retries, the load generator's identical requests).

use bytes::{Buf as _, BufMut as _, Bytes};
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

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
