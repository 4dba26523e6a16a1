//! Who holds which address, host and state directory: each key's [`Holdings`] (what it serves,
//! what it is starting, what it was last asked for), indexed by value so a claim is checked
//! against the few keys that hold the same port, host or directory instead of every key (10,000
//! apps claiming at start would otherwise compare 10⁸ pairs).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use lepton_spec::{AppSpec, addresses_conflict};

use crate::outcome::StartError;

/// What an app claims: its own address, its data and its hosts.
#[derive(Debug, Clone)]
pub(super) struct Claims {
    address: Option<SocketAddr>,
    state_dir: PathBuf,
    hosts: Vec<String>,
}

impl Claims {
    pub fn of(spec: &AppSpec) -> Self {
        Self {
            address: spec.address,
            state_dir: spec.state_dir.clone(),
            hosts: spec.hosts.clone(),
        }
    }
}

/// What one key holds or is about to hold, for conflict checks.
#[derive(Debug, Clone, Default)]
pub(super) struct Holdings {
    pub running: Option<Claims>,
    pub executing: Option<Claims>,
    pub latest: Option<Claims>,
}

impl Holdings {
    fn iter(&self) -> impl Iterator<Item = &Claims> {
        self.running
            .iter()
            .chain(self.executing.iter())
            .chain(self.latest.iter())
    }

    fn is_empty(&self) -> bool {
        self.running.is_none() && self.executing.is_none() && self.latest.is_none()
    }
}

/// Every key's holdings, with an index from each claimed value to the keys holding it.
#[derive(Debug, Default)]
pub(super) struct ClaimBook {
    holdings: HashMap<String, Holdings>,
    /// Port → keys holding an address on it (how many of their holdings do).
    ports: HashMap<u16, HashMap<String, usize>>,
    hosts: HashMap<String, HashMap<String, usize>>,
    state_dirs: HashMap<PathBuf, HashMap<String, usize>>,
}

impl ClaimBook {
    /// The conflict `spec` would have with a key other than `key`, if any.
    pub fn conflict(&self, key: &str, spec: &AppSpec) -> Option<StartError> {
        let mut candidates: Vec<&String> = Vec::new();
        if let Some(want) = spec.address.filter(|a| a.port() != 0)
            && let Some(keys) = self.ports.get(&want.port())
        {
            candidates.extend(keys.keys());
        }
        for host in &spec.hosts {
            if let Some(keys) = self.hosts.get(host) {
                candidates.extend(keys.keys());
            }
        }
        if let Some(keys) = self.state_dirs.get(&spec.state_dir) {
            candidates.extend(keys.keys());
        }
        candidates.sort();
        candidates.dedup();
        for other in candidates.into_iter().filter(|o| *o != key) {
            let Some(holdings) = self.holdings.get(other) else {
                continue;
            };
            for held in holdings.iter() {
                if let (Some(want), Some(address)) = (spec.address, held.address)
                    && addresses_conflict(want, address)
                {
                    return Some(StartError::Conflict {
                        field: "address",
                        value: want.to_string(),
                        other: other.clone(),
                    });
                }
                if let Some(host) = spec.hosts.iter().find(|h| held.hosts.contains(h)) {
                    return Some(StartError::Conflict {
                        field: "hosts",
                        value: host.clone(),
                        other: other.clone(),
                    });
                }
                if spec.state_dir == held.state_dir {
                    return Some(StartError::Conflict {
                        field: "state_dir",
                        value: spec.state_dir.display().to_string(),
                        other: other.clone(),
                    });
                }
            }
        }
        None
    }

    /// Change `key`'s holdings with `f`, keeping the index in step; returns whether the key
    /// holds nothing afterwards (and was forgotten).
    pub fn update(&mut self, key: &str, f: impl FnOnce(&mut Holdings)) -> bool {
        let mut holdings = self.holdings.remove(key).unwrap_or_default();
        self.index(key, &holdings, false);
        f(&mut holdings);
        self.index(key, &holdings, true);
        let empty = holdings.is_empty();
        if !empty {
            self.holdings.insert(key.to_string(), holdings);
        }
        empty
    }

    /// Move `from`'s holdings to `to`.
    pub fn rename(&mut self, from: &str, to: &str) {
        let mut moved = Holdings::default();
        self.update(from, |h| moved = std::mem::take(h));
        self.update(to, |h| *h = moved);
    }

    fn index(&mut self, key: &str, holdings: &Holdings, add: bool) {
        for claims in holdings.iter() {
            if let Some(port) = claims.address.map(|a| a.port()).filter(|p| *p != 0) {
                count(self.ports.entry(port).or_default(), key, add);
                if self.ports.get(&port).is_some_and(HashMap::is_empty) {
                    self.ports.remove(&port);
                }
            }
            for host in &claims.hosts {
                count(self.hosts.entry(host.clone()).or_default(), key, add);
                if self.hosts.get(host).is_some_and(HashMap::is_empty) {
                    self.hosts.remove(host);
                }
            }
            count(
                self.state_dirs.entry(claims.state_dir.clone()).or_default(),
                key,
                add,
            );
            if self
                .state_dirs
                .get(&claims.state_dir)
                .is_some_and(HashMap::is_empty)
            {
                self.state_dirs.remove(&claims.state_dir);
            }
        }
    }
}

fn count(keys: &mut HashMap<String, usize>, key: &str, add: bool) {
    if add {
        *keys.entry(key.to_string()).or_default() += 1;
    } else if let Some(n) = keys.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            keys.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, address: Option<&str>, hosts: &[&str]) -> AppSpec {
        let mut s = crate::supervisor::tests::spec(std::path::Path::new("/s"), name, "127.0.0.1:0");
        s.address = address.map(|a| a.parse().expect("address"));
        s.hosts = hosts.iter().map(|h| h.to_string()).collect();
        s
    }

    #[test]
    fn conflicts_are_found_through_the_index_and_released_with_the_holdings() {
        let mut book = ClaimBook::default();
        let a = spec("a", Some("0.0.0.0:8080"), &["shop.example.com"]);
        book.update("a", |h| h.latest = Some(Claims::of(&a)));
        let clash = |s: &AppSpec, book: &ClaimBook| match book.conflict("b", s) {
            Some(StartError::Conflict { field, other, .. }) => Some((field, other)),
            _ => None,
        };
        let same_port = spec("b", Some("127.0.0.1:8080"), &[]);
        assert_eq!(clash(&same_port, &book), Some(("address", "a".into())));
        let same_host = spec("b", None, &["shop.example.com"]);
        assert_eq!(clash(&same_host, &book), Some(("hosts", "a".into())));
        let mut same_dir = spec("b", Some("127.0.0.1:9090"), &[]);
        same_dir.state_dir = a.state_dir.clone();
        assert_eq!(clash(&same_dir, &book), Some(("state_dir", "a".into())));
        let fine = spec("b", Some("127.0.0.1:9090"), &["blog.example.com"]);
        assert_eq!(clash(&fine, &book), None);
        // A key never conflicts with itself; port 0 never conflicts.
        assert!(book.conflict("a", &a).is_none());
        // Moving from latest to running keeps the claim; emptying releases it.
        book.update("a", |h| h.running = h.latest.take());
        assert_eq!(clash(&same_host, &book), Some(("hosts", "a".into())));
        book.rename("a", "c");
        assert_eq!(clash(&same_host, &book), Some(("hosts", "c".into())));
        assert!(book.update("c", |h| h.running = None));
        assert_eq!(clash(&same_port, &book), None);
        assert!(book.ports.is_empty() && book.hosts.is_empty() && book.state_dirs.is_empty());
    }
}
