"""Fixtures: start the real deltaglider_proxy binary on 127.0.0.1 with an
ephemeral port and a temp data dir, and hand tests real S3 clients."""

import os
import re
import secrets
import signal
import subprocess
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("DGP_BIN", REPO / "target" / "release" / "deltaglider_proxy"))
ACCESS_KEY = "dgptestadmin"
SECRET_KEY = "dgp-test-secret-" + "x" * 24


class Server:
    """A running deltaglider_proxy process."""

    def __init__(self, data_dir, env=None, args=(), config=None, expect_fail=False):
        self.data_dir = Path(data_dir)
        self.env = dict(os.environ)
        self.env.update({
            "DGP_ACCESS_KEY_ID": ACCESS_KEY,
            "DGP_SECRET_ACCESS_KEY": SECRET_KEY,
            "DGP_LOG_LEVEL": "deltaglider_proxy=debug",
        })
        for k in ("DGP_CONFIG", "DGP_OPEN_ACCESS", "DGP_LISTEN_ADDR", "DGP_DATA_DIR"):
            self.env.pop(k, None)
        if env:
            for k, v in env.items():
                if v is None:
                    self.env.pop(k, None)
                else:
                    self.env[k] = v
        self.args = list(args)
        self.config = config
        self.cwd = None
        self.proc = None
        self.addr = None
        self.log = []

    def start(self, timeout=20):
        if self.cwd is None:
            # The working directory holds the config database (config.db and
            # its key): one per server, beside its data directory.
            self.cwd = self.data_dir.parent / (self.data_dir.name + ".cwd")
            self.cwd.mkdir(parents=True, exist_ok=True)
        self.addr = None
        cmd = [str(BIN), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(self.data_dir)] + self.args
        if self.config:
            cmd += ["--config", str(self.config)]
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     cwd=self.cwd)
        found = threading.Event()

        def reader():
            for line in self.proc.stdout:
                self.log.append(line)
                m = re.search(r"listening addr=(\S+)", line)
                if m and not found.is_set():
                    self.addr = m.group(1)
                    found.set()
            found.set()

        threading.Thread(target=reader, daemon=True).start()
        found.wait(timeout)
        if self.addr is None:
            self.proc.wait(timeout=5)
            raise RuntimeError("server did not start:\n" + "".join(self.log))
        return self

    @property
    def url(self):
        return f"http://{self.addr}"

    @property
    def port(self):
        return int(self.addr.rsplit(":", 1)[1])

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def output(self):
        return "".join(self.log)

    def client(self, **kw):
        return make_client(self.url, **kw)


def _strict_xml(response_dict, **_):
    """Every XML document the server sends must parse with a strict XML 1.0
    parser (expat): a malformed body fails the test that received it."""
    body = response_dict.get("body")
    if isinstance(body, (bytes, bytearray)) and body.lstrip().startswith(b"<"):
        try:
            ET.fromstring(body)
        except ET.ParseError as e:
            raise AssertionError(f"server sent malformed XML ({e}): {body[:300]!r}") from e


def make_client(url, access=ACCESS_KEY, secret=SECRET_KEY, style="path", **cfg):
    client = _make_client(url, access, secret, style, **cfg)
    client.meta.events.register("before-parse.s3", _strict_xml)
    return client


def _make_client(url, access, secret, style, **cfg):
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(**{"s3": {"addressing_style": style}, "retries": {"total_max_attempts": 1},
                         "read_timeout": 20, **cfg}),
    )


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("data")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def s3(server):
    return server.client()


@pytest.fixture
def bucket(s3):
    name = "t-" + uuid.uuid4().hex[:16]
    s3.create_bucket(Bucket=name)
    yield name
    # empty and delete
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=name):
        objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if objs:
            s3.delete_objects(Bucket=name, Delete={"Objects": objs})
    for up in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
    s3.delete_bucket(Bucket=name)


def random_bytes(n):
    return secrets.token_bytes(n)


def aws_env(server):
    env = dict(os.environ)
    env.update({
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    })
    return env


def bind_source(client, ip):
    """Makes a boto3 client connect from the local address `ip` (any
    127.x.y.z works on loopback): for tests of rules by source address."""
    import urllib3
    sess = client._endpoint.http_session
    manager = urllib3.PoolManager(**sess._get_pool_manager_kwargs(source_address=(ip, 0)))
    manager.pool_classes_by_scheme = sess._pool_classes_by_scheme
    sess._manager = manager
    return client


def raw_request(url, method="GET", body=b"", headers=None, source="127.0.0.1", sign=False,
                access=ACCESS_KEY, secret=SECRET_KEY):
    """One HTTP request from local address `source`, SigV4-signed when `sign`.
    Returns (status, headers with lower-case names, body bytes)."""
    import http.client
    import hashlib
    import urllib.parse
    import sigv4
    headers = dict(headers or {})
    if sign:
        headers, *_ = sigv4.sign(method, url, headers, hashlib.sha256(body).hexdigest(),
                                 access=access, secret=secret)
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30, source_address=(source, 0))
    try:
        conn.request(method, u.path + (("?" + u.query) if u.query else ""), body=body, headers=headers)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def error_code(body):
    """The <Code> of an S3 error document."""
    return ET.fromstring(body).findtext("Code")


# --- /_/metrics -------------------------------------------------------------

def scrape(srv, source="127.0.0.1", sign=True):
    status, headers, body = raw_request(f"{srv.url}/_/metrics", sign=sign, source=source)
    assert status == 200, body
    assert headers["content-type"].startswith("application/openmetrics-text")
    return parse(body.decode())


def parse(text):
    """{(sample name, frozenset(labels)): value}; the strict OpenMetrics parser
    refuses a malformed exposition (a missing # EOF, a duplicate family)."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(m, name, **labels):
    return m.get((name, frozenset(labels.items())), 0.0)
