//! The admin web UI at `/_/`: one HTML page, a script and a style sheet,
//! compiled into the binary (`include_str!`), no build step and no
//! third-party code (docs/adr/0006-admin-ui.md). The page calls the JSON
//! endpoints under `/_/api/` with the session cookie; it is public (it holds
//! no data), the API behind it is not.

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// Only this origin's own files; no inline script or style, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn answer(content_type: &'static str, body: &'static str, cache: &'static str) -> Response {
    let mut r = body.into_response();
    harden(r.headers_mut(), content_type, cache, CSP);
    r
}

/// The headers every page of the UI carries (also the single sign-on pages).
pub(super) fn harden(
    h: &mut http::HeaderMap,
    content_type: &'static str,
    cache: &'static str,
    csp: &'static str,
) {
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// `GET /_/`: the page.
pub async fn index() -> Response {
    answer("text/html; charset=utf-8", INDEX, "no-store")
}

/// `GET /_/ui/{file}`: the script and the style sheet. They change with the
/// binary, so browsers revalidate them (`no-cache`).
pub async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "app.js" => answer("text/javascript; charset=utf-8", SCRIPT, "no-cache"),
        "app.css" => answer("text/css; charset=utf-8", STYLE, "no-cache"),
        _ => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}
