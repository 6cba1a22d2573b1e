//! Canned ACLs, as the policy engine sees them. On this single-owner box
//! every bucket and object belongs to the owner with FULL_CONTROL; a canned
//! ACL adds grants to one of two groups, everyone (`AllUsers`, anonymous
//! callers included) or every IAM user (`AuthenticatedUsers`):
//!
//! | canned               | on a bucket                     | on an object |
//! |----------------------|---------------------------------|--------------|
//! | `public-read`        | everyone lists                  | everyone reads |
//! | `public-read-write`  | everyone lists, writes, deletes | everyone reads |
//! | `authenticated-read` | IAM users list                  | IAM users read |
//!
//! `private`, `bucket-owner-read` and `bucket-owner-full-control` grant
//! nothing beyond the owner. A bucket's ACL becomes policy statements
//! judged with its bucket policy (an explicit Deny there still wins); an
//! object's ACL is consulted only when nothing else allowed a read.

use super::bucket::{PolicyStatement, Principals};
use super::{ActionPattern, Effect, Resource, Statement};

/// A canned ACL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canned {
    Private,
    PublicRead,
    PublicReadWrite,
    AuthenticatedRead,
    BucketOwnerRead,
    BucketOwnerFullControl,
}

/// A group a canned ACL grants to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Grantee {
    /// Everyone, anonymous callers included.
    AllUsers,
    /// Every IAM user.
    AuthenticatedUsers,
}

impl Grantee {
    pub const fn uri(self) -> &'static str {
        match self {
            Grantee::AllUsers => "http://acs.amazonaws.com/groups/global/AllUsers",
            Grantee::AuthenticatedUsers => {
                "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
            }
        }
    }

    pub fn from_uri(uri: &str) -> Option<Grantee> {
        [Grantee::AllUsers, Grantee::AuthenticatedUsers]
            .into_iter()
            .find(|g| g.uri() == uri.trim())
    }
}

/// What a grant gives (of S3's ACL permissions, the ones canned ACLs use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    Read,
    Write,
}

impl Permission {
    pub const fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "READ",
            Permission::Write => "WRITE",
        }
    }
}

impl Canned {
    pub const ALL: [Canned; 6] = [
        Canned::Private,
        Canned::PublicRead,
        Canned::PublicReadWrite,
        Canned::AuthenticatedRead,
        Canned::BucketOwnerRead,
        Canned::BucketOwnerFullControl,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Canned::Private => "private",
            Canned::PublicRead => "public-read",
            Canned::PublicReadWrite => "public-read-write",
            Canned::AuthenticatedRead => "authenticated-read",
            Canned::BucketOwnerRead => "bucket-owner-read",
            Canned::BucketOwnerFullControl => "bucket-owner-full-control",
        }
    }

    pub fn parse(s: &str) -> Option<Canned> {
        Canned::ALL.into_iter().find(|c| c.as_str() == s.trim())
    }

    /// The grants beyond the owner's FULL_CONTROL, sorted.
    pub fn grants(self) -> &'static [(Grantee, Permission)] {
        match self {
            Canned::PublicRead => &[(Grantee::AllUsers, Permission::Read)],
            Canned::PublicReadWrite => &[
                (Grantee::AllUsers, Permission::Read),
                (Grantee::AllUsers, Permission::Write),
            ],
            Canned::AuthenticatedRead => &[(Grantee::AuthenticatedUsers, Permission::Read)],
            Canned::Private | Canned::BucketOwnerRead | Canned::BucketOwnerFullControl => &[],
        }
    }

    /// Whether it gives anyone but the owner anything.
    pub fn grants_more(self) -> bool {
        !self.grants().is_empty()
    }

    /// The canned ACL whose grants are exactly `grants` (an ACL document or
    /// `x-amz-grant-*` headers that say the same as a canned ACL).
    pub fn from_grants(grants: &[(Grantee, Permission)]) -> Option<Canned> {
        let mut g = grants.to_vec();
        g.sort();
        g.dedup();
        [
            Canned::Private,
            Canned::PublicRead,
            Canned::PublicReadWrite,
            Canned::AuthenticatedRead,
        ]
        .into_iter()
        .find(|c| c.grants() == g.as_slice())
    }

    /// The value stored with an object or bucket: only ACLs that grant.
    pub fn stored(self) -> Option<&'static str> {
        self.grants_more().then_some(self.as_str())
    }

    /// Whether an object with this ACL may be read by an IAM user
    /// (`authenticated`) or an anonymous caller.
    pub fn lets_read(self, authenticated: bool) -> bool {
        self.grants()
            .iter()
            .any(|(g, p)| *p == Permission::Read && (*g == Grantee::AllUsers || authenticated))
    }
}

fn statement(actions: &[&str], resource: &str) -> Statement {
    Statement {
        effect: Effect::Allow,
        actions: actions
            .iter()
            .map(|a| ActionPattern::parse(a).expect("known action"))
            .collect(),
        resources: vec![Resource::parse(resource).expect("escaped glob")],
        conditions: Vec::new(),
    }
}

/// A bucket's canned ACL as bucket-policy statements: READ lists the
/// bucket (objects, versions, uploads); WRITE creates, overwrites and
/// deletes its objects.
pub fn bucket_statements(bucket: &str, canned: Canned) -> Vec<PolicyStatement> {
    let escaped = globset::escape(bucket);
    canned
        .grants()
        .iter()
        .map(|(g, p)| {
            let principals = match g {
                Grantee::AllUsers => Principals::Anyone,
                Grantee::AuthenticatedUsers => Principals::Authenticated,
            };
            let statement = match p {
                Permission::Read => statement(
                    &[
                        "s3:ListBucket",
                        "s3:ListBucketVersions",
                        "s3:ListBucketMultipartUploads",
                    ],
                    &escaped,
                ),
                Permission::Write => statement(
                    &["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
                    &format!("{escaped}/*"),
                ),
            };
            PolicyStatement {
                principals,
                statement,
                label: format!("bucket ACL {} ({})", canned.as_str(), p.as_str()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    fn req<'a>(action: S3Action, key: Option<&'a str>) -> Request<'a> {
        Request {
            action,
            bucket: Some("b[1]"),
            key,
            prefix: key.is_none().then_some(""),
            delimiter: None,
            source: "10.0.0.1".parse().unwrap(),
            secure: false,
            username: None,
        }
    }

    #[test]
    fn canned_names_and_grants() {
        for c in Canned::ALL {
            assert_eq!(Canned::parse(c.as_str()), Some(c));
        }
        assert_eq!(Canned::parse("public"), None);
        assert_eq!(Canned::PublicRead.stored(), Some("public-read"));
        assert_eq!(Canned::BucketOwnerFullControl.stored(), None);
        assert_eq!(
            Canned::from_grants(&[
                (Grantee::AllUsers, Permission::Write),
                (Grantee::AllUsers, Permission::Read)
            ]),
            Some(Canned::PublicReadWrite)
        );
        assert_eq!(Canned::from_grants(&[]), Some(Canned::Private));
        assert_eq!(
            Canned::from_grants(&[(Grantee::AuthenticatedUsers, Permission::Write)]),
            None
        );
        assert!(Canned::PublicRead.lets_read(false));
        assert!(!Canned::AuthenticatedRead.lets_read(false));
        assert!(Canned::AuthenticatedRead.lets_read(true));
        assert!(!Canned::Private.lets_read(true));
    }

    #[test]
    fn bucket_acls_list_and_write_but_never_read_objects() {
        let read = bucket_statements("b[1]", Canned::PublicRead);
        fn judge<'a>(st: &'a [PolicyStatement], r: &Request<'_>) -> Verdict<&'a str> {
            super::super::judge(st.iter().map(|p| (&p.statement, p.label.as_str())), r)
        }
        assert!(matches!(
            judge(&read, &req(LIST_BUCKET, None)),
            Verdict::Allow(_)
        ));
        assert_eq!(judge(&read, &req(GET_OBJECT, Some("k"))), Verdict::NoMatch);
        assert_eq!(judge(&read, &req(PUT_OBJECT, Some("k"))), Verdict::NoMatch);
        let rw = bucket_statements("b[1]", Canned::PublicReadWrite);
        assert!(matches!(
            judge(&rw, &req(PUT_OBJECT, Some("k"))),
            Verdict::Allow(_)
        ));
        assert!(matches!(
            judge(&rw, &req(DELETE_OBJECT, Some("a/b"))),
            Verdict::Allow(_)
        ));
        assert_eq!(judge(&rw, &req(PUT_BUCKET_POLICY, None)), Verdict::NoMatch);
        assert_eq!(judge(&rw, &req(GET_OBJECT, Some("k"))), Verdict::NoMatch);
        let auth = bucket_statements("b[1]", Canned::AuthenticatedRead);
        assert_eq!(auth[0].principals, Principals::Authenticated);
        assert!(!auth[0].principals.includes(None));
        assert!(auth[0].principals.includes(Some("alice")));
        assert!(bucket_statements("b[1]", Canned::Private).is_empty());
    }
}
