"""IAM users log in to the admin UI with their access key and secret, if
and only if they hold an explicit `admin` permission on `*` (`*` alone is
not enough); the audit log names them; deleting the key, or taking the
permission away, ends their session at once. Wrong secrets share the
brute-force limiter with every other login."""

import json
import time

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from conftest import Server, raw_request
from test_iam import audit_records
from test_session import generated_password
from test_ui import browser, log_in, shot, text_of, wait
from test_ui_encryption import config


def admin(srv, path, method="GET", body=None):
    status, _, out = raw_request(f"{srv.url}{path}", method=method, sign=True,
                                 body=json.dumps(body).encode() if body is not None else b"",
                                 headers={"content-type": "application/json"})
    return status, json.loads(out or b"{}")


def user_with(srv, name, actions):
    status, k = admin(srv, "/_/api/iam/users", "POST", {"name": name})
    assert status in (200, 201), k
    status, doc = admin(srv, f"/_/api/iam/users/{name}/permissions", "POST",
                        {"effect": "Allow", "actions": actions, "resources": ["*"]})
    assert status in (200, 201), doc
    return k["access_key_id"], k["secret_access_key"]


def key_login(srv, key, secret):
    return raw_request(f"{srv.url}/_/api/session", method="POST",
                       body=json.dumps({"access_key_id": key, "secret_access_key": secret}).encode(),
                       headers={"content-type": "application/json"})


def test_an_operator_logs_in_with_a_key_and_loses_the_session_with_it(tmp_path):
    srv = Server(tmp_path / "unused", config=config(tmp_path)).start()
    b = browser()
    try:
        ops_key, ops_secret = user_with(srv, "ops", ["admin"])
        dev_key, dev_secret = user_with(srv, "dev", ["*"])

        status, _, body = key_login(srv, dev_key, dev_secret)
        assert status == 403 and b"explicit `admin` permission" in body, "full S3 access is not operator access"
        status, _, body = key_login(srv, ops_key, ops_secret + "x")
        assert status == 401 and b"wrong access key or secret" in body
        assert key_login(srv, "NOSUCHKEY0000000", ops_secret)[0] == 401
        status, _, body = raw_request(f"{srv.url}/_/api/session", method="POST",
                                      body=json.dumps({"password": "x", "access_key_id": ops_key}).encode(),
                                      headers={"content-type": "application/json"})
        assert status == 400

        b.get(f"{srv.url}/_/")
        wait(b, EC.element_to_be_clickable((By.ID, "access-key-id"))).send_keys(ops_key)
        b.find_element(By.ID, "secret-access-key").send_keys("wrong")
        b.find_element(By.ID, "key-login-button").click()
        assert "Wrong access key or secret" in text_of(b, ".msg.error")
        shot(b, "login-key")
        field = b.find_element(By.ID, "secret-access-key")
        field.clear()
        field.send_keys(ops_secret)
        b.find_element(By.ID, "key-login-button").click()
        assert text_of(b, "#version")
        assert b.find_element(By.ID, "whoami").text == "ops"
        b.find_element(By.ID, "nav-users").click()
        wait(b, EC.text_to_be_present_in_element((By.ID, "users"), "dev"))

        # The audit log names the operator.
        def by_ops():
            return [r for r in audit_records(srv) if r["user"] == "ops" and r.get("key") == "/_/api/iam/users"]
        deadline = time.time() + 5
        while time.time() < deadline and not by_ops():
            time.sleep(0.1)
        assert by_ops() and by_ops()[0]["decision"] == "allow"

        # Taking the permission away ends the session.
        status, _ = admin(srv, "/_/api/iam/users/ops/permissions/0", "DELETE")
        assert status in (200, 204)
        deadline = time.time() + 5
        code = None
        while time.time() < deadline:
            code = b.execute_script("const r = await fetch('/_/api/status'); return r.status;")
            if code == 401:
                break
            time.sleep(0.2)
        assert code == 401, "the session ended with the permission"
        status, _, _ = key_login(srv, ops_key, ops_secret)
        assert status == 403
    finally:
        b.quit()
        srv.stop()


def test_what_can_this_user_do_matches_what_its_requests_get(tmp_path):
    srv = Server(tmp_path / "unused", config=config(tmp_path)).start()
    b = browser()
    try:
        key, secret = user_with(srv, "reader", ["read", "list"])
        status, doc = admin(srv, "/_/api/iam/users/reader/permissions", "POST",
                            {"effect": "Deny", "actions": ["read"], "resources": ["vault/secret/*"]})
        assert status in (200, 201), doc
        s3 = srv.client()
        s3.create_bucket(Bucket="vault")
        for k in ("public/a.txt", "secret/k"):
            s3.put_object(Bucket="vault", Key=k, Body=b"x")

        def can(q):
            status, doc = admin(srv, f"/_/api/iam/users/reader/can?{q}")
            assert status == 200, doc
            return {a["action"]: a for a in doc["actions"]}

        obj = can("bucket=vault&key=public/a.txt")
        assert set(obj) >= {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} and "s3:ListBucket" not in obj
        assert obj["s3:GetObject"]["allowed"]
        assert not obj["s3:PutObject"]["allowed"] and not obj["s3:PutObject"]["explicit"]
        hidden = can("bucket=vault&key=secret/k")["s3:GetObject"]
        assert not hidden["allowed"] and hidden["explicit"], hidden
        bucket = can("bucket=vault")
        assert bucket["s3:ListBucket"]["allowed"] and not bucket["s3:DeleteBucket"]["allowed"]
        assert can("")["s3:ListAllMyBuckets"]["allowed"]
        assert admin(srv, "/_/api/iam/users/nobody/can?bucket=vault")[0] == 404
        assert admin(srv, "/_/api/iam/users/reader/can?key=x")[0] == 400
        assert admin(srv, "/_/api/iam/users/reader/can?bucket=b&source_ip=nope")[0] == 400
        assert raw_request(f"{srv.url}/_/api/iam/users/reader/can?bucket=vault")[0] == 401

        # The preview says what the user's own requests then get.
        mine = srv.client(access=key, secret=secret)
        assert mine.get_object(Bucket="vault", Key="public/a.txt")["Body"].read() == b"x"
        for call in (lambda: mine.get_object(Bucket="vault", Key="secret/k"),
                     lambda: mine.put_object(Bucket="vault", Key="public/b", Body=b"y")):
            try:
                call()
                raise AssertionError("allowed")
            except mine.exceptions.ClientError as e:
                assert e.response["Error"]["Code"] == "AccessDenied"

        log_in(srv, b, generated_password(srv))
        text_of(b, "#version")
        b.find_element(By.ID, "nav-users").click()
        wait(b, EC.element_to_be_clickable((By.ID, "can-check")))
        b.find_element(By.ID, "can-bucket").send_keys("vault")
        b.find_element(By.ID, "can-key").send_keys("secret/k")
        b.find_element(By.ID, "can-check").click()
        row = wait(b, EC.visibility_of_element_located((By.CSS_SELECTOR, "tr[data-action='s3:GetObject']")))
        assert "denied (explicit)" in row.text, row.text
        shot(b, "users-can")
    finally:
        b.quit()
        srv.stop()


def test_groups_and_the_permission_editor(tmp_path):
    """Create a group, put a user in it, give the group a permission with a
    two conditions and the user a Deny, all from the Users page; boto3 with the
    user's key then gets exactly that."""
    srv = Server(tmp_path / "unused", config=config(tmp_path)).start()
    b = browser()
    try:
        key, secret = user_with(srv, "carol", ["list"])
        s3 = srv.client()
        s3.create_bucket(Bucket="team")
        for k in ("docs/a.txt", "docs/private/b.txt"):
            s3.put_object(Bucket="team", Key=k, Body=b"x")
        log_in(srv, b, generated_password(srv))
        text_of(b, "#version")
        b.find_element(By.ID, "nav-users").click()
        wait(b, EC.element_to_be_clickable((By.ID, "group-name-new"))).send_keys("readers")
        b.find_element(By.ID, "group-create").click()
        wait(b, EC.element_to_be_clickable((By.ID, "member-add-readers"))).click()
        wait(b, EC.text_to_be_present_in_element((By.CSS_SELECTOR, "tr[data-group='readers']"), "carol"))

        from selenium.webdriver.support.ui import Select

        def add(owner, effect, actions, resources, *conds):
            Select(wait(b, EC.element_to_be_clickable((By.ID, "perm-owner")))).select_by_value(owner)
            Select(b.find_element(By.ID, "perm-effect")).select_by_value(effect)
            b.find_element(By.ID, "perm-actions").send_keys(actions)
            b.find_element(By.ID, "perm-resources").send_keys(resources)
            for i, c in enumerate(conds):
                n = f"-{i}" if i else ""
                if i:
                    b.find_element(By.ID, "perm-cond-more").click()
                for field, v in zip(("perm-cond-op", "perm-cond-key", "perm-cond-values"), c):
                    b.find_element(By.ID, field + n).send_keys(v)
            b.find_element(By.ID, "perm-add").click()

        # Two conditions, both of which must hold.
        add("groups/readers", "Allow", "read", "team/docs/*", ("IpAddress", "aws:SourceIp", "127.0.0.0/8"),
            ("StringEquals", "aws:username", "carol"))
        wait(b, EC.text_to_be_present_in_element((By.CSS_SELECTOR, "tr[data-group='readers']"), "IpAddress"))
        add("users/carol", "Deny", "read", "team/docs/private/*")
        wait(b, EC.text_to_be_present_in_element((By.ID, "perm-list"), "Deny read on team/docs/private/*"))
        # A permission the grammar refuses says why and adds nothing.
        add("users/carol", "Allow", "fly", "*")
        assert "fly" in text_of(b, "#perm-msg .msg.error")
        shot(b, "users-groups")

        status, g = admin(srv, "/_/api/iam/groups/readers")
        assert g["members"] == ["carol"], g
        assert [(c["op"], c["key"], c["values"]) for c in g["permissions"][0]["conditions"]] == [
            ("IpAddress", "aws:SourceIp", ["127.0.0.0/8"]), ("StringEquals", "aws:username", ["carol"])], g
        mine = srv.client(access=key, secret=secret)
        assert mine.get_object(Bucket="team", Key="docs/a.txt")["Body"].read() == b"x"
        try:
            mine.get_object(Bucket="team", Key="docs/private/b.txt")
            raise AssertionError("the Deny did not hold")
        except mine.exceptions.ClientError as e:
            assert e.response["Error"]["Code"] == "AccessDenied"

        # Remove the Deny, then take carol out of the group: the read goes.
        Select(b.find_element(By.ID, "perm-owner")).select_by_value("users/carol")
        b.find_element(By.CSS_SELECTOR, "#perm-list li[data-index='1'] .perm-remove").click()
        wait(b, EC.invisibility_of_element_located((By.CSS_SELECTOR, "#perm-list li[data-index='1']")))
        assert mine.get_object(Bucket="team", Key="docs/private/b.txt")["Body"].read() == b"x"
        b.find_element(By.CSS_SELECTOR, "tr[data-group='readers'] .member-remove").click()
        wait(b, EC.invisibility_of_element_located((By.CSS_SELECTOR, "tr[data-group='readers'] .member-remove")))
        try:
            mine.get_object(Bucket="team", Key="docs/a.txt")
            raise AssertionError("still in the group")
        except mine.exceptions.ClientError as e:
            assert e.response["Error"]["Code"] == "AccessDenied"
    finally:
        b.quit()
        srv.stop()
