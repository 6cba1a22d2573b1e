"""Admin UI login: the bootstrap password (generated and printed once, set
with `serve --set-bootstrap-password`, or DGP_BOOTSTRAP_PASSWORD_HASH),
session cookies (flags, lifetime, cap, address binding, logout, a new
password ends them), CSRF on state-changing calls, and the brute-force
limiter on logins. Sessions are used exactly as a browser would: the cookie
and the X-CSRF-Token header, no signature."""

import http.cookies
import json
import re
import subprocess
import textwrap
import time

import pytest
import requests

from conftest import BIN, Server, raw_request, scrape, value

PASSWORD_RE = re.compile(r"bootstrap password \(shown once.*?\n\s*\n\s+(\S+)\s*\n", re.S)


def generated_password(srv):
    m = PASSWORD_RE.search(srv.output())
    assert m, "no bootstrap password printed:\n" + srv.output()
    return m.group(1)


def login(srv, password, source="127.0.0.1"):
    return raw_request(f"{srv.url}/_/api/session", method="POST", source=source,
                       body=('{"password": "%s"}' % password).encode(),
                       headers={"content-type": "application/json"})


def cookie_of(headers):
    c = http.cookies.SimpleCookie()
    c.load(headers["set-cookie"])
    return c["dgp_session"]


def call(srv, path, token, method="GET", csrf=None, body=b"", source="127.0.0.1"):
    h = {"cookie": f"dgp_session={token}", "content-type": "application/json"}
    if csrf:
        h["x-csrf-token"] = csrf
    return raw_request(f"{srv.url}{path}", method=method, body=body, headers=h, source=source)


def session_config(tmp, extra=""):
    cfg = tmp / "session.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        storage:
          filesystem: {tmp / 'data'}
        advanced:
          auth_delay_after: 100
          auth_lockout_after: 4
        """) + extra)
    return cfg


@pytest.fixture
def ssrv(tmp_path):
    srv = Server(tmp_path / "unused", config=session_config(tmp_path)).start()
    srv.tmp = tmp_path
    yield srv
    srv.stop()


def test_bootstrap_password_login_cookie_and_csrf(ssrv):
    pw = generated_password(ssrv)
    assert len(pw) == 24
    # a wrong password: 401, counted as an auth failure
    before = scrape(ssrv)
    status, headers, body = login(ssrv, "not-the-password")
    assert status == 401 and "set-cookie" not in headers
    assert value(scrape(ssrv), "dgp_auth_failures_total") - value(before, "dgp_auth_failures_total") == 1
    # the right one: a hardened cookie and the CSRF token
    status, headers, body = login(ssrv, pw)
    assert status == 200, body
    c = cookie_of(headers)
    assert c["httponly"] and c["samesite"] == "Strict" and c["path"] == "/_/"
    assert not c["secure"], "Secure must be set only over TLS"
    assert int(c["max-age"]) == 12 * 3600
    doc = json.loads(body)
    assert doc["user"] == "admin" and len(doc["csrf_token"]) >= 32
    token, csrf = c.value, doc["csrf_token"]
    # the session reads the operator API as a signature would
    status, _, body = call(ssrv, "/_/api/status", token)
    assert status == 200 and b"uptime_secs" in body
    status, _, body = call(ssrv, "/_/api/session", token)
    assert status == 200 and json.loads(body)["csrf_token"] == csrf
    # a state-changing call without the CSRF token, or with a wrong one, changes nothing
    new_user = b'{"name": "alice"}'
    for bad in (None, "x" * len(csrf)):
        status, _, body = call(ssrv, "/_/api/iam/users", token, "POST", csrf=bad, body=new_user)
        assert status == 403 and b"X-CSRF-Token" in body
    status, _, body = call(ssrv, "/_/api/iam/users", token)
    assert b"alice" not in body
    status, _, body = call(ssrv, "/_/api/iam/users", token, "POST", csrf=csrf, body=new_user)
    assert status in (200, 201), body
    status, _, body = call(ssrv, "/_/api/iam/users", token)
    assert b"alice" in body
    # a made-up token is nobody
    status, _, _ = call(ssrv, "/_/api/status", "A" * 43)
    assert status == 401
    # bound to the address that logged in: used from another, it ends
    status, _, _ = call(ssrv, "/_/api/status", token, source="127.0.0.2")
    assert status == 401
    assert call(ssrv, "/_/api/status", token)[0] == 401
    status, headers, body = login(ssrv, pw)
    token, csrf = cookie_of(headers).value, json.loads(body)["csrf_token"]
    # logout needs the token too, then ends the session and clears the cookie
    status, _, _ = call(ssrv, "/_/api/session", token, "DELETE")
    assert status == 403
    status, headers, _ = call(ssrv, "/_/api/session", token, "DELETE", csrf=csrf)
    assert status == 204 and cookie_of(headers)["max-age"] == "0"
    status, _, _ = call(ssrv, "/_/api/status", token)
    assert status == 401


def test_the_password_is_printed_once_and_survives_a_restart(ssrv):
    pw = generated_password(ssrv)
    ssrv.stop()
    ssrv.log.clear()
    ssrv.start()
    assert "bootstrap password (shown once" not in ssrv.output()
    assert login(ssrv, pw)[0] == 200
    # sessions are in memory: a restart ends them
    status, headers, _ = login(ssrv, pw)
    token = cookie_of(headers).value
    ssrv.stop()
    ssrv.start()
    assert call(ssrv, "/_/api/status", token)[0] == 401


def test_set_bootstrap_password_ends_sessions_of_the_old_one(ssrv):
    old = generated_password(ssrv)
    status, headers, _ = login(ssrv, old)
    token = cookie_of(headers).value
    # too short: refused, nothing changes
    r = subprocess.run([str(BIN), "serve", "--config", str(ssrv.tmp / "session.yaml"), "--set-bootstrap-password"],
                       input="short\n", capture_output=True, text=True, cwd=ssrv.cwd, env=ssrv.env)
    assert r.returncode != 0 and "at least 12" in r.stderr
    assert call(ssrv, "/_/api/status", token)[0] == 200
    # from another process, while the server runs
    r = subprocess.run([str(BIN), "serve", "--config", str(ssrv.tmp / "session.yaml"), "--set-bootstrap-password"],
                       input="a new password for the NAS\n", capture_output=True, text=True, cwd=ssrv.cwd,
                       env=ssrv.env)
    assert r.returncode == 0, r.stderr
    assert call(ssrv, "/_/api/status", token)[0] == 401
    assert login(ssrv, old)[0] == 401
    assert login(ssrv, "a new password for the NAS")[0] == 200


def test_login_lockout(ssrv):
    pw = generated_password(ssrv)
    for _ in range(4):
        assert login(ssrv, "wrong")[0] == 401
    # locked out: even the right password gets 503 with Retry-After
    status, headers, _ = login(ssrv, pw)
    assert status == 503 and int(headers["retry-after"]) > 0
    # other addresses are not affected
    assert login(ssrv, pw, source="127.0.0.2")[0] == 200


def test_session_lifetime_and_cap(tmp_path):
    cfg = session_config(tmp_path, "  session_ttl_secs: 2\n  session_max_per_user: 2\n")
    srv = Server(tmp_path / "unused", config=cfg).start()
    try:
        pw = generated_password(srv)
        tokens = [cookie_of(login(srv, pw)[1]).value for _ in range(3)]
        # the oldest of three went when the third logged in
        assert [call(srv, "/_/api/status", t)[0] for t in tokens] == [401, 200, 200]
        time.sleep(2.5)
        assert call(srv, "/_/api/status", tokens[2])[0] == 401
    finally:
        srv.stop()


def test_unbound_sessions_work_from_another_address(tmp_path):
    srv = Server(tmp_path / "unused", config=session_config(tmp_path, "  session_bind_ip: false\n")).start()
    try:
        token = cookie_of(login(srv, generated_password(srv))[1]).value
        assert call(srv, "/_/api/status", token, source="127.0.0.2")[0] == 200
        assert call(srv, "/_/api/status", token)[0] == 200
    finally:
        srv.stop()


def test_password_hash_from_the_environment(tmp_path):
    h = subprocess.run([str(BIN), "hash-password"], input="from the environment\n", capture_output=True,
                       text=True, check=True).stdout.strip()
    assert h.startswith("$argon2id$")
    srv = Server(tmp_path / "unused", config=session_config(tmp_path),
                 env={"DGP_BOOTSTRAP_PASSWORD_HASH": h}).start()
    try:
        assert "bootstrap password (shown once" not in srv.output()
        assert login(srv, "from the environment")[0] == 200
        assert login(srv, "something else")[0] == 401
    finally:
        srv.stop()
    # a hash that could never match refuses to start, naming the variable
    bad = Server(tmp_path / "unused2", config=session_config(tmp_path),
                 env={"DGP_BOOTSTRAP_PASSWORD_HASH": "plaintext-oops"})
    with pytest.raises(RuntimeError) as e:
        bad.start(timeout=10)
    assert "DGP_BOOTSTRAP_PASSWORD_HASH" in str(e.value)


def test_secure_cookie_over_tls(tmp_path):
    from test_tls import make_cert
    cert, key = make_cert(tmp_path, "ui")
    cfg = session_config(tmp_path, f"  tls:\n    cert_file: {cert}\n    key_file: {key}\n")
    srv = Server(tmp_path / "unused", config=cfg).start()
    try:
        pw = generated_password(srv)
        r = requests.post(f"https://{srv.addr}/_/api/session", json={"password": pw}, verify=str(cert))
        assert r.status_code == 200
        assert "Secure" in r.headers["set-cookie"] and "HttpOnly" in r.headers["set-cookie"]
        # requests keeps the cookie like a browser; the API answers through it
        r2 = requests.get(f"https://{srv.addr}/_/api/status", cookies=r.cookies, verify=str(cert))
        assert r2.status_code == 200, r2.text
    finally:
        srv.stop()
