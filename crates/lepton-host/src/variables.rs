//! Spin variables: app variables (defaults, required, secret), the providers that give them
//! values, and component `config` templates (`{{ name }}`) resolved per call.
//!
//! Providers, highest precedence first: the per-app `variables` map from lepton.json, then the
//! runtime config's `[[variables_provider]]` entries in file order (`static`, `env`), then the
//! always-present env provider: `SPIN_VARIABLE_<NAME>` from the process environment, else from
//! the `.env` file of lepton's working directory ([`dotenv`], Spin's rules). Vault and Azure
//! Key Vault providers are refused at load. If no provider answers, the variable's `default` is
//! used. A required variable that no provider can answer fails the app at load, naming the app
//! and variable; so does a provider error (a malformed `.env`, naming its file and line).
//!
//! Guests read component config keys, never app variables directly: `get(key)` checks the key's
//! syntax (`invalid-name`), looks it up in the component's `config` (`undefined`), then
//! resolves its template against the app variables. Secret values are never logged.

pub mod dotenv;

use std::collections::BTreeMap;
use std::env::VarError;
use std::path::PathBuf;

use lepton_app::LockedVariable;

use crate::runtime_config::{RuntimeConfig, VariablesProviderConfig};

pub use dotenv::{DotenvError, WorkingDirDotenv};

/// Why a variable or config key could not be resolved; the variants mirror the WIT error cases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariableError {
    /// The name is not a valid variable / config key.
    #[error("invalid variable name: {0}")]
    InvalidName(String),
    /// The key is not defined for this component, or a variable has no value.
    #[error("undefined variable: {0}")]
    Undefined(String),
    /// A provider failed.
    #[error("variables provider error: {0}")]
    Provider(String),
    /// A template is malformed.
    #[error("invalid template: {0}")]
    InvalidTemplate(String),
}

/// Check a variable name or config key against Spin's rules: `[a-z0-9_]`, starting with a
/// lowercase letter, ending with a letter or digit, no `__`. The error text says which rule.
pub fn validate_name(name: &str) -> Result<(), VariableError> {
    let err = |why: String| Err(VariableError::InvalidName(format!("{name:?}: {why}")));
    let Some(first) = name.chars().next() else {
        return err("must not be empty".into());
    };
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return err(format!(
            "invalid character {bad:?}. Variable names may contain only lower-case letters, numbers, and underscores."
        ));
    }
    if !first.is_ascii_lowercase() {
        return err("must start with a lowercase ASCII letter".into());
    }
    if !name.ends_with(|c: char| c.is_ascii_alphanumeric()) {
        return err("must end with a lowercase ASCII letter or digit".into());
    }
    if name.contains("__") {
        return err("must not contain multiple consecutive underscores".into());
    }
    Ok(())
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Variable(String),
}

/// A parsed `config` value: literal text with `{{ name }}` references to app variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parse `text`. Every `{{ … }}` must hold one valid variable name.
    pub fn parse(text: &str) -> Result<Self, VariableError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                return Err(VariableError::InvalidTemplate(format!(
                    "{text:?}: unterminated `{{{{`"
                )));
            };
            let name = after[..end].trim();
            validate_name(name)
                .map_err(|e| VariableError::InvalidTemplate(format!("{text:?}: {e}")))?;
            parts.push(Part::Variable(name.to_string()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Self { parts })
    }

    /// The app variables the template references.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Variable(v) => Some(v.as_str()),
            Part::Literal(_) => None,
        })
    }
}

/// A source of variable values.
#[derive(Debug, Clone)]
enum Provider {
    /// Fixed values (lepton.json `variables`, runtime-config `static`).
    Static(BTreeMap<String, String>),
    /// `<PREFIX>_<NAME UPPERCASED>` from the process environment (`env`, `std::env::var` but
    /// in tests), then, if the environment lacks it, from a dotenv file's values.
    Env {
        prefix: String,
        dotenv: WorkingDirDotenv,
        env: fn(&str) -> Result<String, VarError>,
    },
}

impl Provider {
    fn env(prefix: String, dotenv: WorkingDirDotenv) -> Self {
        Provider::Env {
            prefix,
            dotenv,
            env: |key| std::env::var(key),
        }
    }

    fn get(&self, name: &str) -> Result<Option<String>, VariableError> {
        match self {
            Provider::Static(values) => Ok(values.get(name).cloned()),
            Provider::Env {
                prefix,
                dotenv,
                env,
            } => {
                let key = format!("{prefix}_{}", name.to_ascii_uppercase());
                match env(&key) {
                    Ok(value) => Ok(Some(value)),
                    Err(VarError::NotPresent) => dotenv
                        .get(&key)
                        .map_err(|e| VariableError::Provider(e.to_string())),
                    Err(VarError::NotUnicode(_)) => Err(VariableError::Provider(format!(
                        "environment variable {key} is not valid Unicode"
                    ))),
                }
            }
        }
    }
}

/// Variables could not be set up for an app.
#[derive(Debug, thiserror::Error)]
pub enum VariablesSetupError {
    /// A required variable has no value from any provider.
    #[error(
        "required variable `{variable}` has no value: set it in lepton.json's `variables`, a runtime-config variables provider, or the environment variable SPIN_VARIABLE_{upper}"
    )]
    MissingRequired {
        /// The variable.
        variable: String,
        /// Its environment variable suffix.
        upper: String,
    },
    /// A provider type lepton does not support.
    #[error("runtime config {file}: variables provider type `{kind}` is not supported by lepton")]
    UnsupportedProvider {
        /// The runtime-config file.
        file: PathBuf,
        /// The provider type.
        kind: &'static str,
    },
    /// A dotenv file could not be read.
    #[error("runtime config {file}: dotenv_path {path}: {reason}")]
    Dotenv {
        /// The runtime-config file.
        file: PathBuf,
        /// The dotenv file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A provider failed while looking up a required variable (e.g. a malformed `.env`).
    #[error("required variable `{variable}`: {error}")]
    Provider {
        /// The variable.
        variable: String,
        /// The provider's error (names the file and line for a dotenv file).
        error: VariableError,
    },
    /// A name in lepton.json `variables` or a static provider is not a valid variable name.
    #[error("{source_name}: {error}")]
    BadName {
        /// Where the name came from.
        source_name: String,
        /// The validation error.
        error: VariableError,
    },
    /// A component's `config` key or template is invalid or references an undeclared variable.
    #[error("component `{component}`: variable `{key}`: {reason}")]
    ComponentConfig {
        /// The component.
        component: String,
        /// The config key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// An app's variables and providers: resolves app variables and component config keys.
#[derive(Debug, Clone)]
pub struct VariableResolver {
    variables: BTreeMap<String, LockedVariable>,
    providers: Vec<Provider>,
}

impl VariableResolver {
    /// Build the resolver for an app: `overrides` (lepton.json `variables`) first, then the
    /// runtime config's providers, then `SPIN_VARIABLE_*` (the process environment, then the
    /// working directory's `.env`, [`WorkingDirDotenv::process`]). Fails if a provider is
    /// unsupported or fails, or a required variable has no value.
    pub fn new(
        variables: &BTreeMap<String, LockedVariable>,
        overrides: &BTreeMap<String, String>,
        runtime_config: &RuntimeConfig,
    ) -> Result<Self, VariablesSetupError> {
        Self::with_dotenv(
            variables,
            overrides,
            runtime_config,
            WorkingDirDotenv::process(),
        )
    }

    /// [`VariableResolver::new`] with `dotenv` as the default provider's `.env`.
    pub fn with_dotenv(
        variables: &BTreeMap<String, LockedVariable>,
        overrides: &BTreeMap<String, String>,
        runtime_config: &RuntimeConfig,
        dotenv: WorkingDirDotenv,
    ) -> Result<Self, VariablesSetupError> {
        let file = runtime_config.path.clone().unwrap_or_default();
        for name in overrides.keys() {
            validate_name(name).map_err(|error| VariablesSetupError::BadName {
                source_name: "lepton.json variables".into(),
                error,
            })?;
        }
        let mut providers = vec![Provider::Static(overrides.clone())];
        for provider in &runtime_config.variables_providers {
            providers.push(match provider {
                VariablesProviderConfig::Static(s) => Provider::Static(s.values.clone()),
                VariablesProviderConfig::Env(env) => {
                    let dotenv = match &env.dotenv_path {
                        Some(path) => {
                            let values = dotenv::read_dotenv(path).map_err(|e| {
                                VariablesSetupError::Dotenv {
                                    file: file.clone(),
                                    path: path.clone(),
                                    reason: match e.line {
                                        Some(line) => format!("line {line}: {}", e.reason),
                                        None => e.reason,
                                    },
                                }
                            })?;
                            let values = values.ok_or_else(|| VariablesSetupError::Dotenv {
                                file: file.clone(),
                                path: path.clone(),
                                reason: "no such file".into(),
                            })?;
                            WorkingDirDotenv::from_values(values)
                        }
                        None => WorkingDirDotenv::empty(),
                    };
                    let prefix = env.prefix.clone().unwrap_or_else(|| "SPIN_VARIABLE".into());
                    Provider::env(prefix, dotenv)
                }
                VariablesProviderConfig::Vault(_) => {
                    return Err(VariablesSetupError::UnsupportedProvider {
                        file,
                        kind: "vault",
                    });
                }
                VariablesProviderConfig::AzureKeyVault(_) => {
                    return Err(VariablesSetupError::UnsupportedProvider {
                        file,
                        kind: "azure_key_vault",
                    });
                }
            });
        }
        providers.push(Provider::env("SPIN_VARIABLE".into(), dotenv));
        let resolver = Self {
            variables: variables.clone(),
            providers,
        };
        resolver.check_required()?;
        Ok(resolver)
    }

    /// Every variable without a default must have a value from some provider now.
    fn check_required(&self) -> Result<(), VariablesSetupError> {
        for (name, var) in &self.variables {
            if var.default.is_some() {
                continue;
            }
            match self.provided(name) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(VariablesSetupError::MissingRequired {
                        variable: name.clone(),
                        upper: name.to_ascii_uppercase(),
                    });
                }
                Err(error) => {
                    return Err(VariablesSetupError::Provider {
                        variable: name.clone(),
                        error,
                    });
                }
            }
        }
        Ok(())
    }

    /// The first provider's value for `name`; a provider error stops the search (Spin's rule).
    fn provided(&self, name: &str) -> Result<Option<String>, VariableError> {
        for provider in &self.providers {
            if let Some(value) = provider.get(name)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// The current value of app variable `name`: the first provider that has it, else its
    /// default. Resolved on every call, so environment changes are seen.
    pub fn resolve(&self, name: &str) -> Result<String, VariableError> {
        validate_name(name)?;
        let Some(var) = self.variables.get(name) else {
            return Err(VariableError::Undefined(format!(
                "no variable for {name:?}"
            )));
        };
        if let Some(value) = self.provided(name)? {
            return Ok(value);
        }
        var.default.clone().ok_or_else(|| {
            VariableError::Undefined(format!("no provider resolved required variable {name:?}"))
        })
    }

    /// Render a template string (e.g. an `allowed_outbound_hosts` entry) against the app
    /// variables. Text without `{{ }}` is returned as is.
    pub fn render(&self, template: &str) -> Result<String, VariableError> {
        self.render_template(&Template::parse(template)?)
    }

    /// Render a parsed template.
    pub fn render_template(&self, template: &Template) -> Result<String, VariableError> {
        let mut out = String::new();
        for part in &template.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Variable(v) => out.push_str(&self.resolve(v)?),
            }
        }
        Ok(out)
    }

    /// Whether `name` is a declared app variable.
    pub fn is_declared(&self, name: &str) -> bool {
        self.variables.contains_key(name)
    }

    /// Whether app variable `name` is secret.
    pub fn is_secret(&self, name: &str) -> bool {
        self.variables.get(name).is_some_and(|v| v.secret)
    }
}

/// A component's `config` map, parsed and checked against the app variables at load.
#[derive(Debug, Clone, Default)]
pub struct ComponentConfig {
    component: String,
    entries: BTreeMap<String, Template>,
}

impl ComponentConfig {
    /// Parse `config`, checking every key and that each template only references declared
    /// variables.
    pub fn new(
        component: &str,
        config: &BTreeMap<String, String>,
        resolver: &VariableResolver,
    ) -> Result<Self, VariablesSetupError> {
        let bad = |key: &str, reason: String| VariablesSetupError::ComponentConfig {
            component: component.to_string(),
            key: key.to_string(),
            reason,
        };
        let mut entries = BTreeMap::new();
        for (key, value) in config {
            validate_name(key).map_err(|e| bad(key, e.to_string()))?;
            let template = Template::parse(value).map_err(|e| bad(key, e.to_string()))?;
            if let Some(undeclared) = template.variables().find(|v| !resolver.is_declared(v)) {
                return Err(bad(
                    key,
                    format!("references `{undeclared}`, which is not an app variable"),
                ));
            }
            entries.insert(key.clone(), template);
        }
        Ok(Self {
            component: component.to_string(),
            entries,
        })
    }

    /// What the guest's `get(key)` returns.
    pub fn get(&self, resolver: &VariableResolver, key: &str) -> Result<String, VariableError> {
        validate_name(key)?;
        let Some(template) = self.entries.get(key) else {
            return Err(VariableError::Undefined(format!(
                "no variable for {:?}.{key:?}",
                self.component
            )));
        };
        resolver.render_template(template)
    }

    /// Every key with its resolved value (`wasi:config/store.get-all`); keys that fail to
    /// resolve are an error.
    pub fn get_all(
        &self,
        resolver: &VariableResolver,
    ) -> Result<Vec<(String, String)>, VariableError> {
        self.entries
            .iter()
            .map(|(k, t)| Ok((k.clone(), resolver.render_template(t)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(default: Option<&str>, secret: bool) -> LockedVariable {
        LockedVariable {
            description: None,
            default: default.map(str::to_string),
            secret,
        }
    }

    #[test]
    fn names_follow_spins_rules() {
        for ok in ["a", "abc_def", "a1", "x9_y"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "invalid-name",
            "invalid!name",
            "4invalidname",
            "Upper",
            "a__b",
            "ends_",
        ] {
            assert!(
                matches!(validate_name(bad), Err(VariableError::InvalidName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn templates_resolve_per_provider_precedence() {
        let vars = BTreeMap::from([
            ("greeting".to_string(), var(Some("hello"), false)),
            ("who".to_string(), var(Some("world"), false)),
            ("token".to_string(), var(None, true)),
        ]);
        let overrides = BTreeMap::from([("token".to_string(), "s3cret".to_string())]);
        let mut rc = RuntimeConfig::default();
        rc.variables_providers.push(VariablesProviderConfig::Static(
            crate::runtime_config::StaticVariablesConfig {
                values: BTreeMap::from([
                    ("who".to_string(), "lepton".to_string()),
                    ("token".to_string(), "lower".to_string()),
                ]),
            },
        ));
        let resolver = VariableResolver::new(&vars, &overrides, &rc).expect("resolver");
        assert_eq!(resolver.resolve("token").expect("token"), "s3cret");
        assert_eq!(resolver.resolve("who").expect("who"), "lepton");
        assert_eq!(
            resolver.render("{{ greeting }}, {{who}}!").expect("render"),
            "hello, lepton!"
        );

        let config = ComponentConfig::new(
            "c",
            &BTreeMap::from([("message".to_string(), "{{greeting}} x".to_string())]),
            &resolver,
        )
        .expect("config");
        assert_eq!(config.get(&resolver, "message").expect("get"), "hello x");
        assert!(matches!(
            config.get(&resolver, "nope"),
            Err(VariableError::Undefined(_))
        ));
        assert!(matches!(
            config.get(&resolver, "Nope"),
            Err(VariableError::InvalidName(_))
        ));
        let undeclared = ComponentConfig::new(
            "c",
            &BTreeMap::from([("m".to_string(), "{{ missing }}".to_string())]),
            &resolver,
        )
        .expect_err("undeclared");
        assert!(undeclared.to_string().contains("missing"), "{undeclared}");
    }

    #[test]
    fn missing_required_variable_is_named() {
        let vars = BTreeMap::from([("lepton_test_never_set_xyz".to_string(), var(None, false))]);
        let err = VariableResolver::new(&vars, &BTreeMap::new(), &RuntimeConfig::default())
            .expect_err("missing");
        assert!(
            err.to_string().contains("lepton_test_never_set_xyz")
                && err
                    .to_string()
                    .contains("SPIN_VARIABLE_LEPTON_TEST_NEVER_SET_XYZ"),
            "{err}"
        );
    }

    /// `resolver` with every env provider reading `env` instead of the process environment.
    fn with_env(
        mut resolver: VariableResolver,
        fake: fn(&str) -> Result<String, VarError>,
    ) -> VariableResolver {
        for provider in &mut resolver.providers {
            if let Provider::Env { env, .. } = provider {
                *env = fake;
            }
        }
        resolver
    }

    #[test]
    fn dotenv_follows_the_environment_and_matches_exact_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join(".env"),
            "SPIN_VARIABLE_WHO=dotenv\nSPIN_VARIABLE_TOKEN=from-file\nspin_variable_lower=x\n",
        )
        .expect("write .env");
        let vars = BTreeMap::from([
            ("who".to_string(), var(Some("default"), false)),
            ("token".to_string(), var(Some("default"), true)),
            ("lower".to_string(), var(Some("default"), false)),
            ("given".to_string(), var(Some("default"), false)),
        ]);
        let overrides = BTreeMap::from([("given".to_string(), "lepton.json".to_string())]);
        let dotenv = WorkingDirDotenv::load(dir.path());
        let resolver =
            VariableResolver::with_dotenv(&vars, &overrides, &RuntimeConfig::default(), dotenv)
                .expect("resolver");
        let resolver = with_env(resolver, |key| match key {
            "SPIN_VARIABLE_TOKEN" => Ok("from-env".into()),
            "SPIN_VARIABLE_GIVEN" => Ok("env".into()),
            _ => Err(VarError::NotPresent),
        });
        let get = |name: &str| resolver.resolve(name).expect(name);
        assert_eq!(
            get("who"),
            "dotenv",
            ".env fills what the environment lacks"
        );
        assert_eq!(get("token"), "from-env", "the environment wins over .env");
        assert_eq!(get("lower"), "default", "keys match exactly: upper case");
        assert_eq!(get("given"), "lepton.json", "lepton.json wins over both");
    }

    #[test]
    fn a_required_variable_from_dotenv_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join(".env"),
            "SPIN_VARIABLE_LEPTON_TEST_DOTENV_ONLY=here\n",
        )
        .expect("write .env");
        let vars = BTreeMap::from([("lepton_test_dotenv_only".to_string(), var(None, false))]);
        let resolver = VariableResolver::with_dotenv(
            &vars,
            &BTreeMap::new(),
            &RuntimeConfig::default(),
            WorkingDirDotenv::load(dir.path()),
        )
        .expect("provided by .env");
        assert_eq!(
            resolver
                .resolve("lepton_test_dotenv_only")
                .expect("resolve"),
            "here"
        );
        let missing = VariableResolver::with_dotenv(
            &vars,
            &BTreeMap::new(),
            &RuntimeConfig::default(),
            WorkingDirDotenv::empty(),
        )
        .expect_err("no .env");
        assert!(matches!(
            missing,
            VariablesSetupError::MissingRequired { .. }
        ));
    }

    #[test]
    fn a_malformed_dotenv_fails_the_lookups_that_reach_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".env");
        std::fs::write(&path, "SPIN_VARIABLE_A=1\nnot valid\n").expect("write .env");
        let dotenv = WorkingDirDotenv::load(dir.path());
        let required =
            BTreeMap::from([("lepton_test_never_set_req".to_string(), var(None, false))]);
        let err = VariableResolver::with_dotenv(
            &required,
            &BTreeMap::new(),
            &RuntimeConfig::default(),
            dotenv.clone(),
        )
        .expect_err("malformed .env");
        assert_eq!(
            err.to_string(),
            format!(
                "required variable `lepton_test_never_set_req`: variables provider error: \
                 {}:2: invalid dotenv syntax (expected `KEY=value`)",
                path.display()
            )
        );
        // Values from a higher provider never reach the file; a default does not hide its error.
        let vars = BTreeMap::from([
            ("lepton_test_never_set_req".to_string(), var(None, false)),
            (
                "lepton_test_never_set_opt".to_string(),
                var(Some("d"), false),
            ),
        ]);
        let overrides = BTreeMap::from([("lepton_test_never_set_req".to_string(), "v".into())]);
        let resolver =
            VariableResolver::with_dotenv(&vars, &overrides, &RuntimeConfig::default(), dotenv)
                .expect("the required variable comes from lepton.json");
        assert_eq!(
            resolver.resolve("lepton_test_never_set_req").expect("req"),
            "v"
        );
        let err = resolver
            .resolve("lepton_test_never_set_opt")
            .expect_err("reaches .env");
        assert!(
            matches!(&err, VariableError::Provider(m) if m.contains(":2: ")),
            "{err}"
        );
    }

    #[test]
    fn unterminated_and_bad_templates_are_refused() {
        assert!(Template::parse("{{ a").is_err());
        assert!(Template::parse("{{ A }}").is_err());
        assert_eq!(
            Template::parse("plain").expect("plain").variables().count(),
            0
        );
    }
}
