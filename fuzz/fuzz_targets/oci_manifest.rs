//! OCI image manifests as a pull reads them (`pull::parse_manifest` + the locked-app descriptor,
//! through `lepton_oci::fuzzing`). Checks: no panic; an accepted locked-app digest is a
//! well-formed `sha256:` digest (it becomes a cache file name).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(digest) = lepton_oci::fuzzing::parse_manifest(data) {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        assert!(
            hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "accepted locked-app digest {digest:?}"
        );
    }
});
