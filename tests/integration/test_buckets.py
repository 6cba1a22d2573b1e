"""Bucket operations."""

import uuid

import pytest
from botocore.exceptions import ClientError


def test_bucket_lifecycle(s3):
    name = "b-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.head_bucket(Bucket=name)
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] in (None, "")
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=name)
    assert e.value.response["Error"]["Code"] == "BucketAlreadyOwnedByYou"
    s3.put_object(Bucket=name, Key="k", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=name)
    assert e.value.response["Error"]["Code"] == "BucketNotEmpty"
    s3.delete_object(Bucket=name, Key="k")
    s3.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket=name)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_create_bucket_with_location_constraint(s3):
    name = "b-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.delete_bucket(Bucket=name)


@pytest.mark.parametrize("name", ["ab", "UPPER", "bad_name", "-dash", "192.168.0.1"])
def test_invalid_bucket_names(server, name):
    import requests
    from conftest import make_client
    s3 = make_client(server.url)
    s3.meta.events.unregister("before-parameter-build.s3", None)
    r = requests.put(f"{server.url}/{name}")
    assert r.status_code in (400, 403)
    with pytest.raises(Exception):
        s3.create_bucket(Bucket=name)


def test_virtual_hosted_style(server, s3, bucket, monkeypatch):
    s3.put_object(Bucket=bucket, Key="vh.txt", Body=b"virtual")
    import socket
    from conftest import make_client
    real = socket.getaddrinfo

    def resolve(host, *a, **kw):  # <bucket>.localhost -> 127.0.0.1, as systemd-resolved does
        return real("127.0.0.1" if host.endswith(".localhost") else host, *a, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    vh = make_client(f"http://localhost:{server.port}", style="virtual")
    assert vh.get_object(Bucket=bucket, Key="vh.txt")["Body"].read() == b"virtual"
    vh.put_object(Bucket=bucket, Key="dir/vh2.txt", Body=b"v2")
    assert [o["Key"] for o in vh.list_objects_v2(Bucket=bucket, Prefix="dir/")["Contents"]] == ["dir/vh2.txt"]
