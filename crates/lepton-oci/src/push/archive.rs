//! Archive layers: one tar.gz per component mount directory (`…bundle.v1.tar+gzip`).
//!
//! Building mirrors Spin's `append_dir_all(".")` closely enough for any Spin puller (regular
//! files at their relative paths); unpacking accepts `./`-prefixed entries, rejects absolute
//! and `..` paths, and yields every regular file's bytes.

use std::io::{Read, Write};
use std::path::{Component, Path};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

/// Builds a tar.gz of `(relative path, bytes)` entries.
pub(crate) fn build(files: &[(&str, &[u8])]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    builder.mode(tar::HeaderMode::Deterministic);
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, *bytes)?;
    }
    let mut gz = builder.into_inner()?;
    gz.flush()?;
    gz.finish()
}

/// Unpacks a tar.gz, calling `each(relative_path, bytes)` for every regular file.
pub(crate) fn unpack(
    archive: &[u8],
    mut each: impl FnMut(&str, Vec<u8>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut tar = tar::Archive::new(GzDecoder::new(archive));
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        if !is_safe(&path) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "archive entry {:?} is absolute or contains `..`",
                    path.display()
                ),
            ));
        }
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes)?;
        let rel: Vec<String> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        each(&rel.join("/"), bytes)?;
    }
    Ok(())
}

fn is_safe(path: &Path) -> bool {
    path.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let gz = build(&[("a.txt", b"a"), ("dir/b.txt", b"bb")]).unwrap();
        let mut seen = Vec::new();
        unpack(&gz, |p, b| {
            seen.push((p.to_string(), b));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![
                ("a.txt".into(), b"a".to_vec()),
                ("dir/b.txt".into(), b"bb".to_vec())
            ]
        );
    }

    #[test]
    fn rejects_traversal() {
        // tar::Builder refuses `..`, so write the raw header name directly.
        let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../evil.x");
        header.set_size(1);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, &b"x"[..]).unwrap();
        let gz = builder.into_inner().unwrap().finish().unwrap();
        let err = unpack(&gz, |_, _| Ok(())).unwrap_err();
        assert!(err.to_string().contains(".."), "{err}");
    }
}
