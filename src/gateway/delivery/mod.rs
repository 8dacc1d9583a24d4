//! What reaches the sockets: room reference counts and the backplane subscriptions they
//! drive (`membership`), the delivery task that applies what the backplane brings in
//! (`deliver`), socketioxide's adapter, which reports full sockets by id (`adapter`), the
//! disconnect of slow consumers (`evict`) and the recovery of missed updates: opted in per
//! room (`recover`) and Socket.IO's stock connection-state recovery (`resume`).

pub(crate) mod adapter;
pub(crate) mod deliver;
pub(crate) mod evict;
pub(crate) mod membership;
pub mod recover;
pub mod resume;
