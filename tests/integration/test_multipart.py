"""Multipart uploads: ETags, checksums, listing, abort, copy parts, restart survival."""

import hashlib

import pytest
from botocore.exceptions import ClientError

from conftest import random_bytes, Server

MiB = 1024 * 1024


def multipart_etag(parts):
    return '"%s-%d"' % (hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest(), len(parts))


def test_multipart_roundtrip_etag(s3, bucket):
    parts = [random_bytes(5 * MiB), random_bytes(5 * MiB), random_bytes(1234)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp/obj", ContentType="application/x-test", Metadata={"m": "1"})
    uid = up["UploadId"]
    etags = []
    for i, p in enumerate(parts, 1):
        etags.append(s3.upload_part(Bucket=bucket, Key="mp/obj", UploadId=uid, PartNumber=i, Body=p)["ETag"])
    lp = s3.list_parts(Bucket=bucket, Key="mp/obj", UploadId=uid)
    assert [p["PartNumber"] for p in lp["Parts"]] == [1, 2, 3]
    assert [p["Size"] for p in lp["Parts"]] == [len(p) for p in parts]
    ups = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [u["UploadId"] for u in ups] == [uid]
    r = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp/obj", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": i, "ETag": e} for i, e in enumerate(etags, 1)]},
    )
    assert r["ETag"] == multipart_etag(parts)
    g = s3.get_object(Bucket=bucket, Key="mp/obj")
    assert g["Body"].read() == b"".join(parts)
    assert g["ETag"] == multipart_etag(parts)
    assert g["ContentType"] == "application/x-test" and g["Metadata"] == {"m": "1"}
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_multipart_checksum_composite(s3, bucket):
    parts = [random_bytes(5 * MiB), random_bytes(100)]
    uid = s3.create_multipart_upload(Bucket=bucket, Key="ck", ChecksumAlgorithm="CRC32")["UploadId"]
    done = []
    for i, p in enumerate(parts, 1):
        r = s3.upload_part(Bucket=bucket, Key="ck", UploadId=uid, PartNumber=i, Body=p, ChecksumAlgorithm="CRC32")
        assert r["ChecksumCRC32"]
        done.append({"PartNumber": i, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    r = s3.complete_multipart_upload(Bucket=bucket, Key="ck", UploadId=uid, MultipartUpload={"Parts": done})
    assert r["ChecksumCRC32"].endswith("-2")
    assert s3.get_object(Bucket=bucket, Key="ck")["Body"].read() == b"".join(parts)


def test_small_part_rejected_and_bad_etag(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="small")["UploadId"]
    e1 = s3.upload_part(Bucket=bucket, Key="small", UploadId=uid, PartNumber=1, Body=b"tiny")["ETag"]
    e2 = s3.upload_part(Bucket=bucket, Key="small", UploadId=uid, PartNumber=2, Body=b"tiny")["ETag"]
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="small", UploadId=uid,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    assert e.value.response["Error"]["Code"] == "EntityTooSmall"
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="small", UploadId=uid,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"00000000000000000000000000000000"'}]})
    assert e.value.response["Error"]["Code"] == "InvalidPart"
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="small", UploadId=uid,
                                     MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]})
    assert e.value.response["Error"]["Code"] == "InvalidPartOrder"
    # a single small part is fine (it is the last part)
    s3.complete_multipart_upload(Bucket=bucket, Key="small", UploadId=uid, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}]})
    assert s3.get_object(Bucket=bucket, Key="small")["Body"].read() == b"tiny"


def test_abort(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="ab")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="ab", UploadId=uid, PartNumber=1, Body=b"x")
    s3.abort_multipart_upload(Bucket=bucket, Key="ab", UploadId=uid)
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket=bucket, Key="ab", UploadId=uid)
    assert e.value.response["Error"]["Code"] == "NoSuchUpload"
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="ab", UploadId="deadbeef", PartNumber=1, Body=b"x")
    assert e.value.response["Error"]["Code"] == "NoSuchUpload"


def test_upload_part_copy(s3, bucket):
    src = random_bytes(6 * MiB)
    s3.put_object(Bucket=bucket, Key="src", Body=src)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="pc")["UploadId"]
    r1 = s3.upload_part_copy(Bucket=bucket, Key="pc", UploadId=uid, PartNumber=1,
                             CopySource={"Bucket": bucket, "Key": "src"}, CopySourceRange=f"bytes=0-{5 * MiB - 1}")
    r2 = s3.upload_part_copy(Bucket=bucket, Key="pc", UploadId=uid, PartNumber=2,
                             CopySource={"Bucket": bucket, "Key": "src"}, CopySourceRange=f"bytes={5 * MiB}-{6 * MiB - 1}")
    s3.complete_multipart_upload(Bucket=bucket, Key="pc", UploadId=uid, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": r1["CopyPartResult"]["ETag"]}, {"PartNumber": 2, "ETag": r2["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="pc")["Body"].read() == src


def test_multipart_survives_restart(tmp_path):
    srv = Server(tmp_path / "data").start()
    try:
        s3 = srv.client()
        s3.create_bucket(Bucket="restart")
        uid = s3.create_multipart_upload(Bucket="restart", Key="big")["UploadId"]
        p1 = random_bytes(5 * MiB)
        e1 = s3.upload_part(Bucket="restart", Key="big", UploadId=uid, PartNumber=1, Body=p1)["ETag"]
    finally:
        assert srv.stop() == 0
    srv = Server(tmp_path / "data").start()
    try:
        s3 = srv.client()
        assert [p["PartNumber"] for p in s3.list_parts(Bucket="restart", Key="big", UploadId=uid)["Parts"]] == [1]
        p2 = random_bytes(100)
        e2 = s3.upload_part(Bucket="restart", Key="big", UploadId=uid, PartNumber=2, Body=p2)["ETag"]
        s3.complete_multipart_upload(Bucket="restart", Key="big", UploadId=uid, MultipartUpload={"Parts": [
            {"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
        assert s3.get_object(Bucket="restart", Key="big")["Body"].read() == p1 + p2
    finally:
        srv.stop()


def test_slow_completion_keeps_the_connection_alive(tmp_path):
    """A completion that takes a while answers 200 at once, sends whitespace
    while it works (clients with a short read timeout keep waiting), then
    the result; an error found late arrives as an <Error> document in the
    200, as S3 does it."""
    import threading
    srv = Server(tmp_path / "data", env={"DGP_FAILPOINT": "complete-before-publish=sleep:7000"}).start()
    try:
        s3 = srv.client(read_timeout=4)  # shorter than the completion
        s3.create_bucket(Bucket="slow")
        parts = [random_bytes(5 * 1024 * 1024), b"tail"]
        up = s3.create_multipart_upload(Bucket="slow", Key="k.txt")
        etags = [s3.upload_part(Bucket="slow", Key="k.txt", UploadId=up["UploadId"], PartNumber=i + 1,
                                Body=p)["ETag"] for i, p in enumerate(parts)]
        done = s3.complete_multipart_upload(Bucket="slow", Key="k.txt", UploadId=up["UploadId"], MultipartUpload={
            "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
        assert done["ETag"].endswith('-2"')
        assert s3.get_object(Bucket="slow", Key="k.txt")["Body"].read() == b"".join(parts)

        # a late failure: the bucket goes away while the completion sleeps
        s3.create_bucket(Bucket="vanish")
        up = s3.create_multipart_upload(Bucket="vanish", Key="k.txt")
        e1 = s3.upload_part(Bucket="vanish", Key="k.txt", UploadId=up["UploadId"], PartNumber=1, Body=b"x")["ETag"]
        t = threading.Timer(3.0, lambda: srv.client().delete_bucket(Bucket="vanish"))
        t.start()
        with pytest.raises(ClientError) as e:
            s3.complete_multipart_upload(Bucket="vanish", Key="k.txt", UploadId=up["UploadId"], MultipartUpload={
                "Parts": [{"PartNumber": 1, "ETag": e1}]})
        t.join()
        # (botocore reports an <Error> found in a 200 CompleteMultipartUpload as status 500)
        assert e.value.response["Error"]["Code"] == "NoSuchBucket"
    finally:
        srv.stop()
