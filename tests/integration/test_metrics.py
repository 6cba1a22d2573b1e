"""GET /_/metrics: who may scrape it, that the output parses as
OpenMetrics, and that the counters move by exactly the load we send
(requests by operation and status, bytes, auth failures and lockouts,
delta encodes and reconstructs, sealing by key id, the object inventory)."""

import secrets
import textwrap
import time

import pytest
import requests
from botocore.exceptions import ClientError

from conftest import BIN, Server, raw_request, random_bytes, scrape, value

KEY = secrets.token_hex(32)


def moved(before, after, name, **labels):
    return value(after, name, **labels) - value(before, name, **labels)


def config(tmp, extra=""):
    cfg = tmp / f"m-{secrets.token_hex(4)}.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        storage:
          backend:
            type: filesystem
            path: {tmp / 'data'}
          backend_encryption:
            mode: aes256-gcm-proxy
            key: "${{env:DGP_ENCRYPTION_KEY}}"
            key_id: metrics-2026
        advanced:
          auth_lockout_after: 3
          auth_delay_after: 100
        {extra}"""))
    return cfg


@pytest.fixture(scope="module")
def msrv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics")
    srv = Server(tmp / "unused", config=config(tmp, "  metrics_allow_from: [127.0.0.2/32]\n"),
                 env={"DGP_ENCRYPTION_KEY": KEY}).start()
    yield srv
    srv.stop()


def test_scrape_needs_the_admin_signature_or_an_allowed_address(msrv):
    url = f"{msrv.url}/_/metrics"
    # unsigned from an address not in metrics_allow_from
    r = requests.get(url)
    assert r.status_code == 401 and "admin credential" in r.json()["error"]
    # signed with a wrong secret
    status, _, body = raw_request(url, sign=True, secret="wrong-secret-" + "y" * 20)
    assert status == 403, body
    # signed with the admin credential
    m = scrape(msrv)
    assert value(m, "dgp_build_info", version=value_of_version(m)) == 1
    assert value(m, "dgp_process_resident_memory_bytes") > 1024 * 1024
    assert value(m, "dgp_backend_up", backend="default", kind="filesystem") == 1
    assert value(m, "dgp_backend_disk_total_bytes", backend="default") > 0
    # unsigned from 127.0.0.2, which the config lets scrape
    m = scrape(msrv, source="127.0.0.2", sign=False)
    assert value(m, "dgp_uptime_seconds") >= 0
    # the allow list opens the metrics only, not the rest of the operator API
    status, _, _ = raw_request(f"{msrv.url}/_/api/status", source="127.0.0.2")
    assert status == 401


def value_of_version(m):
    for (name, labels) in m:
        if name == "dgp_build_info":
            return dict(labels)["version"]
    raise AssertionError("no dgp_build_info")


def test_request_counters_move_by_the_load_sent(msrv):
    s3 = msrv.client()
    s3.create_bucket(Bucket="load")
    before = scrape(msrv)
    body = random_bytes(10_000)
    for i in range(5):
        s3.put_object(Bucket="load", Key=f"obj-{i}.txt", Body=body)
    for i in range(3):
        assert s3.get_object(Bucket="load", Key=f"obj-{i}.txt")["Body"].read() == body
    for i in range(2):
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket="load", Key=f"missing-{i}")
        assert e.value.response["Error"]["Code"] == "NoSuchKey"
    s3.head_object(Bucket="load", Key="obj-0.txt")
    after = scrape(msrv)

    def req(op, status):
        return moved(before, after, "dgp_requests_total", api="s3", operation=op, status=str(status))

    assert req("PutObject", 200) == 5
    assert req("GetObject", 200) == 3
    assert req("GetObject", 404) == 2
    assert req("HeadObject", 200) == 1
    assert moved(before, after, "dgp_request_duration_seconds_count", api="s3", operation="PutObject") == 5
    assert moved(before, after, "dgp_received_bytes_total", api="s3") >= 5 * 10_000
    # three bodies out; the HEAD announced a length but sent none
    sent = moved(before, after, "dgp_sent_bytes_total", api="s3")
    assert 3 * 10_000 <= sent < 4 * 10_000
    # every object was sealed with the configured key
    assert moved(before, after, "dgp_encryption_sealed_total", backend="default", key_id="metrics-2026") == 5
    assert moved(before, after, "dgp_objects_written_total", outcome="whole") == 5
    assert moved(before, after, "dgp_logical_written_bytes_total") == 5 * 10_000
    # the scrape before is counted as an admin request on its route
    assert moved(before, after, "dgp_requests_total", api="admin", operation="/_/metrics", status="200") == 1


def test_auth_failures_and_lockouts_are_counted(tmp_path):
    srv = Server(tmp_path / "unused", config=config(tmp_path, "  metrics_allow_from: [127.0.0.1/32]\n"),
                 env={"DGP_ENCRYPTION_KEY": KEY}).start()
    try:
        before = scrape(srv, sign=False)
        bad = srv.client(secret="not-the-secret-" + "z" * 20)
        for _ in range(3):
            with pytest.raises(ClientError) as e:
                bad.list_buckets()
            assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
        # locked out now: refused before any signature work (not a failure)
        with pytest.raises(ClientError) as e:
            bad.list_buckets()
        assert e.value.response["Error"]["Code"] == "SlowDown"
        after = scrape(srv, sign=False)
        assert moved(before, after, "dgp_auth_failures_total") == 3
        assert moved(before, after, "dgp_auth_lockouts_total") == 1
        assert moved(before, after, "dgp_requests_total", api="s3", operation="ListBuckets", status="403") == 3
    finally:
        srv.stop()


def versions(n, size):
    base = bytearray(random_bytes(size))
    out = []
    for i in range(n):
        v = bytearray(base)
        v[i * 100:i * 100 + 16] = random_bytes(16)
        out.append(bytes(v))
    return out


def test_delta_counters(msrv):
    s3 = msrv.client()
    s3.create_bucket(Bucket="builds")
    before = scrape(msrv)
    vs = versions(3, 300_000)
    for i, v in enumerate(vs):
        s3.put_object(Bucket="builds", Key=f"app/app-{i}.zip", Body=v)
    for i, v in enumerate(vs):
        assert s3.get_object(Bucket="builds", Key=f"app/app-{i}.zip")["Body"].read() == v
    after = scrape(msrv)
    assert moved(before, after, "dgp_objects_written_total", outcome="reference") == 1
    assert moved(before, after, "dgp_objects_written_total", outcome="delta") == 2
    # one encode per object (the first against itself), one rebuild per GET
    assert moved(before, after, "dgp_delta_encode_duration_seconds_count") == 3
    assert moved(before, after, "dgp_delta_reconstruct_duration_seconds_count") == 3
    cache = (moved(before, after, "dgp_delta_reference_cache_total", outcome="hit")
             + moved(before, after, "dgp_delta_reference_cache_total", outcome="miss"))
    assert cache >= 5 and moved(before, after, "dgp_delta_reference_cache_total", outcome="hit") >= 1
    logical = moved(before, after, "dgp_logical_written_bytes_total")
    stored = moved(before, after, "dgp_stored_written_bytes_total")
    assert logical == 3 * 300_000
    # the reference once, plus two small deltas
    assert 300_000 <= stored < 1.2 * 300_000


def test_inventory_counts_stored_objects_by_key_id(tmp_path):
    srv = Server(tmp_path / "unused", config=config(tmp_path), env={"DGP_ENCRYPTION_KEY": KEY}).start()
    try:
        s3 = srv.client()
        s3.create_bucket(Bucket="inv")
        for i in range(4):
            s3.put_object(Bucket="inv", Key=f"k{i}", Body=b"x" * 1000)
        # the first scrape starts the inventory; it never waits for it
        deadline = time.time() + 30
        while True:
            m = scrape(srv)
            if ("dgp_inventory_age_seconds", frozenset()) in m:
                break
            assert time.time() < deadline, "no inventory after 30 s"
            time.sleep(0.2)
        assert value(m, "dgp_stored_objects_encrypted", backend="default", key_id="metrics-2026") == 4
        assert value(m, "dgp_stored_objects_plaintext", backend="default") == 0
        assert value(m, "dgp_bucket_objects", bucket="inv") == 4
        assert value(m, "dgp_bucket_logical_bytes", bucket="inv") == 4000
    finally:
        srv.stop()


def test_metrics_allow_from_must_be_networks(tmp_path):
    import subprocess
    cfg = config(tmp_path, "  metrics_allow_from: [10.0.0.0/33]\n")
    r = subprocess.run([str(BIN), "config", "lint", str(cfg)], capture_output=True, text=True,
                       env={"DGP_ENCRYPTION_KEY": KEY, "PATH": "/usr/bin:/bin"})
    assert r.returncode != 0
    assert "advanced.metrics_allow_from[0]" in r.stdout + r.stderr


def test_every_exported_metric_is_documented_and_the_dashboard_uses_real_ones(msrv):
    import json
    import re
    from conftest import REPO
    doc = (REPO / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"`(dgp_[a-z_]+)`", doc))
    deadline = time.time() + 30
    while ("dgp_inventory_age_seconds", frozenset()) not in (m := scrape(msrv)):
        assert time.time() < deadline, "no inventory after 30 s"
        time.sleep(0.2)
    exported = {re.sub(r"_(bucket|count|sum|created)$", "", name) for name, _ in m}
    missing = {n for n in exported if n not in documented and n.removesuffix("_total") not in documented}
    assert not missing, f"exported but not in docs/metrics.md: {sorted(missing)}"
    dash = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
    used = {re.sub(r"_(bucket|count|sum)$", "", n)
            for p in dash["panels"] for t in p["targets"] for n in re.findall(r"dgp_[a-z_]+", t["expr"])}
    assert used - documented == set(), f"the dashboard uses unknown metrics: {sorted(used - documented)}"
