//! wsgate: a horizontally scaled Socket.IO gateway, wire-compatible with the socket.io
//! Redis adapter and emitter. See `ARCHITECTURE.md` for the map.
#![forbid(unsafe_code)]

pub mod access;
pub mod auth;
pub mod authz;
pub mod backplane;
pub mod bench;
pub mod clock;
pub mod config;
pub mod gateway;
pub mod healthcheck;
pub mod history;
pub mod hook;
pub mod http;
pub mod logs;
pub mod net;
pub mod publish;
pub mod serve;
pub mod shutdown;
pub mod telemetry;
