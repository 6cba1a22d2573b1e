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


# ---------------------------------------------------------------- D4


def test_d4_symlinks_in_the_data_directory_are_never_followed(tmp_path):
    data = tmp_path / "data"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"outside the root")
    srv = Server(data).start()
    s3 = srv.client()
    try:
        s3.create_bucket(Bucket="links")
        s3.put_object(Bucket="links", Key="ok.txt", Body=b"fine")
        os.symlink(outside, data / "links" / "extdir")
        os.symlink(outside / "secret.txt", data / "links" / "file-link.txt")
        for key in ["extdir/secret.txt", "file-link.txt"]:
            with pytest.raises(ClientError) as e:
                s3.get_object(Bucket="links", Key=key)
            assert code_of(e) == "AccessDenied", key
            with pytest.raises(ClientError) as e:
                s3.head_object(Bucket="links", Key=key)
            assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
            with pytest.raises(ClientError) as e:
                s3.copy_object(Bucket="links", Key="copied.txt", CopySource={"Bucket": "links", "Key": key})
            assert code_of(e) == "AccessDenied"
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket="links", Key="extdir/new.txt", Body=b"escape")
        assert code_of(e) == "AccessDenied"
        assert not (outside / "new.txt").exists()
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket="links", Key="file-link.txt", Body=b"overwrite")
        assert code_of(e) == "AccessDenied"
        with pytest.raises(ClientError) as e:
            s3.delete_object(Bucket="links", Key="extdir/secret.txt")
        assert code_of(e) == "AccessDenied"
        r = s3.delete_objects(Bucket="links", Delete={"Objects": [{"Key": "extdir/secret.txt"}]})
        assert [x["Code"] for x in r.get("Errors", [])] == ["AccessDenied"]
        assert (outside / "secret.txt").read_bytes() == b"outside the root"
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="links")["Contents"]] == ["ok.txt"]
        # a bucket directory that is a link is not a bucket
        os.symlink(outside, data / "linked-bucket")
        assert "linked-bucket" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket="linked-bucket", Key="secret.txt")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] in (403, 404)
        assert "symbolic link" in srv.output()
    finally:
        srv.stop()


# ---------------------------------------------------------------- D5


def boto(url, region, **kw):
    import boto3
    from botocore.config import Config
    from conftest import ACCESS_KEY, SECRET_KEY
    return boto3.client("s3", endpoint_url=url, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                        region_name=region, config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}, **kw))


def test_d5_credential_scope_region_is_checked(server):
    import requests
    bad = boto(server.url, "mars-1")
    with pytest.raises(ClientError) as e:
        bad.list_buckets()
    assert code_of(e) == "AuthorizationHeaderMalformed"
    assert "expecting 'us-east-1'" in e.value.response["Error"]["Message"]
    url = bad.generate_presigned_url("list_buckets")
    r = requests.get(url)
    assert r.status_code == 400 and "AuthorizationQueryParametersError" in r.text and "mars-1" in r.text
    assert boto(server.url, "us-east-1").list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_d5_region_is_a_setting(tmp_path):
    cfg = tmp_path / "dgp.yaml"
    cfg.write_text(f"storage:\n  filesystem: {tmp_path / 'data'}\nadvanced:\n  region: eu-central-1\n")
    srv = Server(tmp_path / "unused", config=cfg).start()
    try:
        ok = boto(srv.url, "eu-central-1")
        ok.create_bucket(Bucket="regional", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
        assert ok.get_bucket_location(Bucket="regional")["LocationConstraint"] == "eu-central-1"
        with pytest.raises(ClientError) as e:
            boto(srv.url, "us-east-1").list_buckets()
        assert code_of(e) == "AuthorizationHeaderMalformed"
        assert "expecting 'eu-central-1'" in e.value.response["Error"]["Message"]
    finally:
        srv.stop()


# ---------------------------------------------------------------- D6


@pytest.mark.parametrize("name", ["sthree-x", "x--ol-s3", "x--x-s3", "x.mrap", "abc-s3alias", "xn--abc", "amzn-s3-demo-x"])
def test_d6_create_bucket_uses_the_config_rule(server, tmp_path, name):
    from test_config import lint
    # a raw request: boto3 treats some of these names specially (--x-s3 is an S3 Express bucket to it)
    r = signed("PUT", f"{server.url}/{name}")
    assert r.status_code == 400 and "<Code>InvalidBucketName</Code>" in r.text, r.text
    cfg = tmp_path / "dgp.yaml"
    cfg.write_text(f"storage:\n  filesystem: {tmp_path / 'data'}\n  buckets:\n    {name}: {{}}\n")
    r = lint(cfg, env={"DGP_ACCESS_KEY_ID": "a", "DGP_SECRET_ACCESS_KEY": "b"})
    assert r.returncode != 0 and name in (r.stdout + r.stderr)


def test_d6_key_id_rule_is_shared(tmp_path):
    from test_config import lint
    for bad in ["a/b", "k" * 65, "a b"]:
        cfg = enc_config(tmp_path, tmp_path / "data", key_id=f'"{bad}"')
        r = lint(cfg, env={"DGP_ENCRYPTION_KEY": K1, "DGP_ACCESS_KEY_ID": "a", "DGP_SECRET_ACCESS_KEY": "b"})
        assert r.returncode != 0 and "key_id" in (r.stdout + r.stderr), bad


# ---------------------------------------------------------------- D7


def signed(method, url, body=b""):
    import hashlib
    import requests
    import sigv4
    h, *_ = sigv4.sign(method, url, {}, hashlib.sha256(body).hexdigest())
    return requests.request(method, url, headers=h, data=body)


def test_d7_every_xml_document_parses(server, s3, bucket):
    import xml.etree.ElementTree as ET
    r = signed("GET", f"{server.url}/{bucket}/x%00y")
    assert r.status_code == 400
    root = ET.fromstring(r.content)
    assert root.find("Code").text == "InvalidObjectName"
    assert root.find("Key").text == "x%00y"
    r = signed("GET", f"{server.url}/{bucket}/a%01b")
    assert r.status_code == 404
    assert ET.fromstring(r.content).find("Key").text == "a%01b"
    # a key with control characters lists as a parseable document either way
    s3.put_object(Bucket=bucket, Key="ctl\x01\rkey.txt", Body=b"x")
    plain = signed("GET", f"{server.url}/{bucket}?list-type=2")
    keys = [e.text for e in ET.fromstring(plain.content).iter("{http://s3.amazonaws.com/doc/2006-03-01/}Key")]
    assert keys == ["ctl%01\rkey.txt"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["ctl\x01\rkey.txt"]
    s3.delete_object(Bucket=bucket, Key="ctl\x01\rkey.txt")


# ---------------------------------------------------------------- D8


def limits_config(tmp_path, **adv):
    lines = [f"storage:\n  filesystem: {tmp_path / 'data'}\nadvanced:"] + [f"  {k}: {v}" for k, v in adv.items()]
    cfg = tmp_path / f"dgp-{secrets.token_hex(3)}.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def closed_by_server(sock, within):
    import socket
    sock.settimeout(within)
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_d8_idle_and_slow_connections_do_not_stop_clients(tmp_path):
    import socket
    cfg = limits_config(tmp_path, header_read_timeout_secs=2, idle_timeout_secs=1, max_connections=1000)
    srv = Server(tmp_path / "unused", config=cfg).start()
    socks = []
    try:
        for i in range(300):
            s = socket.create_connection(("127.0.0.1", srv.port))
            if i % 6 == 0:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Partial: ")
            socks.append(s)
        s3 = srv.client()
        s3.create_bucket(Bucket="busy")
        for i in range(20):
            s3.put_object(Bucket="busy", Key=f"k{i}.txt", Body=b"v" * i)
            assert s3.get_object(Bucket="busy", Key=f"k{i}.txt")["Body"].read() == b"v" * i
        # a client trickling its headers is cut off by the header deadline
        trickle = socket.create_connection(("127.0.0.1", srv.port))
        trickle.settimeout(0.5)
        cut = False
        for b in b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 40:
            try:
                trickle.sendall(bytes([b]))
                time.sleep(0.25)
            except (BrokenPipeError, ConnectionResetError):
                cut = True
                break
        assert cut or closed_by_server(trickle, 3), "trickled headers must hit the header deadline"
        assert all(closed_by_server(s, 4) for s in socks), "idle and partial connections are closed"
        assert s3.list_objects_v2(Bucket="busy")["KeyCount"] == 20
    finally:
        for s in socks:
            s.close()
        srv.stop()


def test_d8_connection_cap_queues_instead_of_failing(tmp_path):
    import socket
    cfg = limits_config(tmp_path, idle_timeout_secs=2, max_connections=4)
    srv = Server(tmp_path / "unused", config=cfg).start()
    socks = []
    try:
        socks = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(4)]
        time.sleep(0.2)
        t = time.monotonic()
        s3 = srv.client()
        assert s3.list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert time.monotonic() - t >= 1.0, "a fifth connection waits for a slot"
        assert "connection limit reached" in srv.output()
    finally:
        for s in socks:
            s.close()
        srv.stop()


@pytest.mark.parametrize("field", ["header_read_timeout_secs", "idle_timeout_secs", "max_connections"])
def test_d8_limits_are_checked_by_lint(tmp_path, field):
    from test_config import lint
    r = lint(limits_config(tmp_path, **{field: 0}), env={"DGP_ACCESS_KEY_ID": "a", "DGP_SECRET_ACCESS_KEY": "b"})
    assert r.returncode != 0 and f"advanced.{field}" in (r.stdout + r.stderr)


# ---------------------------------------------------------------- also seen


@pytest.mark.parametrize("doc", [
    b"<Wrong><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></Wrong>",
    b'<CompleteMultipartUpload xmlns="http://example.com/"><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>',
])
def test_complete_with_wrong_root_or_namespace_is_malformed(server, s3, bucket, doc):
    up = s3.create_multipart_upload(Bucket=bucket, Key="m.bin")["UploadId"]
    r = signed("POST", f"{server.url}/{bucket}/m.bin?uploadId={up}", doc)
    assert r.status_code == 400 and "<Code>MalformedXML</Code>" in r.text


@pytest.mark.parametrize("doc", [
    b"<NotDelete><Object><Key>a</Key></Object></NotDelete>",
    b'<Delete xmlns="urn:other"><Object><Key>a</Key></Object></Delete>',
])
def test_delete_objects_with_wrong_root_or_namespace_is_malformed(server, s3, bucket, doc):
    import base64
    import hashlib
    import requests
    import sigv4
    s3.put_object(Bucket=bucket, Key="a", Body=b"keep")
    url = f"{server.url}/{bucket}?delete"
    md5 = base64.b64encode(hashlib.md5(doc).digest()).decode()
    h, *_ = sigv4.sign("POST", url, {"content-md5": md5}, hashlib.sha256(doc).hexdigest())
    r = requests.post(url, headers=h, data=doc)
    assert r.status_code == 400 and "<Code>MalformedXML</Code>" in r.text
    assert s3.get_object(Bucket=bucket, Key="a")["Body"].read() == b"keep"


def test_status_names_backends_without_paths(tmp_path):
    import hashlib
    import requests
    import sigv4
    srv = Server(tmp_path / "data").start()
    try:
        url = f"{srv.url}/_/api/status"
        h, *_ = sigv4.sign("GET", url, {}, hashlib.sha256(b"").hexdigest())
        r = requests.get(url, headers=h)
        assert r.status_code == 200
        assert str(tmp_path) not in r.text
        assert [b["name"] for b in r.json()["backends"]] == ["default"]
    finally:
        srv.stop()


def test_d3_orphans_and_trash_are_cleaned_at_startup(tmp_path):
    data = tmp_path / "data"
    srv = Server(data).start()
    s3 = srv.client()
    s3.create_bucket(Bucket="mpu")
    up, _ = upload_parts(s3, "mpu", "live.bin", [b"part one"])
    srv.stop()
    # what crashes leave: an upload directory without state, an abort half deleted
    orphan = data / ".dg" / "multipart" / ("0" * 32)
    orphan.mkdir()
    (orphan / "part-00001").write_bytes(b"lost part")
    trash = data / ".dg" / "multipart-trash" / "x-1"
    trash.mkdir(parents=True)
    (trash / "part-00002").write_bytes(b"aborted")
    srv = Server(data).start()
    try:
        assert upload_dirs(data) == [up], "the live upload stays, the orphan goes"
        assert list((data / ".dg" / "multipart-trash").iterdir()) == []
        s3 = srv.client()
        assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="mpu")["Uploads"]] == [up]
    finally:
        srv.stop()


# ------------------------------------------------- slow clients (issue 12)


def test_slow_clients_do_not_pin_the_server(tmp_path):
    """300 uploads that stall mid-body (600 blocking threads' worth, more than
    the pool's 512, when each upload held its writer and MD5 threads) and 50
    downloads that never read: other clients are still served."""
    import socket
    import sigv4
    srv = Server(tmp_path / "data").start()
    socks = []
    try:
        s3 = srv.client()
        s3.create_bucket(Bucket="slow")
        s3.put_object(Bucket="slow", Key="big.bin", Body=random_bytes(16 * MiB))
        chunk = b"\0" * (2 * MiB)
        for i in range(300):
            url = f"{srv.url}/slow/stalled-{i}.bin"
            h, *_ = sigv4.sign("PUT", url, {"content-length": str(100 * MiB)}, "UNSIGNED-PAYLOAD")
            s = socket.create_connection(("127.0.0.1", srv.port))
            head = f"PUT /slow/stalled-{i}.bin HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
            s.sendall(head.encode() + chunk)
            socks.append(s)
        for i in range(50):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", srv.port))
            h, *_ = sigv4.sign("GET", f"{srv.url}/slow/big.bin", {}, "UNSIGNED-PAYLOAD")
            s.sendall(("GET /slow/big.bin HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n").encode())
            socks.append(s)
        time.sleep(1)
        fresh = srv.client()
        for i in range(5):
            data = random_bytes(3 * MiB)
            fresh.put_object(Bucket="slow", Key=f"ok-{i}.bin", Body=data)
            assert fresh.get_object(Bucket="slow", Key=f"ok-{i}.bin")["Body"].read() == data
    finally:
        for s in socks:
            s.close()
        srv.stop()
    # nothing half-written became visible
    assert not list((tmp_path / "data" / "slow").glob("stalled-*"))


def test_log_lines_carry_the_request_id_the_client_got(tmp_path):
    data = tmp_path / "data"
    srv = Server(data).start()
    try:
        s3 = srv.client()
        s3.create_bucket(Bucket="logs")
        s3.put_object(Bucket="logs", Key="damaged.txt", Body=b"x" * 5000)
        with open(data / "logs" / "damaged.txt", "r+b") as f:
            f.truncate(100)
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket="logs", Key="damaged.txt")
        assert code_of(e) == "InternalError"
        rid = e.value.response["ResponseMetadata"]["RequestId"]
        assert rid
        time.sleep(0.2)
        lines = [l for l in srv.output().splitlines() if rid in l]
        assert any("file holds 100 bytes" in l for l in lines), lines
        assert any("request failed" in l for l in lines), lines
    finally:
        srv.stop()


def test_free_space_guard_covers_copies_and_completion(tmp_path):
    data = tmp_path / "data"
    srv = Server(data).start()
    s3 = srv.client()
    s3.create_bucket(Bucket="fill")
    s3.put_object(Bucket="fill", Key="src.txt", Body=b"s" * 10000)
    up, done = upload_parts(s3, "fill", "mp.bin", [b"p" * 1000])
    srv.stop()
    cfg = tmp_path / "full.yaml"
    cfg.write_text(f"storage:\n  filesystem: {data}\nadvanced:\n  min_free_space_mb: 1000000000\n")
    srv = Server(tmp_path / "unused", config=cfg).start()
    s3 = srv.client()
    try:
        with pytest.raises(ClientError) as e:
            s3.copy_object(Bucket="fill", Key="copy.txt", CopySource={"Bucket": "fill", "Key": "src.txt"})
        assert code_of(e) == "InsufficientStorage"
        with pytest.raises(ClientError) as e:
            s3.upload_part_copy(Bucket="fill", Key="mp.bin", UploadId=up, PartNumber=2,
                                CopySource={"Bucket": "fill", "Key": "src.txt"})
        assert code_of(e) == "InsufficientStorage"
        with pytest.raises(ClientError) as e:
            s3.complete_multipart_upload(Bucket="fill", Key="mp.bin", UploadId=up, MultipartUpload={"Parts": done})
        assert code_of(e) == "InsufficientStorage"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 507
        # nothing lost: the upload is still there to complete later
        assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="fill")["Uploads"]] == [up]
        assert not (data / "fill" / "copy.txt").exists() and not (data / "fill" / "mp.bin").exists()
    finally:
        srv.stop()


def test_max_request_body_mb_is_enforced(tmp_path):
    """advanced.max_request_body_mb was parsed and ignored (issue 13's first defect)."""
    cfg = tmp_path / "dgp.yaml"
    cfg.write_text(f"storage:\n  filesystem: {tmp_path / 'data'}\nadvanced:\n  max_request_body_mb: 1\n")
    srv = Server(tmp_path / "unused", config=cfg).start()
    try:
        s3 = srv.client()
        s3.create_bucket(Bucket="limits")
        s3.put_object(Bucket="limits", Key="small.bin", Body=b"x" * MiB)
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket="limits", Key="big.bin", Body=b"x" * (MiB + 1))
        assert code_of(e) == "EntityTooLarge"
        up = s3.create_multipart_upload(Bucket="limits", Key="mp.bin")["UploadId"]
        with pytest.raises(ClientError) as e:
            s3.upload_part(Bucket="limits", Key="mp.bin", UploadId=up, PartNumber=1, Body=b"x" * (2 * MiB))
        assert code_of(e) == "EntityTooLarge"
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="limits")["Contents"]] == ["small.bin"]
    finally:
        srv.stop()
