//! Control messages between the fleet's replicas (not part of the socket.io adapter
//! protocol, so on a channel of their own that Node servers never read):
//! `wsgate-control#/#`, JSON.
//!
//! Today one message: a revocation, `{"type":"revoke","user":"U","project":"P"|null,
//! "at_ms":<unix ms when sent>}`. `at_ms` lets each replica record how long the message
//! took to reach it.

use serde::{Deserialize, Serialize};

/// The channel every replica subscribes to for [`Control`] messages.
pub const CONTROL_CHANNEL: &str = "wsgate-control#/#";

/// A message to every replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Control {
    /// `user` lost `project` (or, when absent, whatever the permission source no longer
    /// grants): drop cached permissions and take the user's sockets out of those rooms.
    Revoke {
        /// The user id.
        user: String,
        /// The project, or `None` for every room the user may no longer see.
        #[serde(default)]
        project: Option<String>,
        /// When it was sent (Unix milliseconds), for the revoke-to-effect measurement.
        #[serde(default)]
        at_ms: Option<u64>,
    },
}

/// A control message that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("bad control message: {0}")]
pub struct ControlError(#[from] serde_json::Error);

impl Control {
    /// The JSON bytes published on [`CONTROL_CHANNEL`].
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parse a message read from [`CONTROL_CHANNEL`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ControlError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoke_round_trips_and_project_is_optional() {
        let c = Control::Revoke {
            user: "u".into(),
            project: Some("p".into()),
            at_ms: Some(5),
        };
        assert_eq!(
            String::from_utf8(c.encode()).unwrap(),
            r#"{"type":"revoke","user":"u","project":"p","at_ms":5}"#
        );
        assert_eq!(Control::decode(&c.encode()).unwrap(), c);
        let bare = Control::decode(br#"{"type":"revoke","user":"u"}"#).unwrap();
        assert_eq!(
            bare,
            Control::Revoke {
                user: "u".into(),
                project: None,
                at_ms: None
            }
        );
        assert!(Control::decode(br#"{"type":"nope"}"#).is_err());
    }
}
