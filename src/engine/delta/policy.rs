//! Which objects go through the delta path: the file-type routing table
//! (one place; documented in docs/delta.md) and the per-bucket policy.

/// Versioned binaries whose releases share most of their bytes: archives,
/// packages, disk images, database dumps, installers, model checkpoints.
const DELTA_TYPES: &[&str] = &[
    // archives and packages
    ".zip",
    ".jar",
    ".war",
    ".ear",
    ".apk",
    ".aab",
    ".aar",
    ".whl",
    ".egg",
    ".nupkg",
    ".gem",
    ".crate",
    ".tar",
    ".tar.gz",
    ".tgz",
    ".tar.bz2",
    ".tbz2",
    ".tar.xz",
    ".txz",
    ".tar.zst",
    ".tzst",
    ".7z",
    ".rar",
    ".cpio",
    ".deb",
    ".udeb",
    ".rpm",
    ".apkg",
    ".snap",
    ".flatpak",
    // disk and VM images, firmware
    ".iso",
    ".img",
    ".qcow2",
    ".vmdk",
    ".vdi",
    ".vhd",
    ".vhdx",
    ".raw",
    ".dmg",
    ".ova",
    ".ovf",
    ".squashfs",
    ".wim",
    ".fw",
    ".hex",
    ".uf2",
    ".elf",
    ".so",
    ".dll",
    ".dylib",
    ".a",
    ".o",
    // database dumps and backups
    ".sql",
    ".dump",
    ".pgdump",
    ".bak",
    ".backup",
    ".db",
    ".sqlite",
    ".sqlite3",
    ".mdb",
    ".bson",
    ".rdb",
    ".aof",
    // installers and executables
    ".exe",
    ".msi",
    ".msix",
    ".appx",
    ".pkg",
    ".appimage",
    ".run",
    ".bin",
    ".app",
    // model checkpoints and tensors
    ".pt",
    ".pth",
    ".ckpt",
    ".safetensors",
    ".onnx",
    ".h5",
    ".hdf5",
    ".pb",
    ".tflite",
    ".gguf",
    ".ggml",
    ".npz",
    ".npy",
    ".pkl",
    ".joblib",
    ".mlmodel",
    ".params",
];

/// Content whose versions share almost nothing byte-wise, or that is one
/// compressed stream already: stored as is without trying.
const PASSTHROUGH_TYPES: &[&str] = &[
    // images
    ".jpg", ".jpeg", ".png", ".gif", ".webp", ".heic", ".heif", ".avif", ".bmp", ".tif", ".tiff",
    ".ico", ".svgz", ".jxl", // video and audio
    ".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".wmv", ".flv", ".mpg", ".mpeg", ".ts",
    ".mp3", ".flac", ".ogg", ".oga", ".opus", ".aac", ".m4a", ".wav", ".wma",
    // single compressed streams
    ".gz", ".bz2", ".xz", ".zst", ".lz4", ".lz", ".lzma", ".br", ".z", ".sz",
    // encrypted / signatures
    ".gpg", ".asc", ".sig", ".age",
];

/// What the table says about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileClass {
    Delta,
    Passthrough,
    /// Not in the table: stored as is.
    Unknown,
}

/// Classifies `key` by its longest matching suffix (so `.tar.gz` is an
/// archive although `.gz` alone is a single compressed stream).
pub fn classify(key: &str) -> FileClass {
    let name = key.rsplit('/').next().unwrap_or(key).to_ascii_lowercase();
    let best = |table: &[&str]| {
        table
            .iter()
            .filter(|s| name.len() > s.len() && name.ends_with(*s))
            .map(|s| s.len())
            .max()
    };
    match (best(DELTA_TYPES), best(PASSTHROUGH_TYPES)) {
        (Some(d), Some(p)) if d >= p => FileClass::Delta,
        (Some(_), None) => FileClass::Delta,
        (_, Some(_)) => FileClass::Passthrough,
        (None, None) => FileClass::Unknown,
    }
}

/// The delta policy of one bucket (on its backend).
#[derive(Debug, Clone, PartialEq)]
pub struct BucketPolicy {
    /// `false`: nothing in this bucket goes through the delta path.
    pub compression: bool,
    /// A delta is kept only when `delta_size / size` is below this.
    pub max_delta_ratio: f64,
    /// Suffixes that go through the delta path in this bucket (added to the table).
    pub delta_types: Vec<String>,
    /// Suffixes stored as is in this bucket (override the table).
    pub passthrough_types: Vec<String>,
}

impl BucketPolicy {
    /// Does `key` go through the delta path in this bucket?
    pub fn eligible(&self, key: &str) -> bool {
        if !self.compression {
            return false;
        }
        let name = key.rsplit('/').next().unwrap_or(key).to_ascii_lowercase();
        let longest = |list: &[String]| {
            list.iter()
                .filter(|s| name.len() > s.len() && name.ends_with(s.as_str()))
                .map(|s| s.len())
                .max()
        };
        match (longest(&self.delta_types), longest(&self.passthrough_types)) {
            (Some(d), Some(p)) => return d > p,
            (Some(_), None) => return true,
            (None, Some(_)) => return false,
            (None, None) => {}
        }
        classify(key) == FileClass::Delta
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        assert_eq!(classify("releases/app-1.2.zip"), FileClass::Delta);
        assert_eq!(classify("releases/app-1.2.TAR.GZ"), FileClass::Delta);
        assert_eq!(classify("logs/app.log.gz"), FileClass::Passthrough);
        assert_eq!(classify("photos/cat.JPG"), FileClass::Passthrough);
        assert_eq!(classify("db/nightly.sql"), FileClass::Delta);
        assert_eq!(classify("models/step-100.safetensors"), FileClass::Delta);
        assert_eq!(classify("notes/readme"), FileClass::Unknown);
        assert_eq!(classify(".zip"), FileClass::Unknown);
        assert_eq!(classify("dir.zip/readme.txt"), FileClass::Unknown);
    }

    #[test]
    fn bucket_overrides() {
        let mut p = BucketPolicy {
            compression: true,
            max_delta_ratio: 0.75,
            delta_types: vec![".fw".into(), ".log.gz".into()],
            passthrough_types: vec![".iso".into()],
        };
        assert!(p.eligible("a/b.zip"));
        assert!(!p.eligible("a/b.iso"));
        assert!(p.eligible("a/b.log.gz"));
        assert!(!p.eligible("a/b.gz"));
        assert!(!p.eligible("a/readme"));
        p.compression = false;
        assert!(!p.eligible("a/b.zip"));
    }
}
