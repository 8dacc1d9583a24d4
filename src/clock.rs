//! Wall-clock time as the fleet exchanges it: Unix milliseconds, comparable across
//! replicas and publishers (token `exp`, revocation stamps, publish stamps).

/// Now, in Unix milliseconds (0 before 1970, saturating far in the future).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}
