//! Who may speak to a node: TLS with a cluster CA, and the roles that
//! certificates carry.
//!
//! A certificate of the cluster's CA names one role as a URI SAN:
//!
//! - `gavel://node/HOST:PORT`: a server, by its node id. Node ids share an
//!   address on one host, so an IP SAN binds nothing; the certificate also
//!   carries a DNS name of its own ([`node_dns_name`]) that peers ask for
//!   when they dial that node, so that a probe's answer is that node's.
//! - `gavel://operator/NAME`: may change the membership (`RemoveMember`).
//! - `gavel://client/NAME`: a client; the client API needs no certificate
//!   today, so this role opens nothing a connection without one cannot.
//!
//! A node's ports serve clients as well as peers, so they accept
//! connections without a certificate; the peer API checks the role of the
//! certificate itself ([`peer_role`]). With no certificates at all (on
//! loopback, or `--insecure`) nothing is checked: the behaviour of old.

pub mod certs;
mod names;

pub use names::{NameSecrets, SECRET_BYTES};

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::server::TlsConnectInfo;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::replication::NodeId;

/// The scheme of the URI SANs that carry a role.
const ROLE_SCHEME: &str = "gavel://";
/// The DNS zone of the names that bind a node's certificate to its id.
const NODE_DNS_ZONE: &str = "node.gavel";
/// How long a connection has to finish its TLS handshake: past it, it is
/// dropped instead of holding a place under the connection cap.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a certificate of the cluster's CA lets its holder do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// The server whose node id this is.
    Node(NodeId),
    /// An operator: membership changes.
    Operator(String),
    /// A client, by name.
    Client(String),
}

impl Role {
    /// The URI SAN that names this role in a certificate.
    pub fn uri(&self) -> String {
        match self {
            Role::Node(node) => format!("{ROLE_SCHEME}node/{node}"),
            Role::Operator(name) => format!("{ROLE_SCHEME}operator/{name}"),
            Role::Client(name) => format!("{ROLE_SCHEME}client/{name}"),
        }
    }

    /// The role a URI SAN names, if it names one.
    pub fn from_uri(uri: &str) -> Option<Role> {
        let (kind, name) = uri.strip_prefix(ROLE_SCHEME)?.split_once('/')?;
        if name.is_empty() {
            return None;
        }
        match kind {
            "node" => Some(Role::Node(name.to_string())),
            "operator" => Some(Role::Operator(name.to_string())),
            "client" => Some(Role::Client(name.to_string())),
            _ => None,
        }
    }

    /// The one role a DER certificate names; `None` for a certificate that
    /// names none, or more than one (which no certificate of `gavel cert`
    /// does: it is not trusted with either).
    pub fn from_certificate(der: &[u8]) -> Option<Role> {
        let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
        let names = certificate.subject_alternative_name().ok()??;
        let mut roles = names.value.general_names.iter().filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Role::from_uri(uri),
            _ => None,
        });
        let role = roles.next()?;
        roles.next().is_none().then_some(role)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Node(node) => write!(f, "node {node}"),
            Role::Operator(name) => write!(f, "operator {name:?}"),
            Role::Client(name) => write!(f, "client {name:?}"),
        }
    }
}

/// The DNS name that binds a node's certificate to its id: peers dialing
/// `node` ask for it as the TLS server name. `127.0.0.1:5401` becomes
/// `p5401.127-0-0-1.node.gavel`; an IPv6 host is written in hex.
pub fn node_dns_name(node: &str) -> String {
    let host = match node.parse::<std::net::SocketAddr>() {
        Ok(std::net::SocketAddr::V4(address)) => address.ip().to_string().replace('.', "-"),
        Ok(std::net::SocketAddr::V6(address)) => {
            address.ip().octets().iter().map(|octet| format!("{octet:02x}")).collect()
        }
        // Not IP:PORT (a node id always is): still a valid name, never a
        // node's.
        Err(_) => "invalid".to_string(),
    };
    let port = node.rsplit_once(':').map_or("", |(_, port)| port);
    format!("p{port}.{host}.{NODE_DNS_ZONE}")
}

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

    /// The role of this process's own certificate.
    pub fn role(&self) -> Option<&Role> {
        self.role.as_ref()
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
pub fn install_crypto_provider() {
    // An error means a provider was chosen already: nothing to do.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_survives_its_uri() {
        for role in [Role::Node("127.0.0.1:5401".into()), Role::Operator("ops".into()), Role::Client("ann".into())] {
            assert_eq!(Role::from_uri(&role.uri()), Some(role));
        }
        assert_eq!(Role::from_uri("gavel://node/"), None);
        assert_eq!(Role::from_uri("gavel://king/ann"), None);
        assert_eq!(Role::from_uri("https://node/127.0.0.1:1"), None);
    }

    #[test]
    fn node_dns_names_are_dns_names_of_their_own() {
        assert_eq!(node_dns_name("127.0.0.1:5401"), "p5401.127-0-0-1.node.gavel");
        assert_eq!(node_dns_name("[::1]:5401"), "p5401.00000000000000000000000000000001.node.gavel");
        assert_ne!(node_dns_name("127.0.0.1:5401"), node_dns_name("127.0.0.1:5402"));
        for node in ["127.0.0.1:5401", "[::1]:5401", "10.1.2.3:1"] {
            assert!(rustls::pki_types::ServerName::try_from(node_dns_name(node)).is_ok(), "{node}");
        }
    }
}
