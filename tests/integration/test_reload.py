"""Config reload (SIGHUP and POST /_/api/config/reload): backends, routes,
aliases, credentials and keys change without a restart; requests in flight
finish on the configuration they started with; a broken file keeps the
running configuration and says why."""

import hashlib
import os
import signal
import threading
import time

import botocore.exceptions
import pytest
import requests

import sigv4
from conftest import ACCESS_KEY, SECRET_KEY, Server, make_client, random_bytes

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))


def write_key(path, key):
    path.write_bytes(key)
    os.chmod(path, 0o600)
    return path


def config_text(tmp, extra_backend=False, route=None, key_file=None, access=None):
    """One filesystem backend `local` (plaintext); optionally an encrypted
    `extra` backend and buckets routed to it."""
    lines = []
    if access:
        lines += ["access:", f"  access_key_id: {access[0]}", f"  secret_access_key: {access[1]}"]
    lines += ["storage:", "  default_backend: local", "  backends:",
              "    - name: local", "      type: filesystem", f"      path: {tmp / 'local'}"]
    if extra_backend:
        lines += ["    - name: extra", "      type: filesystem", f"      path: {tmp / 'extra'}",
                  f"      encryption: {{mode: aes256-gcm-proxy, key_id: extra-1, key_file: {key_file}}}"]
    if route:
        lines += ["  buckets:"]
        for name, (backend, alias) in route.items():
            lines += [f"    {name}: {{backend: {backend}" + (f", alias: {alias}" if alias else "") + "}"]
    return "\n".join(lines) + "\n"


def admin_reload(srv, access=ACCESS_KEY, secret=SECRET_KEY):
    url = f"{srv.url}/_/api/config/reload"
    h, *_ = sigv4.sign("POST", url, {}, hashlib.sha256(b"").hexdigest(), access=access, secret=secret)
    return requests.post(url, headers=h, timeout=60)


def hup(srv, expect, timeout=15):
    """Sends SIGHUP and waits for the log line `expect` to appear once more."""
    before = srv.output().count(expect)
    srv.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if srv.output().count(expect) > before:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {expect!r} after SIGHUP:\n" + srv.output()[-3000:])


def logged(srv, text, timeout=5):
    """The server's log gets `text` (read by a thread: give it a moment)."""
    deadline = time.time() + timeout
    while text not in srv.output():
        if time.time() > deadline:
            return False
        time.sleep(0.05)
    return True


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


@pytest.fixture
def running(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(config_text(tmp_path))
    srv = Server(tmp_path / "unused", config=cfg).start()
    yield srv, cfg, tmp_path
    srv.stop()


def test_sighup_adds_an_encrypted_backend_and_a_route(running):
    srv, cfg, tmp = running
    s3 = srv.client()
    s3.create_bucket(Bucket="old")
    s3.put_object(Bucket="old", Key="k", Body=b"before")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_bucket(Bucket="fresh")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404

    key = write_key(tmp / "extra.key", KEY_A)
    cfg.write_text(config_text(tmp, extra_backend=True, route={"fresh": ("extra", "fresh-on-extra")}, key_file=key))
    hup(srv, "configuration reloaded")

    s3.create_bucket(Bucket="fresh")
    s3.put_object(Bucket="fresh", Key="doc.txt", Body=b"routed after reload")
    assert s3.get_object(Bucket="fresh", Key="doc.txt")["Body"].read() == b"routed after reload"
    stored = tmp / "extra" / "fresh-on-extra" / "doc.txt"
    assert stored.read_bytes().startswith(b"DGE1"), "the new backend encrypts with the new key"
    assert not (tmp / "local" / "fresh").exists()
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert "fresh" in names and "old" in names and "fresh-on-extra" not in names
    assert s3.get_object(Bucket="old", Key="k")["Body"].read() == b"before"
    assert logged(srv, "NOTICE: encryption at rest enabled for the first time")


def test_broken_file_keeps_the_running_configuration(running):
    srv, cfg, tmp = running
    s3 = srv.client()
    s3.create_bucket(Bucket="keep")
    s3.put_object(Bucket="keep", Key="k", Body=b"still here")
    good = cfg.read_text()

    cfg.write_text(good + "storage: [this is: not valid\n")
    r = admin_reload(srv)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["reloaded"] is False
    assert "configuration" in body["error"]
    hup(srv, "config reload refused")
    assert s3.get_object(Bucket="keep", Key="k")["Body"].read() == b"still here"

    # A route to a backend that does not exist: refused by validation.
    cfg.write_text(config_text(tmp, route={"nowhere": ("missing", None)}))
    r = admin_reload(srv)
    assert r.status_code == 422
    assert "missing" in r.json()["error"]

    # An encrypted backend whose key file is absent: refused, nothing opened.
    cfg.write_text(config_text(tmp, extra_backend=True, route={"xbucket": ("extra", None)}, key_file=tmp / "nokey"))
    r = admin_reload(srv)
    assert r.status_code == 422
    assert "nokey" in r.json()["error"]
    assert not (tmp / "extra").exists()

    s3.put_object(Bucket="keep", Key="k2", Body=b"writes too")
    cfg.write_text(good)
    r = admin_reload(srv)
    assert r.status_code == 200
    assert r.json()["report"]["unchanged"] == ["local"]


def test_reload_api_requires_the_admin_signature(running):
    srv, _, _ = running
    r = requests.post(f"{srv.url}/_/api/config/reload", timeout=10)
    assert r.status_code == 401
    r = admin_reload(srv, secret="wrong-secret-wrong-secret")
    assert r.status_code == 403


def test_a_wrong_key_on_reload_is_refused_and_nothing_changes(running):
    srv, cfg, tmp = running
    key = write_key(tmp / "extra.key", KEY_A)
    cfg.write_text(config_text(tmp, extra_backend=True, route={"sealed": ("extra", None)}, key_file=key))
    assert admin_reload(srv).status_code == 200
    s3 = srv.client()
    s3.create_bucket(Bucket="sealed")
    s3.put_object(Bucket="sealed", Key="k", Body=b"secret")

    write_key(key, KEY_B)  # same key id, other bytes
    r = admin_reload(srv)
    assert r.status_code == 422
    assert "extra-1" in r.json()["error"]
    # still serving with the key that was in force
    assert s3.get_object(Bucket="sealed", Key="k")["Body"].read() == b"secret"
    s3.put_object(Bucket="sealed", Key="k2", Body=b"more")
    assert s3.get_object(Bucket="sealed", Key="k2")["Body"].read() == b"more"


def test_removing_a_route_and_a_backend(running):
    srv, cfg, tmp = running
    key = write_key(tmp / "extra.key", KEY_A)
    cfg.write_text(config_text(tmp, extra_backend=True, route={"gone": ("extra", None)}, key_file=key))
    assert admin_reload(srv).status_code == 200
    s3 = srv.client()
    s3.create_bucket(Bucket="gone")
    s3.put_object(Bucket="gone", Key="k", Body=b"x")

    cfg.write_text(config_text(tmp))
    r = admin_reload(srv)
    assert r.status_code == 200
    assert r.json()["report"]["removed"] == ["extra"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket="gone", Key="k")
    assert error_code(e) == "NoSuchBucket"
    assert (tmp / "extra" / "gone" / "k").exists(), "removing a backend from the config deletes nothing"


def test_settings_that_need_a_restart_are_reported(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(config_text(tmp_path))
    srv = Server(tmp_path / "unused", config=cfg).start()
    try:
        # (Server.start passes --listen itself, and the override wins over
        # the file: change a setting a reload cannot apply instead.)
        cfg.write_text(config_text(tmp_path) + "fuse:\n  mountpoint: /nonexistent-mount\n")
        r = admin_reload(srv)
        assert r.status_code == 200, r.text
        assert "fuse" in r.json()["report"]["restart_required"]
        assert logged(srv, "takes effect at the next restart")
    finally:
        srv.stop()


def test_credentials_from_the_file_change_on_reload(tmp_path):
    old = ("reloadadmin", "reload-secret-one-" + "a" * 20)
    new = ("reloadadmin", "reload-secret-two-" + "b" * 20)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(config_text(tmp_path, access=old))
    srv = Server(tmp_path / "unused", config=cfg,
                 env={"DGP_ACCESS_KEY_ID": None, "DGP_SECRET_ACCESS_KEY": None}).start()
    try:
        before = make_client(srv.url, access=old[0], secret=old[1])
        before.create_bucket(Bucket="creds")
        cfg.write_text(config_text(tmp_path, access=new))
        assert admin_reload(srv, access=old[0], secret=old[1]).status_code == 200
        with pytest.raises(botocore.exceptions.ClientError) as e:
            before.list_objects_v2(Bucket="creds")
        assert error_code(e) == "SignatureDoesNotMatch"
        after = make_client(srv.url, access=new[0], secret=new[1])
        assert after.list_objects_v2(Bucket="creds")["KeyCount"] == 0
    finally:
        srv.stop()


def test_requests_in_flight_finish_across_a_reload(running):
    """A slow download and a multipart upload that straddle reloads (one of
    them removing the route the requests came in on) complete intact."""
    srv, cfg, tmp = running
    key = write_key(tmp / "extra.key", KEY_A)
    route = {"busy": ("extra", None)}
    cfg.write_text(config_text(tmp, extra_backend=True, route=route, key_file=key))
    assert admin_reload(srv).status_code == 200
    s3 = srv.client()
    s3.create_bucket(Bucket="busy")
    data = random_bytes(24 * 1024 * 1024)
    s3.put_object(Bucket="busy", Key="big", Body=data)

    up = s3.create_multipart_upload(Bucket="busy", Key="mp")["UploadId"]
    part1 = random_bytes(5 * 1024 * 1024)
    e1 = s3.upload_part(Bucket="busy", Key="mp", UploadId=up, PartNumber=1, Body=part1)["ETag"]

    body = s3.get_object(Bucket="busy", Key="big")["Body"]
    got = [body.read(1024 * 1024)]
    reloads = []

    def reload_twice():
        # An alias change for the bucket in flight, then back.
        cfg.write_text(config_text(tmp, extra_backend=True, route={"busy": ("extra", None), "other": ("local", None)},
                                   key_file=key))
        reloads.append(admin_reload(srv).status_code)
        cfg.write_text(config_text(tmp, extra_backend=True, route=route, key_file=key))
        reloads.append(admin_reload(srv).status_code)

    t = threading.Thread(target=reload_twice)
    t.start()
    while True:
        chunk = body.read(256 * 1024)
        if not chunk:
            break
        got.append(chunk)
        time.sleep(0.005)
    t.join()
    assert reloads == [200, 200]
    assert hashlib.sha256(b"".join(got)).digest() == hashlib.sha256(data).digest()

    part2 = b"tail"
    e2 = s3.upload_part(Bucket="busy", Key="mp", UploadId=up, PartNumber=2, Body=part2)["ETag"]
    s3.complete_multipart_upload(Bucket="busy", Key="mp", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    assert s3.get_object(Bucket="busy", Key="mp")["Body"].read() == part1 + part2


def test_bucket_policies_change_on_reload(running):
    """public_prefixes and the delta policy of a bucket follow the file."""
    srv, cfg, tmp = running
    s3 = srv.client()
    s3.create_bucket(Bucket="site")
    s3.put_object(Bucket="site", Key="pub/index.html", Body=b"<h1>hi</h1>")
    url = f"{srv.url}/site/pub/index.html"
    assert requests.get(url, timeout=10).status_code == 403

    base = config_text(tmp)
    cfg.write_text(base + "  buckets:\n    site: {public_prefixes: [\"pub/\"], compression: false}\n")
    assert admin_reload(srv).json()["report"]["changed"] == ["local"]
    r = requests.get(url, timeout=10)
    assert r.status_code == 200 and r.content == b"<h1>hi</h1>"
    assert requests.get(f"{srv.url}/site/other", timeout=10).status_code == 403
    # compression off: a near-identical second version is stored whole
    v1 = random_bytes(1024 * 1024)
    s3.put_object(Bucket="site", Key="rel/a.zip", Body=v1)
    s3.put_object(Bucket="site", Key="rel/b.zip", Body=v1[:-4] + b"tail")
    stored = tmp / "local" / "site" / "rel" / "b.zip"
    assert stored.stat().st_size >= 1024 * 1024, "stored whole with compression off"

    cfg.write_text(base)
    assert admin_reload(srv).status_code == 200
    assert requests.get(url, timeout=10).status_code == 403
    s3.put_object(Bucket="site", Key="rel/c.zip", Body=v1[:-4] + b"more")
    assert (tmp / "local" / "site" / "rel" / "c.zip").stat().st_size < 64 * 1024, "delta again"
