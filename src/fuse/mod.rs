//! The FUSE mount: a read-only view of the decrypted objects, for
//! inspection on the box. It reads through the gateway (bucket names and
//! routing) and the object engine, never the backend's files directly.
//!
//! This module owns the mount's life: checking the mountpoint (empty, not a
//! stale mount left by a crash), mounting, and unmounting on request or when
//! dropped. `view` is the file system itself.

mod view;

use std::io;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use anyhow::{Context, bail};
use fuser::{MountOption, SessionACL, SessionUnmounter};

use crate::config::FuseSettings;
use crate::gateway::Shared;

pub use view::{TTL, ViewOptions};

/// The source the mount shows in `mount` / `findmnt` (type `fuse`).
pub const FS_NAME: &str = "deltaglider";

/// Event-loop threads serving kernel requests (reads of different files,
/// and read-ahead of one file, run in parallel).
const THREADS: usize = 4;

#[derive(Debug, Clone)]
pub struct MountOptions {
    pub mountpoint: PathBuf,
    pub allow_other: bool,
    /// Show only this bucket.
    pub bucket: Option<String>,
}

impl MountOptions {
    pub fn from_settings(f: &FuseSettings) -> MountOptions {
        MountOptions {
            mountpoint: f.mountpoint.clone(),
            allow_other: f.allow_other,
            bucket: f.bucket.clone(),
        }
    }
}

/// What is mounted at `path` according to /proc/self/mountinfo, if anything.
fn mounted_fs_type(path: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.to_str()?;
    // Fields: id parent maj:min root mountpoint opts [optional...] - fstype source superopts
    info.lines().rev().find_map(|line| {
        let mut f = line.split(' ');
        let mp = f.nth(4)?;
        if unescape_mountinfo(mp) != want {
            return None;
        }
        let mut rest = line.split(" - ").nth(1)?.split(' ');
        rest.next().map(str::to_owned)
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Refuses a mountpoint the mount would harm or could not use: missing, not
/// a directory, a stale FUSE mount left by a crashed process, already
/// mounted, or not empty (the mount would hide its files).
pub fn check_mountpoint(path: &Path) -> anyhow::Result<PathBuf> {
    let shown = path.display();
    let md = match std::fs::metadata(path) {
        Ok(md) => md,
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => bail!(
            "{shown} is a stale FUSE mount: the process that served it has exited (crash or kill -9). \
             Clear it with:  fusermount3 -u {shown}   (as root, `umount -l {shown}` works too)"
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("mountpoint {shown} does not exist; create it with:  mkdir -p {shown}")
        }
        Err(e) => return Err(e).with_context(|| format!("checking the mountpoint {shown}")),
    };
    if !md.is_dir() {
        bail!("mountpoint {shown} is not a directory");
    }
    let canonical = path
        .canonicalize()
        .with_context(|| format!("resolving the mountpoint {shown}"))?;
    if let Some(fstype) = mounted_fs_type(&canonical) {
        bail!(
            "{shown} is already a mount point ({fstype}); unmount it first:  fusermount3 -u {shown}"
        );
    }
    let mut entries =
        std::fs::read_dir(path).with_context(|| format!("reading the mountpoint {shown}"))?;
    if let Some(first) = entries.next() {
        let first = first?.file_name();
        bail!(
            "mountpoint {shown} is not empty (it holds {:?} and maybe more); the mount would hide \
             those files. Use an empty directory.",
            first
        );
    }
    Ok(canonical)
}

/// A live mount. Dropping it unmounts.
pub struct Mounted {
    mountpoint: PathBuf,
    unmounter: Option<SessionUnmounter>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

/// Mounts the read-only view of `gateway`'s buckets at `opts.mountpoint`
/// and serves it on background threads.
pub fn mount(gateway: Shared, opts: &MountOptions) -> anyhow::Result<Mounted> {
    let mountpoint = check_mountpoint(&opts.mountpoint)?;
    if let Some(b) = &opts.bucket {
        let buckets = gateway
            .load()
            .list_buckets_blocking()
            .context("listing the buckets")?;
        if !buckets.iter().any(|(name, _)| name == b) {
            bail!("no bucket named {b:?} to mount");
        }
    }
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName(FS_NAME.into()),
        MountOption::RO,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoExec,
        MountOption::NoAtime,
        MountOption::DefaultPermissions,
    ];
    config.n_threads = Some(THREADS);
    config.clone_fd = true;
    let view = || {
        view::View::new(
            gateway.clone(),
            ViewOptions {
                bucket: opts.bucket.clone(),
                allow_other: opts.allow_other,
            },
        )
    };
    let as_root = rustix::process::geteuid().is_root();
    let mut session = if opts.allow_other {
        config.acl = SessionACL::All;
        fuser::Session::new(view(), &mountpoint, &config)
    } else if as_root {
        config.acl = SessionACL::Owner;
        fuser::Session::new(view(), &mountpoint, &config)
    } else {
        // A service user's mount: root may inspect it too (allow_root).
        // Without the privilege for that (fusermount3 without
        // user_allow_other), only the mounting user can.
        config.acl = SessionACL::RootAndOwner;
        fuser::Session::new(view(), &mountpoint, &config).or_else(|e| {
            tracing::warn!(error = %e, "mounting with allow_root failed; mounting for this user only (root cannot read it)");
            config.acl = SessionACL::Owner;
            fuser::Session::new(view(), &mountpoint, &config)
        })
    }
    .map_err(|e| {
        let hint = if opts.allow_other {
            " (allow_other for a non-root user needs `user_allow_other` in /etc/fuse.conf)"
        } else {
            ""
        };
        anyhow::anyhow!(
            "cannot mount the FUSE view at {}: {e}{hint}; mounting needs /dev/fuse and root, \
             CAP_SYS_ADMIN or fusermount3 (package fuse3)",
            mountpoint.display()
        )
    })?;
    let unmounter = session.unmount_callable();
    let thread = std::thread::Builder::new()
        .name("fuse".into())
        .spawn(move || session.run())
        .context("starting the FUSE thread")?;
    tracing::info!(
        mountpoint = %mountpoint.display(),
        allow_other = opts.allow_other,
        bucket = opts.bucket.as_deref().unwrap_or("*"),
        ttl_secs = TTL.as_secs(),
        "FUSE view mounted (read-only)"
    );
    Ok(Mounted {
        mountpoint,
        unmounter: Some(unmounter),
        thread: Some(thread),
    })
}

impl Mounted {
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// True when the mount ended without us (`fusermount3 -u`, `umount`).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Unmounts and waits for the serving threads. A mount still in use (a
    /// shell inside it, an open file) is detached lazily: it disappears from
    /// the namespace now and from the kernel when the last user lets go.
    pub fn unmount(mut self) {
        self.unmount_inner();
    }

    fn unmount_inner(&mut self) {
        let shown = self.mountpoint.display().to_string();
        let mut detached = false;
        if let Some(mut u) = self.unmounter.take()
            && !self.is_finished()
        {
            match u.unmount() {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    match rustix::mount::unmount(
                        &self.mountpoint,
                        rustix::mount::UnmountFlags::DETACH,
                    ) {
                        Ok(()) => {
                            detached = true;
                            tracing::warn!(mountpoint = %shown, "FUSE view busy (a process has a file or directory open in it): detached; those open files fail once this process exits")
                        }
                        Err(e) => {
                            tracing::error!(mountpoint = %shown, error = %e, "could not detach the FUSE view; clear it with: fusermount3 -u -z {shown}")
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(mountpoint = %shown, error = %e, "could not unmount the FUSE view; clear it with: fusermount3 -u {shown}")
                }
            }
        }
        let Some(t) = self.thread.take() else { return };
        if detached {
            // The kernel keeps the connection while files are open; the
            // session ends when this process exits and closes /dev/fuse.
            tracing::info!(mountpoint = %shown, "FUSE view unmounted (lazily)");
            return;
        }
        match t.join() {
            Ok(Ok(())) => tracing::info!(mountpoint = %shown, "FUSE view unmounted"),
            Ok(Err(e)) => {
                tracing::warn!(mountpoint = %shown, error = %e, "FUSE session ended with an error")
            }
            Err(_) => tracing::error!(mountpoint = %shown, "FUSE thread panicked"),
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.unmount_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/srv/a\040b"), "/srv/a b");
        assert_eq!(unescape_mountinfo(r"/x\134y"), r"/x\y");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn refuses_bad_mountpoints() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = check_mountpoint(&missing).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let e = check_mountpoint(&file).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
        let e = check_mountpoint(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not empty"), "{e}");
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        check_mountpoint(&empty).unwrap();
        // The root file system is mounted at "/".
        let e = check_mountpoint(Path::new("/")).unwrap_err().to_string();
        assert!(e.contains("already a mount point"), "{e}");
    }
}
