//! The policy engine: permissions (IAM user and group permissions, and the
//! statements of bucket policies) and how a request is judged against them.
//!
//! A statement allows or denies some actions on some resources under some
//! conditions. Judging a request: an explicit Deny that matches wins over
//! every Allow; else an Allow that matches allows; nothing matching means
//! denied. Actions are the S3 names (`s3:GetObject`, wildcards allowed) or
//! the shorthands `read`, `write`, `delete`, `list`, `admin`, `*`.
//! Resources are globs on `bucket` and `bucket/key` (`releases/builds/*`),
//! `arn:aws:s3:::` prefixes accepted. Conditions use IAM's operators.

use std::net::IpAddr;

use globset::GlobMatcher;

pub use crate::config::Effect;
use crate::config::{IpNet, PermissionSpec, compile_glob};

pub mod acl;
pub mod bucket;

/// The shorthand an S3 action belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Reading objects: GetObject (and HEAD), ListParts.
    Read,
    /// Writing objects: PutObject (single, multipart, copy target), aborting uploads.
    Write,
    /// Deleting objects.
    Delete,
    /// Listing: buckets, objects, versions, uploads; bucket location and versioning.
    List,
    /// Administration: create and delete buckets, bucket policies, ACLs
    /// (an ACL can publish: that is a sharing decision, not a write).
    Admin,
}

/// What an action applies to, which decides the resource string it is
/// matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `bucket/key`.
    Object,
    /// `bucket` (listings also `bucket/<prefix>`).
    Bucket,
    /// The whole service (ListBuckets): only a resource of `*` matches.
    Service,
}

/// One S3 action as IAM names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S3Action {
    pub name: &'static str,
    pub group: Group,
    pub level: Level,
}

macro_rules! actions {
    ($($id:ident = $name:literal, $group:ident, $level:ident;)*) => {
        $(pub const $id: S3Action = S3Action { name: $name, group: Group::$group, level: Level::$level };)*
        /// Every action this server authorizes.
        pub const ALL_ACTIONS: &[S3Action] = &[$($id),*];
    };
}

actions! {
    GET_OBJECT = "s3:GetObject", Read, Object;
    LIST_PARTS = "s3:ListMultipartUploadParts", Read, Object;
    GET_OBJECT_ACL = "s3:GetObjectAcl", Read, Object;
    PUT_OBJECT = "s3:PutObject", Write, Object;
    ABORT_UPLOAD = "s3:AbortMultipartUpload", Write, Object;
    PUT_OBJECT_ACL = "s3:PutObjectAcl", Admin, Object;
    DELETE_OBJECT = "s3:DeleteObject", Delete, Object;
    LIST_BUCKET = "s3:ListBucket", List, Bucket;
    LIST_VERSIONS = "s3:ListBucketVersions", List, Bucket;
    LIST_UPLOADS = "s3:ListBucketMultipartUploads", List, Bucket;
    GET_LOCATION = "s3:GetBucketLocation", List, Bucket;
    GET_VERSIONING = "s3:GetBucketVersioning", List, Bucket;
    LIST_ALL_BUCKETS = "s3:ListAllMyBuckets", List, Service;
    CREATE_BUCKET = "s3:CreateBucket", Admin, Bucket;
    DELETE_BUCKET = "s3:DeleteBucket", Admin, Bucket;
    GET_BUCKET_POLICY = "s3:GetBucketPolicy", Admin, Bucket;
    PUT_BUCKET_POLICY = "s3:PutBucketPolicy", Admin, Bucket;
    DELETE_BUCKET_POLICY = "s3:DeleteBucketPolicy", Admin, Bucket;
    GET_POLICY_STATUS = "s3:GetBucketPolicyStatus", Admin, Bucket;
    GET_BUCKET_ACL = "s3:GetBucketAcl", Admin, Bucket;
    PUT_BUCKET_ACL = "s3:PutBucketAcl", Admin, Bucket;
}

/// An `actions:` entry.
#[derive(Debug, Clone)]
pub enum ActionPattern {
    /// `*` (also `s3:*`).
    All,
    Group(Group),
    /// An S3 action name, `*` wildcards allowed, case-insensitive.
    Name(GlobMatcher),
}

impl ActionPattern {
    /// Parses one entry; an S3 name must match at least one known action
    /// (a typo would otherwise never match and silently deny).
    pub fn parse(s: &str) -> Result<ActionPattern, String> {
        let t = s.trim();
        Ok(match t.to_ascii_lowercase().as_str() {
            "*" | "s3:*" => ActionPattern::All,
            "read" => ActionPattern::Group(Group::Read),
            "write" => ActionPattern::Group(Group::Write),
            "delete" => ActionPattern::Group(Group::Delete),
            "list" => ActionPattern::Group(Group::List),
            "admin" => ActionPattern::Group(Group::Admin),
            lower if lower.starts_with("s3:") => {
                let g = compile_glob(lower)?;
                if !ALL_ACTIONS
                    .iter()
                    .any(|a| g.is_match(a.name.to_ascii_lowercase()))
                {
                    return Err(format!("`{t}` names no S3 action this server knows"));
                }
                ActionPattern::Name(g)
            }
            _ => {
                return Err(format!(
                    "unknown action `{t}` (expected read, write, delete, list, admin, * or an S3 action such as s3:GetObject)"
                ));
            }
        })
    }

    fn matches(&self, a: &S3Action) -> bool {
        match self {
            ActionPattern::All => true,
            ActionPattern::Group(g) => *g == a.group,
            ActionPattern::Name(g) => g.is_match(a.name.to_ascii_lowercase()),
        }
    }
}

/// A `resources:` entry: a glob on `bucket` or `bucket/key`.
#[derive(Debug, Clone)]
pub struct Resource {
    pub pattern: String,
    glob: GlobMatcher,
    /// The part before the first `/`: which buckets the pattern can touch.
    bucket_glob: GlobMatcher,
}

impl Resource {
    /// Parses one entry (after any `${iam:username}` was substituted).
    pub fn parse(s: &str) -> Result<Resource, String> {
        let t = s.trim();
        let p = t.strip_prefix("arn:aws:s3:::").unwrap_or(t);
        if p.is_empty() {
            return Err("empty resource".into());
        }
        if p.starts_with("arn:") {
            return Err(format!(
                "`{t}` is not an S3 resource (arn:aws:s3:::bucket/key)"
            ));
        }
        let bucket_part = p.split('/').next().unwrap_or(p);
        Ok(Resource {
            pattern: p.to_owned(),
            glob: compile_glob(p)?,
            bucket_glob: compile_glob(bucket_part)?,
        })
    }

    fn matches(&self, a: &S3Action, r: &Request<'_>) -> bool {
        match (a.level, r.bucket) {
            (Level::Service, _) | (_, None) => self.glob.is_match(""),
            (Level::Object, Some(b)) => self.glob.is_match(format!("{b}/{}", r.key.unwrap_or(""))),
            (Level::Bucket, Some(b)) => {
                self.glob.is_match(b)
                    || (a.group == Group::List
                        && self
                            .glob
                            .is_match(format!("{b}/{}", r.prefix.unwrap_or(""))))
            }
        }
    }
}

/// A condition operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    IpAddress,
    NotIpAddress,
    StringEquals,
    StringNotEquals,
    StringLike,
    StringNotLike,
    Bool,
}

impl Op {
    pub fn parse(s: &str) -> Result<Op, String> {
        Ok(match s {
            "IpAddress" => Op::IpAddress,
            "NotIpAddress" => Op::NotIpAddress,
            "StringEquals" => Op::StringEquals,
            "StringNotEquals" => Op::StringNotEquals,
            "StringLike" => Op::StringLike,
            "StringNotLike" => Op::StringNotLike,
            "Bool" => Op::Bool,
            _ => {
                return Err(format!(
                    "unknown condition operator `{s}` (expected IpAddress, NotIpAddress, StringEquals, StringNotEquals, StringLike, StringNotLike or Bool)"
                ));
            }
        })
    }
    fn negated(self) -> bool {
        matches!(
            self,
            Op::NotIpAddress | Op::StringNotEquals | Op::StringNotLike
        )
    }
}

/// The request facts a condition can look at.
pub const CONDITION_KEYS: &[&str] = &[
    "aws:SourceIp",
    "aws:SecureTransport",
    "aws:username",
    "s3:prefix",
    "s3:delimiter",
];

#[derive(Debug, Clone)]
enum Values {
    Nets(Vec<IpNet>),
    Exact(Vec<String>),
    Globs(Vec<GlobMatcher>),
    Bool(bool),
}

/// One operator on one key with its values (ORed).
#[derive(Debug, Clone)]
pub struct Condition {
    op: Op,
    key: &'static str,
    values: Values,
}

impl Condition {
    pub fn parse(op: &str, key: &str, values: &[String]) -> Result<Condition, String> {
        let op = Op::parse(op)?;
        let key = CONDITION_KEYS
            .iter()
            .find(|k| k.eq_ignore_ascii_case(key))
            .copied()
            .ok_or_else(|| {
                format!(
                    "unknown condition key `{key}` (expected one of {})",
                    CONDITION_KEYS.join(", ")
                )
            })?;
        if values.is_empty() {
            return Err(format!("{key}: no values"));
        }
        let values = match op {
            Op::IpAddress | Op::NotIpAddress => {
                if key != "aws:SourceIp" {
                    return Err(format!("{op:?} applies to aws:SourceIp, not {key}"));
                }
                Values::Nets(
                    values
                        .iter()
                        .map(|v| IpNet::parse(v.trim()))
                        .collect::<Result<_, _>>()?,
                )
            }
            Op::Bool => {
                if key != "aws:SecureTransport" {
                    return Err(format!("Bool applies to aws:SecureTransport, not {key}"));
                }
                match values {
                    [v] if v.eq_ignore_ascii_case("true") => Values::Bool(true),
                    [v] if v.eq_ignore_ascii_case("false") => Values::Bool(false),
                    _ => return Err("Bool takes one value, true or false".into()),
                }
            }
            Op::StringEquals | Op::StringNotEquals => Values::Exact(values.to_vec()),
            Op::StringLike | Op::StringNotLike => Values::Globs(
                values
                    .iter()
                    .map(|v| compile_glob(v))
                    .collect::<Result<_, _>>()?,
            ),
        };
        if key == "aws:SourceIp" && !matches!(values, Values::Nets(_)) {
            return Err("aws:SourceIp takes IpAddress or NotIpAddress".into());
        }
        Ok(Condition { op, key, values })
    }

    fn holds(&self, r: &Request<'_>) -> bool {
        let text = match self.key {
            "aws:SourceIp" => None,
            "aws:SecureTransport" => None,
            "aws:username" => r.username,
            "s3:prefix" => r.prefix,
            "s3:delimiter" => r.delimiter,
            _ => None,
        };
        let hit = match &self.values {
            Values::Nets(nets) => nets.iter().any(|n| n.contains(r.source)),
            Values::Bool(b) => *b == r.secure,
            // A key the request does not have: no positive match (so the
            // negated operators hold, as in IAM).
            Values::Exact(vs) => text.is_some_and(|t| vs.iter().any(|v| v == t)),
            Values::Globs(gs) => text.is_some_and(|t| gs.iter().any(|g| g.is_match(t))),
        };
        hit != self.op.negated()
    }
}

/// One permission / policy statement.
#[derive(Debug, Clone)]
pub struct Statement {
    pub effect: Effect,
    pub actions: Vec<ActionPattern>,
    pub resources: Vec<Resource>,
    /// All must hold.
    pub conditions: Vec<Condition>,
}

impl Statement {
    /// Whether some resource of this statement can touch `bucket`.
    pub fn mentions_bucket(&self, bucket: &str) -> bool {
        self.resources
            .iter()
            .any(|r| r.bucket_glob.is_match(bucket))
    }

    pub fn applies(&self, r: &Request<'_>) -> bool {
        self.actions.iter().any(|a| a.matches(&r.action))
            && self.resources.iter().any(|res| res.matches(&r.action, r))
            && self.conditions.iter().all(|c| c.holds(r))
    }
}

/// A request as the policy engine sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub action: S3Action,
    pub bucket: Option<&'a str>,
    pub key: Option<&'a str>,
    /// The `prefix` of a listing.
    pub prefix: Option<&'a str>,
    pub delimiter: Option<&'a str>,
    pub source: IpAddr,
    /// Came over TLS.
    pub secure: bool,
    pub username: Option<&'a str>,
}

/// The outcome of judging a request against a set of statements: the rule
/// that decided (an explicit Deny, else the first Allow), or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<R> {
    Allow(R),
    Deny(R),
    NoMatch,
}

/// Judges `r` against labelled statements: an explicit Deny wins.
pub fn judge<'s, R: Clone + 's>(
    statements: impl IntoIterator<Item = (&'s Statement, R)>,
    r: &Request<'_>,
) -> Verdict<R> {
    let mut allow = None;
    for (s, label) in statements {
        if !s.applies(r) {
            continue;
        }
        match s.effect {
            Effect::Deny => return Verdict::Deny(label),
            Effect::Allow if allow.is_none() => allow = Some(label),
            Effect::Allow => {}
        }
    }
    allow.map_or(Verdict::NoMatch, Verdict::Allow)
}

/// Compiles a permission for one user (`${iam:username}` in resources and
/// condition values becomes `username`). The error names the part that is
/// wrong.
pub fn compile(p: &PermissionSpec, username: Option<&str>) -> Result<Statement, String> {
    let sub = |s: &str| match username {
        Some(u) => substitute_username(s, u),
        None => s.to_owned(),
    };
    if p.actions.is_empty() {
        return Err("actions: at least one is required".into());
    }
    if p.resources.is_empty() {
        return Err("resources: at least one is required".into());
    }
    let actions = p
        .actions
        .iter()
        .map(|a| ActionPattern::parse(a))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("actions: {e}"))?;
    let resources = p
        .resources
        .iter()
        .map(|r| Resource::parse(&sub(r)))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("resources: {e}"))?;
    let conditions = p
        .conditions
        .iter()
        .map(|c| {
            let values: Vec<String> = c.values.iter().map(|v| sub(v)).collect();
            Condition::parse(&c.op, &c.key, &values)
        })
        .collect::<Result<_, _>>()
        .map_err(|e| format!("conditions: {e}"))?;
    Ok(Statement {
        effect: p.effect,
        actions,
        resources,
        conditions,
    })
}

/// `${iam:username}` (and `${aws:username}`) in a pattern, for one user.
pub fn substitute_username(pattern: &str, username: &str) -> String {
    pattern
        .replace("${iam:username}", username)
        .replace("${aws:username}", username)
}

#[cfg(test)]
mod tests;
