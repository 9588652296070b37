//! One client HTTP/2 connection: its two directions cut into frames, an HPACK decoder per
//! direction (the dynamic tables follow every header block, so none may be skipped), and its
//! open streams, each of which becomes one `http.request` (RFC 9113 §5, RFC 7541).

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Instant};

use loona_hpack::Decoder;
use runbom_event::{
    Capture, Detail, GrpcCall, HttpRequest, HttpVersion, KernelEvent, ProcessInfo, http, redact,
};

use super::{
    FRAMING_MAX, HELD_MAX, TABLES_MAX,
    frames::{self, DATA_KEEP, Frame, FrameReader, Lost, flag, kind},
    llm::Llm,
    tables::{self, TABLE_DEFAULT},
};

/// Longest header value kept (as for HTTP/1 heads).
pub(super) const VALUE_MAX: usize = 512;
/// Most fields of the names runbom keeps (ten) that it reads in one block. An HPACK reference
/// to a table entry is one byte, so a hostile block can repeat a large value a hundred thousand
/// times: past this, further fields are decoded (the table must stay in step) but not read.
const FIELDS_READ_MAX: u16 = 64;
/// Most streams open at once on one connection (the oldest is released past it).
const STREAMS_MAX: usize = 256;
/// Largest header block assembled from CONTINUATION frames.
const BLOCK_MAX: usize = 256 * 1024;
/// Most LLM request and response bytes held over a connection's open streams (the tracker's
/// [`HELD_MAX`] bounds them over all connections).
const LLM_HELD_MAX: usize = 8 << 20;

/// Which side of the connection bytes went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Written by the client: requests.
    Write = 0,
    /// Read by the client: responses.
    Read = 1,
}

/// Who moved a record's bytes, and when (Unix nanoseconds).
pub struct Origin {
    pub tid: u32,
    pub cgroup_id: u64,
    pub process: Arc<ProcessInfo>,
    pub time_ns: u64,
}

/// A header block being assembled from HEADERS (or `PUSH_PROMISE`) and CONTINUATION frames.
struct Block {
    stream: u32,
    end_stream: bool,
    /// A `PUSH_PROMISE`'s block: decoded to keep the table in step, then ignored.
    promise: bool,
    bytes: Vec<u8>,
}

/// What the connections of one tracker share: the requests they completed, and the bytes held
/// over all of them for LLM calls (at most [`HELD_MAX`]), for framing (at most
/// [`FRAMING_MAX`]) and in HPACK tables (at most [`TABLES_MAX`]).
#[derive(Default)]
pub struct Shared {
    /// Requests completed, until the tracker takes them.
    pub done: Vec<KernelEvent>,
    /// Bytes held for LLM calls (request bodies and responses): added as a stream keeps them,
    /// taken off as it ends. Past the bound, what does not fit is not kept (the call is read
    /// as cut).
    pub held: usize,
    /// Bytes held for header blocks still being assembled and frames still being read: added
    /// as a block or a frame keeps them, taken off as it ends. Past the bound the connection
    /// is lost (its header tables could not follow).
    pub framing: usize,
    /// The HPACK tables' maximum sizes (what each may hold): added as a connection starts and
    /// as a block's size updates change them, taken off as it ends. An update past the bound
    /// loses its connection; a new connection whose tables do not fit loses the one with the
    /// largest.
    pub tables: usize,
}

struct Stream {
    event: KernelEvent,
    /// The start of the request body, while `model` is looked for (JSON bodies only).
    body: Option<Vec<u8>>,
    since: Instant,
    /// Set for a call to an LLM API when GenAI reading is on.
    llm: Option<Box<Llm>>,
}

pub struct Connection {
    pub pid: u32,
    capture: Capture,
    peer: Option<SocketAddr>,
    readers: [FrameReader; 2],
    decoders: [Decoder<'static>; 2],
    /// Each decoder's table's maximum size, counted in [`Shared::tables`].
    tables: [usize; 2],
    blocks: [Option<Block>; 2],
    streams: HashMap<u32, Stream>,
    pub last_seen: Instant,
    /// GenAI reading (`None`: off).
    genai: Option<runbom_genai::Options>,
    /// LLM request and response bytes held over the open streams.
    llm_held: usize,
}

impl Connection {
    /// A connection whose tables are counted in `out` (at their default size).
    #[must_use]
    pub fn new(
        pid: u32,
        capture: Capture,
        peer: Option<SocketAddr>,
        genai: Option<runbom_genai::Options>,
        out: &mut Shared,
    ) -> Self {
        let decoder = || {
            let mut d = Decoder::new();
            d.set_max_allowed_table_size(TABLE_DEFAULT);
            d
        };
        out.tables += 2 * TABLE_DEFAULT;
        Self {
            pid,
            capture,
            peer,
            readers: [FrameReader::new(true), FrameReader::new(false)],
            decoders: [decoder(), decoder()],
            tables: [TABLE_DEFAULT; 2],
            blocks: [None, None],
            streams: HashMap::new(),
            last_seen: Instant::now(),
            genai,
            llm_held: 0,
        }
    }

    /// The bytes of one captured buffer (`total` is what it really carried); requests that
    /// completed go to `out`.
    ///
    /// # Errors
    /// [`Lost`] when the connection can no longer be followed; its streams are in `out`.
    pub fn push(
        &mut self,
        dir: Direction,
        data: &[u8],
        total: u64,
        origin: &Origin,
        out: &mut Shared,
    ) -> Result<(), Lost> {
        self.last_seen = Instant::now();
        let mut frames = Vec::new();
        let reader = &mut self.readers[dir as usize];
        let buffered = reader.buffered();
        let pushed = reader.push(data, total, &mut frames);
        // The frame left unfinished holds its payload's room until the next bytes come.
        out.framing = out.framing - buffered + reader.buffered();
        let within = if out.framing > FRAMING_MAX {
            Err(Lost::OverBudget)
        } else {
            Ok(())
        };
        let handled = frames
            .into_iter()
            .try_for_each(|f| self.frame(dir, &f, origin, out));
        if let Err(lost) = pushed.and(within).and(handled) {
            self.finish_all(origin.time_ns, out);
            return Err(lost);
        }
        Ok(())
    }

    /// Releases every open stream at `end_ns`, the header blocks being assembled and the
    /// tables' count (connection lost, evicted or shutdown).
    pub fn finish_all(&mut self, end_ns: u64, out: &mut Shared) {
        let ids: Vec<u32> = self.streams.keys().copied().collect();
        for id in ids {
            self.finish(id, end_ns, out);
        }
        for block in self.blocks.iter_mut().filter_map(Option::take) {
            out.framing -= block.bytes.len();
        }
        for (reader, client) in self.readers.iter_mut().zip([true, false]) {
            out.framing -= reader.buffered();
            *reader = FrameReader::new(client);
        }
        out.tables -= self.tables();
        self.tables = [0; 2];
    }

    /// The maximum sizes of its HPACK tables, as counted in [`Shared::tables`].
    #[must_use]
    pub fn tables(&self) -> usize {
        self.tables.iter().sum()
    }

    /// Releases streams that waited longer than `wait` for their response.
    pub fn expire(&mut self, now: Instant, wait: std::time::Duration, out: &mut Shared) {
        let old: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| now.duration_since(s.since) >= wait)
            .map(|(&id, _)| id)
            .collect();
        for id in old {
            let end = self.streams[&id].event.start_ns;
            self.finish(id, end, out);
        }
    }

    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.streams.is_empty()
    }

    /// Bytes the open streams hold for LLM calls, and the blocks being assembled and the
    /// frames being read hold, counted one by one.
    #[cfg(test)]
    pub fn held_counted(&self) -> (usize, usize) {
        let streams = self
            .streams
            .values()
            .filter_map(|s| s.llm.as_ref())
            .map(|l| l.held())
            .sum();
        let blocks: usize = self.blocks.iter().flatten().map(|b| b.bytes.len()).sum();
        let frames: usize = self.readers.iter().map(FrameReader::buffered).sum();
        (streams, blocks + frames)
    }

    /// Streams waiting for their response.
    #[must_use]
    pub fn open(&self) -> usize {
        self.streams.len()
    }

    /// Releases the stream that has waited longest (the tracker is over its bound).
    pub fn finish_oldest(&mut self, end_ns: u64, out: &mut Shared) {
        if let Some(&oldest) = self
            .streams
            .iter()
            .min_by_key(|(_, s)| s.since)
            .map(|(id, _)| id)
        {
            self.finish(oldest, end_ns, out);
        }
    }

    fn frame(
        &mut self,
        dir: Direction,
        f: &Frame,
        origin: &Origin,
        out: &mut Shared,
    ) -> Result<(), Lost> {
        let d = dir as usize;
        if self.blocks[d].is_some() && f.kind != kind::CONTINUATION {
            return Err(Lost::Malformed);
        }
        match f.kind {
            kind::HEADERS | kind::PUSH_PROMISE | kind::CONTINUATION => {
                // A header block cut short cannot be decoded, and the table would go wrong.
                if f.truncated {
                    return Err(Lost::Gap);
                }
                let fragment = frames::header_fragment(f).ok_or(Lost::Malformed)?;
                let stored = self.blocks[d].take();
                if let Some(b) = &stored {
                    out.framing -= b.bytes.len();
                }
                let block = match stored {
                    Some(mut b) if f.kind == kind::CONTINUATION && b.stream == f.stream => {
                        if b.bytes.len() + fragment.len() > BLOCK_MAX {
                            return Err(Lost::Malformed);
                        }
                        b.bytes.extend_from_slice(fragment);
                        b
                    }
                    None if f.kind != kind::CONTINUATION => Block {
                        stream: f.stream,
                        end_stream: f.flags & flag::END_STREAM != 0,
                        promise: f.kind == kind::PUSH_PROMISE,
                        bytes: fragment.to_vec(),
                    },
                    _ => return Err(Lost::Malformed),
                };
                if f.flags & flag::END_HEADERS == 0 {
                    // Held until the block ends, within the tracker's bound: past it the
                    // connection cannot be followed (its tables would go wrong).
                    if out.framing + block.bytes.len() > FRAMING_MAX {
                        return Err(Lost::OverBudget);
                    }
                    out.framing += block.bytes.len();
                    self.blocks[d] = Some(block);
                    return Ok(());
                }
                self.block(dir, &block, origin, out)
            }
            kind::DATA => {
                match dir {
                    Direction::Write => self.body(f.stream, frames::data(f), out),
                    Direction::Read => {
                        self.response_data(f, out);
                        if f.flags & flag::END_STREAM != 0 {
                            self.finish_ended(f.stream, origin.time_ns, out);
                        }
                    }
                }
                Ok(())
            }
            kind::RST_STREAM => {
                self.finish(f.stream, origin.time_ns, out);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// A complete header block: a request (written), a response or trailers (read).
    fn block(
        &mut self,
        dir: Direction,
        block: &Block,
        origin: &Origin,
        out: &mut Shared,
    ) -> Result<(), Lost> {
        let d = dir as usize;
        let size = tables::size_after(&block.bytes, self.tables[d]).ok_or(Lost::Malformed)?;
        if size != self.tables[d] {
            // Past the tracker's bound the table cannot follow: the connection is lost.
            let total = out.tables - self.tables[d] + size;
            if total > TABLES_MAX {
                return Err(Lost::OverBudget);
            }
            out.tables = total;
            self.tables[d] = size;
            self.decoders[d].set_max_allowed_table_size(size);
        }
        let mut fields = Fields::default();
        self.decoders[d]
            .decode_with_cb(&block.bytes, |name, value| fields.add(&name, &value))
            .map_err(|_| Lost::Malformed)?;
        if block.promise {
            return Ok(());
        }
        match dir {
            Direction::Write => {
                if !self.streams.contains_key(&block.stream) {
                    self.request(block.stream, fields, block.end_stream, origin, out);
                }
            }
            Direction::Read => {
                if let Some(s) = self.streams.get_mut(&block.stream)
                    && let Detail::HttpRequest(h) = &mut s.event.detail
                {
                    h.status = h.status.or(fields.status);
                    if let (Some(grpc), Some(code)) = (&mut h.grpc, fields.grpc_status) {
                        grpc.status = Some(code);
                    }
                    if let (Some(llm), Some(_)) = (&mut s.llm, fields.status) {
                        llm.response_head(
                            fields.content_type.as_deref(),
                            fields.content_encoding.as_deref(),
                        );
                    }
                }
                if block.end_stream {
                    self.finish_ended(block.stream, origin.time_ns, out);
                }
            }
        }
        Ok(())
    }

    fn request(
        &mut self,
        stream: u32,
        f: Fields,
        end_stream: bool,
        origin: &Origin,
        out: &mut Shared,
    ) {
        let (Some(method), Some(path)) = (f.method, f.path) else {
            return;
        };
        if self.streams.len() >= STREAMS_MAX {
            self.finish_oldest(origin.time_ns, out);
        }
        let grpc = f
            .content_type
            .as_deref()
            .filter(|t| t.starts_with("application/grpc"))
            .and_then(|_| GrpcCall::from_path(&path));
        let json = f
            .content_type
            .as_deref()
            .is_some_and(|t| t.contains("json"));
        let event = KernelEvent {
            pid: self.pid,
            tid: origin.tid,
            cgroup_id: origin.cgroup_id,
            start_ns: origin.time_ns,
            end_ns: origin.time_ns,
            process: Arc::clone(&origin.process),
            detail: Detail::HttpRequest(Box::new(HttpRequest {
                capture: self.capture,
                method,
                host: f.authority.or_else(|| self.peer.map(|p| p.to_string())),
                target: redact::cut_chars(&http::redact_target(&path), VALUE_MAX).to_owned(),
                peer: self.peer,
                traceparent: f.traceparent,
                user_agent: f.user_agent,
                body_size: f.content_length,
                model: None,
                status: None,
                version: HttpVersion::Http2,
                grpc,
                genai: None,
                fd: None,
            })),
        };
        let body = (json && !end_stream).then(Vec::new);
        let llm = match &event.detail {
            Detail::HttpRequest(h)
                if self.genai.is_some()
                    && runbom_genai::detect(h.host.as_deref(), &h.target).is_some() =>
            {
                Some(Box::default())
            }
            _ => None,
        };
        self.streams.insert(
            stream,
            Stream {
                event,
                body,
                since: Instant::now(),
                llm,
            },
        );
    }

    /// Request body bytes on `stream`: `model` is read from the first [`DATA_KEEP`] bytes.
    fn body(&mut self, stream: u32, data: &[u8], out: &mut Shared) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        if let Some(llm) = &mut s.llm {
            let room = LLM_HELD_MAX
                .saturating_sub(self.llm_held)
                .min(HELD_MAX.saturating_sub(out.held));
            let kept = llm.request_data(data, room);
            self.llm_held += kept;
            out.held += kept;
        }
        let Some(body) = &mut s.body else {
            return;
        };
        let room = DATA_KEEP.saturating_sub(body.len()).min(data.len());
        body.extend_from_slice(&data[..room]);
        let model = http::model(body);
        if model.is_some() || body.len() >= DATA_KEEP {
            s.body = None;
            if let Detail::HttpRequest(h) = &mut s.event.detail {
                h.model = model;
            }
        }
    }

    /// Response bytes on `stream`, kept when it is an LLM call and both the connection's and
    /// the tracker's bounds leave room (else the response is marked cut).
    fn response_data(&mut self, f: &Frame, out: &mut Shared) {
        let room = LLM_HELD_MAX
            .saturating_sub(self.llm_held)
            .min(HELD_MAX.saturating_sub(out.held));
        if let Some(llm) = self.streams.get_mut(&f.stream).and_then(|s| s.llm.as_mut()) {
            let kept = llm.response_data(frames::data(f), f.truncated, room);
            self.llm_held += kept;
            out.held += kept;
        }
    }

    /// The response on `stream` ended (`END_STREAM`): the request is complete.
    fn finish_ended(&mut self, stream: u32, end_ns: u64, out: &mut Shared) {
        self.end(stream, end_ns, true, out);
    }

    /// Releases `stream` before its response ended (reset, lost, evicted, shutdown).
    fn finish(&mut self, stream: u32, end_ns: u64, out: &mut Shared) {
        self.end(stream, end_ns, false, out);
    }

    fn end(&mut self, stream: u32, end_ns: u64, ended: bool, out: &mut Shared) {
        if let Some(mut s) = self.streams.remove(&stream) {
            if let (Some(body), Detail::HttpRequest(h)) = (&s.body, &mut s.event.detail) {
                h.model = http::model(body);
            }
            if let (Some(llm), Some(options), Detail::HttpRequest(h)) =
                (&s.llm, self.genai, &mut s.event.detail)
            {
                self.llm_held -= llm.held();
                out.held -= llm.held();
                h.genai = llm.read(h, options, ended).map(Box::new);
                if let Some(g) = &h.genai
                    && h.model.is_none()
                {
                    h.model.clone_from(&g.request_model);
                }
            }
            s.event.end_ns = end_ns.max(s.event.start_ns);
            out.done.push(s.event);
        }
    }
}

/// What a header block says that runbom keeps (names are lower case in HTTP/2).
#[derive(Default)]
struct Fields {
    method: Option<String>,
    path: Option<String>,
    authority: Option<String>,
    traceparent: Option<runbom_event::TraceParent>,
    user_agent: Option<String>,
    content_length: Option<u64>,
    content_type: Option<String>,
    content_encoding: Option<String>,
    status: Option<u16>,
    grpc_status: Option<u32>,
    /// Fields of the kept names read so far (see [`FIELDS_READ_MAX`]).
    read: u16,
}

impl Fields {
    fn add(&mut self, name: &[u8], value: &[u8]) {
        if self.read >= FIELDS_READ_MAX {
            return;
        }
        // Only the bytes of `VALUE_MAX` characters are converted, however long the value.
        let converted = || String::from_utf8_lossy(&value[..value.len().min(VALUE_MAX * 4)]);
        let text = || redact::cut_chars(&converted(), VALUE_MAX).to_owned();
        let redacted = || redact::text_cut(&converted(), VALUE_MAX);
        match name {
            b":method" => self.method = Some(text()),
            // Cut once redacted, as the request's target.
            b":path" => self.path = Some(converted().into_owned()),
            b":authority" => self.authority = Some(redacted()),
            b"traceparent" => self.traceparent = http::parse_traceparent(&text()),
            b"user-agent" => self.user_agent = Some(redacted()),
            b"content-length" => self.content_length = text().parse().ok(),
            b"content-type" => self.content_type = Some(text().to_ascii_lowercase()),
            b"content-encoding" => self.content_encoding = Some(text().to_ascii_lowercase()),
            b":status" => self.status = text().parse().ok(),
            b"grpc-status" => self.grpc_status = text().parse().ok(),
            _ => return,
        }
        self.read += 1;
    }
}
