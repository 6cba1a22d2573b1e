use super::*;
use crate::config::{ConditionSpec, Effect, PermissionSpec};

fn db(dir: &Path, key: u8) -> Result<ConfigDb> {
    ConfigDb::open(
        &dir.join("config.db"),
        &DbKey::new([key; 32], KeyOrigin::Given),
    )
}

fn perm(actions: &[&str], resources: &[&str]) -> PermissionSpec {
    PermissionSpec {
        effect: Effect::Allow,
        actions: actions.iter().map(|s| s.to_string()).collect(),
        resources: resources.iter().map(|s| s.to_string()).collect(),
        conditions: vec![],
    }
}

#[test]
fn the_file_is_opaque_and_refuses_another_key() {
    let t = tempfile::tempdir().unwrap();
    let mut d = db(t.path(), 1).unwrap();
    let k = d.create_user("alice", &[]).unwrap();
    assert_eq!(d.schema_version().unwrap(), schema::VERSION);
    drop(d);
    let path = t.path().join("config.db");
    // WAL content is checkpointed on close; the whole file is ciphertext.
    let bytes = std::fs::read(&path).unwrap();
    assert!(!bytes.starts_with(b"SQLite format 3"));
    for needle in [
        b"alice".as_slice(),
        k.secret_access_key.as_bytes(),
        k.access_key_id.as_bytes(),
    ] {
        assert!(!bytes.windows(needle.len()).any(|w| w == needle));
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    match db(t.path(), 2) {
        Err(DbError::WrongKey { .. }) => {}
        other => panic!("expected WrongKey, got {other:?}"),
    }
    let d = db(t.path(), 1).unwrap();
    let iam = d.load_iam().unwrap();
    assert_eq!(
        iam.users[0].keys[0].secret_access_key.expose(),
        k.secret_access_key.as_str()
    );
}

#[test]
fn users_groups_keys_permissions() {
    let t = tempfile::tempdir().unwrap();
    let mut d = db(t.path(), 1).unwrap();
    d.create_group("readers").unwrap();
    assert!(matches!(
        d.create_group("readers"),
        Err(DbError::Conflict(_))
    ));
    assert!(matches!(
        d.create_group("bad name"),
        Err(DbError::Invalid(_))
    ));
    // `admin` names the built-in administrator in the audit log.
    assert!(
        matches!(d.create_user("admin", &[]), Err(DbError::Invalid(e)) if e.contains("reserved"))
    );
    d.attach(
        Owner::Group("readers"),
        perm(&["read", "list"], &["releases/*", "releases"]),
    )
    .unwrap();
    let k1 = d.create_user("ci", &["readers".into()]).unwrap();
    assert!(k1.access_key_id.starts_with("DGP") && k1.access_key_id.len() == 20);
    assert_eq!(k1.secret_access_key.len(), 40);
    assert!(matches!(
        d.create_user("ci", &[]),
        Err(DbError::Conflict(_))
    ));
    assert!(matches!(
        d.create_user("x", &["nope".into()]),
        Err(DbError::NotFound(_))
    ));
    let mut p = perm(&["write"], &["releases/firmware/*"]);
    p.conditions.push(ConditionSpec {
        op: "IpAddress".into(),
        key: "aws:SourceIp".into(),
        values: vec!["10.0.0.0/8".into()],
    });
    assert_eq!(d.attach(Owner::User("ci"), p.clone()).unwrap(), 0);
    assert!(matches!(
        d.attach(Owner::User("ci"), perm(&["fly"], &["*"])),
        Err(DbError::Invalid(_))
    ));
    let u = d.user("ci").unwrap();
    assert_eq!(
        (u.groups.clone(), u.permissions.clone(), u.enabled),
        (vec!["readers".to_string()], vec![p.clone()], true)
    );
    // Keys: add, rotate (old one gone), delete.
    let k2 = d.create_key("ci").unwrap();
    assert!(matches!(d.rotate_key("ci", None), Err(DbError::Invalid(_))));
    let k3 = d.rotate_key("ci", Some(&k1.access_key_id)).unwrap();
    let ids: Vec<_> = d
        .user("ci")
        .unwrap()
        .access_keys
        .into_iter()
        .map(|k| k.access_key_id)
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(
        ids.contains(&k2.access_key_id)
            && ids.contains(&k3.access_key_id)
            && !ids.contains(&k1.access_key_id)
    );
    d.delete_key("ci", &k2.access_key_id).unwrap();
    assert!(matches!(
        d.delete_key("ci", &k2.access_key_id),
        Err(DbError::NotFound(_))
    ));
    d.set_enabled("ci", false).unwrap();
    let iam = d.load_iam().unwrap();
    assert!(!iam.users[0].enabled);
    assert_eq!(iam.users[0].keys.len(), 1);
    assert_eq!(iam.groups[0].permissions.len(), 1);
    assert_eq!(d.detach(Owner::User("ci"), 0).unwrap(), p);
    assert!(matches!(
        d.detach(Owner::User("ci"), 0),
        Err(DbError::NotFound(_))
    ));
    d.remove_member("ci", "readers").unwrap();
    assert_eq!(d.group("readers").unwrap().members, Vec::<String>::new());
    d.add_member("ci", "readers").unwrap();
    d.delete_group("readers").unwrap();
    assert!(
        d.user("ci").unwrap().groups.is_empty(),
        "memberships go with the group"
    );
    d.delete_user("ci").unwrap();
    assert!(d.users().unwrap().is_empty());
    assert!(d.load_iam().unwrap().users.is_empty());
}

#[test]
fn export_import_round_trip_only_with_the_key() {
    let t = tempfile::tempdir().unwrap();
    let mut a = db(t.path(), 1).unwrap();
    a.create_group("g").unwrap();
    a.attach(Owner::Group("g"), perm(&["*"], &["*"])).unwrap();
    let k = a.create_user("u", &["g".into()]).unwrap();
    a.put_bucket_policy("site", "{\"Statement\":[]}").unwrap();
    a.put_bucket_acl("site", Some("public-read")).unwrap();
    a.put_bucket_acl("drop", Some("public-read-write")).unwrap();
    let export = a.export().unwrap();
    assert!(
        !export
            .windows(k.secret_access_key.len())
            .any(|w| w == k.secret_access_key.as_bytes())
    );
    let t2 = tempfile::tempdir().unwrap();
    let mut b = db(t2.path(), 1).unwrap();
    assert_eq!(b.import(&export).unwrap(), 1);
    assert_eq!(b.load_iam().unwrap(), a.load_iam().unwrap());
    assert_eq!(b.bucket_policies().unwrap(), a.bucket_policies().unwrap());
    assert_eq!(b.bucket_acls().unwrap(), a.bucket_acls().unwrap());
    let t3 = tempfile::tempdir().unwrap();
    let mut c = db(t3.path(), 9).unwrap();
    assert!(matches!(c.import(&export), Err(DbError::Invalid(_))));
    let mut bad = export.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert!(matches!(b.import(&bad), Err(DbError::Invalid(_))));
    assert_eq!(
        b.users().unwrap().len(),
        1,
        "a refused import changes nothing"
    );
}

#[test]
fn key_resolution() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("config.db");
    let none = |_: &str| None;
    // Neither: a key file beside the database is created, then found.
    let k = key::resolve(&path, None, &none).unwrap();
    assert_eq!(k.origin, KeyOrigin::Created(key::beside(&path)));
    ConfigDb::open(&path, &k).unwrap();
    let again = key::resolve(&path, None, &none).unwrap();
    assert_eq!(again.origin, KeyOrigin::Beside(key::beside(&path)));
    assert_eq!(again.expose(), k.expose());
    // The database without its key: refuse, saying where keys come from.
    std::fs::remove_file(key::beside(&path)).unwrap();
    let e = key::resolve(&path, None, &none).unwrap_err();
    assert!(
        e.contains("DGP_CONFIG_DB_KEY") && e.contains("config_db_key_file"),
        "{e}"
    );
    let hex = hex::encode(k.expose());
    let env = move |n: &str| (n == key::ENV_KEY).then(|| hex.clone());
    let k2 = key::resolve(&path, None, &env).unwrap();
    assert_eq!(k2.origin, KeyOrigin::Env);
    ConfigDb::open(&path, &k2).unwrap();
    let bad = |n: &str| (n == key::ENV_KEY).then(|| "abcd".to_string());
    assert!(
        key::resolve(&path, None, &bad)
            .unwrap_err()
            .contains("DGP_CONFIG_DB_KEY")
    );
}

#[test]
fn key_from_a_named_key_file() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("config.db");
    let kf = t.path().join("db.key");
    std::fs::write(&kf, [5u8; 32]).unwrap();
    std::fs::set_permissions(&kf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let none = |_: &str| None;
    let e = key::resolve(&path, Some(&kf), &none).unwrap_err();
    assert!(
        e.contains("config_db_key_file") && e.contains("chmod 600"),
        "{e}"
    );
    std::fs::set_permissions(&kf, std::fs::Permissions::from_mode(0o600)).unwrap();
    let k = key::resolve(&path, Some(&kf), &none).unwrap();
    assert_eq!(
        (k.origin.clone(), *k.expose()),
        (KeyOrigin::File(kf.clone()), [5u8; 32])
    );
    ConfigDb::open(&path, &k).unwrap();
    assert!(
        !key::beside(&path).exists(),
        "no key is created beside when one is named"
    );
}

#[test]
fn bucket_acls_and_forgetting_a_bucket() {
    let t = tempfile::tempdir().unwrap();
    let mut d = db(t.path(), 1).unwrap();
    d.put_bucket_acl("a", Some("public-read")).unwrap();
    d.put_bucket_acl("a", Some("authenticated-read")).unwrap();
    d.put_bucket_acl("b", Some("public-read")).unwrap();
    d.put_bucket_policy("a", "{}").unwrap();
    assert_eq!(
        d.bucket_acls().unwrap(),
        vec![
            ("a".to_string(), "authenticated-read".to_string()),
            ("b".to_string(), "public-read".to_string())
        ]
    );
    d.put_bucket_acl("b", None).unwrap();
    d.forget_bucket("a").unwrap();
    assert!(d.bucket_acls().unwrap().is_empty());
    assert!(d.bucket_policy("a").unwrap().is_none());
}

#[test]
fn a_schema_2_file_migrates_keeping_its_policies() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("config.db");
    {
        let d = db(t.path(), 1).unwrap();
        // Back to what schema 2 had: no bucket_acls, server_settings or sso_identities table.
        d.conn
            .execute_batch(
                "DROP TABLE bucket_acls; DROP TABLE server_settings; DROP TABLE sso_identities; PRAGMA user_version = 2;",
            )
            .unwrap();
        d.conn
            .execute(
                "INSERT INTO bucket_policies (bucket, policy, updated) VALUES ('x', '{}', 0)",
                [],
            )
            .unwrap();
    }
    let mut d = ConfigDb::open(&path, &DbKey::new([1; 32], KeyOrigin::Given)).unwrap();
    assert_eq!(d.schema_version().unwrap(), super::schema::VERSION);
    assert_eq!(d.bucket_policy("x").unwrap().as_deref(), Some("{}"));
    d.put_bucket_acl("x", Some("public-read")).unwrap();
    d.set_server_setting("bootstrap_password_hash", "h")
        .unwrap();
    assert_eq!(
        d.server_setting("bootstrap_password_hash")
            .unwrap()
            .as_deref(),
        Some("h")
    );
}

#[test]
fn sso_login_provisions_once_and_follows_the_rules() {
    let t = tempfile::tempdir().unwrap();
    let mut d = db(t.path(), 1).unwrap();
    d.create_group("ops").unwrap();
    d.create_group("staff").unwrap();
    // A user made by hand with the address as its name is never taken over.
    d.create_user("bob@example.com", &[]).unwrap();
    let missing = d.sso_login(
        "https://id",
        "corp",
        "s1",
        Some("a@example.com"),
        &["nope".into()],
    );
    assert!(matches!(missing, Err(DbError::NotFound(m)) if m.contains("nope")));
    assert!(
        d.users().unwrap().iter().all(|u| u.name != "a@example.com"),
        "nothing provisioned"
    );

    let first = d
        .sso_login(
            "https://id",
            "corp",
            "s1",
            Some("a@example.com"),
            &["ops".into(), "staff".into()],
        )
        .unwrap();
    assert_eq!(
        first,
        SsoLogin {
            user: "a@example.com".into(),
            created: true,
            enabled: true
        }
    );
    let u = d.user("a@example.com").unwrap();
    assert_eq!(u.groups, ["ops", "staff"]);
    assert!(
        u.access_keys.is_empty(),
        "single sign-on gives no S3 key by itself"
    );
    // The address changed at the provider: same subject, same user; groups follow the rules.
    let again = d
        .sso_login(
            "https://id",
            "corp",
            "s1",
            Some("a2@example.com"),
            &["staff".into()],
        )
        .unwrap();
    assert_eq!(again.user, "a@example.com");
    assert!(!again.created);
    assert_eq!(d.user("a@example.com").unwrap().groups, ["staff"]);
    let bob = d
        .sso_login("https://id", "corp", "s2", Some("bob@example.com"), &[])
        .unwrap();
    assert_eq!(bob.user, "corp-s2");
    assert!(d.user("bob@example.com").unwrap().groups.is_empty());
    // Another issuer's equal subject is another person.
    let other = d
        .sso_login("https://other", "corp", "s1", None, &[])
        .unwrap();
    assert!(other.created && other.user != "a@example.com", "{other:?}");
    // No rule matches any more: the known identity leaves its groups.
    assert_eq!(
        d.sso_clear_groups("https://id", "s1").unwrap().as_deref(),
        Some("a@example.com")
    );
    assert!(d.user("a@example.com").unwrap().groups.is_empty());
    assert_eq!(d.sso_clear_groups("https://id", "nobody").unwrap(), None);
    d.set_enabled("corp-s2", false).unwrap();
    assert!(
        !d.sso_login("https://id", "corp", "s2", None, &[])
            .unwrap()
            .enabled
    );

    // The identities travel in the export.
    let export = d.export().unwrap();
    let t2 = tempfile::tempdir().unwrap();
    let mut e = db(t2.path(), 1).unwrap();
    e.import(&export).unwrap();
    assert_eq!(e.sso_identities().unwrap(), d.sso_identities().unwrap());
    assert_eq!(
        e.sso_login("https://id", "corp", "s1", None, &[])
            .unwrap()
            .user,
        "a@example.com"
    );
    // Deleting the user forgets the identity: the next login provisions afresh.
    d.delete_user("a@example.com").unwrap();
    assert!(
        d.sso_login("https://id", "corp", "s1", Some("a@example.com"), &[])
            .unwrap()
            .created
    );
}
