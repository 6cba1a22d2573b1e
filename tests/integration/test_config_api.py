"""The config API (docs/config-api.md): GET /_/api/config (canonical YAML or
JSON, defaults omitted, secrets redacted), PUT (validate, apply live, write the
file), PATCH /_/api/config/{section} (RFC 7396 merge patch), POST .../validate
(dry run) and GET .../schema; `config export` prints what GET shows."""

import hashlib
import json
import subprocess

import jsonschema
import pytest
import requests

import sigv4
from conftest import BIN, Server, raw_request

S3_SECRET = "upstream-secret-value-1234"


def call(srv, method, path, body=b"", content_type=None, sign=True):
    url = f"{srv.url}{path}"
    headers = {"content-type": content_type} if content_type else {}
    if isinstance(body, str):
        body = body.encode()
    if sign:
        headers, *_ = sigv4.sign(method, url, headers, hashlib.sha256(body).hexdigest())
    return requests.request(method, url, data=body, headers=headers, timeout=60)


def config_text(tmp):
    return f"""# operator's comment
storage:
  default_backend: local
  backends:
    - name: local
      type: filesystem
      path: {tmp / 'local'}
    - name: cloud
      type: s3
      endpoint: http://127.0.0.1:1
      region: us-east-1
      force_path_style: true
      access_key_id: upstreamkey
      secret_access_key: {S3_SECRET}
  buckets:
    releases:
advanced:
  listen_addr: 0.0.0.0:9000
  session_bind_ip: true
  cache_size_mb: 64
"""


@pytest.fixture
def running(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(config_text(tmp_path))
    srv = Server(tmp_path / "unused", config=cfg).start()
    yield srv, cfg, tmp_path
    srv.stop()


def test_get_is_canonical_redacted_and_matches_export(running):
    srv, cfg, _ = running
    r = call(srv, "GET", "/_/api/config?format=json")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert "listen_addr" not in doc["advanced"], "a field at its default is omitted"
    assert "session_bind_ip" not in doc["advanced"]
    assert doc["advanced"]["cache_size_mb"] == 64
    assert "releases" in doc["storage"]["buckets"], "a declared bucket is not a default"
    cloud = [b for b in doc["storage"]["backends"] if b["name"] == "cloud"][0]
    assert cloud["secret_access_key"] == "<redacted>"
    assert S3_SECRET not in r.text

    y = call(srv, "GET", "/_/api/config")
    assert y.status_code == 200
    assert y.headers["content-type"].startswith("application/yaml")
    assert S3_SECRET not in y.text and "cache_size_mb: 64" in y.text

    out = subprocess.run([str(BIN), "config", "export", str(cfg)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == y.text
    out = subprocess.run([str(BIN), "config", "export", str(cfg), "--json"], capture_output=True, text=True,
                         timeout=30)
    assert json.loads(out.stdout) == doc


def test_put_applies_live_writes_the_file_and_keeps_redacted_secrets(running):
    srv, cfg, tmp = running
    doc = call(srv, "GET", "/_/api/config?format=json").json()
    doc["storage"]["backends"].append({"name": "extra", "type": "filesystem", "path": str(tmp / "extra")})
    doc["storage"]["buckets"]["fresh"] = {"backend": "extra"}
    r = call(srv, "PUT", "/_/api/config", json.dumps(doc), "application/json")
    assert r.status_code == 200, r.text
    assert r.json()["applied"] is True
    assert r.json()["report"]["added"] == ["extra"]

    s3 = srv.client()
    s3.create_bucket(Bucket="fresh")
    s3.put_object(Bucket="fresh", Key="k.txt", Body=b"routed by PUT")
    assert (tmp / "extra" / "fresh" / "k.txt").exists(), "the new route is live"

    text = cfg.read_text()
    assert S3_SECRET in text, "the redacted secret kept the file's value"
    assert "extra" in text and "Written by the deltaglider_proxy config API" in text
    lint = subprocess.run([str(BIN), "config", "lint", str(cfg)], capture_output=True, text=True, timeout=30)
    assert lint.returncode == 0, lint.stderr
    # The file as written restarts the same way.
    srv.stop()
    srv.start()
    assert srv.client().get_object(Bucket="fresh", Key="k.txt")["Body"].read() == b"routed by PUT"


def test_put_yaml_invalid_is_refused_with_the_field_and_changes_nothing(running):
    srv, cfg, tmp = running
    before = cfg.read_text()
    bad = "storage:\n  backends:\n    - name: local\n      type: filesystem\n      path: /x\n  default_backend: nowhere\n"
    r = call(srv, "PUT", "/_/api/config", bad, "application/yaml")
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["applied"] is False
    fields = [p["field"] for p in body["problems"]]
    assert "storage.default_backend" in fields, body
    assert all(p["line"] for p in body["problems"] if p["field"] == "storage.default_backend")
    # A typo is a parse error with its place.
    r = call(srv, "PUT", "/_/api/config", "advanced:\n  cache_sise_mb: 3\n", "application/yaml")
    assert r.status_code == 422
    assert "cache_sise_mb" in r.json()["problems"][0]["message"]
    # A redacted secret where there is none to keep.
    doc = call(srv, "GET", "/_/api/config?format=json").json()
    doc["storage"]["backends"][1]["name"] = "renamed"
    r = call(srv, "PUT", "/_/api/config", json.dumps(doc), "application/json")
    assert r.status_code == 422
    assert r.json()["problems"][0]["field"] == "storage.backends.1.secret_access_key"
    assert cfg.read_text() == before
    s3 = srv.client()
    s3.create_bucket(Bucket="still")
    assert (tmp / "local" / "still").is_dir()


def test_patch_merges_one_section_and_applies_it(running):
    srv, cfg, _ = running
    st, _, _ = raw_request(f"{srv.url}/_/metrics")
    assert st == 401, "metrics need the admin signature by default"
    patch = {"metrics_allow_from": ["127.0.0.1/32"], "cache_size_mb": None}
    r = call(srv, "PATCH", "/_/api/config/advanced", json.dumps(patch), "application/merge-patch+json")
    assert r.status_code == 200, r.text
    st, _, _ = raw_request(f"{srv.url}/_/metrics")
    assert st == 200, "the patched scrape range is live"
    doc = call(srv, "GET", "/_/api/config?format=json").json()
    assert doc["advanced"] == {"metrics_allow_from": ["127.0.0.1/32"]}
    assert doc["storage"]["buckets"] == {"releases": None}
    assert S3_SECRET in cfg.read_text()

    r = call(srv, "PATCH", "/_/api/config/nonsense", "{}", "application/json")
    assert r.status_code == 404
    r = call(srv, "PATCH", "/_/api/config/advanced", json.dumps({"max_delta_ratio": 7}), "application/json")
    assert r.status_code == 422
    assert r.json()["problems"][0]["field"] == "advanced.max_delta_ratio"


def test_validate_is_a_dry_run(running):
    srv, cfg, tmp = running
    before = cfg.read_text()
    doc = call(srv, "GET", "/_/api/config?format=json").json()
    doc["storage"]["backends"].append({"name": "extra", "type": "filesystem", "path": str(tmp / "extra")})
    doc["storage"]["backends"] = [b for b in doc["storage"]["backends"] if b["name"] != "cloud"]
    doc["advanced"]["idle_timeout_secs"] = 99
    r = call(srv, "POST", "/_/api/config/validate", json.dumps(doc), "application/json")
    assert r.status_code == 200, r.text
    rep = r.json()["report"]
    assert r.json()["valid"] is True
    assert rep["added"] == ["extra"] and rep["removed"] == ["cloud"] and rep["unchanged"] == ["local"]
    assert "advanced.idle_timeout_secs" in rep["restart_required"]
    assert cfg.read_text() == before
    assert not (tmp / "extra").exists(), "a dry run opens nothing"
    r = call(srv, "POST", "/_/api/config/validate", "advanced: {max_delta_ratio: 5}\n", "application/yaml")
    assert r.status_code == 422


def test_schema_describes_the_documents_the_parser_accepts(running):
    srv, _, _ = running
    schema = call(srv, "GET", "/_/api/config/schema").json()
    jsonschema.Draft202012Validator.check_schema(schema)
    doc = call(srv, "GET", "/_/api/config?format=json").json()
    jsonschema.validate(doc, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"advanced": {"cache_sise_mb": 3}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"storage": {"backends": [{"name": 5}]}}, schema)
    out = subprocess.run([str(BIN), "config", "schema"], capture_output=True, text=True, timeout=30)
    assert json.loads(out.stdout) == schema


def test_the_config_api_needs_the_admin(running):
    srv, cfg, _ = running
    before = cfg.read_text()
    for method, path in [("GET", "/_/api/config"), ("PUT", "/_/api/config"), ("PATCH", "/_/api/config/advanced"),
                         ("POST", "/_/api/config/validate"), ("GET", "/_/api/config/schema")]:
        r = call(srv, method, path, "{}", "application/json", sign=False)
        assert r.status_code == 401, (method, path, r.status_code)
    assert cfg.read_text() == before


def test_without_a_config_file_changes_are_refused(tmp_path):
    srv = Server(tmp_path / "data").start()
    try:
        r = call(srv, "GET", "/_/api/config?format=json")
        assert r.status_code == 200 and r.json() == {}
        r = call(srv, "PUT", "/_/api/config", "{}", "application/json")
        assert r.status_code == 409
        assert "without a configuration file" in r.json()["error"]
    finally:
        srv.stop()
