//! `--trusted-proxies`: the client address from `X-Forwarded-For` / `Forwarded` header
//! lines (the input's lines; the first byte picks the header). From an untrusted peer the
//! headers never matter.
#![no_main]

use std::{net::IpAddr, sync::LazyLock};

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use wsgate::net::{TrustedProxies, forwarded::parse_list};

static TRUSTED: LazyLock<TrustedProxies> = LazyLock::new(|| {
    parse_list("10.0.0.0/8,192.168.0.0/16,::1,fd00::/8").expect("a valid list")
});

fuzz_target!(|data: &[u8]| {
    let Some((which, lines)) = data.split_first() else {
        return;
    };
    let name = if which % 2 == 0 {
        HeaderName::from_static("x-forwarded-for")
    } else {
        http::header::FORWARDED
    };
    let mut headers = HeaderMap::new();
    for line in lines.split(|b| *b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(name.clone(), v);
        }
    }
    let proxy: IpAddr = [10, 0, 0, 1].into();
    let _ = TRUSTED.client(proxy, &headers);
    let outside: IpAddr = [203, 0, 113, 5].into();
    assert_eq!(TRUSTED.client(outside, &headers), outside);
});
