"""Conditional writes as S3 documents them: `If-None-Match: *` and
`If-Match: <etag>` on PutObject, CopyObject and CompleteMultipartUpload.
A false condition is 412 PreconditionFailed (If-Match on no object: 404
NoSuchKey) and writes nothing; of many clients racing on one key exactly one
conditional writer wins, the rest get 412 or 409 ConditionalRequestConflict,
and the object is the winner's bytes."""

import concurrent.futures
import os
import threading

import pytest
from botocore.exceptions import ClientError

from conftest import Server, make_client

PART = 5 * 1024 * 1024


def code(e):
    return e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture(scope="module", params=["plain", "encrypted", "s3-upstream"])
def srv(request, tmp_path_factory):
    """A plaintext server, one that encrypts, and one on a moto upstream
    (whose multipart uploads complete on the upstream), so the conditions
    hold on every write path."""
    tmp = tmp_path_factory.mktemp(request.param)
    env = {}
    if request.param == "s3-upstream":
        from test_s3_backend import Upstream
        up = Upstream("moto", tmp)
        request.addfinalizer(up.stop)
        cfg = tmp / "c.yaml"
        cfg.write_text(f"""storage:
  backend:
    type: s3
    endpoint: {up.url}
    region: us-east-1
    force_path_style: true
    access_key_id: {up.access}
    secret_access_key: {up.secret}
""")
        s = Server(tmp / "unused", config=cfg).start()
    elif request.param == "encrypted":
        env["DGP_ENCRYPTION_KEY"] = os.urandom(32).hex()
        cfg = tmp / "c.yaml"
        cfg.write_text(f"storage:\n  filesystem: {tmp / 'data'}\n  backend_encryption:\n    mode: aes256-gcm-proxy\n")
        s = Server(tmp / "unused", config=cfg, env=env).start()
    else:
        s = Server(tmp / "data").start()
    yield s
    s.stop()


@pytest.fixture
def s3(srv):
    c = make_client(srv.url)
    return c


@pytest.fixture
def bkt(s3, request):
    name = "cond-" + request.node.name.split("[")[0].replace("_", "-")[5:40].strip("-")
    s3.create_bucket(Bucket=name)
    return name


def test_put_if_none_match_and_if_match(s3, bkt):
    first = s3.put_object(Bucket=bkt, Key="k.bin", Body=b"one", IfNoneMatch="*")["ETag"]
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bkt, Key="k.bin", Body=b"two", IfNoneMatch="*")
    assert code(e) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bkt, Key="k.bin", Body=b"two", IfMatch='"00000000000000000000000000000000"')
    assert code(e) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=bkt, Key="k.bin")["Body"].read() == b"one"
    second = s3.put_object(Bucket=bkt, Key="k.bin", Body=b"two", IfMatch=first)["ETag"]
    assert s3.get_object(Bucket=bkt, Key="k.bin")["Body"].read() == b"two"
    # The old ETag no longer matches; `*` matches any current object.
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bkt, Key="k.bin", Body=b"three", IfMatch=first)
    assert code(e) == ("PreconditionFailed", 412)
    s3.put_object(Bucket=bkt, Key="k.bin", Body=b"three", IfMatch="*")
    assert second != first
    # If-Match on a key with no object: NoSuchKey, nothing written.
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bkt, Key="none.bin", Body=b"x", IfMatch=first)
    assert code(e) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bkt, Key="none.bin")
    assert code(e)[1] == 404
    # If-None-Match with an ETag is not a write condition S3 offers.
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bkt, Key="k.bin", Body=b"x", IfNoneMatch=second)
    assert code(e) == ("NotImplemented", 501)
    # A deleted object can be created again with If-None-Match.
    s3.delete_object(Bucket=bkt, Key="k.bin")
    s3.put_object(Bucket=bkt, Key="k.bin", Body=b"again", IfNoneMatch="*")
    assert s3.get_object(Bucket=bkt, Key="k.bin")["Body"].read() == b"again"


def test_copy_object_conditions_are_on_the_destination(s3, bkt):
    s3.put_object(Bucket=bkt, Key="src", Body=b"source")
    dst = s3.put_object(Bucket=bkt, Key="dst", Body=b"dest")["ETag"]
    src = {"Bucket": bkt, "Key": "src"}
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bkt, Key="dst", CopySource=src, IfNoneMatch="*")
    assert code(e) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bkt, Key="dst", CopySource=src, IfMatch='"ffffffffffffffffffffffffffffffff"')
    assert code(e) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=bkt, Key="dst")["Body"].read() == b"dest"
    s3.copy_object(Bucket=bkt, Key="dst", CopySource=src, IfMatch=dst)
    assert s3.get_object(Bucket=bkt, Key="dst")["Body"].read() == b"source"
    s3.copy_object(Bucket=bkt, Key="new", CopySource=src, IfNoneMatch="*")
    assert s3.get_object(Bucket=bkt, Key="new")["Body"].read() == b"source"
    # Onto itself (a metadata change), If-Match guards it too.
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bkt, Key="src", CopySource=src, MetadataDirective="REPLACE",
                       Metadata={"a": "b"}, IfMatch='"ffffffffffffffffffffffffffffffff"')
    assert code(e) == ("PreconditionFailed", 412)
    assert s3.head_object(Bucket=bkt, Key="src")["Metadata"] == {}


def test_complete_multipart_upload_conditions(s3, bkt):
    existing = s3.put_object(Bucket=bkt, Key="big", Body=b"small")["ETag"]
    up = s3.create_multipart_upload(Bucket=bkt, Key="big")["UploadId"]
    body = os.urandom(PART) + b"tail"
    parts = []
    for n, chunk in enumerate((body[:PART], body[PART:]), start=1):
        etag = s3.upload_part(Bucket=bkt, Key="big", UploadId=up, PartNumber=n, Body=chunk)["ETag"]
        parts.append({"PartNumber": n, "ETag": etag})
    mp = {"Parts": parts}
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bkt, Key="big", UploadId=up, MultipartUpload=mp, IfNoneMatch="*")
    assert code(e) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bkt, Key="big", UploadId=up, MultipartUpload=mp,
                                     IfMatch='"ffffffffffffffffffffffffffffffff"')
    assert code(e) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=bkt, Key="big")["Body"].read() == b"small"
    # The refused completion left the upload as it was: it completes now.
    r = s3.complete_multipart_upload(Bucket=bkt, Key="big", UploadId=up, MultipartUpload=mp, IfMatch=existing)
    assert r["ETag"].endswith('-2"')
    assert s3.get_object(Bucket=bkt, Key="big")["Body"].read() == body
    # A retry of that completion (its answer lost) answers 200 again, with
    # the same ETag, though the condition is now false of the object.
    again = s3.complete_multipart_upload(Bucket=bkt, Key="big", UploadId=up, MultipartUpload=mp, IfMatch=existing)
    assert again["ETag"] == r["ETag"]
    up2 = s3.create_multipart_upload(Bucket=bkt, Key="fresh")["UploadId"]
    e2 = s3.upload_part(Bucket=bkt, Key="fresh", UploadId=up2, PartNumber=1, Body=b"only part")["ETag"]
    mp2 = {"Parts": [{"PartNumber": 1, "ETag": e2}]}
    first = s3.complete_multipart_upload(Bucket=bkt, Key="fresh", UploadId=up2, MultipartUpload=mp2, IfNoneMatch="*")
    retry = s3.complete_multipart_upload(Bucket=bkt, Key="fresh", UploadId=up2, MultipartUpload=mp2, IfNoneMatch="*")
    assert retry["ETag"] == first["ETag"]


def race(n, write):
    """Runs `write(i)` in n threads released together; (status, code) each."""
    gate = threading.Barrier(n)

    def one(i):
        gate.wait()
        try:
            write(i)
            return (200, None)
        except ClientError as e:
            return (e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"])

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_racing_if_none_match_writers_exactly_one_wins(srv, s3, bkt):
    n = 16
    clients = [make_client(srv.url) for _ in range(n)]
    bodies = [os.urandom(256 * 1024) for _ in range(n)]
    for round_ in range(3):
        key = f"race-{round_}.bin"
        out = race(n, lambda i: clients[i].put_object(Bucket=bkt, Key=key, Body=bodies[i], IfNoneMatch="*"))
        winners = [i for i, r in enumerate(out) if r[0] == 200]
        assert len(winners) == 1, out
        losers = {r for r in out if r[0] != 200}
        assert losers <= {(412, "PreconditionFailed"), (409, "ConditionalRequestConflict")}, out
        assert s3.get_object(Bucket=bkt, Key=key)["Body"].read() == bodies[winners[0]]


def test_racing_if_match_writers_exactly_one_wins(srv, s3, bkt):
    n = 12
    clients = [make_client(srv.url) for _ in range(n)]
    bodies = [os.urandom(128 * 1024) for _ in range(n)]
    etag = s3.put_object(Bucket=bkt, Key="counter", Body=b"v0")["ETag"]
    # Unconditional writers race too: they never slip between a conditional
    # writer's check and its publish.
    out = race(n, lambda i: clients[i].put_object(Bucket=bkt, Key="counter", Body=bodies[i],
                                                  **({"IfMatch": etag} if i % 3 else {})))
    conditional = [i for i in range(n) if i % 3]
    won = [i for i in conditional if out[i][0] == 200]
    assert len(won) <= 1, out
    assert all(out[i][0] == 200 for i in range(n) if i % 3 == 0), out
    assert {out[i] for i in conditional if i not in won} <= {(412, "PreconditionFailed"),
                                                            (409, "ConditionalRequestConflict")}, out
    final = s3.get_object(Bucket=bkt, Key="counter")["Body"].read()
    assert final in bodies, "the object is one writer's bytes, whole"
    # Only conditional writers naming the current ETag: exactly one wins.
    etag = s3.head_object(Bucket=bkt, Key="counter")["ETag"]
    out = race(n, lambda i: clients[i].put_object(Bucket=bkt, Key="counter", Body=bodies[i], IfMatch=etag))
    winners = [i for i, r in enumerate(out) if r[0] == 200]
    assert len(winners) == 1, out
    assert s3.get_object(Bucket=bkt, Key="counter")["Body"].read() == bodies[winners[0]]
