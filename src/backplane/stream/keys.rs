//! Redis keys of a room's history, in the same Redis Cluster hash slot as the room's
//! pub/sub channel, so one script can XADD to the stream and PUBLISH on the channel (and
//! sharded pub/sub can use SPUBLISH on that slot).
//!
//! Redis hashes a key by its hashtag when it has one: the text between the first `{` and
//! the first `}` after it, if not empty; else by the whole key. A key `prefix{T}` with `T`
//! the channel's own effective hash text lands in the channel's slot as long as `T` has no
//! `}`. When it has one (a room name with a `}` and no valid tag before it), the key uses a
//! short stand-in tag with the same slot instead.

use std::sync::OnceLock;

/// Number of hash slots of a Redis Cluster.
const SLOTS: u16 = 16_384;

/// CRC16-CCITT (XMODEM), the checksum Redis Cluster uses for key slots.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The part of `key` Redis hashes: its hashtag if it has a non-empty one, else all of it.
fn hash_text(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// The Redis Cluster slot of `key`.
pub fn slot(key: &str) -> u16 {
    crc16(hash_text(key).as_bytes()) % SLOTS
}

/// For every slot, the shortest decimal string hashing to it (found once, ~160k CRCs).
fn stand_in_tags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        let mut tags = vec![String::new(); usize::from(SLOTS)];
        let mut missing = usize::from(SLOTS);
        let mut n: u64 = 0;
        while missing > 0 {
            let s = n.to_string();
            let t = &mut tags[usize::from(crc16(s.as_bytes()) % SLOTS)];
            if t.is_empty() {
                *t = s;
                missing -= 1;
            }
            n += 1;
        }
        tags
    })
}

/// A key named `wsgate:<kind>:...` for `channel`, in `channel`'s hash slot. Distinct
/// channels give distinct keys.
pub fn key_for(kind: &str, channel: &str) -> String {
    let text = hash_text(channel);
    if text == channel && !channel.contains('}') {
        // No tag of its own: the whole channel is the tag.
        return format!("wsgate:{kind}:{{{channel}}}");
    }
    let tag = if text.contains('}') {
        stand_in_tags()[usize::from(slot(channel))].as_str()
    } else {
        text
    };
    format!("wsgate:{kind}:{{{tag}}}:{channel}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_cluster_spec() {
        // From the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("user1000"));
        assert_eq!(slot("foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(slot("foo{{bar}}zap"), slot("{bar"));
        assert_eq!(slot("foo{bar}{zap}"), slot("bar"));
    }

    #[test]
    fn keys_share_the_channel_slot() {
        let rooms = [
            "project_one",
            "a{b}c",
            "{x}",
            "{}",
            "}",
            "a}b",
            "a{b",
            "{",
            "{}}x{y}",
            "é😀",
            "",
        ];
        for room in rooms {
            let channel = format!("socket.io#/#{room}#");
            for kind in ["stream", "meta"] {
                let key = key_for(kind, &channel);
                assert_eq!(slot(&key), slot(&channel), "{key} vs {channel}");
                assert!(key.starts_with(&format!("wsgate:{kind}:{{")));
            }
        }
        assert_eq!(
            key_for("stream", "socket.io#/#project_one#"),
            "wsgate:stream:{socket.io#/#project_one#}"
        );
        assert_ne!(
            key_for("stream", "socket.io#/#{x}a#"),
            key_for("stream", "socket.io#/#{x}b#")
        );
    }

    #[test]
    fn every_slot_has_a_stand_in() {
        let tags = stand_in_tags();
        for (s, t) in tags.iter().enumerate() {
            assert_eq!(usize::from(slot(t)), s);
        }
    }
}
