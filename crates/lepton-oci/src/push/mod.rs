//! `push`: publish a `spin.toml` app as Spin's OCI artifact (what `spin registry push` does).

mod artifact;

use std::path::Path;

use futures::{StreamExt, TryStreamExt};
use oci_client::RegistryOperation;
use tracing::info;

use crate::RegistryOptions;
use crate::client::Session;
use crate::digest::sha256_digest;
use crate::error::OciError;
use crate::media::{ARCHIVE_ENV_VAR, OCI_MANIFEST_MEDIA_TYPE, PARALLEL_BLOBS};

/// What a push produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushOutcome {
    /// `sha256:` digest of the uploaded manifest (pin with `repo@<digest>`).
    pub manifest_digest: String,
    /// `sha256:` digest of the locked-app layer.
    pub locked_app_digest: String,
}

/// Knobs for [`push_with_options`].
#[derive(Clone, Debug, Default)]
pub struct PushOptions {
    /// Push each component's files as one tar.gz archive layer (Spin's archive mode). Archive
    /// mode is also used automatically above 499 content layers.
    pub archive_layers: bool,
}

impl PushOptions {
    /// Options as `spin registry push` reads them: archive mode if `SPIN_OCI_ARCHIVE_LAYERS` is set.
    pub fn from_env() -> Self {
        PushOptions {
            archive_layers: std::env::var_os(ARCHIVE_ENV_VAR).is_some(),
        }
    }
}

/// Pushes the app described by `spin_toml` to `reference`, with [`PushOptions::from_env`].
pub async fn push(
    spin_toml: &Path,
    reference: &str,
    opts: &RegistryOptions,
) -> Result<PushOutcome, OciError> {
    push_with_options(spin_toml, reference, opts, &PushOptions::from_env()).await
}

/// Pushes the app described by `spin_toml` to `reference`.
pub async fn push_with_options(
    spin_toml: &Path,
    reference: &str,
    opts: &RegistryOptions,
    push_opts: &PushOptions,
) -> Result<PushOutcome, OciError> {
    let parsed = crate::parse_reference(reference)?;
    if parsed.digest().is_some() {
        return Err(OciError::InvalidReference {
            reference: reference.to_string(),
            message: "cannot push to a digest reference; use a tag".to_string(),
        });
    }
    let app = lepton_app::manifest::load_manifest(spin_toml)?;
    let artifact = artifact::assemble(app, push_opts.archive_layers)?;
    let session = Session::connect(&parsed, opts, RegistryOperation::Push).await?;

    let total: usize = artifact.layers.iter().map(|l| l.data.len()).sum();
    futures::stream::iter(artifact.layers.iter())
        .map(|layer| {
            let session = &session;
            async move {
                let digest = sha256_digest(&layer.data);
                session
                    .client
                    .push_blob(&session.reference, layer.data.clone(), &digest)
                    .await
                    .map_err(|e| session.err(e))?;
                info!(reference = %session.name, %digest, size = layer.data.len(), media_type = %layer.media_type, "pushed layer");
                Ok::<_, OciError>(())
            }
        })
        .buffer_unordered(PARALLEL_BLOBS)
        .try_collect::<()>()
        .await?;
    let config_digest = sha256_digest(&artifact.config.data);
    session
        .client
        .push_blob(
            &session.reference,
            artifact.config.data.clone(),
            &config_digest,
        )
        .await
        .map_err(|e| session.err(e))?;

    let manifest_digest = sha256_digest(&artifact.manifest_json);
    let content_type = http_header(OCI_MANIFEST_MEDIA_TYPE);
    session
        .client
        .push_manifest_raw(&session.reference, artifact.manifest_json, content_type)
        .await
        .map_err(|e| session.err(e))?;
    info!(
        reference = %session.name,
        %manifest_digest,
        layers = artifact.layers.len(),
        bytes = total,
        "pushed app"
    );
    Ok(PushOutcome {
        manifest_digest,
        locked_app_digest: artifact.locked_app_digest,
    })
}

fn http_header(value: &'static str) -> http::HeaderValue {
    http::HeaderValue::from_static(value)
}
