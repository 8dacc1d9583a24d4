//! A connection's life: the connect middleware that authenticates a handshake
//! (`connect`), the replica's connection and event-rate limits (`limits`), each user's
//! sockets and per-identity limits (`sessions`), token expiry on live sockets (`expiry`),
//! fleet-wide revocation (`revoke`), the batched transport closes after SIGTERM (`drain`),
//! and the two ways a connection is ended (`close`).

pub(crate) mod close;
pub(crate) mod connect;
pub(crate) mod drain;
pub(crate) mod expiry;
pub(crate) mod limits;
pub mod revoke;
pub(crate) mod sessions;
