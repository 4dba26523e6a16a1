//! One `allowed_outbound_hosts` entry: Spin's grammar `<scheme>://<host>[:<port>]` parsed into an
//! [`AllowedHost`], and matching a concrete destination ([`Target`]) against it.
//!
//! - scheme: `*` or one alphabetic scheme (lists such as `http,https` are refused);
//! - host: `*`, `*.domain` (a suffix match on names), a literal name or IP, a CIDR, `self` /
//!   `self.alt` (requests to the app itself), `<id>.spin.internal`, `*.spin.internal`;
//! - port: `*`, a number, a range `a..b` (end-exclusive), or omitted, meaning the scheme's
//!   default (http 80, https 443, postgres 5432, mysql 3306, redis 6379, mqtt 1883; no default
//!   for any other scheme, `*` included, so omitting it there is an error);
//! - one trailing `/` is tolerated; a path is an error.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// Why an entry does not follow the grammar. The message names the part that is wrong; callers add
/// the app, component and entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// `insecure:allow-all` is a Spin 1 `allowed_http_hosts` value, not an outbound host.
    #[error("`insecure:allow-all` is not allowed here; use `*://*:*` to allow every host")]
    InsecureAllowAll,
    /// No `://`.
    #[error(
        "no scheme: write `<scheme>://<host>[:<port>]`, e.g. `https://example.com` or `*://example.com:*`"
    )]
    MissingScheme,
    /// The scheme is neither `*` nor one alphabetic word.
    #[error("scheme `{0}` is invalid: use `*` or one alphabetic scheme such as `https`")]
    BadScheme(String),
    /// The host is empty.
    #[error("the host is empty")]
    EmptyHost,
    /// The host is not a valid name, IP, CIDR or wildcard.
    #[error("host `{host}` is invalid: {reason}")]
    BadHost {
        /// The host as written.
        host: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The entry has a path after the authority.
    #[error("`{0}` has a path; only `<scheme>://<host>[:<port>]` is allowed")]
    HasPath(String),
    /// The port is not `*`, a number or a range.
    #[error("port `{0}` is invalid: use `*`, a number (1-65535) or a range `a..b`")]
    BadPort(String),
    /// The port was omitted for a scheme without a well-known port.
    #[error("no port given and scheme `{0}` has no default port; add `:<port>` or `:*`")]
    MissingPort(String),
}

/// The scheme part of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemeSpec {
    /// `*`.
    Any,
    /// One scheme, lowercased.
    Named(String),
}

/// The host part of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSpec {
    /// `*`: every host, including the app itself and its components.
    Any,
    /// `*.domain`: names ending in the suffix (stored with its leading dot, lowercased).
    Suffix(String),
    /// `self` / `self.alt`: requests to the app itself (relative URLs).
    SelfApp,
    /// A literal name or IP, lowercased (an IPv6 literal without brackets).
    Exact(String),
    /// A network: matches IP literals inside it.
    Cidr(IpNet),
}

/// The port part of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortSpec {
    /// `*`.
    Any,
    /// One port.
    Single(u16),
    /// `a..b`: `a` up to but not including `b`.
    Range(u16, u16),
}

/// A parsed `allowed_outbound_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    /// The scheme.
    pub scheme: SchemeSpec,
    /// The host.
    pub host: HostSpec,
    /// The port.
    pub port: PortSpec,
}

/// A concrete destination: scheme, host (lowercased, IPv6 without brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    scheme: String,
    host: String,
    port: u16,
}

/// The well-known port of `scheme`, used when an entry or a URL omits the port.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme.to_ascii_lowercase().as_str() {
        "http" => Some(80),
        "https" => Some(443),
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        _ => None,
    }
}

impl Target {
    /// A destination from its parts. `host` may be a bracketed IPv6 literal.
    pub fn new(scheme: &str, host: &str, port: u16) -> Self {
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        Self {
            scheme: scheme.to_ascii_lowercase(),
            host: host.to_ascii_lowercase(),
            port,
        }
    }

    /// The destination of an absolute URL such as `redis://cache.example:6380/0`. Without a port
    /// the scheme's default applies; `None` if the URL has no host, no port can be known, or the
    /// host is malformed (as in URLs, an IPv6 literal must be bracketed, and only it may be).
    pub fn from_url(url: &str) -> Option<Self> {
        let (scheme, rest) = url.split_once("://")?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        // Drop any `user:password@`.
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let (host, port) = split_host_port(authority);
        if host.is_empty() {
            return None;
        }
        // `split_host_port` takes an unbracketed host with several colons (`::1:8443`) whole, as
        // entries may write IPv6 literals that way; in a URL that host (port included) would be
        // checked as something the URL does not name.
        let well_formed = if authority.starts_with('[') {
            host.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            !host.contains([':', '[', ']'])
        };
        if !well_formed {
            return None;
        }
        let port = match port {
            Some(p) => p.parse().ok()?,
            None => default_port(scheme)?,
        };
        Some(Self::new(scheme, host, port))
    }

    /// The scheme, lowercased.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The host, lowercased.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// Split `host[:port]` (`[v6]:port` for IPv6) into host and port text.
fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[')
        && let Some((host, after)) = rest.split_once(']')
    {
        return (host, after.strip_prefix(':'));
    }
    match authority.rsplit_once(':') {
        // An unbracketed IPv6 literal has several colons: it is all host.
        Some((host, _)) if host.contains(':') => (authority, None),
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

impl AllowedHost {
    /// Parse one entry (templates already resolved).
    pub fn parse(entry: &str) -> Result<Self, EntryError> {
        let entry = entry.trim();
        if entry == "insecure:allow-all" {
            return Err(EntryError::InsecureAllowAll);
        }
        let (scheme, rest) = entry.split_once("://").ok_or(EntryError::MissingScheme)?;
        let scheme = parse_scheme(scheme)?;
        // One trailing `/` is tolerated; anything after the authority is a path.
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = split_entry_authority(rest)?;
        let host = parse_host(host)?;
        let port = match port {
            Some(p) => parse_port(p)?,
            None => match &scheme {
                SchemeSpec::Named(s) => PortSpec::Single(
                    default_port(s).ok_or_else(|| EntryError::MissingPort(s.clone()))?,
                ),
                SchemeSpec::Any => return Err(EntryError::MissingPort("*".into())),
            },
        };
        Ok(Self { scheme, host, port })
    }

    /// Whether this entry allows connecting to `target`.
    pub fn allows(&self, target: &Target) -> bool {
        self.allows_scheme(&target.scheme)
            && self.allows_host(&target.host)
            && self.allows_port(target.port)
    }

    /// Whether this entry allows a request to the app itself (a relative URL or `self.alt`) over
    /// `scheme`. As in Spin, only the scheme and host are considered.
    pub fn allows_self(&self, scheme: &str) -> bool {
        self.allows_scheme(scheme) && matches!(self.host, HostSpec::Any | HostSpec::SelfApp)
    }

    /// Whether this entry could match some destination reached by name (not only the app itself).
    pub fn could_match_names(&self) -> bool {
        !matches!(self.host, HostSpec::SelfApp)
    }

    fn allows_scheme(&self, scheme: &str) -> bool {
        match &self.scheme {
            SchemeSpec::Any => true,
            SchemeSpec::Named(s) => s.eq_ignore_ascii_case(scheme),
        }
    }

    fn allows_host(&self, host: &str) -> bool {
        match &self.host {
            HostSpec::Any => true,
            HostSpec::SelfApp => false,
            HostSpec::Exact(h) => h.eq_ignore_ascii_case(host),
            HostSpec::Suffix(suffix) => {
                host.parse::<IpAddr>().is_err()
                    && host.len() > suffix.len()
                    && host.to_ascii_lowercase().ends_with(suffix.as_str())
            }
            HostSpec::Cidr(net) => host.parse::<IpAddr>().is_ok_and(|ip| net.contains(&ip)),
        }
    }

    fn allows_port(&self, port: u16) -> bool {
        match self.port {
            PortSpec::Any => true,
            PortSpec::Single(p) => p == port,
            PortSpec::Range(start, end) => (start..end).contains(&port),
        }
    }
}

fn parse_scheme(scheme: &str) -> Result<SchemeSpec, EntryError> {
    if scheme == "*" {
        Ok(SchemeSpec::Any)
    } else if !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(SchemeSpec::Named(scheme.to_ascii_lowercase()))
    } else {
        Err(EntryError::BadScheme(scheme.to_string()))
    }
}

/// Split an entry's authority into host and optional port, rejecting paths. A CIDR's `/len` is
/// part of the host, so `10.0.0.0/8:5432` is a host and a port.
fn split_entry_authority(rest: &str) -> Result<(&str, Option<&str>), EntryError> {
    if rest.is_empty() {
        return Err(EntryError::EmptyHost);
    }
    let (host, port) = split_host_port(rest);
    if let Some(port) = port
        && port.contains('/')
    {
        return Err(EntryError::HasPath(rest.to_string()));
    }
    if let Some((addr, tail)) = host.split_once('/') {
        // `addr/len` with a numeric length is a CIDR; anything else is a path.
        let is_cidr = addr.parse::<IpAddr>().is_ok()
            && !tail.is_empty()
            && tail.bytes().all(|b| b.is_ascii_digit());
        if !is_cidr {
            return Err(EntryError::HasPath(rest.to_string()));
        }
    }
    Ok((host, port))
}

fn parse_host(host: &str) -> Result<HostSpec, EntryError> {
    let bad = |reason| EntryError::BadHost {
        host: host.to_string(),
        reason,
    };
    if host.is_empty() {
        return Err(EntryError::EmptyHost);
    }
    let lower = host.to_ascii_lowercase();
    match lower.as_str() {
        "*" => return Ok(HostSpec::Any),
        "self" | "self.alt" => return Ok(HostSpec::SelfApp),
        _ => {}
    }
    if lower.contains('/') {
        return IpNet::from_str(&lower)
            .map(HostSpec::Cidr)
            .map_err(|_| bad("not a valid CIDR network"));
    }
    if let Ok(ip) = lower.parse::<IpAddr>() {
        return Ok(HostSpec::Exact(ip.to_string()));
    }
    let (name, suffix) = match lower.strip_prefix("*.") {
        Some(domain) => (domain, true),
        None => (lower.as_str(), false),
    };
    if name.contains('*') {
        return Err(bad(
            "a wildcard may only be the whole host (`*`) or a leading `*.`",
        ));
    }
    if name.is_empty() || name.starts_with('.') || name.ends_with('.') || name.contains("..") {
        return Err(bad("empty name label"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err(bad(
            "only letters, digits, `-`, `_` and `.` are allowed in a host name",
        ));
    }
    Ok(if suffix {
        HostSpec::Suffix(format!(".{name}"))
    } else {
        HostSpec::Exact(name.to_string())
    })
}

fn parse_port(port: &str) -> Result<PortSpec, EntryError> {
    let bad = || EntryError::BadPort(port.to_string());
    if port == "*" {
        return Ok(PortSpec::Any);
    }
    let number = |s: &str| -> Result<u16, EntryError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse::<u16>().map_err(|_| bad())
    };
    if let Some((start, end)) = port.split_once("..") {
        let (start, end) = (number(start)?, number(end)?);
        if start >= end {
            return Err(bad());
        }
        return Ok(PortSpec::Range(start, end));
    }
    let p = number(port)?;
    if p == 0 {
        return Err(bad());
    }
    Ok(PortSpec::Single(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> AllowedHost {
        AllowedHost::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn allows(entry: &str, url: &str) -> bool {
        let target = Target::from_url(url).unwrap_or_else(|| panic!("bad test url {url}"));
        parse(entry).allows(&target)
    }

    #[test]
    fn schemes() {
        assert_eq!(parse("*://example.com:*").scheme, SchemeSpec::Any);
        assert_eq!(
            parse("HTTPS://example.com").scheme,
            SchemeSpec::Named("https".into())
        );
        for bad in [
            "http,https://example.com",
            "ht-tp://example.com",
            "://example.com",
            "h2://x.com:1",
        ] {
            assert!(
                matches!(AllowedHost::parse(bad), Err(EntryError::BadScheme(_))),
                "{bad}"
            );
        }
        assert_eq!(
            AllowedHost::parse("example.com"),
            Err(EntryError::MissingScheme)
        );
        assert_eq!(
            AllowedHost::parse("insecure:allow-all"),
            Err(EntryError::InsecureAllowAll)
        );
    }

    #[test]
    fn default_ports() {
        for (entry, port) in [
            ("http://a.com", 80),
            ("https://a.com", 443),
            ("postgres://a.com", 5432),
            ("mysql://a.com", 3306),
            ("redis://a.com", 6379),
            ("mqtt://a.com", 1883),
        ] {
            assert_eq!(parse(entry).port, PortSpec::Single(port), "{entry}");
        }
        assert_eq!(
            AllowedHost::parse("tcp://a.com"),
            Err(EntryError::MissingPort("tcp".into()))
        );
        assert_eq!(
            AllowedHost::parse("*://a.com"),
            Err(EntryError::MissingPort("*".into()))
        );
        assert_eq!(parse("tcp://a.com:5000").port, PortSpec::Single(5000));
    }

    #[test]
    fn ports() {
        assert_eq!(parse("http://a.com:*").port, PortSpec::Any);
        assert_eq!(parse("http://a.com:8080").port, PortSpec::Single(8080));
        assert_eq!(
            parse("http://a.com:8000..8010").port,
            PortSpec::Range(8000, 8010)
        );
        for bad in [
            "http://a.com:",
            "http://a.com:x",
            "http://a.com:70000",
            "http://a.com:0",
            "http://a.com:9..9",
            "http://a.com:10..5",
            "http://a.com:1..",
            "http://a.com:-1",
        ] {
            assert!(
                matches!(AllowedHost::parse(bad), Err(EntryError::BadPort(_))),
                "{bad}"
            );
        }
        assert!(allows("http://a.com:8000..8010", "http://a.com:8000/"));
        assert!(allows("http://a.com:8000..8010", "http://a.com:8009/"));
        assert!(!allows("http://a.com:8000..8010", "http://a.com:8010/"));
        assert!(!allows("http://a.com:8000..8010", "http://a.com:7999/"));
    }

    #[test]
    fn trailing_slash_and_paths() {
        assert_eq!(parse("https://example.com/"), parse("https://example.com"));
        assert_eq!(
            parse("https://example.com:8443/"),
            parse("https://example.com:8443")
        );
        for bad in [
            "https://example.com/api",
            "https://example.com:443/api",
            "https://example.com//",
            "http://10.0.0.0/8/x",
        ] {
            assert!(
                matches!(AllowedHost::parse(bad), Err(EntryError::HasPath(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(parse("http://*:*").host, HostSpec::Any);
        assert_eq!(
            parse("http://*.example.com").host,
            HostSpec::Suffix(".example.com".into())
        );
        assert_eq!(parse("http://self").host, HostSpec::SelfApp);
        assert_eq!(parse("http://self.alt").host, HostSpec::SelfApp);
        assert_eq!(
            parse("http://Example.COM").host,
            HostSpec::Exact("example.com".into())
        );
        assert_eq!(
            parse("http://back.spin.internal").host,
            HostSpec::Exact("back.spin.internal".into())
        );
        assert_eq!(
            parse("http://*.spin.internal").host,
            HostSpec::Suffix(".spin.internal".into())
        );
        assert_eq!(
            parse("tcp://127.0.0.1:5000").host,
            HostSpec::Exact("127.0.0.1".into())
        );
        assert_eq!(
            parse("tcp://[::1]:5000").host,
            HostSpec::Exact("::1".into())
        );
        assert_eq!(
            parse("tcp://10.0.0.0/8:5000").host,
            HostSpec::Cidr("10.0.0.0/8".parse().expect("net"))
        );
        assert_eq!(parse("postgres://10.0.0.0/8").port, PortSpec::Single(5432));
        for bad in [
            "http://",
            "http://:80",
            "http://foo.*.com",
            "http://*.",
            "http://a..b",
            "http://a b.com",
            "http://10.0.0.0/33",
            "http://exa$mple.com",
        ] {
            assert!(
                matches!(
                    AllowedHost::parse(bad),
                    Err(EntryError::BadHost { .. }
                        | EntryError::EmptyHost
                        | EntryError::MissingPort(_)
                        | EntryError::HasPath(_))
                ),
                "{bad}: {:?}",
                AllowedHost::parse(bad)
            );
        }
        assert!(
            AllowedHost::parse("http://*").is_ok(),
            "`http://*` is any host on port 80"
        );
    }

    #[test]
    fn matching_spin_examples() {
        // Spin's documented examples.
        assert!(allows("https://example.com", "https://example.com/api/x"));
        assert!(!allows("https://example.com", "http://example.com/"));
        assert!(!allows("https://example.com", "https://example.com:8443/"));
        assert!(allows(
            "https://example.com:8443",
            "https://example.com:8443/"
        ));
        assert!(allows("http://example.com:*", "http://example.com:1234/"));
        assert!(allows("*://example.com:*", "redis://example.com/"));
        assert!(allows("*://example.com:*", "mqtt://example.com:9999"));
        assert!(allows("https://*.example.com", "https://api.example.com/"));
        assert!(allows("https://*.example.com", "https://a.b.example.com/"));
        assert!(!allows("https://*.example.com", "https://example.com/"));
        assert!(!allows("https://*.example.com", "https://badexample.com/"));
        assert!(allows("*://*:*", "postgres://db.internal:5433/app"));
        assert!(allows("http://*:*", "http://127.0.0.1:9/"));
        assert!(allows("http://*", "http://any.host/"));
        assert!(!allows("http://*", "http://any.host:81/"));
        assert!(allows("postgres://localhost", "postgres://localhost/db"));
        assert!(!allows(
            "postgres://localhost",
            "postgres://localhost:5433/db"
        ));
        assert!(allows("redis://localhost:6379", "redis://localhost"));
        assert!(allows("mysql://10.0.0.0/8", "mysql://10.1.2.3/db"));
        assert!(!allows("mysql://10.0.0.0/8", "mysql://11.1.2.3/db"));
        assert!(!allows("mysql://10.0.0.0/8", "mysql://tenhost/db"));
        assert!(allows("tcp://[::1]:5000", "tcp://[::1]:5000"));
        assert!(allows("tcp://[fd00::/8]:*", "tcp://[fd12::1]:1"));
        assert!(!allows("https://Example.com", "https://example.org/"));
        assert!(allows("HTTPS://EXAMPLE.com", "https://example.COM/"));
        assert!(allows(
            "http://user-host_1.example.com",
            "http://user:pw@user-host_1.example.com/"
        ));
        // Service chaining names.
        assert!(allows(
            "http://back.spin.internal",
            "http://back.spin.internal/x"
        ));
        assert!(!allows(
            "http://back.spin.internal",
            "http://front.spin.internal/x"
        ));
        assert!(allows(
            "http://*.spin.internal",
            "http://front.spin.internal/x"
        ));
        assert!(allows("http://*:*", "http://front.spin.internal/x"));
        // `self` only matches the app itself, never a host literally named `self`.
        assert!(!allows("http://self", "http://self/"));
        assert!(!allows("http://self", "http://127.0.0.1/"));
    }

    #[test]
    fn self_requests() {
        assert!(parse("http://self").allows_self("http"));
        assert!(parse("http://self.alt").allows_self("http"));
        assert!(!parse("https://self").allows_self("http"));
        assert!(parse("*://self:*").allows_self("https"));
        assert!(parse("http://*:*").allows_self("http"));
        assert!(!parse("http://127.0.0.1:3000").allows_self("http"));
        assert!(!parse("http://*.example.com").allows_self("http"));
    }

    #[test]
    fn urls() {
        let t = Target::from_url("https://Example.com/x?y").expect("url");
        assert_eq!(
            (t.scheme(), t.host(), t.port()),
            ("https", "example.com", 443)
        );
        let t = Target::from_url("redis://:secret@cache:6380/0").expect("url");
        assert_eq!((t.scheme(), t.host(), t.port()), ("redis", "cache", 6380));
        let t = Target::from_url("tcp://[::1]:80").expect("url");
        assert_eq!(
            (t.host(), t.to_string().as_str()),
            ("::1", "tcp://[::1]:80")
        );
        assert!(
            Target::from_url("tcp://example.com").is_none(),
            "no default port for tcp"
        );
        assert!(Target::from_url("/relative").is_none());
        assert!(Target::from_url("http:///x").is_none());
    }

    /// Found by fuzzing (fuzz/fuzz_targets/allowed_hosts.rs): an unbracketed authority with
    /// several colons was taken whole as the host, port included, with the default port added
    /// (`https://::1:8443` → `[::1:8443]:443`), and printed targets did not parse back.
    #[test]
    fn url_hosts_must_be_well_formed() {
        for url in [
            "https://::1:8443",
            "https://K0:0:0:0:0:0:0:1]:8443",
            "http://a]b:80",
            "http://[example.com]:80",
            "http://[::1:80",
        ] {
            assert_eq!(Target::from_url(url), None, "{url}");
        }
        let t = Target::from_url("https://[::ffff:10.0.0.1]:8443/x").expect("url");
        assert_eq!((t.host(), t.port()), ("::ffff:10.0.0.1", 8443));
        assert_eq!(Target::from_url(&t.to_string()), Some(t));
    }
}
