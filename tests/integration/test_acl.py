"""Canned ACLs on buckets and objects, as S3 clients send them: an object's
public-read lets anonymous curl read it (and nothing else), a bucket's
public-read lets anyone list it (but not read its objects), public-read-write
lets anyone write, authenticated-read is for IAM users only; Get*Acl answer
the grants; publishing needs s3:PutObjectAcl / s3:PutBucketAcl, not just
write; an explicit Deny in a bucket policy beats an ACL; DeleteBucket forgets
the bucket's ACL and policy; grants this box cannot honour are refused with
the error S3 gives, and nothing is stored."""

import json
import subprocess

import botocore.exceptions
import pytest

from conftest import Server, aws_env, error_code, make_client

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTH_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"

USERS = """\
access:
  iam_mode: declarative
  iam_users:
    - name: writer
      access_key_id: AKIAWRITER001
      secret_access_key: writer-secret-0123456789
      permissions: [{effect: Allow, actions: [read, write, list], resources: ["acl-*", "acl-*/*"]}]
    - name: publisher
      access_key_id: AKIAPUBLISH01
      secret_access_key: publisher-secret-012345
      permissions:
        - {effect: Allow, actions: [read, write, list, "s3:PutObjectAcl"], resources: ["acl-*", "acl-*/*"]}
    - name: nobody
      access_key_id: AKIANOBODY001
      secret_access_key: nobody-secret-012345678
"""


def code(fn, **kw):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        fn(**kw)
    return e.value.response["Error"]["Code"]


def curl(url, method="GET", data=None):
    cmd = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, url]
    if method == "HEAD":
        cmd[cmd.index("-X"):cmd.index("-X") + 2] = ["-I"]
    if data is not None:
        cmd += ["--data-binary", "@-"]
    p = subprocess.run(cmd, input=data, capture_output=True, timeout=30)
    body, _, status = p.stdout.rpartition(b"\n")
    return int(status), body


def denied(url, method="GET"):
    status, body = curl(url, method)
    return status == 403 and (method == "HEAD" or error_code(body) == "AccessDenied")


def grants(acl):
    return sorted((g["Grantee"].get("URI") or g["Grantee"].get("ID"), g["Permission"]) for g in acl["Grants"])


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("acl")
    cfg = tmp / "config.yaml"
    cfg.write_text(USERS)
    s = Server(tmp / "data", config=cfg).start()
    s.admin = s.client()
    s.writer = make_client(s.url, access="AKIAWRITER001", secret="writer-secret-0123456789")
    s.publisher = make_client(s.url, access="AKIAPUBLISH01", secret="publisher-secret-012345")
    s.nobody = make_client(s.url, access="AKIANOBODY001", secret="nobody-secret-012345678")
    s.admin.create_bucket(Bucket="acl-obj")
    yield s
    s.stop()


def test_object_acls(srv):
    a, url = srv.admin, f"{srv.url}/acl-obj"
    a.put_object(Bucket="acl-obj", Key="pub.txt", Body=b"public bytes", ACL="public-read")
    a.put_object(Bucket="acl-obj", Key="priv.txt", Body=b"private bytes")
    a.put_object(Bucket="acl-obj", Key="staff.txt", Body=b"staff bytes", ACL="authenticated-read")
    # Anonymous: the public object only; a missing key is AccessDenied, not 404.
    assert curl(f"{url}/pub.txt") == (200, b"public bytes")
    assert curl(f"{url}/pub.txt", "HEAD")[0] == 200
    assert denied(f"{url}/priv.txt")
    assert denied(f"{url}/staff.txt")
    assert denied(f"{url}/missing.txt")
    assert denied(f"{url}?list-type=2")
    assert denied(f"{url}/pub.txt", "DELETE")
    assert denied(f"{url}/pub.txt?acl")
    assert a.get_object(Bucket="acl-obj", Key="pub.txt")["Body"].read() == b"public bytes"
    # authenticated-read: any IAM user, even one without permissions.
    assert srv.nobody.get_object(Bucket="acl-obj", Key="staff.txt")["Body"].read() == b"staff bytes"
    assert srv.nobody.get_object(Bucket="acl-obj", Key="pub.txt")["Body"].read() == b"public bytes"
    assert code(srv.nobody.get_object, Bucket="acl-obj", Key="priv.txt") == "AccessDenied"
    assert code(srv.nobody.put_object, Bucket="acl-obj", Key="pub.txt", Body=b"x") == "AccessDenied"

    assert grants(a.get_object_acl(Bucket="acl-obj", Key="pub.txt")) == \
        sorted([("deltaglider", "FULL_CONTROL"), (ALL_USERS, "READ")])
    assert grants(a.get_object_acl(Bucket="acl-obj", Key="staff.txt")) == \
        sorted([("deltaglider", "FULL_CONTROL"), (AUTH_USERS, "READ")])
    acl = a.get_object_acl(Bucket="acl-obj", Key="priv.txt")
    assert acl["Owner"]["ID"] == "deltaglider"
    assert grants(acl) == [("deltaglider", "FULL_CONTROL")]
    assert acl["Grants"][0]["Grantee"]["Type"] == "CanonicalUser"
    assert code(a.get_object_acl, Bucket="acl-obj", Key="missing.txt") == "NoSuchKey"

    # PutObjectAcl: canned, then a document saying public-read; the object's
    # bytes, ETag and Last-Modified stay.
    before = a.head_object(Bucket="acl-obj", Key="pub.txt")
    a.put_object_acl(Bucket="acl-obj", Key="pub.txt", ACL="private")
    assert denied(f"{url}/pub.txt")
    a.put_object_acl(Bucket="acl-obj", Key="pub.txt", AccessControlPolicy={
        "Owner": {"ID": "deltaglider"},
        "Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": "deltaglider"}, "Permission": "FULL_CONTROL"},
                   {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"}]})
    assert curl(f"{url}/pub.txt") == (200, b"public bytes")
    after = a.head_object(Bucket="acl-obj", Key="pub.txt")
    assert (after["ETag"], after["LastModified"], after["ContentLength"]) == \
        (before["ETag"], before["LastModified"], before["ContentLength"])
    # Grant headers equal to a canned ACL.
    a.put_object_acl(Bucket="acl-obj", Key="priv.txt", GrantRead=f'uri="{AUTH_USERS}"')
    assert srv.nobody.get_object(Bucket="acl-obj", Key="priv.txt")["Body"].read() == b"private bytes"
    a.put_object_acl(Bucket="acl-obj", Key="priv.txt", GrantFullControl='id="deltaglider"')
    assert code(srv.nobody.get_object, Bucket="acl-obj", Key="priv.txt") == "AccessDenied"

    # An overwrite without an ACL is private again.
    a.put_object(Bucket="acl-obj", Key="pub.txt", Body=b"v2")
    assert denied(f"{url}/pub.txt")


def test_what_cannot_be_honoured_is_refused_and_nothing_stored(srv):
    a = srv.admin
    a.put_object(Bucket="acl-obj", Key="r.txt", Body=b"r")
    other = {"Owner": {"ID": "deltaglider"},
             "Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": "someone-else"}, "Permission": "READ"}]}
    assert code(a.put_object_acl, Bucket="acl-obj", Key="r.txt", AccessControlPolicy=other) == "NotImplemented"
    acp = {"Owner": {"ID": "deltaglider"},
           "Grants": [{"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "WRITE_ACP"}]}
    assert code(a.put_object_acl, Bucket="acl-obj", Key="r.txt", AccessControlPolicy=acp) == "NotImplemented"
    email = {"Owner": {"ID": "deltaglider"},
             "Grants": [{"Grantee": {"Type": "AmazonCustomerByEmail", "EmailAddress": "x@example.com"},
                         "Permission": "READ"}]}
    assert code(a.put_object_acl, Bucket="acl-obj", Key="r.txt", AccessControlPolicy=email) == "NotImplemented"
    assert grants(a.get_object_acl(Bucket="acl-obj", Key="r.txt")) == [("deltaglider", "FULL_CONTROL")]
    assert code(a.put_object, Bucket="acl-obj", Key="n.txt", Body=b"n", ACL="nonsense") == "InvalidArgument"
    assert code(a.put_object, Bucket="acl-obj", Key="n.txt", Body=b"n", ACL="aws-exec-read") == "NotImplemented"
    assert code(a.put_object, Bucket="acl-obj", Key="n.txt", Body=b"n", ACL="public-read",
                GrantRead=f'uri="{ALL_USERS}"') == "InvalidRequest"
    assert code(a.put_object, Bucket="acl-obj", Key="n.txt", Body=b"n",
                GrantRead='uri="http://acs.amazonaws.com/groups/s3/LogDelivery"') == "NotImplemented"
    assert code(a.head_object, Bucket="acl-obj", Key="n.txt") == "404"
    assert code(a.put_object_acl, Bucket="acl-obj", Key="r.txt") == "MissingSecurityHeader"
    assert code(a.put_object_acl, Bucket="acl-obj", Key="missing.txt", ACL="public-read") == "NoSuchKey"


def test_publishing_needs_the_acl_permission(srv):
    w, p, a = srv.writer, srv.publisher, srv.admin
    url = f"{srv.url}/acl-obj"
    # write alone stores objects (private, or an ACL that grants nothing more) ...
    w.put_object(Bucket="acl-obj", Key="w1.txt", Body=b"w", ACL="bucket-owner-full-control")
    # ... but does not publish: refused before anything is stored.
    assert code(w.put_object, Bucket="acl-obj", Key="w2.txt", Body=b"w", ACL="public-read") == "AccessDenied"
    assert code(a.head_object, Bucket="acl-obj", Key="w2.txt") == "404"
    assert code(w.put_object_acl, Bucket="acl-obj", Key="w1.txt", ACL="public-read") == "AccessDenied"
    assert code(w.create_multipart_upload, Bucket="acl-obj", Key="w3.txt", ACL="public-read") == "AccessDenied"
    assert code(w.copy_object, Bucket="acl-obj", Key="w4.txt", CopySource={"Bucket": "acl-obj", "Key": "w1.txt"},
                ACL="public-read") == "AccessDenied"
    assert denied(f"{url}/w1.txt")
    # s3:PutObjectAcl publishes, on every write path.
    p.put_object(Bucket="acl-obj", Key="p1.txt", Body=b"p1", ACL="public-read")
    assert curl(f"{url}/p1.txt") == (200, b"p1")
    up = p.create_multipart_upload(Bucket="acl-obj", Key="p2.txt", ACL="public-read")
    part = p.upload_part(Bucket="acl-obj", Key="p2.txt", UploadId=up["UploadId"], PartNumber=1, Body=b"multi")
    p.complete_multipart_upload(Bucket="acl-obj", Key="p2.txt", UploadId=up["UploadId"],
                                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert curl(f"{url}/p2.txt") == (200, b"multi")
    # A copy takes the ACL the request gives, never the source's.
    p.copy_object(Bucket="acl-obj", Key="p3.txt", CopySource={"Bucket": "acl-obj", "Key": "p1.txt"})
    assert denied(f"{url}/p3.txt")
    p.copy_object(Bucket="acl-obj", Key="p4.txt", CopySource={"Bucket": "acl-obj", "Key": "w1.txt"},
                  ACL="public-read")
    assert curl(f"{url}/p4.txt") == (200, b"w")
    p.put_object_acl(Bucket="acl-obj", Key="w1.txt", ACL="public-read")
    assert curl(f"{url}/w1.txt") == (200, b"w")
    # Bucket ACLs are bucket administration.
    assert code(p.put_bucket_acl, Bucket="acl-obj", ACL="public-read") == "AccessDenied"


def test_bucket_acls(srv):
    a, url = srv.admin, f"{srv.url}/acl-bkt"
    a.create_bucket(Bucket="acl-bkt", ACL="public-read")
    a.put_object(Bucket="acl-bkt", Key="dir/f.txt", Body=b"listed, not readable")
    assert grants(a.get_bucket_acl(Bucket="acl-bkt")) == sorted([("deltaglider", "FULL_CONTROL"), (ALL_USERS, "READ")])
    status, body = curl(f"{url}?list-type=2")
    assert status == 200 and b"<Key>dir/f.txt</Key>" in body
    assert denied(f"{url}/dir/f.txt")
    assert curl(f"{url}/new.txt", "PUT", b"nope")[0] == 403
    # public-read-write: anyone writes and deletes objects, never the bucket's settings.
    a.put_bucket_acl(Bucket="acl-bkt", ACL="public-read-write")
    assert curl(f"{url}/drop.txt", "PUT", b"dropped")[0] == 200
    assert a.get_object(Bucket="acl-bkt", Key="drop.txt")["Body"].read() == b"dropped"
    assert curl(f"{url}/drop.txt", "DELETE")[0] == 204
    assert code(a.head_object, Bucket="acl-bkt", Key="drop.txt") == "404"
    assert curl(f"{url}?policy", "PUT", b"{}")[0] == 403
    assert curl(f"{url}", "DELETE")[0] == 403
    # authenticated-read: IAM users list, anonymous callers do not.
    a.put_bucket_acl(Bucket="acl-bkt", AccessControlPolicy={
        "Owner": {"ID": "deltaglider"},
        "Grants": [{"Grantee": {"Type": "Group", "URI": AUTH_USERS}, "Permission": "READ"}]})
    assert denied(f"{url}?list-type=2")
    assert [o["Key"] for o in srv.nobody.list_objects_v2(Bucket="acl-bkt")["Contents"]] == ["dir/f.txt"]
    assert code(srv.nobody.get_object, Bucket="acl-bkt", Key="dir/f.txt") == "AccessDenied"
    a.put_bucket_acl(Bucket="acl-bkt", ACL="private")
    assert code(srv.nobody.list_objects_v2, Bucket="acl-bkt") == "AccessDenied"
    assert grants(a.get_bucket_acl(Bucket="acl-bkt")) == [("deltaglider", "FULL_CONTROL")]
    assert code(a.get_bucket_acl, Bucket="acl-nope") == "NoSuchBucket"
    assert code(a.put_bucket_acl, Bucket="acl-nope", ACL="public-read") == "NoSuchBucket"


def test_an_explicit_deny_beats_an_acl(srv):
    a, url = srv.admin, f"{srv.url}/acl-deny"
    a.create_bucket(Bucket="acl-deny", ACL="public-read")
    a.put_object(Bucket="acl-deny", Key="secret/x.txt", Body=b"x", ACL="public-read")
    a.put_object(Bucket="acl-deny", Key="open/y.txt", Body=b"y", ACL="public-read")
    a.put_bucket_policy(Bucket="acl-deny", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
         "Resource": ["arn:aws:s3:::acl-deny/secret/*", "arn:aws:s3:::acl-deny"]}]}))
    assert denied(f"{url}/secret/x.txt")
    assert curl(f"{url}/open/y.txt") == (200, b"y")
    assert denied(f"{url}?list-type=2")


def test_delete_bucket_forgets_its_acl_and_policy(srv):
    a, url = srv.admin, f"{srv.url}/acl-gone"
    a.create_bucket(Bucket="acl-gone", ACL="public-read")
    a.put_bucket_policy(Bucket="acl-gone", Policy=json.dumps({"Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::acl-gone/*"}]}))
    assert curl(f"{url}?list-type=2")[0] == 200
    a.delete_bucket(Bucket="acl-gone")
    a.create_bucket(Bucket="acl-gone")
    a.put_object(Bucket="acl-gone", Key="k", Body=b"k")
    assert denied(f"{url}?list-type=2")
    assert denied(f"{url}/k")
    assert code(a.get_bucket_policy, Bucket="acl-gone") == "NoSuchBucketPolicy"
    assert grants(a.get_bucket_acl(Bucket="acl-gone")) == [("deltaglider", "FULL_CONTROL")]


def test_acls_survive_a_restart(tmp_path):
    s = Server(tmp_path / "data").start()
    try:
        a = s.client()
        a.create_bucket(Bucket="keep", ACL="public-read")
        a.put_object(Bucket="keep", Key="o.txt", Body=b"kept", ACL="public-read")
        s.stop()
        s.start()
        assert curl(f"{s.url}/keep/o.txt") == (200, b"kept")
        assert curl(f"{s.url}/keep?list-type=2")[0] == 200
    finally:
        s.stop()


def test_aws_cli_acl_flag(server, bucket, tmp_path):
    f = tmp_path / "f.txt"
    f.write_bytes(b"cli")
    env = aws_env(server)
    for acl, key in (("private", "f.txt"), ("public-read", "p.txt")):
        r = subprocess.run(["aws", "--endpoint-url", server.url, "s3", "cp", "--acl", acl, str(f),
                            f"s3://{bucket}/{key}"], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    assert curl(f"{server.url}/{bucket}/p.txt") == (200, b"cli")
    assert denied(f"{server.url}/{bucket}/f.txt")
    r = subprocess.run(["aws", "--endpoint-url", server.url, "s3api", "get-object-acl", "--bucket", bucket,
                        "--key", "p.txt"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"} in json.loads(r.stdout)["Grants"]
