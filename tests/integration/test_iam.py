"""IAM users and groups from the YAML (`iam_mode: declarative`), judged by
one policy engine: actions (shorthands and S3 names), resources as globs,
conditions (source address, prefix), `${iam:username}` templates, explicit
Deny over Allow, disabled users. Real boto3 and aws CLI clients, each user
with their own keys, from 127.0.0.1 and 127.0.0.2."""

import os
import signal
import subprocess
import time

import boto3
import botocore.exceptions
import pytest
from boto3.s3.transfer import TransferConfig

from conftest import Server, aws_env, bind_source, make_client

SECRETS = {
    "CI_SECRET": "ci-uploader-secret-0123456789",
    "ALICE_SECRET": "alice-secret-0123456789abcd",
    "OPS_SECRET": "ops-secret-0123456789abcdef",
    "OFF_SECRET": "disabled-secret-0123456789",
    "NEW_SECRET": "newcomer-secret-0123456789",
}

USERS = """\
access:
  iam_mode: declarative
  iam_groups:
    - name: readers
      permissions: [{effect: Allow, actions: [read, list], resources: ["releases/*", "releases"]}]
  iam_users:
    - name: ci-uploader
      access_key_id: AKIACIUP00001
      secret_access_key: "${env:CI_SECRET}"
      groups: [readers]
      permissions:
        - {effect: Allow, actions: [write], resources: ["releases/firmware/*"], conditions: {IpAddress: {"aws:SourceIp": "127.0.0.1/32"}}}
    - name: alice
      access_key_id: AKIAALICE0001
      secret_access_key: "${env:ALICE_SECRET}"
      permissions:
        - {effect: Allow, actions: ["*"], resources: ["home/${iam:username}/*"]}
        - {effect: Allow, actions: [s3:ListBucket], resources: ["home"], conditions: {StringLike: {"s3:prefix": "${iam:username}/*"}}}
    - name: ops
      access_key_id: AKIAOPS000001
      secret_access_key: "${env:OPS_SECRET}"
      permissions:
        - {effect: Allow, actions: ["*"], resources: ["*"]}
        - {effect: Deny, actions: [delete], resources: ["releases/*"]}
    - name: off
      enabled: false
      access_key_id: AKIAOFF000001
      secret_access_key: "${env:OFF_SECRET}"
      permissions: [{effect: Allow, actions: ["*"], resources: ["*"]}]
"""


def user(srv, key_id, secret_var, source=None):
    c = make_client(srv.url, access=key_id, secret=SECRETS[secret_var])
    return bind_source(c, source) if source else c


def denied(fn, code="AccessDenied", **kw):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        fn(**kw)
    err = e.value.response["Error"]
    assert err["Code"] == code, err
    return err


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("iam")
    cfg = tmp / "config.yaml"
    cfg.write_text(USERS)
    s = Server(tmp / "data", config=cfg, env=SECRETS).start()
    admin = s.client()
    for b in ("releases", "home", "private"):
        admin.create_bucket(Bucket=b)
    admin.put_object(Bucket="releases", Key="v1/app.txt", Body=b"release one")
    admin.put_object(Bucket="private", Key="payroll.txt", Body=b"secret numbers")
    admin.put_object(Bucket="home", Key="bob/notes.txt", Body=b"bob's")
    s.cfg = cfg
    yield s
    s.stop()


def test_group_and_own_permissions_with_a_source_condition(srv):
    ci = user(srv, "AKIACIUP00001", "CI_SECRET")
    ci_far = user(srv, "AKIACIUP00001", "CI_SECRET", source="127.0.0.2")
    # From the group: read and list releases.
    assert ci.get_object(Bucket="releases", Key="v1/app.txt")["Body"].read() == b"release one"
    assert [o["Key"] for o in ci.list_objects_v2(Bucket="releases")["Contents"]] == ["v1/app.txt"]
    ci.head_bucket(Bucket="releases")
    # Nothing on other buckets.
    denied(ci.get_object, Bucket="private", Key="payroll.txt")
    denied(ci.list_objects_v2, Bucket="private")
    # Own permission: write under firmware/, only from 127.0.0.1.
    ci.put_object(Bucket="releases", Key="firmware/fw-1.bin", Body=b"fw1")
    denied(ci_far.put_object, Bucket="releases", Key="firmware/fw-2.bin", Body=b"fw2")
    denied(ci.put_object, Bucket="releases", Key="v2/app.txt", Body=b"no")
    # Reads from 127.0.0.2 have no condition.
    assert ci_far.get_object(Bucket="releases", Key="firmware/fw-1.bin")["Body"].read() == b"fw1"
    # No delete, no bucket administration.
    denied(ci.delete_object, Bucket="releases", Key="firmware/fw-1.bin")
    denied(ci.create_bucket, Bucket="ci-made")
    denied(ci.delete_bucket, Bucket="releases")
    admin = srv.client()
    assert admin.get_object(Bucket="releases", Key="firmware/fw-1.bin")["Body"].read() == b"fw1"
    denied(admin.head_object, code="404", Bucket="releases", Key="firmware/fw-2.bin")
    denied(admin.head_object, code="404", Bucket="releases", Key="v2/app.txt")
    # ListBuckets shows a user the buckets they have permissions in.
    assert [b["Name"] for b in ci.list_buckets()["Buckets"]] == ["releases"]


def test_multipart_and_copy_follow_the_same_rules(srv):
    ci = user(srv, "AKIACIUP00001", "CI_SECRET")
    body = os.urandom(12 * 1024 * 1024)
    cfg = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
    ci.upload_fileobj(__import__("io").BytesIO(body), "releases", "firmware/big.mp4", Config=cfg)
    got = srv.client().get_object(Bucket="releases", Key="firmware/big.mp4")["Body"].read()
    assert got == body
    denied(ci.create_multipart_upload, Bucket="releases", Key="docs/big.mp4")
    # Copy: write on the target and read on the source are both needed.
    ci.copy_object(Bucket="releases", Key="firmware/copy.txt", CopySource={"Bucket": "releases", "Key": "v1/app.txt"})
    denied(ci.copy_object, Bucket="releases", Key="firmware/stolen.txt",
           CopySource={"Bucket": "private", "Key": "payroll.txt"})
    denied(srv.client().head_object, code="404", Bucket="releases", Key="firmware/stolen.txt")


def test_username_templates(srv):
    alice = user(srv, "AKIAALICE0001", "ALICE_SECRET")
    alice.put_object(Bucket="home", Key="alice/diary.txt", Body=b"dear diary")
    assert alice.get_object(Bucket="home", Key="alice/diary.txt")["Body"].read() == b"dear diary"
    denied(alice.get_object, Bucket="home", Key="bob/notes.txt")
    denied(alice.put_object, Bucket="home", Key="bob/evil.txt", Body=b"x")
    keys = [o["Key"] for o in alice.list_objects_v2(Bucket="home", Prefix="alice/")["Contents"]]
    assert keys == ["alice/diary.txt"]
    denied(alice.list_objects_v2, Bucket="home")
    denied(alice.list_objects_v2, Bucket="home", Prefix="bob/")
    alice.delete_object(Bucket="home", Key="alice/diary.txt")


def test_explicit_deny_beats_allow(srv):
    ops = user(srv, "AKIAOPS000001", "OPS_SECRET")
    admin = srv.client()
    admin.put_object(Bucket="private", Key="tmp.txt", Body=b"t")
    denied(ops.delete_object, Bucket="releases", Key="v1/app.txt")
    ops.delete_object(Bucket="private", Key="tmp.txt")
    ops.create_bucket(Bucket="ops-made")
    ops.delete_bucket(Bucket="ops-made")
    assert {"releases", "home", "private"} <= {b["Name"] for b in ops.list_buckets()["Buckets"]}
    # DeleteObjects is judged key by key.
    admin.put_object(Bucket="releases", Key="a.txt", Body=b"a")
    admin.put_object(Bucket="private", Key="b.txt", Body=b"b")
    ci = user(srv, "AKIACIUP00001", "CI_SECRET")
    denied(ci.delete_objects, Bucket="releases", Delete={"Objects": [{"Key": "a.txt"}]})
    # A caller allowed none of the keys gets one AccessDenied for the request.
    denied(ops.delete_objects, Bucket="releases", Delete={"Objects": [{"Key": "a.txt"}, {"Key": "v1/app.txt"}]})
    # Some allowed, some not: the allowed ones go, the others are errors.
    alice = user(srv, "AKIAALICE0001", "ALICE_SECRET")
    alice.put_object(Bucket="home", Key="alice/old.txt", Body=b"old")
    r = alice.delete_objects(Bucket="home", Delete={"Objects": [{"Key": "alice/old.txt"}, {"Key": "bob/notes.txt"}]})
    assert [d["Key"] for d in r["Deleted"]] == ["alice/old.txt"]
    assert [(e["Key"], e["Code"]) for e in r["Errors"]] == [("bob/notes.txt", "AccessDenied")]
    assert admin.get_object(Bucket="home", Key="bob/notes.txt")["Body"].read() == b"bob's"
    denied(admin.head_object, code="404", Bucket="home", Key="alice/old.txt")
    r = ops.delete_objects(Bucket="private", Delete={"Objects": [{"Key": "b.txt"}]})
    assert [d["Key"] for d in r["Deleted"]] == ["b.txt"] and not r.get("Errors")
    assert admin.get_object(Bucket="releases", Key="a.txt")["Body"].read() == b"a"


def test_disabled_user_and_unknown_key(srv):
    off = user(srv, "AKIAOFF000001", "OFF_SECRET")
    denied(off.list_buckets, code="InvalidAccessKeyId")
    denied(off.get_object, code="InvalidAccessKeyId", Bucket="releases", Key="v1/app.txt")
    wrong = make_client(srv.url, access="AKIACIUP00001", secret="not-the-secret-0123456789")
    denied(wrong.get_object, code="SignatureDoesNotMatch", Bucket="releases", Key="v1/app.txt")


def test_aws_cli_as_a_user(srv, tmp_path):
    env = aws_env(srv)
    env.update({"AWS_ACCESS_KEY_ID": "AKIACIUP00001", "AWS_SECRET_ACCESS_KEY": SECRETS["CI_SECRET"]})
    f = tmp_path / "fw.txt"
    f.write_bytes(b"from the cli")
    ok = subprocess.run(["aws", "--endpoint-url", srv.url, "s3", "cp", str(f), "s3://releases/firmware/cli.txt"],
                        env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(["aws", "--endpoint-url", srv.url, "s3", "ls", "s3://private/"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "AccessDenied" in bad.stderr, bad.stderr
    assert srv.client().get_object(Bucket="releases", Key="firmware/cli.txt")["Body"].read() == b"from the cli"


def test_no_secret_in_any_log_line(srv):
    out = srv.output()
    assert "AKIACIUP00001" in out or "ci-uploader" in out  # the log does talk about users
    for v in SECRETS.values():
        assert v not in out


def reload(s):
    before = s.output().count("configuration reloaded")
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 15
    while s.output().count("configuration reloaded") == before:
        assert time.time() < deadline, s.output()[-2000:]
        assert "config reload refused" not in s.output(), s.output()[-2000:]
        time.sleep(0.05)


def test_reload_reconciles_users(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(USERS)
    s = Server(tmp_path / "data", config=cfg, env=SECRETS).start()
    try:
        s.client().create_bucket(Bucket="releases")
        s.client().create_bucket(Bucket="private")
        ci = user(s, "AKIACIUP00001", "CI_SECRET")
        alice = user(s, "AKIAALICE0001", "ALICE_SECRET")
        denied(ci.list_objects_v2, Bucket="private")
        # A permission changes, a user goes, a user comes.
        text = USERS.replace('resources: ["releases/*", "releases"]', 'resources: ["releases/*", "releases", "private"]')
        start = text.index("    - name: alice")
        end = text.index("    - name: ops")
        text = text[:start] + text[end:] + """\
    - name: newcomer
      access_key_id: AKIANEW000001
      secret_access_key: "${env:NEW_SECRET}"
      permissions: [{effect: Allow, actions: [list], resources: [private]}]
"""
        cfg.write_text(text)
        reload(s)
        assert ci.list_objects_v2(Bucket="private")["KeyCount"] == 0
        denied(alice.list_buckets, code="InvalidAccessKeyId")
        newcomer = user(s, "AKIANEW000001", "NEW_SECRET")
        assert newcomer.list_objects_v2(Bucket="private")["KeyCount"] == 0
        denied(newcomer.list_objects_v2, Bucket="releases")
        # A broken permission keeps the running users.
        cfg.write_text(text.replace("actions: [list]", "actions: [fly]"))
        before = s.output().count("config reload refused")
        s.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 15
        while s.output().count("config reload refused") == before:
            assert time.time() < deadline
            time.sleep(0.05)
        assert "unknown action `fly`" in s.output()
        assert newcomer.list_objects_v2(Bucket="private")["KeyCount"] == 0
    finally:
        s.stop()


def audit_records(srv):
    out = []
    for line in srv.output().splitlines():
        if line.startswith('{') and '"type":"audit"' in line:
            out.append(__import__("json").loads(line))
    return out


def test_audit_log_has_one_record_per_request(srv):
    ci = user(srv, "AKIACIUP00001", "CI_SECRET")
    ci.put_object(Bucket="releases", Key="firmware/audited.bin", Body=b"12345")
    denied(ci.put_object, Bucket="private", Key="nope.txt", Body=b"x")
    deadline = time.time() + 5
    while time.time() < deadline:
        recs = audit_records(srv)
        put = [r for r in recs if r["operation"] == "PutObject" and r["key"] == "firmware/audited.bin"]
        refused = [r for r in recs if r["operation"] == "PutObject" and r["key"] == "nope.txt"]
        if put and refused:
            break
        time.sleep(0.05)
    (p,) = put
    assert (p["user"], p["access_key_id"], p["bucket"], p["status"], p["decision"]) == \
        ("ci-uploader", "AKIACIUP00001", "releases", 200, "allow")
    assert p["bytes_in"] == 5 and p["source_ip"] == "127.0.0.1" and p["rule"] == "user ci-uploader permission 0"
    assert len(p["request_id"]) == 16 and p["time"].endswith("Z") and p["method"] == "PUT"
    (r,) = refused
    assert (r["status"], r["decision"], r["rule"]) == (403, "deny", "no permission matches")
    # Operator requests are audited too.
    srv.client().list_buckets()
    deadline = time.time() + 5  # the log is read by a thread: give it a moment
    while not any(x["operation"] == "ListBuckets" and x["user"] == "admin" for x in audit_records(srv)):
        assert time.time() < deadline, "no audit record of the operator's ListBuckets"
        time.sleep(0.05)
    text = "\n".join(__import__("json").dumps(x) for x in audit_records(srv))
    for v in SECRETS.values():
        assert v not in text
    assert "Signature" not in text and "Authorization" not in text
