use super::*;

fn st(
    effect: Effect,
    actions: &[&str],
    resources: &[&str],
    conds: &[(&str, &str, &[&str])],
) -> Statement {
    Statement {
        effect,
        actions: actions
            .iter()
            .map(|a| ActionPattern::parse(a).unwrap())
            .collect(),
        resources: resources
            .iter()
            .map(|r| Resource::parse(r).unwrap())
            .collect(),
        conditions: conds
            .iter()
            .map(|(op, k, vs)| {
                Condition::parse(op, k, &vs.iter().map(|v| v.to_string()).collect::<Vec<_>>())
                    .unwrap()
            })
            .collect(),
    }
}

fn req<'a>(action: S3Action, bucket: Option<&'a str>, key: Option<&'a str>) -> Request<'a> {
    Request {
        action,
        bucket,
        key,
        prefix: None,
        delimiter: None,
        source: "192.168.1.20".parse().unwrap(),
        secure: false,
        username: Some("alice"),
    }
}

fn verdict(stmts: &[Statement], r: &Request<'_>) -> Verdict<usize> {
    judge(stmts.iter().enumerate().map(|(i, s)| (s, i)), r)
}

#[test]
fn shorthands_and_s3_names() {
    let s = [st(
        Effect::Allow,
        &["read", "list"],
        &["releases/*", "releases"],
        &[],
    )];
    assert_eq!(
        verdict(&s, &req(GET_OBJECT, Some("releases"), Some("a/b.bin"))),
        Verdict::Allow(0)
    );
    assert_eq!(
        verdict(&s, &req(LIST_BUCKET, Some("releases"), None)),
        Verdict::Allow(0)
    );
    assert_eq!(
        verdict(&s, &req(PUT_OBJECT, Some("releases"), Some("a"))),
        Verdict::NoMatch
    );
    assert_eq!(
        verdict(&s, &req(GET_OBJECT, Some("other"), Some("a"))),
        Verdict::NoMatch
    );
    assert_eq!(
        verdict(&s, &req(LIST_ALL_BUCKETS, None, None)),
        Verdict::NoMatch
    );
    let s = [st(
        Effect::Allow,
        &["s3:Get*", "s3:ListBucket"],
        &["arn:aws:s3:::releases*"],
        &[],
    )];
    assert_eq!(
        verdict(&s, &req(GET_OBJECT, Some("releases"), Some("x"))),
        Verdict::Allow(0)
    );
    assert_eq!(
        verdict(&s, &req(GET_LOCATION, Some("releases"), None)),
        Verdict::Allow(0)
    );
    assert_eq!(
        verdict(&s, &req(LIST_UPLOADS, Some("releases"), None)),
        Verdict::NoMatch
    );
    let all = [st(Effect::Allow, &["*"], &["*"], &[])];
    for a in ALL_ACTIONS {
        assert_eq!(
            verdict(&all, &req(*a, Some("b"), Some("k"))),
            Verdict::Allow(0),
            "{}",
            a.name
        );
    }
    assert_eq!(
        verdict(&all, &req(LIST_ALL_BUCKETS, None, None)),
        Verdict::Allow(0)
    );
}

#[test]
fn explicit_deny_beats_allow_in_any_order() {
    let s = [
        st(Effect::Allow, &["*"], &["*"], &[]),
        st(Effect::Deny, &["delete"], &["releases/firmware/*"], &[]),
    ];
    assert_eq!(
        verdict(
            &s,
            &req(DELETE_OBJECT, Some("releases"), Some("firmware/x"))
        ),
        Verdict::Deny(1)
    );
    assert_eq!(
        verdict(&s, &req(DELETE_OBJECT, Some("releases"), Some("docs/x"))),
        Verdict::Allow(0)
    );
    let rev: Vec<Statement> = s.iter().rev().cloned().collect();
    assert_eq!(
        verdict(
            &rev,
            &req(DELETE_OBJECT, Some("releases"), Some("firmware/x"))
        ),
        Verdict::Deny(0)
    );
}

#[test]
fn list_by_prefix_resource() {
    let s = [st(Effect::Allow, &["list"], &["releases/builds/*"], &[])];
    let mut r = req(LIST_BUCKET, Some("releases"), None);
    assert_eq!(verdict(&s, &r), Verdict::NoMatch);
    r.prefix = Some("builds/");
    assert_eq!(verdict(&s, &r), Verdict::Allow(0));
    r.prefix = Some("builds/2026/");
    assert_eq!(verdict(&s, &r), Verdict::Allow(0));
    r.prefix = Some("src/");
    assert_eq!(verdict(&s, &r), Verdict::NoMatch);
    // A key-level resource never grants a bucket administration action.
    let s = [st(Effect::Allow, &["*"], &["releases/*"], &[])];
    assert_eq!(
        verdict(&s, &req(DELETE_BUCKET, Some("releases"), None)),
        Verdict::NoMatch
    );
}

#[test]
fn conditions_and_or() {
    let s = [st(
        Effect::Allow,
        &["write"],
        &["releases/*"],
        &[
            (
                "IpAddress",
                "aws:SourceIp",
                &["10.0.0.0/8", "192.168.1.0/24"],
            ),
            ("Bool", "aws:SecureTransport", &["false"]),
        ],
    )];
    let mut r = req(PUT_OBJECT, Some("releases"), Some("a"));
    assert_eq!(verdict(&s, &r), Verdict::Allow(0));
    r.source = "172.16.0.1".parse().unwrap();
    assert_eq!(verdict(&s, &r), Verdict::NoMatch);
    r.source = "10.1.1.1".parse().unwrap();
    r.secure = true;
    assert_eq!(verdict(&s, &r), Verdict::NoMatch);

    let s = [st(
        Effect::Allow,
        &["list"],
        &["releases"],
        &[("StringLike", "s3:prefix", &["home/alice/*", "shared/*"])],
    )];
    let mut r = req(LIST_BUCKET, Some("releases"), None);
    assert_eq!(
        verdict(&s, &r),
        Verdict::NoMatch,
        "no prefix: no positive match"
    );
    r.prefix = Some("shared/x/");
    assert_eq!(verdict(&s, &r), Verdict::Allow(0));
    let s = [st(
        Effect::Deny,
        &["*"],
        &["*"],
        &[("NotIpAddress", "aws:SourceIp", &["192.168.0.0/16"])],
    )];
    assert_eq!(
        verdict(&s, &req(GET_OBJECT, Some("b"), Some("k"))),
        Verdict::NoMatch
    );
    let mut r = req(GET_OBJECT, Some("b"), Some("k"));
    r.source = "8.8.8.8".parse().unwrap();
    assert_eq!(verdict(&s, &r), Verdict::Deny(0));
    let s = [st(
        Effect::Allow,
        &["read"],
        &["*"],
        &[("StringNotLike", "s3:prefix", &["secret/*"])],
    )];
    assert_eq!(
        verdict(&s, &req(GET_OBJECT, Some("b"), Some("k"))),
        Verdict::Allow(0),
        "negated op on an absent key holds"
    );
}

#[test]
fn templates() {
    let pat = substitute_username("home/${iam:username}/*", "alice");
    let s = [st(Effect::Allow, &["*"], &[&pat], &[])];
    assert_eq!(
        verdict(&s, &req(PUT_OBJECT, Some("home"), Some("alice/x"))),
        Verdict::Allow(0)
    );
    assert_eq!(
        verdict(&s, &req(PUT_OBJECT, Some("home"), Some("bob/x"))),
        Verdict::NoMatch
    );
}

#[test]
fn parse_errors_are_specific() {
    assert!(
        ActionPattern::parse("s3:GetObjekt")
            .unwrap_err()
            .contains("names no S3 action")
    );
    assert!(
        ActionPattern::parse("fly")
            .unwrap_err()
            .contains("unknown action")
    );
    assert!(Resource::parse("arn:aws:iam::1:user/x").is_err());
    assert!(Resource::parse("").is_err());
    assert!(
        Condition::parse("NumericEquals", "aws:SourceIp", &["1".into()])
            .unwrap_err()
            .contains("operator")
    );
    assert!(
        Condition::parse("StringLike", "aws:CurrentTime", &["1".into()])
            .unwrap_err()
            .contains("condition key")
    );
    assert!(Condition::parse("IpAddress", "s3:prefix", &["1.2.3.4".into()]).is_err());
    assert!(Condition::parse("IpAddress", "aws:SourceIp", &["1.2.3.400".into()]).is_err());
    assert!(Condition::parse("Bool", "aws:SecureTransport", &["maybe".into()]).is_err());
    assert!(Condition::parse("StringEquals", "aws:SourceIp", &["1.2.3.4".into()]).is_err());
}
