//! Helpers shared by lepton's fuzz targets (`fuzz_targets/*.rs`).
//!
//! Targets that touch the filesystem (manifests resolving relative paths, the OCI cache) work in a
//! per-process scratch directory under `$TMPDIR`; `scripts/fuzz.sh` points `TMPDIR` at a directory
//! it deletes afterwards (libFuzzer exits without running destructors).
//!
//! The parsers of lepton-host (`runtime-config.toml`, variables and `config` templates),
//! lepton-outbound (`allowed_outbound_hosts`, outbound policy) and lepton-trigger-http (routes)
//! are compiled below straight from those crates' own source files — the same files, not copies,
//! so the targets fuzz exactly the code that ships. Depending on the crates instead would link
//! wasmtime, cranelift, SQLite, Redis and hyper into every target and make a from-scratch fuzz
//! build several times longer. Each of these files uses only std, lepton-app and small libraries
//! plus its sibling modules here; if one starts using more of its crate, this build fails to
//! compile (it cannot silently fuzz stale code), and the file's target should then depend on
//! the crate, if it is free of the runtime (as `app_spec` depends on lepton-spec).

use std::path::{Component, Path, PathBuf};

#[path = "../../crates/lepton-host/src/runtime_config.rs"]
pub mod runtime_config;

// Inside an inline module with a path, `variables.rs` is an ordinary (non-mod-rs) file, so its
// own `mod dotenv;` is found in `variables/` as in lepton-host itself.
#[path = "../../crates/lepton-host/src"]
mod lepton_host_src {
    pub mod variables;
}
pub use lepton_host_src::variables;

#[path = "../../crates/lepton-outbound/src/allowed.rs"]
pub mod allowed;

#[path = "../../crates/lepton-outbound/src/policy.rs"]
pub mod policy;

#[path = "../../crates/lepton-trigger-http/src/router.rs"]
pub mod router;

/// A fresh per-process scratch directory `$TMPDIR/lepton-fuzz-<name>-<pid>`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lepton-fuzz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// Write `bytes` to `root/rel`, creating parent directories.
pub fn put(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("create fixture dir");
    std::fs::write(&path, bytes).expect("write fixture file");
}

/// Whether `path` is `root` or lies below it, judged lexically: after `root` come only plain
/// (`Normal`) components, no `..`, `.` or root.
pub fn is_within(path: &Path, root: &Path) -> bool {
    path.strip_prefix(root)
        .is_ok_and(|rest| rest.components().all(|c| matches!(c, Component::Normal(_))))
}

/// Whether `path` is a non-empty relative path of plain components (`.` allowed), as a guest
/// path or an archive entry must be.
pub fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Every path under `dir` (files and directories), depth first.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        out.push(path.clone());
        if is_dir {
            out.extend(walk(&path));
        }
    }
    out
}

/// Splits fuzz input into lines (`\n`), lossily decoded.
pub fn lines(data: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(data)
        .split('\n')
        .map(str::to_string)
        .collect()
}

/// Whether two JSON texts hold the same document, allowing floating-point numbers to differ in
/// their last bits: serde_json (without its `float_roundtrip` feature, as lepton builds it)
/// parses some decimal floats one ULP off, so a float can drift when a document is written and
/// read back (e.g. `4.0777777777777778e79` → `4.0777777777777774e79`). Everything else — keys,
/// strings, integers, structure — must match exactly.
pub fn same_json(a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    match (
        serde_json::from_slice::<serde_json::Value>(a),
        serde_json::from_slice::<serde_json::Value>(b),
    ) {
        (Ok(a), Ok(b)) => close(&a, &b),
        _ => false,
    }
}

fn close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => {
                    x == y
                        || (x.is_sign_negative() == y.is_sign_negative()
                            && x.to_bits().abs_diff(y.to_bits()) <= 2)
                }
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
        }
        _ => a == b,
    }
}
