//! A handshake refused before any session exists costs no allocation beyond its request
//! (issue 20; README, "Hardening"): the refusal path of `net::Admit` is measured with a
//! counting allocator, with the real metrics recorder installed (each refusal is counted).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    convert::Infallible,
    net::IpAddr,
};

use axum::{body::Body, response::Response};
use futures_util::FutureExt;
use http::{Request, StatusCode};
use tower::{Service, service_fn};
use wsgate::net::{Admission, Admit, IpLimits, PerIp, forwarded::parse_list};

/// Counts the allocations of the thread that turned counting on.
struct Counting;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; the thread-locals are
// const-initialized `Cell`s, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ON.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ON.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations<T>(f: impl FnOnce() -> T) -> (T, usize) {
    COUNT.with(|c| c.set(0));
    ON.with(|o| o.set(true));
    let out = f();
    ON.with(|o| o.set(false));
    (out, COUNT.with(Cell::get))
}

fn handshake() -> Request<Body> {
    Request::get("/socket.io/?EIO=4&transport=polling")
        .header("x-forwarded-for", "198.51.100.1")
        .body(Body::empty())
        .unwrap()
}

/// Call `svc` with `req` and return the status, with the allocations the call made.
fn refused<S>(svc: &mut Admit<S>, req: Request<Body>) -> (StatusCode, usize)
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    let (resp, n) = allocations(|| svc.call(req).now_or_never());
    let status = resp
        .expect("answered at once")
        .expect("infallible")
        .status();
    (status, n)
}

#[test]
fn a_refused_handshake_allocates_nothing() {
    let _metrics = wsgate::telemetry::install().expect("recorder");
    let inner = service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::empty()))
    });
    let proxy: IpAddr = "10.0.0.1".parse().unwrap();
    let trusted = parse_list("10.0.0.0/8").unwrap();

    // The replica is full (one session, held).
    let full = Admission::new(1, None, trusted.clone());
    let _held = full.admit(proxy, handshake().headers()).unwrap();
    let mut svc = Admit::new(inner, full, proxy);
    for _ in 0..3 {
        let (status, n) = refused(&mut svc, handshake());
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(n, 0, "allocations in a refusal for the replica's limit");
    }

    // The client's address is at its session limit, then out of handshake tokens.
    let per_ip = PerIp::new(IpLimits {
        connections: 1,
        handshakes_per_s: 2.0,
    });
    let by_ip = Admission::new(0, Some(per_ip), trusted);
    let _one = by_ip.admit(proxy, handshake().headers()).unwrap();
    let mut svc = Admit::new(inner, by_ip, proxy);
    let (status, n) = refused(&mut svc, handshake());
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(n, 0, "allocations in a refusal for sessions per IP");
    let (status, n) = refused(&mut svc, handshake());
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(n, 0, "allocations in a refusal for the handshake rate");

    // For scale: an admitted handshake allocates its permit (and the extensions map).
    let (_, admitted) = allocations(|| {
        let open = Admission::new(0, None, parse_list("").unwrap());
        let mut svc = Admit::new(inner, open, proxy);
        svc.call(handshake()).now_or_never()
    });
    assert!(admitted > 0);
}
