//! Checked decoding of ring-buffer records (userspace only).
//!
//! A record is read only after its kind is known and its length matches what that kind needs,
//! so a stale or corrupt record is an error, never an out-of-bounds read.

use core::{fmt, mem::size_of, ptr};

use crate::{
    ARGV_MAX, DnsEvent, EventHeader, EventKind, ExecEvent, ExitEvent, FileOpenEvent,
    FileOpenResult, ForkEvent, HTTP_DATA_MAX, HttpEvent, JSONRPC_DATA_MAX, JsonRpcEvent, SockEvent,
};

/// One decoded record. `Exec` and `Http` borrow their variable tail from the record.
// Records are decoded one at a time and consumed at once; boxing the large ones would cost an
// allocation per event for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    Exec(ExecEvent, &'a [u8]),
    Fork(ForkEvent),
    Exit(ExitEvent),
    Connect(SockEvent),
    Accept(SockEvent),
    FileOpen(FileOpenEvent),
    Dns(DnsEvent),
    Http(HttpEvent, &'a [u8]),
    JsonRpc(JsonRpcEvent, &'a [u8]),
}

impl Event<'_> {
    #[must_use]
    pub fn header(&self) -> &EventHeader {
        match self {
            Self::Exec(e, _) => &e.header,
            Self::Fork(e) => &e.header,
            Self::Exit(e) => &e.header,
            Self::Connect(e) | Self::Accept(e) => &e.header,
            Self::FileOpen(e) => &e.header,
            Self::Dns(e) => &e.header,
            Self::Http(e, _) => &e.header,
            Self::JsonRpc(e, _) => &e.header,
        }
    }
}

/// One ring-buffer record: an event, or the result of an open that an event record started
/// (joined to it in userspace before it is an event).
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug)]
pub enum Record<'a> {
    Event(Event<'a>),
    OpenResult(FileOpenResult),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than an event header.
    Short { len: usize },
    /// The header names a kind this build does not know.
    UnknownKind(u32),
    /// The record's length does not fit its kind.
    BadSize {
        kind: u32,
        declared: u32,
        len: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Short { len } => write!(f, "record of {len} bytes is shorter than a header"),
            Self::UnknownKind(k) => write!(f, "unknown event kind {k}"),
            Self::BadSize {
                kind,
                declared,
                len,
            } => write!(
                f,
                "event kind {kind}: record of {len} bytes (header says {declared}) has the wrong size"
            ),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Reads a `T` from the start of `buf`, which the caller has checked is long enough.
fn read<T: Copy>(buf: &[u8]) -> T {
    debug_assert!(buf.len() >= size_of::<T>());
    // SAFETY: the length is checked by every caller; `T` is a plain-data record for which any
    // bit pattern is valid; `read_unaligned` has no alignment requirement.
    unsafe { ptr::read_unaligned(buf.as_ptr().cast::<T>()) }
}

/// Decodes one ring-buffer record of any kind.
pub fn decode_record(buf: &[u8]) -> Result<Record<'_>, DecodeError> {
    let kind = EventKind::FileOpenResult as u32;
    if buf.len() >= size_of::<u32>() && read::<u32>(buf) == kind {
        // The ring may pad a record to 8 bytes; this one is a multiple of 8 already.
        return fixed(buf)
            .map(Record::OpenResult)
            .ok_or(DecodeError::BadSize {
                kind,
                declared: size_of::<FileOpenResult>() as u32,
                len: buf.len(),
            });
    }
    decode(buf).map(Record::Event)
}

/// Decodes one ring-buffer record that is an event (a [`FileOpenResult`] is refused as
/// [`DecodeError::UnknownKind`]: [`decode_record`] reads it).
pub fn decode(buf: &[u8]) -> Result<Event<'_>, DecodeError> {
    if buf.len() < size_of::<EventHeader>() {
        return Err(DecodeError::Short { len: buf.len() });
    }
    let header: EventHeader = read(buf);
    let kind = EventKind::from_u32(header.kind)
        .filter(|k| *k != EventKind::FileOpenResult)
        .ok_or(DecodeError::UnknownKind(header.kind))?;
    let bad = || DecodeError::BadSize {
        kind: header.kind,
        declared: header.size,
        len: buf.len(),
    };
    // The ring buffer may pad a record; never trust more than the header declares.
    if header.size as usize > buf.len() {
        return Err(bad());
    }
    let rec = &buf[..header.size as usize];
    let event = match kind {
        EventKind::Exec => {
            with_tail(rec, |e: &ExecEvent| e.argv_len, ARGV_MAX).map(|(mut ev, argv)| {
                ev.argc = argument_count(argv);
                Event::Exec(ev, argv)
            })
        }
        EventKind::Fork => fixed(rec).map(Event::Fork),
        EventKind::Exit => fixed(rec).map(Event::Exit),
        EventKind::Connect => fixed(rec).map(Event::Connect),
        EventKind::Accept => fixed(rec).map(Event::Accept),
        EventKind::FileOpen => fixed(rec).map(Event::FileOpen),
        EventKind::DnsQuery => fixed(rec).map(Event::Dns),
        EventKind::HttpData => with_tail(rec, |e: &HttpEvent| e.data_len, HTTP_DATA_MAX)
            .map(|(ev, data)| Event::Http(ev, data)),
        EventKind::JsonRpc => with_tail(rec, |e: &JsonRpcEvent| e.data_len, JSONRPC_DATA_MAX)
            .map(|(ev, data)| Event::JsonRpc(ev, data)),
        // Refused above: not an event.
        EventKind::FileOpenResult => None,
    };
    event.ok_or_else(bad)
}

/// A fixed-size record: exactly `size_of::<T>()` bytes.
fn fixed<T: Copy>(rec: &[u8]) -> Option<T> {
    (rec.len() == size_of::<T>()).then(|| read(rec))
}

/// Arguments in a NUL-separated argv: one per NUL, and a last one cut before its NUL.
fn argument_count(argv: &[u8]) -> u32 {
    // Pieces between NULs; the one after a final NUL (or of an empty argv) is no argument.
    let pieces = argv.split(|&b| b == 0).count();
    let after_last = usize::from(argv.last().is_none_or(|&b| b == 0));
    (pieces - after_last) as u32
}

/// A record with a variable tail: the fixed part `T`, then the `tail_len` bytes it declares (at
/// most `max`), which must end the record.
fn with_tail<T: Copy>(
    rec: &[u8],
    tail_len: impl FnOnce(&T) -> u32,
    max: usize,
) -> Option<(T, &[u8])> {
    let fixed = size_of::<T>();
    if rec.len() < fixed {
        return None;
    }
    let ev: T = read(rec);
    let len = tail_len(&ev) as usize;
    if len > max || fixed + len != rec.len() {
        return None;
    }
    Some((ev, &rec[fixed..]))
}

/// Test and benchmark helper: the bytes of a record, as the kernel would write them.
#[must_use]
pub fn as_bytes<T: Copy>(rec: &T) -> &[u8] {
    // SAFETY: any initialised plain-data value can be viewed as bytes.
    unsafe { core::slice::from_raw_parts(ptr::from_ref(rec).cast::<u8>(), size_of::<T>()) }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::{DNS_PAYLOAD_MAX, PATH_MAX, SockAddr};

    fn header(kind: EventKind, size: usize) -> EventHeader {
        EventHeader {
            kind: kind as u32,
            size: size as u32,
            pid: 10,
            tid: 11,
            time_ns: 12,
            cgroup_id: 13,
        }
    }

    #[test]
    fn exec_round_trip() {
        let argv = b"/bin/echo\0hello\0";
        let mut ev = ExecEvent {
            header: header(EventKind::Exec, size_of::<ExecEvent>() + argv.len()),
            end_ns: 99,
            uid: 1000,
            gid: 1000,
            argc: 0,
            argv_len: argv.len() as u32,
            filename_len: 9,
            flags: 0,
            filename: [0; PATH_MAX],
        };
        ev.filename[..9].copy_from_slice(b"/bin/echo");
        let mut rec = as_bytes(&ev).to_vec();
        rec.extend_from_slice(argv);
        let Event::Exec(got, got_argv) = decode(&rec).unwrap() else {
            panic!("not an exec")
        };
        assert_eq!(got.header, ev.header);
        assert_eq!((got.end_ns, got.uid, got.argc), (99, 1000, 2));
        assert_eq!(got_argv, argv);
    }

    #[test]
    fn exec_arguments_are_counted_from_the_argv() {
        assert_eq!(argument_count(b""), 0);
        assert_eq!(argument_count(b"/bin/sh\0"), 1);
        assert_eq!(argument_count(b"/bin/sh\0-c\0"), 2);
        // Cut by the budget inside its second argument.
        assert_eq!(argument_count(b"/bin/sh\0-"), 2);
        assert_eq!(argument_count(b"a\0\0b\0"), 3);
    }

    #[test]
    fn exec_with_wrong_argv_length_is_refused() {
        let ev = ExecEvent {
            header: header(EventKind::Exec, size_of::<ExecEvent>() + 4),
            end_ns: 0,
            uid: 0,
            gid: 0,
            argc: 1,
            argv_len: 40,
            filename_len: 0,
            flags: 0,
            filename: [0; PATH_MAX],
        };
        let mut rec = as_bytes(&ev).to_vec();
        rec.extend_from_slice(b"abc\0");
        assert!(matches!(decode(&rec), Err(DecodeError::BadSize { .. })));
    }

    #[test]
    fn socket_record_has_no_implicit_padding() {
        // Every byte is a named field: the kernel copies the whole record to the ring.
        let named = size_of::<EventHeader>() + 8 + 2 * size_of::<SockAddr>() + 4 + 4 + 2 + 6;
        assert_eq!(size_of::<SockEvent>(), named);
    }

    #[test]
    fn fixed_size_round_trips() {
        let fork = ForkEvent {
            header: header(EventKind::Fork, size_of::<ForkEvent>()),
            child_pid: 77,
            _pad: 0,
        };
        assert!(matches!(decode(as_bytes(&fork)), Ok(Event::Fork(f)) if f == fork));

        let exit = ExitEvent {
            header: header(EventKind::Exit, size_of::<ExitEvent>()),
            exit_code: 3,
            exit_code_known: 1,
        };
        assert!(matches!(decode(as_bytes(&exit)), Ok(Event::Exit(e)) if e == exit));

        for kind in [EventKind::Connect, EventKind::Accept] {
            let sock = SockEvent {
                header: header(kind, size_of::<SockEvent>()),
                end_ns: 5,
                remote: SockAddr {
                    family: 2,
                    port: 443,
                    addr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                },
                local: SockAddr {
                    family: 2,
                    port: 40123,
                    addr: [127, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                },
                fd: 3,
                ret: -111,
                sock_type: 1,
                _pad: [0; 6],
            };
            let got = decode(as_bytes(&sock)).unwrap();
            assert_eq!(*got.header(), sock.header);
            match got {
                Event::Connect(s) | Event::Accept(s) => assert_eq!(s, sock),
                other => panic!("unexpected {other:?}"),
            }
        }

        let mut open = FileOpenEvent {
            header: header(EventKind::FileOpen, size_of::<FileOpenEvent>()),
            end_ns: 6,
            flags: 0o101,
            ret: 4,
            path_len: 4,
            _pad: 0,
            path: [0; PATH_MAX],
        };
        open.path[..4].copy_from_slice(b"/etc");
        let Event::FileOpen(got) = decode(as_bytes(&open)).unwrap() else {
            panic!("not an open")
        };
        assert_eq!(&got.path[..4], b"/etc");
        assert_eq!((got.flags, got.ret), (0o101, 4));

        let dns = DnsEvent {
            header: header(EventKind::DnsQuery, size_of::<DnsEvent>()),
            server: SockAddr::default(),
            payload_len: 3,
            _pad: 0,
            payload: [7; DNS_PAYLOAD_MAX],
        };
        let Event::Dns(got) = decode(as_bytes(&dns)).unwrap() else {
            panic!("not dns")
        };
        assert_eq!(got.payload_len, 3);
    }

    #[test]
    fn http_round_trip() {
        let data = b"POST /v1/chat HTTP/1.1\r\nHost: x\r\n\r\n";
        let ev = HttpEvent {
            header: header(EventKind::HttpData, size_of::<HttpEvent>() + data.len()),
            ssl: 0xdead_beef,
            total_len: 4000,
            peer: SockAddr {
                family: 2,
                port: 8080,
                addr: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            },
            fd: 5,
            source: crate::http_source::SSL_WRITE,
            flags: crate::HTTP_PEER_KNOWN,
            data_len: data.len() as u32,
        };
        let mut rec = as_bytes(&ev).to_vec();
        rec.extend_from_slice(data);
        let Event::Http(got, got_data) = decode(&rec).unwrap() else {
            panic!("not http")
        };
        assert_eq!(got, ev);
        assert_eq!(got_data, data);

        // A tail longer than `data_len` says, or a `data_len` beyond the cap, is refused.
        let mut long = ev;
        long.header.size += 1;
        let mut rec = as_bytes(&long).to_vec();
        rec.extend_from_slice(data);
        rec.push(b'x');
        assert!(matches!(decode(&rec), Err(DecodeError::BadSize { .. })));
        let mut huge = ev;
        huge.data_len = HTTP_DATA_MAX as u32 + 1;
        huge.header.size = (size_of::<HttpEvent>() + HTTP_DATA_MAX + 1) as u32;
        let mut rec = as_bytes(&huge).to_vec();
        rec.resize(huge.header.size as usize, b'a');
        assert!(matches!(decode(&rec), Err(DecodeError::BadSize { .. })));
    }

    #[test]
    fn jsonrpc_round_trip() {
        let data = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}\n";
        let ev = JsonRpcEvent {
            header: header(EventKind::JsonRpc, size_of::<JsonRpcEvent>() + data.len()),
            total_len: data.len() as u64,
            fd: 7,
            flags: crate::JSONRPC_FD_IS_SOCKET,
            _pad: 0,
            data_len: data.len() as u32,
            _pad2: 0,
            tail: [b'x'; crate::JSONRPC_WINDOW],
        };
        let mut rec = as_bytes(&ev).to_vec();
        rec.extend_from_slice(data);
        let Event::JsonRpc(got, got_data) = decode(&rec).unwrap() else {
            panic!("not json-rpc")
        };
        assert_eq!(got, ev);
        assert_eq!(got_data, data);
        assert_eq!(*decode(&rec).unwrap().header(), ev.header);

        // A tail shorter than `data_len` says, or a `data_len` beyond the cap, is refused.
        assert!(matches!(
            decode(&rec[..rec.len() - 1]),
            Err(DecodeError::BadSize { .. })
        ));
        let mut huge = ev;
        huge.data_len = JSONRPC_DATA_MAX as u32 + 1;
        huge.header.size = (size_of::<JsonRpcEvent>() + JSONRPC_DATA_MAX + 1) as u32;
        let mut rec = as_bytes(&huge).to_vec();
        rec.resize(huge.header.size as usize, b'a');
        assert!(matches!(decode(&rec), Err(DecodeError::BadSize { .. })));
    }

    #[test]
    fn jsonrpc_record_has_no_implicit_padding() {
        let named = size_of::<EventHeader>() + 8 + 4 + 2 + 2 + 4 + 4 + crate::JSONRPC_WINDOW;
        assert_eq!(size_of::<JsonRpcEvent>(), named);
    }

    #[test]
    fn open_result_round_trip() {
        let r = FileOpenResult {
            kind: EventKind::FileOpenResult as u32,
            tid: 42,
            end_ns: 7,
            ret: -2,
            _pad: 0,
        };
        assert_eq!(size_of::<FileOpenResult>(), 24);
        let Record::OpenResult(got) = decode_record(as_bytes(&r)).unwrap() else {
            panic!("not an open result")
        };
        assert_eq!(got, r);
        // Cut short, or read as an event, it is refused.
        assert!(matches!(
            decode_record(&as_bytes(&r)[..20]),
            Err(DecodeError::BadSize { .. })
        ));
        let mut padded = as_bytes(&r).to_vec();
        padded.extend_from_slice(&[0; 8]);
        assert!(matches!(decode(&padded), Err(DecodeError::UnknownKind(10))));
        // Every other record still decodes through `decode_record`.
        let fork = ForkEvent {
            header: header(EventKind::Fork, size_of::<ForkEvent>()),
            child_pid: 3,
            _pad: 0,
        };
        assert!(matches!(
            decode_record(as_bytes(&fork)),
            Ok(Record::Event(Event::Fork(f))) if f == fork
        ));
    }

    #[test]
    fn bad_records_are_refused() {
        assert_eq!(decode(&[0; 8]).unwrap_err(), DecodeError::Short { len: 8 });
        let mut h = header(EventKind::Fork, 32);
        h.kind = 999;
        assert_eq!(
            decode(as_bytes(&h)).unwrap_err(),
            DecodeError::UnknownKind(999)
        );
        // A fork record cut short.
        let fork = ForkEvent {
            header: header(EventKind::Fork, size_of::<ForkEvent>()),
            ..Default::default()
        };
        let short: Vec<u8> = as_bytes(&fork)[..size_of::<ForkEvent>() - 4].to_vec();
        assert!(matches!(decode(&short), Err(DecodeError::BadSize { .. })));
        // A header that claims a different size than its kind has.
        let mut wrong = fork;
        wrong.header.size = 32;
        assert!(matches!(
            decode(as_bytes(&wrong)),
            Err(DecodeError::BadSize { .. })
        ));
    }
}
