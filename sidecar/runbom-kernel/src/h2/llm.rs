//! An HTTP/2 stream that is a call to an LLM API (`runbom_genai::detect`, GenAI reading on):
//! its request body and its response's DATA frames are kept, bounded, and read by
//! `runbom-genai` when the stream ends, as the HTTP/1 capture's exchanges are (the response's
//! `:status`, `content-type` and `content-encoding` stand for the status line and head).

use runbom_event::{GenAi, HttpRequest};
use runbom_genai::{Exchange, Options};

use crate::httptrack::keep_within;

/// Most bytes of an LLM request body kept.
const REQUEST_MAX: usize = 64 << 10;
/// Most bytes of one LLM response kept.
pub const RESPONSE_MAX: usize = 1 << 20;

#[derive(Default)]
pub struct Llm {
    request: Vec<u8>,
    response: Vec<u8>,
    content_type: Option<String>,
    content_encoding: Option<String>,
    /// Bytes of the response were not kept.
    cut: bool,
}

impl Llm {
    /// Bytes of the request body, within `room` (what the connection and its tracker may
    /// still hold); returns the bytes kept.
    pub fn request_data(&mut self, data: &[u8], room: usize) -> usize {
        keep_within(&mut self.request, data, REQUEST_MAX, room)
    }

    pub fn response_head(&mut self, content_type: Option<&str>, content_encoding: Option<&str>) {
        self.content_type = content_type.map(str::to_owned);
        self.content_encoding = content_encoding.map(str::to_owned);
    }

    /// A DATA frame's payload (`truncated`: the capture did not keep all of it), within
    /// `room` bytes (what the connection and its tracker may still hold); returns the bytes
    /// kept.
    pub fn response_data(&mut self, data: &[u8], truncated: bool, room: usize) -> usize {
        let keep = keep_within(&mut self.response, data, RESPONSE_MAX, room);
        self.cut |= truncated || keep < data.len();
        keep
    }

    /// Bytes held: the request body's and the response's.
    pub fn held(&self) -> usize {
        self.request.len() + self.response.len()
    }

    /// The exchange read; `ended`: the response's stream ended (else it is partial).
    pub fn read(&self, h: &HttpRequest, options: Options, ended: bool) -> Option<GenAi> {
        let mut raw = format!("HTTP/1.1 {} \r\n", h.status.unwrap_or(0)).into_bytes();
        for (name, value) in [
            ("Content-Type", &self.content_type),
            ("Content-Encoding", &self.content_encoding),
        ] {
            if let Some(v) = value {
                raw.extend_from_slice(format!("{name}: {v}\r\n").as_bytes());
            }
        }
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(&self.response);
        runbom_genai::parse(
            &Exchange {
                host: h.host.as_deref(),
                target: &h.target,
                request_body: &self.request,
                response: if h.status.is_some() { &raw } else { &[] },
                response_cut: self.cut || !ended,
            },
            options,
        )
    }
}
