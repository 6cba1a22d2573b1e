"""Single sign-on for the admin UI against a real OpenID Connect provider
on loopback (oidc-provider-mock: Authlib, RS256 ID tokens, registered
clients with secrets, nonce required). The provider here also enforces
PKCE (S256), which the mock alone does not. A first login provisions the
user into the groups the mapping rules give; only groups with the admin
permission open the UI; the state is single-use and bound to the browser
that started the login; taking the permission away ends the session."""

import base64
import hashlib
import json
import subprocess
import textwrap
import threading
import urllib.parse

import flask
import pytest
import requests
import werkzeug.serving
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from conftest import BIN, Server, raw_request
from test_ui import browser, shot, wait

oidc_mock = pytest.importorskip("oidc_provider_mock", reason="tests/run installs oidc-provider-mock")


class Provider:
    """oidc-provider-mock on http://localhost:PORT (another site than the
    proxy's 127.0.0.1, so cookies behave as across real sites)."""

    def __init__(self, users):
        self.app = oidc_mock.app(require_client_registration=True, require_nonce=True, user_claims=users)
        self.challenges, self.verified, self.authorize_params = set(), [], []
        app = self.app

        @app.before_request
        def pkce():
            r = flask.request
            if r.path == "/oauth2/authorize":
                self.authorize_params.append(dict(r.args))
                if r.args.get("code_challenge_method") == "S256" and r.args.get("code_challenge"):
                    self.challenges.add(r.args["code_challenge"])
            if r.path == "/oauth2/token" and r.method == "POST":
                v = r.form.get("code_verifier", "")
                c = base64.urlsafe_b64encode(hashlib.sha256(v.encode()).digest()).rstrip(b"=").decode()
                if c not in self.challenges:
                    return flask.jsonify(error="invalid_grant", error_description="PKCE verifier does not match"), 400
                self.verified.append(c)
            return None

        self.server = werkzeug.serving.make_server("localhost", 0, app, threaded=True)
        self.url = f"http://localhost:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def register(self, redirect_uri):
        r = requests.post(f"{self.url}/oauth2/clients", json={"redirect_uris": [redirect_uri]}, timeout=5)
        assert r.status_code == 201, r.text
        return r.json()

    def stop(self):
        self.server.shutdown()


def admin(srv, path, method="GET", body=None):
    status, _, out = raw_request(f"{srv.url}{path}", method=method, sign=True,
                                 body=json.dumps(body).encode() if body is not None else b"",
                                 headers={"content-type": "application/json"})
    return status, json.loads(out or b"{}")


def write_config(path, data, provider=None, client=None, secret_file=None, rules="", extra=""):
    sso = ""
    if provider:
        sso = textwrap.dedent(f"""\
            access:
              auth_providers:
                - name: corp
                  type: oidc
                  display_name: Corp SSO
                  issuer: {provider.url}
                  client_id: {client['client_id']}
                  client_secret_file: {secret_file}
            """) + textwrap.indent(extra, " " * 6) + "  group_mapping_rules:\n" + textwrap.indent(textwrap.dedent(rules), "    ")
    path.write_text(textwrap.dedent(f"""\
        storage:
          filesystem: {data}
        advanced:
          auth_delay_after: 100
        """) + sso)


RULES = """\
    - claim: groups
      value: nas-admins
      groups: [operators]
    - email_domain: example.com
      groups: [staff]
    """


@pytest.fixture
def sso(tmp_path):
    alice = oidc_mock.User(sub="alice-sub", claims={
        "email": "Alice@Example.com", "email_verified": True, "groups": ["staff", "nas-admins"]})
    bob = oidc_mock.User(sub="bob-sub", claims={"email": "bob@example.com", "email_verified": True})
    eve = oidc_mock.User(sub="eve-sub", claims={"email": "eve@example.com", "email_verified": False,
                                                "groups": []})
    # No email_verified at all: the address is not vouched for either.
    mallory = oidc_mock.User(sub="mallory-sub", claims={"email": "mallory@example.com"})
    provider = Provider([alice, bob, eve, mallory])
    cfg = tmp_path / "sso.yaml"
    write_config(cfg, tmp_path / "data")
    srv = Server(tmp_path / "unused", config=cfg).start()
    client = provider.register(f"{srv.url}/_/sso/corp/callback")
    secret = tmp_path / "oidc.secret"
    secret.write_text(client["client_secret"] + "\n")
    for g, actions in (("operators", ["admin"]), ("staff", ["read"])):
        assert admin(srv, "/_/api/iam/groups", "POST", {"name": g})[0] in (200, 201)
        status, doc = admin(srv, f"/_/api/iam/groups/{g}/permissions", "POST",
                            {"effect": "Allow", "actions": actions, "resources": ["*"]})
        assert status in (200, 201), doc
    write_config(cfg, tmp_path / "data", provider, client, secret, RULES)
    status, doc = admin(srv, "/_/api/config/reload", "POST")
    assert status == 200, doc
    srv.provider, srv.cfg, srv.client_doc, srv.secret_file = provider, cfg, client, secret
    yield srv
    srv.stop()
    provider.stop()


def users(srv):
    return {u["name"]: u for u in admin(srv, "/_/api/iam/users")[1]["users"]}


def test_sso_login_in_the_browser_provisions_into_the_mapped_groups(sso):
    srv = sso
    b = browser()
    try:
        b.get(f"{srv.url}/_/")
        button = wait(b, EC.element_to_be_clickable((By.ID, "sso-corp")))
        assert button.text == "Sign in with Corp SSO"
        shot(b, "login-sso")
        button.click()
        # The provider's page: pick the user.
        wait(b, EC.element_to_be_clickable((By.CSS_SELECTOR, "button[value='alice-sub']"))).click()
        wait(b, EC.text_to_be_present_in_element((By.ID, "whoami"), "alice@example.com"), timeout=15)
        shot(b, "dashboard-sso")
        cookies = {c["name"]: c for c in b.get_cookies()}
        s = cookies["dgp_session"]
        assert s["httpOnly"] and s["sameSite"] == "Strict" and s["path"] == "/_/"
        assert not [n for n in cookies if n.startswith("dgp_sso")], "the login's own cookie is cleared"

        p = srv.provider.authorize_params[-1]
        assert p["code_challenge_method"] == "S256" and p["nonce"] and p["state"], p
        assert "openid" in p["scope"].split() and p["response_type"] == "code"
        assert srv.provider.verified, "the token request carried the PKCE verifier"

        alice = users(srv)["alice@example.com"]
        assert alice["groups"] == ["operators", "staff"] and alice["access_keys"] == []

        # A user the rules give no admin permission is provisioned, but stays out.
        b.delete_all_cookies()
        b.get(f"{srv.url}/_/sso/corp/login")
        wait(b, EC.element_to_be_clickable((By.CSS_SELECTOR, "button[value='bob-sub']"))).click()
        msg = wait(b, EC.visibility_of_element_located((By.ID, "sso-message"))).text
        assert "do not give the admin permission" in msg and "staff" in msg, msg
        shot(b, "login-sso-refused")
        assert users(srv)["bob@example.com"]["groups"] == ["staff"]
        assert "dgp_session" not in {c["name"] for c in b.get_cookies()}

        # An address the provider has not verified matches no e-mail rule.
        b.get(f"{srv.url}/_/sso/corp/login")
        wait(b, EC.element_to_be_clickable((By.CSS_SELECTOR, "button[value='eve-sub']"))).click()
        msg = wait(b, EC.visibility_of_element_located((By.ID, "sso-message"))).text
        assert "no group mapping rule" in msg, msg
        b.get(f"{srv.url}/_/sso/corp/login")
        wait(b, EC.element_to_be_clickable((By.CSS_SELECTOR, "button[value='mallory-sub']"))).click()
        msg = wait(b, EC.visibility_of_element_located((By.ID, "sso-message"))).text
        assert "no group mapping rule" in msg, msg
        assert not any("eve" in n or "mallory" in n for n in users(srv)), "nobody is provisioned without a group"
    finally:
        b.quit()


def start_login(srv, sub):
    """The login as a browser does it, without one: our redirect to the
    provider, the user picked there; returns (callback URL, sso cookie)."""
    r = requests.get(f"{srv.url}/_/sso/corp/login", allow_redirects=False, timeout=10)
    assert r.status_code == 303, r.text
    [name] = [n for n in r.cookies.keys() if n.startswith("dgp_sso_")]
    sso_cookie = {name: r.cookies[name]}
    assert "HttpOnly" in r.headers["set-cookie"] and "SameSite=Lax" in r.headers["set-cookie"]
    at_provider = r.headers["location"]
    assert at_provider.startswith(srv.provider.url + "/oauth2/authorize?")
    r = requests.post(at_provider, data={"sub": sub}, allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text
    callback = r.headers["location"]
    assert callback.startswith(f"{srv.url}/_/sso/corp/callback?")
    return callback, sso_cookie


def test_state_is_single_use_and_bound_to_the_browser(sso):
    srv = sso
    callback, cookie = start_login(srv, "alice-sub")
    # Another browser (no cookie, or another one) cannot finish it...
    r = requests.get(callback, allow_redirects=False, timeout=10)
    assert r.status_code == 400 and "another browser" in r.text
    # ...and the attempt used the state up.
    r = requests.get(callback, cookies=cookie, allow_redirects=False, timeout=10)
    assert r.status_code == 400 and "dgp_session" not in r.headers.get("set-cookie", "")

    callback, cookie = start_login(srv, "alice-sub")
    r = requests.get(callback, cookies={k: "forged" for k in cookie}, allow_redirects=False, timeout=10)
    assert r.status_code == 400
    callback, cookie = start_login(srv, "alice-sub")
    r = requests.get(callback, cookies=cookie, allow_redirects=False, timeout=10)
    assert r.status_code == 200, r.text
    session = r.cookies["dgp_session"]
    assert 'http-equiv="refresh"' in r.text
    # A replay of the same callback is refused; the session works.
    r = requests.get(callback, cookies=cookie, allow_redirects=False, timeout=10)
    assert r.status_code == 400
    who = requests.get(f"{srv.url}/_/api/session", cookies={"dgp_session": session}, timeout=5)
    assert who.status_code == 200 and who.json()["user"] == "alice@example.com"

    # A code the provider refuses (wrong PKCE verifier) is a failed sign-in.
    callback, cookie = start_login(srv, "alice-sub")
    srv.provider.challenges.clear()
    r = requests.get(callback, cookies=cookie, allow_redirects=False, timeout=10)
    assert r.status_code == 401 and "invalid_grant" in r.text, r.text
    # So is the provider's own refusal.
    r = requests.get(f"{srv.url}/_/sso/corp/login", allow_redirects=False, timeout=10)
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(r.headers["location"]).query)["state"][0]
    r2 = requests.get(f"{srv.url}/_/sso/corp/callback?error=access_denied&state={state}",
                      cookies=dict(r.cookies), timeout=10)
    assert r2.status_code == 401 and "access_denied" in r2.text

    # Losing the admin permission ends the session at once.
    status, doc = admin(srv, "/_/api/iam/groups/operators/permissions/0", "DELETE")
    assert status in (200, 204), doc
    who = requests.get(f"{srv.url}/_/api/session", cookies={"dgp_session": session}, timeout=5)
    assert who.status_code == 401


def test_wrong_client_secret_and_missing_group_are_refused_clearly(sso):
    srv = sso
    callback, cookie = start_login(srv, "alice-sub")
    r = requests.get(callback, cookies=cookie, allow_redirects=False, timeout=10)
    assert r.status_code == 200, r.text
    session = r.cookies["dgp_session"]
    assert users(srv)["alice@example.com"]["groups"] == ["operators", "staff"]

    srv.secret_file.write_text("not-the-secret\n")
    assert admin(srv, "/_/api/config/reload", "POST")[0] == 200
    callback, cookie = start_login(srv, "alice-sub")
    r = requests.get(callback, cookies=cookie, allow_redirects=False, timeout=10)
    assert r.status_code == 401 and "Sign-in failed" in r.text
    assert "dgp_session" not in r.headers.get("set-cookie", "")

    srv.secret_file.write_text(srv.client_doc["client_secret"])
    write_config(srv.cfg, srv.data_dir.parent / "data", srv.provider, srv.client_doc, srv.secret_file,
                 "- email_glob: '*@example.com'\n  groups: [auditors]\n")
    assert admin(srv, "/_/api/config/reload", "POST")[0] == 200
    callback, cookie = start_login(srv, "bob-sub")
    r = requests.get(callback, cookies=cookie, allow_redirects=False, timeout=10)
    assert r.status_code == 403 and "auditors" in r.text and "does not exist" in r.text
    assert "bob@example.com" not in users(srv)

    # No rule matches alice any more: she leaves the groups the rules gave,
    # and her session ends with the admin permission.
    write_config(srv.cfg, srv.data_dir.parent / "data", srv.provider, srv.client_doc, srv.secret_file,
                 "- email_domain: other.org\n  groups: [staff]\n")
    assert admin(srv, "/_/api/config/reload", "POST")[0] == 200
    callback, cookie = start_login(srv, "alice-sub")
    r = requests.get(callback, cookies=cookie, allow_redirects=False, timeout=10)
    assert r.status_code == 403 and "no group mapping rule" in r.text
    assert users(srv)["alice@example.com"]["groups"] == []
    who = requests.get(f"{srv.url}/_/api/session", cookies={"dgp_session": session}, timeout=5)
    assert who.status_code == 401

    # The providers list is public; the config API never shows the secret.
    r = requests.get(f"{srv.url}/_/api/sso", timeout=5).json()
    assert r == {"providers": [{"name": "corp", "display_name": "Corp SSO", "login_url": "/_/sso/corp/login"}]}
    status, _, body = raw_request(f"{srv.url}/_/api/config?format=json", sign=True)
    assert status == 200 and srv.client_doc["client_secret"].encode() not in body
    assert requests.get(f"{srv.url}/_/sso/nope/login", allow_redirects=False, timeout=5).status_code == 404


def test_config_check_refuses_what_sso_does_not_do(tmp_path):
    def lint(text):
        cfg = tmp_path / "c.yaml"
        cfg.write_text(textwrap.dedent(text))
        p = subprocess.run([str(BIN), "config", "lint", str(cfg)], capture_output=True, text=True, timeout=30)
        return p.returncode, p.stdout + p.stderr

    rc, out = lint("""\
        access:
          iam_mode: declarative
          auth_providers:
            - {name: corp, type: oidc, issuer: "https://id.example.com", client_id: x}
        """)
    assert rc != 0 and "iam_mode: gui" in out, out
    rc, out = lint("""\
        access:
          auth_providers:
            - {name: Corp, type: saml, issuer: "http://id.example.com", client_id: x}
          group_mapping_rules:
            - {email_domain: example.com, claim: groups, value: a, groups: [g]}
            - {provider: other, email_glob: "*", groups: [g]}
        """)
    assert rc != 0
    for want in ("auth_providers[0].name", "unknown provider type `saml`", "must be an https URL",
                 "exactly one of", "no provider named `other`"):
        assert want in out, (want, out)


def test_configured_redirect_uri_and_trusted_addresses(sso):
    srv = sso
    # No email_verified claim: by default the address is not trusted.
    callback, cookie = start_login(srv, "mallory-sub")
    r = requests.get(callback, cookies=cookie, allow_redirects=False, timeout=10)
    assert r.status_code == 403 and "no group mapping rule" in r.text
    extra = f"trust_unverified_email: true\nredirect_uri: {srv.url}/_/sso/corp/callback\n"
    write_config(srv.cfg, srv.data_dir.parent / "data", srv.provider, srv.client_doc, srv.secret_file, RULES, extra)
    assert admin(srv, "/_/api/config/reload", "POST")[0] == 200
    # The configured callback is used whatever Host the browser came by.
    r = requests.get(f"http://localhost:{srv.port}/_/sso/corp/login", allow_redirects=False, timeout=10)
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(r.headers["location"]).query)
    assert q["redirect_uri"] == [f"{srv.url}/_/sso/corp/callback"], q
    callback, cookie = start_login(srv, "mallory-sub")
    r = requests.get(callback, cookies=cookie, allow_redirects=False, timeout=10)
    assert r.status_code == 403 and "do not give the admin permission" in r.text, r.text
    assert users(srv)["mallory@example.com"]["groups"] == ["staff"]
