//! Tests of the whole module against published vectors: AWS's generic SigV4
//! test suite (`testdata/sigv4_suite.txt`, service "service", with and without
//! path normalization), the S3 SigV4 documentation examples (header, presigned,
//! chunked upload, chunked upload with trailer), the S3 SigV2 documentation
//! examples, and the failure cases (expiry, skew, wrong secret, unknown key,
//! malformed or tampered aws-chunked bodies).

use std::collections::HashMap;

use bytes::Bytes;
use futures::StreamExt;
use futures::executor::block_on;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::sigv4::{self, CanonicalRequestInput};
use super::*;

// ---------------------------------------------------------------------------
// helpers

fn store(akid: &str, secret: &str) -> HashMap<String, SecretKey> {
    HashMap::from([(akid.to_owned(), SecretKey::new(secret.to_owned()))])
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        let name = HeaderName::from_bytes(k.as_bytes()).expect("test header name");
        h.append(name, HeaderValue::from_str(v).expect("test header value"));
    }
    h
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).expect("valid timestamp")
}

fn run(
    method: &Method,
    path: &str,
    query: &str,
    h: &HeaderMap,
    now: OffsetDateTime,
    creds: &dyn CredentialStore,
) -> Result<AuthOutcome, AuthError> {
    authenticate(
        &AuthRequest {
            method,
            path,
            query,
            headers: h,
            now,
            region: None,
        },
        creds,
    )
}

fn akid_of(outcome: &AuthOutcome) -> &str {
    match outcome {
        AuthOutcome::Authenticated { access_key_id, .. } => access_key_id,
        AuthOutcome::Anonymous => "<anonymous>",
    }
}

fn payload_of(outcome: AuthOutcome) -> PayloadMode {
    match outcome {
        AuthOutcome::Authenticated { payload, .. } => payload,
        AuthOutcome::Anonymous => panic!("expected an authenticated outcome"),
    }
}

fn body_of(parts: Vec<Vec<u8>>) -> ByteStream {
    Box::pin(futures::stream::iter(
        parts.into_iter().map(|p| Ok(Bytes::from(p))),
    ))
}

fn split(data: &[u8], n: usize) -> Vec<Vec<u8>> {
    data.chunks(n.max(1)).map(<[u8]>::to_vec).collect()
}

/// Runs a decoded stream to its end: the bytes it yielded, and the error
/// that ended it (if any). Checks that nothing follows an error.
fn drain(stream: ByteStream) -> (Vec<u8>, Option<AuthError>) {
    block_on(async move {
        let mut stream = stream;
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => {
                    let auth = e
                        .get_ref()
                        .and_then(|inner| inner.downcast_ref::<AuthError>())
                        .cloned()
                        .unwrap_or_else(|| panic!("non-auth io error: {e}"));
                    assert!(
                        stream.next().await.is_none(),
                        "the stream must end after an error"
                    );
                    return (out, Some(auth));
                }
            }
        }
        (out, None)
    })
}

// ---------------------------------------------------------------------------
// AWS generic SigV4 test suite (service "service")

struct SuiteCase {
    name: String,
    normalize: bool,
    sections: HashMap<String, String>,
}

fn parse_suite(text: &str) -> Vec<SuiteCase> {
    let mut cases: Vec<SuiteCase> = Vec::new();
    let mut section: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("# ") || line == "#" {
            continue;
        }
        if let Some(name) = line.strip_prefix("=== ") {
            cases.push(SuiteCase {
                name: name.to_owned(),
                normalize: true,
                sections: HashMap::new(),
            });
            section = None;
            continue;
        }
        let Some(case) = cases.last_mut() else {
            continue;
        };
        if let Some(sec) = line.strip_prefix("--- ") {
            case.sections.insert(sec.to_owned(), String::new());
            section = Some(sec.to_owned());
            continue;
        }
        match &section {
            None => {
                if let Some(v) = line.strip_prefix("normalize: ") {
                    case.normalize = v == "true";
                }
            }
            Some(sec) => {
                let s = case.sections.get_mut(sec).expect("section exists");
                s.push_str(line);
                s.push('\n');
            }
        }
    }
    for case in &mut cases {
        for v in case.sections.values_mut() {
            while v.ends_with('\n') {
                v.pop();
            }
        }
    }
    cases
}

/// Parses a suite request: `METHOD target HTTP/1.1`, headers (continuation
/// lines unfolded), empty line, body.
fn parse_request(text: &str) -> (String, String, String, HeaderMap, Vec<u8>) {
    let mut lines = text.split('\n');
    let request_line = lines.next().expect("request line");
    let method_end = request_line.find(' ').expect("method");
    let version_start = request_line.rfind(' ').expect("version");
    let method = request_line[..method_end].to_owned();
    let target = &request_line[method_end + 1..version_start];
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target.to_owned(), String::new()),
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut body = Vec::new();
    let mut in_body = false;
    for line in lines {
        if in_body {
            if !body.is_empty() {
                body.push(b'\n');
            }
            body.extend_from_slice(line.as_bytes());
        } else if line.is_empty() {
            in_body = true;
        } else if line.starts_with([' ', '\t']) {
            let last = pairs.last_mut().expect("continuation follows a header");
            last.1.push(' ');
            last.1.push_str(line);
        } else {
            let (k, v) = line.split_once(':').expect("header line");
            pairs.push((k.to_owned(), v.trim_start().to_owned()));
        }
    }
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(&v).expect("value"),
        );
    }
    (method, path, query, h, body)
}

#[test]
fn aws_sigv4_test_suite() {
    let cases = parse_suite(include_str!("testdata/sigv4_suite.txt"));
    assert_eq!(cases.len(), 40);
    for case in &cases {
        let (method, path, query, h, body) = parse_request(&case.sections["request"]);
        let mut signed: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        signed.sort_unstable();
        signed.dedup();
        let payload_hash = hex::encode(Sha256::digest(&body));
        let got = sigv4::compute_signature(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830T123600Z",
            "us-east-1",
            "service",
            &CanonicalRequestInput {
                method: &method,
                path: &path,
                query: &query,
                headers: &h,
                signed_headers: &signed,
                payload_hash: &payload_hash,
                normalize_path: case.normalize,
                exclude_param: None,
            },
        );
        if let Some(creq) = case.sections.get("canonical-request") {
            assert_eq!(
                &got.canonical_request, creq,
                "{}: canonical request",
                case.name
            );
        }
        if let Some(sts) = case.sections.get("string-to-sign") {
            assert_eq!(&got.string_to_sign, sts, "{}: string to sign", case.name);
        }
        assert_eq!(
            got.signature, case.sections["signature"],
            "{}: signature",
            case.name
        );
    }
}

// ---------------------------------------------------------------------------
// S3 SigV4 documentation examples ("Signature Calculations for the
// Authorization Header", examplebucket, 20130524T000000Z)

const S3_AKID: &str = "AKIAIOSFODNN7EXAMPLE";
const S3_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const S3_NOW: i64 = 1_369_353_600; // 2013-05-24T00:00:00Z
const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn s3_auth(signed_headers: &str, signature: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={S3_AKID}/20130524/us-east-1/s3/aws4_request,SignedHeaders={signed_headers},Signature={signature}"
    )
}

fn get_object_headers(auth: &str) -> HeaderMap {
    headers(&[
        ("host", "examplebucket.s3.amazonaws.com"),
        ("range", "bytes=0-9"),
        ("x-amz-content-sha256", EMPTY),
        ("x-amz-date", "20130524T000000Z"),
        ("authorization", auth),
    ])
}

const GET_OBJECT_SIG: &str = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";

#[test]
fn s3_get_object_with_range() {
    let h = get_object_headers(&s3_auth(
        "host;range;x-amz-content-sha256;x-amz-date",
        GET_OBJECT_SIG,
    ));
    let creds = store(S3_AKID, S3_SECRET);
    let out =
        run(&Method::GET, "/test.txt", "", &h, at(S3_NOW), &creds).expect("doc example verifies");
    assert_eq!(akid_of(&out), S3_AKID);
    let payload = payload_of(out);
    assert!(matches!(payload, PayloadMode::Sha256(d) if hex::encode(d) == EMPTY));
    assert!(payload.check_sha256(&Sha256::digest(b"").into()).is_ok());
    assert_eq!(
        payload.check_sha256(&Sha256::digest(b"x").into()),
        Err(AuthError::XAmzContentSHA256Mismatch)
    );

    let c = sigv4::compute_signature(
        S3_SECRET,
        "20130524T000000Z",
        "us-east-1",
        "s3",
        &CanonicalRequestInput {
            method: "GET",
            path: "/test.txt",
            query: "",
            headers: &h,
            signed_headers: &["host", "range", "x-amz-content-sha256", "x-amz-date"],
            payload_hash: EMPTY,
            normalize_path: false,
            exclude_param: None,
        },
    );
    assert_eq!(
        c.canonical_request,
        format!(
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n\
             x-amz-content-sha256:{EMPTY}\nx-amz-date:20130524T000000Z\n\n\
             host;range;x-amz-content-sha256;x-amz-date\n{EMPTY}"
        )
    );
    assert_eq!(
        c.string_to_sign,
        "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n\
         7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
    );
    assert_eq!(c.signature, GET_OBJECT_SIG);
}

#[test]
fn s3_put_object() {
    let body = b"Welcome to Amazon S3.";
    let hash = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";
    assert_eq!(hex::encode(Sha256::digest(body)), hash);
    let auth = s3_auth(
        "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
    );
    let h = headers(&[
        ("host", "examplebucket.s3.amazonaws.com"),
        ("date", "Fri, 24 May 2013 00:00:00 GMT"),
        ("authorization", &auth),
        ("x-amz-date", "20130524T000000Z"),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("x-amz-content-sha256", hash),
    ]);
    let creds = store(S3_AKID, S3_SECRET);
    // The `$` may arrive raw or encoded: the canonical URI is `/test%24file.text` either way.
    for path in ["/test$file.text", "/test%24file.text"] {
        let out =
            run(&Method::PUT, path, "", &h, at(S3_NOW), &creds).expect("doc example verifies");
        let payload = payload_of(out);
        assert!(payload.check_sha256(&Sha256::digest(body).into()).is_ok());
        assert!(
            payload
                .check_sha256(&Sha256::digest(b"tampered").into())
                .is_err()
        );
    }
}

#[test]
fn s3_get_bucket_lifecycle_and_list_objects() {
    let creds = store(S3_AKID, S3_SECRET);
    let cases = [
        (
            "lifecycle",
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
            "lifecycle=",
            "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca",
        ),
        (
            "max-keys=2&prefix=J",
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
            "max-keys=2&prefix=J",
            "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7",
        ),
        // Same request, parameters sent in another order.
        (
            "prefix=J&max-keys=2",
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
            "max-keys=2&prefix=J",
            "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7",
        ),
    ];
    for (query, sig, canonical_query, creq_hash) in cases {
        let auth = s3_auth("host;x-amz-content-sha256;x-amz-date", sig);
        let h = headers(&[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-content-sha256", EMPTY),
            ("authorization", &auth),
        ]);
        run(&Method::GET, "/", query, &h, at(S3_NOW), &creds)
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        let c = sigv4::compute_signature(
            S3_SECRET,
            "20130524T000000Z",
            "us-east-1",
            "s3",
            &CanonicalRequestInput {
                method: "GET",
                path: "/",
                query,
                headers: &h,
                signed_headers: &["host", "x-amz-content-sha256", "x-amz-date"],
                payload_hash: EMPTY,
                normalize_path: false,
                exclude_param: None,
            },
        );
        assert_eq!(
            c.canonical_request,
            format!(
                "GET\n/\n{canonical_query}\nhost:examplebucket.s3.amazonaws.com\n\
                 x-amz-content-sha256:{EMPTY}\nx-amz-date:20130524T000000Z\n\n\
                 host;x-amz-content-sha256;x-amz-date\n{EMPTY}"
            )
        );
        assert!(c.string_to_sign.ends_with(creq_hash), "{query}");
        assert_eq!(c.signature, sig);
    }
}

#[test]
fn s3_header_auth_failures() {
    let good = s3_auth("host;range;x-amz-content-sha256;x-amz-date", GET_OBJECT_SIG);
    let creds = store(S3_AKID, S3_SECRET);
    let get = |h: &HeaderMap, now: i64, creds: &dyn CredentialStore| {
        run(&Method::GET, "/test.txt", "", h, at(now), creds)
    };

    // Clock skew: 15 minutes either way is fine, more is not.
    let h = get_object_headers(&good);
    assert!(get(&h, S3_NOW + 15 * 60, &creds).is_ok());
    assert!(get(&h, S3_NOW - 15 * 60, &creds).is_ok());
    assert_eq!(
        get(&h, S3_NOW + 15 * 60 + 1, &creds).unwrap_err(),
        AuthError::RequestTimeTooSkewed
    );
    assert_eq!(
        get(&h, S3_NOW - 16 * 60, &creds).unwrap_err(),
        AuthError::RequestTimeTooSkewed
    );

    // Wrong secret, unknown access key.
    let wrong = store(S3_AKID, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEZ");
    assert_eq!(
        get(&h, S3_NOW, &wrong).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
    let other = store("AKIDOTHER", S3_SECRET);
    assert_eq!(
        get(&h, S3_NOW, &other).unwrap_err(),
        AuthError::InvalidAccessKeyId
    );

    // A tampered signed header, a tampered path, a tampered signature.
    let mut h2 = h.clone();
    h2.insert("range", HeaderValue::from_static("bytes=0-10"));
    assert_eq!(
        get(&h2, S3_NOW, &creds).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
    assert_eq!(
        run(&Method::GET, "/test.txt2", "", &h, at(S3_NOW), &creds).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
    let bad_sig = good.replace("f0e8", "f0e9");
    assert_eq!(
        get(&get_object_headers(&bad_sig), S3_NOW, &creds).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );

    // x-amz-content-sha256 is required for header SigV4.
    let mut h3 = h.clone();
    h3.remove("x-amz-content-sha256");
    let e = get(&h3, S3_NOW, &creds).unwrap_err();
    assert_eq!(
        (e.s3_code(), e.http_status()),
        ("MissingSecurityHeader", 400)
    );
    let mut h4 = h.clone();
    h4.insert("x-amz-content-sha256", HeaderValue::from_static("nonsense"));
    assert_eq!(
        get(&h4, S3_NOW, &creds).unwrap_err().s3_code(),
        "InvalidArgument"
    );

    // An x-amz-* header that is not signed.
    let mut h5 = h.clone();
    h5.insert("x-amz-meta-evil", HeaderValue::from_static("1"));
    let e = get(&h5, S3_NOW, &creds).unwrap_err();
    assert_eq!((e.s3_code(), e.http_status()), ("AccessDenied", 403));

    // Missing date.
    let mut h6 = h.clone();
    h6.remove("x-amz-date");
    assert_eq!(
        get(&h6, S3_NOW, &creds).unwrap_err().s3_code(),
        "AccessDenied"
    );

    // Malformed headers.
    for bad in [
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request",
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/ec2/aws4_request,SignedHeaders=host,Signature=00",
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130525/us-east-1/s3/aws4_request,SignedHeaders=host,Signature=00",
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=range,Signature=00",
        "AWS4-HMAC-SHA256 Credential=x,SignedHeaders=host,Signature=00",
    ] {
        let e = get(&get_object_headers(bad), S3_NOW, &creds).unwrap_err();
        assert_eq!(
            (e.s3_code(), e.http_status()),
            ("AuthorizationHeaderMalformed", 400),
            "{bad}"
        );
    }
    let e = get(&get_object_headers("Bearer abc"), S3_NOW, &creds).unwrap_err();
    assert_eq!(e.s3_code(), "InvalidArgument");

    // Header auth and presigned parameters together.
    let e = run(
        &Method::GET,
        "/test.txt",
        "X-Amz-Algorithm=AWS4-HMAC-SHA256",
        &h,
        at(S3_NOW),
        &creds,
    )
    .unwrap_err();
    assert_eq!(e.s3_code(), "InvalidArgument");

    // No credentials at all.
    let anon = headers(&[("host", "examplebucket.s3.amazonaws.com")]);
    assert!(matches!(
        run(
            &Method::GET,
            "/test.txt",
            "versionId=1",
            &anon,
            at(S3_NOW),
            &creds
        ),
        Ok(AuthOutcome::Anonymous)
    ));
}

// --- presigned SigV4 ("Authenticating Requests: Using Query Parameters") ---

const PRESIGN_QUERY: &str = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

#[test]
fn s3_presigned_url_example() {
    let h = headers(&[("host", "examplebucket.s3.amazonaws.com")]);
    let creds = store(S3_AKID, S3_SECRET);
    let out = run(
        &Method::GET,
        "/test.txt",
        PRESIGN_QUERY,
        &h,
        at(S3_NOW + 3600),
        &creds,
    )
    .expect("doc example");
    assert_eq!(akid_of(&out), S3_AKID);
    assert!(matches!(payload_of(out), PayloadMode::Unsigned));

    let c = sigv4::compute_signature(
        S3_SECRET,
        "20130524T000000Z",
        "us-east-1",
        "s3",
        &CanonicalRequestInput {
            method: "GET",
            path: "/test.txt",
            query: PRESIGN_QUERY,
            headers: &h,
            signed_headers: &["host"],
            payload_hash: "UNSIGNED-PAYLOAD",
            normalize_path: false,
            exclude_param: Some("X-Amz-Signature"),
        },
    );
    assert_eq!(
        c.canonical_request,
        "GET\n/test.txt\nX-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\nhost:examplebucket.s3.amazonaws.com\n\nhost\nUNSIGNED-PAYLOAD"
    );
    assert!(
        c.string_to_sign
            .ends_with("3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04")
    );
    assert_eq!(
        c.signature,
        "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    );

    // Valid until X-Amz-Date + X-Amz-Expires, expired after.
    assert!(
        run(
            &Method::GET,
            "/test.txt",
            PRESIGN_QUERY,
            &h,
            at(S3_NOW + 86_400),
            &creds
        )
        .is_ok()
    );
    let e = run(
        &Method::GET,
        "/test.txt",
        PRESIGN_QUERY,
        &h,
        at(S3_NOW + 86_401),
        &creds,
    )
    .unwrap_err();
    assert_eq!(e, AuthError::AccessDenied("Request has expired".to_owned()));
    assert_eq!((e.s3_code(), e.http_status()), ("AccessDenied", 403));
    // Dated more than 15 minutes in the future.
    let e = run(
        &Method::GET,
        "/test.txt",
        PRESIGN_QUERY,
        &h,
        at(S3_NOW - 16 * 60),
        &creds,
    )
    .unwrap_err();
    assert_eq!(e.s3_code(), "AccessDenied");

    // Wrong secret, unknown key, tampered path, unsigned x-amz header.
    let wrong = store(S3_AKID, "not-the-secret");
    assert_eq!(
        run(
            &Method::GET,
            "/test.txt",
            PRESIGN_QUERY,
            &h,
            at(S3_NOW),
            &wrong
        )
        .unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
    let other = store("AKIDOTHER", S3_SECRET);
    assert_eq!(
        run(
            &Method::GET,
            "/test.txt",
            PRESIGN_QUERY,
            &h,
            at(S3_NOW),
            &other
        )
        .unwrap_err(),
        AuthError::InvalidAccessKeyId
    );
    assert_eq!(
        run(
            &Method::GET,
            "/test.txt2",
            PRESIGN_QUERY,
            &h,
            at(S3_NOW),
            &creds
        )
        .unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
    assert_eq!(
        run(
            &Method::PUT,
            "/test.txt",
            PRESIGN_QUERY,
            &h,
            at(S3_NOW),
            &creds
        )
        .unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
    let mut h2 = h.clone();
    h2.insert(
        "x-amz-copy-source",
        HeaderValue::from_static("/other/secret"),
    );
    assert_eq!(
        run(
            &Method::PUT,
            "/test.txt",
            PRESIGN_QUERY,
            &h2,
            at(S3_NOW),
            &creds
        )
        .unwrap_err()
        .s3_code(),
        "AccessDenied"
    );
}

#[test]
fn s3_presigned_parameter_errors() {
    let h = headers(&[("host", "examplebucket.s3.amazonaws.com")]);
    let creds = store(S3_AKID, S3_SECRET);
    let q = |expires: &str| {
        PRESIGN_QUERY.replace("X-Amz-Expires=86400", &format!("X-Amz-Expires={expires}"))
    };
    for expires in ["604801", "0", "-1", "abc", ""] {
        let e = run(
            &Method::GET,
            "/test.txt",
            &q(expires),
            &h,
            at(S3_NOW),
            &creds,
        )
        .unwrap_err();
        assert_eq!(
            (e.s3_code(), e.http_status()),
            ("AuthorizationQueryParametersError", 400),
            "X-Amz-Expires={expires}"
        );
    }
    // 604800 is allowed (the signature then no longer matches the doc example).
    let e = run(
        &Method::GET,
        "/test.txt",
        &q("604800"),
        &h,
        at(S3_NOW),
        &creds,
    )
    .unwrap_err();
    assert_eq!(e, AuthError::SignatureDoesNotMatch);

    let missing = PRESIGN_QUERY.replace("&X-Amz-SignedHeaders=host", "");
    let e = run(&Method::GET, "/test.txt", &missing, &h, at(S3_NOW), &creds).unwrap_err();
    assert_eq!(e.s3_code(), "AuthorizationQueryParametersError");
    let bad_algo = PRESIGN_QUERY.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1");
    let e = run(&Method::GET, "/test.txt", &bad_algo, &h, at(S3_NOW), &creds).unwrap_err();
    assert_eq!(e.s3_code(), "AuthorizationQueryParametersError");
    let dup = format!("{PRESIGN_QUERY}&X-Amz-Date=20130524T000000Z");
    let e = run(&Method::GET, "/test.txt", &dup, &h, at(S3_NOW), &creds).unwrap_err();
    assert_eq!(e.s3_code(), "AuthorizationQueryParametersError");
}

// --- chunked upload ("Transferring Payload in Multiple Chunks") ---

const SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
const CHUNK_SIGS: [&str; 3] = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
];

fn chunked_example_headers() -> HeaderMap {
    let auth = s3_auth(
        "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class",
        SEED,
    );
    headers(&[
        ("host", "s3.amazonaws.com"),
        ("x-amz-date", "20130524T000000Z"),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("authorization", &auth),
        ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", "66560"),
        ("content-length", "66824"),
    ])
}

fn chunked_example_body(sigs: [&str; 3]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(format!("10000;chunk-signature={}\r\n", sigs[0]).as_bytes());
    body.extend_from_slice(&[b'a'; 65536]);
    body.extend_from_slice(b"\r\n");
    body.extend_from_slice(format!("400;chunk-signature={}\r\n", sigs[1]).as_bytes());
    body.extend_from_slice(&[b'a'; 1024]);
    body.extend_from_slice(b"\r\n");
    body.extend_from_slice(format!("0;chunk-signature={}\r\n\r\n", sigs[2]).as_bytes());
    body
}

fn streaming_ctx(h: &HeaderMap) -> PayloadMode {
    let creds = store(S3_AKID, S3_SECRET);
    let out = run(
        &Method::PUT,
        "/examplebucket/chunkObject.txt",
        "",
        h,
        at(S3_NOW),
        &creds,
    )
    .expect("seed signature");
    payload_of(out)
}

#[test]
fn s3_chunked_upload_example() {
    let h = chunked_example_headers();
    let mode = streaming_ctx(&h);
    let PayloadMode::StreamingSigned(ctx) = &mode else {
        panic!("expected StreamingSigned, got {mode:?}");
    };
    assert_eq!(ctx.seed_signature(), SEED);
    assert!(!ctx.expects_signed_trailer());
    assert!(mode.is_aws_chunked());
    // The documented chunk signature chain.
    let mut prev = SEED.to_owned();
    for (data, expected) in [
        (vec![b'a'; 65536], CHUNK_SIGS[0]),
        (vec![b'a'; 1024], CHUNK_SIGS[1]),
        (vec![], CHUNK_SIGS[2]),
    ] {
        let sig = hex::encode(ctx.chunk_signature(&prev, &data));
        assert_eq!(sig, expected);
        prev = sig;
    }

    let body = chunked_example_body(CHUNK_SIGS);
    assert_eq!(body.len(), 66824);
    // Whatever the transport's framing, the decoded bytes are the same.
    for piece in [body.len(), 65536, 4096, 97, 7, 1] {
        let (stream, trailers) = decode_body(body_of(split(&body, piece)), &mode, &h);
        assert!(trailers.get().is_none());
        let (data, err) = drain(stream);
        assert!(err.is_none(), "piece {piece}: {err:?}");
        assert_eq!(data.len(), 66560);
        assert!(data.iter().all(|&b| b == b'a'));
        assert_eq!(trailers.get().map(|t| t.len()), Some(0));
    }
    // The Debug of the mode does not print the signing key.
    let dbg = format!("{mode:?}");
    assert!(dbg.contains("<redacted>") && dbg.contains(SEED));
}

#[test]
fn s3_chunked_upload_example_tampering() {
    let h = chunked_example_headers();
    let mode = streaming_ctx(&h);
    let body = chunked_example_body(CHUNK_SIGS);

    // A flipped byte in the second chunk: the first chunk is delivered, none
    // of the second.
    let mut bad = body.clone();
    let second_data = body.len() - 86 - 2 - 1024;
    bad[second_data + 10] = b'b';
    let (data, err) = drain(decode_body(body_of(split(&bad, 5000)), &mode, &h).0);
    assert_eq!(err, Some(AuthError::SignatureDoesNotMatch));
    assert_eq!(data.len(), 65536);

    // A flipped byte in the first chunk: nothing is delivered.
    let mut bad = body.clone();
    bad[200] = b'b';
    let (data, err) = drain(decode_body(body_of(vec![bad]), &mode, &h).0);
    assert_eq!(err, Some(AuthError::SignatureDoesNotMatch));
    assert!(data.is_empty());

    // A wrong signature on the final chunk.
    let bad = chunked_example_body([CHUNK_SIGS[0], CHUNK_SIGS[1], SEED]);
    let (data, err) = drain(decode_body(body_of(vec![bad]), &mode, &h).0);
    assert_eq!(err, Some(AuthError::SignatureDoesNotMatch));
    assert_eq!(data.len(), 66560);

    // Chunks swapped in order fail (the chain binds the order).
    let bad = chunked_example_body([CHUNK_SIGS[1], CHUNK_SIGS[0], CHUNK_SIGS[2]]);
    let (data, err) = drain(decode_body(body_of(vec![bad]), &mode, &h).0);
    assert_eq!(err, Some(AuthError::SignatureDoesNotMatch));
    assert!(data.is_empty());

    // The same body under another secret.
    let creds = store(S3_AKID, "another secret");
    let e = run(
        &Method::PUT,
        "/examplebucket/chunkObject.txt",
        "",
        &h,
        at(S3_NOW),
        &creds,
    )
    .unwrap_err();
    assert_eq!(e, AuthError::SignatureDoesNotMatch);

    // Truncated: mid-chunk, between chunks, before the final chunk's CRLF.
    for cut in [10, 30_000, 65_626, 66_738, body.len() - 1] {
        let (_, err) = drain(decode_body(body_of(vec![body[..cut].to_vec()]), &mode, &h).0);
        assert_eq!(err, Some(AuthError::IncompleteBody), "cut at {cut}");
    }
    // Extra bytes after the end.
    let mut extra = body.clone();
    extra.extend_from_slice(b"x");
    let (_, err) = drain(decode_body(body_of(vec![extra]), &mode, &h).0);
    assert_eq!(err.map(|e| e.s3_code()), Some("InvalidRequest"));

    // The declared decoded length is enforced both ways.
    let mut shorter = h.clone();
    shorter.insert(
        "x-amz-decoded-content-length",
        HeaderValue::from_static("66000"),
    );
    let (data, err) = drain(decode_body(body_of(vec![body.clone()]), &mode, &shorter).0);
    assert_eq!(err.map(|e| e.s3_code()), Some("InvalidRequest"));
    assert_eq!(
        data.len(),
        65536,
        "the chunk that overflows the declared length is not delivered"
    );
    let mut longer = h.clone();
    longer.insert(
        "x-amz-decoded-content-length",
        HeaderValue::from_static("70000"),
    );
    let (_, err) = drain(decode_body(body_of(vec![body.clone()]), &mode, &longer).0);
    assert_eq!(err, Some(AuthError::IncompleteBody));
    let mut garbage = h.clone();
    garbage.insert(
        "x-amz-decoded-content-length",
        HeaderValue::from_static("12x"),
    );
    let (_, err) = drain(decode_body(body_of(vec![body]), &mode, &garbage).0);
    assert_eq!(err.map(|e| e.s3_code()), Some("InvalidArgument"));
}

// --- chunked upload with a signed trailer ("Including Trailing Headers") ---

#[test]
fn s3_chunked_upload_with_trailer_example() {
    let auth = s3_auth(
        "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer",
        "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
    );
    let h = headers(&[
        ("host", "s3.amazonaws.com"),
        ("x-amz-date", "20130524T000000Z"),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("authorization", &auth),
        (
            "x-amz-content-sha256",
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        ),
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", "66560"),
        ("x-amz-trailer", "x-amz-checksum-crc32c"),
        ("content-length", "66946"),
    ]);
    let mode = streaming_ctx(&h);
    let PayloadMode::StreamingSigned(ctx) = &mode else {
        panic!("expected StreamingSigned");
    };
    assert!(ctx.expects_signed_trailer());
    let body = |crc: &str, trailer_sig: &str| {
        let mut b = Vec::new();
        b.extend_from_slice(b"10000;chunk-signature=b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2\r\n");
        b.extend_from_slice(&[b'a'; 65536]);
        b.extend_from_slice(b"\r\n400;chunk-signature=1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7\r\n");
        b.extend_from_slice(&[b'a'; 1024]);
        b.extend_from_slice(b"\r\n0;chunk-signature=2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992\r\n");
        b.extend_from_slice(format!("x-amz-checksum-crc32c:{crc}\r\n").as_bytes());
        b.extend_from_slice(format!("x-amz-trailer-signature:{trailer_sig}\r\n\r\n").as_bytes());
        b
    };
    const TRAILER_SIG: &str = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435";
    let good = body("sOO8/Q==", TRAILER_SIG);
    assert_eq!(good.len(), 66946);
    for piece in [good.len(), 1000, 3] {
        let (stream, trailers) = decode_body(body_of(split(&good, piece)), &mode, &h);
        let (data, err) = drain(stream);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(data.len(), 66560);
        let t = trailers.get().expect("trailers after the end");
        assert_eq!(
            t.get("x-amz-checksum-crc32c").map(|v| v.as_bytes()),
            Some(&b"sOO8/Q=="[..])
        );
        assert!(t.get("x-amz-trailer-signature").is_none());
    }
    // Tampered trailer value, tampered trailer signature, missing trailer signature.
    for bad in [body("AAAAAA==", TRAILER_SIG), body("sOO8/Q==", SEED)] {
        let (stream, trailers) = decode_body(body_of(vec![bad]), &mode, &h);
        let (data, err) = drain(stream);
        assert_eq!(err, Some(AuthError::SignatureDoesNotMatch));
        assert_eq!(data.len(), 66560);
        assert!(trailers.get().is_none());
    }
    let mut no_sig = good[..good.len() - 2 - 90].to_vec();
    no_sig.extend_from_slice(b"\r\n");
    let (_, err) = drain(decode_body(body_of(vec![no_sig]), &mode, &h).0);
    assert_eq!(err.map(|e| e.s3_code()), Some("MalformedTrailerError"));
}

// ---------------------------------------------------------------------------
// aws-chunked round trips with this module's own signer

fn test_ctx(trailer: bool) -> StreamingSigned {
    let key = sigv4::signing_key("test-secret", "20240102", "eu-west-1", "s3");
    StreamingSigned::new(
        key,
        "a".repeat(64),
        "20240102/eu-west-1/s3/aws4_request".to_owned(),
        "20240102T030405Z".to_owned(),
        trailer,
    )
}

/// Encodes `data` as a signed aws-chunked body with the given chunk sizes
/// (cycled), plus an optional signed trailer.
fn encode_signed(
    ctx: &StreamingSigned,
    data: &[u8],
    sizes: &[usize],
    trailers: Option<&[(&str, &str)]>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut prev = ctx.seed_signature().to_owned();
    let mut pos = 0;
    let mut i = 0;
    while pos < data.len() {
        let n = sizes[i % sizes.len()].min(data.len() - pos);
        i += 1;
        let piece = &data[pos..pos + n];
        pos += n;
        let sig = hex::encode(ctx.chunk_signature(&prev, piece));
        out.extend_from_slice(format!("{n:x};chunk-signature={sig}\r\n").as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
        prev = sig;
    }
    let sig = hex::encode(ctx.chunk_signature(&prev, b""));
    out.extend_from_slice(format!("0;chunk-signature={sig}\r\n").as_bytes());
    prev = sig;
    if let Some(trailers) = trailers {
        let mut signed = Vec::new();
        for (k, v) in trailers {
            out.extend_from_slice(format!("{k}:{v}\r\n").as_bytes());
            signed.extend_from_slice(format!("{k}:{v}\n").as_bytes());
        }
        let tsig = hex::encode(ctx.trailer_signature(&prev, &signed));
        out.extend_from_slice(format!("x-amz-trailer-signature:{tsig}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn encode_unsigned(
    data: &[u8],
    chunk: usize,
    trailers: &[(&str, &str)],
    final_crlf: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in data.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    for (k, v) in trailers {
        out.extend_from_slice(format!("{k}:{v}\r\n").as_bytes());
    }
    if final_crlf {
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn sample(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

fn with_len(n: usize, extra: &[(&str, &str)]) -> HeaderMap {
    let len = n.to_string();
    let mut pairs = vec![("x-amz-decoded-content-length", len.as_str())];
    pairs.extend_from_slice(extra);
    headers(&pairs)
}

#[test]
fn signed_round_trips() {
    let ctx = test_ctx(false);
    let mode = PayloadMode::StreamingSigned(ctx.clone());
    for (n, sizes) in [
        (0usize, vec![8192usize]),
        (1, vec![1]),
        (100_000, vec![8192]),
        (70_001, vec![65_536, 3, 1000]),
    ] {
        let data = sample(n);
        let body = encode_signed(&ctx, &data, &sizes, None);
        for piece in [body.len().max(1), 8191, 13] {
            let (out, err) =
                drain(decode_body(body_of(split(&body, piece)), &mode, &with_len(n, &[])).0);
            assert!(err.is_none(), "n={n} piece={piece}: {err:?}");
            assert!(out == data, "decoded bytes differ from the original");
        }
        // Without x-amz-decoded-content-length the length is not checked.
        let (out, err) = drain(decode_body(body_of(vec![body]), &mode, &HeaderMap::new()).0);
        assert!(err.is_none());
        assert!(out == data, "decoded bytes differ from the original");
    }

    // Signed trailer.
    let ctx = test_ctx(true);
    let mode = PayloadMode::StreamingSigned(ctx.clone());
    let data = sample(50_000);
    let t = [
        ("x-amz-checksum-crc32", "AAAAAA=="),
        ("x-amz-checksum-sha256", "abc="),
    ];
    let body = encode_signed(&ctx, &data, &[16_384], Some(&t));
    let h = with_len(
        data.len(),
        &[(
            "x-amz-trailer",
            "x-amz-checksum-crc32, x-amz-checksum-sha256",
        )],
    );
    let (stream, trailers) = decode_body(body_of(split(&body, 999)), &mode, &h);
    let (out, err) = drain(stream);
    assert!(err.is_none(), "{err:?}");
    assert!(out == data, "decoded bytes differ from the original");
    let got = trailers.get().expect("trailers");
    assert_eq!(
        got.get("x-amz-checksum-crc32").map(|v| v.as_bytes()),
        Some(&b"AAAAAA=="[..])
    );
    assert_eq!(
        got.get("x-amz-checksum-sha256").map(|v| v.as_bytes()),
        Some(&b"abc="[..])
    );

    // A trailer that was not announced, and an announced one that is missing.
    let h2 = with_len(data.len(), &[("x-amz-trailer", "x-amz-checksum-crc32")]);
    let (_, err) = drain(decode_body(body_of(vec![body.clone()]), &mode, &h2).0);
    assert_eq!(err.map(|e| e.s3_code()), Some("MalformedTrailerError"));
    let h3 = with_len(
        data.len(),
        &[(
            "x-amz-trailer",
            "x-amz-checksum-crc32,x-amz-checksum-sha256,x-amz-checksum-crc64nvme",
        )],
    );
    let (_, err) = drain(decode_body(body_of(vec![body]), &mode, &h3).0);
    assert_eq!(err.map(|e| e.s3_code()), Some("MalformedTrailerError"));
}

#[test]
fn signed_chunk_framing_errors() {
    let ctx = test_ctx(false);
    let mode = PayloadMode::StreamingSigned(ctx.clone());
    let data = sample(20_000);
    let body = encode_signed(&ctx, &data, &[8192], None);
    let h = with_len(data.len(), &[]);
    let code = |body: Vec<u8>| drain(decode_body(body_of(vec![body]), &mode, &h).0);

    // Tampered chunk signature (still well-formed hex).
    let text = String::from_utf8_lossy(&body).into_owned();
    let first_sig_at = text.find("chunk-signature=").expect("sig") + 16;
    let mut bad = body.clone();
    bad[first_sig_at] = if bad[first_sig_at] == b'0' {
        b'1'
    } else {
        b'0'
    };
    assert_eq!(code(bad), (vec![], Some(AuthError::SignatureDoesNotMatch)));

    // Missing / malformed chunk-signature extension.
    let mut bad = b"2000\r\n".to_vec();
    bad.extend_from_slice(&body[body.iter().position(|&b| b == b'\n').expect("line") + 1..]);
    let (out, err) = code(bad);
    assert!(out.is_empty());
    assert_eq!(err.map(|e| e.s3_code()), Some("InvalidRequest"));

    // Non-hex, signed, empty and over-long chunk sizes.
    for line in [
        "zz;chunk-signature=",
        "+10;chunk-signature=",
        ";chunk-signature=",
        "00000000000000000001;chunk-signature=",
    ] {
        let mut bad = line.as_bytes().to_vec();
        bad.extend_from_slice(&[b'0'; 64]);
        bad.extend_from_slice(b"\r\n");
        let (out, err) = code(bad);
        assert!(out.is_empty());
        assert_eq!(
            err.map(|e| e.s3_code()),
            Some("InvalidChunkSizeError"),
            "{line}"
        );
    }
    // A chunk larger than the limit is refused before its data is buffered.
    let mut bad = format!("{:x};chunk-signature=", MAX_CHUNK_SIZE + 1).into_bytes();
    bad.extend_from_slice(&[b'0'; 64]);
    bad.extend_from_slice(b"\r\n");
    assert_eq!(
        code(bad).1.map(|e| e.s3_code()),
        Some("InvalidChunkSizeError")
    );

    // Bare LF line ending, chunk longer than declared.
    let bad = String::from_utf8_lossy(&body)
        .replacen("\r\n", "\n", 1)
        .into_bytes();
    assert_eq!(code(bad).1.map(|e| e.s3_code()), Some("InvalidRequest"));
    let mut bad = body.clone();
    let data_start = body.iter().position(|&b| b == b'\n').expect("line") + 1;
    bad.insert(data_start + 8192, b'x');
    let (out, err) = code(bad);
    assert!(out.is_empty());
    assert_eq!(err.map(|e| e.s3_code()), Some("InvalidRequest"));
}

#[test]
fn endless_chunk_size_line_is_rejected_without_buffering_forever() {
    let ctx = test_ctx(false);
    let mode = PayloadMode::StreamingSigned(ctx);
    // An endless stream of hex digits and no line end: must fail after at
    // most MAX_LINE bytes instead of reading forever.
    let endless: ByteStream = Box::pin(futures::stream::repeat_with(|| {
        Ok(Bytes::from_static(b"ffffffff"))
    }));
    let (out, err) = drain(decode_body(endless, &mode, &HeaderMap::new()).0);
    assert!(out.is_empty());
    assert_eq!(err.map(|e| e.s3_code()), Some("InvalidChunkSizeError"));

    // Same for an endless trailer line.
    let mode = PayloadMode::StreamingUnsignedTrailer;
    let head: ByteStream = Box::pin(
        futures::stream::iter([Ok(Bytes::from_static(b"0\r\nx-amz-checksum-crc32:"))]).chain(
            futures::stream::repeat_with(|| Ok(Bytes::from_static(b"AAAA"))),
        ),
    );
    let (_, err) = drain(decode_body(head, &mode, &HeaderMap::new()).0);
    assert_eq!(err.map(|e| e.s3_code()), Some("MalformedTrailerError"));
}

#[test]
fn unsigned_trailer_round_trips() {
    let mode = PayloadMode::StreamingUnsignedTrailer;
    let data = sample(100_000);
    let t = [("x-amz-checksum-crc32", "sOO8/Q==")];
    let h = with_len(data.len(), &[("x-amz-trailer", "x-amz-checksum-crc32")]);
    for final_crlf in [true, false] {
        let body = encode_unsigned(&data, 65_536, &t, final_crlf);
        for piece in [body.len(), 4096, 5] {
            let (stream, trailers) = decode_body(body_of(split(&body, piece)), &mode, &h);
            let (out, err) = drain(stream);
            assert!(err.is_none(), "{err:?}");
            assert!(out == data, "decoded bytes differ from the original");
            let got = trailers.get().expect("trailers");
            assert_eq!(
                got.get("x-amz-checksum-crc32").map(|v| v.as_bytes()),
                Some(&b"sOO8/Q=="[..])
            );
        }
    }
    // Chunk extensions are ignored in unsigned mode; empty body.
    let (out, err) = drain(
        decode_body(
            body_of(vec![
                b"3;ext=1\r\nabc\r\n0\r\nx-amz-checksum-crc32:x\r\n\r\n".to_vec(),
            ]),
            &mode,
            &with_len(3, &[]),
        )
        .0,
    );
    assert!(err.is_none());
    assert_eq!(out, b"abc");

    let body = encode_unsigned(&data, 65_536, &t, true);
    // Missing announced trailer, unannounced trailer, malformed trailer line.
    for (bad_body, h2) in [
        (encode_unsigned(&data, 65_536, &[], true), h.clone()),
        (
            encode_unsigned(
                &data,
                65_536,
                &[("x-amz-checksum-crc32", "a"), ("x-amz-meta-x", "b")],
                true,
            ),
            h.clone(),
        ),
        (
            {
                let mut b = encode_unsigned(&data, 65_536, &[], false);
                b.extend_from_slice(b"no colon here\r\n\r\n");
                b
            },
            h.clone(),
        ),
    ] {
        let (stream, trailers) = decode_body(body_of(vec![bad_body]), &mode, &h2);
        let (out, err) = drain(stream);
        assert!(out == data, "all payload bytes precede the trailer");
        assert_eq!(err.map(|e| e.s3_code()), Some("MalformedTrailerError"));
        assert!(trailers.get().is_none());
    }
    // Truncation inside the data and inside a trailer line; a wrong length.
    for cut in [50_000, body.len() - 6] {
        let (_, err) = drain(decode_body(body_of(vec![body[..cut].to_vec()]), &mode, &h).0);
        assert_eq!(err, Some(AuthError::IncompleteBody), "cut {cut}");
    }
    let (_, err) =
        drain(decode_body(body_of(vec![body.clone()]), &mode, &with_len(100_001, &[])).0);
    assert_eq!(err, Some(AuthError::IncompleteBody));
    let (out, err) = drain(decode_body(body_of(vec![body]), &mode, &with_len(99_999, &[])).0);
    assert_eq!(err.map(|e| e.s3_code()), Some("InvalidRequest"));
    assert_eq!(out.len(), 65_536);
}

#[test]
fn other_modes_pass_the_body_through() {
    for mode in [PayloadMode::Unsigned, PayloadMode::Sha256([0; 32])] {
        let (stream, trailers) = decode_body(
            body_of(vec![b"5\r\nhello".to_vec()]),
            &mode,
            &HeaderMap::new(),
        );
        let (out, err) = drain(stream);
        assert!(err.is_none());
        assert_eq!(out, b"5\r\nhello");
        assert!(trailers.get().is_none());
    }
}

#[test]
fn transport_errors_pass_through() {
    let mode = PayloadMode::StreamingUnsignedTrailer;
    let body: ByteStream = Box::pin(futures::stream::iter([
        Ok(Bytes::from_static(b"5\r\nhel")),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        )),
    ]));
    let items: Vec<_> = block_on(decode_body(body, &mode, &HeaderMap::new()).0.collect());
    assert_eq!(items.len(), 2);
    assert!(matches!(&items[0], Ok(b) if b.as_ref() == b"hel"));
    assert!(matches!(&items[1], Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset));
}

// ---------------------------------------------------------------------------
// SigV2 ("Signing and Authenticating REST Requests")

fn v2_creds() -> HashMap<String, SecretKey> {
    store(S3_AKID, S3_SECRET)
}

fn v2_at(date: &str) -> OffsetDateTime {
    OffsetDateTime::parse(date, &time::format_description::well_known::Rfc2822).expect("date")
}

#[test]
fn sigv2_documentation_examples() {
    // (method, path, query, extra headers, Date, signature)
    type V2Case<'a> = (
        Method,
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        &'a str,
        &'a str,
    );
    let cases: Vec<V2Case<'_>> = vec![
        (
            Method::GET,
            "/awsexamplebucket1/photos/puppy.jpg",
            "",
            vec![],
            "Tue, 27 Mar 2007 19:36:42 +0000",
            "qgk2+6Sv9/oM7G3qLEjTH1a1l1g=",
        ),
        (
            Method::PUT,
            "/awsexamplebucket1/photos/puppy.jpg",
            "",
            vec![("content-type", "image/jpeg"), ("content-length", "94328")],
            "Tue, 27 Mar 2007 21:15:45 +0000",
            "iqRzw+ileNPu1fhspnRs8nOjjIA=",
        ),
        (
            Method::GET,
            "/awsexamplebucket1/",
            "prefix=photos&max-keys=50&marker=puppy",
            vec![("user-agent", "Mozilla/5.0")],
            "Tue, 27 Mar 2007 19:42:41 +0000",
            "m0WP8eCtspQl5Ahe6L1SozdX9YA=",
        ),
        (
            Method::GET,
            "/awsexamplebucket1/",
            "acl",
            vec![],
            "Tue, 27 Mar 2007 19:44:46 +0000",
            "82ZHiFIjc+WbcwFKGUVEQspPn+0=",
        ),
        (
            Method::PUT,
            "/static.example.com/db-backup.dat.gz",
            "",
            vec![
                ("user-agent", "curl/7.15.5"),
                ("x-amz-acl", "public-read"),
                ("content-type", "application/x-download"),
                ("content-md5", "4gJE4saaMU4BqNR0kLY+lw=="),
                ("x-amz-meta-reviewedby", "joe@example.com"),
                ("x-amz-meta-reviewedby", "jane@example.com"),
                ("x-amz-meta-filechecksum", "0x02661779"),
                ("x-amz-meta-checksumalgorithm", "crc32"),
                ("content-disposition", "attachment; filename=database.dat"),
                ("content-encoding", "gzip"),
                ("content-length", "5913339"),
            ],
            "Tue, 27 Mar 2007 21:06:08 +0000",
            "jtBQa0Aq+DkULFI8qrpwIjGEx0E=",
        ),
        (
            Method::GET,
            "/",
            "",
            vec![],
            "Wed, 28 Mar 2007 01:29:59 +0000",
            "qGdzdERIC03wnaRNKh6OqZehG9s=",
        ),
        (
            Method::GET,
            "/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re",
            "",
            vec![],
            "Wed, 28 Mar 2007 01:49:49 +0000",
            "DNEZGsoieTZ92F3bUfSPQcbGmlM=",
        ),
        // The same resource with the escapes in uppercase: SigV2 signs the
        // path exactly as sent, so the signature differs.
        (
            Method::GET,
            "/dictionary/fran%C3%A7ais/pr%C3%A9f%C3%A8re",
            "",
            vec![],
            "Wed, 28 Mar 2007 01:49:49 +0000",
            "81VEw/Bc3GDt/k65Xrrk3AdfI4c=",
        ),
    ];
    let creds = v2_creds();
    for (method, path, query, extra, date, sig) in cases {
        let auth = format!("AWS {S3_AKID}:{sig}");
        let mut pairs = vec![
            ("host", "example.com"),
            ("date", date),
            ("authorization", auth.as_str()),
        ];
        pairs.extend(extra);
        let h = headers(&pairs);
        let now = v2_at(date);
        let out = run(&method, path, query, &h, now, &creds)
            .unwrap_or_else(|e| panic!("{path}?{query}: {e}"));
        assert_eq!(akid_of(&out), S3_AKID);
        assert!(matches!(payload_of(out), PayloadMode::Unsigned));
        // Skew, wrong secret, unknown key.
        assert_eq!(
            run(
                &method,
                path,
                query,
                &h,
                now + time::Duration::minutes(16),
                &creds
            )
            .unwrap_err(),
            AuthError::RequestTimeTooSkewed
        );
        assert_eq!(
            run(&method, path, query, &h, now, &store(S3_AKID, "nope")).unwrap_err(),
            AuthError::SignatureDoesNotMatch
        );
        assert_eq!(
            run(&method, path, query, &h, now, &store("OTHER", S3_SECRET)).unwrap_err(),
            AuthError::InvalidAccessKeyId
        );
    }

    // The upload example's string to sign (canonicalized x-amz-* headers).
    let h = headers(&[
        ("x-amz-acl", "public-read"),
        ("content-type", "application/x-download"),
        ("content-md5", "4gJE4saaMU4BqNR0kLY+lw=="),
        ("x-amz-meta-reviewedby", "joe@example.com"),
        ("x-amz-meta-reviewedby", "jane@example.com"),
        ("x-amz-meta-filechecksum", "0x02661779"),
        ("x-amz-meta-checksumalgorithm", "crc32"),
    ]);
    let sts = sigv2::string_to_sign(
        "PUT",
        "/static.example.com/db-backup.dat.gz",
        "",
        &h,
        "Tue, 27 Mar 2007 21:06:08 +0000",
    );
    assert_eq!(
        String::from_utf8_lossy(&sts),
        "PUT\n4gJE4saaMU4BqNR0kLY+lw==\napplication/x-download\nTue, 27 Mar 2007 21:06:08 +0000\n\
         x-amz-acl:public-read\nx-amz-meta-checksumalgorithm:crc32\nx-amz-meta-filechecksum:0x02661779\n\
         x-amz-meta-reviewedby:joe@example.com,jane@example.com\n/static.example.com/db-backup.dat.gz"
    );
    // With x-amz-date the Date line is empty and x-amz-date is canonicalized;
    // only sub-resources count in the resource, sorted.
    let h = headers(&[("x-amz-date", "Tue, 27 Mar 2007 21:20:26 +0000")]);
    let sts = sigv2::string_to_sign("DELETE", "/bucket/key", "versionId=3&foo=1&acl", &h, "");
    assert_eq!(
        String::from_utf8_lossy(&sts),
        "DELETE\n\n\n\nx-amz-date:Tue, 27 Mar 2007 21:20:26 +0000\n/bucket/key?acl&versionId=3"
    );
    let sts = sigv2::string_to_sign(
        "GET",
        "/b/o",
        "response-content-type=image/svg%2Bxml",
        &HeaderMap::new(),
        "1",
    );
    assert!(String::from_utf8_lossy(&sts).ends_with("/b/o?response-content-type=image/svg+xml"));
}

#[test]
fn sigv2_virtual_hosted_style() {
    // The documentation's GET example as sent to awsexamplebucket1.s3.us-west-1.amazonaws.com.
    let date = "Tue, 27 Mar 2007 19:36:42 +0000";
    let h = headers(&[
        ("host", "awsexamplebucket1.s3.us-west-1.amazonaws.com"),
        ("date", date),
        (
            "authorization",
            "AWS AKIAIOSFODNN7EXAMPLE:qgk2+6Sv9/oM7G3qLEjTH1a1l1g=",
        ),
    ]);
    let req = AuthRequest {
        method: &Method::GET,
        path: "/photos/puppy.jpg",
        query: "",
        headers: &h,
        now: v2_at(date),
        region: None,
    };
    let out = authenticate_virtual_hosted(&req, "awsexamplebucket1", &v2_creds())
        .expect("virtual-hosted v2");
    assert_eq!(akid_of(&out), S3_AKID);
    assert_eq!(
        authenticate(&req, &v2_creds()).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
    // The bucket root: "/" + bucket + "/".
    let h = headers(&[
        ("date", "Tue, 27 Mar 2007 19:44:46 +0000"),
        (
            "authorization",
            "AWS AKIAIOSFODNN7EXAMPLE:82ZHiFIjc+WbcwFKGUVEQspPn+0=",
        ),
    ]);
    let req = AuthRequest {
        method: &Method::GET,
        path: "/",
        query: "acl",
        headers: &h,
        now: v2_at("Tue, 27 Mar 2007 19:44:46 +0000"),
        region: None,
    };
    assert!(authenticate_virtual_hosted(&req, "awsexamplebucket1", &v2_creds()).is_ok());
    // SigV4 is unaffected by the bucket argument.
    let h = get_object_headers(&s3_auth(
        "host;range;x-amz-content-sha256;x-amz-date",
        GET_OBJECT_SIG,
    ));
    let req = AuthRequest {
        method: &Method::GET,
        path: "/test.txt",
        query: "",
        headers: &h,
        now: at(S3_NOW),
        region: None,
    };
    assert!(authenticate_virtual_hosted(&req, "examplebucket", &store(S3_AKID, S3_SECRET)).is_ok());
}

#[test]
fn sigv2_x_amz_date_header_auth() {
    let date = "Tue, 27 Mar 2007 21:20:26 +0000";
    let h0 = headers(&[("x-amz-date", date), ("date", "ignored")]);
    let sts = sigv2::string_to_sign("DELETE", "/johnsmith/photos/puppy.jpg", "", &h0, "");
    let sig = sigv2::sign(S3_SECRET, &sts);
    let auth = format!("AWS {S3_AKID}:{sig}");
    let h = headers(&[
        ("x-amz-date", date),
        ("date", "ignored"),
        ("authorization", &auth),
    ]);
    let out = run(
        &Method::DELETE,
        "/johnsmith/photos/puppy.jpg",
        "",
        &h,
        v2_at(date),
        &v2_creds(),
    );
    assert!(out.is_ok(), "{out:?}");
    let h = headers(&[("authorization", &auth)]);
    let e = run(
        &Method::DELETE,
        "/johnsmith/photos/puppy.jpg",
        "",
        &h,
        v2_at(date),
        &v2_creds(),
    )
    .unwrap_err();
    assert_eq!(e.s3_code(), "AccessDenied");
    let h = headers(&[("authorization", "AWS nocolon"), ("date", date)]);
    let e = run(&Method::DELETE, "/x", "", &h, v2_at(date), &v2_creds()).unwrap_err();
    assert_eq!(e.s3_code(), "InvalidArgument");
}

#[test]
fn sigv2_query_string_example() {
    // The documentation's query-string example, with its original bucket name
    // (the published signature predates the renaming of "johnsmith").
    let query = "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1175139620&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D";
    let h = headers(&[("host", "johnsmith.s3.amazonaws.com")]);
    let creds = v2_creds();
    let path = "/johnsmith/photos/puppy.jpg";
    let out = run(
        &Method::GET,
        path,
        query,
        &h,
        at(1_175_139_620 - 1800),
        &creds,
    )
    .expect("doc example");
    assert_eq!(akid_of(&out), S3_AKID);
    assert!(run(&Method::GET, path, query, &h, at(1_175_139_620), &creds).is_ok());
    let e = run(&Method::GET, path, query, &h, at(1_175_139_621), &creds).unwrap_err();
    assert_eq!(e, AuthError::AccessDenied("Request has expired".to_owned()));
    // A '+' left unencoded in the signature still means '+'.
    let raw_plus = query.replace("%2B", "+");
    assert!(run(&Method::GET, path, &raw_plus, &h, at(1_175_139_620), &creds).is_ok());
    // Tampering, unknown key, missing parameter.
    assert_eq!(
        run(
            &Method::GET,
            "/johnsmith/photos/kitten.jpg",
            query,
            &h,
            at(1_175_139_620),
            &creds
        )
        .unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
    assert_eq!(
        run(
            &Method::GET,
            path,
            query,
            &h,
            at(1_175_139_620),
            &store("X", S3_SECRET)
        )
        .unwrap_err(),
        AuthError::InvalidAccessKeyId
    );
    let e = run(
        &Method::GET,
        path,
        "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1175139620",
        &h,
        at(0),
        &creds,
    )
    .unwrap_err();
    assert_eq!(e.s3_code(), "AccessDenied");
}

// ---------------------------------------------------------------------------
// misc

#[test]
fn secret_key_is_redacted_and_compares() {
    let a = SecretKey::new("super-secret".to_owned());
    assert_eq!(format!("{a:?}"), "SecretKey(<redacted>)");
    assert_eq!(a, SecretKey::new("super-secret".to_owned()));
    assert_ne!(a, SecretKey::new("super-secreT".to_owned()));
    assert_ne!(a, SecretKey::new("short".to_owned()));
    assert_eq!(a.expose(), "super-secret");
}

#[test]
fn error_codes_statuses_and_io_round_trip() {
    let all = [
        (AuthError::AccessDenied("x".into()), "AccessDenied", 403),
        (
            AuthError::SignatureDoesNotMatch,
            "SignatureDoesNotMatch",
            403,
        ),
        (AuthError::InvalidAccessKeyId, "InvalidAccessKeyId", 403),
        (AuthError::RequestTimeTooSkewed, "RequestTimeTooSkewed", 403),
        (
            AuthError::AuthorizationHeaderMalformed("x".into()),
            "AuthorizationHeaderMalformed",
            400,
        ),
        (
            AuthError::AuthorizationQueryParametersError("x".into()),
            "AuthorizationQueryParametersError",
            400,
        ),
        (
            AuthError::MissingSecurityHeader("x".into()),
            "MissingSecurityHeader",
            400,
        ),
        (AuthError::InvalidRequest("x".into()), "InvalidRequest", 400),
        (
            AuthError::InvalidArgument("x".into()),
            "InvalidArgument",
            400,
        ),
        (
            AuthError::XAmzContentSHA256Mismatch,
            "XAmzContentSHA256Mismatch",
            400,
        ),
        (AuthError::IncompleteBody, "IncompleteBody", 400),
        (AuthError::InvalidDigest, "InvalidDigest", 400),
        (
            AuthError::InvalidChunkSizeError("x".into()),
            "InvalidChunkSizeError",
            400,
        ),
        (
            AuthError::MalformedTrailerError("x".into()),
            "MalformedTrailerError",
            400,
        ),
    ];
    for (e, code, status) in all {
        assert_eq!((e.s3_code(), e.http_status()), (code, status));
        assert!(!e.to_string().is_empty());
        let io = e.clone().into_io();
        assert_eq!(
            io.get_ref().and_then(|i| i.downcast_ref::<AuthError>()),
            Some(&e)
        );
    }
}

#[test]
fn error_messages_never_contain_the_secret() {
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let creds = store(S3_AKID, secret);
    let h = get_object_headers(&s3_auth("host;range;x-amz-content-sha256;x-amz-date", "00"));
    let e = run(&Method::GET, "/test.txt", "", &h, at(S3_NOW), &creds).unwrap_err();
    assert!(!e.to_string().contains(secret));
    assert!(!format!("{e:?}").contains(secret));
}
