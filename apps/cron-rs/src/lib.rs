//! Test guest for lepton's cron trigger: a component exporting the spin-trigger-cron plugin's
//! `handle-cron-event` (package `fermyon:spin-cron@2.0.0`), bound from the plugin's WIT with the
//! wit-bindgen spin-sdk 5.2 uses, as the plugin's `spin-cron-sdk` does.
//!
//! Each run prints `<tag> start <timestamp>` and `<tag> end <timestamp>` to stdout (lepton
//! appends it to `<state_dir>/logs/<component>_stdout.txt`, where a test counts runs). Component
//! variables:
//! - `tag`: which version of the app ran (default `-`);
//! - `sleep_ms` (default `0`): sleep this long between the two lines, so a run can outlast the
//!   schedule's period;
//! - `fail` (`true`): return an error instead.

mod bindings {
    spin_sdk::wit_bindgen::generate!({
        world: "spin-cron",
        path: "wit",
        runtime_path: "::spin_sdk::wit_bindgen::rt",
    });
}

use bindings::fermyon::spin_cron::cron_types::{Error, Metadata};
use spin_sdk::variables;

struct Cron;

impl bindings::Guest for Cron {
    fn handle_cron_event(metadata: Metadata) -> Result<(), Error> {
        if variables::get("fail").is_ok_and(|v| v == "true") {
            eprintln!("run {} failing on purpose", metadata.timestamp);
            return Err(Error::Other("asked to fail".into()));
        }
        let sleep_ms: u64 = variables::get("sleep_ms")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let tag = variables::get("tag").unwrap_or_else(|_| "-".into());
        println!("{tag} start {}", metadata.timestamp);
        if sleep_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(sleep_ms));
        }
        println!("{tag} end {}", metadata.timestamp);
        Ok(())
    }
}

bindings::export!(Cron with_types_in bindings);
