//! What reaches the sockets: room reference counts and the backplane subscriptions they
//! drive (`membership`), the delivery task that applies what the backplane brings in
//! (`deliver`), socketioxide's adapter, which reports full sockets by id (`adapter`), the
//! disconnect of slow consumers (`evict`) and the recovery of missed updates: opted in per
//! room (`recover`) and Socket.IO's stock connection-state recovery (`resume`); the rooms that reach one
//! socket or one user (`reach`).

pub(crate) mod adapter;
pub(crate) mod deliver;
pub(crate) mod evict;
pub(crate) mod membership;
pub(crate) mod reach;
pub mod recover;
pub mod resume;
