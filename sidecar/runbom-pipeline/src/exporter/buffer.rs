//! The buffer an exporter writes each request's bytes into (the `file` exporter's OTLP/JSON line,
//! the `otlp` and `otlphttp` exporters' protobuf), kept for the next request: a batch of kernel
//! events is several MiB, and a buffer allocated afresh for each request costs a page fault
//! per 4 KiB page the request fills (and, grown by doubling, copies). After a burst the buffer
//! is given back, so that runbom at rest does not hold a batch's worth of memory for good.

/// A buffer larger than this is not kept for the next request (an unusually large request
/// would otherwise hold its memory for good). A default batch of kernel events (8 192 spans or
/// log records) is about 10 MiB of OTLP/JSON and 5 MiB of protobuf: kept.
const KEPT_BYTES: usize = 32 << 20;

/// Every this many requests, a buffer more than twice as large as the largest request among
/// them (and above [`SHRINK_FLOOR`]) is cut to that request's size: busy traffic, whose largest
/// request in any window is a full batch, keeps its buffer; at rest requests are a few KiB.
const WINDOW: u32 = 16;

/// Buffers up to this size are kept whatever the recent requests were.
const SHRINK_FLOOR: usize = 1 << 20;

/// A request buffer kept between requests. A clone starts without one.
#[derive(Debug, Default)]
pub struct KeptBuffer {
    buf: Vec<u8>,
    /// The largest request of the current window of [`WINDOW`] requests, and how many of
    /// the window's requests have been written.
    window_largest: usize,
    window_seen: u32,
}

impl Clone for KeptBuffer {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl KeptBuffer {
    /// The buffer, empty, with the room the last requests needed.
    pub fn take(&mut self) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf
    }

    /// The buffer back after a request of `buf.len()` bytes: kept, or cut or dropped as the
    /// recent requests say.
    pub fn give_back(&mut self, buf: Vec<u8>) {
        self.window_largest = self.window_largest.max(buf.len());
        self.buf = if buf.capacity() > KEPT_BYTES {
            Vec::new()
        } else {
            buf
        };
        self.window_seen += 1;
        if self.window_seen < WINDOW {
            return;
        }
        let largest = std::mem::take(&mut self.window_largest);
        self.window_seen = 0;
        if self.buf.capacity() > SHRINK_FLOOR.max(2 * largest) {
            self.buf = Vec::with_capacity(largest);
        }
    }

    /// Room kept for the next request.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(kept: &mut KeptBuffer, bytes: usize) {
        let mut buf = kept.take();
        assert!(buf.is_empty());
        buf.resize(bytes, b'x');
        kept.give_back(buf);
    }

    #[test]
    fn kept_while_busy_and_given_back_after_a_burst() {
        let mut kept = KeptBuffer::default();
        let big = 4 << 20;
        // Busy: a full request now and then among small ones keeps the buffer.
        for i in 0..(3 * WINDOW) {
            request(&mut kept, if i % 8 == 0 { big } else { 1000 });
        }
        assert!(kept.capacity() >= big, "kept while busy");
        // Quiet: a window of small requests gives it back.
        for _ in 0..WINDOW {
            request(&mut kept, 1000);
        }
        assert!(kept.capacity() < 4096, "{}", kept.capacity());
        // Too large to keep at all.
        request(&mut kept, KEPT_BYTES + 1);
        assert_eq!(kept.capacity(), 0);
        assert_eq!(kept.clone().capacity(), 0, "a clone starts without one");
    }
}
