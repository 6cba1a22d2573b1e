"""Bucket policies (Put/Get/DeleteBucketPolicy, GetBucketPolicyStatus) in
AWS's JSON grammar, judged by the same engine as IAM permissions: a policy
that publishes a prefix to anonymous curl, a policy granting a user what
their own permissions do not, an explicit Deny in a policy beating a
user's Allow, refusals with MalformedPolicy, persistence across restarts."""

import json
import subprocess

import botocore.exceptions
import pytest

from conftest import Server, error_code, make_client

USERS = """\
access:
  iam_mode: declarative
  iam_users:
    - name: alice
      access_key_id: AKIAALICE0002
      secret_access_key: alice-secret-0123456789ab
      permissions: [{effect: Allow, actions: ["*"], resources: ["*"]}]
    - name: bob
      access_key_id: AKIABOB000002
      secret_access_key: bob-secret-0123456789abcd
"""


def code(fn, **kw):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        fn(**kw)
    return e.value.response["Error"]["Code"]


def curl(url):
    p = subprocess.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", url], capture_output=True, timeout=30)
    body, _, status = p.stdout.rpartition(b"\n")
    return int(status), body


def policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def test_bucket_policies(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(USERS)
    s = Server(tmp_path / "data", config=cfg).start()
    try:
        admin = s.client()
        admin.create_bucket(Bucket="site")
        admin.put_object(Bucket="site", Key="public/index.html", Body=b"<h1>hi</h1>")
        admin.put_object(Bucket="site", Key="private/notes.txt", Body=b"secret")
        assert code(admin.get_bucket_policy, Bucket="site") == "NoSuchBucketPolicy"
        assert curl(f"{s.url}/site/public/index.html")[0] == 403

        doc = policy(
            {"Sid": "PublicRead", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
             "Resource": "arn:aws:s3:::site/public/*"},
            {"Sid": "BobLists", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:user/bob"},
             "Action": ["s3:ListBucket"], "Resource": "arn:aws:s3:::site"},
            {"Sid": "NobodyDeletes", "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
             "Resource": "arn:aws:s3:::site/*"},
        )
        admin.put_bucket_policy(Bucket="site", Policy=doc)
        assert json.loads(admin.get_bucket_policy(Bucket="site")["Policy"]) == json.loads(doc)
        assert admin.get_bucket_policy_status(Bucket="site")["PolicyStatus"]["IsPublic"] is True

        # Anonymous: the public prefix only.
        assert curl(f"{s.url}/site/public/index.html") == (200, b"<h1>hi</h1>")
        status, body = curl(f"{s.url}/site/private/notes.txt")
        assert (status, error_code(body)) == (403, "AccessDenied")
        assert curl(f"{s.url}/site?list-type=2")[0] == 403
        # Bob has no permissions of his own; the policy lets him list.
        bob = make_client(s.url, access="AKIABOB000002", secret="bob-secret-0123456789abcd")
        assert {o["Key"] for o in bob.list_objects_v2(Bucket="site")["Contents"]} == \
            {"public/index.html", "private/notes.txt"}
        assert code(bob.get_object, Bucket="site", Key="private/notes.txt") == "AccessDenied"
        # Alice may do everything, but the policy's explicit Deny wins.
        alice = make_client(s.url, access="AKIAALICE0002", secret="alice-secret-0123456789ab")
        assert code(alice.delete_object, Bucket="site", Key="private/notes.txt") == "AccessDenied"
        alice.put_object(Bucket="site", Key="public/new.html", Body=b"new")
        # Only who may administer the bucket may set its policy.
        assert code(bob.put_bucket_policy, Bucket="site", Policy=doc) == "AccessDenied"
        assert code(bob.get_bucket_policy, Bucket="site") == "AccessDenied"
        alice.get_bucket_policy(Bucket="site")

        # Refusals name the problem and change nothing.
        for bad, needle in (
            ("not json", "not JSON"),
            (policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::other/*"}),
             "invalid resource"),
            (policy({"Effect": "Allow", "Principal": "*", "NotAction": "s3:GetObject", "Resource": "arn:aws:s3:::site/*"}),
             "NotAction"),
        ):
            with pytest.raises(botocore.exceptions.ClientError) as e:
                admin.put_bucket_policy(Bucket="site", Policy=bad)
            assert e.value.response["Error"]["Code"] == "MalformedPolicy"
            assert needle in e.value.response["Error"]["Message"]
        assert json.loads(admin.get_bucket_policy(Bucket="site")["Policy"]) == json.loads(doc)
        assert code(admin.get_bucket_policy, Bucket="nope") == "NoSuchBucket"

        # It survives a restart.
        s.stop()
        s.start()
        assert curl(f"{s.url}/site/public/index.html")[0] == 200

        admin = s.client()
        admin.delete_bucket_policy(Bucket="site")
        assert code(admin.get_bucket_policy, Bucket="site") == "NoSuchBucketPolicy"
        assert curl(f"{s.url}/site/public/index.html")[0] == 403
        admin.put_bucket_policy(Bucket="site", Policy=policy(
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::site/*",
             "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}))
        assert admin.get_bucket_policy_status(Bucket="site")["PolicyStatus"]["IsPublic"] is False
        assert curl(f"{s.url}/site/public/index.html")[0] == 403
    finally:
        s.stop()
