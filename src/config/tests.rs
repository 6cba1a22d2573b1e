//! Tests of the config module as the main crate uses it: seed examples
//! (copied into `testdata/`), validation rules, overrides, `${env:...}`,
//! lint mode, and key resolution. The environment is always a local map.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use super::*;

const HEX_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

pub(super) fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

pub(super) fn no_env(_: &str) -> Option<String> {
    None
}

pub(super) fn load_yaml(
    yaml: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    load_str(yaml, "test.yaml", &Overrides::default(), env)
}

fn lint_yaml(yaml: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<LintReport, ConfigError> {
    lint_str(yaml, "test.yaml", env)
}

/// The problems of an `Invalid` error, as display strings.
pub(super) fn problems(r: Result<impl std::fmt::Debug, ConfigError>) -> Vec<String> {
    match r {
        Err(ConfigError::Invalid { problems, .. }) => {
            problems.iter().map(|p| p.to_string()).collect()
        }
        other => panic!("expected validation problems, got {other:?}"),
    }
}

pub(super) fn assert_problem(
    r: Result<impl std::fmt::Debug, ConfigError>,
    needle: &str,
) -> Vec<String> {
    let ps = problems(r);
    assert!(
        ps.iter().any(|p| p.contains(needle)),
        "no problem contains {needle:?}: {ps:#?}"
    );
    ps
}

fn temp_yaml(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

// ------------------------------------------------------------ seeds

const SEED_NAMED_AES: &str = include_str!("testdata/seed000_named_s3_aes.yaml");
const SEED_SSE_KMS: &str = include_str!("testdata/seed000_sse_kms.yaml");
const SEED_SINGLETON_AES: &str = include_str!("testdata/seed000_singleton_fs_aes.yaml");
const SEED_FIVE_LINE: &str = include_str!("testdata/seed004_five_line.yaml");
const SEED_CANONICAL: &str = include_str!("testdata/seed004_canonical.yaml");
/// The "complete example" of docs/config.md, read from the doc itself so
/// the two cannot drift apart.
fn full_reference() -> &'static str {
    const DOC: &str = include_str!("../../docs/config.md");
    let from = DOC
        .find("## A complete example")
        .expect("section in docs/config.md");
    let start = from + DOC[from..].find("```yaml\n").expect("yaml block") + 8;
    let end = start + DOC[start..].find("```").expect("end of the block");
    &DOC[start..end]
}

#[test]
fn validate_examples_pass_lint_via_files() {
    for text in [SEED_NAMED_AES, SEED_SSE_KMS] {
        let f = temp_yaml(text);
        let report = lint(f.path(), &no_env).unwrap_or_else(|e| panic!("{e}\n{text}"));
        // Advisory warnings are fine; none may be errors.
        for w in &report.warnings {
            assert!(!w.is_empty());
        }
    }
}

#[test]
fn seed_named_aes_backend_settings() {
    let s = load_yaml(SEED_NAMED_AES, &no_env).unwrap();
    assert_eq!(s.default_backend, "hetzner-fsn1");
    let b = s.backend("hetzner-fsn1").unwrap();
    match &b.kind {
        BackendKind::S3 {
            endpoint,
            region,
            force_path_style,
            access_key_id,
            secret_access_key,
        } => {
            assert_eq!(
                endpoint.as_deref(),
                Some("https://fsn1.your-objectstorage.com")
            );
            assert_eq!(region.as_deref(), Some("fsn1"));
            assert!(*force_path_style);
            assert!(access_key_id.is_none() && secret_access_key.is_none());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(b.encryption.mode, EncryptionMode::Aes256GcmProxy);
    assert_eq!(b.encryption.key_id.as_deref(), Some("hetzner-2026-06"));
    assert_eq!(
        b.encryption.key_source,
        Some(KeySource::Env {
            var: "DGP_BACKEND_HETZNER_FSN1_ENCRYPTION_KEY".into()
        })
    );
    let bucket = &s.buckets["db-archive"];
    assert_eq!(bucket.backend, "hetzner-fsn1");
    assert_eq!(bucket.real_name, "db-archive");
    // lint names the unset implicit key variable as a warning
    let report = lint_yaml(SEED_NAMED_AES, &no_env).unwrap();
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("DGP_BACKEND_HETZNER_FSN1_ENCRYPTION_KEY")),
        "{report:?}"
    );
}

#[test]
fn seed_sse_kms() {
    let s = load_yaml(SEED_SSE_KMS, &no_env).unwrap();
    let e = &s.backend("aws-dr").unwrap().encryption;
    assert_eq!(e.mode, EncryptionMode::SseKms);
    assert_eq!(
        e.kms_key_id.as_deref(),
        Some("arn:aws:kms:eu-west-1:123456789012:key/abcd-ef01")
    );
    assert!(e.bucket_key_enabled);
    assert!(e.key_source.is_none());
    assert!(resolve_encryption_keys(&s, &no_env).unwrap().is_empty());
}

#[test]
fn seed_singleton_fs_aes_lints_with_warning_when_unset() {
    let report = lint_yaml(SEED_SINGLETON_AES, &no_env).unwrap();
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("DGP_ENCRYPTION_KEY") && w.contains("unresolved")),
        "{report:?}"
    );
    // load is strict
    let ps = assert_problem(load_yaml(SEED_SINGLETON_AES, &no_env), "DGP_ENCRYPTION_KEY");
    assert!(ps[0].contains("storage.backend_encryption.key"), "{ps:?}");
    assert!(ps[0].contains("line 9 column"), "{ps:?}");
}

#[test]
fn seed_singleton_fs_aes_resolves_when_set() {
    let env = env_of(&[("DGP_ENCRYPTION_KEY", HEX_KEY)]);
    let report = lint_yaml(SEED_SINGLETON_AES, &env).unwrap();
    assert!(
        report
            .warnings
            .iter()
            .all(|w| !w.contains("DGP_ENCRYPTION_KEY")),
        "{report:?}"
    );
    let s = load_yaml(SEED_SINGLETON_AES, &env).unwrap();
    assert_eq!(s.backends.len(), 1);
    let b = &s.backends[0];
    assert_eq!(b.name, "default");
    assert!(
        matches!(&b.kind, BackendKind::Filesystem { path } if path == &PathBuf::from("/var/lib/deltaglider_proxy/data"))
    );
    assert_eq!(
        b.encryption.key_source,
        Some(KeySource::Env {
            var: "DGP_ENCRYPTION_KEY".into()
        })
    );
    let keys = resolve_encryption_keys(&s, &env).unwrap();
    let k = keys["default"].key.as_ref().unwrap();
    assert_eq!(k.expose()[..4], [0x00, 0x11, 0x22, 0x33]);
    assert_eq!(keys["default"].key_id.as_deref(), Some("local-2026-06"));
    assert_eq!(format!("{k:?}"), "EncryptionKey(<redacted>)");
    assert!(!format!("{keys:?}").contains("00112233"));
}

#[test]
fn seed004_examples_load() {
    let s = load_yaml(SEED_FIVE_LINE, &no_env).unwrap();
    assert!(matches!(&s.backends[0].kind,
        BackendKind::S3 { endpoint: Some(e), access_key_id: Some(a), secret_access_key: Some(sk), .. }
        if e == "https://s3.example.com" && a == "admin" && sk.expose() == "changeme"));
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("storage.secret_access_key"))
    );

    let s = load_yaml(SEED_CANONICAL, &no_env).unwrap();
    assert_eq!(s.admission.len(), 1);
    assert_eq!(s.admission[0].action, AdmissionAction::Deny);
    assert!(s.admission[0].matcher.source_ips[0].contains("203.0.113.77".parse().unwrap()));
    assert!(!s.admission[0].matcher.source_ips[0].contains("203.0.114.1".parse().unwrap()));
    let creds = s.credentials.as_ref().unwrap();
    assert_eq!(creds.access_key_id, "admin");
    assert_eq!(creds.secret_access_key.expose(), "changeme");
    assert!(!format!("{s:?}").contains("changeme"));
    assert_eq!(s.iam_mode, IamMode::Gui);
    assert_eq!(s.default_backend, "primary");
    assert_eq!(
        s.buckets["releases"].public_prefixes,
        vec!["builds/", "artifacts/"]
    );
    assert_eq!(s.buckets["releases"].compression, Some(true));
    assert_eq!(s.buckets["docs-site"].public_prefixes, vec![""]);
    assert_eq!(s.buckets["docs-site"].backend, "primary");
    assert_eq!(s.buckets["archive"].real_name, "prod-archive-2024");
    assert_eq!(s.advanced.cache_size_mb, 2048);
    assert_eq!(s.log_level, "deltaglider_proxy=info,tower_http=warn");
    lint_yaml(SEED_CANONICAL, &no_env).unwrap();
}

#[test]
fn full_reference_example_loads() {
    let env = env_of(&[
        ("DGP_BACKEND_LOCAL_ENCRYPTION_KEY", HEX_KEY),
        ("OLD_LOCAL_KEY", HEX_KEY),
        ("HETZNER_SECRET", "s3cr3t"),
        ("CI_UPLOADER_SECRET", "ci-secret-0123456789abcdef"),
        ("DGP_ACCESS_KEY_ID", "x"),
    ]);
    let report = lint_yaml(full_reference(), &env).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.warnings.is_empty(), "{report:#?}");
    let s = load_yaml(full_reference(), &env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.iam_mode, IamMode::Declarative);
    assert_eq!(s.listen_addr.to_string(), "127.0.0.1:9100");
    assert_eq!(s.advanced.s3_domains, vec!["s3.acme.example", "localhost"]);
    assert_eq!(s.admission.len(), 3);
    assert_eq!(
        s.admission[2].action,
        AdmissionAction::Reject {
            status: 429,
            message: Some("slow down".into())
        }
    );
    assert_eq!(s.admission[1].matcher.methods, vec!["GET", "HEAD"]);
    let hz = s.backend("hetzner-fsn1").unwrap();
    assert!(
        matches!(&hz.kind, BackendKind::S3 { secret_access_key: Some(k), .. } if k.expose() == "s3cr3t")
    );
    assert_eq!(s.buckets["scratch"].max_delta_ratio, Some(0.5));
    assert_eq!(s.iam.users[0].groups, vec!["readers"]);
}

// ------------------------------------------------------------ parse errors

#[test]
fn empty_file_gives_default_settings() {
    for text in ["", "\n", "# just a comment\n", "---\n"] {
        let s = load_yaml(text, &no_env).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(s.listen_addr.to_string(), DEFAULT_LISTEN_ADDR);
        assert_eq!(s.log_level, DEFAULT_LOG_LEVEL);
        assert!(s.credentials.is_none());
        assert_eq!(s.iam_mode, IamMode::Gui);
        assert_eq!(s.default_backend, "default");
        assert!(matches!(&s.backends[..], [b] if b.name == "default"
            && matches!(&b.kind, BackendKind::Filesystem { path } if path == &PathBuf::from(DEFAULT_DATA_DIR))
            && b.encryption == EncryptionSettings::default()));
        assert!(s.buckets.is_empty() && s.admission.is_empty() && s.warnings.is_empty());
        assert_eq!(s.advanced, AdvancedSettings::default());
    }
    let s = load(None, &Overrides::default(), &no_env).unwrap();
    assert_eq!(s.default_backend, "default");
    let f = temp_yaml("");
    assert!(
        lint(f.path(), &no_env)
            .unwrap()
            .warnings
            .iter()
            .any(|w| w.contains("credentials"))
    );
}

#[test]
fn unknown_field_names_field_line_and_column() {
    let yaml = "storage:\n  backends:\n    - name: a\n      type: s3\n      regoin: x\n";
    let err = load_yaml(yaml, &no_env).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("regoin"), "{msg}");
    assert!(msg.contains("line 5 column 7"), "{msg}");
    assert!(
        matches!(&err, ConfigError::Parse { location: Some((5, 7)), snippet, .. } if snippet.contains("regoin"))
    );
    // top level too
    let msg = lint_yaml("storag:\n  filesystem: /x\n", &no_env)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("storag") && msg.contains("line 1 column 1"),
        "{msg}"
    );
}

#[test]
fn yaml_syntax_and_type_errors_are_located() {
    let msg = load_yaml("advanced:\n  cache_size_mb: lots\n", &no_env)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("line 2 column"), "{msg}");
    let msg = load_yaml("storage: [1\n", &no_env).unwrap_err().to_string();
    assert!(msg.contains("line 1"), "{msg}");
    let msg = load_yaml("access:\n  access_key_id: a\n  access_key_id: b\n", &no_env)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("duplicate") && msg.contains("line 3"), "{msg}");
}

#[test]
fn missing_file_is_a_read_error() {
    let err = load(
        Some(std::path::Path::new("/nonexistent/dgp.yaml")),
        &Overrides::default(),
        &no_env,
    )
    .unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().contains("/nonexistent/dgp.yaml"));
}

// ------------------------------------------------------------ storage rules

#[test]
fn sse_on_filesystem_is_rejected() {
    for mode in ["sse-kms", "sse-s3"] {
        let yaml = format!(
            "storage:\n  backends:\n    - name: local\n      type: filesystem\n      path: /data\n      \
             encryption:\n        mode: {mode}\n        kms_key_id: k\n"
        );
        let ps = assert_problem(
            lint_yaml(&yaml, &no_env),
            "native SSE modes are S3-only; use aes256-gcm-proxy on filesystem backends",
        );
        assert!(
            ps.iter()
                .any(|p| p.contains("storage.backends[0].encryption.mode (line 7 column 15)")),
            "{ps:?}"
        );
    }
    let yaml = "storage:\n  filesystem: /data\n  backend_encryption:\n    mode: sse-s3\n";
    assert_problem(load_yaml(yaml, &no_env), "native SSE modes are S3-only");
}

#[test]
fn sse_kms_needs_kms_key_id() {
    let yaml = "storage:\n  backends:\n    - name: a\n      type: s3\n      encryption:\n        mode: sse-kms\n";
    assert_problem(
        load_yaml(yaml, &no_env),
        "storage.backends[0].encryption.kms_key_id",
    );
    let yaml = "storage:\n  backends:\n    - name: a\n      type: s3\n      encryption:\n        mode: sse-s3\n        kms_key_id: k\n";
    assert_problem(load_yaml(yaml, &no_env), "only valid with mode: sse-kms");
}

#[test]
fn bad_bucket_names() {
    for (name, why) in [
        ("ab", "3 to 63"),
        ("Upper", "lower-case"),
        ("under_score", "lower-case"),
        ("-dash", "start and end"),
        ("a..b", ".."),
        ("10.0.0.1", "IPv4"),
        ("xn--bucket", "xn--"),
        ("foo-s3alias", "-s3alias"),
    ] {
        let yaml = format!(
            "storage:\n  filesystem: /data\n  buckets:\n    {name}:\n      compression: true\n"
        );
        let ps = assert_problem(load_yaml(&yaml, &no_env), why);
        assert!(
            ps[0].contains(&format!("storage.buckets.{name} (line 4 column 5)")),
            "{ps:?}"
        );
    }
    let yaml = "storage:\n  filesystem: /data\n  buckets:\n    good:\n      alias: Bad_Alias\n";
    assert_problem(load_yaml(yaml, &no_env), "storage.buckets.good.alias");
}

#[test]
fn missing_default_backend() {
    let yaml = "storage:\n  backends:\n    - name: a\n      type: filesystem\n      path: /a\n    - name: b\n      type: filesystem\n      path: /b\n";
    assert_problem(load_yaml(yaml, &no_env), "storage.default_backend");
    let with_bad = format!("{yaml}  default_backend: c\n");
    assert_problem(load_yaml(&with_bad, &no_env), "no backend named `c`");
    // single backend: default implied
    let one = "storage:\n  backends:\n    - name: solo\n      type: filesystem\n      path: /a\n";
    assert_eq!(load_yaml(one, &no_env).unwrap().default_backend, "solo");
}

#[test]
fn bucket_pointing_at_unknown_backend() {
    let yaml = "storage:\n  backends:\n    - name: a\n      type: filesystem\n      path: /a\n  buckets:\n    logs:\n      backend: nowhere\n";
    let ps = assert_problem(load_yaml(yaml, &no_env), "no backend named `nowhere`");
    assert!(
        ps[0].starts_with("storage.buckets.logs.backend (line 8 column 16)"),
        "{ps:?}"
    );
}

#[test]
fn public_and_public_prefixes_conflict() {
    let yaml = "storage:\n  filesystem: /d\n  buckets:\n    site:\n      public: true\n      public_prefixes: [a/]\n";
    assert_problem(load_yaml(yaml, &no_env), "mutually exclusive");
}

#[test]
fn storage_forms_are_exclusive_and_siblings_checked() {
    let yaml = "storage:\n  filesystem: /d\n  s3: https://x.example\n";
    assert_problem(load_yaml(yaml, &no_env), "exactly one of");
    let yaml = "storage:\n  filesystem: /d\n  region: eu\n";
    assert_problem(load_yaml(yaml, &no_env), "storage.region");
    let yaml = "storage:\n  backend:\n    type: filesystem\n";
    assert_problem(load_yaml(yaml, &no_env), "storage.backend.path");
    let yaml = "storage:\n  backend:\n    type: nfs\n    path: /x\n";
    assert_problem(load_yaml(yaml, &no_env), "unknown backend type `nfs`");
    let yaml = "storage:\n  s3: ftp://x\n";
    assert_problem(load_yaml(yaml, &no_env), "storage.s3");
    let yaml = "storage:\n  backends:\n    - name: a\n      type: filesystem\n      path: /a\n  backend_encryption:\n    mode: none\n";
    assert_problem(load_yaml(yaml, &no_env), "storage.backend_encryption");
}

#[test]
fn backend_names_unique_and_env_vars_distinct() {
    let yaml = "storage:\n  default_backend: a\n  backends:\n    - name: a\n      type: filesystem\n      path: /a\n    - name: a\n      type: filesystem\n      path: /b\n";
    assert_problem(load_yaml(yaml, &no_env), "duplicate backend name `a`");
    let yaml = "storage:\n  default_backend: a-b\n  backends:\n    - name: a-b\n      type: filesystem\n      path: /a\n    - name: a.b\n      type: filesystem\n      path: /b\n";
    assert_problem(load_yaml(yaml, &no_env), "DGP_BACKEND_A_B_ENCRYPTION_KEY");
}

#[test]
fn lint_reports_all_problems() {
    let yaml = "storage:\n  backends:\n    - name: fs\n      type: filesystem\n      path: /a\n      encryption:\n        mode: sse-kms\n        kms_key_id: k\n    - name: s3\n      type: s3\n      endpoint: https://s3.example\n  buckets:\n    BAD:\n      backend: gone\nadvanced:\n  max_delta_ratio: 1.5\n";
    let ps = problems(lint_yaml(yaml, &no_env));
    for needle in [
        "storage.backends[0].encryption.mode",
        "storage.default_backend",
        "storage.buckets.BAD (line 13",
        "storage.buckets.BAD.backend",
        "advanced.max_delta_ratio (line 16",
    ] {
        assert!(
            ps.iter().any(|p| p.contains(needle)),
            "missing {needle}: {ps:#?}"
        );
    }
}

#[test]
fn data_dir_override() {
    let ov = Overrides {
        data_dir: Some("/srv/dgp".into()),
        ..Default::default()
    };
    let s = load_str("", "t", &ov, &no_env).unwrap();
    assert!(
        matches!(&s.backends[0].kind, BackendKind::Filesystem { path } if path == &PathBuf::from("/srv/dgp"))
    );
    assert!(s.warnings.is_empty());
    let s = load_str("storage:\n  filesystem: /var/data\n", "t", &ov, &no_env).unwrap();
    assert!(
        matches!(&s.backends[0].kind, BackendKind::Filesystem { path } if path == &PathBuf::from("/var/data"))
    );
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("/srv/dgp") && w.contains("ignored")),
        "{:?}",
        s.warnings
    );
    // storage with only buckets still uses the embedded default (data dir honoured)
    let s = load_str(
        "storage:\n  buckets:\n    releases: {}\n",
        "t",
        &ov,
        &no_env,
    )
    .unwrap();
    assert!(
        matches!(&s.backends[0].kind, BackendKind::Filesystem { path } if path == &PathBuf::from("/srv/dgp"))
    );
    assert_eq!(s.buckets["releases"].backend, "default");
}

// ------------------------------------------------------------ overrides, access, advanced

#[test]
fn overrides_win_over_file() {
    let yaml = "access:\n  access_key_id: file-id\n  secret_access_key: file-secret\nadvanced:\n  listen_addr: 127.0.0.1:1\n  log_level: debug\n";
    let env = env_of(&[
        ("DGP_LISTEN_ADDR", "0.0.0.0:7000"),
        ("DGP_SECRET_ACCESS_KEY", "env-secret"),
        ("DGP_LOG_LEVEL", "warn"),
    ]);
    let cli = Overrides {
        log_level: Some("trace".into()),
        ..Default::default()
    };
    let ov = cli.or(Overrides::from_env(&env));
    let s = load_str(yaml, "t", &ov, &env).unwrap();
    assert_eq!(s.listen_addr.to_string(), "0.0.0.0:7000");
    assert_eq!(s.log_level, "trace");
    let c = s.credentials.unwrap();
    assert_eq!(c.access_key_id, "file-id");
    assert_eq!(c.secret_access_key.expose(), "env-secret");
    assert!(!format!("{ov:?}").contains("env-secret"));

    let bad = Overrides {
        listen_addr: Some("localhost:9000".into()),
        ..Default::default()
    };
    assert_problem(load_str("", "t", &bad, &no_env), "DGP_LISTEN_ADDR");
}

#[test]
fn half_credentials_rejected() {
    assert_problem(
        load_yaml("access:\n  access_key_id: a\n", &no_env),
        "must be given together",
    );
    let ov = Overrides {
        access_key_id: Some("a".into()),
        ..Default::default()
    };
    assert_problem(load_str("", "t", &ov, &no_env), "must be given together");
    let ov = Overrides {
        access_key_id: Some("a".into()),
        secret_access_key: Some("b".into()),
        ..Default::default()
    };
    assert!(
        load_str("", "t", &ov, &no_env)
            .unwrap()
            .credentials
            .is_some()
    );
}

#[test]
fn advanced_fields_validated() {
    assert_problem(
        load_yaml("advanced:\n  listen_addr: nope\n", &no_env),
        "advanced.listen_addr (line 2 column 16)",
    );
    assert_problem(
        load_yaml("advanced:\n  max_delta_ratio: 0\n", &no_env),
        "greater than 0",
    );
    assert_problem(
        load_yaml("advanced:\n  log_level: deltaglider_proxy=loud\n", &no_env),
        "unknown level",
    );
    assert_problem(
        load_yaml(
            "advanced:\n  s3_domains: [\"http://s3.example\"]\n",
            &no_env,
        ),
        "bare domain",
    );
    assert_problem(
        load_yaml("advanced:\n  max_object_size_for_delta_mb: 0\n", &no_env),
        "at least 1",
    );
    let s = load_yaml(
        "advanced:\n  s3_domains: [S3.Example.COM, localhost]\n  shutdown_grace_secs: 5\n",
        &no_env,
    )
    .unwrap();
    assert_eq!(s.advanced.s3_domains, vec!["s3.example.com", "localhost"]);
    assert_eq!(s.advanced.shutdown_grace_secs, 5);
    assert_problem(
        load_yaml("access:\n  iam_mode: yaml\n", &no_env),
        "unknown IAM mode",
    );
}

#[test]
fn admission_validated() {
    let yaml = "admission:\n  blocks:\n    - name: a\n      match:\n        source_ip_list: [\"10.0.0.0/33\", \"nope\"]\n        method: [FETCH]\n      action: explode\n    - name: a\n      action: {type: reject, status: 200}\n    - action: deny\n";
    let ps = problems(load_yaml(yaml, &no_env));
    for needle in [
        "admission.blocks[0].match.source_ip_list[0] (line 5",
        "admission.blocks[0].match.source_ip_list[1]",
        "admission.blocks[0].match.method[0]",
        "admission.blocks[0].action (line 7",
        "duplicate block name `a`",
        "admission.blocks[1].action.status",
        "admission.blocks[2].name",
    ] {
        assert!(
            ps.iter().any(|p| p.contains(needle)),
            "missing {needle}: {ps:#?}"
        );
    }
    let ok = "admission:\n  blocks:\n    - name: v6\n      match:\n        source_ip_list: [\"2001:db8::1/32\", 192.0.2.7]\n        method: [get]\n        bucket: releases\n        path_glob: \"builds/*\"\n      action: allow-anonymous\n";
    let s = load_yaml(ok, &no_env).unwrap();
    let m = &s.admission[0].matcher;
    assert_eq!(m.source_ips[0].to_string(), "2001:db8::/32");
    assert!(m.source_ips[1].contains("::ffff:192.0.2.7".parse().unwrap()));
    assert_eq!(m.methods, vec!["GET"]);
    assert_eq!(s.admission[0].action, AdmissionAction::AllowAnonymous);

    let bad_glob = "admission:\n  blocks:\n    - name: g\n      match:\n        path_glob: \"builds/[a\"\n      action: deny\n";
    assert_problem(
        load_yaml(bad_glob, &no_env),
        "admission.blocks[0].match.path_glob (line 5",
    );
}

#[test]
fn trust_proxy_headers_from_file_and_env() {
    let yaml = "advanced:\n  trust_proxy_headers: true\n";
    assert!(
        load_yaml(yaml, &no_env)
            .unwrap()
            .advanced
            .trust_proxy_headers
    );
    assert!(!load_yaml("", &no_env).unwrap().advanced.trust_proxy_headers);
    let ov = Overrides::from_env(&env_of(&[("DGP_TRUST_PROXY_HEADERS", "false")]));
    assert!(
        !load_str(yaml, "t", &ov, &no_env)
            .unwrap()
            .advanced
            .trust_proxy_headers
    );
    let ov = Overrides::from_env(&env_of(&[("DGP_TRUST_PROXY_HEADERS", "1")]));
    assert!(
        load_str("", "t", &ov, &no_env)
            .unwrap()
            .advanced
            .trust_proxy_headers
    );
    let ov = Overrides::from_env(&env_of(&[("DGP_TRUST_PROXY_HEADERS", "maybe")]));
    assert_problem(load_str("", "t", &ov, &no_env), "DGP_TRUST_PROXY_HEADERS");
}

// ------------------------------------------------------------ ${env:...} and keys in YAML

#[test]
fn env_reference_unset_names_variable_and_line() {
    let yaml = "storage:\n  s3: \"https://${env:S3_HOST}\"\n";
    let ps = assert_problem(load_yaml(yaml, &no_env), "S3_HOST");
    assert!(ps[0].contains("line 2"), "{ps:?}");
    // lint is strict too outside key fields
    assert_problem(lint_yaml(yaml, &no_env), "S3_HOST");
    let s = load_yaml(yaml, &env_of(&[("S3_HOST", "minio.local:9000")])).unwrap();
    assert!(
        matches!(&s.backends[0].kind, BackendKind::S3 { endpoint: Some(e), .. } if e == "https://minio.local:9000")
    );
}

#[test]
fn env_reference_cannot_inject_yaml() {
    let yaml = "access:\n  access_key_id: admin\n  secret_access_key: ${env:SECRET}\n";
    let env = env_of(&[("SECRET", "x\niam_mode: declarative")]);
    let s = load_yaml(yaml, &env).unwrap();
    assert_eq!(s.iam_mode, IamMode::Gui);
    assert_eq!(
        s.credentials.unwrap().secret_access_key.expose(),
        "x\niam_mode: declarative"
    );
}

#[test]
fn literal_key_in_yaml_rejected_without_echo() {
    let yaml = format!(
        "storage:\n  filesystem: /d\n  backend_encryption:\n    mode: aes256-gcm-proxy\n    key: \"{HEX_KEY}\"\n"
    );
    for r in [
        problems(load_yaml(&yaml, &no_env)),
        problems(lint_yaml(&yaml, &no_env)),
    ] {
        assert!(
            r.iter()
                .any(|p| p.contains("storage.backend_encryption.key") && p.contains("literal key")),
            "{r:?}"
        );
        assert!(
            r.iter()
                .all(|p| !p.contains(HEX_KEY) && !p.contains("00112233")),
            "{r:?}"
        );
    }
    let yaml = "storage:\n  backends:\n    - name: a\n      type: filesystem\n      path: /a\n      encryption:\n        mode: aes256-gcm-proxy\n        legacy_key: hunter2\n        legacy_key_id: old\n";
    let ps = assert_problem(
        load_yaml(yaml, &no_env),
        "storage.backends[0].encryption.legacy_key",
    );
    assert!(ps.iter().all(|p| !p.contains("hunter2")));
}

#[test]
fn encryption_field_rules() {
    let base = "storage:\n  backends:\n    - name: a\n      type: s3\n      encryption:\n";
    let cases = [
        (
            "        mode: none\n        key_id: k1\n",
            "only valid with mode: aes256-gcm-proxy",
        ),
        (
            "        mode: aes256-gcm-proxy\n        key: \"${env:K}\"\n        key_file: /k\n",
            "mutually exclusive",
        ),
        (
            "        mode: aes256-gcm-proxy\n        key_id: \"bad id\"\n",
            "invalid key id",
        ),
        ("        mode: aes\n", "unknown encryption mode `aes`"),
        (
            "        mode: none\n        legacy_key_id: old\n",
            "requires legacy_key",
        ),
        (
            "        mode: sse-s3\n        bucket_key_enabled: true\n",
            "bucket_key_enabled",
        ),
    ];
    let env = env_of(&[("K", HEX_KEY)]);
    for (body, needle) in cases {
        assert_problem(load_yaml(&format!("{base}{body}"), &env), needle);
    }
}

// ------------------------------------------------------------ key resolution

fn aes_fs_settings(extra: &str, env: &dyn Fn(&str) -> Option<String>) -> Settings {
    let yaml = format!(
        "storage:\n  default_backend: vault\n  backends:\n    - name: vault\n      type: filesystem\n      path: /d\n      encryption:\n        mode: aes256-gcm-proxy\n{extra}"
    );
    load_yaml(&yaml, env).unwrap_or_else(|e| panic!("{e}"))
}

fn key_file(bytes: &[u8], mode: u32) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(bytes).unwrap();
    f.flush().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    f
}

fn key_errors(r: Result<ResolvedKeys, ConfigError>) -> String {
    match r {
        Err(e @ ConfigError::Keys { .. }) => e.to_string(),
        other => panic!("expected key errors, got {other:?}"),
    }
}

#[cfg(unix)]
#[test]
fn key_file_permissions_and_length() {
    let good = key_file(&[7u8; 32], 0o600);
    let s = aes_fs_settings(
        &format!("        key_file: {}\n", good.path().display()),
        &no_env,
    );
    let keys = resolve_encryption_keys(&s, &no_env).unwrap();
    assert_eq!(keys["vault"].key.as_ref().unwrap().expose(), &[7u8; 32]);

    let ro = key_file(&[7u8; 32], 0o400);
    let s = aes_fs_settings(
        &format!("        key_file: {}\n", ro.path().display()),
        &no_env,
    );
    assert!(resolve_encryption_keys(&s, &no_env).is_ok());

    let open = key_file(&[7u8; 32], 0o644);
    let s = aes_fs_settings(
        &format!("        key_file: {}\n", open.path().display()),
        &no_env,
    );
    let msg = key_errors(resolve_encryption_keys(&s, &no_env));
    assert!(
        msg.contains("0644") && msg.contains(&open.path().display().to_string()),
        "{msg}"
    );

    let short = key_file(&[7u8; 31], 0o600);
    let s = aes_fs_settings(
        &format!("        key_file: {}\n", short.path().display()),
        &no_env,
    );
    let msg = key_errors(resolve_encryption_keys(&s, &no_env));
    assert!(
        msg.contains("exactly 32 raw bytes") && msg.contains("31"),
        "{msg}"
    );

    let hexfile = key_file(format!("{HEX_KEY}\n").as_bytes(), 0o600);
    let s = aes_fs_settings(
        &format!("        key_file: {}\n", hexfile.path().display()),
        &no_env,
    );
    let msg = key_errors(resolve_encryption_keys(&s, &no_env));
    assert!(
        msg.contains("hex-encoded") && !msg.contains("00112233"),
        "{msg}"
    );

    let s = aes_fs_settings("        key_file: /nonexistent/key\n", &no_env);
    assert!(key_errors(resolve_encryption_keys(&s, &no_env)).contains("/nonexistent/key"));
}

#[test]
fn hex_key_from_env() {
    let s = aes_fs_settings("", &no_env);
    let var = "DGP_BACKEND_VAULT_ENCRYPTION_KEY";
    assert_eq!(
        s.backends[0].encryption.key_source,
        Some(KeySource::Env { var: var.into() })
    );

    let ok = env_of(&[(var, &format!("  {}\n", HEX_KEY.to_uppercase()))]);
    let keys = resolve_encryption_keys(&s, &ok).unwrap();
    assert_eq!(keys["vault"].key.as_ref().unwrap().expose()[31], 0xff);

    let msg = key_errors(resolve_encryption_keys(&s, &no_env));
    assert!(msg.contains(var) && msg.contains("not set"), "{msg}");

    // Malformed: names the variable, never the value (nor its bad character).
    let secretish = "zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let msg = key_errors(resolve_encryption_keys(&s, &env_of(&[(var, secretish)])));
    assert!(msg.contains(var) && msg.contains("hex"), "{msg}");
    assert!(!msg.contains("zz") && !msg.contains("112233"), "{msg}");
    assert!(!msg.contains('z'), "{msg}");

    let short = &HEX_KEY[..62];
    let msg = key_errors(resolve_encryption_keys(&s, &env_of(&[(var, short)])));
    assert!(
        msg.contains(var) && msg.contains("64 hex") && msg.contains("62") && !msg.contains(short),
        "{msg}"
    );
}

#[test]
fn legacy_key_resolution() {
    let env = env_of(&[
        ("DGP_BACKEND_VAULT_ENCRYPTION_KEY", HEX_KEY),
        ("OLD", &"ab".repeat(32)),
    ]);
    let s = aes_fs_settings(
        "        key_id: new\n        legacy_key: \"${env:OLD}\"\n        legacy_key_id: old\n",
        &env,
    );
    let keys = resolve_encryption_keys(&s, &env).unwrap();
    assert_eq!(
        keys["vault"].legacy_key.as_ref().unwrap().expose(),
        &[0xab; 32]
    );
    assert_eq!(keys["vault"].legacy_key_id.as_deref(), Some("old"));
}

#[test]
fn secrets_are_redacted() {
    let s = Secret::new("topsecret");
    assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    assert_eq!(s.expose(), "topsecret");
    let k = parse_hex_key(HEX_KEY).unwrap();
    assert!(!format!("{k:?}").contains("0011"));
}

#[test]
#[ignore = "prints sample messages; run with --ignored --nocapture"]
fn show_messages() {
    let yaml = "storage:\n  backends:\n    - name: fs\n      type: filesystem\n      path: /a\n      encryption:\n        mode: sse-kms\n        kms_key_id: k\n    - name: s3\n      type: s3\n      endpoint: https://s3.example\n  buckets:\n    BAD:\n      backend: gone\nadvanced:\n  max_delta_ratio: 1.5\n";
    println!("{}\n", lint_yaml(yaml, &no_env).unwrap_err());
    let e = load_yaml(
        "storage:\n  backends:\n    - name: a\n      type: s3\n      regoin: x\n",
        &no_env,
    )
    .unwrap_err();
    println!("{e}\n");
    if let ConfigError::Parse { snippet, .. } = &e {
        println!("{snippet}\n");
    }
    println!("{:#?}", lint_yaml(SEED_NAMED_AES, &no_env).unwrap());
    println!("{:#?}", lint_yaml(SEED_SINGLETON_AES, &no_env).unwrap());
    println!("{}", load_yaml(SEED_SINGLETON_AES, &no_env).unwrap_err());
}

#[test]
fn config_path_precedence() {
    let env = env_of(&[("DGP_CONFIG", "/etc/dgp.yaml")]);
    assert_eq!(
        config_path(None, &env),
        Some(PathBuf::from("/etc/dgp.yaml"))
    );
    assert_eq!(
        config_path(Some(std::path::Path::new("/cli.yaml")), &env),
        Some(PathBuf::from("/cli.yaml"))
    );
    assert_eq!(config_path(None, &no_env), None);
}

#[test]
fn env_var_for_backend_is_exported() {
    assert_eq!(
        env_var_for_backend("hetzner-fsn1"),
        "DGP_BACKEND_HETZNER_FSN1_ENCRYPTION_KEY"
    );
}
