//! `access.iam_users` and `access.iam_groups` (declarative IAM).

use super::super::raw::Sp as Spanned;

use super::super::iam::{
    ConditionSpec, Effect, IamGroup, IamSettings, IamUser, PermissionSpec, UserKey,
    check_access_key_id, check_not_reserved, check_secret, check_user_name,
};
use super::super::raw::{RawAccess, RawPermission, S};
use super::super::settings::{IamMode, Secret};
use super::{Validator, loc};

impl Validator<'_> {
    pub(super) fn iam(
        &mut self,
        a: &RawAccess,
        mode: IamMode,
        admin_key_id: Option<&str>,
    ) -> IamSettings {
        let mut out = IamSettings::default();
        if mode == IamMode::Gui {
            for (field, given) in [
                (
                    "access.iam_users",
                    a.iam_users.as_ref().map(|v| v.first().map(loc)),
                ),
                (
                    "access.iam_groups",
                    a.iam_groups.as_ref().map(|v| v.first().map(loc)),
                ),
            ] {
                if let Some(at) = given {
                    self.problem(
                        field,
                        at.flatten(),
                        "users and groups in the file need `iam_mode: declarative` (with the \
                         default `iam_mode: gui`, they live in the config database: \
                         `deltaglider_proxy iam`)",
                    );
                }
            }
            return out;
        }
        for (i, g) in a.iam_groups.iter().flatten().enumerate() {
            let p = format!("access.iam_groups[{i}]");
            let Some(name) = self.iam_name(&p, g.value.name.as_ref(), loc(g)) else {
                continue;
            };
            if out.groups.iter().any(|o| o.name == name) {
                self.problem(
                    format!("{p}.name"),
                    loc(g),
                    format!("duplicate group `{name}`"),
                );
                continue;
            }
            let permissions = self.permissions(&p, g.value.permissions.as_deref());
            out.groups.push(IamGroup { name, permissions });
        }
        let mut key_ids: Vec<String> = admin_key_id.map(str::to_owned).into_iter().collect();
        for (i, u) in a.iam_users.iter().flatten().enumerate() {
            let p = format!("access.iam_users[{i}]");
            let Some(name) = self.iam_name(&p, u.value.name.as_ref(), loc(u)) else {
                continue;
            };
            if out.users.iter().any(|o| o.name == name) {
                self.problem(
                    format!("{p}.name"),
                    loc(u),
                    format!("duplicate user `{name}`"),
                );
                continue;
            }
            let mut pairs = Vec::new();
            if u.value.access_key_id.is_some() || u.value.secret_access_key.is_some() {
                pairs.push((
                    p.clone(),
                    loc(u),
                    u.value.access_key_id.as_ref(),
                    u.value.secret_access_key.as_ref(),
                ));
            }
            for (j, k) in u.value.access_keys.iter().flatten().enumerate() {
                pairs.push((
                    format!("{p}.access_keys[{j}]"),
                    loc(k),
                    k.value.access_key_id.as_ref(),
                    k.value.secret_access_key.as_ref(),
                ));
            }
            if pairs.is_empty() {
                self.problem(
                    &p,
                    loc(u),
                    "needs access_key_id and secret_access_key (or access_keys: [...])",
                );
            }
            let mut keys = Vec::new();
            for (field, at, id, secret) in pairs {
                if let Some(k) = self.user_key(&field, at, id, secret, &mut key_ids) {
                    keys.push(k);
                }
            }
            let mut groups = Vec::new();
            for (j, g) in u.value.groups.iter().flatten().enumerate() {
                let field = format!("{p}.groups[{j}]");
                if let Some(g_name) = self.nonempty(&field, g) {
                    if out.groups.iter().any(|o| o.name == g_name) {
                        groups.push(g_name);
                    } else {
                        self.problem(
                            field,
                            loc(g),
                            format!("no group `{g_name}` in access.iam_groups"),
                        );
                    }
                }
            }
            let permissions = self.permissions(&p, u.value.permissions.as_deref());
            out.users.push(IamUser {
                name,
                enabled: u.value.enabled.as_ref().is_none_or(|e| e.value),
                keys,
                groups,
                permissions,
            });
        }
        out
    }

    fn iam_name(&mut self, p: &str, name: Option<&S>, at: super::Loc) -> Option<String> {
        let field = format!("{p}.name");
        let Some(n) = name else {
            self.problem(field, at, "required");
            return None;
        };
        let v = self.nonempty(&field, n)?;
        let reserved = if p.contains("iam_users") {
            check_not_reserved(&v)
        } else {
            Ok(())
        };
        match check_user_name(&v).and(reserved) {
            Ok(()) => Some(v),
            Err(e) => {
                self.problem(field, loc(n), e);
                None
            }
        }
    }

    fn user_key(
        &mut self,
        field: &str,
        at: super::Loc,
        id: Option<&S>,
        secret: Option<&S>,
        seen: &mut Vec<String>,
    ) -> Option<UserKey> {
        let (Some(id_s), Some(secret_s)) = (id, secret) else {
            self.problem(
                field,
                at,
                "access_key_id and secret_access_key must be given together",
            );
            return None;
        };
        let id_field = format!("{field}.access_key_id");
        let secret_field = format!("{field}.secret_access_key");
        self.warn_if_literal_secret(&secret_field, Some(secret_s));
        let id = self.nonempty(&id_field, id_s)?;
        let secret = self.nonempty(&secret_field, secret_s)?;
        if let Err(e) = check_access_key_id(&id) {
            self.problem(id_field, loc(id_s), e);
            return None;
        }
        if seen.contains(&id) {
            self.problem(
                id_field,
                loc(id_s),
                format!("access key id `{id}` is already used (by the admin or another user)"),
            );
            return None;
        }
        if let Err(e) = check_secret(&secret) {
            // Never echo the value.
            self.problem(secret_field, loc(secret_s), e);
            return None;
        }
        seen.push(id.clone());
        Some(UserKey {
            access_key_id: id,
            secret_access_key: Secret::new(secret),
        })
    }

    fn permissions(
        &mut self,
        p: &str,
        list: Option<&[Spanned<RawPermission>]>,
    ) -> Vec<PermissionSpec> {
        let mut out = Vec::new();
        for (i, rp) in list.unwrap_or_default().iter().enumerate() {
            let field = format!("{p}.permissions[{i}]");
            if let Some(spec) = self.permission(&field, rp) {
                out.push(spec);
            }
        }
        out
    }

    fn permission(&mut self, field: &str, rp: &Spanned<RawPermission>) -> Option<PermissionSpec> {
        let r = &rp.value;
        let effect = match &r.effect {
            None => {
                self.problem(
                    format!("{field}.effect"),
                    loc(rp),
                    "required: Allow or Deny",
                );
                None
            }
            Some(e) => match self
                .text(&format!("{field}.effect"), e)?
                .trim()
                .to_ascii_lowercase()
                .as_str()
            {
                "allow" => Some(Effect::Allow),
                "deny" => Some(Effect::Deny),
                other => {
                    self.problem(
                        format!("{field}.effect"),
                        loc(e),
                        format!("unknown effect `{other}` (expected Allow or Deny)"),
                    );
                    None
                }
            },
        };
        let mut list = |name: &str, v: Option<&Vec<S>>| -> Vec<String> {
            v.into_iter()
                .flatten()
                .enumerate()
                .filter_map(|(j, s)| self.nonempty(&format!("{field}.{name}[{j}]"), s))
                .map(|s| s.trim().to_owned())
                .collect()
        };
        let actions = list("actions", r.actions.as_ref());
        let resources = list("resources", r.resources.as_ref());
        let mut conditions = Vec::new();
        for (op, keys) in r.conditions.iter().flat_map(|c| c.0.iter()) {
            for (key, values) in &keys.0 {
                conditions.push(ConditionSpec {
                    op: op.value.clone(),
                    key: key.value.clone(),
                    values: values.0.clone(),
                });
            }
        }
        let spec = PermissionSpec {
            effect: effect?,
            actions,
            resources,
            conditions,
        };
        // The policy engine's own parser decides what is valid.
        if let Err(e) = crate::gateway::policy::compile(&spec, Some("user")) {
            self.problem(field, loc(rp), e);
            return None;
        }
        Some(spec)
    }
}
