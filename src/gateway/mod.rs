//! The gateway: which backend serves a bucket (routing and aliases), and who
//! may do what (policy). Sits between the S3 protocol and the object engine.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

pub mod admission;

use crate::engine::{ObjectStore, Result};
pub use admission::{Admission, Decision, Probe};

/// Who is making a request, after signature verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The configured admin credential.
    Admin { access_key_id: String },
    /// No credentials.
    Anonymous,
}

/// What a request does, for authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// GET/HEAD of an object.
    ReadObject,
    /// Listing a bucket (with the request's prefix).
    List,
    /// Anything that writes, deletes or manages.
    Write,
    /// Service-level operations (ListBuckets) and bucket metadata reads.
    Service,
}

#[derive(Debug, Clone)]
pub struct BucketRoute {
    pub store: String,
    /// Name of the bucket on the backend (the alias target).
    pub real_name: String,
    pub public_prefixes: Vec<String>,
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
}

impl Gateway {
    pub fn new(
        stores: BTreeMap<String, Arc<ObjectStore>>,
        default_store: String,
        routes: BTreeMap<String, BucketRoute>,
        open_access: bool,
    ) -> Self {
        Gateway {
            stores,
            default_store,
            routes,
            open_access,
            admission: Admission::default(),
        }
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

    /// The engine of the backend called `name`.
    pub fn store(&self, name: &str) -> Option<&Arc<ObjectStore>> {
        self.stores.get(name)
    }

    /// May `who` do `action` on `bucket` / `key` (for List, `key` is the prefix)?
    pub fn authorize(
        &self,
        who: &Identity,
        action: Action,
        bucket: Option<&str>,
        key: &str,
    ) -> bool {
        match who {
            Identity::Admin { .. } => true,
            Identity::Anonymous if self.open_access => true,
            Identity::Anonymous => {
                let Some(bucket) = bucket else { return false };
                let Some(route) = self.routes.get(bucket) else {
                    return false;
                };
                match action {
                    Action::ReadObject | Action::List => route
                        .public_prefixes
                        .iter()
                        .any(|p| key.starts_with(p.as_str())),
                    Action::Write | Action::Service => false,
                }
            }
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
