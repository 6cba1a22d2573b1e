//! `admission:` blocks: rules evaluated before authentication.

use super::super::raw::Sp as Spanned;

use super::super::raw::{RawAction, RawAdmission};
use super::super::settings::{AdmissionAction, AdmissionBlock, AdmissionMatch, IpNet};
use super::{HTTP_METHODS, Validator, loc};

impl Validator<'_> {
    pub(super) fn admission(&mut self, raw: RawAdmission) -> Vec<AdmissionBlock> {
        let mut out = Vec::new();
        let mut names: Vec<(String, usize)> = Vec::new();
        for (i, sb) in raw.blocks.unwrap_or_default().iter().enumerate() {
            let p = format!("admission.blocks[{i}]");
            let b = &sb.value;
            let mut ok = true;
            let name = match &b.name {
                None => {
                    self.problem(format!("{p}.name"), loc(sb), "required");
                    None
                }
                Some(n) => self.nonempty(&format!("{p}.name"), n).and_then(|v| {
                    if let Some((_, j)) = names.iter().find(|(o, _)| *o == v) {
                        self.problem(
                            format!("{p}.name"),
                            loc(n),
                            format!("duplicate block name `{v}` (also admission.blocks[{j}])"),
                        );
                        return None;
                    }
                    names.push((v.clone(), i));
                    Some(v)
                }),
            };

            let mut matcher = AdmissionMatch::default();
            if let Some(m) = &b.matcher {
                for (j, s) in m.source_ip_list.iter().flatten().enumerate() {
                    let field = format!("{p}.match.source_ip_list[{j}]");
                    if let Some(v) = self.text(&field, s) {
                        match IpNet::parse(v.trim()) {
                            Ok(net) => matcher.source_ips.push(net),
                            Err(e) => {
                                self.problem(
                                    field,
                                    loc(s),
                                    format!("not an IP address or CIDR: {e}"),
                                );
                                ok = false;
                            }
                        }
                    }
                }
                for (j, s) in m.method.iter().flatten().enumerate() {
                    let field = format!("{p}.match.method[{j}]");
                    if let Some(v) = self.text(&field, s) {
                        let up = v.trim().to_ascii_uppercase();
                        if HTTP_METHODS.contains(&up.as_str()) {
                            if !matcher.methods.contains(&up) {
                                matcher.methods.push(up);
                            }
                        } else {
                            self.problem(
                                field,
                                loc(s),
                                format!(
                                    "unknown HTTP method `{v}` (expected one of {})",
                                    HTTP_METHODS.join(", ")
                                ),
                            );
                            ok = false;
                        }
                    }
                }
                matcher.bucket = self.opt_nonempty(&format!("{p}.match.bucket"), m.bucket.as_ref());
                let field = format!("{p}.match.path_glob");
                matcher.path_glob = self.opt_nonempty(&field, m.path_glob.as_ref());
                if let (Some(g), Some(s)) = (&matcher.path_glob, &m.path_glob)
                    && let Err(e) = crate::config::settings::compile_glob(g)
                {
                    self.problem(field, loc(s), format!("not a valid glob: {e}"));
                    ok = false;
                }
            }

            let action = match &b.action {
                None => {
                    self.problem(
                        format!("{p}.action"),
                        loc(sb),
                        "required: deny, allow-anonymous or {type: reject, status, message}",
                    );
                    None
                }
                Some(a) => self.action(&format!("{p}.action"), a),
            };
            if let (Some(name), Some(action), true) = (name, action, ok) {
                out.push(AdmissionBlock {
                    name,
                    matcher,
                    action,
                });
            }
        }
        out
    }

    fn action(&mut self, field: &str, a: &Spanned<RawAction>) -> Option<AdmissionAction> {
        match &a.value {
            RawAction::Word(w) => match self.text_at(field, w, loc(a))?.trim() {
                "deny" => Some(AdmissionAction::Deny),
                "allow-anonymous" => Some(AdmissionAction::AllowAnonymous),
                "reject" => Some(AdmissionAction::Reject {
                    status: 403,
                    message: None,
                }),
                other => {
                    self.problem(
                        field,
                        loc(a),
                        format!("unknown action `{other}` (expected deny, allow-anonymous or {{type: reject, status, message}})"),
                    );
                    None
                }
            },
            RawAction::Reject(r) => {
                let kind = self.text(&format!("{field}.type"), &r.kind)?;
                if kind.trim() != "reject" {
                    self.problem(
                        format!("{field}.type"),
                        loc(&r.kind),
                        format!("unknown action type `{kind}` (the mapping form is {{type: reject, status, message}})"),
                    );
                    return None;
                }
                let status = match &r.status {
                    None => 403,
                    Some(s) if (400..=599).contains(&s.value) => s.value,
                    Some(s) => {
                        self.problem(
                            format!("{field}.status"),
                            loc(s),
                            "must be an HTTP error status (400-599)",
                        );
                        return None;
                    }
                };
                let message = self.opt_text(&format!("{field}.message"), r.message.as_ref());
                Some(AdmissionAction::Reject { status, message })
            }
        }
    }
}
