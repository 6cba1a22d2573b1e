//! Engine state that is not an object (key check records, jobs): small
//! documents by name, written atomically, in one home per backend. The
//! engine names them (`keys/<key-id>.json`, `jobs/reencrypt.json`); each
//! backend decides where they live. For the filesystem backend that is the
//! internal area, `<root>/.dg/<name>`, as `docs/on-disk-format.md` says.

use std::fs;
use std::io::ErrorKind;
use std::path::PathBuf;

use super::fs::{FsBackend, write_atomic};
use super::{Result, StorageError};

/// Small named documents of the engine's own, per backend.
pub trait StateStore: Send + Sync {
    /// The document `name`, or `None` if there is none.
    fn read_state(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Writes `name` atomically (readers see the old or the new document).
    fn write_state(&self, name: &str, data: &[u8]) -> Result<()>;
    /// Renames a document (atomic); a missing `from` is `Ok(false)`.
    fn rename_state(&self, from: &str, to: &str) -> Result<bool>;
    /// Names of the documents directly under `dir` (`"keys"` → `["k1.json"]`).
    fn list_state(&self, dir: &str) -> Result<Vec<String>>;
    /// Whether `name` exists: the cheap check a write gate makes per write.
    fn state_exists(&self, name: &str) -> bool;
}

/// `a/b.json`: segments of `[A-Za-z0-9._-]`, none empty, `.` or `..`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        })
}

impl FsBackend {
    fn state_path(&self, name: &str) -> Result<PathBuf> {
        if !valid_name(name) {
            return Err(StorageError::Io(std::io::Error::other(format!(
                "invalid state document name {name:?}"
            ))));
        }
        Ok(self.internal_dir().join(name))
    }
}

impl StateStore for FsBackend {
    fn read_state(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match fs::read(self.state_path(name)?) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn write_state(&self, name: &str, data: &[u8]) -> Result<()> {
        let p = self.state_path(name)?;
        fs::create_dir_all(
            p.parent()
                .expect("state documents live in the internal area"),
        )?;
        Ok(write_atomic(&p, data)?)
    }

    fn rename_state(&self, from: &str, to: &str) -> Result<bool> {
        let (a, b) = (self.state_path(from)?, self.state_path(to)?);
        fs::create_dir_all(b.parent().expect("internal area"))?;
        match fs::rename(&a, &b) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn list_state(&self, dir: &str) -> Result<Vec<String>> {
        let rd = match fs::read_dir(self.state_path(dir)?) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e?;
            if e.file_type()?.is_file()
                && let Some(n) = e.file_name().to_str()
            {
                out.push(n.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    fn state_exists(&self, name: &str) -> bool {
        self.state_path(name).is_ok_and(|p| p.exists())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_in_the_internal_area() {
        let d = tempfile::tempdir().unwrap();
        let b = FsBackend::open(d.path()).unwrap();
        b.write_state("keys/k1.json", b"{}").unwrap();
        assert_eq!(
            b.read_state("keys/k1.json").unwrap().as_deref(),
            Some(&b"{}"[..])
        );
        assert_eq!(b.list_state("keys").unwrap(), vec!["k1.json"]);
        assert!(
            b.rename_state("keys/k1.json", "keys/retired/k1.json")
                .unwrap()
        );
        assert!(!b.state_exists("keys/k1.json"));
        assert!(b.list_state("nothing").unwrap().is_empty());
        for bad in ["../x", "keys/../../x", "/etc/passwd", "a//b", "", "a/./b"] {
            assert!(b.write_state(bad, b"x").is_err(), "{bad}");
        }
        assert!(d.path().join(".dg/keys/retired/k1.json").exists());
    }
}
