"""Adding and removing backends through the admin API (`POST /_/api/backends`,
`DELETE /_/api/backends/{name}`): a singleton backend is rewritten as the
backend `default` and keeps storing where and how it did (its encrypted
objects stay readable, across a restart too); a removed backend's data
stays on disk; every refusal says why and changes nothing."""

import json
import secrets

import yaml

from conftest import Server
from test_config_api import call

KEY = secrets.token_hex(32)


def doc(srv):
    r = call(srv, "GET", "/_/api/config?format=json")
    assert r.status_code == 200, r.text
    return r.json()


def test_adding_a_backend_keeps_the_singleton_where_and_how_it_stored(tmp_path):
    cfg = tmp_path / "c.yaml"
    # No backend form: the embedded default at --data-dir, encrypted with
    # the key in DGP_ENCRYPTION_KEY.
    cfg.write_text("storage:\n  backend_encryption:\n    mode: aes256-gcm-proxy\n")
    srv = Server(tmp_path / "data", config=cfg, env={"DGP_ENCRYPTION_KEY": KEY}).start()
    try:
        s3 = srv.client()
        s3.create_bucket(Bucket="old")
        s3.put_object(Bucket="old", Key="a.txt", Body=b"before the change " * 100)

        r = call(srv, "POST", "/_/api/backends",
                 json.dumps({"name": "two", "type": "filesystem", "path": str(tmp_path / "two")}),
                 "application/json")
        assert r.status_code == 200, r.text
        storage = yaml.safe_load(cfg.read_text())["storage"]
        assert storage["backends"] == [
            {"name": "default", "type": "filesystem", "path": str(tmp_path / "data"),
             "encryption": {"mode": "aes256-gcm-proxy", "key": "${env:DGP_ENCRYPTION_KEY}"}},
            {"name": "two", "type": "filesystem", "path": str(tmp_path / "two")},
        ]
        assert storage["default_backend"] == "default"
        assert "backend_encryption" not in storage

        # The old backend goes on as before: readable, and still encrypting.
        assert s3.get_object(Bucket="old", Key="a.txt")["Body"].read() == b"before the change " * 100
        s3.put_object(Bucket="old", Key="b.txt", Body=b"after the change " * 100)
        assert b"after the change" not in (tmp_path / "data" / "old" / "b.txt").read_bytes()

        # A bucket routed to the new backend lives in its directory.
        r = call(srv, "PATCH", "/_/api/config/storage", json.dumps({"buckets": {"fresh": {"backend": "two"}}}),
                 "application/json")
        assert r.status_code == 200, r.text
        s3.create_bucket(Bucket="fresh")
        s3.put_object(Bucket="fresh", Key="n.txt", Body=b"new home")
        assert (tmp_path / "two" / "fresh" / "n.txt").is_file()
        assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == {"old", "fresh"}

        # The rewritten file is what the next start reads.
        srv.stop()
        srv.start()
        s3 = srv.client()
        assert s3.get_object(Bucket="old", Key="a.txt")["Body"].read() == b"before the change " * 100
        assert s3.get_object(Bucket="fresh", Key="n.txt")["Body"].read() == b"new home"
        status = call(srv, "GET", "/_/api/status").json()
        assert {b["name"]: b["default"] for b in status["backends"]} == {"default": True, "two": False}
    finally:
        srv.stop()


def test_refusals_say_why_and_removing_keeps_the_data(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"storage:\n  filesystem: {tmp_path / 'one'}\n")
    srv = Server(tmp_path / "unused", config=cfg).start()
    try:
        before = cfg.read_text()

        def add(body):
            return call(srv, "POST", "/_/api/backends", json.dumps(body), "application/json")

        r = add({"name": "two", "type": "filesystem", "path": str(tmp_path / "two"),
                 "encryption": {"mode": "aes256-gcm-proxy"}})
        assert r.status_code == 400 and "set its encryption" in r.json()["error"], r.text
        r = add({"name": "two", "type": "tape"})
        assert r.status_code == 422, r.text
        assert any(p["field"] == "storage.backends[1].type" for p in r.json()["problems"]), r.text
        r = add({"name": "two", "type": "filesystem", "path": str(tmp_path / "one")})
        assert r.status_code == 422 and "same place" in r.text, r.text
        r = add({"name": "default", "type": "filesystem", "path": str(tmp_path / "x")})
        assert r.status_code == 409 and "exists already" in r.json()["error"], r.text
        assert cfg.read_text() == before, "nothing written by a refused change"

        assert add({"name": "two", "type": "filesystem", "path": str(tmp_path / "two")}).status_code == 200
        r = call(srv, "DELETE", "/_/api/backends/default")
        assert r.status_code == 409 and "default backend" in r.json()["error"], r.text
        assert call(srv, "DELETE", "/_/api/backends/nope").status_code == 404

        s3 = srv.client()
        assert call(srv, "PATCH", "/_/api/config/storage", json.dumps({"buckets": {"kept": {"backend": "two"}}}),
                    "application/json").status_code == 200
        s3.create_bucket(Bucket="kept")
        s3.put_object(Bucket="kept", Key="k", Body=b"still here")
        r = call(srv, "DELETE", "/_/api/backends/two")
        assert r.status_code == 409 and "holds buckets (kept)" in r.json()["error"], r.text
        # Forced, it is still refused while a route leads to it.
        r = call(srv, "DELETE", "/_/api/backends/two?force=true")
        assert r.status_code == 422, r.text
        assert any(p["field"] == "storage.buckets.kept.backend" for p in r.json()["problems"]), r.text
        assert call(srv, "PATCH", "/_/api/config/storage", json.dumps({"buckets": {"kept": None}}),
                    "application/json").status_code == 200
        r = call(srv, "DELETE", "/_/api/backends/two?force=true")
        assert r.status_code == 200, r.text
        assert [b["name"] for b in doc(srv)["storage"]["backends"]] == ["default"]
        assert (tmp_path / "two" / "kept" / "k").read_bytes() == b"still here", "removing never deletes data"
        assert "kept" not in {b["Name"] for b in s3.list_buckets()["Buckets"]}

        # Added back, its buckets come back.
        assert add({"name": "two", "type": "filesystem", "path": str(tmp_path / "two")}).status_code == 200
        assert call(srv, "PATCH", "/_/api/config/storage", json.dumps({"buckets": {"kept": {"backend": "two"}}}),
                    "application/json").status_code == 200
        assert s3.get_object(Bucket="kept", Key="k")["Body"].read() == b"still here"

        # Only the admin manages backends.
        r = call(srv, "POST", "/_/api/backends", b"{}", "application/json", sign=False)
        assert r.status_code in (401, 403), r.text
    finally:
        srv.stop()
