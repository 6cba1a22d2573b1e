//! Bucket policies in AWS's JSON grammar (`Version`, `Statement` with `Sid`,
//! `Effect`, `Principal`, `Action`, `Resource`, `Condition`), parsed into
//! the statements of the one policy engine. What the grammar has and this
//! server does not evaluate (`NotAction`, `NotResource`, `NotPrincipal`,
//! policy variables) is refused as `MalformedPolicy`, never ignored.

use serde_json::Value;

use super::{Statement, compile};
use crate::config::{ConditionSpec, Effect, PermissionSpec};

/// Who a bucket-policy statement applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principals {
    /// `"*"`: everyone, anonymous callers included.
    Anyone,
    /// Every IAM user, never an anonymous caller (the `AuthenticatedUsers`
    /// group of ACLs).
    Authenticated,
    /// IAM user names (`"alice"` or `arn:aws:iam::<account>:user/alice`).
    Users(Vec<String>),
}

impl Principals {
    pub fn includes(&self, user: Option<&str>) -> bool {
        match self {
            Principals::Anyone => true,
            Principals::Authenticated => user.is_some(),
            Principals::Users(us) => user.is_some_and(|u| us.iter().any(|x| x == u)),
        }
    }
}

/// One parsed statement: its principals and the compiled statement.
#[derive(Debug, Clone)]
pub struct PolicyStatement {
    pub principals: Principals,
    pub statement: Statement,
    /// `Sid`, or the statement's index.
    pub label: String,
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                Value::Bool(b) => Ok(b.to_string()),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err(format!("{what}: expected strings")),
            })
            .collect(),
        Value::Bool(b) => Ok(vec![b.to_string()]),
        Value::Number(n) => Ok(vec![n.to_string()]),
        _ => Err(format!("{what}: expected a string or a list of strings")),
    }
}

fn principals(v: &Value) -> Result<Principals, String> {
    let list = match v {
        Value::String(s) if s == "*" => return Ok(Principals::Anyone),
        Value::Object(o) => {
            if o.keys().any(|k| k != "AWS") {
                return Err("Principal: only \"*\" and {\"AWS\": ...} are supported".into());
            }
            strings(o.get("AWS").unwrap_or(&Value::Null), "Principal.AWS")?
        }
        _ => return Err("Principal: expected \"*\" or {\"AWS\": ...}".into()),
    };
    if list.iter().any(|p| p == "*") {
        return Ok(Principals::Anyone);
    }
    let users = list
        .iter()
        .map(|p| match p.rsplit_once(":user/") {
            Some((_, name)) => name.to_owned(),
            None => p.clone(),
        })
        .collect();
    Ok(Principals::Users(users))
}

/// Parses and checks the policy of `bucket`: every resource must be this
/// bucket or inside it (as AWS requires).
pub fn parse(bucket: &str, json: &[u8]) -> Result<Vec<PolicyStatement>, String> {
    let doc: Value = serde_json::from_slice(json).map_err(|e| format!("not JSON: {e}"))?;
    let obj = doc.as_object().ok_or("the policy must be a JSON object")?;
    for k in obj.keys() {
        if !matches!(k.as_str(), "Version" | "Id" | "Statement") {
            return Err(format!("unknown policy element {k}"));
        }
    }
    if let Some(v) = obj.get("Version")
        && v != "2012-10-17"
        && v != "2008-10-17"
    {
        return Err("Version must be 2012-10-17".into());
    }
    let stmts = match obj.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(o @ Value::Object(_)) => vec![o.clone()],
        _ => return Err("Statement: missing".into()),
    };
    if stmts.is_empty() {
        return Err("Statement: at least one is required".into());
    }
    let mut out = Vec::new();
    for (i, s) in stmts.iter().enumerate() {
        let o = s.as_object().ok_or("each statement must be an object")?;
        for k in o.keys() {
            match k.as_str() {
                "Sid" | "Effect" | "Principal" | "Action" | "Resource" | "Condition" => {}
                "NotAction" | "NotResource" | "NotPrincipal" => {
                    return Err(format!("{k} is not supported by this server"));
                }
                _ => return Err(format!("unknown statement element {k}")),
            }
        }
        let label = o
            .get("Sid")
            .and_then(Value::as_str)
            .map_or_else(|| format!("statement {i}"), |s| format!("statement {s}"));
        let effect = match o.get("Effect").and_then(Value::as_str) {
            Some("Allow") => Effect::Allow,
            Some("Deny") => Effect::Deny,
            _ => return Err(format!("{label}: Effect must be Allow or Deny")),
        };
        let principals = principals(
            o.get("Principal")
                .ok_or(format!("{label}: Principal is required"))?,
        )?;
        let actions = strings(
            o.get("Action")
                .ok_or(format!("{label}: Action is required"))?,
            "Action",
        )?;
        let resources = strings(
            o.get("Resource")
                .ok_or(format!("{label}: Resource is required"))?,
            "Resource",
        )?;
        for r in &resources {
            let inner = r
                .strip_prefix("arn:aws:s3:::")
                .ok_or_else(|| format!("{label}: Resource {r} is not an arn:aws:s3::: resource"))?;
            if inner != bucket && !inner.starts_with(&format!("{bucket}/")) {
                return Err(format!(
                    "{label}: Policy has invalid resource {r} (not in bucket {bucket})"
                ));
            }
        }
        let mut conditions = Vec::new();
        if let Some(c) = o.get("Condition") {
            let ops = c
                .as_object()
                .ok_or(format!("{label}: Condition must be an object"))?;
            for (op, keys) in ops {
                let keys = keys
                    .as_object()
                    .ok_or(format!("{label}: Condition.{op} must be an object"))?;
                for (key, values) in keys {
                    conditions.push(ConditionSpec {
                        op: op.clone(),
                        key: key.clone(),
                        values: strings(values, "Condition")?,
                    });
                }
            }
        }
        let spec = PermissionSpec {
            effect,
            actions,
            resources,
            conditions,
        };
        let text = serde_json::to_string(&spec).unwrap_or_default();
        if text.contains("${") {
            return Err(format!(
                "{label}: policy variables are not supported in bucket policies"
            ));
        }
        let statement = compile(&spec, None).map_err(|e| format!("{label}: {e}"))?;
        out.push(PolicyStatement {
            principals,
            statement,
            label: format!("bucket policy {bucket} {label}"),
        });
    }
    Ok(out)
}

/// Whether the policy makes the bucket public (an Allow to anyone without
/// conditions), as GetBucketPolicyStatus reports.
pub fn is_public(stmts: &[PolicyStatement]) -> bool {
    stmts.iter().any(|s| {
        s.principals == Principals::Anyone
            && s.statement.effect == Effect::Allow
            && s.statement.conditions.is_empty()
    })
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    const PUBLIC_READ: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"PublicRead","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::site/public/*"}]}"#;

    #[test]
    fn parses_the_aws_grammar() {
        let p = parse("site", PUBLIC_READ.as_bytes()).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].principals, Principals::Anyone);
        assert!(is_public(&p));
        let r = Request {
            action: GET_OBJECT,
            bucket: Some("site"),
            key: Some("public/index.html"),
            prefix: None,
            delimiter: None,
            source: "10.0.0.1".parse().unwrap(),
            secure: false,
            username: None,
        };
        assert!(p[0].statement.applies(&r));
        let users = r#"{"Statement":{"Effect":"Deny","Principal":{"AWS":["arn:aws:iam::123456789012:user/bob","carol"]},"Action":["s3:*"],"Resource":["arn:aws:s3:::site","arn:aws:s3:::site/*"],"Condition":{"NotIpAddress":{"aws:SourceIp":"192.168.0.0/16"}}}}"#;
        let p = parse("site", users.as_bytes()).unwrap();
        assert_eq!(
            p[0].principals,
            Principals::Users(vec!["bob".into(), "carol".into()])
        );
        assert!(!is_public(&p));
    }

    #[test]
    fn refuses_what_it_cannot_evaluate() {
        for (doc, needle) in [
            ("nope", "not JSON"),
            (r#"{"Statement":[]}"#, "at least one"),
            (r#"{"Version":"2001","Statement":[{}]}"#, "Version"),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","NotAction":"s3:GetObject","Resource":"arn:aws:s3:::site/*"}]}"#,
                "NotAction",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::other/*"}]}"#,
                "invalid resource",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:Fly","Resource":"arn:aws:s3:::site/*"}]}"#,
                "names no S3 action",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::site/${aws:username}/*"}]}"#,
                "policy variables",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"x"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::site/*"}]}"#,
                "Principal",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::site/*","Condition":{"DateLessThan":{"aws:CurrentTime":"x"}}}]}"#,
                "operator",
            ),
        ] {
            let e = parse("site", doc.as_bytes()).unwrap_err();
            assert!(e.contains(needle), "{doc}: {e}");
        }
    }
}
