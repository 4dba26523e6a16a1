//! Media types and labels of Spin's OCI artifact format (facts §1.1–1.2).

/// The locked-app JSON layer (modern layout), or the config blob (Spin 1.x layout).
pub const SPIN_APPLICATION_MEDIA_TYPE: &str = "application/vnd.fermyon.spin.application.v1+config";
/// A component's Wasm layer.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// Wasm layers pushed by other tools (`wkg`), accepted on pull.
pub const WASM_ALT_MEDIA_TYPE: &str = "application/wasm";
/// A single static file layer.
pub const DATA_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+data";
/// A tar.gz of one component's mount directory.
pub const ARCHIVE_MEDIA_TYPE: &str = "application/vnd.wasm.content.bundle.v1.tar+gzip";
/// The image config blob media type.
pub const IMAGE_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The manifest content type used on push.
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker v2 manifests, accepted on pull.
pub const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Config label carrying the locked-app layer digest.
pub const LOCKED_APP_DIGEST_LABEL: &str = "com.fermyon.spin.lockedAppDigest";
/// Content up to this size is inlined into the lock (files are then not pushed as layers).
pub const INLINE_MAX_SIZE: usize = 128;
/// Archive mode is used above this many content layers.
pub const MAX_CONTENT_LAYERS: usize = 499;
/// Env var forcing archive mode on push.
pub const ARCHIVE_ENV_VAR: &str = "SPIN_OCI_ARCHIVE_LAYERS";
/// Concurrent blob transfers.
pub const PARALLEL_BLOBS: usize = 16;
/// Prefix of `metadata.origin` for registry apps.
pub const ORIGIN_PREFIX: &str = "vnd.fermyon.origin-oci:";

/// Whether a layer media type holds Wasm.
pub fn is_wasm(media_type: &str) -> bool {
    media_type == WASM_LAYER_MEDIA_TYPE || media_type == WASM_ALT_MEDIA_TYPE
}
