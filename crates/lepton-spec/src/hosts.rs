//! Host names an app is served under on the shared ingress (`"hosts": ["shop.example.com",
//! "*.shop.example.com"]`), and app names used as API keys.
//!
//! A host is a DNS name (letters, digits, `-`; labels of 1–63 characters, at most 253 in all),
//! compared case-insensitively (kept lowercase), without a port or a trailing dot. A wildcard
//! `*.example.com` matches exactly one more label in front (`a.example.com`, not
//! `a.b.example.com` nor `example.com`), as certificates' wildcards do; an exact host wins over
//! a wildcard.

/// Validate and normalise one `hosts` entry: lowercase, a trailing dot dropped.
pub fn normalize_host_pattern(raw: &str) -> Result<String, String> {
    let host = raw.trim_end_matches('.').to_ascii_lowercase();
    let name = host.strip_prefix("*.").unwrap_or(&host);
    if name.is_empty() {
        return Err(format!("{raw:?} is not a host name"));
    }
    if host.len() > 253 {
        return Err(format!("{raw:?} is longer than 253 characters"));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "{raw:?} is not a host name (labels of letters, digits and inner `-`; a wildcard only as a whole first label `*.`; no port)"
            ));
        }
    }
    if !name.contains('.') && host.starts_with("*.") {
        return Err(format!(
            "{raw:?}: a wildcard needs at least two labels after `*.`"
        ));
    }
    Ok(host)
}

/// An app name as the admin API uses it (`/v1/apps/{name}`, the default state directory
/// `<state-root>/<name>`): 1–63 characters of lowercase letters, digits, `-` and `_`, starting
/// with a letter or digit. Never a path.
pub fn check_app_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not an app name (1-63 lowercase letters, digits, `-` or `_`, starting with a letter or digit)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_lowercased_and_checked() {
        assert_eq!(
            normalize_host_pattern("Shop.Example.COM.").as_deref(),
            Ok("shop.example.com")
        );
        assert_eq!(
            normalize_host_pattern("*.example.com").as_deref(),
            Ok("*.example.com")
        );
        assert_eq!(
            normalize_host_pattern("localhost").as_deref(),
            Ok("localhost")
        );
        for bad in [
            "",
            "*",
            "*.com",
            "shop.example.com:8080",
            "a..b",
            "-a.b",
            "a*.b",
            "a.*.b",
            "sh op.com",
        ] {
            assert!(normalize_host_pattern(bad).is_err(), "{bad:?} accepted");
        }
        assert!(normalize_host_pattern(&format!("{}.com", "a".repeat(64))).is_err());
    }

    #[test]
    fn app_names_are_safe_path_components() {
        assert!(check_app_name("shop-2_a").is_ok());
        for bad in ["", "Shop", "../x", "a/b", ".a", "-a", &"a".repeat(64)] {
            assert!(check_app_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
