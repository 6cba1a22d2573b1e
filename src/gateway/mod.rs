//! The gateway: which backend serves a bucket (routing and aliases), and who
//! may do what (policy). Sits between the S3 protocol and the object engine.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

pub mod admission;
pub mod iam;
pub mod policy;

use crate::engine::{ObjectStore, Result};
pub use admission::{Admission, Decision, Probe};

/// Who is making a request, after signature verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The configured admin (root) credential.
    Admin { access_key_id: String },
    /// An IAM user (see [`iam::Directory`]).
    User { name: String, access_key_id: String },
    /// No credentials.
    Anonymous,
}

impl Identity {
    /// The user name for `${iam:username}`-style conditions and logs.
    pub fn username(&self) -> Option<&str> {
        match self {
            Identity::Admin { .. } => Some("admin"),
            Identity::User { name, .. } => Some(name),
            Identity::Anonymous => None,
        }
    }
}

/// The outcome of authorization: allowed or not, and the rule that decided
/// (for the log and the audit record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authz {
    pub allowed: bool,
    pub rule: String,
    /// Denied by an explicit Deny statement (nothing else can allow then;
    /// a denial because nothing matched can still be lifted by an object's ACL).
    pub explicit: bool,
}

impl Authz {
    fn allow(rule: impl Into<String>) -> Authz {
        Authz {
            allowed: true,
            rule: rule.into(),
            explicit: false,
        }
    }
    fn deny(rule: impl Into<String>) -> Authz {
        Authz {
            allowed: false,
            rule: rule.into(),
            explicit: false,
        }
    }
    fn verdict(v: policy::Verdict<&str>, none: &str) -> Authz {
        match v {
            policy::Verdict::Allow(l) => Authz::allow(l),
            policy::Verdict::Deny(l) => Authz {
                explicit: true,
                ..Authz::deny(l)
            },
            policy::Verdict::NoMatch => Authz::deny(none),
        }
    }
}

#[derive(Debug, Clone)]
pub struct BucketRoute {
    pub store: String,
    /// Name of the bucket on the backend (the alias target).
    pub real_name: String,
    pub public_prefixes: Vec<String>,
}

/// `public_prefixes` of each bucket as anonymous statements: GetObject of
/// keys under a prefix, ListBucket of prefixes under it.
fn public_statements(routes: &BTreeMap<String, BucketRoute>) -> Vec<(policy::Statement, String)> {
    let mut out = Vec::new();
    for (bucket, r) in routes {
        for p in &r.public_prefixes {
            let pattern = format!("{}/{}*", globset::escape(bucket), globset::escape(p));
            let statement = policy::Statement {
                effect: policy::Effect::Allow,
                actions: vec![
                    policy::ActionPattern::parse("s3:GetObject").expect("known action"),
                    policy::ActionPattern::parse("s3:ListBucket").expect("known action"),
                ],
                resources: vec![policy::Resource::parse(&pattern).expect("escaped glob")],
                conditions: Vec::new(),
            };
            out.push((statement, format!("public prefix {bucket}/{p}")));
        }
    }
    out
}

/// The gateway in force, swapped whole by a config reload. Readers take a
/// snapshot (`load_full`) and keep it for the length of one request.
pub type Shared = Arc<arc_swap::ArcSwap<Gateway>>;

/// A [`Shared`] holding `g`.
pub fn shared(g: Gateway) -> Shared {
    Arc::new(arc_swap::ArcSwap::from_pointee(g))
}

#[derive(Debug)]
pub struct Gateway {
    stores: BTreeMap<String, Arc<ObjectStore>>,
    default_store: String,
    routes: BTreeMap<String, BucketRoute>,
    /// Anonymous requests may do everything (explicit opt-in, loudly logged).
    open_access: bool,
    admission: Admission,
    directory: iam::SharedDirectory,
    /// What anonymous requests may do: `public_prefixes` as statements.
    anonymous: Vec<(policy::Statement, String)>,
}

impl Gateway {
    pub fn new(
        stores: BTreeMap<String, Arc<ObjectStore>>,
        default_store: String,
        routes: BTreeMap<String, BucketRoute>,
        open_access: bool,
    ) -> Self {
        let anonymous = public_statements(&routes);
        Gateway {
            stores,
            default_store,
            routes,
            open_access,
            admission: Admission::default(),
            directory: Arc::new(arc_swap::ArcSwap::from_pointee(iam::Directory::default())),
            anonymous,
        }
    }

    /// The IAM users in force: a handle the config database's owner swaps
    /// when users change (it outlives gateways: a reload keeps it).
    pub fn with_directory(mut self, directory: iam::SharedDirectory) -> Self {
        self.directory = directory;
        self
    }

    /// A snapshot of the IAM users.
    pub fn directory(&self) -> Arc<iam::Directory> {
        self.directory.load_full()
    }

    /// The admission chain evaluated before authentication.
    pub fn with_admission(mut self, admission: Admission) -> Self {
        self.admission = admission;
        self
    }

    /// Which admission block, if any, decides `p`.
    pub fn admit(&self, p: &Probe<'_>) -> Decision {
        self.admission.decide(p)
    }

    /// The engine serving `bucket` and the bucket's name on that backend.
    pub fn route(&self, bucket: &str) -> (Arc<ObjectStore>, String) {
        match self.routes.get(bucket) {
            Some(r) => (self.stores[&r.store].clone(), r.real_name.clone()),
            None => (self.stores[&self.default_store].clone(), bucket.to_owned()),
        }
    }

    pub fn stores(&self) -> impl Iterator<Item = &Arc<ObjectStore>> {
        self.stores.values()
    }

    /// The name of the backend that buckets without a route go to.
    pub fn default_store(&self) -> &str {
        &self.default_store
    }

    /// The engine of the backend called `name`.
    pub fn store(&self, name: &str) -> Option<&Arc<ObjectStore>> {
        self.stores.get(name)
    }

    /// May `who` make request `r`? Admin: always. A user: their
    /// permissions (an explicit Deny wins; nothing matching is a denial).
    /// Anonymous: open access, an `allow-anonymous` admission block
    /// (`admitted`: reads and listings only), or the public prefixes.
    pub fn authorize(&self, who: &Identity, admitted: bool, r: &policy::Request<'_>) -> Authz {
        let dir = self.directory();
        match who {
            Identity::Admin { .. } => Authz::allow("admin credential"),
            Identity::User { name, .. } => match dir.user(name) {
                None => Authz::deny("unknown user"),
                Some(u) if !u.enabled => Authz::deny(format!("user {name} is disabled")),
                Some(u) => Authz::verdict(
                    u.judge(r, dir.policy_for(r.bucket, Some(name))),
                    "no permission matches",
                ),
            },
            Identity::Anonymous if self.open_access => Authz::allow("open access"),
            Identity::Anonymous
                if admitted
                    && matches!(r.action.group, policy::Group::Read | policy::Group::List)
                    && r.action.level != policy::Level::Service =>
            {
                Authz::allow("admission allow-anonymous")
            }
            Identity::Anonymous => {
                let labelled = self.anonymous.iter().map(|(s, l)| (s, l.as_str()));
                Authz::verdict(
                    policy::judge(labelled.chain(dir.policy_for(r.bucket, None)), r),
                    "anonymous",
                )
            }
        }
    }

    /// A GetObject or HeadObject that nothing allowed (and nothing
    /// explicitly denied) may still be allowed by the object's own canned
    /// ACL: `public-read` for anyone, `authenticated-read` for IAM users.
    /// An object that does not exist allows nothing.
    pub async fn object_acl_allows(
        &self,
        who: &Identity,
        bucket: &str,
        key: &str,
    ) -> Option<Authz> {
        let authenticated = match who {
            Identity::Admin { .. } => return None,
            Identity::User { name, .. } => self.directory().user(name).is_some_and(|u| u.enabled),
            Identity::Anonymous => false,
        };
        let (store, real) = self.route(bucket);
        let info = store.head(&real, key).await.ok()?;
        let canned = policy::acl::Canned::parse(info.meta.acl.as_deref()?)?;
        canned
            .lets_read(authenticated)
            .then(|| Authz::allow(format!("object ACL {}", canned.as_str())))
    }

    /// Whether ListBuckets shows `bucket` to `who`: everything to the admin
    /// and to a user allowed `s3:ListAllMyBuckets`; otherwise the buckets
    /// the user has some permission in.
    pub fn shows_bucket(&self, who: &Identity, bucket: &str, all: bool) -> bool {
        match who {
            Identity::Admin { .. } => true,
            Identity::User { name, .. } => {
                all || self
                    .directory()
                    .user(name)
                    .is_some_and(|u| u.mentions_bucket(bucket))
            }
            Identity::Anonymous => self.open_access,
        }
    }

    /// All buckets clients can reach, by their client-facing names.
    pub async fn list_buckets(&self) -> Result<Vec<(String, SystemTime)>> {
        let mut found = Vec::new();
        for (store_name, store) in &self.stores {
            found.push((store_name.clone(), store.list_buckets().await?));
        }
        Ok(self.visible_buckets(found))
    }

    /// `list_buckets` for callers already on a blocking thread.
    pub fn list_buckets_blocking(&self) -> Result<Vec<(String, SystemTime)>> {
        let mut found = Vec::new();
        for (store_name, store) in &self.stores {
            found.push((store_name.clone(), store.list_buckets_blocking()?));
        }
        Ok(self.visible_buckets(found))
    }

    /// The client-facing names of the bucket directories found on each
    /// store: an alias where routing leads there, the directory's own name
    /// where routing does not send that name elsewhere.
    fn visible_buckets(
        &self,
        found: Vec<(String, Vec<crate::storage::BucketEntry>)>,
    ) -> Vec<(String, SystemTime)> {
        let mut out = BTreeMap::new();
        for (store_name, buckets) in found {
            for b in buckets {
                let by_alias = self
                    .routes
                    .iter()
                    .find(|(_, r)| r.store == store_name && r.real_name == b.name);
                let name = match by_alias {
                    Some((virt, _)) => virt.clone(),
                    None => {
                        let (routed, real) = self.route(&b.name);
                        if routed.name != store_name || real != b.name {
                            continue; // unreachable from clients: routing sends this name elsewhere
                        }
                        b.name.clone()
                    }
                };
                out.insert(name, b.created);
            }
        }
        out.into_iter().collect()
    }

    /// Storage savings of every bucket clients can reach (or only `only`),
    /// under their client-facing names. `None` when `only` does not exist.
    pub fn stats_blocking(
        &self,
        only: Option<&str>,
    ) -> Result<Option<Vec<crate::engine::delta::stats::BucketStats>>> {
        let names: Vec<String> = self
            .list_buckets_blocking()?
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| only.is_none_or(|o| o == n))
            .collect();
        if only.is_some() && names.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::new();
        for name in names {
            let (store, real) = self.route(&name);
            let mut s = store.bucket_stats(&real)?;
            s.bucket = name;
            out.push(s);
        }
        Ok(Some(out))
    }
}
