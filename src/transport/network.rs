//! Where the bytes go. The node and the client take a [`Network`] instead of
//! calling TCP directly, so the same code runs over real TCP and over a
//! simulated network (see `tests/simulation.rs`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_stream::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

use super::Tls;
use crate::replication::Now;

/// Anything a connection can be carried over.
pub trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> ByteStream for T {}

/// One accepted or dialed connection.
pub struct Connection {
    stream: Pin<Box<dyn ByteStream>>,
    /// Bytes read from it already (see [`split_replication`]), to be read
    /// again first.
    replayed: prost::bytes::Bytes,
    /// Its place under its listener's cap (see [`limit_connections`]).
    _counted: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Connection {
    pub fn new(stream: impl ByteStream) -> Self {
        Connection { stream: Box::pin(stream), replayed: prost::bytes::Bytes::new(), _counted: None }
    }
}

impl AsyncRead for Connection {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.replayed.is_empty() {
            let taken = self.replayed.len().min(buf.remaining());
            let replayed = self.replayed.split_to(taken);
            buf.put_slice(&replayed);
            return Poll::Ready(Ok(()));
        }
        self.stream.as_mut().poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.stream.as_mut().poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream.as_mut().poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream.as_mut().poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

/// The connections a listener accepts.
pub type Incoming = Pin<Box<dyn Stream<Item = io::Result<Connection>> + Send>>;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a listener is for: the client port is the leadership lock, which a
/// simulated network models explicitly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// A node's own port.
    Node,
    /// The well-known client port: only one process can hold it.
    Client,
}

/// A network: listeners, dialing, and the clock that goes with it.
pub trait NetworkBackend: Send + Sync + 'static {
    fn bind(&self, address: SocketAddr, port: Port) -> BoxFuture<io::Result<Incoming>>;
    /// Dials `address` (`host:port`).
    fn connect(&self, address: String) -> BoxFuture<io::Result<Connection>>;
    /// The current time: a simulated network has a simulated clock.
    fn now(&self) -> Now;
    /// A random number (epoch nonces): a simulation draws it from its seed.
    fn random(&self) -> u64 {
        rand::random()
    }
}

/// A shareable handle to a network, and the TLS credentials its calls
/// and servers use (none: plain HTTP/2, as on loopback by default).
#[derive(Clone)]
pub struct Network {
    backend: Arc<dyn NetworkBackend>,
    tls: Option<Arc<Tls>>,
}

impl Network {
    /// Real TCP with `TCP_NODELAY`, and the system clock.
    pub fn tcp() -> Self {
        Network::new(Tcp)
    }

    pub fn new(backend: impl NetworkBackend) -> Self {
        Network { backend: Arc::new(backend), tls: None }
    }

    /// The same network, every call and server over TLS with `tls`.
    pub fn with_tls(self, tls: Option<Arc<Tls>>) -> Self {
        Network { tls, ..self }
    }

    pub fn tls(&self) -> Option<&Arc<Tls>> {
        self.tls.as_ref()
    }

    pub async fn bind(&self, address: SocketAddr, port: Port) -> io::Result<Incoming> {
        self.backend.bind(address, port).await
    }

    pub async fn connect(&self, address: String) -> io::Result<Connection> {
        self.backend.connect(address).await
    }

    pub fn now(&self) -> Now {
        self.backend.now()
    }

    pub fn random(&self) -> u64 {
        self.backend.random()
    }
}

impl Default for Network {
    fn default() -> Self {
        Network::tcp()
    }
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network").field("tls", &self.tls).finish_non_exhaustive()
    }
}

struct Tcp;

/// Caps the connections served at once at `limit`: past it, the listener
/// stops accepting until one closes, and new connections wait in the
/// kernel's backlog instead of costing the node memory and CPU. A failed
/// accept (out of file descriptors, say) pauses the accepting briefly
/// rather than spinning on it.
pub fn limit_connections(mut incoming: Incoming, limit: usize) -> Incoming {
    const PAUSE_AFTER_ACCEPT_ERROR: std::time::Duration = std::time::Duration::from_millis(50);
    let permits = Arc::new(tokio::sync::Semaphore::new(limit));
    let (accepted, receiver) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { return };
            let connection = tokio::select! {
                () = accepted.closed() => return,
                next = incoming.next() => match next {
                    Some(Ok(connection)) => connection,
                    Some(Err(error)) => {
                        tracing::warn!(%error, "accept failed; pausing");
                        tokio::time::sleep(PAUSE_AFTER_ACCEPT_ERROR).await;
                        continue;
                    }
                    None => return,
                },
            };
            let counted = Connection { _counted: Some(permit), ..connection };
            if accepted.send(Ok(counted)).await.is_err() {
                return;
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))
}

/// The first bytes of a backup's replication connection, before TLS and
/// HTTP/2. They say only where the connection is served (a node runs its
/// peers' replication on a thread of its own, and every other connection
/// on its readers' thread; see [`split_replication`]): they grant nothing,
/// and a connection without them is served all the same.
pub const REPLICATION_PREAMBLE: &[u8] = b"GAVEL-REPLICATION/1\r\n";

/// How long an accepted connection has to send its first bytes before it
/// is taken for a reader's (a client sends its preface at once).
const FIRST_BYTES_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The connections of `incoming` in two: those that open with
/// [`REPLICATION_PREAMBLE`] (taken off them), and every other one, whole.
/// A node serves the first on the thread that runs its replication and the
/// second on its readers' thread, so that no reader's work queues before a
/// bid's on the way to and from its backups. Each connection is looked at
/// in a task of its own, so one that sends nothing holds up no other.
pub fn split_replication(mut incoming: Incoming) -> (Incoming, Incoming) {
    let (replication, replication_receiver) = tokio::sync::mpsc::channel(1);
    let (others, others_receiver) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let mut looking = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                next = incoming.next() => match next {
                    Some(Ok(connection)) => {
                        let (replication, others) = (replication.clone(), others.clone());
                        looking.spawn(async move {
                            match opens_with_preamble(connection).await {
                                (true, connection) => { let _ = replication.send(Ok(connection)).await; }
                                (false, connection) => { let _ = others.send(Ok(connection)).await; }
                            }
                        });
                    }
                    Some(Err(error)) => { let _ = others.send(Err(error)).await; }
                    None => return,
                },
                Some(_) = looking.join_next(), if !looking.is_empty() => {}
                () = replication.closed() => return,
                () = others.closed() => return,
            }
        }
    });
    let incoming = |receiver| Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver)) as Incoming;
    (incoming(replication_receiver), incoming(others_receiver))
}

/// Whether `connection` opens with the replication preamble: then without
/// it, and otherwise with every byte it sent, as it came.
async fn opens_with_preamble(mut connection: Connection) -> (bool, Connection) {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + FIRST_BYTES_TIMEOUT;
    let mut seen = Vec::with_capacity(REPLICATION_PREAMBLE.len());
    // Reads no further than the preamble, so nothing after it is taken.
    while seen.len() < REPLICATION_PREAMBLE.len() && REPLICATION_PREAMBLE.starts_with(&seen) {
        let mut bytes = [0; REPLICATION_PREAMBLE.len()];
        let wanted = REPLICATION_PREAMBLE.len() - seen.len();
        match tokio::time::timeout_at(deadline, connection.read(&mut bytes[..wanted])).await {
            Ok(Ok(read)) if read > 0 => seen.extend_from_slice(&bytes[..read]),
            _ => break,
        }
    }
    if seen == REPLICATION_PREAMBLE {
        return (true, connection);
    }
    connection.replayed = seen.into();
    (false, connection)
}

/// Room for connections the node has not accepted yet. `TcpListener::bind`
/// gives 128: 256 clients connecting at once overflowed it, and the dropped
/// SYNs cost their senders a second's retransmission timeout.
const LISTEN_BACKLOG: u32 = 1024;

fn listen(address: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As `TcpListener::bind` does: a restarted node can rebind its port while
    // old connections linger in TIME_WAIT. It does not let two processes
    // listen on one port, so the client port stays a lock.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

impl NetworkBackend for Tcp {
    fn bind(&self, address: SocketAddr, _port: Port) -> BoxFuture<io::Result<Incoming>> {
        Box::pin(async move {
            let listener = listen(address)?;
            let incoming = TcpListenerStream::new(listener).map(|accepted| {
                let stream = accepted?;
                // Small messages must not wait for Nagle's algorithm.
                stream.set_nodelay(true)?;
                Ok(Connection::new(stream))
            });
            Ok(Box::pin(incoming) as Incoming)
        })
    }

    fn connect(&self, address: String) -> BoxFuture<io::Result<Connection>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            Ok(Connection::new(stream))
        })
    }

    fn now(&self) -> Now {
        Now::read()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Past the cap, the listener stops accepting until a connection closes:
    /// the next one waits in the backlog, then is served.
    #[tokio::test]
    async fn the_connection_cap_holds_new_connections_until_one_closes() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = listener.local_addr().unwrap();
        let plain: Incoming = Box::pin(TcpListenerStream::new(listener).map(|accepted| Ok(Connection::new(accepted?))));
        let mut incoming = limit_connections(plain, 2);

        let _first = tokio::net::TcpStream::connect(address).await.unwrap();
        let _second = tokio::net::TcpStream::connect(address).await.unwrap();
        let first = incoming.next().await.expect("accepted").expect("ok");
        let _second_accepted = incoming.next().await.expect("accepted").expect("ok");
        let _third = tokio::net::TcpStream::connect(address).await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(200), incoming.next()).await;
        assert!(waited.is_err(), "a third connection is not served while two are");
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(5), incoming.next()).await;
        assert!(matches!(third, Ok(Some(Ok(_)))), "served once one closed");
    }

    /// A node busy serving must not lose connections it has not accepted
    /// yet: the kernel completes the handshakes of a burst of clients into
    /// the backlog. Nothing accepts here, so with a backlog smaller than the
    /// burst the connects past it would never complete.
    #[tokio::test]
    async fn a_burst_of_connections_waits_in_the_backlog() {
        const BURST: usize = 300;
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = listener.local_addr().unwrap();
        let mut connects = tokio::task::JoinSet::new();
        for _ in 0..BURST {
            connects.spawn(tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(address)));
        }
        let mut connected = Vec::new();
        while let Some(result) = connects.join_next().await {
            connected.push(result.unwrap().expect("connect stalled: the backlog overflowed").unwrap());
        }
        assert_eq!(connected.len(), BURST);
        drop(listener);
    }

    /// A connection that opens with the replication preamble comes out on
    /// the first side, without it, even sent a byte at a time; any other
    /// comes out on the second with every byte it sent, even one that
    /// starts as the preamble does; one that sends nothing holds up no
    /// other.
    #[tokio::test]
    async fn connections_are_split_by_the_replication_preamble() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = listener.local_addr().unwrap();
        let plain: Incoming = Box::pin(TcpListenerStream::new(listener).map(|accepted| Ok(Connection::new(accepted?))));
        let (mut replication, mut others) = split_replication(plain);
        async fn next(incoming: &mut Incoming) -> Connection {
            let next = tokio::time::timeout(Duration::from_secs(5), incoming.next()).await.expect("in time");
            next.expect("a connection").expect("accepted")
        }
        async fn read_all(connection: &mut Connection, length: usize) -> Vec<u8> {
            let mut bytes = vec![0; length];
            connection.read_exact(&mut bytes).await.expect("the bytes sent");
            bytes
        }

        let _silent = tokio::net::TcpStream::connect(address).await.unwrap();
        let mut peer = tokio::net::TcpStream::connect(address).await.unwrap();
        for byte in REPLICATION_PREAMBLE {
            peer.write_all(&[*byte]).await.unwrap();
        }
        peer.write_all(b"PRI * HTTP/2.0").await.unwrap();
        let mut served = next(&mut replication).await;
        assert_eq!(read_all(&mut served, 14).await, b"PRI * HTTP/2.0");

        let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
        client.write_all(b"GAVEL-REPLICATED? PRI * HTTP/2.0").await.unwrap();
        let mut served = next(&mut others).await;
        assert_eq!(read_all(&mut served, 32).await, b"GAVEL-REPLICATED? PRI * HTTP/2.0");
        let waited = tokio::time::timeout(Duration::from_millis(100), replication.next()).await;
        assert!(waited.is_err(), "nothing else came out as replication");
    }
}
