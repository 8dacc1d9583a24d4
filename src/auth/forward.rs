//! The handshake headers the permission hook gets (`--hook-forward-header`) when the
//! identity comes from a source that does not keep them itself (a token table, a JWT):
//! the HTTP identity source keeps them with the identity it caches; any other is wrapped
//! here, so `--authz http` sees the same headers whatever `--auth` is.

use std::sync::Arc;

use futures_util::future::{BoxFuture, FutureExt};

use super::{AuthError, Authenticator, Credentials, Identity};
use crate::hook::HookClient;

/// An identity source whose handshakes keep the headers the hooks forward.
pub struct WithForwarded {
    inner: Arc<dyn Authenticator>,
    client: Arc<HookClient>,
}

impl WithForwarded {
    /// Wrap `inner`; `client` says which headers are forwarded.
    pub fn new(inner: Arc<dyn Authenticator>, client: Arc<HookClient>) -> Self {
        Self { inner, client }
    }
}

impl Authenticator for WithForwarded {
    fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Identity, AuthError> {
        self.inner.authenticate(credentials)
    }

    fn authenticate_handshake<'a>(
        &'a self,
        credentials: Credentials<'a>,
        handshake: &'a ::http::HeaderMap,
    ) -> BoxFuture<'a, Result<Identity, AuthError>> {
        async move {
            let mut identity = self
                .inner
                .authenticate_handshake(credentials, handshake)
                .await?;
            if identity.forwarded.0.is_empty() {
                identity.forwarded = self.client.forwarded(handshake);
            }
            Ok(identity)
        }
        .boxed()
    }

    fn invalidate(&self, user_id: &str) {
        self.inner.invalidate(user_id)
    }
}
