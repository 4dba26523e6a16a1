//! [`FileStamp`]: what identifies one version of a file without reading it, for caches of
//! what was read or checked from a file (the TLS certificate cache, the OCI cache's verified
//! blobs). A write changes its times, a replacement its inode.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A file's device, inode, size, and modification and change times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    /// The stamp of the file `meta` describes.
    pub fn of_metadata(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// `stat` (following symlinks); `None` if the file is missing or unreadable.
    pub fn of(path: &Path) -> Option<Self> {
        std::fs::metadata(path).ok().map(|m| Self::of_metadata(&m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_or_a_replacement_changes_the_stamp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"one").expect("write");
        let first = FileStamp::of(&path).expect("stamp");
        assert_eq!(FileStamp::of(&path), Some(first));
        std::fs::write(&path, b"one more").expect("write");
        let second = FileStamp::of(&path).expect("stamp");
        assert_ne!(second, first);
        let other = dir.path().join("g");
        std::fs::write(&other, b"one more").expect("write");
        std::fs::rename(&other, &path).expect("rename");
        assert_ne!(FileStamp::of(&path), Some(second));
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(FileStamp::of(&path), None);
    }
}
