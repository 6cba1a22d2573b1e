//! The embedded documentation: `docs/*.md` compiled into the binary and
//! rendered for the admin UI. `GET /_/api/docs` lists them (with `?q=`:
//! those that mention every word, with a snippet); `GET /_/api/docs/{name}`
//! renders one to HTML.
//!
//! Rendering is pulldown-cmark's. The documents are ours, but the HTML is
//! still made safe to insert into the page: raw HTML in the Markdown is
//! shown as text, links go only to the web (`http`, `https`), to anchors, or
//! to another embedded document (rewritten to the UI's `#/docs/NAME`), and
//! images become their alt text (the UI's CSP would refuse them anyway).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{Request, StatusCode};
use pulldown_cmark::{CowStr, Event, LinkType, Options, Parser, Tag, TagEnd};

use super::{deny, require_admin};
use crate::s3::S3State;

/// Every document, by the name the UI uses (ADRs as `adr-NNNN-...`).
/// Adding a file to docs/ means adding it here (a unit test checks).
pub const DOCS: &[(&str, &str)] = &[
    ("architecture", include_str!("../../docs/architecture.md")),
    ("backup", include_str!("../../docs/backup.md")),
    ("benchmarks", include_str!("../../docs/benchmarks.md")),
    ("config", include_str!("../../docs/config.md")),
    ("config-api", include_str!("../../docs/config-api.md")),
    ("delta", include_str!("../../docs/delta.md")),
    ("encryption", include_str!("../../docs/encryption.md")),
    (
        "encryption-format",
        include_str!("../../docs/encryption-format.md"),
    ),
    ("fuse", include_str!("../../docs/fuse.md")),
    ("iam", include_str!("../../docs/iam.md")),
    ("install", include_str!("../../docs/install.md")),
    ("metrics", include_str!("../../docs/metrics.md")),
    (
        "on-disk-format",
        include_str!("../../docs/on-disk-format.md"),
    ),
    ("packaging", include_str!("../../docs/packaging.md")),
    ("s3-compat", include_str!("../../docs/s3-compat.md")),
    ("scale-out", include_str!("../../docs/scale-out.md")),
    ("ui", include_str!("../../docs/ui.md")),
    (
        "adr-0001-yaml-crate",
        include_str!("../../docs/adr/0001-yaml-crate.md"),
    ),
    (
        "adr-0002-delta-codec",
        include_str!("../../docs/adr/0002-delta-codec.md"),
    ),
    (
        "adr-0003-s3-client",
        include_str!("../../docs/adr/0003-s3-client.md"),
    ),
    (
        "adr-0004-storage-trait",
        include_str!("../../docs/adr/0004-storage-trait.md"),
    ),
    (
        "adr-0005-config-database",
        include_str!("../../docs/adr/0005-config-database.md"),
    ),
    (
        "adr-0006-admin-ui",
        include_str!("../../docs/adr/0006-admin-ui.md"),
    ),
    ("adr-0007-oidc", include_str!("../../docs/adr/0007-oidc.md")),
];

fn title(text: &str) -> &str {
    text.lines()
        .find_map(|l| l.strip_prefix("# "))
        .unwrap_or("")
        .trim()
}

/// Where a link in a document may go, rewritten for the UI; `None` drops it
/// (its text stays).
fn link_target(dest: &str) -> Option<String> {
    if dest.starts_with("https://") || dest.starts_with("http://") || dest.starts_with('#') {
        return Some(dest.to_owned());
    }
    // An anchor inside another document is dropped: the UI shows it whole.
    let path = dest.split('#').next().unwrap_or(dest);
    let file = path.rsplit('/').next()?.strip_suffix(".md")?;
    let name = if path.contains("adr/") {
        format!("adr-{file}")
    } else {
        file.to_owned()
    };
    DOCS.iter()
        .any(|(n, _)| *n == name)
        .then(|| format!("#/docs/{name}"))
}

/// The document as HTML (see the module comment for what is filtered).
pub fn render(markdown: &str) -> String {
    let mut opts = Options::empty();
    opts.insert(Options::ENABLE_TABLES);
    opts.insert(Options::ENABLE_STRIKETHROUGH);
    // Open links whose target was dropped: their end tag goes too.
    let mut dropped = Vec::new();
    let events = Parser::new_ext(markdown, opts).filter_map(|e| match e {
        Event::Html(h) | Event::InlineHtml(h) => Some(Event::Text(h)),
        Event::Start(Tag::Image { .. }) | Event::End(TagEnd::Image) => None,
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => match link_target(&dest_url) {
            Some(to) => {
                dropped.push(false);
                Some(Event::Start(Tag::Link {
                    link_type: if link_type == LinkType::Email {
                        LinkType::Inline
                    } else {
                        link_type
                    },
                    dest_url: CowStr::from(to),
                    title,
                    id,
                }))
            }
            None => {
                dropped.push(true);
                None
            }
        },
        Event::End(TagEnd::Link) => (!dropped.pop().unwrap_or(false)).then_some(e),
        e => Some(e),
    });
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut out, events);
    out
}

/// A line of context around the first place `word` appears.
fn snippet(text: &str, word: &str) -> String {
    let lower = text.to_lowercase();
    let Some(at) = lower.find(word) else {
        return String::new();
    };
    let start = lower[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = lower[at..].find('\n').map_or(lower.len(), |i| at + i);
    // `to_lowercase` can change byte lengths; fall back to the whole line
    // boundaries found in the original when they do not line up.
    text.get(start..end)
        .unwrap_or("")
        .chars()
        .take(240)
        .collect()
}

/// `GET /_/api/docs[?q=words]`.
pub async fn list(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    if let Err(r) = require_admin(&st, &req) {
        return *r;
    }
    let q = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "q")
        .map(|(_, v)| v.to_lowercase())
        .unwrap_or_default();
    let words: Vec<&str> = q.split_whitespace().collect();
    let docs: Vec<_> = DOCS
        .iter()
        .filter(|(_, text)| {
            let lower = text.to_lowercase();
            words.iter().all(|w| lower.contains(w))
        })
        .map(|(name, text)| {
            serde_json::json!({
                "name": name,
                "title": title(text),
                "snippet": words.first().map(|w| snippet(text, w)),
            })
        })
        .collect();
    Json(serde_json::json!({ "docs": docs })).into_response()
}

/// `GET /_/api/docs/{name}`: `{name, title, html}`.
pub async fn show(
    State(st): State<Arc<S3State>>,
    Path(name): Path<String>,
    req: Request<Body>,
) -> Response {
    if let Err(r) = require_admin(&st, &req) {
        return *r;
    }
    match DOCS.iter().find(|(n, _)| *n == name) {
        Some((n, text)) => Json(serde_json::json!({
            "name": n,
            "title": title(text),
            "html": render(text),
        }))
        .into_response(),
        None => deny(StatusCode::NOT_FOUND, "no such document"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_doc_is_embedded() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/docs");
        for (dir, prefix) in [(root.to_owned(), ""), (format!("{root}/adr"), "adr-")] {
            for e in std::fs::read_dir(&dir).unwrap() {
                let f = e.unwrap().file_name().into_string().unwrap();
                if let Some(stem) = f.strip_suffix(".md") {
                    let name = format!("{prefix}{stem}");
                    assert!(
                        DOCS.iter().any(|(n, _)| *n == name),
                        "docs/{f} is not in admin::docs::DOCS"
                    );
                }
            }
        }
    }

    #[test]
    fn raw_html_is_text_and_links_are_filtered() {
        let html = render(
            "# T\n\n<script>alert(1)</script>\n\nSee [iam](iam.md), [adr](adr/0006-admin-ui.md), \
             [web](https://example.com), [bad](javascript:alert(1)) and ![pic](ui/x.png \"p\").\n",
        );
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains(r##"<a href="#/docs/iam">iam</a>"##), "{html}");
        assert!(
            html.contains(r##"<a href="#/docs/adr-0006-admin-ui">adr</a>"##),
            "{html}"
        );
        assert!(
            html.contains(r#"<a href="https://example.com">web</a>"#),
            "{html}"
        );
        assert!(!html.contains("javascript:"), "{html}");
        assert!(html.contains(" bad "), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("pic"), "{html}");
    }
}
