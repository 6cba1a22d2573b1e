"""TLS on the S3 port (`advanced.tls`): boto3 and the aws CLI over HTTPS
with a self-signed certificate, `aws:SecureTransport` in permissions, the
certificate re-read on reload, a broken certificate refused at start."""

import signal
import ssl
import subprocess
import time

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from conftest import ACCESS_KEY, SECRET_KEY, Server

TLS_USERS = """\
access:
  iam_mode: declarative
  iam_users:
    - name: secure-only
      access_key_id: AKIASECURE001
      secret_access_key: secure-only-secret-0123456
      permissions:
        - {effect: Allow, actions: ["*"], resources: ["*"], conditions: {Bool: {"aws:SecureTransport": true}}}
"""


def make_cert(dir, name):
    cert, key = dir / f"{name}.pem", dir / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def tls_config(cert, key, extra=""):
    return extra + f"advanced:\n  tls:\n    cert_file: {cert}\n    key_file: {key}\n"


def client(url, ca, access=ACCESS_KEY, secret=SECRET_KEY):
    return boto3.client("s3", endpoint_url=url, aws_access_key_id=access, aws_secret_access_key=secret,
                        region_name="us-east-1", verify=str(ca),
                        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))


def presented(addr):
    host, port = addr.rsplit(":", 1)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    import socket
    with socket.create_connection((host, int(port)), timeout=5) as s:
        with ctx.wrap_socket(s) as t:
            return t.getpeercert(binary_form=True)


def test_https_round_trip_secure_transport_and_reload(tmp_path):
    cert, key = make_cert(tmp_path, "one")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(tls_config(cert, key, TLS_USERS))
    s = Server(tmp_path / "data", config=cfg).start()
    try:
        url = f"https://{s.addr}"
        admin = client(url, cert)
        admin.create_bucket(Bucket="tls")
        admin.put_object(Bucket="tls", Key="a.txt", Body=b"over tls")
        assert admin.get_object(Bucket="tls", Key="a.txt")["Body"].read() == b"over tls"
        # A user allowed only over TLS is allowed here.
        sec = client(url, cert, "AKIASECURE001", "secure-only-secret-0123456")
        assert sec.get_object(Bucket="tls", Key="a.txt")["Body"].read() == b"over tls"
        # Plain HTTP on the TLS port gets no S3 answer.
        plain = boto3.client("s3", endpoint_url=f"http://{s.addr}", aws_access_key_id=ACCESS_KEY,
                             aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
                             config=Config(retries={"total_max_attempts": 1}, read_timeout=5, connect_timeout=5))
        with pytest.raises((botocore.exceptions.ConnectionClosedError, botocore.exceptions.EndpointConnectionError,
                            botocore.exceptions.ClientError, botocore.exceptions.ReadTimeoutError)):
            plain.list_buckets()
        # The aws CLI too.
        env = dict(s.env, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION="us-east-1",
                   AWS_CA_BUNDLE=str(cert), AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
        p = subprocess.run(["aws", "--endpoint-url", url, "s3", "ls", "s3://tls/"], env=env,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and "a.txt" in p.stdout, p.stderr
        # A renewed certificate applies on reload, to new connections.
        first = presented(s.addr)
        cert2, key2 = make_cert(tmp_path, "two")
        cfg.write_text(tls_config(cert2, key2, TLS_USERS))
        before = s.output().count("configuration reloaded")
        s.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 15
        while s.output().count("configuration reloaded") == before:
            assert time.time() < deadline, s.output()[-2000:]
            time.sleep(0.05)
        second = presented(s.addr)
        assert second != first
        assert client(url, cert2).get_object(Bucket="tls", Key="a.txt")["Body"].read() == b"over tls"
    finally:
        s.stop()


def test_secure_transport_denies_plain_http(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(TLS_USERS)
    s = Server(tmp_path / "data", config=cfg).start()
    try:
        s.client().create_bucket(Bucket="plain")
        sec = boto3.client("s3", endpoint_url=s.url, aws_access_key_id="AKIASECURE001",
                           aws_secret_access_key="secure-only-secret-0123456", region_name="us-east-1",
                           config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))
        with pytest.raises(botocore.exceptions.ClientError) as e:
            sec.list_objects_v2(Bucket="plain")
        assert e.value.response["Error"]["Code"] == "AccessDenied"
    finally:
        s.stop()


def test_broken_certificate_refuses_to_start(tmp_path):
    cert, _ = make_cert(tmp_path, "one")
    _, other_key = make_cert(tmp_path, "other")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(tls_config(cert, other_key))
    with pytest.raises(RuntimeError) as e:
        Server(tmp_path / "data", config=cfg).start()
    assert "does not fit the certificate" in str(e.value)
    cfg.write_text(tls_config(tmp_path / "missing.pem", other_key))
    with pytest.raises(RuntimeError) as e:
        Server(tmp_path / "data2", config=cfg).start()
    assert "missing.pem" in str(e.value)
