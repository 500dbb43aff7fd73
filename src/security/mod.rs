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
//! - `gavel://client/NAME`: a client, who may act as NAME without the
//!   name's secret (see [`NameSecrets`]).
//!
//! A node's ports serve clients as well as peers, so they accept
//! connections without a certificate; the peer API checks the role of the
//! certificate itself. With no certificates at all (on loopback, or
//! `--insecure`) nothing is checked: the behaviour of old. This module
//! knows certificates, roles and secrets; the TLS itself is the
//! transport's (`transport::Tls`).

pub mod certs;
mod names;

pub use names::{NameSecrets, SECRET_BYTES};

use std::fmt;

use crate::replication::NodeId;

/// The scheme of the URI SANs that carry a role.
const ROLE_SCHEME: &str = "gavel://";
/// The DNS zone of the names that bind a node's certificate to its id.
const NODE_DNS_ZONE: &str = "node.gavel";

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
