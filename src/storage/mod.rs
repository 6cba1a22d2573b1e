//! Storage backends: where object bytes and their metadata document live.
//!
//! One trait ([`Backend`]) with two implementations: the filesystem backend
//! (files, directories, the `user.dg.metadata` xattr) and the S3 backend (an
//! upstream S3 service). This room does not know S3 error codes as a
//! server speaks them, the metadata schema (the engine hands it an opaque
//! document), encryption or delta compression. Every call here is
//! blocking; callers run them on the blocking pool.

pub mod backend;
pub mod fs;
pub mod keypath;
pub mod s3;
pub mod state;
pub mod uploads;

use std::io;

pub use backend::{
    Backend, Body, BodyReader, BucketEntry, Found, Loc, RawObject, SliceBody, StoredBody,
    StoredPart, UploadStore, WalkItem, read_full_at,
};
pub use fs::{FileBody, FsBackend, TempFile};
pub use state::StateStore;

/// What went wrong in a storage call. Temporary conditions (disk full, I/O)
/// are `Io`; the rest are permanent answers about the request.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("no such bucket")]
    NoSuchBucket,
    #[error("bucket already exists")]
    BucketExists,
    #[error("bucket is not empty")]
    BucketNotEmpty,
    #[error("no such object")]
    NoSuchKey,
    #[error("no such upload")]
    NoSuchUpload,
    #[error("invalid object key: {0}")]
    InvalidKey(#[from] keypath::KeyError),
    #[error("key conflicts with an existing {0}")]
    KeyConflict(&'static str),
    #[error("metadata document too large for the filesystem ({0} bytes)")]
    MetadataTooLarge(usize),
    #[error("directory objects (keys ending in '/') must be empty")]
    NonEmptyDirectoryObject,
    /// The object's path crosses a symbolic link inside the data directory
    /// (never followed; the path is for the log, not for clients).
    #[error("the object path crosses a symbolic link in the data directory: {}", .0.display())]
    Symlink(std::path::PathBuf),
    /// An upstream S3 service refused or failed a request (S3 backends).
    #[error("upstream S3 error {code} (HTTP {}): {message}", status.map_or("-".to_string(), |s| s.to_string()))]
    Upstream {
        status: Option<u16>,
        code: String,
        message: String,
    },
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),
}

impl StorageError {
    /// True for conditions that may pass (disk full, I/O hiccups).
    pub fn is_temporary(&self) -> bool {
        matches!(self, StorageError::Io(_) | StorageError::Upstream { .. })
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;
