//! Who the client is (R1, R6, R3): the TCP peer, unless the peer is a proxy this server
//! trusts (`LW_TRUSTED_PROXIES`); then `X-Forwarded-For`, read from the right past the
//! trusted hops. A header sent by an untrusted peer is ignored, so a client cannot choose
//! the address recorded for it.

use crate::state::AppState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// Parses `LW_TRUSTED_PROXIES`: CIDRs or single addresses, separated by commas.
pub fn parse_trusted(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("`{s}` is neither a CIDR nor an IP address"))
        })
        .collect()
}

/// The client's address: `peer`, or — when `peer` is trusted — the rightmost address of
/// `forwarded` (the `X-Forwarded-For` values in order) that is not itself a trusted proxy.
/// When every hop is trusted, the leftmost; a hop that is no address ends the walk at the
/// last trusted hop before it.
pub fn client_ip(peer: IpAddr, forwarded: &[&str], trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops = forwarded
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>().map(|ip| ip.to_canonical()) else {
            return client;
        };
        client = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    client
}

/// The client's address, as [`client_ip`] finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let forwarded: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        Ok(ClientIp(client_ip(peer, &forwarded, &app.trusted_proxies)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = parse_trusted("10.0.0.0/8").expect("valid");
        assert_eq!(
            client_ip(ip("203.0.113.5"), &["198.51.100.1"], &trusted),
            ip("203.0.113.5")
        );
        assert_eq!(
            client_ip(ip("127.0.0.1"), &["1.2.3.4"], &[]),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn a_trusted_chain_is_walked_from_the_right() {
        let trusted = parse_trusted("10.0.0.0/8, 192.168.1.1").expect("valid");
        // The client wrote a spoofed first hop; the proxies appended the real ones.
        assert_eq!(
            client_ip(
                ip("10.0.0.1"),
                &["6.6.6.6, 203.0.113.9, 192.168.1.1"],
                &trusted
            ),
            ip("203.0.113.9")
        );
        // Several header lines are one list.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &["6.6.6.6", "203.0.113.9"], &trusted),
            ip("203.0.113.9")
        );
        // Every hop trusted: the leftmost. No header: the proxy itself.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &["10.1.1.1, 10.2.2.2"], &trusted),
            ip("10.1.1.1")
        );
        assert_eq!(client_ip(ip("10.0.0.1"), &[], &trusted), ip("10.0.0.1"));
    }

    #[test]
    fn a_malformed_hop_ends_the_walk_and_mapped_addresses_are_ipv4() {
        let trusted = parse_trusted("10.0.0.0/8").expect("valid");
        assert_eq!(
            client_ip(
                ip("10.0.0.1"),
                &["203.0.113.9, garbage, 10.0.0.7"],
                &trusted
            ),
            ip("10.0.0.7")
        );
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), &["::ffff:203.0.113.9"], &trusted),
            ip("203.0.113.9")
        );
        let v6 = parse_trusted("2001:db8::/32").expect("valid");
        assert_eq!(
            client_ip(ip("2001:db8::1"), &["2001:db9::5"], &v6),
            ip("2001:db9::5")
        );
    }

    #[test]
    fn the_setting_names_what_it_cannot_read() {
        assert_eq!(parse_trusted("").expect("empty"), vec![]);
        let err = parse_trusted("10.0.0.0/8, nope").expect_err("refused");
        assert!(err.contains("nope"), "{err}");
        assert!(parse_trusted("10.0.0.0/33").is_err());
    }
}
