"""Ceph RGW as an upstream (docs/scale-out.md): a single-node Ceph cluster
(one mon, one memstore OSD, radosgw) started on loopback by
tests/upstreams/ceph_rgw.sh, the proxy in front of it with proxy-side
encryption, and the scale-out path itself: a bucket moved from the NAS's
filesystem backend onto RGW behind the same endpoint."""

import hashlib
import io
import shutil
import subprocess
import uuid

import boto3
import pytest
from botocore.config import Config

from conftest import BIN, REPO, Server, random_bytes
from test_s3_backend import free_port, sha
from test_migrate import admin

MiB = 1024 * 1024
SCRIPT = REPO / "tests" / "upstreams" / "ceph_rgw.sh"
KEY = "44" * 32


class Rgw:
    def __init__(self, tmp):
        self.dir = tmp / "ceph"
        self.port = free_port()
        out = subprocess.run(["bash", str(SCRIPT), "start", str(self.dir), str(self.port)],
                             capture_output=True, text=True, timeout=400)
        if out.returncode != 0:
            raise RuntimeError("Ceph RGW did not start:\n" + out.stdout + out.stderr)
        env = dict(line.split("=", 1) for line in out.stdout.split() if "=" in line)
        self.url = env["CEPH_RGW_ENDPOINT"]
        self.access, self.secret = env["CEPH_RGW_ACCESS_KEY"], env["CEPH_RGW_SECRET_KEY"]

    def client(self):
        return boto3.client("s3", endpoint_url=self.url, aws_access_key_id=self.access,
                            aws_secret_access_key=self.secret, region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"}))

    def stop(self):
        subprocess.run(["bash", str(SCRIPT), "stop", str(self.dir)], timeout=60, check=True)


@pytest.fixture(scope="module")
def rgw(tmp_path_factory):
    missing = [b for b in ("ceph-mon", "ceph-osd", "radosgw") if shutil.which(b) is None]
    if missing:
        # tests/run installs them; a bare pytest run on a dev box may not have them.
        pytest.skip(f"!!! Ceph RGW TESTS SKIPPED: {', '.join(missing)} not installed "
                    "(apt-get install --no-install-recommends ceph-mon ceph-osd radosgw) !!!")
    r = Rgw(tmp_path_factory.mktemp("rgw"))
    yield r
    r.stop()


@pytest.fixture
def proxy(tmp_path, rgw):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"""
storage:
  default_backend: nas
  backends:
    - name: nas
      type: filesystem
      path: {tmp_path / 'nas'}
    - name: ceph
      type: s3
      endpoint: {rgw.url}
      region: us-east-1
      access_key_id: {rgw.access}
      secret_access_key: {rgw.secret}
      encryption: {{mode: aes256-gcm-proxy, key_id: ceph-1}}
  buckets:
    on-ceph: {{backend: ceph, alias: dg-on-ceph-{uuid.uuid4().hex[:6]}}}
advanced:
  spool_dir: {tmp_path / 'spool'}
""")
    srv = Server(tmp_path / "unused", config=cfg, env={"DGP_BACKEND_CEPH_ENCRYPTION_KEY": KEY}).start()
    yield srv
    srv.stop()


def real_name(srv, bucket):
    text = srv.config.read_text()
    return text.split(f"{bucket}: {{backend: ceph, alias: ")[1].split("}")[0]


def test_round_trip_multipart_range_and_delta_on_rgw(proxy, rgw):
    s3 = proxy.client()
    s3.create_bucket(Bucket="on-ceph")
    real = real_name(proxy, "on-ceph")
    s3.put_object(Bucket="on-ceph", Key="small.txt", Body=b"on ceph", Metadata={"team": "ops"})
    body = random_bytes(13 * MiB + 5)
    s3.upload_fileobj(io.BytesIO(body), "on-ceph", "big.bin",
                      Config=boto3.s3.transfer.TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
    assert sha(s3.get_object(Bucket="on-ceph", Key="big.bin")["Body"].read()) == sha(body)
    got = s3.get_object(Bucket="on-ceph", Key="big.bin", Range="bytes=5242870-10485790")["Body"].read()
    assert got == body[5242870:10485791]
    head = s3.head_object(Bucket="on-ceph", Key="big.bin")
    assert head["ETag"].endswith('-3"') and head["ContentLength"] == len(body)

    v1 = b"PK\x03\x04" + random_bytes(2 * MiB)
    v2 = v1[:MiB] + b"rgw!" + v1[MiB + 4:]
    s3.put_object(Bucket="on-ceph", Key="rel/v1.zip", Body=v1)
    s3.put_object(Bucket="on-ceph", Key="rel/v2.zip", Body=v2)
    assert s3.get_object(Bucket="on-ceph", Key="rel/v2.zip")["Body"].read() == v2

    raw = rgw.client()
    obj = raw.get_object(Bucket=real, Key="small.txt")
    assert obj["Metadata"]["dg-encrypted"] == "aes-256-gcm-dge1"
    assert obj["Metadata"]["dg-encryption-key-id"] == "ceph-1"
    assert obj["Body"].read().startswith(b"DGE1")
    assert raw.head_object(Bucket=real, Key="rel/v2.zip")["ContentLength"] < 64 * 1024, "v2 is a delta on RGW"
    assert s3.head_object(Bucket="on-ceph", Key="small.txt")["Metadata"] == {"team": "ops"}
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket="on-ceph")["Contents"]]
    assert listed == ["big.bin", "rel/v1.zip", "rel/v2.zip", "small.txt"], "the hidden .dg/ prefix is not listed"
    keys = [o["Key"] for o in raw.list_objects_v2(Bucket=real)["Contents"]]
    assert ".dg/keys/ceph-1.json" in keys


def test_scale_out_moves_a_nas_bucket_onto_rgw(proxy, rgw):
    """docs/scale-out.md as a test: a bucket on the NAS moves to RGW with the
    migrate job; clients keep the endpoint, the name and the bytes."""
    s3 = proxy.client()
    s3.create_bucket(Bucket="photos")
    bodies = {f"2026/{i:02d}.jpg": random_bytes(200_000 + i) for i in range(8)}
    for k, b in bodies.items():
        s3.put_object(Bucket="photos", Key=k, Body=b)
    etags = {k: s3.head_object(Bucket="photos", Key=k)["ETag"] for k in bodies}
    target = "photos-" + uuid.uuid4().hex[:6]
    p = subprocess.run([str(BIN), "bucket", "migrate", "photos", "--to", "ceph", "--as", target,
                        "--config", str(proxy.config)], env=proxy.env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert admin(proxy, "POST", "/_/api/config/reload").status_code == 200
    for k, b in bodies.items():
        got = s3.get_object(Bucket="photos", Key=k)
        assert got["Body"].read() == b and got["ETag"] == etags[k]
    assert rgw.client().get_object(Bucket=target, Key="2026/00.jpg")["Body"].read().startswith(b"DGE1")
    s3.put_object(Bucket="photos", Key="2026/new.jpg", Body=b"after")
    assert rgw.client().head_object(Bucket=target, Key="2026/new.jpg")["ContentLength"] > 0
    assert hashlib.sha256(s3.get_object(Bucket="photos", Key="2026/new.jpg")["Body"].read()).hexdigest() == \
        hashlib.sha256(b"after").hexdigest()
