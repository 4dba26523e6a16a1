//! The schema, as versioned migrations per backend, and the rule both backends follow to apply
//! them.
//!
//! Version N is the N-th entry of [`SQLITE`] or [`POSTGRES`] (the two lists stay the same length
//! and meaning). `schema_migrations(version, applied_at)` records what is applied. Opening a store
//! loops: in one transaction holding the database's write lock (SQLite `BEGIN IMMEDIATE`,
//! PostgreSQL an advisory transaction lock), create `schema_migrations` if absent, read the
//! newest applied version, apply the next migration and record it; commit. So every migration
//! runs in its own transaction, two nodes opening one new database at once apply each migration
//! once, re-opening applies nothing, and a database a newer lepton migrated is refused
//! ([`StoreError::SchemaTooNew`]) rather than written with an older idea of the schema.
//!
//! Tables: `apps(name, spec, generation, updated_at)`; `claims(kind, value, app)` whose primary
//! key `(kind, value)` makes a host or address belong to one app; `app_status(node, app, status,
//! updated_at)`; `revision`, one row counting desired-state writes; the index
//! `apps_by_generation` (version 2). Times are Unix milliseconds.

use crate::StoreError;

/// Creates the migrations table (the same SQL on both backends).
pub(crate) const CREATE_SCHEMA_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS schema_migrations \
     (version BIGINT PRIMARY KEY NOT NULL, applied_at BIGINT NOT NULL)";

/// The newest applied version (0 for a new database).
pub(crate) const CURRENT_VERSION: &str = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations";

/// Version 1 with `$json` as the type of JSON columns (SQLite `TEXT`, PostgreSQL `JSONB`); the
/// rest is the same SQL on both (SQLite gives `BIGINT` integer affinity).
macro_rules! schema_v1 {
    ($json:literal) => {
        concat!(
            "CREATE TABLE apps (
    name TEXT PRIMARY KEY NOT NULL,
    spec ",
            $json,
            " NOT NULL,
    generation BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE claims (
    kind TEXT NOT NULL CHECK (kind IN ('host', 'address')),
    value TEXT NOT NULL,
    app TEXT NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
    PRIMARY KEY (kind, value)
);
CREATE INDEX claims_by_app ON claims (app);
CREATE TABLE app_status (
    node TEXT NOT NULL,
    app TEXT NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
    status ",
            $json,
            " NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (node, app)
);
CREATE INDEX app_status_by_app ON app_status (app);
CREATE TABLE revision (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    revision BIGINT NOT NULL
);
INSERT INTO revision (id, revision) VALUES (1, 0);
"
        )
    };
}

/// Version 2: the database source reads "apps written after revision N" on every change; without
/// an index that scans the whole table per write. (Bulk writes are still superlinear for another
/// reason: 10,000 `PUT`s 24.4–27.5 s against 2.1–2.2 s for 1,000, with or without the index.)
const APPS_BY_GENERATION: &str = "CREATE INDEX apps_by_generation ON apps (generation);";

/// SQLite's migrations, oldest first: version N is entry N - 1.
pub const SQLITE: &[&str] = &[schema_v1!("TEXT"), APPS_BY_GENERATION];

/// PostgreSQL's migrations, oldest first: version N is entry N - 1.
pub const POSTGRES: &[&str] = &[schema_v1!("JSONB"), APPS_BY_GENERATION];

/// The next thing to do to a database at schema version `current`.
#[derive(Debug, PartialEq)]
pub(crate) enum Step {
    /// Every known migration is applied.
    UpToDate,
    /// Apply migration `version`, whose SQL is `sql`.
    Apply {
        /// The migration's version (1-based).
        version: i64,
        /// Its SQL.
        sql: &'static str,
    },
}

/// What to do to `location`, at schema version `current`, given this backend's `migrations`.
pub(crate) fn next_step(
    current: i64,
    migrations: &'static [&'static str],
    location: &str,
) -> Result<Step, StoreError> {
    let known = i64::try_from(migrations.len()).unwrap_or(i64::MAX);
    if current > known {
        return Err(StoreError::SchemaTooNew {
            location: location.to_string(),
            found: current,
            known,
        });
    }
    // A negative version (hand-edited) counts as none applied.
    let current = current.max(0);
    let next = usize::try_from(current)
        .ok()
        .and_then(|index| migrations.get(index));
    Ok(match next {
        Some(sql) => Step::Apply {
            version: current + 1,
            sql,
        },
        None => Step::UpToDate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_know_the_same_versions() {
        assert_eq!(SQLITE.len(), POSTGRES.len());
    }

    #[test]
    fn steps_apply_in_order_then_stop_and_refuse_newer() {
        const THREE: &[&str] = &["a", "b", "c"];
        assert_eq!(
            next_step(0, THREE, "db").unwrap(),
            Step::Apply {
                version: 1,
                sql: "a"
            }
        );
        assert_eq!(
            next_step(2, THREE, "db").unwrap(),
            Step::Apply {
                version: 3,
                sql: "c"
            }
        );
        assert_eq!(next_step(3, THREE, "db").unwrap(), Step::UpToDate);
        let err = next_step(4, THREE, "db").unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::SchemaTooNew {
                    found: 4,
                    known: 3,
                    ..
                }
            ),
            "{err}"
        );
    }
}
