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
//!
//! It also owns serving components built against the WASI 0.3 release candidate
//! `0.3.0-rc-2026-03-15` (Spin SDK 5.0.0 / `spin:up@4.x` worlds, e.g. componentize-py apps).
//! wasmtime 48 implements WASI p3 only at `0.3.0`, and its semver matching never matches a
//! prerelease. The rc WIT of `wasi:{cli,clocks,filesystem,http,random,sockets}` is structurally
//! identical to 0.3.0 (same types, functions and resource methods; only docs and `@since`
//! versions differ), so [`rename_rc_versions`] renames a component's *top-level* imports and
//! exports `…@0.3.0-rc-2026-03-15` to `…@0.3.0+rc-2026-03-15` and copies every other section
//! byte for byte. The build-metadata suffix keeps the names unique (SDK 5.0.0 components import
//! each interface at both the rc and 0.3.0), and wasmtime's semver lookup resolves
//! `@0.3.0+rc-…` to the host's `@0.3.0` definitions (and finds a renamed `wasi:http/handler`
//! export when asked for `@0.3.0`), so the linker and `instantiate_pre` type-check the component
//! against the real 0.3.0 implementation at load: any mismatch fails there, naming the
//! component and interface. Renaming is deterministic; the compile cache keys every component
//! by its digest plus [`rename_tag`].

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;
use std::sync::LazyLock;

use sha2::{Digest, Sha256};
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
    WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wasm_encoder::reencode::{ReencodeComponent, RoundtripReencoder};

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

/// Bump when the way components' rc names are rewritten changes.
const RENAME_VERSION: u32 = 1;

/// The WASI release candidate lepton serves through its 0.3.0 implementation.
const RC_VERSION: &str = "0.3.0-rc-2026-03-15";

/// What rc names become: 0.3.0 with the rc as build metadata (unique, and semver-equal to 0.3.0
/// for wasmtime's lookups).
const RENAMED_VERSION: &str = "0.3.0+rc-2026-03-15";

/// The 0.3.0 version an rc name stands for.
const TARGET_VERSION: &str = "0.3.0";

/// The WASI packages whose `@0.3.0-rc-2026-03-15` WIT was checked to be structurally identical to
/// wasmtime 48's `@0.3.0` WIT.
const RC_PACKAGES: &[&str] = &[
    "wasi:cli",
    "wasi:clocks",
    "wasi:filesystem",
    "wasi:http",
    "wasi:random",
    "wasi:sockets",
];

/// A tag that changes whenever [`rename_rc_versions`] could produce different output. Part of
/// every component's compile-cache key.
pub fn rename_tag() -> &'static str {
    static TAG: LazyLock<String> = LazyLock::new(|| {
        let mut hasher = Sha256::new();
        hasher.update(RENAME_VERSION.to_le_bytes());
        hasher.update(RC_VERSION);
        hasher.update(RENAMED_VERSION);
        for package in RC_PACKAGES {
            hasher.update(package);
        }
        format!("rc{}", &hex::encode(hasher.finalize())[..12])
    });
    &TAG
}

/// The name `name` is served under, if it is an rc-versioned interface of [`RC_PACKAGES`].
fn renamed(name: &str) -> Option<String> {
    let (interface, version) = name.rsplit_once('@')?;
    let (package, _) = interface.split_once('/')?;
    (version == RC_VERSION && RC_PACKAGES.contains(&package))
        .then(|| format!("{interface}@{RENAMED_VERSION}"))
}

/// The original rc name of a name [`rename_rc_versions`] produced, for error messages.
pub(crate) fn rc_name_of(name: &str) -> Option<String> {
    let interface = name.strip_suffix(RENAMED_VERSION)?.strip_suffix('@')?;
    Some(format!("{interface}@{RC_VERSION}"))
}

/// One top-level section of the output: copied, or re-encoded with renamed names.
enum Section {
    Raw(u8, std::ops::Range<usize>),
    Imports(wasm_encoder::ComponentImportSection),
    Exports(wasm_encoder::ComponentExportSection),
}

/// Rename the top-level `wasi:*@0.3.0-rc-2026-03-15` imports and exports of the component
/// `bytes` (see the module docs). Returns the input unchanged (borrowed) when nothing is renamed
/// or `bytes` is not a component; otherwise a component whose other sections are copied byte
/// for byte. A component exporting an interface at both the rc and 0.3.0 is refused, as Spin
/// refuses a component with two handlers. Nested modules and components are copied without
/// being parsed.
pub fn rename_rc_versions<'a>(
    component: &str,
    bytes: &'a [u8],
) -> Result<Cow<'a, [u8]>, RuntimeError> {
    let err = |reason: String| RuntimeError::Compile {
        component: component.to_string(),
        reason,
    };
    let invalid =
        |e: wasmparser::BinaryReaderError| err(format!("the component is not valid Wasm: {e}"));
    let mut parser = wasmparser::Parser::new(0);
    let mut offset = 0;
    let mut sections = Vec::new();
    let mut renames: Vec<(String, String)> = Vec::new();
    let mut exported = Vec::new();
    let mut reencoder = RoundtripReencoder;
    loop {
        let rest = bytes.get(offset..).unwrap_or_default();
        let (payload, consumed) = match parser.parse(rest, true).map_err(invalid)? {
            wasmparser::Chunk::Parsed { consumed, payload } => (payload, consumed),
            wasmparser::Chunk::NeedMoreData(_) => {
                return Err(err("the component is truncated".into()));
            }
        };
        offset += consumed;
        match payload {
            wasmparser::Payload::Version { encoding, .. } => {
                if encoding != wasmparser::Encoding::Component {
                    return Ok(Cow::Borrowed(bytes));
                }
            }
            wasmparser::Payload::ComponentImportSection(reader) => {
                let mut section = wasm_encoder::ComponentImportSection::new();
                for import in reader {
                    let import = import.map_err(invalid)?;
                    let mut name = wasm_encoder::ComponentExternName::from(import.name);
                    if let Some(new) = renamed(import.name.name) {
                        renames.push((import.name.name.to_string(), new.clone()));
                        name.name = Cow::Owned(new);
                    }
                    let ty = reencoder.component_type_ref(import.ty).map_err(|e| {
                        err(format!(
                            "cannot re-encode import `{}`: {e}",
                            import.name.name
                        ))
                    })?;
                    section.import(name, ty);
                }
                sections.push(Section::Imports(section));
            }
            wasmparser::Payload::ComponentExportSection(reader) => {
                let mut section = wasm_encoder::ComponentExportSection::new();
                for export in reader {
                    let export = export.map_err(invalid)?;
                    exported.push(export.name.name.to_string());
                    let mut name = wasm_encoder::ComponentExternName::from(export.name);
                    if let Some(new) = renamed(export.name.name) {
                        renames.push((export.name.name.to_string(), new.clone()));
                        name.name = Cow::Owned(new);
                    }
                    let ty = export
                        .ty
                        .map(|ty| reencoder.component_type_ref(ty))
                        .transpose()
                        .map_err(|e| {
                            err(format!(
                                "cannot re-encode export `{}`: {e}",
                                export.name.name
                            ))
                        })?;
                    let kind = reencoder.component_export_kind(export.kind);
                    section.export(name, kind, export.index, ty);
                }
                sections.push(Section::Exports(section));
            }
            wasmparser::Payload::End(_) => break,
            other => {
                if let Some((id, range)) = other.as_section() {
                    // The parser has already stepped over a nested module or component (it
                    // only consumed the section header): copy it without parsing it.
                    if matches!(
                        other,
                        wasmparser::Payload::ModuleSection { .. }
                            | wasmparser::Payload::ComponentSection { .. }
                    ) {
                        offset += range.len();
                    }
                    sections.push(Section::Raw(id, range));
                }
            }
        }
    }
    if renames.is_empty() {
        return Ok(Cow::Borrowed(bytes));
    }
    for name in &exported {
        if let Some(interface) = name
            .strip_suffix(RC_VERSION)
            .and_then(|n| n.strip_suffix('@'))
            && exported.contains(&format!("{interface}@{TARGET_VERSION}"))
        {
            return Err(err(format!(
                "it exports both `{name}` and `{interface}@{TARGET_VERSION}`; lepton serves the \
                 {RC_VERSION} release candidate through its {TARGET_VERSION} implementation, so a \
                 component may export only one of them"
            )));
        }
    }
    let mut out = wasm_encoder::Component::new();
    for section in &sections {
        match section {
            Section::Raw(id, range) => {
                let data = bytes
                    .get(range.clone())
                    .ok_or_else(|| err("a section runs past the end of the component".into()))?;
                out.section(&wasm_encoder::RawSection { id: *id, data });
            }
            Section::Imports(s) => {
                out.section(s);
            }
            Section::Exports(s) => {
                out.section(s);
            }
        }
    }
    tracing::info!(
        component,
        renamed = ?renames.iter().map(|(old, _)| old.as_str()).collect::<Vec<_>>(),
        "serving WASI {RC_VERSION} imports/exports through the {TARGET_VERSION} implementation"
    );
    Ok(Cow::Owned(out.finish()))
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

    /// Every top-level section other than imports and exports, as (id, bytes).
    fn other_sections(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut depth = 0;
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            match payload.expect("valid") {
                wasmparser::Payload::Version { .. } => depth += 1,
                wasmparser::Payload::End(_) => depth -= 1,
                wasmparser::Payload::ComponentImportSection(_)
                | wasmparser::Payload::ComponentExportSection(_)
                    if depth == 1 => {}
                other => {
                    if depth == 1
                        && let Some((id, range)) = other.as_section()
                    {
                        out.push((id, bytes[range].to_vec()));
                    }
                }
            }
        }
        out
    }

    fn top_level_names(bytes: &[u8]) -> (Vec<String>, Vec<String>) {
        let (mut imports, mut exports) = (Vec::new(), Vec::new());
        let mut depth = 0;
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            match payload.expect("valid") {
                wasmparser::Payload::Version { .. } => depth += 1,
                wasmparser::Payload::End(_) => depth -= 1,
                wasmparser::Payload::ComponentImportSection(r) if depth == 1 => imports.extend(
                    r.into_iter()
                        .map(|i| i.expect("import").name.name.to_string()),
                ),
                wasmparser::Payload::ComponentExportSection(r) if depth == 1 => exports.extend(
                    r.into_iter()
                        .map(|e| e.expect("export").name.name.to_string()),
                ),
                _ => {}
            }
        }
        (imports, exports)
    }

    const RC_COMPONENT: &str = r#"(component
        (import "wasi:random/random@0.3.0-rc-2026-03-15" (instance $rc
            (export "get-random-u64" (func (result u64)))))
        (import "wasi:random/random@0.3.0" (instance $v3
            (export "get-random-u64" (func (result u64)))))
        (import "my:pkg/thing@0.3.0-rc-2026-03-15" (instance))
        (core module $m (func (export "f") (result i64) i64.const 7))
        (core instance $mi (instantiate $m))
        (alias export $rc "get-random-u64" (func $get))
        (component $inner)
        (instance $h)
        (export "wasi:http/handler@0.3.0-rc-2026-03-15" (instance $h))
        (export "get" (func $get)))"#;

    #[test]
    fn renames_top_level_rc_names_and_copies_everything_else() {
        let original = wat(RC_COMPONENT);
        let renamed = rename_rc_versions("rc", &original).expect("rename");
        let Cow::Owned(renamed) = renamed else {
            panic!("expected a rewrite")
        };
        wasmparser::Validator::new()
            .validate_all(&renamed)
            .expect("the renamed component validates");
        let (imports, exports) = top_level_names(&renamed);
        assert_eq!(
            imports,
            [
                "wasi:random/random@0.3.0+rc-2026-03-15",
                "wasi:random/random@0.3.0",
                // Not a WASI package checked against 0.3.0: left alone.
                "my:pkg/thing@0.3.0-rc-2026-03-15",
            ]
        );
        assert_eq!(exports, ["wasi:http/handler@0.3.0+rc-2026-03-15", "get"]);
        assert_eq!(other_sections(&renamed), other_sections(&original));
        assert!(!other_sections(&original).is_empty());
        // Deterministic.
        assert_eq!(
            rename_rc_versions("rc", &original).expect("again").as_ref(),
            renamed.as_slice()
        );
    }

    #[test]
    fn components_without_rc_names_and_modules_stay_byte_identical() {
        let plain = wat(r#"(component
            (import "wasi:random/random@0.3.0" (instance
                (export "get-random-u64" (func (result u64)))))
            (import "wasi:http/types@0.2.6" (instance))
            (core module (func (export "f")))
            (export "wasi:http/handler@0.3.0" (instance 0)))"#);
        let out = rename_rc_versions("plain", &plain).expect("rename");
        assert!(matches!(out, Cow::Borrowed(_)));
        assert_eq!(out.as_ref(), plain.as_slice());
        let module = wat("(module)");
        assert_eq!(
            rename_rc_versions("m", &module).expect("module").as_ref(),
            module.as_slice()
        );
        let err = rename_rc_versions("bad", b"\0asm\x0d\0\x01\0\x99").expect_err("bad");
        assert!(err.to_string().contains("`bad`"), "{err}");
    }

    #[test]
    fn exporting_an_interface_at_both_the_rc_and_0_3_0_is_refused() {
        let both = wat(r#"(component
            (instance $h)
            (export "wasi:http/handler@0.3.0-rc-2026-03-15" (instance $h))
            (export "wasi:http/handler@0.3.0" (instance $h)))"#);
        let err = rename_rc_versions("twice", &both).expect_err("two handlers");
        let msg = err.to_string();
        assert!(
            msg.contains("`twice`") && msg.contains("wasi:http/handler@0.3.0-rc-2026-03-15"),
            "{msg}"
        );
    }

    fn runtime_engine() -> crate::engine::RuntimeEngine {
        crate::engine::RuntimeEngine::new(&crate::engine::RuntimeEngineConfig {
            pooling: crate::engine::PoolingMode::Off,
            ..Default::default()
        })
        .expect("engine")
    }

    #[test]
    fn renamed_rc_imports_link_against_the_0_3_0_host_and_mismatches_fail_at_load() {
        let engine = runtime_engine();
        let load = |text: &str| {
            let renamed = rename_rc_versions("c", &wat(text))
                .expect("rename")
                .into_owned();
            let component =
                wasmtime::component::Component::new(engine.engine(), &renamed).expect("compile");
            let pre = engine.linker().instantiate_pre(&component);
            (component, pre.map(|_| ()))
        };
        // The rc and 0.3.0 imports of one interface both resolve to wasmtime's 0.3.0 host.
        let (component, linked) = load(
            r#"(component
                (import "wasi:random/random@0.3.0-rc-2026-03-15" (instance
                    (export "get-random-u64" (func (result u64)))))
                (import "wasi:random/random@0.3.0" (instance
                    (export "get-random-u64" (func (result u64)))))
                (import "wasi:clocks/monotonic-clock@0.3.0-rc-2026-03-15" (instance
                    (export "now" (func (result u64)))))
                (instance $h)
                (export "wasi:http/handler@0.3.0-rc-2026-03-15" (instance $h)))"#,
        );
        linked.expect("rc imports link against the 0.3.0 host");
        // A renamed handler export is found under its 0.3.0 name, as the executor looks it up.
        assert!(
            component
                .get_export_index(None, "wasi:http/handler@0.3.0")
                .is_some()
        );
        // Without the rename, the rc import is not provided at all.
        let unrenamed = wasmtime::component::Component::new(
            engine.engine(),
            wat(
                r#"(component (import "wasi:random/random@0.3.0-rc-2026-03-15" (instance
                (export "get-random-u64" (func (result u64))))))"#,
            ),
        )
        .expect("compile");
        assert!(engine.linker().instantiate_pre(&unrenamed).is_err());
        // An rc import whose type differs from 0.3.0 fails at load, naming the interface.
        let (_, linked) = load(
            r#"(component (import "wasi:random/random@0.3.0-rc-2026-03-15" (instance
                (export "get-random-u64" (func (result u32))))))"#,
        );
        let err = format!("{:#}", linked.expect_err("type mismatch"));
        assert!(
            err.contains("wasi:random/random@0.3.0+rc-2026-03-15"),
            "{err}"
        );
        assert_eq!(
            rc_name_of("wasi:random/random@0.3.0+rc-2026-03-15").as_deref(),
            Some("wasi:random/random@0.3.0-rc-2026-03-15")
        );
        assert_eq!(rc_name_of("wasi:random/random@0.3.0"), None);
        // So does an rc function 0.3.0 does not have.
        let (_, linked) = load(
            r#"(component (import "wasi:random/random@0.3.0-rc-2026-03-15" (instance
                (export "get-random-u128" (func (result u64))))))"#,
        );
        let err = format!("{:#}", linked.expect_err("missing function"));
        assert!(
            err.contains("wasi:random/random@0.3.0+rc-2026-03-15"),
            "{err}"
        );
    }

    #[test]
    fn the_tag_is_stable() {
        assert_eq!(componentize_tag(), componentize_tag());
        assert!(componentize_tag().starts_with("p1c"));
    }
}
