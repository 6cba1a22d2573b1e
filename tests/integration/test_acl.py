"""ACLs on a single-owner box: canned ACLs that grant nothing beyond the
owner are accepted where S3 takes them, Get*Acl answer the owner's
FULL_CONTROL, and an ACL that would grant more is refused (501
NotImplemented) with nothing stored, never silently ignored."""

import subprocess

import botocore.exceptions
import pytest

from conftest import aws_env


def code(fn, **kw):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        fn(**kw)
    return e.value.response["Error"]["Code"]


def test_canned_acls(s3, bucket):
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"a", ACL="private")
    s3.put_object(Bucket=bucket, Key="b.txt", Body=b"b", ACL="bucket-owner-full-control")
    assert code(s3.put_object, Bucket=bucket, Key="pub.txt", Body=b"p", ACL="public-read") == "NotImplemented"
    assert code(s3.head_object, Bucket=bucket, Key="pub.txt") == "404"
    assert code(s3.create_multipart_upload, Bucket=bucket, Key="m.txt", ACL="public-read-write") == "NotImplemented"
    assert code(s3.copy_object, Bucket=bucket, Key="c.txt", CopySource={"Bucket": bucket, "Key": "a.txt"},
                ACL="authenticated-read") == "NotImplemented"
    assert code(s3.put_object, Bucket=bucket, Key="g.txt", Body=b"g", GrantRead='uri="http://acs.amazonaws.com/groups/global/AllUsers"') == "NotImplemented"
    assert code(s3.create_bucket, Bucket=bucket + "-pub", ACL="public-read") == "NotImplemented"
    assert code(s3.head_bucket, Bucket=bucket + "-pub") == "404"

    for acl in (s3.get_bucket_acl(Bucket=bucket), s3.get_object_acl(Bucket=bucket, Key="a.txt")):
        assert acl["Owner"]["ID"] == "deltaglider"
        (g,) = acl["Grants"]
        assert g["Permission"] == "FULL_CONTROL" and g["Grantee"]["Type"] == "CanonicalUser"
        assert g["Grantee"]["ID"] == "deltaglider"
    assert code(s3.get_object_acl, Bucket=bucket, Key="missing.txt") == "NoSuchKey"
    assert code(s3.get_bucket_acl, Bucket=bucket + "-nope") == "NoSuchBucket"

    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    s3.put_object_acl(Bucket=bucket, Key="a.txt", ACL="private")
    assert code(s3.put_bucket_acl, Bucket=bucket, ACL="public-read") == "NotImplemented"
    assert code(s3.put_object_acl, Bucket=bucket, Key="a.txt", AccessControlPolicy={
        "Owner": {"ID": "deltaglider"},
        "Grants": [{"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
                    "Permission": "READ"}]}) == "NotImplemented"
    assert code(s3.put_object, Bucket=bucket, Key="x.txt", Body=b"x", ACL="nonsense") == "InvalidArgument"


def test_aws_cli_acl_flag(server, bucket, tmp_path):
    f = tmp_path / "f.txt"
    f.write_bytes(b"cli")
    env = aws_env(server)
    ok = subprocess.run(["aws", "--endpoint-url", server.url, "s3", "cp", "--acl", "private", str(f),
                         f"s3://{bucket}/f.txt"], env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(["aws", "--endpoint-url", server.url, "s3", "cp", "--acl", "public-read", str(f),
                          f"s3://{bucket}/p.txt"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "NotImplemented" in bad.stderr
