//! `--proxy-protocol`: the PROXY protocol header (HAProxy's spec, v1 text or v2 binary)
//! that a TCP load balancer (AWS NLB, haproxy `send-proxy`, ingress-nginx
//! `use-proxy-protocol`) writes before the client's bytes, read from connections of
//! `--trusted-proxies` only. Parsing is the `ppp` crate's; this file reads just enough
//! bytes, bounds the header, and keeps what came after it for hyper.

use std::net::{IpAddr, SocketAddr};

use ppp::{HeaderResult, PartialResult, v1, v2};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest header accepted: v1 is at most 107 bytes; v2 carries TLVs (an AWS VPC endpoint
/// id, a TLS summary), a few hundred bytes in practice.
pub const MAX_HEADER: usize = 4096;

/// Why a connection that had to start with a PROXY header did not.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyHeaderError {
    /// The bytes are not a PROXY header (v1 or v2).
    #[error("not a PROXY protocol header")]
    Invalid,
    /// Longer than [`MAX_HEADER`].
    #[error("PROXY protocol header longer than {MAX_HEADER} bytes")]
    TooLong,
    /// The connection ended before the header was complete.
    #[error("connection closed inside the PROXY protocol header")]
    Closed,
}

/// A parsed header: the client's address (`None` for `LOCAL` / `UNKNOWN`, the proxy's own
/// health checks: the connection is the proxy's) and the header's length in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The original client's address.
    pub source: Option<SocketAddr>,
    /// Bytes the header took.
    pub len: usize,
}

/// Parse a header at the start of `bytes`: `Ok(None)` when more bytes are needed.
pub fn parse(bytes: &[u8]) -> Result<Option<ProxyHeader>, ProxyHeaderError> {
    let parsed = HeaderResult::parse(bytes);
    if parsed.is_incomplete() {
        return if bytes.len() >= MAX_HEADER {
            Err(ProxyHeaderError::TooLong)
        } else {
            Ok(None)
        };
    }
    let header = match parsed {
        HeaderResult::V1(Ok(h)) => ProxyHeader {
            len: h.header.len(),
            source: match h.addresses {
                v1::Addresses::Tcp4(a) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                v1::Addresses::Tcp6(a) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                v1::Addresses::Unknown => None,
            },
        },
        HeaderResult::V2(Ok(h)) => ProxyHeader {
            len: h.header.len(),
            source: match (h.command, h.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                _ => None,
            },
        },
        HeaderResult::V1(Err(_)) | HeaderResult::V2(Err(_)) => {
            return Err(ProxyHeaderError::Invalid);
        }
    };
    if header.len > MAX_HEADER {
        return Err(ProxyHeaderError::TooLong);
    }
    Ok(Some(header))
}

/// Read a header from `io`: the header and the bytes read after it (the start of the
/// first request, for hyper). The caller bounds the time (`--header-read-timeout`).
pub async fn read(
    io: &mut (impl AsyncRead + Unpin),
) -> Result<(ProxyHeader, Vec<u8>), ProxyHeaderError> {
    let mut buf = Vec::with_capacity(256);
    loop {
        if buf.len() >= MAX_HEADER {
            return Err(ProxyHeaderError::TooLong);
        }
        // Never read past MAX_HEADER.
        let room = (MAX_HEADER - buf.len()).min(1024);
        let mut chunk = (&mut *io).take(room as u64);
        match chunk.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return Err(ProxyHeaderError::Closed),
            Ok(_) => {}
        }
        if let Some(header) = parse(&buf)? {
            let rest = buf.split_off(header.len);
            return Ok((header, rest));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(source: [u8; 4], port: u16, tlv: &[u8]) -> Vec<u8> {
        let mut b = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        b.push(0x21); // v2, PROXY
        b.push(0x11); // IPv4, stream
        b.extend_from_slice(&((12 + tlv.len()) as u16).to_be_bytes());
        b.extend_from_slice(&source);
        b.extend_from_slice(&[10, 0, 0, 1]);
        b.extend_from_slice(&port.to_be_bytes());
        b.extend_from_slice(&443u16.to_be_bytes());
        b.extend_from_slice(tlv);
        b
    }

    #[test]
    fn v1_and_v2_give_the_source() {
        let h = parse(b"PROXY TCP4 192.0.2.1 10.0.0.1 5555 80\r\nGET / HTTP/1.1\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.source, Some("192.0.2.1:5555".parse().unwrap()));
        assert_eq!(h.len, 39);
        let h = parse(b"PROXY TCP6 2001:db8::1 ::1 5555 80\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.source, Some("[2001:db8::1]:5555".parse().unwrap()));
        let h = parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap();
        assert_eq!(h.source, None);
        let mut bytes = v2([198, 51, 100, 7], 4242, &[0x04, 0, 1, 42]);
        let len = bytes.len();
        bytes.extend_from_slice(b"GET /");
        let h = parse(&bytes).unwrap().unwrap();
        assert_eq!(h.source, Some("198.51.100.7:4242".parse().unwrap()));
        assert_eq!(h.len, len);
    }

    #[test]
    fn partial_headers_wait_and_garbage_is_refused() {
        assert_eq!(parse(b"PROXY TCP4 192.0.2.1"), Ok(None));
        assert_eq!(parse(b"\r\n\r\n\0\r\nQU"), Ok(None));
        assert_eq!(parse(&v2([1, 2, 3, 4], 1, &[])[..20]), Ok(None));
        assert_eq!(
            parse(b"GET /socket.io/ HTTP/1.1\r\n"),
            Err(ProxyHeaderError::Invalid)
        );
        assert_eq!(
            parse(b"PROXY TCP4 999.0.2.1 10.0.0.1 1 2\r\n"),
            Err(ProxyHeaderError::Invalid)
        );
    }

    #[tokio::test]
    async fn reading_keeps_what_follows_the_header() {
        let mut bytes = v2([198, 51, 100, 7], 1, &[]);
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let (h, rest) = read(&mut bytes.as_slice()).await.unwrap();
        assert_eq!(
            h.source.unwrap().ip(),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(rest, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(
            read(&mut &b"PROXY TCP4 1.2.3.4"[..]).await,
            Err(ProxyHeaderError::Closed)
        );
        let long = [b'x'; 5000];
        assert!(read(&mut &long[..]).await.is_err());
    }
}
