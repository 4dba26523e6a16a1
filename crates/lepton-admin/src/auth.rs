//! Bearer tokens for the admin API: `Authorization: Bearer TOKEN`, checked against every
//! configured token in constant time (SHA-256 of both sides, compared with `subtle`, all tokens
//! always tried), so neither the token's content nor its length leaks through timing. A missing
//! or wrong token is the same 401, with no hint which.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The accepted tokens (as SHA-256 digests).
#[derive(Clone)]
pub struct Tokens {
    digests: Vec<[u8; 32]>,
}

/// Why the tokens could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token file could not be read.
    #[error("--admin-token-file {path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No token was configured at all.
    #[error(
        "the admin API needs a token: set LEPTON_ADMIN_TOKEN or --admin-token-file (one token per line)"
    )]
    None,
    /// A token is too short to be a secret.
    #[error("{origin}: a token must be at least 16 characters")]
    TooShort {
        /// Where it came from.
        origin: String,
    },
}

impl Tokens {
    /// Tokens from a file (one per line; blank lines and `#` comments ignored) and/or one from
    /// the environment. At least one is required.
    pub fn load(file: Option<&Path>, env: Option<&str>) -> Result<Self, AuthError> {
        let mut tokens: Vec<(String, String)> = Vec::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if !line.is_empty() && !line.starts_with('#') {
                    tokens.push((format!("{} line {}", path.display(), i + 1), line.into()));
                }
            }
        }
        if let Some(token) = env.map(str::trim).filter(|t| !t.is_empty()) {
            tokens.push(("LEPTON_ADMIN_TOKEN".into(), token.into()));
        }
        if tokens.is_empty() {
            return Err(AuthError::None);
        }
        if let Some((origin, _)) = tokens.iter().find(|(_, t)| t.len() < 16) {
            return Err(AuthError::TooShort {
                origin: origin.clone(),
            });
        }
        Ok(Self {
            digests: tokens.iter().map(|(_, t)| digest(t.as_bytes())).collect(),
        })
    }

    /// Whether an `Authorization` header value carries an accepted bearer token.
    pub fn allows(&self, authorization: Option<&[u8]>) -> bool {
        let presented = authorization
            .and_then(|v| {
                let scheme = v.get(..7)?;
                scheme
                    .eq_ignore_ascii_case(b"bearer ")
                    .then(|| v.get(7..))
                    .flatten()
            })
            .map(|t| digest(t.trim_ascii()));
        // Compare against every token whatever happens, so timing says nothing.
        let candidate = presented.unwrap_or([0u8; 32]);
        let mut ok = subtle::Choice::from(0u8);
        for d in &self.digests {
            ok |= d.ct_eq(&candidate);
        }
        presented.is_some() && bool::from(ok)
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_configured_bearer_token_is_allowed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("tokens");
        std::fs::write(&file, "# ops\nfile-token-0123456789\n\n").expect("write");
        let tokens = Tokens::load(Some(&file), Some("env-token-0123456789")).expect("tokens");
        assert!(tokens.allows(Some(b"Bearer file-token-0123456789")));
        assert!(tokens.allows(Some(b"bearer env-token-0123456789")));
        assert!(!tokens.allows(Some(b"Bearer file-token-012345678")));
        assert!(!tokens.allows(Some(b"Basic file-token-0123456789")));
        assert!(!tokens.allows(Some(b"Bearer ")));
        assert!(!tokens.allows(None));
    }

    #[test]
    fn no_token_or_a_short_one_is_refused() {
        assert!(matches!(Tokens::load(None, None), Err(AuthError::None)));
        assert!(matches!(
            Tokens::load(None, Some("short")),
            Err(AuthError::TooShort { .. })
        ));
    }
}
