//! Client events: one file per event the client sends (`message`, `join_project`,
//! `leave_project`, `auth_refresh`), payload validation with zod's issue shapes
//! (`validate`), and every error a client can see with the one mapping to the client
//! contract (`error`).

pub(crate) mod auth_refresh;
pub(crate) mod error;
pub(crate) mod join_project;
pub(crate) mod leave_project;
pub(crate) mod message;
pub(crate) mod validate;
