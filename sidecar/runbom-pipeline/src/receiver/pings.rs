//! `keepalive.enforcement_policy` of the gRPC receiver: a client that pings more often than
//! the policy allows gets GOAWAY `ENHANCE_YOUR_CALM` (`too_many_pings`) and is disconnected,
//! as grpc-go (and so the Collector) does.
//!
//! The HTTP/2 server answers every ping and offers no hook to judge them, so the connection's
//! byte stream is watched instead ([`PingWatch`], fed by [`super::conn::Connection`]): frame
//! headers are followed in both directions (what the client sends after its preface, what the
//! server writes), which is enough to see the client's PINGs, the streams open and the
//! server's answers. The rules are grpc-go's (`http2_server.go`, `handlePing`):
//!
//! - a PING that comes sooner than `min_time` after the previous one is a strike; with no
//!   stream open and `permit_without_stream: false`, one sooner than 2 h after the previous
//!   one is;
//! - the server sending HEADERS or DATA forgives the strikes (the next ping is not judged);
//! - the third strike (more than [`MAX_PING_STRIKES`]) ends the connection.

use std::{collections::HashSet, time::Duration};

use tokio::time::Instant;

/// `keepalive.enforcement_policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PingPolicy {
    /// The least time between a client's pings (grpc-go's default: 5 min).
    pub min_time: Duration,
    /// Whether pings are allowed with no stream open (default false).
    pub permit_without_stream: bool,
}

impl Default for PingPolicy {
    fn default() -> Self {
        Self {
            min_time: Duration::from_mins(5),
            permit_without_stream: false,
        }
    }
}

/// Strikes tolerated; one more ends the connection (grpc-go's `maxPingStrikes`).
pub const MAX_PING_STRIKES: u32 = 2;
/// With no stream open (and `permit_without_stream: false`) a ping needs this much time since
/// the previous one (grpc-go's `defaultPingTimeout`).
const NO_STREAM_MIN_TIME: Duration = Duration::from_hours(2);
/// What a client sends before its first frame (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Streams followed at most; a client can have no more open than the server announces
/// (`max_concurrent_streams`), so this only bounds what a hostile client could make it keep.
const MAX_TRACKED_STREAMS: usize = 4096;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FrameHead {
    kind: u8,
    flags: u8,
    stream: u32,
}

/// Follows the frame headers of one direction of an HTTP/2 connection, across reads or
/// writes of any size.
#[derive(Debug)]
struct Frames {
    /// Bytes of the client preface still to come (0 for the server's direction).
    preface_left: usize,
    head: [u8; 9],
    head_len: usize,
    payload_left: usize,
}

impl Frames {
    fn new(preface: bool) -> Self {
        Self {
            preface_left: if preface { PREFACE.len() } else { 0 },
            head: [0; 9],
            head_len: 0,
            payload_left: 0,
        }
    }

    /// Whether the bytes so far end exactly after a whole frame.
    fn at_boundary(&self) -> bool {
        self.preface_left == 0 && self.head_len == 0 && self.payload_left == 0
    }

    /// Feeds `data`, calling `frame` for each frame header completed; `Err` when the client's
    /// preface is not HTTP/2's (then nothing more can be followed).
    fn feed(&mut self, mut data: &[u8], mut frame: impl FnMut(FrameHead)) -> Result<(), ()> {
        while !data.is_empty() {
            if self.preface_left > 0 {
                let at = PREFACE.len() - self.preface_left;
                let n = self.preface_left.min(data.len());
                if data[..n] != PREFACE[at..at + n] {
                    return Err(());
                }
                self.preface_left -= n;
                data = &data[n..];
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(data.len());
                self.payload_left -= n;
                data = &data[n..];
            } else {
                let n = (9 - self.head_len).min(data.len());
                self.head[self.head_len..self.head_len + n].copy_from_slice(&data[..n]);
                self.head_len += n;
                data = &data[n..];
                if self.head_len == 9 {
                    let h = self.head;
                    self.head_len = 0;
                    self.payload_left =
                        usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                    frame(FrameHead {
                        kind: h[3],
                        flags: h[4],
                        stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Judges one connection's client pings under a [`PingPolicy`].
#[derive(Debug)]
pub struct PingWatch {
    policy: PingPolicy,
    inbound: Frames,
    outbound: Frames,
    /// Streams the client opened that the server has not ended.
    open: HashSet<u32>,
    /// The highest stream the client opened (GOAWAY's last-stream-id).
    last_stream: u32,
    last_ping: Option<Instant>,
    strikes: u32,
    /// The server sent HEADERS or DATA since the last ping.
    forgive: bool,
    /// Not HTTP/2 (a bad preface): nothing is judged.
    lost: bool,
}

impl PingWatch {
    pub fn new(policy: PingPolicy) -> Self {
        Self {
            policy,
            inbound: Frames::new(true),
            outbound: Frames::new(false),
            open: HashSet::new(),
            last_stream: 0,
            last_ping: None,
            strikes: 0,
            forgive: false,
            lost: false,
        }
    }

    /// The client sent `data` at `now`: true when its pings broke the policy once too often
    /// and the connection must end.
    pub fn received(&mut self, data: &[u8], now: Instant) -> bool {
        if self.lost {
            return false;
        }
        let mut calm = false;
        let mut heads = Vec::new();
        if self.inbound.feed(data, |h| heads.push(h)).is_err() {
            self.lost = true;
            return false;
        }
        for h in heads {
            match h.kind {
                HEADERS if h.stream % 2 == 1 => {
                    self.last_stream = self.last_stream.max(h.stream);
                    if self.open.len() < MAX_TRACKED_STREAMS {
                        self.open.insert(h.stream);
                    }
                }
                RST_STREAM => {
                    self.open.remove(&h.stream);
                }
                PING if h.flags & ACK == 0 => calm |= self.ping(now),
                _ => {}
            }
        }
        calm
    }

    /// The server wrote `data`.
    pub fn sent(&mut self, data: &[u8]) {
        if self.lost {
            return;
        }
        let mut heads = Vec::new();
        // The server's direction has no preface, so this cannot fail.
        let _ = self.outbound.feed(data, |h| heads.push(h));
        for h in heads {
            match h.kind {
                DATA | HEADERS => {
                    self.forgive = true;
                    if h.flags & END_STREAM != 0 {
                        self.open.remove(&h.stream);
                    }
                }
                RST_STREAM => {
                    self.open.remove(&h.stream);
                }
                _ => {}
            }
        }
    }

    /// grpc-go's `handlePing`: true on the strike too many.
    fn ping(&mut self, now: Instant) -> bool {
        let last = self.last_ping.replace(now);
        if std::mem::take(&mut self.forgive) {
            self.strikes = 0;
            return false;
        }
        let Some(last) = last else { return false };
        let needed = if self.open.is_empty() && !self.policy.permit_without_stream {
            NO_STREAM_MIN_TIME
        } else {
            self.policy.min_time
        };
        if now.saturating_duration_since(last) < needed {
            self.strikes += 1;
        }
        self.strikes > MAX_PING_STRIKES
    }

    /// The GOAWAY `ENHANCE_YOUR_CALM` frame (`too_many_pings`) to send, when the server's
    /// output is between frames (otherwise the connection is just closed).
    pub fn goaway(&self) -> Option<Vec<u8>> {
        if !self.outbound.at_boundary() {
            return None;
        }
        let debug = b"too_many_pings";
        let len = 8 + debug.len();
        let mut f = Vec::with_capacity(9 + len);
        f.extend_from_slice(&u32::try_from(len).unwrap_or(0).to_be_bytes()[1..]);
        f.extend_from_slice(&[GOAWAY, 0, 0, 0, 0, 0]);
        f.extend_from_slice(&self.last_stream.to_be_bytes());
        f.extend_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
        f.extend_from_slice(debug);
        Some(f)
    }
}

#[cfg(test)]
#[path = "pings_tests.rs"]
mod tests;
