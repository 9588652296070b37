//! TLS termination for the OTLP receivers: one task accepts connections and starts a
//! handshake task per connection (so a slow or silent client holds up no one), and each
//! established stream is handed to the server through a channel.

use std::{sync::Arc, time::Duration};

use rustls::ServerConfig;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_util::sync::CancellationToken;

/// How long a client may take to complete its handshake before the connection is closed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Established connections waiting for the server to take them.
const READY_CONNECTIONS: usize = 64;

/// `config` with the one application protocol this receiver speaks (`h2` for gRPC,
/// `http/1.1` for OTLP/HTTP), so clients that ask for it by ALPN get it.
pub(super) fn with_alpn(mut config: ServerConfig, protocol: &[u8]) -> Arc<ServerConfig> {
    config.alpn_protocols = vec![protocol.to_vec()];
    Arc::new(config)
}

/// Accepts connections on `listener` and completes their TLS handshakes until `stop` is
/// cancelled or the returned receiver is dropped. A failed handshake (a plain-text client,
/// an untrusted client certificate under `client_ca_file`) closes that connection only.
pub(super) fn accept(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    stop: CancellationToken,
    receiver: String,
) -> mpsc::Receiver<TlsStream<TcpStream>> {
    let (ready, established) = mpsc::channel(READY_CONNECTIONS);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                () = stop.cancelled() => break,
                () = ready.closed() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(receiver, %error, "accept failed");
                        tokio::time::sleep(super::accept::ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
            };
            // Only a latency optimisation; the connection works without it.
            let _ = stream.set_nodelay(true);
            let (acceptor, ready, receiver) = (acceptor.clone(), ready.clone(), receiver.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    // The server may have stopped meanwhile; the connection then just closes.
                    Ok(Ok(stream)) => drop(ready.send(stream).await),
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
