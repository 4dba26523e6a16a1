//! Certificate pairs read from files, kept parsed, and re-read when a file changes.
//!
//! Why an `mtime` check at handshake time rather than a `notify` watcher: the files live
//! anywhere (an app's `tls` paths, `--cert-dir`, ACME's directory), often behind symlinks that
//! tools like certbot swap, and a watcher would have to follow every directory and every link
//! target as apps come and go. A check costs two `stat` calls per handshake and needs no
//! bookkeeping: each pair remembers the stamp (device, inode, size, mtime and ctime, to the
//! nanosecond) of the files it was parsed from, and only a different stamp re-reads and
//! re-parses them. `tests/serve_tls.rs` prints the handshake's cost; on the 2-core test machine
//! the lookup (two `stat`s and a map lookup) is a few microseconds against roughly a
//! millisecond for the whole handshake, and a replaced file is served from the very next
//! handshake. Connections already open keep the certificate they were made with.
//!
//! A pair that fails to load after a change (a half-written file, a key of another
//! certificate) is logged once per change and the previous good pair keeps being served, so
//! replacing the certificate and then the key, in two steps, never breaks the host. Missing
//! files mean no certificate (logged once).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lepton_app::file_stamp::FileStamp;
use rustls::sign::CertifiedKey;

use super::{TlsFiles, load_certified_key};

/// Parsed certificate pairs by their files, reloaded when the files change.
#[derive(Debug, Default)]
pub struct CertCache {
    entries: Mutex<HashMap<TlsFiles, Entry>>,
}

#[derive(Debug)]
struct Entry {
    /// The files' stamps when last looked at (`None`: a file was missing).
    seen: Option<PairStamp>,
    /// The last pair that loaded, still served after a failed reload.
    loaded: Option<Arc<CertifiedKey>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PairStamp {
    cert: FileStamp,
    key: FileStamp,
}

impl PairStamp {
    fn of(files: &TlsFiles) -> Option<Self> {
        Some(Self {
            cert: FileStamp::of(&files.cert)?,
            key: FileStamp::of(&files.key)?,
        })
    }
}

impl CertCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The pair in `files`: the one parsed before if neither file changed since, else read
    /// again (keeping the previous pair if the new files do not load). `None` if the files are
    /// missing or have never loaded.
    pub fn get(&self, files: &TlsFiles) -> Option<Arc<CertifiedKey>> {
        let stamp = PairStamp::of(files);
        let previous = {
            let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            match entries.get(files) {
                Some(entry) if entry.seen == stamp => return entry.loaded.clone(),
                Some(entry) => Some(entry.loaded.clone()),
                None => None,
            }
        };
        // Changed, new or gone: (re)load outside the lock, so other hosts' handshakes go on.
        let loaded = match stamp {
            None => {
                tracing::warn!(
                    cert = %files.cert.display(),
                    key = %files.key.display(),
                    "certificate files missing: no certificate for their hosts"
                );
                None
            }
            Some(_) => match load_certified_key(&files.cert, &files.key) {
                Ok(certified) => {
                    if previous.is_some() {
                        tracing::info!(cert = %files.cert.display(), "certificate reloaded");
                    }
                    Some(Arc::new(certified))
                }
                Err(err) => {
                    let keeping = previous.clone().flatten();
                    tracing::warn!(
                        error = %err,
                        previous_kept = keeping.is_some(),
                        "cannot load certificate"
                    );
                    keeping
                }
            },
        };
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                files.clone(),
                Entry {
                    seen: stamp,
                    loaded: loaded.clone(),
                },
            );
        loaded
    }
}
