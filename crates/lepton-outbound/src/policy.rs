//! A component's whole outbound policy ([`OutboundPolicy`]): its `allowed_outbound_hosts` with
//! `{{ var }}` templates resolved against the app's variables, Spin 1's `allowed_http_hosts`, and
//! the runtime-config `block_networks` ([`BlockedNetworks`]) applied after the allow check.
//!
//! This is the one question every outbound client asks: "may this component connect to
//! scheme/host/port?" ([`OutboundPolicy::allows`]); HTTP, wasi:sockets, Redis, PostgreSQL, MySQL
//! and MQTT all answer it here.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use lepton_app::LockedComponent;

use crate::allowed::{AllowedHost, EntryError, Target};

/// Resolves an app variable's value by name, for `{{ name }}` templates.
pub trait VariableResolver {
    /// The value of app variable `name`, or why it has none.
    fn resolve(&self, name: &str) -> Result<String, String>;
}

impl<F> VariableResolver for F
where
    F: Fn(&str) -> Result<String, String>,
{
    fn resolve(&self, name: &str) -> Result<String, String> {
        self(name)
    }
}

/// A resolver that knows no variables: any template is an error.
pub fn no_variables(name: &str) -> Result<String, String> {
    Err(format!("variable `{name}` is not defined"))
}

/// An invalid outbound configuration, naming app, component and entry.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// An entry does not follow the grammar.
    #[error("app `{app}`, component `{component}`: {field} entry {entry:?}: {source}")]
    Entry {
        /// The app.
        app: String,
        /// The component.
        component: String,
        /// `allowed_outbound_hosts` or `allowed_http_hosts`.
        field: &'static str,
        /// The entry as written (after template resolution, if any).
        entry: String,
        /// What is wrong.
        #[source]
        source: Box<EntryError>,
    },
    /// A template could not be resolved.
    #[error("app `{app}`, component `{component}`: {field} entry {entry:?}: {reason}")]
    Template {
        /// The app.
        app: String,
        /// The component.
        component: String,
        /// `allowed_outbound_hosts` or `allowed_http_hosts`.
        field: &'static str,
        /// The entry as written.
        entry: String,
        /// Why it could not be resolved.
        reason: String,
    },
    /// The component metadata field is not a list of strings.
    #[error("app `{app}`, component `{component}`: `{field}` must be a list of strings")]
    NotAList {
        /// The app.
        app: String,
        /// The component.
        component: String,
        /// The field.
        field: &'static str,
    },
    /// A `block_networks` entry is neither a CIDR, an IP nor `private`.
    #[error(
        "app `{app}`: runtime config [outbound_networking] block_networks entry {entry:?} is not a CIDR, an IP address or \"private\""
    )]
    BlockedNetwork {
        /// The app.
        app: String,
        /// The entry.
        entry: String,
    },
}

/// Networks no outbound connection may reach (runtime-config `[outbound_networking]
/// block_networks`), applied after the allow check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockedNetworks {
    networks: Vec<IpNet>,
}

/// What `"private"` stands for: IPv4 private ranges (RFC 1918) and IPv6 unique-local addresses.
const PRIVATE_NETWORKS: [&str; 4] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"];

impl BlockedNetworks {
    /// Parse app `app`'s `block_networks` entries: CIDRs, single IPs, or `"private"`.
    pub fn parse<S: AsRef<str>>(app: &str, entries: &[S]) -> Result<Self, OutboundError> {
        let mut networks = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry == "private" {
                networks.extend(
                    PRIVATE_NETWORKS
                        .iter()
                        .filter_map(|n| n.parse::<IpNet>().ok()),
                );
            } else if let Ok(net) = entry.parse::<IpNet>() {
                networks.push(net);
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                networks.push(IpNet::from(ip));
            } else {
                return Err(OutboundError::BlockedNetwork {
                    app: app.to_string(),
                    entry: entry.to_string(),
                });
            }
        }
        Ok(Self { networks })
    }

    /// Whether `ip` (or the IPv4 address an IPv4-mapped IPv6 address stands for) is blocked.
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.networks.iter().any(|n| n.contains(&ip))
    }

    /// Whether nothing is blocked.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }
}

/// One component's outbound policy.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    allowed: Vec<AllowedHost>,
    blocked: BlockedNetworks,
}

/// The two metadata fields an outbound policy is built from.
const OUTBOUND_HOSTS: &str = "allowed_outbound_hosts";
const LEGACY_HTTP_HOSTS: &str = "allowed_http_hosts";

impl OutboundPolicy {
    /// A policy that denies everything (a component with no `allowed_outbound_hosts`).
    pub fn deny_all() -> Self {
        Self::default()
    }

    /// Build the policy of `component` of app `app` from its metadata: `allowed_outbound_hosts`
    /// (templates resolved with `vars`; entries resolving to `""`, `http://` or `https://` are
    /// skipped) plus Spin 1's `allowed_http_hosts`. Any invalid entry is an error.
    pub fn for_component(
        app: &str,
        component: &LockedComponent,
        vars: &dyn VariableResolver,
    ) -> Result<Self, OutboundError> {
        let mut allowed = Vec::new();
        for (field, entry) in metadata_strings(app, component, OUTBOUND_HOSTS)? {
            let resolved = resolve_entry(app, &component.id, field, &entry, vars)?;
            if matches!(resolved.trim(), "" | "http://" | "https://") {
                tracing::debug!(app, component = %component.id, entry, "allowed_outbound_hosts entry resolved to nothing; skipped");
                continue;
            }
            allowed.push(parse_entry(app, &component.id, field, &resolved)?);
        }
        for (field, entry) in metadata_strings(app, component, LEGACY_HTTP_HOSTS)? {
            for converted in legacy_http_host(&entry) {
                allowed.push(parse_entry(app, &component.id, field, &converted)?);
            }
        }
        Ok(Self {
            allowed,
            blocked: BlockedNetworks::default(),
        })
    }

    /// Build a policy from entries that need no template resolution (tests, tools).
    pub fn from_entries<S: AsRef<str>>(entries: &[S]) -> Result<Self, EntryError> {
        let allowed = entries
            .iter()
            .map(|e| AllowedHost::parse(e.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            allowed,
            blocked: BlockedNetworks::default(),
        })
    }

    /// The same policy with `blocked` applied after the allow check.
    pub fn with_blocked_networks(mut self, blocked: BlockedNetworks) -> Self {
        self.blocked = blocked;
        self
    }

    /// The parsed entries.
    pub fn entries(&self) -> &[AllowedHost] {
        &self.allowed
    }

    /// The blocked networks.
    pub fn blocked_networks(&self) -> &BlockedNetworks {
        &self.blocked
    }

    /// May this component connect to `scheme://host:port`? `host` is a name or an IP literal
    /// (IPv6 with or without brackets). An IP literal inside a blocked network is refused even
    /// when allowed; names are checked against `block_networks` once resolved
    /// ([`Self::is_blocked`]).
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.allows_target(&Target::new(scheme, host, port))
    }

    /// [`Self::allows`] for a parsed [`Target`].
    pub fn allows_target(&self, target: &Target) -> bool {
        if !self.allowed.iter().any(|a| a.allows(target)) {
            return false;
        }
        match target.host().parse::<IpAddr>() {
            Ok(ip) => !self.blocked.is_blocked(ip),
            Err(_) => true,
        }
    }

    /// May this component connect to the destination of absolute `url` (e.g.
    /// `redis://cache:6380`)? A URL without a host, or without a port for a scheme that has no
    /// default, is refused.
    pub fn allows_url(&self, url: &str) -> bool {
        Target::from_url(url).is_some_and(|t| self.allows_target(&t))
    }

    /// May this component send a request to the app itself (a relative URL or `self.alt`) over
    /// `scheme`?
    pub fn allows_self(&self, scheme: &str) -> bool {
        self.allowed.iter().any(|a| a.allows_self(scheme))
    }

    /// wasi:sockets: may the component use socket address `addr` over `protocol` (`tcp` or
    /// `udp`)? Checked as `<protocol>://<ip>:<port>`, then against `block_networks`.
    pub fn allows_socket(&self, protocol: &str, addr: SocketAddr) -> bool {
        self.allows_target(&Target::new(protocol, &addr.ip().to_string(), addr.port()))
    }

    /// Whether `ip` is in a blocked network (for destinations reached by name, once resolved).
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        self.blocked.is_blocked(ip)
    }

    /// Whether name lookups (wasi:sockets `ip-name-lookup`) are allowed: only if some entry could
    /// match a destination other than the app itself.
    pub fn allows_name_lookup(&self) -> bool {
        self.allowed.iter().any(AllowedHost::could_match_names)
    }

    /// Whether the policy allows nothing at all.
    pub fn is_deny_all(&self) -> bool {
        self.allowed.is_empty()
    }
}

fn metadata_strings(
    app: &str,
    component: &LockedComponent,
    field: &'static str,
) -> Result<Vec<(&'static str, String)>, OutboundError> {
    let Some(value) = component.metadata.get(field) else {
        return Ok(Vec::new());
    };
    let not_a_list = || OutboundError::NotAList {
        app: app.to_string(),
        component: component.id.clone(),
        field,
    };
    if value.is_null() {
        return Ok(Vec::new());
    }
    value
        .as_array()
        .ok_or_else(not_a_list)?
        .iter()
        .map(|v| {
            v.as_str()
                .map(|s| (field, s.to_string()))
                .ok_or_else(not_a_list)
        })
        .collect()
}

fn parse_entry(
    app: &str,
    component: &str,
    field: &'static str,
    entry: &str,
) -> Result<AllowedHost, OutboundError> {
    AllowedHost::parse(entry).map_err(|source| OutboundError::Entry {
        app: app.to_string(),
        component: component.to_string(),
        field,
        entry: entry.to_string(),
        source: Box::new(source),
    })
}

fn resolve_entry(
    app: &str,
    component: &str,
    field: &'static str,
    entry: &str,
    vars: &dyn VariableResolver,
) -> Result<String, OutboundError> {
    resolve_templates(entry, vars).map_err(|reason| OutboundError::Template {
        app: app.to_string(),
        component: component.to_string(),
        field,
        entry: entry.to_string(),
        reason,
    })
}

/// Replace every `{{ name }}` in `text` with the variable's value.
pub fn resolve_templates(text: &str, vars: &dyn VariableResolver) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "unterminated `{{` template".to_string())?;
        let name = after[..end].trim();
        if !is_variable_name(name) {
            return Err(format!(
                "template `{{{{ {name} }}}}` does not name a variable (lowercase letters, digits and `_`, starting with a letter)"
            ));
        }
        out.push_str(&vars.resolve(name)?);
        rest = &after[end + 2..];
    }
    if rest.contains("}}") {
        return Err("unmatched `}}`".to_string());
    }
    out.push_str(rest);
    Ok(out)
}

/// Spin's variable-name rule: `[a-z0-9_]`, starting with a letter, ending alphanumeric, no `__`.
fn is_variable_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    matches!(bytes.first(), Some(b'a'..=b'z'))
        && bytes
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
        && !name.contains("__")
}

/// Spin 1's `allowed_http_hosts` entry as `allowed_outbound_hosts` entries: `insecure:allow-all`
/// is every http and https host; a bare `host[:port]` allows both http and https.
fn legacy_http_host(entry: &str) -> Vec<String> {
    let entry = entry.trim();
    if entry == "insecure:allow-all" {
        return vec!["http://*:*".into(), "https://*:*".into()];
    }
    if entry.contains("://") {
        return vec![entry.to_string()];
    }
    vec![format!("http://{entry}"), format!("https://{entry}")]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn component(metadata: serde_json::Value) -> LockedComponent {
        serde_json::from_value(serde_json::json!({
            "id": "web",
            "metadata": metadata,
            "source": {"content_type": "application/wasm", "source": "file:///x.wasm"},
        }))
        .expect("component json")
    }

    fn vars(map: &[(&str, &str)]) -> impl Fn(&str) -> Result<String, String> {
        let map: BTreeMap<String, String> = map
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| {
            map.get(name)
                .cloned()
                .ok_or_else(|| format!("variable `{name}` is not defined"))
        }
    }

    #[test]
    fn templates_resolve_against_app_variables() {
        let c = component(serde_json::json!({"allowed_outbound_hosts": [
            "https://{{ api_host }}:{{port}}", "{{ empty }}", "{{ scheme_only }}", "http://",
        ]}));
        let v = vars(&[
            ("api_host", "api.example.com"),
            ("port", "8443"),
            ("empty", ""),
            ("scheme_only", "https://"),
        ]);
        let p = OutboundPolicy::for_component("app", &c, &v).expect("policy");
        assert_eq!(p.entries().len(), 1);
        assert!(p.allows("https", "api.example.com", 8443));
        assert!(!p.allows("https", "api.example.com", 443));
    }

    #[test]
    fn errors_name_app_component_and_entry() {
        let c = component(
            serde_json::json!({"allowed_outbound_hosts": ["https://ok.com", "https://example.com/path"]}),
        );
        let err = OutboundPolicy::for_component("shop", &c, &no_variables).expect_err("path");
        let msg = err.to_string();
        assert!(
            msg.contains("app `shop`")
                && msg.contains("component `web`")
                && msg.contains("\"https://example.com/path\""),
            "{msg}"
        );

        let c = component(serde_json::json!({"allowed_outbound_hosts": ["https://{{ missing }}"]}));
        let msg = OutboundPolicy::for_component("shop", &c, &no_variables)
            .expect_err("var")
            .to_string();
        assert!(
            msg.contains("missing") && msg.contains("component `web`"),
            "{msg}"
        );

        let c = component(serde_json::json!({"allowed_outbound_hosts": ["https://{{ Bad }}"]}));
        assert!(OutboundPolicy::for_component("shop", &c, &no_variables).is_err());
        let c = component(serde_json::json!({"allowed_outbound_hosts": ["https://{{ x"]}));
        assert!(OutboundPolicy::for_component("shop", &c, &vars(&[("x", "y")])).is_err());
        let c = component(serde_json::json!({"allowed_outbound_hosts": ["insecure:allow-all"]}));
        let msg = OutboundPolicy::for_component("shop", &c, &no_variables)
            .expect_err("allow-all")
            .to_string();
        assert!(msg.contains("*://*:*"), "{msg}");
        let c = component(serde_json::json!({"allowed_outbound_hosts": "https://a.com"}));
        assert!(matches!(
            OutboundPolicy::for_component("shop", &c, &no_variables),
            Err(OutboundError::NotAList { .. })
        ));
    }

    #[test]
    fn no_entries_deny_everything() {
        let p =
            OutboundPolicy::for_component("a", &component(serde_json::json!({})), &no_variables)
                .expect("policy");
        assert!(p.is_deny_all());
        assert!(!p.allows("http", "example.com", 80));
        assert!(!p.allows_self("http"));
        assert!(!p.allows_name_lookup());
        assert!(!p.allows_socket("tcp", "127.0.0.1:80".parse().expect("addr")));
    }

    #[test]
    fn legacy_allowed_http_hosts() {
        let c = component(
            serde_json::json!({"allowed_http_hosts": ["example.com", "api.example.com:8080", "https://secure.example.com"]}),
        );
        let p = OutboundPolicy::for_component("a", &c, &no_variables).expect("policy");
        assert!(p.allows("http", "example.com", 80));
        assert!(p.allows("https", "example.com", 443));
        assert!(p.allows("https", "api.example.com", 8080));
        assert!(!p.allows("https", "api.example.com", 443));
        assert!(p.allows("https", "secure.example.com", 443));
        assert!(!p.allows("http", "secure.example.com", 80));
        let c = component(serde_json::json!({"allowed_http_hosts": ["insecure:allow-all"]}));
        let p = OutboundPolicy::for_component("a", &c, &no_variables).expect("policy");
        assert!(p.allows("http", "anything.example", 1234));
        assert!(!p.allows("redis", "anything.example", 6379));
    }

    #[test]
    fn sockets_and_blocked_networks() {
        let p = OutboundPolicy::from_entries(&[
            "tcp://127.0.0.1:5000",
            "udp://10.0.0.0/8:53",
            "*://*.example.com:*",
        ])
        .expect("entries");
        assert!(p.allows_socket("tcp", "127.0.0.1:5000".parse().expect("addr")));
        assert!(!p.allows_socket("tcp", "127.0.0.1:5001".parse().expect("addr")));
        assert!(!p.allows_socket("udp", "127.0.0.1:5000".parse().expect("addr")));
        assert!(p.allows_socket("udp", "10.9.8.7:53".parse().expect("addr")));
        assert!(p.allows_name_lookup());

        let blocked = BlockedNetworks::parse("a", &["private", "127.0.0.1"]).expect("blocked");
        let p = p.with_blocked_networks(blocked);
        assert!(
            !p.allows_socket("tcp", "127.0.0.1:5000".parse().expect("addr")),
            "blocked after allow"
        );
        assert!(
            !p.allows_socket("udp", "10.9.8.7:53".parse().expect("addr")),
            "private"
        );
        assert!(p.is_blocked("192.168.1.1".parse().expect("ip")));
        assert!(
            p.is_blocked("::ffff:10.0.0.1".parse().expect("ip")),
            "IPv4-mapped"
        );
        assert!(p.is_blocked("fd00::1".parse().expect("ip")));
        assert!(!p.is_blocked("8.8.8.8".parse().expect("ip")));
        assert!(
            p.allows("https", "api.example.com", 443),
            "names are checked once resolved"
        );
        assert!(BlockedNetworks::parse("a", &["nonsense"]).is_err());
    }

    #[test]
    fn self_only_allows_no_lookup() {
        let p = OutboundPolicy::from_entries(&["http://self"]).expect("entries");
        assert!(p.allows_self("http"));
        assert!(!p.allows_self("https"));
        assert!(!p.allows_name_lookup());
        assert!(!p.allows("http", "127.0.0.1", 80));
    }

    #[test]
    fn url_checks() {
        let p = OutboundPolicy::from_entries(&["redis://cache:6380", "postgres://db"])
            .expect("entries");
        assert!(p.allows_url("redis://cache:6380"));
        assert!(!p.allows_url("redis://cache"));
        assert!(p.allows_url("postgres://user:pw@db/app"));
        assert!(!p.allows_url("mysql://db"));
        assert!(!p.allows_url("not a url"));
    }
}
