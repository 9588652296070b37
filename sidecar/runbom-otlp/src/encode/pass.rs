//! The two walks of [`super`] over a request ([`Measure`], then [`Write`]) and the one that
//! writes as it goes ([`Shift`]): what each does with a field, behind one [`Pass`] trait.

use std::mem::MaybeUninit;

use prost::encoding::encoded_len_varint;

/// One walk over a request: [`Measure`] counts bytes, [`Write`] writes them. Every message's
/// walk below is written once, for both (and for [`Shift`], and for the log records written
/// from kernel events, [`crate::kernel_logs`]).
pub(crate) trait Pass {
    fn varint(&mut self, tag: u32, value: u64);
    fn fixed64(&mut self, tag: u32, value: u64);
    fn fixed32(&mut self, tag: u32, value: u32);
    fn bytes(&mut self, tag: u32, value: &[u8]);
    /// Fields already encoded.
    fn encoded(&mut self, fields: &[u8]);
    /// The key and length of a nested message whose fields take `len` bytes, known before
    /// they are written: its fields follow, written by the caller (no room guessed, nothing
    /// moved, no length kept by [`Measure`]). Its fields must be written with the field
    /// writers and [`Pass::len_prefix`] only, never [`Pass::message`].
    fn len_prefix(&mut self, tag: u32, len: usize);
    /// A nested message, `body` writing its fields.
    fn message(&mut self, tag: u32, body: impl FnOnce(&mut Self));
    /// A nested message whose length likely takes `room` bytes as a varint ([`Shift`] writes
    /// its fields after that much room, the others ignore it).
    fn message_sized(&mut self, tag: u32, room: usize, body: impl FnOnce(&mut Self)) {
        let _ = room;
        self.message(tag, body);
    }

    // Proto3 scalars: a field at its default value is not written.
    fn string(&mut self, tag: u32, value: &str) {
        self.opt_bytes(tag, value.as_bytes());
    }
    fn opt_bytes(&mut self, tag: u32, value: &[u8]) {
        if !value.is_empty() {
            self.bytes(tag, value);
        }
    }
    fn uint32(&mut self, tag: u32, value: u32) {
        if value != 0 {
            self.varint(tag, value.into());
        }
    }
    /// An enum: an `i32` as a sign-extended varint.
    fn enumeration(&mut self, tag: u32, value: i32) {
        if value != 0 {
            self.varint(tag, i64::from(value) as u64);
        }
    }
    fn opt_fixed64(&mut self, tag: u32, value: u64) {
        if value != 0 {
            self.fixed64(tag, value);
        }
    }
    fn opt_fixed32(&mut self, tag: u32, value: u32) {
        if value != 0 {
            self.fixed32(tag, value);
        }
    }
}

/// Wire types (protobuf encoding guide).
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
pub(super) const LEN: u32 = 2;
const FIXED32: u32 = 5;

pub(super) fn key(tag: u32, wire: u32) -> u64 {
    u64::from(tag << 3 | wire)
}

/// The first walk: the request's length and every nested message's.
#[derive(Default)]
pub(crate) struct Measure {
    /// Bytes of the message being measured so far.
    len: usize,
    /// Every nested message's length, in the order the walk reaches the messages.
    lengths: Vec<usize>,
}

impl Measure {
    /// The second walk, `walk`, writing into room reserved in `out` for the whole request: the
    /// bytes go straight into that room, without a capacity check per field. Should the walks
    /// ever disagree, writing past the room panics, and a shorter request is not appended.
    pub(crate) fn write(&self, out: &mut Vec<u8>, walk: impl FnOnce(&mut Write<'_>)) {
        out.reserve(self.len);
        let start = out.len();
        let mut w = Write {
            lengths: self.lengths.iter(),
            room: &mut out.spare_capacity_mut()[..self.len],
            at: 0,
        };
        walk(&mut w);
        assert_eq!(w.at, self.len, "both walks measure the same request");
        // SAFETY: the `self.len` bytes after `start` are initialised: `Write` wrote them all
        // in order (`at` counts them, checked just above), and `reserve` made them capacity.
        unsafe { out.set_len(start + self.len) };
    }
}

impl Pass for Measure {
    fn varint(&mut self, tag: u32, value: u64) {
        self.len += encoded_len_varint(key(tag, VARINT)) + encoded_len_varint(value);
    }
    fn fixed64(&mut self, tag: u32, _: u64) {
        self.len += encoded_len_varint(key(tag, FIXED64)) + 8;
    }
    fn fixed32(&mut self, tag: u32, _: u32) {
        self.len += encoded_len_varint(key(tag, FIXED32)) + 4;
    }
    fn bytes(&mut self, tag: u32, value: &[u8]) {
        self.len += encoded_len_varint(key(tag, LEN))
            + encoded_len_varint(value.len() as u64)
            + value.len();
    }
    fn encoded(&mut self, fields: &[u8]) {
        self.len += fields.len();
    }
    fn len_prefix(&mut self, tag: u32, len: usize) {
        self.len += encoded_len_varint(key(tag, LEN)) + encoded_len_varint(len as u64);
    }
    fn message(&mut self, tag: u32, body: impl FnOnce(&mut Self)) {
        let slot = self.lengths.len();
        self.lengths.push(0);
        let outer = std::mem::take(&mut self.len);
        body(self);
        let inner = std::mem::replace(&mut self.len, outer);
        self.lengths[slot] = inner;
        self.len += encoded_len_varint(key(tag, LEN)) + encoded_len_varint(inner as u64) + inner;
    }
}

/// The second walk: the bytes, into room reserved for them.
pub(crate) struct Write<'a> {
    /// The lengths [`Measure`] found, consumed in the same order.
    lengths: std::slice::Iter<'a, usize>,
    room: &'a mut [MaybeUninit<u8>],
    /// Bytes written so far.
    at: usize,
}

impl Write<'_> {
    fn raw_varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.room[self.at].write((value & 0x7f) as u8 | 0x80);
            self.at += 1;
            value >>= 7;
        }
        self.room[self.at].write(value as u8);
        self.at += 1;
    }

    fn raw(&mut self, bytes: &[u8]) {
        let end = self.at + bytes.len();
        self.room[self.at..end].write_copy_of_slice(bytes);
        self.at = end;
    }
}

impl Pass for Write<'_> {
    fn varint(&mut self, tag: u32, value: u64) {
        self.raw_varint(key(tag, VARINT));
        self.raw_varint(value);
    }
    fn fixed64(&mut self, tag: u32, value: u64) {
        self.raw_varint(key(tag, FIXED64));
        self.raw(&value.to_le_bytes());
    }
    fn fixed32(&mut self, tag: u32, value: u32) {
        self.raw_varint(key(tag, FIXED32));
        self.raw(&value.to_le_bytes());
    }
    fn bytes(&mut self, tag: u32, value: &[u8]) {
        self.raw_varint(key(tag, LEN));
        self.raw_varint(value.len() as u64);
        self.raw(value);
    }
    fn encoded(&mut self, fields: &[u8]) {
        self.raw(fields);
    }
    fn len_prefix(&mut self, tag: u32, len: usize) {
        self.raw_varint(key(tag, LEN));
        self.raw_varint(len as u64);
    }
    fn message(&mut self, tag: u32, body: impl FnOnce(&mut Self)) {
        // Both passes walk the same request in the same order: a length is always there.
        let len = self.lengths.next().copied().unwrap_or_default();
        self.raw_varint(key(tag, LEN));
        self.raw_varint(len as u64);
        body(self);
    }
}

/// One walk that writes as it goes: a nested message's fields are written after room for
/// their length (the room its [`Pass::message_sized`] guessed, else one byte), and moved when
/// the length turns out to take more or fewer bytes. No second walk, at the price of moving
/// the messages whose guess was wrong.
pub(crate) struct Shift<'a> {
    pub(crate) out: &'a mut Vec<u8>,
}

impl Shift<'_> {
    fn raw_varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.out.push((value & 0x7f) as u8 | 0x80);
            value >>= 7;
        }
        self.out.push(value as u8);
    }
}

impl Pass for Shift<'_> {
    fn varint(&mut self, tag: u32, value: u64) {
        self.raw_varint(key(tag, VARINT));
        self.raw_varint(value);
    }
    fn fixed64(&mut self, tag: u32, value: u64) {
        self.raw_varint(key(tag, FIXED64));
        self.out.extend_from_slice(&value.to_le_bytes());
    }
    fn fixed32(&mut self, tag: u32, value: u32) {
        self.raw_varint(key(tag, FIXED32));
        self.out.extend_from_slice(&value.to_le_bytes());
    }
    fn bytes(&mut self, tag: u32, value: &[u8]) {
        self.raw_varint(key(tag, LEN));
        self.raw_varint(value.len() as u64);
        self.out.extend_from_slice(value);
    }
    fn encoded(&mut self, fields: &[u8]) {
        self.out.extend_from_slice(fields);
    }
    fn len_prefix(&mut self, tag: u32, len: usize) {
        self.raw_varint(key(tag, LEN));
        self.raw_varint(len as u64);
    }
    fn message(&mut self, tag: u32, body: impl FnOnce(&mut Self)) {
        self.message_sized(tag, 1, body);
    }
    fn message_sized(&mut self, tag: u32, room: usize, body: impl FnOnce(&mut Self)) {
        self.raw_varint(key(tag, LEN));
        let at = self.out.len();
        self.out.extend_from_slice(&[0; 10][..room]);
        body(self);
        let len = self.out.len() - at - room;
        let need = encoded_len_varint(len as u64);
        if need > room {
            self.out.resize(self.out.len() + need - room, 0);
            self.out.copy_within(at + room..at + room + len, at + need);
        } else if need < room {
            self.out.copy_within(at + room..at + room + len, at + need);
            self.out.truncate(at + need + len);
        }
        let mut value = len as u64;
        for b in &mut self.out[at..at + need] {
            *b = (value & 0x7f) as u8 | if value >= 0x80 { 0x80 } else { 0 };
            value >>= 7;
        }
    }
}
