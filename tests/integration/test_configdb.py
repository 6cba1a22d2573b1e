"""The config database (SQLCipher): IAM users, groups, keys and permissions
managed through the admin API and the `iam` / `config-db` commands, with
the server running; the file is opaque, refuses a wrong key, survives
restarts, and exports/imports encrypted. In declarative mode the YAML owns
IAM and mutations are refused."""

import json
import os
import subprocess
import time

import botocore.exceptions
import pytest

from conftest import BIN, Server, make_client, raw_request


def api(srv, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else b""
    headers = {"content-type": "application/json"} if body is not None else {}
    status, _, out = raw_request(f"{srv.url}/_/api/iam{path}", method=method, body=data, headers=headers, sign=True)
    return status, (json.loads(out) if out else None)


def cli(srv, *args, config=None, env=None, check=True):
    e = dict(srv.env)
    e.update(env or {})
    cmd = [str(BIN), "iam", *args] if args[0] != "config-db" else [str(BIN), *args]
    if config:
        cmd += ["--config", str(config)]
    p = subprocess.run(cmd, cwd=srv.cwd, env=e, capture_output=True, text=True, timeout=60)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def code_of(fn, **kw):
    """The S3 error code of the call, or None when it succeeds."""
    try:
        fn(**kw)
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    return None


def wait_for(pred, timeout=10):
    deadline = time.time() + timeout
    while True:
        try:
            if pred():
                return
        except botocore.exceptions.ClientError:
            pass
        assert time.time() < deadline, "condition not reached"
        time.sleep(0.1)


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path / "data").start()
    s.client().create_bucket(Bucket="photos")
    s.client().put_object(Bucket="photos", Key="2026/a.jpg", Body=b"jpeg")
    yield s
    s.stop()


def test_database_is_created_encrypted_with_a_key_beside_it(srv):
    db = srv.cwd / "config.db"
    key = srv.cwd / "config.db.key"
    assert db.exists() and key.exists()
    assert os.stat(key).st_mode & 0o777 == 0o600 and key.stat().st_size == 32
    assert os.stat(db).st_mode & 0o777 == 0o600
    assert "created a new key for the config database" in srv.output()
    status, made = api(srv, "POST", "/users", {"name": "carol"})
    assert status == 201
    srv.stop()
    raw = db.read_bytes()
    assert not raw.startswith(b"SQLite format 3")
    for needle in (b"carol", made["secret_access_key"].encode(), made["access_key_id"].encode()):
        assert needle not in raw
    # A wrong key refuses to start, saying what to do; so does a missing one.
    bad = Server(srv.data_dir, env={"DGP_CONFIG_DB_KEY": "ab" * 32})
    bad.cwd = srv.cwd
    with pytest.raises(RuntimeError) as e:
        bad.start()
    assert "does not open with this key" in str(e.value) and "DGP_CONFIG_DB_KEY" in str(e.value)
    kept = key.read_bytes()
    key.unlink()
    with pytest.raises(RuntimeError) as e:
        srv.start()
    assert "its key is nowhere" in str(e.value)
    key.write_bytes(kept)
    os.chmod(key, 0o600)
    srv.log.clear()
    srv.start()
    assert srv.client().list_buckets()
    # carol survived the restarts.
    assert api(srv, "GET", "/users/carol")[0] == 200
    assert "created a new key" not in srv.output()


def test_admin_api_users_keys_permissions(srv):
    status, made = api(srv, "POST", "/users", {"name": "alice"})
    assert status == 201 and made["user"] == "alice" and len(made["secret_access_key"]) == 40
    alice = make_client(srv.url, access=made["access_key_id"], secret=made["secret_access_key"])
    # No permissions yet: nothing visible, nothing readable.
    assert alice.list_buckets()["Buckets"] == []
    assert code_of(alice.get_object, Bucket="photos", Key="2026/a.jpg") == "AccessDenied"
    status, r = api(srv, "POST", "/users/alice/permissions",
                    {"effect": "Allow", "actions": ["read", "list"], "resources": ["photos", "photos/*"]})
    assert (status, r) == (201, {"index": 0})
    assert alice.get_object(Bucket="photos", Key="2026/a.jpg")["Body"].read() == b"jpeg"
    assert [b["Name"] for b in alice.list_buckets()["Buckets"]] == ["photos"]
    assert code_of(alice.put_object, Bucket="photos", Key="x.jpg", Body=b"x") == "AccessDenied"
    # Bad input is refused with the reason.
    status, r = api(srv, "POST", "/users/alice/permissions", {"effect": "Allow", "actions": ["fly"], "resources": ["*"]})
    assert status == 400 and "unknown action" in r["error"]
    assert api(srv, "POST", "/users", {"name": "alice"})[0] == 409
    assert api(srv, "POST", "/users", {"name": "bad name"})[0] == 400
    # `admin` is the built-in administrator's name in sessions and the audit log.
    status, r = api(srv, "POST", "/users", {"name": "admin"})
    assert status == 400 and "reserved for the built-in administrator" in r["error"], r
    assert api(srv, "GET", "/users/nobody")[0] == 404
    # Groups.
    assert api(srv, "POST", "/groups", {"name": "writers"})[0] == 201
    assert api(srv, "POST", "/groups/writers/permissions",
               {"effect": "Allow", "actions": ["write"], "resources": ["photos/*"]})[0] == 201
    status, g = api(srv, "PUT", "/groups/writers/members/alice")
    assert status == 200 and g["members"] == ["alice"]
    alice.put_object(Bucket="photos", Key="new.jpg", Body=b"new")
    status, shown = api(srv, "GET", "/users/alice")
    assert shown["groups"] == ["writers"] and len(shown["access_keys"]) == 1
    assert "secret_access_key" not in json.dumps(shown)
    # Disable, enable.
    assert api(srv, "PUT", "/users/alice/enabled", {"enabled": False})[0] == 200
    assert code_of(alice.list_buckets) == "InvalidAccessKeyId"
    assert api(srv, "PUT", "/users/alice/enabled", {"enabled": True})[0] == 200
    assert alice.list_buckets()["Buckets"]
    # Rotate: the old key stops, the new one works.
    status, rotated = api(srv, "POST", f"/users/alice/keys/{made['access_key_id']}/rotate")
    assert status == 201 and rotated["access_key_id"] != made["access_key_id"]
    assert code_of(alice.list_buckets) == "InvalidAccessKeyId"
    alice2 = make_client(srv.url, access=rotated["access_key_id"], secret=rotated["secret_access_key"])
    assert alice2.get_object(Bucket="photos", Key="new.jpg")["Body"].read() == b"new"
    # Detach and delete.
    assert api(srv, "DELETE", "/groups/writers/permissions/0")[0] == 200
    assert code_of(alice2.put_object, Bucket="photos", Key="y.jpg", Body=b"y") == "AccessDenied"
    assert api(srv, "DELETE", "/users/alice")[0] == 200
    assert code_of(alice2.list_buckets) == "InvalidAccessKeyId"
    # The API wants the admin signature.
    status, _, _ = raw_request(f"{srv.url}/_/api/iam/users")
    assert status == 401
    for v in (made["secret_access_key"], rotated["secret_access_key"]):
        assert v not in srv.output()


def test_cli_changes_apply_to_the_running_server(srv, tmp_path):
    p = cli(srv, "--format", "json", "user", "create", "bob")
    made = json.loads(p.stdout)
    bob = make_client(srv.url, access=made["access_key_id"], secret=made["secret_access_key"])
    wait_for(lambda: bob.list_buckets() is not None)
    cli(srv, "permission", "attach", "--user", "bob", "--action", "read", "--action", "list",
        "--resource", "photos", "--resource", "photos/2026/*",
        "--condition", "IpAddress:aws:SourceIp=127.0.0.0/8")
    wait_for(lambda: bob.get_object(Bucket="photos", Key="2026/a.jpg")["Body"].read() == b"jpeg")
    shown = cli(srv, "user", "show", "bob").stdout
    assert "[0] Allow read,list on photos,photos/2026/*" in shown and made["secret_access_key"] not in shown
    bad = cli(srv, "permission", "attach", "--user", "bob", "--action", "read", "--resource", "x",
              "--condition", "Nope:aws:SourceIp=1.2.3.4", check=False)
    assert bad.returncode == 1 and "unknown condition operator" in bad.stderr
    # Export, lose the user, import: the same key works again.
    export = tmp_path / "iam.export"
    cli(srv, "config-db", "export", str(export))
    assert made["secret_access_key"].encode() not in export.read_bytes()
    cli(srv, "user", "delete", "bob")
    wait_for(lambda: code_of(bob.list_buckets) == "InvalidAccessKeyId")
    cli(srv, "config-db", "import", str(export))
    wait_for(lambda: bob.get_object(Bucket="photos", Key="2026/a.jpg")["Body"].read() == b"jpeg")
    # An export opens only with the database's key.
    other = tmp_path / "other"
    other.mkdir()
    s2 = Server(tmp_path / "data2")
    s2.cwd = other
    s2.start()
    try:
        r = cli(s2, "config-db", "import", str(export), check=False)
        assert r.returncode == 1 and "does not open with this database's key" in r.stderr
    finally:
        s2.stop()
    # A directory without the server's database: refused, nothing created.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = subprocess.run([str(BIN), "iam", "user", "list"], cwd=elsewhere, env=srv.env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "no config database" in r.stderr
    assert list(elsewhere.iterdir()) == []


def test_declarative_mode_refuses_mutations(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("""\
access:
  iam_mode: declarative
  iam_users:
    - name: ci
      access_key_id: AKIACI0000001
      secret_access_key: ci-secret-0123456789abcdef
      permissions: [{effect: Allow, actions: [list], resources: ["*"]}]
""")
    s = Server(tmp_path / "data", config=cfg).start()
    try:
        status, r = api(s, "POST", "/users", {"name": "x"})
        assert status == 403 and "declarative" in r["error"]
        status, r = api(s, "GET", "/users")
        assert status == 200 and r["mode"] == "declarative" and [u["name"] for u in r["users"]] == ["ci"]
        p = cli(s, "user", "create", "x", config=cfg, check=False)
        assert p.returncode == 1 and "declarative" in p.stderr
        ci = make_client(s.url, access="AKIACI0000001", secret="ci-secret-0123456789abcdef")
        assert ci.list_buckets()["Buckets"] == []
    finally:
        s.stop()
