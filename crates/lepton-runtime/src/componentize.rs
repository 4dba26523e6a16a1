//! Turning WASI preview 1 core modules into components before they are compiled, as Spin does
//! (`crates/componentize`): the classic Spin app shape (`wasm32-wasip1` builds) and WAGI commands.
//!
//! - A module carrying a wit-bindgen `component-type` custom section is encoded with
//!   `wit-component` against the world recorded in that section, plus the preview 1 *reactor*
//!   adapter.
//! - A module without that section that exports `_start` is a command: it is encoded with the
//!   preview 1 *command* adapter, which gives it a `wasi:cli/run` export.
//! - Anything else (the pre-component wit-bindgen 0.2 Spin ABI, or a module with neither) is
//!   refused with an error naming the component.
//!
//! The adapters come from `wasi-preview1-component-adapter-provider`, pinned to the same release
//! as wasmtime so the WASI 0.2 interfaces they import are the ones lepton links. Componentizing
//! is deterministic, so the compile cache keys a core module's artifact by the original module's
//! content digest plus [`componentize_tag`], and a module is componentized and compiled once.

use std::io::Read;
use std::path::Path;
use std::sync::LazyLock;

use sha2::{Digest, Sha256};
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
    WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};

use crate::RuntimeError;

/// Bump when the way modules are componentized changes without the adapters changing.
const COMPONENTIZE_VERSION: u32 = 1;

/// What a Wasm binary's 8-byte preamble says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    /// A core module (needs componentizing).
    CoreModule,
    /// A component (or something else; compiling it reports what is wrong).
    Component,
}

/// Classify a Wasm binary from its first bytes.
pub fn classify(bytes: &[u8]) -> WasmKind {
    if wasmparser::Parser::is_core_wasm(bytes) {
        WasmKind::CoreModule
    } else {
        WasmKind::Component
    }
}

/// Classify the Wasm file at `path` by reading only its preamble.
pub(crate) fn classify_file(component: &str, path: &Path) -> Result<WasmKind, RuntimeError> {
    let read_err = |source| RuntimeError::ReadWasm {
        component: component.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    let mut preamble = Vec::with_capacity(8);
    file.by_ref()
        .take(8)
        .read_to_end(&mut preamble)
        .map_err(read_err)?;
    Ok(classify(&preamble))
}

/// A tag that changes whenever componentizing could produce different output: the adapters'
/// content and [`COMPONENTIZE_VERSION`]. Part of a core module's compile-cache key.
pub fn componentize_tag() -> &'static str {
    static TAG: LazyLock<String> = LazyLock::new(|| {
        let mut hasher = Sha256::new();
        hasher.update(COMPONENTIZE_VERSION.to_le_bytes());
        hasher.update(WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER);
        hasher.update(WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER);
        format!("p1c{}", &hex::encode(hasher.finalize())[..16])
    });
    &TAG
}

/// Which adapter a core module needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModuleShape {
    /// wit-bindgen ≥ 0.5 output: a `component-type` custom section describes its world.
    Bindgen,
    /// A plain preview 1 command exporting `_start`.
    Command,
}

fn module_shape(component: &str, module: &[u8]) -> Result<ModuleShape, RuntimeError> {
    let err = |reason: String| RuntimeError::Componentize {
        component: component.to_string(),
        reason,
    };
    let mut has_component_type = false;
    let mut has_start = false;
    let mut exports = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        let payload =
            payload.map_err(|e| err(format!("the core module is not valid Wasm: {e}")))?;
        match payload {
            wasmparser::Payload::CustomSection(section)
                if section.name().starts_with("component-type") =>
            {
                has_component_type = true;
            }
            wasmparser::Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export
                        .map_err(|e| err(format!("the core module is not valid Wasm: {e}")))?;
                    if export.name == "_start" {
                        has_start = true;
                    }
                    exports.push(export.name.to_string());
                }
            }
            _ => {}
        }
    }
    if has_component_type {
        Ok(ModuleShape::Bindgen)
    } else if has_start {
        Ok(ModuleShape::Command)
    } else if exports
        .iter()
        .any(|e| e == "handle-http-request" || e == "handle-redis-message")
    {
        Err(err(
            "the core module uses the pre-component Spin ABI (wit-bindgen 0.2, \
             `handle-http-request`), which lepton does not support; rebuild it with a current Spin SDK"
                .into(),
        ))
    } else {
        Err(err(
            "the core module has neither a wit-bindgen `component-type` section nor a `_start` \
             export, so lepton cannot tell which world it targets"
                .into(),
        ))
    }
}

/// Encode the core module `module` of component `component` as a component, with the preview 1
/// adapter its shape needs. CPU-bound: call it from a blocking thread.
pub fn componentize(component: &str, module: &[u8]) -> Result<Vec<u8>, RuntimeError> {
    let shape = module_shape(component, module)?;
    let adapter = match shape {
        ModuleShape::Bindgen => WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        ModuleShape::Command => WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
    };
    let started = std::time::Instant::now();
    let encoded = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(module)
        .and_then(|encoder| encoder.adapter(WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, adapter))
        .and_then(|mut encoder| encoder.encode())
        .map_err(|e| RuntimeError::Componentize {
            component: component.to_string(),
            reason: format!("{e:#}"),
        })?;
    tracing::info!(
        component,
        ?shape,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "componentized core module"
    );
    Ok(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wat(text: &str) -> Vec<u8> {
        wat::parse_str(text).expect("parse wat")
    }

    #[test]
    fn classifies_modules_and_components() {
        assert_eq!(classify(&wat("(module)")), WasmKind::CoreModule);
        assert_eq!(classify(&wat("(component)")), WasmKind::Component);
        assert_eq!(classify(b"not wasm"), WasmKind::Component);
    }

    #[test]
    fn a_start_command_becomes_a_component_exporting_wasi_cli_run() {
        let module = wat(r#"(module
            (import "wasi_snapshot_preview1" "fd_write"
                (func $fd_write (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "_start")))"#);
        let component = componentize("cmd", &module).expect("componentize");
        assert_eq!(classify(&component), WasmKind::Component);
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let engine = wasmtime::Engine::new(&config).expect("engine");
        let compiled = wasmtime::component::Component::new(&engine, &component).expect("compile");
        let ty = compiled.component_type();
        let exports: Vec<String> = ty.exports(&engine).map(|(n, _)| n.to_string()).collect();
        assert!(
            exports.iter().any(|e| e.starts_with("wasi:cli/run@0.2")),
            "{exports:?}"
        );
    }

    #[test]
    fn refuses_modules_of_unknown_shape_naming_the_component() {
        let err = componentize(
            "old",
            &wat(r#"(module (func (export "handle-http-request")))"#),
        )
        .expect_err("old ABI");
        let msg = err.to_string();
        assert!(
            msg.contains("`old`") && msg.contains("wit-bindgen 0.2"),
            "{msg}"
        );
        let err = componentize("lib", &wat(r#"(module (func (export "f")))"#)).expect_err("lib");
        assert!(err.to_string().contains("`lib`"), "{err}");
        let err = componentize("bad", b"\0asm\x01\0\0\0\x99").expect_err("bad");
        assert!(err.to_string().contains("not valid Wasm"), "{err}");
    }

    #[test]
    fn the_tag_is_stable() {
        assert_eq!(componentize_tag(), componentize_tag());
        assert!(componentize_tag().starts_with("p1c"));
    }
}
