//! Content references (`ContentRef`, `ContentPath`) and their base64 `inline` encoding.
//!
//! Spin writes `inline` as base64 STANDARD *without* padding; we read leniently (with or without
//! padding) so locks written by other tools still load.

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where a piece of content (a Wasm module or a static file) comes from.
///
/// At least one field is set. In a registry artifact it is `digest` (+ `inline` for small
/// content); in a runnable app `source` is a `file://` URL.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentRef {
    /// A URI for the content, e.g. `file:///abs/path.wasm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The content itself, for small items.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_inline",
        deserialize_with = "deserialize_inline"
    )]
    pub inline: Option<Vec<u8>>,
    /// The `sha256:<hex>` digest of the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// A file mounted into a component: a [`ContentRef`] plus its guest path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentPath {
    /// Where the content comes from.
    #[serde(flatten)]
    pub content: ContentRef,
    /// The guest path (relative in registry artifacts; `/` for a directory mount when runnable).
    pub path: String,
}

fn serialize_inline<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(bytes) => s.serialize_str(&encode_inline(bytes)),
        None => s.serialize_none(),
    }
}

fn deserialize_inline<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| decode_inline(&s).map_err(serde::de::Error::custom))
        .transpose()
}

/// Encodes bytes as Spin writes `inline`: base64 STANDARD without padding.
pub fn encode_inline(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

/// Decodes an `inline` value, accepting both padded and unpadded base64.
pub fn decode_inline(s: &str) -> Result<Vec<u8>, String> {
    let trimmed = s.trim_end_matches('=');
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .map_err(|e| format!("invalid base64 in inline content: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_is_unpadded_and_lenient() {
        assert_eq!(encode_inline(b"hi"), "aGk");
        assert_eq!(decode_inline("aGk").unwrap(), b"hi");
        assert_eq!(decode_inline("aGk=").unwrap(), b"hi");
        assert!(decode_inline("!!").is_err());
    }

    #[test]
    fn content_path_flattens() {
        let p: ContentPath =
            serde_json::from_str(r#"{"inline":"aGk=","digest":"sha256:ab","path":"a/b"}"#).unwrap();
        assert_eq!(p.content.inline.as_deref(), Some(&b"hi"[..]));
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"inline":"aGk","digest":"sha256:ab","path":"a/b"}"#
        );
    }
}
