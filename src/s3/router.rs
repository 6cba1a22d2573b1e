//! Which S3 operation a request is, from its method, addressing, query and
//! headers. Sub-resources this server does not implement get NotImplemented
//! rather than being mistaken for a plain object or bucket request.

use http::{HeaderMap, Method};

use super::error::S3Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ListBuckets,
    CreateBucket,
    HeadBucket,
    DeleteBucket,
    GetBucketLocation,
    GetBucketVersioning,
    ListObjects,
    ListObjectsV2,
    ListObjectVersions,
    DeleteObjects,
    ListMultipartUploads,
    GetObject,
    HeadObject,
    PutObject,
    CopyObject,
    DeleteObject,
    CreateMultipartUpload,
    UploadPart,
    UploadPartCopy,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
    GetBucketPolicy,
    PutBucketPolicy,
    DeleteBucketPolicy,
    GetBucketPolicyStatus,
    GetBucketAcl,
    PutBucketAcl,
    GetObjectAcl,
    PutObjectAcl,
}

/// Sub-resources of buckets and objects that S3 defines and we do not serve.
const UNSUPPORTED: &[&str] = &[
    "accelerate",
    "analytics",
    "attributes",
    "cors",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "legal-hold",
    "lifecycle",
    "logging",
    "metadataTable",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "publicAccessBlock",
    "replication",
    "requestPayment",
    "restore",
    "retention",
    "select",
    "tagging",
    "torrent",
    "website",
];

pub fn route(
    method: &Method,
    has_bucket: bool,
    has_key: bool,
    query: &[(String, String)],
    headers: &HeaderMap,
) -> Result<Endpoint, S3Error> {
    let has = |n: &str| query.iter().any(|(k, _)| k == n);
    if let Some((k, _)) = query
        .iter()
        .find(|(k, _)| UNSUPPORTED.contains(&k.as_str()))
    {
        return Err(S3Error::not_implemented(&format!("The '{k}' sub-resource")));
    }
    let copy = headers.contains_key("x-amz-copy-source");
    use Endpoint::*;
    let ep = match (has_bucket, has_key) {
        (false, _) => match *method {
            Method::GET => ListBuckets,
            _ => return Err(method_not_allowed()),
        },
        (true, false) => match *method {
            Method::GET if has("acl") => GetBucketAcl,
            Method::PUT if has("acl") => PutBucketAcl,
            Method::GET if has("policy") => GetBucketPolicy,
            Method::PUT if has("policy") => PutBucketPolicy,
            Method::DELETE if has("policy") => DeleteBucketPolicy,
            Method::GET if has("policyStatus") => GetBucketPolicyStatus,
            Method::GET if has("location") => GetBucketLocation,
            Method::GET if has("versioning") => GetBucketVersioning,
            Method::GET if has("versions") => ListObjectVersions,
            Method::GET if has("uploads") => ListMultipartUploads,
            Method::GET if query.iter().any(|(k, v)| k == "list-type" && v == "2") => ListObjectsV2,
            Method::GET => ListObjects,
            Method::HEAD => HeadBucket,
            Method::PUT if has("versioning") => {
                return Err(S3Error::not_implemented("Enabling versioning"));
            }
            Method::PUT => CreateBucket,
            Method::DELETE => DeleteBucket,
            Method::POST if has("delete") => DeleteObjects,
            _ => return Err(method_not_allowed()),
        },
        (true, true) if has("policy") || has("policyStatus") => {
            return Err(S3Error::not_implemented("Object-level policies"));
        }
        (true, true) => match *method {
            Method::GET if has("acl") => GetObjectAcl,
            Method::PUT if has("acl") => PutObjectAcl,
            Method::GET if has("uploadId") => ListParts,
            Method::GET => GetObject,
            Method::HEAD => HeadObject,
            Method::PUT if has("partNumber") && has("uploadId") => {
                if copy {
                    UploadPartCopy
                } else {
                    UploadPart
                }
            }
            Method::PUT if copy => CopyObject,
            Method::PUT => PutObject,
            Method::DELETE if has("uploadId") => AbortMultipartUpload,
            Method::DELETE => DeleteObject,
            Method::POST if has("uploads") => CreateMultipartUpload,
            Method::POST if has("uploadId") => CompleteMultipartUpload,
            Method::POST => return Err(S3Error::not_implemented("This POST operation")),
            _ => return Err(method_not_allowed()),
        },
    };
    Ok(ep)
}

fn method_not_allowed() -> S3Error {
    S3Error::new(
        "MethodNotAllowed",
        405,
        "The specified method is not allowed against this resource.",
    )
}

impl Endpoint {
    /// The IAM action the central authorization step checks for this
    /// operation on the request's bucket and key. `None` for the two
    /// operations that name several resources, which their handlers check
    /// one by one with the same engine: ListBuckets (filtered per bucket)
    /// and DeleteObjects (s3:DeleteObject per key).
    pub fn action(self) -> Option<crate::gateway::policy::S3Action> {
        use crate::gateway::policy::*;
        use Endpoint::*;
        Some(match self {
            ListBuckets | DeleteObjects => return None,
            CreateBucket => CREATE_BUCKET,
            HeadBucket | ListObjects | ListObjectsV2 => LIST_BUCKET,
            DeleteBucket => DELETE_BUCKET,
            GetBucketLocation => GET_LOCATION,
            GetBucketVersioning => GET_VERSIONING,
            ListObjectVersions => LIST_VERSIONS,
            ListMultipartUploads => LIST_UPLOADS,
            GetObject | HeadObject => GET_OBJECT,
            // The copy source's s3:GetObject is checked by the handler.
            PutObject
            | CopyObject
            | CreateMultipartUpload
            | UploadPart
            | UploadPartCopy
            | CompleteMultipartUpload => PUT_OBJECT,
            DeleteObject => DELETE_OBJECT,
            AbortMultipartUpload => ABORT_UPLOAD,
            ListParts => LIST_PARTS,
            GetBucketPolicy => GET_BUCKET_POLICY,
            PutBucketPolicy => PUT_BUCKET_POLICY,
            DeleteBucketPolicy => DELETE_BUCKET_POLICY,
            GetBucketPolicyStatus => GET_POLICY_STATUS,
            GetBucketAcl => GET_BUCKET_ACL,
            PutBucketAcl => PUT_BUCKET_ACL,
            GetObjectAcl => GET_OBJECT_ACL,
            PutObjectAcl => PUT_OBJECT_ACL,
        })
    }

    /// A listing: its `prefix` is the policy's `s3:prefix`.
    pub fn is_listing(self) -> bool {
        matches!(
            self,
            Endpoint::ListObjects
                | Endpoint::ListObjectsV2
                | Endpoint::ListObjectVersions
                | Endpoint::ListMultipartUploads
        )
    }
}
