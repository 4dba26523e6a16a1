//! `allowed_outbound_hosts` entries ([`AllowedHost::parse`], templates via [`resolve_templates`];
//! lepton-outbound's `allowed.rs` and `policy.rs`, compiled by `lepton_fuzz`) and destination URLs
//! ([`Target::from_url`]). Input: the first line is an entry, the other lines are URLs checked
//! against it. Checks: no panic; an entry allows the destination it names (exact host, its first
//! port, a name under a `*.` suffix, a CIDR's network address); a [`Target`] survives printing
//! and re-parsing.
#![no_main]

use lepton_fuzz::allowed::{AllowedHost, HostSpec, PortSpec, SchemeSpec, Target};
use lepton_fuzz::lines;
use lepton_fuzz::policy::{OutboundPolicy, resolve_templates};
use libfuzzer_sys::fuzz_target;

fn check_named_destination(entry: &str, allowed: &AllowedHost) {
    let scheme = match &allowed.scheme {
        SchemeSpec::Any => "https",
        SchemeSpec::Named(s) => s.as_str(),
    };
    let port = match allowed.port {
        PortSpec::Any => 443,
        PortSpec::Single(p) => p,
        PortSpec::Range(start, _) => start,
    };
    let host = match &allowed.host {
        HostSpec::Any => "example.com".to_string(),
        HostSpec::SelfApp => return,
        HostSpec::Exact(h) => h.clone(),
        HostSpec::Suffix(suffix) => format!("x{suffix}"),
        HostSpec::Cidr(net) => net.network().to_string(),
    };
    let target = Target::new(scheme, &host, port);
    assert!(
        allowed.allows(&target),
        "entry {entry:?} ({allowed:?}) does not allow {target}"
    );
}

fuzz_target!(|data: &[u8]| {
    let lines = lines(data);
    let entry = &lines[0];
    let resolved = resolve_templates(entry, &|name: &str| Ok(format!("v{name}")));
    let allowed = AllowedHost::parse(entry);
    if let Ok(allowed) = &allowed {
        check_named_destination(entry, allowed);
        let _ = allowed.allows_self("http");
        let _ = allowed.could_match_names();
    }
    if let Ok(resolved) = &resolved {
        let _ = AllowedHost::parse(resolved);
    }
    let policy = OutboundPolicy::from_entries(&[entry]);
    for url in &lines[1..] {
        let Some(target) = Target::from_url(url) else {
            continue;
        };
        let printed = target.to_string();
        assert_eq!(
            Target::from_url(&printed).as_ref(),
            Some(&target),
            "{url:?} → {printed:?} does not re-parse to the same target"
        );
        if let Ok(allowed) = &allowed {
            let _ = allowed.allows(&target);
        }
        if let Ok(policy) = &policy {
            let _ = policy.allows_target(&target);
        }
    }
});
