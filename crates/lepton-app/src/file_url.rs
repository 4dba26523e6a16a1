//! `file://` URLs as used for content sources in LockedApps.
//!
//! Paths are written verbatim after `file://`, except that `%`, space, `#` and `?` are
//! percent-encoded so the URL stays unambiguous; [`to_path`] reverses this.

use std::path::{Path, PathBuf};

/// Builds a `file://` URL for an absolute path.
pub fn from_path(path: &Path) -> String {
    let raw = path.to_string_lossy();
    let mut out = String::with_capacity(raw.len() + 7);
    out.push_str("file://");
    for ch in raw.chars() {
        match ch {
            '%' => out.push_str("%25"),
            ' ' => out.push_str("%20"),
            '#' => out.push_str("%23"),
            '?' => out.push_str("%3F"),
            '\\' => out.push('/'),
            c => out.push(c),
        }
    }
    out
}

/// Parses a `file://` URL back into a path; `None` if it is not a `file://` URL.
pub fn to_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("file://")?;
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = rest
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(PathBuf::from(String::from_utf8_lossy(&out).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let p = Path::new("/tmp/a b/c%d#e?.wasm");
        let url = from_path(p);
        assert_eq!(url, "file:///tmp/a%20b/c%25d%23e%3F.wasm");
        assert_eq!(to_path(&url).unwrap(), p);
        assert_eq!(
            to_path("file:///x/sha256:ab").unwrap(),
            Path::new("/x/sha256:ab")
        );
        assert!(to_path("https://x").is_none());
    }
}
