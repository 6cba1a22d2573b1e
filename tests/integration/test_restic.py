"""restic (Debian's 0.14) backing up to the proxy, encrypted by the proxy
too: init, two backups, forget --prune, check --read-data, restore, and the
restored tree byte-identical to the source."""

import filecmp
import os
import shutil
import subprocess

import pytest

from conftest import ACCESS_KEY, SECRET_KEY, Server

RESTIC = shutil.which("restic")
if RESTIC is None:
    print("\n*** test_restic: restic is not installed (apt install restic); these tests are SKIPPED ***\n")


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("restic")
    cfg = tmp / "c.yaml"
    cfg.write_text(f"storage:\n  filesystem: {tmp / 'data'}\n  backend_encryption:\n    mode: aes256-gcm-proxy\n")
    s = Server(tmp / "unused", config=cfg, env={"DGP_ENCRYPTION_KEY": os.urandom(32).hex()}).start()
    yield s
    s.stop()


def restic(srv, *args, repo="restic-repo"):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
               RESTIC_PASSWORD="correct horse battery staple", RESTIC_CACHE_DIR=str(srv.data_dir.parent / "cache"))
    env.pop("AWS_PROFILE", None)
    p = subprocess.run([RESTIC, "-r", f"s3:{srv.url}/{repo}", "--quiet", *args],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"restic {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return p.stdout


def tree(root, seed):
    """Files a backup meets: random data, a repeated block, empty files,
    a nested directory, a symlink."""
    rnd = __import__("random").Random(seed)
    (root / "deep" / "er").mkdir(parents=True, exist_ok=True)
    (root / "big.bin").write_bytes(rnd.randbytes(6 * 1024 * 1024))
    (root / "same.bin").write_bytes(b"block" * 200_000)
    (root / "empty").write_bytes(b"")
    for i in range(30):
        (root / "deep" / "er" / f"f{i}.txt").write_text(f"file {i} {rnd.random()}\n" * (i + 1))
    if not (root / "link").exists():
        os.symlink("big.bin", root / "link")


@pytest.mark.skipif(RESTIC is None, reason="restic is not installed")
def test_restic_backup_forget_prune_check_restore(srv, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    tree(src, 1)
    restic(srv, "init")
    restic(srv, "backup", str(src))
    # Change some files, add some, remove one: a second snapshot.
    (src / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    (src / "deep" / "er" / "f3.txt").unlink()
    (src / "new.txt").write_text("after the first backup\n")
    restic(srv, "backup", str(src))
    snaps = restic(srv, "snapshots", "--json")
    assert snaps.count('"id"') == 2, snaps
    # Keep one snapshot and delete the data only the other one used.
    restic(srv, "forget", "--keep-last", "1", "--prune")
    assert restic(srv, "snapshots", "--json").count('"id"') == 1
    restic(srv, "check", "--read-data")

    out = tmp_path / "restored"
    restic(srv, "restore", "latest", "--target", str(out))
    restored = out / src.relative_to("/")
    cmp = filecmp.dircmp(src, restored)

    def same(c):
        assert not c.left_only and not c.right_only and not c.diff_files and not c.funny_files, (
            c.left_only, c.right_only, c.diff_files, c.funny_files)
        for sub in c.subdirs.values():
            same(sub)
    same(cmp)
    for f in ("big.bin", "same.bin", "new.txt", "deep/er/f29.txt"):
        assert (src / f).read_bytes() == (restored / f).read_bytes(), f
    assert os.readlink(restored / "link") == "big.bin"
    # The proxy stored the repository encrypted: no pack file holds restic's
    # own (already encrypted) bytes as written.
    packs = list((srv.data_dir.parent / "data" / "restic-repo" / "data").rglob("*"))
    files = [p for p in packs if p.is_file()]
    assert files and all(p.read_bytes()[:4] == b"DGE1" for p in files)
