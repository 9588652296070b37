//! An HTTP/2 connection's writes gathered into one system call per burst ([`Gathered`]).
//!
//! `h2` holds one DATA frame at a time: it writes each frame it sends with its own `writev`
//! and asks for a flush after each. A 1 MiB export is 64 frames of 16 KiB (the frame size a
//! Collector allows), so 64 system calls, 64 TCP pushes and, to a Collector on the same node,
//! 64 loopback receives run in runbom's time. grpc-go's writer gathers a burst's frames in a
//! buffer and writes it once it has nothing more to send; [`Gathered`] does the same beneath
//! `h2` (and beneath TLS, which writes its records the same way): under the `otlp` exporter's
//! connections ([`GatherConnector`]) and the node agent's streams to its subscribers.
//!
//! The rule. Bytes written are gathered, up to [`GATHER_MAX`]. The first flush asked for after
//! a write is answered at once and the task that asked is woken. The gathered bytes go out
//! when the buffer is full, at the next flush asked for with nothing written since, and
//! when the caller reads, so a caller that reads for its answer (HTTP/2, a TLS handshake) has
//! sent its question. `h2` asks for a flush each time it polls its connection, and a woken task is
//! polled again, so a burst costs the gathered bytes one more poll of the connection's task.

use std::{
    future::Future,
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll, ready},
};

use hyper_util::{
    client::legacy::connect::{Connected, Connection},
    rt::TokioIo,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::codegen::{Service, http::Uri};

/// The most bytes gathered before they are written: four loopback segments of 64 KiB. A
/// Collector's window (64 KiB at first in grpc-go) often ends a burst before.
pub const GATHER_MAX: usize = 256 << 10;

/// A connection whose writes are gathered (see the module's documentation).
pub struct Gathered<T> {
    inner: T,
    buf: Vec<u8>,
    /// How much of `buf` is already written.
    written: usize,
    /// Bytes were gathered since the last flush asked for.
    fresh: bool,
}

impl<T> Gathered<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            written: 0,
            fresh: false,
        }
    }

    /// Bytes gathered and not yet written.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.buf.len() - self.written
    }
}

impl<T: AsyncWrite + Unpin> Gathered<T> {
    /// Writes out what is gathered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    fn poll_gather(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if self.buf.len() + len > GATHER_MAX {
            ready!(self.poll_drain(cx))?;
            if len > GATHER_MAX {
                return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
            }
        }
        // Room grows as bursts need it, up to the most gathered; it is kept for the next.
        let want = self.buf.len() + len;
        if want > self.buf.capacity() {
            let room = want.next_power_of_two().min(GATHER_MAX);
            self.buf.reserve_exact(room - self.buf.len());
        }
        for b in bufs {
            self.buf.extend_from_slice(b);
        }
        self.fresh = true;
        Poll::Ready(Ok(len))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Gathered<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_gather(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_gather(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if std::mem::take(&mut this.fresh) {
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Gathered<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.fresh = false;
        // Sent before the answer is read. A socket that cannot take them yet does not hold the
        // read up: each direction waits on its own, as without gathering.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: Connection> Connection for Gathered<T> {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}

/// A connector whose connections are [`Gathered`].
#[derive(Clone, Debug)]
pub struct GatherConnector<C>(pub C);

impl<C, T> Service<Uri> for GatherConnector<C>
where
    C: Service<Uri, Response = TokioIo<T>>,
    C::Future: Send + 'static,
{
    type Response = TokioIo<Gathered<T>>;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            connecting
                .await
                .map(|io| TokioIo::new(Gathered::new(io.into_inner())))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Arc, Mutex},
        task::Waker,
    };

    use super::*;

    /// A connection that records each write it is given (at most `take` bytes of one; none
    /// while `full`) and has `incoming` to read.
    #[derive(Default)]
    struct Recorder {
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
        take: Option<usize>,
        full: bool,
        incoming: Vec<u8>,
        flushes: usize,
        shut: bool,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            if self.full {
                return Poll::Pending;
            }
            let n = self.take.map_or(buf.len(), |t| t.min(buf.len()));
            self.writes.lock().unwrap().push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            self.poll_write(cx, &all)
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().shut = true;
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncRead for Recorder {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.incoming.is_empty() {
                return Poll::Pending;
            }
            buf.put_slice(&std::mem::take(&mut self.get_mut().incoming));
            Poll::Ready(Ok(()))
        }
    }

    /// A waker that counts its wakes.
    struct Count(Mutex<usize>);
    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            *self.0.lock().unwrap() += 1;
        }
    }

    fn write(io: &mut Gathered<Recorder>, cx: &mut Context<'_>, bytes: &[u8]) {
        let bufs = [IoSlice::new(&bytes[..1]), IoSlice::new(&bytes[1..])];
        let n = Pin::new(&mut *io).poll_write_vectored(cx, &bufs);
        assert!(matches!(n, Poll::Ready(Ok(n)) if n == bytes.len()), "{n:?}");
    }

    fn flush(io: &mut Gathered<Recorder>, cx: &mut Context<'_>) {
        assert!(matches!(
            Pin::new(&mut *io).poll_flush(cx),
            Poll::Ready(Ok(()))
        ));
    }

    #[test]
    fn a_burst_of_frames_goes_out_in_one_write_at_the_flush_after_it() {
        let count = Arc::new(Count(Mutex::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut io = Gathered::new(Recorder::default());
        let writes = io.inner.writes.clone();
        // h2: each frame written, then a flush.
        for frame in 0..4u8 {
            write(&mut io, &mut cx, &[frame; 100]);
            flush(&mut io, &mut cx);
        }
        assert!(writes.lock().unwrap().is_empty(), "nothing written yet");
        assert_eq!(
            *count.0.lock().unwrap(),
            4,
            "the task was woken to come back"
        );
        // Polled again, it asks for a flush with nothing new: the burst goes out, once.
        flush(&mut io, &mut cx);
        let writes = writes.lock().unwrap();
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].len(), 400);
        assert!(
            writes[0][..100].iter().all(|&b| b == 0) && writes[0][300..].iter().all(|&b| b == 3)
        );
        assert_eq!(io.inner.flushes, 1);
        assert_eq!(io.pending(), 0);
    }

    #[test]
    fn a_read_sends_what_was_gathered_first() {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut io = Gathered::new(Recorder::default());
        let writes = io.inner.writes.clone();
        write(&mut io, &mut cx, b"client hello");
        flush(&mut io, &mut cx);
        let mut space = [0u8; 16];
        let mut buf = ReadBuf::new(&mut space);
        assert!(Pin::new(&mut io).poll_read(&mut cx, &mut buf).is_pending());
        assert_eq!(writes.lock().unwrap().concat(), b"client hello");
    }

    #[test]
    fn a_socket_that_takes_no_writes_does_not_hold_a_read_up() {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut io = Gathered::new(Recorder {
            full: true,
            incoming: b"answer".to_vec(),
            ..Recorder::default()
        });
        let writes = io.inner.writes.clone();
        write(&mut io, &mut cx, b"request");
        flush(&mut io, &mut cx);
        let mut space = [0u8; 16];
        let mut buf = ReadBuf::new(&mut space);
        assert!(matches!(
            Pin::new(&mut io).poll_read(&mut cx, &mut buf),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(buf.filled(), b"answer");
        assert!(
            Pin::new(&mut io).poll_flush(&mut cx).is_pending(),
            "still full"
        );
        io.inner.full = false;
        flush(&mut io, &mut cx);
        assert_eq!(writes.lock().unwrap().concat(), b"request");
    }

    #[test]
    fn a_full_buffer_is_written_before_more_and_a_large_write_passes_through() {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut io = Gathered::new(Recorder::default());
        let writes = io.inner.writes.clone();
        let frame = vec![7u8; GATHER_MAX / 2];
        write(&mut io, &mut cx, &frame);
        write(&mut io, &mut cx, &frame);
        assert!(writes.lock().unwrap().is_empty());
        write(&mut io, &mut cx, b"one more");
        assert_eq!(
            writes.lock().unwrap().len(),
            1,
            "the full buffer went first"
        );
        let large = vec![9u8; GATHER_MAX + 1];
        write(&mut io, &mut cx, &large);
        let w = writes.lock().unwrap();
        assert_eq!(w.len(), 3);
        assert_eq!(w[1], b"one more");
        assert_eq!(w[2].len(), GATHER_MAX + 1);
    }

    #[test]
    fn partial_writes_and_shutdown_lose_nothing() {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut io = Gathered::new(Recorder {
            take: Some(3),
            ..Recorder::default()
        });
        let writes = io.inner.writes.clone();
        write(&mut io, &mut cx, b"abcdefgh");
        flush(&mut io, &mut cx);
        assert!(Pin::new(&mut io).poll_shutdown(&mut cx).is_ready());
        assert_eq!(writes.lock().unwrap().concat(), b"abcdefgh");
        assert!(io.inner.shut);
    }
}
