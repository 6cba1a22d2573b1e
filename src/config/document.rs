//! The configuration as a document, for the config API (`GET`/`PUT`/`PATCH
//! /_/api/config`) and `config export`: the YAML file as a JSON value in
//! canonical form (fields at their default omitted, literal secrets
//! redacted), merge patches on one section, and the JSON Schema of the file,
//! derived from the same structs the parser fills (`raw.rs`).
//!
//! "At their default" is decided by the parser itself, not by a second list
//! of defaults that could drift: a field is omitted when the document
//! without it validates to the same settings.

use serde_json::{Map, Value};

use super::{ConfigError, Overrides, Problem, Settings, parse, raw, validate};

/// What a redacted secret reads as. Sent back unchanged (in a `PUT` or a
/// `PATCH`), it means "keep the value the file has there".
pub const REDACTED: &str = "<redacted>";

/// The top-level sections a `PATCH /_/api/config/{section}` may name.
pub const SECTIONS: [&str; 5] = ["admission", "access", "storage", "advanced", "fuse"];

/// Field names whose literal values are secrets.
const SECRET_FIELDS: [&str; 4] = ["secret_access_key", "key", "legacy_key", "client_secret"];

/// The JSON Schema of the configuration file.
pub fn schema() -> Value {
    let mut s = schemars::schema_for!(raw::RawConfig);
    s.insert(
        "title".into(),
        Value::String("deltaglider_proxy configuration".into()),
    );
    s.to_value()
}

/// The document as written, as a JSON value (an empty file is `{}`).
/// Refused, with the parser's message, unless it is a valid config file.
pub fn read(text: &str, file: &str) -> Result<Value, ConfigError> {
    parse(text, file)?;
    let v: Option<Value> = serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
        file: file.to_string(),
        location: None,
        message: e.to_string(),
        snippet: String::new(),
    })?;
    Ok(match v {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(v) => v,
    })
}

/// YAML text of a document (`{}` is the empty file).
pub fn to_yaml(doc: &Value) -> String {
    if doc.as_object().is_some_and(Map::is_empty) {
        return String::new();
    }
    serde_saphyr::to_string(doc).unwrap_or_default()
}

/// `doc` with every field that is at its default removed (see the module
/// comment), sections left empty removed too. Environment references are
/// looked up through `env`, as `config lint` does (an unset key variable is
/// not an error here).
pub fn without_defaults(doc: &Value, env: &dyn Fn(&str) -> Option<String>) -> Value {
    let Some(want) = settings_of(doc, env) else {
        return doc.clone();
    };
    let mut doc = doc.clone();
    let mut paths = Vec::new();
    leaves(&doc, &mut Vec::new(), &mut paths);
    for path in paths {
        let mut trial = doc.clone();
        if remove(&mut trial, &path) && settings_of(&trial, env).as_ref() == Some(&want) {
            doc = trial;
        }
    }
    doc
}

/// `doc` with literal secrets replaced by [`REDACTED`]. References
/// (`${env:NAME}`, `${file:...}`) are not secrets and stay.
pub fn redacted(doc: &Value) -> Value {
    match doc {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let secret = SECRET_FIELDS.contains(&k.as_str())
                        && v.as_str()
                            .is_some_and(|s| !s.trim_start().starts_with("${"));
                    let v = if secret {
                        Value::String(REDACTED.into())
                    } else {
                        redacted(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(redacted).collect()),
        v => v.clone(),
    }
}

/// Puts back, wherever `new` says [`REDACTED`], the value `current` has at
/// the same place. A redacted value with nothing to keep is an error.
pub fn restore_redacted(new: &mut Value, current: &Value) -> Result<(), Problem> {
    fn walk(
        new: &mut Value,
        current: Option<&Value>,
        path: &mut Vec<String>,
    ) -> Result<(), Problem> {
        match new {
            Value::String(s) if s == REDACTED => match current {
                Some(c) if c.as_str().is_some_and(|c| c != REDACTED) => {
                    *new = c.clone();
                    Ok(())
                }
                _ => Err(Problem {
                    field: path.join("."),
                    location: None,
                    message: format!(
                        "'{REDACTED}' keeps the current value, but the configuration has none here; give the value"
                    ),
                }),
            },
            Value::Object(m) => {
                for (k, v) in m.iter_mut() {
                    path.push(k.clone());
                    walk(v, current.and_then(|c| c.get(k.as_str())), path)?;
                    path.pop();
                }
                Ok(())
            }
            Value::Array(a) => {
                for (i, v) in a.iter_mut().enumerate() {
                    // A list item is matched by its `name` when it has one
                    // (backends, users, groups), so reordering keeps secrets.
                    let name = v.get("name").cloned();
                    let cur = current.and_then(Value::as_array).and_then(|c| match &name {
                        Some(n) => c.iter().find(|x| x.get("name") == Some(n)),
                        None => c.get(i),
                    });
                    path.push(i.to_string());
                    walk(v, cur, path)?;
                    path.pop();
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    walk(new, Some(current), &mut Vec::new())
}

/// `current` with an RFC 7396 JSON merge patch applied to one section.
pub fn patch_section(current: &Value, section: &str, patch: &Value) -> Result<Value, String> {
    if !SECTIONS.contains(&section) {
        return Err(format!(
            "no section '{section}'; the sections are {}",
            SECTIONS.join(", ")
        ));
    }
    let mut doc = current.clone();
    if !doc.is_object() {
        doc = Value::Object(Map::new());
    }
    let obj = doc.as_object_mut().expect("an object");
    let mut target = obj.remove(section).unwrap_or(Value::Null);
    json_patch::merge(&mut target, patch);
    if !target.is_null() {
        obj.insert(section.to_owned(), target);
    }
    Ok(doc)
}

/// The settings `doc` validates to, leniently (as `config lint`), with the
/// advisories cleared; `None` if it does not validate.
pub fn settings_of(doc: &Value, env: &dyn Fn(&str) -> Option<String>) -> Option<Settings> {
    let raw = parse(&to_yaml(doc), "<document>").ok()?;
    let mut v = validate::Validator::new(env, validate::Mode::Lint);
    let mut s = v.build(raw, &Overrides::default());
    if !v.problems.is_empty() {
        return None;
    }
    s.warnings.clear();
    Some(s)
}

#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

/// Every removable field: scalars, lists of scalars, empty mappings; the
/// fields of mappings and of list items that are mappings, deepest first.
fn leaves(v: &Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                at.push(Step::Key(k.clone()));
                leaves(child, at, out);
                at.pop();
            }
        }
        Value::Array(a) if a.iter().any(Value::is_object) => {
            for (i, child) in a.iter().enumerate() {
                at.push(Step::Index(i));
                leaves(child, at, out);
                at.pop();
            }
        }
        _ => {
            if matches!(at.last(), Some(Step::Key(_))) {
                out.push(at.clone());
            }
        }
    }
}

/// Removes the field at `path`, then each mapping above it that the
/// removal left empty (list items stay). False if nothing was there.
fn remove(v: &mut Value, path: &[Step]) -> bool {
    match (path, v) {
        ([Step::Key(k)], Value::Object(m)) => m.remove(k).is_some(),
        ([Step::Key(k), rest @ ..], Value::Object(m)) => {
            let Some(child) = m.get_mut(k) else {
                return false;
            };
            let removed = remove(child, rest);
            if removed && child.as_object().is_some_and(Map::is_empty) {
                m.remove(k);
            }
            removed
        }
        ([Step::Index(i), rest @ ..], Value::Array(a)) => {
            a.get_mut(*i).is_some_and(|child| remove(child, rest))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "
access:
  access_key_id: admin
  secret_access_key: supersecretvalue
storage:
  backends:
    - name: nas
      type: filesystem
      path: /srv/nas
      encryption:
        mode: aes256-gcm-proxy
        key: ${env:NAS_KEY}
    - name: cloud
      type: s3
      endpoint: http://127.0.0.1:9999
      region: us-east-1
      force_path_style: true
      access_key_id: AK
      secret_access_key: cloudsecret
  default_backend: nas
  buckets:
    releases:
    photos:
      backend: cloud
      compression: true
advanced:
  listen_addr: 0.0.0.0:9000
  cache_size_mb: 64
  session_bind_ip: true
";

    fn env(name: &str) -> Option<String> {
        (name == "NAS_KEY").then(|| "11".repeat(32))
    }

    #[test]
    fn defaults_are_omitted_and_declarations_kept() {
        let doc = read(FILE, "t").unwrap();
        let want = settings_of(&doc, &env).expect("the test file is valid");
        let out = without_defaults(&doc, &env);
        assert_eq!(settings_of(&out, &env).as_ref(), Some(&want));
        let adv = &out["advanced"];
        assert_eq!(adv.get("listen_addr"), None, "{out}");
        assert_eq!(adv.get("session_bind_ip"), None, "{out}");
        assert_eq!(adv["cache_size_mb"], 64, "{out}");
        // A bucket declared with no settings is not a default.
        assert!(out["storage"]["buckets"].get("releases").is_some(), "{out}");
        assert_eq!(out["storage"]["backends"][1]["force_path_style"], true);
    }

    #[test]
    fn literal_secrets_are_redacted_and_restored_by_name() {
        let doc = read(FILE, "t").unwrap();
        let red = redacted(&doc);
        assert_eq!(red["access"]["secret_access_key"], REDACTED);
        assert_eq!(red["storage"]["backends"][1]["secret_access_key"], REDACTED);
        // A reference is not a secret.
        assert_eq!(
            red["storage"]["backends"][0]["encryption"]["key"],
            "${env:NAS_KEY}"
        );
        assert!(!red.to_string().contains("cloudsecret"));
        // Reordered backends keep their own secrets.
        let mut new = red.clone();
        new["storage"]["backends"].as_array_mut().unwrap().reverse();
        restore_redacted(&mut new, &doc).unwrap();
        assert_eq!(
            new["storage"]["backends"][0]["secret_access_key"],
            "cloudsecret"
        );
        assert_eq!(new["access"]["secret_access_key"], "supersecretvalue");
        // A redacted value where the file has none is refused.
        let mut bad = red.clone();
        bad["storage"]["backends"][1]["name"] = "renamed".into();
        let p = restore_redacted(&mut bad, &doc).unwrap_err();
        assert_eq!(p.field, "storage.backends.1.secret_access_key");
    }

    #[test]
    fn a_merge_patch_changes_one_section() {
        let doc = read(FILE, "t").unwrap();
        let patch = serde_json::json!({"cache_size_mb": 128, "session_bind_ip": null});
        let out = patch_section(&doc, "advanced", &patch).unwrap();
        assert_eq!(out["advanced"]["cache_size_mb"], 128);
        assert_eq!(out["advanced"].get("session_bind_ip"), None);
        assert_eq!(out["storage"], doc["storage"]);
        let gone = patch_section(&doc, "advanced", &Value::Null).unwrap();
        assert_eq!(gone.get("advanced"), None);
        assert!(patch_section(&doc, "nonsense", &patch).is_err());
    }

    #[test]
    fn the_schema_follows_the_parser() {
        let s = schema();
        let props = s["properties"].as_object().unwrap();
        let names: Vec<_> = props.keys().map(String::as_str).collect();
        for section in SECTIONS {
            assert!(names.contains(&section), "{names:?}");
        }
        assert_eq!(s["additionalProperties"], false);
        let text = s.to_string();
        for field in [
            "session_bind_ip",
            "metrics_allow_from",
            "public_prefixes",
            "key_file",
        ] {
            assert!(text.contains(field), "{field} missing from the schema");
        }
    }
}
