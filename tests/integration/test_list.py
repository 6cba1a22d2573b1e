"""Listing: ListObjectsV2 / v1 / versions with prefix, delimiter, pagination."""

import pytest
from botocore.exceptions import ClientError

KEYS = ["a-b", "a/", "a/x", "a/y/z", "a0", "b", "c/d/e", "c/f", "ü/1"]


@pytest.fixture
def filled(s3, bucket):
    for k in KEYS:
        s3.put_object(Bucket=bucket, Key=k, Body=b"" if k.endswith("/") else k.encode())
    return bucket


def test_all_keys_in_utf8_order(s3, filled):
    r = s3.list_objects_v2(Bucket=filled)
    keys = [o["Key"] for o in r["Contents"]]
    assert keys == sorted(KEYS, key=lambda k: k.encode())
    assert r["KeyCount"] == len(KEYS)
    assert not r["IsTruncated"]
    o = r["Contents"][0]
    assert o["Size"] == 3 and o["ETag"].startswith('"') and o["StorageClass"] == "STANDARD"


def test_delimiter_and_prefix(s3, filled):
    r = s3.list_objects_v2(Bucket=filled, Delimiter="/")
    assert [o["Key"] for o in r["Contents"]] == ["a-b", "a0", "b"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/", "c/", "ü/"]
    r = s3.list_objects_v2(Bucket=filled, Delimiter="/", Prefix="a/")
    assert [o["Key"] for o in r["Contents"]] == ["a/", "a/x"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/y/"]
    r = s3.list_objects_v2(Bucket=filled, Prefix="c/")
    assert [o["Key"] for o in r["Contents"]] == ["c/d/e", "c/f"]
    r = s3.list_objects_v2(Bucket=filled, Prefix="a/y")
    assert [o["Key"] for o in r["Contents"]] == ["a/y/z"]


def test_non_slash_delimiter(s3, filled):
    r = s3.list_objects_v2(Bucket=filled, Delimiter="-")
    assert [p["Prefix"] for p in r.get("CommonPrefixes", [])] == ["a-"]
    assert "a-b" not in [o["Key"] for o in r["Contents"]]


def test_pagination_v2(s3, filled):
    seen = []
    token = None
    pages = 0
    while True:
        kw = {"Bucket": filled, "MaxKeys": 2}
        if token:
            kw["ContinuationToken"] = token
        r = s3.list_objects_v2(**kw)
        pages += 1
        seen += [o["Key"] for o in r.get("Contents", [])]
        if not r["IsTruncated"]:
            break
        token = r["NextContinuationToken"]
    assert seen == sorted(KEYS, key=lambda k: k.encode())
    assert pages == 5


def test_pagination_with_delimiter(s3, filled):
    p = s3.get_paginator("list_objects_v2")
    keys, prefixes = [], []
    for page in p.paginate(Bucket=filled, Delimiter="/", PaginationConfig={"PageSize": 1}):
        keys += [o["Key"] for o in page.get("Contents", [])]
        prefixes += [c["Prefix"] for c in page.get("CommonPrefixes", [])]
    assert keys == ["a-b", "a0", "b"]
    assert prefixes == ["a/", "c/", "ü/"]


def test_start_after_and_v1_marker(s3, filled):
    r = s3.list_objects_v2(Bucket=filled, StartAfter="a/x")
    assert [o["Key"] for o in r["Contents"]][:2] == ["a/y/z", "a0"]
    r = s3.list_objects(Bucket=filled, Marker="b", MaxKeys=1)
    assert [o["Key"] for o in r["Contents"]] == ["c/d/e"]
    assert r["IsTruncated"]
    p = s3.get_paginator("list_objects")
    keys = [o["Key"] for page in p.paginate(Bucket=filled, PaginationConfig={"PageSize": 3}) for o in page.get("Contents", [])]
    assert keys == sorted(KEYS, key=lambda k: k.encode())


def test_encoding_type_url(s3, filled):
    # botocore decodes keys only when it added encoding-type itself (its
    # default); asked for explicitly, the caller sees the encoded form.
    r = s3.list_objects_v2(Bucket=filled, EncodingType="url", Prefix="ü")
    assert [o["Key"] for o in r["Contents"]] == ["%C3%BC/1"]
    r = s3.list_objects_v2(Bucket=filled, Prefix="ü")
    assert [o["Key"] for o in r["Contents"]] == ["ü/1"]


def test_fetch_owner(s3, filled):
    r = s3.list_objects_v2(Bucket=filled, FetchOwner=True, MaxKeys=1)
    assert "Owner" in r["Contents"][0]
    r = s3.list_objects_v2(Bucket=filled, MaxKeys=1)
    assert "Owner" not in r["Contents"][0]


def test_versions_as_unversioned_bucket(s3, filled):
    v = s3.get_bucket_versioning(Bucket=filled)
    assert "Status" not in v
    r = s3.list_object_versions(Bucket=filled)
    assert len(r["Versions"]) == len(KEYS)
    assert all(x["VersionId"] == "null" and x["IsLatest"] for x in r["Versions"])
    s3.delete_object(Bucket=filled, Key="b", VersionId="null")
    assert "b" not in [o["Key"] for o in s3.list_objects_v2(Bucket=filled)["Contents"]]


def test_bad_max_keys(s3, filled):
    import requests
    with pytest.raises(ClientError):
        s3.list_objects_v2(Bucket=filled, MaxKeys=-1)


def test_list_missing_bucket(s3):
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket="does-not-exist-123")
    assert e.value.response["Error"]["Code"] == "NoSuchBucket"
