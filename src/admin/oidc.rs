//! The OpenID Connect relying party under the admin UI's single sign-on:
//! discovery (cached), the authorization URL with PKCE (S256), state and
//! nonce, and the code exchange with the ID token verified by
//! `openidconnect` (signature against the provider's JWKS with the
//! algorithms it advertises, `iss`, `aud`, `azp`, `exp`, `iat`, nonce).
//! Requests go through one hyper client with the system's CA roots, no
//! redirects followed, a timeout and a body cap.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};

use crate::config::sso::{Identity, OidcProvider};

/// How long one provider's discovery document and keys are kept.
const DISCOVERY_TTL: Duration = Duration::from_secs(600);
/// One call to the provider, connect to last byte.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read from the provider.
const MAX_BODY: usize = 1 << 20;

type Https = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

fn https() -> Result<&'static Https, String> {
    static CLIENT: OnceLock<Result<Https, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
                .map_err(|e| format!("no CA certificates for HTTPS to the provider: {e}"))?
                .https_or_http()
                .enable_http1()
                .build();
            Ok(Client::builder(TokioExecutor::new()).build(connector))
        })
        .as_ref()
        .map_err(Clone::clone)
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

/// `openidconnect`'s HTTP client: one request, its answer in memory.
async fn send(req: openidconnect::HttpRequest) -> Result<openidconnect::HttpResponse, HttpError> {
    let client = https().map_err(HttpError)?;
    let (parts, body) = req.into_parts();
    let req = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
    let fut = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| HttpError(format!("request to the provider failed: {e}")))?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| HttpError(format!("reading the provider's answer: {e}")))?
            .to_bytes();
        Ok(http::Response::from_parts(parts, body.to_vec()))
    };
    tokio::time::timeout(TIMEOUT, fut)
        .await
        .map_err(|_| HttpError("the provider did not answer in time".into()))?
}

/// A failed discovery is not tried again for this long (unauthenticated
/// logins must not each cost a call to a provider that is down).
const FAILURE_TTL: Duration = Duration::from_secs(30);

type Cached = (Instant, Result<CoreProviderMetadata, String>);

/// Discovery documents (or the last failure) by issuer, with when they
/// were fetched. The async lock makes concurrent logins share one fetch.
fn cache() -> &'static tokio::sync::Mutex<HashMap<String, Cached>> {
    static CACHE: OnceLock<tokio::sync::Mutex<HashMap<String, Cached>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The provider's metadata and keys (`fresh`: fetched now, not cached).
async fn metadata(p: &OidcProvider, fresh: bool) -> Result<CoreProviderMetadata, String> {
    let mut cache = cache().lock().await;
    if !fresh
        && let Some((at, m)) = cache.get(&p.issuer)
        && at.elapsed()
            < if m.is_ok() {
                DISCOVERY_TTL
            } else {
                FAILURE_TTL
            }
    {
        return m.clone();
    }
    let m = discover(p).await;
    cache.insert(p.issuer.clone(), (Instant::now(), m.clone()));
    m
}

async fn discover(p: &OidcProvider) -> Result<CoreProviderMetadata, String> {
    let issuer = IssuerUrl::new(p.issuer.clone()).map_err(|e| format!("issuer: {e}"))?;
    let m = CoreProviderMetadata::discover_async(issuer, &send)
        .await
        .map_err(|e| format!("discovery at {}: {}", p.issuer, chain(&e)))?;
    // An https issuer's code, secret and keys travel over https only.
    if p.issuer.starts_with("https://") {
        let plain = [
            m.token_endpoint().map(|u| u.url().clone()),
            Some(m.jwks_uri().url().clone()),
        ]
        .into_iter()
        .flatten()
        .find(|u| u.scheme() != "https");
        if let Some(u) = plain {
            return Err(format!(
                "the provider's metadata names a non-https endpoint: {u}"
            ));
        }
    }
    Ok(m)
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// What the callback needs to finish a login started here.
pub struct Started {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

fn client(
    p: &OidcProvider,
    m: CoreProviderMetadata,
    redirect: &str,
) -> Result<
    CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    String,
> {
    let redirect =
        RedirectUrl::new(redirect.to_owned()).map_err(|e| format!("redirect URI: {e}"))?;
    Ok(CoreClient::from_provider_metadata(
        m,
        ClientId::new(p.client_id.clone()),
        p.client_secret
            .as_ref()
            .map(|s| ClientSecret::new(s.expose().to_owned())),
    )
    .set_redirect_uri(redirect))
}

/// The provider's authorization URL for a new login.
pub async fn start(p: &OidcProvider, redirect: &str) -> Result<Started, String> {
    let c = client(p, metadata(p, false).await?, redirect)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = c
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for s in &p.scopes {
        req = req.add_scope(Scope::new(s.clone()));
    }
    let (url, state, nonce) = req.url();
    Ok(Started {
        url: url.to_string(),
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
    })
}

/// Exchanges the code and verifies the ID token; the person it names.
pub async fn finish(
    p: &OidcProvider,
    redirect: &str,
    code: &str,
    nonce: &str,
    pkce_verifier: &str,
) -> Result<Identity, String> {
    let c = client(p, metadata(p, false).await?, redirect)?;
    let token = c
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .map_err(|e| format!("the provider has no token endpoint: {e}"))?
        .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
        .request_async(&send)
        .await
        .map_err(|e| format!("token request: {}", chain(&e)))?;
    let id_token = token
        .id_token()
        .ok_or("the provider answered without an ID token")?;
    let nonce = Nonce::new(nonce.to_owned());
    let verified = match id_token.claims(&c.id_token_verifier(), &nonce) {
        Ok(claims) => claims.subject().as_str().to_owned(),
        Err(first @ openidconnect::ClaimsVerificationError::SignatureVerification(_)) => {
            // The provider may have rotated its signing keys: fetch them
            // once more before refusing.
            let c = client(p, metadata(p, true).await?, redirect)?;
            id_token
                .claims(&c.id_token_verifier(), &nonce)
                .map_err(|e| format!("ID token refused: {e} (first try: {first})"))?
                .subject()
                .as_str()
                .to_owned()
        }
        Err(e) => return Err(format!("ID token refused: {e}")),
    };
    // The signature checked out, so the payload's other claims (groups and
    // the like, which the typed claims drop) can be read as they are.
    let claims = payload(&id_token.to_string())?;
    // Only an address the provider vouches for (`email_verified: true`, a
    // JSON boolean) may match e-mail rules or name a user.
    let verified_email = p.trust_unverified_email
        || matches!(
            claims.get("email_verified"),
            Some(serde_json::Value::Bool(true))
        );
    let email = claims
        .get("email")
        .and_then(|v| v.as_str())
        .filter(|_| verified_email)
        .map(str::to_ascii_lowercase);
    Ok(Identity {
        provider: p.name.clone(),
        issuer: p.issuer.clone(),
        subject: verified,
        email,
        claims,
    })
}

/// The claims of a (verified) compact JWS.
fn payload(jwt: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let part = jwt.split('.').nth(1).ok_or("the ID token is not a JWS")?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|e| format!("ID token payload: {e}"))?;
    serde_json::from_slice(&raw).map_err(|e| format!("ID token payload: {e}"))
}
