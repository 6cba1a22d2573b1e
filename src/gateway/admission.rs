//! Admission: the operator's `admission.blocks`, evaluated in order before a
//! request is authenticated. The first block whose conditions all hold
//! decides: `deny` (403), `reject` (the block's status and message), or
//! `allow-anonymous` (an unsigned request may read what the block matched).
//! No matching block: the request goes on to authentication as usual.

use std::net::IpAddr;

use crate::config::{AdmissionAction, AdmissionBlock, IpNet, compile_glob};

/// What admission sees of a request: nothing that needs a signature.
#[derive(Debug, Clone, Copy)]
pub struct Probe<'a> {
    /// The client address (the TCP peer, or the reverse proxy's
    /// `X-Forwarded-For` when trusted).
    pub source: IpAddr,
    /// Upper-case HTTP method.
    pub method: &'a str,
    /// The bucket as the client addressed it (`None` for the service and
    /// for the operator endpoints under `/_/`).
    pub bucket: Option<&'a str>,
    /// The object key, or the `prefix` of a listing (`None` for other
    /// bucket and service requests).
    pub path: Option<&'a str>,
}

/// The outcome of admission for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No block matched.
    Pass,
    Deny {
        block: String,
    },
    /// An unsigned request may read (GET/HEAD an object, list) what the
    /// block matched; a signed one is authenticated as usual.
    AllowAnonymous {
        block: String,
    },
    Reject {
        block: String,
        status: u16,
        message: Option<String>,
    },
}

impl Decision {
    /// The name of the block that decided, if any.
    pub fn block(&self) -> Option<&str> {
        match self {
            Decision::Pass => None,
            Decision::Deny { block }
            | Decision::AllowAnonymous { block }
            | Decision::Reject { block, .. } => Some(block),
        }
    }
}

#[derive(Debug)]
struct Rule {
    name: String,
    source_ips: Vec<IpNet>,
    methods: Vec<String>,
    bucket: Option<String>,
    glob: Option<globset::GlobMatcher>,
    action: AdmissionAction,
}

impl Rule {
    fn matches(&self, p: &Probe<'_>) -> bool {
        (self.source_ips.is_empty() || self.source_ips.iter().any(|n| n.contains(p.source)))
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == p.method))
            && self.bucket.as_deref().is_none_or(|b| p.bucket == Some(b))
            && self
                .glob
                .as_ref()
                .is_none_or(|g| p.path.is_some_and(|k| g.is_match(k)))
    }
}

/// The compiled admission chain.
#[derive(Debug, Default)]
pub struct Admission {
    rules: Vec<Rule>,
}

impl Admission {
    /// Compiles validated blocks (their globs were checked by the config).
    pub fn new(blocks: &[AdmissionBlock]) -> Admission {
        let rules = blocks
            .iter()
            .map(|b| Rule {
                name: b.name.clone(),
                source_ips: b.matcher.source_ips.clone(),
                methods: b.matcher.methods.clone(),
                bucket: b.matcher.bucket.clone(),
                glob: b.matcher.path_glob.as_deref().map(|g| {
                    compile_glob(g).unwrap_or_else(|_| {
                        // Unreachable after validation; never match rather than match all.
                        compile_glob("[]").expect("fallback glob")
                    })
                }),
                action: b.action.clone(),
            })
            .collect();
        Admission { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first block that matches `p` decides.
    pub fn decide(&self, p: &Probe<'_>) -> Decision {
        let Some(r) = self.rules.iter().find(|r| r.matches(p)) else {
            return Decision::Pass;
        };
        let block = r.name.clone();
        match &r.action {
            AdmissionAction::Deny => Decision::Deny { block },
            AdmissionAction::AllowAnonymous => Decision::AllowAnonymous { block },
            AdmissionAction::Reject { status, message } => Decision::Reject {
                block,
                status: *status,
                message: message.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AdmissionMatch;

    fn block(name: &str, m: AdmissionMatch, action: AdmissionAction) -> AdmissionBlock {
        AdmissionBlock {
            name: name.into(),
            matcher: m,
            action,
        }
    }

    fn probe<'a>(
        ip: &str,
        method: &'a str,
        bucket: Option<&'a str>,
        path: Option<&'a str>,
    ) -> Probe<'a> {
        Probe {
            source: ip.parse().unwrap(),
            method,
            bucket,
            path,
        }
    }

    #[test]
    fn first_matching_block_decides() {
        let a = Admission::new(&[
            block(
                "bad-ips",
                AdmissionMatch {
                    source_ips: vec![IpNet::parse("203.0.113.0/24").unwrap()],
                    ..Default::default()
                },
                AdmissionAction::Deny,
            ),
            block(
                "builds",
                AdmissionMatch {
                    methods: vec!["GET".into(), "HEAD".into()],
                    bucket: Some("releases".into()),
                    path_glob: Some("builds/*".into()),
                    ..Default::default()
                },
                AdmissionAction::AllowAnonymous,
            ),
            block(
                "no-deletes",
                AdmissionMatch {
                    methods: vec!["DELETE".into()],
                    ..Default::default()
                },
                AdmissionAction::Reject {
                    status: 429,
                    message: Some("later".into()),
                },
            ),
        ]);
        let d = a.decide(&probe(
            "203.0.113.9",
            "GET",
            Some("releases"),
            Some("builds/a"),
        ));
        assert_eq!(
            d,
            Decision::Deny {
                block: "bad-ips".into()
            }
        );
        // IPv4-mapped IPv6 peers match IPv4 entries.
        let d = a.decide(&probe("::ffff:203.0.113.9", "GET", None, None));
        assert_eq!(d.block(), Some("bad-ips"));
        let d = a.decide(&probe(
            "10.0.0.1",
            "GET",
            Some("releases"),
            Some("builds/x/y.tar"),
        ));
        assert_eq!(
            d,
            Decision::AllowAnonymous {
                block: "builds".into()
            }
        );
        // Other bucket, other prefix, no path, other method: not that block.
        for p in [
            probe("10.0.0.1", "GET", Some("other"), Some("builds/a")),
            probe("10.0.0.1", "GET", Some("releases"), Some("src/a")),
            probe("10.0.0.1", "GET", Some("releases"), None),
            probe("10.0.0.1", "PUT", Some("releases"), Some("builds/a")),
        ] {
            assert_eq!(a.decide(&p), Decision::Pass, "{p:?}");
        }
        let d = a.decide(&probe("10.0.0.1", "DELETE", Some("x"), Some("k")));
        assert_eq!(
            d,
            Decision::Reject {
                block: "no-deletes".into(),
                status: 429,
                message: Some("later".into())
            }
        );
        assert!(Admission::new(&[]).is_empty());
    }
}
