"""Regression tests for the data-safety defects found by adversarial testing
(issue 11): each test is named after its case and fails on the binary that
had the defect."""

import json
import os
import secrets
import shutil
import threading
import time

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

from conftest import Server, random_bytes
from test_encryption import enc_config, start

MiB = 1024 * 1024
K1 = secrets.token_hex(32)
K2 = secrets.token_hex(32)


def code_of(err):
    """The S3 error code of a ClientError or of a pytest.raises result."""
    err = getattr(err, "value", err)
    return err.response["Error"]["Code"]


# ---------------------------------------------------------------- D1


def test_d1_missing_key_check_record_refuses_a_wrong_key(tmp_path):
    data = tmp_path / "data"
    srv = start(tmp_path, data, key=K1, key_id="k1")
    s3 = srv.client()
    s3.create_bucket(Bucket="bk1")
    s3.put_object(Bucket="bk1", Key="o1.txt", Body=b"hello")
    srv.stop()

    # a restore that skipped the hidden directory
    (data / ".dg" / "keys" / "k1.json").unlink()
    with pytest.raises(RuntimeError) as e:
        start(tmp_path, data, key=K2, key_id="k1")
    out = str(e.value)
    assert "key mismatch" in out and "record for key id 'k1' is missing" in out
    assert "first time" not in out and K2 not in out
    assert not (data / ".dg" / "keys" / "k1.json").exists(), "no record written for the wrong key"
    assert not (data / "bk1" / "o2.txt").exists()

    # the right key is still accepted, and its record is written again
    srv = start(tmp_path, data, key=K1, key_id="k1")
    assert "record for this key id was missing" in srv.output()
    assert "first time" not in srv.output()
    assert srv.client().get_object(Bucket="bk1", Key="o1.txt")["Body"].read() == b"hello"
    srv.stop()
    assert (data / ".dg" / "keys" / "k1.json").exists()


def test_d1_whole_internal_area_lost(tmp_path):
    data = tmp_path / "data"
    srv = start(tmp_path, data, key=K1, key_id="k1")
    s3 = srv.client()
    s3.create_bucket(Bucket="bk1")
    s3.put_object(Bucket="bk1", Key="o1.txt", Body=b"hello")
    srv.stop()
    shutil.rmtree(data / ".dg")

    # another key under another id: the objects' key id is unknown
    with pytest.raises(RuntimeError) as e:
        start(tmp_path, data, key=K2, key_id="k2")
    assert "k1" in str(e.value) and "not configured" in str(e.value)
    # another key under the same id: a mismatch
    with pytest.raises(RuntimeError) as e:
        start(tmp_path, data, key=K2, key_id="k1")
    assert "key mismatch" in str(e.value)
    # the first-time notice only appears on a backend without encrypted objects
    srv = start(tmp_path, data, key=K1, key_id="k1")
    assert "OFF-BOX" not in srv.output()
    assert srv.client().get_object(Bucket="bk1", Key="o1.txt")["Body"].read() == b"hello"
    srv.stop()
    fresh = start(tmp_path, tmp_path / "fresh", key=K2, key_id="k2")
    assert "enabled for the first time" in fresh.output()
    fresh.stop()


# ---------------------------------------------------------------- D2


def part_data():
    return [random_bytes(5 * MiB), random_bytes(5 * MiB), random_bytes(MiB + 7)]


def upload_parts(s3, bucket, key, parts):
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    done = []
    for i, body in enumerate(parts, 1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=i, Body=body)
        done.append({"PartNumber": i, "ETag": r["ETag"]})
    return up, done


def crashing_complete(s3, bucket, key, up, done):
    with pytest.raises((ConnectionClosedError, EndpointConnectionError, ReadTimeoutError)):
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up, MultipartUpload={"Parts": done})


def upload_dirs(data):
    return sorted(p.name for p in (data / ".dg" / "multipart").iterdir())


@pytest.mark.parametrize("point", ["complete-after-publish", "complete-after-retire"])
def test_d2_crash_after_publish_completes_the_upload(tmp_path, point):
    data = tmp_path / "data"
    good = random_bytes(12 * MiB)
    srv = Server(data, env={"DGP_FAILPOINT": point}).start()
    s3 = srv.client()
    s3.create_bucket(Bucket="mpu")
    s3.put_object(Bucket="mpu", Key="big.bin", Body=good)
    parts = part_data()
    up, done = upload_parts(s3, "mpu", "big.bin", parts)
    crashing_complete(s3, "mpu", "big.bin", up, done)
    srv.proc.wait(timeout=20)
    assert f"failpoint {point}" in srv.output()

    srv = Server(data).start()
    s3 = srv.client()
    try:
        assert s3.list_multipart_uploads(Bucket="mpu").get("Uploads", []) == []
        assert upload_dirs(data) == []
        body = s3.get_object(Bucket="mpu", Key="big.bin")["Body"].read()
        assert body == b"".join(parts)
        # a retried Complete with the original part list answers as S3 does
        r = s3.complete_multipart_upload(Bucket="mpu", Key="big.bin", UploadId=up, MultipartUpload={"Parts": done})
        assert r["ETag"] == s3.head_object(Bucket="mpu", Key="big.bin")["ETag"]
        assert r["ETag"].strip('"').endswith("-3")
        # completing with fewer parts can never publish a partial object
        with pytest.raises(ClientError) as e:
            s3.complete_multipart_upload(Bucket="mpu", Key="big.bin", UploadId=up, MultipartUpload={"Parts": done[:2]})
        assert code_of(e) == "NoSuchUpload"
        with pytest.raises(ClientError) as e:
            s3.list_parts(Bucket="mpu", Key="big.bin", UploadId=up)
        assert code_of(e) == "NoSuchUpload"
        assert s3.get_object(Bucket="mpu", Key="big.bin")["Body"].read() == b"".join(parts)
        done_dir = data / ".dg" / "multipart-done" / up
        assert sorted(p.name for p in done_dir.iterdir()) == ["complete.json"]
    finally:
        srv.stop()


def test_d2_crash_before_publish_keeps_the_upload(tmp_path):
    data = tmp_path / "data"
    good = random_bytes(3 * MiB)
    srv = Server(data, env={"DGP_FAILPOINT": "complete-before-publish"}).start()
    s3 = srv.client()
    s3.create_bucket(Bucket="mpu")
    s3.put_object(Bucket="mpu", Key="big.bin", Body=good)
    parts = part_data()
    up, done = upload_parts(s3, "mpu", "big.bin", parts)
    crashing_complete(s3, "mpu", "big.bin", up, done)
    srv.proc.wait(timeout=20)

    srv = Server(data).start()
    s3 = srv.client()
    try:
        assert "stays open for a retry" in srv.output()
        # nothing was published: the old object is intact, the upload is whole
        assert s3.get_object(Bucket="mpu", Key="big.bin")["Body"].read() == good
        ups = s3.list_multipart_uploads(Bucket="mpu")["Uploads"]
        assert [u["UploadId"] for u in ups] == [up]
        listed = s3.list_parts(Bucket="mpu", Key="big.bin", UploadId=up)["Parts"]
        assert [p["PartNumber"] for p in listed] == [1, 2, 3]
        r = s3.complete_multipart_upload(Bucket="mpu", Key="big.bin", UploadId=up, MultipartUpload={"Parts": done})
        assert r["ETag"].strip('"').endswith("-3")
        assert s3.get_object(Bucket="mpu", Key="big.bin")["Body"].read() == b"".join(parts)
        assert s3.list_multipart_uploads(Bucket="mpu").get("Uploads", []) == []
    finally:
        srv.stop()


def test_d2_aborted_upload_leaves_nothing_listed(tmp_path):
    data = tmp_path / "data"
    srv = Server(data).start()
    s3 = srv.client()
    try:
        s3.create_bucket(Bucket="mpu")
        up, _ = upload_parts(s3, "mpu", "x.bin", [random_bytes(1000)])
        s3.abort_multipart_upload(Bucket="mpu", Key="x.bin", UploadId=up)
        assert upload_dirs(data) == []
        with pytest.raises(ClientError) as e:
            s3.upload_part(Bucket="mpu", Key="x.bin", UploadId=up, PartNumber=2, Body=b"late")
        assert code_of(e) == "NoSuchUpload"
        assert upload_dirs(data) == []
    finally:
        srv.stop()


# ---------------------------------------------------------------- D3


def test_d3_upload_part_racing_complete(tmp_path):
    data = tmp_path / "data"
    # widen the window: the completion pauses after it has read the part list
    srv = Server(data, env={"DGP_FAILPOINT": "complete-before-publish=sleep:400"}).start()
    s3 = srv.client()
    try:
        s3.create_bucket(Bucket="race")
        p1 = random_bytes(5 * MiB)
        outcomes = {"ok": 0, "gone": 0}
        for i in range(6):
            key = f"r{i}.bin"
            up, done = upload_parts(s3, "race", key, [p1])
            result = {}

            def complete():
                result["r"] = s3.complete_multipart_upload(Bucket="race", Key=key, UploadId=up, MultipartUpload={"Parts": done})

            t = threading.Thread(target=complete)
            t.start()
            time.sleep(0.1 if i % 2 else 0.0)
            try:
                s3.upload_part(Bucket="race", Key=key, UploadId=up, PartNumber=2, Body=b"late part")
                outcomes["ok"] += 1
            except ClientError as e:
                assert code_of(e) == "NoSuchUpload"
                outcomes["gone"] += 1
            t.join()
            assert result["r"]["ETag"].strip('"').endswith("-1"), "Complete answers 200 once it published"
            assert s3.get_object(Bucket="race", Key=key)["Body"].read() == p1
            with pytest.raises(ClientError) as e:
                s3.list_parts(Bucket="race", Key=key, UploadId=up)
            assert code_of(e) == "NoSuchUpload"
        assert outcomes["gone"] > 0, outcomes
        assert upload_dirs(data) == [], "no orphan upload or part directories"
    finally:
        srv.stop()


def test_d3_many_concurrent_parts_and_complete(tmp_path):
    data = tmp_path / "data"
    srv = Server(data).start()
    s3 = srv.client()
    try:
        s3.create_bucket(Bucket="race")
        p1 = random_bytes(5 * MiB)
        for i in range(15):
            key = f"m{i}.bin"
            up, done = upload_parts(s3, "race", key, [p1])
            errors = []

            def late(n):
                try:
                    s3.upload_part(Bucket="race", Key=key, UploadId=up, PartNumber=n, Body=b"x" * 1000)
                except ClientError as e:
                    if code_of(e) != "NoSuchUpload":
                        errors.append(e)

            threads = [threading.Thread(target=late, args=(n,)) for n in (2, 3, 4)]
            for t in threads:
                t.start()
            r = s3.complete_multipart_upload(Bucket="race", Key=key, UploadId=up, MultipartUpload={"Parts": done})
            for t in threads:
                t.join()
            assert not errors, errors
            assert r["ETag"].strip('"').endswith("-1")
            assert s3.get_object(Bucket="race", Key=key)["Body"].read() == p1
        assert upload_dirs(data) == []
        assert s3.list_multipart_uploads(Bucket="race").get("Uploads", []) == []
    finally:
        srv.stop()
