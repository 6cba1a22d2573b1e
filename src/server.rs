//! Wiring and lifecycle: opens the backends named by the settings (see
//! `open`), builds the HTTP app (S3 on `/`, operator endpoints under `/_/`),
//! listens, reloads the configuration on SIGHUP (see `reload`), and shuts
//! down gracefully on SIGTERM/SIGINT.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::Request;

use crate::config::Settings;
use crate::reload::{Reloader, Source};
use crate::s3::S3State;
async fn health() -> &'static str {
    "OK\n"
}

fn s3_entry(
    State(st): State<Arc<S3State>>,
    req: Request<Body>,
) -> impl std::future::Future<Output = Response> + Send {
    crate::s3::handle(st, req)
}

/// `/_` -> the UI at `/_/` (the session cookie's path).
async fn redirect_to_ui() -> Response {
    axum::response::Redirect::permanent("/_/").into_response()
}

async fn admin_not_found() -> Response {
    (http::StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// `/_/api/iam/...` (see `admin::iam`).
fn iam_routes() -> Router<Arc<S3State>> {
    use crate::admin::iam::*;
    use axum::routing::{delete, post, put};
    Router::new()
        .route("/_/api/iam/users", get(list_users).post(create_user))
        .route(
            "/_/api/iam/users/{name}",
            get(show_user).delete(delete_user),
        )
        .route("/_/api/iam/users/{name}/enabled", put(set_enabled))
        .route("/_/api/iam/users/{name}/can", get(crate::admin::can::can))
        .route("/_/api/iam/users/{name}/keys", post(create_key))
        .route("/_/api/iam/users/{name}/keys/{id}", delete(delete_key))
        .route("/_/api/iam/users/{name}/keys/{id}/rotate", post(rotate_key))
        .route("/_/api/iam/users/{name}/permissions", post(attach_user))
        .route(
            "/_/api/iam/users/{name}/permissions/{index}",
            delete(detach_user),
        )
        .route("/_/api/iam/groups", get(list_groups).post(create_group))
        .route(
            "/_/api/iam/groups/{name}",
            get(show_group).delete(delete_group),
        )
        .route(
            "/_/api/iam/groups/{name}/members/{user}",
            put(add_member).delete(remove_member),
        )
        .route("/_/api/iam/groups/{name}/permissions", post(attach_group))
        .route(
            "/_/api/iam/groups/{name}/permissions/{index}",
            delete(detach_group),
        )
}

fn file_routes() -> Router<Arc<S3State>> {
    use crate::admin::files::*;
    use axum::routing::{post, put};
    Router::new()
        .route("/_/api/files", get(list))
        .route(
            "/_/api/files/object",
            get(download).put(upload).delete(delete),
        )
        .route("/_/api/files/delete", post(delete_many))
        .route("/_/api/files/zip", get(zip))
        .route("/_/api/files/uploads", post(create_upload))
        .route("/_/api/files/uploads/{id}", put(upload_part))
        .route("/_/api/files/uploads/{id}/complete", post(complete_upload))
}

pub fn app(state: Arc<S3State>) -> Router {
    // Full paths rather than a nested router: the admin API verifies
    // signatures over the path exactly as the client sent it.
    Router::new()
        .route("/_/health", get(health))
        .route("/_/metrics", get(crate::admin::metrics::scrape))
        .route(
            "/_/api/session",
            get(crate::admin::session::whoami)
                .post(crate::admin::session::login)
                .delete(crate::admin::session::logout),
        )
        .route(
            "/_/api/encryption/status",
            get(crate::admin::encryption_status),
        )
        .route("/_/api/status", get(crate::admin::status))
        .route("/_/api/audit", get(crate::admin::audit::list))
        .route("/_/api/docs", get(crate::admin::docs::list))
        .route("/_/api/docs/{name}", get(crate::admin::docs::show))
        .route(
            "/_/api/backends",
            axum::routing::post(crate::admin::backend_list::add),
        )
        .route(
            "/_/api/backends/{name}",
            axum::routing::delete(crate::admin::backend_list::remove),
        )
        .route(
            "/_/api/backends/{name}/encryption",
            axum::routing::post(crate::admin::backends::set_encryption),
        )
        .merge(file_routes())
        .route(
            "/_/api/reencrypt",
            get(crate::admin::reencrypt::list).post(crate::admin::reencrypt::start),
        )
        .route("/_/api/stats", get(crate::admin::stats))
        .route(
            "/_/api/config",
            get(crate::admin::config::get_config).put(crate::admin::config::put_config),
        )
        .route("/_/api/config/schema", get(crate::admin::config::schema))
        .route(
            "/_/api/config/validate",
            axum::routing::post(crate::admin::config::validate),
        )
        .route(
            "/_/api/config/{section}",
            axum::routing::patch(crate::admin::config::patch_section),
        )
        .route(
            "/_/api/config/reload",
            axum::routing::post(crate::admin::reload),
        )
        .route(
            "/_/api/migrate",
            get(crate::admin::jobs::list).post(crate::admin::jobs::start),
        )
        .route("/_/api/admission/trace", get(crate::admin::admission_trace))
        .merge(iam_routes())
        .route("/_/api/sso", get(crate::admin::sso::providers))
        .route("/_/sso/{provider}/login", get(crate::admin::sso::login))
        .route(
            "/_/sso/{provider}/callback",
            get(crate::admin::sso::callback),
        )
        .route("/_/", get(crate::admin::ui::index))
        .route("/_/ui/{file}", get(crate::admin::ui::asset))
        .route("/_", get(redirect_to_ui))
        .route("/_/{*rest}", axum::routing::any(admin_not_found))
        // Only the routes above (the operator endpoints); S3 requests get
        // admission in `s3::handle`, where bucket and key are known.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::admin::admission,
        ))
        .fallback(s3_entry)
        .with_state(state)
}

/// Installs the SIGTERM/SIGINT handlers now (before we announce readiness)
/// and returns a future that resolves on the first of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received: draining requests"),
            _ = int.recv() => tracing::info!("SIGINT received: draining requests"),
        }
    })
}

/// Re-reads the configuration on every SIGHUP (systemd's `reload`),
/// telling systemd while it does.
fn reload_on_hangup(reloader: Arc<Reloader>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading the configuration");
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
            let r = reloader.clone();
            // Errors are logged by the reloader.
            let _ = tokio::task::spawn_blocking(move || r.reload()).await;
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        }
    });
    Ok(())
}

/// Runs the server until a shutdown signal, then drains in-flight requests
/// for at most the configured grace period. `source` is re-read on reload.
pub async fn run(settings: Settings, source: Source) -> anyhow::Result<()> {
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    let credentials = crate::open::credentials(&settings, source.open_access)?;
    let keys = crate::config::resolve_encryption_keys(&settings, &|n| std::env::var(n).ok())?;
    crate::open::protect_keys(&keys);
    // Opening backends blocks (startup checks, recovery, upstream requests):
    // off the async worker, so S3 backends can block on their own runtime.
    let opened =
        tokio::task::block_in_place(|| crate::open::open_backends(&settings, &keys, true))?;
    let stores = opened
        .iter()
        .map(|o| (o.settings.name.clone(), o.store.clone()))
        .collect();
    let open_access = source.open_access && settings.credentials.is_none();
    // The config database (IAM users): a wrong or missing key stops here.
    let iam = tokio::task::block_in_place(|| {
        crate::configdb::LiveIam::open(&settings, &|n| std::env::var(n).ok())
    })
    .with_context(|| {
        format!(
            "opening the config database {}",
            settings.config_db.path.display()
        )
    })?;
    iam.watch();
    let bootstrap = tokio::task::block_in_place(|| {
        crate::admin::password::bootstrap(&iam, &|n| std::env::var(n).ok())
    })?;
    let gateway = crate::gateway::shared(
        crate::open::gateway(&settings, stores, open_access).with_directory(iam.directory()),
    );
    let protocol = Arc::new(arc_swap::ArcSwap::from_pointee(crate::open::protocol(
        &settings,
        credentials,
    )));
    // The FUSE view, when configured, is up before READY and down after the drain.
    let mount = match &settings.fuse {
        Some(f) => Some(crate::fuse::mount(
            gateway.clone(),
            &crate::fuse::MountOptions::from_settings(f),
        )?),
        None => None,
    };
    crate::admin::reencrypt::resume(&gateway.load());
    // The certificate is read before anything listens: a bad one stops here.
    let tls: Option<crate::tls::Shared> = match &settings.advanced.tls {
        Some(t) => Some(Arc::new(arc_swap::ArcSwap::new(crate::tls::load(
            &t.cert_file,
            &t.key_file,
        )?))),
        None => None,
    };
    let reloader = Arc::new(
        Reloader::new(
            source,
            settings.clone(),
            opened,
            gateway.clone(),
            protocol.clone(),
        )
        .with_iam(iam.clone())
        .with_tls(tls.clone()),
    );
    reload_on_hangup(reloader.clone())?;
    let state = Arc::new(S3State {
        gateway,
        protocol,
        config: Some(reloader),
        iam: Some(iam),
        started: std::time::Instant::now(),
        in_flight: Default::default(),
        lockout: Default::default(),
        sessions: Some(crate::admin::session::Sessions::new(Some(bootstrap))),
    });
    crate::admin::jobs::resume_migrations(&state);
    crate::admin::history::spawn_sampler();
    let listener = tokio::net::TcpListener::bind(settings.listen_addr)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen_addr))?;
    let local = listener.local_addr()?;
    let signal = shutdown_signal()?;
    tracing::info!(addr = %local, version = env!("CARGO_PKG_VERSION"), tls = tls.is_some(), "deltaglider_proxy listening");
    // systemd Type=notify: the listener and every backend are up.
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "could not send READY=1 to systemd");
    }
    let grace = Duration::from_secs(settings.advanced.shutdown_grace_secs);
    let adv = &settings.advanced;
    let limits = crate::listener::Limits {
        header_read_timeout: Duration::from_secs(adv.header_read_timeout_secs),
        idle_timeout: Duration::from_secs(adv.idle_timeout_secs),
        max_connections: adv.max_connections as usize,
    };
    let shutdown = async move {
        signal.await;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    };
    crate::listener::serve(listener, app(state), limits, shutdown, grace, tls).await;
    if let Some(m) = mount {
        m.unmount();
    }
    tracing::info!("stopped");
    Ok(())
}
