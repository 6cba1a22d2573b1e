//! `access.iam_users` / `access.iam_groups`.

use super::tests::{assert_problem, env_of, load_yaml, no_env, problems};
use super::*;

/// The issue's (and DeltaGlider Proxy 1.19's) example, as written.
const EXAMPLE: &str = r#"
access:
  iam_mode: declarative          # or gui (default): the database is the source of truth
  iam_groups:
    - name: readers
      permissions: [{effect: Allow, actions: [read, list], resources: ["releases/*", "releases"]}]
  iam_users:
    - name: ci-uploader
      access_key_id: AKIACIUP00001
      secret_access_key: "${env:CI_UPLOADER_SECRET}"
      groups: [readers]
      permissions:
        - {effect: Allow, actions: [write], resources: ["releases/firmware/*"], conditions: {IpAddress: {"aws:SourceIp": "192.168.1.0/24"}}}
"#;

#[test]
fn the_documented_example_loads() {
    let env = env_of(&[("CI_UPLOADER_SECRET", "ci-secret-0123456789abcdef")]);
    let s = load_yaml(EXAMPLE, &env).unwrap();
    assert_eq!(s.iam_mode, IamMode::Declarative);
    assert_eq!(s.iam.groups.len(), 1);
    let u = &s.iam.users[0];
    assert_eq!(u.name, "ci-uploader");
    assert!(u.enabled);
    assert_eq!(u.keys[0].access_key_id, "AKIACIUP00001");
    assert_eq!(
        u.keys[0].secret_access_key.expose(),
        "ci-secret-0123456789abcdef"
    );
    assert_eq!(u.groups, vec!["readers"]);
    assert_eq!(
        u.permissions[0].conditions,
        vec![ConditionSpec {
            op: "IpAddress".into(),
            key: "aws:SourceIp".into(),
            values: vec!["192.168.1.0/24".into()]
        }]
    );
    // Debug output never shows the secret.
    assert!(!format!("{s:?}").contains("ci-secret-0123456789abcdef"));
}

#[test]
fn users_need_declarative_mode() {
    let yaml = EXAMPLE.replace("iam_mode: declarative", "iam_mode: gui");
    let env = env_of(&[("CI_UPLOADER_SECRET", "ci-secret-0123456789abcdef")]);
    assert_problem(load_yaml(&yaml, &env), "need `iam_mode: declarative`");
}

#[test]
fn every_mistake_is_named() {
    let yaml = r#"
access:
  access_key_id: admin
  secret_access_key: admin-secret-0123456789
  iam_mode: declarative
  iam_groups:
    - name: g
      permissions:
        - {effect: Permit, actions: [read], resources: ["*"]}
        - {effect: Allow, actions: [s3:GetObjekt], resources: ["*"]}
        - {effect: Allow, actions: [read], resources: []}
        - {effect: Allow, actions: [read], resources: ["*"], conditions: {NumericLessThan: {"s3:max-keys": 10}}}
        - {effect: Allow, actions: [read], resources: ["*"], conditions: {IpAddress: {"aws:SourceIp": [10.0.0.0/8, not-an-ip]}}}
    - name: g
  iam_users:
    - name: "bad name!"
      access_key_id: AKIA1
      secret_access_key: secret-secret-secret
    - name: u1
      access_key_id: admin
      secret_access_key: secret-secret-secret
    - name: u2
      access_key_id: AKIA2
      secret_access_key: short
      groups: [nope]
    - name: u3
    - name: u4
      access_key_id: AKIA4
    - name: Admin
      access_key_id: AKIA5
      secret_access_key: secret-secret-secret
"#;
    let ps = problems(load_yaml(yaml, &no_env));
    for needle in [
        "access.iam_groups[0].permissions[0].effect (line 9",
        "unknown effect `permit`",
        "access.iam_groups[0].permissions[1]",
        "names no S3 action",
        "access.iam_groups[0].permissions[2]",
        "resources: at least one is required",
        "unknown condition operator `NumericLessThan`",
        "access.iam_groups[0].permissions[4]",
        "duplicate group `g`",
        "access.iam_users[0].name",
        "access.iam_users[1].access_key_id",
        "already used",
        "access.iam_users[2].secret_access_key",
        "at least 16 characters",
        "no group `nope`",
        "access.iam_users[3]",
        "needs access_key_id and secret_access_key",
        "access.iam_users[4]",
        "must be given together",
        "access.iam_users[5].name",
        "reserved for the built-in administrator",
    ] {
        assert!(
            ps.iter().any(|p| p.contains(needle)),
            "missing {needle}: {ps:#?}"
        );
    }
    assert!(
        !ps.iter()
            .any(|p| p.contains("secret-secret-secret") || p.contains("short")),
        "{ps:#?}"
    );
}

#[test]
fn several_keys_disabled_users_and_bool_conditions() {
    let yaml = r#"
access:
  iam_mode: declarative
  iam_users:
    - name: backup
      enabled: false
      access_keys:
        - {access_key_id: KEYONE, secret_access_key: "${env:S1}"}
        - {access_key_id: KEYTWO, secret_access_key: "${env:S2}"}
      permissions:
        - effect: Deny
          actions: ["*"]
          resources: ["*"]
          conditions: {Bool: {"aws:SecureTransport": false}, StringNotLike: {"s3:prefix": ["a/*", "b/*"]}}
"#;
    let env = env_of(&[
        ("S1", "first-secret-0123456"),
        ("S2", "second-secret-012345"),
    ]);
    let s = load_yaml(yaml, &env).unwrap();
    let u = &s.iam.users[0];
    assert!(!u.enabled);
    assert_eq!(u.keys.len(), 2);
    assert_eq!(u.permissions[0].effect, Effect::Deny);
    let c = &u.permissions[0].conditions;
    assert_eq!(c.len(), 2);
    assert!(
        c.iter()
            .any(|c| c.op == "Bool" && c.values == vec!["false"])
    );
    assert!(
        c.iter()
            .any(|c| c.op == "StringNotLike" && c.values.len() == 2)
    );
}
