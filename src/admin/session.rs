//! Admin UI sessions: `POST /_/api/session` logs in with the bootstrap
//! password and sets an HttpOnly, SameSite=Strict cookie (`Secure` over
//! TLS); `GET` says who is logged in and hands back the CSRF token;
//! `DELETE` logs out. A session lets a browser call the operator API
//! instead of a SigV4 signature; every state-changing call must echo the
//! session's CSRF token in `X-CSRF-Token`.
//!
//! Sessions live in memory (a restart logs everyone out), keyed by the
//! SHA-256 of their token: the token itself exists only in the cookie. A
//! session ends at its lifetime (`advanced.session_ttl_secs`), when its
//! user has more than `advanced.session_max_per_user` newer ones, at logout,
//! when the bootstrap password changes (or the access key it logged in
//! with goes, or a single sign-on user loses the admin permission), and (with
//! `advanced.session_bind_ip`) when it is used from another address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http::{HeaderValue, Method, Request, StatusCode, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::deny;
use super::password::{self, Bootstrap};
use crate::s3::S3State;

pub const COOKIE: &str = "dgp_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Sessions kept at most, over all users: the oldest go first.
const MAX_SESSIONS: usize = 4096;
/// A login body larger than this is refused unread.
const MAX_LOGIN_BODY: usize = 16 * 1024;

/// `advanced.session_*` (reloadable, with the protocol settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSettings {
    pub ttl: Duration,
    pub max_per_user: usize,
    pub bind_ip: bool,
}

#[derive(Debug, Clone)]
struct Session {
    user: String,
    csrf: String,
    created: Instant,
    expires: Instant,
    source: IpAddr,
    /// SHA-256 of the password hash it logged in with (or of the access
    /// key's secret): a new password, or a rotated key, ends it.
    credential: [u8; 32],
    how: LoggedIn,
}

/// How a session logged in, which decides what keeps it valid.
#[derive(Debug, Clone)]
pub(super) enum LoggedIn {
    /// The bootstrap password (user `admin`): until the password changes.
    Password,
    /// An IAM user's access key: while the key and the admin permission last.
    Key(String),
    /// Single sign-on: while the user exists, is enabled and may run the
    /// box, and a provider with this issuer is still configured.
    Sso { issuer: String },
}

/// The sessions, and where the bootstrap password's hash comes from.
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
    pub bootstrap: Option<Bootstrap>,
    /// Single sign-on logins under way.
    pub(super) sso: super::sso::PendingLogins,
}

/// A session that checked out, for the request it came with.
#[derive(Debug, Clone)]
pub struct Active {
    pub user: String,
    pub csrf: String,
    pub expires_in: Duration,
}

pub(super) fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

pub(super) fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// The value of our cookie in the request, if it carries one.
fn cookie(req: &Request<Body>) -> Option<&str> {
    named_cookie(req, COOKIE)
}

/// The value of the cookie `name` in the request.
pub(super) fn named_cookie<'r>(req: &'r Request<Body>, name: &str) -> Option<&'r str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(name)?.strip_prefix('='))
}

/// Whether the request carries a session cookie.
pub fn presented(req: &Request<Body>) -> bool {
    cookie(req).is_some()
}

impl Sessions {
    pub fn new(bootstrap: Option<Bootstrap>) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            bootstrap,
            sso: Default::default(),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn create(
        &self,
        user: &str,
        credential: [u8; 32],
        how: LoggedIn,
        source: IpAddr,
        s: &SessionSettings,
    ) -> (String, Active) {
        let token = random_token();
        let now = Instant::now();
        let session = Session {
            user: user.to_owned(),
            csrf: random_token(),
            created: now,
            expires: now + s.ttl,
            source,
            credential,
            how,
        };
        let active = Active {
            user: user.to_owned(),
            csrf: session.csrf.clone(),
            expires_in: s.ttl,
        };
        let mut map = self.map();
        map.retain(|_, v| v.expires > now);
        // This user's oldest beyond the cap (counting the new one) end.
        let mut mine: Vec<([u8; 32], Instant)> = map
            .iter()
            .filter(|(_, v)| v.user == user)
            .map(|(k, v)| (*k, v.created))
            .collect();
        mine.sort_by_key(|(_, c)| *c);
        let over = (mine.len() + 1).saturating_sub(s.max_per_user.max(1));
        for (k, _) in mine.into_iter().take(over) {
            map.remove(&k);
        }
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, v)| v.created).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(digest(token.as_bytes()), session);
        (token, active)
    }

    /// The live session the request's cookie names, checked against its
    /// lifetime, address binding and the password in force.
    pub fn check(&self, st: &S3State, req: &Request<Body>, source: IpAddr) -> Option<Active> {
        let token = cookie(req)?;
        let id = digest(token.as_bytes());
        let s = st.protocol.load().sessions;
        let now = Instant::now();
        let session = self.map().get(&id).cloned()?;
        let current = match &session.how {
            LoggedIn::Password => self.current_hash(st).map(|h| digest(h.as_bytes())),
            LoggedIn::Key(key) => {
                operator_key(st, key).and_then(|(user, c)| (user == session.user).then_some(c))
            }
            LoggedIn::Sso { issuer } => {
                let configured = st
                    .protocol
                    .load()
                    .sso
                    .providers
                    .iter()
                    .any(|p| p.issuer == *issuer);
                (configured && operator(st, &session.user)).then_some(session.credential)
            }
        };
        let valid = session.expires > now
            && (!s.bind_ip || session.source == source)
            && current.is_some_and(|c| c == session.credential);
        if !valid {
            self.map().remove(&id);
            return None;
        }
        Some(Active {
            user: session.user,
            csrf: session.csrf,
            expires_in: session.expires - now,
        })
    }

    fn end(&self, req: &Request<Body>) {
        if let Some(token) = cookie(req) {
            self.map().remove(&digest(token.as_bytes()));
        }
    }

    fn current_hash(&self, st: &S3State) -> Option<String> {
        password::current(st.iam.as_deref()?, self.bootstrap.as_ref()?)
    }
}

/// The user owning `access_key` and the digest of its secret, if the key is
/// enabled and its user may run the box (`User::is_operator`).
fn operator_key(st: &S3State, access_key: &str) -> Option<(String, [u8; 32])> {
    let dir = st.gateway.load().directory();
    let user = dir.user_for_key(access_key).filter(|u| u.is_operator())?;
    let secret = dir.secret_for(access_key)?;
    Some((user.name.clone(), digest(secret.expose().as_bytes())))
}

/// Whether the IAM user `name` exists, is enabled and may run the box.
pub(super) fn operator(st: &S3State, name: &str) -> bool {
    st.gateway
        .load()
        .directory()
        .user(name)
        .is_some_and(|u| u.is_operator())
}

/// Whether `method` changes state (and so needs the CSRF token).
pub fn needs_csrf(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The CSRF check for a state-changing call made with a session.
pub fn csrf_ok(active: &Active, req: &Request<Body>) -> bool {
    req.headers()
        .get(CSRF_HEADER)
        .is_some_and(|v| v.as_bytes().ct_eq(active.csrf.as_bytes()).into())
}

pub(super) fn set_cookie(token: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/_/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .expect("cookie characters are URL-safe base64")
}

pub(super) fn secure(req: &Request<Body>) -> bool {
    req.extensions()
        .get::<crate::listener::Secure>()
        .is_some_and(|s| s.0)
}

pub(super) fn source(st: &S3State, req: &Request<Body>) -> IpAddr {
    let trust = st.protocol.load().trust_proxy_headers;
    crate::s3::admit::client_addr(req.extensions(), req.headers(), trust)
}

fn answer(active: &Active) -> Response {
    Json(serde_json::json!({
        "user": active.user,
        "csrf_token": active.csrf,
        "expires_in_secs": active.expires_in.as_secs(),
    }))
    .into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    /// The bootstrap password (user `admin`).
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    user: Option<String>,
    /// An IAM user's access key and secret (the user needs `admin` on `*`).
    #[serde(default)]
    access_key_id: Option<String>,
    #[serde(default)]
    secret_access_key: Option<String>,
}

/// `POST /_/api/session` with `{"password": "..."}` (the bootstrap
/// password) or `{"access_key_id": ..., "secret_access_key": ...}` (an IAM
/// user with the admin permission).
pub async fn login(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    let source = source(&st, &req);
    let now = Instant::now();
    if let Err(wait) = st.lockout.check(source, now) {
        let mut r = deny(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many failed authentications from this address; try again later",
        );
        if let Ok(v) = HeaderValue::from_str(&(wait.as_secs() + 1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let Some(sessions) = st.sessions.as_ref() else {
        return deny(
            StatusCode::NOT_IMPLEMENTED,
            "this server has no admin UI login",
        );
    };
    let tls = secure(&req);
    let body = match axum::body::to_bytes(req.into_body(), MAX_LOGIN_BODY).await {
        Ok(b) => b,
        Err(_) => return deny(StatusCode::PAYLOAD_TOO_LARGE, "the login body is too large"),
    };
    let login: Login = match serde_json::from_slice(&body) {
        Ok(l) => l,
        Err(e) => {
            return deny(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"password\": \"...\"}}: {e}"),
            );
        }
    };
    let proto = st.protocol.load();
    let failed = |what: &str| {
        let delay = st.lockout.failed(source, &proto.lockout, now);
        tracing::info!(%source, "admin UI: failed login ({what})");
        delay
    };
    let (user, credential, how) = match (
        login.password,
        login.access_key_id,
        login.secret_access_key,
    ) {
        (Some(password), None, None) => {
            if login.user.as_deref().is_some_and(|u| u != "admin") {
                return deny(
                    StatusCode::BAD_REQUEST,
                    "only the admin logs in with the bootstrap password; IAM users log in with their access key",
                );
            }
            let Some(hash) = sessions.current_hash(&st) else {
                return deny(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no bootstrap password is set",
                );
            };
            // argon2 takes tens of milliseconds of CPU: off the async workers.
            let h = hash.clone();
            let ok = tokio::task::spawn_blocking(move || password::verify(&password, &h))
                .await
                .unwrap_or(false);
            if !ok {
                tokio::time::sleep(failed("password")).await;
                return deny(StatusCode::UNAUTHORIZED, "wrong password");
            }
            (
                "admin".to_owned(),
                digest(hash.as_bytes()),
                LoggedIn::Password,
            )
        }
        (None, Some(key), Some(secret)) => {
            let secret = zeroize::Zeroizing::new(secret);
            let dir = st.gateway.load().directory();
            let Some(stored) = dir.secret_for(&key) else {
                tokio::time::sleep(failed("access key")).await;
                return deny(StatusCode::UNAUTHORIZED, "wrong access key or secret");
            };
            let ok: bool = stored.expose().as_bytes().ct_eq(secret.as_bytes()).into();
            if !ok {
                tokio::time::sleep(failed("access key")).await;
                return deny(StatusCode::UNAUTHORIZED, "wrong access key or secret");
            }
            let Some((user, credential)) = operator_key(&st, &key) else {
                tracing::info!(%source, access_key = %key, "admin UI: login refused: the user has no admin permission");
                return deny(
                    StatusCode::FORBIDDEN,
                    "this user may not log in here: it needs an explicit `admin` permission on `*`",
                );
            };
            (user, credential, LoggedIn::Key(key))
        }
        _ => {
            return deny(
                StatusCode::BAD_REQUEST,
                "send {\"password\": ...} or {\"access_key_id\": ..., \"secret_access_key\": ...}",
            );
        }
    };
    st.lockout.succeeded(source);
    let (token, active) = sessions.create(&user, credential, how, source, &proto.sessions);
    tracing::info!(%source, user = %user, "admin UI: logged in");
    let mut r = answer(&active);
    r.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&token, proto.sessions.ttl.as_secs(), tls),
    );
    r
}

/// `GET /_/api/session`: the logged-in user and the CSRF token, or 401.
pub async fn whoami(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    let source = source(&st, &req);
    match st
        .sessions
        .as_ref()
        .and_then(|s| s.check(&st, &req, source))
    {
        Some(a) => answer(&a),
        None => deny(StatusCode::UNAUTHORIZED, "not logged in"),
    }
}

/// `DELETE /_/api/session`: logs out (CSRF token required) and clears the cookie.
pub async fn logout(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    let source = source(&st, &req);
    let Some(sessions) = st.sessions.as_ref() else {
        return deny(StatusCode::UNAUTHORIZED, "not logged in");
    };
    let Some(active) = sessions.check(&st, &req, source) else {
        return deny(StatusCode::UNAUTHORIZED, "not logged in");
    };
    if !csrf_ok(&active, &req) {
        return deny(StatusCode::FORBIDDEN, "missing or wrong X-CSRF-Token");
    }
    sessions.end(&req);
    tracing::info!(%source, user = %active.user, "admin UI: logged out");
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, set_cookie("", 0, secure(&req)));
    r
}
