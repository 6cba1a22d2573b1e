"""Moving a bucket between backends (`deltaglider_proxy bucket migrate`,
`POST /_/api/migrate`): every object copied and re-encrypted for the
destination, the bucket write-gated while it runs, resumable after kill -9,
verified, then the route switches; clients keep the bucket name, the
objects' ETags, metadata and Last-Modified."""

import hashlib
import io
import json
import os
import signal
import subprocess
import time
import uuid

import boto3
import botocore.exceptions
import pytest
import requests

import sigv4
from conftest import BIN, Server, random_bytes
from test_s3_backend import Upstream, backend_yaml, wait_log

MiB = 1024 * 1024
VAULT_KEY = bytes(range(7, 39))
OFFSITE_KEY = "33" * 32


def write_config(tmp, with_offsite=None):
    key = tmp / "vault.key"
    key.write_bytes(VAULT_KEY)
    os.chmod(key, 0o600)
    cfg = tmp / "config.yaml"
    cfg.write_text(f"""
storage:
  default_backend: local
  backends:
    - name: local
      type: filesystem
      path: {tmp / 'local'}
    - name: vault
      type: filesystem
      path: {tmp / 'vault'}
      encryption: {{mode: aes256-gcm-proxy, key_id: vault-1, key_file: {key}}}
{backend_yaml(with_offsite) if with_offsite else ''}
advanced:
  spool_dir: {tmp / 'spool'}
""")
    return cfg


def serve(tmp, with_offsite=None):
    cfg = write_config(tmp, with_offsite)
    return Server(tmp / "unused", config=cfg, env={"DGP_BACKEND_OFFSITE_ENCRYPTION_KEY": OFFSITE_KEY}).start()


def cli(srv, *args, env=None, check=True, **kw):
    e = dict(srv.env)
    e.update(env or {})
    p = subprocess.run([str(BIN), "bucket", *args, "--config", str(srv.config)], env=e,
                       capture_output=True, text=True, timeout=300, **kw)
    if check:
        assert p.returncode == 0, p.stdout + p.stderr
    return p


def admin(srv, method, path):
    url = f"{srv.url}{path}"
    h, *_ = sigv4.sign(method, url, {}, hashlib.sha256(b"").hexdigest())
    return requests.request(method, url, headers=h, timeout=60)


def fill(s3, bucket):
    """A bit of everything: small, empty, folder marker, metadata, a
    multipart object, a delta pair. Returns key -> (bytes, head)."""
    s3.create_bucket(Bucket=bucket)
    v1 = b"PK\x03\x04" + random_bytes(2 * MiB)
    objs = {
        "small.txt": b"hello",
        "empty": b"",
        "dir/": b"",
        "meta/doc.json": b'{"a": 1}',
        "fw/v1.zip": v1,
        "fw/v2.zip": v1[:MiB] + b"patched" + v1[MiB + 7:],
    }
    for k, body in objs.items():
        extra = {"ContentType": "application/json", "Metadata": {"owner": "ops"}} if k.startswith("meta/") else {}
        s3.put_object(Bucket=bucket, Key=k, Body=body, **extra)
    big = random_bytes(11 * MiB)
    s3.upload_fileobj(io.BytesIO(big), bucket, "big.bin",
                      Config=boto3.s3.transfer.TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
    objs["big.bin"] = big
    heads = {k: s3.head_object(Bucket=bucket, Key=k) for k in objs}
    return {k: (objs[k], heads[k]) for k in objs}


def check_same(s3, bucket, before):
    for k, (body, head) in before.items():
        got = s3.get_object(Bucket=bucket, Key=k)
        assert got["Body"].read() == body, k
        assert got["ETag"] == head["ETag"], k
        assert got["LastModified"] == head["LastModified"], k
        assert got["Metadata"] == head["Metadata"], k
        assert got["ContentType"] == head["ContentType"], k
    assert before["big.bin"][1]["ETag"].endswith('-3"'), "the multipart ETag is kept"


def error_of(call):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    return e.value.response


def test_cli_migrate_to_an_encrypted_backend_and_switch(tmp_path):
    srv = serve(tmp_path)
    try:
        s3 = srv.client()
        before = fill(s3, "archive")
        p = cli(srv, "migrate", "archive", "--to", "vault")
        assert "7 objects" in p.stdout and "verified" in p.stdout, p.stdout
        assert "archive: {backend: vault, alias: archive}" in p.stdout

        # The live server honours the gate at once: writes pause, reads go on.
        r = error_of(lambda: s3.put_object(Bucket="archive", Key="late", Body=b"x"))
        assert r["Error"]["Code"] == "SlowDown" and r["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert "retry-after" in r["ResponseMetadata"]["HTTPHeaders"]
        assert s3.get_object(Bucket="archive", Key="small.txt")["Body"].read() == b"hello"

        # The reload switches the route (the config still says `local`).
        assert admin(srv, "POST", "/_/api/config/reload").status_code == 200
        assert wait_log(srv, "since a migrate job moved it")
        check_same(s3, "archive", before)
        stored = (tmp_path / "vault" / "archive" / "small.txt").read_bytes()
        assert stored.startswith(b"DGE1"), "re-encrypted for the destination"
        s3.put_object(Bucket="archive", Key="late", Body=b"after the move")
        assert (tmp_path / "vault" / "archive" / "late").exists()
        assert not (tmp_path / "local" / "archive" / "late").exists()
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]].count("archive") == 1
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="archive")["Contents"]]
        assert sorted(keys) == sorted(list(before) + ["late"])
        jobs = admin(srv, "GET", "/_/api/migrate").json()["jobs"]
        assert [(j["bucket"], j["phase"], j["to_backend"]) for j in jobs] == [("archive", "done", "vault")]
    finally:
        srv.stop()
    # A restart keeps the switch.
    srv = Server(tmp_path / "unused", config=srv.config).start()
    try:
        assert srv.client().get_object(Bucket="archive", Key="late")["Body"].read() == b"after the move"
    finally:
        srv.stop()


def test_migrate_killed_mid_copy_resumes(tmp_path):
    srv = serve(tmp_path)
    try:
        s3 = srv.client()
        s3.create_bucket(Bucket="many")
        bodies = {f"obj-{i:03d}": random_bytes(1000 + i) for i in range(12)}
        for k, b in bodies.items():
            s3.put_object(Bucket="many", Key=k, Body=b)
        env = dict(srv.env, DGP_FAILPOINT="migrate-after-object=sleep:300")
        p = subprocess.Popen([str(BIN), "bucket", "migrate", "many", "--to", "vault", "--config", str(srv.config)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        job_file = tmp_path / "local" / ".dg" / "jobs" / "migrate" / "many.json"
        deadline = time.time() + 30
        while time.time() < deadline:
            if job_file.exists() and json.loads(job_file.read_text())["copied"] >= 3:
                break
            time.sleep(0.05)
        p.send_signal(signal.SIGKILL)
        p.wait()
        job = json.loads(job_file.read_text())
        assert job["phase"] == "copying" and 3 <= job["copied"] < 12, job
        r = error_of(lambda: s3.put_object(Bucket="many", Key="late", Body=b"x"))
        assert r["Error"]["Code"] == "SlowDown"

        p = cli(srv, "migrate", "many", "--to", "vault")
        assert f"resuming: {job['copied']} objects already copied" in p.stderr, p.stderr
        assert admin(srv, "POST", "/_/api/config/reload").status_code == 200
        for k, b in bodies.items():
            assert s3.get_object(Bucket="many", Key=k)["Body"].read() == b
        assert len(list((tmp_path / "vault" / "many").iterdir())) == 12
    finally:
        srv.stop()


def test_migrate_refusals(tmp_path):
    srv = serve(tmp_path)
    try:
        s3 = srv.client()
        s3.create_bucket(Bucket="src-bucket")
        s3.put_object(Bucket="src-bucket", Key="k", Body=b"x")
        p = cli(srv, "migrate", "src-bucket", "--to", "nowhere", check=False)
        assert p.returncode != 0 and "no backend named 'nowhere'" in p.stderr
        p = cli(srv, "migrate", "no-such-bucket", "--to", "vault", check=False)
        assert p.returncode != 0 and "no such bucket" in p.stderr.lower(), p.stderr
        # a destination that already holds objects is refused, nothing gated
        (tmp_path / "vault").mkdir(exist_ok=True)
        r = admin(srv, "POST", "/_/api/migrate?bucket=src-bucket&to=vault&as=taken")
        assert r.status_code == 202  # empty destination: accepted
        deadline = time.time() + 30
        while admin(srv, "GET", "/_/api/migrate").json()["jobs"][0]["phase"] != "done":
            assert time.time() < deadline
            time.sleep(0.1)
        s3.create_bucket(Bucket="second")
        s3.put_object(Bucket="second", Key="k", Body=b"y")
        r = admin(srv, "POST", "/_/api/migrate?bucket=second&to=vault&as=taken")
        assert r.status_code == 409 and "already holds objects" in r.json()["error"]
        s3.put_object(Bucket="second", Key="k2", Body=b"still writable")
        r = admin(srv, "POST", "/_/api/migrate?bucket=second&to=nowhere")
        assert r.status_code == 404
        assert requests.post(f"{srv.url}/_/api/migrate?bucket=second&to=vault", timeout=10).status_code == 401
    finally:
        srv.stop()


def test_admin_api_migrates_to_an_s3_upstream(tmp_path):
    up = Upstream("moto", tmp_path)
    srv = serve(tmp_path, with_offsite=up)
    try:
        s3 = srv.client()
        before = fill(s3, "to-cloud")
        real = "cloud-" + uuid.uuid4().hex[:8]
        r = admin(srv, "POST", f"/_/api/migrate?bucket=to-cloud&to=offsite&as={real}")
        assert r.status_code == 202, r.text
        deadline = time.time() + 60
        while True:
            jobs = admin(srv, "GET", "/_/api/migrate").json()["jobs"]
            if jobs and jobs[0]["phase"] == "done" and "switching the route" in srv.output() \
                    and srv.output().count("configuration reloaded") >= 1:
                break
            assert time.time() < deadline, srv.output()[-3000:]
            time.sleep(0.2)
        check_same(s3, "to-cloud", before)
        raw = up.client().get_object(Bucket=real, Key="small.txt")
        assert raw["Metadata"]["dg-encryption-key-id"] == "off-1"
        assert raw["Body"].read().startswith(b"DGE1")
        s3.put_object(Bucket="to-cloud", Key="new", Body=b"in the cloud")
        assert up.client().head_object(Bucket=real, Key="new")["Metadata"]["dg-encrypted"] == "aes-256-gcm-dge1"
    finally:
        srv.stop()
        up.stop()
