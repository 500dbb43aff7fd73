//! The HTTP layer's way into the cluster: clients of the client library,
//! kept between requests, each configured with the client port and every
//! node's address. Whichever node an HTTP request reaches, its client finds
//! the leader (following `x-gavel-leader` hints) and retries across a
//! failover with the same request id: that is the forwarding.
//!
//! An `Idempotency-Key` names a session of its own: a keyed write is
//! request 1 of the session the key derives, so a retry with the same key,
//! through any node, is the same replicated request and gets the first
//! one's outcome from the service's dedup table.

use std::sync::{Mutex, PoisonError};

use axum::http::{HeaderMap, StatusCode, header};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::client::{Client, ClientConfig, ClientError};

use super::error::ApiError;

/// Clients kept idle between requests; more are made under load and
/// dropped once it passes.
const MAX_IDLE_CLIENTS: usize = 256;
/// Requests a node forwards at once; past this it answers 503 at once
/// rather than queueing without bound.
pub const MAX_REQUESTS_IN_FLIGHT: usize = 4096;
/// The longest `Idempotency-Key` accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// The header that makes a write exactly-once.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Clients of the client library, lent one per request.
pub struct ClientPool {
    config: ClientConfig,
    idle: Mutex<Vec<Client>>,
    in_flight: Semaphore,
}

impl ClientPool {
    /// Checks the configuration by making the first client.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let first = Client::new(config.clone())?;
        Ok(ClientPool { config, idle: Mutex::new(vec![first]), in_flight: Semaphore::new(MAX_REQUESTS_IN_FLIGHT) })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// A client for one request, returned to the pool when dropped.
    pub fn lease(&self) -> Result<Lease<'_>, ApiError> {
        let permit = self.in_flight.try_acquire().map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!("this node forwards {MAX_REQUESTS_IN_FLIGHT} requests already; retry shortly"),
            )
        })?;
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let client = match idle {
            Some(client) => client,
            None => Client::new(self.config.clone()).map_err(|error| ApiError::unavailable(error.to_string()))?,
        };
        Ok(Lease { client: Some(client), pool: self, keyed: false, _permit: permit })
    }
}

/// A client lent for one request.
pub struct Lease<'a> {
    client: Option<Client>,
    pool: &'a ClientPool,
    /// It sends a keyed request: its own session starts afresh before it
    /// goes back, even if the request was abandoned halfway.
    keyed: bool,
    _permit: SemaphorePermit<'a>,
}

impl Lease<'_> {
    /// Makes the next write request 1 of the session `key` names.
    pub fn use_key(&mut self, key: &SessionKey) {
        self.keyed = true;
        self.client_mut().resume_session(&key.0, 1);
    }

    /// Acts under the names of this request with `secret` (its bearer
    /// token); the client forgets it before it goes back to the pool.
    pub fn use_secret(&mut self, secret: Vec<u8>) {
        self.client_mut().use_secret(Some(secret));
    }

    fn client_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("a lease holds its client until dropped")
    }
}

impl std::ops::Deref for Lease<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("a lease holds its client until dropped")
    }
}

impl std::ops::DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client_mut()
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(mut client) = self.client.take() else { return };
        if self.keyed {
            client.start_new_session();
        }
        // One request's token is never another's.
        client.use_secret(None);
        let mut idle = self.pool.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_CLIENTS {
            idle.push(client);
        }
    }
}

/// Reads `Authorization: Bearer TOKEN`: the secret of the name a write
/// acts under, as 32 hex digits (see `crate::auction::NameDigest`); absent
/// is `None`.
pub fn bearer_secret(headers: &HeaderMap) -> Result<Option<Vec<u8>>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let invalid = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            format!("Authorization must be \"Bearer\" and {} hex digits", 2 * crate::security::SECRET_BYTES),
        )
    };
    let token = value.to_str().ok().and_then(|value| value.strip_prefix("Bearer ")).ok_or_else(invalid)?.trim();
    if token.len() != 2 * crate::security::SECRET_BYTES || !token.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    (0..token.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&token[at..at + 2], 16).map_err(|_| invalid()))
        .collect::<Result<Vec<u8>, ApiError>>()
        .map(Some)
}

/// The session an `Idempotency-Key` names: the same on every node and in
/// every version, so that a retry through another node is the same request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionKey(pub String);

/// Reads the `Idempotency-Key` header: absent is `None` (each request is
/// new); present, it must be 1 to 255 visible ASCII characters.
pub fn session_key(headers: &HeaderMap) -> Result<Option<SessionKey>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else { return Ok(None) };
    let key = value.as_bytes();
    let visible = key.iter().all(|byte| (0x21..=0x7e).contains(byte));
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN || !visible {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
        ));
    }
    Ok(Some(derive_session(key)))
}

/// A client id (at most 64 bytes) for a key: the key itself when it is
/// short, otherwise a 128-bit digest of it. The prefix keeps them apart
/// from the random ids of other clients.
fn derive_session(key: &[u8]) -> SessionKey {
    let [short_prefix, digest_prefix] = crate::transport::HTTP_SESSION_PREFIXES;
    if key.len() <= crate::auction::MAX_CLIENT_ID_LEN - short_prefix.len() {
        return SessionKey(format!("{short_prefix}{}", String::from_utf8_lossy(key)));
    }
    // FNV-1a from two offset bases: written out, not a hasher crate's,
    // because every node and version must derive the same id.
    let fnv = |offset: u64| {
        key.iter().fold(offset, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3))
    };
    SessionKey(format!("{digest_prefix}{:016x}{:016x}", fnv(0xcbf2_9ce4_8422_2325), fnv(0x6c62_272e_07bb_0142)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(value: &str) -> Result<Option<SessionKey>, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(IDEMPOTENCY_KEY, value.parse().expect("header value"));
        session_key(&headers)
    }

    #[test]
    fn a_key_names_one_session_everywhere() {
        assert_eq!(session_key(&HeaderMap::new()), Ok(None));
        assert_eq!(key("order-17"), Ok(Some(SessionKey("http:order-17".into()))));
        let long = "k".repeat(200);
        let session = key(&long).expect("valid").expect("present");
        assert!(session.0.len() <= crate::auction::MAX_CLIENT_ID_LEN);
        assert_eq!(key(&long), Ok(Some(session.clone())));
        assert_ne!(key(&"k".repeat(201)), Ok(Some(session)));
    }

    #[test]
    fn a_key_is_visible_ascii_of_bounded_length() {
        assert_eq!(key("has space").unwrap_err().code, "invalid_idempotency_key");
        assert_eq!(key(&"k".repeat(256)).unwrap_err().status, StatusCode::BAD_REQUEST);
    }
}
