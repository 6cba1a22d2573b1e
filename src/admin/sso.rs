//! Single sign-on for the admin UI (`access.auth_providers`):
//!
//! * `GET /_/api/sso` lists the providers for the login page (public).
//! * `GET /_/sso/{provider}/login` starts a login: a fresh state, nonce and
//!   PKCE verifier are kept here for ten minutes, bound to this browser by
//!   an HttpOnly `dgp_sso_*` cookie, and the browser goes to the provider.
//! * `GET /_/sso/{provider}/callback` finishes it: the state is used once
//!   and must come back to the browser that started it; the code is
//!   exchanged and the ID token verified (`oidc`); the mapping rules give
//!   the groups; the first login provisions the IAM user, every login sets
//!   its groups (`ConfigDb::sso_login`). A user whose groups give the
//!   explicit `admin` permission gets a session; anyone else is told why not.
//!
//! Failures count against the address in the brute-force limiter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Request, StatusCode, header};
use subtle::ConstantTimeEq;

use super::oidc;
use super::session::{self, LoggedIn, digest, random_token};
use crate::configdb::DbError;
use crate::s3::S3State;

/// The cookies binding logins under way to the browser that started them:
/// `dgp_sso_<8 hex digits of the state's digest>`, one per login, so two
/// tabs do not undo each other.
const SSO_COOKIE: &str = "dgp_sso_";
/// Logins under way from one address kept at most: the oldest go first.
const MAX_PENDING_PER_SOURCE: usize = 16;
/// How long a login may take at the provider.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// Logins under way kept at most: the oldest go first.
const MAX_PENDING: usize = 1024;

struct Pending {
    provider: String,
    redirect: String,
    nonce: String,
    pkce_verifier: String,
    browser: [u8; 32],
    source: std::net::IpAddr,
    created: Instant,
}

/// Logins under way, by the SHA-256 of their state.
#[derive(Default)]
pub struct PendingLogins(Mutex<HashMap<[u8; 32], Pending>>);

impl std::fmt::Debug for PendingLogins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingLogins")
    }
}

impl PendingLogins {
    fn put(&self, state: &str, p: Pending) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, v| v.created.elapsed() < PENDING_TTL);
        // One address cannot push everybody else's logins out.
        let mut mine: Vec<([u8; 32], Instant)> = m
            .iter()
            .filter(|(_, v)| v.source == p.source)
            .map(|(k, v)| (*k, v.created))
            .collect();
        mine.sort_by_key(|(_, c)| *c);
        let over = (mine.len() + 1).saturating_sub(MAX_PENDING_PER_SOURCE);
        for (k, _) in mine.into_iter().take(over) {
            m.remove(&k);
        }
        if m.len() >= MAX_PENDING
            && let Some(k) = m.iter().min_by_key(|(_, v)| v.created).map(|(k, _)| *k)
        {
            m.remove(&k);
        }
        m.insert(digest(state.as_bytes()), p);
    }

    /// The login `state` names, once.
    fn take(&self, state: &str) -> Option<Pending> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(&digest(state.as_bytes()))
            .filter(|p| p.created.elapsed() < PENDING_TTL)
    }
}

/// `GET /_/api/sso`: the providers the login page offers.
pub async fn providers(State(st): State<Arc<S3State>>) -> Response {
    let sso = st.protocol.load().sso.clone();
    let list: Vec<_> = sso
        .providers
        .iter()
        .map(|p| {
            serde_json::json!({
                "name": p.name,
                "display_name": p.display_name,
                "login_url": format!("/_/sso/{}/login", p.name),
            })
        })
        .collect();
    Json(serde_json::json!({ "providers": list })).into_response()
}

/// A small HTML page (the answer of a browser navigation). `text` is escaped.
fn page(status: StatusCode, title: &str, text: &str, refresh: bool) -> Response {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let meta = if refresh {
        // A navigation started by this page is same-site, so the new
        // SameSite=Strict session cookie goes with it (a redirect chain
        // started at the provider would leave it behind).
        r#"<meta http-equiv="refresh" content="0;url=/_/">"#
    } else {
        ""
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\">{meta}<title>{t}</title>\
         <link rel=\"stylesheet\" href=\"/_/ui/app.css\"></head>\
         <body><main><div class=\"card login\"><h1 id=\"sso-title\">{t}</h1>\
         <p id=\"sso-message\">{m}</p><p><a class=\"button\" href=\"/_/\">Back to the admin UI</a></p>\
         </div></main></body></html>",
        t = esc(title),
        m = esc(text),
    );
    let mut r = (status, body).into_response();
    super::ui::harden(
        r.headers_mut(),
        "text/html; charset=utf-8",
        "no-store",
        "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    r
}

fn refused(title: &str, text: &str) -> Response {
    page(StatusCode::FORBIDDEN, title, text, false)
}

/// The name of the cookie of the login with this state.
fn cookie_name(state: &str) -> String {
    format!(
        "{SSO_COOKIE}{}",
        hex::encode(&digest(state.as_bytes())[..4])
    )
}

fn sso_cookie(name: &str, value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    // Lax, not Strict: it must come back with the provider's redirect.
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/_/sso/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .expect("cookie characters are URL-safe base64")
}

/// The callback URL: configured, or this server as the browser addressed it.
fn redirect_uri(p: &crate::config::sso::OidcProvider, req: &Request<Body>) -> Option<String> {
    if let Some(u) = &p.redirect_uri {
        return Some(u.clone());
    }
    let host = req.headers().get(header::HOST)?.to_str().ok()?;
    // Only host[:port]: anything else (user info above all, which would
    // move the callback to another host) must not end up in the URL.
    if host.contains('@') {
        return None;
    }
    host.parse::<http::uri::Authority>().ok()?;
    let scheme = if session::secure(req) {
        "https"
    } else {
        "http"
    };
    Some(format!("{scheme}://{host}/_/sso/{}/callback", p.name))
}

/// The client's address and the session table, unless the address is
/// locked out or this server has no login.
fn admit<'s>(
    st: &'s S3State,
    req: &Request<Body>,
) -> Result<(std::net::IpAddr, &'s session::Sessions), Box<Response>> {
    let source = session::source(st, req);
    if st.lockout.check(source, Instant::now()).is_err() {
        return Err(Box::new(page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again later",
            "Too many failed sign-ins from this address.",
            false,
        )));
    }
    let sessions = st.sessions.as_ref().ok_or_else(|| {
        Box::new(page(
            StatusCode::NOT_IMPLEMENTED,
            "No sign-in",
            "This server has no admin UI login.",
            false,
        ))
    })?;
    Ok((source, sessions))
}

/// `GET /_/sso/{provider}/login`.
pub async fn login(
    State(st): State<Arc<S3State>>,
    Path(name): Path<String>,
    req: Request<Body>,
) -> Response {
    let (_, sessions) = match admit(&st, &req) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let sso = st.protocol.load().sso.clone();
    let Some(p) = sso.provider(&name) else {
        return page(
            StatusCode::NOT_FOUND,
            "Unknown provider",
            &format!("No sign-in provider named {name}."),
            false,
        );
    };
    let Some(redirect) = redirect_uri(p, &req) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Cannot sign in",
            "The request has no usable Host header.",
            false,
        );
    };
    let started = match oidc::start(p, &redirect).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(provider = %name, error = %e, "single sign-on: the provider cannot be used");
            return page(
                StatusCode::BAD_GATEWAY,
                "The sign-in provider is not reachable",
                &e,
                false,
            );
        }
    };
    let browser = random_token();
    let source = session::source(&st, &req);
    let cookie = cookie_name(&started.state);
    sessions.sso.put(
        &started.state,
        Pending {
            provider: name,
            redirect,
            nonce: started.nonce,
            pkce_verifier: started.pkce_verifier,
            browser: digest(browser.as_bytes()),
            source,
            created: Instant::now(),
        },
    );
    let mut r = StatusCode::SEE_OTHER.into_response();
    let h = r.headers_mut();
    match HeaderValue::from_str(&started.url) {
        Ok(v) => h.insert(header::LOCATION, v),
        Err(_) => {
            return page(
                StatusCode::BAD_GATEWAY,
                "Cannot sign in",
                "The provider's authorization URL is not usable.",
                false,
            );
        }
    };
    h.insert(
        header::SET_COOKIE,
        sso_cookie(
            &cookie,
            &browser,
            PENDING_TTL.as_secs(),
            session::secure(&req),
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `GET /_/sso/{provider}/callback?code=...&state=...` (or `?error=...`).
pub async fn callback(
    State(st): State<Arc<S3State>>,
    Path(name): Path<String>,
    req: Request<Body>,
) -> Response {
    let (source, sessions) = match admit(&st, &req) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let proto = st.protocol.load_full();
    let failed = |why: &str| {
        tracing::info!(%source, provider = %name, "admin UI: single sign-on refused: {why}");
        st.lockout.failed(source, &proto.lockout, Instant::now())
    };
    let q = super::query(&req);
    let state = q.get("state").map(String::as_str).unwrap_or("");
    let cookie = cookie_name(state);
    let pending = sessions.sso.take(state);
    let browser = session::named_cookie(&req, &cookie).map(|c| digest(c.as_bytes()));
    let Some(pending) = pending
        .filter(|p| p.provider == name && browser.is_some_and(|b| bool::from(b.ct_eq(&p.browser))))
    else {
        tokio::time::sleep(failed("unknown state, or another browser")).await;
        return page(
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            "This sign-in is unknown, already used, expired, or was started in another browser. Start again from the login page.",
            false,
        );
    };
    if let Some(err) = q.get("error") {
        let detail = q.get("error_description").map(String::as_str).unwrap_or("");
        failed(&format!("the provider said {err}"));
        return page(
            StatusCode::UNAUTHORIZED,
            "Sign-in refused by the provider",
            &format!("{err} {detail}"),
            false,
        );
    }
    let Some(code) = q.get("code") else {
        failed("no code");
        return page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "The provider sent no authorization code.",
            false,
        );
    };
    let Some(p) = proto.sso.provider(&name) else {
        return page(
            StatusCode::NOT_FOUND,
            "Unknown provider",
            &format!("No sign-in provider named {name}."),
            false,
        );
    };
    let id = match oidc::finish(
        p,
        &pending.redirect,
        code,
        &pending.nonce,
        &pending.pkce_verifier,
    )
    .await
    {
        Ok(id) => id,
        Err(e) => {
            tokio::time::sleep(failed(&e)).await;
            return page(StatusCode::UNAUTHORIZED, "Sign-in failed", &e, false);
        }
    };
    let who = id
        .email
        .clone()
        .unwrap_or_else(|| format!("subject {}", id.subject));
    let Some(iam) = st.iam.clone() else {
        return page(
            StatusCode::NOT_IMPLEMENTED,
            "No sign-in",
            "This server has no config database.",
            false,
        );
    };
    let groups = proto.sso.groups_for(&id);
    if groups.is_empty() {
        tracing::info!(%source, provider = %name, who = %who, "admin UI: single sign-on: no group mapping rule matches");
        // Someone known who no rule matches any more leaves the groups the
        // rules gave earlier (and what they allowed).
        let (i, (iss, sub)) = (iam.clone(), (id.issuer.clone(), id.subject.clone()));
        match tokio::task::spawn_blocking(move || i.mutate(|db| db.sso_clear_groups(&iss, &sub)))
            .await
        {
            Ok(Ok(Some(user))) => {
                tracing::info!(user = %user, "single sign-on: no rule matches any more; the user left its groups")
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "single sign-on: could not take the user out of its groups")
            }
            Err(_) => {}
        }
        return refused(
            "No access",
            &format!(
                "Signed in at {} as {who}, but no group mapping rule of this server matches you. Ask its operator.",
                p.display_name
            ),
        );
    }
    let (iss, prov, subject, email, g) = (
        id.issuer.clone(),
        id.provider.clone(),
        id.subject.clone(),
        id.email.clone(),
        groups.clone(),
    );
    let res = tokio::task::spawn_blocking(move || {
        iam.mutate(|db| db.sso_login(&iss, &prov, &subject, email.as_deref(), &g))
    })
    .await;
    let login = match res {
        Ok(Ok(l)) => l,
        Ok(Err(DbError::NotFound(m))) => {
            tracing::warn!(provider = %name, who = %who, "single sign-on: {m}");
            return refused("No access", &m);
        }
        Ok(Err(e)) => {
            tracing::error!(provider = %name, who = %who, error = %e, "single sign-on: could not record the user");
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sign-in failed",
                "The user could not be recorded; see the server log.",
                false,
            );
        }
        Err(_) => {
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sign-in failed",
                "internal error",
                false,
            );
        }
    };
    if login.created {
        tracing::info!(provider = %name, who = %who, user = %login.user, groups = ?groups, "single sign-on: first login provisioned the user");
    }
    if !login.enabled {
        return refused(
            "No access",
            &format!("The user {} is disabled on this server.", login.user),
        );
    }
    if !session::operator(&st, &login.user) {
        tracing::info!(%source, user = %login.user, groups = ?groups, "admin UI: single sign-on user may not run the box");
        return refused(
            "No admin permission",
            &format!(
                "Signed in as {} (groups: {}). These groups do not give the admin permission, so the admin UI is closed to you; an operator can give you S3 access keys.",
                login.user,
                groups.join(", ")
            ),
        );
    }
    st.lockout.succeeded(source);
    let how = LoggedIn::Sso {
        issuer: id.issuer.clone(),
    };
    let (token, _) = sessions.create(&login.user, [0; 32], how, source, &proto.sessions);
    tracing::info!(%source, provider = %name, user = %login.user, "admin UI: logged in by single sign-on");
    let tls = session::secure(&req);
    let mut r = page(
        StatusCode::OK,
        "Signed in",
        &format!("Signed in as {}.", login.user),
        true,
    );
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        session::set_cookie(&token, proto.sessions.ttl.as_secs(), tls),
    );
    h.append(header::SET_COOKIE, sso_cookie(&cookie, "", 0, tls));
    r
}
