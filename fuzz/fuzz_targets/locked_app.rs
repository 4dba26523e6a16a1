//! Locked app JSON (`spin.lock`, the OCI locked-app layer): [`LockedApp::from_json`], then the
//! load-time checks an app goes through before it runs: `ensure_runnable`, variables and
//! component `config` templates (lepton-host's `variables`), and each component's outbound
//! policy (lepton-outbound's `policy`), both compiled from their crates' sources by `lepton_fuzz`.
//! Checks: no panic; the JSON form round-trips (floats up to serde_json's last-bit parsing
//! error, see `same_json`).
#![no_main]

use std::collections::BTreeMap;

use lepton_app::LockedApp;
use lepton_fuzz::policy::{OutboundPolicy, no_variables};
use lepton_fuzz::runtime_config::RuntimeConfig;
use lepton_fuzz::same_json;
use lepton_fuzz::variables::{ComponentConfig, VariableResolver};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(app) = LockedApp::from_json(data) else {
        return;
    };
    let json = app.to_json_vec().expect("serialize the LockedApp");
    let back = LockedApp::from_json(&json)
        .unwrap_or_else(|e| panic!("lepton cannot read the LockedApp it wrote: {e}"));
    let again = back.to_json_vec().expect("serialize again");
    assert!(
        same_json(&again, &json),
        "LockedApp JSON does not round-trip:\n{}\n{}",
        String::from_utf8_lossy(&json),
        String::from_utf8_lossy(&again)
    );
    let _ = app.ensure_runnable();

    let resolver =
        VariableResolver::new(&app.variables, &BTreeMap::new(), &RuntimeConfig::default());
    for c in &app.components {
        if let Ok(resolver) = &resolver {
            if let Ok(config) = ComponentConfig::new(&c.id, &c.config, resolver) {
                for key in c.config.keys() {
                    let _ = config.get(resolver, key);
                }
            }
            let vars = |name: &str| resolver.resolve(name).map_err(|e| e.to_string());
            if let Ok(policy) = OutboundPolicy::for_component("fuzz", c, &vars) {
                let _ = policy.allows_url("https://example.com");
                let _ = policy.allows_self("http");
            }
        } else {
            let _ = OutboundPolicy::for_component("fuzz", c, &no_variables);
        }
    }
});
