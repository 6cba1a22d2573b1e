"""The config file as an operator uses it: `config lint`, routing, aliases,
public prefixes, startup refusals."""

import subprocess
import textwrap
from pathlib import Path

import pytest
import requests

from conftest import BIN, Server, make_client

TESTDATA = Path(__file__).resolve().parents[2] / "src" / "config" / "testdata"


def lint(path, env=None):
    import os
    e = {k: v for k, v in os.environ.items() if not k.startswith("DGP_")}
    e.update(env or {})
    return subprocess.run([str(BIN), "config", "lint", str(path)], capture_output=True, text=True, env=e)


@pytest.mark.parametrize("name", ["seed000_named_s3_aes.yaml", "seed000_sse_kms.yaml", "seed004_canonical.yaml", "seed004_five_line.yaml"])
def test_seed_examples_pass_lint(name):
    r = lint(TESTDATA / name)
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout


def test_singleton_fs_encryption_example_lints_with_warning():
    r = lint(TESTDATA / "seed000_singleton_fs_aes.yaml")
    assert r.returncode == 0, r.stderr
    assert "DGP_ENCRYPTION_KEY" in r.stderr


def test_native_sse_on_filesystem_rejected(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(textwrap.dedent("""\
        storage:
          backends:
            - name: local
              type: filesystem
              path: /tmp/x
              encryption:
                mode: sse-kms
                kms_key_id: arn:aws:kms:eu-west-1:123456789012:key/abcd
    """))
    r = lint(f)
    assert r.returncode != 0
    assert "S3-only" in r.stderr


def test_unknown_field_names_line_and_column(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("advanced:\n  cache_size_mb: 10\n  colour: blue\n")
    r = lint(f)
    assert r.returncode != 0
    assert "colour" in r.stderr and "line 3" in r.stderr


def test_routing_alias_and_public_prefix(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    cfg = tmp_path / "dgp.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        storage:
          default_backend: main
          backends:
            - name: main
              type: filesystem
              path: {a}
            - name: archive
              type: filesystem
              path: {b}
          buckets:
            releases:
              backend: main
              public_prefixes: ["builds/"]
            archive:
              backend: archive
              alias: prod-archive-2024
    """))
    srv = Server(tmp_path / "unused", config=cfg).start()
    try:
        s3 = srv.client()
        s3.create_bucket(Bucket="releases")
        s3.create_bucket(Bucket="archive")
        s3.put_object(Bucket="releases", Key="builds/v1.zip", Body=b"public build")
        s3.put_object(Bucket="releases", Key="private/key.pem", Body=b"secret")
        s3.put_object(Bucket="archive", Key="2024/db.txt", Body=b"dump")
        # the alias is the directory on the archive backend
        assert (b / "prod-archive-2024" / "2024" / "db.txt").read_bytes() == b"dump"
        assert (a / "releases" / "builds" / "v1.zip").exists()
        assert sorted(x["Name"] for x in s3.list_buckets()["Buckets"]) == ["archive", "releases"]
        # anonymous read under the public prefix only, never writes
        assert requests.get(f"{srv.url}/releases/builds/v1.zip").content == b"public build"
        assert requests.get(f"{srv.url}/releases/private/key.pem").status_code == 403
        assert requests.put(f"{srv.url}/releases/builds/evil", data=b"x").status_code == 403
        assert requests.get(f"{srv.url}/releases?list-type=2&prefix=builds/").status_code == 200
        assert requests.get(f"{srv.url}/releases?list-type=2").status_code == 403
        assert "--data-dir" in srv.output() or "data dir" in srv.output().lower()
    finally:
        srv.stop()
