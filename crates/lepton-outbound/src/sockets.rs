//! `wasi:sockets` under a component's policy: TCP connect and UDP traffic are checked as
//! `tcp://<ip>:<port>` / `udp://<ip>:<port>` against `allowed_outbound_hosts` (IP literals, never
//! names), then against `block_networks`; listening and accepting are always denied; name lookup
//! is allowed only if some entry could match a destination other than the app itself.
//!
//! wasmtime checks an implicit bind to the unspecified address (port 0) before every TCP connect
//! and first UDP send; only that implicit bind is permitted, so a guest cannot bind a chosen
//! address or port.

use std::net::SocketAddr;
use std::sync::Arc;

use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

use crate::policy::OutboundPolicy;

/// Configure `builder`'s socket permissions from `policy`. A deny-all policy leaves the
/// context without any network access.
pub fn configure_sockets(builder: &mut WasiCtxBuilder, policy: &Arc<OutboundPolicy>) {
    if policy.is_deny_all() {
        builder
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        return;
    }
    let policy = policy.clone();
    builder
        .allow_tcp(true)
        .allow_udp(true)
        .allow_ip_name_lookup(policy.allows_name_lookup())
        .socket_addr_check(move |addr, usage| {
            let allowed = socket_allowed(&policy, addr, usage);
            if !allowed {
                tracing::debug!(%addr, ?usage, "socket use denied by allowed_outbound_hosts");
            }
            Box::pin(async move { allowed })
        });
}

/// Whether `policy` permits `usage` of `addr`.
pub fn socket_allowed(policy: &OutboundPolicy, addr: SocketAddr, usage: SocketAddrUse) -> bool {
    match usage {
        SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => {
            addr.ip().is_unspecified() && addr.port() == 0
        }
        SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => false,
        SocketAddrUse::TcpConnect => policy.allows_socket("tcp", addr),
        SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => policy.allows_socket("udp", addr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::BlockedNetworks;

    #[test]
    fn socket_uses() {
        let policy =
            OutboundPolicy::from_entries(&["tcp://127.0.0.1:6000", "udp://*:53"]).expect("entries");
        let a = |s: &str| s.parse::<SocketAddr>().expect("addr");
        assert!(socket_allowed(
            &policy,
            a("127.0.0.1:6000"),
            SocketAddrUse::TcpConnect
        ));
        assert!(!socket_allowed(
            &policy,
            a("127.0.0.1:6001"),
            SocketAddrUse::TcpConnect
        ));
        assert!(!socket_allowed(
            &policy,
            a("127.0.0.1:6000"),
            SocketAddrUse::UdpSend
        ));
        assert!(socket_allowed(
            &policy,
            a("10.0.0.1:53"),
            SocketAddrUse::UdpSend
        ));
        assert!(socket_allowed(
            &policy,
            a("10.0.0.1:53"),
            SocketAddrUse::UdpReceive
        ));
        assert!(
            socket_allowed(&policy, a("0.0.0.0:0"), SocketAddrUse::TcpBind),
            "implicit bind"
        );
        assert!(
            socket_allowed(&policy, a("[::]:0"), SocketAddrUse::UdpBind),
            "implicit bind"
        );
        assert!(!socket_allowed(
            &policy,
            a("127.0.0.1:6000"),
            SocketAddrUse::TcpBind
        ));
        assert!(!socket_allowed(
            &policy,
            a("0.0.0.0:8080"),
            SocketAddrUse::TcpBind
        ));
        assert!(!socket_allowed(
            &policy,
            a("0.0.0.0:0"),
            SocketAddrUse::TcpListen
        ));
        assert!(!socket_allowed(
            &policy,
            a("127.0.0.1:6000"),
            SocketAddrUse::TcpAccept
        ));

        let blocked =
            policy.with_blocked_networks(BlockedNetworks::parse("a", &["private"]).expect("b"));
        assert!(!socket_allowed(
            &blocked,
            a("10.0.0.1:53"),
            SocketAddrUse::UdpSend
        ));
        assert!(socket_allowed(
            &blocked,
            a("8.8.8.8:53"),
            SocketAddrUse::UdpSend
        ));
    }
}
