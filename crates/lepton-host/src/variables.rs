//! Spin variables: app variables (defaults, required, secret), the providers that give them
//! values, and component `config` templates (`{{ name }}`) resolved per call.
//!
//! Providers, highest precedence first: the per-app `variables` map from lepton.json, then the
//! runtime config's `[[variables_provider]]` entries in file order (`static`, `env`), then the
//! always-present env provider (`SPIN_VARIABLE_<NAME>`). Vault and Azure Key Vault providers are
//! refused at load. If no provider answers, the variable's `default` is used. A required
//! variable that no provider can answer fails the app at load, naming the app and variable.
//!
//! Guests read component config keys, never app variables directly: `get(key)` checks the key's
//! syntax (`invalid-name`), looks it up in the component's `config` (`undefined`), then
//! resolves its template against the app variables. Secret values are never logged.

use std::collections::BTreeMap;
use std::path::PathBuf;

use lepton_app::LockedVariable;

use crate::runtime_config::{RuntimeConfig, VariablesProviderConfig};

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
    /// `<PREFIX>_<NAME UPPERCASED>` from the process environment, then a dotenv file's values.
    Env {
        prefix: String,
        dotenv: BTreeMap<String, String>,
    },
}

impl Provider {
    fn get(&self, name: &str) -> Option<String> {
        match self {
            Provider::Static(values) => values.get(name).cloned(),
            Provider::Env { prefix, dotenv } => {
                let key = format!("{prefix}_{}", name.to_ascii_uppercase());
                std::env::var(&key)
                    .ok()
                    .or_else(|| dotenv.get(&key).cloned())
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
    /// runtime config's providers, then `SPIN_VARIABLE_*`. Fails if a provider is unsupported or
    /// a required variable has no value.
    pub fn new(
        variables: &BTreeMap<String, LockedVariable>,
        overrides: &BTreeMap<String, String>,
        runtime_config: &RuntimeConfig,
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
                            read_dotenv(path).map_err(|reason| VariablesSetupError::Dotenv {
                                file: file.clone(),
                                path: path.clone(),
                                reason,
                            })?
                        }
                        None => BTreeMap::new(),
                    };
                    Provider::Env {
                        prefix: env.prefix.clone().unwrap_or_else(|| "SPIN_VARIABLE".into()),
                        dotenv,
                    }
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
        providers.push(Provider::Env {
            prefix: "SPIN_VARIABLE".into(),
            dotenv: BTreeMap::new(),
        });
        let resolver = Self {
            variables: variables.clone(),
            providers,
        };
        for (name, var) in &resolver.variables {
            if var.default.is_none() && resolver.provided(name).is_none() {
                return Err(VariablesSetupError::MissingRequired {
                    variable: name.clone(),
                    upper: name.to_ascii_uppercase(),
                });
            }
        }
        Ok(resolver)
    }

    fn provided(&self, name: &str) -> Option<String> {
        self.providers.iter().find_map(|p| p.get(name))
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
        if let Some(value) = self.provided(name) {
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

fn read_dotenv(path: &std::path::Path) -> Result<BTreeMap<String, String>, String> {
    let iter = dotenvy::from_path_iter(path).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for item in iter {
        let (k, v) = item.map_err(|e| e.to_string())?;
        out.insert(k, v);
    }
    Ok(out)
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
