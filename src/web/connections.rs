//! The HTTP server's connections, bounded: at most
//! [`MAX_HTTP_CONNECTIONS`] at once (past that, new ones wait in the
//! listen backlog until one closes, as on the gRPC ports), and every
//! request's headers within [`HEADER_READ_TIMEOUT`], so a client that opens
//! connections and sends half a request, or keeps one open and sends
//! nothing more, holds neither memory nor a slot for long. A stop closes
//! every connection gracefully.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

/// Connections one node's HTTP server holds at once: far more than its
/// pages and clients need (event streams are capped lower, at
/// [`super::MAX_EVENT_STREAMS`]), few enough that their buffers stay small.
pub const MAX_HTTP_CONNECTIONS: usize = 4096;
/// How long a client has to send a request's headers, on a new connection
/// or a kept-alive one (so it is also how long a connection may idle).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait before accepting again after the process ran out of
/// file descriptors (or another accept error).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// What bounds the connections.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits { max_connections: MAX_HTTP_CONNECTIONS, header_read_timeout: HEADER_READ_TIMEOUT }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` is
/// cancelled, then gives open connections `close_timeout` to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    close_timeout: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    loop {
        let slot = tokio::select! {
            () = shutdown.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    warn!(%error, "could not accept an HTTP connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        // Small answers go out at once, as gRPC's do.
        let _ = stream.set_nodelay(true);
        let service = router.clone().map_request(|request: Request<Incoming>| request.map(axum::body::Body::new));
        let connection =
            builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                debug!(%error, "HTTP connection ended");
            }
            drop(slot);
        });
    }
    if tokio::time::timeout(close_timeout, graceful.shutdown()).await.is_err() {
        debug!("HTTP connections still open; leaving them");
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(10);

    /// A server of one route within `limits`, on a port of its own.
    async fn server(limits: ConnectionLimits, shutdown: &CancellationToken) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let router = Router::new().route("/", get(|| async { "ok" }));
        tokio::spawn(serve(listener, router, limits, shutdown.clone(), Duration::from_millis(100)));
        address
    }

    /// Reads until the server closes the connection, or the deadline.
    async fn read_to_close(stream: &mut TcpStream) -> Result<String, &'static str> {
        let mut answer = Vec::new();
        match tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer)).await {
            Ok(_) => Ok(String::from_utf8_lossy(&answer).into_owned()),
            Err(_) => Err("still open"),
        }
    }

    /// Half a request is closed once the header deadline passes: it holds
    /// no memory or slot for long (it was never closed).
    #[tokio::test]
    async fn a_request_whose_headers_never_end_is_closed() {
        let shutdown = CancellationToken::new();
        let limits =
            ConnectionLimits { header_read_timeout: Duration::from_millis(200), ..ConnectionLimits::default() };
        let address = server(limits, &shutdown).await;
        let mut stream = TcpStream::connect(address).await.expect("connect");
        stream.write_all(b"GET / HTTP/1.1\r\nHost: gavel\r\nX-Half: ").await.expect("write");
        let answer = read_to_close(&mut stream).await.expect("closed by the server");
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer:?}");
        shutdown.cancel();
    }

    /// A kept-alive connection that sends no next request is closed after
    /// the same deadline: an idle connection holds no slot for long.
    #[tokio::test]
    async fn an_idle_kept_alive_connection_is_closed() {
        let shutdown = CancellationToken::new();
        let limits =
            ConnectionLimits { header_read_timeout: Duration::from_millis(200), ..ConnectionLimits::default() };
        let address = server(limits, &shutdown).await;
        let mut stream = TcpStream::connect(address).await.expect("connect");
        stream.write_all(b"GET / HTTP/1.1\r\nHost: gavel\r\n\r\n").await.expect("write");
        let answer = read_to_close(&mut stream).await.expect("closed by the server once idle");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        shutdown.cancel();
    }

    /// Past the cap, a new connection waits until one closes; then it is
    /// served.
    #[tokio::test]
    async fn connections_past_the_cap_wait_for_one_to_close() {
        let shutdown = CancellationToken::new();
        let limits = ConnectionLimits { max_connections: 2, ..ConnectionLimits::default() };
        let address = server(limits, &shutdown).await;
        let mut idle = Vec::new();
        for _ in 0..2 {
            idle.push(TcpStream::connect(address).await.expect("connect"));
        }
        let mut third = TcpStream::connect(address).await.expect("the backlog takes it");
        third.write_all(b"GET / HTTP/1.1\r\nHost: gavel\r\nConnection: close\r\n\r\n").await.expect("write");
        // A window in which nothing may come: the two idle ones hold the slots.
        let mut byte = [0u8; 1];
        let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut byte)).await;
        assert!(early.is_err(), "served past the cap: {early:?}");

        drop(idle.pop());
        let answer = read_to_close(&mut third).await.expect("served once a slot is free");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        assert!(answer.ends_with("ok"), "{answer:?}");
        shutdown.cancel();
    }
}
