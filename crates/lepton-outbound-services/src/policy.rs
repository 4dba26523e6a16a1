//! Where a guest may connect: the [`AddressPolicy`] seam the runtime wires to the component's
//! `allowed_outbound_hosts` (lepton-outbound), and [`parse_destination`], which turns the address
//! a guest passes to `open` into the scheme and host/port pairs that policy is asked about.

use std::str::FromStr;

/// May this component connect to `scheme://host:port`? Implemented for any matching closure.
pub trait AddressPolicy: Send + Sync {
    /// `host` is a name or an IP literal (IPv6 without brackets).
    fn allows(&self, scheme: &str, host: &str, port: u16) -> bool;
}

impl<F: Fn(&str, &str, u16) -> bool + Send + Sync> AddressPolicy for F {
    fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self(scheme, host, port)
    }
}

/// The destination of an `open` call: the scheme the policy is checked with and every host/port
/// the client may connect to (a PostgreSQL connection string can list several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// e.g. `redis`, `postgres`, `mysql`, `mqtt`.
    pub scheme: String,
    /// Hosts (IPv6 without brackets) with their ports (the scheme's default when omitted).
    pub hosts: Vec<(String, u16)>,
}

/// Why an address could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("invalid address {address:?}: {reason}")]
pub struct DestinationError {
    address: String,
    reason: String,
}

/// Which service an address is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `redis://` / `rediss://` URLs.
    Redis,
    /// `postgres://` / `postgresql://` URLs or `key=value` connection strings.
    Postgres,
    /// `mysql://` URLs.
    Mysql,
    /// `mqtt://` / `mqtts://` URLs (and `tcp://`/`ssl://`, which rumqttc also accepts).
    Mqtt,
}

fn default_port(scheme: &str) -> Option<u16> {
    Some(match scheme {
        "redis" | "rediss" => 6379,
        "postgres" | "postgresql" => 5432,
        "mysql" => 3306,
        "mqtt" | "tcp" => 1883,
        "mqtts" | "ssl" => 8883,
        _ => return None,
    })
}

/// Parse the address a guest passed to `open` for `service`.
pub fn parse_destination(service: Service, address: &str) -> Result<Destination, DestinationError> {
    let err = |reason: String| DestinationError {
        address: address.to_string(),
        reason,
    };
    if service == Service::Postgres && !address.contains("://") {
        // A `host=... port=...` connection string.
        let config = tokio_postgres::Config::from_str(address).map_err(|e| err(e.to_string()))?;
        return postgres_destination(&config).map_err(err);
    }
    let url = url::Url::parse(address).map_err(|e| err(e.to_string()))?;
    let scheme = url.scheme().to_ascii_lowercase();
    let expected: &[&str] = match service {
        Service::Redis => &["redis", "rediss"],
        Service::Postgres => &["postgres", "postgresql"],
        Service::Mysql => &["mysql"],
        Service::Mqtt => &["mqtt", "mqtts", "tcp", "ssl"],
    };
    if !expected.contains(&scheme.as_str()) {
        return Err(err(format!(
            "the scheme must be one of {}",
            expected.join(", ")
        )));
    }
    if service == Service::Postgres {
        let config = tokio_postgres::Config::from_str(address).map_err(|e| err(e.to_string()))?;
        return postgres_destination(&config).map_err(err);
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(err("no host".into())),
    };
    let port = url
        .port()
        .or_else(|| default_port(&scheme))
        .ok_or_else(|| err("no port".into()))?;
    let scheme = match scheme.as_str() {
        "rediss" => "redis",
        "mqtts" | "tcp" | "ssl" => "mqtt",
        _ => scheme.as_str(),
    };
    Ok(Destination {
        scheme: scheme.to_string(),
        hosts: vec![(host, port)],
    })
}

fn postgres_destination(config: &tokio_postgres::Config) -> Result<Destination, String> {
    let ports = config.get_ports();
    let mut hosts = Vec::new();
    for (i, host) in config.get_hosts().iter().enumerate() {
        let name = match host {
            tokio_postgres::config::Host::Tcp(name) => name.trim_matches(['[', ']']).to_string(),
            tokio_postgres::config::Host::Unix(path) => {
                return Err(format!(
                    "Unix socket hosts ({}) are not supported",
                    path.display()
                ));
            }
        };
        let port = match ports.len() {
            0 => 5432,
            1 => ports[0],
            _ => *ports.get(i).unwrap_or(&5432),
        };
        hosts.push((name, port));
    }
    if hosts.is_empty() {
        return Err("no host".into());
    }
    Ok(Destination {
        scheme: "postgres".into(),
        hosts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(scheme: &str, hosts: &[(&str, u16)]) -> Destination {
        Destination {
            scheme: scheme.into(),
            hosts: hosts.iter().map(|(h, p)| (h.to_string(), *p)).collect(),
        }
    }

    #[test]
    fn urls_with_and_without_ports() {
        let p = |s, a| parse_destination(s, a).unwrap();
        assert_eq!(
            p(Service::Redis, "redis://127.0.0.1:6380"),
            dest("redis", &[("127.0.0.1", 6380)])
        );
        assert_eq!(
            p(Service::Redis, "rediss://cache.example"),
            dest("redis", &[("cache.example", 6379)])
        );
        assert_eq!(
            p(Service::Mysql, "mysql://u:p@db:3307/x"),
            dest("mysql", &[("db", 3307)])
        );
        assert_eq!(
            p(Service::Mqtt, "mqtt://[::1]?client_id=c"),
            dest("mqtt", &[("::1", 1883)])
        );
        assert_eq!(
            p(Service::Postgres, "postgres://u:p@pg.example/db"),
            dest("postgres", &[("pg.example", 5432)])
        );
        assert_eq!(
            p(Service::Postgres, "host=a,b port=1,2 user=u dbname=d"),
            dest("postgres", &[("a", 1), ("b", 2)])
        );
        assert_eq!(
            p(Service::Postgres, "host=a port=7 user=u"),
            dest("postgres", &[("a", 7)])
        );
    }

    #[test]
    fn bad_addresses() {
        assert!(parse_destination(Service::Redis, "not a url").is_err());
        assert!(parse_destination(Service::Redis, "mysql://h").is_err());
        assert!(parse_destination(Service::Mqtt, "mqtt://").is_err());
        assert!(parse_destination(Service::Postgres, "host=/var/run/postgresql").is_err());
        assert!(parse_destination(Service::Postgres, "user=u").is_err());
    }
}
