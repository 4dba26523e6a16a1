//! Archive layers: one tar.gz per component mount directory (`…bundle.v1.tar+gzip`).
//!
//! Building (push) mirrors Spin's `append_dir_all(".")` closely enough for any Spin puller
//! (regular files at their relative paths). Unpacking (pull) accepts `./`-prefixed entries,
//! rejects absolute and `..` paths, and yields every regular file's bytes.
//!
//! Archives come from registries and are hostile until proven otherwise: tar headers may claim
//! any size (up to 2^64) and gzip can expand a few kilobytes into gigabytes. Unpacking therefore
//! never trusts a header size for allocation and enforces [`ArchiveLimits`]: at most
//! [`MAX_ARCHIVE_FILE_BYTES`] per file and [`MAX_ARCHIVE_TOTAL_BYTES`] of unpacked content per
//! archive.

use std::io::{Read, Write};
use std::path::{Component, Path};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

/// Largest single file accepted from an archive layer (1 GiB).
pub(crate) const MAX_ARCHIVE_FILE_BYTES: u64 = 1 << 30;
/// Largest total of unpacked file bytes accepted from one archive layer (4 GiB).
pub(crate) const MAX_ARCHIVE_TOTAL_BYTES: u64 = 4 << 30;
/// Never pre-allocate more than this for a file, whatever its header claims (1 MiB).
const MAX_PREALLOC: u64 = 1 << 20;

/// Bounds on what unpacking one archive may produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ArchiveLimits {
    /// Maximum bytes of any one regular file.
    pub(crate) max_file_bytes: u64,
    /// Maximum bytes of all regular files together.
    pub(crate) max_total_bytes: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        ArchiveLimits {
            max_file_bytes: MAX_ARCHIVE_FILE_BYTES,
            max_total_bytes: MAX_ARCHIVE_TOTAL_BYTES,
        }
    }
}

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

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

/// Unpacks a tar.gz within `limits`, calling `each(relative_path, bytes)` for every regular
/// file. Errors name the offending entry.
pub(crate) fn unpack(
    archive: &[u8],
    limits: ArchiveLimits,
    mut each: impl FnMut(&str, Vec<u8>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut tar = tar::Archive::new(GzDecoder::new(archive));
    let mut total: u64 = 0;
    for entry in tar.entries()? {
        let entry = entry?;
        let path = entry.path()?.into_owned();
        if !is_safe(&path) {
            return Err(invalid(format!(
                "archive entry {:?} is absolute or contains `..`",
                path.display()
            )));
        }
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let claimed = entry.size();
        if claimed > limits.max_file_bytes {
            return Err(invalid(format!(
                "archive entry {:?} claims {claimed} bytes, over the {} byte per-file limit",
                path.display(),
                limits.max_file_bytes
            )));
        }
        // The header size is untrusted: cap the pre-allocation and the read itself.
        let mut bytes = Vec::with_capacity(claimed.min(MAX_PREALLOC) as usize);
        entry
            .take(limits.max_file_bytes.saturating_add(1))
            .read_to_end(&mut bytes)?;
        let len = bytes.len() as u64;
        if len > limits.max_file_bytes {
            return Err(invalid(format!(
                "archive entry {:?} is over the {} byte per-file limit",
                path.display(),
                limits.max_file_bytes
            )));
        }
        total = total.saturating_add(len);
        if total > limits.max_total_bytes {
            return Err(invalid(format!(
                "archive unpacks to more than {} bytes (limit reached at entry {:?})",
                limits.max_total_bytes,
                path.display()
            )));
        }
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

    fn small(max_file_bytes: u64, max_total_bytes: u64) -> ArchiveLimits {
        ArchiveLimits {
            max_file_bytes,
            max_total_bytes,
        }
    }

    #[test]
    fn round_trip() {
        let gz = build(&[("a.txt", b"a"), ("dir/b.txt", b"bb")]).unwrap();
        let mut seen = Vec::new();
        unpack(&gz, ArchiveLimits::default(), |p, b| {
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
        let err = unpack(&gz, ArchiveLimits::default(), |_, _| Ok(())).unwrap_err();
        assert!(err.to_string().contains(".."), "{err}");
    }

    /// A header claiming an absurd size must be a clean error, not an allocation abort.
    #[test]
    fn huge_header_size_is_refused_without_allocating() {
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..8].copy_from_slice(b"huge.bin");
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(1 << 62);
        header.set_cksum();
        let mut tar_bytes = header.as_bytes().to_vec();
        tar_bytes.extend_from_slice(&[b'x'; 512]);
        tar_bytes.extend_from_slice(&[0u8; 1024]);
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(&tar_bytes).unwrap();
        let gz = gz.finish().unwrap();
        let err = unpack(&gz, ArchiveLimits::default(), |_, _| Ok(())).unwrap_err();
        assert!(
            err.to_string().contains("huge.bin") && err.to_string().contains("limit"),
            "{err}"
        );
        // Even with no limits, the header size is never trusted for allocation: the truncated
        // entry is a clean error.
        assert!(unpack(&gz, small(u64::MAX, u64::MAX), |_, _| Ok(())).is_err());
    }

    /// A small archive that inflates past the per-file limit is refused while reading.
    #[test]
    fn gzip_bomb_hits_the_file_limit() {
        let zeros = vec![0u8; 4 << 20];
        let gz = build(&[("bomb.bin", &zeros)]).unwrap();
        assert!(gz.len() < 64 << 10, "compresses well: {}", gz.len());
        let err = unpack(&gz, small(1 << 20, u64::MAX), |_, _| Ok(())).unwrap_err();
        assert!(
            err.to_string().contains("bomb.bin") && err.to_string().contains("limit"),
            "{err}"
        );
    }

    #[test]
    fn total_limit_applies_across_files() {
        let a = vec![1u8; 600 << 10];
        let gz = build(&[("a.bin", &a), ("b.bin", &a)]).unwrap();
        let mut seen = 0;
        let err = unpack(&gz, small(1 << 20, 1 << 20), |_, _| {
            seen += 1;
            Ok(())
        })
        .unwrap_err();
        assert_eq!(seen, 1);
        assert!(err.to_string().contains("b.bin"), "{err}");
        unpack(&gz, small(1 << 20, 2 << 20), |_, _| Ok(())).unwrap();
    }
}
