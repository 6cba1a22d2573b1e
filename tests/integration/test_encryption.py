"""Encryption at rest on the filesystem backend, through the real server:
what lands on disk, mixed mode, key safety at startup, tampering."""

import json
import os
import random
import secrets
import shutil
import textwrap

import pytest
from botocore.exceptions import ClientError

from conftest import Server, random_bytes

KEY = secrets.token_hex(32)
OTHER_KEY = secrets.token_hex(32)
MiB = 1024 * 1024


def enc_config(tmp, data, key_id="local-2026-06", mode="aes256-gcm-proxy", legacy=False):
    lines = [
        "storage:",
        "  backend:",
        "    type: filesystem",
        f"    path: {data}",
        "  backend_encryption:",
        f"    mode: {mode}",
    ]
    if mode != "none":
        lines.append('    key: "${env:DGP_ENCRYPTION_KEY}"')
        lines.append(f"    key_id: {key_id}")
    if legacy:
        lines.append('    legacy_key: "${env:DGP_OLD_KEY}"')
        lines.append(f"    legacy_key_id: {legacy}")
    cfg = tmp / f"dgp-{secrets.token_hex(4)}.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def start(tmp, data, key=KEY, **kw):
    env = {"DGP_ENCRYPTION_KEY": key} if key else {"DGP_ENCRYPTION_KEY": None}
    env.update(kw.pop("env", {}))
    return Server(tmp / "unused", config=enc_config(tmp, data, **kw), env=env).start()


def meta(path):
    return json.loads(os.getxattr(path, "user.dg.metadata"))


@pytest.fixture(scope="module")
def enc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("enc")
    srv = start(tmp, tmp / "data")
    srv.client().create_bucket(Bucket="db-archive")
    yield srv
    srv.stop()


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 3 * MiB + 5])
def test_roundtrip_and_ciphertext_on_disk(enc, size):
    s3 = enc.client()
    data = random_bytes(size)
    s3.put_object(Bucket="db-archive", Key=f"nightly/{size}.sql", Body=data)
    assert s3.get_object(Bucket="db-archive", Key=f"nightly/{size}.sql")["Body"].read() == data
    path = enc.data_dir.parent / "data" / "db-archive" / "nightly" / f"{size}.sql"
    raw = path.read_bytes()
    assert raw[:4] == b"DGE1"
    m = meta(path)
    assert m["dg-encrypted"].startswith("aes-256-gcm")
    assert m["dg-encryption-key-id"] == "local-2026-06"
    assert m["size"] == size
    assert KEY not in json.dumps(m)
    h = s3.head_object(Bucket="db-archive", Key=f"nightly/{size}.sql")
    assert h["ContentLength"] == size
    listed = s3.list_objects_v2(Bucket="db-archive", Prefix=f"nightly/{size}.")["Contents"]
    assert listed[0]["Size"] == size


def test_no_plaintext_window_on_disk(enc):
    s3 = enc.client()
    data = random_bytes(200_000)
    s3.put_object(Bucket="db-archive", Key="windows.bin", Body=data)
    raw = (enc.data_dir.parent / "data" / "db-archive" / "windows.bin").read_bytes()
    windows = {raw[i:i + 16] for i in range(len(raw) - 15)}
    assert not any(data[i:i + 16] in windows for i in range(0, len(data) - 15))


def test_range_reads(enc):
    s3 = enc.client()
    data = random_bytes(1 * MiB + 12345)
    s3.put_object(Bucket="db-archive", Key="ranged", Body=data)
    rnd = random.Random(7)
    for _ in range(25):
        a = rnd.randrange(len(data))
        b = min(len(data) - 1, a + rnd.randrange(200_000))
        got = s3.get_object(Bucket="db-archive", Key="ranged", Range=f"bytes={a}-{b}")["Body"].read()
        assert got == data[a:b + 1]
    assert s3.get_object(Bucket="db-archive", Key="ranged", Range="bytes=-10")["Body"].read() == data[-10:]


def test_multipart_and_copy_encrypted(enc):
    s3 = enc.client()
    parts = [random_bytes(5 * MiB), random_bytes(777)]
    uid = s3.create_multipart_upload(Bucket="db-archive", Key="mp.bin")["UploadId"]
    etags = [s3.upload_part(Bucket="db-archive", Key="mp.bin", UploadId=uid, PartNumber=i, Body=p)["ETag"]
             for i, p in enumerate(parts, 1)]
    updir = enc.data_dir.parent / "data" / ".dg" / "multipart" / uid
    for f in updir.glob("part-*"):
        assert f.read_bytes()[:4] == b"DGE1", "parts are encrypted at rest too"
    s3.complete_multipart_upload(Bucket="db-archive", Key="mp.bin", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": i, "ETag": e} for i, e in enumerate(etags, 1)]})
    path = enc.data_dir.parent / "data" / "db-archive" / "mp.bin"
    assert path.read_bytes()[:4] == b"DGE1"
    assert s3.get_object(Bucket="db-archive", Key="mp.bin")["Body"].read() == b"".join(parts)
    s3.copy_object(Bucket="db-archive", Key="mp-copy.bin", CopySource="db-archive/mp.bin")
    assert s3.get_object(Bucket="db-archive", Key="mp-copy.bin")["Body"].read() == b"".join(parts)
    assert meta(path)["dg-wrapped-key"] != meta(path.with_name("mp-copy.bin"))["dg-wrapped-key"]
    s3.copy_object(Bucket="db-archive", Key="mp.bin", CopySource="db-archive/mp.bin", MetadataDirective="REPLACE", Metadata={"x": "1"})
    assert s3.get_object(Bucket="db-archive", Key="mp.bin")["Body"].read() == b"".join(parts)


def get_fails(s3, key):
    """True when a GET errors (status or aborted body) instead of returning bytes."""
    try:
        s3.get_object(Bucket="db-archive", Key=key)["Body"].read()
    except ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        return True
    except Exception:  # noqa: BLE001 - an aborted body (IncompleteRead, ResponseStreamingError)
        return True
    return False


@pytest.mark.parametrize("damage", ["header", "middle", "last-tag", "truncate-1", "truncate-chunk", "append", "append-chunk", "swap-chunks"])
def test_tampering_is_an_error(enc, damage):
    s3 = enc.client()
    key = f"tamper-{damage}"
    data = random_bytes(4 * 65536 + 100)
    s3.put_object(Bucket="db-archive", Key=key, Body=data)
    path = enc.data_dir.parent / "data" / "db-archive" / key
    raw = bytearray(path.read_bytes())
    chunk = 65536 + 16
    if damage == "header":
        raw[10] ^= 1
    elif damage == "middle":
        raw[24 + chunk * 2 + 100] ^= 1
    elif damage == "last-tag":
        raw[-1] ^= 1
    elif damage == "truncate-1":
        raw = raw[:-1]
    elif damage == "truncate-chunk":
        raw = raw[:24 + chunk * 4]
    elif damage == "append":
        raw += b"x"
    elif damage == "append-chunk":
        raw += raw[24:24 + chunk]
    elif damage == "swap-chunks":
        a, b = 24, 24 + chunk
        raw[a:a + chunk], raw[b:b + chunk] = raw[b:b + chunk], raw[a:a + chunk]
    xattr = os.getxattr(path, "user.dg.metadata")
    path.write_bytes(bytes(raw))
    os.setxattr(path, "user.dg.metadata", xattr)
    assert get_fails(s3, key)


def test_swapped_files_are_detected(enc):
    s3 = enc.client()
    s3.put_object(Bucket="db-archive", Key="swap-a", Body=b"A" * 1000)
    s3.put_object(Bucket="db-archive", Key="swap-b", Body=b"B" * 1000)
    d = enc.data_dir.parent / "data" / "db-archive"
    (d / "swap-a").rename(d / "tmp-swap")
    (d / "swap-b").rename(d / "swap-a")
    (d / "tmp-swap").rename(d / "swap-b")
    assert get_fails(s3, "swap-a")
    assert get_fails(s3, "swap-b")
    shutil.rmtree(d / "tmp-swap", ignore_errors=True)


def test_unmarked_ciphertext_is_refused(enc):
    s3 = enc.client()
    s3.put_object(Bucket="db-archive", Key="marked", Body=b"secret stuff" * 100)
    d = enc.data_dir.parent / "data" / "db-archive"
    os.removexattr(d / "marked", "user.dg.metadata")
    assert get_fails(s3, "marked")


def test_folder_markers_on_an_encrypted_backend(enc):
    """`PUT folder/` with an empty body (the console, rclone mkdir, s3fs)
    works with encryption on: a folder marker has nothing to encrypt."""
    s3 = enc.client()
    s3.put_object(Bucket="db-archive", Key="nightly-folder/", Body=b"")
    assert s3.get_object(Bucket="db-archive", Key="nightly-folder/")["Body"].read() == b""
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="db-archive", Prefix="nightly-folder")["Contents"]]
    assert keys == ["nightly-folder/"]
    s3.delete_object(Bucket="db-archive", Key="nightly-folder/")


def test_client_data_that_looks_like_ciphertext_is_served(tmp_path):
    """A plaintext backend stores what clients send; a client's own DGE1
    file (a backup of an encrypted file) comes back as sent."""
    srv = Server(tmp_path / "data").start()
    try:
        s3 = srv.client()
        s3.create_bucket(Bucket="backups")
        blob = b"DGE1" + bytes([1, 16, 0, 0]) + os.urandom(5000)
        s3.put_object(Bucket="backups", Key="copy-of-encrypted.bin.txt", Body=blob)
        assert s3.get_object(Bucket="backups", Key="copy-of-encrypted.bin.txt")["Body"].read() == blob
    finally:
        srv.stop()


def test_mixed_mode_and_startup_safety(tmp_path):
    data = tmp_path / "data"
    # 1. plaintext era: an object through S3 and a file placed by hand
    plain = Server(tmp_path / "unused", config=enc_config(tmp_path, data, mode="none")).start()
    s3 = plain.client()
    s3.create_bucket(Bucket="mixed")
    s3.put_object(Bucket="mixed", Key="old.txt", Body=b"written before encryption")
    plain.stop()
    (data / "mixed" / "placed.txt").write_bytes(b"placed by hand")

    # 2. encryption on: old objects still read, new ones are encrypted; first-enable notice
    srv = start(tmp_path, data)
    assert "OFF-BOX" in srv.output()
    s3 = srv.client()
    assert s3.get_object(Bucket="mixed", Key="old.txt")["Body"].read() == b"written before encryption"
    assert s3.get_object(Bucket="mixed", Key="placed.txt")["Body"].read() == b"placed by hand"
    s3.put_object(Bucket="mixed", Key="new.txt", Body=b"written encrypted")
    assert (data / "mixed" / "new.txt").read_bytes()[:4] == b"DGE1"
    assert (data / "mixed" / "old.txt").read_bytes() == b"written before encryption"
    srv.stop()
    assert KEY not in srv.output()

    # 3. a wrong key refuses to start
    with pytest.raises(RuntimeError) as e:
        start(tmp_path, data, key=OTHER_KEY)
    assert "key mismatch" in str(e.value) and OTHER_KEY not in str(e.value)
    # 4. no key refuses to start, naming the variable
    with pytest.raises(RuntimeError) as e:
        start(tmp_path, data, key=None)
    assert "DGP_ENCRYPTION_KEY" in str(e.value)
    # 5. turning encryption off refuses to start
    with pytest.raises(RuntimeError) as e:
        Server(tmp_path / "unused", config=enc_config(tmp_path, data, mode="none"), env={"DGP_ENCRYPTION_KEY": None}).start()
    assert "cannot disable encryption" in str(e.value)
    # 6. a malformed key is an error naming the variable, not the value
    with pytest.raises(RuntimeError) as e:
        start(tmp_path, data, key="zz" * 32)
    assert "DGP_ENCRYPTION_KEY" in str(e.value) and "zz" * 32 not in str(e.value)

    # 7. rotation by configuration: a new key id with the old key as legacy
    srv = start(tmp_path, data, key=OTHER_KEY, key_id="local-2026-12", legacy="local-2026-06", env={"DGP_OLD_KEY": KEY})
    s3 = srv.client()
    assert s3.get_object(Bucket="mixed", Key="new.txt")["Body"].read() == b"written encrypted"
    s3.put_object(Bucket="mixed", Key="newer.txt", Body=b"under the new key")
    assert meta(data / "mixed" / "newer.txt")["dg-encryption-key-id"] == "local-2026-12"
    assert meta(data / "mixed" / "new.txt")["dg-encryption-key-id"] == "local-2026-06"
    srv.stop()
    # without the legacy key, the old key id is unknown: refuse rather than fail later
    with pytest.raises(RuntimeError) as e:
        start(tmp_path, data, key=OTHER_KEY, key_id="local-2026-12")
    assert "local-2026-06" in str(e.value)


def tool(tmp, data, *args, key=KEY, key_id="local-2026-06", legacy=False, env=None, check=True):
    import subprocess
    from conftest import BIN
    e = {k: v for k, v in os.environ.items() if not k.startswith("DGP_")}
    e["DGP_ENCRYPTION_KEY"] = key
    e.update(env or {})
    cfg = enc_config(tmp, data, key_id=key_id, legacy=legacy)
    r = subprocess.run([str(BIN), "encryption", *args, "--config", str(cfg)], capture_output=True, text=True, env=e)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_status_audit_rotate_export(tmp_path):
    data = tmp_path / "data"
    srv = start(tmp_path, data)
    s3 = srv.client()
    s3.create_bucket(Bucket="ops")
    bodies = {f"dir/obj{i}": random_bytes(1000 * i + 1) for i in range(20)}
    for k, v in bodies.items():
        s3.put_object(Bucket="ops", Key=k, Body=v)
    srv.stop()
    (data / "ops" / "plain.txt").write_bytes(b"hand placed")
    bodies["plain.txt"] = b"hand placed"

    st = json.loads(tool(tmp_path, data, "status", "--format", "json").stdout)["backends"][0]
    assert st["mode"] == "aes256-gcm-proxy" and st["current_key_id"] == "local-2026-06"
    assert (st["objects"], st["encrypted"], st["plaintext"], st["undecryptable"]) == (21, 20, 1, 0)
    assert st["key_ids"] == {"local-2026-06": 20}
    assert KEY not in json.dumps(st)

    assert "0 problem" in tool(tmp_path, data, "audit", "--deep").stdout

    # export: plaintext files for disaster recovery; an existing target is refused
    target = tmp_path / "export"
    tool(tmp_path, data, "export", "--bucket", "ops", "--target", str(target))
    for k, v in bodies.items():
        assert (target / k).read_bytes() == v
    r = tool(tmp_path, data, "export", "--bucket", "ops", "--target", str(target), check=False)
    assert r.returncode != 0 and "exists" in r.stderr

    # rotate-kek: new key current, old key legacy; only the xattrs change
    before = {k: (data / "ops" / k).read_bytes() for k in bodies}
    r = tool(tmp_path, data, "rotate-kek", key=OTHER_KEY, key_id="local-2026-12", legacy="local-2026-06", env={"DGP_OLD_KEY": KEY})
    assert "rewrapped 20 data keys" in r.stdout and "retired key id(s): local-2026-06" in r.stdout
    for k in bodies:
        assert (data / "ops" / k).read_bytes() == before[k], "bodies are not rewritten"
    for i in range(20):
        assert meta(data / "ops" / f"dir/obj{i}")["dg-encryption-key-id"] == "local-2026-12"
    # the server now starts with the new key alone and reads everything
    srv = start(tmp_path, data, key=OTHER_KEY, key_id="local-2026-12")
    try:
        s3 = srv.client()
        for k, v in bodies.items():
            assert s3.get_object(Bucket="ops", Key=k)["Body"].read() == v
    finally:
        srv.stop()

    # a damaged object makes the audit fail and name it
    p = data / "ops" / "dir" / "obj3"
    raw = bytearray(p.read_bytes())
    x = os.getxattr(p, "user.dg.metadata")
    raw[30] ^= 1
    p.write_bytes(bytes(raw))
    os.setxattr(p, "user.dg.metadata", x)
    r = tool(tmp_path, data, "audit", key=OTHER_KEY, key_id="local-2026-12", check=False)
    assert r.returncode != 0 and "dir/obj3" in r.stdout


def test_admin_encryption_status_endpoint(enc):
    """GET /_/api/encryption/status: admin credential only, no key material."""
    import hashlib
    import requests
    import sigv4
    url = f"{enc.url}/_/api/encryption/status"
    assert requests.get(url).status_code == 401

    def signed(secret):
        h, *_ = sigv4.sign("GET", url, {}, hashlib.sha256(b"").hexdigest(), secret=secret)
        return requests.get(url, headers=h)

    assert signed("wrong-secret").status_code == 403
    from conftest import SECRET_KEY
    r = signed(SECRET_KEY)
    assert r.status_code == 200, r.text
    b = r.json()["backends"][0]
    assert b["mode"] == "aes256-gcm-proxy" and b["current_key_id"] == "local-2026-06"
    assert b["encrypted"] >= 1 and b["key_ids"]["local-2026-06"] == b["encrypted"]
    assert KEY not in r.text


def test_reencrypt_job_gates_writes_survives_kill_and_resumes(tmp_path):
    import hashlib
    import signal
    import subprocess
    import time
    import requests
    from conftest import BIN
    data = tmp_path / "data"
    plain = Server(tmp_path / "unused", config=enc_config(tmp_path, data, mode="none")).start()
    s3 = plain.client()
    s3.create_bucket(Bucket="rebucket")
    sums = {}
    for i in range(120):
        body = random_bytes(70_000 + i)
        s3.put_object(Bucket="rebucket", Key=f"k/{i:03}", Body=body)
        sums[f"k/{i:03}"] = hashlib.sha256(body).hexdigest()
    plain.stop()

    srv = start(tmp_path, data)  # encryption on: new writes encrypted, old objects plaintext
    s3 = srv.client()
    e = {k: v for k, v in os.environ.items() if not k.startswith("DGP_")}
    e["DGP_ENCRYPTION_KEY"] = KEY
    cfg = enc_config(tmp_path, data)
    job = subprocess.Popen([str(BIN), "encryption", "reencrypt", "--pause-ms", "40", "--config", str(cfg)], env=e,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    jobfile = data / ".dg" / "jobs" / "reencrypt.json"
    deadline = time.time() + 20
    while time.time() < deadline and not (jobfile.exists() and json.loads(jobfile.read_text())["rewritten"] > 0):
        time.sleep(0.1)
    # writes are gated, reads continue
    with pytest.raises(ClientError) as ex:
        s3.put_object(Bucket="rebucket", Key="new", Body=b"x")
    assert ex.value.response["Error"]["Code"] == "SlowDown"
    assert ex.value.response["ResponseMetadata"]["HTTPHeaders"].get("retry-after")
    assert hashlib.sha256(s3.get_object(Bucket="rebucket", Key="k/000")["Body"].read()).hexdigest() == sums["k/000"]
    job.send_signal(signal.SIGKILL)
    job.wait()
    state = json.loads(jobfile.read_text())
    assert not state["finished"] and 0 < state["rewritten"] < 120
    with pytest.raises(ClientError):
        s3.put_object(Bucket="rebucket", Key="new", Body=b"x")
    srv.stop()

    # the next start resumes the job; writes open again when it is done
    srv = start(tmp_path, data)
    s3 = srv.client()
    deadline = time.time() + 60
    while True:
        try:
            s3.put_object(Bucket="rebucket", Key="new", Body=b"x")
            break
        except ClientError as err:
            assert err.response["Error"]["Code"] == "SlowDown"
            assert time.time() < deadline
            time.sleep(0.2)
    assert "resuming an interrupted re-encrypt job" in srv.output()
    keys = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket="rebucket") for o in p.get("Contents", [])]
    assert sorted(keys) == sorted(list(sums) + ["new"])
    for k, h in sums.items():
        assert (data / "rebucket" / k).read_bytes()[:4] == b"DGE1"
        assert hashlib.sha256(s3.get_object(Bucket="rebucket", Key=k)["Body"].read()).hexdigest() == h
    srv.stop()
    # a finished job no longer gates (nor costs writes a read): its file moved aside
    assert not jobfile.exists()
    assert json.loads((jobfile.parent / "reencrypt.last.json").read_text())["finished"] is True
    st = json.loads(tool(tmp_path, data, "status", "--format", "json").stdout)["backends"][0]
    assert st["plaintext"] == 0 and st["encrypted"] == 121

    # back to plaintext: mode none with the key as legacy, then without it
    e2 = dict(e, DGP_OLD_KEY=KEY)
    cfg_none = enc_config(tmp_path, data, mode="none", legacy="local-2026-06")
    r = subprocess.run([str(BIN), "encryption", "reencrypt", "--config", str(cfg_none)], env=e2, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "retired key id(s) local-2026-06" in r.stdout
    srv = Server(tmp_path / "unused", config=enc_config(tmp_path, data, mode="none"), env={"DGP_ENCRYPTION_KEY": None}).start()
    try:
        s3 = srv.client()
        for k, h in sums.items():
            assert (data / "rebucket" / k).read_bytes()[:4] != b"DGE1"
            assert hashlib.sha256(s3.get_object(Bucket="rebucket", Key=k)["Body"].read()).hexdigest() == h
    finally:
        srv.stop()
