//! Client events: one file per event the client sends (`message`, `join_project`,
//! `leave_project`, `auth_refresh`), payload validation with zod's issue shapes
//! (`validate`), and every error a client can see with the one mapping to the client
//! contract (`error`).

pub mod auth_refresh;
pub mod error;
pub mod join_project;
pub mod leave_project;
pub mod message;
pub mod validate;
