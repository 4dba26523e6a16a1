//! Spin's `runtime-config.toml`: the whole format parsed into typed sections, every key consumed.
//!
//! An unknown key anywhere (top level or inside a section) is an error naming the file and the
//! key, as in Spin. lepton-host uses the data sections itself (`key_value_store`,
//! `sqlite_database`, `variables_provider`); the others are exposed typed for the engineers who
//! own those capabilities (`outbound_networking`, `outbound_http`, `outbound_redis|pg|mysql|mqtt`,
//! `client_tls`, `llm_compute`).
//!
//! What lepton does with the process-level keys: `state_dir` and `log_dir` are accepted but
//! lepton.json's per-app `state_dir` (which plays the role of Spin's `--state-dir` flag and so
//! wins over the file) decides where data and logs go; a differing value is logged as a warning.
//! `max_instance_memory` is enforced by lepton-runtime on every store of the app (a memory may not
//! grow past it), like Spin's `--max-instance-memory`.
//!
//! Relative paths: a `spin`-type key-value store's `path` is relative to the directory of the
//! runtime-config file; a `spin`-type SQLite database's `path` is relative to lepton's working
//! directory, as Spin resolves them (see `/work/shared/spin-host-facts.md` §4.4).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A runtime-config file could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeConfigError {
    /// The file could not be read.
    #[error("runtime config {path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown or ill-typed key.
    #[error("runtime config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error, which names the key and line.
        message: String,
    },
}

/// A parsed `runtime-config.toml`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeConfig {
    /// The file it came from (`None` for the empty default).
    pub path: Option<PathBuf>,
    /// `state_dir` (`""` is unset). Accepted; lepton.json's `state_dir` decides.
    pub state_dir: Option<String>,
    /// `log_dir` (`""` is unset). Accepted; lepton writes logs under `<state_dir>/logs`.
    pub log_dir: Option<String>,
    /// `max_instance_memory` in bytes: the most linear memory one instance may grow to.
    pub max_instance_memory: Option<u64>,
    /// `[key_value_store.<label>]`, by label.
    pub key_value_stores: BTreeMap<String, KeyValueStoreConfig>,
    /// `[sqlite_database.<label>]`, by label.
    pub sqlite_databases: BTreeMap<String, SqliteDatabaseConfig>,
    /// `[[variables_provider]]` (or the legacy `[[config_provider]]`), in file order.
    pub variables_providers: Vec<VariablesProviderConfig>,
    /// `[llm_compute]`.
    pub llm_compute: Option<LlmComputeConfig>,
    /// `[outbound_networking]`.
    pub outbound_networking: Option<OutboundNetworkingConfig>,
    /// `[[client_tls]]`, in file order.
    pub client_tls: Vec<ClientTlsConfig>,
    /// `[outbound_http]`.
    pub outbound_http: Option<OutboundHttpConfig>,
    /// `[outbound_redis]`.
    pub outbound_redis: Option<MaxConnectionsConfig>,
    /// `[outbound_pg]`.
    pub outbound_pg: Option<MaxConnectionsConfig>,
    /// `[outbound_mysql]`.
    pub outbound_mysql: Option<MaxConnectionsConfig>,
    /// `[outbound_mqtt]`.
    pub outbound_mqtt: Option<MaxConnectionsConfig>,
}

/// One `[key_value_store.<label>]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KeyValueStoreConfig {
    /// A SQLite file (`path`, relative to the runtime-config file) or in memory (no `path`).
    Spin(SpinKeyValueConfig),
    /// A Redis server.
    Redis(RedisKeyValueConfig),
    /// Azure Cosmos DB (parsed; lepton refuses it at load).
    AzureCosmos(AzureCosmosConfig),
    /// AWS DynamoDB (parsed; lepton refuses it at load).
    AwsDynamo(AwsDynamoConfig),
}

/// `type = "spin"` key-value store.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpinKeyValueConfig {
    /// The SQLite file; `None` keeps the store in memory.
    pub path: Option<PathBuf>,
}

/// `type = "redis"` key-value store.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisKeyValueConfig {
    /// `redis://host:port[/db]`.
    pub url: String,
}

/// `type = "azure_cosmos"` key-value store.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureCosmosConfig {
    /// Access key.
    pub key: Option<String>,
    /// Account name.
    pub account: String,
    /// Database name.
    pub database: String,
    /// Container name.
    pub container: String,
}

/// `type = "aws_dynamo"` key-value store.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsDynamoConfig {
    /// Access key id.
    pub access_key: Option<String>,
    /// Secret access key.
    pub secret_key: Option<String>,
    /// Session token.
    pub token: Option<String>,
    /// AWS region.
    pub region: String,
    /// Strongly consistent reads.
    pub consistent_read: Option<bool>,
    /// Table name.
    pub table: String,
}

/// One `[sqlite_database.<label>]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SqliteDatabaseConfig {
    /// A local SQLite file (`path`, relative to the working directory) or in memory.
    Spin(SpinSqliteConfig),
    /// A remote libSQL database (parsed; lepton refuses it at load).
    Libsql(LibsqlConfig),
}

/// `type = "spin"` SQLite database.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpinSqliteConfig {
    /// The database file; `None` keeps it in memory.
    pub path: Option<PathBuf>,
    /// Spin's `allow_attach_file` switch (lepton never lets guests ATTACH files).
    pub allow_attach_file: Option<bool>,
}

/// `type = "libsql"` SQLite database.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibsqlConfig {
    /// The libSQL URL.
    pub url: String,
    /// The auth token.
    pub token: String,
}

/// One `[[variables_provider]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum VariablesProviderConfig {
    /// Fixed values.
    Static(StaticVariablesConfig),
    /// Environment variables (`<PREFIX>_<NAME>`, default prefix `SPIN_VARIABLE`) and a dotenv file.
    Env(EnvVariablesConfig),
    /// HashiCorp Vault (parsed; lepton refuses it at load).
    Vault(VaultVariablesConfig),
    /// Azure Key Vault (parsed; lepton refuses it at load). Its keys are kept as given.
    AzureKeyVault(toml::Table),
}

/// `type = "static"` variables provider.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticVariablesConfig {
    /// Variable name → value.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
}

/// `type = "env"` variables provider.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvVariablesConfig {
    /// The environment variable prefix (default `SPIN_VARIABLE`).
    pub prefix: Option<String>,
    /// A dotenv file, relative to lepton's working directory.
    pub dotenv_path: Option<PathBuf>,
}

/// `type = "vault"` variables provider.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultVariablesConfig {
    /// Vault URL.
    pub url: String,
    /// Vault token.
    pub token: String,
    /// KV mount.
    pub mount: String,
    /// Key prefix.
    pub prefix: Option<String>,
}

/// `[llm_compute]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LlmComputeConfig {
    /// Local inference.
    Spin(LocalLlmConfig),
    /// A remote HTTP inference service.
    RemoteHttp(RemoteHttpLlmConfig),
}

/// `type = "spin"` LLM compute: no options.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalLlmConfig {}

/// `type = "remote_http"` LLM compute.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteHttpLlmConfig {
    /// The service URL.
    pub url: String,
    /// The bearer token.
    pub auth_token: String,
    /// The API flavour.
    pub api_type: Option<String>,
}

/// `[outbound_networking]`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundNetworkingConfig {
    /// CIDRs (or `"private"`) that outbound connections may never reach.
    #[serde(default)]
    pub block_networks: Vec<String>,
    /// Maximum concurrent sockets per instance.
    pub max_socket_connections: Option<usize>,
    /// Maximum concurrent outbound connections per instance.
    pub max_total_connections: Option<usize>,
}

/// One `[[client_tls]]` entry.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// Components the entry applies to.
    #[serde(default)]
    pub component_ids: Vec<String>,
    /// Hosts the entry applies to.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Whether the webpki roots are trusted too.
    pub ca_use_webpki_roots: Option<bool>,
    /// Extra CA roots (PEM).
    pub ca_roots_file: Option<PathBuf>,
    /// Client certificate (PEM).
    pub client_cert_file: Option<PathBuf>,
    /// Client private key (PEM).
    pub client_private_key_file: Option<PathBuf>,
}

/// `[outbound_http]`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundHttpConfig {
    /// Whether connections are pooled.
    pub connection_pooling: Option<bool>,
    /// Maximum concurrent outbound HTTP connections.
    pub max_connections: Option<usize>,
}

/// `[outbound_redis]`, `[outbound_pg]`, `[outbound_mysql]`, `[outbound_mqtt]`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxConnectionsConfig {
    /// Maximum concurrent connections.
    pub max_connections: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntimeConfig {
    state_dir: Option<String>,
    log_dir: Option<String>,
    max_instance_memory: Option<u64>,
    #[serde(default)]
    key_value_store: BTreeMap<String, KeyValueStoreConfig>,
    #[serde(default)]
    sqlite_database: BTreeMap<String, SqliteDatabaseConfig>,
    #[serde(default)]
    variables_provider: Vec<VariablesProviderConfig>,
    #[serde(default)]
    config_provider: Vec<VariablesProviderConfig>,
    llm_compute: Option<LlmComputeConfig>,
    outbound_networking: Option<OutboundNetworkingConfig>,
    #[serde(default)]
    client_tls: Vec<ClientTlsConfig>,
    outbound_http: Option<OutboundHttpConfig>,
    outbound_redis: Option<MaxConnectionsConfig>,
    outbound_pg: Option<MaxConnectionsConfig>,
    outbound_mysql: Option<MaxConnectionsConfig>,
    outbound_mqtt: Option<MaxConnectionsConfig>,
}

impl RuntimeConfig {
    /// Read and parse `path`.
    pub fn load(path: &Path) -> Result<Self, RuntimeConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| RuntimeConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse `text`, which was read from `path` (used in errors and for relative paths).
    pub fn parse(text: &str, path: &Path) -> Result<Self, RuntimeConfigError> {
        let raw: RawRuntimeConfig =
            toml::from_str(text).map_err(|e: toml::de::Error| RuntimeConfigError::Parse {
                path: path.to_path_buf(),
                message: match e.span() {
                    Some(span) => format!(
                        "line {}: {}",
                        text[..span.start.min(text.len())].matches('\n').count() + 1,
                        e.message()
                    ),
                    None => e.message().to_string(),
                },
            })?;
        let mut variables_providers = raw.variables_provider;
        variables_providers.extend(raw.config_provider);
        let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
        Ok(Self {
            path: Some(path.to_path_buf()),
            state_dir: non_empty(raw.state_dir),
            log_dir: non_empty(raw.log_dir),
            max_instance_memory: raw.max_instance_memory,
            key_value_stores: raw.key_value_store,
            sqlite_databases: raw.sqlite_database,
            variables_providers,
            llm_compute: raw.llm_compute,
            outbound_networking: raw.outbound_networking,
            client_tls: raw.client_tls,
            outbound_http: raw.outbound_http,
            outbound_redis: raw.outbound_redis,
            outbound_pg: raw.outbound_pg,
            outbound_mysql: raw.outbound_mysql,
            outbound_mqtt: raw.outbound_mqtt,
        })
    }

    /// The directory relative key-value store paths are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.path
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RuntimeConfig, RuntimeConfigError> {
        RuntimeConfig::parse(text, Path::new("/etc/app/runtime-config.toml"))
    }

    #[test]
    fn parses_every_section() {
        let cfg = parse(
            r#"
state_dir = ""
log_dir = "logs"
max_instance_memory = 104857600

[key_value_store.default]
type = "spin"
path = "kv.db"
[key_value_store.cache]
type = "redis"
url = "redis://localhost:6379"
[key_value_store.cosmos]
type = "azure_cosmos"
account = "a"
database = "d"
container = "c"

[sqlite_database.default]
type = "spin"
path = "app.db"
[sqlite_database.remote]
type = "libsql"
url = "https://x"
token = "t"

[[variables_provider]]
type = "env"
prefix = "MYAPP"
[[variables_provider]]
type = "static"
values = { a = "1" }
[[config_provider]]
type = "vault"
url = "u"
token = "t"
mount = "m"

[llm_compute]
type = "remote_http"
url = "https://llm"
auth_token = "tok"

[outbound_networking]
block_networks = ["private", "10.0.0.0/8"]
max_socket_connections = 4

[[client_tls]]
component_ids = ["a"]
hosts = ["example.com:443"]
ca_use_webpki_roots = true

[outbound_http]
connection_pooling = true
max_connections = 100
[outbound_redis]
max_connections = 1
[outbound_pg]
max_connections = 2
[outbound_mysql]
max_connections = 3
[outbound_mqtt]
max_connections = 4
"#,
        )
        .expect("parse");
        assert_eq!(cfg.state_dir, None);
        assert_eq!(cfg.log_dir.as_deref(), Some("logs"));
        assert_eq!(cfg.max_instance_memory, Some(104857600));
        assert_eq!(
            cfg.key_value_stores["default"],
            KeyValueStoreConfig::Spin(SpinKeyValueConfig {
                path: Some("kv.db".into())
            })
        );
        assert!(matches!(
            cfg.key_value_stores["cache"],
            KeyValueStoreConfig::Redis(_)
        ));
        assert!(matches!(
            cfg.sqlite_databases["remote"],
            SqliteDatabaseConfig::Libsql(_)
        ));
        assert_eq!(cfg.variables_providers.len(), 3);
        assert!(matches!(
            cfg.variables_providers[2],
            VariablesProviderConfig::Vault(_)
        ));
        assert_eq!(
            cfg.outbound_networking
                .as_ref()
                .map(|o| o.block_networks.len()),
            Some(2)
        );
        assert_eq!(cfg.client_tls[0].hosts, vec!["example.com:443"]);
        assert_eq!(
            cfg.outbound_mqtt.as_ref().and_then(|o| o.max_connections),
            Some(4)
        );
        assert_eq!(cfg.base_dir(), PathBuf::from("/etc/app"));
    }

    #[test]
    fn unknown_keys_are_errors_naming_file_and_key() {
        for (text, key) in [
            ("bogus = 1", "bogus"),
            ("[key_value_store.x]\ntype = \"spin\"\npaht = \"a\"", "paht"),
            ("[outbound_http]\nmax_conections = 1", "max_conections"),
            (
                "[[variables_provider]]\ntype = \"env\"\nprefx = \"A\"",
                "prefx",
            ),
            ("[key_value_store.x]\ntype = \"mongo\"", "mongo"),
        ] {
            let err = parse(text).expect_err(text).to_string();
            assert!(
                err.contains("/etc/app/runtime-config.toml") && err.contains(key),
                "{text}: {err}"
            );
        }
    }
}
