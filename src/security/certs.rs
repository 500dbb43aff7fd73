//! `gavel cert`: a cluster's CA and the certificates it signs, in one
//! directory, in the manner of `cockroach cert`:
//!
//! - `ca.crt`, and the CA's key `ca.key` (beside it by default; keep it
//!   elsewhere with `--ca-key`, since whoever holds it can mint any role);
//! - `node.HOST-PORT.crt` and `.key`, one pair per node id, so that the
//!   nodes of a local cluster share one directory;
//! - `client.NAME.crt` and `.key`, for clients and operators alike (the
//!   role is inside the certificate).
//!
//! Keys are written with mode 0600, and no file is overwritten unless asked.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use time::{Duration, OffsetDateTime};

use super::{Role, node_dns_name};

/// How long a CA is valid, and a certificate it signs.
const CA_LIFETIME: Duration = Duration::days(10 * 366);
const CERTIFICATE_LIFETIME: Duration = Duration::days(5 * 366);
/// Clocks of the machines of one cluster may disagree by this much.
const CLOCK_SKEW: Duration = Duration::hours(1);
/// Longest client or operator name.
const MAX_NAME: usize = 64;

/// A certificate's two files.
#[derive(Clone, Debug)]
pub struct PairFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// A directory of certificates.
#[derive(Clone, Debug)]
pub struct CertsDir {
    dir: PathBuf,
    ca_key: PathBuf,
}

impl CertsDir {
    /// `dir`, with the CA's key inside it.
    pub fn new(dir: &Path) -> Self {
        CertsDir { dir: dir.to_path_buf(), ca_key: dir.join("ca.key") }
    }

    /// `dir`, with the CA's key at `ca_key`.
    pub fn with_ca_key(dir: &Path, ca_key: &Path) -> Self {
        CertsDir { dir: dir.to_path_buf(), ca_key: ca_key.to_path_buf() }
    }

    pub fn ca_certificate(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn node_files(&self, node: &str) -> PairFiles {
        let name: String = node.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect();
        self.pair(&format!("node.{name}"))
    }

    pub fn client_files(&self, name: &str) -> PairFiles {
        self.pair(&format!("client.{name}"))
    }

    fn pair(&self, stem: &str) -> PairFiles {
        PairFiles { certificate: self.dir.join(format!("{stem}.crt")), key: self.dir.join(format!("{stem}.key")) }
    }

    pub fn read_ca(&self) -> anyhow::Result<String> {
        read(&self.ca_certificate())
    }

    /// A certificate and its key, as PEM text.
    pub fn read_pair(&self, files: &PairFiles) -> anyhow::Result<(String, String)> {
        Ok((read(&files.certificate)?, read(&files.key)?))
    }

    /// Makes the CA: `ca.crt` and its key.
    pub fn create_ca(&self, overwrite: bool) -> anyhow::Result<PathBuf> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "gavel CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        (params.not_before, params.not_after) = (now - CLOCK_SKEW, now + CA_LIFETIME);
        let certificate = params.self_signed(&key)?;
        for dir in [Some(self.dir.as_path()), self.ca_key.parent()].into_iter().flatten() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        write_new(&self.ca_key, &key.serialize_pem(), true, overwrite)?;
        write_new(&self.ca_certificate(), &certificate.pem(), false, overwrite)?;
        Ok(self.ca_certificate())
    }

    /// A node's certificate: it serves (serverAuth) and dials its peers
    /// (clientAuth), names its node id as its role, its own DNS name, the
    /// node id's host and `hosts` (other names clients may dial it by).
    pub fn create_node(&self, node: &str, hosts: &[String], overwrite: bool) -> anyhow::Result<PairFiles> {
        let address: std::net::SocketAddr =
            node.parse().map_err(|_| anyhow::anyhow!("{node:?} is not a node id (IP:PORT)"))?;
        let mut names = vec![
            SanType::URI(Role::Node(address.to_string()).uri().try_into()?),
            SanType::DnsName(node_dns_name(&address.to_string()).try_into()?),
            SanType::IpAddress(address.ip()),
        ];
        if address.ip().is_loopback() {
            names.push(SanType::DnsName("localhost".try_into()?));
        }
        for host in hosts {
            names.push(match host.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    host.as_str().try_into().map_err(|_| anyhow::anyhow!("{host:?} is not a host name"))?,
                ),
            });
        }
        let usages = [ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(&format!("node {address}"), names, &usages, &self.node_files(&address.to_string()), overwrite)
    }

    /// A client's or an operator's certificate (clientAuth only).
    pub fn create_client(&self, role: &Role, overwrite: bool) -> anyhow::Result<PairFiles> {
        let name = match role {
            Role::Client(name) | Role::Operator(name) => name,
            Role::Node(_) => anyhow::bail!("a node's certificate is made by create-node"),
        };
        check_name(name)?;
        let names = vec![SanType::URI(role.uri().try_into()?)];
        self.sign(name, names, &[ExtendedKeyUsagePurpose::ClientAuth], &self.client_files(name), overwrite)
    }

    fn sign(
        &self,
        common_name: &str,
        names: Vec<SanType>,
        usages: &[ExtendedKeyUsagePurpose],
        files: &PairFiles,
        overwrite: bool,
    ) -> anyhow::Result<PairFiles> {
        let ca_pem = self.read_ca()?;
        let ca_key = KeyPair::from_pem(&read(&self.ca_key)?)
            .with_context(|| format!("{} is not a key", self.ca_key.display()))?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).context("ca.crt is not a CA certificate")?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.subject_alt_names = names;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages.to_vec();
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        (params.not_before, params.not_after) = (now - CLOCK_SKEW, now + CERTIFICATE_LIFETIME);
        let certificate = params.signed_by(&key, &issuer)?;
        write_new(&files.key, &key.serialize_pem(), true, overwrite)?;
        write_new(&files.certificate, &certificate.pem(), false, overwrite)?;
        Ok(files.clone())
    }
}

impl CertsDir {
    /// Everything a local cluster of `nodes` needs, as `gavel demo --secure`
    /// and the tests make it: a CA, each node's certificate, and an
    /// operator's (`client.operator.crt`).
    pub fn create_cluster(&self, nodes: &[String]) -> anyhow::Result<()> {
        self.create_ca(false)?;
        for node in nodes {
            self.create_node(node, &[], false)?;
        }
        self.create_client(&Role::Operator("operator".into()), false)?;
        Ok(())
    }
}

/// The role a PEM certificate names (see [`Role::from_certificate`]).
pub fn role_of_pem(pem: &str) -> Option<Role> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    Role::from_certificate(&pem.contents)
}

/// A client or operator name: it goes into a URI and a file name.
fn check_name(name: &str) -> anyhow::Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(allowed) || name.starts_with('.') {
        anyhow::bail!("{name:?}: a name is 1 to {MAX_NAME} letters, digits, '-', '_' or '.', not starting with '.'");
    }
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Writes `text` to a new file at `path`; a key only its owner can read.
fn write_new(path: &Path, text: &str, secret: bool, overwrite: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| match path.exists() && !overwrite {
        true => format!("{} exists (--overwrite replaces it)", path.display()),
        false => format!("cannot write {}", path.display()),
    })?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temporary(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gavel-certs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn each_certificate_names_its_role_and_keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temporary("roles");
        let certs = CertsDir::new(&dir);
        certs.create_ca(false).unwrap();
        let node = certs.create_node("127.0.0.1:5401", &["db.example".into()], false).unwrap();
        let operator = certs.create_client(&Role::Operator("ops".into()), false).unwrap();
        let read_role = |files: &PairFiles| role_of_pem(&std::fs::read_to_string(&files.certificate).unwrap());
        assert_eq!(read_role(&node), Some(Role::Node("127.0.0.1:5401".into())));
        assert_eq!(read_role(&operator), Some(Role::Operator("ops".into())));
        for key in [&node.key, &operator.key, &dir.join("ca.key")] {
            assert_eq!(std::fs::metadata(key).unwrap().permissions().mode() & 0o777, 0o600, "{}", key.display());
        }
        assert!(certs.create_ca(false).is_err(), "an existing CA is kept");
        assert!(certs.create_client(&Role::Client("../x".into()), false).is_err());
        assert!(certs.create_node("localhost:1", &[], false).is_err(), "a node id is IP:PORT");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
