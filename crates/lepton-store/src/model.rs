//! The records the store keeps: a desired app ([`StoredApp`]), what it claims exclusively
//! ([`Claim`]: its hosts and its address), and what a node observes of it ([`ObservedStatus`]).

use std::fmt;

/// One app of the desired state as stored.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StoredApp {
    /// The app's name: its identity in the store.
    pub name: String,
    /// The app's spec as the admin API wrote it (opaque to the store).
    pub spec: serde_json::Value,
    /// The desired-state revision at which this app was last written: it increases with every
    /// put of the app, also across a delete and re-create (never reused), so "same name and same
    /// generation" means "same spec".
    pub generation: i64,
    /// When the app was last written, in milliseconds since the Unix epoch (the writer's clock).
    pub updated_at_unix_ms: i64,
}

/// The apps written after a revision ([`crate::Store::written_after`]), and how many apps are
/// stored: a reader that knew every app at that revision tells from the count whether any was
/// deleted since (then it reads the whole list).
#[derive(Clone, Debug, PartialEq)]
pub struct WrittenAfter {
    /// The apps whose generation is greater than the revision asked for, by name.
    pub apps: Vec<StoredApp>,
    /// The number of apps stored (read after `apps`).
    pub stored: i64,
}

/// Something only one app may hold at a time. Values are compared exactly: the caller normalises
/// them (lowercases hosts, writes addresses in one canonical form).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Claim {
    /// An HTTP host name the app serves, e.g. `shop.example.com`.
    Host(String),
    /// A listening address the app binds, e.g. `127.0.0.1:4001`.
    Address(String),
}

impl Claim {
    /// The claim's kind as stored in the `claims` table: `host` or `address`.
    pub fn kind(&self) -> &'static str {
        match self {
            Claim::Host(_) => "host",
            Claim::Address(_) => "address",
        }
    }

    /// The claimed value.
    pub fn value(&self) -> &str {
        match self {
            Claim::Host(value) | Claim::Address(value) => value,
        }
    }
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.value())
    }
}

/// `claims` without repetitions, in their first-seen order (a put may name a claim twice).
pub(crate) fn distinct_claims(claims: &[Claim]) -> Vec<Claim> {
    let mut seen = std::collections::HashSet::new();
    claims
        .iter()
        .filter(|claim| seen.insert(*claim))
        .cloned()
        .collect()
}

/// What one node observes of one app, as that node last recorded it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ObservedStatus {
    /// `serving`, `failed`, `loading` or `stopped`.
    pub state: String,
    /// The digest of the app version the node runs, once it knows it.
    pub digest: Option<String>,
    /// Why the app failed, when it did.
    pub error: Option<String>,
    /// The addresses the node serves the app on.
    pub addresses: Vec<String>,
    /// When the node observed this, in milliseconds since the Unix epoch (the node's clock).
    pub updated_at_unix_ms: i64,
}

/// Now, in milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_display_as_kind_and_value() {
        assert_eq!(
            Claim::Host("shop.example.com".into()).to_string(),
            "host shop.example.com"
        );
        assert_eq!(
            Claim::Address("127.0.0.1:4001".into()).to_string(),
            "address 127.0.0.1:4001"
        );
    }

    #[test]
    fn claims_serialize_with_lowercase_kind() {
        let json = serde_json::to_value(Claim::Host("a.example".into())).unwrap();
        assert_eq!(json, serde_json::json!({ "host": "a.example" }));
    }

    #[test]
    fn distinct_claims_drops_repeats_keeping_order() {
        let a = Claim::Host("a".into());
        let b = Claim::Address("a".into());
        assert_eq!(
            distinct_claims(&[a.clone(), b.clone(), a.clone()]),
            vec![a, b]
        );
    }
}
