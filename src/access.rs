//! Start-up wiring of identity and access: which [`Authenticator`], which [`Authorizer`]
//! and which per-identity limits `wsgate serve` runs with, from its settings. Every
//! inconsistent combination stops start-up with a message naming the setting.

use std::sync::Arc;

use crate::{
    auth::{
        Authenticator, HttpAuthenticator, JwtAuthenticator, LoadError, TokenTable,
        forward::WithForwarded,
        jwt::{JwtSettings, KeySource},
    },
    authz::{
        Authorizer, ClaimPermissions, HttpPermissions, PermissionTable, RedisPermissions,
        redis::RedisPermissionsError,
    },
    backplane::connect::Connector,
    config::{AuthSource, AuthzSource, IdentityConfig, ServeConfig},
    gateway::IdentityLimits as Limits,
    hook::{HookClient, HookError, HookSettings},
};

/// Why identity and access cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// A token, key or permission file is unusable.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The Redis permission source is misconfigured.
    #[error(transparent)]
    Redis(#[from] RedisPermissionsError),
    /// The HTTP hooks are misconfigured.
    #[error(transparent)]
    Hook(#[from] HookError),
    /// Settings that do not go together.
    #[error("{0}")]
    Settings(String),
}

/// The sources and limits of one replica.
pub struct Access {
    /// Who connections are.
    pub auth: Arc<dyn Authenticator>,
    /// What they may join.
    pub authz: Arc<dyn Authorizer>,
    /// Per-identity limits.
    pub limits: Limits,
}

fn key_source(id: &IdentityConfig) -> Result<KeySource, AccessError> {
    let given = [
        id.jwt_secret.is_some(),
        id.jwt_public_key.is_some(),
        id.jwt_jwks.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(AccessError::Settings(
            "--auth jwt needs exactly one of --jwt-secret / WSGATE_JWT_SECRET, \
             --jwt-public-key / WSGATE_JWT_PUBLIC_KEY, --jwt-jwks / WSGATE_JWT_JWKS"
                .into(),
        ));
    }
    Ok(match (&id.jwt_secret, &id.jwt_public_key, &id.jwt_jwks) {
        (Some(s), _, _) => KeySource::Secret(s.clone()),
        (_, Some(p), _) => KeySource::PublicKey(p.clone()),
        (_, _, Some(p)) => KeySource::Jwks(p.clone()),
        _ => unreachable!("exactly one key source was checked above"),
    })
}

/// The URL a hook source needs, or the settings error naming it.
fn hook_url<'a>(url: &'a Option<String>, source: &str, flag: &str) -> Result<&'a str, AccessError> {
    url.as_deref()
        .ok_or_else(|| AccessError::Settings(format!("{source} needs {flag}")))
}

/// The one client pool both hooks share (built only when a hook is configured).
fn hook_client(
    id: &IdentityConfig,
    client: &mut Option<Arc<HookClient>>,
) -> Result<Arc<HookClient>, AccessError> {
    if let Some(c) = client {
        return Ok(c.clone());
    }
    let c = HookClient::new(&HookSettings {
        timeout: id.hook_timeout,
        headers: id.hook_header.clone(),
        forward: id.hook_forward_header.clone(),
        ca_file: id.hook_ca_file.clone(),
    })?;
    *client = Some(c.clone());
    Ok(c)
}

/// The identity source `cfg` asks for; `client` is the hooks' shared HTTP client.
fn authenticator(
    cfg: &ServeConfig,
    client: &mut Option<Arc<HookClient>>,
) -> Result<Arc<dyn Authenticator>, AccessError> {
    let id = &cfg.identity;
    Ok(match id.auth {
        AuthSource::Table => Arc::new(match &cfg.tokens {
            Some(path) => TokenTable::from_file(path)?,
            None => TokenTable::demo(),
        }),
        AuthSource::Jwt => {
            let jwt = Arc::new(JwtAuthenticator::new(JwtSettings {
                keys: key_source(id)?,
                algorithms: id.jwt_algorithms.clone(),
                issuers: id.jwt_issuer.clone(),
                audiences: id.jwt_audience.clone(),
                leeway: id.jwt_leeway,
                user_claim: id.jwt_user_claim.clone(),
                projects_claim: id.jwt_projects_claim.clone(),
                numeric_sub: id.jwt_numeric_sub,
            })?);
            jwt.watch(id.jwt_jwks_poll);
            jwt
        }
        AuthSource::Http => Arc::new(HttpAuthenticator::new(
            hook_client(id, client)?,
            hook_url(
                &id.auth_url,
                "--auth http / WSGATE_AUTH=http",
                "--auth-url / WSGATE_AUTH_URL",
            )?,
            id.auth_cache_ttl,
            id.perm_cache_size,
        )),
    })
}

/// Build the sources `cfg` asks for (and start the JWKS watcher when there is one).
pub fn from_config(cfg: &ServeConfig) -> Result<Access, AccessError> {
    let id = &cfg.identity;
    let mut client = None;
    let auth = authenticator(cfg, &mut client)?;
    let authz: Arc<dyn Authorizer> = match id.authz {
        AuthzSource::Table => Arc::new(match &cfg.permissions {
            Some(path) => PermissionTable::from_file(path)?,
            None => PermissionTable::demo(),
        }),
        AuthzSource::Claim if id.auth == AuthSource::Table => {
            return Err(AccessError::Settings(
                "--authz claim / WSGATE_AUTHZ=claim needs --auth jwt (the claim is in the JWT) \
                 or --auth http (the projects of the hook's answer)"
                    .into(),
            ));
        }
        AuthzSource::Claim => Arc::new(ClaimPermissions),
        AuthzSource::Redis => {
            let Some(url) = cfg.redis_conn.url(cfg.redis_url.as_deref()) else {
                return Err(AccessError::Settings(
                    "--authz redis / WSGATE_AUTHZ=redis needs --redis-url / WSGATE_REDIS_URL"
                        .into(),
                ));
            };
            Arc::new(RedisPermissions::new(
                &Connector::new(&url, &cfg.redis_conn.settings())
                    .map_err(RedisPermissionsError::from)?,
                &id.perm_key_template,
                id.perm_cache_ttl,
                id.perm_cache_size,
            )?)
        }
        AuthzSource::Http => Arc::new(HttpPermissions::new(
            hook_client(id, &mut client)?,
            hook_url(
                &id.authz_url,
                "--authz http / WSGATE_AUTHZ=http",
                "--authz-url / WSGATE_AUTHZ_URL",
            )?,
            id.perm_cache_ttl,
            id.perm_cache_size,
            id.hook_timeout,
        )),
    };
    // The permission hook gets the forwarded handshake headers whatever the identity
    // source (the HTTP one keeps them itself).
    let auth = match (&client, id.authz, id.auth) {
        (Some(c), AuthzSource::Http, AuthSource::Table | AuthSource::Jwt)
            if !id.hook_forward_header.is_empty() =>
        {
            Arc::new(WithForwarded::new(auth, c.clone())) as Arc<dyn Authenticator>
        }
        _ => auth,
    };
    Ok(Access {
        auth,
        authz,
        limits: Limits {
            connections_per_user: id.max_connections_per_user,
            rooms_per_socket: id.max_rooms_per_socket,
        },
    })
}
