//! The secrets of the names a client acts under. A name's secret is made by
//! the client on the name's first use (128 random bits) and kept in a file
//! of its own, so that the same user keeps the name across processes; the
//! service keeps only its SHA-256 (see [`crate::auction::NameDigest`]).

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use sha2::Digest as _;

/// The bytes of a name's secret.
pub const SECRET_BYTES: usize = 16;

/// A directory of name secrets (mode 0700), one file each (mode 0600),
/// named by the SHA-256 of the name so that any name makes a file name.
#[derive(Debug)]
pub struct NameSecrets {
    dir: PathBuf,
    known: Mutex<HashMap<String, [u8; SECRET_BYTES]>>,
}

impl NameSecrets {
    pub fn in_dir(dir: &Path) -> Self {
        NameSecrets { dir: dir.to_path_buf(), known: Mutex::default() }
    }

    /// `$XDG_CONFIG_HOME/gavel/names`, else `$HOME/.config/gavel/names`.
    pub fn default_dir() -> Option<PathBuf> {
        let config = match std::env::var_os("XDG_CONFIG_HOME").filter(|dir| !dir.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(std::env::var_os("HOME").filter(|dir| !dir.is_empty())?).join(".config"),
        };
        Some(config.join("gavel").join("names"))
    }

    /// The secret of `name`, made and kept on its first use.
    pub fn secret_for(&self, name: &str) -> io::Result<[u8; SECRET_BYTES]> {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(secret) = known.get(name) {
            return Ok(*secret);
        }
        let path = self.dir.join(hex(&sha2::Sha256::digest(name.as_bytes())));
        let secret = match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{} holds no secret", path.display()))
            })?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => self.make(&path)?,
            Err(error) => return Err(error),
        };
        known.insert(name.to_string(), secret);
        Ok(secret)
    }

    fn make(&self, path: &Path) -> io::Result<[u8; SECRET_BYTES]> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
        let secret: [u8; SECRET_BYTES] = rand::random();
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
        file.write_all(format!("{}\n", hex(&secret)).as_bytes())?;
        file.sync_all()?;
        Ok(secret)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn parse(text: &str) -> Option<[u8; SECRET_BYTES]> {
    let text = text.trim();
    if text.len() != SECRET_BYTES * 2 {
        return None;
    }
    let mut secret = [0; SECRET_BYTES];
    for (i, byte) in secret.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(secret)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_name_keeps_its_secret_across_stores_and_only_its_owner_reads_it() {
        let dir = std::env::temp_dir().join(format!("gavel-names-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = NameSecrets::in_dir(&dir).secret_for("ann").unwrap();
        assert_eq!(NameSecrets::in_dir(&dir).secret_for("ann").unwrap(), first, "read back by another store");
        assert_ne!(NameSecrets::in_dir(&dir).secret_for("bob").unwrap(), first);
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        for file in std::fs::read_dir(&dir).unwrap() {
            assert_eq!(file.unwrap().metadata().unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
