"""The filesystem backend as an operator sees it: layout, xattrs, safety."""

import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests
from botocore.exceptions import ClientError

import sigv4
from conftest import Server, random_bytes, BIN


def xattr_doc(path):
    raw = os.getxattr(path, "user.dg.metadata")
    return json.loads(raw)


def test_object_is_a_file_with_metadata_xattr(server, s3, bucket):
    data = b"nightly dump"
    s3.put_object(Bucket=bucket, Key="nightly/dump.txt", Body=data, Metadata={"k": "v"}, ContentType="application/sql")  # not a delta type: stored whole (test_delta.py covers deltas)
    path = server.data_dir / bucket / "nightly" / "dump.txt"
    assert path.read_bytes() == data
    doc = xattr_doc(path)
    assert doc["v"] == 1
    assert doc["size"] == len(data)
    assert doc["etag"] == hashlib.md5(data).hexdigest()
    assert doc["user"] == {"k": "v"}
    assert doc["content_type"] == "application/sql"
    # the same check the encryption guide runs, with the attr tools
    out = subprocess.run(["getfattr", "--only-values", "-n", "user.dg.metadata", str(path)], capture_output=True, check=True)
    assert json.loads(out.stdout)["etag"] == doc["etag"]
    # nothing internal shows up in listings
    assert [b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].startswith(".")] == []


def test_hand_placed_files_are_served(server, s3, bucket):
    d = server.data_dir / bucket / "manual"
    d.mkdir(parents=True)
    (d / "placed.txt").write_bytes(b"placed by hand")
    g = s3.get_object(Bucket=bucket, Key="manual/placed.txt")
    assert g["Body"].read() == b"placed by hand"
    assert g["ETag"].endswith('-1"')
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="manual/")["Contents"]]
    assert keys == ["manual/placed.txt"]


@pytest.mark.parametrize("key", ["../escape", "a/../../escape", "./x", "a//b", "/lead", "a/./b"])
def test_path_traversal_refused(server, bucket, key):
    import http.client
    import urllib.parse
    path = f"/{bucket}/{urllib.parse.quote(key, safe='/')}"
    url = f"{server.url}{path}"
    h, *_ = sigv4.sign("PUT", url, {}, hashlib.sha256(b"evil").hexdigest())
    # http.client sends the path as written (requests would normalize the dot segments away)
    conn = http.client.HTTPConnection(*server.addr.rsplit(":", 1))
    conn.request("PUT", path, body=b"evil", headers=h)
    r = conn.getresponse()
    text = r.read().decode()
    assert r.status == 400, text
    assert "<Code>InvalidObjectName</Code>" in text
    # nothing was written anywhere outside the bucket
    for root, _dirs, files in os.walk(server.data_dir.parent):
        for f in files:
            p = os.path.join(root, f)
            if os.path.getsize(p) == 4:
                assert open(p, "rb").read() != b"evil"


def test_key_too_long(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="a" * 300, Body=b"x")
    assert e.value.response["Error"]["Code"] == "KeyTooLongError"


def test_key_prefix_collision(s3, bucket):
    s3.put_object(Bucket=bucket, Key="col", Body=b"file")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="col/child", Body=b"x")
    assert e.value.response["Error"]["Code"] == "KeyConflict"
    s3.put_object(Bucket=bucket, Key="dir/child", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="dir", Body=b"x")
    assert e.value.response["Error"]["Code"] == "KeyConflict"
    assert s3.get_object(Bucket=bucket, Key="col")["Body"].read() == b"file"


def test_concurrent_puts_leave_one_whole_version(server, s3, bucket):
    bodies = [bytes([i]) * (2 * 1024 * 1024 + i) for i in range(6)]
    errs = []

    def put(b):
        try:
            server.client().put_object(Bucket=bucket, Key="race", Body=b)
        except Exception as e:  # noqa
            errs.append(e)

    ts = [threading.Thread(target=put, args=(b,)) for b in bodies]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert not errs
    got = s3.get_object(Bucket=bucket, Key="race")["Body"].read()
    assert got in bodies
    assert xattr_doc(server.data_dir / bucket / "race")["size"] == len(got)


def _raw_put_slow(addr, bucket, key, total, sent_first, stop):
    """Sends a signed PUT whose body trickles; returns when `stop` is set."""
    host, port = addr.rsplit(":", 1)
    url = f"http://{addr}/{bucket}/{key}"
    h, *_ = sigv4.sign("PUT", url, {"content-length": str(total)}, "UNSIGNED-PAYLOAD")
    s = socket.create_connection((host, int(port)))
    req = f"PUT /{bucket}/{key} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    s.sendall(req.encode())
    chunk = b"N" * (1024 * 1024)
    sent = 0
    while not stop.is_set() and sent < total - len(chunk):
        s.sendall(chunk)
        sent += len(chunk)
        if sent >= 8 * len(chunk):
            sent_first.set()
            time.sleep(0.05)
    s.close()


def test_kill_during_put_keeps_old_version(tmp_path):
    srv = Server(tmp_path / "data").start()
    s3 = srv.client()
    s3.create_bucket(Bucket="crash")
    old = random_bytes(1000)
    s3.put_object(Bucket="crash", Key="obj", Body=old)
    sent, stop = threading.Event(), threading.Event()
    t = threading.Thread(target=_raw_put_slow, args=(srv.addr, "crash", "obj", 512 * 1024 * 1024, sent, stop), daemon=True)
    t.start()
    assert sent.wait(20)
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait()
    stop.set()
    t.join(5)
    # the old version is intact on disk and no partial object is visible
    assert (tmp_path / "data" / "crash" / "obj").read_bytes() == old
    assert os.listdir(tmp_path / "data" / "crash") == ["obj"]
    leftovers = os.listdir(tmp_path / "data" / ".dg" / "tmp")
    assert leftovers, "the interrupted write left its temp file (cleaned at next start)"
    srv2 = Server(tmp_path / "data").start()
    try:
        s3 = srv2.client()
        assert s3.get_object(Bucket="crash", Key="obj")["Body"].read() == old
        assert os.listdir(tmp_path / "data" / ".dg" / "tmp") == []
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="crash")["Contents"]] == ["obj"]
    finally:
        srv2.stop()


def test_refuses_to_start_without_credentials(tmp_path):
    env = {"DGP_ACCESS_KEY_ID": None, "DGP_SECRET_ACCESS_KEY": None}
    srv = Server(tmp_path / "d", env=env)
    with pytest.raises(RuntimeError) as e:
        srv.start(timeout=10)
    msg = str(e.value)
    assert "DGP_ACCESS_KEY_ID" in msg and "--open-access" in msg
    assert srv.proc.returncode != 0


def test_open_access_is_explicit_and_loud(tmp_path):
    env = {"DGP_ACCESS_KEY_ID": None, "DGP_SECRET_ACCESS_KEY": None}
    srv = Server(tmp_path / "d", env=env, args=["--open-access"]).start()
    try:
        assert "OPEN ACCESS" in srv.output()
        assert requests.put(f"{srv.url}/openb").status_code == 200
        assert requests.put(f"{srv.url}/openb/k", data=b"hi").status_code == 200
        assert requests.get(f"{srv.url}/openb/k").content == b"hi"
    finally:
        srv.stop()


def test_sigterm_exits_cleanly(tmp_path):
    srv = Server(tmp_path / "d").start()
    assert srv.stop(signal.SIGTERM) == 0
    assert "stopped" in srv.output()


def test_sd_notify_ready_and_stopping(tmp_path):
    """Type=notify: READY=1 once listening, STOPPING=1 on SIGTERM, over the
    NOTIFY_SOCKET datagram protocol systemd uses."""
    sock_path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(sock_path)
    s.settimeout(10)
    srv = Server(tmp_path / "d", env={"NOTIFY_SOCKET": sock_path}).start()
    try:
        assert b"READY=1" in s.recv(4096)
    finally:
        srv.stop()
    assert b"STOPPING=1" in s.recv(4096)
    s.close()


def test_status_endpoint_and_free_space_guard(tmp_path):
    import textwrap
    cfg = tmp_path / "dgp.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        storage:
          filesystem: {tmp_path / 'data'}
        advanced:
          min_free_space_mb: 1000000000
    """))
    srv = Server(tmp_path / "unused", config=cfg).start()
    try:
        url = f"{srv.url}/_/api/status"
        assert requests.get(url).status_code == 401
        h, *_ = sigv4.sign("GET", url, {}, hashlib.sha256(b"").hexdigest())
        r = requests.get(url, headers=h)
        assert r.status_code == 200, r.text
        st = r.json()
        assert st["version"] and st["uptime_secs"] >= 0 and st["memory_rss_bytes"] > 0
        b = st["backends"][0]
        assert b["disk_total_bytes"] > b["disk_free_bytes"] > 0
        # a reserve larger than the disk: every write is refused before it starts
        s3 = srv.client()
        s3.create_bucket(Bucket="full")
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket="full", Key="k", Body=b"x" * 1000)
        assert e.value.response["Error"]["Code"] == "InsufficientStorage"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 507
        assert not (tmp_path / "data" / "full" / "k").exists()
        assert "nearly full" in srv.output()
    finally:
        srv.stop()
