//! `gavel cert`: the cluster's CA and the certificates it signs.

use std::process::ExitCode;

use gavel::security::Role;
use gavel::security::certs::CertsDir;

use super::args::{CertCommand, CertFiles};

/// Makes what `command` asks for and says where it went.
pub fn cert(command: CertCommand) -> anyhow::Result<ExitCode> {
    let dir = |files: &CertFiles| match &files.ca_key {
        Some(key) => CertsDir::with_ca_key(&files.certs_dir, key),
        None => CertsDir::new(&files.certs_dir),
    };
    match command {
        CertCommand::CreateCa(files) => {
            let written = dir(&files).create_ca(files.overwrite)?;
            println!("CA certificate: {}", written.display());
        }
        CertCommand::CreateNode { node, hosts, files } => {
            let written = dir(&files).create_node(&node, &hosts, files.overwrite)?;
            println!("node {node}: {} and {}", written.certificate.display(), written.key.display());
        }
        CertCommand::CreateClient { name, files } => {
            let written = dir(&files).create_client(&Role::Client(name.clone()), files.overwrite)?;
            println!("client {name}: {} and {}", written.certificate.display(), written.key.display());
        }
        CertCommand::CreateOperator { name, files } => {
            let written = dir(&files).create_client(&Role::Operator(name.clone()), files.overwrite)?;
            println!("operator {name}: {} and {}", written.certificate.display(), written.key.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
