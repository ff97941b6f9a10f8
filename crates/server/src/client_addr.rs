//! The client's address behind load balancers: the TCP peer, unless the peer is a trusted
//! proxy (`trusted_proxies`), in which case the address the proxies recorded in
//! `X-Forwarded-For`. It keys the failed-login limit per address and is the audit log's
//! `source`.
//!
//! Likewise `X-Forwarded-Proto` (the scheme the client used, for the token realm when the
//! balancer ends TLS) counts only from a trusted proxy: `observe` removes it from any other
//! request before a handler sees it.
//!
//! `X-Forwarded-For` is a list each proxy appends the address it received from to, so only its
//! right end can be believed: walking from the right, trusted proxies are skipped and the first
//! address that is not one is the client. Anything further left was written by the client
//! itself and is ignored. A peer that is not a trusted proxy is the client, whatever headers it
//! sends, so nobody can pick their own address to dodge the limit or to lock someone else out.

use std::net::IpAddr;

use ipnet::IpNet;

/// The networks whose connections are proxies that may name the client.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `10.0.0.0/8`, `192.0.2.7` (one address), `2001:db8::/32`.
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, String> {
        entries
            .iter()
            .map(|e| {
                let e = e.trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("trusted_proxies: {e:?} is not an address or a network"))
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    pub fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client's address for a request from `peer` carrying `headers`.
    pub fn client(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        // Every X-Forwarded-For header, in order, is one list.
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            // A hop a proxy wrote is an address (possibly with a port); anything else means
            // the list cannot be followed further: the last proxy's view stands.
            let Some(address) = parse_hop(hop) else {
                break;
            };
            client = address;
            if !self.trusts(address) {
                break;
            }
        }
        client
    }
}

/// The scheme in a trusted proxy's `X-Forwarded-Proto` (the first, the client's side, when
/// proxies chained their values): `http` or `https`, anything else ignored.
pub fn forwarded_proto(headers: &http::HeaderMap) -> Option<&'static str> {
    let value = headers.get("x-forwarded-proto")?.to_str().ok()?;
    match value
        .split(',')
        .next()?
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "https" => Some("https"),
        "http" => Some("http"),
        _ => None,
    }
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1` or `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(address) = hop.parse::<IpAddr>() {
        return Some(address);
    }
    hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>())
            .expect("valid")
    }

    fn headers(values: &[&str]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().expect("header value"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let none = TrustedProxies::default();
        let h = headers(&["203.0.113.9"]);
        assert_eq!(none.client(ip("198.51.100.1"), &h), ip("198.51.100.1"));
        let some = proxies(&["10.0.0.0/8"]);
        assert_eq!(some.client(ip("198.51.100.1"), &h), ip("198.51.100.1"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let p = proxies(&["10.0.0.0/8", "192.0.2.7"]);
        // The client forged the first entry; the proxies appended the rest.
        let h = headers(&["1.2.3.4, 203.0.113.9", "10.1.1.1"]);
        assert_eq!(p.client(ip("192.0.2.7"), &h), ip("203.0.113.9"));
        assert_eq!(
            p.client(ip("10.0.0.1"), &headers(&["[2001:db8::5]:443"])),
            ip("2001:db8::5")
        );
        assert_eq!(
            p.client(ip("10.0.0.1"), &headers(&["203.0.113.9:51000"])),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn without_a_usable_header_the_proxy_is_the_client() {
        let p = proxies(&["127.0.0.1"]);
        assert_eq!(p.client(ip("127.0.0.1"), &headers(&[])), ip("127.0.0.1"));
        assert_eq!(
            p.client(ip("127.0.0.1"), &headers(&["unknown"])),
            ip("127.0.0.1")
        );
        // Everything trusted: the leftmost proxy is as far as the list goes.
        assert_eq!(
            p.client(ip("127.0.0.1"), &headers(&["127.0.0.1"])),
            ip("127.0.0.1")
        );
        // IPv4-mapped peers match IPv4 networks.
        assert_eq!(
            p.client(ip("::ffff:127.0.0.1"), &headers(&["203.0.113.9"])),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn forwarded_proto_is_http_or_https() {
        let proto = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert("x-forwarded-proto", v.parse().expect("value"));
            forwarded_proto(&h)
        };
        assert_eq!(proto("https"), Some("https"));
        assert_eq!(proto("HTTPS, http"), Some("https"));
        assert_eq!(proto("http"), Some("http"));
        assert_eq!(proto("javascript"), None);
        assert_eq!(forwarded_proto(&http::HeaderMap::new()), None);
    }

    #[test]
    fn bad_entries_are_refused() {
        let bad = TrustedProxies::parse(&["10.0.0.0/33".to_string()]);
        assert!(bad.unwrap_err().contains("10.0.0.0/33"));
        assert!(TrustedProxies::parse(&["proxy.example".to_string()]).is_err());
    }
}
