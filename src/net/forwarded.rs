//! Who the client is behind trusted proxies: `--trusted-proxies` (CIDRs) and the
//! `X-Forwarded-For` / `Forwarded` (RFC 7239) headers they append to.
//!
//! A header is read only when the connection's own address (the TCP peer, or the source a
//! PROXY protocol header gave) is trusted; otherwise anyone could name any address. Each
//! proxy appends the address it received the request from, so the hops are read from the
//! right: the first one that is not a trusted proxy is the client. When every hop is
//! trusted, the left-most is. A hop that is not an address (`unknown`, an obfuscated
//! `_name`, garbage) ends the walk at the trusted proxy that wrote it: those clients are
//! counted under that proxy's address, never under one they chose. `Forwarded` wins over
//! `X-Forwarded-For` when a request has both (a proxy that writes the standard header is
//! the newer one). Nothing here allocates.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::{HeaderMap, header::FORWARDED};
use ipnet::IpNet;

/// `X-Forwarded-For`.
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The proxies whose forwarding headers are believed (`--trusted-proxies`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// From CIDRs; a bare address is a single host.
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    /// No proxy is trusted: the connection's address is the client.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is a trusted proxy (an IPv4-mapped IPv6 address as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address of a request that came from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return canonical(peer);
        }
        if headers.contains_key(FORWARDED) {
            let hops = headers
                .get_all(FORWARDED)
                .iter()
                .rev()
                .flat_map(|v| v.as_bytes().rsplit(|b| *b == b','))
                .map(forwarded_for);
            self.walk(peer, hops)
        } else {
            let hops = headers
                .get_all(X_FORWARDED_FOR)
                .iter()
                .rev()
                .flat_map(|v| v.as_bytes().rsplit(|b| *b == b','))
                .map(parse_node);
            self.walk(peer, hops)
        }
    }

    /// From the nearest hop: the first untrusted address, or the last address read.
    fn walk(&self, peer: IpAddr, hops: impl Iterator<Item = Option<IpAddr>>) -> IpAddr {
        let mut client = canonical(peer);
        for hop in hops {
            let Some(ip) = hop else {
                break;
            };
            client = canonical(ip);
            if !self.contains(client) {
                break;
            }
        }
        client
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, a dual-stack listener's view of an IPv4
/// client) as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The `for=` node of one `Forwarded` element (`for=192.0.2.1;proto=https`), if it is an
/// address; `None` when the element has no `for` or it is not an address.
fn forwarded_for(element: &[u8]) -> Option<IpAddr> {
    element.split(|b| *b == b';').find_map(|pair| {
        let pair = trim(pair);
        let (key, value) = split_once(pair, b'=')?;
        key.eq_ignore_ascii_case(b"for")
            .then(|| parse_node(value))?
    })
}

/// A node as proxies write it: `192.0.2.1`, `192.0.2.1:8080`, `2001:db8::1`,
/// `[2001:db8::1]:8080`, any of them in double quotes; `None` for anything else.
pub fn parse_node(node: &[u8]) -> Option<IpAddr> {
    let mut node = trim(node);
    if let [b'"', inner @ .., b'"'] = node {
        node = inner;
    }
    let text = std::str::from_utf8(node).ok()?;
    if let Some(rest) = text.strip_prefix('[') {
        let (addr, _port) = rest.split_once(']')?;
        return addr.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    // `a.b.c.d:port`
    let (addr, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    addr.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

fn trim(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

fn split_once(b: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|c| *c == sep)?;
    Some((&b[..i], &b[i + 1..]))
}

/// Parse `--trusted-proxies`: comma-separated CIDRs or addresses.
pub fn parse_list(s: &str) -> Result<TrustedProxies, String> {
    let mut nets = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let net = match item.parse::<IpNet>() {
            Ok(net) => net.trunc(),
            Err(_) => item.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
                format!("{item:?} is not an address or a CIDR (e.g. 10.0.0.0/8, ::1)")
            })?,
        };
        nets.push(net);
    }
    Ok(TrustedProxies(nets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn proxies() -> TrustedProxies {
        parse_list("10.0.0.0/8, 192.168.1.1,::1").unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
        assert_eq!(proxies().client(ip("203.0.113.9"), &h), ip("203.0.113.9"));
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.1"), &h),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let p = proxies();
        // A client that sends its own XFF cannot choose: the proxies append to it.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.1.1.1")]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("1.2.3.4"));
        // Several header lines are one list, in order.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "1.2.3.4:5555, 192.168.1.1"),
        ]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("1.2.3.4"));
        // All trusted: the left-most.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("10.9.9.9"));
        // No header: the proxy itself.
        assert_eq!(p.client(ip("10.0.0.2"), &HeaderMap::new()), ip("10.0.0.2"));
    }

    #[test]
    fn a_hop_that_is_not_an_address_stops_at_the_proxy_that_wrote_it() {
        let p = proxies();
        let h = headers(&[("x-forwarded-for", "1.2.3.4, garbage, 10.1.1.1")]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("10.1.1.1"));
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("10.0.0.2"));
    }

    #[test]
    fn forwarded_is_read_and_wins() {
        let p = proxies();
        let h = headers(&[
            ("x-forwarded-for", "9.9.9.9"),
            (
                "forwarded",
                "for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https, For=10.1.1.1;by=x",
            ),
        ]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("2001:db8:cafe::17"));
        let h = headers(&[("forwarded", "proto=https;for=192.0.2.60:80")]);
        assert_eq!(p.client(ip("::1"), &h), ip("192.0.2.60"));
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        let p = proxies();
        assert!(p.contains(ip("::ffff:10.2.3.4")));
        let h = headers(&[("x-forwarded-for", "::ffff:1.2.3.4")]);
        assert_eq!(p.client(ip("::ffff:10.0.0.1"), &h), ip("1.2.3.4"));
    }

    #[test]
    fn nodes_in_every_written_form() {
        for (s, want) in [
            ("1.2.3.4", Some("1.2.3.4")),
            (" 1.2.3.4:80 ", Some("1.2.3.4")),
            ("\"[::1]:80\"", Some("::1")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("1.2.3.4:99999", None),
            ("unknown", None),
            ("_hidden", None),
            ("", None),
            ("\"", None),
        ] {
            assert_eq!(parse_node(s.as_bytes()), want.map(ip), "{s:?}");
        }
    }

    #[test]
    fn the_list_is_checked() {
        assert!(parse_list("10.0.0.0/8,fd00::/8,127.0.0.1").is_ok());
        assert!(parse_list("").unwrap().is_empty());
        let e = parse_list("10.0.0.0/33").unwrap_err();
        assert!(e.contains("10.0.0.0/33"), "{e}");
        assert!(parse_list("proxy.local").is_err());
        // Host bits are dropped, as the operator meant the network.
        assert!(parse_list("10.1.2.3/8").unwrap().contains(ip("10.200.0.1")));
    }
}
