//! Archive layers (tar+gzip) as a pull unpacks them (`archive::unpack`, through
//! `lepton_oci::fuzzing`), with small limits so the limit checks are reachable. The first input
//! byte picks the mode: odd = the rest is a raw tar, gzipped here (so mutations reach the tar
//! parser); even = the rest is the layer as downloaded. Checks: no panic; every file yielded has
//! a plain relative path (or is the archive root itself) and the per-file and total limits hold.
#![no_main]

use std::io::Write;

use lepton_fuzz::is_plain_relative;
use libfuzzer_sys::fuzz_target;

const MAX_FILE: u64 = 64 << 10;
const MAX_TOTAL: u64 = 256 << 10;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let archive = if mode & 1 == 1 {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(rest).expect("gzip");
        gz.finish().expect("gzip")
    } else {
        rest.to_vec()
    };
    let mut total = 0u64;
    let _ = lepton_oci::fuzzing::unpack_archive(&archive, MAX_FILE, MAX_TOTAL, |path, bytes| {
        assert!(
            path.is_empty() || is_plain_relative(path),
            "archive entry {path:?} escapes the layer"
        );
        assert!(!path.split('/').any(|c| c == ".." || c == "."), "{path:?}");
        assert!(
            bytes.len() as u64 <= MAX_FILE,
            "{path:?}: {} bytes",
            bytes.len()
        );
        total += bytes.len() as u64;
        assert!(total <= MAX_TOTAL, "total {total} bytes");
        Ok(())
    });
});
