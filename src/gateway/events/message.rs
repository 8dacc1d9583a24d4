//! `message`: any payload, answered with `Hello world!` (the seed gateway's echo check).

use super::{Outcome, Reply};

/// The fixed answer.
pub const HELLO: &str = "Hello world!";

/// Answer a `message` event.
pub(crate) fn handle() -> Outcome {
    Ok(Reply::Text(HELLO.into()))
}
