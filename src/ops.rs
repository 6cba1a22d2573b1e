//! Operator commands that work on a backend directly, with the same config
//! and environment as `serve`: `encryption status | audit | rotate-kek |
//! export`. They are safe to run next to a live server (they never remove
//! temp files or uploads), and print text, or JSON with `--format json`.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::config::Settings;
use crate::engine::maintenance::Finding;
use crate::open::open_stores;

fn open(
    settings: &Settings,
) -> anyhow::Result<std::collections::BTreeMap<String, std::sync::Arc<crate::engine::ObjectStore>>>
{
    let keys = crate::config::resolve_encryption_keys(settings, &|n| std::env::var(n).ok())?;
    open_stores(settings, &keys, false)
}

/// The gateway over every backend, for a command that reads through it
/// (bucket names and routing as clients see them); keys stay out of dumps.
fn open_gateway(settings: &Settings) -> anyhow::Result<crate::gateway::Gateway> {
    let keys = crate::config::resolve_encryption_keys(settings, &|n| std::env::var(n).ok())?;
    crate::open::protect_keys(&keys);
    crate::open::open_gateway(settings, &keys, false, false)
}

/// `encryption status`: enabled state, mode, key ids in use with object
/// counts, plaintext and undecryptable counts. Never key material.
pub fn status(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let stores = open(settings)?;
    let mut out = Vec::new();
    for b in &settings.backends {
        out.push(stores[&b.name].encryption_status()?);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "backends": out }))?
        );
        return Ok(());
    }
    for s in &out {
        println!("backend {}: encryption {}", s.backend, s.mode);
        if let Some(id) = &s.current_key_id {
            println!("  current key id: {id}");
        }
        if let Some(id) = &s.legacy_key_id {
            println!("  legacy key id:  {id}");
        }
        let c = &s.census;
        println!(
            "  objects: {} ({} encrypted, {} plaintext, {} undecryptable)",
            c.objects, c.encrypted, c.plaintext, c.undecryptable
        );
        for (id, n) in &c.key_ids {
            println!("  key id {id}: {n} objects");
        }
    }
    Ok(())
}

fn print_findings(findings: &[Finding], json: bool, what: &str) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "problems": findings }))?
        );
    } else {
        for f in findings {
            println!("{}/{}: {}", f.bucket, f.key, f.problem);
        }
        println!("{what}: {} problem(s)", findings.len());
    }
    Ok(())
}

/// `encryption audit`: read-only; checks every object's marker, envelope and
/// header (`--deep`: every chunk). Fails when it finds a problem.
pub fn audit(settings: &Settings, deep: bool, json: bool) -> anyhow::Result<()> {
    let stores = open(settings)?;
    let mut all = Vec::new();
    for b in &settings.backends {
        all.extend(stores[&b.name].audit(deep)?);
    }
    print_findings(&all, json, "audit")?;
    if !all.is_empty() {
        bail!("the audit found {} problem(s)", all.len());
    }
    Ok(())
}

/// `encryption rotate-kek`: with the new key configured as the key (new
/// key_id) and the old one as legacy_key/legacy_key_id, rewraps every data
/// key under the new key. Bodies are untouched. When nothing is left under
/// other key ids, their check records are retired and the legacy key is no
/// longer needed.
pub fn rotate_kek(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let stores = open(settings)?;
    let mut failures = Vec::new();
    let mut report = Vec::new();
    for b in &settings.backends {
        let store = &stores[&b.name];
        let Some(current) = &store.encryption().current else {
            continue;
        };
        let t = Instant::now();
        let (n, failed) = store.rotate_kek()?;
        let pending_parts = store.parts_under_old_keys()?;
        let secs = t.elapsed().as_secs_f64();
        let mut retired = Vec::new();
        if failed.is_empty() && pending_parts == 0 {
            retired = store.retire_other_keys(Some(&current.id))?;
        }
        if !json {
            println!(
                "backend {}: rewrapped {n} data keys under key id {} in {secs:.2} s ({:.0} objects/s)",
                b.name,
                current.id,
                n as f64 / secs.max(1e-9)
            );
            if pending_parts > 0 {
                println!(
                    "  {pending_parts} multipart part(s) still use an old key id: complete or abort those uploads, then run again"
                );
            }
            if !retired.is_empty() {
                println!(
                    "  retired key id(s): {} (the legacy key is no longer needed)",
                    retired.join(", ")
                );
            }
        }
        report.push(serde_json::json!({"backend": b.name, "rewrapped": n, "seconds": secs, "failed": failed.len(),
            "pending_parts": pending_parts, "retired_key_ids": retired}));
        failures.extend(failed);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "backends": report, "problems": failures })
            )?
        );
    } else if !failures.is_empty() {
        print_findings(&failures, false, "rotate-kek")?;
    }
    if !failures.is_empty() {
        bail!("{} object(s) could not be rewrapped", failures.len());
    }
    Ok(())
}

/// `encryption export --bucket B --target DIR`: plaintext copies of every
/// object of a bucket, for disaster recovery. DIR must not exist.
pub fn export(settings: &Settings, bucket: &str, target: &Path) -> anyhow::Result<()> {
    if target.exists() {
        bail!(
            "{} already exists: export writes into a new directory only",
            target.display()
        );
    }
    let stores = open(settings)?;
    let (backend, real) = match settings.buckets.get(bucket) {
        Some(b) => (b.backend.clone(), b.real_name.clone()),
        None => (settings.default_backend.clone(), bucket.to_owned()),
    };
    let store = stores
        .get(&backend)
        .context("bucket routes to an unknown backend")?;
    if !store.bucket_exists_blocking(&real)? {
        bail!("no such bucket: {bucket}");
    }
    let n = store
        .export(&real, target)
        .with_context(|| format!("exporting {bucket}"))?;
    println!("exported {n} objects of {bucket} to {}", target.display());
    Ok(())
}

/// `encryption reencrypt [--bucket B]...`: rewrites every object that does not
/// match the current config, with the buckets write-gated (the server answers
/// writes with 503 SlowDown meanwhile). Resumes an interrupted job. When the
/// backend no longer holds objects under other key ids, their check records
/// are retired.
pub fn reencrypt(
    settings: &Settings,
    buckets: &[String],
    pause_ms: u64,
    json: bool,
) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let stores = open(settings)?;
    let mut report = Vec::new();
    let mut failed_total = 0;
    for b in &settings.backends {
        let store = &stores[&b.name];
        // Client-facing names to the bucket names on this backend.
        let mine: Vec<String> = buckets
            .iter()
            .filter_map(|name| match settings.buckets.get(name) {
                Some(bs) if bs.backend == b.name => Some(bs.real_name.clone()),
                None if settings.default_backend == b.name => Some(name.clone()),
                _ => None,
            })
            .collect();
        if !buckets.is_empty() && mine.is_empty() {
            continue;
        }
        let job = store.start_reencrypt(&mine)?;
        let tty = std::io::stderr().is_terminal();
        let t = Instant::now();
        let fin = store.run_reencrypt(std::time::Duration::from_millis(pause_ms), &mut |j| {
            let msg = format!(
                "reencrypt {}: bucket {}/{}  rewritten {}  unchanged {}  failed {}",
                b.name,
                (j.bucket_index + 1).min(j.buckets.len()),
                j.buckets.len(),
                j.rewritten,
                j.skipped,
                j.failed
            );
            if tty {
                eprint!("\r{msg}   ");
            } else if !json {
                eprintln!("{msg}");
            }
        })?;
        if tty {
            eprintln!();
        }
        failed_total += fin.failed;
        let retired = if fin.failed == 0 {
            store.retire_unused_keys()?
        } else {
            Vec::new()
        };
        if !json {
            println!(
                "backend {}: rewrote {} objects, {} already matched, {} failed in {:.1} s{}",
                b.name,
                fin.rewritten,
                fin.skipped,
                fin.failed,
                t.elapsed().as_secs_f64(),
                if retired.is_empty() {
                    String::new()
                } else {
                    format!("; retired key id(s) {}", retired.join(", "))
                }
            );
        }
        let _ = job;
        report.push(serde_json::json!({"backend": b.name, "buckets": fin.buckets, "rewritten": fin.rewritten,
            "unchanged": fin.skipped, "failed": fin.failed, "retired_key_ids": retired}));
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "backends": report }))?
        );
    }
    if failed_total > 0 {
        bail!("{failed_total} object(s) could not be rewritten (see the log)");
    }
    Ok(())
}

/// `mount`: the read-only FUSE view, served until SIGINT/SIGTERM (then
/// unmounted) or until someone unmounts it (`fusermount3 -u`).
pub fn mount(settings: &Settings, opts: &crate::fuse::MountOptions) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let gateway = crate::gateway::shared(open_gateway(settings)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal handler")?;
    let (mut term, mut int) = runtime.block_on(async {
        anyhow::Ok((
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        ))
    })?;
    let mounted = crate::fuse::mount(gateway, opts)?;
    eprintln!(
        "mounted read-only at {} (Ctrl-C, SIGTERM or `fusermount3 -u {}` unmounts)",
        mounted.mountpoint().display(),
        mounted.mountpoint().display()
    );
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "could not send READY=1 to systemd");
    }
    let why = runtime.block_on(async {
        loop {
            tokio::select! {
                _ = term.recv() => break "SIGTERM",
                _ = int.recv() => break "SIGINT",
                _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {
                    if mounted.is_finished() {
                        break "unmounted from outside";
                    }
                }
            }
        }
    });
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    tracing::info!(reason = why, "unmounting the FUSE view");
    mounted.unmount();
    Ok(())
}

fn human(n: i64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v.abs() >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// `stats`: logical bytes, stored bytes and savings per bucket and per
/// deltaspace (key prefix), as `GET /_/api/stats` reports them.
pub fn stats(settings: &Settings, bucket: Option<&str>, json: bool) -> anyhow::Result<()> {
    let gateway = open_gateway(settings)?;
    let Some(buckets) = gateway.stats_blocking(bucket)? else {
        bail!("no bucket named {:?}", bucket.unwrap_or_default());
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "buckets": buckets }))?
        );
        return Ok(());
    }
    for b in &buckets {
        println!(
            "bucket {}: {} objects, logical {}, stored {}, saved {} ({:.1}%)",
            b.bucket,
            b.objects,
            human(b.logical_bytes as i64),
            human(b.stored_bytes as i64),
            human(b.savings_bytes),
            b.savings_percent
        );
        for s in &b.deltaspaces {
            let name = if s.prefix.is_empty() {
                "(top level)"
            } else {
                &s.prefix
            };
            println!(
                "  {name}: {} objects ({} reference, {} delta, {} passthrough, {} whole), logical {}, stored {} (reference {}), saved {} ({:.1}%)",
                s.objects,
                s.references,
                s.deltas,
                s.passthrough,
                s.whole,
                human(s.logical_bytes as i64),
                human(s.stored_bytes as i64),
                human(s.reference_bytes as i64),
                human(s.savings_bytes),
                s.savings_percent
            );
        }
    }
    Ok(())
}

/// `bucket migrate`: moves `bucket` to backend `to` (as bucket `as_name`
/// there), next to a live server or on its own. The server sees the write
/// gate at once; the route switches at its next reload (or restart).
pub fn migrate(
    settings: &Settings,
    bucket: &str,
    to: &str,
    as_name: Option<&str>,
    pause_ms: u64,
) -> anyhow::Result<()> {
    use crate::engine::migrate;
    use std::io::IsTerminal;
    let gateway = open_gateway(settings)?;
    let (src, from_bucket) = gateway.route(bucket);
    let Some(dst) = gateway.store(to).cloned() else {
        anyhow::bail!("no backend named '{to}' in the configuration");
    };
    let to_bucket = as_name.map_or_else(|| from_bucket.clone(), str::to_owned);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let tty = std::io::stderr().is_terminal();
    let t = Instant::now();
    let job = runtime.block_on(async {
        let j = migrate::start(bucket, &src, &from_bucket, &dst, &to_bucket)
            .await
            .with_context(|| format!("starting to move bucket {bucket}"))?;
        if j.copied > 0 || j.phase != migrate::Phase::Copying {
            eprintln!(
                "resuming: {} objects already copied (after {:?})",
                j.copied, j.last_key
            );
        }
        migrate::run(
            &src,
            &dst,
            &from_bucket,
            std::time::Duration::from_millis(pause_ms),
            &mut |j| {
                let msg = format!(
                    "migrate {bucket}: {:?}  {} objects  {} MiB",
                    j.phase,
                    j.copied,
                    j.bytes >> 20
                );
                if tty {
                    eprint!("\r{msg}   ");
                } else {
                    eprintln!("{msg}");
                }
            },
        )
        .await
        .with_context(|| format!("moving bucket {bucket}"))
    })?;
    if tty {
        eprintln!();
    }
    println!(
        "bucket {bucket}: {} objects ({} bytes) copied to backend '{}' as {} and verified in {:.1} s",
        job.copied,
        job.bytes,
        job.to_backend,
        job.to_bucket,
        t.elapsed().as_secs_f64()
    );
    println!(
        "the route switches when the server reloads its configuration (systemctl reload deltaglider-proxy); writes to {bucket} stay paused until then"
    );
    println!(
        "to make it permanent, add under storage.buckets: {bucket}: {{backend: {}, alias: {}}}",
        job.to_backend, job.to_bucket
    );
    Ok(())
}
