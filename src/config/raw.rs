//! The YAML document as written: serde structs mirroring the file one to one.
//!
//! Every struct denies unknown fields, so a typo is a parse error with a line
//! and column. String values are `Spanned<String>` so that `${env:NAME}`
//! expansion and validation (in `validate.rs`) can point at the exact value.
//! Nothing here is checked beyond YAML types; all rules live in `validate.rs`.

use std::fmt;
use std::marker::PhantomData;

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

/// A value with its location in the file: the parser's `Spanned`, wrapped so
/// that the JSON Schema of the file (`GET /_/api/config/schema`) is derived
/// from these same structs (the schema of a `Sp<T>` is that of `T`).
#[derive(Debug)]
pub(super) struct Sp<T>(pub serde_saphyr::Spanned<T>);

impl<T> std::ops::Deref for Sp<T> {
    type Target = serde_saphyr::Spanned<T>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Sp<T> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_saphyr::Spanned::deserialize(deserializer).map(Sp)
    }
}

impl<T: JsonSchema> JsonSchema for Sp<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// A string value with its location in the file.
pub(super) type S = Sp<String>;

/// The whole file. Every section is optional; an empty file is valid.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub admission: Option<RawAdmission>,
    pub access: Option<RawAccess>,
    pub storage: Option<RawStorage>,
    pub advanced: Option<RawAdvanced>,
    pub fuse: Option<Sp<RawFuse>>,
}

/// `fuse:` the read-only FUSE view that `serve` mounts.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFuse {
    pub mountpoint: Option<S>,
    pub allow_other: Option<Sp<bool>>,
    pub bucket: Option<S>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmission {
    pub blocks: Option<Vec<Sp<RawBlock>>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBlock {
    pub name: Option<S>,
    #[serde(rename = "match")]
    pub matcher: Option<RawMatch>,
    pub action: Option<Sp<RawAction>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatch {
    pub source_ip_list: Option<Vec<S>>,
    pub method: Option<Vec<S>>,
    pub bucket: Option<S>,
    pub path_glob: Option<S>,
}

/// `action: deny`, `action: allow-anonymous`, or
/// `action: {type: reject, status: 403, message: "..."}`.
#[derive(Debug)]
pub(super) enum RawAction {
    Word(String),
    Reject(RawReject),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReject {
    #[serde(rename = "type")]
    pub kind: S,
    pub status: Option<Sp<u16>>,
    pub message: Option<S>,
}

impl JsonSchema for RawAction {
    fn schema_name() -> Cow<'static, str> {
        "Action".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let reject = generator.subschema_for::<RawReject>();
        json_schema!({
            "oneOf": [
                {"type": "string", "enum": ["deny", "allow-anonymous"]},
                reject
            ]
        })
    }
}

impl<'de> Deserialize<'de> for RawAction {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ActionVisitor;
        impl<'de> Visitor<'de> for ActionVisitor {
            type Value = RawAction;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "`deny`, `allow-anonymous` or a mapping {type: reject, status, message}",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAction, E> {
                Ok(RawAction::Word(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawAction, A::Error> {
                RawReject::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawAction::Reject)
            }
        }
        deserializer.deserialize_any(ActionVisitor)
    }
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccess {
    pub access_key_id: Option<S>,
    pub secret_access_key: Option<S>,
    pub iam_mode: Option<S>,
    pub iam_groups: Option<Vec<Sp<RawGroup>>>,
    pub iam_users: Option<Vec<Sp<RawUser>>>,
    pub config_db_path: Option<S>,
    pub config_db_key_file: Option<S>,
    pub auth_providers: Option<Vec<Sp<RawAuthProvider>>>,
    pub group_mapping_rules: Option<Vec<Sp<RawMappingRule>>>,
}

/// One `access.auth_providers` entry (`type: oidc`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuthProvider {
    pub name: Option<S>,
    #[serde(rename = "type")]
    pub kind: Option<S>,
    pub display_name: Option<S>,
    pub issuer: Option<S>,
    pub client_id: Option<S>,
    pub client_secret: Option<S>,
    pub client_secret_file: Option<S>,
    pub scopes: Option<Vec<S>>,
    pub redirect_uri: Option<S>,
    pub trust_unverified_email: Option<Sp<bool>>,
}

/// One `access.group_mapping_rules` entry: one matcher, and the groups.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMappingRule {
    pub provider: Option<S>,
    pub email_domain: Option<S>,
    pub email_glob: Option<S>,
    pub email_regex: Option<S>,
    pub claim: Option<S>,
    pub value: Option<S>,
    pub groups: Option<Vec<S>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroup {
    pub name: Option<S>,
    pub permissions: Option<Vec<Sp<RawPermission>>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUser {
    pub name: Option<S>,
    pub access_key_id: Option<S>,
    pub secret_access_key: Option<S>,
    pub access_keys: Option<Vec<Sp<RawKeyPair>>>,
    pub enabled: Option<Sp<bool>>,
    pub groups: Option<Vec<S>>,
    pub permissions: Option<Vec<Sp<RawPermission>>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeyPair {
    pub access_key_id: Option<S>,
    pub secret_access_key: Option<S>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPermission {
    pub effect: Option<S>,
    pub actions: Option<Vec<S>>,
    pub resources: Option<Vec<S>>,
    /// `{Operator: {key: value or [values]}}`.
    pub conditions: Option<Entries<Entries<RawValues>>>,
}

/// A condition's values: one scalar or a list (booleans and numbers as text).
#[derive(Debug)]
pub(super) struct RawValues(pub Vec<String>);

impl JsonSchema for RawValues {
    fn schema_name() -> Cow<'static, str> {
        "ConditionValues".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "oneOf": [
                {"type": ["string", "boolean", "number"]},
                {"type": "array", "items": {"type": ["string", "boolean", "number"]}}
            ]
        })
    }
}

impl<'de> Deserialize<'de> for RawValues {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawValues;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawValues, E> {
                Ok(RawValues(vec![v.to_string()]))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawValues, E> {
                Ok(RawValues(vec![v.to_string()]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawValues, E> {
                Ok(RawValues(vec![v.to_string()]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValues, E> {
                Ok(RawValues(vec![v.to_string()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawValues, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<RawValues>()? {
                    out.extend(v.0);
                }
                Ok(RawValues(out))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// `storage:`. Exactly one of `backend`, `filesystem`, `s3`, `backends` may
/// be present (none at all means the embedded default backend).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    pub backend: Option<Sp<RawSingletonBackend>>,
    pub filesystem: Option<S>,
    pub s3: Option<S>,
    // Siblings of the `s3:` shorthand.
    pub region: Option<S>,
    pub access_key_id: Option<S>,
    pub secret_access_key: Option<S>,
    pub force_path_style: Option<Sp<bool>>,
    /// Encryption of the singleton backend.
    pub backend_encryption: Option<Sp<RawEncryption>>,
    pub backends: Option<Sp<Vec<Sp<RawNamedBackend>>>>,
    pub default_backend: Option<S>,
    pub buckets: Option<Entries<Option<RawBucket>>>,
}

/// `storage.backend:` (the singleton, always named `default`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSingletonBackend {
    #[serde(rename = "type")]
    pub kind: Option<S>,
    pub path: Option<S>,
    pub endpoint: Option<S>,
    pub region: Option<S>,
    pub force_path_style: Option<Sp<bool>>,
    pub access_key_id: Option<S>,
    pub secret_access_key: Option<S>,
}

/// One entry of `storage.backends:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNamedBackend {
    pub name: Option<S>,
    #[serde(rename = "type")]
    pub kind: Option<S>,
    pub path: Option<S>,
    pub endpoint: Option<S>,
    pub region: Option<S>,
    pub force_path_style: Option<Sp<bool>>,
    pub access_key_id: Option<S>,
    pub secret_access_key: Option<S>,
    pub encryption: Option<Sp<RawEncryption>>,
}

/// `encryption:` of a named backend and `backend_encryption:` of the singleton.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEncryption {
    pub mode: Option<S>,
    pub key: Option<S>,
    pub key_id: Option<S>,
    pub key_file: Option<S>,
    pub kms_key_id: Option<S>,
    pub bucket_key_enabled: Option<Sp<bool>>,
    pub legacy_key: Option<S>,
    pub legacy_key_id: Option<S>,
    pub legacy_key_file: Option<S>,
}

/// One value of `storage.buckets:` (the key is the bucket name).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBucket {
    pub backend: Option<S>,
    pub alias: Option<S>,
    pub compression: Option<bool>,
    pub max_delta_ratio: Option<Sp<f64>>,
    pub public_prefixes: Option<Sp<Vec<S>>>,
    pub public: Option<Sp<bool>>,
    pub delta_types: Option<Vec<S>>,
    pub passthrough_types: Option<Vec<S>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdvanced {
    pub listen_addr: Option<S>,
    pub log_level: Option<S>,
    pub cache_size_mb: Option<Sp<u64>>,
    pub max_delta_ratio: Option<Sp<f64>>,
    pub max_object_size_for_delta_mb: Option<Sp<u64>>,
    pub delta_concurrency: Option<Sp<u64>>,
    pub max_request_body_mb: Option<Sp<u64>>,
    pub s3_domains: Option<Vec<S>>,
    pub shutdown_grace_secs: Option<Sp<u64>>,
    pub min_free_space_mb: Option<Sp<u64>>,
    pub region: Option<S>,
    pub header_read_timeout_secs: Option<Sp<u64>>,
    pub idle_timeout_secs: Option<Sp<u64>>,
    pub max_connections: Option<Sp<u64>>,
    pub spool_dir: Option<S>,
    pub trust_proxy_headers: Option<Sp<bool>>,
    pub auth_delay_after: Option<Sp<u32>>,
    pub auth_lockout_after: Option<Sp<u32>>,
    pub auth_lockout_secs: Option<Sp<u64>>,
    pub metrics_allow_from: Option<Vec<S>>,
    pub session_ttl_secs: Option<Sp<u64>>,
    pub session_max_per_user: Option<Sp<u64>>,
    pub session_bind_ip: Option<Sp<bool>>,
    pub tls: Option<Sp<RawTls>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub cert_file: Option<S>,
    pub key_file: Option<S>,
}

/// A YAML mapping kept in file order, with the location of every key.
/// (Duplicate keys are already rejected by the parser.)
#[derive(Debug)]
pub(super) struct Entries<V>(pub Vec<(S, V)>);

impl<V: JsonSchema> JsonSchema for Entries<V> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        format!("Map_of_{}", V::schema_name()).into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let value = generator.subschema_for::<V>();
        json_schema!({"type": ["object", "null"], "additionalProperties": value})
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<V>, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<S>()? {
                    let value = map.next_value::<V>()?;
                    out.push((key, value));
                }
                Ok(Entries(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Entries<V>, E> {
                Ok(Entries(Vec::new()))
            }
        }
        deserializer.deserialize_map(EntriesVisitor(PhantomData))
    }
}
