//! The XML documents of the S3 API as serde structs (quick-xml), and the
//! helpers that turn them into responses or parse request bodies.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use serde::{Deserialize, Serialize};

use super::error::S3Error;

pub const S3_NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// Whether a document may hold `c` as it is: XML 1.0's `Char` production,
/// less CR (which parsers turn into LF; it is written as a reference).
fn plain_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Makes text safe for an XML 1.0 document: CR becomes `&#13;` (read back
/// exactly), and characters XML 1.0 cannot hold at all (other C0 controls,
/// U+FFFE, U+FFFF) are percent-encoded as UTF-8 (`%01`), as
/// `encoding-type=url` would. Keys with such characters are best listed with
/// `encoding-type=url`; this keeps every document we write parseable.
pub fn xml_safe(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().all(plain_xml_char) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if plain_xml_char(c) {
            out.push(c);
        } else if c == '\r' {
            out.push_str("&#13;");
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Serializes `doc` as the root element `root` into a 200 application/xml response.
/// A document's root element as text (no XML declaration).
pub fn element<T: Serialize>(root: &str, doc: &T) -> Option<String> {
    match quick_xml::se::to_string_with_root(root, doc) {
        Ok(s) => Some(xml_safe(&s).into_owned()),
        Err(e) => {
            tracing::error!(error = %e, root, "XML serialization failed");
            None
        }
    }
}

pub fn response<T: Serialize>(root: &str, doc: &T) -> Response {
    let mut body = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    match quick_xml::se::to_string_with_root(root, doc) {
        Ok(s) => body.push_str(&xml_safe(&s)),
        Err(e) => {
            tracing::error!(error = %e, root, "XML serialization failed");
            return S3Error::internal().to_response("-", false);
        }
    }
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    resp
}

/// The root element of a document: (local name, default namespace if declared).
fn root_element(text: &str) -> Option<(String, Option<String>)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) | Event::Empty(e) => {
                let name = e.local_name().as_ref().to_owned();
                let mut ns = None;
                for a in e.attributes() {
                    let a = a.ok()?;
                    if a.key.as_ref() == "xmlns" {
                        ns = Some(
                            a.normalized_value(quick_xml::XmlVersion::default())
                                .ok()?
                                .into_owned(),
                        );
                    }
                }
                return Some((name, ns));
            }
            Event::Eof => return None,
            _ => {}
        }
    }
}

/// Parses a request body document whose root element must be `root`, in
/// S3's namespace or none; anything else is MalformedXML.
pub fn parse<T: for<'de> Deserialize<'de>>(body: &[u8], root: &str) -> Result<T, S3Error> {
    let text = std::str::from_utf8(body).map_err(|_| S3Error::malformed_xml())?;
    match root_element(text) {
        Some((name, ns)) if name == root && ns.as_deref().is_none_or(|n| n == S3_NS) => {}
        other => {
            tracing::debug!(root = ?other, want = root, "request document has the wrong root element or namespace");
            return Err(S3Error::malformed_xml());
        }
    }
    quick_xml::de::from_str(text).map_err(|e| {
        tracing::debug!(error = %e, "malformed XML body");
        S3Error::malformed_xml()
    })
}

#[cfg(test)]
mod safe_tests {
    use super::xml_safe;

    #[test]
    fn control_characters_never_reach_the_document() {
        assert_eq!(xml_safe("plain/key.txt"), "plain/key.txt");
        assert_eq!(xml_safe("a\u{1}b"), "a%01b");
        assert_eq!(xml_safe("a\rb\tc\nd"), "a&#13;b\tc\nd");
        assert_eq!(xml_safe("x\u{FFFE}"), "x%EF%BF%BE");
        assert_eq!(xml_safe("ünïcödé 😀"), "ünïcödé 😀");
    }
}

#[derive(Serialize)]
pub struct Owner {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "DisplayName")]
    pub display_name: String,
}

impl Owner {
    pub fn proxy() -> Self {
        Owner {
            id: "deltaglider".into(),
            display_name: "deltaglider".into(),
        }
    }
}

#[derive(Serialize)]
pub struct ListAllMyBucketsResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    #[serde(rename = "Owner")]
    pub owner: Owner,
    #[serde(rename = "Buckets")]
    pub buckets: Buckets,
}

#[derive(Serialize)]
pub struct Buckets {
    #[serde(rename = "Bucket", default)]
    pub bucket: Vec<BucketXml>,
}

#[derive(Serialize)]
pub struct BucketXml {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "CreationDate")]
    pub creation_date: String,
}

#[derive(Serialize)]
pub struct LocationConstraint {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    #[serde(rename = "$text")]
    pub region: String,
}

#[derive(Serialize)]
pub struct VersioningConfiguration {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
}

#[derive(Serialize)]
pub struct Contents {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "LastModified")]
    pub last_modified: String,
    #[serde(rename = "ETag")]
    pub etag: String,
    #[serde(rename = "ChecksumAlgorithm", skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<String>,
    #[serde(rename = "ChecksumType", skip_serializing_if = "Option::is_none")]
    pub checksum_type: Option<String>,
    #[serde(rename = "Size")]
    pub size: u64,
    #[serde(rename = "Owner", skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    #[serde(rename = "StorageClass")]
    pub storage_class: &'static str,
}

#[derive(Serialize)]
pub struct CommonPrefix {
    #[serde(rename = "Prefix")]
    pub prefix: String,
}

/// ListObjects (v1) and ListObjectsV2 share one result element; the fields
/// that belong to one version only are `None` in the other.
#[derive(Serialize)]
pub struct ListBucketResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Prefix")]
    pub prefix: String,
    #[serde(rename = "Marker", skip_serializing_if = "Option::is_none")]
    pub marker: Option<String>,
    #[serde(rename = "NextMarker", skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
    #[serde(rename = "StartAfter", skip_serializing_if = "Option::is_none")]
    pub start_after: Option<String>,
    #[serde(rename = "ContinuationToken", skip_serializing_if = "Option::is_none")]
    pub continuation_token: Option<String>,
    #[serde(
        rename = "NextContinuationToken",
        skip_serializing_if = "Option::is_none"
    )]
    pub next_continuation_token: Option<String>,
    #[serde(rename = "KeyCount", skip_serializing_if = "Option::is_none")]
    pub key_count: Option<usize>,
    #[serde(rename = "MaxKeys")]
    pub max_keys: usize,
    #[serde(rename = "Delimiter", skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    #[serde(rename = "EncodingType", skip_serializing_if = "Option::is_none")]
    pub encoding_type: Option<String>,
    #[serde(rename = "IsTruncated")]
    pub is_truncated: bool,
    #[serde(rename = "Contents", default)]
    pub contents: Vec<Contents>,
    #[serde(rename = "CommonPrefixes", default)]
    pub common_prefixes: Vec<CommonPrefix>,
}

#[derive(Serialize)]
pub struct Version {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "VersionId")]
    pub version_id: &'static str,
    #[serde(rename = "IsLatest")]
    pub is_latest: bool,
    #[serde(rename = "LastModified")]
    pub last_modified: String,
    #[serde(rename = "ETag")]
    pub etag: String,
    #[serde(rename = "Size")]
    pub size: u64,
    #[serde(rename = "Owner")]
    pub owner: Owner,
    #[serde(rename = "StorageClass")]
    pub storage_class: &'static str,
}

#[derive(Serialize)]
pub struct ListVersionsResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Prefix")]
    pub prefix: String,
    #[serde(rename = "KeyMarker")]
    pub key_marker: String,
    #[serde(rename = "VersionIdMarker")]
    pub version_id_marker: String,
    #[serde(rename = "NextKeyMarker", skip_serializing_if = "Option::is_none")]
    pub next_key_marker: Option<String>,
    #[serde(
        rename = "NextVersionIdMarker",
        skip_serializing_if = "Option::is_none"
    )]
    pub next_version_id_marker: Option<&'static str>,
    #[serde(rename = "MaxKeys")]
    pub max_keys: usize,
    #[serde(rename = "Delimiter", skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    #[serde(rename = "EncodingType", skip_serializing_if = "Option::is_none")]
    pub encoding_type: Option<String>,
    #[serde(rename = "IsTruncated")]
    pub is_truncated: bool,
    #[serde(rename = "Version", default)]
    pub versions: Vec<Version>,
    #[serde(rename = "CommonPrefixes", default)]
    pub common_prefixes: Vec<CommonPrefix>,
}

#[derive(Serialize)]
pub struct CopyObjectResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    #[serde(rename = "LastModified")]
    pub last_modified: String,
    #[serde(rename = "ETag")]
    pub etag: String,
    #[serde(flatten)]
    pub checksum: ChecksumFields,
}

/// Checksum elements as they appear in several documents.
#[derive(Serialize, Deserialize, Default, Debug, Clone)]
pub struct ChecksumFields {
    #[serde(
        rename = "ChecksumCRC32",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub crc32: Option<String>,
    #[serde(
        rename = "ChecksumCRC32C",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub crc32c: Option<String>,
    #[serde(
        rename = "ChecksumCRC64NVME",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub crc64nvme: Option<String>,
    #[serde(
        rename = "ChecksumSHA1",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub sha1: Option<String>,
    #[serde(
        rename = "ChecksumSHA256",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub sha256: Option<String>,
}

impl ChecksumFields {
    pub fn from_alg(alg: &str, value: String) -> Self {
        let mut f = ChecksumFields::default();
        match alg {
            "CRC32" => f.crc32 = Some(value),
            "CRC32C" => f.crc32c = Some(value),
            "CRC64NVME" => f.crc64nvme = Some(value),
            "SHA1" => f.sha1 = Some(value),
            "SHA256" => f.sha256 = Some(value),
            _ => {}
        }
        f
    }
    pub fn any(&self) -> Option<String> {
        self.crc32
            .clone()
            .or(self.crc32c.clone())
            .or(self.crc64nvme.clone())
            .or(self.sha1.clone())
            .or(self.sha256.clone())
    }
}

#[derive(Serialize)]
pub struct CopyPartResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    #[serde(rename = "LastModified")]
    pub last_modified: String,
    #[serde(rename = "ETag")]
    pub etag: String,
    #[serde(flatten)]
    pub checksum: ChecksumFields,
}

#[derive(Serialize)]
pub struct InitiateMultipartUploadResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    #[serde(rename = "Bucket")]
    pub bucket: String,
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "UploadId")]
    pub upload_id: String,
}

#[derive(Serialize)]
pub struct CompleteMultipartUploadResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    #[serde(rename = "Location")]
    pub location: String,
    #[serde(rename = "Bucket")]
    pub bucket: String,
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "ETag")]
    pub etag: String,
    #[serde(flatten)]
    pub checksum: ChecksumFields,
    #[serde(rename = "ChecksumType", skip_serializing_if = "Option::is_none")]
    pub checksum_type: Option<String>,
}

#[derive(Serialize)]
pub struct PartXml {
    #[serde(rename = "PartNumber")]
    pub part_number: u32,
    #[serde(rename = "LastModified")]
    pub last_modified: String,
    #[serde(rename = "ETag")]
    pub etag: String,
    #[serde(rename = "Size")]
    pub size: u64,
    #[serde(flatten)]
    pub checksum: ChecksumFields,
}

#[derive(Serialize)]
pub struct ListPartsResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    #[serde(rename = "Bucket")]
    pub bucket: String,
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "UploadId")]
    pub upload_id: String,
    #[serde(rename = "PartNumberMarker")]
    pub part_number_marker: u32,
    #[serde(
        rename = "NextPartNumberMarker",
        skip_serializing_if = "Option::is_none"
    )]
    pub next_part_number_marker: Option<u32>,
    #[serde(rename = "MaxParts")]
    pub max_parts: usize,
    #[serde(rename = "IsTruncated")]
    pub is_truncated: bool,
    #[serde(rename = "ChecksumAlgorithm", skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<String>,
    #[serde(rename = "ChecksumType", skip_serializing_if = "Option::is_none")]
    pub checksum_type: Option<String>,
    #[serde(rename = "Initiator")]
    pub initiator: Owner,
    #[serde(rename = "Owner")]
    pub owner: Owner,
    #[serde(rename = "StorageClass")]
    pub storage_class: &'static str,
    #[serde(rename = "Part", default)]
    pub parts: Vec<PartXml>,
}

#[derive(Serialize)]
pub struct UploadXml {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "UploadId")]
    pub upload_id: String,
    #[serde(rename = "Initiator")]
    pub initiator: Owner,
    #[serde(rename = "Owner")]
    pub owner: Owner,
    #[serde(rename = "StorageClass")]
    pub storage_class: &'static str,
    #[serde(rename = "Initiated")]
    pub initiated: String,
}

#[derive(Serialize)]
pub struct ListMultipartUploadsResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    #[serde(rename = "Bucket")]
    pub bucket: String,
    #[serde(rename = "KeyMarker")]
    pub key_marker: String,
    #[serde(rename = "UploadIdMarker")]
    pub upload_id_marker: String,
    #[serde(rename = "NextKeyMarker", skip_serializing_if = "Option::is_none")]
    pub next_key_marker: Option<String>,
    #[serde(rename = "NextUploadIdMarker", skip_serializing_if = "Option::is_none")]
    pub next_upload_id_marker: Option<String>,
    #[serde(rename = "Prefix")]
    pub prefix: String,
    #[serde(rename = "Delimiter", skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    #[serde(rename = "MaxUploads")]
    pub max_uploads: usize,
    #[serde(rename = "IsTruncated")]
    pub is_truncated: bool,
    #[serde(rename = "Upload", default)]
    pub uploads: Vec<UploadXml>,
    #[serde(rename = "CommonPrefixes", default)]
    pub common_prefixes: Vec<CommonPrefix>,
}

#[derive(Serialize)]
pub struct DeleteResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    #[serde(rename = "Deleted", default)]
    pub deleted: Vec<DeletedXml>,
    #[serde(rename = "Error", default)]
    pub errors: Vec<DeleteErrorXml>,
}

#[derive(Serialize)]
pub struct DeletedXml {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "VersionId", skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

#[derive(Serialize)]
pub struct DeleteErrorXml {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "VersionId", skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(rename = "Code")]
    pub code: String,
    #[serde(rename = "Message")]
    pub message: String,
}

// ------------------------------------------------------------ request bodies

#[derive(Deserialize, Debug)]
pub struct DeleteRequest {
    #[serde(rename = "Quiet", default)]
    pub quiet: Option<bool>,
    #[serde(rename = "Object", default)]
    pub objects: Vec<DeleteObjectXml>,
}

#[derive(Deserialize, Debug)]
pub struct DeleteObjectXml {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "VersionId", default)]
    pub version_id: Option<String>,
}

#[derive(Deserialize, Debug)]
pub struct CompleteMultipartUpload {
    #[serde(rename = "Part", default)]
    pub parts: Vec<CompletePartXml>,
}

#[derive(Deserialize, Debug)]
pub struct CompletePartXml {
    #[serde(rename = "PartNumber")]
    pub part_number: u32,
    #[serde(rename = "ETag")]
    pub etag: String,
    // Spelled out: quick-xml does not deserialize through #[serde(flatten)].
    #[serde(rename = "ChecksumCRC32", default)]
    pub crc32: Option<String>,
    #[serde(rename = "ChecksumCRC32C", default)]
    pub crc32c: Option<String>,
    #[serde(rename = "ChecksumCRC64NVME", default)]
    pub crc64nvme: Option<String>,
    #[serde(rename = "ChecksumSHA1", default)]
    pub sha1: Option<String>,
    #[serde(rename = "ChecksumSHA256", default)]
    pub sha256: Option<String>,
}

impl CompletePartXml {
    pub fn checksum(&self) -> Option<String> {
        [
            &self.crc32,
            &self.crc32c,
            &self.crc64nvme,
            &self.sha1,
            &self.sha256,
        ]
        .into_iter()
        .find_map(|c| c.clone())
    }
}

/// Formats a time the way S3 XML does: `2009-10-12T17:50:30.000Z`.
pub fn iso8601(t: std::time::SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    dt.format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}
