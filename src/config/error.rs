//! Error types of the config module: [`ConfigError`] (everything `load`, `lint`
//! and `resolve_encryption_keys` can fail with) and [`Problem`] (one validation
//! finding, located by a field path and, where known, a YAML line and column).
//!
//! No error message built here or elsewhere in the module ever contains key
//! material or a secret value.

use std::fmt;
use std::path::PathBuf;

/// One validation finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted field path, e.g. `storage.backends[1].encryption.mode`.
    pub field: String,
    /// 1-based `(line, column)` in the YAML file, when known.
    pub location: Option<(u64, u64)>,
    /// What is wrong, and where practical how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some((line, column)) => write!(
                f,
                "{} (line {line} column {column}): {}",
                self.field, self.message
            ),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

/// Everything that can go wrong while loading, linting or resolving keys.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file is not valid YAML, or does not have the expected shape
    /// (unknown field, wrong type, duplicate key...). Serde stops at the first
    /// such error, so there is exactly one.
    #[error("{file}: {}{message}", fmt_location(*.location))]
    Parse {
        /// The file name as given, or `<input>`.
        file: String,
        /// 1-based `(line, column)`, when the parser knows it.
        location: Option<(u64, u64)>,
        /// The parser's message without location suffix.
        message: String,
        /// A multi-line rendering with a source excerpt and a caret, for
        /// terminals (`config lint`); `Display` does not include it.
        snippet: String,
    },

    /// The file parsed but failed validation; every problem found is listed.
    #[error("{file}: {} configuration problem(s):{}", problems.len(), fmt_list(problems))]
    Invalid {
        file: String,
        problems: Vec<Problem>,
    },

    /// `resolve_encryption_keys` could not produce every configured key.
    /// The messages name the variable or the file, never the key.
    #[error("encryption keys could not be resolved:{}", fmt_list(problems))]
    Keys { problems: Vec<String> },
}

impl ConfigError {
    /// The validation problems, if this is [`ConfigError::Invalid`].
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

fn fmt_location(location: Option<(u64, u64)>) -> String {
    match location {
        Some((line, column)) => format!("line {line} column {column}: "),
        None => String::new(),
    }
}

fn fmt_list<T: fmt::Display>(items: &[T]) -> String {
    let mut out = String::new();
    for item in items {
        out.push_str("\n  - ");
        out.push_str(&item.to_string());
    }
    out
}
