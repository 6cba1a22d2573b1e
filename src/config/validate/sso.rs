//! `access.auth_providers` and `access.group_mapping_rules` (single sign-on).

use openidconnect::url::Url;

use super::super::iam::check_user_name;
use super::super::raw::{RawAccess, RawAuthProvider, RawMappingRule, S, Sp};
use super::super::settings::{IamMode, Secret};
use super::super::sso::{GroupMappingRule, Matcher, OidcProvider, Pattern, SsoSettings};
use super::{Loc, Validator, loc};

/// Scopes asked for when `scopes` is not given (`openid` always is).
const DEFAULT_SCOPES: [&str; 2] = ["email", "profile"];

fn check_provider_name(n: &str) -> Result<(), String> {
    if n.is_empty() || n.len() > 32 {
        return Err("must be 1 to 32 characters long".into());
    }
    if !n
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(
            "may contain only lower-case letters, digits and '-' (it is part of the callback URL)"
                .into(),
        );
    }
    Ok(())
}

/// Plain `http` is for a provider on this machine only (tests, a local IdP).
fn loopback(u: &Url) -> bool {
    match u.host() {
        Some(openidconnect::url::Host::Domain(d)) => d == "localhost",
        Some(openidconnect::url::Host::Ipv4(a)) => a.is_loopback(),
        Some(openidconnect::url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    }
}

impl Validator<'_> {
    pub(super) fn sso(&mut self, a: &RawAccess, mode: IamMode) -> SsoSettings {
        let mut out = SsoSettings::default();
        let providers = a.auth_providers.as_deref().unwrap_or_default();
        let rules = a.group_mapping_rules.as_deref().unwrap_or_default();
        if mode == IamMode::Declarative
            && let Some(first) = providers.first()
        {
            self.problem(
                "access.auth_providers",
                loc(first),
                "single sign-on provisions users into the config database, so it needs \
                 `iam_mode: gui` (with `declarative`, users come only from the file)",
            );
            return out;
        }
        for (i, p) in providers.iter().enumerate() {
            if let Some(p) = self.provider(&format!("access.auth_providers[{i}]"), p) {
                if out.providers.iter().any(|o| o.name == p.name) {
                    self.problem(
                        format!("access.auth_providers[{i}].name"),
                        None,
                        format!("duplicate provider `{}`", p.name),
                    );
                    continue;
                }
                out.providers.push(p);
            }
        }
        if providers.is_empty()
            && let Some(first) = rules.first()
        {
            self.problem(
                "access.group_mapping_rules",
                loc(first),
                "group mapping rules need at least one entry in access.auth_providers",
            );
            return out;
        }
        for (i, r) in rules.iter().enumerate() {
            if let Some(r) = self.mapping_rule(&format!("access.group_mapping_rules[{i}]"), r, &out)
            {
                out.rules.push(r);
            }
        }
        if !out.providers.is_empty() && out.rules.is_empty() && !providers.is_empty() {
            self.warn(
                "access.group_mapping_rules",
                None,
                "no group mapping rules: nobody can sign in through the providers",
            );
        }
        out
    }

    fn required(&mut self, field: String, v: Option<&S>, at: Loc) -> Option<String> {
        match v {
            None => {
                self.problem(field, at, "required");
                None
            }
            Some(s) => self.nonempty(&field, s).map(|v| v.trim().to_owned()),
        }
    }

    fn provider(&mut self, p: &str, sp: &Sp<RawAuthProvider>) -> Option<OidcProvider> {
        let r = &sp.value;
        let at = loc(sp);
        let mut ok = true;
        let name = self.required(format!("{p}.name"), r.name.as_ref(), at);
        if let (Some(n), Some(s)) = (&name, &r.name)
            && let Err(e) = check_provider_name(n)
        {
            self.problem(format!("{p}.name"), loc(s), e);
            ok = false;
        }
        match self
            .required(format!("{p}.type"), r.kind.as_ref(), at)
            .as_deref()
        {
            Some("oidc") | None => {}
            Some(other) => {
                self.problem(
                    format!("{p}.type"),
                    r.kind.as_ref().and_then(|s| loc(s)),
                    format!("unknown provider type `{other}` (expected oidc)"),
                );
                ok = false;
            }
        }
        let issuer = self.required(format!("{p}.issuer"), r.issuer.as_ref(), at);
        if let (Some(i), Some(s)) = (&issuer, &r.issuer) {
            ok &= self.url(&format!("{p}.issuer"), i, loc(s));
        }
        let client_id = self.required(format!("{p}.client_id"), r.client_id.as_ref(), at);
        let client_secret = match (&r.client_secret, &r.client_secret_file) {
            (Some(_), Some(f)) => {
                self.problem(
                    format!("{p}.client_secret_file"),
                    loc(f),
                    "give client_secret or client_secret_file, not both",
                );
                ok = false;
                None
            }
            (Some(s), None) => {
                self.warn_if_literal_secret(&format!("{p}.client_secret"), Some(s));
                self.nonempty(&format!("{p}.client_secret"), s)
                    .map(Secret::new)
            }
            (None, Some(f)) => {
                let field = format!("{p}.client_secret_file");
                let path = self.nonempty(&field, f)?;
                match std::fs::read_to_string(path.trim()) {
                    Ok(v) if !v.trim().is_empty() => Some(Secret::new(v.trim().to_owned())),
                    Ok(_) => {
                        self.problem(field, loc(f), format!("{} is empty", path.trim()));
                        ok = false;
                        None
                    }
                    Err(e) if self.mode == super::Mode::Lint => {
                        self.warn(
                            &field,
                            loc(f),
                            format!("cannot read {}: {e} (needed at startup)", path.trim()),
                        );
                        None
                    }
                    Err(e) => {
                        self.problem(field, loc(f), format!("cannot read {}: {e}", path.trim()));
                        ok = false;
                        None
                    }
                }
            }
            (None, None) => None,
        };
        let mut scopes = Vec::new();
        match &r.scopes {
            None => scopes.extend(DEFAULT_SCOPES.map(str::to_owned)),
            Some(list) => {
                for (j, s) in list.iter().enumerate() {
                    let field = format!("{p}.scopes[{j}]");
                    let Some(v) = self.nonempty(&field, s) else {
                        ok = false;
                        continue;
                    };
                    let v = v.trim().to_owned();
                    if v.contains(char::is_whitespace) {
                        self.problem(field, loc(s), "one scope per entry (no spaces)");
                        ok = false;
                    } else if v != "openid" && !scopes.contains(&v) {
                        scopes.push(v);
                    }
                }
            }
        }
        let redirect_uri = self.opt_nonempty(&format!("{p}.redirect_uri"), r.redirect_uri.as_ref());
        if let (Some(u), Some(s), Some(n)) = (&redirect_uri, &r.redirect_uri, &name) {
            let field = format!("{p}.redirect_uri");
            if self.url(&field, u, loc(s)) {
                let want = format!("/_/sso/{n}/callback");
                if !u.trim_end_matches('/').ends_with(&want) {
                    self.problem(field, loc(s), format!("must end with {want}"));
                    ok = false;
                }
            } else {
                ok = false;
            }
        }
        let display_name = self
            .opt_nonempty(&format!("{p}.display_name"), r.display_name.as_ref())
            .or_else(|| name.clone())?;
        Some(OidcProvider {
            name: name?,
            display_name,
            // As written: the provider's `iss` must equal it to the byte.
            issuer: issuer?,
            client_id: client_id?,
            client_secret,
            scopes,
            redirect_uri: redirect_uri.map(|u| u.trim().trim_end_matches('/').to_owned()),
            trust_unverified_email: r.trust_unverified_email.as_ref().is_some_and(|b| b.value),
        })
        .filter(|_| ok)
    }

    /// An absolute `https` URL (`http` only on loopback).
    fn url(&mut self, field: &str, v: &str, at: Loc) -> bool {
        match Url::parse(v.trim()) {
            Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && loopback(&u)) => true,
            Ok(u) if u.scheme() == "http" => {
                self.problem(
                    field,
                    at,
                    "must be an https URL (plain http only for a provider on this machine)",
                );
                false
            }
            Ok(_) => {
                self.problem(field, at, "must be an https URL");
                false
            }
            Err(e) => {
                self.problem(field, at, format!("not a URL: {e}"));
                false
            }
        }
    }

    fn mapping_rule(
        &mut self,
        p: &str,
        sp: &Sp<RawMappingRule>,
        sso: &SsoSettings,
    ) -> Option<GroupMappingRule> {
        let r = &sp.value;
        let at = loc(sp);
        let mut ok = true;
        let provider = self.opt_nonempty(&format!("{p}.provider"), r.provider.as_ref());
        if let (Some(n), Some(s)) = (&provider, &r.provider)
            && sso.provider(n.trim()).is_none()
        {
            self.problem(
                format!("{p}.provider"),
                loc(s),
                format!("no provider named `{n}` in access.auth_providers"),
            );
            ok = false;
        }
        let given: Vec<&str> = [
            ("email_domain", r.email_domain.is_some()),
            ("email_glob", r.email_glob.is_some()),
            ("email_regex", r.email_regex.is_some()),
            ("claim", r.claim.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, g)| g.then_some(n))
        .collect();
        if given.len() != 1 {
            self.problem(
                p.to_owned(),
                at,
                format!(
                    "give exactly one of email_domain, email_glob, email_regex or claim (with value); found {}",
                    if given.is_empty() { "none".to_owned() } else { given.join(", ") }
                ),
            );
            return None;
        }
        if r.value.is_some() && r.claim.is_none() {
            self.problem(format!("{p}.value"), at, "value goes with claim");
            ok = false;
        }
        let matcher = if let Some(s) = &r.email_domain {
            let d = self.nonempty(&format!("{p}.email_domain"), s)?;
            let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
            if d.contains('@') || d.contains(char::is_whitespace) {
                self.problem(
                    format!("{p}.email_domain"),
                    loc(s),
                    "a domain, like example.com",
                );
                return None;
            }
            Matcher::EmailDomain(d)
        } else if let Some(s) = &r.email_glob {
            let g = self.nonempty(&format!("{p}.email_glob"), s)?;
            match Pattern::glob(&g.trim().to_ascii_lowercase()) {
                Ok(pat) => Matcher::EmailGlob(pat),
                Err(e) => {
                    self.problem(format!("{p}.email_glob"), loc(s), e);
                    return None;
                }
            }
        } else if let Some(s) = &r.email_regex {
            let g = self.nonempty(&format!("{p}.email_regex"), s)?;
            match Pattern::regex(&g) {
                Ok(pat) => Matcher::EmailRegex(pat),
                Err(e) => {
                    self.problem(
                        format!("{p}.email_regex"),
                        loc(s),
                        format!("not a valid regular expression: {e}"),
                    );
                    return None;
                }
            }
        } else {
            let claim = self.nonempty(&format!("{p}.claim"), r.claim.as_ref()?)?;
            let Some(v) = &r.value else {
                self.problem(
                    format!("{p}.value"),
                    at,
                    "required with claim: the value to look for",
                );
                return None;
            };
            let value = self.text(&format!("{p}.value"), v)?;
            if matches!(claim.trim(), "email" | "email_verified") {
                self.problem(
                    format!("{p}.claim"),
                    r.claim.as_ref().and_then(|s| loc(s)),
                    "match addresses with email_domain, email_glob or email_regex (they see only verified addresses)",
                );
                return None;
            }
            Matcher::Claim {
                claim: claim.trim().to_owned(),
                value,
            }
        };
        let mut groups = Vec::new();
        match &r.groups {
            None => {
                self.problem(
                    format!("{p}.groups"),
                    at,
                    "required: the IAM groups to put the user in",
                );
                ok = false;
            }
            Some(list) => {
                for (j, s) in list.iter().enumerate() {
                    let field = format!("{p}.groups[{j}]");
                    let Some(g) = self.nonempty(&field, s) else {
                        ok = false;
                        continue;
                    };
                    let g = g.trim().to_owned();
                    if let Err(e) = check_user_name(&g) {
                        self.problem(field, loc(s), e);
                        ok = false;
                    } else if !groups.contains(&g) {
                        groups.push(g);
                    }
                }
                if list.is_empty() {
                    self.problem(format!("{p}.groups"), at, "must name at least one group");
                    ok = false;
                }
            }
        }
        ok.then_some(GroupMappingRule {
            provider: provider.map(|p| p.trim().to_owned()),
            matcher,
            groups,
        })
    }
}
