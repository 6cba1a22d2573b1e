//! Storage backends: where object bytes and their metadata document live.
//!
//! This room knows files, directories and extended attributes. It does not
//! know S3 error codes, the metadata schema (the engine hands it an opaque
//! blob for `user.dg.metadata`), encryption or delta compression.
//! Every call here is blocking; callers run them on the blocking pool.

pub mod fs;
pub mod keypath;
pub mod state;
pub mod uploads;

use std::io;

pub use fs::FsBackend;
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
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),
}

impl StorageError {
    /// True for conditions that may pass (disk full, I/O hiccups).
    pub fn is_temporary(&self) -> bool {
        matches!(self, StorageError::Io(_))
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;
