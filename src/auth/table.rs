//! A static token table: the demo default, or a file of `token -> user id`.

use std::{collections::HashMap, path::Path, sync::Arc};

use sha2::{Digest, Sha256};

use super::{AuthError, Authenticator, Credentials, Identity, LoadError};

/// Tokens are stored and looked up by their SHA-256 digest, so the lookup's timing depends
/// on the digest of the offered token, never on how many leading bytes of a real token it
/// shares; the final comparison is constant time as well.
#[derive(Debug, Clone)]
pub struct TokenTable {
    by_digest: HashMap<[u8; 32], (Arc<str>, [u8; 32])>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl TokenTable {
    /// Build a table from `token -> user id` pairs.
    pub fn new<I, T, U>(entries: I) -> Self
    where
        I: IntoIterator<Item = (T, U)>,
        T: AsRef<str>,
        U: AsRef<str>,
    {
        let by_digest = entries
            .into_iter()
            .map(|(t, u)| {
                let d = digest(t.as_ref());
                (d, (Arc::from(u.as_ref()), d))
            })
            .collect();
        Self { by_digest }
    }

    /// The demo tokens (docs/client-contract.md), so that the gateway runs with no configuration.
    pub fn demo() -> Self {
        Self::new([
            ("valid-token-1", "user_1"),
            ("valid-token-2", "user_2"),
            ("valid-token-3", "user_3"),
        ])
    }

    /// Load a JSON (`{"token": "user"}`) or TOML (`token = "user"`) file.
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        let map: HashMap<String, String> = super::load_map(
            "--tokens / WSGATE_TOKENS",
            path,
            "a JSON object or TOML table mapping token -> user id (strings)",
        )?;
        Ok(Self::new(map))
    }

    fn lookup(&self, token: &str) -> Option<&Arc<str>> {
        use subtle::ConstantTimeEq;
        let d = digest(token);
        let (user, stored) = self.by_digest.get(&d)?;
        bool::from(stored.ct_eq(&d)).then_some(user)
    }
}

impl Authenticator for TokenTable {
    fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Identity, AuthError> {
        let mut offered = false;
        for token in credentials.tokens() {
            offered = true;
            if let Some(user) = self.lookup(token) {
                return Ok(Identity::new(user.clone()));
            }
        }
        Err(if offered {
            AuthError::Unknown
        } else {
            AuthError::Missing
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn demo_tokens_resolve_and_others_do_not() {
        let table = TokenTable::demo();
        let auth = json!({"token": "valid-token-2"});
        let creds = Credentials {
            header: None,
            auth: Some(&auth),
        };
        assert_eq!(&*table.authenticate(&creds).unwrap().user_id, "user_2");
        let creds = Credentials {
            header: Some("Bearer nope"),
            auth: None,
        };
        assert_eq!(table.authenticate(&creds), Err(AuthError::Unknown));
        assert_eq!(
            table.authenticate(&Credentials::default()),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn files_in_json_and_toml() {
        let dir = std::env::temp_dir().join(format!("wsgate-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let j = dir.join("t.json");
        std::fs::write(&j, r#"{"tok-a": "alice"}"#).unwrap();
        let t = dir.join("t.toml");
        std::fs::write(&t, "tok-b = \"bob\"\n").unwrap();
        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"{"tok": 5}"#).unwrap();
        let header = |h| Credentials {
            header: Some(h),
            auth: None,
        };
        let a = TokenTable::from_file(&j).unwrap();
        assert_eq!(&*a.authenticate(&header("tok-a")).unwrap().user_id, "alice");
        let b = TokenTable::from_file(&t).unwrap();
        assert_eq!(&*b.authenticate(&header("tok-b")).unwrap().user_id, "bob");
        let err = TokenTable::from_file(&bad).unwrap_err().to_string();
        assert!(err.contains("--tokens"), "{err}");
        assert!(TokenTable::from_file(&dir.join("missing.json")).is_err());
    }
}
