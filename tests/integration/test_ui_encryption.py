"""A backend's encryption set from the admin UI, in a real browser: the key
is generated in the page, Apply stays disabled until "I have stored this key
safely" is ticked, and the browser's own network log shows the key left the
page in exactly one request, the Apply. The server writes it to a 0600 key
file (never into the config file or its log), new writes are encrypted at
once, and a re-encrypt job started from the page rewrites the old objects
while the jobs page follows it to 100 %. The job's state survives a restart.
The endpoint's refusals are checked through the API."""

import json
import os
import re
import stat
import textwrap
import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select

from conftest import Server, raw_request
from test_session import generated_password
from test_ui import browser, log_in, shot, text_of, wait

OBJECTS = {f"reports/{i:02}.txt": (f"quarterly report {i} ".encode() * 200) for i in range(12)}


def config(tmp_path):
    cfg = tmp_path / "enc.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        storage:
          filesystem: {tmp_path / 'data'}
        advanced:
          auth_delay_after: 100
        """))
    return cfg


class Network:
    """Every request the browser sent, from Chrome's performance log."""

    def __init__(self, b):
        self.b, self.sent = b, []

    def requests(self):
        for e in self.b.get_log("performance"):
            m = json.loads(e["message"])["message"]
            if m["method"] == "Network.requestWillBeSent":
                self.sent.append(m["params"]["request"])
        return self.sent

    def carrying(self, text):
        return [r for r in self.requests() if text in json.dumps(r)]


def fetch_json(b, path):
    return b.execute_script(f"const r = await fetch('{path}'); return await r.json();")


def on_disk(data, bucket, key):
    return (data / bucket / key).read_bytes()


def test_encryption_widget_gate_key_and_reencrypt_job(tmp_path):
    cfg = config(tmp_path)
    data = tmp_path / "data"
    srv = Server(tmp_path / "unused", config=cfg).start()
    s3 = srv.client()
    s3.create_bucket(Bucket="docs")
    for k, v in OBJECTS.items():
        s3.put_object(Bucket="docs", Key=k, Body=v)
    assert on_disk(data, "docs", "reports/00.txt") == OBJECTS["reports/00.txt"], "plaintext before"
    b = browser(network_log=True)
    try:
        net = Network(b)
        log_in(srv, b, generated_password(srv))
        text_of(b, "#version")
        b.find_element(By.ID, "nav-backends").click()
        mode = Select(wait(b, EC.element_to_be_clickable((By.ID, "enc-mode-default"))))
        assert "Encryption now: none" in text_of(b, "#backend-default")
        apply = b.find_element(By.ID, "enc-apply-default")
        mode.select_by_value("aes256-gcm-proxy")
        assert not apply.is_enabled(), "no key yet"
        b.find_element(By.ID, "gen-key-default").click()
        key = text_of(b, "#key-default")
        assert re.fullmatch(r"[0-9a-f]{64}", key)
        banner = b.find_element(By.ID, "key-banner-default")
        assert banner.is_displayed() and "lost" in banner.text
        assert "180, 35, 24" in banner.value_of_css_property("color"), "the banner is red"
        assert not apply.is_enabled(), "the gate holds Apply until the box is ticked"
        tick = b.find_element(By.ID, "key-stored-default")
        tick.click()
        assert apply.is_enabled()
        tick.click()
        assert not apply.is_enabled()
        tick.click()
        shot(b, "backends-encryption")

        # Before Apply: the page made requests, none of them carried the key;
        # the server has no key file and never saw it.
        assert any("/_/api/encryption/status" in r["url"] for r in net.requests())
        assert net.carrying(key) == []
        assert key not in srv.output()
        assert not (tmp_path / "keys").exists()

        apply.click()
        wait(b, EC.text_to_be_present_in_element((By.ID, "enc-result-default"), "Applied"))
        carriers = net.carrying(key)
        assert len(carriers) == 1, carriers
        assert carriers[0]["method"] == "POST" and carriers[0]["url"].endswith("/_/api/backends/default/encryption")
        assert not b.find_element(By.ID, "key-default").text, "the page forgets the key after Apply"

        files = list((tmp_path / "keys").iterdir())
        assert len(files) == 1 and files[0].name.startswith("default.k-")
        assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
        assert files[0].read_bytes() == bytes.fromhex(key)
        text = cfg.read_text()
        assert key not in text and str(files[0]) in text and "aes256-gcm-proxy" in text
        assert key not in srv.output(), "the key is never logged"

        # New writes are encrypted at once; old objects still read.
        s3.put_object(Bucket="docs", Key="new.txt", Body=b"written after Apply " * 100)
        assert b"written after Apply" not in on_disk(data, "docs", "new.txt")
        assert on_disk(data, "docs", "reports/03.txt") == OBJECTS["reports/03.txt"]

        b.find_element(By.ID, "start-reencrypt-default").click()
        wait(b, EC.text_to_be_present_in_element((By.CSS_SELECTOR, "tr[data-job=reencrypt-default] .state"), "done"), 60)
        row = b.find_element(By.CSS_SELECTOR, "tr[data-job=reencrypt-default]").text
        assert "100 %" in row and "12 rewritten, 1 unchanged, 0 failed of 13" in row, row
        shot(b, "jobs-reencrypt")

        for k, v in OBJECTS.items():
            assert v[:40] not in on_disk(data, "docs", k), f"{k} is ciphertext on disk"
            assert s3.get_object(Bucket="docs", Key=k)["Body"].read() == v
        st = fetch_json(b, "/_/api/encryption/status")["backends"][0]
        assert st["plaintext"] == 0 and st["encrypted"] == 13 and st["current_key_id"] == files[0].name[8:-4]

        # After a restart the server reads the key file, and the jobs page
        # still shows the finished job.
        srv.stop()
        srv.start()
        s3 = srv.client()
        assert s3.get_object(Bucket="docs", Key="new.txt")["Body"].read() == b"written after Apply " * 100
        log_in(srv, b, generated_password(srv))
        text_of(b, "#version")
        b.find_element(By.ID, "nav-jobs").click()
        wait(b, EC.text_to_be_present_in_element((By.CSS_SELECTOR, "tr[data-job=reencrypt-default] .state"), "done"))
    finally:
        b.quit()
        srv.stop()


def admin(srv, path, method="GET", body=None):
    status, _, out = raw_request(f"{srv.url}{path}", method=method, sign=True,
                                 body=json.dumps(body).encode() if body is not None else b"",
                                 headers={"content-type": "application/json"})
    return status, json.loads(out or b"{}")


def wait_job(srv):
    """The jobs once the default backend's has finished."""
    deadline = time.time() + 60
    while True:
        jobs = admin(srv, "/_/api/reencrypt")[1]["jobs"]
        if not jobs[0]["running"]:
            return jobs
        assert time.time() < deadline, f"the re-encrypt job did not finish: {jobs}"
        time.sleep(0.1)


def test_encryption_endpoint_refusals_and_rotation(tmp_path):
    cfg = config(tmp_path)
    srv = Server(tmp_path / "unused", config=cfg).start()
    try:
        path = "/_/api/backends/default/encryption"
        assert admin(srv, "/_/api/backends/nope/encryption", "POST", {"mode": "none"})[0] == 404
        status, doc = admin(srv, path, "POST", {"mode": "aes256-gcm-proxy"})
        assert status == 400 and "64 hex" in doc["error"]
        status, doc = admin(srv, path, "POST", {"mode": "aes256-gcm-proxy", "key": "ab" * 31})
        assert status == 400 and "ab" * 31 not in json.dumps(doc)
        assert admin(srv, path, "POST", {"mode": "sse-s3"})[0] == 422, "native SSE on a filesystem backend"
        assert admin(srv, path, "POST", {"mode": "rot13"})[0] == 400
        assert not (tmp_path / "keys").exists() or not list((tmp_path / "keys").iterdir())

        k1, k2 = os.urandom(32).hex(), os.urandom(32).hex()
        status, doc = admin(srv, path, "POST", {"mode": "aes256-gcm-proxy", "key": k1})
        assert status == 200 and doc["applied"] and doc["reencrypt_proposed"], doc
        id1 = doc["key_id"]
        assert admin(srv, path, "POST", {"mode": "aes256-gcm-proxy", "key": k1})[0] == 409
        s3 = srv.client()
        s3.create_bucket(Bucket="rot")
        s3.put_object(Bucket="rot", Key="one", Body=b"under key one")
        s3.create_bucket(Bucket="side")
        s3.put_object(Bucket="side", Key="x", Body=b"also under key one")

        # Rotation: the first key becomes the legacy key, so its objects read.
        status, doc = admin(srv, path, "POST", {"mode": "aes256-gcm-proxy", "key": k2})
        assert status == 200, doc
        assert s3.get_object(Bucket="rot", Key="one")["Body"].read() == b"under key one"
        st = admin(srv, "/_/api/encryption/status")[1]["backends"][0]
        assert st["current_key_id"] == doc["key_id"] and st["legacy_key_id"] == id1
        # A third key would drop key one while an object still needs it.
        status, doc = admin(srv, path, "POST", {"mode": "aes256-gcm-proxy", "key": os.urandom(32).hex()})
        assert status == 409 and id1 in doc["error"], doc
        assert len(list((tmp_path / "keys").iterdir())) == 2, "the refused key's file is removed"

        # A job over one bucket rewrites that bucket only.
        status, doc = admin(srv, "/_/api/reencrypt?backend=default&bucket=side", "POST")
        assert status == 202 and doc["job"]["buckets"] == ["side"], doc
        jobs = wait_job(srv)
        assert jobs[0]["job"]["buckets"] == ["side"] and jobs[0]["job"]["rewritten"] == 1, jobs
        assert s3.get_object(Bucket="side", Key="x")["Body"].read() == b"also under key one"
        assert admin(srv, "/_/api/reencrypt?backend=default&pause_ms=soon", "POST")[0] == 400
        assert admin(srv, "/_/api/reencrypt?backend=default&pause_ms=600000", "POST")[0] == 400
        # A pause after each object keeps the job running long enough to be seen.
        status, doc = admin(srv, "/_/api/reencrypt?backend=default&pause_ms=2000", "POST")
        assert status == 202 and doc["backend"] == "default" and doc["running"], doc
        status, doc = admin(srv, path, "POST", {"mode": "none"})
        assert status == 409 and "re-encrypt" in doc["error"], ("no key change while the job runs", doc)
        assert admin(srv, "/_/api/reencrypt?backend=default", "POST")[0] == 409, "no second job"
        jobs = wait_job(srv)
        assert jobs[0]["percent"] == 100 and jobs[0]["job"]["rewritten"] == 1, jobs
        # Now mode none: the current key stays as legacy for what it wrote.
        status, doc = admin(srv, path, "POST", {"mode": "none"})
        assert status == 200, doc
        assert s3.get_object(Bucket="rot", Key="one")["Body"].read() == b"under key one"
        assert admin(srv, "/_/api/reencrypt?backend=nope", "POST")[0] == 404
        assert admin(srv, "/_/api/reencrypt", "POST")[0] == 400
    finally:
        srv.stop()
