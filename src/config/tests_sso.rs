//! `access.auth_providers` / `access.group_mapping_rules`.

use super::sso::{Matcher, OidcProvider};
use super::tests::{assert_problem, env_of, load_yaml, no_env, problems};

/// The example of docs/iam.md ("Single sign-on"), as written.
const EXAMPLE: &str = r#"
access:
  auth_providers:
    - name: corp
      type: oidc
      display_name: Corp SSO
      issuer: https://login.example.com/
      client_id: deltaglider
      client_secret: "${env:DGP_OIDC_SECRET}"
      scopes: [email, profile, groups]
  group_mapping_rules:
    - {email_domain: example.com, groups: [staff]}
    - {provider: corp, claim: groups, value: nas-admins, groups: [operators]}
    - {email_glob: "*-ops@example.com", groups: [operators]}
    - {email_regex: '^[a-z]+\.[a-z]+@example\.com$', groups: [staff]}
"#;

#[test]
fn the_documented_example_loads() {
    let env = env_of(&[("DGP_OIDC_SECRET", "s3cret")]);
    let s = load_yaml(EXAMPLE, &env).unwrap();
    let p: &OidcProvider = &s.sso.providers[0];
    assert_eq!(p.name, "corp");
    assert_eq!(
        p.issuer, "https://login.example.com/",
        "as written: `iss` must equal it"
    );
    assert!(!p.trust_unverified_email);
    assert_eq!(p.client_secret.as_ref().unwrap().expose(), "s3cret");
    assert_eq!(p.scopes, ["email", "profile", "groups"]);
    assert_eq!(s.sso.rules.len(), 4);
    assert!(matches!(&s.sso.rules[0].matcher, Matcher::EmailDomain(d) if d == "example.com"));
    assert_eq!(s.sso.rules[1].provider.as_deref(), Some("corp"));
}

#[test]
fn defaults_and_a_public_client() {
    let s = load_yaml(
        "access:\n  auth_providers:\n    - {name: lan, type: oidc, issuer: \"http://127.0.0.1:9999\", client_id: x}\n  group_mapping_rules:\n    - {claim: role, value: admin, groups: [ops]}\n",
        &no_env,
    )
    .unwrap();
    let p = &s.sso.providers[0];
    assert_eq!(p.display_name, "lan");
    assert!(p.client_secret.is_none() && p.redirect_uri.is_none());
    assert_eq!(p.scopes, ["email", "profile"]);
}

#[test]
fn every_mistake_is_named() {
    let r = load_yaml(
        r#"
access:
  auth_providers:
    - {name: "Corp!", type: saml, issuer: "http://id.example.com", client_id: x}
    - {name: b, type: oidc, issuer: "ftp://x", client_id: x, redirect_uri: "https://nas/_/sso/other/callback"}
    - {name: c, type: oidc, client_id: x, client_secret: a, client_secret_file: /f}
    - {name: d, type: oidc, issuer: "https://id", scopes: ["a b"]}
  group_mapping_rules:
    - {email_domain: example.com, claim: groups, value: a, groups: [g]}
    - {groups: [g]}
    - {provider: nope, email_domain: x.org, groups: [g]}
    - {email_regex: "(", groups: [g]}
    - {claim: groups, groups: [g]}
    - {email_domain: x.org, value: v, groups: [g]}
    - {email_domain: x.org, groups: ["bad name"]}
    - {email_domain: x.org}
    - {claim: email, value: a@x.org, groups: [g]}
"#,
        &no_env,
    );
    let ps = problems(r);
    for want in [
        "auth_providers[0].name",
        "unknown provider type `saml`",
        "must be an https URL (plain http only",
        "auth_providers[1].issuer",
        "must end with /_/sso/b/callback",
        "auth_providers[2].issuer",
        "not both",
        "auth_providers[3].client_id",
        "one scope per entry",
        "found email_domain, claim",
        "give exactly one of email_domain, email_glob, email_regex or claim (with value); found none",
        "no provider named `nope`",
        "not a valid regular expression",
        "required with claim",
        "value goes with claim",
        "group_mapping_rules[6].groups[0]",
        "required: the IAM groups",
        "they see only verified addresses",
    ] {
        assert!(
            ps.iter().any(|p| p.contains(want)),
            "no problem contains {want:?}: {ps:#?}"
        );
    }
}

#[test]
fn declarative_iam_and_rules_without_providers_are_refused() {
    assert_problem(
        load_yaml(
            "access:\n  iam_mode: declarative\n  auth_providers:\n    - {name: a, type: oidc, issuer: \"https://i\", client_id: x}\n",
            &no_env,
        ),
        "needs `iam_mode: gui`",
    );
    assert_problem(
        load_yaml(
            "access:\n  group_mapping_rules:\n    - {email_domain: a.org, groups: [g]}\n",
            &no_env,
        ),
        "need at least one entry in access.auth_providers",
    );
}

#[test]
fn the_secret_file_is_read_and_trimmed() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("secret");
    std::fs::write(&f, "abc\n").unwrap();
    let y = format!(
        "access:\n  auth_providers:\n    - {{name: a, type: oidc, issuer: \"https://i\", client_id: x, client_secret_file: {}}}\n  group_mapping_rules:\n    - {{email_domain: a.org, groups: [g]}}\n",
        f.display()
    );
    let s = load_yaml(&y, &no_env).unwrap();
    assert_eq!(
        s.sso.providers[0].client_secret.as_ref().unwrap().expose(),
        "abc"
    );
    std::fs::remove_file(&f).unwrap();
    assert_problem(load_yaml(&y, &no_env), "cannot read");
}
