//! The connections of an OTLP server: accepted under a limit, TLS handshakes completed in a
//! task of their own (so a slow or silent client holds up no one), and closed once idle.
//!
//! One task accepts on the listener. A connection beyond [`Limits::max_connections`] is
//! closed at once (the client sees a reset, rather than waiting in the kernel's backlog); the
//! others are handed to the server through a channel as [`Connection`]s, which hold their
//! share of the limit until they close and end with an error once no byte has moved either
//! way for [`Limits::idle_timeout`]. A gRPC connection's HTTP/2 frames are followed to judge
//! the client's pings ([`super::pings`]): one pinging too often gets GOAWAY and is closed.

use std::{
    future::Future as _,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use rustls::ServerConfig;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
    time::{Instant, Sleep},
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use super::{
    accept::{ACCEPT_BACKOFF, Limits},
    pings::PingWatch,
    sender::Peer,
};

/// How long a client may take to complete its handshake before the connection is closed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Established connections waiting for the server to take them.
const READY_CONNECTIONS: usize = 64;

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An accepted connection (plain or TLS, handshake done).
pub(super) struct Connection {
    stream: Stream,
    peer: Peer,
    idle: Duration,
    /// When a byte last moved either way.
    last: Instant,
    /// Fires at the earliest moment the connection can have been idle for `idle`; only moved
    /// when it fires (a timer reset on every read and write costs more than the read).
    timer: Pin<Box<Sleep>>,
    /// The client's pings under `keepalive.enforcement_policy` (gRPC).
    pings: Option<Box<PingWatch>>,
    /// Once the client pinged too often: the GOAWAY still to write (and how much of it is
    /// written); the connection then ends.
    too_many_pings: Option<(Vec<u8>, usize)>,
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    fn new(stream: Stream, peer: Peer, limits: &Limits, permit: OwnedSemaphorePermit) -> Self {
        let last = Instant::now();
        Self {
            stream,
            peer,
            idle: limits.idle_timeout,
            last,
            timer: Box::pin(tokio::time::sleep_until(last + limits.idle_timeout)),
            pings: limits.ping_policy.map(|p| Box::new(PingWatch::new(p))),
            too_many_pings: None,
            _permit: permit,
        }
    }

    /// Who is at the other end: the client's address, and this connection's number.
    pub(super) fn peer(&self) -> Peer {
        self.peer
    }

    /// Bytes moved: the idle clock starts again (the timer catches up when it fires).
    fn touch(&mut self) {
        self.last = Instant::now();
    }

    /// Writes the GOAWAY of a client that pinged too often, then ends the connection with an
    /// error (for reads and writes alike; the server then closes it).
    fn poll_goaway<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let Some((frame, written)) = &mut self.too_many_pings else {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        };
        while *written < frame.len() {
            let polled = match &mut self.stream {
                Stream::Plain(s) => Pin::new(s).poll_write(cx, &frame[*written..]),
                Stream::Tls(s) => Pin::new(s).poll_write(cx, &frame[*written..]),
            };
            match polled {
                Poll::Ready(Ok(n)) if n > 0 => *written += n,
                Poll::Pending => return self.idle_error(cx),
                // Nothing more can be written: end without the rest.
                Poll::Ready(_) => *written = frame.len(),
            }
        }
        let flushed = match &mut self.stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        };
        if flushed.is_pending() {
            return self.idle_error(cx);
        }
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "too many pings (keepalive.enforcement_policy)",
        )))
    }

    /// Pending I/O: an error once the connection has been idle too long.
    fn idle_error<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let due = self.last + self.idle;
            if due <= Instant::now() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connection idle for {:?}", self.idle),
                )));
            }
            // Bytes moved since the timer was set: wait for the rest of the idle time.
            self.timer.as_mut().reset(due);
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.too_many_pings.is_some() {
            return this.poll_goaway(cx);
        }
        let before = buf.filled().len();
        let polled = match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        };
        match polled {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.touch();
                    let read = &buf.filled()[before..];
                    if let Some(pings) = &mut this.pings
                        && pings.received(read, Instant::now())
                    {
                        tracing::warn!(
                            peer = %this.peer,
                            "client pinged more often than keepalive.enforcement_policy allows: \
                             GOAWAY ENHANCE_YOUR_CALM (too_many_pings), connection closed"
                        );
                        this.too_many_pings = Some((pings.goaway().unwrap_or_default(), 0));
                        return this.poll_goaway(cx);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => this.idle_error(cx),
            other @ Poll::Ready(Err(_)) => other,
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.too_many_pings.is_some() {
            return this.poll_goaway(cx);
        }
        let polled = match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, data),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, data),
        };
        match polled {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.touch();
                    if let Some(pings) = &mut this.pings {
                        pings.sent(&data[..n]);
                    }
                }
                Poll::Ready(Ok(n))
            }
            // A client that does not read its answers is idle too.
            Poll::Pending => this.idle_error(cx),
            other @ Poll::Ready(Err(_)) => other,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// tonic puts this in each request's extensions: the handlers find the connection's [`Peer`].
impl Connected for Connection {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer
    }
}

/// Accepts connections on `listener` (completing TLS handshakes with `tls`) until `stop` is
/// cancelled or the returned receiver is dropped. A failed handshake (a plain-text client, an
/// untrusted client certificate under `client_ca_file`) closes that connection only.
pub(super) fn accept(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    limits: Limits,
    stop: CancellationToken,
    receiver: String,
) -> mpsc::Receiver<Connection> {
    let (ready, established) = mpsc::channel(READY_CONNECTIONS);
    let acceptor = tls.map(TlsAcceptor::from);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    tokio::spawn(async move {
        let mut at_limit = false;
        loop {
            let (stream, peer) = tokio::select! {
                () = stop.cancelled() => break,
                () = ready.closed() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(receiver, %error, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                if !at_limit {
                    tracing::warn!(
                        receiver,
                        limit = limits.max_connections,
                        "connection limit reached: closing new connections until some end"
                    );
                }
                at_limit = true;
                continue;
            };
            at_limit = false;
            // Only a latency optimisation; the connection works without it.
            let _ = stream.set_nodelay(true);
            let peer = Peer::accepted(peer, stream.local_addr().ok());
            let Some(acceptor) = acceptor.clone() else {
                let connection = Connection::new(Stream::Plain(stream), peer, &limits, permit);
                if ready.send(connection).await.is_err() {
                    break;
                }
                continue;
            };
            let (ready, receiver) = (ready.clone(), receiver.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    // The server may have stopped meanwhile; the connection then just closes.
                    Ok(Ok(stream)) => {
                        let stream = Stream::Tls(Box::new(stream));
                        drop(
                            ready
                                .send(Connection::new(stream, peer, &limits, permit))
                                .await,
                        );
                    }
                    Ok(Err(error)) => {
                        tracing::debug!(receiver, %peer, %error, "TLS handshake failed");
                    }
                    Err(_) => tracing::debug!(
                        receiver,
                        %peer,
                        "TLS handshake not completed within {HANDSHAKE_TIMEOUT:?}"
                    ),
                }
            });
        }
    });
    established
}
