//! Who a client is on the network and how much it may hold before any session exists:
//! its address behind trusted proxies ([`forwarded`], [`proxy_protocol`]), per-address
//! counts and handshake rate ([`per_ip`]), and the admission of Engine.IO handshakes
//! against the replica's and the address's limits ([`admission`]). The accept loop
//! (`serve/accept.rs`) applies them; README, "Hardening".

pub mod admission;
pub mod forwarded;
pub mod per_ip;
pub mod proxy_protocol;

pub use admission::{Admission, Admit, SessionPermit};
pub use forwarded::TrustedProxies;
pub use per_ip::{IpLimits, PerIp};
