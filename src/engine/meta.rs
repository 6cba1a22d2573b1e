//! The object metadata document stored in `user.dg.metadata`: one versioned
//! JSON struct, serialized and parsed only here.
//!
//! Version 1 fields are listed in `docs/on-disk-format.md`. Unknown fields
//! written by a newer version are kept in `extra` and written back unchanged,
//! so a rollback never silently drops a marker it does not understand.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The `dg-encrypted` marker value of DGE1 bodies.
pub const ENCRYPTED_MARKER: &str = "aes-256-gcm-dge1";

/// `dg-note` values.
pub const NOTE_REFERENCE: &str = "reference";
pub const NOTE_DELTA: &str = "delta";
pub const NOTE_PASSTHROUGH: &str = "passthrough";

/// The schema version this build writes.
pub const META_VERSION: u32 = 1;

/// The standard headers S3 stores with an object and returns on GET/HEAD.
pub const STORED_HEADERS: &[&str] = &[
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredChecksum {
    /// CRC32, CRC32C, CRC64NVME, SHA1 or SHA256.
    pub alg: String,
    /// Base64 of the checksum, with "-N" for composite multipart checksums.
    pub value: String,
    /// FULL_OBJECT or COMPOSITE.
    #[serde(rename = "type")]
    pub kind: String,
}

/// The metadata document of one object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub v: u32,
    /// Logical size in bytes: what a GET returns.
    pub size: u64,
    /// Entity tag without quotes: MD5 hex, or MD5-of-part-MD5s "-N".
    pub etag: String,
    /// Last-Modified, milliseconds since the Unix epoch.
    pub mtime_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Standard headers (see `STORED_HEADERS`), lowercase names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// User metadata (`x-amz-meta-*`), names lowercase without the prefix.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user: BTreeMap<String, String>,
    /// The object's canned ACL when it grants beyond the owner
    /// (`public-read`, `public-read-write`, `authenticated-read`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<StoredChecksum>,
    /// SHA-256 of the logical content, hex, when it was computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Number of parts for a multipart object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<u32>,
    /// Encryption marker: `aes-256-gcm-dge1` when the body is a DGE1 body.
    #[serde(
        rename = "dg-encrypted",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub encrypted: Option<String>,
    /// The id of the key (KEK) that wraps this object's data key.
    #[serde(
        rename = "dg-encryption-key-id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub key_id: Option<String>,
    /// The object's data key wrapped by the KEK (base64, 60 bytes).
    #[serde(
        rename = "dg-wrapped-key",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub wrapped_key: Option<String>,
    /// How the body is stored: `reference` (this object's content is its
    /// deltaspace's reference; the file holds a delta against it),
    /// `delta` (the file holds a delta against the reference) or
    /// `passthrough` (the file holds the whole object). Absent: whole.
    #[serde(rename = "dg-note", default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The reference a delta was computed against (its file name in the
    /// deltaspace's directory of the internal area).
    #[serde(rename = "dg-ref-id", default, skip_serializing_if = "Option::is_none")]
    pub ref_id: Option<String>,
    /// SHA-256 (hex) of the reference's content.
    #[serde(
        rename = "dg-ref-sha256",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ref_sha256: Option<String>,
    /// Length of the stored body's plaintext (the delta) when the body is a delta.
    #[serde(
        rename = "dg-stored-size",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub stored_size: Option<u64>,
    /// The multipart upload whose completion published this object version
    /// (lets recovery tell a completion that published from one that did not).
    #[serde(
        rename = "dg-upload-id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub upload_id: Option<String>,
    /// The body is a concatenation of DGE1 segments under one data key (a
    /// multipart upload sent part by part to an S3 upstream):
    /// `e<chunk exponent>:<plaintext size>*<count>,...` in order.
    #[serde(
        rename = "dg-segments",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub segments: Option<String>,
    /// The object is the not yet finished result of this multipart upload
    /// (its final document is being written): not visible to clients.
    #[serde(
        rename = "dg-pending-upload",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pending_upload: Option<String>,
    /// Fields from a newer schema version, preserved on rewrite.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
#[error("unreadable metadata document: {0}")]
pub struct MetaError(String);

impl ObjectMeta {
    pub fn new(size: u64, etag: String, mtime: SystemTime) -> Self {
        ObjectMeta {
            v: META_VERSION,
            size,
            etag,
            mtime_ms: to_ms(mtime),
            content_type: None,
            headers: BTreeMap::new(),
            user: BTreeMap::new(),
            acl: None,
            checksum: None,
            sha256: None,
            parts: None,
            encrypted: None,
            key_id: None,
            wrapped_key: None,
            note: None,
            ref_id: None,
            ref_sha256: None,
            stored_size: None,
            upload_id: None,
            segments: None,
            pending_upload: None,
            extra: BTreeMap::new(),
        }
    }

    /// The one place the document is serialized.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("metadata serializes")
    }

    /// The one place the document is parsed.
    pub fn decode(raw: &[u8]) -> Result<Self, MetaError> {
        let m: ObjectMeta = serde_json::from_slice(raw).map_err(|e| MetaError(e.to_string()))?;
        if m.v == 0 {
            return Err(MetaError("version 0".into()));
        }
        Ok(m)
    }

    /// The body is a delta to reconstruct against a reference.
    pub fn is_delta(&self) -> bool {
        matches!(self.note.as_deref(), Some(NOTE_REFERENCE | NOTE_DELTA)) && self.ref_id.is_some()
    }

    /// Plaintext length of the stored body: the delta's for a delta body.
    pub fn body_size(&self) -> u64 {
        if self.is_delta() {
            self.stored_size.unwrap_or(0)
        } else {
            self.size
        }
    }

    pub fn mtime(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.mtime_ms)
    }

    /// Size in bytes of the user metadata as S3 counts it (names + values).
    pub fn user_meta_len(&self) -> usize {
        self.user.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

/// `dg-segments` for segments (part number, plaintext size) in order:
/// `e<exp>:<sizes>;p<numbers>`, runs of equal sizes as `size*count`, runs
/// of consecutive part numbers as `first-last`
/// (`e16:5242880*1999,1234;p1-2000`).
pub fn encode_segments(chunk_exp: u8, segs: &[(u32, u64)]) -> String {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &(_, s) in segs {
        match runs.last_mut() {
            Some((v, n)) if *v == s => *n += 1,
            _ => runs.push((s, 1)),
        }
    }
    let sizes: Vec<String> = runs
        .iter()
        .map(|(v, n)| {
            if *n == 1 {
                v.to_string()
            } else {
                format!("{v}*{n}")
            }
        })
        .collect();
    let mut spans: Vec<(u32, u32)> = Vec::new();
    for &(p, _) in segs {
        match spans.last_mut() {
            Some((_, last)) if *last + 1 == p => *last = p,
            _ => spans.push((p, p)),
        }
    }
    let numbers: Vec<String> = spans
        .iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    format!("e{chunk_exp}:{};p{}", sizes.join(","), numbers.join(","))
}

/// The chunk exponent and the (part number, plaintext size) of `dg-segments`.
pub fn decode_segments(s: &str) -> Option<(u8, Vec<(u32, u64)>)> {
    let (e, rest) = s.strip_prefix('e')?.split_once(':')?;
    let (sizes_s, numbers_s) = rest.split_once(";p")?;
    let exp: u8 = e.parse().ok()?;
    let mut sizes = Vec::new();
    for run in sizes_s.split(',') {
        let (v, n) = match run.split_once('*') {
            Some((v, n)) => (v.parse::<u64>().ok()?, n.parse::<u64>().ok()?),
            None => (run.parse::<u64>().ok()?, 1),
        };
        if n == 0 || sizes.len() as u64 + n > 10_000 {
            return None;
        }
        sizes.extend(std::iter::repeat_n(v, n as usize));
    }
    let mut numbers = Vec::new();
    for span in numbers_s.split(',') {
        let (a, b) = match span.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let a = span.parse::<u32>().ok()?;
                (a, a)
            }
        };
        if a > b || numbers.last().is_some_and(|&l| l >= a) || b - a >= 10_000 {
            return None;
        }
        numbers.extend(a..=b);
        if numbers.len() > 10_000 {
            return None;
        }
    }
    (!sizes.is_empty() && sizes.len() == numbers.len())
        .then(|| (exp, numbers.into_iter().zip(sizes).collect()))
}

pub fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip() {
        let segs = [(1u32, 5u64), (2, 5), (3, 5), (4, 7), (7, 5), (8, 5)];
        let s = encode_segments(16, &segs);
        assert_eq!(s, "e16:5*3,7,5*2;p1-4,7-8");
        assert_eq!(decode_segments(&s), Some((16, segs.to_vec())));
        for bad in [
            "e16:;p1",
            "e16:5*0;p1",
            "x16:5;p1",
            "e16:5;p",
            "e16:5*2;p1",
            "e16:5*2;p2,1",
            "e16:5",
        ] {
            assert_eq!(decode_segments(bad), None, "{bad}");
        }
    }

    #[test]
    fn round_trip_and_unknown_fields_kept() {
        let mut m = ObjectMeta::new(5, "abc".into(), SystemTime::now());
        m.user.insert("k".into(), "v".into());
        let back = ObjectMeta::decode(&m.encode()).unwrap();
        assert_eq!(m, back);
        let newer =
            br#"{"v":2,"size":1,"etag":"e","mtime_ms":5,"dg-encrypted":"aes-256-gcm-chunked"}"#;
        let m2 = ObjectMeta::decode(newer).unwrap();
        assert!(
            String::from_utf8(m2.encode())
                .unwrap()
                .contains("dg-encrypted")
        );
        assert!(ObjectMeta::decode(b"not json").is_err());
    }
}
