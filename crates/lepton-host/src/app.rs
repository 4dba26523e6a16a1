//! Per-app host state, built once when an app loads: its runtime config, variable resolver,
//! key-value stores and SQLite databases, and each component's permissions and config.
//!
//! Loading validates everything a request could otherwise trip over: the runtime-config file
//! (every key known), variables providers (vault / Azure refused), required variables (each must
//! have a value), component `config` templates, and every label a component lists in
//! `key_value_stores` / `databases` (each must be configured; `default` always is). Stores a
//! component can reach are opened now, so a bad path fails the load, not a request.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lepton_app::{LockedApp, LockedComponent};
use serde_json::Value;

use crate::instance::DataHost;
use crate::kv::{self, KvStore};
use crate::runtime_config::{
    KeyValueStoreConfig, RuntimeConfig, RuntimeConfigError, SqliteDatabaseConfig,
};
use crate::sqlite::{self, Database};
use crate::variables::{ComponentConfig, VariableResolver, VariablesSetupError};

/// What the operator configured for one app (lepton.json's per-app fields).
#[derive(Debug, Clone, Default)]
pub struct AppHostConfig {
    /// The app's name, for errors and logs.
    pub name: String,
    /// Where the default key-value store and SQLite database live.
    pub state_dir: PathBuf,
    /// App variable values (highest-precedence provider).
    pub variables: BTreeMap<String, String>,
    /// A Spin `runtime-config.toml`.
    pub runtime_config: Option<PathBuf>,
}

/// An app's data host state could not be built. Every variant carries the app name (`app`);
/// the message leaves it out because lepton prints each start failure after the app's name.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The runtime-config file is unreadable or invalid.
    #[error("{source}")]
    RuntimeConfig {
        /// The app.
        app: String,
        /// The parse error (names the file and key).
        source: RuntimeConfigError,
    },
    /// Variables could not be set up (missing required variable, bad provider, bad template).
    #[error("{source}")]
    Variables {
        /// The app.
        app: String,
        /// What went wrong.
        source: VariablesSetupError,
    },
    /// A component lists a key-value store or database label that is not configured.
    #[error(
        "component `{component}` lists {kind} `{label}` in `{field}`, but no such {kind} is configured (add `[{section}.{label}]` to the app's runtime config)"
    )]
    Unconfigured {
        /// The app.
        app: String,
        /// The component.
        component: String,
        /// `key-value store` or `SQLite database`.
        kind: &'static str,
        /// The metadata field.
        field: &'static str,
        /// The runtime-config section.
        section: &'static str,
        /// The label.
        label: String,
    },
    /// A store or database type lepton does not support.
    #[error("runtime config {file}: [{section}.{label}] type `{kind}` is not supported by lepton")]
    Unsupported {
        /// The app.
        app: String,
        /// The runtime-config file.
        file: PathBuf,
        /// The section.
        section: &'static str,
        /// The label.
        label: String,
        /// The type.
        kind: &'static str,
    },
    /// A store or database could not be opened.
    #[error("{kind} `{label}`{location}: {reason}")]
    Open {
        /// The app.
        app: String,
        /// `key-value store` or `SQLite database`.
        kind: &'static str,
        /// The label.
        label: String,
        /// ` at <path>` or empty.
        location: String,
        /// The error.
        reason: String,
    },
    /// A component's metadata field has the wrong shape.
    #[error("component `{component}`: metadata `{field}` must be a list of strings")]
    Metadata {
        /// The app.
        app: String,
        /// The component.
        component: String,
        /// The field.
        field: &'static str,
    },
}

/// One component's view of its app: which stores and databases it may open, and its config.
#[derive(Debug)]
pub(crate) struct ComponentData {
    pub(crate) config: ComponentConfig,
    pub(crate) kv_allowed: BTreeSet<String>,
    pub(crate) db_allowed: BTreeSet<String>,
}

/// An app's data host state, shared by every instance of its components.
#[derive(Debug)]
pub struct AppHost {
    name: String,
    runtime_config: RuntimeConfig,
    variables: VariableResolver,
    pub(crate) kv_stores: BTreeMap<String, Arc<KvStore>>,
    pub(crate) databases: BTreeMap<String, Arc<Database>>,
    components: HashMap<String, Arc<ComponentData>>,
}

const KV_FIELD: &str = "key_value_stores";
const DB_FIELD: &str = "databases";

impl AppHost {
    /// Build an app's host state, validating and opening everything it needs. Blocking file
    /// work (SQLite opens) runs on tokio's blocking pool.
    pub async fn load(
        locked: &LockedApp,
        config: &AppHostConfig,
    ) -> Result<Arc<AppHost>, HostError> {
        let locked = locked.clone();
        let config = config.clone();
        let app = config.name.clone();
        match tokio::task::spawn_blocking(move || Self::load_blocking(&locked, &config)).await {
            Ok(result) => result.map(Arc::new),
            Err(e) => Err(HostError::Open {
                app,
                kind: "host state",
                label: String::new(),
                location: String::new(),
                reason: format!("load task failed: {e}"),
            }),
        }
    }

    /// [`AppHost::load`] on the current thread.
    pub fn load_blocking(locked: &LockedApp, config: &AppHostConfig) -> Result<AppHost, HostError> {
        let app = config.name.clone();
        let runtime_config = match &config.runtime_config {
            Some(path) => RuntimeConfig::load(path).map_err(|source| HostError::RuntimeConfig {
                app: app.clone(),
                source,
            })?,
            None => RuntimeConfig::default(),
        };
        warn_ignored_dirs(&app, &runtime_config, &config.state_dir);

        let vars_err = |source| HostError::Variables {
            app: app.clone(),
            source,
        };
        let variables =
            VariableResolver::new(&locked.variables, &config.variables, &runtime_config)
                .map_err(vars_err)?;

        let mut components = HashMap::new();
        let mut kv_used = BTreeSet::new();
        let mut db_used = BTreeSet::new();
        for component in &locked.components {
            let kv_allowed = labels(&app, component, KV_FIELD)?;
            let db_allowed = labels(&app, component, DB_FIELD)?;
            for label in &kv_allowed {
                if label != "default" && !runtime_config.key_value_stores.contains_key(label) {
                    return Err(HostError::Unconfigured {
                        app,
                        component: component.id.clone(),
                        kind: "key-value store",
                        field: KV_FIELD,
                        section: "key_value_store",
                        label: label.clone(),
                    });
                }
            }
            for label in &db_allowed {
                if label != "default" && !runtime_config.sqlite_databases.contains_key(label) {
                    return Err(HostError::Unconfigured {
                        app,
                        component: component.id.clone(),
                        kind: "SQLite database",
                        field: "sqlite_databases",
                        section: "sqlite_database",
                        label: label.clone(),
                    });
                }
            }
            kv_used.extend(kv_allowed.iter().cloned());
            db_used.extend(db_allowed.iter().cloned());
            let component_config =
                ComponentConfig::new(&component.id, &component.config, &variables)
                    .map_err(vars_err)?;
            components.insert(
                component.id.clone(),
                Arc::new(ComponentData {
                    config: component_config,
                    kv_allowed,
                    db_allowed,
                }),
            );
        }

        let kv_stores = open_kv_stores(&app, &runtime_config, &config.state_dir, &kv_used)?;
        let databases = open_databases(&app, &runtime_config, &config.state_dir, &db_used)?;
        tracing::debug!(
            app = %app,
            kv_stores = ?kv_stores.keys().collect::<Vec<_>>(),
            databases = ?databases.keys().collect::<Vec<_>>(),
            "data host state ready"
        );
        Ok(AppHost {
            name: app,
            runtime_config,
            variables,
            kv_stores,
            databases,
            components,
        })
    }

    /// The app's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The app's parsed runtime config (empty when it has none).
    pub fn runtime_config(&self) -> &RuntimeConfig {
        &self.runtime_config
    }

    /// The app's variables: resolve app variables and render templates such as
    /// `allowed_outbound_hosts` entries.
    pub fn variables(&self) -> &VariableResolver {
        &self.variables
    }

    /// Fresh per-instance state for one store of component `component`. A component the app
    /// does not have gets no permissions and no config.
    pub fn instance(self: &Arc<Self>, component: &str) -> DataHost {
        let data = self.components.get(component).cloned().unwrap_or_else(|| {
            Arc::new(ComponentData {
                config: ComponentConfig::default(),
                kv_allowed: BTreeSet::new(),
                db_allowed: BTreeSet::new(),
            })
        });
        DataHost::new(self.clone(), data)
    }
}

fn warn_ignored_dirs(app: &str, rc: &RuntimeConfig, state_dir: &Path) {
    if let Some(dir) = &rc.state_dir
        && Path::new(dir) != state_dir
    {
        tracing::warn!(app, runtime_config_state_dir = %dir, state_dir = %state_dir.display(),
            "runtime config `state_dir` is ignored: lepton.json's state_dir decides");
    }
    if let Some(dir) = &rc.log_dir {
        tracing::warn!(app, runtime_config_log_dir = %dir,
            "runtime config `log_dir` is ignored: component logs go to <state_dir>/logs");
    }
}

fn labels(
    app: &str,
    component: &LockedComponent,
    field: &'static str,
) -> Result<BTreeSet<String>, HostError> {
    let bad = || HostError::Metadata {
        app: app.to_string(),
        component: component.id.clone(),
        field,
    };
    match component.metadata.get(field) {
        None | Some(Value::Null) => Ok(BTreeSet::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
    }
}

fn open_kv_stores(
    app: &str,
    rc: &RuntimeConfig,
    state_dir: &Path,
    used: &BTreeSet<String>,
) -> Result<BTreeMap<String, Arc<KvStore>>, HostError> {
    let file = rc.path.clone().unwrap_or_default();
    // Refuse unsupported types even for labels no component uses: the file is the app's.
    for (label, store) in &rc.key_value_stores {
        let kind = match store {
            KeyValueStoreConfig::AzureCosmos(_) => "azure_cosmos",
            KeyValueStoreConfig::AwsDynamo(_) => "aws_dynamo",
            _ => continue,
        };
        return Err(HostError::Unsupported {
            app: app.to_string(),
            file,
            section: "key_value_store",
            label: label.clone(),
            kind,
        });
    }
    // Labels in the same SQLite file share one connection.
    let mut files: HashMap<Option<PathBuf>, kv::SharedConn> = HashMap::new();
    let mut stores = BTreeMap::new();
    for label in used {
        let open_err = |location: String, reason: String| HostError::Open {
            app: app.to_string(),
            kind: "key-value store",
            label: label.clone(),
            location,
            reason,
        };
        let store = match rc.key_value_stores.get(label) {
            None => {
                let path = kv::default_kv_path(state_dir);
                sqlite_kv(&mut files, label, Some(path), &open_err)?
            }
            Some(KeyValueStoreConfig::Spin(spin)) => {
                let path = spin.path.as_ref().map(|p| rc.base_dir().join(p));
                sqlite_kv(&mut files, label, path, &open_err)?
            }
            Some(KeyValueStoreConfig::Redis(redis)) => {
                KvStore::redis(label, &redis.url).map_err(|e| open_err(String::new(), e))?
            }
            Some(_) => continue,
        };
        stores.insert(label.clone(), Arc::new(store));
    }
    Ok(stores)
}

fn sqlite_kv(
    files: &mut HashMap<Option<PathBuf>, kv::SharedConn>,
    label: &str,
    path: Option<PathBuf>,
    open_err: &dyn Fn(String, String) -> HostError,
) -> Result<KvStore, HostError> {
    let conn = match (&path, files.get(&path)) {
        // In-memory stores are private to their label.
        (Some(_), Some(conn)) => conn.clone(),
        _ => {
            let conn = kv::open_sqlite_kv(path.as_deref())
                .map_err(|e| open_err(location(path.as_deref()), e))?;
            files.insert(path, conn.clone());
            conn
        }
    };
    Ok(KvStore::sqlite(label, conn))
}

fn location(path: Option<&Path>) -> String {
    match path {
        Some(p) => format!(" at {}", p.display()),
        None => " (in memory)".into(),
    }
}

fn open_databases(
    app: &str,
    rc: &RuntimeConfig,
    state_dir: &Path,
    used: &BTreeSet<String>,
) -> Result<BTreeMap<String, Arc<Database>>, HostError> {
    let file = rc.path.clone().unwrap_or_default();
    for (label, db) in &rc.sqlite_databases {
        if let SqliteDatabaseConfig::Libsql(_) = db {
            return Err(HostError::Unsupported {
                app: app.to_string(),
                file,
                section: "sqlite_database",
                label: label.clone(),
                kind: "libsql",
            });
        }
    }
    let mut dbs = BTreeMap::new();
    for label in used {
        let path = match rc.sqlite_databases.get(label) {
            None => Some(sqlite::default_db_path(state_dir)),
            Some(SqliteDatabaseConfig::Spin(spin)) => spin.path.clone(),
            Some(SqliteDatabaseConfig::Libsql(_)) => continue,
        };
        let db = Database::open(label, path.as_deref()).map_err(|reason| HostError::Open {
            app: app.to_string(),
            kind: "SQLite database",
            label: label.clone(),
            location: location(path.as_deref()),
            reason,
        })?;
        dbs.insert(label.clone(), Arc::new(db));
    }
    Ok(dbs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(json: serde_json::Value) -> LockedApp {
        LockedApp::from_json(&serde_json::to_vec(&json).expect("json")).expect("locked app")
    }

    fn one_component(metadata: serde_json::Value) -> LockedApp {
        app(serde_json::json!({
            "spin_lock_version": 0,
            "triggers": [],
            "variables": { "greeting": { "default": "hi" } },
            "components": [{
                "id": "c",
                "metadata": metadata,
                "source": { "content_type": "application/wasm", "source": "file:///x.wasm" },
                "config": { "message": "{{ greeting }}" }
            }]
        }))
    }

    #[test]
    fn unconfigured_labels_fail_the_load_naming_app_component_and_label() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = AppHostConfig {
            name: "demo".into(),
            state_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let err = AppHost::load_blocking(
            &one_component(serde_json::json!({ "key_value_stores": ["default", "other"] })),
            &config,
        )
        .expect_err("other is not configured")
        .to_string();
        assert!(err.contains("`c`") && err.contains("`other`"), "{err}");
        let err = AppHost::load_blocking(
            &one_component(serde_json::json!({ "databases": ["nope"] })),
            &config,
        )
        .expect_err("nope is not configured")
        .to_string();
        assert!(
            err.contains("`nope`") && err.contains("sqlite_databases"),
            "{err}"
        );
    }

    #[test]
    fn runtime_config_labels_and_unsupported_types() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rc = dir.path().join("runtime-config.toml");
        std::fs::write(
            &rc,
            "[key_value_store.other]\ntype = \"spin\"\npath = \"other.db\"\n",
        )
        .expect("write");
        let config = AppHostConfig {
            name: "demo".into(),
            state_dir: dir.path().join("state"),
            runtime_config: Some(rc.clone()),
            ..Default::default()
        };
        let host = AppHost::load_blocking(
            &one_component(serde_json::json!({ "key_value_stores": ["default", "other"] })),
            &config,
        )
        .expect("load");
        assert_eq!(host.kv_stores.len(), 2);
        assert!(dir.path().join("other.db").exists());
        assert!(dir.path().join("state/sqlite_key_value.db").exists());

        std::fs::write(
            &rc,
            "[sqlite_database.remote]\ntype = \"libsql\"\nurl = \"u\"\ntoken = \"t\"\n",
        )
        .expect("write");
        let err = AppHost::load_blocking(&one_component(serde_json::json!({})), &config)
            .expect_err("libsql")
            .to_string();
        assert!(
            err.contains("libsql") && err.contains("not supported"),
            "{err}"
        );

        std::fs::write(
            &rc,
            "[[variables_provider]]\ntype = \"vault\"\nurl = \"u\"\ntoken = \"t\"\nmount = \"m\"\n",
        )
        .expect("write");
        let err = AppHost::load_blocking(&one_component(serde_json::json!({})), &config)
            .expect_err("vault")
            .to_string();
        assert!(
            err.contains("vault") && err.contains("not supported"),
            "{err}"
        );
    }
}
