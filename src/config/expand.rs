//! `${env:NAME}` references in string values.
//!
//! Expansion is done per string value *after* YAML parsing (on the
//! deserialized `Spanned<String>` values, see `raw.rs`), never on the raw
//! text: an expanded value can therefore never change the YAML structure
//! (no injection through a variable holding `": "` or a newline), and every
//! error still knows the line and column of the value it came from.
//!
//! Syntax:
//! * `${env:NAME}` is replaced by the value of the environment variable
//!   `NAME` (`NAME` = `[A-Za-z_][A-Za-z0-9_]*`); it may appear anywhere in a
//!   string, any number of times (`https://${env:HOST}:9000`).
//! * `$${` produces a literal `${` (escape).
//! * `${iam:username}` and `${aws:username}` are IAM policy variables and
//!   stay as written (the policy engine fills them in per request).
//! * any other `${...}` is an error (most likely a forgotten `env:`).
//! * a lone `$` is literal.
//! * expansion is not recursive: a value containing `${env:...}` is kept as is.
//!
//! The environment is always a caller-supplied lookup, never `std::env`.

use std::fmt;

/// Why a string could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ExpandError {
    /// The variable is not set in the environment.
    Unset(String),
    /// `${env:` without a closing `}`.
    Unterminated,
    /// `${env:NAME}` with a name that is not a valid variable name.
    BadName(String),
    /// `${something}` that is not an `env:` reference.
    Unsupported(String),
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpandError::Unset(name) => {
                write!(
                    f,
                    "environment variable {name} is not set (referenced as ${{env:{name}}})"
                )
            }
            ExpandError::Unterminated => {
                f.write_str("unterminated ${env:...} reference (missing `}`)")
            }
            ExpandError::BadName(name) => write!(
                f,
                "`{name}` is not a valid environment variable name in ${{env:...}} \
                 (expected [A-Za-z_][A-Za-z0-9_]*)"
            ),
            ExpandError::Unsupported(inner) => write!(
                f,
                "unsupported reference `${{{inner}}}`: only ${{env:NAME}} is supported \
                 (write $${{ for a literal ${{)"
            ),
        }
    }
}

/// IAM policy variables, kept as written for the policy engine to fill in
/// per request (`resources: ["home/${iam:username}/*"]`).
const POLICY_VARIABLES: &[&str] = &["iam:username", "aws:username"];

/// Whether `name` is a valid variable name for `${env:NAME}`.
pub(super) fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One piece of a parsed string.
enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

fn parse(input: &str) -> Result<Vec<Piece<'_>>, ExpandError> {
    let mut pieces = Vec::new();
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            pieces.push(Piece::Text(&rest[..pos]));
            pieces.push(Piece::Text("${"));
            rest = tail;
        } else if let Some(body) = after.strip_prefix("${") {
            pieces.push(Piece::Text(&rest[..pos]));
            let end = body.find('}').ok_or(ExpandError::Unterminated)?;
            let inner = &body[..end];
            match inner.strip_prefix("env:") {
                Some(name) if is_var_name(name) => pieces.push(Piece::Var(name)),
                None if POLICY_VARIABLES.contains(&inner) => {
                    pieces.push(Piece::Text(&after[..2 + end + 1]));
                }
                Some(name) => return Err(ExpandError::BadName(name.to_string())),
                None => return Err(ExpandError::Unsupported(inner.to_string())),
            }
            rest = &body[end + 1..];
        } else {
            pieces.push(Piece::Text(&rest[..=pos]));
            rest = &after[1..];
        }
    }
    pieces.push(Piece::Text(rest));
    Ok(pieces)
}

/// Expands every `${env:NAME}` in `input`.
pub(super) fn expand(
    input: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(input.len());
    for piece in parse(input)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(name) => match env(name) {
                Some(value) => out.push_str(&value),
                None => return Err(ExpandError::Unset(name.to_string())),
            },
        }
    }
    Ok(out)
}

/// Whether `input` contains at least one `${env:...}` reference.
pub(super) fn has_reference(input: &str) -> bool {
    matches!(parse(input), Ok(pieces) if pieces.iter().any(|p| matches!(p, Piece::Var(_))))
}

/// If `input` is exactly one reference `${env:NAME}` (surrounding whitespace
/// allowed), returns `NAME`. Used for `key:` fields, which may hold nothing
/// else.
pub(super) fn whole_reference(input: &str) -> Option<&str> {
    let name = input.trim().strip_prefix("${env:")?.strip_suffix('}')?;
    is_var_name(name).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_variables_stay() {
        let e = |_: &str| Some("X".to_string());
        assert_eq!(
            expand("home/${iam:username}/${env:A}/${aws:username}", &e).unwrap(),
            "home/${iam:username}/X/${aws:username}"
        );
        assert!(expand("${iam:userid}", &e).is_err());
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("s3.example.com".into()),
            "EMPTY" => Some(String::new()),
            "NESTED" => Some("${env:HOST}".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_anywhere_in_the_string() {
        assert_eq!(
            expand("https://${env:HOST}:9000/${env:HOST}", &env).unwrap(),
            "https://s3.example.com:9000/s3.example.com"
        );
        assert_eq!(expand("${env:EMPTY}", &env).unwrap(), "");
        assert_eq!(expand("plain", &env).unwrap(), "plain");
    }

    #[test]
    fn dollar_rules() {
        assert_eq!(expand("a$b$", &env).unwrap(), "a$b$");
        assert_eq!(expand("$${env:HOST}", &env).unwrap(), "${env:HOST}");
        assert_eq!(expand("${env:NESTED}", &env).unwrap(), "${env:HOST}");
        assert_eq!(
            expand("${HOME}", &env),
            Err(ExpandError::Unsupported("HOME".into()))
        );
        assert_eq!(expand("${env:HOST", &env), Err(ExpandError::Unterminated));
        assert_eq!(
            expand("${env:1X}", &env),
            Err(ExpandError::BadName("1X".into()))
        );
        assert_eq!(
            expand("x${env:NOPE}", &env),
            Err(ExpandError::Unset("NOPE".into()))
        );
    }

    #[test]
    fn whole_reference_only() {
        assert_eq!(
            whole_reference("${env:DGP_ENCRYPTION_KEY}"),
            Some("DGP_ENCRYPTION_KEY")
        );
        assert_eq!(whole_reference(" ${env:K} "), Some("K"));
        assert_eq!(whole_reference("x${env:K}"), None);
        assert_eq!(whole_reference("${env:K}${env:L}"), None);
        assert_eq!(whole_reference("00112233"), None);
        assert!(has_reference("a${env:K}"));
        assert!(!has_reference("a$${env:K}"));
    }
}
