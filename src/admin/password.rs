//! The admin UI's bootstrap password: only its argon2id hash (a PHC string)
//! is kept, in the config database, or given by `DGP_BOOTSTRAP_PASSWORD_HASH`
//! (which then wins and the database's is ignored). On the first start
//! without either, the server generates one and prints it once to stderr.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::configdb::{BOOTSTRAP_PASSWORD_HASH, LiveIam};

pub const ENV_HASH: &str = "DGP_BOOTSTRAP_PASSWORD_HASH";

/// Shortest password `--set-bootstrap-password` accepts.
pub const MIN_LEN: usize = 12;

/// The PHC string of `password` (argon2id, default parameters, random salt).
pub fn hash(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

/// Whether `password` matches the PHC string `phc` (constant time in the
/// crate; a malformed `phc` matches nothing).
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Refuses a hash we could never verify against (a typo in the environment).
pub fn check_phc(phc: &str) -> Result<(), String> {
    let h = PasswordHash::new(phc.trim()).map_err(|e| format!("not a PHC string: {e}"))?;
    if !h.algorithm.as_str().starts_with("argon2") {
        return Err(format!(
            "algorithm {} is not argon2 (make one with `deltaglider_proxy hash-password`)",
            h.algorithm
        ));
    }
    Ok(())
}

/// A new random password: 24 characters without look-alikes (about 137 bits).
pub fn generate() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..24)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Where the hash in force comes from.
#[derive(Debug, Clone)]
pub enum Bootstrap {
    /// `DGP_BOOTSTRAP_PASSWORD_HASH`.
    Env(String),
    /// The config database (read at every login: `--set-bootstrap-password`
    /// from another process takes effect at once).
    Database,
}

/// At startup: the environment's hash (checked), or the database's; with
/// neither, a generated password whose hash is stored and which is printed
/// once to stderr (the journal under systemd).
pub fn bootstrap(iam: &LiveIam, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Bootstrap> {
    if let Some(h) = env(ENV_HASH).filter(|h| !h.trim().is_empty()) {
        check_phc(&h).map_err(|e| anyhow::anyhow!("{ENV_HASH}: {e}"))?;
        tracing::info!("admin UI: the bootstrap password hash comes from {ENV_HASH}");
        return Ok(Bootstrap::Env(h.trim().to_owned()));
    }
    if iam
        .read(|db| db.server_setting(BOOTSTRAP_PASSWORD_HASH))?
        .is_some()
    {
        return Ok(Bootstrap::Database);
    }
    let password = generate();
    let h = hash(&password)?;
    iam.write_server_setting(BOOTSTRAP_PASSWORD_HASH, &h)?;
    // Printed, not logged: the log may be shipped elsewhere; stderr is
    // where the operator looks on first start (`journalctl -u ...`).
    eprintln!(
        "\n  deltaglider_proxy admin UI: bootstrap password (shown once, only its hash is kept):\n\n      {password}\n\n  log in at /_/ as admin; change it with `deltaglider_proxy serve --set-bootstrap-password`.\n"
    );
    tracing::warn!(
        "admin UI: generated a bootstrap password and printed it to stderr once; only its hash is stored"
    );
    Ok(Bootstrap::Database)
}

/// The hash in force now.
pub fn current(iam: &LiveIam, from: &Bootstrap) -> Option<String> {
    match from {
        Bootstrap::Env(h) => Some(h.clone()),
        Bootstrap::Database => iam
            .read(|db| db.server_setting(BOOTSTRAP_PASSWORD_HASH))
            .ok()
            .flatten(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_and_nothing_else_does() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(check_phc(&h).is_ok());
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert!(!verify("correct horse battery", "not a hash"));
        assert!(check_phc("$2b$12$abcdefghijklmnopqrstuv").is_err());
        assert!(check_phc("plain").is_err());
    }

    #[test]
    fn generated_passwords_differ_and_are_long() {
        let (a, b) = (generate(), generate());
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
    }
}
