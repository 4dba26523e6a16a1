//! Pull progress: `indicatif` bars on stderr when it is a terminal, `tracing::info!` lines
//! (one per pulled layer plus a summary) otherwise.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::info;

/// Progress of one pull (all layers of one reference).
pub(crate) struct PullProgress {
    reference: String,
    multi: Option<(MultiProgress, ProgressBar)>,
    pulled_layers: AtomicU64,
    pulled_bytes: AtomicU64,
    cached_layers: AtomicU64,
}

/// Progress of one layer download.
pub(crate) struct LayerProgress<'a> {
    parent: &'a PullProgress,
    bar: Option<ProgressBar>,
    digest: String,
}

impl PullProgress {
    /// Starts tracking a pull of `total_bytes` across layers.
    pub(crate) fn new(reference: &str, total_bytes: u64) -> Self {
        let multi = std::io::stderr().is_terminal().then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(total_bytes));
            overall.set_style(bar_style(
                "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            ));
            overall.set_message("total");
            (multi, overall)
        });
        PullProgress {
            reference: reference.to_string(),
            multi,
            pulled_layers: AtomicU64::new(0),
            pulled_bytes: AtomicU64::new(0),
            cached_layers: AtomicU64::new(0),
        }
    }

    /// A layer that was already in the cache (verified).
    pub(crate) fn cached(&self, size: u64) {
        self.cached_layers.fetch_add(1, Ordering::Relaxed);
        if let Some((_, overall)) = &self.multi {
            overall.inc(size);
        }
    }

    /// Starts a layer download.
    pub(crate) fn layer(&self, digest: &str, size: u64) -> LayerProgress<'_> {
        let bar = self.multi.as_ref().map(|(multi, _)| {
            let bar = multi.add(ProgressBar::new(size));
            bar.set_style(bar_style("{msg:>12} [{bar:30}] {bytes}/{total_bytes}"));
            bar.set_message(short(digest).to_string());
            bar
        });
        LayerProgress {
            parent: self,
            bar,
            digest: digest.to_string(),
        }
    }

    /// Clears bars and logs a summary.
    pub(crate) fn finish(&self) {
        if let Some((multi, overall)) = &self.multi {
            overall.finish_and_clear();
            let _ = multi.clear();
        }
        info!(
            reference = %self.reference,
            pulled_layers = self.pulled_layers.load(Ordering::Relaxed),
            pulled_bytes = self.pulled_bytes.load(Ordering::Relaxed),
            cached_layers = self.cached_layers.load(Ordering::Relaxed),
            "pull complete"
        );
    }
}

impl LayerProgress<'_> {
    /// Bytes received.
    pub(crate) fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
        if let Some((_, overall)) = &self.parent.multi {
            overall.inc(n);
        }
    }

    /// The layer is downloaded and verified.
    pub(crate) fn done(self, size: u64) {
        self.parent.pulled_layers.fetch_add(1, Ordering::Relaxed);
        self.parent.pulled_bytes.fetch_add(size, Ordering::Relaxed);
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            None => {
                info!(reference = %self.parent.reference, digest = %self.digest, size, "pulled layer")
            }
        }
    }
}

fn bar_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}
