"""Delta compression through the real server: versions of a binary in one
prefix stored as xdelta3 deltas against a hidden reference and read back
byte-identical with boto3 and the aws CLI; what is stored whole; damage;
reference lifetime; encryption; stats; the stock xdelta3 tool."""

import concurrent.futures
import hashlib
import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from conftest import BIN, Server, aws_env, random_bytes

MiB = 1024 * 1024
KEY = secrets.token_hex(32)


def versions(n, size, seed=0):
    """n versions of a binary: each changes a few scattered bytes and grows a little."""
    base = bytearray(random_bytes(size))
    out = []
    for i in range(n):
        v = bytearray(base)
        for j in range(5):
            pos = (i * 7919 + j * 104729) % (size - 64)
            v[pos:pos + 32] = random_bytes(32)
        v += random_bytes(1000 * (i + 1))
        out.append(bytes(v))
    return out


def config(tmp, encrypted=False, extra_buckets=""):
    cfg = tmp / f"delta-{secrets.token_hex(4)}.yaml"
    enc = ""
    if encrypted:
        enc = "  backend_encryption:\n    mode: aes256-gcm-proxy\n    key: \"${env:DGP_ENCRYPTION_KEY}\"\n    key_id: delta-2026\n"
    cfg.write_text(f"""storage:
  backend:
    type: filesystem
    path: {tmp / 'data'}
{enc}  buckets:
    plain-only:
      compression: false
    strict:
      max_delta_ratio: 0.001
    firmware:
      delta_types: [".fw"]
      passthrough_types: [".iso"]
{extra_buckets}""")
    return cfg


def doc(path):
    return json.loads(os.getxattr(path, "user.dg.metadata"))


def refs(data, bucket):
    d = data / ".dg" / "refs" / bucket
    return sorted(p for p in d.rglob("ref-*")) if d.exists() else []


@pytest.fixture(scope="module")
def dsrv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("delta")
    srv = Server(tmp / "unused", config=config(tmp)).start()
    srv.tmp = tmp
    srv.data = tmp / "data"
    yield srv
    srv.stop()


def new_bucket(srv, name=None):
    name = name or "d-" + secrets.token_hex(6)
    srv.client().create_bucket(Bucket=name)
    return name


def test_versions_stored_as_deltas_and_read_back(dsrv):
    s3 = dsrv.client()
    b = new_bucket(dsrv)
    vs = versions(5, 2 * MiB)
    for i, v in enumerate(vs):
        s3.put_object(Bucket=b, Key=f"releases/app-1.{i}.zip", Body=v)
    notes = [doc(dsrv.data / b / "releases" / f"app-1.{i}.zip")["dg-note"] for i in range(5)]
    assert notes == ["reference", "delta", "delta", "delta", "delta"]
    # The reference is stored once, hidden; object files hold small deltas.
    assert len(refs(dsrv.data, b)) == 1
    assert refs(dsrv.data, b)[0].stat().st_size == len(vs[0])
    for i in range(5):
        assert (dsrv.data / b / "releases" / f"app-1.{i}.zip").stat().st_size < 20_000
    for i, v in enumerate(vs):
        key = f"releases/app-1.{i}.zip"
        got = s3.get_object(Bucket=b, Key=key)
        assert got["Body"].read() == v
        assert got["ContentLength"] == len(v)
        assert got["ETag"] == '"%s"' % hashlib.md5(v).hexdigest()
        m = doc(dsrv.data / b / key)
        assert m["sha256"] == hashlib.sha256(v).hexdigest() and m["size"] == len(v)
    listed = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=b)["Contents"]}
    assert listed == {f"releases/app-1.{i}.zip": len(v) for i, v in enumerate(vs)}
    assert not any(".dg" in k for k in listed)
    # Range and conditional requests on a delta object.
    v = vs[3]
    for rng, want in [("bytes=0-0", v[:1]), ("bytes=1000-1999", v[1000:2000]),
                      (f"bytes={len(v) - 500}-", v[-500:]), ("bytes=-7", v[-7:])]:
        r = s3.get_object(Bucket=b, Key="releases/app-1.3.zip", Range=rng)
        assert r["Body"].read() == want
        assert r["ResponseMetadata"]["HTTPStatusCode"] == 206
    etag = '"%s"' % hashlib.md5(v).hexdigest()
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=b, Key="releases/app-1.3.zip", IfNoneMatch=etag)
    assert e.value.response["Error"]["Code"] == "304"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=b, Key="releases/app-1.3.zip", IfMatch='"0000"')
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


def test_what_is_stored_whole(dsrv):
    s3 = dsrv.client()
    b = new_bucket(dsrv)
    vs = versions(2, MiB)
    # Ineligible types: no delta, no reference.
    for key in ("photos/a.jpg", "photos/b.jpg", "logs/x.log.gz", "logs/y.log.gz", "misc/readme", "misc/readme2"):
        s3.put_object(Bucket=b, Key=key, Body=vs[0] if key[-1] in "ag" else vs[1])
        assert "dg-note" not in doc(dsrv.data / b / key)
    assert refs(dsrv.data, b) == []
    # A version too different from the reference: stored whole, marked passthrough.
    s3.put_object(Bucket=b, Key="pkg/v1.tar", Body=vs[0])
    other = random_bytes(MiB)
    s3.put_object(Bucket=b, Key="pkg/v2.tar", Body=other)
    m = doc(dsrv.data / b / "pkg" / "v2.tar")
    assert m["dg-note"] == "passthrough" and "dg-ref-id" not in m
    assert (dsrv.data / b / "pkg" / "v2.tar").stat().st_size == MiB
    assert s3.get_object(Bucket=b, Key="pkg/v2.tar")["Body"].read() == other
    # Bucket policies: compression off; a strict ratio; extra/overridden types.
    s3.create_bucket(Bucket="plain-only")
    for i, v in enumerate(versions(2, MiB)):
        s3.put_object(Bucket="plain-only", Key=f"r/v{i}.zip", Body=v)
        assert "dg-note" not in doc(dsrv.data / "plain-only" / "r" / f"v{i}.zip")
    s3.create_bucket(Bucket="strict")
    vs2 = versions(2, MiB)
    for i, v in enumerate(vs2):
        s3.put_object(Bucket="strict", Key=f"r/v{i}.zip", Body=v)
    assert doc(dsrv.data / "strict" / "r" / "v1.zip")["dg-note"] == "passthrough"
    s3.create_bucket(Bucket="firmware")
    for i, v in enumerate(versions(2, MiB)):
        s3.put_object(Bucket="firmware", Key=f"fw/board-{i}.fw", Body=v)
        s3.put_object(Bucket="firmware", Key=f"img/disk-{i}.iso", Body=v)
    assert doc(dsrv.data / "firmware" / "fw" / "board-1.fw")["dg-note"] == "delta"
    assert "dg-note" not in doc(dsrv.data / "firmware" / "img" / "disk-1.iso")


def rewrite_body(path, data):
    """Replaces an object's (or reference's) bytes on disk, keeping its metadata."""
    x = os.getxattr(path, "user.dg.metadata")
    path.write_bytes(bytes(data))
    os.setxattr(path, "user.dg.metadata", x)


def get_fails_cleanly(s3, bucket, key):
    try:
        s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        return True
    return False


def test_damaged_reference_or_delta_is_an_error_never_wrong_bytes(dsrv):
    s3 = dsrv.client()
    b = new_bucket(dsrv)
    vs = versions(3, MiB)
    for i, v in enumerate(vs):
        s3.put_object(Bucket=b, Key=f"r/v{i}.bin", Body=v)
    ref = refs(dsrv.data, b)[0]
    raw = bytearray(ref.read_bytes())
    raw[12345] ^= 0x40
    rewrite_body(ref, raw)
    for i in range(3):
        assert get_fails_cleanly(s3, b, f"r/v{i}.bin")
    assert "r/v1.bin" in dsrv.output() and "cannot be reconstructed" in dsrv.output()
    # HEAD and LIST still answer from the metadata.
    assert s3.head_object(Bucket=b, Key="r/v1.bin")["ContentLength"] == len(vs[1])
    # Repair the reference; then damage one delta body: only that object fails.
    raw[12345] ^= 0x40
    rewrite_body(ref, raw)
    assert s3.get_object(Bucket=b, Key="r/v2.bin")["Body"].read() == vs[2]
    p = dsrv.data / b / "r" / "v2.bin"
    d = bytearray(p.read_bytes())
    for cut in (len(d) // 2, len(d) - 3):
        bad = bytearray(d)
        bad[cut] ^= 0xFF
        rewrite_body(p, bad)
        assert get_fails_cleanly(s3, b, "r/v2.bin")
    rewrite_body(p, d[: len(d) // 2])
    assert get_fails_cleanly(s3, b, "r/v2.bin")
    assert s3.get_object(Bucket=b, Key="r/v1.bin")["Body"].read() == vs[1]


def test_reference_lives_while_needed_and_goes_with_the_last_dependent(dsrv):
    s3 = dsrv.client()
    b = new_bucket(dsrv)
    vs = versions(4, MiB)
    for i, v in enumerate(vs):
        s3.put_object(Bucket=b, Key=f"r/v{i}.zip", Body=v)
    # Overwriting the reference object with unrelated content keeps the
    # reference (the deltas need it).
    s3.put_object(Bucket=b, Key="r/v0.zip", Body=b"small and different")
    assert len(refs(dsrv.data, b)) == 1
    for key in ("r/v0.zip", "r/v1.zip", "r/v2.zip"):
        s3.delete_object(Bucket=b, Key=key)
        assert len(refs(dsrv.data, b)) == 1, key
        assert s3.get_object(Bucket=b, Key="r/v3.zip")["Body"].read() == vs[3]
    s3.delete_object(Bucket=b, Key="r/v3.zip")
    assert refs(dsrv.data, b) == []
    # The next upload starts a new reference.
    s3.put_object(Bucket=b, Key="r/v9.zip", Body=vs[1])
    assert doc(dsrv.data / b / "r" / "v9.zip")["dg-note"] == "reference"
    # DeleteObjects removes it too.
    s3.put_object(Bucket=b, Key="r/v10.zip", Body=vs[2])
    s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "r/v9.zip"}, {"Key": "r/v10.zip"}]})
    assert refs(dsrv.data, b) == []


def test_concurrent_puts_into_one_deltaspace(dsrv):
    s3 = dsrv.client()
    b = new_bucket(dsrv)
    vs = versions(8, MiB)

    def put(i):
        dsrv.client().put_object(Bucket=b, Key=f"c/v{i}.tar", Body=vs[i])
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        list(ex.map(put, range(8)))
    assert len(refs(dsrv.data, b)) == 1
    for i, v in enumerate(vs):
        assert s3.get_object(Bucket=b, Key=f"c/v{i}.tar")["Body"].read() == v
    notes = sorted(doc(dsrv.data / b / "c" / f"v{i}.tar")["dg-note"] for i in range(8))
    assert notes == ["delta"] * 7 + ["reference"]


def test_aws_cli_multipart_versions(dsrv, tmp_path):
    b = new_bucket(dsrv)
    vs = versions(3, 12 * MiB)  # above the CLI's 8 MiB multipart threshold
    env = aws_env(dsrv)
    for i, v in enumerate(vs):
        f = tmp_path / f"v{i}.img"
        f.write_bytes(v)
        subprocess.run(["aws", "--endpoint-url", dsrv.url, "s3", "cp", "--only-show-errors", str(f), f"s3://{b}/images/v{i}.img"],
                       env=env, check=True, timeout=120)
    notes = [doc(dsrv.data / b / "images" / f"v{i}.img")["dg-note"] for i in range(3)]
    assert notes == ["reference", "delta", "delta"]
    for i, v in enumerate(vs):
        out = tmp_path / f"back{i}.img"
        subprocess.run(["aws", "--endpoint-url", dsrv.url, "s3", "cp", "--only-show-errors", f"s3://{b}/images/v{i}.img", str(out)],
                       env=env, check=True, timeout=120)
        assert out.read_bytes() == v
    assert (dsrv.data / b / "images" / "v2.img").stat().st_size < MiB


@pytest.mark.skipif(shutil.which("xdelta3") is None, reason="needs the xdelta3 tool")
def test_stored_delta_decodes_with_the_xdelta3_tool(dsrv, tmp_path):
    s3 = dsrv.client()
    b = new_bucket(dsrv)
    vs = versions(2, MiB)
    for i, v in enumerate(vs):
        s3.put_object(Bucket=b, Key=f"x/v{i}.bin", Body=v)
    out = tmp_path / "out"
    subprocess.run(["xdelta3", "-d", "-f", "-s", str(refs(dsrv.data, b)[0]), str(dsrv.data / b / "x" / "v1.bin"), str(out)], check=True)
    assert out.read_bytes() == vs[1]


def test_stats_command_and_endpoint(dsrv):
    s3 = dsrv.client()
    b = new_bucket(dsrv)
    vs = versions(5, MiB)
    for i, v in enumerate(vs):
        s3.put_object(Bucket=b, Key=f"rel/v{i}.zip", Body=v)
    s3.put_object(Bucket=b, Key="pic.jpg", Body=b"j" * 1000)
    r = subprocess.run([str(BIN), "stats", "--config", str(config(dsrv.tmp)), "--bucket", b, "--format", "json"],
                       capture_output=True, text=True, check=True)
    st = json.loads(r.stdout)["buckets"][0]
    logical = sum(len(v) for v in vs) + 1000
    stored = sum(p.stat().st_size for p in (dsrv.data / b).rglob("*") if p.is_file()) + refs(dsrv.data, b)[0].stat().st_size
    assert st["bucket"] == b and st["objects"] == 6
    assert st["logical_bytes"] == logical and st["stored_bytes"] == stored
    assert st["savings_percent"] > 60
    rel = next(s for s in st["deltaspaces"] if s["prefix"] == "rel/")
    assert (rel["references"], rel["deltas"], rel["whole"]) == (1, 4, 0)
    top = next(s for s in st["deltaspaces"] if s["prefix"] == "")
    assert top["whole"] == 1
    text = subprocess.run([str(BIN), "stats", "--config", str(config(dsrv.tmp)), "--bucket", b], capture_output=True, text=True, check=True).stdout
    assert f"bucket {b}: 6 objects" in text and "rel/: 5 objects (1 reference, 4 delta" in text
    # The same figures from the admin API (signed with the admin key).
    import requests
    import sigv4
    url = f"{dsrv.url}/_/api/stats?bucket={b}"
    h, *_ = sigv4.sign("GET", url, {}, hashlib.sha256(b"").hexdigest())
    resp = requests.get(url, headers=h, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json()["buckets"][0]["stored_bytes"] == stored
    assert requests.get(url, timeout=10).status_code == 401


def test_delta_with_encryption(tmp_path):
    srv = Server(tmp_path / "unused", config=config(tmp_path, encrypted=True), env={"DGP_ENCRYPTION_KEY": KEY}).start()
    try:
        s3 = srv.client()
        s3.create_bucket(Bucket="vault")
        vs = versions(3, 3 * MiB)
        for i, v in enumerate(vs):
            s3.put_object(Bucket="vault", Key=f"db/dump-{i}.sql", Body=v)
        data = tmp_path / "data"
        ref = refs(data, "vault")[0]
        assert ref.read_bytes()[:4] == b"DGE1"
        assert vs[0][1000:1064] not in ref.read_bytes()
        rdoc = doc(ref)
        assert rdoc["dg-encrypted"] == "aes-256-gcm-dge1" and rdoc["dg-encryption-key-id"] == "delta-2026"
        for i in range(3):
            p = data / "vault" / "db" / f"dump-{i}.sql"
            m = doc(p)
            assert m["dg-encrypted"] == "aes-256-gcm-dge1"
            assert p.read_bytes()[:4] == b"DGE1" and p.stat().st_size < 50_000
        for i, v in enumerate(vs):
            assert s3.get_object(Bucket="vault", Key=f"db/dump-{i}.sql")["Body"].read() == v
        r = s3.get_object(Bucket="vault", Key="db/dump-2.sql", Range="bytes=2000000-2100000")
        assert r["Body"].read() == vs[2][2000000:2100001]
        # The maintenance tools see the reference: audit is clean and counts it.
        e = dict(os.environ, DGP_ENCRYPTION_KEY=KEY)
        cfg = config(tmp_path, encrypted=True)
        au = subprocess.run([str(BIN), "encryption", "audit", "--deep", "--config", str(cfg)], env=e, capture_output=True, text=True)
        assert au.returncode == 0, au.stdout + au.stderr
        st = json.loads(subprocess.run([str(BIN), "encryption", "status", "--format", "json", "--config", str(cfg)],
                                       env=e, capture_output=True, text=True, check=True).stdout)
        assert st["backends"][0]["encrypted"] == 4
        # Export reconstructs.
        out = tmp_path / "export"
        subprocess.run([str(BIN), "encryption", "export", "--bucket", "vault", "--target", str(out), "--config", str(cfg)], env=e, check=True)
        assert (out / "db" / "dump-2.sql").read_bytes() == vs[2]
        assert not (out / ".dg").exists()
    finally:
        srv.stop()


def test_reencrypt_job_rewrites_references(tmp_path):
    """plaintext -> encrypted -> plaintext with the re-encrypt job: deltas stay
    deltas, references follow, every object reads back the same."""
    plain_cfg = config(tmp_path)
    srv = Server(tmp_path / "unused", config=plain_cfg).start()
    vs = versions(3, MiB)
    try:
        s3 = srv.client()
        s3.create_bucket(Bucket="moving")
        for i, v in enumerate(vs):
            s3.put_object(Bucket="moving", Key=f"r/v{i}.zip", Body=v)
    finally:
        srv.stop()
    data = tmp_path / "data"
    ref = refs(data, "moving")[0]
    assert ref.read_bytes()[:4] != b"DGE1"
    e = dict(os.environ, DGP_ENCRYPTION_KEY=KEY)
    r = subprocess.run([str(BIN), "encryption", "reencrypt", "--config", str(config(tmp_path, encrypted=True))],
                       env=e, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert ref.read_bytes()[:4] == b"DGE1" and doc(ref)["dg-encryption-key-id"] == "delta-2026"
    for i in range(3):
        m = doc(data / "moving" / "r" / f"v{i}.zip")
        assert m["dg-note"] in ("reference", "delta") and m["dg-encrypted"] == "aes-256-gcm-dge1"
    srv = Server(tmp_path / "unused", config=config(tmp_path, encrypted=True), env={"DGP_ENCRYPTION_KEY": KEY}).start()
    try:
        for i, v in enumerate(vs):
            assert srv.client().get_object(Bucket="moving", Key=f"r/v{i}.zip")["Body"].read() == v
    finally:
        srv.stop()
    # Back to plaintext, the old key as legacy.
    back = tmp_path / "back.yaml"
    back.write_text(config(tmp_path).read_text().replace(
        "  buckets:", "  backend_encryption:\n    mode: none\n    legacy_key: \"${env:DGP_OLD_KEY}\"\n    legacy_key_id: delta-2026\n  buckets:", 1))
    r = subprocess.run([str(BIN), "encryption", "reencrypt", "--config", str(back)],
                       env=dict(os.environ, DGP_OLD_KEY=KEY), capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert ref.read_bytes()[:4] != b"DGE1" and "dg-encrypted" not in doc(ref)
    srv = Server(tmp_path / "unused", config=plain_cfg).start()
    try:
        for i, v in enumerate(vs):
            assert srv.client().get_object(Bucket="moving", Key=f"r/v{i}.zip")["Body"].read() == v
    finally:
        srv.stop()
