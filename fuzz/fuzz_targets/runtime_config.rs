//! `runtime-config.toml` ([`RuntimeConfig::parse`]; lepton-host's `runtime_config.rs`, compiled by
//! `lepton_fuzz`), then the parts lepton interprets further: `block_networks`
//! ([`BlockedNetworks::parse`]) and the variables providers ([`VariableResolver::new`]).
//! Checks: no panic.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use lepton_fuzz::policy::BlockedNetworks;
use lepton_fuzz::runtime_config::{RuntimeConfig, VariablesProviderConfig};
use lepton_fuzz::variables::VariableResolver;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/nonexistent/lepton-fuzz/runtime-config.toml");
    let Ok(config) = RuntimeConfig::parse(text, path) else {
        return;
    };
    assert_eq!(config.base_dir(), path.parent().unwrap());
    if let Some(net) = &config.outbound_networking
        && let Ok(blocked) = BlockedNetworks::parse("fuzz", &net.block_networks)
    {
        let _ = blocked.is_blocked("10.1.2.3".parse().unwrap());
        let _ = blocked.is_blocked("::ffff:192.168.0.1".parse().unwrap());
    }
    // Dotenv files are read from disk: only resolve providers that name none.
    let reads_files = config
        .variables_providers
        .iter()
        .any(|p| matches!(p, VariablesProviderConfig::Env(e) if e.dotenv_path.is_some()));
    if !reads_files {
        let _ = VariableResolver::new(&BTreeMap::new(), &BTreeMap::new(), &config);
    }
});
