//! `wsgate token`: mint a demo HS256 JWT for local testing (the gateway must run with
//! `--auth jwt --jwt-secret` set to the same secret).

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Map, Value, json};

use crate::config::TokenConfig;

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The secret is empty.
    #[error("--secret / WSGATE_JWT_SECRET: the secret is empty")]
    EmptySecret,
    /// Signing failed.
    #[error("cannot sign: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// The claims of a demo token for `user`, valid from now for `ttl`.
pub fn claims(user: &str, projects: &[String], ttl: Duration) -> Map<String, Value> {
    let now = jsonwebtoken::get_current_timestamp();
    let mut c = Map::new();
    c.insert("sub".into(), user.into());
    c.insert("iat".into(), now.into());
    c.insert("exp".into(), (now + ttl.as_secs()).into());
    if !projects.is_empty() {
        c.insert("projects".into(), json!(projects));
    }
    c
}

/// Sign `claims` with HS256 and `secret`.
pub fn sign_hs256(secret: &str, claims: &Map<String, Value>) -> Result<String, MintError> {
    if secret.is_empty() {
        return Err(MintError::EmptySecret);
    }
    Ok(encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// Print a token for the settings on stdout.
pub fn run(cfg: &TokenConfig) -> Result<(), MintError> {
    let mut c = claims(&cfg.user, &cfg.projects, cfg.ttl);
    if let Some(iss) = &cfg.issuer {
        c.insert("iss".into(), iss.as_str().into());
    }
    if let Some(aud) = &cfg.audience {
        c.insert("aud".into(), aud.as_str().into());
    }
    println!("{}", sign_hs256(&cfg.secret, &c)?);
    Ok(())
}
