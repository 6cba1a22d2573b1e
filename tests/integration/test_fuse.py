"""The FUSE view, mounted for real: objects PUT through the server with
boto3 (a plaintext and an encrypted backend) read back through the mount with
ls, sha256sum, getfattr and plain reads; damage, read-only refusals, TTL
freshness, unmount on signals, mountpoint checks, and `serve` mounting it."""

import errno
import hashlib
import os
import random
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, Server, random_bytes

KEY = secrets.token_hex(32)
MiB = 1024 * 1024
SIZES = [0, 1, 4096, 65535, 65536, 65537, 3 * MiB + 5]

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="needs /dev/fuse")


def write_config(tmp, extra=""):
    cfg = tmp / f"fuse-{secrets.token_hex(4)}.yaml"
    cfg.write_text(f"""
storage:
  default_backend: plain
  backends:
    - name: plain
      type: filesystem
      path: {tmp / 'plain'}
    - name: secure
      type: filesystem
      path: {tmp / 'secure'}
      encryption:
        mode: aes256-gcm-proxy
        key_id: vault-2026
  buckets:
    vault:
      backend: secure
{extra}""")
    return cfg


def env():
    e = dict(os.environ)
    e["DGP_BACKEND_SECURE_ENCRYPTION_KEY"] = KEY
    e["DGP_LOG_LEVEL"] = "deltaglider_proxy=info"
    for k in ("DGP_CONFIG", "DGP_DATA_DIR"):
        e.pop(k, None)
    return e


def key_for(i, size):
    return f"sizes/{size}.bin" if i % 2 else f"deep/a/b/{size}.bin"


def is_mounted(mp):
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" ")[4] == str(mp) for line in f)


class Mount:
    """A `deltaglider_proxy mount` process."""

    def __init__(self, mp, config, args=()):
        self.mp = Path(mp)
        self.mp.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([str(BIN), "mount", str(self.mp), "--config", str(config), *args],
                                     env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 20
        while not is_mounted(self.mp):
            if self.proc.poll() is not None:
                raise RuntimeError("mount failed:\n" + self.proc.stdout.read())
            if time.time() > deadline:
                self.proc.kill()
                raise RuntimeError("mount did not appear")
            time.sleep(0.05)

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        out, _ = self.proc.communicate(timeout=20)
        return self.proc.returncode, out


@pytest.fixture(scope="module")
def env_fuse(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuse")
    cfg = write_config(tmp)
    srv = Server(tmp / "unused", config=cfg, env={"DGP_BACKEND_SECURE_ENCRYPTION_KEY": KEY}).start()
    s3 = srv.client()
    s3.create_bucket(Bucket="docs")
    s3.create_bucket(Bucket="vault")
    objects = {}
    for bucket in ("docs", "vault"):
        for i, size in enumerate(SIZES):
            key = key_for(i, size)
            data = random_bytes(size)
            s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/x-test",
                          Metadata={"origin": f"{bucket}-{i}"})
            objects[(bucket, key)] = data
    m = Mount(tmp / "mnt", cfg)
    yield srv, m, objects, tmp
    m.stop()
    srv.stop()


def test_ls_sizes_and_sha256_match(env_fuse):
    srv, m, objects, _ = env_fuse
    out = subprocess.run(["ls", "-lR", str(m.mp)], capture_output=True, text=True, check=True).stdout
    # Every object is listed with its logical size, in its directory.
    listed = {}
    cur = None
    for line in out.splitlines():
        if line.endswith(":"):
            cur = Path(line[:-1])
            continue
        f = line.split()
        if len(f) >= 9 and f[0].startswith("-"):
            listed[cur / f[8]] = int(f[4])
            assert f[0] == "-r--r-----", line
    for (bucket, key), data in objects.items():
        p = m.mp / bucket / key
        assert listed[p] == len(data), (p, listed.get(p))
    assert len(listed) == len(objects)
    # sha256sum through the mount equals the uploaded bytes.
    paths = [str(m.mp / b / k) for (b, k) in objects]
    sums = subprocess.run(["sha256sum", *paths], capture_output=True, text=True, check=True).stdout
    got = {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in sums.splitlines()}
    for (b, k), data in objects.items():
        assert got[str(m.mp / b / k)] == hashlib.sha256(data).hexdigest()
    # Sizes come from the metadata, not the body: a body emptied on disk
    # (its metadata kept) still lists with its logical size.
    srv.client().put_object(Bucket="vault", Key="meta-only/x", Body=b"z" * 5000)
    body = m.mp.parent / "secure" / "vault" / "meta-only" / "x"
    x = os.getxattr(body, "user.dg.metadata")
    body.write_bytes(b"")
    os.setxattr(body, "user.dg.metadata", x)
    assert wait_for(lambda: (m.mp / "vault" / "meta-only" / "x").exists())
    assert (m.mp / "vault" / "meta-only" / "x").stat().st_size == 5000
    srv.client().delete_object(Bucket="vault", Key="meta-only/x")
    # Top level: the buckets, and nothing of the internal areas.
    assert sorted(os.listdir(m.mp)) == ["docs", "vault"]
    # stat: Last-Modified time, owner is the mounting user.
    st = os.stat(m.mp / "vault" / "sizes/1.bin")
    head = srv.client().head_object(Bucket="vault", Key="sizes/1.bin")
    assert abs(st.st_mtime - head["LastModified"].timestamp()) < 1.0
    assert st.st_uid == os.getuid()


def test_random_offset_reads(env_fuse):
    _, m, objects, _ = env_fuse
    rnd = random.Random(7)
    for bucket in ("docs", "vault"):
        key = key_for(SIZES.index(3 * MiB + 5), 3 * MiB + 5)
        data = objects[(bucket, key)]
        with open(m.mp / bucket / key, "rb", buffering=0) as f:
            for _ in range(200):
                off = rnd.randrange(0, len(data) + 10)
                n = rnd.choice([1, 100, 4096, 65536, 70000, 300000])
                f.seek(off)
                assert f.read(n) == data[off:off + n], (bucket, off, n)


def test_getfattr_shows_metadata_and_markers_never_keys(env_fuse):
    _, m, objects, tmp = env_fuse
    def attrs(p):
        out = subprocess.run(["getfattr", "-d", "--absolute-names", str(p)], capture_output=True, text=True, check=True).stdout
        return dict(re.findall(r'^(user\.[^=]+)="(.*)"$', out, re.M))
    enc = attrs(m.mp / "vault" / "sizes/1.bin")
    assert enc["user.dg-encrypted"] == "aes-256-gcm-dge1"
    assert enc["user.dg-encryption-key-id"] == "vault-2026"
    assert enc["user.content-type"] == "application/x-test"
    assert enc["user.x-amz-meta-origin"] == "vault-1"
    assert re.fullmatch(r"[0-9a-f]{32}", enc["user.etag"])
    assert not any("wrapped" in k for k in enc)
    stored = os.getxattr(tmp / "secure" / "vault" / "sizes" / "1.bin", "user.dg.metadata")
    wrapped = __import__("json").loads(stored)["dg-wrapped-key"]
    assert wrapped not in repr(enc)
    plain = attrs(m.mp / "docs" / "sizes/1.bin")
    assert "user.dg-encrypted" not in plain and plain["user.x-amz-meta-origin"] == "docs-1"
    with pytest.raises(OSError) as e:
        os.setxattr(m.mp / "docs" / "sizes/1.bin", "user.x", b"1")
    assert e.value.errno == errno.EROFS


def test_writes_fail_with_erofs(env_fuse):
    _, m, _, _ = env_fuse
    attempts = [
        lambda: open(m.mp / "docs" / "new.txt", "w"),
        lambda: open(m.mp / "docs" / "sizes/1.bin", "r+b"),
        lambda: os.mkdir(m.mp / "docs" / "newdir"),
        lambda: os.unlink(m.mp / "docs" / "sizes/1.bin"),
        lambda: os.rename(m.mp / "docs" / "sizes/1.bin", m.mp / "docs" / "x"),
        lambda: os.truncate(m.mp / "docs" / "sizes/1.bin", 0),
    ]
    for a in attempts:
        with pytest.raises(OSError) as e:
            a()
        assert e.value.errno == errno.EROFS
    assert (m.mp / "docs" / "sizes/1.bin").stat().st_size == 1


def test_damaged_object_gives_eio_and_neighbours_read(env_fuse):
    srv, m, _, tmp = env_fuse
    s3 = srv.client()
    blobs = {k: random_bytes(3 * 65536 + 7) for k in ("dmg/a", "dmg/b", "dmg/c")}
    for k, v in blobs.items():
        s3.put_object(Bucket="vault", Key=k, Body=v)
    path = tmp / "secure" / "vault" / "dmg" / "b"
    raw = bytearray(path.read_bytes())
    raw[24 + 65552 + 10] ^= 1  # a byte of the second chunk
    x = os.getxattr(path, "user.dg.metadata")
    path.write_bytes(bytes(raw))
    os.setxattr(path, "user.dg.metadata", x)
    time.sleep(1.2)
    with open(m.mp / "vault" / "dmg" / "b", "rb", buffering=0) as f:
        assert f.read(1000) == blobs["dmg/b"][:1000]  # the first chunk is intact
        with pytest.raises(OSError) as e:
            f.seek(65536 + 5)
            f.read(100)
        assert e.value.errno == errno.EIO
    with pytest.raises(OSError) as e:
        (m.mp / "vault" / "dmg" / "b").read_bytes()
    assert e.value.errno == errno.EIO
    assert (m.mp / "vault" / "dmg" / "a").read_bytes() == blobs["dmg/a"]
    assert (m.mp / "vault" / "dmg" / "c").read_bytes() == blobs["dmg/c"]
    assert sorted(os.listdir(m.mp / "vault" / "dmg")) == ["a", "b", "c"]
    # An object whose key id is unknown: EIO on open.
    path_c = tmp / "secure" / "vault" / "dmg" / "c"
    doc = __import__("json").loads(os.getxattr(path_c, "user.dg.metadata"))
    doc["dg-encryption-key-id"] = "nobody-has-this"
    os.setxattr(path_c, "user.dg.metadata", __import__("json").dumps(doc).encode())
    time.sleep(1.2)
    with pytest.raises(OSError) as e:
        (m.mp / "vault" / "dmg" / "c").read_bytes()
    assert e.value.errno == errno.EIO
    assert (m.mp / "vault" / "dmg" / "a").read_bytes() == blobs["dmg/a"]


def wait_for(pred, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_s3_writes_appear_and_deletes_disappear_within_ttl(env_fuse):
    srv, m, _, _ = env_fuse
    s3 = srv.client()
    p = m.mp / "docs" / "fresh" / "obj.txt"
    assert not p.exists()
    s3.put_object(Bucket="docs", Key="fresh/obj.txt", Body=b"v1")
    t0 = time.time()
    assert wait_for(lambda: p.exists())
    assert p.read_bytes() == b"v1"
    s3.put_object(Bucket="docs", Key="fresh/obj.txt", Body=b"version two")
    assert wait_for(lambda: p.stat().st_size == 11)
    assert p.read_bytes() == b"version two"
    s3.delete_object(Bucket="docs", Key="fresh/obj.txt")
    assert wait_for(lambda: not p.exists())
    assert time.time() - t0 < 5
    s3.create_bucket(Bucket="late-bucket")
    s3.put_object(Bucket="late-bucket", Key="k", Body=b"x")
    assert wait_for(lambda: (m.mp / "late-bucket" / "k").exists())


def test_reads_touch_only_the_chunks_they_need(env_fuse):
    """4 KiB at the end of a 64 MiB encrypted object reads a few chunks of
    ciphertext, not the object (the mount process's read counter says)."""
    srv, m, _, _ = env_fuse
    data = random_bytes(64 * MiB)
    srv.client().put_object(Bucket="vault", Key="big/64m", Body=data)
    p = m.mp / "vault" / "big" / "64m"
    assert wait_for(lambda: p.exists())

    def rchar():
        return int(re.search(r"rchar: (\d+)", Path(f"/proc/{m.proc.pid}/io").read_text()).group(1))
    before = rchar()
    with open(p, "rb", buffering=0) as f:
        f.seek(60 * MiB + 123)
        assert f.read(4096) == data[60 * MiB + 123:60 * MiB + 123 + 4096]
    assert rchar() - before < 4 * MiB


def test_many_open_files_stay_bounded(env_fuse):
    srv, m, _, _ = env_fuse
    s3 = srv.client()
    for i in range(300):
        s3.put_object(Bucket="vault", Key=f"many/{i:03}", Body=bytes([i % 256]) * 70000)
    assert wait_for(lambda: len(os.listdir(m.mp / "vault" / "many")) == 300)
    files = [open(m.mp / "vault" / "many" / f"{i:03}", "rb", buffering=0) for i in range(300)]
    try:
        for i, f in enumerate(files):
            f.seek(66000)
            assert f.read(10) == bytes([i % 256]) * 10
        status = Path(f"/proc/{m.proc.pid}/status").read_text()
        rss_kib = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
        assert rss_kib < 150 * 1024, rss_kib
    finally:
        for f in files:
            f.close()


def test_mountpoint_checks_and_stale_mount(tmp_path, env_fuse):
    _, _, _, tmp = env_fuse
    cfg = write_config(tmp)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    r = subprocess.run([str(BIN), "mount", str(busy), "--config", str(cfg)], env=env(), capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "not empty" in r.stderr
    assert (busy / "keep.txt").read_text() == "mine"
    r = subprocess.run([str(BIN), "mount", str(tmp_path / "missing"), "--config", str(cfg)], env=env(), capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "does not exist" in r.stderr
    r = subprocess.run([str(BIN), "mount", str(tmp_path / "m0"), "--config", str(cfg), "--bucket", "nope"], env=env(), capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    # A mount whose process was killed -9 leaves a stale mount behind.
    m = Mount(tmp_path / "stale", cfg)
    m.proc.kill()
    m.proc.wait()
    try:
        stale_mount_is_reported(m, cfg)
    finally:
        if is_mounted(m.mp):
            subprocess.run(["umount", "-l", str(m.mp)])


def stale_mount_is_reported(m, cfg):
    with pytest.raises(OSError) as e:
        os.stat(m.mp)
    assert e.value.errno == errno.ENOTCONN
    r = subprocess.run([str(BIN), "mount", str(m.mp), "--config", str(cfg)], env=env(), capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "stale" in r.stderr and f"fusermount3 -u {m.mp}" in r.stderr
    cmd = re.search(r"Clear it with:\s+(fusermount3 -u \S+)", r.stderr).group(1).split()
    subprocess.run(cmd, check=True)
    assert not is_mounted(m.mp)
    m2 = Mount(m.mp, cfg, args=("--bucket", "vault"))
    try:
        assert "sizes" in os.listdir(m2.mp) and "docs" not in os.listdir(m2.mp)
    finally:
        m2.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_unmount_on_signal_leaves_nothing(tmp_path, env_fuse, sig):
    _, _, _, tmp = env_fuse
    m = Mount(tmp_path / "mp", write_config(tmp))
    assert "vault" in os.listdir(m.mp)
    rc, out = m.stop(sig)
    assert rc == 0, out
    assert not is_mounted(m.mp)
    assert os.listdir(m.mp) == []
    assert "FUSE view unmounted" in out


def test_unmount_while_busy_detaches(tmp_path, env_fuse):
    _, _, _, tmp = env_fuse
    m = Mount(tmp_path / "mp", write_config(tmp))
    f = open(m.mp / "vault" / "sizes" / "1.bin", "rb", buffering=0)
    rc, out = m.stop()
    assert rc == 0, out
    assert not is_mounted(m.mp) and "detached" in out
    # The open file outlived the mount process: it fails, it does not hang.
    with pytest.raises(OSError) as e:
        f.read(1)
    assert e.value.errno == errno.ENOTCONN
    try:
        f.close()
    except OSError:
        pass


def test_serve_mounts_the_view_from_config(tmp_path):
    mp = tmp_path / "view"
    mp.mkdir()
    cfg = write_config(tmp_path, extra=f"fuse:\n  mountpoint: {mp}\n  allow_other: true\n")
    srv = Server(tmp_path / "unused", config=cfg, env={"DGP_BACKEND_SECURE_ENCRYPTION_KEY": KEY}).start()
    try:
        assert is_mounted(mp)
        s3 = srv.client()
        s3.create_bucket(Bucket="vault")
        s3.put_object(Bucket="vault", Key="x/y", Body=b"through serve")
        assert wait_for(lambda: (mp / "vault" / "x" / "y").exists())
        assert (mp / "vault" / "x" / "y").read_bytes() == b"through serve"
        assert oct((mp / "vault" / "x" / "y").stat().st_mode & 0o777) == "0o444"
    finally:
        assert srv.stop() == 0
    assert not is_mounted(mp)
    assert "FUSE view unmounted" in srv.output()


def test_config_lint_checks_the_fuse_section(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("fuse:\n  mountpoint: relative/dir\n")
    r = subprocess.run([str(BIN), "config", "lint", str(bad)], capture_output=True, text=True)
    assert r.returncode != 0 and "fuse.mountpoint" in r.stderr and "absolute" in r.stderr
    bad.write_text("fuse:\n  allow_other: true\n")
    r = subprocess.run([str(BIN), "config", "lint", str(bad)], capture_output=True, text=True)
    assert r.returncode != 0 and "fuse.mountpoint" in r.stderr
    bad.write_text("fuse:\n  mountpoint: /srv/x\n  alow_other: true\n")
    r = subprocess.run([str(BIN), "config", "lint", str(bad)], capture_output=True, text=True)
    assert r.returncode != 0 and "alow_other" in r.stderr
    good = tmp_path / "good.yaml"
    good.write_text("fuse:\n  mountpoint: /srv/deltaglider\n  allow_other: false\n")
    r = subprocess.run([str(BIN), "config", "lint", str(good)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
