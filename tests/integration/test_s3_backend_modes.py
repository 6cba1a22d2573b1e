"""S3 backends, continued: the aws CLI through the proxy in every
encryption mode with the raw upstream object checked, native SSE-KMS, an
upstream that starts refusing the proxy's credentials (403), and an
upstream killed in the middle of a request and restarted."""

import io
import os
import signal
import subprocess
import threading
import time
import uuid

import boto3
import botocore.exceptions
import pytest

from conftest import BIN, aws_env, random_bytes
from test_s3_backend import MiB, Upstream, free_port, sha, start, wait_port


def aws(srv, *args, check=True):
    p = subprocess.run(["aws", "--endpoint-url", srv.url, *args], env=aws_env(srv),
                       capture_output=True, timeout=120)
    if check:
        assert p.returncode == 0, p.stderr.decode()
    return p


@pytest.mark.parametrize("mode", ["none", "aes256-gcm-proxy", "sse-s3"])
def test_aws_cli_round_trip_in_every_mode(tmp_path, mode):
    up = Upstream("moto", tmp_path)
    real = "cli-" + uuid.uuid4().hex[:8]
    enc = "{mode: %s%s}" % (mode, ", key_id: off-1" if mode == "aes256-gcm-proxy" else "")
    srv = start(tmp_path, up, {"via-cli": real}, encryption=enc)
    try:
        aws(srv, "s3", "mb", "s3://via-cli")
        small = tmp_path / "small.txt"
        small.write_bytes(b"plain words " * 100)
        big = tmp_path / "big.mp4"  # stored whole (not delta-eligible)
        big.write_bytes(random_bytes(9 * MiB + 11))  # above the CLI's 8 MiB multipart threshold
        for f in (small, big):
            aws(srv, "s3", "cp", str(f), f"s3://via-cli/d/{f.name}")
            out = aws(srv, "s3", "cp", f"s3://via-cli/d/{f.name}", "-").stdout
            assert sha(out) == sha(f.read_bytes()), f.name
        listed = aws(srv, "s3", "ls", "s3://via-cli/d/").stdout.decode()
        assert "small.txt" in listed and "big.mp4" in listed

        raw = up.client()
        for f in (small, big):
            h = raw.head_object(Bucket=real, Key=f"d/{f.name}")
            body = raw.get_object(Bucket=real, Key=f"d/{f.name}")["Body"].read()
            if mode == "aes256-gcm-proxy":
                assert body[:4] == b"DGE1" and h["Metadata"]["dg-encryption-key-id"] == "off-1"
            else:
                assert body == f.read_bytes(), "stored as sent (the upstream sees plaintext or encrypts itself)"
                assert "dg-encrypted" not in h["Metadata"]
            if mode == "sse-s3":
                assert h["ServerSideEncryption"] == "AES256"
                assert h["Metadata"]["dg-encrypted-native"] == "sse-s3"
            else:
                assert "dg-encrypted-native" not in h["Metadata"]
    finally:
        srv.stop()
        up.stop()


def test_native_sse_kms_sends_the_key_and_bucket_key(tmp_path):
    up = Upstream("moto", tmp_path)
    kms = boto3.client("kms", endpoint_url=up.url, aws_access_key_id=up.access,
                       aws_secret_access_key=up.secret, region_name="us-east-1")
    arn = kms.create_key(Description="dg test")["KeyMetadata"]["Arn"]
    real = "kms-" + uuid.uuid4().hex[:8]
    up.client().create_bucket(Bucket=real)
    srv = start(tmp_path, up, {"kms-bucket": real},
                encryption="{mode: sse-kms, kms_key_id: '%s', bucket_key_enabled: true}" % arn)
    try:
        s3 = srv.client()
        s3.put_object(Bucket="kms-bucket", Key="k.txt", Body=b"kms protected")
        body = random_bytes(70 * MiB)  # above 64 MiB: the proxy's own multipart upload
        s3.upload_fileobj(io.BytesIO(body), "kms-bucket", "big.mp4",
                          Config=boto3.s3.transfer.TransferConfig(multipart_threshold=100 * MiB))
        for key in ("k.txt", "big.mp4"):
            h = up.client().head_object(Bucket=real, Key=key)
            assert h["ServerSideEncryption"] == "aws:kms", key
            assert h["SSEKMSKeyId"] == arn, key
            if key == "k.txt":  # moto reports the bucket key for single PUTs only
                assert h["BucketKeyEnabled"] is True, key
            assert h["Metadata"]["dg-encrypted-native"] == "sse-kms"
        assert s3.get_object(Bucket="kms-bucket", Key="k.txt")["Body"].read() == b"kms protected"
        assert sha(s3.get_object(Bucket="kms-bucket", Key="big.mp4")["Body"].read()) == sha(body)
    finally:
        srv.stop()
        up.stop()


class OurUpstream:
    """A second deltaglider_proxy as the upstream, with its credentials in
    its config file (so a reload can change them) and a persistent data dir
    (so it can be killed and restarted with its objects)."""

    def __init__(self, tmp, port=None, secret="upstream-secret-one"):
        self.tmp, self.port = tmp, port or free_port()
        self.access, self.secret = "upstreamkey", secret
        self.cfg = tmp / "upstream.yaml"
        self.write(secret)
        self.start()

    def write(self, secret):
        self.cfg.write_text(f"""
access:
  access_key_id: {self.access}
  secret_access_key: {secret}
storage:
  filesystem: {self.tmp / 'upstream-data'}
""")

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("DGP_")}
        self.log = open(self.tmp / f"upstream-{time.time_ns()}.log", "w")
        self.proc = subprocess.Popen([str(BIN), "serve", "--listen", f"127.0.0.1:{self.port}",
                                      "--config", str(self.cfg)], env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=self.tmp)
        wait_port(self.port, self.proc, "upstream proxy")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.log.close()


def test_upstream_refusing_credentials_later_is_access_denied(tmp_path):
    up = OurUpstream(tmp_path)
    real = "creds-" + uuid.uuid4().hex[:8]
    srv = start(tmp_path, up, {"guarded": real})
    try:
        s3 = srv.client()
        s3.create_bucket(Bucket="guarded")
        s3.put_object(Bucket="guarded", Key="k", Body=b"x")
        up.write("upstream-secret-two")  # the upstream rotates the proxy's secret
        up.proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        for call in (lambda: s3.get_object(Bucket="guarded", Key="k"),
                     lambda: s3.put_object(Bucket="guarded", Key="k2", Body=b"y"),
                     lambda: s3.list_objects_v2(Bucket="guarded")):
            with pytest.raises(botocore.exceptions.ClientError) as e:
                call()
            assert e.value.response["Error"]["Code"] == "AccessDenied"
            assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    finally:
        srv.stop()
        up.stop()


def test_upstream_killed_mid_request_and_restarted(tmp_path):
    """A GET in flight when the upstream dies ends in an error, never in
    short or wrong bytes passed off as the object; a PUT in flight leaves
    the old object or nothing, never a torn one; after the restart both
    work again, no proxy restart needed."""
    port = free_port()
    up = OurUpstream(tmp_path, port=port)
    real = "kill-" + uuid.uuid4().hex[:8]
    srv = start(tmp_path, up, {"victim": real})
    try:
        s3 = srv.client(read_timeout=20)
        s3.create_bucket(Bucket="victim")
        body = random_bytes(48 * MiB)
        s3.put_object(Bucket="victim", Key="big.mp4", Body=body)

        stream = s3.get_object(Bucket="victim", Key="big.mp4")["Body"]
        got = stream.read(1 * MiB)
        up.kill()
        with pytest.raises((botocore.exceptions.ResponseStreamingError,
                            botocore.exceptions.IncompleteReadError)):
            while chunk := stream.read(1 * MiB):
                got += chunk
        assert len(got) < len(body)

        # a PUT while the upstream is down: refused, nothing torn
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.put_object(Bucket="victim", Key="big.mp4", Body=random_bytes(20 * MiB))
        assert e.value.response["Error"]["Code"] == "ServiceUnavailable"

        up.start()  # same port, same data
        assert sha(s3.get_object(Bucket="victim", Key="big.mp4")["Body"].read()) == sha(body)

        # the upstream dies while a PUT streams through: old object or new, whole
        new = random_bytes(40 * MiB)
        errors = []

        def put():
            try:
                s3.put_object(Bucket="victim", Key="big.mp4", Body=new)
            except (botocore.exceptions.ClientError, botocore.exceptions.ConnectionClosedError,
                    botocore.exceptions.EndpointConnectionError) as err:
                errors.append(err)

        t = threading.Thread(target=put)
        t.start()
        time.sleep(0.3)
        up.kill()
        t.join(60)
        up.start()
        now = s3.get_object(Bucket="victim", Key="big.mp4")["Body"].read()
        assert sha(now) in (sha(body), sha(new)), "never a torn object"
    finally:
        srv.stop()
        up.stop()


def test_native_sse_kms_set_through_the_encryption_endpoint(tmp_path):
    """The admin UI's Apply for an S3 backend: sse-kms with the key id."""
    import json
    from conftest import raw_request

    def admin(srv, path, body):
        status, _, out = raw_request(f"{srv.url}{path}", method="POST", sign=True,
                                     body=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
        return status, json.loads(out or b"{}")

    up = Upstream("moto", tmp_path)
    kms = boto3.client("kms", endpoint_url=up.url, aws_access_key_id=up.access,
                       aws_secret_access_key=up.secret, region_name="us-east-1")
    arn = kms.create_key(Description="dg ui test")["KeyMetadata"]["Arn"]
    real = "kms-ui-" + uuid.uuid4().hex[:8]
    up.client().create_bucket(Bucket=real)
    srv = start(tmp_path, up, {"ui-kms": real}, encryption="{mode: none}")
    try:
        path = "/_/api/backends/offsite/encryption"
        status, doc = admin(srv, path, {"mode": "sse-kms"})
        assert status in (400, 422) and "kms_key_id" in json.dumps(doc), doc
        status, doc = admin(srv, path, {"mode": "sse-kms", "kms_key_id": arn})
        assert status == 200 and doc["applied"], doc
        s3 = srv.client()
        s3.put_object(Bucket="ui-kms", Key="after.txt", Body=b"kms from the ui")
        h = up.client().head_object(Bucket=real, Key="after.txt")
        assert h["ServerSideEncryption"] == "aws:kms" and h["SSEKMSKeyId"] == arn, h
        assert s3.get_object(Bucket="ui-kms", Key="after.txt")["Body"].read() == b"kms from the ui"
        # The change was written to the config file too.
        assert arn in srv.config.read_text() and "sse-kms" in srv.config.read_text()
    finally:
        srv.stop()
        up.stop()
