//! Single sign-on for the admin UI: `access.auth_providers` (OpenID Connect
//! providers) and `access.group_mapping_rules` (which IAM groups a person
//! signed in by a provider lands in). Validated in `validate/sso.rs`; the
//! login flow is `admin::sso`.

use std::fmt;

use super::settings::Secret;

/// `access.auth_providers` and `access.group_mapping_rules`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SsoSettings {
    pub providers: Vec<OidcProvider>,
    pub rules: Vec<GroupMappingRule>,
}

/// One `type: oidc` entry of `access.auth_providers`.
#[derive(Debug, Clone, PartialEq)]
pub struct OidcProvider {
    /// `[a-z0-9-]`, 1-32: part of the callback path `/_/sso/{name}/callback`.
    pub name: String,
    /// The login button's text (default: the name).
    pub display_name: String,
    /// The issuer URL; discovery reads `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// `None`: a public client (PKCE only).
    pub client_secret: Option<Secret>,
    /// Asked for besides `openid`.
    pub scopes: Vec<String>,
    /// The callback URL registered at the provider; `None`: built from the
    /// request's `Host` (and TLS) at login.
    pub redirect_uri: Option<String>,
    /// Trust the `email` claim without `email_verified: true` (for
    /// providers that vouch for every address but do not say so).
    pub trust_unverified_email: bool,
}

/// One entry of `access.group_mapping_rules`: every rule that matches adds
/// its groups.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupMappingRule {
    /// Only for logins through this provider (`None`: any).
    pub provider: Option<String>,
    pub matcher: Matcher,
    pub groups: Vec<String>,
}

/// What a rule matches. E-mail matchers see the `email` claim in lower
/// case, and only an address the provider marks `email_verified: true`
/// (unless the provider is configured to be trusted without it).
#[derive(Debug, Clone, PartialEq)]
pub enum Matcher {
    /// The part after `@` equals this (lower case).
    EmailDomain(String),
    /// A glob over the whole address (`*` any run, `?` one character).
    EmailGlob(Pattern),
    /// A regular expression searched in the address (anchor it yourself).
    EmailRegex(Pattern),
    /// The claim equals the value, or is a list that contains it.
    Claim { claim: String, value: String },
}

/// A compiled glob or regex, compared by its source text.
#[derive(Clone)]
pub struct Pattern {
    pub source: String,
    re: regex_lite::Regex,
}

impl Pattern {
    pub fn regex(source: &str) -> Result<Pattern, String> {
        // The size limit keeps a hostile pattern from costing memory; the
        // engine's matching is linear in the input either way.
        let re = regex_lite::RegexBuilder::new(source)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Pattern {
            source: source.to_owned(),
            re,
        })
    }

    pub fn glob(source: &str) -> Result<Pattern, String> {
        let mut re = String::from("^");
        for c in source.chars() {
            match c {
                '*' => re.push_str(".*"),
                '?' => re.push('.'),
                c => re.push_str(&regex_lite::escape(&c.to_string())),
            }
        }
        re.push('$');
        let mut p = Pattern::regex(&re)?;
        p.source = source.to_owned();
        Ok(p)
    }

    pub fn is_match(&self, s: &str) -> bool {
        self.re.is_match(s)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.source)
    }
}

/// What the provider said about the person, as the rules see it.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// The provider's name in the config (what rules name).
    pub provider: String,
    /// Its issuer: with the subject, what identifies the person.
    pub issuer: String,
    pub subject: String,
    /// Lower case; `None` when absent or not verified.
    pub email: Option<String>,
    /// All claims of the ID token.
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl GroupMappingRule {
    pub fn matches(&self, id: &Identity) -> bool {
        if self.provider.as_ref().is_some_and(|p| *p != id.provider) {
            return false;
        }
        let email = id.email.as_deref();
        match &self.matcher {
            Matcher::EmailDomain(d) => email
                .and_then(|e| e.rsplit_once('@'))
                .is_some_and(|(_, dom)| dom == d),
            Matcher::EmailGlob(p) | Matcher::EmailRegex(p) => email.is_some_and(|e| p.is_match(e)),
            Matcher::Claim { claim, value } => match id.claims.get(claim) {
                Some(serde_json::Value::Array(a)) => a.iter().any(|v| claim_eq(v, value)),
                Some(v) => claim_eq(v, value),
                None => false,
            },
        }
    }
}

fn claim_eq(v: &serde_json::Value, want: &str) -> bool {
    match v {
        serde_json::Value::String(s) => s == want,
        serde_json::Value::Bool(b) => b.to_string() == want,
        serde_json::Value::Number(n) => n.to_string() == want,
        _ => false,
    }
}

impl SsoSettings {
    pub fn provider(&self, name: &str) -> Option<&OidcProvider> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// The groups the rules give this person, sorted, without duplicates.
    pub fn groups_for(&self, id: &Identity) -> Vec<String> {
        let mut out: Vec<String> = self
            .rules
            .iter()
            .filter(|r| r.matches(id))
            .flat_map(|r| r.groups.iter().cloned())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(email: Option<&str>, claims: serde_json::Value) -> Identity {
        Identity {
            provider: "corp".into(),
            issuer: "https://id".into(),
            subject: "s1".into(),
            email: email.map(str::to_owned),
            claims: claims.as_object().cloned().unwrap_or_default(),
        }
    }

    fn rule(provider: Option<&str>, m: Matcher, g: &str) -> GroupMappingRule {
        GroupMappingRule {
            provider: provider.map(str::to_owned),
            matcher: m,
            groups: vec![g.to_owned()],
        }
    }

    #[test]
    fn every_matching_rule_adds_its_groups() {
        let s = SsoSettings {
            providers: vec![],
            rules: vec![
                rule(None, Matcher::EmailDomain("example.com".into()), "staff"),
                rule(
                    None,
                    Matcher::EmailGlob(Pattern::glob("ops.*@example.com").unwrap()),
                    "ops",
                ),
                rule(
                    None,
                    Matcher::EmailRegex(Pattern::regex(r"^[a-z]+@").unwrap()),
                    "plain",
                ),
                rule(
                    None,
                    Matcher::Claim {
                        claim: "groups".into(),
                        value: "nas-admins".into(),
                    },
                    "operators",
                ),
                rule(
                    Some("other"),
                    Matcher::EmailDomain("example.com".into()),
                    "never",
                ),
            ],
        };
        let alice = id(
            Some("alice@example.com"),
            serde_json::json!({"groups": ["x", "nas-admins"]}),
        );
        assert_eq!(s.groups_for(&alice), ["operators", "plain", "staff"]);
        let ops = id(
            Some("ops.bob@example.com"),
            serde_json::json!({"groups": "nas-admins"}),
        );
        assert_eq!(s.groups_for(&ops), ["operators", "ops", "staff"]);
        // The glob is anchored and `.` is literal: no match on a look-alike domain.
        let evil = id(Some("ops.x@example.com.evil.org"), serde_json::json!({}));
        assert!(s.groups_for(&evil).is_empty());
        // No (verified) address: only claim rules can match.
        let none = id(None, serde_json::json!({"groups": ["nas-admins"]}));
        assert_eq!(s.groups_for(&none), ["operators"]);
    }

    #[test]
    fn claim_values_compare_as_text() {
        let r = rule(
            None,
            Matcher::Claim {
                claim: "admin".into(),
                value: "true".into(),
            },
            "g",
        );
        assert!(r.matches(&id(None, serde_json::json!({"admin": true}))));
        assert!(!r.matches(&id(None, serde_json::json!({"admin": "yes"}))));
        assert!(!r.matches(&id(None, serde_json::json!({"admin": {"true": 1}}))));
    }
}
