"""Authentication: SigV4 header and presigned, SigV2, aws-chunked bodies, errors."""

import base64
import datetime
import hashlib
import subprocess
import time
import zlib

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

import sigv4
from conftest import ACCESS_KEY, SECRET_KEY, make_client, random_bytes


def err_code(resp):
    import re
    m = re.search(r"<Code>([^<]+)</Code>", resp.text)
    return m.group(1) if m else None


def test_wrong_secret_and_unknown_key(server, bucket):
    bad = make_client(server.url, secret="wrong-secret")
    with pytest.raises(ClientError) as e:
        bad.list_objects_v2(Bucket=bucket)
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    unknown = make_client(server.url, access="NOSUCHKEY")
    with pytest.raises(ClientError) as e:
        unknown.list_objects_v2(Bucket=bucket)
    assert e.value.response["Error"]["Code"] == "InvalidAccessKeyId"


def test_anonymous_denied(server, bucket):
    r = requests.get(f"{server.url}/{bucket}")
    assert r.status_code == 403 and err_code(r) == "AccessDenied"
    assert "x-amz-request-id" in r.headers
    assert "server" not in {k.lower() for k in r.headers}
    r = requests.put(f"{server.url}/{bucket}/anon", data=b"x")
    assert r.status_code == 403


def test_presigned_get_and_put_with_curl(server, s3, bucket):
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "pre/p.bin"}, ExpiresIn=300)
    data = random_bytes(5000)
    subprocess.run(["curl", "-sf", "-X", "PUT", "-H", "Content-Type:", "--data-binary", "@-", put_url], input=data, check=True)
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "pre/p.bin"}, ExpiresIn=300)
    out = subprocess.run(["curl", "-sf", get_url], capture_output=True, check=True).stdout
    assert out == data
    # tampering with the URL breaks the signature
    r = requests.get(get_url.replace("pre/p.bin", "pre/q.bin"))
    assert r.status_code == 403 and err_code(r) == "SignatureDoesNotMatch"


def test_presigned_expiry(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="e", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "e"}, ExpiresIn=1)
    time.sleep(2.1)
    r = requests.get(url)
    assert r.status_code == 403 and err_code(r) == "AccessDenied"
    v4 = make_client(server.url, signature_version="s3v4")
    url = v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "e"}, ExpiresIn=604801)
    assert "X-Amz-Signature" in url
    r = requests.get(url)
    assert r.status_code == 400 and err_code(r) == "AuthorizationQueryParametersError"
    url = v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "e"}, ExpiresIn=604800)
    assert requests.get(url).status_code == 200
    url = v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "e"}, ExpiresIn=1)
    time.sleep(2.1)
    r = requests.get(url)
    assert r.status_code == 403 and err_code(r) == "AccessDenied"


def test_sigv2_header_and_presigned(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="v2.txt", Body=b"sigv2")
    v2 = make_client(server.url, signature_version="s3")
    assert v2.get_object(Bucket=bucket, Key="v2.txt")["Body"].read() == b"sigv2"
    v2.put_object(Bucket=bucket, Key="v2b.txt", Body=b"put by v2")
    assert s3.get_object(Bucket=bucket, Key="v2b.txt")["Body"].read() == b"put by v2"
    url = v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "v2.txt"}, ExpiresIn=60)
    assert "Signature=" in url and "AWSAccessKeyId=" in url
    assert requests.get(url).content == b"sigv2"
    bad = make_client(server.url, signature_version="s3", secret="nope")
    with pytest.raises(ClientError) as e:
        bad.get_object(Bucket=bucket, Key="v2.txt")
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_clock_skew(server, bucket):
    url = f"{server.url}/{bucket}"
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=20)
    h, *_ = sigv4.sign("GET", url, {}, hashlib.sha256(b"").hexdigest(), when=old)
    r = requests.get(url, headers=h)
    assert r.status_code == 403 and err_code(r) == "RequestTimeTooSkewed"
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    h, *_ = sigv4.sign("GET", url, {}, hashlib.sha256(b"").hexdigest(), when=now)
    assert requests.get(url, headers=h).status_code == 200


def test_payload_hash_mismatch(server, s3, bucket):
    url = f"{server.url}/{bucket}/ph"
    h, *_ = sigv4.sign("PUT", url, {}, hashlib.sha256(b"declared").hexdigest())
    r = requests.put(url, data=b"actual body", headers=h)
    assert r.status_code == 400 and err_code(r) == "XAmzContentSHA256Mismatch"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="ph")


def test_streaming_signed_chunks(server, s3, bucket):
    data = random_bytes(200_000)
    url = f"{server.url}/{bucket}/stream.bin"
    body_len = len(sigv4.chunked_signed_body(data, 65536, "0" * 64, b"k" * 32, "20200101T000000Z", "x"))
    hdrs = {"content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)), "content-length": str(body_len)}
    h, seed, key, amz_date, scope = sigv4.sign("PUT", url, hdrs, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
    body = sigv4.chunked_signed_body(data, 65536, seed, key, amz_date, scope)
    r = requests.put(url, data=body, headers=h)
    assert r.status_code == 200, r.text
    assert s3.get_object(Bucket=bucket, Key="stream.bin")["Body"].read() == data
    # a flipped byte in chunk 2 fails the chunk signature and nothing is stored
    h, seed, key, amz_date, scope = sigv4.sign("PUT", url + "2", hdrs, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
    body = sigv4.chunked_signed_body(data, 65536, seed, key, amz_date, scope, tamper_chunk=1)
    r = requests.put(url + "2", data=body, headers=h)
    assert r.status_code == 403 and err_code(r) == "SignatureDoesNotMatch"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="stream.bin2")


def test_unsigned_payload_trailer(server, s3, bucket):
    data = random_bytes(70_000)
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    url = f"{server.url}/{bucket}/trailer.bin"

    def body(checksum):
        return (f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n" + f"x-amz-checksum-crc32:{checksum}\r\n\r\n".encode())

    hdrs = {"content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)), "x-amz-trailer": "x-amz-checksum-crc32"}
    h, *_ = sigv4.sign("PUT", url, hdrs, "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    r = requests.put(url, data=body(crc), headers=h)
    assert r.status_code == 200, r.text
    assert r.headers.get("x-amz-checksum-crc32") == crc
    assert s3.get_object(Bucket=bucket, Key="trailer.bin")["Body"].read() == data
    bad = base64.b64encode((zlib.crc32(data) ^ 1).to_bytes(4, "big")).decode()
    h, *_ = sigv4.sign("PUT", url + "x", hdrs, "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    r = requests.put(url + "x", data=body(bad), headers=h)
    assert r.status_code == 400 and err_code(r) == "BadDigest"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="trailer.binx")


def test_health_endpoint(server):
    r = requests.get(f"{server.url}/_/health")
    assert r.status_code == 200
