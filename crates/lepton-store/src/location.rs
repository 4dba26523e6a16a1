//! [`StoreLocation`]: where the desired state lives, parsed from lepton's `--db` value, and its
//! printable form for errors and logs (PostgreSQL passwords redacted).

use std::fmt;
use std::path::PathBuf;

/// Where desired state lives: a SQLite file path, or a `postgres://…`/`postgresql://…` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite database file (created if absent, with its parent directory).
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL, as `tokio-postgres` accepts it (`sslmode=disable` for plain
    /// TCP; otherwise TLS is tried with the system's root certificates).
    Postgres(String),
}

impl StoreLocation {
    /// Parses a `--db` value: a URL whose scheme is `postgres` or `postgresql` (any case) is a
    /// PostgreSQL database; anything else is a SQLite file path.
    pub fn parse(db: &str) -> StoreLocation {
        match db.split_once("://") {
            Some((scheme, rest))
                if scheme.eq_ignore_ascii_case("postgres")
                    || scheme.eq_ignore_ascii_case("postgresql") =>
            {
                StoreLocation::Postgres(format!("{}://{rest}", scheme.to_ascii_lowercase()))
            }
            _ => StoreLocation::Sqlite(PathBuf::from(db)),
        }
    }
}

/// The location as errors and logs print it: the SQLite path, or the PostgreSQL URL with any
/// password (in the user info or a `password=` parameter) replaced by `***`.
impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Sqlite(path) => write!(f, "{}", path.display()),
            StoreLocation::Postgres(url) => f.write_str(&redact_url(url)),
        }
    }
}

/// `url` without its password.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{hosts}"),
            None => format!("{userinfo}@{hosts}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_schemes_are_postgres_anything_else_is_a_path() {
        let postgres = |url: &str| StoreLocation::Postgres(url.into());
        let sqlite = |path: &str| StoreLocation::Sqlite(path.into());
        for (db, expected) in [
            ("postgres://u@h/db", postgres("postgres://u@h/db")),
            ("PostgreSQL://u@h/db", postgres("postgresql://u@h/db")),
            ("state/lepton.db", sqlite("state/lepton.db")),
            ("mysql://h/db", sqlite("mysql://h/db")),
        ] {
            assert_eq!(StoreLocation::parse(db), expected, "{db}");
        }
    }

    #[test]
    fn passwords_are_redacted() {
        let shown = |db: &str| StoreLocation::parse(db).to_string();
        assert_eq!(
            shown("postgres://lepton:s3cret@127.0.0.1:5432/lepton"),
            "postgres://lepton:***@127.0.0.1:5432/lepton"
        );
        assert_eq!(
            shown("postgres://lepton@db/x?sslmode=require&password=s3cret"),
            "postgres://lepton@db/x?sslmode=require&password=***"
        );
        assert_eq!(shown("postgres://db"), "postgres://db");
        assert_eq!(shown("/var/lib/lepton.db"), "/var/lib/lepton.db");
    }
}
