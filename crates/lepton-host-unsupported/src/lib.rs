//! Host interfaces lepton links but cannot serve, so that apps importing them still load and
//! get an error they can handle when they call them, instead of failing at load.
//!
//! Which interfaces: the Spin SDK worlds import them whether an app uses them or not — the
//! Python SDKs (spin-sdk 3.4.1 `spin-http`, 5.0.0 `spin:up/http-trigger@4.1.0`) import every
//! interface of their world, and Rust SDKs import what the app calls. Of those, lepton serves
//! everything except LLM inferencing: `fermyon:spin/llm@2.0.0` and the unversioned (Spin 1.x)
//! `fermyon:spin/llm`. (`wasi:otel` appears in the SDK worlds only behind the unstable
//! `wasi-otel` feature, which the published SDK builds do not enable.)
//!
//! Behaviour, as Spin's LLM host without a usable backend: a model not listed in the
//! component's `ai_models` gets `error.invalid-input` with Spin's access-denied text; a listed
//! model gets `error.runtime-error` saying LLM operations are not supported by lepton.
//!
//! The WIT in `wit/` is copied unchanged from spin-sdk 5.2.0 (`wit/deps/spin@2.0.0/llm.wit`,
//! `wit/deps/spin@unversioned/llm.wit`), identical in the Python SDKs' copies.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

mod v2 {
    wasmtime::component::bindgen!({
        path: "wit/spin-v2",
        world: "fermyon:spin/unsupported@2.0.0",
    });
}

mod v1 {
    wasmtime::component::bindgen!({
        path: "wit/spin-unversioned",
        world: "fermyon:spin/unsupported",
    });
}

use v1::fermyon::spin::llm as llm_v1;
use v2::fermyon::spin::llm as llm_v2;

/// The text of the `runtime-error` every permitted LLM call returns.
pub const LLM_UNSUPPORTED: &str = "LLM operations are not supported by lepton.";

/// Per-instance state of the unsupported interfaces: what the component is allowed to ask for,
/// so the errors match the ones Spin gives for the same call.
#[derive(Debug, Clone, Default)]
pub struct UnsupportedHost {
    ai_models: Arc<[String]>,
}

impl UnsupportedHost {
    /// State for a component whose metadata lists `ai_models`.
    pub fn new(ai_models: Arc<[String]>) -> Self {
        Self { ai_models }
    }

    /// The `ai_models` list of a component's lock metadata (missing or malformed → empty, as an
    /// app that lists no models is allowed none).
    pub fn ai_models_from_metadata(
        metadata: &serde_json::Map<String, serde_json::Value>,
    ) -> Arc<[String]> {
        metadata
            .get("ai_models")
            .and_then(|v| v.as_array())
            .map(|models| {
                models
                    .iter()
                    .filter_map(|m| m.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn check_model(&self, model: &str) -> Result<(), String> {
        if self.ai_models.iter().any(|m| m == model) {
            Ok(())
        } else {
            Err(format!(
                "The component does not have access to use '{model}'. To give the component access, \
                 add '{model}' to the 'ai_models' key for the component in your spin.toml manifest"
            ))
        }
    }

    fn llm_error(&self, model: &str) -> LlmError {
        match self.check_model(model) {
            Err(denied) => LlmError::InvalidInput(denied),
            Ok(()) => {
                tracing::debug!(model, "LLM call refused: lepton has no LLM backend");
                LlmError::RuntimeError(LLM_UNSUPPORTED.to_owned())
            }
        }
    }
}

/// The error both LLM interface versions return, before conversion to each binding's type.
enum LlmError {
    InvalidInput(String),
    RuntimeError(String),
}

impl From<LlmError> for llm_v2::Error {
    fn from(e: LlmError) -> Self {
        match e {
            LlmError::InvalidInput(s) => Self::InvalidInput(s),
            LlmError::RuntimeError(s) => Self::RuntimeError(s),
        }
    }
}

impl From<LlmError> for llm_v1::Error {
    fn from(e: LlmError) -> Self {
        match e {
            LlmError::InvalidInput(s) => Self::InvalidInput(s),
            LlmError::RuntimeError(s) => Self::RuntimeError(s),
        }
    }
}

impl llm_v2::Host for UnsupportedHost {
    fn infer(
        &mut self,
        model: String,
        _prompt: String,
        _params: Option<llm_v2::InferencingParams>,
    ) -> Result<llm_v2::InferencingResult, llm_v2::Error> {
        Err(self.llm_error(&model).into())
    }

    fn generate_embeddings(
        &mut self,
        model: String,
        _text: Vec<String>,
    ) -> Result<llm_v2::EmbeddingsResult, llm_v2::Error> {
        Err(self.llm_error(&model).into())
    }
}

impl llm_v1::Host for UnsupportedHost {
    fn infer(
        &mut self,
        model: String,
        _prompt: String,
        _params: Option<llm_v1::InferencingParams>,
    ) -> Result<llm_v1::InferencingResult, llm_v1::Error> {
        Err(self.llm_error(&model).into())
    }

    fn generate_embeddings(
        &mut self,
        model: String,
        _text: Vec<String>,
    ) -> Result<llm_v1::EmbeddingsResult, llm_v1::Error> {
        Err(self.llm_error(&model).into())
    }
}

/// Access to the [`UnsupportedHost`] inside a store's data.
pub trait UnsupportedView: Send {
    /// The per-instance state.
    fn unsupported(&mut self) -> &mut UnsupportedHost;
}

/// Link every interface this crate answers: `fermyon:spin/llm@2.0.0` and `fermyon:spin/llm`.
pub fn add_to_linker<T: UnsupportedView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    llm_v2::add_to_linker::<T, HasSelf<UnsupportedHost>>(linker, T::unsupported)?;
    llm_v1::add_to_linker::<T, HasSelf<UnsupportedHost>>(linker, T::unsupported)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(models: &[&str]) -> UnsupportedHost {
        UnsupportedHost::new(models.iter().map(|m| m.to_string()).collect())
    }

    #[test]
    fn unlisted_models_are_denied_with_spins_text() {
        let mut h = host(&["llama2-chat"]);
        let err = llm_v2::Host::infer(&mut h, "codellama-instruct".into(), "hi".into(), None)
            .expect_err("denied");
        assert!(
            matches!(&err, llm_v2::Error::InvalidInput(s) if s == "The component does not have access to use 'codellama-instruct'. To give the component access, add 'codellama-instruct' to the 'ai_models' key for the component in your spin.toml manifest"),
            "{err:?}"
        );
    }

    #[test]
    fn listed_models_get_a_runtime_error() {
        let mut h = host(&["llama2-chat"]);
        let err = llm_v1::Host::infer(&mut h, "llama2-chat".into(), "hi".into(), None)
            .expect_err("unsupported");
        assert!(
            matches!(&err, llm_v1::Error::RuntimeError(s) if s == LLM_UNSUPPORTED),
            "{err:?}"
        );
        let err = llm_v2::Host::generate_embeddings(&mut h, "llama2-chat".into(), vec![])
            .expect_err("unsupported");
        assert!(matches!(err, llm_v2::Error::RuntimeError(_)));
    }

    #[test]
    fn ai_models_come_from_metadata() {
        let meta = serde_json::json!({"ai_models": ["a", "b", 3]});
        let models = UnsupportedHost::ai_models_from_metadata(meta.as_object().expect("object"));
        assert_eq!(&*models, &["a".to_string(), "b".to_string()]);
        assert!(UnsupportedHost::ai_models_from_metadata(&serde_json::Map::new()).is_empty());
    }

    struct State(UnsupportedHost);
    impl UnsupportedView for State {
        fn unsupported(&mut self) -> &mut UnsupportedHost {
            &mut self.0
        }
    }

    /// A component importing both LLM versions links against this crate alone.
    #[test]
    fn components_importing_llm_link() {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let engine = wasmtime::Engine::new(&config).expect("engine");
        let mut linker = Linker::<State>::new(&engine);
        add_to_linker(&mut linker).expect("link");
        let component = wasmtime::component::Component::new(
            &engine,
            wat::parse_str(
                r#"(component
                    (import "fermyon:spin/llm@2.0.0" (instance))
                    (import "fermyon:spin/llm" (instance)))"#,
            )
            .expect("wat"),
        )
        .expect("compile");
        linker.instantiate_pre(&component).expect("instantiate_pre");
    }
}
