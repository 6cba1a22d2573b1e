//! Small, pure naming rules: S3 bucket names, backend names, key ids, and
//! the backend-name -> key environment variable mapping.

/// Checks an S3 bucket name: the one rule of the program
/// (`storage::keypath::check_bucket_name`), also applied by CreateBucket.
pub(super) fn check_bucket_name(name: &str) -> Result<(), String> {
    crate::storage::keypath::check_bucket_name(name)
}

/// Backend names: 1-64 of `[A-Za-z0-9_.-]` (they become part of an
/// environment variable name).
pub(super) fn check_backend_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters long".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err("may contain only letters, digits, '_', '.' and '-'".into());
    }
    Ok(())
}

/// Key ids (`key_id`, `legacy_key_id`): the crypto code's one rule
/// (`engine::crypto::check_key_id`), so config and stored objects agree.
pub(super) fn check_key_id(id: &str) -> Result<(), String> {
    crate::engine::crypto::check_key_id(id).map_err(str::to_owned)
}

/// `DGP_BACKEND_<NAME>_ENCRYPTION_KEY`, `<NAME>` upper-cased with `-` and
/// `.` turned into `_` (`hetzner-fsn1` -> `DGP_BACKEND_HETZNER_FSN1_ENCRYPTION_KEY`).
pub fn env_var_for_backend(name: &str) -> String {
    backend_env_var(name, "ENCRYPTION_KEY")
}

/// `DGP_BACKEND_<NAME>_<FIELD>` (upper-case, `-` and `.` as `_`): the
/// environment variables of one backend (`ENCRYPTION_KEY`,
/// `ACCESS_KEY_ID`, `SECRET_ACCESS_KEY`).
pub fn backend_env_var(name: &str, field: &str) -> String {
    let mut var = String::from("DGP_BACKEND_");
    var.extend(name.chars().map(|c| match c {
        '-' | '.' => '_',
        c => c.to_ascii_uppercase(),
    }));
    var.push('_');
    var.push_str(field);
    var
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        for ok in [
            "abc",
            "my-bucket.v2",
            "a1b",
            "db-archive",
            "prod-archive-2024",
            &"a".repeat(63),
        ] {
            assert_eq!(check_bucket_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "MyBucket",
            "my_bucket",
            "-abc",
            "abc-",
            ".abc",
            "a..b",
            "192.168.1.1",
            "xn--abc",
            "sthree-x",
            "abc-s3alias",
            "abc--ol-s3",
            "abc--x-s3",
            "abc.mrap",
            "ab c",
        ] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_var_names() {
        assert_eq!(
            env_var_for_backend("hetzner-fsn1"),
            "DGP_BACKEND_HETZNER_FSN1_ENCRYPTION_KEY"
        );
        assert_eq!(
            env_var_for_backend("eu.west_2"),
            "DGP_BACKEND_EU_WEST_2_ENCRYPTION_KEY"
        );
    }

    #[test]
    fn key_ids() {
        assert!(check_key_id("hetzner-2026-06").is_ok());
        assert!(check_key_id("a b").is_err());
        assert!(check_key_id("").is_err());
        assert!(check_key_id(&"k".repeat(65)).is_err());
    }
}
