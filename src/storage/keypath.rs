//! The mapping from S3 object keys to relative filesystem paths, and the
//! rules that keep every key inside its bucket directory.
//!
//! A key is split on `/`; each segment becomes one path component. A key that
//! ends in `/` is a directory object (a "folder marker"): it is the directory
//! itself, with its metadata on the directory. Keys that could escape the
//! root or that the filesystem cannot hold are refused here, before any I/O.

use std::path::PathBuf;

/// S3's own limit on a key's length in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// The longest file name ext4, xfs and btrfs hold.
pub const MAX_SEGMENT_BYTES: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key is empty")]
    Empty,
    #[error("the key is longer than {MAX_KEY_BYTES} bytes")]
    TooLong,
    #[error("a path segment is longer than {MAX_SEGMENT_BYTES} bytes")]
    SegmentTooLong,
    #[error("the key contains a NUL character")]
    Nul,
    #[error("the key has an empty path segment ('//' or a leading '/')")]
    EmptySegment,
    #[error("the key has a '.' or '..' path segment")]
    DotSegment,
    /// Keys under `.dg/` hold the proxy's own objects on S3 backends.
    #[error("keys under '.dg/' are reserved for the proxy's own data on this backend")]
    Reserved,
}

impl KeyError {
    /// `KeyTooLong`-style errors map to a different S3 code than the rest.
    pub fn is_length(&self) -> bool {
        matches!(self, KeyError::TooLong | KeyError::SegmentTooLong)
    }
}

/// A validated object key and its place under the bucket directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPath {
    /// Path relative to the bucket directory.
    pub rel: PathBuf,
    /// The key ends in `/`: the object is the directory itself.
    pub is_dir: bool,
}

/// Validates `key` and returns where it lives under the bucket directory.
pub fn object_path(key: &str) -> Result<ObjectPath, KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KeyError::TooLong);
    }
    if key.contains('\0') {
        return Err(KeyError::Nul);
    }
    let (body, is_dir) = match key.strip_suffix('/') {
        Some(b) => (b, true),
        None => (key, false),
    };
    if body.is_empty() {
        return Err(KeyError::EmptySegment);
    }
    let mut rel = PathBuf::new();
    for seg in body.split('/') {
        if seg.is_empty() {
            return Err(KeyError::EmptySegment);
        }
        if seg == "." || seg == ".." {
            return Err(KeyError::DotSegment);
        }
        if seg.len() > MAX_SEGMENT_BYTES {
            return Err(KeyError::SegmentTooLong);
        }
        rel.push(seg);
    }
    Ok(ObjectPath { rel, is_dir })
}

/// S3's rules for general purpose bucket names: the one rule of the whole
/// program (config lint, CreateBucket, addressing, the filesystem layout,
/// which relies on it to keep names safe as directory names and away from
/// the internal `.dg` area). Returns why a name is invalid.
pub fn check_bucket_name(name: &str) -> Result<(), String> {
    let len = name.len();
    if !(3..=63).contains(&len) {
        return Err(format!("must be 3 to 63 characters long (is {len})"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        return Err(format!(
            "may contain only lower-case letters, digits, '.' and '-' (found {c:?})"
        ));
    }
    let first = name.as_bytes()[0];
    let last = name.as_bytes()[len - 1];
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err("must start and end with a letter or digit".into());
    }
    if name.contains("..") {
        return Err("must not contain \"..\"".into());
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("must not be formatted as an IPv4 address".into());
    }
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(prefix) {
            return Err(format!("must not start with \"{prefix}\" (reserved by S3)"));
        }
    }
    for suffix in ["-s3alias", "--ol-s3", "--x-s3", "--table-s3", ".mrap"] {
        if name.ends_with(suffix) {
            return Err(format!("must not end with \"{suffix}\" (reserved by S3)"));
        }
    }
    Ok(())
}

/// Whether `name` is a valid bucket name (see [`check_bucket_name`]).
pub fn valid_bucket_name(name: &str) -> bool {
    check_bucket_name(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_nested_keys() {
        assert_eq!(object_path("a").unwrap().rel, PathBuf::from("a"));
        let p = object_path("a/b/c.txt").unwrap();
        assert_eq!(p.rel, PathBuf::from("a/b/c.txt"));
        assert!(!p.is_dir);
        let d = object_path("a/b/").unwrap();
        assert_eq!(d.rel, PathBuf::from("a/b"));
        assert!(d.is_dir);
    }

    #[test]
    fn traversal_and_bad_names_refused() {
        for k in [
            "",
            "/",
            "/etc/passwd",
            "a//b",
            "..",
            "../x",
            "a/../../x",
            "a/./b",
            "x\0y",
            "./",
        ] {
            assert!(object_path(k).is_err(), "{k:?} must be refused");
        }
        assert_eq!(object_path(&"a".repeat(256)), Err(KeyError::SegmentTooLong));
        assert_eq!(object_path(&"a/".repeat(600)), Err(KeyError::TooLong));
        // dots inside names are fine
        assert!(object_path("a/..b/c..").is_ok());
        assert!(object_path("...").is_ok());
    }

    #[test]
    fn bucket_names() {
        for n in ["abc", "my-bucket", "a.b.c", "123"] {
            assert!(valid_bucket_name(n), "{n}");
        }
        for n in [
            "ab",
            "ABC",
            "-abc",
            "abc-",
            "a..b",
            "192.168.1.1",
            ".dg",
            "a_b",
            "xn--abc",
            "sthree-x",
            "x--ol-s3",
            "x--x-s3",
            "x.mrap",
            "abc-s3alias",
            "amzn-s3-demo-bucket",
            "x--table-s3",
        ] {
            assert!(!valid_bucket_name(n), "{n}");
        }
    }
}
