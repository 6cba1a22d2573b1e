//! Who sent a request and whether they may: the keys a signature is
//! checked against (the admin credential and the IAM users of the gateway
//! snapshot the request runs on), the identity a verified key stands for,
//! and the one central authorization step per request.

use super::Ctx;
use super::auth::{CredentialStore, SecretKey};
use super::error::S3Error;
use crate::gateway::policy::{Request, S3Action};
use std::sync::Arc;

use crate::gateway::iam::Directory;
use crate::gateway::{Authz, Identity};

/// The admin credential first, then the enabled IAM users.
pub struct Keys<'a> {
    pub admin: &'a dyn CredentialStore,
    pub users: Arc<Directory>,
}

impl CredentialStore for Keys<'_> {
    fn secret_for(&self, access_key_id: &str) -> Option<SecretKey> {
        self.admin
            .secret_for(access_key_id)
            .or_else(|| self.users.secret_for(access_key_id))
    }
}

impl Keys<'_> {
    /// The identity of a key whose signature verified.
    pub fn identity(&self, access_key_id: String) -> Identity {
        if self.admin.secret_for(&access_key_id).is_some() {
            return Identity::Admin { access_key_id };
        }
        match self.users.user_for_key(&access_key_id) {
            Some(u) => Identity::User {
                name: u.name.clone(),
                access_key_id,
            },
            // Unreachable: the signature verified against one of the two.
            None => Identity::Anonymous,
        }
    }
}

/// `AccessDenied` unless `authz` allows; the rule goes to the debug log.
pub fn enforce(authz: &Authz, who: &Identity, action: &S3Action) -> Result<(), S3Error> {
    if authz.allowed {
        return Ok(());
    }
    tracing::debug!(user = who.username().unwrap_or("anonymous"), action = action.name, rule = %authz.rule, "access denied");
    Err(S3Error::access_denied())
}

impl Ctx {
    /// The policy engine's view of this request, for `action` on `bucket`/`key`.
    pub fn facts<'a>(
        &'a self,
        action: S3Action,
        bucket: Option<&'a str>,
        key: Option<&'a str>,
        listing: bool,
    ) -> Request<'a> {
        Request {
            action,
            bucket,
            key,
            prefix: listing.then(|| self.q("prefix").unwrap_or("")),
            delimiter: if listing { self.q("delimiter") } else { None },
            source: self.source,
            secure: self.secure,
            username: self.identity.username(),
        }
    }

    /// For the resources beyond the request's own (a copy source, each key
    /// of DeleteObjects): the same engine as the central step.
    pub fn authorize(
        &self,
        action: S3Action,
        bucket: &str,
        key: Option<&str>,
    ) -> Result<(), S3Error> {
        let r = self.facts(action, Some(bucket), key, false);
        let same = Some(bucket) == self.bucket.as_deref() && key == self.key.as_deref();
        let authz = self
            .gateway
            .authorize(&self.identity, self.admitted && same, &r);
        enforce(&authz, &self.identity, &action)
    }
}
