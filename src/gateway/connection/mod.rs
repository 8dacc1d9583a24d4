//! A connection's life: the connect middleware that authenticates a handshake
//! (`connect`), the replica's connection and event-rate limits (`limits`), each user's
//! sockets and per-identity limits (`sessions`), token expiry on live sockets (`expiry`),
//! fleet-wide revocation (`revoke`) and the batched disconnects after SIGTERM (`drain`).

pub mod connect;
pub mod drain;
pub mod expiry;
pub mod limits;
pub mod revoke;
pub mod sessions;
