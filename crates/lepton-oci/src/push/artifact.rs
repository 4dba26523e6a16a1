//! Assembling Spin's OCI artifact from a local LockedApp (facts §1.2–1.3), without network I/O.
//!
//! Per component: the Wasm layer, then its file layers (or one archive layer); last, the
//! locked-app layer. Layers are deduplicated. Small content (≤128 bytes) is inlined into the
//! lock and small files get no layer.

use std::collections::{BTreeMap, HashSet};

use lepton_app::{ContentRef, LockedApp, file_url};
use oci_client::client::{Config, ImageLayer};
use oci_client::config::{Architecture, ConfigFile, Os};
use oci_client::manifest::OciImageManifest;
use serde_json::Value;

use crate::archive;
use crate::digest::sha256_digest;
use crate::error::{OciError, io_err};
use crate::media::{
    ARCHIVE_MEDIA_TYPE, DATA_MEDIA_TYPE, INLINE_MAX_SIZE, LOCKED_APP_DIGEST_LABEL,
    MAX_CONTENT_LAYERS, SPIN_APPLICATION_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE,
};

/// A fully assembled artifact, ready to upload.
pub(crate) struct Artifact {
    pub(crate) layers: Vec<ImageLayer>,
    pub(crate) config: Config,
    /// Manifest JSON exactly as it will be uploaded (no `mediaType`, sorted keys).
    pub(crate) manifest_json: Vec<u8>,
    pub(crate) locked_app_digest: String,
}

struct LayerSet {
    layers: Vec<ImageLayer>,
    seen: HashSet<String>,
}

impl LayerSet {
    fn add(&mut self, data: Vec<u8>, media_type: &str) -> String {
        let digest = sha256_digest(&data);
        if self.seen.insert(digest.clone()) {
            self.layers
                .push(ImageLayer::new(data, media_type.to_string(), None));
        }
        digest
    }
}

fn read_source(content: &ContentRef, what: &str) -> Result<Vec<u8>, OciError> {
    let url = content
        .source
        .as_deref()
        .ok_or_else(|| OciError::Unsupported(format!("{what} has no local source to push")))?;
    let path = file_url::to_path(url).ok_or_else(|| {
        OciError::Unsupported(format!("{what} source {url:?} is not a file:// URL"))
    })?;
    std::fs::read(&path).map_err(io_err(path))
}

fn inline_if_small(bytes: &[u8]) -> Option<Vec<u8>> {
    (bytes.len() <= INLINE_MAX_SIZE).then(|| bytes.to_vec())
}

/// Builds layers, config and manifest for `app` (a local LockedApp from `spin.toml`).
pub(crate) fn assemble(mut app: LockedApp, archive_mode: bool) -> Result<Artifact, OciError> {
    // Read all content first: the archive decision depends on the number of content layers.
    let mut wasm = Vec::new();
    let mut files = Vec::new();
    for c in &app.components {
        wasm.push(read_source(
            &c.source.content,
            &format!("component {} source", c.id),
        )?);
        let mut these = Vec::new();
        for f in &c.files {
            let what = format!("component {} file {}", c.id, f.path);
            these.push(read_source(&f.content, &what)?);
        }
        files.push(these);
    }
    let distinct: HashSet<String> = wasm
        .iter()
        .chain(files.iter().flatten().filter(|b| b.len() > INLINE_MAX_SIZE))
        .map(|b| sha256_digest(b))
        .collect();
    let archive_mode = archive_mode || distinct.len() > MAX_CONTENT_LAYERS;

    let mut set = LayerSet {
        layers: Vec::new(),
        seen: HashSet::new(),
    };
    for ((c, wasm), file_bytes) in app.components.iter_mut().zip(wasm).zip(files) {
        let inline = inline_if_small(&wasm);
        let digest = set.add(wasm, WASM_LAYER_MEDIA_TYPE);
        c.source.content = ContentRef {
            source: None,
            inline,
            digest: Some(digest),
        };
        for (f, bytes) in c.files.iter_mut().zip(&file_bytes) {
            let digest = sha256_digest(bytes);
            let inline = inline_if_small(bytes);
            if inline.is_none() && !archive_mode {
                set.add(bytes.clone(), DATA_MEDIA_TYPE);
            }
            f.content = ContentRef {
                source: None,
                inline,
                digest: Some(digest),
            };
        }
        if archive_mode && !c.files.is_empty() {
            let entries: Vec<(&str, &[u8])> = c
                .files
                .iter()
                .zip(&file_bytes)
                .map(|(f, b)| (f.path.as_str(), b.as_slice()))
                .collect();
            let gz = archive::build(&entries).map_err(|source| OciError::ArchiveBuild {
                component: c.id.clone(),
                source,
            })?;
            set.add(gz, ARCHIVE_MEDIA_TYPE);
        }
    }

    app.metadata.remove("origin");
    let locked_json = app.to_json_vec()?;
    let locked_app_digest = sha256_digest(&locked_json);
    set.layers.push(ImageLayer::new(
        locked_json,
        SPIN_APPLICATION_MEDIA_TYPE.to_string(),
        None,
    ));

    let config = image_config(&locked_app_digest)?;
    let manifest = OciImageManifest::build(&set.layers, &config, Some(annotations(&app)));
    let manifest_json = serde_json::to_value(&manifest)
        .and_then(|v| serde_json::to_vec(&v))
        .map_err(|e| OciError::Serialize {
            what: "OCI manifest".to_string(),
            message: e.to_string(),
        })?;
    Ok(Artifact {
        layers: set.layers,
        config,
        manifest_json,
        locked_app_digest,
    })
}

/// The image config Spin writes: wasm/Wasip1, empty rootfs, label with the locked-app digest.
fn image_config(locked_app_digest: &str) -> Result<Config, OciError> {
    let labels = [(
        LOCKED_APP_DIGEST_LABEL.to_string(),
        locked_app_digest.to_string(),
    )]
    .into_iter()
    .collect();
    let file = ConfigFile {
        architecture: Architecture::Wasm,
        os: Os::Other("Wasip1".to_string()),
        config: Some(oci_client::config::Config {
            labels: Some(labels),
            ..Default::default()
        }),
        ..Default::default()
    };
    Config::oci_v1_from_config_file(file, None).map_err(|e| OciError::Serialize {
        what: "image config".to_string(),
        message: e.to_string(),
    })
}

/// The annotations `spin registry push` infers.
fn annotations(app: &LockedApp) -> BTreeMap<String, String> {
    let meta = |k: &str| app.metadata.get(k).and_then(Value::as_str).unwrap_or("");
    let mut out = BTreeMap::new();
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    out.insert("org.opencontainers.image.created".to_string(), now);
    for (key, annotation) in [
        ("name", "org.opencontainers.image.title"),
        ("version", "org.opencontainers.image.version"),
        ("description", "org.opencontainers.image.description"),
    ] {
        if !meta(key).is_empty() {
            out.insert(annotation.to_string(), meta(key).to_string());
        }
    }
    let authors: Vec<&str> = app
        .metadata
        .get("authors")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !authors.is_empty() {
        out.insert(
            "org.opencontainers.image.authors".to_string(),
            authors.join(", "),
        );
    }
    out
}
