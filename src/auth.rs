//! The operator API's bearer token: configured, or generated once and kept in the data
//! directory, so admin and record endpoints are never open by default.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use revsync_sdk::Secret;

/// The generated token's file inside `store.path`.
pub const TOKEN_FILE: &str = "admin_token";

/// How the operator API authenticates callers.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `Authorization: Bearer <token>` on every protected endpoint.
    Token(Secret),
    /// `--insecure-no-auth`: anyone who reaches the port is an operator.
    Disabled,
}

/// What an authenticated caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything: reads, edits, replays, pauses.
    Admin,
    /// `server.read_only_token`: sees everything an operator sees, changes nothing.
    ReadOnly,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::ReadOnly => "read-only",
        }
    }
}

/// Whether `given` equals `token`, in constant time.
fn same(given: &str, token: &Secret) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(
        given.as_bytes(),
        token.expose().as_bytes(),
    ))
}

impl Auth {
    /// The role a presented token (the bare token, not a header) grants: the admin
    /// token, else `read_only` (`server.read_only_token`). Both are always compared, so
    /// the answer's timing says nothing about which one was close.
    pub fn role(&self, read_only: Option<&Secret>, given: &str) -> Option<Role> {
        let Auth::Token(token) = self else {
            return Some(Role::Admin);
        };
        let admin = same(given, token);
        let reader = read_only.is_some_and(|r| same(given, r));
        if admin {
            Some(Role::Admin)
        } else if reader {
            Some(Role::ReadOnly)
        } else {
            None
        }
    }

    /// The role an `Authorization: Bearer <token>` header grants.
    pub fn role_of_header(&self, read_only: Option<&Secret>, header: Option<&str>) -> Option<Role> {
        if matches!(self, Auth::Disabled) {
            return Some(Role::Admin);
        }
        let given = header?.strip_prefix("Bearer ")?;
        self.role(read_only, given)
    }

    /// Whether `header` (the raw `Authorization` value) carries the token, compared in
    /// constant time so the answer's timing says nothing about the token.
    pub fn allows(&self, header: Option<&str>) -> bool {
        let Auth::Token(token) = self else {
            return true;
        };
        let given = header
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        same(given, token)
    }
}

/// Where the daemon keeps its generated token for a store at `store_path`.
pub fn token_path(store_path: &Path) -> PathBuf {
    store_path.join(TOKEN_FILE)
}

/// A fresh token: 32 bytes from the OS's generator, hex-encoded.
pub fn generate() -> std::io::Result<Secret> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(Secret::new(
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    ))
}

/// Read the generated token at `path`; `Ok(None)` when there is none yet.
pub fn read(path: &Path) -> std::io::Result<Option<Secret>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim();
            if token.is_empty() {
                Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{} is empty; delete it to generate a new token",
                        path.display()
                    ),
                ))
            } else {
                Ok(Some(Secret::new(token)))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The token kept at `path`, generated and written (mode 0600) when absent. The file
/// appears whole or not at all: written under a temporary name, synced, then renamed, so
/// a crash never leaves a half-written token that a later start would trust.
pub fn load_or_create(path: &Path) -> std::io::Result<(Secret, bool)> {
    if let Some(token) = read(path)? {
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "the admin token file is readable by other users; chmod 600 it"
            );
        }
        return Ok((token, false));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let token = generate()?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(token.expose().as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map(|()| (token, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = token_path(&dir.path().join("data"));
        let (first, created) = load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(first.expose().len(), 64);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(again.expose(), first.expose());
        // No temporary file left beside it.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(TOKEN_FILE)]);
    }

    #[test]
    fn only_the_exact_bearer_token_is_allowed() {
        let auth = Auth::Token(Secret::new("s3cret"));
        assert!(auth.allows(Some("Bearer s3cret")));
        assert!(!auth.allows(Some("Bearer s3cre")));
        assert!(!auth.allows(Some("s3cret")));
        assert!(!auth.allows(None));
        assert!(Auth::Disabled.allows(None));
    }

    #[test]
    fn the_read_only_token_grants_reading_only_and_never_admin() {
        let auth = Auth::Token(Secret::new("admin-token"));
        let reader = Secret::new("reader-token");
        assert_eq!(auth.role(Some(&reader), "admin-token"), Some(Role::Admin));
        assert_eq!(
            auth.role(Some(&reader), "reader-token"),
            Some(Role::ReadOnly)
        );
        assert_eq!(auth.role(Some(&reader), "reader-toke"), None);
        assert_eq!(auth.role(None, "reader-token"), None);
        assert_eq!(
            auth.role_of_header(Some(&reader), Some("Bearer reader-token")),
            Some(Role::ReadOnly)
        );
        assert_eq!(
            auth.role_of_header(Some(&reader), Some("reader-token")),
            None
        );
        assert_eq!(Auth::Disabled.role_of_header(None, None), Some(Role::Admin));
    }
}
