//! The turmoil side of [`gavel::transport::NetworkBackend`]: listeners and
//! dialing over turmoil's simulated TCP, the simulated clock, and the client
//! port modelled as the leadership lock it is on one real host.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use gavel::replication::Now;
use gavel::transport::{BoxFuture, Connection, Incoming, NetworkBackend, Port};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_stream::Stream;

/// Where the simulated clock starts: a fixed wall-clock time, so a seed
/// replays with the same timestamps (turmoil's default is the real now).
pub const EPOCH_UNIX_MS: u64 = 1_700_000_000_000;

/// The port every host's client listener uses behind the virtual address.
pub const CLIENT_PORT: u16 = 5000;

/// The address every node and client is configured with as "the client
/// port". No host has it: dialing it reaches whichever host holds the
/// [`ClientPortLock`]. An address of the documentation range (RFC 5737), so
/// it names nothing anywhere, though no packet ever leaves the simulation.
pub fn virtual_client_address() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), CLIENT_PORT)
}

/// Who holds the client port, shared by every host's [`SimNetwork`].
///
/// On one real host the operating system lets only one process bind the
/// client port; that is the whole of gavel's leadership lock. Across
/// simulated hosts nothing enforces it, so this lock does: binding the client
/// port takes it, and dropping the listener (which a crash does, since it
/// drops every task of the host) gives it back.
#[derive(Debug, Default)]
pub struct ClientPortLock {
    state: Mutex<LockState>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Holder {
    ip: IpAddr,
    /// Tells one tenure from the next, so a stale guard never releases a
    /// later holder's lock.
    tenure: u64,
}

#[derive(Debug, Default)]
struct LockState {
    holder: Option<Holder>,
    next_tenure: u64,
}

impl ClientPortLock {
    /// The host that holds the client port now, if any.
    pub fn holder(&self) -> Option<IpAddr> {
        self.lock().holder.map(|holder| holder.ip)
    }

    /// How many times the client port has been taken: one per leadership.
    pub fn tenures(&self) -> u64 {
        self.lock().next_tenure
    }

    /// Releases the lock if `ip` holds it. Never needed while turmoil's
    /// crash drops the crashed host's tasks, and the guard with them; the
    /// driver calls it only after reporting a crashed holder, so the run
    /// can go on.
    pub fn release_held_by(&self, ip: IpAddr) {
        let mut state = self.lock();
        if state.holder.is_some_and(|holder| holder.ip == ip) {
            state.holder = None;
        }
    }

    fn try_acquire(&self, ip: IpAddr) -> Option<Holder> {
        let mut state = self.lock();
        if state.holder.is_some() {
            return None;
        }
        state.next_tenure += 1;
        let holder = Holder { ip, tenure: state.next_tenure };
        state.holder = Some(holder);
        Some(holder)
    }

    fn release(&self, holder: Holder) {
        let mut state = self.lock();
        if state.holder == Some(holder) {
            state.holder = None;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LockState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Gives the client port back when the client listener is dropped.
struct ClientPortGuard {
    lock: Arc<ClientPortLock>,
    holder: Holder,
}

impl Drop for ClientPortGuard {
    fn drop(&mut self) {
        self.lock.release(self.holder);
    }
}

/// One host's view of the simulated network.
#[derive(Clone, Debug)]
pub struct SimNetwork {
    /// This host's own address: where its listeners are.
    own_ip: IpAddr,
    lock: Arc<ClientPortLock>,
    /// The host's random numbers (epoch nonces), drawn from the run's seed.
    rng: Arc<Mutex<StdRng>>,
}

impl SimNetwork {
    /// `seed` must differ between the hosts of one run and be fixed by the
    /// run's seed.
    pub fn new(own_ip: IpAddr, lock: Arc<ClientPortLock>, seed: u64) -> Self {
        SimNetwork { own_ip, lock, rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))) }
    }
}

impl NetworkBackend for SimNetwork {
    fn bind(&self, address: SocketAddr, port: Port) -> BoxFuture<io::Result<Incoming>> {
        let own_ip = self.own_ip;
        let lock = Arc::clone(&self.lock);
        Box::pin(async move {
            match port {
                Port::Node => {
                    if address.ip() != own_ip {
                        return Err(io::Error::new(
                            io::ErrorKind::AddrNotAvailable,
                            format!("{address} is not this host's address {own_ip}"),
                        ));
                    }
                    let listener = bind_any(address.port()).await?;
                    Ok(accepting(listener, None))
                }
                Port::Client => {
                    if address != virtual_client_address() {
                        return Err(io::Error::new(
                            io::ErrorKind::AddrNotAvailable,
                            format!("{address} is not the client address"),
                        ));
                    }
                    let Some(holder) = lock.try_acquire(own_ip) else {
                        return Err(io::Error::new(io::ErrorKind::AddrInUse, "the client port is held"));
                    };
                    let guard = ClientPortGuard { lock, holder };
                    // On failure the guard drops here and gives the lock back.
                    let listener = bind_any(CLIENT_PORT).await?;
                    Ok(accepting(listener, Some(guard)))
                }
            }
        })
    }

    fn connect(&self, address: String) -> BoxFuture<io::Result<Connection>> {
        let lock = Arc::clone(&self.lock);
        Box::pin(async move {
            let address: SocketAddr = address
                .parse()
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, format!("{address:?}: {error}")))?;
            let target = if address == virtual_client_address() {
                match lock.holder() {
                    Some(ip) => SocketAddr::new(ip, CLIENT_PORT),
                    None => {
                        return Err(io::Error::new(io::ErrorKind::ConnectionRefused, "nobody holds the client port"));
                    }
                }
            } else {
                address
            };
            let stream = turmoil::net::TcpStream::connect(target).await?;
            Ok(Connection::new(stream))
        })
    }

    fn now(&self) -> Now {
        Now { instant: tokio::time::Instant::now().into_std(), unix_ms: sim_unix_ms() as i64 }
    }

    fn random(&self) -> u64 {
        self.rng.lock().unwrap_or_else(PoisonError::into_inner).random()
    }
}

/// The simulated wall clock, in milliseconds since the Unix epoch.
pub fn sim_unix_ms() -> u64 {
    EPOCH_UNIX_MS + sim_elapsed().as_millis() as u64
}

/// Simulated time since the simulation started, the same on every host.
pub fn sim_elapsed() -> Duration {
    turmoil::sim_elapsed().expect("called from a simulated host")
}

async fn bind_any(port: u16) -> io::Result<turmoil::net::TcpListener> {
    turmoil::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)).await
}

type Accept = Pin<Box<dyn Future<Output = io::Result<(turmoil::net::TcpStream, SocketAddr)>> + Send>>;

/// A listener as a stream of connections, holding the client port's guard
/// for as long as it lives.
struct Accepting {
    listener: Arc<turmoil::net::TcpListener>,
    pending: Option<Accept>,
    _guard: Option<ClientPortGuard>,
}

fn accepting(listener: turmoil::net::TcpListener, guard: Option<ClientPortGuard>) -> Incoming {
    Box::pin(Accepting { listener: Arc::new(listener), pending: None, _guard: guard })
}

impl Stream for Accepting {
    type Item = io::Result<Connection>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let pending = this.pending.get_or_insert_with(|| {
            let listener = Arc::clone(&this.listener);
            Box::pin(async move { listener.accept().await })
        });
        let accepted = std::task::ready!(pending.as_mut().poll(cx));
        this.pending = None;
        Poll::Ready(Some(accepted.map(|(stream, _peer)| Connection::new(stream))))
    }
}
