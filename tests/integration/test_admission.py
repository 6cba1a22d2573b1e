"""Admission blocks (`admission.blocks`): evaluated in order before
authentication, by source address, method, bucket and key glob. `deny`
answers 403 before any signature work, `reject` answers the operator's
status and message, `allow-anonymous` lets unsigned requests read what the
block matches and never write. The trace endpoint says which block a
request would hit; a reload changes the rules."""

import json
import signal
import time

import botocore.exceptions
import pytest

from conftest import (Server, bind_source, error_code, make_client, raw_request)

RULES = """\
admission:
  blocks:
    - name: deny-second-loopback
      match:
        source_ip_list: [127.0.0.2]
      action: deny
    - name: no-deletes-from-3
      match:
        source_ip_list: [127.0.0.3/32]
        method: [DELETE]
      action: {type: reject, status: 429, message: deletes are paused}
    - name: public-builds
      match:
        method: [GET, HEAD]
        bucket: releases
        path_glob: "builds/*"
      action: allow-anonymous
    - name: drop-box
      match:
        bucket: releases
        path_glob: "drop/*"
      action: allow-anonymous
"""


def write_config(path, text):
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("admission")
    cfg = write_config(tmp / "config.yaml", RULES)
    s = Server(tmp / "data", config=cfg).start()
    admin = s.client()
    for b in ("releases", "private"):
        admin.create_bucket(Bucket=b)
    admin.put_object(Bucket="releases", Key="builds/v1/app.txt", Body=b"build one")
    admin.put_object(Bucket="releases", Key="src/main.txt", Body=b"source")
    admin.put_object(Bucket="releases", Key="drop/old.txt", Body=b"keep me")
    admin.put_object(Bucket="private", Key="builds/v1/app.txt", Body=b"private build")
    s.cfg = cfg
    yield s
    s.stop()


def client_error(fn, **kw):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        fn(**kw)
    return e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_deny_by_source_address_before_the_signature(srv):
    here = srv.client()
    there = bind_source(srv.client(), "127.0.0.2")
    assert here.get_object(Bucket="releases", Key="src/main.txt")["Body"].read() == b"source"
    assert client_error(there.get_object, Bucket="releases", Key="src/main.txt") == ("AccessDenied", 403)
    assert client_error(there.list_objects_v2, Bucket="releases") == ("AccessDenied", 403)
    assert client_error(there.put_object, Bucket="releases", Key="x.txt", Body=b"x") == ("AccessDenied", 403)
    # A wrong secret: from 127.0.0.1 the signature is checked; from the denied
    # address admission answers first.
    wrong_here = make_client(srv.url, secret="wrong-secret-" + "y" * 27)
    wrong_there = bind_source(make_client(srv.url, secret="wrong-secret-" + "y" * 27), "127.0.0.2")
    assert client_error(wrong_here.list_objects_v2, Bucket="releases") == ("SignatureDoesNotMatch", 403)
    assert client_error(wrong_there.list_objects_v2, Bucket="releases") == ("AccessDenied", 403)
    # Nothing was written by the denied PUT.
    assert client_error(here.head_object, Bucket="releases", Key="x.txt") == ("404", 404)
    # The operator endpoints are behind the same rules.
    status, _, body = raw_request(f"{srv.url}/_/api/status", sign=True, source="127.0.0.2")
    assert status == 403 and json.loads(body)["error"] == "access denied"
    status, _, body = raw_request(f"{srv.url}/_/api/status", sign=True)
    assert status == 200 and "backends" in json.loads(body)
    status, _, _ = raw_request(f"{srv.url}/_/health", source="127.0.0.2")
    assert status == 403


def test_reject_with_the_operators_status_and_message(srv):
    third = bind_source(srv.client(), "127.0.0.3")
    status, _, body = raw_request(f"{srv.url}/releases/drop/old.txt", method="DELETE", sign=True,
                                  source="127.0.0.3")
    assert status == 429 and error_code(body) == "TooManyRequests"
    assert b"<Message>deletes are paused</Message>" in body
    # Only DELETE is rejected from that address; the object is still there.
    assert third.get_object(Bucket="releases", Key="drop/old.txt")["Body"].read() == b"keep me"
    third.put_object(Bucket="releases", Key="drop/from-3.txt", Body=b"3")
    srv.client().delete_object(Bucket="releases", Key="drop/from-3.txt")


def test_allow_anonymous_reads_only_what_the_block_matches(srv):
    base = f"{srv.url}/releases"
    status, _, body = raw_request(f"{base}/builds/v1/app.txt")
    assert (status, body) == (200, b"build one")
    status, h, _ = raw_request(f"{base}/builds/v1/app.txt", method="HEAD")
    assert status == 200 and h["content-length"] == "9"
    # Listing inside the glob; not the bucket root, not a sibling prefix.
    status, _, body = raw_request(f"{base}?list-type=2&prefix=builds/")
    assert status == 200 and b"<Key>builds/v1/app.txt</Key>" in body and b"src/" not in body
    status, _, body = raw_request(f"{base}?prefix=builds/v1/")
    assert status == 200 and b"<Key>builds/v1/app.txt</Key>" in body
    for url in (f"{base}?list-type=2", f"{base}?list-type=2&prefix=src/", f"{base}/src/main.txt",
                f"{srv.url}/private/builds/v1/app.txt", f"{srv.url}/"):
        status, _, body = raw_request(url)
        assert (status, error_code(body)) == (403, "AccessDenied"), url
    # Writes: a GET/HEAD block does not match a PUT; a block without methods
    # matches it but allow-anonymous never grants a write or a delete.
    for method, key in (("PUT", "builds/v2/app.txt"), ("PUT", "drop/new.txt"), ("DELETE", "drop/old.txt")):
        status, _, body = raw_request(f"{base}/{key}", method=method, body=b"evil" if method == "PUT" else b"")
        assert (status, error_code(body)) == (403, "AccessDenied"), (method, key)
    admin = srv.client()
    assert client_error(admin.head_object, Bucket="releases", Key="builds/v2/app.txt") == ("404", 404)
    assert client_error(admin.head_object, Bucket="releases", Key="drop/new.txt") == ("404", 404)
    assert admin.get_object(Bucket="releases", Key="drop/old.txt")["Body"].read() == b"keep me"
    # A signed request that matches is still authenticated as its user.
    assert admin.get_object(Bucket="releases", Key="builds/v1/app.txt")["Body"].read() == b"build one"
    wrong = make_client(srv.url, secret="wrong-secret-" + "y" * 27)
    assert client_error(wrong.get_object, Bucket="releases", Key="builds/v1/app.txt") == ("SignatureDoesNotMatch", 403)


def trace(srv, query):
    status, _, body = raw_request(f"{srv.url}/_/api/admission/trace?{query}", sign=True)
    return status, json.loads(body)


def test_trace_says_which_block_a_request_would_hit(srv):
    assert trace(srv, "source_ip=127.0.0.2")[1]["block"] == "deny-second-loopback"
    _, t = trace(srv, "source_ip=127.0.0.2")
    assert (t["decision"], t["status"]) == ("deny", 403)
    _, t = trace(srv, "source_ip=127.0.0.3&method=delete&path=/releases/a.txt")
    assert (t["decision"], t["block"], t["status"]) == ("reject", "no-deletes-from-3", 429)
    _, t = trace(srv, "source_ip=10.1.2.3&path=/releases/builds/v9/x.tgz")
    assert (t["decision"], t["block"]) == ("allow-anonymous", "public-builds")
    _, t = trace(srv, "source_ip=10.1.2.3&method=PUT&bucket=releases&key=builds/x")
    assert (t["decision"], t["block"]) == ("pass", None)
    status, t = trace(srv, "method=GET")
    assert status == 400 and "source_ip" in t["error"]
    status, _, _ = raw_request(f"{srv.url}/_/api/admission/trace?source_ip=1.2.3.4")
    assert status == 401


def test_forwarded_for_counts_only_when_trusted(tmp_path):
    cfg = write_config(tmp_path / "config.yaml", RULES)
    url_of = lambda s: f"{s.url}/releases?list-type=2"
    plain = Server(tmp_path / "a", config=cfg).start()
    trusted = Server(tmp_path / "b", config=cfg, env={"DGP_TRUST_PROXY_HEADERS": "true"}).start()
    try:
        for s in (plain, trusted):
            s.client().create_bucket(Bucket="releases")
        spoof = {"X-Forwarded-For": "127.0.0.2"}
        assert raw_request(url_of(plain), headers=spoof, sign=True)[0] == 200
        status, _, body = raw_request(url_of(trusted), headers=spoof, sign=True)
        assert (status, error_code(body)) == (403, "AccessDenied")
        # Only the last hop (what the reverse proxy saw) counts, not the
        # client's own claim in front of it.
        chain = {"X-Forwarded-For": "127.0.0.2, 10.9.9.9"}
        assert raw_request(url_of(trusted), headers=chain, sign=True)[0] == 200
    finally:
        plain.stop()
        trusted.stop()


def test_reload_changes_the_rules(tmp_path):
    cfg = write_config(tmp_path / "config.yaml", RULES)
    s = Server(tmp_path / "data", config=cfg).start()
    try:
        s.client().create_bucket(Bucket="releases")
        there = bind_source(s.client(), "127.0.0.2")
        assert client_error(there.list_objects_v2, Bucket="releases") == ("AccessDenied", 403)
        write_config(cfg, RULES.replace("source_ip_list: [127.0.0.2]", "source_ip_list: [127.0.0.9]"))
        before = s.output().count("configuration reloaded")
        s.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 15
        while s.output().count("configuration reloaded") == before and time.time() < deadline:
            time.sleep(0.05)
        assert there.list_objects_v2(Bucket="releases")["KeyCount"] == 0
        ninth = bind_source(s.client(), "127.0.0.9")
        assert client_error(ninth.list_objects_v2, Bucket="releases") == ("AccessDenied", 403)
    finally:
        s.stop()
