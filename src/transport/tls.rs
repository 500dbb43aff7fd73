//! TLS on the wire: the credentials a process speaks TLS with, and the role
//! of the certificate a caller showed (see [`crate::security`]).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::server::TlsConnectInfo;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::security::{Role, certs};

/// How long a connection has to finish its TLS handshake: past it, it is
/// dropped instead of holding a place under the connection cap.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The role of the certificate the caller of `request` presented, if it
/// presented one (the TLS layer has already checked it against the CA).
pub fn peer_role<T>(request: &tonic::Request<T>) -> Option<Role> {
    let info = request.extensions().get::<TlsConnectInfo<()>>()?;
    let certificates = info.peer_certs()?;
    Role::from_certificate(certificates.first()?)
}

/// The TLS credentials of a process: the cluster's CA, and the process's
/// own certificate if it has one (a node always does).
#[derive(Clone)]
pub struct Tls {
    ca: Certificate,
    identity: Option<Identity>,
    role: Option<Role>,
}

impl Tls {
    /// Credentials from PEM text: the CA's certificate, and a certificate
    /// and key of the process's own.
    pub fn new(ca_pem: &str, identity: Option<(&str, &str)>) -> anyhow::Result<Self> {
        install_crypto_provider();
        let role = match identity {
            Some((certificate, _)) => Some(
                certs::role_of_pem(certificate)
                    .ok_or_else(|| anyhow::anyhow!("the certificate names no gavel role (a URI SAN gavel://...)"))?,
            ),
            None => None,
        };
        Ok(Tls {
            ca: Certificate::from_pem(ca_pem),
            identity: identity.map(|(certificate, key)| Identity::from_pem(certificate, key)),
            role,
        })
    }

    /// A node's credentials from `certs_dir`: the CA and the node's own
    /// certificate (see [`certs::CertsDir`]).
    pub fn for_node(certs_dir: &Path, node: &str) -> anyhow::Result<Arc<Self>> {
        let dir = certs::CertsDir::new(certs_dir);
        let (certificate, key) = dir.read_pair(&dir.node_files(node))?;
        let tls = Tls::new(&dir.read_ca()?, Some((&certificate, &key)))?;
        if tls.role != Some(Role::Node(node.to_string())) {
            anyhow::bail!(
                "the node certificate in {} is for {}, not for node {node}",
                certs_dir.display(),
                tls.role.as_ref().map_or("no node".to_string(), Role::to_string)
            );
        }
        Ok(Arc::new(tls))
    }

    /// A client's credentials from `certs_dir`: the CA, and the
    /// certificate of `name` (`client.NAME.crt`) if one is given.
    pub fn for_client(certs_dir: &Path, name: Option<&str>) -> anyhow::Result<Arc<Self>> {
        let dir = certs::CertsDir::new(certs_dir);
        let ca = dir.read_ca()?;
        let tls = match name {
            Some(name) => {
                let (certificate, key) = dir.read_pair(&dir.client_files(name))?;
                Tls::new(&ca, Some((&certificate, &key)))?
            }
            None => Tls::new(&ca, None)?,
        };
        Ok(Arc::new(tls))
    }

    /// How a server of these credentials speaks TLS: its certificate, and
    /// the CA that a caller's certificate (optional: clients have none)
    /// must chain to. `None` without a certificate of its own.
    pub fn server_config(&self) -> Option<ServerTlsConfig> {
        let identity = self.identity.clone()?;
        Some(
            ServerTlsConfig::new()
                .identity(identity)
                .client_ca_root(self.ca.clone())
                .client_auth_optional(true)
                .timeout(HANDSHAKE_TIMEOUT),
        )
    }

    /// How a client of these credentials speaks TLS: it trusts the CA only,
    /// presents its own certificate if it has one, and checks the server's
    /// name against `server_name` (a node's DNS name, to bind the answer to
    /// that node), or against the host it dials when `None`.
    pub fn client_config(&self, server_name: Option<String>) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new().ca_certificate(self.ca.clone()).timeout(HANDSHAKE_TIMEOUT);
        if let Some(identity) = &self.identity {
            config = config.identity(identity.clone());
        }
        if let Some(name) = server_name {
            config = config.domain_name(name);
        }
        config
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("role", &self.role).finish_non_exhaustive()
    }
}

/// Chooses ring as the process's TLS provider. rustls panics when more
/// than one provider is compiled in and none was chosen; which one the
/// build pulls in should not decide whether a node starts.
// rustls now marks ring's provider deprecated for its lack of post-quantum
// key exchange; tonic's `tls-ring` client uses the same provider, and the
// one that has it (aws-lc-rs) builds a C library with every fresh clone.
#[allow(deprecated)]
fn install_crypto_provider() {
    // An error means a provider was chosen already: nothing to do.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
