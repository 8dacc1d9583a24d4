//! JWT authentication (`jsonwebtoken`): a shared secret (HS256/384/512), a PEM public key
//! (RS*/PS*/ES256/ES384/EdDSA), or a JWKS file chosen by `kid` and reloaded when the file
//! changes or on SIGHUP.
//!
//! Every check happens locally: no call to an identity provider per handshake. Each refusal
//! has its own [`AuthError`] (logged and counted by the gateway, never told to the client).

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind, jwk::JwkSet};
use serde_json::{Map, Value};

use super::{AuthError, Authenticator, Credentials, Identity, LoadError};

/// Longest token accepted: anything longer is refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Where the verification keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A shared secret (HS256/384/512).
    Secret(String),
    /// A PEM public key file (RSA, EC P-256 / P-384 or Ed25519).
    PublicKey(PathBuf),
    /// A JWKS file (`{"keys": [...]}`), keys chosen by the token's `kid`.
    Jwks(PathBuf),
}

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// The keys.
    pub keys: KeySource,
    /// Accepted algorithms; empty means the ones the key type allows.
    pub algorithms: Vec<String>,
    /// Accepted issuers (`iss` required when not empty).
    pub issuers: Vec<String>,
    /// Accepted audiences (`aud` required when not empty).
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// The claim holding the user id.
    pub user_claim: String,
    /// The claim holding the list of project ids (for the claim permission source).
    pub projects_claim: String,
    /// Accept a numeric user claim as the user id (its JSON text); refused by default.
    pub numeric_sub: bool,
}

/// The keys in force: one static key, or the JWKS keys by `kid`.
#[derive(Default)]
struct Keys {
    single: Option<DecodingKey>,
    by_kid: HashMap<String, (DecodingKey, Option<Algorithm>)>,
}

/// Verifies JWTs from the handshake (header first, then `auth.token`).
pub struct JwtAuthenticator {
    settings: JwtSettings,
    algorithms: Vec<Algorithm>,
    keys: RwLock<Arc<Keys>>,
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

const SETTING_ALGS: &str = "--jwt-algorithms / WSGATE_JWT_ALGORITHMS";

fn key_error(setting: &'static str, reason: impl Into<String>) -> LoadError {
    LoadError::Key {
        setting,
        reason: reason.into(),
    }
}

/// Load a PEM public key and the algorithms its type allows.
fn load_pem(path: &Path) -> Result<(DecodingKey, Vec<Algorithm>), LoadError> {
    use Algorithm::*;
    let pem = std::fs::read(path).map_err(|source| LoadError::Read {
        setting: "--jwt-public-key / WSGATE_JWT_PUBLIC_KEY",
        path: path.display().to_string(),
        source,
    })?;
    let text = String::from_utf8_lossy(&pem);
    // The key type decides the family; the algorithms list narrows it.
    if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((k, vec![RS256, RS384, RS512, PS256, PS384, PS512]));
    }
    if let Ok(k) = DecodingKey::from_ed_pem(&pem) {
        return Ok((k, vec![EdDSA]));
    }
    if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
        return Ok((k, vec![ES256, ES384]));
    }
    let first = text.lines().next().unwrap_or_default().to_owned();
    Err(key_error(
        "--jwt-public-key / WSGATE_JWT_PUBLIC_KEY",
        format!(
            "{} is not a PEM RSA, EC (P-256/P-384) or Ed25519 public key (starts with {first:?})",
            path.display()
        ),
    ))
}

/// Load a JWKS file: every usable key by `kid`.
fn load_jwks(path: &Path) -> Result<Keys, LoadError> {
    let setting = "--jwt-jwks / WSGATE_JWT_JWKS";
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        setting,
        path: path.display().to_string(),
        source,
    })?;
    let set: JwkSet = serde_json::from_str(&text).map_err(|e| LoadError::Format {
        setting,
        path: path.display().to_string(),
        expected: "a JWKS document ({\"keys\": [...]})",
        reason: e.to_string(),
    })?;
    let mut by_kid = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            return Err(key_error(setting, "every key of the JWKS needs a \"kid\""));
        };
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| key_error(setting, format!("key {kid:?} is unusable: {e}")))?;
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| Algorithm::from_str(&a.to_string()).ok());
        by_kid.insert(kid, (key, alg));
    }
    Ok(Keys {
        single: None,
        by_kid,
    })
}

impl JwtAuthenticator {
    /// Load the keys and check the settings; every error names its setting.
    pub fn new(settings: JwtSettings) -> Result<Self, LoadError> {
        use Algorithm::*;
        let (keys, allowed) = match &settings.keys {
            KeySource::Secret(s) if s.is_empty() => {
                return Err(key_error(
                    "--jwt-secret / WSGATE_JWT_SECRET",
                    "the secret is empty",
                ));
            }
            KeySource::Secret(s) => (
                Keys {
                    single: Some(DecodingKey::from_secret(s.as_bytes())),
                    by_kid: HashMap::new(),
                },
                vec![HS256, HS384, HS512],
            ),
            KeySource::PublicKey(p) => {
                let (k, algs) = load_pem(p)?;
                (
                    Keys {
                        single: Some(k),
                        by_kid: HashMap::new(),
                    },
                    algs,
                )
            }
            KeySource::Jwks(p) => (
                load_jwks(p)?,
                vec![
                    HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384,
                    EdDSA,
                ],
            ),
        };
        let algorithms = if settings.algorithms.is_empty() {
            allowed
        } else {
            let mut out = Vec::new();
            for name in &settings.algorithms {
                let alg = Algorithm::from_str(name.trim())
                    .map_err(|_| key_error(SETTING_ALGS, format!("unknown algorithm {name:?}")))?;
                if !allowed.contains(&alg) {
                    return Err(key_error(
                        SETTING_ALGS,
                        format!("{name} does not fit the configured key (allowed: {allowed:?})"),
                    ));
                }
                out.push(alg);
            }
            out
        };
        if settings.user_claim.is_empty() {
            return Err(key_error(
                "--jwt-user-claim / WSGATE_JWT_USER_CLAIM",
                "empty claim name",
            ));
        }
        Ok(Self {
            settings,
            algorithms,
            keys: RwLock::new(Arc::new(keys)),
        })
    }

    /// The JWKS file, when the keys come from one (what [`Self::reload`] reads).
    pub fn jwks_path(&self) -> Option<&Path> {
        match &self.settings.keys {
            KeySource::Jwks(p) => Some(p),
            _ => None,
        }
    }

    /// Read the JWKS file again; on failure the keys in force stay. Returns the kids.
    pub fn reload(&self) -> Result<Vec<String>, LoadError> {
        let Some(path) = self.jwks_path() else {
            return Ok(Vec::new());
        };
        let keys = load_jwks(path)?;
        let mut kids: Vec<String> = keys.by_kid.keys().cloned().collect();
        kids.sort();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(kids)
    }

    /// Watch the JWKS file: reload when its modification time changes (checked every
    /// `every`) or on SIGHUP, with one log line per reload. Does nothing without a JWKS.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let Some(path) = self.jwks_path().map(Path::to_path_buf) else {
            return;
        };
        let this = self.clone();
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        // The version loaded at start-up: only a later change triggers a reload.
        let mut seen: Option<SystemTime> = mtime(&path);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate; the first check is one interval from now.
            tick.tick().await;
            #[cfg(unix)]
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                #[cfg(unix)]
                let hangup = async {
                    match hup.as_mut() {
                        Some(s) => s.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let hangup = std::future::pending::<Option<()>>();
                let why = tokio::select! {
                    _ = tick.tick() => {
                        let now = mtime(&path);
                        if now == seen { continue; }
                        seen = now;
                        "file changed"
                    }
                    _ = hangup => "SIGHUP",
                };
                match this.reload() {
                    Ok(kids) => {
                        tracing::info!(path = %path.display(), trigger = why, ?kids, "JWKS reloaded")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, trigger = why, "JWKS reload failed; keeping the keys in force")
                    }
                }
            }
        });
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.settings.leeway.as_secs();
        v.validate_nbf = true;
        let mut required = vec!["exp"];
        if self.settings.issuers.is_empty() {
            v.iss = None;
        } else {
            v.set_issuer(&self.settings.issuers);
            required.push("iss");
        }
        if self.settings.audiences.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.settings.audiences);
            required.push("aud");
        }
        v.set_required_spec_claims(&required);
        v
    }

    /// Verify one token and turn its claims into an identity.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLong);
        }
        let header = token.split('.').next().unwrap_or_default();
        if token.split('.').count() != 3 {
            return Err(AuthError::Malformed);
        }
        let header: Map<String, Value> = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header.trim_end_matches('='))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(AuthError::Malformed)?;
        let alg_name = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(AuthError::Malformed)?;
        if alg_name.eq_ignore_ascii_case("none") {
            return Err(AuthError::AlgNone);
        }
        let alg = Algorithm::from_str(alg_name).map_err(|_| AuthError::AlgNotAllowed)?;
        if !self.algorithms.contains(&alg) {
            return Err(AuthError::AlgNotAllowed);
        }
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        let key = match (&keys.single, header.get("kid").and_then(Value::as_str)) {
            (Some(k), _) => k,
            (None, Some(kid)) => match keys.by_kid.get(kid) {
                Some((_, Some(key_alg))) if *key_alg != alg => {
                    return Err(AuthError::AlgNotAllowed);
                }
                Some((k, _)) => k,
                None => return Err(AuthError::UnknownKey),
            },
            // No kid: usable only when the set holds exactly one key.
            (None, None) if keys.by_kid.len() == 1 => match keys.by_kid.values().next() {
                Some((k, _)) => k,
                None => return Err(AuthError::UnknownKey),
            },
            (None, None) => return Err(AuthError::UnknownKey),
        };
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &self.validation(alg))
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => {
                    AuthError::BadClaim
                }
                ErrorKind::InvalidAlgorithm => AuthError::AlgNotAllowed,
                _ => AuthError::Malformed,
            })?;
        self.identity(&data.claims)
    }

    fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, AuthError> {
        let user = match claims.get(&self.settings.user_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) if self.settings.numeric_sub => n.to_string(),
            Some(Value::Number(_)) => return Err(AuthError::NumericSub),
            _ => return Err(AuthError::BadClaim),
        };
        let expires_at = claims.get("exp").and_then(Value::as_u64);
        let projects = match claims.get(&self.settings.projects_claim) {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(Arc::new(
                items
                    .iter()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect::<HashSet<_>>(),
            )),
            Some(_) => return Err(AuthError::BadClaim),
        };
        Ok(Identity {
            user_id: user.into(),
            expires_at,
            projects,
            forwarded: Default::default(),
        })
    }
}

impl Authenticator for JwtAuthenticator {
    fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Identity, AuthError> {
        let mut first_error = None;
        for token in credentials.tokens() {
            match self.verify(token) {
                Ok(id) => return Ok(id),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(AuthError::Missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    fn settings() -> JwtSettings {
        JwtSettings {
            keys: KeySource::Secret("s3cret".into()),
            algorithms: vec!["HS256".into()],
            issuers: vec!["iss-a".into()],
            audiences: vec![],
            leeway: Duration::ZERO,
            user_claim: "sub".into(),
            projects_claim: "projects".into(),
            numeric_sub: false,
        }
    }

    fn mint(alg: Algorithm, claims: Value) -> String {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap()
    }

    #[test]
    fn claims_become_an_identity_and_refusals_are_specific() {
        let a = JwtAuthenticator::new(settings()).unwrap();
        let exp = jsonwebtoken::get_current_timestamp() + 60;
        let ok = mint(
            Algorithm::HS256,
            json!({"sub": "alice", "exp": exp, "iss": "iss-a", "projects": ["p1"]}),
        );
        let id = a.verify(&ok).unwrap();
        assert_eq!(&*id.user_id, "alice");
        assert_eq!(id.expires_at, Some(exp));
        assert!(id.projects.unwrap().contains("p1"));
        let hs384 = mint(
            Algorithm::HS384,
            json!({"sub": "a", "exp": exp, "iss": "iss-a"}),
        );
        assert_eq!(a.verify(&hs384), Err(AuthError::AlgNotAllowed));
        let wrong_iss = mint(
            Algorithm::HS256,
            json!({"sub": "a", "exp": exp, "iss": "other"}),
        );
        assert_eq!(a.verify(&wrong_iss), Err(AuthError::WrongIssuer));
        let no_user = mint(Algorithm::HS256, json!({"exp": exp, "iss": "iss-a"}));
        assert_eq!(a.verify(&no_user), Err(AuthError::BadClaim));
        assert_eq!(a.verify("a.b"), Err(AuthError::Malformed));
        assert_eq!(
            a.verify(&"x".repeat(MAX_TOKEN_BYTES + 1)),
            Err(AuthError::TooLong)
        );
    }

    #[test]
    fn a_numeric_user_claim_is_refused_unless_allowed() {
        let exp = jsonwebtoken::get_current_timestamp() + 60;
        let numeric = mint(
            Algorithm::HS256,
            json!({"sub": 42, "exp": exp, "iss": "iss-a"}),
        );
        let strict = JwtAuthenticator::new(settings()).unwrap();
        assert_eq!(strict.verify(&numeric), Err(AuthError::NumericSub));
        let mut s = settings();
        s.numeric_sub = true;
        let lenient = JwtAuthenticator::new(s).unwrap();
        assert_eq!(&*lenient.verify(&numeric).unwrap().user_id, "42");
    }

    #[test]
    fn settings_errors_name_the_setting() {
        let mut s = settings();
        s.algorithms = vec!["RS256".into()];
        let e = JwtAuthenticator::new(s).unwrap_err().to_string();
        assert!(e.contains("--jwt-algorithms"), "{e}");
        let mut s = settings();
        s.keys = KeySource::Secret(String::new());
        let e = JwtAuthenticator::new(s).unwrap_err().to_string();
        assert!(e.contains("--jwt-secret"), "{e}");
    }
}
